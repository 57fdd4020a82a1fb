//! Issue 14, "finish completely or leave nothing" and the layout parser findings: `unpack`
//! leaves the whole tree or nothing (a byte flipped at the end of a layer, a wrong diffID, a
//! full filesystem, SIGKILL); content under an unregistered digest algorithm is never used
//! unverified; `fsck --diff-ids` says which layers it cannot decode; `ls` reads configs
//! strictly.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ocikit::digest::Digest;
use serde_json::{Value, json};

use crate::{fails, oci, ocikit, ok};

const LAST: &[u8] = b"the last file of the layer, written last";

/// The names in `dir`, sorted (nothing when it does not exist).
fn listing(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A source directory with `files` (name, content).
fn source(dir: &Path, files: &[(&str, &[u8])]) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    for (name, content) in files {
        std::fs::write(dir.join(name), content).unwrap();
    }
    dir.to_path_buf()
}

/// Builds `oci:LAYOUT:TAG` from `sources`, one layer each, with `compression`.
fn build(layout: &Path, tag: &str, compression: &str, sources: &[&Path]) {
    let target = oci(layout, &format!(":{tag}"));
    let mut args = vec![
        "build",
        "--tag",
        target.as_str(),
        "--compression",
        compression,
        "--platform",
        "linux/amd64",
    ];
    args.extend(sources.iter().map(|s| s.to_str().unwrap()));
    ok(&args);
}

fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    let (algorithm, encoded) = digest.split_once(':').unwrap();
    layout.join("blobs").join(algorithm).join(encoded)
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The `index.json` entry tagged `tag`.
fn entry(layout: &Path, tag: &str) -> Value {
    read_json(&layout.join("index.json"))["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .cloned()
        .unwrap()
}

fn manifest(layout: &Path, tag: &str) -> Value {
    read_json(&blob_path(
        layout,
        entry(layout, tag)["digest"].as_str().unwrap(),
    ))
}

/// Stores `bytes` as a sha256 blob, as another tool would; returns its digest.
fn put_blob(layout: &Path, bytes: &[u8]) -> String {
    let digest = Digest::sha256(bytes).to_string();
    std::fs::write(blob_path(layout, &digest), bytes).unwrap();
    digest
}

/// Adds an `index.json` entry tagged `tag` for a manifest of `size` bytes at `digest`.
fn add_entry(layout: &Path, tag: &str, digest: &str, size: usize) {
    let path = layout.join("index.json");
    let mut index = read_json(&path);
    index["manifests"].as_array_mut().unwrap().push(json!({
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": digest,
        "size": size,
        "annotations": {"org.opencontainers.image.ref.name": tag},
    }));
    std::fs::write(&path, serde_json::to_vec(&index).unwrap()).unwrap();
}

/// Stores `manifest` and tags it `tag`.
fn put_manifest(layout: &Path, tag: &str, manifest: &Value) {
    let bytes = serde_json::to_vec(manifest).unwrap();
    let digest = put_blob(layout, &bytes);
    add_entry(layout, tag, &digest, bytes.len());
}

/// `manifest` with its config replaced by `config` (stored).
fn with_config(layout: &Path, manifest: &Value, config: &[u8]) -> Value {
    let mut manifest = manifest.clone();
    manifest["config"]["digest"] = json!(put_blob(layout, config));
    manifest["config"]["size"] = json!(config.len());
    manifest
}

/// A one-layer uncompressed image whose last file is [`LAST`], tagged `v1`.
fn small_image(dir: &Path) -> PathBuf {
    let layout = dir.join("images");
    let src = source(
        &dir.join("src"),
        &[("a-big", &vec![5u8; 300_000]), ("z-last", LAST)],
    );
    build(&layout, "v1", "none", &[&src]);
    layout
}

#[test]
fn a_byte_flipped_at_the_end_of_a_layer_leaves_no_target() {
    let dir = tempfile::tempdir().unwrap();
    let layout = small_image(dir.path());
    let layer = manifest(&layout, "v1")["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let blob = blob_path(&layout, &layer);
    let sound = std::fs::read(&blob).unwrap();
    let mut bytes = sound.clone();
    let at = bytes.windows(LAST.len()).position(|w| w == LAST).unwrap() + LAST.len() - 2;
    bytes[at] ^= 0x01;
    std::fs::write(&blob, &bytes).unwrap();

    let out = dir.path().join("out");
    let target = out.join("rootfs");
    let err = fails(&["unpack", &oci(&layout, ":v1"), target.to_str().unwrap()]);
    assert!(err.contains(&layer), "{err}");
    assert!(
        !target.exists(),
        "a failed unpack left {:?}",
        listing(&target)
    );
    assert!(listing(&out).is_empty(), "left behind: {:?}", listing(&out));

    // Repaired, it unpacks whole.
    std::fs::write(&blob, &sound).unwrap();
    ok(&[
        "unpack",
        "-q",
        &oci(&layout, ":v1"),
        target.to_str().unwrap(),
    ]);
    assert_eq!(std::fs::read(target.join("z-last")).unwrap(), LAST);
    assert_eq!(listing(&out), ["rootfs"]);
}

#[test]
fn a_wrong_diff_id_leaves_no_target_and_an_empty_target_stays_empty() {
    let dir = tempfile::tempdir().unwrap();
    let layout = small_image(dir.path());
    // The blob is sound; the config's diffID is not.
    let m = manifest(&layout, "v1");
    let mut config = read_json(&blob_path(&layout, m["config"]["digest"].as_str().unwrap()));
    config["rootfs"]["diff_ids"][0] = json!(Digest::sha256(b"another layer").to_string());
    let bad = with_config(&layout, &m, &serde_json::to_vec(&config).unwrap());
    put_manifest(&layout, "bad", &bad);

    let out = dir.path().join("out");
    let target = out.join("rootfs");
    std::fs::create_dir_all(&target).unwrap();
    let err = fails(&["unpack", &oci(&layout, ":bad"), target.to_str().unwrap()]);
    assert!(err.contains("diff"), "{err}");
    assert_eq!(listing(&out), ["rootfs"]);
    assert!(
        listing(&target).is_empty(),
        "left in the target: {:?}",
        listing(&target)
    );
    // The empty directory is replaced by the tree.
    ok(&[
        "unpack",
        "-q",
        &oci(&layout, ":v1"),
        target.to_str().unwrap(),
    ]);
    assert_eq!(listing(&target), ["a-big", "z-last"]);
    assert_eq!(listing(&out), ["rootfs"]);
}

/// A 5 MiB tmpfs mounted at a directory of its own, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// `None` (with a message) when it cannot be mounted outside CI; under `CI=true` that
    /// fails the test.
    #[allow(clippy::print_stderr)] // says why the test skips
    fn mount() -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=5m", "tmpfs"])
            .arg(dir.path())
            .output();
        match out {
            Ok(out) if out.status.success() => Some(Tmpfs { dir }),
            other => {
                let why = match other {
                    Ok(out) => String::from_utf8_lossy(&out.stderr).into_owned(),
                    Err(e) => e.to_string(),
                };
                assert!(
                    !ocikit_testkit::in_ci(),
                    "cannot mount a tmpfs (required under CI): {why}"
                );
                eprintln!("skipped: cannot mount a tmpfs (needs root): {why}");
                None
            }
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

#[test]
fn a_filesystem_that_fills_up_leaves_no_target() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("images");
    // 8 MiB of files (a small gzip layer) for a 5 MiB filesystem.
    let big = source(
        &dir.path().join("big"),
        &[("one", &vec![1u8; 4 << 20]), ("two", &vec![2u8; 4 << 20])],
    );
    let small = source(&dir.path().join("small"), &[("fits", b"fits")]);
    build(&layout, "big", "gzip", &[&big]);
    build(&layout, "small", "gzip", &[&small]);
    let Some(tmpfs) = Tmpfs::mount() else {
        return;
    };
    let target = tmpfs.path().join("rootfs");
    let err = fails(&["unpack", &oci(&layout, ":big"), target.to_str().unwrap()]);
    assert!(err.contains("space"), "{err}");
    assert!(
        listing(tmpfs.path()).is_empty(),
        "left behind: {:?}",
        listing(tmpfs.path())
    );
    // The space came back: a small image fits.
    ok(&[
        "unpack",
        "-q",
        &oci(&layout, ":small"),
        target.to_str().unwrap(),
    ]);
    assert_eq!(listing(&target), ["fits"]);
    assert_eq!(listing(tmpfs.path()), ["rootfs"]);
}

/// The staging directories in `dir`.
fn staging(dir: &Path) -> Vec<String> {
    listing(dir)
        .into_iter()
        .filter(|n| n.contains("ocikit-staging"))
        .collect()
}

/// Whether some staging directory in `dir` holds a file with content.
fn staging_has_content(dir: &Path) -> bool {
    staging(dir).iter().any(|s| {
        listing(&dir.join(s).join("rootfs")).iter().any(|f| {
            std::fs::metadata(dir.join(s).join("rootfs").join(f)).is_ok_and(|m| m.len() > 0)
        })
    })
}

#[test]
fn sigkill_in_the_middle_leaves_no_target_and_the_next_run_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("images");
    let mut layers = Vec::new();
    for i in 0..3u8 {
        let data: Vec<u8> = (0..48u32 << 20).map(|j| (j % 251) as u8 ^ i).collect();
        layers.push(source(
            &dir.path().join(format!("l{i}")),
            &[(&format!("f{i}"), &data)],
        ));
    }
    let refs: Vec<&Path> = layers.iter().map(PathBuf::as_path).collect();
    build(&layout, "big", "none", &refs);

    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let target = out.join("rootfs");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ocikit"))
        .args([
            "unpack",
            "-q",
            &oci(&layout, ":big"),
            target.to_str().unwrap(),
        ])
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !staging_has_content(&out) {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the unpack ended before it could be killed"
        );
        assert!(Instant::now() < deadline, "no staging directory appeared");
        std::thread::sleep(Duration::from_millis(1));
    }
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert!(!status.success());
    assert!(!target.exists(), "a killed unpack left a target");
    assert_eq!(staging(&out).len(), 1, "{:?}", listing(&out));

    ok(&[
        "unpack",
        "-q",
        &oci(&layout, ":big"),
        target.to_str().unwrap(),
    ]);
    assert_eq!(
        listing(&out),
        ["rootfs"],
        "the stale staging directory stayed"
    );
    assert_eq!(listing(&target), ["f0", "f1", "f2"]);
    for i in 0..3u8 {
        let f = std::fs::read(target.join(format!("f{i}"))).unwrap();
        assert_eq!(f.len(), 48 << 20);
        assert!(
            f.iter()
                .enumerate()
                .all(|(j, b)| *b == (j as u32 % 251) as u8 ^ i)
        );
    }
}

