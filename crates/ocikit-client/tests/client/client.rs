//! The client (`ocikit_client`) against ocikit's own server (anonymous, htpasswd
//! users, a bearer-token front written here) and against small hostile servers: wrong bytes
//! under the right `Docker-Content-Digest`, redirects to another origin, 503s and a blob
//! download cut off halfway.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bytes::Bytes;
use futures::StreamExt;
use ocikit_client::{Client, Credentials, Error, Operation, PullOptions, PushOptions};
use ocikit_digest::Digest;
use ocikit_digest::oci_spec::image::Descriptor;
use ocikit_layout::{Layout, PlatformQuery};
use ocikit_registry::{Access, Config, Registry, Users};
use ocikit_store::{MemoryStore, Store, StoreExt};
use ocikit_testkit::distribution::Distribution;
use serde_json::json;

use crate::{Server, data};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

fn registry(config: Config) -> Registry {
    Registry::new(
        Arc::new(MemoryStore::new()),
        Arc::new(MemoryStore::new()),
        config,
    )
    .unwrap()
}

fn addr(server: &Server) -> String {
    server.base.trim_start_matches("http://").to_string()
}

/// A quick client: plain HTTP on loopback, short backoff, small chunks so that the larger
/// layers go through chunked PATCHes.
fn client(registry: &str, credentials: Option<Credentials>) -> Client {
    Client::builder(registry)
        .plain_http(true)
        .credentials(credentials)
        .retries(4, Duration::from_millis(10), Duration::from_millis(200))
        .chunking(64 << 10, 40 << 10)
        .build()
        .unwrap()
}

async fn empty_layout() -> Layout {
    Layout::create(MemoryStore::new()).await.unwrap()
}

/// An image manifest for `arch` with these layers, written by hand.
pub(crate) async fn image(layout: &Layout, arch: &str, layers: &[Vec<u8>]) -> Descriptor {
    let mut layer_descriptors = Vec::new();
    let mut diff_ids = Vec::new();
    for layer in layers {
        let d = layout.put_blob(LAYER, layer).await.unwrap();
        diff_ids.push(d.digest().to_string());
        layer_descriptors.push(json!({
            "mediaType": LAYER, "digest": d.digest().to_string(), "size": d.size()
        }));
    }
    let config = json!({
        "architecture": arch, "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids}
    });
    let config = layout
        .put_blob(
            "application/vnd.oci.image.config.v1+json",
            &serde_json::to_vec(&config).unwrap(),
        )
        .await
        .unwrap();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config.digest().to_string(), "size": config.size()
        },
        "layers": layer_descriptors,
    });
    layout
        .put_blob(OCI_MANIFEST, &serde_json::to_vec(&manifest).unwrap())
        .await
        .unwrap()
}

/// A two-platform index: amd64 with three layers (one of 300 KiB, pushed in chunks), arm64
/// with two (one shared with amd64). Tagged `v1`.
async fn multi_arch(layout: &Layout) -> Descriptor {
    let shared = data(20_000, 1);
    let amd64 = image(
        layout,
        "amd64",
        &[shared.clone(), data(300_000, 2), data(1_000, 3)],
    )
    .await;
    let arm64 = image(layout, "arm64", &[shared, data(150_000, 4)]).await;
    let entry = |d: &Descriptor, arch: &str| {
        json!({
            "mediaType": OCI_MANIFEST, "digest": d.digest().to_string(), "size": d.size(),
            "platform": {"architecture": arch, "os": "linux"}
        })
    };
    let index = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [entry(&amd64, "amd64"), entry(&arm64, "arm64")],
    });
    let index = layout
        .put_blob(OCI_INDEX, &serde_json::to_vec(&index).unwrap())
        .await
        .unwrap();
    layout.set_tag("v1", &index).await.unwrap();
    index
}

async fn digests(store: &dyn Store) -> Vec<Digest> {
    let mut all: Vec<Digest> = store.list().map(|d| d.unwrap()).collect().await;
    all.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    all
}

/// Every blob of `a` is in `b` with the same bytes, and `b` holds nothing else.
async fn assert_same_blobs(a: &Layout, b: &Layout) {
    let left = digests(a.store()).await;
    assert_eq!(left, digests(b.store()).await);
    for digest in left {
        assert_eq!(
            a.store().get_bytes(&digest, 1 << 30).await.unwrap(),
            b.store().get_bytes(&digest, 1 << 30).await.unwrap(),
            "{digest}"
        );
    }
}

#[tokio::test]
async fn push_then_pull_a_multi_arch_index_byte_for_byte() {
    let server = Server::start(registry(Config::default())).await;
    let source = empty_layout().await;
    let index = multi_arch(&source).await;
    let client = client(&addr(&server), None);
    let pushed = client
        .push(&source, &index, "team/app", Some("v1"), &PushOptions::new())
        .await
        .unwrap();
    // Two configs, four distinct layers (one shared).
    assert_eq!(pushed.blobs, 6, "{pushed:?}");
    assert_eq!(pushed.transferred, 6);
    assert_eq!(pushed.manifests, 3);

    let destination = empty_layout().await;
    let pulled = client
        .pull("team/app", "v1", &destination, "copy", &PullOptions::new())
        .await
        .unwrap();
    assert_eq!(pulled.transferred, 6);
    assert_eq!(pulled.manifests, 3);
    assert_eq!(
        destination.resolve("copy").await.unwrap().digest(),
        index.digest()
    );
    assert_same_blobs(&source, &destination).await;

    // Again: everything is present on both sides, nothing moves.
    let again = client
        .push(&source, &index, "team/app", Some("v1"), &PushOptions::new())
        .await
        .unwrap();
    assert_eq!((again.skipped, again.transferred), (6, 0));
    let again = client
        .pull("team/app", "v1", &destination, "copy", &PullOptions::new())
        .await
        .unwrap();
    assert_eq!((again.skipped, again.transferred), (6, 0));

    // By digest, and the tags the registry lists.
    let by_digest = empty_layout().await;
    client
        .pull(
            "team/app",
            index.digest().as_ref(),
            &by_digest,
            "d",
            &PullOptions::new(),
        )
        .await
        .unwrap();
    assert_same_blobs(&source, &by_digest).await;
    assert_eq!(
        client.tags("team/app").await.unwrap(),
        vec!["v1".to_string()]
    );
    // A missing tag names the typed operation, and says what is missing without the method.
    let missing = client
        .pull("team/app", "nope", &by_digest, "x", &PullOptions::new())
        .await
        .unwrap_err();
    assert!(
        matches!(
            &missing,
            Error::NotFound { operation, repository, .. }
                if **operation == Operation::PullManifest { reference: "nope".into() }
                    && repository == "team/app"
        ),
        "{missing:?}"
    );
    assert_eq!(
        missing.to_string(),
        format!(
            "registry {} has no manifest nope in repository team/app",
            client.registry()
        )
    );
    server.stop().await;
}

