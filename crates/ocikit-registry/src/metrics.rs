//! The registry's Prometheus metrics: requests by route class and status, bytes in and out,
//! request durations, requests in flight, upload sessions, garbage collections and store
//! requests. [`Registry::metrics_text`] renders them in the Prometheus text exposition format
//! (version 0.0.4, [`CONTENT_TYPE`]); [`Registry::metrics_router`] serves them at `/metrics`.
//!
//! Every name starts with `ocikit_registry_`:
//!
//! | metric | labels | what |
//! | --- | --- | --- |
//! | `http_requests_total` | `route`, `status` | requests answered |
//! | `http_request_bytes_total` | `route` | request body bytes read |
//! | `http_response_bytes_total` | `route` | response body bytes sent |
//! | `http_request_duration_seconds` | `route` | histogram, until the response's last byte |
//! | `http_requests_in_flight` | | requests not yet answered in full |
//! | `upload_sessions_open` | | sessions in the upload store (all replicas), read at each scrape |
//! | `gc_runs_total` | `outcome` (`ok`, `error`) | garbage collections |
//! | `gc_reclaimed_bytes_total` | | bytes of blobs removed (dry runs remove none) |
//! | `gc_blobs_removed_total`, `gc_manifests_removed_total` | | what they removed |
//! | `store_requests_total` | `store` (`content`, `upload`), `op` | calls into the stores |
//! | `store_failures_total` | `store`, `op` | of those, failed (a lost compare-and-swap is not a failure) |
//!
//! A route class names an endpoint and method, never a raw path, so the label set stays
//! small: `base`, `catalog`, `tags_list`, `referrers`, `manifest_get`, `manifest_head`,
//! `manifest_put`, `manifest_delete`, `blob_get`, `blob_head`, `blob_delete`,
//! `blob_upload_start` (POST), `blob_upload_patch`, `blob_upload_put`, `blob_upload_status`,
//! `blob_upload_cancel`, `healthz`, `metrics`, `method_not_allowed` (a method an endpoint
//! does not take), `invalid_name` (a malformed repository name) and `unknown`.

use axum::http::Method;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

use crate::route::{self, Route};
use crate::{GcReport, Registry, Result, keys};

/// The `Content-Type` of [`Registry::metrics_text`]: the Prometheus text format 0.0.4.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreLabels {
    store: &'static str,
    op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabels {
    kind: &'static str,
    result: &'static str,
}

type Durations = Family<RouteLabels, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    // 5 ms to about 82 s.
    Histogram::new(exponential_buckets(0.005, 2.0, 15))
}

/// The metrics of one [`Registry`] (and its clones). Every registry has its own, so several
/// servers in one process never mix their counts.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: prometheus_client::registry::Registry,
    requests: Family<RequestLabels, Counter>,
    request_bytes: Family<RouteLabels, Counter>,
    response_bytes: Family<RouteLabels, Counter>,
    durations: Durations,
    in_flight: Gauge,
    upload_sessions: Gauge,
    gc_runs: Family<OutcomeLabels, Counter>,
    gc_reclaimed_bytes: Counter,
    gc_blobs_removed: Counter,
    gc_manifests_removed: Counter,
    store_requests: Family<StoreLabels, Counter>,
    store_failures: Family<StoreLabels, Counter>,
    cache_requests: Family<CacheLabels, Counter>,
}

