//! "The CLI says what it did" (issue 14): reproducible builds that do not depend on the path
//! given, `copy --platform` for every source, a copy summary that counts the whole image,
//! mounts within one registry, a quiet end on a closed stdout, durations for `gc --grace`,
//! one JSON key style, `-q` answers, and annotations in `inspect`.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use ocikit::codec::compression::Compression;
use ocikit::codec::writer::{LayerOptions, LayerWriter};
use ocikit::digest::media_type;
use ocikit::layout::Layout;
use ocikit::store::FsStore;
use serde_json::{Value, json};

use ocikit_testkit::prng::bytes;

use crate::registry::Serve;
use crate::{example_arg, fails, json, oci, ocikit, ok};

/// The digests of a two-platform index written with the library: its own, and its
/// linux/amd64 and linux/arm64 manifests'.
struct Multi {
    index: String,
    amd64: String,
    arm64: String,
}

/// Writes into the layout at `path` a linux/amd64 and a linux/arm64 image (one
/// uncompressed layer of `layer_size` bytes each) and an index of both (with an
/// annotation), tagged `multi`.
fn multi_platform(path: &Path, layer_size: usize) -> Multi {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let layout = Layout::create(FsStore::open(path).await.unwrap())
            .await
            .unwrap();
        let mut manifests = Vec::new();
        for (n, arch) in ["amd64", "arm64"].into_iter().enumerate() {
            let mut builder = tar::Builder::new(Vec::new());
            let mut header = tar::Header::new_ustar();
            header.set_path(format!("{arch}.bin")).unwrap();
            header.set_size(layer_size as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder
                .append(&header, &bytes(n as u64 + 7, layer_size)[..])
                .unwrap();
            let tar = builder.into_inner().unwrap();
            let mut writer =
                LayerWriter::new(Vec::new(), LayerOptions::new(Compression::None)).unwrap();
            writer.write_all(&tar).unwrap();
            let (blob, info) = writer.finish().unwrap();
            let layer = layout.put_blob(info.media_type, &blob).await.unwrap();
            let config = json!({
                "architecture": arch, "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": [info.diff_id.to_string()]}
            });
            let config = layout
                .put_json(media_type::IMAGE_CONFIG, &config)
                .await
                .unwrap();
            let manifest = json!({
                "schemaVersion": 2, "mediaType": media_type::IMAGE_MANIFEST,
                "config": config, "layers": [layer],
                "annotations": {"org.example.arch": arch}
            });
            let manifest = layout
                .put_json(media_type::IMAGE_MANIFEST, &manifest)
                .await
                .unwrap();
            let mut entry = serde_json::to_value(&manifest).unwrap();
            entry["platform"] = json!({"os": "linux", "architecture": arch});
            manifests.push(entry);
        }
        let index = json!({
            "schemaVersion": 2, "mediaType": media_type::IMAGE_INDEX,
            "manifests": manifests,
            "annotations": {"org.example.index-note": "two platforms"}
        });
        let index = layout
            .put_json(media_type::IMAGE_INDEX, &index)
            .await
            .unwrap();
        layout.set_tag("multi", &index).await.unwrap();
        Multi {
            index: index.digest().to_string(),
            amd64: manifests[0]["digest"].as_str().unwrap().to_string(),
            arm64: manifests[1]["digest"].as_str().unwrap().to_string(),
        }
    })
}

