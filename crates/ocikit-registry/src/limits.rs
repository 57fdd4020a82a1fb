//! What keeps a served registry answering honest clients under hostile load: the limits
//! ([`Limits`], in [`crate::Config::limits`]) and their bookkeeping while
//! [`crate::Registry::serve`] runs — token buckets per client and route class, the upload
//! sessions each client holds, the failed logins each client may still try, and request
//! bodies that must keep arriving at a minimum rate.
//!
//! A client is its IP address, except for upload sessions, which are counted per user when
//! the request carries a user's credentials (see [`Limits::max_upload_sessions_per_client`]).
//! The bookkeeping of one request reaches the handlers (and the bcrypt check) through a
//! task-local [`RequestContext`] that the connection loop sets; a router embedded elsewhere
//! ([`crate::Registry::router`]) runs without one, and then only the totals apply.

use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::HttpBody;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use uuid::Uuid;

use crate::error::{ApiError, ErrorCode};

/// A token bucket's refill rate and size: `per_second` requests a second on average, up to
/// `burst` at once.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct Rate {
    /// Tokens added a second.
    pub per_second: f64,
    /// Most tokens held (and the tokens a new client starts with).
    pub burst: u32,
}

impl Rate {
    /// `per_second` on average, `burst` at once.
    pub fn new(per_second: f64, burst: u32) -> Rate {
        Rate {
            per_second: if per_second.is_finite() {
                per_second.max(0.0)
            } else {
                0.0
            },
            burst: burst.max(1),
        }
    }
}

/// The limits that protect a served registry from slow, greedy and hostile clients. All
/// apply to [`crate::Registry::serve`] and `ocikit serve`; the defaults are generous enough
/// for any honest client, and are documented on each field.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Limits {
    /// How long a client has to send a request's headers, counted from the connection's
    /// start or from the end of the previous response (default 10 s). A connection that has
    /// sent half a header and gone quiet is closed when this passes.
    pub header_read_timeout: Duration,
    /// How long a kept-alive connection may sit idle, no request in flight and nothing
    /// arriving, before it is closed (default 5 s, as Apache's `KeepAliveTimeout`; the
    /// header read timeout also bounds it).
    pub keep_alive_timeout: Duration,
    /// The lowest average rate, in bytes a second, at which a request body must arrive and
    /// a response must be read by the client once [`Limits::min_rate_grace`] of waiting has
    /// passed (default 1024; 0 turns the check off). Only time spent waiting on the client
    /// counts, so a slow store never cuts a client off. A request body that falls behind is
    /// refused with 400 and what arrived of it is discarded; a response that falls behind
    /// has its connection closed. As Apache's `mod_reqtimeout` `MinRate`: a client trickling
    /// a few bytes a second is cut off after the grace period, a slow but real network is
    /// not.
    pub min_transfer_rate: u64,
    /// How long a client may wait before [`Limits::min_transfer_rate`] applies (default
    /// 10 s): each byte received extends it by `1 / min_transfer_rate` seconds.
    pub min_rate_grace: Duration,
    /// Most connections open at once (default: half the process's open-file limit, between
    /// 64 and 16384; 512 under the common limit of 1024). Beyond it the oldest idle
    /// connection (no request in flight) is closed to make room, and when none is idle the
    /// new connection is refused with 503.
    pub max_connections: Option<usize>,
    /// Most connections open at once from one IP address (default 128); beyond it that
    /// address's oldest idle connection is closed, or the new one refused.
    pub max_connections_per_client: usize,
    /// Most upload sessions open at once (default 10000); a POST beyond it gets 429
    /// `TOOMANYREQUESTS` with `Retry-After`.
    pub max_upload_sessions: usize,
    /// Most upload sessions one client holds open at once (default 100): a user when the
    /// request carries a user's credentials, its IP address otherwise.
    pub max_upload_sessions_per_client: usize,
    /// Most chunks (`PATCH` requests with a body) one upload session may hold (default
    /// 10000); each is a file in the upload store. Beyond it: 413 `SIZE_INVALID`.
    /// With [`crate::Config::max_upload_size`] this bounds what a session holds on disk.
    pub max_upload_chunks: usize,
    /// Read requests (`GET`, `HEAD`) one IP address may make (default 2000 a second, 10000
    /// at once); beyond: 429 `TOOMANYREQUESTS` with `Retry-After`. `None`: unlimited.
    pub read_rate: Option<Rate>,
    /// Write requests (every other method) one IP address may make (default 1000 a second,
    /// 5000 at once). `None`: unlimited.
    pub write_rate: Option<Rate>,
    /// Password checks one IP address may have fail (default 1 a second, 10 at once):
    /// each bcrypt check takes a token, given back when the password was right. With no
    /// token left, requests with credentials get 429 before any bcrypt runs. `None`:
    /// unlimited.
    pub auth_failure_rate: Option<Rate>,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            header_read_timeout: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(5),
            min_transfer_rate: 1024,
            min_rate_grace: Duration::from_secs(10),
            max_connections: None,
            max_connections_per_client: 128,
            max_upload_sessions: 10_000,
            max_upload_sessions_per_client: 100,
            max_upload_chunks: 10_000,
            read_rate: Some(Rate::new(2000.0, 10_000)),
            write_rate: Some(Rate::new(1000.0, 5000)),
            auth_failure_rate: Some(Rate::new(1.0, 10)),
        }
    }
}

