//! A client for OCI Distribution registries: pull images into a [`Layout`], push them from
//! one, copy them between repositories of one registry.
//!
//! This crate sits beside the registry server (`ocikit-registry`), on top of `ocikit-layout`
//! (images are pulled into layouts and pushed from them), `ocikit-store` and `ocikit-digest`;
//! it has its own [`Error`], whose variants name the registry, the repository and the
//! [`Operation`] that failed.
//!
//! A [`Client`] talks to one registry (`host[:port]`), over HTTPS (rustls on ring, the
//! system's roots plus any given: [`ClientBuilder::ca_file`], [`ClientBuilder::cert_dir`]) or,
//! for loopback addresses or when insecure registries are allowed explicitly, plain HTTP.
//! An insecure client ([`ClientBuilder::allow_insecure`]) behaves as skopeo's
//! `--tls-verify=false`: HTTPS accepting any certificate, and plain HTTP when the registry
//! does not speak TLS. A registry that answers in plain HTTP while HTTPS is expected fails
//! with [`Error::NotHttps`], one whose certificate does not verify with
//! [`Error::Certificate`]; neither is retried.
//!
//! - **Authentication.** Requests go out anonymously until the registry challenges: a
//!   `Basic` challenge makes the client send its [`Credentials`] from then on; a `Bearer`
//!   challenge (`realm`, `service`, `scope`) makes it fetch a token from the realm (with the
//!   credentials, if any), cache it per scope set until it expires, and reuse it for every
//!   request needing that scope.
//! - **Credentials stay home.** Redirects are followed by the client itself (GET and HEAD
//!   only, ten hops at most); `Authorization` is sent only to the registry's own origin
//!   (scheme, host, port), never to a host a redirect or upload `Location` points at.
//! - **Nothing is trusted.** Every manifest is hashed and compared with the digest asked for
//!   (or, for a tag, with `Docker-Content-Digest` when the registry sends one); every blob is
//!   streamed into the store through a verifying writer that publishes it only if digest
//!   and size match. Blobs never sit in memory; documents are capped at
//!   [`ocikit_layout::MAX_DOCUMENT_SIZE`].
//! - **Failures are retried** with exponential backoff (honouring `Retry-After`) on 429, 5xx
//!   and connection errors; a blob download that breaks off resumes with `Range`.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use ocikit_layout::Layout;
//! use ocikit_client::{Client, PullOptions};
//! use ocikit_store::FsStore;
//!
//! let client = Client::builder("127.0.0.1:5000").plain_http(true).build()?;
//! let layout = Layout::create(FsStore::open("images").await?).await?;
//! let report = client
//!     .pull("library/alpine", "3.20", &layout, "alpine", &PullOptions::new())
//!     .await?;
//! println!("{} blobs fetched, {} present already", report.transferred, report.skipped);
//! # Ok(())
//! # }
//! ```

mod auth;
mod copy;
pub mod docker_config;
mod error;
mod pull;
mod push;
pub mod referrers;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::TryStreamExt;
use ocikit_digest::oci_spec::image::Descriptor;
use ocikit_digest::{Digest, media_type};
use ocikit_layout::Layout;
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode, Url};

pub use auth::Credentials;
pub use copy::CopyWithinOptions;
pub use docker_config::DockerConfig;
pub use error::{Error, Operation, Result};
pub use pull::PullOptions;
pub use push::PushOptions;

use auth::{AuthState, Scheme, TokenResponse, parse_challenge, scope_key};

/// The `Accept` header for manifests: OCI and Docker manifests and indexes.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.v2+json, \
application/vnd.docker.distribution.manifest.list.v2+json";

/// Blobs at most this large are pushed in one PUT by default; larger ones in chunks.
pub const DEFAULT_MONOLITHIC_LIMIT: u64 = 32 << 20;
/// Default chunk size for chunked pushes.
pub const DEFAULT_CHUNK_SIZE: u64 = 16 << 20;
/// Blobs transferred at once by default.
pub const DEFAULT_CONCURRENCY: usize = 4;
/// Redirects followed at most.
const MAX_REDIRECTS: usize = 10;
/// Most bytes of an error body read (for its message).
const MAX_ERROR_BODY: usize = 64 << 10;

/// How a [`Client`] is set up; made by [`Client::builder`].
#[derive(Clone, Debug)]
pub struct ClientBuilder {
    registry: String,
    credentials: Option<Credentials>,
    plain_http: bool,
    allow_insecure: bool,
    accept_invalid_certs: bool,
    roots: Vec<rustls_pki_types::CertificateDer<'static>>,
    ca_files: Vec<PathBuf>,
    cert_dirs: Vec<PathBuf>,
    connect_timeout: Duration,
    read_timeout: Duration,
    retries: u32,
    backoff: Duration,
    max_backoff: Duration,
    monolithic_limit: u64,
    chunk_size: u64,
    user_agent: String,
}

impl ClientBuilder {
    /// Credentials to answer challenges with (anonymous without).
    pub fn credentials(mut self, credentials: Option<Credentials>) -> ClientBuilder {
        self.credentials = credentials;
        self
    }

    /// Speaks plain HTTP instead of HTTPS. Allowed for loopback registries (`localhost`,
    /// `127.0.0.0/8`, `[::1]`); any other needs [`ClientBuilder::allow_insecure`].
    pub fn plain_http(mut self, on: bool) -> ClientBuilder {
        self.plain_http = on;
        self
    }

    /// Allows plain HTTP to registries that are not on loopback addresses, and, with
    /// HTTPS, certificates that do not verify. Unless [`ClientBuilder::plain_http`] forces
    /// plain HTTP, the client tries HTTPS first (once, with `GET /v2/`) and speaks plain HTTP
    /// only if the registry does not answer over TLS but does over HTTP, as skopeo's
    /// `--tls-verify=false` does. Credentials and content then travel unprotected: only for
    /// test registries on trusted networks.
    pub fn allow_insecure(mut self, on: bool) -> ClientBuilder {
        self.allow_insecure = on;
        self.accept_invalid_certs = on;
        self
    }

