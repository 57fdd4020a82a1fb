//! The endpoint handlers (SPEC B.2 end-1 .. end-14), behind one dispatcher that matches the
//! path at its end and validates names, digests and tags before any storage is touched.

use std::collections::BTreeMap;

use axum::body::Body;
use bytes::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use ocikit_digest::reference::{validate_name, validate_tag};
use ocikit_digest::document::Document;
use ocikit_digest::{Algorithm, Digest, descriptor, media_type};
use ocikit_store::StoreExt;
use serde_json::Value;

use crate::auth::{Access, Verdict};
use crate::error::{
    ApiError, ErrorCode, Failure, blob_unknown, digest_invalid, manifest_invalid, manifest_unknown,
    name_unknown, size_invalid, too_large, upload_invalid, upload_unknown,
};
use crate::live::{LiveUpload, Tee};
use crate::meta::{self, ManifestRecord, Referrer};
use crate::route::{self, Query, RangeRequest, Route};
use crate::upload::{self, BodyRules, Session, Uploads};
use crate::{Error, Registry, keys};

const DOCKER_CONTENT_DIGEST: HeaderName = HeaderName::from_static("docker-content-digest");
const DOCKER_UPLOAD_UUID: HeaderName = HeaderName::from_static("docker-upload-uuid");
const API_VERSION: HeaderName = HeaderName::from_static("docker-distribution-api-version");
const OCI_SUBJECT: HeaderName = HeaderName::from_static("oci-subject");
const OCI_TAG: HeaderName = HeaderName::from_static("oci-tag");
const OCI_FILTERS_APPLIED: HeaderName = HeaderName::from_static("oci-filters-applied");

/// Most `?tag=` parameters one manifest push may carry (the spec asks for at least 10).
const MAX_TAGS_PER_PUSH: usize = 100;

type Handled = Result<Response, Failure>;

/// A response under construction.
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Body,
}

fn reply(status: StatusCode) -> Reply {
    Reply {
        status,
        headers: HeaderMap::new(),
        body: Body::empty(),
    }
}

impl Reply {
    fn header(mut self, name: HeaderName, value: impl AsRef<str>) -> Reply {
        if let Ok(value) = HeaderValue::from_str(value.as_ref()) {
            self.headers.append(name, value);
        }
        self
    }

    fn json(self, value: &Value) -> Reply {
        self.header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(value.to_string()))
    }

    fn body(mut self, body: Body) -> Reply {
        self.body = body;
        self
    }

    fn done(self) -> Handled {
        Ok((self.status, self.headers, self.body).into_response())
    }
}

/// The one axum handler: every request comes here.
pub(crate) async fn handle(State(registry): State<Registry>, request: Request) -> Response {
    match dispatch(&registry, request).await {
        Ok(response) => response,
        Err(failure) => failure.into_response(),
    }
}

/// Logs every request once it is answered (target `ocikit_registry::access`), and the cause
/// chain of every 500.
pub(crate) async fn log_request(request: Request, next: axum::middleware::Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    if let Some(error) = response.extensions().get::<std::sync::Arc<Error>>() {
        tracing::error!(
            target: "ocikit_registry::access",
            %method, path, status, ms, error = %crate::error_chain(error.as_ref()),
            "request failed"
        );
    } else {
        tracing::info!(target: "ocikit_registry::access", %method, path, status, ms, "request");
    }
    response
}

/// `/healthz`: 200 when both stores answer [`Registry::check_stores`], 503 when one does not.
async fn health(registry: &Registry) -> Handled {
    match registry.check_stores().await {
        Ok(_) => reply(StatusCode::OK)
            .json(&serde_json::json!({"status": "ok"}))
            .done(),
        Err(e) => {
            tracing::warn!(error = %crate::error_chain(&e), "health check: the store failed");
            Ok((
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::CONTENT_TYPE, "application/json")],
                r#"{"status":"unavailable"}"#,
            )
                .into_response())
        }
    }
}

/// Whether the request may go on: credentials against [`crate::Config::users`], writes
/// against [`crate::Config::read_only`].
///
/// With [`crate::Config::anonymous_read`], reads without credentials go on, except the base
/// endpoint `/v2/`: clients such as skopeo ping it first and send credentials only if it
/// challenges them, so it always answers anonymous requests with the challenge (as
/// Distribution does), or those clients could never push.
async fn admit(
    registry: &Registry,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> Result<(), Failure> {
    let config = registry.config();
    let writes = !(method == Method::GET || method == Method::HEAD);
    if let Some(users) = &config.users {
        let credentials = headers
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes())
            .filter(|v| !crate::auth::is_empty_basic(v));
        let base = matches!(route::parse_path(path), Ok(Some(Route::Base)));
        let anonymous_ok = !writes && !base && config.anonymous_read && credentials.is_none();
        if !anonymous_ok {
            match users.check(credentials).await {
                Verdict::Allowed(Access::ReadWrite) => {}
                Verdict::Allowed(_) if !writes => {}
                Verdict::Allowed(_) => {
                    return Err(ApiError::new(
                        StatusCode::FORBIDDEN,
                        ErrorCode::Denied,
                        "this user may pull but not push or delete",
                    )
                    .into());
                }
                Verdict::Unauthenticated => {
                    return Err(ApiError::new(
                        StatusCode::UNAUTHORIZED,
                        ErrorCode::Unauthorized,
                        "authentication required",
                    )
                    .header(header::WWW_AUTHENTICATE, r#"Basic realm="ocikit""#)
                    .into());
                }
            }
        }
    }
    if writes && config.read_only {
        return Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::Unsupported,
            "the registry is read-only",
        )
        .header(header::ALLOW, "GET, HEAD")
        .into());
    }
    Ok(())
}

