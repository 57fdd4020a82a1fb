//! `docs/cli.md` is what `ocikit __reference-markdown` prints: regenerate it with
//! `cargo xtask docs` whenever a command, option or help text changes.

use std::path::Path;

#[test]
fn docs_cli_md_is_the_generated_reference() {
    let generated = crate::ok(&["__reference-markdown"]);
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/cli.md");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != generated {
        let first = committed
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| committed.lines().count().min(generated.lines().count()));
        panic!(
            "docs/cli.md is stale (first difference at line {}): run `cargo xtask docs`",
            first + 1
        );
    }
}

#[test]
fn the_reference_documents_every_command_with_usage() {
    let generated = crate::ok(&["__reference-markdown"]);
    let help = crate::ok(&["--help"]);
    // Every command `--help` lists has its section and its usage line.
    let commands = help
        .split("Commands:")
        .nth(1)
        .unwrap()
        .split("\n\n")
        .next()
        .unwrap()
        .lines()
        // Command lines are indented by two spaces; wrapped help text by more.
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .collect::<Vec<_>>();
    assert!(commands.len() > 20, "{commands:?}");
    for name in commands {
        assert!(
            generated.contains(&format!("## `ocikit {name}`")),
            "no section for {name}"
        );
        assert!(
            generated.contains(&format!("**Usage:** `ocikit {name}")),
            "no usage line for {name}"
        );
    }
    // The hidden command documents nothing about itself.
    assert!(!generated.contains("__reference-markdown"));
}
