//! `flatten`: a stack of layers (whiteouts, an opaque directory, a file replaced) squashed
//! into one, on a layout, an oci-archive and a registry served in-process; the unpacked tree
//! is the source's; bad input refused with nothing written.

use std::path::Path;

use ocikit_codec::compression::Compression;
use ocikit_digest::oci_spec::image::Descriptor;
use ocikit_layout::{ImageBuilder, LayerSpec, Layout};
use ocikit_store::FsStore;
use ocikit_testkit::tarball::{Entry, archive};
use ocikit_transport::{CopyOptions, EditOptions, Error, FlattenOptions, copy, flatten};

use crate::registry::{docker, plain, serve};
use crate::surgery::read;
use crate::{at, open, unpacked};

/// A layout at `dir` with a three-layer image tagged `tag`: files, then whiteouts and an
/// opaque directory, then a file replaced.
async fn stacked(dir: &Path, tag: &str) -> (Layout, Descriptor) {
    let layout = Layout::create(FsStore::open(dir).await.unwrap())
        .await
        .unwrap();
    let mut builder = ImageBuilder::new(&layout);
    builder
        .platform(&ocikit_digest::platform::parse("linux/amd64").unwrap())
        .cmd(["/bin/sh"]);
    let layers = [
        archive(&[
            Entry::dir("a/"),
            Entry::file("a/one", "one\n"),
            Entry::file("a/two", "two\n"),
            Entry::dir("b/"),
            Entry::file("b/x", "x\n"),
            Entry::file("keep", "first\n"),
        ]),
        archive(&[
            Entry::dir("a/"),
            Entry::file("a/.wh.one", ""),
            Entry::dir("b/"),
            Entry::file("b/.wh..wh..opq", ""),
            Entry::file("b/y", "y\n"),
            Entry::file("new", "new\n"),
        ]),
        archive(&[Entry::file("keep", "second\n")]),
    ];
    for tar in layers {
        builder
            .add_layer_from_tar(std::io::Cursor::new(tar), LayerSpec::new())
            .await
            .unwrap();
    }
    let root = builder.write_and_tag(tag).await.unwrap();
    (layout, root)
}

/// The tree the stack gives.
fn expected() -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut files = vec![
        ("a/two".into(), b"two\n".to_vec()),
        ("b/y".into(), b"y\n".to_vec()),
        ("keep".into(), b"second\n".to_vec()),
        ("new".into(), b"new\n".to_vec()),
    ];
    files.sort();
    files
}

