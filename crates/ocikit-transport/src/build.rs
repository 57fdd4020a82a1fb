//! `ocikit build` on a base anywhere: [`build`] builds into a layout on a base in that
//! layout (the layout's own [`build_at`](ocikit_layout::build_at)) or on a base at any
//! other location (the layers appended through [`append`](crate::append), the build's
//! changes made in the same edit).

use std::path::{Path, PathBuf};

use ocikit_digest::oci_spec::image::Descriptor;
use ocikit_layout::{BuildRequest, Document, PlatformQuery};

use crate::error::{Error, Result};
use crate::location::Location;
use crate::open::{open_layout, resolve};
use crate::surgery::{AppendOptions, EditOptions, LayerSource, append};

/// A layer [`build`] made, with the source it was packed from.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct BuiltLayer {
    /// The directory or tar file.
    pub source: PathBuf,
    /// The layer's descriptor.
    pub descriptor: Descriptor,
}

/// What [`build`] made.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Built {
    /// The new image's manifest digest.
    pub digest: String,
    /// The new layers, in order.
    pub layers: Vec<BuiltLayer>,
}

/// Builds `request` into the layout at `path` (created when missing, once the build has
/// succeeded), under `request.tag`, on the base `from` names: an image of that same layout
/// is the base of [`ocikit_layout::build_at`] (its `request.progress` reports); an image
/// anywhere else (another layout, an archive, a registry, reached with `edit`'s options)
/// gets the layers appended and the changes made in one edit, as the same build on a base
/// in the layout would make them (the base's digest annotated; SOURCE_DATE_EPOCH honoured).
/// For an index, the platform of `request.changes` is picked, else this machine's.
pub async fn build(
    path: &Path,
    from: Option<&Location>,
    mut request: BuildRequest,
    edit: EditOptions,
) -> Result<Built> {
    if let Some(from) = from {
        match from {
            Location::Oci {
                path: base_path,
                selector,
            } if same_path(base_path, path) => {
                let layout = open_layout(base_path).await?;
                request.base = Some(resolve(&layout, base_path, selector.as_ref()).await?);
            }
            _ => return build_elsewhere(path, from, &request, edit).await,
        }
    }
    let report = ocikit_layout::build_at(path, &request).await?;
    Ok(Built {
        digest: report.manifest.digest().to_string(),
        layers: report
            .layers
            .into_iter()
            .map(|l| BuiltLayer {
                source: l.source,
                descriptor: l.descriptor,
            })
            .collect(),
    })
}

/// Whether two paths name one directory (compared as given where either cannot be
/// resolved).
fn same_path(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// [`build`] on a base outside the layout: [`append`] with the request's layers and changes.
async fn build_elsewhere(
    path: &Path,
    from: &Location,
    request: &BuildRequest,
    edit: EditOptions,
) -> Result<Built> {
    let platform = request
        .changes
        .platform
        .as_ref()
        .map_or_else(PlatformQuery::current, PlatformQuery::new);
    let edit = edit.with_platform(Some(platform));
    let sources: Vec<LayerSource> = request.layers.iter().map(LayerSource::from_path).collect();
    let options = AppendOptions::new()
        .with_edit(edit)
        .with_compression(request.compression)
        .with_created_by(request.created_by.clone())
        .with_changes(request.changes.clone())
        .with_source_date_epoch(request.source_date_epoch)
        .with_base_annotation(true);
    let target = Location::Oci {
        path: path.to_path_buf(),
        selector: Some(crate::location::Selector::Tag(request.tag.clone())),
    };
    let report = append(from, &target, &sources, &options).await?;
    // The new layers are the top ones of the image written.
    let layout = open_layout(path).await?;
    let root = layout.resolve(&request.tag).await?;
    let manifest = match layout.read_document(&root).await? {
        Document::Manifest { manifest, .. } => manifest,
        _ => {
            return Err(Error::NotAManifest {
                digest: root.digest().to_string(),
                media_type: root.media_type().to_string(),
            });
        }
    };
    let top = manifest.layers().len().saturating_sub(sources.len());
    Ok(Built {
        digest: report.digest,
        layers: request
            .layers
            .iter()
            .zip(&manifest.layers()[top..])
            .map(|(source, layer)| BuiltLayer {
                source: source.clone(),
                descriptor: layer.clone(),
            })
            .collect(),
    })
}
