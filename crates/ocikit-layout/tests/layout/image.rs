//! Building images and indexes: layers from directories, tar streams and blobs, config
//! edits, `from`, reproducibility, and failures that publish nothing; on every backend.
//! Also the helpers the platform and unpack tests share.
// Tests that need a codec are gated on its feature, so that `cargo test --no-default-features`
// runs the rest; what only they use is then unused.
#![cfg_attr(
    not(all(feature = "gzip", feature = "zstd")),
    allow(unused_imports, dead_code)
)]

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;

use futures::TryStreamExt;
use ocikit_codec::compression::Compression;
use ocikit_digest::oci_spec::image::Descriptor;
use ocikit_digest::{Digest, platform};
use ocikit_layout::image::BASE_DIGEST_ANNOTATION;
use ocikit_layout::{
    Error, ImageBuilder, IndexBuilder, LayerSpec, Layout, PlatformQuery, UnpackOptions, resolve,
    unpack,
};
use ocikit_store::{MemoryStore, Store};
use serde_json::{Value, json};

pub(crate) use crate::support::stores;

/// A fresh layout on each kind of store.
pub(crate) async fn layouts() -> Vec<(Layout, Option<tempfile::TempDir>)> {
    let mut out = Vec::new();
    for (store, guard) in stores().await {
        out.push((Layout::create(store).await.unwrap(), guard));
    }
    out
}

/// One entry of a tree as `lstat` and `read` see it, independently of the code under test.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Node {
    Dir {
        mode: u32,
        uid: u32,
        gid: u32,
    },
    File {
        mode: u32,
        uid: u32,
        gid: u32,
        mtime: i64,
        content: Vec<u8>,
    },
    Symlink {
        target: std::path::PathBuf,
    },
}

/// Every path below `root` (root excluded), sorted.
pub(crate) fn snapshot(root: &Path) -> BTreeMap<String, Node> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Node>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let mode = meta.permissions().mode() & 0o7777;
            let node = if meta.file_type().is_symlink() {
                Node::Symlink {
                    target: std::fs::read_link(&path).unwrap(),
                }
            } else if meta.is_dir() {
                walk(root, &path, out);
                Node::Dir {
                    mode,
                    uid: meta.uid(),
                    gid: meta.gid(),
                }
            } else {
                Node::File {
                    mode,
                    uid: meta.uid(),
                    gid: meta.gid(),
                    mtime: meta.mtime(),
                    content: std::fs::read(&path).unwrap(),
                }
            };
            out.insert(rel, node);
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// A small tree: nested directories, files with several modes, symlinks (relative, absolute
/// and dangling), an empty directory.
pub(crate) fn make_tree(root: &Path) {
    let mk = |p: &str| std::fs::create_dir_all(root.join(p)).unwrap();
    let write = |p: &str, content: &[u8], mode: u32| {
        std::fs::write(root.join(p), content).unwrap();
        std::fs::set_permissions(root.join(p), std::fs::Permissions::from_mode(mode)).unwrap();
    };
    mk("etc");
    mk("usr/bin");
    mk("var/empty");
    write("etc/motd", b"welcome\n", 0o644);
    write("etc/secret", b"s3cret", 0o600);
    write("usr/bin/tool", b"#!/bin/sh\necho hi\n", 0o755);
    write(
        "big.bin",
        &(0..200_000u32)
            .map(|i| (i * 7 % 251) as u8)
            .collect::<Vec<_>>(),
        0o640,
    );
    symlink("../etc/motd", root.join("usr/motd-link")).unwrap();
    symlink("/etc/motd", root.join("abs-link")).unwrap();
    symlink("nowhere", root.join("dangling")).unwrap();
    std::fs::set_permissions(
        root.join("var/empty"),
        std::fs::Permissions::from_mode(0o711),
    )
    .unwrap();
}

/// The blob a descriptor points at, read straight from the store.
pub(crate) async fn blob(layout: &Layout, d: &Descriptor) -> Vec<u8> {
    layout.read_blob(d).await.unwrap().to_vec()
}

/// The config of the manifest `d` points at, as JSON.
pub(crate) async fn config_json(layout: &Layout, d: &Descriptor) -> (Value, Value) {
    let manifest: Value = serde_json::from_slice(&blob(layout, d).await).unwrap();
    let config_descriptor: Descriptor = serde_json::from_value(manifest["config"].clone()).unwrap();
    let config: Value = serde_json::from_slice(&blob(layout, &config_descriptor).await).unwrap();
    (manifest, config)
}

pub(crate) async fn blob_count(layout: &Layout) -> usize {
    layout
        .store()
        .list()
        .try_collect::<Vec<_>>()
        .await
        .unwrap()
        .len()
}

fn linux_amd64() -> PlatformQuery {
    PlatformQuery::new(&platform::parse("linux/amd64").unwrap())
}

