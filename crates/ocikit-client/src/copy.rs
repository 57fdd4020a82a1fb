//! Copying an image between two repositories of one registry without moving its blobs.
//!
//! Only the documents travel through the client: the manifest or index named is fetched and
//! verified (against the digest asked for, or for a tag against `Docker-Content-Digest`
//! when the registry sends one), then every manifest and index it reaches (each against the
//! digest and size its parent gives). The verified documents name the blobs; each blob the
//! destination lacks is mounted from the source repository
//! (`POST /v2/<to>/blobs/uploads/?mount=<digest>&from=<from>`). A registry that will not
//! mount one (it answers 202 with an upload session, as Distribution does when the
//! credentials cannot read the source) gets that one blob streamed: downloaded from the
//! source into a scratch directory through a verifying writer, then uploaded into the
//! session the registry opened. The documents are pushed last, children before parents,
//! the root under the destination's tag: nothing is tagged before everything it reaches is
//! in the destination repository.

use std::path::PathBuf;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use ocikit_digest::Digest;
use ocikit_digest::oci_spec::image::Descriptor;
use ocikit_layout::progress::{self, Event, Progress};
use ocikit_layout::{Layout, PlatformQuery};
use ocikit_store::FsStore;

use super::push::{self, Started};
use super::{Client, TransferReport, pull};
use crate::{Error, Operation, Result};

/// How [`Client::copy_within`] runs.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct CopyWithinOptions {
    /// `None`: an index is copied whole, every image in it. `Some`: the first image of the
    /// index matching the platform is copied (and tagged) instead, as
    /// [`super::PullOptions::platform`] picks it; a plain manifest is copied as it is.
    pub platform: Option<PlatformQuery>,
    /// Blobs mounted (or streamed) at once (at least 1), largest first.
    pub concurrency: usize,
    /// Where to make the scratch directory for blobs the registry will not mount (default:
    /// the system's temporary directory). Made only when one is needed, removed at the end:
    /// it is `.ocikit-copy.ocikit-scratch-RANDOM`, an [`ocikit_layout::Scratch`], locked
    /// while the copy runs, so one that a killed copy left there is removed by the next copy
    /// that needs scratch space in the same directory.
    pub scratch_dir: Option<PathBuf>,
    /// Where [`progress::Operation::Copy`] events go.
    pub progress: Progress,
}

impl Default for CopyWithinOptions {
    fn default() -> CopyWithinOptions {
        CopyWithinOptions::new()
    }
}

impl CopyWithinOptions {
    /// Whole indexes, [`super::DEFAULT_CONCURRENCY`] blobs at once, scratch in the system's
    /// temporary directory, no progress.
    pub fn new() -> CopyWithinOptions {
        CopyWithinOptions {
            platform: None,
            concurrency: super::DEFAULT_CONCURRENCY,
            scratch_dir: None,
            progress: Progress::none(),
        }
    }

    /// These options picking one platform's image out of an index.
    pub fn with_platform(mut self, platform: Option<PlatformQuery>) -> CopyWithinOptions {
        self.platform = platform;
        self
    }

    /// These options moving `n` blobs at once.
    pub fn with_concurrency(mut self, n: usize) -> CopyWithinOptions {
        self.concurrency = n.max(1);
        self
    }

    /// These options making their scratch directory (if any) in `dir`.
    pub fn with_scratch_dir(mut self, dir: Option<PathBuf>) -> CopyWithinOptions {
        self.scratch_dir = dir;
        self
    }

    /// These options reporting to `progress`.
    pub fn with_progress(mut self, progress: Progress) -> CopyWithinOptions {
        self.progress = progress;
        self
    }
}

/// How one blob got to the destination repository.
enum Moved {
    Present,
    Mounted,
    Streamed(u64),
}

/// The name the scratch space of [`Client::copy_within`] is made beside, in the scratch
/// directory: scratch directories are `.ocikit-copy.ocikit-scratch-RANDOM` there.
const SCRATCH_NAME: &str = "ocikit-copy";

/// The scratch layout for streamed blobs, made on first use: an [`ocikit_layout::Scratch`]
/// (locked while the copy runs, so that the next copy removes one a killed copy left).
struct Scratch {
    registry: String,
    repository: String,
    parent: PathBuf,
    made: tokio::sync::OnceCell<(ocikit_layout::Scratch, Layout)>,
}

