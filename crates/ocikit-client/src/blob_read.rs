//! Blobs read chunk by chunk and verified as a whole, for callers that use the bytes as they
//! arrive instead of storing them first (an unpack that applies a layer while it downloads),
//! and the image a reference names resolved without storing anything.

use bytes::Bytes;
use ocikit_digest::oci_spec::image::Descriptor;
use ocikit_digest::{Digest, Hasher};
use ocikit_layout::PlatformQuery;
use reqwest::header::{self, HeaderValue};
use reqwest::{Method, StatusCode};

use crate::error::{Error, Operation, Result};
use crate::request::Request;
use crate::{Client, pull};

impl Client {
    /// Fetches and verifies the manifest or index `reference` (a tag or digest) of
    /// `repository` names and, with a platform query, the first image of an index matching
    /// it instead (as [`crate::PullOptions::platform`] picks it; configs of entries without a
    /// `platform` are read to match by). Nothing is stored. Returns the descriptor and the
    /// exact bytes of the document picked.
    pub async fn resolve_image(
        &self,
        repository: &str,
        reference: &str,
        platform: Option<&PlatformQuery>,
    ) -> Result<(Descriptor, Bytes)> {
        self.validate_repository(repository)?;
        pull::resolve_root(self, repository, reference, None, platform).await
    }

    /// Starts reading the blob `digest` (`size` bytes) of `repository`: see [`BlobRead`].
    /// The request is made by the first [`BlobRead::chunk`].
    ///
    /// # Errors
    /// A repository name the API refuses; [`Error::InvalidResponse`] for a digest under an
    /// algorithm ocikit cannot compute (it could never be verified).
    pub fn read_blob(&self, repository: &str, digest: &Digest, size: u64) -> Result<BlobRead> {
        self.validate_repository(repository)?;
        let url = self.url(repository, &format!("blobs/{digest}"))?;
        let hasher = Hasher::new(digest.algorithm()).map_err(|e| Error::InvalidResponse {
            registry: self.registry().to_string(),
            repository: repository.to_string(),
            operation: Box::new(Operation::PullBlob {
                digest: digest.clone(),
            }),
            reason: format!("the digest cannot be verified: {e}"),
        })?;
        Ok(BlobRead {
            client: self.clone(),
            repository: repository.to_string(),
            digest: digest.clone(),
            size,
            url,
            done: 0,
            resumes: 0,
            response: None,
            skip: 0,
            hasher: Some(hasher),
        })
    }
}

/// A blob being read from a registry, chunk by chunk ([`Client::read_blob`]).
///
/// The chunks are the blob's bytes in order, exactly once each: a download that breaks off
/// resumes with `Range` (from the start, skipping what was handed out already, when the
/// registry ignores the range), up to the client's retry count. More bytes than `size` is an
/// error at once; the digest is checked when the last byte arrived, so the chunks are
/// **unverified until [`BlobRead::chunk`] returned `Ok(None)`**: a caller that used them
/// must discard what it made of them on any error.
#[derive(Debug)]
pub struct BlobRead {
    client: Client,
    repository: String,
    digest: Digest,
    size: u64,
    url: reqwest::Url,
    /// Bytes handed out.
    done: u64,
    resumes: u32,
    response: Option<reqwest::Response>,
    /// Bytes of the current response to drop before handing any out (a range ignored).
    skip: u64,
    /// `None` once the blob was verified.
    hasher: Option<Hasher>,
}

impl BlobRead {
    /// The blob's digest.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// The bytes handed out so far.
    pub fn position(&self) -> u64 {
        self.done
    }

