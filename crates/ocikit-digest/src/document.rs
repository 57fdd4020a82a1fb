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

use std::fmt;

use bytes::Bytes;
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};

use crate::descriptor::{self, InvalidDescriptor, InvalidDescriptorKind, RawSeed};
use crate::json::{self, Checker, JsonError, Keys, Scan, Scanner};
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
    // One strict pass over the bytes that builds no tree but keeps what the rules below
    // look at, then serde_json straight into the typed document.
    let text = json::strict_text(&bytes, limit).map_err(K::Json)?;
    let mut broken = None;
    let mut de = serde_json::Deserializer::from_str(text);
    let scanned = TopSeed(Checker::root(&mut broken)).deserialize(&mut de);
    let top = json::finish(text, &mut de, scanned, broken).map_err(K::Json)?;
    let Some(top) = top else {
        return Err(K::NotAnObject);
    };
    top.check(declared, is_index)?;
    let shape = |e: serde_json::Error| K::Shape {
        is_index,
        message: e.to_string(),
    };
    if is_index {
        let index: ImageIndex = serde_json::from_str(text).map_err(shape)?;
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
        let manifest: ImageManifest = serde_json::from_str(text).map_err(shape)?;
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

/// What the document rules look at in the top-level object, gathered by [`TopSeed`] while
/// the bytes are checked: each field as scanned (`None` when absent), and each descriptor's
/// verdict under the raw descriptor rules ([`RawSeed`]).
#[derive(Default)]
struct Top<'a> {
    schema_version: Option<Scan<'a>>,
    media_type: Option<Scan<'a>>,
    artifact_type: Option<Scan<'a>>,
    annotations: Option<Scan<'a>>,
    /// `config`'s verdict (a `null` config is not an object).
    config: Option<Verdict>,
    /// `layers`: present, and its first refused descriptor when it is an array.
    layers: Option<FirstRefused>,
    /// `manifests`: the same.
    manifests: Option<FirstRefused>,
    /// `subject`'s verdict, when present and not `null`.
    subject: Option<Verdict>,
}

/// A descriptor's verdict under the raw rules.
type Verdict = Result<(), InvalidDescriptorKind>;

/// The first descriptor of a list refused by the raw rules: its index and why.
type FirstRefused = Option<(usize, InvalidDescriptorKind)>;

impl Top<'_> {
    /// The document rules, in their order (see the module documentation).
    fn check(self, declared: &str, is_index: bool) -> Result<(), InvalidDocumentKind> {
        use InvalidDocumentKind as K;
        match &self.schema_version {
            Some(Scan::Number(v)) if v.as_u64() == Some(2) => {}
            Some(_) => return Err(K::SchemaVersion),
            None => return Err(K::SchemaVersionMissing),
        }
        match &self.media_type {
            None => {}
            Some(Scan::Str(own)) if media_type::essence(own) == media_type::essence(declared) => {}
            Some(Scan::Str(own)) => {
                return Err(K::MediaTypeMismatch {
                    declared: declared.to_owned(),
                    found: own.to_string(),
                });
            }
            Some(_) => {
                return Err(K::WrongType {
                    field: "mediaType",
                    expected: "a string",
                });
            }
        }
        for (field, present, forbidden_in_index) in [
            ("config", self.config.is_some(), true),
            ("layers", self.layers.is_some(), true),
            ("manifests", self.manifests.is_some(), false),
        ] {
            if present && forbidden_in_index == is_index {
                return Err(K::Ambiguous { field, is_index });
            }
        }
        match &self.artifact_type {
            None | Some(Scan::Null) => {}
            Some(Scan::Str(t)) => {
                media_type::validate_media_type(t).map_err(K::BadArtifactType)?;
            }
            Some(_) => {
                return Err(K::WrongType {
                    field: "artifactType",
                    expected: "a string",
                });
            }
        }
        match &self.annotations {
            None | Some(Scan::Null | Scan::Object { non_string: None }) => {}
            Some(Scan::Object {
                non_string: Some(key),
            }) => {
                return Err(K::AnnotationNotString {
                    key: key.to_string(),
                });
            }
            Some(_) => {
                return Err(K::WrongType {
                    field: "annotations",
                    expected: "an object",
                });
            }
        }
        let refused = |at: String, kind| K::Descriptor {
            at,
            error: InvalidDescriptor::new(kind),
        };
        if let Some(Err(kind)) = self.config {
            return Err(refused("config".into(), kind));
        }
        for (list, first) in [("layers", self.layers), ("manifests", self.manifests)] {
            if let Some(Some((i, kind))) = first {
                return Err(refused(format!("{list}[{i}]"), kind));
            }
        }
        if let Some(Err(kind)) = self.subject {
            return Err(refused("subject".into(), kind));
        }
        Ok(())
    }
}

