//! Referrers: which manifests and indexes of the layout name a digest as their `subject`,
//! from an index kept in store documents, never by reading every manifest.
//!
//! The referrers of a digest are the manifests and indexes listed in `index.json` (tagged or
//! not) whose `subject` is that digest, each described as the distribution spec's referrers
//! response does: `mediaType`, `digest`, `size`, `artifactType` (a manifest's
//! `artifactType`, or else its config's media type; an index's `artifactType` or none) and
//! the manifest's own `annotations` (SPEC B.3 end-12).
//!
//! # The persisted index
//!
//! Three kinds of document under `ocikit/referrers/`:
//!
//! - `state`: the version token of the `index.json` it reflects (the store's, as
//!   `read_document` returns it: the SHA-256 of the bytes on the filesystem store, the ETag on
//!   S3), a generation number, what each listed document's `subject` is, and which subjects
//!   the last generation changed;
//! - `head`: the version token and generation of the last complete update (a few bytes);
//! - `subjects/<alg>/<encoded>`: one subject's referrers, stamped with the generation that
//!   wrote them.
//!
//! A lookup reads `head`, asks the store for `index.json`'s version (the filesystem store
//! answers from the file's metadata when it read that version before, without reading the
//! file) and, when the two agree, reads the one subject document: its cost does not grow
//! with the number of manifests at all. When they differ (any writer, ocikit or another tool, changed
//! `index.json`), the lookup first brings the index up to date incrementally: it reads only
//! the documents listed since, drops the ones no longer listed, commits `state` by
//! compare-and-swap, rewrites the subject documents that changed (never over a newer
//! generation) and then `head`. A writer that died half way leaves `head` behind `state`; the
//! next update finishes its work first. Documents listed but not stored yet are looked at
//! again by the next update; ones that are not valid manifests or indexes have no subject.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use ocikit_digest::oci_spec::image::{Descriptor, MediaType};
use ocikit_digest::{Digest, descriptor};
use ocikit_store::{DocumentKey, Error as StoreError, Precondition, StoreExt};
use serde::{Deserialize, Serialize};

use crate::document::{self, Document};
use crate::layout::INDEX_JSON;
use crate::{Error, Index, Layout, Result};

/// The document prefix of the referrers index.
pub const REFERRERS_PREFIX: &str = "ocikit/referrers";
const STATE: &str = "ocikit/referrers/state";
const HEAD: &str = "ocikit/referrers/head";
const SUBJECTS: &str = "ocikit/referrers/subjects";
/// Format version of the documents; others are rebuilt. (2: `index` is the store's version
/// token of `index.json`, no longer a SHA-256 of its bytes.)
const FORMAT: u32 = 2;
/// Documents read at once while catching up.
const READ_CONCURRENCY: usize = 16;
/// How often an update is retried after losing a compare-and-swap of `state`.
const MAX_SYNC_ATTEMPTS: usize = 100;

fn key(name: &str) -> Result<DocumentKey> {
    Ok(DocumentKey::new(name)?)
}