impl Limits {
    /// No limit that could refuse an honest client: timeouts and rates as the defaults,
    /// counts and buckets off. For tests and for registries behind a proxy that limits.
    pub fn unlimited() -> Limits {
        Limits {
            max_connections: Some(usize::MAX),
            max_connections_per_client: usize::MAX,
            max_upload_sessions: usize::MAX,
            max_upload_sessions_per_client: usize::MAX,
            max_upload_chunks: usize::MAX,
            read_rate: None,
            write_rate: None,
            auth_failure_rate: None,
            ..Limits::default()
        }
    }

    /// Sets [`Limits::header_read_timeout`] (at least one millisecond).
    pub fn header_read_timeout(mut self, timeout: Duration) -> Limits {
        self.header_read_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// Sets [`Limits::keep_alive_timeout`] (at least one millisecond).
    pub fn keep_alive_timeout(mut self, timeout: Duration) -> Limits {
        self.keep_alive_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// Sets [`Limits::min_transfer_rate`] and [`Limits::min_rate_grace`].
    pub fn min_transfer_rate(mut self, bytes_per_second: u64, grace: Duration) -> Limits {
        self.min_transfer_rate = bytes_per_second;
        self.min_rate_grace = grace;
        self
    }

    /// Sets [`Limits::max_connections`] (at least 1) and
    /// [`Limits::max_connections_per_client`] (at least 1).
    pub fn max_connections(mut self, total: Option<usize>, per_client: usize) -> Limits {
        self.max_connections = total.map(|n| n.max(1));
        self.max_connections_per_client = per_client.max(1);
        self
    }

    /// Sets [`Limits::max_upload_sessions`] and [`Limits::max_upload_sessions_per_client`]
    /// (each at least 1).
    pub fn max_upload_sessions(mut self, total: usize, per_client: usize) -> Limits {
        self.max_upload_sessions = total.max(1);
        self.max_upload_sessions_per_client = per_client.max(1);
        self
    }

    /// Sets [`Limits::max_upload_chunks`] (at least 1).
    pub fn max_upload_chunks(mut self, chunks: usize) -> Limits {
        self.max_upload_chunks = chunks.max(1);
        self
    }

    /// Sets [`Limits::read_rate`], [`Limits::write_rate`] and
    /// [`Limits::auth_failure_rate`].
    pub fn rates(mut self, read: Option<Rate>, write: Option<Rate>, auth: Option<Rate>) -> Limits {
        self.read_rate = read;
        self.write_rate = write;
        self.auth_failure_rate = auth;
        self
    }

    /// [`Limits::max_connections`], or its default from the open-file limit.
    pub(crate) fn connection_cap(&self) -> usize {
        self.max_connections.unwrap_or_else(|| {
            let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile)
                .current
                .unwrap_or(1 << 20);
            usize::try_from(soft / 2).unwrap_or(16384).clamp(64, 16384)
        })
    }
}

/// A route class, with its own bucket per client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Class {
    Read,
    Write,
    AuthFailure,
}

/// Most clients remembered per class; past it, clients whose bucket is full are forgotten
/// (they are where a new client starts anyway).
const MAX_CLIENTS: usize = 65_536;

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets per client and class.
#[derive(Debug, Default)]
pub(crate) struct Buckets {
    buckets: Mutex<HashMap<(IpAddr, Class), Bucket>>,
}

