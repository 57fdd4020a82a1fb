//! The snapshot store: chains of per-layer snapshots that, merged as overlayfs merges them
//! (a real overlay mount where the test runs as root with overlayfs, and always a model of
//! overlayfs written here), equal a full unpack of the image; layers shared between images
//! and between concurrent preparers extracted once; staging a killed run left cleaned and
//! never used; refusals (a bad or unknown chain ID, a parent, a diffID mismatch) that leave
//! nothing looking finished; gc; files stored once.
#![allow(clippy::print_stderr)] // says what is skipped, and the disk figure

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use ocikit_codec::Error as CodecError;
use ocikit_codec::compression::Compression;
use ocikit_digest::oci_spec::image::Descriptor;
use ocikit_digest::{Digest, platform};
use ocikit_layout::snapshot::{Refusal, parse_chain_id};
use ocikit_layout::{
    Error, ImageBuilder, LayerSpec, Layout, PlatformQuery, PrepareOptions, PrepareReport,
    SnapshotOptions, SnapshotStore, UnpackOptions, WhiteoutForm, unpack,
};
use ocikit_store::FsStore;
use ocikit_testkit::tarball::{Entry, archive};

use crate::image::layouts;

fn amd64() -> PlatformQuery {
    PlatformQuery::new(&platform::parse("linux/amd64").unwrap())
}

fn prepare_options() -> PrepareOptions {
    PrepareOptions::new().with_platform(amd64())
}

async fn image_of(layout: &Layout, layers: &[Vec<u8>]) -> Descriptor {
    let mut image = ImageBuilder::new(layout);
    image
        .platform(&platform::parse("linux/amd64").unwrap())
        .source_date_epoch(Some(0));
    for tar in layers {
        image
            .add_layer_from_tar(
                std::io::Cursor::new(tar.clone()),
                LayerSpec::new().compression(Compression::Gzip),
            )
            .await
            .unwrap();
    }
    image.write().await.unwrap()
}

async fn fs_layout(dir: &Path) -> Layout {
    Layout::create(FsStore::open(dir).await.unwrap())
        .await
        .unwrap()
}

/// Three layers: files replaced, removed (whiteouts of a file, a directory, a symlink),
/// directories made opaque (the `.wh..wh..opq` marker before and after the layer's own
/// entries), a directory whited out and made again, a file replaced by a directory and a
/// directory by a file, modes, owners and xattrs changed.
fn whiteout_layers() -> Vec<Vec<u8>> {
    let base = archive(&[
        Entry::dir("etc").mode(0o755),
        Entry::file("etc/passwd", b"root:x:0:0\n"),
        Entry::file("etc/shadow", b"secret")
            .mode(0o640)
            .owner(0, 42),
        Entry::dir("etc/conf.d").mode(0o755),
        Entry::file("etc/conf.d/a", b"a"),
        Entry::file("etc/conf.d/b", b"b"),
        Entry::dir("opt").mode(0o755),
        Entry::dir("opt/app").mode(0o750).owner(1000, 1000),
        Entry::file("opt/app/bin", b"v1")
            .mode(0o755)
            .owner(1000, 1000),
        Entry::dir("opt/app/lib").mode(0o755),
        Entry::file("opt/app/lib/x.so", b"x"),
        Entry::dir("var").mode(0o755),
        Entry::dir("var/cache").mode(0o755),
        Entry::file("var/cache/big", b"cache").pax("SCHILY.xattr.user.kept", b"1"),
        Entry::symlink("var/link", "cache/big"),
        Entry::file("tobedir", b"file"),
        Entry::dir("tobefile").mode(0o755),
        Entry::file("tobefile/inner", b"i"),
        Entry::dir("gone").mode(0o755),
        Entry::file("gone/deep", b"d"),
        Entry::fifo("fifo"),
        Entry::file("shared", b"the same bytes in every layer"),
    ]);
    let middle = archive(&[
        Entry::dir("etc").mode(0o755),
        Entry::file("etc/.wh.shadow", b""),
        Entry::dir("etc/conf.d").mode(0o700),
        Entry::file("etc/conf.d/.wh..wh..opq", b""),
        Entry::file("etc/conf.d/c", b"c"),
        Entry::dir("opt").mode(0o755),
        Entry::dir("opt/app").mode(0o755).owner(0, 0),
        Entry::file("opt/app/bin", b"v2").mode(0o700),
        Entry::file("opt/app/.wh.lib", b""),
        Entry::dir("var").mode(0o755),
        Entry::file("var/.wh.link", b""),
        Entry::file(".wh.gone", b""),
        Entry::file(".wh.tobedir", b""),
        Entry::dir("tobedir").mode(0o711),
        Entry::file("tobedir/now", b"now a directory"),
        Entry::file(".wh.tobefile", b""),
        Entry::file("tobefile", b"now a file"),
        Entry::file("shared2", b"the same bytes in every layer"),
    ]);
    let top = archive(&[
        Entry::dir("opt").mode(0o755),
        Entry::dir("opt/app").mode(0o755),
        Entry::file("opt/app/new", b"n"),
        Entry::file("opt/app/.wh..wh..opq", b""),
        Entry::dir("gone").mode(0o700),
        Entry::file("gone/again", b"back"),
        Entry::dir("var").mode(0o755),
        Entry::dir("var/cache").mode(0o755),
        Entry::file("var/cache/big", b"cache2").pax("SCHILY.xattr.user.new", b"2"),
        Entry::symlink("var/link", "/etc/passwd"),
        Entry::file("etc/passwd", b"root:x:0:0\nuser:x:1000:1000\n").mode(0o600),
        Entry::file("shared3", b"the same bytes in every layer"),
    ]);
    vec![base, middle, top]
}

