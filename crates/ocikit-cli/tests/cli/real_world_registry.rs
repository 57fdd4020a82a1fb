//! The registry and TLS behaviour real clients rely on: skopeo pushing to and pulling from
//! `serve --htpasswd --anonymous-read`, the TLS flags as skopeo means them
//! (`--tls-verify=false`, `--cert-dir`, `--ca-file`), and S3 registries that fail fast on a
//! missing bucket and are collected by `registry-gc`.

use std::path::Path;
use std::process::Command;

use crate::registry::Serve;
use crate::{fails, ok};

fn htpasswd(path: &Path, user: &str, password: &str) {
    std::fs::write(
        path,
        format!("{user}:{}\n", bcrypt::hash(password, 4).unwrap()),
    )
    .unwrap();
}

/// skopeo pings `/v2/` and sends credentials only when it challenges; with anonymous reads
/// the registry still challenges there, so skopeo pushes with credentials, and anyone
/// (skopeo and ocikit) pulls without.
#[test]
fn skopeo_pushes_with_credentials_and_pulls_anonymously_under_anonymous_read() {
    if ocikit_testkit::tool::skopeo().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    htpasswd(&d.join("writers"), "alice", "alice-pw");
    let layout = d.join("images");
    let digest = crate::image::build(&layout, "hello", &[]);
    let server = Serve::start(
        &d.join("registry"),
        &[
            "--htpasswd",
            d.join("writers").to_str().unwrap(),
            "--anonymous-read",
        ],
    );
    let src = format!("oci:{}:hello", layout.display());
    let v1 = format!("docker://{}/app:v1", server.addr);
    crate::skopeo().ok(&[
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        "alice:alice-pw",
        &src,
        &v1,
    ]);
    // Anonymous pulls: skopeo's inspect and copy, ocikit's pull and inspect.
    let raw = crate::skopeo().ok(&["inspect", "--raw", "--tls-verify=false", &v1]);
    assert_eq!(
        ocikit::digest::Digest::sha256(raw.as_bytes()).to_string(),
        digest
    );
    let pulled = d.join("pulled");
    crate::skopeo().ok(&[
        "copy",
        "--src-tls-verify=false",
        &v1,
        &format!("oci:{}:hello", pulled.display()),
    ]);
    let ours = d.join("ours");
    ok(&[
        "pull",
        "--src-tls-verify=false",
        &v1,
        &format!("oci:{}:hello", ours.display()),
    ]);
    let shown = crate::json(&["inspect", &format!("oci:{}:hello", ours.display())]);
    assert_eq!(shown["digest"], digest.as_str());
    // ocikit pushes with credentials too; nobody pushes without.
    ok(&[
        "push",
        "--dest-tls-verify=false",
        "--dest-creds",
        "alice:alice-pw",
        &src,
        &format!("docker://{}/app:v2", server.addr),
    ]);
    let v3 = format!("docker://{}/app:v3", server.addr);
    let refused = crate::skopeo().output(&["copy", "--dest-tls-verify=false", &src, &v3]);
    assert!(!refused.status.success(), "an anonymous skopeo push landed");
    let err = fails(&["push", "--dest-tls-verify=false", &src, &v3]);
    assert!(err.contains("401"), "{err}");
    let tags = crate::skopeo().ok(&[
        "list-tags",
        "--tls-verify=false",
        &format!("docker://{}/app", server.addr),
    ]);
    let tags: serde_json::Value = serde_json::from_str(&tags).unwrap();
    assert_eq!(tags["Tags"], serde_json::json!(["v1", "v2"]));
    let (exit, _) = server.stop();
    assert!(exit.success(), "serve did not stop cleanly: {exit}");
}

