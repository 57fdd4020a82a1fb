//! The [`Store`] trait and the types it speaks in.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use futures::stream::BoxStream;
use ocikit_digest::Digest;
use tokio::io::AsyncWrite;

use crate::{Error, Result};

/// Content-addressed blobs plus named mutable documents, over one backend.
///
/// The required surface is small; conveniences (`writer`, `put_bytes`, `get_bytes`,
/// `require`, `copy_to`...) live in [`crate::StoreExt`], implemented for every store.
///
/// **Blobs** are immutable and named by digest. A blob is visible only once a
/// [`crate::BlobWriter`] committed it, which happens after the written bytes were verified
/// against the expected digest and size; a writer that fails, is aborted or is dropped leaves
/// nothing visible. Committing content that is already stored succeeds (deduplication).
///
/// **Documents** are small named byte strings (`index.json`, a repository's tag list) updated
/// by compare-and-swap: [`Store::read_document`] returns a [`Version`] and
/// [`Store::write_document`] succeeds only while the [`Precondition`] holds, failing with
/// [`Error::Conflict`] when another writer came first. This is what keeps many writers, in
/// many processes or on many machines, from losing each other's updates.
///
/// Absence is `Ok(None)` here; [`crate::StoreExt::require`] turns it into
/// [`Error::NotFound`].
#[async_trait::async_trait]
pub trait Store: fmt::Debug + Send + Sync {
    /// The size of a stored blob, or `None` when it is absent.
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>>;

    /// Opens a stored blob for reading, whole or a byte range, or `None` when it is absent.
    ///
    /// The range's end is clamped to the blob's size (as HTTP does); a range that starts
    /// past the end, or ends before it starts, is [`Error::InvalidRange`]. A range starting
    /// exactly at the end yields no bytes.
    async fn get(&self, digest: &Digest, range: Option<Range<u64>>) -> Result<Option<Blob>>;

    /// Starts staging a new blob. Callers normally use [`crate::StoreExt::writer`], which
    /// wraps the staging area in a hashing, verifying [`crate::BlobWriter`].
    async fn stage(&self) -> Result<Box<dyn Staging>>;

    /// When a blob was last written: published, or published again (deduplicated) where the
    /// backend can record that; `None` when the blob is absent. Garbage collection uses it
    /// for its grace period, so that blobs a concurrent writer has just stored (and not yet
    /// referenced) are never swept.
    ///
    /// The default, for backends that cannot tell, is conservative: a present blob is
    /// reported as written just now, so a grace period never lets it be swept.
    async fn written_at(&self, digest: &Digest) -> Result<Option<SystemTime>> {
        Ok(self.stat(digest).await?.map(|_| SystemTime::now()))
    }

    /// Deletes a blob; returns whether it existed.
    async fn delete(&self, digest: &Digest) -> Result<bool>;

    /// Every stored blob's digest, in no particular order. Stray or malformed entries in the
    /// backend (temp files, foreign names) are skipped, never reported as blobs.
    fn list(&self) -> BoxStream<'_, Result<Digest>>;

    /// Reads a document and its version, or `None` when it is absent.
    async fn read_document(&self, key: &DocumentKey) -> Result<Option<Document>>;

    /// The version [`Store::read_document`] would return now, or `None` when the document
    /// is absent, for callers that only need to know whether a document changed. Backends
    /// that can tell without reading the document (the filesystem store, from the file's
    /// metadata) override it; the default reads it.
    async fn document_version(&self, key: &DocumentKey) -> Result<Option<Version>> {
        Ok(self.read_document(key).await?.map(|d| d.version))
    }

    /// Writes a document if `precondition` holds, atomically; returns the new version.
    async fn write_document(
        &self,
        key: &DocumentKey,
        bytes: Bytes,
        precondition: Precondition,
    ) -> Result<Version>;

    /// Deletes a document if `precondition` holds; returns whether it existed.
    async fn delete_document(&self, key: &DocumentKey, precondition: Precondition) -> Result<bool>;

