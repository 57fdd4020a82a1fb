//! Building an image from directories and tar files in one call: what `ocikit build` does.
//!
//! A [`BuildRequest`] names the tag, the layer sources in order (directories, packed as
//! [`ocikit_codec::build`] packs them, or tar files, uncompressed or gzip or zstd,
//! checked by the strict tar reader as they stream), an optional base image in the same
//! layout, the [`ConfigChanges`] to make and how layers are compressed and dated.
//! [`build`] writes the image into an open [`Layout`] on any store and tags it last;
//! [`build_at`] does the same for a layout directory, creating it when it does not exist
//! (staged, so that a build that fails leaves no directory behind, see
//! [`Layout::create_or_stage`]).
//!
//! Bad input is refused before anything is written: an invalid tag
//! ([`Error::InvalidTag`]), a change [`ConfigChanges::check`] refuses
//! ([`Error::InvalidChange`]), a source that does not exist
//! ([`Error::LayerSourceNotFound`]). A source that cannot be packed (a file that is not a
//! tar, a tar the reader refuses) fails as [`Error::LayerSource`] naming it; a base that
//! cannot be used as [`Error::Base`]; in either case nothing is tagged.
//!
//! Each source is reported as a step of [`Operation::Build`] (an
//! [`Event::StepStarted`] named by its path, with the file's size for a tar file,
//! [`Event::StepProgress`] in bytes read from it, [`Event::StepDone`]).
//!
//! ```
//! use ocikit_layout::build::{BuildRequest, build};
//! use ocikit_layout::{ConfigChanges, Layout};
//! use ocikit_store::MemoryStore;
//!
//! # #[cfg(feature = "gzip")]
//! # tokio::runtime::Builder::new_multi_thread().build().unwrap().block_on(async {
//! let layout = Layout::create(MemoryStore::new()).await?;
//! let tree = tempfile::tempdir().unwrap();
//! std::fs::write(tree.path().join("hello.txt"), b"hello\n").unwrap();
//!
//! let mut request = BuildRequest::new("v1").layer(tree.path());
//! request.changes = ConfigChanges::new().env("GREETING", "hi").cmd(["/bin/hello"]);
//! request.source_date_epoch = Some(0);
//! let built = build(&layout, &request).await?;
//! assert_eq!(layout.resolve("v1").await?.digest(), built.manifest.digest());
//! assert_eq!(built.layers.len(), 1);
//!
//! // Refused before anything is written.
//! let missing = BuildRequest::new("v2").layer(tree.path().join("nothing-here"));
//! assert!(matches!(
//!     build(&layout, &missing).await,
//!     Err(ocikit_layout::Error::LayerSourceNotFound { .. })
//! ));
//! # Ok::<(), ocikit_layout::Error>(())
//! # }).unwrap();
//! ```

use std::path::{Path, PathBuf};

use ocikit_codec::compression::Compression;
use ocikit_digest::oci_spec::image::Descriptor;
use ocikit_digest::platform;

use crate::image::{ConfigChanges, ImageBuilder, LayerSpec};
use crate::platform::PlatformQuery;
use crate::progress::{Event, Operation, Progress, StepReader};
use crate::staging::io_error;
use crate::{Error, Layout, Result};

/// What to build: see the [module documentation](self).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct BuildRequest {
    /// The tag the image gets once it is written.
    pub tag: String,
    /// The layer sources, bottom first: directories, or tar files (uncompressed, gzip or
    /// zstd).
    pub layers: Vec<PathBuf>,
    /// The image to build on (a manifest, or an index resolved for the platform), in the
    /// layout the image is built in: its config, layers and history are carried over (see
    /// [`ImageBuilder::from_image`]).
    pub base: Option<Descriptor>,
    /// The config and annotation changes. Its platform, when set, is the new image's and
    /// picks the base's manifest from an index; otherwise the image has the base's platform,
    /// or this machine's ([`platform::current`]) when there is no base.
    pub changes: ConfigChanges,
    /// How the new layers are compressed (default gzip).
    pub compression: Compression,
    /// SOURCE_DATE_EPOCH: the image's `created` time (unless the changes set one) and the
    /// clamp of file times in layers packed from directories. `None` (the default): no
    /// epoch, whatever the environment says; the image is dated now.
    pub source_date_epoch: Option<i64>,
    /// What the history entry of each new layer says created it (default: nothing).
    pub created_by: Option<String>,
    /// Where progress events go (default: nowhere).
    pub progress: Progress,
}

impl BuildRequest {
    /// A request for an image tagged `tag`, with no layers yet, no base, no changes, gzip
    /// layers and no SOURCE_DATE_EPOCH.
    pub fn new(tag: impl Into<String>) -> BuildRequest {
        BuildRequest {
            tag: tag.into(),
            layers: Vec::new(),
            base: None,
            changes: ConfigChanges::new(),
            compression: Compression::Gzip,
            source_date_epoch: None,
            created_by: None,
            progress: Progress::none(),
        }
    }

