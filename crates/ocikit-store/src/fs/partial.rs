//! Partial downloads: [`Partials`], blob downloads in progress kept across processes.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use ocikit_digest::{Algorithm, Digest, Hasher};

#[cfg(test)]
use super::durability_tests;
use super::{
    FILE_MODE, FsStore, READ_CHUNK, blocking, create_dir_durable, open_flags, sync_dir, sync_file,
    touch,
};
use crate::{Error, Result};

/// Bytes gathered (as the chunks they came in, not copied) before they are written to the
/// partial file.
const FLUSH_AT: usize = 1 << 20;
/// Bytes written between two `fdatasync`s of a partial file (as the store's blob writer
/// does), so the disk's work overlaps the download instead of all coming at the commit.
/// Correctness does not rest on it: whatever is on disk after a crash is re-hashed.
const SYNC_WINDOW: u64 = 16 << 20;

/// Partial downloads: blob downloads in progress, kept on disk across processes so that one
/// interrupted (a killed process, a dropped connection) resumes from the bytes it already
/// has, as containerd's content store keeps its ingests.
///
/// ```text
/// <root>/.ocikit/partial/<algorithm>/<encoded>   the first bytes of a blob, as downloaded
/// ```
///
/// - **Never a blob.** Partial files live outside `blobs/`, so [`Store::list`](crate::Store::list), readers and
///   fsck never see them; a blob appears only when [`PartialDownload::commit`] has verified
///   the whole and renamed it into place (fsynced first, its directory after).
/// - **One writer.** [`Partials::open`] takes an exclusive `flock` on the file and holds it
///   until the [`PartialDownload`] is dropped; a second process (or task) downloading the
///   same blob waits for it, then finds the blob published or the partial file to go on
///   from. The kernel releases the lock when its holder dies, however it dies.
/// - **Nothing on disk is trusted.** Bytes are appended in order, so a process that dies
///   leaves a prefix of what it received (the length on disk is what counts; bytes not yet
///   written are downloaded again). Opening hashes that prefix, the download continues the
///   same hash, and the commit compares the whole with the digest: a prefix that was changed
///   on disk, or lost to a power failure, ends in [`Error::DigestMismatch`] and the partial
///   file is discarded, never published.
/// - **Bounded.** [`Partials::remove_stale`] removes partial files not written for a while
///   (and not locked), which is what layout garbage collection calls.
///
/// Only [`FsStore`] keeps partial downloads ([`Store::partial_downloads`](crate::Store::partial_downloads)); memory and object
/// stores start a download interrupted in one process over in the next.
#[derive(Clone, Debug)]
pub struct Partials {
    store: FsStore,
}

/// A partial download [`Partials::remove_stale`] removed (or, in a dry run, would remove).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StalePartial {
    /// The blob it was the beginning of.
    pub digest: Digest,
    /// The bytes it held.
    pub size: u64,
}

impl Partials {
    pub(super) fn new(store: FsStore) -> Partials {
        Partials { store }
    }

    /// The directory of partial downloads (`<root>/.ocikit/partial`).
    pub fn dir(&self) -> PathBuf {
        self.store.paths.root.join(".ocikit").join("partial")
    }

    /// Where the partial download of `digest` is kept.
    pub fn path(&self, digest: &Digest) -> PathBuf {
        let (algorithm, encoded) = digest.path_components();
        self.dir().join(algorithm).join(encoded)
    }

    /// Opens the partial download of `digest`, creating it empty when there is none, and
    /// takes its lock (waiting while another process or task holds it). The bytes already
    /// on disk are hashed before this returns ([`PartialDownload::resumed_from`] says how
    /// many); a file longer than `size`, the blob's announced size, cannot be its beginning
    /// and is emptied.
    pub async fn open(&self, digest: &Digest, size: u64) -> Result<PartialDownload> {
        let algorithm = digest.algorithm().clone();
        if !algorithm.is_supported() {
            return Err(Error::UnsupportedAlgorithm { algorithm });
        }
        let path = self.path(digest);
        let root = self.store.paths.root.clone();
        let opened = blocking(move || open_locked(&root, &path, &algorithm, size)).await?;
        Ok(PartialDownload {
            store: self.store.clone(),
            file: Some(Arc::new(opened.file)),
            path: opened.path,
            hasher: opened.hasher,
            on_disk: opened.len,
            resumed_from: opened.len,
            buf: Vec::new(),
            buffered: 0,
            writing: None,
            unsynced: 0,
        })
    }