#[cfg(all(feature = "gzip", feature = "zstd"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_built_then_unpacked_is_the_same_tree() {
    let tree = tempfile::tempdir().unwrap();
    make_tree(tree.path());
    let expected = snapshot(tree.path());
    for (layout, _guard) in layouts().await {
        for compression in [Compression::Gzip, Compression::Zstd, Compression::None] {
            let mut image = ImageBuilder::new(&layout);
            // Whatever the environment says: mtimes are compared below.
            image
                .platform(&platform::parse("linux/amd64").unwrap())
                .source_date_epoch(None);
            let layer = image
                .add_layer_from_dir(tree.path(), LayerSpec::new().compression(compression))
                .await
                .unwrap();
            let manifest = image.write().await.unwrap();
            assert_eq!(
                platform::format(manifest.platform().as_ref().unwrap()),
                "linux/amd64"
            );
            let out = tempfile::tempdir().unwrap();
            let report = unpack(
                &layout,
                &manifest,
                out.path().join("rootfs"),
                &UnpackOptions::new().with_platform(linux_amd64()),
            )
            .await
            .unwrap();
            assert_eq!(report.layers.len(), 1);
            assert_eq!(
                snapshot(&out.path().join("rootfs")),
                expected,
                "{compression:?}: the unpacked tree differs"
            );
            // The layer's digest covers the stored bytes; for an uncompressed layer the
            // diffID is the same digest.
            let bytes = blob(&layout, &layer).await;
            assert_eq!(
                layer.digest().to_string(),
                Digest::sha256(&bytes).to_string()
            );
            let (_, config) = config_json(&layout, &manifest).await;
            if compression == Compression::None {
                assert_eq!(config["rootfs"]["diff_ids"][0], layer.digest().to_string());
            }
            assert_eq!(
                config["rootfs"]["diff_ids"][0],
                report.layers[0].diff_id.to_string()
            );
        }
    }
}

#[cfg(feature = "gzip")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_fields_history_and_manifest_are_written() {
    for (layout, _guard) in layouts().await {
        let mut image = ImageBuilder::new(&layout);
        image
            .platform(&platform::parse("windows(10.0.17763.1234)/arm64/v8").unwrap())
            .source_date_epoch(Some(1_700_000_000))
            .entrypoint(["/bin/app", "--serve"])
            .cmd(["--port", "8080"])
            .env("PATH", "/usr/bin")
            .env("LANG", "C")
            .env("PATH", "/usr/local/bin:/usr/bin")
            .env("GONE", "x")
            .remove_env("GONE")
            .working_dir("/srv")
            .user("1000:1000")
            .label("org.example.team", "infra")
            .label("drop", "me")
            .remove_label("drop")
            .expose("8080/tcp")
            .expose("53/udp")
            .volume("/data")
            .stop_signal("SIGQUIT")
            .author("ocikit tests")
            .exec_field("Healthcheck", json!({"Test": ["CMD", "true"]}))
            .annotation("org.opencontainers.image.title", "demo");
        let tar = tar_with(&[("hello.txt", b"hello\n".as_slice())]);
        let layer = image
            .add_layer_from_tar(
                std::io::Cursor::new(tar),
                LayerSpec::new()
                    .created_by("COPY hello.txt /")
                    .comment("a comment")
                    .author("someone")
                    .annotation("org.example.layer", "one"),
            )
            .await
            .unwrap();
        image.add_empty_history("ENV LANG=C", None);
        let manifest = image.write().await.unwrap();
        let (m, config) = config_json(&layout, &manifest).await;

        assert_eq!(m["mediaType"], "application/vnd.oci.image.manifest.v1+json");
        assert_eq!(m["schemaVersion"], 2);
        assert_eq!(
            m["config"]["mediaType"],
            "application/vnd.oci.image.config.v1+json"
        );
        assert_eq!(m["annotations"]["org.opencontainers.image.title"], "demo");
        assert_eq!(m["layers"][0]["annotations"]["org.example.layer"], "one");
        assert_eq!(m["layers"][0]["digest"], layer.digest().to_string());
        assert_eq!(
            m["layers"][0]["mediaType"],
            "application/vnd.oci.image.layer.v1.tar+gzip"
        );

        assert_eq!(config["os"], "windows");
        assert_eq!(config["os.version"], "10.0.17763.1234");
        assert_eq!(config["architecture"], "arm64");
        assert_eq!(config["variant"], "v8");
        assert_eq!(config["author"], "ocikit tests");
        assert_eq!(config["created"], "2023-11-14T22:13:20Z");
        let c = &config["config"];
        assert_eq!(c["Entrypoint"], json!(["/bin/app", "--serve"]));
        assert_eq!(c["Cmd"], json!(["--port", "8080"]));
        assert_eq!(c["Env"], json!(["PATH=/usr/local/bin:/usr/bin", "LANG=C"]));
        assert_eq!(c["WorkingDir"], "/srv");
        assert_eq!(c["User"], "1000:1000");
        assert_eq!(c["Labels"], json!({"org.example.team": "infra"}));
        assert_eq!(c["ExposedPorts"], json!({"8080/tcp": {}, "53/udp": {}}));
        assert_eq!(c["Volumes"], json!({"/data": {}}));
        assert_eq!(c["StopSignal"], "SIGQUIT");
        assert_eq!(c["Healthcheck"], json!({"Test": ["CMD", "true"]}));
        assert_eq!(config["rootfs"]["type"], "layers");
        assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 1);
        assert_eq!(
            config["history"],
            json!([
                {"created": "2023-11-14T22:13:20Z", "created_by": "COPY hello.txt /",
                 "comment": "a comment", "author": "someone"},
                {"created": "2023-11-14T22:13:20Z", "created_by": "ENV LANG=C",
                 "empty_layer": true},
            ])
        );
        // Canonical JSON: the bytes are the sorted, compact serialisation.
        let bytes = blob(&layout, &manifest).await;
        let value: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(serde_json::to_vec(&value).unwrap(), bytes);
    }
}

/// An uncompressed tar with regular files, made with the `tar` crate.
pub(crate) fn tar_with(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, content) in files {
        let mut header = tar::Header::new_ustar();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(1_600_000_000);
        header.set_entry_type(tar::EntryType::Regular);
        builder.append_data(&mut header, path, *content).unwrap();
    }
    builder.into_inner().unwrap()
}

