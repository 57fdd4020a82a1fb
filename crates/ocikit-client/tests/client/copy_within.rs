//! `Client::copy_within`: a copy between two repositories of one registry moves no blob
//! through the client. The server is wrapped in a middleware that records every request
//! (method, path and query) and, per test, refuses mounts (it strips `mount` from the query,
//! so the server opens an ordinary session and answers 202, as Distribution does without
//! access to the source) or flips a byte of one response.

use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::Response;
use futures::StreamExt;
use ocikit_client::{Client, CopyWithinOptions, Error, PullOptions, PushOptions};
use ocikit_digest::Digest;
use ocikit_digest::oci_spec::image::Descriptor;
use ocikit_layout::{Layout, PlatformQuery};
use ocikit_registry::{Config, Registry};
use ocikit_store::{MemoryStore, Store, StoreExt};
use ocikit_testkit::distribution::Distribution;
use serde_json::json;

use crate::data;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

/// What the wrapping middleware does besides recording.
#[derive(Default)]
struct Wire {
    /// Every request seen: method, and path with its query.
    log: Mutex<Vec<(Method, String)>>,
    /// Strip `mount` and `from` from upload POSTs: the server opens a session (202).
    refuse_mounts: bool,
    /// The path of a GET whose response body gets one byte flipped.
    corrupt: Option<String>,
}

impl Wire {
    fn requests(&self) -> Vec<(Method, String)> {
        self.log.lock().unwrap().clone()
    }

    fn clear(&self) {
        self.log.lock().unwrap().clear();
    }
}

async fn wire(State(wire): State<Arc<Wire>>, mut req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let full = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    wire.log.lock().unwrap().push((method.clone(), full));
    if wire.refuse_mounts && req.uri().query().is_some_and(|q| q.contains("mount=")) {
        *req.uri_mut() = path.parse().unwrap();
    }
    let response = next.run(req).await;
    if method == Method::GET && wire.corrupt.as_deref() == Some(path.as_str()) {
        let (mut parts, body) = response.into_parts();
        let mut bytes = axum::body::to_bytes(body, usize::MAX)
            .await
            .unwrap()
            .to_vec();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x20;
        parts.headers.remove(header::CONTENT_LENGTH);
        return Response::from_parts(parts, Body::from(bytes));
    }
    response
}

/// A registry on memory stores behind [`wire`]; its `host:port`.
async fn serve(wire_state: Arc<Wire>) -> String {
    let registry = Registry::new(
        Arc::new(MemoryStore::new()),
        Arc::new(MemoryStore::new()),
        Config::default(),
    )
    .unwrap();
    let app = registry
        .router()
        .layer(axum::middleware::from_fn_with_state(wire_state, wire));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.ok();
    });
    addr.to_string()
}

fn client(addr: &str) -> Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::builder(addr)
        .plain_http(true)
        .retries(
            2,
            std::time::Duration::from_millis(10),
            std::time::Duration::from_millis(100),
        )
        .build()
        .unwrap()
}

/// An image manifest for `arch` with these layers (config and layers stored in `layout`).
async fn image(layout: &Layout, arch: &str, layers: &[Vec<u8>]) -> Descriptor {
    let mut layer_descriptors = Vec::new();
    for layer in layers {
        let d = layout.put_blob(LAYER, layer).await.unwrap();
        layer_descriptors.push(json!({
            "mediaType": LAYER, "digest": d.digest().to_string(), "size": d.size()
        }));
    }
    let config = json!({"architecture": arch, "os": "linux", "rootfs": {"type": "layers"}});
    let config = layout
        .put_blob(CONFIG, &serde_json::to_vec(&config).unwrap())
        .await
        .unwrap();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": CONFIG, "digest": config.digest().to_string(), "size": config.size()
        },
        "layers": layer_descriptors,
    });
    layout
        .put_blob(OCI_MANIFEST, &serde_json::to_vec(&manifest).unwrap())
        .await
        .unwrap()
}

