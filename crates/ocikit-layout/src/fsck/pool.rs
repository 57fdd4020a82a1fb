//! The worker pool of [`Layout::fsck`](crate::Layout::fsck) on a store with local files:
//! blocking threads that live for the whole fsck and share one queue, documents first.
//!
//! The walk hands the pool documents in chunks (read, verified and parsed on a worker; the
//! chunk's results come back in one message, so the walk wakes once a chunk, not once a
//! document) and blobs to hash as soon as it reaches them, so that no worker waits for a
//! level of the walk to end. Documents are taken before blobs: the walk learns early what
//! the next level holds. Blob results stay on their worker until the pool is finished.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use ocikit_codec::Limits;
use ocikit_store::LocalBlobs;
use tokio::sync::mpsc;

use super::read::{DocumentRead, check_local, read_document, worker_failed, worker_failed_error};
use super::walk::{BlobCheck, Judged, Wanted};
use crate::progress::Progress;

/// Most documents in one chunk.
const CHUNK_DOCUMENTS: usize = 16;
/// A worker takes queued blobs until they add up to this many declared bytes (or
/// [`BATCH_BLOBS`] of them): one lock for several small blobs, one blob when large.
const BATCH_BYTES: u64 = 64 << 10;
/// Most blobs a worker takes at once.
const BATCH_BLOBS: usize = 8;

/// One document read by a worker, with what reading it found.
pub(super) type DocumentDone = (Wanted, DocumentRead);

/// One blob hashed by a worker: its index in the walk's pending blobs, what checking it
/// found and its stored size (when stored).
pub(super) type BlobDone = (usize, Judged, Option<u64>);

/// What the workers need besides their jobs.
pub(super) struct Context {
    pub(super) files: Arc<dyn LocalBlobs>,
    pub(super) limits: Limits,
    pub(super) progress: Progress,
    /// The walk's document size limit.
    pub(super) max_document_size: u64,
    /// Read each manifest's image config too (for its diffIDs).
    pub(super) configs: bool,
}

#[derive(Default)]
struct Queue {
    documents: VecDeque<(usize, Vec<Wanted>)>,
    blobs: VecDeque<(usize, BlobCheck)>,
    /// No more jobs will come: workers leave once the queue is empty.
    closed: bool,
    /// Workers waiting for a job (woken only when there are some: a notify costs a syscall).
    waiting: usize,
}

struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
    /// Set when the pool is dropped (fsck cancelled): workers stop after the job at hand.
    stop: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

enum Job {
    Documents(usize, Vec<Wanted>),
    Blobs(Vec<(usize, BlobCheck)>),
}

/// The pool; dropping it stops the workers after the job at hand.
pub(super) struct Pool {
    shared: Arc<Shared>,
    workers: Vec<tokio::task::JoinHandle<Vec<BlobDone>>>,
    results: mpsc::UnboundedReceiver<(usize, Vec<DocumentDone>)>,
    /// Chunks of documents handed out so far.
    chunks: usize,
    /// Workers, for the chunk size.
    count: usize,
}

impl Pool {
    /// Starts `workers` (at least one) blocking workers.
    pub(super) fn start(workers: usize, context: Context) -> Pool {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            ready: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let (sender, results) = mpsc::unbounded_channel();
        let context = Arc::new(context);
        let count = workers.max(1);
        let workers = (0..count)
            .map(|_| {
                let (shared, sender, context) = (shared.clone(), sender.clone(), context.clone());
                tokio::task::spawn_blocking(move || work(&shared, &sender, &context))
            })
            .collect();
        Pool {
            shared,
            workers,
            results,
            chunks: 0,
            count,
        }
    }

    /// Hands out `documents` in chunks; returns how many chunks were handed out in all.
    pub(super) fn documents(&mut self, documents: Vec<Wanted>) -> usize {
        if documents.is_empty() {
            return self.chunks;
        }
        // Small levels are spread over every worker; large ones go in chunks of at most
        // CHUNK_DOCUMENTS.
        let size = (documents.len() / (2 * self.count)).clamp(1, CHUNK_DOCUMENTS);
        let mut chunks = Vec::with_capacity(documents.len().div_ceil(size));
        let mut documents = documents.into_iter().peekable();
        while documents.peek().is_some() {
            chunks.push((self.chunks, documents.by_ref().take(size).collect()));
            self.chunks += 1;
        }
        let mut queue = self.shared.lock();
        queue.documents.extend(chunks);
        self.wake(queue);
        self.chunks
    }

