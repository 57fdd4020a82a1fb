//! `build`: directories (or tar files) to images, by [`ocikit::layout`]'s image builder; this
//! module holds the flags, the progress steps and the summary.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};
use indicatif::ProgressBar;
use ocikit::codec::compression::Compression;
use ocikit::digest::platform;
use ocikit::layout::{BuildRequest, ConfigChanges, Event, Operation, Progress};
use serde::Serialize;

use super::mutate::edit_options;
use super::tls::TlsArgs;
use crate::bars::Bars;
use crate::location::{Location, Selector};
use crate::output::{Output, human_size};

/// What `ocikit build` was asked for.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  ocikit build --tag oci:./images:v1 ./rootfs\n  \
    ocikit build --tag oci:./images:app --from oci:./images:base --cmd /app ./app-layer\n  \
    ocikit build --tag oci:./images:app --from docker://registry.example/base:v1 --env MODE=prod ./app\n  \
    SOURCE_DATE_EPOCH=0 ocikit build --reproducible --compression zstd --tag oci:./images:r ./rootfs"
)]
pub(crate) struct BuildArgs {
    /// Where the image goes: oci:PATH:TAG (a missing layout is created, once the build has
    /// succeeded).
    #[arg(long, short)]
    tag: String,
    /// Layers, in order: directories, or tar files (uncompressed, gzip or zstd; checked as
    /// they are read).
    #[arg(required_unless_present = "layers")]
    sources: Vec<PathBuf>,
    /// More layers, after the positional ones (same meaning; for scripts that prefer flags).
    #[arg(long = "layer")]
    layers: Vec<PathBuf>,
    /// Start from an existing image and add layers on top: oci:PATH:TAG or oci:PATH@DIGEST
    /// (in the layout of --tag, or another), oci-archive:FILE[:TAG|@DIGEST],
    /// docker-archive:FILE[:NAME:TAG] or docker://HOST[:PORT]/NAME[:TAG|@DIGEST]. An image
    /// outside the layout of --tag is edited as `append` does: only the new layers, config
    /// and manifest are written besides the base's blobs.
    #[arg(long, value_name = "IMAGE")]
    from: Option<String>,
    /// The platform: os/arch[/variant] (default: the base's, or this machine's).
    #[arg(long)]
    platform: Option<String>,
    /// The entrypoint: a JSON array (`["/bin/app","--flag"]`) or one program path.
    #[arg(long)]
    entrypoint: Option<String>,
    /// The default command: a JSON array or one word.
    #[arg(long)]
    cmd: Option<String>,
    /// Environment variables, KEY=VALUE (replacing a KEY the base set).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Labels, KEY=VALUE.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    labels: Vec<String>,
    /// Manifest annotations, KEY=VALUE.
    #[arg(long = "annotation", value_name = "KEY=VALUE")]
    annotations: Vec<String>,
    /// The working directory.
    #[arg(long)]
    workdir: Option<String>,
    /// The user (name, uid, or uid:gid).
    #[arg(long)]
    user: Option<String>,
    /// Ports to expose, like 8080/tcp.
    #[arg(long = "expose", value_name = "PORT[/PROTO]")]
    expose: Vec<String>,
    /// Layer compression.
    #[arg(long, value_enum, default_value_t = CompressionArg::Gzip)]
    compression: CompressionArg,
    /// Reproducible output: file times clamped and the image's created time set to
    /// SOURCE_DATE_EPOCH (0 when unset).
    #[arg(long)]
    reproducible: bool,
    /// The history entry of each new layer says it was created by TEXT (default: `ocikit
    /// build`, whatever the path given, so that the same tree gives the same image).
    #[arg(long, value_name = "TEXT", default_value = "ocikit build")]
    created_by: String,
    #[command(flatten)]
    tls: TlsArgs,
    /// Credentials for a --from registry (default: what `ocikit login` stored, else
    /// anonymous).
    #[arg(long, value_name = "USER:PASSWORD")]
    creds: Option<String>,
    /// The credentials file for a --from registry without --creds (default:
    /// $DOCKER_CONFIG/config.json, else ~/.docker/config.json; see `ocikit login`).
    #[arg(long, value_name = "PATH")]
    authfile: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub(crate) enum CompressionArg {
    Gzip,
    Zstd,
    None,
}

impl CompressionArg {
    /// The codec's compression.
    pub(crate) fn compression(self) -> Compression {
        match self {
            CompressionArg::Gzip => Compression::Gzip,
            CompressionArg::Zstd => Compression::Zstd,
            CompressionArg::None => Compression::None,
        }
    }
}

/// `KEY=VALUE` (KEY not empty), for the flag `what`.
pub(crate) fn key_value(text: &str, what: &str) -> Result<(String, String)> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => bail!("{what} `{text}` is not KEY=VALUE"),
    }
}

