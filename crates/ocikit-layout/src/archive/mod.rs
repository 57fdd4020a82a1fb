//! Tar archives of images: [`oci`] (`oci-archive:`, a tarred OCI image layout, as skopeo
//! reads and writes it) and [`docker`] (`docker-archive:`, what `docker save` writes and
//! `docker load` reads).
//!
//! Both directions stream: tar parsing and writing run on a blocking thread, blob bytes
//! flow between it and the store through the bounded channels of the layout's one
//! sync/async bridge (`bridge`), and no archive is ever held in memory. Imports read the
//! archive with `ocikit-codec`'s strict tar reader ([`ocikit_codec::tar`]), the one that
//! reads layers: checksums, numeric fields and PAX records checked, what tar parsers
//! disagree on refused, and the extension records of an entry (GNU long names, PAX) capped
//! at [`MAX_EXTENSION_RECORD`] bytes before they are buffered (SPEC C-T03, Go
//! CVE-2022-2879). They read entries in whatever order the archive has them, verify every
//! blob before it becomes visible, cap every JSON file read into memory, and tag nothing
//! until every blob the tags reach is present. Hostile entries (absolute paths, `..`, links
//! and devices where only files belong, duplicates, wrong digests, truncation) fail with
//! [`Error::Archive`] naming the entry and an [`ArchiveErrorKind`]. Exports are written
//! with `ocikit-codec`'s [`ocikit_codec::tar::TarWriter`], the header format
//! of ocikit's layers (POSIX ustar, PAX records only where a value does not fit): every
//! entry owned by 0:0 at the epoch, directories `0755`, files `0644`, so the same layout
//! always exports to the same bytes.

pub mod docker;
pub mod oci;

use std::io::{self, Read, Write};

use bytes::Bytes;
use ocikit_codec::tar::{EntryMeta, Kind, TarReader, TarWriter};
use ocikit_digest::Digest;
use ocikit_store::{Store, StoreExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

pub(crate) use crate::bridge::ChannelReader;
use crate::bridge::{self, CHANNEL_CHUNKS as QUEUE, CHUNK_SIZE as CHUNK};
use crate::{Error, Result};
/// Largest `oci-layout` file read from an archive.
pub const MAX_LAYOUT_FILE_SIZE: u64 = 4096;
/// Largest JSON file (`index.json`, `manifest.json`, `repositories`, a config) read from an
/// archive into memory.
pub const MAX_JSON_SIZE: u64 = 16 << 20;

/// Most bytes of extension records (GNU long names and long link names, PAX records, with
/// 512 bytes for each extension header) one entry of an imported archive may carry (as Go's
/// `archive/tar` since CVE-2022-2879): [`Limits::max_entry_metadata`](ocikit_codec::Limits)
/// of the import's tar reader.
pub const MAX_EXTENSION_RECORD: u64 = 1 << 20;

/// What is wrong with an archive entry (see [`Error::Archive`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveErrorKind {
    /// An absolute name, a `..` component, or a name that is not UTF-8.
    #[error("unsafe path")]
    UnsafePath,
    /// A symlink, hardlink, device, FIFO or other entry type where only files and
    /// directories belong.
    #[error("entry type {typeflag:?} is not allowed here")]
    UnsupportedType {
        /// The tar typeflag byte.
        typeflag: u8,
    },
    /// A file that has no place in this kind of archive.
    #[error("not part of this archive format")]
    Unexpected,
    /// A second entry with a name already seen.
    #[error("duplicate entry")]
    Duplicate,
    /// A blob whose content does not hash to the digest its name (or a manifest) gives.
    #[error("content is {actual}, not what its name says")]
    DigestMismatch {
        /// What the content hashes to.
        actual: Digest,
    },
    /// A layer whose uncompressed content does not hash to the config's diffID.
    #[error("layer diffID is {actual}, the config says {expected}")]
    DiffIdMismatch {
        /// The diffID the config lists.
        expected: Digest,
        /// The diffID of the layer's content.
        actual: Digest,
    },
    /// The archive ends inside this entry.
    #[error("truncated")]
    Truncated,
    /// A file larger than what is read into memory.
    #[error("larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// A file that is required (or referenced) but not in the archive.
    #[error("missing")]
    Missing,
    /// Malformed content (JSON, a version, a reference).
    #[error("malformed: {reason}")]
    Malformed {
        /// What is wrong.
        reason: String,
    },
    /// The tar stream itself is unreadable (bad header checksum, bad extension record).
    #[error("not a readable tar stream")]
    Corrupt,
    /// The archive's image list (`index.json`, `manifest.json`) has no image by this digest
    /// or name.
    #[error("no image {wanted} in the archive")]
    NotInIndex {
        /// The digest or name asked for.
        wanted: String,
    },
}

