//! Verifying a layout: [`Layout::fsck`].
//!
//! Everything reachable from `index.json` is checked: nested indexes, manifests, configs,
//! layers, and the artifacts attached to them (referrers are entries of `index.json`, so
//! the walk reaches them). Documents are read through [`Layout::read_document`] and parsed
//! strictly ([`crate::Document::parse`]); every blob, documents included, is hashed in full
//! (large ones streamed on blocking threads, several at once), and each descriptor's size is
//! compared with the stored one. With [`FsckOptions::diff_ids`], layers are also
//! decompressed and their diffIDs compared with the image config's `rootfs.diff_ids`.
//!
//! Nothing stops at the first problem: the [`FsckReport`] lists every one, with the digest
//! and the path by which it was reached. Blobs reached more than once are read once.

use std::collections::HashMap;
use std::fmt;
use std::io::Read;

use futures::StreamExt;
use ocikit_codec::Limits;
use ocikit_codec::compression::Decoder;
use ocikit_digest::oci_spec::image::Descriptor;
use ocikit_digest::{Digest, DigestReader, Hasher, descriptor, json, media_type};
use ocikit_store::{Blob, Error as StoreError};
use serde_json::Value;

use crate::document::{self, Document};
use crate::gc::MAX_NESTING;
use crate::progress::{Event, Operation, Progress};
use crate::{Error, Layout, Result};

/// Largest config read to check diffIDs.
const MAX_CONFIG_SIZE: u64 = crate::MAX_DOCUMENT_SIZE;
/// Bytes read at a time while hashing.
const CHUNK: usize = 1 << 20;
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
    /// Blobs checked at once (default: twice the number of CPUs, so that opening the next
    /// blob overlaps hashing the current ones).
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
    /// The digest's algorithm is one ocikit cannot compute.
    #[error("digest algorithm cannot be verified")]
    Unverifiable,
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
        let i = match self.by_digest.get(&digest) {
            Some(&i) => i,
            None => {
                self.pending.push(BlobCheck {
                    digest: digest.clone(),
                    media_type: d.media_type().to_string(),
                    reaches: Vec::new(),
                    diff_ids: Vec::new(),
                });
                self.by_digest.insert(digest, self.pending.len() - 1);
                self.pending.len() - 1
            }
        };
        if let Some(diff_id) = diff_id {
            self.pending[i].diff_ids.push((diff_id, path.clone()));
        }
        self.pending[i].reaches.push((d.size(), path));
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
        StoreError::UnsupportedAlgorithm { .. } => ProblemKind::Unverifiable,
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

