//! Repository checks, run by `cargo xtask tidy`, by `cargo xtask ci`, and as a `#[test]` so
//! that a plain `cargo test` enforces them too.
//!
//! - every crate's `lib.rs` opens with `//!` docs holding an example;
//! - docs/ARCHITECTURE.md has a code-map heading (`` ### `name` ``) for every workspace
//!   member, and every crate has a README;
//! - the crate rules of docs/ARCHITECTURE.md hold, read from `cargo metadata`: each crate depends only
//!   on the ocikit crates its row allows (dev-dependencies only on lower layers), and tokio
//!   stays optional and out of `ocikit-digest`'s default features;
//! - every public error enum (one deriving `Error`, or named `…Error`/`…ErrorKind`) is
//!   `#[non_exhaustive]`;
//! - no `#[should_panic]` anywhere (tests assert on error values);
//! - the files CI and the docs rely on exist, and every fuzz target has seeds.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::metadata::{Kind, Package, Workspace};

/// The ocikit crates from the bottom layer up: each with its layer (crates of one layer sit
/// side by side and never depend on each other) and the ocikit crates its normal and build
/// dependencies may name (the crate rules of docs/ARCHITECTURE.md). Dev-dependencies may name any crate of a
/// lower layer, and those of [`DEV_BESIDE`].
const LAYERS: &[(&str, u8, &[&str])] = &[
    // Test support (unpublished): below everything, so that every crate may dev-depend on it.
    ("ocikit-testkit", 0, &[]),
    ("ocikit-digest", 1, &[]),
    // Layer 1½ in docs/ARCHITECTURE.md (beside digest, using only it); layers here are whole
    // numbers, so it counts as 2, and only the crates that list it may use it.
    ("ocikit-sign", 2, &["ocikit-digest"]),
    ("ocikit-store", 2, &["ocikit-digest"]),
    ("ocikit-codec", 2, &["ocikit-digest"]),
    (
        "ocikit-layout",
        3,
        &["ocikit-digest", "ocikit-store", "ocikit-codec"],
    ),
    // The registry server never uses layouts, codecs or the client.
    ("ocikit-registry", 4, &["ocikit-digest", "ocikit-store"]),
    (
        "ocikit-client",
        4,
        &["ocikit-digest", "ocikit-store", "ocikit-layout"],
    ),
    // The copy engine between every kind of location (layouts, archives, registries).
    (
        "ocikit-transport",
        5,
        &[
            "ocikit-digest",
            "ocikit-store",
            "ocikit-codec",
            "ocikit-layout",
            "ocikit-client",
            "ocikit-sign",
            // Only optionally, behind its `proxy` feature (see OPTIONAL_ONLY).
            "ocikit-registry",
        ],
    ),
    (
        "ocikit",
        6,
        &[
            "ocikit-digest",
            "ocikit-store",
            "ocikit-codec",
            "ocikit-layout",
            "ocikit-registry",
            "ocikit-client",
            "ocikit-transport",
            "ocikit-sign",
        ],
    ),
    ("ocikit-cli", 7, &["ocikit"]),
];

/// Dev-dependencies allowed on a crate of the same layer: the client's tests run it against
/// the registry server.
const DEV_BESIDE: &[(&str, &str)] = &[("ocikit-client", "ocikit-registry")];

