//! An OCI Distribution Spec v1.1 registry server over any ocikit store. (The client that
//! pulls images from registries into layouts and pushes them back is the `ocikit-client`
//! crate.)
//!
//! This crate sits on top of `ocikit-store` (blobs and compare-and-swap documents) and
//! `ocikit-digest` (digests, the name and tag grammars): a [`Registry`] serves the spec's
//! pull, push, content-discovery and content-management endpoints over HTTP (axum on hyper,
//! tokio) from a content store and a separate upload store.
//!
//! - **Repositories are isolated.** Blobs are stored once, by digest, but a blob or manifest
//!   is visible in a repository only if it was pushed or mounted there; what each repository
//!   holds is kept in documents of the content store ([`keys`] gives the scheme), changed by
//!   compare-and-swap, so several processes may serve one store (one S3 bucket).
//! - **Uploads stream and survive restarts.** Every chunk goes straight to the upload store;
//!   memory does not grow with blob size, and a session started on one process can be
//!   finished on another, or after a restart. Content is published only once it matches the
//!   client's digest (sha256 or sha512).
//! - **Garbage collection runs online** ([`Registry::gc`]): per repository or across all,
//!   while pushes go on; a grace period and re-checks protect what is being pushed.
//! - **Manifests are stored byte for byte** and served with the media type they were pushed
//!   with; referrers are indexed as manifests with a `subject` arrive.
//! - **What `ocikit serve` does is one call**: [`serve`] opens a [`Storage`] (a directory,
//!   or with the `s3` feature a bucket: `S3Location`), checks its stores, serves HTTP or
//!   HTTPS until shutdown and collects garbage on an interval
//!   ([`Registry::spawn_periodic_gc`]); [`Users::from_htpasswd_files`] reads its users and
//!   [`Storage::collect_garbage`] is `ocikit registry-gc`.
//!
//! ```no_run
//! # async fn run() -> Result<(), ocikit_registry::Error> {
//! use ocikit_registry::Registry;
//!
//! let registry = Registry::open("/var/lib/registry").await?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:5000")
//!     .await
//!     .map_err(ocikit_registry::Error::Serve)?;
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! // ... hand `stop` to whatever decides when to shut down ...
//! # drop(stop);
//! registry
//!     .serve(listener, async {
//!         stopped.await.ok();
//!     })
//!     .await?;
//! # Ok(())
//! # }
//! ```

pub mod access;
mod access_log;
mod auth;
mod conn;
mod counted;
mod drain;
mod error;
#[cfg(feature = "__fuzz")]
#[doc(hidden)]
pub mod fuzz;
pub mod gc;
mod handlers;
pub mod keys;
pub mod lease;
mod limits;
mod live;
mod meta;
pub mod metrics;
pub mod proxy;
mod route;
mod serve;
mod storage;
mod tls;
pub mod token;
mod upload;

use std::collections::HashSet;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ocikit_digest::Digest;
use ocikit_store::{FsStore, Store};

pub use access::{AccessPolicy, Action};
pub use access_log::TARGET as ACCESS_LOG_TARGET;
pub use auth::{Access, Users};
pub use error::{Error, ErrorCode, Result};
pub use gc::{GcOptions, GcOptionsError, GcReport, RepositoryGc};
pub use lease::{GcLease, GcLeaseError, LeaseOptions};
pub use limits::{Limits, Rate};
pub use metrics::MetricsToken;
/// The wall clock upload TTLs and the GC grace period are judged by (see [`Config::clock`]).
pub use ocikit_store::Clock;
pub use proxy::{Proxy, Upstream};
pub use serve::{MIN_GC_INTERVAL, PeriodicGc, ServeEvent, ServeOptions, serve};
#[cfg(feature = "s3")]
pub use storage::S3Location;
pub use storage::{DEFAULT_S3_PREFIX, Storage};
pub use tls::TlsConfig;
pub use token::{Claims, Grant, LEEWAY, MAX_TOKEN_LEN, TokenAuth, TokenRejection};
pub use upload::SweepReport;

/// The write queue, in MiB, of the filesystem stores [`Registry::open`] opens (see
/// `FsStore::with_write_queue`): a chunked upload feeds two writers at once (its scratch
/// chunk and the live content writer), so this bounds an upload's buffers to about twice
/// this much even when the writer threads fall behind.
pub const FS_WRITE_QUEUE_MIB: usize = 8;