async fn dispatch(registry: &Registry, request: Request) -> Handled {
    let (parts, body) = request.into_parts();
    if parts.uri.path() == "/healthz" && matches!(parts.method, Method::GET | Method::HEAD) {
        return health(registry).await;
    }
    admit(registry, &parts.method, parts.uri.path(), &parts.headers).await?;
    let Some(route) = route::parse_path(parts.uri.path())? else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::Unsupported,
            "no such endpoint",
        )
        .into());
    };
    let query = Query::parse(parts.uri.query());
    let headers = &parts.headers;
    let method = &parts.method;
    let r = registry;
    let head = method == Method::HEAD;
    match route {
        Route::Base if head || method == Method::GET => reply(StatusCode::OK)
            .header(API_VERSION, "registry/2.0")
            .json(&serde_json::json!({}))
            .done(),
        Route::Catalog if method == Method::GET => catalog(r, &query).await,
        Route::Blob { name, digest } if head || method == Method::GET => {
            get_blob(r, &name, &digest, head, headers).await
        }
        Route::Blob { name, digest } if method == Method::DELETE => {
            delete_blob(r, &name, &digest).await
        }
        Route::Uploads { name } if method == Method::POST => {
            start_upload(r, &name, &query, headers, body).await
        }
        Route::Upload { name, id } if method == Method::PATCH => {
            patch_upload(r, &name, &id, headers, body).await
        }
        Route::Upload { name, id } if method == Method::PUT => {
            finish_upload(r, &name, &id, &query, headers, body).await
        }
        Route::Upload { name, id } if method == Method::GET => upload_status(r, &name, &id).await,
        Route::Upload { name, id } if method == Method::DELETE => {
            cancel_upload(r, &name, &id).await
        }
        Route::Manifest { name, reference } if head || method == Method::GET => {
            get_manifest(r, &name, &reference, head).await
        }
        Route::Manifest { name, reference } if method == Method::PUT => {
            put_manifest(r, &name, &reference, &query, headers, body).await
        }
        Route::Manifest { name, reference } if method == Method::DELETE => {
            delete_manifest(r, &name, &reference).await
        }
        Route::Tags { name } if method == Method::GET => tags(r, &name, &query).await,
        Route::Referrers { name, digest } if method == Method::GET => {
            referrers(r, &name, &digest, &query).await
        }
        other => {
            let (what, allow) = match other {
                Route::Base => ("/v2/", "GET, HEAD"),
                Route::Catalog => ("the catalog", "GET"),
                Route::Blob { .. } => ("blobs", "GET, HEAD, DELETE"),
                Route::Uploads { .. } => ("uploads", "POST"),
                Route::Upload { .. } => ("uploads", "GET, PATCH, PUT, DELETE"),
                Route::Manifest { .. } => ("manifests", "GET, HEAD, PUT, DELETE"),
                Route::Tags { .. } => ("tags", "GET"),
                Route::Referrers { .. } => ("referrers", "GET"),
            };
            Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                ErrorCode::Unsupported,
                format!("method {method} is not allowed on {what}"),
            )
            .header(header::ALLOW, allow)
            .into())
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Shared helpers

fn deletion_disabled(allow: &str) -> Failure {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::Unsupported,
        "deletion is disabled on this registry",
    )
    .header(header::ALLOW, allow)
    .into()
}

fn parse_digest(s: &str) -> Result<Digest, Failure> {
    Digest::parse_supported(s).map_err(|e| digest_invalid(format!("invalid digest `{s}`: {e}")))
}

/// The `Range` value of an upload holding `size` bytes: `0-<last byte>`, and `0-0` for an
/// empty one (distribution's answer to the spec's ambiguity; never `0--1`).
fn range_value(size: u64) -> String {
    format!("0-{}", size.saturating_sub(1))
}

fn upload_location(name: &str, id: &uuid::Uuid) -> String {
    format!("/v2/{name}/blobs/uploads/{}", id.hyphenated())
}

fn header_str<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    header_str(headers, &header::CONTENT_LENGTH).and_then(|v| v.trim().parse().ok())
}

/// 404 for missing content: `NAME_UNKNOWN` when the repository does not exist at all.
async fn missing(registry: &Registry, name: &str, content: Failure) -> Failure {
    match meta::repository_exists(registry.store().as_ref(), name).await {
        Ok(true) => content,
        Ok(false) => name_unknown(name),
        Err(e) => e.into(),
    }
}

