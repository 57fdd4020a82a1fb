//! The client's error type, and the operations its errors name.

use std::path::PathBuf;

use ocikit_digest::Digest;

/// Everything that can go wrong talking to a registry, or moving images between it and a
/// layout. Each variant names the registry (and, where there is one, the repository and the
/// [`Operation`] that failed).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The client cannot be built as configured (TLS setup, an invalid registry name).
    #[error("cannot set up a client for registry {registry}: {reason}")]
    ClientSetup {
        /// The registry (`host[:port]`).
        registry: String,
        /// What is wrong.
        reason: String,
        /// The cause, if any.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// Plain HTTP was asked for a registry that is not on a loopback address, without
    /// allowing insecure registries explicitly.
    #[error(
        "refusing plain http to registry {registry}, which is not a loopback address (insecure registries must be allowed explicitly)"
    )]
    InsecureRegistry {
        /// The registry.
        registry: String,
    },
    /// The registry answered the TLS handshake in plain HTTP: it does not speak HTTPS, and
    /// insecure registries were not allowed ([`crate::ClientBuilder::allow_insecure`]).
    #[error(
        "registry {registry} speaks plain http, not https, and insecure registries are not allowed"
    )]
    NotHttps {
        /// The registry.
        registry: String,
        /// The TLS failure.
        #[source]
        source: reqwest::Error,
    },
    /// The registry's TLS certificate does not verify against the trusted roots (the
    /// system's, plus [`crate::ClientBuilder::ca_file`] and
    /// [`crate::ClientBuilder::cert_dir`]).
    #[error("the tls certificate of registry {registry} does not verify")]
    Certificate {
        /// The registry.
        registry: String,
        /// The TLS failure.
        #[source]
        source: reqwest::Error,
    },
    /// The registry's TLS certificate is a CA certificate (basicConstraints CA:TRUE) used
    /// as the server's own, as `openssl req -x509` makes one by default, and the client was
    /// not given that exact certificate to trust. Trusting it (with
    /// [`crate::ClientBuilder::ca_file`] or a certificate directory) makes the client
    /// accept it, as Go's TLS stack (skopeo's) does.
    #[error(
        "the tls certificate of registry {registry} is a CA certificate (CA:TRUE) used as a \
         server certificate, and not one this client was given to trust"
    )]
    CaAsServerCertificate {
        /// The registry.
        registry: String,
        /// The TLS failure.
        #[source]
        source: reqwest::Error,
    },
    /// A repository name or reference does not follow the distribution spec's grammar.
    #[error("`{name}` is not a valid repository name or reference for registry {registry}")]
    InvalidName {
        /// The registry.
        registry: String,
        /// The offending text.
        name: String,
        /// The grammar error.
        #[source]
        source: ocikit_digest::reference::ParseError,
    },
    /// A request could not be sent, or its response not read (connection refused, reset,
    /// timed out), after every retry.
    #[error("request to registry {registry} failed: {operation} in repository {repository}")]
    Request {
        /// The registry.
        registry: String,
        /// The repository.
        repository: String,
        /// What the client was doing.
        operation: Box<Operation>,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// The registry does not have what was asked for (404).
    #[error("registry {registry} has no {} in repository {repository}", operation.missing())]
    NotFound {
        /// The registry.
        registry: String,
        /// The repository.
        repository: String,
        /// The request that found nothing (its [`Operation::missing`] names what was
        /// missing).
        operation: Box<Operation>,
    },
    /// The registry wants credentials the client does not have, or refused the ones it sent
    /// (401 or 403 after authenticating).
    #[error(
        "registry {registry} refused access{} ({status}) for {operation}",
        to_repository(repository)
    )]
    Unauthorized {
        /// The registry.
        registry: String,
        /// The repository.
        repository: String,
        /// What the client was doing.
        operation: Box<Operation>,
        /// 401 or 403.
        status: u16,
    },
    /// The registry answered with a status the operation cannot continue from.
    #[error(
        "registry {registry} answered {status} to {operation} in repository {repository}: {detail}"
    )]
    Status {
        /// The registry.
        registry: String,
        /// The repository.
        repository: String,
        /// What the client was doing.
        operation: Box<Operation>,
        /// The HTTP status.
        status: u16,
        /// The spec's error codes and messages from the body, or a part of the body.
        detail: String,
    },
    /// The registry does not do what was asked (405 Method Not Allowed, or 400 with the
    /// spec's `UNSUPPORTED` code, or `DIGEST_INVALID` to a tag's `DELETE`): a registry with
    /// deletes disabled, or one that deletes manifests by digest only.
    #[error(
        "registry {registry} does not support {operation} in repository {repository} ({status}): {detail}"
    )]
    Unsupported {
        /// The registry.
        registry: String,
        /// The repository.
        repository: String,
        /// What the client asked.
        operation: Box<Operation>,
        /// The HTTP status (405 or 400).
        status: u16,
        /// The spec's error codes and messages from the body, or a part of the body.
        detail: String,
    },
    /// Content the registry sent does not hash to the digest asked for (or to the
    /// `Docker-Content-Digest` it claimed); nothing of it was stored.
    #[error(
        "registry {registry} sent content for {expected} in repository {repository} that hashes to {actual}"
    )]
    ContentMismatch {
        /// The registry.
        registry: String,
        /// The repository.
        repository: String,
        /// The digest asked for (or claimed).
        expected: Box<ocikit_digest::Digest>,
        /// The digest of what arrived.
        actual: Box<ocikit_digest::Digest>,
    },
    /// The registry sent more or fewer bytes than a descriptor's size; nothing was stored.
    #[error(
        "registry {registry} sent {actual} bytes for {digest} in repository {repository}, not {expected}"
    )]
    ContentSize {
        /// The registry.
        registry: String,
        /// The repository.
        repository: String,
        /// The content.
        digest: ocikit_digest::Digest,
        /// The size expected.
        expected: u64,
        /// The size received (so far, when it was too large).
        actual: u64,
    },
    /// A response breaks the protocol (no `Location` on an upload, a manifest that is not
    /// JSON, a token endpoint answering without a token).
    #[error(
        "registry {registry} sent an invalid response to {operation} in repository {repository}: {reason}"
    )]
    InvalidResponse {
        /// The registry.
        registry: String,
        /// The repository.
        repository: String,
        /// What the client was doing.
        operation: Box<Operation>,
        /// What is wrong.
        reason: String,
    },
    /// No image in an index matches the platform asked for.
    #[error(
        "no image for platform {wanted} in {reference} of repository {repository} on registry {registry} (available: {})",
        available.join(", ")
    )]
    PlatformNotFound {
        /// The registry.
        registry: String,
        /// The repository.
        repository: String,
        /// The tag or digest resolved.
        reference: String,
        /// The platform asked for.
        wanted: String,
        /// The platforms the index lists.
        available: Vec<String>,
    },
    /// Docker's `config.json` cannot be read, parsed or written.
    #[error("docker config `{path}`: {reason}")]
    ConfigFile {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        reason: String,
        /// The I/O cause, if any.
        #[source]
        source: Option<std::io::Error>,
    },
    /// No credentials file was given and none can be found: neither `DOCKER_CONFIG` nor
    /// `HOME` is set ([`crate::auth_file_path`]).
    #[error("cannot find docker's config.json: set DOCKER_CONFIG or HOME, or name the file")]
    NoAuthFile,
    /// A registry to log in to or out of was not named (`docker://` or an empty host).
    #[error("no registry named: give HOST[:PORT]")]
    NoRegistry,
    /// A registry name that is not `host[:port]` ([`crate::registry_host`]).
    #[error("`{registry}` is not a registry host[:port]")]
    InvalidRegistry {
        /// The name given.
        registry: String,
        /// The grammar error.
        #[source]
        source: ocikit_digest::reference::ParseError,
    },
    /// A user name to log in as that is empty or holds a `:` (which basic authentication
    /// cannot carry).
    #[error("the user name `{username}` is empty or holds a `:`")]
    InvalidUsername {
        /// The name given.
        username: String,
    },
    /// Reading or writing the local layout failed during a pull or push.
    #[error(
        "layout operation failed while transferring {operation} of repository {repository} on registry {registry}"
    )]
    Layout {
        /// The registry.
        registry: String,
        /// The repository.
        repository: String,
        /// What the client was doing.
        operation: Box<Operation>,
        /// The cause.
        #[source]
        source: Box<ocikit_layout::Error>,
    },
    /// A copy's destination names a digest that is not the digest of the image copied
    /// (after platform selection); nothing was copied.
    #[error(
        "the destination names {wanted} in repository {repository} on registry {registry}, but the image copied is {actual}"
    )]
    NotTheSource {
        /// The registry.
        registry: String,
        /// The destination repository.
        repository: String,
        /// The digest the destination names.
        wanted: Box<ocikit_digest::Digest>,
        /// The digest of the image the source resolved to.
        actual: Box<ocikit_digest::Digest>,
    },
}