impl Metrics {
    pub(crate) fn new() -> Metrics {
        let mut registry = prometheus_client::registry::Registry::with_prefix("ocikit_registry");
        let requests = Family::<RequestLabels, Counter>::default();
        let request_bytes = Family::<RouteLabels, Counter>::default();
        let response_bytes = Family::<RouteLabels, Counter>::default();
        let durations = Durations::new_with_constructor(duration_histogram);
        let in_flight = Gauge::default();
        let upload_sessions = Gauge::default();
        let gc_runs = Family::<OutcomeLabels, Counter>::default();
        let gc_reclaimed_bytes = Counter::default();
        let gc_blobs_removed = Counter::default();
        let gc_manifests_removed = Counter::default();
        let store_requests = Family::<StoreLabels, Counter>::default();
        let store_failures = Family::<StoreLabels, Counter>::default();
        let cache_requests = Family::<CacheLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by route class and status",
            requests.clone(),
        );
        registry.register(
            "http_request_bytes",
            "Request body bytes read, by route class",
            request_bytes.clone(),
        );
        registry.register(
            "http_response_bytes",
            "Response body bytes sent, by route class",
            response_bytes.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time from a request's arrival to its response's last byte, by route class",
            durations.clone(),
        );
        registry.register(
            "http_requests_in_flight",
            "Requests whose response has not been sent in full",
            in_flight.clone(),
        );
        registry.register(
            "upload_sessions_open",
            "Upload sessions in the upload store (of every replica sharing it), counted at the scrape",
            upload_sessions.clone(),
        );
        registry.register(
            "gc_runs",
            "Garbage collections finished, by outcome",
            gc_runs.clone(),
        );
        registry.register(
            "gc_reclaimed_bytes",
            "Bytes of blobs removed by garbage collection",
            gc_reclaimed_bytes.clone(),
        );
        registry.register(
            "gc_blobs_removed",
            "Blobs removed by garbage collection",
            gc_blobs_removed.clone(),
        );
        registry.register(
            "gc_manifests_removed",
            "Untagged manifests removed by garbage collection",
            gc_manifests_removed.clone(),
        );
        registry.register(
            "store_requests",
            "Calls into the content and upload stores, by store and operation",
            store_requests.clone(),
        );
        registry.register(
            "store_failures",
            "Store calls that failed (a lost compare-and-swap is not counted), by store and operation",
            store_failures.clone(),
        );
        registry.register(
            "proxy_cache_requests",
            "Pull-through cache lookups (a registry with an upstream only), by kind (manifest, blob) \
             and result: hit (served from the cache), miss (asked of the upstream: fetched, or a tag \
             revalidated), stale (a tag served as cached because the upstream could not answer)",
            cache_requests.clone(),
        );
        Metrics {
            registry,
            requests,
            request_bytes,
            response_bytes,
            durations,
            in_flight,
            upload_sessions,
            gc_runs,
            gc_reclaimed_bytes,
            gc_blobs_removed,
            gc_manifests_removed,
            store_requests,
            store_failures,
            cache_requests,
        }
    }

    /// Counts one pull-through cache lookup: `kind` is `manifest` or `blob`, `result` `hit`,
    /// `miss` or `stale` (see the metric's help).
    pub(crate) fn cache(&self, kind: &'static str, result: &'static str) {
        self.cache_requests
            .get_or_create(&CacheLabels { kind, result })
            .inc();
    }

    /// Counts one answered request.
    pub(crate) fn request_done(
        &self,
        route: &'static str,
        status: u16,
        bytes_in: u64,
        bytes_out: u64,
        elapsed: std::time::Duration,
    ) {
        self.requests
            .get_or_create(&RequestLabels { route, status })
            .inc();
        let labels = RouteLabels { route };
        self.request_bytes.get_or_create(&labels).inc_by(bytes_in);
        self.response_bytes.get_or_create(&labels).inc_by(bytes_out);
        self.durations
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    /// A request in flight until the guard is dropped.
    pub(crate) fn in_flight(&self) -> InFlight {
        self.in_flight.inc();
        InFlight(self.in_flight.clone())
    }

    /// Counts one store call and, when it failed, one failure.
    pub(crate) fn store_call<T>(
        &self,
        store: &'static str,
        op: &'static str,
        outcome: &ocikit_store::Result<T>,
    ) {
        let labels = StoreLabels { store, op };
        self.store_requests.get_or_create(&labels).inc();
        if let Err(e) = outcome
            && !matches!(e, ocikit_store::Error::Conflict { .. })
        {
            self.store_failures.get_or_create(&labels).inc();
        }
    }

    /// Counts one store failure met after its call was counted (in a listing's stream).
    pub(crate) fn store_failure(&self, store: &'static str, op: &'static str) {
        self.store_failures
            .get_or_create(&StoreLabels { store, op })
            .inc();
    }

    /// Counts one finished garbage collection.
    pub(crate) fn gc_done(&self, outcome: &Result<GcReport>) {
        match outcome {
            Ok(report) => {
                self.gc_runs
                    .get_or_create(&OutcomeLabels { outcome: "ok" })
                    .inc();
                if !report.dry_run {
                    self.gc_reclaimed_bytes.inc_by(report.bytes_freed);
                    self.gc_blobs_removed
                        .inc_by(report.blobs_removed.len() as u64);
                    self.gc_manifests_removed
                        .inc_by(report.manifests_removed() as u64);
                }
            }
            Err(_) => {
                self.gc_runs
                    .get_or_create(&OutcomeLabels { outcome: "error" })
                    .inc();
            }
        }
    }

    pub(crate) fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry).ok();
        text
    }
}

