//! Archives and names as real users meet them: skopeo's untagged oci-archives, docker's name
//! normalisation in docker-archives, names for a whole-layout export, gzip on the way to a
//! registry, tags given as locations, and a registry location without a repository.

use std::path::Path;
use std::process::Command;

use crate::registry::Serve;
use crate::{fails, json, oci, ok};

/// skopeo with `args`, expected to succeed (None without skopeo, outside CI).
fn skopeo(args: &[&str]) -> Option<String> {
    Some(ocikit_testkit::tool::skopeo()?.ok(args))
}

/// The entries of `index.json` in a layout: `(digest, ref.name)`.
fn entries(layout: &Path) -> Vec<(String, Option<String>)> {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["digest"].as_str().unwrap().to_string(),
                m["annotations"]["org.opencontainers.image.ref.name"]
                    .as_str()
                    .map(str::to_string),
            )
        })
        .collect()
}

/// A file of a tar archive, read with GNU tar (not the code under test).
fn tar_member(archive: &Path, member: &str) -> Vec<u8> {
    let out = Command::new("tar")
        .arg("-xOf")
        .arg(archive)
        .arg(member)
        .output()
        .unwrap();
    assert!(out.status.success(), "tar -xOf {member}");
    out.stdout
}

#[test]
fn skopeos_untagged_oci_archive_imports_every_image() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("images");
    let digest = crate::image::build(&layout, "v1", &[]);
    let archive = dir.path().join("skopeo.tar");
    let written = format!("oci-archive:{}", archive.display());
    if skopeo(&["copy", &oci(&layout, ":v1"), &written]).is_none() {
        return;
    }
    let index: serde_json::Value =
        serde_json::from_slice(&tar_member(&archive, "index.json")).unwrap();
    assert!(
        index["manifests"][0].get("annotations").is_none(),
        "skopeo wrote a tag after all: {index}"
    );

    // Every image, untagged as it came.
    let all = dir.path().join("all");
    ok(&["import", &written, &oci(&all, "")]);
    assert_eq!(entries(&all), [(digest.clone(), None)]);
    let report = json(&["fsck", &oci(&all, "")]);
    assert_eq!(report["clean"], true, "{report}");

    // A destination tag names it; a digest selects it.
    let named = dir.path().join("named");
    ok(&["import", &written, &oci(&named, ":app")]);
    assert_eq!(entries(&named), [(digest.clone(), Some("app".into()))]);
    let by_digest = dir.path().join("by-digest");
    ok(&[
        "import",
        &format!("{written}@{digest}"),
        &oci(&by_digest, ":app"),
    ]);
    assert_eq!(entries(&by_digest), [(digest.clone(), Some("app".into()))]);
    ok(&[
        "copy",
        &format!("{written}@{digest}"),
        &format!(
            "oci-archive:{}:again",
            dir.path().join("again.tar").display()
        ),
    ]);

    // Copied whole into another archive, the untagged image stays untagged, as skopeo
    // writes it.
    let unnamed = dir.path().join("unnamed.tar");
    ok(&[
        "copy",
        &written,
        &format!("oci-archive:{}", unnamed.display()),
    ]);
    let index: serde_json::Value =
        serde_json::from_slice(&tar_member(&unnamed, "index.json")).unwrap();
    assert_eq!(index["manifests"][0]["digest"], digest.as_str(), "{index}");
    assert!(
        index["manifests"][0].get("annotations").is_none(),
        "an untagged image got a name: {index}"
    );

    // A digest the archive lacks is refused and leaves no layout behind.
    let absent = ocikit::digest::Digest::sha256(b"not there");
    let missing = dir.path().join("missing");
    let err = fails(&[
        "import",
        &format!("{written}@{absent}"),
        &oci(&missing, ":app"),
    ]);
    assert!(err.contains(&format!("no image {absent}")), "{err}");
    assert!(!missing.exists());
}

