//! Request parsing: which endpoint a path names (matched at the end of the path, since a
//! repository name may itself contain `blobs` or `manifests` components), query strings with
//! repeated keys, and the `Range` / `Content-Range` headers.

use std::ops::Range;

use ocikit_digest::reference;

use crate::error::{Failure, name_invalid};

/// The endpoint a request path names, with its raw (decoded, not yet validated) parts.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// `/v2/` (end-1).
    Base,
    /// `/v2/_catalog`.
    Catalog,
    /// `/v2/<name>/blobs/<digest>` (end-2, end-10).
    Blob { name: String, digest: String },
    /// `/v2/<name>/blobs/uploads/` (end-4, end-11).
    Uploads { name: String },
    /// `/v2/<name>/blobs/uploads/<id>` (end-5, end-6, end-13, end-14).
    Upload { name: String, id: String },
    /// `/v2/<name>/manifests/<reference>` (end-3, end-7, end-9).
    Manifest { name: String, reference: String },
    /// `/v2/<name>/tags/list` (end-8).
    Tags { name: String },
    /// `/v2/<name>/referrers/<digest>` (end-12).
    Referrers { name: String, digest: String },
}

/// Longest request path considered at all (a name is at most 255 bytes; the rest is a
/// digest or tag and fixed words).
const MAX_PATH: usize = 2048;

/// Matches a raw request path. `None` means no such endpoint (404); `Err` means the path
/// names an endpoint but its repository name is malformed (400 `NAME_INVALID`).
///
/// Each segment is percent-decoded exactly once; a segment that decodes to something holding
/// `/` (an encoded slash) or that is not UTF-8 makes the whole path malformed.
pub(crate) fn parse_path(path: &str) -> Result<Option<Route>, Failure> {
    if path.len() > MAX_PATH {
        return Err(name_invalid("request path is too long"));
    }
    let Some(rest) = path.strip_prefix("/v2") else {
        return Ok(None);
    };
    if rest.is_empty() || rest == "/" {
        return Ok(Some(Route::Base));
    }
    let Some(rest) = rest.strip_prefix('/') else {
        return Ok(None);
    };
    let mut segments = Vec::new();
    for raw in rest.split('/') {
        let decoded = percent_encoding::percent_decode_str(raw)
            .decode_utf8()
            .map_err(|_| name_invalid("path segment is not valid UTF-8"))?;
        if decoded.contains('/') {
            return Err(name_invalid("path segment holds an encoded `/`"));
        }
        segments.push(decoded.into_owned());
    }
    let n = segments.len();
    if n == 1 && segments[0] == "_catalog" {
        return Ok(Some(Route::Catalog));
    }
    let name_of = |end: usize| -> Result<String, Failure> {
        let name = segments[..end].join("/");
        reference::validate_name(&name)
            .map_err(|e| name_invalid(format!("invalid repository name: {e}")))?;
        Ok(name)
    };
    // Anchored at the end: the last two or three segments decide the endpoint, and
    // everything before them is the name.
    if n >= 4 && segments[n - 3] == "blobs" && segments[n - 2] == "uploads" {
        let name = name_of(n - 3)?;
        let id = segments[n - 1].clone();
        return Ok(Some(if id.is_empty() {
            Route::Uploads { name }
        } else {
            Route::Upload { name, id }
        }));
    }
    if n >= 3 && segments[n - 2] == "blobs" && segments[n - 1] == "uploads" {
        return Ok(Some(Route::Uploads {
            name: name_of(n - 2)?,
        }));
    }
    if n >= 3 {
        let last = segments[n - 1].clone();
        match segments[n - 2].as_str() {
            "blobs" => {
                return Ok(Some(Route::Blob {
                    name: name_of(n - 2)?,
                    digest: last,
                }));
            }
            "manifests" => {
                return Ok(Some(Route::Manifest {
                    name: name_of(n - 2)?,
                    reference: last,
                }));
            }
            "referrers" => {
                return Ok(Some(Route::Referrers {
                    name: name_of(n - 2)?,
                    digest: last,
                }));
            }
            "tags" if last == "list" => {
                return Ok(Some(Route::Tags {
                    name: name_of(n - 2)?,
                }));
            }
            _ => {}
        }
    }
    Ok(None)
}

/// A query string's pairs, decoded, in order, repeated keys kept.
#[derive(Debug, Default)]
pub(crate) struct Query(Vec<(String, String)>);

impl Query {
    pub(crate) fn parse(query: Option<&str>) -> Query {
        Query(
            query
                .map(|q| {
                    form_urlencoded::parse(q.as_bytes())
                        .map(|(k, v)| (k.into_owned(), v.into_owned()))
                        .collect()
                })
                .unwrap_or_default(),
        )
    }

