//! `ocikit serve`: the registry on a directory or an S3 bucket, over HTTP or HTTPS, open or
//! behind htpasswd users, until SIGTERM or Ctrl-C, then a graceful stop (requests in flight
//! finish).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};
use ocikit::registry::{
    Access, AccessPolicy, Config, MetricsToken, ServeEvent, ServeOptions, TlsConfig, TokenAuth,
    Users,
};

use crate::output::Output;

mod config;
mod flags;
pub(crate) use config::expand_args;
use flags::{LimitArgs, ProxyArgs};

/// Options of `ocikit serve`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("users").multiple(true).args(["htpasswd", "htpasswd_read_only"])))]
pub(crate) struct ServeArgs {
    /// The directory the registry keeps its content in (created if missing).
    #[arg(
        long,
        required_unless_present = "s3_bucket",
        conflicts_with = "s3_bucket"
    )]
    root: Option<std::path::PathBuf>,
    /// The address to listen on (port 0: any free port; the one chosen is printed).
    #[arg(long, default_value = "127.0.0.1:5000")]
    addr: std::net::SocketAddr,
    /// Serve HTTPS with this PEM certificate chain (leaf first).
    #[arg(long, requires = "tls_key", value_name = "FILE")]
    tls_cert: Option<std::path::PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert", value_name = "FILE")]
    tls_key: Option<std::path::PathBuf>,
    /// Users who may pull and push: an htpasswd file of bcrypt entries (`htpasswd -B`).
    /// Repeatable. With any users, requests need credentials.
    #[arg(long, value_name = "FILE")]
    htpasswd: Vec<std::path::PathBuf>,
    /// Users who may only pull: an htpasswd file of bcrypt entries. Repeatable.
    #[arg(long, value_name = "FILE")]
    htpasswd_read_only: Vec<std::path::PathBuf>,
    /// With users, let requests without credentials pull.
    #[arg(long, requires = "users", conflicts_with = "access")]
    anonymous_read: bool,
    /// Per-repository rules for the htpasswd users: a JSON policy file (zot's
    /// `accessControl` shape) saying which users and groups may pull, push or delete which
    /// repository patterns, and what anyone may pull.
    #[arg(long, requires = "users", value_name = "FILE")]
    access: Option<std::path::PathBuf>,
    /// Docker token authentication: the URL clients get bearer tokens from, named in the
    /// 401 challenges. Needs --token-service, --token-issuer and --token-public-key.
    #[arg(
        long,
        value_name = "URL",
        requires_all = ["token_service", "token_issuer", "token_public_key"],
        conflicts_with_all = ["users", "anonymous_read"]
    )]
    token_realm: Option<String>,
    /// The service name tokens must be issued for (their audience, `aud`).
    #[arg(long, value_name = "NAME", requires = "token_realm")]
    token_service: Option<String>,
    /// The issuer tokens must name (`iss`).
    #[arg(long, value_name = "NAME", requires = "token_realm")]
    token_issuer: Option<String>,
    /// The PEM public key(s) token signatures must verify under (`PUBLIC KEY` blocks: ECDSA
    /// P-256 for ES256, RSA for RS256).
    #[arg(long, value_name = "FILE", requires = "token_realm")]
    token_public_key: Option<std::path::PathBuf>,
    /// Refuse every push and deletion (405), for maintenance windows and mirrors.
    #[arg(long)]
    read_only: bool,
    /// Refuse deletions of manifests, tags and blobs (405).
    #[arg(long)]
    no_delete: bool,
    /// Which logs to write on stderr: a level (error, warn, info, debug, trace, off) or
    /// target=level pairs, e.g. `warn,ocikit_registry::access=info`.
    #[arg(long, default_value = "info", value_name = "FILTER")]
    log: String,
    /// The format of the logs.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(flatten)]
    s3: super::registry::S3Args,
    /// Also collect garbage online this often (`30m`, `6h`; off by default), as
    /// `registry-gc` would with the options below.
    #[arg(long, value_parser = super::registry::parse_duration)]
    gc_interval: Option<std::time::Duration>,
    #[command(flatten)]
    gc: super::registry::GcArgs,
    #[command(flatten)]
    limits: LimitArgs,
    #[command(flatten)]
    proxy: ProxyArgs,
    /// Also serve Prometheus metrics at /metrics on this address, a listener of its own
    /// without authentication (keep it where only the monitoring system reaches it).
    #[arg(long, value_name = "ADDR")]
    metrics_addr: Option<std::net::SocketAddr>,
    /// Serve /metrics on the registry's own address too, to requests bearing the secret in
    /// this file (`Authorization: Bearer SECRET`); never without one.
    #[arg(long, value_name = "FILE")]
    metrics_token_file: Option<std::path::PathBuf>,
    /// On SIGTERM or Ctrl-C, how long requests in flight (uploads) may run on before they
    /// are cut off; no new connection is accepted meanwhile.
    #[arg(long, default_value = "30s", value_parser = super::registry::parse_duration, value_name = "DURATION")]
    shutdown_timeout: std::time::Duration,
    /// Read flags from this TOML file: its keys are serve's flags without `--`
    /// (`addr = "0.0.0.0:5000"`, `read-only = true`, `htpasswd = ["a", "b"]`); flags given on
    /// the command line win. docs/serve.example.toml shows every key.
    #[arg(long, value_name = "FILE")]
    config: Option<std::path::PathBuf>,
}

