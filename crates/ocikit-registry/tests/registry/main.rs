//! Integration tests for `ocikit-registry`: a real server on 127.0.0.1 (port 0), driven by
//! reqwest, on memory and filesystem stores.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod access;
mod bounded_files;
mod concurrency;
mod costs;
mod delete;
mod documents;
mod gc;
mod hostile;
mod isolation;
mod limits;
mod live;
mod manifests;
mod operations;
mod pages;
mod proxy;
mod pull;
mod push;
mod referrers;
mod replicas;
mod restart;
mod serving;
mod skopeo;
mod stores;
mod tags;

use std::sync::Arc;

use ocikit_digest::Digest;
use ocikit_registry::{Config, Registry};
use ocikit_store::{FsStore, MemoryStore, Store};
use reqwest::{Method, StatusCode};
use serde_json::Value;

#[test]
fn public_types_are_send_and_sync() {
    fn check<T: Send + Sync + 'static>() {}
    check::<Registry>();
    check::<Config>();
    check::<ocikit_registry::Error>();
    check::<ocikit_registry::ErrorCode>();
    check::<ocikit_registry::SweepReport>();
    check::<ocikit_registry::GcReport>();
    check::<ocikit_registry::GcOptions>();
    fn future<F: std::future::Future + Send>(_: F) {}
    let registry = Registry::new(
        Arc::new(MemoryStore::new()),
        Arc::new(MemoryStore::new()),
        Config::default(),
    )
    .unwrap();
    future(registry.sweep_uploads());
    future(registry.gc(&ocikit_registry::GcOptions::new()));
    let uploads: Arc<dyn Store> = Arc::new(MemoryStore::new());
    assert!(matches!(
        Registry::new(uploads.clone(), uploads, Config::default()),
        Err(ocikit_registry::Error::SharedUploadStore)
    ));
}

/// A plain reqwest client. reqwest is built without a crypto provider of its own (the
/// library hands it rustls-on-ring explicitly), so the tests install ring as the default.
pub(crate) fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// A running server and a client for it.
pub(crate) struct Server {
    pub(crate) base: String,
    pub(crate) client: reqwest::Client,
    pub(crate) registry: Registry,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    _dirs: Vec<Arc<tempfile::TempDir>>,
}

impl Server {
    /// Starts `registry` on an ephemeral loopback port.
    pub(crate) async fn start(registry: Registry) -> Server {
        Server::start_keeping(registry, Vec::new()).await
    }

    async fn start_keeping(registry: Registry, dirs: Vec<Arc<tempfile::TempDir>>) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let serving = registry.clone();
        let task = tokio::spawn(async move {
            serving
                .serve(listener, async {
                    rx.await.ok();
                })
                .await
                .unwrap();
        });
        Server {
            base: format!("http://{addr}"),
            client: http_client(),
            registry,
            shutdown: Some(tx),
            task: Some(task),
            _dirs: dirs,
        }
    }

    /// Stops the server and waits for it to finish.
    pub(crate) async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            tx.send(()).ok();
        }
        // The client's idle keep-alive connections would hold a graceful shutdown open.
        self.client = http_client();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(std::time::Duration::from_secs(10), task)
                .await
                .expect("server shut down in time")
                .unwrap();
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{}", self.base, path)
        }
    }

    pub(crate) fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, self.url(path))
    }

    pub(crate) async fn send(&self, method: Method, path: &str) -> reqwest::Response {
        self.request(method, path).send().await.unwrap()
    }

    /// Pushes a blob with POST then PUT; returns its digest.
    pub(crate) async fn push_blob(&self, name: &str, bytes: &[u8]) -> Digest {
        let digest = Digest::sha256(bytes);
        let location = self.start_upload(name).await;
        let resp = self
            .request(Method::PUT, &with_digest(&location, &digest))
            .header("content-type", "application/octet-stream")
            .body(bytes.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
        digest
    }

    /// Opens an upload session; returns its location.
    pub(crate) async fn start_upload(&self, name: &str) -> String {
        let resp = self
            .send(Method::POST, &format!("/v2/{name}/blobs/uploads/"))
            .await;
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
        location(&resp)
    }

    /// Pushes a manifest to `reference`; returns the response.
    pub(crate) async fn put_manifest(
        &self,
        name: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> reqwest::Response {
        self.request(Method::PUT, &format!("/v2/{name}/manifests/{reference}"))
            .header("content-type", media_type)
            .body(bytes.to_vec())
            .send()
            .await
            .unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            tx.send(()).ok();
        }
    }
}

