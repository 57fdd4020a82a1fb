//! [`append`]: `ocikit append`, layers packed from directories or tar files put on top of an
//! image from any location, written to any other.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use ocikit_codec::compression::Compression;
use ocikit_digest::oci_spec::image::Descriptor;
use ocikit_digest::{Digest, media_type};
use ocikit_layout::image::{BASE_DIGEST_ANNOTATION, ChangeErrorKind};
use ocikit_layout::{ConfigChanges, ImageBuilder, LayerSpec};
use serde_json::Value;

use super::{EditOptions, EditReport, destination_name, edit_image};
use crate::copy::{ScratchSpace, scratch_layout};
use crate::error::{Error, Result};
use crate::location::Location;

/// A layer to [`append`]: a directory, packed as `ocikit build` packs one, or a tar file
/// (uncompressed, gzip or zstd, told apart by its magic bytes, read through the strict tar
/// reader and compressed again as the options say).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LayerSource {
    /// A directory whose tree is the layer.
    Directory(PathBuf),
    /// A tar file whose entries are the layer.
    TarFile(PathBuf),
}

impl LayerSource {
    /// A directory for a path that is one, else a tar file.
    pub fn from_path(path: impl Into<PathBuf>) -> LayerSource {
        let path = path.into();
        if path.is_dir() {
            LayerSource::Directory(path)
        } else {
            LayerSource::TarFile(path)
        }
    }

    /// The path it names.
    pub fn path(&self) -> &Path {
        match self {
            LayerSource::Directory(path) | LayerSource::TarFile(path) => path,
        }
    }
}

/// How to [`append`]: the [`EditOptions`] (registries, the platform of an index, progress),
/// the compression of the new layers (gzip unless told otherwise), what their history
/// entries say created them, the [`ConfigChanges`] made in the same edit (`ocikit build
/// --from`) and SOURCE_DATE_EPOCH.
#[derive(Clone, Debug)]
pub struct AppendOptions {
    edit: EditOptions,
    compression: Compression,
    created_by: Option<String>,
    changes: ConfigChanges,
    /// `None`: not set, the environment's SOURCE_DATE_EPOCH clamps file times.
    source_date_epoch: Option<Option<i64>>,
    base_annotation: bool,
}

impl Default for AppendOptions {
    fn default() -> AppendOptions {
        AppendOptions::new()
    }
}

impl AppendOptions {
    /// Default [`EditOptions`], gzip layers, history entries without `created_by`, no
    /// config changes, file times clamped to the environment's `SOURCE_DATE_EPOCH` (if set)
    /// and the image dated now.
    pub fn new() -> AppendOptions {
        AppendOptions {
            edit: EditOptions::new(),
            compression: Compression::Gzip,
            created_by: None,
            changes: ConfigChanges::new(),
            source_date_epoch: None,
            base_annotation: false,
        }
    }

    /// How to read the source and write the destination.
    pub fn with_edit(mut self, edit: EditOptions) -> AppendOptions {
        self.edit = edit;
        self
    }

    /// How the new layers are compressed.
    pub fn with_compression(mut self, compression: Compression) -> AppendOptions {
        self.compression = compression;
        self
    }

    /// What the history entry of each new layer says created it.
    pub fn with_created_by(mut self, created_by: Option<String>) -> AppendOptions {
        self.created_by = created_by;
        self
    }

    /// Config and annotation changes made in the same edit, after the layers are put on
    /// (as [`mutate`](crate::mutate) makes them; checked before anything is packed). Their
    /// `created`, when set, dates the image and the new history entries.
    pub fn with_changes(mut self, changes: ConfigChanges) -> AppendOptions {
        self.changes = changes;
        self
    }

    /// SOURCE_DATE_EPOCH set explicitly (`None`: none, whatever the environment says), as
    /// [`BuildRequest::source_date_epoch`](ocikit_layout::build::BuildRequest::source_date_epoch)
    /// does: it clamps the file times of layers packed from directories and dates the image
    /// and the new history entries (unless the changes set `created`).
    pub fn with_source_date_epoch(mut self, epoch: Option<i64>) -> AppendOptions {
        self.source_date_epoch = Some(epoch);
        self
    }