/// The format of `serve`'s logs.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per line.
    Json,
}

pub(crate) async fn serve(args: ServeArgs, out: &Output) -> Result<()> {
    // Everything that can be refused is checked before the registry directory is created.
    let mut config = Config::default()
        .read_only(args.read_only)
        .delete_enabled(!args.no_delete)
        .anonymous_read(args.anonymous_read)
        .limits(args.limits.limits())
        .upload_ttl(args.limits.upload_ttl)
        .shutdown_timeout(args.shutdown_timeout);
    if let Some(file) = &args.metrics_token_file {
        let secret = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read the metrics token file {}", file.display()))?;
        let token = MetricsToken::new(&secret)
            .with_context(|| format!("the metrics token file {} is empty", file.display()))?;
        config = config.metrics_token(Some(token));
    }
    if !args.htpasswd.is_empty() || !args.htpasswd_read_only.is_empty() {
        let files = (args.htpasswd.iter().map(|f| (f, Access::ReadWrite)))
            .chain(args.htpasswd_read_only.iter().map(|f| (f, Access::Read)));
        let users =
            Users::from_htpasswd_files(files).context("cannot load the registry's users")?;
        config = config.users(Some(users));
    }
    if let Some(file) = &args.access {
        let policy = AccessPolicy::load(file).context("cannot load the access policy")?;
        config = config.access(Some(policy));
    }
    if let (Some(realm), Some(service), Some(issuer), Some(key)) = (
        &args.token_realm,
        &args.token_service,
        &args.token_issuer,
        &args.token_public_key,
    ) {
        let token = TokenAuth::from_key_file(realm, service, issuer, key)
            .context("cannot set up token authentication")?;
        config = config.token(Some(token));
    }
    if let Some(upstream) = &args.proxy.proxy {
        let proxy = ocikit::transport::proxy::proxy(
            upstream,
            &args.proxy.options()?,
            args.proxy.proxy_tag_ttl,
        )
        .with_context(|| format!("cannot set up the pull-through cache of {upstream}"))?;
        config = config.proxy(Some(proxy));
    }
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            Some(TlsConfig::from_pem_files(cert, key).context("cannot set up TLS")?)
        }
        _ => None,
    };
    let storage = super::registry::storage(args.root, &args.s3)?;
    let options = ServeOptions::new(storage.clone())
        .config(config)
        .tls(tls)
        .periodic_gc(args.gc_interval, args.gc.options())
        .metrics_addr(args.metrics_addr);
    init_logs(&args.log, args.log_format)?;
    // Listen first: an address that cannot be had leaves no registry directory behind.
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("cannot listen on {}", args.addr))?;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot watch for SIGTERM")?;
    let shutdown = async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    let started = Arc::new(AtomicBool::new(false));
    let events = {
        let (out, started, grace) = (*out, started.clone(), args.gc.grace);
        move |event: ServeEvent<'_>| match event {
            ServeEvent::Serving { storage, addr, tls } => {
                started.store(true, Ordering::SeqCst);
                let scheme = if tls { "https" } else { "http" };
                out.status(&format!("serving {storage} on {scheme}://{addr}"));
            }
            ServeEvent::Collected(report)
                if report.manifests_removed() + report.links_removed() > 0
                    || !report.blobs_removed.is_empty() =>
            {
                let summary = super::registry::summary(report, grace);
                out.status(&format!("gc: {summary}"));
            }
            ServeEvent::Metrics { addr } => {
                out.status(&format!("metrics on http://{addr}/metrics"));
            }
            ServeEvent::CollectionFailed(e) => {
                out.status(&format!("gc failed: {}", super::registry::chain(e)));
            }
            _ => {}
        }
    };
    let served = ocikit::registry::serve(listener, options, shutdown, events).await;
    if started.load(Ordering::SeqCst) {
        served.context("the registry stopped with an error")?;
    } else {
        // A store that cannot serve (a missing bucket, refused credentials) stops the server
        // before it serves, with the store's message, rather than every push later with a 500.
        served.with_context(|| format!("cannot serve {storage}"))?;
    }
    out.status("stopped");
    Ok(())
}

/// Request logs on stderr (after the status line), filtered by `filter`: a level
/// (`info`), or `target=level` pairs (`warn,ocikit_registry::access=info`).
fn init_logs(filter: &str, format: LogFormat) -> Result<()> {
    use std::io::IsTerminal as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let targets: tracing_subscriber::filter::Targets = filter
        .parse()
        .with_context(|| format!("`{filter}` is not a log filter (try `info` or `warn`)"))?;
    let ansi = std::io::stderr().is_terminal();
    let registry = tracing_subscriber::registry().with(targets);
    let installed = match format {
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(ansi),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
    installed.context("cannot set up logging")
}
