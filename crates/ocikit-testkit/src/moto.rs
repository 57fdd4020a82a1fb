//! A real S3-compatible server for tests: moto's server mode on 127.0.0.1, started by the
//! test process and stopped with it.
//!
//! It needs `moto_server` on `PATH` (`pip install 'moto[server]'`). Without it,
//! [`MotoServer::start`] returns `None` so the caller can skip, except under CI, where it
//! panics: CI must run the S3 tests.

use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::{free_port, http, require_tool, wait_until};

/// The access key moto accepts (any is fine; these are the ones the tests use).
pub const ACCESS_KEY: &str = "testing";
/// The secret key that goes with [`ACCESS_KEY`].
pub const SECRET_KEY: &str = "testing";
/// The region the tests name.
pub const REGION: &str = "us-east-1";

/// The environment a process needs to reach moto through the AWS variables.
pub const ENV: [(&str, &str); 3] = [
    ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
    ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
    ("AWS_REGION", REGION),
];

/// A moto S3 server on 127.0.0.1, started for this test process.
///
/// moto runs under a small shell that kills it as soon as its stdin closes: when this guard
/// is dropped, and also when the test process exits or dies without dropping it (the shared
/// server lives in a `static`, which is never dropped).
#[derive(Debug)]
pub struct MotoServer {
    child: Child,
    stdin: Option<ChildStdin>,
    port: u16,
}

impl MotoServer {
    /// Starts moto on a free port and waits (up to 20 s) until it answers HTTP. `None` when
    /// `moto_server` is not installed and this is not CI.
    pub fn start() -> Option<MotoServer> {
        let binary = require_tool("moto_server")?;
        let port = free_port();
        let log = std::env::temp_dir().join(format!("ocikit-moto-{port}.log"));
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(r#""$0" -H 127.0.0.1 -p "$1" >"$2" 2>&1 & read _; kill $!"#)
            .arg(&binary)
            .arg(port.to_string())
            .arg(&log)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let stdin = child.stdin.take();
        let server = MotoServer { child, stdin, port };
        wait_until(
            &format!(
                "moto_server answering on port {port} (log: {})",
                log.display()
            ),
            Duration::from_secs(20),
            || {
                server
                    .try_request("GET", "/", "")
                    .filter(|(status, _)| *status == 200)
            },
        );
        Some(server)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// One plain HTTP/1.1 request (moto does not check signatures on these): status and
    /// body, or `None` if the server is not reachable.
    pub fn try_request(&self, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
        let addr = format!("127.0.0.1:{}", self.port);
        http::try_request(&addr, method, path, &[], body.as_bytes())
            .map(|response| (response.status, response.text()))
    }

    /// [`MotoServer::try_request`], failing the test when moto does not answer.
    pub fn request(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        self.try_request(method, path, body)
            .unwrap_or_else(|| panic!("moto did not answer {method} {path}"))
    }

    /// Creates a fresh bucket and returns its name.
    pub fn bucket(&self) -> String {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!("ocikit-{}", NEXT.fetch_add(1, Ordering::Relaxed));
        let (status, body) = self.request("PUT", &format!("/{name}"), "");
        assert_eq!(status, 200, "creating bucket {name}: {body}");
        name
    }

    /// Turns on versioning for a bucket.
    pub fn enable_versioning(&self, bucket: &str) {
        let body = r#"<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Status>Enabled</Status></VersioningConfiguration>"#;
        let (status, response) = self.request("PUT", &format!("/{bucket}?versioning"), body);
        assert_eq!(status, 200, "enabling versioning: {response}");
    }

    /// The multipart uploads in progress in a bucket (their keys).
    pub fn pending_uploads(&self, bucket: &str) -> Vec<String> {
        let (status, body) = self.request("GET", &format!("/{bucket}?uploads"), "");
        assert_eq!(status, 200, "listing multipart uploads: {body}");
        body.split("<Key>")
            .skip(1)
            .filter_map(|rest| rest.split_once("</Key>").map(|(key, _)| key.to_string()))
            .collect()
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        // Closing stdin makes the shell kill moto and exit.
        drop(self.stdin.take());
        if self.child.wait().is_err() {
            self.child.kill().ok();
        }
    }
}

/// The server all tests of this process share (each test uses buckets of its own), or `None`
/// to skip.
pub fn shared() -> Option<&'static MotoServer> {
    static SERVER: OnceLock<Option<MotoServer>> = OnceLock::new();
    SERVER.get_or_init(MotoServer::start).as_ref()
}
