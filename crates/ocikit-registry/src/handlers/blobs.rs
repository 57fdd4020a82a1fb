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
            .body(blob_body(blob))
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
        .body(blob_body(blob))
        .done()
}

/// Bytes of a blob read from its local file at a time.
const SERVE_CHUNK: usize = 1 << 20;
/// Read buffers kept for reuse between responses (at most this many MiB held idle).
const SPARE_BUFFERS: usize = 8;
/// Read buffers the client has been sent, for the next reads: a fresh 1 MiB buffer per
/// chunk would be zeroed and page-faulted in every time (a third of the CPU of serving a
/// blob from tmpfs).
static SPARE: std::sync::Mutex<Vec<Vec<u8>>> = std::sync::Mutex::new(Vec::new());

/// A chunk read into a spare buffer, which goes back to [`SPARE`] once the response has
/// sent it.
struct Chunk {
    buf: Vec<u8>,
    len: usize,
}

impl AsRef<[u8]> for Chunk {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        if buf.len() == SERVE_CHUNK
            && let Ok(mut spare) = SPARE.lock()
            && spare.len() < SPARE_BUFFERS
        {
            spare.push(buf);
        }
    }
}

/// The body of an opened blob. One with a local file is read from it by positioned reads
/// into reused buffers (two in flight, each on the blocking pool); others stream as their
/// store sends them. A file shorter than the blob (truncated behind the store's back) ends
/// the body with an error, so the client sees it cut off.
pub(super) fn blob_body(blob: ocikit_store::Blob) -> Body {
    let file = blob.local_file().map(std::fs::File::try_clone);
    let Some(Ok(file)) = file else {
        return Body::from_stream(blob.into_stream());
    };
    let range = blob.range();
    let file = std::sync::Arc::new(file);
    let chunks = (range.start..range.end)
        .step_by(SERVE_CHUNK)
        .map(move |at| {
            let len =
                usize::try_from((range.end - at).min(SERVE_CHUNK as u64)).unwrap_or(SERVE_CHUNK);
            (at, len)
        });
    let stream = futures::stream::iter(chunks)
        .map(move |(at, len)| {
            let file = file.clone();
            async move {
                let read = tokio::task::spawn_blocking(move || {
                    use std::os::unix::fs::FileExt as _;
                    let mut buf = SPARE
                        .lock()
                        .ok()
                        .and_then(|mut spare| spare.pop())
                        .unwrap_or_else(|| vec![0u8; SERVE_CHUNK]);
                    file.read_exact_at(&mut buf[..len], at)?;
                    Ok::<_, std::io::Error>(Bytes::from_owner(Chunk { buf, len }))
                })
                .await;
                read.map_err(std::io::Error::other)?
            }
        })
        .buffered(2);
    Body::from_stream(stream)
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
