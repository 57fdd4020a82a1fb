//! `copy` (and its shorthands `import` and `export`): images between any two transports.
//!
//! The source is first made a layout: an `oci:` source is used as it is, an archive is
//! imported (streaming, verified) into a scratch layout beside the destination, so that the
//! destination side only ever copies from a layout, with hardlinks where both sit on one
//! filesystem. Nothing is tagged at the destination before every blob it reaches is there.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use ocikit::digest::oci_spec::image::Descriptor;
use ocikit::layout::archive::{docker, oci};
use ocikit::layout::{CopyOptions, Layout, copy_image};
use ocikit::store::FsStore;
use serde::Serialize;

use super::{open_layout, resolve};
use crate::bars::Bars;
use crate::location::{Location, Selector};
use crate::output::{Output, human_size};

/// An image to copy: where it is tagged in the staged layout, if anywhere, and its root.
struct Item {
    tag: Option<String>,
    root: Descriptor,
}

/// A directory for scratch layouts next to `near` (so hardlinks work), removed on drop.
fn scratch_near(near: &Path) -> Result<tempfile::TempDir> {
    let parent = near
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    tempfile::Builder::new()
        .prefix(".ocikit-copy-")
        .tempdir_in(&parent)
        .or_else(|_| tempfile::tempdir())
        .context("cannot create a scratch directory")
}

async fn scratch_layout(dir: &Path) -> Result<Layout> {
    Ok(Layout::create(FsStore::open(dir.join("layout")).await?).await?)
}

/// The source as a layout and the images to copy from it.
async fn stage(source: &Location, scratch: &Path, bars: &Bars) -> Result<(Layout, Vec<Item>)> {
    match source {
        Location::Oci { path, selector } => {
            let layout = open_layout(path).await?;
            let items = match selector {
                Some(Selector::Tag(tag)) => vec![Item {
                    tag: Some(tag.clone()),
                    root: layout.resolve(tag).await?,
                }],
                Some(digest @ Selector::Digest(_)) => vec![Item {
                    tag: None,
                    root: resolve(&layout, Some(digest)).await?,
                }],
                None => layout
                    .tags()
                    .await?
                    .into_iter()
                    .map(|(tag, root)| Item {
                        tag: Some(tag),
                        root,
                    })
                    .collect(),
            };
            Ok((layout, items))
        }
        Location::OciArchive { path, tag } => {
            let layout = scratch_layout(scratch).await?;
            let mut options = oci::ImportOptions::new().with_progress(bars.progress("read"));
            if let Some(tag) = tag {
                options = options.with_tags([tag.clone()]);
            }
            oci::import_path(&layout, path, &options)
                .await
                .with_context(|| format!("cannot read {source}"))?;
            let items = tagged_items(&layout, tag.as_deref()).await?;
            Ok((layout, items))
        }
        Location::DockerArchive { path, reference } => {
            let layout = scratch_layout(scratch).await?;
            let options = docker::Options::new().with_progress(bars.progress("read"));
            let report = docker::import_path(&layout, path, &options)
                .await
                .with_context(|| format!("cannot read {source}"))?;
            let mut items = Vec::new();
            for image in report.images {
                let wanted = match reference {
                    Some(r) => image.tags.iter().any(|t| t == r),
                    None => true,
                };
                if wanted {
                    items.push(Item {
                        tag: image.tags.first().cloned(),
                        root: image.manifest,
                    });
                }
            }
            if items.is_empty() {
                match reference {
                    Some(r) => bail!("{} has no image tagged {r:?}", path.display()),
                    None => bail!("{} holds no image", path.display()),
                }
            }
            Ok((layout, items))
        }
    }
}

async fn tagged_items(layout: &Layout, only: Option<&str>) -> Result<Vec<Item>> {
    let items: Vec<Item> = layout
        .tags()
        .await?
        .into_iter()
        .filter(|(t, _)| only.is_none_or(|o| o == t))
        .map(|(tag, root)| Item {
            tag: Some(tag),
            root,
        })
        .collect();
    if items.is_empty() {
        match only {
            Some(tag) => bail!("the archive has no image tagged {tag:?}"),
            None => bail!("the archive holds no tagged image"),
        }
    }
    Ok(items)
}

/// The tags the destination gives the items: its own tag for a single image, else each
/// image's tag.
fn destination_tags(items: &[Item], wanted: Option<&str>) -> Result<Vec<String>> {
    match wanted {
        Some(tag) if items.len() == 1 => Ok(vec![tag.to_string()]),
        Some(_) => bail!(
            "the source holds {} images: name one in the source, or leave the destination's tag out",
            items.len()
        ),
        None => items
            .iter()
            .map(|i| {
                i.tag
                    .clone()
                    .context("name a tag for the destination (the source image is named by digest)")
            })
            .collect(),
    }
}

#[derive(Debug, Serialize)]
struct Copied {
    source: String,
    destination: String,
    images: Vec<String>,
    blobs_copied: usize,
    blobs_skipped: usize,
    bytes: u64,
}

