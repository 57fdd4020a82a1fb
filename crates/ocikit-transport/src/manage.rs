//! Removing images and listing registries: [`delete`] (`ocikit delete`) and [`catalog`]
//! (`ocikit catalog`).

use std::collections::{HashMap, HashSet, VecDeque};

use ocikit_client::Client;
use ocikit_digest::Digest;
use ocikit_digest::document::Document;
use ocikit_digest::graph::{Limits, Walker};
use ocikit_digest::oci_spec::image::Descriptor;
use ocikit_layout::Layout;
use serde::Serialize;

use crate::access::RegistryOptions;
use crate::error::{Error, Operation, Result};
use crate::location::{Location, Selector};
use crate::open::{open_layout, resolve};

/// Nested indexes followed at most below a tagged index when a registry's references to a
/// digest are looked for.
const MAX_REGISTRY_INDEX_DEPTH: usize = 8;

/// How [`delete`] deletes.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct DeleteOptions {
    /// Delete a digest that other tags or indexes still reference.
    pub force: bool,
    /// How to reach the registry (for `docker://` locations).
    pub registry: RegistryOptions,
}

impl DeleteOptions {
    /// No force; the default registry options.
    pub fn new() -> DeleteOptions {
        DeleteOptions::default()
    }

    /// Sets [`DeleteOptions::force`].
    pub fn with_force(mut self, force: bool) -> DeleteOptions {
        self.force = force;
        self
    }

    /// Sets [`DeleteOptions::registry`].
    pub fn with_registry(mut self, registry: RegistryOptions) -> DeleteOptions {
        self.registry = registry;
        self
    }
}

/// What [`delete`] removed (`ocikit delete --json` prints it, in camelCase).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct DeleteReport {
    /// The location deleted, as given.
    pub location: String,
    /// The manifest (or index) it named.
    pub digest: String,
    /// Its media type.
    pub media_type: String,
    /// The tags removed, sorted.
    pub tags_removed: Vec<String>,
    /// Whether the manifest itself went (by digest from a registry; its blob from a layout),
    /// not only a tag.
    pub manifest_removed: bool,
    /// Artifacts attached to it that went with it (untagged `index.json` entries of a
    /// layout), sorted.
    pub referrers_removed: Vec<String>,
    /// Blobs removed from a layout (manifests, configs, layers nothing else reaches),
    /// sorted; empty for a registry.
    pub blobs_removed: Vec<String>,
    /// Their bytes.
    pub bytes_removed: u64,
    /// What still referenced the digest and was overridden by
    /// [`DeleteOptions::with_force`] (`tag v2`, `index sha256:…`); empty otherwise.
    pub forced: Vec<String>,
}

/// `ocikit delete`: removes the tag or the manifest `location` names, in a layout
/// (`oci:PATH:TAG|@DIGEST`) or a registry (`docker://HOST/NAME:TAG|@DIGEST`); see the
/// section below for what is checked first. An unknown tag or digest is an
/// error ([`Error::TagNotFound`], [`Error::ManifestNotFound`], or the registry's
/// [`ocikit_client::Error::NotFound`] under [`Error::Registry`]); a registry that does not
/// delete is [`ocikit_client::Error::Unsupported`] under [`Error::Registry`]; archives are
/// [`Error::DeleteUnsupported`].
///
/// # What `delete` checks, and where it stops
///
/// A tag goes alone wherever it can: in a layout its `index.json` entry is removed; in a
/// registry that deletes tags (`DELETE /v2/NAME/manifests/TAG`, OCI Distribution 1.1,
/// `ocikit serve`) only the tag goes. A manifest named by digest, or a tag in a registry
/// that deletes by digest only (Distribution 2.8 answers a tag `DELETE` with 400
/// `DIGEST_INVALID`, and deleting the digest there removes every tag that names it), is
/// refused ([`Error::StillReferenced`]) while something else still names it, unless
/// [`DeleteOptions::with_force`]:
///
/// - in a layout: every other tag naming the digest, every index reachable from
///   `index.json` (nested indexes included) that lists it, and every tagged artifact whose
///   `subject` it is (untagged artifacts attached to it are removed with it, as `untag`
///   removes them);
/// - in a registry: every other tag of the repository naming it, and every index a tag of
///   the repository names that lists it, nested indexes followed by digest (one `GET` per
///   tag and nested index). Not seen there: untagged indexes (a registry cannot list
///   them), other repositories, and referrers (whose `subject` would dangle).
///
/// In a layout the blobs that nothing left in `index.json` reaches are removed at once and
/// reported; a blob another image still reaches stays. Unlike [`crate::gc`], which spares
/// blobs younger than its grace period, this does not wait for writers in flight: a copy
/// into the same layout that found one of those blobs present a moment before, and has not
/// tagged its image yet, loses it (its image then fails fsck); run deletes of a layout
/// when nothing else writes to it. In a registry the registry decides what its `DELETE`
/// removes; its garbage collection reclaims the blobs later.
pub async fn delete(location: &Location, options: &DeleteOptions) -> Result<DeleteReport> {
    match location {
        Location::Oci { path, selector } => {
            let selector = selector.as_ref().ok_or(Error::NoSelector)?;
            delete_in_layout(location, path, selector, options.force).await
        }
        Location::Docker {
            registry,
            repository,
            selector,
            ..
        } => {
            let client = options.registry.client(registry)?;
            delete_in_registry(location, &client, repository, selector, options.force).await
        }
        _ => Err(Error::DeleteUnsupported {
            location: location.to_string(),
        }),
    }
}

