//! Online garbage collection: [`crate::Registry::gc`], safe while pushes and pulls go on.
//!
//! # What goes
//!
//! **Per repository** (every repository, or those [`GcOptions::repositories`] names):
//!
//! - With [`GcOptions::delete_untagged`], manifests that are *not kept* are deleted. Kept are
//!   the tagged manifests, manifests pushed within the grace period, and, transitively,
//!   everything a kept manifest references (an index's children) and every referrer (a
//!   manifest whose `subject` is kept). Off by default, as distribution's `--delete-untagged`.
//! - Blob links that no kept manifest of the repository references are removed, but only
//!   when the link was written (pushed or mounted) longer ago than the grace period: a client
//!   pushes its blobs *before* the manifest that references them.
//!
//! **Globally** (unless [`GcOptions::sweep_blobs`] is off), blobs of the content store that no
//! repository links, no manifest record names and no manifest references, and that were
//! written longer ago than the grace period, are deleted.
//!
//! # Why this is safe while others push
//!
//! Every link and manifest record carries the time it was last written, and every write of
//! a blob (including one that finds the blob stored already) renews the blob's
//! [`ocikit_store::Store::written_at`]. What the grace period alone cannot cover is a writer
//! that *reuses* something old: a client that found an old blob with `HEAD` and skipped
//! uploading it, or an upload that deduplicated against an old blob the collector is about
//! to delete. Those are covered by re-checking, in three places:
//!
//! 1. **Conditional deletes.** Links and manifest records are deleted only if still at the
//!    version the mark read (compare-and-swap). A push, a mount or a re-push rewrites the
//!    document (with a new time), so a delete racing it fails and the document stays.
//! 2. **Re-mark, then repair.** Before deleting in a repository the collector re-reads the
//!    repository's manifests and redoes the mark if any changed. After deleting, it reads
//!    them once more: a manifest that appeared or changed meanwhile and references an
//!    unlinked blob gets its link back, and a manifest it deleted that exists again (or is
//!    now referenced) gets its referrer entry and record back. The gap this leaves is a
//!    client that checked an *old, unreferenced* link before the delete and pushes its
//!    manifest after the repair pass; its pulls then get 404 for that blob (never wrong
//!    bytes), and the blob itself is kept by the global mark below.
//! 3. **Delete, re-check, restore.** In the global sweep the collector opens each blob
//!    before deleting it and holds it open, deletes it, then lists every link and manifest
//!    record again; a blob that became referenced meanwhile is written back from the open
//!    handle. On the other side, every path that publishes content (a finished upload, a
//!    monolithic upload, a mount, a manifest push) writes its link or record *and then*
//!    checks that the blob is still stored, re-publishing it or failing the request if not.
//!
//!    Why no interleaving loses a blob a client was told it has: let the writer publish (P),
//!    link (L) and check (C), in that order, and the collector delete (D) and re-check (R),
//!    in that order. If L comes before R, R sees the link and restores the blob. If L comes
//!    after R, then C comes after D, so C finds the blob gone (unless someone stored it
//!    again) and the writer re-publishes or fails; it never reports success for a blob that
//!    is not there. The restore needs the open handle to stay readable after the delete:
//!    true of [`ocikit_store::FsStore`] (an open file outlives its name) and
//!    [`ocikit_store::MemoryStore`]; on an object store it depends on the in-flight read.
//!
//! A blob that is *uploaded again* while it is judged renews what the sweep judges: the
//! store's [`ocikit_store::Store::written_at`] (every backend renews it on a publish that
//! finds the blob stored already; on S3 the blob is written again). A *cross-repository
//! mount* of a stored blob moves no bytes, so it leaves a marker document instead
//! (`_registry/gc/touched/<alg>/<hex>`, `{"touched_ms"}`, one PUT per mount) that the sweep
//! reads for each blob it is about to delete, as young as the mount. So a blob reused before
//! the collector's last look at it (the write time and marker read just before its delete)
//! is kept, and the restore of point 3 is needed only for a reuse that lands in the
//! milliseconds between that look and the delete. Markers older than the grace period, or of
//! blobs gone, are removed by the sweep.
//!
//! # One collector at a time
//!
//! Collections in one process run one at a time; across processes sharing a store (the
//! replicas of a fleet, and `ocikit registry-gc`) a collection first takes the lease
//! ([`crate::lease`]: a document changed by compare-and-swap, with holder and expiry,
//! renewed while collecting, taken over once expired) and checks that it still holds it
//! before every deletion. A collection that finds the lease held is refused
//! ([`crate::lease::GcLeaseError::Held`]) before it reads anything else. A dry run deletes
//! nothing and takes no lease.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use ocikit_digest::document::{self, Document, InvalidDocument};
use ocikit_digest::reference::validate_name;
use ocikit_digest::{Digest, descriptor};
use ocikit_store::{Blob, DocumentKey, Precondition, Store, StoreExt, Version};
use serde::Serialize;
use serde_json::Value;
use tokio::io::AsyncWriteExt;

use crate::lease::{GcLease, LeaseOptions};
use crate::meta::{self, BlobLink, ManifestRecord, Referrer, read_json, write_json};
use crate::upload::now;
use crate::{Clock, Error, Registry, Result, keys};

