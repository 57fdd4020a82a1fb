//! Copying between two registries without a local copy: each blob is fetched from the
//! source and pushed to the destination in one pass, hashed on the way.
//!
//! [`Client::push_blob_stream`] uploads a blob from any stream of bytes of known size and
//! digest; [`Client::copy_blob_from`] feeds it a download from another registry;
//! [`Client::copy_from`] copies a whole image (or index) that way, documents last, children
//! before parents, the root under its tag. Nothing a source sends is trusted: the bytes are
//! counted and hashed as they pass, and the last piece of a blob is held back until the
//! whole has been checked against its digest and size. A blob whose bytes do not match is
//! never completed at the destination (its upload breaks off before the last byte, and its
//! session is cancelled): [`Error::ContentMismatch`] or [`Error::ContentSize`] naming the
//! source.
//!
//! Small blobs (configs, up to [`SMALL_BLOB`]) are read whole and verified before their
//! upload starts, so that their upload can be retried as any other request; larger ones go
//! in one streamed `PUT` up to the client's monolithic limit, else in streamed `PATCH`
//! chunks. A streamed upload cannot be resent piece by piece: a connection failure starts
//! the blob over (a new download, a new session), as often as the client retries requests.
//!
//! A [`BlobLedger`] shared by several copies into one registry (a sync run) remembers the
//! blobs each destination repository is known to hold and the blobs in flight: a blob
//! several images share is moved once while the others wait for it, then skipped without
//! asking the registry again, and mounted from the repository that has it when another
//! repository of the same registry needs it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use ocikit_digest::{Digest, Hasher};
use ocikit_layout::PlatformQuery;
use ocikit_layout::progress::{self, Event, Progress};
use reqwest::header;
use reqwest::{Method, StatusCode, Url};

use super::push::{self, Started};
use super::{Body, Client, MANIFEST_ACCEPT, Request, TransferReport, copy, pull};
use crate::{Error, Operation, Result};

/// Blobs up to this size are read whole and verified before their upload starts.
pub const SMALL_BLOB: u64 = 1 << 20;

/// How [`Client::copy_from`] runs.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct CopyFromOptions {
    /// `None`: an index is copied whole. `Some`: the first image of the index matching
    /// the platform is copied (and tagged) instead, as [`super::PullOptions::platform`]
    /// picks it; a plain manifest is copied as it is.
    pub platform: Option<PlatformQuery>,
    /// Blobs moved at once (at least 1), largest first.
    pub concurrency: usize,
    /// What the copies of one run know of the destination's blobs (a fresh ledger by
    /// default: this copy only).
    pub ledger: BlobLedger,
    /// Where [`progress::Operation::Copy`] events go.
    pub progress: Progress,
}

impl Default for CopyFromOptions {
    fn default() -> CopyFromOptions {
        CopyFromOptions::new()
    }
}

impl CopyFromOptions {
    /// Whole indexes, [`super::DEFAULT_CONCURRENCY`] blobs at once, a ledger of its own,
    /// no progress.
    pub fn new() -> CopyFromOptions {
        CopyFromOptions {
            platform: None,
            concurrency: super::DEFAULT_CONCURRENCY,
            ledger: BlobLedger::new(),
            progress: Progress::none(),
        }
    }

    /// These options picking one platform's image out of an index.
    pub fn with_platform(mut self, platform: Option<PlatformQuery>) -> CopyFromOptions {
        self.platform = platform;
        self
    }

    /// These options moving `n` blobs at once.
    pub fn with_concurrency(mut self, n: usize) -> CopyFromOptions {
        self.concurrency = n.max(1);
        self
    }

    /// These options sharing `ledger` with other copies into the same registry.
    pub fn with_ledger(mut self, ledger: BlobLedger) -> CopyFromOptions {
        self.ledger = ledger;
        self
    }

    /// These options reporting to `progress`.
    pub fn with_progress(mut self, progress: Progress) -> CopyFromOptions {
        self.progress = progress;
        self
    }
}

/// What a run of copies knows of the blobs of its destination registries: which
/// repositories hold which blobs (found there, or moved there by this run), and which are
/// being moved now. Cheap to clone; clones share what they know. Meant for one run: a blob
/// deleted at the destination meanwhile is still believed there.
#[derive(Clone, Debug, Default)]
pub struct BlobLedger {
    inner: Arc<Mutex<Ledger>>,
}

