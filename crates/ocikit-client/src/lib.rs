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
mod blob_read;
mod builder;
mod copy;
pub mod docker_config;
mod error;
#[cfg(feature = "__fuzz")]
#[doc(hidden)]
pub mod fuzz;
mod login;
mod manage;
mod mirror;
mod pull;
mod push;
pub mod referrers;
mod request;
mod retry;
mod stream;
mod tls;

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use ocikit_digest::oci_spec::image::Descriptor;
use ocikit_digest::{Digest, media_type};
use ocikit_layout::Layout;
use reqwest::{Method, StatusCode, Url};

pub use auth::Credentials;
pub use blob_read::BlobRead;
pub use builder::ClientBuilder;
pub use copy::CopyWithinOptions;
pub use docker_config::DockerConfig;
pub use error::{Error, Operation, Result};
pub use login::{
    LoginOptions, LoginReport, LogoutReport, auth_file_path, login, logout, registry_host,
};
pub use manage::CatalogPage;
pub use mirror::{BlobLedger, CopyFromOptions, SMALL_BLOB};
pub use pull::PullOptions;
pub use push::PushOptions;
pub use stream::BlobStream;

use auth::AuthState;
use request::next_link;
pub(crate) use request::{Body, Request, read_limited};
use retry::{retry_after, retryable};
use tls::{
    NoVerification, TrustedExactly, answered_plain_text, is_ca_as_end_entity, read_cert_dir,
    read_certificates, tls_failure,
};

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

impl Client {
    /// The registry this client talks to (`host[:port]`).
    pub fn registry(&self) -> &str {
        &self.inner.registry
    }

    pub(crate) fn base(&self) -> &Url {
        &self.inner.base
    }

    pub(crate) fn settings(&self) -> &ClientBuilder {
        &self.inner.settings
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

    /// Gets the blobs `blobs` (digest, size) of repository `from` into repository `to` of
    /// this registry without downloading them: each one `to` has is skipped (HEAD), the
    /// others are mounted from `from`, and one the registry will not mount is streamed,
    /// verified, through a scratch directory (as [`Client::copy_within`] moves an image's
    /// blobs). For callers that write the documents naming them themselves (an image whose
    /// config was edited on the way); tags nothing, pushes no manifest.
    pub async fn copy_blobs_within(
        &self,
        from: &str,
        to: &str,
        blobs: &[(Digest, u64)],
        options: &CopyWithinOptions,
    ) -> Result<TransferReport> {
        copy::copy_blobs_within(self, from, to, blobs, options).await
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
}
