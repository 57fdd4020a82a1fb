//! The pull-through cache against an upstream written here (in memory, counting what it is
//! asked, able to go down, to be slow, and to lie): caching, tag TTLs, one fetch per blob,
//! bad bytes refused, writes refused. The real upstream (docker-registry) is in the
//! transport's tests, which have a client to implement `Upstream` with.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use ocikit_digest::Digest;
use ocikit_registry::proxy::{Upstream, UpstreamBlob, UpstreamManifest};
use ocikit_registry::{Clock, Config, Error, Proxy, Registry};
use ocikit_store::{MemoryStore, Store};
use ocikit_testkit::clock::ManualClock;
use reqwest::{Method, StatusCode};

use crate::Server;

const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

#[derive(Debug, Default)]
struct Fake {
    up: AtomicBool,
    manifests: Mutex<HashMap<(String, String), Bytes>>,
    blobs: Mutex<HashMap<Digest, Bytes>>,
    /// Bytes served for a digest instead of its own (a lying upstream).
    lies: Mutex<HashMap<Digest, Bytes>>,
    manifest_calls: AtomicUsize,
    blob_calls: AtomicUsize,
    /// A pause between chunks, so that requests overlap a fetch.
    slow: Mutex<Option<Duration>>,
}

impl Fake {
    fn new() -> Arc<Fake> {
        let fake = Fake::default();
        fake.up.store(true, Ordering::SeqCst);
        Arc::new(fake)
    }

    fn down(&self) -> Error {
        Error::UpstreamUnavailable {
            upstream: "fake".into(),
            source: "connection refused".into(),
        }
    }

    fn add_blob(&self, bytes: &[u8]) -> Digest {
        let digest = Digest::sha256(bytes);
        self.blobs
            .lock()
            .unwrap()
            .insert(digest.clone(), Bytes::copy_from_slice(bytes));
        digest
    }

    /// An image of `layers` tagged `tag` in `repo`; returns the manifest's digest.
    fn add_image(&self, repo: &str, tag: &str, layers: &[&[u8]]) -> (Digest, Bytes) {
        let config = format!(r#"{{"architecture":"amd64","os":"linux","tag":"{tag}"}}"#);
        let config_digest = self.add_blob(config.as_bytes());
        let layers: Vec<serde_json::Value> = layers
            .iter()
            .map(|l| {
                serde_json::json!({
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": self.add_blob(l).as_str(),
                    "size": l.len(),
                })
            })
            .collect();
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest.as_str(),
                "size": config.len(),
            },
            "layers": layers,
        });
        let bytes = Bytes::from(serde_json::to_vec(&manifest).unwrap());
        let digest = Digest::sha256(&bytes);
        let mut manifests = self.manifests.lock().unwrap();
        manifests.insert((repo.into(), tag.into()), bytes.clone());
        manifests.insert((repo.into(), digest.to_string()), bytes.clone());
        (digest, bytes)
    }
}

#[async_trait::async_trait]
impl Upstream for Fake {
    fn name(&self) -> &str {
        "fake"
    }

    async fn manifest(
        &self,
        repository: &str,
        reference: &str,
    ) -> ocikit_registry::Result<UpstreamManifest> {
        self.manifest_calls.fetch_add(1, Ordering::SeqCst);
        if !self.up.load(Ordering::SeqCst) {
            return Err(self.down());
        }
        let found = self
            .manifests
            .lock()
            .unwrap()
            .get(&(repository.to_owned(), reference.to_owned()))
            .cloned();
        found
            .map(|bytes| UpstreamManifest::new(MANIFEST, bytes))
            .ok_or_else(|| Error::UpstreamNotFound {
                upstream: "fake".into(),
                what: format!("manifest {repository}:{reference}"),
            })
    }

    async fn blob_size(&self, _: &str, digest: &Digest) -> ocikit_registry::Result<u64> {
        if !self.up.load(Ordering::SeqCst) {
            return Err(self.down());
        }
        let found = self.blobs.lock().unwrap().get(digest).map(|b| b.len());
        found
            .map(|n| n as u64)
            .ok_or_else(|| Error::UpstreamNotFound {
                upstream: "fake".into(),
                what: format!("blob {digest}"),
            })
    }

