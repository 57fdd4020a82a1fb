//! Integration tests for `ocikit-codec`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod apply;
mod build;
mod compression;
mod gnu_tar;
mod idmap;
mod pipeline;
mod roundtrip;
mod squash;
mod tar_reader;
mod whiteout_names;
mod writer;
