//! Manifests and indexes: the one strict parser every ocikit reader uses (layouts, the
//! registry server, the client, garbage collectors, fsck, the CLI).
//!
//! [`Document::parse`] reads a document by the media type its descriptor (or a request's
//! `Content-Type`) declares, with these rules, each refused with its own
//! [`InvalidDocumentKind`]:
//!
//! - the bytes are I-JSON ([`crate::json::parse_strict_with_limit`]: no duplicate keys, SPEC
//!   A.11) within [`MAX_DOCUMENT_SIZE`] (or the limit given to [`Document::parse_as`]);
//! - the document is an object whose `schemaVersion` is 2;
//! - a `mediaType` field, when present, is a string naming the same media type as the one
//!   declared, compared by [`media_type::essence`] (parameters dropped, as everywhere in
//!   ocikit): a manifest served as an index or the other way round is refused
//!   (CVE-2021-41190);
//! - an index carries no `config` or `layers`, a manifest no `manifests` (ambiguous
//!   documents, SPEC A.6);
//! - `artifactType`, when present, is an RFC 6838 media type, and `annotations` an object of
//!   strings;
//! - the document has the shape of an OCI image manifest or index, and every descriptor in
//!   it (`config`, `layers[i]`, `manifests[i]`, `subject`) passes [`descriptor::check`].
//!
//! Docker schema 2 manifests and manifest lists share the OCI shapes and are read the same
//! way; other media types are [`Document::Opaque`]: stored and copied as bytes, never parsed.
//! The graph above documents is walked by [`crate::graph`].
//!
//! ```
//! use ocikit_digest::document::{Document, InvalidDocumentKind};
//! use ocikit_digest::media_type;
//!
//! let manifest = br#"{"schemaVersion": 2,
//!     "mediaType": "application/vnd.oci.image.manifest.v1+json",
//!     "config": {"mediaType": "application/vnd.oci.empty.v1+json", "size": 2,
//!         "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"},
//!     "layers": []}"#;
//! let document = Document::parse_as(media_type::IMAGE_MANIFEST, manifest.to_vec().into())?;
//! assert_eq!(document.children().len(), 1);
//!
//! // The same bytes served as an index are refused.
//! let err = Document::parse_as(media_type::IMAGE_INDEX, manifest.to_vec().into()).unwrap_err();
//! assert!(matches!(err.kind(), InvalidDocumentKind::MediaTypeMismatch { .. }));
//! # Ok::<(), ocikit_digest::document::InvalidDocument>(())
//! ```

use std::collections::HashMap;

use bytes::Bytes;
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};
use serde_json::{Map, Value};

use crate::descriptor::{self, InvalidDescriptor};
use crate::json::{self, JsonError};
use crate::media_type::{self, InvalidMediaType};

/// Largest manifest or index read: 16 MiB (documents are small; this bounds memory).
pub const MAX_DOCUMENT_SIZE: u64 = 16 << 20;

/// A manifest or index, parsed and kept as its exact bytes; or anything else, unparsed.
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
/// Docker), by its essence.
pub fn is_document(media_type: &str) -> bool {
    media_type::is_manifest_like(media_type) || media_type::is_index_like(media_type)
}

impl Document {
    /// Parses `bytes`, which `descriptor` points at, by the descriptor's media type, within
    /// [`MAX_DOCUMENT_SIZE`]. The caller has checked the bytes' digest and size.
    pub fn parse(descriptor: &Descriptor, bytes: Bytes) -> Result<Document, InvalidDocument> {
        Document::parse_with_limit(descriptor.media_type().as_ref(), bytes, MAX_DOCUMENT_SIZE)
    }

    /// Parses `bytes` as the media type `media_type` declares (a descriptor's, or a request's
    /// `Content-Type`), within [`MAX_DOCUMENT_SIZE`].
    pub fn parse_as(media_type: &str, bytes: Bytes) -> Result<Document, InvalidDocument> {
        Document::parse_with_limit(media_type, bytes, MAX_DOCUMENT_SIZE)
    }

