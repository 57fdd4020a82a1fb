//! Signatures travelling with `copy`, `push` and `pull` between two `ocikit serve` registries
//! and layouts (`--remove-signatures` leaves them behind), and `--policy` on `pull`, `copy`
//! and `unpack`: an image the policy refuses is refused with the reason, and nothing is
//! written.

use std::path::Path;
use std::process::{Command, Output};

use crate::image::build;
use crate::registry::Serve;
use crate::{contents, fails, oci, ok};

/// `ocikit sign` with the passphrase in COSIGN_PASSWORD.
fn sign(passphrase: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ocikit"))
        .arg("sign")
        .args(args)
        .env("DOCKER_CONFIG", "/nonexistent/ocikit-tests-docker-config")
        .env("COSIGN_PASSWORD", passphrase)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run ocikit")
}

/// A key pair made by `ocikit key generate` in `dir`: (private, public) paths.
fn keys(dir: &Path) -> (String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ocikit"))
        .args(["key", "generate", "--out", dir.to_str().unwrap()])
        .env("COSIGN_PASSWORD", "pw")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    (
        dir.join("cosign.key").display().to_string(),
        dir.join("cosign.pub").display().to_string(),
    )
}

/// A policy file `name` in `dir` with `text`.
fn policy(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

const PLAIN: [&str; 2] = ["--src-tls-verify=false", "--dest-tls-verify=false"];

#[test]
fn signatures_travel_and_the_policy_guards_pull_copy_and_unpack() {
    let dir = tempfile::tempdir().unwrap();
    let a = Serve::start(&dir.path().join("a"), &[]);
    let b = Serve::start(&dir.path().join("b"), &[]);
    let layout = dir.path().join("images");
    build(&layout, "v1", &["--cmd", "/a"]);
    build(&layout, "v2", &["--cmd", "/b"]);
    let at_a = |rest: &str| format!("docker://{}/{rest}", a.addr);
    let at_b = |rest: &str| format!("docker://{}/{rest}", b.addr);
    for tag in ["v1", "v2"] {
        ok(&[
            "push",
            "-q",
            PLAIN[1],
            &oci(&layout, &format!(":{tag}")),
            &at_a(&format!("team/app:{tag}")),
        ]);
    }
    let (key, public) = keys(&dir.path().join("keys"));
    let signed = sign(
        "pw",
        &["--tls-verify=false", "--key", &key, &at_a("team/app:v1")],
    );
    assert!(signed.status.success(), "{signed:?}");
    let claimed = format!("{}/team/app:v1", a.addr);
    let verify = |image: &str| {
        ok(&[
            "verify",
            "--tls-verify=false",
            "--key",
            &public,
            "--reference",
            &claimed,
            image,
        ])
    };

    // copy to another registry, pull into a layout, push back: verifiable each time.
    let copied = ok(&[
        "copy",
        PLAIN[0],
        PLAIN[1],
        &at_a("team/app:v1"),
        &at_b("mirror/app:v1"),
    ]);
    assert!(
        copied.contains("1 signature manifest copied along"),
        "{copied}"
    );
    verify(&at_b("mirror/app:v1"));
    let pulled = dir.path().join("pulled");
    ok(&[
        "pull",
        PLAIN[0],
        &at_b("mirror/app:v1"),
        &oci(&pulled, ":v1"),
    ]);
    verify(&oci(&pulled, ":v1"));
    let report: serde_json::Value = serde_json::from_str(&ok(&[
        "--json",
        "push",
        PLAIN[1],
        &oci(&pulled, ":v1"),
        &at_b("pushed:v1"),
    ]))
    .unwrap();
    assert_eq!(report["signaturesCopied"], 1, "{report}");
    verify(&at_b("pushed:v1"));
    // --remove-signatures: the image goes alone.
    let report: serde_json::Value = serde_json::from_str(&ok(&[
        "--json",
        "copy",
        "--remove-signatures",
        PLAIN[0],
        PLAIN[1],
        &at_a("team/app:v1"),
        &at_b("bare:v1"),
    ]))
    .unwrap();
    assert!(report.get("signaturesCopied").is_none(), "{report}");
    let err = fails(&[
        "verify",
        "--tls-verify=false",
        "--key",
        &public,
        "--reference",
        &claimed,
        &at_b("bare:v1"),
    ]);
    assert!(err.contains("has no signatures"), "{err}");

    // The policy: A's `team` repositories must be signed by our key.
    let public_pem = std::fs::read_to_string(&public).unwrap();
    assert!(public_pem.starts_with("-----BEGIN PUBLIC KEY-----"));
    let trusted = policy(
        dir.path(),
        "trusted.json",
        &format!(
            r#"{{"default":[{{"type":"insecureAcceptAnything"}}],
                "transports":{{"docker":{{"{}/team":[{{"type":"sigstoreSigned","keyPath":"{public}",
                    "signedIdentity":{{"type":"matchRepository"}}}}]}}}}}}"#,
            a.addr
        ),
    );
    let guarded = dir.path().join("guarded");
    ok(&[
        "pull",
        "--policy",
        &trusted,
        PLAIN[0],
        &at_a("team/app:v1"),
        &oci(&guarded, ":v1"),
    ]);
    verify(&oci(&guarded, ":v1"));
    let before = contents(&guarded);

    // Refused: unsigned (v2), into the existing layout and into a new one; nothing written.
    let fresh = dir.path().join("fresh");
    for target in [oci(&guarded, ":v2"), oci(&fresh, ":v2")] {
        let err = fails(&[
            "pull",
            "--policy",
            &trusted,
            PLAIN[0],
            &at_a("team/app:v2"),
            &target,
        ]);
        assert!(err.contains("the policy refuses"), "{err}");
        assert!(
            err.contains("a signature is required, but there is none"),
            "{err}"
        );
    }
    assert_eq!(contents(&guarded), before);
    assert!(!fresh.exists());
    // Refused: the policy names another key; copy to a registry writes no tag there.
    let (_, stranger) = keys(&dir.path().join("stranger"));
    let other_key = policy(
        dir.path(),
        "other-key.json",
        &format!(r#"{{"default":[{{"type":"sigstoreSigned","keyPath":"{stranger}"}}]}}"#),
    );
    let err = fails(&[
        "copy",
        "--policy",
        &other_key,
        PLAIN[0],
        PLAIN[1],
        &at_a("team/app:v1"),
        &at_b("refused:v1"),
    ]);
    assert!(err.contains("signature does not verify"), "{err}");
    let err = fails(&["inspect", "--tls-verify=false", &at_b("refused:v1")]);
    assert!(!err.is_empty());
    // Refused: `reject`.
    let reject = policy(
        dir.path(),
        "reject.json",
        r#"{"default":[{"type":"reject"}]}"#,
    );
    let err = fails(&[
        "pull",
        "--policy",
        &reject,
        PLAIN[0],
        &at_a("team/app:v1"),
        &oci(&fresh, ":v1"),
    ]);
    assert!(err.contains("the policy rejects these images"), "{err}");
    assert!(!fresh.exists());
    // A policy naming a key of another curve is refused before anything is read.
    let p384 = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../ocikit-sign/tests/sign/fixtures/python-p384.pub");
    let other_curve = policy(
        dir.path(),
        "p384.json",
        &format!(
            r#"{{"default":[{{"type":"sigstoreSigned","keyPath":"{}"}}]}}"#,
            p384.display()
        ),
    );
    let err = fails(&[
        "pull",
        "--policy",
        &other_curve,
        PLAIN[0],
        &at_a("team/app:v1"),
        &oci(&fresh, ":v1"),
    ]);
    assert!(err.contains("cannot use the policy"), "{err}");
    assert!(!fresh.exists());

    // unpack: the layout's image by the policy (exactReference: a layout has no name of
    // its own), refused by `reject` with no root filesystem made.
    let exact = policy(
        dir.path(),
        "exact.json",
        &format!(
            r#"{{"default":[{{"type":"sigstoreSigned","keyPath":"{public}",
                "signedIdentity":{{"type":"exactReference","dockerReference":"{claimed}"}}}}]}}"#
        ),
    );
    let rootfs = dir.path().join("rootfs");
    ok(&[
        "unpack",
        "--policy",
        &exact,
        &oci(&guarded, ":v1"),
        rootfs.to_str().unwrap(),
    ]);
    assert!(!contents(&rootfs).is_empty());
    let refused = dir.path().join("refused-rootfs");
    let err = fails(&[
        "unpack",
        "--policy",
        &reject,
        &oci(&guarded, ":v1"),
        refused.to_str().unwrap(),
    ]);
    assert!(err.contains("the policy rejects these images"), "{err}");
    assert!(!refused.exists());
    let tar = dir.path().join("v1.tar");
    let err = fails(&[
        "unpack",
        "--policy",
        &trusted,
        "--tls-verify=false",
        &at_a("team/app:v2"),
        "--tar",
        tar.to_str().unwrap(),
    ]);
    assert!(err.contains("there is none"), "{err}");
    assert!(!tar.exists());
    ok(&[
        "unpack",
        "--policy",
        &trusted,
        "--tls-verify=false",
        &at_a("team/app:v1"),
        "--tar",
        tar.to_str().unwrap(),
    ]);
    assert!(tar.is_file());
}

