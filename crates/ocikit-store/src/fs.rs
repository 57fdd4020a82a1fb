//! [`FsStore`]: blobs and documents in a directory, laid out as an OCI image layout.
//!
//! ```text
//! <root>/blobs/<algorithm>/<encoded>   blobs (the OCI image-layout convention)
//! <root>/<key>                         documents (`index.json`, `oci-layout`, ...)
//! <root>/.ocikit/tmp/                  staging: temp files, renamed into place when done
//! <root>/.ocikit/locks/                lock files serialising document updates (one per
//!                                      document that exists: removed with it)
//! <root>/.ocikit/partial/<alg>/<enc>   downloads in progress, resumable by a later process
//!                                      ([`Partials`]; never blobs until verified)
//! ```
//!
//! Every write stages in a temp file inside the store, is fsynced, renamed into place, and
//! the directory fsynced, so a crash at any point leaves either the old state or the new one
//! (the unit tests in `fs/durability_tests.rs` check those calls and their order).
//! Blobs and documents are opened without following symlinks and must be regular files.
//! Document updates hold an exclusive `flock` on their lock file, so compare-and-swap is safe
//! across processes, not only threads.

use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::{self, Read, Write};
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use ocikit_digest::{Algorithm, Digest};
use tempfile::NamedTempFile;
use tokio::io::AsyncWrite;
use tokio_util::sync::PollSender;

use crate::store::resolve_range;
use crate::{
    Blob, Document, DocumentKey, Error, LinkMode, LinkTrust, Linked, LocalBlobs, Precondition,
    Result, Staging, Store, Version,
};

/// Largest document a filesystem store reads (documents are small: indexes, tag lists).
pub const MAX_DOCUMENT_SIZE: u64 = 64 << 20;

/// Chunk size of blob streams.
const READ_CHUNK: usize = 1 << 20;

/// A store in a local directory, laid out as an OCI image layout.
#[derive(Clone, Debug)]
pub struct FsStore {
    paths: Arc<Paths>,
    /// Chunks (of [`WRITE_CHUNK`]) a blob writer may queue for its writer thread.
    write_queue: usize,
}

#[derive(Debug)]
struct Paths {
    root: PathBuf,
    blobs: PathBuf,
    tmp: PathBuf,
    locks: PathBuf,
    /// The versions of documents as last read or written, by path, for `document_version`
    /// and the preconditions of writes.
    versions: Mutex<std::collections::HashMap<PathBuf, Seen>>,
    /// The hashing of large documents as last read or written, by path ([`Hashed`]).
    hashed: Mutex<std::collections::HashMap<PathBuf, Arc<Hashed>>>,
    /// Directories' entries as last listed, by path, for `list_documents_after`.
    listings: Mutex<std::collections::HashMap<PathBuf, Listing>>,
}

/// Documents whose versions `document_version` remembers, at most (the map is cleared when
/// it would grow past this).
const MAX_REMEMBERED_VERSIONS: usize = 4096;

/// How much older than the read a file's last change must be for the remembered version to
/// be trusted: file times have a coarse granularity (a clock tick), so a file changed in
/// place within the same tick as a read could keep its times. As git does with its index
/// ("racily clean" entries), a version read too soon after the file changed is re-checked
/// by reading the file again.
const RACY_WINDOW: Duration = Duration::from_millis(100);

/// What identifies one state of a file on disk: replacing it (a new inode) or writing it
/// in place (new times, or a new size) changes at least one of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileId {
    fn of(meta: &std::fs::Metadata) -> FileId {
        use std::os::unix::fs::MetadataExt;
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }

    /// The file's last change (the later of mtime and ctime).
    fn changed(&self) -> SystemTime {
        let at = |(secs, nanos): (i64, i64)| {
            let secs = Duration::from_secs(secs.max(0).unsigned_abs());
            SystemTime::UNIX_EPOCH + secs + Duration::from_nanos(nanos.max(0).unsigned_abs())
        };
        at(self.mtime).max(at(self.ctime))
    }
}

/// A document version as read or written, with the state of its file and when it was read.
///
/// The version stands for the file as long as the file is in the same state ([`FileId`]),
/// provided that no change of the content can have left the state as it was. Two cases
/// make sure of that:
///
/// - the file was read well after its last change (`RACY_WINDOW`): a later change gets
///   later times than those recorded, whatever the clock's granularity;
/// - the store wrote the file itself, under the document's lock, and gave it a modification
///   time (`stamp`) earlier than the times the kernel had given the file at the write, with
///   nanoseconds that only a filesystem keeping nanoseconds stores as they are (`own`). A
///   change by anyone after that (a write in place, even within the same clock tick, of the
///   same size) gets the kernel's current time, which is never earlier than the times it
///   gave before (unless the system clock is set back, which defeats the racy window too),
///   so it changes the modification time; a file put in its place by rename is another
///   inode (ours is linked, or open, until the state is recorded), and one that reuses the
///   inode number later would also need the stamp's exact time as its own.
///
/// Without the second case a document written less than `RACY_WINDOW` ago would be read and
/// hashed again by the next write's precondition and by `document_version`: a chain of
/// edits (tags set one after another) would read and hash the whole document each time.
#[derive(Clone, Debug)]
struct Seen {
    file: FileId,
    version: Version,
    read_at: SystemTime,
    /// Written by this store with its modification time stamped (see above).
    own: bool,
}

impl Seen {
    /// Whether the version still stands for a file now in state `file`.
    fn still(&self, file: &FileId) -> bool {
        self.file == *file
            && (self.own
                || self
                    .file
                    .changed()
                    .checked_add(RACY_WINDOW)
                    .is_some_and(|safe| safe <= self.read_at))
    }
}

/// Gives `file`, just written and not yet renamed into place, a modification time that no
/// later change of it can get (see [`Seen`]): the latest time before both of the times the
/// kernel gave it at the write whose nanoseconds end in 1, which a filesystem storing times
/// more coarsely than nanoseconds cannot keep as it is (it stores multiples of its
/// granularity, and every granularity that divides a second, or is whole seconds, is a
/// multiple of 2 or 5 ns). Returns the time set, as `(seconds, nanoseconds)`; `None` if it
/// could not be set.
fn stamp(file: &File) -> Option<(i64, i64)> {
    let given = FileId::of(&file.metadata().ok()?);
    let (mut secs, nanos) = given.mtime.min(given.ctime);
    let mut stamped = nanos - (nanos - 1).rem_euclid(10);
    if stamped >= nanos {
        stamped -= 10;
    }
    if stamped < 0 {
        secs -= 1;
        stamped += 1_000_000_000;
    }
    let at = SystemTime::UNIX_EPOCH
        + Duration::new(u64::try_from(secs).ok()?, u32::try_from(stamped).ok()?);
    file.set_modified(at).ok()?;
    Some((secs, stamped))
}

/// The SHA-256 of a large document's bytes, with the hasher's state at every [`CHECKPOINT`]
/// bytes and the bytes themselves: the version of new bytes of the same document that share
/// a prefix with these (an `index.json` with one more entry at the end of its `manifests`)
/// is hashed on from the last checkpoint within the shared prefix. Comparing the prefix
/// costs a small part of hashing it (a 2 MiB `index.json`: about 0.1 ms against 1.5 ms).
#[derive(Debug)]
struct Hashed {
    bytes: Bytes,
    /// `checkpoints[i]`: the hasher after the first `(i + 1) * CHECKPOINT` bytes.
    checkpoints: Vec<ocikit_digest::Hasher>,
    version: Version,
}

/// How many bytes apart [`Hashed`] checkpoints are (a multiple of SHA-256's block size).
const CHECKPOINT: usize = 64 << 10;

/// Documents smaller than this are hashed whole, their hashing not kept.
const MIN_HASHED: usize = 2 * CHECKPOINT;