/// One page of a sorted list, and the `n` and `last` of the next page when more remain.
struct Page {
    entries: Vec<String>,
    next: Option<(usize, String)>,
}

/// The page of a sorted list that `n` and `last` ask for: entries after `last`, at most `n`
/// (clamped to `max`).
fn paginate(all: Vec<String>, query: &Query, max: usize) -> Result<Page, Failure> {
    let n = match query.first("n") {
        None | Some("") => max,
        Some(n) => n
            .parse::<u64>()
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX).min(max))
            .map_err(|_| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    ErrorCode::Unsupported,
                    format!("pagination parameter n=`{n}` is not a non-negative integer"),
                )
            })?,
    };
    let last = query.first("last").filter(|l| !l.is_empty());
    let mut rest = all
        .into_iter()
        .filter(|entry| last.is_none_or(|last| entry.as_str() > last));
    let page: Vec<String> = rest.by_ref().take(n).collect();
    let next = match (n, rest.next(), page.last()) {
        (1.., Some(_), Some(tail)) => Some((n, tail.clone())),
        _ => None,
    };
    Ok(Page {
        entries: page,
        next,
    })
}

// ---------------------------------------------------------------------------------------------
// Catalog and tags

async fn catalog(registry: &Registry, query: &Query) -> Handled {
    let all = meta::catalog(registry.store().as_ref()).await?;
    let page = paginate(all, query, registry.config().max_page_size)?;
    let mut r = reply(StatusCode::OK);
    if let Some((n, last)) = page.next {
        r = r.header(
            header::LINK,
            format!("</v2/_catalog?n={n}&last={last}>; rel=\"next\""),
        );
    }
    r.json(&serde_json::json!({ "repositories": page.entries }))
        .done()
}

async fn tags(registry: &Registry, name: &str, query: &Query) -> Handled {
    let store = registry.store().as_ref();
    if !meta::repository_exists(store, name).await? {
        return Err(name_unknown(name));
    }
    let all = meta::tags(store, name).await?;
    let page = paginate(all, query, registry.config().max_page_size)?;
    let mut r = reply(StatusCode::OK);
    if let Some((n, last)) = page.next {
        r = r.header(
            header::LINK,
            format!("</v2/{name}/tags/list?n={n}&last={last}>; rel=\"next\""),
        );
    }
    r.json(&serde_json::json!({ "name": name, "tags": page.entries }))
        .done()
}

// ---------------------------------------------------------------------------------------------
// Blobs

async fn get_blob(
    registry: &Registry,
    name: &str,
    digest: &str,
    head: bool,
    headers: &HeaderMap,
) -> Handled {
    let digest = parse_digest(digest)?;
    let store = registry.store().as_ref();
    let linked = meta::blob_link(store, name, &digest).await?.is_some();
    let size = match linked {
        true => store.stat(&digest).await?,
        false => None,
    };
    let Some(size) = size else {
        return Err(missing(registry, name, blob_unknown(digest.as_str())).await);
    };
    let r = reply(StatusCode::OK)
        .header(DOCKER_CONTENT_DIGEST, digest.as_str())
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CONTENT_TYPE, "application/octet-stream");
    if head {
        // HEAD never reads the blob.
        return r.header(header::CONTENT_LENGTH, size.to_string()).done();
    }
    let range = parse_range_header(headers, size);
    let (r, range) = match range {
        RangeRequest::Whole => (r, None),
        RangeRequest::Partial(range) => (
            Reply {
                status: StatusCode::PARTIAL_CONTENT,
                ..r
            }
            .header(
                header::CONTENT_RANGE,
                format!("bytes {}-{}/{size}", range.start, range.end - 1),
            ),
            Some(range),
        ),
        RangeRequest::Unsatisfiable => {
            return reply(StatusCode::RANGE_NOT_SATISFIABLE)
                .header(header::CONTENT_RANGE, format!("bytes */{size}"))
                .done();
        }
    };
    let Some(blob) = store.get(&digest, range).await? else {
        return Err(blob_unknown(digest.as_str()));
    };
    r.header(header::CONTENT_LENGTH, blob.len().to_string())
        .body(Body::from_stream(blob.into_stream()))
        .done()
}

fn parse_range_header(headers: &HeaderMap, size: u64) -> RangeRequest {
    route::parse_range(header_str(headers, &header::RANGE), size)
}

async fn delete_blob(registry: &Registry, name: &str, digest: &str) -> Handled {
    if !registry.config().delete_enabled {
        return Err(deletion_disabled("GET, HEAD"));
    }
    let digest = parse_digest(digest)?;
    if !meta::unlink_blob(registry.store().as_ref(), name, &digest).await? {
        return Err(missing(registry, name, blob_unknown(digest.as_str())).await);
    }
    reply(StatusCode::ACCEPTED).done()
}

// ---------------------------------------------------------------------------------------------
// Uploads