#[derive(Debug, Default)]
struct Ledger {
    /// One cell per (registry, repository, blob): set once the repository holds it.
    cells: HashMap<(String, String, Digest), Arc<tokio::sync::OnceCell<()>>>,
    /// For each (registry, blob), a repository known to hold it.
    held: HashMap<(String, Digest), String>,
}

impl BlobLedger {
    /// A ledger that knows nothing yet.
    pub fn new() -> BlobLedger {
        BlobLedger::default()
    }

    /// Whether `repository` of `registry` is known to hold `digest`.
    pub fn holds(&self, registry: &str, repository: &str, digest: &Digest) -> bool {
        self.lock()
            .cells
            .get(&(registry.to_string(), repository.to_string(), digest.clone()))
            .is_some_and(|cell| cell.initialized())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn cell(
        &self,
        registry: &str,
        repository: &str,
        digest: &Digest,
    ) -> Arc<tokio::sync::OnceCell<()>> {
        Arc::clone(
            self.lock()
                .cells
                .entry((registry.to_string(), repository.to_string(), digest.clone()))
                .or_default(),
        )
    }

    /// Another repository of `registry` known to hold `digest`, to mount it from.
    fn holder(&self, registry: &str, digest: &Digest) -> Option<String> {
        self.lock()
            .held
            .get(&(registry.to_string(), digest.clone()))
            .cloned()
    }

    fn record(&self, registry: &str, repository: &str, digest: &Digest) {
        self.lock()
            .held
            .entry((registry.to_string(), digest.clone()))
            .or_insert_with(|| repository.to_string());
    }
}

/// How one blob got to the destination repository.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Moved {
    /// There already (found, or moved by another copy of the run).
    Present,
    /// Mounted from another repository of the registry.
    Mounted,
    /// Streamed from the source: its bytes.
    Streamed(u64),
}

impl Client {
    /// Uploads the blob `digest` of `size` bytes to `repository`, its bytes read from
    /// `body` once, as they come: counted and hashed on the way, the last piece held back
    /// until the whole matches `digest` and `size`. Bytes that do not match (or a `body`
    /// that fails) break the upload off before it completes, cancel its session and fail
    /// ([`Error::ContentMismatch`], [`Error::ContentSize`]): nothing lands in the
    /// repository. In one `PUT` up to the client's monolithic limit, else in `PATCH`
    /// chunks. Returns the bytes uploaded.
    pub async fn push_blob_stream<S>(
        &self,
        repository: &str,
        digest: &Digest,
        size: u64,
        body: S,
    ) -> Result<u64>
    where
        S: futures::Stream<Item = std::io::Result<Bytes>> + Send + 'static,
    {
        self.validate_repository(repository)?;
        let source = Source {
            client: self.clone(),
            repository: repository.to_string(),
        };
        let stream = body.map_err(|e| SourceFailure::Io(e.to_string())).boxed();
        let operation = Operation::PushBlob {
            digest: digest.clone(),
        };
        let session = match push::start_upload(self, repository, digest, None).await? {
            Started::Session(session) => session,
            Started::Mounted => {
                return Err(Error::InvalidResponse {
                    registry: self.registry().to_string(),
                    repository: repository.to_string(),
                    operation: Box::new(operation),
                    reason: "the registry answered an upload's start with 201 (mounted), \
                             though no mount was asked for"
                        .into(),
                });
            }
        };
        upload_stream(
            self,
            repository,
            digest,
            size,
            session,
            (stream, source),
            &Progress::none(),
        )
        .await
        .map_err(Failure::into_error)
    }

    /// Copies the blob `digest` (`size` bytes) of repository `from` of `source`'s registry
    /// into `to` of this one, streamed (never stored here) and verified on the way as
    /// [`Client::push_blob_stream`] verifies; a connection failure starts it over, up to
    /// the client's retries. It does not ask whether `to` holds it already. Returns the
    /// bytes uploaded.
    pub async fn copy_blob_from(
        &self,
        source: &Client,
        from: &str,
        to: &str,
        digest: &Digest,
        size: u64,
    ) -> Result<u64> {
        source.validate_repository(from)?;
        self.validate_repository(to)?;
        stream_blob(
            self,
            source,
            from,
            to,
            digest,
            size,
            None,
            &Progress::none(),
        )
        .await
    }