async fn delete_in_layout(
    location: &Location,
    path: &std::path::Path,
    selector: &Selector,
    force: bool,
) -> Result<DeleteReport> {
    let layout = open_layout(path).await?;
    let descriptor = resolve(&layout, path, Some(selector)).await?;
    let digest = descriptor.digest().to_string();
    let before = raw_entries(&layout).await?;
    let mut report = DeleteReport {
        location: location.to_string(),
        digest: digest.clone(),
        media_type: descriptor.media_type().to_string(),
        ..DeleteReport::default()
    };
    match selector {
        Selector::Tag(tag) => {
            layout.remove_image(tag).await?;
            report.tags_removed.push(tag.clone());
        }
        Selector::Digest(wanted) => {
            let attached = untagged_referrers(&layout, wanted, &before).await?;
            let references = layout_references(&layout, wanted, &before, &attached).await?;
            if !references.is_empty() && !force {
                return Err(Error::StillReferenced {
                    location: location.to_string(),
                    digest,
                    references,
                });
            }
            report.forced = references;
            let tags: Vec<String> = before
                .iter()
                .filter(|(tag, d)| tag.is_some() && d.digest().as_ref() == digest)
                .filter_map(|(tag, _)| tag.clone())
                .collect();
            for tag in &tags {
                layout.remove_image(tag).await?;
            }
            report.tags_removed = tags;
            layout.detach(wanted).await?;
            for referrer in &attached {
                layout.detach(referrer).await?;
            }
        }
    }
    let after = raw_entries(&layout).await?;
    let kept_roots: HashSet<String> = after.iter().map(|(_, d)| d.digest().to_string()).collect();
    let gone_roots: Vec<Descriptor> = before
        .iter()
        .filter(|(_, d)| !kept_roots.contains(d.digest().as_ref()))
        .map(|(_, d)| d.clone())
        .collect();
    let mut referrers: Vec<String> = gone_roots
        .iter()
        .map(|d| d.digest().to_string())
        .filter(|d| *d != digest)
        .collect();
    referrers.sort();
    referrers.dedup();
    report.referrers_removed = referrers;
    let kept = reachable(&layout, after.iter().map(|(_, d)| d)).await?;
    let gone = reachable(&layout, gone_roots.iter()).await?;
    let mut blobs: Vec<(Digest, u64)> = gone
        .into_iter()
        .filter(|(d, _)| !kept.contains_key(d))
        .collect();
    blobs.sort();
    for (blob, size) in &blobs {
        if layout.store().delete(blob).await? {
            report.bytes_removed += size;
            report.blobs_removed.push(blob.to_string());
        }
    }
    report.manifest_removed = report.blobs_removed.contains(&digest);
    report.tags_removed.sort();
    Ok(report)
}

/// Every entry of `index.json`, tagged or not, artifacts included.
async fn raw_entries(layout: &Layout) -> Result<Vec<(Option<String>, Descriptor)>> {
    let index = layout.index().await?;
    Ok(index
        .entries()
        .map(|(tag, d)| (tag.map(str::to_string), d.clone()))
        .collect())
}

/// The artifacts attached to `subject` (and to those, transitively) that `index.json` lists
/// untagged only: they go with it.
async fn untagged_referrers(
    layout: &Layout,
    subject: &Digest,
    entries: &[(Option<String>, Descriptor)],
) -> Result<Vec<Digest>> {
    let tagged: HashSet<&str> = entries
        .iter()
        .filter(|(tag, _)| tag.is_some())
        .map(|(_, d)| d.digest().as_ref())
        .collect();
    let mut found = Vec::new();
    let mut seen = HashSet::from([subject.clone()]);
    let mut queue = VecDeque::from([subject.clone()]);
    while let Some(next) = queue.pop_front() {
        for referrer in layout.referrers(&next, None).await? {
            let Ok(digest) = Digest::parse(referrer.digest().as_ref()) else {
                continue;
            };
            if tagged.contains(digest.as_str()) || !seen.insert(digest.clone()) {
                continue;
            }
            found.push(digest.clone());
            queue.push_back(digest);
        }
    }
    Ok(found)
}

