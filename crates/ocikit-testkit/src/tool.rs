//! External tools, found on `PATH` (never at a hard-coded path): under CI a missing tool
//! fails the test that needs it; elsewhere the test is told to skip, and it says so.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::in_ci;

/// The first `name` on `PATH` that is a file, without judging its absence.
pub fn find_tool(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    })
}

/// `name` on `PATH`. Under CI a missing tool panics (CI must run every test); elsewhere the
/// caller gets `None`, with a line on stderr saying what is skipped.
pub fn require_tool(name: &str) -> Option<PathBuf> {
    match find_tool(name) {
        Some(path) => Some(path),
        None => {
            assert!(
                !in_ci(),
                "required tool `{name}` is not on PATH, and CI must run every test that needs it"
            );
            eprintln!("skipping: `{name}` is not on PATH");
            None
        }
    }
}

/// An external tool found on `PATH`, with the arguments every call of it takes.
#[derive(Clone, Debug)]
pub struct Tool {
    name: String,
    path: PathBuf,
    leading: Vec<OsString>,
}

impl Tool {
    /// `name` as [`require_tool`] finds it: `None` (skip) only outside CI.
    pub fn require(name: &str) -> Option<Tool> {
        Some(Tool {
            name: name.to_owned(),
            path: require_tool(name)?,
            leading: Vec::new(),
        })
    }

    /// The same tool, with `arg` before every call's own arguments.
    pub fn with_leading_arg(mut self, arg: impl Into<OsString>) -> Tool {
        self.leading.push(arg.into());
        self
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A command running it with its leading arguments.
    pub fn command(&self) -> Command {
        let mut command = Command::new(&self.path);
        command.args(&self.leading);
        command
    }

    /// The same as an async (tokio) command, for tests inside a runtime.
    pub fn tokio_command(&self) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(&self.path);
        command.args(&self.leading);
        command
    }

    /// Runs it with `args` and returns what it did, success or not.
    pub fn output(&self, args: &[&str]) -> Output {
        self.command()
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.path.display()))
    }

    /// Runs it with `args`, expects success and returns its stdout (as text).
    pub fn ok(&self, args: &[&str]) -> String {
        success(&self.name, args, self.output(args))
    }

    /// [`Tool::ok`] inside a tokio runtime (the runtime's threads stay free meanwhile).
    pub async fn ok_async(&self, args: &[&str]) -> String {
        let output = self
            .tokio_command()
            .args(args)
            .output()
            .await
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.path.display()));
        success(&self.name, args, output)
    }
}

fn success(name: &str, args: &[&str], output: Output) -> String {
    assert!(
        output.status.success(),
        "{name} {args:?} failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap_or_else(|e| panic!("{name} {args:?}: {e}"))
}

/// skopeo, with `--insecure-policy` (no `policy.json` needed; tests talk only to 127.0.0.1).
pub fn skopeo() -> Option<Tool> {
    Tool::require("skopeo").map(|t| t.with_leading_arg("--insecure-policy"))
}

/// `skopeo-sigstore`, as [`require_tool`] finds it: Debian 13's skopeo, built with sigstore
/// (it signs with `--sign-by-sigstore-private-key` and checks `sigstoreSigned` policies;
/// Debian 12's `skopeo` cannot), installed by `cargo xtask install-tools`. No leading
/// `--insecure-policy`: its callers test policies.
pub fn skopeo_sigstore() -> Option<Tool> {
    Tool::require("skopeo-sigstore")
}

/// umoci, as [`require_tool`] finds it.
pub fn umoci() -> Option<Tool> {
    Tool::require("umoci")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tools_are_found_on_path_and_run() {
        let sh = Tool::require("sh").expect("sh is on PATH");
        assert!(sh.path().is_absolute());
        assert_eq!(sh.ok(&["-c", "echo hi"]), "hi\n");
        assert!(find_tool("ocikit-testkit-no-such-tool").is_none());
    }

    #[test]
    fn a_failing_tool_names_itself_and_its_stderr() {
        let sh = Tool::require("sh").expect("sh is on PATH");
        let failed = std::panic::catch_unwind(|| sh.ok(&["-c", "echo broken >&2; exit 3"]));
        let message = failed.expect_err("a failing tool must panic");
        let message = message.downcast_ref::<String>().expect("a formatted panic");
        assert!(message.contains("broken"), "{message}");
        assert!(message.starts_with("sh "), "{message}");
    }
}
