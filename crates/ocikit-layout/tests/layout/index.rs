//! Opening, `index.json` parsing (SPEC C.7, C.8) and tags, on every backend.
// Tests that need a codec are gated on its feature, so that `cargo test --no-default-features`
// runs the rest; what only they use is then unused.
#![cfg_attr(
    not(all(feature = "gzip", feature = "zstd")),
    allow(unused_imports, dead_code)
)]

use bytes::Bytes;
use ocikit_layout::{Error, Index, Layout, validate_tag};
use ocikit_store::{DocumentKey, FsStore, MemoryStore, Precondition, Store};

pub(crate) use crate::support::stores;

async fn write(store: &dyn Store, key: &str, bytes: &str) {
    store
        .write_document(
            &DocumentKey::new(key).unwrap(),
            Bytes::from(bytes.to_string()),
            Precondition::None,
        )
        .await
        .unwrap();
}

const EMPTY_INDEX: &str = r#"{"schemaVersion":2,"manifests":[]}"#;
const LAYOUT: &str = r#"{"imageLayoutVersion":"1.0.0"}"#;

async fn open_with(index: &str, marker: &str) -> Result<Layout, Error> {
    let store = MemoryStore::new();
    write(&store, "oci-layout", marker).await;
    write(&store, "index.json", index).await;
    Layout::open(store).await
}

fn reason(result: Result<Layout, Error>) -> String {
    match result {
        Err(Error::InvalidIndex { reason, .. }) | Err(Error::NotALayout { reason }) => reason,
        other => panic!("expected an invalid layout, got {other:?}"),
    }
}

#[tokio::test]
async fn create_then_open_on_every_backend() {
    for (store, _guard) in stores().await {
        let layout = Layout::create(store).await.unwrap();
        assert!(layout.tags().await.unwrap().is_empty());
        // Creating again validates instead of overwriting.
        let d = layout
            .put_blob("application/vnd.oci.empty.v1+json", b"{}")
            .await
            .unwrap();
        layout.set_tag("keep", &d).await.unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::create(FsStore::open(dir.path()).await.unwrap())
        .await
        .unwrap();
    let d = layout
        .put_blob("application/vnd.oci.empty.v1+json", b"{}")
        .await
        .unwrap();
    layout.set_tag("keep", &d).await.unwrap();
    let again = Layout::create(FsStore::open(dir.path()).await.unwrap())
        .await
        .unwrap();
    assert_eq!(again.resolve("keep").await.unwrap().digest(), d.digest());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("oci-layout")).unwrap(),
        LAYOUT,
        "the oci-layout file is what the spec says"
    );
}

