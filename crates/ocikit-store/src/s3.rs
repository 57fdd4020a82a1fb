//! [`S3Store`]: blobs and documents in an S3-compatible object store (feature `s3`).
//!
//! ```text
//! <prefix>/blobs/<algorithm>/<encoded>   blobs (the OCI image-layout convention)
//! <prefix>/<key>                         documents (`index.json`, tag lists, ...)
//! <prefix>/.ocikit/tmp/<random>          staged blobs larger than one part, before publishing
//! ```
//!
//! The prefix lets several stores share a bucket. Stores sharing a bucket need prefixes where
//! neither is a prefix of the other: a store with the empty prefix owns the whole bucket, and
//! would list another store's documents as its own.
//!
//! **Blobs.** A blob smaller than one part (8 MiB by default) is buffered in memory and, once
//! verified, written to its key with one PUT, which S3 makes visible atomically. A larger blob
//! streams into a multipart upload of a temp object, with a bounded number of parts in flight
//! (so memory stays at `(concurrency + 1) × part size` whatever the blob's size, and writes
//! wait while the parts in flight are full). Publishing completes the upload, copies the temp
//! object to the blob's key server-side (an atomic replace; blobs larger than the server's copy
//! limit, 5 GiB on AWS, are streamed through the client into a multipart upload of the blob
//! key instead, which also appears atomically when completed), then deletes the temp object.
//! Publishing a blob that exists already writes it again (the same bytes), so that its
//! `LastModified`, which [`Store::written_at`] reports and garbage collection's grace period
//! judges, says when it was last published, as on the other backends: one PUT for a blob
//! under one part (no HEAD first, so a new blob costs the same single request), the complete
//! and the server-side copy for a larger one. Only a blob over the server's copy limit that
//! exists already is left as it was (its staged bytes discarded after one HEAD), since
//! writing it again would stream it through the client. Nothing is ever visible under
//! `blobs/` before it was verified.
//!
//! A staging area dropped without publishing aborts its multipart upload in a background task
//! (when a tokio runtime is running). A process that dies mid-upload leaves an incomplete
//! multipart upload, invisible but billed: configure the bucket's lifecycle rule
//! `AbortIncompleteMultipartUpload`. A process that dies between completing the temp object
//! and deleting it leaves an object under `.ocikit/tmp/`, which [`S3Store::clean_temp`]
//! removes; listings never report it.
//!
//! **Documents** are updated by compare-and-swap on the object's ETag: `If-None-Match: *`
//! for [`Precondition::MustNotExist`] and `If-Match: <etag>` for [`Precondition::Matches`].
//! The server must enforce both (AWS S3 does since 2024, as do MinIO, Cloudflare R2 and
//! moto); on a server that ignores them, concurrent writers can lose each other's updates.
//! A conditional delete reads the ETag with a HEAD, checks it, then sends the DELETE with
//! `If-Match: <etag>`, so servers with conditional deletes (AWS S3 since 2025, moto) never
//! delete a document changed in between. Servers that ignore `If-Match` on DELETE, and
//! stores made with [`S3Store::from_object_store`], leave a window of one round trip between
//! the check and the DELETE in which a concurrent update is deleted along with the document.

use std::fmt;
use std::io;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder, S3ConditionalPut};
use object_store::client::{HttpClient, HttpConnector, HttpRequest, HttpRequestBody};
use object_store::path::Path;
use object_store::signer::{HeaderName, HeaderValue, Method, SignedUrlOptions, Signer};
use object_store::{
    ClientConfigKey, ClientOptions, CopyMode, CopyOptions, GetOptions, MultipartUpload, ObjectMeta,
    ObjectStore, PutMode, PutMultipartOptions, PutOptions, PutPayload, UpdateVersion,
    WriteMultipart,
};
use ocikit_digest::Digest;
use tokio::io::AsyncWrite;

use crate::fs::MAX_DOCUMENT_SIZE;
use crate::store::resolve_range;
use crate::{Blob, Document, DocumentKey, Error, Precondition, Result, Staging, Store, Version};

/// Default size of the parts of a multipart upload: blobs smaller than this are written with
/// one PUT.
pub const DEFAULT_PART_SIZE: usize = 8 << 20;

/// Smallest part size S3 accepts (every part but the last must be at least this large).
pub const MIN_PART_SIZE: usize = 5 << 20;

/// Default number of parts a staging area uploads at once.
pub const DEFAULT_UPLOAD_CONCURRENCY: usize = 2;

/// Default limit of a server-side copy: S3's `CopyObject` copies at most 5 GiB.
pub const DEFAULT_SERVER_COPY_LIMIT: u64 = 5 << 30;

/// How long the signature of a conditional delete stays valid.
const SIGNATURE_LIFETIME: Duration = Duration::from_secs(300);

/// How many times a delete re-reads an object that changed under it before giving up.
const MAX_DELETE_ATTEMPTS: usize = 16;

/// The backend name in [`Error::Backend`].
const BACKEND: &str = "s3";

fn backend(source: object_store::Error) -> Error {
    Error::Backend {
        backend: BACKEND,
        source: Box::new(source),
    }
}

fn backend_message(message: impl Into<String>) -> Error {
    Error::Backend {
        backend: BACKEND,
        source: message.into().into(),
    }
}

fn is_not_found(err: &object_store::Error) -> bool {
    matches!(err, object_store::Error::NotFound { .. })
}