/// Hashes a blob on this (blocking) thread, from its local file or its stream; with
/// `decode`, decompresses it as `media_type` too and hashes the output.
fn hash_blob(
    blob: Blob,
    digest: &Digest,
    media_type: &str,
    decode: Option<Limits>,
    progress: &Progress,
) -> std::result::Result<Hashed, ProblemKind> {
    let hasher = Hasher::new(digest.algorithm()).map_err(|_| ProblemKind::Unverifiable)?;
    let size = blob.size();
    let reader: Box<dyn Read> = match blob.local_file().map(std::fs::File::try_clone) {
        Some(Ok(file)) => Box::new(file),
        Some(Err(e)) => {
            return Err(ProblemKind::Unreadable {
                reason: format!("cannot reopen the blob file: {e}"),
            });
        }
        None => Box::new(tokio_util::io::SyncIoBridge::new(blob.into_reader())),
    };
    let mut source = Counting {
        inner: reader,
        hasher,
        bytes: 0,
        reported: 0,
        digest: digest.clone(),
        progress: progress.clone(),
    };
    let unreadable = |e: std::io::Error| ProblemKind::Unreadable {
        reason: error_chain(&e),
    };
    // Sized to the blob (most blobs are small): a fresh 1 MiB buffer per blob costs more
    // than hashing a small blob does.
    let want = usize::try_from(size).unwrap_or(CHUNK).clamp(8 << 10, CHUNK);
    let mut buf = vec![0u8; if decode.is_some() { CHUNK } else { want }];
    let diff_id = match decode {
        Some(limits) => {
            let outcome = match Decoder::for_media_type(&mut source, media_type, limits) {
                Ok(decoder) => {
                    let mut plain = DigestReader::sha256(decoder);
                    loop {
                        match plain.read(&mut buf) {
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
        match source.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
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
struct Counting {
    inner: Box<dyn Read>,
    hasher: Hasher,
    bytes: u64,
    reported: u64,
    digest: Digest,
    progress: Progress,
}

impl Read for Counting {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        if self.bytes - self.reported >= PROGRESS_EVERY {
            self.reported = self.bytes;
            self.progress.emit(Event::Progress {
                operation: Operation::Fsck,
                digest: self.digest.clone(),
                bytes: self.bytes,
            });
        }
        Ok(n)
    }
}

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
        let mut walk = Walk::default();
        let mut frontier: Vec<(Descriptor, String)> = index
            .manifests()
            .enumerate()
            .map(|(i, d)| (d.clone(), entry_path(i, d)))
            .collect();
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
                    options.progress.emit(Event::Skipped {
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
            let results: Vec<_> = futures::stream::iter(documents)
                .map(|(d, digest, path)| async move {
                    let stored = self.store().stat(&digest).await;
                    let outcome = self.read_document(&d).await;
                    (d, digest, path, stored, outcome)
                })
                .buffered(DOCUMENT_CONCURRENCY)
                .collect()
                .await;
            for (d, digest, path, stored, outcome) in results {
                let size = stored.ok().flatten();
                options.progress.emit(Event::Started {
                    operation: Operation::Fsck,
                    digest: digest.clone(),
                    size: d.size(),
                });
                let doc = match outcome {
                    Ok(doc) => doc,
                    Err(Error::Store(e)) => {
                        walk.problem(&digest, &path, store_problem(&e));
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
                options.progress.emit(Event::Done {
                    operation: Operation::Fsck,
                    digest: digest.clone(),
                    bytes: d.size(),
                });
                if let Some(subject) = doc.subject()
                    && let Ok(s) = descriptor::digest_of(subject)
                {
                    match self.store().stat(&s).await {
                        Ok(Some(_)) => {}
                        Ok(None) => walk.problem(
                            &s,
                            &format!("{path} > subject"),
                            ProblemKind::DanglingSubject,
                        ),
                        Err(e) => walk.problem(&s, &format!("{path} > subject"), store_problem(&e)),
                    }
                }
                match &doc {
                    Document::Manifest { manifest, .. } => {
                        let config = manifest.config();
                        let layers = manifest.layers();
                        let config_path = format!("{path} > config");
                        let expected =
                            if options.diff_ids && is_image_config(config.media_type().as_ref()) {
                                self.config_diff_ids(
                                    config,
                                    &config_path,
                                    layers.len(),
                                    &mut walk,
                                    &options.progress,
                                )
                                .await
                            } else {
                                if let Ok(c) = descriptor::digest_of(config) {
                                    walk.blob(config, c, config_path, None);
                                }
                                None
                            };
                        for (i, layer) in layers.iter().enumerate() {
                            let Ok(l) = descriptor::digest_of(layer) else {
                                continue;
                            };
                            let diff_id = expected
                                .as_ref()
                                .and_then(|ids| ids.get(i).cloned())
                                .filter(|_| media_type::is_layer(layer.media_type().as_ref()));
                            walk.blob(layer, l, format!("{path} > layers[{i}]"), diff_id);
                        }
                    }
                    Document::Index { index, .. } => {
                        for (i, m) in index.manifests().iter().enumerate() {
                            frontier.push((m.clone(), format!("{path} > manifests[{i}]")));
                        }
                    }
                    _ => {}
                }
            }
            frontier.extend(deferred);
            depth += 1;
        }
        self.check_blobs(&mut walk, options).await;
        let mut problems = walk.problems;
        problems.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(FsckReport {
            problems,
            blobs_checked: walk.blobs,
            bytes_checked: walk.bytes,
        })
    }

    /// Reads and checks an image config; returns its diffIDs when they match the layer
    /// count (problems go to `walk`).
    async fn config_diff_ids(
        &self,
        config: &Descriptor,
        path: &str,
        layers: usize,
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
        let stored = self.store().stat(&digest).await.ok().flatten();
        let first = !walk.read.contains_key(&digest);
        let bytes = match self.read_blob(config).await {
            Ok(bytes) => bytes,
            Err(Error::Store(e)) => {
                if first {
                    walk.problem(&digest, path, store_problem(&e));
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
                            reason: error_chain(&e),
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
            progress.emit(Event::Started {
                operation: Operation::Fsck,
                digest: digest.clone(),
                size: config.size(),
            });
            progress.emit(Event::Done {
                operation: Operation::Fsck,
                digest: digest.clone(),
                bytes: bytes.len() as u64,
            });
        } else {
            progress.emit(Event::Skipped {
                operation: Operation::Fsck,
                digest: digest.clone(),
                size: config.size(),
            });
        }
        match diff_ids_of(&bytes) {
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

    /// Hashes every pending blob, `options.concurrency` at a time on blocking threads.
    async fn check_blobs(&self, walk: &mut Walk, options: &FsckOptions) {
        let pending: Vec<BlobCheck> = std::mem::take(&mut walk.pending)
            .into_iter()
            .filter(|c| !walk.read.contains_key(&c.digest))
            .collect();
        let results: Vec<(
            BlobCheck,
            std::result::Result<Hashed, ProblemKind>,
            Option<u64>,
        )> = futures::stream::iter(pending)
            .map(|check| async move {
                let (outcome, size) = self.check_blob(&check, options).await;
                (check, outcome, size)
            })
            .buffer_unordered(options.concurrency.max(1))
            .collect()
            .await;
        for (check, outcome, size) in results {
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

    /// Hashes one blob; also returns its stored size when it is stored.
    async fn check_blob(
        &self,
        check: &BlobCheck,
        options: &FsckOptions,
    ) -> (std::result::Result<Hashed, ProblemKind>, Option<u64>) {
        let blob = match self.store().get(&check.digest, None).await {
            Ok(Some(blob)) => blob,
            Ok(None) => return (Err(ProblemKind::Missing), None),
            Err(e) => return (Err(store_problem(&e)), None),
        };
        let size = blob.size();
        for _ in 1..check.reaches.len() {
            options.progress.emit(Event::Skipped {
                operation: Operation::Fsck,
                digest: check.digest.clone(),
                size,
            });
        }
        options.progress.emit(Event::Started {
            operation: Operation::Fsck,
            digest: check.digest.clone(),
            size,
        });
        let decode = (!check.diff_ids.is_empty()).then_some(options.limits);
        let digest = check.digest.clone();
        let media_type = check.media_type.clone();
        let progress = options.progress.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            hash_blob(blob, &digest, &media_type, decode, &progress)
        })
        .await
        .unwrap_or_else(|e| {
            Err(ProblemKind::Unreadable {
                reason: format!("hashing thread failed: {e}"),
            })
        });
        if let Ok(hashed) = &outcome {
            options.progress.emit(Event::Done {
                operation: Operation::Fsck,
                digest: check.digest.clone(),
                bytes: hashed.bytes,
            });
        }
        (outcome, Some(size))
    }
}