#[tokio::test]
async fn pull_picks_one_platform_out_of_an_index() {
    let server = Server::start(registry(Config::default())).await;
    let source = empty_layout().await;
    let index = multi_arch(&source).await;
    let client = client(&addr(&server), None);
    client
        .push(&source, &index, "app", Some("v1"), &PushOptions::new())
        .await
        .unwrap();
    let destination = empty_layout().await;
    let arm = ocikit_digest::platform::parse("linux/arm64").unwrap();
    let report = client
        .pull(
            "app",
            "v1",
            &destination,
            "arm",
            &PullOptions::new().with_platform(Some(PlatformQuery::new(&arm))),
        )
        .await
        .unwrap();
    assert_eq!(report.blobs, 3, "config and two layers");
    assert_eq!(report.manifests, 1);
    let tagged = destination.resolve("arm").await.unwrap();
    let resolved = ocikit_layout::resolve(&destination, &tagged, &PlatformQuery::new(&arm))
        .await
        .unwrap();
    assert_eq!(resolved.platform().architecture().to_string(), "arm64");
    let riscv = ocikit_digest::platform::parse("linux/riscv64").unwrap();
    let err = client
        .pull(
            "app",
            "v1",
            &destination,
            "none",
            &PullOptions::new().with_platform(Some(PlatformQuery::new(&riscv))),
        )
        .await
        .unwrap_err();
    match err {
        Error::PlatformNotFound { available, .. } => {
            assert_eq!(available, vec!["linux/amd64", "linux/arm64"]);
        }
        other => panic!("{other:?}"),
    }
    server.stop().await;
}

fn users() -> Users {
    let mut users = Users::new();
    let alice = bcrypt::hash("alice-pw", 4).unwrap();
    users
        .add_htpasswd(&format!("alice:{alice}\n"), Access::ReadWrite, "rw")
        .unwrap();
    users
}

#[tokio::test]
async fn basic_auth_with_htpasswd_users() {
    let server = Server::start(registry(Config::default().users(Some(users())))).await;
    let source = empty_layout().await;
    let manifest = image(&source, "amd64", &[data(5_000, 9)]).await;

    let anonymous = client(&addr(&server), None);
    let err = anonymous
        .push(
            &source,
            &manifest,
            "private",
            Some("v1"),
            &PushOptions::new(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Unauthorized { status: 401, .. }),
        "{err:?}"
    );
    let wrong = client(&addr(&server), Credentials::parse("alice:nope"));
    let err = wrong
        .push(
            &source,
            &manifest,
            "private",
            Some("v1"),
            &PushOptions::new(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unauthorized { .. }), "{err:?}");
    assert!(err.to_string().contains(&addr(&server)), "{err}");
    assert!(err.to_string().contains("private"), "{err}");

    let alice = client(&addr(&server), Credentials::parse("alice:alice-pw"));
    alice
        .push(
            &source,
            &manifest,
            "private",
            Some("v1"),
            &PushOptions::new(),
        )
        .await
        .unwrap();
    let destination = empty_layout().await;
    alice
        .pull("private", "v1", &destination, "v1", &PullOptions::new())
        .await
        .unwrap();
    assert_same_blobs(&source, &destination).await;
    server.stop().await;
}

/// With anonymous reads, `/v2/` challenges anonymous clients, but an anonymous client
/// still pulls (it goes on with the request and does not stop at the challenge), and a
/// client with credentials pushes.
#[tokio::test]
async fn anonymous_read_pulls_without_credentials_and_pushes_with_them() {
    let config = Config::default().users(Some(users())).anonymous_read(true);
    let server = Server::start(registry(config)).await;
    let source = empty_layout().await;
    let manifest = image(&source, "amd64", &[data(5_000, 2), data(90_000, 3)]).await;
    let alice = client(&addr(&server), Credentials::parse("alice:alice-pw"));
    alice.ping().await.unwrap();
    alice
        .push(
            &source,
            &manifest,
            "public",
            Some("v1"),
            &PushOptions::new(),
        )
        .await
        .unwrap();

    let anonymous = client(&addr(&server), None);
    let err = anonymous.ping().await.unwrap_err();
    assert!(
        matches!(err, Error::Unauthorized { status: 401, .. }),
        "{err:?}"
    );
    assert_eq!(anonymous.tags("public").await.unwrap(), vec!["v1"]);
    let destination = empty_layout().await;
    anonymous
        .pull("public", "v1", &destination, "v1", &PullOptions::new())
        .await
        .unwrap();
    assert_same_blobs(&source, &destination).await;
    let subject: Digest = manifest.digest().to_string().parse().unwrap();
    assert!(
        anonymous
            .referrers("public", &subject, None)
            .await
            .unwrap()
            .is_empty()
    );
    let err = anonymous
        .push(
            &source,
            &manifest,
            "public",
            Some("v2"),
            &PushOptions::new(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Unauthorized { status: 401, .. }),
        "{err:?}"
    );
    server.stop().await;
}

/// The token endpoint and the registry guard of the bearer test.
#[derive(Default)]
struct Tokens {
    port: Mutex<u16>,
    /// Token -> the scopes it grants.
    issued: Mutex<HashMap<String, Vec<String>>>,
    /// Token requests served.
    requests: AtomicUsize,
    /// Requests that reached the registry with a Basic header (must be none).
    basic_seen: AtomicUsize,
    /// Token requests still to answer with 503.
    failures: AtomicUsize,
}

/// `GET /token?service=..&scope=..`: alice's credentials get any scope asked for.
async fn token_endpoint(state: Arc<Tokens>, req: Request) -> Response {
    if state
        .failures
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    state.requests.fetch_add(1, Ordering::SeqCst);
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("alice:alice-pw")
    );
    if req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        != Some(&expected)
    {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let query = req.uri().query().unwrap_or("");
    let mut scopes = Vec::new();
    let mut service = None;
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        match k.as_ref() {
            "scope" => scopes.push(v.to_string()),
            "service" => service = Some(v.to_string()),
            _ => {}
        }
    }
    assert_eq!(service.as_deref(), Some("ocikit-test"));
    let token = format!("t{}", uuid::Uuid::new_v4().simple());
    state.issued.lock().unwrap().insert(token.clone(), scopes);
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            json!({"token": token, "expires_in": 300}).to_string(),
        ))
        .unwrap()
}

