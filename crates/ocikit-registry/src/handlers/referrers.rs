//! The referrers API: `GET /v2/<name>/referrers/<digest>` (with `artifactType`).

use super::*;

pub(super) async fn referrers(
    registry: &Registry,
    name: &str,
    digest: &str,
    query: &Query,
) -> Handled {
    let subject = Digest::parse(digest)
        .map_err(|e| digest_invalid(format!("invalid digest `{digest}`: {e}")))?;
    let mut list = meta::referrers(registry.store().as_ref(), name, &subject).await?;
    let filters = query.all("artifactType");
    let applied = match filters[..] {
        [wanted] if media_type::validate_media_type(wanted).is_ok() => {
            list.retain(|r| r.artifact_type.as_deref() == Some(wanted));
            true
        }
        _ => false,
    };
    // Pages in push order; `last` (the digest that ended the previous page) is the
    // cursor the `Link` header carries, opaque to clients.
    if let Some(last) = query.first("last") {
        list = match list.iter().position(|r| r.digest.as_str() == last) {
            Some(i) => list.split_off(i + 1),
            None => Vec::new(),
        };
    }
    let max = registry.config().max_page_size;
    let more = list.len() > max;
    list.truncate(max);
    let body = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type::IMAGE_INDEX,
        "manifests": list,
    });
    let mut r = reply(StatusCode::OK)
        .header(header::CONTENT_TYPE, media_type::IMAGE_INDEX)
        .body(Body::from(body.to_string()));
    if applied {
        r = r.header(OCI_FILTERS_APPLIED, "artifactType");
    }
    if more && let Some(tail) = list.last() {
        let filter = match (applied, filters.first()) {
            (true, Some(wanted)) => format!("&artifactType={wanted}"),
            _ => String::new(),
        };
        r = r.header(
            header::LINK,
            format!(
                "</v2/{name}/referrers/{subject}?last={}{filter}>; rel=\"next\"",
                tail.digest
            ),
        );
    }
    r.done()
}
