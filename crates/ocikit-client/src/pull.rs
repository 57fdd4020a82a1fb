//! Pulling: manifests resolved and verified, blobs streamed into a layout's store.

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use ocikit_digest::graph::{GraphError, Limits, Walker};
use ocikit_digest::oci_spec::image::Descriptor;
use ocikit_digest::{Digest, Reference, descriptor, media_type, platform};
use ocikit_layout::document::{Document, is_document};
use ocikit_layout::image::ImageConfig;
use ocikit_layout::progress::{self, Event, Progress};
use ocikit_layout::{Layout, MAX_DOCUMENT_SIZE, PlatformQuery};
use ocikit_store::{Store, StoreExt};
use reqwest::header::{self, HeaderValue};
use reqwest::{Method, StatusCode};
use tokio::io::AsyncWriteExt;

use super::{Client, MANIFEST_ACCEPT, Request, TransferReport, declared_media_type, read_limited};
use crate::{Error, Operation, Result};

/// Nested indexes followed at most ([`ocikit_digest::graph`]'s one limit).
const MAX_DEPTH: usize = ocikit_digest::graph::MAX_DEPTH;

/// Blobs a pull downloads at once unless told otherwise: more than a push sends
/// ([`super::DEFAULT_CONCURRENCY`]), as skopeo does, so that a typical image's layers and
/// config all start together. With fewer at once, the last large layer runs alone after the
/// others: a tail where one download (its hashing on one core) is all the work there is.
const DEFAULT_PULL_CONCURRENCY: usize = 6;

/// How a pull runs.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct PullOptions {
    /// `None`: an index is pulled whole, every image in it (the digest pulled is the
    /// digest tagged). `Some`: the first image of the index matching the platform (the
    /// rules of [`ocikit_layout::platform`]) is pulled and tagged instead; a plain
    /// manifest is pulled as it is.
    pub platform: Option<PlatformQuery>,
    /// Blobs downloaded at once (at least 1), largest first.
    pub concurrency: usize,
    /// Where [`progress::Operation::Copy`] events go.
    pub progress: Progress,
}

impl Default for PullOptions {
    fn default() -> PullOptions {
        PullOptions::new()
    }
}

impl PullOptions {
    /// Whole indexes, six blobs at once, no progress.
    pub fn new() -> PullOptions {
        PullOptions {
            platform: None,
            concurrency: DEFAULT_PULL_CONCURRENCY,
            progress: Progress::none(),
        }
    }

    /// These options picking one platform's image out of an index.
    pub fn with_platform(mut self, platform: Option<PlatformQuery>) -> PullOptions {
        self.platform = platform;
        self
    }

    /// These options downloading `n` blobs at once.
    pub fn with_concurrency(mut self, n: usize) -> PullOptions {
        self.concurrency = n.max(1);
        self
    }

    /// These options reporting to `progress`.
    pub fn with_progress(mut self, progress: Progress) -> PullOptions {
        self.progress = progress;
        self
    }
}

/// Checks `reference` (a tag or a digest) against the grammar; returns the digest, if it is
/// one.
pub(super) fn parse_reference(
    client: &Client,
    repository: &str,
    reference: &str,
) -> Result<Option<Digest>> {
    client.validate_repository(repository)?;
    let joined = if reference.contains(':') {
        format!("{repository}@{reference}")
    } else {
        format!("{repository}:{reference}")
    };
    let parsed = Reference::parse(&joined).map_err(|e| Error::InvalidName {
        registry: client.registry().to_string(),
        name: reference.to_string(),
        source: e,
    })?;
    Ok(parsed.digest().cloned())
}