/// The repository a `/v2/...` path names.
fn repository_of(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/v2/")?;
    ["/blobs/", "/manifests/", "/tags/"]
        .iter()
        .filter_map(|marker| rest.rfind(marker).map(|i| rest[..i].to_string()))
        .max_by_key(String::len)
}

/// Lets a request through only with a bearer token granting its scope; otherwise a 401
/// challenge naming the token endpoint.
async fn bearer_guard(State(state): State<Arc<Tokens>>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let Some(repository) = repository_of(&path) else {
        return next.run(req).await;
    };
    let action = if req.method() == "GET" || req.method() == "HEAD" {
        "pull"
    } else {
        "pull,push"
    };
    let needed = format!("repository:{repository}:{action}");
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if presented
        .as_deref()
        .is_some_and(|p| p.starts_with("Basic "))
    {
        state.basic_seen.fetch_add(1, Ordering::SeqCst);
    }
    let granted = presented
        .as_deref()
        .and_then(|p| p.strip_prefix("Bearer "))
        .and_then(|t| state.issued.lock().unwrap().get(t).cloned())
        .is_some_and(|scopes| {
            scopes.iter().any(|s| {
                s == &needed
                    || (action == "pull" && s == &format!("repository:{repository}:pull,push"))
            })
        });
    if granted {
        return next.run(req).await;
    }
    let port = *state.port.lock().unwrap();
    Response::builder()
        .status(StatusCode::UNAUTHORIZED)
        .header(
            header::WWW_AUTHENTICATE,
            format!(
                r#"Bearer realm="http://127.0.0.1:{port}/token",service="ocikit-test",scope="{needed}""#
            ),
        )
        .body(Body::empty())
        .unwrap()
}

/// Serves `app` on an ephemeral loopback port; returns `host:port`.
async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.ok();
    });
    addr.to_string()
}

#[tokio::test]
async fn bearer_tokens_are_fetched_per_scope_and_reused() {
    let state = Arc::new(Tokens::default());
    let registry = registry(Config::default());
    let app = registry
        .router()
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            bearer_guard,
        ))
        .route(
            "/token",
            axum::routing::get({
                let state = state.clone();
                move |req: Request| token_endpoint(state.clone(), req)
            }),
        );
    let addr = serve(app).await;
    *state.port.lock().unwrap() = addr.rsplit(':').next().unwrap().parse().unwrap();

    let source = empty_layout().await;
    let index = multi_arch(&source).await;

    let anonymous = client(&addr, None);
    let err = anonymous
        .push(&source, &index, "team/app", Some("v1"), &PushOptions::new())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unauthorized { .. }), "{err:?}");

    let alice = client(&addr, Credentials::parse("alice:alice-pw"));
    alice
        .push(&source, &index, "team/app", Some("v1"), &PushOptions::new())
        .await
        .unwrap();
    // Two scopes (pull for the HEADs, pull,push for uploads), one token each, reused for
    // every one of the dozens of requests the push made.
    let after_push = state.requests.load(Ordering::SeqCst);
    assert!(after_push <= 1 + 2, "{after_push} token requests");
    let destination = empty_layout().await;
    alice
        .pull("team/app", "v1", &destination, "v1", &PullOptions::new())
        .await
        .unwrap();
    assert_eq!(
        state.requests.load(Ordering::SeqCst),
        after_push,
        "pull token reused"
    );
    assert_same_blobs(&source, &destination).await;
    // A new client (no cache) needs one token for a pull of another repository's scope.
    let fresh = client(&addr, Credentials::parse("alice:alice-pw"));
    fresh.tags("team/app").await.unwrap();
    assert_eq!(state.requests.load(Ordering::SeqCst), after_push + 1);
    assert_eq!(
        state.basic_seen.load(Ordering::SeqCst),
        0,
        "basic credentials only go to the realm"
    );
    // A token endpoint answering 503 twice is retried.
    state.failures.store(2, Ordering::SeqCst);
    let retried = client(&addr, Credentials::parse("alice:alice-pw"));
    retried.tags("team/app").await.unwrap();
    assert_eq!(state.failures.load(Ordering::SeqCst), 0);
}

/// A fake registry serving fixed responses per path.
type Routes = Arc<HashMap<String, (HeaderMap, Bytes)>>;