/// The bytes that [`Hashed`] entries keep in all, at most (the map is cleared when it would
/// grow past this).
const MAX_HASHED_BYTES: usize = 64 << 20;

impl Hashed {
    /// Hashes `bytes`, from the last checkpoint of `previous` whose prefix they share.
    fn of(bytes: Bytes, previous: Option<&Hashed>) -> Hashed {
        let mut checkpoints = Vec::with_capacity(bytes.len() / CHECKPOINT);
        if let Some(previous) = previous {
            for (i, point) in previous.checkpoints.iter().enumerate() {
                let range = i * CHECKPOINT..(i + 1) * CHECKPOINT;
                if bytes.get(range.clone()) != previous.bytes.get(range) {
                    break;
                }
                checkpoints.push(point.clone());
            }
        }
        let mut hasher = checkpoints
            .last()
            .cloned()
            .unwrap_or_else(ocikit_digest::Hasher::sha256);
        for chunk in bytes[checkpoints.len() * CHECKPOINT..].chunks(CHECKPOINT) {
            hasher.update(chunk);
            if chunk.len() == CHECKPOINT {
                checkpoints.push(hasher.clone());
            }
        }
        let version = Version::new(hasher.finish().encoded());
        Hashed {
            bytes,
            checkpoints,
            version,
        }
    }
}

/// Directory entries [`Listing`]s remember in all, at most (the map is cleared when it would
/// grow past this): about 100 MiB of names at worst.
const MAX_LISTED_ENTRIES: usize = 1 << 20;

/// A directory's entries (full keys, a directory's with `/` appended, and whether it is one),
/// sorted, with the state of the directory and when they were read.
///
/// Creating, removing or renaming an entry changes the directory's times, so a page of a
/// listing (`list_documents_after`) can reuse the entries of the last read while the
/// directory's state is the same (the same racy-window rule as [`Seen`]): one `stat` and a
/// binary search instead of reading and sorting every entry, which makes a page of 100 among
/// 100,000 tags cost its own size, not the directory's.
#[derive(Clone, Debug)]
struct Listing {
    dir: FileId,
    listed_at: SystemTime,
    children: Children,
}

/// A directory's entries: each full key (a directory's with `/` appended) and whether it is
/// a directory, in key order.
type Children = Arc<Vec<(String, bool)>>;

impl Listing {
    fn still(&self, dir: &FileId) -> bool {
        self.dir == *dir
            && self
                .dir
                .changed()
                .checked_add(RACY_WINDOW)
                .is_some_and(|safe| safe <= self.listed_at)
    }
}

/// Runs blocking filesystem work off the async executor.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result,
        Err(join) => Err(Error::Stream(io::Error::other(join))),
    }
}

/// `open(2)` flags as `OpenOptionsExt::custom_flags` takes them.
fn open_flags(flags: rustix::fs::OFlags) -> i32 {
    // The O_* flags are small positive values of a C int; rustix holds them as unsigned.
    flags.bits().cast_signed()
}

/// Opens a file for reading without following a symlink at the leaf and without blocking on
/// FIFOs, and requires it to be a regular file. `Ok(None)` when absent.
fn open_regular(path: &Path) -> Result<Option<(File, u64)>> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(open_flags(
            rustix::fs::OFlags::NOFOLLOW
                | rustix::fs::OFlags::NONBLOCK
                | rustix::fs::OFlags::CLOEXEC,
        ))
        .open(path);
    let file = match file {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
            return Err(Error::NotARegularFile { path: path.into() });
        }
        Err(e) => return Err(Error::io("open", path, e)),
    };
    let meta = file.metadata().map_err(|e| Error::io("stat", path, e))?;
    if !meta.is_file() {
        return Err(Error::NotARegularFile { path: path.into() });
    }
    Ok(Some((file, meta.len())))
}

/// Records a durability step (an fsync, a rename into place, an unlink) for the unit tests in
/// `fs/durability_tests.rs`, which check their order; nothing outside `cfg(test)`.
macro_rules! trace {
    ($step:expr) => {
        #[cfg(test)]
        durability_tests::record($step);
    };
}

#[cfg(test)]
mod durability_tests;

#[cfg(test)]
mod version_tests;

mod partial;
pub use partial::{PartialDownload, Partials, StalePartial};

/// fsyncs a directory, making renames and unlinks in it durable.
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("fsync directory", dir, e))?;
    trace!(durability_tests::Step::SyncDir(dir.to_path_buf()));
    Ok(())
}

/// fdatasyncs a file about to be renamed into place, so its bytes are on disk before its
/// name is.
fn sync_file(file: &File, path: &Path) -> Result<()> {
    file.sync_data().map_err(|e| Error::io("fsync", path, e))?;
    trace!(durability_tests::Step::SyncFile(path.to_path_buf()));
    Ok(())
}

/// Renames a staged file into place, replacing whatever has the name; returns the file.
fn persist(temp: NamedTempFile, target: &Path) -> io::Result<File> {
    #[cfg(test)]
    let from = temp.path().to_path_buf();
    let file = temp.persist(target).map_err(|e| e.error)?;
    trace!(durability_tests::Step::Rename {
        from,
        to: target.to_path_buf()
    });
    Ok(file)
}

/// Renames a staged file into place unless the name exists (`AlreadyExists`).
fn persist_noclobber(temp: NamedTempFile, target: &Path) -> io::Result<()> {
    #[cfg(test)]
    let from = temp.path().to_path_buf();
    temp.persist_noclobber(target).map_err(|e| e.error)?;
    trace!(durability_tests::Step::Rename {
        from,
        to: target.to_path_buf()
    });
    Ok(())
}

/// Removes a blob or document (its directory is to be fsynced after).
fn remove(path: &Path) -> io::Result<()> {
    std::fs::remove_file(path)?;
    trace!(durability_tests::Step::Remove(path.to_path_buf()));
    Ok(())
}

/// The directory that holds `path`'s entry: its parent, or `.` for a relative path of one
/// component (whose `parent()` is the empty path).
fn parent_dir(path: &Path) -> Option<&Path> {
    path.parent().map(|p| {
        if p.as_os_str().is_empty() {
            Path::new(".")
        } else {
            p
        }
    })
}

/// Creates a directory (and parents), fsyncing each parent whose entry list changed; `root`
/// bounds it: a directory is made only below `root`, never `root` itself or above it. A
/// store whose root was removed (a staged layout given up while a write was still under
/// way) is not brought back by the write: it fails with [`io::ErrorKind::NotFound`].
fn create_dir_durable(root: &Path, dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if dir == root || !dir.starts_with(root) {
        let gone = io::Error::new(io::ErrorKind::NotFound, "the store's directory is gone");
        return Err(Error::io("create directory", dir, gone));
    }
    if let Some(parent) = parent_dir(dir) {
        create_dir_durable(root, parent)?;
    }
    let created = {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new().mode(DIR_MODE).create(dir)
    };
    match created {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(Error::io("create directory", dir, e)),
    }
    trace!(durability_tests::Step::CreateDir(dir.to_path_buf()));
    if let Some(parent) = parent_dir(dir) {
        sync_dir(parent)?;
    }
    Ok(())
}

/// Reads exactly `len` bytes of `file` at offset `at` into a new buffer, without zeroing it
/// first: a blob is read in 1 MiB buffers that are handed out (so never reused), and filling
/// each with zeros before the read overwrites them cost about as much as the read itself.
/// A file that ends before `at + len` is an [`io::ErrorKind::UnexpectedEof`].
fn read_exact_at_uninit(file: &File, len: usize, at: u64) -> io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(len);
    while buf.len() < len {
        let offset = at + buf.len() as u64;
        // `spare_capacity` offers pread the vector's spare capacity and extends the vector
        // by what it read.
        match rustix::io::pread(file, rustix::buffer::spare_capacity(&mut buf), offset) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("the file ends {} bytes before the read", len - buf.len()),
                ));
            }
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    // The capacity may exceed `len`: only `len` bytes were asked for.
    buf.truncate(len);
    Ok(buf)
}

