//! Unpacking images: whiteouts across layers, diffID and blob verification, strict configs,
//! unsupported media types, progress and apply options; on every backend (the memory store
//! streams blobs through the async bridge, the filesystem store gives local files).

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt;
use ocikit_codec::apply::{ApplyOptions, DevicePolicy};
use ocikit_codec::compression::Compression;
use ocikit_digest::oci_spec::image::Descriptor;
use ocikit_digest::{Digest, platform};
use ocikit_layout::{
    Error, Event, ImageBuilder, LayerSpec, Layout, Operation, PlatformQuery, Progress,
    UnpackOptions, unpack, unpack_tag,
};
use ocikit_store::conformance::Intercept;
use ocikit_store::{Blob, MemoryStore};
use serde_json::json;

use crate::image::{layouts, put_manifest, snapshot};

const TAR: &str = "application/vnd.oci.image.layer.v1.tar";

fn amd64() -> UnpackOptions {
    UnpackOptions::new().with_platform(PlatformQuery::new(&platform::parse("linux/amd64").unwrap()))
}

/// A tar made with the `tar` crate: directories (`name/`), files, and a character device
/// for names starting with `dev:`.
fn tar_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, content) in entries {
        let mut header = tar::Header::new_ustar();
        header.set_mtime(1_600_000_000);
        if let Some(dir) = path.strip_suffix('/') {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_mode(0o755);
            header.set_size(0);
            builder
                .append_data(&mut header, dir, std::io::empty())
                .unwrap();
        } else if let Some(dev) = path.strip_prefix("dev:") {
            header.set_entry_type(tar::EntryType::Char);
            header.set_mode(0o666);
            header.set_size(0);
            header.set_device_major(1).unwrap();
            header.set_device_minor(3).unwrap();
            builder
                .append_data(&mut header, dev, std::io::empty())
                .unwrap();
        } else {
            header.set_entry_type(tar::EntryType::Regular);
            header.set_mode(0o644);
            header.set_size(content.len() as u64);
            builder.append_data(&mut header, path, *content).unwrap();
        }
    }
    builder.into_inner().unwrap()
}

async fn image_of(layout: &Layout, layers: &[Vec<u8>], compression: Compression) -> Descriptor {
    let mut image = ImageBuilder::new(layout);
    image
        .platform(&platform::parse("linux/amd64").unwrap())
        .source_date_epoch(Some(0));
    for tar in layers {
        image
            .add_layer_from_tar(
                std::io::Cursor::new(tar.clone()),
                LayerSpec::new().compression(compression),
            )
            .await
            .unwrap();
    }
    image.write().await.unwrap()
}

