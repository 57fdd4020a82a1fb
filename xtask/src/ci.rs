//! `cargo xtask ci`: everything CI checks, in the order that fails cheapest first.
//!
//! 1. formatting (`cargo fmt --check`, the workspace and `fuzz/`), tidy, and both lock files
//!    current (`cargo metadata --locked`); every cargo command after this runs `--locked`;
//! 2. clippy on every target with every feature, `-D warnings`; the workspace denies
//!    `clippy::incompatible_msrv`, so this is also the MSRV check of our own code against the
//!    declared `rust-version` (with the one toolchain installed); the MSRV step then checks
//!    that no locked dependency declares a newer `rust-version`;
//! 3. cargo-deny (licences, bans, sources);
//! 4. `cargo doc --workspace --no-deps --all-features` with `RUSTDOCFLAGS=-D warnings`;
//! 5. every test, `--workspace --all-features` (unit, integration, doc tests, real tools);
//! 6. every crate on its own, so features are unified over X's graph only: its tests run
//!    with its default features (`cargo test -p X`), and it is type-checked with all its
//!    targets and `--no-default-features` when that differs (see [`per_crate_variants`]);
//! 7. the facade's features, each on its own (`--no-default-features --features F`),
//!    type-checked with its tests (`cargo check --all-targets`);
//! 8. a few seconds of every fuzz target.
//!
//! Each step's time is printed at the end (README.md's test-command section records the
//! measured totals). `--keep-going` runs every step even after a failure and lists the
//! failures at the end.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::metadata::{Package, Workspace};
use crate::{Result, cargo, root, run};

/// `cargo xtask ci`'s usage line, part of the tool's usage.
pub(crate) const USAGE: &str = "ci [--time SECS] [--keep-going]";

/// The clippy run: every target, every feature, warnings denied. `incompatible_msrv` is
/// named on its own so that it stays denied whatever the lint groups say: it is the MSRV
/// check of our code (an item of `std` stable only after the workspace's `rust-version`
/// fails it, with the one toolchain installed). Language features and the MSRV of
/// dependencies are not its business (the latter is checked by [`msrv_problems`]).
pub(crate) const CLIPPY: &[&str] = &[
    "clippy",
    "--locked",
    "--workspace",
    "--all-targets",
    "--all-features",
    "--",
    "-D",
    "warnings",
    "-D",
    "clippy::incompatible_msrv",
];

/// Workspace members not checked on their own: nobody picks them as a dependency and they
/// have no features (the cross-crate and real-tool tests; the project tooling).
const NOT_ALONE: &[&str] = &["ocikit-tests", "xtask"];

/// The facade: its features are checked one by one.
const FACADE: &str = "ocikit";

/// What `ci` was asked for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Options {
    /// Seconds each fuzz target runs in the smoke run.
    pub(crate) fuzz_time: u64,
    /// Run every step even after one failed, and list the failures at the end (to see all
    /// that is wrong at once, and to time a whole run).
    pub(crate) keep_going: bool,
}

/// Parses `ci`'s arguments, refusing anything it does not know (a misspelt flag must not
/// silently run a different CI).
pub(crate) fn parse(args: &[String]) -> Result<Options> {
    let mut options = Options {
        fuzz_time: 5,
        keep_going: false,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--time" => {
                options.fuzz_time = args.next().and_then(|s| s.parse().ok()).ok_or_else(|| {
                    format!("ci: --time takes a number of seconds\n\n{}", crate::USAGE)
                })?;
            }
            "--keep-going" => options.keep_going = true,
            other => {
                return Err(format!(
                    "ci: unknown argument `{other}`\n\nusage: cargo xtask {USAGE}\n\n{}",
                    crate::USAGE
                ));
            }
        }
    }
    Ok(options)
}

/// The steps run so far: their names, times and failures.
struct Steps {
    keep_going: bool,
    times: Vec<(String, Duration)>,
    failures: Vec<String>,
}

impl Steps {
    /// Runs one step, timed; a failure ends the run unless `keep_going`.
    fn run<T>(&mut self, name: &str, step: impl FnOnce() -> Result<T>) -> Result<Option<T>> {
        eprintln!("\n==> {name}");
        let started = Instant::now();
        let result = step();
        self.times.push((name.to_string(), started.elapsed()));
        match result {
            Ok(value) => Ok(Some(value)),
            Err(error) if self.keep_going => {
                eprintln!("\nxtask ci: step failed (going on): {name}: {error}");
                self.failures.push(format!("{name}: {error}"));
                Ok(None)
            }
            Err(error) => Err(error),
        }
    }

    fn report(&self) {
        eprintln!("\nstep times:");
        for (name, took) in &self.times {
            eprintln!("  {:>6.0}s  {name}", took.as_secs_f64());
        }
    }
}