/// Where and how to reach an S3-compatible bucket, for [`S3Store::new`].
///
/// Settings left unset come from the environment the usual AWS way: credentials from
/// `AWS_ACCESS_KEY_ID` and friends, web identity, container or instance credentials (and then
/// the other `AWS_*` settings too, such as `AWS_ENDPOINT`); the region from `AWS_REGION` or
/// `AWS_DEFAULT_REGION`.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct S3Config {
    /// The endpoint URL of an S3-compatible server (`http://127.0.0.1:9000`), or `None` for
    /// AWS itself. Requests use path-style URLs (`<endpoint>/<bucket>/<key>`).
    pub endpoint: Option<String>,
    /// The bucket.
    pub bucket: String,
    /// The region, or `None` for the environment's (`AWS_REGION`), else `us-east-1`.
    /// S3-compatible servers mostly ignore it.
    pub region: Option<String>,
    /// The access key id; with `secret_access_key`, the credentials to sign with.
    pub access_key_id: Option<String>,
    /// The secret access key.
    pub secret_access_key: Option<String>,
    /// A session token, for temporary credentials.
    pub session_token: Option<String>,
    /// The key prefix under which this store keeps everything (`""` for the whole bucket).
    pub prefix: String,
    /// Whether plain `http://` endpoints are allowed (for local servers).
    pub allow_http: bool,
}

impl S3Config {
    /// A configuration for `bucket` on AWS, with region and credentials from the
    /// environment, the empty prefix, HTTPS only.
    pub fn new(bucket: impl Into<String>) -> S3Config {
        S3Config {
            endpoint: None,
            bucket: bucket.into(),
            region: None,
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
            prefix: String::new(),
            allow_http: false,
        }
    }

    /// Sets the endpoint of an S3-compatible server.
    pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> S3Config {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// Sets the region.
    pub fn with_region(mut self, region: impl Into<String>) -> S3Config {
        self.region = Some(region.into());
        self
    }

    /// Sets static credentials.
    pub fn with_credentials(
        mut self,
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
    ) -> S3Config {
        self.access_key_id = Some(access_key_id.into());
        self.secret_access_key = Some(secret_access_key.into());
        self
    }

    /// Sets a session token (for temporary credentials).
    pub fn with_session_token(mut self, token: impl Into<String>) -> S3Config {
        self.session_token = Some(token.into());
        self
    }

    /// Sets the key prefix.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> S3Config {
        self.prefix = prefix.into();
        self
    }

    /// Allows or forbids plain `http://` endpoints.
    pub fn with_allow_http(mut self, allow_http: bool) -> S3Config {
        self.allow_http = allow_http;
        self
    }
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print secrets.
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .field("prefix", &self.prefix)
            .field("allow_http", &self.allow_http)
            .finish()
    }
}

/// What a conditional DELETE needs: the S3 store to sign with and a client to send with
/// (`object_store` has no conditional delete of its own).
#[derive(Clone, Debug)]
struct ConditionalDelete {
    signer: Arc<AmazonS3>,
    http: HttpClient,
}

/// object_store's HTTP clients: reqwest with a rustls configuration of our own on ring (the
/// system's roots through rustls-platform-verifier, as reqwest's own), so that no
/// process-default crypto provider is needed and none is installed: a library does not change
/// process-global state.
///
/// It builds the client as object_store's own connector does for the options an [`S3Store`]
/// can meet (HTTP allowed or not, user agent, proxy and its exclusions, HTTP/1 or HTTP/2
/// only, no transparent decompression, object_store's default timeouts), and refuses any
/// other client option (from `AWS_*` variables, say) that differs from object_store's
/// default rather than ignoring it. Resolved addresses are not shuffled.
#[derive(Debug)]
struct RingConnector;

/// object_store's default request and connect timeouts (checked against its `ClientOptions`).
const TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl HttpConnector for RingConnector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        let failed = |what: &str, source: Option<Box<dyn std::error::Error + Send + Sync>>| {
            object_store::Error::Generic {
                store: BACKEND,
                source: match source {
                    Some(source) => format!("{what}: {source}").into(),
                    None => what.into(),
                },
            }
        };
        let value = |key: &ClientConfigKey| options.get_config_value(key);
        let flag = |key: ClientConfigKey| value(&key).is_some_and(|v| v == "true");
        let defaults = ClientOptions::default();
        for key in [
            ClientConfigKey::AllowInvalidCertificates,
            ClientConfigKey::NoSystemCertificates,
            ClientConfigKey::Timeout,
            ClientConfigKey::ConnectTimeout,
            ClientConfigKey::ReadTimeout,
            ClientConfigKey::PoolIdleTimeout,
            ClientConfigKey::PoolMaxIdlePerHost,
            ClientConfigKey::Http2KeepAliveInterval,
            ClientConfigKey::Http2KeepAliveTimeout,
            ClientConfigKey::Http2KeepAliveWhileIdle,
            ClientConfigKey::Http2MaxFrameSize,
            ClientConfigKey::ProxyCaCertificate,
        ] {
            if value(&key) != defaults.get_config_value(&key) {
                return Err(failed(
                    &format!("the S3 client option {key:?} is not supported"),
                    None,
                ));
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls_platform_verifier::Verifier::new(provider.clone())
            .map_err(|e| failed("certificate verifier", Some(Box::new(e))))?;
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| failed("TLS protocol versions", Some(Box::new(e))))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        let user_agent = value(&ClientConfigKey::UserAgent)
            .unwrap_or_else(|| concat!("ocikit/", env!("CARGO_PKG_VERSION")).to_owned());
        let mut builder = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .user_agent(user_agent)
            .timeout(TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            // Transparent decompression would break the sizes object_store relies on.
            .no_gzip()
            .no_brotli()
            .no_zstd()
            .no_deflate()
            .https_only(!flag(ClientConfigKey::AllowHttp));
        if flag(ClientConfigKey::Http1Only) {
            builder = builder.http1_only();
        }
        if flag(ClientConfigKey::Http2Only) {
            builder = builder.http2_prior_knowledge();
        }
        if let Some(url) = value(&ClientConfigKey::ProxyUrl) {
            let mut proxy =
                reqwest::Proxy::all(url).map_err(|e| failed("proxy", Some(Box::new(e))))?;
            if let Some(excludes) = value(&ClientConfigKey::ProxyExcludes) {
                proxy = proxy.no_proxy(reqwest::NoProxy::from_string(&excludes));
            }
            builder = builder.proxy(proxy);
        }
        let client = builder
            .build()
            .map_err(|e| failed("HTTP client", Some(Box::new(e))))?;
        Ok(HttpClient::new(client))
    }
}

