//! The pull-through cache's hooks into the endpoints (the cache itself is
//! [`crate::proxy`]): writes refused, manifests brought up to date before they are served,
//! blobs the store lacks fetched from the upstream while they stream to the client.

use std::sync::Arc;

use tokio::io::AsyncWriteExt;

use super::manifests::{Reference, parse_reference};
use super::*;
use crate::proxy::{Flight, FlightGuard, Joined, Proxy, UpstreamBlob, UpstreamManifest};

/// Chunks buffered between the fetch and a slow client (the fetch waits beyond them).
const CLIENT_CHUNKS: usize = 16;

/// Pushes and deletions are refused with 405 `UNSUPPORTED`, as Distribution refuses them in
/// proxy mode.
pub(super) fn refuse_writes(method: &Method) -> Result<(), Failure> {
    if method == Method::GET || method == Method::HEAD {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::Unsupported,
        "this registry is a pull-through cache: it cannot be pushed to or deleted from",
    )
    .header(header::ALLOW, "GET, HEAD")
    .into())
}

/// The response to a client for an upstream's error: its `not_found` for content the
/// upstream does not have, 503 `UNAVAILABLE` when it cannot be asked, 502 for bad content.
fn upstream_failure(error: &Error, not_found: impl FnOnce() -> Failure) -> Failure {
    let message = crate::error_chain(error);
    match error {
        Error::UpstreamNotFound { .. } => not_found(),
        Error::UpstreamContent { .. } => {
            ApiError::new(StatusCode::BAD_GATEWAY, ErrorCode::Unavailable, message).into()
        }
        _ => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Unavailable,
            message,
        )
        .into(),
    }
}

fn bad_content(proxy: &Proxy, reason: String) -> Error {
    Error::UpstreamContent {
        upstream: proxy.upstream.name().to_owned(),
        reason,
    }
}

/// Makes the store hold what `name:reference` is: a manifest by digest is fetched once and
/// then served from the cache for good; a tag is asked of the upstream unless it was
/// validated less than the TTL ago, and is served as cached when the upstream cannot answer.
pub(super) async fn refresh_manifest(
    registry: &Registry,
    proxy: &Proxy,
    name: &str,
    reference: &str,
) -> Result<(), Failure> {
    let store = registry.store().as_ref();
    match parse_reference(reference)? {
        Reference::Digest(digest) => {
            if meta::manifest(store, name, &digest).await?.is_some()
                && store.stat(&digest).await?.is_some()
            {
                registry.metrics().cache("manifest", "hit");
                return Ok(());
            }
            registry.metrics().cache("manifest", "miss");
            let manifest = proxy
                .upstream
                .manifest(name, digest.as_str())
                .await
                .map_err(|e| upstream_failure(&e, || manifest_unknown(reference)))?;
            let actual = Digest::compute(digest.algorithm(), &manifest.bytes)
                .map_err(|_| digest_invalid("unsupported digest algorithm"))?;
            if actual != digest {
                let e = bad_content(proxy, format!("manifest {digest} hashes to {actual}"));
                return Err(upstream_failure(&e, || manifest_unknown(reference)));
            }
            cache_manifest(registry, proxy, name, &digest, manifest).await
        }
        Reference::Tag(tag) => {
            let now = registry.config().clock.now_unix_ms();
            let cached = meta::tag(store, name, &tag).await?;
            if cached.is_some() && proxy.state.fresh(name, &tag, proxy.tag_ttl, now) {
                registry.metrics().cache("manifest", "hit");
                return Ok(());
            }
            let manifest = match proxy.upstream.manifest(name, &tag).await {
                Ok(manifest) => {
                    registry.metrics().cache("manifest", "miss");
                    manifest
                }
                Err(e) if cached.is_some() => {
                    registry.metrics().cache("manifest", "stale");
                    tracing::warn!(
                        repository = name, tag = %tag, error = %crate::error_chain(&e),
                        "the upstream cannot revalidate the tag: serving it as cached"
                    );
                    return Ok(());
                }
                // A tag neither cached nor answerable is unknown, as Distribution's proxy
                // says (its remote lookup failed, then its local one): clients probe optional
                // tags (signatures, referrers) and must see them absent, not fail.
                Err(e @ Error::UpstreamUnavailable { .. }) => {
                    return Err(ApiError::new(
                        StatusCode::NOT_FOUND,
                        ErrorCode::ManifestUnknown,
                        format!("tag `{tag}` is not cached, and {}", crate::error_chain(&e)),
                    )
                    .into());
                }
                Err(e) => return Err(upstream_failure(&e, || manifest_unknown(reference))),
            };
            let digest = Digest::sha256(&manifest.bytes);
            let stored = cached.as_ref() == Some(&digest)
                && meta::manifest(store, name, &digest).await?.is_some()
                && store.stat(&digest).await?.is_some();
            if !stored {
                cache_manifest(registry, proxy, name, &digest, manifest).await?;
                meta::set_tag(store, name, &tag, &digest).await?;
            }
            proxy.state.validate(name, &tag, now);
            Ok(())
        }
    }
}

