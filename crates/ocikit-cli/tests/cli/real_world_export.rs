//! `ocikit unpack --tar`: the merged filesystem as one tar stream, read by GNU tar and
//! compared with `umoci unpack` of the same image (paths, contents, modes, owners); `--tar -`
//! to standard output; bad input refused with no file written. And umoci's rootless options
//! of `unpack`: `--rootless` as an unprivileged user, `--uid-map`/`--gid-map` as root, both
//! compared with umoci's.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use ocikit_testkit::tarball::{Entry, archive};

use crate::{fails, json, oci, ocikit, ok};

/// What a tree holds below its root: per path, kind, content (a file's bytes, a symlink's
/// target), mode, uid and gid.
type Tree = BTreeMap<PathBuf, (char, Vec<u8>, u32, u32, u32)>;

fn tree(root: &Path) -> Tree {
    let mut out = Tree::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let (kind, content) = if meta.is_dir() {
                stack.push(path.clone());
                ('d', Vec::new())
            } else if meta.is_symlink() {
                let target = std::fs::read_link(&path).unwrap();
                ('l', target.into_os_string().into_encoded_bytes())
            } else if meta.is_file() {
                ('f', std::fs::read(&path).unwrap())
            } else {
                ('o', Vec::new())
            };
            out.insert(
                path.strip_prefix(root).unwrap().to_path_buf(),
                (kind, content, meta.mode() & 0o7777, meta.uid(), meta.gid()),
            );
        }
    }
    out
}

