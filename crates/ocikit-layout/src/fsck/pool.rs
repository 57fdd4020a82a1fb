//! The worker pool of [`Layout::fsck`](crate::Layout::fsck): blocking threads sharing one
//! queue of items.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Tells a pool's workers to take no further items when dropped: when `fsck` is cancelled,
/// they stop after the blob at hand.
pub(super) struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Runs `job` on every item, taken in `order` (indexes into `items`), on `workers` blocking
/// threads that share one queue; each worker passes one buffer to all its jobs. Returns the
/// results by item index, `None` for items whose worker failed.
pub(super) async fn on_workers<I, T, F>(
    items: Arc<Vec<I>>,
    order: Vec<usize>,
    workers: usize,
    job: F,
) -> Vec<Option<T>>
where
    I: Send + Sync + 'static,
    T: Send + 'static,
    F: Fn(&I, &mut Vec<u8>) -> T + Send + Sync + 'static,
{
    let mut results: Vec<Option<T>> = std::iter::repeat_with(|| None).take(items.len()).collect();
    if items.is_empty() {
        return results;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_on_drop = StopOnDrop(stop.clone());
    let queue = Arc::new((order, AtomicUsize::new(0)));
    let job = Arc::new(job);
    let handles: Vec<_> = (0..workers.clamp(1, items.len()))
        .map(|_| {
            let (items, queue, job, stop) =
                (items.clone(), queue.clone(), job.clone(), stop.clone());
            tokio::task::spawn_blocking(move || {
                let mut buf = Vec::new();
                let mut done = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let (order, next) = &*queue;
                    let taken = next.fetch_add(1, Ordering::Relaxed);
                    let Some((i, item)) = order.get(taken).and_then(|&i| Some((i, items.get(i)?)))
                    else {
                        break;
                    };
                    done.push((i, job(item, &mut buf)));
                }
                done
            })
        })
        .collect();
    for handle in handles {
        if let Ok(done) = handle.await {
            for (i, result) in done {
                if let Some(slot) = results.get_mut(i) {
                    *slot = Some(result);
                }
            }
        }
    }
    results
}

/// [`on_workers`] for jobs that take their item: each item is moved to the worker that
/// takes it from the queue, and freed there rather than on the caller's thread. `None` for
/// items whose worker failed.
pub(super) async fn on_workers_taking<I, T, F>(
    items: Vec<I>,
    order: Vec<usize>,
    workers: usize,
    job: F,
) -> Vec<Option<T>>
where
    I: Send + 'static,
    T: Send + 'static,
    F: Fn(I, &mut Vec<u8>) -> T + Send + Sync + 'static,
{
    let slots: Vec<Mutex<Option<I>>> = items.into_iter().map(|i| Mutex::new(Some(i))).collect();
    on_workers(
        Arc::new(slots),
        order,
        workers,
        move |slot: &Mutex<Option<I>>, buf: &mut Vec<u8>| {
            // Each slot is taken once (the queue hands every index out once).
            let item = slot.lock().ok().and_then(|mut slot| slot.take());
            item.map(|item| job(item, buf))
        },
    )
    .await
    .into_iter()
    .map(Option::flatten)
    .collect()
}

/// Takes back the items handed to [`on_workers`] (whose workers are done with them).
pub(super) fn take_back<I: Clone>(items: Arc<Vec<I>>) -> Vec<I> {
    Arc::try_unwrap(items).unwrap_or_else(|shared| (*shared).clone())
}