/// The version of a document's content: its SHA-256.
fn version_of(bytes: &[u8]) -> Version {
    Version::new(Digest::sha256(bytes).encoded())
}

impl FsStore {
    /// Opens the store rooted at `root`, creating it and its `blobs/` directory if missing;
    /// the store's private `.ocikit/` subdirectories are created by the first write.
    pub async fn open(root: impl Into<PathBuf>) -> Result<FsStore> {
        let root = root.into();
        let paths = Paths {
            blobs: root.join("blobs"),
            tmp: root.join(".ocikit").join("tmp"),
            locks: root.join(".ocikit").join("locks"),
            root,
            versions: Mutex::new(std::collections::HashMap::new()),
            hashed: Mutex::new(std::collections::HashMap::new()),
            listings: Mutex::new(std::collections::HashMap::new()),
        };
        let paths = blocking(move || {
            // The private `.ocikit/` subdirectories appear with the first write, so that
            // reading a layout another tool made leaves it as it was.
            for dir in [&paths.root, &paths.blobs] {
                let top = dir.ancestors().last().unwrap_or(dir);
                create_dir_durable(top, dir)?;
            }
            Ok(paths)
        })
        .await?;
        Ok(FsStore {
            paths: Arc::new(paths),
            write_queue: WRITE_QUEUE,
        })
    }

    /// This store with blob writers that queue at most `mib` MiB (at least one) for their
    /// writer threads, instead of 32: a bound on each writer's memory when the disk or the
    /// writer thread falls behind, for servers with many writers at once (a registry). A
    /// smaller queue overlaps less of the hashing with the disk's work on large ingests.
    pub fn with_write_queue(mut self, mib: usize) -> FsStore {
        self.write_queue = mib.max(1);
        self
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.paths.root
    }

    /// Where a blob lives (whether or not it is stored).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        let (algorithm, encoded) = digest.path_components();
        // Sized once: fsck opens thousands of blobs by path.
        let blobs = self.paths.blobs.as_os_str().len();
        let mut path = PathBuf::with_capacity(blobs + algorithm.len() + encoded.len() + 2);
        path.push(&self.paths.blobs);
        path.push(algorithm);
        path.push(encoded);
        path
    }

    /// Where a document lives (whether or not it is stored).
    pub fn document_path(&self, key: &DocumentKey) -> PathBuf {
        self.paths.root.join(key.as_str())
    }

    /// The staging directory (temp files of writes in progress, or of writers that crashed).
    pub fn temp_dir(&self) -> &Path {
        &self.paths.tmp
    }

    /// Removes temp files older than `age`: what writers that crashed left behind. (A live
    /// writer's temp file is younger than any sensible `age`; an hour is a safe choice.)
    pub async fn clean_temp(&self, age: Duration) -> Result<usize> {
        let tmp = self.paths.tmp.clone();
        blocking(move || {
            let mut removed = 0;
            let now = SystemTime::now();
            let entries = match std::fs::read_dir(&tmp) {
                Ok(entries) => entries,
                // Nothing was ever written here.
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
                Err(e) => return Err(Error::io("list", &tmp, e)),
            };
            for entry in entries.flatten() {
                let Ok(meta) = entry.metadata() else { continue };
                let old = meta
                    .modified()
                    .ok()
                    .and_then(|m| now.duration_since(m).ok())
                    .is_some_and(|elapsed| elapsed >= age);
                if old && std::fs::remove_file(entry.path()).is_ok() {
                    removed += 1;
                }
            }
            Ok(removed)
        })
        .await
    }

    /// The store's partial downloads: blob downloads in progress that a later process
    /// resumes (see [`Partials`]).
    pub fn partials(&self) -> Partials {
        Partials::new(self.clone())
    }

    fn lock_path(&self, key: &DocumentKey) -> PathBuf {
        // `~` never appears in a key, so this mapping is one-to-one.
        self.paths
            .locks
            .join(format!("{}.lock", key.as_str().replace('/', "~")))
    }
}

/// Holds an exclusive `flock` on a document's lock file until dropped.
///
/// Lock files are bounded by the documents that exist: an operation that leaves its document
/// absent removes the lock file before it lets go ([`DocumentLock::release`]), so deleted
/// documents (a registry's blob links, tags, upload sessions) leave no lock files behind.
/// Removing a lock file is safe because of how it is taken: after the `flock` is granted,
/// the locker checks that the path still names the file it locked (the same device and
/// inode); if the file was removed (or replaced) meanwhile, the lock guards nothing and the
/// locker tries again on whatever the path names now. So two holders at once are never
/// possible: a holder's file is the one at the path for as long as it holds it.
struct DocumentLock {
    file: File,
    path: PathBuf,
}

impl DocumentLock {
    fn acquire(root: &Path, path: &Path) -> Result<DocumentLock> {
        use std::os::unix::fs::MetadataExt;
        if let Some(dir) = parent_dir(path) {
            create_dir_durable(root, dir)?;
        }
        loop {
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
                .map_err(|e| Error::io("open lock file", path, e))?;
            file.lock().map_err(|e| Error::io("lock", path, e))?;
            let held = file
                .metadata()
                .map_err(|e| Error::io("stat lock file", path, e))?;
            match std::fs::symlink_metadata(path) {
                Ok(now) if now.dev() == held.dev() && now.ino() == held.ino() => {
                    // The lock is released when the file is closed.
                    return Ok(DocumentLock {
                        file,
                        path: path.to_path_buf(),
                    });
                }
                // Removed (or replaced) by the holder before us: lock the current one.
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("stat lock file", path, e)),
            }
        }
    }

    /// Lets go of the lock, first removing the lock file when the document is `absent`
    /// (while still holding it, so no one else can be holding it too).
    fn release(self, absent: bool) {
        if absent {
            // Best effort: a lock file left behind is harmless, only untidy.
            std::fs::remove_file(&self.path).ok();
        }
        drop(self.file);
    }
}

/// Whether nothing at all is at `path` (an error other than "not found" counts as present).
fn is_absent(path: &Path) -> bool {
    matches!(std::fs::symlink_metadata(path), Err(e) if e.kind() == io::ErrorKind::NotFound)
}

/// Reads a document and notes the state of the file it was read from (from the same open
/// descriptor, so the two agree).
fn read_document_seen(paths: &Paths, path: &Path) -> Result<Option<(Document, Seen)>> {
    let read_at = SystemTime::now();
    let Some((file, size)) = open_regular(path)? else {
        return Ok(None);
    };
    let meta = file.metadata().map_err(|e| Error::io("stat", path, e))?;
    if size > MAX_DOCUMENT_SIZE {
        return Err(Error::TooLarge {
            size,
            limit: MAX_DOCUMENT_SIZE,
        });
    }
    let mut bytes = Vec::with_capacity(size as usize);
    file.take(MAX_DOCUMENT_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io("read", path, e))?;
    let bytes = Bytes::from(bytes);
    let version = paths.version_of(path, &bytes);
    let seen = Seen {
        file: FileId::of(&meta),
        version: version.clone(),
        read_at,
        own: false,
    };
    Ok(Some((Document { bytes, version }, seen)))
}

impl Paths {
    /// Remembers the version of the document at `path` as `seen`. A read of the very state
    /// this store wrote (the same file state and version) keeps the write's record, which is
    /// trusted at once (see [`Seen`]).
    fn remember(&self, path: PathBuf, seen: Seen) {
        if let Ok(mut versions) = self.versions.lock() {
            if let Some(known) = versions.get(&path)
                && known.own
                && !seen.own
                && known.file == seen.file
                && known.version == seen.version
            {
                return;
            }
            if versions.len() >= MAX_REMEMBERED_VERSIONS {
                versions.clear();
            }
            versions.insert(path, seen);
        }
    }