/// `ocikit` with moto's credentials in the environment; waits at most `limit`, then kills it
/// and fails the test (a server that should have refused to start would run forever).
fn ocikit_s3(args: &[&str], limit: std::time::Duration) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ocikit"))
        .args(args)
        .envs(ocikit_testkit::moto::ENV)
        .env("DOCKER_CONFIG", "/nonexistent/ocikit-tests-docker-config")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!(
                "ocikit {args:?} still ran after {limit:?}:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// A bucket that does not exist stops `serve` at once with the store's message; an
/// existing one serves.
#[test]
fn serve_fails_fast_on_a_missing_bucket_and_starts_on_an_existing_one() {
    let Some(moto) = ocikit_testkit::moto::shared() else {
        return;
    };
    let endpoint = moto.endpoint();
    let missing = format!("{}-missing", moto.bucket());
    let out = ocikit_s3(
        &[
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--s3-bucket",
            &missing,
            "--s3-endpoint",
            &endpoint,
        ],
        std::time::Duration::from_secs(30),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(stderr.contains(&missing), "{stderr}");
    assert!(stderr.contains("store does not answer"), "{stderr}");
    assert!(
        stderr.contains("NoSuchBucket") || stderr.contains("does not exist"),
        "the store's own message: {stderr}"
    );
    assert!(!stderr.contains("serving"), "{stderr}");

    let bucket = moto.bucket();
    let server = Serve::start_args(&["--s3-bucket", &bucket, "--s3-endpoint", &endpoint]);
    let health = server.request("GET", "/healthz", &[], b"");
    assert_eq!(health.status, 200);
    let (exit, _) = server.stop();
    assert!(exit.success(), "serve did not stop cleanly: {exit}");
}

/// `registry-gc` takes the same S3 options as `serve` and collects what a deleted manifest
/// left behind in the bucket.
#[test]
fn registry_gc_collects_an_s3_registry() {
    let Some(moto) = ocikit_testkit::moto::shared() else {
        return;
    };
    let endpoint = moto.endpoint();
    let bucket = moto.bucket();
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("images");
    let digest = crate::image::build(&layout, "hello", &[]);
    let shown = crate::json(&["inspect", &format!("oci:{}:hello", layout.display())]);
    let layer = shown["layers"][0]["digest"].as_str().unwrap().to_owned();
    let s3 = [
        "--s3-bucket",
        bucket.as_str(),
        "--s3-endpoint",
        endpoint.as_str(),
    ];
    let server = Serve::start_args(&s3);
    ok(&[
        "push",
        "--dest-tls-verify=false",
        &format!("oci:{}:hello", layout.display()),
        &format!("docker://{}/app:v1", server.addr),
    ]);
    let blob = format!("/v2/app/blobs/{layer}");
    assert_eq!(server.request("HEAD", &blob, &[], b"").status, 200);
    let deleted = server.request("DELETE", &format!("/v2/app/manifests/{digest}"), &[], b"");
    assert_eq!(deleted.status, 202);

    let gc = |extra: &[&str]| {
        let mut args = vec!["--json", "registry-gc"];
        args.extend_from_slice(&s3);
        args.extend_from_slice(extra);
        let out = ocikit_s3(&args, std::time::Duration::from_secs(60));
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let report = gc(&["--grace", "0", "--dry-run"]);
    assert_eq!(report["dryRun"], true, "{report}");
    assert!(
        report["blobs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b == layer.as_str()),
        "{report}"
    );
    assert_eq!(server.request("HEAD", &blob, &[], b"").status, 200);
    let report = gc(&["--grace", "0"]);
    assert!(
        report["blobs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b == layer.as_str()),
        "{report}"
    );
    assert_eq!(server.request("HEAD", &blob, &[], b"").status, 404);
    let (status, listing) = moto.request(
        "GET",
        &format!("/{bucket}?list-type=2&prefix=registry/content/blobs/"),
        "",
    );
    assert_eq!(status, 200);
    assert!(!listing.contains(&layer["sha256:".len()..]), "{listing}");
    let (exit, _) = server.stop();
    assert!(exit.success(), "serve did not stop cleanly: {exit}");

    // A missing bucket is an error, not an empty collection.
    let missing = format!("{bucket}-missing");
    let out = ocikit_s3(
        &[
            "registry-gc",
            "--s3-bucket",
            &missing,
            "--s3-endpoint",
            &endpoint,
        ],
        std::time::Duration::from_secs(30),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&missing), "{stderr}");
    // A directory and a bucket at once are a usage error.
    let out = crate::ocikit(&["registry-gc", "--root", "x", "--s3-bucket", "b"]);
    assert_eq!(out.status.code(), Some(2));
}

/// The TLS flags mean what they mean in skopeo, against `serve --tls-cert` with a
/// self-signed certificate: refused by default with a certificate error; accepted with
/// `--tls-verify=false`, with `--ca-file` naming it, and with `--cert-dir` holding it as
/// `ca.crt`, in every command that talks to a registry.
#[test]
fn tls_flags_against_a_self_signed_registry() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    crate::registry::certificate(d, "certs.d");
    let layout = d.join("images");
    let digest = crate::image::build(&layout, "hello", &[]);
    let server = Serve::start(
        &d.join("registry"),
        &[
            "--tls-cert",
            d.join("cert.pem").to_str().unwrap(),
            "--tls-key",
            d.join("key.pem").to_str().unwrap(),
        ],
    );
    let src = format!("oci:{}:hello", layout.display());
    let v1 = format!("docker://{}/app:v1", server.addr);
    let ca = d.join("cert.pem");
    let ca = ca.to_str().unwrap();
    let certs = d.join("certs.d");
    let certs = certs.to_str().unwrap();

    let err = fails(&["push", &src, &v1]);
    assert!(err.contains("certificate"), "{err}");
    assert!(
        err.contains("--dest-ca-file"),
        "the hint names push's flags: {err}"
    );
    ok(&["push", "--dest-tls-verify=false", &src, &v1]);
    ok(&[
        "copy",
        "--dest-ca-file",
        ca,
        &src,
        &format!("docker://{}/app:v2", server.addr),
    ]);
    ok(&[
        "copy",
        "--dest-cert-dir",
        certs,
        &src,
        &format!("docker://{}/app:v3", server.addr),
    ]);

    let err = fails(&["inspect", &v1]);
    assert!(err.contains("certificate"), "{err}");
    for flags in [
        vec!["--tls-verify=false"],
        vec!["--ca-file", ca],
        vec!["--cert-dir", certs],
    ] {
        let mut args = vec!["inspect"];
        args.extend(&flags);
        args.push(&v1);
        let mut with_json = vec!["--json"];
        with_json.extend(&args);
        let shown: serde_json::Value = serde_json::from_str(&ok(&with_json)).unwrap();
        assert_eq!(shown["digest"], digest.as_str(), "{flags:?}");
        let mut tags = vec!["tags"];
        tags.extend(&flags);
        let repo = format!("docker://{}/app", server.addr);
        tags.push(&repo);
        let listed = ok(&tags);
        assert!(listed.contains("v3"), "{flags:?}: {listed}");
    }
    let pulled = d.join("pulled");
    ok(&[
        "pull",
        "--src-cert-dir",
        certs,
        &v1,
        &format!("oci:{}:hello", pulled.display()),
    ]);
    ok(&[
        "copy",
        "--src-ca-file",
        ca,
        &format!("docker://{}/app:v2", server.addr),
        &format!("oci:{}:v2", pulled.display()),
    ]);
    // A CA file that is not one is refused, naming it.
    let err = fails(&[
        "inspect",
        "--ca-file",
        d.join("key.pem").to_str().unwrap(),
        &v1,
    ]);
    assert!(err.contains("key.pem"), "{err}");
    let (exit, _) = server.stop();
    assert!(exit.success(), "serve did not stop cleanly: {exit}");
}

/// A plain-HTTP registry used without `--tls-verify=false` fails with an error that says
/// so and names the flag; with the flag, ocikit speaks HTTP to it.
#[test]
fn a_plain_http_registry_needs_tls_verify_false() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let layout = d.join("images");
    crate::image::build(&layout, "hello", &[]);
    let server = Serve::start(&d.join("registry"), &[]);
    let src = format!("oci:{}:hello", layout.display());
    let v1 = format!("docker://{}/app:v1", server.addr);
    let err = fails(&["push", &src, &v1]);
    assert!(err.contains("plain HTTP"), "{err}");
    assert!(
        err.contains("--dest-tls-verify=false"),
        "push's flag: {err}"
    );
    ok(&["push", "--dest-tls-verify=false", &src, &v1]);
    let repo = format!("docker://{}/app", server.addr);
    for args in [vec!["inspect", v1.as_str()], vec!["tags", repo.as_str()]] {
        let err = fails(&args);
        assert!(err.contains("--tls-verify=false"), "{args:?}: {err}");
    }
    assert!(ok(&["tags", "--tls-verify=false", &repo]).contains("v1"));
    let (exit, _) = server.stop();
    assert!(exit.success(), "serve did not stop cleanly: {exit}");
}