    /// Removes the partial downloads last written more than `older_than` before `now` and
    /// not being written (their lock is free); with `dry_run`, only reports them. Stray
    /// entries (names that are no digest, anything but regular files) are left alone.
    pub async fn remove_stale(
        &self,
        older_than: Duration,
        now: SystemTime,
        dry_run: bool,
    ) -> Result<Vec<StalePartial>> {
        let dir = self.dir();
        blocking(move || remove_stale_sync(&dir, older_than, now, dry_run)).await
    }
}

/// A partial file opened, locked and its prefix hashed.
struct Opened {
    file: File,
    path: PathBuf,
    hasher: Hasher,
    len: u64,
}

fn open_locked(root: &Path, path: &Path, algorithm: &Algorithm, size: u64) -> Result<Opened> {
    if let Some(dir) = path.parent() {
        create_dir_durable(root, dir)?;
    }
    let file = loop {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(FILE_MODE)
            .custom_flags(open_flags(
                rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::CLOEXEC,
            ))
            .open(path)
            .map_err(|e| Error::io("open partial download", path, e))?;
        file.lock()
            .map_err(|e| Error::io("lock partial download", path, e))?;
        let held = file
            .metadata()
            .map_err(|e| Error::io("stat partial download", path, e))?;
        if !held.is_file() {
            return Err(Error::NotARegularFile { path: path.into() });
        }
        // The holder before us may have published it (renamed it into `blobs/`) or removed
        // it: then this lock guards nothing, and the path is opened again.
        match std::fs::symlink_metadata(path) {
            Ok(now) if now.dev() == held.dev() && now.ino() == held.ino() => break file,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("stat partial download", path, e)),
        }
    };
    let mut hasher = Hasher::new(algorithm).map_err(|_| Error::UnsupportedAlgorithm {
        algorithm: algorithm.clone(),
    })?;
    let mut len = file
        .metadata()
        .map_err(|e| Error::io("stat partial download", path, e))?
        .len();
    if len > size {
        file.set_len(0)
            .map_err(|e| Error::io("empty partial download", path, e))?;
        len = 0;
    }
    // Hash exactly `len` bytes: what is there is the prefix the download continues.
    let mut reader = (&file).take(len);
    let mut buf = vec![0u8; READ_CHUNK.min(usize::try_from(len).unwrap_or(READ_CHUNK))];
    let mut read = 0u64;
    while read < len {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io("read partial download", path, e)),
        };
        hasher.update(&buf[..n]);
        read += n as u64;
    }
    if read < len {
        // Shrunk behind our back: keep what was hashed.
        file.set_len(read)
            .map_err(|e| Error::io("truncate partial download", path, e))?;
        len = read;
    }
    Ok(Opened {
        file,
        path: path.to_path_buf(),
        hasher,
        len,
    })
}

fn remove_stale_sync(
    dir: &Path,
    older_than: Duration,
    now: SystemTime,
    dry_run: bool,
) -> Result<Vec<StalePartial>> {
    let mut removed = Vec::new();
    let algorithms = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(removed),
        Err(e) => return Err(Error::io("list", dir, e)),
    };
    for algorithm in algorithms.flatten() {
        let Some(name) = algorithm.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if !algorithm.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let sub = algorithm.path();
        let entries = std::fs::read_dir(&sub).map_err(|e| Error::io("list", &sub, e))?;
        let mut changed = false;
        for entry in entries.flatten() {
            let Some(encoded) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let Ok(digest) = Digest::parse(&format!("{name}:{encoded}")) else {
                continue;
            };
            let path = entry.path();
            let Ok(Some((file, _))) = super::open_regular(&path) else {
                continue;
            };
            // Being written (or waited for) by a live process: never stale.
            if file.try_lock().is_err() {
                continue;
            }
            let Ok(meta) = file.metadata() else { continue };
            let stale = meta
                .modified()
                .ok()
                .and_then(|m| now.duration_since(m).ok())
                .is_some_and(|age| age >= older_than);
            // Still the file at the path (not published or replaced meanwhile).
            let same = std::fs::symlink_metadata(&path)
                .is_ok_and(|now| now.dev() == meta.dev() && now.ino() == meta.ino());
            if !stale || !same {
                continue;
            }
            if !dry_run {
                match std::fs::remove_file(&path) {
                    Ok(()) => changed = true,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(Error::io("remove partial download", &path, e)),
                }
            }
            removed.push(StalePartial {
                digest,
                size: meta.len(),
            });
        }
        if changed {
            sync_dir(&sub)?;
        }
    }
    removed.sort_by(|a, b| a.digest.as_str().cmp(b.digest.as_str()));
    Ok(removed)
}

