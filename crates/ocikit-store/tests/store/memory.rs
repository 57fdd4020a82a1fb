//! The memory backend runs the conformance suite.

#[cfg(feature = "conformance")]
mod conformance {
    ocikit_store::conformance_tests!(async { ocikit_store::MemoryStore::new() });
}
