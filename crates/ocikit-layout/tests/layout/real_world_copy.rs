//! Copies that pick a platform from an index, and reports that count the whole image
//! (issue 14), on every backend.

use ocikit_digest::oci_spec::image::Descriptor;
use ocikit_digest::platform;
use ocikit_layout::copy::{CopyOptions, copy_image, reach};
use ocikit_layout::{Error, Layout, PlatformQuery};
use serde_json::json;

use crate::image::layouts;

const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const INDEX: &str = "application/vnd.oci.image.index.v1+json";
const LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

fn want(p: &str) -> Option<PlatformQuery> {
    Some(PlatformQuery::new(&platform::parse(p).unwrap()))
}

/// An image of `arch` with one layer of `layer` bytes, and its index entry.
async fn image(layout: &Layout, arch: &str, layer: &[u8]) -> serde_json::Value {
    let layer = layout.put_blob(LAYER, layer).await.unwrap();
    let config = json!({
        "os": "linux", "architecture": arch,
        "rootfs": {"type": "layers", "diff_ids": [layer.digest().to_string()]}
    });
    let config = layout
        .put_blob(
            "application/vnd.oci.image.config.v1+json",
            &serde_json::to_vec(&config).unwrap(),
        )
        .await
        .unwrap();
    let manifest = json!({
        "schemaVersion": 2, "mediaType": MANIFEST, "config": config, "layers": [layer]
    });
    let manifest = layout
        .put_blob(MANIFEST, &serde_json::to_vec(&manifest).unwrap())
        .await
        .unwrap();
    let mut entry = serde_json::to_value(&manifest).unwrap();
    entry["platform"] = json!({"os": "linux", "architecture": arch});
    entry
}

/// An index of a linux/amd64 and a linux/arm64 image, with the two entries.
async fn two_platforms(layout: &Layout) -> (Descriptor, Vec<serde_json::Value>) {
    let entries = vec![
        image(layout, "amd64", &[1u8; 3000]).await,
        image(layout, "arm64", &[2u8; 5000]).await,
    ];
    let index = json!({"schemaVersion": 2, "mediaType": INDEX, "manifests": entries});
    let index = layout
        .put_blob(INDEX, &serde_json::to_vec(&index).unwrap())
        .await
        .unwrap();
    (index, entries)
}

#[tokio::test]
async fn a_platform_picks_one_image_of_an_index() {
    for (source, _guard) in layouts().await {
        let (index, entries) = two_platforms(&source).await;
        let destination = Layout::create(ocikit_store::MemoryStore::new())
            .await
            .unwrap();
        let options = CopyOptions::new().with_platform(want("linux/arm64"));
        let report = copy_image(&source, &index, &destination, "app", &options)
            .await
            .unwrap();
        let tagged = destination.resolve("app").await.unwrap();
        assert_eq!(tagged.digest().to_string(), entries[1]["digest"]);
        assert!(tagged.platform().is_some(), "the entry keeps its platform");
        // The arm64 manifest, config and layer: nothing of amd64, no index.
        assert_eq!(report.blobs, 3);
        let arm64_size = entries[1]["size"].as_u64().unwrap();
        assert!(report.total_bytes > 5000 + arm64_size, "{report:?}");
        assert_eq!(
            reach(&destination, &[tagged]).await.unwrap(),
            (report.blobs, report.total_bytes)
        );
        // Without a platform the index goes whole.
        let whole = copy_image(&source, &index, &destination, "all", &CopyOptions::new())
            .await
            .unwrap();
        assert_eq!(
            destination.resolve("all").await.unwrap().digest(),
            index.digest()
        );
        assert_eq!(whole.blobs, 7);
        assert_eq!(whole.skipped, 3, "the arm64 blobs were there");
        assert_eq!(
            whole.total_bytes,
            reach(&source, std::slice::from_ref(&index))
                .await
                .unwrap()
                .1,
            "skipped blobs count in the total"
        );
        // A plain manifest is copied whatever the platform asked for.
        let amd64: Descriptor = serde_json::from_value(entries[0].clone()).unwrap();
        let plain = copy_image(&source, &amd64, &destination, "amd", &options)
            .await
            .unwrap();
        assert_eq!(plain.blobs, 3);
        assert_eq!(
            destination.resolve("amd").await.unwrap().digest(),
            amd64.digest()
        );
    }
}

#[tokio::test]
async fn a_platform_the_index_lacks_is_refused_and_nothing_is_tagged() {
    for (source, _guard) in layouts().await {
        let (index, _) = two_platforms(&source).await;
        let destination = Layout::create(ocikit_store::MemoryStore::new())
            .await
            .unwrap();
        let options = CopyOptions::new().with_platform(want("linux/s390x"));
        let err = copy_image(&source, &index, &destination, "app", &options)
            .await
            .unwrap_err();
        match err {
            Error::PlatformNotFound { available, .. } => {
                assert_eq!(available, ["linux/amd64", "linux/arm64"]);
            }
            other => panic!("{other:?}"),
        }
        assert!(destination.tags().await.unwrap().is_empty());
    }
}