/// `bytes` under `foo:` (well-formed, unregistered), written as another tool could.
fn put_foreign(layout: &Path, bytes: &[u8]) -> String {
    let encoded = Digest::sha256(bytes).encoded().to_string();
    std::fs::create_dir_all(layout.join("blobs/foo")).unwrap();
    std::fs::write(layout.join("blobs/foo").join(&encoded), bytes).unwrap();
    format!("foo:{encoded}")
}

#[test]
fn content_under_an_unregistered_algorithm_is_never_used_unverified() {
    let dir = tempfile::tempdir().unwrap();
    let layout = small_image(dir.path());
    let bytes = std::fs::read(blob_path(
        &layout,
        entry(&layout, "v1")["digest"].as_str().unwrap(),
    ))
    .unwrap();
    let foreign = put_foreign(&layout, &bytes);
    add_entry(&layout, "foreign", &foreign, bytes.len());
    let image = oci(&layout, ":foreign");

    for args in [
        vec!["inspect", image.as_str()],
        vec!["tag", image.as_str(), "again"],
        vec!["ls", &oci(&layout, "")],
    ] {
        let err = fails(&args);
        assert!(
            err.contains(&foreign) && err.contains("cannot verify"),
            "{args:?}: {err}"
        );
    }
    let target = dir.path().join("rootfs");
    let err = fails(&["unpack", &image, target.to_str().unwrap()]);
    assert!(
        err.contains(&foreign) && err.contains("cannot verify"),
        "{err}"
    );
    assert!(!target.exists());
    assert!(entry_tags(&layout).iter().all(|t| t != "again"));

    let out = ocikit(&["fsck", &oci(&layout, "")]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "fsck passed content it cannot verify"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&foreign) && stdout.contains("cannot be verified"),
        "{stdout}"
    );
}