    async fn blob(&self, _: &str, digest: &Digest) -> ocikit_registry::Result<UpstreamBlob> {
        self.blob_calls.fetch_add(1, Ordering::SeqCst);
        if !self.up.load(Ordering::SeqCst) {
            return Err(self.down());
        }
        let lie = self.lies.lock().unwrap().get(digest).cloned();
        let Some(bytes) = lie.or_else(|| self.blobs.lock().unwrap().get(digest).cloned()) else {
            return Err(Error::UpstreamNotFound {
                upstream: "fake".into(),
                what: format!("blob {digest}"),
            });
        };
        let size = bytes.len() as u64;
        let pause = *self.slow.lock().unwrap();
        let chunks: Vec<Bytes> = bytes.chunks(64 << 10).map(Bytes::copy_from_slice).collect();
        let stream = futures::stream::iter(chunks).then(move |chunk| async move {
            if let Some(pause) = pause {
                tokio::time::sleep(pause).await;
            }
            Ok(chunk)
        });
        Ok(UpstreamBlob::new(size, stream.boxed()))
    }
}

async fn proxy_server(fake: &Arc<Fake>, ttl: Duration, clock: &ManualClock) -> Server {
    let proxy = Proxy::new(fake.clone()).tag_ttl(ttl);
    let config = Config::default()
        .proxy(Some(proxy))
        .clock(Clock::from_fn(clock.reader()));
    let registry = Registry::new(
        Arc::new(MemoryStore::new()),
        Arc::new(MemoryStore::new()),
        config,
    )
    .unwrap();
    Server::start(registry).await
}

fn layer(seed: u64, len: usize) -> Vec<u8> {
    ocikit_testkit::prng::bytes(seed, len)
}

