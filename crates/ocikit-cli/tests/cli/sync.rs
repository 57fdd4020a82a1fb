//! `ocikit sync` end to end: from Debian's docker-registry (distribution 2.8) into
//! `ocikit serve` and back, into directories of layouts, what skopeo reads of what sync
//! wrote, reruns that write nothing (Distribution's access log, the layouts' files), a
//! corrupt image failing alone with a non-zero exit that names it, and bad input refused.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use ocikit::digest::Digest;
use ocikit_testkit::distribution::Distribution;

use crate::registry::Serve;
use crate::{fails, json, oci, ocikit, ok};

/// Builds images tagged `tags` (the example tree, a distinct config each) into the layout
/// at `layout` and pushes them to `repository` (`docker://…`); returns their digests.
fn populate(layout: &Path, repository: &str, tags: &[&str]) -> Vec<String> {
    let mut digests = Vec::new();
    for tag in tags {
        let digest = crate::image::build(layout, tag, &["--env", &format!("TAG={tag}")]);
        ok(&[
            "push",
            "--dest-tls-verify=false",
            &oci(layout, &format!(":{tag}")),
            &format!("{repository}:{tag}"),
        ]);
        digests.push(digest);
    }
    digests
}

/// The writes in an access log (anything but GET and HEAD requests).
fn writes(log: &[String]) -> Vec<String> {
    log.iter()
        .filter(|l| !l.contains("\"GET ") && !l.contains("\"HEAD "))
        .cloned()
        .collect()
}

/// Every file under `dir` with its size and modification time.
fn stamps(dir: &Path) -> Vec<(PathBuf, u64, SystemTime)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                stack.push(entry.path());
            }
            out.push((entry.path(), meta.len(), meta.modified().unwrap()));
        }
    }
    out.sort();
    out
}

fn statuses(report: &serde_json::Value) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = report["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["destination"].as_str().unwrap().to_string(),
                e["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn sync_between_distribution_and_ocikit_serve_is_what_skopeo_reads_and_reruns_write_nothing() {
    if ocikit_testkit::tool::skopeo().is_none() {
        return;
    }
    let Some(distribution) = Distribution::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(&dir.path().join("registry"), &[]);
    let layout = dir.path().join("images");
    let from = distribution.addr().to_string();
    let digests = populate(
        &layout,
        &format!("docker://{from}/team/app"),
        &["v1.0", "v1.1", "v2.0"],
    );
    // A cosign-style signature of v1.0, as a tag of the repository.
    let signature = format!("{}.sig", digests[0].replacen(':', "-", 1));
    crate::image::build(&layout, "sig", &["--env", "SIGNATURE=1"]);
    ok(&[
        "push",
        "--dest-tls-verify=false",
        &oci(&layout, ":sig"),
        &format!("docker://{from}/team/app:{signature}"),
    ]);

    // Distribution -> ocikit serve, the v1 tags only: the signature goes along.
    let to = serve.addr.clone();
    let report = json(&[
        "sync",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        "--filter",
        "^v1",
        &format!("{from}/team/app"),
        &format!("{to}/mirror"),
    ]);
    let base = format!("docker://{to}/mirror/app");
    assert_eq!(
        statuses(&report),
        [
            (format!("{base}:{signature}"), "copied".into()),
            (format!("{base}:v1.0"), "copied".into()),
            (format!("{base}:v1.1"), "copied".into()),
        ]
    );
    // skopeo reads what sync wrote: the same manifests, the tags it lists.
    for (tag, digest) in [("v1.0", &digests[0]), ("v1.1", &digests[1])] {
        let raw = crate::skopeo().ok(&[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("{base}:{tag}"),
        ]);
        assert_eq!(&Digest::sha256(raw.as_bytes()).to_string(), digest);
    }
    let tags: serde_json::Value =
        serde_json::from_str(&crate::skopeo().ok(&["list-tags", "--tls-verify=false", &base]))
            .unwrap();
    let mut tags: Vec<&str> = tags["Tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    tags.sort();
    assert_eq!(tags, [signature.as_str(), "v1.0", "v1.1"]);

    // ocikit serve -> Distribution (another repository), then again: the rerun only reads.
    let back = json(&[
        "sync",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        &format!("{to}/mirror/app"),
        &format!("{from}/back"),
    ]);
    assert_eq!(back["entries"].as_array().unwrap().len(), 3, "{back}");
    let before = distribution.access_log().len();
    let again = json(&[
        "sync",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        &format!("{to}/mirror/app"),
        &format!("{from}/back"),
    ]);
    assert!(
        statuses(&again).iter().all(|(_, s)| s == "up-to-date"),
        "{again}"
    );
    let rerun = distribution.access_log()[before..].to_vec();
    assert!(!rerun.is_empty());
    assert_eq!(writes(&rerun), Vec::<String>::new());
    assert!(
        rerun.iter().all(|l| !l.contains("/blobs/")),
        "the rerun touched blobs: {rerun:?}"
    );
    let raw = crate::skopeo().ok(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{from}/back/app:v1.1"),
    ]);
    assert_eq!(Digest::sha256(raw.as_bytes()).to_string(), digests[1]);
}

#[test]
fn sync_into_layouts_is_what_skopeo_copies_and_a_rerun_touches_no_file() {
    if ocikit_testkit::tool::skopeo().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(&dir.path().join("registry"), &[]);
    let layout = dir.path().join("images");
    let digests = populate(
        &layout,
        &format!("docker://{}/tools/cli", serve.addr),
        &["1.0.0", "1.5.0", "2.0.0", "edge"],
    );
    let file = dir.path().join("sync.yml");
    std::fs::write(
        &file,
        format!(
            "{}:\n  tls-verify: false\n  images-by-semver:\n    tools/cli: '>=1.1, <3'\n  \
             images:\n    tools/cli: [edge]\n",
            serve.addr
        ),
    )
    .unwrap();
    let mirror = dir.path().join("mirror");

    // The plan writes nothing.
    let plan = ok(&[
        "sync",
        "--src",
        "yaml",
        "--dest",
        "oci",
        "--dry-run",
        file.to_str().unwrap(),
        mirror.to_str().unwrap(),
    ]);
    assert!(plan.contains("would copy"), "{plan}");
    assert!(plan.contains("would sync 3 images: 3 to copy"), "{plan}");
    assert!(!mirror.exists());

    let text = ok(&[
        "sync",
        "--src",
        "yaml",
        "--dest",
        "oci",
        file.to_str().unwrap(),
        mirror.to_str().unwrap(),
    ]);
    assert!(
        text.contains("synced 3 images: 3 copied, 0 up to date, 0 failed"),
        "{text}"
    );
    // skopeo copies the synced tag out of the layout (oci:DIR/NAME:TAG).
    let out = dir.path().join("skopeo");
    crate::skopeo().ok(&[
        "copy",
        &format!("oci:{}:2.0.0", mirror.join("cli").display()),
        &format!("oci:{}:copied", out.display()),
    ]);
    let listing = json(&["ls", &oci(&out, "")]);
    assert_eq!(listing["tags"][0]["digest"], digests[2].as_str());

    let before = stamps(&mirror);
    let text = ok(&[
        "sync",
        "--src",
        "yaml",
        "--dest",
        "oci",
        file.to_str().unwrap(),
        mirror.to_str().unwrap(),
    ]);
    assert!(text.contains("0 copied, 3 up to date"), "{text}");
    assert_eq!(stamps(&mirror), before);
}

#[test]
fn a_corrupt_image_fails_alone_naming_it_and_a_rerun_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(&dir.path().join("registry"), &[]);
    let layouts = dir.path().join("layouts");
    let a = crate::image::build(&layouts.join("a"), "v1", &["--env", "NAME=a"]);
    crate::image::build(&layouts.join("b"), "v1", &["--env", "NAME=b"]);
    // b's config blob, overwritten with other bytes.
    let config = json(&["inspect", &oci(&layouts.join("b"), ":v1")])["config"]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let blob = layouts
        .join("b/blobs/sha256")
        .join(config.strip_prefix("sha256:").unwrap());
    let good = std::fs::read(&blob).unwrap();
    let mut bad = good.clone();
    bad[0] ^= 0xff;
    std::fs::write(&blob, &bad).unwrap();

    let args = [
        "sync",
        "--src",
        "oci",
        "--dest-tls-verify=false",
        layouts.to_str().unwrap(),
        &format!("{}/mirror", serve.addr),
    ];
    let out = ocikit(&args);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("1 image of 2 failed")
            && stderr.contains(&format!("{}:v1", oci(&layouts.join("b"), ""))),
        "{stderr}"
    );
    assert!(
        stdout.contains("copied") && stdout.contains("FAILED"),
        "{stdout}"
    );
    let held = json(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{}/mirror/a:v1", serve.addr),
    ]);
    assert_eq!(held["digest"], a.as_str());

    std::fs::write(&blob, &good).unwrap();
    let mut with_json = vec!["--json"];
    with_json.extend_from_slice(&args);
    let report: serde_json::Value = serde_json::from_str(&ok(&with_json)).unwrap();
    assert_eq!(
        statuses(&report)
            .into_iter()
            .map(|(_, s)| s)
            .collect::<Vec<_>>(),
        ["up-to-date", "copied"]
    );
}

