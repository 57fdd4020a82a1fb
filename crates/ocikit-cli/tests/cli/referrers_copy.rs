//! `--referrers` on `copy`, `push`, `pull`, `export` and `import` (as `oras cp -r`): an
//! image with an SBOM attached and a signature attached to the SBOM goes to `ocikit serve`
//! (the referrers API), to Distribution 2.8 (the referrers tag schema), back into layouts and
//! through an oci-archive, and `ocikit referrers` finds both at each destination; without
//! the flag they stay behind; a docker-archive and a corrupt referrer are refused with
//! nothing written.

use std::path::Path;

use ocikit::digest::Digest;
use ocikit_testkit::distribution::Distribution;

use crate::registry::Serve;
use crate::{fails, json, oci, ok};

/// The image, its SBOM and the SBOM's signature (digests).
struct Signed {
    image: String,
    sbom: String,
    signature: String,
}

/// Builds `v1` in the layout at `layout`, attaches an SBOM to it and a signature to the
/// SBOM.
fn signed(layout: &Path) -> Signed {
    let image = crate::image::build(layout, "v1", &[]);
    let dir = layout.parent().unwrap();
    let sbom_file = dir.join("sbom.json");
    std::fs::write(&sbom_file, br#"{"packages":["hello"]}"#).unwrap();
    let attach = |target: &str, artifact_type: &str, file: &Path| {
        json(&[
            "attach",
            &oci(layout, target),
            "--artifact-type",
            artifact_type,
            file.to_str().unwrap(),
        ])["artifact"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let sbom = attach(":v1", "application/vnd.example.sbom+json", &sbom_file);
    let signature_file = dir.join("sbom.sig");
    std::fs::write(&signature_file, b"signed sbom").unwrap();
    let signature = attach(
        &format!("@{sbom}"),
        "application/vnd.example.signature",
        &signature_file,
    );
    Signed {
        image,
        sbom,
        signature,
    }
}

/// Every `digest` in what `ocikit referrers` prints for `subject` (one level or a tree).
fn referrers_of(subject: &str, registry: bool) -> Vec<String> {
    let mut args = vec!["referrers"];
    if registry {
        args.push("--tls-verify=false");
    }
    args.push(subject);
    let listed = json(&args);
    let mut found = Vec::new();
    collect_digests(&listed["referrers"], &mut found);
    found
}

fn collect_digests(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_digests(v, out)),
        serde_json::Value::Object(map) => {
            if let Some(digest) = map.get("digest").and_then(|d| d.as_str()) {
                out.push(digest.to_owned());
            }
            map.values().for_each(|v| collect_digests(v, out));
        }
        _ => {}
    }
}

/// At `base` (`oci:PATH` or `docker://HOST/NAME`), the image's referrers include the SBOM
/// and the SBOM's are the signature.
fn assert_discoverable(base: &str, signed: &Signed) {
    let registry = base.starts_with("docker://");
    let of_image = referrers_of(&format!("{base}@{}", signed.image), registry);
    assert!(of_image.contains(&signed.sbom), "{base}: {of_image:?}");
    let of_sbom = referrers_of(&format!("{base}@{}", signed.sbom), registry);
    assert_eq!(of_sbom, vec![signed.signature.clone()], "{base}");
}

fn layout_base(path: &Path) -> String {
    format!("oci:{}", path.display())
}

/// The human summary's referrer clause, for a registry push.
fn summary(args: &[&str]) -> String {
    ok(args).trim().to_owned()
}

#[test]
fn copy_push_and_pull_take_the_referrers_along_with_the_api_and_the_tag_schema() {
    let Some(distribution) = Distribution::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src").join("images");
    let signed = signed(&src);
    let ours = Serve::start(&dir.path().join("registry"), &["--log", "warn"]);

    for addr in [ours.addr.as_str(), distribution.addr()] {
        let app = format!("docker://{addr}/app");
        // push: layout to registry.
        let pushed = json(&[
            "push",
            "--referrers",
            "--dest-tls-verify=false",
            &oci(&src, ":v1"),
            &format!("{app}:v1"),
        ]);
        assert_eq!(pushed["referrersCopied"], 2, "{addr}: {pushed}");
        assert_discoverable(&app, &signed);
        // Again: both present, nothing transferred for them.
        let again = summary(&[
            "push",
            "--referrers",
            "--dest-tls-verify=false",
            &oci(&src, ":v1"),
            &format!("{app}:v1"),
        ]);
        assert!(
            again.ends_with("; 2 referrers (2 already present)"),
            "{addr}: {again}"
        );
        // copy: within the registry (blobs mounted) and to the other registry.
        let within = json(&[
            "copy",
            "--referrers",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            &format!("{app}:v1"),
            &format!("docker://{addr}/within:v1"),
        ]);
        assert_eq!(within["referrersCopied"], 2, "{addr}: {within}");
        assert_discoverable(&format!("docker://{addr}/within"), &signed);
        // pull: back into a new layout.
        let back = dir
            .path()
            .join(format!("back-{}", addr.replace([':', '.'], "-")));
        let pulled = json(&[
            "pull",
            "--referrers",
            "--src-tls-verify=false",
            &format!("docker://{addr}/within:v1"),
            &oci(&back, ":v1"),
        ]);
        assert_eq!(pulled["referrersCopied"], 2, "{addr}: {pulled}");
        assert_discoverable(&layout_base(&back), &signed);
        ok(&["fsck", &oci(&back, "")]);
    }
    // From ocikit serve's API to Distribution's tag schema, registry to registry.
    let mirrored = json(&[
        "copy",
        "--referrers",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        &format!("docker://{}/app:v1", ours.addr),
        &distribution.image("mirror/app:v1"),
    ]);
    assert_eq!(mirrored["referrersCopied"], 2, "{mirrored}");
    assert_discoverable(&distribution.image("mirror/app"), &signed);
    // The subject's referrers tag schema index holds them there.
    let tags = ocikit_testkit::http::request(
        distribution.addr(),
        "GET",
        "/v2/mirror/app/tags/list",
        &[],
        b"",
    );
    let fallback = signed.image.replace(':', "-");
    assert!(tags.text().contains(&fallback), "{}", tags.text());
}

#[test]
fn without_the_flag_the_referrers_stay_behind() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src").join("images");
    let signed = signed(&src);
    let ours = Serve::start(&dir.path().join("registry"), &["--log", "warn"]);
    let app = format!("docker://{}/app", ours.addr);

    let pushed = json(&[
        "push",
        "--dest-tls-verify=false",
        &oci(&src, ":v1"),
        &format!("{app}:v1"),
    ]);
    // The copy report says nothing of referrers (as before the flag existed).
    assert!(pushed.get("referrersCopied").is_none(), "{pushed}");
    assert!(referrers_of(&format!("{app}@{}", signed.image), true).is_empty());
    let copied = dir.path().join("copied");
    ok(&["copy", &oci(&src, ":v1"), &oci(&copied, ":v1")]);
    assert!(referrers_of(&format!("oci:{}@{}", copied.display(), signed.image), false).is_empty());
    let archive = dir.path().join("bare.tar");
    ok(&[
        "export",
        &oci(&src, ":v1"),
        &format!("oci-archive:{}:v1", archive.display()),
    ]);
    let imported = dir.path().join("imported");
    ok(&[
        "import",
        &format!("oci-archive:{}", archive.display()),
        &oci(&imported, ""),
    ]);
    assert!(
        referrers_of(
            &format!("oci:{}@{}", imported.display(), signed.image),
            false
        )
        .is_empty()
    );
}

