//! Integration tests for `ocikit-digest`; modules mirror `src/`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod descriptor;
mod digest;
mod document;
mod graph;
mod hashing;
mod json;
mod media_type;
mod platform;
mod reference;
