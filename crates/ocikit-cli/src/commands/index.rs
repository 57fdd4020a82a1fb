//! `index create|append|remove|annotate`: multi-platform indexes made and edited anywhere
//! by [`ocikit::transport::index_create`] and its siblings; this module parses the flags and
//! renders the report.

use std::path::PathBuf;

use anyhow::{Context, Result};
use ocikit::digest::oci_spec::image::Platform;
use ocikit::transport::{IndexAnnotations, IndexOptions, IndexReport, Location};

use super::image::key_value;
use super::tls::TlsArgs;
use crate::bars::Bars;
use crate::output::Output;
use crate::output::plural;

/// The `index` commands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum IndexCommand {
    /// Make an index of images (one entry per image, its platform read from its config;
    /// an image that is an index gives its entries) and tag it.
    #[command(after_help = "Examples:\n  \
        ocikit index create --tag oci:./images:multi oci:./images:amd64 oci:./images:arm64\n  \
        ocikit index create --tag docker://registry.example/app:v1 \
        docker://registry.example/app:v1-amd64 oci-archive:./arm64.tar:v1")]
    Create(CreateArgs),
    /// Add images to an index (where it is tagged) and move its tag to the new index.
    #[command(after_help = "Example:\n  \
        ocikit index append docker://registry.example/app:v1 oci:./images:s390x")]
    Append(AppendArgs),
    /// Remove a platform's entry from an index and move its tag to the new index.
    #[command(after_help = "Example:\n  \
        ocikit index remove oci:./images:multi --platform linux/arm/v7")]
    Remove(RemoveArgs),
    /// Set or remove annotations of an index, or of one platform's entry, and move its tag
    /// to the new index.
    #[command(after_help = "Examples:\n  \
        ocikit index annotate oci:./images:multi --annotation org.opencontainers.image.version=1.2\n  \
        ocikit index annotate oci:./images:multi --platform linux/amd64 --annotation-rm org.example.old")]
    Annotate(AnnotateArgs),
}

/// How to reach registries: the same options for the images and the index.
#[derive(Debug, clap::Args)]
pub(crate) struct AccessArgs {
    #[command(flatten)]
    tls: TlsArgs,
    /// Registry credentials (default: what `ocikit login` stored, else anonymous).
    #[arg(long, value_name = "USER:PASSWORD")]
    creds: Option<String>,
    /// The credentials file for registries without --creds (default:
    /// $DOCKER_CONFIG/config.json, else ~/.docker/config.json; see `ocikit login`).
    #[arg(long, value_name = "PATH")]
    authfile: Option<PathBuf>,
}

impl AccessArgs {
    /// The library's options: the same registry options on both sides.
    fn options(&self, bars: &Bars) -> Result<IndexOptions> {
        let registry = self
            .tls
            .with_access(self.creds.as_deref(), self.authfile.as_ref())?;
        Ok(IndexOptions::new()
            .with_source(registry.clone())
            .with_destination(registry)
            .with_progress(bars.transport()))
    }
}

/// What `ocikit index create` was asked for.
#[derive(Debug, clap::Args)]
pub(crate) struct CreateArgs {
    /// Where the index goes, tagged: oci:PATH:TAG (a missing layout is created),
    /// oci-archive:FILE:TAG or docker://HOST[:PORT]/NAME:TAG.
    #[arg(long, short)]
    tag: String,
    /// The images: oci:PATH:TAG, oci:PATH@DIGEST, oci-archive:FILE[:TAG|@DIGEST],
    /// docker-archive:FILE[:NAME:TAG] or docker://HOST[:PORT]/NAME[:TAG|@DIGEST].
    #[arg(required = true)]
    images: Vec<String>,
    #[command(flatten)]
    access: AccessArgs,
}

/// What `ocikit index append` was asked for.
#[derive(Debug, clap::Args)]
pub(crate) struct AppendArgs {
    /// The index: oci:PATH:TAG or docker://HOST[:PORT]/NAME:TAG.
    index: String,
    /// The images to add (any location, as for `index create`).
    #[arg(required = true)]
    images: Vec<String>,
    #[command(flatten)]
    access: AccessArgs,
}

