//! Manifests and indexes as read from a layout: parsed strictly, kept as their exact bytes.
//!
//! Every graph walk in this crate (fsck, garbage collection, copy, archives, unpack) reads
//! documents through [`Document::parse`], so the rules live in one place:
//!
//! - the bytes are I-JSON (no duplicate keys; SPEC A.11) within [`MAX_DOCUMENT_SIZE`];
//! - `schemaVersion` is 2;
//! - a `mediaType` field, when present, must equal the descriptor's media type (a manifest
//!   served as an index or the other way round is refused: CVE-2021-41190);
//! - an index must not carry `config` or `layers`, a manifest must not carry `manifests`
//!   (ambiguous documents, SPEC A.6);
//! - every descriptor inside passes [`descriptor::check`].
//!
//! Docker schema 2 manifests and manifest lists share the OCI shapes and are read the same
//! way; other media types are [`Document::Opaque`]: stored and copied as bytes, never parsed.

use bytes::Bytes;
use ocikit_digest::oci_spec::image::{Descriptor, ImageIndex, ImageManifest};
use ocikit_digest::{Digest, descriptor, json, media_type};
use serde_json::Value;

use ocikit_digest::document::{InvalidDocument, InvalidDocumentKind};
use ocikit_digest::graph::{self, Graph, GraphError, Limits};

use crate::layout::MAX_DOCUMENT_SIZE;
use crate::{Error, Layout, Result};

/// What a descriptor points at, as far as the layout's graph is concerned.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Document {
    /// An image manifest (OCI or Docker schema 2).
    Manifest {
        /// The parsed manifest.
        manifest: Box<ImageManifest>,
        /// The exact bytes (what the digest covers).
        bytes: Bytes,
    },
    /// An image index (OCI or a Docker manifest list).
    Index {
        /// The parsed index.
        index: Box<ImageIndex>,
        /// The exact bytes.
        bytes: Bytes,
    },
    /// Anything else (a config, a layer, an artifact blob, an unknown media type).
    Opaque,
}

/// Whether a media type names a document this module parses (manifest or index, OCI or
/// Docker).
pub fn is_document(media_type: &str) -> bool {
    media_type::is_manifest_like(media_type) || media_type::is_index_like(media_type)
}

fn invalid(digest: &Digest, reason: impl Into<String>) -> Error {
    Error::InvalidDocument {
        digest: digest.clone(),
        reason: reason.into(),
        source: None,
    }
}

fn invalid_with(digest: &Digest, reason: &str, source: impl Into<ocikit_digest::Error>) -> Error {
    Error::InvalidDocument {
        digest: digest.clone(),
        reason: reason.into(),
        source: Some(Box::new(source.into())),
    }
}

impl Document {
    /// Parses `bytes`, which `descriptor` points at (the caller has checked digest and size),
    /// by the descriptor's media type.
    pub fn parse(descriptor: &Descriptor, bytes: Bytes) -> Result<Document> {
        let digest = descriptor::digest_of(descriptor)
            .map_err(|e| invalid_with(&Digest::sha256(&bytes), "invalid descriptor", e))?;
        let declared = descriptor.media_type().to_string();
        let is_manifest = media_type::is_manifest_like(&declared);
        let is_index = media_type::is_index_like(&declared);
        if !is_manifest && !is_index {
            return Ok(Document::Opaque);
        }
        if bytes.len() as u64 > MAX_DOCUMENT_SIZE {
            return Err(invalid(&digest, "document is larger than 16 MiB"));
        }
        let value = json::parse_strict_with_limit(&bytes, MAX_DOCUMENT_SIZE as usize)
            .map_err(|e| invalid_with(&digest, "malformed JSON", e))?;
        let Value::Object(object) = &value else {
            return Err(invalid(&digest, "not a JSON object"));
        };
        match object.get("schemaVersion") {
            Some(v) if v.as_u64() == Some(2) => {}
            Some(_) => return Err(invalid(&digest, "schemaVersion is not 2")),
            None => return Err(invalid(&digest, "schemaVersion is missing")),
        }
        match object.get("mediaType") {
            None => {}
            Some(Value::String(own))
                if media_type::essence(own) == media_type::essence(&declared) => {}
            Some(Value::String(own)) => {
                return Err(invalid(
                    &digest,
                    format!("its mediaType {own:?} is not the descriptor's {declared:?}"),
                ));
            }
            Some(_) => return Err(invalid(&digest, "mediaType is not a string")),
        }
        for (field, forbidden_in_index) in
            [("config", true), ("layers", true), ("manifests", false)]
        {
            if object.contains_key(field) && forbidden_in_index == is_index {
                return Err(invalid(
                    &digest,
                    format!(
                        "ambiguous document: {} with a `{field}` field",
                        kind(is_index)
                    ),
                ));
            }
        }
        let document = if is_manifest {
            let manifest: ImageManifest = serde_json::from_value(value)
                .map_err(|e| invalid(&digest, format!("not an image manifest: {e}")))?;
            let mut inner: Vec<&Descriptor> = vec![manifest.config()];
            inner.extend(manifest.layers());
            inner.extend(manifest.subject());
            check_all(&digest, inner)?;
            Document::Manifest {
                manifest: Box::new(manifest),
                bytes,
            }
        } else {
            let index: ImageIndex = serde_json::from_value(value)
                .map_err(|e| invalid(&digest, format!("not an image index: {e}")))?;
            let mut inner: Vec<&Descriptor> = index.manifests().iter().collect();
            inner.extend(index.subject());
            check_all(&digest, inner)?;
            Document::Index {
                index: Box::new(index),
                bytes,
            }
        };
        Ok(document)
    }