    fn remembered(&self, path: &Path) -> Option<Seen> {
        self.versions.lock().ok()?.get(path).cloned()
    }

    /// Forgets what was known of the document at `path` (deleted).
    fn forget(&self, path: &Path) {
        if let Ok(mut versions) = self.versions.lock() {
            versions.remove(path);
        }
        if let Ok(mut hashed) = self.hashed.lock() {
            hashed.remove(path);
        }
    }

    /// The version of `bytes`, the content of the document at `path`: for a large document,
    /// hashed on from what it shares with the bytes last hashed for `path` ([`Hashed`]).
    fn version_of(&self, path: &Path, bytes: &Bytes) -> Version {
        if bytes.len() < MIN_HASHED {
            return version_of(bytes);
        }
        let previous = self
            .hashed
            .lock()
            .ok()
            .and_then(|hashed| hashed.get(path).cloned());
        let hashed = Hashed::of(bytes.clone(), previous.as_deref());
        let version = hashed.version.clone();
        if let Ok(mut kept) = self.hashed.lock() {
            kept.remove(path);
            let held: usize = kept.values().map(|h| h.bytes.len()).sum();
            if held + bytes.len() > MAX_HASHED_BYTES {
                kept.clear();
            }
            if bytes.len() <= MAX_HASHED_BYTES {
                kept.insert(path.to_path_buf(), Arc::new(hashed));
            }
        }
        version
    }

    /// Whether the document at `path` exists now, after checking `precondition` against it
    /// (under the document's lock): against the version remembered for the file while the
    /// file is in the state it was remembered in (see [`Seen`]), else against the document
    /// read and hashed. A precondition that does not hold is [`Error::Conflict`].
    ///
    /// Writers that take the lock (this store, in any process) cannot change the document
    /// meanwhile. Programs that write it without the lock can, at any time, and nothing
    /// makes a compare-and-swap atomic against them: a change they make between this check
    /// and the rename that follows it is lost, whether the check read the file or trusted
    /// its state; any change made before the check is seen (a different state, see
    /// [`Seen`]), and fails a precondition it breaks.
    fn check_current(
        &self,
        key: &DocumentKey,
        path: &Path,
        precondition: &Precondition,
    ) -> Result<bool> {
        let meta = match std::fs::symlink_metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                check_precondition(key, None, precondition)?;
                return Ok(false);
            }
            Err(e) => return Err(Error::io("stat", path, e)),
        };
        if !meta.is_file() {
            return Err(Error::NotARegularFile { path: path.into() });
        }
        match precondition {
            Precondition::None => return Ok(true),
            Precondition::MustNotExist => {
                return Err(Error::Conflict {
                    key: key.to_string(),
                });
            }
            Precondition::Matches(_) => {}
        }
        let current = match self.remembered(path) {
            Some(seen) if seen.still(&FileId::of(&meta)) => Some(seen.version),
            _ => read_document_seen(self, path)?.map(|(doc, seen)| {
                self.remember(path.to_path_buf(), seen);
                doc.version
            }),
        };
        check_precondition(key, current.as_ref(), precondition)?;
        Ok(current.is_some())
    }
}

/// Whether `precondition` holds for a document now at version `current` (`None`: absent).
fn check_precondition(
    key: &DocumentKey,
    current: Option<&Version>,
    precondition: &Precondition,
) -> Result<()> {
    let holds = match precondition {
        Precondition::None => true,
        Precondition::MustNotExist => current.is_none(),
        Precondition::Matches(v) => current == Some(v),
    };
    if holds {
        Ok(())
    } else {
        Err(Error::Conflict {
            key: key.to_string(),
        })
    }
}

/// [`Store::local_blobs`] of a filesystem store: opens blobs relative to their algorithm's
/// directory, opened once per handle, so that opening one blob walks one path component, not
/// the whole path (fsck opens thousands).
#[derive(Debug)]
struct LocalFiles {
    store: FsStore,
    /// The directory of SHA-256 blobs (nearly all of them): `None` inside when it is absent.
    /// Read without a lock or a reference count, so that threads opening blobs at once do
    /// not contend for one cache line per blob.
    sha256: std::sync::OnceLock<Option<std::os::fd::OwnedFd>>,
    /// The directory of each other algorithm used so far: open, or `None` when it is absent.
    dirs: Mutex<Vec<(Algorithm, Option<Arc<std::os::fd::OwnedFd>>)>>,
}

/// A directory of blobs, borrowed from [`LocalFiles`] or shared with it.
enum BlobDir<'a> {
    Kept(&'a std::os::fd::OwnedFd),
    Shared(Arc<std::os::fd::OwnedFd>),
}

impl std::os::fd::AsFd for BlobDir<'_> {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        match self {
            BlobDir::Kept(fd) => fd.as_fd(),
            BlobDir::Shared(fd) => fd.as_fd(),
        }
    }
}

impl LocalFiles {
    fn new(store: FsStore) -> LocalFiles {
        LocalFiles {
            store,
            sha256: std::sync::OnceLock::new(),
            dirs: Mutex::new(Vec::new()),
        }
    }

    /// The open directory of `digest`'s algorithm's blobs (`None` when there is none).
    fn dir(&self, digest: &Digest) -> Result<Option<BlobDir<'_>>> {
        let algorithm = digest.algorithm();
        if *algorithm == Algorithm::Sha256 {
            if let Some(dir) = self.sha256.get() {
                return Ok(dir.as_ref().map(BlobDir::Kept));
            }
            // Two threads may open it at once: one keeps its descriptor, the other's closes.
            let opened = self.open_dir(digest)?;
            let _ = self.sha256.set(opened);
            return Ok(self
                .sha256
                .get()
                .and_then(Option::as_ref)
                .map(BlobDir::Kept));
        }
        let mut dirs = self
            .dirs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((_, dir)) = dirs.iter().find(|(a, _)| a == algorithm) {
            return Ok(dir.clone().map(BlobDir::Shared));
        }
        let dir = self.open_dir(digest)?.map(Arc::new);
        dirs.push((algorithm.clone(), dir.clone()));
        Ok(dir.map(BlobDir::Shared))
    }

    /// Opens the directory of `digest`'s algorithm's blobs (`None` when it is absent).
    fn open_dir(&self, digest: &Digest) -> Result<Option<std::os::fd::OwnedFd>> {
        let path = self.store.paths.blobs.join(digest.path_components().0);
        // As a path-based open would: the directory's own path may go through symlinks
        // (only blobs themselves must not be symlinks).
        match rustix::fs::open(
            &path,
            rustix::fs::OFlags::RDONLY
                | rustix::fs::OFlags::DIRECTORY
                | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        ) {
            Ok(fd) => Ok(Some(fd)),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(e) => Err(Error::io("open", path, e.into())),
        }
    }
}

impl LocalBlobs for LocalFiles {
    fn open_blocking(&self, digest: &Digest) -> Result<Option<(File, u64)>> {
        let Some(dir) = self.dir(digest)? else {
            return Ok(None);
        };
        let (_, encoded) = digest.path_components();
        let flags = rustix::fs::OFlags::RDONLY
            | rustix::fs::OFlags::NOFOLLOW
            | rustix::fs::OFlags::NONBLOCK
            | rustix::fs::OFlags::CLOEXEC;
        let file = match rustix::fs::openat(&dir, encoded, flags, rustix::fs::Mode::empty()) {
            Ok(fd) => File::from(fd),
            Err(rustix::io::Errno::NOENT) => return Ok(None),
            Err(rustix::io::Errno::LOOP) => {
                return Err(Error::NotARegularFile {
                    path: self.store.blob_path(digest),
                });
            }
            Err(e) => return Err(Error::io("open", self.store.blob_path(digest), e.into())),
        };
        // fstat: the type and size are all that is needed (std's metadata asks statx for
        // every field).
        let stat = rustix::fs::fstat(&file)
            .map_err(|e| Error::io("stat", self.store.blob_path(digest), e.into()))?;
        if rustix::fs::FileType::from_raw_mode(stat.st_mode) != rustix::fs::FileType::RegularFile {
            return Err(Error::NotARegularFile {
                path: self.store.blob_path(digest),
            });
        }
        // A regular file's size is never negative.
        let size = u64::try_from(stat.st_size).unwrap_or_default();
        Ok(Some((file, size)))
    }
}

