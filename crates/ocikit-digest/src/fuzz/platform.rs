//! `platform_parse`: platform strings against a small reference parser written here.

use std::sync::OnceLock;

use regex::Regex;

use crate::platform::{self, PlatformErrorKind};

/// `os[(version)]`, each a component: a letter or digit, then letters, digits, `_ . -`.
fn os_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"^([A-Za-z0-9][A-Za-z0-9_.-]*)(?:\(([A-Za-z0-9][A-Za-z0-9_.-]*)\))?$").unwrap()
    })
}

fn component_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$").unwrap())
}

/// The reference: `(os, os version, architecture, variant)` normalised as containerd
/// documents it, or `None` when the string is not a platform.
fn reference(s: &str) -> Option<(String, Option<String>, String, Option<String>)> {
    let parts: Vec<&str> = s.split('/').collect();
    if !(2..=3).contains(&parts.len()) {
        return None;
    }
    let caps = os_re().captures(parts[0])?;
    if !parts[1..].iter().all(|p| component_re().is_match(p)) {
        return None;
    }
    let mut os = caps[1].to_ascii_lowercase();
    if os == "macos" || os == "osx" {
        os = "darwin".into();
    }
    let version = caps.get(2).map(|v| v.as_str().to_owned());
    let arch = parts[1].to_ascii_lowercase();
    let variant = parts.get(2).map(|v| v.to_ascii_lowercase());
    const ALIASES: &[(&[&str], &str, Option<&str>)] = &[
        (&["i386", "i486", "i586", "i686", "x86", "386"], "386", None),
        (&["x86_64", "x86-64", "amd64"], "amd64", None),
        (&["aarch64", "arm64", "armv8", "armv8l"], "arm64", None),
        (&["armhf", "armv7", "armv7l"], "arm", Some("v7")),
        (&["armel", "armv6", "armv6l"], "arm", Some("v6")),
        (&["armv5", "armv5l", "armv5tel"], "arm", Some("v5")),
        (&["arm"], "arm", None),
        (&["ppc64el", "powerpc64le"], "ppc64le", None),
        (&["powerpc64"], "ppc64", None),
        (&["loongarch64"], "loong64", None),
        (&["mips64el"], "mips64le", None),
        (&["mipsel"], "mipsle", None),
    ];
    let Some(&(_, go_arch, implied)) = ALIASES
        .iter()
        .find(|(names, _, _)| names.contains(&arch.as_str()))
    else {
        return Some((os, version, arch, variant));
    };
    let mut variant = variant.or(implied.map(str::to_owned));
    if go_arch == "arm" || go_arch == "arm64" {
        variant = variant.map(|v| {
            if v.bytes().all(|b| b.is_ascii_digit()) {
                format!("v{v}")
            } else if go_arch == "arm64" && v == "v8.0" {
                "v8".into()
            } else {
                v
            }
        });
    }
    Some((os, version, go_arch.to_owned(), variant))
}

/// Oracle for platform strings: `parse` accepts exactly what the reference accepts and
/// normalises as it does; `format` and `parse` round-trip; a platform matches itself and
/// what names only its OS and architecture; a refusal's reason holds for the string.
pub fn platform_parse(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let expected = reference(s);
    let parsed = platform::parse(s);
    assert_eq!(
        parsed.is_ok(),
        expected.is_some(),
        "parser and reference disagree on {s:?}: {parsed:?}"
    );
    let p = match parsed {
        Ok(p) => p,
        Err(e) => {
            let parts = s.split('/').count();
            match e.kind() {
                PlatformErrorKind::Empty => assert!(s.is_empty()),
                PlatformErrorKind::MissingArchitecture => assert_eq!(parts, 1),
                PlatformErrorKind::TooManyComponents => assert!(parts > 3),
                PlatformErrorKind::EmptyComponent { index } => {
                    let part = s.split('/').nth(*index).unwrap();
                    assert!(
                        part.is_empty() || part.contains("()") || part.starts_with('('),
                        "component {index} of {s:?} is not empty"
                    );
                }
                PlatformErrorKind::BadChar { position } => {
                    let b = s.as_bytes()[*position];
                    let first =
                        *position == 0 || matches!(s.as_bytes()[*position - 1], b'/' | b'(');
                    assert!(
                        !b.is_ascii_alphanumeric() && (first || !matches!(b, b'_' | b'.' | b'-')),
                        "byte {position} of {s:?} is allowed there"
                    );
                }
                PlatformErrorKind::UnclosedOsVersion => {
                    assert!(s.split('/').next().unwrap().contains('('));
                }
            }
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    let (os, version, arch, variant) = expected.unwrap();
    assert_eq!(p.os().to_string(), os, "os of {s:?}");
    assert_eq!(
        p.os_version().as_deref(),
        version.as_deref(),
        "os version of {s:?}"
    );
    assert_eq!(p.architecture().to_string(), arch, "architecture of {s:?}");
    assert_eq!(
        p.variant().as_deref(),
        variant.as_deref(),
        "variant of {s:?}"
    );

    // format is parse's inverse on normalised platforms, and normalising is idempotent.
    let shown = platform::format(&p);
    let again = platform::parse(&shown).unwrap();
    assert_eq!(
        again, p,
        "{s:?} formatted as {shown:?} reads back differently"
    );
    assert_eq!(platform::format(&again), shown);
    assert_eq!(platform::normalize(&p), p);

    // Matching: itself, and the same OS and architecture with nothing else named.
    assert!(platform::matches(&p, &p));
    let plain = platform::build(&os, &arch, None);
    assert!(
        platform::matches(&plain, &p),
        "{s:?} does not match {os}/{arch}"
    );
    if let Some(v) = &variant {
        assert!(platform::matches(&p, &platform::build(&os, &arch, Some(v))) == version.is_none());
    }
}