/// A store in an S3-compatible bucket, under a key prefix. Cloning it gives another handle
/// to the same store.
///
/// See the [module documentation](self) for the layout, how blobs are published atomically,
/// and what the server must support.
#[derive(Clone)]
pub struct S3Store {
    store: Arc<dyn ObjectStore>,
    /// The key prefix, without leading or trailing `/` (`""` for the whole bucket).
    prefix: Arc<str>,
    part_size: usize,
    upload_concurrency: usize,
    server_copy_limit: u64,
    conditional_delete: Option<ConditionalDelete>,
}

impl fmt::Debug for S3Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The object store's `Display` names it without its configuration (and credentials).
        f.debug_struct("S3Store")
            .field("store", &format_args!("{}", self.store))
            .field("prefix", &self.prefix)
            .field("part_size", &self.part_size)
            .field("upload_concurrency", &self.upload_concurrency)
            .field("server_copy_limit", &self.server_copy_limit)
            .field("conditional_delete", &self.conditional_delete.is_some())
            .finish()
    }
}

impl S3Store {
    /// Connects to the bucket `config` describes. No request is made until the store is used.
    ///
    /// Conditional PUT (`If-Match` / `If-None-Match`) is enabled: document compare-and-swap
    /// relies on it. HTTPS runs on rustls with ring, handed to the HTTP clients directly: no
    /// process-default rustls crypto provider is needed, and none is installed.
    ///
    /// ```no_run
    /// use ocikit_store::s3::S3Config;
    /// use ocikit_store::{S3Store, StoreExt};
    ///
    /// # async fn example() -> ocikit_store::Result<()> {
    /// let config = S3Config::new("images")
    ///     .with_endpoint("http://127.0.0.1:9000")
    ///     .with_credentials("access-key-id", "secret-access-key")
    ///     .with_allow_http(true)
    ///     .with_prefix("mirror/alpine");
    /// let store = S3Store::new(config)?;
    /// let digest = store.put_bytes(b"hello").await?;
    /// assert_eq!(store.require(&digest).await?, 5);
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(config: S3Config) -> Result<S3Store> {
        let mut builder = match (&config.access_key_id, &config.secret_access_key) {
            (Some(key), Some(secret)) => {
                let builder = AmazonS3Builder::new()
                    .with_access_key_id(key)
                    .with_secret_access_key(secret);
                match &config.session_token {
                    Some(token) => builder.with_token(token),
                    None => builder,
                }
            }
            (None, None) => AmazonS3Builder::from_env(),
            _ => {
                return Err(backend_message(
                    "S3 credentials need both an access key id and a secret access key",
                ));
            }
        };
        builder = builder
            .with_bucket_name(&config.bucket)
            .with_allow_http(config.allow_http)
            .with_conditional_put(S3ConditionalPut::ETagMatch);
        let region = config.region.clone().or_else(|| {
            ["AWS_REGION", "AWS_DEFAULT_REGION"]
                .into_iter()
                .find_map(|name| std::env::var(name).ok())
        });
        if let Some(region) = region {
            builder = builder.with_region(region);
        }
        if let Some(endpoint) = &config.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        let s3 = Arc::new(
            builder
                .with_http_connector(RingConnector)
                .build()
                .map_err(backend)?,
        );
        let http = RingConnector
            .connect(&ClientOptions::new().with_allow_http(config.allow_http))
            .map_err(backend)?;
        let mut store = S3Store::from_object_store(s3.clone(), &config.prefix)?;
        store.conditional_delete = Some(ConditionalDelete { signer: s3, http });
        Ok(store)
    }

    /// A store over any `object_store` backend, under `prefix` (`""` for all of it).
    ///
    /// The backend must support `PutMode::Create` and `PutMode::Update` (conditional put)
    /// for documents, and multipart uploads and copies for blobs. Deletes of documents are
    /// checked against the document's current version with a HEAD request just before the
    /// DELETE, which leaves a short window in which another writer's update can be deleted
    /// (stores built with [`S3Store::new`] close it on servers with conditional deletes).
    pub fn from_object_store(store: Arc<dyn ObjectStore>, prefix: &str) -> Result<S3Store> {
        let prefix = prefix.trim_matches('/');
        let parsed = Path::parse(prefix).map_err(|e| backend(e.into()))?;
        Ok(S3Store {
            store,
            prefix: parsed.as_ref().into(),
            part_size: DEFAULT_PART_SIZE,
            upload_concurrency: DEFAULT_UPLOAD_CONCURRENCY,
            server_copy_limit: DEFAULT_SERVER_COPY_LIMIT,
            conditional_delete: None,
        })
    }

    /// Sets the part size of multipart uploads (at least [`MIN_PART_SIZE`]; smaller values
    /// are raised to it). Blobs below one part are written with one PUT. S3 allows 10,000
    /// parts, so the part size also caps the blob size: 8 MiB parts allow blobs up to 78 GiB.
    pub fn with_part_size(mut self, bytes: usize) -> S3Store {
        self.part_size = bytes.max(MIN_PART_SIZE);
        self
    }

