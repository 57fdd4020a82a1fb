//! The paginated lists: the catalog (`GET /v2/_catalog`) and a repository's tags
//! (`GET /v2/<name>/tags/list`), with `n`, `last` and `Link`.
//!
//! A page costs work in proportion to the page, not to the list: it is read from the store
//! with [`ocikit_store::Store::list_documents_after`], starting after `last`. On S3 that is
//! one `ListObjectsV2` (`start-after`, up to 1,000 keys) per page of up to 1,000 entries.
//! On a filesystem the tags of a repository are one directory, read whole at every page (a
//! directory cannot be read from the middle), so a tag page costs one `getdents` pass over
//! every tag; a catalog page reads the catalog's top directory and then only the
//! repositories it returns (docs/benchmarks.md, "Registry at scale", has the figures).
//!
//! Tags are the last segment of their keys, so key order is tag order. Catalog markers are
//! `<name>/_repository`, and there key order is not name order when one name is a prefix
//! of another followed by `-`, `.` or `/` and a digit (`a-b/_repository` sorts before
//! `a/_repository`, while `a` sorts before `a-b`): see [`catalog_page`] for how a page
//! stays exact without reading the whole catalog.

use std::collections::BTreeSet;

use ocikit_store::Store;

use super::*;

/// What a list request asks for: at most `n` entries after `last`.
struct PageRequest<'a> {
    n: usize,
    last: Option<&'a str>,
}

/// One page of a sorted list, and whether more entries follow it.
struct Page {
    entries: Vec<String>,
    more: bool,
}

/// The `n` (clamped to `max`; absent or empty: `max`) and `last` (empty: none) of `query`.
/// An `n` that is not a non-negative integer is refused with 400 `UNSUPPORTED`.
fn page_request(query: &Query, max: usize) -> Result<PageRequest<'_>, Failure> {
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
    Ok(PageRequest { n, last })
}

/// Repository `name`'s tags after `last`, at most `n`, in byte order.
async fn tags_page(
    store: &dyn Store,
    name: &str,
    last: Option<&str>,
    n: usize,
) -> crate::Result<Page> {
    if n == 0 {
        return Ok(Page {
            entries: Vec::new(),
            more: false,
        });
    }
    let prefix = keys::tags_prefix(name);
    let under = format!("{prefix}/");
    let mut after = last.map(|last| format!("{under}{last}"));
    let mut tags = Vec::new();
    // One more than the page, to know whether a Link is due. Keys that are no tag (none
    // are ever written) would make the listing go round again.
    let wanted = n.saturating_add(1);
    loop {
        let want = wanted - tags.len();
        let keys = store
            .list_documents_after(&prefix, after.as_deref(), want)
            .await?;
        let exhausted = keys.len() < want;
        if let Some(key) = keys.last() {
            after = Some(key.to_string());
        }
        tags.extend(
            keys.iter()
                .filter_map(|k| k.as_str().strip_prefix(&under))
                .filter(|t| !t.contains('/'))
                .map(str::to_owned),
        );
        if exhausted || tags.len() >= wanted {
            break;
        }
    }
    let more = tags.len() > n;
    tags.truncate(n);
    Ok(Page {
        entries: tags,
        more,
    })
}

/// The repositories after `last`, at most `n`, in byte order.
///
/// Markers are listed in key order from `CATALOG/last` (every name after `last` has its
/// marker after that key) until `n + 1` names after `last` are in hand. Key order and name
/// order differ only between a name and its prefixes: a name `x` missed by the listing but
/// smaller than the largest name `m` in hand has its marker after `m`'s, which (names and
/// keys otherwise comparing alike) makes it a prefix of `m` followed by `-`, `.` or `/` and
/// a digit. Those few prefixes of `m` whose markers lie beyond what was listed are read
/// one by one; then the page is exact, at the cost of one listing and a read per such
/// prefix (usually none or one), never the whole catalog.
async fn catalog_page(store: &dyn Store, last: Option<&str>, n: usize) -> crate::Result<Page> {
    if n == 0 {
        return Ok(Page {
            entries: Vec::new(),
            more: false,
        });
    }
    let after_last = |name: &str| last.is_none_or(|last| name > last);
    let mut after = last.map(|last| format!("{}/{last}", keys::CATALOG_PREFIX));
    let mut names = BTreeSet::new();
    let wanted = n.saturating_add(1);
    let mut exhausted = false;
    while names.len() < wanted {
        let want = wanted - names.len();
        let keys = store
            .list_documents_after(keys::CATALOG_PREFIX, after.as_deref(), want)
            .await?;
        exhausted = keys.len() < want;
        if let Some(key) = keys.last() {
            after = Some(key.to_string());
        }
        names.extend(
            keys.iter()
                .filter_map(keys::name_of_catalog_marker)
                .filter(|name| after_last(name))
                .map(str::to_owned),
        );
        if exhausted {
            break;
        }
    }
    if !exhausted && let (Some(listed), Some(largest)) = (after.as_deref(), names.last()) {
        let mut found = Vec::new();
        for prefix in prefixes_listed_later(largest) {
            if names.contains(prefix) || !after_last(prefix) {
                continue;
            }
            let Ok(marker) = keys::catalog_marker(prefix) else {
                continue;
            };
            if marker.as_str() > listed && meta::repository_exists(store, prefix).await? {
                found.push(prefix.to_owned());
            }
        }
        names.extend(found);
    }
    let more = names.len() > n;
    Ok(Page {
        entries: names.into_iter().take(n).collect(),
        more,
    })
}

