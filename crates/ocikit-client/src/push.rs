//! Pushing: blobs the registry lacks (mounted, or uploaded in one PUT or in chunks), then
//! manifests, children before parents.

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use ocikit_digest::graph::{self, Limits};
use ocikit_digest::oci_spec::image::Descriptor;
use ocikit_digest::{Digest, descriptor};
use ocikit_layout::Layout;
use ocikit_layout::document::is_document;
use ocikit_layout::progress::{self, Event, Progress};
use reqwest::header;
use reqwest::{Method, StatusCode, Url};

use super::{Body, Client, Request, TransferReport};
use crate::{Error, Operation, Result};

/// How a push runs.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct PushOptions {
    /// Blobs uploaded at once (at least 1), largest first.
    pub concurrency: usize,
    /// Another repository of the same registry to mount blobs from (`?mount=&from=`); a
    /// registry that cannot mount starts an ordinary upload instead.
    pub mount_from: Option<String>,
    /// Where [`progress::Operation::Copy`] events go.
    pub progress: Progress,
}

impl Default for PushOptions {
    fn default() -> PushOptions {
        PushOptions::new()
    }
}

impl PushOptions {
    /// [`super::DEFAULT_CONCURRENCY`] blobs at once, no mounting, no progress.
    pub fn new() -> PushOptions {
        PushOptions {
            concurrency: super::DEFAULT_CONCURRENCY,
            mount_from: None,
            progress: Progress::none(),
        }
    }

    /// These options uploading `n` blobs at once.
    pub fn with_concurrency(mut self, n: usize) -> PushOptions {
        self.concurrency = n.max(1);
        self
    }

    /// These options mounting blobs from `repository` where the registry can.
    pub fn with_mount_from(mut self, repository: Option<String>) -> PushOptions {
        self.mount_from = repository;
        self
    }

    /// These options reporting to `progress`.
    pub fn with_progress(mut self, progress: Progress) -> PushOptions {
        self.progress = progress;
        self
    }
}

/// How one blob got to the registry.
enum Pushed {
    Present,
    Mounted,
    Uploaded(u64),
}

pub(super) async fn push(
    client: &Client,
    layout: &Layout,
    root: &Descriptor,
    repository: &str,
    tag: Option<&str>,
    options: &PushOptions,
) -> Result<TransferReport> {
    client.validate_repository(repository)?;
    if let Some(tag) = tag {
        ocikit_digest::reference::validate_tag(tag).map_err(|e| Error::InvalidName {
            registry: client.registry().to_string(),
            name: tag.to_string(),
            source: e,
        })?;
    }
    if let Some(from) = &options.mount_from {
        client.validate_repository(from)?;
    }
    let (documents, mut blobs) = walk(client, layout, repository, root).await?;
    let mut report = TransferReport {
        blobs: blobs.len(),
        total_bytes: blobs.iter().map(|(_, size)| size).sum(),
        ..TransferReport::default()
    };
    blobs.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.as_str().cmp(b.0.as_str())));
    let results: Vec<Pushed> = futures::stream::iter(blobs)
        .map(|(digest, size)| push_blob(client, layout, repository, digest, size, options))
        .buffer_unordered(options.concurrency.max(1))
        .try_collect()
        .await?;
    for result in results {
        match result {
            Pushed::Present => report.skipped += 1,
            Pushed::Mounted => report.mounted += 1,
            Pushed::Uploaded(bytes) => {
                report.transferred += 1;
                report.bytes += bytes;
            }
        }
    }
    let root_digest = digest_of(client, repository, root)?;
    for (descriptor, bytes) in documents {
        let digest = digest_of(client, repository, &descriptor)?;
        let reference = match tag {
            Some(tag) if digest == root_digest => tag.to_string(),
            _ => digest.to_string(),
        };
        let document = ocikit_layout::document::parse(&descriptor, bytes.clone()).map_err(|e| {
            Error::Layout {
                registry: client.registry().to_string(),
                repository: repository.to_string(),
                operation: Box::new(Operation::ReadManifest {
                    digest: digest.clone(),
                }),
                source: Box::new(e),
            }
        })?;
        let acknowledged = put_manifest(client, repository, &reference, &descriptor, bytes).await?;
        if let Some(subject) = document.subject()
            && !acknowledged
        {
            // No `OCI-Subject`: the registry keeps no referrers index; the tag schema.
            let subject = digest_of(client, repository, subject)?;
            super::referrers::add_to_fallback(client, repository, &subject, &descriptor, &document)
                .await?;
        }
        report.manifests += 1;
    }
    report.root = Some(root.clone());
    Ok(report)
}

fn digest_of(client: &Client, repository: &str, d: &Descriptor) -> Result<Digest> {
    descriptor::digest_of(d).map_err(|e| Error::InvalidResponse {
        registry: client.registry().to_string(),
        repository: repository.to_string(),
        operation: Box::new(Operation::ReadLayoutDescriptor),
        reason: e.to_string(),
    })
}