    /// Sets how many parts one staging area uploads at once (at least 1). Each part in flight
    /// holds one part's bytes in memory.
    pub fn with_upload_concurrency(mut self, parts: usize) -> S3Store {
        self.upload_concurrency = parts.max(1);
        self
    }

    /// Sets the largest blob published with a server-side copy; larger blobs are streamed
    /// through the client into a new multipart upload instead. AWS copies at most 5 GiB at
    /// once (the default); lower it for servers with a smaller limit.
    pub fn with_server_copy_limit(mut self, bytes: u64) -> S3Store {
        self.server_copy_limit = bytes;
        self
    }

    /// The key prefix, without leading or trailing `/`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The underlying object store.
    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The object key of a blob (whether or not it is stored).
    pub fn blob_key(&self, digest: &Digest) -> Result<Path> {
        self.key(&digest.blob_path())
    }

    /// The object key of a document (whether or not it is stored).
    pub fn document_key(&self, key: &DocumentKey) -> Result<Path> {
        self.key(key.as_str())
    }

    /// Deletes objects under `.ocikit/tmp/` older than `age`: what publishers that died left
    /// behind. (An object there lives only for the moments between completing an upload and
    /// publishing it, so an hour is a safe `age`.) Returns how many were deleted.
    ///
    /// Incomplete multipart uploads are not objects and are not listed here; leave them to
    /// the bucket's `AbortIncompleteMultipartUpload` lifecycle rule.
    pub async fn clean_temp(&self, age: Duration) -> Result<usize> {
        let tmp = self.key(".ocikit/tmp")?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let cutoff = i64::try_from(now.saturating_sub(age.as_secs())).unwrap_or(i64::MAX);
        let old: Vec<Path> = self
            .store
            .list(Some(&tmp))
            .map_err(backend)
            .try_filter_map(|meta| async move {
                Ok((meta.last_modified.timestamp() <= cutoff).then_some(meta.location))
            })
            .try_collect()
            .await?;
        let mut removed = 0;
        for path in old {
            match self.delete_object(&path).await {
                Ok(()) => removed += 1,
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(backend(e)),
            }
        }
        Ok(removed)
    }

    /// The object key of `relative` under the prefix.
    fn key(&self, relative: &str) -> Result<Path> {
        let full = if self.prefix.is_empty() {
            relative.to_string()
        } else {
            format!("{}/{relative}", self.prefix)
        };
        Path::parse(full).map_err(|e| backend(e.into()))
    }

    /// The key relative to the prefix of an object listed under it.
    fn relative<'a>(&self, location: &'a Path) -> Option<&'a str> {
        let location = location.as_ref();
        if self.prefix.is_empty() {
            Some(location)
        } else {
            location
                .strip_prefix(self.prefix.as_ref())
                .and_then(|rest| rest.strip_prefix('/'))
        }
    }

    /// HEAD: the object's metadata, or `None` when it is absent.
    async fn head(&self, path: &Path) -> Result<Option<ObjectMeta>> {
        match self
            .store
            .get_opts(path, GetOptions::new().with_head(true))
            .await
        {
            Ok(result) => Ok(Some(result.meta)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(backend(e)),
        }
    }

    async fn delete_object(&self, path: &Path) -> object_store::Result<()> {
        let location = path.clone();
        let mut deleted = self
            .store
            .delete_stream(stream::once(async move { Ok(location) }).boxed());
        while deleted.try_next().await?.is_some() {}
        Ok(())
    }

    /// Deletes the object at `path` as a HEAD just saw it: with `If-Match: <its ETag>` where
    /// the store can send one. `Ok(false)` when it changed or vanished in between.
    async fn delete_seen(&self, path: &Path, meta: &ObjectMeta) -> Result<bool> {
        match (&self.conditional_delete, meta.e_tag.as_deref()) {
            (Some(cd), Some(e_tag)) => self.delete_if_match(cd, path, e_tag).await,
            _ => match self.delete_object(path).await {
                Ok(()) => Ok(true),
                Err(e) if is_not_found(&e) => Ok(false),
                Err(e) => Err(backend(e)),
            },
        }
    }

    /// Deletes whatever is at `path`; whether this call deleted something (S3's DELETE
    /// succeeds whether or not the object exists, so a HEAD tells).
    async fn delete_existing(&self, path: &Path) -> Result<bool> {
        for _ in 0..MAX_DELETE_ATTEMPTS {
            let Some(meta) = self.head(path).await? else {
                return Ok(false);
            };
            if self.delete_seen(path, &meta).await? {
                return Ok(true);
            }
        }
        Err(backend_message(format!(
            "{path} kept changing while being deleted"
        )))
    }

    /// Deletes an object only if its ETag is still `e_tag`, through a presigned DELETE
    /// carrying `If-Match`. `Ok(true)` when deleted, `Ok(false)` when the condition failed
    /// (changed or gone). A server without conditional deletes deletes unconditionally, which
    /// callers bound by checking the ETag first. (Not `If-Match: *`: moto refuses it.)
    async fn delete_if_match(
        &self,
        cd: &ConditionalDelete,
        path: &Path,
        e_tag: &str,
    ) -> Result<bool> {
        let if_match = HeaderName::from_static("if-match");
        let value = HeaderValue::from_str(e_tag)
            .map_err(|_| backend_message(format!("ETag {e_tag:?} is not a valid header value")))?;
        let options = SignedUrlOptions::new().with_signed_header(if_match.clone(), value.clone());
        let url = cd
            .signer
            .signed_url_opts(Method::DELETE, path, SIGNATURE_LIFETIME, &options)
            .await
            .map_err(backend)?;
        let mut request = HttpRequest::new(HttpRequestBody::empty());
        *request.method_mut() = Method::DELETE;
        *request.uri_mut() = url.as_str().parse().map_err(|e| Error::Backend {
            backend: BACKEND,
            source: Box::new(e),
        })?;
        request.headers_mut().insert(if_match, value);
        let response = cd.http.execute(request).await.map_err(|e| Error::Backend {
            backend: BACKEND,
            source: Box::new(e),
        })?;
        match response.status().as_u16() {
            200..=299 => Ok(true),
            // 412: the ETag changed; 404: the object vanished since the HEAD.
            404 | 412 => Ok(false),
            status => {
                let body = response.into_body().bytes().await.unwrap_or_default();
                let body = String::from_utf8_lossy(&body[..body.len().min(1024)]).into_owned();
                Err(backend_message(format!(
                    "conditional DELETE of {path} failed with HTTP {status}: {body}"
                )))
            }
        }
    }

    /// Finishes a multipart upload of the temp object and publishes it under `target`.
    async fn publish_multipart(
        &self,
        temp: &Path,
        writer: WriteMultipart,
        target: &Path,
        size: u64,
    ) -> Result<()> {
        // Stored already: written again (below) so that its `LastModified` is renewed,
        // except over the copy limit, where that would stream it through this process.
        if size > self.server_copy_limit
            && self
                .head(target)
                .await?
                .is_some_and(|meta| meta.size == size)
        {
            writer.abort().await.ok();
            return Ok(());
        }
        writer.finish().await.map_err(backend)?;
        let placed = if size <= self.server_copy_limit {
            let options = CopyOptions::new().with_mode(CopyMode::Overwrite);
            self.store
                .copy_opts(temp, target, options)
                .await
                .map_err(backend)
        } else {
            self.copy_through_client(temp, target).await
        };
        // Best effort: a temp object left behind is invisible, and `clean_temp` removes it.
        self.delete_object(temp).await.ok();
        placed
    }

    /// Copies the temp object to `target` through this process, for blobs larger than the
    /// server copies at once. `target` appears when the upload completes, atomically.
    async fn copy_through_client(&self, temp: &Path, target: &Path) -> Result<()> {
        let store = &self.store;
        let mut source = store
            .get_opts(temp, GetOptions::new())
            .await
            .map_err(backend)?
            .into_stream();
        let upload = store
            .put_multipart_opts(target, PutMultipartOptions::default())
            .await
            .map_err(backend)?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, self.part_size);
        while let Some(chunk) = source.next().await {
            let ready = match chunk {
                Ok(chunk) => writer
                    .wait_for_capacity(self.upload_concurrency)
                    .await
                    .map(|()| chunk),
                Err(e) => Err(e),
            };
            match ready {
                Ok(chunk) => writer.put(chunk),
                Err(e) => {
                    writer.abort().await.ok();
                    return Err(backend(e));
                }
            }
        }
        writer.finish().await.map_err(backend)?;
        Ok(())
    }
}

