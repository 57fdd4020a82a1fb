//! Upload sessions that stream to storage and survive restarts.
//!
//! Each PATCH body is streamed into the upload store as its own blob, prefixed by a random
//! 16-byte nonce (so two sessions receiving the same bytes never share, and never delete, each
//! other's chunk, and no chunk has the digest of any content). The session document,
//! `sessions/<uuid>` in the upload store, lists the chunks in order and is advanced by
//! compare-and-swap, which serialises concurrent PATCHes: the loser's chunk is discarded and
//! it gets 416. The closing PUT streams the chunks (and its own body) into a
//! [`ocikit_store::BlobWriter`] on the content store and commits under the client's digest;
//! nothing is published when it does not match.

use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use futures::StreamExt;
use ocikit_digest::{Algorithm, Digest};
use ocikit_store::{BlobWriter, DocumentKey, Precondition, Store, StoreExt, Version};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

use crate::error::{Failure, size_invalid, too_large, upload_invalid};
use crate::live::Tee;
use crate::meta::{read_json, write_json};
use crate::{Error, Result, keys};

/// Length of the nonce that starts every scratch chunk.
pub(crate) const NONCE_LEN: u64 = 16;

/// One received chunk: its scratch blob and the number of content bytes in it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Chunk {
    pub(crate) scratch: Digest,
    pub(crate) size: u64,
}

/// An upload session's document.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Session {
    pub(crate) repository: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) algorithm: Option<Algorithm>,
    pub(crate) chunks: Vec<Chunk>,
    pub(crate) size: u64,
    /// Milliseconds since the Unix epoch.
    pub(crate) created_ms: u64,
    /// Milliseconds since the Unix epoch of the last change.
    pub(crate) updated_ms: u64,
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl Session {
    pub(crate) fn new(repository: &str, algorithm: Option<Algorithm>) -> Session {
        let t = now();
        Session {
            repository: repository.to_owned(),
            algorithm,
            chunks: Vec::new(),
            size: 0,
            created_ms: t,
            updated_ms: t,
        }
    }

    pub(crate) fn is_expired(&self, ttl: Duration, now: u64) -> bool {
        let ttl = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        now.saturating_sub(self.updated_ms) >= ttl
    }
}

/// Parses a session id from a URL: only the canonical hyphenated lowercase form, so an id is
/// never anything but a UUID (no paths, no other spellings of the same session).
pub(crate) fn parse_id(id: &str) -> Option<Uuid> {
    let uuid = Uuid::try_parse(id).ok()?;
    (uuid.hyphenated().to_string() == id).then_some(uuid)
}

/// Why copying a request body stopped.
pub(crate) enum PumpError {
    /// The client's body failed (disconnect, framing error) or stalled.
    Client,
    /// The body ended or stalled before the `Content-Length` it declared.
    Short {
        /// The declared length.
        declared: u64,
        /// The bytes that arrived.
        received: u64,
    },
    /// The body went past the `Content-Length` it declared.
    Long {
        /// The declared length.
        declared: u64,
    },
    /// The body exceeded the limit.
    TooLarge,
    /// Writing to the store failed.
    Sink(std::io::Error),
}

impl PumpError {
    pub(crate) fn into_failure(self, limit: u64) -> Failure {
        match self {
            PumpError::Client => {
                upload_invalid("the request body could not be read in full, or stalled")
            }
            PumpError::Short { declared, received } => size_invalid(format!(
                "Content-Length declared {declared} bytes, {received} arrived"
            )),
            PumpError::Long { declared } => size_invalid(format!(
                "the body is longer than the {declared} bytes its Content-Length declared"
            )),
            PumpError::TooLarge => too_large(format!("upload exceeds the limit of {limit} bytes")),
            PumpError::Sink(e) => Failure::Internal(Error::Store(ocikit_store::Error::Stream(e))),
        }
    }
}

/// How a request body is read: at most `limit` bytes, giving up when nothing arrives for
/// `idle`, and `declared` is its `Content-Length`, if any.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BodyRules {
    pub(crate) limit: u64,
    pub(crate) idle: Duration,
    pub(crate) declared: Option<u64>,
}

