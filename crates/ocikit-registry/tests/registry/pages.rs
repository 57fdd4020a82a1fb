//! Pagination at size (issue 19): 2,500 tags and 2,500 repositories paged with n=100 on
//! every backend (S3 on moto), each entry once and in byte order, with the right `Link`;
//! `last` of a missing entry, n=0, n past the end, and a refused n. Also what a page costs:
//! one store listing, not one per entry nor a read of the whole list.

use std::collections::BTreeSet;
use std::sync::Arc;

use futures::StreamExt as _;
use ocikit_registry::keys;
use ocikit_store::{DocumentKey, Precondition, Store};
use ocikit_testkit::prng::Prng;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::*;

/// Writes `keys` (documents with `body`) straight into the content store, 32 at a time.
async fn write_all(store: &Arc<dyn Store>, keys: Vec<DocumentKey>, body: &'static [u8]) {
    futures::stream::iter(keys)
        .map(|key| {
            let store = store.clone();
            async move {
                store
                    .write_document(&key, bytes::Bytes::from_static(body), Precondition::None)
                    .await
                    .unwrap();
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<()>>()
        .await;
}

/// The entries of one list response, and its `Link` header ("" when absent).
async fn page(s: &Server, path: &str) -> (Vec<String>, String) {
    let resp = s.send(Method::GET, path).await;
    assert_eq!(resp.status(), StatusCode::OK, "{path}");
    let link = header(&resp, "link");
    let body: Value = resp.json().await.unwrap();
    let field = if path.starts_with("/v2/_catalog") {
        "repositories"
    } else {
        "tags"
    };
    let entries = body[field]
        .as_array()
        .unwrap_or_else(|| panic!("{path}: {body}"))
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect();
    (entries, link)
}

/// Follows the `Link`s from `first` (a list path with `n`): every page but the last holds
/// exactly `n` entries and links to the next with `n` and its last entry; the last links
/// nowhere. Returns every entry in the order served.
async fn follow(s: &Server, base: &str, n: usize) -> Vec<String> {
    let mut path = format!("{base}?n={n}");
    let mut seen = Vec::new();
    loop {
        let (entries, link) = page(s, &path).await;
        if link.is_empty() {
            assert!(entries.len() <= n, "{path}");
            seen.extend(entries);
            return seen;
        }
        assert_eq!(entries.len(), n, "{path}: a page with a Link is full");
        let next = format!("{base}?n={n}&last={}", entries[n - 1]);
        assert_eq!(link, format!("<{next}>; rel=\"next\""), "{path}");
        seen.extend(entries);
        path = next;
    }
}

/// Tags from the whole grammar (`[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`), 2,500 distinct.
fn many_tags() -> BTreeSet<String> {
    const FIRST: &[u8] = b"ABCZabcz0189_";
    const REST: &[u8] = b"ABCZabcz0189_.-";
    let mut prng = Prng::new(19);
    let mut tags = BTreeSet::new();
    while tags.len() < 2500 {
        let len = 1 + prng.below(12) as usize;
        let mut tag = String::new();
        tag.push(FIRST[prng.below(FIRST.len() as u64) as usize] as char);
        for _ in 1..len {
            tag.push(REST[prng.below(REST.len() as u64) as usize] as char);
        }
        tags.insert(tag);
    }
    tags
}

/// Repository names where marker order and name order disagree (a name and the same name
/// followed by `-`, `.`, `/` and a digit, `/` and a letter), 2,500 distinct.
fn many_names() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut i = 0;
    while names.len() < 2500 {
        let team = format!("t{}", i % 37);
        for name in [
            team.clone(),
            format!("{team}-x"),
            format!("{team}.y/{i}"),
            format!("{team}/{i}"),
            format!("{team}/a{i}"),
            format!("{team}/a{i}-{}", i % 3),
            format!("{team}/a{i}-{}/0", i % 3),
        ] {
            names.insert(name);
        }
        i += 1;
    }
    names
}

async fn empty_manifest(s: &Server, name: &str) -> (Digest, Vec<u8>) {
    let config = s.push_blob(name, b"{}").await;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": MANIFEST,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": config.as_str(), "size": 2},
        "layers": []
    }))
    .unwrap();
    (Digest::sha256(&manifest), manifest)
}