/// The graph under `root` in `layout`, by the one walk ([`ocikit_digest::graph`], its
/// limits; documents read and verified from the layout): the documents children first, and
/// the leaf blobs.
async fn walk(
    client: &Client,
    layout: &Layout,
    repository: &str,
    root: &Descriptor,
) -> Result<(Vec<(Descriptor, Bytes)>, Vec<(Digest, u64)>)> {
    let root_digest = digest_of(client, repository, root)?;
    let layout_error = |e: ocikit_layout::Error| Error::Layout {
        registry: client.registry().to_string(),
        repository: repository.to_string(),
        operation: Box::new(Operation::ReadManifest {
            digest: root_digest.clone(),
        }),
        source: Box::new(e),
    };
    if !is_document(root.media_type().as_ref()) {
        return Err(layout_error(ocikit_layout::Error::UnsupportedMediaType {
            media_type: root.media_type().to_string(),
            operation: "push (not a manifest or index)",
        }));
    }
    let graph = graph::walk(
        std::slice::from_ref(root),
        &Limits::new(),
        |wanted| async move { layout.read_blob(&wanted).await },
    )
    .await
    .map_err(layout_error)?;
    let mut documents = Vec::new();
    let mut blobs = Vec::new();
    for node in graph.children_first() {
        match node.bytes() {
            Some(bytes) => documents.push((node.descriptor.clone(), bytes.clone())),
            None => blobs.push((node.digest.clone(), node.size())),
        }
    }
    Ok((documents, blobs))
}

async fn push_blob(
    client: &Client,
    layout: &Layout,
    repository: &str,
    digest: Digest,
    size: u64,
    options: &PushOptions,
) -> Result<Pushed> {
    let progress = &options.progress;
    if client.blob_exists(repository, &digest).await? {
        progress.emit(Event::Skipped {
            operation: progress::Operation::Copy,
            digest,
            size,
        });
        return Ok(Pushed::Present);
    }
    progress.emit(Event::Started {
        operation: progress::Operation::Copy,
        digest: digest.clone(),
        size,
    });
    let session =
        match start_upload(client, repository, &digest, options.mount_from.as_deref()).await? {
            Started::Mounted => {
                progress.emit(Event::Done {
                    operation: progress::Operation::Copy,
                    digest,
                    bytes: size,
                });
                return Ok(Pushed::Mounted);
            }
            Started::Session(session) => session,
        };
    upload_into(client, layout, repository, &digest, size, session, progress).await?;
    progress.emit(Event::Done {
        operation: progress::Operation::Copy,
        digest,
        bytes: size,
    });
    Ok(Pushed::Uploaded(size))
}

/// An upload session the registry opened.
pub(super) struct Session {
    /// Where to send the data.
    pub(super) location: Url,
    /// The registry's `OCI-Chunk-Min-Length` (0 without).
    pub(super) min_chunk: u64,
}

/// What the registry did with a POST to `blobs/uploads/`.
pub(super) enum Started {
    /// It mounted the blob from the other repository (201).
    Mounted,
    /// It opened an upload session (202): without `from`, or when it would not mount.
    Session(Session),
}