    /// Trusts this certificate authority as well as the system's (DER).
    pub fn add_root_certificate(
        mut self,
        certificate: rustls_pki_types::CertificateDer<'static>,
    ) -> ClientBuilder {
        self.roots.push(certificate);
        self
    }

    /// Trusts the certificate authorities of a PEM file (one certificate or a bundle) as
    /// well as the system's. The file is read by [`ClientBuilder::build`].
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> ClientBuilder {
        self.ca_files.push(path.into());
        self
    }

    /// Uses a certificate directory as containers/image (skopeo, podman) reads
    /// `/etc/containers/certs.d/HOST/`: every `*.crt` file holds certificate authorities to
    /// trust as well as the system's, and a `NAME.cert` with its `NAME.key` beside it is a
    /// client certificate chain and private key, presented when the registry asks for one
    /// (mutual TLS). A `.cert` without its `.key`, a `.key` without its `.cert`, or more than
    /// one pair is an error. The directory is read by [`ClientBuilder::build`].
    pub fn cert_dir(mut self, path: impl Into<PathBuf>) -> ClientBuilder {
        self.cert_dirs.push(path.into());
        self
    }

    /// How long connecting may take (default 30 seconds).
    pub fn connect_timeout(mut self, timeout: Duration) -> ClientBuilder {
        self.connect_timeout = timeout;
        self
    }

    /// How long a response may stall between bytes (default 60 seconds).
    pub fn read_timeout(mut self, timeout: Duration) -> ClientBuilder {
        self.read_timeout = timeout;
        self
    }

    /// How many times a request is retried after a 429, a 5xx or a connection error
    /// (default 4), and the first delay, doubled each time up to `max` (default 200 ms and
    /// 10 s). A `Retry-After` header replaces the computed delay (capped at `max`).
    pub fn retries(mut self, retries: u32, first: Duration, max: Duration) -> ClientBuilder {
        self.retries = retries;
        self.backoff = first;
        self.max_backoff = max.max(first);
        self
    }

    /// Blobs up to `limit` bytes are pushed in one PUT; larger ones in PATCH chunks of
    /// `chunk` bytes (or the registry's `OCI-Chunk-Min-Length`, if larger).
    pub fn chunking(mut self, limit: u64, chunk: u64) -> ClientBuilder {
        self.monolithic_limit = limit;
        self.chunk_size = chunk.max(1);
        self
    }

    /// Builds the client.
    pub fn build(self) -> Result<Client> {
        let registry = self.registry.clone();
        let setup = |reason: &str, source: Option<Box<dyn std::error::Error + Send + Sync>>| {
            Error::ClientSetup {
                registry: registry.clone(),
                reason: reason.into(),
                source,
            }
        };
        ocikit_digest::reference::validate_registry(&self.registry).map_err(|e| {
            Error::InvalidName {
                registry: self.registry.clone(),
                name: self.registry.clone(),
                source: e,
            }
        })?;
        if self.plain_http && !self.allow_insecure && !is_loopback(&self.registry) {
            return Err(Error::InsecureRegistry {
                registry: self.registry,
            });
        }
        let scheme = if self.plain_http { "http" } else { "https" };
        let base = Url::parse(&format!("{scheme}://{}/", self.registry))
            .map_err(|e| setup("not a usable host[:port]", Some(Box::new(e))))?;
        let mut roots = self.roots.clone();
        let mut identity = None;
        for file in &self.ca_files {
            roots.extend(read_certificates(file).map_err(|(reason, source)| {
                setup(&format!("CA file `{}`: {reason}", file.display()), source)
            })?);
        }
        for dir in &self.cert_dirs {
            let (found, pair) = read_cert_dir(dir).map_err(|(reason, source)| {
                setup(
                    &format!("certificate directory `{}`: {reason}", dir.display()),
                    source,
                )
            })?;
            roots.extend(found);
            if let Some(pair) = pair {
                if identity.is_some() {
                    return Err(setup(
                        "more than one client certificate (.cert and .key pair) given",
                        None,
                    ));
                }
                identity = Some(pair);
            }
        }
        let roots_for_pinning = roots.clone();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| setup("TLS protocol versions", Some(Box::new(e))))?;
        let tls = if self.accept_invalid_certs {
            tls.dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
        } else {
            let verifier = if roots.is_empty() {
                rustls_platform_verifier::Verifier::new(provider)
            } else {
                rustls_platform_verifier::Verifier::new_with_extra_roots(roots, provider)
            }
            .map_err(|e| setup("certificate verifier", Some(Box::new(e))))?;
            tls.dangerous()
                .with_custom_certificate_verifier(Arc::new(TrustedExactly {
                    inner: verifier,
                    trusted: roots_for_pinning,
                }))
        };
        let tls = match identity {
            None => tls.with_no_client_auth(),
            Some((chain, key)) => tls
                .with_client_auth_cert(chain, key)
                .map_err(|e| setup("the client certificate and key", Some(Box::new(e))))?,
        };
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(self.connect_timeout)
            .read_timeout(self.read_timeout)
            .user_agent(self.user_agent.clone())
            .build()
            .map_err(|e| setup("HTTP client", Some(Box::new(e))))?;
        Ok(Client {
            inner: Arc::new(Inner {
                registry: self.registry.clone(),
                base,
                http,
                credentials: self.credentials.clone(),
                auth: Mutex::new(AuthState::default()),
                token_fetch: tokio::sync::Mutex::new(()),
                downloads: Mutex::new(std::collections::HashMap::new()),
                plain_fallback: AtomicBool::new(false),
                scheme_probe: tokio::sync::OnceCell::new(),
                settings: self,
            }),
        })
    }
}