/// Normal dependencies [`LAYERS`] allows only as optional ones: the transport implements the
/// registry server's pull-through `Upstream` over the client behind its `proxy` feature, the
/// one place that sees both (the server may never depend on the client).
const OPTIONAL_ONLY: &[(&str, &str)] = &[("ocikit-transport", "ocikit-registry")];

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
    let workspace = match Workspace::load(root) {
        Ok(workspace) => workspace,
        Err(e) => return Err(vec![e]),
    };
    let architecture =
        std::fs::read_to_string(root.join("docs/ARCHITECTURE.md")).unwrap_or_default();
    if architecture.is_empty() {
        problems.push("docs/ARCHITECTURE.md is missing or empty".into());
    }
    let mut members: Vec<String> = workspace.packages.iter().map(member_name).collect();
    members.sort();
    problems.extend(code_map_problems(&architecture, &members));
    for name in &crates {
        let dir = root.join("crates").join(name);
        let lib = dir.join("src/lib.rs");
        if lib.is_file() {
            let text = std::fs::read_to_string(&lib).unwrap_or_default();
            problems.extend(lib_docs_problems(
                &format!("crates/{name}/src/lib.rs"),
                &text,
            ));
        }
        if !dir.join("README.md").is_file() {
            problems.push(format!("crates/{name}/README.md is missing"));
        }
    }
    problems.extend(dependency_problems(&workspace, &root.join("crates")));

    for file in rust_files(&root.join("crates")) {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let shown = file
            .strip_prefix(root)
            .unwrap_or(&file)
            .display()
            .to_string();
        if shown.contains("/src/") {
            problems.extend(error_enum_problems(&shown, &text));
        }
    }
    for dir in ["crates", "tests", "xtask", "fuzz"] {
        for file in rust_files(&root.join(dir)) {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            let shown = file
                .strip_prefix(root)
                .unwrap_or(&file)
                .display()
                .to_string();
            problems.extend(should_panic_problems(&shown, &text));
        }
    }

    for file in [
        "README.md",
        "CHANGELOG.md",
        "deny.toml",
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

/// The name a workspace member goes by in the code map: the package name for the crates
/// under crates/, the directory for the others (`tests`, `xtask`).
fn member_name(package: &Package) -> String {
    let dir = package.dir();
    if dir.parent().and_then(Path::file_name) == Some("crates".as_ref()) {
        package.name.clone()
    } else {
        dir.file_name().map_or_else(
            || package.name.clone(),
            |d| d.to_string_lossy().into_owned(),
        )
    }
}

/// A `lib.rs` must open with `//!` docs, and those must hold an example.
fn lib_docs_problems(shown: &str, text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if !text.starts_with("//!") {
        problems.push(format!("{shown} does not open with `//!` docs"));
    }
    let docs: String = text
        .lines()
        .take_while(|l| l.starts_with("//!"))
        .collect::<Vec<_>>()
        .join("\n");
    if !docs.contains("```") {
        problems.push(format!("{shown} has no example in its `//!` docs"));
    }
    problems
}

/// Every name in `names` has a code-map heading in ARCHITECTURE.md: a line starting with
/// ``### `name` ``.
fn code_map_problems(architecture: &str, names: &[String]) -> Vec<String> {
    names
        .iter()
        .filter(|name| {
            let heading = format!("### `{name}`");
            !architecture.lines().any(|l| {
                l.strip_prefix(&heading)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with(' '))
            })
        })
        .map(|name| format!("docs/ARCHITECTURE.md has no code-map entry (### `{name}`)"))
        .collect()
}

/// The crate rules (docs/ARCHITECTURE.md), from the workspace's metadata. Every package under `crates_dir`
/// must have a row in [`LAYERS`].
fn dependency_problems(workspace: &Workspace, crates_dir: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    let rank = |name: &str| LAYERS.iter().position(|(layer, _, _)| *layer == name);
    let level = |name: &str| rank(name).map(|r| LAYERS[r].1);
    let internal: BTreeSet<&str> = workspace.packages.iter().map(|p| p.name.as_str()).collect();
    for package in &workspace.packages {
        let name = package.name.as_str();
        let Some(own_rank) = rank(name) else {
            if package.dir().starts_with(crates_dir) {
                problems.push(format!(
                    "{name} has no row in tidy's crate rules (xtask/src/tidy.rs LAYERS): \
                     say which ocikit crates it may use"
                ));
            }
            continue;
        };
        let (_, own_level, allowed) = LAYERS[own_rank];
        for dep in &package.dependencies {
            let dep_name = dep.name.as_str();
            if !internal.contains(dep_name) && dep.path.is_none() {
                continue;
            }
            match dep.kind {
                Kind::Normal | Kind::Build if !allowed.contains(&dep_name) => {
                    problems.push(format!(
                        "{name} depends on {dep_name}, which the crate rules forbid \
                         (it may use: {})",
                        if allowed.is_empty() {
                            "no ocikit crate".to_string()
                        } else {
                            allowed.join(", ")
                        }
                    ));
                }
                Kind::Normal | Kind::Build
                    if !dep.optional && OPTIONAL_ONLY.contains(&(name, dep_name)) =>
                {
                    problems.push(format!(
                        "{name} depends on {dep_name}, which the crate rules allow only as an \
                         optional dependency (behind a feature)"
                    ));
                }
                Kind::Dev
                    if level(dep_name).is_none_or(|l| l >= own_level)
                        && !DEV_BESIDE.contains(&(name, dep_name)) =>
                {
                    problems.push(format!(
                        "{name} has a dev-dependency on {dep_name}, which is not a lower layer"
                    ));
                }
                _ => {}
            }
        }
    }
    if let Some(digest) = workspace.package("ocikit-digest") {
        problems.extend(tokio_out_of_defaults(digest));
    }
    problems
}