/// Streams a request body into `sink` under `rules`; returns the bytes copied.
/// With a `tee`, every chunk is also handed to a live writer (see [`crate::live`]).
pub(crate) async fn pump(
    body: Body,
    sink: &mut BlobWriter,
    rules: BodyRules,
    mut tee: Option<&mut Tee>,
) -> Result<u64, PumpError> {
    let mut stream = body.into_data_stream();
    let mut copied = 0u64;
    let failed = |copied: u64| match rules.declared {
        Some(declared) if copied < declared => PumpError::Short {
            declared,
            received: copied,
        },
        _ => PumpError::Client,
    };
    let limit = rules.limit;
    loop {
        let next = tokio::time::timeout(rules.idle, stream.next())
            .await
            .map_err(|_| failed(copied))?;
        let Some(chunk) = next else { break };
        let chunk = chunk.map_err(|_| failed(copied))?;
        copied = copied.saturating_add(chunk.len() as u64);
        if copied > limit {
            return Err(PumpError::TooLarge);
        }
        // A body longer than its `Content-Length` (hyper frames by it, so this is a guard
        // against any framing that would not) is cut off here, not stored.
        if let Some(declared) = rules.declared
            && copied > declared
        {
            return Err(PumpError::Long { declared });
        }
        if let Some(tee) = tee.as_deref_mut() {
            tee.send(&chunk).await;
        }
        sink.write_all(&chunk).await.map_err(PumpError::Sink)?;
    }
    Ok(copied)
}

/// The upload store and the session operations on it.
pub(crate) struct Uploads<'a> {
    pub(crate) store: &'a dyn Store,
}

impl Uploads<'_> {
    /// Stores a new session under `id` (a fresh v4 UUID).
    pub(crate) async fn create(&self, id: Uuid, session: &Session) -> Result<Uuid> {
        write_json(
            self.store,
            &keys::session(&id)?,
            session,
            Precondition::MustNotExist,
        )
        .await?;
        Ok(id)
    }

    /// Reads a live session of repository `name`; `None` when it is unknown, bound to
    /// another repository, or expired (an expired one is cleaned up on the way).
    pub(crate) async fn open(
        &self,
        id: &Uuid,
        name: &str,
        ttl: Duration,
        now_ms: u64,
    ) -> Result<Option<(Session, Version)>> {
        let key = keys::session(id)?;
        let Some((session, version)) = read_json::<Session>(self.store, &key).await? else {
            return Ok(None);
        };
        if session.repository != name {
            return Ok(None);
        }
        if session.is_expired(ttl, now_ms) {
            self.discard(&key, &session, version).await?;
            return Ok(None);
        }
        Ok(Some((session, version)))
    }

    /// Deletes a session (if still at `version`) and then its chunks.
    pub(crate) async fn discard(
        &self,
        key: &DocumentKey,
        session: &Session,
        version: Version,
    ) -> Result<bool> {
        match self
            .store
            .delete_document(key, Precondition::Matches(version))
            .await
        {
            Ok(true) => {}
            Ok(false) | Err(ocikit_store::Error::Conflict { .. }) => return Ok(false),
            Err(e) => return Err(e.into()),
        }
        self.delete_chunks(&session.chunks).await;
        Ok(true)
    }

    /// Deletes scratch chunks, best effort (a leftover is swept later).
    pub(crate) async fn delete_chunks(&self, chunks: &[Chunk]) {
        for chunk in chunks {
            self.store.delete(&chunk.scratch).await.ok();
        }
    }

    /// Streams `body` into a new scratch chunk (nonce first); `None` when the body was empty.
    pub(crate) async fn write_chunk(
        &self,
        body: Body,
        rules: BodyRules,
        expected: Option<u64>,
        tee: Option<&mut Tee>,
    ) -> Result<Option<Chunk>, Failure> {
        let limit = rules.limit;
        let mut writer = self.store.writer().await?;
        let nonce = Uuid::new_v4();
        if let Err(e) = writer.write_all(nonce.as_bytes()).await {
            writer.abort().await.ok();
            return Err(PumpError::Sink(e).into_failure(limit));
        }
        let size = match pump(body, &mut writer, rules, tee).await {
            Ok(size) => size,
            Err(e) => {
                writer.abort().await.ok();
                return Err(e.into_failure(limit));
            }
        };
        if let Some(expected) = expected
            && expected != size
        {
            writer.abort().await.ok();
            return Err(size_invalid(format!(
                "Content-Range announced {expected} bytes, the body had {size}"
            )));
        }
        if size == 0 {
            writer.abort().await.ok();
            return Ok(None);
        }
        let (scratch, _) = writer.finish().await?;
        Ok(Some(Chunk { scratch, size }))
    }

    /// Streams a session's chunks, in order, into `writer`.
    pub(crate) async fn replay(
        &self,
        id: &Uuid,
        chunks: &[Chunk],
        writer: &mut BlobWriter,
    ) -> Result<()> {
        for chunk in chunks {
            let range = NONCE_LEN..NONCE_LEN + chunk.size;
            let Some(blob) = self.store.get(&chunk.scratch, Some(range)).await? else {
                return Err(Error::LostChunk {
                    session: id.to_string(),
                    chunk: chunk.scratch.clone(),
                });
            };
            let mut stream = blob.into_stream();
            while let Some(bytes) = stream.next().await {
                writer
                    .write_all(&bytes?)
                    .await
                    .map_err(ocikit_store::Error::Stream)?;
            }
        }
        Ok(())
    }
}