    /// The keys of every document whose key starts with `prefix` (a whole number of
    /// segments: `"repos/a"` lists `repos/a/x`, not `repos/ab`), sorted.
    async fn list_documents(&self, prefix: &str) -> Result<Vec<DocumentKey>>;

    /// One page of a sorted listing: the keys of the documents strictly under `prefix`
    /// (`prefix/...`, whole segments; a document named `prefix` itself is not listed) that
    /// sort after `after` (compared as bytes; `after` need not be a key, nor valid), the
    /// first `limit` of them, sorted.
    ///
    /// The default lists everything under `prefix` ([`Store::list_documents`]) and cuts the
    /// page out of it. Backends that can start a listing at a key override it: the S3 store
    /// sends one `ListObjectsV2` with `start-after` per 1,000 keys of the page, whatever
    /// the prefix holds; the filesystem store walks the directories in key order, skipping
    /// those wholly before `after` and stopping once the page is full (one read of each
    /// directory it enters: a flat directory is read whole).
    async fn list_documents_after(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DocumentKey>> {
        let keys = self.list_documents(prefix).await?;
        Ok(page_of(keys, prefix, after, limit))
    }

    /// Publishes the blob `digest` (`size` bytes) from `file`, a local file that holds it
    /// (another store's [`Blob::local_file`]), without streaming it through the caller.
    /// `mode` says what the two may share:
    ///
    /// - [`LinkMode::Copy`]: an independent copy, its own inode: a reflink (copy-on-write
    ///   clone, sharing extents until either side is written) where the filesystem has them,
    ///   else a copy of the bytes made by the kernel (`copy_file_range`). Writing to either
    ///   file later never changes the other.
    /// - [`LinkMode::Hardlink`]: a hardlink, the source's own inode: source and destination
    ///   share one file, so corrupting one corrupts both.
    ///
    /// Returns [`Linked::NotSupported`] when this store cannot (the default; memory and
    /// object stores; a hardlink to another filesystem), and the caller copies the bytes
    /// instead.
    ///
    /// **Trust rule.** With [`LinkTrust::Verify`] the store hashes its new link, clone or copy
    /// before publishing it and refuses content that is not `size` bytes hashing to
    /// `digest` ([`Error::DigestMismatch`], [`Error::SizeMismatch`]), exactly as a
    /// [`crate::BlobWriter`] would. [`LinkTrust::Trusted`] skips the hashing; pass it only
    /// when `file` is a blob of a store whose every blob went through a verifying writer (an
    /// [`crate::FsStore`] written only by ocikit, or checked since), never for a directory
    /// other tools write.
    async fn link_blob(
        &self,
        digest: &Digest,
        size: u64,
        file: &std::fs::File,
        trust: LinkTrust,
        mode: LinkMode,
    ) -> Result<Linked> {
        let _ = (digest, size, file, trust, mode);
        Ok(Linked::NotSupported)
    }

    /// This store's blobs as local files that can be opened synchronously, where the backend
    /// keeps them so (the filesystem store); `None` otherwise (the default: memory and object
    /// stores), and callers use [`Store::get`].
    ///
    /// For callers that already run on a blocking thread and read many blobs there (fsck
    /// hashing thousands of small blobs in one blocking job): opening through it costs no hop
    /// through the async runtime per blob. Each call returns a fresh handle meant for one
    /// batch of reads (it may keep the blob directories open, and then sees them as they
    /// were when first used); take a new one for the next batch. Wrappers that must see every
    /// read (test stores that intercept `get`) keep the default.
    fn local_blobs(&self) -> Option<Arc<dyn LocalBlobs>> {
        None
    }

    /// Where this store keeps blob downloads in progress so that one interrupted (a killed
    /// process, a dropped connection) resumes in a later process from the bytes on disk:
    /// the filesystem store's [`crate::fs::Partials`]. `None` (the default: memory and
    /// object stores, and wrappers that must see every write) means a download interrupted
    /// in one process starts over in the next.
    fn partial_downloads(&self) -> Option<crate::fs::Partials> {
        None
    }
}

/// The page [`Store::list_documents_after`] returns, cut out of a whole sorted listing.
pub(crate) fn page_of(
    keys: Vec<DocumentKey>,
    prefix: &str,
    after: Option<&str>,
    limit: usize,
) -> Vec<DocumentKey> {
    let prefix = prefix.trim_end_matches('/');
    keys.into_iter()
        .filter(|k| k.is_under(prefix) && k.as_str() != prefix)
        .filter(|k| after.is_none_or(|after| k.as_str() > after))
        .take(limit)
        .collect()
}

/// Blobs kept as local files, opened on the calling thread: see [`Store::local_blobs`].
pub trait LocalBlobs: Send + Sync {
    /// Opens a stored blob on the calling thread, which blocks; returns the open file and its
    /// size, or `None` when the blob is absent. The file is opened as [`Blob::local_file`]'s
    /// is: without following symlinks (without blocking on a FIFO either), and checked to be
    /// a regular file ([`Error::NotARegularFile`] otherwise).
    fn open_blocking(&self, digest: &Digest) -> Result<Option<(std::fs::File, u64)>>;
}

/// Whether [`Store::link_blob`] re-hashes the file it links (see its trust rule).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkTrust {
    /// Hash the linked content and publish it only if it matches (the safe default).
    Verify,
    /// Publish without hashing: the source's blobs are known to be verified on write.
    Trusted,
}