/// A registry's limits and switches.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    /// Largest manifest accepted, in bytes; larger pushes get 413. The spec asks for at least
    /// 4 MiB; the default is 8 MiB.
    pub max_manifest_size: usize,
    /// Largest blob one upload session may receive, in bytes (default 64 GiB).
    pub max_upload_size: u64,
    /// How long an upload session may sit idle before it expires (default one hour).
    pub upload_ttl: Duration,
    /// How often [`Registry::serve`] sweeps the upload store (default five minutes).
    pub sweep_interval: Duration,
    /// Whether manifests, tags and blobs may be deleted (default true); when false, DELETE
    /// gets 405 `UNSUPPORTED`.
    pub delete_enabled: bool,
    /// Most entries in one page of tags or catalog; larger `n` is clamped, and a `Link`
    /// header points at the rest (default 1000).
    pub max_page_size: usize,
    /// How long a request body may stall (no bytes arriving) before the request is refused
    /// with 400 and its partial content discarded (default one minute). This bounds what a
    /// client declaring a larger `Content-Length` than it sends can hold.
    pub body_idle_timeout: Duration,
    /// Refuses every request that would change something (pushes, deletions) with 405
    /// `UNSUPPORTED`, for maintenance windows and mirrors (default false).
    pub read_only: bool,
    /// Who may pull and push; `None` (the default) lets anyone do anything. With users, a
    /// request without valid credentials gets 401 `UNAUTHORIZED` and a `WWW-Authenticate:
    /// Basic` challenge, and a pull-only user who pushes gets 403 `DENIED`.
    pub users: Option<Arc<Users>>,
    /// With [`Config::users`], lets requests without credentials pull (default false).
    /// The base endpoint `GET /v2/` still answers them with 401 and the challenge, as
    /// Distribution does: clients such as skopeo ping it first and send their credentials
    /// only if it challenges them, so without that they could never push. A `Basic` header
    /// with an empty name and password (what such clients send after a challenge when they
    /// have no credentials) counts as none.
    pub anonymous_read: bool,
    /// Per-repository rules for [`Config::users`] and their groups, and what requests
    /// without credentials may pull (see [`AccessPolicy`]); `None` (the default): every
    /// user may do what their [`Access`] allows everywhere. With a policy, a user it
    /// refuses gets 403 `DENIED`, a request without credentials 401 and the challenge, and
    /// [`Config::anonymous_read`] is not consulted.
    pub access: Option<Arc<AccessPolicy>>,
    /// Docker token authentication (see [`TokenAuth`]): requests need a bearer token its
    /// keys verify, granting the scope they need; without one they get 401 and a `Bearer`
    /// challenge naming the realm, the service and that scope. When set, it alone decides:
    /// [`Config::users`], [`Config::access`] and [`Config::anonymous_read`] are not
    /// consulted. `None` by default.
    pub token: Option<Arc<TokenAuth>>,
    /// The clock upload sessions expire by (default the system clock; tests pass one they
    /// move past [`Config::upload_ttl`]).
    pub clock: Clock,
    /// What keeps [`Registry::serve`] answering honest clients under hostile load: timeouts,
    /// connection caps, upload session caps, rate limits (see [`Limits`] for each default).
    pub limits: Limits,
    /// Serves `/metrics` ([`Registry::metrics_text`]) on the registry's own routes to
    /// requests bearing this secret (`Authorization: Bearer ...`); others get 401. `None`
    /// (the default): `/metrics` is not among the registry's routes, so the metrics are
    /// never public there ([`Registry::metrics_router`] serves them on a listener of its own).
    pub metrics_token: Option<MetricsToken>,
    /// How long, once a server is told to stop, requests in flight (a slow upload) may run
    /// before they are cut off and the server returns (default 30 s). No new connection is
    /// accepted meanwhile.
    pub shutdown_timeout: Duration,
    /// Makes the registry a pull-through cache of an upstream registry (see [`proxy`]):
    /// what clients pull is fetched from the upstream, verified and cached; pushes and
    /// deletions are refused with 405 `UNSUPPORTED`. `None` (the default): a registry of its
    /// own.
    pub proxy: Option<Proxy>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            max_manifest_size: 8 << 20,
            max_upload_size: 64 << 30,
            upload_ttl: Duration::from_secs(3600),
            sweep_interval: Duration::from_secs(300),
            delete_enabled: true,
            max_page_size: 1000,
            body_idle_timeout: Duration::from_secs(60),
            read_only: false,
            users: None,
            anonymous_read: false,
            access: None,
            token: None,
            clock: Clock::system(),
            limits: Limits::default(),
            metrics_token: None,
            shutdown_timeout: Duration::from_secs(30),
            proxy: None,
        }
    }
}

