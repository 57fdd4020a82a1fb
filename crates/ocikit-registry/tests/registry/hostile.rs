//! Hostile requests of SPEC C.9-C.11: each gets the spec's status and code, never a 5xx, and
//! touches no storage.

use reqwest::{Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::*;

/// Sends a request with the path exactly as given (HTTP clients normalise `..` away), and
/// returns the status and body.
async fn raw(s: &Server, method: &Method, path: &str) -> (StatusCode, String) {
    let addr = s.base.trim_start_matches("http://");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    raw_request(s, request.as_bytes()).await
}

/// Writes `request` as is and reads the response (the connection left open for writing).
async fn raw_request(s: &Server, request: &[u8]) -> (StatusCode, String) {
    let addr = s.base.trim_start_matches("http://");
    let response = ocikit_testkit::http::send_raw_async(addr, request).await;
    let response = String::from_utf8_lossy(&response).into_owned();
    let status: u16 = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (StatusCode::from_u16(status).unwrap(), body)
}

#[tokio::test]
async fn bad_names_are_refused_before_storage() {
    let s = server(Backend::Fs).await;
    let digest = s.push_blob("foo/bar", b"payload").await;
    let long = "a".repeat(10_000);
    let names = [
        "foo/../bar",
        "..",
        "a..b",
        "foo//bar",
        "Foo",
        "-foo",
        "foo-",
        "a___b",
        "%2e%2e",
        "foo%2Fbar",
        "%252e%252e",
        "foo/%2e%2e/bar",
        "_registry",
        "foo/_blobs",
        &long,
    ];
    for name in names {
        for path in [
            format!("/v2/{name}/blobs/{digest}"),
            format!("/v2/{name}/manifests/latest"),
            format!("/v2/{name}/tags/list"),
            format!("/v2/{name}/blobs/uploads/"),
            format!("/v2/{name}/referrers/{digest}"),
        ] {
            for method in [Method::GET, Method::POST, Method::PUT, Method::DELETE] {
                let (status, body) = raw(&s, &method, &path).await;
                // Every one of them is a malformed name, refused before routing goes on.
                assert_eq!(status, StatusCode::BAD_REQUEST, "{method} {path}");
                {
                    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
                    assert_eq!(body["errors"][0]["code"], "NAME_INVALID", "{path}");
                }
            }
        }
    }
    // Nothing was created by any of that.
    let resp = s.send(Method::GET, "/v2/_catalog").await;
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["repositories"], serde_json::json!(["foo/bar"]));
}

#[tokio::test]
async fn bad_digests_and_references() {
    let s = server(Backend::Memory).await;
    s.push_blob("app", b"x").await;
    for digest in [
        "sha256:totallywrong",
        "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
        "sha256:../../etc/passwd",
        "md5:d41d8cd98f00b204e9800998ecf8427e",
        "sha256:",
        ":abc",
    ] {
        for method in [Method::GET, Method::HEAD, Method::DELETE] {
            let resp = s
                .send(method.clone(), &format!("/v2/app/blobs/{digest}"))
                .await;
            assert!(
                resp.status() == StatusCode::BAD_REQUEST || resp.status() == StatusCode::NOT_FOUND,
                "{method} {digest}: {}",
                resp.status()
            );
        }
        let resp = s
            .send(Method::GET, &format!("/v2/app/blobs/{digest}"))
            .await;
        if resp.status() == StatusCode::BAD_REQUEST {
            assert_error(resp, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
        }
    }
    // Unknown endpoints and methods.
    let resp = s.send(Method::GET, "/v2/app/nothing/here").await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let resp = s.send(Method::PATCH, "/v2/app/manifests/latest").await;
    assert_error(resp, StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED").await;
    let resp = s.send(Method::POST, "/v2/app/tags/list").await;
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(header(&resp, "allow"), "GET");
}

/// C-U03: a body shorter than its declared length is not waited for forever, and nothing of
/// it is kept.
#[tokio::test]
async fn stalled_bodies_are_refused() {
    let config =
        ocikit_registry::Config::default().body_idle_timeout(std::time::Duration::from_millis(300));
    let s = server_with(Backend::Fs, config).await;
    let loc = s.start_upload("app").await;
    let addr = s.base.trim_start_matches("http://").to_owned();
    let digest = ocikit_digest::Digest::sha256(&[7u8; 100]);
    for (method, path) in [
        ("PATCH", loc.clone()),
        ("PUT", with_digest(&loc, &digest)),
        ("POST", format!("/v2/app/blobs/uploads/?digest={digest}")),
        ("PUT", "/v2/app/manifests/stalled".to_owned()),
    ] {
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {MANIFEST}\r\nContent-Length: 100\r\n\r\n"
        )
        .into_bytes();
        request.extend_from_slice(&[7u8; 10]);
        let (status, body) = raw_request(&s, &request).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{method} {path}");
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["errors"][0]["code"], "SIZE_INVALID");
    }
    let resp = s.send(Method::GET, &loc).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&resp, "range"), "0-0");
    let resp = s
        .send(Method::GET, &format!("/v2/app/blobs/{digest}"))
        .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let mut left = s.registry.upload_store().list();
    assert!(futures::StreamExt::next(&mut left).await.is_none());
}

