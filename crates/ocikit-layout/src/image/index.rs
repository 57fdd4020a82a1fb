//! [`IndexBuilder`]: manifests gathered into an image index.

use std::collections::{BTreeMap, HashMap};

use ocikit_digest::oci_spec::image::{Descriptor, ImageIndex, MediaType};
use ocikit_digest::{Digest, descriptor, json, media_type};

use super::{ImageConfig, is_image_config};
use crate::document::Document;
use crate::{Error, Layout, Result};

/// Builds an image index: manifests (usually one per platform), written as canonical JSON.
#[derive(Clone, Debug)]
pub struct IndexBuilder {
    layout: Layout,
    manifests: Vec<Descriptor>,
    annotations: BTreeMap<String, String>,
}

impl IndexBuilder {
    /// An empty index.
    pub fn new(layout: &Layout) -> IndexBuilder {
        IndexBuilder {
            layout: layout.clone(),
            manifests: Vec::new(),
            annotations: BTreeMap::new(),
        }
    }

    /// Adds a manifest or index of the layout. The document is read and checked (stored,
    /// digest and size right, strictly valid); an image manifest without a platform gets
    /// its config's. Descriptors of other media types are refused.
    pub async fn add(&mut self, descriptor: &Descriptor) -> Result<&mut Self> {
        let mut entry = descriptor.clone();
        let digest = descriptor::digest_of(descriptor).map_err(|e| Error::InvalidDocument {
            digest: Digest::sha256(b""),
            reason: "invalid descriptor".into(),
            source: Some(Box::new(e.into())),
        })?;
        match self.layout.read_document(descriptor).await? {
            Document::Manifest { manifest, .. } => {
                if entry.platform().is_none()
                    && is_image_config(manifest.config().media_type().as_ref())
                {
                    let bytes = self.layout.read_blob(manifest.config()).await?;
                    let config_digest = descriptor::digest_of(manifest.config()).map_err(|e| {
                        Error::InvalidDocument {
                            digest: digest.clone(),
                            reason: "invalid config descriptor".into(),
                            source: Some(Box::new(e.into())),
                        }
                    })?;
                    let config = ImageConfig::parse(&config_digest, &bytes)?;
                    entry.set_platform(Some(config.platform()));
                }
            }
            Document::Index { .. } => {}
            _ => {
                return Err(Error::UnsupportedMediaType {
                    media_type: descriptor.media_type().to_string(),
                    operation: "add to an index",
                });
            }
        }
        // Tags belong to index.json, not to the index being built.
        if let Some(annotations) = entry.annotations().clone() {
            let kept: HashMap<String, String> = annotations
                .into_iter()
                .filter(|(k, _)| k != crate::index::REF_NAME)
                .collect();
            entry.set_annotations((!kept.is_empty()).then_some(kept));
        }
        self.manifests.push(entry);
        Ok(self)
    }

    /// The entries so far.
    pub fn manifests(&self) -> &[Descriptor] {
        &self.manifests
    }

    /// Sets an annotation of the index.
    pub fn annotation(&mut self, key: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.annotations.insert(key.into(), value.into());
        self
    }

    /// Writes the index (canonical JSON, `mediaType` always written) and returns its
    /// descriptor.
    pub async fn write(&self) -> Result<Descriptor> {
        let mut index = ImageIndex::default();
        index.set_schema_version(2);
        index.set_media_type(Some(MediaType::ImageIndex));
        index.set_manifests(self.manifests.clone());
        if !self.annotations.is_empty() {
            index.set_annotations(Some(self.annotations.clone().into_iter().collect()));
        }
        let bytes = json::to_canonical_vec(&index).map_err(|e| Error::InvalidDocument {
            digest: Digest::sha256(b""),
            reason: "cannot serialise the index".into(),
            source: Some(Box::new(e.into())),
        })?;
        let digest = Digest::sha256(&bytes);
        let described = descriptor::new(media_type::IMAGE_INDEX, &digest, bytes.len() as u64)
            .map_err(|e| Error::InvalidDocument {
                digest: digest.clone(),
                reason: "cannot describe the index".into(),
                source: Some(Box::new(e.into())),
            })?;
        // Never write what this crate would refuse to read.
        crate::document::parse(&described, bytes::Bytes::from(bytes.clone()))?;
        self.layout.put_blob(media_type::IMAGE_INDEX, &bytes).await
    }

    /// [`write`](Self::write), then points `tag` at the index.
    pub async fn write_and_tag(&self, tag: &str) -> Result<Descriptor> {
        crate::index::validate_tag(tag)?;
        let descriptor = self.write().await?;
        self.layout.set_tag(tag, &descriptor).await?;
        Ok(descriptor)
    }
}