    /// This request with one more layer source on top.
    pub fn layer(mut self, source: impl Into<PathBuf>) -> BuildRequest {
        self.layers.push(source.into());
        self
    }

    /// This request built on `base`.
    pub fn base(mut self, base: Descriptor) -> BuildRequest {
        self.base = Some(base);
        self
    }

    /// This request reporting progress to `progress`.
    pub fn progress(mut self, progress: Progress) -> BuildRequest {
        self.progress = progress;
        self
    }

    /// Refuses what cannot be built, before anything is written.
    fn check(&self) -> Result<()> {
        crate::index::validate_tag(&self.tag)?;
        self.changes.check()?;
        for source in &self.layers {
            if !source.exists() {
                return Err(Error::LayerSourceNotFound {
                    path: source.clone(),
                });
            }
        }
        Ok(())
    }
}

/// What [`build`] made.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct BuildReport {
    /// The image manifest written and tagged (with its platform).
    pub manifest: Descriptor,
    /// The new layers, in the order of the request's sources.
    pub layers: Vec<BuiltLayer>,
}

/// One layer [`build`] made.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct BuiltLayer {
    /// The source it was made from.
    pub source: PathBuf,
    /// The layer blob's descriptor.
    pub descriptor: Descriptor,
}

/// Builds the image `request` describes in `layout` and tags it; see the
/// [module documentation](self).
pub async fn build(layout: &Layout, request: &BuildRequest) -> Result<BuildReport> {
    request.check()?;
    let changes = &request.changes;
    let mut builder = match &request.base {
        None => {
            let mut builder = ImageBuilder::new(layout);
            builder.platform(&platform::current());
            builder
        }
        Some(base) => {
            let query = changes
                .platform
                .as_ref()
                .map_or_else(PlatformQuery::current, PlatformQuery::new);
            ImageBuilder::from_image(layout, base, &query)
                .await
                .map_err(|e| Error::Base {
                    digest: base.digest().to_string(),
                    source: Box::new(e),
                })?
        }
    };
    builder.source_date_epoch(request.source_date_epoch);
    builder.apply(changes)?;
    let mut layers = Vec::with_capacity(request.layers.len());
    for source in &request.layers {
        let mut spec = LayerSpec::new().compression(request.compression);
        if let Some(created_by) = &request.created_by {
            spec = spec.created_by(created_by.clone());
        }
        let descriptor = add_layer(&mut builder, source, spec, &request.progress)
            .await
            .map_err(|e| Error::LayerSource {
                path: source.clone(),
                source: Box::new(e),
            })?;
        layers.push(BuiltLayer {
            source: source.clone(),
            descriptor,
        });
    }
    let manifest = builder.write_and_tag(&request.tag).await?;
    Ok(BuildReport { manifest, layers })
}

/// Adds the layer packed from `source` (a directory, else a tar file), reported as a step.
async fn add_layer(
    builder: &mut ImageBuilder,
    source: &Path,
    spec: LayerSpec,
    progress: &Progress,
) -> Result<Descriptor> {
    let name = source.display().to_string();
    let operation = Operation::Build;
    if source.is_dir() {
        progress.emit(Event::StepStarted {
            operation,
            name: name.clone(),
            size: None,
        });
        let added = builder.add_layer_from_dir(source, spec).await;
        progress.emit(Event::StepDone {
            operation,
            name,
            bytes: 0,
        });
        return added;
    }
    let file = std::fs::File::open(source).map_err(|e| io_error("open", source, e))?;
    let size = file.metadata().ok().map(|m| m.len());
    progress.emit(Event::StepStarted {
        operation,
        name: name.clone(),
        size,
    });
    let reader = StepReader::new(file, progress.clone(), operation, name.clone());
    let added = builder.add_layer_from_tar(reader, spec).await;
    progress.emit(Event::StepDone {
        operation,
        name,
        bytes: size.unwrap_or(0),
    });
    added
}

/// [`build`] into the layout directory at `path`: one that exists (and is not an empty
/// directory) is written in place, where a build that fails tags nothing; otherwise a new
/// layout is staged and put in place only once the image is tagged, so a build that fails
/// leaves no directory ([`Layout::create_or_stage`]). The request is checked before the
/// layout is opened or created.
pub async fn build_at(path: impl AsRef<Path>, request: &BuildRequest) -> Result<BuildReport> {
    let path = path.as_ref();
    request.check()?;
    let destination = Layout::create_or_stage(path)
        .await
        .map_err(|e| Error::OpenDestination {
            path: path.to_path_buf(),
            source: Box::new(e),
        })?;
    let layout = destination.layout().clone();
    let built = build(&layout, request).await;
    drop(layout);
    match built {
        Ok(report) => {
            destination.commit().await?;
            Ok(report)
        }
        Err(e) => {
            destination.discard().await;
            Err(e)
        }
    }
}
