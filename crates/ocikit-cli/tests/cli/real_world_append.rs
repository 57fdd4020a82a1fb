//! `ocikit append` on a layout, an archive and `ocikit serve`, its results read back by
//! `skopeo inspect` (layers, diffIDs, history); bad input refused with nothing written.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::registry::Serve;
use crate::{contents, fails, json, oci, ocikit, ok};

/// `skopeo inspect ARGS...` parsed.
fn inspect(args: &[&str]) -> Value {
    let mut all = vec!["inspect"];
    all.extend_from_slice(args);
    serde_json::from_str(&crate::skopeo().ok(&all)).unwrap()
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

/// A directory with one file, and a tar.gz (made by GNU tar) holding another.
fn sources(d: &Path) -> (PathBuf, PathBuf) {
    let tree = d.join("extra");
    std::fs::create_dir_all(tree.join("etc")).unwrap();
    std::fs::write(tree.join("etc/extra.conf"), "extra = yes\n").unwrap();
    let tools = d.join("tools");
    std::fs::create_dir_all(tools.join("opt/tools")).unwrap();
    std::fs::write(tools.join("opt/tools/README"), "tools from a tarball\n").unwrap();
    let tarball = d.join("tools.tar.gz");
    let tar = ocikit_testkit::Tool::require("tar").expect("GNU tar is installed");
    tar.ok(&[
        "-C",
        tools.to_str().unwrap(),
        "-czf",
        tarball.to_str().unwrap(),
        "opt",
    ]);
    (tree, tarball)
}

#[test]
fn append_adds_layers_that_skopeo_reads_on_a_layout_an_archive_and_a_registry() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let layout = d.join("images");
    let v1_digest = crate::image::build(&layout, "v1", &["--cmd", "sh"]);
    let v1 = oci(&layout, ":v1");
    let v1_layers = strings(&inspect(&[&v1])["Layers"]);
    let v1_diff_ids = strings(&inspect(&["--config", &v1])["rootfs"]["diff_ids"]);
    let (tree, tarball) = sources(d);

    // On a layout: a directory and a tar.gz, gzip layers.
    let v2 = oci(&layout, ":v2");
    let report = json(&[
        "append",
        &v1,
        "--tag",
        &v2,
        tree.to_str().unwrap(),
        tarball.to_str().unwrap(),
    ]);
    assert_eq!(report["sourceDigest"], v1_digest.as_str());
    // Two layers, the config and the manifest.
    assert_eq!(report["blobsWritten"], 4, "{report}");
    let summary = inspect(&[&v2]);
    assert_eq!(summary["Digest"], report["digest"]);
    let layers = strings(&summary["Layers"]);
    assert_eq!(layers.len(), v1_layers.len() + 2);
    assert_eq!(layers[..v1_layers.len()], v1_layers[..]);
    let config = inspect(&["--config", &v2]);
    let diff_ids = strings(&config["rootfs"]["diff_ids"]);
    assert_eq!(diff_ids.len(), v1_diff_ids.len() + 2);
    assert_eq!(diff_ids[..v1_diff_ids.len()], v1_diff_ids[..]);
    let history = config["history"].as_array().unwrap();
    assert_eq!(history.len(), diff_ids.len());
    for entry in &history[v1_diff_ids.len()..] {
        assert_eq!(entry["created_by"], "ocikit append", "{entry}");
    }
    assert_eq!(config["config"]["Cmd"], serde_json::json!(["sh"]));
    let raw = inspect(&["--raw", &v2]);
    for layer in &raw["layers"].as_array().unwrap()[v1_layers.len()..] {
        assert_eq!(
            layer["mediaType"],
            "application/vnd.oci.image.layer.v1.tar+gzip"
        );
    }
    // Unpacked: the base's tree and both new files.
    let rootfs = d.join("rootfs");
    ok(&["unpack", &v2, rootfs.to_str().unwrap()]);
    let files = contents(&rootfs);
    let has = |path: &str, bytes: &[u8]| {
        files
            .iter()
            .any(|(p, b)| p == &rootfs.join(path) && b == bytes)
    };
    assert!(has("etc/extra.conf", b"extra = yes\n"), "{files:?}");
    assert!(
        has("opt/tools/README", b"tools from a tarball\n"),
        "{files:?}"
    );

    // Into an oci-archive, uncompressed: the layer's digest is its diffID, the same as the
    // gzip layer's of the same tarball.
    let archive = d.join("app.tar");
    let archive_at = format!("oci-archive:{}:v3", archive.display());
    ok(&[
        "append",
        &v1,
        "--tag",
        &archive_at,
        "--compression",
        "none",
        "--created-by",
        "tools layer",
        tarball.to_str().unwrap(),
    ]);
    let layers = strings(&inspect(&[&archive_at])["Layers"]);
    let config = inspect(&["--config", &archive_at]);
    let archive_diff_ids = strings(&config["rootfs"]["diff_ids"]);
    assert_eq!(layers.len(), v1_layers.len() + 1);
    assert_eq!(layers.last(), archive_diff_ids.last());
    assert_eq!(archive_diff_ids.last(), diff_ids.last());
    assert_eq!(
        config["history"].as_array().unwrap().last().unwrap()["created_by"],
        "tools layer"
    );

    // Within `ocikit serve`: the new layer, the config and the manifest are uploaded, the
    // base's layers found there.
    let server = Serve::start(&d.join("registry"), &[]);
    let app = |tag: &str| format!("docker://{}/team/app:{tag}", server.addr);
    crate::skopeo().ok(&["copy", "--dest-tls-verify=false", &v1, &app("v1")]);
    let report = json(&[
        "append",
        "--tls-verify=false",
        &app("v1"),
        "--tag",
        &app("v2"),
        tree.to_str().unwrap(),
    ]);
    assert_eq!(report["blobsWritten"], 2, "{report}");
    assert_eq!(report["blobsSkipped"], v1_layers.len(), "{report}");
    let summary = inspect(&["--tls-verify=false", &app("v2")]);
    assert_eq!(summary["Digest"], report["digest"]);
    let layers = strings(&summary["Layers"]);
    assert_eq!(layers.len(), v1_layers.len() + 1);
    assert_eq!(layers[..v1_layers.len()], v1_layers[..]);
    let config = inspect(&["--config", "--tls-verify=false", &app("v2")]);
    assert_eq!(
        strings(&config["rootfs"]["diff_ids"])[..],
        diff_ids[..v1_diff_ids.len() + 1]
    );
}

