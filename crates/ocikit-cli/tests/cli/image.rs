//! `build`, `unpack`, `fsck`, `gc`, `attach`, `referrers` on real directories.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use ocikit::digest::Digest;
use serde_json::Value;

use crate::{contents, example, fails, json, oci, ocikit, ok};

/// Kind, permission bits and content (or link target) of every entry, by relative path.
fn tree(root: &Path) -> BTreeMap<PathBuf, (String, u32, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            let mode = meta.permissions().mode() & 0o7777;
            let node = if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).unwrap();
                (
                    "link".to_string(),
                    0,
                    target.into_os_string().into_encoded_bytes(),
                )
            } else if meta.is_dir() {
                stack.push(path.clone());
                ("dir".to_string(), mode, Vec::new())
            } else {
                ("file".to_string(), mode, std::fs::read(&path).unwrap())
            };
            out.insert(rel, node);
        }
    }
    out
}

pub(crate) fn build(layout: &Path, tag: &str, extra: &[&str]) -> String {
    let target = oci(layout, &format!(":{tag}"));
    let source = example();
    let mut args = vec!["build", "--tag", target.as_str()];
    args.extend_from_slice(extra);
    args.push(source.to_str().unwrap());
    json(&args)["digest"].as_str().unwrap().to_string()
}

#[test]
fn build_ls_fsck_unpack_gives_back_the_tree() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("images");
    let digest = build(
        &layout,
        "hello",
        &["--cmd", "/usr/bin/hello", "--env", "GREETING=hi"],
    );
    let listing = json(&["ls", &oci(&layout, "")]);
    assert_eq!(listing["tags"][0]["tag"], "hello");
    assert_eq!(listing["tags"][0]["digest"], digest.as_str());

    let report = json(&["fsck", &oci(&layout, ""), "--diff-ids"]);
    assert_eq!(report["clean"], true, "{report}");
    assert_eq!(report["blobsChecked"], 3);

    let summary = json(&["inspect", &oci(&layout, ":hello")]);
    assert_eq!(
        summary["runConfig"]["Cmd"],
        serde_json::json!(["/usr/bin/hello"])
    );
    assert!(
        summary["runConfig"]["Env"]
            .to_string()
            .contains("GREETING=hi")
    );

    let rootfs = dir.path().join("rootfs");
    let unpacked = json(&["unpack", &oci(&layout, ":hello"), rootfs.to_str().unwrap()]);
    assert_eq!(unpacked["manifest"], digest.as_str());
    assert_eq!(tree(&rootfs), tree(&example()));
}

#[test]
fn reproducible_builds_give_the_same_digest_anywhere() {
    let dir = tempfile::tempdir().unwrap();
    let run = |layout: &Path| {
        let target = oci(layout, ":r");
        let out = Command::new(env!("CARGO_BIN_EXE_ocikit"))
            .args([
                "build",
                "--json",
                "--reproducible",
                "--compression",
                "zstd",
                "--platform",
                "linux/amd64",
                "--tag",
            ])
            .arg(&target)
            .arg(example())
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let value: Value = serde_json::from_slice(&out.stdout).unwrap();
        value["digest"].as_str().unwrap().to_string()
    };
    let a = run(&dir.path().join("a"));
    let b = run(&dir.path().join("b"));
    assert_eq!(a, b);
    let config = json(&["inspect", "--config", &oci(&dir.path().join("a"), ":r")]);
    assert_eq!(config["created"], "2023-11-14T22:13:20Z");
    assert_eq!(config["architecture"], "amd64");
}

#[test]
fn from_adds_a_layer_on_top_of_a_base() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("images");
    build(&layout, "base", &["--env", "A=1"]);
    let extra = dir.path().join("extra");
    std::fs::create_dir_all(extra.join("opt")).unwrap();
    std::fs::write(extra.join("opt/app"), b"app\n").unwrap();
    let target = oci(&layout, ":app");
    let base = oci(&layout, ":base");
    json(&[
        "build",
        "--tag",
        &target,
        "--from",
        &base,
        "--env",
        "B=2",
        extra.to_str().unwrap(),
    ]);
    let summary = json(&["inspect", &oci(&layout, ":app")]);
    assert_eq!(summary["layers"].as_array().unwrap().len(), 2);
    let env = summary["runConfig"]["Env"].to_string();
    assert!(env.contains("A=1") && env.contains("B=2"), "{env}");
    let rootfs = dir.path().join("rootfs");
    ok(&[
        "unpack",
        "-q",
        &oci(&layout, ":app"),
        rootfs.to_str().unwrap(),
    ]);
    assert_eq!(std::fs::read(rootfs.join("opt/app")).unwrap(), b"app\n");
    assert!(rootfs.join("etc/motd").is_file());
}

