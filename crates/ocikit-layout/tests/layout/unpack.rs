//! Unpacking images: whiteouts across layers, diffID and blob verification, strict configs,
//! unsupported media types, progress and apply options, all-or-nothing staged unpacks; on
//! every backend (the memory store
//! streams blobs through the async bridge, the filesystem store gives local files).
// Tests that need a codec are gated on its feature, so that `cargo test --no-default-features`
// runs the rest; what only they use is then unused.
#![cfg_attr(
    not(all(feature = "gzip", feature = "zstd")),
    allow(unused_imports, dead_code)
)]

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt;
use ocikit_codec::apply::{ApplyOptions, DevicePolicy};
use ocikit_codec::compression::Compression;
use ocikit_digest::oci_spec::image::Descriptor;
use ocikit_digest::{Digest, platform};
use ocikit_layout::{
    Error, Event, ImageBuilder, LayerSpec, Layout, Operation, PlatformQuery, Progress,
    UnpackOptions, unpack, unpack_staged, unpack_tag,
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

#[cfg(all(feature = "gzip", feature = "zstd"))]
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

#[cfg(feature = "gzip")]
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

#[cfg(all(feature = "gzip", feature = "zstd"))]
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

#[cfg(feature = "gzip")]
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

// All-or-nothing unpacks (`unpack_staged`): the target holds the whole image or is as it
// was; staging left by a killed process is removed by the next unpack of the same target.

/// The names in `dir` (not recursive), sorted.
fn listing(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// An uncompressed one-layer image whose last file is `last`, on a filesystem layout; and
/// the path of the layer's blob file.
async fn image_ending_in(
    layout: &Layout,
    guard: &tempfile::TempDir,
    last: &[u8],
) -> (Descriptor, std::path::PathBuf, Vec<u8>) {
    let tar = tar_of(&[("etc/", b""), ("big", &vec![3u8; 200_000]), ("last", last)]);
    let manifest = image_of(layout, std::slice::from_ref(&tar), Compression::None).await;
    let (m, _) = crate::image::config_json(layout, &manifest).await;
    let digest = Digest::parse(m["layers"][0]["digest"].as_str().unwrap()).unwrap();
    let path = guard.path().join("layout").join(digest.blob_path());
    (manifest, path, tar)
}

fn find(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_byte_flipped_at_the_end_of_a_layer_leaves_no_target() {
    for (layout, guard) in layouts().await {
        let Some(guard) = guard else { continue };
        let last = b"the last file of the layer";
        let (manifest, blob, tar) = image_ending_in(&layout, &guard, last).await;
        // Flip a byte of the last file's content: every entry is written before the blob's
        // digest is known to be wrong.
        let mut bytes = std::fs::read(&blob).unwrap();
        assert_eq!(bytes, tar);
        let at = find(&bytes, last) + 4;
        bytes[at] ^= 0x20;
        std::fs::write(&blob, &bytes).unwrap();

        // In place, the tree looks complete, the corrupt file included: what `unpack`
        // documents, and why `unpack_staged` exists.
        let in_place = tempfile::tempdir().unwrap();
        let err = unpack(&layout, &manifest, in_place.path(), &amd64())
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::Layer { source, .. }
                if matches!(**source, Error::Store(ocikit_store::Error::DigestMismatch { .. }))),
            "{err:?}"
        );
        assert_eq!(names(in_place.path()), ["big", "etc", "last"]);
        assert_ne!(std::fs::read(in_place.path().join("last")).unwrap(), last);

        let parent = tempfile::tempdir().unwrap();
        let target = parent.path().join("rootfs");
        let err = unpack_staged(&layout, &manifest, &target, &amd64())
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::Layer { source, .. }
                if matches!(**source, Error::Store(ocikit_store::Error::DigestMismatch { .. }))),
            "{err:?}"
        );
        assert!(!target.exists());
        assert!(
            listing(parent.path()).is_empty(),
            "{:?}",
            listing(parent.path())
        );

        // An existing empty target stays as it was.
        std::fs::create_dir(&target).unwrap();
        unpack_staged(&layout, &manifest, &target, &amd64())
            .await
            .unwrap_err();
        assert_eq!(listing(parent.path()), ["rootfs"]);
        assert!(listing(&target).is_empty());

        // Repaired, the same call unpacks the whole tree, replacing the empty directory.
        std::fs::write(&blob, &tar).unwrap();
        let report = unpack_staged(&layout, &manifest, &target, &amd64())
            .await
            .unwrap();
        assert_eq!(report.layers.len(), 1);
        assert_eq!(listing(parent.path()), ["rootfs"]);
        assert_eq!(names(&target), ["big", "etc", "last"]);
        assert_eq!(std::fs::read(target.join("last")).unwrap(), last);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_diff_id_leaves_no_target() {
    for (layout, _guard) in layouts().await {
        // The blob is sound; the config's diffID is not.
        let tar = tar_of(&[("a", b"a"), ("b", &vec![1u8; 50_000])]);
        let layer = layout.put_blob(TAR, &tar).await.unwrap();
        let claimed = Digest::sha256(b"not this layer");
        let manifest = put_manifest(
            &layout,
            &config_with(&[claimed.to_string()]),
            std::slice::from_ref(&layer),
        )
        .await;
        let parent = tempfile::tempdir().unwrap();
        let target = parent.path().join("deep").join("rootfs");
        match unpack_staged(&layout, &manifest, &target, &amd64()).await {
            Err(Error::Layer { source, .. }) => assert!(
                matches!(
                    *source,
                    Error::Codec(ocikit_codec::Error::DiffIdMismatch { .. })
                ),
                "{source:?}"
            ),
            other => panic!("expected a diffID mismatch, got {other:?}"),
        }
        assert!(!target.exists());
        // Missing parents are created only by a commit.
        assert!(
            listing(parent.path()).is_empty(),
            "{:?}",
            listing(parent.path())
        );
    }
}

#[cfg(feature = "gzip")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staged_targets_must_be_new_or_empty() {
    for (layout, _guard) in layouts().await {
        let manifest = image_of(&layout, &[tar_of(&[("f", b"f")])], Compression::Gzip).await;
        let parent = tempfile::tempdir().unwrap();
        let busy = parent.path().join("busy");
        std::fs::create_dir(&busy).unwrap();
        std::fs::write(busy.join("mine"), b"mine").unwrap();
        let file = parent.path().join("file");
        std::fs::write(&file, b"file").unwrap();
        for target in [&busy, &file] {
            match unpack_staged(&layout, &manifest, target, &amd64()).await {
                Err(Error::TargetExists { path }) => assert_eq!(&path, target),
                other => panic!("expected the target refused, got {other:?}"),
            }
        }
        assert_eq!(std::fs::read(busy.join("mine")).unwrap(), b"mine");
        assert_eq!(std::fs::read(&file).unwrap(), b"file");
        assert_eq!(listing(parent.path()), ["busy", "file"]);
        // A link to an empty directory is followed: the directory is replaced.
        let empty = parent.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        let link = parent.path().join("link");
        std::os::unix::fs::symlink(&empty, &link).unwrap();
        unpack_staged(&layout, &manifest, &link, &amd64())
            .await
            .unwrap();
        assert_eq!(names(&empty), ["f"]);
        assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());
        assert_eq!(listing(parent.path()), ["busy", "empty", "file", "link"]);
    }
}