#[test]
fn export_and_import_take_them_through_an_oci_archive_not_a_docker_archive() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src").join("images");
    let signed = signed(&src);
    let archive = dir.path().join("signed.tar");
    let exported = json(&[
        "export",
        "--referrers",
        &oci(&src, ":v1"),
        &format!("oci-archive:{}:v1", archive.display()),
    ]);
    assert_eq!(exported["referrersCopied"], 2, "{exported}");
    let imported = dir.path().join("imported");
    let report = json(&[
        "import",
        "--referrers",
        &format!("oci-archive:{}:v1", archive.display()),
        &oci(&imported, ""),
    ]);
    assert_eq!(report["referrersCopied"], 2, "{report}");
    assert_discoverable(&layout_base(&imported), &signed);
    ok(&["fsck", &oci(&imported, "")]);

    // A docker-archive cannot hold them: refused, no file.
    let docker = dir.path().join("docker.tar");
    let err = fails(&[
        "export",
        "--referrers",
        &oci(&src, ":v1"),
        &format!("docker-archive:{}:app:v1", docker.display()),
    ]);
    assert!(err.contains("cannot hold referrers"), "{err}");
    assert!(!docker.exists());
    // Nor with recompression, which gives the image a digest they do not name.
    let recompressed = dir.path().join("recompressed");
    let err = fails(&[
        "copy",
        "--referrers",
        "--compression",
        "zstd",
        &oci(&src, ":v1"),
        &oci(&recompressed, ":v1"),
    ]);
    assert!(
        err.contains("referrers name their image by digest"),
        "{err}"
    );
    assert!(!recompressed.exists());
}

#[test]
fn a_corrupt_referrer_fails_the_copy_and_tags_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src").join("images");
    let signed = signed(&src);
    // The signature's file blob, same size, other bytes.
    let manifest = json(&[
        "inspect",
        "--raw",
        &format!("oci:{}@{}", src.display(), signed.signature),
    ]);
    let layer: Digest = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let path = src.join(layer.blob_path());
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[0] ^= 0x20;
    std::fs::write(&path, &bytes).unwrap();
    let ours = Serve::start(&dir.path().join("registry"), &["--log", "warn"]);

    let err = fails(&[
        "push",
        "--referrers",
        "--dest-tls-verify=false",
        &oci(&src, ":v1"),
        &format!("docker://{}/app:v1", ours.addr),
    ]);
    assert!(
        err.contains(&format!("cannot copy the referrer {}", signed.signature)),
        "{err}"
    );
    let tags = ocikit_testkit::http::request(&ours.addr, "GET", "/v2/app/tags/list", &[], b"");
    assert!(
        !tags.text().contains("v1"),
        "a tag was pushed: {}",
        tags.text()
    );
    let new = dir.path().join("new");
    fails(&["copy", "--referrers", &oci(&src, ":v1"), &oci(&new, ":v1")]);
    assert!(!new.exists(), "a failed copy left a layout");
}
