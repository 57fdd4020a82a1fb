//! Content management (`04_management_test.go`): deleting tags, manifests and blobs, and
//! refusing when deletion is disabled.

use ocikit_registry::Config;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::*;

async fn tag_count(s: &Server, name: &str) -> usize {
    let resp = s.send(Method::GET, &format!("/v2/{name}/tags/list")).await;
    let body: Value = resp.json().await.unwrap();
    body["tags"].as_array().unwrap().len()
}

#[tokio::test]
async fn deletes() {
    for backend in backends() {
        let s = server(backend).await;
        let layer = data(500, 1);
        let l = s.push_blob("app", &layer).await;
        let c = s.push_blob("app", b"{}").await;
        let manifest = image_manifest((&c, 2), &[(&l, layer.len())]);
        let digest = ocikit_digest::Digest::sha256(&manifest);
        for tag in ["t1", "t2", "t3"] {
            s.put_manifest("app", tag, MANIFEST, &manifest).await;
        }
        let other = image_manifest((&c, 2), &[]);
        s.put_manifest("app", "keep", MANIFEST, &other).await;
        assert_eq!(tag_count(&s, "app").await, 4);

        // A tag: only that tag goes.
        let resp = s.send(Method::DELETE, "/v2/app/manifests/t1").await;
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
        let resp = s.send(Method::GET, "/v2/app/manifests/t1").await;
        assert_error(resp, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN").await;
        assert_eq!(tag_count(&s, "app").await, 3);
        let resp = s.send(Method::DELETE, "/v2/app/manifests/t1").await;
        assert_error(resp, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN").await;

        // A digest: the manifest and every tag pointing at it.
        let resp = s
            .send(Method::DELETE, &format!("/v2/app/manifests/{digest}"))
            .await;
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
        for reference in ["t2", "t3", digest.as_str()] {
            let resp = s
                .send(Method::GET, &format!("/v2/app/manifests/{reference}"))
                .await;
            assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{reference}");
        }
        assert_eq!(tag_count(&s, "app").await, 1);
        let resp = s.send(Method::GET, "/v2/app/manifests/keep").await;
        assert_eq!(resp.status(), StatusCode::OK);
        let resp = s
            .send(Method::DELETE, &format!("/v2/app/manifests/{digest}"))
            .await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);

        // Blobs.
        let resp = s.send(Method::DELETE, &format!("/v2/app/blobs/{l}")).await;
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
        let resp = s.send(Method::GET, &format!("/v2/app/blobs/{l}")).await;
        assert_error(resp, StatusCode::NOT_FOUND, "BLOB_UNKNOWN").await;
        let resp = s.send(Method::HEAD, &format!("/v2/app/blobs/{l}")).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        let resp = s.send(Method::DELETE, &format!("/v2/app/blobs/{l}")).await;
        assert_error(resp, StatusCode::NOT_FOUND, "BLOB_UNKNOWN").await;
        let resp = s.send(Method::DELETE, "/v2/app/blobs/sha256:nope").await;
        assert_error(resp, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
        let resp = s.send(Method::DELETE, "/v2/ghost/manifests/latest").await;
        assert_error(resp, StatusCode::NOT_FOUND, "NAME_UNKNOWN").await;
    }
}

#[tokio::test]
async fn deletion_disabled_is_405() {
    let s = server_with(Backend::Memory, Config::default().delete_enabled(false)).await;
    let l = s.push_blob("app", b"layer").await;
    let c = s.push_blob("app", b"{}").await;
    let manifest = image_manifest((&c, 2), &[(&l, 5)]);
    s.put_manifest("app", "t", MANIFEST, &manifest).await;
    for path in [
        "/v2/app/manifests/t".to_owned(),
        format!(
            "/v2/app/manifests/{}",
            ocikit_digest::Digest::sha256(&manifest)
        ),
        format!("/v2/app/blobs/{l}"),
    ] {
        let resp = s.send(Method::DELETE, &path).await;
        assert_error(resp, StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED").await;
    }
    let resp = s.send(Method::GET, "/v2/app/manifests/t").await;
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = s.send(Method::GET, &format!("/v2/app/blobs/{l}")).await;
    assert_eq!(resp.status(), StatusCode::OK);
}
