//! [`StoreExt`]: conveniences over any [`Store`], and blanket impls for references and
//! smart pointers.

use std::ops::Range;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use futures::stream::BoxStream;
use ocikit_digest::{Algorithm, Digest};
use tokio::io::AsyncWriteExt;

use crate::{
    Blob, BlobWriter, Document, DocumentKey, Error, Precondition, Result, Staging, Store, Version,
};

/// How many times [`StoreExt::update_document`] re-reads and retries after losing a
/// compare-and-swap before giving up with [`Error::Conflict`].
pub const MAX_UPDATE_ATTEMPTS: usize = 1000;

/// Conveniences available on every [`Store`] (including `&S`, `Box<S>`, `Arc<S>` and
/// `dyn Store`).
#[async_trait::async_trait]
pub trait StoreExt: Store {
    /// A writer hashing with SHA-256.
    async fn writer(&self) -> Result<BlobWriter> {
        BlobWriter::new(self.stage().await?, &Algorithm::Sha256)
    }

    /// A writer hashing with `algorithm` (which ocikit must be able to compute).
    async fn writer_with(&self, algorithm: &Algorithm) -> Result<BlobWriter> {
        if !algorithm.is_supported() {
            return Err(Error::UnsupportedAlgorithm {
                algorithm: algorithm.clone(),
            });
        }
        BlobWriter::new(self.stage().await?, algorithm)
    }

    /// Stores `bytes` under their SHA-256 digest and returns it.
    async fn put_bytes(&self, bytes: &[u8]) -> Result<Digest> {
        let mut writer = self.writer().await?;
        writer.write_all(bytes).await.map_err(Error::Stream)?;
        Ok(writer.finish().await?.0)
    }

    /// Stores `bytes`, which must hash to `expected`.
    async fn put_verified(&self, expected: &Digest, bytes: &[u8]) -> Result<()> {
        let mut writer = self.writer_with(expected.algorithm()).await?;
        writer.write_all(bytes).await.map_err(Error::Stream)?;
        writer.commit(expected, bytes.len() as u64).await
    }

    /// Whether a blob is stored.
    async fn exists(&self, digest: &Digest) -> Result<bool> {
        Ok(self.stat(digest).await?.is_some())
    }

    /// The size of a blob that must be stored ([`Error::NotFound`] otherwise).
    async fn require(&self, digest: &Digest) -> Result<u64> {
        self.stat(digest).await?.ok_or_else(|| Error::NotFound {
            digest: digest.clone(),
        })
    }

    /// Opens a blob that must be stored ([`Error::NotFound`] otherwise).
    async fn open(&self, digest: &Digest, range: Option<Range<u64>>) -> Result<Blob> {
        self.get(digest, range)
            .await?
            .ok_or_else(|| Error::NotFound {
                digest: digest.clone(),
            })
    }

