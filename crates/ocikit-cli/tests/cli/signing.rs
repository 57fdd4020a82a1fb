//! `ocikit key generate`, `sign` and `verify`: on a layout, on `ocikit serve`, and with skopeo
//! on docker-registry (Distribution 2.8) reading and writing the same `sha256-<hex>.sig`
//! attachments.
//!
//! Debian 12's skopeo 1.9.3 is built with sigstore disabled ("Debian-local change: sigstore
//! disabled"): it neither signs with `--sign-by-sigstore-private-key` nor checks
//! `sigstoreSigned` signatures, but it does read and copy sigstore attachments, which
//! `skopeo_reads_and_writes_the_signatures_ocikit_makes_and_reads` proves in both directions.
//! The signing and the policy are proven with `skopeo-sigstore` (Debian 13's skopeo 1.18,
//! built with sigstore, installed by `cargo xtask install-tools`):
//! `skopeo_with_sigstore_signs_with_our_keys_and_enforces_our_signatures`. The cryptography is
//! also cross-checked against OpenSSL and libsodium in ocikit-sign's peer tests.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output};

use ocikit_testkit::distribution::Distribution;

use crate::image::build;
use crate::registry::Serve;
use crate::{oci, skopeo};

/// `ocikit` with `args`, the passphrase (if any) in COSIGN_PASSWORD, no terminal.
fn run(passphrase: Option<&str>, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ocikit"));
    command
        .args(args)
        .env("DOCKER_CONFIG", "/nonexistent/ocikit-tests-docker-config")
        .env_remove("COSIGN_PASSWORD")
        .stdin(std::process::Stdio::null());
    if let Some(passphrase) = passphrase {
        command.env("COSIGN_PASSWORD", passphrase);
    }
    command.output().expect("run ocikit")
}