/// `Result` with this crate's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What the client was doing when an error happened: a request to the registry, or a step
/// of a transfer. Its `Display` is the short text errors show (`GET manifest v1`, `upload
/// blob sha256:...`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Operation {
    /// `GET /v2/`: the base endpoint, which tests the connection and the credentials.
    Ping,
    /// A bearer token fetched from the registry's token realm.
    Token,
    /// Listing a repository's tags.
    ListTags,
    /// Listing the registry's repositories (`GET /v2/_catalog`).
    Catalog,
    /// Deleting a manifest (by digest) or a tag.
    DeleteManifest {
        /// The tag or digest.
        reference: String,
    },
    /// Listing the referrers of a manifest through the referrers API.
    ListReferrers {
        /// The manifest referred to.
        subject: Digest,
    },
    /// `HEAD` of a blob: is it in the repository?
    CheckBlob {
        /// The blob.
        digest: Digest,
    },
    /// Fetching a manifest or index by tag or digest.
    PullManifest {
        /// The tag or digest.
        reference: String,
    },
    /// Fetching a blob.
    PullBlob {
        /// The blob.
        digest: Digest,
    },
    /// Pushing (or mounting) a blob: the upload's start, its single PUT or its closing PUT.
    PushBlob {
        /// The blob.
        digest: Digest,
    },
    /// One chunk of a chunked blob push.
    PushChunk {
        /// The blob.
        digest: Digest,
        /// The chunk's first byte.
        first: u64,
        /// The chunk's last byte (inclusive, as `Content-Range` says it).
        last: u64,
    },
    /// Asking an upload session how much of a blob it holds, to resume a chunked push.
    UploadStatus {
        /// The blob.
        digest: Digest,
    },
    /// Pushing a manifest or index under a tag or digest.
    PushManifest {
        /// The tag or digest.
        reference: String,
    },
    /// Reading (parsing, checking) a manifest or index already fetched or read.
    ReadManifest {
        /// The document's digest.
        digest: Digest,
    },
    /// Reading a descriptor the registry sent.
    ReadDescriptor,
    /// Reading a descriptor of the layout a push reads from.
    ReadLayoutDescriptor,
    /// Setting a tag in the destination layout.
    Tag {
        /// The tag.
        tag: String,
    },
    /// Making scratch space for a copy within one registry.
    ScratchSpace {
        /// The directory the scratch space was to be made in.
        parent: PathBuf,
    },
    /// Making the scratch layout of a copy within one registry.
    ScratchLayout {
        /// The scratch directory.
        dir: PathBuf,
    },
}

