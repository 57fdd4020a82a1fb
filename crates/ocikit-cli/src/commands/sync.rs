//! `sync`: repositories mirrored between registries and directories of layouts, by
//! [`ocikit::transport::sync`]; this module holds the flags and renders the report (one
//! progress display for the whole run).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use ocikit::client::Credentials;
use ocikit::layout::PlatformQuery;
use ocikit::transport::{
    RegistryOptions, Stage, SyncDestination, SyncEvent, SyncOptions, SyncOutcome, SyncProgress,
    SyncReport, SyncSource, TagSelection,
};

use crate::bars::Bars;
use crate::output::plural;
use crate::output::{Output, human_size};

/// Where `sync` reads, as skopeo's `--src` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum SourceKind {
    /// A registry repository: HOST[:PORT]/NAME (every tag), or NAME:TAG / NAME@DIGEST.
    Docker,
    /// A layout, or a directory of layouts (each one repository, named by its path).
    Oci,
    /// A sync file in skopeo's YAML format.
    Yaml,
}

/// Where `sync` writes, as skopeo's `--dest` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum DestinationKind {
    /// A registry, with an optional repository prefix: HOST[:PORT][/PREFIX].
    Docker,
    /// A directory of layouts: one layout per repository at DIR/NAME, holding its tags.
    Oci,
}

/// `ocikit sync`'s arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct SyncArgs {
    /// Where from: a repository (HOST[:PORT]/NAME[:TAG|@DIGEST]), a layout or directory of
    /// layouts (with --src oci), or a sync file (with --src yaml).
    source: String,
    /// Where to: a registry and optional repository prefix (HOST[:PORT][/PREFIX]), or a
    /// directory of layouts (with --dest oci).
    destination: String,
    /// The source's kind (skopeo's --src).
    #[arg(
        long = "src",
        short = 's',
        value_enum,
        value_name = "TRANSPORT",
        default_value = "docker"
    )]
    src: SourceKind,
    /// The destination's kind (skopeo's --dest).
    #[arg(
        long = "dest",
        short = 'd',
        value_enum,
        value_name = "TRANSPORT",
        default_value = "docker"
    )]
    dest: DestinationKind,
    /// Name each repository at the destination by its whole source path, host included
    /// (HOST:PORT written HOST_PORT), instead of its last component.
    #[arg(long)]
    scoped: bool,
    /// Copy every image of an index (default: only this machine's platform from a registry,
    /// as skopeo does).
    #[arg(long, short = 'a')]
    all: bool,
    /// Copy this platform's image of an index (os/arch[/variant]), from any source.
    #[arg(long, conflicts_with = "all")]
    platform: Option<String>,
    /// Print the plan (what would be copied, what is up to date) and write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Images listed, compared and copied at once.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    jobs: u16,
    /// Copy each image's referrers along (signatures, SBOMs attached by subject), as
    /// `oras cp -r`.
    #[arg(long)]
    referrers: bool,
    /// Leave cosign-style attachments (the tags sha256-<hex>.sig, .att, .sbom of each
    /// image) behind; by default they are copied along.
    #[arg(long)]
    remove_signatures: bool,
    /// Only these tags (repeatable; not with --src yaml, whose file names its tags).
    #[arg(long = "tag", value_name = "TAG")]
    tags: Vec<String>,
    /// Only tags this regex matches (unanchored, as skopeo's images-by-tag-regex).
    #[arg(long, value_name = "REGEX")]
    filter: Option<String>,
    /// Only tags that are versions in this semver range (like ">=1.2, <2").
    #[arg(long, value_name = "RANGE")]
    semver: Option<String>,
    /// Only the N newest versions (among the tags the other selections let through).
    #[arg(long, value_name = "N")]
    newest: Option<usize>,
    /// Verify the source registries' TLS certificates (a sync file's tls-verify wins).
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true")]
    src_tls_verify: bool,
    /// Verify the destination registry's TLS certificate; `false` accepts any certificate,
    /// and plain HTTP if the registry does not speak HTTPS.
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true")]
    dest_tls_verify: bool,
    /// For the source registries, trust DIR/*.crt, and present DIR/NAME.cert with
    /// DIR/NAME.key if asked for a client certificate.
    #[arg(long, value_name = "DIR")]
    src_cert_dir: Option<PathBuf>,
    /// For the destination registry, trust DIR/*.crt, and present DIR/NAME.cert with
    /// DIR/NAME.key if asked for a client certificate.
    #[arg(long, value_name = "DIR")]
    dest_cert_dir: Option<PathBuf>,
    /// For the source registries, trust the authorities of this PEM file too.
    #[arg(long, value_name = "FILE")]
    src_ca_file: Option<PathBuf>,
    /// For the destination registry, trust the authorities of this PEM file too.
    #[arg(long, value_name = "FILE")]
    dest_ca_file: Option<PathBuf>,
    /// Credentials for the source registries (a sync file's credentials win).
    #[arg(long, value_name = "USER:PASSWORD")]
    src_creds: Option<String>,
    /// Credentials for the destination registry.
    #[arg(long, value_name = "USER:PASSWORD")]
    dest_creds: Option<String>,
    /// The credentials file for registries without --src-creds/--dest-creds (default:
    /// $DOCKER_CONFIG/config.json, else ~/.docker/config.json).
    #[arg(long, value_name = "PATH")]
    authfile: Option<PathBuf>,
}

