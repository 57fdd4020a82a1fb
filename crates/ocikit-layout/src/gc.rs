//! Removing images and garbage collection.
//!
//! [`Layout::remove_image`] only edits `index.json`; the blobs go at the next
//! [`Layout::gc`], which marks everything reachable from `index.json` (nested indexes,
//! manifests, configs, layers, and the referrers of reachable manifests) and sweeps the
//! rest, except blobs written within the grace period ([`GcOptions::grace`]), which
//! another process may be about to reference.
//!
//! Safety rules: a reachable document that cannot be read or parsed (other than missing)
//! aborts the collection before anything is deleted, since its children are unknown; run
//! [`Layout::fsck`] to see why. Blobs are judged by [`ocikit_store::Store::written_at`]; a
//! writer that links an old unreferenced blob into a new image *without writing it again*
//! (as a copy that skips blobs already present does) is protected only by the re-check of
//! `index.json` just before the sweep, not by the grace period.
//!
//! On a filesystem store the collection also removes partial downloads
//! ([`ocikit_store::fs::Partials`]) not written for [`GcOptions::partials_older_than`]
//! (default a day) and not being written: what interrupted pulls left for a next run that
//! never came. Younger ones are kept, so that a pull can still resume from them.

use std::collections::HashSet;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use ocikit_digest::Digest;
use ocikit_digest::graph::{Limits, Walker};
use ocikit_digest::oci_spec::image::Descriptor;
use ocikit_store::{DocumentKey, Error as StoreError};
use serde_json::Value;

use crate::index::REF_NAME;
use crate::{Error, Index, Layout, Result};

/// Deepest nesting of indexes followed (SPEC C-L13): the one limit of
/// [`ocikit_digest::graph`].
pub const MAX_NESTING: usize = ocikit_digest::graph::MAX_DEPTH;

/// Documents read at once while marking.
const READ_CONCURRENCY: usize = 16;

/// How often the mark is redone when `index.json` changed while collecting.
const MAX_MARKS: usize = 10;

/// The document prefix under which an ocikit registry keeps its references (see
/// [`Error::ForeignReferences`]).
const REGISTRY_PREFIX: &str = "_registry";

/// The wall clock a collection judges ages by: [`ocikit_store::Clock`], the system's or one a
/// test controls (so that it moves past a grace period without waiting for it).
pub use ocikit_store::Clock;

/// Options of [`Layout::gc`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct GcOptions {
    /// Unreferenced blobs written less than this long ago are kept (default one hour).
    pub grace: Duration,
    /// Report what would be removed without removing anything.
    pub dry_run: bool,
    /// The clock that ages are measured by (default the system clock).
    pub clock: Clock,
    /// Partial downloads (filesystem stores) not written for this long are removed
    /// (default one day); a pull resumes from younger ones.
    pub partials_older_than: Duration,
}

impl Default for GcOptions {
    fn default() -> GcOptions {
        GcOptions {
            grace: Duration::from_secs(3600),
            dry_run: false,
            clock: Clock::system(),
            partials_older_than: Duration::from_secs(24 * 3600),
        }
    }
}

impl GcOptions {
    /// The default options: a one-hour grace period, deleting for real.
    pub fn new() -> GcOptions {
        GcOptions::default()
    }

    /// These options with another grace period.
    pub fn with_grace(mut self, grace: Duration) -> GcOptions {
        self.grace = grace;
        self
    }

    /// These options as a dry run (or not).
    pub fn with_dry_run(mut self, dry_run: bool) -> GcOptions {
        self.dry_run = dry_run;
        self
    }

    /// These options removing partial downloads not written for `age`.
    pub fn with_partials_older_than(mut self, age: Duration) -> GcOptions {
        self.partials_older_than = age;
        self
    }

    /// These options with ages measured by `clock`.
    pub fn with_clock(mut self, clock: Clock) -> GcOptions {
        self.clock = clock;
        self
    }
}