impl Scratch {
    fn new(registry: &str, repository: &str, parent: Option<PathBuf>) -> Scratch {
        Scratch {
            registry: registry.to_string(),
            repository: repository.to_string(),
            parent: parent.unwrap_or_else(std::env::temp_dir),
            made: tokio::sync::OnceCell::new(),
        }
    }

    async fn layout(&self) -> Result<&Layout> {
        let (_, layout) = self
            .made
            .get_or_try_init(|| async {
                let layout_error =
                    |operation: Operation, source: ocikit_layout::Error| Error::Layout {
                        registry: self.registry.clone(),
                        repository: self.repository.clone(),
                        operation: Box::new(operation),
                        source: Box::new(source),
                    };
                // Stale scratch directories of killed copies go first.
                let dir = ocikit_layout::Scratch::near(self.parent.join(SCRATCH_NAME))
                    .await
                    .map_err(|e| {
                        layout_error(
                            Operation::ScratchSpace {
                                parent: self.parent.clone(),
                            },
                            e,
                        )
                    })?;
                let operation = || Operation::ScratchLayout {
                    dir: dir.path().to_path_buf(),
                };
                let store = FsStore::open(dir.path().join("layout"))
                    .await
                    .map_err(|e| layout_error(operation(), e.into()))?;
                let layout = Layout::create(store)
                    .await
                    .map_err(|e| layout_error(operation(), e))?;
                Ok::<_, Error>((dir, layout))
            })
            .await?;
        Ok(layout)
    }

    /// Removes the scratch directory, if one was made (off the async threads).
    async fn remove(self) {
        if let Some((dir, layout)) = self.made.into_inner() {
            drop(layout);
            // One that cannot be removed now is removed by the next copy (its lock is free).
            let _ = tokio::task::spawn_blocking(move || drop(dir)).await;
        }
    }
}

/// The root of a copy from `source`'s `from:reference` to `target`'s `to` (under
/// `destination` when given): the tag to set (none when `destination` is a digest), the
/// root's descriptor, bytes and digest. A `destination` digest must be the root's
/// ([`Error::NotTheSource`]). Shared by [`copy_within`] and [`Client::copy_from`].
pub(super) struct CopyRoot<'a> {
    pub(super) tag: Option<&'a str>,
    pub(super) root: Descriptor,
    pub(super) bytes: Bytes,
    pub(super) digest: Digest,
}

pub(super) async fn copy_root<'a>(
    source: &Client,
    from: &str,
    reference: &str,
    target: &Client,
    to: &str,
    destination: Option<&'a str>,
    platform: Option<&PlatformQuery>,
) -> Result<CopyRoot<'a>> {
    source.validate_repository(from)?;
    let wanted = match destination {
        Some(destination) => pull::parse_reference(target, to, destination)?,
        None => {
            target.validate_repository(to)?;
            None
        }
    };
    let tag = destination.filter(|_| wanted.is_none());
    let (root, bytes) = pull::resolve_root(source, from, reference, None, platform).await?;
    let digest = pull::digest_of(source, from, &root)?;
    if let Some(wanted) = wanted
        && wanted != digest
    {
        return Err(Error::NotTheSource {
            registry: target.registry().to_string(),
            repository: to.to_string(),
            wanted: Box::new(wanted),
            actual: Box::new(digest),
        });
    }
    Ok(CopyRoot {
        tag,
        root,
        bytes,
        digest,
    })
}