impl Operation {
    /// What a 404 to this operation says is missing: the operation without its HTTP method
    /// (`manifest v1`, not `GET manifest v1`).
    pub fn missing(&self) -> String {
        match self {
            Operation::Ping => "/v2/".into(),
            Operation::ListTags => "tags".into(),
            Operation::Catalog => "catalog".into(),
            Operation::DeleteManifest { reference } => format!("manifest {reference}"),
            Operation::ListReferrers { subject } => format!("referrers of {subject}"),
            Operation::CheckBlob { digest } | Operation::PullBlob { digest } => {
                format!("blob {digest}")
            }
            Operation::PullManifest { reference } => format!("manifest {reference}"),
            other => other.to_string(),
        }
    }
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Operation::Ping => f.write_str("GET /v2/"),
            Operation::Token => f.write_str("token request"),
            Operation::ListTags => f.write_str("GET tags"),
            Operation::Catalog => f.write_str("GET catalog"),
            Operation::DeleteManifest { reference } => write!(f, "DELETE manifest {reference}"),
            Operation::ListReferrers { subject } => write!(f, "GET referrers of {subject}"),
            Operation::CheckBlob { digest } => write!(f, "HEAD blob {digest}"),
            Operation::PullManifest { reference } => write!(f, "GET manifest {reference}"),
            Operation::PullBlob { digest } => write!(f, "GET blob {digest}"),
            Operation::PushBlob { digest } => write!(f, "upload blob {digest}"),
            Operation::PushChunk {
                digest,
                first,
                last,
            } => write!(f, "upload blob {digest} (bytes {first}-{last})"),
            Operation::UploadStatus { digest } => write!(f, "upload blob {digest} (status)"),
            Operation::PushManifest { reference } => write!(f, "PUT manifest {reference}"),
            Operation::ReadManifest { digest } => write!(f, "manifest {digest}"),
            Operation::ReadDescriptor => f.write_str("read a descriptor"),
            Operation::ReadLayoutDescriptor => f.write_str("read a descriptor of the layout"),
            Operation::Tag { tag } => write!(f, "tag {tag}"),
            Operation::ScratchSpace { parent } => {
                write!(f, "scratch space in `{}`", parent.display())
            }
            Operation::ScratchLayout { dir } => {
                write!(f, "the scratch layout in `{}`", dir.display())
            }
        }
    }
}

/// ` to repository NAME`, or nothing for a request outside any repository (`GET /v2/`).
fn to_repository(repository: &str) -> String {
    if repository.is_empty() {
        String::new()
    } else {
        format!(" to repository {repository}")
    }
}