/// One partial download, locked while this value lives: bytes go in with
/// [`PartialDownload::write`], hashed as they come after the prefix that was on disk.
///
/// Dropping it (or [`PartialDownload::suspend`], which first writes what is gathered) keeps
/// the bytes for a later run; [`PartialDownload::commit`] verifies and publishes them;
/// [`PartialDownload::discard`] removes them.
#[derive(Debug)]
pub struct PartialDownload {
    store: FsStore,
    /// The locked file (`None` once given up).
    file: Option<Arc<File>>,
    path: PathBuf,
    hasher: Hasher,
    /// Bytes in the file, or being written to it.
    on_disk: u64,
    resumed_from: u64,
    /// Chunks gathered, not yet written: held as they were handed in (reference-counted
    /// [`Bytes`], never copied into a buffer of ours).
    buf: Vec<Bytes>,
    /// The bytes in `buf`.
    buffered: usize,
    /// The write in flight, which hands its (emptied) list back.
    writing: Option<tokio::task::JoinHandle<Result<Vec<Bytes>>>>,
    /// Bytes written since the last `fdatasync`.
    unsynced: u64,
}

impl PartialDownload {
    /// The bytes that were on disk when it was opened: where the download resumes.
    pub fn resumed_from(&self) -> u64 {
        self.resumed_from
    }

    /// The bytes held so far (on disk or gathered): where the next byte written goes.
    pub fn len(&self) -> u64 {
        self.on_disk + self.buffered as u64
    }

