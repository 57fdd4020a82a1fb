//! `diff` and `repack`: what changed in a root filesystem since it was unpacked, and a new
//! image with those changes as one more layer (as `umoci repack` does).
//!
//! The image is unpacked afresh into a scratch directory (the lower tree) and compared with
//! the modified root filesystem (the upper tree) by `ocikit-codec`'s changeset builder:
//! added and modified paths in full, deletions as whiteouts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use ocikit::codec::Limits;
use ocikit::codec::apply::{EntryKind, NameClass, classify_name, list_entries};
use ocikit::codec::build::{BuildOptions, build_changeset};
use ocikit::digest::oci_spec::image::Descriptor;
use ocikit::layout::{ImageBuilder, LayerSpec, Layout, PlatformQuery, UnpackOptions};
use serde::Serialize;

use super::{open_layout, resolve_at};
use crate::bars::{Bars, Counted};
use crate::commands::image::CompressionArg;
use crate::location::Location;
use crate::output::{Output, human_size};

/// The image, the changeset of `rootfs` against it in a scratch tar file, and the scratch
/// directory (which holds both the lower tree and the tar until dropped).
struct Changes {
    layout: Layout,
    base: Descriptor,
    tar: PathBuf,
    lower: PathBuf,
    _scratch: tempfile::TempDir,
}

async fn changes(image: &Location, rootfs: &Path, opaque: bool) -> Result<Changes> {
    let (path, selector) = image.oci("this command")?;
    if !rootfs.is_dir() {
        bail!("{} is not a directory", rootfs.display());
    }
    let layout = open_layout(path).await?;
    let base = resolve_at(path, &layout, selector).await?;
    let scratch = tempfile::Builder::new()
        .prefix(".ocikit-repack-")
        .tempdir()
        .context("cannot create a scratch directory")?;
    let lower = scratch.path().join("lower");
    let unpacked = ocikit::layout::unpack(
        &layout,
        &base,
        &lower,
        &UnpackOptions::new().with_platform(PlatformQuery::current()),
    )
    .await
    .with_context(|| format!("cannot unpack {image} to compare with"))?;
    let base = unpacked.manifest;
    let tar = scratch.path().join("changes.tar");
    let (lower_dir, upper, tar_path) = (lower.clone(), rootfs.to_path_buf(), tar.clone());
    tokio::task::spawn_blocking(move || -> Result<()> {
        let file = std::fs::File::create(&tar_path)
            .with_context(|| format!("cannot create {}", tar_path.display()))?;
        let options = BuildOptions::new().with_opaque_whiteouts(opaque);
        build_changeset(&lower_dir, &upper, std::io::BufWriter::new(file), &options)
            .with_context(|| format!("cannot compare {} with the image", upper.display()))?;
        Ok(())
    })
    .await??;
    Ok(Changes {
        layout,
        base,
        tar,
        lower,
        _scratch: scratch,
    })
}

/// One changed path.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Change {
    path: String,
    /// `added`, `modified`, `deleted` or `emptied` (an opaque directory).
    change: &'static str,
}

/// The changes a changeset tar records, against the lower tree.
fn describe(tar: &Path, lower: &Path) -> Result<Vec<Change>> {
    let file =
        std::fs::File::open(tar).with_context(|| format!("cannot read {}", tar.display()))?;
    let (entries, _) = list_entries(std::io::BufReader::new(file), Limits::default())?;
    let mut out = BTreeMap::new();
    for entry in entries {
        let path = entry.path.strip_suffix(b"/").unwrap_or(&entry.path);
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        // A directory path as the listing shows it: with a trailing `/`, the root empty.
        let dir_text = |dir: &[u8]| {
            if dir.is_empty() {
                String::new()
            } else {
                format!("{}/", text(dir))
            }
        };
        match classify_name(path) {
            Ok(NameClass::Opaque { dir }) => {
                out.insert(dir_text(dir), "emptied");
            }
            Ok(NameClass::Whiteout { dir, target }) => {
                out.insert(format!("{}{}", dir_text(dir), text(target)), "deleted");
            }
            Ok(NameClass::Normal) => {
                let name = text(path);
                let existed = std::fs::symlink_metadata(lower.join(&name)).is_ok();
                // Directories are carried because something below them changed: only new
                // ones are changes of their own.
                if entry.kind == EntryKind::Directory && existed {
                    continue;
                }
                out.insert(name, if existed { "modified" } else { "added" });
            }
            // Our own changeset writes neither AUFS metadata nor bad whiteouts.
            Ok(_) => {}
            Err(e) => bail!("the changeset holds an invalid entry {:?}: {e}", text(path)),
        }
    }
    Ok(out
        .into_iter()
        .map(|(path, change)| Change { path, change })
        .collect())
}

pub(crate) async fn diff(image: &Location, rootfs: &Path, out: &Output) -> Result<()> {
    let changes = changes(image, rootfs, false).await?;
    let listed = describe(&changes.tar, &changes.lower)?;
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Diff<'a> {
        image: String,
        changes: &'a [Change],
    }
    out.show(
        &Diff {
            image: changes.base.digest().to_string(),
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
    let (path, _) = image.oci("repack")?;
    let tag = Location::tag_in(&args.tag, path, "repack --tag")?;
    let bars = Bars::new(out);
    let comparing = bars.task("compare", args.rootfs.display().to_string(), None);
    let changes = changes(&image, &args.rootfs, args.opaque_whiteouts).await?;
    let listed = describe(&changes.tar, &changes.lower)?;
    comparing.finish_and_clear();
    let mut builder =
        ImageBuilder::from_image(&changes.layout, &changes.base, &PlatformQuery::current())
            .await
            .with_context(|| format!("cannot use {image} as the base"))?;
    let compression = args.compression.compression();
    let file = std::fs::File::open(&changes.tar)
        .with_context(|| format!("cannot read {}", changes.tar.display()))?;
    let bar = bars.task(
        "compress",
        format!("{} changes", listed.len()),
        file.metadata().ok().map(|m| m.len()),
    );
    let layer = builder
        .add_layer_from_tar(
            Counted {
                inner: std::io::BufReader::new(file),
                bar: bar.clone(),
            },
            LayerSpec::new()
                .compression(compression)
                .created_by(args.created_by.clone()),
        )
        .await
        .context("cannot store the changes as a layer")?;
    bar.finish_and_clear();
    drop(bars);
    let manifest = builder.write_and_tag(&tag).await?;
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Repacked {
        digest: String,
        layer: String,
        layer_size: u64,
        changes: usize,
    }
    let shown = Repacked {
        digest: manifest.digest().to_string(),
        layer: layer.digest().to_string(),
        layer_size: layer.size(),
        changes: listed.len(),
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
