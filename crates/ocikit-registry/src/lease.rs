//! One garbage collector at a time across every registry process sharing a store: a lease
//! document ([`LEASE_KEY`]) changed only by compare-and-swap.
//!
//! # The lease document
//!
//! ```text
//! _registry/gc/lease   {"holder":"<id>","acquired_ms":N,"expires_ms":N}
//! ```
//!
//! A collector ([`crate::Registry::gc`]) takes the lease before it deletes anything:
//!
//! - **absent**: it writes the document on the condition that it still does not exist;
//! - **not expired** (`expires_ms` is later than now by the lease's clock), whoever holds it
//!   (two registries of one process share the default holder id, and must still exclude
//!   each other): the collection is refused ([`GcLeaseError::Held`], naming the holder);
//! - **expired** (its holder died, or stopped renewing): it writes its own record on the
//!   condition that the document is still the version it read; the report names the holder
//!   it took over from (when it was another);
//! - **not a lease** (not the JSON above, an empty holder, an expiry before the acquisition or
//!   further after it than [`MAX_LEASE_TTL`]): the collection is refused
//!   ([`GcLeaseError::Corrupt`]) and the document is left alone; an operator removes it
//!   once no collector runs.
//!
//! Losing a compare-and-swap means another collector came first: the document is read again
//! and judged again.
//!
//! While collecting, the holder renews the lease every quarter of its TTL (again by
//! compare-and-swap on the version it wrote), and before each deletion checks that it still
//! holds it: that its last renewal succeeded less than three quarters of the TTL ago (by the
//! local monotonic clock, measured from when the renewal was sent) and that no renewal found
//! the document taken by another holder. Otherwise the collection stops with
//! [`GcLeaseError::Lost`] before deleting anything more. The quarter of the TTL between the
//! holder's own deadline and the expiry others judge by is the allowance for clock skew
//! between machines: the TTL must be at least four times the largest skew (the default,
//! one minute, allows 15 s). When the collection ends (or fails) the lease is released:
//! deleted on the condition that it is still the version last written. A collection
//! abandoned mid-way (its future dropped) releases it from a background task; a process that
//! dies leaves it to expire.
//!
//! A holder is named by [`LeaseOptions::holder`]; by default the host name (where the
//! environment's `HOSTNAME` says it), the process id and a random suffix, the same for every
//! collection of one process.
//!
//! # Cost
//!
//! On S3: a collection adds one GET and one conditional PUT to take the lease, one
//! conditional PUT per renewal (every TTL/4), and one HEAD and one conditional DELETE to
//! release it.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use ocikit_store::{DocumentKey, Precondition, Store, Version};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::{Clock, Error, Result};

/// The lease document's key in the content store.
pub const LEASE_KEY: &str = "_registry/gc/lease";

/// The longest TTL a lease may have; a lease document claiming a longer one is corrupt.
pub const MAX_LEASE_TTL: Duration = Duration::from_secs(3600);

/// Longest holder id accepted, in bytes.
pub const MAX_HOLDER_LEN: usize = 256;

/// How often taking the lease is retried after losing a compare-and-swap to another
/// collector (each retry reads the document again, so a collector that keeps losing is
/// refused as [`GcLeaseError::Held`] by whoever won).
const MAX_ACQUIRE_ATTEMPTS: usize = 8;

/// How a collector takes and keeps the lease (see the [module docs](self)).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct LeaseOptions {
    /// Who holds it: written in the document, named in refusals (default: host name,
    /// process id and a random suffix, the same for every collection of this process).
    pub holder: String,
    /// How long the lease lasts without a renewal (default one minute, at most
    /// [`MAX_LEASE_TTL`]). A collector whose holder died blocks others this long at most.
    pub ttl: Duration,
    /// The clock expiries are written and judged by (default the system clock).
    pub clock: Clock,
}

impl Default for LeaseOptions {
    fn default() -> LeaseOptions {
        LeaseOptions {
            holder: process_holder().to_owned(),
            ttl: Duration::from_secs(60),
            clock: Clock::system(),
        }
    }
}

impl LeaseOptions {
    /// The defaults: this process's holder id, a one-minute TTL, the system clock.
    pub fn new() -> LeaseOptions {
        LeaseOptions::default()
    }

    /// Sets [`LeaseOptions::holder`].
    pub fn holder(mut self, holder: impl Into<String>) -> LeaseOptions {
        self.holder = holder.into();
        self
    }