/// The digest `tag` points at in the layout at `path`.
fn tagged(path: &Path, tag: &str) -> String {
    let listing = json(&["ls", &oci(path, "")]);
    listing["tags"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["tag"] == tag)
        .unwrap_or_else(|| panic!("no tag {tag} in {listing}"))["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Every blob file's size in the layout at `path`, summed.
fn blob_bytes(path: &Path) -> u64 {
    std::fs::read_dir(path.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

#[test]
fn reproducible_build_does_not_depend_on_how_the_path_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tree = d.join("src/rootfs");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(tree.join("hello.txt"), "hello\n").unwrap();
    let layout = d.join("images");
    let build = |source: &str, tag: &str, extra: &[&str]| {
        let target = oci(&layout, &format!(":{tag}"));
        let mut args = vec!["build", "--reproducible", "--tag", &target];
        args.extend_from_slice(extra);
        args.push(source);
        json(&args)["digest"].as_str().unwrap().to_string()
    };
    let plain = tree.display().to_string();
    let dotted = d.join("./src/../src/rootfs").display().to_string();
    let a = build(&plain, "a", &[]);
    let b = build(&dotted, "b", &[]);
    assert_eq!(a, b, "the same tree gave two digests");
    // What the history says is what --created-by says, and it counts in the digest.
    let c = build(&plain, "c", &["--created-by", "COPY rootfs /"]);
    assert_ne!(a, c);
    let config = json(&["inspect", "--config", &oci(&layout, ":c")]);
    assert_eq!(
        config["history"][0]["created_by"], "COPY rootfs /",
        "{config}"
    );
    let config = json(&["inspect", "--config", &oci(&layout, ":a")]);
    let default = config["history"][0]["created_by"].as_str().unwrap();
    assert!(!default.contains("rootfs"), "the path is in {default:?}");
    // Another tree is another image.
    std::fs::write(tree.join("hello.txt"), "hello again\n").unwrap();
    assert_ne!(build(&plain, "d", &[]), a);
}

#[test]
fn copy_platform_picks_from_an_index_for_layout_and_archive_sources() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let source = d.join("source");
    let multi = multi_platform(&source, 4096);
    // Layout source.
    let picked = d.join("picked");
    ok(&[
        "copy",
        "-q",
        "--platform",
        "linux/arm64",
        &oci(&source, ":multi"),
        &oci(&picked, ":app"),
    ]);
    assert_eq!(tagged(&picked, "app"), multi.arm64);
    // Without --platform a layout's index is copied whole.
    let whole = d.join("whole");
    ok(&["copy", "-q", &oci(&source, ":multi"), &oci(&whole, ":app")]);
    assert_eq!(tagged(&whole, "app"), multi.index);
    // oci-archive source.
    let archive = d.join("multi.tar");
    let archive = format!("oci-archive:{}:multi", archive.display());
    ok(&["copy", "-q", &oci(&source, ":multi"), &archive]);
    let from_archive = d.join("from-archive");
    ok(&[
        "copy",
        "-q",
        "--platform",
        "linux/amd64",
        &archive,
        &oci(&from_archive, ":app"),
    ]);
    assert_eq!(tagged(&from_archive, "app"), multi.amd64);
    // A platform the index does not have is refused, naming what it has, and nothing is
    // tagged.
    let none = d.join("none");
    let err = fails(&[
        "copy",
        "--platform",
        "linux/s390x",
        &oci(&source, ":multi"),
        &oci(&none, ":app"),
    ]);
    assert!(err.contains("linux/arm64"), "{err}");
    assert!(
        !none.join("index.json").exists()
            || !std::fs::read_to_string(none.join("index.json"))
                .unwrap()
                .contains("app")
    );
    let err = fails(&[
        "copy",
        "--platform",
        "not-a-platform",
        &archive,
        &oci(&none, ":app"),
    ]);
    assert!(err.contains("not-a-platform"), "{err}");
}

#[test]
fn copy_summary_counts_the_whole_image() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let source = d.join("source");
    multi_platform(&source, 3 << 20);
    let archive = format!("oci-archive:{}:multi", d.join("multi.tar").display());
    ok(&["copy", "-q", &oci(&source, ":multi"), &archive]);
    let imported = d.join("imported");
    let first = json(&["import", &archive, &oci(&imported, "")]);
    let total = blob_bytes(&imported);
    assert!(total > 6 << 20);
    assert_eq!(first["blobs"], 7, "{first}");
    assert_eq!(first["bytes"], total, "{first}");
    assert_eq!(first["blobsSkipped"], 0, "{first}");
    // Again: everything is there already; the image is still the same size.
    let again = json(&["import", &archive, &oci(&imported, "")]);
    assert_eq!(again["bytes"], total, "{again}");
    assert_eq!(again["blobsSkipped"], 7, "{again}");
    assert_eq!(again["blobsCopied"], 0, "{again}");
    let text = ok(&["import", &archive, &oci(&imported, "")]);
    assert!(
        text.contains("7 blobs, 6.0 MiB (7 already present)"),
        "{text}"
    );
}

#[test]
fn copy_within_one_registry_mounts_instead_of_uploading() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let layout = d.join("images");
    ok(&["build", "-q", "--tag", &oci(&layout, ":v1"), example_arg()]);
    let server = Serve::start(
        &d.join("registry"),
        &[
            "--log-format",
            "json",
            "--log",
            "warn,ocikit_registry::access=info",
        ],
    );
    let a = format!("docker://{}/team/a:1", server.addr);
    let b = format!("docker://{}/team/b:1", server.addr);
    let insecure = ["--src-tls-verify=false", "--dest-tls-verify=false"];
    let mut push = vec!["copy", "-q"];
    push.extend(insecure);
    let src = oci(&layout, ":v1");
    push.extend([src.as_str(), a.as_str()]);
    ok(&push);
    let mut within = vec!["copy", "--json"];
    within.extend(insecure);
    within.extend([a.as_str(), b.as_str()]);
    let report: Value = serde_json::from_str(&ok(&within)).unwrap();
    let pulled = d.join("pulled");
    let mut pull = vec!["copy", "-q"];
    pull.extend(insecure);
    let dest = oci(&pulled, ":b");
    pull.extend([b.as_str(), dest.as_str()]);
    ok(&pull);
    let (exit, logs) = server.stop();
    assert!(exit.success());
    assert_eq!(tagged(&pulled, "b"), tagged(&layout, "v1"));
    let requests: Vec<Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|v: &Value| v["target"] == "ocikit_registry::access")
        .map(|v| v["fields"].clone())
        .collect();
    let to_b: Vec<&Value> = requests
        .iter()
        .filter(|r| {
            r["path"]
                .as_str()
                .unwrap()
                .starts_with("/v2/team/b/blobs/uploads/")
        })
        .collect();
    assert!(
        to_b.iter()
            .all(|r| r["method"] == "POST" && r["status"] == 201),
        "blobs were uploaded to b, not mounted: {to_b:?}"
    );
    // The config and the layer.
    assert_eq!(to_b.len(), 2, "{logs}");
    // No layer byte moved: the copy read only the manifest of a, never a blob (pushing to a
    // only asked whether blobs were there, with HEAD).
    let read_from_a: Vec<&Value> = requests
        .iter()
        .filter(|r| {
            r["method"] == "GET" && r["path"].as_str().unwrap().starts_with("/v2/team/a/blobs/")
        })
        .collect();
    assert!(
        read_from_a.is_empty(),
        "the copy downloaded blobs of a: {read_from_a:?}"
    );
    assert_eq!(report["blobsMounted"], 2, "{report}");
    // The pushes to a were uploads: the log does tell uploads apart.
    assert!(
        requests.iter().any(|r| r["method"] == "PUT"
            && r["path"]
                .as_str()
                .unwrap()
                .starts_with("/v2/team/a/blobs/uploads/")),
        "{logs}"
    );
}