#[test]
fn append_refuses_bad_input_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let layout = d.join("images");
    crate::image::build(&layout, "v1", &[]);
    let v1 = oci(&layout, ":v1");
    let (tree, _) = sources(d);
    let text = d.join("notes.txt");
    std::fs::write(&text, "a text file, not a tar\n".repeat(50)).unwrap();
    let before = contents(&layout);
    let new_layout = d.join("new");

    // A file that is not a tar: refused, naming it, into the same layout or a new one.
    for destination in [oci(&layout, ":v2"), oci(&new_layout, ":v2")] {
        let err = fails(&[
            "append",
            &v1,
            "--tag",
            &destination,
            tree.to_str().unwrap(),
            text.to_str().unwrap(),
        ]);
        assert!(err.contains("notes.txt"), "{err}");
        assert!(err.contains("not a tar"), "{err}");
    }
    // A layer that does not exist; a destination without a tag.
    let err = fails(&[
        "append",
        &v1,
        "--tag",
        &oci(&layout, ":v2"),
        d.join("missing").to_str().unwrap(),
    ]);
    assert!(err.contains("missing"), "{err}");
    let err = fails(&[
        "append",
        &v1,
        "--tag",
        &oci(&layout, ""),
        tree.to_str().unwrap(),
    ]);
    assert!(err.contains("tag"), "{err}");
    // No layer at all, an unknown compression: refused by the argument parser.
    for args in [
        vec!["append", v1.as_str(), "--tag", "oci:x:v2"],
        vec![
            "append",
            v1.as_str(),
            "--tag",
            "oci:x:v2",
            "--compression",
            "lz4",
            tree.to_str().unwrap(),
        ],
    ] {
        let out = ocikit(&args);
        assert!(!out.status.success(), "{args:?}");
    }
    assert!(!new_layout.exists());
    assert!(!Path::new("x").exists());
    assert_eq!(contents(&layout), before);
}

