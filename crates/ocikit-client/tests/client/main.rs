//! Integration tests for `ocikit-client`: the client against ocikit's own server on
//! 127.0.0.1 (port 0), and against small servers that misbehave on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod client;
mod copy_within;
mod login;
mod mirror;
mod token_flow;
#[path = "../../../ocikit-registry/tests/auth/token_server.rs"]
mod token_server;
mod walk;

use ocikit_client::{Client, Operation, PullOptions, PushOptions};
use ocikit_digest::Digest;
use ocikit_registry::Registry;
use ocikit_store::MemoryStore;

#[test]
fn public_types_are_send_and_sync() {
    fn check<T: Send + Sync + 'static>() {}
    fn future<F: std::future::Future + Send>(_: F) {}
    check::<Client>();
    check::<ocikit_client::Error>();
    check::<Operation>();
    check::<ocikit_client::Credentials>();
    check::<ocikit_client::DockerConfig>();
    check::<PullOptions>();
    check::<PushOptions>();
    check::<ocikit_client::TransferReport>();
    check::<ocikit_client::CatalogPage>();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = Client::builder("127.0.0.1:1")
        .plain_http(true)
        .build()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let layout = rt
        .block_on(ocikit_layout::Layout::create(MemoryStore::new()))
        .unwrap();
    let root = ocikit_digest::descriptor::empty();
    future(client.pull("a", "v1", &layout, "t", &PullOptions::new()));
    future(client.push(&layout, &root, "a", None, &PushOptions::new()));
    future(client.referrers("a", &Digest::sha256(b""), None));
    future(client.tags("a"));
    future(client.ping());
    future(client.delete_manifest("a", "v1"));
    future(client.catalog(None, None));
    future(client.catalog_page(Some(1), None));
}

#[test]
fn operations_say_what_the_client_was_doing() {
    let digest = Digest::sha256(b"x");
    let cases = [
        (Operation::Ping, "GET /v2/".to_string(), "/v2/".to_string()),
        (
            Operation::PullManifest {
                reference: "v1".into(),
            },
            "GET manifest v1".into(),
            "manifest v1".into(),
        ),
        (
            Operation::CheckBlob {
                digest: digest.clone(),
            },
            format!("HEAD blob {digest}"),
            format!("blob {digest}"),
        ),
        (
            Operation::PushChunk {
                digest: digest.clone(),
                first: 0,
                last: 9,
            },
            format!("upload blob {digest} (bytes 0-9)"),
            format!("upload blob {digest} (bytes 0-9)"),
        ),
        (
            Operation::DeleteManifest {
                reference: "v1".into(),
            },
            "DELETE manifest v1".into(),
            "manifest v1".into(),
        ),
        (Operation::Catalog, "GET catalog".into(), "catalog".into()),
    ];
    for (operation, shown, missing) in cases {
        assert_eq!(operation.to_string(), shown);
        assert_eq!(operation.missing(), missing);
    }
}

#[tokio::test]
async fn a_delete_of_an_invalid_reference_sends_nothing() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Nothing listens on port 1: an error other than InvalidName would mean a request.
    let client = Client::builder("127.0.0.1:1")
        .plain_http(true)
        .build()
        .unwrap();
    for bad in ["not a tag!", "sha256:short", ""] {
        let err = client.delete_manifest("app", bad).await.unwrap_err();
        assert!(
            matches!(&err, ocikit_client::Error::InvalidName { name, .. } if name == bad),
            "{bad}: {err:?}"
        );
    }
    let err = client.delete_manifest("Bad/Name", "v1").await.unwrap_err();
    assert!(
        matches!(err, ocikit_client::Error::InvalidName { .. }),
        "{err:?}"
    );
}

/// A plain reqwest client, for probes beside the client under test. reqwest is built without
/// a crypto provider of its own, so the tests install ring as the default.
pub(crate) fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// A registry served on an ephemeral loopback port.
pub(crate) struct Server {
    pub(crate) base: String,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Server {
    /// Starts `registry` on an ephemeral loopback port.
    pub(crate) async fn start(registry: Registry) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            registry
                .serve(listener, async {
                    rx.await.ok();
                })
                .await
                .unwrap();
        });
        Server {
            base: format!("http://{addr}"),
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// Stops the server and waits for it to finish.
    pub(crate) async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            tx.send(()).ok();
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(std::time::Duration::from_secs(10), task)
                .await
                .expect("server shut down in time")
                .unwrap();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            tx.send(()).ok();
        }
    }
}

/// Deterministic test bytes.
pub(crate) fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1] ^ seed)
        .collect()
}
