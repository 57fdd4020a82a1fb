//! Blob uploads: sessions opened by `POST` (or a monolithic push, or a cross-repository
//! mount), chunks sent by `PATCH`, closed by `PUT`, asked about by `GET`, cancelled by
//! `DELETE`.

use super::*;

pub(super) async fn start_upload(
    registry: &Registry,
    name: &str,
    query: &Query,
    headers: &HeaderMap,
    body: Body,
) -> Handled {
    let store = registry.store().as_ref();
    if let Some(mount) = query.first("mount") {
        let digest = parse_digest(mount)?;
        // Mount only what the source repository really holds; otherwise fall back to an
        // ordinary session, revealing nothing about other repositories.
        if let Some(from) = query.first("from")
            && validate_name(from).is_ok()
            && meta::blob_link(store, from, &digest).await?.is_some()
            && let Some(size) = store.stat(&digest).await?
        {
            // Reused without being written: a collection about to delete it keeps it.
            crate::gc::touch(store, &digest).await?;
            meta::link_blob(store, name, &digest, size).await?;
            // Linked, then checked: a garbage collection that deleted the blob meanwhile
            // either saw the link and restored it, or is seen here (see `gc`).
            if store.stat(&digest).await?.is_none() {
                return open_session(registry, name, query).await;
            }
            return reply(StatusCode::CREATED)
                .header(header::LOCATION, format!("/v2/{name}/blobs/{digest}"))
                .header(DOCKER_CONTENT_DIGEST, digest.as_str())
                .done();
        }
    } else {
        match query.one("digest") {
            Ok(digest) => return monolithic_upload(registry, name, digest, headers, body).await,
            Err(0) => {}
            Err(_) => return Err(digest_invalid("more than one `digest` parameter")),
        }
    }
    open_session(registry, name, query).await
}

/// Answers a POST with a new upload session (202).
pub(super) async fn open_session(registry: &Registry, name: &str, query: &Query) -> Handled {
    let algorithm = match query.first("digest-algorithm") {
        None => None,
        Some(a) => match a.parse::<Algorithm>() {
            Ok(algorithm) if algorithm.is_supported() => Some(algorithm),
            _ => {
                return Err(digest_invalid(format!(
                    "unsupported digest algorithm `{a}`"
                )));
            }
        },
    };
    // A body sent without `digest` is ignored, as the spec requires of registries that
    // answer with a session.
    let uploads = Uploads {
        store: registry.upload_store().as_ref(),
    };
    let id = uuid::Uuid::new_v4();
    let counted = count_session(registry, id)?;
    let created = uploads.create(id, &Session::new(name, algorithm)).await;
    if let Err(e) = created {
        if let Some(context) = counted {
            context.guard.sessions.close(&id);
        }
        return Err(e.into());
    }
    reply(StatusCode::ACCEPTED)
        .header(header::LOCATION, upload_location(name, &id))
        .header(header::RANGE, range_value(0))
        .header(DOCKER_UPLOAD_UUID, id.hyphenated().to_string())
        .header(header::CONTENT_LENGTH, "0")
        .done()
}

/// Counts a new session against [`crate::Limits::max_upload_sessions`] and
/// [`crate::Limits::max_upload_sessions_per_client`] (when served by
/// [`Registry::serve`]): 429 `TOOMANYREQUESTS` with `Retry-After` when there is no room.
/// The client is the user whose credentials the request carries (they were verified
/// before the handler ran), its IP address otherwise.
fn count_session(
    registry: &Registry,
    id: uuid::Uuid,
) -> Result<Option<crate::limits::RequestContext>, Failure> {
    let Some(context) = crate::limits::context() else {
        return Ok(None);
    };
    let config = registry.config();
    let client = crate::limits::client_key(context.peer, config.users.is_some());
    let opened = context.guard.sessions.open(
        id,
        Some(&client),
        &context.guard.limits,
        config.upload_ttl,
        config.clock.now_unix_ms(),
    );
    match opened {
        Ok(()) => Ok(Some(context)),
        Err(full) => {
            let whose = if full.per_client {
                "this client has"
            } else {
                "the registry has"
            };
            Err(crate::limits::too_many_failure(
                full.retry_after,
                &format!("{whose} too many upload sessions open; finish or cancel some first"),
            ))
        }
    }
}

/// Forgets session `id` in the count of open sessions.
fn forget_session(id: &uuid::Uuid) {
    if let Some(context) = crate::limits::context() {
        context.guard.sessions.close(id);
    }
}