pub(super) async fn get_manifest(
    client: &Client,
    repository: &str,
    reference: &str,
) -> Result<(Descriptor, Bytes)> {
    let requested = parse_reference(client, repository, reference)?;
    let req = Request::new(
        Method::GET,
        client.url(repository, &format!("manifests/{reference}"))?,
        repository,
        Operation::PullManifest {
            reference: reference.to_string(),
        },
    )
    .header(header::ACCEPT, MANIFEST_ACCEPT);
    let response = client.expect(&req, &[StatusCode::OK]).await?;
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let claimed = response
        .headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| Digest::parse(v.trim()).ok());
    let invalid = |reason: String| Error::InvalidResponse {
        registry: client.registry().to_string(),
        repository: repository.to_string(),
        operation: Box::new(req.operation.clone()),
        reason,
    };
    let bytes = read_limited(response, MAX_DOCUMENT_SIZE as usize)
        .await
        .map_err(|e| client.request_error(&req, e))?
        .ok_or_else(|| invalid("manifest larger than 16 MiB".into()))?;
    let mismatch = |expected: &Digest, actual: Digest| Error::ContentMismatch {
        registry: client.registry().to_string(),
        repository: repository.to_string(),
        expected: Box::new(expected.clone()),
        actual: Box::new(actual),
    };
    let hash = |digest: &Digest| {
        Digest::compute(digest.algorithm(), &bytes)
            .map_err(|_| invalid(format!("cannot verify {digest}: unsupported algorithm")))
    };
    // The body is verified against what was asked for; `Docker-Content-Digest` is only
    // ever checked, never believed.
    let digest = match &requested {
        Some(wanted) => {
            let actual = hash(wanted)?;
            if &actual != wanted {
                return Err(mismatch(wanted, actual));
            }
            actual
        }
        None => Digest::sha256(&bytes),
    };
    if let Some(claimed) = &claimed
        && claimed.is_supported()
    {
        let actual = hash(claimed)?;
        if &actual != claimed {
            return Err(mismatch(claimed, actual));
        }
    }
    let declared = declared_media_type(content_type.as_deref(), &bytes)
        .ok_or_else(|| invalid("neither a mediaType nor a Content-Type".into()))?;
    if let Some(content_type) = &content_type {
        let essence = media_type::essence(content_type);
        if is_document(essence) && essence != declared {
            return Err(invalid(format!(
                "Content-Type {essence} but mediaType {declared} (CVE-2021-41190)"
            )));
        }
    }
    if !is_document(&declared) {
        return Err(invalid(format!(
            "{declared} is not a manifest or index type"
        )));
    }
    let descriptor = descriptor::new(&declared, &digest, bytes.len() as u64)
        .map_err(|e| invalid(format!("no descriptor can describe it: {e}")))?;
    Ok((descriptor, bytes))
}

/// Fetches a document a descriptor names, checking its size too.
async fn get_child(
    client: &Client,
    repository: &str,
    child: &Descriptor,
) -> Result<(Descriptor, Bytes)> {
    let digest = digest_of(client, repository, child)?;
    let (_, bytes) = get_manifest(client, repository, digest.as_str()).await?;
    if bytes.len() as u64 != child.size() {
        return Err(Error::ContentSize {
            registry: client.registry().to_string(),
            repository: repository.to_string(),
            digest,
            expected: child.size(),
            actual: bytes.len() as u64,
        });
    }
    Ok((child.clone(), bytes))
}

pub(super) fn digest_of(client: &Client, repository: &str, d: &Descriptor) -> Result<Digest> {
    descriptor::digest_of(d).map_err(|e| Error::InvalidResponse {
        registry: client.registry().to_string(),
        repository: repository.to_string(),
        operation: Box::new(Operation::ReadDescriptor),
        reason: e.to_string(),
    })
}

pub(super) fn parse_document(
    client: &Client,
    repository: &str,
    descriptor: &Descriptor,
    bytes: &Bytes,
) -> Result<Document> {
    // The digest was checked when the document was fetched; parsed again here only to name
    // it in the error.
    let digest = digest_of(client, repository, descriptor)?;
    ocikit_layout::document::parse(descriptor, bytes.clone()).map_err(|e| Error::Layout {
        registry: client.registry().to_string(),
        repository: repository.to_string(),
        operation: Box::new(Operation::ReadManifest { digest }),
        source: Box::new(e),
    })
}

/// Fetches and verifies `reference` of `repository`, and with a platform query, the first
/// image of the index matching it instead (see [`PullOptions::platform`]). Configs of index
/// entries without a `platform` are fetched to match by; into `layout`'s store when given,
/// else only in memory.
pub(super) async fn resolve_root(
    client: &Client,
    repository: &str,
    reference: &str,
    layout: Option<&Layout>,
    query: Option<&PlatformQuery>,
) -> Result<(Descriptor, Bytes)> {
    let (root, root_bytes) = get_manifest(client, repository, reference).await?;
    let Some(query) = query else {
        return Ok((root, root_bytes));
    };
    if !media_type::is_index_like(root.media_type().as_ref()) {
        return Ok((root, root_bytes));
    }
    let mut available = Vec::new();
    match select(
        client,
        repository,
        layout,
        &root,
        &root_bytes,
        query,
        1,
        &mut available,
    )
    .await?
    {
        Some(found) => Ok(found),
        None => Err(Error::PlatformNotFound {
            registry: client.registry().to_string(),
            repository: repository.to_string(),
            reference: reference.to_string(),
            wanted: query
                .platform()
                .map_or_else(|| "any".into(), platform::format),
            available,
        }),
    }
}

