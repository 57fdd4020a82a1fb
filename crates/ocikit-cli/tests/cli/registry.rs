//! The registry binary end to end: `registry-gc` on a directory a running `serve` holds, and
//! `serve --gc-interval`; the helpers (a `serve` process, raw HTTP/1.1) serve `crash` too.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ocikit::digest::Digest;
use ocikit_testkit::http::{self, Response};
use ocikit_testkit::prng::bytes;

use crate::{fails, json};

/// A running `ocikit serve`, its address, and its stderr after the status line (drained on a
/// thread, so request logs never fill the pipe and stall the server).
pub(crate) struct Serve {
    child: Child,
    pub(crate) addr: String,
    logs: Arc<Mutex<String>>,
    drain: Option<std::thread::JoinHandle<()>>,
}

impl Serve {
    /// `ocikit serve --root ROOT` with `extra` options.
    pub(crate) fn start(root: &Path, extra: &[&str]) -> Serve {
        let mut args = vec!["--root", root.to_str().unwrap()];
        args.extend_from_slice(extra);
        Serve::start_args(&args)
    }

    /// `ocikit serve` on a free loopback port with `args` (S3 credentials for moto in the
    /// environment).
    pub(crate) fn start_args(args: &[&str]) -> Serve {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ocikit"))
            .args(["serve", "--addr", "127.0.0.1:0"])
            .args(args)
            .envs(ocikit_testkit::moto::ENV)
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
        let logs = Arc::new(Mutex::new(String::new()));
        let sink = logs.clone();
        let drain = std::thread::spawn(move || {
            let mut line = String::new();
            while stderr.read_line(&mut line).is_ok_and(|n| n > 0) {
                sink.lock().unwrap().push_str(&line);
                line.clear();
            }
        });
        Serve {
            child,
            addr,
            logs,
            drain: Some(drain),
        }
    }

    /// SIGKILL, and wait until the process is gone.
    pub(crate) fn kill9(mut self) {
        let killed = Command::new("kill")
            .args(["-KILL", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        self.child.wait().unwrap();
    }

    /// A connection to the server (a read timeout set).
    pub(crate) fn connect(&self) -> TcpStream {
        http::connect(&self.addr)
    }

    /// One request with `Connection: close`; status, headers (lowercase names) and body.
    pub(crate) fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: &[u8],
    ) -> Response {
        http::request(&self.addr, method, path, headers, body)
    }

    /// SIGTERM; how the process exited, and its whole stderr after the status line.
    pub(crate) fn stop(mut self) -> (std::process::ExitStatus, String) {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        let exit = self.child.wait().unwrap();
        if let Some(drain) = self.drain.take() {
            drain.join().unwrap();
        }
        let logs = self.logs.lock().unwrap().clone();
        (exit, logs)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// A throwaway certificate for 127.0.0.1 in `dir`: cert.pem and key.pem for `serve`, and
/// `cert_dir`/ca.crt for `--cert-dir` (ocikit's and skopeo's).
pub(crate) fn certificate(dir: &Path, cert_dir: &str) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
    std::fs::create_dir_all(dir.join(cert_dir)).unwrap();
    std::fs::write(dir.join(cert_dir).join("ca.crt"), cert.pem()).unwrap();
}

/// Pushes a blob monolithically (POST, then PUT with the bytes); returns its digest.
pub(crate) fn push_blob(s: &Serve, name: &str, bytes: &[u8]) -> Digest {
    let digest = Digest::sha256(bytes);
    let started = s.request("POST", &format!("/v2/{name}/blobs/uploads/"), &[], b"");
    assert_eq!(started.status, 202);
    let location = started.header("location").unwrap().to_owned();
    let done = s.request(
        "PUT",
        &format!("{location}?digest={digest}"),
        &[("Content-Type", "application/octet-stream".into())],
        bytes,
    );
    assert_eq!(done.status, 201, "{}", String::from_utf8_lossy(&done.body));
    digest
}

const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// Pushes an image (config and layers) under `tag`; returns the manifest digest and the
/// blob digests.
fn push_image(s: &Serve, name: &str, tag: &str, layers: &[Vec<u8>]) -> (Digest, Vec<Digest>) {
    let config = format!("{{\"image\":\"{name}:{tag}\"}}").into_bytes();
    let config_digest = push_blob(s, name, &config);
    let mut blobs = vec![config_digest.clone()];
    let mut descriptors = Vec::new();
    for layer in layers {
        let d = push_blob(s, name, layer);
        descriptors.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d.to_string(), "size": layer.len()
        }));
        blobs.push(d);
    }
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest.to_string(), "size": config.len()},
        "layers": descriptors,
    }))
    .unwrap();
    let pushed = s.request(
        "PUT",
        &format!("/v2/{name}/manifests/{tag}"),
        &[("Content-Type", MANIFEST.into())],
        &manifest,
    );
    assert_eq!(pushed.status, 201);
    (Digest::sha256(&manifest), blobs)
}

