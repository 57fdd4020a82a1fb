//! Running a registry as `ocikit serve` does: [`serve`] opens the [`Storage`], checks its
//! stores, serves HTTP or HTTPS until a shutdown future completes (requests in flight
//! finish), and meanwhile collects garbage on an interval if asked
//! ([`Registry::spawn_periodic_gc`]); what happens is told to a caller-supplied event sink.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::{Config, GcOptions, GcReport, Registry, Storage, TlsConfig};

/// The shortest interval [`Registry::spawn_periodic_gc`] collects at; shorter ones are
/// raised to it.
pub const MIN_GC_INTERVAL: Duration = Duration::from_secs(1);

/// What [`serve`] runs: where the content is, the registry's configuration, TLS, and the
/// periodic garbage collection.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ServeOptions {
    /// Where the registry keeps its content.
    pub storage: Storage,
    /// The registry's limits, switches and users.
    pub config: Config,
    /// Serve HTTPS with this certificate and key, instead of plain HTTP.
    pub tls: Option<TlsConfig>,
    /// Collect garbage this often while serving (off by default).
    pub gc_interval: Option<Duration>,
    /// The options of those collections.
    pub gc: GcOptions,
    /// Also serve `/metrics` ([`Registry::metrics_router`], without authentication) on a
    /// listener of its own at this address, for the monitoring system (off by default).
    pub metrics_addr: Option<SocketAddr>,
}

impl ServeOptions {
    /// Serves `storage` with the default configuration, over plain HTTP, without periodic
    /// garbage collection.
    pub fn new(storage: Storage) -> ServeOptions {
        ServeOptions {
            storage,
            config: Config::default(),
            tls: None,
            gc_interval: None,
            gc: GcOptions::new(),
            metrics_addr: None,
        }
    }

    /// Sets [`ServeOptions::config`].
    pub fn config(mut self, config: Config) -> ServeOptions {
        self.config = config;
        self
    }

    /// Sets [`ServeOptions::tls`].
    pub fn tls(mut self, tls: Option<TlsConfig>) -> ServeOptions {
        self.tls = tls;
        self
    }

    /// Sets [`ServeOptions::metrics_addr`].
    pub fn metrics_addr(mut self, addr: Option<SocketAddr>) -> ServeOptions {
        self.metrics_addr = addr;
        self
    }

    /// Collects garbage every `interval` (none: never) with `options` while serving.
    pub fn periodic_gc(mut self, interval: Option<Duration>, options: GcOptions) -> ServeOptions {
        self.gc_interval = interval;
        self.gc = options;
        self
    }
}