/// The source image: an index of linux/amd64 (a 3 MiB layer and a small one) and
/// linux/arm64 (a 2 MiB layer and the same small one): five blobs.
struct Source {
    layout: Layout,
    index: Descriptor,
    amd64: Descriptor,
    arm64: Descriptor,
    big_layer: Digest,
}

async fn source() -> Source {
    let layout = Layout::create(MemoryStore::new()).await.unwrap();
    let shared = data(10_000, 1);
    let big = data(3 << 20, 2);
    let big_layer = Digest::sha256(&big);
    let amd64 = image(&layout, "amd64", &[big, shared.clone()]).await;
    let arm64 = image(&layout, "arm64", &[data(2 << 20, 3), shared]).await;
    let entry = |d: &Descriptor, arch: &str| {
        json!({
            "mediaType": OCI_MANIFEST, "digest": d.digest().to_string(), "size": d.size(),
            "platform": {"architecture": arch, "os": "linux"}
        })
    };
    let index = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [entry(&amd64, "amd64"), entry(&arm64, "arm64")],
    });
    let index = layout
        .put_blob(OCI_INDEX, &serde_json::to_vec(&index).unwrap())
        .await
        .unwrap();
    Source {
        layout,
        index,
        amd64,
        arm64,
        big_layer,
    }
}

/// Pushes the source image to `team/src:v1` through `client`.
async fn seed(client: &Client) -> Source {
    let source = source().await;
    client
        .push(
            &source.layout,
            &source.index,
            "team/src",
            Some("v1"),
            &PushOptions::new(),
        )
        .await
        .unwrap();
    source
}

async fn digests(store: &dyn Store) -> Vec<Digest> {
    let mut all: Vec<Digest> = store.list().map(|d| d.unwrap()).collect().await;
    all.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    all
}

/// Pulls `repository:tag` (whole) into a fresh layout: every blob downloaded and verified.
/// Asserts that it holds exactly the source's content, byte for byte.
async fn assert_holds_source(client: &Client, repository: &str, tag: &str, source: &Source) {
    let pulled = Layout::create(MemoryStore::new()).await.unwrap();
    client
        .pull(repository, tag, &pulled, tag, &PullOptions::new())
        .await
        .unwrap();
    let expected = digests(source.layout.store()).await;
    assert_eq!(digests(pulled.store()).await, expected);
    for digest in expected {
        assert_eq!(
            pulled.store().get_bytes(&digest, 1 << 30).await.unwrap(),
            source
                .layout
                .store()
                .get_bytes(&digest, 1 << 30)
                .await
                .unwrap(),
            "{digest}"
        );
    }
}

fn blob_gets(requests: &[(Method, String)]) -> Vec<&(Method, String)> {
    requests
        .iter()
        .filter(|(m, p)| m == Method::GET && p.contains("/blobs/") && !p.contains("/uploads/"))
        .collect()
}

/// PATCHes and PUTs of blob data (upload sessions).
fn blob_writes(requests: &[(Method, String)]) -> Vec<&(Method, String)> {
    requests
        .iter()
        .filter(|(m, p)| (m == Method::PATCH || m == Method::PUT) && p.contains("/blobs/uploads/"))
        .collect()
}

fn empty_dir(path: &Path) -> bool {
    std::fs::read_dir(path).unwrap().next().is_none()
}

