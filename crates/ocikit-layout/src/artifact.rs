//! Artifacts (SPEC A.5, "Guidelines for Artifact Usage"): manifests that attach signatures,
//! SBOMs, attestations and the like to a subject image through `subject`.
//!
//! [`Layout::attach`] writes the manifest with the empty config (or a custom one), the
//! `artifactType`, the blobs as layers (or the single empty descriptor when there are none),
//! the annotations and the `subject`, and lists it in `index.json` as an untagged entry so
//! that other tools see it; the referrers index ([`crate::referrers`]) picks it up.
//!
//! [`Layout::write_artifact`] stores the same manifest without listing it (with or without a
//! subject), for callers that tag it or push it elsewhere, as `oras push` does. Blobs are
//! given as bytes ([`Artifact::with_blob`]) or as files streamed into the store and hashed
//! on the way, never read whole ([`Artifact::with_file`], titled by their file name as
//! `oras push` titles them: `org.opencontainers.image.title`).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use ocikit_digest::oci_spec::image::{Descriptor, MediaType};
use ocikit_digest::{descriptor, media_type};
use serde_json::{Map, Value};

use crate::document;
use crate::{Error, Layout, Result};

/// The annotation that names a file blob (`oras push` and `oras pull` read it).
pub const TITLE: &str = "org.opencontainers.image.title";

/// An artifact to attach to a subject: its type, optional custom config, blobs and
/// annotations.
#[derive(Clone, Debug)]
pub struct Artifact {
    artifact_type: String,
    config: Option<(String, Content)>,
    blobs: Vec<(String, Content)>,
    annotations: BTreeMap<String, String>,
}

/// Where a blob's bytes come from.
#[derive(Clone, Debug)]
enum Content {
    /// Held in memory.
    Bytes(Bytes),
    /// A file, streamed into the store when the artifact is written; a layer from a file
    /// is titled with its file name.
    File(PathBuf),
}

fn invalid_media_type(what: &str, value: &str, e: media_type::InvalidMediaType) -> Error {
    Error::InvalidArtifact {
        reason: format!("{what} {:?} is not an RFC 6838 media type", trimmed(value)),
        source: Some(Box::new(e.into())),
    }
}

fn trimmed(s: &str) -> String {
    s.chars().take(200).collect()
}

impl Artifact {
    /// An artifact of `artifact_type` (an RFC 6838 media type, checked when attached) with
    /// the empty config and no blobs yet.
    pub fn new(artifact_type: impl Into<String>) -> Artifact {
        Artifact {
            artifact_type: artifact_type.into(),
            config: None,
            blobs: Vec::new(),
            annotations: BTreeMap::new(),
        }
    }

    /// Uses `bytes` of `media_type` as the config instead of the empty one.
    pub fn with_config(mut self, media_type: impl Into<String>, bytes: impl Into<Bytes>) -> Self {
        self.config = Some((media_type.into(), Content::Bytes(bytes.into())));
        self
    }

    /// Uses the file at `path` (streamed into the store) as the config, of `media_type`.
    pub fn with_config_file(
        mut self,
        media_type: impl Into<String>,
        path: impl Into<PathBuf>,
    ) -> Self {
        self.config = Some((media_type.into(), Content::File(path.into())));
        self
    }

    /// Adds a blob (a layer of the artifact manifest), in order.
    pub fn with_blob(mut self, media_type: impl Into<String>, bytes: impl Into<Bytes>) -> Self {
        self.blobs
            .push((media_type.into(), Content::Bytes(bytes.into())));
        self
    }

    /// Adds the file at `path` as a layer of `media_type`, in order, titled
    /// ([`TITLE`]) with its file name (UTF-8, else refused when written). Its bytes are
    /// streamed into the store and hashed on the way when the artifact is written; a missing
    /// or unreadable file is [`Error::Io`] naming it, a directory [`Error::InvalidArtifact`].
    pub fn with_file(mut self, media_type: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        self.blobs
            .push((media_type.into(), Content::File(path.into())));
        self
    }

    /// Adds an annotation of the artifact manifest (the referrers list reports these).
    pub fn with_annotation(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.annotations.insert(key.into(), value.into());
        self
    }

    /// The artifact type.
    pub fn artifact_type(&self) -> &str {
        &self.artifact_type
    }

