//! Push and pull walk an image with the one graph walk (`ocikit_digest::graph`): the same
//! depth limit both ways, and documents before the indexes that name them.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use ocikit_client::{Client, Error, PullOptions, PushOptions};
use ocikit_digest::graph::MAX_DEPTH;
use ocikit_digest::oci_spec::image::Descriptor;
use ocikit_layout::Layout;
use ocikit_registry::{Config, Registry};
use ocikit_store::MemoryStore;
use serde_json::json;

use crate::Server;

const INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn client(server: &Server) -> Client {
    Client::builder(server.base.trim_start_matches("http://"))
        .plain_http(true)
        .retries(1, Duration::from_millis(10), Duration::from_millis(20))
        .build()
        .unwrap()
}

async fn server() -> Server {
    let registry = Registry::new(
        Arc::new(MemoryStore::new()),
        Arc::new(MemoryStore::new()),
        Config::default(),
    )
    .unwrap();
    Server::start(registry).await
}

/// An image under `levels` nested indexes.
async fn nested(layout: &Layout, levels: usize) -> Descriptor {
    let config = layout
        .put_blob("application/vnd.oci.empty.v1+json", b"{}")
        .await
        .unwrap();
    let layer = layout
        .put_blob("application/vnd.oci.image.layer.v1.tar", &[0u8; 1024])
        .await
        .unwrap();
    let mut top = layout
        .put_json(
            MANIFEST,
            &json!({"schemaVersion": 2, "mediaType": MANIFEST, "config": config,
                "layers": [layer]}),
        )
        .await
        .unwrap();
    for _ in 0..levels {
        top = layout
            .put_json(
                INDEX,
                &json!({"schemaVersion": 2, "mediaType": INDEX, "manifests": [top]}),
            )
            .await
            .unwrap();
    }
    top
}

#[tokio::test]
async fn images_nested_to_the_limit_go_both_ways_and_deeper_ones_neither() {
    let server = server().await;
    let client = client(&server);
    let source = Layout::create(MemoryStore::new()).await.unwrap();
    // Pull followed 8 levels before, push 16: now both follow the one limit.
    let deep = nested(&source, MAX_DEPTH).await;
    let pushed = client
        .push(&source, &deep, "deep", Some("v1"), &PushOptions::new())
        .await
        .unwrap();
    assert_eq!((pushed.manifests, pushed.blobs), (MAX_DEPTH + 1, 2));
    let destination = Layout::create(MemoryStore::new()).await.unwrap();
    let pulled = client
        .pull("deep", "v1", &destination, "copy", &PullOptions::new())
        .await
        .unwrap();
    assert_eq!((pulled.manifests, pulled.blobs), (MAX_DEPTH + 1, 2));
    assert_eq!(
        destination.resolve("copy").await.unwrap().digest(),
        deep.digest()
    );
    // One level more: refused by push before anything is sent.
    let deeper = nested(&source, MAX_DEPTH + 1).await;
    match client
        .push(&source, &deeper, "deeper", Some("v1"), &PushOptions::new())
        .await
    {
        Err(Error::Layout { source, .. }) => assert!(
            matches!(*source, ocikit_layout::Error::GraphTooLarge { .. }),
            "{source:?}"
        ),
        other => panic!("{other:?}"),
    }
    // Pushed by hand (the registry does not walk), refused by pull, nothing stored.
    let mut documents = vec![deeper.clone()];
    while let Some(d) = documents.pop() {
        let bytes = source.read_blob(&d).await.unwrap();
        if let ocikit_layout::Document::Index { index, .. } =
            ocikit_layout::document::parse(&d, bytes.clone()).unwrap()
        {
            documents.extend(index.manifests().iter().cloned());
        }
        let resp = crate::http_client()
            .put(format!(
                "{}/v2/deeper/manifests/{}",
                server.base,
                d.digest()
            ))
            .header("content-type", d.media_type().to_string())
            .body(bytes.to_vec())
            .send()
            .await
            .unwrap();
        assert!(
            resp.status().is_success() || resp.status().as_u16() == 400,
            "{}",
            resp.status()
        );
    }
    let empty = Layout::create(MemoryStore::new()).await.unwrap();
    let result = client
        .pull(
            "deeper",
            deeper.digest().as_ref(),
            &empty,
            "copy",
            &PullOptions::new(),
        )
        .await;
    match result {
        Err(Error::Layout { source, .. }) => assert!(
            matches!(*source, ocikit_layout::Error::GraphTooLarge { .. }),
            "{source:?}"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(empty.store().list().count().await, 0);
}