    /// Copies `reference` (a tag or digest) of repository `from` of `source`'s registry to
    /// repository `to` of this registry, its blobs streamed from one to the other without a
    /// local copy ([`Client::copy_blob_from`]). Its manifests and indexes are fetched and
    /// verified first (the whole graph before anything is written); each blob `to` holds
    /// (asked once per [`BlobLedger`]) is skipped, one another repository of this registry
    /// holds by the ledger is mounted from it, the others streamed. The documents go last,
    /// children first, the root under `destination` when it is a tag (by digest otherwise;
    /// a `destination` digest must be the root's, [`Error::NotTheSource`]).
    pub async fn copy_from(
        &self,
        source: &Client,
        from: &str,
        reference: &str,
        to: &str,
        destination: Option<&str>,
        options: &CopyFromOptions,
    ) -> Result<TransferReport> {
        let copy::CopyRoot {
            tag,
            root,
            bytes: root_bytes,
            digest: root_digest,
        } = copy::copy_root(
            source,
            from,
            reference,
            self,
            to,
            destination,
            options.platform.as_ref(),
        )
        .await?;
        let pull::Graph {
            documents,
            blobs,
            mut report,
        } = pull::graph(source, from, &root, root_bytes).await?;
        let moved: Vec<Moved> = futures::stream::iter(blobs)
            .map(|(digest, size)| move_blob(self, source, from, to, digest, size, options))
            .buffer_unordered(options.concurrency.max(1))
            .try_collect()
            .await?;
        for result in moved {
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
            let digest = pull::digest_of(source, from, &descriptor)?;
            let target = match tag {
                Some(tag) if digest == root_digest => tag.to_string(),
                _ => digest.to_string(),
            };
            let document = pull::parse_document(source, from, &descriptor, &bytes)?;
            let acknowledged = push::put_manifest(self, to, &target, &descriptor, bytes).await?;
            if let Some(subject) = document.subject()
                && !acknowledged
            {
                // No `OCI-Subject`: the registry keeps no referrers index; the tag schema.
                let subject = pull::digest_of(source, from, subject)?;
                super::referrers::add_to_fallback(self, to, &subject, &descriptor, &document)
                    .await?;
            }
            report.manifests += 1;
        }
        report.root = Some(root);
        Ok(report)
    }

    /// The descriptor of `reference` (a tag or digest) of `repository` by `HEAD`: its
    /// digest from `Docker-Content-Digest`, its media type from `Content-Type`, its size
    /// from `Content-Length`, without the body. Where the registry leaves one of them out
    /// (or names no manifest type) the manifest is fetched and verified instead
    /// ([`Client::get_manifest`]). For a digest asked for, the registry's claim must be it
    /// ([`Error::ContentMismatch`]); a missing manifest is [`Error::NotFound`]. The claim is
    /// not verified against any bytes: for comparing with what another repository holds,
    /// not for trusting content.
    pub async fn head_manifest(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<ocikit_digest::oci_spec::image::Descriptor> {
        let requested = pull::parse_reference(self, repository, reference)?;
        let req = Request::new(
            Method::HEAD,
            self.url(repository, &format!("manifests/{reference}"))?,
            repository,
            Operation::PullManifest {
                reference: reference.to_string(),
            },
        )
        .header(header::ACCEPT, MANIFEST_ACCEPT);
        let response = self.expect(&req, &[StatusCode::OK]).await?;
        let text = |name: header::HeaderName| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
        };
        let claimed = text(header::HeaderName::from_static("docker-content-digest"))
            .and_then(|v| Digest::parse(v).ok())
            .filter(Digest::is_supported);
        let media_type = text(header::CONTENT_TYPE)
            .map(ocikit_digest::media_type::essence)
            .filter(|m| ocikit_layout::document::is_document(m))
            .map(str::to_string);
        let size = text(header::CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok());
        if let (Some(claimed), Some(wanted)) = (&claimed, &requested)
            && claimed != wanted
        {
            return Err(Error::ContentMismatch {
                registry: self.registry().to_string(),
                repository: repository.to_string(),
                expected: Box::new(wanted.clone()),
                actual: Box::new(claimed.clone()),
            });
        }
        if let (Some(digest), Some(media_type), Some(size)) = (claimed, media_type, size)
            && let Ok(descriptor) = ocikit_digest::descriptor::new(&media_type, &digest, size)
        {
            return Ok(descriptor);
        }
        Ok(pull::get_manifest(self, repository, reference).await?.0)
    }
}