/// A document's version token: its ETag, followed by a space and the object version where
/// the bucket is versioned. (ETags never contain spaces: RFC 9110 `etagc`.)
fn version_of(e_tag: Option<&str>, object_version: Option<&str>) -> Result<Version> {
    let e_tag = e_tag.ok_or_else(|| backend_message("the object store returned no ETag"))?;
    Ok(match object_version {
        Some(v) => Version::new(format!("{e_tag} {v}")),
        None => Version::new(e_tag),
    })
}

fn update_version(version: &Version) -> UpdateVersion {
    let (e_tag, object_version) = match version.as_str().split_once(' ') {
        Some((e_tag, v)) => (e_tag, Some(v.to_string())),
        None => (version.as_str(), None),
    };
    UpdateVersion {
        e_tag: Some(e_tag.to_string()),
        version: object_version,
    }
}

fn meta_version(meta: &ObjectMeta) -> Result<Version> {
    version_of(meta.e_tag.as_deref(), meta.version.as_deref())
}

fn empty_blob(size: u64, range: Range<u64>) -> Blob {
    Blob::new(size, range, stream::empty().boxed(), None)
}

#[async_trait::async_trait]
impl Store for S3Store {
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>> {
        Ok(self
            .head(&self.blob_key(digest)?)
            .await?
            .map(|meta| meta.size))
    }

    async fn get(&self, digest: &Digest, range: Option<Range<u64>>) -> Result<Option<Blob>> {
        let path = self.blob_key(digest)?;
        let requested = match range {
            // A range HTTP cannot express (empty or backwards) needs only the size.
            Some(r) if r.start >= r.end => {
                let Some(meta) = self.head(&path).await? else {
                    return Ok(None);
                };
                let range = resolve_range(Some(r), meta.size)?;
                return Ok(Some(empty_blob(meta.size, range)));
            }
            other => other,
        };
        let options = GetOptions::new().with_range(requested.clone());
        match self.store.get_opts(&path, options).await {
            Ok(result) => {
                let size = result.meta.size;
                // `object_store` checked the returned range against the one asked for.
                let range = result.range.clone();
                let stream = result.into_stream().map_err(backend).boxed();
                Ok(Some(Blob::new(size, range, stream, None)))
            }
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => {
                // A range starting at or past the end is refused by the server (416); find
                // out with a HEAD whether that was it.
                let Some(r) = requested else {
                    return Err(backend(e));
                };
                let Some(meta) = self.head(&path).await? else {
                    return Ok(None);
                };
                let range = resolve_range(Some(r), meta.size)?;
                if range.is_empty() {
                    Ok(Some(empty_blob(meta.size, range)))
                } else {
                    Err(backend(e))
                }
            }
        }
    }