/// The prefixes of repository name `name` that are names themselves and whose catalog
/// markers sort after `name`'s: those followed in `name` by `-`, `.`, or `/` and a digit
/// (`-`, `.` and digits sort before the `/_` of `x/_repository`).
fn prefixes_listed_later(name: &str) -> impl Iterator<Item = &str> {
    let bytes = name.as_bytes();
    (1..bytes.len()).filter_map(move |i| {
        let later = match bytes[i] {
            b'-' | b'.' => true,
            b'/' => bytes.get(i + 1).is_some_and(u8::is_ascii_digit),
            _ => false,
        };
        // A name ends with a letter or digit.
        (later && bytes[i - 1].is_ascii_alphanumeric()).then(|| &name[..i])
    })
}

/// The `Link` header value pointing at the page after `page` (when more follow).
fn next_link(path: &str, n: usize, page: &Page) -> Option<String> {
    let last = page.entries.last().filter(|_| page.more)?;
    Some(format!("<{path}?n={n}&last={last}>; rel=\"next\""))
}

pub(super) async fn catalog(registry: &Registry, query: &Query) -> Handled {
    let request = page_request(query, registry.config().max_page_size)?;
    let page = catalog_page(registry.store().as_ref(), request.last, request.n).await?;
    let mut r = reply(StatusCode::OK);
    if let Some(link) = next_link("/v2/_catalog", request.n, &page) {
        r = r.header(header::LINK, link);
    }
    r.json(&serde_json::json!({ "repositories": page.entries }))
        .done()
}

pub(super) async fn tags(registry: &Registry, name: &str, query: &Query) -> Handled {
    let request = page_request(query, registry.config().max_page_size)?;
    let store = registry.store().as_ref();
    let page = tags_page(store, name, request.last, request.n).await?;
    // A repository with tags exists (a tag needs a manifest, which made the repository):
    // only an empty page needs the read that tells an empty repository from none.
    if page.entries.is_empty() && !meta::repository_exists(store, name).await? {
        return Err(name_unknown(name));
    }
    let mut r = reply(StatusCode::OK);
    if let Some(link) = next_link(&format!("/v2/{name}/tags/list"), request.n, &page) {
        r = r.header(header::LINK, link);
    }
    r.json(&serde_json::json!({ "name": name, "tags": page.entries }))
        .done()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn prefixes_whose_markers_sort_later() {
        let later = |name| prefixes_listed_later(name).collect::<Vec<_>>();
        assert_eq!(later("a-b.c/0d/e"), ["a", "a-b", "a-b.c"]);
        assert_eq!(later("a/b-c"), ["a/b"]);
        assert_eq!(later("a/b"), Vec::<&str>::new());
        assert_eq!(later("a__b/c_d"), Vec::<&str>::new());
        assert_eq!(later("a--b"), ["a"]);
        // Every prefix it yields does sort after the name as a marker key.
        for name in ["a-b.c/0d/e", "x--y/9", "lib.x"] {
            let key = keys::catalog_marker(name).unwrap();
            for prefix in prefixes_listed_later(name) {
                assert!(
                    keys::catalog_marker(prefix).unwrap() > key,
                    "{prefix} of {name}"
                );
                assert!(prefix < name);
            }
        }
    }
}
