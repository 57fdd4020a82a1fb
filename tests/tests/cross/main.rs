//! Cross-crate and real-tool tests; modules by subject.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod digest_vectors;
mod fuzz_replay;
mod interop;
mod layout_concurrency;
mod store_crash;
mod tar_quirks;
mod umoci_images;
