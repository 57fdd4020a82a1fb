//! `copy`, `import`, `export` between layouts and archives.

use std::path::Path;
use std::process::Command;

use crate::{example, example_arg, fails, json, oci, ok};

fn built(layout: &Path, tag: &str) -> String {
    json(&[
        "build",
        "--tag",
        &oci(layout, &format!(":{tag}")),
        example_arg(),
    ])["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

fn digest_of(layout: &Path, tag: &str) -> String {
    json(&["inspect", &oci(layout, &format!(":{tag}"))])["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn layout_to_layout_then_again_skips_everything() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let digest = built(&a, "v1");
    let first = json(&["copy", &oci(&a, ":v1"), &oci(&b, ":copied")]);
    assert_eq!(first["blobs_copied"], 3, "{first}");
    assert_eq!(digest_of(&b, "copied"), digest);
    let again = json(&["copy", &oci(&a, ":v1"), &oci(&b, ":copied")]);
    assert_eq!(again["blobs_skipped"], 3, "{again}");
    assert_eq!(again["blobs_copied"], 0, "{again}");
    assert_eq!(json(&["fsck", &oci(&b, "")])["clean"], true);

    // Every tag when no tag is named.
    ok(&["tag", "-q", &oci(&a, ":v1"), "latest"]);
    let mirror = dir.path().join("mirror");
    json(&["copy", &oci(&a, ""), &oci(&mirror, "")]);
    let tags = json(&["ls", &oci(&mirror, "")])["tags"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(tags, 2);
}

#[test]
fn oci_archive_round_trip_keeps_digests_and_skopeo_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("images");
    let digest = built(&layout, "v1");
    let archive = dir.path().join("v1.tar");
    let archive_loc = format!("oci-archive:{}", archive.display());
    json(&["export", &oci(&layout, ":v1"), &archive_loc]);
    assert!(archive.is_file());
    let back = dir.path().join("back");
    json(&["import", &archive_loc, &oci(&back, "")]);
    assert_eq!(digest_of(&back, "v1"), digest);

    // Renamed on the way out.
    let renamed = dir.path().join("renamed.tar");
    json(&[
        "copy",
        &oci(&layout, ":v1"),
        &format!("oci-archive:{}:other", renamed.display()),
    ]);
    let back2 = dir.path().join("back2");
    json(&[
        "copy",
        &format!("oci-archive:{}:other", renamed.display()),
        &oci(&back2, ""),
    ]);
    assert_eq!(digest_of(&back2, "other"), digest);

    if let Some(skopeo) = crate::image::which("skopeo") {
        let out = Command::new(skopeo)
            .args(["inspect", "--raw", &archive_loc])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            ocikit::digest::Digest::sha256(&out.stdout).to_string(),
            digest
        );
    }
}

#[test]
fn docker_archive_round_trip_keeps_the_layers() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("images");
    built(&layout, "v1");
    let saved = dir.path().join("saved.tar");
    json(&[
        "export",
        &oci(&layout, ":v1"),
        &format!("docker-archive:{}:demo/hello:1", saved.display()),
    ]);
    let back = dir.path().join("back");
    json(&[
        "import",
        &format!("docker-archive:{}:demo/hello:1", saved.display()),
        &oci(&back, ":hello"),
    ]);
    let ours = json(&["inspect", "--config", &oci(&layout, ":v1")]);
    let theirs = json(&["inspect", "--config", &oci(&back, ":hello")]);
    assert_eq!(
        ours["rootfs"], theirs["rootfs"],
        "diffIDs survive the round trip"
    );
    let rootfs = dir.path().join("rootfs");
    ok(&[
        "unpack",
        "-q",
        &oci(&back, ":hello"),
        rootfs.to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read(rootfs.join("etc/motd")).unwrap(),
        std::fs::read(example().join("etc/motd")).unwrap()
    );
}

#[test]
fn bad_copies_are_refused_and_leave_no_destination() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("images");
    built(&layout, "v1");
    let dest = dir.path().join("dest");
    let missing = format!("oci-archive:{}", dir.path().join("missing.tar").display());
    let err = fails(&["copy", &missing, &oci(&dest, "")]);
    assert!(err.contains("missing.tar"), "{err}");
    let err = fails(&["copy", &oci(&layout, ":nope"), &oci(&dest, ":x")]);
    assert!(err.contains("nope"), "{err}");
    let err = fails(&["copy", &oci(&layout, ":v1"), "docker://example.com/x:1"]);
    assert!(err.contains("registry"), "{err}");
    let garbage = dir.path().join("garbage.tar");
    std::fs::write(
        &garbage,
        b"this is not a tar archive at all, not even close",
    )
    .unwrap();
    let err = fails(&[
        "import",
        &format!("docker-archive:{}", garbage.display()),
        &oci(&dest, ""),
    ]);
    assert!(err.contains("garbage.tar"), "{err}");
    let err = fails(&["export", &oci(&layout, ":v1"), &oci(&dest, "")]);
    assert!(err.contains("archive"), "{err}");
    assert!(!dest.exists(), "a refused copy created its destination");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".ocikit-copy-"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "scratch directories left behind: {leftovers:?}"
    );
}
