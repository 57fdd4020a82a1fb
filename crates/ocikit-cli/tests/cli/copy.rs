//! `copy`, `import`, `export` between layouts and archives.

use std::path::Path;

use crate::{example, example_arg, fails, json, oci, ok};

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

fn digest_of(layout: &Path, tag: &str) -> String {
    json(&["inspect", &oci(layout, &format!(":{tag}"))])["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn layout_to_layout_then_again_skips_everything() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let digest = built(&a, "v1");
    let first = json(&["copy", &oci(&a, ":v1"), &oci(&b, ":copied")]);
    assert_eq!(first["blobsCopied"], 3, "{first}");
    assert_eq!(digest_of(&b, "copied"), digest);
    let again = json(&["copy", &oci(&a, ":v1"), &oci(&b, ":copied")]);
    assert_eq!(again["blobsSkipped"], 3, "{again}");
    assert_eq!(again["blobsCopied"], 0, "{again}");
    assert_eq!(json(&["fsck", &oci(&b, "")])["clean"], true);

    // Every tag when no tag is named.
    ok(&["tag", "-q", &oci(&a, ":v1"), "latest"]);
    let mirror = dir.path().join("mirror");
    json(&["copy", &oci(&a, ""), &oci(&mirror, "")]);
    let tags = json(&["ls", &oci(&mirror, "")])["tags"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(tags, 2);
}

#[test]
fn oci_archive_round_trip_keeps_digests_and_skopeo_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("images");
    let digest = built(&layout, "v1");
    let archive = dir.path().join("v1.tar");
    let archive_loc = format!("oci-archive:{}", archive.display());
    json(&["export", &oci(&layout, ":v1"), &archive_loc]);
    assert!(archive.is_file());
    let back = dir.path().join("back");
    json(&["import", &archive_loc, &oci(&back, "")]);
    assert_eq!(digest_of(&back, "v1"), digest);

    // Renamed on the way out.
    let renamed = dir.path().join("renamed.tar");
    json(&[
        "copy",
        &oci(&layout, ":v1"),
        &format!("oci-archive:{}:other", renamed.display()),
    ]);
    let back2 = dir.path().join("back2");
    json(&[
        "copy",
        &format!("oci-archive:{}:other", renamed.display()),
        &oci(&back2, ""),
    ]);
    assert_eq!(digest_of(&back2, "other"), digest);

    if let Some(skopeo) = ocikit_testkit::tool::skopeo() {
        let raw = skopeo.ok(&["inspect", "--raw", &archive_loc]);
        assert_eq!(
            ocikit::digest::Digest::sha256(raw.as_bytes()).to_string(),
            digest
        );
    }
}

#[test]
fn docker_archive_round_trip_keeps_the_layers() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("images");
    built(&layout, "v1");
    let saved = dir.path().join("saved.tar");
    json(&[
        "export",
        &oci(&layout, ":v1"),
        &format!("docker-archive:{}:demo/hello:1", saved.display()),
    ]);
    let back = dir.path().join("back");
    json(&[
        "import",
        &format!("docker-archive:{}:demo/hello:1", saved.display()),
        &oci(&back, ":hello"),
    ]);
    let ours = json(&["inspect", "--config", &oci(&layout, ":v1")]);
    let theirs = json(&["inspect", "--config", &oci(&back, ":hello")]);
    assert_eq!(
        ours["rootfs"], theirs["rootfs"],
        "diffIDs survive the round trip"
    );
    let rootfs = dir.path().join("rootfs");
    ok(&[
        "unpack",
        "-q",
        &oci(&back, ":hello"),
        rootfs.to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read(rootfs.join("etc/motd")).unwrap(),
        std::fs::read(example().join("etc/motd")).unwrap()
    );
}

#[test]
fn bad_copies_are_refused_and_leave_no_destination() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("images");
    built(&layout, "v1");
    let dest = dir.path().join("dest");
    let missing = format!("oci-archive:{}", dir.path().join("missing.tar").display());
    let err = fails(&["copy", &missing, &oci(&dest, "")]);
    assert!(err.contains("missing.tar"), "{err}");
    let err = fails(&["copy", &oci(&layout, ":nope"), &oci(&dest, ":x")]);
    assert!(err.contains("nope"), "{err}");
    let err = fails(&["copy", &oci(&layout, ":v1"), "docker://example.com/x:1"]);
    assert!(err.contains("registry"), "{err}");
    let garbage = dir.path().join("garbage.tar");
    std::fs::write(
        &garbage,
        b"this is not a tar archive at all, not even close",
    )
    .unwrap();
    let err = fails(&[
        "import",
        &format!("docker-archive:{}", garbage.display()),
        &oci(&dest, ""),
    ]);
    assert!(err.contains("garbage.tar"), "{err}");
    let err = fails(&["export", &oci(&layout, ":v1"), &oci(&dest, "")]);
    assert!(err.contains("archive"), "{err}");
    assert!(!dest.exists(), "a refused copy created its destination");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".ocikit-"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "scratch directories left behind: {leftovers:?}"
    );
}

