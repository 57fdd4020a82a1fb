//! `append`: layers from directories and tar files put on an image, on a layout, an
//! oci-archive and a registry served in-process (whose traffic is counted at the server),
//! and bad input refused with nothing written.

use std::path::{Path, PathBuf};

use ocikit_codec::compression::Compression;
use ocikit_transport::{AppendOptions, CopyOptions, EditOptions, Error, LayerSource, append, copy};
use serde_json::Value;

use crate::registry::{docker, plain};
use crate::surgery::{big_image, blob_count, counted_registry, read};
use crate::{at, files, image, open};

/// A directory holding one file, and a tar file holding another (and a directory).
fn sources(dir: &Path) -> (PathBuf, PathBuf) {
    let tree = dir.join("tree");
    std::fs::create_dir_all(tree.join("etc")).unwrap();
    std::fs::write(tree.join("etc/appended.conf"), "mode = appended\n").unwrap();
    let tar = dir.join("extra.tar");
    std::fs::write(
        &tar,
        ocikit_testkit::tarball::tar_of(&[("opt/extra/readme.txt", b"from a tar file\n")]),
    )
    .unwrap();
    (tree, tar)
}

fn history_created_by(config: &Value) -> Vec<Option<String>> {
    config["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["created_by"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn layers_are_appended_to_a_layout_image_and_through_an_archive() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("images");
    let (layout, root) = image(&path, "v1").await;
    let (manifest, config) = read(&layout, &root).await;
    let (tree, tar) = sources(dir.path());
    let layers = [LayerSource::from_path(&tree), LayerSource::from_path(&tar)];
    assert!(matches!(layers[0], LayerSource::Directory(_)));
    assert!(matches!(layers[1], LayerSource::TarFile(_)));
    let options = AppendOptions::new().with_created_by(Some("ocikit append".into()));

    // Within the layout: two new layers, the config and the manifest written, nothing else.
    let before = blob_count(&path);
    let report = append(
        &at("oci", &path, ":v1"),
        &at("oci", &path, ":v2"),
        &layers,
        &options,
    )
    .await
    .unwrap();
    assert_eq!(blob_count(&path), before + 4);
    assert_eq!(report.blobs_written, 4, "{report:?}");
    // The manifest, the config and four layers.
    assert_eq!(report.blobs, 6);
    let new_root = layout.resolve("v2").await.unwrap();
    assert_eq!(new_root.digest().to_string(), report.digest);
    assert_eq!(report.source_digest, root.digest().to_string());
    let (new_manifest, new_config) = read(&layout, &new_root).await;
    assert_eq!(new_manifest.layers().len(), 4);
    assert_eq!(&new_manifest.layers()[..2], &manifest.layers()[..]);
    let diff_ids = new_config["rootfs"]["diff_ids"].as_array().unwrap();
    assert_eq!(diff_ids.len(), 4);
    assert_eq!(
        diff_ids[..2],
        config["rootfs"]["diff_ids"].as_array().unwrap()[..]
    );
    let created_by = history_created_by(&new_config);
    assert_eq!(created_by.len(), 4);
    assert_eq!(created_by[2].as_deref(), Some("ocikit append"));
    assert_eq!(created_by[3].as_deref(), Some("ocikit append"));
    assert!(new_config["history"][3]["created"].is_string());
    assert_eq!(new_config["config"], config["config"]);
    for layer in &new_manifest.layers()[2..] {
        assert_eq!(
            layer.media_type().to_string(),
            "application/vnd.oci.image.layer.v1.tar+gzip"
        );
    }
    // The unpacked tree: the source's files and both new ones.
    let mut expected = crate::unpacked(&layout, &root).await;
    expected.push(("etc/appended.conf".into(), b"mode = appended\n".to_vec()));
    expected.push(("opt/extra/readme.txt".into(), b"from a tar file\n".to_vec()));
    expected.sort();
    assert_eq!(crate::unpacked(&layout, &new_root).await, expected);

    // Layout -> oci-archive, uncompressed layers; then archive -> new layout.
    let archive = dir.path().join("app.tar");
    let uncompressed = options.clone().with_compression(Compression::None);
    let report = append(
        &at("oci", &path, ":v1"),
        &at("oci-archive", &archive, ":v3"),
        &layers[..1],
        &uncompressed,
    )
    .await
    .unwrap();
    let back = dir.path().join("back");
    copy(
        &at("oci-archive", &archive, ":v3"),
        &at("oci", &back, ":v3"),
        &CopyOptions::new(),
    )
    .await
    .unwrap();
    let back_layout = open(&back).await;
    let back_root = back_layout.resolve("v3").await.unwrap();
    assert_eq!(back_root.digest().to_string(), report.digest);
    let (m3, _) = read(&back_layout, &back_root).await;
    assert_eq!(m3.layers().len(), 3);
    assert_eq!(
        m3.layers()[2].media_type().to_string(),
        "application/vnd.oci.image.layer.v1.tar"
    );

    // An oci-archive source, to a new layout: the archive's image plus the tar layer.
    let out = dir.path().join("out");
    append(
        &at("oci-archive", &archive, ":v3"),
        &at("oci", &out, ":v4"),
        &layers[1..],
        &AppendOptions::new(),
    )
    .await
    .unwrap();
    let out_layout = open(&out).await;
    let out_root = out_layout.resolve("v4").await.unwrap();
    let (m4, c4) = read(&out_layout, &out_root).await;
    assert_eq!(m4.layers().len(), 4);
    assert_eq!(c4["rootfs"]["diff_ids"].as_array().unwrap().len(), 4);
    assert_eq!(
        m4.layers()[3].media_type().to_string(),
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    assert_eq!(
        crate::unpacked(&out_layout, &out_root).await,
        crate::unpacked(&layout, &new_root).await
    );
    // The source layout still has its one original tag and the v2 of the first append.
    let tags = open(&path).await.tags().await.unwrap();
    assert_eq!(tags.len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn within_a_registry_no_base_layer_is_downloaded_or_uploaded_again() {
    const LAYER: usize = 32 << 20;
    let (addr, traffic) = counted_registry().await;
    let dir = tempfile::tempdir().unwrap();
    let (layout, root) = big_image(&dir.path().join("src"), "v1", LAYER).await;
    let (manifest, _) = read(&layout, &root).await;
    let base_layer = manifest.layers()[0].digest().to_string();
    copy(
        &at("oci", &dir.path().join("src"), ":v1"),
        &docker(&addr, "team/app:v1"),
        &CopyOptions::new()
            .with_source(plain())
            .with_destination(plain()),
    )
    .await
    .unwrap();
    let (tree, _) = sources(dir.path());
    let options = AppendOptions::new().with_edit(
        EditOptions::new()
            .with_source(plain())
            .with_destination(plain()),
    );
    for destination in ["team/app:v2", "other/app:v1"] {
        traffic.reset();
        let report = append(
            &docker(&addr, "team/app:v1"),
            &docker(&addr, destination),
            &[LayerSource::from_path(&tree)],
            &options,
        )
        .await
        .unwrap();
        let (uploaded, downloaded) = traffic.totals();
        eprintln!("{destination}: uploaded {uploaded} B, downloaded {downloaded} B, {report:?}");
        assert!(
            uploaded < 1 << 20,
            "{destination}: uploaded {uploaded} bytes"
        );
        assert!(
            downloaded < 1 << 20,
            "{destination}: downloaded {downloaded} bytes"
        );
        // The base layer was named (HEAD, or a mount) but never read or written.
        for request in traffic.touching(&base_layer) {
            assert!(
                request.starts_with("HEAD ") || request.starts_with("POST "),
                "{destination}: {request}"
            );
        }
        // The new layer and the config were uploaded; the base layer skipped or mounted.
        assert_eq!(report.blobs_written, 2, "{destination}: {report:?}");
        assert_eq!(report.blobs, 3, "{report:?}");
        if destination.starts_with("other/") {
            assert_eq!(report.blobs_mounted, 1, "{report:?}");
        } else {
            assert_eq!(report.blobs_skipped, 1, "{report:?}");
        }
        // Read back through a pull into a layout: the base layer, then the new one.
        let pulled = dir.path().join(destination.replace(['/', ':'], "-"));
        copy(
            &docker(&addr, destination),
            &at("oci", &pulled, ":pulled"),
            &CopyOptions::new().with_source(plain()),
        )
        .await
        .unwrap();
        let local = open(&pulled).await;
        let pushed = local.resolve("pulled").await.unwrap();
        assert_eq!(pushed.digest().to_string(), report.digest);
        let (new_manifest, config) = read(&local, &pushed).await;
        assert_eq!(new_manifest.layers().len(), 2);
        assert_eq!(new_manifest.layers()[0], manifest.layers()[0]);
        assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 2);
        let unpacked = crate::unpacked(&local, &pushed).await;
        assert!(
            unpacked
                .iter()
                .any(|(p, b)| p == Path::new("etc/appended.conf") && b == b"mode = appended\n")
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_layers_are_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("images");
    image(&path, "v1").await;
    let (tree, _) = sources(dir.path());
    let not_tar = dir.path().join("notes.txt");
    std::fs::write(
        &not_tar,
        "this is not a tar file, only a line of text\n".repeat(40),
    )
    .unwrap();
    let before = blob_count(&path);
    let snapshot = files(&path);
    let options = AppendOptions::new();

    // A file that is not a tar, into the same layout and into a new one.
    for destination in [
        at("oci", &path, ":v2"),
        at("oci", &dir.path().join("new"), ":v2"),
    ] {
        let err = append(
            &at("oci", &path, ":v1"),
            &destination,
            &[
                LayerSource::from_path(&tree),
                LayerSource::from_path(&not_tar),
            ],
            &options,
        )
        .await
        .unwrap_err();
        let Error::LayerSource { path: named, .. } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(named, &not_tar);
        let chain = std::iter::successors(Some(&err as &dyn std::error::Error), |e| e.source())
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(": ");
        assert!(chain.contains("tar"), "{chain}");
    }
    assert!(!dir.path().join("new").exists());
    // A layer that does not exist; no layers at all; a destination without a tag.
    let missing = append(
        &at("oci", &path, ":v1"),
        &at("oci", &path, ":v2"),
        &[LayerSource::from_path(dir.path().join("nothing-here"))],
        &options,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            missing,
            Error::LayerSource {
                source: ocikit_layout::Error::LayerSourceNotFound { .. },
                ..
            }
        ),
        "{missing:?}"
    );
    assert!(matches!(
        append(
            &at("oci", &path, ":v1"),
            &at("oci", &path, ":v2"),
            &[],
            &options
        )
        .await,
        Err(Error::NothingToAppend)
    ));
    assert!(matches!(
        append(
            &at("oci", &path, ":v1"),
            &at("oci", &path, ""),
            &[LayerSource::from_path(&tree)],
            &options
        )
        .await,
        Err(Error::EditNeedsTag { .. })
    ));
    assert_eq!(blob_count(&path), before);
    assert_eq!(files(&path), snapshot);
    let tags = open(&path).await.tags().await.unwrap();
    assert_eq!(tags.len(), 1);
}

/// The example image under Docker schema 2 media types, tagged `docker` in `layout`.
async fn docker_image(
    layout: &ocikit_layout::Layout,
    root: &ocikit_digest::oci_spec::image::Descriptor,
) {
    use ocikit_digest::media_type;
    let mut manifest: Value =
        serde_json::from_slice(&layout.read_blob(root).await.unwrap()).unwrap();
    manifest["mediaType"] = media_type::DOCKER_MANIFEST.into();
    manifest["config"]["mediaType"] = media_type::DOCKER_CONFIG.into();
    for layer in manifest["layers"].as_array_mut().unwrap() {
        layer["mediaType"] = media_type::DOCKER_LAYER_GZIP.into();
    }
    let docker = layout
        .put_json(media_type::DOCKER_MANIFEST, &manifest)
        .await
        .unwrap();
    layout.set_tag("docker", &docker).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_docker_manifest_gets_docker_layer_types() {
    use ocikit_digest::media_type;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("images");
    let (layout, root) = image(&path, "v1").await;
    docker_image(&layout, &root).await;
    let (tree, tar) = sources(dir.path());
    append(
        &at("oci", &path, ":docker"),
        &at("oci", &path, ":more"),
        &[LayerSource::from_path(&tree)],
        &AppendOptions::new(),
    )
    .await
    .unwrap();
    append(
        &at("oci", &path, ":more"),
        &at("oci", &path, ":plain"),
        &[LayerSource::from_path(&tar)],
        &AppendOptions::new().with_compression(Compression::None),
    )
    .await
    .unwrap();
    let plain_root = layout.resolve("plain").await.unwrap();
    assert_eq!(
        plain_root.media_type().to_string(),
        media_type::DOCKER_MANIFEST
    );
    let (manifest, config) = read(&layout, &plain_root).await;
    let types: Vec<String> = manifest
        .layers()
        .iter()
        .map(|l| l.media_type().to_string())
        .collect();
    assert_eq!(
        types,
        [
            media_type::DOCKER_LAYER_GZIP,
            media_type::DOCKER_LAYER_GZIP,
            media_type::DOCKER_LAYER_GZIP,
            media_type::DOCKER_LAYER
        ]
    );
    assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 4);
    assert_eq!(crate::unpacked(&layout, &plain_root).await.len(), {
        let mut n = crate::unpacked(&layout, &root).await.len();
        n += 2;
        n
    });
}

/// zstd has no Docker schema 2 layer type: refused, nothing tagged.
#[cfg(feature = "zstd")]
#[tokio::test(flavor = "multi_thread")]
async fn zstd_layers_are_refused_for_a_docker_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("images");
    let (layout, root) = image(&path, "v1").await;
    docker_image(&layout, &root).await;
    let (tree, _) = sources(dir.path());
    let before = blob_count(&path);
    let err = append(
        &at("oci", &path, ":docker"),
        &at("oci", &path, ":zstd"),
        &[LayerSource::from_path(&tree)],
        &AppendOptions::new().with_compression(Compression::Zstd),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::Edit { .. }), "{err:?}");
    assert!(layout.resolve("zstd").await.is_err());
    // The zstd layer was refused before it was put in the layout.
    assert_eq!(blob_count(&path), before);
}