/// One entry of a tree, as `lstat`, `readlink`, `read` and `getxattr` see it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Node {
    kind: char,
    mode: u32,
    uid: u32,
    gid: u32,
    /// File content, symlink target, or device numbers.
    data: Vec<u8>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

fn xattrs(path: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut names = vec![0u8; 1 << 16];
    let n = rustix::fs::llistxattr(path, &mut names[..]).unwrap_or(0);
    let mut out = Vec::new();
    for name in names[..n].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let mut value = vec![0u8; 1 << 16];
        let len = rustix::fs::lgetxattr(path, name, &mut value[..]).unwrap();
        value.truncate(len);
        out.push((name.to_vec(), value));
    }
    out.sort();
    out
}

fn node(path: &Path) -> Node {
    let meta = std::fs::symlink_metadata(path).unwrap();
    let ft = meta.file_type();
    let (kind, data) = if ft.is_dir() {
        ('d', Vec::new())
    } else if ft.is_file() {
        ('f', std::fs::read(path).unwrap())
    } else if ft.is_symlink() {
        (
            'l',
            std::fs::read_link(path)
                .unwrap()
                .as_os_str()
                .as_bytes()
                .to_vec(),
        )
    } else if ft.is_char_device() {
        ('c', meta.rdev().to_le_bytes().to_vec())
    } else if ft.is_block_device() {
        ('b', meta.rdev().to_le_bytes().to_vec())
    } else {
        ('p', Vec::new())
    };
    Node {
        kind,
        mode: if kind == 'l' { 0 } else { meta.mode() & 0o7777 },
        uid: meta.uid(),
        gid: meta.gid(),
        data,
        xattrs: if kind == 'd' || kind == 'f' {
            xattrs(path)
        } else {
            Vec::new()
        },
    }
}

/// Every entry below `root` (the root itself as ``), by path.
fn tree(root: &Path) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((path, rel)) = stack.pop() {
        let n = node(&path);
        if n.kind == 'd' {
            for entry in std::fs::read_dir(&path).unwrap() {
                let entry = entry.unwrap();
                let name = entry.file_name().to_string_lossy().into_owned();
                let child = if rel.is_empty() {
                    name
                } else {
                    format!("{rel}/{name}")
                };
                stack.push((entry.path(), child));
            }
        }
        out.insert(rel, n);
    }
    out
}

fn is_overlay_xattr(name: &[u8]) -> bool {
    name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.")
}

