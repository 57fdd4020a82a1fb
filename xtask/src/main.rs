//! ocikit's project tooling, run as `cargo xtask <command>`.
//!
//! - `ci [--time SECS] [--keep-going]`: everything CI checks (see `ci.rs`): formatting, tidy, lock files,
//!   clippy (with the MSRV lint), the dependencies' MSRV, cargo-deny's licence, ban and
//!   source checks, rustdoc, every test with every feature, every crate on its own (default
//!   features and `--no-default-features`), the facade's features one by one, and a short
//!   run of every fuzz target. Installs the cargo tools it needs (cargo-deny, cargo-fuzz)
//!   when they are missing; refuses arguments it does not know.
//! - `fuzz [--time SECS] [TARGET...]`: runs the fuzz targets (all by default).
//! - `bench [NAME...]`: runs the comparative benchmarks and rewrites their section of
//!   `docs/benchmarks.md` and their charts; `bench charts` redraws the charts from the tables.
//! - `docs`: regenerates `docs/cli.md` from the clap definition of the `ocikit` binary.
//! - `stress [TRIALS]`: the store's crash-safety test with thousands of SIGKILL trials.
//! - `tidy`: the repository checks that `cargo test` also runs (see `tidy.rs`).
//! - `release check | prepare <version> | publish --dry-run`: packaging checks, the version
//!   bump and changelog roll, and a publishing dry run (see `release.rs`; nothing is ever
//!   published from here).
//! - `deny [--advisories]`: cargo-deny's licence, ban and source checks (also run by `ci`);
//!   `--advisories` adds the RustSec advisory check, which fetches the advisory database
//!   from GitHub and so runs only where GitHub is reachable (not in CI).
//!
//! It depends on `serde_json` (reading `cargo metadata`), `semver` (release versions),
//! `toml_edit` (editing manifests without losing their comments), `chrono` (the changelog's
//! date) and plotters with only its SVG backend (the benchmark charts), so it builds in
//! seconds.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod bench;
mod ci;
mod docs;
mod metadata;
mod release;
mod skopeo_sigstore;
mod tidy;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use ci::ci;

type Result<T = (), E = String> = std::result::Result<T, E>;

const USAGE: &str = "usage: cargo xtask <command>

