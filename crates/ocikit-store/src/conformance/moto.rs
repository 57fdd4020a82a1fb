//! A real S3-compatible server for tests: moto's server mode on 127.0.0.1, started by the
//! test process and stopped with it (features `conformance` and `s3`).
//!
//! The tests that use it need `moto_server` on `PATH` (`pip install 'moto[server]'`). Without
//! it, [`MotoServer::start`] returns `None` so the caller can skip, except under `CI=true`,
//! where it panics: CI must run the S3 tests.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::s3::S3Config;

/// A moto S3 server on 127.0.0.1, started for this test process.
///
/// moto runs under a small shell that kills it as soon as its stdin closes: when this guard
/// is dropped, and also when the test process exits or dies without dropping it (the shared
/// server lives in a `static`, which is never dropped).
pub struct MotoServer {
    child: Child,
    stdin: Option<ChildStdin>,
    port: u16,
}

impl MotoServer {
    /// Starts moto on a free port and waits (up to 20 s) until it answers HTTP. `None` when
    /// `moto_server` is not installed and this is not CI.
    #[allow(clippy::print_stderr)] // telling the person running the tests what was skipped
    pub fn start() -> Option<MotoServer> {
        let installed = std::env::var_os("PATH").is_some_and(|path| {
            std::env::split_paths(&path).any(|dir| dir.join("moto_server").is_file())
        });
        if !installed {
            let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
            assert!(
                !ci,
                "moto_server is not on PATH, and CI must run the S3 tests: pip install 'moto[server]'"
            );
            eprintln!("skipping S3 test: moto_server is not on PATH (pip install 'moto[server]')");
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = std::env::temp_dir().join(format!("ocikit-moto-{port}.log"));
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(r#"moto_server -H 127.0.0.1 -p "$0" >"$1" 2>&1 & read _; kill $!"#)
            .arg(port.to_string())
            .arg(&log)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let stdin = child.stdin.take();
        let server = MotoServer { child, stdin, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if server
                .try_request("GET", "/", "")
                .is_some_and(|(status, _)| status == 200)
            {
                return Some(server);
            }
            assert!(
                Instant::now() < deadline,
                "moto_server did not answer on port {port} within 20 s; its log is {}",
                log.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// One plain HTTP/1.1 request (moto does not check signatures on these): status and
    /// body, or `None` if the server is not reachable.
    pub fn try_request(&self, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .ok()?;
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.port,
            body.len()
        )
        .ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let status = response.split(' ').nth(1)?.parse().ok()?;
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        Some((status, body))
    }

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

    pub fn config(&self, bucket: &str, prefix: &str) -> S3Config {
        S3Config::new(bucket)
            .with_endpoint(self.endpoint())
            .with_credentials("testing", "testing")
            .with_allow_http(true)
            .with_prefix(prefix)
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
