//! Manifests: pushed and pulled by tag and digest as exact bytes with their media type,
//! verified, size-capped, and the refusals of C.9.

use ocikit_digest::Digest;
use ocikit_registry::Config;
use ocikit_store::Store;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::*;

async fn image(s: &Server, name: &str, seed: u8) -> Vec<u8> {
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let layer = data(3000, seed);
    let c = s.push_blob(name, config).await;
    let l = s.push_blob(name, &layer).await;
    image_manifest((&c, config.len()), &[(&l, layer.len())])
}

#[tokio::test]
async fn push_and_pull_by_tag_and_digest() {
    for backend in backends() {
        let s = server(backend).await;
        let manifest = image(&s, "app", 1).await;
        let digest = Digest::sha256(&manifest);
        let resp = s.put_manifest("app", "v1", MANIFEST, &manifest).await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        assert_eq!(location(&resp), format!("/v2/app/manifests/{digest}"));
        assert_eq!(header(&resp, "docker-content-digest"), digest.as_str());
        assert_eq!(header(&resp, "oci-subject"), "");
        for reference in ["v1", digest.as_str()] {
            let path = format!("/v2/app/manifests/{reference}");
            let resp = s.send(Method::HEAD, &path).await;
            assert_eq!(resp.status(), StatusCode::OK);
            assert_eq!(header(&resp, "content-type"), MANIFEST);
            assert_eq!(header(&resp, "content-length"), manifest.len().to_string());
            assert_eq!(header(&resp, "docker-content-digest"), digest.as_str());
            let resp = s
                .request(Method::GET, &path)
                .header("accept", MANIFEST)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
            assert_eq!(header(&resp, "content-type"), MANIFEST);
            assert_eq!(header(&resp, "docker-content-digest"), digest.as_str());
            // Exact bytes: the pretty-printed JSON comes back as pushed, never re-serialised.
            assert_eq!(resp.bytes().await.unwrap(), &manifest[..]);
        }
    }
}