#[cfg(feature = "gzip")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_adds_a_layer_on_top_and_keeps_the_base() {
    for (layout, _guard) in layouts().await {
        let mut base = ImageBuilder::new(&layout);
        base.platform(&platform::parse("linux/amd64").unwrap())
            .source_date_epoch(Some(1_000_000_000))
            .env("PATH", "/bin")
            .exec_field("Shell", json!(["/bin/sh", "-c"]));
        base.add_layer_from_tar(
            std::io::Cursor::new(tar_with(&[("base.txt", b"base\n".as_slice())])),
            LayerSpec::new().created_by("base layer"),
        )
        .await
        .unwrap();
        base.add_empty_history("CMD sh", Some("no layer".into()));
        let base_manifest = base.write_and_tag("base").await.unwrap();
        let (_, base_config) = config_json(&layout, &base_manifest).await;

        let mut image = ImageBuilder::from_tag(&layout, "base", &linux_amd64())
            .await
            .unwrap();
        assert_eq!(image.layers().len(), 1);
        image
            .source_date_epoch(Some(1_100_000_000))
            .env("PATH", "/usr/bin:/bin");
        image
            .add_layer_from_tar(
                std::io::Cursor::new(tar_with(&[("top.txt", b"top\n".as_slice())])),
                LayerSpec::new().created_by("top layer"),
            )
            .await
            .unwrap();
        let manifest = image.write_and_tag("top").await.unwrap();
        let (m, config) = config_json(&layout, &manifest).await;

        let history = config["history"].as_array().unwrap();
        assert_eq!(history.len(), 3);
        assert_eq!(history[..2], base_config["history"].as_array().unwrap()[..]);
        assert_eq!(history[0]["created"], "2001-09-09T01:46:40Z");
        assert_eq!(history[2]["created_by"], "top layer");
        assert_eq!(history[2]["created"], "2004-11-09T11:33:20Z");
        assert_eq!(config["created"], "2004-11-09T11:33:20Z");
        let diff_ids = config["rootfs"]["diff_ids"].as_array().unwrap();
        assert_eq!(diff_ids.len(), 2);
        assert_eq!(diff_ids[0], base_config["rootfs"]["diff_ids"][0]);
        assert_eq!(m["layers"].as_array().unwrap().len(), 2);
        assert_eq!(
            m["annotations"][BASE_DIGEST_ANNOTATION],
            base_manifest.digest().to_string()
        );
        // Fields ocikit has no setter for survive.
        assert_eq!(config["config"]["Shell"], json!(["/bin/sh", "-c"]));
        assert_eq!(config["config"]["Env"], json!(["PATH=/usr/bin:/bin"]));

        let out = tempfile::tempdir().unwrap();
        unpack(
            &layout,
            &manifest,
            out.path(),
            &UnpackOptions::new().with_platform(linux_amd64()),
        )
        .await
        .unwrap();
        assert_eq!(
            std::fs::read(out.path().join("base.txt")).unwrap(),
            b"base\n"
        );
        assert_eq!(std::fs::read(out.path().join("top.txt")).unwrap(), b"top\n");
    }
}

#[cfg(feature = "gzip")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_a_base_without_history_keeps_history_consistent() {
    for (layout, _guard) in layouts().await {
        let layer_tar = tar_with(&[("a", b"a".as_slice())]);
        let layer = layout
            .put_blob("application/vnd.oci.image.layer.v1.tar", &layer_tar)
            .await
            .unwrap();
        let config = json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [Digest::sha256(&layer_tar).to_string()]}
        });
        let manifest = put_manifest(&layout, &config, &[layer]).await;
        let mut image = ImageBuilder::from_image(&layout, &manifest, &linux_amd64())
            .await
            .unwrap();
        image.without_created();
        image
            .add_layer_from_tar(
                std::io::Cursor::new(tar_with(&[("b", b"b".as_slice())])),
                LayerSpec::new().created_by("second"),
            )
            .await
            .unwrap();
        let written = image.write().await.unwrap();
        let (_, config) = config_json(&layout, &written).await;
        assert!(config.get("created").is_none());
        assert_eq!(
            config["history"],
            json!([{"comment": ocikit_layout::image::MISSING_HISTORY_COMMENT},
                   {"created_by": "second"}])
        );
    }
}

/// Stores a hand-written config and a manifest over `layers`; returns the manifest's
/// descriptor.
pub(crate) async fn put_manifest(
    layout: &Layout,
    config: &Value,
    layers: &[Descriptor],
) -> Descriptor {
    let config_bytes = serde_json::to_vec(config).unwrap();
    let config = layout
        .put_blob("application/vnd.oci.image.config.v1+json", &config_bytes)
        .await
        .unwrap();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config,
        "layers": layers,
    });
    layout
        .put_blob(
            "application/vnd.oci.image.manifest.v1+json",
            &serde_json::to_vec(&manifest).unwrap(),
        )
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_refuses_a_base_whose_layers_and_config_disagree() {
    for (layout, _guard) in layouts().await {
        let layer_tar = tar_with(&[("a", b"a".as_slice())]);
        let layer = layout
            .put_blob("application/vnd.oci.image.layer.v1.tar", &layer_tar)
            .await
            .unwrap();
        let two_ids = json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [
                Digest::sha256(&layer_tar).to_string(), Digest::sha256(b"x").to_string()]}
        });
        let manifest = put_manifest(&layout, &two_ids, std::slice::from_ref(&layer)).await;
        match ImageBuilder::from_image(&layout, &manifest, &linux_amd64()).await {
            Err(Error::InvalidDocument { reason, .. }) => {
                assert!(
                    reason.contains("2 diff_ids") && reason.contains("1 layers"),
                    "{reason}"
                )
            }
            other => panic!("expected an inconsistent base, got {other:?}"),
        }
        let bad_history = json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [Digest::sha256(&layer_tar).to_string()]},
            "history": [{"created_by": "one"}, {"created_by": "two"}]
        });
        let manifest = put_manifest(&layout, &bad_history, &[layer]).await;
        match ImageBuilder::from_image(&layout, &manifest, &linux_amd64()).await {
            Err(Error::InvalidDocument { reason, .. }) => {
                assert!(reason.contains("history has 2"), "{reason}")
            }
            other => panic!("expected an inconsistent history, got {other:?}"),
        }
    }
}

