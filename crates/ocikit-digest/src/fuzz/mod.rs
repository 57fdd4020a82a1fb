//! Fuzz entry points with their oracles. Each asserts meaning (round trips, agreement with
//! the spec's regular expressions, path safety), not only the absence of panics. Compiled
//! only with the `__fuzz` feature; the assertions here are the fuzzers' oracles.
#![allow(clippy::unwrap_used, missing_docs)]

mod digest;
pub use digest::digest_parse;

mod descriptor;
mod document;
mod platform;
mod reference;
pub use descriptor::descriptor_json;
pub use document::document_parse;
pub use platform::platform_parse;
pub use reference::reference_parse;
