//! `Client::copy_from` and `Client::push_blob_stream`: images copied between two registries
//! served in-process, every blob streamed from one to the other in one pass (one streamed
//! PUT, or PATCH chunks), a blob several copies share moved once by their `BlobLedger`,
//! and a source whose bytes do not match their digest refused with nothing landing at the
//! destination. Each server is wrapped in a middleware that records every request and can
//! flip one byte of one response.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use ocikit_client::{BlobLedger, Client, CopyFromOptions, Error, PullOptions, PushOptions};
use ocikit_digest::Digest;
use ocikit_digest::oci_spec::image::Descriptor;
use ocikit_layout::Layout;
use ocikit_registry::{Config, Registry};
use ocikit_store::{MemoryStore, StoreExt};
use serde_json::json;

use crate::data;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

#[derive(Default)]
struct Wire {
    /// Every request seen: method, and path with its query.
    log: Mutex<Vec<(Method, String)>>,
    /// The path of a GET whose response body gets one byte flipped.
    corrupt: Option<String>,
}

impl Wire {
    fn requests(&self) -> Vec<(Method, String)> {
        self.log.lock().unwrap().clone()
    }

    fn count(&self, method: Method, needle: &str) -> usize {
        self.requests()
            .iter()
            .filter(|(m, p)| *m == method && p.contains(needle))
            .count()
    }
}

async fn wire(State(wire): State<Arc<Wire>>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let full = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    wire.log.lock().unwrap().push((method.clone(), full));
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

/// A client whose blobs over 2.5 MiB go in PATCH chunks of 1 MiB.
fn client(addr: &str) -> Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::builder(addr)
        .plain_http(true)
        .chunking(5 << 19, 1 << 20)
        .retries(
            2,
            std::time::Duration::from_millis(10),
            std::time::Duration::from_millis(100),
        )
        .build()
        .unwrap()
}