#[cfg(feature = "gzip")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builds_are_reproducible_and_honour_source_date_epoch() {
    let mut digests = Vec::new();
    for round in 0..2 {
        // A fresh copy of the tree each time: other mtimes, other inodes, other paths.
        let tree = tempfile::tempdir().unwrap();
        make_tree(tree.path());
        if round == 1 {
            // Another mtime, set rather than waited for.
            std::fs::write(tree.path().join("etc/motd"), b"welcome\n").unwrap();
            std::fs::File::options()
                .write(true)
                .open(tree.path().join("etc/motd"))
                .unwrap()
                .set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(5))
                .unwrap();
        }
        for (layout, _guard) in layouts().await {
            let mut image = ImageBuilder::new(&layout);
            image
                .platform(&platform::parse("linux/arm64").unwrap())
                .source_date_epoch(Some(1_234_567_890))
                .cmd(["sh"]);
            image
                .add_layer_from_dir(tree.path(), LayerSpec::new().created_by("COPY"))
                .await
                .unwrap();
            let manifest = image.write().await.unwrap();
            // Writing again gives the same digest too.
            assert_eq!(image.write().await.unwrap().digest(), manifest.digest());
            let (_, config) = config_json(&layout, &manifest).await;
            assert_eq!(config["created"], "2009-02-13T23:31:30Z");
            assert_eq!(config["history"][0]["created"], "2009-02-13T23:31:30Z");
            let out = tempfile::tempdir().unwrap();
            unpack(
                &layout,
                &manifest,
                out.path(),
                &UnpackOptions::new()
                    .with_platform(PlatformQuery::new(&platform::parse("linux/arm64").unwrap())),
            )
            .await
            .unwrap();
            let motd = std::fs::symlink_metadata(out.path().join("etc/motd")).unwrap();
            assert_eq!(
                motd.mtime(),
                1_234_567_890,
                "mtimes are clamped to the epoch"
            );
            digests.push(manifest.digest().to_string());
        }
    }
    assert_eq!(digests.len(), 2 * crate::support::stores().await.len());
    assert!(digests.iter().all(|d| *d == digests[0]), "{digests:?}");

    // Another epoch, another digest.
    let tree = tempfile::tempdir().unwrap();
    make_tree(tree.path());
    let layout = Layout::create(MemoryStore::new()).await.unwrap();
    let mut image = ImageBuilder::new(&layout);
    image
        .platform(&platform::parse("linux/arm64").unwrap())
        .source_date_epoch(Some(1_234_567_891))
        .cmd(["sh"]);
    image
        .add_layer_from_dir(tree.path(), LayerSpec::new().created_by("COPY"))
        .await
        .unwrap();
    assert_ne!(
        image.write().await.unwrap().digest().to_string(),
        digests[0]
    );
}

/// A reader that yields `ok` bytes, then fails.
struct Failing {
    left: usize,
}

impl Read for Failing {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Err(std::io::Error::other("source broke"));
        }
        let n = buf.len().min(self.left);
        buf[..n].fill(0);
        self.left -= n;
        Ok(n)
    }
}

#[cfg(feature = "gzip")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_layers_publish_nothing_and_leave_the_builder_as_it_was() {
    for (layout, _guard) in layouts().await {
        let before = blob_count(&layout).await;
        let mut image = ImageBuilder::new(&layout);
        // Fails after several chunks have gone through the channel.
        let err = image
            .add_layer_from_tar(Failing { left: 3 << 20 }, LayerSpec::new())
            .await
            .unwrap_err();
        match err {
            Error::Codec(ocikit_codec::Error::Io { operation, .. }) => {
                assert_eq!(operation, "read")
            }
            other => panic!("expected the source's read error, got {other:?}"),
        }
        let missing = tempfile::tempdir().unwrap();
        let err = image
            .add_layer_from_dir(missing.path().join("nope"), LayerSpec::new())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Codec(_)), "{err:?}");
        // A directory with a name that would be a whiteout cannot be packed.
        let tree = tempfile::tempdir().unwrap();
        std::fs::write(tree.path().join(".wh.trap"), b"").unwrap();
        let err = image
            .add_layer_from_dir(tree.path(), LayerSpec::new())
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::Codec(ocikit_codec::Error::Unpackable { .. })),
            "{err:?}"
        );
        // An async source that fails midway.
        let err = image
            .add_layer_from_async_tar(FailingAsync { left: 2 << 20 }, LayerSpec::new())
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::Store(ocikit_store::Error::Stream(_))),
            "{err:?}"
        );
        assert!(image.layers().is_empty());
        assert!(image.config().diff_ids().is_empty());
        assert!(image.config().history().is_empty());
        assert_eq!(blob_count(&layout).await, before, "nothing was published");
    }
}

/// An async reader that yields zeros, then fails.
struct FailingAsync {
    left: usize,
}

