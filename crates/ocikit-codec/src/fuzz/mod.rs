//! Fuzz entry points with their oracles (feature `__fuzz`; the assertions are the oracles).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod apply;
mod decompress;
pub use apply::layer_apply;
pub use decompress::decompress;
