//! `ocikit copy --format oci|v2s2` against skopeo and Distribution 2.8: the Docker schema 2
//! image ocikit writes is what `skopeo copy --format v2s2` writes, skopeo reads and copies
//! it on, and what v2s2 cannot describe is refused with nothing written.

use serde_json::Value;

use crate::{fails, oci, ok};

const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// `skopeo inspect --raw` of a registry image, parsed.
fn raw(image: &str) -> Value {
    let text = crate::skopeo().ok(&["inspect", "--raw", "--tls-verify=false", image]);
    serde_json::from_str(&text).unwrap()
}

/// The media types of a manifest: its own, its config's, its layers'.
fn types(manifest: &Value) -> (Value, Value, Vec<Value>) {
    (
        manifest["mediaType"].clone(),
        manifest["config"]["mediaType"].clone(),
        manifest["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["mediaType"].clone())
            .collect(),
    )
}

/// The config and layer digests of a manifest.
fn blobs(manifest: &Value) -> Vec<Value> {
    std::iter::once(&manifest["config"])
        .chain(manifest["layers"].as_array().unwrap())
        .map(|d| d["digest"].clone())
        .collect()
}

#[test]
fn a_v2s2_copy_is_what_skopeo_writes_and_skopeo_copies_it_on() {
    if ocikit_testkit::tool::skopeo().is_none() {
        return;
    }
    let Some(registry) = ocikit_testkit::distribution::Distribution::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let layout = d.join("images");
    crate::image::build(
        &layout,
        "v1",
        &["--annotation", "org.example.note=oci only"],
    );
    let src = oci(&layout, ":v1");

    // ocikit's and skopeo's conversions, side by side in Distribution 2.8.
    let ours = registry.image("ours:v1");
    let theirs = registry.image("theirs:v1");
    // The annotation has no place in v2s2: refused unless dropped on purpose (skopeo drops
    // it silently), and the refusal pushes nothing.
    let err = fails(&[
        "copy",
        "--format",
        "v2s2",
        "--dest-tls-verify=false",
        &src,
        &ours,
    ]);
    assert!(
        err.contains("annotations (org.example.note) would be lost"),
        "{err}"
    );
    let pushed = crate::skopeo().output(&["inspect", "--raw", "--tls-verify=false", &ours]);
    assert!(!pushed.status.success(), "a refused copy pushed the image");
    ok(&[
        "copy",
        "--format",
        "v2s2",
        "--drop-annotations",
        "--dest-tls-verify=false",
        &src,
        &ours,
    ]);
    crate::skopeo().ok(&[
        "copy",
        "--format",
        "v2s2",
        "--dest-tls-verify=false",
        &src,
        &theirs,
    ]);
    let our_manifest = raw(&ours);
    let their_manifest = raw(&theirs);
    assert_eq!(
        types(&our_manifest),
        (
            Value::from(DOCKER_MANIFEST),
            Value::from(DOCKER_CONFIG),
            vec![Value::from(DOCKER_LAYER_GZIP)]
        ),
        "{our_manifest}"
    );
    // The same document (key order aside): same config, same layers, no annotations.
    assert_eq!(our_manifest, their_manifest);
    let source_manifest: Value =
        serde_json::from_str(&crate::skopeo().ok(&["inspect", "--raw", &src])).unwrap();
    assert_eq!(blobs(&our_manifest), blobs(&source_manifest));

    // skopeo copies ocikit's v2s2 image on, into a docker-archive, and reads it back.
    let archive = d.join("ours.tar");
    let archive_ref = format!("docker-archive:{}:ours:v1", archive.display());
    crate::skopeo().ok(&["copy", "--src-tls-verify=false", &ours, &archive_ref]);
    let archived: Value =
        serde_json::from_str(&crate::skopeo().ok(&["inspect", "--raw", &archive_ref])).unwrap();
    // The config travels byte for byte (the archive's layers are stored uncompressed).
    assert_eq!(
        archived["config"]["digest"],
        our_manifest["config"]["digest"]
    );
    assert_eq!(
        archived["layers"].as_array().unwrap().len(),
        1,
        "{archived}"
    );

    // Back to OCI from the registry: OCI media types, the same blobs.
    let back = d.join("back");
    ok(&[
        "copy",
        "--format",
        "oci",
        "--src-tls-verify=false",
        &ours,
        &oci(&back, ":v1"),
    ]);
    let back_manifest: Value =
        serde_json::from_str(&crate::skopeo().ok(&["inspect", "--raw", &oci(&back, ":v1")]))
            .unwrap();
    assert_eq!(
        types(&back_manifest).0,
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(
        types(&back_manifest).1,
        "application/vnd.oci.image.config.v1+json"
    );
    assert_eq!(blobs(&back_manifest), blobs(&source_manifest));
}

#[test]
fn an_index_becomes_the_manifest_list_skopeo_makes() {
    if ocikit_testkit::tool::skopeo().is_none() {
        return;
    }
    let Some(registry) = ocikit_testkit::distribution::Distribution::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("images");
    crate::image::build(&layout, "amd64", &["--platform", "linux/amd64"]);
    crate::image::build(&layout, "arm64", &["--platform", "linux/arm64/v8"]);
    ok(&[
        "index",
        "create",
        "--tag",
        &oci(&layout, ":multi"),
        &oci(&layout, ":amd64"),
        &oci(&layout, ":arm64"),
    ]);
    let src = oci(&layout, ":multi");
    let ours = registry.image("ours:multi");
    let theirs = registry.image("theirs:multi");
    ok(&[
        "copy",
        "--format",
        "v2s2",
        "--dest-tls-verify=false",
        &src,
        &ours,
    ]);
    crate::skopeo().ok(&[
        "copy",
        "--multi-arch",
        "all",
        "--format",
        "v2s2",
        "--dest-tls-verify=false",
        &src,
        &theirs,
    ]);
    let our_list = raw(&ours);
    let their_list = raw(&theirs);
    assert_eq!(
        our_list["mediaType"],
        "application/vnd.docker.distribution.manifest.list.v2+json"
    );
    // The same entries (platforms, media types) naming the same images; their digests
    // differ only as the manifests' key orders do (ours is canonical JSON, sorted).
    let (our_entries, their_entries) = (
        our_list["manifests"].as_array().unwrap(),
        their_list["manifests"].as_array().unwrap(),
    );
    assert_eq!(our_entries.len(), 2);
    assert_eq!(our_entries.len(), their_entries.len());
    for (our_entry, their_entry) in our_entries.iter().zip(their_entries) {
        let strip = |entry: &Value| {
            let mut entry = entry.clone();
            let object = entry.as_object_mut().unwrap();
            object.remove("digest");
            object.remove("size");
            entry
        };
        assert_eq!(strip(our_entry), strip(their_entry));
        assert_eq!(our_entry["mediaType"], DOCKER_MANIFEST);
        let child = |name: &str, entry: &Value| {
            raw(&registry.image(&format!("{name}@{}", entry["digest"].as_str().unwrap())))
        };
        let ours = child("ours", our_entry);
        assert_eq!(ours, child("theirs", their_entry));
        assert_eq!(types(&ours).1, DOCKER_CONFIG);
    }
    assert_eq!(
        our_entries[1]["platform"],
        serde_json::json!({"architecture": "arm64", "os": "linux", "variant": "v8"})
    );
}

#[test]
fn v2s2_refuses_zstd_layers_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let layout = d.join("images");
    crate::image::build(&layout, "v1", &[]);
    let dst = d.join("dst");
    let err = fails(&[
        "copy",
        "--format",
        "v2s2",
        "--compression",
        "zstd",
        &oci(&layout, ":v1"),
        &oci(&dst, ":v1"),
    ]);
    assert!(
        err.contains("v2s2 manifests cannot describe zstd layers"),
        "{err}"
    );
    assert!(!dst.exists());
    // skopeo's v2s1 is not offered: a usage error.
    let out = crate::ocikit(&[
        "copy",
        "--format",
        "v2s1",
        &oci(&layout, ":v1"),
        &oci(&dst, ":v1"),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("v2s1"));
    assert!(!dst.exists());
}
