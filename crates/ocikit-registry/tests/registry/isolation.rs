//! Repositories are isolated on one deduplicated store: content is visible only where it was
//! pushed or mounted, and mounts check the source repository.

use ocikit_digest::Digest;
use ocikit_store::Store;
use reqwest::{Method, StatusCode};

use crate::*;

#[tokio::test]
async fn blobs_and_manifests_are_visible_only_where_pushed() {
    for backend in backends() {
        let s = server(backend).await;
        let blob = data(4096, 1);
        let digest = s.push_blob("team-a/app", &blob).await;
        s.push_blob("team-b/app", b"something").await;
        for method in [Method::GET, Method::HEAD] {
            let resp = s
                .send(method, &format!("/v2/team-b/app/blobs/{digest}"))
                .await;
            assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        }
        let resp = s
            .request(Method::GET, &format!("/v2/team-b/app/blobs/{digest}"))
            .header("range", "bytes=0-10")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        // A name that merely contains the other as a prefix or suffix sees nothing either.
        for name in ["team-a", "team-a/app/x", "x/team-a/app"] {
            let resp = s
                .send(Method::GET, &format!("/v2/{name}/blobs/{digest}"))
                .await;
            assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{name}");
        }

        let c = s.push_blob("team-a/app", b"{}").await;
        let manifest = image_manifest((&c, 2), &[(&digest, blob.len())]);
        let m = Digest::sha256(&manifest);
        s.put_manifest("team-a/app", "v1", MANIFEST, &manifest)
            .await;
        for reference in ["v1", m.as_str()] {
            let resp = s
                .send(
                    Method::GET,
                    &format!("/v2/team-b/app/manifests/{reference}"),
                )
                .await;
            assert_error(resp, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN").await;
        }
        let resp = s.send(Method::GET, "/v2/team-b/app/tags/list").await;
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["tags"], serde_json::json!([]));

        // Pushing the same bytes to B stores them once, and B sees them from then on.
        let again = s.push_blob("team-b/app", &blob).await;
        assert_eq!(again, digest);
        assert_eq!(s.registry.store().stat(&digest).await.unwrap(), Some(4096));
        let resp = s
            .send(Method::GET, &format!("/v2/team-b/app/blobs/{digest}"))
            .await;
        assert_eq!(resp.bytes().await.unwrap(), &blob[..]);
        // Deleting it from B leaves A's copy.
        let resp = s
            .send(Method::DELETE, &format!("/v2/team-b/app/blobs/{digest}"))
            .await;
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
        let resp = s
            .send(Method::GET, &format!("/v2/team-a/app/blobs/{digest}"))
            .await;
        assert_eq!(resp.bytes().await.unwrap(), &blob[..]);
        let resp = s
            .send(Method::GET, &format!("/v2/team-b/app/blobs/{digest}"))
            .await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn mounts_check_the_source_repository() {
    for backend in backends() {
        let s = server(backend).await;
        let blob = data(42, 2);
        let digest = s.push_blob("src", &blob).await;
        s.push_blob("other", b"other").await;

        // Without `from`: an ordinary session, exactly 202.
        let resp = s
            .send(
                Method::POST,
                &format!("/v2/cross/blobs/uploads/?mount={digest}"),
            )
            .await;
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
        assert!(location(&resp).starts_with("/v2/cross/blobs/uploads/"));
        // From a repository that does not hold it (though the store does): 202, no leak.
        for from in ["other", "nonexistent", "Bad..Name"] {
            let resp = s
                .send(
                    Method::POST,
                    &format!("/v2/cross/blobs/uploads/?mount={digest}&from={from}"),
                )
                .await;
            assert_eq!(resp.status(), StatusCode::ACCEPTED, "{from}");
            assert!(location(&resp).starts_with("/v2/cross/blobs/uploads/"));
        }
        let resp = s
            .send(Method::GET, &format!("/v2/cross/blobs/{digest}"))
            .await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        // A missing digest: 202, never 201; an invalid one: 400.
        let dummy = Digest::sha256(b"hello world");
        let resp = s
            .send(
                Method::POST,
                &format!("/v2/cross/blobs/uploads/?mount={dummy}&from=src"),
            )
            .await;
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
        let resp = s
            .send(
                Method::POST,
                "/v2/cross/blobs/uploads/?mount=sha256:zzz&from=src",
            )
            .await;
        assert_error(resp, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
        // From the repository that holds it: 201 and visible.
        let resp = s
            .send(
                Method::POST,
                &format!("/v2/cross/blobs/uploads/?mount={digest}&from=src"),
            )
            .await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        assert_eq!(location(&resp), format!("/v2/cross/blobs/{digest}"));
        let resp = s
            .send(Method::GET, &format!("/v2/cross/blobs/{digest}"))
            .await;
        assert_eq!(resp.bytes().await.unwrap(), &blob[..]);
    }
}

#[tokio::test]
async fn sessions_are_bound_to_their_repository() {
    let s = server(Backend::Memory).await;
    let blob = data(10, 3);
    let loc = s.start_upload("a").await;
    let id = loc.rsplit('/').next().unwrap().to_owned();
    let foreign = format!("/v2/b/blobs/uploads/{id}");
    for method in [Method::GET, Method::PATCH, Method::DELETE] {
        let resp = s.send(method, &foreign).await;
        assert_error(resp, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN").await;
    }
    let resp = s
        .request(Method::PUT, &with_digest(&foreign, &Digest::sha256(&blob)))
        .body(blob.clone())
        .send()
        .await
        .unwrap();
    assert_error(resp, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN").await;
    // Still usable where it belongs.
    let resp = s
        .request(Method::PUT, &with_digest(&loc, &Digest::sha256(&blob)))
        .body(blob)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
}