/// Checks that `root` in `layout` is one layer, one diffID, one history entry, and
/// unpacks to the stack's tree.
async fn check_flat(layout: &Layout, root: &Descriptor, created_by: Option<&str>) {
    let (manifest, config) = read(layout, root).await;
    assert_eq!(manifest.layers().len(), 1);
    assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 1);
    let history = config["history"].as_array().unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["created_by"].as_str(), created_by);
    assert_eq!(config["config"]["Cmd"], serde_json::json!(["/bin/sh"]));
    assert_eq!(unpacked(layout, root).await, expected());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_layer_stack_is_flattened_on_a_layout_and_through_an_archive() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("images");
    let (layout, root) = stacked(&path, "v1").await;
    // The source unpacks to the stack's tree (what the flattened image must give).
    assert_eq!(unpacked(&layout, &root).await, expected());
    let options = FlattenOptions::new().with_created_by(Some("ocikit flatten".into()));

    let report = flatten(
        &at("oci", &path, ":v1"),
        &at("oci", &path, ":flat"),
        &options,
    )
    .await
    .unwrap();
    assert_eq!(report.source_digest, root.digest().to_string());
    let flat = layout.resolve("flat").await.unwrap();
    assert_eq!(flat.digest().to_string(), report.digest);
    check_flat(&layout, &flat, Some("ocikit flatten")).await;
    let (manifest, _) = read(&layout, &flat).await;
    assert_eq!(
        manifest.layers()[0].media_type().to_string(),
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );

    // Layout -> oci-archive (uncompressed), then the archive -> a new layout.
    let archive = dir.path().join("flat.tar");
    flatten(
        &at("oci", &path, ":v1"),
        &at("oci-archive", &archive, ":flat"),
        &FlattenOptions::new().with_compression(Compression::None),
    )
    .await
    .unwrap();
    let out = dir.path().join("out");
    let report = flatten(
        &at("oci-archive", &archive, ":flat"),
        &at("oci", &out, ":again"),
        &FlattenOptions::new(),
    )
    .await
    .unwrap();
    let out_layout = open(&out).await;
    let again = out_layout.resolve("again").await.unwrap();
    assert_eq!(again.digest().to_string(), report.digest);
    check_flat(&out_layout, &again, None).await;
    // The source is as it was.
    assert_eq!(layout.resolve("v1").await.unwrap().digest(), root.digest());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_registry_image_is_flattened_within_the_registry_and_out_of_it() {
    let addr = serve().await;
    let dir = tempfile::tempdir().unwrap();
    stacked(&dir.path().join("src"), "v1").await;
    copy(
        &at("oci", &dir.path().join("src"), ":v1"),
        &docker(&addr, "team/app:v1"),
        &CopyOptions::new()
            .with_source(plain())
            .with_destination(plain()),
    )
    .await
    .unwrap();
    let options = FlattenOptions::new().with_edit(
        EditOptions::new()
            .with_source(plain())
            .with_destination(plain()),
    );
    // Within the registry: the new layer, the config and the manifest uploaded.
    let report = flatten(
        &docker(&addr, "team/app:v1"),
        &docker(&addr, "team/app:flat"),
        &options,
    )
    .await
    .unwrap();
    assert_eq!(report.blobs_written, 2, "{report:?}");
    assert_eq!(report.source, docker(&addr, "team/app:v1").to_string());
    let pulled = dir.path().join("pulled");
    copy(
        &docker(&addr, "team/app:flat"),
        &at("oci", &pulled, ":flat"),
        &CopyOptions::new().with_source(plain()),
    )
    .await
    .unwrap();
    let local = open(&pulled).await;
    let flat = local.resolve("flat").await.unwrap();
    assert_eq!(flat.digest().to_string(), report.digest);
    check_flat(&local, &flat, None).await;

    // Registry -> layout.
    let out = dir.path().join("out");
    flatten(
        &docker(&addr, "team/app:v1"),
        &at("oci", &out, ":flat"),
        &options,
    )
    .await
    .unwrap();
    let out_layout = open(&out).await;
    let flat = out_layout.resolve("flat").await.unwrap();
    check_flat(&out_layout, &flat, None).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_layer_or_a_missing_tag_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("images");
    let (layout, root) = stacked(&path, "v1").await;
    let (manifest, _) = read(&layout, &root).await;
    // The middle layer's blob rewritten with other bytes of the same size.
    let layer = manifest.layers()[1].digest().to_string();
    let (algorithm, hex) = layer.split_once(':').unwrap();
    let blob = path.join("blobs").join(algorithm).join(hex);
    let mut bytes = std::fs::read(&blob).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::remove_file(&blob).unwrap();
    std::fs::write(&blob, &bytes).unwrap();
    let before = crate::files(&path);

    for destination in [
        at("oci", &path, ":flat"),
        at("oci", &dir.path().join("new"), ":flat"),
    ] {
        let err = flatten(
            &at("oci", &path, ":v1"),
            &destination,
            &FlattenOptions::new(),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, Error::Flatten { .. }), "{err:?}");
    }
    assert!(matches!(
        flatten(
            &at("oci", &path, ":v1"),
            &at("oci", &path, ""),
            &FlattenOptions::new()
        )
        .await,
        Err(Error::EditNeedsTag { .. })
    ));
    assert!(!dir.path().join("new").exists());
    assert_eq!(crate::files(&path), before);
}