pub(super) async fn monolithic_upload(
    registry: &Registry,
    name: &str,
    digest: &str,
    headers: &HeaderMap,
    body: Body,
) -> Handled {
    let digest = parse_digest(digest)?;
    let store = registry.store().as_ref();
    let limit = registry.config().max_upload_size;
    let mut writer = store.writer_with(digest.algorithm()).await?;
    let rules = BodyRules {
        limit,
        idle: registry.config().body_idle_timeout,
        declared: content_length(headers),
    };
    let size = match upload::pump(body, &mut writer, rules, None).await {
        Ok(size) => size,
        Err(e) => {
            writer.abort().await.ok();
            return Err(e.into_failure(limit));
        }
    };
    commit(writer, &digest, size).await?;
    meta::link_blob(store, name, &digest, size).await?;
    // Linked, then checked (see `gc`): the body is gone, so a blob collected in between
    // fails the request, and the client retries.
    if store.stat(&digest).await?.is_none() {
        return Err(Error::BlobCollected { digest }.into());
    }
    blob_created(name, &digest)
}

/// Publishes an upload under the client's digest; a mismatch is the client's fault and
/// publishes nothing.
pub(super) async fn commit(
    writer: ocikit_store::BlobWriter,
    digest: &Digest,
    size: u64,
) -> Result<(), Failure> {
    match writer.commit(digest, size).await {
        Ok(()) => Ok(()),
        Err(ocikit_store::Error::DigestMismatch { actual, .. }) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::DigestInvalid,
            "provided digest did not match uploaded content",
        )
        .detail(serde_json::json!({ "expected": digest.as_str(), "actual": actual.as_str() }))
        .into()),
        Err(ocikit_store::Error::SizeMismatch { expected, actual }) => Err(size_invalid(format!(
            "expected {expected} bytes, received {actual}"
        ))),
        Err(e) => Err(e.into()),
    }
}

pub(super) fn blob_created(name: &str, digest: &Digest) -> Handled {
    reply(StatusCode::CREATED)
        .header(header::LOCATION, format!("/v2/{name}/blobs/{digest}"))
        .header(DOCKER_CONTENT_DIGEST, digest.as_str())
        .header(header::CONTENT_LENGTH, "0")
        .done()
}

/// The chunk a `Content-Range` header announces, checked against the session's size:
/// `Ok(None)` without the header, `Ok(Some(len))` for an in-order range.
pub(super) fn announced_chunk(
    headers: &HeaderMap,
    name: &str,
    id: &uuid::Uuid,
    size: u64,
) -> Result<Option<u64>, Failure> {
    let Some(value) = headers.get(header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let Some((start, end)) = value.to_str().ok().and_then(route::parse_content_range) else {
        return Err(upload_invalid(
            "Content-Range must be `<start>-<end>`, inclusive, with start <= end",
        ));
    };
    if start != size {
        return Err(ApiError::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            ErrorCode::BlobUploadInvalid,
            format!("chunk starts at {start}, but the upload holds {size} bytes"),
        )
        .header(header::LOCATION, &upload_location(name, id))
        .header(header::RANGE, &range_value(size))
        .into());
    }
    let len = end - start + 1;
    if let Some(declared) = content_length(headers)
        && declared != len
    {
        return Err(size_invalid(format!(
            "Content-Length {declared} does not match Content-Range {start}-{end}"
        )));
    }
    Ok(Some(len))
}

pub(super) fn session_id(id: &str) -> Result<uuid::Uuid, Failure> {
    upload::parse_id(id).ok_or_else(upload_unknown)
}