fn ok(passphrase: Option<&str>, args: &[&str]) -> String {
    let out = run(passphrase, args);
    assert!(
        out.status.success(),
        "ocikit {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Expects exit status 1, nothing on stdout; returns stderr.
fn fails(passphrase: Option<&str>, args: &[&str]) -> String {
    let out = run(passphrase, args);
    assert_eq!(
        out.status.code(),
        Some(1),
        "ocikit {args:?} should fail:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(out.stdout.is_empty());
    String::from_utf8(out.stderr).unwrap()
}

fn keys(dir: &Path, passphrase: &str) -> (String, String) {
    ok(
        Some(passphrase),
        &["key", "generate", "--out", dir.to_str().unwrap()],
    );
    (
        dir.join("cosign.key").display().to_string(),
        dir.join("cosign.pub").display().to_string(),
    )
}

fn verify_json(args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json", "verify"];
    all.extend_from_slice(args);
    serde_json::from_str(&ok(None, &all)).unwrap()
}

#[test]
fn keys_sign_and_verify_a_layout_and_bad_signatures_fail() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("images");
    let v1 = build(&layout, "v1", &["--cmd", "/a"]);
    let v2 = build(&layout, "v2", &["--cmd", "/b"]);

    // Keys: from a passphrase file, or COSIGN_PASSWORD; never overwritten; no passphrase
    // and no terminal is refused.
    let pass = dir.path().join("pass");
    std::fs::write(&pass, "s3cret\n").unwrap();
    let alice = dir.path().join("alice");
    ok(
        None,
        &[
            "key",
            "generate",
            "--out",
            alice.to_str().unwrap(),
            "--passphrase-file",
            pass.to_str().unwrap(),
        ],
    );
    let alice_key = alice.join("cosign.key").display().to_string();
    let alice_pub = alice.join("cosign.pub").display().to_string();
    let pem = std::fs::read_to_string(&alice_key).unwrap();
    assert!(pem.starts_with("-----BEGIN ENCRYPTED COSIGN PRIVATE KEY-----\n"));
    assert!(
        std::fs::read_to_string(&alice_pub)
            .unwrap()
            .starts_with("-----BEGIN PUBLIC KEY-----\n")
    );
    let before = crate::contents(&alice);
    let err = fails(
        Some("other"),
        &["key", "generate", "--out", alice.to_str().unwrap()],
    );
    assert!(err.contains("never overwritten"), "{err}");
    assert_eq!(crate::contents(&alice), before);
    let err = fails(
        None,
        &[
            "key",
            "generate",
            "--out",
            dir.path().join("none").to_str().unwrap(),
        ],
    );
    assert!(err.contains("COSIGN_PASSWORD"), "{err}");
    assert!(!dir.path().join("none").exists());
    let (bob_key, bob_pub) = keys(&dir.path().join("bob"), "b0b");
    let (_, eve_pub) = keys(&dir.path().join("eve"), "eve");

    let image = oci(&layout, ":v1");
    let claim = "example.com/team/app:v1";
    // A wrong passphrase signs nothing.
    let before = crate::contents(&layout);
    let err = fails(
        Some("wrong"),
        &["sign", "--key", &alice_key, "--reference", claim, &image],
    );
    assert!(err.contains("wrong passphrase"), "{err}");
    assert_eq!(crate::contents(&layout), before);
    // No signature yet.
    let err = fails(
        None,
        &["verify", "--key", &alice_pub, "--reference", claim, &image],
    );
    assert!(err.contains("has no signatures"), "{err}");

    ok(
        None,
        &[
            "sign",
            "--key",
            &alice_key,
            "--passphrase-file",
            pass.to_str().unwrap(),
            "--reference",
            claim,
            &image,
        ],
    );
    ok(
        Some("b0b"),
        &["sign", "--key", &bob_key, "--reference", claim, &image],
    );
    let report = verify_json(&[
        "--key",
        &alice_pub,
        "--key",
        &bob_pub,
        "--reference",
        claim,
        &image,
    ]);
    assert_eq!(report["manifestDigest"], v1.as_str());
    let verified = report["verified"].as_array().unwrap();
    assert_eq!(verified.len(), 2);
    for v in verified {
        assert_eq!(v["dockerReference"], claim);
        assert_eq!(
            v["payload"]["critical"]["image"]["docker-manifest-digest"],
            v1.as_str()
        );
    }
    // Text: the summary, then one payload per line.
    let text = ok(
        None,
        &["verify", "--key", &bob_pub, "--reference", claim, &image],
    );
    assert!(text.starts_with("verified 1 of 2 signatures"), "{text}");
    assert_eq!(text.lines().count(), 2, "{text}");

    // Another key; another reference.
    let err = fails(
        None,
        &["verify", "--key", &eve_pub, "--reference", claim, &image],
    );
    assert!(err.contains("none of the 2 signatures"), "{err}");
    let err = fails(
        None,
        &[
            "verify",
            "--key",
            &alice_pub,
            "--reference",
            "example.com/team/other:v1",
            &image,
        ],
    );
    assert!(err.contains("claims another image"), "{err}");

    // Replayed: v1's signatures tagged as v2's (index.json edited by hand).
    let index_path = layout.join("index.json");
    let mut index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    let tag_of = |digest: &str| format!("sha256-{}.sig", digest.strip_prefix("sha256:").unwrap());
    let mut moved = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag_of(&v1).as_str())
        .unwrap()
        .clone();
    moved["annotations"]["org.opencontainers.image.ref.name"] = tag_of(&v2).into();
    index["manifests"].as_array_mut().unwrap().push(moved);
    std::fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
    let err = fails(
        None,
        &[
            "verify",
            "--key",
            &alice_pub,
            "--reference",
            claim,
            &oci(&layout, ":v2"),
        ],
    );
    assert!(
        err.contains(&format!("is for manifest {v1}, not {v2}")),
        "{err}"
    );
}

#[test]
fn sign_and_verify_on_ocikit_serve() {
    let dir = tempfile::tempdir().unwrap();
    let server = Serve::start(&dir.path().join("root"), &[]);
    let layout = dir.path().join("images");
    let digest = build(&layout, "v1", &[]);
    let image = format!("docker://{}/team/app:v1", server.addr);
    ok(
        None,
        &[
            "copy",
            "-q",
            "--dest-tls-verify=false",
            &oci(&layout, ":v1"),
            &image,
        ],
    );
    let (key, public) = keys(&dir.path().join("keys"), "pw");
    let (other_key, other_public) = keys(&dir.path().join("other"), "pw2");

    let err = fails(
        None,
        &["verify", "--tls-verify=false", "--key", &public, &image],
    );
    assert!(err.contains("has no signatures"), "{err}");
    let signed: serde_json::Value = serde_json::from_str(&ok(
        Some("pw"),
        &[
            "--json",
            "sign",
            "--tls-verify=false",
            "--key",
            &key,
            &image,
        ],
    ))
    .unwrap();
    assert_eq!(signed["manifestDigest"], digest.as_str());
    assert_eq!(
        signed["dockerReference"],
        format!("{}/team/app:v1", server.addr)
    );
    ok(
        Some("pw2"),
        &["sign", "--tls-verify=false", "--key", &other_key, &image],
    );
    let report = verify_json(&[
        "--tls-verify=false",
        "--key",
        &public,
        "--key",
        &other_public,
        &image,
    ]);
    assert_eq!(report["verified"].as_array().unwrap().len(), 2);
    // The tag is listed as cosign's.
    let tags = ok(
        None,
        &[
            "tags",
            "--tls-verify=false",
            &format!("docker://{}/team/app", server.addr),
        ],
    );
    assert!(
        tags.contains(&format!(
            "sha256-{}.sig",
            digest.strip_prefix("sha256:").unwrap()
        )),
        "{tags}"
    );
    // A key that signed nothing.
    let (_, stranger) = keys(&dir.path().join("stranger"), "x");
    let err = fails(
        None,
        &["verify", "--tls-verify=false", "--key", &stranger, &image],
    );
    assert!(err.contains("none of the 2 signatures"), "{err}");
}

/// A registries.d directory turning sigstore attachments on for `addr`.
fn registries_d(dir: &Path, addr: &str) -> String {
    let d = dir.join("registries.d");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(
        d.join("test.yaml"),
        format!("docker:\n  {addr}:\n    use-sigstore-attachments: true\n"),
    )
    .unwrap();
    d.display().to_string()
}

#[test]
fn skopeo_reads_and_writes_the_signatures_ocikit_makes_and_reads() {
    let Some(registry) = Distribution::start() else {
        return;
    };
    let Some(_) = ocikit_testkit::tool::skopeo() else {
        return;
    };
    let skopeo = skopeo();
    let dir = tempfile::tempdir().unwrap();
    let addr = registry.addr().to_string();
    let layout = dir.path().join("images");
    let digest = build(&layout, "v1", &[]);
    let image = registry.image("team/app:v1");
    ok(
        None,
        &[
            "copy",
            "-q",
            "--dest-tls-verify=false",
            &oci(&layout, ":v1"),
            &image,
        ],
    );
    let (alice_key, alice_pub) = keys(&dir.path().join("alice"), "a");
    let (bob_key, bob_pub) = keys(&dir.path().join("bob"), "b");
    let (carol_key, carol_pub) = keys(&dir.path().join("carol"), "c");
    let rd = registries_d(dir.path(), &addr);

    // skopeo's policy finds no signature before ocikit signs.
    let policy = dir.path().join("policy.json");
    let require = |key: &str| {
        std::fs::write(
            &policy,
            format!(
                r#"{{"default":[{{"type":"reject"}}],"transports":{{"docker":{{"{addr}":[{{"type":"sigstoreSigned","keyPath":"{key}","signedIdentity":{{"type":"matchRepository"}}}}]}}}}}}"#
            ),
        )
        .unwrap();
    };
    let skopeo_pull = |source: &str| {
        let out = dir.path().join("pulled");
        let _ = std::fs::remove_dir_all(&out);
        // Without the leading --insecure-policy: the policy file decides.
        Command::new(skopeo.path())
            .args([
                "--policy",
                policy.to_str().unwrap(),
                "--registries.d",
                &rd,
                "copy",
                "--quiet",
                "--src-tls-verify=false",
                source,
                &format!("dir:{}", out.display()),
            ])
            .output()
            .unwrap()
    };
    require(&alice_pub);
    let unsigned = skopeo_pull(&image);
    assert!(!unsigned.status.success());
    assert!(
        String::from_utf8_lossy(&unsigned.stderr).contains("no signature exists"),
        "{}",
        String::from_utf8_lossy(&unsigned.stderr)
    );

    ok(
        Some("a"),
        &["sign", "--tls-verify=false", "--key", &alice_key, &image],
    );
    ok(
        Some("b"),
        &["sign", "--tls-verify=false", "--key", &bob_key, &image],
    );

    // skopeo's policy evaluation reads both signatures from ocikit's attachment.
    let judged = skopeo_pull(&image);
    let stderr = String::from_utf8_lossy(&judged.stderr).into_owned();
    const DISABLED: &str = "Debian-local change: sigstore disabled";
    if stderr.contains(DISABLED) {
        assert_eq!(
            stderr.matches(DISABLED).count(),
            2,
            "skopeo should find exactly ocikit's two signatures:\n{stderr}"
        );
    } else {
        // A skopeo with sigstore: our key accepts, another key refuses.
        assert!(judged.status.success(), "{stderr}");
        require(&carol_pub);
        assert!(!skopeo_pull(&image).status.success());
    }

    // skopeo copies the signatures along (it reads ocikit's manifest and writes its own
    // for the mirror); ocikit verifies what skopeo wrote.
    skopeo.ok(&[
        "--registries.d",
        &rd,
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        &image,
        &registry.image("team/mirror:v1"),
    ]);
    let mirror = registry.image("team/mirror:v1");
    let original = format!("{addr}/team/app:v1");
    let report = verify_json(&[
        "--tls-verify=false",
        "--key",
        &alice_pub,
        "--key",
        &bob_pub,
        "--reference",
        &original,
        &mirror,
    ]);
    assert_eq!(report["manifestDigest"], digest.as_str());
    assert_eq!(report["verified"].as_array().unwrap().len(), 2);
    // Under its own name the mirror's signatures claim another image.
    let err = fails(
        None,
        &["verify", "--tls-verify=false", "--key", &alice_pub, &mirror],
    );
    assert!(err.contains("claims another image"), "{err}");
    // ocikit appends to the manifest skopeo wrote; all three are there.
    ok(
        Some("c"),
        &["sign", "--tls-verify=false", "--key", &carol_key, &mirror],
    );
    let report = verify_json(&["--tls-verify=false", "--key", &carol_pub, &mirror]);
    assert_eq!(report["verified"].as_array().unwrap().len(), 1);
    assert_eq!(report["rejected"].as_array().unwrap().len(), 2);

    // skopeo signing with a key ocikit generated, where its build can sign.
    let pass = dir.path().join("pass");
    std::fs::write(&pass, "a").unwrap();
    let signed_by_skopeo = Command::new(skopeo.path())
        .args([
            "--insecure-policy",
            "--registries.d",
            &rd,
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            "--sign-by-sigstore-private-key",
            &alice_key,
            "--sign-passphrase-file",
            pass.to_str().unwrap(),
            &oci(&layout, ":v1"),
            &registry.image("team/skopeo:v1"),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&signed_by_skopeo.stderr).into_owned();
    if stderr.contains(DISABLED) {
        let _ = writeln!(
            std::io::stderr(),
            "this skopeo cannot sign with sigstore keys ({DISABLED})"
        );
    } else {
        assert!(signed_by_skopeo.status.success(), "{stderr}");
        let report = verify_json(&[
            "--tls-verify=false",
            "--key",
            &alice_pub,
            &registry.image("team/skopeo:v1"),
        ]);
        assert_eq!(report["verified"].as_array().unwrap().len(), 1);
    }
}

/// python3 with the independent peer's modules (PyNaCl, cryptography), or `None` (skip)
/// outside CI.
fn peer_python() -> Option<ocikit_testkit::Tool> {
    let python = ocikit_testkit::Tool::require("python3")?;
    let probe = python.output(&["-c", "import nacl.secret, cryptography"]);
    if probe.status.success() {
        return Some(python);
    }
    assert!(
        !ocikit_testkit::in_ci(),
        "python3 lacks PyNaCl or cryptography: run `cargo xtask install-tools`"
    );
    let _ = writeln!(
        std::io::stderr(),
        "skipping: python3 lacks PyNaCl or cryptography"
    );
    None
}

/// A signature made without ocikit (OpenSSL and libsodium opening a key ocikit generated,
/// in ocikit-sign's `peer.py`), stored in a signature manifest written by hand and pushed by
/// skopeo: ocikit verifies it, and refuses one whose payload names another manifest.
#[test]
fn a_signature_made_by_an_independent_signer_and_pushed_by_skopeo_verifies() {
    let Some(registry) = Distribution::start() else {
        return;
    };
    let Some(_) = ocikit_testkit::tool::skopeo() else {
        return;
    };
    let Some(python) = peer_python() else {
        return;
    };
    let skopeo = skopeo();
    let peer = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ocikit-sign/tests/sign/peer.py");
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("images");
    let digest = build(&layout, "v1", &[]);
    let image = registry.image("team/app:v1");
    ok(
        None,
        &[
            "copy",
            "-q",
            "--dest-tls-verify=false",
            &oci(&layout, ":v1"),
            &image,
        ],
    );
    let pass = dir.path().join("pass");
    std::fs::write(&pass, "peer").unwrap();
    let (key, public) = keys(&dir.path().join("keys"), "peer");
    let tag = format!("sha256-{}.sig", digest.strip_prefix("sha256:").unwrap());

    let store = |signed_digest: &str| {
        // cosign's payload shape, `optional` null as cosign writes it.
        let payload = format!(
            r#"{{"critical":{{"identity":{{"docker-reference":"{}/team/app:v1"}},"image":{{"docker-manifest-digest":"{signed_digest}"}},"type":"cosign container image signature"}},"optional":null}}"#,
            registry.addr()
        );
        let payload_path = dir.path().join("payload.json");
        std::fs::write(&payload_path, &payload).unwrap();
        let signed = python
            .command()
            .arg(&peer)
            .args(["sign", &key, pass.to_str().unwrap()])
            .arg(&payload_path)
            .output()
            .unwrap();
        assert!(
            signed.status.success(),
            "{}",
            String::from_utf8_lossy(&signed.stderr)
        );
        let signature = String::from_utf8(signed.stdout).unwrap().trim().to_string();
        // The signature image, by hand.
        let sigs = dir.path().join("sigs");
        let _ = std::fs::remove_dir_all(&sigs);
        let blobs = sigs.join("blobs/sha256");
        std::fs::create_dir_all(&blobs).unwrap();
        let put = |bytes: &[u8]| {
            let d = ocikit::digest::Digest::sha256(bytes);
            std::fs::write(blobs.join(d.encoded()), bytes).unwrap();
            (d.to_string(), bytes.len())
        };
        let (payload_digest, payload_size) = put(payload.as_bytes());
        let config = format!(
            r#"{{"architecture":"","created":"0001-01-01T00:00:00Z","history":[{{"created":"0001-01-01T00:00:00Z"}}],"os":"","rootfs":{{"type":"layers","diff_ids":["{payload_digest}"]}},"config":{{}}}}"#
        );
        let (config_digest, config_size) = put(config.as_bytes());
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","size":{config_size},"digest":"{config_digest}"}},"layers":[{{"mediaType":"application/vnd.dev.cosign.simplesigning.v1+json","size":{payload_size},"digest":"{payload_digest}","annotations":{{"dev.cosignproject.cosign/signature":"{signature}"}}}}]}}"#
        );
        let (manifest_digest, manifest_size) = put(manifest.as_bytes());
        std::fs::write(sigs.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        std::fs::write(
            sigs.join("index.json"),
            format!(
                r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{manifest_digest}","size":{manifest_size},"annotations":{{"org.opencontainers.image.ref.name":"{tag}"}}}}]}}"#
            ),
        )
        .unwrap();
        skopeo.ok(&[
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            &format!("oci:{}:{tag}", sigs.display()),
            &registry.image(&format!("team/app:{tag}")),
        ]);
    };

    store(&digest);
    let report = verify_json(&["--tls-verify=false", "--key", &public, &image]);
    let verified = report["verified"].as_array().unwrap();
    assert_eq!(verified.len(), 1);
    assert_eq!(verified[0]["manifestDigest"], digest.as_str());
    assert!(verified[0]["payload"]["optional"].is_null());

    // The same signer vouching for another manifest, stored under this image's tag.
    let other = format!("sha256:{}", "ab".repeat(32));
    store(&other);
    let err = fails(
        None,
        &["verify", "--tls-verify=false", "--key", &public, &image],
    );
    assert!(
        err.contains(&format!("is for manifest {other}, not {digest}")),
        "{err}"
    );
}

/// Issue 18's proof with skopeo's own signer and policy on a registry (Distribution 2.8,
/// sigstore attachments turned on in `registries.d`): `skopeo-sigstore` (Debian 13's skopeo,
/// built with sigstore) signs with a key `ocikit key generate` wrote, and `ocikit verify`
/// accepts the signature; `ocikit sign` signs, and skopeo's `sigstoreSigned` policy accepts
/// the image under our public key, and refuses it under another key and once the tag points
/// at a changed image.
#[test]
fn skopeo_with_sigstore_signs_with_our_keys_and_enforces_our_signatures() {
    let Some(registry) = Distribution::start() else {
        return;
    };
    let Some(skopeo) = ocikit_testkit::tool::skopeo_sigstore() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let addr = registry.addr().to_string();
    let layout = dir.path().join("images");
    let digest = build(&layout, "v1", &[]);
    let (key, public) = keys(&dir.path().join("ours"), "secret");
    let (_, other_public) = keys(&dir.path().join("other"), "other");
    let rd = registries_d(dir.path(), &addr);
    let pass = dir.path().join("pass");
    std::fs::write(&pass, "secret").unwrap();
    let any = dir.path().join("any.json");
    std::fs::write(&any, r#"{"default":[{"type":"insecureAcceptAnything"}]}"#).unwrap();

    // skopeo signs while it pushes, with the key ocikit generated; ocikit verifies.
    let by_skopeo = registry.image("team/by-skopeo:v1");
    let signed = Command::new(skopeo.path())
        .args([
            "--policy",
            any.to_str().unwrap(),
            "--registries.d",
            &rd,
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            "--sign-by-sigstore-private-key",
            &key,
            "--sign-passphrase-file",
            pass.to_str().unwrap(),
            &oci(&layout, ":v1"),
            &by_skopeo,
        ])
        .output()
        .unwrap();
    assert!(
        signed.status.success(),
        "skopeo-sigstore failed to sign:\n{}",
        String::from_utf8_lossy(&signed.stderr)
    );
    let report = verify_json(&["--tls-verify=false", "--key", &public, &by_skopeo]);
    assert_eq!(report["manifestDigest"], digest.as_str());
    assert_eq!(report["verified"].as_array().unwrap().len(), 1);
    let err = fails(
        None,
        &[
            "verify",
            "--tls-verify=false",
            "--key",
            &other_public,
            &by_skopeo,
        ],
    );
    assert!(err.contains("none of the 1 signatures"), "{err}");

    // ocikit signs; skopeo's policy decides.
    let image = registry.image("team/app:v1");
    ok(
        None,
        &[
            "copy",
            "-q",
            "--dest-tls-verify=false",
            &oci(&layout, ":v1"),
            &image,
        ],
    );
    ok(
        Some("secret"),
        &["sign", "--tls-verify=false", "--key", &key, &image],
    );
    let policy = dir.path().join("policy.json");
    let require = |key: &str| {
        std::fs::write(
            &policy,
            format!(
                r#"{{"default":[{{"type":"reject"}}],"transports":{{"docker":{{"{addr}/team":[{{"type":"sigstoreSigned","keyPath":"{key}","signedIdentity":{{"type":"matchRepository"}}}}]}}}}}}"#
            ),
        )
        .unwrap();
    };
    let skopeo_pull = |source: &str| {
        let out = dir.path().join("pulled");
        let _ = std::fs::remove_dir_all(&out);
        let output = Command::new(skopeo.path())
            .args([
                "--policy",
                policy.to_str().unwrap(),
                "--registries.d",
                &rd,
                "copy",
                "--quiet",
                "--src-tls-verify=false",
                source,
                &format!("dir:{}", out.display()),
            ])
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    require(&public);
    let (accepted, stderr) = skopeo_pull(&image);
    assert!(accepted, "skopeo refused an image ocikit signed:\n{stderr}");
    require(&other_public);
    let (accepted, stderr) = skopeo_pull(&image);
    assert!(!accepted, "skopeo accepted a signature under another key");
    assert!(stderr.contains("signature"), "{stderr}");

    // The tag moves to a changed image; the old signature does not cover it.
    require(&public);
    let changed = build(&layout, "v2", &["--label", "changed=yes"]);
    assert_ne!(changed, digest);
    ok(
        None,
        &[
            "copy",
            "-q",
            "--dest-tls-verify=false",
            &oci(&layout, ":v2"),
            &image,
        ],
    );
    let (accepted, stderr) = skopeo_pull(&image);
    assert!(!accepted, "skopeo accepted a changed image");
    assert!(stderr.contains("signature"), "{stderr}");
    // Signed again, it is accepted again.
    ok(
        Some("secret"),
        &["sign", "--tls-verify=false", "--key", &key, &image],
    );
    let (accepted, stderr) = skopeo_pull(&image);
    assert!(accepted, "{stderr}");
}