fn parent_of(path: &str) -> (&str, &str) {
    match path.rfind('/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => ("", path),
    }
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

fn remove_below(merged: &mut BTreeMap<String, Node>, path: &str, and_itself: bool) {
    let prefix = if path.is_empty() {
        String::new()
    } else {
        format!("{path}/")
    };
    merged.retain(|p, _| !(p.starts_with(&prefix) && !p.is_empty() && p != path));
    if and_itself {
        merged.remove(path);
    }
}

/// A model of overlayfs: `lowers` (top first) merged as a read-only overlay mount shows
/// them, written from the kernel's documentation, independently of the store.
fn overlay_model(lowers: &[PathBuf], form: WhiteoutForm) -> BTreeMap<String, Node> {
    let mut merged: BTreeMap<String, Node> = BTreeMap::new();
    for lower in lowers.iter().rev() {
        let layer = tree(lower);
        let mut whiteouts = Vec::new();
        let mut opaque = Vec::new();
        let mut entries = BTreeMap::new();
        for (path, mut n) in layer {
            let (dir, name) = parent_of(&path);
            match form {
                WhiteoutForm::Device if n.kind == 'c' && n.data == 0u64.to_le_bytes() => {
                    whiteouts.push(path.clone());
                    continue;
                }
                WhiteoutForm::Marker if name == ".wh..wh..opq" => {
                    opaque.push(dir.to_string());
                    continue;
                }
                WhiteoutForm::Marker if name.starts_with(".wh.") => {
                    whiteouts.push(join(dir, &name[4..]));
                    continue;
                }
                _ => {}
            }
            if n.kind == 'd'
                && n.xattrs
                    .iter()
                    .any(|(k, v)| k == b"trusted.overlay.opaque" && v == b"y")
            {
                opaque.push(path.clone());
            }
            n.xattrs.retain(|(k, _)| !is_overlay_xattr(k));
            entries.insert(path, n);
        }
        for path in &whiteouts {
            remove_below(&mut merged, path, true);
        }
        for path in &opaque {
            remove_below(&mut merged, path, false);
        }
        for (path, n) in entries {
            match merged.get(&path) {
                // Directories merge; the upper one's attributes show.
                Some(old) if old.kind == 'd' && n.kind == 'd' => {}
                // Anything else hides all of what is below.
                Some(_) => remove_below(&mut merged, &path, true),
                None => {}
            }
            merged.insert(path, n);
        }
    }
    merged
}

async fn full_unpack(layout: &Layout, image: &Descriptor, dir: &Path) -> BTreeMap<String, Node> {
    let target = dir.join("full-unpack");
    unpack(
        layout,
        image,
        &target,
        &UnpackOptions::new().with_platform(amd64()),
    )
    .await
    .unwrap();
    tree(&target)
}

/// An overlay mount of `lowers` (with an empty upper directory), unmounted when dropped.
struct Mount {
    point: PathBuf,
}

impl Mount {
    /// `None` when this process cannot mount overlayfs (not root, no overlayfs).
    fn overlay(lowers: &[PathBuf], scratch: &Path) -> Option<Mount> {
        if !rustix::process::geteuid().is_root() {
            return None;
        }
        let (upper, work, point) = (
            scratch.join("upper"),
            scratch.join("work"),
            scratch.join("merged"),
        );
        for d in [&upper, &work, &point] {
            std::fs::create_dir_all(d).unwrap();
        }
        let lowerdir: Vec<String> = lowers.iter().map(|p| p.display().to_string()).collect();
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            lowerdir.join(":"),
            upper.display(),
            work.display()
        );
        let status = Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o", &options])
            .arg(&point)
            .status();
        match status {
            Ok(s) if s.success() => Some(Mount { point }),
            other => {
                eprintln!("skipping the overlay mount: mount -t overlay failed: {other:?}");
                None
            }
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.point).status();
    }
}

/// The chain of `report` merged (by the model, and by overlayfs where it can be mounted)
/// equals `expected`.
fn check_chain(
    report: &PrepareReport,
    form: WhiteoutForm,
    expected: &BTreeMap<String, Node>,
    scratch: &Path,
) {
    let lowers = report.lowerdirs();
    assert_eq!(lowers.len(), report.snapshots.len());
    assert_eq!(
        report.lowerdir(),
        lowers
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(":")
    );
    let model = overlay_model(&lowers, form);
    assert_eq!(
        &model, expected,
        "the model's merge differs from the unpack"
    );
    if form == WhiteoutForm::Device
        && let Some(mount) = Mount::overlay(&lowers, scratch)
    {
        let mounted = tree(&mount.point);
        assert_eq!(
            &mounted, expected,
            "the overlay mount differs from the unpack"
        );
    }
}