/// Counts a request in flight; dropping it counts it done.
#[derive(Debug)]
pub(crate) struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The route class of a request (see the module documentation): an endpoint and a method,
/// never a raw path.
pub(crate) fn route_class(method: &Method, path: &str) -> &'static str {
    if path == "/healthz" {
        return "healthz";
    }
    if path == "/metrics" {
        return "metrics";
    }
    let head = method == Method::HEAD;
    let get = method == Method::GET || head;
    let route = match route::parse_path(path) {
        Ok(Some(route)) => route,
        Ok(None) => return "unknown",
        Err(_) => return "invalid_name",
    };
    match route {
        Route::Base if get => "base",
        Route::Catalog if get => "catalog",
        Route::Tags { .. } if get => "tags_list",
        Route::Referrers { .. } if get => "referrers",
        Route::Manifest { .. } if head => "manifest_head",
        Route::Manifest { .. } if get => "manifest_get",
        Route::Manifest { .. } if method == Method::PUT => "manifest_put",
        Route::Manifest { .. } if method == Method::DELETE => "manifest_delete",
        Route::Blob { .. } if head => "blob_head",
        Route::Blob { .. } if get => "blob_get",
        Route::Blob { .. } if method == Method::DELETE => "blob_delete",
        Route::Uploads { .. } if method == Method::POST => "blob_upload_start",
        Route::Upload { .. } if method == Method::PATCH => "blob_upload_patch",
        Route::Upload { .. } if method == Method::PUT => "blob_upload_put",
        Route::Upload { .. } if get => "blob_upload_status",
        Route::Upload { .. } if method == Method::DELETE => "blob_upload_cancel",
        _ => "method_not_allowed",
    }
}

impl Registry {
    /// The registry's metrics in the Prometheus text exposition format, version 0.0.4
    /// ([`CONTENT_TYPE`]; the names are in the [`metrics`](crate::metrics) module's table).
    /// Counts the upload store's sessions first (one listing); when that fails, the gauge
    /// keeps its last value and the failure is logged and counted as a store failure.
    pub async fn metrics_text(&self) -> String {
        let metrics = self.metrics();
        match self
            .upload_store()
            .list_documents(keys::SESSIONS_PREFIX)
            .await
        {
            Ok(sessions) => {
                metrics
                    .upload_sessions
                    .set(i64::try_from(sessions.len()).unwrap_or(i64::MAX));
            }
            Err(e) => {
                tracing::warn!(error = %crate::error_chain(&e), "metrics: cannot count the upload sessions");
            }
        }
        metrics.encode()
    }

    /// A router serving only `GET /metrics` ([`Registry::metrics_text`]), without
    /// authentication: for a separate listener that only the monitoring system can reach
    /// (`ocikit serve --metrics-addr`). [`crate::Config::metrics_token`] serves it on the
    /// registry's own routes instead.
    pub fn metrics_router(&self) -> axum::Router {
        axum::Router::new()
            .route("/metrics", axum::routing::get(serve_metrics))
            .with_state(self.clone())
    }
}

/// The secret that lets a request read `/metrics` on the registry's own routes
/// ([`crate::Config::metrics_token`]), sent as `Authorization: Bearer SECRET` (Prometheus'
/// `authorization` / `bearer_token_file` scrape settings). Only its SHA-256 is kept, and the
/// comparison is of digests, so its timing says nothing about the secret; `Debug` never
/// shows it.
#[derive(Clone)]
pub struct MetricsToken([u8; 32]);

