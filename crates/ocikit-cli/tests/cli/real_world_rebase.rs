//! `ocikit rebase` on a layout and within `ocikit serve`, its results read back by `skopeo
//! inspect` (layers, diffIDs, history, annotations) and unpacked; an image not built on the
//! old base and a new base of another platform refused with nothing written.

use std::path::Path;

use serde_json::Value;

use crate::registry::Serve;
use crate::{contents, fails, json, oci, ok};

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

/// A directory under `d` named `name` holding `path` with `content`.
fn tree(d: &Path, name: &str, path: &str, content: &str) -> String {
    let root = d.join(name);
    let file = root.join(path);
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(file, content).unwrap();
    root.to_str().unwrap().to_string()
}

/// A layout with bases `a` (alpha) and `b` (beta), both linux/amd64 and two layers each,
/// `arm` (linux/arm64), and `app`: `a` with an env and one layer of its own.
fn images(d: &Path) -> std::path::PathBuf {
    let layout = d.join("images");
    for (tag, name, platform) in [
        ("a", "alpha", "linux/amd64"),
        ("b", "beta", "linux/amd64"),
        ("arm", "gamma", "linux/arm64"),
    ] {
        let first = tree(
            d,
            &format!("{name}-1"),
            "etc/os-release",
            &format!("NAME={name}\n"),
        );
        let second = tree(d, &format!("{name}-2"), &format!("usr/lib/{name}.so"), name);
        ok(&[
            "build",
            "--tag",
            &oci(&layout, &format!(":{tag}")),
            "--platform",
            platform,
            "--cmd",
            "sh",
            &first,
            &second,
        ]);
    }
    let app = tree(d, "app", "app/run.sh", "echo app\n");
    ok(&[
        "build",
        "--tag",
        &oci(&layout, ":app"),
        "--from",
        &oci(&layout, ":a"),
        "--env",
        "APP_MODE=production",
        &app,
    ]);
    layout
}

#[test]
fn rebase_swaps_the_base_that_skopeo_reads_on_a_layout_and_a_registry() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let layout = images(d);
    let (app, a, b) = (oci(&layout, ":app"), oci(&layout, ":a"), oci(&layout, ":b"));
    let app_layers = strings(&inspect(&[&app])["Layers"]);
    let b_summary = inspect(&[&b]);
    let b_layers = strings(&b_summary["Layers"]);
    let app_config = inspect(&["--config", &app]);
    let b_config = inspect(&["--config", &b]);

    let rebased = oci(&layout, ":rebased");
    let report = json(&[
        "rebase",
        &app,
        "--old-base",
        &a,
        "--new-base",
        &b,
        "--tag",
        &rebased,
    ]);
    // The config and the manifest.
    assert_eq!(report["blobsWritten"], 2, "{report}");
    let summary = inspect(&[&rebased]);
    assert_eq!(summary["Digest"], report["digest"]);
    let mut layers = b_layers.clone();
    layers.push(app_layers[2].clone());
    assert_eq!(strings(&summary["Layers"]), layers);
    assert_eq!(summary["Env"], inspect(&[&app])["Env"]);
    let config = inspect(&["--config", &rebased]);
    let mut diff_ids = strings(&b_config["rootfs"]["diff_ids"]);
    diff_ids.push(strings(&app_config["rootfs"]["diff_ids"])[2].clone());
    assert_eq!(strings(&config["rootfs"]["diff_ids"]), diff_ids);
    let history = config["history"].as_array().unwrap();
    let b_history = b_config["history"].as_array().unwrap();
    assert_eq!(history.len(), b_history.len() + 1, "{config}");
    assert_eq!(&history[..b_history.len()], &b_history[..]);
    assert_eq!(
        history.last(),
        app_config["history"].as_array().unwrap().last()
    );
    let raw = inspect(&["--raw", &rebased]);
    assert_eq!(
        raw["annotations"]["org.opencontainers.image.base.digest"],
        b_summary["Digest"]
    );
    assert!(raw["annotations"]["org.opencontainers.image.base.name"].is_null());
    let rootfs = d.join("rootfs");
    ok(&["unpack", &rebased, rootfs.to_str().unwrap()]);
    assert_eq!(
        std::fs::read_to_string(rootfs.join("etc/os-release")).unwrap(),
        "NAME=beta\n"
    );
    assert_eq!(
        std::fs::read_to_string(rootfs.join("app/run.sh")).unwrap(),
        "echo app\n"
    );
    assert!(!rootfs.join("usr/lib/alpha.so").exists());

    // Within `ocikit serve`: the new base's layers mounted, the config the one upload.
    let server = Serve::start(&d.join("registry"), &[]);
    let at = |name: &str| format!("docker://{}/{name}", server.addr);
    for (from, to) in [
        (&a, "base/alpha:v1"),
        (&b, "base/beta:v1"),
        (&app, "team/app:v1"),
    ] {
        crate::skopeo().ok(&["copy", "--dest-tls-verify=false", from, &at(to)]);
    }
    let report = json(&[
        "rebase",
        "--tls-verify=false",
        &at("team/app:v1"),
        "--old-base",
        &at("base/alpha:v1"),
        "--new-base",
        &at("base/beta:v1"),
        "--tag",
        &at("team/app:rebased"),
    ]);
    assert_eq!(report["blobsWritten"], 1, "{report}");
    assert_eq!(report["blobsMounted"], 2, "{report}");
    let summary = inspect(&["--tls-verify=false", &at("team/app:rebased")]);
    assert_eq!(summary["Digest"], report["digest"]);
    assert_eq!(strings(&summary["Layers"]), layers);
    let raw = inspect(&["--raw", "--tls-verify=false", &at("team/app:rebased")]);
    assert_eq!(
        raw["annotations"]["org.opencontainers.image.base.name"],
        format!("{}/base/beta:v1", server.addr)
    );
    assert_eq!(
        raw["annotations"]["org.opencontainers.image.base.digest"],
        b_summary["Digest"]
    );
}

#[test]
fn rebase_refuses_an_unrelated_base_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let layout = images(d);
    let before = contents(&layout);
    let (app, a, b) = (oci(&layout, ":app"), oci(&layout, ":a"), oci(&layout, ":b"));
    let new_layout = d.join("new");
    for destination in [oci(&layout, ":rebased"), oci(&new_layout, ":rebased")] {
        // Not built on `b`.
        let err = fails(&[
            "rebase",
            &app,
            "--old-base",
            &b,
            "--new-base",
            &a,
            "--tag",
            &destination,
        ]);
        assert!(err.contains("is not built on"), "{err}");
        assert!(err.contains(&b), "{err}");
        assert!(err.contains("layer 1"), "{err}");
        // A new base of another platform.
        let err = fails(&[
            "rebase",
            &app,
            "--old-base",
            &a,
            "--new-base",
            &oci(&layout, ":arm"),
            "--tag",
            &destination,
        ]);
        assert!(err.contains("linux/arm64"), "{err}");
        // A missing new base.
        let err = fails(&[
            "rebase",
            &app,
            "--old-base",
            &a,
            "--new-base",
            &oci(&layout, ":missing"),
            "--tag",
            &destination,
        ]);
        assert!(err.contains("missing"), "{err}");
    }
    assert!(!new_layout.exists());
    assert_eq!(contents(&layout), before);
}
