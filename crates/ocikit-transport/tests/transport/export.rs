//! `export`: an image's merged filesystem as one tar stream, from a layout, an oci-archive
//! and a registry served in-process; applied into a fresh directory it is the tree
//! `unpack` makes (paths, kinds, contents, modes, owners); a layer that does not verify is
//! refused and no file appears.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use ocikit_codec::apply::{ApplyOptions, apply_layer};
use ocikit_digest::Digest;
use ocikit_digest::oci_spec::image::Descriptor;
use ocikit_layout::{ImageBuilder, LayerSpec, Layout, UnpackOptions};
use ocikit_store::FsStore;
use ocikit_testkit::tarball::{Entry, archive};
use ocikit_transport::{CopyOptions, Error, ExportOptions, copy, export, export_to_path};
use serde_json::json;

use crate::at;
use crate::registry::{docker, plain, serve};
use crate::surgery::read;

/// A layout at `dir` with a four-layer image tagged `tag`: files of several owners and
/// modes, a symlink and a hard link; then whiteouts and an opaque directory; then a file
/// replaced and a directory replaced by a file; then a whiteout of a whole directory.
async fn stacked(dir: &Path, tag: &str) -> (Layout, Descriptor) {
    let layout = Layout::create(FsStore::open(dir).await.unwrap())
        .await
        .unwrap();
    let mut builder = ImageBuilder::new(&layout);
    builder.platform(&ocikit_digest::platform::parse("linux/amd64").unwrap());
    let layers = [
        archive(&[
            Entry::dir("a/").mode(0o750).owner(10, 20),
            Entry::file("a/one", "one\n").owner(1000, 1000),
            Entry::file("a/two", "two\n").mode(0o600).owner(33, 44),
            Entry::dir("b/"),
            Entry::file("b/x", "x\n"),
            Entry::dir("c/"),
            Entry::file("c/deep", "deep\n"),
            Entry::dir("gone/"),
            Entry::file("gone/file", "gone\n"),
            Entry::file("keep", "first\n").mode(0o755),
            Entry::symlink("link", "a/two"),
            Entry::hardlink("a/hard", "a/two"),
        ]),
        archive(&[
            Entry::dir("a/").mode(0o750).owner(10, 20),
            Entry::file("a/.wh.one", ""),
            Entry::dir("b/").mode(0o711).owner(5, 6),
            Entry::file("b/.wh..wh..opq", ""),
            Entry::file("b/y", "y\n").owner(7, 8),
            Entry::file("new", "new\n"),
        ]),
        archive(&[
            Entry::file("keep", "second\n").mode(0o640).owner(2, 3),
            Entry::file("c", "c is a file now\n"),
        ]),
        archive(&[Entry::file(".wh.gone", "")]),
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

/// What a tree holds below its root: for each path, its kind and content (a file's bytes,
/// a symlink's target), mode and owner. Hard links are files with the same content.
type Tree = BTreeMap<PathBuf, (String, Vec<u8>, u32, u32, u32)>;

fn tree(root: &Path) -> Tree {
    let mut out = Tree::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let (kind, content) = if meta.is_dir() {
                stack.push(path.clone());
                ("dir", Vec::new())
            } else if meta.is_symlink() {
                let target = std::fs::read_link(&path).unwrap();
                ("symlink", target.into_os_string().into_encoded_bytes())
            } else if meta.is_file() {
                ("file", std::fs::read(&path).unwrap())
            } else {
                ("other", Vec::new())
            };
            out.insert(
                path.strip_prefix(root).unwrap().to_path_buf(),
                (
                    kind.to_string(),
                    content,
                    meta.mode() & 0o7777,
                    meta.uid(),
                    meta.gid(),
                ),
            );
        }
    }
    out
}

/// The tree `unpack` makes of `root` in `layout`.
async fn unpacked_tree(layout: &Layout, root: &Descriptor) -> Tree {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("rootfs");
    ocikit_layout::unpack_staged(layout, root, &target, &UnpackOptions::new())
        .await
        .unwrap();
    tree(&target)
}

/// The tree the tar stream `tar` gives, applied by codec's applier into a fresh directory.
fn applied_tree(tar: &[u8]) -> Tree {
    let dir = tempfile::tempdir().unwrap();
    apply_layer(dir.path(), tar, &ApplyOptions::new()).unwrap();
    tree(dir.path())
}

