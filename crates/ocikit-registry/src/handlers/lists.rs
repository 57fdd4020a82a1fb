//! The paginated lists: the catalog (`GET /v2/_catalog`) and a repository's tags
//! (`GET /v2/<name>/tags/list`), with `n`, `last` and `Link`.

use super::*;

/// One page of a sorted list, and the `n` and `last` of the next page when more remain.
pub(super) struct Page {
    entries: Vec<String>,
    next: Option<(usize, String)>,
}

/// The page of a sorted list that `n` and `last` ask for: entries after `last`, at most `n`
/// (clamped to `max`).
pub(super) fn paginate(all: Vec<String>, query: &Query, max: usize) -> Result<Page, Failure> {
    let n = match query.first("n") {
        None | Some("") => max,
        Some(n) => n
            .parse::<u64>()
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX).min(max))
            .map_err(|_| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    ErrorCode::Unsupported,
                    format!("pagination parameter n=`{n}` is not a non-negative integer"),
                )
            })?,
    };
    let last = query.first("last").filter(|l| !l.is_empty());
    let mut rest = all
        .into_iter()
        .filter(|entry| last.is_none_or(|last| entry.as_str() > last));
    let page: Vec<String> = rest.by_ref().take(n).collect();
    let next = match (n, rest.next(), page.last()) {
        (1.., Some(_), Some(tail)) => Some((n, tail.clone())),
        _ => None,
    };
    Ok(Page {
        entries: page,
        next,
    })
}

pub(super) async fn catalog(registry: &Registry, query: &Query) -> Handled {
    let all = meta::catalog(registry.store().as_ref()).await?;
    let page = paginate(all, query, registry.config().max_page_size)?;
    let mut r = reply(StatusCode::OK);
    if let Some((n, last)) = page.next {
        r = r.header(
            header::LINK,
            format!("</v2/_catalog?n={n}&last={last}>; rel=\"next\""),
        );
    }
    r.json(&serde_json::json!({ "repositories": page.entries }))
        .done()
}

pub(super) async fn tags(registry: &Registry, name: &str, query: &Query) -> Handled {
    let store = registry.store().as_ref();
    if !meta::repository_exists(store, name).await? {
        return Err(name_unknown(name));
    }
    let all = meta::tags(store, name).await?;
    let page = paginate(all, query, registry.config().max_page_size)?;
    let mut r = reply(StatusCode::OK);
    if let Some((n, last)) = page.next {
        r = r.header(
            header::LINK,
            format!("</v2/{name}/tags/list?n={n}&last={last}>; rel=\"next\""),
        );
    }
    r.json(&serde_json::json!({ "name": name, "tags": page.entries }))
        .done()
}