pub(crate) fn archive_error(entry: impl Into<String>, kind: ArchiveErrorKind) -> Error {
    Error::Archive {
        entry: entry.into(),
        kind: Box::new(kind),
        source: None,
    }
}

pub(crate) fn archive_error_with(
    entry: impl Into<String>,
    kind: ArchiveErrorKind,
    source: impl Into<Error>,
) -> Error {
    Error::Archive {
        entry: entry.into(),
        kind: Box::new(kind),
        source: Some(Box::new(source.into())),
    }
}

pub(crate) fn malformed(entry: impl Into<String>, reason: impl Into<String>) -> Error {
    archive_error(
        entry,
        ArchiveErrorKind::Malformed {
            reason: reason.into(),
        },
    )
}

/// An entry name as shown in errors: lossy UTF-8, at most 300 characters.
pub(crate) fn shown(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).chars().take(300).collect()
}

/// Normalises an entry name: drops `./` components and a trailing `/`, refuses absolute
/// names, `..` and non-UTF-8. The empty string is the archive root (`./`).
pub(crate) fn normalize(raw: &[u8]) -> Result<String> {
    let unsafe_path = || archive_error(shown(raw), ArchiveErrorKind::UnsafePath);
    let text = std::str::from_utf8(raw).map_err(|_| unsafe_path())?;
    if text.starts_with('/') || text.contains('\0') || text.contains('\\') {
        return Err(unsafe_path());
    }
    let mut parts = Vec::new();
    for part in text.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(unsafe_path()),
            other => parts.push(other),
        }
    }
    Ok(parts.join("/"))
}

/// Resolves a path relative to the directory of `base` inside the archive (for symlinks
/// and manifest.json paths): `..` may climb up to the root, never past it.
pub(crate) fn join_inside(base_dir: &str, target: &str) -> Option<String> {
    if target.starts_with('/') || target.contains('\0') {
        return None;
    }
    let mut parts: Vec<&str> = base_dir.split('/').filter(|p| !p.is_empty()).collect();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            other => parts.push(other),
        }
    }
    Some(parts.join("/"))
}

/// The typed error for a failure of the tar reader (or of the archive's source) while
/// reading entries, `entry` naming where it struck.
pub(crate) fn tar_error(entry: &str, error: ocikit_codec::Error) -> Error {
    use ocikit_codec::{Error as CodecError, Limit};
    let kind = match &error {
        CodecError::LimitExceeded {
            limit: Limit::EntryMetadata,
            max,
        } => ArchiveErrorKind::TooLarge { limit: *max },
        CodecError::Corrupt { source, .. } | CodecError::Io { source, .. }
            if source.kind() == io::ErrorKind::UnexpectedEof =>
        {
            ArchiveErrorKind::Truncated
        }
        _ => ArchiveErrorKind::Corrupt,
    };
    archive_error_with(entry, kind, Error::Codec(error))
}

/// [`tar_error`] for an error that came out of a [`Read`] of entry data.
fn read_error(entry: &str, error: io::Error) -> Error {
    tar_error(entry, ocikit_codec::compression::error_from_io(error))
}