async fn start_upload(
    registry: &Registry,
    name: &str,
    query: &Query,
    headers: &HeaderMap,
    body: Body,
) -> Handled {
    let store = registry.store().as_ref();
    if let Some(mount) = query.first("mount") {
        let digest = parse_digest(mount)?;
        // Mount only what the source repository really holds; otherwise fall back to an
        // ordinary session, revealing nothing about other repositories.
        if let Some(from) = query.first("from")
            && validate_name(from).is_ok()
            && meta::blob_link(store, from, &digest).await?.is_some()
            && let Some(size) = store.stat(&digest).await?
        {
            meta::link_blob(store, name, &digest, size).await?;
            // Linked, then checked: a garbage collection that deleted the blob meanwhile
            // either saw the link and restored it, or is seen here (see `gc`).
            if store.stat(&digest).await?.is_none() {
                return open_session(registry, name, query).await;
            }
            return reply(StatusCode::CREATED)
                .header(header::LOCATION, format!("/v2/{name}/blobs/{digest}"))
                .header(DOCKER_CONTENT_DIGEST, digest.as_str())
                .done();
        }
    } else {
        match query.one("digest") {
            Ok(digest) => return monolithic_upload(registry, name, digest, headers, body).await,
            Err(0) => {}
            Err(_) => return Err(digest_invalid("more than one `digest` parameter")),
        }
    }
    open_session(registry, name, query).await
}

/// Answers a POST with a new upload session (202).
async fn open_session(registry: &Registry, name: &str, query: &Query) -> Handled {
    let algorithm = match query.first("digest-algorithm") {
        None => None,
        Some(a) => match a.parse::<Algorithm>() {
            Ok(algorithm) if algorithm.is_supported() => Some(algorithm),
            _ => {
                return Err(digest_invalid(format!(
                    "unsupported digest algorithm `{a}`"
                )));
            }
        },
    };
    // A body sent without `digest` is ignored, as the spec requires of registries that
    // answer with a session.
    let uploads = Uploads {
        store: registry.upload_store().as_ref(),
    };
    let id = uploads.create(&Session::new(name, algorithm)).await?;
    reply(StatusCode::ACCEPTED)
        .header(header::LOCATION, upload_location(name, &id))
        .header(header::RANGE, range_value(0))
        .header(DOCKER_UPLOAD_UUID, id.hyphenated().to_string())
        .header(header::CONTENT_LENGTH, "0")
        .done()
}

async fn monolithic_upload(
    registry: &Registry,
    name: &str,
    digest: &str,
    headers: &HeaderMap,
    body: Body,
) -> Handled {
    let digest = parse_digest(digest)?;
    let store = registry.store().as_ref();
    let limit = registry.config().max_upload_size;
    let mut writer = store.writer_with(digest.algorithm()).await?;
    let rules = BodyRules {
        limit,
        idle: registry.config().body_idle_timeout,
        declared: content_length(headers),
    };
    let size = match upload::pump(body, &mut writer, rules, None).await {
        Ok(size) => size,
        Err(e) => {
            writer.abort().await.ok();
            return Err(e.into_failure(limit));
        }
    };
    commit(writer, &digest, size).await?;
    meta::link_blob(store, name, &digest, size).await?;
    // Linked, then checked (see `gc`): the body is gone, so a blob collected in between
    // fails the request, and the client retries.
    if store.stat(&digest).await?.is_none() {
        return Err(Error::BlobCollected { digest }.into());
    }
    blob_created(name, &digest)
}

/// Publishes an upload under the client's digest; a mismatch is the client's fault and
/// publishes nothing.
async fn commit(
    writer: ocikit_store::BlobWriter,
    digest: &Digest,
    size: u64,
) -> Result<(), Failure> {
    match writer.commit(digest, size).await {
        Ok(()) => Ok(()),
        Err(ocikit_store::Error::DigestMismatch { actual, .. }) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::DigestInvalid,
            "provided digest did not match uploaded content",
        )
        .detail(serde_json::json!({ "expected": digest.as_str(), "actual": actual.as_str() }))
        .into()),
        Err(ocikit_store::Error::SizeMismatch { expected, actual }) => Err(size_invalid(format!(
            "expected {expected} bytes, received {actual}"
        ))),
        Err(e) => Err(e.into()),
    }
}

fn blob_created(name: &str, digest: &Digest) -> Handled {
    reply(StatusCode::CREATED)
        .header(header::LOCATION, format!("/v2/{name}/blobs/{digest}"))
        .header(DOCKER_CONTENT_DIGEST, digest.as_str())
        .header(header::CONTENT_LENGTH, "0")
        .done()
}

/// The chunk a `Content-Range` header announces, checked against the session's size:
/// `Ok(None)` without the header, `Ok(Some(len))` for an in-order range.
fn announced_chunk(
    headers: &HeaderMap,
    name: &str,
    id: &uuid::Uuid,
    size: u64,
) -> Result<Option<u64>, Failure> {
    let Some(value) = headers.get(header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let Some((start, end)) = value.to_str().ok().and_then(route::parse_content_range) else {
        return Err(upload_invalid(
            "Content-Range must be `<start>-<end>`, inclusive, with start <= end",
        ));
    };
    if start != size {
        return Err(ApiError::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            ErrorCode::BlobUploadInvalid,
            format!("chunk starts at {start}, but the upload holds {size} bytes"),
        )
        .header(header::LOCATION, &upload_location(name, id))
        .header(header::RANGE, &range_value(size))
        .into());
    }
    let len = end - start + 1;
    if let Some(declared) = content_length(headers)
        && declared != len
    {
        return Err(size_invalid(format!(
            "Content-Length {declared} does not match Content-Range {start}-{end}"
        )));
    }
    Ok(Some(len))
}

