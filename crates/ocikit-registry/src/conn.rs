//! The connection loop of [`crate::Registry::serve`]: accepts TCP connections (surviving
//! `EMFILE`/`ENFILE`), admits them under [`Limits::max_connections`] and
//! [`Limits::max_connections_per_client`] (closing the oldest idle ones to make room), and
//! serves each with hyper's HTTP/1.1 server under the header read timeout, the keep-alive
//! timeout, the minimum transfer rate and the rate limits ([`crate::limits`]).

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, HttpBody};
use bytes::Bytes;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::limits::{self, Guard, Limits, MinRate, RequestContext};

/// How long a client may take over its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest pause of the accept loop while the process is out of file descriptors.
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// What a refused connection is told before it is closed.
const REFUSED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";

/// What one connection is doing, updated by its I/O and its requests, read by the
/// watchdog. Times are milliseconds since the server started.
#[derive(Debug, Default)]
pub(crate) struct Activity {
    /// Requests whose response has not been sent in full.
    in_flight: AtomicUsize,
    /// The last time bytes moved either way, or a request began or ended.
    last_ms: AtomicU64,
    /// Bytes written to the client.
    written: AtomicU64,
    /// Time spent with a write blocked on the client, finished episodes.
    write_waited_ms: AtomicU64,
    /// Since when a write has been blocked on the client, plus one; 0 when none is.
    write_blocked_since: AtomicU64,
    /// Set when the connection is to close now.
    closing: AtomicBool,
    close: tokio::sync::Notify,
}

impl Activity {
    fn close(&self) {
        self.closing.store(true, Ordering::SeqCst);
        self.close.notify_one();
    }
}