/// One entry of an archive being imported, past the checks every importer makes.
pub(crate) struct ImportEntry<'a> {
    /// The entry's data.
    pub(crate) data: &'a mut dyn Read,
    /// The name, normalised (never absolute, no `..`).
    pub(crate) name: String,
    /// The name as the archive spells it, for errors.
    pub(crate) shown: String,
    /// What the entry is.
    pub(crate) kind: Kind,
    /// The raw typeflag byte, for errors.
    pub(crate) typeflag: u8,
    /// The size of the entry's data.
    pub(crate) size: u64,
    /// The link target (symlinks and hardlinks), as recorded.
    pub(crate) link: Vec<u8>,
}

/// Walks the entries of an archive being imported on the tar thread, with the strict tar
/// reader (extension records capped at [`MAX_EXTENSION_RECORD`]): PAX global headers
/// skipped, names normalised, and a read error naming the entry after which it struck;
/// `visit` sees every other entry.
pub(crate) fn for_each_entry(
    reader: ChannelReader,
    mut visit: impl FnMut(ImportEntry<'_>) -> Result<()>,
) -> Result<()> {
    let limits = ocikit_codec::Limits::default().with_max_entry_metadata(MAX_EXTENSION_RECORD);
    let mut archive = TarReader::new(reader, limits);
    let mut last: Option<String> = None;
    loop {
        let header = match archive.next_header() {
            Ok(Some(header)) => header,
            Ok(None) => return Ok(()),
            Err(e) => {
                let at = match &last {
                    Some(name) => format!("(entry after {name})"),
                    None => "(start of archive)".to_string(),
                };
                return Err(tar_error(&at, e));
            }
        };
        let shown_name = shown(&header.name);
        last = Some(shown_name.clone());
        if header.kind == Kind::Global {
            continue;
        }
        let name = normalize(&header.name)?;
        let mut data = archive.data();
        visit(ImportEntry {
            data: &mut data,
            name,
            shown: shown_name,
            kind: header.kind,
            typeflag: header.typeflag,
            size: header.size,
            link: header.link,
        })?;
    }
}

/// Claims a file entry's name: only regular files, and each name once (`seen` holds the
/// names claimed so far).
pub(crate) fn claim_file(
    seen: &mut std::collections::HashSet<String>,
    name: &str,
    shown: &str,
    kind: Kind,
    typeflag: u8,
) -> Result<()> {
    if kind != Kind::File {
        return Err(archive_error(
            shown,
            ArchiveErrorKind::UnsupportedType { typeflag },
        ));
    }
    if !seen.insert(name.to_string()) {
        return Err(archive_error(shown, ArchiveErrorKind::Duplicate));
    }
    Ok(())
}

/// Runs blocking work and flattens a panic into an error.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result,
        Err(join) => Err(Error::Io {
            operation: "run archive thread",
            path: std::path::PathBuf::new(),
            source: io::Error::other(join),
        }),
    }
}

// --- the tar writer thread ---------------------------------------------------------------

/// What the async side asks the tar writer thread to write.
pub(crate) enum TarMsg {
    /// A directory entry.
    Dir(String),
    /// A regular file of `size` bytes whose data follows as `Data` messages until `End`.
    /// With `decode`, the data is compressed and the entry holds its decompression, which
    /// must hash to the given diffID.
    File {
        path: String,
        size: u64,
        decode: Option<(ocikit_codec::compression::Compression, Digest)>,
    },
    Data(Bytes),
    End,
    /// The data source failed; the entry (and the archive) must not be completed.
    Fail(String),
}

/// Reads one entry's data from the message queue.
struct EntryData<'a> {
    rx: &'a mut mpsc::Receiver<TarMsg>,
    current: Bytes,
    done: bool,
}