/// What [`Layout::gc`] did (or, in a dry run, would do).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GcReport {
    /// The blobs removed (or that would be), sorted.
    pub removed: Vec<Digest>,
    /// Their total size in bytes.
    pub removed_bytes: u64,
    /// Unreferenced blobs kept because they are younger than the grace period, sorted.
    pub kept_young: Vec<Digest>,
    /// How many distinct digests are reachable from `index.json` (stored or not).
    pub reachable: usize,
    /// Referrers documents removed (or that would be) because they no longer apply.
    pub documents_removed: Vec<DocumentKey>,
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// The partial downloads removed (or that would be) as stale, by the blob they were
    /// the beginning of, sorted (see [`GcOptions::partials_older_than`]).
    pub partials_removed: Vec<Digest>,
    /// The bytes they held.
    pub partials_removed_bytes: u64,
}

fn ref_name(entry: &Value) -> Option<&str> {
    entry.get("annotations")?.get(REF_NAME)?.as_str()
}

/// `index` without its untagged entries whose digest is in `drop`; `None` if none matched.
fn without_untagged(index: &Index, drop: &HashSet<String>) -> Result<Option<Index>> {
    let bytes = index.to_bytes()?;
    let mut value: Value = serde_json::from_slice(&bytes).map_err(|e| Error::InvalidIndex {
        reason: format!("cannot re-read the index: {e}"),
        source: None,
    })?;
    let Some(Value::Array(entries)) = value.get_mut("manifests") else {
        return Ok(None);
    };
    let before = entries.len();
    entries.retain(|e| {
        let digest = e.get("digest").and_then(Value::as_str).unwrap_or_default();
        ref_name(e).is_some() || !drop.contains(digest)
    });
    if entries.len() == before {
        return Ok(None);
    }
    let bytes = serde_json::to_vec(&value).map_err(|e| Error::InvalidIndex {
        reason: format!("cannot serialise the index: {e}"),
        source: None,
    })?;
    Index::parse(&bytes).map(Some)
}

impl Layout {
    /// Removes the image `tag` names: the tag goes, and when no other tag names the same
    /// digest, so do the untagged entries of that digest and of the artifacts attached to it
    /// (transitively; they would be left with a dangling subject). Returns the descriptor the
    /// tag pointed at, or `None` when there was no such tag. The blobs stay until
    /// [`Layout::gc`].
    pub async fn remove_image(&self, tag: &str) -> Result<Option<Descriptor>> {
        // No such tag: nothing to do, and nothing (not even the referrers index) written.
        if self.index().await?.find(tag).is_none() {
            return Ok(None);
        }
        let subjects = self.subjects().await?;
        let mut removed = None;
        self.edit_index(|index| {
            removed = index.find(tag).cloned();
            let Some(image) = &removed else {
                return Ok(false);
            };
            index.remove_tag(tag);
            let digest = image.digest().to_string();
            let tagged: HashSet<String> = index
                .tags()
                .into_iter()
                .map(|(_, d)| d.digest().to_string())
                .collect();
            if !tagged.contains(&digest) {
                let mut drop = HashSet::from([digest]);
                loop {
                    let more: Vec<String> = subjects
                        .iter()
                        .filter(|(r, s)| {
                            drop.contains(s) && !drop.contains(r) && !tagged.contains(r)
                        })
                        .map(|(r, _)| r.clone())
                        .collect();
                    if more.is_empty() {
                        break;
                    }
                    drop.extend(more);
                }
                if let Some(edited) = without_untagged(index, &drop)? {
                    *index = edited;
                }
            }
            Ok(true)
        })
        .await?;
        self.sync_referrers().await?;
        Ok(removed)
    }

    /// Removes the untagged `index.json` entries of `digest` (an artifact attached with
    /// [`Layout::attach`]); returns whether there were any. Tagged entries are left alone.
    pub async fn detach(&self, digest: &Digest) -> Result<bool> {
        let drop = HashSet::from([digest.to_string()]);
        let mut changed = false;
        self.edit_index(|index| {
            changed = false;
            if let Some(edited) = without_untagged(index, &drop)? {
                *index = edited;
                changed = true;
            }
            Ok(changed)
        })
        .await?;
        self.sync_referrers().await?;
        Ok(changed)
    }

