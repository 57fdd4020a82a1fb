//! `UnpackOptions`' ID maps and rootless mode (`umoci unpack --uid-map/--gid-map/--rootless`)
//! reach the layer applier: owners translated, an owner outside the map failing a staged
//! unpack with nothing left, and rootless owners, skipped devices and owner records; and
//! all of it against umoci 0.4.7's own unpack of the same image.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use ocikit_codec::apply::{IdKind, IdMap, ROOTLESS_OWNER_XATTR, rootless_owner_record};
use ocikit_codec::compression::Compression;
use ocikit_codec::{Error as CodecError, InvalidEntry};
use ocikit_digest::oci_spec::image::Descriptor;
use ocikit_digest::platform;
use ocikit_layout::{
    Error, ImageBuilder, LayerSpec, Layout, PlatformQuery, UnpackOptions, unpack_staged,
};
use ocikit_store::FsStore;
use ocikit_testkit::tarball::{Entry, archive};

use crate::image::layouts;

fn amd64() -> UnpackOptions {
    UnpackOptions::new().with_platform(PlatformQuery::new(&platform::parse("linux/amd64").unwrap()))
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
                LayerSpec::new().compression(Compression::None),
            )
            .await
            .unwrap();
    }
    image.write().await.unwrap()
}

fn owner(path: &Path) -> (u32, u32) {
    let m = std::fs::symlink_metadata(path).unwrap();
    (m.uid(), m.gid())
}