// SPEC C-L01
#[tokio::test]
async fn missing_or_wrong_oci_layout_is_not_a_layout() {
    assert!(matches!(
        Layout::open(MemoryStore::new()).await,
        Err(Error::NotALayout { .. })
    ));
    assert!(
        reason(open_with(EMPTY_INDEX, r#"{"imageLayoutVersion":"2.0.0"}"#).await).contains("2.0.0")
    );
    assert!(reason(open_with(EMPTY_INDEX, "[]").await).contains("imageLayoutVersion"));
    assert!(reason(open_with(EMPTY_INDEX, "not json").await).contains("not valid JSON"));
    let store = MemoryStore::new();
    write(&store, "oci-layout", LAYOUT).await;
    assert!(reason(Layout::open(store).await).contains("no index.json"));
}

// SPEC C-L03, C-J01, C-J03, C-J05, C-J06, I-JSON duplicate keys
#[tokio::test]
async fn malformed_indexes_are_refused_with_the_reason() {
    for (index, expected) in [
        (
            r#"{"schemaVersion":2,"manifests":null}"#,
            "manifests is missing or null",
        ),
        (r#"{"schemaVersion":2}"#, "manifests is missing or null"),
        (
            r#"{"schemaVersion":2,"manifests":{}}"#,
            "manifests is not an array",
        ),
        (
            r#"{"schemaVersion":1,"manifests":[]}"#,
            "schemaVersion is not 2",
        ),
        (
            r#"{"schemaVersion":"2","manifests":[]}"#,
            "schemaVersion is not 2",
        ),
        (
            r#"{"schemaVersion":3,"manifests":[]}"#,
            "schemaVersion is not 2",
        ),
        (r#"{"manifests":[]}"#, "schemaVersion is missing"),
        (
            r#"{"schemaVersion":2,"manifests":[],"layers":[]}"#,
            "both an index and a manifest",
        ),
        (
            r#"{"schemaVersion":2,"manifests":[],"config":{}}"#,
            "both an index and a manifest",
        ),
        (
            r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","manifests":[]}"#,
            "mediaType",
        ),
        (
            r#"{"schemaVersion":2,"manifests":[],"manifests":[]}"#,
            "malformed JSON",
        ),
        (
            r#"{"schemaVersion":2,"manifests":[1]}"#,
            "manifests[0] is not an object",
        ),
        (
            r#"{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:abc","size":1}]}"#,
            "manifests[0] is not a valid descriptor",
        ),
        (
            r#"{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":-1}]}"#,
            "manifests[0] is not a valid descriptor",
        ),
        ("[]", "not a JSON object"),
        (
            "{\"schemaVersion\":2,\"manifests\":[],\"x\":\"\\ud800\"}",
            "malformed JSON",
        ),
    ] {
        let got = reason(open_with(index, LAYOUT).await);
        assert!(
            got.contains(expected),
            "{index}: got {got:?}, expected {expected:?}"
        );
    }
    let deep = format!(
        "{{\"schemaVersion\":2,\"manifests\":[],\"x\":{}{}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    assert!(reason(open_with(&deep, LAYOUT).await).contains("malformed JSON"));
}

// SPEC C-L09, C-J12: unknown media types and unknown fields are kept through edits.
#[tokio::test]
async fn unknown_entries_and_fields_survive_edits() {
    let index = r#"{"schemaVersion":2,"manifests":[{"mediaType":"application/xml","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":0,"newUnspecifiedField":null,"annotations":{"org.opencontainers.image.ref.name":"x"}}],"vendor.field":{"a":1}}"#;
    let layout = open_with(index, LAYOUT).await.unwrap();
    assert_eq!(
        layout.resolve("x").await.unwrap().media_type().to_string(),
        "application/xml"
    );
    let d = layout
        .put_blob("application/vnd.oci.empty.v1+json", b"{}")
        .await
        .unwrap();
    layout.set_tag("y", &d).await.unwrap();
    let doc = layout
        .store()
        .read_document(&DocumentKey::new("index.json").unwrap())
        .await
        .unwrap()
        .unwrap();
    let text = std::str::from_utf8(&doc.bytes).unwrap();
    assert!(text.contains(r#""newUnspecifiedField":null"#), "{text}");
    assert!(text.contains(r#""vendor.field":{"a":1}"#), "{text}");
    assert!(
        text.contains(r#""mediaType":"application/vnd.oci.image.index.v1+json""#),
        "{text}"
    );
    assert!(
        !text.contains(' ') && !text.contains('\n'),
        "canonical JSON: {text}"
    );
}

#[tokio::test]
async fn tags_move_remove_and_resolve_on_every_backend() {
    for (store, _guard) in stores().await {
        let layout = Layout::create(store).await.unwrap();
        let a = layout
            .put_blob("application/vnd.oci.empty.v1+json", b"{}")
            .await
            .unwrap();
        let b = layout
            .put_json(
                "application/vnd.oci.image.config.v1+json",
                &serde_json::json!({"b":1,"a":2}),
            )
            .await
            .unwrap();
        layout.set_tag("v1", &a).await.unwrap();
        layout.set_tag("latest", &a).await.unwrap();
        layout.set_tag("v1", &b).await.unwrap();
        assert_eq!(layout.resolve("v1").await.unwrap().digest(), b.digest());
        assert_eq!(layout.resolve("latest").await.unwrap().digest(), a.digest());
        let tags: Vec<String> = layout
            .tags()
            .await
            .unwrap()
            .into_iter()
            .map(|(t, _)| t)
            .collect();
        assert_eq!(tags, ["latest", "v1"], "the moved tag's old entry is gone");
        assert!(layout.remove_tag("latest").await.unwrap());
        assert!(!layout.remove_tag("latest").await.unwrap());
        assert!(matches!(
            layout.resolve("latest").await,
            Err(Error::TagNotFound { .. })
        ));
        assert_eq!(layout.index().await.unwrap().manifests().len(), 1);
        // Canonical JSON: key order does not change the digest.
        let again = layout
            .put_json(
                "application/vnd.oci.image.config.v1+json",
                &serde_json::json!({"a":2,"b":1}),
            )
            .await
            .unwrap();
        assert_eq!(again.digest(), b.digest());
        assert_eq!(
            &layout.read_blob(&b).await.unwrap()[..],
            br#"{"a":2,"b":1}"#
        );
    }
}

// SPEC C-L05: tags outside the ref.name grammar are refused on write and never used as paths.
#[tokio::test]
async fn hostile_tags_are_refused() {
    let layout = Layout::create(MemoryStore::new()).await.unwrap();
    let d = layout
        .put_blob("application/vnd.oci.empty.v1+json", b"{}")
        .await
        .unwrap();
    for tag in [
        "",
        "../x",
        "a//b",
        "/a",
        "a/",
        "has space",
        "tab\t",
        "nl\n",
        "-x",
        "x-",
        "a..b",
        "é",
        "a\0b",
    ] {
        assert!(
            matches!(layout.set_tag(tag, &d).await, Err(Error::InvalidTag { .. })),
            "{tag:?}"
        );
        assert!(validate_tag(tag).is_err(), "{tag:?}");
    }
    for tag in [
        "v1",
        "1.0.0",
        "foo/bar",
        "a--b",
        "a:b@c+d",
        "sha256-abc",
        "A_B",
    ] {
        validate_tag(tag).unwrap();
        layout.set_tag(tag, &d).await.unwrap();
    }
}

#[tokio::test]
async fn concurrent_taggers_lose_nothing() {
    for (store, _guard) in stores().await {
        let layout = Layout::create(store).await.unwrap();
        let d = layout
            .put_blob("application/vnd.oci.empty.v1+json", b"{}")
            .await
            .unwrap();
        let tasks = (0..16).map(|i| {
            let layout = layout.clone();
            let d = d.clone();
            async move {
                for j in 0..10 {
                    layout.set_tag(&format!("t{i}-{j}"), &d).await.unwrap();
                }
            }
        });
        futures::future::join_all(tasks).await;
        assert_eq!(layout.tags().await.unwrap().len(), 160);
    }
}

#[tokio::test]
async fn read_blob_checks_size_and_digest() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::open(dir.path()).await.unwrap();
    let layout = Layout::create(store.clone()).await.unwrap();
    let d = layout
        .put_blob("application/octet-stream", b"payload")
        .await
        .unwrap();
    let mut wrong_size = d.clone();
    wrong_size.set_size(6);
    assert!(matches!(
        layout.read_blob(&wrong_size).await,
        Err(Error::Store(ocikit_store::Error::SizeMismatch { .. }))
    ));
    let digest: ocikit_digest::Digest = d.digest().as_ref().parse().unwrap();
    std::fs::write(store.blob_path(&digest), b"PAYLOAD").unwrap();
    assert!(matches!(
        layout.read_blob(&d).await,
        Err(Error::Store(ocikit_store::Error::DigestMismatch { .. }))
    ));
    let index = Index::empty();
    assert_eq!(index.manifests().len(), 0);
}

#[cfg(feature = "gzip")]
/// Issue 14 leftover: a layout whose images are untagged (as `skopeo copy … oci:L` writes
/// them) lists them, by digest; an image that a tag names is listed under its tags only, an
/// artifact attached to an image is not an image of its own, and each digest is listed once.
#[tokio::test]
async fn entries_list_untagged_images_once_each_and_tagged_ones_by_tag() {
    use crate::copy::make_image;
    for (layout, _guard) in crate::image::layouts().await {
        let a = make_image(&layout, "a").await;
        let b = make_image(&layout, "b").await;
        assert!(layout.entries().await.unwrap().is_empty());
        layout
            .edit_index(|index| {
                index.add(&a.manifest)?;
                index.add(&b.manifest)?;
                Ok(true)
            })
            .await
            .unwrap();
        let listed =
            |entries: Vec<(Option<String>, ocikit_digest::oci_spec::image::Descriptor)>| {
                entries
                    .into_iter()
                    .map(|(tag, d)| (tag, d.digest().to_string()))
                    .collect::<Vec<_>>()
            };
        let (da, db) = (
            a.manifest.digest().to_string(),
            b.manifest.digest().to_string(),
        );
        assert_eq!(
            listed(layout.entries().await.unwrap()),
            [(None, da.clone()), (None, db.clone())]
        );
        // The tags ocikit's `tags` knew all along are still every tag.
        assert!(layout.tags().await.unwrap().is_empty());

        // A tag on b: b is listed under it, no longer as untagged; a second tag lists it twice.
        layout.set_tag("v1", &b.manifest).await.unwrap();
        layout.set_tag("latest", &b.manifest).await.unwrap();
        let artifact = layout
            .attach(
                &a.manifest,
                &ocikit_layout::Artifact::new("application/vnd.example.sig"),
            )
            .await
            .unwrap();
        assert_eq!(
            listed(layout.entries().await.unwrap()),
            [
                (None, da.clone()),
                (Some("v1".to_string()), db.clone()),
                (Some("latest".to_string()), db.clone()),
            ]
        );
        // A tagged artifact is listed under its tag, as every tag is.
        layout.set_tag("sig", &artifact).await.unwrap();
        assert_eq!(
            listed(layout.entries().await.unwrap()).last(),
            Some(&(Some("sig".to_string()), artifact.digest().to_string()))
        );
    }
}

#[cfg(feature = "gzip")]
/// An untagged entry whose manifest is not stored makes the listing fail naming it (it
/// cannot tell what the entry is), as does one whose manifest is corrupt.
#[tokio::test]
async fn entries_refuse_an_untagged_entry_they_cannot_read() {
    use crate::copy::make_image;
    for (layout, _guard) in crate::image::layouts().await {
        let a = make_image(&layout, "a").await;
        let missing = ocikit_digest::descriptor::new(
            "application/vnd.oci.image.manifest.v1+json",
            &ocikit_digest::Digest::sha256(b"not stored"),
            10,
        )
        .unwrap();
        layout
            .edit_index(|index| {
                index.add(&a.manifest)?;
                index.add(&missing)?;
                Ok(true)
            })
            .await
            .unwrap();
        match layout.entries().await {
            Err(Error::Store(ocikit_store::Error::NotFound { digest })) => {
                assert_eq!(digest.as_str(), missing.digest().as_ref())
            }
            other => panic!("expected the missing manifest named, got {other:?}"),
        }
    }
}
