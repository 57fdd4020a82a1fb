//! Verifying a layout: [`Layout::fsck`].
//!
//! Everything reachable from `index.json` is checked: nested indexes, manifests, configs,
//! layers, and the artifacts attached to them (referrers are entries of `index.json`, so
//! the walk reaches them). Documents are read with the checks of [`Layout::read_document`]
//! and parsed strictly ([`crate::Document::parse`]); every blob, documents included, is
//! hashed in full, and each descriptor's size is compared with the stored one. With
//! [`FsckOptions::diff_ids`], layers are also decompressed and their diffIDs compared with
//! the image config's `rootfs.diff_ids`; a layer whose media type ocikit cannot decode is
//! reported ([`ProblemKind::UndecodableMediaType`]), not skipped. A blob under a digest
//! algorithm ocikit cannot compute is reported [`ProblemKind::Unverifiable`] and, being
//! unverified, is not parsed or followed.
//!
//! Where the store keeps blobs in local files ([`ocikit_store::Store::local_blobs`], the
//! filesystem store), a fixed pool of blocking workers, one per CPU, pulls blobs from one
//! shared queue and reads each from its file into one reused buffer: no hop through the
//! async runtime per blob, which is what small blobs cost most. The documents of each level
//! of the walk are read and parsed the same way, and layers are taken largest first so that
//! the workers finish together. Other stores (memory, object stores) stream every blob,
//! `concurrency` at a time, and hash each on a blocking thread.
//!
//! Nothing stops at the first problem: the [`FsckReport`] lists every one, with the digest
//! and the path by which it was reached. Blobs reached more than once are read once.

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use bytes::Bytes;
use futures::StreamExt;
use ocikit_codec::Limits;
use ocikit_codec::compression::Decoder;
use ocikit_digest::oci_spec::image::Descriptor;
use ocikit_digest::{Digest, DigestReader, Hasher, descriptor, json, media_type};
use ocikit_store::{Error as StoreError, LocalBlobs};
use serde_json::Value;

use crate::document::{self, Document};
use crate::gc::MAX_NESTING;
use crate::progress::{Event, Operation, Progress};
use crate::{Error, Layout, Result};

/// Largest config read to check diffIDs.
const MAX_CONFIG_SIZE: u64 = crate::MAX_DOCUMENT_SIZE;
/// Bytes read at a time while hashing.
const CHUNK: usize = 1 << 20;
/// The smallest read buffer.
const MIN_BUFFER: usize = 8 << 10;
/// A `Progress` event at least every this many bytes of one blob.
const PROGRESS_EVERY: u64 = 8 << 20;
/// Documents read at once.
const DOCUMENT_CONCURRENCY: usize = 8;

/// Options of [`Layout::fsck`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct FsckOptions {
    /// Also decompress layers and compare their diffIDs with the image configs.
    pub diff_ids: bool,
    /// Blobs checked at once (default: twice the number of CPUs, so that fetching the next
    /// blob from a remote store overlaps hashing the current ones). On a store with local
    /// files, at most one worker per CPU hashes, whatever this says above that.
    pub concurrency: usize,
    /// Where [`Operation::Fsck`] events go.
    pub progress: Progress,
    /// Limits on decompressing layers.
    pub limits: Limits,
}

impl Default for FsckOptions {
    fn default() -> FsckOptions {
        FsckOptions {
            diff_ids: false,
            concurrency: 2 * std::thread::available_parallelism().map_or(2, |n| n.get()),
            progress: Progress::none(),
            limits: Limits::default(),
        }
    }
}

impl FsckOptions {
    /// The default options: hashes only, one blob per CPU at a time, no progress.
    pub fn new() -> FsckOptions {
        FsckOptions::default()
    }

    /// These options with diffID checking on or off.
    pub fn with_diff_ids(mut self, on: bool) -> FsckOptions {
        self.diff_ids = on;
        self
    }

    /// These options with another concurrency (at least 1).
    pub fn with_concurrency(mut self, concurrency: usize) -> FsckOptions {
        self.concurrency = concurrency.max(1);
        self
    }

    /// These options reporting progress to `progress`.
    pub fn with_progress(mut self, progress: Progress) -> FsckOptions {
        self.progress = progress;
        self
    }

    /// These options with other decompression limits.
    pub fn with_limits(mut self, limits: Limits) -> FsckOptions {
        self.limits = limits;
        self
    }
}

/// One thing wrong with a layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The blob concerned.
    pub digest: Digest,
    /// How it was reached, as `index.json manifests[0] (v1) > layers[1]`.
    pub path: String,
    /// What is wrong.
    pub kind: ProblemKind,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.digest, self.path, self.kind)
    }
}