fn me() -> (u32, u32) {
    (
        rustix::process::geteuid().as_raw(),
        rustix::process::getegid().as_raw(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpack_translates_owners_through_the_maps_and_refuses_unmapped_ones() {
    let root_user = rustix::process::geteuid().is_root();
    for (layout, _guard) in layouts().await {
        let base = archive(&[
            Entry::dir("etc").owner(0, 0).mode(0o755),
            Entry::file("etc/f", b"f").owner(0, 0),
        ]);
        let upper = archive(&[Entry::file("home", b"u").owner(1000, 1000)]);
        let image = image_of(&layout, &[base, upper]).await;
        let tmp = tempfile::tempdir().unwrap();
        let (uid, gid) = me();
        // As root any host range; otherwise only one's own ids can be given.
        let (uid_map, gid_map, expected) = if root_user {
            (
                IdMap::parse(["0:100000:65536"]).unwrap(),
                IdMap::parse(["0:200000:65536"]).unwrap(),
                [(100_000, 200_000), (101_000, 201_000)],
            )
        } else {
            (
                IdMap::parse([format!("0:{uid}:1"), "1000:4000000000:1".into()]).unwrap(),
                IdMap::parse([format!("0:{gid}:1"), "1000:4000000000:1".into()]).unwrap(),
                [(uid, gid), (4_000_000_000, 4_000_000_000)],
            )
        };
        let options = amd64()
            .with_uid_map(Some(uid_map.clone()))
            .with_gid_map(Some(gid_map));
        let target = tmp.path().join("rootfs");
        let result = unpack_staged(&layout, &image, &target, &options).await;
        if root_user {
            result.unwrap();
            // The root too, as umoci has it: the host ids of the container's 0.
            assert_eq!(owner(&target), expected[0]);
            assert_eq!(owner(&target.join("etc/f")), expected[0]);
            assert_eq!(owner(&target.join("home")), expected[1]);
        } else {
            // The second layer's owner is someone else's: chown refused, nothing left.
            assert!(result.is_err());
            assert!(!target.exists());
        }

        // A map that leaves uid 1000 out: the layer fails, naming the entry, and the staged
        // unpack leaves nothing at the target.
        let narrow = amd64().with_uid_map(Some(IdMap::parse(["0:0:1000"]).unwrap()));
        let target = tmp.path().join("narrow");
        let err = unpack_staged(&layout, &image, &target, &narrow)
            .await
            .unwrap_err();
        let Error::Layer { source, .. } = &err else {
            panic!("{err:?}")
        };
        match source.as_ref() {
            Error::Codec(CodecError::InvalidEntry { path, reason }) => {
                assert_eq!(path, "home");
                assert_eq!(
                    *reason,
                    InvalidEntry::UnmappedOwner {
                        kind: IdKind::Uid,
                        id: 1000
                    }
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(!target.exists());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rootless_unpack_owns_everything_and_records_the_layer_owners() {
    for (layout, _guard) in layouts().await {
        let layer = archive(&[
            Entry::dir("dev").owner(0, 0).mode(0o755),
            Entry::char_device("dev/null", 1, 3).owner(0, 0).mode(0o666),
            Entry::file("etc-shadow", b"s").owner(0, 42).mode(0o640),
            Entry::file("su", b"x").owner(0, 0).mode(0o4755),
        ]);
        let image = image_of(&layout, &[layer]).await;
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("rootfs");
        let report = unpack_staged(&layout, &image, &target, &amd64().with_rootless(true))
            .await
            .unwrap();
        assert_eq!(report.layers[0].devices_skipped, 1);
        assert!(std::fs::symlink_metadata(target.join("dev/null")).is_err());
        for name in ["dev", "etc-shadow", "su"] {
            assert_eq!(owner(&target.join(name)), me(), "{name}");
        }
        assert_eq!(
            std::fs::symlink_metadata(target.join("su")).unwrap().mode() & 0o7777,
            0o755
        );
        let mut buf = [0u8; 64];
        let n = rustix::fs::lgetxattr(
            target.join("etc-shadow"),
            ROOTLESS_OWNER_XATTR,
            &mut buf[..],
        )
        .unwrap();
        assert_eq!(Some(buf[..n].to_vec()), rootless_owner_record(0, 42));
    }
}

/// What ownership means in a tree: each path's owner and its rootless owner record.
type Owners = BTreeMap<PathBuf, (u32, u32, Option<Vec<u8>>)>;

fn owners(root: &Path) -> Owners {
    let mut out = Owners::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(path) = pending.pop() {
        let m = std::fs::symlink_metadata(&path).unwrap();
        let mut buf = vec![0u8; 256];
        let record = match rustix::fs::lgetxattr(&path, ROOTLESS_OWNER_XATTR, &mut buf[..]) {
            Ok(n) => Some(buf[..n].to_vec()),
            Err(rustix::io::Errno::NODATA) => None,
            Err(err) => panic!("{}: {err}", path.display()),
        };
        out.insert(
            path.strip_prefix(root).unwrap().to_path_buf(),
            (m.uid(), m.gid(), record),
        );
        if m.is_dir() {
            for entry in std::fs::read_dir(&path).unwrap() {
                pending.push(entry.unwrap().path());
            }
        }
    }
    out
}

/// A layer as base images have them: root's files, a group's, a user's home, a setuid
/// program, devices, a FIFO, links.
fn image_layer() -> Vec<u8> {
    archive(&[
        Entry::dir("etc").owner(0, 0).mode(0o755),
        Entry::file("etc/shadow", b"s").owner(0, 42).mode(0o640),
        Entry::dir("usr").owner(0, 0).mode(0o755),
        Entry::dir("usr/bin").owner(0, 0).mode(0o755),
        Entry::file("usr/bin/su", b"x").owner(0, 0).mode(0o4755),
        Entry::hardlink("usr/bin/su2", "usr/bin/su"),
        Entry::dir("home").owner(0, 0).mode(0o755),
        Entry::dir("home/u").owner(1000, 1000).mode(0o700),
        Entry::file("home/u/f", b"f").owner(1000, 1000),
        Entry::symlink("home/u/l", "f").owner(1000, 1000),
        Entry::fifo("home/u/p").owner(1000, 0),
        Entry::dir("dev").owner(0, 0).mode(0o755),
        Entry::char_device("dev/null", 1, 3).owner(0, 0).mode(0o666),
        Entry {
            dev: (8, 0),
            ..Entry::raw("dev/sda", b'4').owner(0, 6).mode(0o660)
        },
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_are_what_umoci_unpack_gives_with_rootless_and_with_maps() {
    let Some(umoci) = ocikit_testkit::tool::umoci() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let layout_dir = dir.path().join("layout");
    let layout = Layout::create(FsStore::open(&layout_dir).await.unwrap())
        .await
        .unwrap();
    let image = image_of(&layout, &[image_layer()]).await;
    layout.set_tag("t", &image).await.unwrap();
    let image_ref = format!("{}:t", layout_dir.display());
    let path = |name: &str| dir.path().join(name);
    let arg = |p: &PathBuf| p.to_str().unwrap().to_owned();

    // --rootless: everything the unpacking user's, the layer's owners in the records.
    umoci
        .ok_async(&[
            "unpack",
            "--rootless",
            "--image",
            &image_ref,
            &arg(&path("umoci-rootless")),
        ])
        .await;
    let ours = path("ours-rootless");
    unpack_staged(&layout, &image, &ours, &amd64().with_rootless(true))
        .await
        .unwrap();
    let umoci_rootfs = path("umoci-rootless").join("rootfs");
    let mut theirs = owners(&umoci_rootfs);
    // Where umoci puts empty files in the devices' place, ocikit puts nothing (SPEC C-S01).
    for device in ["dev/null", "dev/sda"] {
        let m = std::fs::symlink_metadata(umoci_rootfs.join(device)).unwrap();
        assert!(m.is_file() && m.len() == 0, "umoci's {device}");
        theirs.remove(Path::new(device));
    }
    assert_eq!(owners(&ours), theirs);
    let records = theirs.values().filter(|(_, _, r)| r.is_some()).count();
    assert_eq!(
        records, 3,
        "etc/shadow, home/u, home/u/f (not 0:0; FIFOs and symlinks hold none): {theirs:#?}"
    );

    // --uid-map/--gid-map (root can give others' ids; umoci cannot chown otherwise).
    if rustix::process::geteuid().is_root() {
        let maps = ["--uid-map", "0:100000:65536", "--gid-map", "0:200000:65536"];
        let bundle = arg(&path("umoci-mapped"));
        let mut args = vec!["unpack"];
        args.extend(maps);
        args.extend(["--image", &image_ref, &bundle]);
        umoci.ok_async(&args).await;
        let ours = path("ours-mapped");
        let options = amd64()
            .with_uid_map(Some(IdMap::parse(["0:100000:65536"]).unwrap()))
            .with_gid_map(Some(IdMap::parse(["0:200000:65536"]).unwrap()));
        unpack_staged(&layout, &image, &ours, &options)
            .await
            .unwrap();
        let theirs = owners(&path("umoci-mapped").join("rootfs"));
        assert_eq!(owners(&ours), theirs);
        assert_eq!(theirs[Path::new("home/u/p")].0, 101_000);

        // A map without uid 1000: both refuse.
        let bundle = arg(&path("umoci-narrow"));
        let out = umoci.output(&[
            "unpack",
            "--uid-map",
            "0:100000:1000",
            "--image",
            &image_ref,
            &bundle,
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("cannot be mapped"), "umoci: {stderr}");
        let narrow = amd64().with_uid_map(Some(IdMap::parse(["0:100000:1000"]).unwrap()));
        assert!(
            unpack_staged(&layout, &image, path("ours-narrow"), &narrow)
                .await
                .is_err()
        );
        assert!(!path("ours-narrow").exists());
    }
}
