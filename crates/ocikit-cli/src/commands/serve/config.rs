//! `ocikit serve --config FILE`: a TOML file whose keys are `serve`'s flags, spelled as on
//! the command line without the leading `--` (`addr = "0.0.0.0:5000"`, `read-only = true`,
//! `htpasswd = ["a.htpasswd", "b.htpasswd"]`, `gc-interval = "6h"`). docs/serve.example.toml
//! shows every key.
//!
//! The file is turned into flags placed before the command line's own, and clap parses the
//! whole as usual: so the file carries every flag `serve` has (one added later included,
//! with no list to keep in step), each value goes through the flag's own parser and checks
//! (which flags need or exclude which), and a flag given on the command line replaces the
//! file's key of the same name (for repeatable flags too: the command line's list replaces
//! the file's). A key that is no flag, a value of the wrong kind, or one the flag's parser
//! refuses is an error naming the file and the key.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The flags that belong to clap, not to `serve`, and `--config` itself: never keys.
const NOT_KEYS: [&str; 3] = ["help", "version", "config"];

/// Returns `args` (the process's, program name first) with the flags of the config file
/// that `ocikit serve --config FILE` names placed before `serve`'s own; `args` unchanged when
/// the subcommand is not `serve` or there is no `--config`. `command` gives the CLI's clap
/// definition (only called when a file is read).
pub(crate) fn expand_args(
    args: Vec<OsString>,
    command: impl FnOnce() -> clap::Command,
) -> Result<Vec<OsString>, String> {
    // The subcommand is the first argument that is no flag (the global flags take no value).
    let Some(serve) = args
        .iter()
        .skip(1)
        .position(|a| !a.to_string_lossy().starts_with('-'))
        .map(|i| i + 1)
    else {
        return Ok(args);
    };
    if args[serve] != "serve" {
        return Ok(args);
    }
    let flags = &args[serve + 1..];
    let Some(file) = config_file(flags) else {
        return Ok(args);
    };
    let on_command_line = flag_names(flags);
    let root = command();
    let Some(serve_command) = root.find_subcommand("serve") else {
        return Ok(args);
    };
    let from_file = file_flags(&file, serve_command, &on_command_line)?;
    let keys: BTreeSet<String> = from_file
        .iter()
        .filter_map(|f| Some(long_name(f.to_str()?)?.to_owned()))
        .collect();
    let mut expanded = args[..=serve].to_vec();
    expanded.extend(from_file);
    expanded.extend_from_slice(flags);
    // A value a flag's parser refuses is named by its key when it came from the file; the
    // other errors (a missing --root, flags that exclude each other) clap reports as usual.
    if let Err(e) = root.try_get_matches_from(&expanded)
        && let Some(clap::error::ContextValue::String(arg)) =
            e.get(clap::error::ContextKind::InvalidArg)
        && let Some(key) = long_name(arg)
        && keys.contains(key)
    {
        let value = match e.get(clap::error::ContextKind::InvalidValue) {
            Some(clap::error::ContextValue::String(v)) => format!(" `{v}`"),
            _ => String::new(),
        };
        return Err(format!(
            "{}: key `{key}`: invalid value{value}: {}",
            file.display(),
            reason(&e)
        ));
    }
    Ok(expanded)
}

/// `addr` of `--addr <ADDR>` or `--addr=...`.
fn long_name(flag: &str) -> Option<&str> {
    let name = flag.strip_prefix("--")?;
    name.split([' ', '=']).next()
}

/// The value of `--config` among `serve`'s arguments, if any.
fn config_file(flags: &[OsString]) -> Option<PathBuf> {
    let mut flags = flags.iter();
    while let Some(flag) = flags.next() {
        if flag == "--" {
            return None;
        }
        if flag == "--config" {
            return flags.next().map(PathBuf::from);
        }
        if let Some(file) = flag.to_str().and_then(|f| f.strip_prefix("--config=")) {
            return Some(PathBuf::from(file));
        }
    }
    None
}

/// The long flags given on the command line (names without `--`).
fn flag_names(flags: &[OsString]) -> BTreeSet<String> {
    flags
        .iter()
        .map(|f| f.to_string_lossy())
        .take_while(|f| f != "--")
        .filter_map(|f| {
            let name = f.strip_prefix("--")?;
            Some(name.split('=').next().unwrap_or(name).to_owned())
        })
        .collect()
}