async fn fixed(routes: Routes, req: Request) -> Response {
    match routes.get(req.uri().path()) {
        Some((headers, body)) => {
            let mut response = Response::new(Body::from(body.clone()));
            *response.headers_mut() = headers.clone();
            response
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (k, v) in pairs {
        map.insert(
            header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    map
}

fn manifest_json(layer: &[u8], config: &[u8]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": Digest::sha256(config).to_string(), "size": config.len()},
        "layers": [{"mediaType": LAYER, "digest": Digest::sha256(layer).to_string(), "size": layer.len()}],
    }))
    .unwrap()
}

#[tokio::test]
async fn wrong_bytes_under_the_right_digest_are_refused_and_nothing_is_stored() {
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let good_layer = data(10_000, 7);
    let good = manifest_json(&good_layer, config);
    let other = manifest_json(&data(10_000, 8), config);
    let good_digest = Digest::sha256(&good);
    let mut evil_layer = good_layer.clone();
    evil_layer[5_000] ^= 1;
    let layer_digest = Digest::sha256(&good_layer);
    let mut routes = HashMap::new();
    let manifest_headers = |digest: &Digest| {
        headers(&[
            ("content-type", OCI_MANIFEST),
            ("docker-content-digest", digest.as_str()),
        ])
    };
    // The tag and the digest both answer with another manifest's bytes, claiming the digest.
    routes.insert(
        "/v2/evil/manifests/v1".to_string(),
        (manifest_headers(&good_digest), Bytes::from(other.clone())),
    );
    routes.insert(
        format!("/v2/evil/manifests/{good_digest}"),
        (manifest_headers(&good_digest), Bytes::from(other)),
    );
    // A good manifest whose layer comes back with one bit flipped.
    routes.insert(
        "/v2/evil/manifests/v2".to_string(),
        (manifest_headers(&good_digest), Bytes::from(good.clone())),
    );
    routes.insert(
        format!("/v2/evil/blobs/{}", Digest::sha256(config)),
        (headers(&[]), Bytes::from_static(config)),
    );
    routes.insert(
        format!("/v2/evil/blobs/{layer_digest}"),
        (
            headers(&[("docker-content-digest", layer_digest.as_str())]),
            Bytes::from(evil_layer),
        ),
    );
    let routes: Routes = Arc::new(routes);
    let app = axum::Router::new().fallback({
        let routes = routes.clone();
        move |req: Request| fixed(routes.clone(), req)
    });
    let addr = serve(app).await;
    let client = client(&addr, None);
    let layout = empty_layout().await;
    for reference in ["v1", good_digest.as_str()] {
        let err = client
            .pull("evil", reference, &layout, "x", &PullOptions::new())
            .await
            .unwrap_err();
        match err {
            Error::ContentMismatch { expected, .. } => assert_eq!(*expected, good_digest),
            other => panic!("{reference}: {other:?}"),
        }
    }
    let err = client
        .pull("evil", "v2", &layout, "x", &PullOptions::new())
        .await
        .unwrap_err();
    match &err {
        Error::ContentMismatch { expected, .. } => assert_eq!(**expected, layer_digest),
        other => panic!("{other:?}"),
    }
    assert!(!layout.store().exists(&layer_digest).await.unwrap());
    assert!(
        !layout.store().exists(&good_digest).await.unwrap(),
        "no manifest without its blobs"
    );
    assert!(layout.tags().await.unwrap().is_empty());
}

/// A pull into a filesystem layout (downloads kept as partial files, chunks handed over
/// without a copy) of a 5 MiB layer sent in many chunks without a `Content-Length`: one bit
/// flipped in its fourth MiB, one byte short, one byte too many. Each is refused by what it
/// is, and no blob, manifest or tag appears in the layout; a corrupt or overlong download
/// leaves no partial file either (a short one is kept to resume from, outside `blobs/`).
#[tokio::test]
async fn a_corrupt_short_or_long_blob_in_many_chunks_is_refused_and_the_layout_stays_empty() {
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let layer = data(5 << 20, 9);
    let layer_digest = Digest::sha256(&layer);
    let manifest = manifest_json(&layer, config);
    let manifest_digest = Digest::sha256(&manifest);
    let mut corrupt = layer.clone();
    corrupt[(3 << 20) + 5] ^= 1;
    let short = layer[..layer.len() - 1].to_vec();
    let mut long = layer.clone();
    long.push(0);
    let mut routes = HashMap::new();
    for (repository, body) in [("corrupt", corrupt), ("short", short), ("long", long)] {
        routes.insert(
            format!("/v2/{repository}/manifests/v1"),
            (
                headers(&[("content-type", OCI_MANIFEST)]),
                Bytes::from(manifest.clone()),
            ),
        );
        routes.insert(
            format!("/v2/{repository}/blobs/{}", Digest::sha256(config)),
            (headers(&[]), Bytes::from_static(config)),
        );
        routes.insert(
            format!("/v2/{repository}/blobs/{layer_digest}"),
            (headers(&[]), Bytes::from(body)),
        );
    }
    let routes: Routes = Arc::new(routes);
    let app = axum::Router::new().fallback(move |req: Request| {
        let routes = routes.clone();
        async move {
            let Some((headers, body)) = routes.get(req.uri().path()).cloned() else {
                return StatusCode::NOT_FOUND.into_response();
            };
            // 64 KiB at a time, streamed (no Content-Length to check up front).
            let chunks: Vec<Result<Bytes, std::io::Error>> = (0..body.len())
                .step_by(64 << 10)
                .map(|at| Ok(body.slice(at..body.len().min(at + (64 << 10)))))
                .collect();
            let mut response = Response::new(Body::from_stream(futures::stream::iter(chunks)));
            *response.headers_mut() = headers;
            response
        }
    });
    let addr = serve(app).await;
    let client = client(&addr, None);
    for repository in ["corrupt", "short", "long"] {
        let dir = tempfile::tempdir().unwrap();
        let store = ocikit_store::FsStore::open(dir.path().join("layout"))
            .await
            .unwrap();
        let partial = store.partials().path(&layer_digest);
        let layout = Layout::create(store).await.unwrap();
        let refused = client
            .pull(repository, "v1", &layout, "x", &PullOptions::new())
            .await
            .unwrap_err();
        match (repository, &refused) {
            ("corrupt", Error::ContentMismatch { expected, .. }) => {
                assert_eq!(**expected, layer_digest);
            }
            ("short", Error::ContentSize { actual, .. }) => {
                assert_eq!(*actual, layer.len() as u64 - 1);
            }
            ("long", Error::ContentSize { actual, .. }) => {
                assert!(*actual > layer.len() as u64, "{refused:?}");
            }
            _ => panic!("{repository}: {refused:?}"),
        }
        assert!(
            !layout.store().exists(&layer_digest).await.unwrap(),
            "{repository}"
        );
        assert!(
            !layout.store().exists(&manifest_digest).await.unwrap(),
            "{repository}: no manifest without its blobs"
        );
        assert!(layout.tags().await.unwrap().is_empty(), "{repository}");
        assert!(
            std::fs::read_dir(dir.path().join("layout/blobs/sha256"))
                .map(|entries| entries
                    .flatten()
                    .all(|e| e.file_name().to_str() == Some(Digest::sha256(config).encoded())))
                .unwrap_or(true),
            "{repository}: only the config (verified) may be in blobs/"
        );
        if repository == "short" {
            let kept = std::fs::metadata(&partial).map_or(0, |m| m.len());
            assert!(kept < layer.len() as u64, "{repository}: {kept}");
        } else {
            assert!(!partial.exists(), "{repository}: {}", partial.display());
        }
    }
}

/// Counts and answers: a registry behind basic auth whose blobs redirect to a second
/// server (another origin), which records the `Authorization` headers it receives.
#[derive(Default)]
struct Flaky {
    manifest_gets: AtomicUsize,
    blob_gets: AtomicUsize,
    ranges: Mutex<Vec<String>>,
    cdn_authorization: Mutex<Vec<Option<String>>>,
}

#[tokio::test]
async fn retries_resumes_and_keeps_credentials_off_redirects() {
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#
            .to_vec();
    let layer = data(200_000, 11);
    let manifest = manifest_json(&layer, &config);
    let state = Arc::new(Flaky::default());

    // The "CDN": serves the layer; the first GET is cut off halfway.
    let cdn = axum::Router::new().fallback({
        let state = state.clone();
        let layer = Bytes::from(layer.clone());
        move |req: Request| {
            let state = state.clone();
            let layer = layer.clone();
            async move {
                let auth = req
                    .headers()
                    .get(header::AUTHORIZATION)
                    .map(|v| v.to_str().unwrap().to_string());
                state.cdn_authorization.lock().unwrap().push(auth);
                let n = state.blob_gets.fetch_add(1, Ordering::SeqCst);
                if let Some(range) = req.headers().get(header::RANGE) {
                    let range = range.to_str().unwrap().to_string();
                    state.ranges.lock().unwrap().push(range.clone());
                    let start: usize = range
                        .trim_start_matches("bytes=")
                        .trim_end_matches('-')
                        .parse()
                        .unwrap();
                    return Response::builder()
                        .status(StatusCode::PARTIAL_CONTENT)
                        .header(
                            header::CONTENT_RANGE,
                            format!("bytes {start}-{}/{}", layer.len() - 1, layer.len()),
                        )
                        .body(Body::from(layer.slice(start..)))
                        .unwrap();
                }
                if n == 0 {
                    let half = layer.slice(..layer.len() / 2);
                    // Half the bytes go out; then the connection drops.
                    let cut = futures::stream::once(async move { Ok::<_, std::io::Error>(half) })
                        .chain(futures::stream::once(async {
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            Err(std::io::Error::other("cut"))
                        }));
                    return Response::builder()
                        .header(header::CONTENT_LENGTH, layer.len())
                        .body(Body::from_stream(cut))
                        .unwrap();
                }
                Response::new(Body::from(layer))
            }
        }
    });
    let cdn_addr = serve(cdn).await;

    let expected_auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("alice:alice-pw")
    );
    let registry_app = axum::Router::new().fallback({
        let state = state.clone();
        let manifest = Bytes::from(manifest.clone());
        let config = Bytes::from(config.clone());
        let layer_digest = Digest::sha256(&layer);
        move |req: Request| {
            let state = state.clone();
            let manifest = manifest.clone();
            let config = config.clone();
            let expected_auth = expected_auth.clone();
            let cdn_addr = cdn_addr.clone();
            let layer_digest = layer_digest.clone();
            async move {
                if req
                    .headers()
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    != Some(expected_auth.as_str())
                {
                    return Response::builder()
                        .status(StatusCode::UNAUTHORIZED)
                        .header(header::WWW_AUTHENTICATE, r#"Basic realm="flaky""#)
                        .body(Body::empty())
                        .unwrap();
                }
                let path = req.uri().path();
                if path == "/v2/flaky/manifests/v1" {
                    // Two 503s before the manifest.
                    if state.manifest_gets.fetch_add(1, Ordering::SeqCst) < 2 {
                        return Response::builder()
                            .status(StatusCode::SERVICE_UNAVAILABLE)
                            .header(header::RETRY_AFTER, "0")
                            .body(Body::empty())
                            .unwrap();
                    }
                    return Response::builder()
                        .header(header::CONTENT_TYPE, OCI_MANIFEST)
                        .body(Body::from(manifest))
                        .unwrap();
                }
                if path == format!("/v2/flaky/blobs/{}", Digest::sha256(&config)) {
                    return Response::new(Body::from(config));
                }
                if path == format!("/v2/flaky/blobs/{layer_digest}") {
                    return Response::builder()
                        .status(StatusCode::TEMPORARY_REDIRECT)
                        .header(
                            header::LOCATION,
                            format!("http://{cdn_addr}/cdn/{layer_digest}"),
                        )
                        .body(Body::empty())
                        .unwrap();
                }
                StatusCode::NOT_FOUND.into_response()
            }
        }
    });
    let addr = serve(registry_app).await;
    let client = client(&addr, Credentials::parse("alice:alice-pw"));
    let layout = empty_layout().await;
    let report = client
        .pull("flaky", "v1", &layout, "v1", &PullOptions::new())
        .await
        .unwrap();
    assert_eq!(report.transferred, 2);
    assert_eq!(
        state.manifest_gets.load(Ordering::SeqCst),
        3,
        "two 503s, then the manifest"
    );
    assert_eq!(
        layout
            .store()
            .get_bytes(&Digest::sha256(&layer), 1 << 20)
            .await
            .unwrap()
            .unwrap(),
        Bytes::from(layer.clone())
    );
    assert_eq!(
        *state.ranges.lock().unwrap(),
        vec![format!("bytes={}-", layer.len() / 2)],
        "the cut download resumed where it stopped"
    );
    let seen = state.cdn_authorization.lock().unwrap().clone();
    assert!(!seen.is_empty());
    assert!(
        seen.iter().all(Option::is_none),
        "credentials leaked: {seen:?}"
    );
}

#[tokio::test]
async fn pushes_mount_blobs_from_another_repository() {
    let server = Server::start(registry(Config::default())).await;
    let source = empty_layout().await;
    let index = multi_arch(&source).await;
    let client = client(&addr(&server), None);
    client
        .push(&source, &index, "base", Some("v1"), &PushOptions::new())
        .await
        .unwrap();
    let report = client
        .push(
            &source,
            &index,
            "derived",
            Some("v1"),
            &PushOptions::new().with_mount_from(Some("base".into())),
        )
        .await
        .unwrap();
    assert_eq!((report.mounted, report.transferred), (6, 0), "{report:?}");
    let destination = empty_layout().await;
    client
        .pull("derived", "v1", &destination, "v1", &PullOptions::new())
        .await
        .unwrap();
    assert_same_blobs(&source, &destination).await;
    server.stop().await;
}

#[tokio::test]
async fn https_with_a_trusted_root_and_refused_without_it() {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).unwrap();
    let tls = ocikit_registry::TlsConfig::from_pem_files(
        &dir.path().join("cert.pem"),
        &dir.path().join("key.pem"),
    )
    .unwrap();
    let registry = registry(Config::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let serving = registry.clone();
    tokio::spawn(async move {
        serving
            .serve_tls(listener, &tls, std::future::pending())
            .await
            .ok();
    });
    let source = empty_layout().await;
    let manifest = image(&source, "amd64", &[data(3_000, 5)]).await;
    let untrusted = Client::builder(&addr)
        .retries(0, Duration::from_millis(1), Duration::from_millis(1))
        .build()
        .unwrap();
    let err = untrusted
        .push(&source, &manifest, "tls", Some("v1"), &PushOptions::new())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Certificate { .. }), "{err:?}");
    let trusted = Client::builder(&addr)
        .add_root_certificate(cert.der().clone())
        .build()
        .unwrap();
    trusted
        .push(&source, &manifest, "tls", Some("v1"), &PushOptions::new())
        .await
        .unwrap();
    let destination = empty_layout().await;
    trusted
        .pull("tls", "v1", &destination, "v1", &PullOptions::new())
        .await
        .unwrap();
    assert_same_blobs(&source, &destination).await;
}

