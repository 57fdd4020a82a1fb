//! Files as artifacts, as oras moves them: [`artifact_push`] (`ocikit artifact push`) writes
//! files as the layers of an OCI 1.1 image manifest with an `artifactType`, the empty config
//! (or one given), each layer titled with its file name (`org.opencontainers.image.title`),
//! to a registry, a layout or an oci-archive; [`artifact_pull`] (`ocikit artifact pull`)
//! restores the titled layers of one into a directory. [`attach`](crate::attach) is the same
//! push with the image as `subject`, by digest.
//!
//! Files are streamed and hashed on the way in, never read whole. A pull never writes
//! outside its directory: titles are checked before anything is fetched (no `..`, no
//! absolute path, no NUL, no empty or `.` component, no two layers of one title); every
//! directory on the way is opened relative to its parent with `O_NOFOLLOW` (a symbolic link
//! anywhere on a title's path is refused, and so is one at the name itself); each file is
//! written to a temporary name beside its place, verified against its digest, and only then
//! renamed into place (without replacing an existing file unless asked).

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use ocikit_client::PushOptions;
use ocikit_digest::Digest;
use ocikit_digest::media_type;
use ocikit_digest::oci_spec::image::Descriptor;
use ocikit_layout::artifact::TITLE;
use ocikit_layout::{Artifact, Document, Layout};
use ocikit_store::{FsStore, StoreExt};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, RenameFlags};
use rustix::io::Errno;
use serde::Serialize;

use crate::access::RegistryOptions;
use crate::error::{Error, Operation, Result};
use crate::location::{Location, Selector};
use crate::open::{open_layout, resolve};

/// The `artifactType` of an artifact pushed without one (oras' default).
pub const DEFAULT_ARTIFACT_TYPE: &str = "application/vnd.unknown.artifact.v1";
/// The media type of a file's layer when none is given (oras' default for files).
pub const DEFAULT_FILE_MEDIA_TYPE: &str = media_type::IMAGE_LAYER;
/// The media type of a config file given without one (oras' default).
pub const DEFAULT_CONFIG_MEDIA_TYPE: &str = "application/vnd.unknown.config.v1+json";

/// One file to push, and the media type of its layer (`FILE[:MEDIATYPE]`, as oras takes it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArtifactFile {
    path: PathBuf,
    media_type: Option<String>,
}

impl ArtifactFile {
    /// The file at `path`, of the default media type.
    pub fn new(path: impl Into<PathBuf>) -> ArtifactFile {
        ArtifactFile {
            path: path.into(),
            media_type: None,
        }
    }

    /// `FILE[:MEDIATYPE]` as oras reads it: the text after the last `:` is the media type
    /// when it is one (`type/subtype`, RFC 6838); otherwise the whole text is the path.
    pub fn parse(text: &str) -> ArtifactFile {
        if let Some((path, mt)) = text.rsplit_once(':')
            && !path.is_empty()
            && mt.contains('/')
            && media_type::validate_media_type(mt).is_ok()
        {
            return ArtifactFile::new(path).with_media_type(Some(mt.to_string()));
        }
        ArtifactFile::new(text)
    }

    /// Its layer's media type (`None`: the default).
    pub fn with_media_type(mut self, media_type: Option<String>) -> ArtifactFile {
        self.media_type = media_type;
        self
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The media type given, if any.
    pub fn media_type(&self) -> Option<&str> {
        self.media_type.as_deref()
    }
}

/// How [`artifact_push`] (and [`attach`](crate::attach)) write an artifact.
#[derive(Clone, Debug, Default)]
pub struct ArtifactPushOptions {
    artifact_type: Option<String>,
    file_media_type: Option<String>,
    config: Option<ArtifactFile>,
    annotations: BTreeMap<String, String>,
    subject: Option<String>,
    registry: RegistryOptions,
}

impl ArtifactPushOptions {
    /// [`DEFAULT_ARTIFACT_TYPE`], the empty config, no annotations, no subject.
    pub fn new() -> ArtifactPushOptions {
        ArtifactPushOptions::default()
    }

