//! The CNCF Distribution registry (Debian's `docker-registry`, Distribution 2.8) on a free
//! loopback port, with filesystem storage and deletes enabled in a temporary directory, and
//! its log kept for tests that read the access log.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{free_port, http, require_tool, wait_until};

/// A running `docker-registry serve`, killed when dropped.
#[derive(Debug)]
pub struct Distribution {
    child: Child,
    addr: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Distribution {
    /// Starts it and waits (up to 20 s) until `GET /v2/` answers 200; `None` without the
    /// binary on `PATH` (a failure under CI).
    pub fn start() -> Option<Distribution> {
        let binary = require_tool("docker-registry")?;
        let dir = tempfile::tempdir().expect("a temporary directory");
        let addr = format!("127.0.0.1:{}", free_port());
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                 http:\n  addr: {addr}\n",
                dir.path().join("data").display()
            ),
        )
        .expect("write the registry's config");
        let log = dir.path().join("registry.log");
        let out = File::create(&log).expect("create the registry's log");
        let child = Command::new(binary)
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("clone the log file"))
            .stderr(out)
            .spawn()
            .expect("start docker-registry");
        let registry = Distribution {
            child,
            addr,
            log,
            _dir: dir,
        };
        wait_until(
            &format!("docker-registry answering on {}", registry.addr),
            Duration::from_secs(20),
            || {
                http::try_request(&registry.addr, "GET", "/v2/", &[], b"")
                    .filter(|r| r.status == 200)
            },
        );
        Some(registry)
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// `docker://127.0.0.1:PORT/name` for a repository (and tag) `name`.
    pub fn image(&self, name: &str) -> String {
        format!("docker://{}/{name}", self.addr)
    }

    /// The access log so far: one line per request (`"GET /v2/... HTTP/1.1" 200 ...`).
    pub fn access_log(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("HTTP/1.1\""))
            .map(str::to_string)
            .collect()
    }

    /// Stops it and returns its whole access log.
    pub fn stop(mut self) -> Vec<String> {
        self.child.kill().ok();
        self.child.wait().ok();
        self.access_log()
    }
}

impl Drop for Distribution {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distribution_serves_logs_and_stops() {
        let Some(registry) = Distribution::start() else {
            return;
        };
        let missing = http::request(registry.addr(), "GET", "/v2/app/tags/list", &[], b"");
        assert_eq!(missing.status, 404, "{}", missing.text());
        let addr = registry.addr().to_owned();
        let log = registry.stop();
        assert!(
            log.iter()
                .any(|l| l.contains("GET /v2/app/tags/list HTTP/1.1\" 404")),
            "{log:?}"
        );
        assert!(http::try_request(&addr, "GET", "/v2/", &[], b"").is_none());
    }
}
