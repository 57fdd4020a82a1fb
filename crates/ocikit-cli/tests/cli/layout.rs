//! `init`, `ls`, `tag`, `untag`, `inspect`, `cat`, `completions`.

use std::io::Write;
use std::path::Path;

use ocikit::codec::compression::Compression;
use ocikit::codec::writer::{LayerOptions, LayerWriter};
use ocikit::digest::Digest;
use ocikit::digest::media_type;
use ocikit::layout::Layout;
use ocikit::store::FsStore;
use serde_json::{Value, json};

use crate::{contents, fails, oci, ok};

/// Writes a one-layer linux/arm64 image tagged `tag` into the layout at `path` with the
/// library (hand-made config and manifest), returning the manifest digest and layer size.
fn image(path: &Path, tag: &str) -> (String, u64) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let layout = Layout::create(FsStore::open(path).await.unwrap())
            .await
            .unwrap();
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_ustar();
        header.set_path("hello.txt").unwrap();
        header.set_size(6);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append(&header, &b"hello\n"[..]).unwrap();
        let tar = builder.into_inner().unwrap();
        let mut writer =
            LayerWriter::new(Vec::new(), LayerOptions::new(Compression::Gzip)).unwrap();
        writer.write_all(&tar).unwrap();
        let (blob, info) = writer.finish().unwrap();
        let layer = layout.put_blob(info.media_type, &blob).await.unwrap();
        let config = json!({
            "architecture": "arm64", "os": "linux", "variant": "v8",
            "created": "2026-01-01T00:00:00Z",
            "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/hello"]},
            "rootfs": {"type": "layers", "diff_ids": [info.diff_id.to_string()]}
        });
        let config = layout
            .put_json(media_type::IMAGE_CONFIG, &config)
            .await
            .unwrap();
        let manifest = json!({
            "schemaVersion": 2, "mediaType": media_type::IMAGE_MANIFEST,
            "config": config, "layers": [layer],
            "annotations": {"org.example.note": "made by a test"}
        });
        let manifest = layout
            .put_json(media_type::IMAGE_MANIFEST, &manifest)
            .await
            .unwrap();
        layout.set_tag(tag, &manifest).await.unwrap();
        (manifest.digest().to_string(), info.size)
    })
}

#[test]
fn init_creates_a_layout_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("images");
    let out = ok(&["init", &oci(&path, "")]);
    assert!(out.contains("initialised"), "{out}");
    assert!(path.join("oci-layout").is_file());
    assert!(path.join("index.json").is_file());
    let before = contents(&path);
    ok(&["init", "-q", &oci(&path, "")]);
    assert_eq!(contents(&path), before);
    let listing: Value = serde_json::from_str(&ok(&["ls", "--json", &oci(&path, "")])).unwrap();
    assert_eq!(listing, json!({"tags": []}));
}

#[test]
fn ls_shows_tags_digests_sizes_and_platforms() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("images");
    let (digest, _) = image(&path, "v1");
    ok(&["tag", &oci(&path, ":v1"), "latest"]);
    let listing: Value = serde_json::from_str(&ok(&["ls", "--json", &oci(&path, "")])).unwrap();
    let tags = listing["tags"].as_array().unwrap();
    assert_eq!(tags.len(), 2);
    for row in tags {
        assert_eq!(row["digest"], digest.as_str());
        assert_eq!(row["platforms"], json!(["linux/arm64/v8"]));
        assert_eq!(row["mediaType"], media_type::IMAGE_MANIFEST);
        assert!(row["size"].as_u64().unwrap() > 100);
    }
    let text = ok(&["ls", &oci(&path, "")]);
    assert!(text.contains("latest") && text.contains("v1"), "{text}");
    assert!(text.contains(&digest["sha256:".len()..][..12]), "{text}");
    assert!(text.contains("linux/arm64/v8"), "{text}");
}

#[test]
fn tag_by_digest_and_untag() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("images");
    let (digest, _) = image(&path, "v1");
    ok(&["tag", "-q", &oci(&path, &format!("@{digest}")), "by-digest"]);
    let inspected: Value =
        serde_json::from_str(&ok(&["inspect", "--json", &oci(&path, ":by-digest")])).unwrap();
    assert_eq!(inspected["digest"], digest.as_str());
    ok(&["untag", &oci(&path, ":v1")]);
    let listing: Value = serde_json::from_str(&ok(&["ls", "--json", &oci(&path, "")])).unwrap();
    let tags: Vec<&str> = listing["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["tag"].as_str().unwrap())
        .collect();
    assert_eq!(tags, ["by-digest"]);
}

#[test]
fn inspect_shows_summary_raw_manifest_and_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("images");
    let (digest, layer_size) = image(&path, "v1");
    let summary: Value =
        serde_json::from_str(&ok(&["inspect", "--json", &oci(&path, ":v1")])).unwrap();
    assert_eq!(summary["digest"], digest.as_str());
    assert_eq!(summary["platform"], "linux/arm64/v8");
    assert_eq!(summary["created"], "2026-01-01T00:00:00Z");
    assert_eq!(summary["layers"][0]["size"], layer_size);
    assert_eq!(summary["runConfig"]["Cmd"], json!(["/bin/hello"]));
    assert_eq!(summary["annotations"]["org.example.note"], "made by a test");

    let raw = ok(&["inspect", "--raw", &oci(&path, ":v1")]);
    assert_eq!(Digest::sha256(raw.as_bytes()).to_string(), digest);

    let config: Value =
        serde_json::from_str(&ok(&["inspect", "--config", "--json", &oci(&path, ":v1")])).unwrap();
    assert_eq!(config["architecture"], "arm64");

    let text = ok(&["inspect", &oci(&path, ":v1")]);
    assert!(text.contains("Platform:   linux/arm64/v8"), "{text}");
}