/// `tree` without owners (for unpacks whose owners differ by design).
fn without_owners(tree: &Tree) -> BTreeMap<PathBuf, (char, Vec<u8>, u32)> {
    tree.iter()
        .map(|(p, (k, c, m, _, _))| (p.clone(), (*k, c.clone(), *m)))
        .collect()
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// A layout at `d/images` with the image `t`: the example tree (root's files), then a
/// layer of files owned by 1000 and 33, a symlink and a directory to be made opaque, then
/// a layer with whiteouts (a file, a whole directory) and an opaque directory.
fn image(d: &Path) -> PathBuf {
    let layout = d.join("images");
    crate::image::build(&layout, "base", &[]);
    let owned = d.join("owned.tar");
    std::fs::write(
        &owned,
        archive(&[
            Entry::dir("home/").mode(0o755),
            Entry::dir("home/user/").mode(0o700).owner(1000, 1000),
            Entry::file("home/user/notes", "notes\n")
                .mode(0o640)
                .owner(1000, 1000),
            Entry::dir("srv/").owner(33, 33),
            Entry::file("srv/index.html", "<p>hi</p>\n").owner(33, 33),
            Entry::file("srv/old.html", "old\n").owner(33, 33),
            Entry::dir("cache/"),
            Entry::file("cache/a", "a\n"),
            Entry::file("cache/b", "b\n"),
            Entry::dir("tmpdir/"),
            Entry::file("tmpdir/x", "x\n"),
            Entry::symlink("web", "srv/index.html"),
        ]),
    )
    .unwrap();
    let whiteouts = d.join("whiteouts.tar");
    std::fs::write(
        &whiteouts,
        archive(&[
            Entry::dir("srv/").owner(33, 33),
            Entry::file("srv/.wh.old.html", ""),
            Entry::file(".wh.tmpdir", ""),
            Entry::dir("cache/").mode(0o1777),
            Entry::file("cache/.wh..wh..opq", ""),
            Entry::file("cache/c", "c\n").owner(7, 8),
        ]),
    )
    .unwrap();
    ok(&[
        "append",
        &oci(&layout, ":base"),
        "--tag",
        &oci(&layout, ":t"),
        owned.to_str().unwrap(),
        whiteouts.to_str().unwrap(),
    ]);
    layout
}

/// umoci's unpack of `layout:t` (bundle at `bundle`), with `extra` flags; its rootfs.
fn umoci_unpack(layout: &Path, bundle: &Path, extra: &[&str]) -> PathBuf {
    let umoci = ocikit_testkit::tool::umoci().expect("umoci is installed");
    let image = format!("{}:t", layout.display());
    let mut args = vec!["unpack"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--image", &image, bundle.to_str().unwrap()]);
    umoci.ok(&args);
    bundle.join("rootfs")
}

#[test]
fn unpack_tar_is_what_gnu_tar_reads_and_umoci_unpacks() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let layout = image(d);
    let t = oci(&layout, ":t");

    let file = d.join("out.tar");
    let report = json(&["unpack", &t, "--tar", file.to_str().unwrap()]);
    assert_eq!(report["layers"], 3, "{report}");
    assert!(report["whiteouts"].as_u64().unwrap() >= 3, "{report}");
    let bytes = std::fs::read(&file).unwrap();
    assert_eq!(report["bytes"].as_u64().unwrap(), bytes.len() as u64);

    // GNU tar lists it: no whiteouts, numeric owners as the layers gave them.
    let tar = ocikit_testkit::Tool::require("tar").expect("GNU tar is installed");
    let listing = tar.ok(&["-tvf", file.to_str().unwrap(), "--numeric-owner"]);
    assert!(!listing.contains(".wh."), "{listing}");
    assert!(!listing.contains("tmpdir"), "{listing}");
    assert!(!listing.contains("cache/a"), "{listing}");
    let notes = listing
        .lines()
        .find(|l| l.ends_with("home/user/notes"))
        .unwrap_or_else(|| panic!("no home/user/notes in\n{listing}"));
    assert!(notes.starts_with("-rw-r----- 1000/1000 "), "{notes}");

    // Extracted by GNU tar, it is umoci's unpack of the image.
    let extracted = d.join("extracted");
    std::fs::create_dir(&extracted).unwrap();
    let mut args = vec![
        "-xf",
        file.to_str().unwrap(),
        "-C",
        extracted.to_str().unwrap(),
        "--delay-directory-restore",
        "--numeric-owner",
    ];
    let root = is_root();
    if root {
        args.push("--same-owner");
    }
    args.push("--same-permissions");
    tar.ok(&args);
    let umoci_flags: &[&str] = if root { &[] } else { &["--rootless"] };
    let rootfs = umoci_unpack(&layout, &d.join("bundle"), umoci_flags);
    let (ours, theirs) = (tree(&extracted), tree(&rootfs));
    assert!(ours.contains_key(Path::new("home/user/notes")));
    assert!(ours.contains_key(Path::new("cache/c")));
    if root {
        assert_eq!(ours, theirs);
        let notes = &ours[Path::new("home/user/notes")];
        assert_eq!((notes.3, notes.4), (1000, 1000));
    } else {
        assert_eq!(without_owners(&ours), without_owners(&theirs));
    }

    // `--tar -`: the same stream on standard output, the summary on stderr.
    let out = ocikit(&["unpack", &t, "--tar", "-"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, bytes);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("exported"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // From an oci-archive: the same stream too.
    let archive_at = format!("oci-archive:{}:t", d.join("t.tar").display());
    ok(&["copy", &t, &archive_at]);
    let from_archive = d.join("from-archive.tar");
    ok(&[
        "unpack",
        &archive_at,
        "--tar",
        from_archive.to_str().unwrap(),
    ]);
    assert_eq!(std::fs::read(&from_archive).unwrap(), bytes);

    // The file's mode is the umask's, as any file a program makes (not a temporary
    // file's 0600): others may read it under umask 022.
    let shared = d.join("shared.tar");
    let out = Command::new("sh")
        .arg("-c")
        .arg("umask 022 && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_ocikit"))
        .args(["unpack", &t, "--tar", shared.to_str().unwrap()])
        .env("DOCKER_CONFIG", "/nonexistent/ocikit-tests-docker-config")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mode = std::fs::metadata(&shared).unwrap().mode() & 0o7777;
    assert_eq!(mode, 0o644, "{mode:o}");
}

#[test]
fn unpack_tar_refuses_bad_input_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let layout = image(d);
    let t = oci(&layout, ":t");
    let out_dir = d.join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let file = out_dir.join("out.tar");
    let file_arg = file.to_str().unwrap();
    let rootfs = d.join("rootfs");

    // A rootfs and --tar; --tar with --rootless or a map; neither a rootfs nor --tar: the
    // argument parser refuses them.
    for args in [
        vec![
            "unpack",
            t.as_str(),
            rootfs.to_str().unwrap(),
            "--tar",
            file_arg,
        ],
        vec!["unpack", t.as_str(), "--tar", file_arg, "--rootless"],
        vec![
            "unpack",
            t.as_str(),
            "--tar",
            file_arg,
            "--uid-map",
            "0:1000",
        ],
        vec![
            "unpack",
            t.as_str(),
            "--tar",
            file_arg,
            "--gid-map",
            "0:1000",
        ],
        vec!["unpack", t.as_str()],
    ] {
        let out = ocikit(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("cannot be used with") || stderr.contains("required"),
            "{args:?}: {stderr}"
        );
    }
    // A platform that does not parse; an invalid map.
    let err = fails(&["unpack", &t, "--tar", file_arg, "--platform", "nope"]);
    assert!(err.contains("nope"), "{err}");
    let err = fails(&[
        "unpack",
        &t,
        rootfs.to_str().unwrap(),
        "--uid-map",
        "0:x:10",
    ]);
    assert!(err.contains("--uid-map"), "{err}");
    assert!(!rootfs.exists());

    // A layer blob with a byte flipped: refused, and no file appears (nor a temporary one).
    let manifest: serde_json::Value =
        serde_json::from_str(&crate::skopeo().ok(&["inspect", &t])).unwrap();
    let layer = manifest["Layers"][2].as_str().unwrap().to_string();
    let (algorithm, hex) = layer.split_once(':').unwrap();
    let blob = layout.join("blobs").join(algorithm).join(hex);
    let mut bytes = std::fs::read(&blob).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::remove_file(&blob).unwrap();
    std::fs::write(&blob, &bytes).unwrap();
    let err = fails(&["unpack", &t, "--tar", file_arg]);
    assert!(err.contains("cannot export"), "{err}");
    assert_eq!(std::fs::read_dir(&out_dir).unwrap().count(), 0);
    // To standard output it fails too (what was written is to be discarded).
    let out = ocikit(&["unpack", &t, "--tar", "-"]);
    assert_eq!(out.status.code(), Some(1));
}

/// Runs the ocikit binary as `nobody` (through `runuser`), in `dir`.
fn as_nobody(dir: &Path, args: &[&str]) -> std::process::Output {
    let runuser = ocikit_testkit::require_tool("runuser").expect("runuser is installed");
    // The binary where `nobody` can reach it (the test's directory may be private).
    let binary = dir.join("ocikit");
    if !binary.exists() {
        if std::fs::hard_link(env!("CARGO_BIN_EXE_ocikit"), &binary).is_err() {
            std::fs::copy(env!("CARGO_BIN_EXE_ocikit"), &binary).unwrap();
        }
        std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    Command::new(runuser)
        .args(["-u", "nobody", "--"])
        .arg(&binary)
        .args(args)
        .env("DOCKER_CONFIG", "/nonexistent/ocikit-tests-docker-config")
        .current_dir(dir)
        .output()
        .unwrap()
}

#[test]
fn rootless_and_mapped_unpacks_are_umocis() {
    if !is_root() {
        assert!(
            !ocikit_testkit::in_ci(),
            "unpacking as another user and with host owners needs root under CI"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    let layout = image(d);
    let t = oci(&layout, ":t");
    let work = d.join("nobody");
    std::fs::create_dir(&work).unwrap();
    std::fs::set_permissions(&work, std::fs::Permissions::from_mode(0o777)).unwrap();
    let nobody = Command::new("id")
        .args(["-u", "nobody"])
        .output()
        .unwrap()
        .stdout;
    let nobody: u32 = String::from_utf8(nobody).unwrap().trim().parse().unwrap();

    // --rootless as nobody: the tree, every entry nobody's; umoci's as nobody is the same.
    let rootless = work.join("rootless");
    let out = as_nobody(
        &work,
        &["unpack", &t, rootless.to_str().unwrap(), "--rootless"],
    );
    assert!(
        out.status.success(),
        "nobody cannot unpack --rootless: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ours = tree(&rootless);
    assert!(ours.contains_key(Path::new("home/user/notes")));
    assert!(ours.values().all(|(_, _, _, uid, _)| *uid == nobody));
    let umoci = ocikit_testkit::tool::umoci().expect("umoci is installed");
    let bundle = work.join("bundle");
    let out = Command::new(ocikit_testkit::require_tool("runuser").unwrap())
        .args(["-u", "nobody", "--"])
        .arg(umoci.path())
        .args(["unpack", "--rootless", "--image"])
        .arg(format!("{}:t", layout.display()))
        .arg(&bundle)
        .current_dir(&work)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "umoci: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        without_owners(&ours),
        without_owners(&tree(&bundle.join("rootfs")))
    );

    // --uid-map/--gid-map as root: host owners from 100000, as umoci's maps give them.
    let mapped = d.join("mapped");
    ok(&[
        "unpack",
        &t,
        mapped.to_str().unwrap(),
        "--uid-map",
        "0:100000:65536",
        "--gid-map",
        "0:100000:65536",
    ]);
    let ours = tree(&mapped);
    let notes = &ours[Path::new("home/user/notes")];
    assert_eq!((notes.3, notes.4), (101_000, 101_000));
    let c = &ours[Path::new("cache/c")];
    assert_eq!((c.3, c.4), (100_007, 100_008));
    assert!(
        ours.values()
            .all(|(_, _, _, uid, gid)| *uid >= 100_000 && *gid >= 100_000)
    );
    let theirs = umoci_unpack(
        &layout,
        &d.join("mapped-bundle"),
        &["--uid-map", "0:100000:65536", "--gid-map", "0:100000:65536"],
    );
    assert_eq!(ours, tree(&theirs));
    // The root directory belongs to the container's root too.
    assert_eq!(std::fs::metadata(&mapped).unwrap().uid(), 100_000);
}