pub(crate) fn blob_status(s: &Serve, name: &str, digest: &Digest) -> u16 {
    s.request("HEAD", &format!("/v2/{name}/blobs/{digest}"), &[], b"")
        .status
}

#[test]
fn registry_gc_collects_a_live_registry() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("registry");
    let s = Serve::start(&root, &[]);
    let shared = bytes(1, 20_000);
    let (old, old_blobs) = push_image(&s, "app", "v1", &[shared.clone(), bytes(2, 30_000)]);
    let (_, new_blobs) = push_image(&s, "app", "v2", std::slice::from_ref(&shared));
    // v1's manifest goes; its own layer and config become garbage.
    let deleted = s.request("DELETE", &format!("/v2/app/manifests/{old}"), &[], b"");
    assert_eq!(deleted.status, 202);
    let root_arg = root.to_str().unwrap();

    // Within the (default, one hour) grace period nothing goes.
    let report = json(&["registry-gc", "--root", root_arg]);
    assert_eq!(report["linksRemoved"], 0, "{report}");
    assert_eq!(report["blobsRemoved"], 0, "{report}");

    // Past the pushes' millisecond stamps, so that a grace of zero finds them old.
    let pushed = std::time::SystemTime::now();
    ocikit_testkit::wait_until(
        "a millisecond past the pushes",
        Duration::from_secs(5),
        || (std::time::SystemTime::now() > pushed + Duration::from_millis(2)).then_some(()),
    );
    let dry = json(&[
        "registry-gc",
        "--root",
        root_arg,
        "--grace",
        "0",
        "--dry-run",
    ]);
    assert_eq!(dry["dryRun"], true);
    assert_eq!(dry["linksRemoved"], 2, "{dry}");
    // The manifest's own content, its config and its unshared layer.
    assert_eq!(dry["blobsRemoved"], 3, "{dry}");
    assert_eq!(blob_status(&s, "app", &old_blobs[2]), 200);

    let real = json(&["registry-gc", "--root", root_arg, "--grace", "0s"]);
    assert_eq!(real["blobs"], dry["blobs"]);
    assert_eq!(real["bytesFreed"], dry["bytesFreed"]);
    assert!(real["bytesFreed"].as_u64().unwrap() > 30_000);
    assert_eq!(real["repositories"][0]["name"], "app");
    assert_eq!(blob_status(&s, "app", &old_blobs[2]), 404);
    assert!(!root.join(old_blobs[2].blob_path()).exists());
    // The running server still serves v2 whole.
    for blob in &new_blobs {
        let got = s.request("GET", &format!("/v2/app/blobs/{blob}"), &[], b"");
        assert_eq!(got.status, 200);
        assert_eq!(&Digest::sha256(&got.body), blob);
    }
    let text = crate::ok(&["registry-gc", "--root", root_arg, "--grace", "0"]);
    assert!(
        text.contains("removed 0 manifests, 0 links, 0 blobs"),
        "{text}"
    );

    let err = fails(&["registry-gc", "--root", root_arg, "--repository", "Nope"]);
    assert!(err.contains("not a valid repository name"), "{err}");
    let err = fails(&["registry-gc", "--root", root_arg, "--repository", "missing"]);
    assert!(err.contains("no repository `missing`"), "{err}");
    let missing = dir.path().join("typo");
    let err = fails(&["registry-gc", "--root", missing.to_str().unwrap()]);
    assert!(err.contains("not a registry directory"), "{err}");
    assert!(!missing.exists());
    s.stop();
}

#[test]
fn serve_collects_on_an_interval() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("registry");
    let s = Serve::start(&root, &["--gc-interval", "1s", "--grace", "0"]);
    let (manifest, blobs) = push_image(&s, "app", "v1", &[bytes(3, 5000)]);
    let deleted = s.request("DELETE", &format!("/v2/app/manifests/{manifest}"), &[], b"");
    assert_eq!(deleted.status, 202);
    ocikit_testkit::wait_until(
        "the periodic collection removed the blob",
        Duration::from_secs(20),
        || (!root.join(blobs[1].blob_path()).exists()).then_some(()),
    );
    assert_eq!(blob_status(&s, "app", &blobs[1]), 404);
    s.stop();
}
