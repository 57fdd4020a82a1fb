//! ID maps (`apply::IdMap`, umoci's and podman's `CONTAINER:HOST[:SIZE]`) and rootless
//! unpacking (`ApplyOptions::rootless`, umoci's `--rootless`): parsing and its refusals,
//! owners translated on apply, owners outside the map refused before anything is made for
//! them, and a rootless apply run by an unprivileged user (`nobody`, through `runuser`, when
//! the tests run as root).

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use ocikit_codec::apply::{
    ApplyOptions, IdField, IdKind, IdMap, IdMapError, IdMapping, ROOTLESS_OWNER_XATTR, apply_layer,
    rootless_owner_record,
};
use ocikit_codec::{Error, InvalidEntry};
use ocikit_testkit::tarball::{Entry, archive};

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn me() -> (u32, u32) {
    (
        rustix::process::geteuid().as_raw(),
        rustix::process::getegid().as_raw(),
    )
}

fn reason(text: &str) -> IdMapError {
    match IdMapping::parse(text) {
        Err(Error::InvalidIdMap { mapping, reason }) => {
            assert_eq!(mapping, text);
            reason
        }
        other => panic!("{text:?} parsed: {other:?}"),
    }
}

fn map_reason(texts: &[&str]) -> (String, IdMapError) {
    match IdMap::parse(texts) {
        Err(Error::InvalidIdMap { mapping, reason }) => (mapping, reason),
        other => panic!("{texts:?} parsed: {other:?}"),
    }
}

fn lxattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 4096];
    match rustix::fs::lgetxattr(path, name, &mut buf[..]) {
        Ok(n) => Some(buf[..n].to_vec()),
        Err(rustix::io::Errno::NODATA) => None,
        Err(err) => panic!("getxattr {} {name}: {err}", path.display()),
    }
}

#[test]
fn id_mappings_parse_the_umoci_and_podman_text_forms() {
    let m = IdMapping::parse("0:100000:65536").unwrap();
    assert_eq!((m.container, m.host, m.size), (0, 100_000, 65_536));
    assert_eq!(m.to_string(), "0:100000:65536");
    assert_eq!("0:100000:65536".parse::<IdMapping>().unwrap(), m);
    // umoci's two-field form: a size of 1.
    let one = IdMapping::parse("1000:2000").unwrap();
    assert_eq!((one.container, one.host, one.size), (1000, 2000, 1));
    // The last valid id is 4294967294.
    let top = IdMapping::parse("4294967294:0:1").unwrap();
    assert_eq!(top.to_host(4_294_967_294), Some(0));

    let map = IdMap::parse(["0:100000:1000", "1000:5000:1", "1001:101001:64535"]).unwrap();
    assert_eq!(map.ranges().len(), 3);
    assert_eq!(map.to_host(0), Some(100_000));
    assert_eq!(map.to_host(999), Some(100_999));
    assert_eq!(map.to_host(1000), Some(5000));
    assert_eq!(map.to_host(1001), Some(101_001));
    assert_eq!(map.to_host(65_535), Some(165_535));
    assert_eq!(map.to_host(65_536), None);
    assert_eq!(
        map.to_string(),
        "0:100000:1000,1000:5000:1,1001:101001:64535"
    );
    // Adjacent ranges are fine on both sides.
    IdMap::new([
        IdMapping::new(0, 10, 5).unwrap(),
        IdMapping::new(5, 15, 5).unwrap(),
    ])
    .unwrap();
}