pub(super) async fn pull(
    client: &Client,
    repository: &str,
    reference: &str,
    layout: &Layout,
    tag: &str,
    options: &PullOptions,
) -> Result<TransferReport> {
    let layout_error = |operation: Operation, e: ocikit_layout::Error| Error::Layout {
        registry: client.registry().to_string(),
        repository: repository.to_string(),
        operation: Box::new(operation),
        source: Box::new(e),
    };
    ocikit_layout::validate_tag(tag).map_err(|e| {
        layout_error(
            Operation::Tag {
                tag: tag.to_string(),
            },
            e,
        )
    })?;
    let (root, root_bytes) = resolve_root(
        client,
        repository,
        reference,
        Some(layout),
        options.platform.as_ref(),
    )
    .await?;
    let Graph {
        documents,
        blobs: order,
        mut report,
    } = graph(client, repository, &root, root_bytes).await?;
    let results: Vec<Option<u64>> = futures::stream::iter(order)
        .map(|(digest, size)| {
            fetch_blob(
                client,
                repository,
                layout.store(),
                digest,
                size,
                &options.progress,
            )
        })
        .buffer_unordered(options.concurrency.max(1))
        .try_collect()
        .await?;
    for result in results {
        match result {
            Some(bytes) => {
                report.transferred += 1;
                report.bytes += bytes;
            }
            None => report.skipped += 1,
        }
    }
    for (descriptor, bytes) in &documents {
        let digest = digest_of(client, repository, descriptor)?;
        layout
            .store()
            .put_verified(&digest, bytes)
            .await
            .map_err(|e| {
                layout_error(
                    Operation::ReadManifest {
                        digest: digest.clone(),
                    },
                    e.into(),
                )
            })?;
        report.manifests += 1;
    }
    layout.set_tag(tag, &root).await.map_err(|e| {
        layout_error(
            Operation::Tag {
                tag: tag.to_string(),
            },
            e,
        )
    })?;
    report.root = Some(root);
    Ok(report)
}

/// The image graph under a root document, fetched and verified.
pub(super) struct Graph {
    /// Every document, children before parents.
    pub(super) documents: Vec<(Descriptor, Bytes)>,
    /// Every leaf blob once, largest first (ties by digest), so the long transfers start
    /// first.
    pub(super) blobs: Vec<(Digest, u64)>,
    /// A report with the blob count and the total of their sizes filled in.
    pub(super) report: TransferReport,
}

/// Walks the documents under `root` (whose bytes are `root_bytes`, already verified) by the
/// one walk ([`ocikit_digest::graph`], its limits), fetching and verifying each, and
/// collects the blobs they name.
pub(super) async fn graph(
    client: &Client,
    repository: &str,
    root: &Descriptor,
    root_bytes: Bytes,
) -> Result<Graph> {
    let root_digest = digest_of(client, repository, root)?;
    let refused = |e: GraphError| Error::Layout {
        registry: client.registry().to_string(),
        repository: repository.to_string(),
        operation: Box::new(Operation::ReadManifest {
            digest: root_digest.clone(),
        }),
        source: Box::new(e.into()),
    };
    let mut walker = Walker::new(Limits::new());
    walker.add_root(root).map_err(refused)?;
    let mut root_bytes = Some(root_bytes);
    while let Some(wanted) = walker.next_wanted() {
        let bytes = match root_bytes.take() {
            Some(bytes) => bytes,
            None => get_child(client, repository, &wanted).await?.1,
        };
        walker.visit(&wanted, bytes).map_err(refused)?;
    }
    let walked = walker.finish().map_err(refused)?;
    let mut documents = Vec::new();
    let mut order = Vec::new();
    for node in walked.children_first() {
        match node.bytes() {
            Some(bytes) => documents.push((node.descriptor.clone(), bytes.clone())),
            None => order.push((node.digest.clone(), node.size())),
        }
    }
    let report = TransferReport {
        blobs: order.len(),
        total_bytes: order.iter().map(|(_, size)| size).sum(),
        ..TransferReport::default()
    };
    order.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.as_str().cmp(b.0.as_str())));
    Ok(Graph {
        documents,
        blobs: order,
        report,
    })
}

