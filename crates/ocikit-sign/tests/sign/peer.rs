//! The independent peer, live: keys ocikit writes are opened and used by OpenSSL and
//! libsodium (`peer.py`), keys they write are opened here, and each side verifies the other's
//! signatures. Needs `python3` with `cryptography` and `nacl` (PyNaCl), which
//! `cargo xtask install-tools` installs; under CI a missing one fails.

use std::path::{Path, PathBuf};
use std::process::Output;

use ocikit_digest::{Digest, Reference};
use ocikit_sign::key::{EncryptOptions, PrivateKeyLabel, ScryptCost};
use ocikit_sign::{Error, Payload, PrivateKey, PublicKey, Signature, sign};
use ocikit_testkit::{Tool, in_ci};

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sign/peer.py")
}

/// python3 with the peer's modules, or `None` (skip) outside CI.
fn python() -> Option<Tool> {
    let python = Tool::require("python3")?;
    let probe = python.output(&["-c", "import nacl.secret, cryptography"]);
    if probe.status.success() {
        return Some(python);
    }
    assert!(
        !in_ci(),
        "python3 lacks the peer's modules (PyNaCl, cryptography): run `cargo xtask install-tools`\n{}",
        String::from_utf8_lossy(&probe.stderr)
    );
    eprintln!("skipping: python3 lacks PyNaCl or cryptography");
    None
}

fn run_peer(python: &Tool, command: &str, args: &[&Path]) -> Output {
    let mut c = python.command();
    c.arg(script()).arg(command).args(args);
    c.output().expect("run peer.py")
}

#[test]
fn keys_written_here_are_opened_by_the_peer_and_signatures_cross_verify() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let pass = dir.path().join("pass");
    std::fs::write(&pass, "correct horse").unwrap();
    let payload_path = dir.path().join("payload");
    let reference = Reference::parse("localhost:5000/team/app:v1").unwrap();
    let payload = Payload::new(&reference, Digest::sha256(b"manifest")).with_timestamp(1);
    std::fs::write(&payload_path, payload.to_json()).unwrap();

    for (label, cost) in [
        (PrivateKeyLabel::Cosign, ScryptCost::Legacy),
        (PrivateKeyLabel::Sigstore, ScryptCost::Standard),
    ] {
        let key = PrivateKey::generate().unwrap();
        let key_path = dir.path().join("ours.key");
        let pub_path = dir.path().join("ours.pub");
        let options = EncryptOptions::new().with_label(label).with_cost(cost);
        std::fs::write(
            &key_path,
            key.to_encrypted_pem_with(b"correct horse", &options)
                .unwrap(),
        )
        .unwrap();
        std::fs::write(&pub_path, key.public_key().to_pem()).unwrap();

        // The peer decrypts our key file and signs; we verify its signature.
        let out = run_peer(&python, "sign", &[&key_path, &pass, &payload_path]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let theirs = Signature::new(
            payload.to_json(),
            String::from_utf8(out.stdout).unwrap().trim().to_string(),
        );
        let expected =
            ocikit_sign::Expected::new(Digest::sha256(b"manifest")).with_image(reference.clone());
        ocikit_sign::verify(&theirs, &[key.public_key()], &expected).unwrap();

        // We sign; the peer verifies with our public key file, and refuses a changed payload.
        let ours = sign(&key, &payload).unwrap();
        let sig_path = dir.path().join("sig");
        std::fs::write(&sig_path, ours.signature_base64()).unwrap();
        let out = run_peer(&python, "verify", &[&pub_path, &payload_path, &sig_path]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let changed = dir.path().join("changed");
        std::fs::write(&changed, [payload.to_json(), b" ".to_vec()].concat()).unwrap();
        let out = run_peer(&python, "verify", &[&pub_path, &changed, &sig_path]);
        assert_eq!(out.status.code(), Some(1));

        // Both refuse the wrong passphrase.
        let wrong = dir.path().join("wrong");
        std::fs::write(&wrong, "battery staple").unwrap();
        let out = run_peer(&python, "sign", &[&key_path, &wrong, &payload_path]);
        assert_eq!(out.status.code(), Some(2));
        assert!(matches!(
            PrivateKey::from_encrypted_pem(&std::fs::read(&key_path).unwrap(), b"battery staple"),
            Err(Error::Decrypt)
        ));
    }
}

#[test]
fn keys_the_peer_writes_are_opened_here() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let pass = dir.path().join("pass");
    std::fs::write(&pass, "s3cret").unwrap();
    for (label, log_n) in [
        ("ENCRYPTED SIGSTORE PRIVATE KEY", "16"),
        ("ENCRYPTED COSIGN PRIVATE KEY", "15"),
        ("ENCRYPTED SIGSTORE PRIVATE KEY", "17"),
    ] {
        let key_path = dir.path().join("theirs.key");
        let pub_path = dir.path().join("theirs.pub");
        let mut command = python.command();
        command
            .arg(script())
            .arg("generate")
            .args([&key_path, &pub_path, &pass])
            .args([label, log_n]);
        let out = command.output().expect("run peer.py");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let key = PrivateKey::from_encrypted_pem(&std::fs::read(&key_path).unwrap(), b"s3cret")
            .unwrap_or_else(|e| panic!("{label} N=2^{log_n}: {e:?}"));
        let public = PublicKey::from_pem(&std::fs::read(&pub_path).unwrap()).unwrap();
        assert_eq!(key.public_key(), public);
        // Our signature, verified by the peer.
        let payload_path = dir.path().join("payload");
        std::fs::write(&payload_path, b"{}").unwrap();
        let sig_path = dir.path().join("sig");
        std::fs::write(&sig_path, base64_of(&key.sign(b"{}").unwrap())).unwrap();
        let out = run_peer(&python, "verify", &[&pub_path, &payload_path, &sig_path]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