#[test]
fn id_mappings_refuse_bad_text_naming_the_field() {
    use IdField::{Container, Host, Size};
    assert_eq!(reason("a:1:1"), IdMapError::NotANumber { field: Container });
    assert_eq!(reason("1:b:1"), IdMapError::NotANumber { field: Host });
    assert_eq!(reason("1:1:x"), IdMapError::NotANumber { field: Size });
    assert_eq!(
        reason("-1:0:1"),
        IdMapError::NotANumber { field: Container }
    );
    assert_eq!(
        reason("+1:0:1"),
        IdMapError::NotANumber { field: Container }
    );
    assert_eq!(
        reason(" 1:0:1"),
        IdMapError::NotANumber { field: Container }
    );
    assert_eq!(reason("1::1"), IdMapError::NotANumber { field: Host });
    assert_eq!(reason("1:1:0"), IdMapError::ZeroSize);
    assert_eq!(
        reason("4294967296:0:1"),
        IdMapError::TooLarge { field: Container }
    );
    assert_eq!(
        reason("0:99999999999999999999:1"),
        IdMapError::TooLarge { field: Host }
    );
    assert_eq!(
        reason("0:0:4294967296"),
        IdMapError::TooLarge { field: Size }
    );
    // Ranges reaching 4294967295 ((uid_t)-1) or beyond.
    assert_eq!(
        reason("4294967290:0:10"),
        IdMapError::RangeOverflow { field: Container }
    );
    assert_eq!(
        reason("0:4294967295:1"),
        IdMapError::RangeOverflow { field: Host }
    );
    assert_eq!(
        reason("1:0:4294967295"),
        IdMapError::RangeOverflow { field: Container }
    );
    assert_eq!(
        reason("0:1:4294967295"),
        IdMapError::RangeOverflow { field: Host }
    );
    // The whole id space less (uid_t)-1 is one valid range.
    IdMapping::parse("0:0:4294967295").unwrap();
    assert_eq!(reason("1:2:3:4"), IdMapError::FieldCount { found: 4 });
    assert_eq!(reason("12"), IdMapError::FieldCount { found: 1 });
    assert_eq!(reason(""), IdMapError::FieldCount { found: 1 });
    assert!(matches!(
        IdMapping::new(0, 0, 0),
        Err(Error::InvalidIdMap {
            reason: IdMapError::ZeroSize,
            ..
        })
    ));

    // Overlaps, inside the container or on the host, naming the later range and the other.
    let (mapping, why) = map_reason(&["0:1000:10", "5:5000:1"]);
    assert_eq!(mapping, "5:5000:1");
    assert_eq!(
        why,
        IdMapError::Overlap {
            field: Container,
            other: IdMapping::new(0, 1000, 10).unwrap()
        }
    );
    let (mapping, why) = map_reason(&["0:1000:10", "100:1009:5"]);
    assert_eq!(mapping, "100:1009:5");
    assert!(matches!(why, IdMapError::Overlap { field: Host, .. }));
    let (_, why) = map_reason(&["10:0:1", "0:100:11"]);
    assert!(matches!(
        why,
        IdMapError::Overlap {
            field: Container,
            ..
        }
    ));
    let (_, why) = map_reason(&[]);
    assert_eq!(why, IdMapError::Empty);
    // A bad range in a list names that range.
    let (mapping, why) = map_reason(&["0:1000:10", "x:1:1"]);
    assert_eq!(mapping, "x:1:1");
    assert_eq!(why, IdMapError::NotANumber { field: Container });
    // The message names the field.
    let err = IdMapping::parse("1:b:1").unwrap_err().to_string();
    assert!(err.contains("host id") && err.contains("1:b:1"), "{err}");
}

/// A layer with files of uid/gid 0 and 1000, a directory, a symlink and a FIFO.
fn owned_layer() -> Vec<u8> {
    archive(&[
        Entry::dir("etc").owner(0, 0).mode(0o755),
        Entry::file("etc/root-file", b"r").owner(0, 0),
        Entry::file("etc/user-file", b"u").owner(1000, 1000),
        Entry::dir("home").owner(1000, 100).mode(0o755),
        Entry::symlink("home/link", "../etc/user-file").owner(1000, 1000),
        Entry::fifo("home/fifo").owner(1000, 1000),
        Entry::hardlink("etc/hard", "etc/root-file").owner(12345, 12345),
    ])
}

fn owner(path: &Path) -> (u32, u32) {
    let m = fs::symlink_metadata(path).unwrap();
    (m.uid(), m.gid())
}

