//! Token authentication and access policies, end to end: a token server written here
//! (ES256 and RS256 JWTs signed with keys made in the tests) in front of a real server on
//! 127.0.0.1, with reqwest, ocikit's own client and skopeo; hostile tokens; per-repository
//! rules for htpasswd users, groups and anonymous pulls.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod policy;
mod token;
mod token_server;

use std::sync::Arc;

use ocikit_registry::{Config, Registry};
use ocikit_store::MemoryStore;
use reqwest::StatusCode;
use serde_json::Value;

/// A plain reqwest client (ring as the process's crypto provider, as the library's own
/// clients use).
pub(crate) fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// A registry on memory stores, served on an ephemeral loopback port until dropped.
pub(crate) struct Server {
    pub(crate) base: String,
    pub(crate) host: String,
    pub(crate) client: reqwest::Client,
    pub(crate) registry: Registry,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Server {
    pub(crate) async fn start(config: Config) -> Server {
        let registry = Registry::new(
            Arc::new(MemoryStore::new()),
            Arc::new(MemoryStore::new()),
            config,
        )
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let serving = registry.clone();
        tokio::spawn(async move {
            serving
                .serve(listener, async {
                    rx.await.ok();
                })
                .await
                .unwrap();
        });
        Server {
            base: format!("http://{addr}"),
            host: addr.to_string(),
            client: http_client(),
            registry,
            shutdown: Some(tx),
        }
    }

    pub(crate) fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let url = if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        };
        self.client.request(method, url)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            tx.send(()).ok();
        }
    }
}

pub(crate) fn header(resp: &reqwest::Response, name: &str) -> String {
    resp.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// Asserts a refused request: the status and the spec's error envelope with `code`;
/// returns the error's message.
pub(crate) async fn refused(resp: reqwest::Response, status: StatusCode, code: &str) -> String {
    let url = resp.url().clone();
    assert_eq!(resp.status(), status, "status of {url}");
    let body: Value = resp.json().await.expect("error body is JSON");
    assert_eq!(body["errors"][0]["code"], code, "{url}: {body}");
    body["errors"][0]["message"].as_str().unwrap().to_owned()
}

/// Deterministic test bytes.
pub(crate) fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1] ^ seed)
        .collect()
}

pub(crate) const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// A one-layer image manifest over `config` and `layer` (digest, size).
pub(crate) fn image_manifest(config: (&str, usize), layer: (&str, usize)) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config.0, "size": config.1
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": layer.0, "size": layer.1
        }],
    }))
    .unwrap()
}
