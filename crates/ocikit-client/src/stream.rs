//! Blobs read as a stream of bytes, for callers that verify and store them themselves (a
//! pull-through cache that hands the bytes on while it stores them).

use bytes::Bytes;
use futures::stream::BoxStream;
use ocikit_digest::Digest;
use reqwest::{Method, StatusCode};

use crate::Client;
use crate::error::{Error, Operation, Result};
use crate::request::Request;

/// A blob being downloaded: its declared size and its bytes as they arrive, not verified
/// (the caller checks them against the digest it asked for).
pub struct BlobStream {
    /// The size the registry declared (`Content-Length`), when it did.
    pub size: Option<u64>,
    /// The bytes; an error ends the stream.
    pub bytes: BoxStream<'static, Result<Bytes>>,
}

impl std::fmt::Debug for BlobStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobStream")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Opens the blob `digest` of `repository` (`GET`, one request, no resume): its size
    /// and its bytes as they arrive, unverified. A blob the repository lacks is
    /// [`Error::NotFound`].
    pub async fn open_blob(&self, repository: &str, digest: &Digest) -> Result<BlobStream> {
        self.validate_repository(repository)?;
        let req = Request::new(
            Method::GET,
            self.url(repository, &format!("blobs/{digest}"))?,
            repository,
            Operation::PullBlob {
                digest: digest.clone(),
            },
        );
        let response = self.expect(&req, &[StatusCode::OK]).await?;
        let size = response.content_length();
        let client = self.clone();
        let bytes = futures::stream::unfold(Some((response, req)), move |state| {
            let client = client.clone();
            async move {
                let (mut response, req) = state?;
                match response.chunk().await {
                    Ok(Some(chunk)) => Some((Ok(chunk), Some((response, req)))),
                    Ok(None) => None,
                    Err(e) => Some((Err(client.request_error(&req, e)), None)),
                }
            }
        });
        Ok(BlobStream {
            size,
            bytes: Box::pin(bytes),
        })
    }

    /// The size of the blob `digest` in `repository` (`HEAD`), `None` when it has none.
    pub async fn blob_size(&self, repository: &str, digest: &Digest) -> Result<Option<u64>> {
        self.validate_repository(repository)?;
        let req = Request::new(
            Method::HEAD,
            self.url(repository, &format!("blobs/{digest}"))?,
            repository,
            Operation::CheckBlob {
                digest: digest.clone(),
            },
        );
        let response = self.send(&req).await?;
        match response.status() {
            StatusCode::OK => Ok(Some(
                response
                    .headers()
                    .get(reqwest::header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse().ok())
                    .ok_or_else(|| Error::InvalidResponse {
                        registry: self.registry().to_string(),
                        repository: repository.to_string(),
                        operation: Box::new(req.operation.clone()),
                        reason: "a blob's HEAD without a Content-Length".into(),
                    })?,
            )),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(self.status_error(&req, response).await),
        }
    }
}
