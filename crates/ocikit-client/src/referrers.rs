//! Referrers: the API (`GET /v2/<name>/referrers/<digest>`) where the registry has it, and
//! the referrers tag schema (SPEC B.5) where it does not, for listing and for pushing
//! manifests with a `subject`.

use bytes::Bytes;
use ocikit_digest::oci_spec::image::{Descriptor, ImageIndex};
use ocikit_digest::{Digest, descriptor, json, media_type};
use ocikit_layout::document::Document;
use reqwest::header;
use reqwest::{Method, StatusCode};
use serde_json::{Map, Value};

use super::{Body, Client, Request, read_limited};
use crate::{Error, Operation, Result};

/// The fallback tag for `subject`: the algorithm (at most 32 characters), `-`, the encoded
/// part (at most 64), anything a tag may not hold replaced by `-` (DSm's rule; for sha256
/// and sha512 the same as v1.1.1's).
pub fn fallback_tag(subject: &Digest) -> String {
    let clean = |s: &str, max: usize| -> String {
        s.chars()
            .take(max)
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                    c
                } else {
                    '-'
                }
            })
            .collect()
    };
    let algorithm = subject.algorithm().to_string();
    format!("{}-{}", clean(&algorithm, 32), clean(subject.encoded(), 64))
}

fn invalid(client: &Client, repository: &str, operation: &Operation, reason: String) -> Error {
    Error::InvalidResponse {
        registry: client.registry().to_string(),
        repository: repository.to_string(),
        operation: Box::new(operation.clone()),
        reason,
    }
}

/// The manifests of an index document's bytes.
fn index_entries(
    client: &Client,
    repository: &str,
    operation: &Operation,
    bytes: &[u8],
) -> Result<Vec<Descriptor>> {
    let value = json::parse_strict_with_limit(bytes, ocikit_layout::MAX_DOCUMENT_SIZE as usize)
        .map_err(|e| invalid(client, repository, operation, format!("not JSON: {e}")))?;
    let index: ImageIndex = serde_json::from_value(value).map_err(|e| {
        invalid(
            client,
            repository,
            operation,
            format!("not an image index: {e}"),
        )
    })?;
    Ok(index.manifests().clone())
}

fn keep(descriptor: &Descriptor, artifact_type: Option<&str>) -> bool {
    artifact_type.is_none_or(|t| {
        descriptor
            .artifact_type()
            .as_ref()
            .is_some_and(|a| a.to_string() == t)
    })
}

pub(super) async fn list(
    client: &Client,
    repository: &str,
    subject: &Digest,
    artifact_type: Option<&str>,
) -> Result<Vec<Descriptor>> {
    client.validate_repository(repository)?;
    let mut url = client.url(repository, &format!("referrers/{subject}"))?;
    if let Some(t) = artifact_type {
        url.query_pairs_mut().append_pair("artifactType", t);
    }
    let operation = Operation::ListReferrers {
        subject: subject.clone(),
    };
    let req = Request::new(Method::GET, url, repository, operation.clone())
        .header(header::ACCEPT, media_type::IMAGE_INDEX);
    let response = client.send(&req).await?;
    match response.status() {
        StatusCode::OK => {
            let bytes = read_limited(response, ocikit_layout::MAX_DOCUMENT_SIZE as usize)
                .await
                .map_err(|e| client.request_error(&req, e))?
                .ok_or_else(|| {
                    invalid(client, repository, &operation, "larger than 16 MiB".into())
                })?;
            let entries = index_entries(client, repository, &operation, &bytes)?;
            Ok(entries
                .into_iter()
                .filter(|d| keep(d, artifact_type))
                .collect())
        }
        StatusCode::NOT_FOUND => {
            // No referrers API: the tag schema.
            let entries = match fallback_index(client, repository, subject).await? {
                Some((_, entries)) => entries,
                None => Vec::new(),
            };
            Ok(entries
                .into_iter()
                .filter(|d| keep(d, artifact_type))
                .collect())
        }
        _ => Err(client.status_error(&req, response).await),
    }
}

