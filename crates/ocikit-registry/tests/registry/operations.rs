//! The operations surface: `/metrics` (counters that move with a push and a pull, read back
//! by parsing the exposition text), the access log's fields, and graceful shutdown with a
//! bound.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ocikit_registry::{Access, Clock, Config, GcOptions, MetricsToken, Registry, Users};
use ocikit_store::MemoryStore;
use reqwest::{Method, StatusCode};

use crate::{Backend, MANIFEST, Server, data, http_client, image_manifest, server_with};

const SECRET: &str = "scrape-secret";

/// One series of the exposition text: its name with its label block, as printed.
type Series = HashMap<String, f64>;

/// Parses Prometheus text format 0.0.4, checking its grammar as it goes: every sample line
/// is `name{label="value",...} number`, and every metric has a `# TYPE` line before it.
fn parse_exposition(text: &str) -> Series {
    let mut typed: Vec<String> = Vec::new();
    let mut series = Series::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            assert!(
                ["counter", "gauge", "histogram"].contains(&kind),
                "type of {name}: {kind}"
            );
            typed.push(name.to_owned());
            continue;
        }
        if line.starts_with("# HELP ") || line.is_empty() {
            continue;
        }
        assert!(!line.starts_with('#'), "unexpected comment: {line}");
        let (key, value) = line.rsplit_once(' ').expect("sample: series value");
        let name = key.split('{').next().unwrap();
        assert!(
            name.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':'),
            "metric name {name}"
        );
        if let Some(labels) = key.strip_prefix(name)
            && !labels.is_empty()
        {
            let inner = labels
                .strip_prefix('{')
                .and_then(|l| l.strip_suffix('}'))
                .expect("label block in braces");
            for pair in inner.split("\",") {
                let (k, v) = pair.split_once("=\"").expect("label=\"value\"");
                assert!(k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
                assert!(!v.trim_end_matches('"').contains('"'), "{pair}");
            }
        }
        assert!(
            typed.iter().any(|t| name.starts_with(t.as_str())),
            "{name} has no # TYPE line before it"
        );
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().expect("sample value is a number"),
        };
        assert!(
            series.insert(key.to_owned(), value).is_none(),
            "{key} twice"
        );
    }
    series
}

async fn scrape(s: &Server) -> Series {
    let resp = s
        .request(Method::GET, "/metrics")
        .bearer_auth(SECRET)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    parse_exposition(&resp.text().await.unwrap())
}

