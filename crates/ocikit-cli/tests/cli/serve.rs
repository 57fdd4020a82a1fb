//! `serve`: the registry answers on the address it prints, stops gracefully on SIGTERM, and
//! refuses an address it cannot listen on.

use std::net::TcpListener;

use crate::fails;
use crate::registry::Serve;

/// One plain HTTP/1.1 request; the status code.
fn status(addr: &str, path: &str) -> u16 {
    ocikit_testkit::http::request(addr, "GET", path, &[], b"").status
}

#[test]
fn serves_the_distribution_api_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let server = Serve::start(&dir.path().join("registry"), &[]);
    let addr = server.addr.clone();
    assert_eq!(status(&addr, "/v2/"), 200);
    assert_eq!(status(&addr, "/v2/library/app/manifests/v1"), 404);
    assert_eq!(status(&addr, "/v2/UPPER/manifests/v1"), 400);
    let (exit, rest) = server.stop();
    assert!(exit.success(), "serve did not stop cleanly: {exit}");
    assert!(rest.contains("stopped"), "{rest}");
}

#[test]
fn an_address_in_use_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let root = dir.path().join("registry");
    let err = fails(&["serve", "--addr", &addr, "--root", root.to_str().unwrap()]);
    assert!(err.contains("cannot listen"), "{err}");
    assert!(!root.exists(), "a refused serve created its root");
}

#[test]
fn skopeo_pushes_over_https_with_credentials_and_pull_only_users_cannot() {
    if ocikit_testkit::tool::skopeo().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    crate::registry::certificate(d, "certs");
    std::fs::write(
        d.join("writers"),
        format!("alice:{}\n", bcrypt::hash("alice-pw", 4).unwrap()),
    )
    .unwrap();
    std::fs::write(
        d.join("readers"),
        format!("bob:{}\n", bcrypt::hash("bob-pw", 4).unwrap()),
    )
    .unwrap();
    let layout = d.join("images");
    let digest = crate::image::build(&layout, "hello", &[]);
    let root = d.join("registry");
    let server = Serve::start_args(&[
        "--root",
        root.to_str().unwrap(),
        "--tls-cert",
        d.join("cert.pem").to_str().unwrap(),
        "--tls-key",
        d.join("key.pem").to_str().unwrap(),
        "--htpasswd",
        d.join("writers").to_str().unwrap(),
        "--htpasswd-read-only",
        d.join("readers").to_str().unwrap(),
        "--log-format",
        "json",
    ]);
    let certs = d.join("certs");
    let certs = certs.to_str().unwrap();
    let src = format!("oci:{}:hello", layout.display());
    let dest = format!("docker://{}/app:v1", server.addr);
    // Verified TLS (skopeo's default), alice's credentials: the push lands.
    crate::skopeo().ok(&[
        "copy",
        "--dest-cert-dir",
        certs,
        "--dest-creds",
        "alice:alice-pw",
        &src,
        &dest,
    ]);
    let raw = crate::skopeo().ok(&[
        "inspect",
        "--raw",
        "--cert-dir",
        certs,
        "--creds",
        "bob:bob-pw",
        &dest,
    ]);
    assert_eq!(
        ocikit::digest::Digest::sha256(raw.as_bytes()).to_string(),
        digest
    );
    // bob may not push; nobody without credentials may pull; a client that does not trust
    // the certificate gets nowhere.
    let dest2 = format!("docker://{}/app:v2", server.addr);
    for (args, what) in [
        (
            vec![
                "copy",
                "--dest-cert-dir",
                certs,
                "--dest-creds",
                "bob:bob-pw",
                &src,
                &dest2,
            ],
            "pull-only push",
        ),
        (
            vec!["inspect", "--raw", "--cert-dir", certs, &dest],
            "anonymous pull",
        ),
        (
            vec!["inspect", "--raw", "--creds", "alice:alice-pw", &dest],
            "untrusted certificate",
        ),
    ] {
        let out = crate::skopeo().output(&args);
        assert!(!out.status.success(), "{what} succeeded");
    }
    let (exit, logs) = server.stop();
    assert!(exit.success(), "serve did not stop cleanly: {exit}");
    // One JSON log line per request, with method, path and status.
    let requests: Vec<serde_json::Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|v: &serde_json::Value| v["target"] == "ocikit_registry::access")
        .collect();
    assert!(
        requests.iter().any(|r| r["fields"]["method"] == "PUT"
            && r["fields"]["path"] == "/v2/app/manifests/v1"
            && r["fields"]["status"] == 201),
        "{logs}"
    );
    assert!(
        requests.iter().any(|r| r["fields"]["status"] == 403),
        "bob's refused push is logged: {logs}"
    );
}