    /// The next chunk of the blob; `Ok(None)` at its end, once every byte arrived and the
    /// whole matched the digest and size.
    ///
    /// # Errors
    /// [`Error::ContentMismatch`] when the bytes do not hash to the digest,
    /// [`Error::ContentSize`] when the registry sends more or (after every retry) fewer
    /// bytes than the size, and the request's errors when it fails for good.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>> {
        loop {
            if self.hasher.is_none() {
                return Ok(None);
            }
            if self.done == self.size && self.response.is_none() {
                let actual = self.hasher.take().map(Hasher::finish);
                return match actual {
                    Some(actual) if actual == self.digest => Ok(None),
                    Some(actual) => Err(Error::ContentMismatch {
                        registry: self.client.registry().to_string(),
                        repository: self.repository.clone(),
                        expected: Box::new(self.digest.clone()),
                        actual: Box::new(actual),
                    }),
                    None => Ok(None),
                };
            }
            let request = self.request();
            let response = match self.response.as_mut() {
                Some(response) => response,
                None => {
                    let response = self.open(&request).await?;
                    self.response.insert(response)
                }
            };
            match response.chunk().await {
                Ok(Some(mut chunk)) => {
                    if self.skip > 0 {
                        let dropped = self.skip.min(chunk.len() as u64);
                        self.skip -= dropped;
                        chunk = chunk.slice(usize::try_from(dropped).unwrap_or(chunk.len())..);
                        if chunk.is_empty() {
                            continue;
                        }
                    }
                    self.done += chunk.len() as u64;
                    if self.done > self.size {
                        self.hasher = None;
                        return Err(self.size_error(self.done));
                    }
                    if let Some(hasher) = self.hasher.as_mut() {
                        hasher.update(&chunk);
                    }
                    return Ok(Some(chunk));
                }
                Ok(None) if self.done == self.size && self.skip == 0 => {
                    self.response = None;
                }
                Ok(None) => {
                    // Ended early, but cleanly: resume as after an error.
                    self.response = None;
                    self.retry(None).await?;
                }
                Err(e) => {
                    self.response = None;
                    self.retry(Some((request, e))).await?;
                }
            }
        }
    }

    /// The GET of the rest of the blob.
    fn request(&self) -> Request {
        let mut req = Request::new(
            Method::GET,
            self.url.clone(),
            &self.repository,
            Operation::PullBlob {
                digest: self.digest.clone(),
            },
        );
        if self.done > 0 {
            req.headers.insert(
                header::RANGE,
                HeaderValue::from_str(&format!("bytes={}-", self.done))
                    .unwrap_or(HeaderValue::from_static("bytes=0-")),
            );
        }
        req
    }

    /// Sends `req` and checks what the answer says about where it starts.
    async fn open(&mut self, req: &Request) -> Result<reqwest::Response> {
        let response = self
            .client
            .expect(req, &[StatusCode::OK, StatusCode::PARTIAL_CONTENT])
            .await?;
        if response.status() == StatusCode::OK {
            if let Some(length) = response.content_length()
                && length != self.size
            {
                self.hasher = None;
                return Err(self.size_error(length));
            }
            // From the start: what was handed out already is dropped, not sent twice.
            self.skip = self.done;
        } else if !starts_at(&response, self.done) {
            self.hasher = None;
            return Err(Error::InvalidResponse {
                registry: self.client.registry().to_string(),
                repository: self.repository.clone(),
                operation: Box::new(req.operation.clone()),
                reason: format!(
                    "a partial response that does not start at byte {}",
                    self.done
                ),
            });
        }
        Ok(response)
    }

    /// Waits before the next attempt, or fails when the retries are spent.
    async fn retry(&mut self, failed: Option<(Request, reqwest::Error)>) -> Result<()> {
        if self.resumes >= self.client.settings().retries {
            self.hasher = None;
            return Err(match failed {
                Some((req, e)) => self.client.request_error(&req, e),
                None => self.size_error(self.done),
            });
        }
        self.resumes += 1;
        tokio::time::sleep(self.client.backoff(self.resumes - 1)).await;
        Ok(())
    }

    fn size_error(&self, actual: u64) -> Error {
        Error::ContentSize {
            registry: self.client.registry().to_string(),
            repository: self.repository.clone(),
            digest: self.digest.clone(),
            expected: self.size,
            actual,
        }
    }
}

/// Whether a 206 answer's `Content-Range` starts at `start`.
fn starts_at(response: &reqwest::Response, start: u64) -> bool {
    response
        .headers()
        .get(header::CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("bytes "))
        .and_then(|v| v.split('-').next())
        .and_then(|v| v.parse::<u64>().ok())
        == Some(start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repository_the_api_refuses_is_refused_before_any_request() {
        let client = Client::builder("127.0.0.1:1")
            .plain_http(true)
            .build()
            .unwrap();
        let digest: Digest =
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
                .parse()
                .unwrap();
        assert!(client.read_blob("a/b", &digest, 0).is_ok());
        assert!(client.read_blob("A/B", &digest, 0).is_err());
    }
}
