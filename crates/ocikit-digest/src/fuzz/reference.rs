use std::sync::OnceLock;

use regex::Regex;

use crate::Digest;
use crate::reference::{
    self, DEFAULT_REGISTRY, MAX_NAME_LEN, MAX_REFERENCE_LEN, Reference, validate_name,
    validate_registry, validate_tag,
};

fn name_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$")
            .unwrap()
    })
}

fn tag_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$").unwrap())
}

/// docker/distribution's domain grammar; the port's range and the IPv6 literal's meaning are
/// checked separately.
fn registry_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        let label = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
        Regex::new(&format!(
            r"^(?:{label}(?:\.{label})*|\[(?P<ip>[a-fA-F0-9:]+)\])(?::(?P<port>[0-9]+))?$"
        ))
        .unwrap()
    })
}

fn name_ok(s: &str) -> bool {
    name_re().is_match(s) && s.len() <= MAX_NAME_LEN
}

fn tag_ok(s: &str) -> bool {
    tag_re().is_match(s)
}

fn registry_ok(s: &str) -> bool {
    let Some(caps) = registry_re().captures(s) else {
        return false;
    };
    let ip_ok = caps
        .name("ip")
        .is_none_or(|ip| ip.as_str().parse::<std::net::Ipv6Addr>().is_ok());
    let port_ok = caps.name("port").is_none_or(|port| {
        port.as_str().len() <= 5 && matches!(port.as_str().parse::<u32>(), Ok(1..=65535))
    });
    ip_ok && port_ok && s.len() <= MAX_NAME_LEN
}

fn looks_like_registry(first: &str) -> bool {
    first.contains(['.', ':']) || first == "localhost" || first != first.to_ascii_lowercase()
}

/// Oracle for image-reference parsing: `validate_name`, `validate_tag` and
/// `validate_registry` agree with the distribution-spec and docker regexes; `Reference::parse`
/// succeeds exactly when docker's split yields parts that all pass them (and a digest that
/// `Digest::parse` accepts); display round-trips; normalisation and the familiar form are
/// consistent.
pub fn reference_parse(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };

    assert_eq!(
        validate_name(s).is_ok(),
        name_ok(s),
        "validate_name vs regex on {s:?}"
    );
    assert_eq!(
        validate_tag(s).is_ok(),
        tag_ok(s),
        "validate_tag vs regex on {s:?}"
    );
    assert_eq!(
        validate_registry(s).is_ok(),
        registry_ok(s),
        "validate_registry vs regex on {s:?}"
    );

    // An independent split, docker's rule.
    let (registry, rest) = match s.split_once('/') {
        Some((first, rest)) if looks_like_registry(first) => (Some(first), rest),
        _ => (None, s),
    };
    let (name_and_tag, digest) = match rest.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (rest, None),
    };
    let (name, tag) = match name_and_tag.split_once(':') {
        Some((n, t)) => (n, Some(t)),
        None => (name_and_tag, None),
    };
    let full_name_len = registry.map_or(0, |r| r.len() + 1) + name.len();
    let expected_ok = !s.is_empty()
        && s.len() <= MAX_REFERENCE_LEN
        && registry.is_none_or(registry_ok)
        && name_ok(name)
        && full_name_len <= MAX_NAME_LEN
        && tag.is_none_or(tag_ok)
        && digest.is_none_or(|d| Digest::parse(d).is_ok());

    let parsed = Reference::parse(s);
    assert_eq!(
        parsed.is_ok(),
        expected_ok,
        "parser and regexes disagree on {s:?}: {parsed:?}"
    );
    if let Ok(r) = &parsed {
        assert_eq!(r.registry(), registry);
        assert_eq!(r.repository(), name);
        assert_eq!(r.tag(), tag);
        assert_eq!(r.digest().map(Digest::as_str), digest);
        assert_eq!(r.to_string(), s);
        assert_eq!(&Reference::parse(&r.to_string()).unwrap(), r);
        assert_eq!(r.name(), &s[..full_name_len]);

        // Rebuilding from the parts gives the same reference (when `new` accepts the parts).
        if let Ok(mut built) = Reference::new(r.registry(), r.repository()) {
            if let Some(t) = r.tag() {
                built = built.with_tag(t).unwrap();
            }
            if let Some(d) = r.digest() {
                built = built.with_digest(d.clone());
            }
            assert_eq!(&built, r);
        } else {
            assert!(r.registry().is_none(), "new rejected the registry of {s:?}");
        }
    } else if let Err(e) = &parsed {
        assert!(!e.to_string().is_empty());
    }

    match Reference::parse_normalized(s) {
        Ok(n) => {
            let registry = n.registry().unwrap();
            assert_ne!(registry, reference::LEGACY_DEFAULT_REGISTRY);
            assert!(n.tag().is_some() || n.digest().is_some());
            if registry == DEFAULT_REGISTRY {
                assert!(n.repository().contains('/'));
            }
            assert!(n.name().len() <= MAX_NAME_LEN);
            let displayed = n.to_string();
            assert_eq!(Reference::parse(&displayed).unwrap(), n);
            assert_eq!(Reference::parse_normalized(&displayed).unwrap(), n);
            let familiar = n.familiar();
            assert_eq!(
                Reference::parse_normalized(&familiar).unwrap(),
                n,
                "familiar form {familiar:?} of {s:?} does not read back"
            );
            assert_eq!(n.api_repository(), n.repository());
            // A strictly valid reference normalises whenever the longer name still fits.
        }
        Err(_) => {
            if let Ok(r) = &parsed {
                let hex_id =
                    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
                let grows = r.registry().is_none()
                    || r.registry() == Some(reference::LEGACY_DEFAULT_REGISTRY);
                assert!(hex_id || grows, "{s:?} parses strictly but not normalised");
            }
        }
    }
}