#[test]
fn a_mapped_layer_lands_with_host_ids() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    fs::create_dir(&root).unwrap();
    if is_root() {
        let options = ApplyOptions::new()
            .with_uid_map(Some(IdMap::parse(["0:100000:65536"]).unwrap()))
            .with_gid_map(Some(
                IdMap::parse(["0:200000:100", "100:300100:65436"]).unwrap(),
            ));
        let report = apply_layer(&root, owned_layer().as_slice(), &options).unwrap();
        assert_eq!(report.files, 2);
        assert_eq!(owner(&root.join("etc")), (100_000, 200_000));
        assert_eq!(owner(&root.join("etc/root-file")), (100_000, 200_000));
        assert_eq!(owner(&root.join("etc/user-file")), (101_000, 301_000));
        assert_eq!(owner(&root.join("home")), (101_000, 300_100));
        assert_eq!(owner(&root.join("home/link")), (101_000, 301_000));
        assert_eq!(owner(&root.join("home/fifo")), (101_000, 301_000));
        // A hardlink is its target's inode; its own header's ids are not consulted.
        assert_eq!(owner(&root.join("etc/hard")), (100_000, 200_000));
    } else {
        // Unprivileged: a map onto one's own ids is what `chown` allows, and a map asks for
        // owners to be applied even when not root.
        let (uid, gid) = me();
        let options = ApplyOptions::new()
            .with_uid_map(Some(
                IdMap::parse([format!("1000:{uid}:1"), "0:4000000000:1".into()]).unwrap(),
            ))
            .with_gid_map(Some(
                IdMap::parse([format!("1000:{gid}:1"), "0:4000000000:1000".into()]).unwrap(),
            ));
        let layer = archive(&[
            Entry::file("user-file", b"u").owner(1000, 1000),
            Entry::symlink("link", "user-file").owner(1000, 1000),
        ]);
        apply_layer(&root, layer.as_slice(), &options).unwrap();
        assert_eq!(owner(&root.join("user-file")), (uid, gid));
        // And onto someone else's ids, `chown` is refused: a typed error, not silence.
        let err = apply_layer(&root, owned_layer().as_slice(), &options).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Io {
                    operation: "chown",
                    ..
                }
            ),
            "{err:?}"
        );
    }
}

#[test]
fn an_owner_outside_the_maps_is_refused_naming_the_entry() {
    let map = || IdMap::parse(["0:100000:65536"]).unwrap();
    let cases: [(ApplyOptions, Entry, IdKind, u32); 3] = [
        (
            ApplyOptions::new().with_uid_map(Some(map())),
            Entry::file("b", b"x").owner(70_000, 0),
            IdKind::Uid,
            70_000,
        ),
        (
            ApplyOptions::new().with_gid_map(Some(map())),
            Entry::dir("b").owner(0, 65_536),
            IdKind::Gid,
            65_536,
        ),
        // Refused whether owners are applied or not.
        (
            ApplyOptions::new()
                .with_uid_map(Some(map()))
                .with_preserve_owner(Some(false)),
            Entry::symlink("b", "a").owner(4_000_000_000, 0),
            IdKind::Uid,
            4_000_000_000,
        ),
    ];
    for (options, bad, kind, id) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        fs::create_dir(&root).unwrap();
        let options = if is_root() {
            options
        } else {
            options.with_preserve_owner(Some(false))
        };
        let layer = archive(&[
            Entry::file("a", b"kept").owner(0, 0),
            bad,
            Entry::file("c", b"never").owner(0, 0),
        ]);
        let err = apply_layer(&root, layer.as_slice(), &options).unwrap_err();
        match &err {
            Error::InvalidEntry { path, reason } => {
                assert_eq!(path, "b");
                assert_eq!(*reason, InvalidEntry::UnmappedOwner { kind, id });
            }
            other => panic!("{other:?}"),
        }
        let message = err.to_string();
        assert!(
            message.contains(&format!("{kind} {id}")) && message.contains("\"b\""),
            "{message}"
        );
        // What came before stays (the applier's failure semantics); nothing was made for the
        // refused entry, nor after it.
        assert_eq!(fs::read(root.join("a")).unwrap(), b"kept");
        assert!(fs::symlink_metadata(root.join("b")).is_err());
        assert!(fs::symlink_metadata(root.join("c")).is_err());
    }
}

/// Where the rootless child finds its directory (set only in the child).
const CHILD_ENV: &str = "OCIKIT_TEST_ROOTLESS_CHILD";

