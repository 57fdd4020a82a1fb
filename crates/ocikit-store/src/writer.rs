//! [`BlobWriter`]: the one way blobs get into a store.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use ocikit_digest::{Algorithm, Digest, Hasher};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::{Error, Result, Staging};

/// Writes a blob into a store: bytes go to the backend's staging area as they come and are
/// hashed inline; [`BlobWriter::commit`] verifies digest and size before publishing
/// atomically.
///
/// Dropping a writer without committing, or calling [`BlobWriter::abort`], leaves nothing
/// visible. A failed commit (wrong digest or size) publishes nothing either.
///
/// The writer hashes with the algorithm it was created for (SHA-256 unless
/// [`crate::StoreExt::writer_with`] chose another); committing under a digest of another
/// algorithm fails with [`Error::DigestMismatch`].
pub struct BlobWriter {
    staging: Box<dyn Staging>,
    hasher: Hasher,
    written: u64,
}

impl BlobWriter {
    /// Wraps a backend's staging area, hashing with `algorithm`.
    pub fn new(staging: Box<dyn Staging>, algorithm: &Algorithm) -> Result<BlobWriter> {
        let hasher = Hasher::new(algorithm).map_err(|_| Error::UnsupportedAlgorithm {
            algorithm: algorithm.clone(),
        })?;
        Ok(BlobWriter {
            staging,
            hasher,
            written: 0,
        })
    }

    /// Bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.written
    }

    /// The digest of the bytes written so far.
    pub fn digest(&self) -> Digest {
        self.hasher.current()
    }

    /// Verifies that the bytes written are exactly `size` bytes hashing to `expected`, then
    /// publishes them under `expected`. If the blob exists already this succeeds without
    /// writing it again.
    pub async fn commit(mut self, expected: &Digest, size: u64) -> Result<()> {
        self.staging.flush().await.map_err(Error::Stream)?;
        if self.written != size {
            let actual = self.written;
            self.staging.abort().await.ok();
            return Err(Error::SizeMismatch {
                expected: size,
                actual,
            });
        }
        let actual = self.hasher.finish();
        if &actual != expected {
            self.staging.abort().await.ok();
            return Err(Error::DigestMismatch {
                expected: expected.clone(),
                actual,
            });
        }
        self.staging.publish(expected, size).await
    }

    /// Publishes the bytes written under their own digest, for content produced locally
    /// (where there is nothing to check against); returns digest and size.
    pub async fn finish(mut self) -> Result<(Digest, u64)> {
        self.staging.flush().await.map_err(Error::Stream)?;
        let digest = self.hasher.finish();
        let size = self.written;
        self.staging.publish(&digest, size).await?;
        Ok((digest, size))
    }

    /// Discards everything written.
    pub async fn abort(self) -> Result<()> {
        self.staging.abort().await
    }
}

impl std::fmt::Debug for BlobWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobWriter")
            .field("algorithm", &self.hasher.algorithm())
            .field("written", &self.written)
            .finish_non_exhaustive()
    }
}

impl AsyncWrite for BlobWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let n = ready!(Pin::new(&mut this.staging).poll_write(cx, buf))?;
        // Hashing here overlaps with the backend's write of the previous chunk, which runs on
        // a blocking thread (filesystem) or the network (object store).
        this.hasher.update(&buf[..n]);
        this.written += n as u64;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.staging).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Shutting down only flushes: publishing needs `commit` or `finish`.
        Pin::new(&mut self.staging).poll_flush(cx)
    }
}