    /// Sets [`LeaseOptions::ttl`].
    pub fn ttl(mut self, ttl: Duration) -> LeaseOptions {
        self.ttl = ttl;
        self
    }

    /// Sets [`LeaseOptions::clock`].
    pub fn clock(mut self, clock: Clock) -> LeaseOptions {
        self.clock = clock;
        self
    }

    fn check(&self) -> std::result::Result<(), GcLeaseError> {
        let invalid = |reason: &str| GcLeaseError::InvalidOptions {
            reason: reason.to_owned(),
        };
        if self.holder.is_empty() {
            return Err(invalid("the holder id is empty"));
        }
        if self.holder.len() > MAX_HOLDER_LEN {
            return Err(invalid("the holder id is longer than 256 bytes"));
        }
        if self.holder.chars().any(char::is_control) {
            return Err(invalid("the holder id has a control character"));
        }
        if self.ttl < Duration::from_millis(100) {
            return Err(invalid("the TTL is shorter than 100 ms"));
        }
        if self.ttl > MAX_LEASE_TTL {
            return Err(invalid("the TTL is longer than an hour"));
        }
        Ok(())
    }
}

/// This process's default holder id.
fn process_holder() -> &'static str {
    static HOLDER: OnceLock<String> = OnceLock::new();
    HOLDER.get_or_init(|| {
        let host: String = std::env::var("HOSTNAME")
            .unwrap_or_default()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
            .take(64)
            .collect();
        let host = if host.is_empty() { "host".into() } else { host };
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        format!("{host}-{}-{}", std::process::id(), &suffix[..8])
    })
}

/// Why the lease was not taken or not kept (in [`Error::GcLease`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GcLeaseError {
    /// Another collector holds the lease and it has not expired: this collection deleted
    /// nothing.
    #[error(
        "another garbage collector, `{holder}`, holds the lease `{LEASE_KEY}` for {remaining_ms} ms more"
    )]
    Held {
        /// The holder's id.
        holder: String,
        /// When its lease expires unless renewed, in milliseconds since the Unix epoch.
        expires_ms: u64,
        /// How long that is from now, by the lease's clock.
        remaining_ms: u64,
    },
    /// The lease document is not a lease: nothing was collected, and the document was
    /// left as it is (remove it once no collector runs).
    #[error("the garbage collection lease `{LEASE_KEY}` is corrupt: {reason}")]
    Corrupt {
        /// What is wrong with it.
        reason: String,
    },
    /// This collector stopped holding the lease while collecting (a renewal found another
    /// holder, or renewals failed for longer than the lease allows): it stopped before its
    /// next deletion.
    #[error("garbage collector `{holder}` lost the lease `{LEASE_KEY}`{}", lost_to(.taken_by))]
    Lost {
        /// This collector's id.
        holder: String,
        /// The holder that took it over, when a renewal saw one.
        taken_by: Option<String>,
    },
    /// [`LeaseOptions`] that cannot be honoured.
    #[error("invalid lease options: {reason}")]
    InvalidOptions {
        /// What is wrong.
        reason: String,
    },
}

fn lost_to(holder: &Option<String>) -> String {
    match holder {
        Some(h) => format!(" to `{h}`"),
        None => " (its renewals did not reach the store in time)".to_owned(),
    }
}

/// The lease document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    holder: String,
    acquired_ms: u64,
    expires_ms: u64,
}

impl Record {
    fn parse(bytes: &[u8]) -> std::result::Result<Record, GcLeaseError> {
        let corrupt = |reason: String| GcLeaseError::Corrupt { reason };
        let record: Record = serde_json::from_slice(bytes)
            .map_err(|e| corrupt(format!("not a lease document: {e}")))?;
        if record.holder.is_empty()
            || record.holder.len() > MAX_HOLDER_LEN
            || record.holder.chars().any(char::is_control)
        {
            return Err(corrupt(
                "its holder id is empty, too long or not printable".into(),
            ));
        }
        if record.expires_ms < record.acquired_ms {
            return Err(corrupt("it expires before it was acquired".into()));
        }
        let max_ttl_ms = u64::try_from(MAX_LEASE_TTL.as_millis()).unwrap_or(u64::MAX);
        if record.expires_ms - record.acquired_ms > max_ttl_ms {
            return Err(corrupt(format!(
                "it claims {} ms, more than the longest lease ({max_ttl_ms} ms)",
                record.expires_ms - record.acquired_ms
            )));
        }
        Ok(record)
    }

    fn bytes(&self) -> Bytes {
        // A struct of strings and integers always serialises.
        Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }
}

