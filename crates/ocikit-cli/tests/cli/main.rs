//! End-to-end tests of the `ocikit` binary: real directories, real processes, output and
//! exit codes checked, `--json` parsed back, and bad input refused with nothing changed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod artifact;
mod copy;
mod crash;
mod docker;
mod hostile_load;
mod image;
mod layout;
mod manage;
mod real_world_append;
mod real_world_archives;
mod real_world_build_from;
mod real_world_cli;
mod real_world_export;
mod real_world_format;
mod real_world_index;
mod real_world_layers;
mod real_world_ls;
mod real_world_mutate;
mod real_world_rebase;
mod real_world_registry;
mod real_world_review;
mod real_world_store;
mod real_world_tarw;
mod real_world_unpack;
mod reference;
mod referrers_copy;
mod registry;
mod repack;
mod serve;
mod serve_config;
mod signatures_travel;
mod signing;
mod snapshot;
mod staged_pull;
mod sync;

use std::path::Path;
use std::process::{Command, Output};

/// Runs `ocikit` with `args`.
pub(crate) fn ocikit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ocikit"))
        .args(args)
        .env_remove("SOURCE_DATE_EPOCH")
        // No registry credentials but what a test gives (never the developer's logins).
        .env("DOCKER_CONFIG", "/nonexistent/ocikit-tests-docker-config")
        .output()
        .expect("run ocikit")
}

/// skopeo (with `--insecure-policy`), for a test that has checked it is installed.
pub(crate) fn skopeo() -> ocikit_testkit::Tool {
    ocikit_testkit::tool::skopeo().expect("skopeo is installed")
}

/// Runs `ocikit` and expects success; returns stdout.
pub(crate) fn ok(args: &[&str]) -> String {
    let out = ocikit(args);
    assert!(
        out.status.success(),
        "ocikit {args:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs `ocikit` and expects failure with exit status 1 and a one-screen error on stderr;
/// returns stderr.
pub(crate) fn fails(args: &[&str]) -> String {
    let out = ocikit(args);
    assert_eq!(
        out.status.code(),
        Some(1),
        "ocikit {args:?} should fail with 1:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(
        stderr.lines().count() <= 24,
        "error longer than a screen:\n{stderr}"
    );
    assert!(out.stdout.is_empty(), "failed command printed to stdout");
    stderr
}

/// Runs `ocikit --json` with `args`, expects success, and parses its output.
pub(crate) fn json(args: &[&str]) -> serde_json::Value {
    let mut with_json = vec!["--json"];
    with_json.extend_from_slice(args);
    serde_json::from_str(&ok(&with_json)).unwrap()
}

/// The example tree of the README's first command.
pub(crate) fn example() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/example-rootfs")
}

/// [`example`] as a command-line argument.
pub(crate) fn example_arg() -> &'static str {
    static ARG: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ARG.get_or_init(|| example().display().to_string())
}

/// `oci:PATH[...]` for a path.
pub(crate) fn oci(path: &Path, rest: &str) -> String {
    format!("oci:{}{rest}", path.display())
}

/// Every file under `dir` with its bytes, to show that a failed command changed nothing.
pub(crate) fn contents(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push((path.clone(), std::fs::read(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}