    /// The `artifactType` (an RFC 6838 media type; `None`: [`DEFAULT_ARTIFACT_TYPE`]).
    pub fn with_artifact_type(mut self, artifact_type: Option<String>) -> ArtifactPushOptions {
        self.artifact_type = artifact_type;
        self
    }

    /// The media type of the files' layers that name none (`None`:
    /// [`DEFAULT_FILE_MEDIA_TYPE`]).
    pub fn with_file_media_type(mut self, media_type: Option<String>) -> ArtifactPushOptions {
        self.file_media_type = media_type;
        self
    }

    /// A config file instead of the empty config (its media type `None`:
    /// [`DEFAULT_CONFIG_MEDIA_TYPE`]).
    pub fn with_config(mut self, config: Option<ArtifactFile>) -> ArtifactPushOptions {
        self.config = config;
        self
    }

    /// Adds a manifest annotation.
    pub fn with_annotation(
        mut self,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> ArtifactPushOptions {
        self.annotations.insert(key.into(), value.into());
        self
    }

    /// The manifest this artifact refers to (`subject`): a tag or digest of the destination's
    /// layout or repository, which must hold it.
    pub fn with_subject(mut self, subject: Option<String>) -> ArtifactPushOptions {
        self.subject = subject;
        self
    }

    /// How to reach a registry destination.
    pub fn with_registry(mut self, registry: RegistryOptions) -> ArtifactPushOptions {
        self.registry = registry;
        self
    }
}

/// One layer of an artifact, as a push wrote it or a pull restored it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ArtifactLayer {
    /// Its `org.opencontainers.image.title`.
    pub title: String,
    /// Its digest.
    pub digest: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its media type.
    pub media_type: String,
}

/// What [`artifact_push`] wrote (and `ocikit artifact push --json` prints).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ArtifactPushed {
    /// The manifest's digest.
    pub digest: String,
    /// The manifest's size.
    pub size: u64,
    /// Its `artifactType`.
    pub artifact_type: String,
    /// The tag it was given (`None`: by digest only, as an attached artifact).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// The digest of its `subject`, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Its layers, in order.
    pub files: Vec<ArtifactLayer>,
}

/// How [`artifact_pull`] restores files.
#[derive(Clone, Debug, Default)]
pub struct ArtifactPullOptions {
    overwrite: bool,
    registry: RegistryOptions,
}

impl ArtifactPullOptions {
    /// Existing files refused.
    pub fn new() -> ArtifactPullOptions {
        ArtifactPullOptions::default()
    }

    /// Whether a file that exists already is replaced (default: refused, before anything
    /// is written). A symbolic link is refused either way.
    pub fn with_overwrite(mut self, overwrite: bool) -> ArtifactPullOptions {
        self.overwrite = overwrite;
        self
    }

    /// How to reach a registry source.
    pub fn with_registry(mut self, registry: RegistryOptions) -> ArtifactPullOptions {
        self.registry = registry;
        self
    }
}

/// What [`artifact_pull`] restored (and `ocikit artifact pull --json` prints).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ArtifactPulled {
    /// The manifest's digest.
    pub digest: String,
    /// Its `artifactType` (else its config's media type, as oras reports it).
    pub artifact_type: String,
    /// The files written, in layer order.
    pub files: Vec<ArtifactLayer>,
    /// Layers without a title, not restored (as oras skips them).
    pub untitled: usize,
}

/// Why a title cannot name a file inside the directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TitleProblem {
    /// The empty string.
    #[error("it is empty")]
    Empty,
    /// A NUL byte.
    #[error("it holds a NUL byte")]
    Nul,
    /// A path from `/`.
    #[error("it is an absolute path")]
    Absolute,
    /// A `..` component.
    #[error("it climbs out with `..`")]
    ParentDir,
    /// An empty or `.` component (`a//b`, `./a`, `a/`).
    #[error("it has an empty or `.` component")]
    NotNormal,
}

