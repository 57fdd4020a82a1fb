//! [`MemoryStore`]: blobs as `Bytes` in a map, for tests and for embedding.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::ops::Range;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::SystemTime;

use bytes::{Bytes, BytesMut};
use futures::stream::{self, BoxStream, StreamExt};
use ocikit_digest::Digest;
use tokio::io::AsyncWrite;

use crate::store::resolve_range;
use crate::{Blob, Document, DocumentKey, Error, Precondition, Result, Staging, Store, Version};

/// Chunk size of the streams a memory store hands out (slices of the stored `Bytes`, no copy).
const CHUNK: usize = 1 << 20;

/// A store in memory. Cloning it gives another handle to the same content.
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    /// Each blob with the time it was last published.
    blobs: HashMap<Digest, (Bytes, SystemTime)>,
    documents: BTreeMap<DocumentKey, (Bytes, u64)>,
    next_version: u64,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-updated (every update is
        // one insert or remove), so a poisoned lock is safe to keep using.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait::async_trait]
impl Store for MemoryStore {
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>> {
        Ok(self.lock().blobs.get(digest).map(|(b, _)| b.len() as u64))
    }

    async fn get(&self, digest: &Digest, range: Option<Range<u64>>) -> Result<Option<Blob>> {
        let Some((bytes, _)) = self.lock().blobs.get(digest).cloned() else {
            return Ok(None);
        };
        let size = bytes.len() as u64;
        let range = resolve_range(range, size)?;
        // Both ends are within `bytes.len()`, a `usize`.
        let part = bytes.slice(range.start as usize..range.end as usize);
        let chunks: Vec<Result<Bytes>> = (0..part.len())
            .step_by(CHUNK)
            .map(|at| Ok(part.slice(at..(at + CHUNK).min(part.len()))))
            .collect();
        Ok(Some(Blob::new(
            size,
            range,
            stream::iter(chunks).boxed(),
            None,
        )))
    }

    async fn stage(&self) -> Result<Box<dyn Staging>> {
        Ok(Box::new(MemoryStaging {
            store: self.clone(),
            buf: BytesMut::new(),
        }))
    }

    async fn written_at(&self, digest: &Digest) -> Result<Option<SystemTime>> {
        Ok(self.lock().blobs.get(digest).map(|(_, at)| *at))
    }

    async fn delete(&self, digest: &Digest) -> Result<bool> {
        Ok(self.lock().blobs.remove(digest).is_some())
    }

    fn list(&self) -> BoxStream<'_, Result<Digest>> {
        let digests: Vec<Result<Digest>> = self.lock().blobs.keys().cloned().map(Ok).collect();
        stream::iter(digests).boxed()
    }

    async fn read_document(&self, key: &DocumentKey) -> Result<Option<Document>> {
        Ok(self
            .lock()
            .documents
            .get(key)
            .map(|(bytes, version)| Document {
                bytes: bytes.clone(),
                version: Version::new(version.to_string()),
            }))
    }

    async fn write_document(
        &self,
        key: &DocumentKey,
        bytes: Bytes,
        precondition: Precondition,
    ) -> Result<Version> {
        let mut state = self.lock();
        check(
            key,
            state.documents.get(key).map(|(_, v)| *v),
            &precondition,
        )?;
        state.next_version += 1;
        let version = state.next_version;
        state.documents.insert(key.clone(), (bytes, version));
        Ok(Version::new(version.to_string()))
    }

    async fn delete_document(&self, key: &DocumentKey, precondition: Precondition) -> Result<bool> {
        let mut state = self.lock();
        check(
            key,
            state.documents.get(key).map(|(_, v)| *v),
            &precondition,
        )?;
        Ok(state.documents.remove(key).is_some())
    }

    async fn list_documents(&self, prefix: &str) -> Result<Vec<DocumentKey>> {
        Ok(self
            .lock()
            .documents
            .keys()
            .filter(|k| k.is_under(prefix))
            .cloned()
            .collect())
    }
}

fn check(key: &DocumentKey, current: Option<u64>, precondition: &Precondition) -> Result<()> {
    let holds = match precondition {
        Precondition::None => true,
        Precondition::MustNotExist => current.is_none(),
        Precondition::Matches(v) => current.is_some_and(|c| c.to_string() == v.as_str()),
    };
    if holds {
        Ok(())
    } else {
        Err(Error::Conflict {
            key: key.to_string(),
        })
    }
}

struct MemoryStaging {
    store: MemoryStore,
    buf: BytesMut,
}

impl AsyncWrite for MemoryStaging {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.buf.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[async_trait::async_trait]
impl Staging for MemoryStaging {
    async fn publish(self: Box<Self>, digest: &Digest, _size: u64) -> Result<()> {
        let MemoryStaging { store, buf } = *self;
        let now = SystemTime::now();
        // Publishing content that is stored already keeps the stored bytes but renews the
        // write time, so a garbage collector's grace period covers the new writer too.
        store
            .lock()
            .blobs
            .entry(digest.clone())
            .and_modify(|(_, at)| *at = now)
            .or_insert_with(|| (buf.freeze(), now));
        Ok(())
    }

    async fn abort(self: Box<Self>) -> Result<()> {
        Ok(())
    }
}