impl Config {
    /// Sets [`Config::max_manifest_size`].
    pub fn max_manifest_size(mut self, bytes: usize) -> Config {
        self.max_manifest_size = bytes;
        self
    }

    /// Sets [`Config::max_upload_size`].
    pub fn max_upload_size(mut self, bytes: u64) -> Config {
        self.max_upload_size = bytes;
        self
    }

    /// Sets [`Config::upload_ttl`].
    pub fn upload_ttl(mut self, ttl: Duration) -> Config {
        self.upload_ttl = ttl;
        self
    }

    /// Sets [`Config::clock`].
    pub fn clock(mut self, clock: Clock) -> Config {
        self.clock = clock;
        self
    }

    /// Sets [`Config::sweep_interval`].
    pub fn sweep_interval(mut self, interval: Duration) -> Config {
        self.sweep_interval = interval;
        self
    }

    /// Sets [`Config::delete_enabled`].
    pub fn delete_enabled(mut self, enabled: bool) -> Config {
        self.delete_enabled = enabled;
        self
    }

    /// Sets [`Config::body_idle_timeout`].
    pub fn body_idle_timeout(mut self, timeout: Duration) -> Config {
        self.body_idle_timeout = timeout;
        self
    }

    /// Sets [`Config::read_only`].
    pub fn read_only(mut self, read_only: bool) -> Config {
        self.read_only = read_only;
        self
    }

    /// Sets [`Config::users`].
    pub fn users(mut self, users: Option<Users>) -> Config {
        self.users = users.map(Arc::new);
        self
    }

    /// Sets [`Config::anonymous_read`].
    pub fn anonymous_read(mut self, allowed: bool) -> Config {
        self.anonymous_read = allowed;
        self
    }

    /// Sets [`Config::access`].
    pub fn access(mut self, policy: Option<AccessPolicy>) -> Config {
        self.access = policy.map(Arc::new);
        self
    }

    /// Sets [`Config::token`].
    pub fn token(mut self, token: Option<TokenAuth>) -> Config {
        self.token = token.map(Arc::new);
        self
    }

    /// Sets [`Config::limits`].
    pub fn limits(mut self, limits: Limits) -> Config {
        self.limits = limits;
        self
    }

    /// Sets [`Config::metrics_token`].
    pub fn metrics_token(mut self, token: Option<MetricsToken>) -> Config {
        self.metrics_token = token;
        self
    }

    /// Sets [`Config::shutdown_timeout`].
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Config {
        self.shutdown_timeout = timeout;
        self
    }

    /// Sets [`Config::proxy`].
    pub fn proxy(mut self, proxy: Option<Proxy>) -> Config {
        self.proxy = proxy;
        self
    }

    /// Sets [`Config::max_page_size`].
    pub fn max_page_size(mut self, entries: usize) -> Config {
        self.max_page_size = entries.max(1);
        self
    }
}

/// An OCI distribution registry over a content store and an upload store. Cheap to clone;
/// clones share everything.
#[derive(Clone, Debug)]
pub struct Registry {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn Store>,
    uploads: Arc<dyn Store>,
    config: Config,
    /// Scratch chunks no session listed at the last sweep.
    suspects: Mutex<HashSet<Digest>>,
    /// Held by a running garbage collection: one at a time.
    gc: tokio::sync::Mutex<()>,
    /// Chunked uploads' content-store writers kept between requests.
    live: live::Live,
    /// What this registry counts (the stores above count into it).
    metrics: Arc<metrics::Metrics>,
    /// Thrown when a server of this registry stops waiting for requests in flight.
    cut_off: tokio::sync::watch::Sender<bool>,
}