fn session_id(id: &str) -> Result<uuid::Uuid, Failure> {
    upload::parse_id(id).ok_or_else(upload_unknown)
}

async fn patch_upload(
    registry: &Registry,
    name: &str,
    id: &str,
    headers: &HeaderMap,
    body: Body,
) -> Handled {
    let id = session_id(id)?;
    let uploads = Uploads {
        store: registry.upload_store().as_ref(),
    };
    let config = registry.config();
    let Some((mut session, version)) = uploads
        .open(&id, name, config.upload_ttl, config.clock.now_ms())
        .await?
    else {
        return Err(upload_unknown());
    };
    let expected = announced_chunk(headers, name, &id, session.size)?;
    let limit = config.max_upload_size.saturating_sub(session.size);
    if let Some(len) = expected.or(content_length(headers))
        && len > limit
    {
        return Err(too_large(format!(
            "upload would exceed the limit of {} bytes",
            config.max_upload_size
        )));
    }
    let live = match registry.inner.live.take(&id) {
        Some(live) if live.matches(session.chunks.len(), session.size) => Some(live),
        Some(_) => None,
        None if session.chunks.is_empty() && registry.inner.live.has_room() => {
            let algorithm = session.algorithm.clone().unwrap_or(Algorithm::Sha256);
            match registry.store().writer_with(&algorithm).await {
                Ok(writer) => Some(LiveUpload::new(writer, algorithm)),
                Err(_) => None,
            }
        }
        None => None,
    };
    let mut tee = live.map(Tee::start);
    let written = uploads
        .write_chunk(
            body,
            BodyRules {
                limit,
                idle: config.body_idle_timeout,
                declared: content_length(headers),
            },
            expected,
            tee.as_mut(),
        )
        .await;
    let chunk = match written {
        Ok(chunk) => chunk,
        Err(e) => {
            if let Some(tee) = tee {
                tee.abandon();
            }
            return Err(e);
        }
    };
    let chunk_was_empty = chunk.is_none();
    if let Some(chunk) = chunk {
        session.size += chunk.size;
        session.chunks.push(chunk.clone());
        session.updated_ms = upload::now();
        let key = keys::session(&id)?;
        let written = meta::write_json(
            uploads.store,
            &key,
            &session,
            ocikit_store::Precondition::Matches(version),
        )
        .await;
        if let Err(e) = written {
            if let Some(tee) = tee {
                tee.abandon();
            }
            uploads.delete_chunks(std::slice::from_ref(&chunk)).await;
            return Err(match e {
                Error::Store(ocikit_store::Error::Conflict { .. }) => ApiError::new(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    ErrorCode::BlobUploadInvalid,
                    "another request changed this upload meanwhile",
                )
                .into(),
                e => e.into(),
            });
        }
    }
    if let Some(tee) = tee
        && let Some(mut live) = tee.finish().await
    {
        if !chunk_was_empty {
            live.chunks += 1;
        }
        if live.matches(session.chunks.len(), session.size) {
            registry.inner.live.put(id, live);
        }
    }
    reply(StatusCode::ACCEPTED)
        .header(header::LOCATION, upload_location(name, &id))
        .header(header::RANGE, range_value(session.size))
        .header(DOCKER_UPLOAD_UUID, id.hyphenated().to_string())
        .header(header::CONTENT_LENGTH, "0")
        .done()
}