impl MetricsToken {
    /// The token for `secret` (surrounding whitespace, such as a file's final newline, is
    /// not part of it); `None` when nothing is left, since an empty secret would let in
    /// every request with an empty bearer token.
    pub fn new(secret: &str) -> Option<MetricsToken> {
        let secret = secret.trim();
        (!secret.is_empty()).then(|| MetricsToken(sha256(secret.as_bytes())))
    }

    fn admits(&self, headers: &axum::http::HeaderMap) -> bool {
        let Some(value) = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            return false;
        };
        let Some((scheme, secret)) = value.trim().split_once(' ') else {
            return false;
        };
        scheme.eq_ignore_ascii_case("bearer") && sha256(secret.trim().as_bytes()) == self.0
    }
}

impl std::fmt::Debug for MetricsToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetricsToken(..)")
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref());
    out
}

/// `/metrics` on the registry's own routes: only with [`crate::Config::metrics_token`].
pub(crate) async fn guarded(
    axum::extract::State(registry): axum::extract::State<Registry>,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    match &registry.config().metrics_token {
        Some(token) if token.admits(&headers) => metrics_response(&registry).await,
        _ => (
            axum::http::StatusCode::UNAUTHORIZED,
            [(
                axum::http::header::WWW_AUTHENTICATE,
                r#"Bearer realm="ocikit metrics""#,
            )],
            "the metrics need a bearer token\n",
        )
            .into_response(),
    }
}

async fn serve_metrics(
    axum::extract::State(registry): axum::extract::State<Registry>,
) -> axum::response::Response {
    metrics_response(&registry).await
}

/// `/metrics`' answer.
pub(crate) async fn metrics_response(registry: &Registry) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    (
        [(axum::http::header::CONTENT_TYPE, CONTENT_TYPE)],
        registry.metrics_text().await,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn route_classes_name_endpoints_not_paths() {
        let cases = [
            (Method::GET, "/v2/", "base"),
            (Method::GET, "/v2/_catalog", "catalog"),
            (Method::GET, "/v2/a/b/tags/list", "tags_list"),
            (Method::GET, "/v2/a/manifests/v1", "manifest_get"),
            (Method::HEAD, "/v2/a/manifests/v1", "manifest_head"),
            (Method::PUT, "/v2/a/manifests/v1", "manifest_put"),
            (Method::DELETE, "/v2/a/manifests/v1", "manifest_delete"),
            (Method::GET, "/v2/a/blobs/sha256:ab", "blob_get"),
            (Method::HEAD, "/v2/a/blobs/sha256:ab", "blob_head"),
            (Method::DELETE, "/v2/a/blobs/sha256:ab", "blob_delete"),
            (Method::POST, "/v2/a/blobs/uploads/", "blob_upload_start"),
            (Method::PATCH, "/v2/a/blobs/uploads/x", "blob_upload_patch"),
            (Method::PUT, "/v2/a/blobs/uploads/x", "blob_upload_put"),
            (Method::GET, "/v2/a/blobs/uploads/x", "blob_upload_status"),
            (
                Method::DELETE,
                "/v2/a/blobs/uploads/x",
                "blob_upload_cancel",
            ),
            (Method::GET, "/v2/a/referrers/sha256:ab", "referrers"),
            (Method::POST, "/v2/a/manifests/v1", "method_not_allowed"),
            (Method::GET, "/v2/A/tags/list", "invalid_name"),
            (Method::GET, "/elsewhere", "unknown"),
            (Method::GET, "/healthz", "healthz"),
            (Method::GET, "/metrics", "metrics"),
        ];
        for (method, path, class) in cases {
            assert_eq!(route_class(&method, path), class, "{method} {path}");
        }
    }

    #[test]
    fn the_text_is_the_prometheus_format() {
        let metrics = Metrics::new();
        metrics.request_done("blob_get", 200, 0, 42, std::time::Duration::from_millis(3));
        let text = metrics.encode();
        assert!(
            text.contains("# TYPE ocikit_registry_http_requests_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "ocikit_registry_http_requests_total{route=\"blob_get\",status=\"200\"} 1\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("ocikit_registry_http_response_bytes_total{route=\"blob_get\"} 42\n"),
            "{text}"
        );
        // 0.0.4 has no `# EOF` line (that is OpenMetrics).
        assert!(!text.contains("# EOF"), "{text}");
    }
}
