//! Copying images, indexes and whole layouts between layouts on any stores.
//!
//! A copy walks the graph from its roots ([`Layout::read_document`],
//! [`Document::children`](crate::Document::children)),
//! then copies every blob the destination lacks, **children before parents** (layers and
//! configs, then the manifests that name them, then the indexes above), several blobs at once.
//! Each blob is streamed and verified on the way in (the destination publishes it only if
//! it hashes to its digest), so a manifest never lands before its blobs and nothing corrupt
//! lands at all. Tags are set only once everything they reach is present.
//!
//! Between two [`ocikit_store::FsStore`]s, blobs go file to file
//! ([`ocikit_store::Store::link_blob`]): a reflink where the filesystem has them, else a copy
//! made by the kernel. Either way the destination is independent of the source: a byte
//! later flipped in one never shows in the other. Hardlinks, which make the two layouts
//! share blob files (corrupting one corrupts both), are made only when asked for
//! ([`CopyOptions::with_link_mode`] with [`LinkMode::Hardlink`]). By default the
//! destination still hashes what it links or copies ([`CopyOptions::with_trusted_source`]
//! says when it need not).
//!
//! ```
//! use ocikit_layout::copy::{CopyOptions, copy_tag};
//! use ocikit_layout::Layout;
//! use ocikit_store::MemoryStore;
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let source = Layout::create(MemoryStore::new()).await?;
//! let config = source.put_blob("application/vnd.oci.empty.v1+json", b"{}").await?;
//! source.set_tag("v1", &config).await?;
//! let destination = Layout::create(MemoryStore::new()).await?;
//! let report = copy_tag(&source, "v1", &destination, Some("copied"), &CopyOptions::new()).await?;
//! assert_eq!(report.copied, 1);
//! assert_eq!(destination.resolve("copied").await?.digest(), config.digest());
//! # Ok::<(), ocikit_layout::Error>(())
//! # }).unwrap();
//! ```

use std::collections::HashSet;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use ocikit_digest::oci_spec::image::Descriptor;
use ocikit_digest::{Digest, platform};
use ocikit_store::{LinkMode, LinkTrust, Linked, Store, StoreExt};
use tokio::io::AsyncWriteExt;

use crate::platform::PlatformQuery;
use crate::progress::{Event, Operation, Progress};
use crate::{Error, Layout, Result};

/// How many levels of documents below a root a walk follows ([`ocikit_digest::graph`]'s
/// one limit).
pub const MAX_GRAPH_DEPTH: usize = ocikit_digest::graph::MAX_DEPTH;
/// How many distinct blobs one walk may reach ([`ocikit_digest::graph`]'s one limit).
pub const MAX_GRAPH_NODES: usize = ocikit_digest::graph::MAX_NODES;
/// Blobs copied at once by default.
pub const DEFAULT_CONCURRENCY: usize = 4;

/// How a copy runs.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct CopyOptions {
    /// Blobs copied at once (at least 1).
    pub concurrency: usize,
    /// Where [`Operation::Copy`] events go.
    pub progress: Progress,
    /// Whether blobs go file to file (reflink, kernel copy or hardlink, as [`Self::link`]
    /// says) where both stores are local; otherwise they are streamed.
    pub links: bool,
    /// What a file-to-file copy may share with the source: an independent copy (the
    /// default) or, with [`LinkMode::Hardlink`], the source's very files.
    pub link: LinkMode,
    /// Whether linked files are re-hashed before they are published.
    pub trust: LinkTrust,
    /// From an index, copy only this platform's image ([`CopyOptions::select`]); `None`
    /// copies an index whole.
    pub platform: Option<PlatformQuery>,
}

impl Default for CopyOptions {
    fn default() -> CopyOptions {
        CopyOptions::new()
    }
}

impl CopyOptions {
    /// [`DEFAULT_CONCURRENCY`] blobs at once, no progress, file-to-file copies on, as
    /// independent copies, verified.
    pub fn new() -> CopyOptions {
        CopyOptions {
            concurrency: DEFAULT_CONCURRENCY,
            progress: Progress::none(),
            links: true,
            link: LinkMode::Copy,
            trust: LinkTrust::Verify,
            platform: None,
        }
    }

    /// These options copying, from an index, only the image for `platform` (`None`: the
    /// whole index). An image manifest is copied as it is, whatever its platform.
    pub fn with_platform(mut self, platform: Option<PlatformQuery>) -> CopyOptions {
        self.platform = platform;
        self
    }