#[tokio::test]
async fn a_copy_within_one_registry_mounts_every_blob_and_downloads_none() {
    let wire = Arc::new(Wire::default());
    let addr = serve(wire.clone()).await;
    let client = client(&addr);
    let source = seed(&client).await;
    let total: u64 = (3 << 20) + (2 << 20) + 10_000;
    wire.clear();

    let report = client
        .copy_within(
            "team/src",
            "v1",
            "team/dst",
            Some("v1"),
            &CopyWithinOptions::new(),
        )
        .await
        .unwrap();
    let requests = wire.requests();
    assert!(blob_gets(&requests).is_empty(), "{requests:?}");
    assert!(blob_writes(&requests).is_empty(), "{requests:?}");
    // Every blob went up with one mounting POST.
    let posts: Vec<_> = requests.iter().filter(|(m, _)| m == Method::POST).collect();
    assert_eq!(posts.len(), 5, "{requests:?}");
    assert!(
        posts.iter().all(
            |(_, p)| p.starts_with("/v2/team/dst/blobs/uploads/?mount=sha256%3A")
                || p.starts_with("/v2/team/dst/blobs/uploads/?mount=sha256:")
        ),
        "{posts:?}"
    );
    assert!(
        posts.iter().all(|(_, p)| p.contains("from=team%2Fsrc")),
        "{posts:?}"
    );
    assert_eq!(report.root.unwrap().digest(), source.index.digest());
    assert_eq!(report.blobs, 5);
    assert_eq!(report.mounted, 5);
    assert_eq!(report.transferred, 0);
    assert_eq!(report.bytes, 0);
    assert_eq!(report.manifests, 3);
    assert!(
        report.total_bytes > total,
        "configs too: {}",
        report.total_bytes
    );

    let (tagged, bytes) = client.get_manifest("team/dst", "v1").await.unwrap();
    assert_eq!(tagged.digest(), source.index.digest());
    assert_eq!(
        Digest::sha256(&bytes).as_str(),
        source.index.digest().as_ref()
    );
    assert_holds_source(&client, "team/dst", "v1", &source).await;

    // Again: the destination has everything; nothing is mounted twice.
    let again = client
        .copy_within(
            "team/src",
            "v1",
            "team/dst",
            Some("v1"),
            &CopyWithinOptions::new(),
        )
        .await
        .unwrap();
    assert_eq!((again.skipped, again.mounted), (5, 0));

    // One platform: its manifest is what the destination tag names, with its three blobs.
    wire.clear();
    let arm = PlatformQuery::new(&ocikit_digest::platform::parse("linux/arm64").unwrap());
    let report = client
        .copy_within(
            "team/src",
            "v1",
            "team/arm",
            Some("arm"),
            &CopyWithinOptions::new().with_platform(Some(arm)),
        )
        .await
        .unwrap();
    let requests = wire.requests();
    assert!(blob_gets(&requests).is_empty(), "{requests:?}");
    assert!(blob_writes(&requests).is_empty(), "{requests:?}");
    assert_eq!(report.root.unwrap().digest(), source.arm64.digest());
    assert_eq!((report.blobs, report.mounted), (3, 3));
    let (tagged, _) = client.get_manifest("team/arm", "arm").await.unwrap();
    assert_eq!(tagged.digest(), source.arm64.digest());
    assert!(
        !client
            .blob_exists("team/arm", &source.big_layer)
            .await
            .unwrap(),
        "the amd64 layer is not part of the arm64 image"
    );

    // By digest: the destination digest must be the image copied, checked before anything
    // moves.
    wire.clear();
    let amd64 = source.amd64.digest().to_string();
    let refused = client
        .copy_within(
            "team/src",
            "v1",
            "team/other",
            Some(&amd64),
            &CopyWithinOptions::new(),
        )
        .await;
    assert!(
        matches!(&refused, Err(Error::NotTheSource { wanted, actual, .. })
            if wanted.as_str() == amd64 && actual.as_str() == source.index.digest().as_ref()),
        "{refused:?}"
    );
    assert!(
        wire.requests()
            .iter()
            .all(|(_, p)| !p.starts_with("/v2/team/other/")),
        "{:?}",
        wire.requests()
    );
    let by_digest = client
        .copy_within(
            "team/src",
            &amd64,
            "team/other",
            Some(&amd64),
            &CopyWithinOptions::new(),
        )
        .await
        .unwrap();
    assert_eq!(by_digest.mounted, 3);
    let (found, _) = client.get_manifest("team/other", &amd64).await.unwrap();
    assert_eq!(found.digest(), source.amd64.digest());
    assert!(client.tags("team/other").await.unwrap().is_empty());
}