/// A key fixture of ocikit-sign's tests (made by OpenSSL through Python's cryptography).
fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../ocikit-sign/tests/sign/fixtures")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn keys_that_are_not_acceptable_sign_nothing_and_verify_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("images");
    build(&layout, "v1", &[]);
    let image = oci(&layout, ":v1");
    let before = contents(&layout);
    let refused = |key: &str, passphrase: &str| {
        let out = sign(
            passphrase,
            &["--key", key, "--reference", "example.com/app:v1", &image],
        );
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        String::from_utf8(out.stderr).unwrap()
    };
    // An unencrypted private key where cosign's encrypted key file belongs.
    let err = refused(&fixture("python-unencrypted.key"), "fixture-passphrase");
    assert!(err.contains("unencrypted private key"), "{err}");
    // A key of another curve.
    let err = refused(&fixture("python-p384.key"), "fixture-passphrase");
    assert!(err.contains("ECDSA P-384"), "{err}");
    // The right key, the wrong passphrase.
    let err = refused(&fixture("python-cosign.key"), "not the passphrase");
    assert!(err.contains("wrong passphrase"), "{err}");
    assert_eq!(contents(&layout), before, "a refused key wrote something");
    // A public key of another curve verifies nothing.
    let err = fails(&[
        "verify",
        "--key",
        &fixture("python-p384.pub"),
        "--reference",
        "example.com/app:v1",
        &image,
    ]);
    assert!(err.contains("ECDSA P-384"), "{err}");
}

