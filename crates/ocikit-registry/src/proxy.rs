//! The pull-through cache: a registry in front of an upstream registry ([`Proxy`],
//! [`crate::Config::proxy`]), as Distribution's `proxy.remoteurl` and zot's on-demand sync.
//!
//! This crate has no HTTP client: the upstream is whatever implements [`Upstream`]
//! (`ocikit-transport`'s `proxy` feature implements it over `ocikit-client`, with
//! credentials and TLS from the usual places). What the cache does with it:
//!
//! - **Manifests by digest are cached for good**: once fetched and checked against the
//!   digest, they are served from the store without asking the upstream again.
//! - **Tags are revalidated after a TTL** ([`Proxy::tag_ttl`], by default
//!   [`DEFAULT_TAG_TTL`], zero: every pull of a tag asks the upstream, as Distribution's
//!   proxy does). A tag validated less than the TTL ago is served from the cache; after it,
//!   the upstream is asked and the tag moved to what it says now.
//! - **Blobs stream to the client while they are verified and stored**: the bytes from the
//!   upstream go into a verifying [`ocikit_store::BlobWriter`] and to the client at once;
//!   the last chunk is held back until the digest and size matched and the blob was
//!   published, so a client never receives a whole body whose bytes do not match (it sees
//!   the response break off), and nothing unverified is ever stored.
//! - **One upstream fetch per blob at a time**: concurrent requests of a blob being
//!   fetched wait for that fetch and are then served from the store. The fetch runs on a
//!   task of its own, so it completes (and caches) even if the client that started it
//!   goes away.
//! - **Cached content is served while the upstream is down**: a tag that cannot be
//!   revalidated (the upstream unreachable, or refusing) is served as last cached; only
//!   content never cached fails: a blob or a manifest by digest with 503 `UNAVAILABLE`, a
//!   tag with 404 `MANIFEST_UNKNOWN` (as Distribution's proxy answers, so that clients
//!   probing optional tags, signatures and referrers, see them absent).
//! - **Read-only**: pushes and deletions are refused with 405 `UNSUPPORTED`, as
//!   Distribution refuses them in proxy mode.
//!
//! Tag lists, the catalog and referrers answer from what the cache holds. A `HEAD` of an
//! uncached blob asks the upstream for its size and stores nothing; a `Range` request for
//! one gets the whole blob (which the spec allows). Requests that join a fetch wait for it
//! to finish before their bytes start.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;
use ocikit_digest::Digest;

use crate::Result;

/// What [`Proxy::new`] revalidates tags after: zero, every pull of a tag asks the upstream
/// (Distribution's proxy asks it for every tag and falls back to the cache when it cannot
/// answer).
pub const DEFAULT_TAG_TTL: Duration = Duration::ZERO;

/// A manifest or index as an upstream served it.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct UpstreamManifest {
    /// Its media type.
    pub media_type: String,
    /// Its exact bytes (the cache hashes them itself).
    pub bytes: Bytes,
}

impl UpstreamManifest {
    /// A manifest of `media_type` with `bytes`.
    pub fn new(media_type: impl Into<String>, bytes: Bytes) -> UpstreamManifest {
        UpstreamManifest {
            media_type: media_type.into(),
            bytes,
        }
    }
}

/// A blob an upstream is sending: the size it declared and its bytes as they arrive.
#[non_exhaustive]
pub struct UpstreamBlob {
    /// The size declared (the bytes must add up to it).
    pub size: u64,
    /// The bytes, unverified; an error ends them.
    pub bytes: BoxStream<'static, Result<Bytes>>,
}

impl UpstreamBlob {
    /// A blob of `size` bytes arriving as `bytes`.
    pub fn new(size: u64, bytes: BoxStream<'static, Result<Bytes>>) -> UpstreamBlob {
        UpstreamBlob { size, bytes }
    }
}

impl fmt::Debug for UpstreamBlob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamBlob")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// The registry a pull-through cache fetches from. Errors are this crate's:
/// [`crate::Error::UpstreamNotFound`] for content the upstream does not have,
/// [`crate::Error::UpstreamUnavailable`] when it cannot be asked, and
/// [`crate::Error::UpstreamContent`] for what it served wrong. Nothing an implementation
/// returns is trusted: the cache verifies every digest and size itself.
#[async_trait::async_trait]
pub trait Upstream: fmt::Debug + Send + Sync {
    /// The upstream's name, for messages and logs (`host:port`).
    fn name(&self) -> &str;

    /// The manifest or index `reference` (a tag or a digest) of `repository`.
    async fn manifest(&self, repository: &str, reference: &str) -> Result<UpstreamManifest>;

    /// The size of blob `digest` of `repository` (a `HEAD`).
    async fn blob_size(&self, repository: &str, digest: &Digest) -> Result<u64>;

    /// Starts sending blob `digest` of `repository`.
    async fn blob(&self, repository: &str, digest: &Digest) -> Result<UpstreamBlob>;
}