#[test]
fn serve_refuses_bad_settings_before_creating_anything() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let root = d.join("registry");
    let root = root.to_str().unwrap();
    std::fs::write(d.join("md5"), "alice:$apr1$salt$hash\n").unwrap();
    std::fs::write(d.join("empty"), "# nobody\n").unwrap();
    std::fs::write(d.join("not-pem"), "hello\n").unwrap();
    let md5 = d.join("md5");
    let empty = d.join("empty");
    let not_pem = d.join("not-pem");
    for (args, expect) in [
        (vec!["--htpasswd", md5.to_str().unwrap()], "not bcrypt"),
        (vec!["--htpasswd", empty.to_str().unwrap()], "no users"),
        (vec!["--htpasswd", "/nonexistent/htpasswd"], "cannot read"),
        (
            vec![
                "--tls-cert",
                not_pem.to_str().unwrap(),
                "--tls-key",
                not_pem.to_str().unwrap(),
            ],
            "PEM",
        ),
        (vec!["--log", "info,=="], "log filter"),
    ] {
        let mut all = vec!["serve", "--addr", "127.0.0.1:0", "--root", root];
        all.extend(args);
        let err = fails(&all);
        assert!(err.contains(expect), "{all:?}: {err}");
        assert!(
            !std::path::Path::new(root).exists(),
            "{all:?} created the root"
        );
    }
    // Usage errors: exit 2.
    for args in [
        vec!["serve", "--root", root, "--anonymous-read"],
        vec!["serve", "--root", root, "--tls-cert", "c.pem"],
        vec!["serve"],
        vec!["serve", "--root", root, "--s3-bucket", "b"],
    ] {
        let out = crate::ocikit(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
}

#[test]
fn serves_from_an_s3_bucket_across_restarts() {
    let Some(moto) = ocikit_testkit::moto::shared() else {
        return;
    };
    if ocikit_testkit::tool::skopeo().is_none() {
        return;
    }
    let bucket = moto.bucket();
    let endpoint = moto.endpoint();
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("images");
    let digest = crate::image::build(&layout, "hello", &[]);
    let args = [
        "--s3-bucket",
        bucket.as_str(),
        "--s3-endpoint",
        endpoint.as_str(),
        "--s3-prefix",
        "reg",
        "--read-only",
    ];
    // Pushes need a writable server; the read-only one after it serves what was pushed.
    let server = Serve::start_args(&args[..6]);
    let dest = format!("docker://{}/app:v1", server.addr);
    crate::skopeo().ok(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{}:hello", layout.display()),
        &dest,
    ]);
    let (exit, _) = server.stop();
    assert!(exit.success(), "serve did not stop cleanly: {exit}");
    let server = Serve::start_args(&args);
    let dest = format!("docker://{}/app:v1", server.addr);
    let raw = crate::skopeo().ok(&["inspect", "--raw", "--tls-verify=false", &dest]);
    assert_eq!(
        ocikit::digest::Digest::sha256(raw.as_bytes()).to_string(),
        digest
    );
    let out = dir.path().join("pulled");
    crate::skopeo().ok(&[
        "copy",
        "--src-tls-verify=false",
        &dest,
        &format!("oci:{}:hello", out.display()),
    ]);
    let copy = format!("docker://{}/app:v2", server.addr);
    let refused = crate::skopeo().output(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{}:hello", layout.display()),
        &copy,
    ]);
    assert!(!refused.status.success(), "a read-only server took a push");
    let (exit, _) = server.stop();
    assert!(exit.success(), "serve did not stop cleanly: {exit}");
    // Nothing of it is on the local disk: the content is in the bucket under the prefix.
    let (status, listing) = moto.request(
        "GET",
        &format!("/{bucket}?list-type=2&prefix=reg/content/blobs/"),
        "",
    );
    assert_eq!(status, 200);
    assert!(listing.contains(&digest["sha256:".len()..]), "{listing}");
}