    /// What a copy of `root` takes: `root` itself, or, when a platform is set and `root`
    /// is an index, the manifest [`crate::platform::resolve`] finds for it there (with
    /// the index entry's platform). No match is [`Error::PlatformNotFound`].
    pub async fn select(&self, layout: &Layout, root: &Descriptor) -> Result<Descriptor> {
        match &self.platform {
            Some(query) if ocikit_digest::media_type::is_index_like(root.media_type().as_ref()) => {
                let found = crate::platform::resolve(layout, root, query).await?;
                Ok(untagged(&found.descriptor))
            }
            _ => Ok(root.clone()),
        }
    }

    /// These options copying `n` blobs at once.
    pub fn with_concurrency(mut self, n: usize) -> CopyOptions {
        self.concurrency = n.max(1);
        self
    }

    /// These options reporting to `progress`.
    pub fn with_progress(mut self, progress: Progress) -> CopyOptions {
        self.progress = progress;
        self
    }

    /// These options with the file-to-file fast path (reflink, kernel copy, hardlink) on or
    /// off; off streams every blob through a verifying writer.
    pub fn with_links(mut self, on: bool) -> CopyOptions {
        self.links = on;
        self
    }

    /// What file-to-file copies may share: [`LinkMode::Copy`] (the default) gives the
    /// destination files of its own; [`LinkMode::Hardlink`] makes source and destination
    /// share blob files, so corrupting one corrupts both.
    pub fn with_link_mode(mut self, mode: LinkMode) -> CopyOptions {
        self.link = mode;
        self
    }

    /// Whether blobs shared by reflink or hardlink are published without re-hashing them.
    ///
    /// Off by default: the destination hashes each linked file (a read, no write), since a
    /// directory may hold blobs other tools wrote unverified. Turn it on only when every blob
    /// of the source store was written through ocikit's verifying writer (or checked since);
    /// blobs streamed from other backends are always verified.
    pub fn with_trusted_source(mut self, trusted: bool) -> CopyOptions {
        self.trust = if trusted {
            LinkTrust::Trusted
        } else {
            LinkTrust::Verify
        };
        self
    }
}

/// What a copy did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CopyReport {
    /// Blobs the walk reached.
    pub blobs: usize,
    /// Blobs copied into the destination (streamed, or copied file to file).
    pub copied: usize,
    /// Blobs shared by hardlink.
    pub hardlinked: usize,
    /// Blobs shared by reflink.
    pub reflinked: usize,
    /// Blobs the destination had already.
    pub skipped: usize,
    /// Bytes copied, streamed or file to file (reflinks, hardlinks and skips not counted).
    pub bytes: u64,
    /// Bytes of every blob the walk reached, each counted once, whether it was streamed,
    /// linked or already there: the size of what the destination now holds of the image.
    pub total_bytes: u64,
}

impl CopyReport {
    fn add(&mut self, other: &CopyReport) {
        self.blobs += other.blobs;
        self.copied += other.copied;
        self.hardlinked += other.hardlinked;
        self.reflinked += other.reflinked;
        self.skipped += other.skipped;
        self.bytes += other.bytes;
        self.total_bytes += other.total_bytes;
    }
}

/// One blob of a graph.
#[derive(Clone, Debug)]
pub(crate) struct Node {
    pub(crate) digest: Digest,
    pub(crate) size: u64,
    /// The verified bytes of a manifest or index (read during the walk).
    pub(crate) bytes: Option<Bytes>,
}

/// Every blob reachable from some roots, in levels: each level's blobs reference only blobs
/// of earlier levels, so copying level by level puts children before parents.
#[derive(Debug, Default)]
pub(crate) struct Graph {
    pub(crate) levels: Vec<Vec<Node>>,
}

impl Graph {
    pub(crate) fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.levels.iter().flatten()
    }
}

fn copy_error(digest: &Digest, error: Error) -> Error {
    match error {
        already @ Error::Copy { .. } => already,
        other => Error::Copy {
            digest: digest.clone(),
            source: Box::new(other),
        },
    }
}

/// Walks the graph under `roots` in `layout` ([`ocikit_digest::graph`], its limits),
/// reading (and verifying) every manifest and index. A document that is missing or corrupt
/// fails with [`Error::Copy`] naming it.
pub(crate) async fn walk(layout: &Layout, roots: &[Descriptor]) -> Result<Graph> {
    let graph = crate::document::walk(layout, roots, copy_error)
        .await
        .map_err(|e| match e {
            Error::InvalidDocument { ref digest, .. } => copy_error(&digest.clone(), e),
            other => other,
        })?;
    let levels = graph
        .levels()
        .into_iter()
        .map(|level| {
            level
                .into_iter()
                .map(|node| Node {
                    digest: node.digest.clone(),
                    size: node.size(),
                    bytes: node.bytes().cloned(),
                })
                .collect()
        })
        .collect();
    Ok(Graph { levels })
}