#[test]
fn bad_sync_files_transports_and_regexes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let file = dir.path().join("sync.yml");
    std::fs::write(
        &file,
        "quay.io:\n  images:\n    etcd: []\n  images_by_tag_regex:\n    x: a\n",
    )
    .unwrap();
    let err = fails(&[
        "sync",
        "--src",
        "yaml",
        "--dest",
        "oci",
        file.to_str().unwrap(),
        out.to_str().unwrap(),
    ]);
    assert!(
        err.contains("line 4") && err.contains("unknown key `images_by_tag_regex`"),
        "{err}"
    );
    std::fs::write(&file, "oci:/srv/images:\n  images:\n    etcd: []\n").unwrap();
    let err = fails(&[
        "sync",
        "--src",
        "yaml",
        "--dest",
        "oci",
        file.to_str().unwrap(),
        out.to_str().unwrap(),
    ]);
    assert!(err.contains("unknown transport `oci:`"), "{err}");
    std::fs::write(&file, "quay.io:\n  images: [etcd\n").unwrap();
    let err = fails(&[
        "sync",
        "--src",
        "yaml",
        "--dest",
        "oci",
        file.to_str().unwrap(),
        out.to_str().unwrap(),
    ]);
    assert!(err.contains("sync.yml, line"), "{err}");
    let err = fails(&[
        "sync",
        "--dest",
        "oci",
        "--filter",
        "v1.(",
        "localhost:5000/app",
        out.to_str().unwrap(),
    ]);
    assert!(err.contains("`v1.(` is not a valid regex"), "{err}");
    // An unknown transport on the command line is a usage error.
    let usage = ocikit(&["sync", "--src", "ftp", "x", "y"]);
    assert_eq!(usage.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&usage.stderr).contains("ftp"));
    assert!(!out.exists());
}