fn key() -> Result<DocumentKey> {
    Ok(DocumentKey::new(LEASE_KEY)?)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// What the holder knows about its lease, shared with the renewing task.
#[derive(Debug)]
struct State {
    /// The version last written.
    version: Version,
    /// When the holder stops trusting its lease unless renewed (3/4 of the TTL after the
    /// last successful write was sent).
    deadline: Instant,
    /// Set when a renewal found the document changed: the holder that took it, if any.
    lost: Option<Option<String>>,
}

/// The garbage collection lease, held: renewed in the background until released or
/// dropped. See the [module docs](self).
#[derive(Debug)]
pub struct GcLease {
    store: Arc<dyn Store>,
    holder: String,
    acquired_ms: u64,
    taken_over_from: Option<String>,
    state: Arc<Mutex<State>>,
    renewer: Option<tokio::task::JoinHandle<()>>,
}

impl GcLease {
    /// Takes the lease in `store` as `options.holder`, or refuses ([`GcLeaseError::Held`],
    /// [`GcLeaseError::Corrupt`], [`GcLeaseError::InvalidOptions`], in [`Error::GcLease`]);
    /// then renews it every quarter of its TTL on a task of the current tokio runtime
    /// until [`GcLease::release`] or drop.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime (as `tokio::spawn` does).
    pub async fn acquire(store: Arc<dyn Store>, options: &LeaseOptions) -> Result<GcLease> {
        options.check()?;
        let key = key()?;
        let ttl_ms = millis(options.ttl);
        let mut last_holder = None;
        for _ in 0..MAX_ACQUIRE_ATTEMPTS {
            let now_ms = options.clock.now_unix_ms();
            let current = store.read_document(&key).await?;
            let (precondition, previous) = match &current {
                None => (Precondition::MustNotExist, None),
                Some(doc) => {
                    let record = Record::parse(&doc.bytes)?;
                    if record.expires_ms > now_ms {
                        return Err(GcLeaseError::Held {
                            remaining_ms: record.expires_ms - now_ms,
                            holder: record.holder,
                            expires_ms: record.expires_ms,
                        }
                        .into());
                    }
                    let previous = (record.holder != options.holder).then_some(record.holder);
                    (Precondition::Matches(doc.version.clone()), previous)
                }
            };
            let record = Record {
                holder: options.holder.clone(),
                acquired_ms: now_ms,
                expires_ms: now_ms.saturating_add(ttl_ms),
            };
            let sent = Instant::now();
            match store
                .write_document(&key, record.bytes(), precondition)
                .await
            {
                Ok(version) => {
                    let state = Arc::new(Mutex::new(State {
                        version,
                        deadline: sent + options.ttl * 3 / 4,
                        lost: None,
                    }));
                    let renewer =
                        tokio::spawn(renew(store.clone(), options.clone(), now_ms, state.clone()));
                    return Ok(GcLease {
                        store,
                        holder: options.holder.clone(),
                        acquired_ms: now_ms,
                        taken_over_from: previous,
                        state,
                        renewer: Some(renewer),
                    });
                }
                // Another collector came first: judge the document again.
                Err(ocikit_store::Error::Conflict { .. }) => last_holder = previous,
                Err(e) => return Err(e.into()),
            }
        }
        // Still losing: someone else keeps taking it.
        let now_ms = options.clock.now_unix_ms();
        Err(GcLeaseError::Held {
            holder: last_holder.unwrap_or_else(|| "another collector".to_owned()),
            expires_ms: now_ms.saturating_add(ttl_ms),
            remaining_ms: ttl_ms,
        }
        .into())
    }

    /// This holder's id.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// When the lease was taken, in milliseconds since the Unix epoch (by the lease's clock).
    pub fn acquired_ms(&self) -> u64 {
        self.acquired_ms
    }

    /// The holder whose expired lease this one took over, if any.
    pub fn taken_over_from(&self) -> Option<&str> {
        self.taken_over_from.as_deref()
    }

    /// Whether this collector may still delete: `Err(`[`GcLeaseError::Lost`]`)` once a
    /// renewal found another holder, or once three quarters of the TTL passed since the
    /// last successful renewal was sent.
    pub fn check(&self) -> std::result::Result<(), GcLeaseError> {
        let lost = |taken_by| GcLeaseError::Lost {
            holder: self.holder.clone(),
            taken_by,
        };
        let Ok(state) = self.state.lock() else {
            return Err(lost(None));
        };
        if let Some(taken_by) = &state.lost {
            return Err(lost(taken_by.clone()));
        }
        if Instant::now() >= state.deadline {
            return Err(lost(None));
        }
        Ok(())
    }

    /// Stops renewing and deletes the lease document if it is still the version this
    /// holder last wrote (a lease taken over meanwhile is left to its new holder).
    pub async fn release(mut self) -> Result<()> {
        if let Some(renewer) = self.renewer.take() {
            renewer.abort();
        }
        let version = self.version();
        release(self.store.as_ref(), version, &self.holder, self.acquired_ms).await
    }

    fn version(&self) -> Option<Version> {
        self.state
            .lock()
            .ok()
            .filter(|s| s.lost.is_none())
            .map(|s| s.version.clone())
    }
}

impl Drop for GcLease {
    fn drop(&mut self) {
        let Some(renewer) = self.renewer.take() else {
            return; // released
        };
        renewer.abort();
        // Abandoned (a collection's future dropped, or a failed one): released in the
        // background where a runtime runs; otherwise it expires.
        let version = self.version();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let store = self.store.clone();
            let (holder, acquired_ms) = (self.holder.clone(), self.acquired_ms);
            runtime.spawn(async move {
                release(store.as_ref(), version, &holder, acquired_ms)
                    .await
                    .ok();
            });
        }
    }
}