#[test]
fn docker_archive_names_are_matched_as_docker_normalises_them() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("images");
    let digest = crate::image::build(&layout, "v1", &[]);
    let saved = dir.path().join("saved.tar");
    let short = dir.path().join("short.tar");
    let Some(_) = skopeo(&[
        "copy",
        &oci(&layout, ":v1"),
        &format!("docker-archive:{}:demo/hello:v1", saved.display()),
    ]) else {
        return;
    };
    skopeo(&[
        "copy",
        &oci(&layout, ":v1"),
        &format!("docker-archive:{}:hello", short.display()),
    ]);
    // skopeo writes the normalised names.
    let manifest: serde_json::Value =
        serde_json::from_slice(&tar_member(&saved, "manifest.json")).unwrap();
    assert_eq!(manifest[0]["RepoTags"][0], "docker.io/demo/hello:v1");

    let config = json(&["inspect", "--config", &oci(&layout, ":v1")]);
    for (archive, name) in [
        (&saved, "demo/hello:v1"),
        (&saved, "docker.io/demo/hello:v1"),
        (&short, "hello"),
        (&short, "hello:latest"),
        (&short, "library/hello"),
        (&short, "docker.io/library/hello:latest"),
    ] {
        let back = dir
            .path()
            .join(format!("back-{}", name.replace(['/', ':'], "-")));
        ok(&[
            "import",
            &format!("docker-archive:{}:{name}", archive.display()),
            &oci(&back, ":it"),
        ]);
        let theirs = json(&["inspect", "--config", &oci(&back, ":it")]);
        assert_eq!(theirs["rootfs"], config["rootfs"], "{name}");
    }
    for (archive, name) in [
        (&saved, "demo/hello:v2"),
        (&saved, "hello:v1"),
        (&short, "other/hello"),
    ] {
        let back = dir.path().join("refused");
        let err = fails(&[
            "import",
            &format!("docker-archive:{}:{name}", archive.display()),
            &oci(&back, ":it"),
        ]);
        assert!(err.contains("no image named"), "{err}");
        assert!(!back.exists());
    }
    let _ = digest;
}

#[test]
fn a_whole_layout_exports_under_the_layouts_name_and_its_tags() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("images");
    crate::image::build(&layout, "v1", &[]);
    crate::image::build(&layout, "v2", &["--env", "V=2"]);
    let archive = dir.path().join("all.tar");
    ok(&[
        "export",
        &oci(&layout, ""),
        &format!("docker-archive:{}", archive.display()),
    ]);
    let manifest: serde_json::Value =
        serde_json::from_slice(&tar_member(&archive, "manifest.json")).unwrap();
    let mut names: Vec<String> = manifest
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|m| m["RepoTags"].as_array().unwrap().clone())
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["images:v1", "images:v2"]);
    // skopeo finds each by its name.
    for name in ["images:v1", "images:v2"] {
        if skopeo(&[
            "inspect",
            "--raw",
            &format!("docker-archive:{}:{name}", archive.display()),
        ])
        .is_none()
        {
            break;
        }
    }

    // A layout whose name cannot be an image name asks for one, and writes nothing.
    let odd = dir.path().join("Odd Name");
    crate::image::build(&odd, "v1", &[]);
    let refused = dir.path().join("refused.tar");
    let err = fails(&[
        "export",
        &oci(&odd, ""),
        &format!("docker-archive:{}", refused.display()),
    ]);
    assert!(err.contains("NAME:TAG"), "{err}");
    assert!(!refused.exists());
}