/// Checks a manifest from the upstream with the one strict parser and stores it (bytes,
/// record, referrer entry) as a push would.
async fn cache_manifest(
    registry: &Registry,
    proxy: &Proxy,
    name: &str,
    digest: &Digest,
    manifest: UpstreamManifest,
) -> Result<(), Failure> {
    let refuse = |reason: String| {
        let e = bad_content(proxy, reason);
        upstream_failure(&e, || manifest_unknown(digest.as_str()))
    };
    let limit = registry.config().max_manifest_size;
    if manifest.bytes.len() > limit {
        return Err(refuse(format!(
            "manifest {digest} is larger than {limit} bytes"
        )));
    }
    let media_type = media_type::essence(&manifest.media_type).trim().to_owned();
    if !media_type::is_manifest_like(&media_type) && !media_type::is_index_like(&media_type) {
        return Err(refuse(format!(
            "`{media_type}` is not a manifest or index media type"
        )));
    }
    let parsed = super::manifests::parse_manifest(manifest.bytes.clone(), &media_type, limit)
        .map_err(|_| refuse(format!("manifest {digest} is not a valid {media_type}")))?;
    let store = registry.store().as_ref();
    store.put_verified(digest, &manifest.bytes).await?;
    let size = manifest.bytes.len() as u64;
    meta::put_manifest(
        store,
        name,
        digest,
        &ManifestRecord {
            media_type: media_type.clone(),
            size,
            subject: parsed.subject.clone(),
            pushed_ms: Some(upload::now()),
        },
    )
    .await?;
    if let Some(subject) = &parsed.subject {
        let referrer = Referrer {
            media_type,
            digest: digest.clone(),
            size,
            artifact_type: parsed.artifact_type.clone(),
            annotations: parsed.annotations.clone(),
        };
        meta::add_referrer(store, name, subject, referrer).await?;
    }
    Ok(())
}

/// A blob the repository does not hold (yet): its size from the upstream for `HEAD`; for
/// `GET`, the fetch in flight is joined (and the blob served from the store once it is
/// there), or one is started and streamed to this client as it is verified and stored.
pub(super) async fn get_blob(
    registry: &Registry,
    proxy: &Proxy,
    name: &str,
    digest: &Digest,
    head: bool,
) -> Handled {
    let not_found = || blob_unknown(digest.as_str());
    if head {
        let size = proxy
            .upstream
            .blob_size(name, digest)
            .await
            .map_err(|e| upstream_failure(&e, not_found))?;
        return blob_reply(digest)
            .header(header::CONTENT_LENGTH, size.to_string())
            .done();
    }
    match proxy.join(name, digest) {
        Joined::Follower(mut flight) => {
            let outcome = flight
                .wait_for(|f| !matches!(f, Flight::Running))
                .await
                .map(|f| f.clone());
            match outcome {
                Ok(Flight::Stored) => serve_stored(registry, name, digest).await,
                Ok(Flight::Failed(e)) => Err(upstream_failure(&e, not_found)),
                Ok(Flight::Running) | Err(_) => Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::Unavailable,
                    "the upstream fetch of this blob was abandoned",
                )
                .into()),
            }
        }
        Joined::Leader(guard) => {
            // A fetch that finished between this request's look at the store and its
            // joining: nothing to fetch.
            let store = registry.store().as_ref();
            if meta::blob_link(store, name, digest).await?.is_some()
                && store.stat(digest).await?.is_some()
            {
                guard.finish(Flight::Stored);
                return serve_stored(registry, name, digest).await;
            }
            let blob = match proxy.upstream.blob(name, digest).await {
                Ok(blob) => blob,
                Err(e) => {
                    let failure = upstream_failure(&e, not_found);
                    guard.finish(Flight::Failed(Arc::new(e)));
                    return Err(failure);
                }
            };
            let limit = registry.config().max_upload_size;
            if blob.size > limit {
                let e = bad_content(
                    proxy,
                    format!("blob {digest} declares {} bytes, over {limit}", blob.size),
                );
                let failure = upstream_failure(&e, not_found);
                guard.finish(Flight::Failed(Arc::new(e)));
                return Err(failure);
            }
            let size = blob.size;
            let (tx, rx) = tokio::sync::mpsc::channel(CLIENT_CHUNKS);
            tokio::spawn(fill(
                registry.clone(),
                proxy.clone(),
                name.to_owned(),
                digest.clone(),
                blob,
                guard,
                tx,
            ));
            let body = futures::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|item| (item, rx))
            });
            blob_reply(digest)
                .header(header::CONTENT_LENGTH, size.to_string())
                .body(Body::from_stream(body))
                .done()
        }
    }
}

