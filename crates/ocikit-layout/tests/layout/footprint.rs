//! `copy::footprint`: what `ocikit ls` shows of an image, from the one graph walk.

use ocikit_digest::oci_spec::image::Descriptor;
use ocikit_layout::copy::footprint;
use ocikit_layout::{Error, Layout};
use ocikit_store::MemoryStore;
use serde_json::json;

use crate::artifact::{INDEX, MANIFEST, desc_json, digest, image_with};

fn with_platform(d: &Descriptor, os: &str, arch: &str) -> serde_json::Value {
    let mut v = desc_json(d);
    v["platform"] = json!({"os": os, "architecture": arch});
    v
}

#[tokio::test]
async fn an_index_counts_each_blob_once_and_lists_its_platforms() {
    let layout = Layout::create(MemoryStore::new()).await.unwrap();
    let a = image_with(&layout, "a", None).await;
    let b = image_with(&layout, "b", None).await;
    // One entry says its platform; the other's comes from its config (linux/amd64); a third
    // entry repeats the first image.
    let index = json!({"schemaVersion": 2, "mediaType": INDEX, "manifests": [
        with_platform(&a.manifest, "linux", "arm64"),
        desc_json(&b.manifest),
        with_platform(&a.manifest, "linux", "arm64"),
    ]});
    let root = layout
        .put_blob(INDEX, &serde_json::to_vec(&index).unwrap())
        .await
        .unwrap();
    let found = footprint(&layout, &root).await.unwrap();
    assert_eq!(found.blobs, 1 + 4 + 4);
    let size = |d: &Descriptor| d.size();
    let expected: u64 = size(&root)
        + [&a, &b]
            .iter()
            .map(|i| size(&i.manifest) + size(&i.config) + i.layers.iter().map(size).sum::<u64>())
            .sum::<u64>();
    assert_eq!(found.bytes, expected);
    assert_eq!(found.platforms, ["linux/amd64", "linux/arm64"]);
    // A single manifest: its config's platform.
    let single = footprint(&layout, &a.manifest).await.unwrap();
    assert_eq!(
        (single.blobs, single.platforms),
        (4, vec!["linux/amd64".to_string()])
    );
}

#[tokio::test]
async fn a_corrupt_or_hostile_graph_is_refused() {
    let layout = Layout::create(MemoryStore::new()).await.unwrap();
    let a = image_with(&layout, "a", None).await;
    // A manifest whose body says it is an index.
    let mut bad =
        serde_json::from_slice::<serde_json::Value>(&layout.read_blob(&a.manifest).await.unwrap())
            .unwrap();
    bad["mediaType"] = json!(INDEX);
    let bad = layout
        .put_blob(MANIFEST, &serde_json::to_vec(&bad).unwrap())
        .await
        .unwrap();
    match footprint(&layout, &bad).await {
        Err(Error::InvalidDocument {
            digest: d, reason, ..
        }) => {
            assert_eq!(d, digest(&bad));
            assert!(reason.contains("mediaType"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // Indexes nested deeper than the one limit.
    let mut top = a.manifest.clone();
    for _ in 0..=ocikit_digest::graph::MAX_DEPTH {
        let index = json!({"schemaVersion": 2, "mediaType": INDEX, "manifests": [desc_json(&top)]});
        top = layout
            .put_blob(INDEX, &serde_json::to_vec(&index).unwrap())
            .await
            .unwrap();
    }
    assert!(matches!(
        footprint(&layout, &top).await,
        Err(Error::GraphTooLarge { .. })
    ));
}