/// Gets one blob into `to`: known there, found there (HEAD), mounted from a repository the
/// ledger knows holds it, or streamed from the source. One copy of the run moves it; the
/// others wait for that one and count it present.
async fn move_blob(
    client: &Client,
    source: &Client,
    from: &str,
    to: &str,
    digest: Digest,
    size: u64,
    options: &CopyFromOptions,
) -> Result<Moved> {
    let progress = &options.progress;
    let ledger = &options.ledger;
    let cell = ledger.cell(client.registry(), to, &digest);
    let mut moved = Moved::Present;
    cell.get_or_try_init(|| async {
        if client.blob_exists(to, &digest).await? {
            return Ok::<_, Error>(());
        }
        progress.emit(Event::Started {
            operation: progress::Operation::Copy,
            digest: digest.clone(),
            size,
        });
        let holder = ledger
            .holder(client.registry(), &digest)
            .filter(|holder| holder != to);
        moved = match holder {
            Some(holder) => match push::start_upload(client, to, &digest, Some(&holder)).await? {
                Started::Mounted => Moved::Mounted,
                Started::Session(session) => Moved::Streamed(
                    stream_blob(
                        client,
                        source,
                        from,
                        to,
                        &digest,
                        size,
                        Some(session),
                        progress,
                    )
                    .await?,
                ),
            },
            None => Moved::Streamed(
                stream_blob(client, source, from, to, &digest, size, None, progress).await?,
            ),
        };
        progress.emit(Event::Done {
            operation: progress::Operation::Copy,
            digest: digest.clone(),
            bytes: size,
        });
        Ok(())
    })
    .await?;
    ledger.record(client.registry(), to, &digest);
    if moved == Moved::Present {
        progress.emit(Event::Skipped {
            operation: progress::Operation::Copy,
            digest,
            size,
        });
    }
    Ok(moved)
}

/// Streams one blob from `source`'s `from` into `client`'s `to` (into `session` when one
/// is open already), starting over on a connection failure as often as the client
/// retries.
#[allow(clippy::too_many_arguments)]
async fn stream_blob(
    client: &Client,
    source: &Client,
    from: &str,
    to: &str,
    digest: &Digest,
    size: u64,
    mut session: Option<push::Session>,
    progress: &Progress,
) -> Result<u64> {
    let mut attempt = 0u32;
    loop {
        let session = match session.take() {
            Some(session) => session,
            None => match push::start_upload(client, to, digest, None).await? {
                Started::Session(session) => session,
                // Asked for no mount: a registry that says it mounted has the blob.
                Started::Mounted => return Ok(0),
            },
        };
        let result = match open_source(source, from, digest).await {
            Ok(stream) => {
                let origin = Source {
                    client: source.clone(),
                    repository: from.to_string(),
                };
                upload_stream(
                    client,
                    to,
                    digest,
                    size,
                    session,
                    (stream, origin),
                    progress,
                )
                .await
            }
            Err(e) => {
                cancel(client, to, digest, session.location).await;
                Err(Failure::of(e))
            }
        };
        match result {
            Ok(bytes) => return Ok(bytes),
            Err(Failure::Retryable(_)) if attempt < client.settings().retries => attempt += 1,
            Err(failure) => return Err(failure.into_error()),
        }
    }
}

/// `GET` of the blob at the source, as a stream of its bytes.
async fn open_source(
    source: &Client,
    from: &str,
    digest: &Digest,
) -> Result<BoxStream<'static, std::result::Result<Bytes, SourceFailure>>> {
    let req = Request::new(
        Method::GET,
        source.url(from, &format!("blobs/{digest}"))?,
        from,
        Operation::PullBlob {
            digest: digest.clone(),
        },
    );
    let response = source.expect(&req, &[StatusCode::OK]).await?;
    Ok(response
        .bytes_stream()
        .map_err(SourceFailure::Request)
        .boxed())
}

