//! Blobs: `GET`/`HEAD` (with `Range`) and `DELETE /v2/<name>/blobs/<digest>`.

use super::*;

pub(super) async fn get_blob(
    registry: &Registry,
    name: &str,
    digest: &str,
    head: bool,
    headers: &HeaderMap,
) -> Handled {
    let digest = parse_digest(digest)?;
    let store = registry.store().as_ref();
    let linked = meta::blob_link(store, name, &digest).await?.is_some();
    // A GET of the whole blob learns the size from the read itself: no HEAD before it (on
    // S3, one request less per blob pulled). HEAD and ranged GETs need the size first.
    let whole = !head && header_str(headers, &header::RANGE).is_none();
    let (size, opened) = match linked {
        true if whole => match store.get(&digest, None).await? {
            Some(blob) => (Some(blob.size()), Some(blob)),
            None => (None, None),
        },
        true => (store.stat(&digest).await?, None),
        false => (None, None),
    };
    let Some(size) = size else {
        if let Some(proxy) = &registry.config().proxy {
            registry.metrics().cache("blob", "miss");
            return proxy::get_blob(registry, proxy, name, &digest, head).await;
        }
        return Err(missing(registry, name, blob_unknown(digest.as_str())).await);
    };
    if registry.config().proxy.is_some() {
        registry.metrics().cache("blob", "hit");
    }
    let r = reply(StatusCode::OK)
        .header(DOCKER_CONTENT_DIGEST, digest.as_str())
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CONTENT_TYPE, "application/octet-stream");
    if head {
        // HEAD never reads the blob.
        return r.header(header::CONTENT_LENGTH, size.to_string()).done();
    }
    if let Some(blob) = opened {
        return r
            .header(header::CONTENT_LENGTH, blob.len().to_string())
            .body(Body::from_stream(blob.into_stream()))
            .done();
    }
    let range = parse_range_header(headers, size);
    let (r, range) = match range {
        RangeRequest::Whole => (r, None),
        RangeRequest::Partial(range) => (
            Reply {
                status: StatusCode::PARTIAL_CONTENT,
                ..r
            }
            .header(
                header::CONTENT_RANGE,
                format!("bytes {}-{}/{size}", range.start, range.end - 1),
            ),
            Some(range),
        ),
        RangeRequest::Unsatisfiable => {
            return reply(StatusCode::RANGE_NOT_SATISFIABLE)
                .header(header::CONTENT_RANGE, format!("bytes */{size}"))
                .done();
        }
    };
    let Some(blob) = store.get(&digest, range).await? else {
        return Err(blob_unknown(digest.as_str()));
    };
    r.header(header::CONTENT_LENGTH, blob.len().to_string())
        .body(Body::from_stream(blob.into_stream()))
        .done()
}

pub(super) fn parse_range_header(headers: &HeaderMap, size: u64) -> RangeRequest {
    route::parse_range(header_str(headers, &header::RANGE), size)
}

pub(super) async fn delete_blob(registry: &Registry, name: &str, digest: &str) -> Handled {
    if !registry.config().delete_enabled {
        return Err(deletion_disabled("GET, HEAD"));
    }
    let digest = parse_digest(digest)?;
    if !meta::unlink_blob(registry.store().as_ref(), name, &digest).await? {
        return Err(missing(registry, name, blob_unknown(digest.as_str())).await);
    }
    reply(StatusCode::ACCEPTED).done()
}
