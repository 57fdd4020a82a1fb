//! Manifests: `GET`/`HEAD`, `PUT` (with `?tag=`) and `DELETE
//! /v2/<name>/manifests/<reference>`.

use super::*;

pub(super) enum Reference {
    Tag(String),
    Digest(Digest),
}

/// Parses a manifest reference. For reads, a malformed tag is simply unknown (404, as the
/// conformance suite expects for `.INVALID_MANIFEST_NAME`); a malformed digest is 400.
pub(super) fn parse_reference(reference: &str) -> Result<Reference, Failure> {
    if reference.contains(':') {
        return parse_digest(reference).map(Reference::Digest);
    }
    validate_tag(reference)
        .map(|()| Reference::Tag(reference.to_owned()))
        .map_err(|_| manifest_unknown(reference))
}

pub(super) async fn resolve(
    registry: &Registry,
    name: &str,
    reference: &str,
) -> Result<Digest, Failure> {
    match parse_reference(reference)? {
        Reference::Digest(digest) => Ok(digest),
        Reference::Tag(tag) => match meta::tag(registry.store().as_ref(), name, &tag).await? {
            Some(digest) => Ok(digest),
            None => Err(missing(registry, name, manifest_unknown(reference)).await),
        },
    }
}

pub(super) async fn get_manifest(
    registry: &Registry,
    name: &str,
    reference: &str,
    head: bool,
) -> Handled {
    if let Some(proxy) = &registry.config().proxy {
        super::proxy::refresh_manifest(registry, proxy, name, reference).await?;
    }
    let digest = resolve(registry, name, reference).await?;
    let store = registry.store().as_ref();
    let Some(record) = meta::manifest(store, name, &digest).await? else {
        return Err(missing(registry, name, manifest_unknown(reference)).await);
    };
    let r = reply(StatusCode::OK)
        .header(header::CONTENT_TYPE, &record.media_type)
        .header(DOCKER_CONTENT_DIGEST, digest.as_str())
        .header(header::CONTENT_LENGTH, record.size.to_string());
    if head {
        return r.done();
    }
    // Verified read: a manifest whose bytes no longer match is never served.
    let Some(bytes) = store.get_bytes(&digest, record.size).await? else {
        return Err(manifest_unknown(reference));
    };
    r.body(Body::from(bytes)).done()
}

/// What the registry needs from a pushed manifest, taken from its JSON without re-reading
/// it into a schema (unknown fields and types are tolerated, as the spec asks).
pub(super) struct Parsed {
    pub(super) subject: Option<Digest>,
    pub(super) artifact_type: Option<String>,
    pub(super) annotations: Option<BTreeMap<String, String>>,
}