    async fn stage(&self) -> Result<Box<dyn Staging>> {
        let temp = self.key(&format!(".ocikit/tmp/{}", temp_name()))?;
        Ok(Box::new(S3Staging {
            store: self.clone(),
            temp,
            upload: Upload::Buffer(BytesMut::new()),
        }))
    }

    async fn written_at(&self, digest: &Digest) -> Result<Option<std::time::SystemTime>> {
        Ok(self
            .head(&self.blob_key(digest)?)
            .await?
            .map(|meta| std::time::SystemTime::from(meta.last_modified)))
    }

    async fn delete(&self, digest: &Digest) -> Result<bool> {
        self.delete_existing(&self.blob_key(digest)?).await
    }

    fn list(&self) -> BoxStream<'_, Result<Digest>> {
        let blobs = match self.key("blobs") {
            Ok(blobs) => blobs,
            Err(e) => return stream::iter([Err(e)]).boxed(),
        };
        let under = format!("{}/", blobs.as_ref());
        self.store
            .list(Some(&blobs))
            .map_err(backend)
            .try_filter_map(move |meta| {
                let digest = meta
                    .location
                    .as_ref()
                    .strip_prefix(under.as_str())
                    .and_then(|rest| rest.split_once('/'))
                    .filter(|(_, encoded)| !encoded.contains('/'))
                    .and_then(|(algorithm, encoded)| {
                        Digest::parse(&format!("{algorithm}:{encoded}")).ok()
                    })
                    // Only the canonical spelling of a digest names its blob.
                    .filter(|digest| meta.location.as_ref().ends_with(&digest.blob_path()));
                futures::future::ready(Ok(digest))
            })
            .boxed()
    }

    async fn read_document(&self, key: &DocumentKey) -> Result<Option<Document>> {
        let path = self.document_key(key)?;
        let result = match self.store.get_opts(&path, GetOptions::new()).await {
            Ok(result) => result,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(backend(e)),
        };
        if result.meta.size > MAX_DOCUMENT_SIZE {
            return Err(Error::TooLarge {
                size: result.meta.size,
                limit: MAX_DOCUMENT_SIZE,
            });
        }
        // ETag and bytes come from the same response, so they describe the same state.
        let version = meta_version(&result.meta)?;
        let bytes = result.bytes().await.map_err(backend)?;
        Ok(Some(Document { bytes, version }))
    }

    async fn write_document(
        &self,
        key: &DocumentKey,
        bytes: Bytes,
        precondition: Precondition,
    ) -> Result<Version> {
        let path = self.document_key(key)?;
        let mode = match &precondition {
            Precondition::None => PutMode::Overwrite,
            Precondition::MustNotExist => PutMode::Create,
            Precondition::Matches(version) => PutMode::Update(update_version(version)),
        };
        let options = PutOptions {
            mode,
            ..PutOptions::default()
        };
        match self
            .store
            .put_opts(&path, PutPayload::from(bytes), options)
            .await
        {
            Ok(put) => version_of(put.e_tag.as_deref(), put.version.as_deref()),
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. }
                | object_store::Error::NotModified { .. },
            ) if precondition != Precondition::None => Err(Error::Conflict {
                key: key.to_string(),
            }),
            Err(e) => Err(backend(e)),
        }
    }

    /// Deletes a document if `precondition` holds; returns whether it existed.
    ///
    /// The document's current ETag is read with a HEAD and checked against `precondition`.
    /// For stores built with [`S3Store::new`], the DELETE then carries `If-Match` with that
    /// ETag, so on servers with conditional deletes (AWS S3 since 2025, moto) a document
    /// changed in between is never deleted: the call fails with [`Error::Conflict`] instead.
    /// On servers that ignore `If-Match` on DELETE, and for stores built with
    /// [`S3Store::from_object_store`], the DELETE is unconditional, and an update landing
    /// between the HEAD and the DELETE (milliseconds) is deleted with the document.
    async fn delete_document(&self, key: &DocumentKey, precondition: Precondition) -> Result<bool> {
        let path = self.document_key(key)?;
        let conflict = || Error::Conflict {
            key: key.to_string(),
        };
        if precondition == Precondition::None {
            return self.delete_existing(&path).await;
        }
        let current = self.head(&path).await?;
        match (&precondition, current) {
            (Precondition::MustNotExist, None) => Ok(false),
            (Precondition::Matches(version), Some(meta)) if &meta_version(&meta)? == version => {
                // `false`: it changed between the HEAD and the DELETE.
                if self.delete_seen(&path, &meta).await? {
                    Ok(true)
                } else {
                    Err(conflict())
                }
            }
            _ => Err(conflict()),
        }
    }

    async fn list_documents(&self, prefix: &str) -> Result<Vec<DocumentKey>> {
        let prefix = prefix.trim_end_matches('/');
        let mut keys = Vec::new();
        let mut add = |meta: &ObjectMeta| {
            let key = self
                .relative(&meta.location)
                .and_then(|k| DocumentKey::new(k).ok())
                .filter(|key| key.is_under(prefix));
            keys.extend(key);
        };
        if prefix.is_empty() {
            // One level with a delimiter first, so `blobs/` (possibly millions of objects)
            // and `.ocikit/` are never listed.
            let root = self.key("")?;
            let root = (!root.as_ref().is_empty()).then_some(root);
            let top = self
                .store
                .list_with_delimiter(root.as_ref())
                .await
                .map_err(backend)?;
            for meta in &top.objects {
                add(meta);
            }
            for directory in &top.common_prefixes {
                let descend = self
                    .relative(directory)
                    .is_some_and(|name| DocumentKey::new(name).is_ok());
                if descend {
                    let found: Vec<ObjectMeta> = self
                        .store
                        .list(Some(directory))
                        .try_collect()
                        .await
                        .map_err(backend)?;
                    found.iter().for_each(&mut add);
                }
            }
        } else {
            // No key can lie under a prefix that is not itself a valid key.
            if DocumentKey::new(prefix).is_err() {
                return Ok(Vec::new());
            }
            let base = self.key(prefix)?;
            if let Some(meta) = self.head(&base).await? {
                add(&meta);
            }
            let found: Vec<ObjectMeta> = self
                .store
                .list(Some(&base))
                .try_collect()
                .await
                .map_err(backend)?;
            found.iter().for_each(&mut add);
        }
        keys.sort();
        keys.dedup();
        Ok(keys)
    }

    /// One `ListObjectsV2` per 1,000 keys of the page, starting after `after` (`start-after`),
    /// however many documents the prefix holds. An `after` with characters no key has is
    /// cut to its longest prefix that can start a listing, and what that lets through is
    /// filtered out here.
    async fn list_documents_after(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DocumentKey>> {
        let prefix = prefix.trim_end_matches('/');
        // The whole listing knows to avoid `blobs/` and `.ocikit/` at the root.
        if prefix.is_empty() {
            let keys = self.list_documents(prefix).await?;
            return Ok(crate::store::page_of(keys, prefix, after, limit));
        }
        if DocumentKey::new(prefix).is_err() || limit == 0 {
            return Ok(Vec::new());
        }
        let base = self.key(prefix)?;
        let under = format!("{prefix}/");
        let start = match after {
            Some(after) if after >= under.as_str() => {
                let Some(rest) = after.strip_prefix(under.as_str()) else {
                    // Greater than `prefix/` without starting with it: after every key.
                    return Ok(Vec::new());
                };
                self.start_after(&under, rest)?
            }
            _ => None,
        };
        let mut listing = match &start {
            Some(start) => self.store.list_with_offset(Some(&base), start),
            None => self.store.list(Some(&base)),
        };
        let mut keys = Vec::new();
        while keys.len() < limit {
            let Some(meta) = listing.try_next().await.map_err(backend)? else {
                break;
            };
            let key = self
                .relative(&meta.location)
                .and_then(|k| DocumentKey::new(k).ok())
                .filter(|k| k.is_under(prefix) && k.as_str() != prefix)
                .filter(|k| after.is_none_or(|after| k.as_str() > after));
            keys.extend(key);
        }
        Ok(keys)
    }
}