    /// With `true`, the new manifest's annotations are, as `ocikit build --from` makes
    /// them ([`ImageBuilder::from_image`]), the source image's digest
    /// ([`BASE_DIGEST_ANNOTATION`]) and then those of the changes: the source's own
    /// manifest annotations are not carried over. A Docker schema 2 manifest, which holds
    /// no annotations, gets no base annotation. `false` (the default): the source's
    /// annotations are kept.
    pub fn with_base_annotation(mut self, base_annotation: bool) -> AppendOptions {
        self.base_annotation = base_annotation;
        self
    }
}

/// Puts the layers `layers` (bottom first) on top of the image `source` names, and writes
/// the new image to `destination`, tagged as it says: each layer gets its diffID in the
/// config and a history entry (dated now, with the options' `created_by`), and the config's
/// `created` is set to now (or to the options' SOURCE_DATE_EPOCH, or to the `created` of
/// their changes). The options' [`ConfigChanges`] are made in the same edit (checked
/// first: [`Error::InvalidChanges`]); the rest of the config, the manifest's annotations and
/// the source's layers stay as they were.
///
/// The layers are packed first, in scratch space, before the source is read: a path that
/// does not exist ([`Error::LayerSource`] with [`ocikit_layout::Error::LayerSourceNotFound`]),
/// a file that is not a tar or a tar the strict reader refuses ([`Error::LayerSource`])
/// fails then, and nothing is written anywhere. Only the new layers, the config and the
/// manifest travel to the destination: within one registry the source's layers are found
/// in the destination repository or mounted, never downloaded and uploaded again (see
/// [`edit_image`](crate::edit_image) for every pair of locations). An index source needs a platform in the options
/// ([`Error::EditIndex`]). A Docker schema 2 image keeps its manifest type; its new layers
/// get Docker media types (zstd is refused there).
///
/// ```
/// use ocikit_layout::{ImageBuilder, LayerSpec, Layout};
/// use ocikit_store::FsStore;
/// use ocikit_transport::{AppendOptions, LayerSource, Location, append};
///
/// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
/// let dir = tempfile::tempdir()?;
/// let layout = Layout::create(FsStore::open(dir.path().join("images")).await?).await?;
/// let mut image = ImageBuilder::new(&layout);
/// image.platform(&ocikit_digest::platform::parse("linux/amd64")?).cmd(["/bin/sh"]);
/// image.write_and_tag("v1").await?;
///
/// let tree = dir.path().join("tree");
/// std::fs::create_dir(&tree)?;
/// std::fs::write(tree.join("hello.txt"), "hello\n")?;
/// let source: Location = format!("oci:{}:v1", dir.path().join("images").display()).parse()?;
/// let destination: Location = format!("oci:{}:v2", dir.path().join("images").display()).parse()?;
/// let report = append(&source, &destination, &[LayerSource::from_path(&tree)], &AppendOptions::new()).await?;
/// assert_eq!(layout.resolve("v2").await?.digest().to_string(), report.digest);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub async fn append(
    source: &Location,
    destination: &Location,
    layers: &[LayerSource],
    options: &AppendOptions,
) -> Result<EditReport> {
    if layers.is_empty() {
        return Err(Error::NothingToAppend);
    }
    let changes = &effective_changes(options)?;
    destination_name(destination)?;
    for layer in layers {
        if !layer.path().exists() {
            return Err(Error::LayerSource {
                path: layer.path().to_path_buf(),
                source: ocikit_layout::Error::LayerSourceNotFound {
                    path: layer.path().to_path_buf(),
                },
            });
        }
    }
    let near = destination.path().or_else(|| source.path()).map_or_else(
        || std::env::temp_dir().join("ocikit-append"),
        Path::to_path_buf,
    );
    let scratch = ScratchSpace::near(&near).await?;
    let blobs = scratch_layout(&scratch.path().join("append")).await?;
    let now = created(changes);
    let packed = pack(&blobs, layers, options, &now).await?;
    let edit = options.edit.clone().with_new_blobs(Some(blobs));
    let report = edit_image(source, destination, &edit, |image| {
        for (layer, diff_id, history) in packed {
            image.push_layer(layer, &diff_id, history)?;
        }
        image.edit_config(|json| {
            json.insert("created".into(), Value::from(now.clone()));
        })?;
        if options.base_annotation {
            image.annotations.clear();
            if media_type::essence(image.manifest_media_type()) != media_type::DOCKER_MANIFEST {
                let digest = image.source_digest.to_string();
                image
                    .annotations
                    .insert(BASE_DIGEST_ANNOTATION.into(), digest);
            }
        }
        let refuse = |source| Error::InvalidChanges { source };
        changes.apply_to_config(&mut image.config).map_err(refuse)?;
        changes
            .apply_to_annotations(&mut image.annotations)
            .map_err(refuse)
    })
    .await;
    drop(scratch);
    report
}