/// A JSON array of strings (`["/bin/app","--flag"]`), or one word, for the flag `what`.
pub(crate) fn words(text: &str, what: &str) -> Result<Vec<String>> {
    if text.trim_start().starts_with('[') {
        serde_json::from_str(text).with_context(|| format!("{what} is not a JSON array of strings"))
    } else {
        Ok(vec![text.to_string()])
    }
}

/// A sink that draws the library's steps (layer sources packed, trees compared) as bars:
/// bytes when the step's size is known, else a spinner; `verb` labels each operation.
pub(crate) fn steps(bars: &Arc<Bars>, verb: fn(Operation) -> &'static str) -> Progress {
    let bars = Arc::clone(bars);
    let current: Mutex<Option<ProgressBar>> = Mutex::new(None);
    Progress::new(move |event| {
        let Ok(mut current) = current.lock() else {
            return;
        };
        match event {
            Event::StepStarted {
                operation,
                name,
                size,
            } => *current = Some(bars.task(verb(*operation), name.clone(), *size)),
            Event::StepProgress { bytes, .. } => {
                if let Some(bar) = current.as_ref() {
                    bar.set_position(*bytes);
                }
            }
            Event::StepDone { .. } => {
                if let Some(bar) = current.take() {
                    bar.finish_and_clear();
                }
            }
            _ => {}
        }
    })
}

pub(crate) async fn build(args: BuildArgs, out: &Output) -> Result<()> {
    let target = Location::parse(&args.tag)?;
    let (path, selector) = target.oci("build --tag")?;
    let Some(Selector::Tag(tag)) = selector else {
        bail!("--tag needs a tag: oci:PATH:TAG");
    };
    ocikit::layout::validate_tag(tag)?;
    let mut request = BuildRequest::new(tag.clone());
    request.layers = args.sources.iter().chain(&args.layers).cloned().collect();
    request.source_date_epoch = if args.reproducible {
        Some(match std::env::var("SOURCE_DATE_EPOCH") {
            Ok(text) => text
                .trim()
                .parse::<i64>()
                .with_context(|| format!("SOURCE_DATE_EPOCH `{text}` is not a number"))?,
            Err(_) => 0,
        })
    } else {
        None
    };
    let mut changes = ConfigChanges::new();
    changes.platform = args
        .platform
        .as_deref()
        .map(|p| platform::parse(p).with_context(|| format!("`{p}` is not os/arch[/variant]")))
        .transpose()?;
    for text in &args.env {
        let (k, v) = key_value(text, "--env")?;
        changes = changes.env(k, v);
    }
    for text in &args.labels {
        let (k, v) = key_value(text, "--label")?;
        changes = changes.label(k, v);
    }
    for text in &args.annotations {
        let (k, v) = key_value(text, "--annotation")?;
        changes = changes.annotation(k, v);
    }
    changes.entrypoint = args
        .entrypoint
        .as_deref()
        .map(|e| words(e, "--entrypoint"))
        .transpose()?;
    changes.cmd = args.cmd.as_deref().map(|c| words(c, "--cmd")).transpose()?;
    changes.working_dir = args.workdir;
    changes.user = args.user;
    changes.expose = args.expose;
    request.changes = changes;
    request.compression = args.compression.compression();
    request.created_by = Some(args.created_by);
    let from = args.from.as_deref().map(Location::parse).transpose()?;
    let bars = Arc::new(Bars::new(out));
    request.progress = steps(&bars, |_| "build");
    let edit = edit_options(
        &args.tls,
        args.creds.as_deref(),
        args.authfile.as_ref(),
        None,
        &bars,
    )?;
    let built = ocikit::transport::build(path, from.as_ref(), request, edit).await;
    drop(bars);
    let built = built?;
    let layers: Vec<LayerOut<'_>> = built
        .layers
        .iter()
        .map(|l| LayerOut {
            source: &l.source,
            digest: l.descriptor.digest().to_string(),
            size: l.descriptor.size(),
        })
        .collect();
    show_built(&target, built.digest, &layers, out)
}

/// A new layer as `build` shows it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LayerOut<'a> {
    source: &'a Path,
    digest: String,
    size: u64,
}

/// What `build` made, as `--json` shows it or as lines of text.
fn show_built(
    target: &Location,
    digest: String,
    layers: &[LayerOut<'_>],
    out: &Output,
) -> Result<()> {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Built<'a> {
        image: String,
        digest: &'a str,
        layers: &'a [LayerOut<'a>],
    }
    out.show(
        &Built {
            image: target.to_string(),
            digest: &digest,
            layers,
        },
        || {
            let mut text = String::new();
            for l in layers {
                text.push_str(&format!(
                    "layer {} {:>10}  {}\n",
                    l.digest,
                    human_size(l.size),
                    l.source.display()
                ));
            }
            text.push_str(&format!("built {target} {digest}"));
            text
        },
    )
}
