//! `cargo xtask docs`: regenerates `docs/cli.md`, the command-line reference, from the clap
//! definition of the `ocikit` binary (its hidden `__reference-markdown` command). The CLI's
//! tests fail while the committed file differs from what the binary prints.

use crate::{Result, cargo, root};

pub(crate) fn run(args: &[String]) -> Result {
    if let Some(arg) = args.first() {
        return Err(format!("`xtask docs` takes no arguments (got `{arg}`)"));
    }
    let out = cargo()
        .args([
            "run",
            "--quiet",
            "--package",
            "ocikit-cli",
            "--bin",
            "ocikit",
            "--",
            "__reference-markdown",
        ])
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "ocikit __reference-markdown failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let markdown =
        String::from_utf8(out.stdout).map_err(|_| "the reference is not UTF-8".to_string())?;
    let path = root().join("docs/cli.md");
    let before = std::fs::read_to_string(&path).unwrap_or_default();
    if before == markdown {
        eprintln!("docs/cli.md is up to date");
        return Ok(());
    }
    std::fs::write(&path, markdown).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    eprintln!("wrote docs/cli.md");
    Ok(())
}
