//! Many clients at once: the same blob, different tags, one session raced by many PATCHes.

use ocikit_digest::Digest;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_clients_push_the_same_blob_and_different_tags() {
    for backend in backends() {
        let s = std::sync::Arc::new(server(backend).await);
        let blob = data(200_000, 1);
        let digest = Digest::sha256(&blob);
        let config = s.push_blob("app", b"{}").await;
        let mut tasks = Vec::new();
        for i in 0..24 {
            let s = s.clone();
            let blob = blob.clone();
            let config = config.clone();
            tasks.push(tokio::spawn(async move {
                // Half monolithic, half chunked.
                if i % 2 == 0 {
                    assert_eq!(s.push_blob("app", &blob).await, Digest::sha256(&blob));
                } else {
                    let loc = s.start_upload("app").await;
                    for (n, chunk) in blob.chunks(50_000).enumerate() {
                        let start = n * 50_000;
                        let resp = s
                            .request(Method::PATCH, &loc)
                            .header(
                                "content-range",
                                format!("{start}-{}", start + chunk.len() - 1),
                            )
                            .body(chunk.to_vec())
                            .send()
                            .await
                            .unwrap();
                        assert_eq!(resp.status(), StatusCode::ACCEPTED);
                    }
                    let resp = s
                        .send(Method::PUT, &with_digest(&loc, &Digest::sha256(&blob)))
                        .await;
                    assert_eq!(resp.status(), StatusCode::CREATED);
                }
                let manifest =
                    image_manifest((&config, 2), &[(&Digest::sha256(&blob), blob.len())]);
                let resp = s
                    .put_manifest("app", &format!("tag-{i:02}"), MANIFEST, &manifest)
                    .await;
                assert_eq!(resp.status(), StatusCode::CREATED);
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let resp = s.send(Method::GET, "/v2/app/tags/list").await;
        let body: Value = resp.json().await.unwrap();
        let tags = body["tags"].as_array().unwrap();
        assert_eq!(tags.len(), 24);
        for (i, tag) in tags.iter().enumerate() {
            assert_eq!(tag, &format!("tag-{i:02}"));
        }
        let resp = s
            .send(Method::GET, &format!("/v2/app/blobs/{digest}"))
            .await;
        assert_eq!(resp.bytes().await.unwrap(), &blob[..]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_patches_on_one_session_serialise() {
    let s = std::sync::Arc::new(server(Backend::Fs).await);
    let loc = s.start_upload("app").await;
    let mut tasks = Vec::new();
    for i in 0..8u8 {
        let s = s.clone();
        let loc = loc.clone();
        tasks.push(tokio::spawn(async move {
            let resp = s
                .request(Method::PATCH, &loc)
                .header("content-range", "0-9999")
                .body(vec![i; 10_000])
                .send()
                .await
                .unwrap();
            (resp.status(), i)
        }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        let (status, i) = task.await.unwrap();
        match status {
            StatusCode::ACCEPTED => winners.push(i),
            StatusCode::RANGE_NOT_SATISFIABLE => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one PATCH wins");
    let blob = vec![winners[0]; 10_000];
    let resp = s
        .send(Method::PUT, &with_digest(&loc, &Digest::sha256(&blob)))
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    // The losers' chunks were discarded.
    let mut left = s.registry.upload_store().list();
    assert!(futures::StreamExt::next(&mut left).await.is_none());
}

/// Two registry processes (two `Registry` values over their own store handles on the same
/// directories) stay consistent: a session moves between them, and concurrent tag pushes
/// through both all survive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_store_stay_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let start = || async {
        let registry = ocikit_registry::Registry::open(dir.path()).await.unwrap();
        std::sync::Arc::new(Server::start(registry).await)
    };
    let (one, two) = (start().await, start().await);
    let blob = data(100_000, 3);
    let digest = Digest::sha256(&blob);
    let loc = one.start_upload("app").await;
    for (s, range) in [
        (&one, 0..40_000),
        (&two, 40_000..80_000),
        (&one, 80_000..100_000),
    ] {
        let resp = s
            .request(Method::PATCH, &loc)
            .header(
                "content-range",
                format!("{}-{}", range.start, range.end - 1),
            )
            .body(blob[range].to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
    }
    let resp = two.send(Method::PUT, &with_digest(&loc, &digest)).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let config = one.push_blob("app", b"{}").await;
    let manifest = image_manifest((&config, 2), &[(&digest, blob.len())]);
    let mut tasks = Vec::new();
    for i in 0..20 {
        let s = if i % 2 == 0 { one.clone() } else { two.clone() };
        let manifest = manifest.clone();
        tasks.push(tokio::spawn(async move {
            let resp = s
                .put_manifest("app", &format!("t{i:02}"), MANIFEST, &manifest)
                .await;
            assert_eq!(resp.status(), StatusCode::CREATED);
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    for s in [&one, &two] {
        let resp = s.send(Method::GET, "/v2/app/tags/list").await;
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["tags"].as_array().unwrap().len(), 20);
        let resp = s
            .send(Method::GET, &format!("/v2/app/blobs/{digest}"))
            .await;
        assert_eq!(resp.bytes().await.unwrap(), &blob[..]);
    }
}
