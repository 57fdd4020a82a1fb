//! The crate's error type: categories a caller can act on.

use std::path::PathBuf;

use ocikit_digest::{Algorithm, Digest};

/// Everything that can go wrong in a store.
///
/// Variants are categories to act on, never free-form strings: a missing blob is
/// [`Error::NotFound`], a compare-and-swap that lost is [`Error::Conflict`], content that did
/// not hash to what was promised is [`Error::DigestMismatch`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No blob with this digest is stored.
    #[error("blob {digest} not found")]
    NotFound {
        /// The digest asked for.
        digest: Digest,
    },
    /// No document is stored under this key.
    #[error("document `{key}` not found")]
    DocumentNotFound {
        /// The key asked for.
        key: String,
    },
    /// Content hashed to another digest than the one promised: content being written (then
    /// nothing was published), or a stored blob being read (then it is corrupt). The message
    /// says neither, so that it is true for both.
    #[error("digest mismatch: expected {expected}, the content hashes to {actual}")]
    DigestMismatch {
        /// The digest the writer or reader was told to expect.
        expected: Digest,
        /// The digest of the content.
        actual: Digest,
    },
    /// Content had another size than the one promised, written (nothing was published) or
    /// read (the stored blob is corrupt).
    #[error("size mismatch: expected {expected} bytes, the content has {actual}")]
    SizeMismatch {
        /// The promised size.
        expected: u64,
        /// The number of bytes of the content (as far as it was read when it overran).
        actual: u64,
    },
    /// A compare-and-swap write lost: the document changed (or appeared, or vanished) since
    /// the version the caller based its edit on. Re-read, re-apply, retry.
    #[error("document `{key}` was changed by another writer")]
    Conflict {
        /// The document's key.
        key: String,
    },
    /// The digest uses an algorithm ocikit cannot compute, so content cannot be stored under
    /// it (it could never be verified).
    #[error("cannot store content under digest algorithm `{algorithm}`")]
    UnsupportedAlgorithm {
        /// The algorithm.
        algorithm: Algorithm,
    },
    /// Content named by a digest whose algorithm ocikit cannot compute (a well-formed but
    /// unregistered one, such as `foo:…`): it cannot be verified, so it is never read as if
    /// it were.
    #[error("cannot verify {digest}: ocikit does not compute its algorithm")]
    Unverifiable {
        /// The digest.
        digest: Digest,
    },
    /// A document key that is not a safe relative name.
    #[error("invalid document key `{key}`: {reason}")]
    InvalidKey {
        /// The key as given.
        key: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A byte range that starts past the end of the blob, or ends before it starts.
    #[error("byte range {start}..{end} is not satisfiable for a blob of {size} bytes")]
    InvalidRange {
        /// First byte asked for.
        start: u64,
        /// One past the last byte asked for.
        end: u64,
        /// The blob's size.
        size: u64,
    },
    /// Content is larger than the caller's limit.
    #[error("content of {size} bytes is larger than the limit of {limit} bytes")]
    TooLarge {
        /// The size of the content.
        size: u64,
        /// The caller's limit.
        limit: u64,
    },
    /// A filesystem operation failed.
    #[error("{operation} {}", path.display())]
    Io {
        /// What was being done (`"open"`, `"rename"`, `"fsync"`...).
        operation: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A path in the store is not what the store put there (a symlink, directory or device
    /// where a blob or document should be a regular file).
    #[error("{} is not a regular file", path.display())]
    NotARegularFile {
        /// The offending path.
        path: PathBuf,
    },
    /// An error from a remote backend.
    #[error("{backend} backend error")]
    Backend {
        /// The backend's name (`"s3"`...).
        backend: &'static str,
        /// The backend's own error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// A stream or writer failed while moving bytes.
    #[error("stream error")]
    Stream(#[source] std::io::Error),
}

impl Error {
    pub(crate) fn io(
        operation: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Error {
        Error::Io {
            operation,
            path: path.into(),
            source,
        }
    }

    /// Whether this error says the thing asked for is absent.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            Error::NotFound { .. } | Error::DocumentNotFound { .. }
        )
    }
}

impl From<Error> for std::io::Error {
    fn from(err: Error) -> std::io::Error {
        let kind = match &err {
            Error::NotFound { .. } | Error::DocumentNotFound { .. } => std::io::ErrorKind::NotFound,
            Error::Io { source, .. } => source.kind(),
            _ => std::io::ErrorKind::Other,
        };
        std::io::Error::new(kind, err)
    }
}

/// `Result` with this crate's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
