//! `fsck`, `gc`, `attach`, `referrers`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use ocikit::layout::{Artifact, FsckOptions, GcOptions};
use serde::Serialize;

use crate::bars::Bars;
use crate::location::Location;
use crate::output::{Output, human_duration, human_size};

pub(crate) async fn fsck(location: &Location, diff_ids: bool, out: &Output) -> Result<ExitCode> {
    let bars = Bars::new(out);
    let options = FsckOptions::new()
        .with_diff_ids(diff_ids)
        .with_progress(bars.progress("check"));
    let report = ocikit::transport::fsck(location, &options).await;
    drop(bars);
    let report = report?;
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Problem {
        digest: String,
        path: String,
        problem: String,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Report {
        clean: bool,
        blobs_checked: u64,
        bytes_checked: u64,
        problems: Vec<Problem>,
    }
    let shown = Report {
        clean: report.is_clean(),
        blobs_checked: report.blobs_checked,
        bytes_checked: report.bytes_checked,
        problems: report
            .problems
            .iter()
            .map(|p| Problem {
                digest: p.digest.to_string(),
                path: p.path.clone(),
                problem: p.kind.to_string(),
            })
            .collect(),
    };
    out.show(&shown, || {
        let mut text = String::new();
        for p in &shown.problems {
            text.push_str(&format!(
                "{}: {} (reached by {})\n",
                p.digest, p.problem, p.path
            ));
        }
        text.push_str(&format!(
            "{} blobs ({}) checked, {}",
            shown.blobs_checked,
            human_size(shown.bytes_checked),
            match shown.problems.len() {
                0 => "no problems".to_string(),
                1 => "1 problem".to_string(),
                n => format!("{n} problems"),
            }
        ));
        text
    })?;
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub(crate) async fn gc(
    location: &Location,
    dry_run: bool,
    grace: Duration,
    out: &Output,
) -> Result<()> {
    let options = GcOptions::new().with_dry_run(dry_run).with_grace(grace);
    let report = ocikit::transport::gc(location, &options).await?;
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Report {
        dry_run: bool,
        removed: Vec<String>,
        removed_bytes: u64,
        kept_young: usize,
        reachable: usize,
    }
    let shown = Report {
        dry_run,
        removed: report.removed.iter().map(ToString::to_string).collect(),
        removed_bytes: report.removed_bytes,
        kept_young: report.kept_young.len(),
        reachable: report.reachable,
    };
    out.show(&shown, || {
        let verb = if dry_run { "would remove" } else { "removed" };
        let mut text = String::new();
        for d in &shown.removed {
            text.push_str(&format!("{verb} {d}\n"));
        }
        text.push_str(&format!(
            "{verb} {} blobs ({}); {} reachable; {} unreferenced but younger than {} kept",
            shown.removed.len(),
            human_size(shown.removed_bytes),
            shown.reachable,
            shown.kept_young,
            human_duration(grace)
        ));
        text
    })
}

/// What `ocikit attach` was asked for.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  ocikit attach oci:./images:v1 --artifact-type application/vnd.example.sbom+json sbom.json"
)]
pub(crate) struct AttachArgs {
    /// The subject image: oci:PATH:TAG or oci:PATH@DIGEST.
    image: String,
    /// The artifact's type (a media type).
    #[arg(long)]
    artifact_type: String,
    /// Files to attach, one layer each.
    files: Vec<PathBuf>,
    /// The media type of the files' layers.
    #[arg(long, default_value = "application/octet-stream")]
    file_type: String,
    /// Manifest annotations, KEY=VALUE.
    #[arg(long = "annotation", value_name = "KEY=VALUE")]
    annotations: Vec<String>,
}

pub(crate) async fn attach(args: AttachArgs, out: &Output) -> Result<()> {
    let location = Location::parse(&args.image)?;
    let mut artifact = Artifact::new(&args.artifact_type);
    for file in &args.files {
        let bytes =
            std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
        artifact = artifact.with_blob(&args.file_type, bytes);
    }
    for a in &args.annotations {
        let Some((k, v)) = a.split_once('=') else {
            bail!("--annotation `{a}` is not KEY=VALUE");
        };
        artifact = artifact.with_annotation(k, v);
    }
    let attached = ocikit::transport::attach(&location, &artifact).await?;
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Attached {
        subject: String,
        artifact: String,
        #[serde(rename = "artifactType")]
        artifact_type: String,
    }
    let shown = Attached {
        subject: attached.subject.digest().to_string(),
        artifact: attached.artifact.digest().to_string(),
        artifact_type: args.artifact_type.clone(),
    };
    out.show(&shown, || {
        format!(
            "attached {} ({}) to {}",
            shown.artifact, shown.artifact_type, shown.subject
        )
    })
}

pub(crate) async fn referrers(
    location: &Location,
    artifact_type: Option<&str>,
    transfer: &super::copy::TransferArgs,
    out: &Output,
) -> Result<()> {
    let (digest, found) = ocikit::transport::referrers(
        location,
        &transfer.source_options()?,
        artifact_type,
        "referrers",
    )
    .await?;
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Referrer {
        digest: String,
        #[serde(rename = "mediaType")]
        media_type: String,
        #[serde(rename = "artifactType")]
        artifact_type: Option<String>,
        size: u64,
    }
    let rows: Vec<Referrer> = found
        .iter()
        .map(|d| Referrer {
            digest: d.digest().to_string(),
            media_type: d.media_type().to_string(),
            artifact_type: d.artifact_type().as_ref().map(ToString::to_string),
            size: d.size(),
        })
        .collect();
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Listing<'a> {
        subject: String,
        referrers: &'a [Referrer],
    }
    out.answer(
        &Listing {
            subject: digest.to_string(),
            referrers: &rows,
        },
        || {
            let mut text = String::new();
            for r in &rows {
                text.push_str(&format!(
                    "{}  {}  {}\n",
                    r.digest,
                    r.artifact_type.as_deref().unwrap_or("-"),
                    human_size(r.size)
                ));
            }
            if rows.is_empty() {
                text.push_str("no referrers\n");
            }
            text
        },
        || rows.iter().map(|r| format!("{}\n", r.digest)).collect(),
    )
}