/// Parses a pushed manifest or index with the one strict parser
/// ([`ocikit_digest::document`]: the rules every layout and client read by), and takes what
/// the referrers API needs from it.
pub(super) fn parse_manifest(
    bytes: Bytes,
    media_type: &str,
    limit: usize,
) -> Result<Parsed, Failure> {
    let document = Document::parse_with_limit(media_type, bytes, limit as u64).map_err(|e| {
        let cause = std::error::Error::source(&e).map_or_else(String::new, |c| format!(": {c}"));
        manifest_invalid(format!("{e}{cause}"))
    })?;
    if matches!(document, Document::Opaque) {
        return Err(manifest_invalid(format!(
            "`{media_type}` is not a manifest or index media type"
        )));
    }
    let subject = document
        .subject()
        .map(descriptor::digest_of)
        .transpose()
        .map_err(|e| manifest_invalid(format!("invalid subject: {e}")))?;
    let annotations = document
        .annotations()
        .map(|map| map.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
    Ok(Parsed {
        subject,
        artifact_type: document.artifact_type().filter(|t| !t.is_empty()),
        annotations,
    })
}

/// Reads a request body into memory, refusing more than `limit` bytes with 413, and a body
/// that stalls for `idle`.
pub(super) async fn read_limited(
    body: Body,
    limit: usize,
    idle: std::time::Duration,
    declared: Option<u64>,
) -> Result<Vec<u8>, Failure> {
    let mut stream = body.into_data_stream();
    let mut bytes = Vec::new();
    loop {
        let short = |received: usize| match declared {
            Some(declared) if (received as u64) < declared => size_invalid(format!(
                "Content-Length declared {declared} bytes, {received} arrived"
            )),
            _ => upload_invalid("the request body could not be read in full, or stalled"),
        };
        let next = tokio::time::timeout(idle, stream.next())
            .await
            .map_err(|_| short(bytes.len()))?;
        let Some(chunk) = next else { break };
        let chunk = chunk.map_err(|_| short(bytes.len()))?;
        if bytes.len() + chunk.len() > limit {
            return Err(too_large(format!(
                "manifest exceeds the limit of {limit} bytes"
            )));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

pub(super) async fn put_manifest(
    registry: &Registry,
    name: &str,
    reference: &str,
    query: &Query,
    headers: &HeaderMap,
    body: Body,
) -> Handled {
    let pushed_digest = if reference.contains(':') {
        Some(parse_digest(reference)?)
    } else {
        validate_tag(reference)
            .map_err(|e| manifest_invalid(format!("invalid tag `{reference}`: {e}")))?;
        None
    };
    let mut tags: Vec<&str> = Vec::new();
    if pushed_digest.is_none() {
        tags.push(reference);
    }
    let extra = query.all("tag");
    if extra.len() > MAX_TAGS_PER_PUSH {
        return Err(manifest_invalid(format!(
            "at most {MAX_TAGS_PER_PUSH} `tag` parameters per push"
        )));
    }
    for tag in extra {
        validate_tag(tag).map_err(|e| manifest_invalid(format!("invalid tag `{tag}`: {e}")))?;
        if !tags.contains(&tag) {
            tags.push(tag);
        }
    }
    let limit = registry.config().max_manifest_size;
    if content_length(headers).is_some_and(|len| len > limit as u64) {
        return Err(too_large(format!(
            "manifest exceeds the limit of {limit} bytes"
        )));
    }
    let bytes = Bytes::from(
        read_limited(
            body,
            limit,
            registry.config().body_idle_timeout,
            content_length(headers),
        )
        .await?,
    );
    let declared =
        header_str(headers, &header::CONTENT_TYPE).map(|ct| media_type::essence(ct).trim());
    let media_type = match declared {
        Some(ct) if !ct.is_empty() => ct.to_owned(),
        _ => ocikit_digest::json::parse_strict_with_limit(&bytes, limit)
            .ok()
            .and_then(|v| {
                v.get("mediaType")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .ok_or_else(|| manifest_invalid("no Content-Type and no mediaType in the manifest"))?,
    };
    if !media_type::is_manifest_like(&media_type) && !media_type::is_index_like(&media_type) {
        return Err(manifest_invalid(format!(
            "`{media_type}` is not a manifest or index media type"
        )));
    }
    let parsed = parse_manifest(bytes.clone(), &media_type, limit)?;
    let digest = match pushed_digest {
        Some(expected) => {
            let actual = Digest::compute(expected.algorithm(), &bytes)
                .map_err(|_| digest_invalid("unsupported digest algorithm"))?;
            if actual != expected {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    ErrorCode::DigestInvalid,
                    "provided digest did not match the manifest",
                )
                .detail(
                    serde_json::json!({ "expected": expected.as_str(), "actual": actual.as_str() }),
                )
                .into());
            }
            expected
        }
        None => Digest::sha256(&bytes),
    };
    let store = registry.store().as_ref();
    store.put_verified(&digest, &bytes).await?;
    let size = bytes.len() as u64;
    meta::put_manifest(
        store,
        name,
        &digest,
        &ManifestRecord {
            media_type: media_type.clone(),
            size,
            subject: parsed.subject.clone(),
            pushed_ms: Some(upload::now()),
        },
    )
    .await?;
    // Recorded, then checked (see `gc`): content a collection deleted in between is
    // stored again from the bytes at hand.
    if store.stat(&digest).await?.is_none() {
        store.put_verified(&digest, &bytes).await?;
    }
    if let Some(subject) = &parsed.subject {
        let referrer = Referrer {
            media_type: media_type.clone(),
            digest: digest.clone(),
            size,
            artifact_type: parsed.artifact_type.clone(),
            annotations: parsed.annotations.clone(),
        };
        meta::add_referrer(store, name, subject, referrer).await?;
    }
    for tag in &tags {
        meta::set_tag(store, name, tag, &digest).await?;
    }
    let mut r = reply(StatusCode::CREATED)
        .header(header::LOCATION, format!("/v2/{name}/manifests/{digest}"))
        .header(DOCKER_CONTENT_DIGEST, digest.as_str())
        .header(header::CONTENT_LENGTH, "0");
    if let Some(subject) = &parsed.subject {
        r = r.header(OCI_SUBJECT, subject.as_str());
    }
    for tag in query.all("tag") {
        r = r.header(OCI_TAG, tag);
    }
    r.done()
}

pub(super) async fn delete_manifest(registry: &Registry, name: &str, reference: &str) -> Handled {
    if !registry.config().delete_enabled {
        return Err(deletion_disabled("GET, HEAD, PUT"));
    }
    let store = registry.store().as_ref();
    let existed = match parse_reference(reference)? {
        Reference::Digest(digest) => meta::delete_manifest(store, name, &digest).await?,
        Reference::Tag(tag) => meta::delete_tag(store, name, &tag).await?,
    };
    if !existed {
        return Err(missing(registry, name, manifest_unknown(reference)).await);
    }
    reply(StatusCode::ACCEPTED).done()
}