/// A pull-through cache's settings and its shared state (the fetches in flight, when each
/// tag was last validated); set it as [`crate::Config::proxy`]. Clones share the state.
#[derive(Clone)]
pub struct Proxy {
    pub(crate) upstream: Arc<dyn Upstream>,
    pub(crate) tag_ttl: Duration,
    pub(crate) state: Arc<State>,
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("upstream", &self.upstream.name())
            .field("tag_ttl", &self.tag_ttl)
            .finish_non_exhaustive()
    }
}

impl Proxy {
    /// A cache of `upstream`, revalidating tags after [`DEFAULT_TAG_TTL`].
    pub fn new(upstream: Arc<dyn Upstream>) -> Proxy {
        Proxy {
            upstream,
            tag_ttl: DEFAULT_TAG_TTL,
            state: Arc::new(State::default()),
        }
    }

    /// Serves a tag from the cache for `ttl` after it was last validated with the upstream.
    pub fn tag_ttl(mut self, ttl: Duration) -> Proxy {
        self.tag_ttl = ttl;
        self
    }

    /// The upstream.
    pub fn upstream(&self) -> &Arc<dyn Upstream> {
        &self.upstream
    }

    /// How long a validated tag is served from the cache.
    pub fn ttl(&self) -> Duration {
        self.tag_ttl
    }

    /// Blob fetches from the upstream started since this proxy was made (each concurrent
    /// request of one blob counts once).
    pub fn blob_fetches(&self) -> u64 {
        self.state
            .fetches
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Where a blob fetch stands, for the requests waiting on it.
#[derive(Clone, Debug)]
pub(crate) enum Flight {
    Running,
    /// Fetched, verified, stored and linked.
    Stored,
    /// Failed; the reason, for the waiters' responses.
    Failed(Arc<crate::Error>),
}

#[derive(Default)]
pub(crate) struct State {
    /// Blob fetches in flight, by repository and digest.
    pub(crate) flights: Mutex<HashMap<(String, Digest), tokio::sync::watch::Receiver<Flight>>>,
    /// When each (repository, tag) was last validated with the upstream (ms since the epoch).
    pub(crate) validated: Mutex<HashMap<(String, String), u64>>,
    /// Blob fetches started.
    pub(crate) fetches: std::sync::atomic::AtomicU64,
}

impl State {
    /// Whether `name:tag` was validated less than `ttl` before `now_ms`.
    pub(crate) fn fresh(&self, name: &str, tag: &str, ttl: Duration, now_ms: u64) -> bool {
        if ttl.is_zero() {
            return false;
        }
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        self.validated
            .lock()
            .ok()
            .and_then(|v| v.get(&(name.to_owned(), tag.to_owned())).copied())
            .is_some_and(|at| now_ms.saturating_sub(at) < ttl_ms)
    }

    pub(crate) fn validate(&self, name: &str, tag: &str, now_ms: u64) {
        if let Ok(mut v) = self.validated.lock() {
            v.insert((name.to_owned(), tag.to_owned()), now_ms);
        }
    }
}

/// The fetch a request joins or starts.
pub(crate) enum Joined {
    /// This request starts the fetch: it must run it and report to `done`.
    Leader(FlightGuard),
    /// A fetch is running: wait on this.
    Follower(tokio::sync::watch::Receiver<Flight>),
}

/// The leader's end of a fetch: reports its outcome and leaves the table when dropped
/// (a fetch that ends without a report counts as failed).
pub(crate) struct FlightGuard {
    state: Arc<State>,
    key: (String, Digest),
    done: tokio::sync::watch::Sender<Flight>,
}

impl FlightGuard {
    pub(crate) fn finish(&self, outcome: Flight) {
        self.done.send_replace(outcome);
    }
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        if matches!(*self.done.borrow(), Flight::Running) {
            self.done
                .send_replace(Flight::Failed(Arc::new(crate::Error::UpstreamContent {
                    upstream: String::new(),
                    reason: "the fetch was abandoned".into(),
                })));
        }
        if let Ok(mut flights) = self.state.flights.lock() {
            flights.remove(&self.key);
        }
    }
}

impl Proxy {
    /// Joins the fetch of `digest` for `name`, or starts one.
    pub(crate) fn join(&self, name: &str, digest: &Digest) -> Joined {
        let key = (name.to_owned(), digest.clone());
        let Ok(mut flights) = self.state.flights.lock() else {
            // A poisoned table (a panic elsewhere): fetch without sharing.
            let (done, _) = tokio::sync::watch::channel(Flight::Running);
            return Joined::Leader(FlightGuard {
                state: self.state.clone(),
                key,
                done,
            });
        };
        if let Some(running) = flights.get(&key) {
            return Joined::Follower(running.clone());
        }
        let (done, watch) = tokio::sync::watch::channel(Flight::Running);
        flights.insert(key.clone(), watch);
        self.state
            .fetches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Joined::Leader(FlightGuard {
            state: self.state.clone(),
            key,
            done,
        })
    }
}