#[tokio::test]
async fn push_by_digest_with_tags_and_sha512() {
    let s = server(Backend::Fs).await;
    let manifest = image(&s, "app", 2).await;
    let digest = Digest::sha512(&manifest);
    let resp = s
        .request(
            Method::PUT,
            &format!("/v2/app/manifests/{digest}?tag=a&tag=b&tag=c"),
        )
        .header("content-type", MANIFEST)
        .body(manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(header(&resp, "docker-content-digest"), digest.as_str());
    let oci_tags: Vec<_> = resp
        .headers()
        .get_all("oci-tag")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(oci_tags, ["a", "b", "c"]);
    for tag in ["a", "b", "c"] {
        let resp = s
            .send(Method::GET, &format!("/v2/app/manifests/{tag}"))
            .await;
        assert_eq!(resp.status(), StatusCode::OK);
        // The digest in the algorithm the client used.
        assert_eq!(header(&resp, "docker-content-digest"), digest.as_str());
        assert_eq!(resp.bytes().await.unwrap(), &manifest[..]);
    }
    // At most 100 tags in one push; nothing is tagged when the request is refused.
    let many: String = (0..101).map(|i| format!("tag=m{i}&")).collect();
    let resp = s
        .request(Method::PUT, &format!("/v2/app/manifests/{digest}?{many}"))
        .header("content-type", MANIFEST)
        .body(manifest.clone())
        .send()
        .await
        .unwrap();
    assert_error(resp, StatusCode::BAD_REQUEST, "MANIFEST_INVALID").await;
    let resp = s.send(Method::GET, "/v2/app/manifests/m0").await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    // The same bytes under their sha256 name were never pushed.
    let resp = s
        .send(
            Method::GET,
            &format!("/v2/app/manifests/{}", Digest::sha256(&manifest)),
        )
        .await;
    assert_error(resp, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN").await;
}

#[tokio::test]
async fn wrong_digests_are_refused_and_store_nothing() {
    let s = server(Backend::Memory).await;
    let manifest = image(&s, "app", 3).await;
    let wrong = Digest::sha256(b"not the manifest");
    let resp = s
        .put_manifest("app", wrong.as_str(), MANIFEST, &manifest)
        .await;
    assert_error(resp, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    let resp = s
        .put_manifest("app", "sha256:baddigeststring", MANIFEST, &manifest)
        .await;
    assert_error(resp, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    for digest in [&wrong, &Digest::sha256(&manifest)] {
        assert_eq!(s.registry.store().stat(digest).await.unwrap(), None);
        let resp = s
            .send(Method::GET, &format!("/v2/app/manifests/{digest}"))
            .await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    }
    // A malformed digest in a GET: 400 with a listed code (or 404; this registry says 400).
    let resp = s
        .send(Method::GET, "/v2/app/manifests/sha256:totallywrong")
        .await;
    assert_error(resp, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
}

#[tokio::test]
async fn invalid_tags() {
    let s = server(Backend::Memory).await;
    let manifest = image(&s, "app", 4).await;
    for tag in [
        &"x".repeat(129),
        ".tag",
        "-tag",
        "tag%20with%20space",
        "t%2Fag",
    ] {
        let resp = s.put_manifest("app", tag, MANIFEST, &manifest).await;
        assert!(resp.status().is_client_error(), "{tag}");
        if !tag.contains("%2F") {
            assert_error(resp, StatusCode::BAD_REQUEST, "MANIFEST_INVALID").await;
        }
    }
    // Reading an invalid tag is simply unknown (the conformance suite's expectation).
    for method in [Method::GET, Method::HEAD] {
        let resp = s
            .send(method, "/v2/app/manifests/.INVALID_MANIFEST_NAME")
            .await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    }
    let resp = s
        .send(Method::GET, "/v2/app/manifests/.INVALID_MANIFEST_NAME")
        .await;
    assert_error(resp, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN").await;
    let resp = s.send(Method::GET, "/v2/never/manifests/latest").await;
    assert_error(resp, StatusCode::NOT_FOUND, "NAME_UNKNOWN").await;
    // ?tag= values are checked too.
    let resp = s
        .request(
            Method::PUT,
            &format!("/v2/app/manifests/{}?tag=.bad", Digest::sha256(&manifest)),
        )
        .header("content-type", MANIFEST)
        .body(manifest)
        .send()
        .await
        .unwrap();
    assert_error(resp, StatusCode::BAD_REQUEST, "MANIFEST_INVALID").await;
}

fn big_manifest(annotations: usize, each: usize) -> Vec<u8> {
    let annotations: serde_json::Map<String, serde_json::Value> = (0..annotations)
        .map(|i| (format!("org.example.a{i}"), json!("v".repeat(each))))
        .collect();
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json",
                   "digest": ocikit_digest::digest::EMPTY_JSON_SHA256, "size": 2},
        "layers": [],
        "annotations": annotations,
    }))
    .unwrap()
}

#[tokio::test]
async fn manifest_size_cap() {
    let s = server(Backend::Memory).await;
    // CTm's large-manifest: 390 annotations of 10,000 bytes, about 3.9 MB.
    let large = big_manifest(390, 10_000);
    assert!(large.len() > 3_900_000);
    let resp = s.put_manifest("app", "large", MANIFEST, &large).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let resp = s.send(Method::GET, "/v2/app/manifests/large").await;
    assert_eq!(resp.bytes().await.unwrap(), &large[..]);
    // Over the default 8 MiB cap.
    let huge = big_manifest(900, 10_000);
    let resp = s.put_manifest("app", "huge", MANIFEST, &huge).await;
    assert_error(resp, StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID").await;
    assert_eq!(
        s.registry
            .store()
            .stat(&Digest::sha256(&huge))
            .await
            .unwrap(),
        None
    );
    // A configured cap: 4 MiB accepted, more refused, also when streamed without a length.
    let s = server_with(
        Backend::Memory,
        Config::default().max_manifest_size(4 << 20),
    )
    .await;
    let resp = s.put_manifest("app", "large", MANIFEST, &large).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let over = big_manifest(430, 10_000);
    let stream = futures::stream::iter(
        over.chunks(65536)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>(),
    );
    let resp = s
        .request(Method::PUT, "/v2/app/manifests/over")
        .header("content-type", MANIFEST)
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await;
    if let Ok(resp) = resp {
        assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }
    let resp = s.send(Method::GET, "/v2/app/manifests/over").await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn malformed_and_ambiguous_manifests() {
    let s = server(Backend::Memory).await;
    let manifest = image(&s, "app", 5).await;
    // Content-Type disagrees with mediaType (CVE-2021-41190 hardening).
    let resp = s.put_manifest("app", "x", INDEX, &manifest).await;
    assert_error(resp, StatusCode::BAD_REQUEST, "MANIFEST_INVALID").await;
    for (media_type, body) in [
        (MANIFEST, &b"not json"[..]),
        (
            MANIFEST,
            br#"{"schemaVersion":2,"schemaVersion":2,"layers":[]}"#,
        ),
        (MANIFEST, br#"[1,2,3]"#),
        (MANIFEST, br#"{"schemaVersion":1}"#),
        (INDEX, br#"{"schemaVersion":2,"manifests":[],"layers":[]}"#),
        (
            MANIFEST,
            br#"{"schemaVersion":2,"layers":[],"manifests":[]}"#,
        ),
        (
            MANIFEST,
            br#"{"schemaVersion":2,"layers":[],"annotations":{"a":1}}"#,
        ),
        (
            MANIFEST,
            br#"{"schemaVersion":2,"layers":[],"subject":{"digest":"nope"}}"#,
        ),
        ("application/octet-stream", br#"{"schemaVersion":2}"#),
    ] {
        let resp = s.put_manifest("app", "x", media_type, body).await;
        assert_error(resp, StatusCode::BAD_REQUEST, "MANIFEST_INVALID").await;
    }
    let resp = s.send(Method::GET, "/v2/app/manifests/x").await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn tolerant_of_what_the_conformance_suite_pushes() {
    let s = server(Backend::Memory).await;
    let config = b"NHL Peanut Butter on my NHL bagel";
    let c = s.push_blob("app", config).await;
    let cases = [
        // No mediaType, no layers, unknown fields, `data` on the config descriptor.
        json!({
            "schemaVersion": 2,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": c.as_str(), "size": config.len(),
                       "data": "TkhMIFBlYW51dCBCdXR0ZXIgb24gbXkgTkhMIGJhZ2Vs",
                       "newUnspecifiedField": null},
            "layers": [],
            "newUnspecifiedField": "YmFzZTY0"
        }),
        // An artifact with an arbitrary config type whose blob is not JSON.
        json!({
            "schemaVersion": 2, "mediaType": MANIFEST,
            "config": {"mediaType": "application/vnd.nhl.peanut.butter.bagel",
                       "digest": c.as_str(), "size": config.len()},
            "layers": []
        }),
    ];
    for (i, case) in cases.iter().enumerate() {
        let bytes = serde_json::to_vec(case).unwrap();
        let resp = s
            .put_manifest("app", &format!("t{i}"), MANIFEST, &bytes)
            .await;
        assert_eq!(resp.status(), StatusCode::CREATED, "{case}");
    }
    // An index whose entries carry no platform.
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": INDEX,
        "manifests": [{"mediaType": MANIFEST, "digest": c.as_str(), "size": 1}]
    }))
    .unwrap();
    let resp = s.put_manifest("app", "index", INDEX, &index).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let resp = s.send(Method::GET, "/v2/app/manifests/index").await;
    assert_eq!(header(&resp, "content-type"), INDEX);
    // Docker schema 2 keeps its media type.
    let docker = "application/vnd.docker.distribution.manifest.v2+json";
    let bytes = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": docker,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                   "digest": c.as_str(), "size": config.len()},
        "layers": []
    }))
    .unwrap();
    let resp = s
        .put_manifest("app", "docker", &format!("{docker}; charset=utf-8"), &bytes)
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let resp = s.send(Method::GET, "/v2/app/manifests/docker").await;
    assert_eq!(header(&resp, "content-type"), docker);
}
