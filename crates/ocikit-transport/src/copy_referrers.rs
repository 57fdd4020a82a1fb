//! Referrers along with a [`copy`](crate::copy) ([`CopyOptions::with_referrers`](crate::CopyOptions::with_referrers),
//! as `oras cp -r`): the manifests and indexes whose `subject` is a document the copy
//! wrote (the root, and for an index each manifest copied), then their own referrers, down to
//! [`MAX_DEPTH`] levels.
//!
//! The copy first *gathers* them: each referrer the source lists (a registry's referrers API
//! or its referrers tag schema, [`ocikit_client::Client::referrers`]; a layout's referrers
//! index, [`ocikit_layout::Layout::referrers`]) is fetched with every blob it reaches into a
//! scratch layout, verified, before anything is written at the destination: a referrer that
//! does not verify fails the copy and tags nothing. Then it *writes* them, after the images:
//! into a layout as untagged `index.json` entries (what its referrers index reads), into an
//! oci-archive the same way, into a registry by digest (a registry with the referrers API
//! indexes them by their `subject`; one without it, such as Distribution 2.8, gets the
//! subject's `sha256-<hex>` referrers tag index updated by the client's push). Within one
//! registry no blob passes through the client: the image is copied by digest first
//! ([`ocikit_client::Client::copy_within`]), then its referrers' documents are read
//! (verified) from the source repository and each referrer copied by digest, its blobs
//! mounted, and the image is tagged last (a referrer that fails tags nothing there either).
//! A referrer the destination lists already is skipped: nothing of it is transferred
//! again.
//!
//! A docker-archive cannot hold referrers, and a recompressed or converted image has a
//! digest its referrers do not name: [`crate::Error::ReferrersNotHeld`] and
//! [`crate::Error::ReferrersRewritten`], before anything is read.

use std::collections::{HashMap, HashSet};

use ocikit_client::{Client, CopyWithinOptions, PullOptions, PushOptions};
use ocikit_digest::graph::{self, Limits, Walker};
use ocikit_digest::oci_spec::image::Descriptor;
use ocikit_digest::{Digest, descriptor};
use ocikit_layout::{CopyOptions as LayoutCopyOptions, Layout};

use crate::error::{Error, Operation, Result};
use crate::location::Location;
use crate::progress::{Progress, Stage};

/// Levels of referrers followed at most (referrers of referrers of ...): a referrer found
/// deeper fails the copy ([`Error::ReferrersTooDeep`]).
pub const MAX_DEPTH: usize = 8;

/// Referrers found at most for one copy ([`Error::TooManyReferrers`] beyond).
pub const MAX_REFERRERS: usize = 10_000;

/// Where the referrers of a copy's images are listed and read.
pub(crate) enum Origin<'a> {
    /// A registry repository: its referrers API, or its referrers tag schema.
    Registry {
        client: &'a Client,
        repository: &'a str,
        location: &'a Location,
    },
    /// A layout (the source itself, or the scratch layout an archive was imported into):
    /// its referrers index.
    Layout {
        layout: &'a Layout,
        location: &'a Location,
    },
}

/// A referrer gathered for a copy.
#[derive(Clone, Debug)]
pub(crate) struct Found {
    /// The document it refers to.
    pub(crate) subject: Digest,
    /// The referrer as an index entry names it: media type, digest, size, `artifactType`.
    pub(crate) descriptor: Descriptor,
}

/// What a copy did with the referrers ([`CopyReport::referrers`](crate::CopyReport::referrers)),
/// serialized into `ocikit copy --json` as `referrersCopied`, `referrersSkipped` and
/// `referrerBlobs`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct ReferrersReport {
    /// Referrers written at the destination.
    #[serde(rename = "referrersCopied")]
    pub copied: usize,
    /// Referrers the destination listed already (nothing of them transferred).
    #[serde(rename = "referrersSkipped")]
    pub skipped: usize,
    /// Blobs written, uploaded or mounted for the referrers copied (in a layout or an
    /// archive, their manifests too).
    #[serde(rename = "referrerBlobs")]
    pub blobs: usize,
}