    /// Reads a whole blob into memory, refusing blobs larger than `limit` bytes before reading
    /// them, and verifying the bytes against the digest. A stored blob under a digest whose
    /// algorithm ocikit cannot compute is refused unread with [`Error::Unverifiable`]: what
    /// this returns was always verified. `None` when the blob is not stored.
    async fn get_bytes(&self, digest: &Digest, limit: u64) -> Result<Option<Bytes>> {
        let Some(blob) = self.get(digest, None).await? else {
            return Ok(None);
        };
        if !digest.is_supported() {
            return Err(Error::Unverifiable {
                digest: digest.clone(),
            });
        }
        if blob.size() > limit {
            return Err(Error::TooLarge {
                size: blob.size(),
                limit,
            });
        }
        let size = blob.size();
        let mut buf = BytesMut::with_capacity(usize::try_from(size).unwrap_or(0));
        let mut stream = blob.into_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            if buf.len() as u64 + chunk.len() as u64 > size {
                return Err(Error::SizeMismatch {
                    expected: size,
                    actual: buf.len() as u64 + chunk.len() as u64,
                });
            }
            buf.extend_from_slice(&chunk);
        }
        if buf.len() as u64 != size {
            return Err(Error::SizeMismatch {
                expected: size,
                actual: buf.len() as u64,
            });
        }
        let actual =
            Digest::compute(digest.algorithm(), &buf).map_err(|_| Error::Unverifiable {
                digest: digest.clone(),
            })?;
        if &actual != digest {
            return Err(Error::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        Ok(Some(buf.freeze()))
    }

    /// Copies a blob into `destination`, streaming and verifying it on the way (the
    /// destination publishes it only if it hashes to `digest`). Does nothing when the
    /// destination has it already.
    async fn copy_to(&self, digest: &Digest, destination: &(dyn Store + '_)) -> Result<()> {
        if destination.stat(digest).await?.is_some() {
            return Ok(());
        }
        let blob = self.open(digest, None).await?;
        let size = blob.size();
        let mut writer = destination.writer_with(digest.algorithm()).await?;
        let mut stream = blob.into_stream();
        while let Some(chunk) = stream.next().await {
            writer.write_all(&chunk?).await.map_err(Error::Stream)?;
        }
        writer.commit(digest, size).await
    }

    /// Reads a document that must exist ([`Error::DocumentNotFound`] otherwise).
    async fn require_document(&self, key: &DocumentKey) -> Result<Document> {
        self.read_document(key)
            .await?
            .ok_or_else(|| Error::DocumentNotFound {
                key: key.to_string(),
            })
    }

    /// Edits a document by compare-and-swap: reads it, calls `edit` with its current bytes
    /// (`None` when absent), and writes the result conditioned on the version read; on a
    /// conflict it re-reads and calls `edit` again. `edit` returning `Ok(None)` leaves the
    /// document unchanged. Returns the version written (or the one left in place).
    async fn update_document<F>(&self, key: &DocumentKey, mut edit: F) -> Result<Option<Version>>
    where
        F: FnMut(Option<&[u8]>) -> Result<Option<Bytes>> + Send,
    {
        for _ in 0..MAX_UPDATE_ATTEMPTS {
            let current = self.read_document(key).await?;
            let (old, precondition) = match &current {
                Some(doc) => (
                    Some(&doc.bytes[..]),
                    Precondition::Matches(doc.version.clone()),
                ),
                None => (None, Precondition::MustNotExist),
            };
            let Some(new) = edit(old)? else {
                return Ok(current.map(|d| d.version));
            };
            match self.write_document(key, new, precondition).await {
                Ok(version) => return Ok(Some(version)),
                Err(Error::Conflict { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::Conflict {
            key: key.to_string(),
        })
    }
}

impl<T: Store + ?Sized> StoreExt for T {}

macro_rules! forward_store {
    ($($ty:ty),*) => {$(
        #[async_trait::async_trait]
        impl<T: Store + ?Sized> Store for $ty {
            async fn stat(&self, digest: &Digest) -> Result<Option<u64>> {
                (**self).stat(digest).await
            }
            async fn get(&self, digest: &Digest, range: Option<Range<u64>>) -> Result<Option<Blob>> {
                (**self).get(digest, range).await
            }
            async fn stage(&self) -> Result<Box<dyn Staging>> {
                (**self).stage().await
            }
            async fn delete(&self, digest: &Digest) -> Result<bool> {
                (**self).delete(digest).await
            }
            async fn written_at(&self, digest: &Digest) -> Result<Option<std::time::SystemTime>> {
                (**self).written_at(digest).await
            }
            fn list(&self) -> BoxStream<'_, Result<Digest>> {
                (**self).list()
            }
            async fn read_document(&self, key: &DocumentKey) -> Result<Option<Document>> {
                (**self).read_document(key).await
            }
            async fn document_version(&self, key: &DocumentKey) -> Result<Option<Version>> {
                (**self).document_version(key).await
            }
            async fn write_document(
                &self,
                key: &DocumentKey,
                bytes: Bytes,
                precondition: Precondition,
            ) -> Result<Version> {
                (**self).write_document(key, bytes, precondition).await
            }
            async fn delete_document(&self, key: &DocumentKey, precondition: Precondition) -> Result<bool> {
                (**self).delete_document(key, precondition).await
            }
            async fn list_documents(&self, prefix: &str) -> Result<Vec<DocumentKey>> {
                (**self).list_documents(prefix).await
            }
            async fn list_documents_after(
                &self,
                prefix: &str,
                after: Option<&str>,
                limit: usize,
            ) -> Result<Vec<DocumentKey>> {
                (**self).list_documents_after(prefix, after, limit).await
            }
            async fn link_blob(
                &self,
                digest: &Digest,
                size: u64,
                file: &std::fs::File,
                trust: crate::LinkTrust,
                mode: crate::LinkMode,
            ) -> Result<crate::Linked> {
                (**self).link_blob(digest, size, file, trust, mode).await
            }
            fn local_blobs(&self) -> Option<Arc<dyn crate::LocalBlobs>> {
                (**self).local_blobs()
            }
            fn partial_downloads(&self) -> Option<crate::fs::Partials> {
                (**self).partial_downloads()
            }
        }
    )*};
}

forward_store!(&T, Box<T>, Arc<T>);