impl Buckets {
    fn refill(bucket: &mut Bucket, rate: Rate, now: Instant) {
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate.per_second).min(f64::from(rate.burst));
        bucket.at = now;
    }

    /// Takes a token of `class` for `client`: `Err(retry_after)` when there is none.
    pub(crate) fn take(&self, client: IpAddr, class: Class, rate: Rate) -> Result<(), Duration> {
        self.apply(client, class, rate, true)
    }

    /// Whether `client` has a token of `class` left, without taking it.
    pub(crate) fn check(&self, client: IpAddr, class: Class, rate: Rate) -> Result<(), Duration> {
        self.apply(client, class, rate, false)
    }

    /// Gives back a token taken by [`Buckets::take`].
    pub(crate) fn give_back(&self, client: IpAddr, class: Class, rate: Rate) {
        if let Ok(mut buckets) = self.buckets.lock()
            && let Some(bucket) = buckets.get_mut(&(client, class))
        {
            bucket.tokens = (bucket.tokens + 1.0).min(f64::from(rate.burst));
        }
    }

    fn apply(&self, client: IpAddr, class: Class, rate: Rate, take: bool) -> Result<(), Duration> {
        let now = Instant::now();
        let Ok(mut buckets) = self.buckets.lock() else {
            return Ok(());
        };
        if buckets.len() >= MAX_CLIENTS && !buckets.contains_key(&(client, class)) {
            // Every client of a class has the same rate: prune this class's full buckets.
            buckets.retain(|(_, of), bucket| {
                if *of != class {
                    return true;
                }
                Buckets::refill(bucket, rate, now);
                bucket.tokens < f64::from(rate.burst)
            });
            if buckets.len() >= MAX_CLIENTS {
                // Every one of them busy: forget them all rather than grow without bound.
                buckets.clear();
            }
        }
        let bucket = buckets.entry((client, class)).or_insert(Bucket {
            tokens: f64::from(rate.burst),
            at: now,
        });
        Buckets::refill(bucket, rate, now);
        if bucket.tokens >= 1.0 {
            if take {
                bucket.tokens -= 1.0;
            }
            Ok(())
        } else if rate.per_second > 0.0 {
            Err(Duration::from_secs_f64(
                (1.0 - bucket.tokens) / rate.per_second,
            ))
        } else {
            Err(Duration::from_secs(3600))
        }
    }
}

/// The upload sessions this process opened and has not seen end, by client.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    state: Mutex<SessionState>,
}

#[derive(Debug, Default)]
struct SessionState {
    /// Session → its client and when it last changed (milliseconds, the registry's clock).
    open: HashMap<Uuid, (String, u64)>,
    per_client: HashMap<String, usize>,
}

/// Why a session cannot be opened: retry after this long.
#[derive(Debug)]
pub(crate) struct SessionsFull {
    pub(crate) retry_after: Duration,
    pub(crate) per_client: bool,
}

impl Sessions {
    /// Counts a new session of `client`, if `client` and the registry have room.
    pub(crate) fn open(
        &self,
        id: Uuid,
        client: Option<&str>,
        limits: &Limits,
        ttl: Duration,
        now_ms: u64,
    ) -> Result<(), SessionsFull> {
        let Ok(mut state) = self.state.lock() else {
            return Ok(());
        };
        let client = client.unwrap_or("");
        // Room frees up when the oldest session (of the client, or at all) expires.
        let retry = |state: &SessionState, only: Option<&str>| {
            let oldest = state
                .open
                .values()
                .filter(|(c, _)| only.is_none_or(|o| o == c))
                .map(|(_, at)| *at)
                .min()
                .unwrap_or(now_ms);
            let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
            let left = oldest.saturating_add(ttl_ms).saturating_sub(now_ms);
            Duration::from_millis(left.clamp(1000, 60_000))
        };
        if state.open.len() >= limits.max_upload_sessions {
            return Err(SessionsFull {
                retry_after: retry(&state, None),
                per_client: false,
            });
        }
        if !client.is_empty()
            && state.per_client.get(client).copied().unwrap_or(0)
                >= limits.max_upload_sessions_per_client
        {
            return Err(SessionsFull {
                retry_after: retry(&state, Some(client)),
                per_client: true,
            });
        }
        state.open.insert(id, (client.to_owned(), now_ms));
        if !client.is_empty() {
            *state.per_client.entry(client.to_owned()).or_default() += 1;
        }
        Ok(())
    }