impl S3Store {
    /// The `start-after` of a page whose keys are `under` (`prefix/`) followed by more than
    /// `rest`: the longest prefix of `under` + `rest` that is a valid object path made of
    /// key characters (at most `rest`'s first 600 bytes), so no key after `under` + `rest`
    /// is skipped; `None` to start at the first key.
    fn start_after(&self, under: &str, rest: &str) -> Result<Option<Path>> {
        let mut rest: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'))
            .take(600)
            .collect();
        while !rest.is_empty() {
            if let Ok(path) = Path::parse(format!("{under}{rest}")) {
                return Ok(Some(self.key(path.as_ref())?));
            }
            rest.pop();
        }
        Ok(None)
    }
}

/// A unique name for a temp object: time, process and 64 random bits.
fn temp_name() -> String {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    // `RandomState` is seeded from the OS's randomness, and differs at every call.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u128(nanos);
    format!(
        "blob-{nanos:x}-{:x}-{:016x}",
        std::process::id(),
        hasher.finish()
    )
}

/// Where a staging area's bytes are.
enum Upload {
    /// Fewer than one part's bytes so far, all in memory; nothing sent yet.
    Buffer(BytesMut),
    /// The multipart upload of the temp object is being created; its first part waits here.
    Creating {
        first: Bytes,
        created: BoxFuture<'static, object_store::Result<Box<dyn MultipartUpload>>>,
    },
    /// Parts are streaming; `in_part` bytes of the current part are buffered.
    Parts {
        writer: WriteMultipart,
        in_part: usize,
    },
    /// A request failed; the upload (if one was created) is kept to be aborted.
    Failed(Option<WriteMultipart>),
    /// Published, aborted or being dropped.
    Done,
}

/// A blob being staged: in memory below one part, then in a multipart upload of a temp
/// object under `.ocikit/tmp/`.
struct S3Staging {
    store: S3Store,
    temp: Path,
    upload: Upload,
}

fn failed_earlier() -> io::Error {
    io::Error::other("an earlier upload to the object store failed")
}

fn no_runtime() -> io::Error {
    io::Error::other("S3 uploads need a running tokio runtime")
}

impl S3Staging {
    /// Drives the creation of the multipart upload, then hands it the first part.
    fn poll_created(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Upload::Creating { first, created } = &mut self.upload else {
            return Poll::Ready(Ok(()));
        };
        match ready!(created.as_mut().poll(cx)) {
            Ok(upload) => {
                let mut writer = WriteMultipart::new_with_chunk_size(upload, self.store.part_size);
                if tokio::runtime::Handle::try_current().is_err() {
                    self.upload = Upload::Failed(Some(writer));
                    return Poll::Ready(Err(no_runtime()));
                }
                writer.put(std::mem::take(first));
                self.upload = Upload::Parts { writer, in_part: 0 };
                Poll::Ready(Ok(()))
            }
            Err(e) => {
                self.upload = Upload::Failed(None);
                Poll::Ready(Err(io::Error::other(e)))
            }
        }
    }

