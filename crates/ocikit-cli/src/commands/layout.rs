//! `init`, `ls`, `tag`, `untag`: the layout and its tags, by [`ocikit::transport::init`],
//! [`ocikit::transport::list_images`], [`ocikit::transport::tag`] and
//! [`ocikit::transport::untag`]; this module renders.

use anyhow::{Context, Result};
use ocikit::transport::ImageEntry;
use serde::Serialize;

use crate::location::Location;
use crate::output::{Output, human_size, short_digest};

pub(crate) async fn init(location: &Location, out: &Output) -> Result<()> {
    ocikit::transport::init(location).await?;
    let path = location.path().context("init made a layout at no path")?;
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Created<'a> {
        layout: &'a std::path::Path,
    }
    out.show(&Created { layout: path }, || {
        format!("initialised OCI image layout {}", path.display())
    })
}

pub(crate) async fn ls(location: &Location, out: &Output) -> Result<()> {
    let rows = ocikit::transport::list_images(location).await?;
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Listing<'a> {
        tags: &'a [ImageEntry],
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
    let (new_tag, descriptor) = ocikit::transport::tag(location, new_tag).await?;
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Tagged<'a> {
        tag: &'a str,
        digest: String,
    }
    out.show(
        &Tagged {
            tag: &new_tag,
            digest: descriptor.digest().to_string(),
        },
        || format!("tagged {} as {new_tag}", descriptor.digest()),
    )
}

pub(crate) async fn untag(location: &Location, out: &Output) -> Result<()> {
    // The tag, and the untagged entries (attached artifacts) that only it kept alive; the
    // blobs go at the next `ocikit gc`.
    let (tag, _) = ocikit::transport::untag(location).await?;
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Untagged<'a> {
        removed: &'a str,
    }
    out.show(&Untagged { removed: &tag }, || format!("removed tag {tag}"))
}