/// `POST /v2/<repository>/blobs/uploads/`, with `?mount=<digest>&from=<from>` when `from`
/// names another repository.
pub(super) async fn start_upload(
    client: &Client,
    repository: &str,
    digest: &Digest,
    from: Option<&str>,
) -> Result<Started> {
    let operation = Operation::PushBlob {
        digest: digest.clone(),
    };
    let mut start = client.url(repository, "blobs/uploads/")?;
    let mut scopes = vec![format!("repository:{repository}:pull,push")];
    if let Some(from) = from.filter(|f| *f != repository) {
        start
            .query_pairs_mut()
            .append_pair("mount", digest.as_str())
            .append_pair("from", from);
        scopes.push(format!("repository:{from}:pull"));
    }
    let mut req = Request::new(Method::POST, start, repository, operation).push_scope();
    req.scopes = scopes;
    req = req.header(header::CONTENT_LENGTH, "0");
    let response = client
        .expect(&req, &[StatusCode::CREATED, StatusCode::ACCEPTED])
        .await?;
    if response.status() == StatusCode::CREATED {
        return Ok(Started::Mounted);
    }
    let min_chunk = response
        .headers()
        .get("oci-chunk-min-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let location = client.location(&req, &response)?;
    Ok(Started::Session(Session {
        location,
        min_chunk,
    }))
}

/// Uploads the blob `digest` (`size` bytes) of `layout` into an open session: in one PUT up
/// to the client's monolithic limit, else in PATCH chunks (resumed where the session says it
/// stands when one is refused or its answer lost), then the closing PUT with `?digest=`.
pub(super) async fn upload_into(
    client: &Client,
    layout: &Layout,
    repository: &str,
    digest: &Digest,
    size: u64,
    session: Session,
    progress: &Progress,
) -> Result<()> {
    let operation = Operation::PushBlob {
        digest: digest.clone(),
    };
    let Session {
        mut location,
        min_chunk,
    } = session;
    let settings = client.settings();
    if size > settings.monolithic_limit {
        let chunk = settings.chunk_size.max(min_chunk).max(1);
        let mut offset = 0u64;
        let mut resumes = 0u32;
        while offset < size {
            let end = (offset + chunk).min(size);
            let req = Request::new(
                Method::PATCH,
                location.clone(),
                repository,
                Operation::PushChunk {
                    digest: digest.clone(),
                    first: offset,
                    last: end - 1,
                },
            )
            .push_scope()
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .header(header::CONTENT_RANGE, &format!("{offset}-{}", end - 1))
            .body(Body::Blob {
                layout: layout.clone(),
                digest: digest.clone(),
                range: offset..end,
            });
            let failure = match client.send(&req).await {
                Ok(response) if response.status() == StatusCode::ACCEPTED => {
                    location = client.location(&req, &response)?;
                    offset = end;
                    None
                }
                Ok(response)
                    if response.status() == StatusCode::RANGE_NOT_SATISFIABLE
                        || response.status().is_server_error() =>
                {
                    Some(client.status_error(&req, response).await)
                }
                Ok(response) => return Err(client.status_error(&req, response).await),
                Err(e @ Error::Request { .. }) => Some(e),
                Err(e) => return Err(e),
            };
            if let Some(failure) = failure {
                // The chunk was refused (416: the session holds another length) or its
                // answer lost: ask the session how much it has, and go on from there.
                if resumes >= settings.retries {
                    return Err(failure);
                }
                resumes += 1;
                let Ok((at, next)) = upload_status(client, repository, &location, digest).await
                else {
                    return Err(failure);
                };
                if next > size {
                    return Err(failure);
                }
                location = at;
                offset = next;
                continue;
            }
            progress.emit(Event::Progress {
                operation: progress::Operation::Copy,
                digest: digest.clone(),
                bytes: offset,
            });
        }
        let req = Request::new(
            Method::PUT,
            with_digest(location, digest),
            repository,
            operation.clone(),
        )
        .push_scope()
        .header(header::CONTENT_LENGTH, "0")
        .header(header::CONTENT_TYPE, "application/octet-stream");
        client.expect(&req, &[StatusCode::CREATED]).await?;
    } else {
        let req = Request::new(
            Method::PUT,
            with_digest(location, digest),
            repository,
            operation.clone(),
        )
        .push_scope()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .body(Body::Blob {
            layout: layout.clone(),
            digest: digest.clone(),
            range: 0..size,
        });
        client.expect(&req, &[StatusCode::CREATED]).await?;
    }
    Ok(())
}

/// Where an upload session stands (`GET <location>`: 204, `Range: 0-<last>`): its location
/// and the offset of the next byte. `0-0` is read as nothing received (the spec's
/// ambiguity; re-sending one byte costs less than skipping one).
async fn upload_status(
    client: &Client,
    repository: &str,
    location: &Url,
    digest: &Digest,
) -> Result<(Url, u64)> {
    let req = Request::new(
        Method::GET,
        location.clone(),
        repository,
        Operation::UploadStatus {
            digest: digest.clone(),
        },
    )
    .push_scope();
    let response = client.expect(&req, &[StatusCode::NO_CONTENT]).await?;
    let next = response
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().trim_start_matches("bytes=").split_once('-'))
        .and_then(|(_, last)| last.parse::<u64>().ok())
        .map_or(0, |last| if last == 0 { 0 } else { last + 1 });
    let at = if response.headers().contains_key(header::LOCATION) {
        client.location(&req, &response)?
    } else {
        location.clone()
    };
    Ok((at, next))
}

/// `location` with `digest=` appended (after the query it may already carry).
fn with_digest(mut location: Url, digest: &Digest) -> Url {
    location
        .query_pairs_mut()
        .append_pair("digest", digest.as_str());
    location
}

/// Pushes a manifest's exact bytes to `reference` (a tag or its digest); returns whether
/// the registry answered with `OCI-Subject` (it indexes referrers itself).
pub(super) async fn put_manifest(
    client: &Client,
    repository: &str,
    reference: &str,
    descriptor: &Descriptor,
    bytes: Bytes,
) -> Result<bool> {
    let req = Request::new(
        Method::PUT,
        client.url(repository, &format!("manifests/{reference}"))?,
        repository,
        Operation::PushManifest {
            reference: reference.to_string(),
        },
    )
    .push_scope()
    .header(header::CONTENT_TYPE, descriptor.media_type().as_ref())
    .body(Body::Bytes(bytes));
    let response = client.expect(&req, &[StatusCode::CREATED]).await?;
    Ok(response.headers().contains_key("oci-subject"))
}
