//! Reading one image (or its referrers) wherever a location says it is: a layout, or a
//! registry whose documents are fetched, verified, into a memory layout.

use ocikit_digest::Digest;
use ocikit_digest::oci_spec::image::Descriptor;
use ocikit_layout::{Document, Layout};
use ocikit_store::{MemoryStore, StoreExt};

use crate::access::RegistryOptions;
use crate::error::{Error, Operation, Result};
use crate::location::{Location, Selector};
use crate::open::{open_layout, resolve};

/// The image `location` names, in a layout to read it from: for `oci:PATH:TAG|@DIGEST` the
/// layout itself and the descriptor the selector names; for `docker://`, a memory layout
/// holding the manifest or index fetched (verified against the digest asked for, or the one
/// the registry states) and, with `with_config`, an image manifest's config blob. Archives
/// are refused ([`Error::NeedsLayout`] naming the operation `what`).
pub async fn open_image(
    location: &Location,
    registry: &RegistryOptions,
    with_config: bool,
    what: &str,
) -> Result<(Layout, Descriptor)> {
    let Location::Docker {
        registry: host,
        repository,
        selector,
        ..
    } = location
    else {
        let (path, selector) = location.oci(what)?;
        let layout = open_layout(path).await?;
        let descriptor = resolve(&layout, path, selector).await?;
        return Ok((layout, descriptor));
    };
    let client = registry.client(host)?;
    let (descriptor, bytes) = client
        .get_manifest(repository, &selector.reference())
        .await
        .map_err(|source| Error::Registry {
            operation: Operation::ReadManifest,
            location: location.to_string(),
            source,
        })?;
    let layout = Layout::create(MemoryStore::new()).await?;
    let digest = digest_of(&descriptor)?;
    layout.store().put_verified(&digest, &bytes).await?;
    if with_config
        && let Document::Manifest { manifest, .. } = layout.read_document(&descriptor).await?
    {
        let config = manifest.config();
        client
            .fetch_blob(
                repository,
                &digest_of(config)?,
                config.size(),
                layout.store(),
                &Default::default(),
            )
            .await
            .map_err(|source| Error::Registry {
                operation: Operation::ReadConfig,
                location: location.to_string(),
                source,
            })?;
    }
    Ok((layout, descriptor))
}

/// The subject `location` names (by digest) and the referrers that name it, of
/// `artifact_type` when given: a registry's referrers API, or its referrers tag schema where
/// it has no API; a layout's referrers index. A tag is resolved to its digest first.
pub async fn referrers(
    location: &Location,
    registry: &RegistryOptions,
    artifact_type: Option<&str>,
    what: &str,
) -> Result<(Digest, Vec<Descriptor>)> {
    let Location::Docker {
        registry: host,
        repository,
        selector,
        ..
    } = location
    else {
        let (path, selector) = location.oci(what)?;
        let layout = open_layout(path).await?;
        let subject = digest_of(&resolve(&layout, path, selector).await?)?;
        let found = layout.referrers(&subject, artifact_type).await?;
        return Ok((subject, found));
    };
    let client = registry.client(host)?;
    let subject = match selector {
        Selector::Digest(digest) => digest.clone(),
        Selector::Tag(tag) => {
            let (descriptor, _) = client
                .get_manifest(repository, tag)
                .await
                .map_err(|source| Error::Registry {
                    operation: Operation::ReadManifest,
                    location: location.to_string(),
                    source,
                })?;
            digest_of(&descriptor)?
        }
    };
    let found = client
        .referrers(repository, &subject, artifact_type)
        .await
        .map_err(|source| Error::Registry {
            operation: Operation::ListReferrers,
            location: location.to_string(),
            source,
        })?;
    Ok((subject, found))
}

/// A descriptor's digest as ocikit's [`Digest`].
fn digest_of(descriptor: &Descriptor) -> Result<Digest> {
    let text = descriptor.digest().to_string();
    text.parse().map_err(|source| Error::InvalidDigest {
        digest: text.clone(),
        source,
    })
}