/// An image manifest with these layers (config and layers stored in `layout`).
async fn image(layout: &Layout, layers: &[&[u8]]) -> Descriptor {
    let mut layer_descriptors = Vec::new();
    for layer in layers {
        let d = layout.put_blob(LAYER, layer).await.unwrap();
        layer_descriptors.push(json!({
            "mediaType": LAYER, "digest": d.digest().to_string(), "size": d.size()
        }));
    }
    let config = json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers"}});
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

/// Two images sharing a 3 MiB base layer (chunked at the destination), each with a 2 MiB
/// layer of its own (one streamed PUT) and the same small config, pushed to `app:a` and
/// `app:b` of `source`. Returns the layout and the base layer's digest.
async fn two_images(source: &Client) -> (Layout, Digest) {
    let layout = Layout::create(MemoryStore::new()).await.unwrap();
    let base = data(3 << 20, 1);
    for (tag, seed) in [("a", 2u8), ("b", 3)] {
        let own = data(2 << 20, seed);
        let root = image(&layout, &[&base, &own]).await;
        source
            .push(&layout, &root, "app", Some(tag), &PushOptions::new())
            .await
            .unwrap();
    }
    (layout, Digest::sha256(&base))
}

/// Pulls `repository:tag` into a fresh layout (every blob downloaded and verified) and
/// checks each blob against the source's bytes.
async fn assert_same(client: &Client, repository: &str, tag: &str, source: &Layout) {
    let pulled = Layout::create(MemoryStore::new()).await.unwrap();
    let report = client
        .pull(repository, tag, &pulled, tag, &PullOptions::new())
        .await
        .unwrap();
    assert_eq!(report.blobs, 3);
    let root = report.root.unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(
        &pulled
            .store()
            .get_bytes(&digest(&root), 1 << 20)
            .await
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    let mut blobs = vec![manifest["config"]["digest"].as_str().unwrap().to_string()];
    for layer in manifest["layers"].as_array().unwrap() {
        blobs.push(layer["digest"].as_str().unwrap().to_string());
    }
    for blob in blobs {
        let blob = Digest::parse(&blob).unwrap();
        assert_eq!(
            pulled.store().get_bytes(&blob, 1 << 30).await.unwrap(),
            source.store().get_bytes(&blob, 1 << 30).await.unwrap(),
            "{blob}"
        );
    }
}

fn digest(d: &Descriptor) -> Digest {
    Digest::parse(d.digest().as_ref()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn images_stream_between_registries_and_a_shared_blob_moves_once() {
    let (from_wire, to_wire) = (Arc::new(Wire::default()), Arc::new(Wire::default()));
    let from = client(&serve(from_wire.clone()).await);
    let to = client(&serve(to_wire.clone()).await);
    let (layout, base) = two_images(&from).await;
    from_wire.log.lock().unwrap().clear();

    // Both at once, sharing one ledger: one of them moves the base layer and the config,
    // the other waits for it.
    let ledger = BlobLedger::new();
    let options = CopyFromOptions::new().with_ledger(ledger.clone());
    let (a, b) = futures::join!(
        to.copy_from(&from, "app", "a", "mirror/app", Some("a"), &options),
        to.copy_from(&from, "app", "b", "mirror/app", Some("b"), &options),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    // Four distinct blobs (base, config, two own layers), each transferred once.
    assert_eq!(a.transferred + b.transferred, 4, "{a:?} {b:?}");
    assert_eq!(a.skipped + b.skipped, 2, "{a:?} {b:?}");
    // The blobs' bytes were sent once: the base, the two own layers, the one config.
    let config = a.total_bytes - (5 << 20);
    assert_eq!(a.bytes + b.bytes, (7 << 20) + config, "{a:?} {b:?}");
    assert!(ledger.holds(to.registry(), "mirror/app", &base));
    // The source was read once per blob, the destination sent each blob once: the base
    // layer in 1 MiB PATCH chunks and one closing PUT, the own layers in one PUT each.
    let blob_gets = from_wire.count(Method::GET, "/blobs/sha256:");
    assert_eq!(blob_gets, 4, "{:?}", from_wire.requests());
    assert_eq!(from_wire.count(Method::GET, &format!("/blobs/{base}")), 1);
    assert_eq!(to_wire.count(Method::POST, "/blobs/uploads/"), 4);
    assert_eq!(to_wire.count(Method::PATCH, "/blobs/uploads/"), 3);
    assert_eq!(
        to_wire.count(Method::PUT, &format!("digest={base}").replace(':', "%3A")),
        1
    );
    assert_same(&to, "mirror/app", "a", &layout).await;
    assert_same(&to, "mirror/app", "b", &layout).await;

    // HEAD names what GET reads; a missing tag is NotFound.
    let head = to.head_manifest("mirror/app", "a").await.unwrap();
    let (got, _) = to.get_manifest("mirror/app", "a").await.unwrap();
    assert_eq!(head, got);
    assert!(matches!(
        to.head_manifest("mirror/app", "nope").await,
        Err(Error::NotFound { .. })
    ));

    // Another repository of the same destination: the blobs the ledger knows are mounted
    // from where they are, nothing is downloaded.
    let before = from_wire.count(Method::GET, "/blobs/sha256:");
    let c = to
        .copy_from(&from, "app", "a", "other", Some("a"), &options)
        .await
        .unwrap();
    assert_eq!((c.mounted, c.transferred), (3, 0), "{c:?}");
    assert_eq!(from_wire.count(Method::GET, "/blobs/sha256:"), before);
    assert_same(&to, "other", "a", &layout).await;

    // A second run with a fresh ledger asks (HEAD) and moves nothing.
    let again = to
        .copy_from(
            &from,
            "app",
            "b",
            "mirror/app",
            Some("b"),
            &CopyFromOptions::new(),
        )
        .await
        .unwrap();
    assert_eq!((again.skipped, again.transferred), (3, 0), "{again:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_source_blob_that_does_not_match_its_digest_lands_nowhere() {
    // The base layer (3 MiB: PATCH chunks at the destination) with one byte flipped.
    let layout = Layout::create(MemoryStore::new()).await.unwrap();
    let base = data(3 << 20, 1);
    let base_digest = Digest::sha256(&base);
    let from_wire = Arc::new(Wire {
        corrupt: Some(format!("/v2/app/blobs/{base_digest}")),
        ..Wire::default()
    });
    let to_wire = Arc::new(Wire::default());
    let from = client(&serve(from_wire.clone()).await);
    let to = client(&serve(to_wire.clone()).await);
    let own = data(2 << 20, 2);
    let root = image(&layout, &[&base, &own]).await;
    from.push(&layout, &root, "app", Some("a"), &PushOptions::new())
        .await
        .unwrap();

    let refused = to
        .copy_from(&from, "app", "a", "app", Some("a"), &CopyFromOptions::new())
        .await;
    assert!(
        matches!(&refused, Err(Error::ContentMismatch { expected, registry, .. })
            if **expected == base_digest && registry == from.registry()),
        "{refused:?}"
    );
    assert!(!to.blob_exists("app", &base_digest).await.unwrap());
    assert!(matches!(
        to.get_manifest("app", "a").await,
        Err(Error::NotFound { .. })
    ));
    // No upload of it was closed, and its session was cancelled.
    let closing = format!("digest={}", base_digest.to_string().replace(':', "%3A"));
    assert_eq!(
        to_wire.count(Method::PUT, &closing),
        0,
        "{:?}",
        to_wire.requests()
    );
    assert!(to_wire.count(Method::DELETE, "/blobs/uploads/") >= 1);

    // Straight from a stream, in one PUT (2 MiB) and in chunks (3 MiB): the wrong bytes
    // of the right length, too few and too many are all refused; nothing lands.
    for (len, seed) in [(2usize << 20, 4u8), (3 << 20, 5)] {
        let good = data(len, seed);
        let digest = Digest::sha256(&good);
        let mut wrong = good.clone();
        wrong[len - 1] ^= 1;
        let cases: [(Vec<u8>, &str); 3] = [
            (wrong, "mismatch"),
            (good[..len - 10].to_vec(), "short"),
            ([good.as_slice(), b"extra"].concat(), "long"),
        ];
        for (bytes, case) in cases {
            let stream = futures::stream::iter(
                bytes
                    .chunks(64 << 10)
                    .map(|c| Ok::<_, std::io::Error>(Bytes::copy_from_slice(c)))
                    .collect::<Vec<_>>(),
            );
            let result = to
                .push_blob_stream("direct", &digest, len as u64, stream)
                .await;
            match case {
                "mismatch" => assert!(
                    matches!(&result, Err(Error::ContentMismatch { .. })),
                    "{len} {case}: {result:?}"
                ),
                _ => assert!(
                    matches!(&result, Err(Error::ContentSize { expected, .. }) if *expected == len as u64),
                    "{len} {case}: {result:?}"
                ),
            }
            assert!(
                !to.blob_exists("direct", &digest).await.unwrap(),
                "{len} {case}"
            );
        }
        // The right bytes land.
        let stream = futures::stream::iter(
            good.chunks(64 << 10)
                .map(|c| Ok::<_, std::io::Error>(Bytes::copy_from_slice(c)))
                .collect::<Vec<_>>(),
        );
        assert_eq!(
            to.push_blob_stream("direct", &digest, len as u64, stream)
                .await
                .unwrap(),
            len as u64
        );
        assert!(to.blob_exists("direct", &digest).await.unwrap());
    }
}
