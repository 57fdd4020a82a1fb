//! Issue 19's scale figures: how the time of one page of the tags list and of the catalog
//! grows with the list (`cargo bench -p ocikit-registry --bench pages`).
//!
//! - tags: one page of n=100 (`GET /v2/app/tags/list?n=100&last=T`, `T` a tag drawn at
//!   random) at 1,000 / 10,000 / 100,000 tags;
//! - catalog: one page of n=100 (`GET /v2/_catalog?n=100&last=R`) at 100 / 1,000 / 10,000
//!   repositories;
//! - for reference, the whole listing of the same documents (`list_documents`, 3 runs),
//!   which is what every page cost before pages were read from the store (the old handler
//!   listed, sorted and cut every time).
//!
//! On a filesystem store (in `OCIKIT_BENCH_DIR`, default the system's temp directory) and
//! on S3 (moto, started here; skipped when moto is not installed). The documents are
//! written straight into the content store (the registry's key scheme) rather than pushed,
//! to keep the set-up short; the pages go through a real server on loopback and reqwest.
//! Prints `BENCH <name> <median> <unit> <min> <max>` lines, and `growth` lines: the
//! median at the largest size over the median at the smallest.
//!
//! Environment: `OCIKIT_BENCH_RUNS` (pages timed per size, default 30),
//! `OCIKIT_BENCH_MAX_TAGS` (default 100000), `OCIKIT_BENCH_DIR`.
#![allow(
    missing_docs,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures::StreamExt as _;
use ocikit_digest::Digest;
use ocikit_registry::{Config, Registry, keys};
use ocikit_store::{DocumentKey, FsStore, Precondition, S3Store, Store};
use ocikit_testkit::prng::Prng;

fn report(name: &str, unit: &str, values: &[f64]) -> f64 {
    let mut values = values.to_vec();
    values.sort_by(f64::total_cmp);
    let median = values[values.len() / 2];
    println!(
        "BENCH {name} {median:.3} {unit} {:.3} {:.3}",
        values[0],
        values[values.len() - 1]
    );
    median
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A registry on the backend, served on loopback, and where it is.
struct Served {
    registry: Registry,
    base: String,
    _dir: Option<tempfile::TempDir>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop.send(()).ok();
        }
    }
}

