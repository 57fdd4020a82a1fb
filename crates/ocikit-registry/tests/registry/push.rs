//! Blob pushes: every flow of SPEC B.3 and B.6 "Push", in sha256 and sha512, and the refusals
//! of C.10.

use ocikit_digest::Digest;
use ocikit_store::Store;
use reqwest::{Method, StatusCode};

use crate::*;

async fn get_blob(s: &Server, name: &str, digest: &Digest) -> (StatusCode, Vec<u8>) {
    let resp = s
        .send(Method::GET, &format!("/v2/{name}/blobs/{digest}"))
        .await;
    let status = resp.status();
    (status, resp.bytes().await.unwrap().to_vec())
}

#[tokio::test]
async fn post_then_put_monolithic() {
    for backend in backends() {
        let s = server(backend).await;
        let bytes = data(5000, 1);
        let digest = Digest::sha256(&bytes);
        let location = s.start_upload("app").await;
        assert!(location.starts_with("/v2/app/blobs/uploads/"));
        let resp = s
            .request(Method::PUT, &with_digest(&location, &digest))
            .body(bytes.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
        assert_eq!(location_path(&resp), format!("/v2/app/blobs/{digest}"));
        assert_eq!(header(&resp, "docker-content-digest"), digest.as_str());
        assert_eq!(get_blob(&s, "app", &digest).await, (StatusCode::OK, bytes));
        // The session is gone once finished.
        let resp = s.send(Method::GET, &location).await;
        assert_error(resp, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN").await;
    }
}

fn location_path(resp: &reqwest::Response) -> String {
    location(resp)
}

#[tokio::test]
async fn single_post_with_digest() {
    for backend in backends() {
        let s = server(backend).await;
        let bytes = data(42, 2);
        let digest = Digest::sha256(&bytes);
        let resp = s
            .request(
                Method::POST,
                &format!("/v2/app/blobs/uploads/?digest={digest}"),
            )
            .body(bytes.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
        assert_eq!(location(&resp), format!("/v2/app/blobs/{digest}"));
        assert_eq!(get_blob(&s, "app", &digest).await, (StatusCode::OK, bytes));
    }
}

#[tokio::test]
async fn post_without_digest_ignores_its_body() {
    let s = server(Backend::Memory).await;
    let bytes = data(42, 3);
    let digest = Digest::sha256(&bytes);
    let resp = s
        .request(Method::POST, "/v2/app/blobs/uploads/")
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&resp, "range"), "0-0");
    let (status, _) = get_blob(&s, "app", &digest).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // The session is empty: closing it with that digest fails.
    let resp = s
        .send(Method::PUT, &with_digest(&location(&resp), &digest))
        .await;
    assert_error(resp, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
}

/// The conformance suite's chunked flow (`02_push_test.go:156-244`): 42 bytes in chunks of
/// 22 and 20, out-of-order and retried chunks refused with 416, stale locations working.
#[tokio::test]
async fn chunked_upload_as_the_conformance_suite_does_it() {
    for backend in backends() {
        let s = server(backend).await;
        let blob = data(42, 4);
        let digest = Digest::sha256(&blob);
        let (first, second) = blob.split_at(22);

        // Out of order: the second chunk first.
        let first_location = s.start_upload("app").await;
        let resp = s
            .request(Method::PATCH, &first_location)
            .header("content-type", "application/octet-stream")
            .header("content-range", "22-41")
            .body(second.to_vec())
            .send()
            .await
            .unwrap();
        assert_error(
            resp,
            StatusCode::RANGE_NOT_SATISFIABLE,
            "BLOB_UPLOAD_INVALID",
        )
        .await;

        // In order.
        let post_location = s.start_upload("app").await;
        let resp = s
            .request(Method::PATCH, &post_location)
            .header("content-range", "0-21")
            .header("content-length", "22")
            .body(first.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
        assert_eq!(header(&resp, "range"), "0-21");
        // Retrying the first chunk on the POST's location: 416.
        let resp = s
            .request(Method::PATCH, &post_location)
            .header("content-range", "0-21")
            .body(first.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::RANGE_NOT_SATISFIABLE);
        assert_eq!(header(&resp, "range"), "0-21");
        // A stale location still reports the session.
        let resp = s.send(Method::GET, &post_location).await;
        assert_eq!(resp.status(), StatusCode::NO_CONTENT);
        assert_eq!(header(&resp, "range"), "0-21");
        let status_location = location(&resp);
        let resp = s
            .request(Method::PATCH, &status_location)
            .header("content-range", "22-41")
            .body(second.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
        assert_eq!(header(&resp, "range"), "0-41");
        let resp = s
            .request(Method::PUT, &with_digest(&location(&resp), &digest))
            .header("content-length", "0")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
        assert_eq!(get_blob(&s, "app", &digest).await, (StatusCode::OK, blob));
        // Nothing is left in the upload store once the session closed.
        let mut left = s.registry.upload_store().list();
        assert!(futures::StreamExt::next(&mut left).await.is_none());
    }
}

#[tokio::test]
async fn streamed_patch_without_content_range_and_final_chunk_in_put() {
    for backend in backends() {
        let s = server(backend).await;
        let blob = data(300_000, 5);
        let digest = Digest::sha256(&blob);
        let loc = s.start_upload("app").await;
        // Streamed: no Content-Range, chunked transfer encoding.
        let part = blob[..100_000].to_vec();
        let stream = futures::stream::iter(
            part.chunks(7000)
                .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
                .collect::<Vec<_>>(),
        );
        let resp = s
            .request(Method::PATCH, &loc)
            .body(reqwest::Body::wrap_stream(stream))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
        assert_eq!(header(&resp, "range"), "0-99999");
        let resp = s
            .request(Method::PATCH, &location(&resp))
            .body(blob[100_000..200_000].to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(header(&resp, "range"), "0-199999");
        // The closing PUT carries the last chunk.
        let resp = s
            .request(Method::PUT, &with_digest(&location(&resp), &digest))
            .header("content-range", "200000-299999")
            .body(blob[200_000..].to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
        assert_eq!(get_blob(&s, "app", &digest).await, (StatusCode::OK, blob));
    }
}

#[tokio::test]
async fn out_of_order_final_chunk_in_put_is_416() {
    let s = server(Backend::Memory).await;
    let blob = data(40, 6);
    let digest = Digest::sha256(&blob);
    let location = s.start_upload("app").await;
    let resp = s
        .request(Method::PATCH, &location)
        .body(blob[..20].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let resp = s
        .request(Method::PUT, &with_digest(&location, &digest))
        .header("content-range", "30-39")
        .body(blob[30..].to_vec())
        .send()
        .await
        .unwrap();
    assert_error(
        resp,
        StatusCode::RANGE_NOT_SATISFIABLE,
        "BLOB_UPLOAD_INVALID",
    )
    .await;
    // The session survives and can be finished properly.
    let resp = s
        .request(Method::PUT, &with_digest(&location, &digest))
        .header("content-range", "20-39")
        .body(blob[20..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn sha512_on_every_flow() {
    for backend in backends() {
        let s = server(backend).await;
        let blob = data(1000, 7);
        let digest = Digest::sha512(&blob);
        assert!(digest.as_str().starts_with("sha512:"));

        // Single POST.
        let resp = s
            .request(
                Method::POST,
                &format!("/v2/a/blobs/uploads/?digest={digest}"),
            )
            .body(blob.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
        assert_eq!(header(&resp, "docker-content-digest"), digest.as_str());

        // Chunked, announced with ?digest-algorithm=.
        let resp = s
            .send(Method::POST, "/v2/b/blobs/uploads/?digest-algorithm=sha512")
            .await;
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
        let loc = location(&resp);
        for (i, chunk) in blob.chunks(300).enumerate() {
            let start = i * 300;
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
        // A sha256 digest for a session started as sha512 is refused; the session stays.
        let resp = s
            .send(Method::PUT, &with_digest(&loc, &Digest::sha256(&blob)))
            .await;
        assert_error(resp, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
        let resp = s.send(Method::PUT, &with_digest(&loc, &digest)).await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        assert_eq!(header(&resp, "docker-content-digest"), digest.as_str());

        for name in ["a", "b"] {
            let resp = s
                .send(Method::HEAD, &format!("/v2/{name}/blobs/{digest}"))
                .await;
            assert_eq!(resp.status(), StatusCode::OK);
            assert_eq!(header(&resp, "docker-content-digest"), digest.as_str());
            assert_eq!(
                get_blob(&s, name, &digest).await,
                (StatusCode::OK, blob.clone())
            );
        }
        // Stored under sha512 only: the sha256 name of the same bytes is not served (C-N09).
        let (status, _) = get_blob(&s, "a", &Digest::sha256(&blob)).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let resp = s
            .send(Method::POST, "/v2/b/blobs/uploads/?digest-algorithm=md5")
            .await;
        assert_error(resp, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    }
}

#[tokio::test]
async fn zero_byte_blobs_on_every_flow() {
    let s = server(Backend::Fs).await;
    let empty = Digest::empty_sha256();
    let resp = s
        .send(
            Method::POST,
            &format!("/v2/a/blobs/uploads/?digest={empty}"),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let loc = s.start_upload("b").await;
    let resp = s.send(Method::PUT, &with_digest(&loc, &empty)).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let loc = s.start_upload("c").await;
    let resp = s
        .request(Method::PATCH, &loc)
        .body(Vec::new())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&resp, "range"), "0-0");
    let resp = s.send(Method::PUT, &with_digest(&loc, &empty)).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let empty512 = Digest::sha512(b"");
    let resp = s
        .send(
            Method::POST,
            &format!("/v2/d/blobs/uploads/?digest={empty512}"),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    for (name, digest) in [
        ("a", &empty),
        ("b", &empty),
        ("c", &empty),
        ("d", &empty512),
    ] {
        let resp = s
            .send(Method::HEAD, &format!("/v2/{name}/blobs/{digest}"))
            .await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(header(&resp, "content-length"), "0");
        assert_eq!(
            get_blob(&s, name, digest).await,
            (StatusCode::OK, Vec::new())
        );
    }
}

#[tokio::test]
async fn digest_mismatch_stores_nothing() {
    for backend in backends() {
        let s = server(backend).await;
        let blob = data(1234, 8);
        let claimed = Digest::sha256(b"something else entirely");
        let actual = Digest::sha256(&blob);

        // Single POST.
        let resp = s
            .request(
                Method::POST,
                &format!("/v2/app/blobs/uploads/?digest={claimed}"),
            )
            .body(blob.clone())
            .send()
            .await
            .unwrap();
        assert_error(resp, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
        // POST then PUT.
        let loc = s.start_upload("app").await;
        let resp = s
            .request(Method::PUT, &with_digest(&loc, &claimed))
            .body(blob.clone())
            .send()
            .await
            .unwrap();
        assert_error(resp, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
        // Chunked.
        let loc = s.start_upload("app").await;
        let resp = s
            .request(Method::PATCH, &loc)
            .body(blob.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
        let resp = s.send(Method::PUT, &with_digest(&loc, &claimed)).await;
        assert_error(resp, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;

        for digest in [&claimed, &actual] {
            assert_eq!(s.registry.store().stat(digest).await.unwrap(), None);
            let (status, _) = get_blob(&s, "app", digest).await;
            assert_eq!(status, StatusCode::NOT_FOUND);
        }
        // Rejected sessions leave nothing in the upload store either.
        let mut left = s.registry.upload_store().list();
        assert!(futures::StreamExt::next(&mut left).await.is_none());
    }
}

#[tokio::test]
async fn closing_put_needs_exactly_one_valid_digest() {
    let s = server(Backend::Memory).await;
    let blob = data(10, 9);
    let digest = Digest::sha256(&blob);
    let loc = s.start_upload("app").await;
    for query in [
        String::new(),
        format!("?digest={digest}&digest={digest}"),
        "?digest=sha256:totallywrong".to_owned(),
        "?digest=sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"
            .to_owned(),
        format!("?digest=blake3:{}", "a".repeat(64)),
    ] {
        let resp = s
            .request(Method::PUT, &format!("{loc}{query}"))
            .body(blob.clone())
            .send()
            .await
            .unwrap();
        assert_error(resp, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    }
    // The session is untouched by the refusals.
    let resp = s
        .request(Method::PUT, &with_digest(&loc, &digest))
        .body(blob)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn malformed_content_range_and_length() {
    let s = server(Backend::Memory).await;
    let loc = s.start_upload("app").await;
    for bad in [
        "bytes 0-9/10",
        "0-",
        "-5",
        "10-5",
        "0-99999999999999999999999",
        "0-9/10",
    ] {
        let resp = s
            .request(Method::PATCH, &loc)
            .header("content-range", bad)
            .body(vec![0u8; 10])
            .send()
            .await
            .unwrap();
        assert_error(resp, StatusCode::BAD_REQUEST, "BLOB_UPLOAD_INVALID").await;
    }
    // Content-Length disagreeing with Content-Range.
    let resp = s
        .request(Method::PATCH, &loc)
        .header("content-range", "0-9")
        .body(vec![0u8; 5])
        .send()
        .await
        .unwrap();
    assert_error(resp, StatusCode::BAD_REQUEST, "SIZE_INVALID").await;
    // A gap.
    let resp = s
        .request(Method::PATCH, &loc)
        .header("content-range", "5-9")
        .body(vec![0u8; 5])
        .send()
        .await
        .unwrap();
    assert_error(
        resp,
        StatusCode::RANGE_NOT_SATISFIABLE,
        "BLOB_UPLOAD_INVALID",
    )
    .await;
    // Nothing of all that was recorded.
    let resp = s.send(Method::GET, &loc).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&resp, "range"), "0-0");
}

#[tokio::test]
async fn cancel_and_unknown_sessions() {
    let s = server(Backend::Fs).await;
    let loc = s.start_upload("app").await;
    let resp = s
        .request(Method::PATCH, &loc)
        .body(data(100, 10))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let resp = s.send(Method::DELETE, &loc).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    for method in [Method::GET, Method::PATCH, Method::PUT, Method::DELETE] {
        let resp = s
            .send(method, &with_digest(&loc, &Digest::sha256(b"")))
            .await;
        assert_error(resp, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN").await;
    }
    let mut left = s.registry.upload_store().list();
    assert!(futures::StreamExt::next(&mut left).await.is_none());
    for id in [
        "..%2F..%2F..%2Ftmp%2Fx",
        "not-a-uuid",
        "6F9619FF-8B86-D011-B42D-00C04FC964FF",
        "6f9619ff8b86d011b42d00c04fc964ff",
        &"a".repeat(1000),
    ] {
        let resp = s
            .send(Method::GET, &format!("/v2/app/blobs/uploads/{id}"))
            .await;
        assert!(resp.status().is_client_error(), "{id}: {}", resp.status());
        assert!(resp.status() != StatusCode::OK);
    }
}

#[tokio::test]
async fn per_session_size_limit() {
    let s = server_with(Backend::Memory, Config::default().max_upload_size(1000)).await;
    let loc = s.start_upload("app").await;
    let resp = s
        .request(Method::PATCH, &loc)
        .body(data(600, 1))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let resp = s
        .request(Method::PATCH, &loc)
        .body(data(600, 2))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // Streamed without a length, the limit holds too.
    let stream = futures::stream::iter((0..10).map(|_| Ok::<_, std::io::Error>(vec![1u8; 100])));
    let resp = s
        .request(Method::PATCH, &loc)
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await;
    if let Ok(resp) = resp {
        assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }
    let resp = s.send(Method::GET, &loc).await;
    assert_eq!(header(&resp, "range"), "0-599");
    let big = data(2000, 3);
    let resp = s
        .request(
            Method::POST,
            &format!("/v2/app/blobs/uploads/?digest={}", Digest::sha256(&big)),
        )
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn idle_sessions_expire_and_sweeps_clean_up() {
    let clock = ocikit_testkit::ManualClock::starting_now();
    let s = server_with(
        Backend::Fs,
        Config::default()
            .upload_ttl(std::time::Duration::from_secs(3600))
            .clock(ocikit_registry::Clock::from_fn(clock.reader())),
    )
    .await;
    let loc = s.start_upload("app").await;
    let resp = s
        .request(Method::PATCH, &loc)
        .body(data(100, 1))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    // A stray scratch object no session lists (as a crash would leave).
    let stray = ocikit_store::StoreExt::put_bytes(s.registry.upload_store().as_ref(), b"stray")
        .await
        .unwrap();
    // Within the TTL (by the registry's clock) the session lives.
    clock.advance(std::time::Duration::from_secs(3500));
    let resp = s.send(Method::GET, &loc).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    clock.advance(std::time::Duration::from_secs(200));
    let report = s.registry.sweep_uploads().await.unwrap();
    assert_eq!(report.expired_sessions, 1);
    // An orphan goes only at its second sweep.
    assert_eq!(report.orphan_chunks, 0);
    assert!(
        s.registry
            .upload_store()
            .stat(&stray)
            .await
            .unwrap()
            .is_some()
    );
    let report = s.registry.sweep_uploads().await.unwrap();
    assert_eq!(report.orphan_chunks, 1);
    let mut left = s.registry.upload_store().list();
    assert!(futures::StreamExt::next(&mut left).await.is_none());
    let resp = s.send(Method::GET, &loc).await;
    assert_error(resp, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN").await;
}