#[test]
fn skopeo_accepts_what_build_writes() {
    let Some(skopeo) = ocikit_testkit::tool::skopeo() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("images");
    let digest = build(&layout, "hello", &[]);
    let raw = skopeo
        .command()
        .args(["inspect", "--raw"])
        .arg(oci(&layout, ":hello"))
        .output()
        .unwrap();
    assert!(
        raw.status.success(),
        "{}",
        String::from_utf8_lossy(&raw.stderr)
    );
    assert_eq!(Digest::sha256(&raw.stdout).to_string(), digest);
    // Plain inspect parses the config too: platform, env and layers as ours says.
    let out = skopeo
        .command()
        .arg("inspect")
        .arg(oci(&layout, ":hello"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ours = json(&["inspect", "--config", &oci(&layout, ":hello")]);
    assert_eq!(theirs["Digest"], digest.as_str());
    assert_eq!(theirs["Architecture"], ours["architecture"]);
    assert_eq!(theirs["Os"], ours["os"]);
    assert_eq!(theirs["Layers"].as_array().unwrap().len(), 1);
}

#[test]
fn build_takes_layers_from_flags_in_order_and_draws_progress_on_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    std::fs::write(a.join("f"), "from a").unwrap();
    std::fs::write(b.join("f"), "from b").unwrap();
    std::fs::write(b.join("only-b"), "b").unwrap();
    let layout = dir.path().join("images");
    let target = oci(&layout, ":layers");
    let built = json(&[
        "build",
        "--tag",
        &target,
        "--layer",
        a.to_str().unwrap(),
        "--layer",
        b.to_str().unwrap(),
    ]);
    let layers = built["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2, "{built}");
    assert_eq!(layers[0]["source"], a.to_str().unwrap());
    assert_eq!(layers[1]["source"], b.to_str().unwrap());
    let rootfs = dir.path().join("rootfs");
    ok(&["unpack", "-q", &target, rootfs.to_str().unwrap()]);
    assert_eq!(std::fs::read(rootfs.join("f")).unwrap(), b"from b");
    assert!(rootfs.join("only-b").is_file());
    // Positional sources come first, then --layer ones.
    let mixed = json(&[
        "build",
        "--tag",
        &oci(&layout, ":mixed"),
        "--layer",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
    ]);
    assert_eq!(mixed["layers"][0]["source"], b.to_str().unwrap());
    assert_eq!(mixed["layers"][1]["source"], a.to_str().unwrap());
    // No layer at all is a usage error.
    let out = crate::ocikit(&["build", "--tag", &oci(&layout, ":none")]);
    assert_eq!(out.status.code(), Some(2));

    // On a terminal (util-linux `script` gives one), build draws a bar per layer: bytes for
    // a tar file, a spinner for a directory; off a terminal it draws nothing.
    let tar = dir.path().join("b.tar");
    let status = Command::new("tar")
        .arg("-cf")
        .arg(&tar)
        .arg("-C")
        .arg(&b)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    let command = format!(
        "{} build --tag {} {} {}",
        env!("CARGO_BIN_EXE_ocikit"),
        oci(&layout, ":tty"),
        a.display(),
        tar.display()
    );
    let out = Command::new("script")
        .args(["-q", "-e", "-c", &command, "/dev/null"])
        .env("HOME", dir.path())
        .output()
        .unwrap();
    let drawn = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{drawn}");
    assert!(drawn.contains("build "), "{drawn}");
    assert!(
        drawn.contains(a.to_str().unwrap()),
        "no spinner for the directory: {drawn}"
    );
    assert!(
        drawn.contains(tar.to_str().unwrap()),
        "no bar for the tar: {drawn}"
    );
    let plain = crate::ocikit(&[
        "build",
        "--tag",
        &oci(&layout, ":plain"),
        a.to_str().unwrap(),
    ]);
    assert!(plain.status.success());
    assert!(
        plain.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&plain.stderr)
    );
}

#[test]
fn fsck_reports_damage_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("images");
    build(&layout, "hello", &[]);
    let summary = json(&["inspect", &oci(&layout, ":hello")]);
    let layer: Digest = summary["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let path = layout.join(layer.blob_path());
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, bytes).unwrap();
    let out = ocikit(&["fsck", "--json", &oci(&layout, "")]);
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["clean"], false);
    assert_eq!(report["problems"][0]["digest"], layer.to_string());
}