/// The layer media types and digests of an image, and its config's diffIDs.
fn layers_of(layout: &Path, tag: &str) -> (Vec<String>, Vec<String>, serde_json::Value) {
    let manifest = json(&["inspect", "--raw", &oci(layout, &format!(":{tag}"))]);
    let config = json(&["inspect", "--config", &oci(layout, &format!(":{tag}"))]);
    let layers = manifest["layers"].as_array().unwrap();
    (
        layers
            .iter()
            .map(|l| l["mediaType"].as_str().unwrap().to_string())
            .collect(),
        layers
            .iter()
            .map(|l| l["digest"].as_str().unwrap().to_string())
            .collect(),
        config["rootfs"].clone(),
    )
}

#[test]
fn copy_with_compression_recompresses_and_real_tools_read_the_result() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let source = built(&a, "v1");
    let before = crate::contents(&a);
    let copied = json(&[
        "copy",
        "--compression",
        "zstd",
        &oci(&a, ":v1"),
        &oci(&b, ":zstd"),
    ]);
    assert_eq!(copied["layersRecompressed"], 1, "{copied}");
    assert_eq!(
        crate::contents(&a),
        before,
        "the source layout was written to"
    );
    let (types, digests, rootfs) = layers_of(&b, "zstd");
    let (_, source_digests, source_rootfs) = layers_of(&a, "v1");
    assert_eq!(types, ["application/vnd.oci.image.layer.v1.tar+zstd"]);
    assert_ne!(digests, source_digests);
    assert_eq!(
        rootfs, source_rootfs,
        "diffIDs are the uncompressed content's"
    );
    assert_ne!(digest_of(&b, "zstd"), source);
    assert_eq!(json(&["fsck", &oci(&b, "")])["clean"], true);

    // Same files out of both.
    let (ours, theirs) = (dir.path().join("ours"), dir.path().join("theirs"));
    ok(&["unpack", "-q", &oci(&a, ":v1"), ours.to_str().unwrap()]);
    ok(&["unpack", "-q", &oci(&b, ":zstd"), theirs.to_str().unwrap()]);
    let strip = |root: &Path| -> Vec<_> {
        crate::contents(root)
            .into_iter()
            .map(|(p, c)| (p.strip_prefix(root).unwrap().to_path_buf(), c))
            .collect()
    };
    assert_eq!(strip(&ours), strip(&theirs));

    // skopeo reads the zstd layer (recompressing it to gzip), and umoci unpacks skopeo's
    // copy, checking each layer against the diffIDs our config kept.
    if let (Some(skopeo), Some(umoci)) = (
        ocikit_testkit::tool::skopeo(),
        ocikit_testkit::tool::umoci(),
    ) {
        let through = dir.path().join("through-skopeo");
        skopeo.ok(&[
            "copy",
            "--dest-compress",
            "--dest-compress-format",
            "gzip",
            &format!("oci:{}:zstd", b.display()),
            &format!("oci:{}:gz", through.display()),
        ]);
        let bundle = dir.path().join("bundle");
        umoci.ok(&[
            "unpack",
            "--rootless",
            "--image",
            &format!("{}:gz", through.display()),
            bundle.to_str().unwrap(),
        ]);
        assert_eq!(strip(&ours), strip(&bundle.join("rootfs")));
    }

    // Back to gzip at level 1, through an oci-archive.
    let archive = format!("oci-archive:{}:gz", dir.path().join("gz.tar").display());
    json(&[
        "copy",
        "--compression",
        "gzip",
        "--compression-level",
        "1",
        &oci(&b, ":zstd"),
        &archive,
    ]);
    let c = dir.path().join("c");
    json(&["copy", &archive, &oci(&c, "")]);
    let (types, _, rootfs) = layers_of(&c, "gz");
    assert_eq!(types, ["application/vnd.oci.image.layer.v1.tar+gzip"]);
    assert_eq!(rootfs, source_rootfs);
}