impl SyncArgs {
    fn access(
        &self,
        verify: bool,
        cert_dir: &Option<PathBuf>,
        ca_file: &Option<PathBuf>,
        creds: &Option<String>,
    ) -> Result<RegistryOptions> {
        let credentials = creds
            .as_deref()
            .map(|text| Credentials::parse(text).context("write credentials as USER:PASSWORD"))
            .transpose()?;
        Ok(RegistryOptions::new()
            .with_tls_verify(verify)
            .with_cert_dir(cert_dir.clone())
            .with_ca_file(ca_file.clone())
            .with_credentials(credentials)
            .with_authfile(self.authfile.clone()))
    }

    /// The tag selection the flags make.
    fn selection(&self) -> Result<TagSelection> {
        let mut selection = TagSelection::all();
        if !self.tags.is_empty() {
            selection = selection.tags(self.tags.clone());
        }
        if let Some(regex) = &self.filter {
            selection = selection.filter(regex)?;
        }
        if let Some(range) = &self.semver {
            selection = selection.range(range)?;
        }
        if let Some(n) = self.newest {
            selection = selection.newest(n);
        }
        Ok(selection)
    }
}

pub(crate) async fn sync(args: SyncArgs, out: &Output) -> Result<ExitCode> {
    let narrowed = !args.tags.is_empty()
        || args.filter.is_some()
        || args.semver.is_some()
        || args.newest.is_some();
    let source = match args.src {
        SourceKind::Docker => SyncSource::repository(&args.source, args.selection()?)?,
        SourceKind::Oci => SyncSource::layouts(
            args.source.strip_prefix("oci:").unwrap_or(&args.source),
            args.selection()?,
        ),
        SourceKind::Yaml => {
            if narrowed {
                bail!(
                    "--tag, --filter, --semver and --newest select tags of a repository; a sync \
                     file names its own (images, images-by-tag-regex, images-by-semver)"
                );
            }
            SyncSource::file(args.source.as_ref())?
        }
    };
    let destination = match args.dest {
        DestinationKind::Docker => SyncDestination::registry(&args.destination)?,
        DestinationKind::Oci => SyncDestination::layouts(
            args.destination
                .strip_prefix("oci:")
                .unwrap_or(&args.destination),
        ),
    };
    let platform = args
        .platform
        .as_deref()
        .map(|text| {
            let platform = ocikit::digest::platform::parse(text)
                .with_context(|| format!("`{text}` is not a platform (os/arch[/variant])"))?;
            Ok::<_, anyhow::Error>(PlatformQuery::new(&platform))
        })
        .transpose()?;
    let bars = Bars::new(out);
    let options = SyncOptions::new()
        .with_source(args.access(
            args.src_tls_verify,
            &args.src_cert_dir,
            &args.src_ca_file,
            &args.src_creds,
        )?)
        .with_destination(args.access(
            args.dest_tls_verify,
            &args.dest_cert_dir,
            &args.dest_ca_file,
            &args.dest_creds,
        )?)
        .with_scoped(args.scoped)
        .with_all_platforms(args.all)
        .with_platform(platform)
        .with_dry_run(args.dry_run)
        .with_jobs(usize::from(args.jobs))
        .with_referrers(args.referrers)
        .with_signatures(!args.remove_signatures)
        .with_progress(progress(&bars));
    let report = ocikit::transport::sync(&source, &destination, &options).await;
    drop(bars);
    let report = report?;
    show(&report, out)?;
    let failed = report.failures();
    if failed.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    let names: Vec<&str> = failed.iter().map(|e| e.source.as_str()).collect();
    bail!(
        "{} of {} failed: {} (run again to finish: what was copied is skipped)",
        plural(failed.len(), "image"),
        report.entries.len(),
        names.join(", ")
    )
}