#[async_trait::async_trait]
impl Store for FsStore {
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>> {
        let path = self.blob_path(digest);
        blocking(move || match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_file() => Ok(Some(meta.len())),
            Ok(_) => Err(Error::NotARegularFile { path }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("stat", path, e)),
        })
        .await
    }

    async fn get(&self, digest: &Digest, range: Option<Range<u64>>) -> Result<Option<Blob>> {
        let path = self.blob_path(digest);
        let opened = blocking({
            let path = path.clone();
            move || open_regular(&path)
        })
        .await?;
        let Some((file, size)) = opened else {
            return Ok(None);
        };
        let range = resolve_range(range, size)?;
        let local = file.try_clone().map_err(|e| Error::io("dup", &path, e))?;
        // Positioned reads of READ_CHUNK straight into the buffers handed out (no copy
        // through an intermediate file buffer), each on the blocking pool, two in flight so
        // the next chunk is read while the consumer takes this one. A file shorter than its
        // size said (truncated behind our back) ends the stream with an error.
        let file = Arc::new(file);
        let starts = (range.start..range.end).step_by(READ_CHUNK);
        let end = range.end;
        let stream = stream::iter(starts)
            .map(move |at| {
                let file = file.clone();
                let path = path.clone();
                let len = usize::try_from((end - at).min(READ_CHUNK as u64)).unwrap_or(READ_CHUNK);
                blocking(move || {
                    let buf = read_exact_at_uninit(&file, len, at)
                        .map_err(|e| Error::io("read", &path, e))?;
                    Ok(Bytes::from(buf))
                })
            })
            .buffered(2)
            .boxed();
        Ok(Some(Blob::new(size, range, stream, Some(local))))
    }

    async fn stage(&self) -> Result<Box<dyn Staging>> {
        let tmp = self.paths.tmp.clone();
        let root = self.paths.root.clone();
        let temp = blocking(move || {
            create_dir_durable(&root, &tmp)?;
            temp_file(&tmp, "blob-")
        })
        .await?;
        Ok(Box::new(FsStaging::new(temp, self.clone())?))
    }

    async fn written_at(&self, digest: &Digest) -> Result<Option<SystemTime>> {
        let path = self.blob_path(digest);
        blocking(move || match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_file() => meta
                .modified()
                .map(Some)
                .map_err(|e| Error::io("read the modification time of", path, e)),
            Ok(_) => Err(Error::NotARegularFile { path }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("stat", path, e)),
        })
        .await
    }

    async fn delete(&self, digest: &Digest) -> Result<bool> {
        let path = self.blob_path(digest);
        blocking(move || match remove(&path) {
            Ok(()) => {
                if let Some(dir) = path.parent() {
                    sync_dir(dir)?;
                }
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io("remove", path, e)),
        })
        .await
    }

    fn list(&self) -> BoxStream<'_, Result<Digest>> {
        let blobs = self.paths.blobs.clone();
        let listing = blocking(move || {
            let mut found = Vec::new();
            let algorithms = match std::fs::read_dir(&blobs) {
                Ok(entries) => entries,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(found),
                Err(e) => return Err(Error::io("list", blobs, e)),
            };
            for algorithm_entry in algorithms {
                let algorithm_entry = algorithm_entry.map_err(|e| Error::io("list", &blobs, e))?;
                let is_dir = algorithm_entry.file_type().is_ok_and(|t| t.is_dir());
                let Some(name) = algorithm_entry.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                if !is_dir || name.parse::<Algorithm>().is_err() {
                    continue; // stray entry: not an algorithm directory
                }
                let dir = algorithm_entry.path();
                let entries = std::fs::read_dir(&dir).map_err(|e| Error::io("list", &dir, e))?;
                for entry in entries {
                    let entry = entry.map_err(|e| Error::io("list", &dir, e))?;
                    if !entry.file_type().is_ok_and(|t| t.is_file()) {
                        continue;
                    }
                    let Some(encoded) = entry.file_name().to_str().map(str::to_owned) else {
                        continue;
                    };
                    if let Ok(digest) = Digest::parse(&format!("{name}:{encoded}")) {
                        found.push(digest);
                    }
                }
            }
            Ok(found)
        });
        stream::once(listing)
            .map(|listing| match listing {
                Ok(digests) => stream::iter(digests.into_iter().map(Ok)).left_stream(),
                Err(e) => stream::iter([Err(e)]).right_stream(),
            })
            .flatten()
            .boxed()
    }

    async fn read_document(&self, key: &DocumentKey) -> Result<Option<Document>> {
        let path = self.document_path(key);
        let paths = Arc::clone(&self.paths);
        blocking(move || {
            let read = read_document_seen(&paths, &path)?;
            Ok(read.map(|(doc, seen)| {
                paths.remember(path, seen);
                doc
            }))
        })
        .await
    }

    /// From the file's metadata when the document was read or written before and its file
    /// has not changed since (same inode, size and times, and either not changed within
    /// `RACY_WINDOW` of that read or written by this store, see `Seen`); otherwise by
    /// reading it.
    async fn document_version(&self, key: &DocumentKey) -> Result<Option<Version>> {
        let path = self.document_path(key);
        let paths = Arc::clone(&self.paths);
        blocking(move || {
            match std::fs::symlink_metadata(&path) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Ok(meta) if meta.is_file() => {
                    if let Some(seen) = paths.remembered(&path)
                        && seen.still(&FileId::of(&meta))
                    {
                        return Ok(Some(seen.version));
                    }
                }
                // Anything else: the read below reports it as it would.
                _ => {}
            }
            let read = read_document_seen(&paths, &path)?;
            Ok(read.map(|(doc, seen)| {
                paths.remember(path, seen);
                doc.version
            }))
        })
        .await
    }

    async fn write_document(
        &self,
        key: &DocumentKey,
        bytes: Bytes,
        precondition: Precondition,
    ) -> Result<Version> {
        let path = self.document_path(key);
        let lock_path = self.lock_path(key);
        let paths = Arc::clone(&self.paths);
        let key = key.clone();
        blocking(move || {
            let (root, tmp) = (&paths.root, &paths.tmp);
            let lock = DocumentLock::acquire(root, &lock_path)?;
            let written = (|| {
                paths.check_current(&key, &path, &precondition)?;
                let parent = path.parent().map(Path::to_path_buf).unwrap_or_default();
                create_dir_durable(root, &parent)?;
                create_dir_durable(root, tmp)?;
                let written_at = SystemTime::now();
                let mut temp = temp_file(tmp, "doc-")?;
                temp.write_all(&bytes)
                    .map_err(|e| Error::io("write", temp.path(), e))?;
                let stamped = stamp(temp.as_file());
                sync_file(temp.as_file(), temp.path())?;
                let file =
                    persist(temp, &path).map_err(|e| Error::io("rename into place", &path, e))?;
                sync_dir(&parent)?;
                let version = paths.version_of(&path, &bytes);
                // The state of the file as renamed into place (the rename changed its
                // ctime), from the descriptor written through: the very inode, even should
                // the name have been taken meanwhile.
                if let Ok(meta) = file.metadata() {
                    let state = FileId::of(&meta);
                    let seen = Seen {
                        file: state,
                        version: version.clone(),
                        read_at: written_at,
                        own: stamped.is_some_and(|at| at == state.mtime),
                    };
                    paths.remember(path.clone(), seen);
                }
                Ok(version)
            })();
            // A write refused (a precondition on an absent document) leaves nothing to lock.
            lock.release(written.is_err() && is_absent(&path));
            written
        })
        .await
    }

    async fn delete_document(&self, key: &DocumentKey, precondition: Precondition) -> Result<bool> {
        let path = self.document_path(key);
        let lock_path = self.lock_path(key);
        let paths = Arc::clone(&self.paths);
        let key = key.clone();
        blocking(move || {
            let lock = DocumentLock::acquire(&paths.root, &lock_path)?;
            let deleted = (|| {
                if !paths.check_current(&key, &path, &precondition)? {
                    return Ok(false);
                }
                remove(&path).map_err(|e| Error::io("remove", &path, e))?;
                paths.forget(&path);
                if let Some(parent) = path.parent() {
                    sync_dir(parent)?;
                }
                Ok(true)
            })();
            lock.release(is_absent(&path));
            deleted
        })
        .await
    }

    async fn link_blob(
        &self,
        digest: &Digest,
        size: u64,
        file: &File,
        trust: LinkTrust,
        mode: LinkMode,
    ) -> Result<Linked> {
        let target = self.blob_path(digest);
        let tmp = self.paths.tmp.clone();
        let source = file.try_clone().map_err(|e| Error::io("dup", &target, e))?;
        let root = self.paths.root.clone();
        let digest = digest.clone();
        blocking(move || {
            create_dir_durable(&root, &tmp)?;
            link_blob_sync(&root, &source, &tmp, &target, &digest, size, trust, mode)
        })
        .await
    }

    fn partial_downloads(&self) -> Option<Partials> {
        Some(self.partials())
    }

    fn local_blobs(&self) -> Option<Arc<dyn LocalBlobs>> {
        Some(Arc::new(LocalFiles::new(self.clone())))
    }

    async fn list_documents(&self, prefix: &str) -> Result<Vec<DocumentKey>> {
        let root = self.paths.root.clone();
        let prefix = prefix.trim_end_matches('/').to_string();
        blocking(move || {
            let mut keys = Vec::new();
            let mut pending = vec![String::new()];
            while let Some(relative) = pending.pop() {
                let dir = root.join(&relative);
                let entries = match std::fs::read_dir(&dir) {
                    Ok(entries) => entries,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(Error::io("list", dir, e)),
                };
                for entry in entries.flatten() {
                    let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                        continue;
                    };
                    let key = if relative.is_empty() {
                        name
                    } else {
                        format!("{relative}/{name}")
                    };
                    let Ok(file_type) = entry.file_type() else {
                        continue;
                    };
                    if file_type.is_dir() {
                        // Descend only where keys under `prefix` can be, never into `blobs/`
                        // or the store's private `.ocikit/`.
                        let could_match = prefix.is_empty()
                            || key.starts_with(&format!("{prefix}/"))
                            || prefix.starts_with(&format!("{key}/"))
                            || key == prefix;
                        if could_match && DocumentKey::new(&key).is_ok() {
                            pending.push(key);
                        }
                    } else if file_type.is_file()
                        && let Ok(key) = DocumentKey::new(&key)
                        && key.is_under(&prefix)
                    {
                        keys.push(key);
                    }
                }
            }
            keys.sort();
            Ok(keys)
        })
        .await
    }

    async fn list_documents_after(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DocumentKey>> {
        let prefix = prefix.trim_end_matches('/');
        // The root holds `blobs/` and `.ocikit/`: the whole listing knows to avoid them.
        if prefix.is_empty() {
            let keys = self.list_documents(prefix).await?;
            return Ok(crate::store::page_of(keys, prefix, after, limit));
        }
        // No key can lie under a prefix that is not itself a valid key.
        if DocumentKey::new(prefix).is_err() || limit == 0 {
            return Ok(Vec::new());
        }
        let paths = Arc::clone(&self.paths);
        let prefix = prefix.to_owned();
        let after = after.map(str::to_owned);
        blocking(move || {
            let mut keys = Vec::new();
            list_after(&paths, &prefix, after.as_deref(), limit, &mut keys)?;
            Ok(keys)
        })
        .await
    }
}

