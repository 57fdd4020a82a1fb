//! `snapshot prepare|ls|rm|gc`: per-layer snapshots for overlayfs, by
//! [`ocikit::layout::SnapshotStore`]; this module parses the flags and renders the reports.

use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::{Context, Result};
use ocikit::digest::platform;
use ocikit::layout::Scratch;
use ocikit::layout::snapshot::{SnapshotGcReport, parse_chain_id};
use ocikit::layout::{
    PlatformQuery, PrepareOptions, SnapshotInfo, SnapshotOptions, SnapshotStore, WhiteoutForm,
};
use ocikit::transport::CopyOptions;
use serde::Serialize;

use crate::bars::Bars;
use crate::location::{Location, Selector};
use crate::output::{Output, human_size};

/// The `snapshot` commands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum SnapshotCommand {
    /// Extract the layers of an image the store does not have (each once, shared by every
    /// image that has it) and print the lower directories of an overlay mount of the
    /// image, top layer first, joined with `:`.
    #[command(
        after_help = "Each layer becomes a directory named by its chain ID, extracted \
        into staging and renamed into place only when its blob digest and diffID matched; \
        two processes preparing images that share layers extract each layer once. \
        Whiteouts are kept as overlayfs keeps them (0:0 character devices, \
        trusted.overlay.opaque) when the store was made by a process that may make devices, \
        else as `.wh.` marker files (fuse-overlayfs, rootless runtimes); `snapshot ls` \
        shows which.\n\n\
        Examples:\n  ocikit snapshot prepare oci:./images:v1 --root /var/lib/snapshots\n  \
        mount -t overlay overlay -o lowerdir=$(ocikit snapshot prepare oci:./images:v1 \
        --root /var/lib/snapshots),upperdir=/run/c1/upper,workdir=/run/c1/work /run/c1/rootfs"
    )]
    Prepare(PrepareArgs),
    /// List the store's snapshots.
    #[command(after_help = "Example:\n  ocikit snapshot ls --root /var/lib/snapshots")]
    Ls(RootArgs),
    /// Remove a snapshot (one no other snapshot is built on), and the stored-once files
    /// only it used.
    #[command(after_help = "Example:\n  ocikit snapshot rm --root /var/lib/snapshots sha256:...")]
    Rm {
        #[command(flatten)]
        root: RootArgs,
        /// The snapshot's chain ID (ALGORITHM:HEX, as `snapshot ls` shows it).
        chain_id: String,
    },
    /// Remove every snapshot no kept image uses, the stored-once files no snapshot uses,
    /// and staging that killed runs left.
    #[command(
        after_help = "Examples:\n  ocikit snapshot gc --root /var/lib/snapshots \
        --keep oci:./images:v1 --keep oci:./images:v2\n  \
        ocikit snapshot gc --root /var/lib/snapshots   (removes every snapshot)"
    )]
    Gc {
        #[command(flatten)]
        root: RootArgs,
        /// An image whose snapshots stay: oci:PATH:TAG or oci:PATH@DIGEST (repeatable).
        #[arg(long, value_name = "IMAGE")]
        keep: Vec<String>,
        /// The platform of the kept images that are indexes (default: this machine's).
        #[arg(long)]
        platform: Option<String>,
    },
}

/// The tag an archive or registry image gets in the scratch layout it is copied into.
const STAGED_TAG: &str = "image";

/// The store's directory.
#[derive(Debug, clap::Args)]
pub(crate) struct RootArgs {
    /// The snapshot store's directory (created if missing).
    #[arg(long, value_name = "DIR")]
    root: PathBuf,
}

