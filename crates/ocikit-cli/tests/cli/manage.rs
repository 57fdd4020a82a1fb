//! `ocikit delete`, `catalog`, `tags --filter --sort` and `inspect docker://` end to end:
//! against layouts, a running `ocikit serve` (with and without deletes) and Distribution 2.8.

use std::path::Path;

use crate::registry::Serve;
use crate::{example_arg, fails, json, oci, ok};

const NO_TLS: &str = "--tls-verify=false";

/// A layout at `layout` with the example image tagged `v1`, and a second image (the
/// example plus a file) tagged `v2`; returns their digests.
fn two_images(layout: &Path) -> (String, String) {
    ok(&["build", "-q", "--tag", &oci(layout, ":v1"), example_arg()]);
    let extra = tempfile::tempdir().unwrap();
    std::fs::write(extra.path().join("two.txt"), "two\n").unwrap();
    ok(&[
        "build",
        "-q",
        "--tag",
        &oci(layout, ":v2"),
        example_arg(),
        extra.path().to_str().unwrap(),
    ]);
    let digest = |tag: &str| {
        json(&["inspect", &oci(layout, &format!(":{tag}"))])["digest"]
            .as_str()
            .unwrap()
            .to_string()
    };
    (digest("v1"), digest("v2"))
}

fn push(layout: &Path, tag: &str, destination: &str) {
    ok(&[
        "copy",
        "-q",
        "--dest-tls-verify=false",
        &oci(layout, &format!(":{tag}")),
        destination,
    ]);
}

fn strings(value: &serde_json::Value) -> Vec<String> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn delete_in_a_layout_removes_tags_and_refuses_a_referenced_digest_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("images");
    let (one, _) = two_images(&layout);
    ok(&["tag", &oci(&layout, ":v1"), "also-v1"]);

    // A tag another tag shares: only the tag goes.
    let report = json(&["delete", &oci(&layout, ":v1")]);
    assert_eq!(strings(&report["tagsRemoved"]), ["v1"]);
    assert_eq!(report["manifestRemoved"], false);
    assert_eq!(report["digest"], one.as_str());

    // The digest is still tagged: refused, nothing changed.
    let index = std::fs::read(layout.join("index.json")).unwrap();
    let err = fails(&["delete", &oci(&layout, &format!("@{one}"))]);
    assert!(err.contains("still referenced by tag also-v1"), "{err}");
    assert_eq!(std::fs::read(layout.join("index.json")).unwrap(), index);

    // Forced: the tag and the blobs only v1 had go; v2 is whole.
    let text = ok(&["delete", "--force", &oci(&layout, &format!("@{one}"))]);
    assert!(
        text.starts_with(&format!("deleted {one} (tags: also-v1)")),
        "{text}"
    );
    assert!(text.contains("removed "), "{text}");
    let listed = json(&["ls", &oci(&layout, "")]);
    assert_eq!(listed["tags"].as_array().unwrap().len(), 1, "{listed}");
    let fsck = ocikit_fsck(&layout);
    assert!(
        fsck.status.success(),
        "{}",
        String::from_utf8_lossy(&fsck.stdout)
    );

    // Unknown tags, archives and a quiet delete.
    let err = fails(&["delete", &oci(&layout, ":nope")]);
    assert!(err.contains("nope"), "{err}");
    let err = fails(&[
        "delete",
        &format!("oci-archive:{}", dir.path().join("a.tar").display()),
    ]);
    assert!(
        err.contains("delete removes an image from a layout"),
        "{err}"
    );
    assert_eq!(ok(&["delete", "-q", &oci(&layout, ":v2")]), "");
    let listed = json(&["ls", &oci(&layout, "")]);
    assert!(listed["tags"].as_array().unwrap().is_empty(), "{listed}");
}

fn ocikit_fsck(layout: &Path) -> std::process::Output {
    crate::ocikit(&["fsck", &oci(layout, "")])
}