/// Runs every check; see the module docs for the order.
pub(crate) fn ci(args: &[String]) -> Result {
    let options = parse(args)?;
    let started = Instant::now();
    let mut steps = Steps {
        keep_going: options.keep_going,
        times: Vec::new(),
        failures: Vec::new(),
    };
    let result = run_steps(&options, &mut steps);
    steps.report();
    let took = started.elapsed().as_secs();
    result?;
    if !steps.failures.is_empty() {
        return Err(format!(
            "{} step(s) failed in {}m{:02}s:\n{}",
            steps.failures.len(),
            took / 60,
            took % 60,
            steps.failures.join("\n")
        ));
    }
    eprintln!(
        "\nxtask ci: all checks passed in {}m{:02}s",
        took / 60,
        took % 60
    );
    Ok(())
}

fn run_steps(options: &Options, steps: &mut Steps) -> Result {
    steps.run("format", || {
        run(cargo().args(["fmt", "--all", "--", "--check"]))?;
        run(cargo().args(["fmt", "--manifest-path", "fuzz/Cargo.toml", "--", "--check"]))
    })?;

    steps.run("tidy", || {
        crate::tidy::check(&root()).map_err(|problems| problems.join("\n"))
    })?;

    steps.run("lock files current", || {
        // `cargo fuzz` has no `--locked`: this fails if fuzz/Cargo.lock would change.
        for manifest in ["Cargo.toml", "fuzz/Cargo.toml"] {
            run(cargo()
                .args(["metadata", "--locked", "--format-version", "1"])
                .arg("--manifest-path")
                .arg(manifest)
                .stdout(std::process::Stdio::null()))?;
        }
        Ok(())
    })?;

    steps.run(
        "clippy (and the MSRV of our code: clippy::incompatible_msrv)",
        || run(cargo().args(CLIPPY)),
    )?;

    steps.run("MSRV of the locked dependencies", msrv_of_dependencies)?;

    steps.run("cargo-deny (licences, bans, sources)", || crate::deny(&[]))?;

    steps.run("docs (rustdoc -D warnings)", || {
        run(cargo().env("RUSTDOCFLAGS", "-D warnings").args([
            "doc",
            "--locked",
            "--workspace",
            "--no-deps",
            "--all-features",
        ]))
    })?;

    let path = steps.run("test tools", crate::install_tools)?.flatten();
    let with_path = |cmd: &mut Command| {
        if let Some(path) = &path {
            cmd.env("PATH", path);
        }
    };

    steps.run(
        "tests, every crate and feature (unit, integration and doc tests)",
        || {
            let mut test = cargo();
            test.args(["test", "--locked", "--workspace", "--all-features"]);
            with_path(&mut test);
            run(&mut test)
        },
    )?;

    let workspace = Workspace::load(&root())?;
    for package in &workspace.packages {
        if NOT_ALONE.contains(&package.name.as_str()) {
            continue;
        }
        for variant in per_crate_variants(package) {
            steps.run(
                &format!("{} alone, {}", package.name, variant.describe()),
                || {
                    let mut cmd = cargo();
                    cmd.args(variant.args(&package.name));
                    with_path(&mut cmd);
                    run(&mut cmd)
                },
            )?;
        }
    }

    if let Some(facade) = workspace.package(FACADE) {
        for feature in facade_features(facade) {
            steps.run(&format!("{FACADE} with only `{feature}`"), || {
                run(cargo().args(facade_args(&feature)))
            })?;
        }
    }

    steps.run("fuzz smoke", || crate::fuzz(options.fuzz_time, &[]))?;
    Ok(())
}

/// The facade built with one feature and no other: type-checked with its tests
/// (`cargo check`, which shares its dependencies' metadata with clippy and rustdoc; the
/// examples of its docs run in the default and all-features runs).
pub(crate) fn facade_args(feature: &str) -> Vec<String> {
    [
        "check",
        "--locked",
        "-p",
        FACADE,
        "--all-targets",
        "--no-default-features",
        "--features",
        feature,
    ]
    .into_iter()
    .map(str::to_string)
    .collect()
}

/// One way of building a crate on its own.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Variant {
    /// `--no-default-features`.
    pub(crate) no_default_features: bool,
    /// Build and run its tests (`cargo test`), rather than type-check every target.
    pub(crate) run_tests: bool,
}

impl Variant {
    fn describe(&self) -> &'static str {
        match (self.run_tests, self.no_default_features) {
            (true, false) => "tests with default features",
            (true, true) => "tests with --no-default-features",
            (false, false) => "default features (check)",
            (false, true) => "--no-default-features (check)",
        }
    }

    /// `cargo test` of the crate (unit, integration and doc tests), or `cargo check` of it
    /// and all its targets (tests, benches, examples); features unified over its own
    /// dependency graph only.
    pub(crate) fn args(&self, package: &str) -> Vec<String> {
        let mut args = if self.run_tests {
            vec!["test", "--locked", "-p", package]
        } else {
            vec!["check", "--locked", "-p", package, "--all-targets"]
        };
        if self.no_default_features {
            args.push("--no-default-features");
        }
        args.into_iter().map(str::to_string).collect()
    }
}