/// The certificate verifier of a client: the platform verifier with the roots the caller
/// added, and one case more, as Go's TLS stack (skopeo's) has it. A server certificate that
/// is itself one of those added roots, byte for byte, is accepted although it is a CA
/// (basicConstraints CA:TRUE, as `openssl req -x509` makes a self-signed certificate by
/// default), once its host name matches. The verifier refuses such a certificate only for
/// being a CA, after it checked its validity period; the user trusted exactly that
/// certificate, so nothing else is taken on faith. A CA certificate that the user did not
/// add is refused as before ([`Error::CaAsServerCertificate`]).
#[derive(Debug)]
struct TrustedExactly {
    inner: rustls_platform_verifier::Verifier,
    trusted: Vec<rustls_pki_types::CertificateDer<'static>>,
}

impl rustls::client::danger::ServerCertVerifier for TrustedExactly {
    fn verify_server_cert(
        &self,
        end_entity: &rustls_pki_types::CertificateDer<'_>,
        intermediates: &[rustls_pki_types::CertificateDer<'_>],
        server_name: &rustls_pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls_pki_types::UnixTime,
    ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let refused = match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Ok(verified) => return Ok(verified),
            Err(e) => e,
        };
        if !is_ca_as_end_entity(&refused)
            || !self
                .trusted
                .iter()
                .any(|t| t.as_ref() == end_entity.as_ref())
        {
            return Err(refused);
        }
        let certificate = webpki::EndEntityCert::try_from(end_entity).map_err(|_| {
            rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)
        })?;
        certificate
            .verify_is_valid_for_subject_name(server_name)
            .map_err(|_| {
                rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName)
            })?;
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Whether the certificate verifier refused a server certificate for being a CA
/// (basicConstraints CA:TRUE), the one refusal [`TrustedExactly`] may overrule.
fn is_ca_as_end_entity(error: &rustls::Error) -> bool {
    matches!(
        error,
        rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other))
            if other.0.downcast_ref::<webpki::Error>() == Some(&webpki::Error::CaUsedAsEndEntity)
    )
}

/// A certificate verifier that accepts anything ([`ClientBuilder::allow_insecure`]), still
/// checking handshake signatures so the session is at least consistent.
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls_pki_types::CertificateDer<'_>,
        _intermediates: &[rustls_pki_types::CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Why a certificate file or directory cannot be used, and the cause.
type ReadFailure = (String, Option<Box<dyn std::error::Error + Send + Sync>>);

/// The certificates of a PEM file (at least one).
fn read_certificates(
    path: &Path,
) -> std::result::Result<Vec<rustls_pki_types::CertificateDer<'static>>, ReadFailure> {
    use rustls_pki_types::pem::PemObject as _;
    let bytes = std::fs::read(path).map_err(|e| ("cannot read it".to_string(), Some(e.into())))?;
    let certificates = rustls_pki_types::CertificateDer::pem_slice_iter(&bytes)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| ("not PEM certificates".to_string(), Some(e.into())))?;
    if certificates.is_empty() {
        return Err(("holds no PEM certificate".into(), None));
    }
    Ok(certificates)
}

/// A client certificate chain and its private key.
type Identity = (
    Vec<rustls_pki_types::CertificateDer<'static>>,
    rustls_pki_types::PrivateKeyDer<'static>,
);

/// The roots (`*.crt`) and the client certificate (`NAME.cert` + `NAME.key`) of a
/// containers-style certificate directory.
#[allow(clippy::type_complexity)]
fn read_cert_dir(
    dir: &Path,
) -> std::result::Result<
    (
        Vec<rustls_pki_types::CertificateDer<'static>>,
        Option<Identity>,
    ),
    ReadFailure,
> {
    use rustls_pki_types::pem::PemObject as _;
    let entries =
        std::fs::read_dir(dir).map_err(|e| ("cannot read it".to_string(), Some(e.into())))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| ("cannot read it".to_string(), Some(e.into())))?;
        names.push(entry.path());
    }
    names.sort();
    let with_extension = |ext: &str| -> Vec<PathBuf> {
        names
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == ext))
            .cloned()
            .collect()
    };
    let mut roots = Vec::new();
    for file in with_extension("crt") {
        roots.extend(
            read_certificates(&file)
                .map_err(|(reason, source)| (format!("`{}` {reason}", file.display()), source))?,
        );
    }
    let certs = with_extension("cert");
    let keys = with_extension("key");
    for key in &keys {
        if !certs.contains(&key.with_extension("cert")) {
            return Err((
                format!("`{}` has no matching .cert file", key.display()),
                None,
            ));
        }
    }
    let mut identity = None;
    for cert in &certs {
        let key = cert.with_extension("key");
        if !keys.contains(&key) {
            return Err((
                format!("`{}` has no matching .key file", cert.display()),
                None,
            ));
        }
        if identity.is_some() {
            return Err(("holds more than one client certificate".into(), None));
        }
        let chain = read_certificates(cert)
            .map_err(|(reason, source)| (format!("`{}` {reason}", cert.display()), source))?;
        let der = rustls_pki_types::PrivateKeyDer::from_pem_file(&key).map_err(|e| {
            (
                format!("`{}` is not a PEM private key", key.display()),
                Some(e.into()),
            )
        })?;
        identity = Some((chain, der));
    }
    Ok((roots, identity))
}

/// The TLS error under a request error, if the request failed in the TLS layer.
fn tls_failure(e: &reqwest::Error) -> Option<&rustls::Error> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(tls) = c.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        // An io::Error's `source` skips the error it wraps (which may be another
        // io::Error): go into it instead.
        cause = match c
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => c.source(),
        };
    }
    None
}

/// Whether a TLS failure means the server answered in plain text (an HTTP server).
fn answered_plain_text(e: &rustls::Error) -> bool {
    matches!(
        e,
        rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType)
    )
}

