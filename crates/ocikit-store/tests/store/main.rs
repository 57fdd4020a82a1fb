//! Integration tests for `ocikit-store`: the conformance suite on every backend, plus each
//! backend's own hardening.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod ext;
mod fs;
mod keys;
mod memory;
mod partial;
#[cfg(feature = "s3")]
mod s3;
#[cfg(feature = "s3")]
mod s3_provider;