pub(crate) async fn copy(source: &Location, destination: &Location, out: &Output) -> Result<()> {
    let near = match destination {
        Location::Oci { path, .. }
        | Location::OciArchive { path, .. }
        | Location::DockerArchive { path, .. } => path.clone(),
    };
    if let (Location::Oci { path: a, .. }, Location::Oci { path: b, .. }) = (source, destination)
        && a == b
        && matches!(destination, Location::Oci { selector: None, .. })
    {
        bail!("source and destination are the same layout; use `ocikit tag` to add a tag");
    }
    let scratch = scratch_near(&near)?;
    let bars = Bars::new(out);
    let (staged, items) = stage(source, scratch.path(), &bars).await?;
    let options = CopyOptions::new().with_progress(bars.progress("copy"));
    let mut copied = Copied {
        source: source.to_string(),
        destination: destination.to_string(),
        images: Vec::new(),
        blobs_copied: 0,
        blobs_skipped: 0,
        bytes: 0,
    };
    match destination {
        Location::Oci { path, selector } => {
            let wanted = match selector {
                None => None,
                Some(Selector::Tag(tag)) => Some(tag.as_str()),
                Some(Selector::Digest(_)) => {
                    bail!("the destination takes a tag (oci:PATH:TAG), not a digest")
                }
            };
            let tags = destination_tags(&items, wanted)?;
            let layout = Layout::create(FsStore::open(path).await?)
                .await
                .with_context(|| {
                    format!("cannot open or create the layout at {}", path.display())
                })?;
            for (item, tag) in items.iter().zip(&tags) {
                let report = copy_image(&staged, &item.root, &layout, tag, &options)
                    .await
                    .with_context(|| {
                        format!("cannot copy {} to {destination}", item.root.digest())
                    })?;
                copied.blobs_copied += report.copied + report.hardlinked + report.reflinked;
                copied.blobs_skipped += report.skipped;
                copied.bytes += report.bytes;
                copied.images.push(format!("{tag} {}", item.root.digest()));
            }
        }
        Location::OciArchive { path, tag } => {
            let tags = destination_tags(&items, tag.as_deref())?;
            // The archive's index carries the tags as the staged layout has them: retag in a
            // scratch layout when they differ (hardlinks, so nearly free).
            let retag = items
                .iter()
                .zip(&tags)
                .any(|(i, t)| i.tag.as_deref() != Some(t));
            let (layout, _keep) = if retag {
                let dir = scratch.path().join("retagged");
                let layout = scratch_layout(&dir).await?;
                for (item, tag) in items.iter().zip(&tags) {
                    copy_image(&staged, &item.root, &layout, tag, &options).await?;
                }
                (layout, Some(dir))
            } else {
                (staged.clone(), None)
            };
            let names: Vec<&str> = tags.iter().map(String::as_str).collect();
            let report = oci::export_path(
                &layout,
                Some(&names),
                path,
                &oci::ExportOptions::new().with_progress(bars.progress("write")),
            )
            .await
            .with_context(|| format!("cannot write {destination}"))?;
            copied.blobs_copied = report.blobs;
            copied.bytes = report.bytes;
            copied.images = tags;
        }
        Location::DockerArchive { path, reference } => {
            let repo_tags = match reference {
                Some(r) if items.len() == 1 => vec![r.clone()],
                Some(_) => bail!("the source holds {} images: name one", items.len()),
                None => items
                    .iter()
                    .map(|i| {
                        let tag = i
                            .tag
                            .as_deref()
                            .context("name a NAME:TAG for the archive")?;
                        Ok(if tag.contains(':') {
                            tag.to_string()
                        } else {
                            format!("{tag}:latest")
                        })
                    })
                    .collect::<Result<_>>()?,
            };
            // docker-archive export names images by their tag in the layout.
            let dir = scratch.path().join("export");
            let layout = scratch_layout(&dir).await?;
            let mut pairs = Vec::new();
            for (n, item) in items.iter().enumerate() {
                let tag = format!("export-{n}");
                copy_image(&staged, &item.root, &layout, &tag, &options).await?;
                pairs.push(tag);
            }
            let images: Vec<(&str, &str)> = pairs
                .iter()
                .map(String::as_str)
                .zip(repo_tags.iter().map(String::as_str))
                .collect();
            let report = docker::export_path(
                &layout,
                &images,
                path,
                &docker::Options::new().with_progress(bars.progress("write")),
            )
            .await
            .with_context(|| format!("cannot write {destination}"))?;
            copied.blobs_copied = report.layers;
            copied.bytes = report.bytes;
            copied.images = repo_tags;
        }
    }
    drop(bars);
    out.show(&copied, || {
        format!(
            "copied {} image(s) from {} to {}: {} blobs written, {} already there, {}",
            copied.images.len(),
            copied.source,
            copied.destination,
            copied.blobs_copied,
            copied.blobs_skipped,
            human_size(copied.bytes)
        )
    })
}