fn names(root: &std::path::Path) -> Vec<String> {
    snapshot(root).into_keys().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whiteouts_in_later_layers_remove_lower_files() {
    for (layout, _guard) in layouts().await {
        let lower = tar_of(&[
            ("etc/", b""),
            ("etc/a", b"a"),
            ("etc/b", b"b"),
            ("keep", b"keep"),
        ]);
        let middle = tar_of(&[("etc/.wh.a", b""), ("new", b"new")]);
        let upper = tar_of(&[("etc/.wh..wh..opq", b""), ("etc/c", b"c")]);
        let two = image_of(&layout, &[lower.clone(), middle.clone()], Compression::Gzip).await;
        let out = tempfile::tempdir().unwrap();
        unpack(&layout, &two, out.path(), &amd64()).await.unwrap();
        assert_eq!(names(out.path()), ["etc", "etc/b", "keep", "new"]);
        assert_eq!(std::fs::read(out.path().join("new")).unwrap(), b"new");

        let three = image_of(&layout, &[lower, middle, upper], Compression::Zstd).await;
        let out = tempfile::tempdir().unwrap();
        let report = unpack(&layout, &three, out.path(), &amd64()).await.unwrap();
        assert_eq!(names(out.path()), ["etc", "etc/c", "keep", "new"]);
        assert_eq!(report.layers.len(), 3);
        assert_eq!(report.layers[1].whiteouts, 1);
        assert_eq!(platform::format(&report.platform), "linux/amd64");
        assert_eq!(report.manifest.digest(), three.digest());
    }
}

/// Config JSON for one uncompressed layer with this diffID.
fn config_with(diff_ids: &[String]) -> serde_json::Value {
    json!({"architecture": "amd64", "os": "linux",
           "rootfs": {"type": "layers", "diff_ids": diff_ids}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_diff_id_fails_the_unpack() {
    for (layout, _guard) in layouts().await {
        let tar = tar_of(&[("f", b"content")]);
        let layer = layout.put_blob(TAR, &tar).await.unwrap();
        let claimed = Digest::sha256(b"another layer");
        let manifest = put_manifest(
            &layout,
            &config_with(&[claimed.to_string()]),
            std::slice::from_ref(&layer),
        )
        .await;
        let out = tempfile::tempdir().unwrap();
        match unpack(&layout, &manifest, out.path(), &amd64()).await {
            Err(Error::Layer { digest, source }) => {
                assert_eq!(digest.to_string(), layer.digest().to_string());
                match *source {
                    Error::Codec(ocikit_codec::Error::DiffIdMismatch { expected, actual }) => {
                        assert_eq!(expected, claimed);
                        assert_eq!(actual, Digest::sha256(&tar));
                    }
                    other => panic!("expected a diffID mismatch, got {other:?}"),
                }
            }
            other => panic!("expected a layer failure, got {other:?}"),
        }
        // The right diffID unpacks.
        let manifest = put_manifest(
            &layout,
            &config_with(&[Digest::sha256(&tar).to_string()]),
            &[layer],
        )
        .await;
        let out = tempfile::tempdir().unwrap();
        unpack(&layout, &manifest, out.path(), &amd64())
            .await
            .unwrap();
        assert_eq!(std::fs::read(out.path().join("f")).unwrap(), b"content");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_corrupted_on_disk_fails_and_names_its_digest() {
    for compression in [Compression::Gzip, Compression::None] {
        for (layout, guard) in layouts().await {
            let Some(guard) = guard else { continue };
            let tar = tar_of(&[("f", &vec![7u8; 100_000])]);
            let manifest = image_of(&layout, &[tar], compression).await;
            let (m, _) = crate::image::config_json(&layout, &manifest).await;
            let layer_digest = m["layers"][0]["digest"].as_str().unwrap().to_string();
            let digest = Digest::parse(&layer_digest).unwrap();
            let path = guard.path().join("layout").join(digest.blob_path());
            let mut bytes = std::fs::read(&path).unwrap();
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0x55;
            std::fs::write(&path, &bytes).unwrap();
            let out = tempfile::tempdir().unwrap();
            match unpack(&layout, &manifest, out.path(), &amd64()).await {
                Err(Error::Layer {
                    digest: named,
                    source,
                }) => {
                    assert_eq!(named, digest);
                    match *source {
                        Error::Store(ocikit_store::Error::DigestMismatch { expected, .. }) => {
                            assert_eq!(expected, digest)
                        }
                        other => panic!("{compression:?}: expected a corrupt blob, got {other:?}"),
                    }
                }
                other => panic!("{compression:?}: expected a layer failure, got {other:?}"),
            }
            // Truncated: the size no longer matches.
            std::fs::write(&path, &bytes[..middle]).unwrap();
            match unpack(&layout, &manifest, out.path(), &amd64()).await {
                Err(Error::Layer {
                    digest: named,
                    source,
                }) => {
                    assert_eq!(named, digest);
                    assert!(
                        matches!(
                            *source,
                            Error::Store(ocikit_store::Error::SizeMismatch { .. })
                        ),
                        "{source:?}"
                    );
                }
                other => panic!("expected a layer failure, got {other:?}"),
            }
            // Gone.
            std::fs::remove_file(&path).unwrap();
            match unpack(&layout, &manifest, out.path(), &amd64()).await {
                Err(Error::Layer { source, .. }) => assert!(
                    matches!(*source, Error::Store(ocikit_store::Error::NotFound { .. })),
                    "{source:?}"
                ),
                other => panic!("expected a layer failure, got {other:?}"),
            }
        }
    }
}

/// A memory store whose stream of the `target` blob (once set) has one byte flipped.
fn corrupting() -> (Intercept<MemoryStore>, Arc<Mutex<Option<Digest>>>) {
    let target: Arc<Mutex<Option<Digest>>> = Arc::new(Mutex::new(None));
    let aim = Arc::clone(&target);
    let store = Intercept::new(MemoryStore::new(), move |digest, blob| {
        let blob = blob?;
        if aim.lock().unwrap().as_ref() != Some(digest) {
            return Some(blob);
        }
        let (size, range) = (blob.size(), blob.range());
        let mut flipped = false;
        let stream = blob
            .into_stream()
            .map(move |chunk| {
                chunk.map(|chunk| {
                    if flipped || chunk.len() < 2 {
                        return chunk;
                    }
                    flipped = true;
                    let mut bytes = chunk.to_vec();
                    let middle = bytes.len() / 2;
                    bytes[middle] ^= 0x55;
                    Bytes::from(bytes)
                })
            })
            .boxed();
        Some(Blob::new(size, range, stream, None))
    });
    (store, target)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_corrupted_in_a_streamed_store_fails_and_names_its_digest() {
    let (store, target) = corrupting();
    let layout = Layout::create(store).await.unwrap();
    for compression in [Compression::Gzip, Compression::Zstd, Compression::None] {
        let tar = tar_of(&[("f", &vec![9u8; 300_000])]);
        let manifest = image_of(&layout, &[tar], compression).await;
        let (m, _) = crate::image::config_json(&layout, &manifest).await;
        let digest = Digest::parse(m["layers"][0]["digest"].as_str().unwrap()).unwrap();
        // Sound while the blob is served intact.
        let out = tempfile::tempdir().unwrap();
        unpack(&layout, &manifest, out.path(), &amd64())
            .await
            .unwrap();
        *target.lock().unwrap() = Some(digest.clone());
        let out = tempfile::tempdir().unwrap();
        match unpack(&layout, &manifest, out.path(), &amd64()).await {
            Err(Error::Layer {
                digest: named,
                source,
            }) => {
                assert_eq!(named, digest);
                match *source {
                    Error::Store(ocikit_store::Error::DigestMismatch { expected, .. }) => {
                        assert_eq!(expected, digest)
                    }
                    other => panic!("{compression:?}: expected a corrupt blob, got {other:?}"),
                }
            }
            other => panic!("{compression:?}: expected a layer failure, got {other:?}"),
        }
        *target.lock().unwrap() = None;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configs_that_do_not_fit_their_layers_are_refused() {
    for (layout, _guard) in layouts().await {
        let tar = tar_of(&[("f", b"x")]);
        let diff_id = Digest::sha256(&tar).to_string();
        let layer = layout.put_blob(TAR, &tar).await.unwrap();
        let out = tempfile::tempdir().unwrap();

        let mut foo = config_with(std::slice::from_ref(&diff_id));
        foo["rootfs"]["type"] = json!("foo");
        let manifest = put_manifest(&layout, &foo, std::slice::from_ref(&layer)).await;
        match unpack(&layout, &manifest, out.path(), &amd64()).await {
            Err(Error::InvalidDocument { reason, .. }) => {
                assert!(reason.contains("rootfs.type"), "{reason}")
            }
            other => panic!("expected rootfs.type refused, got {other:?}"),
        }

        let manifest = put_manifest(
            &layout,
            &config_with(&[diff_id.clone(), diff_id.clone()]),
            std::slice::from_ref(&layer),
        )
        .await;
        match unpack(&layout, &manifest, out.path(), &amd64()).await {
            Err(Error::InvalidDocument { reason, .. }) => {
                assert!(reason.contains("2 diff_ids"), "{reason}")
            }
            other => panic!("expected a count mismatch, got {other:?}"),
        }

        let mut history = config_with(std::slice::from_ref(&diff_id));
        history["history"] = json!([{"created_by": "a", "empty_layer": true}]);
        let manifest = put_manifest(&layout, &history, std::slice::from_ref(&layer)).await;
        match unpack(&layout, &manifest, out.path(), &amd64()).await {
            Err(Error::InvalidDocument { reason, .. }) => {
                assert!(reason.contains("history has 0"), "{reason}")
            }
            other => panic!("expected a history mismatch, got {other:?}"),
        }
        assert!(names(out.path()).is_empty(), "nothing was applied");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_layer_media_types_are_refused_before_anything_is_applied() {
    for (layout, _guard) in layouts().await {
        let good = tar_of(&[("first", b"1")]);
        let good_layer = layout.put_blob(TAR, &good).await.unwrap();
        let odd = layout
            .put_blob("application/vnd.oci.image.layer.v1.tar+bzip2", b"BZh9")
            .await
            .unwrap();
        let config = config_with(&[
            Digest::sha256(&good).to_string(),
            Digest::sha256(b"BZh9").to_string(),
        ]);
        let manifest = put_manifest(&layout, &config, &[good_layer, odd]).await;
        let out = tempfile::tempdir().unwrap();
        match unpack(&layout, &manifest, out.path().join("root"), &amd64()).await {
            Err(Error::UnsupportedMediaType {
                media_type,
                operation,
            }) => {
                assert_eq!(media_type, "application/vnd.oci.image.layer.v1.tar+bzip2");
                assert_eq!(operation, "unpack");
            }
            other => panic!("expected an unsupported media type, got {other:?}"),
        }
        assert!(!out.path().join("root").exists());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_is_reported_per_layer_in_order() {
    for (layout, _guard) in layouts().await {
        let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
        let layers = [tar_of(&[("small", b"s")]), tar_of(&[("big", &big)])];
        let manifest = image_of(&layout, &layers, Compression::None).await;
        let (m, _) = crate::image::config_json(&layout, &manifest).await;
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        let options =
            amd64().with_progress(Progress::new(move |e| sink.lock().unwrap().push(e.clone())));
        let out = tempfile::tempdir().unwrap();
        unpack(&layout, &manifest, out.path(), &options)
            .await
            .unwrap();
        let events = events.lock().unwrap();
        let mut expected_layers = m["layers"].as_array().unwrap().iter();
        let mut current: Option<(Digest, u64)> = None;
        let mut progress_seen = 0;
        for event in events.iter() {
            match event {
                Event::Started {
                    operation,
                    digest,
                    size,
                } => {
                    assert_eq!(*operation, Operation::Unpack);
                    assert!(current.is_none());
                    let layer = expected_layers.next().unwrap();
                    assert_eq!(digest.to_string(), layer["digest"]);
                    assert_eq!(*size, layer["size"].as_u64().unwrap());
                    current = Some((digest.clone(), *size));
                }
                Event::Progress { digest, bytes, .. } => {
                    let (d, size) = current.as_ref().unwrap();
                    assert_eq!(digest, d);
                    assert!(*bytes <= *size);
                    progress_seen += 1;
                }
                Event::Done { digest, bytes, .. } => {
                    let (d, size) = current.take().unwrap();
                    assert_eq!(*digest, d);
                    assert_eq!(*bytes, size);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(expected_layers.next().is_none() && current.is_none());
        assert!(progress_seen >= 2, "a 3 MB layer reports progress");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_options_are_passed_through_and_tags_unpack() {
    for (layout, _guard) in layouts().await {
        let layers = [tar_of(&[("dev:null", b""), ("f", b"f")])];
        let mut image = ImageBuilder::new(&layout);
        image.platform(&platform::parse("linux/amd64").unwrap());
        image
            .add_layer_from_tar(std::io::Cursor::new(layers[0].clone()), LayerSpec::new())
            .await
            .unwrap();
        image.write_and_tag("dev").await.unwrap();
        let out = tempfile::tempdir().unwrap();
        let report = unpack_tag(&layout, "dev", out.path(), &amd64())
            .await
            .unwrap();
        assert_eq!(
            report.layers[0].special_files + report.layers[0].devices_skipped,
            1
        );
        let refuse =
            amd64().with_apply_options(ApplyOptions::new().with_devices(DevicePolicy::Refuse));
        let out = tempfile::tempdir().unwrap();
        match unpack_tag(&layout, "dev", out.path(), &refuse).await {
            Err(Error::Layer { source, .. }) => assert!(
                matches!(
                    *source,
                    Error::Codec(ocikit_codec::Error::InvalidEntry { .. })
                ),
                "{source:?}"
            ),
            other => panic!("expected the device refused, got {other:?}"),
        }
        assert!(matches!(
            unpack_tag(&layout, "absent", out.path(), &amd64()).await,
            Err(Error::TagNotFound { .. })
        ));
    }
}