#[cfg(feature = "gzip")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_staging_is_removed_and_live_staging_is_left_alone() {
    let (layout, _guard) = layouts().await.pop().unwrap();
    let manifest = image_of(&layout, &[tar_of(&[("f", b"f")])], Compression::Gzip).await;
    let parent = tempfile::tempdir().unwrap();
    let target = parent.path().join("rootfs");
    // Left by a killed unpack: a partial tree, its lock file held by nobody.
    let stale = parent.path().join(".rootfs.ocikit-staging-killed1");
    std::fs::create_dir_all(stale.join("rootfs/usr/bin")).unwrap();
    std::fs::write(stale.join("rootfs/usr/bin/half"), b"half").unwrap();
    std::fs::write(stale.join("lock"), b"").unwrap();
    // Killed before it made its lock file.
    let lockless = parent.path().join(".rootfs.ocikit-staging-killed2");
    std::fs::create_dir_all(lockless.join("rootfs")).unwrap();
    // A running unpack of the same target (here: a lock this test holds).
    let live = parent.path().join(".rootfs.ocikit-staging-running");
    std::fs::create_dir_all(live.join("rootfs")).unwrap();
    let held = std::fs::File::create(live.join("lock")).unwrap();
    held.lock().unwrap();
    // Another target's staging, stale or not, is not this unpack's business.
    let other = parent.path().join(".other.ocikit-staging-killed3");
    std::fs::create_dir_all(other.join("rootfs")).unwrap();

    unpack_staged(&layout, &manifest, &target, &amd64())
        .await
        .unwrap();
    assert_eq!(names(&target), ["f"]);
    assert_eq!(
        listing(parent.path()),
        [
            ".other.ocikit-staging-killed3",
            ".rootfs.ocikit-staging-running",
            "rootfs"
        ]
    );
    assert!(
        live.join("rootfs").is_dir(),
        "a live staging directory was touched"
    );
    drop(held);
    // Once its process is gone, it is stale too.
    std::fs::remove_dir_all(&target).unwrap();
    unpack_staged(&layout, &manifest, &target, &amd64())
        .await
        .unwrap();
    assert_eq!(
        listing(parent.path()),
        [".other.ocikit-staging-killed3", "rootfs"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_staged_unpack_leaves_no_target() {
    let (layout, _guard) = layouts().await.pop().unwrap();
    let big: Vec<u8> = (0..8_000_000u32).map(|i| (i % 251) as u8).collect();
    let manifest = image_of(
        &layout,
        &[tar_of(&[("a", &big)]), tar_of(&[("b", &big)])],
        Compression::None,
    )
    .await;
    let parent = tempfile::tempdir().unwrap();
    let target = parent.path().join("rootfs");
    let started = Arc::new(tokio::sync::Notify::new());
    let notify = started.clone();
    let options = amd64().with_progress(Progress::new(move |e| {
        if matches!(e, Event::Progress { .. }) {
            notify.notify_one();
        }
    }));
    tokio::select! {
        done = unpack_staged(&layout, &manifest, &target, &options) => {
            panic!("the unpack finished before it was dropped: {done:?}")
        }
        () = started.notified() => {}
    }
    // The staging directory is removed on a blocking thread: wait for it, with a deadline.
    ocikit_testkit::eventually(
        "the staging directory removed",
        std::time::Duration::from_secs(30),
        || async { listing(parent.path()).is_empty().then_some(()) },
    )
    .await;
    assert!(!target.exists());
}

#[cfg(feature = "gzip")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_entry_in_a_later_layer_leaves_no_target() {
    for (layout, _guard) in layouts().await {
        let layers = [
            tar_of(&[("etc/", b""), ("etc/a", b"a")]),
            tar_of(&[("f", b"f"), ("dev:null", b"")]),
        ];
        let manifest = image_of(&layout, &layers, Compression::Gzip).await;
        let refuse =
            amd64().with_apply_options(ApplyOptions::new().with_devices(DevicePolicy::Refuse));
        let parent = tempfile::tempdir().unwrap();
        let target = parent.path().join("rootfs");
        match unpack_staged(&layout, &manifest, &target, &refuse).await {
            Err(Error::Layer { source, .. }) => assert!(
                matches!(
                    *source,
                    Error::Codec(ocikit_codec::Error::InvalidEntry { .. })
                ),
                "{source:?}"
            ),
            other => panic!("expected the device refused, got {other:?}"),
        }
        assert!(
            listing(parent.path()).is_empty(),
            "{:?}",
            listing(parent.path())
        );
        // With devices allowed (or skipped), the same image unpacks whole.
        unpack_staged(&layout, &manifest, &target, &amd64())
            .await
            .unwrap();
        assert_eq!(listing(&target)[..2], ["etc", "f"]);
    }
}

/// A change to one layer's bytes: the layer, and what is done to them.
type Mangle = (Digest, fn(&mut Vec<u8>));

/// Layer blobs served as a registry download would be (`unpack_staged_from`), with one
/// layer's bytes changed by `mangle`, verified by the source itself when `verifies` (as the
/// registry client does) or left to the unpack.
struct Served {
    blobs: std::collections::HashMap<Digest, Vec<u8>>,
    mangle: Option<Mangle>,
    verifies: bool,
}

impl ocikit_layout::LayerSource for Served {
    fn open(
        &self,
        _index: usize,
        digest: &Digest,
        size: u64,
    ) -> std::io::Result<Box<dyn std::io::Read + Send>> {
        let mut bytes = self.blobs[digest].clone();
        if let Some((bad, mangle)) = &self.mangle
            && bad == digest
        {
            mangle(&mut bytes);
        }
        let reader = std::io::Cursor::new(bytes);
        if self.verifies {
            let verifying = ocikit_digest::VerifyingReader::new(reader, digest.clone(), size)
                .map_err(std::io::Error::other)?;
            Ok(Box::new(verifying))
        } else {
            Ok(Box::new(reader))
        }
    }

    fn verifies(&self) -> bool {
        self.verifies
    }
}

/// Two gzip layers (the second with whiteouts, an opaque directory and files big enough
/// for many chunks) unpacked from a [`Served`] source: the same tree as from the layout,
/// whoever verifies; a flipped byte, a truncated blob or a wrong diffID fail the layer
/// that has them with a typed error naming its digest, and leave no target.
#[cfg(feature = "gzip")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layers_from_a_source_verify_and_leave_no_target_when_bad() {
    let (layout, _guard) = layouts().await.remove(0);
    let big: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let lower = tar_of(&[
        ("etc/", b""),
        ("etc/passwd", b"root:x:0:0"),
        ("opt/", b""),
        ("opt/a", b"a"),
        ("opt/b", &big),
    ]);
    let upper = tar_of(&[
        ("etc/.wh.passwd", b""),
        ("opt/.wh..wh..opq", b""),
        ("opt/c", &big[1000..]),
        ("usr/", b""),
        ("usr/big", &big),
    ]);
    let manifest = image_of(&layout, &[lower, upper], Compression::Gzip).await;
    let (m, config) = crate::image::config_json(&layout, &manifest).await;
    let mut blobs = std::collections::HashMap::new();
    let mut digests = Vec::new();
    for layer in m["layers"].as_array().unwrap() {
        let descriptor: Descriptor = serde_json::from_value(layer.clone()).unwrap();
        let digest = Digest::parse(layer["digest"].as_str().unwrap()).unwrap();
        blobs.insert(
            digest.clone(),
            crate::image::blob(&layout, &descriptor).await,
        );
        digests.push(digest);
    }
    let reference = tempfile::tempdir().unwrap();
    unpack(&layout, &manifest, reference.path(), &amd64())
        .await
        .unwrap();
    let expected = snapshot(reference.path());
    assert_eq!(
        expected.keys().collect::<Vec<_>>(),
        ["etc", "opt", "opt/c", "usr", "usr/big"]
    );

    let from = |mangle: Option<Mangle>, verifies: bool| {
        Arc::new(Served {
            blobs: blobs.clone(),
            mangle,
            verifies,
        }) as Arc<dyn ocikit_layout::LayerSource>
    };
    for verifies in [false, true] {
        let parent = tempfile::tempdir().unwrap();
        let target = parent.path().join("rootfs");
        let report = ocikit_layout::unpack_staged_from(
            &layout,
            &manifest,
            &target,
            &amd64(),
            from(None, verifies),
        )
        .await
        .unwrap();
        assert_eq!(report.layers.len(), 2);
        assert_eq!(snapshot(&target), expected, "verifies: {verifies}");

        let flip: fn(&mut Vec<u8>) = |bytes| {
            let at = bytes.len() / 2;
            bytes[at] ^= 0x01;
        };
        let truncate: fn(&mut Vec<u8>) = |bytes| bytes.truncate(bytes.len() - 20);
        for (what, mangle) in [("flipped", flip), ("truncated", truncate)] {
            let parent = tempfile::tempdir().unwrap();
            let target = parent.path().join("rootfs");
            let err = ocikit_layout::unpack_staged_from(
                &layout,
                &manifest,
                &target,
                &amd64(),
                from(Some((digests[1].clone(), mangle)), verifies),
            )
            .await
            .unwrap_err();
            let Error::Layer { digest, source } = &err else {
                panic!("{what}, verifies {verifies}: {err:?}");
            };
            assert_eq!(digest, &digests[1], "{what}");
            // Verified here: the store's mismatch, even when the decompressor noticed
            // first. Verified by the source: its error, read to the end of the blob.
            match (verifies, &**source) {
                (false, Error::Store(ocikit_store::Error::DigestMismatch { expected, .. })) => {
                    assert_eq!(expected, &digests[1]);
                }
                (false, Error::Store(ocikit_store::Error::SizeMismatch { .. })) => {
                    assert_eq!(what, "truncated");
                }
                (true, Error::Store(ocikit_store::Error::Stream(e))) => {
                    let inner = e
                        .get_ref()
                        .and_then(|e| e.downcast_ref::<ocikit_digest::Error>());
                    assert!(
                        matches!(
                            inner,
                            Some(
                                ocikit_digest::Error::DigestMismatch { .. }
                                    | ocikit_digest::Error::SizeMismatch { .. }
                            )
                        ),
                        "{what}: {e:?}"
                    );
                }
                (_, other) => panic!("{what}, verifies {verifies}: {other:?}"),
            }
            assert!(!target.exists(), "{what}");
            assert!(listing(parent.path()).is_empty(), "{what}");
        }
    }

    // A source that says it verifies but hands out a short blob: still refused (the count
    // is checked), or the decompressor sees the truncation first.
    let parent = tempfile::tempdir().unwrap();
    let target = parent.path().join("rootfs");
    let short = Served {
        blobs: blobs.clone(),
        mangle: Some((digests[1].clone(), |bytes| bytes.truncate(bytes.len() - 20))),
        verifies: false,
    };
    struct Claims(Served);
    impl ocikit_layout::LayerSource for Claims {
        fn open(
            &self,
            index: usize,
            digest: &Digest,
            size: u64,
        ) -> std::io::Result<Box<dyn std::io::Read + Send>> {
            self.0.open(index, digest, size)
        }
        fn verifies(&self) -> bool {
            true
        }
    }
    let err = ocikit_layout::unpack_staged_from(
        &layout,
        &manifest,
        &target,
        &amd64(),
        Arc::new(Claims(short)),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, Error::Layer { digest, source } if digest == &digests[1] && matches!(
            **source,
            Error::Store(ocikit_store::Error::SizeMismatch { .. })
                | Error::Codec(ocikit_codec::Error::Corrupt { .. })
        )),
        "{err:?}"
    );
    assert!(!target.exists());

    // The config names another diffID for the upper layer: refused after its last byte.
    let mut wrong = config.clone();
    wrong["rootfs"]["diff_ids"][1] = json!(Digest::sha256(b"not this layer").to_string());
    let layers: Vec<Descriptor> = m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| serde_json::from_value(l.clone()).unwrap())
        .collect();
    let manifest = put_manifest(&layout, &wrong, &layers).await;
    let parent = tempfile::tempdir().unwrap();
    let target = parent.path().join("rootfs");
    let err =
        ocikit_layout::unpack_staged_from(&layout, &manifest, &target, &amd64(), from(None, true))
            .await
            .unwrap_err();
    assert!(
        matches!(&err, Error::Layer { digest, source } if digest == &digests[1] && matches!(
            **source,
            Error::Codec(ocikit_codec::Error::DiffIdMismatch { .. })
        )),
        "{err:?}"
    );
    assert!(!target.exists());
    assert!(listing(parent.path()).is_empty());
}
