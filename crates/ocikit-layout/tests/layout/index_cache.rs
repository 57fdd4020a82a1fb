//! The `index.json` a [`Layout`] keeps between reads and edits: never served stale. Another
//! handle (or another tool) writing the file is seen by the next read and edit, a file made
//! corrupt behind the kept index is reported, and concurrent writers through several
//! handles lose no tag.

use std::path::Path;

use ocikit_digest::oci_spec::image::Descriptor;
use ocikit_layout::{Error, Index, Layout};
use ocikit_store::FsStore;

async fn handle(dir: &Path) -> Layout {
    Layout::create(FsStore::open(dir).await.unwrap())
        .await
        .unwrap()
}

async fn blob(layout: &Layout, bytes: &[u8]) -> Descriptor {
    layout
        .put_blob("application/vnd.example", bytes)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_handles_on_one_directory_see_each_others_edits() {
    let dir = tempfile::tempdir().unwrap();
    let a = handle(dir.path()).await;
    let b = handle(dir.path()).await;
    let (one, two) = (blob(&a, b"one").await, blob(&a, b"two").await);

    a.set_tag("a", &one).await.unwrap();
    assert_eq!(a.resolve("a").await.unwrap().digest(), one.digest());
    assert_eq!(b.resolve("a").await.unwrap().digest(), one.digest());
    // B moves `a` and adds `b`: A (which kept the index it wrote) sees both.
    b.set_tag("a", &two).await.unwrap();
    b.set_tag("b", &one).await.unwrap();
    assert_eq!(a.resolve("a").await.unwrap().digest(), two.digest());
    assert_eq!(a.resolve("b").await.unwrap().digest(), one.digest());
    // An edit through A from its kept index loses nothing B wrote since.
    b.set_tag("c", &one).await.unwrap();
    a.set_tag("d", &two).await.unwrap();
    let tags: Vec<String> = b.tags().await.unwrap().into_iter().map(|t| t.0).collect();
    assert_eq!(tags, ["a", "b", "c", "d"]);
    // An edit that changes nothing in A's kept index is checked against the file: B's new
    // tag is there to remove.
    b.set_tag("e", &one).await.unwrap();
    assert!(a.remove_tag("e").await.unwrap());
    assert!(matches!(
        b.resolve("e").await,
        Err(Error::TagNotFound { .. })
    ));
    assert!(!a.remove_tag("e").await.unwrap());

    // Another tool rewriting index.json in place, same size, moving `a` back: seen.
    let path = dir.path().join("index.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let (old, new) = (two.digest().to_string(), one.digest().to_string());
    assert_eq!(old.len(), new.len());
    let first = text.find(&old).unwrap();
    let mut rewritten = text.clone();
    rewritten.replace_range(first..first + old.len(), &new);
    std::fs::write(&path, &rewritten).unwrap();
    for layout in [&a, &b] {
        let index = layout.index().await.unwrap();
        assert_eq!(index, Index::parse(rewritten.as_bytes()).unwrap());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_index_written_behind_the_kept_one_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let layout = handle(dir.path()).await;
    let one = blob(&layout, b"one").await;
    layout.set_tag("a", &one).await.unwrap();
    layout.resolve("a").await.unwrap();
    let path = dir.path().join("index.json");
    std::fs::write(&path, b"{\"schemaVersion\":2,\"manifests\":[").unwrap();

    let invalid = |result: Result<(), Error>| match result {
        Err(Error::InvalidIndex { .. }) => {}
        other => panic!("expected InvalidIndex, got {other:?}"),
    };
    invalid(layout.resolve("a").await.map(|_| ()));
    invalid(layout.index().await.map(|_| ()));
    invalid(layout.tags().await.map(|_| ()));
    invalid(layout.set_tag("b", &one).await);
    invalid(layout.remove_tag("a").await.map(|_| ()));
    // Nothing was written over it.
    assert_eq!(
        std::fs::read(&path).unwrap(),
        b"{\"schemaVersion\":2,\"manifests\":["
    );
    // A second handle opening it says so too.
    assert!(matches!(
        Layout::open(FsStore::open(dir.path()).await.unwrap()).await,
        Err(Error::InvalidIndex { .. })
    ));
    // Removed: no index.json, no layout.
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(
        layout.resolve("a").await,
        Err(Error::NotALayout { .. })
    ));
    assert!(matches!(
        layout.set_tag("b", &one).await,
        Err(Error::NotALayout { .. })
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_writers_through_several_handles_lose_no_tag() {
    let dir = tempfile::tempdir().unwrap();
    let first = handle(dir.path()).await;
    let one = blob(&first, b"one").await;
    let mut handles = vec![first.clone(), first];
    for _ in 0..2 {
        handles.push(handle(dir.path()).await);
    }
    let mut tasks = Vec::new();
    for (h, layout) in handles.iter().enumerate() {
        let (layout, one) = (layout.clone(), one.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..15 {
                layout.set_tag(&format!("h{h}-{i}"), &one).await.unwrap();
                // Reads between the writes keep each handle's index warm.
                layout.resolve(&format!("h{h}-{i}")).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    for layout in &handles {
        let tags = layout.tags().await.unwrap();
        assert_eq!(tags.len(), 4 * 15);
        for h in 0..4 {
            for i in 0..15 {
                layout.resolve(&format!("h{h}-{i}")).await.unwrap();
            }
        }
    }
}

/// A chain of tags set one right after another by two handles on one directory, in turns
/// and at once, on an index large enough (1,000 tags, about 200 KiB) that the store keeps
/// its hashing between writes and trusts the state of the file it wrote: no tag is lost,
/// moved tags end where they were moved last, and each handle's store gives the SHA-256 of
/// the file as its version.
#[tokio::test(flavor = "multi_thread")]
async fn a_chain_of_set_tags_by_two_handles_loses_no_tag() {
    let dir = tempfile::tempdir().unwrap();
    let a = handle(dir.path()).await;
    let b = handle(dir.path()).await;
    let (one, two) = (blob(&a, b"one").await, blob(&a, b"two").await);
    a.edit_index(|index| {
        for i in 0..1000 {
            index.set_tag(&format!("base-{i}"), &one)?;
        }
        Ok(true)
    })
    .await
    .unwrap();
    assert!(
        std::fs::metadata(dir.path().join("index.json"))
            .unwrap()
            .len()
            > 128 << 10
    );

    // In turns, moving a tag from the middle of the index now and then.
    for i in 0..30 {
        let (first, second) = if i % 3 == 0 { (&a, &b) } else { (&b, &a) };
        first.set_tag(&format!("turn-{i}-x"), &one).await.unwrap();
        second.set_tag(&format!("turn-{i}-y"), &two).await.unwrap();
        if i % 5 == 0 {
            second
                .set_tag(&format!("base-{}", i * 31), &two)
                .await
                .unwrap();
        }
    }
    // At once.
    let chains: Vec<_> = [(a.clone(), "a"), (b.clone(), "b")]
        .into_iter()
        .map(|(layout, name)| {
            let one = one.clone();
            tokio::spawn(async move {
                for i in 0..30 {
                    layout.set_tag(&format!("{name}-{i}"), &one).await.unwrap();
                }
            })
        })
        .collect();
    for chain in chains {
        chain.await.unwrap();
    }

    let fresh = Layout::open(FsStore::open(dir.path()).await.unwrap())
        .await
        .unwrap();
    for layout in [&fresh, &a, &b] {
        assert_eq!(layout.tags().await.unwrap().len(), 1000 + 60 + 60);
        for i in 0..30 {
            for (tag, digest) in [
                (format!("turn-{i}-x"), one.digest()),
                (format!("turn-{i}-y"), two.digest()),
                (format!("a-{i}"), one.digest()),
                (format!("b-{i}"), one.digest()),
            ] {
                assert_eq!(
                    layout.resolve(&tag).await.unwrap().digest(),
                    digest,
                    "{tag}"
                );
            }
        }
        for i in 0..1000 {
            let moved = i % 31 == 0 && i / 31 < 30 && (i / 31) % 5 == 0;
            let digest = if moved { two.digest() } else { one.digest() };
            let tag = format!("base-{i}");
            assert_eq!(
                layout.resolve(&tag).await.unwrap().digest(),
                digest,
                "{tag}"
            );
        }
    }
    let file = std::fs::read(dir.path().join("index.json")).unwrap();
    let key = ocikit_store::DocumentKey::new("index.json").unwrap();
    for layout in [&a, &b] {
        let version = layout
            .store()
            .document_version(&key)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            version.as_str(),
            ocikit_digest::Digest::sha256(&file).encoded()
        );
    }
}

#[test]
fn an_index_written_again_is_its_canonical_json_whatever_its_fields() {
    // Unknown fields at the top and in entries, one holding the string that stands for the
    // entries while the top is written: the bytes are the document's canonical JSON.
    let digest = format!("sha256:{}", "a".repeat(64));
    let text = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","zeta":"ocikit:index.json:manifests:placeholder","annotations":{{"x":"y"}},
        "manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{digest}","size":3,"extra":[1,2],
        "annotations":{{"org.opencontainers.image.ref.name":"v1"}}}}]}}"#
    );
    let index = Index::parse(text.as_bytes()).unwrap();
    let canonical = ocikit_digest::json::canonicalize(text.as_bytes()).unwrap();
    let mut expected = Index::parse(&canonical).unwrap();
    assert_eq!(index, expected);
    let bytes = index.to_bytes().unwrap();
    assert_eq!(Index::parse(&bytes).unwrap(), index);
    assert_eq!(
        ocikit_digest::json::canonicalize(&bytes).unwrap(),
        bytes,
        "not canonical"
    );
    assert!(
        String::from_utf8_lossy(&bytes)
            .contains(r#""zeta":"ocikit:index.json:manifests:placeholder""#)
    );
    assert!(String::from_utf8_lossy(&bytes).contains(r#""extra":[1,2]"#));

    // Tags moved and added keep `find` and the order right.
    let moved: Descriptor = index.find("v1").unwrap().clone();
    expected.set_tag("v2", &moved).unwrap();
    expected.set_tag("v1", &moved).unwrap();
    expected.set_tag("v3", &moved).unwrap();
    let order: Vec<&str> = expected.tags().into_iter().map(|t| t.0).collect();
    assert_eq!(order, ["v2", "v1", "v3"]);
    for tag in ["v1", "v2", "v3"] {
        assert!(expected.find(tag).is_some(), "{tag}");
    }
    assert!(expected.remove_tag("v2"));
    assert!(expected.find("v2").is_none());
    assert!(expected.find("v3").is_some());
    let again = Index::parse(&expected.to_bytes().unwrap()).unwrap();
    assert_eq!(again, expected);
    // Without the placeholder in a field (entries put in its place) the bytes are
    // canonical too.
    let mut fresh = Index::empty();
    fresh.set_tag("a", &moved).unwrap();
    fresh.set_tag("b", &moved).unwrap();
    let bytes = fresh.to_bytes().unwrap();
    assert_eq!(ocikit_digest::json::canonicalize(&bytes).unwrap(), bytes);
    assert_eq!(Index::parse(&bytes).unwrap(), fresh);
}