/// What in the layout still names `digest`: other tags, indexes reachable from
/// `index.json` that list it, tagged artifacts whose subject it is.
async fn layout_references(
    layout: &Layout,
    digest: &Digest,
    entries: &[(Option<String>, Descriptor)],
    attached: &[Digest],
) -> Result<Vec<String>> {
    let mut references = Vec::new();
    for (tag, d) in entries {
        if let Some(tag) = tag
            && d.digest().as_ref() == digest.as_str()
        {
            references.push(format!("tag {tag}"));
        }
    }
    let attached: HashSet<&str> = attached.iter().map(Digest::as_str).collect();
    let roots = entries.iter().map(|(_, d)| d).filter(|d| {
        d.digest().as_ref() != digest.as_str() && !attached.contains(d.digest().as_ref())
    });
    let walker = walk(layout, roots).await?;
    for node in walker.nodes() {
        let Some(document) = node.document() else {
            continue;
        };
        if node.digest() == digest {
            continue;
        }
        if matches!(document, Document::Index { .. })
            && document
                .children()
                .iter()
                .any(|c| c.digest().as_ref() == digest.as_str())
        {
            references.push(format!("index {}", node.digest()));
        }
        if document
            .subject()
            .is_some_and(|s| s.digest().as_ref() == digest.as_str())
        {
            references.push(format!("artifact {}", node.digest()));
        }
    }
    references.sort();
    references.dedup();
    Ok(references)
}

/// The blobs reachable from `roots` in `layout`, with their sizes; documents the layout
/// does not hold are skipped (a layout may lack blobs, SPEC A.4).
async fn reachable<'a>(
    layout: &Layout,
    roots: impl Iterator<Item = &'a Descriptor>,
) -> Result<HashMap<Digest, u64>> {
    let walker = walk(layout, roots).await?;
    Ok(walker
        .nodes()
        .map(|n| (n.digest().clone(), n.size()))
        .collect())
}