/// A layer as an image's would be: root-owned files, another user's, a setuid program,
/// devices, a FIFO, xattrs a user may and may not set, and a forged owner record.
fn rootless_layer() -> Vec<u8> {
    archive(&[
        Entry::dir("etc").owner(0, 0).mode(0o755),
        Entry::file("etc/shadow", b"root:*:")
            .owner(0, 42)
            .mode(0o640),
        Entry::dir("usr/bin").owner(0, 0).mode(0o755),
        Entry::file("usr/bin/su", b"\x7fELF")
            .owner(0, 0)
            .mode(0o4755),
        Entry::file("usr/bin/wall", b"\x7fELF")
            .owner(0, 5)
            .mode(0o2755),
        Entry::dir("home/u").owner(1000, 1000).mode(0o700),
        Entry::file("home/u/notes", b"n")
            .owner(1000, 1000)
            .pax("SCHILY.xattr.user.note", b"kept")
            .pax("SCHILY.xattr.trusted.secret", b"dropped")
            .pax("SCHILY.xattr.security.capability", b"\x01\x00\x00\x02"),
        Entry::file("forged", b"f")
            .owner(0, 0)
            .pax("SCHILY.xattr.user.rootlesscontainers", b"\x08\x01\x10\x01"),
        Entry::dir("dev").owner(0, 0).mode(0o755),
        Entry::char_device("dev/null", 1, 3).owner(0, 0).mode(0o666),
        Entry {
            dev: (8, 0),
            ..Entry::raw("dev/sda", b'4').owner(0, 6).mode(0o660)
        },
        Entry::fifo("run/fifo").owner(0, 0),
        Entry::symlink("home/u/link", "notes").owner(1000, 1000),
    ])
}

/// What the unprivileged user does: applies `dir/layer-N.tar` in turn to `dir/root` with
/// the rootless preset, and writes each report's counts to `dir/out/reports`.
fn rootless_apply(dir: &Path) {
    let mut reports = String::new();
    for i in 0.. {
        let Ok(layer) = fs::read(dir.join(format!("layer-{i}.tar"))) else {
            break;
        };
        let r = apply_layer(
            &dir.join("root"),
            layer.as_slice(),
            &ApplyOptions::rootless(),
        )
        .unwrap_or_else(|e| panic!("rootless apply of layer {i} as uid {}: {e:?}", me().0));
        reports += &format!("{} {} {}\n", r.files, r.special_files, r.devices_skipped);
    }
    fs::write(dir.join("out/reports"), reports).unwrap();
}

/// A rootless apply of `layers` by an unprivileged user: `nobody`, running the test `test`
/// of this binary again (with [`CHILD_ENV`] set) through `runuser`, when the tests run as
/// root; this process otherwise. Returns the directory (keep it alive), the root, the
/// user, and per layer `[files, special files, devices skipped]`.
fn run_rootless(
    test: &str,
    layers: &[Vec<u8>],
) -> (tempfile::TempDir, PathBuf, (u32, u32), Vec<[u64; 3]>) {
    // Under /tmp with a directory everyone can traverse (a tempdir is private).
    let tmp = tempfile::Builder::new()
        .prefix("ocikit-rootless-")
        .tempdir_in("/tmp")
        .unwrap();
    let dir = tmp.path();
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
    for (i, layer) in layers.iter().enumerate() {
        let path = dir.join(format!("layer-{i}.tar"));
        fs::write(&path, layer).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    }
    let root = dir.join("root");
    fs::create_dir(&root).unwrap();
    fs::create_dir(dir.join("out")).unwrap();
    let user = if is_root() {
        // Root is needed to be someone else; `nobody` runs this very test.
        let runuser = ocikit_testkit::require_tool("runuser")
            .expect("runuser is needed to run the rootless apply unprivileged");
        let id = |flag: &str| -> u32 {
            let out = Command::new("id").args([flag, "nobody"]).output().unwrap();
            assert!(out.status.success(), "no user nobody");
            String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
        };
        let (uid, gid) = (id("-u"), id("-g"));
        for owned in [&root, &dir.join("out")] {
            rustix::fs::chown(
                owned,
                Some(rustix::fs::Uid::from_raw(uid)),
                Some(rustix::fs::Gid::from_raw(gid)),
            )
            .unwrap();
        }
        // The test binary where `nobody` can reach it.
        let exe = std::env::current_exe().unwrap();
        let binary = dir.join("codec-tests");
        if fs::hard_link(&exe, &binary).is_err() {
            fs::copy(&exe, &binary).unwrap();
        }
        fs::set_permissions(&binary, fs::Permissions::from_mode(0o755)).unwrap();
        let out = Command::new(runuser)
            .args(["-u", "nobody", "--", "env"])
            .arg(format!("{CHILD_ENV}={}", dir.display()))
            .arg(&binary)
            .args(["--exact", test, "--nocapture", "--test-threads=1"])
            .current_dir(dir)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "rootless apply as nobody: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The child ran the one test, not none.
        assert!(stdout.contains("1 passed"), "{stdout}");
        (uid, gid)
    } else {
        rootless_apply(dir);
        me()
    };
    let reports = fs::read_to_string(dir.join("out/reports"))
        .unwrap()
        .lines()
        .map(|line| {
            let n: Vec<u64> = line.split(' ').map(|v| v.parse().unwrap()).collect();
            [n[0], n[1], n[2]]
        })
        .collect::<Vec<_>>();
    assert_eq!(reports.len(), layers.len());
    (tmp, root, user, reports)
}