impl Read for EntryData<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            if self.done {
                return Ok(0);
            }
            match self.rx.blocking_recv() {
                Some(TarMsg::Data(chunk)) => self.current = chunk,
                Some(TarMsg::End) => self.done = true,
                Some(TarMsg::Fail(why)) => return Err(io::Error::other(why)),
                Some(_) | None => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "entry data ended early",
                    ));
                }
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        Ok(n)
    }
}

/// Passes a layer's decompressed bytes through, hashing them; at their end, errors if they
/// hash to something other than the diffID `expected` (the tar writer reads every entry to
/// its end, so the check always runs).
struct DiffIdCheck<R> {
    inner: R,
    hasher: Option<ocikit_digest::Hasher>,
    expected: Digest,
}

impl<R: Read> Read for DiffIdCheck<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(hasher) = &mut self.hasher {
            hasher.update(&buf[..n]);
        }
        if n == 0
            && !buf.is_empty()
            && let Some(hasher) = self.hasher.take()
        {
            let actual = hasher.finish();
            if actual != self.expected {
                return Err(io::Error::other(format!(
                    "layer content is {actual}, expected {}",
                    self.expected
                )));
            }
        }
        Ok(n)
    }
}

/// Directories of exported archives: `0755`, root's, at the epoch.
const DIR_META: EntryMeta = EntryMeta::new(0o755);
/// Files of exported archives: `0644`, root's, at the epoch.
const FILE_META: EntryMeta = EntryMeta::new(0o644);

/// The tar writer thread: writes what the messages say into `out` with `ocikit-codec`'s
/// [`TarWriter`] (each file exactly its declared size), then the end-of-archive blocks.
/// Returns `out` flushed.
pub(crate) fn write_tar<W: Write>(mut rx: mpsc::Receiver<TarMsg>, out: W) -> io::Result<W> {
    let mut tar = TarWriter::new(out);
    while let Some(msg) = rx.blocking_recv() {
        match msg {
            TarMsg::Dir(path) => tar.append_dir(path.as_bytes(), &DIR_META)?,
            TarMsg::File { path, size, decode } => {
                let data = EntryData {
                    rx: &mut rx,
                    current: Bytes::new(),
                    done: false,
                };
                match decode {
                    None => tar.append_file(path.as_bytes(), &FILE_META, size, data)?,
                    Some((compression, diff_id)) => {
                        let decoder = ocikit_codec::compression::Decoder::new(
                            data,
                            compression,
                            ocikit_codec::Limits::default(),
                        );
                        let checked = DiffIdCheck {
                            inner: decoder,
                            hasher: Some(ocikit_digest::Hasher::sha256()),
                            expected: diff_id,
                        };
                        tar.append_file(path.as_bytes(), &FILE_META, size, checked)?;
                    }
                }
            }
            TarMsg::Fail(why) => return Err(io::Error::other(why)),
            TarMsg::Data(_) | TarMsg::End => {
                return Err(io::Error::other("entry data outside an entry"));
            }
        }
    }
    tar.finish()
}

/// Streams a stored blob's bytes as `Data` messages (see [`stream_blob`]), then sends
/// `End`, or `Fail` and the typed error when the blob is missing or corrupt.
pub(crate) async fn send_blob(
    store: &dyn Store,
    digest: &Digest,
    size: u64,
    tx: &mpsc::Sender<TarMsg>,
    progress: impl FnMut(u64),
) -> Result<()> {
    match stream_blob(store, digest, size, tx, TarMsg::Data, progress).await {
        Ok(()) => {
            let _ = tx.send(TarMsg::End).await;
            Ok(())
        }
        Err(e) => {
            let _ = tx.send(TarMsg::Fail(format!("blob {digest} failed"))).await;
            Err(e)
        }
    }
}