/// The source of a stream, for errors.
struct Source {
    client: Client,
    repository: String,
}

/// What went wrong reading a source stream.
enum SourceFailure {
    /// The source's connection failed.
    Request(reqwest::Error),
    /// A caller's stream failed.
    Io(String),
}

/// A failed streamed upload: one worth starting over (a connection failed) or not.
enum Failure {
    Retryable(Error),
    Final(Error),
}

impl Failure {
    fn into_error(self) -> Error {
        match self {
            Failure::Retryable(e) | Failure::Final(e) => e,
        }
    }

    fn of(error: Error) -> Failure {
        match &error {
            Error::Request { .. } => Failure::Retryable(error),
            Error::Status { status, .. } if *status >= 500 => Failure::Retryable(error),
            _ => Failure::Final(error),
        }
    }
}

/// A source stream checked as it is read: counted, hashed, its latest piece held back
/// until the next arrives or the whole is verified.
struct Feed {
    stream: BoxStream<'static, std::result::Result<Bytes, SourceFailure>>,
    source: Source,
    hasher: Hasher,
    expected: Digest,
    size: u64,
    seen: u64,
    held: Option<Bytes>,
    ready: Option<Bytes>,
    finished: bool,
    /// Why the feed failed, when it did (the upload's error is then this, not the
    /// destination's complaint about a broken body).
    failure: Option<Failure>,
}

impl Feed {
    fn new(
        stream: BoxStream<'static, std::result::Result<Bytes, SourceFailure>>,
        source: Source,
        expected: &Digest,
        size: u64,
    ) -> Result<Feed> {
        let hasher = Hasher::new(expected.algorithm()).map_err(|_| Error::InvalidResponse {
            registry: source.client.registry().to_string(),
            repository: source.repository.clone(),
            operation: Box::new(Operation::PullBlob {
                digest: expected.clone(),
            }),
            reason: format!("cannot verify {expected}: unsupported algorithm"),
        })?;
        Ok(Feed {
            stream,
            source,
            hasher,
            expected: expected.clone(),
            size,
            seen: 0,
            held: None,
            ready: None,
            finished: false,
            failure: None,
        })
    }

    fn fail(&mut self, failure: Failure) -> std::io::Error {
        let text = failure_text(&failure);
        self.failure = Some(failure);
        std::io::Error::other(text)
    }

    fn size_error(&self, actual: u64) -> Error {
        Error::ContentSize {
            registry: self.source.client.registry().to_string(),
            repository: self.source.repository.clone(),
            digest: self.expected.clone(),
            expected: self.size,
            actual,
        }
    }

    /// The next verified-safe piece, at most `max` bytes; `None` at the end.
    async fn piece(&mut self, max: u64) -> std::io::Result<Option<Bytes>> {
        if self.failure.is_some() {
            return Err(std::io::Error::other("the source stream failed"));
        }
        loop {
            if let Some(mut ready) = self.ready.take() {
                let take = usize::try_from(max).unwrap_or(usize::MAX).min(ready.len());
                let piece = ready.split_to(take);
                if !ready.is_empty() {
                    self.ready = Some(ready);
                }
                return Ok(Some(piece));
            }
            if self.finished {
                return Ok(None);
            }
            match self.stream.next().await {
                Some(Ok(chunk)) => {
                    if chunk.is_empty() {
                        continue;
                    }
                    self.seen += chunk.len() as u64;
                    if self.seen > self.size {
                        let error = self.size_error(self.seen);
                        return Err(self.fail(Failure::Final(error)));
                    }
                    self.hasher.update(&chunk);
                    self.ready = self.held.replace(chunk);
                }
                Some(Err(SourceFailure::Request(e))) => {
                    let req = Request::new(
                        Method::GET,
                        self.source.client.base().clone(),
                        &self.source.repository,
                        Operation::PullBlob {
                            digest: self.expected.clone(),
                        },
                    );
                    let error = self.source.client.request_error(&req, e);
                    return Err(self.fail(Failure::Retryable(error)));
                }
                Some(Err(SourceFailure::Io(text))) => {
                    let error = Error::InvalidResponse {
                        registry: self.source.client.registry().to_string(),
                        repository: self.source.repository.clone(),
                        operation: Box::new(Operation::PushBlob {
                            digest: self.expected.clone(),
                        }),
                        reason: format!("the blob's stream failed: {text}"),
                    };
                    return Err(self.fail(Failure::Final(error)));
                }
                None => {
                    self.finished = true;
                    if self.seen != self.size {
                        let error = self.size_error(self.seen);
                        return Err(self.fail(Failure::Final(error)));
                    }
                    let actual = std::mem::replace(&mut self.hasher, Hasher::sha256()).finish();
                    if actual != self.expected {
                        let error = Error::ContentMismatch {
                            registry: self.source.client.registry().to_string(),
                            repository: self.source.repository.clone(),
                            expected: Box::new(self.expected.clone()),
                            actual: Box::new(actual),
                        };
                        return Err(self.fail(Failure::Final(error)));
                    }
                    self.ready = self.held.take();
                }
            }
        }
    }
}