/// A registry serving HTTPS on loopback with a fresh self-signed certificate for
/// 127.0.0.1, whose PEM is written to `dir/cert.pem`; its address and the certificate.
async fn tls_registry(dir: &std::path::Path) -> (String, rcgen::Certificate) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
    let tls =
        ocikit_registry::TlsConfig::from_pem_files(&dir.join("cert.pem"), &dir.join("key.pem"))
            .unwrap();
    let registry = registry(Config::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        registry
            .serve_tls(listener, &tls, std::future::pending())
            .await
            .ok();
    });
    (addr, cert)
}

/// What skopeo's TLS flags mean, as client options: by default a self-signed certificate is
/// refused (at once, without retries); insecure accepts it; a CA file or a certificate
/// directory holding it as `ca.crt` trusts it; unusable files are refused when building.
#[tokio::test]
async fn tls_verification_off_ca_files_and_certificate_directories() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, _cert) = tls_registry(dir.path()).await;
    let source = empty_layout().await;
    let manifest = image(&source, "amd64", &[data(3_000, 7)]).await;
    let slow_retries = |b: ocikit_client::ClientBuilder| {
        b.retries(4, Duration::from_secs(2), Duration::from_secs(2))
    };

    let started = std::time::Instant::now();
    let err = slow_retries(Client::builder(&addr))
        .build()
        .unwrap()
        .push(&source, &manifest, "tls", Some("v1"), &PushOptions::new())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Certificate { .. }), "{err:?}");
    assert!(err.to_string().contains("certificate"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "a certificate failure was retried"
    );

    let insecure = Client::builder(&addr).allow_insecure(true).build().unwrap();
    insecure
        .push(&source, &manifest, "tls", Some("v1"), &PushOptions::new())
        .await
        .unwrap();

    let by_file = Client::builder(&addr)
        .ca_file(dir.path().join("cert.pem"))
        .build()
        .unwrap();
    let destination = empty_layout().await;
    by_file
        .pull("tls", "v1", &destination, "v1", &PullOptions::new())
        .await
        .unwrap();
    assert_same_blobs(&source, &destination).await;

    let certs = dir.path().join("certs.d");
    std::fs::create_dir(&certs).unwrap();
    std::fs::copy(dir.path().join("cert.pem"), certs.join("ca.crt")).unwrap();
    std::fs::write(certs.join("README"), "not a certificate, and not read").unwrap();
    let by_dir = Client::builder(&addr).cert_dir(&certs).build().unwrap();
    assert_eq!(by_dir.tags("tls").await.unwrap(), vec!["v1"]);

    // Files that cannot be used are refused when building, naming the file.
    std::fs::write(dir.path().join("garbage.pem"), "hello\n").unwrap();
    let lonely = dir.path().join("lonely.d");
    std::fs::create_dir(&lonely).unwrap();
    std::fs::copy(dir.path().join("cert.pem"), lonely.join("client.cert")).unwrap();
    let bad_crt = dir.path().join("bad.d");
    std::fs::create_dir(&bad_crt).unwrap();
    std::fs::write(
        bad_crt.join("ca.crt"),
        "-----BEGIN CERTIFICATE-----\nnope\n",
    )
    .unwrap();
    for (builder, expect) in [
        (
            Client::builder(&addr).ca_file(dir.path().join("garbage.pem")),
            "garbage.pem",
        ),
        (
            Client::builder(&addr).ca_file(dir.path().join("missing.pem")),
            "missing.pem",
        ),
        (Client::builder(&addr).cert_dir(&lonely), "no matching .key"),
        (Client::builder(&addr).cert_dir(&bad_crt), "ca.crt"),
        (
            Client::builder(&addr).cert_dir(dir.path().join("nope.d")),
            "nope.d",
        ),
    ] {
        let err = builder.build().unwrap_err();
        assert!(matches!(err, Error::ClientSetup { .. }), "{err:?}");
        assert!(err.to_string().contains(expect), "{err}");
    }
}