#[test]
fn a_closed_stdout_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("images");
    let multi = multi_platform(&layout, 4 << 20);
    let manifest = json(&["inspect", &oci(&layout, &format!("@{}", multi.arm64))]);
    let layer = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    // A 4 MiB layer does not fit in a pipe: `cat` is still writing when the reader goes.
    let mut child = Command::new(env!("CARGO_BIN_EXE_ocikit"))
        .args(["cat", &oci(&layout, ""), &layer])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 10];
    stdout.read_exact(&mut first).unwrap();
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
    // Other write errors still fail.
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ocikit"))
        .args(["cat", &oci(&layout, ""), &layer])
        .stdout(full)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error: "));
}

#[test]
fn gc_grace_takes_durations() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("images");
    ok(&["build", "-q", "--tag", &oci(&layout, ":v1"), example_arg()]);
    ok(&["untag", "-q", &oci(&layout, ":v1")]);
    let kept = json(&["gc", "--grace", "1h", &oci(&layout, "")]);
    assert_eq!(kept["keptYoung"], 3, "{kept}");
    assert_eq!(kept["removed"].as_array().unwrap().len(), 0, "{kept}");
    let text = ok(&["gc", "--dry-run", "--grace", "90m", &oci(&layout, "")]);
    assert!(text.contains("younger than 1h 30m"), "{text}");
    let removed = json(&["gc", "--grace", "0s", &oci(&layout, "")]);
    assert_eq!(removed["removed"].as_array().unwrap().len(), 3, "{removed}");
    for bad in ["1x", "h", "-5", ""] {
        let out = ocikit(&["gc", "--grace", bad, &oci(&layout, "")]);
        assert_eq!(out.status.code(), Some(2), "--grace {bad:?} was accepted");
    }
}

