//! `unpack`: an image from anywhere to a root filesystem (one stream from a registry) by
//! [`ocikit::transport::unpack`], or its merged filesystem as one tar stream by
//! [`ocikit::transport::export`]; this module holds the flags and the summaries.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use ocikit::codec::apply::IdMap;
use ocikit::digest::platform;
use ocikit::layout::{PlatformQuery, UnpackOptions};
use ocikit::sign::Policy;
use ocikit::transport::{ExportOptions, PolicyAccepted, UnpackImageOptions};
use serde::Serialize;

use crate::bars::Bars;
use crate::location::Location;
use crate::output::{Output, human_size};

/// What `ocikit unpack` was asked for.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "The image may be anywhere. A registry image is unpacked in one stream: each \
    layer is downloaded, verified, decompressed and applied as it arrives, the next layers \
    downloading meanwhile (--prefetch ahead, into spool files beside the target that vanish \
    with the process); an archive is imported into scratch space (or the --keep layout) \
    first. Every layer is checked against its digest and its config's diffID, and the root \
    filesystem is built beside ROOTFS and appears only when complete. --keep oci:PATH[:TAG] \
    also stores the image (blobs, config, manifest, tagged: TAG, else the image's tag) in \
    that layout, from a registry in the same pass; a new layout appears only when the \
    unpack succeeded.\n\n\
    With --tar, nothing is unpacked: the image's merged filesystem (every layer \
    applied in turn, whiteouts and opaque directories resolved) is written as one \
    uncompressed tar stream, owners, modes and times as the layers give them, as crane's \
    `export` does. The layers are decompressed and verified (digest and diffID) as they are \
    read; a FILE appears only when the whole stream was written and verified (on an error \
    with `-`, discard what was written); an archive or a registry image is first copied \
    into scratch space.\n\n\
    Where ocikit differs from crane: the image of an index is this machine's platform unless \
    --platform says otherwise (crane takes linux/amd64), and every layer's diffID is checked \
    against the config.\n\n\
    --rootless and --uid-map/--gid-map are umoci's: an unprivileged user's unpack records \
    owners in the `user.rootlesscontainers` xattr and skips devices; the maps translate the \
    layers' owners (CONTAINER:HOST[:SIZE], repeatable; an owner outside the maps is an \
    error). They change what is written to disk, so --tar refuses them.\n\n\
    Examples:\n  ocikit unpack oci:./images:v1 ./rootfs\n  \
    ocikit unpack oci:./images:v1 ./rootfs --platform linux/arm64\n  \
    ocikit unpack docker://registry.example/app:v1 ./rootfs --keep oci:./images\n  \
    ocikit unpack oci-archive:app.tar:v1 ./rootfs\n  \
    ocikit unpack oci:./images:v1 ./rootfs --rootless\n  \
    ocikit unpack oci:./images:v1 ./rootfs --uid-map 0:100000:65536 --gid-map 0:100000:65536\n  \
    ocikit unpack docker://registry.example/app:v1 --tar app.tar\n  \
    ocikit unpack oci:./images:v1 --tar - | tar -tvf -"
)]
pub(crate) struct UnpackArgs {
    /// The image: oci:PATH:TAG, oci:PATH@DIGEST, oci-archive:FILE[:TAG|@DIGEST],
    /// docker-archive:FILE[:NAME:TAG] or docker://HOST[:PORT]/NAME[:TAG|@DIGEST].
    image: String,
    /// The directory to create the root filesystem in.
    #[arg(required_unless_present = "tar", conflicts_with = "tar")]
    rootfs: Option<PathBuf>,
    /// Write the merged filesystem as one tar stream to FILE (`-`: standard output) instead
    /// of unpacking it.
    #[arg(long, value_name = "FILE|-")]
    tar: Option<PathBuf>,
    /// The platform to pick from a multi-platform image (default: this machine's).
    #[arg(long)]
    platform: Option<String>,
    /// Unpack as an unprivileged user: owners recorded in the `user.rootlesscontainers`
    /// xattr instead of set, devices skipped (umoci's --rootless).
    #[arg(long, conflicts_with = "tar")]
    rootless: bool,
    /// Map the layers' uids to host uids: CONTAINER:HOST[:SIZE] (repeatable).
    #[arg(
        long = "uid-map",
        value_name = "CONTAINER:HOST[:SIZE]",
        conflicts_with = "tar"
    )]
    uid_maps: Vec<String>,
    /// Map the layers' gids to host gids: CONTAINER:HOST[:SIZE] (repeatable).
    #[arg(
        long = "gid-map",
        value_name = "CONTAINER:HOST[:SIZE]",
        conflicts_with = "tar"
    )]
    gid_maps: Vec<String>,
    /// Also store the image in this layout (oci:PATH[:TAG]; default tag: the image's),
    /// from a registry in the same pass.
    #[arg(long, value_name = "oci:PATH[:TAG]", conflicts_with = "tar")]
    keep: Option<String>,
    /// Layers of a registry image downloaded ahead of the one being applied.
    #[arg(long, value_name = "N", default_value_t = ocikit::transport::DEFAULT_PREFETCH, conflicts_with = "tar")]
    prefetch: usize,
    #[command(flatten)]
    tls: super::tls::TlsArgs,
    /// Registry credentials for a registry image (default: what `ocikit login` stored,
    /// else anonymous).
    #[arg(long, value_name = "USER:PASSWORD")]
    creds: Option<String>,
    /// The credentials file for registries without --creds (default:
    /// $DOCKER_CONFIG/config.json, else ~/.docker/config.json; see `ocikit login`).
    #[arg(long, value_name = "PATH")]
    authfile: Option<PathBuf>,
    /// Unpack only an image this trust policy (containers' policy.json: insecureAcceptAnything,
    /// reject, sigstoreSigned with keyPath or keyData and signedIdentity) accepts, checked
    /// before anything is written; the image is then read by the digest accepted.
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
}

