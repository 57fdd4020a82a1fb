//! Archives ocikit exports (written with `ocikit-codec`'s tar writer) as their real
//! consumers read them: skopeo copies the oci-archive and the docker-archive into layouts
//! with the same manifest and the same diffIDs, and GNU tar lists and checks them.

use std::path::Path;

use crate::{example_arg, json, oci};

fn built(layout: &Path, tag: &str) -> String {
    json(&[
        "build",
        "--tag",
        &oci(layout, &format!(":{tag}")),
        example_arg(),
    ])["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn skopeo_and_gnu_tar_read_ocikits_oci_and_docker_archives() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("images");
    let digest = built(&layout, "v1");
    let oci_archive = dir.path().join("v1-oci.tar");
    let docker_archive = dir.path().join("v1-docker.tar");
    json(&[
        "export",
        &oci(&layout, ":v1"),
        &format!("oci-archive:{}", oci_archive.display()),
    ]);
    json(&[
        "export",
        &oci(&layout, ":v1"),
        &format!("docker-archive:{}:demo/hello:1", docker_archive.display()),
    ]);
    let ours = json(&["inspect", "--config", &oci(&layout, ":v1")]);

    if let Some(tar) = ocikit_testkit::Tool::require("tar") {
        // GNU tar reads every header and every entry's data to the end without a warning.
        for (archive, wanted) in [
            (&oci_archive, "index.json"),
            (&docker_archive, "manifest.json"),
        ] {
            let listed = tar.ok(&["-tvf", archive.to_str().unwrap()]);
            assert!(
                listed.lines().any(|l| l.ends_with(wanted)),
                "{wanted} missing:\n{listed}"
            );
            assert!(
                listed
                    .lines()
                    .all(|l| l.starts_with('-') || l.starts_with('d')),
                "only files and directories:\n{listed}"
            );
            let out = tar.output(&["-xOf", archive.to_str().unwrap()]);
            assert!(out.status.success() && out.stderr.is_empty(), "{out:?}");
        }
    }

    let Some(skopeo) = ocikit_testkit::tool::skopeo() else {
        return;
    };
    // oci-archive: the same manifest, byte for byte.
    let from_oci = dir.path().join("from-oci");
    skopeo.ok(&[
        "copy",
        &format!("oci-archive:{}", oci_archive.display()),
        &format!("oci:{}:copied", from_oci.display()),
    ]);
    assert_eq!(
        json(&["inspect", &oci(&from_oci, ":copied")])["digest"],
        digest.as_str()
    );
    // docker-archive: found by its repo tag; the layers are the same (the diffIDs).
    let from_docker = dir.path().join("from-docker");
    skopeo.ok(&[
        "copy",
        &format!("docker-archive:{}:demo/hello:1", docker_archive.display()),
        &format!("oci:{}:copied", from_docker.display()),
    ]);
    let theirs = json(&["inspect", "--config", &oci(&from_docker, ":copied")]);
    assert_eq!(ours["rootfs"], theirs["rootfs"], "{theirs}");
    assert_eq!(json(&["fsck", &oci(&from_docker, "")])["clean"], true);
}