fn digest_of(d: &Descriptor) -> Result<Digest> {
    let text = d.digest().to_string();
    text.parse().map_err(|source| Error::InvalidDigest {
        digest: text.clone(),
        source,
    })
}

/// The digests of the documents (manifests and indexes) under `roots` in `layout`, by the
/// one walk (every document read and verified).
pub(crate) async fn layout_documents(layout: &Layout, roots: &[Descriptor]) -> Result<Vec<Digest>> {
    let walked = graph::walk(roots, &Limits::new(), |wanted| async move {
        layout.read_blob(&wanted).await
    })
    .await?;
    Ok(walked
        .children_first()
        .filter(|node| node.bytes().is_some())
        .map(|node| node.digest.clone())
        .collect())
}

/// The digests of the documents under `root` in a registry repository, each fetched and
/// verified (no blob is read).
pub(crate) async fn registry_documents(
    client: &Client,
    repository: &str,
    root: &Descriptor,
    location: &Location,
) -> Result<Vec<Digest>> {
    let mut walker = Walker::new(Limits::new());
    walker.add_root(root).map_err(|e| Error::Layout(e.into()))?;
    while let Some(wanted) = walker.next_wanted() {
        let digest = digest_of(&wanted)?;
        let (_, bytes) = client
            .get_manifest(repository, digest.as_str())
            .await
            .map_err(|source| Error::Registry {
                operation: Operation::ReadManifest,
                location: location.to_string(),
                source,
            })?;
        walker
            .visit(&wanted, bytes)
            .map_err(|e| Error::Layout(e.into()))?;
    }
    let walked = walker.finish().map_err(|e| Error::Layout(e.into()))?;
    Ok(walked
        .children_first()
        .filter(|node| node.bytes().is_some())
        .map(|node| node.digest.clone())
        .collect())
}

impl Origin<'_> {
    /// The referrers of `subject` the origin lists.
    async fn list(&self, subject: &Digest) -> Result<Vec<Descriptor>> {
        match self {
            Origin::Registry {
                client,
                repository,
                location,
            } => client
                .referrers(repository, subject, None)
                .await
                .map_err(|source| Error::Registry {
                    operation: Operation::ListReferrers,
                    location: location.to_string(),
                    source,
                }),
            Origin::Layout { layout, .. } => Ok(layout.referrers(subject, None).await?),
        }
    }

    /// Gets `referrer` (with everything it reaches) into `stage`, verified, and returns it
    /// as the origin serves it and the digests of its documents. Without a stage (the
    /// origin is the stage, or a copy within one registry moves it later) only its
    /// documents are read.
    async fn fetch(
        &self,
        referrer: &Descriptor,
        stage: Option<&Layout>,
        progress: &Progress,
    ) -> Result<(Descriptor, Vec<Digest>)> {
        let digest = digest_of(referrer)?;
        match (self, stage) {
            (
                Origin::Registry {
                    client,
                    repository,
                    location,
                },
                Some(stage),
            ) => {
                // Pulled under a tag of the scratch layout, which the destination never sees.
                let tag = format!(
                    "referrer-{}",
                    ocikit_client::referrers::fallback_tag(&digest)
                );
                let report = client
                    .pull(
                        repository,
                        digest.as_str(),
                        stage,
                        &tag,
                        &PullOptions::new().with_progress(progress.stage(Stage::Pull)),
                    )
                    .await
                    .map_err(|source| Error::Pull {
                        location: location.to_string(),
                        source,
                    })?;
                let root = report.root.ok_or_else(|| Error::NoImageReported {
                    location: location.to_string(),
                })?;
                let documents = layout_documents(stage, std::slice::from_ref(&root)).await?;
                Ok((root, documents))
            }
            (
                Origin::Registry {
                    client,
                    repository,
                    location,
                },
                None,
            ) => {
                let (root, _) = client
                    .get_manifest(repository, digest.as_str())
                    .await
                    .map_err(|source| Error::Registry {
                        operation: Operation::ReadManifest,
                        location: location.to_string(),
                        source,
                    })?;
                let documents = registry_documents(client, repository, &root, location).await?;
                Ok((root, documents))
            }
            (Origin::Layout { layout, .. }, Some(stage)) => {
                // Copied, not linked: every blob is hashed on the way.
                let options = LayoutCopyOptions::new()
                    .with_link_mode(ocikit_store::LinkMode::Copy)
                    .with_progress(progress.stage(Stage::Copy));
                ocikit_layout::copy_graph(layout, std::slice::from_ref(referrer), stage, &options)
                    .await?;
                let documents = layout_documents(stage, std::slice::from_ref(referrer)).await?;
                Ok((referrer.clone(), documents))
            }
            (Origin::Layout { layout, .. }, None) => {
                let documents = layout_documents(layout, std::slice::from_ref(referrer)).await?;
                Ok((referrer.clone(), documents))
            }
        }
    }

    fn location(&self) -> &Location {
        match self {
            Origin::Registry { location, .. } | Origin::Layout { location, .. } => location,
        }
    }
}