/// Every key in `value` outside document content (annotations, an image's run config);
/// `path` says where.
fn snake_keys(value: &Value, path: &str, found: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                if key.contains('_') {
                    found.push(format!("{path}.{key}"));
                }
                if key != "annotations" && key != "runConfig" {
                    snake_keys(child, &format!("{path}.{key}"), found);
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                snake_keys(item, &format!("{path}[]"), found);
            }
        }
        _ => {}
    }
}

#[test]
fn every_json_output_uses_camel_case_keys() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let layout = d.join("images");
    let l = |rest: &str| oci(&layout, rest);
    let rootfs = d.join("rootfs");
    let rootfs_arg = rootfs.display().to_string();
    let sbom = d.join("sbom.json");
    std::fs::write(&sbom, "{}").unwrap();
    let oci_archive = format!("oci-archive:{}", d.join("a.tar").display());
    let docker_archive = format!("docker-archive:{}:demo/app:v1", d.join("d.tar").display());
    let server = Serve::start(&d.join("registry"), &[]);
    let remote = format!("docker://{}/app:v1", server.addr);
    let remote_repo = format!("docker://{}/app", server.addr);
    let f = "--dest-tls-verify=false";
    let s = "--src-tls-verify=false";
    let t = "--tls-verify=false";
    let runs: Vec<Vec<String>> = vec![
        vec!["init".into(), l("")],
        vec![
            "build".into(),
            "--tag".into(),
            l(":v1"),
            "--annotation".into(),
            "a_b=c".into(),
            example_arg().into(),
        ],
        vec!["ls".into(), l("")],
        vec!["inspect".into(), l(":v1")],
        vec!["tag".into(), l(":v1"), "v2".into()],
        vec![
            "attach".into(),
            l(":v1"),
            "--artifact-type".into(),
            "application/vnd.example.sbom+json".into(),
            sbom.display().to_string(),
        ],
        vec!["referrers".into(), l(":v1")],
        vec!["fsck".into(), "--diff-ids".into(), l("")],
        vec!["unpack".into(), l(":v1"), rootfs_arg.clone()],
        vec!["diff".into(), l(":v1"), rootfs_arg.clone()],
        vec![
            "repack".into(),
            l(":v1"),
            rootfs_arg.clone(),
            "--tag".into(),
            "v3".into(),
        ],
        vec!["copy".into(), l(":v1"), oci(&d.join("other"), ":v1")],
        vec!["export".into(), l(":v1"), format!("{oci_archive}:v1")],
        vec!["import".into(), format!("{oci_archive}:v1"), l(":v4")],
        vec!["export".into(), l(":v1"), docker_archive.clone()],
        vec!["copy".into(), f.into(), l(":v1"), remote.clone()],
        vec!["tags".into(), t.into(), remote_repo.clone()],
        vec!["inspect".into(), t.into(), remote.clone()],
        vec!["referrers".into(), t.into(), remote.clone()],
        vec!["copy".into(), s.into(), remote.clone(), l(":v5")],
        vec!["untag".into(), l(":v2")],
        vec!["gc".into(), "--grace".into(), "0".into(), l("")],
    ];
    let mut found = Vec::new();
    for args in &runs {
        if args[0] == "diff" {
            std::fs::write(rootfs.join("added.txt"), "new\n").unwrap();
        }
        let mut with_json: Vec<&str> = vec!["--json"];
        with_json.extend(args.iter().map(String::as_str));
        let out = ocikit(&with_json);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let value: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?} printed no JSON: {e}"));
        snake_keys(&value, &args[0], &mut found);
    }
    let (exit, _) = server.stop();
    assert!(exit.success());
    // registry-gc, on a directory of its own.
    let registry = d.join("registry");
    let value = json(&[
        "registry-gc",
        "--root",
        registry.to_str().unwrap(),
        "--dry-run",
    ]);
    snake_keys(&value, "registry-gc", &mut found);
    assert!(found.is_empty(), "snake_case keys: {found:?}");
    // The walk does look inside: a document's own keys are left as they are.
    let config = json(&["inspect", "--config", &l(":v1")]);
    let mut inside = Vec::new();
    snake_keys(&config, "config", &mut inside);
    assert!(inside.iter().any(|k| k.ends_with("diff_ids")), "{inside:?}");
}