/// What `ocikit snapshot prepare` was asked for.
#[derive(Debug, clap::Args)]
pub(crate) struct PrepareArgs {
    /// The image: oci:PATH:TAG, oci:PATH@DIGEST, oci-archive:FILE[:TAG|@DIGEST],
    /// docker-archive:FILE[:NAME:TAG] or docker://HOST[:PORT]/NAME[:TAG|@DIGEST] (an archive
    /// or registry image is first copied into scratch space beside the store).
    image: String,
    #[command(flatten)]
    root: RootArgs,
    #[command(flatten)]
    tls: super::tls::TlsArgs,
    /// Registry credentials (default: what `ocikit login` stored, else anonymous).
    #[arg(long, value_name = "USER:PASSWORD")]
    creds: Option<String>,
    /// The credentials file for registries without --creds (default:
    /// $DOCKER_CONFIG/config.json, else ~/.docker/config.json; see `ocikit login`).
    #[arg(long, value_name = "PATH")]
    authfile: Option<PathBuf>,
    /// The platform to pick from a multi-platform image (default: this machine's).
    #[arg(long)]
    platform: Option<String>,
    /// For a new store, how whiteouts are kept (default: devices when this process may
    /// make them, else markers); an existing store keeps its own.
    #[arg(long, value_enum)]
    form: Option<FormArg>,
    /// For a new snapshot, keep its own copy of every file instead of hard links to files
    /// stored once.
    #[arg(long)]
    no_share: bool,
}

/// `--form`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub(crate) enum FormArg {
    /// 0:0 character devices and trusted.overlay.opaque (needs privilege).
    Device,
    /// `.wh.NAME` and `.wh..wh..opq` marker files.
    Marker,
}

pub(crate) async fn run(command: SnapshotCommand, out: &Output) -> Result<()> {
    match command {
        SnapshotCommand::Prepare(args) => prepare(args, out).await,
        SnapshotCommand::Ls(root) => ls(&root, out).await,
        SnapshotCommand::Rm { root, chain_id } => rm(&root, &chain_id, out).await,
        SnapshotCommand::Gc {
            root,
            keep,
            platform,
        } => gc(&root, &keep, platform.as_deref(), out).await,
    }
}

/// The platform query of `--platform` (default: this machine's).
fn platform_query_of(text: Option<&str>) -> Result<PlatformQuery> {
    Ok(match text {
        Some(p) => PlatformQuery::new(
            &platform::parse(p).with_context(|| format!("`{p}` is not os/arch[/variant]"))?,
        ),
        None => PlatformQuery::current(),
    })
}

async fn open(root: &RootArgs, options: SnapshotOptions) -> Result<SnapshotStore> {
    SnapshotStore::open(&root.root, options)
        .await
        .with_context(|| format!("cannot open the snapshot store {}", root.root.display()))
}

/// A snapshot as the commands show it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Shown<'a> {
    #[serde(flatten)]
    info: &'a SnapshotInfo,
    path: &'a PathBuf,
}

fn shown(info: &SnapshotInfo) -> Shown<'_> {
    Shown {
        info,
        path: &info.path,
    }
}

async fn prepare(args: PrepareArgs, out: &Output) -> Result<()> {
    let image = Location::parse(&args.image)?;
    let query = platform_query_of(args.platform.as_deref())?;
    let bars = Bars::new(out);
    // Kept until the layers are extracted: a copied image's blobs live in it.
    let (layout, descriptor, _scratch) = match &image {
        Location::Oci { path, selector } => {
            let layout = super::open_layout(path).await?;
            let descriptor = super::resolve_at(path, &layout, selector.as_ref()).await?;
            (layout, descriptor, None)
        }
        _ => {
            let registry = args
                .tls
                .with_access(args.creds.as_deref(), args.authfile.as_ref())?;
            let scratch = Scratch::near(&args.root.root).await?;
            let staged = scratch.path().join("source");
            let stage_at = Location::Oci {
                path: staged.clone(),
                selector: Some(Selector::Tag(STAGED_TAG.into())),
            };
            let platform = Some(query.clone()).filter(|_| image.is_registry());
            ocikit::transport::copy(
                &image,
                &stage_at,
                &CopyOptions::new()
                    .with_source(registry)
                    .with_platform(platform)
                    .with_progress(bars.transport()),
            )
            .await
            .with_context(|| format!("cannot read {image}"))?;
            let layout = super::open_layout(&staged).await?;
            let descriptor = layout.resolve(STAGED_TAG).await?;
            (layout, descriptor, Some(scratch))
        }
    };
    let options = SnapshotOptions::new()
        .with_form(args.form.map(|f| match f {
            FormArg::Device => WhiteoutForm::Device,
            FormArg::Marker => WhiteoutForm::Marker,
        }))
        .with_share_files(!args.no_share);
    let store = open(&args.root, options).await?;
    let options = PrepareOptions::new()
        .with_platform(query)
        .with_progress(bars.progress("extract"));
    let report = store
        .prepare(&layout, &descriptor, &options)
        .await
        .with_context(|| format!("cannot prepare snapshots of {image}"))?;
    drop(bars);
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Prepared<'a> {
        manifest: String,
        platform: String,
        form: WhiteoutForm,
        lowerdir: String,
        lowerdirs: Vec<PathBuf>,
        snapshots: Vec<Shown<'a>>,
        extracted: Vec<String>,
    }
    let prepared = Prepared {
        manifest: report.manifest.digest().to_string(),
        platform: platform::format(&report.platform),
        form: store.form(),
        lowerdir: report.lowerdir(),
        lowerdirs: report.lowerdirs(),
        snapshots: report.snapshots.iter().map(shown).collect(),
        extracted: report.extracted.iter().map(|d| d.to_string()).collect(),
    };
    if !out.json {
        out.status(&format!(
            "{} of {} extracted ({} whiteouts)",
            crate::output::plural(report.extracted.len(), "layer"),
            report.snapshots.len(),
            store.form()
        ));
    }
    // The chain is the answer, even with -q: it is what a mount takes.
    out.answer(
        &prepared,
        || prepared.lowerdir.clone(),
        || prepared.lowerdir.clone(),
    )
}