#[test]
fn gc_removes_what_nothing_references() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("images");
    build(&layout, "keep", &["--label", "which=keep"]);
    build(&layout, "drop", &["--label", "which=drop"]);
    ok(&["untag", "-q", &oci(&layout, ":drop")]);
    let before = contents(&layout);
    let dry = json(&["gc", "--dry-run", "--grace", "0", &oci(&layout, "")]);
    // The two images share their layer; the dropped one's config and manifest go.
    assert_eq!(dry["removed"].as_array().unwrap().len(), 2, "{dry}");
    assert_eq!(contents(&layout), before, "a dry run changed the layout");
    let young = json(&["gc", &oci(&layout, "")]);
    assert_eq!(young["removed"].as_array().unwrap().len(), 0, "{young}");
    let real = json(&["gc", "--grace", "0", &oci(&layout, "")]);
    assert_eq!(real["removed"], dry["removed"]);
    assert_eq!(json(&["fsck", &oci(&layout, "")])["clean"], true);
}

#[test]
fn attach_and_list_referrers() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("images");
    build(&layout, "hello", &[]);
    let sbom = dir.path().join("sbom.json");
    std::fs::write(&sbom, br#"{"packages":[]}"#).unwrap();
    let image = oci(&layout, ":hello");
    let attached = json(&[
        "attach",
        &image,
        "--artifact-type",
        "application/vnd.example.sbom+json",
        "--file-type",
        "application/json",
        sbom.to_str().unwrap(),
    ]);
    json(&[
        "attach",
        &image,
        "--artifact-type",
        "application/vnd.example.sig",
        sbom.to_str().unwrap(),
    ]);
    let all = json(&["referrers", &image]);
    assert_eq!(all["referrers"].as_array().unwrap().len(), 2);
    let filtered = json(&[
        "referrers",
        &image,
        "--artifact-type",
        "application/vnd.example.sbom+json",
    ]);
    let rows = filtered["referrers"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["digest"], attached["artifact"]);
    assert_eq!(json(&["fsck", &oci(&layout, "")])["clean"], true);
}

#[test]
fn bad_builds_and_unpacks_are_refused_without_side_effects() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("images");
    let missing = dir.path().join("no-such-dir");
    let err = fails(&[
        "build",
        "--tag",
        &oci(&layout, ":x"),
        missing.to_str().unwrap(),
    ]);
    assert!(err.contains("does not exist"), "{err}");
    assert!(!layout.exists(), "a refused build created the layout");
    let err = fails(&[
        "build",
        "--tag",
        &oci(&layout, ""),
        example().to_str().unwrap(),
    ]);
    assert!(err.contains("needs a tag"), "{err}");
    let err = fails(&[
        "build",
        "--tag",
        &oci(&layout, ":x"),
        "--env",
        "NOEQUALS",
        example().to_str().unwrap(),
    ]);
    assert!(err.contains("KEY=VALUE"), "{err}");
    assert!(!layout.exists());

    build(&layout, "hello", &[]);
    let busy = dir.path().join("busy");
    std::fs::create_dir(&busy).unwrap();
    std::fs::write(busy.join("file"), b"mine").unwrap();
    let err = fails(&["unpack", &oci(&layout, ":hello"), busy.to_str().unwrap()]);
    assert!(err.contains("not empty"), "{err}");
    assert_eq!(std::fs::read(busy.join("file")).unwrap(), b"mine");
    let err = fails(&[
        "unpack",
        &oci(&layout, ":hello"),
        dir.path().join("r").to_str().unwrap(),
        "--platform",
        "plan9/mips",
    ]);
    assert!(err.contains("plan9") || err.contains("platform"), "{err}");
}

/// The README's first command uses a relative layout path (`oci:demo-layout:hello`).
#[test]
fn relative_layout_paths_work() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_ocikit"))
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let source = example();
    run(&[
        "build",
        "--tag",
        "oci:demo-layout:hello",
        source.to_str().unwrap(),
    ]);
    assert!(dir.path().join("demo-layout/oci-layout").is_file());
    assert!(run(&["ls", "oci:demo-layout"]).contains("hello"));
    assert!(run(&["fsck", "oci:demo-layout"]).contains("no problems"));
}
