//! `init`, `ls`, `tag`, `untag`: the layout and its tags.

use anyhow::{Context, Result, bail};
use ocikit::layout::Layout;
use ocikit::layout::copy::footprint;
use ocikit::store::FsStore;
use serde::Serialize;

use super::{open_layout, resolve_at};
use crate::location::{Location, Selector};
use crate::output::{Output, human_size, short_digest};

pub(crate) async fn init(location: &Location, out: &Output) -> Result<()> {
    let (path, selector) = location.oci("init")?;
    if selector.is_some() {
        bail!("init takes a layout (oci:PATH), not an image");
    }
    let store = FsStore::open(path)
        .await
        .with_context(|| format!("cannot create a store at {}", path.display()))?;
    Layout::create(store)
        .await
        .with_context(|| format!("cannot create a layout at {}", path.display()))?;
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Created<'a> {
        layout: &'a std::path::Path,
    }
    out.show(&Created { layout: path }, || {
        format!("initialised OCI image layout {}", path.display())
    })
}

/// One `ls` row: a tag, or an untagged image (no `tag` key in JSON).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Row {
    #[serde(skip_serializing_if = "Option::is_none")]
    tag: Option<String>,
    digest: String,
    #[serde(rename = "mediaType")]
    media_type: String,
    /// Bytes of the manifest (or index), configs and layers, each blob counted once.
    size: u64,
    platforms: Vec<String>,
}

pub(crate) async fn ls(location: &Location, out: &Output) -> Result<()> {
    let (path, selector) = location.oci("ls")?;
    if selector.is_some() {
        bail!("ls takes a layout (oci:PATH), not an image");
    }
    let layout = open_layout(path).await?;
    let mut rows = Vec::new();
    let entries = layout
        .entries()
        .await
        .with_context(|| format!("cannot list the images of {}", path.display()))?;
    for (tag, descriptor) in entries {
        let footprint = footprint(&layout, &descriptor)
            .await
            .with_context(|| match &tag {
                Some(tag) => format!("cannot read the image tagged {tag:?}"),
                None => format!("cannot read the untagged image {}", descriptor.digest()),
            })?;
        rows.push(Row {
            tag,
            digest: descriptor.digest().to_string(),
            media_type: descriptor.media_type().to_string(),
            size: footprint.bytes,
            platforms: footprint.platforms,
        });
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Listing<'a> {
        tags: &'a [Row],
    }
    // Tags, and the digests of untagged images (what names them).
    let quiet = || {
        rows.iter()
            .map(|r| format!("{}\n", r.tag.as_deref().unwrap_or(&r.digest)))
            .collect()
    };
    out.answer(
        &Listing { tags: &rows },
        || {
            let mut text = format!("{:<24} {:<12} {:>10}  PLATFORMS\n", "TAG", "DIGEST", "SIZE");
            for row in &rows {
                text.push_str(&format!(
                    "{:<24} {:<12} {:>10}  {}\n",
                    row.tag.as_deref().unwrap_or(UNTAGGED),
                    short_digest(&row.digest),
                    human_size(row.size),
                    if row.platforms.is_empty() {
                        "-".to_string()
                    } else {
                        row.platforms.join(", ")
                    }
                ));
            }
            text
        },
        quiet,
    )
}

/// The TAG column of an untagged image, as docker and podman show one.
const UNTAGGED: &str = "<none>";

/// `tag IMAGE NEW`: NEW is a bare tag or `oci:PATH:TAG` naming the image's own layout.
pub(crate) async fn tag(location: &Location, new_tag: &str, out: &Output) -> Result<()> {
    let (path, selector) = location.oci("tag")?;
    let new_tag = Location::tag_in(new_tag, path, "tag")?;
    let new_tag = new_tag.as_str();
    let layout = open_layout(path).await?;
    let descriptor = resolve_at(path, &layout, selector).await?;
    layout
        .set_tag(new_tag, &descriptor)
        .await
        .with_context(|| format!("cannot tag {} as {new_tag:?}", descriptor.digest()))?;
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Tagged<'a> {
        tag: &'a str,
        digest: String,
    }
    out.show(
        &Tagged {
            tag: new_tag,
            digest: descriptor.digest().to_string(),
        },
        || format!("tagged {} as {new_tag}", descriptor.digest()),
    )
}

pub(crate) async fn untag(location: &Location, out: &Output) -> Result<()> {
    let (path, selector) = location.oci("untag")?;
    let Some(Selector::Tag(tag)) = selector else {
        bail!("untag needs a tag: oci:PATH:TAG");
    };
    let layout = open_layout(path).await?;
    // The tag, and the untagged entries (attached artifacts) that only it kept alive; the
    // blobs go at the next `ocikit gc`.
    if layout.remove_image(tag).await?.is_none() {
        bail!("no tag {tag:?} in {}", path.display());
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Untagged<'a> {
        removed: &'a str,
    }
    out.show(&Untagged { removed: tag }, || format!("removed tag {tag}"))
}
