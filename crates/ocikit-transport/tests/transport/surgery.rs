//! Shared by the surgery tests (mutate, append, flatten): a manifest and its config read
//! back, an image with one big layer, and a registry served in-process whose traffic is
//! counted at the server.

use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::Response;
use ocikit_codec::compression::Compression;
use ocikit_digest::oci_spec::image::{Descriptor, ImageManifest};
use ocikit_layout::{Document, ImageBuilder, LayerSpec, Layout};
use ocikit_registry::{Config, Registry};
use ocikit_store::{FsStore, MemoryStore};
use serde_json::Value;

/// The manifest `root` names in `layout`, and its config as JSON.
pub(crate) async fn read(layout: &Layout, root: &Descriptor) -> (ImageManifest, Value) {
    let Document::Manifest { manifest, .. } = layout.read_document(root).await.unwrap() else {
        panic!("{} is not a manifest", root.digest());
    };
    let config = layout.read_blob(manifest.config()).await.unwrap();
    (*manifest, serde_json::from_slice(&config).unwrap())
}

/// An image of one layer of `len` random bytes (stored uncompressed), tagged `tag`.
pub(crate) async fn big_image(dir: &Path, tag: &str, len: usize) -> (Layout, Descriptor) {
    let tree = tempfile::tempdir().unwrap();
    std::fs::write(
        tree.path().join("random.bin"),
        ocikit_testkit::prng::bytes(16, len),
    )
    .unwrap();
    let layout = Layout::create(FsStore::open(dir).await.unwrap())
        .await
        .unwrap();
    let mut builder = ImageBuilder::new(&layout);
    builder
        .platform(&ocikit_digest::platform::parse("linux/amd64").unwrap())
        .cmd(["/bin/sh"]);
    builder
        .add_layer_from_dir(tree.path(), LayerSpec::new().compression(Compression::None))
        .await
        .unwrap();
    let root = builder.write_and_tag(tag).await.unwrap();
    (layout, root)
}

/// What crossed the wire of a registry, counted at the server: request and response body
/// bytes, and each request's method and path.
#[derive(Clone, Default)]
pub(crate) struct Traffic(Arc<Mutex<TrafficLog>>);

#[derive(Default)]
struct TrafficLog {
    uploaded: u64,
    downloaded: u64,
    requests: Vec<(String, String, u64, u64)>,
}

impl Traffic {
    pub(crate) fn reset(&self) {
        *self.0.lock().unwrap() = TrafficLog::default();
    }

    pub(crate) fn totals(&self) -> (u64, u64) {
        let log = self.0.lock().unwrap();
        (log.uploaded, log.downloaded)
    }

    /// The requests whose path names `digest`, as `METHOD PATH`.
    pub(crate) fn touching(&self, digest: &str) -> Vec<String> {
        let log = self.0.lock().unwrap();
        log.requests
            .iter()
            .filter(|(_, path, _, _)| path.contains(digest))
            .map(|(method, path, up, down)| format!("{method} {path} (up {up}, down {down})"))
            .collect()
    }
}

async fn count(traffic: Traffic, request: Request, next: Next) -> Response {
    let method = request.method().to_string();
    let path = request.uri().to_string();
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let up = body.len() as u64;
    let response = next.run(Request::from_parts(parts, Body::from(body))).await;
    let (parts, body) = response.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let down = body.len() as u64;
    {
        let mut log = traffic.0.lock().unwrap();
        log.uploaded += up;
        log.downloaded += down;
        log.requests.push((method, path, up, down));
    }
    Response::from_parts(parts, Body::from(body))
}

/// A registry served in-process whose traffic `Traffic` counts.
pub(crate) async fn counted_registry() -> (String, Traffic) {
    let registry = Registry::new(
        Arc::new(MemoryStore::new()),
        Arc::new(MemoryStore::new()),
        Config::default(),
    )
    .unwrap();
    let traffic = Traffic::default();
    let seen = traffic.clone();
    let app = registry
        .router()
        .layer(middleware::from_fn(move |request: Request, next: Next| {
            count(seen.clone(), request, next)
        }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.ok();
    });
    (addr.to_string(), traffic)
}

/// The blob files of a layout directory.
pub(crate) fn blob_count(dir: &Path) -> usize {
    crate::files(&dir.join("blobs")).len()
}