/// Streams a stored blob into a channel as `wrap`ped chunks, verifying size and digest:
/// the last chunk is sent only once the digest is checked, so a consumer never sees a
/// complete corrupt blob. Errors are [`Error::Copy`] naming the blob, or
/// [`Error::Unverifiable`] for a blob under an algorithm ocikit cannot compute.
pub(crate) async fn stream_blob<T: Send>(
    store: &dyn Store,
    digest: &Digest,
    size: u64,
    tx: &mpsc::Sender<T>,
    wrap: impl Fn(Bytes) -> T,
    mut progress: impl FnMut(u64),
) -> Result<()> {
    stream_blob_inner(store, digest, size, tx, wrap, &mut progress)
        .await
        .map_err(|e| match e {
            // Names the blob already, as every read path reports it.
            unverifiable @ Error::Unverifiable { .. } => unverifiable,
            other => Error::Copy {
                digest: digest.clone(),
                source: Box::new(other),
            },
        })
}

async fn stream_blob_inner<T: Send>(
    store: &dyn Store,
    digest: &Digest,
    size: u64,
    tx: &mpsc::Sender<T>,
    wrap: impl Fn(Bytes) -> T,
    progress: &mut impl FnMut(u64),
) -> Result<()> {
    use futures::StreamExt;
    let blob = store.open(digest, None).await?;
    if blob.size() != size {
        return Err(Error::Store(ocikit_store::Error::SizeMismatch {
            expected: size,
            actual: blob.size(),
        }));
    }
    // Content under an algorithm ocikit cannot compute is never used unverified.
    let mut hasher =
        ocikit_digest::Hasher::new(digest.algorithm()).map_err(|_| Error::Unverifiable {
            digest: digest.clone(),
        })?;
    let check = |hasher: &ocikit_digest::Hasher| {
        let actual = hasher.current();
        if &actual == digest {
            Ok(())
        } else {
            Err(Error::Store(ocikit_store::Error::DigestMismatch {
                expected: digest.clone(),
                actual,
            }))
        }
    };
    let mut stream = blob.into_stream();
    let mut seen = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        seen += chunk.len() as u64;
        if seen > size {
            return Err(Error::Store(ocikit_store::Error::SizeMismatch {
                expected: size,
                actual: seen,
            }));
        }
        hasher.update(&chunk);
        if seen == size {
            check(&hasher)?;
        }
        if tx.send(wrap(chunk)).await.is_err() {
            return Err(consumer_gone());
        }
        progress(seen);
    }
    if seen != size {
        return Err(Error::Store(ocikit_store::Error::SizeMismatch {
            expected: size,
            actual: seen,
        }));
    }
    check(&hasher)
}

/// Decompresses a stored blob on a blocking thread (streaming, verified) and returns the
/// size and SHA-256 of its uncompressed bytes: a layer's uncompressed size and diffID.
pub(crate) async fn decompressed_digest(
    store: &dyn Store,
    digest: &Digest,
    size: u64,
    compression: ocikit_codec::compression::Compression,
) -> Result<(u64, Digest)> {
    let (tx, source) = bridge::reader_channel();
    let hashing = blocking(move || {
        let mut reader: Box<dyn Read> = match compression {
            ocikit_codec::compression::Compression::None => Box::new(source),
            other => Box::new(ocikit_codec::compression::Decoder::new(
                source,
                other,
                ocikit_codec::Limits::default(),
            )),
        };
        let mut sink = ocikit_digest::DigestWriter::sha256(io::sink());
        io::copy(&mut reader, &mut sink)
            .map_err(|e| Error::Codec(ocikit_codec::compression::error_from_io(e)))?;
        let (_, diff_id, written) = sink.finish();
        Ok((written, diff_id))
    });
    let feeding = async {
        let fed = stream_blob(store, digest, size, &tx, Some, |_| {}).await;
        drop(tx);
        fed
    };
    let (fed, hashed) = futures::join!(feeding, hashing);
    match (fed, hashed) {
        // The decoder stopped reading: its error is the cause.
        (Err(e), Err(cause)) if is_consumer_gone(&e) => Err(cause),
        (Err(e), _) => Err(e),
        (Ok(()), hashed) => hashed,
    }
}