/// Copies every blob reachable from `roots` that `destination` lacks; tags nothing.
pub async fn copy_graph(
    source: &Layout,
    roots: &[Descriptor],
    destination: &Layout,
    options: &CopyOptions,
) -> Result<CopyReport> {
    let graph = walk(source, roots).await?;
    let mut report = CopyReport::default();
    for level in graph.levels {
        let results: Vec<CopyReport> = futures::stream::iter(level)
            .map(|node| copy_node(source.store(), destination.store(), node, options))
            .buffer_unordered(options.concurrency.max(1))
            .try_collect()
            .await?;
        for one in &results {
            report.add(one);
        }
    }
    Ok(report)
}

async fn copy_node(
    source: &dyn Store,
    destination: &dyn Store,
    node: Node,
    options: &CopyOptions,
) -> Result<CopyReport> {
    let digest = node.digest.clone();
    copy_blob(source, destination, node, options)
        .await
        .map_err(|e| copy_error(&digest, e))
}

async fn copy_blob(
    source: &dyn Store,
    destination: &dyn Store,
    node: Node,
    options: &CopyOptions,
) -> Result<CopyReport> {
    let progress = &options.progress;
    let Node {
        digest,
        size,
        bytes,
    } = node;
    let mut report = CopyReport {
        blobs: 1,
        total_bytes: size,
        ..CopyReport::default()
    };
    if destination.stat(&digest).await? == Some(size) {
        progress.emit(Event::Skipped {
            operation: Operation::Copy,
            digest,
            size,
        });
        report.skipped = 1;
        return Ok(report);
    }
    progress.emit(Event::Started {
        operation: Operation::Copy,
        digest: digest.clone(),
        size,
    });
    if let Some(bytes) = bytes {
        // A manifest or index read (and verified) by the walk.
        destination.put_verified(&digest, &bytes).await?;
        report.copied = 1;
        report.bytes = size;
        progress.emit(Event::Done {
            operation: Operation::Copy,
            digest,
            bytes: size,
        });
        return Ok(report);
    }
    let blob = source.open(&digest, None).await?;
    if blob.size() != size {
        return Err(Error::Store(ocikit_store::Error::SizeMismatch {
            expected: size,
            actual: blob.size(),
        }));
    }
    if options.links
        && let Some(file) = blob.local_file()
    {
        match destination
            .link_blob(&digest, size, file, options.trust, options.link)
            .await?
        {
            Linked::NotSupported => {}
            how => {
                match how {
                    Linked::Hardlink => report.hardlinked = 1,
                    Linked::Reflink => report.reflinked = 1,
                    Linked::Copied => {
                        report.copied = 1;
                        report.bytes = size;
                    }
                    _ => report.skipped = 1,
                }
                progress.emit(Event::Done {
                    operation: Operation::Copy,
                    digest,
                    bytes: size,
                });
                return Ok(report);
            }
        }
    }
    let mut writer = destination.writer_with(digest.algorithm()).await?;
    let mut stream = blob.into_stream();
    let mut done = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        writer
            .write_all(&chunk)
            .await
            .map_err(ocikit_store::Error::Stream)?;
        done += chunk.len() as u64;
        progress.emit(Event::Progress {
            operation: Operation::Copy,
            digest: digest.clone(),
            bytes: done,
        });
    }
    writer.commit(&digest, size).await?;
    report.copied = 1;
    report.bytes = size;
    progress.emit(Event::Done {
        operation: Operation::Copy,
        digest,
        bytes: size,
    });
    Ok(report)
}

/// Copies the image or index `root` (with everything it reaches) into `destination` and
/// tags it `tag` there, once all its blobs are present. With a platform set
/// ([`CopyOptions::with_platform`]) an index's image for that platform is copied and
/// tagged instead.
pub async fn copy_image(
    source: &Layout,
    root: &Descriptor,
    destination: &Layout,
    tag: &str,
    options: &CopyOptions,
) -> Result<CopyReport> {
    crate::index::validate_tag(tag)?;
    let root = options.select(source, root).await?;
    let report = copy_graph(source, std::slice::from_ref(&root), destination, options).await?;
    destination.set_tag(tag, &untagged(&root)).await?;
    Ok(report)
}