/// The platform query of `--platform` (default: this machine's).
fn platform_query(platform: Option<&str>) -> Result<PlatformQuery> {
    Ok(match platform {
        Some(p) => PlatformQuery::new(
            &platform::parse(p).with_context(|| format!("`{p}` is not os/arch[/variant]"))?,
        ),
        None => PlatformQuery::current(),
    })
}

/// An ID map of repeated `--uid-map`/`--gid-map` flags; none given is no map.
fn id_map(texts: &[String], flag: &str) -> Result<Option<IdMap>> {
    if texts.is_empty() {
        return Ok(None);
    }
    IdMap::parse(texts)
        .map(Some)
        .with_context(|| format!("invalid {flag}"))
}

pub(crate) async fn unpack(args: UnpackArgs, out: &Output) -> Result<()> {
    let image = Location::parse(&args.image)?;
    let policy = match &args.policy {
        Some(path) => Some(ocikit::transport::load_policy(path).await?),
        None => None,
    };
    let query = platform_query(args.platform.as_deref())?;
    if let Some(tar) = &args.tar {
        return export(&args, &image, tar, query, policy, out).await;
    }
    let Some(rootfs) = args.rootfs.as_deref() else {
        bail!("give a root filesystem directory or --tar FILE");
    };
    let uid_map = id_map(&args.uid_maps, "--uid-map")?;
    let gid_map = id_map(&args.gid_maps, "--gid-map")?;
    let keep = args.keep.as_deref().map(Location::parse).transpose()?;
    let registry = args
        .tls
        .with_access(args.creds.as_deref(), args.authfile.as_ref())?;
    let bars = Bars::new(out);
    let options = UnpackImageOptions::new(
        UnpackOptions::new()
            .with_platform(query)
            .with_rootless(args.rootless)
            .with_uid_map(uid_map)
            .with_gid_map(gid_map)
            .with_progress(bars.progress("unpack")),
    )
    .with_policy(policy, registry)
    .with_keep(keep)
    .with_prefetch(args.prefetch);
    let report = ocikit::transport::unpack(&image, rootfs, &options)
        .await
        .with_context(|| format!("cannot unpack {image}"));
    drop(bars);
    let report = report?;
    show_accepted(&image, report.accepted.as_ref(), out);
    let kept = report.kept.as_ref().map(ToString::to_string);
    let report = report.unpacked;
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Unpacked {
        manifest: String,
        platform: String,
        rootfs: PathBuf,
        layers: usize,
        files: u64,
        bytes: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        kept: Option<String>,
    }
    let unpacked = Unpacked {
        kept,
        manifest: report.manifest.digest().to_string(),
        platform: platform::format(&report.platform),
        rootfs: rootfs.to_path_buf(),
        layers: report.layers.len(),
        files: report.layers.iter().map(|l| l.files).sum(),
        bytes: report.layers.iter().map(|l| l.content_bytes).sum(),
    };
    out.show(&unpacked, || {
        format!(
            "unpacked {} ({}, {}, {}, {}) into {}{}",
            unpacked.manifest,
            unpacked.platform,
            crate::output::plural(unpacked.layers, "layer"),
            crate::output::plural(
                usize::try_from(unpacked.files).unwrap_or(usize::MAX),
                "file"
            ),
            human_size(unpacked.bytes),
            rootfs.display(),
            unpacked
                .kept
                .as_ref()
                .map_or_else(String::new, |kept| format!(", kept as {kept}"))
        )
    })
}