fn is_consumer_gone(error: &Error) -> bool {
    match error {
        Error::Copy { source, .. } => is_consumer_gone(source),
        Error::Io { operation, .. } => *operation == "hand archive data over",
        _ => false,
    }
}

/// Runs a tar writer thread into `writer` while `feed` sends it messages; returns the
/// writer once both are done. The feed's error comes first (it is the cause; the thread's
/// failure is then only its echo).
pub(crate) async fn with_tar_writer<W, F, Fut, T>(writer: W, feed: F) -> Result<(W, T)>
where
    W: AsyncWrite + Unpin,
    F: FnOnce(mpsc::Sender<TarMsg>) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let (msg_tx, msg_rx) = mpsc::channel::<TarMsg>(QUEUE);
    let (out, drain) = bridge::sink(writer);
    let thread = tokio::task::spawn_blocking(move || write_tar(msg_rx, out).map(|_| ()));
    let drain = async {
        drain.await.map_err(|source| Error::Io {
            operation: "write archive stream",
            path: std::path::PathBuf::new(),
            source,
        })
    };
    let (fed, drained) = futures::join!(feed(msg_tx), drain);
    let written = match thread.await {
        Ok(r) => r,
        Err(join) => Err(io::Error::other(join)),
    };
    let written = written.map_err(|source| Error::Io {
        operation: "write archive",
        path: std::path::PathBuf::new(),
        source,
    });
    // A failing output is the cause of everything else failing.
    let writer = drained?;
    let value = match (fed, written) {
        // The tar thread stopped taking data: its error is the cause.
        (Err(e), Err(cause)) if is_consumer_gone(&e) => return Err(cause),
        (Err(e), _) => return Err(e),
        (Ok(value), written) => {
            written?;
            value
        }
    };
    Ok((writer, value))
}

/// Runs the tar parser `parse` on a blocking thread over `reader` (fed to it through the
/// layout's bridge), with `consume` taking its messages on the async side. The consumer's
/// error comes first, then the reader's (the parser's failure is then only its echo), then
/// the parser's.
pub(crate) async fn with_tar_reader<R, M, P, C, Fut, T>(
    reader: R,
    parse: P,
    consume: C,
) -> Result<T>
where
    R: AsyncRead + Unpin,
    M: Send + 'static,
    P: FnOnce(ChannelReader, mpsc::Sender<M>) -> Result<()> + Send + 'static,
    C: FnOnce(mpsc::Receiver<M>) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let (source, pump) = bridge::feed(tokio_util::io::ReaderStream::with_capacity(reader, CHUNK));
    let (msg_tx, msg_rx) = mpsc::channel::<M>(QUEUE * 2);
    // Spawned now (not lazily): the parser must run while the reader is pumped.
    let parser = tokio::task::spawn_blocking(move || parse(source, msg_tx));
    let pump = async {
        pump.await.map_err(|source| Error::Io {
            operation: "read archive stream",
            path: std::path::PathBuf::new(),
            source,
        })
    };
    let (pumped, consumed) = futures::join!(pump, consume(msg_rx));
    let parsed = match parser.await {
        Ok(result) => result,
        Err(join) => Err(Error::Io {
            operation: "run archive thread",
            path: std::path::PathBuf::new(),
            source: io::Error::other(join),
        }),
    };
    let value = consumed?;
    pumped?;
    parsed?;
    Ok(value)
}

/// Writes a blob arriving in chunks into `store`; on `verify`, commits only under that
/// digest (the archive name), else under whatever it hashes to. Maps mismatches to typed
/// archive errors naming `entry`.
pub(crate) async fn commit_blob(
    writer: ocikit_store::BlobWriter,
    entry: &str,
    expected: Option<(&Digest, u64)>,
) -> Result<(Digest, u64)> {
    match expected {
        Some((digest, size)) => {
            let actual = writer.digest();
            match writer.commit(digest, size).await {
                Ok(()) => Ok((digest.clone(), size)),
                Err(ocikit_store::Error::DigestMismatch { .. }) => Err(archive_error(
                    entry,
                    ArchiveErrorKind::DigestMismatch { actual },
                )),
                Err(ocikit_store::Error::SizeMismatch { .. }) => {
                    Err(archive_error(entry, ArchiveErrorKind::Truncated))
                }
                Err(e) => Err(archive_error_with(
                    entry,
                    ArchiveErrorKind::Corrupt,
                    Error::Store(e),
                )),
            }
        }
        None => Ok(writer.finish().await?),
    }
}