/// C-U03: a body that ends (the client closes its side) before its declared length is
/// refused at once with `SIZE_INVALID`, without waiting for the idle timeout.
#[tokio::test]
async fn truncated_bodies_are_size_invalid() {
    let s = server(Backend::Memory).await;
    let loc = s.start_upload("app").await;
    let addr = s.base.trim_start_matches("http://").to_owned();
    let digest = ocikit_digest::Digest::sha256(&[7u8; 100]);
    for (method, path) in [
        ("PATCH", loc.clone()),
        ("POST", format!("/v2/app/blobs/uploads/?digest={digest}")),
        ("PUT", "/v2/app/manifests/truncated".to_owned()),
    ] {
        let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {MANIFEST}\r\nContent-Length: 100\r\n\r\n0123456789"
        );
        conn.write_all(request.as_bytes()).await.unwrap();
        conn.shutdown().await.unwrap();
        let mut response = Vec::new();
        let read = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            conn.read_to_end(&mut response),
        )
        .await
        .expect("answered without waiting for the idle timeout");
        read.unwrap();
        let response = String::from_utf8_lossy(&response);
        assert!(response.starts_with("HTTP/1.1 400"), "{method}: {response}");
        assert!(response.contains("SIZE_INVALID"), "{method}: {response}");
    }
    let resp = s.send(Method::GET, &loc).await;
    assert_eq!(header(&resp, "range"), "0-0");
    let resp = s
        .send(Method::GET, &format!("/v2/app/blobs/{digest}"))
        .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let resp = s.send(Method::GET, "/v2/app/manifests/truncated").await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

/// A bounded barrage of generated requests mixing valid and hostile parts: none gets a 5xx.
#[tokio::test]
async fn generated_requests_never_get_a_server_error() {
    let s = server(Backend::Fs).await;
    let blob = data(300, 9);
    let digest = s.push_blob("a/b", &blob).await;
    let loc = s.start_upload("a/b").await;
    let id = loc.rsplit('/').next().unwrap().to_owned();
    let names = [
        "a/b", "a", "A", "a/../b", "a%2Fb", "_x", "a/blobs", "", "a//b", "%ff%fe",
    ];
    let digests = [
        digest.to_string(),
        ocikit_digest::Digest::sha512(b"x").to_string(),
        "sha256:zz".into(),
        format!("blake3:{}", "a".repeat(64)),
        format!("foo+bar:{}=", "Q".repeat(700)),
        "sha256%3A".into(),
        String::new(),
    ];
    let endpoints = [
        "blobs/{d}",
        "manifests/{d}",
        "manifests/latest",
        "referrers/{d}",
        "blobs/uploads/",
        "blobs/uploads/{id}",
        "tags/list",
        "manifests/.bad",
        "blobs/uploads/x",
    ];
    let queries = [
        "",
        "?digest={d}",
        "?digest={d}&digest={d}",
        "?mount={d}&from=a/b",
        "?n=-1",
        "?n=3&last=zz",
        "?artifactType=x/y",
        "?digest-algorithm=sha512",
        "?tag=ok&tag=.bad",
        "?mount=&from=",
    ];
    let ranges = [
        None,
        Some("0-9"),
        Some("bytes=0-"),
        Some("5-1"),
        Some("0-99999999999999999999"),
    ];
    let methods = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
    ];
    let mut rng = ocikit_testkit::prng::Prng::new(0x9e37_79b9_7f4a_7c15);
    let mut next = |n: usize| rng.below(n as u64) as usize;
    let mut answered = 0;
    for _ in 0..600 {
        let d = &digests[next(digests.len())];
        let path = format!(
            "/v2/{}/{}{}",
            names[next(names.len())],
            endpoints[next(endpoints.len())],
            queries[next(queries.len())]
        )
        .replace("{d}", d)
        .replace("{id}", &id);
        let method = methods[next(methods.len())].clone();
        let mut request = s.request(method.clone(), &path);
        if let Some(range) = ranges[next(ranges.len())] {
            request = request
                .header("content-range", range)
                .header("range", range);
        }
        if next(2) == 0 {
            request = request.header("content-type", MANIFEST);
        }
        let body = match next(3) {
            0 => Vec::new(),
            1 => blob.clone(),
            _ => br#"{"schemaVersion":2,"layers":[],"subject":{"digest":"sha256:zz"}}"#.to_vec(),
        };
        let Ok(resp) = request.body(body).send().await else {
            continue;
        };
        assert!(
            !resp.status().is_server_error(),
            "{method} {path}: {}",
            resp.status()
        );
        answered += 1;
    }
    // Only requests the server cut short (413 before reading a body) may go unanswered.
    assert!(answered > 550, "{answered} of 600 answered");
}