pub(super) async fn patch_upload(
    registry: &Registry,
    name: &str,
    id: &str,
    headers: &HeaderMap,
    body: Body,
) -> Handled {
    let id = session_id(id)?;
    let uploads = Uploads {
        store: registry.upload_store().as_ref(),
    };
    let config = registry.config();
    let Some((mut session, version)) = uploads
        .open(&id, name, config.upload_ttl, config.clock.now_unix_ms())
        .await?
    else {
        return Err(upload_unknown());
    };
    let expected = announced_chunk(headers, name, &id, session.size)?;
    if let Some(context) = crate::limits::context()
        && session.chunks.len() >= context.guard.limits.max_upload_chunks
    {
        return Err(too_large(format!(
            "the upload holds {} chunks, the most allowed; finish it with PUT",
            session.chunks.len()
        )));
    }
    let limit = config.max_upload_size.saturating_sub(session.size);
    if let Some(len) = expected.or(content_length(headers))
        && len > limit
    {
        return Err(too_large(format!(
            "upload would exceed the limit of {} bytes",
            config.max_upload_size
        )));
    }
    let live = match registry.inner.live.take(&id) {
        Some(live) if live.matches(session.chunks.len(), session.size) => Some(live),
        Some(_) => None,
        None if session.chunks.is_empty() && registry.inner.live.has_room() => {
            let algorithm = session.algorithm.clone().unwrap_or(Algorithm::Sha256);
            match registry.store().writer_with(&algorithm).await {
                Ok(writer) => Some(LiveUpload::new(writer, algorithm)),
                Err(_) => None,
            }
        }
        None => None,
    };
    let mut tee = live.map(Tee::start);
    let written = uploads
        .write_chunk(
            body,
            BodyRules {
                limit,
                idle: config.body_idle_timeout,
                // A chunked body is held to its Content-Range as it arrives.
                declared: content_length(headers).or(expected),
            },
            expected,
            tee.as_mut(),
        )
        .await;
    let chunk = match written {
        Ok(chunk) => chunk,
        Err(e) => {
            if let Some(tee) = tee {
                tee.abandon();
            }
            return Err(e);
        }
    };
    let chunk_was_empty = chunk.is_none();
    if let Some(chunk) = chunk {
        session.size += chunk.size;
        session.chunks.push(chunk.clone());
        session.updated_ms = upload::now();
        let key = keys::session(&id)?;
        let written = meta::write_json(
            uploads.store,
            &key,
            &session,
            ocikit_store::Precondition::Matches(version),
        )
        .await;
        if written.is_ok()
            && let Some(context) = crate::limits::context()
        {
            context
                .guard
                .sessions
                .touch(&id, config.clock.now_unix_ms());
        }
        if let Err(e) = written {
            if let Some(tee) = tee {
                tee.abandon();
            }
            uploads.delete_chunks(std::slice::from_ref(&chunk)).await;
            return Err(match e {
                Error::Store(ocikit_store::Error::Conflict { .. }) => ApiError::new(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    ErrorCode::BlobUploadInvalid,
                    "another request changed this upload meanwhile",
                )
                .into(),
                e => e.into(),
            });
        }
    }
    if let Some(tee) = tee
        && let Some(mut live) = tee.finish().await
    {
        if !chunk_was_empty {
            live.chunks += 1;
        }
        if live.matches(session.chunks.len(), session.size) {
            registry.inner.live.put(id, live);
        }
    }
    reply(StatusCode::ACCEPTED)
        .header(header::LOCATION, upload_location(name, &id))
        .header(header::RANGE, range_value(session.size))
        .header(DOCKER_UPLOAD_UUID, id.hyphenated().to_string())
        .header(header::CONTENT_LENGTH, "0")
        .done()
}

