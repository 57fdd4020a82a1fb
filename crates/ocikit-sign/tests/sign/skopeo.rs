//! The same `policy.json` decided by ocikit and by the real skopeo (containers/image): which
//! scope applies to an `oci:` image, and which files are refused; and signatures made and
//! checked by both sides. Debian 12's skopeo 1.9.3 is built with sigstore disabled
//! ("Debian-local change: sigstore disabled": it neither signs with
//! `--sign-by-sigstore-private-key` nor evaluates `sigstoreSigned`), so the signature test
//! runs `skopeo-sigstore` (Debian 13's skopeo 1.18, built with sigstore); the independent
//! peer (`peer.rs`) cross-checks the cryptography as well.

use std::path::Path;

use ocikit_digest::Digest;
use ocikit_sign::policy::ImageIdentity;
use ocikit_sign::{Error, Policy};
use ocikit_testkit::Tool;

/// A one-layer OCI layout written by hand, tagged `v1`; returns the manifest digest.
fn write_layout(dir: &Path) -> Digest {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| {
        let digest = Digest::sha256(bytes);
        std::fs::write(blobs.join(digest.encoded()), bytes).unwrap();
        (digest, bytes.len())
    };
    // An empty tar archive: two zero blocks.
    let (layer, layer_size) = put(&[0u8; 1024]);
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{layer}"]}}}}"#
    );
    let (config_digest, config_size) = put(config.as_bytes());
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{config_size}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer}","size":{layer_size}}}]}}"#
    );
    let (manifest_digest, manifest_size) = put(manifest.as_bytes());
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    std::fs::write(
        dir.join("index.json"),
        format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{manifest_digest}","size":{manifest_size},"annotations":{{"org.opencontainers.image.ref.name":"v1"}}}}]}}"#
        ),
    )
    .unwrap();
    manifest_digest
}

