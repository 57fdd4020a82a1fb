//! Integration tests for `ocikit-layout`: every test runs on the memory, filesystem and (with
//! the `s3` feature and moto) S3 backends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod archive_export;
mod archive_tar_reader;
mod artifact;
mod build;
mod copy;
mod docker_archive;
mod footprint;
mod fsck;
mod fsck_graph;
mod gc;
mod hostile;
mod image;
mod index;
mod index_cache;
mod oci_archive;
mod platform;
mod real_world_copy;
mod recompress;
mod referrers;
mod snapshot;
mod staging;
mod support;
mod unpack;
mod unpack_idmap;
