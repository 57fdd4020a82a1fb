//! Hostile manifests, indexes and layouts (SPEC C.7, C.8) read through
//! `Layout::read_document` and the health walks: each gets a typed error or a reported
//! problem, never a panic or a silent acceptance. (`index.json` itself is covered in
//! `index.rs`.)

use std::time::Duration;

use ocikit_digest::Digest;
use ocikit_layout::{Artifact, Document, Error, FsckOptions, GcOptions, Layout, ProblemKind};
use ocikit_store::{FsStore, MemoryStore, StoreExt};
use serde_json::{Value, json};

use crate::artifact::{EMPTY, EMPTY_DIGEST, INDEX, MANIFEST, desc_json, digest, image};

const GOOD_CONFIG: &str = r#"{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2}"#;

async fn read_as(layout: &Layout, media_type: &str, bytes: &[u8]) -> Result<Document, Error> {
    let d = layout.put_blob(media_type, bytes).await.unwrap();
    layout.read_document(&d).await
}

fn manifest_with(field: &str, value: Value) -> Vec<u8> {
    let mut m = json!({"schemaVersion": 2, "mediaType": MANIFEST,
        "config": serde_json::from_str::<Value>(GOOD_CONFIG).unwrap(), "layers": []});
    m[field] = value;
    serde_json::to_vec(&m).unwrap()
}

fn expect_invalid(result: Result<Document, Error>, needle: &str, what: &str) {
    match result {
        Err(Error::InvalidDocument { reason, source, .. }) => {
            let full = format!(
                "{reason} {}",
                source.map(|s| format!("{s:?}")).unwrap_or_default()
            );
            assert!(full.contains(needle), "{what}: {full:?} lacks {needle:?}");
        }
        other => panic!("{what}: expected InvalidDocument, got {other:?}"),
    }
}

#[tokio::test]
async fn ambiguous_and_mislabelled_documents_are_refused() {
    let layout = Layout::create(MemoryStore::new()).await.unwrap();
    // C-J01: a manifest carrying `manifests`, an index carrying `layers` or `config`.
    expect_invalid(
        read_as(&layout, MANIFEST, &manifest_with("manifests", json!([]))).await,
        "ambiguous",
        "manifest with manifests",
    );
    for field in ["layers", "config"] {
        let mut index = json!({"schemaVersion": 2, "mediaType": INDEX, "manifests": []});
        index[field] = json!([]);
        expect_invalid(
            read_as(&layout, INDEX, &serde_json::to_vec(&index).unwrap()).await,
            "ambiguous",
            field,
        );
    }
    // C-J02: the body's mediaType differs from the descriptor's (CVE-2021-41190).
    expect_invalid(
        read_as(&layout, MANIFEST, &manifest_with("mediaType", json!(INDEX))).await,
        "mediaType",
        "manifest labelled as an index",
    );
    let index = json!({"schemaVersion": 2, "mediaType": MANIFEST, "manifests": []});
    expect_invalid(
        read_as(&layout, INDEX, &serde_json::to_vec(&index).unwrap()).await,
        "mediaType",
        "index labelled as a manifest",
    );
    expect_invalid(
        read_as(&layout, MANIFEST, &manifest_with("mediaType", json!(7))).await,
        "mediaType is not a string",
        "numeric mediaType",
    );
}

