//! The crate's error type, the distribution spec's error codes, and the HTTP error responses
//! built from them.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Everything that can go wrong running a registry (as opposed to a client's request being
/// refused, which is an HTTP response, not an error).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store failed.
    #[error("store operation failed")]
    Store(#[from] ocikit_store::Error),
    /// A store does not answer (an S3 bucket that does not exist, credentials it refuses, a
    /// directory that cannot be read): found by [`crate::Registry::check_stores`].
    #[error("the registry's {which} store does not answer")]
    StoreUnavailable {
        /// `content` or `upload`.
        which: &'static str,
        /// The store's error.
        #[source]
        source: ocikit_store::Error,
    },
    /// A metadata document the registry wrote does not parse any more.
    #[error("registry metadata document `{key}` is corrupt")]
    Metadata {
        /// The document's key.
        key: String,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// An upload session lists a chunk that the upload store no longer holds.
    #[error("upload session `{session}` lost its chunk {chunk}")]
    LostChunk {
        /// The session id.
        session: String,
        /// The scratch digest of the missing chunk.
        chunk: ocikit_digest::Digest,
    },
    /// The content store and the upload store are the same object: chunks would be mixed
    /// with content.
    #[error("the upload store must be separate from the content store")]
    SharedUploadStore,
    /// Binding the listening socket failed.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Garbage collection options that cannot be honoured.
    #[error("invalid garbage collection options")]
    GcOptions(#[from] crate::GcOptionsError),
    /// The garbage collection lease was not taken or not kept ([`crate::lease`]).
    #[error("garbage collection lease")]
    GcLease(#[from] crate::GcLeaseError),
    /// A manifest the registry accepted no longer parses (by the one strict parser,
    /// [`ocikit_digest::document`]), or is recorded under a media type that is not a
    /// manifest's or an index's, so what it references is unknown.
    #[error("manifest {digest} is corrupt")]
    CorruptManifest {
        /// The manifest's digest.
        digest: ocikit_digest::Digest,
        /// The rule it broke (none for a media type that is not a manifest's).
        #[source]
        source: Option<Box<ocikit_digest::document::InvalidDocument>>,
    },
    /// The content store holds references the registry does not know about (an OCI image
    /// layout's `index.json`), so sweeping its blobs could delete that content.
    #[error("the content store also holds `{key}`; refusing to sweep its blobs")]
    ForeignReferences {
        /// The document holding the foreign references.
        key: String,
    },
    /// A blob vanished (a garbage collection deleted it) between being published and being
    /// linked; the request fails and the client retries.
    #[error("blob {digest} was collected while it was being published")]
    BlobCollected {
        /// The blob's digest.
        digest: ocikit_digest::Digest,
    },
    /// The HTTP server failed.
    #[error("http server failed")]
    Serve(#[source] std::io::Error),
    /// A line of an `htpasswd` file is not `name:bcrypt-hash`.
    #[error("htpasswd `{origin}` line {line}: {reason}")]
    Htpasswd {
        /// The file (or other origin) the text came from.
        origin: String,
        /// The 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A configuration file (htpasswd, certificate, key) cannot be read.
    #[error("cannot read `{path}`")]
    ReadFile {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A PEM certificate or key file does not hold what it should.
    #[error("`{path}` is not a usable PEM {what}")]
    Pem {
        /// The file.
        path: std::path::PathBuf,
        /// "certificate chain" or "private key".
        what: &'static str,
        /// The cause.
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    /// The certificate and key do not make a TLS configuration (mismatched, unsupported).
    #[error("the TLS certificate and key are not usable")]
    Tls(#[source] rustls::Error),
    /// A token authentication key file does not hold usable public keys
    /// ([`crate::TokenAuth::new`]).
    #[error("token key `{origin}`: {reason}")]
    TokenKey {
        /// The file (or other origin) the keys came from.
        origin: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An access policy file cannot be honoured ([`crate::AccessPolicy::from_json`]).
    #[error("access policy `{origin}`: {reason}")]
    AccessPolicy {
        /// The file (or other origin) the policy came from.
        origin: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The `htpasswd` files given define no user at all, so nobody could log in
    /// ([`crate::Users::from_htpasswd_files`]).
    #[error("the htpasswd files define no users: nobody could log in")]
    NoUsers,
    /// A registry directory to collect garbage in does not exist (or is not a directory);
    /// opening it would have created an empty registry
    /// ([`crate::Storage::open_existing`]).
    #[error("{} is not a registry directory", path.display())]
    NotARegistryDirectory {
        /// The path given.
        path: std::path::PathBuf,
    },
    /// An S3 bucket name that cannot name a bucket: empty, or holding a `/`, whitespace or
    /// a control character ([`crate::S3Location`]).
    #[error("`{bucket}` is not an S3 bucket name")]
    InvalidBucket {
        /// The name given.
        bucket: String,
    },
    /// A pull-through cache's upstream has no such manifest or blob
    /// ([`crate::proxy::Upstream`]).
    #[error("upstream {upstream} has no {what}")]
    UpstreamNotFound {
        /// The upstream registry.
        upstream: String,
        /// What was asked for (`manifest REPO:TAG`, `blob DIGEST in REPO`).
        what: String,
    },
    /// A pull-through cache's upstream cannot be reached or refused the request (down,
    /// unauthorized, an error status), so nothing could be fetched.
    #[error("upstream {upstream} is unavailable")]
    UpstreamUnavailable {
        /// The upstream registry.
        upstream: String,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A pull-through cache's upstream served content that is not what was asked for (bytes
    /// that do not hash to the digest, a size other than declared, a document that is not a
    /// manifest); none of it is cached.
    #[error("upstream {upstream} served bad content: {reason}")]
    UpstreamContent {
        /// The upstream registry.
        upstream: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The S3 stores of a registry in a bucket cannot be set up (a bad endpoint, half of a
    /// pair of credentials).
    #[error("cannot use S3 bucket {bucket}")]
    S3Setup {
        /// The bucket.
        bucket: String,
        /// The store's error.
        #[source]
        source: ocikit_store::Error,
    },
}

/// `Result` with this crate's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The error codes of the distribution spec (`DS §Error Codes`); the only codes this
/// registry ever sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// Blob unknown to registry.
    BlobUnknown,
    /// Blob upload invalid.
    BlobUploadInvalid,
    /// Blob upload unknown to registry.
    BlobUploadUnknown,
    /// Provided digest did not match uploaded content, or is not a valid digest.
    DigestInvalid,
    /// Manifest references a manifest or blob unknown to registry.
    ManifestBlobUnknown,
    /// Manifest invalid.
    ManifestInvalid,
    /// Manifest unknown to registry.
    ManifestUnknown,
    /// Invalid repository name.
    NameInvalid,
    /// Repository name not known to registry.
    NameUnknown,
    /// Provided length did not match content length.
    SizeInvalid,
    /// Authentication required.
    Unauthorized,
    /// Requested access to the resource is denied.
    Denied,
    /// The operation is unsupported.
    Unsupported,
    /// Too many requests.
    TooManyRequests,
    /// The service is unavailable (Distribution's `UNAVAILABLE`): a pull-through cache whose
    /// upstream cannot be reached, for content it has not cached.
    Unavailable,
}

impl ErrorCode {
    /// The code as sent in `errors[].code`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BlobUnknown => "BLOB_UNKNOWN",
            ErrorCode::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            ErrorCode::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            ErrorCode::DigestInvalid => "DIGEST_INVALID",
            ErrorCode::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            ErrorCode::ManifestInvalid => "MANIFEST_INVALID",
            ErrorCode::ManifestUnknown => "MANIFEST_UNKNOWN",
            ErrorCode::NameInvalid => "NAME_INVALID",
            ErrorCode::NameUnknown => "NAME_UNKNOWN",
            ErrorCode::SizeInvalid => "SIZE_INVALID",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::Denied => "DENIED",
            ErrorCode::Unsupported => "UNSUPPORTED",
            ErrorCode::TooManyRequests => "TOOMANYREQUESTS",
            ErrorCode::Unavailable => "UNAVAILABLE",
        }
    }

    /// Parses a code as sent in `errors[].code`.
    pub fn parse(code: &str) -> Option<ErrorCode> {
        const ALL: [ErrorCode; 15] = [
            ErrorCode::BlobUnknown,
            ErrorCode::BlobUploadInvalid,
            ErrorCode::BlobUploadUnknown,
            ErrorCode::DigestInvalid,
            ErrorCode::ManifestBlobUnknown,
            ErrorCode::ManifestInvalid,
            ErrorCode::ManifestUnknown,
            ErrorCode::NameInvalid,
            ErrorCode::NameUnknown,
            ErrorCode::SizeInvalid,
            ErrorCode::Unauthorized,
            ErrorCode::Denied,
            ErrorCode::Unsupported,
            ErrorCode::TooManyRequests,
            ErrorCode::Unavailable,
        ];
        ALL.into_iter().find(|c| c.as_str() == code)
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused request: status, code, message and extra headers, sent as the spec's envelope
/// `{"errors":[{"code":..,"message":..,"detail":..}]}`.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: ErrorCode,
    message: String,
    detail: Option<serde_json::Value>,
    headers: HeaderMap,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            detail: None,
            headers: HeaderMap::new(),
        }
    }

    pub(crate) fn detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = Some(detail);
        self
    }

    pub(crate) fn header(mut self, name: HeaderName, value: &str) -> Self {
        if let Ok(value) = HeaderValue::from_str(value) {
            self.headers.insert(name, value);
        }
        self
    }
}

/// Why a handler did not succeed: the client's fault (an [`ApiError`]) or ours (an
/// [`Error`], answered with a bare 500 that reveals nothing; the error itself rides in the
/// response's extensions as an `Arc<Error>`).
#[derive(Debug)]
pub(crate) enum Failure {
    Api(Box<ApiError>),
    Internal(Error),
}

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Self {
        Failure::Api(Box::new(e))
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Internal(e)
    }
}

impl From<ocikit_store::Error> for Failure {
    fn from(e: ocikit_store::Error) -> Self {
        Failure::Internal(Error::Store(e))
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        match self {
            Failure::Api(e) => {
                let mut entry = serde_json::json!({
                    "code": e.code.as_str(),
                    "message": e.message,
                });
                if let (Some(detail), Some(map)) = (e.detail, entry.as_object_mut()) {
                    map.insert("detail".into(), detail);
                }
                let body = serde_json::json!({ "errors": [entry] }).to_string();
                let mut response = (e.status, body).into_response();
                response.headers_mut().extend(e.headers);
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                response
            }
            Failure::Internal(error) => {
                let mut response = (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Body::from("internal server error"),
                )
                    .into_response();
                // The cause stays out of the body; an embedding application (a logging
                // layer) finds it in the response's extensions.
                response.extensions_mut().insert(std::sync::Arc::new(error));
                response
            }
        }
    }
}

// Short constructors for the refusals the handlers send.

pub(crate) fn name_invalid(message: impl Into<String>) -> Failure {
    ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::NameInvalid, message).into()
}

pub(crate) fn name_unknown(name: &str) -> Failure {
    ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::NameUnknown,
        "repository name not known to registry",
    )
    .detail(serde_json::json!({ "name": name }))
    .into()
}

pub(crate) fn digest_invalid(message: impl Into<String>) -> Failure {
    ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::DigestInvalid, message).into()
}

pub(crate) fn blob_unknown(digest: &str) -> Failure {
    ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::BlobUnknown,
        "blob unknown to registry",
    )
    .detail(serde_json::json!({ "digest": digest }))
    .into()
}

pub(crate) fn manifest_unknown(reference: &str) -> Failure {
    ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::ManifestUnknown,
        "manifest unknown to registry",
    )
    .detail(serde_json::json!({ "reference": reference }))
    .into()
}

pub(crate) fn manifest_invalid(message: impl Into<String>) -> Failure {
    ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::ManifestInvalid, message).into()
}

pub(crate) fn upload_unknown() -> Failure {
    ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::BlobUploadUnknown,
        "blob upload unknown to registry",
    )
    .into()
}

pub(crate) fn upload_invalid(message: impl Into<String>) -> Failure {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        ErrorCode::BlobUploadInvalid,
        message,
    )
    .into()
}

pub(crate) fn size_invalid(message: impl Into<String>) -> Failure {
    ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::SizeInvalid, message).into()
}

pub(crate) fn too_large(message: impl Into<String>) -> Failure {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::SizeInvalid,
        message,
    )
    .into()
}