    /// Every blob reachable from `index.json`, and the `index.json` bytes it was marked from.
    async fn mark(&self) -> Result<(HashSet<Digest>, bytes::Bytes)> {
        let doc = self
            .store()
            .read_document(&DocumentKey::new(crate::INDEX_JSON)?)
            .await?
            .ok_or_else(|| Error::NotALayout {
                reason: "no index.json".into(),
            })?;
        let index = Index::parse(&doc.bytes)?;
        // The one walk (`ocikit_digest::graph`), its documents read a level at a time,
        // concurrently.
        let mut walker = Walker::new(Limits::new());
        for entry in index.manifests() {
            walker.add_root(entry)?;
        }
        let subjects = self.subjects().await?;
        loop {
            loop {
                let wanted = walker.take_wanted();
                if wanted.is_empty() {
                    break;
                }
                let read: Vec<(Descriptor, Result<bytes::Bytes>)> = futures::stream::iter(wanted)
                    .map(|d| async move {
                        let bytes = self.read_blob(&d).await;
                        (d, bytes)
                    })
                    .buffer_unordered(READ_CONCURRENCY)
                    .collect()
                    .await;
                for (d, outcome) in read {
                    match outcome {
                        Ok(bytes) => {
                            walker.visit(&d, bytes)?;
                        }
                        // A missing document keeps nothing alive (SPEC A.4: blobs may be
                        // missing).
                        Err(Error::Store(StoreError::NotFound { .. })) => walker.skip(&d)?,
                        Err(e) => return Err(e),
                    }
                }
            }
            // The referrers of reachable manifests are reachable too.
            let mut more = false;
            for (referrer, subject) in &subjects {
                let (Ok(r), Ok(s)) = (Digest::parse(referrer), Digest::parse(subject)) else {
                    continue;
                };
                if walker.contains(&s) && !walker.contains(&r) {
                    let entry = index.manifests().find(|e| e.digest().as_ref() == referrer);
                    if let Some(entry) = entry {
                        walker.add_root(entry)?;
                        more = true;
                    }
                }
            }
            if !more {
                break;
            }
        }
        let marked = walker.nodes().map(|n| n.digest().clone()).collect();
        Ok((marked, doc.bytes))
    }

    /// Collects garbage: removes every blob not reachable from `index.json` and older than
    /// the grace period, and the referrers documents that no longer apply (see the module
    /// documentation for what is safe while others write).
    pub async fn gc(&self, options: &GcOptions) -> Result<GcReport> {
        let store = self.store();
        // A registry on the same store references its blobs from `_registry/` documents,
        // not from index.json: sweeping by index.json alone would delete all its content.
        if !store.list_documents(REGISTRY_PREFIX).await?.is_empty() {
            return Err(Error::ForeignReferences {
                prefix: format!("{REGISTRY_PREFIX}/"),
            });
        }
        let (mut marked, mut marked_from) = self.mark().await?;
        let mut listed: Vec<Digest> = store.list().try_collect().await?;
        listed.sort();
        let mut attempts = 1;
        loop {
            // Redo the mark if `index.json` changed meanwhile.
            let now = store
                .read_document(&DocumentKey::new(crate::INDEX_JSON)?)
                .await?
                .map(|d| d.bytes);
            if now.as_ref() == Some(&marked_from) || attempts >= MAX_MARKS {
                break;
            }
            (marked, marked_from) = self.mark().await?;
            attempts += 1;
        }
        let mut report = GcReport {
            reachable: marked.len(),
            dry_run: options.dry_run,
            ..GcReport::default()
        };
        let now = options.clock.now();
        for digest in listed.into_iter().filter(|d| !marked.contains(d)) {
            let Some(written) = store.written_at(&digest).await? else {
                continue;
            };
            // A time in the future (clock skew) counts as young.
            let young = now
                .duration_since(written)
                .map_or(true, |age| age < options.grace);
            if young {
                report.kept_young.push(digest);
                continue;
            }
            let Some(size) = store.stat(&digest).await? else {
                continue;
            };
            if options.dry_run || store.delete(&digest).await? {
                report.removed_bytes += size;
                report.removed.push(digest);
            }
        }
        report.documents_removed = self.prune_referrers(options.dry_run).await?;
        if let Some(partials) = store.partial_downloads() {
            for stale in partials
                .remove_stale(options.partials_older_than, now, options.dry_run)
                .await?
            {
                report.partials_removed_bytes += stale.size;
                report.partials_removed.push(stale.digest);
            }
        }
        Ok(report)
    }
}