async fn finish_upload(
    registry: &Registry,
    name: &str,
    id: &str,
    query: &Query,
    headers: &HeaderMap,
    body: Body,
) -> Handled {
    let digest = match query.one("digest") {
        Ok(digest) => parse_digest(digest)?,
        Err(0) => return Err(digest_invalid("the closing PUT needs a `digest` parameter")),
        Err(_) => return Err(digest_invalid("more than one `digest` parameter")),
    };
    let id = session_id(id)?;
    let uploads = Uploads {
        store: registry.upload_store().as_ref(),
    };
    let config = registry.config();
    let Some((session, version)) = uploads
        .open(&id, name, config.upload_ttl, config.clock.now_ms())
        .await?
    else {
        return Err(upload_unknown());
    };
    if let Some(algorithm) = &session.algorithm
        && algorithm != digest.algorithm()
    {
        return Err(digest_invalid(format!(
            "the upload was started for {algorithm}, the digest is {}",
            digest.algorithm()
        )));
    }
    let expected = announced_chunk(headers, name, &id, session.size)?;
    let limit = config.max_upload_size.saturating_sub(session.size);
    let store = registry.store().as_ref();
    let live = registry.inner.live.take(&id).filter(|live| {
        live.matches(session.chunks.len(), session.size) && &live.algorithm == digest.algorithm()
    });
    let mut writer = match live {
        Some(live) => live.writer,
        None => {
            let mut writer = store.writer_with(digest.algorithm()).await?;
            if let Err(e) = uploads.replay(&id, &session.chunks, &mut writer).await {
                writer.abort().await.ok();
                return Err(match e {
                    Error::LostChunk { .. } => upload_unknown(),
                    e => e.into(),
                });
            }
            writer
        }
    };
    let rules = BodyRules {
        limit,
        idle: config.body_idle_timeout,
        declared: content_length(headers),
    };
    let received = match upload::pump(body, &mut writer, rules, None).await {
        Ok(n) => n,
        Err(e) => {
            writer.abort().await.ok();
            return Err(e.into_failure(limit));
        }
    };
    if let Some(expected) = expected
        && expected != received
    {
        writer.abort().await.ok();
        return Err(size_invalid(format!(
            "Content-Range announced {expected} bytes, the body had {received}"
        )));
    }
    // Claim the session: whoever deletes its document owns its chunks.
    let key = keys::session(&id)?;
    match uploads
        .store
        .delete_document(&key, ocikit_store::Precondition::Matches(version))
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            writer.abort().await.ok();
            return Err(upload_unknown());
        }
        Err(ocikit_store::Error::Conflict { .. }) => {
            writer.abort().await.ok();
            return Err(ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                ErrorCode::BlobUploadInvalid,
                "another request changed this upload meanwhile",
            )
            .into());
        }
        Err(e) => {
            writer.abort().await.ok();
            return Err(e.into());
        }
    }
    let size = session.size + received;
    let committed = commit(writer, &digest, size).await;
    if committed.is_err() {
        uploads.delete_chunks(&session.chunks).await;
    }
    committed?;
    let linked = link_checked(registry, &uploads, &id, &session, &digest, size, received).await;
    uploads.delete_chunks(&session.chunks).await;
    linked?;
    blob_created(name, &digest)
}

/// Links a finished upload's blob, then checks that it is still stored (see `gc`): if a
/// collection deleted it in between, the chunks (still held) are published again. The body
/// of the closing PUT is not held, so an upload whose last bytes came with it fails instead
/// and the client retries.
async fn link_checked(
    registry: &Registry,
    uploads: &Uploads<'_>,
    id: &uuid::Uuid,
    session: &Session,
    digest: &Digest,
    size: u64,
    put_bytes: u64,
) -> Result<(), Failure> {
    let store = registry.store().as_ref();
    meta::link_blob(store, &session.repository, digest, size).await?;
    if store.stat(digest).await?.is_some() {
        return Ok(());
    }
    if put_bytes > 0 {
        return Err(Error::BlobCollected {
            digest: digest.clone(),
        }
        .into());
    }
    let mut writer = store.writer_with(digest.algorithm()).await?;
    if let Err(e) = uploads.replay(id, &session.chunks, &mut writer).await {
        writer.abort().await.ok();
        return Err(e.into());
    }
    commit(writer, digest, size).await
}

async fn upload_status(registry: &Registry, name: &str, id: &str) -> Handled {
    let id = session_id(id)?;
    let uploads = Uploads {
        store: registry.upload_store().as_ref(),
    };
    let Some((session, _)) = uploads
        .open(
            &id,
            name,
            registry.config().upload_ttl,
            registry.config().clock.now_ms(),
        )
        .await?
    else {
        return Err(upload_unknown());
    };
    reply(StatusCode::NO_CONTENT)
        .header(header::LOCATION, upload_location(name, &id))
        .header(header::RANGE, range_value(session.size))
        .header(DOCKER_UPLOAD_UUID, id.hyphenated().to_string())
        .done()
}

async fn cancel_upload(registry: &Registry, name: &str, id: &str) -> Handled {
    let id = session_id(id)?;
    // Whatever the outcome, this process's live writer for it goes.
    drop(registry.inner.live.take(&id));
    let uploads = Uploads {
        store: registry.upload_store().as_ref(),
    };
    let Some((session, version)) = uploads
        .open(
            &id,
            name,
            registry.config().upload_ttl,
            registry.config().clock.now_ms(),
        )
        .await?
    else {
        return Err(upload_unknown());
    };
    if !uploads
        .discard(&keys::session(&id)?, &session, version)
        .await?
    {
        return Err(upload_unknown());
    }
    reply(StatusCode::NO_CONTENT).done()
}

// ---------------------------------------------------------------------------------------------
// Manifests

enum Reference {
    Tag(String),
    Digest(Digest),
}

/// Parses a manifest reference. For reads, a malformed tag is simply unknown (404, as the
/// conformance suite expects for `.INVALID_MANIFEST_NAME`); a malformed digest is 400.
fn parse_reference(reference: &str) -> Result<Reference, Failure> {
    if reference.contains(':') {
        return parse_digest(reference).map(Reference::Digest);
    }
    validate_tag(reference)
        .map(|()| Reference::Tag(reference.to_owned()))
        .map_err(|_| manifest_unknown(reference))
}

