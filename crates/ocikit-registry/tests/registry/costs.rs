//! What one push or pull costs in store requests (issue 19: on S3 it is what a user pays):
//! counted per store call by the registry's own metrics, and on S3 per HTTP request by
//! moto's request log. The counts are asserted exactly, so an operation that starts
//! making more requests fails here; `cargo test ... costs -- --nocapture` prints the table
//! docs/benchmarks.md quotes.

use std::collections::BTreeMap;

use reqwest::{Method, StatusCode};

use crate::*;

/// Every `store_requests_total` series: (store, op) -> count.
async fn store_calls(s: &Server) -> BTreeMap<(String, String), u64> {
    let text = s.registry.metrics_text().await;
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("ocikit_registry_store_requests_total{store=\"")?;
            let (store, rest) = rest.split_once("\",op=\"")?;
            let (op, count) = rest.split_once("\"} ")?;
            Some(((store.to_owned(), op.to_owned()), count.parse().ok()?))
        })
        .collect()
}

/// The HTTP requests moto logged for `bucket`, by method (S3 only).
fn moto_requests(bucket: &str) -> BTreeMap<String, u64> {
    let Some(moto) = ocikit_testkit::moto::shared() else {
        return BTreeMap::new();
    };
    let port = moto.endpoint().rsplit(':').next().unwrap().to_owned();
    let log = std::env::temp_dir().join(format!("ocikit-moto-{port}.log"));
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut counts = BTreeMap::new();
    for line in text.lines() {
        let Some((_, request)) = line.split_once('"') else {
            continue;
        };
        let mut words = request.split(' ');
        let (Some(method), Some(path)) = (words.next(), words.next()) else {
            continue;
        };
        let in_bucket = path
            .strip_prefix('/')
            .and_then(|p| p.strip_prefix(bucket))
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(['/', '?']));
        if in_bucket {
            let kind = if method == "GET" && path.contains("list-type=2") {
                "LIST".to_owned()
            } else {
                method.to_owned()
            };
            *counts.entry(kind).or_default() += 1;
        }
    }
    counts
}

/// What one operation cost: store calls by (store, op), and HTTP requests by method.
struct Cost {
    calls: BTreeMap<(String, String), u64>,
    http: BTreeMap<String, u64>,
}

impl Cost {
    fn render(&self) -> String {
        let calls: Vec<String> = self
            .calls
            .iter()
            .map(|((store, op), n)| format!("{store}.{op}={n}"))
            .collect();
        let http: Vec<String> = self.http.iter().map(|(m, n)| format!("{m}={n}")).collect();
        format!("{} | {}", calls.join(" "), http.join(" "))
    }

    fn total_calls(&self) -> u64 {
        self.calls.values().sum()
    }
}

/// Runs `op` and returns what it cost.
async fn measure<F: std::future::Future<Output = ()>>(
    s: &Server,
    bucket: Option<&str>,
    op: F,
) -> Cost {
    // The metrics' own requests (a listing of the upload sessions) fall outside the window
    // of moto's log read here; moto writes a log line after answering, hence the pauses.
    let calls_before = store_calls(s).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let http_before = bucket.map(moto_requests).unwrap_or_default();
    op.await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let http_after = bucket.map(moto_requests).unwrap_or_default();
    let calls_after = store_calls(s).await;
    let mut calls: BTreeMap<(String, String), u64> = BTreeMap::new();
    for (key, after) in calls_after {
        let before = calls_before.get(&key).copied().unwrap_or(0);
        // metrics_text lists the upload sessions: not the operation's.
        if after > before && key != ("upload".to_owned(), "list_documents".to_owned()) {
            calls.insert(key, after - before);
        }
    }
    let mut http = BTreeMap::new();
    for (method, after) in http_after {
        let before = http_before.get(&method).copied().unwrap_or(0);
        if after > before {
            http.insert(method, after - before);
        }
    }
    Cost { calls, http }
}

async fn push_monolithic(s: &Server, name: &str, bytes: &[u8]) {
    s.push_blob(name, bytes).await;
}