    /// Notes that session `id` changed at `now_ms` (a chunk arrived).
    pub(crate) fn touch(&self, id: &Uuid, now_ms: u64) {
        if let Ok(mut state) = self.state.lock()
            && let Some((_, at)) = state.open.get_mut(id)
        {
            *at = now_ms;
        }
    }

    /// Forgets session `id` (finished, cancelled, expired or never created).
    pub(crate) fn close(&self, id: &Uuid) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        if let Some((client, _)) = state.open.remove(id)
            && let Some(count) = state.per_client.get_mut(&client)
        {
            *count = count.saturating_sub(1);
            if *count == 0 {
                state.per_client.remove(&client);
            }
        }
    }

    /// The sessions that have not changed for `ttl` by `now_ms`.
    pub(crate) fn expired(&self, ttl: Duration, now_ms: u64) -> Vec<Uuid> {
        let ttl = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        self.state
            .lock()
            .map(|state| {
                state
                    .open
                    .iter()
                    .filter(|(_, (_, at))| now_ms.saturating_sub(*at) >= ttl)
                    .map(|(id, _)| *id)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// How many sessions are counted.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.state.lock().map(|s| s.open.len()).unwrap_or(0)
    }
}

/// What the limits keep while a registry serves, shared by its connections.
#[derive(Debug)]
pub(crate) struct Guard {
    pub(crate) limits: Limits,
    pub(crate) buckets: Buckets,
    pub(crate) sessions: Sessions,
}

impl Guard {
    pub(crate) fn new(limits: Limits) -> Guard {
        Guard {
            limits,
            buckets: Buckets::default(),
            sessions: Sessions::default(),
        }
    }

    /// Whether a request from `client` may go on: its route class's bucket, and, for a
    /// request with credentials where users are configured, whether the client has failed
    /// logins left (checked, not taken: the bcrypt check takes one). `Some` is the 429.
    pub(crate) fn admit(
        &self,
        client: IpAddr,
        method: &axum::http::Method,
        path: &str,
        headers: &HeaderMap,
        users: bool,
    ) -> Option<Response> {
        if path == "/healthz" {
            return None;
        }
        let read = method == axum::http::Method::GET || method == axum::http::Method::HEAD;
        let (class, rate) = if read {
            (Class::Read, self.limits.read_rate)
        } else {
            (Class::Write, self.limits.write_rate)
        };
        if users
            && headers.contains_key(header::AUTHORIZATION)
            && let Some(rate) = self.limits.auth_failure_rate
            && let Err(wait) = self.buckets.check(client, Class::AuthFailure, rate)
        {
            return Some(too_many(
                wait,
                "too many failed logins from this address; try again later",
            ));
        }
        if let Some(rate) = rate
            && let Err(wait) = self.buckets.take(client, class, rate)
        {
            let what = if read { "reads" } else { "writes" };
            return Some(too_many(
                wait,
                &format!("too many {what} from this address; slow down"),
            ));
        }
        None
    }
}

/// A 429 `TOOMANYREQUESTS` answer with `Retry-After` (whole seconds, at least 1).
pub(crate) fn too_many(wait: Duration, message: &str) -> Response {
    too_many_failure(wait, message).into_response()
}

/// [`too_many`] as a handler's failure.
pub(crate) fn too_many_failure(wait: Duration, message: &str) -> crate::error::Failure {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::TooManyRequests,
        message,
    )
    .header(header::RETRY_AFTER, &seconds.max(1).to_string())
    .into()
}

/// What a request served by the connection loop carries into the handlers.
#[derive(Clone, Debug)]
pub(crate) struct RequestContext {
    pub(crate) peer: IpAddr,
    /// The user name of the request's `Basic` credentials, if any (verified or not: only
    /// what a handler sees after the request was admitted is verified).
    pub(crate) user: Option<String>,
    pub(crate) guard: Arc<Guard>,
}

tokio::task_local! {
    static REQUEST: RequestContext;
}

/// Runs `future` (a request's handling) with `context` visible to [`peer`] and
/// [`login_attempt`].
pub(crate) async fn scope<F: Future>(context: RequestContext, future: F) -> F::Output {
    REQUEST.scope(context, future).await
}

/// The IP address of the client of the request being handled, when served by
/// [`crate::Registry::serve`].
#[allow(dead_code, reason = "for the access log, which names the client")]
pub(crate) fn peer() -> Option<IpAddr> {
    REQUEST.try_with(|c| c.peer).ok()
}

