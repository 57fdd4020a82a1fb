//! Chunked uploads finished in the process that received them commit the writer the PATCHes
//! fed, without reading the chunks back; whenever that writer may not hold exactly what the
//! session lists (another process took a chunk, a PATCH failed), the chunks are replayed.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use ocikit_registry::{Config, Registry};
use ocikit_store::conformance::Intercept;
use ocikit_store::{MemoryStore, Store};
use reqwest::{Method, StatusCode};

use crate::{Server, assert_error, data, location, with_digest};

/// Two registries (two "processes") on one content store and one upload store, the upload
/// store counting its blob reads.
async fn pair() -> (Server, Server, Arc<AtomicUsize>) {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let gets = Arc::new(AtomicUsize::new(0));
    let uploads: Arc<dyn Store> = Arc::new(Intercept::counting(
        Arc::new(MemoryStore::new()),
        gets.clone(),
    ));
    let a = Registry::new(store.clone(), uploads.clone(), Config::default()).unwrap();
    let b = Registry::new(store, uploads, Config::default()).unwrap();
    (Server::start(a).await, Server::start(b).await, gets)
}

async fn patch(server: &Server, location: &str, from: usize, bytes: &[u8]) -> reqwest::Response {
    server
        .request(Method::PATCH, location)
        .header("content-type", "application/octet-stream")
        .header(
            "content-range",
            format!("{from}-{}", from + bytes.len() - 1),
        )
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap()
}

async fn finish(
    server: &Server,
    location: &str,
    digest: &ocikit_digest::Digest,
) -> reqwest::Response {
    server
        .request(Method::PUT, &with_digest(location, digest))
        .header("content-length", "0")
        .send()
        .await
        .unwrap()
}

async fn blob_bytes(server: &Server, name: &str, digest: &ocikit_digest::Digest) -> Vec<u8> {
    let resp = server
        .send(Method::GET, &format!("/v2/{name}/blobs/{digest}"))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    resp.bytes().await.unwrap().to_vec()
}

#[tokio::test]
async fn one_process_commits_without_reading_chunks_back() {
    let (a, _b, gets) = pair().await;
    let bytes = data(3 << 20, 7);
    let digest = ocikit_digest::Digest::sha256(&bytes);
    let mut loc = a.start_upload("app").await;
    for (i, part) in bytes.chunks(1 << 20).enumerate() {
        let resp = patch(&a, &loc, i << 20, part).await;
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
        loc = location(&resp);
    }
    let resp = finish(&a, &loc, &digest).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(gets.load(Ordering::SeqCst), 0, "the chunks were read back");
    assert_eq!(blob_bytes(&a, "app", &digest).await, bytes);
    assert!(
        a.registry
            .upload_store()
            .list_documents("sessions")
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_chunk_taken_by_another_process_makes_the_first_replay() {
    let (a, b, gets) = pair().await;
    let bytes = data(3 << 20, 8);
    let digest = ocikit_digest::Digest::sha256(&bytes);
    let parts: Vec<&[u8]> = bytes.chunks(1 << 20).collect();
    let loc = a.start_upload("app").await;
    let loc = location(&patch(&a, &loc, 0, parts[0]).await);
    // The middle chunk reaches the other process; the first one's writer lacks it.
    let resp = patch(&b, &loc, 1 << 20, parts[1]).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let loc = location(&resp);
    let resp = patch(&a, &loc, 2 << 20, parts[2]).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let loc = location(&resp);
    let resp = finish(&a, &loc, &digest).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert!(
        gets.load(Ordering::SeqCst) >= 3,
        "the chunks were not replayed"
    );
    assert_eq!(blob_bytes(&a, "app", &digest).await, bytes);
    assert_eq!(blob_bytes(&b, "app", &digest).await, bytes);
}

#[tokio::test]
async fn a_failed_patch_drops_the_fast_path_and_the_upload_still_completes() {
    let (a, _b, gets) = pair().await;
    let bytes = data(2 << 20, 9);
    let digest = ocikit_digest::Digest::sha256(&bytes);
    let (first, second) = bytes.split_at(1 << 20);
    let loc = a.start_upload("app").await;
    let loc = location(&patch(&a, &loc, 0, first).await);
    // A body that breaks off halfway (the client died): refused after part of it was fed to
    // the live writer, which must then not be trusted any more.
    let half = second[..512 << 10].to_vec();
    let broken = futures::stream::iter(vec![
        Ok::<_, std::io::Error>(bytes::Bytes::from(half)),
        Err(std::io::Error::other("client died")),
    ]);
    let sent = a
        .request(Method::PATCH, &loc)
        .header("content-type", "application/octet-stream")
        .body(reqwest::Body::wrap_stream(broken))
        .send()
        .await;
    if let Ok(resp) = sent {
        assert!(resp.status().is_client_error(), "{}", resp.status());
    }
    let status = a.send(Method::GET, &loc).await;
    assert_eq!(
        crate::header(&status, "range"),
        format!("0-{}", (1 << 20) - 1),
        "the broken PATCH left nothing in the session"
    );
    let resp = patch(&a, &loc, 1 << 20, second).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let loc = location(&resp);
    let resp = finish(&a, &loc, &digest).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert!(
        gets.load(Ordering::SeqCst) > 0,
        "the chunks were not replayed"
    );
    assert_eq!(blob_bytes(&a, "app", &digest).await, bytes);
}

#[tokio::test]
async fn the_fast_path_verifies_the_digest_and_publishes_nothing_wrong() {
    let (a, _b, _gets) = pair().await;
    let bytes = data(1 << 20, 10);
    let wrong = ocikit_digest::Digest::sha256(b"something else");
    let loc = a.start_upload("app").await;
    let loc = location(&patch(&a, &loc, 0, &bytes).await);
    let resp = finish(&a, &loc, &wrong).await;
    assert_error(resp, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    assert_eq!(a.registry.store().stat(&wrong).await.unwrap(), None);
    let right = ocikit_digest::Digest::sha256(&bytes);
    assert_eq!(a.registry.store().stat(&right).await.unwrap(), None);
}