/// A certificate directory's `NAME.cert` and `NAME.key` are presented to a registry that
/// asks for a client certificate (mutual TLS); without them the registry refuses the client.
#[tokio::test]
async fn client_certificates_from_a_certificate_directory() {
    let server_key = rcgen::KeyPair::generate().unwrap();
    let server_cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .self_signed(&server_key)
        .unwrap();
    let client_key = rcgen::KeyPair::generate().unwrap();
    let client_cert = rcgen::CertificateParams::new(vec!["client.example".to_owned()])
        .unwrap()
        .self_signed(&client_key)
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut trusted_clients = rustls::RootCertStore::empty();
    trusted_clients.add(client_cert.der().clone()).unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(trusted_clients),
        provider.clone(),
    )
    .build()
    .unwrap();
    let server_key_der = rustls_pki_types::PrivatePkcs8KeyDer::from(server_key.serialize_der());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![server_cert.der().clone()], server_key_der.into())
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tls = ocikit_registry::TlsConfig::from_rustls(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let serving = registry(Config::default());
    tokio::spawn(async move {
        serving
            .serve_tls(listener, &tls, std::future::pending())
            .await
            .ok();
    });

    let dir = tempfile::tempdir().unwrap();
    let roots_only = dir.path().join("roots");
    std::fs::create_dir(&roots_only).unwrap();
    std::fs::write(roots_only.join("ca.crt"), server_cert.pem()).unwrap();
    let anonymous = Client::builder(&addr)
        .cert_dir(&roots_only)
        .retries(0, Duration::from_millis(1), Duration::from_millis(1))
        .build()
        .unwrap();
    assert!(
        anonymous.ping().await.is_err(),
        "served without a client certificate"
    );

    let with_identity = dir.path().join("identity");
    std::fs::create_dir(&with_identity).unwrap();
    std::fs::write(with_identity.join("ca.crt"), server_cert.pem()).unwrap();
    std::fs::write(with_identity.join("client.cert"), client_cert.pem()).unwrap();
    std::fs::write(with_identity.join("client.key"), client_key.serialize_pem()).unwrap();
    let client = Client::builder(&addr)
        .cert_dir(&with_identity)
        .build()
        .unwrap();
    client.ping().await.unwrap();
    let source = empty_layout().await;
    let manifest = image(&source, "amd64", &[data(2_000, 9)]).await;
    client
        .push(&source, &manifest, "mtls", Some("v1"), &PushOptions::new())
        .await
        .unwrap();
    let destination = empty_layout().await;
    client
        .pull("mtls", "v1", &destination, "v1", &PullOptions::new())
        .await
        .unwrap();
    assert_same_blobs(&source, &destination).await;

    // Two identities are one too many.
    std::fs::copy(
        with_identity.join("client.cert"),
        with_identity.join("other.cert"),
    )
    .unwrap();
    std::fs::copy(
        with_identity.join("client.key"),
        with_identity.join("other.key"),
    )
    .unwrap();
    let err = Client::builder(&addr)
        .cert_dir(&with_identity)
        .build()
        .unwrap_err();
    assert!(
        err.to_string().contains("more than one client certificate"),
        "{err}"
    );
}

