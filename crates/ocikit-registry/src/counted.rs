//! A [`Store`] layer that counts every call into the store it wraps, and its failures, in
//! the registry's [metrics](crate::metrics) (`store_requests_total`, `store_failures_total`).
//! Everything else passes through untouched, including the optional capabilities
//! (`link_blob`, `local_blobs`) and the overridden defaults (`written_at`,
//! `document_version`), so a backend's fast paths stay in use.

use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use bytes::Bytes;
use futures::StreamExt as _;
use futures::stream::BoxStream;
use ocikit_digest::Digest;
use ocikit_store::{
    Blob, Document, DocumentKey, LinkMode, LinkTrust, Linked, LocalBlobs, Precondition, Result,
    Staging, Store, Version,
};
use tokio::io::AsyncWrite;

use crate::metrics::Metrics;

/// `inner`, with every call counted under `store` (`content` or `upload`).
#[derive(Debug)]
pub(crate) struct Counted {
    inner: Arc<dyn Store>,
    store: &'static str,
    metrics: Arc<Metrics>,
}

impl Counted {
    pub(crate) fn new(
        inner: Arc<dyn Store>,
        store: &'static str,
        metrics: Arc<Metrics>,
    ) -> Counted {
        Counted {
            inner,
            store,
            metrics,
        }
    }

    fn count<T>(&self, op: &'static str, outcome: Result<T>) -> Result<T> {
        self.metrics.store_call(self.store, op, &outcome);
        outcome
    }
}

#[async_trait::async_trait]
impl Store for Counted {
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>> {
        self.count("stat", self.inner.stat(digest).await)
    }

    async fn get(&self, digest: &Digest, range: Option<Range<u64>>) -> Result<Option<Blob>> {
        self.count("get", self.inner.get(digest, range).await)
    }

    async fn stage(&self) -> Result<Box<dyn Staging>> {
        let staging = self.count("stage", self.inner.stage().await)?;
        Ok(Box::new(CountedStaging {
            inner: staging,
            store: self.store,
            metrics: self.metrics.clone(),
        }))
    }

    async fn written_at(&self, digest: &Digest) -> Result<Option<SystemTime>> {
        self.count("written_at", self.inner.written_at(digest).await)
    }

    async fn delete(&self, digest: &Digest) -> Result<bool> {
        self.count("delete", self.inner.delete(digest).await)
    }

    fn list(&self) -> BoxStream<'_, Result<Digest>> {
        // One call, however many pages the listing takes; a failure anywhere in it counts.
        let metrics = self.metrics.clone();
        let store = self.store;
        metrics.store_call(store, "list", &Ok(()));
        self.inner
            .list()
            .inspect(move |item| {
                if let Err(e) = item
                    && !matches!(e, ocikit_store::Error::Conflict { .. })
                {
                    metrics.store_failure(store, "list");
                }
            })
            .boxed()
    }

    async fn read_document(&self, key: &DocumentKey) -> Result<Option<Document>> {
        self.count("read_document", self.inner.read_document(key).await)
    }

    async fn document_version(&self, key: &DocumentKey) -> Result<Option<Version>> {
        self.count("document_version", self.inner.document_version(key).await)
    }

    async fn write_document(
        &self,
        key: &DocumentKey,
        bytes: Bytes,
        precondition: Precondition,
    ) -> Result<Version> {
        self.count(
            "write_document",
            self.inner.write_document(key, bytes, precondition).await,
        )
    }

    async fn delete_document(&self, key: &DocumentKey, precondition: Precondition) -> Result<bool> {
        self.count(
            "delete_document",
            self.inner.delete_document(key, precondition).await,
        )
    }

    async fn list_documents(&self, prefix: &str) -> Result<Vec<DocumentKey>> {
        self.count("list_documents", self.inner.list_documents(prefix).await)
    }

    async fn list_documents_after(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DocumentKey>> {
        self.count(
            "list_documents_after",
            self.inner.list_documents_after(prefix, after, limit).await,
        )
    }

    async fn link_blob(
        &self,
        digest: &Digest,
        size: u64,
        file: &std::fs::File,
        trust: LinkTrust,
        mode: LinkMode,
    ) -> Result<Linked> {
        self.count(
            "link_blob",
            self.inner.link_blob(digest, size, file, trust, mode).await,
        )
    }

    fn local_blobs(&self) -> Option<Arc<dyn LocalBlobs>> {
        self.inner.local_blobs()
    }
}

/// A staged write whose publication and abandonment are counted (`publish`, `abort`).
struct CountedStaging {
    inner: Box<dyn Staging>,
    store: &'static str,
    metrics: Arc<Metrics>,
}

impl AsyncWrite for CountedStaging {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut *self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut *self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[async_trait::async_trait]
impl Staging for CountedStaging {
    async fn publish(self: Box<Self>, digest: &Digest, size: u64) -> Result<()> {
        let outcome = self.inner.publish(digest, size).await;
        self.metrics.store_call(self.store, "publish", &outcome);
        outcome
    }

    async fn abort(self: Box<Self>) -> Result<()> {
        let outcome = self.inner.abort().await;
        self.metrics.store_call(self.store, "abort", &outcome);
        outcome
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use ocikit_store::{MemoryStore, StoreExt as _};

    use super::*;

    fn count(text: &str, series: &str) -> u64 {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .map_or(0, |v| v.parse().unwrap())
    }

    #[tokio::test]
    async fn calls_and_failures_are_counted_and_lost_swaps_are_no_failures() {
        let metrics = Arc::new(Metrics::new());
        let store = Counted::new(Arc::new(MemoryStore::new()), "content", metrics.clone());
        let digest = store.put_bytes(b"hello").await.unwrap();
        assert_eq!(store.stat(&digest).await.unwrap(), Some(5));
        // A range past the end is the store's error: a failure.
        assert!(store.get(&digest, Some(10..20)).await.is_err());
        let key = DocumentKey::new("a/b").unwrap();
        store
            .write_document(&key, Bytes::from_static(b"1"), Precondition::MustNotExist)
            .await
            .unwrap();
        // The second write loses its compare-and-swap: counted, but not as a failure.
        let lost = store
            .write_document(&key, Bytes::from_static(b"2"), Precondition::MustNotExist)
            .await;
        assert!(matches!(lost, Err(ocikit_store::Error::Conflict { .. })));
        let listed: Vec<_> = store.list().collect().await;
        assert_eq!(listed.len(), 1);
        let text = metrics.encode();
        let series = |kind: &str, op: &str| {
            format!("ocikit_registry_store_{kind}_total{{store=\"content\",op=\"{op}\"}}")
        };
        assert_eq!(count(&text, &series("requests", "stage")), 1, "{text}");
        assert_eq!(count(&text, &series("requests", "publish")), 1, "{text}");
        assert_eq!(count(&text, &series("requests", "stat")), 1, "{text}");
        assert_eq!(count(&text, &series("requests", "get")), 1, "{text}");
        assert_eq!(count(&text, &series("failures", "get")), 1, "{text}");
        assert_eq!(
            count(&text, &series("requests", "write_document")),
            2,
            "{text}"
        );
        assert_eq!(
            count(&text, &series("failures", "write_document")),
            0,
            "{text}"
        );
        assert_eq!(count(&text, &series("requests", "list")), 1, "{text}");
        assert_eq!(count(&text, &series("failures", "stat")), 0, "{text}");
    }
}
