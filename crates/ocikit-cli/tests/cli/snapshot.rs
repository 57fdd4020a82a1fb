//! `ocikit snapshot prepare|ls|rm|gc`: two processes preparing images that share layers
//! extract each layer once; the printed chain mounts (as root) to what `ocikit unpack`
//! gives; a prepare killed with SIGKILL mid-extraction leaves nothing that looks finished
//! and the next run cleans its staging; bad chain IDs, parents and unknown snapshots are
//! refused; gc keeps what kept images use.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{fails, json, oci, ocikit, ok};

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// A layout with images `a` and `b` that share their two base layers, and one layer each
/// of their own; the second layer removes a file of the first (a whiteout, as a tar
/// source).
fn images(dir: &Path) -> PathBuf {
    let base = dir.join("base");
    write(&base.join("etc/os-release"), b"ID=test\n");
    write(&base.join("etc/old"), b"to be removed");
    write(&base.join("usr/bin/tool"), b"#!/bin/sh\necho tool\n");
    let whiteout = dir.join("whiteout.tar");
    std::fs::write(
        &whiteout,
        ocikit_testkit::tarball::archive(&[
            ocikit_testkit::tarball::Entry::dir("etc").mode(0o755),
            ocikit_testkit::tarball::Entry::file("etc/.wh.old", b""),
            ocikit_testkit::tarball::Entry::file("etc/new", b"new"),
        ]),
    )
    .unwrap();
    let a = dir.join("a");
    write(&a.join("app/a"), b"image a");
    let b = dir.join("b");
    write(&b.join("app/b"), b"image b");
    let layout = dir.join("layout");
    for (tag, own) in [("a", &a), ("b", &b)] {
        ok(&[
            "build",
            "--tag",
            &oci(&layout, &format!(":{tag}")),
            base.to_str().unwrap(),
            whiteout.to_str().unwrap(),
            own.to_str().unwrap(),
        ]);
    }
    layout
}

fn root_arg(root: &Path) -> [&str; 2] {
    ["--root", root.to_str().unwrap()]
}

#[test]
fn two_processes_preparing_images_that_share_layers_extract_each_once() {
    let dir = tempfile::tempdir().unwrap();
    let layout = images(dir.path());
    let root = dir.path().join("snapshots");
    let bin = env!("CARGO_BIN_EXE_ocikit");
    let spawn = |tag: &str| {
        Command::new(bin)
            .args([
                "--json",
                "snapshot",
                "prepare",
                &oci(&layout, &format!(":{tag}")),
            ])
            .args(root_arg(&root))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (first, second) = (spawn("a"), spawn("b"));
    let mut reports = Vec::new();
    for child in [first, second] {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        reports.push(serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap());
    }
    let extracted: Vec<String> = reports
        .iter()
        .flat_map(|r| r["extracted"].as_array().unwrap().clone())
        .map(|d| d.as_str().unwrap().to_string())
        .collect();
    let distinct: BTreeSet<&String> = extracted.iter().collect();
    assert_eq!(
        extracted.len(),
        distinct.len(),
        "extracted twice: {extracted:?}"
    );
    assert_eq!(distinct.len(), 4, "two shared layers and one of each image");
    for report in &reports {
        let lowerdirs: Vec<&str> = report["lowerdirs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_str().unwrap())
            .collect();
        assert_eq!(lowerdirs.len(), 3);
        assert_eq!(report["lowerdir"].as_str().unwrap(), lowerdirs.join(":"));
        // Top layer first.
        assert_eq!(
            report["snapshots"][2]["path"].as_str().unwrap(),
            lowerdirs[0]
        );
        assert!(Path::new(lowerdirs[2]).join("etc/os-release").is_file());
    }
    assert_eq!(reports[0]["lowerdirs"][1], reports[1]["lowerdirs"][1]);
    assert_eq!(reports[0]["lowerdirs"][2], reports[1]["lowerdirs"][2]);

    // Text output: the chain alone on stdout, ready for `mount -o lowerdir=`.
    let text = ok(&[
        "snapshot",
        "prepare",
        &oci(&layout, ":a"),
        "--root",
        root.to_str().unwrap(),
    ]);
    assert_eq!(text.trim_end(), reports[0]["lowerdir"].as_str().unwrap());

    // The chain mounted (where this process may) is what `ocikit unpack` makes.
    let unpacked = dir.path().join("unpacked");
    ok(&["unpack", &oci(&layout, ":a"), unpacked.to_str().unwrap()]);
    if let Some(mounted) = mount(text.trim_end(), dir.path()) {
        assert_eq!(files(&mounted.point), files(&unpacked));
        assert!(!mounted.point.join("etc/old").exists());
        assert!(mounted.point.join("etc/new").is_file());
    }
}

/// An overlay mount, unmounted when dropped.
struct Mounted {
    point: PathBuf,
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.point).status();
    }
}