    /// Waits until fewer than `max` parts are in flight.
    fn poll_capacity(&mut self, cx: &mut Context<'_>, max: usize) -> Poll<io::Result<()>> {
        let Upload::Parts { writer, .. } = &mut self.upload else {
            return Poll::Ready(Ok(()));
        };
        match ready!(writer.poll_for_capacity(cx, max)) {
            Ok(()) => Poll::Ready(Ok(())),
            Err(e) => {
                if let Upload::Parts { writer, .. } =
                    std::mem::replace(&mut self.upload, Upload::Done)
                {
                    self.upload = Upload::Failed(Some(writer));
                }
                Poll::Ready(Err(io::Error::other(e)))
            }
        }
    }
}

impl AsyncWrite for S3Staging {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let part_size = this.store.part_size;
        loop {
            match &mut this.upload {
                Upload::Buffer(buffer) => {
                    let n = (part_size - buffer.len()).min(buf.len());
                    buffer.extend_from_slice(&buf[..n]);
                    if buffer.len() == part_size {
                        // One whole part: from now on the bytes stream to the object store.
                        let first = std::mem::take(buffer).freeze();
                        let store = this.store.store.clone();
                        let temp = this.temp.clone();
                        let created = Box::pin(async move {
                            store
                                .put_multipart_opts(&temp, PutMultipartOptions::default())
                                .await
                        });
                        this.upload = Upload::Creating { first, created };
                    }
                    return Poll::Ready(Ok(n));
                }
                Upload::Creating { .. } => ready!(this.poll_created(cx))?,
                Upload::Parts { .. } => {
                    // Backpressure: never more than `upload_concurrency` parts in flight.
                    ready!(this.poll_capacity(cx, this.store.upload_concurrency))?;
                    let Upload::Parts { writer, in_part } = &mut this.upload else {
                        continue;
                    };
                    let n = (part_size - *in_part).min(buf.len());
                    if *in_part + n == part_size && tokio::runtime::Handle::try_current().is_err() {
                        return Poll::Ready(Err(no_runtime()));
                    }
                    // Starts uploading a part (in a task) when it is full, never more than one.
                    writer.write(&buf[..n]);
                    *in_part = (*in_part + n) % part_size;
                    return Poll::Ready(Ok(n));
                }
                Upload::Failed(_) | Upload::Done => return Poll::Ready(Err(failed_earlier())),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Waits for the parts in flight (a partial part stays buffered: S3 parts have a
        // minimum size), surfacing their errors.
        let this = self.get_mut();
        loop {
            match &this.upload {
                Upload::Buffer(_) | Upload::Done => return Poll::Ready(Ok(())),
                Upload::Creating { .. } => ready!(this.poll_created(cx))?,
                Upload::Parts { .. } => return this.poll_capacity(cx, 0),
                Upload::Failed(_) => return Poll::Ready(Err(failed_earlier())),
            }
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_flush(cx)
    }
}

#[async_trait::async_trait]
impl Staging for S3Staging {
    async fn publish(mut self: Box<Self>, digest: &Digest, size: u64) -> Result<()> {
        let target = self.store.blob_key(digest)?;
        match std::mem::replace(&mut self.upload, Upload::Done) {
            Upload::Buffer(buffer) => {
                // One PUT: the blob appears whole or not at all. Overwriting a stored copy
                // (a re-upload, or a concurrent publisher's) is harmless, the bytes are the
                // same, and it renews the blob's `LastModified` (see the module docs).
                self.store
                    .store
                    .put_opts(
                        &target,
                        PutPayload::from(buffer.freeze()),
                        PutOptions::default(),
                    )
                    .await
                    .map_err(backend)?;
                Ok(())
            }
            Upload::Creating { first, created } => {
                let upload = created.await.map_err(backend)?;
                let mut writer = WriteMultipart::new_with_chunk_size(upload, self.store.part_size);
                writer.put(first);
                self.store
                    .publish_multipart(&self.temp, writer, &target, size)
                    .await
            }
            Upload::Parts { writer, .. } => {
                self.store
                    .publish_multipart(&self.temp, writer, &target, size)
                    .await
            }
            Upload::Failed(writer) => {
                if let Some(writer) = writer {
                    writer.abort().await.ok();
                }
                Err(Error::Stream(failed_earlier()))
            }
            Upload::Done => Err(Error::Stream(io::Error::other("staging area already used"))),
        }
    }

    async fn abort(mut self: Box<Self>) -> Result<()> {
        match std::mem::replace(&mut self.upload, Upload::Done) {
            Upload::Buffer(_) | Upload::Done | Upload::Failed(None) => Ok(()),
            Upload::Creating { created, .. } => match created.await {
                Ok(mut upload) => upload.abort().await.map_err(backend),
                Err(_) => Ok(()),
            },
            Upload::Parts { writer, .. } | Upload::Failed(Some(writer)) => {
                writer.abort().await.map_err(backend)
            }
        }
    }
}

impl Drop for S3Staging {
    fn drop(&mut self) {
        // Neither published nor aborted: abort the multipart upload in the background, so
        // its parts are not kept (and billed). Without a runtime, the bucket's lifecycle rule
        // has to.
        let cleanup: BoxFuture<'static, ()> =
            match std::mem::replace(&mut self.upload, Upload::Done) {
                Upload::Buffer(_) | Upload::Done | Upload::Failed(None) => return,
                Upload::Creating { created, .. } => Box::pin(async move {
                    if let Ok(mut upload) = created.await {
                        upload.abort().await.ok();
                    }
                }),
                Upload::Parts { writer, .. } | Upload::Failed(Some(writer)) => {
                    Box::pin(async move {
                        writer.abort().await.ok();
                    })
                }
            };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(cleanup);
        }
    }
}