impl Registry {
    /// A registry keeping content and metadata in `store`, and upload sessions and their
    /// chunks in `uploads`, which must be a different store (another directory, another
    /// bucket prefix): nothing in it is ever served, and sweeps delete what no session lists.
    pub fn new(store: Arc<dyn Store>, uploads: Arc<dyn Store>, config: Config) -> Result<Registry> {
        if std::ptr::addr_eq(Arc::as_ptr(&store), Arc::as_ptr(&uploads)) {
            return Err(Error::SharedUploadStore);
        }
        let metrics = Arc::new(metrics::Metrics::new());
        Ok(Registry {
            inner: Arc::new(Inner {
                store: Arc::new(counted::Counted::new(store, "content", metrics.clone())),
                uploads: Arc::new(counted::Counted::new(uploads, "upload", metrics.clone())),
                metrics,
                cut_off: tokio::sync::watch::Sender::new(false),
                config,
                suspects: Mutex::new(HashSet::new()),
                gc: tokio::sync::Mutex::new(()),
                live: live::Live::default(),
            }),
        })
    }

    /// A registry on a directory, with the default configuration: content in an [`FsStore`]
    /// at `root` (an OCI image layout's `blobs/`, with the registry's documents under
    /// `_registry/`), uploads in an [`FsStore`] at `root/.ocikit/registry-uploads`, inside the
    /// store's private directory where no document key or blob path can reach.
    pub async fn open(root: impl Into<PathBuf>) -> Result<Registry> {
        Registry::open_with(root, Config::default()).await
    }

    /// [`Registry::open`] with `config`.
    pub async fn open_with(root: impl Into<PathBuf>, config: Config) -> Result<Registry> {
        let root = root.into();
        let store = FsStore::open(&root)
            .await?
            .with_write_queue(FS_WRITE_QUEUE_MIB);
        let uploads = FsStore::open(root.join(".ocikit").join("registry-uploads"))
            .await?
            .with_write_queue(FS_WRITE_QUEUE_MIB);
        Registry::new(Arc::new(store), Arc::new(uploads), config)
    }