#[test]
fn cat_writes_the_verified_blob_and_fails_on_a_corrupt_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("images");
    let (digest, _) = image(&path, "v1");
    let raw = ok(&["cat", &oci(&path, ""), &digest]);
    assert_eq!(Digest::sha256(raw.as_bytes()).to_string(), digest);

    // Corrupt the manifest blob on disk: cat must fail (non-zero) and say so.
    let parsed: Digest = digest.parse().unwrap();
    let blob = path.join(parsed.blob_path());
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[3] ^= 1;
    std::fs::remove_file(&blob).unwrap();
    std::fs::write(&blob, &bytes).unwrap();
    let out = crate::ocikit(&["cat", &oci(&path, ""), &digest]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("corrupt"), "{stderr}");
}

#[test]
fn bad_input_gives_one_error_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("images");
    let (digest, _) = image(&path, "v1");
    let before = contents(dir.path());

    let missing = dir.path().join("missing");
    let err = fails(&["ls", &oci(&missing, "")]);
    assert!(err.contains("does not exist"), "{err}");
    assert!(
        !missing.exists(),
        "ls created the directory it was asked to read"
    );

    let err = fails(&["ls", &path.display().to_string()]);
    assert!(err.contains("did you mean `oci:"), "{err}");
    let err = fails(&["ls", "zip:whatever"]);
    assert!(err.contains("unknown transport"), "{err}");
    let err = fails(&["inspect", &oci(&path, ":nope")]);
    assert!(err.contains("nope"), "{err}");
    let err = fails(&["tag", &oci(&path, ":v1"), "../bad"]);
    assert!(err.contains("../bad"), "{err}");
    let err = fails(&["untag", &oci(&path, ":nope")]);
    assert!(err.contains("no tag"), "{err}");
    let err = fails(&["cat", &oci(&path, ""), "sha256:1234"]);
    assert!(err.contains("not a valid digest"), "{err}");
    let err = fails(&["inspect", &oci(&path, &format!("@{}", &digest[..20]))]);
    assert!(err.contains("digest"), "{err}");
    assert_eq!(
        contents(dir.path()),
        before,
        "a failed command changed the layout"
    );

    // A corrupt index.json: every command that reads it names it.
    std::fs::write(
        path.join("index.json"),
        b"{\"schemaVersion\": 2, \"manifests\": null}",
    )
    .unwrap();
    let err = fails(&["ls", &oci(&path, "")]);
    assert!(err.contains("index.json"), "{err}");
}

#[test]
fn usage_errors_exit_2_and_help_has_examples() {
    let out = crate::ocikit(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    for command in ["init", "ls", "tag", "untag", "inspect", "cat"] {
        let help = ok(&[command, "--help"]);
        assert!(
            help.contains("Example"),
            "{command} --help has no example:\n{help}"
        );
    }
    let script = ok(&["completions", "bash"]);
    assert!(script.contains("ocikit"), "{script}");
}

/// Commands that only read a layout leave one another tool wrote exactly as it was (no
/// `.ocikit/` appears in it); the first command that writes makes what it needs.
#[test]
fn read_only_commands_leave_a_foreign_layout_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("foreign");
    let (digest, _) = image(&path, "v1");
    std::fs::remove_dir_all(path.join(".ocikit")).unwrap();
    let before = contents(&path);
    let rootfs = dir.path().join("rootfs");
    let copy = dir.path().join("copy");
    let archive = format!("oci-archive:{}", dir.path().join("v1.tar").display());
    for args in [
        vec!["ls", &oci(&path, "")],
        vec!["inspect", &oci(&path, ":v1")],
        vec!["inspect", "--raw", &oci(&path, ":v1")],
        vec!["inspect", "--config", &oci(&path, ":v1")],
        vec!["fsck", &oci(&path, "")],
        vec!["cat", &oci(&path, ""), &digest],
        vec![
            "unpack",
            "-q",
            "--platform",
            "linux/arm64/v8",
            &oci(&path, ":v1"),
            rootfs.to_str().unwrap(),
        ],
        vec!["copy", &oci(&path, ":v1"), &oci(&copy, ":v1")],
        vec!["export", &oci(&path, ":v1"), &archive],
    ] {
        ok(&args);
        assert_eq!(
            contents(&path),
            before,
            "`ocikit {}` wrote into it",
            args[0]
        );
    }
    assert!(!path.join(".ocikit").exists());
    assert_eq!(std::fs::read(rootfs.join("hello.txt")).unwrap(), b"hello\n");
    ok(&["tag", "-q", &oci(&path, ":v1"), "v2"]);
    assert_ne!(contents(&path), before);
    assert!(ok(&["ls", &oci(&path, "")]).contains("v2"));
}
