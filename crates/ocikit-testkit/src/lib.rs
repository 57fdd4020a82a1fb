//! What ocikit's tests share, in one unpublished crate that depends on no ocikit crate (so
//! that every crate, the lowest too, can dev-depend on it).
//!
//! - [`in_ci`]: the one rule for CI detection (`CI=true` or `CI=1`).
//! - [`tool`]: external tools found on `PATH`; under CI a missing one fails the test, elsewhere
//!   the test is told to skip (and says so). [`tool::skopeo`] and [`tool::umoci`] wrap the
//!   two container tools.
//! - Launchers that start a server on 127.0.0.1 and stop it when dropped:
//!   [`moto::MotoServer`] (S3) and [`distribution::Distribution`] (`docker-registry`).
//! - [`prng`]: a small deterministic generator for test bytes.
//! - [`tarball`]: tar bytes with chosen entries, hostile ones included.
//! - [`http`]: raw HTTP/1.1 bytes to a loopback address and the response read back.
//! - [`poll`]: waiting for a condition with a deadline instead of sleeping.
//! - [`clock::ManualClock`]: a clock a test advances past a grace period or TTL.
//!
//! ```
//! use ocikit_testkit::{prng, tarball};
//!
//! let data = prng::bytes(7, 1000);
//! assert_eq!(data, prng::bytes(7, 1000));
//! let tar = tarball::tar_of(&[("etc/hostname", b"box\n")]);
//! assert_eq!(tar.len(), 512 + 512 + 1024);
//! ```

#![allow(clippy::print_stderr)] // telling the person running the tests what was skipped
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: fail loudly

pub mod clock;
pub mod distribution;
pub mod http;
pub mod moto;
pub mod poll;
pub mod prng;
pub mod tarball;
pub mod tool;

use std::path::{Path, PathBuf};

pub use clock::ManualClock;
pub use poll::{eventually, wait_until};
pub use tool::{Tool, find_tool, require_tool};

/// Whether tests run under CI (`CI=true` or `CI=1`), where a missing external tool is a
/// failure, never a skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// The workspace root (the directory of the root `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("../.."))
}

/// A TCP port on 127.0.0.1 that was free a moment ago (for servers that must be told their
/// port in advance; one that can take port 0 should).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a free loopback port")
}
