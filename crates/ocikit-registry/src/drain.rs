//! Graceful shutdown with a bound: once the shutdown signal comes, no connection is
//! accepted any more and requests in flight (a slow upload) may finish for
//! [`Config::shutdown_timeout`](crate::Config::shutdown_timeout); what still runs then is cut
//! off (a handler still working answers 503, a response still streaming ends with an error,
//! which closes its connection), and the server returns.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse as _, Response};
use bytes::Bytes;
use futures::FutureExt as _;
use futures::future::BoxFuture;
use http_body::{Frame, SizeHint};
use tokio::sync::{oneshot, watch};

/// How long a server waits for its connections to close after cutting off what still ran.
const AFTER_CUT_OFF: Duration = Duration::from_secs(5);

/// Set when requests still in flight must stop.
#[derive(Clone, Debug)]
pub(crate) struct CutOff(watch::Receiver<bool>);

impl CutOff {
    /// The cut-off `switch` throws.
    pub(crate) fn of(switch: &watch::Sender<bool>) -> CutOff {
        CutOff(switch.subscribe())
    }

    fn thrown(&self) -> BoxFuture<'static, ()> {
        let mut cut = self.0.clone();
        async move {
            // The switch lives as long as the registry, so an error here cannot happen;
            // if it did, nothing would be cut off.
            if cut.wait_for(|thrown| *thrown).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        .boxed()
    }
}

/// The middleware: runs the request unless the cut-off is thrown first.
pub(crate) async fn cut_off(
    State(cut): State<CutOff>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    let response = tokio::select! {
        response = next.run(request) => response,
        () = cut.thrown() => return stopping(),
    };
    let (parts, body) = response.into_parts();
    Response::from_parts(
        parts,
        Body::new(CutBody {
            inner: body,
            thrown: cut.thrown(),
        }),
    )
}

fn stopping() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(axum::http::header::CONNECTION, "close")],
        "the server is shutting down\n",
    )
        .into_response()
}

/// A response body that ends with an error when the cut-off is thrown.
struct CutBody {
    inner: Body,
    thrown: BoxFuture<'static, ()>,
}

impl http_body::Body for CutBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        if this.thrown.poll_unpin(cx).is_ready() {
            return Poll::Ready(Some(Err(axum::Error::new(
                "the server stopped before the response was sent",
            ))));
        }
        Pin::new(&mut this.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Runs `server` (which stops accepting and drains when its shutdown signal fires, and
/// reports that signal on `begun`) until it returns, or until `bound` after the signal; then
/// throws `switch` and gives its connections [`AFTER_CUT_OFF`] to close before returning
/// (and resets `switch`, so the registry can serve again).
pub(crate) async fn run_bounded<S>(
    server: S,
    begun: oneshot::Receiver<()>,
    switch: &watch::Sender<bool>,
    bound: Duration,
) -> std::io::Result<()>
where
    S: Future<Output = std::io::Result<()>>,
{
    let mut server = std::pin::pin!(server);
    tokio::select! {
        served = &mut server => return served,
        _ = begun => {}
    }
    if let Ok(served) = tokio::time::timeout(bound, &mut server).await {
        return served;
    }
    tracing::warn!(
        "shutdown: requests still running after {} s are cut off",
        bound.as_secs_f64()
    );
    switch.send_replace(true);
    let served = match tokio::time::timeout(AFTER_CUT_OFF, &mut server).await {
        Ok(served) => served,
        Err(_) => {
            tracing::warn!("shutdown: connections still open after the cut-off are left");
            Ok(())
        }
    };
    switch.send_replace(false);
    served
}