/// The flags `file` gives, leaving out those the command line gives.
fn file_flags(
    file: &Path,
    serve: &clap::Command,
    on_command_line: &BTreeSet<String>,
) -> Result<Vec<OsString>, String> {
    let shown = file.display();
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read the config file {shown}: {e}"))?;
    let table: toml::Table = toml::from_str(&text)
        .map_err(|e| format!("the config file {shown} is not valid TOML: {e}"))?;
    let mut flags = Vec::new();
    for (key, value) in &table {
        let arg = serve
            .get_arguments()
            .find(|a| a.get_long() == Some(key.as_str()) && !NOT_KEYS.contains(&key.as_str()))
            .ok_or_else(|| {
                format!(
                    "{shown}: unknown key `{key}` (the keys are serve's flags without `--`: {})",
                    keys(serve).join(", ")
                )
            })?;
        if on_command_line.contains(key) {
            continue;
        }
        let bad = |what: String| format!("{shown}: key `{key}`: {what}");
        if !arg.get_action().takes_values() {
            match value {
                toml::Value::Boolean(true) => flags.push(OsString::from(format!("--{key}"))),
                toml::Value::Boolean(false) => {}
                other => {
                    return Err(bad(format!(
                        "expected true or false, found {}",
                        other.type_str()
                    )));
                }
            }
            continue;
        }
        let values = match value {
            toml::Value::Array(items) => {
                if !matches!(arg.get_action(), clap::ArgAction::Append) {
                    return Err(bad("takes one value, not a list".to_owned()));
                }
                items.iter().map(scalar).collect::<Result<Vec<_>, _>>()
            }
            other => scalar(other).map(|v| vec![v]),
        }
        .map_err(bad)?;
        for value in values {
            flags.push(OsString::from(format!("--{key}={value}")));
        }
    }
    Ok(flags)
}

