//! How [`Layout::fsck`] reads blobs: from local files on a pool of blocking workers, or
//! streamed from the store; hashing (and decoding) one blob.

use std::io::Read;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use ocikit_codec::Limits;
use ocikit_codec::compression::Decoder;
use ocikit_digest::graph::GraphError;
use ocikit_digest::{Digest, DigestReader, Hasher, descriptor};
use ocikit_store::{Error as StoreError, LocalBlobs};

use super::pool::Context;
use super::walk::{
    BlobCheck, ConfigReads, DocumentReads, Judged, Parsed, Wanted, is_image_config, parse_document,
};
use super::{
    CHUNK, DOCUMENT_CONCURRENCY, FsckOptions, MIN_BUFFER, PROGRESS_EVERY, ProblemKind, error_chain,
    store_problem,
};
use crate::progress::{Event, Operation, Progress};
use crate::{Error, Layout, Result};

/// What hashing one blob found.
pub(super) struct Hashed {
    pub(super) digest: Digest,
    pub(super) bytes: u64,
    /// The uncompressed digest, when asked for; `Err` when decoding failed.
    pub(super) diff_id: Option<std::result::Result<Digest, String>>,
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
pub(super) fn hash_blob(
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
pub(super) struct Counting<'a, R> {
    pub(super) inner: R,
    pub(super) hasher: Hasher,
    pub(super) bytes: u64,
    pub(super) reported: u64,
    pub(super) digest: &'a Digest,
    pub(super) progress: &'a Progress,
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
pub(super) fn emit_started(progress: &Progress, check: &BlobCheck, size: u64) {
    for _ in 0..check.more.len() {
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
pub(super) fn emit_done(
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
pub(super) type Checked = (std::result::Result<Hashed, ProblemKind>, Option<u64>);

/// Hashes one blob from its local file, on this (blocking) thread.
pub(super) fn check_local(
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
        check.media_type.as_ref(),
        decode,
        progress,
        buf,
    );
    emit_done(progress, check, &outcome);
    (outcome, Some(size))
}

/// What reading a whole small blob found: its stored size (when it is stored) and, when it
/// is the declared size and hashes to its digest, its bytes.
pub(super) type WholeRead = (Option<u64>, Result<Bytes>);

/// Reads the whole blob `digest`, declared `declared` bytes, from its local file on this
/// (blocking) thread, with the checks [`Layout::read_blob`] makes: the stored size is the
/// declared one and at most [`crate::MAX_DOCUMENT_SIZE`], its digest's algorithm is one
/// ocikit computes ([`Error::Unverifiable`] otherwise), and the bytes hash to the digest.
pub(super) fn read_local(local: &dyn LocalBlobs, digest: &Digest, declared: u64) -> WholeRead {
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

/// What a worker found reading one document: its stored size (when it is stored), the
/// document taken apart ([`Parsed::take`]) or why it could not be, and, for a manifest
/// whose image config was asked for ([`Context::configs`]), what reading that config found.
pub(super) type DocumentRead = (
    Option<u64>,
    Result<(Option<GraphError>, Parsed)>,
    Option<((Digest, u64), WholeRead)>,
);

/// Reads, verifies and parses the document `wanted` from its local file on this (blocking)
/// thread ([`read_local`], [`parse_document`]); with [`Context::configs`], reads the image
/// config of a manifest too.
pub(super) fn read_document(context: &Context, wanted: &Wanted) -> DocumentRead {
    let (stored, bytes) = read_local(&*context.files, &wanted.digest, wanted.size);
    let parsed = bytes.and_then(|bytes| parse_document(wanted, bytes, context.max_document_size));
    let config = match &parsed {
        Ok((
            _,
            Parsed::Manifest {
                config,
                config_digest: Some(digest),
                ..
            },
        )) if context.configs && is_image_config(config.media_type().as_ref()) => Some((
            (digest.clone(), config.size()),
            read_local(&*context.files, digest, config.size()),
        )),
        _ => None,
    };
    (stored, parsed, config)
}

/// Reads a regular file that held `size` bytes when it was opened (at most one byte more,
/// to notice one that grew). As in [`hash_blob`], a read that comes back short exactly at
/// `size` is the end.
pub(super) fn read_file(mut file: &std::fs::File, size: u64) -> std::io::Result<Vec<u8>> {
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
pub(super) enum Mode {
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

/// A worker that failed (it panicked, and its results were lost): what each item it had
/// taken reports.
pub(super) fn worker_failed() -> ProblemKind {
    ProblemKind::Unreadable {
        reason: "the hashing thread failed".into(),
    }
}

impl Layout {
    /// Local files on one blocking worker per CPU (at most `concurrency`) where the store
    /// has them, else streams.
    pub(super) fn mode(&self, options: &FsckOptions) -> Mode {
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
    /// with their stored sizes, streamed from the store (a store with local files has them
    /// read by the workers of [`super::pool`]).
    pub(super) async fn read_documents(
        &self,
        documents: Vec<Wanted>,
        max_size: u64,
    ) -> DocumentReads {
        futures::stream::iter(documents)
            .map(|wanted| async move {
                let stored = self.store().stat(&wanted.digest).await.ok().flatten();
                let outcome = match descriptor::new(
                    wanted.media_type.as_ref(),
                    &wanted.digest,
                    wanted.size,
                ) {
                    Ok(d) => self.read_blob(&d).await,
                    Err(e) => Err(GraphError::Descriptor(Box::new(e)).into()),
                }
                .and_then(|bytes| parse_document(&wanted, bytes, max_size));
                (wanted, stored, outcome)
            })
            .buffered(DOCUMENT_CONCURRENCY)
            .collect()
            .await
    }

    /// Reads (and verifies) the image configs of the manifests in `results`, once each, for
    /// their diffIDs.
    pub(super) async fn read_configs(&self, results: &DocumentReads) -> ConfigReads {
        let mut wanted = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (.., outcome) in results {
            if let Ok((_, Parsed::Manifest { config, .. })) = outcome
                && is_image_config(config.media_type().as_ref())
                && let Ok(digest) = descriptor::digest_of(config)
                && seen.insert((digest.clone(), config.size()))
            {
                wanted.push(((**config).clone(), digest));
            }
        }
        let reads: Vec<WholeRead> = futures::stream::iter(wanted.iter())
            .map(|(d, digest)| async move {
                let stored = self.store().stat(digest).await.ok().flatten();
                (stored, self.read_blob(d).await)
            })
            .buffered(DOCUMENT_CONCURRENCY)
            .collect()
            .await;
        wanted
            .iter()
            .zip(reads)
            .map(|((d, digest), read)| ((digest.clone(), d.size()), read))
            .collect()
    }

    /// Hashes `pending`, streamed from the store `concurrency` at a time, and judges what
    /// each hash found ([`BlobCheck::judge`]). The results are in the order of `pending`.
    pub(super) async fn hash_pending(
        &self,
        pending: Vec<BlobCheck>,
        options: &FsckOptions,
        concurrency: usize,
    ) -> Vec<Judged> {
        // Unordered, so that one slow blob does not hold back the start of others; put
        // back in order afterwards.
        let mut results: Vec<(usize, Judged)> =
            futures::stream::iter(pending.into_iter().enumerate())
                .map(|(i, check)| async move {
                    let checked = self.check_streamed(&check, options).await;
                    (i, check.judge(checked))
                })
                .buffer_unordered(concurrency.max(1))
                .collect()
                .await;
        results.sort_by_key(|(i, _)| *i);
        results.into_iter().map(|(_, judged)| judged).collect()
    }

    /// Hashes one blob streamed from the store (on a blocking thread of its own).
    pub(super) async fn check_streamed(&self, check: &BlobCheck, options: &FsckOptions) -> Checked {
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
                    media_type.as_ref(),
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
                    media_type.as_ref(),
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

/// The error of a read whose worker failed.
pub(super) fn worker_failed_error() -> Error {
    Error::Store(StoreError::Stream(std::io::Error::other(
        "the hashing thread failed",
    )))
}