/// The current request's [`RequestContext`], when served by [`crate::Registry::serve`].
pub(crate) fn context() -> Option<RequestContext> {
    REQUEST.try_with(|c| c.clone()).ok()
}

/// The client upload sessions are counted for: `user:NAME` for a request with `Basic`
/// credentials where users are configured (the handlers run only once they were
/// verified), `ip:ADDRESS` otherwise.
pub(crate) fn client_key(peer: IpAddr, users: bool) -> String {
    let user = users
        .then(|| REQUEST.try_with(|c| c.user.clone()).ok().flatten())
        .flatten();
    match user {
        Some(user) => format!("user:{user}"),
        None => format!("ip:{peer}"),
    }
}

/// The user name of a `Basic` `Authorization` header, if it is one.
pub(crate) fn basic_user(headers: &HeaderMap) -> Option<String> {
    let (user, _) = crate::auth::parse_basic(headers.get(header::AUTHORIZATION)?.as_bytes())?;
    (!user.is_empty()).then_some(user)
}

/// A bcrypt check about to run for the current request's client, holding one of its
/// failed-login tokens; dropped without [`LoginAttempt::succeeded`], the token stays
/// taken.
#[derive(Debug)]
pub(crate) struct LoginAttempt {
    taken: Option<(Arc<Guard>, IpAddr, Rate)>,
}

/// Takes a failed-login token for the current request's client before a bcrypt check;
/// `None` when the client has none left (the check must not run). Outside a served
/// request, or without an auth failure rate, always allowed.
pub(crate) fn login_attempt() -> Option<LoginAttempt> {
    let Ok(context) = REQUEST.try_with(|c| c.clone()) else {
        return Some(LoginAttempt { taken: None });
    };
    let Some(rate) = context.guard.limits.auth_failure_rate else {
        return Some(LoginAttempt { taken: None });
    };
    context
        .guard
        .buckets
        .take(context.peer, Class::AuthFailure, rate)
        .ok()?;
    Some(LoginAttempt {
        taken: Some((context.guard, context.peer, rate)),
    })
}

impl LoginAttempt {
    /// The password was right: the token goes back.
    pub(crate) fn succeeded(mut self) {
        if let Some((guard, peer, rate)) = self.taken.take() {
            guard.buckets.give_back(peer, Class::AuthFailure, rate);
        }
    }
}