/// What was wrong with an artifact or its files ([`Error::Artifact`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArtifactError {
    /// A title that cannot name a file inside the directory; nothing was written.
    #[error("the layer {digest} is titled {title:?}, which is refused: {problem}")]
    UnsafeTitle {
        /// The title.
        title: String,
        /// The layer.
        digest: String,
        /// What is wrong.
        problem: TitleProblem,
    },
    /// Two layers of one title; nothing was written.
    #[error("two layers are titled {title:?}")]
    DuplicateTitle {
        /// The title.
        title: String,
    },
    /// A title whose path goes through a symbolic link (or something not a directory) in
    /// the directory, or that names one; nothing was written there.
    #[error("{title:?} goes through {}, a symbolic link or not a directory", path.display())]
    ThroughLink {
        /// The title.
        title: String,
        /// What is in the way.
        path: PathBuf,
    },
    /// A file that exists already, without overwrite; nothing was written.
    #[error("{} exists already (pull with overwrite to replace it)", path.display())]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// A file or directory of the pull that could not be made.
    #[error("cannot {operation} {}", path.display())]
    Io {
        /// What was being done.
        operation: &'static str,
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// An artifact pulled from something that is not an image manifest (an index).
    #[error("{location} is a {media_type}, not an image manifest")]
    NotAManifest {
        /// The source.
        location: String,
        /// What it is.
        media_type: String,
    },
    /// A location that cannot hold (or give) an artifact this way.
    #[error("{what} cannot use `{location}`: {advice}")]
    Unsupported {
        /// The operation.
        what: &'static str,
        /// The location.
        location: String,
        /// What to do.
        advice: &'static str,
    },
    /// A push that names neither a tag nor a subject: nothing would keep the artifact.
    #[error("name a tag for the artifact (oci:PATH:TAG, docker://HOST/NAME:TAG), or a subject")]
    NeedsTag,
}

/// `ocikit artifact push`: writes `files` as an artifact (see the [module](self)) to
/// `destination`: `oci:PATH[:TAG]` (the layout made if missing, staged until done; without
/// a tag it must have a subject, and is listed untagged), `docker://HOST/NAME[:TAG]`, or
/// `oci-archive:FILE[:TAG]` (no subject). A destination digest and a docker-archive are
/// refused. A file that cannot be read is [`Error::Write`] with the layout's `Io` error
/// naming it; a failed push tags nothing.
pub async fn artifact_push(
    destination: &Location,
    files: &[ArtifactFile],
    options: &ArtifactPushOptions,
) -> Result<ArtifactPushed> {
    let tag = match destination {
        Location::Oci { selector, .. } | Location::OciArchive { selector, .. } => match selector {
            None => None,
            Some(Selector::Tag(tag)) => Some(tag.clone()),
            Some(Selector::Digest(_)) => {
                return Err(Error::DestinationTakesATag {
                    syntax: "oci:PATH:TAG",
                });
            }
        },
        Location::Docker { selector, .. } => match selector {
            Selector::Tag(tag) => Some(tag.clone()),
            Selector::Digest(_) => {
                return Err(Error::DestinationTakesATag {
                    syntax: "docker://HOST/NAME:TAG",
                });
            }
        },
        _ => {
            return Err(ArtifactError::Unsupported {
                what: "artifact push",
                location: destination.to_string(),
                advice: "push to oci:, oci-archive: or docker://",
            }
            .into());
        }
    };
    let subject = match &options.subject {
        None => None,
        Some(text) => Some(selector_of(text)?),
    };
    if tag.is_none() && subject.is_none() {
        return Err(ArtifactError::NeedsTag.into());
    }
    push(destination, tag, subject.as_ref(), files, options).await
}

/// `ocikit attach` (see [`attach`](crate::attach)): `files` pushed as an artifact whose
/// subject is the image `location` names, into its own layout or repository, by digest.
pub(crate) async fn attach_files(
    location: &Location,
    files: &[ArtifactFile],
    options: &ArtifactPushOptions,
) -> Result<(Descriptor, Descriptor)> {
    let subject = match location {
        Location::Oci { selector, .. } => selector.clone().ok_or(Error::NoSelector)?,
        Location::Docker { selector, .. } => selector.clone(),
        _ => {
            return Err(ArtifactError::Unsupported {
                what: "attach",
                location: location.to_string(),
                advice: "attach to an image in a layout (oci:) or a registry (docker://)",
            }
            .into());
        }
    };
    let (artifact, subject, _) =
        push_with_layers(location, None, Some(&subject), files, options).await?;
    Ok((subject.ok_or(Error::NoSelector)?, artifact))
}

