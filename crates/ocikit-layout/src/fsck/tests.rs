//! How fsck on a store with local files follows blobs reached more than once: a blob is
//! handed to the workers at its first reach, so its later reaches are judged after.

use std::sync::{Arc, Mutex};

use ocikit_digest::oci_spec::image::Descriptor;
use ocikit_digest::{Digest, descriptor, media_type};
use ocikit_store::FsStore;
use serde_json::json;

use super::{FsckOptions, ProblemKind};
use crate::Layout;
use crate::progress::{Event, Operation, Progress};

async fn fs_layout() -> (Layout, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::open(dir.path()).await.unwrap();
    (Layout::create(store).await.unwrap(), dir)
}

fn with_size(d: &Descriptor, size: u64) -> serde_json::Value {
    let mut v = serde_json::to_value(d).unwrap();
    v["size"] = json!(size);
    v
}

async fn manifest(
    layout: &Layout,
    config: &Descriptor,
    layers: &[serde_json::Value],
) -> Descriptor {
    let manifest = json!({
        "schemaVersion": 2, "mediaType": media_type::IMAGE_MANIFEST,
        "config": config, "layers": layers,
    });
    layout
        .put_json(media_type::IMAGE_MANIFEST, &manifest)
        .await
        .unwrap()
}

fn digest(d: &Descriptor) -> Digest {
    descriptor::digest_of(d).unwrap()
}

#[tokio::test]
async fn a_blob_reached_again_with_another_size_is_reported_at_that_reach() {
    let (layout, _dir) = fs_layout().await;
    let config = layout
        .put_json(
            media_type::IMAGE_CONFIG,
            &json!({"rootfs": {"type": "layers", "diff_ids": []}}),
        )
        .await
        .unwrap();
    let shared = layout
        .put_blob(media_type::IMAGE_LAYER, &[7u8; 3000])
        .await
        .unwrap();
    let own = layout
        .put_blob(media_type::IMAGE_LAYER, &[8u8; 100])
        .await
        .unwrap();
    let right = serde_json::to_value(&shared).unwrap();
    let a = manifest(&layout, &config, std::slice::from_ref(&right)).await;
    // b names the shared layer a second and a third time, once with a size it does not have.
    let wrong = with_size(&shared, 3001);
    let b = manifest(
        &layout,
        &config,
        &[serde_json::to_value(&own).unwrap(), wrong, right],
    )
    .await;
    layout.set_tag("a", &a).await.unwrap();
    layout.set_tag("b", &b).await.unwrap();

    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let options = FsckOptions::new()
        .with_progress(Progress::new(move |e| sink.lock().unwrap().push(e.clone())));
    let report = layout.fsck(&options).await.unwrap();
    let found: Vec<(Digest, String, ProblemKind)> = report
        .problems
        .iter()
        .map(|p| (p.digest.clone(), p.path.clone(), p.kind.clone()))
        .collect();
    assert_eq!(
        found,
        vec![(
            digest(&shared),
            "index.json manifests[1] (b) > layers[1]".to_string(),
            ProblemKind::SizeMismatch {
                expected: 3001,
                actual: 3000
            }
        )]
    );
    // Two manifests, the config, two layers: each counted and hashed once.
    assert_eq!(report.blobs_checked, 5);
    let stored = a.size() + b.size() + config.size() + 3000 + 100;
    assert_eq!(report.bytes_checked, stored);
    let events = events.lock().unwrap().clone();
    let of_shared = |done: bool| {
        events
            .iter()
            .filter(|e| match e {
                Event::Done {
                    operation: Operation::Fsck,
                    digest: d,
                    ..
                } => done && *d == digest(&shared),
                Event::Skipped {
                    operation: Operation::Fsck,
                    digest: d,
                    ..
                } => !done && *d == digest(&shared),
                _ => false,
            })
            .count()
    };
    assert_eq!(of_shared(true), 1, "hashed once");
    assert_eq!(of_shared(false), 2, "the two later reaches are skipped");

    // The same answer when the blobs are hashed only once the walk is done (diffIDs on:
    // the config names none for b's three layers, which is reported too).
    let deferred = layout
        .fsck(&FsckOptions::new().with_diff_ids(true))
        .await
        .unwrap();
    assert!(
        deferred
            .problems
            .iter()
            .any(|p| p.path == "index.json manifests[1] (b) > layers[1]"
                && p.kind
                    == ProblemKind::SizeMismatch {
                        expected: 3001,
                        actual: 3000
                    }),
        "{:#?}",
        deferred.problems
    );
    assert_eq!(deferred.blobs_checked, 5);
}

#[tokio::test]
async fn a_layer_that_is_also_a_tagged_manifest_is_checked_once() {
    let (layout, _dir) = fs_layout().await;
    let config = layout
        .put_json(
            media_type::IMAGE_CONFIG,
            &json!({"rootfs": {"type": "layers", "diff_ids": []}}),
        )
        .await
        .unwrap();
    let layer = layout
        .put_blob(media_type::IMAGE_LAYER, b"layer")
        .await
        .unwrap();
    let inner = manifest(&layout, &config, &[serde_json::to_value(&layer).unwrap()]).await;
    // outer names inner's bytes as a layer (a leaf), and inner is tagged too (a document).
    let mut as_layer = serde_json::to_value(&inner).unwrap();
    as_layer["mediaType"] = json!(media_type::IMAGE_LAYER);
    let outer = manifest(&layout, &config, &[as_layer]).await;
    layout.set_tag("outer", &outer).await.unwrap();
    layout.set_tag("inner", &inner).await.unwrap();
    let report = layout.fsck(&FsckOptions::new()).await.unwrap();
    assert!(report.is_clean(), "{:#?}", report.problems);
    // outer, inner, the config, the layer.
    assert_eq!(report.blobs_checked, 4);
    assert_eq!(
        report.bytes_checked,
        outer.size() + inner.size() + config.size() + layer.size()
    );
}
