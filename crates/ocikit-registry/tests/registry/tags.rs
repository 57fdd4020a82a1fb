//! Tags list and catalog: byte order, `n`/`last` pagination with `Link`, and the C.11
//! refusals.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::*;

async fn empty_manifest(s: &Server, name: &str) -> Vec<u8> {
    let c = s.push_blob(name, b"{}").await;
    serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": MANIFEST,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": c.as_str(), "size": 2},
        "layers": []
    }))
    .unwrap()
}

async fn list(s: &Server, path: &str) -> (Vec<String>, String) {
    let resp = s.send(Method::GET, path).await;
    assert_eq!(resp.status(), StatusCode::OK, "{path}");
    let link = header(&resp, "link");
    let body: Value = resp.json().await.unwrap();
    let key = if path.contains("_catalog") {
        "repositories"
    } else {
        "tags"
    };
    let items = body[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect();
    (items, link)
}

#[tokio::test]
async fn tags_are_sorted_and_paginated() {
    for backend in backends() {
        let s = server(backend).await;
        let manifest = empty_manifest(&s, "app").await;
        let mut tags = vec![
            "b", "a", "C", "_x", "a.1", "a-1", "z", "B2", "latest", "v1.0",
        ];
        for tag in &tags {
            let resp = s.put_manifest("app", tag, MANIFEST, &manifest).await;
            assert_eq!(resp.status(), StatusCode::CREATED);
        }
        tags.sort();
        let (all, link) = list(&s, "/v2/app/tags/list").await;
        assert_eq!(all, tags);
        assert_eq!(link, "");
        let resp = s.send(Method::GET, "/v2/app/tags/list").await;
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["name"], "app");

        // Exactly n, with a Link to the rest; following the links yields every tag once.
        let (page, link) = list(&s, "/v2/app/tags/list?n=4").await;
        assert_eq!(page, tags[..4]);
        assert_eq!(
            link,
            format!("</v2/app/tags/list?n=4&last={}>; rel=\"next\"", tags[3])
        );
        let mut seen = page;
        let mut next = link;
        while !next.is_empty() {
            let path = next
                .strip_prefix('<')
                .and_then(|l| l.split_once('>'))
                .unwrap()
                .0
                .to_owned();
            let (page, link) = list(&s, &path).await;
            assert!(page.len() <= 4 && !page.is_empty());
            seen.extend(page);
            next = link;
        }
        assert_eq!(seen, tags);

        // last alone: everything after it.
        let (after, _) = list(&s, "/v2/app/tags/list?last=a.1").await;
        assert_eq!(
            after,
            tags[tags.iter().position(|t| *t == "a.1").unwrap() + 1..]
        );
        // last that is not a tag: after its lexical position; empty last: ignored.
        let (after, _) = list(&s, "/v2/app/tags/list?last=m").await;
        assert_eq!(after, ["v1.0", "z"]);
        let (after, _) = list(&s, "/v2/app/tags/list?last=").await;
        assert_eq!(after, tags);
        // n=0: empty, no Link.
        let (none, link) = list(&s, "/v2/app/tags/list?n=0").await;
        assert!(none.is_empty());
        assert_eq!(link, "");
        // Huge n is clamped, not allocated.
        let (all, _) = list(&s, "/v2/app/tags/list?n=99999999999").await;
        assert_eq!(all, tags);
    }
}

#[tokio::test]
async fn bad_pagination_and_unknown_repositories() {
    let s = server_with(
        Backend::Memory,
        ocikit_registry::Config::default().max_page_size(3),
    )
    .await;
    let manifest = empty_manifest(&s, "app").await;
    for tag in ["a", "b", "c", "d", "e"] {
        s.put_manifest("app", tag, MANIFEST, &manifest).await;
    }
    for n in ["-1", "abc", "1.5", "99999999999999999999999"] {
        let resp = s
            .send(Method::GET, &format!("/v2/app/tags/list?n={n}"))
            .await;
        assert_error(resp, StatusCode::BAD_REQUEST, "UNSUPPORTED").await;
    }
    // The server's page size caps n, and the Link says there is more.
    let (page, link) = list(&s, "/v2/app/tags/list?n=1000").await;
    assert_eq!(page, ["a", "b", "c"]);
    assert_eq!(link, "</v2/app/tags/list?n=3&last=c>; rel=\"next\"");
    let resp = s.send(Method::GET, "/v2/nothing/tags/list").await;
    assert_error(resp, StatusCode::NOT_FOUND, "NAME_UNKNOWN").await;
}

#[tokio::test]
async fn catalog_lists_repositories() {
    let s = server(Backend::Fs).await;
    for name in ["b", "a/b/c", "a", "a/blobs/x", "z-1"] {
        s.push_blob(name, name.as_bytes()).await;
    }
    let (all, link) = list(&s, "/v2/_catalog").await;
    assert_eq!(all, ["a", "a/b/c", "a/blobs/x", "b", "z-1"]);
    assert_eq!(link, "");
    let (page, link) = list(&s, "/v2/_catalog?n=2").await;
    assert_eq!(page, ["a", "a/b/c"]);
    assert_eq!(link, "</v2/_catalog?n=2&last=a/b/c>; rel=\"next\"");
    let (page, _) = list(&s, "/v2/_catalog?n=2&last=a/b/c").await;
    assert_eq!(page, ["a/blobs/x", "b"]);
}