    /// Whether nothing is held yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Where the partial file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends the next bytes of the blob (copied; [`PartialDownload::write_bytes`] keeps
    /// a chunk already in [`Bytes`] as it is).
    pub async fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.write_bytes(Bytes::copy_from_slice(bytes)).await
    }

    /// Appends the next bytes of the blob, a chunk as a download hands it over: hashed
    /// here, then held (not copied) until it is written with the chunks gathered with it.
    pub async fn write_bytes(&mut self, chunk: Bytes) -> Result<()> {
        if chunk.is_empty() {
            return Ok(());
        }
        self.hasher.update(&chunk);
        self.buffered += chunk.len();
        self.buf.push(chunk);
        if self.buffered >= FLUSH_AT {
            self.flush().await?;
        }
        Ok(())
    }

    /// Hands what is gathered to a blocking thread that writes it (after the previous write
    /// ended, so at most one is in flight while the next bytes arrive and are hashed), with
    /// an `fdatasync` every [`SYNC_WINDOW`] bytes so the disk works along the way.
    async fn flush(&mut self) -> Result<()> {
        let spare = self.settle().await?;
        if self.buf.is_empty() {
            return Ok(());
        }
        let file = self.file()?;
        let mut next = spare.unwrap_or_default();
        next.clear();
        let mut buf = std::mem::replace(&mut self.buf, next);
        let len = std::mem::take(&mut self.buffered) as u64;
        let at = self.on_disk;
        self.on_disk += len;
        self.unsynced += len;
        let sync = self.unsynced >= SYNC_WINDOW;
        if sync {
            self.unsynced = 0;
        }
        let path = self.path.clone();
        self.writing = Some(tokio::task::spawn_blocking(move || {
            let mut offset = at;
            for chunk in buf.drain(..) {
                file.write_all_at(&chunk, offset)
                    .map_err(|e| Error::io("write partial download", &path, e))?;
                offset += chunk.len() as u64;
            }
            if sync {
                file.sync_data()
                    .map_err(|e| Error::io("fsync partial download", &path, e))?;
            }
            Ok(buf)
        }));
        Ok(())
    }

    /// Waits for the write in flight; returns its buffer for reuse.
    async fn settle(&mut self) -> Result<Option<Vec<Bytes>>> {
        match self.writing.take() {
            None => Ok(None),
            Some(write) => match write.await {
                Ok(written) => written.map(Some),
                Err(join) => Err(Error::Stream(io::Error::other(join))),
            },
        }
    }

    /// Writes everything gathered and waits until it is written.
    async fn drain(&mut self) -> Result<()> {
        self.flush().await?;
        self.settle().await.map(|_| ())
    }

    fn file(&self) -> Result<Arc<File>> {
        self.file
            .clone()
            .ok_or_else(|| Error::Stream(io::Error::other("partial download already finished")))
    }

    /// Empties it and starts the hash over: for a server that sent the whole blob when asked
    /// for the rest.
    pub async fn restart(&mut self) -> Result<()> {
        // What was in flight is moot, but must land before the file is emptied.
        self.settle().await.ok();
        let file = self.file()?;
        let path = self.path.clone();
        blocking(move || {
            file.set_len(0)
                .map_err(|e| Error::io("empty partial download", &path, e))
        })
        .await?;
        self.buf.clear();
        self.buffered = 0;
        self.on_disk = 0;
        self.resumed_from = 0;
        self.hasher =
            Hasher::new(&self.hasher.algorithm()).map_err(|_| Error::UnsupportedAlgorithm {
                algorithm: self.hasher.algorithm(),
            })?;
        Ok(())
    }

    /// Writes what is gathered and lets go of the lock, keeping the bytes for a later run;
    /// returns how many are kept.
    pub async fn suspend(mut self) -> Result<u64> {
        self.drain().await?;
        Ok(self.on_disk)
    }

    /// Removes the partial file (and lets go of the lock).
    pub async fn discard(mut self) -> Result<()> {
        self.buf.clear();
        self.buffered = 0;
        self.settle().await.ok();
        let file = self.file.take();
        let path = self.path.clone();
        blocking(move || {
            // Removed while still locked, so no one else is writing it.
            let removed = match std::fs::remove_file(&path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(Error::io("remove partial download", &path, e)),
            };
            drop(file);
            removed
        })
        .await
    }

    /// Verifies that the bytes held are exactly `size` bytes hashing to `expected` and
    /// publishes them as that blob: fsynced, renamed into `blobs/`, the directory fsynced. If
    /// the blob is stored already, the partial file is removed instead. Content that does not
    /// match is [`Error::SizeMismatch`] or [`Error::DigestMismatch`], and the partial file is
    /// removed: it can never become right.
    pub async fn commit(mut self, expected: &Digest, size: u64) -> Result<()> {
        self.drain().await?;
        let held = self.on_disk;
        let actual = self.hasher.current();
        if held != size {
            self.discard().await?;
            return Err(Error::SizeMismatch {
                expected: size,
                actual: held,
            });
        }
        if &actual != expected {
            self.discard().await?;
            return Err(Error::DigestMismatch {
                expected: expected.clone(),
                actual,
            });
        }
        let file = self.file.take();
        let path = self.path.clone();
        let target = self.store.blob_path(expected);
        let root = self.store.paths.root.clone();
        blocking(move || {
            let file = file.ok_or_else(|| {
                Error::Stream(io::Error::other("partial download already finished"))
            })?;
            publish(&root, &file, &path, &target, size)
        })
        .await
    }
}

/// Renames a verified partial file (`path`, locked through `file`) into place as a blob.
fn publish(root: &Path, file: &File, path: &Path, target: &Path, size: u64) -> Result<()> {
    let dir = target.parent().map(Path::to_path_buf).unwrap_or_default();
    create_dir_durable(root, &dir)?;
    if let Ok(meta) = std::fs::symlink_metadata(target)
        && meta.is_file()
        && meta.len() == size
    {
        // Stored already (another writer was first): renew its time, as a deduplicated
        // write does, and drop the partial file.
        touch(target);
        std::fs::remove_file(path).map_err(|e| Error::io("remove partial download", path, e))?;
        return Ok(());
    }
    sync_file(file, path)?;
    // `rename` replaces whatever squats the name (a truncated file, a symlink) with the
    // verified content, as publishing a staged blob does.
    std::fs::rename(path, target).map_err(|e| Error::io("rename into place", target, e))?;
    trace!(durability_tests::Step::Rename {
        from: path.to_path_buf(),
        to: target.to_path_buf()
    });
    sync_dir(&dir)
}
