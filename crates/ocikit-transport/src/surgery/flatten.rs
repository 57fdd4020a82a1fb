//! [`flatten`]: `ocikit flatten`, every layer of an image squashed into one, from any
//! location to any other.

use std::io::{self, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ocikit_codec::Limits;
use ocikit_codec::compression::{Compression, Decoder};
use ocikit_codec::squash::{SquashOptions, squash_layer};
use ocikit_codec::writer::{LayerInfo, LayerOptions};
use ocikit_digest::VerifyingReader;
use ocikit_digest::oci_spec::image::Descriptor;
use ocikit_digest::{Digest, descriptor};
use ocikit_store::{LinkMode, LinkTrust, Linked, LocalBlobs};
use serde_json::{Map, Value};

use super::{
    EditOptions, EditReport, SOURCE_TAG, destination_name, digest_of, edit_image, pick_in_layout,
    read_picked,
};
use crate::copy::{CopyOptions, ScratchSpace, copy, scratch_layout};
use crate::error::{Error, Result};
use crate::location::{Location, Selector};
use crate::open::{open_layout, resolve};

/// How to [`flatten`]: the [`EditOptions`] (registries, the platform of an index, progress),
/// the compression of the one layer (gzip unless told otherwise) and what its history entry
/// says created it.
#[derive(Clone, Debug)]
pub struct FlattenOptions {
    edit: EditOptions,
    compression: Compression,
    created_by: Option<String>,
}

impl Default for FlattenOptions {
    fn default() -> FlattenOptions {
        FlattenOptions::new()
    }
}

impl FlattenOptions {
    /// Default [`EditOptions`], a gzip layer, a history entry without `created_by`.
    pub fn new() -> FlattenOptions {
        FlattenOptions {
            edit: EditOptions::new(),
            compression: Compression::Gzip,
            created_by: None,
        }
    }

    /// How to read the source and write the destination.
    pub fn with_edit(mut self, edit: EditOptions) -> FlattenOptions {
        self.edit = edit;
        self
    }

    /// How the layer is compressed.
    pub fn with_compression(mut self, compression: Compression) -> FlattenOptions {
        self.compression = compression;
        self
    }

    /// What the history entry says created the layer.
    pub fn with_created_by(mut self, created_by: Option<String>) -> FlattenOptions {
        self.created_by = created_by;
        self
    }
}

/// Squashes every layer of the image `source` names into one and writes the new image to
/// `destination`, tagged as it says: one layer, one diffID, one history entry (dated now,
/// with the options' `created_by`), the config's `created` set to now; the rest of the
/// config and the manifest's annotations stay.
///
/// The layers are merged by [`ocikit_codec::squash::squash_layer`] in one streaming pass on
/// a blocking thread (each layer decompressed and verified against its digest and diffID as
/// it is read, whiteouts and opaque directories resolved, the result compressed and hashed
/// as it is written): read straight from the blob files of an `oci:` source, or from a
/// scratch layout the source is first copied into (an archive imported, a registry image
/// pulled, the platform's image only). Only the new layer, the config and the manifest
/// travel to the destination. An index source needs a platform in the options
/// ([`Error::EditIndex`]); a layer the squash refuses (an entry the applier would refuse, a
/// diffID that does not match) fails as [`Error::Flatten`] with nothing written.
pub async fn flatten(
    source: &Location,
    destination: &Location,
    options: &FlattenOptions,
) -> Result<EditReport> {
    destination_name(destination)?;
    let near = destination.path().or_else(|| source.path()).map_or_else(
        || std::env::temp_dir().join("ocikit-flatten"),
        Path::to_path_buf,
    );
    let scratch = ScratchSpace::near(&near).await?;
    let edit = &options.edit;
    // The layout the layers are read from, the image manifest there, and the location
    // the edit engine reads the image from (pinned to that manifest).
    let (layout, manifest, engine_source) = match source {
        Location::Oci { path, selector } => {
            let layout = open_layout(path).await?;
            let root = resolve(&layout, path, selector.as_ref()).await?;
            let (manifest, _) = pick_in_layout(&layout, &root, edit.platform(), source).await?;
            let pinned = Location::Oci {
                path: path.clone(),
                selector: Some(Selector::Digest(digest_of(&manifest)?)),
            };
            (layout, manifest, pinned)
        }
        _ => {
            let staged_path: PathBuf = scratch.path().join("source");
            let stage_at = Location::Oci {
                path: staged_path.clone(),
                selector: Some(Selector::Tag(SOURCE_TAG.into())),
            };
            copy(
                source,
                &stage_at,
                &CopyOptions::new()
                    .with_source(edit.source.clone())
                    .with_platform(edit.platform.clone().filter(|_| source.is_registry()))
                    .with_progress(edit.progress.clone()),
            )
            .await?;
            let layout = open_layout(&staged_path).await?;
            let root = layout.resolve(SOURCE_TAG).await?;
            let (manifest, _) = pick_in_layout(&layout, &root, edit.platform(), source).await?;
            let digest = digest_of(&manifest)?;
            // Within one registry the engine reads only the manifest and config there (and
            // pushes the new layer); anywhere else it takes the staged copy.
            let pinned = match (source, destination) {
                (
                    Location::Docker {
                        registry,
                        repository,
                        ..
                    },
                    Location::Docker {
                        registry: to_registry,
                        ..
                    },
                ) if registry == to_registry && edit.source == edit.destination => {
                    Location::Docker {
                        written: format!("{registry}/{repository}@{digest}"),
                        registry: registry.clone(),
                        repository: repository.clone(),
                        selector: Selector::Digest(digest),
                    }
                }
                _ => Location::Oci {
                    path: staged_path,
                    selector: Some(Selector::Digest(digest)),
                },
            };
            (layout, manifest, pinned)
        }
    };
    let picked = read_picked(&layout, &manifest).await?;
    let blobs = scratch_layout(&scratch.path().join("flatten")).await?;
    let layer_path = scratch.path().join("flattened-layer");
    let info = squash_blobs(
        &layout,
        &picked.layers,
        picked.config.diff_ids(),
        &layer_path,
        options.compression,
    )
    .await
    .map_err(|source| Error::Flatten {
        digest: picked.digest.to_string(),
        source,
    })?;
    publish(&blobs, &layer_path, &info).await?;
    let layer = descriptor::new(info.media_type, &info.digest, info.size).map_err(|source| {
        Error::InvalidDescriptor {
            digest: info.digest.clone(),
            source,
        }
    })?;
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut history = Map::new();
    history.insert("created".into(), Value::from(now.clone()));
    if let Some(created_by) = &options.created_by {
        history.insert("created_by".into(), Value::from(created_by.clone()));
    }
    history.insert(
        "comment".into(),
        Value::from(format!(
            "{} layers of {} flattened",
            picked.layers.len(),
            picked.digest
        )),
    );
    let edit = options
        .edit
        .clone()
        .with_platform(None)
        .with_new_blobs(Some(blobs));
    let report = edit_image(&engine_source, destination, &edit, |image| {
        image.set_layers(
            vec![(layer, info.diff_id.clone())],
            vec![Value::Object(history)],
        )?;
        image.edit_config(|json| {
            json.insert("created".into(), Value::from(now.clone()));
        })
    })
    .await;
    drop(scratch);
    let mut report = report?;
    report.source = source.to_string();
    Ok(report)
}

/// The layers of `layout` squashed into one layer file at `out`, on a blocking thread: each
/// blob read from its local file, verified against its digest and (when the config lists
/// one per layer) its diffID.
async fn squash_blobs(
    layout: &ocikit_layout::Layout,
    layers: &[Descriptor],
    diff_ids: Vec<Digest>,
    out: &Path,
    compression: Compression,
) -> std::result::Result<LayerInfo, ocikit_codec::Error> {
    let other = |operation: &'static str, e: String| ocikit_codec::Error::Io {
        operation,
        path: None,
        source: io::Error::other(e),
    };
    let local: Arc<dyn LocalBlobs> = layout
        .store()
        .local_blobs()
        .ok_or_else(|| other("open", "the layout's blobs are not local files".into()))?;
    let mut blobs = Vec::with_capacity(layers.len());
    for layer in layers {
        let digest = digest_of(layer).map_err(|e| other("open", e.to_string()))?;
        blobs.push((digest, layer.size(), layer.media_type().to_string()));
    }
    let expected = (diff_ids.len() == blobs.len()).then_some(diff_ids);
    let out = out.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let file = std::fs::File::create(&out).map_err(|e| ocikit_codec::Error::Io {
            operation: "create",
            path: Some(out.clone()),
            source: e,
        })?;
        let open = |i: usize| {
            let (digest, size, media_type) = &blobs[i];
            let (file, _) = local
                .open_blocking(digest)
                .map_err(|e| other("open", e.to_string()))?
                .ok_or_else(|| other("open", format!("the layer {digest} is missing")))?;
            let verified = VerifyingReader::new(BufReader::new(file), digest.clone(), *size)
                .map_err(|e| other("verify", e.to_string()))?;
            Decoder::for_media_type(verified, media_type, Limits::default())
        };
        let (writer, info, _) = squash_layer(
            blobs.len(),
            open,
            BufWriter::new(file),
            LayerOptions::new(compression),
            &SquashOptions::new().with_expected_diff_ids(expected),
        )?;
        let mut writer = writer;
        writer.flush().map_err(|e| ocikit_codec::Error::Io {
            operation: "write",
            path: Some(out.clone()),
            source: e,
        })?;
        Ok(info)
    })
    .await
    .map_err(|e| other("squash", e.to_string()))?
}

/// The layer file at `path` published in `blobs` under its digest (hardlinked, verified).
async fn publish(blobs: &ocikit_layout::Layout, path: &Path, info: &LayerInfo) -> Result<()> {
    let file = std::fs::File::open(path).map_err(|source| Error::Scratch { source })?;
    for mode in [LinkMode::Hardlink, LinkMode::Copy] {
        let linked = blobs
            .store()
            .link_blob(&info.digest, info.size, &file, LinkTrust::Verify, mode)
            .await?;
        if !matches!(linked, Linked::NotSupported) {
            return Ok(());
        }
    }
    Err(Error::Scratch {
        source: io::Error::other("the flattened layer cannot be stored in scratch space"),
    })
}