fn failure_text(failure: &Failure) -> String {
    match failure {
        Failure::Retryable(e) | Failure::Final(e) => e.to_string(),
    }
}

type SharedFeed = Arc<tokio::sync::Mutex<Feed>>;

/// A request body of the next `len` bytes of `feed`.
fn body_of(feed: &SharedFeed, len: u64) -> reqwest::Body {
    let stream = futures::stream::unfold((Arc::clone(feed), len), |(feed, left)| async move {
        if left == 0 {
            return None;
        }
        let piece = feed.lock().await.piece(left).await;
        match piece {
            Ok(Some(piece)) => {
                let left = left - piece.len() as u64;
                Some((Ok(piece), (feed, left)))
            }
            // The feed ended early: its size error is recorded; the body breaks off.
            Ok(None) => Some((
                Err(std::io::Error::other("the source ended early")),
                (feed, 0),
            )),
            Err(e) => Some((Err(e), (feed, 0))),
        }
    });
    reqwest::Body::wrap_stream(stream)
}

/// Uploads what `stream` yields into `session`: one `PUT`, or `PATCH` chunks and a closing
/// `PUT`. On failure the session is cancelled.
async fn upload_stream(
    client: &Client,
    repository: &str,
    digest: &Digest,
    size: u64,
    session: push::Session,
    (stream, source): (
        BoxStream<'static, std::result::Result<Bytes, SourceFailure>>,
        Source,
    ),
    progress: &Progress,
) -> std::result::Result<u64, Failure> {
    let location = session.location.clone();
    let feed = Feed::new(stream, source, digest, size).map_err(Failure::Final)?;
    let feed: SharedFeed = Arc::new(tokio::sync::Mutex::new(feed));
    let result = if size <= SMALL_BLOB {
        upload_small(client, repository, digest, size, session, &feed).await
    } else {
        upload_streamed(client, repository, digest, size, session, &feed, progress).await
    };
    match result {
        Ok(()) => Ok(size),
        Err(failure) => {
            cancel(client, repository, digest, location).await;
            // The source's failure, when there was one, is what went wrong.
            Err(feed.lock().await.failure.take().unwrap_or(failure))
        }
    }
}

/// A small blob: read whole and verified, then one ordinary (retried) `PUT`.
async fn upload_small(
    client: &Client,
    repository: &str,
    digest: &Digest,
    size: u64,
    session: push::Session,
    feed: &SharedFeed,
) -> std::result::Result<(), Failure> {
    let mut whole = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    {
        let mut feed = feed.lock().await;
        while let Some(piece) = feed
            .piece(u64::MAX)
            .await
            .map_err(|_| Failure::Final(unreachable_failure(client, repository, digest)))?
        {
            whole.extend_from_slice(&piece);
        }
    }
    let req = Request::new(
        Method::PUT,
        with_digest(session.location, digest),
        repository,
        Operation::PushBlob {
            digest: digest.clone(),
        },
    )
    .push_scope()
    .header(header::CONTENT_TYPE, "application/octet-stream")
    .body(Body::Bytes(Bytes::from(whole)));
    client
        .expect(&req, &[StatusCode::CREATED])
        .await
        .map(|_| ())
        .map_err(Failure::of)
}