/// The stack's tree, as the layers say (checked against `unpack` too, so that the
/// comparison cannot pass on two empty trees).
fn check_expected(tree: &Tree) {
    let paths: Vec<&str> = tree.keys().map(|p| p.to_str().unwrap()).collect();
    assert_eq!(
        paths,
        [
            "a", "a/hard", "a/two", "b", "b/y", "c", "keep", "link", "new"
        ]
    );
    let meta = |p: &str| {
        let (_, _, mode, uid, gid) = &tree[Path::new(p)];
        (*mode, *uid, *gid)
    };
    assert_eq!(meta("a"), (0o750, 10, 20));
    assert_eq!(meta("a/two"), (0o600, 33, 44));
    assert_eq!(meta("keep"), (0o640, 2, 3));
    assert_eq!((meta("b/y").1, meta("b/y").2), (7, 8));
    assert_eq!(tree[Path::new("a/hard")].1, b"two\n");
    assert_eq!(tree[Path::new("link")].1, b"a/two");
    assert_eq!(tree[Path::new("a/two")].1, b"two\n");
    assert_eq!(tree[Path::new("keep")].1, b"second\n");
    assert_eq!(tree[Path::new("b")].2, 0o711);
    assert_eq!(tree[Path::new("c")].0, "file");
    assert_eq!(tree[Path::new("link")].0, "symlink");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_export_from_a_layout_or_an_archive_is_the_unpacked_tree() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("images");
    let (layout, root) = stacked(&path, "v1").await;
    let expected = unpacked_tree(&layout, &root).await;
    check_expected(&expected);

    // Into a file, atomically.
    let file = dir.path().join("out").join("rootfs.tar");
    std::fs::create_dir(dir.path().join("out")).unwrap();
    let report = export_to_path(&at("oci", &path, ":v1"), &file, &ExportOptions::new())
        .await
        .unwrap();
    assert_eq!(report.manifest.digest(), root.digest());
    assert_eq!(report.layers, 4);
    assert_eq!(report.squash.diff_ids.len(), 4);
    assert!(report.squash.whiteouts >= 3, "{:?}", report.squash);
    let bytes = std::fs::read(&file).unwrap();
    assert_eq!(report.squash.tar_size, bytes.len() as u64);
    assert_eq!(applied_tree(&bytes), expected);
    // Nothing else beside it (no temporary file left).
    assert_eq!(
        std::fs::read_dir(dir.path().join("out")).unwrap().count(),
        1
    );

    // Into any async writer: the same stream.
    let mut streamed = Vec::new();
    export(
        &at("oci", &path, ":v1"),
        &mut streamed,
        &ExportOptions::new(),
    )
    .await
    .unwrap();
    assert_eq!(streamed, bytes);

    // From an oci-archive (staged in scratch space first).
    let archive = dir.path().join("v1.tar");
    copy(
        &at("oci", &path, ":v1"),
        &at("oci-archive", &archive, ":v1"),
        &CopyOptions::new(),
    )
    .await
    .unwrap();
    let mut from_archive = Vec::new();
    let report = export(
        &at("oci-archive", &archive, ":v1"),
        &mut from_archive,
        &ExportOptions::new(),
    )
    .await
    .unwrap();
    assert_eq!(report.manifest.digest(), root.digest());
    assert_eq!(applied_tree(&from_archive), expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_export_from_a_registry_is_the_unpacked_tree() {
    let addr = serve().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("src");
    let (layout, root) = stacked(&path, "v1").await;
    copy(
        &at("oci", &path, ":v1"),
        &docker(&addr, "team/app:v1"),
        &CopyOptions::new()
            .with_source(plain())
            .with_destination(plain()),
    )
    .await
    .unwrap();
    let file = dir.path().join("rootfs.tar");
    let report = export_to_path(
        &docker(&addr, "team/app:v1"),
        &file,
        &ExportOptions::new().with_source(plain()),
    )
    .await
    .unwrap();
    assert_eq!(report.manifest.digest(), root.digest());
    let expected = unpacked_tree(&layout, &root).await;
    check_expected(&expected);
    assert_eq!(applied_tree(&std::fs::read(&file).unwrap()), expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_diff_id_or_a_corrupt_layer_is_refused_and_no_file_appears() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("images");
    let (layout, root) = stacked(&path, "v1").await;

    // The config claims another diffID for the top layer; the blobs are sound.
    let (manifest, mut config) = read(&layout, &root).await;
    config["rootfs"]["diff_ids"][3] = json!(Digest::sha256(b"another layer").to_string());
    let config_descriptor = layout
        .put_json(manifest.config().media_type().as_ref(), &config)
        .await
        .unwrap();
    let mut manifest_json = serde_json::to_value(&manifest).unwrap();
    manifest_json["config"] = serde_json::to_value(&config_descriptor).unwrap();
    let lying = layout
        .put_json(root.media_type().as_ref(), &manifest_json)
        .await
        .unwrap();
    layout.set_tag("lying", &lying).await.unwrap();

    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let file = out.join("rootfs.tar");
    let err = export_to_path(&at("oci", &path, ":lying"), &file, &ExportOptions::new())
        .await
        .unwrap_err();
    match &err {
        Error::Export { digest, source } => {
            assert_eq!(digest, &lying.digest().to_string());
            assert!(
                matches!(source, ocikit_codec::Error::DiffIdMismatch { .. }),
                "{source:?}"
            );
        }
        other => panic!("expected Error::Export, got {other:?}"),
    }
    assert_eq!(
        std::fs::read_dir(&out).unwrap().count(),
        0,
        "a file appeared"
    );

    // An existing file stays as it was.
    std::fs::write(&file, b"old").unwrap();
    export_to_path(&at("oci", &path, ":lying"), &file, &ExportOptions::new())
        .await
        .unwrap_err();
    assert_eq!(std::fs::read(&file).unwrap(), b"old");

    // A layer blob with a byte flipped: its digest does not match.
    let layer = manifest.layers()[1].digest().to_string();
    let (algorithm, hex) = layer.split_once(':').unwrap();
    let blob = path.join("blobs").join(algorithm).join(hex);
    let mut bytes = std::fs::read(&blob).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::remove_file(&blob).unwrap();
    std::fs::write(&blob, &bytes).unwrap();
    let err = export_to_path(&at("oci", &path, ":v1"), &file, &ExportOptions::new())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Export { .. }), "{err:?}");
    assert_eq!(std::fs::read(&file).unwrap(), b"old");
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_platform_asked_for_is_exported_from_an_index() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("images");
    let layout = Layout::create(FsStore::open(&path).await.unwrap())
        .await
        .unwrap();
    let mut index = ocikit_layout::IndexBuilder::new(&layout);
    let mut roots = Vec::new();
    for p in ["linux/amd64", "linux/arm64"] {
        let mut builder = ImageBuilder::new(&layout);
        builder.platform(&ocikit_digest::platform::parse(p).unwrap());
        builder
            .add_layer_from_tar(
                std::io::Cursor::new(archive(&[Entry::file("arch", p)])),
                LayerSpec::new(),
            )
            .await
            .unwrap();
        let root = builder.write().await.unwrap();
        index.add(&root).await.unwrap();
        roots.push(root);
    }
    index.write_and_tag("multi").await.unwrap();
    let query =
        |p: &str| ocikit_layout::PlatformQuery::new(&ocikit_digest::platform::parse(p).unwrap());

    for (p, root) in ["linux/amd64", "linux/arm64"].into_iter().zip(&roots) {
        let mut tar = Vec::new();
        let report = export(
            &at("oci", &path, ":multi"),
            &mut tar,
            &ExportOptions::new().with_platform(query(p)),
        )
        .await
        .unwrap();
        assert_eq!(report.manifest.digest(), root.digest());
        assert_eq!(ocikit_digest::platform::format(&report.platform), p);
        let tree = applied_tree(&tar);
        assert_eq!(tree[Path::new("arch")].1, p.as_bytes());
    }

    // A platform the index does not have: refused, no file.
    let file = dir.path().join("s390x.tar");
    let err = export_to_path(
        &at("oci", &path, ":multi"),
        &file,
        &ExportOptions::new().with_platform(query("linux/s390x")),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::Platform { .. }), "{err:?}");
    assert!(err.to_string().contains("multi"), "{err}");
    assert!(!file.exists());
}