/// A tag or a digest, as `--subject` takes it.
fn selector_of(text: &str) -> Result<Selector> {
    if text.contains(':') {
        let digest = text.parse().map_err(|source| Error::InvalidDigest {
            digest: text.to_string(),
            source,
        })?;
        return Ok(Selector::Digest(digest));
    }
    ocikit_layout::validate_tag(text).map_err(|source| Error::InvalidTag {
        what: "--subject".into(),
        source,
    })?;
    Ok(Selector::Tag(text.to_string()))
}

/// The artifact `files` and `options` describe.
fn artifact_of(files: &[ArtifactFile], options: &ArtifactPushOptions) -> Artifact {
    let mut artifact = Artifact::new(
        options
            .artifact_type
            .as_deref()
            .unwrap_or(DEFAULT_ARTIFACT_TYPE),
    );
    let default_type = options
        .file_media_type
        .as_deref()
        .unwrap_or(DEFAULT_FILE_MEDIA_TYPE);
    for file in files {
        artifact = artifact.with_file(file.media_type().unwrap_or(default_type), file.path());
    }
    if let Some(config) = &options.config {
        artifact = artifact.with_config_file(
            config.media_type().unwrap_or(DEFAULT_CONFIG_MEDIA_TYPE),
            config.path(),
        );
    }
    for (k, v) in &options.annotations {
        artifact = artifact.with_annotation(k, v);
    }
    artifact
}

/// [`push_with_layers`], reported.
async fn push(
    destination: &Location,
    tag: Option<String>,
    subject: Option<&Selector>,
    files: &[ArtifactFile],
    options: &ArtifactPushOptions,
) -> Result<ArtifactPushed> {
    let (manifest, subject, layers) =
        push_with_layers(destination, tag.as_deref(), subject, files, options).await?;
    Ok(ArtifactPushed {
        digest: manifest.digest().to_string(),
        size: manifest.size(),
        artifact_type: options
            .artifact_type
            .clone()
            .unwrap_or_else(|| DEFAULT_ARTIFACT_TYPE.to_string()),
        tag,
        subject: subject.map(|s| s.digest().to_string()),
        files: layers,
    })
}

/// Writes the artifact where `destination` says: the manifest, the subject's descriptor,
/// and the layers.
async fn push_with_layers(
    destination: &Location,
    tag: Option<&str>,
    subject: Option<&Selector>,
    files: &[ArtifactFile],
    options: &ArtifactPushOptions,
) -> Result<(Descriptor, Option<Descriptor>, Vec<ArtifactLayer>)> {
    let artifact = artifact_of(files, options);
    let location = destination.to_string();
    let write_error = |source| Error::Write {
        location: location.clone(),
        source,
    };
    match destination {
        Location::Oci { path, .. } => {
            let staged = ocikit_layout::Layout::create_or_stage(path)
                .await
                .map_err(|source| Error::CreateLayout {
                    path: path.clone(),
                    source,
                })?;
            let layout = staged.layout();
            let subject = match subject {
                Some(selector) => Some(resolve(layout, path, Some(selector)).await?),
                None => None,
            };
            let manifest = layout
                .write_artifact(&artifact, subject.as_ref())
                .await
                .map_err(write_error)?;
            let layers = layers_of(layout, &manifest).await?;
            match tag {
                Some(tag) => {
                    layout
                        .set_tag(tag, &manifest)
                        .await
                        .map_err(|source| Error::SetTag {
                            digest: manifest.digest().to_string(),
                            tag: tag.to_string(),
                            source,
                        })?
                }
                None => {
                    layout
                        .edit_index(|index| index.add(&manifest).map(|()| true))
                        .await?;
                }
            }
            if subject.is_some() {
                layout.sync_referrers().await?;
            }
            staged.commit().await.map_err(|source| Error::Commit {
                path: path.clone(),
                source,
            })?;
            Ok((manifest, subject, layers))
        }
        Location::Docker {
            registry,
            repository,
            ..
        } => {
            let client = options.registry.client(registry)?;
            let subject = match subject {
                Some(selector) => Some(
                    client
                        .get_manifest(repository, &selector.reference())
                        .await
                        .map_err(|source| Error::Registry {
                            operation: Operation::ReadManifest,
                            location: format!("docker://{registry}/{repository}{selector}"),
                            source,
                        })?
                        .0,
                ),
                None => None,
            };
            let (_scratch, layout) = scratch_layout().await?;
            let manifest = layout
                .write_artifact(&artifact, subject.as_ref())
                .await
                .map_err(write_error)?;
            let layers = layers_of(&layout, &manifest).await?;
            client
                .push(&layout, &manifest, repository, tag, &PushOptions::new())
                .await
                .map_err(|source| Error::Push {
                    digest: manifest.digest().to_string(),
                    location: location.clone(),
                    source,
                })?;
            Ok((manifest, subject, layers))
        }
        Location::OciArchive { .. } if subject.is_none() => {
            let (scratch, layout) = scratch_layout().await?;
            let manifest = layout
                .write_artifact(&artifact, None)
                .await
                .map_err(write_error)?;
            let layers = layers_of(&layout, &manifest).await?;
            let tag = tag.unwrap_or("latest");
            layout
                .set_tag(tag, &manifest)
                .await
                .map_err(|source| Error::SetTag {
                    digest: manifest.digest().to_string(),
                    tag: tag.to_string(),
                    source,
                })?;
            drop(layout);
            let source = Location::Oci {
                path: scratch.path().to_path_buf(),
                selector: Some(Selector::Tag(tag.to_string())),
            };
            crate::copy(&source, destination, &crate::CopyOptions::new()).await?;
            Ok((manifest, None, layers))
        }
        _ => Err(ArtifactError::Unsupported {
            what: "artifact push",
            location,
            advice: "an artifact with a subject goes to oci: or docker://",
        }
        .into()),
    }
}