/// How many times a release looks again at a lease document that changed under it.
const RELEASE_ATTEMPTS: usize = 3;

/// Deletes the lease document if it is still this holder's (`holder` with `acquired_ms`):
/// the version last written, or, when that changed, a later version this holder wrote. A
/// renewal stopped while its write was in flight may still have landed (the store took the
/// request, the answer was dropped with the task), leaving a version the holder never
/// learned; such a document is still this holder's and is deleted too. A lease taken over
/// meanwhile (another holder, or another acquisition) is left to its new holder.
async fn release(
    store: &dyn Store,
    version: Option<Version>,
    holder: &str,
    acquired_ms: u64,
) -> Result<()> {
    let Some(mut version) = version else {
        return Ok(());
    };
    let key = key()?;
    for _ in 0..RELEASE_ATTEMPTS {
        match store
            .delete_document(&key, Precondition::Matches(version))
            .await
        {
            Ok(_) => return Ok(()),
            Err(ocikit_store::Error::Conflict { .. }) => {}
            Err(e) => return Err(Error::Store(e)),
        }
        let Some(doc) = store.read_document(&key).await? else {
            return Ok(()); // gone already
        };
        match Record::parse(&doc.bytes) {
            Ok(record) if record.holder == holder && record.acquired_ms == acquired_ms => {
                version = doc.version;
            }
            // Someone else's now, or not a lease: not this holder's to delete.
            _ => return Ok(()),
        }
    }
    // Still changing under this release: left to expire.
    Ok(())
}

