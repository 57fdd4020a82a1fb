//! `ocikit serve --proxy` as a library: the registry server caching docker-registry 2.8
//! through `ocikit_transport::proxy`, pulled from with ocikit's own copy.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ocikit_layout::{ImageBuilder, LayerSpec, Layout};
use ocikit_registry::{Clock, Config, Registry};
use ocikit_store::{FsStore, MemoryStore};
use ocikit_testkit::clock::ManualClock;
use ocikit_testkit::distribution::Distribution;
use ocikit_transport::{CopyOptions, copy};

use crate::registry::{docker, plain};

/// A layout at `dir` (created if missing) tagged `tag`: one layer of `len` random bytes from
/// `seed`, one small one.
async fn image(dir: &Path, tag: &str, seed: u64, len: usize) -> String {
    let store = FsStore::open(dir).await.unwrap();
    let layout = match Layout::open(store.clone()).await {
        Ok(layout) => layout,
        Err(_) => Layout::create(store).await.unwrap(),
    };
    let files = tempfile::tempdir().unwrap();
    std::fs::write(
        files.path().join("data.bin"),
        ocikit_testkit::prng::bytes(seed, len),
    )
    .unwrap();
    let small = tempfile::tempdir().unwrap();
    std::fs::write(small.path().join("tag"), tag).unwrap();
    let mut builder = ImageBuilder::new(&layout);
    builder
        .add_layer_from_dir(files.path(), LayerSpec::new())
        .await
        .unwrap();
    builder
        .add_layer_from_dir(small.path(), LayerSpec::new())
        .await
        .unwrap();
    builder
        .write_and_tag(tag)
        .await
        .unwrap()
        .digest()
        .to_string()
}

fn options() -> CopyOptions {
    CopyOptions::new()
        .with_source(plain())
        .with_destination(plain())
}

async fn push(dir: &Path, tag: &str, addr: &str, to: &str) {
    copy(
        &format!("oci:{}:{tag}", dir.display()).parse().unwrap(),
        &docker(addr, to),
        &options(),
    )
    .await
    .unwrap();
}

/// Pulls `from` into a new layout at `dir`; returns the digest tag `v` points at there.
async fn pull(addr: &str, from: &str, dir: &Path) -> Result<String, ocikit_transport::Error> {
    copy(
        &docker(addr, from),
        &format!("oci:{}:v", dir.display()).parse().unwrap(),
        &options(),
    )
    .await?;
    let layout = Layout::open(FsStore::open(dir).await.unwrap())
        .await
        .unwrap();
    Ok(layout.resolve("v").await.unwrap().digest().to_string())
}

/// A caching registry in front of `upstream`, on a free port; returns its address.
async fn serve_proxy(upstream: &str, ttl: Duration, clock: Option<&ManualClock>) -> String {
    let proxy =
        ocikit_transport::proxy::proxy(&format!("docker://{upstream}"), &plain(), ttl).unwrap();
    let mut config = Config::default().proxy(Some(proxy));
    if let Some(clock) = clock {
        config = config.clock(Clock::from_fn(clock.reader()));
    }
    let registry = Registry::new(
        Arc::new(MemoryStore::new()),
        Arc::new(MemoryStore::new()),
        config,
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        registry.serve(listener, std::future::pending()).await.ok();
    });
    addr.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pulls_through_the_cache_of_docker_registry_fetch_each_blob_once_and_survive_it_stopping() {
    let Some(upstream) = Distribution::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source");
    let digest = image(&source, "v1", 1, 3 << 20).await;
    push(&source, "v1", upstream.addr(), "team/app:v1").await;
    let cache = serve_proxy(upstream.addr(), Duration::ZERO, None).await;

    // Four pulls at once through an empty cache.
    let mut pulls = Vec::new();
    for i in 0..4 {
        let (cache, target) = (cache.clone(), dir.path().join(format!("pull{i}")));
        pulls.push(tokio::spawn(async move {
            pull(&cache, "team/app:v1", &target).await
        }));
    }
    for p in pulls {
        assert_eq!(p.await.unwrap().unwrap(), digest);
    }

    // A push to the cache is refused, and leaves nothing behind.
    let err = copy(
        &format!("oci:{}:v1", source.display()).parse().unwrap(),
        &docker(&cache, "team/app:pushed"),
        &options(),
    )
    .await
    .unwrap_err();
    let text = format!("{:?}", err);
    assert!(
        text.contains("405") || text.contains("UNSUPPORTED"),
        "{text}"
    );

    // Upstream gone: the same image comes whole from the cache.
    let log = upstream.stop();
    let blob_gets: Vec<&String> = log
        .iter()
        .filter(|l| l.contains("\"GET /v2/team/app/blobs/sha256:"))
        .collect();
    // Three blobs (config and two layers), each fetched once for four concurrent pulls.
    assert_eq!(blob_gets.len(), 3, "{blob_gets:#?}");
    let again = pull(&cache, "team/app:v1", &dir.path().join("offline")).await;
    assert_eq!(again.unwrap(), digest);
    let by_digest = pull(
        &cache,
        &format!("team/app@{digest}"),
        &dir.path().join("offline-digest"),
    )
    .await;
    assert_eq!(by_digest.unwrap(), digest);
    // What was never pulled is not there to be had.
    assert!(
        pull(&cache, "team/app:v2", &dir.path().join("never"))
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tag_moved_on_docker_registry_is_followed_once_its_ttl_has_passed() {
    let Some(upstream) = Distribution::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source");
    let first = image(&source, "one", 2, 10_000).await;
    let second = image(&source, "two", 3, 10_000).await;
    assert_ne!(first, second);
    push(&source, "one", upstream.addr(), "app:latest").await;
    let clock = ManualClock::starting_now();
    let cache = serve_proxy(upstream.addr(), Duration::from_secs(300), Some(&clock)).await;

    let pulled = pull(&cache, "app:latest", &dir.path().join("a")).await;
    assert_eq!(pulled.unwrap(), first);
    push(&source, "two", upstream.addr(), "app:latest").await;
    clock.advance(Duration::from_secs(299));
    let pulled = pull(&cache, "app:latest", &dir.path().join("b")).await;
    assert_eq!(pulled.unwrap(), first, "within the TTL the cache answers");
    clock.advance(Duration::from_secs(2));
    let pulled = pull(&cache, "app:latest", &dir.path().join("c")).await;
    assert_eq!(
        pulled.unwrap(),
        second,
        "past it, the tag follows the upstream"
    );
}