/// Whether `registry` (`host[:port]`) names a loopback address.
pub fn is_loopback(registry: &str) -> bool {
    let host = if let Some(rest) = registry.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        registry.rsplit_once(':').map_or(registry, |(h, _)| h)
    };
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// A client for one registry. Cheap to clone; clones share connections and tokens.
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    registry: String,
    base: Url,
    http: reqwest::Client,
    credentials: Option<Credentials>,
    auth: Mutex<AuthState>,
    /// Held while a token is fetched.
    token_fetch: tokio::sync::Mutex<()>,
    /// One lock per blob being downloaded, so that concurrent pulls through this client
    /// never fetch one blob twice at once (the second finds it stored).
    downloads: Mutex<std::collections::HashMap<Digest, std::sync::Weak<tokio::sync::Mutex<()>>>>,
    /// An insecure client found that the registry speaks plain HTTP, not HTTPS.
    plain_fallback: AtomicBool,
    /// Done once an insecure client knows which scheme the registry speaks.
    scheme_probe: tokio::sync::OnceCell<()>,
    settings: ClientBuilder,
}

/// What a pull or a push did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TransferReport {
    /// The descriptor of the image or index transferred (what the tag points at).
    pub root: Option<Descriptor>,
    /// Blobs (layers, configs) the image reaches.
    pub blobs: usize,
    /// Blobs transferred.
    pub transferred: usize,
    /// Blobs the destination had already.
    pub skipped: usize,
    /// Blobs mounted from another repository (pushes).
    pub mounted: usize,
    /// Manifests and indexes transferred.
    pub manifests: usize,
    /// Blob bytes transferred.
    pub bytes: u64,
    /// The bytes of every blob the image reaches, each once, however it got there
    /// (transferred, mounted or present already).
    pub total_bytes: u64,
}

/// A request body, re-made for every attempt.
#[derive(Clone)]
pub(crate) enum Body {
    Empty,
    Bytes(Bytes),
    /// A range of a blob of a layout's store.
    Blob {
        layout: Layout,
        digest: Digest,
        range: std::ops::Range<u64>,
    },
}

/// One logical request: what [`Client::send`] retries, authenticates and redirects.
pub(crate) struct Request {
    pub(crate) method: Method,
    pub(crate) url: Url,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Body,
    /// Token scopes (`repository:NAME:pull`).
    pub(crate) scopes: Vec<String>,
    /// For errors.
    pub(crate) repository: String,
    /// For errors.
    pub(crate) operation: Operation,
}

impl Request {
    pub(crate) fn new(method: Method, url: Url, repository: &str, operation: Operation) -> Request {
        Request {
            method,
            url,
            headers: HeaderMap::new(),
            body: Body::Empty,
            scopes: vec![format!("repository:{repository}:pull")],
            repository: repository.to_string(),
            operation,
        }
    }

    pub(crate) fn header(mut self, name: header::HeaderName, value: &str) -> Request {
        if let Ok(value) = HeaderValue::from_str(value) {
            self.headers.insert(name, value);
        }
        self
    }

    pub(crate) fn body(mut self, body: Body) -> Request {
        self.body = body;
        self
    }

    pub(crate) fn push_scope(mut self) -> Request {
        self.scopes = vec![format!("repository:{}:pull,push", self.repository)];
        self
    }
}

