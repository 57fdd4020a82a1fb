//! Opening the layout an `oci:` location names, and finding the image its selector names.

use std::path::{Path, PathBuf};

use ocikit_digest::Digest;
use ocikit_digest::oci_spec::image::Descriptor;
use ocikit_layout::Layout;
use ocikit_store::{FsStore, StoreExt};

use crate::error::{Error, Result};
use crate::location::{Location, Selector};

/// Opens an existing layout directory, without creating anything when there is none
/// ([`Error::NoLayout`] says whether the directory or its `oci-layout` file is missing).
pub async fn open_layout(path: &Path) -> Result<Layout> {
    if !path.join("oci-layout").is_file() {
        return Err(Error::NoLayout {
            path: path.to_path_buf(),
            directory_exists: path.exists(),
        });
    }
    let store = FsStore::open(path)
        .await
        .map_err(|source| Error::OpenStore {
            path: path.to_path_buf(),
            source,
        })?;
    Layout::open(store)
        .await
        .map_err(|source| Error::OpenLayout {
            path: path.to_path_buf(),
            source,
        })
}

/// The descriptor `selector` names in `layout`: a tag's entry, or the index entry (or
/// stored manifest or index) with that digest. `path` is where the layout is, for the
/// errors: a missing tag is [`Error::TagNotFound`] naming it; no selector is
/// [`Error::NoSelector`].
pub async fn resolve(
    layout: &Layout,
    path: &Path,
    selector: Option<&Selector>,
) -> Result<Descriptor> {
    match selector {
        None => Err(Error::NoSelector),
        Some(Selector::Tag(tag)) => layout.resolve(tag).await.map_err(|source| match source {
            ocikit_layout::Error::TagNotFound { .. } => Error::TagNotFound {
                tag: tag.clone(),
                path: path.to_path_buf(),
                source,
            },
            other => Error::Layout(other),
        }),
        Some(Selector::Digest(digest)) => by_digest(layout, digest).await,
    }
}

/// The index entry with `digest`, else a manifest or index stored without an entry, read
/// as what its own `mediaType` says and verified as every walk checks it.
async fn by_digest(layout: &Layout, digest: &Digest) -> Result<Descriptor> {
    let index = layout.index().await?;
    if let Some(found) = index
        .manifests()
        .find(|d| d.digest().to_string() == digest.to_string())
    {
        return Ok(found.clone());
    }
    let bytes = layout
        .store()
        .get_bytes(digest, ocikit_layout::MAX_DOCUMENT_SIZE)
        .await
        .map_err(|source| Error::ReadDocument {
            digest: digest.clone(),
            source,
        })?
        .ok_or_else(|| Error::ManifestNotFound {
            digest: digest.clone(),
        })?;
    // The strict parser (no duplicate keys: with serde_json alone the last `mediaType`
    // would win), then the document read as what it says it is.
    let value = ocikit_digest::json::parse_strict(&bytes).map_err(|source| Error::NotJson {
        digest: digest.clone(),
        source,
    })?;
    let Some(media_type) = value.get("mediaType").and_then(|m| m.as_str()) else {
        return Err(Error::NoMediaType {
            digest: digest.clone(),
        });
    };
    let descriptor = ocikit_digest::descriptor::new(media_type, digest, bytes.len() as u64)
        .map_err(|source| Error::InvalidDescriptor {
            digest: digest.clone(),
            source,
        })?;
    layout
        .read_document(&descriptor)
        .await
        .map_err(|source| Error::NotADocument {
            digest: digest.clone(),
            source,
        })?;
    Ok(descriptor)
}

/// The directory of an `oci:PATH` location that names a whole layout, for the operation
/// `what`: another transport is [`Error::NeedsLayout`], a tag or digest
/// [`Error::NotALayout`].
pub(crate) fn layout_only<'a>(location: &'a Location, what: &str) -> Result<&'a PathBuf> {
    let (path, selector) = location.oci(what)?;
    if selector.is_some() {
        return Err(Error::NotALayout {
            what: what.to_string(),
        });
    }
    Ok(path)
}
