//! Reading a blob on a blocking thread, verified: the shared path of everything that
//! decodes layers (unpack, recompression).
//!
//! [`read_verified`] opens the blob, checks its size, and hands `consume` a reader over its
//! bytes on a `spawn_blocking` thread: positioned reads of the local file where the store
//! has one, else the store's stream through a bounded [`bridge::feed`]. The reader counts
//! bytes for progress events, stops when the caller's future is dropped, and verifies the
//! digest and size as it reaches the end. Whatever `consume` leaves unread is drained, so a
//! corrupt blob is always reported as a store digest or size mismatch, even when the
//! decompressor or the tar parser noticed first.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ocikit_digest::{Digest, VerifyingReader};
use ocikit_store::{Error as StoreError, Store, StoreExt};

use crate::bridge;
use crate::progress::{Event, Operation, Progress};
use crate::unpack::PROGRESS_INTERVAL;
use crate::{Error, Result};

/// The reader [`read_verified`] hands to its consumer.
pub(crate) type BlobReader<'a> = &'a mut (dyn Read + Send);

/// Runs `consume` on a blocking thread over the verified bytes of blob `digest`, which must
/// be stored with `size` bytes; reports `operation` progress for it (started, every
/// [`PROGRESS_INTERVAL`] bytes, done). See the [module documentation](self).
pub(crate) async fn read_verified<T, F>(
    store: &dyn Store,
    digest: &Digest,
    size: u64,
    operation: Operation,
    progress: &Progress,
    consume: F,
) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce(BlobReader<'_>) -> Result<T> + Send + 'static,
{
    let blob = store.open(digest, None).await?;
    if blob.size() != size {
        return Err(Error::Store(StoreError::SizeMismatch {
            expected: size,
            actual: blob.size(),
        }));
    }
    progress.emit(Event::Started {
        operation,
        digest: digest.clone(),
        size,
    });
    // If this future is dropped, the blocking thread stops at its next read instead of
    // working on for nobody.
    let cancel = CancelOnDrop(Arc::new(AtomicBool::new(false)));
    let job = Job {
        cancelled: cancel.0.clone(),
        digest: digest.clone(),
        size,
        operation,
        progress: progress.clone(),
    };
    let local = blob
        .local_file()
        .map(File::try_clone)
        .transpose()
        .map_err(|e| Error::Store(StoreError::Stream(e)))?;
    let result = match local {
        Some(file) => {
            let range = blob.range();
            drop(blob);
            let source = FileRange {
                file,
                pos: range.start,
                end: range.end,
            };
            tokio::task::spawn_blocking(move || job.run(source, consume))
                .await
                .map_err(bridge::join_error)?
        }
        None => {
            let (reader, feed) = bridge::feed(blob.into_stream());
            let task = tokio::task::spawn_blocking(move || job.run(reader, consume));
            let (fed, done) = futures::join!(feed, task);
            match (fed, done.map_err(bridge::join_error)?) {
                // The stream's own error explains the reader's failure.
                (Err(e), Err(_)) => Err(Error::Store(e)),
                (_, done) => done,
            }
        }
    };
    drop(cancel);
    let (value, bytes) = result?;
    progress.emit(Event::Done {
        operation,
        digest: digest.clone(),
        bytes,
    });
    Ok(value)
}

/// What the blocking thread needs to verify and count one blob.
struct Job {
    cancelled: Arc<AtomicBool>,
    digest: Digest,
    size: u64,
    operation: Operation,
    progress: Progress,
}

impl Job {
    /// Verifies `source` while `consume` reads it, then drains and checks what is left;
    /// returns `consume`'s value and the bytes read.
    fn run<R, T, F>(self, source: R, consume: F) -> Result<(T, u64)>
    where
        R: Read + Send,
        F: FnOnce(BlobReader<'_>) -> Result<T>,
    {
        // Content under an algorithm ocikit cannot compute is never used unverified.
        let verifying =
            VerifyingReader::new(source, self.digest.clone(), self.size).map_err(|_| {
                Error::Unverifiable {
                    digest: self.digest.clone(),
                }
            })?;
        let mut source = Counting {
            inner: verifying,
            job: self,
            bytes: 0,
            reported: 0,
        };
        let consumed = consume(&mut source);
        let drained = io::copy(&mut source, &mut io::sink());
        if let Err(e) = &drained
            && let Some(corrupt) = blob_error(e)
        {
            return Err(corrupt);
        }
        let value = consumed?;
        match drained {
            Err(e) => Err(Error::Store(StoreError::Stream(e))),
            Ok(_) if !source.inner.is_verified() => Err(Error::Store(StoreError::Stream(
                io::Error::new(io::ErrorKind::InvalidData, "the blob was not verified"),
            ))),
            Ok(_) => Ok((value, source.bytes)),
        }
    }
}

/// The store error for a verification failure of the blob's bytes.
fn blob_error(e: &io::Error) -> Option<Error> {
    let inner = e.get_ref()?.downcast_ref::<ocikit_digest::Error>()?;
    match inner {
        ocikit_digest::Error::DigestMismatch { expected, actual } => {
            Some(Error::Store(StoreError::DigestMismatch {
                expected: expected.clone(),
                actual: actual.clone(),
            }))
        }
        ocikit_digest::Error::SizeMismatch { expected, actual } => {
            Some(Error::Store(StoreError::SizeMismatch {
                expected: *expected,
                actual: *actual,
            }))
        }
        _ => None,
    }
}

/// A byte range of a local file, read with positioned reads (the descriptor may be shared
/// with the store's own stream, so its offset is never used).
struct FileRange {
    file: File,
    pos: u64,
    end: u64,
}

impl Read for FileRange {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.end.saturating_sub(self.pos);
        let n = usize::try_from(left).map_or(buf.len(), |left| left.min(buf.len()));
        if n == 0 {
            return Ok(0);
        }
        let read = self.file.read_at(&mut buf[..n], self.pos)?;
        self.pos += read as u64;
        Ok(read)
    }
}

/// Sets its flag when dropped.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Counts the bytes read, reports progress, and stops when cancelled.
struct Counting<R> {
    inner: R,
    job: Job,
    bytes: u64,
    reported: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.job.cancelled.load(Ordering::Relaxed) {
            // Not `Interrupted`, which readers retry.
            return Err(io::Error::other("the operation was cancelled"));
        }
        let n = self.inner.read(buf)?;
        self.bytes += n as u64;
        if self.bytes - self.reported >= PROGRESS_INTERVAL {
            self.reported = self.bytes;
            self.job.progress.emit(Event::Progress {
                operation: self.job.operation,
                digest: self.job.digest.clone(),
                bytes: self.bytes,
            });
        }
        Ok(n)
    }
}