async fn push_chunked(s: &Server, name: &str, bytes: &[u8], chunks: usize) {
    let digest = Digest::sha256(bytes);
    let mut location = s.start_upload(name).await;
    let size = bytes.len().div_ceil(chunks);
    for (i, chunk) in bytes.chunks(size).enumerate() {
        let start = i * size;
        let resp = s
            .request(Method::PATCH, &location)
            .header("content-type", "application/octet-stream")
            .header(
                "content-range",
                format!("{start}-{}", start + chunk.len() - 1),
            )
            .body(chunk.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
        location = crate::location(&resp);
    }
    let resp = s
        .request(Method::PUT, &with_digest(&location, &digest))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_requests_per_push_and_pull() {
    for backend in [Backend::Fs, Backend::S3] {
        if matches!(backend, Backend::S3) && !backends().iter().any(|b| matches!(b, Backend::S3)) {
            continue;
        }
        let s = server(backend).await;
        // The bucket of an S3 server: its content store's Debug names it.
        let bucket = matches!(backend, Backend::S3).then(|| {
            let debug = format!("{:?}", s.registry.store());
            let start = debug.find("ocikit-").unwrap();
            debug[start..]
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                .next()
                .unwrap()
                .to_owned()
        });
        let bucket = bucket.as_deref();
        let config = data(1 << 10, 1);
        let layer = data(6 << 20, 2);
        let layer2 = data(6 << 20, 3);
        // The first push into a repository also records that it exists.
        let first = measure(&s, bucket, push_monolithic(&s, "app", &config)).await;
        let monolithic = measure(&s, bucket, push_monolithic(&s, "app", &layer)).await;
        let chunked = measure(&s, bucket, push_chunked(&s, "app", &layer2, 3)).await;
        let config_digest = Digest::sha256(&config);
        let layer_digest = Digest::sha256(&layer);
        let manifest = image_manifest(
            (&config_digest, config.len()),
            &[
                (&layer_digest, layer.len()),
                (&Digest::sha256(&layer2), layer2.len()),
            ],
        );
        let manifest_push = measure(&s, bucket, async {
            let resp = s.put_manifest("app", "v1", MANIFEST, &manifest).await;
            assert_eq!(resp.status(), StatusCode::CREATED);
        })
        .await;
        let head = measure(&s, bucket, async {
            let resp = s
                .send(Method::HEAD, &format!("/v2/app/blobs/{layer_digest}"))
                .await;
            assert_eq!(resp.status(), StatusCode::OK);
        })
        .await;
        let pull_manifest = measure(&s, bucket, async {
            let resp = s
                .request(Method::GET, "/v2/app/manifests/v1")
                .header("accept", MANIFEST)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
            resp.bytes().await.unwrap();
        })
        .await;
        let pull_blob = measure(&s, bucket, async {
            let resp = s
                .send(Method::GET, &format!("/v2/app/blobs/{layer_digest}"))
                .await;
            assert_eq!(resp.status(), StatusCode::OK);
            assert_eq!(resp.bytes().await.unwrap().len(), layer.len());
        })
        .await;
        let rows = [
            ("first blob push into a repository (POST + PUT)", &first),
            ("blob push, monolithic (POST + PUT, 6 MiB)", &monolithic),
            ("blob push, chunked (POST + 3 PATCH + PUT, 6 MiB)", &chunked),
            ("manifest push by tag", &manifest_push),
            ("blob HEAD", &head),
            ("manifest pull by tag", &pull_manifest),
            ("blob pull, whole (6 MiB)", &pull_blob),
        ];
        for (what, cost) in &rows {
            eprintln!(
                "COST {backend:?} | {what} | {} | {}",
                cost.total_calls(),
                cost.render()
            );
        }
        // Store calls (any backend), then S3 requests: GET, HEAD, PUT, DELETE, LIST.
        let expected: [(u64, [u64; 5]); 7] = [
            // session PUT; session GET, marker GET, blob HEAD (is it still there after
            // linking: see gc), blob PUT, session HEAD + DELETE, marker PUT, link PUT.
            (9, [2, 2, 4, 1, 0]),
            // The same without the marker PUT.
            (8, [2, 2, 3, 1, 0]),
            // And per PATCH: session GET, chunk PUT, session PUT; at the end each chunk's
            // HEAD + DELETE (Store::delete reports whether it existed).
            (23, [5, 5, 9, 4, 0]),
            // Content HEAD, manifest PUT, marker GET, record PUT, tag PUT.
            (6, [1, 1, 3, 0, 0]),
            // Link GET, blob HEAD.
            (2, [1, 1, 0, 0, 0]),
            // Tag GET, record GET, manifest GET.
            (3, [3, 0, 0, 0, 0]),
            // Link GET, blob GET (no HEAD first).
            (2, [2, 0, 0, 0, 0]),
        ];
        for ((what, cost), (calls, http)) in rows.iter().zip(expected) {
            assert_eq!(
                cost.total_calls(),
                calls,
                "{backend:?} {what}: {}",
                cost.render()
            );
            if bucket.is_some() {
                let got = ["GET", "HEAD", "PUT", "DELETE", "LIST"]
                    .map(|m| cost.http.get(m).copied().unwrap_or(0));
                assert_eq!(got, http, "{what} on S3: {}", cost.render());
                assert_eq!(cost.http.values().sum::<u64>(), http.iter().sum::<u64>());
            }
        }
    }
}
