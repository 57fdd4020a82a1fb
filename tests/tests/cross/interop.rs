//! Interop with the real tools: layouts ocikit writes are read by skopeo and umoci, and
//! layouts skopeo and umoci write are opened, fscked (diffIDs included) and unpacked by
//! ocikit, giving the tree umoci unpacks. The tools come from Debian's packages (`cargo xtask install-tools`); under
//! `CI=true` a missing tool fails the test.

use std::collections::BTreeMap;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use ocikit_codec::build::{BuildOptions, build_layer};
use ocikit_codec::compression::Compression;
use ocikit_codec::writer::{LayerOptions, LayerWriter};
use ocikit_digest::oci_spec::image::Descriptor;
use ocikit_digest::{Digest, media_type};
use ocikit_layout::{FsckOptions, Layout, UnpackOptions};
use ocikit_store::FsStore;
use ocikit_tests::require_tool;
use serde_json::json;

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Runs a tool, failing the test with its output when it fails; returns stdout.
pub(crate) fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What a tree holds, by relative path: kind, permission bits, and content or link target.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Node {
    Dir(u32),
    File(u32, Vec<u8>),
    Link(PathBuf),
}

pub(crate) fn snapshot(root: &Path) -> BTreeMap<PathBuf, Node> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Node>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            let mode = meta.permissions().mode() & 0o7777;
            let node = if meta.file_type().is_symlink() {
                Node::Link(std::fs::read_link(&path).unwrap())
            } else if meta.is_dir() {
                walk(root, &path, out);
                Node::Dir(mode)
            } else {
                Node::File(mode, std::fs::read(&path).unwrap())
            };
            out.insert(rel, node);
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// A small tree with what layers must carry: nested directories, an executable, a symlink,
/// an empty file, a long name.
fn sample_tree(root: &Path) {
    std::fs::create_dir_all(root.join("etc/app")).unwrap();
    std::fs::create_dir_all(root.join("usr/bin")).unwrap();
    std::fs::write(root.join("etc/app/config.toml"), b"name = \"demo\"\n").unwrap();
    std::fs::write(root.join("etc/empty"), b"").unwrap();
    let tool = root.join("usr/bin/tool");
    std::fs::write(&tool, b"#!/bin/sh\necho hello\n").unwrap();
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
    symlink("../usr/bin/tool", root.join("etc/tool-link")).unwrap();
    std::fs::write(root.join(format!("etc/{}", "n".repeat(140))), b"long").unwrap();
}

/// Writes a one-layer image of `tree` into `layout` by hand (config and manifest as JSON),
/// tags it, and returns the manifest descriptor.
async fn write_image(layout: &Layout, tree: &Path, tag: &str) -> Descriptor {
    let mut writer = LayerWriter::new(Vec::new(), LayerOptions::new(Compression::Gzip)).unwrap();
    build_layer(
        tree,
        &mut writer,
        &BuildOptions::new().with_source_date_epoch(Some(1_700_000_000)),
    )
    .unwrap();
    let (blob, info) = writer.finish().unwrap();
    let layer = layout.put_blob(info.media_type, &blob).await.unwrap();
    let config = json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": ["PATH=/usr/bin"], "Cmd": ["/usr/bin/tool"]},
        "rootfs": {"type": "layers", "diff_ids": [info.diff_id.to_string()]},
        "history": [{"created_by": "ocikit interop test"}]
    });
    let config = layout
        .put_json(media_type::IMAGE_CONFIG, &config)
        .await
        .unwrap();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": media_type::IMAGE_MANIFEST,
        "config": config,
        "layers": [layer],
    });
    let manifest = layout
        .put_json(media_type::IMAGE_MANIFEST, &manifest)
        .await
        .unwrap();
    layout.set_tag(tag, &manifest).await.unwrap();
    manifest
}

/// Checks the layout with ocikit's fsck (diffIDs included), then unpacks the image a tag
/// names into `rootfs` with ocikit. Returns the manifest digest.
async fn check_and_unpack(layout: &Layout, tag: &str, rootfs: &Path) -> String {
    let report = layout
        .fsck(&FsckOptions::new().with_diff_ids(true))
        .await
        .unwrap();
    assert!(report.is_clean(), "fsck: {:?}", report.problems);
    assert!(report.blobs_checked >= 3);
    let target = layout.resolve(tag).await.unwrap();
    let report = ocikit_layout::unpack(layout, &target, rootfs, &UnpackOptions::new())
        .await
        .unwrap();
    report.manifest.digest().to_string()
}

fn tools() -> Option<(PathBuf, PathBuf)> {
    Some((require_tool("skopeo")?, require_tool("umoci")?))
}

