//! Artifacts (SPEC A.5, "Guidelines for Artifact Usage"): manifests that attach signatures,
//! SBOMs, attestations and the like to a subject image through `subject`.
//!
//! [`Layout::attach`] writes the manifest with the empty config (or a custom one), the
//! `artifactType`, the blobs as layers (or the single empty descriptor when there are none),
//! the annotations and the `subject`, and lists it in `index.json` as an untagged entry so
//! that other tools see it; the referrers index ([`crate::referrers`]) picks it up.

use std::collections::BTreeMap;

use bytes::Bytes;
use ocikit_digest::oci_spec::image::{Descriptor, MediaType};
use ocikit_digest::{descriptor, media_type};
use serde_json::{Map, Value};

use crate::document;
use crate::{Error, Layout, Result};

/// An artifact to attach to a subject: its type, optional custom config, blobs and
/// annotations.
#[derive(Clone, Debug)]
pub struct Artifact {
    artifact_type: String,
    config: Option<(String, Bytes)>,
    blobs: Vec<(String, Bytes)>,
    annotations: BTreeMap<String, String>,
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
        self.config = Some((media_type.into(), bytes.into()));
        self
    }

    /// Adds a blob (a layer of the artifact manifest), in order.
    pub fn with_blob(mut self, media_type: impl Into<String>, bytes: impl Into<Bytes>) -> Self {
        self.blobs.push((media_type.into(), bytes.into()));
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
        Ok(())
    }
}

fn to_value(descriptor: &Descriptor) -> Result<Value> {
    serde_json::to_value(descriptor).map_err(|e| Error::InvalidArtifact {
        reason: format!("cannot serialise a descriptor: {e}"),
        source: None,
    })
}

impl Layout {
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
        // The subject as the spec shows it: the three required fields only (no tag, no
        // platform from an index entry).
        let subject_ref =
            descriptor::new(&subject_type, &subject_digest, subject.size()).map_err(|e| {
                Error::InvalidArtifact {
                    reason: "cannot describe the subject".into(),
                    source: Some(Box::new(e.into())),
                }
            })?;

        let config = match &artifact.config {
            Some((mt, bytes)) => self.put_blob(mt, bytes).await?,
            None => {
                self.put_blob(media_type::EMPTY_JSON, b"{}").await?;
                descriptor::empty()
            }
        };
        let mut layers = Vec::with_capacity(artifact.blobs.len().max(1));
        for (mt, bytes) in &artifact.blobs {
            layers.push(to_value(&self.put_blob(mt, bytes).await?)?);
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
        manifest.insert("subject".into(), to_value(&subject_ref)?);
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
        self.edit_index(|index| index.add(&entry).map(|()| true))
            .await?;
        self.sync_referrers().await?;
        Ok(entry)
    }
}