/// The entries of the fallback tag's index, or `None` when the tag does not exist. A tag
/// holding something other than an index is an error (SPEC C-R11: never overwrite it).
async fn fallback_index(
    client: &Client,
    repository: &str,
    subject: &Digest,
) -> Result<Option<(Descriptor, Vec<Descriptor>)>> {
    let tag = fallback_tag(subject);
    match client.get_manifest(repository, &tag).await {
        Ok((descriptor, bytes)) => {
            if !media_type::is_index_like(descriptor.media_type().as_ref()) {
                return Err(invalid(
                    client,
                    repository,
                    &Operation::PullManifest {
                        reference: tag.clone(),
                    },
                    format!(
                        "the referrers tag holds a {}, not an index",
                        descriptor.media_type()
                    ),
                ));
            }
            let entries = index_entries(
                client,
                repository,
                &Operation::PullManifest {
                    reference: tag.clone(),
                },
                &bytes,
            )?;
            Ok(Some((descriptor, entries)))
        }
        Err(Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The descriptor a referrers list holds for `document` (pushed as `pushed`): its
/// `artifactType` (or a manifest's config media type) and its annotations.
fn referrer_descriptor(pushed: &Descriptor, document: &Document) -> Result<Descriptor, String> {
    let mut entry = descriptor::new(
        pushed.media_type().as_ref(),
        &descriptor::digest_of(pushed).map_err(|e| e.to_string())?,
        pushed.size(),
    )
    .map_err(|e| e.to_string())?;
    if let Some(artifact_type) = document.artifact_type() {
        entry.set_artifact_type(Some(artifact_type.as_str().into()));
    }
    let annotations = match document {
        Document::Manifest { manifest, .. } => manifest.annotations().clone(),
        Document::Index { index, .. } => index.annotations().clone(),
        _ => None,
    };
    entry.set_annotations(annotations);
    Ok(entry)
}

/// After pushing `pushed` (a document with a `subject`) to a registry that did not answer
/// with `OCI-Subject`: adds it to the subject's fallback tag index, unless it is there.
pub(super) async fn add_to_fallback(
    client: &Client,
    repository: &str,
    subject: &Digest,
    pushed: &Descriptor,
    document: &Document,
) -> Result<()> {
    let tag = fallback_tag(subject);
    let operation = Operation::PushManifest {
        reference: tag.clone(),
    };
    let entries = match fallback_index(client, repository, subject).await? {
        Some((_, entries)) => entries,
        None => Vec::new(),
    };
    if entries
        .iter()
        .any(|e| e.digest().to_string() == pushed.digest().to_string())
    {
        return Ok(());
    }
    let entry = referrer_descriptor(pushed, document)
        .map_err(|reason| invalid(client, repository, &operation, reason))?;
    let mut manifests: Vec<Value> = Vec::with_capacity(entries.len() + 1);
    for e in entries.iter().chain(std::iter::once(&entry)) {
        manifests.push(
            serde_json::to_value(e)
                .map_err(|err| invalid(client, repository, &operation, err.to_string()))?,
        );
    }
    let mut index = Map::new();
    index.insert("schemaVersion".into(), Value::from(2));
    index.insert("mediaType".into(), Value::from(media_type::IMAGE_INDEX));
    index.insert("manifests".into(), Value::Array(manifests));
    let bytes = serde_json::to_vec(&Value::Object(index))
        .map_err(|err| invalid(client, repository, &operation, err.to_string()))?;
    let req = Request::new(
        Method::PUT,
        client.url(repository, &format!("manifests/{tag}"))?,
        repository,
        operation,
    )
    .push_scope()
    .header(header::CONTENT_TYPE, media_type::IMAGE_INDEX)
    .body(Body::Bytes(Bytes::from(bytes)));
    client.expect(&req, &[StatusCode::CREATED]).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fallback_tags() {
        let d = Digest::sha256(b"x");
        assert_eq!(fallback_tag(&d), format!("sha256-{}", d.encoded()));
        let long = Digest::sha512(b"x");
        assert_eq!(fallback_tag(&long).len(), "sha512-".len() + 64);
    }
}