impl tokio::io::AsyncRead for FailingAsync {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.left == 0 {
            return std::task::Poll::Ready(Err(std::io::Error::other("async source broke")));
        }
        let n = buf.remaining().min(self.left).min(64 << 10);
        buf.put_slice(&vec![0u8; n]);
        self.left -= n;
        std::task::Poll::Ready(Ok(()))
    }
}

#[cfg(feature = "gzip")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_async_tar_streams_through_the_bridge() {
    // 24 MiB of content that does not compress away, through the async path and a gzip
    // layer: the blob and the diffID must be exactly what an independent hash says.
    let content = ocikit_testkit::prng::bytes(0x1234_5678, 24 << 20);
    let tar = tar_with(&[("big", &content)]);
    let layout = Layout::create(MemoryStore::new()).await.unwrap();
    let mut image = ImageBuilder::new(&layout);
    let layer = image
        .add_layer_from_async_tar(std::io::Cursor::new(tar.clone()), LayerSpec::new())
        .await
        .unwrap();
    assert_eq!(
        image.config().diff_ids()[0].to_string(),
        Digest::sha256(&tar).to_string()
    );
    let bytes = layout.store();
    let stored = ocikit_store::StoreExt::get_bytes(
        bytes,
        &Digest::parse(layer.digest().as_ref()).unwrap(),
        1 << 30,
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(stored.len() as u64, layer.size());
    let manifest = image.write().await.unwrap();
    let out = tempfile::tempdir().unwrap();
    unpack(&layout, &manifest, out.path(), &UnpackOptions::new())
        .await
        .unwrap();
    assert!(std::fs::read(out.path().join("big")).unwrap() == content);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_blobs_are_added_with_their_diff_ids_after_checks() {
    for (layout, _guard) in layouts().await {
        let tar = tar_with(&[("f", b"f".as_slice())]);
        let layer = layout
            .put_blob("application/vnd.oci.image.layer.v1.tar", &tar)
            .await
            .unwrap();
        let diff_id = Digest::sha256(&tar);
        let mut image = ImageBuilder::new(&layout);

        let not_a_layer = layout
            .put_blob("application/vnd.oci.image.config.v1+json", b"{}")
            .await
            .unwrap();
        assert!(matches!(
            image
                .add_layer_blob(&not_a_layer, &diff_id, LayerSpec::new())
                .await,
            Err(Error::UnsupportedMediaType { .. })
        ));
        let mut absent = layer.clone();
        absent.set_digest(Digest::sha256(b"absent").to_string().parse().unwrap());
        assert!(matches!(
            image
                .add_layer_blob(&absent, &diff_id, LayerSpec::new())
                .await,
            Err(Error::Store(ocikit_store::Error::NotFound { .. }))
        ));
        let mut wrong_size = layer.clone();
        wrong_size.set_size(layer.size() + 1);
        assert!(matches!(
            image
                .add_layer_blob(&wrong_size, &diff_id, LayerSpec::new())
                .await,
            Err(Error::Store(ocikit_store::Error::SizeMismatch { .. }))
        ));
        assert!(image.layers().is_empty());

        image
            .add_layer_blob(&layer, &diff_id, LayerSpec::new().created_by("reused"))
            .await
            .unwrap();
        image.platform(&platform::parse("linux/amd64").unwrap());
        let manifest = image.write().await.unwrap();
        let out = tempfile::tempdir().unwrap();
        unpack(
            &layout,
            &manifest,
            out.path(),
            &UnpackOptions::new().with_platform(linux_amd64()),
        )
        .await
        .unwrap();
        assert_eq!(std::fs::read(out.path().join("f")).unwrap(), b"f");
    }
}

#[cfg(feature = "gzip")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_of_several_platforms_is_written_and_resolved() {
    for (layout, _guard) in layouts().await {
        let mut manifests = Vec::new();
        for p in ["linux/amd64", "linux/arm64/v8", "linux/arm/v7"] {
            let mut image = ImageBuilder::new(&layout);
            image
                .platform(&platform::parse(p).unwrap())
                .source_date_epoch(Some(0));
            image
                .add_layer_from_tar(
                    std::io::Cursor::new(tar_with(&[("arch", p.as_bytes())])),
                    LayerSpec::new(),
                )
                .await
                .unwrap();
            manifests.push(image.write_and_tag(&p.replace('/', "-")).await.unwrap());
        }
        let mut index = IndexBuilder::new(&layout);
        for m in &manifests {
            // Tagged descriptors lose their tag, and one without a platform gets its
            // config's.
            let mut entry = layout
                .resolve(&platform::format(m.platform().as_ref().unwrap()).replace('/', "-"))
                .await
                .unwrap();
            entry.set_platform(None);
            index.add(&entry).await.unwrap();
        }
        index.annotation("org.opencontainers.image.version", "1.0");
        let config = layout
            .put_blob("application/vnd.oci.image.config.v1+json", b"{}")
            .await
            .unwrap();
        assert!(matches!(
            index.add(&config).await,
            Err(Error::UnsupportedMediaType { .. })
        ));
        let written = index.write_and_tag("multi").await.unwrap();
        assert_eq!(
            written.media_type().to_string(),
            "application/vnd.oci.image.index.v1+json"
        );
        let json: Value = serde_json::from_slice(&blob(&layout, &written).await).unwrap();
        assert_eq!(json["mediaType"], "application/vnd.oci.image.index.v1+json");
        assert_eq!(
            json["annotations"]["org.opencontainers.image.version"],
            "1.0"
        );
        let entries = json["manifests"].as_array().unwrap();
        assert_eq!(entries.len(), 3);
        assert_eq!(
            entries[1]["platform"],
            json!({"os": "linux", "architecture": "arm64", "variant": "v8"})
        );
        assert!(
            entries[0].get("annotations").is_none(),
            "the tag was not copied"
        );

        let tagged = layout.resolve("multi").await.unwrap();
        for (p, m) in ["linux/amd64", "linux/arm64/v8", "linux/arm/v7"]
            .iter()
            .zip(&manifests)
        {
            let found = resolve(
                &layout,
                &tagged,
                &PlatformQuery::new(&platform::parse(p).unwrap()),
            )
            .await
            .unwrap();
            assert_eq!(found.descriptor.digest(), m.digest(), "{p}");
            let out = tempfile::tempdir().unwrap();
            unpack(
                &layout,
                &tagged,
                out.path(),
                &UnpackOptions::new()
                    .with_platform(PlatformQuery::new(&platform::parse(p).unwrap())),
            )
            .await
            .unwrap();
            assert_eq!(
                std::fs::read(out.path().join("arch")).unwrap(),
                p.as_bytes()
            );
        }
    }
}