/// Finds the first image of an index matching `query`: entries with a `platform` are
/// matched by it, entries without one by their config (fetched, and kept in the store).
#[allow(clippy::too_many_arguments)]
fn select<'a>(
    client: &'a Client,
    repository: &'a str,
    layout: Option<&'a Layout>,
    _index: &'a Descriptor,
    bytes: &'a Bytes,
    query: &'a PlatformQuery,
    depth: usize,
    available: &'a mut Vec<String>,
) -> futures::future::BoxFuture<'a, Result<Option<(Descriptor, Bytes)>>> {
    Box::pin(async move {
        let Document::Index { index, .. } = parse_document(client, repository, _index, bytes)?
        else {
            return Ok(None);
        };
        for entry in index.manifests() {
            let kind = entry.media_type().to_string();
            if media_type::is_manifest_like(&kind) {
                if let Some(have) = entry.platform() {
                    available.push(platform::format(have));
                    if query.matches(have) {
                        return get_child(client, repository, entry).await.map(Some);
                    }
                    continue;
                }
                let (entry, entry_bytes) = get_child(client, repository, entry).await?;
                let Document::Manifest { manifest, .. } =
                    parse_document(client, repository, &entry, &entry_bytes)?
                else {
                    continue;
                };
                let config = manifest.config();
                if !ocikit_layout::image::is_image_config(config.media_type().as_ref()) {
                    continue;
                }
                let config_digest = digest_of(client, repository, config)?;
                let config_bytes = match layout {
                    Some(layout) => {
                        fetch_blob(
                            client,
                            repository,
                            layout.store(),
                            config_digest.clone(),
                            config.size(),
                            &Progress::none(),
                        )
                        .await?;
                        layout
                            .store()
                            .get_bytes(&config_digest, MAX_DOCUMENT_SIZE)
                            .await
                            .ok()
                            .flatten()
                            .unwrap_or_default()
                    }
                    None => get_small_blob(client, repository, &config_digest, config.size())
                        .await?
                        .unwrap_or_default(),
                };
                let Ok(parsed) = ImageConfig::parse(&config_digest, &config_bytes) else {
                    continue;
                };
                let have = parsed.platform();
                available.push(platform::format(&have));
                if query.matches(&have) {
                    let mut entry = entry;
                    entry.set_platform(Some(have));
                    return Ok(Some((entry, entry_bytes)));
                }
            } else if media_type::is_index_like(&kind) && depth < MAX_DEPTH {
                if entry.platform().as_ref().is_some_and(|p| !query.matches(p)) {
                    continue;
                }
                let (child, child_bytes) = get_child(client, repository, entry).await?;
                if let Some(found) = select(
                    client,
                    repository,
                    layout,
                    &child,
                    &child_bytes,
                    query,
                    depth + 1,
                    available,
                )
                .await?
                {
                    return Ok(Some(found));
                }
            }
        }
        Ok(None)
    })
}

/// Fetches a blob of at most [`MAX_DOCUMENT_SIZE`] bytes (a config) into memory, verified
/// against its digest and size; `None` when the descriptor says it is larger.
async fn get_small_blob(
    client: &Client,
    repository: &str,
    digest: &Digest,
    size: u64,
) -> Result<Option<Bytes>> {
    if size > MAX_DOCUMENT_SIZE {
        return Ok(None);
    }
    let req = Request::new(
        Method::GET,
        client.url(repository, &format!("blobs/{digest}"))?,
        repository,
        Operation::PullBlob {
            digest: digest.clone(),
        },
    );
    let response = client.expect(&req, &[StatusCode::OK]).await?;
    let size_error = |actual: u64| Error::ContentSize {
        registry: client.registry().to_string(),
        repository: repository.to_string(),
        digest: digest.clone(),
        expected: size,
        actual,
    };
    // One byte more than announced is enough to tell that it is too large.
    let bytes = read_limited(response, size as usize + 1)
        .await
        .map_err(|e| client.request_error(&req, e))?
        .ok_or_else(|| size_error(size + 1))?;
    if bytes.len() as u64 != size {
        return Err(size_error(bytes.len() as u64));
    }
    let actual =
        Digest::compute(digest.algorithm(), &bytes).map_err(|_| Error::InvalidResponse {
            registry: client.registry().to_string(),
            repository: repository.to_string(),
            operation: Box::new(req.operation.clone()),
            reason: format!("cannot verify {digest}: unsupported algorithm"),
        })?;
    if &actual != digest {
        return Err(Error::ContentMismatch {
            registry: client.registry().to_string(),
            repository: repository.to_string(),
            expected: Box::new(digest.clone()),
            actual: Box::new(actual),
        });
    }
    Ok(Some(bytes))
}