    /// Hands out blobs to hash (each with its index in the walk's pending blobs).
    pub(super) fn blobs(&self, blobs: impl IntoIterator<Item = (usize, BlobCheck)>) {
        let mut queue = self.shared.lock();
        let before = queue.blobs.len();
        queue.blobs.extend(blobs);
        if queue.blobs.len() > before {
            self.wake(queue);
        }
    }

    fn wake(&self, queue: MutexGuard<'_, Queue>) {
        let waiting = queue.waiting;
        drop(queue);
        match waiting {
            0 => {}
            1 => self.shared.ready.notify_one(),
            _ => self.shared.ready.notify_all(),
        }
    }

    /// The next chunk of documents read, as `(chunk, results)`, in any order; `None` when
    /// every worker is gone (which a worker never does while there are documents: a job
    /// that panics is answered as failed).
    pub(super) async fn next_documents(&mut self) -> Option<(usize, Vec<DocumentDone>)> {
        self.results.recv().await
    }

    /// Lets the workers hash what is queued and leave; what they hashed, or `None` when a
    /// worker went away without answering (its results are lost).
    pub(super) async fn finish(mut self) -> Option<Vec<BlobDone>> {
        {
            let mut queue = self.shared.lock();
            queue.closed = true;
            drop(queue);
            self.shared.ready.notify_all();
        }
        let mut done = Vec::new();
        let mut complete = true;
        for worker in std::mem::take(&mut self.workers) {
            match worker.await {
                Ok(hashed) if done.is_empty() => done = hashed,
                Ok(hashed) => done.extend(hashed),
                Err(_) => complete = false,
            }
        }
        complete.then_some(done)
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        let mut queue = self.shared.lock();
        queue.closed = true;
        drop(queue);
        self.shared.ready.notify_all();
    }
}

/// Takes the next job: documents first, then a batch of blobs; `None` when the pool is
/// closed and empty, or stopped.
fn next_job(shared: &Shared) -> Option<Job> {
    let mut queue = shared.lock();
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            return None;
        }
        if let Some((chunk, documents)) = queue.documents.pop_front() {
            return Some(Job::Documents(chunk, documents));
        }
        if let Some(first) = queue.blobs.pop_front() {
            let mut bytes = first.1.first.0;
            let mut batch = Vec::with_capacity(BATCH_BLOBS);
            batch.push(first);
            while batch.len() < BATCH_BLOBS && bytes < BATCH_BYTES {
                let Some(next) = queue.blobs.pop_front() else {
                    break;
                };
                bytes = bytes.saturating_add(next.1.first.0);
                batch.push(next);
            }
            return Some(Job::Blobs(batch));
        }
        if queue.closed {
            return None;
        }
        queue.waiting += 1;
        queue = shared
            .ready
            .wait(queue)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        queue.waiting -= 1;
    }
}

/// One worker: jobs until the pool is closed and empty. Each worker passes one buffer to
/// all its blobs; a job that panics fails its own items alone, and says so.
fn work(
    shared: &Shared,
    results: &mpsc::UnboundedSender<(usize, Vec<DocumentDone>)>,
    context: &Context,
) -> Vec<BlobDone> {
    let mut buf = Vec::new();
    // Room for the results of a few thousand small blobs, grown rarely after.
    let mut done = Vec::with_capacity(4096);
    while let Some(job) = next_job(shared) {
        match job {
            Job::Documents(chunk, documents) => {
                let read: Vec<DocumentDone> = documents
                    .into_iter()
                    .map(|wanted| {
                        let read = std::panic::catch_unwind(AssertUnwindSafe(|| {
                            read_document(context, &wanted)
                        }))
                        .unwrap_or_else(|_| (None, Err(worker_failed_error()), None));
                        (wanted, read)
                    })
                    .collect();
                // The walk may be gone (fsck cancelled): nothing to tell then.
                let _ = results.send((chunk, read));
            }
            Job::Blobs(batch) => {
                for (index, check) in batch {
                    let checked = std::panic::catch_unwind(AssertUnwindSafe(|| {
                        check_local(
                            &*context.files,
                            &check,
                            context.limits,
                            &context.progress,
                            &mut buf,
                        )
                    }))
                    .unwrap_or_else(|_| (Err(worker_failed()), None));
                    let stored = checked.1;
                    done.push((index, check.judge(checked), stored));
                }
            }
        }
    }
    done
}