/// Removes the sessions `sessions` counts that have been idle for the TTL, without waiting
/// for the next sweep: each one's document is read again (another process may have
/// advanced it), and if it too says expired, it and its chunks are deleted. Sessions gone
/// from the store are forgotten; those another process advanced are counted from then.
pub(crate) async fn expire_counted(registry: &crate::Registry, sessions: &crate::limits::Sessions) {
    let config = registry.config();
    let now_ms = config.clock.now_unix_ms();
    let uploads = Uploads {
        store: registry.upload_store().as_ref(),
    };
    for id in sessions.expired(config.upload_ttl, now_ms) {
        let Ok(key) = keys::session(&id) else {
            sessions.close(&id);
            continue;
        };
        match read_json::<Session>(uploads.store, &key).await {
            Ok(None) => sessions.close(&id),
            Ok(Some((session, version))) if session.is_expired(config.upload_ttl, now_ms) => {
                drop(registry.inner.live.take(&id));
                match uploads.discard(&key, &session, version).await {
                    Ok(_) => sessions.close(&id),
                    Err(e) => tracing::warn!(
                        session = %id, error = %crate::error_chain(&e),
                        "removing an expired upload session failed"
                    ),
                }
            }
            Ok(Some((session, _))) => sessions.touch(&id, session.updated_ms),
            Err(e) => tracing::warn!(
                session = %id, error = %crate::error_chain(&e),
                "reading an upload session to expire it failed"
            ),
        }
    }
}

/// What [`crate::Registry::sweep_uploads`] removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SweepReport {
    /// Sessions removed because they were idle longer than the configured time to live.
    pub expired_sessions: usize,
    /// Scratch chunks removed because no session listed them on two sweeps in a row (left by
    /// a crash between storing a chunk and recording it, or between a session's end and its
    /// chunks' deletion).
    pub orphan_chunks: usize,
}

/// Sweeps the upload store: expired sessions go, and chunks that were orphans at the
/// previous sweep too (`suspects`, updated in place) go.
pub(crate) async fn sweep(
    store: &dyn Store,
    ttl: Duration,
    now_ms: u64,
    suspects: &mut HashSet<Digest>,
) -> Result<SweepReport> {
    let uploads = Uploads { store };
    let mut report = SweepReport::default();
    let mut live = HashSet::new();
    let t = now_ms;
    for key in store.list_documents(keys::SESSIONS_PREFIX).await? {
        let Some((session, version)) = read_json::<Session>(store, &key).await? else {
            continue;
        };
        if session.is_expired(ttl, t) {
            if uploads.discard(&key, &session, version).await? {
                report.expired_sessions += 1;
            }
        } else {
            live.extend(session.chunks.into_iter().map(|c| c.scratch));
        }
    }
    let mut orphans = HashSet::new();
    let mut listed = store.list();
    while let Some(digest) = listed.next().await {
        let digest = digest?;
        if !live.contains(&digest) {
            orphans.insert(digest);
        }
    }
    drop(listed);
    let mut next_suspects = HashSet::new();
    for digest in orphans {
        if suspects.contains(&digest) {
            if store.delete(&digest).await? {
                report.orphan_chunks += 1;
            }
        } else {
            next_suspects.insert(digest);
        }
    }
    *suspects = next_suspects;
    Ok(report)
}