/// A request body that errs once its client has kept the server waiting longer than the
/// grace period plus one second per `rate` bytes received (see
/// [`Limits::min_transfer_rate`]).
pub(crate) struct MinRate<B> {
    inner: B,
    rate: u64,
    grace: Duration,
    received: u64,
    waited: Duration,
    waiting_since: Option<tokio::time::Instant>,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<B> MinRate<B> {
    pub(crate) fn new(inner: B, rate: u64, grace: Duration) -> MinRate<B> {
        MinRate {
            inner,
            rate,
            grace,
            received: 0,
            waited: Duration::ZERO,
            waiting_since: None,
            deadline: None,
        }
    }

    fn allowed(&self) -> Duration {
        let per_byte = Duration::from_secs_f64(self.received as f64 / self.rate.max(1) as f64);
        self.grace.saturating_add(per_byte)
    }
}

/// Why [`MinRate`] stopped a body.
#[derive(Debug, thiserror::Error)]
#[error("the request body arrived slower than {rate} bytes a second")]
pub(crate) struct TooSlow {
    rate: u64,
}

impl<B> HttpBody for MinRate<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, axum::BoxError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                if let Some(since) = this.waiting_since.take() {
                    this.waited += since.elapsed();
                }
                this.deadline = None;
                if let Some(Ok(frame)) = &frame
                    && let Some(data) = frame.data_ref()
                {
                    this.received = this.received.saturating_add(data.len() as u64);
                }
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending if this.rate == 0 => Poll::Pending,
            Poll::Pending => {
                let since = *this
                    .waiting_since
                    .get_or_insert_with(tokio::time::Instant::now);
                let left = this.allowed().saturating_sub(this.waited);
                let deadline = since + left;
                let sleep = this
                    .deadline
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if sleep.deadline() != deadline {
                    sleep.as_mut().reset(deadline);
                }
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        Poll::Ready(Some(Err(Box::new(TooSlow { rate: this.rate }))))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    #[test]
    fn buckets_refuse_past_the_burst_and_say_when_to_retry() {
        let buckets = Buckets::default();
        let rate = Rate::new(1.0, 3);
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        for _ in 0..3 {
            buckets.take(a, Class::Read, rate).unwrap();
        }
        let wait = buckets.take(a, Class::Read, rate).unwrap_err();
        assert!(wait > Duration::from_millis(900) && wait <= Duration::from_secs(1));
        // Other clients and other classes have their own buckets.
        buckets.take(b, Class::Read, rate).unwrap();
        buckets.take(a, Class::Write, rate).unwrap();
        // A token given back can be taken again.
        buckets.give_back(a, Class::Read, rate);
        buckets.check(a, Class::Read, rate).unwrap();
        buckets.take(a, Class::Read, rate).unwrap();
        assert!(buckets.check(a, Class::Read, rate).is_err());
    }

    #[test]
    fn sessions_are_capped_per_client_and_in_total() {
        let sessions = Sessions::default();
        let limits = Limits::default().max_upload_sessions(3, 2);
        let ttl = Duration::from_secs(60);
        let ids: Vec<Uuid> = (0..4).map(|_| Uuid::new_v4()).collect();
        sessions
            .open(ids[0], Some("ip:a"), &limits, ttl, 0)
            .unwrap();
        sessions
            .open(ids[1], Some("ip:a"), &limits, ttl, 10_000)
            .unwrap();
        let full = sessions
            .open(ids[2], Some("ip:a"), &limits, ttl, 20_000)
            .unwrap_err();
        assert!(full.per_client);
        // The oldest of the client's sessions expires at 60 s: 40 s from now.
        assert_eq!(full.retry_after, Duration::from_secs(40));
        sessions
            .open(ids[2], Some("ip:b"), &limits, ttl, 20_000)
            .unwrap();
        let full = sessions
            .open(ids[3], Some("ip:c"), &limits, ttl, 20_000)
            .unwrap_err();
        assert!(!full.per_client);
        sessions.close(&ids[0]);
        sessions
            .open(ids[3], Some("ip:a"), &limits, ttl, 20_000)
            .unwrap();
        assert_eq!(sessions.len(), 3);
        sessions.touch(&ids[1], 50_000);
        let mut expired = sessions.expired(ttl, 80_000);
        expired.sort();
        let mut want = vec![ids[2], ids[3]];
        want.sort();
        assert_eq!(expired, want);
    }

    /// A body fed through a channel, as a client's would arrive.
    fn channel_body() -> (tokio::sync::mpsc::Sender<Bytes>, Body) {
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv()
                .await
                .map(|bytes| (Ok::<_, std::io::Error>(bytes), rx))
        });
        (tx, Body::from_stream(stream))
    }

    #[tokio::test]
    async fn a_trickling_body_is_cut_off_after_the_grace_period() {
        use futures::StreamExt as _;
        let (tx, body) = channel_body();
        let body = Body::new(MinRate::new(body, 100, Duration::from_millis(300)));
        let reader = tokio::spawn(async move {
            let mut stream = body.into_data_stream();
            let mut got = 0usize;
            while let Some(chunk) = stream.next().await {
                match chunk {
                    Ok(bytes) => got += bytes.len(),
                    Err(e) => return Err((got, e.to_string())),
                }
            }
            Ok(got)
        });
        // 10 bytes at once, then 1 byte every 100 ms (10 B/s): allowed 300 ms + 100 ms of
        // waiting, and 10 ms more with each byte, so it fails after about half a second.
        tx.send(Bytes::from(vec![0u8; 10])).await.unwrap();
        let started = std::time::Instant::now();
        for _ in 0..30 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if tx.send(Bytes::from_static(b"x")).await.is_err() {
                break;
            }
        }
        let (got, error) = reader.await.unwrap().unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!((10..=16).contains(&got), "{got}");
        assert!(error.contains("100 bytes a second"), "{error}");
    }

    #[tokio::test]
    async fn a_body_at_the_minimum_rate_passes() {
        let (tx, body) = channel_body();
        let body = Body::new(MinRate::new(body, 1000, Duration::from_millis(200)));
        let reader = tokio::spawn(async move {
            axum::body::to_bytes(body, usize::MAX)
                .await
                .map(|b| b.len())
        });
        // 2000 bytes a second for 1.5 s, in pieces 50 ms apart.
        for _ in 0..30 {
            tx.send(Bytes::from(vec![0u8; 100])).await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        drop(tx);
        assert_eq!(reader.await.unwrap().unwrap(), 3000);
    }
}
