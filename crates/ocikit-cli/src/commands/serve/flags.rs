//! The flag groups `ocikit serve` flattens in: `--proxy` (a pull-through cache) and the
//! limits on connections, request rates and upload sessions, turned into the registry's
//! option types.

use anyhow::Context;

/// `--proxy`: a pull-through cache of another registry, and how to reach it.
#[derive(Debug, clap::Args)]
pub(crate) struct ProxyArgs {
    /// Be a pull-through cache of this registry (`docker://HOST[:PORT]`): what clients pull
    /// is fetched from it, verified and kept (manifests by digest for good, tags until
    /// --proxy-tag-ttl), and served from the cache while it is down; pushes and deletions
    /// are refused (405 UNSUPPORTED).
    #[arg(long, value_name = "LOCATION")]
    pub(super) proxy: Option<String>,
    /// How long a tag pulled through the cache is served from it before the upstream is
    /// asked again (0: every pull of a tag asks, falling back to the cache when the upstream
    /// cannot answer, as Distribution's proxy does).
    #[arg(long, default_value = "0s", value_parser = crate::commands::registry::parse_duration,
          value_name = "DURATION", requires = "proxy")]
    pub(super) proxy_tag_ttl: std::time::Duration,
    /// Verify the upstream's TLS certificate; `false` accepts any certificate, and plain
    /// HTTP if the upstream does not speak HTTPS.
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true", requires = "proxy")]
    proxy_tls_verify: bool,
    /// Trust the authorities in DIR/*.crt for the upstream (and present DIR/NAME.cert with
    /// DIR/NAME.key if it asks for a client certificate).
    #[arg(long, value_name = "DIR", requires = "proxy")]
    proxy_cert_dir: Option<std::path::PathBuf>,
    /// Trust the authorities of this PEM file for the upstream, besides the system's.
    #[arg(long, value_name = "FILE", requires = "proxy")]
    proxy_ca_file: Option<std::path::PathBuf>,
    /// Credentials for the upstream (default: those `ocikit login`, docker, podman or
    /// skopeo stored for it).
    #[arg(long, value_name = "USER:PASSWORD", requires = "proxy")]
    proxy_creds: Option<String>,
    /// The Docker `config.json` stored upstream credentials are read from (default
    /// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`).
    #[arg(long, value_name = "FILE", requires = "proxy")]
    proxy_authfile: Option<std::path::PathBuf>,
}

impl ProxyArgs {
    /// How the library reaches the upstream.
    pub(super) fn options(&self) -> anyhow::Result<ocikit::transport::RegistryOptions> {
        let credentials = self
            .proxy_creds
            .as_deref()
            .map(|text| {
                ocikit::client::Credentials::parse(text)
                    .context("write --proxy-creds as USER:PASSWORD")
            })
            .transpose()?;
        Ok(ocikit::transport::RegistryOptions::new()
            .with_tls_verify(self.proxy_tls_verify)
            .with_cert_dir(self.proxy_cert_dir.clone())
            .with_ca_file(self.proxy_ca_file.clone())
            .with_credentials(credentials)
            .with_authfile(self.proxy_authfile.clone()))
    }
}

/// The limits that keep the registry answering honest clients under hostile load (see
/// `ocikit_registry::Limits`).
#[derive(Debug, clap::Args)]
pub(crate) struct LimitArgs {
    /// How long a client has to send a request's headers, from the connection's start or
    /// the previous response's end.
    #[arg(long, default_value = "10s", value_parser = crate::commands::registry::parse_duration, value_name = "DURATION")]
    header_read_timeout: std::time::Duration,
    /// How long an idle kept-alive connection stays open.
    #[arg(long, default_value = "5s", value_parser = crate::commands::registry::parse_duration, value_name = "DURATION")]
    keep_alive_timeout: std::time::Duration,
    /// The lowest rate, in bytes a second, at which request bodies must arrive and
    /// responses be read once --min-rate-grace of waiting on the client has passed (0: off).
    #[arg(long, default_value_t = 1024, value_name = "BYTES")]
    min_transfer_rate: u64,
    /// The waiting allowed before --min-transfer-rate applies.
    #[arg(long, default_value = "10s", value_parser = crate::commands::registry::parse_duration, value_name = "DURATION")]
    min_rate_grace: std::time::Duration,
    /// Most connections open at once (default: half the open-file limit, 64 to 16384);
    /// beyond it the oldest idle one is closed, or the new one refused.
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,
    /// Most connections open at once from one IP address.
    #[arg(long, default_value_t = 128, value_name = "N")]
    max_connections_per_client: usize,
    /// Most upload sessions open at once (beyond: 429).
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    max_upload_sessions: usize,
    /// Most upload sessions one client (a user, else an IP address) holds open (beyond: 429).
    #[arg(long, default_value_t = 100, value_name = "N")]
    max_upload_sessions_per_client: usize,
    /// How long an idle upload session lives before it and its chunks are removed.
    #[arg(long, default_value = "1h", value_parser = crate::commands::registry::parse_duration, value_name = "DURATION")]
    pub(super) upload_ttl: std::time::Duration,
    /// Most chunks one upload session may hold (beyond: 413).
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    max_upload_chunks: usize,
    /// Reads (GET, HEAD) one IP address may make: `PER_SECOND/BURST`, or `off`.
    #[arg(long, default_value = "2000/10000", value_parser = parse_rate, value_name = "RATE")]
    read_rate: RateArg,
    /// Writes (other methods) one IP address may make: `PER_SECOND/BURST`, or `off`.
    #[arg(long, default_value = "1000/5000", value_parser = parse_rate, value_name = "RATE")]
    write_rate: RateArg,
    /// Failed password checks one IP address may make (beyond: 429 before any bcrypt):
    /// `PER_SECOND/BURST`, or `off`.
    #[arg(long, default_value = "1/10", value_parser = parse_rate, value_name = "RATE")]
    auth_failure_rate: RateArg,
}

/// A `--*-rate` value: `None` is `off`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RateArg(Option<ocikit::registry::Rate>);

fn parse_rate(s: &str) -> Result<RateArg, String> {
    if s == "off" {
        return Ok(RateArg(None));
    }
    let bad = || format!("`{s}` is not a rate such as 100/200 (per second/burst) or off");
    let (per_second, burst) = s.split_once('/').ok_or_else(bad)?;
    let per_second: f64 = per_second.trim().parse().map_err(|_| bad())?;
    let burst: u32 = burst.trim().parse().map_err(|_| bad())?;
    if !per_second.is_finite() || per_second <= 0.0 || burst == 0 {
        return Err(bad());
    }
    Ok(RateArg(Some(ocikit::registry::Rate::new(
        per_second, burst,
    ))))
}

impl LimitArgs {
    /// The library's limits for these flags.
    pub(super) fn limits(&self) -> ocikit::registry::Limits {
        ocikit::registry::Limits::default()
            .header_read_timeout(self.header_read_timeout)
            .keep_alive_timeout(self.keep_alive_timeout)
            .min_transfer_rate(self.min_transfer_rate, self.min_rate_grace)
            .max_connections(self.max_connections, self.max_connections_per_client)
            .max_upload_sessions(
                self.max_upload_sessions,
                self.max_upload_sessions_per_client,
            )
            .max_upload_chunks(self.max_upload_chunks)
            .rates(
                self.read_rate.0,
                self.write_rate.0,
                self.auth_failure_rate.0,
            )
    }
}
