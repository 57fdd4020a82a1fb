//! The client's settings: [`ClientBuilder`], and building a [`Client`] from them (TLS
//! roots and verifiers, timeouts, retries, chunking).

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Url;

use crate::auth::Credentials;
use crate::{
    Client, DEFAULT_CHUNK_SIZE, DEFAULT_MONOLITHIC_LIMIT, Error, Inner, NoVerification, Result,
    TrustedExactly, is_loopback, read_cert_dir, read_certificates,
};

use crate::auth::AuthState;

/// How a [`Client`] is set up; made by [`Client::builder`].
#[derive(Clone, Debug)]
pub struct ClientBuilder {
    pub(crate) registry: String,
    pub(crate) credentials: Option<Credentials>,
    pub(crate) plain_http: bool,
    pub(crate) allow_insecure: bool,
    pub(crate) accept_invalid_certs: bool,
    pub(crate) roots: Vec<rustls_pki_types::CertificateDer<'static>>,
    pub(crate) ca_files: Vec<PathBuf>,
    pub(crate) cert_dirs: Vec<PathBuf>,
    pub(crate) connect_timeout: Duration,
    pub(crate) read_timeout: Duration,
    pub(crate) retries: u32,
    pub(crate) backoff: Duration,
    pub(crate) max_backoff: Duration,
    pub(crate) monolithic_limit: u64,
    pub(crate) chunk_size: u64,
    pub(crate) user_agent: String,
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
}
