//! `ocikit build --from` an image outside the layout of --tag (an oci-archive, another
//! layout, `ocikit serve`): the base's layers, the new layer and the config changes, read
//! back by `skopeo inspect`; a --from that names no image refused with nothing written.

use std::path::{Path, PathBuf};

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
        .unwrap_or_else(|| panic!("{value} is not an array"))
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

/// A directory with one file, the layer the builds add.
fn tree(d: &Path) -> PathBuf {
    let tree = d.join("app");
    std::fs::create_dir_all(tree.join("etc")).unwrap();
    std::fs::write(tree.join("etc/app.conf"), "mode = production\n").unwrap();
    tree
}

/// The base image: the example tree, an env, a label and a command, in `layout` as `base`,
/// and its layers as skopeo reads them.
fn base(layout: &Path) -> Vec<String> {
    crate::image::build(
        layout,
        "base",
        &["--cmd", "sh", "--env", "BASE=1", "--label", "base=yes"],
    );
    strings(&inspect(&[&oci(layout, ":base")])["Layers"])
}

/// Checks that skopeo reads `image` as `base_layers` plus one, with the env and labels of
/// the base and the build, and the base's command.
fn check_built(image: &str, base_layers: &[String], tls: &[&str]) -> Value {
    let mut args = tls.to_vec();
    args.push(image);
    let summary = inspect(&args);
    let layers = strings(&summary["Layers"]);
    assert_eq!(layers.len(), base_layers.len() + 1, "{summary}");
    assert_eq!(layers[..base_layers.len()], base_layers[..]);
    let env = strings(&summary["Env"]);
    assert!(env.contains(&"BASE=1".to_string()), "{env:?}");
    assert!(env.contains(&"MODE=production".to_string()), "{env:?}");
    assert_eq!(summary["Labels"]["base"], "yes", "{summary}");
    assert_eq!(summary["Labels"]["team"], "infra", "{summary}");
    args.insert(0, "--config");
    let config = inspect(&args);
    assert_eq!(config["config"]["Cmd"], serde_json::json!(["sh"]));
    let history = config["history"].as_array().unwrap();
    assert_eq!(history.last().unwrap()["created_by"], "ocikit build");
    summary
}

#[test]
fn build_from_an_archive_a_layout_and_a_registry_adds_the_layer_and_the_changes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let images = d.join("images");
    let base_layers = base(&images);
    let tree = tree(d);
    let tree_arg = tree.to_str().unwrap();
    let changes = ["--env", "MODE=production", "--label", "team=infra"];

    // From an oci-archive, into a new layout.
    let archive = d.join("base.tar");
    let archive_at = format!("oci-archive:{}:base", archive.display());
    ok(&["copy", &oci(&images, ":base"), &archive_at]);
    let out = d.join("out");
    let target = oci(&out, ":app");
    let mut args = vec!["build", "--tag", &target, "--from", &archive_at];
    args.extend_from_slice(&changes);
    args.push(tree_arg);
    let report = json(&args);
    let summary = check_built(&target, &base_layers, &[]);
    assert_eq!(summary["Digest"], report["digest"]);
    assert_eq!(report["image"], target.as_str());
    let layers = report["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "{report}");
    assert_eq!(layers[0]["source"], tree_arg);
    assert_eq!(
        layers[0]["digest"].as_str(),
        strings(&summary["Layers"]).last().map(String::as_str)
    );
    // The new layout holds that one image; the archive is untouched.
    let listing = json(&["ls", &oci(&out, "")]);
    assert_eq!(listing["tags"].as_array().unwrap().len(), 1, "{listing}");

    // --reproducible from another layout gives the image the same build makes from the
    // base inside the layout of --tag.
    let reproducible = |tag: &str, from: &str| {
        let mut args = vec!["build", "--reproducible", "--tag", tag, "--from", from];
        args.extend_from_slice(&changes);
        args.push(tree_arg);
        json(&args)["digest"].as_str().unwrap().to_string()
    };
    let outside = reproducible(&target, &archive_at);
    let base_at = oci(&images, ":base");
    let inside = reproducible(&oci(&images, ":app"), &base_at);
    assert_eq!(outside, inside);
    let config = inspect(&["--config", &target]);
    assert_eq!(config["created"], "1970-01-01T00:00:00Z");
    assert_eq!(
        config["history"].as_array().unwrap().last().unwrap()["created"],
        "1970-01-01T00:00:00Z"
    );

    // From `ocikit serve`, into the layout: the base's layers read from the registry.
    let server = Serve::start(&d.join("registry"), &[]);
    let remote = format!("docker://{}/team/base:v1", server.addr);
    crate::skopeo().ok(&["copy", "--dest-tls-verify=false", &base_at, &remote]);
    let from_registry = oci(&out, ":from-registry");
    let mut args = vec![
        "build",
        "--tls-verify=false",
        "--tag",
        &from_registry,
        "--from",
        &remote,
    ];
    args.extend_from_slice(&changes);
    args.push(tree_arg);
    let report = json(&args);
    let summary = check_built(&from_registry, &base_layers, &[]);
    assert_eq!(summary["Digest"], report["digest"]);
}

#[test]
fn build_from_a_missing_image_is_refused_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let images = d.join("images");
    base(&images);
    let tree = tree(d);
    let tree_arg = tree.to_str().unwrap();
    let archive = d.join("base.tar");
    ok(&[
        "copy",
        &oci(&images, ":base"),
        &format!("oci-archive:{}:base", archive.display()),
    ]);
    let server = Serve::start(&d.join("registry"), &[]);
    let before = contents(d);

    let missing_tag = format!("oci-archive:{}:nope", archive.display());
    let missing_archive = format!("oci-archive:{}", d.join("nothing.tar").display());
    let missing_repository = format!("docker://{}/team/nothing:v1", server.addr);
    let other_layout = oci(&d.join("nothing"), ":v1");
    for (from, named) in [
        (&missing_tag, "nope"),
        (&missing_archive, "nothing.tar"),
        (&missing_repository, "team/nothing"),
        (&other_layout, "nothing"),
    ] {
        // Into a new layout and into the existing one.
        for target in [oci(&d.join("out"), ":app"), oci(&images, ":app")] {
            let err = fails(&[
                "build",
                "--tls-verify=false",
                "--tag",
                &target,
                "--from",
                from,
                "--env",
                "MODE=production",
                tree_arg,
            ]);
            assert!(err.contains(named), "{from}: {err}");
        }
    }
    assert!(!d.join("out").exists());
    assert!(!d.join("nothing").exists());
    assert_eq!(contents(d), before);
    let listing = json(&["ls", &oci(&images, "")]);
    assert_eq!(listing["tags"].as_array().unwrap().len(), 1, "{listing}");
}