/// tokio must be an optional dependency of `package` that its default features do not
/// enable.
fn tokio_out_of_defaults(package: &Package) -> Vec<String> {
    let mut problems = Vec::new();
    let name = &package.name;
    let tokio: Vec<_> = package
        .dependencies
        .iter()
        .filter(|d| d.name == "tokio" && d.kind != Kind::Dev)
        .collect();
    if tokio.iter().any(|d| !d.optional) {
        problems.push(format!("{name} depends on tokio unconditionally"));
    }
    // Walk the features `default` turns on.
    let mut seen = BTreeSet::new();
    let mut todo = vec!["default".to_string()];
    while let Some(feature) = todo.pop() {
        if !seen.insert(feature.clone()) {
            continue;
        }
        for enabled in package.features.get(&feature).into_iter().flatten() {
            let dep = enabled
                .strip_prefix("dep:")
                .or_else(|| enabled.split_once('/').map(|(d, _)| d))
                .filter(|d| !d.ends_with('?'));
            if dep == Some("tokio")
                || (enabled == "tokio" && !package.features.contains_key("tokio"))
            {
                problems.push(format!(
                    "{name}'s default features enable tokio (through `{feature} = [\"{enabled}\"]`)"
                ));
            }
            if package.features.contains_key(enabled) {
                todo.push(enabled.clone());
            }
        }
    }
    problems
}

/// The public error enums of a source file that are not `#[non_exhaustive]`.
fn error_enum_problems(shown: &str, text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut problems = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(rest) = line.trim_start().strip_prefix("pub enum ") else {
            continue;
        };
        let enum_name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        // The attributes and docs directly above the enum.
        let mut start = i;
        while start > 0 {
            let above = lines[start - 1].trim();
            let attribute_or_doc = above.starts_with('#') || above.starts_with("//");
            if above.is_empty()
                || (!attribute_or_doc
                    && (above.ends_with('}') || above.ends_with(';') || above.ends_with('{')))
            {
                break;
            }
            start -= 1;
        }
        let attributes: String = lines[start..i]
            .iter()
            .map(|l| l.trim())
            .filter(|l| !l.starts_with("//"))
            .collect::<Vec<_>>()
            .join(" ");
        let derives_error = attributes
            .split("derive(")
            .skip(1)
            .filter_map(|d| d.split(')').next())
            .flat_map(|list| list.split(','))
            .map(str::trim)
            .any(|d| d == "Error" || d.ends_with("::Error"));
        let named_error = enum_name.ends_with("Error") || enum_name.ends_with("ErrorKind");
        if (derives_error || named_error) && !attributes.contains("#[non_exhaustive]") {
            problems.push(format!(
                "{shown}:{}: public error enum `{enum_name}` is not #[non_exhaustive]",
                i + 1
            ));
        }
    }
    problems
}

/// `#[should_panic]` is not used: tests assert on error values instead. An attribute opens
/// its line, which tells it from the mentions in docs and messages.
fn should_panic_problems(shown: &str, text: &str) -> Vec<String> {
    // Spelt in two halves so that this file does not trip its own check.
    let needle = concat!("#[", "should_panic");
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.trim_start().starts_with(needle))
        .map(|(i, _)| {
            format!(
                "{shown}:{}: #[should_panic] is not used here; assert on the error instead",
                i + 1
            )
        })
        .collect()
}