async fn ls(root: &RootArgs, out: &Output) -> Result<()> {
    let store = open(root, SnapshotOptions::new()).await?;
    let list = store.list().await?;
    let shown: Vec<Shown<'_>> = list.iter().map(shown).collect();
    out.answer(
        &shown,
        || {
            let mut text = format!(
                "{:<71}  {:<6}  {:>6}  {:>10}  {}\n",
                "CHAIN ID", "FORM", "FILES", "SIZE", "PARENT"
            );
            for s in &list {
                text.push_str(&format!(
                    "{:<71}  {:<6}  {:>6}  {:>10}  {}\n",
                    s.chain_id.to_string(),
                    s.form.to_string(),
                    s.files,
                    human_size(s.content_bytes),
                    s.parent
                        .as_ref()
                        .map_or_else(|| "-".to_string(), |p| p.to_string())
                ));
            }
            text
        },
        || {
            list.iter()
                .map(|s| format!("{}\n", s.chain_id))
                .collect::<String>()
        },
    )
}

/// The JSON of `rm` and `gc`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Removed {
    removed: Vec<String>,
    kept: usize,
    objects_removed: u64,
    object_bytes_removed: u64,
    staging_removed: usize,
}

fn show_removed(report: &SnapshotGcReport, out: &Output) -> Result<()> {
    let removed = Removed {
        removed: report.removed.iter().map(|d| d.to_string()).collect(),
        kept: report.kept,
        objects_removed: report.objects.removed,
        object_bytes_removed: report.objects.bytes,
        staging_removed: report.staging_removed,
    };
    out.show(&removed, || {
        let mut text = String::new();
        for d in &removed.removed {
            text.push_str(&format!("removed {d}\n"));
        }
        text.push_str(&format!(
            "removed {}, kept {}; {} of stored-once files freed",
            crate::output::plural(removed.removed.len(), "snapshot"),
            removed.kept,
            human_size(removed.object_bytes_removed)
        ));
        text
    })
}

async fn rm(root: &RootArgs, chain_id: &str, out: &Output) -> Result<()> {
    let chain_id = parse_chain_id(chain_id)?;
    let store = open(root, SnapshotOptions::new()).await?;
    let report = store
        .remove(&chain_id)
        .await
        .with_context(|| format!("cannot remove snapshot {chain_id}"))?;
    show_removed(&report, out)
}

async fn gc(root: &RootArgs, keep: &[String], platform: Option<&str>, out: &Output) -> Result<()> {
    let query = platform_query_of(platform)?;
    let mut kept = BTreeSet::new();
    for image in keep {
        let location = Location::parse(image)?;
        let (path, selector) = location.oci("snapshot gc --keep")?;
        let layout = super::open_layout(path).await?;
        let descriptor = super::resolve_at(path, &layout, selector).await?;
        kept.extend(
            SnapshotStore::chain_of(&layout, &descriptor, &query)
                .await
                .with_context(|| format!("cannot read the layers of {location}"))?,
        );
    }
    let store = open(root, SnapshotOptions::new()).await?;
    let report = store.gc_keeping(&kept).await?;
    show_removed(&report, out)
}