/// The ways a crate is built on its own: its tests built and run with its default features
/// (`cargo test -p X`: the way a user of the crate compiles it, which is what the workspace
/// run, with every feature of every crate unified, cannot show); and, when its default
/// features are not empty, type-checked with all its targets and
/// `--no-default-features`. Measured on the 2-core machine, each crate's tests
/// alone built in 0.5 to 3 minutes and ran in 2 to 54 seconds (README.md, test command);
/// running the `--no-default-features` builds as well would cost as much again, and what
/// differs there (code or tests needing a feature nobody declared) is a compile error,
/// which the type-check finds.
pub(crate) fn per_crate_variants(package: &Package) -> Vec<Variant> {
    let mut variants = vec![Variant {
        no_default_features: false,
        run_tests: true,
    }];
    if package
        .features
        .get("default")
        .is_some_and(|d| !d.is_empty())
    {
        variants.push(Variant {
            no_default_features: true,
            run_tests: false,
        });
    }
    variants
}

/// The facade's public features (not `default`, not the `__`-prefixed internal ones), each
/// checked on its own: the combinations its docs describe are "default", "all" and each
/// feature added alone, and the first two are covered by the steps before.
pub(crate) fn facade_features(package: &Package) -> Vec<String> {
    package
        .features
        .keys()
        .filter(|f| *f != "default" && !f.starts_with("__"))
        .cloned()
        .collect()
}