    fn check(&self) -> Result<()> {
        media_type::validate_media_type(&self.artifact_type)
            .map_err(|e| invalid_media_type("artifactType", &self.artifact_type, e))?;
        if let Some((mt, _)) = &self.config {
            media_type::validate_media_type(mt)
                .map_err(|e| invalid_media_type("config media type", mt, e))?;
        }
        for (mt, _) in &self.blobs {
            media_type::validate_media_type(mt)
                .map_err(|e| invalid_media_type("blob media type", mt, e))?;
        }
        if self.annotations.keys().any(String::is_empty) {
            return Err(Error::InvalidArtifact {
                reason: "an annotation key is empty".into(),
                source: None,
            });
        }
        let mut titles = std::collections::BTreeSet::new();
        for (_, content) in &self.blobs {
            if let Content::File(path) = content
                && !titles.insert(title_of(path)?)
            {
                return Err(Error::InvalidArtifact {
                    reason: format!(
                        "two files are named {:?}: a title names one file",
                        trimmed(&title_of(path)?)
                    ),
                    source: None,
                });
            }
        }
        Ok(())
    }
}

/// The title of a file blob: its file name, as `oras push` gives it.
fn title_of(path: &Path) -> Result<String> {
    match path.file_name().map(|name| name.to_str()) {
        Some(Some(name)) if !name.is_empty() => Ok(name.to_string()),
        _ => Err(Error::InvalidArtifact {
            reason: format!(
                "{} has no UTF-8 file name to title it with",
                trimmed(&path.display().to_string())
            ),
            source: None,
        }),
    }
}

fn to_value(descriptor: &Descriptor) -> Result<Value> {
    serde_json::to_value(descriptor).map_err(|e| Error::InvalidArtifact {
        reason: format!("cannot serialise a descriptor: {e}"),
        source: None,
    })
}