/// A memory store whose staging areas fail once `limit` bytes were written to them.
#[derive(Debug)]
struct BrokenDisk {
    inner: MemoryStore,
    limit: usize,
}

struct BrokenStaging {
    inner: Box<dyn ocikit_store::Staging>,
    left: usize,
}

impl tokio::io::AsyncWrite for BrokenStaging {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        if self.left == 0 {
            return std::task::Poll::Ready(Err(std::io::Error::other("disk full")));
        }
        let n = buf.len().min(self.left);
        let this = &mut *self;
        let polled = std::pin::Pin::new(&mut this.inner).poll_write(cx, &buf[..n]);
        if let std::task::Poll::Ready(Ok(written)) = &polled {
            this.left -= written;
        }
        polled
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[async_trait::async_trait]
impl ocikit_store::Staging for BrokenStaging {
    async fn publish(self: Box<Self>, digest: &Digest, size: u64) -> ocikit_store::Result<()> {
        self.inner.publish(digest, size).await
    }
    async fn abort(self: Box<Self>) -> ocikit_store::Result<()> {
        self.inner.abort().await
    }
}

#[async_trait::async_trait]
impl Store for BrokenDisk {
    async fn stat(&self, digest: &Digest) -> ocikit_store::Result<Option<u64>> {
        self.inner.stat(digest).await
    }
    async fn get(
        &self,
        digest: &Digest,
        range: Option<std::ops::Range<u64>>,
    ) -> ocikit_store::Result<Option<ocikit_store::Blob>> {
        self.inner.get(digest, range).await
    }
    async fn stage(&self) -> ocikit_store::Result<Box<dyn ocikit_store::Staging>> {
        Ok(Box::new(BrokenStaging {
            inner: self.inner.stage().await?,
            left: self.limit,
        }))
    }
    async fn delete(&self, digest: &Digest) -> ocikit_store::Result<bool> {
        self.inner.delete(digest).await
    }
    fn list(&self) -> futures::stream::BoxStream<'_, ocikit_store::Result<Digest>> {
        self.inner.list()
    }
    async fn read_document(
        &self,
        key: &ocikit_store::DocumentKey,
    ) -> ocikit_store::Result<Option<ocikit_store::Document>> {
        self.inner.read_document(key).await
    }
    async fn write_document(
        &self,
        key: &ocikit_store::DocumentKey,
        bytes: bytes::Bytes,
        precondition: ocikit_store::Precondition,
    ) -> ocikit_store::Result<ocikit_store::Version> {
        self.inner.write_document(key, bytes, precondition).await
    }
    async fn delete_document(
        &self,
        key: &ocikit_store::DocumentKey,
        precondition: ocikit_store::Precondition,
    ) -> ocikit_store::Result<bool> {
        self.inner.delete_document(key, precondition).await
    }
    async fn list_documents(
        &self,
        prefix: &str,
    ) -> ocikit_store::Result<Vec<ocikit_store::DocumentKey>> {
        self.inner.list_documents(prefix).await
    }
}

#[cfg(all(feature = "gzip", feature = "zstd"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_failing_mid_layer_fails_the_layer_with_its_own_error() {
    let layout = Layout::create(BrokenDisk {
        inner: MemoryStore::new(),
        limit: 1 << 20,
    })
    .await
    .unwrap();
    // 8 MiB that gzip cannot shrink below the store's 1 MiB.
    let tree = tempfile::tempdir().unwrap();
    let noise = ocikit_testkit::prng::bytes(88172645463325252, 8 << 20);
    std::fs::write(tree.path().join("noise"), &noise).unwrap();
    let mut image = ImageBuilder::new(&layout);
    for attempt in 0..2 {
        let err = if attempt == 0 {
            image
                .add_layer_from_dir(tree.path(), LayerSpec::new())
                .await
                .unwrap_err()
        } else {
            image
                .add_layer_from_tar(
                    std::io::Cursor::new(tar_with(&[("noise", &noise)])),
                    LayerSpec::new().compression(Compression::Zstd),
                )
                .await
                .unwrap_err()
        };
        // The store's error, not the producer's resulting broken pipe.
        match err {
            Error::Store(ocikit_store::Error::Stream(e)) => assert_eq!(e.to_string(), "disk full"),
            other => panic!("expected the store's error, got {other:?}"),
        }
    }
    assert!(image.layers().is_empty());
    assert_eq!(blob_count(&layout).await, 0, "nothing was published");
}