/// The index entry of a referrer: its media type, digest and size, and the `artifactType`
/// the listing gave it (a layout's own entries carry it, as `attach` writes them).
fn entry(listed: &Descriptor, fetched: &Descriptor) -> Result<Descriptor> {
    let digest = digest_of(fetched)?;
    let mut entry = descriptor::new(fetched.media_type().as_ref(), &digest, fetched.size())
        .map_err(|source| Error::InvalidDescriptor {
            digest: digest.clone(),
            source,
        })?;
    entry.set_artifact_type(listed.artifact_type().clone());
    Ok(entry)
}

/// Gathers the referrers of `subjects` (the documents the copy writes), of theirs, and so
/// on, breadth first: each listed by `origin` and fetched into `stage` (see
/// [`Origin::fetch`]). `seen` holds digests not to gather (the copy's own images). Returns
/// them parents first, each once.
pub(crate) async fn gather(
    origin: &Origin<'_>,
    stage: Option<&Layout>,
    subjects: Vec<Digest>,
    mut seen: HashSet<String>,
    progress: &Progress,
) -> Result<Vec<Found>> {
    let mut found = Vec::new();
    let mut frontier = subjects;
    let mut listed: HashSet<String> = HashSet::new();
    let mut depth = 0;
    while !frontier.is_empty() {
        depth += 1;
        let mut next = Vec::new();
        for subject in frontier {
            if !listed.insert(subject.to_string()) {
                continue;
            }
            for referrer in origin.list(&subject).await? {
                if !seen.insert(referrer.digest().to_string()) {
                    continue;
                }
                if depth > MAX_DEPTH {
                    return Err(Error::ReferrersTooDeep {
                        digest: referrer.digest().to_string(),
                        max: MAX_DEPTH,
                    });
                }
                if found.len() >= MAX_REFERRERS {
                    return Err(Error::TooManyReferrers {
                        location: origin.location().to_string(),
                        max: MAX_REFERRERS,
                    });
                }
                let fetched = origin.fetch(&referrer, stage, progress).await;
                let (fetched, documents) = fetched.map_err(|source| Error::Referrer {
                    digest: referrer.digest().to_string(),
                    subject: subject.to_string(),
                    source: Box::new(source),
                })?;
                next.extend(documents);
                found.push(Found {
                    subject: subject.clone(),
                    descriptor: entry(&referrer, &fetched)?,
                });
            }
        }
        frontier = next;
    }
    Ok(found)
}

/// The referrers `list` gives for each subject of `found`, by subject (each asked once).
async fn present<F, Fut>(found: &[Found], mut list: F) -> Result<HashMap<String, HashSet<String>>>
where
    F: FnMut(Digest) -> Fut,
    Fut: Future<Output = Result<Vec<Descriptor>>>,
{
    let mut present: HashMap<String, HashSet<String>> = HashMap::new();
    for one in found {
        let key = one.subject.to_string();
        if present.contains_key(&key) {
            continue;
        }
        let listed = list(one.subject.clone()).await?;
        present.insert(key, listed.iter().map(|d| d.digest().to_string()).collect());
    }
    Ok(present)
}