/// The documents under the directory of key `dir` that sort after `after`, in key order,
/// appended to `keys` until it holds `limit`: [`Store::list_documents_after`]'s walk.
///
/// Entries are visited sorted by their name, with `/` appended to a directory's: every key
/// under directory `d` starts with `d/`, so visiting the entries in that order, depth first,
/// yields the keys in byte order, and a directory whose keys all sort before `after` can be
/// skipped unread.
fn list_after(
    paths: &Paths,
    dir: &str,
    after: Option<&str>,
    limit: usize,
    keys: &mut Vec<DocumentKey>,
) -> Result<()> {
    let Some(children) = paths.children(dir)? else {
        return Ok(());
    };
    // The first entry that can hold a key after `after`: the first key greater than it,
    // or the directory just before that when `after` lies inside it.
    let start = match after {
        None => 0,
        Some(after) => {
            let first = children.partition_point(|(key, _)| key.as_str() <= after);
            match first.checked_sub(1).map(|i| &children[i]) {
                Some((key, true)) if after.starts_with(key.as_str()) => first - 1,
                _ => first,
            }
        }
    };
    for (key, is_dir) in &children[start..] {
        if keys.len() >= limit {
            break;
        }
        if *is_dir {
            // Every key under it starts with `key` (which ends in `/`): all of them sort
            // before `after` when `after` is greater and does not start with it.
            if after.is_some_and(|after| after > key.as_str() && !after.starts_with(key.as_str())) {
                continue;
            }
            list_after(paths, key.trim_end_matches('/'), after, limit, keys)?;
        } else if after.is_none_or(|after| key.as_str() > after)
            && let Ok(key) = DocumentKey::new(key)
        {
            keys.push(key);
        }
    }
    Ok(())
}

impl Paths {
    /// The entries of the directory of key `dir` in key order (see [`Listing`]), from the
    /// last read while the directory is unchanged; `None` when there is no such directory.
    fn children(&self, dir: &str) -> Result<Option<Children>> {
        let path = self.root.join(dir);
        let meta = match std::fs::metadata(&path) {
            Ok(meta) if meta.is_dir() => meta,
            Ok(_) => return Ok(None),
            Err(e)
                if e.kind() == io::ErrorKind::NotFound
                    || e.kind() == io::ErrorKind::NotADirectory =>
            {
                return Ok(None);
            }
            Err(e) => return Err(Error::io("list", path, e)),
        };
        let state = FileId::of(&meta);
        if let Ok(listings) = self.listings.lock()
            && let Some(listing) = listings.get(&path)
            && listing.still(&state)
        {
            return Ok(Some(Arc::clone(&listing.children)));
        }
        // Taken before the read: a change during it gives the directory a state other than
        // `state`, so this listing is never reused for it.
        let listed_at = SystemTime::now();
        let entries = match std::fs::read_dir(&path) {
            Ok(entries) => entries,
            Err(e)
                if e.kind() == io::ErrorKind::NotFound
                    || e.kind() == io::ErrorKind::NotADirectory =>
            {
                return Ok(None);
            }
            Err(e) => return Err(Error::io("list", path, e)),
        };
        let mut children: Vec<(String, bool)> = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("list", &path, e))?;
            let name = entry.file_name();
            let (Some(name), Ok(file_type)) = (name.to_str(), entry.file_type()) else {
                continue;
            };
            // Private and temp files start with `.`; symlinks and the like are no documents.
            if name.starts_with('.') || !(file_type.is_dir() || file_type.is_file()) {
                continue;
            }
            let key = format!("{dir}/{name}");
            if file_type.is_dir() {
                children.push((key + "/", true));
            } else {
                children.push((key, false));
            }
        }
        children.sort_unstable();
        let children = Arc::new(children);
        if let Ok(mut listings) = self.listings.lock() {
            let held: usize = listings.values().map(|l| l.children.len()).sum();
            if held + children.len() > MAX_LISTED_ENTRIES {
                listings.clear();
            }
            if children.len() <= MAX_LISTED_ENTRIES {
                listings.insert(
                    path,
                    Listing {
                        dir: state,
                        listed_at,
                        children: Arc::clone(&children),
                    },
                );
            }
        }
        Ok(Some(children))
    }
}

