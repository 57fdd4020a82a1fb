//! `UnpackOptions`' ID maps and rootless mode (`umoci unpack --uid-map/--gid-map/--rootless`)
//! reach the layer applier: owners translated, an owner outside the map failing a staged
//! unpack with nothing left, and rootless placeholders and owner records.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use ocikit_codec::apply::{IdKind, IdMap, ROOTLESS_OWNER_XATTR, rootless_owner_record};
use ocikit_codec::compression::Compression;
use ocikit_codec::{Error as CodecError, InvalidEntry};
use ocikit_digest::oci_spec::image::Descriptor;
use ocikit_digest::platform;
use ocikit_layout::{
    Error, ImageBuilder, LayerSpec, Layout, PlatformQuery, UnpackOptions, unpack_staged,
};
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
        assert_eq!(report.layers[0].device_placeholders, 1);
        let null = std::fs::symlink_metadata(target.join("dev/null")).unwrap();
        assert!(null.is_file() && null.mode() & 0o7777 == 0);
        for name in ["dev", "dev/null", "etc-shadow", "su"] {
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