/// Milliseconds since `epoch`.
fn ms(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

struct Entry {
    peer: IpAddr,
    activity: Arc<Activity>,
}

#[derive(Default)]
struct Table {
    next: u64,
    /// By id, which grows with age: the first idle one is the oldest idle one.
    open: BTreeMap<u64, Entry>,
    per_client: HashMap<IpAddr, usize>,
}

impl Table {
    fn remove(&mut self, id: u64) -> Option<Entry> {
        let entry = self.open.remove(&id)?;
        if let Some(count) = self.per_client.get_mut(&entry.peer) {
            *count -= 1;
            if *count == 0 {
                self.per_client.remove(&entry.peer);
            }
        }
        Some(entry)
    }

    /// Closes the oldest connection with no request in flight: of `peer`, if given, else
    /// of the client holding the most connections (so a flood from one address costs that
    /// address its own idle connections, never a quiet client's).
    fn evict_oldest_idle(&mut self, peer: Option<IpAddr>) -> bool {
        let mut found: Option<(u64, usize)> = None;
        for (id, entry) in &self.open {
            if peer.is_some_and(|p| p != entry.peer)
                || entry.activity.in_flight.load(Ordering::SeqCst) > 0
            {
                continue;
            }
            let held = self.per_client.get(&entry.peer).copied().unwrap_or(0);
            if found.is_none_or(|(_, most)| held > most) {
                found = Some((*id, held));
            }
        }
        match found.and_then(|(id, _)| self.remove(id)) {
            Some(entry) => {
                entry.activity.close();
                true
            }
            None => false,
        }
    }
}

/// The open connections.
pub(crate) struct Connections {
    epoch: Instant,
    table: Mutex<Table>,
    max: usize,
    max_per_client: usize,
}

impl Connections {
    fn new(limits: &Limits) -> Connections {
        Connections {
            epoch: Instant::now(),
            table: Mutex::new(Table::default()),
            max: limits.connection_cap(),
            max_per_client: limits.max_connections_per_client,
        }
    }

    /// Admits a connection from `peer`, closing an idle one if that makes room; `None`
    /// when there is no room.
    fn admit(self: &Arc<Self>, peer: IpAddr) -> Option<Registration> {
        let mut table = self.table.lock().ok()?;
        if table.per_client.get(&peer).copied().unwrap_or(0) >= self.max_per_client
            && !table.evict_oldest_idle(Some(peer))
        {
            return None;
        }
        if table.open.len() >= self.max && !table.evict_oldest_idle(None) {
            return None;
        }
        let id = table.next;
        table.next += 1;
        let activity = Arc::new(Activity::default());
        activity.last_ms.store(ms(self.epoch), Ordering::SeqCst);
        table.open.insert(
            id,
            Entry {
                peer,
                activity: activity.clone(),
            },
        );
        *table.per_client.entry(peer).or_default() += 1;
        Some(Registration {
            connections: self.clone(),
            id,
            activity,
        })
    }

    /// Closes connections idle past `keep_alive`, and those whose client reads responses
    /// slower than the minimum rate after the grace period.
    fn watch(&self, limits: &Limits) {
        let now = ms(self.epoch);
        let keep_alive = u64::try_from(limits.keep_alive_timeout.as_millis()).unwrap_or(u64::MAX);
        let grace = u64::try_from(limits.min_rate_grace.as_millis()).unwrap_or(u64::MAX);
        let Ok(mut table) = self.table.lock() else {
            return;
        };
        let mut doomed = Vec::new();
        for (id, entry) in &table.open {
            let a = &entry.activity;
            let idle = a.in_flight.load(Ordering::SeqCst) == 0
                && now.saturating_sub(a.last_ms.load(Ordering::SeqCst)) >= keep_alive;
            let blocked = a.write_blocked_since.load(Ordering::SeqCst);
            let slow = limits.min_transfer_rate > 0 && blocked > 0 && {
                let waited =
                    a.write_waited_ms.load(Ordering::SeqCst) + now.saturating_sub(blocked - 1);
                let earned = a.written.load(Ordering::SeqCst).saturating_mul(1000)
                    / limits.min_transfer_rate;
                waited > grace.saturating_add(earned)
            };
            if idle || slow {
                if slow {
                    tracing::debug!(peer = %entry.peer, "closing a connection reading too slowly");
                }
                doomed.push(*id);
            }
        }
        for id in doomed {
            if let Some(entry) = table.remove(id) {
                entry.activity.close();
            }
        }
    }

    fn count(&self) -> usize {
        self.table.lock().map(|t| t.open.len()).unwrap_or(0)
    }

    fn evict_one(&self) -> bool {
        self.table
            .lock()
            .map(|mut t| t.evict_oldest_idle(None))
            .unwrap_or(false)
    }
}

/// A connection's place in [`Connections`], given up on drop.
struct Registration {
    connections: Arc<Connections>,
    id: u64,
    activity: Arc<Activity>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Ok(mut table) = self.connections.table.lock() {
            table.remove(self.id);
        }
    }
}

/// A stream that tells its [`Activity`] what moves through it.
struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
    epoch: Instant,
}

impl<S> Tracked<S> {
    fn wrote(&self, n: usize) {
        let a = &self.activity;
        let now = ms(self.epoch);
        let since = a.write_blocked_since.swap(0, Ordering::SeqCst);
        if since > 0 {
            a.write_waited_ms
                .fetch_add(now.saturating_sub(since - 1), Ordering::SeqCst);
        }
        a.written.fetch_add(n as u64, Ordering::SeqCst);
        a.last_ms.store(now, Ordering::SeqCst);
    }

    fn blocked(&self) {
        let now = ms(self.epoch) + 1;
        self.activity
            .write_blocked_since
            .compare_exchange(0, now, Ordering::SeqCst, Ordering::SeqCst)
            .ok();
    }