    /// Every value of `key`.
    pub(crate) fn all(&self, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The value of `key` when it appears exactly once; `Err(count)` otherwise.
    pub(crate) fn one(&self, key: &str) -> Result<&str, usize> {
        match self.all(key)[..] {
            [value] => Ok(value),
            ref values => Err(values.len()),
        }
    }

    /// The first value of `key`, if any.
    pub(crate) fn first(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// What a `Range` request header asks of a blob of `size` bytes (RFC 9110 §14).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RangeRequest {
    /// No usable range: serve the whole blob with 200 (no header, another unit, several
    /// ranges, or a header that does not parse, all of which RFC 9110 lets a server ignore).
    Whole,
    /// One satisfiable range, clamped to the blob: serve it with 206.
    Partial(Range<u64>),
    /// A range that cannot be satisfied: 416.
    Unsatisfiable,
}

/// Interprets a `Range` header for a blob of `size` bytes.
pub(crate) fn parse_range(header: Option<&str>, size: u64) -> RangeRequest {
    let Some(header) = header else {
        return RangeRequest::Whole;
    };
    let Some((unit, spec)) = header.trim().split_once('=') else {
        return RangeRequest::Whole;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") || spec.contains(',') {
        return RangeRequest::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Whole;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match (first, last) {
        ("", suffix) if digits(suffix) => {
            // More digits than u64 holds: a suffix longer than any blob, so all of it.
            let n = suffix.parse::<u64>().unwrap_or(u64::MAX);
            if n == 0 || size == 0 {
                RangeRequest::Unsatisfiable
            } else {
                RangeRequest::Partial(size.saturating_sub(n)..size)
            }
        }
        (first, "") if digits(first) => match first.parse::<u64>() {
            Ok(start) if start < size => RangeRequest::Partial(start..size),
            _ => RangeRequest::Unsatisfiable,
        },
        (first, last) if digits(first) && digits(last) => {
            let Ok(start) = first.parse::<u64>() else {
                return RangeRequest::Unsatisfiable;
            };
            let end = last.parse::<u64>().unwrap_or(u64::MAX);
            if end < start || start >= size {
                RangeRequest::Unsatisfiable
            } else {
                RangeRequest::Partial(start..end.saturating_add(1).min(size))
            }
        }
        _ => RangeRequest::Whole,
    }
}

/// Parses an upload `Content-Range`, which the distribution spec fixes as
/// `^[0-9]+-[0-9]+$` (inclusive, no unit, no total). Returns `(start, end)` inclusive.
pub(crate) fn parse_content_range(value: &str) -> Option<(u64, u64)> {
    let (start, end) = value.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(start) || !digits(end) {
        return None;
    }
    let (start, end) = (start.parse::<u64>().ok()?, end.parse::<u64>().ok()?);
    (start <= end).then_some((start, end))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn route(path: &str) -> Option<Route> {
        parse_path(path).ok().flatten()
    }

    #[test]
    fn routes_are_matched_at_the_end() {
        assert_eq!(route("/v2/"), Some(Route::Base));
        assert_eq!(
            route("/v2/a/blobs/b/manifests/latest"),
            Some(Route::Manifest {
                name: "a/blobs/b".into(),
                reference: "latest".into()
            })
        );
        assert_eq!(
            route("/v2/a/manifests/x/blobs/uploads/"),
            Some(Route::Uploads {
                name: "a/manifests/x".into()
            })
        );
        assert_eq!(
            route("/v2/a/blobs/uploads/blobs/uploads/abc"),
            Some(Route::Upload {
                name: "a/blobs/uploads".into(),
                id: "abc".into()
            })
        );
        assert_eq!(
            route("/v2/a/tags/tags/list"),
            Some(Route::Tags {
                name: "a/tags".into()
            })
        );
        assert_eq!(
            route("/v2/a/b/blobs/sha256%3Aab"),
            Some(Route::Blob {
                name: "a/b".into(),
                digest: "sha256:ab".into()
            })
        );
        assert_eq!(route("/v3/a/tags/list"), None);
        assert_eq!(route("/v2/a/unknown/x"), None);
    }

    #[test]
    fn bad_names_and_encodings_are_refused() {
        for path in [
            "/v2/../manifests/x",
            "/v2/%2e%2e/blobs/sha256:x",
            "/v2/foo%2Fbar/tags/list",
            "/v2/Foo/tags/list",
            "/v2/a..b/tags/list",
            "/v2/foo//bar/tags/list",
            "/v2/-foo/tags/list",
            "/v2/a___b/tags/list",
            "/v2/%252e%252e/tags/list",
            "/v2/%ff/tags/list",
        ] {
            assert!(parse_path(path).is_err(), "{path}");
        }
        let long = format!("/v2/{}/tags/list", "a".repeat(10_000));
        assert!(parse_path(&long).is_err());
    }

    #[test]
    fn ranges_follow_rfc_9110() {
        use RangeRequest::*;
        assert_eq!(
            parse_range(Some("bytes=500-1499"), 2048),
            Partial(500..1500)
        );
        assert_eq!(parse_range(Some("bytes=500-"), 2048), Partial(500..2048));
        assert_eq!(parse_range(Some("bytes=-500"), 2048), Partial(1548..2048));
        assert_eq!(parse_range(Some("bytes=-5000"), 2048), Partial(0..2048));
        assert_eq!(
            parse_range(Some("bytes=2000-5000"), 2048),
            Partial(2000..2048)
        );
        assert_eq!(parse_range(Some("bytes=500-0"), 2048), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=5000-10000"), 2048), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=-0"), 2048), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-"), 0), Unsatisfiable);
        assert_eq!(
            parse_range(Some("bytes=0-99999999999999999999999"), 10),
            Partial(0..10)
        );
        assert_eq!(parse_range(Some("bytes=0-1,5-6"), 10), Whole);
        assert_eq!(parse_range(Some("items=0-1"), 10), Whole);
        assert_eq!(parse_range(Some("bytes=x-1"), 10), Whole);
        assert_eq!(parse_range(None, 10), Whole);
    }

    #[test]
    fn content_range_is_strict() {
        assert_eq!(parse_content_range("0-21"), Some((0, 21)));
        for bad in [
            "bytes 0-9/10",
            "0-",
            "-5",
            "10-5",
            "0-99999999999999999999999",
            "0-9/10",
            "+1-2",
            "",
        ] {
            assert_eq!(parse_content_range(bad), None, "{bad}");
        }
    }
}