/// skopeo's verdict: `Ok(true)` copied, `Ok(false)` rejected by the policy, `Err` the policy
/// file itself was refused.
fn skopeo_decides(skopeo: &Tool, policy: &Path, source: &str, work: &Path) -> Result<bool, String> {
    let destination = work.join("copied");
    let _ = std::fs::remove_dir_all(&destination);
    let output = skopeo.output(&[
        "--policy",
        policy.to_str().unwrap(),
        "copy",
        "--quiet",
        source,
        &format!("dir:{}", destination.display()),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if output.status.success() {
        Ok(true)
    } else if stderr.contains("rejected by policy") {
        Ok(false)
    } else if stderr.contains("invalid policy") || stderr.contains("trust policy") {
        Err(stderr)
    } else {
        panic!("skopeo failed for another reason:\n{stderr}");
    }
}

#[test]
fn oci_scopes_select_what_skopeo_selects() {
    let Some(skopeo) = Tool::require("skopeo") else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(work.path()).unwrap();
    let layout = root.join("images/app");
    let digest = write_layout(&layout);
    let dir = layout.display().to_string();
    let parent = root.join("images").display().to_string();
    let policy_path = root.join("policy.json");
    let accept = r#"[{"type":"insecureAcceptAnything"}]"#;
    let scopes = [
        String::new(),
        dir.clone(),
        format!("{dir}:v1"),
        format!("{dir}:v2"),
        parent.clone(),
        format!("{dir}x"),
        format!("{parent}/ap"),
        "/nonexistent/place".to_string(),
    ];
    let image = ImageIdentity::Oci {
        dir: layout.clone(),
        image: Some("v1".into()),
    };
    let mut verdicts = Vec::new();
    for scope in &scopes {
        let text = format!(
            r#"{{"default":[{{"type":"reject"}}],"transports":{{"oci":{{"{scope}":{accept}}}}}}}"#
        );
        std::fs::write(&policy_path, &text).unwrap();
        let theirs = skopeo_decides(&skopeo, &policy_path, &format!("oci:{dir}:v1"), &root)
            .unwrap_or_else(|e| panic!("skopeo refused {text}: {e}"));
        let ours = Policy::load(&policy_path)
            .unwrap()
            .evaluate(&image, &digest, &[])
            .is_accepted();
        assert_eq!(ours, theirs, "scope {scope:?}");
        verdicts.push(theirs);
    }
    // Both sides were exercised: the transport default, the directory and its parent accept.
    assert_eq!(
        verdicts,
        [true, true, false, false, true, false, false, false]
    );

    // Every requirement must hold; a docker scope does not apply to an oci image.
    for (text, expected) in [
        (
            r#"{"default":[{"type":"insecureAcceptAnything"},{"type":"reject"}]}"#.to_string(),
            false,
        ),
        (
            format!(
                r#"{{"default":[{{"type":"reject"}}],"transports":{{"docker":{{"":{accept}}}}}}}"#
            ),
            false,
        ),
        (format!(r#"{{"default":{accept}}}"#), true),
    ] {
        std::fs::write(&policy_path, &text).unwrap();
        let theirs = skopeo_decides(&skopeo, &policy_path, &format!("oci:{dir}:v1"), &root)
            .unwrap_or_else(|e| panic!("skopeo refused {text}: {e}"));
        let ours = Policy::load(&policy_path)
            .unwrap()
            .evaluate(&image, &digest, &[])
            .is_accepted();
        assert_eq!((ours, theirs), (expected, expected), "{text}");
    }
}

#[test]
fn policy_files_skopeo_refuses_are_refused() {
    let Some(skopeo) = Tool::require("skopeo") else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(work.path()).unwrap();
    let layout = root.join("app");
    write_layout(&layout);
    let source = format!("oci:{}:v1", layout.display());
    let policy_path = root.join("policy.json");
    let refused = [
        r#"{"default":[{"type":"acceptIfSunny"}]}"#,
        r#"{"default":[]}"#,
        r#"{"transports":{}}"#,
        r#"{"default":[{"type":"insecureAcceptAnything"}],"extra":true}"#,
        r#"{"default":[{"type":"reject","why":"no"}]}"#,
        r#"{"default":[{"type":"reject"}],"default":[{"type":"insecureAcceptAnything"}]}"#,
        r#"{"default":[{"type":"reject"}],"transports":{"oci":{"relative/dir":[{"type":"reject"}]}}}"#,
        r#"{"default":[{"type":"reject"}],"transports":{"oci":{"/":[{"type":"reject"}]}}}"#,
        r#"{"default":[{"type":"reject"}],"transports":{"docker":{"quay.io":[]}}}"#,
        r#"{"default":[{"type":"sigstoreSigned"}]}"#,
        r#"{"default":[{"type":"sigstoreSigned","keyData":"AAAA","signedIdentity":{"type":"matchAnything"}}]}"#,
        r#"{"default":[{"type":"sigstoreSigned","keyData":"AAAA","signedIdentity":{"type":"exactReference","dockerReference":"quay.io/a/b"}}]}"#,
    ];
    for text in refused {
        std::fs::write(&policy_path, text).unwrap();
        assert!(
            skopeo_decides(&skopeo, &policy_path, &source, &root).is_err(),
            "skopeo accepted {text}"
        );
        assert!(
            matches!(Policy::load(&policy_path), Err(Error::Policy(_))),
            "ocikit accepted {text}"
        );
    }
}

/// The signature image as skopeo reads it: stored in an OCI layout under cosign's tag,
/// `skopeo copy` reads the manifest and config and copies one layer per signature, each the
/// payload byte for byte.
#[test]
fn skopeo_copies_the_signature_image() {
    let Some(skopeo) = ocikit_testkit::tool::skopeo() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(work.path()).unwrap();
    let key = ocikit_sign::PrivateKey::generate().unwrap();
    let image = ocikit_digest::Reference::parse("localhost:5000/app:v1").unwrap();
    let manifest_digest = Digest::sha256(b"the signed manifest");
    let first = ocikit_sign::sign_image(&key, &image, manifest_digest.clone()).unwrap();
    let second = ocikit_sign::sign_image(
        &ocikit_sign::PrivateKey::generate().unwrap(),
        &image,
        manifest_digest.clone(),
    )
    .unwrap();
    let base =
        ocikit_sign::image::SignatureImage::append(&[], std::slice::from_ref(&first)).unwrap();
    let sig_image = ocikit_sign::image::SignatureImage::append(
        base.manifest().layers(),
        std::slice::from_ref(&second),
    )
    .unwrap();

    let layout = root.join("sigs");
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| {
        std::fs::write(blobs.join(Digest::sha256(bytes).encoded()), bytes).unwrap();
    };
    for signature in [&first, &second] {
        put(signature.payload());
    }
    put(sig_image.config());
    put(sig_image.manifest_bytes());
    let tag = ocikit_sign::signature_tag(&manifest_digest);
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    std::fs::write(
        layout.join("index.json"),
        format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{}","digest":"{}","size":{},"annotations":{{"org.opencontainers.image.ref.name":"{tag}"}}}}]}}"#,
            ocikit_sign::image::MANIFEST_MEDIA_TYPE,
            sig_image.manifest_digest(),
            sig_image.manifest_bytes().len()
        ),
    )
    .unwrap();
    let out = root.join("copied");
    skopeo.ok(&[
        "copy",
        &format!("oci:{}:{tag}", layout.display()),
        &format!("dir:{}", out.display()),
    ]);
    for signature in [&first, &second] {
        let copied = std::fs::read(out.join(signature.payload_digest().encoded())).unwrap();
        assert_eq!(copied, signature.payload());
    }
    // skopeo kept the manifest as written: the layers and their signature annotations.
    let copied_manifest = std::fs::read(out.join("manifest.json")).unwrap();
    assert_eq!(copied_manifest, sig_image.manifest_bytes());
}

/// containers/image's blob form of a sigstore signature in a `dir:` image (`signature-N`):
/// a zero byte, the format name, a newline, then JSON with the layer's media type, payload
/// (base64) and annotations.
fn dir_signature_blob(signature: &ocikit_sign::Signature) -> Vec<u8> {
    use base64::Engine as _;
    let json = serde_json::json!({
        "mimeType": ocikit_sign::SIMPLE_SIGNING_MEDIA_TYPE,
        "payload": base64::engine::general_purpose::STANDARD.encode(signature.payload()),
        "annotations": signature.layer_annotations(),
    });
    [
        b"\0sigstore-json\n".to_vec(),
        serde_json::to_vec(&json).unwrap(),
    ]
    .concat()
}

/// The reverse of [`dir_signature_blob`].
fn signature_from_dir_blob(blob: &[u8]) -> ocikit_sign::Signature {
    use base64::Engine as _;
    let json = blob
        .strip_prefix(b"\0sigstore-json\n")
        .expect("a sigstore signature blob");
    let value: serde_json::Value = serde_json::from_slice(json).unwrap();
    let payload = base64::engine::general_purpose::STANDARD
        .decode(value["payload"].as_str().unwrap())
        .unwrap();
    let annotations: std::collections::BTreeMap<String, String> =
        serde_json::from_value(value["annotations"].clone()).unwrap();
    ocikit_sign::Signature::from_layer(value["mimeType"].as_str().unwrap(), payload, &annotations)
        .unwrap()
}

/// The issue's proof with skopeo itself: skopeo signs with a key ocikit wrote, ocikit
/// verifies; ocikit signs, skopeo's `sigstoreSigned` policy accepts it, and refuses it under
/// another key or once the image changed. Debian 12's skopeo 1.9.3 is built with sigstore
/// disabled, so this runs `skopeo-sigstore`: Debian 13's skopeo 1.18, built with sigstore,
/// which `cargo xtask install-tools` installs beside it.
#[test]
fn skopeo_signs_with_our_key_and_its_policy_accepts_our_signatures() {
    let Some(skopeo) = ocikit_testkit::tool::skopeo_sigstore() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(work.path()).unwrap();
    write_layout(&root.join("src"));
    let key = ocikit_sign::PrivateKey::generate().unwrap();
    let key_path = root.join("cosign.key");
    std::fs::write(&key_path, key.to_encrypted_pem(b"pass phrase").unwrap()).unwrap();
    let pub_path = root.join("cosign.pub");
    std::fs::write(&pub_path, key.public_key().to_pem()).unwrap();
    let pass_path = root.join("pass");
    std::fs::write(&pass_path, "pass phrase").unwrap();
    let any = root.join("any.json");
    std::fs::write(&any, r#"{"default":[{"type":"insecureAcceptAnything"}]}"#).unwrap();
    let identity = "localhost:5000/team/app:v1";

    let signed = root.join("signed");
    let output = skopeo.output(&[
        "--policy",
        any.to_str().unwrap(),
        "copy",
        "--quiet",
        "--sign-by-sigstore-private-key",
        key_path.to_str().unwrap(),
        "--sign-passphrase-file",
        pass_path.to_str().unwrap(),
        "--sign-identity",
        identity,
        &format!("oci:{}:v1", root.join("src").display()),
        &format!("dir:{}", signed.display()),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() || !stderr.contains("sigstore disabled"),
        "this skopeo is built without sigstore ({}); the key and signature peer that runs \
         instead is tests/sign/peer.py",
        stderr.trim()
    );
    assert!(output.status.success(), "skopeo failed to sign:\n{stderr}");

    // skopeo's signature, verified here.
    let manifest = std::fs::read(signed.join("manifest.json")).unwrap();
    let digest = Digest::sha256(&manifest);
    let theirs = signature_from_dir_blob(&std::fs::read(signed.join("signature-1")).unwrap());
    let expected = ocikit_sign::Expected::new(digest.clone())
        .with_identity(ocikit_sign::SignedIdentity::exact_reference(identity).unwrap());
    ocikit_sign::verify(&theirs, &[key.public_key()], &expected).unwrap();

    // Ours, accepted by skopeo's policy; refused under another key and after a change.
    let reference = ocikit_digest::Reference::parse(identity).unwrap();
    let ours = ocikit_sign::sign_image(&key, &reference, digest).unwrap();
    std::fs::write(signed.join("signature-1"), dir_signature_blob(&ours)).unwrap();
    let policy = |key: &Path| {
        let path = root.join("policy.json");
        std::fs::write(
            &path,
            format!(
                r#"{{"default":[{{"type":"reject"}}],"transports":{{"dir":{{"":[{{"type":"sigstoreSigned","keyPath":"{}","signedIdentity":{{"type":"exactReference","dockerReference":"{identity}"}}}}]}}}}}}"#,
                key.display()
            ),
        )
        .unwrap();
        path
    };
    let copy = |policy: &Path| {
        let out = root.join("out");
        let _ = std::fs::remove_dir_all(&out);
        skopeo.output(&[
            "--policy",
            policy.to_str().unwrap(),
            "copy",
            "--quiet",
            // The policy is judged on the signatures; an `oci:` destination cannot store
            // them, so they are left behind once accepted.
            "--remove-signatures",
            &format!("dir:{}", signed.display()),
            &format!("oci:{}:v1", out.display()),
        ])
    };
    let accepted = copy(&policy(&pub_path));
    assert!(
        accepted.status.success(),
        "{}",
        String::from_utf8_lossy(&accepted.stderr)
    );
    let other_pub = root.join("other.pub");
    std::fs::write(
        &other_pub,
        ocikit_sign::PrivateKey::generate()
            .unwrap()
            .public_key()
            .to_pem(),
    )
    .unwrap();
    assert!(!copy(&policy(&other_pub)).status.success());
    let mut changed = manifest.clone();
    changed.push(b'\n');
    std::fs::write(signed.join("manifest.json"), changed).unwrap();
    assert!(!copy(&policy(&pub_path)).status.success());
}