#[test]
fn layouts_ocikit_writes_are_read_by_skopeo_and_umoci() {
    let Some((skopeo, umoci)) = tools() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    sample_tree(&tree);
    let ours = dir.path().join("ours");
    let rt = runtime();
    let manifest = rt.block_on(async {
        let layout = Layout::create(FsStore::open(&ours).await.unwrap())
            .await
            .unwrap();
        write_image(&layout, &tree, "v1").await
    });

    // skopeo inspects the image and copies it to a layout of its own, unchanged.
    let inspect = run(Command::new(&skopeo)
        .args(["inspect", "--raw"])
        .arg(format!("oci:{}:v1", ours.display())));
    let raw: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(raw["mediaType"], media_type::IMAGE_MANIFEST);
    let theirs = dir.path().join("skopeo-copy");
    run(Command::new(&skopeo).args(["copy", "--quiet"]).args([
        format!("oci:{}:v1", ours.display()),
        format!("oci:{}:copied", theirs.display()),
    ]));
    let copied = rt.block_on(async {
        let layout = Layout::open(FsStore::open(&theirs).await.unwrap())
            .await
            .unwrap();
        layout.resolve("copied").await.unwrap()
    });
    assert_eq!(copied.digest(), manifest.digest());

    // umoci lists the tag and unpacks the same tree.
    let listed = run(Command::new(&umoci).args(["ls", "--layout"]).arg(&ours));
    assert_eq!(listed.lines().collect::<Vec<_>>(), ["v1"]);
    let bundle = dir.path().join("bundle");
    run(Command::new(&umoci)
        .args(["unpack", "--rootless", "--image"])
        .arg(format!("{}:v1", ours.display()))
        .arg(&bundle));
    assert_eq!(snapshot(&bundle.join("rootfs")), snapshot(&tree));
}

#[test]
fn layouts_umoci_and_skopeo_write_are_unpacked_by_ocikit_as_umoci_does() {
    let Some((skopeo, umoci)) = tools() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let layout_dir = dir.path().join("umoci-layout");
    let layout_arg = |tag: &str| format!("{}:{tag}", layout_dir.display());
    run(Command::new(&umoci)
        .args(["init", "--layout"])
        .arg(&layout_dir));
    run(Command::new(&umoci)
        .args(["new", "--image"])
        .arg(layout_arg("base")));
    // Two layers made by umoci: the sample tree, then an edit that deletes a file (a
    // whiteout) and adds another.
    let bundle = dir.path().join("bundle");
    run(Command::new(&umoci)
        .args(["unpack", "--rootless", "--image"])
        .arg(layout_arg("base"))
        .arg(&bundle));
    let rootfs = bundle.join("rootfs");
    sample_tree(&rootfs);
    // `--refresh-bundle`: the second repack is a diff against this layer (with a whiteout),
    // not against the empty base.
    run(Command::new(&umoci)
        .args(["repack", "--refresh-bundle", "--image"])
        .arg(layout_arg("one"))
        .arg(&bundle));
    std::fs::remove_file(rootfs.join("etc/empty")).unwrap();
    std::fs::write(rootfs.join("etc/added"), b"second layer\n").unwrap();
    run(Command::new(&umoci)
        .args(["repack", "--image"])
        .arg(layout_arg("two"))
        .arg(&bundle));

    // What umoci itself unpacks.
    let umoci_bundle = dir.path().join("umoci-unpacked");
    run(Command::new(&umoci)
        .args(["unpack", "--rootless", "--image"])
        .arg(layout_arg("two"))
        .arg(&umoci_bundle));
    let expected = snapshot(&umoci_bundle.join("rootfs"));
    assert!(expected.contains_key(Path::new("etc/added")));
    assert!(!expected.contains_key(Path::new("etc/empty")));

    // A layout skopeo writes, from umoci's.
    let skopeo_dir = dir.path().join("skopeo-layout");
    run(Command::new(&skopeo).args(["copy", "--quiet"]).args([
        format!("oci:{}", layout_arg("two")),
        format!("oci:{}:two", skopeo_dir.display()),
    ]));

    let rt = runtime();
    for (name, path) in [("umoci", &layout_dir), ("skopeo", &skopeo_dir)] {
        let ours = dir.path().join(format!("ocikit-from-{name}"));
        rt.block_on(async {
            let layout = Layout::open(FsStore::open(path).await.unwrap())
                .await
                .unwrap();
            check_and_unpack(&layout, "two", &ours).await;
        });
        assert_eq!(snapshot(&ours), expected, "unpacking the {name} layout");
    }
}

#[test]
fn a_layout_skopeo_refuses_to_read_is_not_what_ocikit_writes() {
    // The negative control: skopeo rejects a layout whose manifest blob was tampered with,
    // which shows the positive test above really exercises skopeo's verification.
    let Some((skopeo, _)) = tools() else { return };
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    sample_tree(&tree);
    let ours = dir.path().join("ours");
    let manifest = runtime().block_on(async {
        let layout = Layout::create(FsStore::open(&ours).await.unwrap())
            .await
            .unwrap();
        write_image(&layout, &tree, "v1").await
    });
    let digest: Digest = manifest.digest().to_string().parse().unwrap();
    let blob = ours.join(digest.blob_path());
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[10] ^= 0x20;
    let mut perms = std::fs::metadata(&blob).unwrap().permissions();
    perms.set_mode(0o644);
    std::fs::set_permissions(&blob, perms).unwrap();
    std::fs::write(&blob, bytes).unwrap();
    let out = Command::new(&skopeo)
        .args(["copy", "--quiet"])
        .args([
            format!("oci:{}:v1", ours.display()),
            format!("oci:{}:x", dir.path().join("other").display()),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success(), "skopeo accepted a tampered manifest");
}