/// Servers need every future of the API to be `Send`.
#[test]
fn the_async_api_is_send() {
    fn send<T: Send>(_: &T) {}
    let layout_future = Layout::create(MemoryStore::new());
    send(&layout_future);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let layout = runtime.block_on(layout_future).unwrap();
    let mut image = ImageBuilder::new(&layout);
    send(&image.add_layer_from_dir("/nonexistent", LayerSpec::new()));
    send(&image.add_layer_from_tar(std::io::empty(), LayerSpec::new()));
    send(&image.add_layer_from_async_tar(tokio::io::empty(), LayerSpec::new()));
    send(&image.write());
    send(&ImageBuilder::from_tag(&layout, "x", &PlatformQuery::any()));
    let d = ocikit_digest::descriptor::empty();
    send(&resolve(&layout, &d, &PlatformQuery::any()));
    send(&unpack(&layout, &d, "/nonexistent", &UnpackOptions::new()));
    let mut index = IndexBuilder::new(&layout);
    send(&index.add(&d));
    send(&index.write());
}

#[cfg(all(feature = "gzip", feature = "zstd"))]
#[tokio::test]
async fn building_and_unpacking_work_on_a_current_thread_runtime() {
    for (layout, _guard) in layouts().await {
        let tree = tempfile::tempdir().unwrap();
        make_tree(tree.path());
        let mut image = ImageBuilder::new(&layout);
        image
            .platform(&platform::parse("linux/amd64").unwrap())
            .source_date_epoch(None);
        image
            .add_layer_from_dir(tree.path(), LayerSpec::new().compression(Compression::Zstd))
            .await
            .unwrap();
        image
            .add_layer_from_async_tar(
                std::io::Cursor::new(tar_with(&[("extra", b"x".as_slice())])),
                LayerSpec::new(),
            )
            .await
            .unwrap();
        let manifest = image.write().await.unwrap();
        let out = tempfile::tempdir().unwrap();
        unpack(
            &layout,
            &manifest,
            out.path(),
            &UnpackOptions::new().with_platform(linux_amd64()),
        )
        .await
        .unwrap();
        let mut got = snapshot(out.path());
        assert!(matches!(got.remove("extra"), Some(Node::File { content, .. }) if content == b"x"));
        assert_eq!(got, snapshot(tree.path()));
    }
}

#[cfg(feature = "gzip")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_platform_base_is_resolved_and_explicit_times_are_kept() {
    for (layout, _guard) in layouts().await {
        let mut index = IndexBuilder::new(&layout);
        for p in ["linux/amd64", "linux/arm64"] {
            let mut image = ImageBuilder::new(&layout);
            image
                .platform(&platform::parse(p).unwrap())
                .without_created();
            image
                .add_layer_from_tar(
                    std::io::Cursor::new(tar_with(&[("arch", p.as_bytes())])),
                    LayerSpec::new().created_by(p),
                )
                .await
                .unwrap();
            index.add(&image.write().await.unwrap()).await.unwrap();
        }
        let top = index.write().await.unwrap();
        // An index of indexes can be built too.
        let mut outer = IndexBuilder::new(&layout);
        outer.add(&top).await.unwrap();
        let outer = outer.write_and_tag("outer").await.unwrap();

        let arm = PlatformQuery::new(&platform::parse("linux/arm64").unwrap());
        let mut image = ImageBuilder::from_tag(&layout, "outer", &arm)
            .await
            .unwrap();
        let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(86_400);
        image.created(when);
        image
            .add_layer_from_tar(
                std::io::Cursor::new(tar_with(&[("more", b"m".as_slice())])),
                LayerSpec::new(),
            )
            .await
            .unwrap();
        let manifest = image.write().await.unwrap();
        assert_eq!(
            platform::format(manifest.platform().as_ref().unwrap()),
            "linux/arm64"
        );
        let (_, config) = config_json(&layout, &manifest).await;
        assert_eq!(config["created"], "1970-01-02T00:00:00Z");
        assert_eq!(config["history"][0]["created_by"], "linux/arm64");
        assert!(config["history"][0].get("created").is_none());
        assert_eq!(config["history"][1]["created"], "1970-01-02T00:00:00Z");
        let out = tempfile::tempdir().unwrap();
        unpack(
            &layout,
            &manifest,
            out.path(),
            &UnpackOptions::new().with_platform(arm),
        )
        .await
        .unwrap();
        assert_eq!(
            std::fs::read(out.path().join("arch")).unwrap(),
            b"linux/arm64"
        );
        let _ = outer;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builders_refuse_bad_input_before_writing_anything() {
    for (layout, _guard) in layouts().await {
        let before = blob_count(&layout).await;
        let mut image = ImageBuilder::new(&layout);
        image.exec_field("Labels", json!({"not-a-string": 1}));
        match image.write().await {
            Err(Error::InvalidDocument { reason, .. }) => {
                assert!(reason.contains("not an image configuration"), "{reason}")
            }
            other => panic!("expected the config refused, got {other:?}"),
        }
        let mut image = ImageBuilder::new(&layout);
        assert!(matches!(
            image.write_and_tag("../escape").await,
            Err(Error::InvalidTag { .. })
        ));
        image.source_date_epoch(Some(i64::MAX));
        assert!(matches!(
            image.write().await,
            Err(Error::InvalidImage { .. })
        ));
        assert_eq!(blob_count(&layout).await, before, "nothing was written");

        let mut index = IndexBuilder::new(&layout);
        let manifest = ImageBuilder::new(&layout).write().await.unwrap();
        let mut absent = manifest.clone();
        absent.set_digest(Digest::sha256(b"absent").to_string().parse().unwrap());
        assert!(matches!(
            index.add(&absent).await,
            Err(Error::Store(ocikit_store::Error::NotFound { .. }))
        ));
        let mut wrong_size = manifest.clone();
        wrong_size.set_size(manifest.size() + 1);
        assert!(matches!(
            index.add(&wrong_size).await,
            Err(Error::Store(ocikit_store::Error::SizeMismatch { .. }))
        ));
        // A manifest served as an index is refused (CVE-2021-41190).
        let mut confused = manifest.clone();
        confused.set_media_type(ocikit_digest::oci_spec::image::MediaType::ImageIndex);
        assert!(matches!(
            index.add(&confused).await,
            Err(Error::InvalidDocument { .. })
        ));
        assert!(index.manifests().is_empty());
    }
}

/// Runs `environment_child` in a new process of this test binary with SOURCE_DATE_EPOCH
/// set (tests cannot set variables in their own, multithreaded, process).
fn run_child(epoch: &str) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "image::environment_child",
            "--ignored",
            "--test-threads=1",
        ])
        .env("SOURCE_DATE_EPOCH", epoch)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "SOURCE_DATE_EPOCH={epoch}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[cfg(feature = "gzip")]
