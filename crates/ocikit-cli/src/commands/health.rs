//! `fsck`, `gc`, `attach`, `referrers`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use ocikit::layout::{FsckOptions, GcOptions};
use ocikit::transport::{ArtifactFile, ArtifactPushOptions, ReferrerNode};
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
        /// Stale partial downloads (a day without a write), by the blob they began.
        partials_removed: Vec<String>,
    }
    let shown = Report {
        dry_run,
        removed: report.removed.iter().map(ToString::to_string).collect(),
        removed_bytes: report.removed_bytes,
        kept_young: report.kept_young.len(),
        reachable: report.reachable,
        partials_removed: report
            .partials_removed
            .iter()
            .map(ToString::to_string)
            .collect(),
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
        if !shown.partials_removed.is_empty() {
            text.push_str(&format!(
                "; {verb} {} stale partial downloads ({})",
                shown.partials_removed.len(),
                human_size(report.partials_removed_bytes)
            ));
        }
        text
    })
}

/// What `ocikit attach` was asked for.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  ocikit attach oci:./images:v1 --artifact-type application/vnd.example.sbom+json sbom.json\n  \
    ocikit attach docker://127.0.0.1:5000/app:v1 --artifact-type application/vnd.example.sig sig.bin"
)]
pub(crate) struct AttachArgs {
    /// The subject image: oci:PATH:TAG, oci:PATH@DIGEST or
    /// docker://HOST[:PORT]/NAME[:TAG|@DIGEST]; the artifact goes into the same layout or
    /// repository, by digest.
    image: String,
    /// The artifact's type (a media type).
    #[arg(long)]
    artifact_type: String,
    /// Files to attach, FILE[:MEDIATYPE] each: one layer each, titled with the file name
    /// (org.opencontainers.image.title).
    files: Vec<String>,
    /// The media type of the files' layers that name none.
    #[arg(long, default_value = "application/octet-stream")]
    file_type: String,
    /// Manifest annotations, KEY=VALUE.
    #[arg(long = "annotation", value_name = "KEY=VALUE")]
    annotations: Vec<String>,
    #[command(flatten)]
    tls: super::tls::TlsArgs,
    /// Credentials (default: what `ocikit login` stored, else anonymous).
    #[arg(long, value_name = "USER:PASSWORD")]
    creds: Option<String>,
    /// The credentials file (default: $DOCKER_CONFIG/config.json, else ~/.docker/config.json).
    #[arg(long, value_name = "PATH")]
    authfile: Option<PathBuf>,
}

pub(crate) async fn attach(args: AttachArgs, out: &Output) -> Result<()> {
    let location = Location::parse(&args.image)?;
    let files: Vec<ArtifactFile> = args.files.iter().map(|f| ArtifactFile::parse(f)).collect();
    let mut options = ArtifactPushOptions::new()
        .with_artifact_type(Some(args.artifact_type.clone()))
        .with_file_media_type(Some(args.file_type.clone()))
        .with_registry(
            args.tls
                .with_access(args.creds.as_deref(), args.authfile.as_ref())?,
        );
    for (k, v) in super::artifact::annotations(&args.annotations)? {
        options = options.with_annotation(k, v);
    }
    let attached = ocikit::transport::attach(&location, &files, &options).await?;
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

/// One referrer as `ocikit referrers` shows it; with `--tree`, its own referrers below.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Referrer {
    digest: String,
    #[serde(rename = "mediaType")]
    media_type: String,
    #[serde(rename = "artifactType")]
    artifact_type: Option<String>,
    size: u64,
    /// Only in a tree (`--tree`, `--depth`).
    #[serde(skip_serializing_if = "Option::is_none")]
    referrers: Option<Vec<Referrer>>,
}

impl Referrer {
    fn of(node: &ReferrerNode, tree: bool) -> Referrer {
        let d = &node.descriptor;
        Referrer {
            digest: d.digest().to_string(),
            media_type: d.media_type().to_string(),
            artifact_type: d.artifact_type().as_ref().map(ToString::to_string),
            size: d.size(),
            referrers: tree.then(|| {
                node.referrers
                    .iter()
                    .map(|n| Referrer::of(n, tree))
                    .collect()
            }),
        }
    }

    fn text(&self, indent: usize, text: &mut String) {
        text.push_str(&format!(
            "{}{}  {}  {}\n",
            "  ".repeat(indent),
            self.digest,
            self.artifact_type.as_deref().unwrap_or("-"),
            human_size(self.size)
        ));
        for r in self.referrers.iter().flatten() {
            r.text(indent + 1, text);
        }
    }

    fn digests(&self, text: &mut String) {
        text.push_str(&format!("{}\n", self.digest));
        for r in self.referrers.iter().flatten() {
            r.digests(text);
        }
    }
}

pub(crate) async fn referrers(
    location: &Location,
    artifact_type: Option<&str>,
    depth: Option<usize>,
    transfer: &super::copy::TransferArgs,
    out: &Output,
) -> Result<()> {
    let tree = depth.is_some();
    let (digest, found) = ocikit::transport::referrers_tree(
        location,
        &transfer.source_options()?,
        artifact_type,
        depth.unwrap_or(1),
        "referrers",
    )
    .await?;
    let rows: Vec<Referrer> = found.iter().map(|n| Referrer::of(n, tree)).collect();
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
                r.text(0, &mut text);
            }
            if rows.is_empty() {
                text.push_str("no referrers\n");
            }
            text
        },
        || {
            let mut text = String::new();
            for r in &rows {
                r.digests(&mut text);
            }
            text
        },
    )
}