/// Bytes handed to the writer thread at a time.
const WRITE_CHUNK: usize = 1 << 20;
/// Chunks queued for the writer thread by default (bounds memory to about this many MiB;
/// see [`FsStore::with_write_queue`]).
const WRITE_QUEUE: usize = 32;
/// The writer thread makes everything written so far durable every this many bytes, so the
/// disk works while the caller hashes the next chunks, instead of all at the end.
const SYNC_WINDOW: u64 = 16 << 20;

/// A blob being written to a temp file in `.ocikit/tmp`.
///
/// Bytes are gathered into 1 MiB chunks and queued to a writer thread, which writes them and
/// calls `fdatasync` every [`SYNC_WINDOW`] bytes. The caller (a [`crate::BlobWriter`])
/// hashes on its own thread meanwhile, so hashing, copying into the page cache and the disk
/// writing all overlap; the final `fdatasync` at publish time has little left to do.
struct FsStaging {
    buf: Vec<u8>,
    sender: Option<PollSender<Vec<u8>>>,
    /// Buffers the writer thread has emptied, for reuse: a fresh 1 MiB allocation per chunk
    /// would be mapped, page-faulted and zeroed every time.
    spare: Arc<Mutex<Vec<Vec<u8>>>>,
    worker: Option<tokio::task::JoinHandle<io::Result<()>>>,
    /// Set when the bytes are to be kept: only then does the writer thread sync at the end.
    keep: Arc<AtomicBool>,
    /// Deletes the temp file when dropped, unless persisted.
    temp: Option<NamedTempFile>,
    store: FsStore,
}

impl FsStaging {
    fn new(temp: NamedTempFile, store: FsStore) -> Result<FsStaging> {
        let mut file = temp
            .as_file()
            .try_clone()
            .map_err(|e| Error::io("dup", temp.path(), e))?;
        let (sender, mut receiver) = tokio::sync::mpsc::channel::<Vec<u8>>(store.write_queue);
        let keep = Arc::new(AtomicBool::new(false));
        let keep_flag = keep.clone();
        let spare = Arc::new(Mutex::new(Vec::new()));
        let returned = spare.clone();
        let worker = tokio::task::spawn_blocking(move || {
            let mut unsynced = 0u64;
            while let Some(mut chunk) = receiver.blocking_recv() {
                file.write_all(&chunk)?;
                unsynced += chunk.len() as u64;
                chunk.clear();
                if let Ok(mut spare) = returned.lock() {
                    spare.push(chunk);
                }
                if unsynced >= SYNC_WINDOW {
                    file.sync_data()?;
                    unsynced = 0;
                }
            }
            if keep_flag.load(Ordering::Acquire) {
                file.sync_data()
            } else {
                Ok(())
            }
        });
        Ok(FsStaging {
            buf: Vec::with_capacity(WRITE_CHUNK),
            sender: Some(PollSender::new(sender)),
            spare,
            worker: Some(worker),
            keep,
            temp: Some(temp),
            store,
        })
    }

    /// Queues the gathered bytes for the writer thread.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.buf.is_empty() {
            return Poll::Ready(Ok(()));
        }
        let Some(sender) = self.sender.as_mut() else {
            return Poll::Ready(Err(io::Error::other("staging area already closed")));
        };
        if std::task::ready!(sender.poll_reserve(cx)).is_err() {
            // The writer thread stopped: it failed. Report its error.
            return self.poll_worker(cx);
        }
        let fresh = self
            .spare
            .lock()
            .ok()
            .and_then(|mut spare| spare.pop())
            .unwrap_or_else(|| Vec::with_capacity(WRITE_CHUNK));
        let chunk = std::mem::replace(&mut self.buf, fresh);
        let sender = match self.sender.as_mut() {
            Some(sender) => sender,
            None => return Poll::Ready(Err(io::Error::other("staging area already closed"))),
        };
        if sender.send_item(chunk).is_err() {
            return self.poll_worker(cx);
        }
        Poll::Ready(Ok(()))
    }

    /// Waits for the writer thread to end and returns its outcome.
    fn poll_worker(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(worker) = self.worker.as_mut() else {
            return Poll::Ready(Err(io::Error::other("staging writer already finished")));
        };
        let outcome = std::task::ready!(Pin::new(worker).poll(cx));
        self.worker = None;
        Poll::Ready(match outcome {
            Ok(Ok(())) => Err(io::Error::other("staging writer stopped early")),
            Ok(Err(e)) => Err(e),
            Err(join) => Err(io::Error::other(join)),
        })
    }

    /// Sends what is left, closes the queue and waits until everything is written and synced.
    async fn finish_writing(&mut self) -> io::Result<()> {
        std::future::poll_fn(|cx| self.poll_send(cx)).await?;
        self.keep.store(true, Ordering::Release);
        self.sender = None; // closing the queue ends the writer thread's loop
        match self.worker.take() {
            Some(worker) => worker.await.map_err(io::Error::other)?,
            None => Err(io::Error::other("staging writer already finished")),
        }
    }
}

impl AsyncWrite for FsStaging {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.buf.len() >= WRITE_CHUNK {
            std::task::ready!(self.poll_send(cx))?;
        }
        let n = data.len().min(WRITE_CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Hands everything to the writer thread; durability comes with `publish`.
        self.poll_send(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_flush(cx)
    }
}

#[async_trait::async_trait]
impl Staging for FsStaging {
    async fn publish(mut self: Box<Self>, digest: &Digest, size: u64) -> Result<()> {
        let Some(temp) = self.temp.take() else {
            return Err(Error::Stream(io::Error::other("staging area already used")));
        };
        if let Err(e) = self.finish_writing().await {
            return Err(Error::io("write", temp.path(), e));
        }
        let target = self.store.blob_path(digest);
        let root = self.store.paths.root.clone();
        blocking(move || publish_blob(&root, temp, &target, size)).await
    }