#[test]
fn rootless_apply_as_an_unprivileged_user() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        rootless_apply(Path::new(&dir));
        return;
    }
    let (_tmp, root, user, reports) = run_rootless(
        "idmap::rootless_apply_as_an_unprivileged_user",
        &[rootless_layer()],
    );
    // 5 files, the FIFO, the 2 devices skipped.
    assert_eq!(reports, [[5, 1, 2]]);

    // Everything the layer made belongs to the unpacking user.
    let mut pending = vec![root.clone()];
    let mut seen = 0;
    while let Some(path) = pending.pop() {
        let m = fs::symlink_metadata(&path).unwrap();
        assert_eq!((m.uid(), m.gid()), user, "{}", path.display());
        seen += 1;
        if m.is_dir() {
            for entry in fs::read_dir(&path).unwrap() {
                pending.push(entry.unwrap().path());
            }
        }
    }
    assert_eq!(
        seen, 15,
        "the root, 7 directories, 5 files, a FIFO, a symlink"
    );
    let mode = |rel: &str| fs::symlink_metadata(root.join(rel)).unwrap().mode();
    // Devices are skipped: nothing stands in their place (SPEC C-S01).
    for device in ["dev/null", "dev/sda"] {
        assert!(fs::symlink_metadata(root.join(device)).is_err(), "{device}");
    }
    assert!(
        fs::symlink_metadata(root.join("run/fifo"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
    // Set-id bits are dropped: the files are the unpacking user's now.
    assert_eq!(mode("usr/bin/su") & 0o7777, 0o755);
    assert_eq!(mode("usr/bin/wall") & 0o7777, 0o755);
    assert_eq!(mode("etc/shadow") & 0o7777, 0o640);
    assert_eq!(mode("home/u") & 0o7777, 0o700);
    // The layer's owners are recorded where umoci records them; 0:0 is not recorded.
    let record = |rel: &str| lxattr(&root.join(rel), ROOTLESS_OWNER_XATTR);
    assert_eq!(record("etc/shadow"), rootless_owner_record(0, 42));
    assert_eq!(record("home/u"), rootless_owner_record(1000, 1000));
    assert_eq!(record("home/u/notes"), rootless_owner_record(1000, 1000));
    assert_eq!(record("usr/bin/su"), None);
    assert_eq!(record("etc"), None);
    // The layer's own record is not believed.
    assert_eq!(record("forged"), None);
    // `user.*` xattrs apply, privileged ones do not (not even when root runs it).
    let notes = root.join("home/u/notes");
    assert_eq!(lxattr(&notes, "user.note").as_deref(), Some(&b"kept"[..]));
    assert_eq!(lxattr(&notes, "trusted.secret"), None);
    assert_eq!(lxattr(&notes, "security.capability"), None);
}

#[test]
fn rootless_apply_sets_no_owner_and_ignores_maps() {
    // The same options run by whoever runs the tests (root here): nothing is chowned,
    // devices are skipped, the maps are not consulted (an id outside them passes).
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    fs::create_dir(&root).unwrap();
    let options = ApplyOptions::rootless()
        .with_uid_map(Some(IdMap::parse(["0:100000:1"]).unwrap()))
        .with_preserve_owner(Some(true));
    let report = apply_layer(&root, rootless_layer().as_slice(), &options).unwrap();
    assert_eq!(report.devices_skipped, 2);
    assert!(fs::symlink_metadata(root.join("dev/null")).is_err());
    assert_eq!(owner(&root.join("home/u/notes")), me());
    assert_eq!(owner(&root.join("etc/shadow")), me());
    assert_eq!(
        lxattr(&root.join("etc/shadow"), ROOTLESS_OWNER_XATTR),
        rootless_owner_record(0, 42)
    );
    // A second layer makes a recorded directory root's again: the stale record goes.
    let second = archive(&[Entry::dir("home/u").owner(0, 0).mode(0o755)]);
    apply_layer(&root, second.as_slice(), &options).unwrap();
    assert_eq!(lxattr(&root.join("home/u"), ROOTLESS_OWNER_XATTR), None);
    // Without rootless, the same map refuses the layer (uid 1000 is outside it).
    let tmp = tempfile::tempdir().unwrap();
    let err = apply_layer(
        tmp.path(),
        rootless_layer().as_slice(),
        &ApplyOptions::new()
            .with_uid_map(Some(IdMap::parse(["0:100000:1"]).unwrap()))
            .with_preserve_owner(Some(false)),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidEntry {
                reason: InvalidEntry::UnmappedOwner {
                    kind: IdKind::Uid,
                    id: 1000
                },
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn rootless_layers_write_into_and_remove_read_only_lower_directories() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        rootless_apply(Path::new(&dir));
        return;
    }
    // Fedora's /root is 0550, many /usr/lib/... trees 0555: what their owner may not
    // change, unless it changes their mode first.
    let lower = archive(&[
        Entry::dir("root").mode(0o550),
        Entry::file("root/.bashrc", b"old").mode(0o644),
        Entry::dir("ro").mode(0o555),
        Entry::dir("ro/sub").mode(0o555),
        Entry::file("ro/sub/x", b"x"),
        Entry::file("ro/gone", b"g"),
        Entry::dir("tree").mode(0o555),
        Entry::dir("tree/deep").mode(0o500),
        Entry::file("tree/deep/f", b"f").mode(0o444),
    ]);
    let upper = archive(&[
        Entry::file("root/.bashrc", b"new"),
        Entry::file("root/.profile", b"p"),
        Entry::file("ro/.wh.gone", b""),
        Entry::file("ro/sub/.wh..wh..opq", b""),
        Entry::file("ro/sub/y", b"y"),
        Entry::file(".wh.tree", b""),
    ]);
    let (_tmp, root, _user, reports) = run_rootless(
        "idmap::rootless_layers_write_into_and_remove_read_only_lower_directories",
        &[lower, upper],
    );
    assert_eq!(reports.len(), 2);
    assert_eq!(fs::read(root.join("root/.bashrc")).unwrap(), b"new");
    assert_eq!(fs::read(root.join("root/.profile")).unwrap(), b"p");
    assert!(fs::symlink_metadata(root.join("ro/gone")).is_err());
    assert!(fs::symlink_metadata(root.join("ro/sub/x")).is_err());
    assert_eq!(fs::read(root.join("ro/sub/y")).unwrap(), b"y");
    assert!(fs::symlink_metadata(root.join("tree")).is_err());
    // And the lower modes are back.
    let mode = |rel: &str| fs::symlink_metadata(root.join(rel)).unwrap().mode() & 0o7777;
    assert_eq!(mode("root"), 0o550);
    assert_eq!(mode("ro"), 0o555);
    assert_eq!(mode("ro/sub"), 0o555);
}