/// Scrapes until `done` holds (a request is counted once its response body has been sent
/// in full, which may be just after the client has read it).
async fn scrape_until(s: &Server, what: &str, done: impl Fn(&Series) -> bool) -> Series {
    for _ in 0..200 {
        let series = scrape(s).await;
        if done(&series) {
            return series;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the metrics never showed {what}: {:#?}", scrape(s).await);
}

fn get(series: &Series, key: &str) -> f64 {
    series.get(key).copied().unwrap_or(0.0)
}

fn requests(route: &str, status: u16) -> String {
    format!("ocikit_registry_http_requests_total{{route=\"{route}\",status=\"{status}\"}}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_a_push_and_a_pull() {
    let config = Config::default().metrics_token(MetricsToken::new(SECRET));
    let s = server_with(Backend::Memory, config).await;
    let before = scrape(&s).await;
    assert_eq!(get(&before, "ocikit_registry_upload_sessions_open"), 0.0);

    let layer = data(3000, 71);
    let config_blob = data(200, 72);
    let layer_digest = s.push_blob("ops/app", &layer).await;
    let config_digest = s.push_blob("ops/app", &config_blob).await;
    let manifest = image_manifest((&config_digest, 200), &[(&layer_digest, 3000)]);
    let resp = s.put_manifest("ops/app", "v1", MANIFEST, &manifest).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let resp = s.send(Method::GET, "/v2/ops/app/manifests/v1").await;
    assert_eq!(resp.bytes().await.unwrap(), manifest);
    let resp = s
        .send(Method::GET, &format!("/v2/ops/app/blobs/{layer_digest}"))
        .await;
    assert_eq!(resp.bytes().await.unwrap(), layer);
    let resp = s.send(Method::GET, "/v2/ops/app/blobs/sha256:nothex").await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let refusal = resp.bytes().await.unwrap().len() as f64;

    let blob_get = "ocikit_registry_http_response_bytes_total{route=\"blob_get\"}";
    let after = scrape_until(&s, "the blob's 3000 bytes out", |m| {
        get(m, blob_get) - get(&before, blob_get) >= 3000.0 + refusal
    })
    .await;
    let delta = |key: &str| get(&after, key) - get(&before, key);
    assert_eq!(delta(&requests("blob_upload_start", 202)), 2.0);
    assert_eq!(delta(&requests("blob_upload_put", 201)), 2.0);
    assert_eq!(delta(&requests("manifest_put", 201)), 1.0);
    assert_eq!(delta(&requests("manifest_get", 200)), 1.0);
    assert_eq!(delta(&requests("blob_get", 200)), 1.0);
    assert_eq!(delta(&requests("blob_get", 400)), 1.0);
    assert_eq!(
        delta("ocikit_registry_http_request_bytes_total{route=\"blob_upload_put\"}"),
        3200.0
    );
    assert_eq!(
        delta("ocikit_registry_http_request_bytes_total{route=\"manifest_put\"}"),
        manifest.len() as f64
    );
    assert_eq!(
        delta("ocikit_registry_http_response_bytes_total{route=\"manifest_get\"}"),
        manifest.len() as f64
    );
    // The blob, and the refusal's error document.
    assert_eq!(delta(blob_get), 3000.0 + refusal);
    assert_eq!(
        delta("ocikit_registry_http_request_duration_seconds_count{route=\"blob_get\"}"),
        2.0
    );
    // Each blob was published once into the content store, after the upload store had its
    // session documents written.
    assert!(delta("ocikit_registry_store_requests_total{store=\"content\",op=\"publish\"}") >= 2.0);
    assert!(
        delta("ocikit_registry_store_requests_total{store=\"upload\",op=\"write_document\"}")
            >= 2.0
    );
    assert!(
        delta("ocikit_registry_store_requests_total{store=\"content\",op=\"read_document\"}")
            >= 1.0
    );
    for (key, value) in &after {
        if key.starts_with("ocikit_registry_store_failures_total") {
            assert_eq!(*value, 0.0, "{key}");
        }
    }
    // Only the scrape itself is in flight.
    assert_eq!(get(&after, "ocikit_registry_http_requests_in_flight"), 1.0);

    // An upload session left open shows; the scrape counts the upload store's sessions.
    let _location = s.start_upload("ops/app").await;
    let open = scrape(&s).await;
    assert_eq!(get(&open, "ocikit_registry_upload_sessions_open"), 1.0);

    // A garbage collection that reclaims a blob pushed nowhere else.
    let orphan = data(1234, 73);
    s.push_blob("ops/orphan", &orphan).await;
    let report = s
        .registry
        .gc(&GcOptions::new()
            .grace(Duration::ZERO)
            .clock(Clock::from_fn(|| {
                // A second ahead, so what was just written is past the grace period.
                std::time::SystemTime::now() + Duration::from_secs(1)
            })))
        .await
        .unwrap();
    assert!(report.bytes_freed >= 1234, "{report:?}");
    let collected = scrape(&s).await;
    assert_eq!(
        get(&collected, "ocikit_registry_gc_runs_total{outcome=\"ok\"}"),
        1.0
    );
    assert_eq!(
        get(&collected, "ocikit_registry_gc_reclaimed_bytes_total"),
        report.bytes_freed as f64
    );
    assert_eq!(
        get(&collected, "ocikit_registry_gc_blobs_removed_total"),
        report.blobs_removed.len() as f64
    );
    // A refused collection counts as one that failed.
    let refused = s
        .registry
        .gc(&GcOptions::new().repositories(["NOT A NAME"]))
        .await;
    assert!(refused.is_err());
    let collected = scrape(&s).await;
    assert_eq!(
        get(
            &collected,
            "ocikit_registry_gc_runs_total{outcome=\"error\"}"
        ),
        1.0
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_on_the_main_port_need_the_token() {
    let config = Config::default().metrics_token(MetricsToken::new(SECRET));
    let s = server_with(Backend::Memory, config).await;
    let resp = s.send(Method::GET, "/metrics").await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(
        resp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer ")
    );
    for wrong in ["scrape-secreT", "", "scrape-secret-and-more"] {
        let resp = s
            .request(Method::GET, "/metrics")
            .bearer_auth(wrong)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{wrong:?}");
    }
    let resp = s
        .request(Method::GET, "/metrics")
        .basic_auth("scrape", Some(SECRET))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    s.stop().await;

    // Without a token, /metrics is no route of the registry's.
    let s = server_with(Backend::Memory, Config::default()).await;
    let resp = s.send(Method::GET, "/metrics").await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    s.stop().await;
    assert!(MetricsToken::new(" \n").is_none());
    assert_eq!(
        format!("{:?}", MetricsToken::new(SECRET).unwrap()),
        "MetricsToken(..)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_router_serves_on_a_listener_of_its_own() {
    let s = server_with(Backend::Memory, Config::default()).await;
    s.push_blob("ops/app", &data(10, 74)).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = s.registry.metrics_router();
    let task = tokio::spawn(async move { axum::serve(listener, router).await });
    let client = http_client();
    let text = client
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let series = parse_exposition(&text);
    assert_eq!(get(&series, &requests("blob_upload_put", 201)), 1.0);
    let resp = client
        .get(format!("http://{addr}/v2/"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    task.abort();
    s.stop().await;
}

/// Collects what a `tracing` subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// The access log's events so far, as JSON objects.
    fn access_lines(&self) -> Vec<serde_json::Value> {
        let text = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|v| v["target"] == ocikit_registry::ACCESS_LOG_TARGET)
            .filter(|v| {
                v["fields"]["path"]
                    .as_str()
                    .is_some_and(|p| p.starts_with("/v2/ops/logged/"))
            })
            .collect()
    }
}

/// The access log's events go to a process-wide subscriber (this is the only test that sets
/// one; a thread's own default would miss events whose callsites other tests' threads
/// registered first), filtered to this test's repository.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_names_client_user_bytes_and_whole_milliseconds() {
    use tracing_subscriber::layer::SubscriberExt as _;
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::registry()
        .with(
            tracing_subscriber::filter::Targets::new()
                .with_target(ocikit_registry::ACCESS_LOG_TARGET, tracing::Level::INFO),
        )
        .with(
            tracing_subscriber::fmt::layer()
                .json()
                .with_writer(move || writer.clone()),
        );
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let mut users = Users::new();
    let hash = bcrypt::hash("alice-pw", 4).unwrap();
    users
        .add_htpasswd(&format!("alice:{hash}\n"), Access::ReadWrite, "rw")
        .unwrap();
    let config = Config::default().users(Some(users)).anonymous_read(true);
    let s = server_with(Backend::Memory, config).await;
    let blob = data(5000, 75);
    let digest = ocikit_digest::Digest::sha256(&blob);
    let resp = s
        .request(
            Method::POST,
            &crate::with_digest("/v2/ops/logged/blobs/uploads/", &digest),
        )
        .basic_auth("alice", Some("alice-pw"))
        .header("content-type", "application/octet-stream")
        .body(blob.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let resp = s
        .send(Method::GET, &format!("/v2/ops/logged/blobs/{digest}"))
        .await;
    assert_eq!(resp.bytes().await.unwrap(), blob);
    let resp = s
        .request(Method::DELETE, &format!("/v2/ops/logged/blobs/{digest}"))
        .basic_auth("alice", Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    let mut lines = Vec::new();
    for _ in 0..200 {
        lines = captured.access_lines();
        if lines.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(lines.len(), 3, "{lines:#?}");
    let fields: Vec<&serde_json::Value> = lines.iter().map(|l| &l["fields"]).collect();
    for f in &fields {
        assert_eq!(f["client"], "127.0.0.1", "{f}");
        assert!(f["ms"].is_u64(), "whole milliseconds: {f}");
        assert!(f["bytes_in"].is_u64() && f["bytes_out"].is_u64(), "{f}");
    }
    let push = fields[0];
    assert_eq!(push["user"], "alice");
    assert_eq!(push["method"], "POST");
    assert_eq!(push["path"], "/v2/ops/logged/blobs/uploads/");
    assert_eq!(push["status"], 201);
    assert_eq!(push["bytes_in"], 5000);
    assert_eq!(push["message"], "request");
    let pull = fields[1];
    assert_eq!(pull["user"], "-");
    assert_eq!(pull["method"], "GET");
    assert_eq!(pull["path"], format!("/v2/ops/logged/blobs/{digest}"));
    assert_eq!(pull["status"], 200);
    assert_eq!(pull["bytes_in"], 0);
    assert_eq!(pull["bytes_out"], 5000);
    let refused = fields[2];
    assert_eq!(refused["user"], "-", "a wrong password names no user");
    assert_eq!(refused["status"], 401);
    assert!(refused["bytes_out"].as_u64().unwrap() > 0);
    s.stop().await;
}

/// A request body sent `chunks` pieces of 8 KiB, one every `every`; `sent` counts them and
/// `first` hears when the first has gone.
fn slow_body(
    chunks: usize,
    every: Duration,
    sent: Arc<AtomicUsize>,
    first: tokio::sync::oneshot::Sender<()>,
) -> reqwest::Body {
    let mut first = Some(first);
    let stream = futures::stream::unfold(0usize, move |i| {
        let sent = sent.clone();
        let first = if i == 1 { first.take() } else { None };
        async move {
            if let Some(first) = first {
                first.send(()).ok();
            }
            if i == chunks {
                return None;
            }
            if i > 0 {
                tokio::time::sleep(every).await;
            }
            sent.fetch_add(1, Ordering::SeqCst);
            Some((Ok::<_, std::io::Error>(data(8192, i as u8)), i + 1))
        }
    });
    reqwest::Body::wrap_stream(stream)
}

struct Stoppable {
    addr: std::net::SocketAddr,
    registry: Registry,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<ocikit_registry::Result<()>>,
}

async fn start(config: Config) -> Stoppable {
    let registry = Registry::new(
        Arc::new(MemoryStore::new()),
        Arc::new(MemoryStore::new()),
        config,
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = registry.clone();
    let task = tokio::spawn(async move {
        serving
            .serve(listener, async {
                stopped.await.ok();
            })
            .await
    });
    Stoppable {
        addr,
        registry,
        stop,
        task,
    }
}

impl Stoppable {
    /// Waits until the server has a request in flight (its headers read): a signal before
    /// that would close the connection as idle, which proves nothing about requests.
    async fn request_in_flight(&self) {
        for _ in 0..1000 {
            let series = parse_exposition(&self.registry.metrics_text().await);
            if get(&series, "ocikit_registry_http_requests_in_flight") >= 1.0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("the request never reached the server");
    }
}

async fn open_upload(client: &reqwest::Client, addr: std::net::SocketAddr) -> String {
    let resp = client
        .post(format!("http://{addr}/v2/ops/slow/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    format!("http://{addr}{}", crate::location(&resp))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_an_upload_in_flight_finish_and_refuses_new_connections() {
    let server = start(Config::default().shutdown_timeout(Duration::from_secs(60))).await;
    let client = http_client();
    let location = open_upload(&client, server.addr).await;
    let sent = Arc::new(AtomicUsize::new(0));
    let (first, first_sent) = tokio::sync::oneshot::channel();
    let body = slow_body(16, Duration::from_millis(100), sent.clone(), first);
    let patch = tokio::spawn(
        client
            .patch(&location)
            .header("content-type", "application/octet-stream")
            .body(body)
            .send(),
    );
    first_sent.await.unwrap();
    server.request_in_flight().await;
    server.stop.send(()).unwrap();
    // The listener closes at once: a new connection is refused while the upload goes on.
    let mut refused = false;
    for _ in 0..400 {
        if tokio::net::TcpStream::connect(server.addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        refused,
        "new connections were still accepted after the shutdown signal"
    );
    assert!(
        sent.load(Ordering::SeqCst) < 16,
        "the upload finished before the listener closed; the test proves nothing"
    );
    let resp = patch.await.unwrap().unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(resp.headers()["range"], format!("0-{}", 16 * 8192 - 1));
    tokio::time::timeout(Duration::from_secs(30), server.task)
        .await
        .expect("the server returned once the upload was done")
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_cuts_off_what_runs_past_the_bound() {
    let server = start(Config::default().shutdown_timeout(Duration::from_millis(300))).await;
    let client = http_client();
    let location = open_upload(&client, server.addr).await;
    let sent = Arc::new(AtomicUsize::new(0));
    let (first, first_sent) = tokio::sync::oneshot::channel();
    // Far longer than the bound: 600 chunks, one every 100 ms.
    let body = slow_body(600, Duration::from_millis(100), sent.clone(), first);
    let patch = tokio::spawn(
        client
            .patch(&location)
            .header("content-type", "application/octet-stream")
            .body(body)
            .send(),
    );
    first_sent.await.unwrap();
    server.request_in_flight().await;
    server.stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(30), server.task)
        .await
        .expect("the server returned after its bound")
        .unwrap()
        .unwrap();
    assert!(
        sent.load(Ordering::SeqCst) < 600,
        "the server waited for the whole upload"
    );
    let heard = tokio::time::timeout(Duration::from_secs(30), patch)
        .await
        .expect("the client heard the cut-off")
        .unwrap();
    // Either a 503, or the connection closed before the 503 reached the client.
    if let Ok(resp) = heard {
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
}
