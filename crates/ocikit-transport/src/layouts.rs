//! A layout's own verbs, named by location: [`init`], [`list_images`], [`tag`], [`untag`],
//! [`attach`], [`fsck`] and [`gc`] (`ocikit init`, `ls`, `tag`, `untag`, `attach`, `fsck`,
//! `gc`).

use ocikit_digest::oci_spec::image::Descriptor;
use ocikit_layout::copy::footprint;
use ocikit_layout::{FsckOptions, FsckReport, GcOptions, GcReport, Layout};
use ocikit_store::FsStore;
use serde::Serialize;

use crate::artifact::{ArtifactFile, ArtifactPushOptions};
use crate::error::{Error, Result};
use crate::location::{Location, Selector};
use crate::open::{layout_only, open_layout, resolve};

/// One image of a layout, as [`list_images`] lists it (and `ocikit ls --json` prints it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ImageEntry {
    /// Its tag; `None` for an untagged entry of `index.json` (left out of JSON).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// The manifest's (or index's) digest.
    pub digest: String,
    /// Its media type.
    pub media_type: String,
    /// Bytes of the manifest (or index), configs and layers, each blob counted once.
    pub size: u64,
    /// The platforms of its images (`os/arch[/variant]`), sorted, each once.
    pub platforms: Vec<String>,
}

/// An artifact [`attach`] attached.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Attached {
    /// The image it refers to.
    pub subject: Descriptor,
    /// The artifact's manifest.
    pub artifact: Descriptor,
}

/// `ocikit init`: makes the layout `location` names (`oci:PATH`), or opens it when it is
/// one already (nothing changes then).
pub async fn init(location: &Location) -> Result<Layout> {
    let path = layout_only(location, "init")?;
    let store = FsStore::open(path)
        .await
        .map_err(|source| Error::OpenStore {
            path: path.clone(),
            source,
        })?;
    Layout::create(store).await.map_err(|source| Error::Init {
        path: path.clone(),
        source,
    })
}

/// `ocikit ls`: every entry of the layout `location` names (`oci:PATH`), tagged or not, in
/// `index.json`'s order, with its footprint: the blobs it reaches (one walk, every document
/// verified and parsed strictly) and the platforms of its images (configs read strictly).
pub async fn list_images(location: &Location) -> Result<Vec<ImageEntry>> {
    let path = layout_only(location, "ls")?;
    let layout = open_layout(path).await?;
    let entries = layout.entries().await.map_err(|source| Error::ListImages {
        path: path.clone(),
        source,
    })?;
    let mut images = Vec::with_capacity(entries.len());
    for (tag, descriptor) in entries {
        let found = match footprint(&layout, &descriptor).await {
            Ok(found) => found,
            Err(source) => {
                return Err(Error::ListImage {
                    tag,
                    digest: descriptor.digest().to_string(),
                    source,
                });
            }
        };
        images.push(ImageEntry {
            tag,
            digest: descriptor.digest().to_string(),
            media_type: descriptor.media_type().to_string(),
            size: found.bytes,
            platforms: found.platforms,
        });
    }
    Ok(images)
}

/// `ocikit tag`: tags the image `location` names (`oci:PATH:TAG|@DIGEST`) as `new_tag`, a
/// bare tag or `oci:PATH:TAG` naming that same layout ([`Location::tag_in`]); returns the
/// tag and the image.
pub async fn tag(location: &Location, new_tag: &str) -> Result<(String, Descriptor)> {
    let (path, selector) = location.oci("tag")?;
    let new_tag = Location::tag_in(new_tag, path, "tag")?;
    let layout = open_layout(path).await?;
    let descriptor = resolve(&layout, path, selector).await?;
    layout
        .set_tag(&new_tag, &descriptor)
        .await
        .map_err(|source| Error::SetTag {
            digest: descriptor.digest().to_string(),
            tag: new_tag.clone(),
            source,
        })?;
    Ok((new_tag, descriptor))
}

/// `ocikit untag`: removes the tag `location` names (`oci:PATH:TAG`), and the untagged
/// entries (attached artifacts) only it kept alive; the blobs stay until [`gc`]. Returns
/// the tag and the image it named; a tag the layout does not have is
/// [`Error::TagNotFound`].
pub async fn untag(location: &Location) -> Result<(String, Descriptor)> {
    let (path, selector) = location.oci("untag")?;
    let Some(Selector::Tag(tag)) = selector else {
        return Err(Error::NeedsLayoutTag {
            what: "untag".into(),
            location: location.to_string(),
        });
    };
    let layout = open_layout(path).await?;
    match layout.remove_image(tag).await? {
        Some(descriptor) => Ok((tag.clone(), descriptor)),
        None => Err(Error::TagNotFound {
            tag: tag.clone(),
            path: path.clone(),
            source: ocikit_layout::Error::TagNotFound { tag: tag.clone() },
        }),
    }
}

/// `ocikit attach`: attaches `files` as an artifact to the image `location` names
/// (`oci:PATH:TAG|@DIGEST` or `docker://HOST/NAME[:TAG|@DIGEST]`) as a referrer: an OCI 1.1
/// manifest whose `subject` is that image, each file a layer titled with its file name
/// (`org.opencontainers.image.title`), written into the same layout (listed untagged in
/// `index.json`) or repository (by digest; the registry's referrers API lists it, or the
/// referrers tag schema where it has none), as `oras attach` does. See
/// [`artifact_push`](crate::artifact_push) for the options and errors.
pub async fn attach(
    location: &Location,
    files: &[ArtifactFile],
    options: &ArtifactPushOptions,
) -> Result<Attached> {
    let (subject, artifact) = crate::artifact::attach_files(location, files, options).await?;
    Ok(Attached { subject, artifact })
}

/// `ocikit fsck`: checks the layout `location` names (`oci:PATH`) as
/// [`Layout::fsck`] does; what it finds is in the report ([`FsckReport::is_clean`]), an
/// error only when the check could not run.
pub async fn fsck(location: &Location, options: &FsckOptions) -> Result<FsckReport> {
    let path = layout_only(location, "fsck")?;
    let layout = open_layout(path).await?;
    layout
        .fsck(options)
        .await
        .map_err(|source| Error::Fsck { source })
}

/// `ocikit gc`: removes the blobs of the layout `location` names (`oci:PATH`) that nothing
/// reaches, as [`Layout::gc`] does.
pub async fn gc(location: &Location, options: &GcOptions) -> Result<GcReport> {
    let path = layout_only(location, "gc")?;
    let layout = open_layout(path).await?;
    layout
        .gc(options)
        .await
        .map_err(|source| Error::Gc { source })
}