/// Streams a blob into `store` through a verifying writer, resuming with `Range` when the
/// download breaks off. Returns the bytes downloaded, or `None` when the store had it.
///
/// Where the store keeps partial downloads ([`Store::partial_downloads`]: a filesystem
/// layout), the bytes go to the blob's partial file instead of a temp file, so a download
/// that a killed process or a dropped connection interrupted resumes in the next run from
/// the bytes on disk: they are hashed first, and the whole is verified before it is
/// published. A resumed download that does not verify (the partial file was changed on
/// disk) is discarded and fetched once more from the start. Other stores start over in a
/// new process.
pub(super) async fn fetch_blob(
    client: &Client,
    repository: &str,
    store: &dyn Store,
    digest: Digest,
    size: u64,
    progress: &Progress,
) -> Result<Option<u64>> {
    let operation = Operation::PullBlob {
        digest: digest.clone(),
    };
    let url = client.url(repository, &format!("blobs/{digest}"))?;
    let base_req = Request::new(Method::GET, url, repository, operation);
    let store_error = |e: ocikit_store::Error| client.layout_error(&base_req, e.into());
    let lock = client.download_lock(&digest);
    let _single_flight = lock.lock().await;
    if store.stat(&digest).await.map_err(store_error)? == Some(size) {
        progress.emit(Event::Skipped {
            operation: progress::Operation::Copy,
            digest,
            size,
        });
        return Ok(None);
    }
    progress.emit(Event::Started {
        operation: progress::Operation::Copy,
        digest: digest.clone(),
        size,
    });
    let partials = store.partial_downloads();
    let mut fresh_retry = false;
    loop {
        let sink = match &partials {
            Some(partials) => {
                let partial = partials.open(&digest, size).await.map_err(store_error)?;
                // Another process may have published it while this one waited for the lock.
                if store.stat(&digest).await.map_err(store_error)? == Some(size) {
                    partial.discard().await.map_err(store_error)?;
                    break;
                }
                Sink::Partial(partial)
            }
            None => Sink::Staged(
                store
                    .writer_with(digest.algorithm())
                    .await
                    .map_err(store_error)?,
            ),
        };
        let resumed = sink.len() > 0;
        match download(
            client, repository, store, &base_req, &digest, size, sink, progress,
        )
        .await
        {
            Err(Error::ContentMismatch { .. }) if resumed && !fresh_retry => {
                // The bytes kept on disk were not the blob's beginning: the partial file is
                // gone (discarded by the failed commit); fetch it whole, once.
                fresh_retry = true;
            }
            Err(e) => return Err(e),
            Ok(()) => break,
        }
    }
    progress.emit(Event::Done {
        operation: progress::Operation::Copy,
        digest,
        bytes: size,
    });
    Ok(Some(size))
}

/// Where a download's bytes go: a store's verifying writer, or a partial download kept
/// across processes.
enum Sink {
    Staged(ocikit_store::BlobWriter),
    Partial(ocikit_store::fs::PartialDownload),
}

impl Sink {
    /// The bytes held: where the download goes on from.
    fn len(&self) -> u64 {
        match self {
            Sink::Staged(writer) => writer.bytes_written(),
            Sink::Partial(partial) => partial.len(),
        }
    }

    /// Takes the next chunk as the connection handed it over (a partial download keeps
    /// it without copying it).
    async fn write(&mut self, chunk: Bytes) -> ocikit_store::Result<()> {
        match self {
            Sink::Staged(writer) => writer
                .write_all(&chunk)
                .await
                .map_err(ocikit_store::Error::Stream),
            Sink::Partial(partial) => partial.write_bytes(chunk).await,
        }
    }

    /// Drops what is held, to take the blob from its first byte.
    async fn restart(self, store: &dyn Store, digest: &Digest) -> ocikit_store::Result<Sink> {
        match self {
            Sink::Staged(writer) => {
                writer.abort().await.ok();
                Ok(Sink::Staged(store.writer_with(digest.algorithm()).await?))
            }
            Sink::Partial(mut partial) => {
                partial.restart().await?;
                Ok(Sink::Partial(partial))
            }
        }
    }

    /// Gives up this run: a staged write is discarded, a partial download kept for the next.
    async fn give_up(self) {
        match self {
            Sink::Staged(writer) => {
                writer.abort().await.ok();
            }
            Sink::Partial(partial) => {
                partial.suspend().await.ok();
            }
        }
    }