#[test]
fn quiet_read_commands_print_the_answer() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let layout = d.join("images");
    let multi = multi_platform(&layout, 1024);
    let sbom = d.join("sbom.json");
    std::fs::write(&sbom, "{}").unwrap();
    let attached = json(&[
        "attach",
        &oci(&layout, ":multi"),
        "--artifact-type",
        "application/vnd.example.sbom+json",
        sbom.to_str().unwrap(),
    ])["artifact"]
        .as_str()
        .unwrap()
        .to_string();
    ok(&["tag", "-q", &oci(&layout, ":multi"), "latest"]);
    assert_eq!(ok(&["ls", "-q", &oci(&layout, "")]), "multi\nlatest\n");
    assert_eq!(
        ok(&["inspect", "-q", &oci(&layout, ":multi")]),
        format!("{}\n", multi.index)
    );
    assert_eq!(
        ok(&["referrers", "-q", &oci(&layout, ":multi")]),
        format!("{attached}\n")
    );
    // The config is the answer of `inspect --config`.
    let config = ok(&[
        "inspect",
        "-q",
        "--config",
        &oci(&layout, &format!("@{}", multi.arm64)),
    ]);
    let config: Value = serde_json::from_str(&config).unwrap();
    assert_eq!(config["architecture"], "arm64");
    // Write commands stay silent under -q.
    assert_eq!(ok(&["tag", "-q", &oci(&layout, ":multi"), "v9"]), "");
    assert_eq!(ok(&["untag", "-q", &oci(&layout, ":v9")]), "");
    // A registry's tags, and a registry image's digest.
    let server = Serve::start(&d.join("registry"), &[]);
    for tag in ["v1", "v2"] {
        let remote = format!("docker://{}/app:{tag}", server.addr);
        ok(&[
            "copy",
            "-q",
            "--dest-tls-verify=false",
            &oci(&layout, ":multi"),
            &remote,
        ]);
    }
    let repo = format!("docker://{}/app", server.addr);
    let tags = ok(&["tags", "-q", "--tls-verify=false", &repo]);
    let remote = format!("docker://{}/app:v1", server.addr);
    let digest = ok(&["inspect", "-q", "--tls-verify=false", &remote]);
    server.stop();
    assert_eq!(tags, "v1\nv2\n");
    assert_eq!(digest, format!("{}\n", multi.index));
}

#[test]
fn inspect_shows_annotations() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("images");
    let multi = multi_platform(&layout, 1024);
    let index = ok(&["inspect", &oci(&layout, ":multi")]);
    assert!(
        index.contains("Annotations:\n  org.example.index-note: two platforms\n"),
        "{index}"
    );
    let manifest = ok(&["inspect", &oci(&layout, &format!("@{}", multi.arm64))]);
    assert!(
        manifest.contains("Annotations:\n  org.example.arch: arm64\n"),
        "{manifest}"
    );
    // An image without annotations shows no such section.
    ok(&[
        "build",
        "-q",
        "--tag",
        &oci(&layout, ":plain"),
        example_arg(),
    ]);
    let plain = ok(&["inspect", &oci(&layout, ":plain")]);
    assert!(!plain.contains("Annotations"), "{plain}");
}