/// The forms a store can be made with here: markers always, devices as root.
fn forms() -> Vec<WhiteoutForm> {
    let mut forms = vec![WhiteoutForm::Marker];
    if rustix::process::geteuid().is_root() {
        forms.push(WhiteoutForm::Device);
    }
    forms
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_merged_as_overlayfs_merges_it_equals_a_full_unpack() {
    for (layout, _guard) in layouts().await {
        let image = image_of(&layout, &whiteout_layers()).await;
        let tmp = tempfile::tempdir().unwrap();
        let expected = full_unpack(&layout, &image, tmp.path()).await;
        // The image does remove and replace things.
        assert!(!expected.contains_key("etc/shadow"));
        assert!(!expected.contains_key("etc/conf.d/a"));
        assert_eq!(expected["tobedir"].kind, 'd');
        assert_eq!(expected["tobefile"].kind, 'f');
        for form in forms() {
            for share in [true, false] {
                let root = tmp.path().join(format!("store-{form}-{share}"));
                let store = SnapshotStore::open(
                    &root,
                    SnapshotOptions::new()
                        .with_form(Some(form))
                        .with_share_files(share),
                )
                .await
                .unwrap();
                assert_eq!(store.form(), form);
                let report = store
                    .prepare(&layout, &image, &prepare_options())
                    .await
                    .unwrap();
                assert_eq!(report.extracted.len(), 3);
                assert!(report.snapshots.iter().all(|s| s.form == form));
                check_chain(
                    &report,
                    form,
                    &expected,
                    &tmp.path().join(format!("mnt-{form}-{share}")),
                );
                // A second prepare extracts nothing and gives the same chain.
                let again = store
                    .prepare(&layout, &image, &prepare_options())
                    .await
                    .unwrap();
                assert!(again.extracted.is_empty());
                assert_eq!(again.lowerdir(), report.lowerdir());
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whiteouts_are_kept_in_the_stores_form() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = fs_layout(&tmp.path().join("layout")).await;
    let image = image_of(&layout, &whiteout_layers()).await;
    for form in forms() {
        let store = SnapshotStore::open(
            tmp.path().join(format!("store-{form}")),
            SnapshotOptions::new().with_form(Some(form)),
        )
        .await
        .unwrap();
        let report = store
            .prepare(&layout, &image, &prepare_options())
            .await
            .unwrap();
        let middle = &report.snapshots[1].path;
        match form {
            WhiteoutForm::Device => {
                let shadow = std::fs::symlink_metadata(middle.join("etc/shadow")).unwrap();
                assert!(shadow.file_type().is_char_device());
                assert_eq!(shadow.rdev(), 0);
                assert!(
                    xattrs(&middle.join("etc/conf.d"))
                        .contains(&(b"trusted.overlay.opaque".to_vec(), b"y".to_vec()))
                );
                assert!(!middle.join("etc/.wh.shadow").exists());
            }
            WhiteoutForm::Marker => {
                assert!(middle.join("etc/.wh.shadow").is_file());
                assert!(middle.join("etc/conf.d/.wh..wh..opq").is_file());
                assert!(middle.join(".wh.gone").is_file());
                // Whited out and made again by the same layer: an opaque directory.
                assert!(middle.join("tobedir/.wh..wh..opq").is_file());
                assert!(!middle.join(".wh.tobedir").exists());
                assert!(!middle.join("etc/shadow").exists());
            }
            _ => unreachable!(),
        }
        // The store keeps one form.
        let other = if form == WhiteoutForm::Device {
            WhiteoutForm::Marker
        } else {
            WhiteoutForm::Device
        };
        let err = SnapshotStore::open(
            tmp.path().join(format!("store-{form}")),
            SnapshotOptions::new().with_form(Some(other)),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(&err, Error::Snapshot { refusal } if matches!(**refusal, Refusal::FormMismatch { .. })),
            "{err:?}"
        );
    }
}

/// Builds an image with umoci: a base layer from a tree, then a layer that deletes a file
/// and a directory, replaces a directory's contents and changes a file (umoci repack writes
/// the whiteouts).
async fn umoci_image(umoci: &ocikit_testkit::tool::Tool, dir: &Path) -> PathBuf {
    let layout = dir.join("umoci-layout");
    let arg = |p: &Path| p.to_str().unwrap().to_owned();
    let image = format!("{}:t", layout.display());
    umoci.ok_async(&["init", "--layout", &arg(&layout)]).await;
    umoci.ok_async(&["new", "--image", &image]).await;
    let bundle = dir.join("bundle1");
    umoci
        .ok_async(&["unpack", "--image", &image, &arg(&bundle)])
        .await;
    let rootfs = bundle.join("rootfs");
    std::fs::create_dir_all(rootfs.join("etc/conf.d")).unwrap();
    std::fs::write(rootfs.join("etc/hosts"), b"127.0.0.1 localhost\n").unwrap();
    std::fs::write(rootfs.join("etc/conf.d/a"), b"a").unwrap();
    std::fs::write(rootfs.join("etc/conf.d/b"), b"b").unwrap();
    std::fs::create_dir_all(rootfs.join("srv/data")).unwrap();
    std::fs::write(rootfs.join("srv/data/x"), b"x").unwrap();
    std::os::unix::fs::symlink("../etc/hosts", rootfs.join("srv/hosts")).unwrap();
    umoci
        .ok_async(&["repack", "--image", &image, &arg(&bundle)])
        .await;
    let bundle = dir.join("bundle2");
    umoci
        .ok_async(&["unpack", "--image", &image, &arg(&bundle)])
        .await;
    let rootfs = bundle.join("rootfs");
    std::fs::remove_file(rootfs.join("etc/conf.d/a")).unwrap();
    std::fs::write(rootfs.join("etc/conf.d/c"), b"c").unwrap();
    std::fs::remove_dir_all(rootfs.join("srv/data")).unwrap();
    std::fs::remove_file(rootfs.join("srv/hosts")).unwrap();
    std::fs::write(rootfs.join("etc/hosts"), b"changed\n").unwrap();
    umoci
        .ok_async(&["repack", "--image", &image, &arg(&bundle)])
        .await;
    layout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_umoci_built_merges_to_its_full_unpack() {
    let Some(umoci) = ocikit_testkit::tool::umoci() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let layout_dir = umoci_image(&umoci, tmp.path()).await;
    let layout = Layout::open(FsStore::open(&layout_dir).await.unwrap())
        .await
        .unwrap();
    let image = layout.resolve("t").await.unwrap();
    let options = PrepareOptions::new().with_platform(PlatformQuery::current());
    let target = tmp.path().join("full");
    unpack(
        &layout,
        &image,
        &target,
        &UnpackOptions::new().with_platform(PlatformQuery::current()),
    )
    .await
    .unwrap();
    let expected = tree(&target);
    assert!(!expected.contains_key("srv/data"));
    assert!(!expected.contains_key("etc/conf.d/a"));
    for form in forms() {
        let store = SnapshotStore::open(
            tmp.path().join(format!("store-{form}")),
            SnapshotOptions::new().with_form(Some(form)),
        )
        .await
        .unwrap();
        let report = store.prepare(&layout, &image, &options).await.unwrap();
        assert_eq!(report.snapshots.len(), 2);
        check_chain(
            &report,
            form,
            &expected,
            &tmp.path().join(format!("mnt-{form}")),
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_preparers_extract_each_shared_layer_once() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = fs_layout(&tmp.path().join("layout")).await;
    let layers = whiteout_layers();
    let big: Vec<u8> = (0..(4u32 << 20))
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let base = archive(&[Entry::dir("big").mode(0o755), Entry::file("big/blob", &big)]);
    let a = image_of(
        &layout,
        &[base.clone(), layers[0].clone(), layers[1].clone()],
    )
    .await;
    let b = image_of(&layout, &[base, layers[0].clone(), layers[2].clone()]).await;
    let root = tmp.path().join("store");
    for round in 0..3 {
        let (one, two) = (
            SnapshotStore::open(&root, SnapshotOptions::new())
                .await
                .unwrap(),
            SnapshotStore::open(&root, SnapshotOptions::new())
                .await
                .unwrap(),
        );
        let (l1, l2) = (layout.clone(), layout.clone());
        let (a1, b1) = (a.clone(), b.clone());
        let first = tokio::spawn(async move { one.prepare(&l1, &a1, &prepare_options()).await });
        let second = tokio::spawn(async move { two.prepare(&l2, &b1, &prepare_options()).await });
        let (ra, rb) = (
            first.await.unwrap().unwrap(),
            second.await.unwrap().unwrap(),
        );
        let mut all: Vec<Digest> = ra.extracted.clone();
        all.extend(rb.extracted.clone());
        let distinct: BTreeSet<Digest> = all.iter().cloned().collect();
        assert_eq!(
            all.len(),
            distinct.len(),
            "a layer was extracted twice: {all:?}"
        );
        if round != 1 {
            // Two shared layers and one of each image's own: four snapshots in all (round 2
            // starts from an emptied store).
            assert_eq!(distinct.len(), 4);
        } else {
            assert!(all.is_empty());
        }
        assert_eq!(ra.snapshots[..2], rb.snapshots[..2]);
        let store = SnapshotStore::open(&root, SnapshotOptions::new())
            .await
            .unwrap();
        assert_eq!(store.list().await.unwrap().len(), 4);
        if round == 1 {
            // Start again from nothing for the last round.
            store.gc_keeping(&BTreeSet::new()).await.unwrap();
        }
    }
}

fn staging_entries(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root.join("staging"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staging_a_killed_run_left_is_removed_and_never_used() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = fs_layout(&tmp.path().join("layout")).await;
    let image = image_of(&layout, &whiteout_layers()).await;
    let chain = SnapshotStore::chain_of(&layout, &image, &amd64())
        .await
        .unwrap();
    let root = tmp.path().join("store");
    let store = SnapshotStore::open(&root, SnapshotOptions::new())
        .await
        .unwrap();
    // What a run killed while extracting the base layer leaves: a half-written tree, with
    // even a snapshot.json, in staging.
    let (algorithm, hex) = chain[0].path_components();
    let key = format!("{algorithm}-{hex}");
    let leftover = root.join("staging").join(format!("{key}.killedrun123"));
    std::fs::create_dir_all(leftover.join("fs/etc")).unwrap();
    std::fs::write(leftover.join("fs/etc/half-written"), b"garbage").unwrap();
    std::fs::write(leftover.join("snapshot.json"), b"{}").unwrap();
    // And one whose run is alive (its chain ID's lock held): left alone by open.
    let (algorithm, hex) = chain[2].path_components();
    let live_key = format!("{algorithm}-{hex}");
    let live = root.join("staging").join(format!("{live_key}.liverun456"));
    std::fs::create_dir_all(live.join("fs")).unwrap();
    let lock = std::fs::File::create(root.join("locks").join(format!("{live_key}.lock"))).unwrap();
    lock.lock().unwrap();

    // Nothing of the leftover looks finished.
    assert!(store.list().await.unwrap().is_empty());
    let reopened = SnapshotStore::open(&root, SnapshotOptions::new())
        .await
        .unwrap();
    assert_eq!(
        staging_entries(&root),
        vec![format!("{live_key}.liverun456")]
    );
    drop(lock);

    // Another leftover appears after open: the preparer that takes the lock removes it.
    std::fs::create_dir_all(leftover.join("fs/etc")).unwrap();
    std::fs::write(leftover.join("fs/etc/half-written"), b"garbage").unwrap();
    let report = reopened
        .prepare(&layout, &image, &prepare_options())
        .await
        .unwrap();
    assert_eq!(report.extracted.len(), 3);
    assert!(!report.snapshots[0].path.join("etc/half-written").exists());
    assert!(report.snapshots[0].path.join("etc/passwd").is_file());
    assert!(!leftover.exists());
    assert!(
        !live.exists(),
        "the staging of chain ID 2 went when its lock was free"
    );
    assert!(staging_entries(&root).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_diff_id_mismatch_is_refused_and_leaves_nothing_finished() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = fs_layout(&tmp.path().join("layout")).await;
    let layers = whiteout_layers();
    let good = image_of(&layout, &layers[..2]).await;
    // The same layers, but the config gives the second one another diffID.
    let manifest: serde_json::Value =
        serde_json::from_slice(&layout.read_blob(&good).await.unwrap()).unwrap();
    let config_digest = manifest["config"]["digest"].as_str().unwrap();
    let config_desc = manifest["config"].clone();
    let mut config: serde_json::Value = serde_json::from_slice(
        &layout
            .read_blob(&serde_json::from_value(config_desc).unwrap())
            .await
            .unwrap(),
    )
    .unwrap();
    assert!(config_digest.starts_with("sha256:"));
    let wrong = Digest::sha256(b"not this layer");
    config["rootfs"]["diff_ids"][1] = serde_json::Value::String(wrong.to_string());
    let config = layout
        .put_blob(
            "application/vnd.oci.image.config.v1+json",
            &serde_json::to_vec(&config).unwrap(),
        )
        .await
        .unwrap();
    let mut manifest = manifest;
    manifest["config"] = serde_json::to_value(&config).unwrap();
    let bad = layout
        .put_blob(
            "application/vnd.oci.image.manifest.v1+json",
            &serde_json::to_vec(&manifest).unwrap(),
        )
        .await
        .unwrap();

    let root = tmp.path().join("store");
    let store = SnapshotStore::open(&root, SnapshotOptions::new())
        .await
        .unwrap();
    let err = store
        .prepare(&layout, &bad, &prepare_options())
        .await
        .unwrap_err();
    let Error::Layer { digest, source } = &err else {
        panic!("{err:?}")
    };
    let manifest_layer: Digest = manifest["layers"][1]["digest"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(*digest, manifest_layer);
    assert!(
        matches!(
            source.as_ref(),
            Error::Codec(CodecError::DiffIdMismatch { .. })
        ),
        "{source:?}"
    );
    // The base layer is a finished, correct snapshot; the refused one is nowhere.
    let listed = store.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].parent, None);
    assert!(staging_entries(&root).is_empty());
    let chain = ocikit_layout::snapshot::chain_ids(&[listed[0].chain_id.clone(), wrong]);
    assert!(!store.snapshot_dir(&chain[1]).exists());
    // The good image still prepares, reusing the base.
    let report = store
        .prepare(&layout, &good, &prepare_options())
        .await
        .unwrap();
    assert_eq!(report.extracted.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_refuses_bad_unknown_and_parent_chain_ids() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = fs_layout(&tmp.path().join("layout")).await;
    let image = image_of(&layout, &whiteout_layers()).await;
    let store = SnapshotStore::open(tmp.path().join("store"), SnapshotOptions::new())
        .await
        .unwrap();
    let report = store
        .prepare(&layout, &image, &prepare_options())
        .await
        .unwrap();
    let refusal = |err: Error| match err {
        Error::Snapshot { refusal } => *refusal,
        other => panic!("{other:?}"),
    };
    for bad in ["nope", "sha256:xyz", "sha256:", "../../etc", ""] {
        assert!(
            matches!(refusal(parse_chain_id(bad).unwrap_err()), Refusal::InvalidChainId { ref given, .. } if given == bad),
            "{bad}"
        );
    }
    let unknown = Digest::sha256(b"no such layer");
    assert_eq!(
        refusal(store.remove(&unknown).await.unwrap_err()),
        Refusal::NotFound {
            chain_id: unknown.clone()
        }
    );
    let base = report.snapshots[0].chain_id.clone();
    assert_eq!(
        refusal(store.remove(&base).await.unwrap_err()),
        Refusal::HasChildren {
            chain_id: base.clone(),
            child: report.snapshots[1].chain_id.clone()
        }
    );
    assert_eq!(store.list().await.unwrap().len(), 3);
    // The top one goes, then the next.
    let top = report.snapshots[2].chain_id.clone();
    let removed = store
        .remove(&parse_chain_id(top.as_str()).unwrap())
        .await
        .unwrap();
    assert_eq!(removed.removed, vec![top.clone()]);
    assert!(!report.snapshots[2].path.exists());
    assert_eq!(store.list().await.unwrap().len(), 2);
    // Prepared again, only the removed one is extracted.
    let again = store
        .prepare(&layout, &image, &prepare_options())
        .await
        .unwrap();
    assert_eq!(again.extracted, vec![top]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_removes_what_no_kept_image_uses_and_unused_objects() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = fs_layout(&tmp.path().join("layout")).await;
    let layers = whiteout_layers();
    let a = image_of(&layout, &layers[..2]).await;
    let b = image_of(&layout, &[layers[0].clone(), layers[2].clone()]).await;
    let store = SnapshotStore::open(tmp.path().join("store"), SnapshotOptions::new())
        .await
        .unwrap();
    let ra = store
        .prepare(&layout, &a, &prepare_options())
        .await
        .unwrap();
    let rb = store
        .prepare(&layout, &b, &prepare_options())
        .await
        .unwrap();
    assert_eq!(rb.extracted.len(), 1);
    assert_eq!(store.list().await.unwrap().len(), 3);

    let report = store.gc(&[(&layout, &a)], &amd64()).await.unwrap();
    assert_eq!(report.removed, vec![rb.snapshots[1].chain_id.clone()]);
    assert_eq!(report.kept, 2);
    // b's top layer had files of its own ("gone/again", "opt/app/new", ...): their objects
    // went with it.
    assert!(report.objects.removed > 0);
    assert!(ra.snapshots.iter().all(|s| s.path.is_dir()));
    assert!(!rb.snapshots[1].path.exists());
    // Nothing kept: everything goes, objects too.
    let report = store.gc(&[], &amd64()).await.unwrap();
    assert_eq!(report.removed.len(), 2);
    assert_eq!(report.objects.kept, 0);
    assert!(store.list().await.unwrap().is_empty());
}

/// Bytes the files under `root` take on disk, each inode once.
fn disk_usage(root: &Path) -> u64 {
    let mut seen = BTreeSet::new();
    let mut total = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if seen.insert((meta.dev(), meta.ino())) {
            total += meta.blocks() * 512;
        }
        if meta.is_dir() {
            stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        }
    }
    total
}

/// Two images whose layers share 80% of their files by content (different layers, so
/// different snapshots): stored once, the two take at most 1.25 times the disk of one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_shared_by_content_are_stored_once() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = fs_layout(&tmp.path().join("layout")).await;
    let file = |seed: u32| -> Vec<u8> {
        (0..(64u32 << 10))
            .map(|i| (i.wrapping_add(seed).wrapping_mul(2_654_435_761) >> 11) as u8)
            .collect()
    };
    let image = |unique_seed: u32, prefix: &str| {
        let mut entries = vec![Entry::dir(prefix).mode(0o755)];
        for i in 0..100u32 {
            let content = if i < 80 {
                file(i)
            } else {
                file(unique_seed + i)
            };
            entries.push(Entry::file(format!("{prefix}/f{i}"), content));
        }
        archive(&entries)
    };
    let one = image_of(&layout, &[image(1000, "app")]).await;
    let two = image_of(&layout, &[image(5000, "srv")]).await;
    let mut usage = BTreeMap::new();
    for share in [true, false] {
        let root = tmp.path().join(format!("store-{share}"));
        let store = SnapshotStore::open(&root, SnapshotOptions::new().with_share_files(share))
            .await
            .unwrap();
        store
            .prepare(&layout, &one, &prepare_options())
            .await
            .unwrap();
        let single = disk_usage(&root);
        let r2 = store
            .prepare(&layout, &two, &prepare_options())
            .await
            .unwrap();
        assert_eq!(r2.extracted.len(), 1);
        let both = disk_usage(&root);
        usage.insert(share, (single, both));
    }
    let (single, both) = usage[&true];
    let ratio = both as f64 / single as f64;
    eprintln!("files stored once: one image {single} B, two images {both} B, ratio {ratio:.3}");
    assert!(ratio <= 1.25, "two images take {ratio:.3}x the disk of one");
    let (single, both) = usage[&false];
    eprintln!(
        "files not shared: one image {single} B, two images {both} B, ratio {:.3}",
        both as f64 / single as f64
    );
    assert!(
        both as f64 / single as f64 > 1.9,
        "without sharing each image has its own copies"
    );
    // The shared files are one inode.
    let store = SnapshotStore::open(tmp.path().join("store-true"), SnapshotOptions::new())
        .await
        .unwrap();
    let listed = store.list().await.unwrap();
    let a = std::fs::metadata(listed[0].path.join(if listed[0].path.join("app").exists() {
        "app/f3"
    } else {
        "srv/f3"
    }))
    .unwrap();
    let b = std::fs::metadata(listed[1].path.join(if listed[1].path.join("app").exists() {
        "app/f3"
    } else {
        "srv/f3"
    }))
    .unwrap();
    assert_eq!((a.dev(), a.ino()), (b.dev(), b.ino()));
}