pub(super) async fn finish_upload(
    registry: &Registry,
    name: &str,
    id: &str,
    query: &Query,
    headers: &HeaderMap,
    body: Body,
) -> Handled {
    let digest = match query.one("digest") {
        Ok(digest) => parse_digest(digest)?,
        Err(0) => return Err(digest_invalid("the closing PUT needs a `digest` parameter")),
        Err(_) => return Err(digest_invalid("more than one `digest` parameter")),
    };
    let id = session_id(id)?;
    let uploads = Uploads {
        store: registry.upload_store().as_ref(),
    };
    let config = registry.config();
    let Some((session, version)) = uploads
        .open(&id, name, config.upload_ttl, config.clock.now_unix_ms())
        .await?
    else {
        return Err(upload_unknown());
    };
    if let Some(algorithm) = &session.algorithm
        && algorithm != digest.algorithm()
    {
        return Err(digest_invalid(format!(
            "the upload was started for {algorithm}, the digest is {}",
            digest.algorithm()
        )));
    }
    let expected = announced_chunk(headers, name, &id, session.size)?;
    let limit = config.max_upload_size.saturating_sub(session.size);
    let store = registry.store().as_ref();
    let live = registry.inner.live.take(&id).filter(|live| {
        live.matches(session.chunks.len(), session.size) && &live.algorithm == digest.algorithm()
    });
    let mut writer = match live {
        Some(live) => live.writer,
        None => {
            let mut writer = store.writer_with(digest.algorithm()).await?;
            if let Err(e) = uploads.replay(&id, &session.chunks, &mut writer).await {
                writer.abort().await.ok();
                return Err(match e {
                    Error::LostChunk { .. } => upload_unknown(),
                    e => e.into(),
                });
            }
            writer
        }
    };
    let rules = BodyRules {
        limit,
        idle: config.body_idle_timeout,
        declared: content_length(headers),
    };
    let received = match upload::pump(body, &mut writer, rules, None).await {
        Ok(n) => n,
        Err(e) => {
            writer.abort().await.ok();
            return Err(e.into_failure(limit));
        }
    };
    if let Some(expected) = expected
        && expected != received
    {
        writer.abort().await.ok();
        return Err(size_invalid(format!(
            "Content-Range announced {expected} bytes, the body had {received}"
        )));
    }
    // Claim the session: whoever deletes its document owns its chunks.
    let key = keys::session(&id)?;
    match uploads
        .store
        .delete_document(&key, ocikit_store::Precondition::Matches(version))
        .await
    {
        Ok(true) => forget_session(&id),
        Ok(false) => {
            forget_session(&id);
            writer.abort().await.ok();
            return Err(upload_unknown());
        }
        Err(ocikit_store::Error::Conflict { .. }) => {
            writer.abort().await.ok();
            return Err(ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                ErrorCode::BlobUploadInvalid,
                "another request changed this upload meanwhile",
            )
            .into());
        }
        Err(e) => {
            writer.abort().await.ok();
            return Err(e.into());
        }
    }
    let size = session.size + received;
    let committed = commit(writer, &digest, size).await;
    if committed.is_err() {
        uploads.delete_chunks(&session.chunks).await;
    }
    committed?;
    let linked = link_checked(registry, &uploads, &id, &session, &digest, size, received).await;
    uploads.delete_chunks(&session.chunks).await;
    linked?;
    blob_created(name, &digest)
}

/// Links a finished upload's blob, then checks that it is still stored (see `gc`): if a
/// collection deleted it in between, the chunks (still held) are published again. The body
/// of the closing PUT is not held, so an upload whose last bytes came with it fails instead
/// and the client retries.
pub(super) async fn link_checked(
    registry: &Registry,
    uploads: &Uploads<'_>,
    id: &uuid::Uuid,
    session: &Session,
    digest: &Digest,
    size: u64,
    put_bytes: u64,
) -> Result<(), Failure> {
    let store = registry.store().as_ref();
    meta::link_blob(store, &session.repository, digest, size).await?;
    if store.stat(digest).await?.is_some() {
        return Ok(());
    }
    if put_bytes > 0 {
        return Err(Error::BlobCollected {
            digest: digest.clone(),
        }
        .into());
    }
    let mut writer = store.writer_with(digest.algorithm()).await?;
    if let Err(e) = uploads.replay(id, &session.chunks, &mut writer).await {
        writer.abort().await.ok();
        return Err(e.into());
    }
    commit(writer, digest, size).await
}

pub(super) async fn upload_status(registry: &Registry, name: &str, id: &str) -> Handled {
    let id = session_id(id)?;
    let uploads = Uploads {
        store: registry.upload_store().as_ref(),
    };
    let Some((session, _)) = uploads
        .open(
            &id,
            name,
            registry.config().upload_ttl,
            registry.config().clock.now_unix_ms(),
        )
        .await?
    else {
        return Err(upload_unknown());
    };
    reply(StatusCode::NO_CONTENT)
        .header(header::LOCATION, upload_location(name, &id))
        .header(header::RANGE, range_value(session.size))
        .header(DOCKER_UPLOAD_UUID, id.hyphenated().to_string())
        .done()
}

pub(super) async fn cancel_upload(registry: &Registry, name: &str, id: &str) -> Handled {
    let id = session_id(id)?;
    // Whatever the outcome, this process's live writer for it goes.
    drop(registry.inner.live.take(&id));
    let uploads = Uploads {
        store: registry.upload_store().as_ref(),
    };
    let Some((session, version)) = uploads
        .open(
            &id,
            name,
            registry.config().upload_ttl,
            registry.config().clock.now_unix_ms(),
        )
        .await?
    else {
        return Err(upload_unknown());
    };
    if !uploads
        .discard(&keys::session(&id)?, &session, version)
        .await?
    {
        return Err(upload_unknown());
    }
    forget_session(&id);
    reply(StatusCode::NO_CONTENT).done()
}