#[test]
fn a_signed_image_is_not_recompressed_unless_its_signatures_stay_behind() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("images");
    build(&layout, "v1", &["--cmd", "/a"]);
    let (key, _) = keys(&dir.path().join("keys"));
    let signed = sign(
        "pw",
        &[
            "--key",
            &key,
            "--reference",
            "registry.example/app:v1",
            &oci(&layout, ":v1"),
        ],
    );
    assert!(signed.status.success(), "{signed:?}");
    let out = dir.path().join("out");
    let err = fails(&[
        "copy",
        "--compression",
        "zstd",
        &oci(&layout, ":v1"),
        &oci(&out, ":v1"),
    ]);
    assert!(
        err.contains("is signed (sha256-") && err.contains("recompressed to zstd"),
        "{err}"
    );
    assert!(err.contains("--remove-signatures"), "{err}");
    assert!(!out.exists());
    let report: serde_json::Value = serde_json::from_str(&ok(&[
        "--json",
        "copy",
        "--compression",
        "zstd",
        "--remove-signatures",
        &oci(&layout, ":v1"),
        &oci(&out, ":v1"),
    ]))
    .unwrap();
    assert!(report.get("signaturesCopied").is_none(), "{report}");
    assert!(
        report["layersRecompressed"].as_u64().unwrap() > 0,
        "{report}"
    );
}