fn mount(lowerdir: &str, scratch: &Path) -> Option<Mounted> {
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
    let options = format!(
        "lowerdir={lowerdir},upperdir={},workdir={}",
        upper.display(),
        work.display()
    );
    let status = Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o", &options])
        .arg(&point)
        .status()
        .ok()?;
    status.success().then_some(Mounted { point })
}

/// Every path below `root` with its type, mode and content.
fn files(root: &Path) -> Vec<(PathBuf, String, u32, Vec<u8>)> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let rel = path.strip_prefix(root).unwrap().to_path_buf();
        let (kind, data) = if meta.is_dir() {
            stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            ("dir", Vec::new())
        } else if meta.is_file() {
            ("file", std::fs::read(&path).unwrap())
        } else {
            ("other", Vec::new())
        };
        out.push((rel, kind.to_string(), meta.mode() & 0o7777, data));
    }
    out.sort();
    out
}

#[test]
fn ls_rm_and_gc_manage_the_store_and_refuse_bad_chain_ids() {
    let dir = tempfile::tempdir().unwrap();
    let layout = images(dir.path());
    let root = dir.path().join("snapshots");
    let r = root.to_str().unwrap();
    let a = json(&["snapshot", "prepare", &oci(&layout, ":a"), "--root", r]);
    let b = json(&["snapshot", "prepare", &oci(&layout, ":b"), "--root", r]);
    assert_eq!(b["extracted"].as_array().unwrap().len(), 1);

    let listed = json(&["snapshot", "ls", "--root", r]);
    assert_eq!(listed.as_array().unwrap().len(), 4);
    let quiet = ok(&["-q", "snapshot", "ls", "--root", r]);
    assert_eq!(quiet.lines().count(), 4);
    let text = ok(&["snapshot", "ls", "--root", r]);
    assert!(text.starts_with("CHAIN ID"), "{text}");

    // Refusals: nothing changes.
    let err = fails(&["snapshot", "rm", "--root", r, "nope"]);
    assert!(err.contains("\"nope\" is not a chain ID"), "{err}");
    let err = fails(&["snapshot", "rm", "--root", r, "../../etc"]);
    assert!(err.contains("is not a chain ID"), "{err}");
    let unknown = format!("sha256:{}", "ab".repeat(32));
    let err = fails(&["snapshot", "rm", "--root", r, &unknown]);
    assert!(err.contains(&format!("no snapshot {unknown}")), "{err}");
    let base = a["snapshots"][0]["chainId"].as_str().unwrap();
    let err = fails(&["snapshot", "rm", "--root", r, base]);
    assert!(err.contains("is the parent of"), "{err}");
    assert_eq!(
        json(&["snapshot", "ls", "--root", r])
            .as_array()
            .unwrap()
            .len(),
        4
    );

    // rm of a top snapshot.
    let top_b = b["snapshots"][2]["chainId"].as_str().unwrap();
    let removed = json(&["snapshot", "rm", "--root", r, top_b]);
    assert_eq!(removed["removed"][0], top_b);
    assert!(!Path::new(b["snapshots"][2]["path"].as_str().unwrap()).exists());

    // gc keeping a: nothing of a goes; then keeping nothing, everything goes.
    let report = json(&["snapshot", "gc", "--root", r, "--keep", &oci(&layout, ":a")]);
    assert_eq!(report["removed"].as_array().unwrap().len(), 0);
    assert_eq!(report["kept"], 3);
    let err = fails(&[
        "snapshot",
        "gc",
        "--root",
        r,
        "--keep",
        &oci(&layout, ":missing"),
    ]);
    assert!(err.contains("missing"), "{err}");
    assert_eq!(
        json(&["snapshot", "ls", "--root", r])
            .as_array()
            .unwrap()
            .len(),
        3
    );
    let report = json(&["snapshot", "gc", "--root", r]);
    assert_eq!(report["removed"].as_array().unwrap().len(), 3);
    assert!(report["objectBytesRemoved"].as_u64().unwrap() > 0);
    assert!(
        json(&["snapshot", "ls", "--root", r])
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[test]
fn a_prepare_killed_mid_extraction_leaves_nothing_finished_and_the_next_run_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big");
    for i in 0..160u64 {
        write(
            &big.join(format!("d{}/f{i}", i % 8)),
            &ocikit_testkit::prng::bytes(i, 1 << 20),
        );
    }
    let layout = dir.path().join("layout");
    ok(&[
        "build",
        "--compression",
        "none",
        "--tag",
        &oci(&layout, ":big"),
        big.to_str().unwrap(),
    ]);
    let root = dir.path().join("snapshots");
    let r = root.to_str().unwrap();
    let staging = root.join("staging");
    let in_staging = || -> Vec<PathBuf> {
        std::fs::read_dir(&staging)
            .map(|entries| {
                entries
                    .map(|e| e.unwrap().path())
                    .filter(|p| {
                        !p.file_name()
                            .unwrap()
                            .to_string_lossy()
                            .starts_with("probe.")
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut killed = false;
    for _ in 0..5 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ocikit"))
            .args([
                "-q",
                "snapshot",
                "prepare",
                &oci(&layout, ":big"),
                "--root",
                r,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        // Kill it once it has written part of the layer into staging.
        let caught = loop {
            if let Some(Some(d)) = in_staging()
                .first()
                .map(|d| std::fs::read_dir(d.join("fs/d0")).ok().map(|_| d.clone()))
            {
                break Some(d);
            }
            if child.try_wait().unwrap().is_some() || start.elapsed() > Duration::from_secs(60) {
                break None;
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        child.kill().unwrap();
        let status = child.wait().unwrap();
        if caught.is_some() && !status.success() {
            killed = true;
            break;
        }
        // It finished first: start again from an empty store.
        ok(&["snapshot", "gc", "--root", r]);
    }
    assert!(killed, "never caught the prepare mid-extraction");
    // Nothing looks finished; the staging directory is there, half-written.
    assert_eq!(in_staging().len(), 1);
    let finished = std::fs::read_dir(root.join("snapshots"))
        .unwrap()
        .flat_map(|algorithm| std::fs::read_dir(algorithm.unwrap().path()).unwrap())
        .count();
    assert_eq!(finished, 0);
    // The next run (any command opening the store) removes it, as nobody holds its lock.
    assert!(
        json(&["snapshot", "ls", "--root", r])
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert!(in_staging().is_empty());
    let report = json(&["snapshot", "prepare", &oci(&layout, ":big"), "--root", r]);
    assert_eq!(report["extracted"].as_array().unwrap().len(), 1);
    assert!(in_staging().is_empty());
    let lower = PathBuf::from(report["lowerdirs"][0].as_str().unwrap());
    for i in [0u64, 77, 159] {
        assert_eq!(
            std::fs::read(lower.join(format!("d{}/f{i}", i % 8))).unwrap(),
            ocikit_testkit::prng::bytes(i, 1 << 20)
        );
    }
    let out = ocikit(&["snapshot", "ls", "--root", r]);
    assert!(out.status.success());
}

#[test]
fn an_image_in_an_archive_prepares_to_the_same_chain_through_scratch_space() {
    let dir = tempfile::tempdir().unwrap();
    let layout = images(dir.path());
    let root = dir.path().join("snapshots");
    let r = root.to_str().unwrap();
    let archive = dir.path().join("a.tar");
    ok(&[
        "copy",
        &oci(&layout, ":a"),
        &format!("oci-archive:{}:a", archive.display()),
    ]);
    let from_archive = json(&[
        "snapshot",
        "prepare",
        &format!("oci-archive:{}:a", archive.display()),
        "--root",
        r,
    ]);
    assert_eq!(from_archive["extracted"].as_array().unwrap().len(), 3);
    let from_layout = json(&["snapshot", "prepare", &oci(&layout, ":a"), "--root", r]);
    assert!(from_layout["extracted"].as_array().unwrap().is_empty());
    assert_eq!(from_layout["lowerdir"], from_archive["lowerdir"]);
    // The scratch copy is gone; only the store and the test's own files are there.
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "a",
            "a.tar",
            "b",
            "base",
            "layout",
            "snapshots",
            "whiteout.tar"
        ]
    );
    // A missing archive is refused, and nothing is added to the store.
    let err = fails(&[
        "snapshot",
        "prepare",
        &format!("oci-archive:{}:a", dir.path().join("nope.tar").display()),
        "--root",
        r,
    ]);
    assert!(err.contains("nope.tar"), "{err}");
    assert_eq!(
        json(&["snapshot", "ls", "--root", r])
            .as_array()
            .unwrap()
            .len(),
        3
    );
}
