//! The endpoint handlers (SPEC B.2 end-1 .. end-14), behind one dispatcher that matches the
//! path at its end and validates names, digests and tags before any storage is touched.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use ocikit_digest::document::Document;
use ocikit_digest::reference::{validate_name, validate_tag};
use ocikit_digest::{Algorithm, Digest, descriptor, media_type};
use ocikit_store::StoreExt;
use serde_json::Value;

use crate::error::{
    ApiError, ErrorCode, Failure, blob_unknown, digest_invalid, manifest_invalid, manifest_unknown,
    name_unknown, size_invalid, too_large, upload_invalid, upload_unknown,
};
use crate::live::{LiveUpload, Tee};
use crate::meta::{self, ManifestRecord, Referrer};
use crate::route::{self, Query, RangeRequest, Route};
use crate::upload::{self, BodyRules, Session, Uploads};
use crate::{Error, Registry, keys};

mod blobs;
mod lists;
mod manifests;
mod proxy;
mod referrers;
mod uploads;

use blobs::{delete_blob, get_blob};
use lists::{catalog, tags};
use manifests::{delete_manifest, get_manifest, put_manifest};
use referrers::referrers;
use uploads::{cancel_upload, finish_upload, patch_upload, start_upload, upload_status};

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

async fn dispatch(registry: &Registry, request: Request) -> Handled {
    let (parts, body) = request.into_parts();
    if parts.uri.path() == "/healthz" && matches!(parts.method, Method::GET | Method::HEAD) {
        return health(registry).await;
    }
    let identity = crate::auth::admit(registry, &parts.method, &parts.uri, &parts.headers).await?;
    if let crate::auth::Identity::User(name) | crate::auth::Identity::Token(name) = &identity {
        crate::access_log::UserSlot::set(&parts.extensions, name);
    }
    let Some(route) = route::parse_path(parts.uri.path())? else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::Unsupported,
            "no such endpoint",
        )
        .into());
    };
    if registry.config().proxy.is_some() {
        proxy::refuse_writes(&parts.method)?;
    }
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