    /// Drops what is held, partial download included.
    async fn discard(self) {
        match self {
            Sink::Staged(writer) => {
                writer.abort().await.ok();
            }
            Sink::Partial(partial) => {
                partial.discard().await.ok();
            }
        }
    }

    async fn commit(self, digest: &Digest, size: u64) -> ocikit_store::Result<()> {
        match self {
            Sink::Staged(writer) => writer.commit(digest, size).await,
            Sink::Partial(partial) => partial.commit(digest, size).await,
        }
    }
}

/// Downloads the rest of a blob into `sink` (from the bytes it holds on), resuming with
/// `Range` as often as the client's retries allow, and commits it.
#[allow(clippy::too_many_arguments)]
async fn download(
    client: &Client,
    repository: &str,
    store: &dyn Store,
    base_req: &Request,
    digest: &Digest,
    size: u64,
    mut sink: Sink,
    progress: &Progress,
) -> Result<()> {
    let store_error = |e: ocikit_store::Error| client.layout_error(base_req, e.into());
    let size_error = |actual: u64| Error::ContentSize {
        registry: client.registry().to_string(),
        repository: repository.to_string(),
        digest: digest.clone(),
        expected: size,
        actual,
    };
    let mut done = sink.len();
    let mut resumes = 0u32;
    while done < size {
        let mut req = Request::new(
            Method::GET,
            base_req.url.clone(),
            repository,
            base_req.operation.clone(),
        );
        if done > 0 {
            req.headers.insert(
                header::RANGE,
                HeaderValue::from_str(&format!("bytes={done}-"))
                    .unwrap_or(HeaderValue::from_static("bytes=0-")),
            );
        }
        let mut response = match client
            .expect(&req, &[StatusCode::OK, StatusCode::PARTIAL_CONTENT])
            .await
        {
            Ok(response) => response,
            Err(e) => {
                sink.give_up().await;
                return Err(e);
            }
        };
        if done > 0 && response.status() == StatusCode::OK {
            // The registry ignored the range: start over.
            sink = sink.restart(store, digest).await.map_err(store_error)?;
            done = 0;
        } else if response.status() == StatusCode::PARTIAL_CONTENT
            && !content_range_starts_at(&response, done)
        {
            sink.give_up().await;
            return Err(Error::InvalidResponse {
                registry: client.registry().to_string(),
                repository: repository.to_string(),
                operation: Box::new(req.operation.clone()),
                reason: format!("a partial response that does not start at byte {done}"),
            });
        }
        if response.status() == StatusCode::OK
            && let Some(length) = response.content_length()
            && length != size
        {
            sink.give_up().await;
            return Err(size_error(length));
        }
        let broke = loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    done += chunk.len() as u64;
                    if done > size {
                        // More than the blob: what is held cannot be trusted to be its start.
                        sink.discard().await;
                        return Err(size_error(done));
                    }
                    if let Err(e) = sink.write(chunk).await {
                        sink.give_up().await;
                        return Err(store_error(e));
                    }
                    progress.emit(Event::Progress {
                        operation: progress::Operation::Copy,
                        digest: digest.clone(),
                        bytes: done,
                    });
                }
                Ok(None) => break None,
                Err(e) => break Some(e),
            }
        };
        match broke {
            None if done == size => break,
            None => {
                // The connection ended early, but cleanly: resume as for an error.
                if resumes >= client.settings().retries {
                    sink.give_up().await;
                    return Err(size_error(done));
                }
            }
            Some(e) => {
                if resumes >= client.settings().retries {
                    sink.give_up().await;
                    return Err(client.request_error(&req, e));
                }
            }
        }
        resumes += 1;
        tokio::time::sleep(client.backoff(resumes - 1)).await;
    }
    match sink.commit(digest, size).await {
        Ok(()) => Ok(()),
        Err(ocikit_store::Error::DigestMismatch { expected, actual }) => {
            Err(Error::ContentMismatch {
                registry: client.registry().to_string(),
                repository: repository.to_string(),
                expected: Box::new(expected),
                actual: Box::new(actual),
            })
        }
        Err(ocikit_store::Error::SizeMismatch { actual, .. }) => Err(size_error(actual)),
        Err(e) => Err(store_error(e)),
    }
}

fn content_range_starts_at(response: &reqwest::Response, start: u64) -> bool {
    response
        .headers()
        .get(header::CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("bytes "))
        .and_then(|v| v.split('-').next())
        .and_then(|v| v.parse::<u64>().ok())
        == Some(start)
}