/// Fails if a dependency in the lock file declares a `rust-version` newer than the
/// workspace's: the toolchain here is newer than the MSRV, so building alone would not notice.
fn msrv_of_dependencies() -> Result {
    let output = cargo()
        .args([
            "metadata",
            "--locked",
            "--all-features",
            "--format-version",
            "1",
        ])
        .output()
        .map_err(|e| format!("cannot run cargo metadata: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let metadata: Value = serde_json::from_slice(&output.stdout)
        .map_err(|e| format!("bad cargo metadata JSON: {e}"))?;
    let problems = msrv_problems(&metadata)?;
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

/// Parses `1.89` or `1.89.0` into comparable numbers.
fn rust_version(text: &str) -> Option<(u64, u64, u64)> {
    let mut parts = text.split('.').map(|p| p.parse::<u64>().ok());
    let major = parts.next()??;
    let minor = parts.next().unwrap_or(Some(0))?;
    let patch = parts.next().unwrap_or(Some(0))?;
    parts.next().is_none().then_some((major, minor, patch))
}

/// The packages of a `cargo metadata` (with dependencies) whose `rust_version` is newer than
/// the workspace members'.
pub(crate) fn msrv_problems(metadata: &Value) -> Result<Vec<String>> {
    let packages = metadata["packages"]
        .as_array()
        .ok_or("cargo metadata has no packages")?;
    let members: Vec<&str> = metadata["workspace_members"]
        .as_array()
        .map(|ids| ids.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let msrv = packages
        .iter()
        .filter(|p| p["id"].as_str().is_some_and(|id| members.contains(&id)))
        .filter_map(|p| p["rust_version"].as_str())
        .filter_map(|v| rust_version(v).map(|parsed| (parsed, v)))
        .min()
        .ok_or("no workspace member declares a rust-version")?;
    let mut problems = Vec::new();
    for package in packages {
        let Some(declared) = package["rust_version"].as_str() else {
            continue;
        };
        match rust_version(declared) {
            Some(v) if v <= msrv.0 => {}
            Some(_) => problems.push(format!(
                "{} {} needs Rust {declared}, newer than the workspace's rust-version {}",
                package["name"].as_str().unwrap_or("?"),
                package["version"].as_str().unwrap_or("?"),
                msrv.1
            )),
            None => problems.push(format!(
                "{} declares an unreadable rust-version {declared:?}",
                package["name"].as_str().unwrap_or("?")
            )),
        }
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn unknown_arguments_are_refused_with_the_usage() {
        for bad in [&["--fast"][..], &["all"], &["--time", "3", "extra"]] {
            let error = parse(&args(bad)).expect_err("refused");
            assert!(error.contains("unknown argument"), "{error}");
            assert!(
                error.contains("usage: cargo xtask ci [--time SECS]"),
                "{error}"
            );
        }
        let error = parse(&args(&["--time", "soon"])).expect_err("not a number");
        assert!(error.contains("--time takes a number"), "{error}");
        let error = parse(&args(&["--time"])).expect_err("missing number");
        assert!(error.contains("--time takes a number"), "{error}");
    }

    #[test]
    fn known_arguments_are_taken() {
        assert_eq!(
            parse(&[]),
            Ok(Options {
                fuzz_time: 5,
                keep_going: false
            })
        );
        assert_eq!(
            parse(&args(&["--keep-going", "--time", "30"])),
            Ok(Options {
                fuzz_time: 30,
                keep_going: true
            })
        );
    }

    #[test]
    fn the_ci_command_refuses_before_running_anything() {
        // `ci` parses first: an unknown argument fails at once, with no cargo run.
        let started = Instant::now();
        let error = ci(&args(&["--bogus"])).expect_err("refused");
        assert!(error.contains("unknown argument `--bogus`"), "{error}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn keep_going_runs_the_next_steps_and_remembers_the_failure() {
        let mut steps = Steps {
            keep_going: true,
            times: Vec::new(),
            failures: Vec::new(),
        };
        assert_eq!(steps.run("bad", || Err::<(), _>("broken".into())), Ok(None));
        assert_eq!(steps.run("good", || Ok(7)), Ok(Some(7)));
        assert_eq!(steps.failures, ["bad: broken"]);
        assert_eq!(steps.times.len(), 2);

        let mut steps = Steps {
            keep_going: false,
            times: Vec::new(),
            failures: Vec::new(),
        };
        assert_eq!(
            steps.run("bad", || Err::<(), _>("broken".into())),
            Err("broken".to_string())
        );
    }

    #[test]
    fn the_facade_is_checked_with_one_feature_and_no_other() {
        assert_eq!(
            facade_args("s3"),
            args(&[
                "check",
                "--locked",
                "-p",
                "ocikit",
                "--all-targets",
                "--no-default-features",
                "--features",
                "s3"
            ])
        );
    }

    fn package(features: &[(&str, &[&str])]) -> Package {
        Package {
            name: "p".into(),
            features: features
                .iter()
                .map(|(f, e)| (f.to_string(), e.iter().map(|s| s.to_string()).collect()))
                .collect::<BTreeMap<_, _>>(),
            ..Package::default()
        }
    }

    #[test]
    fn no_default_features_is_built_only_when_it_differs() {
        let with_defaults = package(&[("default", &["gzip"]), ("gzip", &[])]);
        let variants = per_crate_variants(&with_defaults);
        assert_eq!(
            variants,
            [
                Variant {
                    no_default_features: false,
                    run_tests: true,
                },
                Variant {
                    no_default_features: true,
                    run_tests: false,
                }
            ]
        );
        assert_eq!(
            variants[0].args("p"),
            args(&["test", "--locked", "-p", "p"])
        );
        assert_eq!(
            variants[1].args("p"),
            args(&[
                "check",
                "--locked",
                "-p",
                "p",
                "--all-targets",
                "--no-default-features"
            ])
        );
        for same in [
            package(&[]),
            package(&[("default", &[]), ("tokio", &["dep:tokio"])]),
        ] {
            assert_eq!(per_crate_variants(&same).len(), 1);
        }
    }

    #[test]
    fn facade_features_leave_out_default_and_internal_ones() {
        let facade = package(&[
            ("default", &["fs"]),
            ("fs", &[]),
            ("s3", &["fs"]),
            ("__fuzz", &[]),
        ]);
        assert_eq!(facade_features(&facade), ["fs", "s3"]);
    }

    #[test]
    fn versions_compare_as_numbers() {
        assert_eq!(rust_version("1.89"), Some((1, 89, 0)));
        assert_eq!(rust_version("1.89.1"), Some((1, 89, 1)));
        assert!(rust_version("1.100") > rust_version("1.89"));
        assert_eq!(rust_version("1.x"), None);
        assert_eq!(rust_version("1.2.3.4"), None);
    }

    #[test]
    fn a_dependency_newer_than_the_msrv_is_found() {
        let metadata = serde_json::json!({
            "workspace_members": ["a", "b"],
            "packages": [
                {"id": "a", "name": "a", "version": "0.1.0", "rust_version": "1.89"},
                {"id": "b", "name": "b", "version": "0.1.0", "rust_version": "1.89"},
                {"id": "old", "name": "old", "version": "1.0.0", "rust_version": "1.63"},
                {"id": "none", "name": "none", "version": "1.0.0", "rust_version": null},
                {"id": "same", "name": "same", "version": "2.0.0", "rust_version": "1.89.0"},
                {"id": "new", "name": "new", "version": "3.1.0", "rust_version": "1.90"},
            ]
        });
        let problems = msrv_problems(&metadata).expect("readable");
        assert_eq!(
            problems,
            ["new 3.1.0 needs Rust 1.90, newer than the workspace's rust-version 1.89"]
        );
    }

    #[test]
    fn the_locked_dependencies_fit_the_msrv() {
        msrv_of_dependencies().expect("every locked dependency builds on the MSRV");
    }
}