    fn after_write(&self, polled: &Poll<io::Result<usize>>) {
        match polled {
            Poll::Ready(Ok(n)) => self.wrote(*n),
            Poll::Pending => self.blocked(),
            Poll::Ready(Err(_)) => {}
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.activity
                .last_ms
                .store(ms(this.epoch), Ordering::SeqCst);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.after_write(&polled);
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.after_write(&polled);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        match &polled {
            Poll::Pending => this.blocked(),
            Poll::Ready(Ok(())) => this.wrote(0),
            Poll::Ready(Err(_)) => {}
        }
        polled
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Counts a request as in flight until its response body is dropped (sent in full, or
/// the connection gone).
struct InFlight {
    activity: Arc<Activity>,
    epoch: Instant,
}

impl InFlight {
    fn begin(activity: Arc<Activity>, epoch: Instant) -> InFlight {
        activity.in_flight.fetch_add(1, Ordering::SeqCst);
        activity.last_ms.store(ms(epoch), Ordering::SeqCst);
        InFlight { activity, epoch }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.activity
            .last_ms
            .store(ms(self.epoch), Ordering::SeqCst);
        self.activity.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A response body holding its request's [`InFlight`].
struct Guarded {
    inner: Body,
    _in_flight: InFlight,
}

impl HttpBody for Guarded {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Where connections come from: plain TCP, or TCP then a TLS handshake.
#[derive(Clone)]
pub(crate) enum Transport {
    Plain,
    Tls(TlsAcceptor),
}

/// Whether an `accept` error means the process (or system) is out of descriptors or
/// memory, which waiting may cure; other errors concern one connection only.
fn out_of_resources(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(code) if code == rustix::io::Errno::MFILE.raw_os_error()
            || code == rustix::io::Errno::NFILE.raw_os_error()
            || code == rustix::io::Errno::NOBUFS.raw_os_error()
            || code == rustix::io::Errno::NOMEM.raw_os_error()
    )
}

/// Serves `registry`'s router on `listener` until `shutdown` completes, then stops
/// accepting, closes idle connections, and waits for requests in flight.
pub(crate) async fn serve(
    registry: &crate::Registry,
    listener: TcpListener,
    transport: Transport,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let limits = registry.config().limits.clone();
    let guard = Arc::new(Guard::new(limits.clone()));
    let connections = Arc::new(Connections::new(&limits));
    let router = registry.router();
    let users = registry.config().users.is_some();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    // Every connection task holds a sender; all gone means every connection ended.
    let (alive, mut all_ended) = tokio::sync::mpsc::channel::<()>(1);
    let watchdog = {
        let (connections, limits) = (connections.clone(), limits.clone());
        let period = (limits.keep_alive_timeout / 4)
            .clamp(Duration::from_millis(10), Duration::from_secs(1));
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                connections.watch(&limits);
            }
        })
    };
    let expiry = {
        let (registry, guard) = (registry.clone(), guard.clone());
        let period = (registry.config().upload_ttl / 10)
            .clamp(Duration::from_millis(100), Duration::from_secs(60));
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                crate::upload::expire_counted(&registry, &guard.sessions).await;
            }
        })
    };
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut starved = false;
    let mut backoff = Duration::from_millis(10);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) if out_of_resources(&e) => {
                if !starved {
                    tracing::warn!(
                        error = %e,
                        open = connections.count(),
                        "out of file descriptors: accepting less often, closing idle connections"
                    );
                    starved = true;
                }
                connections.evict_one();
                tokio::select! {
                    _ = &mut shutdown => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
            Err(e) => {
                // One connection's trouble (reset before it was accepted, and the like).
                tracing::debug!(error = %e, "accepting a connection failed");
                continue;
            }
        };
        if starved {
            tracing::info!(open = connections.count(), "accepting connections again");
            starved = false;
        }
        backoff = Duration::from_millis(10);
        let Some(registration) = connections.admit(peer.ip()) else {
            tracing::debug!(%peer, "connection refused: too many open");
            tcp.try_write(REFUSED).ok();
            continue;
        };
        tcp.set_nodelay(true).ok();
        let connection = Connection {
            registration,
            peer,
            router: router.clone(),
            guard: guard.clone(),
            users,
            http: http.clone(),
            transport: transport.clone(),
            stopped: stopped.clone(),
            _alive: alive.clone(),
        };
        tokio::spawn(connection.run(tcp));
    }
    drop(listener);
    stop.send(true).ok();
    drop(alive);
    all_ended.recv().await;
    watchdog.abort();
    expiry.abort();
    Ok(())
}