#[tokio::test]
async fn a_refused_mount_streams_that_blob_verified_through_the_open_session() {
    let wire = Arc::new(Wire {
        refuse_mounts: true,
        ..Wire::default()
    });
    let addr = serve(wire.clone()).await;
    let client = client(&addr);
    let source = seed(&client).await;
    wire.clear();
    let scratch = tempfile::tempdir().unwrap();
    let report = client
        .copy_within(
            "team/src",
            "v1",
            "team/dst",
            Some("v1"),
            &CopyWithinOptions::new().with_scratch_dir(Some(scratch.path().to_path_buf())),
        )
        .await
        .unwrap();
    assert_eq!((report.mounted, report.transferred), (0, 5));
    assert_eq!(report.bytes, report.total_bytes);
    let requests = wire.requests();
    // Each blob read once from the source, into the session the refused mount opened (one
    // POST per blob, no second session).
    let gets = blob_gets(&requests);
    assert_eq!(gets.len(), 5, "{requests:?}");
    assert!(
        gets.iter()
            .all(|(_, p)| p.starts_with("/v2/team/src/blobs/"))
    );
    let posts = requests.iter().filter(|(m, _)| m == Method::POST).count();
    assert_eq!(posts, 5, "{requests:?}");
    assert!(
        blob_writes(&requests)
            .iter()
            .all(|(_, p)| p.starts_with("/v2/team/dst/blobs/uploads/")),
    );
    assert!(
        empty_dir(scratch.path()),
        "the scratch directory is removed"
    );
    let (tagged, _) = client.get_manifest("team/dst", "v1").await.unwrap();
    assert_eq!(tagged.digest(), source.index.digest());
    assert_holds_source(&client, "team/dst", "v1", &source).await;
}

#[tokio::test]
async fn a_streamed_blob_that_does_not_verify_is_refused_and_nothing_is_tagged() {
    let source = source().await;
    let wire = Arc::new(Wire {
        refuse_mounts: true,
        corrupt: Some(format!("/v2/team/src/blobs/{}", source.big_layer)),
        ..Wire::default()
    });
    let addr = serve(wire.clone()).await;
    let client = client(&addr);
    client
        .push(
            &source.layout,
            &source.index,
            "team/src",
            Some("v1"),
            &PushOptions::new(),
        )
        .await
        .unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let refused = client
        .copy_within(
            "team/src",
            "v1",
            "team/dst",
            Some("v1"),
            &CopyWithinOptions::new().with_scratch_dir(Some(scratch.path().to_path_buf())),
        )
        .await;
    assert!(
        matches!(&refused, Err(Error::ContentMismatch { expected, .. })
            if **expected == source.big_layer),
        "{refused:?}"
    );
    assert!(matches!(
        client.get_manifest("team/dst", "v1").await,
        Err(Error::NotFound { .. })
    ));
    assert!(
        !client
            .blob_exists("team/dst", &source.big_layer)
            .await
            .unwrap()
    );
    assert!(
        empty_dir(scratch.path()),
        "the scratch directory is removed"
    );
}

#[tokio::test]
async fn a_manifest_that_does_not_match_its_digest_is_refused_before_anything_moves() {
    let source = source().await;
    // A child of the index (asked for by digest), and the root (asked for by tag, checked
    // against the Docker-Content-Digest the registry sends).
    for corrupt in [
        format!("/v2/team/src/manifests/{}", source.arm64.digest()),
        "/v2/team/src/manifests/v1".to_string(),
    ] {
        let wire = Arc::new(Wire {
            corrupt: Some(corrupt.clone()),
            ..Wire::default()
        });
        let addr = serve(wire.clone()).await;
        let client = client(&addr);
        client
            .push(
                &source.layout,
                &source.index,
                "team/src",
                Some("v1"),
                &PushOptions::new(),
            )
            .await
            .unwrap();
        wire.clear();
        let refused = client
            .copy_within(
                "team/src",
                "v1",
                "team/dst",
                Some("v1"),
                &CopyWithinOptions::new(),
            )
            .await;
        let expected = if corrupt.ends_with("/v1") {
            &source.index
        } else {
            &source.arm64
        };
        assert!(
            matches!(&refused, Err(Error::ContentMismatch { expected: e, .. })
                if e.as_str() == expected.digest().as_ref()),
            "{corrupt}: {refused:?}"
        );
        let requests = wire.requests();
        assert!(
            requests
                .iter()
                .all(|(_, p)| !p.starts_with("/v2/team/dst/")),
            "{corrupt}: nothing may reach the destination: {requests:?}"
        );
        assert!(matches!(
            client.get_manifest("team/dst", "v1").await,
            Err(Error::NotFound { .. })
        ));
    }
}