async fn get(server: &Server, path: &str) -> (StatusCode, Bytes) {
    let resp = server.send(Method::GET, path).await;
    let status = resp.status();
    (status, resp.bytes().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_proxy_caches_what_it_serves_and_serves_it_while_the_upstream_is_down() {
    let fake = Fake::new();
    let (l1, l2) = (layer(1, 300_000), layer(2, 5_000));
    let (digest, bytes) = fake.add_image("lib/app", "v1", &[&l1, &l2]);
    let clock = ManualClock::starting_now();
    let server = proxy_server(&fake, Duration::ZERO, &clock).await;

    let (status, body) = get(&server, "/v2/lib/app/manifests/v1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, bytes);
    for l in [&l1, &l2] {
        let path = format!("/v2/lib/app/blobs/{}", Digest::sha256(l));
        let (status, body) = get(&server, &path).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(&body[..], &l[..]);
    }
    // Stored, verified, linked into the repository.
    let store = server.registry.store();
    assert_eq!(
        store.stat(&Digest::sha256(&l1)).await.unwrap(),
        Some(300_000)
    );
    assert_eq!(store.stat(&digest).await.unwrap(), Some(bytes.len() as u64));
    assert_eq!(fake.blob_calls.load(Ordering::SeqCst), 2);

    // Upstream down: the tag (TTL zero: revalidated every time) falls back to the cache, and
    // everything else is served from it.
    fake.up.store(false, Ordering::SeqCst);
    let (status, body) = get(&server, "/v2/lib/app/manifests/v1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, bytes);
    let (status, body) = get(&server, &format!("/v2/lib/app/manifests/{digest}")).await;
    assert_eq!((status, body), (StatusCode::OK, bytes.clone()));
    let (status, body) = get(
        &server,
        &format!("/v2/lib/app/blobs/{}", Digest::sha256(&l1)),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&body[..], &l1[..]);
    assert_eq!(
        fake.blob_calls.load(Ordering::SeqCst),
        2,
        "blobs come from the cache"
    );
    // What was never cached: a blob or a manifest by digest is 503 UNAVAILABLE while the
    // upstream is down; a tag is unknown (404, as Distribution's proxy answers), saying why.
    let never = Digest::sha256(b"never cached");
    for path in [
        format!("/v2/lib/app/manifests/{never}"),
        format!("/v2/lib/app/blobs/{never}"),
    ] {
        let resp = server.send(Method::GET, &path).await;
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert!(resp.text().await.unwrap().contains("UNAVAILABLE"));
    }
    let resp = server.send(Method::GET, "/v2/lib/app/manifests/v2").await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let text = resp.text().await.unwrap();
    assert!(
        text.contains("MANIFEST_UNKNOWN") && text.contains("unavailable"),
        "{text}"
    );
    // Back up: content it does not have is 404 as the upstream says.
    fake.up.store(true, Ordering::SeqCst);
    let resp = server.send(Method::GET, "/v2/lib/app/manifests/nope").await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert!(resp.text().await.unwrap().contains("MANIFEST_UNKNOWN"));
    let missing = Digest::sha256(b"never there");
    let resp = server
        .send(Method::GET, &format!("/v2/lib/app/blobs/{missing}"))
        .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    // HEAD of an uncached blob asks the upstream for its size and fetches nothing.
    let other = fake.add_blob(b"a blob nobody pulled");
    let resp = server
        .send(Method::HEAD, &format!("/v2/lib/app/blobs/{other}"))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(crate::header(&resp, "content-length"), "20");
    assert_eq!(store.stat(&other).await.unwrap(), None);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_pulls_of_one_blob_make_one_upstream_fetch() {
    let fake = Fake::new();
    let big = layer(7, 4 << 20);
    let digest = fake.add_blob(&big);
    // 64 chunks, 10 ms apart: the fetch takes 0.6 s, so the 8 requests overlap it.
    *fake.slow.lock().unwrap() = Some(Duration::from_millis(10));
    let clock = ManualClock::starting_now();
    let server = Arc::new(proxy_server(&fake, Duration::ZERO, &clock).await);
    let mut pulls = Vec::new();
    for _ in 0..8 {
        let server = server.clone();
        let path = format!("/v2/lib/big/blobs/{digest}");
        pulls.push(tokio::spawn(async move { get(&server, &path).await }));
    }
    for pull in pulls {
        let (status, body) = pull.await.unwrap();
        assert_eq!(status, StatusCode::OK);
        assert_eq!(Digest::sha256(&body), digest);
    }
    assert_eq!(
        fake.blob_calls.load(Ordering::SeqCst),
        1,
        "one upstream fetch"
    );
    let proxy = server.registry.config().proxy.clone().unwrap();
    assert_eq!(proxy.blob_fetches(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_blob_whose_bytes_do_not_match_is_refused_and_nothing_is_cached() {
    let fake = Fake::new();
    let good = layer(3, 500_000);
    let digest = fake.add_blob(&good);
    let mut bad = good.clone();
    bad[250_000] ^= 1;
    fake.lies
        .lock()
        .unwrap()
        .insert(digest.clone(), Bytes::from(bad));
    let clock = ManualClock::starting_now();
    let server = proxy_server(&fake, Duration::ZERO, &clock).await;
    let path = format!("/v2/lib/app/blobs/{digest}");
    for attempt in 1..=2 {
        let resp = server.send(Method::GET, &path).await;
        // The headers went out before the bytes were known to be bad; the body breaks off
        // before its last chunk, so the client never holds all of it.
        let body = resp.bytes().await;
        assert!(
            body.is_err(),
            "attempt {attempt}: a whole body of bad bytes arrived"
        );
        assert_eq!(server.registry.store().stat(&digest).await.unwrap(), None);
        let head = server.send(Method::HEAD, &path).await;
        // HEAD answers from the upstream's word (it stores nothing); the blob stays uncached.
        assert_eq!(head.status(), StatusCode::OK);
    }
    // Each attempt fetched again: nothing bad was kept to be served.
    assert_eq!(fake.blob_calls.load(Ordering::SeqCst), 2);

    // A manifest by digest whose bytes hash to something else: 502, nothing stored.
    let (manifest_digest, _) = fake.add_image("lib/app", "v1", &[b"layer"]);
    fake.manifests.lock().unwrap().insert(
        ("lib/app".into(), manifest_digest.to_string()),
        Bytes::from_static(br#"{"schemaVersion":2}"#),
    );
    let resp = server
        .send(
            Method::GET,
            &format!("/v2/lib/app/manifests/{manifest_digest}"),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(
        server
            .registry
            .store()
            .stat(&manifest_digest)
            .await
            .unwrap(),
        None
    );
    server.stop().await;
}

#[tokio::test]
async fn pushes_and_deletes_to_a_proxy_are_refused_with_unsupported() {
    let fake = Fake::new();
    let (digest, _) = fake.add_image("lib/app", "v1", &[b"layer"]);
    let clock = ManualClock::starting_now();
    let server = proxy_server(&fake, Duration::ZERO, &clock).await;
    assert_eq!(
        get(&server, "/v2/lib/app/manifests/v1").await.0,
        StatusCode::OK
    );
    for (method, path) in [
        (Method::POST, "/v2/lib/app/blobs/uploads/".to_string()),
        (Method::PUT, "/v2/lib/app/manifests/v2".to_string()),
        (Method::DELETE, format!("/v2/lib/app/manifests/{digest}")),
        (Method::DELETE, "/v2/lib/app/manifests/v1".to_string()),
    ] {
        let resp = server
            .request(method.clone(), &path)
            .header("content-type", MANIFEST)
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        assert_eq!(crate::header(&resp, "allow"), "GET, HEAD");
        assert!(resp.text().await.unwrap().contains("UNSUPPORTED"));
    }
    // Nothing changed: the tag still resolves.
    assert_eq!(
        get(&server, "/v2/lib/app/manifests/v1").await.0,
        StatusCode::OK
    );
    server.stop().await;
}

#[tokio::test]
async fn a_tag_past_its_ttl_is_revalidated_and_follows_the_upstream() {
    let fake = Fake::new();
    let (_, first) = fake.add_image("lib/app", "latest", &[b"one"]);
    let clock = ManualClock::starting_now();
    let server = proxy_server(&fake, Duration::from_secs(60), &clock).await;
    assert_eq!(get(&server, "/v2/lib/app/manifests/latest").await.1, first);
    assert_eq!(fake.manifest_calls.load(Ordering::SeqCst), 1);

    // The upstream moves the tag; within the TTL the cache answers without asking.
    let (_, second) = fake.add_image("lib/app", "latest", &[b"two"]);
    clock.advance(Duration::from_secs(59));
    assert_eq!(get(&server, "/v2/lib/app/manifests/latest").await.1, first);
    assert_eq!(fake.manifest_calls.load(Ordering::SeqCst), 1);

    // Past it, the tag is revalidated and moves.
    clock.advance(Duration::from_secs(2));
    assert_eq!(get(&server, "/v2/lib/app/manifests/latest").await.1, second);
    assert_eq!(fake.manifest_calls.load(Ordering::SeqCst), 2);
    // And it is fresh again for another TTL.
    assert_eq!(get(&server, "/v2/lib/app/manifests/latest").await.1, second);
    assert_eq!(fake.manifest_calls.load(Ordering::SeqCst), 2);
    server.stop().await;
}

/// `/metrics` counts the cache's lookups: misses while it fills, hits once it holds the
/// content, a tag served stale while the upstream is down.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_count_cache_hits_misses_and_stale_tags() {
    const SECRET: &str = "cache-scrape";
    let fake = Fake::new();
    let (l1, l2) = (layer(11, 40_000), layer(12, 3_000));
    let (digest, _) = fake.add_image("lib/app", "v1", &[&l1, &l2]);
    let clock = ManualClock::starting_now();
    let config = Config::default()
        .proxy(Some(
            Proxy::new(fake.clone()).tag_ttl(Duration::from_secs(60)),
        ))
        .clock(Clock::from_fn(clock.reader()))
        .metrics_token(ocikit_registry::MetricsToken::new(SECRET));
    let registry = Registry::new(
        Arc::new(MemoryStore::new()),
        Arc::new(MemoryStore::new()),
        config,
    )
    .unwrap();
    let server = Server::start(registry).await;
    let scrape = || async {
        let text = server
            .request(Method::GET, "/metrics")
            .bearer_auth(SECRET)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let count = |kind: &str, result: &str| -> u64 {
            let series = format!(
                "ocikit_registry_proxy_cache_requests_total{{kind=\"{kind}\",result=\"{result}\"}} "
            );
            text.lines()
                .find_map(|line| line.strip_prefix(series.as_str()))
                .map_or(0, |value| value.trim().parse().unwrap())
        };
        [
            count("manifest", "hit"),
            count("manifest", "miss"),
            count("manifest", "stale"),
            count("blob", "hit"),
            count("blob", "miss"),
        ]
    };
    let blobs = [Digest::sha256(&l1), Digest::sha256(&l2)];

    // Filling: the tag and both blobs are misses.
    assert_eq!(
        get(&server, "/v2/lib/app/manifests/v1").await.0,
        StatusCode::OK
    );
    for blob in &blobs {
        let path = format!("/v2/lib/app/blobs/{blob}");
        assert_eq!(get(&server, &path).await.0, StatusCode::OK);
    }
    assert_eq!(scrape().await, [0, 1, 0, 0, 2]);
    // Filled: the tag within its TTL, the manifest by digest and the blobs are hits.
    assert_eq!(
        get(&server, "/v2/lib/app/manifests/v1").await.0,
        StatusCode::OK
    );
    let by_digest = format!("/v2/lib/app/manifests/{digest}");
    assert_eq!(get(&server, &by_digest).await.0, StatusCode::OK);
    for blob in &blobs {
        let path = format!("/v2/lib/app/blobs/{blob}");
        assert_eq!(get(&server, &path).await.0, StatusCode::OK);
    }
    assert_eq!(scrape().await, [2, 1, 0, 2, 2]);
    // Past the TTL with the upstream down: the tag is served stale.
    fake.up.store(false, Ordering::SeqCst);
    clock.advance(Duration::from_secs(61));
    assert_eq!(
        get(&server, "/v2/lib/app/manifests/v1").await.0,
        StatusCode::OK
    );
    assert_eq!(scrape().await, [2, 1, 1, 2, 2]);
    server.stop().await;
}

/// A store whose blob writes are slow: every write to a staging area, and its publishing,
/// waits `delay` first (a cache on a slow disk or a distant object store).
#[derive(Debug)]
struct SlowWrites {
    inner: MemoryStore,
    delay: Duration,
}

#[async_trait::async_trait]
impl Store for SlowWrites {
    async fn stat(&self, digest: &Digest) -> ocikit_store::Result<Option<u64>> {
        self.inner.stat(digest).await
    }
    async fn get(
        &self,
        digest: &Digest,
        range: Option<std::ops::Range<u64>>,
    ) -> ocikit_store::Result<Option<ocikit_store::Blob>> {
        self.inner.get(digest, range).await
    }
    async fn stage(&self) -> ocikit_store::Result<Box<dyn ocikit_store::Staging>> {
        Ok(Box::new(SlowStaging {
            inner: self.inner.stage().await?,
            delay: self.delay,
            pause: None,
        }))
    }
    async fn delete(&self, digest: &Digest) -> ocikit_store::Result<bool> {
        self.inner.delete(digest).await
    }
    fn list(&self) -> futures::stream::BoxStream<'_, ocikit_store::Result<Digest>> {
        self.inner.list()
    }
    async fn read_document(
        &self,
        key: &ocikit_store::DocumentKey,
    ) -> ocikit_store::Result<Option<ocikit_store::Document>> {
        self.inner.read_document(key).await
    }
    async fn write_document(
        &self,
        key: &ocikit_store::DocumentKey,
        bytes: Bytes,
        precondition: ocikit_store::Precondition,
    ) -> ocikit_store::Result<ocikit_store::Version> {
        self.inner.write_document(key, bytes, precondition).await
    }
    async fn delete_document(
        &self,
        key: &ocikit_store::DocumentKey,
        precondition: ocikit_store::Precondition,
    ) -> ocikit_store::Result<bool> {
        self.inner.delete_document(key, precondition).await
    }
    async fn list_documents(
        &self,
        prefix: &str,
    ) -> ocikit_store::Result<Vec<ocikit_store::DocumentKey>> {
        self.inner.list_documents(prefix).await
    }
}

struct SlowStaging {
    inner: Box<dyn ocikit_store::Staging>,
    delay: Duration,
    pause: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl tokio::io::AsyncWrite for SlowStaging {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let delay = self.delay;
        let pause = self
            .pause
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(delay)));
        std::task::ready!(pause.as_mut().poll(cx));
        self.pause = None;
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[async_trait::async_trait]
impl ocikit_store::Staging for SlowStaging {
    async fn publish(self: Box<Self>, digest: &Digest, size: u64) -> ocikit_store::Result<()> {
        tokio::time::sleep(self.delay * 10).await;
        self.inner.publish(digest, size).await
    }
    async fn abort(self: Box<Self>) -> ocikit_store::Result<()> {
        self.inner.abort().await
    }
}

async fn slow_proxy_server(fake: &Arc<Fake>, delay: Duration) -> Server {
    let config = Config::default().proxy(Some(Proxy::new(fake.clone())));
    let store = SlowWrites {
        inner: MemoryStore::new(),
        delay,
    };
    let registry = Registry::new(Arc::new(store), Arc::new(MemoryStore::new()), config).unwrap();
    Server::start(registry).await
}

/// A cache whose store writes slowly still sends the client the whole blob, and the blob is
/// stored and linked before the client's last byte: a client that has the blob can pull it
/// again from the cache with the upstream gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_store_still_serves_the_whole_blob_stored_before_its_last_byte() {
    let fake = Fake::new();
    let blob = layer(21, 1 << 20);
    let digest = fake.add_blob(&blob);
    // 16 chunks from the upstream, each write to the store 10 ms late, publishing 100 ms.
    let server = slow_proxy_server(&fake, Duration::from_millis(10)).await;
    let path = format!("/v2/lib/app/blobs/{digest}");
    let (status, body) = get(&server, &path).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body.len(), blob.len());
    assert_eq!(Digest::sha256(&body), digest);
    // The last byte was held until the blob was published and linked: it is there now,
    // without waiting for anything.
    assert_eq!(
        server.registry.store().stat(&digest).await.unwrap(),
        Some(blob.len() as u64)
    );
    fake.up.store(false, Ordering::SeqCst);
    let (status, again) = get(&server, &path).await;
    assert_eq!((status, again), (StatusCode::OK, body));
    assert_eq!(fake.blob_calls.load(Ordering::SeqCst), 1);
    server.stop().await;
}

/// A client that goes away in the middle of a blob does not stop its fetch: the blob is
/// still verified and cached, and the next request is served from the cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fetch_completes_and_caches_when_its_client_goes_away() {
    let fake = Fake::new();
    let blob = layer(22, 2 << 20);
    let digest = fake.add_blob(&blob);
    *fake.slow.lock().unwrap() = Some(Duration::from_millis(5));
    let server = slow_proxy_server(&fake, Duration::from_millis(1)).await;
    let path = format!("/v2/lib/app/blobs/{digest}");
    let mut resp = server.send(Method::GET, &path).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let first = resp.chunk().await.unwrap().unwrap();
    assert!(!first.is_empty() && first.len() < blob.len());
    drop(resp);
    // The fetch goes on without the client (32 chunks 5 ms apart).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while server
        .registry
        .store()
        .stat(&digest)
        .await
        .unwrap()
        .is_none()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the fetch never finished"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    fake.up.store(false, Ordering::SeqCst);
    let (status, body) = get(&server, &path).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&body[..], &blob[..]);
    assert_eq!(fake.blob_calls.load(Ordering::SeqCst), 1);
    server.stop().await;
}
