//! `range_headers`: `Range` and `Content-Range` against reference readings in wide
//! integers.

use std::sync::OnceLock;

use regex::Regex;

use crate::route::{RangeRequest, parse_content_range, parse_range};

/// RFC 9110's single byte range, with the whitespace around the parts a server may allow.
fn range_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"^\s*(?i-u:bytes)\s*=\s*([0-9]*)-([0-9]*)\s*$").unwrap())
}

/// A decimal number in `u128`, saturating (digit strings longer than any blob).
fn wide(digits: &str) -> u128 {
    digits.bytes().fold(0u128, |n, b| {
        n.saturating_mul(10).saturating_add(u128::from(b - b'0'))
    })
}

fn reference_range(header: &str, size: u64) -> RangeRequest {
    let Some(caps) = range_re().captures(header) else {
        return RangeRequest::Whole;
    };
    let size = u128::from(size);
    let (first, last) = (&caps[1], &caps[2]);
    let clamp = |start: u128, end: u128| RangeRequest::Partial(start as u64..end as u64);
    match (first.is_empty(), last.is_empty()) {
        (true, true) => RangeRequest::Whole,
        (true, false) => {
            let n = wide(last);
            if n == 0 || size == 0 {
                RangeRequest::Unsatisfiable
            } else {
                clamp(size.saturating_sub(n), size)
            }
        }
        (false, true) => {
            let start = wide(first);
            if start < size {
                clamp(start, size)
            } else {
                RangeRequest::Unsatisfiable
            }
        }
        (false, false) => {
            let (start, end) = (wide(first), wide(last));
            if end < start || start >= size {
                RangeRequest::Unsatisfiable
            } else {
                clamp(start, end.saturating_add(1).min(size))
            }
        }
    }
}

fn reference_content_range(value: &str) -> Option<(u64, u64)> {
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = RE.get_or_init(|| Regex::new(r"^([0-9]+)-([0-9]+)$").unwrap());
    let caps = re.captures(value)?;
    let (start, end) = (wide(&caps[1]), wide(&caps[2]));
    (start <= end && end <= u128::from(u64::MAX)).then_some((start as u64, end as u64))
}

/// Oracle for `Range` (served blobs) and `Content-Range` (upload chunks): both agree with
/// references that read the grammar with a regular expression and the numbers in `u128`;
/// a partial range is never empty and never runs past the blob.
///
/// The first byte picks the blob size (small, at the `u64` edge, or the next eight bytes);
/// the rest is the header.
pub fn range_headers(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let (size, rest) = match pick % 8 {
        0 => (0, rest),
        1 => (1, rest),
        2 => (10, rest),
        3 => (u64::MAX, rest),
        4 => (u64::MAX - 1, rest),
        _ if rest.len() >= 8 => (
            u64::from_le_bytes(rest[..8].try_into().unwrap()),
            &rest[8..],
        ),
        _ => (1000, rest),
    };
    let Ok(header) = std::str::from_utf8(rest) else {
        return;
    };
    let got = parse_range(Some(header), size);
    assert_eq!(
        got,
        reference_range(header, size),
        "Range {header:?} on {size} bytes"
    );
    if let RangeRequest::Partial(range) = &got {
        assert!(range.start < range.end && range.end <= size);
    }
    assert_eq!(parse_range(None, size), RangeRequest::Whole);
    assert_eq!(
        parse_content_range(header),
        reference_content_range(header),
        "Content-Range {header:?}"
    );
}
