//! `ocikit index create|append|remove|annotate` on a layout and `ocikit serve`, the indexes
//! read by `skopeo inspect --raw` and copied by `skopeo copy` (`--multi-arch all`,
//! `--override-arch`); bad input refused with nothing written.

use std::path::Path;

use serde_json::Value;

use crate::registry::Serve;
use crate::{contents, fails, json, oci, ok};

/// `skopeo ARGS...`'s stdout parsed as JSON.
fn skopeo_json(args: &[&str]) -> Value {
    serde_json::from_str(&crate::skopeo().ok(args)).unwrap()
}

/// The `os/architecture[/variant]` of each entry of a raw index.
fn platforms(raw: &Value) -> Vec<String> {
    raw["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let p = &m["platform"];
            let mut text = format!(
                "{}/{}",
                p["os"].as_str().unwrap(),
                p["architecture"].as_str().unwrap()
            );
            if let Some(variant) = p["variant"].as_str() {
                text.push('/');
                text.push_str(variant);
            }
            text
        })
        .collect()
}

/// `ocikit build` of the example tree for `platform`, tagged `tag` in `layout`.
fn build(layout: &Path, tag: &str, platform: &str) -> String {
    crate::image::build(layout, tag, &["--platform", platform])
}

#[test]
fn indexes_made_and_edited_by_ocikit_are_read_and_copied_by_skopeo() {
    if ocikit_testkit::tool::skopeo().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let layout = d.join("images");
    let amd64 = build(&layout, "amd64", "linux/amd64");
    let arm64 = build(&layout, "arm64", "linux/arm64");
    build(&layout, "armv7", "linux/arm/v7");

    // In a layout: skopeo reads the index, one entry per image with its platform.
    let multi = oci(&layout, ":multi");
    let report = json(&[
        "index",
        "create",
        "--tag",
        &multi,
        &oci(&layout, ":amd64"),
        &oci(&layout, ":arm64"),
    ]);
    let raw = skopeo_json(&["inspect", "--raw", &multi]);
    assert_eq!(raw["mediaType"], "application/vnd.oci.image.index.v1+json");
    assert_eq!(platforms(&raw), ["linux/amd64", "linux/arm64"]);
    assert_eq!(raw["manifests"][0]["digest"], amd64.as_str());
    assert_eq!(raw["manifests"][1]["digest"], arm64.as_str());
    assert_eq!(report["manifests"][1]["platform"], "linux/arm64");

    // Append, annotate, remove: each moves the tag; skopeo reads every step.
    let appended = json(&["index", "append", &multi, &oci(&layout, ":armv7")]);
    let raw = skopeo_json(&["inspect", "--raw", &multi]);
    assert_eq!(
        platforms(&raw),
        ["linux/amd64", "linux/arm64", "linux/arm/v7"]
    );
    assert_ne!(appended["digest"], report["digest"]);
    ok(&[
        "index",
        "annotate",
        &multi,
        "--annotation",
        "org.opencontainers.image.version=1.2",
    ]);
    ok(&[
        "index",
        "annotate",
        &multi,
        "--platform",
        "linux/arm/v7",
        "--annotation",
        "org.example.tier=edge",
    ]);
    let raw = skopeo_json(&["inspect", "--raw", &multi]);
    assert_eq!(
        raw["annotations"]["org.opencontainers.image.version"],
        "1.2"
    );
    assert_eq!(
        raw["manifests"][2]["annotations"]["org.example.tier"],
        "edge"
    );
    let quiet = ok(&[
        "-q",
        "index",
        "remove",
        &multi,
        "--platform",
        "linux/arm/v7",
    ]);
    let listing = json(&["ls", &oci(&layout, "")]);
    let row = listing["tags"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["tag"] == "multi")
        .unwrap()
        .clone();
    assert_eq!(quiet.trim(), row["digest"].as_str().unwrap());
    let raw = skopeo_json(&["inspect", "--raw", &multi]);
    assert_eq!(platforms(&raw), ["linux/amd64", "linux/arm64"]);

    // In `ocikit serve`: skopeo reads the index and copies it whole or one platform.
    let server = Serve::start(&d.join("registry"), &[]);
    let app = format!("docker://{}/team/app:v1", server.addr);
    json(&[
        "index",
        "create",
        "--tls-verify=false",
        "--tag",
        &app,
        &oci(&layout, ":amd64"),
        &oci(&layout, ":arm64"),
    ]);
    let raw = skopeo_json(&["inspect", "--raw", "--tls-verify=false", &app]);
    assert_eq!(platforms(&raw), ["linux/amd64", "linux/arm64"]);
    let all = d.join("all");
    crate::skopeo().ok(&[
        "copy",
        "--src-tls-verify=false",
        "--multi-arch",
        "all",
        &app,
        &oci(&all, ":app"),
    ]);
    let copied = skopeo_json(&["inspect", "--raw", &oci(&all, ":app")]);
    assert_eq!(copied, raw);
    let arm = d.join("arm");
    crate::skopeo().ok(&[
        "copy",
        "--src-tls-verify=false",
        "--override-os",
        "linux",
        "--override-arch",
        "arm64",
        &app,
        &oci(&arm, ":app"),
    ]);
    let picked = skopeo_json(&["inspect", "--raw", &oci(&arm, ":app")]);
    assert_eq!(
        picked["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    let config = skopeo_json(&["inspect", "--config", &oci(&arm, ":app")]);
    assert_eq!(config["architecture"], "arm64");
    // The copy skopeo took is the arm64 entry of the index.
    let summary = skopeo_json(&["inspect", &oci(&arm, ":app")]);
    assert_eq!(summary["Digest"], arm64.as_str());
    drop(server);
}

#[test]
fn bad_index_input_is_refused_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let layout = d.join("images");
    build(&layout, "amd64", "linux/amd64");
    build(&layout, "x86", "linux/x86_64");

    // Two images of one platform: refused, no layout made.
    let out = d.join("out");
    let err = fails(&[
        "index",
        "create",
        "--tag",
        &oci(&out, ":multi"),
        &oci(&layout, ":amd64"),
        &oci(&layout, ":x86"),
    ]);
    assert!(err.contains("are both linux/amd64"), "{err}");
    assert!(!out.exists());

    // An edit that finds no such platform, a platform that does not parse, an image
    // that is not an index: the layout unchanged.
    let multi = oci(&layout, ":multi");
    ok(&["index", "create", "--tag", &multi, &oci(&layout, ":amd64")]);
    let before = contents(&layout);
    let err = fails(&["index", "remove", &multi, "--platform", "linux/s390x"]);
    assert!(err.contains("no entry for linux/s390x"), "{err}");
    assert!(err.contains("linux/amd64"), "{err}");
    let err = fails(&["index", "remove", &multi, "--platform", "linux"]);
    assert!(err.contains("is not a platform"), "{err}");
    let err = fails(&["index", "append", &multi, &oci(&layout, ":x86")]);
    assert!(err.contains("are both linux/amd64"), "{err}");
    let err = fails(&[
        "index",
        "append",
        &oci(&layout, ":amd64"),
        &oci(&layout, ":x86"),
    ]);
    assert!(err.contains("not an index"), "{err}");
    let err = fails(&["index", "annotate", &multi, "--annotation", "novalue"]);
    assert!(err.contains("is not KEY=VALUE"), "{err}");
    let err = fails(&[
        "index",
        "create",
        "--tag",
        &multi,
        &oci(&layout, ":missing"),
    ]);
    assert!(err.contains("missing"), "{err}");
    assert_eq!(contents(&layout), before);
}
