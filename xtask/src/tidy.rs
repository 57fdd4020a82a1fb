//! Repository checks, run by `cargo xtask tidy`, by `cargo xtask ci`, and as a `#[test]` so
//! that a plain `cargo test` enforces them too.

use std::path::Path;

/// Checks the repository at `root`, returning every problem found.
pub(crate) fn check(root: &Path) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    let crates = match std::fs::read_dir(root.join("crates")) {
        Ok(entries) => {
            let mut names: Vec<String> = entries
                .filter_map(|e| e.ok())
                .filter(|e| e.path().join("Cargo.toml").is_file())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        }
        Err(e) => return Err(vec![format!("cannot list crates/: {e}")]),
    };
    let architecture =
        std::fs::read_to_string(root.join("docs/ARCHITECTURE.md")).unwrap_or_default();
    if architecture.is_empty() {
        problems.push("docs/ARCHITECTURE.md is missing or empty".into());
    }
    for name in &crates {
        let dir = root.join("crates").join(name);
        let lib = dir.join("src/lib.rs");
        if lib.is_file() {
            let text = std::fs::read_to_string(&lib).unwrap_or_default();
            if !text.starts_with("//!") {
                problems.push(format!(
                    "crates/{name}/src/lib.rs does not open with `//!` docs"
                ));
            }
            if !text.contains("```") {
                problems.push(format!(
                    "crates/{name}/src/lib.rs has no example in its docs"
                ));
            }
        }
        if !architecture.contains(&format!("`{name}`")) {
            problems.push(format!(
                "docs/ARCHITECTURE.md has no code-map entry for `{name}`"
            ));
        }
        if !dir.join("README.md").is_file() {
            problems.push(format!("crates/{name}/README.md is missing"));
        }
    }
    for file in [
        "README.md",
        ".ci/run",
        ".cargo/config.toml",
        "docs/benchmarks.md",
    ] {
        if !root.join(file).is_file() {
            problems.push(format!("{file} is missing"));
        }
    }
    // Every fuzz target has committed seeds.
    if let Ok(targets) = crate::fuzz_targets() {
        for target in targets {
            let seeds = root.join("fuzz/seeds").join(&target);
            let count = std::fs::read_dir(&seeds).map(|d| d.count()).unwrap_or(0);
            if count == 0 {
                problems.push(format!(
                    "fuzz target `{target}` has no seeds in fuzz/seeds/{target}"
                ));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn repository_is_tidy() {
        if let Err(problems) = super::check(&crate::root()) {
            panic!("tidy found problems:\n{}", problems.join("\n"));
        }
    }
}