#[test]
fn source_date_epoch_is_taken_from_the_environment() {
    run_child("86400");
    run_child("not-a-number");
}

#[cfg(feature = "gzip")]
#[ignore = "run by source_date_epoch_is_taken_from_the_environment, with the variable set"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_child() {
    let epoch = std::env::var("SOURCE_DATE_EPOCH").unwrap();
    let layout = Layout::create(MemoryStore::new()).await.unwrap();
    let tree = tempfile::tempdir().unwrap();
    std::fs::write(tree.path().join("f"), b"f").unwrap();
    let mut image = ImageBuilder::new(&layout);
    image.platform(&platform::parse("linux/amd64").unwrap());
    let added = image
        .add_layer_from_dir(tree.path(), LayerSpec::new())
        .await;
    if epoch == "86400" {
        added.unwrap();
        let manifest = image.write().await.unwrap();
        let (_, config) = config_json(&layout, &manifest).await;
        assert_eq!(config["created"], "1970-01-02T00:00:00Z");
        let out = tempfile::tempdir().unwrap();
        unpack(
            &layout,
            &manifest,
            out.path(),
            &UnpackOptions::new().with_platform(linux_amd64()),
        )
        .await
        .unwrap();
        assert_eq!(
            std::fs::metadata(out.path().join("f")).unwrap().mtime(),
            86400
        );
        // An explicit choice wins over the environment.
        image.source_date_epoch(None).created(std::time::UNIX_EPOCH);
        let (_, config) = config_json(&layout, &image.write().await.unwrap()).await;
        assert_eq!(config["created"], "1970-01-01T00:00:00Z");
    } else {
        // A malformed value fails the build rather than being ignored.
        match added {
            Err(Error::Codec(ocikit_codec::Error::Io { operation, .. })) => {
                assert_eq!(operation, "parse SOURCE_DATE_EPOCH")
            }
            other => panic!("expected the malformed epoch refused, got {other:?}"),
        }
        assert!(image.write().await.is_err());
    }
}

#[cfg(all(feature = "gzip", feature = "zstd"))]
/// Tar files as users hand them over: a gzip-compressed tar (compressed by flate2) is
/// decompressed, its diffID that of the tar, its layer written in the requested compression;
/// text and a truncated tar are refused, and nothing is published or added.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tar_files_are_checked_and_may_be_compressed() {
    use std::io::Write;
    let tar = tar_with(&[("etc/motd", b"welcome\n".as_slice()), ("big", &[7u8; 3000])]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).unwrap();
    let gz = gz.finish().unwrap();
    for (layout, _guard) in layouts().await {
        let mut image = ImageBuilder::new(&layout);
        image.platform(&platform::parse("linux/amd64").unwrap());
        for source in [&gz, &tar] {
            let layer = image
                .add_layer_from_tar(
                    std::io::Cursor::new(source.clone()),
                    LayerSpec::new().compression(Compression::Zstd),
                )
                .await
                .unwrap();
            assert_eq!(
                layer.media_type().to_string(),
                ocikit_digest::media_type::IMAGE_LAYER_ZSTD
            );
        }
        assert_eq!(
            image.config().diff_ids(),
            [Digest::sha256(&tar), Digest::sha256(&tar)]
        );
        let before = blob_count(&layout).await;
        let truncated = tar[..512 + 4].to_vec();
        for (what, bad) in [("text", b"garbage\n".to_vec()), ("truncated", truncated)] {
            let err = image
                .add_layer_from_tar(std::io::Cursor::new(bad.clone()), LayerSpec::new())
                .await
                .unwrap_err();
            match (what, &err) {
                ("text", Error::Codec(ocikit_codec::Error::NotTar { .. }))
                | ("truncated", Error::Codec(ocikit_codec::Error::Corrupt { .. })) => {}
                _ => panic!("{what}: {err:?}"),
            }
            let err = image
                .add_layer_from_async_tar(std::io::Cursor::new(bad), LayerSpec::new())
                .await
                .unwrap_err();
            assert!(matches!(err, Error::Codec(_)), "{what} (async): {err:?}");
        }
        assert_eq!(blob_count(&layout).await, before, "nothing was published");
        assert_eq!(image.layers().len(), 2);
        let manifest = image.write().await.unwrap();
        let out = tempfile::tempdir().unwrap();
        let root = out.path().join("rootfs");
        unpack(&layout, &manifest, &root, &UnpackOptions::new())
            .await
            .unwrap();
        assert_eq!(std::fs::read(root.join("etc/motd")).unwrap(), b"welcome\n");
        assert_eq!(std::fs::read(root.join("big")).unwrap(), [7u8; 3000]);
    }
}