/// A new layout in a scratch directory (removed when the guard drops).
async fn scratch_layout() -> Result<(tempfile::TempDir, Layout)> {
    let scratch = tempfile::tempdir().map_err(|source| Error::Scratch { source })?;
    let layout = Layout::create(FsStore::open(scratch.path()).await?).await?;
    Ok((scratch, layout))
}

/// The layers of the artifact manifest `manifest` of `layout`, as the report lists them.
async fn layers_of(layout: &Layout, manifest: &Descriptor) -> Result<Vec<ArtifactLayer>> {
    let Document::Manifest { manifest: m, .. } = layout.read_document(manifest).await? else {
        return Ok(Vec::new());
    };
    Ok(m.layers()
        .iter()
        .filter_map(|layer| {
            let title = layer.annotations().as_ref()?.get(TITLE)?.clone();
            Some(ArtifactLayer {
                title,
                digest: layer.digest().to_string(),
                size: layer.size(),
                media_type: layer.media_type().to_string(),
            })
        })
        .collect())
}

/// `ocikit artifact pull`: restores the titled layers of the artifact `source` names
/// (`oci:PATH:TAG|@DIGEST` or `docker://HOST/NAME[:TAG|@DIGEST]`) into `dir` (made if
/// missing), each under its title, as the [module](self) says: hostile titles, symbolic
/// links on the way and existing files (unless overwrite) are refused before anything is
/// fetched or written; each file appears only once its digest is verified. Layers without
/// a title are skipped (counted in [`ArtifactPulled::untitled`]).
pub async fn artifact_pull(
    source: &Location,
    dir: &Path,
    options: &ArtifactPullOptions,
) -> Result<ArtifactPulled> {
    let location = source.to_string();
    // The manifest, and a layout to read its blobs from (for a registry, a scratch one
    // filled once the titles passed).
    let (layout, manifest_descriptor, registry, scratch) = match source {
        Location::Oci { path, selector } => {
            let layout = open_layout(path).await?;
            let descriptor = resolve(&layout, path, selector.as_ref()).await?;
            (layout, descriptor, None, Err(path.clone()))
        }
        Location::Docker {
            registry,
            repository,
            selector,
            ..
        } => {
            let client = options.registry.client(registry)?;
            let (descriptor, bytes) = client
                .get_manifest(repository, &selector.reference())
                .await
                .map_err(|source| Error::Registry {
                    operation: Operation::ReadManifest,
                    location: location.clone(),
                    source,
                })?;
            let (scratch, layout) = scratch_layout().await?;
            let digest = digest_of(&descriptor)?;
            layout.store().put_verified(&digest, &bytes).await?;
            (
                layout,
                descriptor,
                Some((client, repository.clone())),
                Ok(scratch),
            )
        }
        _ => {
            return Err(ArtifactError::Unsupported {
                what: "artifact pull",
                location,
                advice: "pull from oci: or docker://",
            }
            .into());
        }
    };
    let document = layout
        .read_document(&manifest_descriptor)
        .await
        .map_err(|source| Error::ReadImage {
            digest: manifest_descriptor.digest().to_string(),
            source,
        })?;
    let Document::Manifest { manifest, .. } = document else {
        return Err(ArtifactError::NotAManifest {
            location,
            media_type: manifest_descriptor.media_type().to_string(),
        }
        .into());
    };
    let artifact_type = manifest
        .artifact_type()
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_else(|| manifest.config().media_type().to_string());

    // Every title checked, and every place looked at, before anything is fetched.
    let mut wanted = Vec::new();
    let mut untitled = 0;
    let mut titles = BTreeSet::new();
    for layer in manifest.layers() {
        let Some(title) = layer
            .annotations()
            .as_ref()
            .and_then(|a| a.get(TITLE))
            .cloned()
        else {
            untitled += 1;
            continue;
        };
        check_title(&title).map_err(|problem| ArtifactError::UnsafeTitle {
            title: title.clone(),
            digest: layer.digest().to_string(),
            problem,
        })?;
        if !titles.insert(title.clone()) {
            return Err(ArtifactError::DuplicateTitle { title }.into());
        }
        wanted.push((title, layer.clone()));
    }
    let dir_owned = dir.to_path_buf();
    let overwrite = options.overwrite;
    let checked: Vec<String> = wanted.iter().map(|(t, _)| t.clone()).collect();
    blocking(move || {
        std::fs::create_dir_all(&dir_owned).map_err(|source| ArtifactError::Io {
            operation: "create",
            path: dir_owned.clone(),
            source,
        })?;
        let root = open_root(&dir_owned)?;
        for title in &checked {
            look(&root, &dir_owned, title, overwrite)?;
        }
        Ok(())
    })
    .await?;

    if let Some((client, repository)) = &registry {
        for (_, layer) in &wanted {
            client
                .fetch_blob(
                    repository,
                    &digest_of(layer)?,
                    layer.size(),
                    layout.store(),
                    &Default::default(),
                )
                .await
                .map_err(|source| Error::Pull {
                    location: location.clone(),
                    source,
                })?;
        }
    }

    let blobs_at = match &scratch {
        Ok(scratch) => scratch.path().to_path_buf(),
        Err(path) => path.clone(),
    };
    let mut files = Vec::with_capacity(wanted.len());
    for (title, layer) in &wanted {
        write_file(&layout, &blobs_at, dir, title, layer, overwrite).await?;
        files.push(ArtifactLayer {
            title: title.clone(),
            digest: layer.digest().to_string(),
            size: layer.size(),
            media_type: layer.media_type().to_string(),
        });
    }
    Ok(ArtifactPulled {
        digest: manifest_descriptor.digest().to_string(),
        artifact_type,
        files,
        untitled,
    })
}

