//! Shared helpers for ocikit's cross-crate and real-tool tests (an unpublished crate).
//!
//! ```
//! let root = ocikit_tests::workspace_root();
//! assert!(root.join("Cargo.toml").is_file());
//! ```

use std::path::{Path, PathBuf};

// The library users' guide: its examples are this crate's doc tests, run against a registry
// each starts on 127.0.0.1, so the guide cannot drift from the API.
#[doc = include_str!("../../docs/guide.md")]
mod guide {}

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

// CI detection and tools on PATH have one home, shared with every crate's tests.
pub use ocikit_testkit::{in_ci, require_tool};

/// Every file in `fuzz/seeds/<target>` and `fuzz/artifacts/<target>`, sorted, with contents.
pub fn fuzz_inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let mut inputs = Vec::new();
    for kind in ["seeds", "artifacts"] {
        let dir = workspace_root().join("fuzz").join(kind).join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_file()
                && let Ok(bytes) = std::fs::read(&path)
            {
                inputs.push((path, bytes));
            }
        }
    }
    inputs.sort();
    inputs
}
