//! Pulls: `/v2/`, blob HEAD/GET with ranges (SPEC B.3 end-2, CTm "range requests").

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use ocikit_digest::Digest;
use ocikit_registry::{Config, Registry};
use ocikit_store::MemoryStore;
use ocikit_store::conformance::Intercept;
use reqwest::{Method, StatusCode};

use crate::*;

#[tokio::test]
async fn base_endpoint_answers_200() {
    let s = server(Backend::Memory).await;
    for path in ["/v2/", "/v2"] {
        let resp = s.send(Method::GET, path).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(
            header(&resp, "docker-distribution-api-version"),
            "registry/2.0"
        );
    }
    let resp = s.send(Method::GET, "/v1/").await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn range_requests_follow_rfc_9110() {
    for backend in backends() {
        let s = server(backend).await;
        let blob = data(2048, 11);
        let digest = s.push_blob("app", &blob).await;
        let path = format!("/v2/app/blobs/{digest}");
        for (range, expected, content_range) in [
            ("bytes=500-1499", 500..1500, "bytes 500-1499/2048"),
            ("bytes=500-", 500..2048, "bytes 500-2047/2048"),
            ("bytes=-500", 1548..2048, "bytes 1548-2047/2048"),
            ("bytes=2000-5000", 2000..2048, "bytes 2000-2047/2048"),
            ("bytes=0-0", 0..1, "bytes 0-0/2048"),
        ] {
            let resp = s
                .request(Method::GET, &path)
                .header("range", range)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT, "{range}");
            assert_eq!(header(&resp, "content-range"), content_range);
            assert_eq!(
                header(&resp, "content-length"),
                expected.clone().count().to_string()
            );
            assert_eq!(resp.bytes().await.unwrap(), &blob[expected]);
        }
        for range in ["bytes=500-0", "bytes=5000-10000", "bytes=2048-", "bytes=-0"] {
            let resp = s
                .request(Method::GET, &path)
                .header("range", range)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::RANGE_NOT_SATISFIABLE, "{range}");
            assert_eq!(header(&resp, "content-range"), "bytes */2048");
        }
        // Several ranges or another unit: the whole blob.
        for range in ["bytes=0-1,5-6", "lines=1-2"] {
            let resp = s
                .request(Method::GET, &path)
                .header("range", range)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
            assert_eq!(resp.bytes().await.unwrap(), &blob[..]);
        }
    }
}

#[tokio::test]
async fn head_never_reads_the_blob() {
    let gets = Arc::new(AtomicUsize::new(0));
    let store = Arc::new(Intercept::counting(MemoryStore::new(), gets.clone()));
    let registry = Registry::new(
        store.clone(),
        Arc::new(MemoryStore::new()),
        Config::default(),
    )
    .unwrap();
    let s = Server::start(registry).await;
    let blob = data(100_000, 12);
    let digest = s.push_blob("app", &blob).await;
    let before = gets.load(Ordering::SeqCst);
    for _ in 0..3 {
        let resp = s
            .send(Method::HEAD, &format!("/v2/app/blobs/{digest}"))
            .await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(header(&resp, "content-length"), "100000");
        assert_eq!(header(&resp, "docker-content-digest"), digest.as_str());
    }
    assert_eq!(gets.load(Ordering::SeqCst), before, "HEAD opened the blob");
    let resp = s
        .send(Method::GET, &format!("/v2/app/blobs/{digest}"))
        .await;
    assert_eq!(resp.bytes().await.unwrap(), &blob[..]);
    assert_eq!(gets.load(Ordering::SeqCst), before + 1);
}

#[tokio::test]
async fn missing_blobs_and_repositories() {
    let s = server(Backend::Memory).await;
    let dummy = Digest::sha256(b"hello world");
    let resp = s
        .send(Method::GET, &format!("/v2/nowhere/blobs/{dummy}"))
        .await;
    assert_error(resp, StatusCode::NOT_FOUND, "NAME_UNKNOWN").await;
    s.push_blob("app", b"x").await;
    let resp = s.send(Method::GET, &format!("/v2/app/blobs/{dummy}")).await;
    assert_error(resp, StatusCode::NOT_FOUND, "BLOB_UNKNOWN").await;
    let resp = s
        .send(Method::HEAD, &format!("/v2/app/blobs/{dummy}"))
        .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

/// Blobs of a filesystem store are read from their files into reused buffers: whole blobs
/// and ranges across the 1 MiB chunks come back exact, also when buffers another blob used
/// are reused, and a file truncated behind the store's back breaks the body off instead of
/// ending it short or padding it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobs_from_files_are_exact_across_chunks_and_cut_off_when_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let store = ocikit_store::FsStore::open(dir.path().join("content"))
        .await
        .unwrap();
    let uploads = ocikit_store::FsStore::open(dir.path().join("uploads"))
        .await
        .unwrap();
    let registry = Registry::new(Arc::new(store), Arc::new(uploads), Config::default()).unwrap();
    let s = Server::start(registry).await;
    let (a, b) = (data((5 << 19) + 123, 31), data((3 << 20) + 7, 32));
    let (da, db) = (s.push_blob("app", &a).await, s.push_blob("app", &b).await);
    for _ in 0..3 {
        for (digest, blob) in [(&da, &a), (&db, &b)] {
            let resp = s
                .send(Method::GET, &format!("/v2/app/blobs/{digest}"))
                .await;
            assert_eq!(resp.status(), StatusCode::OK);
            assert_eq!(header(&resp, "content-length"), blob.len().to_string());
            assert!(resp.bytes().await.unwrap() == blob[..], "{digest}");
        }
    }
    let mib = 1 << 20;
    for (range, expected) in [
        (
            format!("bytes={}-{}", mib - 5, 2 * mib + 4),
            mib - 5..2 * mib + 5,
        ),
        ("bytes=-1000".to_owned(), a.len() - 1000..a.len()),
        (format!("bytes={}-", 2 * mib), 2 * mib..a.len()),
    ] {
        let resp = s
            .request(Method::GET, &format!("/v2/app/blobs/{da}"))
            .header("range", &range)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        assert!(resp.bytes().await.unwrap() == a[expected], "{range}");
    }
    // Truncated while it is being sent (the size was taken when it was opened).
    let c = data(16 << 20, 33);
    let dc = s.push_blob("app", &c).await;
    let mut resp = s.send(Method::GET, &format!("/v2/app/blobs/{dc}")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let mut got = resp.chunk().await.unwrap().unwrap().len();
    let file = dir.path().join("content/blobs/sha256").join(dc.encoded());
    std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .unwrap()
        .set_len(10)
        .unwrap();
    let ended = loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => got += chunk.len(),
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    assert!(ended.is_err(), "the body ended cleanly after {got} bytes");
    assert!(got < c.len());
    s.stop().await;
}