fn entry_tags(layout: &Path) -> Vec<String> {
    read_json(&layout.join("index.json"))["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["annotations"]["org.opencontainers.image.ref.name"].as_str())
        .map(str::to_owned)
        .collect()
}

#[test]
fn fsck_diff_ids_reports_layers_it_cannot_decode() {
    let dir = tempfile::tempdir().unwrap();
    let layout = small_image(dir.path());
    let m = manifest(&layout, "v1");
    let odd_type = "application/vnd.example.layer.v1+squashfs";
    let odd = b"hsqs: not a tar";
    let odd_digest = put_blob(&layout, odd);
    let mut config = read_json(&blob_path(&layout, m["config"]["digest"].as_str().unwrap()));
    config["rootfs"]["diff_ids"]
        .as_array_mut()
        .unwrap()
        .push(json!(Digest::sha256(odd).to_string()));
    let mut two = with_config(&layout, &m, &serde_json::to_vec(&config).unwrap());
    two["layers"].as_array_mut().unwrap().push(json!({
        "mediaType": odd_type, "digest": odd_digest, "size": odd.len()}));
    put_manifest(&layout, "odd", &two);

    ok(&["fsck", &oci(&layout, "")]);
    let out = ocikit(&["fsck", "--diff-ids", &oci(&layout, "")]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a layer went unchecked silently"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&odd_digest)
            && stdout.contains("diffID not checked")
            && stdout.contains(odd_type),
        "{stdout}"
    );
}

#[test]
fn ls_reads_configs_strictly() {
    let dir = tempfile::tempdir().unwrap();
    let layout = small_image(dir.path());
    let m = manifest(&layout, "v1");
    let config = read_json(&blob_path(&layout, m["config"]["digest"].as_str().unwrap()));
    let diff_id = config["rootfs"]["diff_ids"][0].as_str().unwrap();
    // `os` twice: a lenient parser takes the last one (linux) and lists linux/amd64.
    let twice = format!(
        r#"{{"architecture":"amd64","os":"plan9","rootfs":{{"type":"layers","diff_ids":["{diff_id}"]}},"os":"linux"}}"#
    );
    let dup = with_config(&layout, &m, twice.as_bytes());
    let dup_config = dup["config"]["digest"].as_str().unwrap().to_string();
    put_manifest(&layout, "dup", &dup);

    let err = fails(&["ls", &oci(&layout, "")]);
    assert!(err.contains(&dup_config) && err.contains("dup"), "{err}");
    assert!(err.to_lowercase().contains("duplicate"), "{err}");
    // Without it, the listing is as before.
    ok(&["untag", &oci(&layout, ":dup")]);
    let listed = ok(&["ls", &oci(&layout, "")]);
    assert!(listed.contains("linux/amd64"), "{listed}");
}