/// `location` with `digest=` appended correctly.
pub(crate) fn with_digest(location: &str, digest: &Digest) -> String {
    let sep = if location.contains('?') { '&' } else { '?' };
    format!("{location}{sep}digest={digest}")
}

pub(crate) fn location(resp: &reqwest::Response) -> String {
    let location = header(resp, "location");
    assert!(!location.is_empty());
    location
}

pub(crate) fn header(resp: &reqwest::Response, name: &str) -> String {
    resp.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// Asserts a refused request: the status, and the spec's error envelope with `code`.
pub(crate) async fn assert_error(resp: reqwest::Response, status: StatusCode, code: &str) {
    assert_eq!(resp.status(), status, "status of {}", resp.url());
    let body: Value = resp.json().await.expect("error body is JSON");
    let errors = body["errors"].as_array().expect("`errors` array");
    assert_eq!(errors[0]["code"], code, "{body}");
    assert!(errors[0]["message"].is_string());
}

/// Deterministic test bytes.
pub(crate) fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1] ^ seed)
        .collect()
}

/// An image manifest, hand-written, referring to `config` and `layers` by digest and size.
pub(crate) fn image_manifest(config: (&Digest, usize), layers: &[(&Digest, usize)]) -> Vec<u8> {
    let layers: Vec<Value> = layers
        .iter()
        .map(|(d, s)| {
            serde_json::json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": d.as_str(), "size": s
            })
        })
        .collect();
    serde_json::to_vec_pretty(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config.0.as_str(), "size": config.1
        },
        "layers": layers,
    }))
    .unwrap()
}

pub(crate) const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// Which backends a test runs on.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Backend {
    Memory,
    Fs,
    /// Content and uploads under two prefixes of a fresh bucket on the shared moto server.
    S3,
}

/// The local backends.
pub(crate) const BACKENDS: [Backend; 2] = [Backend::Memory, Backend::Fs];

/// Every backend: the local ones, and S3 when moto is installed (always under `CI=true`,
/// where a missing moto fails the test instead).
pub(crate) fn backends() -> Vec<Backend> {
    let mut all = BACKENDS.to_vec();
    if ocikit_testkit::moto::shared().is_some() {
        all.push(Backend::S3);
    }
    all
}

/// The configuration of a store in `bucket` on moto, under `prefix`.
pub(crate) fn s3_config(
    moto: &ocikit_testkit::moto::MotoServer,
    bucket: &str,
    prefix: &str,
) -> ocikit_store::s3::S3Config {
    ocikit_store::s3::S3Config::new(bucket)
        .with_endpoint(moto.endpoint())
        .with_credentials(
            ocikit_testkit::moto::ACCESS_KEY,
            ocikit_testkit::moto::SECRET_KEY,
        )
        .with_allow_http(true)
        .with_prefix(prefix)
}

/// A server on a fresh pair of stores of `backend`.
pub(crate) async fn server(backend: Backend) -> Server {
    server_with(backend, Config::default()).await
}

pub(crate) async fn server_with(backend: Backend, config: Config) -> Server {
    match backend {
        Backend::Memory => {
            let registry = Registry::new(
                Arc::new(MemoryStore::new()),
                Arc::new(MemoryStore::new()),
                config,
            )
            .unwrap();
            Server::start(registry).await
        }
        Backend::Fs => {
            let dir = Arc::new(tempfile::tempdir().unwrap());
            let store = FsStore::open(dir.path().join("content")).await.unwrap();
            let uploads = FsStore::open(dir.path().join("uploads")).await.unwrap();
            let registry = Registry::new(Arc::new(store), Arc::new(uploads), config).unwrap();
            Server::start_keeping(registry, vec![dir]).await
        }
        Backend::S3 => {
            let moto = ocikit_testkit::moto::shared().expect("moto for S3 tests");
            let bucket = moto.bucket();
            let store = ocikit_store::S3Store::new(s3_config(moto, &bucket, "content")).unwrap();
            let uploads = ocikit_store::S3Store::new(s3_config(moto, &bucket, "uploads")).unwrap();
            let registry = Registry::new(Arc::new(store), Arc::new(uploads), config).unwrap();
            Server::start(registry).await
        }
    }
}