/// A plain-HTTP registry: refused over HTTPS with an error that says it speaks plain HTTP
/// (at once, without retries); an insecure client finds out and speaks HTTP to it.
#[tokio::test]
async fn plain_http_registries_need_insecure_and_insecure_falls_back_to_http() {
    let server = Server::start(registry(Config::default())).await;
    let addr = addr(&server);
    let source = empty_layout().await;
    let manifest = image(&source, "amd64", &[data(3_000, 8)]).await;
    let started = std::time::Instant::now();
    let strict = Client::builder(&addr)
        .retries(4, Duration::from_secs(2), Duration::from_secs(2))
        .build()
        .unwrap();
    let err = strict
        .push(&source, &manifest, "plain", Some("v1"), &PushOptions::new())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotHttps { .. }), "{err:?}");
    assert!(err.to_string().contains("plain http"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "a plain-http answer was retried"
    );
    let err = strict.ping().await.unwrap_err();
    assert!(matches!(err, Error::NotHttps { .. }), "{err:?}");

    let insecure = Client::builder(&addr).allow_insecure(true).build().unwrap();
    insecure.ping().await.unwrap();
    insecure
        .push(&source, &manifest, "plain", Some("v1"), &PushOptions::new())
        .await
        .unwrap();
    let destination = empty_layout().await;
    insecure
        .pull("plain", "v1", &destination, "v1", &PullOptions::new())
        .await
        .unwrap();
    assert_same_blobs(&source, &destination).await;
    assert_eq!(insecure.tags("plain").await.unwrap(), vec!["v1"]);
    server.stop().await;
}

/// A registry on loopback that speaks plain HTTP/1.1, one request per connection, and
/// answers a TLS hello as `tls` says; it records what it was sent (`TLS` for a hello, else
/// the request line).
async fn plain_registry(tls: TlsAnswer) -> (String, Arc<Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut len = 0;
                loop {
                    match conn.read(&mut buf[len..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => len += n,
                    }
                    if buf[0] == 0x16 {
                        // A TLS record: a client hello.
                        log.lock().unwrap().push("TLS".to_string());
                        if tls == TlsAnswer::PlainText {
                            let _ = conn
                                .write_all(
                                    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                                )
                                .await;
                        }
                        return;
                    }
                    if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                let head = String::from_utf8_lossy(&buf[..len]).to_string();
                let line = head.lines().next().unwrap_or_default().to_string();
                log.lock().unwrap().push(line.clone());
                let body = if line.starts_with("GET /v2/plain/tags/list") {
                    r#"{"name":"plain","tags":["v1"]}"#
                } else {
                    "{}"
                };
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                     Docker-Distribution-API-Version: registry/2.0\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(response.as_bytes()).await;
            });
        }
    });
    (addr, seen)
}

/// How [`plain_registry`] answers a TLS hello.
#[derive(Clone, Copy, PartialEq, Eq)]
enum TlsAnswer {
    /// As a plain-HTTP server does: `400 Bad Request` in plain text.
    PlainText,
    /// By closing the connection: nothing shows that HTTP is spoken there.
    Close,
}

/// An insecure client finds a plain-HTTP registry from how it answers the TLS hello: one
/// HTTPS attempt, then the request itself over HTTP, with no `GET /v2/` in between. Where
/// the failed hello shows nothing (the connection closed), it asks `GET /v2/` over HTTP
/// first, as before.
#[tokio::test]
async fn insecure_clients_learn_plain_http_from_the_answer_to_the_tls_hello() {
    let (addr, seen) = plain_registry(TlsAnswer::PlainText).await;
    let insecure = Client::builder(&addr).allow_insecure(true).build().unwrap();
    assert_eq!(insecure.tags("plain").await.unwrap(), vec!["v1"]);
    assert_eq!(
        *seen.lock().unwrap(),
        ["TLS", "GET /v2/plain/tags/list HTTP/1.1"],
        "one TLS attempt, then the request over HTTP"
    );

    let (addr, seen) = plain_registry(TlsAnswer::Close).await;
    let insecure = Client::builder(&addr).allow_insecure(true).build().unwrap();
    assert_eq!(insecure.tags("plain").await.unwrap(), vec!["v1"]);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.first().map(String::as_str), Some("TLS"), "{seen:?}");
    assert!(
        seen.iter().any(|l| l.starts_with("GET /v2/ HTTP/1.1")),
        "no plain-text answer to the hello: HTTP is pinged first: {seen:?}"
    );
    assert!(
        seen.last().unwrap().starts_with("GET /v2/plain/tags/list"),
        "{seen:?}"
    );

    // A client that is not insecure refuses the plain-text answer and sends nothing else.
    let (addr, seen) = plain_registry(TlsAnswer::PlainText).await;
    let strict = Client::builder(&addr)
        .retries(0, Duration::from_millis(1), Duration::from_millis(1))
        .build()
        .unwrap();
    let err = strict.tags("plain").await.unwrap_err();
    assert!(matches!(err, Error::NotHttps { .. }), "{err:?}");
    assert_eq!(*seen.lock().unwrap(), ["TLS"]);
}

#[tokio::test]
async fn distribution_round_trips_a_multi_arch_index_with_chunked_blobs() {
    let Some(distribution) = Distribution::start() else {
        return;
    };
    let source = empty_layout().await;
    let index = multi_arch(&source).await;
    // 64 KiB monolithic limit, 40 KiB chunks: the 150 and 300 KB layers go in PATCHes.
    let client = client(distribution.addr(), None);
    let pushed = client
        .push(&source, &index, "team/app", Some("v1"), &PushOptions::new())
        .await
        .unwrap();
    assert_eq!((pushed.transferred, pushed.manifests), (6, 3));
    let mounted = client
        .push(
            &source,
            &index,
            "team/other",
            Some("v1"),
            &PushOptions::new().with_mount_from(Some("team/app".into())),
        )
        .await
        .unwrap();
    assert_eq!(mounted.mounted, 6, "{mounted:?}");
    for repository in ["team/app", "team/other"] {
        let destination = empty_layout().await;
        client
            .pull(repository, "v1", &destination, "v1", &PullOptions::new())
            .await
            .unwrap();
        assert_eq!(
            destination.resolve("v1").await.unwrap().digest(),
            index.digest()
        );
        assert_same_blobs(&source, &destination).await;
    }
    assert_eq!(
        client.tags("team/app").await.unwrap(),
        vec!["v1".to_string()]
    );
    distribution.stop();
}