async fn resolve(registry: &Registry, name: &str, reference: &str) -> Result<Digest, Failure> {
    match parse_reference(reference)? {
        Reference::Digest(digest) => Ok(digest),
        Reference::Tag(tag) => match meta::tag(registry.store().as_ref(), name, &tag).await? {
            Some(digest) => Ok(digest),
            None => Err(missing(registry, name, manifest_unknown(reference)).await),
        },
    }
}

async fn get_manifest(registry: &Registry, name: &str, reference: &str, head: bool) -> Handled {
    let digest = resolve(registry, name, reference).await?;
    let store = registry.store().as_ref();
    let Some(record) = meta::manifest(store, name, &digest).await? else {
        return Err(missing(registry, name, manifest_unknown(reference)).await);
    };
    let r = reply(StatusCode::OK)
        .header(header::CONTENT_TYPE, &record.media_type)
        .header(DOCKER_CONTENT_DIGEST, digest.as_str())
        .header(header::CONTENT_LENGTH, record.size.to_string());
    if head {
        return r.done();
    }
    // Verified read: a manifest whose bytes no longer match is never served.
    let Some(bytes) = store.get_bytes(&digest, record.size).await? else {
        return Err(manifest_unknown(reference));
    };
    r.body(Body::from(bytes)).done()
}

/// What the registry needs from a pushed manifest, taken from its JSON without re-reading
/// it into a schema (unknown fields and types are tolerated, as the spec asks).
struct Parsed {
    subject: Option<Digest>,
    artifact_type: Option<String>,
    annotations: Option<BTreeMap<String, String>>,
}