async fn serve(
    store: Arc<dyn Store>,
    uploads: Arc<dyn Store>,
    dir: Option<tempfile::TempDir>,
) -> Served {
    let registry = Registry::new(store, uploads, Config::default()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = registry.clone();
    tokio::spawn(async move {
        server
            .serve(listener, async {
                stopped.await.ok();
            })
            .await
            .unwrap();
    });
    Served {
        registry,
        base,
        _dir: dir,
        stop: Some(stop),
    }
}

async fn fs_backend() -> Served {
    let parent = std::env::var_os("OCIKIT_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::tempdir_in(parent).unwrap();
    let store = FsStore::open(dir.path().join("content")).await.unwrap();
    let uploads = FsStore::open(dir.path().join("uploads")).await.unwrap();
    serve(Arc::new(store), Arc::new(uploads), Some(dir)).await
}

fn s3_backend(moto: &ocikit_testkit::moto::MotoServer) -> impl Future<Output = Served> {
    let bucket = moto.bucket();
    let config = |prefix: &str| {
        ocikit_store::s3::S3Config::new(bucket.clone())
            .with_endpoint(moto.endpoint())
            .with_credentials(
                ocikit_testkit::moto::ACCESS_KEY,
                ocikit_testkit::moto::SECRET_KEY,
            )
            .with_allow_http(true)
            .with_prefix(prefix)
    };
    let store = S3Store::new(config("content")).unwrap();
    let uploads = S3Store::new(config("uploads")).unwrap();
    serve(Arc::new(store), Arc::new(uploads), None)
}

/// Writes documents `keys` with `body`, 64 at a time.
async fn write_all(store: &Arc<dyn Store>, keys: Vec<DocumentKey>, body: Bytes) {
    futures::stream::iter(keys)
        .map(|key| {
            let store = store.clone();
            let body = body.clone();
            async move {
                store
                    .write_document(&key, body, Precondition::None)
                    .await
                    .unwrap();
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<()>>()
        .await;
}

/// Times `runs` pages of `path?n=100&last=X`, `X` drawn from `entries`; milliseconds.
async fn time_pages(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    entries: &[String],
    runs: usize,
) -> Vec<f64> {
    // The lists were just written: a filesystem store trusts a directory's remembered
    // entries only once it has been unchanged for its racy window (100 ms), so the pages are
    // timed in the steady state of a list not written in that time (a list written more
    // often than that is read whole at every page, as the whole-listing figures show).
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let mut prng = Prng::new(entries.len() as u64);
    let mut times = Vec::with_capacity(runs);
    for run in 0..runs + 3 {
        let last = &entries[prng.below(entries.len() as u64) as usize];
        let url = format!("{base}{path}?n=100&last={last}");
        let start = Instant::now();
        let resp = client.get(&url).send().await.unwrap();
        assert!(resp.status().is_success(), "{url}: {}", resp.status());
        let body = resp.bytes().await.unwrap();
        let elapsed = start.elapsed().as_secs_f64() * 1e3;
        assert!(body.len() > 20, "{url}");
        // The first few warm the connection and the caches.
        if run >= 3 {
            times.push(elapsed);
        }
    }
    times
}

/// Times `runs` whole listings of `prefix` straight from the store; milliseconds.
async fn time_listings(store: &Arc<dyn Store>, prefix: &str, runs: usize) -> Vec<f64> {
    let mut times = Vec::new();
    for _ in 0..runs.min(3) {
        let start = Instant::now();
        let keys = store.list_documents(prefix).await.unwrap();
        times.push(start.elapsed().as_secs_f64() * 1e3);
        assert!(!keys.is_empty());
    }
    times
}

fn growth(name: &str, small: f64, large: f64) {
    let ratio = large / small;
    println!("BENCH {name} {ratio:.3} x {ratio:.3} {ratio:.3}");
}

async fn bench_backend(label: &str, served: Served, runs: usize, max_tags: usize) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let store = served.registry.store().clone();
    // One repository holding the tags; its marker makes it exist.
    let digest = Digest::sha256(b"bench");
    let tag_body = Bytes::from(format!("{{\"digest\":\"{digest}\"}}"));
    write_all(
        &store,
        vec![keys::catalog_marker("app").unwrap()],
        Bytes::from_static(b"{}"),
    )
    .await;
    let mut tags: Vec<String> = Vec::new();
    let mut page_medians = Vec::new();
    let mut list_medians = Vec::new();
    let mut size = 1000;
    while size <= max_tags {
        let new: Vec<String> = (tags.len()..size)
            .map(|i| format!("v{:07}-{}", i * 7919 % 10_000_019, i % 13))
            .collect();
        let start = Instant::now();
        write_all(
            &store,
            new.iter().map(|t| keys::tag("app", t).unwrap()).collect(),
            tag_body.clone(),
        )
        .await;
        eprintln!(
            "{label}: {} tags written in {:.1} s",
            new.len(),
            start.elapsed().as_secs_f64()
        );
        tags.extend(new);
        let times = time_pages(&client, &served.base, "/v2/app/tags/list", &tags, runs).await;
        page_medians.push(report(
            &format!("tags-page-n100/{label}/{size}"),
            "ms",
            &times,
        ));
        let times = time_listings(&store, &keys::tags_prefix("app"), runs).await;
        list_medians.push(report(
            &format!("tags-whole-listing/{label}/{size}"),
            "ms",
            &times,
        ));
        size *= 10;
    }
    if page_medians.len() > 1 {
        growth(
            &format!("tags-page-growth/{label}"),
            page_medians[0],
            page_medians[page_medians.len() - 1],
        );
        growth(
            &format!("tags-whole-listing-growth/{label}"),
            list_medians[0],
            list_medians[list_medians.len() - 1],
        );
    }

    // Repositories: names of two components, some prefixes of others (the catalog's page
    // reads those one by one when their markers sort later).
    let mut names: Vec<String> = vec!["app".to_owned()];
    let mut page_medians = Vec::new();
    let mut list_medians = Vec::new();
    let mut size = 100;
    while size <= max_tags / 10 {
        let new: Vec<String> = (names.len()..size)
            .map(|i| match i % 4 {
                0 => format!("team{}/service-{i}", i % 50),
                1 => format!("team{}-{i}", i % 50),
                2 => format!("library/image{i}"),
                _ => format!("t{i}/x.{i}/y"),
            })
            .collect();
        write_all(
            &store,
            new.iter()
                .map(|n| keys::catalog_marker(n).unwrap())
                .collect(),
            Bytes::from_static(b"{}"),
        )
        .await;
        names.extend(new);
        let times = time_pages(&client, &served.base, "/v2/_catalog", &names, runs).await;
        page_medians.push(report(
            &format!("catalog-page-n100/{label}/{size}"),
            "ms",
            &times,
        ));
        let times = time_listings(&store, keys::CATALOG_PREFIX, runs).await;
        list_medians.push(report(
            &format!("catalog-whole-listing/{label}/{size}"),
            "ms",
            &times,
        ));
        size *= 10;
    }
    if page_medians.len() > 1 {
        growth(
            &format!("catalog-page-growth/{label}"),
            page_medians[0],
            page_medians[page_medians.len() - 1],
        );
        growth(
            &format!("catalog-whole-listing-growth/{label}"),
            list_medians[0],
            list_medians[list_medians.len() - 1],
        );
    }
}

fn main() {
    let runs = env_usize("OCIKIT_BENCH_RUNS", 30);
    let max_tags = env_usize("OCIKIT_BENCH_MAX_TAGS", 100_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        bench_backend("fs", fs_backend().await, runs, max_tags).await;
        match ocikit_testkit::moto::MotoServer::start() {
            Some(moto) => bench_backend("s3", s3_backend(&moto).await, runs, max_tags).await,
            None => eprintln!("moto_server is not installed: no S3 figures"),
        }
    });
}