/// Whether `title` can name a file inside a directory.
fn check_title(title: &str) -> std::result::Result<(), TitleProblem> {
    if title.is_empty() {
        return Err(TitleProblem::Empty);
    }
    if title.contains('\0') {
        return Err(TitleProblem::Nul);
    }
    if title.starts_with('/') {
        return Err(TitleProblem::Absolute);
    }
    let components: Vec<&str> = title.split('/').collect();
    if components.contains(&"..") {
        return Err(TitleProblem::ParentDir);
    }
    if components.iter().any(|c| c.is_empty() || *c == ".") {
        return Err(TitleProblem::NotNormal);
    }
    Ok(())
}

/// Runs `work` on a blocking thread.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> std::result::Result<T, ArtifactError> + Send + 'static,
) -> Result<T> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result.map_err(Error::from),
        Err(join) => Err(ArtifactError::Io {
            operation: "finish",
            path: PathBuf::new(),
            source: std::io::Error::other(join.to_string()),
        }
        .into()),
    }
}

fn io_error(operation: &'static str, path: &Path, errno: Errno) -> ArtifactError {
    ArtifactError::Io {
        operation,
        path: path.to_path_buf(),
        source: errno.into(),
    }
}

/// The pull's directory, opened (the user's path may itself be a link: it is theirs).
fn open_root(dir: &Path) -> std::result::Result<OwnedFd, ArtifactError> {
    rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io_error("open", dir, e))
}

