//! ocikit-sign's integration tests. Modules mirror `src/` (`key`, `signature`, `policy`) for
//! fixtures made by an independent implementation (Python's `cryptography` on OpenSSL,
//! hashlib's scrypt, PyNaCl on libsodium: `fixtures/make_fixtures.py`); `peer` runs that
//! implementation live (`peer.py`), both ways; `skopeo` compares policy decisions with the
//! real skopeo's.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod key;
mod payload;
mod peer;
mod policy;
mod signature;
mod skopeo;

use std::path::{Path, PathBuf};

/// A committed fixture's path.
fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sign/fixtures")
        .join(name)
}

/// A committed fixture's bytes.
fn read_fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).expect("fixture")
}

/// The passphrase of the fixture keys.
const FIXTURE_PASSPHRASE: &[u8] = b"fixture-passphrase";