/// Reads an entry's data into memory on the tar thread, refusing more than `limit` bytes.
pub(crate) fn read_capped(
    entry: &mut dyn Read,
    name: &str,
    size: u64,
    limit: u64,
) -> Result<Vec<u8>> {
    if size > limit {
        return Err(archive_error(name, ArchiveErrorKind::TooLarge { limit }));
    }
    let mut bytes = Vec::with_capacity(size as usize);
    entry
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| read_error(name, e))?;
    if (bytes.len() as u64) < size {
        return Err(archive_error(name, ArchiveErrorKind::Truncated));
    }
    if bytes.len() as u64 > limit {
        return Err(archive_error(name, ArchiveErrorKind::TooLarge { limit }));
    }
    Ok(bytes)
}

/// Streams an entry's data on the tar thread as chunks through `send`; errors on
/// truncation. Returns the bytes read.
pub(crate) fn stream_entry(
    entry: &mut dyn Read,
    name: &str,
    size: u64,
    mut send: impl FnMut(Bytes) -> Result<()>,
) -> Result<u64> {
    let mut done = 0u64;
    loop {
        let mut buf = vec![0u8; CHUNK];
        let n = match entry.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_error(name, e)),
        };
        buf.truncate(n);
        done += n as u64;
        send(Bytes::from(buf))?;
    }
    if done != size {
        return Err(archive_error(name, ArchiveErrorKind::Truncated));
    }
    Ok(done)
}

/// The error a tar thread reports when the async side stopped listening (the async side
/// has the real error).
pub(crate) fn consumer_gone() -> Error {
    Error::Io {
        operation: "hand archive data over",
        path: std::path::PathBuf::new(),
        source: io::Error::new(io::ErrorKind::BrokenPipe, "consumer stopped"),
    }
}

/// Writes a file atomically: `write` fills a temp file beside `path`, which is synced and
/// renamed into place only if `write` succeeds (a failed write leaves no file behind).
pub(crate) async fn write_file_atomically<F, Fut, T>(path: &std::path::Path, write: F) -> Result<T>
where
    F: FnOnce(tokio::fs::File) -> Fut,
    Fut: std::future::Future<Output = Result<(tokio::fs::File, T)>>,
{
    let io_error = |operation, path: &std::path::Path| {
        let path = path.to_path_buf();
        move |source| Error::Io {
            operation,
            path,
            source,
        }
    };
    let target = path.to_path_buf();
    let dir = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let temp = {
        let dir = dir.clone();
        blocking(move || {
            // Readable by others less the umask, as skopeo creates archives (not 0600).
            use std::os::unix::fs::PermissionsExt;
            tempfile::Builder::new()
                .prefix(".ocikit-archive-")
                .permissions(std::fs::Permissions::from_mode(0o644))
                .tempfile_in(&dir)
                .map_err(io_error("create temp file in", &dir))
        })
        .await?
    };
    let (file, temp_path) = temp.into_parts();
    let (file, value) = write(tokio::fs::File::from_std(file)).await?;
    let file = file.into_std().await;
    blocking(move || {
        file.sync_all().map_err(io_error("fsync", &temp_path))?;
        temp_path.persist(&target).map_err(|e| Error::Io {
            operation: "rename into place",
            path: target.clone(),
            source: e.error,
        })?;
        std::fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io_error("fsync directory", &dir))
    })
    .await?;
    Ok(value)
}