/// Each layer packed into `blobs`: its descriptor, diffID and history entry.
async fn pack(
    blobs: &ocikit_layout::Layout,
    layers: &[LayerSource],
    options: &AppendOptions,
    now: &str,
) -> Result<Vec<(Descriptor, Digest, Value)>> {
    let mut builder = ImageBuilder::new(blobs);
    if let Some(epoch) = options.source_date_epoch {
        builder.source_date_epoch(epoch);
    }
    for layer in layers {
        let mut spec = LayerSpec::new().compression(options.compression);
        if let Some(created_by) = &options.created_by {
            spec = spec.created_by(created_by.clone());
        }
        let refuse = |source| Error::LayerSource {
            path: layer.path().to_path_buf(),
            source,
        };
        match layer {
            LayerSource::Directory(path) => builder.add_layer_from_dir(path, spec).await,
            LayerSource::TarFile(path) => {
                let file = std::fs::File::open(path).map_err(|e| {
                    refuse(ocikit_layout::Error::Io {
                        operation: "open",
                        path: path.clone(),
                        source: e,
                    })
                })?;
                builder.add_layer_from_tar(file, spec).await
            }
        }
        .map_err(refuse)?;
    }
    let config = builder.config();
    let history = config.as_json().get("history").cloned();
    let history = match history {
        Some(Value::Array(entries)) => entries,
        _ => Vec::new(),
    };
    Ok(builder
        .layers()
        .iter()
        .zip(config.diff_ids())
        .zip(history)
        .map(|((layer, diff_id), mut entry)| {
            if let Value::Object(entry) = &mut entry {
                entry.insert("created".into(), Value::from(now));
            }
            (layer.clone(), diff_id, entry)
        })
        .collect())
}

/// The changes of the options, with the explicit SOURCE_DATE_EPOCH as their `created` when
/// they set none (an epoch past what a time holds is refused as a `created` change).
fn effective_changes(options: &AppendOptions) -> Result<ConfigChanges> {
    let mut changes = options.changes.clone();
    if changes.created.is_none()
        && let Some(Some(epoch)) = options.source_date_epoch
    {
        let seconds = Duration::from_secs(epoch.unsigned_abs());
        let time = if epoch >= 0 {
            SystemTime::UNIX_EPOCH.checked_add(seconds)
        } else {
            SystemTime::UNIX_EPOCH.checked_sub(seconds)
        };
        let time = time.ok_or_else(|| Error::InvalidChanges {
            source: ocikit_layout::Error::InvalidChange {
                field: "created",
                value: format!("SOURCE_DATE_EPOCH {epoch}"),
                kind: ChangeErrorKind::BadTime,
            },
        })?;
        changes.created = Some(time);
    }
    changes
        .check()
        .map_err(|source| Error::InvalidChanges { source })?;
    Ok(changes)
}

/// The time the image and its new history entries get: the `created` of `changes` (checked
/// to be within the years 0000-9999), else now; RFC 3339, whole seconds, UTC.
fn created(changes: &ConfigChanges) -> String {
    let time = changes
        .created
        .map_or_else(chrono::Utc::now, chrono::DateTime::<chrono::Utc>::from);
    time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