#[test]
fn flatten_gives_one_layer_that_unpacks_as_the_source_for_ocikit_and_umoci() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let layout = d.join("images");
    crate::image::build(&layout, "v1", &["--cmd", "sh"]);
    // A second layer that removes a file of the first (a whiteout) and adds one.
    let wh = d.join("whiteout.tar");
    std::fs::write(
        &wh,
        ocikit_testkit::tarball::archive(&[
            ocikit_testkit::tarball::Entry::dir("etc/"),
            ocikit_testkit::tarball::Entry::file("etc/.wh.motd", ""),
            ocikit_testkit::tarball::Entry::file("etc/added", "added\n"),
        ]),
    )
    .unwrap();
    let (tree, _) = sources(d);
    let v1 = oci(&layout, ":v1");
    let v2 = oci(&layout, ":v2");
    ok(&[
        "append",
        &v1,
        "--tag",
        &v2,
        wh.to_str().unwrap(),
        tree.to_str().unwrap(),
    ]);
    assert!(strings(&inspect(&[&v2])["Layers"]).len() >= 3);

    let flat = oci(&layout, ":flat");
    let report = json(&["flatten", &v2, "--tag", &flat]);
    let summary = inspect(&[&flat]);
    assert_eq!(summary["Digest"], report["digest"]);
    assert_eq!(strings(&summary["Layers"]).len(), 1);
    let config = inspect(&["--config", &flat]);
    assert_eq!(strings(&config["rootfs"]["diff_ids"]).len(), 1);
    let history = config["history"].as_array().unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["created_by"], "ocikit flatten");
    assert_eq!(config["config"]["Cmd"], serde_json::json!(["sh"]));

    // ocikit's unpack of the source and of the flattened image, and umoci's of the latter.
    let relative = |root: &Path| {
        contents(root)
            .into_iter()
            .map(|(p, b)| (p.strip_prefix(root).unwrap().to_path_buf(), b))
            .collect::<Vec<_>>()
    };
    let source_root = d.join("source-rootfs");
    let flat_root = d.join("flat-rootfs");
    ok(&["unpack", &v2, source_root.to_str().unwrap()]);
    ok(&["unpack", &flat, flat_root.to_str().unwrap()]);
    let source_files = relative(&source_root);
    assert!(!source_files.iter().any(|(p, _)| p == Path::new("etc/motd")));
    assert!(
        source_files
            .iter()
            .any(|(p, _)| p == Path::new("etc/added"))
    );
    assert_eq!(relative(&flat_root), source_files);
    let umoci = ocikit_testkit::tool::umoci().expect("umoci is installed");
    let bundle = d.join("bundle");
    umoci.ok(&[
        "unpack",
        "--rootless",
        "--image",
        &format!("{}:flat", layout.display()),
        bundle.to_str().unwrap(),
    ]);
    assert_eq!(relative(&bundle.join("rootfs")), source_files);

    // Into an oci-archive, uncompressed: the layer's digest is its diffID.
    let archive_at = format!("oci-archive:{}:flat", d.join("flat.tar").display());
    ok(&[
        "flatten",
        &v2,
        "--tag",
        &archive_at,
        "--compression",
        "none",
    ]);
    let layers = strings(&inspect(&[&archive_at])["Layers"]);
    let diff_ids = strings(&inspect(&["--config", &archive_at])["rootfs"]["diff_ids"]);
    assert_eq!(layers, diff_ids);
    assert_eq!(diff_ids, strings(&config["rootfs"]["diff_ids"]));
}

#[test]
fn flatten_refuses_bad_input_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let layout = d.join("images");
    crate::image::build(&layout, "v1", &[]);
    let v1 = oci(&layout, ":v1");
    let before = contents(&layout);
    // No tag at the destination; a source that does not exist; an unknown compression.
    let err = fails(&["flatten", &v1, "--tag", &oci(&layout, "")]);
    assert!(err.contains("tag"), "{err}");
    let err = fails(&[
        "flatten",
        &oci(&layout, ":nope"),
        "--tag",
        &oci(&d.join("new"), ":f"),
    ]);
    assert!(err.contains("nope"), "{err}");
    let out = ocikit(&[
        "flatten",
        &v1,
        "--tag",
        &oci(&layout, ":f"),
        "--compression",
        "lz4",
    ]);
    assert!(!out.status.success());
    assert!(!d.join("new").exists());
    assert_eq!(contents(&layout), before);
}
