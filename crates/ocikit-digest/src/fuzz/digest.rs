use std::sync::OnceLock;

use crate::{Algorithm, Digest};

fn grammar() -> &'static regex::Regex {
    static RE: OnceLock<regex::Regex> = OnceLock::new();
    RE.get_or_init(|| {
        regex::Regex::new(r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$").unwrap()
    })
}

/// Oracle for digest parsing: `Ok` exactly when the spec's anchored regex and the
/// per-algorithm rules accept; display round-trips; path components are safe.
pub fn digest_parse(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = Digest::parse(s);
    let (alg, enc) = s.split_once(':').unwrap_or(("", ""));
    let registered_ok = match alg {
        "sha256" | "blake3" => {
            enc.len() == 64 && enc.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        }
        "sha512" => enc.len() == 128 && enc.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
        _ => alg.len() <= crate::algorithm::MAX_ALGORITHM_LEN,
    };
    let expected_ok =
        grammar().is_match(s) && registered_ok && s.len() <= crate::digest::MAX_DIGEST_LEN;
    assert_eq!(
        parsed.is_ok(),
        expected_ok,
        "parser and spec regex disagree on {s:?}"
    );
    if let Ok(d) = parsed {
        assert_eq!(d.to_string(), s);
        assert_eq!(Digest::parse(d.as_str()).unwrap(), d);
        let (a, e) = d.path_components();
        for part in [a, e] {
            assert!(!part.is_empty() && part != "." && part != "..");
            assert!(!part.contains(['/', '\\', '\0']));
        }
        assert_eq!(d.blob_path(), format!("blobs/{a}/{e}"));
        assert_eq!(
            d.is_supported(),
            matches!(d.algorithm(), Algorithm::Sha256 | Algorithm::Sha512)
        );
        if let Some(raw) = d.to_raw() {
            assert_eq!(Digest::from_raw(d.algorithm().clone(), &raw).unwrap(), d);
        }
    }
}
