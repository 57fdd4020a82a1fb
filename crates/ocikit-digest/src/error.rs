//! The crate's error type.

use crate::{Algorithm, Digest};

/// Everything that can go wrong in `ocikit-digest`.
///
/// Parse failures keep their precise, comparable kinds in the wrapped module errors
/// ([`crate::digest::ParseError`], [`crate::reference::ParseError`],
/// [`crate::descriptor::InvalidDescriptor`], [`crate::media_type::InvalidMediaType`],
/// [`crate::platform::InvalidPlatform`], [`crate::json::JsonError`],
/// [`crate::document::InvalidDocument`], [`crate::graph::GraphError`]); verification
/// failures carry the digests and sizes involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A digest string did not follow the OCI digest grammar.
    #[error("invalid digest")]
    Digest(#[from] crate::digest::ParseError),
    /// An image reference, repository name or tag did not follow the distribution grammar.
    #[error("invalid image reference")]
    Reference(#[from] crate::reference::ParseError),
    /// A descriptor broke a rule of the image spec.
    #[error("invalid descriptor")]
    Descriptor(#[from] crate::descriptor::InvalidDescriptor),
    /// A media type broke the RFC 6838 grammar.
    #[error("invalid media type")]
    MediaType(#[from] crate::media_type::InvalidMediaType),
    /// A platform string (`os/arch[/variant]`) was malformed.
    #[error("invalid platform")]
    Platform(#[from] crate::platform::InvalidPlatform),
    /// A manifest or index broke a rule of [`crate::document`].
    #[error("invalid manifest or index")]
    Document(#[source] Box<crate::document::InvalidDocument>),
    /// A graph walk refused a graph ([`crate::graph`]).
    #[error("image graph refused")]
    Graph(#[source] Box<crate::graph::GraphError>),
    /// A JSON document was malformed or broke the I-JSON rules.
    #[error("invalid JSON document")]
    Json(#[from] crate::json::JsonError),
    /// Content hashed to another digest than the one expected.
    #[error("digest mismatch: expected {expected}, found {actual}")]
    DigestMismatch {
        /// The digest the content was declared to have.
        expected: Digest,
        /// The digest of the bytes actually seen.
        actual: Digest,
    },
    /// Content ended before, or ran past, the declared size.
    #[error("size mismatch: expected {expected} bytes, found {actual}")]
    SizeMismatch {
        /// The declared size.
        expected: u64,
        /// The number of bytes actually seen (for content that ran past the declared size,
        /// the count at the point it was noticed, which is more than `expected`).
        actual: u64,
    },
    /// The digest uses an algorithm ocikit cannot compute, so content cannot be verified.
    #[error("digest algorithm `{algorithm}` cannot be verified by ocikit")]
    UnsupportedAlgorithm {
        /// The algorithm in question.
        algorithm: Algorithm,
    },
}

/// `Result` with this crate's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<crate::document::InvalidDocument> for Error {
    fn from(err: crate::document::InvalidDocument) -> Self {
        Error::Document(Box::new(err))
    }
}

impl From<crate::graph::GraphError> for Error {
    fn from(err: crate::graph::GraphError) -> Self {
        Error::Graph(Box::new(err))
    }
}

impl From<Error> for std::io::Error {
    /// Wraps the error as [`std::io::ErrorKind::InvalidData`], keeping it as the source so
    /// callers can downcast back to [`Error`].
    fn from(err: Error) -> Self {
        std::io::Error::new(std::io::ErrorKind::InvalidData, err)
    }
}