/// A string, number or boolean as the flag's text.
fn scalar(value: &toml::Value) -> Result<String, String> {
    match value {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(n) => Ok(n.to_string()),
        toml::Value::Float(x) => Ok(x.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        other => Err(format!(
            "expected a string, number or boolean, found {}",
            other.type_str()
        )),
    }
}

/// What a value parser said, without clap's `error:` prefix, usage and help lines.
fn reason(e: &clap::Error) -> String {
    let rendered = e.render().to_string();
    let first = rendered.lines().next().unwrap_or_default();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    // "invalid value 'x' for '--addr <ADDR>': the reason" -> "the reason"
    let why = match first.split_once("': ") {
        Some((_, why)) => why,
        None if first.starts_with("invalid value '") => "",
        None => first,
    };
    // Possible values, when clap lists them, are worth keeping.
    match rendered
        .lines()
        .find(|l| l.trim_start().starts_with("[possible values:"))
    {
        Some(possible) => format!("{why} {}", possible.trim()).trim().to_owned(),
        None => why.to_owned(),
    }
}

/// Every key a config file may hold.
fn keys(serve: &clap::Command) -> Vec<&str> {
    serve
        .get_arguments()
        .filter_map(|a| a.get_long())
        .filter(|l| !NOT_KEYS.contains(l))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::collections::BTreeMap;

    use clap::{Args as _, CommandFactory as _, FromArgMatches as _, Parser as _};

    use super::*;
    use crate::commands::serve::ServeArgs;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    /// `serve` alone, with clap's checks between flags (needs, excludes, required) off, so
    /// one flag at a time can be parsed.
    fn lenient() -> clap::Command {
        ServeArgs::augment_args(clap::Command::new("serve")).ignore_errors(true)
    }

    fn parse_lenient(args: &[OsString]) -> ServeArgs {
        let matches = lenient()
            .try_get_matches_from(args)
            .unwrap_or_else(|e| panic!("{args:?}: {e}"));
        let mut parsed = ServeArgs::from_arg_matches(&matches).unwrap();
        parsed.config = None;
        parsed
    }

    fn write(dir: &tempfile::TempDir, text: &str) -> PathBuf {
        let path = dir.path().join("serve.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    fn expand(file: &Path, extra: &[&str]) -> Result<Vec<OsString>, String> {
        let mut args = os(&["ocikit", "serve", "--config"]);
        args.push(file.as_os_str().to_owned());
        args.extend(os(extra));
        expand_args(args, crate::Cli::command)
    }

    /// A value for every flag of `serve` (not its default), as TOML and as the command line
    /// spells it. A flag added to `serve` without a line here fails
    /// `every_flag_round_trips_through_a_config_file`.
    fn samples() -> BTreeMap<&'static str, (&'static str, Vec<&'static str>)> {
        BTreeMap::from([
            ("root", (r#""/srv/registry""#, vec!["/srv/registry"])),
            ("addr", (r#""0.0.0.0:5001""#, vec!["0.0.0.0:5001"])),
            ("tls-cert", (r#""cert.pem""#, vec!["cert.pem"])),
            ("tls-key", (r#""key.pem""#, vec!["key.pem"])),
            (
                "htpasswd",
                (
                    r#"["a.htpasswd", "b.htpasswd"]"#,
                    vec!["a.htpasswd", "b.htpasswd"],
                ),
            ),
            (
                "htpasswd-read-only",
                (r#"["ro.htpasswd"]"#, vec!["ro.htpasswd"]),
            ),
            ("anonymous-read", ("true", vec![])),
            ("access", (r#""policy.json""#, vec!["policy.json"])),
            (
                "token-realm",
                (
                    r#""https://auth.example/token""#,
                    vec!["https://auth.example/token"],
                ),
            ),
            (
                "token-service",
                (r#""registry.example""#, vec!["registry.example"]),
            ),
            ("token-issuer", (r#""auth.example""#, vec!["auth.example"])),
            ("token-public-key", (r#""token.pem""#, vec!["token.pem"])),
            ("read-only", ("true", vec![])),
            ("no-delete", ("true", vec![])),
            (
                "log",
                (
                    r#""warn,ocikit_registry::access=info""#,
                    vec!["warn,ocikit_registry::access=info"],
                ),
            ),
            ("log-format", (r#""json""#, vec!["json"])),
            ("s3-bucket", (r#""images""#, vec!["images"])),
            ("s3-prefix", (r#""fleet/a""#, vec!["fleet/a"])),
            (
                "s3-endpoint",
                (r#""http://127.0.0.1:9000""#, vec!["http://127.0.0.1:9000"]),
            ),
            ("s3-region", (r#""eu-west-1""#, vec!["eu-west-1"])),
            ("gc-interval", (r#""6h""#, vec!["6h"])),
            ("delete-untagged", ("true", vec![])),
            ("grace", ("7200", vec!["7200"])),
            ("header-read-timeout", (r#""20s""#, vec!["20s"])),
            ("keep-alive-timeout", (r#""9s""#, vec!["9s"])),
            ("min-transfer-rate", ("4096", vec!["4096"])),
            ("min-rate-grace", (r#""30s""#, vec!["30s"])),
            ("max-connections", ("900", vec!["900"])),
            ("max-connections-per-client", ("64", vec!["64"])),
            ("max-upload-sessions", ("500", vec!["500"])),
            ("max-upload-sessions-per-client", ("20", vec!["20"])),
            ("max-upload-chunks", ("300", vec!["300"])),
            ("upload-ttl", (r#""2h""#, vec!["2h"])),
            ("read-rate", (r#""50/100""#, vec!["50/100"])),
            ("write-rate", (r#""off""#, vec!["off"])),
            ("auth-failure-rate", (r#""2/20""#, vec!["2/20"])),
            (
                "metrics-addr",
                (r#""127.0.0.1:9100""#, vec!["127.0.0.1:9100"]),
            ),
            (
                "metrics-token-file",
                (r#""metrics.token""#, vec!["metrics.token"]),
            ),
            ("shutdown-timeout", (r#""2m""#, vec!["2m"])),
            (
                "proxy",
                (
                    r#""docker://mirror.example""#,
                    vec!["docker://mirror.example"],
                ),
            ),
            ("proxy-tag-ttl", (r#""5m""#, vec!["5m"])),
            ("proxy-tls-verify", ("false", vec!["false"])),
            ("proxy-cert-dir", (r#""certs.d""#, vec!["certs.d"])),
            ("proxy-ca-file", (r#""ca.pem""#, vec!["ca.pem"])),
            ("proxy-creds", (r#""user:secret""#, vec!["user:secret"])),
            ("proxy-authfile", (r#""auth.json""#, vec!["auth.json"])),
        ])
    }

    #[test]
    fn every_flag_round_trips_through_a_config_file() {
        let samples = samples();
        let serve = lenient();
        let flags: Vec<&str> = keys(&serve);
        let missing: Vec<&&str> = flags
            .iter()
            .filter(|f| !samples.contains_key(**f))
            .collect();
        assert!(
            missing.is_empty(),
            "serve flags with no sample here (add them to samples()): {missing:?}"
        );
        let stale: Vec<&&str> = samples.keys().filter(|k| !flags.contains(k)).collect();
        assert!(
            stale.is_empty(),
            "samples of flags serve no longer has: {stale:?}"
        );
        let dir = tempfile::tempdir().unwrap();
        for (key, (toml_value, cli_values)) in &samples {
            let mut cli = os(&["serve"]);
            if cli_values.is_empty() {
                cli.push(format!("--{key}").into());
            }
            for v in cli_values {
                cli.push(format!("--{key}").into());
                cli.push(OsString::from(v));
            }
            let file = write(&dir, &format!("{key} = {toml_value}\n"));
            let expanded = expand(&file, &[]).unwrap();
            let from_file = parse_lenient(&expanded[1..]);
            let from_cli = parse_lenient(&cli);
            assert_eq!(
                format!("{from_file:?}"),
                format!("{from_cli:?}"),
                "key {key}"
            );
            let default = parse_lenient(&os(&["serve"]));
            assert_ne!(
                format!("{from_file:?}"),
                format!("{default:?}"),
                "the sample of {key} is its default: the round trip proves nothing"
            );
        }
    }

    #[test]
    fn the_documented_example_is_a_valid_whole() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/serve.example.toml");
        let expanded = expand(&example, &[]).unwrap();
        let cli = crate::Cli::try_parse_from(&expanded).unwrap_or_else(|e| panic!("{e}"));
        let text = format!("{cli:?}");
        for needle in [
            "0.0.0.0:5000",
            "metrics_addr: Some(127.0.0.1:9100)",
            "shutdown_timeout: 30s",
        ] {
            assert!(text.contains(needle), "{needle} in {text}");
        }
    }

    #[test]
    fn the_command_line_wins_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(
            &dir,
            "root = \"/from/file\"\naddr = \"127.0.0.1:7000\"\nhtpasswd = [\"file.htpasswd\"]\nread-only = true\n",
        );
        let expanded = expand(
            &file,
            &["--addr=127.0.0.1:7001", "--htpasswd", "cli.htpasswd"],
        )
        .unwrap();
        let cli = crate::Cli::try_parse_from(&expanded).unwrap_or_else(|e| panic!("{e}"));
        let text = format!("{cli:?}");
        assert!(
            text.contains("127.0.0.1:7001") && !text.contains("127.0.0.1:7000"),
            "{text}"
        );
        assert!(
            text.contains("cli.htpasswd") && !text.contains("file.htpasswd"),
            "{text}"
        );
        assert!(
            text.contains("/from/file") && text.contains("read_only: true"),
            "{text}"
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            (
                "root = \"/r\"\nlisten = \"0.0.0.0:5000\"\n",
                "unknown key `listen`",
            ),
            (
                "root = \"/r\"\nread_only = true\n",
                "unknown key `read_only`",
            ),
            (
                "root = \"/r\"\nconfig = \"other.toml\"\n",
                "unknown key `config`",
            ),
            ("[serve]\nroot = \"/r\"\n", "unknown key `serve`"),
            (
                "root = \"/r\"\naddr = \"not an address\"\n",
                "key `addr`: invalid value `not an address`",
            ),
            (
                "root = \"/r\"\ngc-interval = \"6 weeks\"\n",
                "key `gc-interval`: invalid value `6 weeks`",
            ),
            (
                "root = \"/r\"\nlog-format = \"xml\"\n",
                "key `log-format`: invalid value `xml`: [possible values: text, json]",
            ),
            (
                "root = \"/r\"\nmax-upload-chunks = -1\n",
                "key `max-upload-chunks`: invalid value `-1`",
            ),
            (
                "root = \"/r\"\nread-only = \"yes\"\n",
                "key `read-only`: expected true or false, found string",
            ),
            (
                "root = \"/r\"\naddr = [\"a\", \"b\"]\n",
                "key `addr`: takes one value, not a list",
            ),
            (
                "root = \"/r\"\nhtpasswd = [{ a = 1 }]\n",
                "key `htpasswd`: expected a string, number or boolean",
            ),
            ("root = \"/r\"\naddr = ", "is not valid TOML"),
        ];
        for (text, expected) in cases {
            let file = write(&dir, text);
            let error = expand(&file, &[]).unwrap_err();
            assert!(error.contains(expected), "{text:?}: {error}");
            assert!(error.contains(&file.display().to_string()), "{error}");
        }
        let error = expand(&dir.path().join("missing.toml"), &[]).unwrap_err();
        assert!(error.contains("cannot read the config file"), "{error}");
    }

    #[test]
    fn other_commands_and_serve_without_a_file_are_untouched() {
        for args in [
            os(&["ocikit", "ls", "oci:x", "--config", "f"]),
            os(&["ocikit", "--json", "serve", "--root", "r"]),
            os(&["ocikit"]),
            os(&["ocikit", "serve", "--", "--config", "f"]),
        ] {
            let expanded = expand_args(args.clone(), || panic!("no command needed")).unwrap();
            assert_eq!(expanded, args);
        }
    }
}
