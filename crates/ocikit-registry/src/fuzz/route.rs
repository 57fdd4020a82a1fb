//! `route_parse`: request paths against a reference router over the decoded path.

use std::sync::OnceLock;

use ocikit_digest::reference::MAX_NAME_LEN;
use regex::Regex;

use crate::route::{Route, parse_path};

/// The distribution spec's repository name grammar.
fn name_ok(name: &str) -> bool {
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = RE.get_or_init(|| {
        Regex::new(r"^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$")
            .unwrap()
    });
    name.len() <= MAX_NAME_LEN && re.is_match(name)
}

/// Percent-decoding as RFC 3986 reads it: `%` and two hex digits is a byte; anything
/// else is itself.
fn decode(segment: &str) -> Vec<u8> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// What the reference router makes of a path: `Err(())` for a malformed path or name.
#[allow(clippy::result_unit_err)]
fn reference(path: &str) -> Result<Option<Route>, ()> {
    if path.len() > 2048 {
        return Err(());
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
        let segment = String::from_utf8(decode(raw)).map_err(|_| ())?;
        if segment.contains('/') {
            return Err(());
        }
        segments.push(segment);
    }
    let decoded = segments.join("/");
    static RULES: OnceLock<Vec<(Regex, u8)>> = OnceLock::new();
    let rules = RULES.get_or_init(|| {
        [
            (r"^_catalog$", 0),
            (r"^(?s)(?P<name>.*)/blobs/uploads/(?P<last>[^/]*)$", 1),
            (r"^(?s)(?P<name>.*)/blobs/uploads$", 2),
            (r"^(?s)(?P<name>.*)/blobs/(?P<last>[^/]*)$", 3),
            (r"^(?s)(?P<name>.*)/manifests/(?P<last>[^/]*)$", 4),
            (r"^(?s)(?P<name>.*)/referrers/(?P<last>[^/]*)$", 5),
            (r"^(?s)(?P<name>.*)/tags/list$", 6),
        ]
        .into_iter()
        .map(|(re, kind)| (Regex::new(re).unwrap(), kind))
        .collect()
    });
    for (re, kind) in rules {
        let Some(caps) = re.captures(&decoded) else {
            continue;
        };
        if *kind == 0 {
            return Ok(Some(Route::Catalog));
        }
        let name = caps["name"].to_owned();
        if !name_ok(&name) {
            return Err(());
        }
        let last = caps.name("last").map(|m| m.as_str().to_owned());
        return Ok(Some(match (kind, last) {
            (1, Some(id)) if id.is_empty() => Route::Uploads { name },
            (1, Some(id)) => Route::Upload { name, id },
            (2, _) => Route::Uploads { name },
            (3, Some(digest)) => Route::Blob { name, digest },
            (4, Some(reference)) => Route::Manifest { name, reference },
            (5, Some(digest)) => Route::Referrers { name, digest },
            (6, _) => Route::Tags { name },
            _ => unreachable!(),
        }));
    }
    Ok(None)
}

/// The path of a route, every segment percent-encoded.
fn path_of(route: &Route) -> String {
    let with = |name: &str, tail: &[&str]| {
        let mut path = format!("/v2/{name}");
        for part in tail {
            path.push('/');
            path.push_str(&encode(part));
        }
        path
    };
    match route {
        Route::Base => "/v2/".into(),
        Route::Catalog => "/v2/_catalog".into(),
        Route::Blob { name, digest } => with(name, &["blobs", digest]),
        Route::Uploads { name } => with(name, &["blobs", "uploads", ""]),
        Route::Upload { name, id } => with(name, &["blobs", "uploads", id]),
        Route::Manifest { name, reference } => with(name, &["manifests", reference]),
        Route::Tags { name } => with(name, &["tags", "list"]),
        Route::Referrers { name, digest } => with(name, &["referrers", digest]),
    }
}

/// Oracle for request routing: `parse_path` agrees with a reference router (its own
/// percent-decoding, the endpoints as regular expressions over the decoded path, names by
/// the spec's grammar); a route's path, written with every segment encoded, routes back to
/// it (when it is not too long).
pub fn route_parse(data: &[u8]) {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = parse_path(path);
    let expected = reference(path);
    match (&parsed, &expected) {
        (Ok(got), Ok(want)) => assert_eq!(got, want, "routes differ for {path:?}"),
        (Err(_), Err(())) => return,
        _ => panic!("router and reference disagree on {path:?}: {parsed:?} vs {expected:?}"),
    }
    if let Ok(Some(route)) = parsed {
        let again = path_of(&route);
        if again.len() > 2048 {
            return; // encoding made it longer than any path the router reads
        }
        assert_eq!(
            parse_path(&again).ok().flatten().as_ref(),
            Some(&route),
            "{again:?} does not route back"
        );
    }
}
