//! Verifying a layout: [`Layout::fsck`](crate::Layout::fsck).
//!
//! Everything reachable from `index.json` is checked: nested indexes, manifests, configs,
//! layers, and the artifacts attached to them (referrers are entries of `index.json`, so
//! the walk reaches them). Documents are read with the checks of
//! [`Layout::read_document`](crate::Layout::read_document) and parsed strictly
//! ([`crate::Document::parse`]); every blob, documents included, is
//! hashed in full, and each descriptor's size is compared with the stored one. With
//! [`FsckOptions::diff_ids`], layers are also decompressed and their diffIDs compared with
//! the image config's `rootfs.diff_ids`; a layer whose media type ocikit cannot decode is
//! reported ([`ProblemKind::UndecodableMediaType`]), not skipped. A blob under a digest
//! algorithm ocikit cannot compute is reported [`ProblemKind::Unverifiable`] and, being
//! unverified, is not parsed or followed.
//!
//! Where the store keeps blobs in local files ([`ocikit_store::Store::local_blobs`], the
//! filesystem store), a fixed pool of blocking workers, one per CPU, lives for the whole
//! fsck and pulls from one shared queue, documents first, reading each blob from its file
//! into one reused buffer: no hop through the async runtime per blob, which is what small
//! blobs cost most. The walk hands the workers each document as soon as it reaches it (in
//! chunks, roots included while `index.json` is still being gone through) and each blob at
//! its first reach, so that no worker waits for a level of the walk to end; what the
//! workers read is followed in the order it was handed out, so that what is reported does
//! not depend on which worker was quicker. A blob reached again after it was handed out is
//! judged by its stored size once hashed. With [`FsckOptions::diff_ids`], blobs wait for the
//! end of the walk (a later reach may ask for a diffID), and go largest first so that the
//! workers finish together. Other stores (memory, object stores) are walked level by level
//! and stream every blob, `concurrency` at a time, hashing each on a blocking thread.
//!
//! The walk is [`ocikit_digest::graph`]'s one walk of manifests and indexes, breadth first
//! ([`Walker`](ocikit_digest::graph::Walker), fed what the documents the workers parsed
//! name, with [`Walker::visit_children`](ocikit_digest::graph::Walker::visit_children): the
//! documents are parsed, taken apart and freed on the workers), under its limits: a
//! document nested deeper than [`graph::MAX_DEPTH`] levels is reported
//! ([`ProblemKind::TooDeep`]) and not read, past [`graph::MAX_NODES`] distinct blobs what a
//! document names is reported ([`ProblemKind::TooManyBlobs`]) and not checked, and a
//! document larger than the walk's size limit is [`ProblemKind::InvalidDocument`].
//!
//! Nothing stops at the first problem: the [`FsckReport`] lists every one, with the digest
//! and the path by which it was reached. Blobs reached more than once are read once.

mod pool;
mod read;
mod walk;

#[cfg(test)]
mod tests;

use std::fmt;

use ocikit_codec::Limits;
use ocikit_digest::{Digest, graph};
use ocikit_store::Error as StoreError;

use crate::Error;
use crate::progress::Progress;

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

/// Options of [`Layout::fsck`](crate::Layout::fsck).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct FsckOptions {
    /// Also decompress layers and compare their diffIDs with the image configs.
    pub diff_ids: bool,
    /// Blobs checked at once (default: twice the number of CPUs, so that fetching the next
    /// blob from a remote store overlaps hashing the current ones). On a store with local
    /// files, at most one worker per CPU hashes, whatever this says above that.
    pub concurrency: usize,
    /// Where [`Operation::Fsck`](crate::progress::Operation::Fsck) events go.
    pub progress: Progress,
    /// Limits on decompressing layers.
    pub limits: Limits,
    /// The limits of the graph walk (depth, distinct blobs, document size): those of every
    /// walk of manifests and indexes ([`ocikit_digest::graph::Limits::new`]) by default.
    pub graph: graph::Limits,
}

impl Default for FsckOptions {
    fn default() -> FsckOptions {
        FsckOptions {
            diff_ids: false,
            concurrency: 2 * std::thread::available_parallelism().map_or(2, |n| n.get()),
            progress: Progress::none(),
            limits: Limits::default(),
            graph: graph::Limits::new(),
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

    /// These options with other graph walk limits (tighter ones, say, for a layout that
    /// must stay small).
    pub fn with_graph_limits(mut self, limits: graph::Limits) -> FsckOptions {
        self.graph = limits;
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
    /// A manifest or index nested deeper below `index.json` than the one graph walk allows
    /// ([`ocikit_digest::graph::MAX_DEPTH`] levels, or [`FsckOptions::graph`]): it was not
    /// read, nor anything below it.
    #[error("nested deeper than {max} levels below index.json; not read")]
    TooDeep {
        /// The depth limit.
        max: usize,
    },
    /// The layout reaches more distinct blobs than the one graph walk allows
    /// ([`ocikit_digest::graph::MAX_NODES`], or [`FsckOptions::graph`]): the blobs this
    /// document (or `index.json` entry) names beyond the limit were not checked.
    #[error("the layout reaches more than {max} blobs; what this names was not checked")]
    TooManyBlobs {
        /// The node limit.
        max: usize,
    },
    /// The store failed to deliver the blob.
    #[error("unreadable: {reason}")]
    Unreadable {
        /// Why.
        reason: String,
    },
}

/// What [`Layout::fsck`](crate::Layout::fsck) found.
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
