//! Integration tests for `ocikit-layout`: every test runs on the memory, filesystem and (with
//! the `s3` feature and moto) S3 backends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod copy;
mod docker_archive;
mod index;
mod oci_archive;