/// Every `.rs` file under `dir`, skipping build output (`target/`) and hidden directories.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.filter_map(|e| e.ok()) {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                if name != "target" && !name.starts_with('.') {
                    dirs.push(path);
                }
            } else if kind.is_file() && name.ends_with(".rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::Dependency;
    use crate::metadata::tests::workspace;

    #[test]
    fn repository_is_tidy() {
        if let Err(problems) = super::check(&crate::root()) {
            panic!("tidy found problems:\n{}", problems.join("\n"));
        }
    }

    #[test]
    fn lib_docs_must_open_the_file_and_hold_an_example() {
        let good = "//! A crate.\n//!\n//! ```\n//! let x = 1;\n//! ```\n\nmod a;\n";
        assert!(lib_docs_problems("lib.rs", good).is_empty());
        let no_docs = "#![forbid(unsafe_code)]\n//! A crate.\n//! ```\n//! ```\n";
        assert_eq!(
            lib_docs_problems("lib.rs", no_docs),
            [
                "lib.rs does not open with `//!` docs",
                "lib.rs has no example in its `//!` docs"
            ]
        );
        let example_elsewhere = "//! A crate.\n\n/// ```\n/// x\n/// ```\npub fn f() {}\n";
        assert_eq!(
            lib_docs_problems("lib.rs", example_elsewhere),
            ["lib.rs has no example in its `//!` docs"]
        );
    }

    #[test]
    fn code_map_needs_a_heading_per_crate() {
        let map = "# Architecture\n\n### `ocikit-digest`\ntext mentioning `ocikit-store`\n\
                   ### `ocikit` (facade)\n### `ocikit-codecs`\n";
        let names: Vec<String> = ["ocikit-digest", "ocikit-store", "ocikit", "ocikit-codec"]
            .map(String::from)
            .into();
        assert_eq!(
            code_map_problems(map, &names),
            [
                "docs/ARCHITECTURE.md has no code-map entry (### `ocikit-store`)",
                "docs/ARCHITECTURE.md has no code-map entry (### `ocikit-codec`)",
            ]
        );
    }

    fn dev(name: &str) -> Dependency {
        Dependency {
            name: name.into(),
            req: "^0.1.0".into(),
            path: Some(PathBuf::from(format!("/ws/crates/{name}"))),
            kind: Kind::Dev,
            optional: false,
        }
    }

    #[test]
    fn dependency_rules_follow_the_layers() {
        let good = workspace(&[
            ("ocikit-digest", true, &[]),
            ("ocikit-store", true, &["ocikit-digest"]),
            ("ocikit-codec", true, &["ocikit-digest"]),
            (
                "ocikit-layout",
                true,
                &["ocikit-digest", "ocikit-store", "ocikit-codec"],
            ),
            ("ocikit-cli", true, &["ocikit"]),
            ("ocikit", true, &["ocikit-digest", "ocikit-layout"]),
            ("ocikit-tests", false, &["ocikit-layout", "ocikit-codec"]),
        ]);
        let mut good = good;
        good.packages[6].manifest_path = PathBuf::from("/ws/tests/Cargo.toml");
        let crates = Path::new("/ws/crates");
        assert_eq!(dependency_problems(&good, crates), Vec::<String>::new());

        let mut bad = workspace(&[
            ("ocikit-digest", true, &[]),
            ("ocikit-store", true, &["ocikit-digest", "ocikit-codec"]),
            ("ocikit-codec", true, &["ocikit-digest"]),
            ("ocikit-cli", true, &["ocikit", "ocikit-layout"]),
            ("ocikit-newcomer", true, &[]),
        ]);
        bad.packages[1].dependencies.push(dev("ocikit-codec"));
        bad.packages[2].dependencies.push(dev("ocikit-digest"));
        assert_eq!(
            dependency_problems(&bad, crates),
            [
                "ocikit-store depends on ocikit-codec, which the crate rules forbid (it may use: ocikit-digest)",
                "ocikit-store has a dev-dependency on ocikit-codec, which is not a lower layer",
                "ocikit-cli depends on ocikit-layout, which the crate rules forbid (it may use: ocikit)",
                "ocikit-newcomer has no row in tidy's crate rules (xtask/src/tidy.rs LAYERS): say which ocikit crates it may use",
            ]
        );
        // Server and client sit side by side: the server uses neither layouts nor the
        // client; only the client's tests may use the server.
        let mut split = workspace(&[
            (
                "ocikit-registry",
                true,
                &["ocikit-digest", "ocikit-store", "ocikit-layout"],
            ),
            ("ocikit-client", true, &["ocikit-layout"]),
        ]);
        split.packages[0].dependencies.push(dev("ocikit-client"));
        split.packages[1].dependencies.push(dev("ocikit-registry"));
        assert_eq!(
            dependency_problems(&split, crates),
            [
                "ocikit-registry depends on ocikit-layout, which the crate rules forbid (it may use: ocikit-digest, ocikit-store)",
                "ocikit-registry has a dev-dependency on ocikit-client, which is not a lower layer",
            ]
        );
        let digest_up = workspace(&[("ocikit-digest", true, &["ocikit-store"])]);
        assert_eq!(
            dependency_problems(&digest_up, crates),
            [
                "ocikit-digest depends on ocikit-store, which the crate rules forbid (it may use: no ocikit crate)"
            ]
        );
    }

    fn digest_with(features: &[(&str, &[&str])], tokio_optional: bool) -> Package {
        let mut ws = workspace(&[("ocikit-digest", true, &[])]);
        let mut package = ws.packages.remove(0);
        package.features = features
            .iter()
            .map(|(f, list)| (f.to_string(), list.iter().map(|s| s.to_string()).collect()))
            .collect();
        package.dependencies.push(Dependency {
            name: "tokio".into(),
            req: "^1".into(),
            path: None,
            kind: Kind::Normal,
            optional: tokio_optional,
        });
        package
    }

    #[test]
    fn tokio_stays_out_of_the_digest_defaults() {
        let good = digest_with(
            &[
                ("default", &["std"]),
                ("std", &["tokio?/io-util"]),
                ("tokio", &["dep:tokio"]),
            ],
            true,
        );
        assert!(tokio_out_of_defaults(&good).is_empty());
        let through_feature = digest_with(
            &[
                ("default", &["fast"]),
                ("fast", &["async"]),
                ("async", &["dep:tokio"]),
            ],
            true,
        );
        assert_eq!(
            tokio_out_of_defaults(&through_feature),
            ["ocikit-digest's default features enable tokio (through `async = [\"dep:tokio\"]`)"]
        );
        let through_subfeature = digest_with(&[("default", &["tokio/io-util"])], true);
        assert_eq!(tokio_out_of_defaults(&through_subfeature).len(), 1);
        let implicit = digest_with(&[("default", &["tokio"])], true);
        assert_eq!(tokio_out_of_defaults(&implicit).len(), 1);
        let unconditional = digest_with(&[("default", &[])], false);
        assert_eq!(
            tokio_out_of_defaults(&unconditional),
            ["ocikit-digest depends on tokio unconditionally"]
        );
    }

    #[test]
    fn public_error_enums_must_be_non_exhaustive() {
        let text = r#"
/// Fine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    A,
}

/// Derives Error, not non_exhaustive.
#[derive(
    Debug,
    Error,
)]
pub enum Failure {
    A,
}

