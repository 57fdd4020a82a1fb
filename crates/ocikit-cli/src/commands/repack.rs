//! `diff` and `repack`: what changed in a root filesystem since it was unpacked, and a new
//! image with those changes as one more layer (as `umoci repack` does); the work is
//! [`ocikit::layout::repack`]'s.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Result;
use ocikit::layout::{Change, DiffOptions, Operation, RepackOptions};
use serde::Serialize;

use super::{open_layout, resolve_at};
use crate::bars::Bars;
use crate::commands::image::{CompressionArg, steps};
use crate::location::Location;
use crate::output::{Output, human_size};

/// One changed path, as `--json` shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ChangeOut<'a> {
    path: &'a str,
    /// `added`, `modified`, `deleted` or `emptied` (an opaque directory).
    change: &'static str,
}

fn shown(changes: &[Change]) -> Vec<ChangeOut<'_>> {
    changes
        .iter()
        .map(|c| ChangeOut {
            path: &c.path,
            change: c.kind.as_str(),
        })
        .collect()
}

pub(crate) async fn diff(image: &Location, rootfs: &Path, out: &Output) -> Result<()> {
    let (path, selector) = image.oci("this command")?;
    let layout = open_layout(path).await?;
    let descriptor = resolve_at(path, &layout, selector).await?;
    let report = ocikit::layout::diff(&layout, &descriptor, rootfs, &DiffOptions::new()).await?;
    let listed = shown(&report.changes);
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Diff<'a> {
        image: String,
        changes: &'a [ChangeOut<'a>],
    }
    out.show(
        &Diff {
            image: report.image.digest().to_string(),
            changes: &listed,
        },
        || {
            let mut text = String::new();
            for c in &listed {
                let mark = match c.change {
                    "added" => 'A',
                    "modified" => 'M',
                    "deleted" => 'D',
                    _ => 'O',
                };
                text.push_str(&format!("{mark} {}\n", c.path));
            }
            if listed.is_empty() {
                text.push_str("no changes\n");
            }
            text
        },
    )
}

/// What `ocikit repack` was asked for.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  ocikit unpack oci:./images:v1 ./rootfs && echo hi > ./rootfs/etc/motd\n  \
    ocikit repack oci:./images:v1 ./rootfs --tag v2"
)]
pub(crate) struct RepackArgs {
    /// The image the root filesystem was unpacked from: oci:PATH:TAG or oci:PATH@DIGEST.
    image: String,
    /// The modified root filesystem.
    rootfs: PathBuf,
    /// The new image's tag in the same layout: TAG or oci:PATH:TAG.
    #[arg(long, short)]
    tag: String,
    /// Layer compression.
    #[arg(long, value_enum, default_value_t = CompressionArg::Gzip)]
    compression: CompressionArg,
    /// Record a directory whose every old entry is gone as one opaque whiteout.
    #[arg(long)]
    opaque_whiteouts: bool,
    /// The history entry's `created_by`.
    #[arg(long, default_value = "ocikit repack")]
    created_by: String,
}

pub(crate) async fn repack(args: RepackArgs, out: &Output) -> Result<()> {
    let image = Location::parse(&args.image)?;
    // Repacking onto the base's own tag moves the tag to the new image, as `umoci repack`.
    let (path, selector) = image.oci("repack")?;
    let tag = Location::tag_in(&args.tag, path, "repack --tag")?;
    let layout = open_layout(path).await?;
    let descriptor = resolve_at(path, &layout, selector).await?;
    let bars = Arc::new(Bars::new(out));
    let mut options = RepackOptions::new();
    options.compression = args.compression.compression();
    options.opaque_whiteouts = args.opaque_whiteouts;
    options.created_by = Some(args.created_by);
    options.progress = steps(&bars, |operation| match operation {
        Operation::Compare => "compare",
        _ => "compress",
    });
    let report = ocikit::layout::repack(&layout, &descriptor, &args.rootfs, &tag, &options).await?;
    drop(options);
    drop(bars);
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Repacked {
        digest: String,
        layer: String,
        layer_size: u64,
        changes: usize,
    }
    let shown = Repacked {
        digest: report.manifest.digest().to_string(),
        layer: report.layer.digest().to_string(),
        layer_size: report.layer.size(),
        changes: report.changes.len(),
    };
    out.show(&shown, || {
        format!(
            "repacked {} changes into layer {} ({}); tagged {} as {}",
            shown.changes,
            shown.layer,
            human_size(shown.layer_size),
            shown.digest,
            tag
        )
    })
}