#[test]
fn a_registry_deletes_lists_its_catalog_and_filters_tags() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("images");
    let (one, _) = two_images(&layout);
    let server = Serve::start(&dir.path().join("root"), &[]);
    let registry = |rest: &str| format!("docker://{}/{rest}", server.addr);
    for tag in ["v1.10.0", "latest", "v1.2.0", "1.9", "v2.0.0"] {
        push(&layout, "v1", &registry(&format!("app:{tag}")));
    }
    push(&layout, "v2", &registry("team/web:v2"));
    push(&layout, "v2", &registry("base:v2"));

    // tags: the registry's order by default, a filter, semver either way.
    let all = ok(&["tags", NO_TLS, &registry("app")]);
    assert_eq!(all.lines().count(), 5, "{all}");
    let filtered = ok(&[
        "tags",
        NO_TLS,
        &registry("app"),
        "--filter",
        r"^v?1\.",
        "--sort",
        "semver",
    ]);
    assert_eq!(filtered, "v1.2.0\n1.9\nv1.10.0\n");
    let newest_first = json(&["tags", NO_TLS, &registry("app"), "--sort", "semver-desc"]);
    assert_eq!(
        strings(&newest_first["tags"]),
        ["v2.0.0", "v1.10.0", "1.9", "v1.2.0", "latest"]
    );
    let err = fails(&["tags", NO_TLS, &registry("app"), "--filter", "v1.("]);
    assert!(
        err.contains("the tag filter `v1.(` is not a valid regex"),
        "{err}"
    );

    // catalog: every page, a page size, a limit.
    let host = format!("docker://{}", server.addr);
    assert_eq!(ok(&["catalog", NO_TLS, &host]), "app\nbase\nteam/web\n");
    let paged = json(&["catalog", NO_TLS, &host, "--page-size", "1"]);
    assert_eq!(strings(&paged["repositories"]), ["app", "base", "team/web"]);
    assert_eq!(paged["registry"], server.addr.as_str());
    let limited = json(&["catalog", NO_TLS, &host, "--page-size", "1", "--limit", "2"]);
    assert_eq!(strings(&limited["repositories"]), ["app", "base"]);
    let err = fails(&["catalog", NO_TLS, &registry("app")]);
    assert!(
        err.contains("catalog lists a registry: docker://HOST[:PORT]"),
        "{err}"
    );

    // inspect: the name and the repository's tags, as skopeo shows them.
    let inspected = json(&["inspect", NO_TLS, &registry("app:latest")]);
    assert_eq!(inspected["name"], format!("{}/app", server.addr).as_str());
    assert_eq!(inspected["repoTags"].as_array().unwrap().len(), 5);
    assert_eq!(inspected["os"], "linux");
    let text = ok(&["inspect", NO_TLS, &registry("app:latest")]);
    assert!(text.contains("RepoTags:   "), "{text}");

    // delete: a tag alone; the digest refused while tagged, then forced.
    let report = json(&["delete", NO_TLS, &registry("app:latest")]);
    assert_eq!(strings(&report["tagsRemoved"]), ["latest"]);
    let err = fails(&["delete", NO_TLS, &registry(&format!("app@{one}"))]);
    assert!(
        err.contains("still referenced by tag 1.9, tag v1.10.0"),
        "{err}"
    );
    let report = json(&[
        "delete",
        NO_TLS,
        "--force",
        &registry(&format!("app@{one}")),
    ]);
    assert_eq!(report["manifestRemoved"], true);
    assert_eq!(report["tagsRemoved"].as_array().unwrap().len(), 4);
    let left = json(&["tags", NO_TLS, &registry("app")]);
    assert!(left["tags"].as_array().unwrap().is_empty(), "{left}");
    let err = fails(&["delete", NO_TLS, &registry("base:nope")]);
    assert!(err.contains("nope"), "{err}");
}

#[test]
fn a_registry_without_deletes_refuses_them() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("images");
    two_images(&layout);
    let server = Serve::start(&dir.path().join("root"), &["--no-delete"]);
    let image = format!("docker://{}/app:v1", server.addr);
    push(&layout, "v1", &image);
    let err = fails(&["delete", NO_TLS, "--force", &image]);
    assert!(err.contains("does not support DELETE manifest"), "{err}");
    assert_eq!(
        ok(&["tags", NO_TLS, &format!("docker://{}/app", server.addr)]),
        "v1\n"
    );
}

#[test]
fn distribution_deletes_by_digest_only() {
    let Some(registry) = ocikit_testkit::distribution::Distribution::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("images");
    two_images(&layout);
    let at = |rest: &str| registry.image(rest);
    push(&layout, "v1", &at("app:v1"));
    push(&layout, "v1", &at("app:also-v1"));
    push(&layout, "v2", &at("other:v2"));

    let err = fails(&["delete", NO_TLS, &at("app:v1")]);
    assert!(err.contains("still referenced by tag also-v1"), "{err}");
    let report = json(&["delete", NO_TLS, "--force", &at("app:v1")]);
    assert_eq!(strings(&report["tagsRemoved"]), ["also-v1", "v1"]);
    let host = format!("docker://{}", registry.addr());
    assert_eq!(
        ok(&["catalog", NO_TLS, &host, "--page-size", "1"]),
        "app\nother\n"
    );
}