/// What [`Store::link_blob`] may share between the source file and the published blob.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum LinkMode {
    /// An independent copy (the default): a reflink where the filesystem supports it, else
    /// a plain copy of the bytes. The two files never change together.
    #[default]
    Copy,
    /// A hardlink: source and destination share blob files, so corrupting one corrupts
    /// both. Saves the space and time of a copy where reflinks are not available.
    Hardlink,
}

/// How [`Store::link_blob`] published a blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Linked {
    /// A copy-on-write clone (`FICLONE`): its own inode, sharing extents with the source.
    Reflink,
    /// A hardlink: the same inode as the source.
    Hardlink,
    /// A copy of the bytes into a new file (no reflink support): its own inode and blocks.
    Copied,
    /// The blob was stored already; nothing was linked.
    Present,
    /// This store cannot link this file; copy the bytes instead.
    NotSupported,
}

/// A backend's staging area for one blob being written.
///
/// Bytes go in through `AsyncWrite`; [`Staging::publish`] makes them visible under a digest
/// atomically and durably, [`Staging::abort`] (or dropping the staging area) discards them.
/// The caller, [`crate::BlobWriter`], has already verified digest and size before calling
/// `publish`.
#[async_trait::async_trait]
pub trait Staging: AsyncWrite + Send + Unpin {
    /// Publishes the staged bytes under `digest`. If a blob with that digest exists already,
    /// the staged bytes are discarded and the call succeeds.
    async fn publish(self: Box<Self>, digest: &Digest, size: u64) -> Result<()>;

    /// Discards the staged bytes.
    async fn abort(self: Box<Self>) -> Result<()>;
}

/// A blob opened for reading: a stream of chunks, plus a local file where the backend has
/// one (for `sendfile`-style fast paths and memory maps).
pub struct Blob {
    size: u64,
    range: Range<u64>,
    stream: BoxStream<'static, Result<Bytes>>,
    file: Option<std::fs::File>,
}

impl Blob {
    /// Assembles a blob handle (for backend implementations).
    pub fn new(
        size: u64,
        range: Range<u64>,
        stream: BoxStream<'static, Result<Bytes>>,
        file: Option<std::fs::File>,
    ) -> Blob {
        Blob {
            size,
            range,
            stream,
            file,
        }
    }

    /// The whole blob's size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The byte range this handle yields.
    pub fn range(&self) -> Range<u64> {
        self.range.clone()
    }

    /// The number of bytes this handle yields.
    pub fn len(&self) -> u64 {
        self.range.end - self.range.start
    }

    /// Whether this handle yields no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The open local file holding the whole blob, where the backend has one. It was opened
    /// without following symlinks and checked to be a regular file; use [`Blob::range`] to
    /// serve the right part of it.
    pub fn local_file(&self) -> Option<&std::fs::File> {
        self.file.as_ref()
    }

