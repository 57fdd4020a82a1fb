//! The access log and the request metrics: one `tracing` event per request (target
//! [`TARGET`]), written when its response has been sent in full (or abandoned), so the bytes
//! and the duration are those of the whole exchange, not of the handler alone.
//!
//! The event's fields: `client` (the peer's IP address, as
//! [`Registry::serve`](crate::Registry::serve) knows it, or from axum's
//! `ConnectInfo<SocketAddr>` when the router is served elsewhere; `-` without either), `user` (the authenticated name, `-` for anonymous
//! requests), `method`, `path` (without the query), `status`, `bytes_in` (request body bytes
//! read), `bytes_out` (response body bytes sent) and `ms` (whole milliseconds). A 500 is
//! logged at `error` with its cause chain in `error`; a response cut short (the client went
//! away, or the server stopped) says so in its message.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::Method;
use axum::response::Response;
use bytes::Bytes;
use http_body::{Frame, SizeHint};

use crate::{Error, Registry};

/// The `tracing` target of the access log.
pub const TARGET: &str = "ocikit_registry::access";

/// Where authentication leaves the name of the user a request was made by; the access log
/// reads it once the response is sent.
#[derive(Clone, Debug, Default)]
pub(crate) struct UserSlot(Arc<OnceLock<String>>);

impl UserSlot {
    /// Records the authenticated user of the request whose extensions hold this slot.
    pub(crate) fn set(extensions: &axum::http::Extensions, name: &str) {
        if let Some(slot) = extensions.get::<UserSlot>() {
            slot.0.get_or_init(|| name.to_owned());
        }
    }
}

/// The middleware: counts the request body's bytes as they are read and the response
/// body's as they are sent, and logs and counts the request when its response body is done.
pub(crate) async fn observe(
    State(registry): State<Registry>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    let started = Instant::now();
    let in_flight = registry.metrics().in_flight();
    let (mut parts, body) = request.into_parts();
    let client = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip())
        .or_else(crate::limits::peer);
    let method = parts.method.clone();
    let path = parts.uri.path().to_owned();
    let route = crate::metrics::route_class(&method, &path);
    let user = UserSlot::default();
    parts.extensions.insert(user.clone());
    let bytes_in = Arc::new(AtomicU64::new(0));
    let body = Body::new(CountIn {
        inner: body,
        read: bytes_in.clone(),
    });
    let response = next.run(Request::from_parts(parts, body)).await;
    let (parts, body) = response.into_parts();
    // A HEAD response, or an empty one, may be dropped unpolled: nothing is cut short there.
    let complete = method == Method::HEAD || http_body::Body::is_end_stream(&body);
    let record = Record {
        registry,
        started,
        client,
        user,
        method,
        path,
        route,
        status: parts.status.as_u16(),
        error: parts.extensions.get::<Arc<Error>>().cloned(),
        bytes_in,
        bytes_out: 0,
        complete,
        _in_flight: in_flight,
    };
    Response::from_parts(
        parts,
        Body::new(CountOut {
            inner: body,
            record,
        }),
    )
}

/// A request body that counts the bytes read from it.
struct CountIn {
    inner: Body,
    read: Arc<AtomicU64>,
}

impl http_body::Body for CountIn {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            this.read.fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that counts the bytes sent, and logs the request when it is dropped
/// (after its last frame, or when the connection ends first).
struct CountOut {
    inner: Body,
    record: Record,
}

impl http_body::Body for CountOut {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.record.bytes_out += data.len() as u64;
                }
            }
            Poll::Ready(None) => this.record.complete = true,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// What the access log line says, completed as the response body is sent.
struct Record {
    registry: Registry,
    started: Instant,
    client: Option<IpAddr>,
    user: UserSlot,
    method: Method,
    path: String,
    route: &'static str,
    status: u16,
    error: Option<Arc<Error>>,
    bytes_in: Arc<AtomicU64>,
    bytes_out: u64,
    complete: bool,
    _in_flight: crate::metrics::InFlight,
}

impl Drop for Record {
    fn drop(&mut self) {
        let elapsed = self.started.elapsed();
        let ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        let bytes_in = self.bytes_in.load(Ordering::Relaxed);
        let bytes_out = self.bytes_out;
        let complete = self.complete;
        self.registry
            .metrics()
            .request_done(self.route, self.status, bytes_in, bytes_out, elapsed);
        let client = match self.client {
            Some(addr) => addr.to_string(),
            None => "-".to_owned(),
        };
        let user = self.user.0.get().map_or("-", String::as_str);
        let (method, path, status) = (self.method.as_str(), self.path.as_str(), self.status);
        if let Some(error) = &self.error {
            tracing::error!(
                target: TARGET,
                client, user, method, path, status, bytes_in, bytes_out, ms,
                error = %crate::error_chain(error.as_ref()),
                "request failed"
            );
        } else if complete {
            tracing::info!(
                target: TARGET,
                client, user, method, path, status, bytes_in, bytes_out, ms,
                "request"
            );
        } else {
            tracing::info!(
                target: TARGET,
                client, user, method, path, status, bytes_in, bytes_out, ms,
                "request (response cut short)"
            );
        }
    }
}
