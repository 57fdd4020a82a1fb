//! `rebase`: an image's old base swapped for a new one, anywhere, by
//! [`ocikit::transport::rebase`]; this module parses the flags and renders the report.

use std::path::PathBuf;

use anyhow::Result;
use ocikit::transport::{Location, RebaseOptions};

use super::mutate::{edit_options, show};
use super::tls::TlsArgs;
use crate::bars::Bars;
use crate::output::Output;

/// What `ocikit rebase` was asked for.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "The image's bottom layers must be the old base's, compared by diffID \
    (else it is refused, naming the first layer that differs), and the new base must be of \
    the image's platform. The result has the new base's layers, then the image's above the \
    old base; its diffIDs and history likewise: the new base's history entries, then the \
    image's after the old base's (an image built on it starts with its whole history, \
    empty_layer entries included, so the old base's trailing CMD or ENV entries go too; a \
    history that does not start so is cut after the entry of the old base's last layer). \
    The rest of the config is the image's. The manifest gets the annotations \
    org.opencontainers.image.base.digest (the new base's image manifest) and \
    org.opencontainers.image.base.name (the new base's docker:// reference when it names a \
    tag; removed otherwise). A base given as an index is picked for --platform, else for \
    the image's platform. The old base is only read (manifest and config). When the image, \
    the new base and the destination are in one registry, the new base's layers are \
    mounted from its repository and nothing is downloaded; anywhere else the new base is \
    first copied into scratch space and its layers travel with the config and manifest.\n\n\
    Where ocikit differs from crane: --old-base and --new-base are required (crane can take \
    them from the image's base annotations) and --tag too; the old base is matched by \
    diffID (crane compares layer digests, so a recompressed base does not match there); a \
    new base of another platform is refused (crane takes its os and architecture); the \
    config keeps everything but the layers and history (crane keeps only the image's \
    config section, and the new base's os.version); base.digest names the new base's image \
    manifest (crane names what --new_base names, an index if it is one), and base.name is \
    written only for a docker:// tag reference; a Docker schema 2 image gets no \
    annotations.\n\n\
    Examples:\n  ocikit rebase oci:./images:app --old-base oci:./images:base-1 --new-base \
    oci:./images:base-2 --tag oci:./images:app-rebased\n  ocikit rebase \
    docker://registry.example/app:v1 --old-base docker://registry.example/base@sha256:... \
    --new-base docker://registry.example/base:latest --tag docker://registry.example/app:v1-rebased"
)]
pub(crate) struct RebaseArgs {
    /// The image: oci:PATH:TAG, oci:PATH@DIGEST, oci-archive:FILE[:TAG|@DIGEST],
    /// docker-archive:FILE[:NAME:TAG] or docker://HOST[:PORT]/NAME[:TAG|@DIGEST].
    source: String,
    /// The base the image is built on (any location, as the image).
    #[arg(long, value_name = "IMAGE")]
    old_base: String,
    /// The base to put it on instead (any location, as the image).
    #[arg(long, value_name = "IMAGE")]
    new_base: String,
    /// Where the rebased image goes, tagged: oci:PATH:TAG (a missing layout is created),
    /// oci-archive:FILE:TAG, docker-archive:FILE:NAME:TAG or docker://HOST[:PORT]/NAME:TAG.
    #[arg(long, short)]
    tag: String,
    /// os/arch[/variant]: the image of an index to rebase (the result is that one image),
    /// and of the bases when they are indexes.
    #[arg(long)]
    platform: Option<String>,
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

pub(crate) async fn rebase(args: RebaseArgs, out: &Output) -> Result<()> {
    let source = Location::parse(&args.source)?;
    let old_base = Location::parse(&args.old_base)?;
    let new_base = Location::parse(&args.new_base)?;
    let destination = Location::parse(&args.tag)?;
    let bars = Bars::new(out);
    let edit = edit_options(
        &args.tls,
        args.creds.as_deref(),
        args.authfile.as_ref(),
        args.platform.as_deref(),
        &bars,
    )?;
    let options = RebaseOptions::new().with_edit(edit);
    let report =
        ocikit::transport::rebase(&source, &old_base, &new_base, &destination, &options).await;
    drop(bars);
    show(&report?, "rebased", out)
}