impl Client {
    /// A builder for a client of `registry` (`host[:port]`): HTTPS, no credentials, four
    /// retries, 30 s connect and 60 s read timeouts.
    pub fn builder(registry: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            registry: registry.into(),
            credentials: None,
            plain_http: false,
            allow_insecure: false,
            accept_invalid_certs: false,
            roots: Vec::new(),
            ca_files: Vec::new(),
            cert_dirs: Vec::new(),
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
            retries: 4,
            backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
            monolithic_limit: DEFAULT_MONOLITHIC_LIMIT,
            chunk_size: DEFAULT_CHUNK_SIZE,
            user_agent: concat!("ocikit/", env!("CARGO_PKG_VERSION")).to_string(),
        }
    }

    /// The registry this client talks to (`host[:port]`).
    pub fn registry(&self) -> &str {
        &self.inner.registry
    }

    pub(crate) fn settings(&self) -> &ClientBuilder {
        &self.inner.settings
    }

    /// `/v2/{repository}/{rest}` on the registry.
    pub(crate) fn url(&self, repository: &str, rest: &str) -> Result<Url> {
        self.inner
            .base
            .join(&format!("v2/{repository}/{rest}"))
            .map_err(|e| Error::ClientSetup {
                registry: self.inner.registry.clone(),
                reason: format!("cannot form a URL for repository {repository}"),
                source: Some(Box::new(e)),
            })
    }

    /// Resolves a `Location` header against the URL of the response it came in.
    pub(crate) fn location(&self, req: &Request, response: &reqwest::Response) -> Result<Url> {
        let invalid = |reason: &str| Error::InvalidResponse {
            registry: self.inner.registry.clone(),
            repository: req.repository.clone(),
            operation: Box::new(req.operation.clone()),
            reason: reason.into(),
        };
        let value = response
            .headers()
            .get(header::LOCATION)
            .ok_or_else(|| invalid("no Location header"))?
            .to_str()
            .map_err(|_| invalid("Location is not ASCII"))?;
        response
            .url()
            .join(value)
            .map_err(|_| invalid("Location is not a URL"))
    }

    pub(crate) fn validate_repository(&self, repository: &str) -> Result<()> {
        ocikit_digest::reference::validate_name(repository).map_err(|e| Error::InvalidName {
            registry: self.inner.registry.clone(),
            name: repository.to_string(),
            source: e,
        })
    }

    fn same_origin(&self, url: &Url) -> bool {
        let base = self.effective(&self.inner.base);
        url.scheme() == base.scheme()
            && url.host_str() == base.host_str()
            && url.port_or_known_default() == base.port_or_known_default()
    }

    /// `url` as it must be sent: an `https` URL of the registry becomes `http` once an
    /// insecure client found that the registry speaks plain HTTP.
    fn effective(&self, url: &Url) -> Url {
        let base = &self.inner.base;
        let mut url = url.clone();
        if self.inner.plain_fallback.load(Ordering::Relaxed)
            && url.scheme() == "https"
            && url.host_str() == base.host_str()
            && url.port_or_known_default() == base.port_or_known_default()
        {
            // https and http are both special schemes: the change cannot fail.
            let _ = url.set_scheme("http");
        }
        url
    }

    /// For an insecure client that may speak HTTPS, finds out once whether the registry
    /// does: `GET /v2/` over HTTPS (any certificate accepted), and if that fails but the same
    /// request over plain HTTP gets an answer, plain HTTP from then on.
    async fn probe_scheme(&self) {
        let settings = &self.inner.settings;
        if !settings.allow_insecure || settings.plain_http {
            return;
        }
        self.inner
            .scheme_probe
            .get_or_init(|| async {
                let Ok(https) = self.inner.base.join("v2/") else {
                    return;
                };
                if self.inner.http.get(https.clone()).send().await.is_ok() {
                    return;
                }
                let mut http = https;
                let _ = http.set_scheme("http");
                if self.inner.http.get(http).send().await.is_ok() {
                    self.inner.plain_fallback.store(true, Ordering::Relaxed);
                }
            })
            .await;
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let s = &self.inner.settings;
        s.backoff
            .saturating_mul(1u32 << attempt.min(16))
            .min(s.max_backoff)
    }

    /// Sends `req`: with the `Authorization` the registry asked for (registry origin only),
    /// following redirects for GET and HEAD, answering one authentication challenge, and
    /// retrying 429, 5xx and connection errors. Returns the final response, whatever its
    /// status.
    pub(crate) async fn send(&self, req: &Request) -> Result<reqwest::Response> {
        self.probe_scheme().await;
        let mut url = self.effective(&req.url);
        let mut attempt = 0u32;
        let mut hops = 0usize;
        let mut challenged = false;
        let follow = req.method == Method::GET || req.method == Method::HEAD;
        loop {
            let same_origin = self.same_origin(&url);
            let mut builder = self
                .inner
                .http
                .request(req.method.clone(), url.clone())
                .headers(req.headers.clone());
            let sent = if same_origin {
                self.authorization(req).await?
            } else {
                None
            };
            if let Some(value) = &sent {
                builder = builder.header(header::AUTHORIZATION, value);
            }
            builder = match &req.body {
                Body::Empty => builder,
                Body::Bytes(bytes) => builder.body(bytes.clone()),
                Body::Blob {
                    layout,
                    digest,
                    range,
                } => {
                    let blob = layout
                        .store()
                        .get(digest, Some(range.clone()))
                        .await
                        .map_err(|e| self.layout_error(req, e.into()))?
                        .ok_or_else(|| {
                            self.layout_error(
                                req,
                                ocikit_store::Error::NotFound {
                                    digest: digest.clone(),
                                }
                                .into(),
                            )
                        })?;
                    let stream = blob.into_stream().map_err(std::io::Error::from);
                    builder
                        .header(header::CONTENT_LENGTH, range.end - range.start)
                        .body(reqwest::Body::wrap_stream(stream))
                }
            };
            let response = match builder.send().await {
                Ok(response) => response,
                Err(e) if attempt < self.inner.settings.retries && retryable(&e) => {
                    tokio::time::sleep(self.backoff(attempt)).await;
                    attempt += 1;
                    continue;
                }
                Err(e) => return Err(self.request_error(req, e)),
            };
            let status = response.status();
            if follow
                && status.is_redirection()
                && response.headers().contains_key(header::LOCATION)
            {
                if hops >= MAX_REDIRECTS {
                    return Err(Error::InvalidResponse {
                        registry: self.inner.registry.clone(),
                        repository: req.repository.clone(),
                        operation: Box::new(req.operation.clone()),
                        reason: format!("more than {MAX_REDIRECTS} redirects"),
                    });
                }
                url = self.location(req, &response)?;
                if url.scheme() != "https" && url.scheme() != "http" {
                    return Err(Error::InvalidResponse {
                        registry: self.inner.registry.clone(),
                        repository: req.repository.clone(),
                        operation: Box::new(req.operation.clone()),
                        reason: format!("redirect to a {} URL", url.scheme()),
                    });
                }
                hops += 1;
                continue;
            }
            if status == StatusCode::UNAUTHORIZED && same_origin && !challenged {
                challenged = true;
                if self
                    .answer_challenge(req, &response, sent.as_deref())
                    .await?
                {
                    continue;
                }
            }
            if (status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error())
                && attempt < self.inner.settings.retries
            {
                let delay = retry_after(&response)
                    .unwrap_or_else(|| self.backoff(attempt))
                    .min(self.inner.settings.max_backoff);
                drop(response);
                tokio::time::sleep(delay).await;
                attempt += 1;
                continue;
            }
            return Ok(response);
        }
    }

    /// The `Authorization` value for `req`, fetching a token when the registry wants one.
    async fn authorization(&self, req: &Request) -> Result<Option<String>> {
        let key = scope_key(&req.scopes);
        let scheme = {
            let state = self.lock_auth();
            if let Some(token) = state.token(&key) {
                return Ok(Some(format!("Bearer {token}")));
            }
            state.scheme.clone()
        };
        match scheme {
            Scheme::Unknown => Ok(None),
            Scheme::Basic => Ok(self.inner.credentials.as_ref().map(Credentials::basic)),
            Scheme::Bearer { realm, service } => {
                let token = self
                    .bearer_token(req, &realm, service.as_deref(), None)
                    .await?;
                Ok(Some(format!("Bearer {token}")))
            }
        }
    }

    /// The cached token for `req`'s scopes unless it is `rejected`, else a fresh one. One
    /// fetch at a time, so that concurrent requests needing one scope share one token.
    async fn bearer_token(
        &self,
        req: &Request,
        realm: &str,
        service: Option<&str>,
        rejected: Option<&str>,
    ) -> Result<String> {
        let _one_fetch = self.inner.token_fetch.lock().await;
        if let Some(token) = self.lock_auth().token(&scope_key(&req.scopes))
            && Some(token.as_str()) != rejected
        {
            return Ok(token);
        }
        self.fetch_token(req, realm, service).await
    }

    /// The download lock of `digest` (created when nobody holds it).
    pub(crate) fn download_lock(&self, digest: &Digest) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self
            .inner
            .downloads
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(lock) = map.get(digest).and_then(std::sync::Weak::upgrade) {
            return lock;
        }
        map.retain(|_, weak| weak.strong_count() > 0);
        let lock = Arc::new(tokio::sync::Mutex::new(()));
        map.insert(digest.clone(), Arc::downgrade(&lock));
        lock
    }

    fn lock_auth(&self) -> std::sync::MutexGuard<'_, AuthState> {
        // The state is a cache: a panic elsewhere cannot leave it inconsistent.
        self.inner
            .auth
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Learns from a 401's challenge (`sent`: the `Authorization` the refused request
    /// carried); returns whether the request is worth sending again.
    async fn answer_challenge(
        &self,
        req: &Request,
        response: &reqwest::Response,
        sent: Option<&str>,
    ) -> Result<bool> {
        let Some(challenge) = response
            .headers()
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(parse_challenge)
            .find(|c| c.scheme == "bearer" || c.scheme == "basic")
        else {
            return Ok(false);
        };
        if challenge.scheme == "basic" {
            self.lock_auth().scheme = Scheme::Basic;
            let basic = self.inner.credentials.as_ref().map(Credentials::basic);
            return Ok(basic.is_some() && basic.as_deref() != sent);
        }
        let Some(realm) = challenge.params.get("realm").cloned() else {
            return Ok(false);
        };
        let service = challenge.params.get("service").cloned();
        self.lock_auth().scheme = Scheme::Bearer {
            realm: realm.clone(),
            service: service.clone(),
        };
        let rejected = sent.and_then(|s| s.strip_prefix("Bearer "));
        self.bearer_token(req, &realm, service.as_deref(), rejected)
            .await?;
        Ok(true)
    }

    /// Fetches (and caches) a token for `req`'s scopes from `realm`.
    async fn fetch_token(
        &self,
        req: &Request,
        realm: &str,
        service: Option<&str>,
    ) -> Result<String> {
        let invalid = |reason: String| Error::InvalidResponse {
            registry: self.inner.registry.clone(),
            repository: req.repository.clone(),
            operation: Box::new(Operation::Token),
            reason,
        };
        let mut url =
            Url::parse(realm).map_err(|_| invalid(format!("realm {realm:?} is not a URL")))?;
        let realm_host = url.host_str().unwrap_or("").to_string();
        let realm_authority = match url.port() {
            Some(port) => format!("{realm_host}:{port}"),
            None => realm_host.clone(),
        };
        if url.scheme() != "https"
            && !(url.scheme() == "http"
                && (self.inner.settings.allow_insecure || is_loopback(&realm_authority)))
        {
            return Err(invalid(format!(
                "refusing token realm {realm:?}: not https (and not loopback)"
            )));
        }
        {
            let mut pairs = url.query_pairs_mut();
            if let Some(service) = service {
                pairs.append_pair("service", service);
            }
            for scope in &req.scopes {
                pairs.append_pair("scope", scope);
            }
        }
        // The token endpoint is retried like the registry (429, 5xx, connection errors).
        let mut attempt = 0u32;
        let response = loop {
            let mut builder = self.inner.http.get(url.clone());
            if let Some(credentials) = &self.inner.credentials {
                builder = builder.header(header::AUTHORIZATION, credentials.basic());
            }
            let retries_left = attempt < self.inner.settings.retries;
            match builder.send().await {
                Ok(r)
                    if retries_left
                        && (r.status() == StatusCode::TOO_MANY_REQUESTS
                            || r.status().is_server_error()) =>
                {
                    let delay = retry_after(&r)
                        .unwrap_or_else(|| self.backoff(attempt))
                        .min(self.inner.settings.max_backoff);
                    tokio::time::sleep(delay).await;
                }
                Ok(r) => break r,
                Err(e) if retries_left && retryable(&e) => {
                    tokio::time::sleep(self.backoff(attempt)).await;
                }
                Err(e) => return Err(self.request_error(req, e)),
            }
            attempt += 1;
        };
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(Error::Unauthorized {
                registry: self.inner.registry.clone(),
                repository: req.repository.clone(),
                operation: Box::new(Operation::Token),
                status: status.as_u16(),
            });
        }
        if !status.is_success() {
            return Err(invalid(format!("the token endpoint answered {status}")));
        }
        let body = read_limited(response, 1 << 20)
            .await
            .map_err(|e| self.request_error(req, e))?
            .ok_or_else(|| invalid("token response larger than 1 MiB".into()))?;
        let parsed: TokenResponse = serde_json::from_slice(&body)
            .map_err(|e| invalid(format!("token response is not JSON: {e}")))?;
        let token = parsed
            .token
            .or(parsed.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| invalid("token response holds no token".into()))?;
        let lifetime = Duration::from_secs(parsed.expires_in.unwrap_or(60).clamp(10, 86_400));
        self.lock_auth().tokens.insert(
            scope_key(&req.scopes),
            auth::Token {
                value: token.clone(),
                expires: Instant::now() + lifetime,
            },
        );
        Ok(token)
    }

    pub(crate) fn request_error(&self, req: &Request, source: reqwest::Error) -> Error {
        match tls_failure(&source) {
            Some(tls) if answered_plain_text(tls) => {
                return Error::NotHttps {
                    registry: self.inner.registry.clone(),
                    source,
                };
            }
            Some(tls) if is_ca_as_end_entity(tls) => {
                return Error::CaAsServerCertificate {
                    registry: self.inner.registry.clone(),
                    source,
                };
            }
            Some(rustls::Error::InvalidCertificate(_)) => {
                return Error::Certificate {
                    registry: self.inner.registry.clone(),
                    source,
                };
            }
            _ => {}
        }
        Error::Request {
            registry: self.inner.registry.clone(),
            repository: req.repository.clone(),
            operation: Box::new(req.operation.clone()),
            source,
        }
    }

    pub(crate) fn layout_error(&self, req: &Request, source: ocikit_layout::Error) -> Error {
        Error::Layout {
            registry: self.inner.registry.clone(),
            repository: req.repository.clone(),
            operation: Box::new(req.operation.clone()),
            source: Box::new(source),
        }
    }

    /// The error for a response whose status the operation cannot go on from.
    pub(crate) async fn status_error(&self, req: &Request, response: reqwest::Response) -> Error {
        let status = response.status();
        let registry = self.inner.registry.clone();
        let repository = req.repository.clone();
        let operation = req.operation.clone();
        match status {
            // "has no manifest v1", not "has no GET manifest v1": the error's Display says
            // what is missing, without the request's method (`Operation::missing`).
            StatusCode::NOT_FOUND => Error::NotFound {
                registry,
                repository,
                operation: Box::new(operation),
            },
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Error::Unauthorized {
                registry,
                repository,
                operation: Box::new(operation),
                status: status.as_u16(),
            },
            _ => {
                let body = read_limited(response, MAX_ERROR_BODY)
                    .await
                    .ok()
                    .flatten()
                    .unwrap_or_default();
                Error::Status {
                    registry,
                    repository,
                    operation: Box::new(operation),
                    status: status.as_u16(),
                    detail: error_detail(&body),
                }
            }
        }
    }

    /// Sends `req` and returns the response if its status is one of `ok`.
    pub(crate) async fn expect(
        &self,
        req: &Request,
        ok: &[StatusCode],
    ) -> Result<reqwest::Response> {
        let response = self.send(req).await?;
        if ok.contains(&response.status()) {
            Ok(response)
        } else {
            Err(self.status_error(req, response).await)
        }
    }

    /// Fetches a manifest or index by tag or digest and verifies it: against the digest
    /// asked for, or for a tag against `Docker-Content-Digest` when the registry sends one.
    /// Returns its descriptor (media type from the body's `mediaType`, else `Content-Type`)
    /// and its exact bytes.
    pub async fn get_manifest(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<(Descriptor, Bytes)> {
        pull::get_manifest(self, repository, reference).await
    }

    /// Checks that the registry answers `GET /v2/` with 200 (authenticating as it asks,
    /// with a token for no scope): what `login` does to test credentials.
    pub async fn ping(&self) -> Result<()> {
        let url = self
            .inner
            .base
            .join("v2/")
            .map_err(|e| Error::ClientSetup {
                registry: self.inner.registry.clone(),
                reason: "cannot form the /v2/ URL".into(),
                source: Some(Box::new(e)),
            })?;
        let mut req = Request::new(Method::GET, url, "", Operation::Ping);
        req.scopes.clear();
        self.expect(&req, &[StatusCode::OK]).await?;
        Ok(())
    }

    /// The referrers of `subject` in `repository` (only those of `artifact_type`, when
    /// given): from the referrers API, or, where the registry lacks it (404), from the
    /// referrers tag schema's index ([`referrers::fallback_tag`]); none when neither exists.
    /// Pushing a manifest with a `subject` to a registry without the API adds it to that
    /// index.
    pub async fn referrers(
        &self,
        repository: &str,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Descriptor>> {
        referrers::list(self, repository, subject, artifact_type).await
    }

    /// Streams the blob `digest` (`size` bytes) of `repository` into `store` through a
    /// verifying writer, resuming with `Range` if the download breaks off. Returns the bytes
    /// downloaded, or `None` when the store had the blob already.
    pub async fn fetch_blob(
        &self,
        repository: &str,
        digest: &Digest,
        size: u64,
        store: &dyn ocikit_store::Store,
        progress: &ocikit_layout::progress::Progress,
    ) -> Result<Option<u64>> {
        self.validate_repository(repository)?;
        pull::fetch_blob(self, repository, store, digest.clone(), size, progress).await
    }

    /// Whether the repository holds the blob (HEAD).
    pub async fn blob_exists(&self, repository: &str, digest: &Digest) -> Result<bool> {
        self.validate_repository(repository)?;
        let req = Request::new(
            Method::HEAD,
            self.url(repository, &format!("blobs/{digest}"))?,
            repository,
            Operation::CheckBlob {
                digest: digest.clone(),
            },
        );
        let response = self.send(&req).await?;
        match response.status() {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self.status_error(&req, response).await),
        }
    }

    /// The repository's tags, following `Link` pagination.
    pub async fn tags(&self, repository: &str) -> Result<Vec<String>> {
        self.validate_repository(repository)?;
        #[derive(serde::Deserialize)]
        struct TagList {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let mut tags = Vec::new();
        let mut url = self.url(repository, "tags/list")?;
        for _ in 0..10_000 {
            let req = Request::new(Method::GET, url.clone(), repository, Operation::ListTags);
            let response = self.expect(&req, &[StatusCode::OK]).await?;
            let next = next_link(&response).and_then(|link| response.url().join(&link).ok());
            let body = read_limited(response, 16 << 20)
                .await
                .map_err(|e| self.request_error(&req, e))?
                .unwrap_or_default();
            let page: TagList =
                serde_json::from_slice(&body).map_err(|e| Error::InvalidResponse {
                    registry: self.inner.registry.clone(),
                    repository: repository.to_string(),
                    operation: Box::new(req.operation.clone()),
                    reason: format!("the tag list is not JSON: {e}"),
                })?;
            tags.extend(page.tags.unwrap_or_default());
            match next {
                Some(next) if self.same_origin(&next) => url = next,
                _ => break,
            }
        }
        Ok(tags)
    }

    /// Pulls `reference` (a tag or digest) of `repository` into `layout`, tagged `tag`
    /// there; see [`PullOptions`] for platform selection.
    pub async fn pull(
        &self,
        repository: &str,
        reference: &str,
        layout: &Layout,
        tag: &str,
        options: &PullOptions,
    ) -> Result<TransferReport> {
        pull::pull(self, repository, reference, layout, tag, options).await
    }

    /// Copies `reference` (a tag or digest) of repository `from` to repository `to` of this
    /// registry without downloading its blobs: only its manifests and indexes are fetched
    /// and verified, every blob `to` lacks is mounted from `from`, and a blob the registry
    /// will not mount (it opens an upload session instead) is streamed, verified, through a
    /// scratch directory. The documents are pushed children first, the root last: under
    /// `destination` when it is a tag, by digest otherwise; a `destination` digest must be
    /// the root's ([`Error::NotTheSource`]), checked before anything moves. See
    /// [`CopyWithinOptions`] for platform selection.
    ///
    /// Where an index entry has no `platform`, selecting a platform reads its config (a
    /// small blob) to match by; nothing else but documents is downloaded unless the
    /// registry refuses a mount.
    pub async fn copy_within(
        &self,
        from: &str,
        reference: &str,
        to: &str,
        destination: Option<&str>,
        options: &CopyWithinOptions,
    ) -> Result<TransferReport> {
        copy::copy_within(self, from, reference, to, destination, options).await
    }

    /// Pushes `root` (an image or index of `layout`, with everything it reaches) to
    /// `repository`, tagged `tag` when given (by digest otherwise).
    pub async fn push(
        &self,
        layout: &Layout,
        root: &Descriptor,
        repository: &str,
        tag: Option<&str>,
        options: &PushOptions,
    ) -> Result<TransferReport> {
        push::push(self, layout, root, repository, tag, options).await
    }
}

/// Whether a request error may go away by itself; TLS failures (a certificate that does not
/// verify, a server that does not speak TLS) do not.
fn retryable(e: &reqwest::Error) -> bool {
    (e.is_connect() || e.is_timeout() || e.is_request() || e.is_body()) && tls_failure(e).is_none()
}

/// `Retry-After` in seconds (an HTTP date is treated as "soon": one second).
fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    let value = response.headers().get(header::RETRY_AFTER)?.to_str().ok()?;
    Some(match value.trim().parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => Duration::from_secs(1),
    })
}