/// What is wrong with a blob.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProblemKind {
    /// The blob is not stored.
    #[error("missing")]
    Missing,
    /// The blob's bytes hash to another digest.
    #[error("content hashes to {actual}")]
    DigestMismatch {
        /// What the bytes hash to.
        actual: Digest,
    },
    /// The descriptor's size is not the stored blob's.
    #[error("descriptor says {expected} bytes, the blob has {actual}")]
    SizeMismatch {
        /// The descriptor's size.
        expected: u64,
        /// The stored size.
        actual: u64,
    },
    /// A manifest, index or image config that is not valid.
    #[error("invalid document: {reason}")]
    InvalidDocument {
        /// Why.
        reason: String,
    },
    /// A `subject` that is not stored (`digest` is the subject's).
    #[error("subject is not stored")]
    DanglingSubject,
    /// A layer whose uncompressed content does not hash to its config's diffID.
    #[error("diffID is {actual}, the config says {expected}")]
    DiffIdMismatch {
        /// The config's diffID.
        expected: Digest,
        /// The uncompressed content's digest.
        actual: Digest,
    },
    /// A config whose `rootfs.diff_ids` has another length than the manifest's layers.
    #[error("config has {diff_ids} diffIDs for {layers} layers")]
    DiffIdCount {
        /// Entries in `rootfs.diff_ids`.
        diff_ids: usize,
        /// Layers in the manifest.
        layers: usize,
    },
    /// A layer that could not be decompressed.
    #[error("layer does not decompress: {reason}")]
    Undecodable {
        /// Why.
        reason: String,
    },
    /// The digest's algorithm is one ocikit cannot compute: the blob is stored, but nothing
    /// can tell whether its bytes are the right ones, so it was not read as a document.
    #[error("digest algorithm cannot be verified")]
    Unverifiable,
    /// A layer of an image whose diffID could not be checked (with
    /// [`FsckOptions::diff_ids`]): its media type is not a layer type ocikit can decode.
    /// Its bytes are still hashed against its digest.
    #[error("diffID not checked: cannot decode layer media type `{media_type}`")]
    UndecodableMediaType {
        /// The layer's media type.
        media_type: String,
    },
    /// The store failed to deliver the blob.
    #[error("unreadable: {reason}")]
    Unreadable {
        /// Why.
        reason: String,
    },
}

/// What [`Layout::fsck`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FsckReport {
    /// Every problem, sorted by path.
    pub problems: Vec<Problem>,
    /// Distinct blobs read and hashed (documents included).
    pub blobs_checked: u64,
    /// Bytes hashed.
    pub bytes_checked: u64,
}

impl FsckReport {
    /// Whether no problem was found.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// A blob to hash, with every way it was reached.
#[derive(Debug)]
struct BlobCheck {
    digest: Digest,
    media_type: String,
    /// `(declared size, path)` of each reach; the first is the one reported.
    reaches: Vec<(u64, String)>,
    /// `(diffID, path)` the configs expect.
    diff_ids: Vec<(Digest, String)>,
}

#[derive(Default)]
struct Walk {
    problems: Vec<Problem>,
    blobs: u64,
    bytes: u64,
    /// Blobs read while walking, with their stored size (`None` when unusable).
    read: HashMap<Digest, Option<u64>>,
    /// Blobs left for hashing, in the order first reached.
    pending: Vec<BlobCheck>,
    by_digest: HashMap<Digest, usize>,
}

impl Walk {
    fn problem(&mut self, digest: &Digest, path: &str, kind: ProblemKind) {
        self.problems.push(Problem {
            digest: digest.clone(),
            path: path.to_string(),
            kind,
        });
    }

    fn blob(&mut self, d: &Descriptor, digest: Digest, path: String, diff_id: Option<Digest>) {
        self.add(digest, d.media_type().to_string(), d.size(), path, diff_id);
    }

    fn add(
        &mut self,
        digest: Digest,
        media_type: String,
        size: u64,
        path: String,
        diff_id: Option<Digest>,
    ) {
        let i = match self.by_digest.get(&digest) {
            Some(&i) => i,
            None => {
                self.pending.push(BlobCheck {
                    digest: digest.clone(),
                    media_type,
                    reaches: Vec::new(),
                    diff_ids: Vec::new(),
                });
                self.by_digest.insert(digest, self.pending.len() - 1);
                self.pending.len() - 1
            }
        };
        let Some(check) = self.pending.get_mut(i) else {
            return;
        };
        if let Some(diff_id) = diff_id {
            check.diff_ids.push((diff_id, path.clone()));
        }
        check.reaches.push((size, path));
    }
}

/// A layer of a manifest, as the walk needs it.
#[derive(Debug)]
struct Layer {
    /// Its position in `layers`.
    index: usize,
    digest: Digest,
    media_type: String,
    size: u64,
    path: String,
}

/// What the walk needs of a document that was read and parsed: its references, their
/// digests parsed and their paths built (on the worker that read it, where there is one).
#[derive(Debug)]
enum Parsed {
    /// A manifest: its config (with its path) and its layers.
    Manifest {
        subject: Option<Digest>,
        config: Box<Descriptor>,
        config_path: String,
        layers: Vec<Layer>,
        /// Entries in `layers` (some may be left out of `layers`: invalid digests).
        layer_count: usize,
    },
    /// An index: its manifests, with their paths.
    Index {
        subject: Option<Digest>,
        manifests: Vec<(Descriptor, String)>,
    },
    /// Anything else.
    Opaque,
}

impl Parsed {
    /// The references of `doc`, reached by `path`.
    fn of(doc: Document, path: &str) -> Parsed {
        let subject = doc.subject().and_then(|s| descriptor::digest_of(s).ok());
        match doc {
            Document::Manifest { manifest, .. } => Parsed::Manifest {
                subject,
                config: Box::new(manifest.config().clone()),
                config_path: format!("{path} > config"),
                layer_count: manifest.layers().len(),
                layers: manifest
                    .layers()
                    .iter()
                    .enumerate()
                    .filter_map(|(index, layer)| {
                        Some(Layer {
                            index,
                            digest: descriptor::digest_of(layer).ok()?,
                            media_type: layer.media_type().to_string(),
                            size: layer.size(),
                            path: format!("{path} > layers[{index}]"),
                        })
                    })
                    .collect(),
            },
            Document::Index { index, .. } => Parsed::Index {
                subject,
                manifests: index
                    .manifests()
                    .iter()
                    .enumerate()
                    .map(|(i, m)| (m.clone(), format!("{path} > manifests[{i}]")))
                    .collect(),
            },
            _ => Parsed::Opaque,
        }
    }