/// An artifact manifest (empty config, one blob) whose subject is `subject`.
async fn artifact(
    layout: &Layout,
    subject: &Descriptor,
    artifact_type: &str,
    payload: &[u8],
) -> Descriptor {
    let config = layout
        .put_blob("application/vnd.oci.empty.v1+json", b"{}")
        .await
        .unwrap();
    let blob = layout.put_blob(artifact_type, payload).await.unwrap();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json",
                   "digest": config.digest().to_string(), "size": 2},
        "layers": [{"mediaType": artifact_type, "digest": blob.digest().to_string(), "size": blob.size()}],
        "subject": {"mediaType": subject.media_type().to_string(),
                    "digest": subject.digest().to_string(), "size": subject.size()},
        "annotations": {"org.example.note": payload.len().to_string()},
    });
    layout
        .put_blob(OCI_MANIFEST, &serde_json::to_vec(&manifest).unwrap())
        .await
        .unwrap()
}

/// Pushes an image and two artifacts about it (one twice), then lists its referrers.
async fn push_referrers(client: &Client) -> (Digest, Vec<Descriptor>) {
    let source = empty_layout().await;
    let subject = image(&source, "amd64", &[data(2_000, 21)]).await;
    client
        .push(&source, &subject, "signed", Some("v1"), &PushOptions::new())
        .await
        .unwrap();
    let sbom = artifact(
        &source,
        &subject,
        "application/vnd.example.sbom+json",
        b"sbom",
    )
    .await;
    let sig = artifact(
        &source,
        &subject,
        "application/vnd.example.sig",
        b"signature",
    )
    .await;
    for a in [&sbom, &sig, &sbom] {
        client
            .push(&source, a, "signed", None, &PushOptions::new())
            .await
            .unwrap();
    }
    let digest: Digest = subject.digest().to_string().parse().unwrap();
    let all = client.referrers("signed", &digest, None).await.unwrap();
    let sboms = client
        .referrers("signed", &digest, Some("application/vnd.example.sbom+json"))
        .await
        .unwrap();
    assert_eq!(sboms.len(), 1);
    assert_eq!(sboms[0].digest(), sbom.digest());
    assert_eq!(
        sboms[0].annotations().as_ref().unwrap()["org.example.note"],
        "4"
    );
    // The artifact pulls back by digest.
    let destination = empty_layout().await;
    client
        .pull(
            "signed",
            sig.digest().as_ref(),
            &destination,
            "sig",
            &PullOptions::new(),
        )
        .await
        .unwrap();
    (digest, all)
}

#[tokio::test]
async fn referrers_through_the_api_on_our_server() {
    let server = Server::start(registry(Config::default())).await;
    let client = client(&addr(&server), None);
    let (subject, all) = push_referrers(&client).await;
    assert_eq!(all.len(), 2, "{all:?}");
    // The server indexes referrers itself: no fallback tag was written.
    let tags = client.tags("signed").await.unwrap();
    assert!(!tags.contains(&ocikit_client::referrers::fallback_tag(&subject)));
    server.stop().await;
}

#[tokio::test]
async fn referrers_through_the_tag_schema_on_distribution() {
    let Some(distribution) = Distribution::start() else {
        return;
    };
    let client = client(distribution.addr(), None);
    let (subject, all) = push_referrers(&client).await;
    assert_eq!(all.len(), 2, "{all:?}");
    let tags = client.tags("signed").await.unwrap();
    assert!(
        tags.contains(&ocikit_client::referrers::fallback_tag(&subject)),
        "{tags:?}"
    );
    // No referrers for something else.
    assert!(
        client
            .referrers("signed", &Digest::sha256(b"other"), None)
            .await
            .unwrap()
            .is_empty()
    );
    distribution.stop();
}

/// Counts PATCHes and upload status queries; the second PATCH reaches the registry but its
/// answer is replaced by a 503, as if the connection had dropped after the registry took it.
#[derive(Default)]
struct LostAnswer {
    patches: AtomicUsize,
    status_queries: AtomicUsize,
}

async fn lose_second_patch_answer(
    State(state): State<Arc<LostAnswer>>,
    req: Request,
    next: Next,
) -> Response {
    let is_patch = req.method() == "PATCH";
    if req.method() == "GET" && req.uri().path().contains("/blobs/uploads/") {
        state.status_queries.fetch_add(1, Ordering::SeqCst);
    }
    let response = next.run(req).await;
    if is_patch && state.patches.fetch_add(1, Ordering::SeqCst) == 1 {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    response
}

#[tokio::test]
async fn a_chunked_push_resumes_from_the_sessions_range_after_a_lost_answer() {
    let state = Arc::new(LostAnswer::default());
    let registry = registry(Config::default());
    let app = registry
        .router()
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            lose_second_patch_answer,
        ));
    let addr = serve(app).await;
    let source = empty_layout().await;
    let manifest = image(&source, "amd64", &[data(200_000, 31)]).await;
    let client = client(&addr, None);
    let report = client
        .push(
            &source,
            &manifest,
            "chunks",
            Some("v1"),
            &PushOptions::new(),
        )
        .await
        .unwrap();
    assert_eq!(report.transferred, 2);
    // 200 KB in 40 KiB chunks is 5 PATCHes; the retried second one got 416.
    assert_eq!(state.patches.load(Ordering::SeqCst), 6);
    assert_eq!(state.status_queries.load(Ordering::SeqCst), 1);
    let destination = empty_layout().await;
    client
        .pull("chunks", "v1", &destination, "v1", &PullOptions::new())
        .await
        .unwrap();
    assert_same_blobs(&source, &destination).await;
}

async fn count_blob_gets(
    State(count): State<Arc<AtomicUsize>>,
    req: Request,
    next: Next,
) -> Response {
    if req.method() == "GET" && req.uri().path().contains("/blobs/sha256:") {
        count.fetch_add(1, Ordering::SeqCst);
    }
    next.run(req).await
}

#[tokio::test]
async fn concurrent_pulls_through_one_client_fetch_each_blob_once() {
    let gets = Arc::new(AtomicUsize::new(0));
    let registry = registry(Config::default());
    let app = registry
        .router()
        .layer(axum::middleware::from_fn_with_state(
            gets.clone(),
            count_blob_gets,
        ));
    let addr = serve(app).await;
    let source = empty_layout().await;
    let index = multi_arch(&source).await;
    let client = client(&addr, None);
    client
        .push(&source, &index, "app", Some("v1"), &PushOptions::new())
        .await
        .unwrap();
    let destination = empty_layout().await;
    let options = PullOptions::new();
    let (a, b, c) = tokio::join!(
        client.pull("app", "v1", &destination, "a", &options),
        client.pull("app", "v1", &destination, "b", &options),
        client.pull("app", index.digest().as_ref(), &destination, "c", &options),
    );
    let transferred = a.unwrap().transferred + b.unwrap().transferred + c.unwrap().transferred;
    assert_eq!(transferred, 6, "each blob downloaded by one of the pulls");
    assert_eq!(gets.load(Ordering::SeqCst), 6);
    assert_same_blobs(&source, &destination).await;
}
