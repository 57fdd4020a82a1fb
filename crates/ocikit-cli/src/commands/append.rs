//! `append`: layers from directories or tar files put on an image anywhere, by
//! [`ocikit::transport::append`]; this module parses the flags and renders the report.

use std::path::PathBuf;

use anyhow::Result;
use ocikit::transport::{AppendOptions, LayerSource, Location};

use super::image::CompressionArg;
use super::mutate::{edit_options, show};
use super::tls::TlsArgs;
use crate::bars::Bars;
use crate::output::Output;

/// What `ocikit append` was asked for.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Each LAYER is a directory (packed as `build` packs one) or a tar \
    file, uncompressed, gzip or zstd (told apart by its magic bytes, read through the strict \
    tar reader and compressed again as --compression says). Each gets a history entry; the \
    config's created time is set to now.\n\n\
    Within one registry only the new layers, the config and the manifest are uploaded: the \
    base's layers are found in the destination repository or mounted from the source's, \
    never downloaded. Anywhere else the image goes through scratch space, as `copy` moves \
    it.\n\n\
    Where ocikit differs from crane: an index needs --platform (crane appends to linux/amd64 \
    of a multi-platform base only when asked), and a directory is packed as a layer (crane \
    takes tarballs only).\n\n\
    Examples:\n  ocikit append oci:./images:v1 --tag oci:./images:v2 ./rootfs-extra\n  \
    ocikit append docker://registry.example/app:v1 --tag docker://registry.example/app:v1-debug \
    ./debug-tools.tar.gz\n  \
    ocikit append oci-archive:./base.tar --tag oci:./images:app --compression zstd ./app ./config.tar"
)]
pub(crate) struct AppendArgs {
    /// The image: oci:PATH:TAG, oci:PATH@DIGEST, oci-archive:FILE[:TAG|@DIGEST],
    /// docker-archive:FILE[:NAME:TAG] or docker://HOST[:PORT]/NAME[:TAG|@DIGEST].
    source: String,
    /// Where the new image goes, tagged: oci:PATH:TAG (a missing layout is created),
    /// oci-archive:FILE:TAG, docker-archive:FILE:NAME:TAG or docker://HOST[:PORT]/NAME:TAG.
    #[arg(long, short)]
    tag: String,
    /// The layers to add, bottom first: directories, or tar, tar.gz or tar.zst files.
    #[arg(value_name = "LAYER", required = true)]
    layers: Vec<PathBuf>,
    /// Compression of the new layers.
    #[arg(long, value_enum, default_value_t = CompressionArg::Gzip)]
    compression: CompressionArg,
    /// The history entry of each new layer says it was created by TEXT.
    #[arg(long, value_name = "TEXT", default_value = "ocikit append")]
    created_by: String,
    /// os/arch[/variant]: the image of an index to append to (the result is that one image).
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

pub(crate) async fn append(args: AppendArgs, out: &Output) -> Result<()> {
    let source = Location::parse(&args.source)?;
    let destination = Location::parse(&args.tag)?;
    let layers: Vec<LayerSource> = args.layers.iter().map(LayerSource::from_path).collect();
    let bars = Bars::new(out);
    let edit = edit_options(
        &args.tls,
        args.creds.as_deref(),
        args.authfile.as_ref(),
        args.platform.as_deref(),
        &bars,
    )?;
    let options = AppendOptions::new()
        .with_edit(edit)
        .with_compression(args.compression.compression())
        .with_created_by(Some(args.created_by.clone()));
    let report = ocikit::transport::append(&source, &destination, &layers, &options).await;
    drop(bars);
    show(&report?, "appended to", out)
}