/// Named like an error.
#[derive(Debug)]
pub enum ParseErrorKind {
    A,
}

#[derive(Debug, Clone)]
pub enum Mode {
    A,
}

pub(crate) enum PrivateError {
    A,
}
"#;
        assert_eq!(
            error_enum_problems("x.rs", text),
            [
                "x.rs:14: public error enum `Failure` is not #[non_exhaustive]",
                "x.rs:20: public error enum `ParseErrorKind` is not #[non_exhaustive]",
            ]
        );
    }

    #[test]
    fn should_panic_is_refused() {
        let attribute = format!("#[{}]", "should_panic");
        let text = format!("#[test]\n{attribute}\nfn boom() {{}}\n");
        assert_eq!(
            should_panic_problems("t.rs", &text),
            ["t.rs:2: #[should_panic] is not used here; assert on the error instead"]
        );
        let with_reason = format!("#[{}(expected = \"x\")]", "should_panic");
        assert_eq!(should_panic_problems("t.rs", &with_reason).len(), 1);
        assert!(should_panic_problems("t.rs", "// should panic? no\n").is_empty());
    }

    #[test]
    fn rust_files_skip_build_output() {
        let dir = tempfile::tempdir().expect("temp dir");
        for file in [
            "src/lib.rs",
            "src/a/b.rs",
            "target/debug/x.rs",
            ".hidden/y.rs",
            "README.md",
        ] {
            let path = dir.path().join(file);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(&path, "").expect("write");
        }
        let found: Vec<PathBuf> = rust_files(dir.path())
            .into_iter()
            .map(|p| p.strip_prefix(dir.path()).expect("inside").to_path_buf())
            .collect();
        assert_eq!(
            found,
            [PathBuf::from("src/a/b.rs"), PathBuf::from("src/lib.rs")]
        );
    }
}