/// The renewing task: every quarter of the TTL, rewrites the record with a later expiry, on
/// the condition that the document is still the version last written.
async fn renew(
    store: Arc<dyn Store>,
    options: LeaseOptions,
    acquired_ms: u64,
    state: Arc<Mutex<State>>,
) {
    let Ok(key) = key() else { return };
    let every = options.ttl / 4;
    loop {
        tokio::time::sleep(every).await;
        let Some(version) = state.lock().ok().map(|s| s.version.clone()) else {
            return;
        };
        let now_ms = options.clock.now_unix_ms();
        let record = Record {
            holder: options.holder.clone(),
            acquired_ms,
            expires_ms: now_ms.saturating_add(millis(options.ttl)),
        };
        let sent = Instant::now();
        match store
            .write_document(&key, record.bytes(), Precondition::Matches(version))
            .await
        {
            Ok(version) => {
                if let Ok(mut s) = state.lock() {
                    s.version = version;
                    s.deadline = sent + options.ttl * 3 / 4;
                }
            }
            Err(ocikit_store::Error::Conflict { .. }) => {
                // Someone else's now (or deleted): who, if the document says.
                let taken_by = match store.read_document(&key).await {
                    Ok(Some(doc)) => Record::parse(&doc.bytes).ok().map(|r| r.holder),
                    _ => None,
                };
                if let Ok(mut s) = state.lock() {
                    s.lost = Some(taken_by);
                }
                return;
            }
            // A store that fails now may answer at the next tick; meanwhile the deadline
            // is not moved, so the collector stops if it does not.
            Err(e) => {
                tracing::warn!(error = %crate::error_chain(&e), "renewing the garbage collection lease failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use ocikit_store::{MemoryStore, StoreExt};

    fn store() -> Arc<dyn Store> {
        Arc::new(MemoryStore::new())
    }

    fn options(holder: &str) -> LeaseOptions {
        LeaseOptions::new()
            .holder(holder)
            .ttl(Duration::from_secs(2))
    }

    async fn record(store: &dyn Store) -> Option<Record> {
        let doc = store.read_document(&key().unwrap()).await.unwrap()?;
        Some(Record::parse(&doc.bytes).unwrap())
    }

    #[tokio::test]
    async fn one_holder_at_a_time_and_release_frees_it() {
        let store = store();
        let a = GcLease::acquire(store.clone(), &options("a"))
            .await
            .unwrap();
        assert_eq!(a.taken_over_from(), None);
        a.check().unwrap();
        let err = GcLease::acquire(store.clone(), &options("b"))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::GcLease(GcLeaseError::Held { holder, remaining_ms, .. })
                if holder == "a" && *remaining_ms <= 2000),
            "{err:?}"
        );
        assert_eq!(record(store.as_ref()).await.unwrap().holder, "a");
        a.release().await.unwrap();
        assert_eq!(record(store.as_ref()).await, None);
        let b = GcLease::acquire(store.clone(), &options("b"))
            .await
            .unwrap();
        assert_eq!(b.holder(), "b");
        b.release().await.unwrap();
    }

    /// Two collectors with one holder id (two registries of one process) exclude each
    /// other too.
    #[tokio::test]
    async fn one_holder_id_twice_is_still_one_at_a_time() {
        let store = store();
        let first = GcLease::acquire(store.clone(), &LeaseOptions::new())
            .await
            .unwrap();
        let err = GcLease::acquire(store.clone(), &LeaseOptions::new())
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::GcLease(GcLeaseError::Held { .. })),
            "{err:?}"
        );
        first.release().await.unwrap();
        GcLease::acquire(store, &LeaseOptions::new())
            .await
            .unwrap()
            .release()
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn an_expired_lease_is_taken_over_and_its_old_holder_learns_it_lost() {
        let store = store();
        let clock = ocikit_testkit::ManualClock::starting_now();
        let slow = LeaseOptions::new()
            .holder("dead")
            .ttl(Duration::from_secs(60))
            .clock(Clock::from_fn(clock.reader()));
        let dead = GcLease::acquire(store.clone(), &slow).await.unwrap();
        // The holder stops renewing (its process hangs); a minute and more later by the
        // clock, another takes over.
        let expired_at = record(store.as_ref()).await.unwrap().expires_ms;
        clock.advance(Duration::from_secs(61));
        let next = LeaseOptions::new()
            .holder("next")
            .ttl(Duration::from_millis(400))
            .clock(Clock::from_fn(clock.reader()));
        let taken = GcLease::acquire(store.clone(), &next).await.unwrap();
        assert_eq!(taken.taken_over_from(), Some("dead"));
        let now = record(store.as_ref()).await.unwrap();
        assert_eq!(now.holder, "next");
        assert!(now.expires_ms > expired_at);
        // The old holder, when it renews, finds the document changed and stops.
        let guard = dead;
        guard.state.lock().unwrap().deadline = Instant::now() + Duration::from_secs(60);
        let renewer = tokio::spawn(renew(
            store.clone(),
            slow.clone().ttl(Duration::from_millis(100)),
            0,
            guard.state.clone(),
        ));
        renewer.await.unwrap();
        let err = guard.check().unwrap_err();
        assert_eq!(
            err,
            GcLeaseError::Lost {
                holder: "dead".into(),
                taken_by: Some("next".into())
            }
        );
        // Releasing a lost lease leaves the new holder's document alone.
        guard.release().await.unwrap();
        assert_eq!(record(store.as_ref()).await.unwrap().holder, "next");
        // The new holder renews: its expiry moves on while it holds the lease.
        let before = record(store.as_ref()).await.unwrap().expires_ms;
        tokio::time::sleep(Duration::from_millis(50)).await;
        clock.advance(Duration::from_secs(1));
        tokio::time::sleep(Duration::from_millis(200)).await;
        taken.check().unwrap();
        assert!(record(store.as_ref()).await.unwrap().expires_ms > before);
        taken.release().await.unwrap();
    }

    #[tokio::test]
    async fn a_holder_whose_renewals_fail_stops_trusting_its_lease() {
        let store = store();
        let lease = GcLease::acquire(store.clone(), &options("a").ttl(Duration::from_millis(200)))
            .await
            .unwrap();
        lease.check().unwrap();
        // No renewals (as if the store stopped answering): after 3/4 of the TTL, lost.
        lease.renewer.as_ref().unwrap().abort();
        tokio::time::sleep(Duration::from_millis(160)).await;
        assert!(matches!(
            lease.check(),
            Err(GcLeaseError::Lost { taken_by: None, .. })
        ));
    }

    #[tokio::test]
    async fn garbage_is_refused_and_left_alone() {
        let store = store();
        let cases: [(&[u8], &str); 6] = [
            (b"not json", "not a lease document"),
            (br#"{"holder":"a","acquired_ms":1}"#, "not a lease document"),
            (
                br#"{"holder":"a","acquired_ms":1,"expires_ms":2,"extra":1}"#,
                "not a lease document",
            ),
            (
                br#"{"holder":"","acquired_ms":1,"expires_ms":2}"#,
                "holder id",
            ),
            (
                br#"{"holder":"a","acquired_ms":5,"expires_ms":2}"#,
                "expires before",
            ),
            (
                br#"{"holder":"a","acquired_ms":0,"expires_ms":18446744073709551615}"#,
                "longest lease",
            ),
        ];
        let key = key().unwrap();
        for (bytes, why) in cases {
            store
                .write_document(&key, Bytes::from_static(bytes), Precondition::None)
                .await
                .unwrap();
            let err = GcLease::acquire(store.clone(), &options("b"))
                .await
                .unwrap_err();
            let Error::GcLease(GcLeaseError::Corrupt { reason }) = &err else {
                panic!("{err:?}");
            };
            assert!(reason.contains(why), "{reason}");
            assert_eq!(
                store.require_document(&key).await.unwrap().bytes,
                bytes,
                "left as it was"
            );
        }
    }

    /// A renewal whose write landed after its task was stopped (the store took it, the
    /// answer was lost) leaves a version the holder never learned: release still deletes
    /// the holder's own lease, and leaves one another holder (or another acquisition) took.
    #[tokio::test]
    async fn release_deletes_a_renewal_whose_answer_was_lost_but_not_a_newer_holder() {
        let store = store();
        let key = key().unwrap();
        let renewed_behind = |lease: &GcLease, holder: &str| Record {
            holder: holder.to_owned(),
            acquired_ms: lease.acquired_ms,
            expires_ms: lease.acquired_ms + 60_000,
        };
        // Its own renewal, landed unseen: deleted.
        let lease = GcLease::acquire(store.clone(), &options("a"))
            .await
            .unwrap();
        let landed = renewed_behind(&lease, "a");
        store
            .write_document(&key, landed.bytes(), Precondition::None)
            .await
            .unwrap();
        lease.release().await.unwrap();
        assert!(record(store.as_ref()).await.is_none());

        // Another holder's lease (or another acquisition of the same holder id): kept.
        for holder in ["b", "a"] {
            let lease = GcLease::acquire(store.clone(), &options("a"))
                .await
                .unwrap();
            let mut other = renewed_behind(&lease, holder);
            if holder == "a" {
                other.acquired_ms += 1;
            }
            store
                .write_document(&key, other.bytes(), Precondition::None)
                .await
                .unwrap();
            lease.release().await.unwrap();
            let kept = record(store.as_ref()).await.unwrap();
            assert_eq!(
                (kept.holder.as_str(), kept.acquired_ms),
                (holder, other.acquired_ms)
            );
            store
                .delete_document(&key, Precondition::None)
                .await
                .unwrap();
        }
    }

    #[tokio::test]
    async fn bad_options_are_refused() {
        let store = store();
        for (options, why) in [
            (options(""), "empty"),
            (options(&"x".repeat(300)), "longer than 256"),
            (options("a\nb"), "control"),
            (options("a").ttl(Duration::from_millis(5)), "shorter"),
            (
                options("a").ttl(Duration::from_secs(7200)),
                "longer than an hour",
            ),
        ] {
            let err = GcLease::acquire(store.clone(), &options).await.unwrap_err();
            assert!(
                matches!(&err, Error::GcLease(GcLeaseError::InvalidOptions { reason }) if reason.contains(why)),
                "{err:?}"
            );
        }
        assert_eq!(record(store.as_ref()).await, None);
    }

    #[test]
    fn the_default_holder_is_stable_per_process() {
        assert_eq!(LeaseOptions::new().holder, LeaseOptions::new().holder);
        assert!(LeaseOptions::new().check().is_ok());
    }
}