#[test]
fn copy_with_compression_refuses_bad_layers_and_bad_flags() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    built(&a, "v1");
    let usage = |args: &[&str], needle: &str| {
        let out = crate::ocikit(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(needle), "{err}");
    };
    usage(
        &[
            "copy",
            "--compression-level",
            "3",
            &oci(&a, ":v1"),
            &oci(&b, ":x"),
        ],
        "--compression",
    );
    usage(
        &[
            "copy",
            "--compression",
            "lz4",
            &oci(&a, ":v1"),
            &oci(&b, ":x"),
        ],
        "lz4",
    );

    // A corrupt layer: named, and nothing tagged at the destination.
    let (_, digests, _) = layers_of(&a, "v1");
    let digest = ocikit::digest::Digest::parse(&digests[0]).unwrap();
    let path = a.join(digest.blob_path());
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    std::fs::write(&path, &bytes).unwrap();
    let err = fails(&[
        "copy",
        "--compression",
        "zstd",
        &oci(&a, ":v1"),
        &oci(&b, ":x"),
    ]);
    assert!(err.contains(digest.as_str()), "{err}");
    if b.exists() {
        assert!(
            fails(&["inspect", &oci(&b, ":x")]).contains('x'),
            "a failed copy tagged its destination"
        );
    }
}

#[test]
fn copy_with_compression_pushes_to_and_pulls_from_a_registry() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    built(&a, "v1");
    let (_, _, source_rootfs) = layers_of(&a, "v1");
    let root = dir.path().join("registry");
    let server = crate::registry::Serve::start(&root, &[]);
    let remote = format!("docker://{}/app:zstd", server.addr);
    let pushed = json(&[
        "copy",
        "--dest-tls-verify=false",
        "--compression",
        "zstd",
        &oci(&a, ":v1"),
        &remote,
    ]);
    assert_eq!(pushed["layersRecompressed"], 1, "{pushed}");
    // Pulled as it is: zstd, the same diffIDs.
    let b = dir.path().join("b");
    json(&["pull", "--src-tls-verify=false", &remote, &oci(&b, ":zstd")]);
    let (types, _, rootfs) = layers_of(&b, "zstd");
    assert_eq!(types, ["application/vnd.oci.image.layer.v1.tar+zstd"]);
    assert_eq!(rootfs, source_rootfs);
    // Pulled and recompressed to gzip on the way into a layout.
    let c = dir.path().join("c");
    let pulled = json(&[
        "pull",
        "--src-tls-verify=false",
        "--compression",
        "gzip",
        &remote,
        &oci(&c, ":gz"),
    ]);
    assert_eq!(pulled["layersRecompressed"], 1, "{pulled}");
    let (types, _, rootfs) = layers_of(&c, "gz");
    assert_eq!(types, ["application/vnd.oci.image.layer.v1.tar+gzip"]);
    assert_eq!(rootfs, source_rootfs);
    assert_eq!(json(&["fsck", &oci(&c, "")])["clean"], true);
    let (exit, _) = server.stop();
    assert!(exit.success(), "{exit}");
}
