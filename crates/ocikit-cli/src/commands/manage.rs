//! `tags --filter --sort`, `delete` and `catalog`: registry (and layout) management, by
//! [`ocikit::transport::tags_matching`], [`ocikit::transport::delete`] and
//! [`ocikit::transport::catalog`]; this module parses and renders.

use anyhow::Result;
use ocikit::transport::{CatalogOptions, DeleteOptions, TagOrder, TagSelection};

use super::copy::TransferArgs;
use crate::RegistryArgs;
use crate::location::Location;
use crate::output::{Output, human_size};

/// The order `ocikit tags` lists tags in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum TagSort {
    /// As the registry lists them.
    Registry,
    /// By semver, oldest first: tags that are not versions (`latest`) first, by name;
    /// `v1.2.3`, `1.2` and `1.2.3-rc.1` read as versions.
    Semver,
    /// By semver, newest first: tags that are not versions last.
    SemverDesc,
}

/// Which tags `ocikit tags` lists, and how.
#[derive(Debug, clap::Args)]
pub(crate) struct TagsArgs {
    /// Only tags this regex matches (anywhere in the tag: anchor it with ^...$).
    #[arg(long, value_name = "REGEX")]
    filter: Option<String>,
    /// The order.
    #[arg(long, value_enum, default_value_t = TagSort::Registry)]
    sort: TagSort,
}

/// `tags docker://HOST/NAME [--filter REGEX] [--sort semver]`.
pub(crate) async fn tags(
    location: &Location,
    args: &TagsArgs,
    transfer: &TransferArgs,
    out: &Output,
) -> Result<()> {
    let mut selection = TagSelection::all().order(match args.sort {
        TagSort::Registry => TagOrder::Given,
        TagSort::Semver => TagOrder::Semver,
        TagSort::SemverDesc => TagOrder::SemverDescending,
    });
    if let Some(filter) = &args.filter {
        selection = selection.filter(filter)?;
    }
    let shown =
        ocikit::transport::tags_matching(location, &transfer.source_options()?, &selection).await?;
    let lines = || shown.tags.iter().map(|t| format!("{t}\n")).collect();
    out.answer(&shown, lines, lines)
}

/// `ocikit delete`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "A tag goes alone where it can (a layout; a registry that deletes \
    tags). A digest, or a tag in a registry that deletes by digest only (Distribution 2.8, \
    where every tag of that digest goes with it), is refused while other tags or indexes \
    still name it, unless --force. In a layout the blobs nothing else reaches go at once.\n\n\
    Examples:\n  ocikit delete oci:./images:old\n  \
    ocikit delete --force oci:./images@sha256:...\n  \
    ocikit delete --tls-verify=false docker://127.0.0.1:5000/app:v1"
)]
pub(crate) struct DeleteArgs {
    /// The image: oci:PATH:TAG, oci:PATH@DIGEST or docker://HOST[:PORT]/NAME[:TAG|@DIGEST].
    image: String,
    /// Delete even what other tags or indexes still reference.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    registry: RegistryArgs,
}

pub(crate) async fn delete(args: DeleteArgs, out: &Output) -> Result<()> {
    let location = Location::parse(&args.image)?;
    let options = DeleteOptions::new()
        .with_force(args.force)
        .with_registry(args.registry.transfer().source_options()?);
    let report = ocikit::transport::delete(&location, &options).await?;
    out.show(&report, || {
        let mut text = if report.manifest_removed {
            format!("deleted {}", report.digest)
        } else {
            format!("deleted the tag of {}", report.digest)
        };
        if !report.tags_removed.is_empty() {
            text.push_str(&format!(" (tags: {})", report.tags_removed.join(", ")));
        }
        text.push('\n');
        if !report.referrers_removed.is_empty() {
            text.push_str(&format!(
                "with its artifacts {}\n",
                report.referrers_removed.join(", ")
            ));
        }
        if !report.blobs_removed.is_empty() {
            text.push_str(&format!(
                "removed {} blobs ({})\n",
                report.blobs_removed.len(),
                human_size(report.bytes_removed)
            ));
        }
        if !report.forced.is_empty() {
            text.push_str(&format!("forced past: {}\n", report.forced.join(", ")));
        }
        text
    })
}

/// `ocikit catalog`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  ocikit catalog docker://registry.example\n  \
    ocikit catalog --tls-verify=false docker://127.0.0.1:5000 --page-size 100 --limit 20 --json"
)]
pub(crate) struct CatalogArgs {
    /// The registry: docker://HOST[:PORT].
    #[arg(value_name = "REGISTRY")]
    host: String,
    /// Repositories asked for per page (the registry's own page size by default).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    page_size: Option<u32>,
    /// Stop after N repositories (all by default).
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    #[command(flatten)]
    registry: RegistryArgs,
}

pub(crate) async fn catalog(args: CatalogArgs, out: &Output) -> Result<()> {
    let options = CatalogOptions::new()
        .with_registry(args.registry.transfer().source_options()?)
        .with_page_size(args.page_size.map(|n| n as usize))
        .with_limit(args.limit);
    let listed = ocikit::transport::catalog(&args.host, &options).await?;
    let lines = || {
        listed
            .repositories
            .iter()
            .map(|r| format!("{r}\n"))
            .collect()
    };
    out.answer(&listed, lines, lines)
}