    fn subject(&self) -> Option<&Digest> {
        match self {
            Parsed::Manifest { subject, .. } | Parsed::Index { subject, .. } => subject.as_ref(),
            Parsed::Opaque => None,
        }
    }
}

/// What a failed read of a whole blob (a document or a config) says about it: `None` for
/// errors that are not about the blob's bytes (a document that is not valid).
fn read_problem(e: &Error) -> Option<ProblemKind> {
    match e {
        Error::Store(e) => Some(store_problem(e)),
        Error::Unverifiable { .. } => Some(ProblemKind::Unverifiable),
        _ => None,
    }
}

/// A store error as a problem.
fn store_problem(e: &StoreError) -> ProblemKind {
    match e {
        StoreError::NotFound { .. } => ProblemKind::Missing,
        StoreError::DigestMismatch { actual, .. } => ProblemKind::DigestMismatch {
            actual: actual.clone(),
        },
        StoreError::SizeMismatch { expected, actual } => ProblemKind::SizeMismatch {
            expected: *expected,
            actual: *actual,
        },
        StoreError::UnsupportedAlgorithm { .. } | StoreError::Unverifiable { .. } => {
            ProblemKind::Unverifiable
        }
        other => ProblemKind::Unreadable {
            reason: error_chain(other),
        },
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The diffIDs of an image config, or why they cannot be had.
fn diff_ids_of(bytes: &[u8]) -> std::result::Result<Vec<Digest>, String> {
    let value = json::parse_strict(bytes).map_err(|e| format!("malformed JSON: {e}"))?;
    let rootfs = value.get("rootfs").ok_or("rootfs is missing")?;
    if rootfs.get("type").and_then(Value::as_str) != Some("layers") {
        return Err("rootfs.type is not \"layers\"".into());
    }
    let Some(Value::Array(ids)) = rootfs.get("diff_ids") else {
        return Err("rootfs.diff_ids is not an array".into());
    };
    ids.iter()
        .enumerate()
        .map(|(i, id)| {
            id.as_str()
                .and_then(|s| Digest::parse(s).ok())
                .ok_or_else(|| format!("rootfs.diff_ids[{i}] is not a digest"))
        })
        .collect()
}

fn is_image_config(media_type: &str) -> bool {
    matches!(
        media_type::essence(media_type),
        media_type::IMAGE_CONFIG | media_type::DOCKER_CONFIG
    )
}

/// What hashing one blob found.
struct Hashed {
    digest: Digest,
    bytes: u64,
    /// The uncompressed digest, when asked for; `Err` when decoding failed.
    diff_id: Option<std::result::Result<Digest, String>>,
}

/// Hashes a blob of `size` bytes read from `reader` on this (blocking) thread, reading into
/// `buf` (grown as needed, kept for the next blob); with `decode`, decompresses it as
/// `media_type` too and hashes the output.
///
/// `local` says `reader` is a regular file that held `size` bytes when it was opened: a
/// read of a regular file comes back short only at its end, so one that does so exactly at
/// `size` ends the blob, sparing the read that returns nothing (a syscall per blob, which
/// counts when the blobs are small). Anything else is read until a read returns nothing.
#[allow(clippy::too_many_arguments)] // private, and every argument is a different thing
fn hash_blob(
    reader: impl Read,
    size: u64,
    local: bool,
    digest: &Digest,
    media_type: &str,
    decode: Option<Limits>,
    progress: &Progress,
    buf: &mut Vec<u8>,
) -> std::result::Result<Hashed, ProblemKind> {
    let hasher = Hasher::new(digest.algorithm()).map_err(|_| ProblemKind::Unverifiable)?;
    let mut source = Counting {
        inner: reader,
        hasher,
        bytes: 0,
        reported: 0,
        digest,
        progress,
    };
    let unreadable = |e: std::io::Error| ProblemKind::Unreadable {
        reason: error_chain(&e),
    };
    // Sized to the blob, at most CHUNK: most blobs are small, and the buffer is reused.
    let want = if decode.is_some() {
        CHUNK
    } else {
        usize::try_from(size)
            .unwrap_or(CHUNK)
            .clamp(MIN_BUFFER, CHUNK)
    };
    if buf.len() < want {
        buf.resize(want, 0);
    }
    let diff_id = match decode {
        Some(limits) => {
            let outcome = match Decoder::for_media_type(&mut source, media_type, limits) {
                Ok(decoder) => {
                    let mut plain = DigestReader::sha256(decoder);
                    loop {
                        match plain.read(buf) {
                            Ok(0) => break Ok(plain.digest()),
                            Ok(_) => {}
                            Err(e) => break Err(error_chain(&e)),
                        }
                    }
                }
                Err(e) => Err(error_chain(&e)),
            };
            Some(outcome)
        }
        None => None,
    };
    // Whatever decoding left (or all of it): the digest covers every byte.
    loop {
        match source.read(buf) {
            Ok(0) => break,
            Ok(n) if local && n < buf.len() && source.bytes == size => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(unreadable(e)),
        }
    }
    Ok(Hashed {
        digest: source.hasher.finish(),
        bytes: source.bytes,
        diff_id,
    })
}

/// A reader that hashes and counts what passes through and reports progress.
struct Counting<'a, R> {
    inner: R,
    hasher: Hasher,
    bytes: u64,
    reported: u64,
    digest: &'a Digest,
    progress: &'a Progress,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        if self.bytes - self.reported >= PROGRESS_EVERY {
            self.reported = self.bytes;
            self.progress.emit_with(|| Event::Progress {
                operation: Operation::Fsck,
                digest: self.digest.clone(),
                bytes: self.bytes,
            });
        }
        Ok(n)
    }
}

