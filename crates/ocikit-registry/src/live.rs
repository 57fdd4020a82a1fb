//! The in-process fast path of chunked uploads.
//!
//! Every PATCH is stored as a scratch chunk in the upload store (that is what survives a
//! restart), and the closing PUT would then read all the chunks back into a content-store
//! writer: every byte written, read and hashed twice. Instead, while a session is handled by
//! one process, each PATCH body is also fed, on another task (so on the other core), into a
//! content-store [`BlobWriter`] kept here between requests; the closing PUT commits that
//! writer and reads nothing back.
//!
//! The fast path is only an optimisation, never the source of truth: a live writer is used
//! only while it has seen exactly the chunks the session document lists (count and bytes),
//! and it is dropped (its staged bytes deleted) at the first doubt: a failed or conflicting
//! PATCH, a chunk another process received, a cancelled or expired session, a restart.
//! Then the closing PUT replays the chunks as before. And whatever path the bytes took, the
//! commit verifies them against the client's digest.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ocikit_digest::Algorithm;
use ocikit_store::BlobWriter;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use uuid::Uuid;

/// Most sessions with a live writer at once (each holds a staged file and its buffers);
/// sessions past this take the replay path.
const MAX_LIVE: usize = 16;
/// Body chunks queued for the live writer's task.
const TEE_QUEUE: usize = 32;

/// A content-store writer that has received a session's first `chunks` chunks.
#[derive(Debug)]
pub(crate) struct LiveUpload {
    pub(crate) writer: BlobWriter,
    pub(crate) algorithm: Algorithm,
    pub(crate) chunks: usize,
    touched: Instant,
}

impl LiveUpload {
    /// A live writer for a session that has received nothing yet.
    pub(crate) fn new(writer: BlobWriter, algorithm: Algorithm) -> LiveUpload {
        LiveUpload {
            writer,
            algorithm,
            chunks: 0,
            touched: Instant::now(),
        }
    }

    /// Whether this writer holds exactly what a session with `chunks` chunks of `size`
    /// bytes in all has received.
    pub(crate) fn matches(&self, chunks: usize, size: u64) -> bool {
        self.chunks == chunks && self.writer.bytes_written() == size
    }
}

/// The live writers of this process, by session.
#[derive(Debug, Default)]
pub(crate) struct Live {
    entries: Mutex<HashMap<Uuid, LiveUpload>>,
}

impl Live {
    /// Takes the live writer of session `id`, if there is one.
    pub(crate) fn take(&self, id: &Uuid) -> Option<LiveUpload> {
        self.entries.lock().ok()?.remove(id)
    }

    /// Whether another live writer may be started.
    pub(crate) fn has_room(&self) -> bool {
        self.entries.lock().is_ok_and(|e| e.len() < MAX_LIVE)
    }

    /// Keeps `upload` for session `id`'s next request (dropped when there is no room).
    pub(crate) fn put(&self, id: Uuid, mut upload: LiveUpload) {
        upload.touched = Instant::now();
        if let Ok(mut entries) = self.entries.lock()
            && entries.len() < MAX_LIVE
        {
            entries.insert(id, upload);
        }
    }

    /// Drops the live writers untouched for `ttl` (their sessions are expiring too).
    pub(crate) fn expire(&self, ttl: Duration) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.retain(|_, u| u.touched.elapsed() < ttl);
        }
    }
}

/// A live writer being fed a request body on its own task.
pub(crate) struct Tee {
    sender: Option<mpsc::Sender<Bytes>>,
    task: tokio::task::JoinHandle<Option<LiveUpload>>,
}

impl Tee {
    /// Starts feeding `upload` on its own task.
    pub(crate) fn start(mut upload: LiveUpload) -> Tee {
        let (sender, mut receiver) = mpsc::channel::<Bytes>(TEE_QUEUE);
        let task = tokio::spawn(async move {
            while let Some(bytes) = receiver.recv().await {
                if upload.writer.write_all(&bytes).await.is_err() {
                    // Dropping the writer deletes what it staged.
                    return None;
                }
            }
            Some(upload)
        });
        Tee {
            sender: Some(sender),
            task,
        }
    }

    /// Hands a body chunk to the live writer; after a failure, quietly does nothing (the
    /// fast path is lost, the request is not).
    pub(crate) async fn send(&mut self, bytes: &Bytes) {
        if let Some(sender) = &self.sender
            && sender.send(bytes.clone()).await.is_err()
        {
            self.sender = None;
        }
    }

    /// Waits for the live writer to take everything sent; `None` if it failed.
    pub(crate) async fn finish(mut self) -> Option<LiveUpload> {
        let complete = self.sender.take().is_some();
        let upload = self.task.await.ok().flatten()?;
        complete.then_some(upload)
    }

    /// Abandons the live writer (its staged bytes are deleted).
    pub(crate) fn abandon(mut self) {
        self.sender = None;
        self.task.abort();
    }
}