    /// [`Document::parse_as`] with another size limit (a registry's configured one).
    pub fn parse_with_limit(
        media_type: &str,
        bytes: Bytes,
        max_size: u64,
    ) -> Result<Document, InvalidDocument> {
        let is_manifest = media_type::is_manifest_like(media_type);
        let is_index = media_type::is_index_like(media_type);
        if !is_manifest && !is_index {
            return Ok(Document::Opaque);
        }
        parse_document(media_type, is_index, bytes, max_size).map_err(InvalidDocument::new)
    }

    /// The exact bytes of a manifest or index.
    pub fn bytes(&self) -> Option<&Bytes> {
        match self {
            Document::Manifest { bytes, .. } | Document::Index { bytes, .. } => Some(bytes),
            Document::Opaque => None,
        }
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

    /// The document's own annotations.
    pub fn annotations(&self) -> Option<&HashMap<String, String>> {
        match self {
            Document::Manifest { manifest, .. } => manifest.annotations().as_ref(),
            Document::Index { index, .. } => index.annotations().as_ref(),
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

fn parse_document(
    declared: &str,
    is_index: bool,
    bytes: Bytes,
    max_size: u64,
) -> Result<Document, InvalidDocumentKind> {
    use InvalidDocumentKind as K;
    let actual = bytes.len() as u64;
    if actual > max_size {
        return Err(K::TooLarge {
            max: max_size,
            actual,
        });
    }
    let limit = usize::try_from(max_size).unwrap_or(usize::MAX);
    let value = json::parse_strict_with_limit(&bytes, limit).map_err(K::Json)?;
    let Value::Object(object) = &value else {
        return Err(K::NotAnObject);
    };
    match object.get("schemaVersion") {
        Some(v) if v.as_u64() == Some(2) => {}
        Some(_) => return Err(K::SchemaVersion),
        None => return Err(K::SchemaVersionMissing),
    }
    match object.get("mediaType") {
        None => {}
        Some(Value::String(own)) if media_type::essence(own) == media_type::essence(declared) => {}
        Some(Value::String(own)) => {
            return Err(K::MediaTypeMismatch {
                declared: declared.to_owned(),
                found: own.clone(),
            });
        }
        Some(_) => {
            return Err(K::WrongType {
                field: "mediaType",
                expected: "a string",
            });
        }
    }
    for (field, forbidden_in_index) in [("config", true), ("layers", true), ("manifests", false)] {
        if object.contains_key(field) && forbidden_in_index == is_index {
            return Err(K::Ambiguous { field, is_index });
        }
    }
    check_raw(object)?;
    if is_index {
        let index: ImageIndex = serde_json::from_value(value).map_err(|e| K::Shape {
            is_index,
            message: e.to_string(),
        })?;
        for (i, d) in index.manifests().iter().enumerate() {
            check_inner(d, || format!("manifests[{i}]"))?;
        }
        if let Some(subject) = index.subject() {
            check_inner(subject, || "subject".into())?;
        }
        Ok(Document::Index {
            index: Box::new(index),
            bytes,
        })
    } else {
        let manifest: ImageManifest = serde_json::from_value(value).map_err(|e| K::Shape {
            is_index,
            message: e.to_string(),
        })?;
        check_inner(manifest.config(), || "config".into())?;
        for (i, d) in manifest.layers().iter().enumerate() {
            check_inner(d, || format!("layers[{i}]"))?;
        }
        if let Some(subject) = manifest.subject() {
            check_inner(subject, || "subject".into())?;
        }
        Ok(Document::Manifest {
            manifest: Box::new(manifest),
            bytes,
        })
    }
}

/// The rules on the document's own fields that a typed view would blur into a serde
/// message: `artifactType` and `annotations`, and each descriptor's raw JSON.
fn check_raw(object: &Map<String, Value>) -> Result<(), InvalidDocumentKind> {
    use InvalidDocumentKind as K;
    match object.get("artifactType") {
        None | Some(Value::Null) => {}
        Some(Value::String(t)) => {
            media_type::validate_media_type(t).map_err(K::BadArtifactType)?;
        }
        Some(_) => {
            return Err(K::WrongType {
                field: "artifactType",
                expected: "a string",
            });
        }
    }
    match object.get("annotations") {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            if let Some((key, _)) = map.iter().find(|(_, v)| !v.is_string()) {
                return Err(K::AnnotationNotString { key: key.clone() });
            }
        }
        Some(_) => {
            return Err(K::WrongType {
                field: "annotations",
                expected: "an object",
            });
        }
    }
    let raw = |at: String, value: &Value| {
        descriptor::check_value(value).map_err(|error| K::Descriptor { at, error })
    };
    if let Some(config) = object.get("config") {
        raw("config".into(), config)?;
    }
    for list in ["layers", "manifests"] {
        if let Some(Value::Array(items)) = object.get(list) {
            for (i, item) in items.iter().enumerate() {
                raw(format!("{list}[{i}]"), item)?;
            }
        }
    }
    match object.get("subject") {
        None | Some(Value::Null) => {}
        Some(subject) => raw("subject".into(), subject)?,
    }
    Ok(())
}

fn check_inner(d: &Descriptor, at: impl FnOnce() -> String) -> Result<(), InvalidDocumentKind> {
    descriptor::check(d).map_err(|error| InvalidDocumentKind::Descriptor { at: at(), error })
}

/// Why a manifest or index was refused; [`InvalidDocument::kind`] says which rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidDocument {
    kind: InvalidDocumentKind,
}

impl InvalidDocument {
    fn new(kind: InvalidDocumentKind) -> InvalidDocument {
        InvalidDocument { kind }
    }

    /// Which rule the document broke.
    pub fn kind(&self) -> &InvalidDocumentKind {
        &self.kind
    }
}

impl std::fmt::Display for InvalidDocument {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.kind.fmt(f)
    }
}

impl std::error::Error for InvalidDocument {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.kind)
    }
}