commands:
  ci [--time SECS] [--keep-going]
                              fmt check, tidy, lock files, clippy -D warnings (with the MSRV
                              lint), dependencies' MSRV, cargo-deny (licences, bans, sources),
                              rustdoc -D warnings, tests with all features (incl. doc tests),
                              each crate alone (default and --no-default-features), the
                              facade's features one by one, fuzz smoke (SECS each, default 5);
                              --keep-going: run every step, list the failures at the end
  fuzz [--time SECS] [TARGET...]
                              run fuzz targets (default: all, 60 s each)
  bench [NAME...|charts]      run benchmarks, rewrite docs/benchmarks.md and its charts
                              (`charts`: redraw docs/bench/*.svg from the tables only)
  docs                        regenerate docs/cli.md from the CLI's clap definition
  stress [TRIALS]             SIGKILL crash trials of the filesystem store (default 3000)
  install-tools               install what the tests need (skopeo, umoci, moto, cargo-fuzz)
  tidy                        repository checks (also run by `cargo test -p xtask`)
  release check [--no-verify] [--allow-dirty]
                              manifests complete, every publishable crate packages (in
                              dependency order), crates changed since the last tag
  release prepare <version> [--allow-dirty] [--no-ci]
                              bump the workspace and internal dependency versions, roll
                              CHANGELOG.md, refresh Cargo.lock, run `ci`
  release publish --dry-run [--no-verify] [--allow-dirty]
                              skip versions already on crates.io, `cargo publish --dry-run`
                              the rest, print the tag command (refuses without --dry-run:
                              nothing is published from xtask)
  deny [--advisories]         cargo-deny: licences, bans, sources (part of `ci`);
                              --advisories also checks RustSec (needs GitHub access)
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci(&args[1..]),
        Some("fuzz") => fuzz_command(&args[1..]),
        Some("bench") => bench::run(&args[1..]),
        Some("docs") => docs::run(&args[1..]),
        Some("stress") => stress(&args[1..]),
        Some("install-tools") => install_tools().map(|_| ()),
        Some("tidy") => tidy::check(&root()).map_err(|problems| problems.join("\n")),
        Some("release") => release::run(&args[1..]),
        Some("deny") => deny(&args[1..]),
        Some("-h" | "--help" | "help") => {
            print!("{USAGE}");
            Ok(())
        }
        _ => Err(format!("unknown or missing command\n\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root (the parent of this crate's directory).
pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

pub(crate) fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root());
    cmd
}

/// Runs a command, echoing it first, and fails with its description if it fails.
pub(crate) fn run(cmd: &mut Command) -> Result {
    let shown = format!("{cmd:?}");
    eprintln!("\n$ {shown}");
    let status = cmd
        .status()
        .map_err(|e| format!("cannot start {shown}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{shown} failed with {status}"))
    }
}

/// Announces a step of a longer command.
pub(crate) fn step(name: &str) {
    eprintln!("\n==> {name}");
}

fn parse_time(args: &[String]) -> Result<Option<u64>> {
    match args.iter().position(|a| a == "--time") {
        None => Ok(None),
        Some(i) => args
            .get(i + 1)
            .and_then(|s| s.parse().ok())
            .map(Some)
            .ok_or_else(|| "--time takes a number of seconds".to_string()),
    }
}

fn fuzz_command(args: &[String]) -> Result {
    let time = parse_time(args)?.unwrap_or(60);
    let mut targets = Vec::new();
    let mut skip = false;
    for arg in args {
        if skip {
            skip = false;
        } else if arg == "--time" {
            skip = true;
        } else {
            targets.push(arg.clone());
        }
    }
    fuzz(time, &targets)
}

/// The fuzz targets declared in `fuzz/Cargo.toml`.
pub(crate) fn fuzz_targets() -> Result<Vec<String>> {
    let manifest = std::fs::read_to_string(root().join("fuzz/Cargo.toml"))
        .map_err(|e| format!("cannot read fuzz/Cargo.toml: {e}"))?;
    let mut targets = Vec::new();
    let mut in_bin = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_bin = line == "[[bin]]";
        } else if in_bin
            && let Some(name) = line
                .strip_prefix("name = \"")
                .and_then(|s| s.strip_suffix('"'))
        {
            targets.push(name.to_string());
        }
    }
    Ok(targets)
}

/// Runs cargo-deny's licence, ban and source checks (deny.toml), installing cargo-deny
/// when missing. `--advisories` adds the advisory check, which clones the RustSec database
/// from GitHub: CI cannot reach GitHub, so it is opt-in, for machines with internet.
/// Installing cargo-deny is the slow part on a fresh machine: a cold `cargo install --locked
/// cargo-deny` (0.20.2) took 9 min 38 s on the 2 shared cores of the development machine,
/// under load (337 s of CPU); CI's time budget has room for it.
pub(crate) fn deny(args: &[String]) -> Result {
    let advisories = args.iter().any(|a| a == "--advisories");
    if let Some(other) = args.iter().find(|a| *a != "--advisories") {
        return Err(format!("deny: unknown argument {other}\n\n{USAGE}"));
    }
    ensure_cargo_tool("cargo-deny", CARGO_DENY)?;
    let mut checks = vec!["licenses", "bans", "sources"];
    if advisories {
        checks.push("advisories");
    }
    run(cargo()
        .args(["deny", "--locked", "check", "--hide-inclusion-graph"])
        .args(checks))
}

/// The cargo tools `ci` installs when missing, pinned: a fresh CI machine must get the
/// versions the checks were written against, not whatever crates.io has that day (a newer
/// release may need a newer toolchain or read deny.toml differently).
const CARGO_DENY: &str = "cargo-deny@0.20.2";
/// See [`CARGO_DENY`].
const CARGO_FUZZ: &str = "cargo-fuzz@0.13.2";

/// Installs a cargo subcommand from crates.io when it is not on the PATH.
fn ensure_cargo_tool(binary: &str, package: &str) -> Result {
    let present = Command::new(binary)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
        || cargo()
            .args([binary.trim_start_matches("cargo-"), "--version"])
            .output()
            .is_ok_and(|o| o.status.success());
    if present {
        return Ok(());
    }
    eprintln!("{binary} is missing: installing {package} from crates.io");
    run(cargo().args(["install", "--locked", package]))
}

fn command_runs(command: &str, path: Option<&std::ffi::OsStr>) -> bool {
    let mut cmd = Command::new(command);
    cmd.arg("--help")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    if let Some(path) = path {
        cmd.env("PATH", path);
    }
    cmd.status().is_ok()
}

/// Installs a Python tool from PyPI when its command is not on the PATH (the S3 tests need
/// `moto_server`, a real S3-compatible server they start on 127.0.0.1). Returns a PATH to
/// run the tests with, when the tool's directory had to be added to it.
fn ensure_python_tool(command: &str, requirement: &str) -> Result<Option<std::ffi::OsString>> {
    if command_runs(command, None) {
        return Ok(None);
    }
    eprintln!("{command} is missing: installing {requirement} from PyPI");
    run(Command::new("python3").args(["-m", "pip", "install", "--quiet", requirement]))?;
    // pyenv's shims appear only after a rehash.
    if Command::new("pyenv").arg("rehash").status().is_ok() && command_runs(command, None) {
        return Ok(None);
    }
    if command_runs(command, None) {
        return Ok(None);
    }
    // Otherwise put the interpreter's scripts directory on the PATH of the test run.
    let scripts = Command::new("python3")
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_path('scripts'))",
        ])
        .output()
        .map_err(|e| format!("cannot ask python3 for its scripts directory: {e}"))?;
    let scripts = String::from_utf8_lossy(&scripts.stdout).trim().to_string();
    let mut dirs = vec![PathBuf::from(&scripts)];
    dirs.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    let path = std::env::join_paths(dirs).map_err(|e| format!("cannot build PATH: {e}"))?;
    if command_runs(command, Some(&path)) {
        Ok(Some(path))
    } else {
        Err(format!(
            "installed {requirement}, but `{command}` is not in {scripts} or on the PATH"
        ))
    }
}

/// Installs Debian packages whose commands are missing (the interop tests run the real
/// skopeo, umoci and GNU tar). Needs root, as CI and the developers' machines run.
pub(crate) fn ensure_apt_tools(tools: &[(&str, &str)]) -> Result {
    let missing: Vec<&str> = tools
        .iter()
        .filter(|(command, _)| !command_runs(command, None))
        .map(|(_, package)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!(
        "missing commands: installing {} from Debian's packages",
        missing.join(" ")
    );
    let apt = |args: &[&str]| {
        run(Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(args))
    };
    apt(&["update", "-qq"])?;
    let mut install = vec!["install", "-y", "-qq", "--no-install-recommends"];
    install.extend(&missing);
    apt(&install)?;
    for (command, package) in tools {
        if !command_runs(command, None) {
            return Err(format!(
                "installed {package}, but `{command}` still does not run"
            ));
        }
    }
    Ok(())
}

/// Installs what the tests need: moto (the S3 tests), skopeo, umoci, GNU tar and
/// docker-registry (the interop tests), `skopeo-sigstore` (Debian 13's skopeo, built with
/// sigstore: the signing proof), script(1) (a terminal for the progress-bar test),
/// PyNaCl and cryptography (ocikit-sign's key-file peer), oras-py (the artifact tests'
/// peer), cargo-fuzz (the fuzz smoke run).
pub(crate) fn install_tools() -> Result<Option<std::ffi::OsString>> {
    ensure_apt_tools(&[
        ("skopeo", "skopeo"),
        ("umoci", "umoci"),
        ("tar", "tar"),
        ("docker-registry", "docker-registry"),
        ("script", "bsdutils"),
    ])?;
    // Issue 18's proof: a skopeo that signs with sigstore keys and checks `sigstoreSigned`
    // (Debian 12's is built without sigstore).
    skopeo_sigstore::ensure()?;
    let path = ensure_python_tool("moto_server", "moto[server]")?;
    // ocikit-sign's independent peer (crates/ocikit-sign/tests/sign/peer.py): libsodium's
    // secretbox through PyNaCl, OpenSSL's P-256 through cryptography.
    ensure_python_module("nacl.secret", "pynacl")?;
    ensure_python_module("cryptography", "cryptography")?;
    // oras-py, the independent client the artifact tests exchange files with.
    ensure_python_module("oras.client", "oras")?;
    ensure_cargo_tool("cargo-fuzz", CARGO_FUZZ)?;
    Ok(path)
}

/// Installs `requirement` from PyPI when `python3` cannot import `module`.
fn ensure_python_module(module: &str, requirement: &str) -> Result {
    let imports = |module: &str| {
        Command::new("python3")
            .args(["-c", &format!("import {module}")])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    };
    if imports(module) {
        return Ok(());
    }
    eprintln!("python3 cannot import {module}: installing {requirement} from PyPI");
    run(Command::new("python3").args(["-m", "pip", "install", "--quiet", requirement]))?;
    if imports(module) {
        Ok(())
    } else {
        Err(format!(
            "installed {requirement}, but python3 still cannot import {module}"
        ))
    }
}

/// Runs the filesystem store's SIGKILL crash test with many more trials than `cargo test`.
fn stress(args: &[String]) -> Result {
    let trials = args.first().map_or("3000", String::as_str);
    run(cargo().env("OCIKIT_CRASH_TRIALS", trials).args([
        "test",
        "--release",
        "-p",
        "ocikit-tests",
        "--test",
        "cross",
        "sigkilled",
        "--",
        "--nocapture",
    ]))
}

/// Runs every named fuzz target (all when `targets` is empty) for `seconds` each, starting
/// from its committed seeds. cargo-fuzz needs nightly flags; `RUSTC_BOOTSTRAP=1` lets the
/// stable toolchain accept them.
pub(crate) fn fuzz(seconds: u64, targets: &[String]) -> Result {
    ensure_cargo_tool("cargo-fuzz", CARGO_FUZZ)?;
    let all = fuzz_targets()?;
    let chosen: Vec<String> = if targets.is_empty() {
        all.clone()
    } else {
        targets.to_vec()
    };
    for target in &chosen {
        if !all.contains(target) {
            return Err(format!(
                "no fuzz target `{target}` (have: {})",
                all.join(", ")
            ));
        }
    }
    let fuzz_dir = root().join("fuzz");
    run(cargo()
        .current_dir(&fuzz_dir)
        .env("RUSTC_BOOTSTRAP", "1")
        .args(["fuzz", "build", "-O"]))?;
    for target in &chosen {
        let corpus = fuzz_dir.join("corpus").join(target);
        let seeds = fuzz_dir.join("seeds").join(target);
        std::fs::create_dir_all(&corpus)
            .map_err(|e| format!("cannot create {}: {e}", corpus.display()))?;
        let mut cmd = cargo();
        cmd.current_dir(&fuzz_dir)
            .env("RUSTC_BOOTSTRAP", "1")
            .args(["fuzz", "run", "-O", target])
            .arg(&corpus);
        if seeds.is_dir() {
            cmd.arg(&seeds);
        }
        cmd.args([
            "--",
            &format!("-max_total_time={seconds}"),
            "-rss_limit_mb=2048",
            "-print_final_stats=1",
        ]);
        run(&mut cmd)?;
    }
    Ok(())
}