/// What [`serve`] tells its event sink.
#[derive(Debug)]
#[non_exhaustive]
pub enum ServeEvent<'a> {
    /// The registry is open, its stores answered, and it serves requests from now on.
    Serving {
        /// Where its content is.
        storage: &'a Storage,
        /// The address it listens on.
        addr: SocketAddr,
        /// Whether it speaks HTTPS.
        tls: bool,
    },
    /// `/metrics` is served on a listener of its own ([`ServeOptions::metrics_addr`]).
    Metrics {
        /// The address it listens on.
        addr: SocketAddr,
    },
    /// A periodic garbage collection finished.
    Collected(&'a GcReport),
    /// A periodic garbage collection failed; the next one runs at the next interval.
    CollectionFailed(&'a Error),
}

/// Serves the registry `options` describe on `listener` until `shutdown` completes, then
/// stops accepting, lets requests in flight finish and returns: what `ocikit serve` is.
///
/// The storage is opened (a directory is created if missing), and both stores must answer
/// ([`Registry::check_stores`]) before anything is served, so a store that cannot serve (a
/// missing bucket, refused credentials) fails here rather than every push later; then
/// [`ServeEvent::Serving`] is sent. With [`ServeOptions::gc_interval`], garbage is collected
/// on that interval ([`Registry::spawn_periodic_gc`]), each outcome sent as an event, until
/// the server stops. With [`ServeOptions::metrics_addr`], that address is bound first (a
/// bind failure is [`Error::Bind`], before the storage is touched) and serves `/metrics`
/// until the server stops ([`ServeEvent::Metrics`]).
pub async fn serve<F, E>(
    listener: tokio::net::TcpListener,
    options: ServeOptions,
    shutdown: F,
    events: E,
) -> Result<()>
where
    F: Future<Output = ()> + Send + 'static,
    E: Fn(ServeEvent<'_>) + Send + Sync + 'static,
{
    let addr = listener.local_addr().map_err(Error::Serve)?;
    let metrics_listener = match options.metrics_addr {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| Error::Bind { addr, source })?,
        ),
        None => None,
    };
    let registry = options.storage.open(options.config).await?;
    registry.check_stores().await?;
    let events = Arc::new(events);
    events(ServeEvent::Serving {
        storage: &options.storage,
        addr,
        tls: options.tls.is_some(),
    });
    let (metrics_stop, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
    let metrics_server = match metrics_listener {
        Some(listener) => {
            let addr = listener.local_addr().map_err(Error::Serve)?;
            events(ServeEvent::Metrics { addr });
            let router = registry.metrics_router();
            Some(tokio::spawn(async move {
                axum::serve(listener, router)
                    .with_graceful_shutdown(async {
                        metrics_stopped.await.ok();
                    })
                    .await
            }))
        }
        None => None,
    };
    let collector = options.gc_interval.map(|interval| {
        let events = events.clone();
        registry.spawn_periodic_gc(interval, options.gc, move |outcome| match outcome {
            Ok(report) => events(ServeEvent::Collected(&report)),
            Err(e) => events(ServeEvent::CollectionFailed(&e)),
        })
    });
    let served = match &options.tls {
        Some(tls) => registry.serve_tls(listener, tls, shutdown).await,
        None => registry.serve(listener, shutdown).await,
    };
    if let Some(collector) = collector {
        collector.stop().await;
    }
    metrics_stop.send(()).ok();
    if let Some(metrics_server) = metrics_server {
        // A scrape in flight is a moment's work; the server is not waited for past that.
        let stopped = tokio::time::timeout(Duration::from_secs(5), metrics_server).await;
        if let Ok(Ok(Err(e))) = stopped {
            tracing::warn!(error = %e, "the metrics listener failed");
        }
    }
    served
}

/// A garbage collection running on an interval, started by
/// [`Registry::spawn_periodic_gc`]. [`PeriodicGc::stop`] ends it; dropping it ends it too
/// (the task is aborted).
#[derive(Debug)]
pub struct PeriodicGc {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl PeriodicGc {
    /// Stops collecting (a collection in progress is abandoned, which garbage collection
    /// is built to survive) and waits until the task has ended: no report comes after.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            stop.send(()).ok();
        }
        if let Some(task) = self.task.take() {
            // The task ends at the signal; a panic in the sink is the caller's own.
            task.await.ok();
        }
    }
}

impl Drop for PeriodicGc {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl Registry {
    /// Collects garbage with `options` every `interval` (at least [`MIN_GC_INTERVAL`];
    /// the first collection one interval from now), on a task of the current tokio
    /// runtime, until the returned handle is stopped or dropped. Each outcome goes to
    /// `on_done`; a failed collection is retried at the next interval.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime (as `tokio::spawn` does).
    pub fn spawn_periodic_gc<D>(
        &self,
        interval: Duration,
        options: GcOptions,
        mut on_done: D,
    ) -> PeriodicGc
    where
        D: FnMut(Result<GcReport>) + Send + 'static,
    {
        let registry = self.clone();
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval.max(MIN_GC_INTERVAL));
            ticks.tick().await;
            loop {
                let collected = async {
                    ticks.tick().await;
                    registry.gc(&options).await
                };
                tokio::select! {
                    _ = &mut stopped => return,
                    outcome = collected => on_done(outcome),
                }
            }
        });
        PeriodicGc {
            stop: Some(stop),
            task: Some(task),
        }
    }
}