fn content_calls(text: &str, op: &str) -> u64 {
    let series = format!("ocikit_registry_store_requests_total{{store=\"content\",op=\"{op}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&series))
        .map_or(0, |v| v.parse().unwrap())
}

/// Every content-store call kind a list page could make, counted.
async fn calls(s: &Server) -> [u64; 4] {
    let text = s.registry.metrics_text().await;
    [
        "list_documents_after",
        "list_documents",
        "read_document",
        "document_version",
    ]
    .map(|op| content_calls(&text, op))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_five_hundred_tags_page_by_page() {
    for backend in backends() {
        let s = server_with(backend, Config::default().max_page_size(10_000)).await;
        let (digest, manifest) = empty_manifest(&s, "app").await;
        let tags = many_tags();
        let first = tags.first().unwrap().clone();
        let resp = s.put_manifest("app", &first, MANIFEST, &manifest).await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        let body: &'static [u8] = format!("{{\"digest\":\"{digest}\"}}").leak().as_bytes();
        let keys = tags.iter().map(|t| keys::tag("app", t).unwrap()).collect();
        write_all(s.registry.store(), keys, body).await;
        let sorted: Vec<String> = tags.iter().cloned().collect();

        // Every tag once, in byte order, 100 a page, each page one listing and nothing else.
        let before = calls(&s).await;
        let all = follow(&s, "/v2/app/tags/list", 100).await;
        let after = calls(&s).await;
        assert_eq!(all, sorted, "{backend:?}");
        assert_eq!(after[0] - before[0], 25, "{backend:?}: one listing a page");
        assert_eq!(
            after[1..],
            before[1..],
            "{backend:?}: no whole listing, no reads"
        );
        // Odd page sizes end on every kind of boundary.
        assert_eq!(follow(&s, "/v2/app/tags/list", 333).await, sorted);

        // `last` that is no tag: the tags after its place.
        let missing = format!("{}~", sorted[1234]);
        assert!(!tags.contains(&missing));
        let (entries, link) = page(&s, &format!("/v2/app/tags/list?n=100&last={missing}")).await;
        assert_eq!(entries, sorted[1235..1335]);
        assert_eq!(
            link,
            format!(
                "</v2/app/tags/list?n=100&last={}>; rel=\"next\"",
                sorted[1334]
            )
        );
        // `last` before every tag and after every tag.
        let (entries, _) = page(&s, "/v2/app/tags/list?n=3&last=-").await;
        assert_eq!(entries, sorted[..3]);
        let (entries, link) = page(&s, "/v2/app/tags/list?n=3&last=~").await;
        assert!(entries.is_empty() && link.is_empty());
        // The last tag itself: nothing after it, no Link.
        let (entries, link) =
            page(&s, &format!("/v2/app/tags/list?n=10&last={}", sorted[2499])).await;
        assert!(entries.is_empty() && link.is_empty());
        // Exactly the last page's worth: no Link.
        let (entries, link) =
            page(&s, &format!("/v2/app/tags/list?n=10&last={}", sorted[2489])).await;
        assert_eq!(entries, sorted[2490..]);
        assert_eq!(link, "");
        // n=0: nothing, no Link.
        let (entries, link) = page(&s, "/v2/app/tags/list?n=0").await;
        assert!(entries.is_empty() && link.is_empty());
        // n past the total: everything, no Link.
        let (entries, link) = page(&s, "/v2/app/tags/list?n=5000").await;
        assert_eq!(entries, sorted);
        assert_eq!(link, "");
        // n that is no non-negative integer: 400 UNSUPPORTED.
        for n in ["-1", "ten", "1e3", "0x10", "99999999999999999999999"] {
            let resp = s
                .send(Method::GET, &format!("/v2/app/tags/list?n={n}"))
                .await;
            assert_error(resp, StatusCode::BAD_REQUEST, "UNSUPPORTED").await;
        }
        // An unknown repository is NAME_UNKNOWN, at any page.
        for path in ["/v2/nothing/tags/list", "/v2/nothing/tags/list?n=10&last=a"] {
            let resp = s.send(Method::GET, path).await;
            assert_error(resp, StatusCode::NOT_FOUND, "NAME_UNKNOWN").await;
        }
        // A repository without tags (only a blob) is an empty list.
        s.push_blob("blobs-only", b"x").await;
        let (entries, link) = page(&s, "/v2/blobs-only/tags/list").await;
        assert!(entries.is_empty() && link.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_five_hundred_repositories_page_by_page() {
    for backend in backends() {
        let s = server_with(backend, Config::default().max_page_size(10_000)).await;
        let names = many_names();
        let keys = names
            .iter()
            .map(|name| keys::catalog_marker(name).unwrap())
            .collect();
        write_all(s.registry.store(), keys, b"{}").await;
        let sorted: Vec<String> = names.iter().cloned().collect();

        let before = calls(&s).await;
        let all = follow(&s, "/v2/_catalog", 100).await;
        let after = calls(&s).await;
        assert_eq!(all, sorted, "{backend:?}");
        let pages = (sorted.len() as u64).div_ceil(100);
        assert!(after[0] - before[0] >= pages, "{backend:?}");
        assert_eq!(after[1], before[1], "{backend:?}: no whole listing");
        // The reads of prefixes listed later: a few a page, never one per name.
        let reads = after[0] - before[0] + after[2] - before[2] + after[3] - before[3];
        assert!(
            reads <= 6 * pages,
            "{backend:?}: {reads} store calls for {pages} pages"
        );
        // Page sizes that end pages elsewhere (every size from every start: the next test).
        for n in [37, 250] {
            assert_eq!(follow(&s, "/v2/_catalog", n).await, sorted, "n={n}");
        }
        // `last` that is no repository, before and after everything; n=0; n past the end.
        let missing = format!("{}-zz", sorted[1000]);
        assert!(!names.contains(&missing));
        let expected: Vec<&String> = sorted.iter().filter(|n| **n > missing).take(5).collect();
        let (entries, _) = page(&s, &format!("/v2/_catalog?n=5&last={missing}")).await;
        assert_eq!(entries.iter().collect::<Vec<_>>(), expected);
        let (entries, _) = page(&s, "/v2/_catalog?n=2&last=0").await;
        assert_eq!(entries, sorted[..2]);
        let (entries, link) = page(&s, "/v2/_catalog?n=2&last=~").await;
        assert!(entries.is_empty() && link.is_empty());
        let (entries, link) = page(&s, "/v2/_catalog?n=0").await;
        assert!(entries.is_empty() && link.is_empty());
        let (entries, link) = page(&s, "/v2/_catalog?n=9999").await;
        assert_eq!(entries, sorted);
        assert_eq!(link, "");
        let resp = s.send(Method::GET, "/v2/_catalog?n=-5").await;
        assert_error(resp, StatusCode::BAD_REQUEST, "UNSUPPORTED").await;
    }
}

/// A catalog whose every name is a prefix of others that sort before it as markers, paged
/// with every page size from every start: each page is exactly the names after `last`.
#[tokio::test]
async fn catalog_pages_are_exact_where_marker_order_is_not_name_order() {
    for backend in backends() {
        let s = server(backend).await;
        let names = [
            "a", "a-b", "a.b", "a/0", "a/0/0", "a/b", "a/b-0", "a/b.c/1", "a0", "a_b", "a__b",
            "ab", "b", "b-a", "b/9-a", "b/9", "b.9",
        ];
        let keys = names
            .iter()
            .map(|name| keys::catalog_marker(name).unwrap())
            .collect();
        write_all(s.registry.store(), keys, b"{}").await;
        let mut sorted: Vec<&str> = names.to_vec();
        sorted.sort();
        let starts = std::iter::once(None)
            .chain(sorted.iter().map(|n| Some(n.to_string())))
            .chain(["a-", "a/", "a/0/", "b/9/"].map(|n| Some(n.to_owned())));
        for last in starts {
            let rest: Vec<&str> = sorted
                .iter()
                .copied()
                .filter(|n| last.as_deref().is_none_or(|l| *n > l))
                .collect();
            for n in 1..=rest.len() + 1 {
                let path = match &last {
                    None => format!("/v2/_catalog?n={n}"),
                    Some(last) => format!("/v2/_catalog?n={n}&last={last}"),
                };
                let (entries, link) = page(&s, &path).await;
                assert_eq!(entries, rest[..n.min(rest.len())], "{backend:?} {path}");
                assert_eq!(link.is_empty(), n >= rest.len(), "{backend:?} {path}");
            }
        }
    }
}