    /// The descriptors this document references and keeps alive: a manifest's config and
    /// layers, an index's manifests. (A `subject` is a weak reference and not included.)
    pub fn children(&self) -> Vec<Descriptor> {
        match self {
            Document::Manifest { manifest, .. } => std::iter::once(manifest.config())
                .chain(manifest.layers())
                .cloned()
                .collect(),
            Document::Index { index, .. } => index.manifests().clone(),
            Document::Opaque => Vec::new(),
        }
    }

    /// The `subject` of a manifest or index, if it has one.
    pub fn subject(&self) -> Option<&Descriptor> {
        match self {
            Document::Manifest { manifest, .. } => manifest.subject().as_ref(),
            Document::Index { index, .. } => index.subject().as_ref(),
            Document::Opaque => None,
        }
    }

    /// The artifact type as the referrers API reports it: `artifactType`, or for a manifest
    /// without one, its config's media type (SPEC A.5).
    pub fn artifact_type(&self) -> Option<String> {
        match self {
            Document::Manifest { manifest, .. } => Some(
                manifest
                    .artifact_type()
                    .as_ref()
                    .unwrap_or(manifest.config().media_type())
                    .to_string(),
            ),
            Document::Index { index, .. } => {
                index.artifact_type().as_ref().map(ToString::to_string)
            }
            Document::Opaque => None,
        }
    }
}

fn kind(is_index: bool) -> &'static str {
    if is_index { "an index" } else { "a manifest" }
}

fn check_all<'a>(digest: &Digest, inner: impl IntoIterator<Item = &'a Descriptor>) -> Result<()> {
    for d in inner {
        descriptor::check(d).map_err(|e| invalid_with(digest, "invalid descriptor inside", e))?;
    }
    Ok(())
}

/// The layout's error for a document `digest` that [`Document::parse`] refused: the rule as
/// the reason, its cause (malformed JSON, a bad descriptor) as the source.
pub(crate) fn refused(digest: Digest, error: &InvalidDocument) -> Error {
    let source: Option<ocikit_digest::Error> = match error.kind() {
        InvalidDocumentKind::Json(e) => Some(e.clone().into()),
        InvalidDocumentKind::Descriptor { error, .. } => Some(error.clone().into()),
        InvalidDocumentKind::BadArtifactType(e) => Some(e.clone().into()),
        _ => None,
    };
    Error::InvalidDocument {
        digest,
        reason: error.kind().to_string(),
        source: source.map(Box::new),
    }
}

impl From<GraphError> for Error {
    fn from(error: GraphError) -> Error {
        match error {
            GraphError::Document { digest, source } => refused(digest, &source),
            GraphError::TooDeep { root, max, .. } if max == graph::MAX_DEPTH => {
                Error::GraphTooLarge {
                    root,
                    reason: "nested deeper than 16 levels",
                }
            }
            GraphError::TooDeep { root, .. } => Error::GraphTooLarge {
                root,
                reason: "nested too deep",
            },
            GraphError::TooManyNodes { root, .. } => Error::GraphTooLarge {
                root,
                reason: "more than 1,000,000 blobs",
            },
            GraphError::Cycle { digest } => Error::InvalidDocument {
                digest,
                reason: "the document reaches itself".into(),
                source: None,
            },
            GraphError::Descriptor(e) => Error::InvalidDocument {
                digest: Digest::sha256(b""),
                reason: "descriptor digest is invalid".into(),
                source: Some(Box::new((*e).into())),
            },
            other => Error::InvalidDocument {
                digest: Digest::sha256(b""),
                reason: other.to_string(),
                source: None,
            },
        }
    }
}

/// Walks the graph under `roots` in `layout` with the default [`Limits`], reading (and
/// verifying, [`Layout::read_blob`]) every manifest and index; `read_error` maps an error
/// reading document `digest`.
pub(crate) async fn walk(
    layout: &Layout,
    roots: &[Descriptor],
    read_error: impl Fn(&Digest, Error) -> Error,
) -> Result<Graph> {
    let read_error = &read_error;
    graph::walk(roots, &Limits::new(), |wanted| async move {
        layout
            .read_blob(&wanted)
            .await
            .map_err(|e| match descriptor::digest_of(&wanted) {
                Ok(digest) => read_error(&digest, e),
                Err(_) => e,
            })
    })
    .await
}
