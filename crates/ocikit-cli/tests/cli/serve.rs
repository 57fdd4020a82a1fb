//! `serve`: the registry answers on the address it prints, stops gracefully on SIGTERM, and
//! refuses an address it cannot listen on.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::fails;

/// One plain HTTP/1.1 request; the status code.
fn status(addr: &str, path: &str) -> u16 {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response.split(' ').nth(1).unwrap().parse().unwrap()
}

#[test]
fn serves_the_distribution_api_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("registry");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ocikit"))
        .args(["serve", "--addr", "127.0.0.1:0", "--root"])
        .arg(&root)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .rsplit_once("http://")
        .map(|(_, a)| a.to_string())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    assert_eq!(status(&addr, "/v2/"), 200);
    assert_eq!(status(&addr, "/v2/library/app/manifests/v1"), 404);
    assert_eq!(status(&addr, "/v2/UPPER/manifests/v1"), 400);

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "serve did not stop cleanly: {exit}");
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
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

/// A running `ocikit serve`, its address, and its stderr after the status line (drained on a
/// thread so logs never fill the pipe). Stopped with SIGTERM on drop.
struct Serving {
    child: std::process::Child,
    addr: String,
    logs: std::sync::Arc<std::sync::Mutex<String>>,
    drain: Option<std::thread::JoinHandle<()>>,
}

impl Serving {
    fn start(args: &[&str]) -> Serving {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ocikit"))
            .args(["serve", "--addr", "127.0.0.1:0"])
            .args(args)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        stderr.read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .rsplit_once("://")
            .map(|(_, a)| a.to_string())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        let logs = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = logs.clone();
        let drain = std::thread::spawn(move || {
            let mut line = String::new();
            while stderr.read_line(&mut line).is_ok_and(|n| n > 0) {
                sink.lock().unwrap().push_str(&line);
                line.clear();
            }
        });
        Serving {
            child,
            addr,
            logs,
            drain: Some(drain),
        }
    }

    /// Stops the server with SIGTERM; its whole stderr after the status line.
    fn stop(mut self) -> String {
        self.terminate();
        self.logs.lock().unwrap().clone()
    }

    fn terminate(&mut self) {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .ok();
        let exit = self.child.wait().unwrap();
        if let Some(drain) = self.drain.take() {
            drain.join().unwrap();
        }
        assert!(exit.success(), "serve did not stop cleanly: {exit}");
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        if self.drain.is_some() {
            self.child.kill().ok();
            self.child.wait().ok();
        }
    }
}

fn skopeo(args: &[&str]) -> std::process::Output {
    let skopeo = crate::image::which("skopeo").expect("skopeo");
    Command::new(skopeo)
        .args(["--insecure-policy"])
        .args(args)
        .output()
        .unwrap()
}

fn skopeo_ok(args: &[&str]) -> String {
    let out = skopeo(args);
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A throwaway certificate for 127.0.0.1 in `dir` (cert.pem, key.pem, and certs/ca.crt for
/// skopeo's --cert-dir).
fn certificate(dir: &std::path::Path) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
    std::fs::create_dir_all(dir.join("certs")).unwrap();
    std::fs::write(dir.join("certs/ca.crt"), cert.pem()).unwrap();
}

#[test]
fn skopeo_pushes_over_https_with_credentials_and_pull_only_users_cannot() {
    if crate::image::which("skopeo").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    certificate(d);
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
    let server = Serving::start(&[
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
    skopeo_ok(&[
        "copy",
        "--dest-cert-dir",
        certs,
        "--dest-creds",
        "alice:alice-pw",
        &src,
        &dest,
    ]);
    let raw = skopeo_ok(&[
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
        let out = skopeo(&args);
        assert!(!out.status.success(), "{what} succeeded");
    }
    let logs = server.stop();
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
    let Some(moto) = ocikit_store::conformance::moto::shared() else {
        return;
    };
    if crate::image::which("skopeo").is_none() {
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
    let server = Serving::start(&args[..6]);
    let dest = format!("docker://{}/app:v1", server.addr);
    skopeo_ok(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{}:hello", layout.display()),
        &dest,
    ]);
    server.stop();
    let server = Serving::start(&args);
    let dest = format!("docker://{}/app:v1", server.addr);
    let raw = skopeo_ok(&["inspect", "--raw", "--tls-verify=false", &dest]);
    assert_eq!(
        ocikit::digest::Digest::sha256(raw.as_bytes()).to_string(),
        digest
    );
    let out = dir.path().join("pulled");
    skopeo_ok(&[
        "copy",
        "--src-tls-verify=false",
        &dest,
        &format!("oci:{}:hello", out.display()),
    ]);
    let copy = format!("docker://{}/app:v2", server.addr);
    let refused = skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{}:hello", layout.display()),
        &copy,
    ]);
    assert!(!refused.status.success(), "a read-only server took a push");
    server.stop();
    // Nothing of it is on the local disk: the content is in the bucket under the prefix.
    let (status, listing) = moto.request(
        "GET",
        &format!("/{bucket}?list-type=2&prefix=reg/content/blobs/"),
        "",
    );
    assert_eq!(status, 200);
    assert!(listing.contains(&digest["sha256:".len()..]), "{listing}");
}