    /// The content store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The upload store.
    pub fn upload_store(&self) -> &Arc<dyn Store> {
        &self.inner.uploads
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Checks that both stores answer, with a read of a document that never exists and a
    /// listing under a prefix that holds nothing: a store that cannot serve (an S3 bucket
    /// that does not exist, credentials it refuses, a directory that cannot be read) fails
    /// here with the store's error ([`Error::StoreUnavailable`]), so a server can refuse to
    /// start instead of answering every push with 500. `/healthz` runs the same check.
    pub async fn check_stores(&self) -> Result<()> {
        let key = ocikit_store::DocumentKey::new(keys::HEALTH_PROBE)?;
        for (which, store) in [
            ("content", &self.inner.store),
            ("upload", &self.inner.uploads),
        ] {
            let probe = async {
                store.document_version(&key).await?;
                store.list_documents(keys::HEALTH_PROBE).await
            };
            probe
                .await
                .map_err(|source| Error::StoreUnavailable { which, source })?;
        }
        Ok(())
    }

    /// The HTTP routes, for embedding in a larger axum application or serving with
    /// [`Registry::serve`]: the distribution API under `/v2/`, and `/healthz` (200 when the
    /// store answers, 503 when it does not; never behind authentication), and `/metrics`
    /// with [`Config::metrics_token`]. Every request is logged through `tracing` once its
    /// response is sent ([`ACCESS_LOG_TARGET`]: client address, user, method, path, status,
    /// bytes in and out, whole milliseconds; see the `access_log` fields there) and counted
    /// in the [`metrics`]; a 500 response carries its cause as an `Arc<Error>` in its
    /// extensions (the body never says more than "internal server error"), and it is logged
    /// at `error` with its cause chain.
    pub fn router(&self) -> axum::Router {
        let mut routes = axum::Router::new();
        if self.inner.config.metrics_token.is_some() {
            routes = routes.route("/metrics", axum::routing::get(metrics::guarded));
        }
        routes
            .fallback(handlers::handle)
            .with_state(self.clone())
            .layer(axum::middleware::from_fn_with_state(
                drain::CutOff::of(&self.inner.cut_off),
                drain::cut_off,
            ))
            .layer(axum::middleware::from_fn_with_state(
                self.clone(),
                access_log::observe,
            ))
    }

    pub(crate) fn metrics(&self) -> &metrics::Metrics {
        &self.inner.metrics
    }

    /// Serves HTTP on `listener` until `shutdown` completes, then stops accepting, lets
    /// requests in flight finish for up to [`Config::shutdown_timeout`] (then cuts off what
    /// still runs), and returns. Sweeps the upload store every
    /// [`Config::sweep_interval`] meanwhile.
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<()> {
        self.serve_on(listener, conn::Transport::Plain, shutdown)
            .await
    }

    /// Serves HTTPS on `listener` with `tls` until `shutdown` completes (see
    /// [`Registry::serve`]). Handshakes run concurrently, each bounded to ten seconds.
    pub async fn serve_tls(
        &self,
        listener: tokio::net::TcpListener,
        tls: &TlsConfig,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<()> {
        self.serve_on(listener, conn::Transport::Tls(tls.acceptor()), shutdown)
            .await
    }

    /// The connection loop ([`conn::serve`], under [`Config::limits`]) and, meanwhile, the
    /// upload store's sweeps.
    async fn serve_on(
        &self,
        listener: tokio::net::TcpListener,
        transport: conn::Transport,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<()> {
        let sweeper = {
            let registry = self.clone();
            tokio::spawn(async move {
                let mut ticks = tokio::time::interval(registry.inner.config.sweep_interval);
                ticks.tick().await;
                loop {
                    ticks.tick().await;
                    // A failed sweep is retried at the next tick; nothing is lost meanwhile.
                    if let Err(e) = registry.sweep_uploads().await {
                        tracing::warn!(error = %error_chain(&e), "sweeping the upload store failed");
                    }
                }
            })
        };
        let (begun, signalled) = tokio::sync::oneshot::channel();
        let shutdown = async move {
            shutdown.await;
            begun.send(()).ok();
        };
        let served = drain::run_bounded(
            conn::serve(self, listener, transport, shutdown),
            signalled,
            &self.inner.cut_off,
            self.inner.config.shutdown_timeout,
        )
        .await
        .map_err(Error::Serve);
        sweeper.abort();
        served
    }

    /// Binds `addr` and serves until `shutdown` completes (see [`Registry::serve`]).
    pub async fn serve_addr(
        &self,
        addr: SocketAddr,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<()> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Bind { addr, source })?;
        self.serve(listener, shutdown).await
    }

    /// Removes expired upload sessions and their chunks, and scratch chunks that no session
    /// listed at this sweep and the previous one.
    pub async fn sweep_uploads(&self) -> Result<SweepReport> {
        self.inner.live.expire(self.inner.config.upload_ttl);
        let mut suspects = self
            .inner
            .suspects
            .lock()
            .map(|mut s| std::mem::take(&mut *s))
            .unwrap_or_default();
        let report = upload::sweep(
            self.inner.uploads.as_ref(),
            self.inner.config.upload_ttl,
            self.inner.config.clock.now_unix_ms(),
            &mut suspects,
        )
        .await;
        if let Ok(mut s) = self.inner.suspects.lock() {
            *s = suspects;
        }
        report
    }

    /// Collects garbage while the registry serves: untagged manifests (if asked), blob
    /// links no kept manifest references, and blobs no repository references, each only
    /// once older than [`GcOptions::grace`]. Safe while pushes run: the argument is in the
    /// [`gc`] module's documentation. Collections in this process run one at a time.
    ///
    /// Refuses options naming invalid or unknown repositories, or an empty list of them
    /// ([`Error::GcOptions`]); a collection while another process holds the fleet's lease
    /// ([`Error::GcLease`], see [`lease`]); and, when sweeping blobs, a content store an OCI image
    /// layout's `index.json` shares ([`Error::ForeignReferences`]). A kept manifest whose
    /// content no longer parses as one aborts the collection ([`Error::CorruptManifest`]),
    /// since what it references is unknown.
    pub async fn gc(&self, options: &GcOptions) -> Result<GcReport> {
        let outcome = self.collect(options).await;
        self.inner.metrics.gc_done(&outcome);
        outcome
    }

    async fn collect(&self, options: &GcOptions) -> Result<GcReport> {
        gc::collect(self, options).await
    }
}

/// An error and its causes, `: `-separated, for logs.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}