/// How much an image is: the blobs reachable from `roots` in `layout` and their bytes, each
/// blob counted once (as [`CopyReport::blobs`] and [`CopyReport::total_bytes`] count a
/// copy of it).
pub async fn reach(layout: &Layout, roots: &[Descriptor]) -> Result<(usize, u64)> {
    let graph = walk(layout, roots).await?;
    Ok(graph.nodes().fold((0, 0), |(blobs, bytes), node| {
        (blobs + 1, bytes + node.size)
    }))
}

/// What an image holds, as `ocikit ls` shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Footprint {
    /// Blobs reachable from the root (documents, configs, layers), each counted once.
    pub blobs: usize,
    /// Their bytes.
    pub bytes: u64,
    /// The platforms of its images (`os/arch[/variant]`), sorted, each once: an index
    /// entry's `platform`, else the image config's; artifacts have none.
    pub platforms: Vec<String>,
}

/// The footprint of the image or index `root` in `layout`: one walk
/// ([`ocikit_digest::graph`]), every document verified and parsed strictly, and the config
/// of each image without a platform in its index entry read strictly
/// ([`Layout::read_image_config`]).
pub async fn footprint(layout: &Layout, root: &Descriptor) -> Result<Footprint> {
    let graph = crate::document::walk(layout, std::slice::from_ref(root), |_, e| e).await?;
    let mut platforms = Vec::new();
    for node in graph.nodes() {
        let Some(ocikit_digest::document::Document::Manifest { manifest, .. }) = &node.document
        else {
            continue;
        };
        if let Some(p) = node.descriptor.platform() {
            platforms.push(platform::format(p));
        } else if let Some(config) = layout.read_image_config(manifest.config()).await? {
            let p = config.platform();
            let (os, arch) = (p.os().to_string(), p.architecture().to_string());
            let short = platform::build(&os, &arch, p.variant().as_deref());
            platforms.push(platform::format(&short));
        }
    }
    platforms.sort();
    platforms.dedup();
    Ok(Footprint {
        blobs: graph.len(),
        bytes: graph.total_size(),
        platforms,
    })
}

/// Copies what `tag` points at in `source` to `destination`, tagged `new_tag` there (the
/// same tag when `None`).
pub async fn copy_tag(
    source: &Layout,
    tag: &str,
    destination: &Layout,
    new_tag: Option<&str>,
    options: &CopyOptions,
) -> Result<CopyReport> {
    let root = source.resolve(tag).await?;
    copy_image(source, &root, destination, new_tag.unwrap_or(tag), options).await
}

/// Copies every entry of `source`'s `index.json` (tagged or not) into `destination`, then
/// merges the entries into its index in one edit: tags are set (moved if they existed),
/// untagged entries added. Tags that break the `ref.name` grammar are refused before
/// anything is copied.
pub async fn copy_all(
    source: &Layout,
    destination: &Layout,
    options: &CopyOptions,
) -> Result<CopyReport> {
    let index = source.index().await?;
    let entries: Vec<Descriptor> = index.manifests().cloned().collect();
    for entry in &entries {
        if let Some(tag) = ref_name(entry) {
            crate::index::validate_tag(tag)?;
        }
    }
    let report = copy_graph(source, &entries, destination, options).await?;
    set_entries(destination, &entries).await?;
    Ok(report)
}

/// Merges index entries into `layout`'s index in one compare-and-swap edit.
pub(crate) async fn set_entries(layout: &Layout, entries: &[Descriptor]) -> Result<()> {
    let mut unique = HashSet::new();
    layout
        .edit_index(|index| {
            unique.clear();
            for entry in entries {
                match ref_name(entry) {
                    Some(tag) => index.set_tag(tag, entry)?,
                    None => {
                        if unique.insert(entry.digest().to_string()) {
                            index.add(entry)?;
                        }
                    }
                }
            }
            Ok(!entries.is_empty())
        })
        .await
        .map(|_| ())
}

pub(crate) fn ref_name(descriptor: &Descriptor) -> Option<&str> {
    descriptor
        .annotations()
        .as_ref()
        .and_then(|a| a.get(crate::REF_NAME))
        .map(String::as_str)
}

/// `descriptor` without its `ref.name` annotation (the tag it had where it came from).
pub(crate) fn untagged(descriptor: &Descriptor) -> Descriptor {
    let mut clean = descriptor.clone();
    if let Some(mut annotations) = clean.annotations().clone() {
        annotations.remove(crate::REF_NAME);
        clean.set_annotations((!annotations.is_empty()).then_some(annotations));
    }
    clean
}