/// Parses a pushed manifest or index with the one strict parser
/// ([`ocikit_digest::document`]: the rules every layout and client read by), and takes what
/// the referrers API needs from it.
fn parse_manifest(bytes: Bytes, media_type: &str, limit: usize) -> Result<Parsed, Failure> {
    let document = Document::parse_with_limit(media_type, bytes, limit as u64).map_err(|e| {
        let cause = std::error::Error::source(&e).map_or_else(String::new, |c| format!(": {c}"));
        manifest_invalid(format!("{e}{cause}"))
    })?;
    if matches!(document, Document::Opaque) {
        return Err(manifest_invalid(format!(
            "`{media_type}` is not a manifest or index media type"
        )));
    }
    let subject = document
        .subject()
        .map(descriptor::digest_of)
        .transpose()
        .map_err(|e| manifest_invalid(format!("invalid subject: {e}")))?;
    let annotations = document
        .annotations()
        .map(|map| map.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
    Ok(Parsed {
        subject,
        artifact_type: document.artifact_type().filter(|t| !t.is_empty()),
        annotations,
    })
}

/// Reads a request body into memory, refusing more than `limit` bytes with 413, and a body
/// that stalls for `idle`.
async fn read_limited(
    body: Body,
    limit: usize,
    idle: std::time::Duration,
    declared: Option<u64>,
) -> Result<Vec<u8>, Failure> {
    let mut stream = body.into_data_stream();
    let mut bytes = Vec::new();
    loop {
        let short = |received: usize| match declared {
            Some(declared) if (received as u64) < declared => size_invalid(format!(
                "Content-Length declared {declared} bytes, {received} arrived"
            )),
            _ => upload_invalid("the request body could not be read in full, or stalled"),
        };
        let next = tokio::time::timeout(idle, stream.next())
            .await
            .map_err(|_| short(bytes.len()))?;
        let Some(chunk) = next else { break };
        let chunk = chunk.map_err(|_| short(bytes.len()))?;
        if bytes.len() + chunk.len() > limit {
            return Err(too_large(format!(
                "manifest exceeds the limit of {limit} bytes"
            )));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

async fn put_manifest(
    registry: &Registry,
    name: &str,
    reference: &str,
    query: &Query,
    headers: &HeaderMap,
    body: Body,
) -> Handled {
    let pushed_digest = if reference.contains(':') {
        Some(parse_digest(reference)?)
    } else {
        validate_tag(reference)
            .map_err(|e| manifest_invalid(format!("invalid tag `{reference}`: {e}")))?;
        None
    };
    let mut tags: Vec<&str> = Vec::new();
    if pushed_digest.is_none() {
        tags.push(reference);
    }
    let extra = query.all("tag");
    if extra.len() > MAX_TAGS_PER_PUSH {
        return Err(manifest_invalid(format!(
            "at most {MAX_TAGS_PER_PUSH} `tag` parameters per push"
        )));
    }
    for tag in extra {
        validate_tag(tag).map_err(|e| manifest_invalid(format!("invalid tag `{tag}`: {e}")))?;
        if !tags.contains(&tag) {
            tags.push(tag);
        }
    }
    let limit = registry.config().max_manifest_size;
    if content_length(headers).is_some_and(|len| len > limit as u64) {
        return Err(too_large(format!(
            "manifest exceeds the limit of {limit} bytes"
        )));
    }
    let bytes = Bytes::from(
        read_limited(
            body,
            limit,
            registry.config().body_idle_timeout,
            content_length(headers),
        )
        .await?,
    );
    let declared =
        header_str(headers, &header::CONTENT_TYPE).map(|ct| media_type::essence(ct).trim());
    let media_type = match declared {
        Some(ct) if !ct.is_empty() => ct.to_owned(),
        _ => ocikit_digest::json::parse_strict_with_limit(&bytes, limit)
            .ok()
            .and_then(|v| {
                v.get("mediaType")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .ok_or_else(|| manifest_invalid("no Content-Type and no mediaType in the manifest"))?,
    };
    if !media_type::is_manifest_like(&media_type) && !media_type::is_index_like(&media_type) {
        return Err(manifest_invalid(format!(
            "`{media_type}` is not a manifest or index media type"
        )));
    }
    let parsed = parse_manifest(bytes.clone(), &media_type, limit)?;
    let digest = match pushed_digest {
        Some(expected) => {
            let actual = Digest::compute(expected.algorithm(), &bytes)
                .map_err(|_| digest_invalid("unsupported digest algorithm"))?;
            if actual != expected {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    ErrorCode::DigestInvalid,
                    "provided digest did not match the manifest",
                )
                .detail(
                    serde_json::json!({ "expected": expected.as_str(), "actual": actual.as_str() }),
                )
                .into());
            }
            expected
        }
        None => Digest::sha256(&bytes),
    };
    let store = registry.store().as_ref();
    store.put_verified(&digest, &bytes).await?;
    let size = bytes.len() as u64;
    meta::put_manifest(
        store,
        name,
        &digest,
        &ManifestRecord {
            media_type: media_type.clone(),
            size,
            subject: parsed.subject.clone(),
            pushed_ms: Some(upload::now()),
        },
    )
    .await?;
    // Recorded, then checked (see `gc`): content a collection deleted in between is
    // stored again from the bytes at hand.
    if store.stat(&digest).await?.is_none() {
        store.put_verified(&digest, &bytes).await?;
    }
    if let Some(subject) = &parsed.subject {
        let referrer = Referrer {
            media_type: media_type.clone(),
            digest: digest.clone(),
            size,
            artifact_type: parsed.artifact_type.clone(),
            annotations: parsed.annotations.clone(),
        };
        meta::add_referrer(store, name, subject, referrer).await?;
    }
    for tag in &tags {
        meta::set_tag(store, name, tag, &digest).await?;
    }
    let mut r = reply(StatusCode::CREATED)
        .header(header::LOCATION, format!("/v2/{name}/manifests/{digest}"))
        .header(DOCKER_CONTENT_DIGEST, digest.as_str())
        .header(header::CONTENT_LENGTH, "0");
    if let Some(subject) = &parsed.subject {
        r = r.header(OCI_SUBJECT, subject.as_str());
    }
    for tag in query.all("tag") {
        r = r.header(OCI_TAG, tag);
    }
    r.done()
}

async fn delete_manifest(registry: &Registry, name: &str, reference: &str) -> Handled {
    if !registry.config().delete_enabled {
        return Err(deletion_disabled("GET, HEAD, PUT"));
    }
    let store = registry.store().as_ref();
    let existed = match parse_reference(reference)? {
        Reference::Digest(digest) => meta::delete_manifest(store, name, &digest).await?,
        Reference::Tag(tag) => meta::delete_tag(store, name, &tag).await?,
    };
    if !existed {
        return Err(missing(registry, name, manifest_unknown(reference)).await);
    }
    reply(StatusCode::ACCEPTED).done()
}

// ---------------------------------------------------------------------------------------------
// Referrers

async fn referrers(registry: &Registry, name: &str, digest: &str, query: &Query) -> Handled {
    let subject = Digest::parse(digest)
        .map_err(|e| digest_invalid(format!("invalid digest `{digest}`: {e}")))?;
    let mut list = meta::referrers(registry.store().as_ref(), name, &subject).await?;
    let filters = query.all("artifactType");
    let applied = match filters[..] {
        [wanted] if media_type::validate_media_type(wanted).is_ok() => {
            list.retain(|r| r.artifact_type.as_deref() == Some(wanted));
            true
        }
        _ => false,
    };
    // Pages in push order; `last` (the digest that ended the previous page) is the
    // cursor the `Link` header carries, opaque to clients.
    if let Some(last) = query.first("last") {
        list = match list.iter().position(|r| r.digest.as_str() == last) {
            Some(i) => list.split_off(i + 1),
            None => Vec::new(),
        };
    }
    let max = registry.config().max_page_size;
    let more = list.len() > max;
    list.truncate(max);
    let body = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type::IMAGE_INDEX,
        "manifests": list,
    });
    let mut r = reply(StatusCode::OK)
        .header(header::CONTENT_TYPE, media_type::IMAGE_INDEX)
        .body(Body::from(body.to_string()));
    if applied {
        r = r.header(OCI_FILTERS_APPLIED, "artifactType");
    }
    if more && let Some(tail) = list.last() {
        let filter = match (applied, filters.first()) {
            (true, Some(wanted)) => format!("&artifactType={wanted}"),
            _ => String::new(),
        };
        r = r.header(
            header::LINK,
            format!(
                "</v2/{name}/referrers/{subject}?last={}{filter}>; rel=\"next\"",
                tail.digest
            ),
        );
    }
    r.done()
}