#[tokio::test]
async fn distribution_mounts_within_one_registry_and_serves_no_blob() {
    let Some(distribution) = Distribution::start() else {
        return;
    };
    let client = client(distribution.addr());
    let source = seed(&client).await;
    let report = client
        .copy_within(
            "team/src",
            "v1",
            "team/dst",
            Some("v1"),
            &CopyWithinOptions::new(),
        )
        .await
        .unwrap();
    assert_eq!((report.mounted, report.transferred), (5, 0));
    let (tagged, _) = client.get_manifest("team/dst", "v1").await.unwrap();
    assert_eq!(tagged.digest(), source.index.digest());
    assert_holds_source(&client, "team/dst", "v1", &source).await;
    let log = distribution.stop();
    assert!(!log.is_empty(), "Distribution logs its requests");
    let blob_reads: Vec<&String> = log
        .iter()
        .filter(|l| l.contains("\"GET /v2/team/src/blobs/"))
        .collect();
    assert!(blob_reads.is_empty(), "{blob_reads:?}");
    let mounts = log
        .iter()
        .filter(|l| l.contains("\"POST /v2/team/dst/blobs/uploads/?") && l.contains("\" 201 "))
        .count();
    assert_eq!(mounts, 5, "{log:#?}");
}

#[test]
fn copy_within_is_send() {
    fn send<F: std::future::Future + Send>(_: F) {}
    let client = client("127.0.0.1:1");
    send(client.copy_within("a", "v1", "b", Some("v1"), &CopyWithinOptions::new()));
}

/// Issue 14 leftover: the scratch space of a refused mount is a locked scratch directory
/// (`.ocikit-copy.ocikit-scratch-*` in the scratch directory), so what a killed copy left
/// there (its lock free) is removed by the next copy that needs scratch space, while one a
/// running copy holds is left alone.
#[tokio::test]
async fn a_killed_copys_scratch_space_is_removed_by_the_next_copy_that_needs_one() {
    let wire = Arc::new(Wire {
        refuse_mounts: true,
        ..Wire::default()
    });
    let addr = serve(wire.clone()).await;
    let client = client(&addr);
    let source = seed(&client).await;
    let scratch = tempfile::tempdir().unwrap();
    // A killed copy's leftovers: the lock file nobody holds, and a blob half downloaded.
    let stale = scratch
        .path()
        .join(".ocikit-copy.ocikit-scratch-killed0001");
    std::fs::create_dir_all(stale.join("scratch/layout/blobs/sha256")).unwrap();
    std::fs::write(stale.join("lock"), b"").unwrap();
    std::fs::write(
        stale
            .join("scratch/layout/blobs/sha256")
            .join("0".repeat(64)),
        vec![7u8; 4096],
    )
    .unwrap();
    // A copy still running: its lock is held.
    let live = scratch
        .path()
        .join(".ocikit-copy.ocikit-scratch-running001");
    std::fs::create_dir_all(&live).unwrap();
    let held = std::fs::File::create(live.join("lock")).unwrap();
    held.try_lock().unwrap();
    // Not scratch space at all.
    let other = scratch.path().join("keep-me");
    std::fs::write(&other, b"mine").unwrap();

    let report = client
        .copy_within(
            "team/src",
            "v1",
            "team/dst",
            Some("v1"),
            &CopyWithinOptions::new().with_scratch_dir(Some(scratch.path().to_path_buf())),
        )
        .await
        .unwrap();
    assert_eq!((report.mounted, report.transferred), (0, 5));
    let mut left: Vec<String> = std::fs::read_dir(scratch.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(
        left,
        [".ocikit-copy.ocikit-scratch-running001", "keep-me"],
        "the stale scratch directory stays, or the copy's own was not removed"
    );
    assert_holds_source(&client, "team/dst", "v1", &source).await;
    drop(held);
}
