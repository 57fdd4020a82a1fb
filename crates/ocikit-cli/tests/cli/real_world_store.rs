//! Layouts on disk as users share them: a copy is independent of its source (hardlinks only
//! with `--hardlink`, which says what it shares), and a layout made under the usual umask is
//! readable by other users, as skopeo's are.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::image::build;
use crate::{json, oci, ocikit, ok};

/// The path of the first layer blob of `layout:tag`.
fn first_layer(layout: &Path, tag: &str) -> (String, PathBuf) {
    let summary = json(&["inspect", &oci(layout, &format!(":{tag}"))]);
    let digest = summary["layers"][0]["digest"].as_str().unwrap().to_string();
    let (algorithm, encoded) = digest.split_once(':').unwrap();
    let path = layout.join("blobs").join(algorithm).join(encoded);
    (digest, path)
}

/// Flips the last byte of a file in place (same inode), as bit rot or a stray write would.
fn flip_in_place(path: &Path) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let at = file.metadata().unwrap().len() - 1;
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, at).unwrap();
    file.write_all_at(&[byte[0] ^ 0xff], at).unwrap();
}

/// `fsck --json` of a layout: its exit code and report.
fn fsck(layout: &Path) -> (Option<i32>, Value) {
    let out = ocikit(&["fsck", "--json", &oci(layout, "")]);
    (
        out.status.code(),
        serde_json::from_slice(&out.stdout).unwrap(),
    )
}

fn inode(path: &Path) -> (u64, u64) {
    let meta = std::fs::metadata(path).unwrap();
    (meta.dev(), meta.ino())
}

#[test]
fn a_copied_layout_is_independent_of_its_source() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    build(&a, "v1", &[]);
    ok(&["copy", "-q", &oci(&a, ":v1"), &oci(&b, ":v1")]);
    let (layer, in_a) = first_layer(&a, "v1");
    let (_, in_b) = first_layer(&b, "v1");
    assert_ne!(inode(&in_a), inode(&in_b), "the copy has files of its own");

    flip_in_place(&in_b);
    let (code, report) = fsck(&a);
    assert_eq!(
        (code, &report["clean"]),
        (Some(0), &Value::Bool(true)),
        "{report}"
    );
    let (code, report) = fsck(&b);
    assert_eq!(code, Some(1), "{report}");
    assert_eq!(report["problems"][0]["digest"], layer.as_str(), "{report}");
}

#[test]
fn copy_hardlink_shares_blob_files_as_it_says() {
    let help = ok(&["copy", "--help"])
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        help.contains("--hardlink")
            && help
                .contains("source and destination share blob files: corrupting one corrupts both"),
        "{help}"
    );
    let dir = tempfile::tempdir().unwrap();
    let (a, c) = (dir.path().join("a"), dir.path().join("c"));
    build(&a, "v1", &[]);
    ok(&["copy", "-q", "--hardlink", &oci(&a, ":v1"), &oci(&c, ":v1")]);
    let (layer, in_a) = first_layer(&a, "v1");
    let (_, in_c) = first_layer(&c, "v1");
    assert_eq!(inode(&in_a), inode(&in_c), "one shared file");
    // What the help says: corrupting one corrupts both.
    flip_in_place(&in_c);
    let (code, report) = fsck(&a);
    assert_eq!(code, Some(1), "{report}");
    assert_eq!(report["problems"][0]["digest"], layer.as_str(), "{report}");
}

/// `ocikit` under `sh` with the umask set to `mask`.
fn ocikit_with_umask(mask: &str, args: &[&str]) {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("umask {mask} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_ocikit"))
        .args(args)
        .env("DOCKER_CONFIG", "/nonexistent/ocikit-tests-docker-config")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ocikit {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// Whether this process runs as root (needed to run a command as another user).
fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

#[test]
fn a_layout_made_under_umask_022_is_readable_by_other_users() {
    // Under /tmp, with a directory everyone can traverse (a tempdir is private).
    let dir = tempfile::Builder::new()
        .prefix("ocikit-shared-")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let layout = dir.path().join("L");
    let target = oci(&layout, ":v1");
    ocikit_with_umask(
        "022",
        &["build", "-q", "--tag", &target, crate::example_arg()],
    );
    // As skopeo makes them: files 0644, directories 0755.
    let mut checked = 0;
    let mut pending = vec![layout.clone()];
    while let Some(path) = pending.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let relative = path.strip_prefix(&layout).unwrap();
        if relative.starts_with(".ocikit") {
            continue; // the store's private directory
        }
        let mode = meta.permissions().mode() & 0o7777;
        if meta.is_dir() {
            assert_eq!(mode, 0o755, "{}", path.display());
            for entry in std::fs::read_dir(&path).unwrap() {
                pending.push(entry.unwrap().path());
            }
        } else {
            assert_eq!(mode, 0o644, "{}", path.display());
            checked += 1;
        }
    }
    assert!(
        checked >= 5,
        "index.json, oci-layout and three blobs: {checked}"
    );
    // Archives too.
    for (name, transport, suffix) in [
        ("a.tar", "oci-archive", ""),
        ("d.tar", "docker-archive", ":demo/app:v1"),
    ] {
        let file = dir.path().join(name);
        let destination = format!("{transport}:{}{suffix}", file.display());
        ocikit_with_umask("022", &["copy", "-q", &target, &destination]);
        assert_eq!(mode_of(&file), 0o644, "{destination}");
    }

    // And another user reads it. Root is needed to be someone else.
    let Some(runuser) = ocikit_testkit::require_tool("runuser") else {
        return;
    };
    if !is_root() {
        assert!(
            !ocikit_testkit::in_ci(),
            "running as another user needs root under CI"
        );
        return;
    }
    // The binary where `nobody` can reach it (the target directory may be private).
    let binary = dir.path().join("ocikit");
    if std::fs::hard_link(env!("CARGO_BIN_EXE_ocikit"), &binary).is_err() {
        std::fs::copy(env!("CARGO_BIN_EXE_ocikit"), &binary).unwrap();
    }
    std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new(runuser)
        .args(["-u", "nobody", "--"])
        .arg(&binary)
        .args(["ls", &oci(&layout, "")])
        .env("DOCKER_CONFIG", "/nonexistent/ocikit-tests-docker-config")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "nobody cannot list the layout: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("v1"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