fn blob_reply(digest: &Digest) -> Reply {
    reply(StatusCode::OK)
        .header(DOCKER_CONTENT_DIGEST, digest.as_str())
        .header(header::CONTENT_TYPE, "application/octet-stream")
}

/// The whole blob from the store (once a fetch this request waited on stored it).
async fn serve_stored(registry: &Registry, name: &str, digest: &Digest) -> Handled {
    let store = registry.store().as_ref();
    if meta::blob_link(store, name, digest).await?.is_none() {
        return Err(blob_unknown(digest.as_str()));
    }
    let Some(blob) = store.get(digest, None).await? else {
        return Err(blob_unknown(digest.as_str()));
    };
    blob_reply(digest)
        .header(header::CONTENT_LENGTH, blob.len().to_string())
        .body(Body::from_stream(blob.into_stream()))
        .done()
}

type ClientTx = tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>;

/// The fetch, on a task of its own: every chunk to the verifying writer and to the client
/// (while it listens), the last one held back until the blob is verified, stored and linked.
async fn fill(
    registry: Registry,
    proxy: Proxy,
    name: String,
    digest: Digest,
    blob: UpstreamBlob,
    guard: FlightGuard,
    tx: ClientTx,
) {
    let mut client = Some(tx);
    let outcome = store_and_send(&registry, &proxy, &name, &digest, blob, &mut client).await;
    match outcome {
        Ok(()) => guard.finish(Flight::Stored),
        Err(e) => {
            tracing::warn!(
                repository = %name, digest = %digest, error = %crate::error_chain(&e),
                "fetching a blob from the upstream failed; nothing was cached"
            );
            if let Some(tx) = &client {
                let reason = std::io::Error::other(crate::error_chain(&e));
                tx.send(Err(reason)).await.ok();
            }
            guard.finish(Flight::Failed(Arc::new(e)));
        }
    }
}

async fn store_and_send(
    registry: &Registry,
    proxy: &Proxy,
    name: &str,
    digest: &Digest,
    mut blob: UpstreamBlob,
    client: &mut Option<ClientTx>,
) -> Result<(), Error> {
    let store = registry.store().as_ref();
    let size = blob.size;
    let mut writer = store.writer_with(digest.algorithm()).await?;
    let mut held: Option<Bytes> = None;
    let mut received = 0u64;
    while let Some(chunk) = blob.bytes.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(e) => {
                writer.abort().await.ok();
                return Err(e);
            }
        };
        received += chunk.len() as u64;
        if received > size {
            writer.abort().await.ok();
            return Err(bad_content(
                proxy,
                format!("blob {digest} is longer than the {size} bytes declared"),
            ));
        }
        if let Err(e) = writer.write_all(&chunk).await {
            writer.abort().await.ok();
            return Err(ocikit_store::Error::Stream(e).into());
        }
        if let Some(previous) = held.replace(chunk) {
            send(client, previous).await;
        }
    }
    match writer.commit(digest, size).await {
        Ok(()) => {}
        Err(ocikit_store::Error::DigestMismatch { actual, .. }) => {
            return Err(bad_content(
                proxy,
                format!("blob {digest} hashes to {actual}"),
            ));
        }
        Err(ocikit_store::Error::SizeMismatch { actual, .. }) => {
            return Err(bad_content(
                proxy,
                format!("blob {digest} has {actual} bytes, not the {size} declared"),
            ));
        }
        Err(e) => return Err(e.into()),
    }
    meta::link_blob(store, name, digest, size).await?;
    if let Some(last) = held {
        send(client, last).await;
    }
    Ok(())
}

/// Hands a chunk to the client; one that went away stops getting them (the fetch goes on).
async fn send(client: &mut Option<ClientTx>, chunk: Bytes) {
    if let Some(tx) = client
        && tx.send(Ok(chunk)).await.is_err()
    {
        *client = None;
    }
}