/// The document key holding a subject's referrers.
fn subject_key(subject: &str) -> Result<DocumentKey> {
    if let Ok(digest) = Digest::parse(subject) {
        let (alg, encoded) = digest.path_components();
        if let Ok(key) = DocumentKey::new(&format!("{SUBJECTS}/{alg}/{encoded}")) {
            return Ok(key);
        }
    }
    // Digests whose spelling is no key (`+` in the algorithm, `=` in the encoding): by hash.
    // No algorithm starts with `_`, so these never collide with the spelled-out keys.
    key(&format!(
        "{SUBJECTS}/_hashed/{}",
        Digest::sha256(subject.as_bytes()).encoded()
    ))
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct State {
    format: u32,
    index: String,
    generation: u64,
    /// Every listed document looked at: its digest, and what refers through it.
    manifests: BTreeMap<String, Option<Referrer>>,
    /// The subjects whose lists this generation changed.
    changed: BTreeSet<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Referrer {
    subject: String,
    descriptor: Descriptor,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Head {
    format: u32,
    index: String,
    generation: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct SubjectDoc {
    format: u32,
    generation: u64,
    manifests: Vec<Descriptor>,
}

fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    serde_json::from_slice(bytes).ok()
}

fn encode<T: Serialize>(value: &T) -> Result<Bytes> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|e| Error::InvalidIndex {
            reason: format!("cannot serialise the referrers index: {e}"),
            source: None,
        })
}

/// The referrers-response descriptor of a document `entry` points at.
fn describe(entry: &Descriptor, document: &Document) -> Result<Descriptor> {
    let digest = descriptor::digest_of(entry).map_err(|e| Error::InvalidDocument {
        digest: Digest::sha256(b""),
        reason: "descriptor digest is invalid".into(),
        source: Some(Box::new(e.into())),
    })?;
    let mut d =
        descriptor::new(entry.media_type().as_ref(), &digest, entry.size()).map_err(|e| {
            Error::InvalidDocument {
                digest: digest.clone(),
                reason: "cannot describe the referrer".into(),
                source: Some(Box::new(e.into())),
            }
        })?;
    d.set_artifact_type(
        document
            .artifact_type()
            .map(|t| MediaType::from(t.as_str())),
    );
    let annotations = match document {
        Document::Manifest { manifest, .. } => manifest.annotations().clone(),
        Document::Index { index, .. } => index.annotations().clone(),
        _ => None,
    };
    d.set_annotations(annotations.filter(|a| !a.is_empty()));
    Ok(d)
}

impl Layout {
    /// The referrers of `subject`, sorted by digest; only those whose `artifactType` is
    /// `artifact_type` when one is given. Brings the referrers index up to date first if
    /// `index.json` changed since it was last updated (see the module documentation).
    pub async fn referrers(
        &self,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Descriptor>> {
        self.sync_referrers().await?;
        let key = subject_key(subject.as_str())?;
        let list = match self.store().read_document(&key).await? {
            None => Vec::new(),
            Some(doc) => match parse::<SubjectDoc>(&doc.bytes) {
                Some(sub) if sub.format == FORMAT => sub.manifests,
                // Damaged (or a future format): answer from `state` instead.
                _ => self.referrers_from_state(subject.as_str()).await?,
            },
        };
        Ok(list
            .into_iter()
            .filter(|d| {
                artifact_type
                    .is_none_or(|t| d.artifact_type().as_ref().map(|a| a.as_ref()) == Some(t))
            })
            .collect())
    }

    async fn referrers_from_state(&self, subject: &str) -> Result<Vec<Descriptor>> {
        let state = self
            .store()
            .read_document(&key(STATE)?)
            .await?
            .and_then(|d| parse::<State>(&d.bytes))
            .unwrap_or_default();
        Ok(list_of(&state, subject))
    }

    /// Brings the referrers index up to date with `index.json` (see the module
    /// documentation) and returns its generation. Lookups do this themselves; writers that
    /// change `index.json` may call it to keep the next lookup fast.
    pub async fn sync_referrers(&self) -> Result<u64> {
        let store = self.store();
        for _ in 0..MAX_SYNC_ATTEMPTS {
            let head = store
                .read_document(&key(HEAD)?)
                .await?
                .and_then(|d| parse::<Head>(&d.bytes))
                .filter(|h| h.format == FORMAT);
            // The cheap check first: `index.json`'s version token (from the file's metadata
            // on the filesystem store, without reading it) against the one `head` reflects.
            if let Some(head) = &head
                && let Some(version) = store.document_version(&key(INDEX_JSON)?).await?
                && head.index == version.as_str()
            {
                return Ok(head.generation);
            }
            let index_doc = store.require_document(&key(INDEX_JSON)?).await?;
            let fp = index_doc.version.as_str().to_string();
            if let Some(head) = &head
                && head.index == fp
            {
                return Ok(head.generation);
            }
            let head_generation = head.as_ref().map_or(0, |h| h.generation);
            let state_doc = store.read_document(&key(STATE)?).await?;
            let precondition = match &state_doc {
                Some(doc) => Precondition::Matches(doc.version.clone()),
                None => Precondition::MustNotExist,
            };
            let state = state_doc
                .as_ref()
                .and_then(|d| parse::<State>(&d.bytes))
                .filter(|s| s.format == FORMAT);
            if let Some(state) = &state
                && state.generation > head_generation
            {
                // The last update committed `state` but may not have finished the subject
                // documents and `head`: finish it (idempotent) before going on.
                self.publish(state).await?;
                if state.index == fp {
                    return Ok(state.generation);
                }
            }
            let index = Index::parse(&index_doc.bytes)?;
            let (next, rebuilt) = match state {
                Some(old) => (self.catch_up(&old, &index).await?, false),
                None => (self.catch_up(&State::default(), &index).await?, true),
            };
            let mut next = next;
            next.index = fp;
            next.generation = next.generation.max(head_generation) + 1;
            if rebuilt {
                // Nothing to diff against: every subject document there is gets rewritten
                // (or, for ones named by hash, deleted unless still needed), above any
                // generation they carry.
                let needed: BTreeSet<DocumentKey> = next
                    .changed
                    .iter()
                    .map(|s| subject_key(s))
                    .collect::<Result<_>>()?;
                for k in store.list_documents(SUBJECTS).await? {
                    let Some(doc) = store.read_document(&k).await? else {
                        continue;
                    };
                    if let Some(sub) = parse::<SubjectDoc>(&doc.bytes) {
                        next.generation = next.generation.max(sub.generation + 1);
                    }
                    let spelled = k
                        .as_str()
                        .strip_prefix(&format!("{SUBJECTS}/"))
                        .map(|rest| rest.replacen('/', ":", 1));
                    match spelled {
                        Some(s) if subject_key(&s).ok().as_ref() == Some(&k) => {
                            next.changed.insert(s);
                        }
                        _ if !needed.contains(&k) => {
                            store
                                .delete_document(&k, Precondition::Matches(doc.version))
                                .await
                                .or_else(|e| match e {
                                    StoreError::Conflict { .. } => Ok(false),
                                    e => Err(e),
                                })?;
                        }
                        _ => {}
                    }
                }
            }
            match store
                .write_document(&key(STATE)?, encode(&next)?, precondition)
                .await
            {
                Ok(_) => {
                    self.publish(&next).await?;
                    return Ok(next.generation);
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Contended {
            attempts: MAX_SYNC_ATTEMPTS,
        })
    }

    /// The state for `index`, from `old`: documents still listed keep what `old` knew of
    /// them, new ones are read, the rest are dropped; `changed` lists the subjects whose
    /// referrers differ.
    async fn catch_up(&self, old: &State, index: &Index) -> Result<State> {
        let mut manifests = BTreeMap::new();
        let mut unread = Vec::new();
        let mut queued = std::collections::HashSet::new();
        for entry in index.manifests() {
            if !document::is_document(entry.media_type().as_ref()) {
                continue;
            }
            let digest = entry.digest().to_string();
            if manifests.contains_key(&digest) {
                continue;
            }
            match old.manifests.get(&digest) {
                Some(known) => {
                    manifests.insert(digest, known.clone());
                }
                None => {
                    if queued.insert(digest) {
                        unread.push(entry.clone());
                    }
                }
            }
        }
        let read: Vec<(String, Option<Option<Referrer>>)> = futures::stream::iter(unread)
            .map(|entry| async move {
                let digest = entry.digest().to_string();
                let found = match self.read_document(&entry).await {
                    Ok(doc) => match doc.subject() {
                        Some(subject) => Some(Some(Referrer {
                            subject: subject.digest().to_string(),
                            descriptor: describe(&entry, &doc)?,
                        })),
                        None => Some(None),
                    },
                    // Not a valid manifest or index: that never changes, it has no subject.
                    Err(Error::InvalidDocument { .. }) => Some(None),
                    // Not stored (yet), or damaged: look again next time.
                    Err(Error::Store(
                        StoreError::NotFound { .. }
                        | StoreError::SizeMismatch { .. }
                        | StoreError::DigestMismatch { .. }
                        | StoreError::TooLarge { .. },
                    )) => None,
                    Err(e) => return Err(e),
                };
                Ok((digest, found))
            })
            .buffer_unordered(READ_CONCURRENCY)
            .try_collect()
            .await?;
        for (digest, found) in read {
            if let Some(found) = found {
                manifests.insert(digest, found);
            }
        }
        let pairs = |m: &BTreeMap<String, Option<Referrer>>| -> BTreeSet<(String, String)> {
            m.iter()
                .filter_map(|(d, r)| r.as_ref().map(|r| (r.subject.clone(), d.clone())))
                .collect()
        };
        let before = pairs(&old.manifests);
        let after = pairs(&manifests);
        let changed = before
            .symmetric_difference(&after)
            .map(|(subject, _)| subject.clone())
            .collect();
        Ok(State {
            format: FORMAT,
            index: String::new(),
            generation: old.generation,
            manifests,
            changed,
        })
    }

    /// Writes the subject documents `state.changed` names and then `head`, never over a
    /// newer generation.
    async fn publish(&self, state: &State) -> Result<()> {
        let store = self.store();
        for subject in &state.changed {
            let doc = SubjectDoc {
                format: FORMAT,
                generation: state.generation,
                manifests: list_of(state, subject),
            };
            let bytes = encode(&doc)?;
            store
                .update_document(&subject_key(subject)?, |old| {
                    let newer = old
                        .and_then(parse::<SubjectDoc>)
                        .is_some_and(|o| o.format == FORMAT && o.generation >= state.generation);
                    Ok(if newer { None } else { Some(bytes.clone()) })
                })
                .await?;
        }
        let head = encode(&Head {
            format: FORMAT,
            index: state.index.clone(),
            generation: state.generation,
        })?;
        store
            .update_document(&key(HEAD)?, |old| {
                let newer = old
                    .and_then(parse::<Head>)
                    .is_some_and(|o| o.format == FORMAT && o.generation >= state.generation);
                Ok(if newer { None } else { Some(head.clone()) })
            })
            .await?;
        Ok(())
    }

    /// Deletes the referrers documents that no longer apply: subject documents left empty
    /// (up to the current generation) and ones that are not ours to read. Returns the keys
    /// deleted (or that would be, with `dry_run`).
    ///
    /// An update still running in another process with an older view could write a list
    /// back after it was pruned; the next change to that subject's referrers corrects it.
    pub(crate) async fn prune_referrers(&self, dry_run: bool) -> Result<Vec<DocumentKey>> {
        let generation = self.sync_referrers().await?;
        let store = self.store();
        let mut removed = Vec::new();
        for k in store.list_documents(SUBJECTS).await? {
            let Some(doc) = store.read_document(&k).await? else {
                continue;
            };
            let stale = match parse::<SubjectDoc>(&doc.bytes) {
                Some(sub) if sub.format == FORMAT => {
                    sub.manifests.is_empty() && sub.generation <= generation
                }
                Some(_) => false,
                None => true,
            };
            if !stale {
                continue;
            }
            if dry_run {
                removed.push(k);
                continue;
            }
            match store
                .delete_document(&k, Precondition::Matches(doc.version))
                .await
            {
                Ok(true) => removed.push(k),
                Ok(false) | Err(StoreError::Conflict { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(removed)
    }

    /// The subject of every document listed in `index.json` that has one (after bringing
    /// the referrers index up to date): `(referrer, subject)` digests.
    pub(crate) async fn subjects(&self) -> Result<Vec<(String, String)>> {
        self.sync_referrers().await?;
        let state = self
            .store()
            .read_document(&key(STATE)?)
            .await?
            .and_then(|d| parse::<State>(&d.bytes))
            .unwrap_or_default();
        Ok(state
            .manifests
            .into_iter()
            .filter_map(|(d, r)| r.map(|r| (d, r.subject)))
            .collect())
    }
}

fn list_of(state: &State, subject: &str) -> Vec<Descriptor> {
    state
        .manifests
        .values()
        .flatten()
        .filter(|r| r.subject == subject)
        .map(|r| r.descriptor.clone())
        .collect()
}