/// Stands in for the feed's own failure, which [`upload_stream`] reports instead.
fn unreachable_failure(client: &Client, repository: &str, digest: &Digest) -> Error {
    Error::InvalidResponse {
        registry: client.registry().to_string(),
        repository: repository.to_string(),
        operation: Box::new(Operation::PushBlob {
            digest: digest.clone(),
        }),
        reason: "the blob's source failed".into(),
    }
}

/// A larger blob, streamed: one `PUT` up to the monolithic limit, else `PATCH` chunks.
async fn upload_streamed(
    client: &Client,
    repository: &str,
    digest: &Digest,
    size: u64,
    session: push::Session,
    feed: &SharedFeed,
    progress: &Progress,
) -> std::result::Result<(), Failure> {
    let settings = client.settings();
    let operation = Operation::PushBlob {
        digest: digest.clone(),
    };
    let mut location = session.location;
    if size <= settings.monolithic_limit {
        let req = Request::new(
            Method::PUT,
            with_digest(location, digest),
            repository,
            operation,
        )
        .push_scope()
        .header(header::CONTENT_TYPE, "application/octet-stream");
        return send_once(client, &req, body_of(feed, size), size, StatusCode::CREATED)
            .await
            .map(|_| ());
    }
    let chunk = settings.chunk_size.max(session.min_chunk).max(1);
    let mut offset = 0u64;
    while offset < size {
        let end = (offset + chunk).min(size);
        let req = Request::new(
            Method::PATCH,
            location.clone(),
            repository,
            Operation::PushChunk {
                digest: digest.clone(),
                first: offset,
                last: end - 1,
            },
        )
        .push_scope()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_RANGE, &format!("{offset}-{}", end - 1));
        let response = send_once(
            client,
            &req,
            body_of(feed, end - offset),
            end - offset,
            StatusCode::ACCEPTED,
        )
        .await?;
        location = client.location(&req, &response).map_err(Failure::Final)?;
        offset = end;
        progress.emit(Event::Progress {
            operation: progress::Operation::Copy,
            digest: digest.clone(),
            bytes: offset,
        });
    }
    // Every byte was sent; the feed has verified the whole by now (the last piece went
    // out only after): the closing `PUT` may go.
    let req = Request::new(
        Method::PUT,
        with_digest(location, digest),
        repository,
        operation,
    )
    .push_scope()
    .header(header::CONTENT_LENGTH, "0")
    .header(header::CONTENT_TYPE, "application/octet-stream");
    client
        .expect(&req, &[StatusCode::CREATED])
        .await
        .map(|_| ())
        .map_err(Failure::of)
}

/// Sends `req` once with a streamed `body` of `len` bytes (a stream cannot be sent again):
/// authorised as the client authorises (the session's start fetched any token it needs).
async fn send_once(
    client: &Client,
    req: &Request,
    body: reqwest::Body,
    len: u64,
    ok: StatusCode,
) -> std::result::Result<reqwest::Response, Failure> {
    client.probe_scheme().await;
    let url = client.effective(&req.url);
    let mut builder = client
        .inner
        .http
        .request(req.method.clone(), url.clone())
        .headers(req.headers.clone())
        .header(header::CONTENT_LENGTH, len)
        .body(body);
    if client.same_origin(&url)
        && let Some(value) = client.authorization(req).await.map_err(Failure::Final)?
    {
        builder = builder.header(header::AUTHORIZATION, value);
    }
    let response = builder
        .send()
        .await
        .map_err(|e| Failure::of(client.request_error(req, e)))?;
    if response.status() == ok {
        Ok(response)
    } else {
        Err(Failure::of(client.status_error(req, response).await))
    }
}

/// Cancels an upload session (`DELETE`), as far as the registry lets it: what it holds of
/// the blob is dropped. Failures are ignored (a registry expires sessions anyway).
async fn cancel(client: &Client, repository: &str, digest: &Digest, location: Url) {
    let req = Request::new(
        Method::DELETE,
        location,
        repository,
        Operation::PushBlob {
            digest: digest.clone(),
        },
    )
    .push_scope();
    let _ = client.send(&req).await;
}

/// `location` with `digest=` appended (after the query it may already carry).
fn with_digest(mut location: Url, digest: &Digest) -> Url {
    location
        .query_pairs_mut()
        .append_pair("digest", digest.as_str());
    location
}
