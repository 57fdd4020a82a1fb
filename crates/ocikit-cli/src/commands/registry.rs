//! `registry-gc`, the flags it shares with `serve` (the registry's storage, the collection
//! options), and how a collection is shown.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use ocikit::registry::{GcOptions, GcReport, RepositoryGc, S3Location, Storage};
use serde::Serialize;

use crate::output::{Output, human_size};

/// The collection options `registry-gc` and `serve --gc-interval` share.
#[derive(Clone, Debug, clap::Args)]
pub(crate) struct GcArgs {
    /// Also remove manifests that no tag, tagged index or kept subject keeps.
    #[arg(long)]
    pub(crate) delete_untagged: bool,
    /// Keep anything written less than this long ago (`90s`, `30m`, `1h`, `2d`; plain
    /// numbers are seconds): longer than any client takes between its blobs and its manifest.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub(crate) grace: Duration,
}

/// A registry kept in an S3 bucket, as `serve` and `registry-gc` take it.
#[derive(Debug, clap::Args)]
pub(crate) struct S3Args {
    /// The S3 bucket the registry keeps its content in, instead of a directory
    /// (credentials from the AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY environment).
    #[arg(long, value_name = "BUCKET")]
    pub(crate) s3_bucket: Option<String>,
    /// The key prefix in the bucket: content under PREFIX/content, uploads under
    /// PREFIX/uploads.
    #[arg(
        long,
        default_value = "registry",
        requires = "s3_bucket",
        value_name = "PREFIX"
    )]
    s3_prefix: String,
    /// The endpoint of an S3-compatible server (`http://` allowed for it).
    #[arg(long, requires = "s3_bucket", value_name = "URL")]
    s3_endpoint: Option<String>,
    /// The bucket's region (else AWS_REGION).
    #[arg(long, requires = "s3_bucket")]
    s3_region: Option<String>,
}

/// Where `serve` and `registry-gc` find the registry: the directory `root`, else the
/// bucket of `s3`.
pub(crate) fn storage(root: Option<PathBuf>, s3: &S3Args) -> Result<Storage> {
    if let Some(root) = root {
        return Ok(Storage::Directory(root));
    }
    let Some(bucket) = &s3.s3_bucket else {
        anyhow::bail!("a registry needs --root DIR or --s3-bucket BUCKET");
    };
    let mut location = S3Location::new(bucket).with_prefix(&s3.s3_prefix);
    if let Some(endpoint) = &s3.s3_endpoint {
        location = location.with_endpoint(endpoint);
    }
    if let Some(region) = &s3.s3_region {
        location = location.with_region(region);
    }
    Ok(Storage::S3(location))
}

/// `90`, `90s`, `30m`, `2h`, `1d` as a duration.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{s}` is not a duration such as 90s, 30m, 1h or 2d"))?;
    let scale = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("unknown unit `{unit}` (use s, m, h or d)")),
    };
    n.checked_mul(scale)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("`{s}` is too long"))
}

impl GcArgs {
    /// The library's options for these flags.
    pub(crate) fn options(&self) -> GcOptions {
        GcOptions::new()
            .grace(self.grace)
            .delete_untagged(self.delete_untagged)
    }
}

/// The `--json` shape of a collection: totals first, then the details.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Shown<'a> {
    dry_run: bool,
    manifests_removed: usize,
    links_removed: usize,
    blobs_removed: usize,
    bytes_freed: u64,
    blobs_kept_young: usize,
    blobs_restored: usize,
    blobs: Vec<String>,
    repositories: &'a [RepositoryGc],
}

/// One line saying what a collection removed (or would), and what it kept as too young.
pub(crate) fn summary(report: &GcReport, grace: Duration) -> String {
    let verb = if report.dry_run {
        "would remove"
    } else {
        "removed"
    };
    format!(
        "{verb} {} manifests, {} links, {} blobs ({}); {} unreferenced blobs younger than {} s kept",
        report.manifests_removed(),
        report.links_removed(),
        report.blobs_removed.len(),
        human_size(report.bytes_freed),
        report.blobs_kept_young.len(),
        grace.as_secs()
    )
}

/// An error and its causes, `: `-separated (anyhow's `{:#}`).
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// `ocikit registry-gc`, on the registry in `root` or in the bucket of `s3`.
pub(crate) async fn gc(
    root: Option<&Path>,
    s3: &S3Args,
    dry_run: bool,
    repositories: Vec<String>,
    args: &GcArgs,
    out: &Output,
) -> Result<()> {
    let storage = storage(root.map(Path::to_path_buf), s3)?;
    let mut options = args.options().dry_run(dry_run);
    if !repositories.is_empty() {
        options = options.repositories(repositories);
    }
    let report = storage
        .collect_garbage(&options)
        .await
        .with_context(|| format!("cannot collect garbage in {storage}"))?;
    let shown = Shown {
        dry_run,
        manifests_removed: report.manifests_removed(),
        links_removed: report.links_removed(),
        blobs_removed: report.blobs_removed.len(),
        bytes_freed: report.bytes_freed,
        blobs_kept_young: report.blobs_kept_young.len(),
        blobs_restored: report.blobs_restored.len(),
        blobs: report
            .blobs_removed
            .iter()
            .map(ToString::to_string)
            .collect(),
        repositories: &report.repositories,
    };
    out.show(&shown, || {
        let verb = if dry_run { "would remove" } else { "removed" };
        let mut text = String::new();
        for repo in &report.repositories {
            if repo.skipped {
                text.push_str(&format!(
                    "{}: skipped (its manifests kept changing)\n",
                    repo.name
                ));
            } else if !repo.manifests_removed.is_empty() || !repo.links_removed.is_empty() {
                text.push_str(&format!(
                    "{}: {verb} {} manifests, {} links ({})\n",
                    repo.name,
                    repo.manifests_removed.len(),
                    repo.links_removed.len(),
                    human_size(repo.links_removed_bytes)
                ));
            }
        }
        for d in &shown.blobs {
            text.push_str(&format!("{verb} {d}\n"));
        }
        text.push_str(&summary(&report, args.grace));
        text
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("2d").unwrap(), Duration::from_secs(172_800));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert!(parse_duration("1w").is_err());
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("99999999999999999d").is_err());
    }
}