/// The events of a blob about to be hashed: one `Skipped` for each further reach, then
/// `Started`.
fn emit_started(progress: &Progress, check: &BlobCheck, size: u64) {
    for _ in 1..check.reaches.len() {
        progress.emit_with(|| Event::Skipped {
            operation: Operation::Fsck,
            digest: check.digest.clone(),
            size,
        });
    }
    progress.emit_with(|| Event::Started {
        operation: Operation::Fsck,
        digest: check.digest.clone(),
        size,
    });
}

/// The `Done` event of a blob that was hashed to the end.
fn emit_done(
    progress: &Progress,
    check: &BlobCheck,
    outcome: &std::result::Result<Hashed, ProblemKind>,
) {
    if let Ok(hashed) = outcome {
        progress.emit_with(|| Event::Done {
            operation: Operation::Fsck,
            digest: check.digest.clone(),
            bytes: hashed.bytes,
        });
    }
}

/// What checking one blob found, and its stored size when it is stored.
type Checked = (std::result::Result<Hashed, ProblemKind>, Option<u64>);

/// Hashes one blob from its local file, on this (blocking) thread.
fn check_local(
    local: &dyn LocalBlobs,
    check: &BlobCheck,
    limits: Limits,
    progress: &Progress,
    buf: &mut Vec<u8>,
) -> Checked {
    let (file, size) = match local.open_blocking(&check.digest) {
        Ok(Some(found)) => found,
        Ok(None) => return (Err(ProblemKind::Missing), None),
        Err(e) => return (Err(store_problem(&e)), None),
    };
    emit_started(progress, check, size);
    let decode = (!check.diff_ids.is_empty()).then_some(limits);
    let outcome = hash_blob(
        &file,
        size,
        true,
        &check.digest,
        &check.media_type,
        decode,
        progress,
        buf,
    );
    emit_done(progress, check, &outcome);
    (outcome, Some(size))
}

/// What reading a whole small blob found: its stored size (when it is stored) and, when it
/// is the declared size and hashes to its digest, its bytes.
type WholeRead = (Option<u64>, Result<Bytes>);