    async fn abort(mut self: Box<Self>) -> Result<()> {
        self.sender = None;
        if let Some(worker) = self.worker.take() {
            // Let the writer thread stop before the file is unlinked (its errors are moot).
            worker.await.ok();
        }
        if let Some(temp) = self.temp.take() {
            temp.close()
                .map_err(|e| Error::io("remove temp file", PathBuf::new(), e))?;
        }
        Ok(())
    }
}

/// Mode of the files a store creates (blobs, documents), before the umask: readable by
/// everyone, as skopeo and umoci create them (0644 under the usual umask of 022).
const FILE_MODE: u32 = 0o644;
/// Mode of the directories a store creates, before the umask (as skopeo's).
const DIR_MODE: u32 = 0o755;

/// A new temp file in `dir`, created with [`FILE_MODE`] (less the umask) rather than
/// `tempfile`'s private 0600, since it is renamed into place as a blob or document.
fn temp_file(dir: &Path, prefix: &str) -> Result<NamedTempFile> {
    use std::os::unix::fs::PermissionsExt;
    tempfile::Builder::new()
        .prefix(prefix)
        .permissions(std::fs::Permissions::from_mode(FILE_MODE))
        .tempfile_in(dir)
        .map_err(|e| Error::io("create temp file in", dir, e))
}

/// Copies the first `size` bytes of `source` into `destination` (at the same offsets,
/// leaving both files' positions alone): in the kernel (`copy_file_range`) where it can,
/// else through a buffer. A source shorter than `size` is [`Error::SizeMismatch`].
fn copy_bytes(source: &File, destination: &File, size: u64, path: &Path) -> Result<()> {
    use std::os::unix::fs::FileExt as _;
    let mut done = 0u64;
    let mut in_kernel = true;
    let mut buf = Vec::new();
    while done < size {
        let want = usize::try_from(size - done)
            .unwrap_or(usize::MAX)
            .min(1 << 30);
        if in_kernel {
            let (mut from, mut to) = (done, done);
            match rustix::fs::copy_file_range(
                source,
                Some(&mut from),
                destination,
                Some(&mut to),
                want,
            ) {
                Ok(0) => {
                    return Err(Error::SizeMismatch {
                        expected: size,
                        actual: done,
                    });
                }
                Ok(n) => done += n as u64,
                Err(rustix::io::Errno::INTR) => {}
                // Not between these files (another filesystem on an old kernel, a filesystem
                // without it): copy through a buffer from where it stopped.
                Err(
                    rustix::io::Errno::XDEV
                    | rustix::io::Errno::NOSYS
                    | rustix::io::Errno::INVAL
                    | rustix::io::Errno::OPNOTSUPP
                    | rustix::io::Errno::PERM,
                ) => in_kernel = false,
                Err(e) => return Err(Error::io("copy into", path, e.into())),
            }
            continue;
        }
        if buf.is_empty() {
            buf = vec![0u8; READ_CHUNK];
        }
        let chunk = want.min(buf.len());
        let n = match source.read_at(&mut buf[..chunk], done) {
            Ok(0) => {
                return Err(Error::SizeMismatch {
                    expected: size,
                    actual: done,
                });
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io("copy into", path, e)),
        };
        destination
            .write_all_at(&buf[..n], done)
            .map_err(|e| Error::io("write", path, e))?;
        done += n as u64;
    }
    Ok(())
}

/// Sets a blob's modification time to now, without following a symlink.
fn touch(path: &Path) {
    if let Ok(Some((file, _))) = open_regular(path) {
        file.set_modified(SystemTime::now()).ok();
    }
}

fn publish_blob(root: &Path, temp: NamedTempFile, target: &Path, size: u64) -> Result<()> {
    sync_file(temp.as_file(), temp.path())?;
    let dir = target.parent().map(Path::to_path_buf).unwrap_or_default();
    create_dir_durable(root, &dir)?;
    match std::fs::symlink_metadata(target) {
        // Deduplication: the same digest is stored already (its content is checked by
        // fsck, not here). Its modification time is renewed, so a garbage collector's grace
        // period (`Store::written_at`) covers this writer too; that is best effort, the
        // content is in place either way.
        Ok(meta) if meta.is_file() && meta.len() == size => {
            touch(target);
            return Ok(());
        }
        // Something else squats the name (a symlink, a truncated file): replace it with the
        // verified content. `rename` replaces the entry itself, never a symlink's target.
        Ok(_) => {
            persist(temp, target).map_err(|e| Error::io("rename into place", target, e))?;
        }
        Err(_) => match persist_noclobber(temp, target) {
            Ok(()) => {}
            // Another writer published the same digest first.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
            Err(e) => return Err(Error::io("rename into place", target, e)),
        },
    }
    sync_dir(&dir)
}

/// [`Store::link_blob`] for a filesystem store: stage a reflink, a copy or (only when `mode`
/// asks) a hardlink of `source` in the staging directory, verify the new name's content
/// unless trusted, then move it into place. A hardlink that cannot be made (another
/// filesystem, no `/proc`) is [`Linked::NotSupported`], never an error: the caller copies
/// instead.
#[allow(clippy::too_many_arguments)]
fn link_blob_sync(
    root: &Path,
    source: &File,
    tmp: &Path,
    target: &Path,
    digest: &Digest,
    size: u64,
    trust: LinkTrust,
    mode: LinkMode,
) -> Result<Linked> {
    match std::fs::symlink_metadata(target) {
        Ok(meta) if meta.is_file() && meta.len() == size => return Ok(Linked::Present),
        _ => {}
    }
    let meta = source
        .metadata()
        .map_err(|e| Error::io("stat", target, e))?;
    if !meta.is_file() {
        return Ok(Linked::NotSupported);
    }
    if meta.len() != size {
        return Err(Error::SizeMismatch {
            expected: size,
            actual: meta.len(),
        });
    }
    let (staged, how) = match mode {
        LinkMode::Copy => {
            // A reflink, else a copy: either way a file of its own, which writing to the
            // source (or to it) later leaves alone.
            let temp = temp_file(tmp, "link-")?;
            let how = if rustix::fs::ioctl_ficlone(temp.as_file(), source).is_ok() {
                Linked::Reflink
            } else {
                copy_bytes(source, temp.as_file(), size, temp.path())?;
                Linked::Copied
            };
            (temp.into_temp_path(), how)
        }
        LinkMode::Hardlink => {
            // Linking through `/proc/self/fd` links the very inode that was opened (no-follow,
            // checked regular) and needs no privilege, unlike `AT_EMPTY_PATH`.
            let proc_path = format!("/proc/self/fd/{}", source.as_raw_fd());
            let linked = tempfile::Builder::new()
                .prefix("link-")
                .make_in(tmp, |path| {
                    rustix::fs::linkat(
                        rustix::fs::CWD,
                        proc_path.as_str(),
                        rustix::fs::CWD,
                        path,
                        rustix::fs::AtFlags::SYMLINK_FOLLOW,
                    )
                    .map_err(io::Error::from)
                });
            match linked {
                Ok(temp) => (temp.into_temp_path(), Linked::Hardlink),
                Err(_) => return Ok(Linked::NotSupported),
            }
        }
    };
    let path: &Path = &staged;
    let Some((file, len)) = open_regular(path)? else {
        return Ok(Linked::NotSupported);
    };
    if len != size {
        return Err(Error::SizeMismatch {
            expected: size,
            actual: len,
        });
    }
    if trust == LinkTrust::Verify {
        let mut hasher = ocikit_digest::Hasher::new(digest.algorithm()).map_err(|_| {
            Error::UnsupportedAlgorithm {
                algorithm: digest.algorithm().clone(),
            }
        })?;
        let mut reader = &file;
        let mut buf = vec![0u8; READ_CHUNK];
        let mut read = 0u64;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io("read", path, e)),
            };
            hasher.update(&buf[..n]);
            read += n as u64;
        }
        if read != size {
            return Err(Error::SizeMismatch {
                expected: size,
                actual: read,
            });
        }
        let actual = hasher.finish();
        if &actual != digest {
            return Err(Error::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
    }
    sync_file(&file, path)?;
    let dir = target.parent().map(Path::to_path_buf).unwrap_or_default();
    create_dir_durable(root, &dir)?;
    // `link` never replaces an existing name, so a blob published meanwhile stays; anything
    // else squatting the name (a symlink, a truncated file) is replaced by the verified
    // content, as `publish_blob` does.
    match std::fs::hard_link(path, target) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            match std::fs::symlink_metadata(target) {
                Ok(meta) if meta.is_file() && meta.len() == size => return Ok(Linked::Present),
                _ => std::fs::rename(path, target)
                    .map_err(|e| Error::io("rename into place", target, e))?,
            }
        }
        Err(e) => return Err(Error::io("link into place", target, e)),
    }
    trace!(durability_tests::Step::Rename {
        from: path.to_path_buf(),
        to: target.to_path_buf()
    });
    sync_dir(&dir)?;
    // Dropping `staged` removes the staging name; the blob keeps its inode.
    Ok(how)
}