/// One display for the run: a bar counting the images copied, and a bar per blob.
fn progress(bars: &Bars) -> SyncProgress {
    let stages = [
        Stage::Read,
        Stage::Pull,
        Stage::Copy,
        Stage::Recompress,
        Stage::Write,
        Stage::Push,
    ];
    let blobs: Vec<(Stage, ocikit::layout::Progress)> = stages
        .iter()
        .map(|stage| (*stage, bars.progress(stage.as_str())))
        .collect();
    let images = bars.task("sync", "images".into(), Some(0));
    SyncProgress::new(move |event| match event {
        SyncEvent::Planned { to_copy, .. } => images.set_length(*to_copy as u64),
        SyncEvent::Blob { stage, event, .. } => {
            if let Some((_, sink)) = blobs.iter().find(|(s, _)| s == stage) {
                sink.emit((*event).clone());
            }
        }
        SyncEvent::ImageDone { entry, .. } => {
            images.inc(1);
            images.set_message(entry.destination.clone());
        }
        _ => {}
    })
}

/// The report as `--json` prints it (the report's serialization), or a line per image
/// and a summary.
fn show(report: &SyncReport, out: &Output) -> Result<()> {
    out.show(report, || {
        let mut text = String::new();
        for entry in &report.entries {
            let line = match &entry.outcome {
                SyncOutcome::Copied(copied) => format!(
                    "copied      {} -> {} ({}, {})",
                    entry.source,
                    entry.destination,
                    plural(copied.blobs_copied + copied.blobs_mounted, "blob"),
                    human_size(copied.bytes)
                ),
                SyncOutcome::UpToDate => {
                    format!("up to date  {} = {}", entry.source, entry.destination)
                }
                SyncOutcome::WouldCopy => {
                    format!("would copy  {} -> {}", entry.source, entry.destination)
                }
                SyncOutcome::Failed(error) => {
                    let mut chain = error.to_string();
                    let mut cause = std::error::Error::source(error);
                    while let Some(e) = cause {
                        chain.push_str(": ");
                        chain.push_str(&e.to_string());
                        cause = e.source();
                    }
                    format!(
                        "FAILED      {} -> {}: {chain}",
                        entry.source, entry.destination
                    )
                }
                _ => format!(
                    "{}  {} -> {}",
                    entry.outcome.as_str(),
                    entry.source,
                    entry.destination
                ),
            };
            text.push_str(&line);
            text.push('\n');
        }
        let verb = if report.dry_run {
            "would sync"
        } else {
            "synced"
        };
        text.push_str(&format!(
            "{verb} {}: {} {}, {} up to date, {} failed",
            plural(report.entries.len(), "image"),
            report.count(if report.dry_run {
                "would-copy"
            } else {
                "copied"
            }),
            if report.dry_run { "to copy" } else { "copied" },
            report.count("up-to-date"),
            report.count("failed"),
        ));
        text
    })
}