async fn walk<'a>(layout: &Layout, roots: impl Iterator<Item = &'a Descriptor>) -> Result<Walker> {
    let graph = |e: ocikit_digest::graph::GraphError| Error::Layout(e.into());
    let mut walker = Walker::new(Limits::new());
    for root in roots {
        walker.add_root(root).map_err(graph)?;
    }
    while let Some(wanted) = walker.next_wanted() {
        match layout.read_blob(&wanted).await {
            Ok(bytes) => {
                walker.visit(&wanted, bytes).map_err(graph)?;
            }
            Err(ocikit_layout::Error::Store(ocikit_store::Error::NotFound { .. })) => {
                walker.skip(&wanted).map_err(graph)?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(walker)
}

async fn delete_in_registry(
    location: &Location,
    client: &Client,
    repository: &str,
    selector: &Selector,
    force: bool,
) -> Result<DeleteReport> {
    let failed = |operation: Operation| {
        move |source: ocikit_client::Error| Error::Registry {
            operation,
            location: location.to_string(),
            source,
        }
    };
    let (descriptor, _) = client
        .get_manifest(repository, &selector.reference())
        .await
        .map_err(failed(Operation::ReadManifest))?;
    let digest = descriptor.digest().to_string();
    let mut report = DeleteReport {
        location: location.to_string(),
        digest: digest.clone(),
        media_type: descriptor.media_type().to_string(),
        ..DeleteReport::default()
    };
    if let Selector::Tag(tag) = selector {
        match client.delete_manifest(repository, tag).await {
            Ok(()) => {
                report.tags_removed.push(tag.clone());
                return Ok(report);
            }
            // Deletes by digest only: deleting the digest removes every tag naming it.
            Err(ocikit_client::Error::Unsupported { .. }) => {}
            Err(e) => return Err(failed(Operation::Delete)(e)),
        }
    }
    let (tags, mut references) = registry_references(client, repository, &digest)
        .await
        .map_err(failed(Operation::ListTags))?;
    if let Selector::Tag(tag) = selector {
        references.retain(|r| *r != format!("tag {tag}"));
    }
    if !references.is_empty() && !force {
        return Err(Error::StillReferenced {
            location: location.to_string(),
            digest,
            references,
        });
    }
    client
        .delete_manifest(repository, &digest)
        .await
        .map_err(failed(Operation::Delete))?;
    report.forced = references;
    report.tags_removed = tags;
    report.manifest_removed = true;
    Ok(report)
}

/// The tags of `repository` naming `digest`, and what names it: `tag T` for each of
/// those, `index D (tag T)` for each index under a tag that lists it (nested indexes
/// followed by digest, [`MAX_REGISTRY_INDEX_DEPTH`] levels).
async fn registry_references(
    client: &Client,
    repository: &str,
    digest: &str,
) -> ocikit_client::Result<(Vec<String>, Vec<String>)> {
    let mut tags = Vec::new();
    let mut references = Vec::new();
    let mut listing: HashMap<String, bool> = HashMap::new();
    let mut all = client.tags(repository).await?;
    all.sort();
    for tag in all {
        let (descriptor, bytes) = client.get_manifest(repository, &tag).await?;
        if descriptor.digest().as_ref() == digest {
            tags.push(tag.clone());
            references.push(format!("tag {tag}"));
            continue;
        }
        let mut queue = VecDeque::from([(descriptor, Some(bytes), 0usize)]);
        while let Some((index, bytes, depth)) = queue.pop_front() {
            let index_digest = index.digest().to_string();
            if let Some(&lists) = listing.get(&index_digest) {
                if lists {
                    references.push(format!("index {index_digest} (tag {tag})"));
                }
                continue;
            }
            let Ok(Document::Index { index: parsed, .. }) = (match bytes {
                Some(bytes) => Ok(Document::parse(&index, bytes)),
                None => client
                    .get_manifest(repository, &index_digest)
                    .await
                    .map(|(d, b)| Document::parse(&d, b)),
            })?
            else {
                listing.insert(index_digest, false);
                continue;
            };
            let lists = parsed
                .manifests()
                .iter()
                .any(|m| m.digest().as_ref() == digest);
            listing.insert(index_digest.clone(), lists);
            if lists {
                references.push(format!("index {index_digest} (tag {tag})"));
            }
            if depth < MAX_REGISTRY_INDEX_DEPTH {
                for child in parsed.manifests() {
                    if ocikit_digest::media_type::is_index_like(child.media_type().as_ref()) {
                        queue.push_back((child.clone(), None, depth + 1));
                    }
                }
            }
        }
    }
    references.sort();
    references.dedup();
    Ok((tags, references))
}

/// How [`catalog`] lists.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct CatalogOptions {
    /// How to reach the registry.
    pub registry: RegistryOptions,
    /// Repositories asked for per page (`n`); the registry's own page size when `None`.
    pub page_size: Option<usize>,
    /// Stop after this many repositories; all when `None`.
    pub limit: Option<usize>,
}

impl CatalogOptions {
    /// Every repository, in the registry's pages, with the default registry options.
    pub fn new() -> CatalogOptions {
        CatalogOptions::default()
    }

    /// Sets [`CatalogOptions::registry`].
    pub fn with_registry(mut self, registry: RegistryOptions) -> CatalogOptions {
        self.registry = registry;
        self
    }

    /// Sets [`CatalogOptions::page_size`].
    pub fn with_page_size(mut self, page_size: Option<usize>) -> CatalogOptions {
        self.page_size = page_size;
        self
    }

    /// Sets [`CatalogOptions::limit`].
    pub fn with_limit(mut self, limit: Option<usize>) -> CatalogOptions {
        self.limit = limit;
        self
    }
}

/// A registry's repositories, as [`catalog`] lists them (`ocikit catalog --json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Catalog {
    /// The registry (`HOST[:PORT]`, as the API names it).
    pub registry: String,
    /// Its repositories, in the registry's order.
    pub repositories: Vec<String>,
}

/// `ocikit catalog`: the repositories of the registry `registry` names (`docker://HOST[:PORT]`),
/// every page followed (`GET /v2/_catalog` with `n`, `last` and `Link`), or the first
/// [`CatalogOptions::limit`]. Anything but `docker://HOST` is [`Error::NeedsRegistryHost`].
pub async fn catalog(registry: &str, options: &CatalogOptions) -> Result<Catalog> {
    let not_a_host = || Error::NeedsRegistryHost {
        what: "catalog".into(),
        location: registry.to_string(),
    };
    let host = registry.strip_prefix("docker://").ok_or_else(not_a_host)?;
    let host = host.strip_suffix('/').unwrap_or(host);
    if host.is_empty() || host.contains('/') {
        return Err(not_a_host());
    }
    let failed = |source| Error::Registry {
        operation: Operation::Catalog,
        location: registry.to_string(),
        source,
    };
    let host = ocikit_client::registry_host(host).map_err(failed)?;
    let client = options.registry.client(&host)?;
    let repositories = client
        .catalog(options.page_size, options.limit)
        .await
        .map_err(failed)?;
    Ok(Catalog {
        registry: host,
        repositories,
    })
}