/// The `rel="next"` target of a `Link` header.
fn next_link(response: &reqwest::Response) -> Option<String> {
    let value = response.headers().get(header::LINK)?.to_str().ok()?;
    value.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        params.contains("rel=\"next\"").then(|| {
            target
                .trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        })
    })
}

/// Reads a body of at most `limit` bytes; `None` when it is larger.
pub(crate) async fn read_limited(
    mut response: reqwest::Response,
    limit: usize,
) -> std::result::Result<Option<Bytes>, reqwest::Error> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Ok(None);
    }
    let mut buf = bytes::BytesMut::new();
    while let Some(chunk) = response.chunk().await? {
        if buf.len() + chunk.len() > limit {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Some(buf.freeze()))
}

/// `CODE: message; CODE: message` from an error envelope, or the start of the body.
fn error_detail(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Envelope {
        errors: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    if let Ok(envelope) = serde_json::from_slice::<Envelope>(body)
        && !envelope.errors.is_empty()
    {
        return envelope
            .errors
            .iter()
            .take(8)
            .map(|e| format!("{}: {}", e.code, e.message))
            .collect::<Vec<_>>()
            .join("; ")
            .chars()
            .take(512)
            .collect();
    }
    let text: String = String::from_utf8_lossy(body).chars().take(200).collect();
    if text.trim().is_empty() {
        "no details".into()
    } else {
        text
    }
}

/// The media type a manifest response declares: its body's `mediaType`, else the
/// `Content-Type` without parameters.
pub(crate) fn declared_media_type(content_type: Option<&str>, body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "mediaType", default)]
        media_type: Option<String>,
    }
    let from_body = serde_json::from_slice::<Probe>(body)
        .ok()
        .and_then(|p| p.media_type);
    from_body.or_else(|| {
        content_type
            .map(|c| media_type::essence(c).to_string())
            .filter(|c| !c.is_empty())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for host in [
            "localhost",
            "localhost:5000",
            "127.0.0.1",
            "127.1.2.3:80",
            "[::1]:5000",
            "[::1]",
        ] {
            assert!(is_loopback(host), "{host}");
        }
        for host in [
            "example.com",
            "10.0.0.1:5000",
            "localhost.example.com",
            "[::2]:1",
        ] {
            assert!(!is_loopback(host), "{host}");
        }
    }

    #[test]
    fn plain_http_only_for_loopback_unless_allowed() {
        assert!(
            Client::builder("127.0.0.1:5000")
                .plain_http(true)
                .build()
                .is_ok()
        );
        assert!(matches!(
            Client::builder("registry.example:5000")
                .plain_http(true)
                .build(),
            Err(Error::InsecureRegistry { .. })
        ));
        assert!(
            Client::builder("registry.example:5000")
                .plain_http(true)
                .allow_insecure(true)
                .build()
                .is_ok()
        );
    }

    #[test]
    fn error_details() {
        assert_eq!(
            error_detail(br#"{"errors":[{"code":"DENIED","message":"no"}]}"#),
            "DENIED: no"
        );
        assert_eq!(error_detail(b""), "no details");
    }
}