/// The precise rule a manifest or index broke.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidDocumentKind {
    /// The document is larger than the limit.
    #[error("document is larger than {}", size_text(*.max))]
    TooLarge {
        /// The limit in bytes.
        max: u64,
        /// The document's size.
        actual: u64,
    },
    /// The bytes are not strict I-JSON.
    #[error("malformed JSON")]
    Json(#[source] JsonError),
    /// The document is JSON but not an object.
    #[error("not a JSON object")]
    NotAnObject,
    /// No `schemaVersion`.
    #[error("schemaVersion is missing")]
    SchemaVersionMissing,
    /// `schemaVersion` is not the number 2.
    #[error("schemaVersion is not 2")]
    SchemaVersion,
    /// A field of the document itself has the wrong JSON type.
    #[error("{field} is not {expected}")]
    WrongType {
        /// The field (`mediaType`, `artifactType`, `annotations`).
        field: &'static str,
        /// What it must be.
        expected: &'static str,
    },
    /// The document's `mediaType` names another type than the one it was declared as.
    #[error("its mediaType {found:?} is not the declared {declared:?}")]
    MediaTypeMismatch {
        /// The media type the descriptor or request declared.
        declared: String,
        /// The document's own `mediaType`.
        found: String,
    },
    /// An index with `config` or `layers`, or a manifest with `manifests`.
    #[error("ambiguous document: {} with a `{field}` field", if *.is_index { "an index" } else { "a manifest" })]
    Ambiguous {
        /// The field that does not belong.
        field: &'static str,
        /// Whether the document was read as an index.
        is_index: bool,
    },
    /// `artifactType` is not an RFC 6838 media type.
    #[error("artifactType is invalid")]
    BadArtifactType(#[source] InvalidMediaType),
    /// An annotation value is not a string.
    #[error("annotation {key:?} is not a string")]
    AnnotationNotString {
        /// The annotation's key.
        key: String,
    },
    /// A descriptor inside is invalid.
    #[error("invalid descriptor at {at}")]
    Descriptor {
        /// Where: `config`, `layers[3]`, `manifests[0]`, `subject`.
        at: String,
        /// Why.
        #[source]
        error: InvalidDescriptor,
    },
    /// The document does not have the shape of an image manifest or index (a required
    /// field is missing or of the wrong type).
    #[error("not an image {}: {message}", if *.is_index { "index" } else { "manifest" })]
    Shape {
        /// Whether it was read as an index.
        is_index: bool,
        /// serde's message.
        message: String,
    },
}

fn size_text(bytes: u64) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{bytes} bytes")
    }
}