/// The prefix of the markers a cross-repository mount leaves (see the module docs).
pub const TOUCHED_PREFIX: &str = "_registry/gc/touched";

/// How often a repository's mark is redone when its manifests keep changing under it; after
/// that the repository is skipped this time (and reported so).
const MAX_MARKS: usize = 5;

/// Blobs deleted (and held open for a possible restore) per re-check of the references.
const DELETE_BATCH: usize = 64;

/// Largest manifest the collector reads to find what it references.
const MAX_MANIFEST_READ: u64 = 64 << 20;

/// Options of [`crate::Registry::gc`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct GcOptions {
    /// Links, untagged manifests and unreferenced blobs written less than this long ago are
    /// kept (default one hour). It must exceed the longest time a client takes between
    /// pushing a blob and pushing the manifest that references it.
    pub grace: Duration,
    /// Report what would go without changing anything.
    pub dry_run: bool,
    /// Also delete manifests that are neither tagged, nor pushed within the grace period,
    /// nor reachable from a kept manifest (as an index's child or as a referrer of one).
    pub delete_untagged: bool,
    /// The repositories whose links and manifests are collected; `None` (the default) for
    /// every repository.
    pub repositories: Option<Vec<String>>,
    /// Whether blobs that no repository references any more are deleted from the content
    /// store (default true).
    pub sweep_blobs: bool,
    /// The clock the grace period is measured by (default the system clock; tests pass one
    /// they move past the grace period). What it is measured from (link and push stamps,
    /// the store's write times) is always system time.
    pub clock: Clock,
    /// The lease that keeps other processes from collecting the same store at the same
    /// time ([`crate::lease`]); `None` collects without one (only safe when nothing else
    /// collects this store). Default: this process's holder id, a one-minute TTL.
    pub lease: Option<LeaseOptions>,
}

impl Default for GcOptions {
    fn default() -> GcOptions {
        GcOptions {
            grace: Duration::from_secs(3600),
            dry_run: false,
            delete_untagged: false,
            repositories: None,
            sweep_blobs: true,
            clock: Clock::system(),
            lease: Some(LeaseOptions::default()),
        }
    }
}

impl GcOptions {
    /// The default options: every repository, a one-hour grace period, untagged manifests
    /// kept, unreferenced blobs swept.
    pub fn new() -> GcOptions {
        GcOptions::default()
    }

    /// Sets [`GcOptions::grace`].
    pub fn grace(mut self, grace: Duration) -> GcOptions {
        self.grace = grace;
        self
    }

    /// Sets [`GcOptions::clock`].
    pub fn clock(mut self, clock: Clock) -> GcOptions {
        self.clock = clock;
        self
    }

    /// Sets [`GcOptions::dry_run`].
    pub fn dry_run(mut self, dry_run: bool) -> GcOptions {
        self.dry_run = dry_run;
        self
    }

    /// Sets [`GcOptions::delete_untagged`].
    pub fn delete_untagged(mut self, delete: bool) -> GcOptions {
        self.delete_untagged = delete;
        self
    }

    /// Restricts the per-repository collection to `names` ([`GcOptions::repositories`]).
    pub fn repositories<I, S>(mut self, names: I) -> GcOptions
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.repositories = Some(names.into_iter().map(Into::into).collect());
        self
    }

    /// Sets [`GcOptions::sweep_blobs`].
    pub fn sweep_blobs(mut self, sweep: bool) -> GcOptions {
        self.sweep_blobs = sweep;
        self
    }

    /// Sets [`GcOptions::lease`].
    pub fn lease(mut self, lease: Option<LeaseOptions>) -> GcOptions {
        self.lease = lease;
        self
    }
}

/// Why [`GcOptions`] were refused (in [`Error::GcOptions`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GcOptionsError {
    /// A named repository is not a valid repository name.
    #[error("`{name}` is not a valid repository name")]
    InvalidRepository {
        /// The name given.
        name: String,
    },
    /// A named repository does not exist.
    #[error("no repository `{name}`")]
    UnknownRepository {
        /// The name given.
        name: String,
    },
    /// An explicit list of repositories was empty, so nothing would be collected.
    #[error("the list of repositories is empty")]
    NoRepositories,
    /// The grace period reaches back before the Unix epoch.
    #[error("a grace period of {seconds} s is longer than the clock reaches back")]
    GraceTooLong {
        /// The grace period asked for, in seconds.
        seconds: u64,
    },
}

/// What the collection did (or, in a dry run, would do) in one repository.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct RepositoryGc {
    /// The repository.
    pub name: String,
    /// Untagged manifests removed, sorted.
    pub manifests_removed: Vec<Digest>,
    /// Blob links removed, sorted.
    pub links_removed: Vec<Digest>,
    /// The sizes of the unlinked blobs, summed (the bytes no longer served by this
    /// repository; the content store frees them only if no other repository links them).
    pub links_removed_bytes: u64,
    /// Unreferenced links kept because they are younger than the grace period.
    pub links_kept_young: usize,
    /// Links and manifests put back because a push referenced them while the collection ran.
    pub repaired: Vec<Digest>,
    /// Whether the repository was left alone because its manifests kept changing during
    /// the collection.
    pub skipped: bool,
}