/// One admitted connection, served on its own task.
struct Connection {
    registration: Registration,
    peer: SocketAddr,
    router: axum::Router,
    guard: Arc<Guard>,
    users: bool,
    http: hyper::server::conn::http1::Builder,
    transport: Transport,
    stopped: tokio::sync::watch::Receiver<bool>,
    _alive: tokio::sync::mpsc::Sender<()>,
}

impl Connection {
    async fn run(self, tcp: TcpStream) {
        let activity = self.registration.activity.clone();
        match self.transport.clone() {
            Transport::Plain => self.serve(tcp).await,
            Transport::Tls(acceptor) => {
                let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp));
                let handshaken = tokio::select! {
                    handshaken = handshake => handshaken,
                    _ = activity.close.notified() => return,
                };
                match handshaken {
                    Ok(Ok(stream)) => self.serve(stream).await,
                    Ok(Err(e)) => {
                        tracing::debug!(peer = %self.peer, error = %e, "TLS handshake failed")
                    }
                    Err(_) => tracing::debug!(peer = %self.peer, "TLS handshake timed out"),
                }
            }
        }
    }

    async fn serve<S>(mut self, stream: S)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let activity = self.registration.activity.clone();
        let epoch = self.registration.connections.epoch;
        let io = TokioIo::new(Tracked {
            inner: stream,
            activity: activity.clone(),
            epoch,
        });
        let service = {
            let (router, guard, activity) =
                (self.router.clone(), self.guard.clone(), activity.clone());
            let (peer, users) = (self.peer.ip(), self.users);
            hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
                let in_flight = InFlight::begin(activity.clone(), epoch);
                let (router, guard) = (router.clone(), guard.clone());
                async move {
                    let response = handle(router, guard, peer, users, request).await;
                    Ok::<_, Infallible>(response.map(|inner| {
                        Body::new(Guarded {
                            inner,
                            _in_flight: in_flight,
                        })
                    }))
                }
            })
        };
        let connection = self.http.serve_connection(io, service);
        let mut connection = std::pin::pin!(connection);
        let mut draining = *self.stopped.borrow();
        if draining {
            connection.as_mut().graceful_shutdown();
        }
        loop {
            tokio::select! {
                served = connection.as_mut() => {
                    if let Err(e) = served {
                        tracing::debug!(peer = %self.peer, error = %e, "connection ended");
                    }
                    return;
                }
                _ = activity.close.notified() => return,
                _ = self.stopped.changed(), if !draining => {
                    draining = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// One request: the rate limits, then the router with the minimum body rate and the
/// request's [`RequestContext`].
async fn handle(
    router: axum::Router,
    guard: Arc<Guard>,
    peer: IpAddr,
    users: bool,
    request: hyper::Request<Incoming>,
) -> axum::response::Response {
    if let Some(refused) = guard.admit(
        peer,
        request.method(),
        request.uri().path(),
        request.headers(),
        users,
    ) {
        tracing::debug!(%peer, method = %request.method(), path = request.uri().path(), "rate limited");
        return refused;
    }
    let (rate, grace) = (guard.limits.min_transfer_rate, guard.limits.min_rate_grace);
    let user = limits::basic_user(request.headers());
    let request = request.map(|body| Body::new(MinRate::new(body, rate, grace)));
    let context = RequestContext { peer, user, guard };
    let service = hyper_util::service::TowerToHyperService::new(router);
    let response = limits::scope(context, hyper::service::Service::call(&service, request)).await;
    match response {
        Ok(response) => response,
        Err(never) => match never {},
    }
}