/// Checks a document's bytes strictly ([`crate::json`]'s rules, building no tree) and
/// gathers its [`Top`]; `None` when the document is not an object.
struct TopSeed<'b>(Checker<'b>);

impl<'de> DeserializeSeed<'de> for TopSeed<'_> {
    type Value = Option<Top<'de>>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TopSeed<'_> {
    type Value = Option<Top<'de>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a manifest or index")
    }

    json::scan_others!(|_| None);

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut inner = self.0.nested()?;
        let mut keys = Keys::default();
        let mut top = Top::default();
        while let Some(key) = inner.next_key(&mut map, &mut keys)? {
            let slot = match &*key {
                "config" => {
                    top.config = Some(map.next_value_seed(RawSeed(inner.member()))?);
                    continue;
                }
                "subject" => {
                    top.subject = map.next_value_seed(SubjectSeed(inner.member()))?;
                    continue;
                }
                "layers" => {
                    top.layers = Some(map.next_value_seed(ListSeed(inner.member()))?);
                    continue;
                }
                "manifests" => {
                    top.manifests = Some(map.next_value_seed(ListSeed(inner.member()))?);
                    continue;
                }
                "schemaVersion" => &mut top.schema_version,
                "mediaType" => &mut top.media_type,
                "artifactType" => &mut top.artifact_type,
                "annotations" => &mut top.annotations,
                _ => {
                    map.next_value_seed(Scanner(inner.member()))?;
                    continue;
                }
            };
            *slot = Some(map.next_value_seed(Scanner(inner.member()))?);
        }
        Ok(Some(top))
    }
}

/// A `subject`: `None` when `null`, else the descriptor's verdict.
struct SubjectSeed<'b>(Checker<'b>);

impl<'de> DeserializeSeed<'de> for SubjectSeed<'_> {
    type Value = Option<Verdict>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for SubjectSeed<'_> {
    type Value = Option<Verdict>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a descriptor")
    }

    json::scan_others!(
        |scan: Scan<'_>| (!scan.is_null()).then_some(Err(InvalidDescriptorKind::NotAnObject))
    );

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        RawSeed(self.0).visit_map(map).map(Some)
    }
}

/// `layers` or `manifests`: when an array, its first descriptor refused by the raw rules.
struct ListSeed<'b>(Checker<'b>);

impl<'de> DeserializeSeed<'de> for ListSeed<'_> {
    type Value = FirstRefused;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ListSeed<'_> {
    type Value = FirstRefused;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of descriptors")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Scanner(self.0).visit_f64(v).map(|_| None)
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Scanner(self.0).visit_borrowed_str(v).map(|_| None)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Scanner(self.0).visit_str(v).map(|_| None)
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Scanner(self.0).visit_string(v).map(|_| None)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        Scanner(self.0).visit_map(map).map(|_| None)
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut inner = self.0.nested()?;
        let mut first = None;
        let mut i = 0;
        while let Some(verdict) = seq.next_element_seed(RawSeed(inner.member()))? {
            if first.is_none()
                && let Err(kind) = verdict
            {
                first = Some((i, kind));
            }
            i += 1;
        }
        Ok(first)
    }
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