/// Opens the directory `name` in `parent`, never through a symbolic link; `None` when it
/// does not exist.
fn open_dir(
    parent: &OwnedFd,
    name: &str,
    title: &str,
    shown: &Path,
) -> std::result::Result<Option<OwnedFd>, ArtifactError> {
    match rustix::fs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::NOENT) => Ok(None),
        Err(Errno::LOOP | Errno::NOTDIR) => Err(ArtifactError::ThroughLink {
            title: title.to_string(),
            path: shown.to_path_buf(),
        }),
        Err(e) => Err(io_error("open", shown, e)),
    }
}

/// What is at `name` in `parent`, not following a symbolic link.
fn kind_at(
    parent: &OwnedFd,
    name: &str,
    shown: &Path,
) -> std::result::Result<Option<FileType>, ArtifactError> {
    match rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(FileType::from_raw_mode(st.st_mode))),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(io_error("inspect", shown, e)),
    }
}

/// The directories on `title`'s way (created when `create`) and its file name; `None`
/// when a directory on the way does not exist (and `create` is off).
fn walk(
    root: &OwnedFd,
    dir: &Path,
    title: &str,
    create: bool,
) -> std::result::Result<Option<(OwnedFd, String, PathBuf)>, ArtifactError> {
    let mut components: Vec<&str> = title.split('/').collect();
    let name = components.pop().unwrap_or_default().to_string();
    let mut shown = dir.to_path_buf();
    let mut current = root.try_clone().map_err(|e| ArtifactError::Io {
        operation: "open",
        path: dir.to_path_buf(),
        source: e,
    })?;
    for component in components {
        shown.push(component);
        let next = match open_dir(&current, component, title, &shown)? {
            Some(fd) => fd,
            None if create => {
                match rustix::fs::mkdirat(&current, component, Mode::from_raw_mode(0o777)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(io_error("create", &shown, e)),
                }
                open_dir(&current, component, title, &shown)?
                    .ok_or_else(|| io_error("open", &shown, Errno::NOENT))?
            }
            None => return Ok(None),
        };
        current = next;
    }
    shown.push(&name);
    Ok(Some((current, name, shown)))
}

/// Refuses `title` when its path goes through a link, or names a link, or names a file
/// that exists (without `overwrite`).
fn look(
    root: &OwnedFd,
    dir: &Path,
    title: &str,
    overwrite: bool,
) -> std::result::Result<(), ArtifactError> {
    let Some((parent, name, shown)) = walk(root, dir, title, false)? else {
        return Ok(());
    };
    check_target(&parent, &name, title, &shown, overwrite)
}

fn check_target(
    parent: &OwnedFd,
    name: &str,
    title: &str,
    shown: &Path,
    overwrite: bool,
) -> std::result::Result<(), ArtifactError> {
    match kind_at(parent, name, shown)? {
        None => Ok(()),
        Some(FileType::Symlink) => Err(ArtifactError::ThroughLink {
            title: title.to_string(),
            path: shown.to_path_buf(),
        }),
        Some(FileType::RegularFile) if overwrite => Ok(()),
        Some(_) => Err(ArtifactError::Exists {
            path: shown.to_path_buf(),
        }),
    }
}

/// A temporary name beside `name`, unlikely to be taken (creation is exclusive anyway).
fn temporary_name(name: &str, attempt: u32) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let short: String = name.chars().take(32).collect();
    format!(".{short}.ocikit-{}-{n}-{attempt}.tmp", std::process::id())
}