#[test]
fn pushing_a_docker_archive_gzips_its_layers() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("images");
    crate::image::build(&layout, "v1", &[]);
    let saved = dir.path().join("saved.tar");
    ok(&[
        "export",
        &oci(&layout, ":v1"),
        &format!("docker-archive:{}:demo/hello:v1", saved.display()),
    ]);
    let server = Serve::start(&dir.path().join("registry"), &[]);
    let pushed = |repository: &str, extra: &[&str]| {
        let target = format!("docker://{}/{repository}:v1", server.addr);
        let mut args = vec!["copy", "--dest-tls-verify=false"];
        args.extend_from_slice(extra);
        let source = format!("docker-archive:{}", saved.display());
        args.extend_from_slice(&[&source, &target]);
        ok(&args);
        let raw = json(&["inspect", "--raw", "--tls-verify=false", &target]);
        raw["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                let digest = l["digest"].as_str().unwrap();
                let blob =
                    server.request("GET", &format!("/v2/{repository}/blobs/{digest}"), &[], b"");
                assert_eq!(blob.status, 200);
                (l["mediaType"].as_str().unwrap().to_string(), blob.body)
            })
            .collect::<Vec<_>>()
    };
    let layers = pushed("demo/gzip", &[]);
    assert!(!layers.is_empty());
    for (media_type, body) in &layers {
        assert!(media_type.ends_with("gzip"), "{media_type}");
        assert_eq!(&body[..2], [0x1f, 0x8b], "not gzip: {media_type}");
    }
    // --compression none keeps them as the archive has them.
    for (media_type, body) in pushed("demo/plain", &["--compression", "none"]) {
        assert!(!media_type.ends_with("gzip"), "{media_type}");
        assert_ne!(&body[..2], [0x1f, 0x8b]);
    }
}

#[test]
fn tags_given_as_locations_name_the_tag() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("images");
    let digest = crate::image::build(&layout, "a", &[]);
    ok(&["tag", &oci(&layout, ":a"), &oci(&layout, ":b")]);
    ok(&["tag", &oci(&layout, ":a"), "c"]);
    let rootfs = dir.path().join("rootfs");
    ok(&[
        "unpack",
        "-q",
        &oci(&layout, ":a"),
        rootfs.to_str().unwrap(),
    ]);
    std::fs::write(rootfs.join("new-file"), b"new\n").unwrap();
    ok(&[
        "repack",
        &oci(&layout, ":a"),
        rootfs.to_str().unwrap(),
        "--tag",
        &oci(&layout, ":v3"),
    ]);
    let mut tags: Vec<String> = entries(&layout)
        .into_iter()
        .filter_map(|(_, t)| t)
        .collect();
    tags.sort();
    assert_eq!(tags, ["a", "b", "c", "v3"]);
    let b = entries(&layout)
        .into_iter()
        .find(|(_, t)| t.as_deref() == Some("b"))
        .unwrap();
    assert_eq!(b.0, digest);

    // Another layout, another transport, no tag, a bad tag: refused, nothing tagged.
    let before = crate::contents(&layout);
    let other = dir.path().join("other");
    for (new, message) in [
        (oci(&other, ":b"), "names the layout"),
        (format!("docker://127.0.0.1:5000/x:{}", "b"), "oci:PATH"),
        (oci(&layout, ""), "needs a tag"),
        ("bad tag".to_string(), "takes a tag"),
    ] {
        let err = fails(&["tag", &oci(&layout, ":a"), &new]);
        assert!(err.contains(message), "{new}: {err}");
        let err = fails(&[
            "repack",
            &oci(&layout, ":a"),
            rootfs.to_str().unwrap(),
            "--tag",
            &new,
        ]);
        assert!(err.contains(message), "{new}: {err}");
    }
    assert_eq!(crate::contents(&layout), before);
}

#[test]
fn a_registry_without_a_repository_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("images");
    crate::image::build(&layout, "v1", &[]);
    for location in ["docker://127.0.0.1:5001", "docker://localhost:5000"] {
        let err = fails(&["inspect", "--tls-verify=false", location]);
        assert!(err.contains("no repository"), "{err}");
        assert!(!err.contains("docker.io"), "{err}");
        let err = fails(&[
            "copy",
            "--dest-tls-verify=false",
            &oci(&layout, ":v1"),
            location,
        ]);
        assert!(err.contains("no repository"), "{err}");
    }
}