/// [`present`] from the referrers `repository` of the registry lists (its API or tag
/// schema), errors naming `destination`.
async fn present_in_registry(
    client: &Client,
    repository: &str,
    found: &[Found],
    destination: &Location,
) -> Result<HashMap<String, HashSet<String>>> {
    present(found, |subject| async move {
        client
            .referrers(repository, &subject, None)
            .await
            .map_err(|source| Error::Registry {
                operation: Operation::ListReferrers,
                location: destination.to_string(),
                source,
            })
    })
    .await
}

fn is_present(present: &HashMap<String, HashSet<String>>, one: &Found) -> bool {
    present
        .get(&one.subject.to_string())
        .is_some_and(|digests| digests.contains(&one.descriptor.digest().to_string()))
}

/// Writes `found` (gathered in `from`) into the layout `to`: the blobs of each referrer it
/// does not list yet, then their untagged `index.json` entries in one edit.
pub(crate) async fn into_layout(
    from: &Layout,
    found: &[Found],
    to: &Layout,
    options: &LayoutCopyOptions,
    destination: &Location,
) -> Result<ReferrersReport> {
    let present = present(found, |subject| async move {
        Ok(to.referrers(&subject, None).await?)
    })
    .await?;
    let mut written = ReferrersReport::default();
    let mut entries = Vec::new();
    for one in found {
        if is_present(&present, one) {
            written.skipped += 1;
            continue;
        }
        let report =
            ocikit_layout::copy_graph(from, std::slice::from_ref(&one.descriptor), to, options)
                .await
                .map_err(|source| Error::Copy {
                    digest: one.descriptor.digest().to_string(),
                    destination: destination.to_string(),
                    source,
                })?;
        written.blobs += report.copied + report.hardlinked + report.reflinked;
        written.copied += 1;
        entries.push(one.descriptor.clone());
    }
    if !entries.is_empty() {
        to.edit_index(|index| {
            for entry in &entries {
                index.add(entry)?;
            }
            Ok(true)
        })
        .await?;
        to.sync_referrers().await?;
    }
    Ok(written)
}

/// Pushes `found` (gathered in `from`) to `repository`, by digest, skipping those the
/// repository lists already.
pub(crate) async fn to_registry(
    client: &Client,
    from: &Layout,
    found: &[Found],
    repository: &str,
    options: &PushOptions,
    destination: &Location,
) -> Result<ReferrersReport> {
    let present = present_in_registry(client, repository, found, destination).await?;
    let mut written = ReferrersReport::default();
    for one in found {
        if is_present(&present, one) {
            written.skipped += 1;
            continue;
        }
        let report = client
            .push(from, &one.descriptor, repository, None, options)
            .await
            .map_err(|source| Error::Push {
                digest: one.descriptor.digest().to_string(),
                location: destination.to_string(),
                source,
            })?;
        written.blobs += report.transferred + report.mounted;
        written.copied += 1;
    }
    Ok(written)
}

/// Copies `found` from repository `from` to `to` of one registry by digest (documents
/// only; blobs mounted), skipping those `to` lists already.
pub(crate) async fn within_registry(
    client: &Client,
    from: &str,
    found: &[Found],
    to: &str,
    options: &CopyWithinOptions,
    (source, destination): (&Location, &Location),
) -> Result<ReferrersReport> {
    let present = present_in_registry(client, to, found, destination).await?;
    let mut written = ReferrersReport::default();
    for one in found {
        if is_present(&present, one) {
            written.skipped += 1;
            continue;
        }
        let report = client
            .copy_within(from, one.descriptor.digest().as_ref(), to, None, options)
            .await
            .map_err(|err| Error::CopyWithin {
                source_location: source.to_string(),
                destination: destination.to_string(),
                source: err,
            })?;
        written.blobs += report.transferred + report.mounted;
        written.copied += 1;
    }
    Ok(written)
}
