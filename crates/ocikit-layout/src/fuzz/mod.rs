//! Fuzz entry points with their oracles (feature `__fuzz`; not a public API). Each asserts
//! meaning (agreement with an independent reader, round trips), not only the absence of
//! panics; the assertions here are the fuzzers' oracles.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod archive;
mod index;
pub use archive::archive_import;
pub use index::index_json;
