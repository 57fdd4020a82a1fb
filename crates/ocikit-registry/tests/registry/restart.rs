//! Upload sessions survive a restart: start on one server, stop it, finish on a new server
//! over the same directory.

use ocikit_digest::Digest;
use ocikit_registry::Registry;
use reqwest::{Method, StatusCode};

use crate::*;

#[tokio::test]
async fn upload_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let blob = data(3 << 20, 1);
    let digest = Digest::sha256(&blob);
    let (first, second) = blob.split_at(1 << 20);

    let s = Server::start(Registry::open(dir.path()).await.unwrap()).await;
    let loc = s.start_upload("app").await;
    let resp = s
        .request(Method::PATCH, &loc)
        .header("content-range", format!("0-{}", first.len() - 1))
        .body(first.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    s.stop().await;

    // A new process on the same directory (and a new port).
    let s = Server::start(Registry::open(dir.path()).await.unwrap()).await;
    let resp = s.send(Method::GET, &loc).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&resp, "range"), format!("0-{}", first.len() - 1));
    let resp = s
        .request(Method::PATCH, &loc)
        .header(
            "content-range",
            format!("{}-{}", first.len(), blob.len() - 1),
        )
        .body(second.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let resp = s.send(Method::PUT, &with_digest(&loc, &digest)).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let resp = s
        .send(Method::GET, &format!("/v2/app/blobs/{digest}"))
        .await;
    assert_eq!(resp.bytes().await.unwrap(), &blob[..]);
    // The content store is an OCI layout's blob directory; chunks never landed there.
    assert!(dir.path().join(digest.blob_path()).is_file());
    let mut blobs = 0;
    for entry in std::fs::read_dir(dir.path().join("blobs/sha256")).unwrap() {
        entry.unwrap();
        blobs += 1;
    }
    assert_eq!(blobs, 1);
    s.stop().await;
}