pub(super) async fn copy_within(
    client: &Client,
    from: &str,
    reference: &str,
    to: &str,
    destination: Option<&str>,
    options: &CopyWithinOptions,
) -> Result<TransferReport> {
    let CopyRoot {
        tag,
        root,
        bytes: root_bytes,
        digest: root_digest,
    } = copy_root(
        client,
        from,
        reference,
        client,
        to,
        destination,
        options.platform.as_ref(),
    )
    .await?;
    // Every document, fetched and verified, children before parents; the blobs they name.
    let pull::Graph {
        documents,
        blobs: order,
        mut report,
    } = pull::graph(client, from, &root, root_bytes).await?;
    let scratch = Scratch::new(client.registry(), to, options.scratch_dir.clone());
    let moved: Result<Vec<Moved>> = futures::stream::iter(order)
        .map(|(digest, size)| move_blob(client, from, to, digest, size, &scratch, options))
        .buffer_unordered(options.concurrency.max(1))
        .try_collect()
        .await;
    scratch.remove().await;
    for result in moved? {
        match result {
            Moved::Present => report.skipped += 1,
            Moved::Mounted => report.mounted += 1,
            Moved::Streamed(bytes) => {
                report.transferred += 1;
                report.bytes += bytes;
            }
        }
    }
    for (descriptor, bytes) in documents {
        let digest = pull::digest_of(client, from, &descriptor)?;
        let target = match tag {
            Some(tag) if digest == root_digest => tag.to_string(),
            _ => digest.to_string(),
        };
        let document = pull::parse_document(client, from, &descriptor, &bytes)?;
        let acknowledged = push::put_manifest(client, to, &target, &descriptor, bytes).await?;
        if let Some(subject) = document.subject()
            && !acknowledged
        {
            // No `OCI-Subject`: the registry keeps no referrers index; the tag schema.
            let subject = pull::digest_of(client, from, subject)?;
            super::referrers::add_to_fallback(client, to, &subject, &descriptor, &document).await?;
        }
        report.manifests += 1;
    }
    report.root = Some(root);
    Ok(report)
}

/// Gets each of `blobs` (digest, size) of repository `from` into repository `to`: present
/// already, mounted, or streamed where the registry will not mount. What
/// [`Client::copy_within`] does for the blobs of an image, for callers that make the
/// documents themselves (an image edited on the way).
pub(super) async fn copy_blobs_within(
    client: &Client,
    from: &str,
    to: &str,
    blobs: &[(Digest, u64)],
    options: &CopyWithinOptions,
) -> Result<TransferReport> {
    client.validate_repository(from)?;
    client.validate_repository(to)?;
    let mut report = TransferReport {
        blobs: blobs.len(),
        total_bytes: blobs.iter().map(|(_, size)| size).sum(),
        ..TransferReport::default()
    };
    let scratch = Scratch::new(client.registry(), to, options.scratch_dir.clone());
    let moved: Result<Vec<Moved>> = futures::stream::iter(blobs.iter().cloned())
        .map(|(digest, size)| move_blob(client, from, to, digest, size, &scratch, options))
        .buffer_unordered(options.concurrency.max(1))
        .try_collect()
        .await;
    scratch.remove().await;
    for result in moved? {
        match result {
            Moved::Present => report.skipped += 1,
            Moved::Mounted => report.mounted += 1,
            Moved::Streamed(bytes) => {
                report.transferred += 1;
                report.bytes += bytes;
            }
        }
    }
    Ok(report)
}

/// Gets one blob into `to`: present already, mounted from `from`, or (where the registry
/// opens an upload session instead of mounting) downloaded verified into the scratch
/// layout and uploaded into that session.
async fn move_blob(
    client: &Client,
    from: &str,
    to: &str,
    digest: Digest,
    size: u64,
    scratch: &Scratch,
    options: &CopyWithinOptions,
) -> Result<Moved> {
    let progress = &options.progress;
    if client.blob_exists(to, &digest).await? {
        progress.emit(Event::Skipped {
            operation: progress::Operation::Copy,
            digest,
            size,
        });
        return Ok(Moved::Present);
    }
    progress.emit(Event::Started {
        operation: progress::Operation::Copy,
        digest: digest.clone(),
        size,
    });
    let moved = match push::start_upload(client, to, &digest, Some(from)).await? {
        Started::Mounted => Moved::Mounted,
        Started::Session(session) => {
            let layout = scratch.layout().await?;
            pull::fetch_blob(
                client,
                from,
                layout.store(),
                digest.clone(),
                size,
                &Progress::none(),
            )
            .await?;
            let uploaded =
                push::upload_into(client, layout, to, &digest, size, session, progress).await;
            // Scratch space is held only while the blob is in flight.
            layout.store().delete(&digest).await.ok();
            uploaded?;
            Moved::Streamed(size)
        }
    };
    progress.emit(Event::Done {
        operation: progress::Operation::Copy,
        digest,
        bytes: size,
    });
    Ok(moved)
}