/// `unpack --tar`: the merged filesystem by [`ocikit::transport::export`], into a file
/// (atomically) or to standard output (`-`; the summary then goes to stderr).
async fn export(
    args: &UnpackArgs,
    image: &Location,
    tar: &Path,
    query: PlatformQuery,
    policy: Option<Policy>,
    out: &Output,
) -> Result<()> {
    let registry = args
        .tls
        .with_access(args.creds.as_deref(), args.authfile.as_ref())?;
    let bars = Bars::new(out);
    let options = ExportOptions::new()
        .with_source(registry)
        .with_platform(query)
        .with_policy(policy)
        .with_progress(bars.transport());
    let to_stdout = tar.as_os_str() == "-";
    let report = if to_stdout {
        ocikit::transport::export(image, tokio::io::stdout(), &options).await
    } else {
        ocikit::transport::export_to_path(image, tar, &options).await
    };
    drop(bars);
    let report = report.with_context(|| format!("cannot export {image}"))?;
    show_accepted(image, report.accepted.as_ref(), out);
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Exported {
        manifest: String,
        platform: String,
        tar: PathBuf,
        layers: usize,
        entries: u64,
        whiteouts: u64,
        bytes: u64,
    }
    let exported = Exported {
        manifest: report.manifest.digest().to_string(),
        platform: platform::format(&report.platform),
        tar: tar.to_path_buf(),
        layers: report.layers,
        entries: report.squash.entries,
        whiteouts: report.squash.whiteouts,
        bytes: report.squash.tar_size,
    };
    let text = || {
        format!(
            "exported {} ({}, {} merged, {}, {}) to {}",
            exported.manifest,
            exported.platform,
            crate::output::plural(exported.layers, "layer"),
            if exported.entries == 1 {
                "1 entry".to_string()
            } else {
                format!("{} entries", exported.entries)
            },
            human_size(exported.bytes),
            if to_stdout {
                "standard output".to_string()
            } else {
                tar.display().to_string()
            }
        )
    };
    if to_stdout {
        // Standard output holds the stream: the summary goes to stderr.
        if out.json {
            let mut stderr = std::io::stderr().lock();
            serde_json::to_writer_pretty(&mut stderr, &exported)?;
            writeln!(stderr)?;
        } else {
            out.status(&text());
        }
        return Ok(());
    }
    out.show(&exported, text)
}

/// The status line of an image the trust policy accepted.
fn show_accepted(image: &Location, accepted: Option<&PolicyAccepted>, out: &Output) {
    if let Some(accepted) = accepted {
        out.status(&format!(
            "{image} ({}) accepted by {}",
            accepted.digest, accepted.scope
        ));
    }
}