/// Writes `layer` of `layout` (at `blobs_at`, for errors) to `title` in `dir`: the parent directories made without
/// following links, a temporary file beside the place, the blob streamed into it verified,
/// synced, and renamed into place.
async fn write_file(
    layout: &Layout,
    blobs_at: &Path,
    dir: &Path,
    title: &str,
    layer: &Descriptor,
    overwrite: bool,
) -> Result<()> {
    let digest = digest_of(layer)?;
    let (dir_owned, title_owned) = (dir.to_path_buf(), title.to_string());
    let (parent, name, shown, temp, file) = blocking(move || {
        let root = open_root(&dir_owned)?;
        let Some((parent, name, shown)) = walk(&root, &dir_owned, &title_owned, true)? else {
            return Err(io_error("create", &dir_owned, Errno::NOENT));
        };
        check_target(&parent, &name, &title_owned, &shown, overwrite)?;
        for attempt in 0..100 {
            let temp = temporary_name(&name, attempt);
            match rustix::fs::openat(
                &parent,
                temp.as_str(),
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o666),
            ) {
                Ok(fd) => return Ok((parent, name, shown, temp, std::fs::File::from(fd))),
                Err(Errno::EXIST) => continue,
                Err(e) => return Err(io_error("create a file beside", &shown, e)),
            }
        }
        Err(io_error("create a file beside", &shown, Errno::EXIST))
    })
    .await?;

    let mut out = tokio::fs::File::from_std(file);
    let written = crate::blob::write_blob(layout, blobs_at, &digest, &mut out).await;
    let synced = match &written {
        Ok(_) => out.sync_all().await.map_err(|source| ArtifactError::Io {
            operation: "write",
            path: shown.clone(),
            source,
        }),
        Err(_) => Ok(()),
    };
    drop(out);
    let failed = written.is_err() || synced.is_err();
    let renamed = blocking(move || {
        if failed {
            rustix::fs::unlinkat(&parent, temp.as_str(), AtFlags::empty()).ok();
            return Ok(());
        }
        let flags = if overwrite {
            RenameFlags::empty()
        } else {
            RenameFlags::NOREPLACE
        };
        let result =
            rustix::fs::renameat_with(&parent, temp.as_str(), &parent, name.as_str(), flags);
        if let Err(e) = result {
            rustix::fs::unlinkat(&parent, temp.as_str(), AtFlags::empty()).ok();
            return Err(match e {
                Errno::EXIST => ArtifactError::Exists { path: shown },
                e => io_error("rename into", &shown, e),
            });
        }
        rustix::fs::fsync(&parent).ok();
        Ok(())
    })
    .await;
    written?;
    synced?;
    renamed
}

/// A descriptor's digest as ocikit's [`Digest`].
fn digest_of(d: &Descriptor) -> Result<Digest> {
    let text = d.digest().to_string();
    text.parse().map_err(|source| Error::InvalidDigest {
        digest: text.clone(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_are_checked() {
        assert_eq!(check_title("a.txt"), Ok(()));
        assert_eq!(check_title("dir/a.txt"), Ok(()));
        assert_eq!(check_title(""), Err(TitleProblem::Empty));
        assert_eq!(check_title("a\0b"), Err(TitleProblem::Nul));
        assert_eq!(check_title("/etc/passwd"), Err(TitleProblem::Absolute));
        assert_eq!(check_title("../x"), Err(TitleProblem::ParentDir));
        assert_eq!(check_title("a/../../x"), Err(TitleProblem::ParentDir));
        assert_eq!(check_title("a//b"), Err(TitleProblem::NotNormal));
        assert_eq!(check_title("./a"), Err(TitleProblem::NotNormal));
        assert_eq!(check_title("a/"), Err(TitleProblem::NotNormal));
    }

    #[test]
    fn files_parse_as_oras_reads_them() {
        let f = ArtifactFile::parse("sbom.json:application/spdx+json");
        assert_eq!(f.path(), Path::new("sbom.json"));
        assert_eq!(f.media_type(), Some("application/spdx+json"));
        let f = ArtifactFile::parse("plain.txt");
        assert_eq!((f.path(), f.media_type()), (Path::new("plain.txt"), None));
        // A colon in a name that is no media type stays in the name.
        let f = ArtifactFile::parse("a:b.txt");
        assert_eq!((f.path(), f.media_type()), (Path::new("a:b.txt"), None));
    }
}