impl Layout {
    /// Stores `content` as a blob of `media_type` (a file streamed and hashed on the way)
    /// and returns its descriptor.
    async fn put_content(&self, media_type: &str, content: &Content) -> Result<Descriptor> {
        let path = match content {
            Content::Bytes(bytes) => return self.put_blob(media_type, bytes).await,
            Content::File(path) => path,
        };
        let io = |operation: &'static str| {
            let path = path.clone();
            move |source| Error::Io {
                operation,
                path,
                source,
            }
        };
        let mut file = tokio::fs::File::open(path)
            .await
            .map_err(io("cannot open"))?;
        let metadata = file.metadata().await.map_err(io("cannot read"))?;
        if !metadata.is_file() {
            return Err(Error::InvalidArtifact {
                reason: format!(
                    "{} is not a regular file",
                    trimmed(&path.display().to_string())
                ),
                source: None,
            });
        }
        let mut writer = ocikit_store::StoreExt::writer(self.store()).await?;
        if let Err(source) = tokio::io::copy(&mut file, &mut writer).await {
            writer.abort().await.ok();
            return Err(io("cannot read")(source));
        }
        let (digest, size) = writer.finish().await?;
        descriptor::new(media_type, &digest, size).map_err(|e| Error::InvalidDocument {
            digest,
            reason: "cannot describe the blob".into(),
            source: Some(Box::new(e.into())),
        })
    }

    /// Writes `artifact` as an OCI 1.1 image manifest: the blobs (files streamed), the
    /// config (the empty one, `{}` of [`media_type::EMPTY_JSON`], unless one is given), the
    /// `artifactType`, the annotations and, when given, `subject` as its three required
    /// fields (it need not be stored here: the artifact may be bound elsewhere). Nothing is
    /// tagged or listed in `index.json`; returns the manifest's descriptor carrying its
    /// `artifactType`.
    ///
    /// Refuses ([`Error::InvalidArtifact`]) what [`Layout::attach`] refuses, two files of
    /// one name, and a file that is not a regular file; a file that cannot be read is
    /// [`Error::Io`]. Blobs stored before a failure stay until garbage collection.
    pub async fn write_artifact(
        &self,
        artifact: &Artifact,
        subject: Option<&Descriptor>,
    ) -> Result<Descriptor> {
        artifact.check()?;
        let subject_ref = match subject {
            None => None,
            Some(subject) => {
                let subject_type = subject.media_type().to_string();
                if !document::is_document(&subject_type) {
                    return Err(Error::InvalidArtifact {
                        reason: format!(
                            "the subject's media type {:?} is not a manifest or index",
                            trimmed(&subject_type)
                        ),
                        source: None,
                    });
                }
                let digest =
                    descriptor::digest_of(subject).map_err(|e| Error::InvalidArtifact {
                        reason: "the subject's digest is invalid".into(),
                        source: Some(Box::new(e.into())),
                    })?;
                // The subject as the spec shows it: the three required fields only (no tag,
                // no platform from an index entry).
                Some(
                    descriptor::new(&subject_type, &digest, subject.size()).map_err(|e| {
                        Error::InvalidArtifact {
                            reason: "cannot describe the subject".into(),
                            source: Some(Box::new(e.into())),
                        }
                    })?,
                )
            }
        };
        let config = match &artifact.config {
            Some((mt, content)) => self.put_content(mt, content).await?,
            None => {
                self.put_blob(media_type::EMPTY_JSON, b"{}").await?;
                descriptor::empty()
            }
        };
        let mut layers = Vec::with_capacity(artifact.blobs.len().max(1));
        for (mt, content) in &artifact.blobs {
            let mut layer = self.put_content(mt, content).await?;
            if let Content::File(path) = content {
                layer.set_annotations(Some(HashMap::from([(TITLE.to_string(), title_of(path)?)])));
            }
            layers.push(to_value(&layer)?);
        }
        if layers.is_empty() {
            self.put_blob(media_type::EMPTY_JSON, b"{}").await?;
            layers.push(to_value(&descriptor::empty())?);
        }
        let mut manifest = Map::new();
        manifest.insert("schemaVersion".into(), Value::from(2));
        manifest.insert("mediaType".into(), Value::from(media_type::IMAGE_MANIFEST));
        manifest.insert(
            "artifactType".into(),
            Value::from(artifact.artifact_type.as_str()),
        );
        manifest.insert("config".into(), to_value(&config)?);
        manifest.insert("layers".into(), Value::Array(layers));
        if let Some(subject_ref) = &subject_ref {
            manifest.insert("subject".into(), to_value(subject_ref)?);
        }
        if !artifact.annotations.is_empty() {
            let annotations: Map<String, Value> = artifact
                .annotations
                .iter()
                .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
                .collect();
            manifest.insert("annotations".into(), Value::Object(annotations));
        }
        let manifest = Value::Object(manifest);
        let mut entry = self.put_json(media_type::IMAGE_MANIFEST, &manifest).await?;
        // What we wrote must pass our own strict reading.
        let bytes = self.read_blob(&entry).await?;
        crate::document::parse(&entry, bytes)?;
        entry.set_artifact_type(Some(MediaType::from(artifact.artifact_type.as_str())));
        Ok(entry)
    }

    /// Attaches `artifact` to `subject` (a manifest or index stored in this layout): stores
    /// the blobs, the config and the artifact manifest, and adds the manifest to
    /// `index.json` as an untagged entry carrying its `artifactType`. Returns that entry's
    /// descriptor.
    ///
    /// Refuses ([`Error::InvalidArtifact`]) an `artifactType` or media type outside RFC 6838
    /// and a subject that is not a manifest or index; a subject that is not stored is
    /// [`Error::Store`] `NotFound`, one stored with another size `SizeMismatch`.
    pub async fn attach(&self, subject: &Descriptor, artifact: &Artifact) -> Result<Descriptor> {
        artifact.check()?;
        let subject_type = subject.media_type().to_string();
        if !document::is_document(&subject_type) {
            return Err(Error::InvalidArtifact {
                reason: format!(
                    "the subject's media type {:?} is not a manifest or index",
                    trimmed(&subject_type)
                ),
                source: None,
            });
        }
        let subject_digest =
            descriptor::digest_of(subject).map_err(|e| Error::InvalidArtifact {
                reason: "the subject's digest is invalid".into(),
                source: Some(Box::new(e.into())),
            })?;
        let stored = self.store().stat(&subject_digest).await?;
        match stored {
            None => {
                return Err(Error::Store(ocikit_store::Error::NotFound {
                    digest: subject_digest,
                }));
            }
            Some(size) if size != subject.size() => {
                return Err(Error::Store(ocikit_store::Error::SizeMismatch {
                    expected: subject.size(),
                    actual: size,
                }));
            }
            Some(_) => {}
        }
        let entry = self.write_artifact(artifact, Some(subject)).await?;
        self.edit_index(|index| index.add(&entry).map(|()| true))
            .await?;
        self.sync_referrers().await?;
        Ok(entry)
    }
}