    /// The chunks of the range.
    pub fn into_stream(self) -> BoxStream<'static, Result<Bytes>> {
        self.stream
    }

    /// An `AsyncRead` over the chunks of the range.
    pub fn into_reader(self) -> impl tokio::io::AsyncRead + Send + Unpin + 'static {
        use futures::TryStreamExt;
        tokio_util::io::StreamReader::new(self.stream.map_err(std::io::Error::from))
    }
}

impl fmt::Debug for Blob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Blob")
            .field("size", &self.size)
            .field("range", &self.range)
            .field("local_file", &self.file.is_some())
            .finish_non_exhaustive()
    }
}

/// A validated document key: `/`-separated segments of `[A-Za-z0-9._-]`, none empty, none
/// starting with `.` (so no `.` or `..`, and no clash with backend-private files), at most
/// 512 bytes. The first segment may not be `blobs`, which belongs to blob storage.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DocumentKey(Arc<str>);

impl DocumentKey {
    /// Longest key accepted.
    pub const MAX_LEN: usize = 512;

    /// Validates a key.
    pub fn new(key: &str) -> Result<DocumentKey> {
        let invalid = |reason| Error::InvalidKey {
            key: key.chars().take(600).collect(),
            reason,
        };
        if key.is_empty() {
            return Err(invalid("it is empty"));
        }
        if key.len() > Self::MAX_LEN {
            return Err(invalid("it is longer than 512 bytes"));
        }
        for segment in key.split('/') {
            if segment.is_empty() {
                return Err(invalid("it has an empty segment"));
            }
            if segment.starts_with('.') {
                return Err(invalid("a segment starts with `.`"));
            }
            if !segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
            {
                return Err(invalid(
                    "a segment has a character outside A-Z a-z 0-9 . _ -",
                ));
            }
        }
        if key == "blobs" || key.starts_with("blobs/") {
            return Err(invalid("`blobs/` belongs to blob storage"));
        }
        Ok(DocumentKey(key.into()))
    }

    /// The key as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this key lies under `prefix` (whole segments).
    pub fn is_under(&self, prefix: &str) -> bool {
        let prefix = prefix.trim_end_matches('/');
        prefix.is_empty()
            || self.0.as_ref() == prefix
            || (self.0.starts_with(prefix) && self.0.as_bytes().get(prefix.len()) == Some(&b'/'))
    }
}

impl fmt::Display for DocumentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for DocumentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DocumentKey({})", self.0)
    }
}

impl std::str::FromStr for DocumentKey {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        DocumentKey::new(s)
    }
}

impl TryFrom<&str> for DocumentKey {
    type Error = Error;

    fn try_from(s: &str) -> Result<Self> {
        DocumentKey::new(s)
    }
}

/// An opaque token naming one state of a document, for compare-and-swap.
///
/// Backends derive it from the content (a hash, an ETag), so two writes of identical bytes
/// may share a version; a compare-and-swap based on it then succeeds, which is harmless since
/// the document is exactly what the caller read.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Version(Arc<str>);

impl Version {
    /// Wraps a backend's token.
    pub fn new(token: impl Into<Arc<str>>) -> Version {
        Version(token.into())
    }

    /// The token.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Version({})", self.0)
    }
}

/// A document's bytes and the version they are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Document {
    /// The content.
    pub bytes: Bytes,
    /// The version, to pass back in [`Precondition::Matches`].
    pub version: Version,
}

/// The condition under which a document write or delete goes ahead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Precondition {
    /// Unconditionally (last writer wins). Avoid for documents others edit.
    None,
    /// Only if the document does not exist yet.
    MustNotExist,
    /// Only if the document is still at this version.
    Matches(Version),
}

/// Checks a requested range against a blob's size, clamping the end (shared by backends).
pub fn resolve_range(range: Option<Range<u64>>, size: u64) -> Result<Range<u64>> {
    match range {
        None => Ok(0..size),
        Some(r) if r.start > r.end || r.start > size => Err(Error::InvalidRange {
            start: r.start,
            end: r.end,
            size,
        }),
        Some(r) => Ok(r.start..r.end.min(size)),
    }
}
