//! Shared helpers for ocikit's cross-crate and real-tool tests (an unpublished crate).
//!
//! ```
//! let root = ocikit_tests::workspace_root();
//! assert!(root.join("Cargo.toml").is_file());
//! ```

#![allow(clippy::print_stderr)] // test helpers say why a test skips

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

/// Whether tests run under CI, where a missing external tool is a failure, not a skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Finds an external tool on the PATH. Under CI a missing tool fails the test; elsewhere the
/// caller gets `None` and may skip, saying so.
pub fn require_tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    });
    match found {
        Some(path) => Some(path),
        None if in_ci() => panic!("required tool `{name}` is not installed (CI=true)"),
        None => {
            eprintln!("skipping: `{name}` is not installed");
            None
        }
    }
}

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