/// What [`crate::Registry::gc`] did (or, in a dry run, would do).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct GcReport {
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// Each collected repository, by name.
    pub repositories: Vec<RepositoryGc>,
    /// Blobs deleted from the content store, sorted.
    pub blobs_removed: Vec<Digest>,
    /// Their total size: the bytes freed.
    pub bytes_freed: u64,
    /// Unreferenced blobs kept because they are younger than the grace period, sorted.
    pub blobs_kept_young: Vec<Digest>,
    /// Blobs deleted and then written back because a push referenced them meanwhile.
    pub blobs_restored: Vec<Digest>,
    /// The holder whose expired lease this collection took over ([`crate::lease`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_taken_over_from: Option<String>,
}

impl GcReport {
    /// Manifests removed across all repositories.
    pub fn manifests_removed(&self) -> usize {
        self.repositories
            .iter()
            .map(|r| r.manifests_removed.len())
            .sum()
    }

    /// Links removed across all repositories.
    pub fn links_removed(&self) -> usize {
        self.repositories
            .iter()
            .map(|r| r.links_removed.len())
            .sum()
    }
}

/// What a manifest references, by digest (config, layers, blobs, an index's children).
type Refs = Arc<Vec<Digest>>;

/// One collection's state shared between repositories.
pub(crate) struct Collector<'a> {
    store: &'a dyn Store,
    options: &'a GcOptions,
    /// The lease this collection holds, checked before every deletion.
    lease: Option<&'a GcLease>,
    /// Milliseconds since the epoch before which a write is older than the grace period.
    cutoff_ms: u64,
    /// What each manifest read so far references (the same digest has the same content).
    refs: HashMap<Digest, Refs>,
    /// In a dry run, the documents the collection would have deleted: the global mark
    /// ignores them, so that the report shows what a real run would free.
    simulated: HashSet<DocumentKey>,
}

/// One repository as the mark read it.
#[derive(Default)]
struct Marked {
    manifests: BTreeMap<Digest, (ManifestRecord, Version)>,
    links: BTreeMap<Digest, (BlobLink, Version)>,
    tagged: HashSet<Digest>,
}

/// The documents of a repository, from their keys.
enum Entry {
    Link(Digest),
    Manifest(Digest),
    Tag,
}

/// Parses `<alg>/<hex>` into a digest.
fn digest_of(alg: &str, hex: &str) -> Option<Digest> {
    Digest::parse(&format!("{alg}:{hex}")).ok()
}

/// What a key under repository `name`'s prefix is; `None` for other kinds of document, and
/// for keys of nested repositories (`name/sub/...`), whose first segment does not start
/// with `_`.
fn classify(name: &str, key: &DocumentKey) -> Option<Entry> {
    let rest = key
        .as_str()
        .strip_prefix(keys::ROOT)?
        .strip_prefix("/repositories/")?
        .strip_prefix(name)?
        .strip_prefix('/')?;
    let mut parts = rest.split('/');
    match (parts.next()?, parts.next(), parts.next(), parts.next()) {
        ("_blobs", Some(alg), Some(hex), None) => digest_of(alg, hex).map(Entry::Link),
        ("_manifests", Some(alg), Some(hex), None) => digest_of(alg, hex).map(Entry::Manifest),
        ("_tags", Some(_), None, None) => Some(Entry::Tag),
        _ => None,
    }
}

/// The digest a link or manifest record key of any repository names.
fn referenced_by_key(key: &DocumentKey) -> Option<Digest> {
    let mut parts = key.as_str().rsplit('/');
    let (hex, alg, kind) = (parts.next()?, parts.next()?, parts.next()?);
    if !key.is_under(&format!("{}/repositories", keys::ROOT)) {
        return None;
    }
    matches!(kind, "_blobs" | "_manifests")
        .then(|| digest_of(alg, hex))
        .flatten()
}

/// Every digest a manifest or index pushed as `media_type` names as content (not its
/// `subject`), read by the one strict parser ([`ocikit_digest::document`]); `None` for a
/// media type that is not a manifest's or an index's.
fn references(media_type: &str, bytes: Bytes) -> Result<Option<Vec<Digest>>, InvalidDocument> {
    if !document::is_document(media_type) {
        return Ok(None);
    }
    let parsed = Document::parse_with_limit(media_type, bytes, MAX_MANIFEST_READ)?;
    // Every descriptor inside was checked by the parser, its digest included.
    Ok(Some(
        parsed
            .children()
            .iter()
            .filter_map(|d| descriptor::digest_of(d).ok())
            .collect(),
    ))
}

