//! What the commands print: text for people, JSON for programs, errors once with their
//! causes.

#![allow(clippy::print_stdout, clippy::print_stderr)] // a command-line program prints

use std::io::Write;
use std::process::ExitCode;

use serde::Serialize;

/// How the commands print.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Output {
    pub(crate) json: bool,
    pub(crate) quiet: bool,
}

impl Output {
    pub(crate) fn new(json: bool, quiet: bool) -> Output {
        Output { json, quiet }
    }

    /// Prints `value` as JSON (with `--json`), or the text `human` builds (unless `-q`).
    pub(crate) fn show<T: Serialize>(
        &self,
        value: &T,
        human: impl FnOnce() -> String,
    ) -> anyhow::Result<()> {
        self.answer(value, human, String::new)
    }

    /// As [`Output::show`] for a read command, whose `-q` prints its essential answer:
    /// the lines `quiet` builds (digests, tags), and nothing else.
    pub(crate) fn answer<T: Serialize>(
        &self,
        value: &T,
        human: impl FnOnce() -> String,
        quiet: impl FnOnce() -> String,
    ) -> anyhow::Result<()> {
        let mut stdout = std::io::stdout().lock();
        if self.json {
            serde_json::to_writer_pretty(&mut stdout, value)?;
            writeln!(stdout)?;
        } else {
            let text = if self.quiet { quiet() } else { human() };
            stdout.write_all(text.as_bytes())?;
            if !text.is_empty() && !text.ends_with('\n') {
                writeln!(stdout)?;
            }
        }
        stdout.flush()?;
        Ok(())
    }

    /// A status line for people, on stderr so that stdout stays clean, unless `-q`.
    pub(crate) fn status(&self, text: &str) {
        if !self.quiet {
            let _ = writeln!(std::io::stderr().lock(), "{text}");
        }
    }

    /// Prints an error and its causes, once each, and returns the failure exit code; a
    /// closed standard output (the reader went away, as with `| head`) ends quietly with
    /// success, as coreutils do.
    pub(crate) fn fail(&self, err: &anyhow::Error) -> ExitCode {
        if is_broken_pipe(err) {
            return ExitCode::SUCCESS;
        }
        let mut stderr = std::io::stderr().lock();
        let mut above = err.to_string();
        let _ = writeln!(stderr, "error: {above}");
        for cause in err.chain().skip(1) {
            let text = cause.to_string();
            // Some libraries repeat their cause's message inside their own (the S3 store,
            // several levels deep): a cause the line above already says is left out.
            if text.is_empty() || above.contains(&text) {
                continue;
            }
            let _ = writeln!(stderr, "  caused by: {text}");
            above = text;
        }
        ExitCode::FAILURE
    }
}

/// Whether `err` (or any of its causes) is a write to a pipe nobody reads any more.
pub(crate) fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            || cause
                .downcast_ref::<serde_json::Error>()
                .and_then(serde_json::Error::io_error_kind)
                == Some(std::io::ErrorKind::BrokenPipe)
    })
}

/// `1536` → `1.5 KiB`.
pub(crate) fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// `5400 s` → `1h 30m`, as `--grace` takes it.
pub(crate) fn human_duration(duration: std::time::Duration) -> String {
    let mut left = duration.as_secs();
    let mut parts = Vec::new();
    for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if left >= size {
            parts.push(format!("{}{unit}", left / size));
            left %= size;
        }
    }
    if parts.is_empty() {
        "0s".into()
    } else {
        parts.join(" ")
    }
}

/// The first 12 hex digits of a digest's encoded part, as `docker images` shows them.
pub(crate) fn short_digest(digest: &str) -> &str {
    let encoded = digest.split_once(':').map_or(digest, |(_, e)| e);
    &encoded[..encoded.len().min(12)]
}

/// `n` and `noun`, plural unless `n` is 1 ("1 image", "3 images").
pub(crate) fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("{n} {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_digests_read_well() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(5 << 30), "5.0 GiB");
        assert_eq!(short_digest("sha256:0123456789abcdef"), "0123456789ab");
        assert_eq!(short_digest("sha256:01"), "01");
        let secs = std::time::Duration::from_secs;
        assert_eq!(human_duration(secs(0)), "0s");
        assert_eq!(human_duration(secs(5400)), "1h 30m");
        assert_eq!(human_duration(secs(90_061)), "1d 1h 1m 1s");
    }

    #[test]
    fn only_a_broken_pipe_is_quiet() {
        let pipe = anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::BrokenPipe))
            .context("cannot write the blob");
        assert!(is_broken_pipe(&pipe));
        let full = anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::StorageFull))
            .context("cannot write the blob");
        assert!(!is_broken_pipe(&full));
        let json = serde_json::to_writer(Closed, &1).unwrap_err();
        assert!(is_broken_pipe(&anyhow::Error::new(json)));
    }

    /// A writer whose reader went away.
    struct Closed;

    impl std::io::Write for Closed {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
