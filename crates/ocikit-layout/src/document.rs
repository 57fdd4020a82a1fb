//! Manifests and indexes as read from a layout: [`ocikit_digest::document`]'s one strict
//! parser and [`ocikit_digest::graph`]'s one walk, with this crate's errors.
//!
//! Every graph walk in this crate (fsck, garbage collection, copy, archives, unpack) reads
//! documents through [`Document::parse`] (see [`ocikit_digest::document`] for the rules),
//! and walks with the limits of [`ocikit_digest::graph::Limits`].

use bytes::Bytes;
use ocikit_digest::document::{InvalidDocument, InvalidDocumentKind};
use ocikit_digest::graph::{self, Graph, GraphError, Limits};
use ocikit_digest::oci_spec::image::Descriptor;
use ocikit_digest::{Digest, descriptor};

pub use ocikit_digest::document::{Document, is_document};

use crate::{Error, Layout, Result};

/// Parses `bytes`, which `descriptor` points at (the caller has checked digest and size),
/// by the descriptor's media type; a refusal is [`Error::InvalidDocument`] naming the
/// document.
pub fn parse(descriptor: &Descriptor, bytes: Bytes) -> Result<Document> {
    let digest = descriptor::digest_of(descriptor).map_err(|e| Error::InvalidDocument {
        digest: Digest::sha256(&bytes),
        reason: "invalid descriptor".into(),
        source: Some(Box::new(e.into())),
    })?;
    Document::parse(descriptor, bytes).map_err(|e| refused(digest, &e))
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