/// What `ocikit index remove` was asked for.
#[derive(Debug, clap::Args)]
pub(crate) struct RemoveArgs {
    /// The index: oci:PATH:TAG or docker://HOST[:PORT]/NAME:TAG.
    index: String,
    /// The platform whose entry goes: os[(os.version)]/arch[/variant] (a variant or
    /// os.version is compared only when given).
    #[arg(long, required = true)]
    platform: String,
    #[command(flatten)]
    access: AccessArgs,
}

/// What `ocikit index annotate` was asked for.
#[derive(Debug, clap::Args)]
pub(crate) struct AnnotateArgs {
    /// The index: oci:PATH:TAG or docker://HOST[:PORT]/NAME:TAG.
    index: String,
    /// Set annotations, KEY=VALUE.
    #[arg(long = "annotation", value_name = "KEY=VALUE")]
    annotations: Vec<String>,
    /// Remove annotations.
    #[arg(long = "annotation-rm", value_name = "KEY")]
    annotations_rm: Vec<String>,
    /// Annotate the entry of this platform (os/arch[/variant]) instead of the index.
    #[arg(long)]
    platform: Option<String>,
    #[command(flatten)]
    access: AccessArgs,
}

/// `os/arch[/variant]` parsed, or a message naming the text.
fn platform(text: &str) -> Result<Platform> {
    ocikit::digest::platform::parse(text)
        .with_context(|| format!("`{text}` is not a platform (os/arch[/variant])"))
}

fn locations(texts: &[String]) -> Result<Vec<Location>> {
    texts.iter().map(|t| Ok(Location::parse(t)?)).collect()
}

pub(crate) async fn run(command: IndexCommand, out: &Output) -> Result<()> {
    let bars = Bars::new(out);
    let (verb, report) = match command {
        IndexCommand::Create(args) => {
            let destination = Location::parse(&args.tag)?;
            let images = locations(&args.images)?;
            let options = args.access.options(&bars)?;
            let report = ocikit::transport::index_create(&destination, &images, &options).await;
            ("made", report)
        }
        IndexCommand::Append(args) => {
            let index = Location::parse(&args.index)?;
            let images = locations(&args.images)?;
            let options = args.access.options(&bars)?;
            let report = ocikit::transport::index_append(&index, &images, &options).await;
            ("appended to", report)
        }
        IndexCommand::Remove(args) => {
            let index = Location::parse(&args.index)?;
            let platform = platform(&args.platform)?;
            let options = args.access.options(&bars)?;
            let report = ocikit::transport::index_remove(&index, &platform, &options).await;
            ("removed from", report)
        }
        IndexCommand::Annotate(args) => {
            let index = Location::parse(&args.index)?;
            let mut changes = IndexAnnotations::new();
            for text in &args.annotations {
                let (k, v) = key_value(text, "--annotation")?;
                changes = changes.set(k, v);
            }
            for key in &args.annotations_rm {
                changes = changes.remove(key.clone());
            }
            let changes = changes.on_platform(args.platform.as_deref().map(platform).transpose()?);
            let options = args.access.options(&bars)?;
            let report = ocikit::transport::index_annotate(&index, &changes, &options).await;
            ("annotated", report)
        }
    };
    drop(bars);
    show(verb, &report?, out)
}

/// The report as `--json` shows it, its summary lines, or (`-q`) the index's digest.
fn show(verb: &str, report: &IndexReport, out: &Output) -> Result<()> {
    out.answer(
        report,
        || {
            let mut how = vec![format!("{} written", plural(report.blobs_written, "blob"))];
            if report.blobs_mounted > 0 {
                how.push(format!("{} mounted", report.blobs_mounted));
            }
            if report.blobs_skipped > 0 {
                how.push(format!("{} already present", report.blobs_skipped));
            }
            let mut text = format!(
                "index {verb} {}: {} ({}; {})\n",
                report.destination,
                report.image,
                match report.manifests.len() {
                    1 => "1 entry".to_string(),
                    n => format!("{n} entries"),
                },
                how.join(", ")
            );
            for entry in &report.manifests {
                text.push_str(&format!(
                    "  {} {}\n",
                    entry.platform.as_deref().unwrap_or("(no platform)"),
                    entry.digest
                ));
            }
            text
        },
        || format!("{}\n", report.digest),
    )
}