impl<'a> Collector<'a> {
    pub(crate) fn new(
        store: &'a dyn Store,
        options: &'a GcOptions,
        lease: Option<&'a GcLease>,
    ) -> Result<Collector<'a>> {
        let grace_ms = u64::try_from(options.grace.as_millis()).unwrap_or(u64::MAX);
        let now_ms = options.clock.now_unix_ms();
        let cutoff_ms = now_ms
            .checked_sub(grace_ms)
            .ok_or(GcOptionsError::GraceTooLong {
                seconds: options.grace.as_secs(),
            })?;
        Ok(Collector {
            store,
            options,
            lease,
            cutoff_ms,
            refs: HashMap::new(),
            simulated: HashSet::new(),
        })
    }

    /// Fails once this collection no longer holds its lease: called before every deletion.
    fn fenced(&self) -> Result<()> {
        match self.lease {
            Some(lease) => Ok(lease.check()?),
            None => Ok(()),
        }
    }

    /// Whether something stamped at `ms` is older than the grace period. Unstamped
    /// documents (from before stamps existed) count as young; see [`Collector::stamp`].
    fn is_old(&self, ms: Option<u64>) -> bool {
        ms.is_some_and(|ms| ms < self.cutoff_ms)
    }

    /// The repositories to collect, checked.
    pub(crate) async fn repositories(&self) -> Result<Vec<String>> {
        let all = meta::catalog(self.store).await?;
        let Some(named) = &self.options.repositories else {
            return Ok(all);
        };
        if named.is_empty() {
            return Err(GcOptionsError::NoRepositories.into());
        }
        let mut out = BTreeSet::new();
        for name in named {
            if validate_name(name).is_err() {
                return Err(GcOptionsError::InvalidRepository { name: name.clone() }.into());
            }
            if all.binary_search(name).is_err() {
                return Err(GcOptionsError::UnknownRepository { name: name.clone() }.into());
            }
            out.insert(name.clone());
        }
        Ok(out.into_iter().collect())
    }

    /// What manifest `digest` (`size` bytes, pushed as `media_type`) references; an empty
    /// list when its content is gone (a record whose content is missing keeps nothing
    /// alive).
    async fn refs_of(&mut self, digest: &Digest, size: u64, media_type: &str) -> Result<Refs> {
        if let Some(refs) = self.refs.get(digest) {
            return Ok(refs.clone());
        }
        let refs = match self
            .store
            .get_bytes(digest, size.min(MAX_MANIFEST_READ))
            .await?
        {
            None => Arc::new(Vec::new()),
            Some(bytes) => {
                let corrupt = |source: Option<InvalidDocument>| Error::CorruptManifest {
                    digest: digest.clone(),
                    source: source.map(Box::new),
                };
                let refs = references(media_type, bytes).map_err(|e| corrupt(Some(e)))?;
                Arc::new(refs.ok_or_else(|| corrupt(None))?)
            }
        };
        self.refs.insert(digest.clone(), refs.clone());
        Ok(refs)
    }

    /// Reads repository `name`'s manifests, links and tags.
    async fn mark(&self, name: &str) -> Result<Marked> {
        let prefix = format!("{}/repositories/{name}", keys::ROOT);
        let mut marked = Marked::default();
        for key in self.store.list_documents(&prefix).await? {
            match classify(name, &key) {
                Some(Entry::Link(digest)) => {
                    if let Some(found) = read_json::<BlobLink>(self.store, &key).await? {
                        marked.links.insert(digest, found);
                    }
                }
                Some(Entry::Manifest(digest)) => {
                    if let Some(found) = read_json::<ManifestRecord>(self.store, &key).await? {
                        marked.manifests.insert(digest, found);
                    }
                }
                Some(Entry::Tag) => {
                    if let Some((tag, _)) = read_json::<Value>(self.store, &key).await?
                        && let Some(digest) = tag
                            .get("digest")
                            .and_then(Value::as_str)
                            .and_then(|d| Digest::parse(d).ok())
                    {
                        marked.tagged.insert(digest);
                    }
                }
                None => {}
            }
        }
        Ok(marked)
    }

    /// The manifests of repository `name` and their versions, to tell whether any changed.
    async fn manifest_versions(&self, name: &str) -> Result<BTreeMap<Digest, Version>> {
        let prefix = format!("{}/repositories/{name}/_manifests", keys::ROOT);
        let mut out = BTreeMap::new();
        for key in self.store.list_documents(&prefix).await? {
            if let Some(Entry::Manifest(digest)) = classify(name, &key)
                && let Some(version) = self.store.document_version(&key).await?
            {
                out.insert(digest, version);
            }
        }
        Ok(out)
    }

    /// The kept manifests of a marked repository and every digest they reference.
    async fn keep(&mut self, marked: &Marked) -> Result<(HashSet<Digest>, HashSet<Digest>)> {
        let mut kept: HashSet<Digest> = HashSet::new();
        let mut pending: Vec<Digest> = marked
            .manifests
            .iter()
            .filter(|(digest, (record, _))| {
                !self.options.delete_untagged
                    || marked.tagged.contains(*digest)
                    || !self.is_old(record.pushed_ms)
            })
            .map(|(digest, _)| digest.clone())
            .collect();
        let mut referenced = HashSet::new();
        while !pending.is_empty() {
            for digest in std::mem::take(&mut pending) {
                let Some((record, _)) = marked.manifests.get(&digest) else {
                    continue;
                };
                if !kept.insert(digest.clone()) {
                    continue;
                }
                for child in self
                    .refs_of(&digest, record.size, &record.media_type)
                    .await?
                    .iter()
                {
                    referenced.insert(child.clone());
                    if marked.manifests.contains_key(child) && !kept.contains(child) {
                        pending.push(child.clone());
                    }
                }
            }
            // The referrers of kept manifests are kept.
            for (digest, (record, _)) in &marked.manifests {
                if !kept.contains(digest)
                    && record.subject.as_ref().is_some_and(|s| kept.contains(s))
                {
                    pending.push(digest.clone());
                }
            }
        }
        Ok((kept, referenced))
    }

    /// Stamps a link or record written before stamps existed, so that its grace period
    /// starts now (conditionally: a concurrent write stamps it anyway).
    async fn stamp<T: Serialize>(&self, key: &DocumentKey, value: &T, version: &Version) {
        // Best effort: a failed stamp only means the document is considered young again
        // at the next collection.
        write_json(
            self.store,
            key,
            value,
            Precondition::Matches(version.clone()),
        )
        .await
        .ok();
    }

    /// Collects repository `name`.
    pub(crate) async fn repository(&mut self, name: &str) -> Result<RepositoryGc> {
        let mut report = RepositoryGc {
            name: name.to_owned(),
            ..RepositoryGc::default()
        };
        // Mark until the manifests hold still between the mark and the re-check.
        let mut attempt = 0;
        let (marked, kept, referenced) = loop {
            attempt += 1;
            let marked = self.mark(name).await?;
            let (kept, referenced) = self.keep(&marked).await?;
            let before: BTreeMap<Digest, Version> = marked
                .manifests
                .iter()
                .map(|(d, (_, v))| (d.clone(), v.clone()))
                .collect();
            if self.manifest_versions(name).await? == before {
                break (marked, kept, referenced);
            }
            if attempt >= MAX_MARKS {
                report.skipped = true;
                return Ok(report);
            }
        };
        let dry_run = self.options.dry_run;

        // Untagged manifests, removed first so that their referrer entries go with them.
        let mut removed_manifests: Vec<(Digest, ManifestRecord, Option<Referrer>)> = Vec::new();
        for (digest, (record, version)) in &marked.manifests {
            if kept.contains(digest) {
                continue;
            }
            let key = keys::manifest(name, digest)?;
            if dry_run {
                report.manifests_removed.push(digest.clone());
                self.simulated.insert(key);
                continue;
            }
            let referrer = match &record.subject {
                Some(subject) => meta::referrers(self.store, name, subject)
                    .await?
                    .into_iter()
                    .find(|r| &r.digest == digest),
                None => None,
            };
            self.fenced()?;
            match self
                .store
                .delete_document(&key, Precondition::Matches(version.clone()))
                .await
            {
                Ok(true) => {}
                // Re-pushed (or deleted) meanwhile: it stays as the pusher left it.
                Ok(false) | Err(ocikit_store::Error::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
            if let Some(subject) = &record.subject {
                meta::remove_referrer(self.store, name, subject, digest).await?;
            }
            report.manifests_removed.push(digest.clone());
            removed_manifests.push((digest.clone(), record.clone(), referrer));
        }

        // Links no kept manifest references.
        let mut removed_links: BTreeMap<Digest, u64> = BTreeMap::new();
        for (digest, (link, version)) in &marked.links {
            if referenced.contains(digest) {
                continue;
            }
            if link.linked_ms.is_none() && !dry_run {
                let stamped = BlobLink {
                    size: link.size,
                    linked_ms: Some(now()),
                };
                self.stamp(&keys::blob_link(name, digest)?, &stamped, version)
                    .await;
            }
            if !self.is_old(link.linked_ms) {
                report.links_kept_young += 1;
                continue;
            }
            let key = keys::blob_link(name, digest)?;
            if dry_run {
                self.simulated.insert(key);
            } else {
                self.fenced()?;
                match self
                    .store
                    .delete_document(&key, Precondition::Matches(version.clone()))
                    .await
                {
                    Ok(true) => {}
                    // Pushed or mounted again meanwhile: the link stays.
                    Ok(false) | Err(ocikit_store::Error::Conflict { .. }) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            report.links_removed.push(digest.clone());
            report.links_removed_bytes += link.size;
            removed_links.insert(digest.clone(), link.size);
        }
        // Manifests written before stamps existed: their grace period starts now.
        if self.options.delete_untagged && !dry_run {
            for (digest, (record, version)) in &marked.manifests {
                if record.pushed_ms.is_none() && kept.contains(digest) {
                    let stamped = ManifestRecord {
                        pushed_ms: Some(now()),
                        ..record.clone()
                    };
                    self.stamp(&keys::manifest(name, digest)?, &stamped, version)
                        .await;
                }
            }
        }
        if !dry_run {
            self.repair(name, &marked, &mut report, removed_manifests, removed_links)
                .await?;
        }
        report.manifests_removed.sort();
        report.links_removed.sort();
        report.repaired.sort();
        Ok(report)
    }

    /// After deleting: puts back what a push that raced the collection references (see the
    /// module documentation, point 2).
    async fn repair(
        &mut self,
        name: &str,
        marked: &Marked,
        report: &mut RepositoryGc,
        removed_manifests: Vec<(Digest, ManifestRecord, Option<Referrer>)>,
        mut removed_links: BTreeMap<Digest, u64>,
    ) -> Result<()> {
        if removed_manifests.is_empty() && removed_links.is_empty() {
            return Ok(());
        }
        let now_marked = self.mark(name).await?;
        let mut removed: BTreeMap<Digest, (ManifestRecord, Option<Referrer>)> = removed_manifests
            .into_iter()
            .map(|(d, record, referrer)| (d, (record, referrer)))
            .collect();
        // Manifests that are new or changed since the mark, and those that must come back.
        let mut pending: Vec<(Digest, u64, String)> = Vec::new();
        for (digest, (record, version)) in &now_marked.manifests {
            let changed = marked
                .manifests
                .get(digest)
                .is_none_or(|(_, v)| v != version);
            if changed {
                pending.push((digest.clone(), record.size, record.media_type.clone()));
            }
            // Pushed again after being deleted: its referrer entry may have been removed
            // after the push added it.
            if let Some((old, referrer)) = removed.remove(digest) {
                self.put_back_referrer(name, &old, referrer).await?;
                report.manifests_removed.retain(|d| d != digest);
            }
        }
        let mut seen = HashSet::new();
        while let Some((digest, size, media_type)) = pending.pop() {
            if !seen.insert(digest.clone()) {
                continue;
            }
            for child in self.refs_of(&digest, size, &media_type).await?.iter() {
                if let Some(size) = removed_links.remove(child) {
                    meta::link_blob(self.store, name, child, size).await?;
                    report.links_removed.retain(|d| d != child);
                    report.links_removed_bytes -= size;
                    report.repaired.push(child.clone());
                }
                if let Some((record, referrer)) = removed.remove(child) {
                    let key = keys::manifest(name, child)?;
                    let restored = ManifestRecord {
                        pushed_ms: Some(now()),
                        ..record.clone()
                    };
                    match write_json(self.store, &key, &restored, Precondition::MustNotExist).await
                    {
                        Ok(_) | Err(Error::Store(ocikit_store::Error::Conflict { .. })) => {}
                        Err(e) => return Err(e),
                    }
                    self.put_back_referrer(name, &record, referrer).await?;
                    report.manifests_removed.retain(|d| d != child);
                    report.repaired.push(child.clone());
                    pending.push((child.clone(), record.size, record.media_type.clone()));
                }
            }
        }
        Ok(())
    }

    async fn put_back_referrer(
        &self,
        name: &str,
        record: &ManifestRecord,
        referrer: Option<Referrer>,
    ) -> Result<()> {
        if let (Some(subject), Some(referrer)) = (&record.subject, referrer) {
            meta::add_referrer(self.store, name, subject, referrer).await?;
        }
        Ok(())
    }

    /// Every digest some repository links or holds a manifest record of, from the keys
    /// alone; and the manifest records, to add what they reference.
    async fn global_mark(&mut self) -> Result<HashSet<Digest>> {
        let keys = self
            .store
            .list_documents(&format!("{}/repositories", keys::ROOT))
            .await?;
        let mut marked = HashSet::new();
        for key in keys {
            let Some(digest) = referenced_by_key(&key) else {
                continue;
            };
            if self.simulated.contains(&key) {
                continue;
            }
            if key.as_str().contains("/_manifests/")
                && let Some((record, _)) = read_json::<ManifestRecord>(self.store, &key).await?
            {
                for child in self
                    .refs_of(&digest, record.size, &record.media_type)
                    .await?
                    .iter()
                {
                    marked.insert(child.clone());
                }
            }
            marked.insert(digest);
        }
        Ok(marked)
    }

    /// Deletes the blobs of the content store nothing references any more (see the module
    /// documentation, point 3).
    pub(crate) async fn sweep(&mut self, report: &mut GcReport) -> Result<()> {
        let touched = self.touched_markers().await?;
        let marked = self.global_mark().await?;
        let mut listed: Vec<Digest> = self.store.list().try_collect().await?;
        listed.retain(|d| !marked.contains(d));
        listed.sort();
        let mut candidates = Vec::new();
        for digest in listed {
            let Some(written) = self.store.written_at(&digest).await? else {
                continue;
            };
            let reused = touched.contains_key(&digest) && !self.touch_is_old(&digest).await?;
            if self.is_old(Some(millis(written))) && !reused {
                candidates.push(digest);
            } else {
                report.blobs_kept_young.push(digest);
            }
        }
        let swept = self.sweep_candidates(candidates, report).await;
        if !self.options.dry_run {
            self.remove_old_markers(touched).await?;
        }
        swept
    }

    /// Deletes `candidates` (unreferenced and old at the first look) that are still so.
    async fn sweep_candidates(
        &mut self,
        mut candidates: Vec<Digest>,
        report: &mut GcReport,
    ) -> Result<()> {
        if candidates.is_empty() {
            return Ok(());
        }
        // Re-check: something may have been linked since the first mark.
        let marked = self.global_mark().await?;
        candidates.retain(|d| !marked.contains(d));
        if self.options.dry_run {
            for digest in candidates {
                if let Some(size) = self.store.stat(&digest).await? {
                    report.bytes_freed += size;
                    report.blobs_removed.push(digest);
                }
            }
            return Ok(());
        }
        for batch in candidates.chunks(DELETE_BATCH) {
            let mut held: Vec<(Digest, Blob)> = Vec::new();
            for digest in batch {
                // Held open until the re-check below, to restore from.
                let Some(blob) = self.store.get(digest, None).await? else {
                    continue;
                };
                // Written again or mounted since it was judged: no longer old.
                let young = match self.store.written_at(digest).await? {
                    Some(written) => !self.is_old(Some(millis(written))),
                    None => true,
                };
                if young || !self.touch_is_old(digest).await? {
                    report.blobs_kept_young.push(digest.clone());
                    continue;
                }
                self.fenced()?;
                if self.store.delete(digest).await? {
                    held.push((digest.clone(), blob));
                }
            }
            let marked = self.global_mark().await?;
            for (digest, blob) in held {
                if marked.contains(&digest) {
                    restore(self.store, &digest, blob).await?;
                    report.blobs_restored.push(digest);
                } else {
                    report.bytes_freed += blob.size();
                    report.blobs_removed.push(digest);
                }
            }
        }
        report.blobs_kept_young.sort();
        report.blobs_kept_young.dedup();
        Ok(())
    }
}

/// The marker a mount of `digest` leaves (see the module docs).
fn touched_key(digest: &Digest) -> Result<DocumentKey> {
    let (alg, hex) = digest.path_components();
    Ok(DocumentKey::new(&format!("{TOUCHED_PREFIX}/{alg}/{hex}"))?)
}

/// A mount's marker document.
#[derive(Serialize, serde::Deserialize)]
struct Touched {
    touched_ms: u64,
}

/// Records that a stored blob was just reused without being written (a cross-repository
/// mount), so that a collection about to delete it keeps it as if it had been written now
/// (see the module docs). One document write.
pub(crate) async fn touch(store: &dyn Store, digest: &Digest) -> Result<()> {
    let touched = Touched { touched_ms: now() };
    write_json(store, &touched_key(digest)?, &touched, Precondition::None).await?;
    Ok(())
}

impl Collector<'_> {
    /// The blobs that have a mount marker, and the markers' keys.
    async fn touched_markers(&self) -> Result<HashMap<Digest, DocumentKey>> {
        let mut out = HashMap::new();
        for key in self.store.list_documents(TOUCHED_PREFIX).await? {
            let mut parts = key.as_str().rsplit('/');
            if let (Some(hex), Some(alg)) = (parts.next(), parts.next())
                && let Some(digest) = digest_of(alg, hex)
                && touched_key(&digest).is_ok_and(|k| k == key)
            {
                out.insert(digest, key);
            }
        }
        Ok(out)
    }

    /// Whether `digest` has no mount marker younger than the grace period. A marker that
    /// does not parse counts as young (the blob is kept; the sweep then removes the marker).
    async fn touch_is_old(&self, digest: &Digest) -> Result<bool> {
        let Some(doc) = self.store.read_document(&touched_key(digest)?).await? else {
            return Ok(true);
        };
        Ok(match serde_json::from_slice::<Touched>(&doc.bytes) {
            Ok(touched) => self.is_old(Some(touched.touched_ms)),
            Err(_) => false,
        })
    }

    /// Removes the markers that no longer keep anything: older than the grace period, of
    /// blobs gone, or unreadable (each only if unchanged since read).
    async fn remove_old_markers(&self, markers: HashMap<Digest, DocumentKey>) -> Result<()> {
        for (digest, key) in markers {
            let Some(doc) = self.store.read_document(&key).await? else {
                continue;
            };
            let old = match serde_json::from_slice::<Touched>(&doc.bytes) {
                Ok(touched) => self.is_old(Some(touched.touched_ms)),
                Err(_) => true,
            };
            if old || self.store.stat(&digest).await?.is_none() {
                match self
                    .store
                    .delete_document(&key, Precondition::Matches(doc.version))
                    .await
                {
                    Ok(_) | Err(ocikit_store::Error::Conflict { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(())
    }
}

/// Runs one collection for `registry` ([`crate::Registry::gc`]): one at a time in this
/// process, and, with [`GcOptions::lease`] (unless a dry run), under the fleet's lease.
pub(crate) async fn collect(registry: &Registry, options: &GcOptions) -> Result<GcReport> {
    let _one_at_a_time = registry.inner.gc.lock().await;
    let store = registry.inner.store.as_ref();
    if options.sweep_blobs {
        check_no_layout(store).await?;
    }
    // Checked before the lease is taken: refused options take nothing.
    Collector::new(store, options, None)?;
    let lease = match (&options.lease, options.dry_run) {
        (Some(lease), false) => Some(GcLease::acquire(registry.inner.store.clone(), lease).await?),
        _ => None,
    };
    let collected = collect_with(store, options, lease.as_ref()).await;
    if let Some(lease) = lease {
        let released = lease.release().await;
        // A failed release leaves the lease to expire; the collection's outcome stands.
        if let Err(e) = released {
            tracing::warn!(error = %crate::error_chain(&e), "releasing the garbage collection lease failed");
        }
    }
    collected
}

async fn collect_with(
    store: &dyn Store,
    options: &GcOptions,
    lease: Option<&GcLease>,
) -> Result<GcReport> {
    let mut collector = Collector::new(store, options, lease)?;
    let names = collector.repositories().await?;
    let mut report = GcReport {
        dry_run: options.dry_run,
        lease_taken_over_from: lease.and_then(|l| l.taken_over_from().map(str::to_owned)),
        ..GcReport::default()
    };
    for name in names {
        let collected = collector.repository(&name).await?;
        report.repositories.push(collected);
    }
    if options.sweep_blobs {
        collector.sweep(&mut report).await?;
    }
    Ok(report)
}

/// Writes a deleted blob back from the handle opened before the delete, verified.
async fn restore(store: &dyn Store, digest: &Digest, blob: Blob) -> Result<()> {
    let size = blob.size();
    let mut writer = store.writer_with(digest.algorithm()).await?;
    let mut stream = blob.into_stream();
    while let Some(bytes) = stream.next().await {
        let bytes = match bytes {
            Ok(bytes) => bytes,
            Err(e) => {
                writer.abort().await.ok();
                return Err(e.into());
            }
        };
        if let Err(e) = writer.write_all(&bytes).await {
            writer.abort().await.ok();
            return Err(ocikit_store::Error::Stream(e).into());
        }
    }
    writer.commit(digest, size).await?;
    Ok(())
}

fn millis(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Refuses to sweep a content store that an OCI image layout shares (`index.json` with
/// entries): the registry's references do not cover the layout's images.
pub(crate) async fn check_no_layout(store: &dyn Store) -> Result<()> {
    let key = DocumentKey::new("index.json")?;
    let Some(doc) = store.read_document(&key).await? else {
        return Ok(());
    };
    let entries = serde_json::from_slice::<Value>(&doc.bytes)
        .ok()
        .and_then(|v| v.get("manifests").and_then(Value::as_array).map(Vec::len))
        .unwrap_or(1);
    if entries > 0 {
        return Err(Error::ForeignReferences {
            key: key.to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use ocikit_digest::media_type;

    #[test]
    fn keys_are_classified_per_repository() {
        let d = Digest::sha256(b"x");
        let link = keys::blob_link("a", &d).unwrap();
        assert!(matches!(classify("a", &link), Some(Entry::Link(x)) if x == d));
        // A nested repository's keys are not the parent's.
        let nested = keys::blob_link("a/b", &d).unwrap();
        assert!(classify("a", &nested).is_none());
        assert!(matches!(classify("a/b", &nested), Some(Entry::Link(_))));
        let tag = keys::tag("a", "v1").unwrap();
        assert!(matches!(classify("a", &tag), Some(Entry::Tag)));
        assert_eq!(referenced_by_key(&nested), Some(d.clone()));
        let referrers = keys::referrers("a", &d).unwrap();
        assert_eq!(referenced_by_key(&referrers), None);
        assert_eq!(referenced_by_key(&keys::catalog_marker("a").unwrap()), None);
    }

    fn descriptor_json(media_type: &str, bytes: &[u8]) -> Value {
        serde_json::json!({"mediaType": media_type, "digest": Digest::sha256(bytes).as_str(),
            "size": bytes.len()})
    }

    #[test]
    fn references_cover_config_layers_and_children_not_the_subject() {
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "config": descriptor_json(media_type::IMAGE_CONFIG, b"c"),
            "layers": [descriptor_json(media_type::IMAGE_LAYER, b"l")],
            "subject": descriptor_json(media_type::IMAGE_MANIFEST, b"s"),
        });
        let bytes = Bytes::from(serde_json::to_vec(&manifest).unwrap());
        let refs = references(media_type::IMAGE_MANIFEST, bytes)
            .unwrap()
            .unwrap();
        assert_eq!(refs, [Digest::sha256(b"c"), Digest::sha256(b"l")]);
        let index = serde_json::json!({"schemaVersion": 2,
            "manifests": [descriptor_json(media_type::IMAGE_MANIFEST, b"m")]});
        let bytes = Bytes::from(serde_json::to_vec(&index).unwrap());
        let refs = references(media_type::IMAGE_INDEX, bytes).unwrap().unwrap();
        assert_eq!(refs, [Digest::sha256(b"m")]);
        assert_eq!(
            references(media_type::IMAGE_CONFIG, Bytes::from_static(b"{}")).unwrap(),
            None
        );
    }

    /// A descriptor the parser refuses is not skipped (what it names would be swept).
    #[test]
    fn a_manifest_with_an_invalid_descriptor_is_corrupt_not_partly_read() {
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "config": descriptor_json(media_type::IMAGE_CONFIG, b"c"),
            "layers": [descriptor_json(media_type::IMAGE_LAYER, b"l"),
                {"mediaType": media_type::IMAGE_LAYER, "digest": "bad", "size": 1}],
        });
        let bytes = Bytes::from(serde_json::to_vec(&manifest).unwrap());
        let err = references(media_type::IMAGE_MANIFEST, bytes).unwrap_err();
        assert!(matches!(
            err.kind(),
            ocikit_digest::document::InvalidDocumentKind::Descriptor { at, .. } if at == "layers[1]"
        ));
    }
}
