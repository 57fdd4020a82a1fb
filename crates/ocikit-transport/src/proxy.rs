//! The pull-through cache's upstream over the registry client (feature `proxy`): what
//! `ocikit serve --proxy docker://HOST` fetches through. The cache itself (caching, tag TTL,
//! one fetch per blob, verification while streaming, read-only) is the registry server's
//! ([`ocikit_registry::proxy`]); this module only speaks to the upstream, with the TLS
//! settings and credentials of [`RegistryOptions`] (by default those `ocikit login`, docker,
//! podman and skopeo store in Docker's `config.json`).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use ocikit_digest::Digest;
use ocikit_registry::Proxy;
use ocikit_registry::proxy::{Upstream, UpstreamBlob, UpstreamManifest};

use crate::access::RegistryOptions;
use crate::error::{Error, Result};

/// How often a request to the upstream is retried (after a connection error, a 429 or a
/// 5xx) before the cache answers from what it holds: once, so that a cached tag is served
/// within a second when the upstream is down, not after the client's full backoff.
const UPSTREAM_RETRIES: u32 = 1;

/// An upstream registry reached with ocikit's client: an [`Upstream`] for
/// [`ocikit_registry::Proxy`].
#[derive(Clone, Debug)]
pub struct ClientUpstream {
    client: ocikit_client::Client,
}

impl ClientUpstream {
    /// The upstream `location` names: `docker://HOST[:PORT]` (a registry, no repository:
    /// repositories are proxied under their own names), reached with `options`.
    pub fn new(location: &str, options: &RegistryOptions) -> Result<ClientUpstream> {
        let host = location
            .strip_prefix("docker://")
            .map(|rest| rest.trim_end_matches('/'))
            .filter(|host| !host.is_empty() && !host.contains('/'))
            .ok_or_else(|| Error::Client {
                registry: location.to_owned(),
                source: ocikit_client::Error::ClientSetup {
                    registry: location.to_owned(),
                    reason: "a pull-through cache's upstream is a registry: \
                             docker://HOST[:PORT], without a repository"
                        .into(),
                    source: None,
                },
            })?;
        let client = options.client_with(host, |builder| {
            builder
                .retries(
                    UPSTREAM_RETRIES,
                    Duration::from_millis(100),
                    Duration::from_secs(1),
                )
                .connect_timeout(Duration::from_secs(10))
        })?;
        Ok(ClientUpstream { client })
    }
}

/// The pull-through cache of the registry `location` names (`docker://HOST[:PORT]`),
/// reached with `options`, revalidating tags after `tag_ttl`: what
/// [`ocikit_registry::Config::proxy`] takes.
pub fn proxy(location: &str, options: &RegistryOptions, tag_ttl: Duration) -> Result<Proxy> {
    let upstream = ClientUpstream::new(location, options)?;
    Ok(Proxy::new(Arc::new(upstream)).tag_ttl(tag_ttl))
}

/// The server's error for what the client met.
fn upstream_error(
    upstream: &ClientUpstream,
    what: impl FnOnce() -> String,
    e: ocikit_client::Error,
) -> ocikit_registry::Error {
    let name = upstream.name().to_owned();
    match e {
        ocikit_client::Error::NotFound { .. } => ocikit_registry::Error::UpstreamNotFound {
            upstream: name,
            what: what(),
        },
        ocikit_client::Error::ContentMismatch { .. }
        | ocikit_client::Error::ContentSize { .. }
        | ocikit_client::Error::InvalidResponse { .. } => ocikit_registry::Error::UpstreamContent {
            upstream: name,
            reason: ocikit_registry_chain(&e),
        },
        e => ocikit_registry::Error::UpstreamUnavailable {
            upstream: name,
            source: Box::new(e),
        },
    }
}

fn ocikit_registry_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

#[async_trait::async_trait]
impl Upstream for ClientUpstream {
    fn name(&self) -> &str {
        self.client.registry()
    }

    async fn manifest(
        &self,
        repository: &str,
        reference: &str,
    ) -> ocikit_registry::Result<UpstreamManifest> {
        let (descriptor, bytes) = self
            .client
            .get_manifest(repository, reference)
            .await
            .map_err(|e| {
                upstream_error(self, || format!("manifest {repository}:{reference}"), e)
            })?;
        Ok(UpstreamManifest::new(
            descriptor.media_type().to_string(),
            bytes,
        ))
    }

    async fn blob_size(&self, repository: &str, digest: &Digest) -> ocikit_registry::Result<u64> {
        let what = || format!("blob {digest} in {repository}");
        self.client
            .blob_size(repository, digest)
            .await
            .map_err(|e| upstream_error(self, what, e))?
            .ok_or_else(|| ocikit_registry::Error::UpstreamNotFound {
                upstream: self.name().to_owned(),
                what: what(),
            })
    }

    async fn blob(
        &self,
        repository: &str,
        digest: &Digest,
    ) -> ocikit_registry::Result<UpstreamBlob> {
        let what = || format!("blob {digest} in {repository}");
        let stream = self
            .client
            .open_blob(repository, digest)
            .await
            .map_err(|e| upstream_error(self, what, e))?;
        let size = stream
            .size
            .ok_or_else(|| ocikit_registry::Error::UpstreamContent {
                upstream: self.name().to_owned(),
                reason: format!("blob {digest} in {repository} came without a Content-Length"),
            })?;
        let this = self.clone();
        let bytes = stream.bytes.map(move |chunk| {
            chunk.map_err(|e| ocikit_registry::Error::UpstreamUnavailable {
                upstream: this.name().to_owned(),
                source: Box::new(e),
            })
        });
        Ok(UpstreamBlob::new(size, bytes.boxed()))
    }
}
