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
    let (lister, subject) = Lister::open(location, registry, what).await?;
    let found = lister.list(&subject, artifact_type).await?;
    Ok((subject, found))
}

/// The most levels [`referrers_tree`] follows (referrers of referrers of ...).
pub const MAX_REFERRER_DEPTH: usize = 16;

/// A referrer and, in a tree, the referrers that name it in turn.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ReferrerNode {
    /// The referrer, as the referrers list describes it.
    pub descriptor: Descriptor,
    /// Its own referrers (empty at the last level followed).
    pub referrers: Vec<ReferrerNode>,
}

/// [`referrers`] as a tree, as `oras discover` shows it: the referrers of the subject
/// `location` names, and theirs, down to `depth` levels (1 is [`referrers`]; at most
/// [`MAX_REFERRER_DEPTH`]). With `artifact_type`, each level lists only referrers of that
/// type. A referrer is listed once: one that appears again (a cycle, which digests make
/// impossible, or a second path to it) is not followed twice.
pub async fn referrers_tree(
    location: &Location,
    registry: &RegistryOptions,
    artifact_type: Option<&str>,
    depth: usize,
    what: &str,
) -> Result<(Digest, Vec<ReferrerNode>)> {
    let depth = depth.clamp(1, MAX_REFERRER_DEPTH);
    let (lister, subject) = Lister::open(location, registry, what).await?;
    // Every node found: its descriptor, its parent (None: the subject), its level.
    let mut found: Vec<(Descriptor, Option<usize>)> = Vec::new();
    let mut seen = std::collections::HashSet::from([subject.to_string()]);
    let mut level: Vec<(Option<usize>, Digest)> = vec![(None, subject.clone())];
    for _ in 0..depth {
        let mut next = Vec::new();
        for (parent, digest) in &level {
            for referrer in lister.list(digest, artifact_type).await? {
                if !seen.insert(referrer.digest().to_string()) {
                    continue;
                }
                let child = digest_of(&referrer)?;
                found.push((referrer, *parent));
                next.push((Some(found.len() - 1), child));
            }
        }
        if next.is_empty() {
            break;
        }
        level = next;
    }
    // Children listed under their parents, in the order found.
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); found.len()];
    let mut roots = Vec::new();
    for (i, (_, parent)) in found.iter().enumerate() {
        match parent {
            Some(p) => children[*p].push(i),
            None => roots.push(i),
        }
    }
    fn build(
        i: usize,
        found: &[(Descriptor, Option<usize>)],
        children: &[Vec<usize>],
    ) -> ReferrerNode {
        ReferrerNode {
            descriptor: found[i].0.clone(),
            referrers: children[i]
                .iter()
                .map(|&c| build(c, found, children))
                .collect(),
        }
    }
    let tree = roots.iter().map(|&i| build(i, &found, &children)).collect();
    Ok((subject, tree))
}

/// Where referrers are listed from: a layout's referrers index, or a repository.
enum Lister {
    Layout(Layout),
    Registry {
        client: ocikit_client::Client,
        repository: String,
        location: String,
    },
}

impl Lister {
    /// The lister for `location`, and the digest of the subject it names (a tag resolved).
    async fn open(
        location: &Location,
        registry: &RegistryOptions,
        what: &str,
    ) -> Result<(Lister, Digest)> {
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
            return Ok((Lister::Layout(layout), subject));
        };
        let client = registry.client(host)?;
        let subject = match selector {
            Selector::Digest(digest) => digest.clone(),
            Selector::Tag(tag) => {
                let (descriptor, _) =
                    client
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
        let lister = Lister::Registry {
            client,
            repository: repository.clone(),
            location: location.to_string(),
        };
        Ok((lister, subject))
    }

    /// The referrers of `subject`, of `artifact_type` when given.
    async fn list(&self, subject: &Digest, artifact_type: Option<&str>) -> Result<Vec<Descriptor>> {
        match self {
            Lister::Layout(layout) => Ok(layout.referrers(subject, artifact_type).await?),
            Lister::Registry {
                client,
                repository,
                location,
            } => client
                .referrers(repository, subject, artifact_type)
                .await
                .map_err(|source| Error::Registry {
                    operation: Operation::ListReferrers,
                    location: location.clone(),
                    source,
                }),
        }
    }
}

/// A descriptor's digest as ocikit's [`Digest`].
fn digest_of(descriptor: &Descriptor) -> Result<Digest> {
    let text = descriptor.digest().to_string();
    text.parse().map_err(|source| Error::InvalidDigest {
        digest: text.clone(),
        source,
    })
}