/// Reads the whole blob `digest`, declared `declared` bytes, from its local file on this
/// (blocking) thread, with the checks [`Layout::read_blob`] makes: the stored size is the
/// declared one and at most [`crate::MAX_DOCUMENT_SIZE`], its digest's algorithm is one
/// ocikit computes ([`Error::Unverifiable`] otherwise), and the bytes hash to the digest.
fn read_local(local: &dyn LocalBlobs, digest: &Digest, declared: u64) -> WholeRead {
    let (file, size) = match local.open_blocking(digest) {
        Ok(Some(found)) => found,
        Ok(None) => {
            let missing = StoreError::NotFound {
                digest: digest.clone(),
            };
            return (None, Err(missing.into()));
        }
        Err(e) => return (None, Err(e.into())),
    };
    let stored = Some(size);
    if !digest.is_supported() {
        let unverifiable = Error::Unverifiable {
            digest: digest.clone(),
        };
        return (stored, Err(unverifiable));
    }
    let fail = |e: StoreError| (stored, Err(e.into()));
    if size != declared {
        return fail(StoreError::SizeMismatch {
            expected: declared,
            actual: size,
        });
    }
    let limit = crate::MAX_DOCUMENT_SIZE.min(declared);
    if size > limit {
        return fail(StoreError::TooLarge { size, limit });
    }
    let bytes = match read_file(&file, size) {
        Ok(bytes) => bytes,
        Err(e) => return fail(StoreError::Stream(e)),
    };
    if bytes.len() as u64 != size {
        return fail(StoreError::SizeMismatch {
            expected: size,
            actual: bytes.len() as u64,
        });
    }
    match Digest::compute(digest.algorithm(), &bytes) {
        Ok(actual) if actual == *digest => {}
        Ok(actual) => {
            return fail(StoreError::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        Err(_) => {
            return fail(StoreError::UnsupportedAlgorithm {
                algorithm: digest.algorithm().clone(),
            });
        }
    }
    (stored, Ok(Bytes::from(bytes)))
}

/// Reads a regular file that held `size` bytes when it was opened (at most one byte more,
/// to notice one that grew). As in [`hash_blob`], a read that comes back short exactly at
/// `size` is the end.
fn read_file(mut file: &std::fs::File, size: u64) -> std::io::Result<Vec<u8>> {
    let too_large = |_| std::io::Error::other("the file does not fit in memory");
    let want = usize::try_from(size).map_err(too_large)?.saturating_add(1);
    let mut bytes = vec![0u8; want];
    let mut filled = 0;
    while filled < want {
        let asked = want - filled;
        match file.read(&mut bytes[filled..]) {
            Ok(0) => break,
            Ok(n) => {
                filled += n;
                if n < asked && filled as u64 == size {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    bytes.truncate(filled);
    Ok(bytes)
}

/// How fsck reads blobs.
#[derive(Clone)]
enum Mode {
    /// From local files ([`ocikit_store::Store::local_blobs`]), on this many blocking
    /// workers sharing one queue.
    Local {
        /// Workers.
        workers: usize,
        /// The store's local files.
        files: Arc<dyn LocalBlobs>,
    },
    /// Streamed from the store, this many at once, each hashed on a blocking thread.
    Streamed {
        /// Blobs at once.
        concurrency: usize,
    },
}

/// Tells a pool's workers to take no further items when dropped: when `fsck` is cancelled,
/// they stop after the blob at hand.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Runs `job` on every item, taken in `order` (indexes into `items`), on `workers` blocking
/// threads that share one queue; each worker passes one buffer to all its jobs. Returns the
/// results by item index, `None` for items whose worker failed.
async fn on_workers<I, T, F>(
    items: Arc<Vec<I>>,
    order: Vec<usize>,
    workers: usize,
    job: F,
) -> Vec<Option<T>>
where
    I: Send + Sync + 'static,
    T: Send + 'static,
    F: Fn(&I, &mut Vec<u8>) -> T + Send + Sync + 'static,
{
    let mut results: Vec<Option<T>> = std::iter::repeat_with(|| None).take(items.len()).collect();
    if items.is_empty() {
        return results;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_on_drop = StopOnDrop(stop.clone());
    let queue = Arc::new((order, AtomicUsize::new(0)));
    let job = Arc::new(job);
    let handles: Vec<_> = (0..workers.clamp(1, items.len()))
        .map(|_| {
            let (items, queue, job, stop) =
                (items.clone(), queue.clone(), job.clone(), stop.clone());
            tokio::task::spawn_blocking(move || {
                let mut buf = Vec::new();
                let mut done = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let (order, next) = &*queue;
                    let taken = next.fetch_add(1, Ordering::Relaxed);
                    let Some((i, item)) = order.get(taken).and_then(|&i| Some((i, items.get(i)?)))
                    else {
                        break;
                    };
                    done.push((i, job(item, &mut buf)));
                }
                done
            })
        })
        .collect();
    for handle in handles {
        if let Ok(done) = handle.await {
            for (i, result) in done {
                if let Some(slot) = results.get_mut(i) {
                    *slot = Some(result);
                }
            }
        }
    }
    results
}

/// Takes back the items handed to [`on_workers`] (whose workers are done with them).
fn take_back<I: Clone>(items: Arc<Vec<I>>) -> Vec<I> {
    Arc::try_unwrap(items).unwrap_or_else(|shared| (*shared).clone())
}

/// A worker that failed (it panicked, and its results were lost): what each item it had
/// taken reports.
fn worker_failed() -> ProblemKind {
    ProblemKind::Unreadable {
        reason: "the hashing thread failed".into(),
    }
}

/// The documents of one level of the walk, with what reading each found.
type DocumentReads = Vec<(Descriptor, Digest, String, Option<u64>, Result<Parsed>)>;

/// Image configs read for their diffIDs, by digest and declared size.
type ConfigReads = HashMap<(Digest, u64), WholeRead>;

fn entry_path(i: usize, d: &Descriptor) -> String {
    match d
        .annotations()
        .as_ref()
        .and_then(|a| a.get(crate::REF_NAME))
    {
        Some(tag) => format!("index.json manifests[{i}] ({tag})"),
        None => format!("index.json manifests[{i}]"),
    }
}

impl Layout {
    /// Verifies everything reachable from `index.json` (see the [module](crate::fsck)
    /// documentation) and reports every problem found. Fails only when `index.json` itself
    /// cannot be read or parsed.
    pub async fn fsck(&self, options: &FsckOptions) -> Result<FsckReport> {
        let index = self.index().await?;
        let mode = self.mode(options);
        let mut walk = Walk::default();
        let mut frontier: Vec<(Descriptor, String)> = index
            .manifests()
            .enumerate()
            .map(|(i, d)| (d.clone(), entry_path(i, d)))
            .collect();
        // Freed while the first documents are read, rather than before or after.
        let mut index = Some(index);
        let mut depth = 0;
        while !frontier.is_empty() {
            let mut documents = Vec::new();
            let mut this_level = std::collections::HashSet::new();
            for (d, path) in std::mem::take(&mut frontier) {
                let Ok(digest) = descriptor::digest_of(&d) else {
                    continue; // every descriptor here was checked by the parsers
                };
                if !document::is_document(d.media_type().as_ref()) {
                    walk.blob(&d, digest, path, None);
                    continue;
                }
                if let Some(stored) = walk.read.get(&digest) {
                    if let Some(actual) = *stored
                        && actual != d.size()
                    {
                        walk.problem(
                            &digest,
                            &path,
                            ProblemKind::SizeMismatch {
                                expected: d.size(),
                                actual,
                            },
                        );
                    }
                    options.progress.emit_with(|| Event::Skipped {
                        operation: Operation::Fsck,
                        digest,
                        size: d.size(),
                    });
                    continue;
                }
                if !this_level.insert(digest.clone()) {
                    // Reached twice at this level: compared with the stored size later.
                    frontier.push((d, path));
                    continue;
                }
                if depth > MAX_NESTING {
                    walk.problem(
                        &digest,
                        &path,
                        ProblemKind::InvalidDocument {
                            reason: format!("indexes nested deeper than {MAX_NESTING}"),
                        },
                    );
                    walk.read.insert(digest, None);
                    continue;
                }
                documents.push((d, digest, path));
            }
            let deferred = std::mem::take(&mut frontier);
            let done_with = index.take();
            let (results, ()) = futures::join!(self.read_documents(documents, &mode), async move {
                drop(done_with)
            });
            let configs = if options.diff_ids {
                self.read_configs(&results, &mode).await
            } else {
                ConfigReads::new()
            };
            for (d, digest, path, size, outcome) in results {
                options.progress.emit_with(|| Event::Started {
                    operation: Operation::Fsck,
                    digest: digest.clone(),
                    size: d.size(),
                });
                let doc = match outcome {
                    Ok(doc) => doc,
                    Err(e) if read_problem(&e).is_some() => {
                        if let Some(kind) = read_problem(&e) {
                            walk.problem(&digest, &path, kind);
                        }
                        walk.read.insert(digest, size);
                        continue;
                    }
                    Err(e) => {
                        // Verified bytes, but not a valid document.
                        walk.blobs += 1;
                        walk.bytes += d.size();
                        walk.problem(
                            &digest,
                            &path,
                            ProblemKind::InvalidDocument {
                                reason: error_chain(&e),
                            },
                        );
                        walk.read.insert(digest, size);
                        continue;
                    }
                };
                walk.blobs += 1;
                walk.bytes += d.size();
                walk.read.insert(digest.clone(), size);
                options.progress.emit_with(|| Event::Done {
                    operation: Operation::Fsck,
                    digest: digest.clone(),
                    bytes: d.size(),
                });
                if let Some(s) = doc.subject() {
                    match self.store().stat(s).await {
                        Ok(Some(_)) => {}
                        Ok(None) => walk.problem(
                            s,
                            &format!("{path} > subject"),
                            ProblemKind::DanglingSubject,
                        ),
                        Err(e) => walk.problem(s, &format!("{path} > subject"), store_problem(&e)),
                    }
                }
                match doc {
                    Parsed::Manifest {
                        config,
                        config_path,
                        layers,
                        layer_count,
                        ..
                    } => {
                        let expected =
                            if options.diff_ids && is_image_config(config.media_type().as_ref()) {
                                config_diff_ids(
                                    &config,
                                    &config_path,
                                    layer_count,
                                    &configs,
                                    &mut walk,
                                    &options.progress,
                                )
                            } else {
                                if let Ok(c) = descriptor::digest_of(&config) {
                                    walk.blob(&config, c, config_path, None);
                                }
                                None
                            };
                        for layer in layers {
                            let mut diff_id = expected
                                .as_ref()
                                .and_then(|ids| ids.get(layer.index).cloned());
                            if diff_id.is_some()
                                && media_type::layer_compression(&layer.media_type).is_none()
                            {
                                // The config names a diffID that cannot be computed: said,
                                // not skipped.
                                walk.problem(
                                    &layer.digest,
                                    &layer.path,
                                    ProblemKind::UndecodableMediaType {
                                        media_type: layer.media_type.clone(),
                                    },
                                );
                                diff_id = None;
                            }
                            walk.add(
                                layer.digest,
                                layer.media_type,
                                layer.size,
                                layer.path,
                                diff_id,
                            );
                        }
                    }
                    Parsed::Index { manifests, .. } => frontier.extend(manifests),
                    Parsed::Opaque => {}
                }
            }
            frontier.extend(deferred);
            depth += 1;
        }
        self.check_blobs(&mut walk, options, &mode).await;
        let mut problems = walk.problems;
        problems.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(FsckReport {
            problems,
            blobs_checked: walk.blobs,
            bytes_checked: walk.bytes,
        })
    }

    /// Local files on one blocking worker per CPU (at most `concurrency`) where the store
    /// has them, else streams.
    fn mode(&self, options: &FsckOptions) -> Mode {
        let concurrency = options.concurrency.max(1);
        match self.store().local_blobs() {
            Some(files) => {
                let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
                Mode::Local {
                    workers: concurrency.min(cpus),
                    files,
                }
            }
            None => Mode::Streamed { concurrency },
        }
    }

    /// Reads, verifies and parses the documents of one level of the walk, in their order,
    /// with their stored sizes.
    async fn read_documents(
        &self,
        documents: Vec<(Descriptor, Digest, String)>,
        mode: &Mode,
    ) -> DocumentReads {
        match mode {
            Mode::Local { workers, files } => {
                let files = files.clone();
                let documents = Arc::new(documents);
                let order = (0..documents.len()).collect();
                let reads = on_workers(
                    documents.clone(),
                    order,
                    *workers,
                    move |(d, digest, path): &(Descriptor, Digest, String), _buf: &mut Vec<u8>| {
                        let (stored, bytes) = read_local(&*files, digest, d.size());
                        let parsed = bytes
                            .and_then(|bytes| Document::parse(d, bytes))
                            .map(|doc| Parsed::of(doc, path));
                        (stored, parsed)
                    },
                )
                .await;
                take_back(documents)
                    .into_iter()
                    .zip(reads)
                    .map(|((d, digest, path), read)| {
                        let (stored, outcome) =
                            read.unwrap_or_else(|| (None, Err(worker_failed_error())));
                        (d, digest, path, stored, outcome)
                    })
                    .collect()
            }
            Mode::Streamed { .. } => {
                futures::stream::iter(documents)
                    .map(|(d, digest, path)| async move {
                        let stored = self.store().stat(&digest).await.ok().flatten();
                        let outcome = self
                            .read_document(&d)
                            .await
                            .map(|doc| Parsed::of(doc, &path));
                        (d, digest, path, stored, outcome)
                    })
                    .buffered(DOCUMENT_CONCURRENCY)
                    .collect()
                    .await
            }
        }
    }

    /// Reads (and verifies) the image configs of the manifests in `results`, once each, for
    /// their diffIDs.
    async fn read_configs(&self, results: &DocumentReads, mode: &Mode) -> ConfigReads {
        let mut wanted = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (.., outcome) in results {
            if let Ok(Parsed::Manifest { config, .. }) = outcome
                && is_image_config(config.media_type().as_ref())
                && let Ok(digest) = descriptor::digest_of(config)
                && seen.insert((digest.clone(), config.size()))
            {
                wanted.push(((**config).clone(), digest));
            }
        }
        let wanted = Arc::new(wanted);
        let reads: Vec<WholeRead> = match mode {
            Mode::Local { workers, files } => {
                let files = files.clone();
                let order = (0..wanted.len()).collect();
                on_workers(
                    wanted.clone(),
                    order,
                    *workers,
                    move |(d, digest): &(Descriptor, Digest), _buf: &mut Vec<u8>| {
                        read_local(&*files, digest, d.size())
                    },
                )
                .await
                .into_iter()
                .map(|read| read.unwrap_or_else(|| (None, Err(worker_failed_error()))))
                .collect()
            }
            Mode::Streamed { .. } => {
                futures::stream::iter(wanted.iter())
                    .map(|(d, digest)| async move {
                        let stored = self.store().stat(digest).await.ok().flatten();
                        (stored, self.read_blob(d).await)
                    })
                    .buffered(DOCUMENT_CONCURRENCY)
                    .collect()
                    .await
            }
        };
        wanted
            .iter()
            .zip(reads)
            .map(|((d, digest), read)| ((digest.clone(), d.size()), read))
            .collect()
    }

    /// Hashes every pending blob and records what is wrong with each.
    async fn check_blobs(&self, walk: &mut Walk, options: &FsckOptions, mode: &Mode) {
        let pending: Arc<Vec<BlobCheck>> = Arc::new(
            std::mem::take(&mut walk.pending)
                .into_iter()
                .filter(|c| !walk.read.contains_key(&c.digest))
                .collect(),
        );
        // The walk's maps are not needed any more: freed while the blobs are hashed.
        let done_with = (
            std::mem::take(&mut walk.read),
            std::mem::take(&mut walk.by_digest),
        );
        let hashing = self.hash_pending(&pending, options, mode);
        let (results, ()) = futures::join!(hashing, async move { drop(done_with) });
        for (check, (outcome, size)) in pending.iter().zip(results) {
            let Some((_, first_path)) = check.reaches.first() else {
                continue;
            };
            if let Some(actual) = size {
                for (declared, path) in &check.reaches {
                    if *declared != actual {
                        walk.problem(
                            &check.digest,
                            path,
                            ProblemKind::SizeMismatch {
                                expected: *declared,
                                actual,
                            },
                        );
                    }
                }
            }
            let hashed = match outcome {
                Ok(hashed) => hashed,
                Err(kind) => {
                    walk.problem(&check.digest, first_path, kind);
                    continue;
                }
            };
            walk.blobs += 1;
            walk.bytes += hashed.bytes;
            if hashed.digest != check.digest {
                walk.problem(
                    &check.digest,
                    first_path,
                    ProblemKind::DigestMismatch {
                        actual: hashed.digest,
                    },
                );
            }
            match hashed.diff_id {
                Some(Ok(actual)) => {
                    for (expected, path) in &check.diff_ids {
                        if *expected != actual {
                            walk.problem(
                                &check.digest,
                                path,
                                ProblemKind::DiffIdMismatch {
                                    expected: expected.clone(),
                                    actual: actual.clone(),
                                },
                            );
                        }
                    }
                }
                Some(Err(reason)) => walk.problem(
                    &check.digest,
                    first_path,
                    ProblemKind::Undecodable { reason },
                ),
                None => {}
            }
        }
    }

    /// Hashes `pending`: on the local workers, largest first so that they finish together,
    /// or streamed, `concurrency` at a time. The results are in the order of `pending`.
    async fn hash_pending(
        &self,
        pending: &Arc<Vec<BlobCheck>>,
        options: &FsckOptions,
        mode: &Mode,
    ) -> Vec<Checked> {
        match mode {
            Mode::Local { workers, files } => {
                let files = files.clone();
                let mut order: Vec<usize> = (0..pending.len()).collect();
                let largest = |c: &BlobCheck| c.reaches.iter().map(|(size, _)| *size).max();
                order.sort_by_key(|&i| std::cmp::Reverse(pending.get(i).and_then(largest)));
                let limits = options.limits;
                let progress = options.progress.clone();
                on_workers(
                    pending.clone(),
                    order,
                    *workers,
                    move |check: &BlobCheck, buf: &mut Vec<u8>| {
                        check_local(&*files, check, limits, &progress, buf)
                    },
                )
                .await
                .into_iter()
                .map(|r| r.unwrap_or_else(|| (Err(worker_failed()), None)))
                .collect()
            }
            Mode::Streamed { concurrency } => {
                // Unordered, so that one slow blob does not hold back the start of others;
                // put back in order afterwards.
                let mut results: Vec<(usize, Checked)> = futures::stream::iter(pending.iter())
                    .enumerate()
                    .map(|(i, check)| async move { (i, self.check_streamed(check, options).await) })
                    .buffer_unordered(*concurrency)
                    .collect()
                    .await;
                results.sort_by_key(|(i, _)| *i);
                results.into_iter().map(|(_, checked)| checked).collect()
            }
        }
    }

    /// Hashes one blob streamed from the store (on a blocking thread of its own).
    async fn check_streamed(&self, check: &BlobCheck, options: &FsckOptions) -> Checked {
        let blob = match self.store().get(&check.digest, None).await {
            Ok(Some(blob)) => blob,
            Ok(None) => return (Err(ProblemKind::Missing), None),
            Err(e) => return (Err(store_problem(&e)), None),
        };
        let size = blob.size();
        emit_started(&options.progress, check, size);
        let decode = (!check.diff_ids.is_empty()).then_some(options.limits);
        let digest = check.digest.clone();
        let media_type = check.media_type.clone();
        let progress = options.progress.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            let mut buf = Vec::new();
            match blob.local_file().map(std::fs::File::try_clone) {
                Some(Ok(file)) => hash_blob(
                    file,
                    size,
                    true,
                    &digest,
                    &media_type,
                    decode,
                    &progress,
                    &mut buf,
                ),
                Some(Err(e)) => Err(ProblemKind::Unreadable {
                    reason: format!("cannot reopen the blob file: {e}"),
                }),
                None => hash_blob(
                    tokio_util::io::SyncIoBridge::new(blob.into_reader()),
                    size,
                    false,
                    &digest,
                    &media_type,
                    decode,
                    &progress,
                    &mut buf,
                ),
            }
        })
        .await
        .unwrap_or_else(|e| {
            Err(ProblemKind::Unreadable {
                reason: format!("hashing thread failed: {e}"),
            })
        });
        emit_done(&options.progress, check, &outcome);
        (outcome, Some(size))
    }
}

/// Checks an image config read for its diffIDs (`configs` holds what reading it found);
/// returns its diffIDs when they match the layer count (problems go to `walk`).
fn config_diff_ids(
    config: &Descriptor,
    path: &str,
    layers: usize,
    configs: &ConfigReads,
    walk: &mut Walk,
    progress: &Progress,
) -> Option<Vec<Digest>> {
    let digest = descriptor::digest_of(config).ok()?;
    if let Some(stored) = walk.read.get(&digest) {
        if let Some(actual) = *stored
            && actual != config.size()
        {
            walk.problem(
                &digest,
                path,
                ProblemKind::SizeMismatch {
                    expected: config.size(),
                    actual,
                },
            );
        }
    } else if config.size() > MAX_CONFIG_SIZE {
        // Too large to read into memory: hash it like a layer, skip the diffIDs.
        walk.blob(config, digest, path.to_string(), None);
        return None;
    }
    let Some((stored, read)) = configs.get(&(digest.clone(), config.size())) else {
        // Not read (cannot happen: every image config of the level is): hash it instead.
        walk.blob(config, digest, path.to_string(), None);
        return None;
    };
    let stored = *stored;
    let first = !walk.read.contains_key(&digest);
    let bytes = match read {
        Ok(bytes) => bytes,
        Err(e) if read_problem(e).is_some() => {
            if first && let Some(kind) = read_problem(e) {
                walk.problem(&digest, path, kind);
                walk.read.insert(digest, stored);
            }
            return None;
        }
        Err(e) => {
            if first {
                walk.problem(
                    &digest,
                    path,
                    ProblemKind::Unreadable {
                        reason: error_chain(e),
                    },
                );
                walk.read.insert(digest, stored);
            }
            return None;
        }
    };
    if first {
        walk.blobs += 1;
        walk.bytes += bytes.len() as u64;
        walk.read.insert(digest.clone(), stored);
        progress.emit_with(|| Event::Started {
            operation: Operation::Fsck,
            digest: digest.clone(),
            size: config.size(),
        });
        progress.emit_with(|| Event::Done {
            operation: Operation::Fsck,
            digest: digest.clone(),
            bytes: bytes.len() as u64,
        });
    } else {
        progress.emit_with(|| Event::Skipped {
            operation: Operation::Fsck,
            digest: digest.clone(),
            size: config.size(),
        });
    }
    match diff_ids_of(bytes) {
        Ok(ids) if ids.len() == layers => Some(ids),
        Ok(ids) => {
            walk.problem(
                &digest,
                path,
                ProblemKind::DiffIdCount {
                    diff_ids: ids.len(),
                    layers,
                },
            );
            None
        }
        Err(reason) => {
            if first {
                walk.problem(&digest, path, ProblemKind::InvalidDocument { reason });
            }
            None
        }
    }
}

/// The error of a read whose worker failed.
fn worker_failed_error() -> Error {
    Error::Store(StoreError::Stream(std::io::Error::other(
        "the hashing thread failed",
    )))
}
