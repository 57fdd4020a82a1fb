//! `flatten`: every layer of an image squashed into one, anywhere, by
//! [`ocikit::transport::flatten`]; this module parses the flags and renders the report.

use std::path::PathBuf;

use anyhow::Result;
use ocikit::transport::{FlattenOptions, Location};

use super::image::CompressionArg;
use super::mutate::{edit_options, show};
use super::tls::TlsArgs;
use crate::bars::Bars;
use crate::output::Output;

/// What `ocikit flatten` was asked for.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "The layers are merged in one streaming pass: each decompressed and \
    verified (digest and diffID) as it is read, whiteouts and opaque directories resolved, \
    the result compressed as --compression says. The image gets one layer, one diffID and \
    one history entry; the rest of its config stays. The layers of an oci: source are read \
    from its blob files; an archive or a registry image is first copied into scratch space. \
    Within one registry only the new layer, the config and the manifest are uploaded.\n\n\
    Where ocikit differs from crane: an index needs --platform (crane flattens every image \
    of an index), and the history keeps one entry (crane keeps the old entries as empty \
    layers).\n\n\
    Examples:\n  ocikit flatten oci:./images:v1 --tag oci:./images:v1-flat\n  \
    ocikit flatten docker://registry.example/app:v1 --tag docker://registry.example/app:flat \
    --compression zstd"
)]
pub(crate) struct FlattenArgs {
    /// The image: oci:PATH:TAG, oci:PATH@DIGEST, oci-archive:FILE[:TAG|@DIGEST],
    /// docker-archive:FILE[:NAME:TAG] or docker://HOST[:PORT]/NAME[:TAG|@DIGEST].
    source: String,
    /// Where the flattened image goes, tagged: oci:PATH:TAG (a missing layout is created),
    /// oci-archive:FILE:TAG, docker-archive:FILE:NAME:TAG or docker://HOST[:PORT]/NAME:TAG.
    #[arg(long, short)]
    tag: String,
    /// Compression of the layer.
    #[arg(long, value_enum, default_value_t = CompressionArg::Gzip)]
    compression: CompressionArg,
    /// The history entry of the layer says it was created by TEXT.
    #[arg(long, value_name = "TEXT", default_value = "ocikit flatten")]
    created_by: String,
    /// os/arch[/variant]: the image of an index to flatten (the result is that one image).
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

pub(crate) async fn flatten(args: FlattenArgs, out: &Output) -> Result<()> {
    let source = Location::parse(&args.source)?;
    let destination = Location::parse(&args.tag)?;
    let bars = Bars::new(out);
    let edit = edit_options(
        &args.tls,
        args.creds.as_deref(),
        args.authfile.as_ref(),
        args.platform.as_deref(),
        &bars,
    )?;
    let options = FlattenOptions::new()
        .with_edit(edit)
        .with_compression(args.compression.compression())
        .with_created_by(Some(args.created_by.clone()));
    let report = ocikit::transport::flatten(&source, &destination, &options).await;
    drop(bars);
    show(&report?, "flattened", out)
}