#[tokio::test]
async fn bad_json_and_schema_versions_are_refused() {
    let layout = Layout::create(MemoryStore::new()).await.unwrap();
    // C-J03
    for (version, needle) in [
        (json!(1), "schemaVersion is not 2"),
        (json!("2"), "schemaVersion is not 2"),
        (json!(3), "schemaVersion is not 2"),
        (json!(2.5), "schemaVersion is not 2"),
    ] {
        expect_invalid(
            read_as(
                &layout,
                MANIFEST,
                &manifest_with("schemaVersion", version.clone()),
            )
            .await,
            needle,
            &version.to_string(),
        );
    }
    let mut missing: Value = serde_json::from_slice(&manifest_with("x", json!(1))).unwrap();
    missing.as_object_mut().unwrap().remove("schemaVersion");
    expect_invalid(
        read_as(&layout, MANIFEST, &serde_json::to_vec(&missing).unwrap()).await,
        "schemaVersion is missing",
        "no schemaVersion",
    );
    // I-JSON: duplicate keys; C-J05: invalid UTF-8 and lone surrogates; C-J06: deep nesting.
    let dup = format!(r#"{{"schemaVersion":2,"config":{GOOD_CONFIG},"layers":[],"layers":[]}}"#);
    let deep = format!(
        r#"{{"schemaVersion":2,"config":{GOOD_CONFIG},"layers":[],"x":{}{}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let surrogate =
        format!(r#"{{"schemaVersion":2,"config":{GOOD_CONFIG},"layers":[],"x":"\ud800"}}"#);
    let mut bad_utf8 =
        format!(r#"{{"schemaVersion":2,"config":{GOOD_CONFIG},"layers":[],"x":"#).into_bytes();
    bad_utf8.extend_from_slice(b"\"\xff\xfe\"}");
    for (bytes, what) in [
        (dup.as_bytes(), "duplicate keys"),
        (deep.as_bytes(), "deep nesting"),
        (surrogate.as_bytes(), "lone surrogate"),
        (&bad_utf8[..], "invalid UTF-8"),
        (&b"[]"[..], "array"),
        (&b"not json"[..], "text"),
    ] {
        let result = read_as(&layout, MANIFEST, bytes).await;
        match result {
            Err(Error::InvalidDocument { .. }) => {}
            other => panic!("{what}: {other:?}"),
        }
    }
    // C-J12: unknown fields, even null ones, are accepted.
    let doc = read_as(
        &layout,
        MANIFEST,
        &manifest_with("newUnspecifiedField", Value::Null),
    )
    .await
    .unwrap();
    assert!(matches!(doc, Document::Manifest { .. }));
}

#[tokio::test]
async fn invalid_inner_descriptors_are_refused() {
    let layout = Layout::create(MemoryStore::new()).await.unwrap();
    let good = serde_json::from_str::<Value>(GOOD_CONFIG).unwrap();
    let with = |field: &str, value: Value| {
        let mut d = good.clone();
        d[field] = value;
        d
    };
    let cases = [
        // C-D01, C-D02, C-D03, C-D08
        with("digest", json!("sha256:abc")),
        with(
            "digest",
            json!(EMPTY_DIGEST.to_uppercase().replacen("SHA256", "sha256", 1)),
        ),
        with("digest", json!("sha256:../../../../etc/passwd")),
        with("digest", json!(format!("{EMPTY_DIGEST}\n"))),
        // C-D09
        with("size", json!(-1)),
        // C-D12, C-D13
        with("data", json!("e30")),
        with("data", json!("e3==")),
        // C-D15
        with("mediaType", json!(".foo/bar")),
        with("mediaType", json!("application")),
        // C-J10
        with("annotations", json!({"k": 1})),
        with("annotations", json!({"k": null})),
    ];
    for (i, bad) in cases.iter().enumerate() {
        for field in ["config", "layers", "subject"] {
            let value = if field == "layers" {
                json!([bad])
            } else {
                bad.clone()
            };
            let result = read_as(&layout, MANIFEST, &manifest_with(field, value)).await;
            assert!(
                matches!(result, Err(Error::InvalidDocument { .. })),
                "case {i} in {field}: {result:?}"
            );
        }
        let index = json!({"schemaVersion": 2, "mediaType": INDEX, "manifests": [bad]});
        let result = read_as(&layout, INDEX, &serde_json::to_vec(&index).unwrap()).await;
        assert!(
            matches!(result, Err(Error::InvalidDocument { .. })),
            "case {i} in an index: {result:?}"
        );
    }
    // C-J11: a platform without os or architecture.
    let mut entry = good.clone();
    entry["mediaType"] = json!(MANIFEST);
    entry["platform"] = json!({"architecture": "amd64"});
    let index = json!({"schemaVersion": 2, "mediaType": INDEX, "manifests": [entry]});
    let result = read_as(&layout, INDEX, &serde_json::to_vec(&index).unwrap()).await;
    assert!(
        matches!(result, Err(Error::InvalidDocument { .. })),
        "{result:?}"
    );
}

// C-J07: documents over the limit are refused before being read whole.
#[tokio::test]
async fn oversized_documents_are_refused() {
    let layout = Layout::create(MemoryStore::new()).await.unwrap();
    let mut big = manifest_with("x", json!(1));
    big.truncate(big.len() - 1);
    big.extend_from_slice(b",\"pad\":\"");
    big.extend(std::iter::repeat_n(b'a', 17 << 20));
    big.extend_from_slice(b"\"}");
    let d = layout.put_blob(MANIFEST, &big).await.unwrap();
    match layout.read_document(&d).await {
        Err(Error::Store(ocikit_store::Error::TooLarge { size, limit })) => {
            assert_eq!(size, big.len() as u64);
            assert_eq!(limit, 16 << 20);
        }
        other => panic!("{other:?}"),
    }
    expect_invalid(
        ocikit_layout::document::parse(&d, bytes::Bytes::from(big)),
        "larger than 16 MiB",
        "parse",
    );
    // fsck reports it and carries on; GC refuses to guess what it references.
    layout.set_tag("big", &d).await.unwrap();
    let report = layout.fsck(&FsckOptions::new()).await.unwrap();
    assert_eq!(report.problems.len(), 1, "{:#?}", report.problems);
    assert!(matches!(
        report.problems[0].kind,
        ProblemKind::Unreadable { .. }
    ));
    assert!(layout.gc(&GcOptions::new()).await.is_err());
}

// C-J13: an empty config without artifactType is stored and listed with the config type.
#[tokio::test]
async fn empty_config_without_artifact_type_is_listed_with_the_config_type() {
    let layout = Layout::create(MemoryStore::new()).await.unwrap();
    let img = image(&layout, "v1").await;
    let m = json!({"schemaVersion": 2, "mediaType": MANIFEST,
        "config": {"mediaType": EMPTY, "digest": EMPTY_DIGEST, "size": 2},
        "layers": [{"mediaType": EMPTY, "digest": EMPTY_DIGEST, "size": 2}],
        "subject": desc_json(&img.manifest)});
    let m = layout
        .put_blob(MANIFEST, &serde_json::to_vec(&m).unwrap())
        .await
        .unwrap();
    layout.put_blob(EMPTY, b"{}").await.unwrap();
    layout
        .edit_index(|index| index.add(&m).map(|()| true))
        .await
        .unwrap();
    let listed = layout
        .referrers(&digest(&img.manifest), None)
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        listed[0].artifact_type().as_ref().unwrap().to_string(),
        EMPTY
    );
    // ocikit itself never writes one: the artifactType is required.
    assert!(matches!(
        layout.attach(&img.manifest, &Artifact::new("")).await,
        Err(Error::InvalidArtifact { .. })
    ));
}

// C-L06: a blob that is a symlink (to a secret), a directory or a FIFO is never followed.
#[tokio::test]
async fn blob_files_that_are_not_regular_files_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::open(dir.path().join("layout")).await.unwrap();
    let layout = Layout::create(store.clone()).await.unwrap();
    let a = image(&layout, "a").await;
    let secret = dir.path().join("secret");
    std::fs::write(&secret, b"top secret").unwrap();
    let layer = store.blob_path(&digest(&a.layers[1]));
    std::fs::remove_file(&layer).unwrap();
    std::os::unix::fs::symlink(&secret, &layer).unwrap();
    let config = store.blob_path(&digest(&a.config));
    std::fs::remove_file(&config).unwrap();
    std::fs::create_dir(&config).unwrap();
    let report = layout.fsck(&FsckOptions::new()).await.unwrap();
    assert_eq!(report.problems.len(), 2, "{:#?}", report.problems);
    for p in &report.problems {
        assert!(
            matches!(&p.kind, ProblemKind::Unreadable { reason } if reason.contains("not a regular file")),
            "{p}"
        );
    }
    assert_eq!(std::fs::read(&secret).unwrap(), b"top secret");
}

// C-L13: indexes nested deeper than the limit are reported, not followed forever.
#[tokio::test]
async fn deeply_nested_indexes_are_cut_off() {
    let layout = Layout::create(MemoryStore::new()).await.unwrap();
    let img = image(&layout, "leaf").await;
    let mut top = img.manifest.clone();
    for _ in 0..80 {
        let index = json!({"schemaVersion": 2, "mediaType": INDEX, "manifests": [desc_json(&top)]});
        top = layout
            .put_blob(INDEX, &serde_json::to_vec(&index).unwrap())
            .await
            .unwrap();
    }
    layout.remove_tag("leaf").await.unwrap();
    layout.set_tag("deep", &top).await.unwrap();
    let report = layout.fsck(&FsckOptions::new()).await.unwrap();
    assert_eq!(report.problems.len(), 1, "{:#?}", report.problems);
    assert!(
        matches!(&report.problems[0].kind, ProblemKind::TooDeep { max } if *max == ocikit_digest::graph::MAX_DEPTH)
    );
    let orphan = layout.store().put_bytes(b"orphan").await.unwrap();
    assert!(matches!(
        layout
            .gc(&GcOptions::new().with_grace(Duration::ZERO))
            .await,
        Err(Error::GraphTooLarge { .. })
    ));
    assert!(layout.store().stat(&orphan).await.unwrap().is_some());
    let _ = Digest::sha256(b"");
}
