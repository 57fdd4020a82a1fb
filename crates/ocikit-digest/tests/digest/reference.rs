//! Tests for `ocikit_digest::reference`.
#![allow(clippy::unwrap_used)] // tests fail by panicking

use std::collections::HashSet;

use ocikit_digest::reference::{
    self, ParseErrorKind, api_host, validate_name, validate_registry, validate_tag,
};
use ocikit_digest::{Digest, Reference};
use proptest::prelude::*;

const HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

fn sha() -> String {
    format!("sha256:{HEX}")
}

fn parse(s: &str) -> Reference {
    Reference::parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
}

fn kind_of_parse(s: &str) -> ParseErrorKind {
    Reference::parse(s)
        .expect_err(&format!("{s:?} should be rejected"))
        .kind()
        .clone()
}

fn name_kind(s: &str) -> ParseErrorKind {
    validate_name(s)
        .expect_err(&format!("name {s:?} should be rejected"))
        .kind()
        .clone()
}

fn tag_kind(s: &str) -> ParseErrorKind {
    validate_tag(s)
        .expect_err(&format!("tag {s:?} should be rejected"))
        .kind()
        .clone()
}

fn registry_kind(s: &str) -> ParseErrorKind {
    validate_registry(s)
        .expect_err(&format!("registry {s:?} should be rejected"))
        .kind()
        .clone()
}

// ---------------------------------------------------------------------------------------
// Strict parsing: positive cases.

/// Input, registry, repository, tag, digest.
type Expected<'a> = (
    &'a str,
    Option<&'a str>,
    &'a str,
    Option<&'a str>,
    Option<&'a str>,
);

#[test]
fn parses_parts_as_written() {
    let sha = sha();
    let cases: &[Expected<'_>] = &[
        ("alpine", None, "alpine", None, None),
        ("alpine:3.19", None, "alpine", Some("3.19"), None),
        ("library/alpine", None, "library/alpine", None, None),
        (
            "docker.io/library/alpine:3.19",
            Some("docker.io"),
            "library/alpine",
            Some("3.19"),
            None,
        ),
        ("localhost/foo", Some("localhost"), "foo", None, None),
        ("localhost", None, "localhost", None, None),
        ("localhost:5000", None, "localhost", Some("5000"), None),
        (
            "localhost:5000/a/b:t",
            Some("localhost:5000"),
            "a/b",
            Some("t"),
            None,
        ),
        (
            "192.168.1.10:5000/team/app:v1",
            Some("192.168.1.10:5000"),
            "team/app",
            Some("v1"),
            None,
        ),
        ("[::1]:5000/x:y", Some("[::1]:5000"), "x", Some("y"), None),
        ("[2001:db8::1]/x", Some("[2001:db8::1]"), "x", None, None),
        (
            "quay.io/a/b/c/d/e:latest",
            Some("quay.io"),
            "a/b/c/d/e",
            Some("latest"),
            None,
        ),
        ("Foo/bar", Some("Foo"), "bar", None, None),
        (
            "my-registry.example.com:443/x",
            Some("my-registry.example.com:443"),
            "x",
            None,
            None,
        ),
        (
            "r.io/a.b_c__d---e/f:_T.a-g",
            Some("r.io"),
            "a.b_c__d---e/f",
            Some("_T.a-g"),
            None,
        ),
    ];
    for &(input, registry, repository, tag, digest) in cases {
        let r = parse(input);
        assert_eq!(r.registry(), registry, "{input}");
        assert_eq!(r.repository(), repository, "{input}");
        assert_eq!(r.tag(), tag, "{input}");
        assert_eq!(r.digest().map(Digest::as_str), digest, "{input}");
        assert_eq!(r.to_string(), input);
    }

    let with_digest = format!("localhost:5000/a/b@{sha}");
    let r = parse(&with_digest);
    assert_eq!(r.registry(), Some("localhost:5000"));
    assert_eq!(r.repository(), "a/b");
    assert_eq!(r.tag(), None);
    assert_eq!(r.digest(), Some(&Digest::empty_sha256()));
    assert_eq!(r.to_string(), with_digest);

    let both = format!("ghcr.io/org/app:1.0@{sha}");
    let r = parse(&both);
    assert_eq!(r.tag(), Some("1.0"));
    assert_eq!(r.digest().map(Digest::as_str), Some(sha.as_str()));
    assert_eq!(r.name(), "ghcr.io/org/app");
    assert_eq!(r.to_string(), both);

    // Unregistered (but grammar-valid) digest algorithms are carried.
    let r = parse("example.com/x@foo+bar:AbC=");
    assert_eq!(r.digest().map(|d| d.encoded()), Some("AbC="));
    assert!(!r.digest().is_some_and(Digest::is_supported));
}

#[test]
fn names_at_the_length_limit() {
    let name = format!("a/{}", "b".repeat(reference::MAX_NAME_LEN - 2));
    assert_eq!(name.len(), 255);
    assert!(validate_name(&name).is_ok());
    assert_eq!(
        name_kind(&format!("{name}c")),
        ParseErrorKind::NameTooLong { max: 255 }
    );
    // The registry counts towards the limit.
    let repository = "b".repeat(255 - "r.io/".len());
    assert!(Reference::parse(&format!("r.io/{repository}")).is_ok());
    assert_eq!(
        kind_of_parse(&format!("r.io/{repository}b")),
        ParseErrorKind::NameTooLong { max: 255 }
    );
    // The longest possible reference parses; one byte more is rejected up front.
    let tag = "t".repeat(128);
    let longest = format!("r.io/{repository}:{tag}@sha256:{HEX}");
    assert!(Reference::parse(&longest).is_ok());
    assert_eq!(
        kind_of_parse(&"a".repeat(10_000)),
        ParseErrorKind::TooLong {
            max: reference::MAX_REFERENCE_LEN
        }
    );
}

// ---------------------------------------------------------------------------------------
// Hostile names, tags and registries (SPEC C-N01, C-N04, C-N06).

#[test]
fn hostile_names_are_rejected_with_precise_kinds() {
    use ParseErrorKind::*;
    let cases: &[(&str, ParseErrorKind)] = &[
        ("foo/../bar", BadNameSeparator { position: 4 }),
        ("..", BadNameSeparator { position: 0 }),
        ("a..b", BadNameSeparator { position: 2 }),
        ("foo//bar", EmptyNameComponent { position: 4 }),
        ("Foo", UppercaseName { position: 0 }),
        ("fOo", UppercaseName { position: 1 }),
        ("-foo", BadNameSeparator { position: 0 }),
        ("foo-", BadNameSeparator { position: 3 }),
        ("foo--", BadNameSeparator { position: 3 }),
        ("foo/", EmptyNameComponent { position: 4 }),
        ("/foo", EmptyNameComponent { position: 0 }),
        ("a___b", BadNameSeparator { position: 3 }),
        ("a_.b", BadNameSeparator { position: 2 }),
        ("a.-b", BadNameSeparator { position: 2 }),
        ("a-_b", BadNameSeparator { position: 2 }),
        ("a-/b", BadNameSeparator { position: 1 }),
        ("a/.b", BadNameSeparator { position: 2 }),
        ("", EmptyName),
        ("foo bar", BadNameChar { position: 3 }),
        ("foo:bar", BadNameChar { position: 3 }),
        ("foo@bar", BadNameChar { position: 3 }),
        ("caf\u{e9}", BadNameChar { position: 3 }),
        ("foo\0", BadNameChar { position: 3 }),
        ("foo\\bar", BadNameChar { position: 3 }),
    ];
    for (name, kind) in cases {
        assert_eq!(&name_kind(name), kind, "{name:?}");
    }
    assert_eq!(
        name_kind(&"a".repeat(10_000)),
        ParseErrorKind::NameTooLong { max: 255 }
    );
    assert_eq!(
        name_kind(&"a".repeat(256)),
        ParseErrorKind::NameTooLong { max: 255 }
    );
}

#[test]
fn hostile_names_are_rejected_inside_references() {
    use ParseErrorKind::*;
    let cases: &[(&str, ParseErrorKind)] = &[
        ("foo/../bar", BadNameSeparator { position: 4 }),
        ("..", BadNameSeparator { position: 0 }),
        ("a..b", BadNameSeparator { position: 2 }),
        ("foo//bar", EmptyNameComponent { position: 4 }),
        ("Foo", UppercaseName { position: 0 }),
        ("-foo", BadNameSeparator { position: 0 }),
        ("foo-", BadNameSeparator { position: 3 }),
        ("foo/", EmptyNameComponent { position: 4 }),
        ("a___b", BadNameSeparator { position: 3 }),
        // Positions count from the start of the whole reference.
        ("r.io/a..b:t", BadNameSeparator { position: 7 }),
        (
            "localhost:5000/foo//bar",
            EmptyNameComponent { position: 19 },
        ),
        ("r.io/Foo", UppercaseName { position: 5 }),
        ("foo/Bar", UppercaseName { position: 4 }),
        ("r.io/", EmptyName),
        ("", Empty),
        ("@sha256:abc", EmptyName),
        (":tag", EmptyName),
    ];
    for (input, kind) in cases {
        assert_eq!(&kind_of_parse(input), kind, "{input:?}");
    }
}

#[test]
fn hostile_tags_are_rejected_with_precise_kinds() {
    use ParseErrorKind::*;
    let cases: &[(&str, ParseErrorKind)] = &[
        (".tag", BadTagStart { position: 0 }),
        ("-tag", BadTagStart { position: 0 }),
        (".INVALID_MANIFEST_NAME", BadTagStart { position: 0 }),
        ("tag with space", BadTagChar { position: 3 }),
        ("a:b", BadTagChar { position: 1 }),
        ("a/b", BadTagChar { position: 1 }),
        ("v1+build", BadTagChar { position: 2 }),
        ("", EmptyTag),
    ];
    for (tag, kind) in cases {
        assert_eq!(&tag_kind(tag), kind, "{tag:?}");
    }
    assert_eq!(tag_kind(&"x".repeat(129)), TagTooLong { max: 128 });
    assert!(validate_tag(&"x".repeat(128)).is_ok());
    for ok in ["latest", "_", "0", "A", "v1.2.3-rc.1_build", "__x..--"] {
        assert!(validate_tag(ok).is_ok(), "{ok:?}");
    }

    // Inside references, positions count from the start of the whole reference.
    assert_eq!(kind_of_parse("x:.tag"), BadTagStart { position: 2 });
    assert_eq!(kind_of_parse("x:-tag"), BadTagStart { position: 2 });
    assert_eq!(
        kind_of_parse("x:tag with space"),
        BadTagChar { position: 5 }
    );
    assert_eq!(kind_of_parse("r.io/x:a:b"), BadTagChar { position: 8 });
    assert_eq!(kind_of_parse("alpine:"), EmptyTag);
    assert_eq!(
        kind_of_parse(&format!("x:{}", "a".repeat(129))),
        TagTooLong { max: 128 }
    );
    assert!(Reference::parse(&format!("x:{}", "a".repeat(128))).is_ok());
}

#[test]
fn registries() {
    use ParseErrorKind::*;
    for ok in [
        "localhost",
        "localhost:5000",
        "docker.io",
        "a",
        "a-b.c--d.e",
        "Example.COM",
        "127.0.0.1:1",
        "10.0.0.1:65535",
        "[::1]",
        "[::1]:5000",
        "[2001:DB8::ff]:443",
        "[fe80::1:2:3:4]",
    ] {
        assert!(validate_registry(ok).is_ok(), "{ok:?}");
    }
    let cases: &[(&str, ParseErrorKind)] = &[
        ("", EmptyRegistry),
        ("a..b", EmptyRegistryLabel { position: 2 }),
        (".a", EmptyRegistryLabel { position: 0 }),
        ("a.", EmptyRegistryLabel { position: 2 }),
        (":5000", EmptyRegistryLabel { position: 0 }),
        ("-a.com", BadRegistryHyphen { position: 0 }),
        ("a-.com", BadRegistryHyphen { position: 1 }),
        ("a.com-", BadRegistryHyphen { position: 5 }),
        ("a.b-:80", BadRegistryHyphen { position: 3 }),
        ("a_b.com", BadRegistryChar { position: 1 }),
        ("a b", BadRegistryChar { position: 1 }),
        ("user@host", BadRegistryChar { position: 4 }),
        ("localhost:", EmptyPort { position: 9 }),
        ("localhost:0", BadPort { position: 10 }),
        ("localhost:65536", BadPort { position: 10 }),
        ("localhost:000080", BadPort { position: 10 }),
        ("localhost:99999999999999999999", BadPort { position: 10 }),
        ("localhost:8a", BadPort { position: 11 }),
        ("localhost:80:80", BadPort { position: 12 }),
        ("localhost:-1", BadPort { position: 10 }),
        ("[::1", BadIpv6 { position: 0 }),
        ("[", BadIpv6 { position: 0 }),
        ("[]", BadIpv6 { position: 0 }),
        ("[::g]", BadIpv6 { position: 3 }),
        ("[1:2:3]", BadIpv6 { position: 0 }),
        ("[::ffff:1.2.3.4]", BadIpv6 { position: 9 }),
        ("[::1]x", BadRegistryChar { position: 5 }),
        ("[::1]:", EmptyPort { position: 5 }),
    ];
    for (registry, kind) in cases {
        assert_eq!(&registry_kind(registry), kind, "{registry:?}");
    }
    assert_eq!(
        registry_kind(&"a".repeat(256)),
        RegistryTooLong { max: 255 }
    );

    // Inside a reference.
    assert_eq!(kind_of_parse("localhost:/foo"), EmptyPort { position: 9 });
    assert_eq!(kind_of_parse("localhost:0/foo"), BadPort { position: 10 });
    assert_eq!(kind_of_parse("[::1/foo"), BadIpv6 { position: 0 });
    assert_eq!(
        kind_of_parse("-bad.com/foo"),
        BadRegistryHyphen { position: 0 }
    );
    assert_eq!(kind_of_parse("../foo"), EmptyRegistryLabel { position: 0 });
    assert_eq!(kind_of_parse("docker://alpine"), EmptyPort { position: 6 });
}

#[test]
fn invalid_digests_are_wrapped() {
    let err = Reference::parse("alpine@sha256:E3B0").unwrap_err();
    let ParseErrorKind::InvalidDigest(inner) = err.kind() else {
        panic!("expected InvalidDigest, got {err:?}");
    };
    assert_eq!(
        inner.kind(),
        &ocikit_digest::digest::ParseErrorKind::UppercaseHex { position: 7 }
    );
    assert!(
        err.to_string()
            .starts_with("invalid digest in image reference: ")
    );
    assert!(matches!(
        kind_of_parse("alpine@"),
        ParseErrorKind::InvalidDigest(e) if e.kind() == &ocikit_digest::digest::ParseErrorKind::Empty
    ));
    assert!(matches!(
        kind_of_parse(&format!("a@b@{}", sha())),
        ParseErrorKind::InvalidDigest(_)
    ));
    // Name and tag are checked before the digest.
    assert_eq!(
        kind_of_parse("A@nonsense"),
        ParseErrorKind::UppercaseName { position: 0 }
    );
}

#[test]
fn error_messages_are_lowercase_without_trailing_period() {
    for input in [
        "",
        "foo//bar",
        "Foo",
        "x:.tag",
        "localhost:0/x",
        "[::1/x",
        "a@b",
    ] {
        let message = Reference::parse(input).unwrap_err().to_string();
        assert!(!message.ends_with('.'), "{message}");
        assert!(
            message.chars().next().is_some_and(|c| c.is_lowercase()),
            "{message}"
        );
    }
    assert_eq!(
        name_kind("foo//bar").to_string(),
        "repository name component is empty at byte 4"
    );
    let wrapped: ocikit_digest::Error = Reference::parse("Foo").unwrap_err().into();
    assert!(matches!(wrapped, ocikit_digest::Error::Reference(_)));
}

// ---------------------------------------------------------------------------------------
// Normalisation.

#[test]
fn normalisation_table() {
    let sha = sha();
    let cases: Vec<(String, String, String)> = vec![
        (
            "alpine".into(),
            "docker.io/library/alpine:latest".into(),
            "alpine:latest".into(),
        ),
        (
            "alpine:3".into(),
            "docker.io/library/alpine:3".into(),
            "alpine:3".into(),
        ),
        (
            format!("alpine@{sha}"),
            format!("docker.io/library/alpine@{sha}"),
            format!("alpine@{sha}"),
        ),
        (
            format!("alpine:3@{sha}"),
            format!("docker.io/library/alpine:3@{sha}"),
            format!("alpine:3@{sha}"),
        ),
        (
            "library/alpine".into(),
            "docker.io/library/alpine:latest".into(),
            "alpine:latest".into(),
        ),
        (
            "user/app:v1".into(),
            "docker.io/user/app:v1".into(),
            "user/app:v1".into(),
        ),
        (
            "docker.io/alpine".into(),
            "docker.io/library/alpine:latest".into(),
            "alpine:latest".into(),
        ),
        (
            "index.docker.io/alpine:3".into(),
            "docker.io/library/alpine:3".into(),
            "alpine:3".into(),
        ),
        (
            "index.docker.io/user/app".into(),
            "docker.io/user/app:latest".into(),
            "user/app:latest".into(),
        ),
        (
            "docker.io/library/a/b".into(),
            "docker.io/library/a/b:latest".into(),
            "library/a/b:latest".into(),
        ),
        (
            "docker.io/foo.com/bar".into(),
            "docker.io/foo.com/bar:latest".into(),
            "docker.io/foo.com/bar:latest".into(),
        ),
        (
            "docker.io/localhost/bar".into(),
            "docker.io/localhost/bar:latest".into(),
            "docker.io/localhost/bar:latest".into(),
        ),
        (
            "foo.com".into(),
            "docker.io/library/foo.com:latest".into(),
            "foo.com:latest".into(),
        ),
        (
            "localhost:5000/a".into(),
            "localhost:5000/a:latest".into(),
            "localhost:5000/a:latest".into(),
        ),
        (
            "localhost/a".into(),
            "localhost/a:latest".into(),
            "localhost/a:latest".into(),
        ),
        (
            "quay.io/x/y:1".into(),
            "quay.io/x/y:1".into(),
            "quay.io/x/y:1".into(),
        ),
        (
            "ghcr.io/x".into(),
            "ghcr.io/x:latest".into(),
            "ghcr.io/x:latest".into(),
        ),
        (
            "[::1]:5000/x".into(),
            "[::1]:5000/x:latest".into(),
            "[::1]:5000/x:latest".into(),
        ),
    ];
    for (input, normalized, familiar) in &cases {
        let n = Reference::parse_normalized(input)
            .unwrap_or_else(|e| panic!("{input:?} should normalise: {e}"));
        assert_eq!(&n.to_string(), normalized, "{input}");
        assert_eq!(&n.familiar(), familiar, "{input}");
        assert_eq!(Reference::parse_normalized(familiar).unwrap(), n, "{input}");
        assert_eq!(Reference::parse(normalized).unwrap(), n, "{input}");
    }
}

#[test]
fn normalisation_rejections() {
    assert_eq!(
        Reference::parse_normalized(HEX).unwrap_err().kind(),
        &ParseErrorKind::HexIdentifierName
    );
    // The same string is a fine repository name strictly, and with a tag when normalised.
    assert!(Reference::parse(HEX).is_ok());
    assert!(Reference::parse_normalized(&format!("{HEX}:1")).is_ok());
    assert_eq!(
        Reference::parse_normalized("Alpine").unwrap_err().kind(),
        &ParseErrorKind::UppercaseName { position: 0 }
    );
    // The limit applies to the normalised name: docker.io/library/ adds 18 bytes.
    let repository = "a".repeat(255 - "docker.io/library/".len());
    assert!(Reference::parse_normalized(&repository).is_ok());
    let longer = format!("{repository}a");
    assert!(Reference::parse(&longer).is_ok());
    assert_eq!(
        Reference::parse_normalized(&longer).unwrap_err().kind(),
        &ParseErrorKind::NameTooLong { max: 255 }
    );
}

#[test]
fn familiar_of_strict_references() {
    assert_eq!(parse("alpine").familiar(), "alpine");
    assert_eq!(parse("docker.io/library/alpine:3").familiar(), "alpine:3");
    assert_eq!(
        parse("index.docker.io/library/alpine").familiar(),
        "index.docker.io/library/alpine"
    );
    assert_eq!(parse("quay.io/a/b").familiar(), "quay.io/a/b");
}

#[test]
fn default_tag() {
    assert_eq!(
        parse("alpine").with_default_tag().to_string(),
        "alpine:latest"
    );
    assert_eq!(parse("alpine:3").with_default_tag().to_string(), "alpine:3");
    let by_digest = format!("alpine@{}", sha());
    assert_eq!(parse(&by_digest).with_default_tag().to_string(), by_digest);
}

// ---------------------------------------------------------------------------------------
// Building, accessors for clients, traits.

#[test]
fn builders() {
    let r = Reference::new(Some("localhost:5000"), "a/b").unwrap();
    assert_eq!(r.to_string(), "localhost:5000/a/b");
    let r = r
        .with_tag("v1")
        .unwrap()
        .with_digest(Digest::empty_sha256());
    assert_eq!(r.to_string(), format!("localhost:5000/a/b:v1@{}", sha()));
    assert_eq!(r, parse(&r.to_string()));
    let r = r.with_tag("v2").unwrap();
    assert_eq!(r.tag(), Some("v2"));
    assert_eq!(
        r.clone().without_digest().to_string(),
        "localhost:5000/a/b:v2"
    );
    assert_eq!(
        r.without_tag().to_string(),
        format!("localhost:5000/a/b@{}", sha())
    );

    let r = Reference::new(None, "library/alpine").unwrap();
    assert_eq!(r.registry(), None);
    assert_eq!(
        r.with_tag("-x").unwrap_err().kind(),
        &ParseErrorKind::BadTagStart { position: 0 }
    );

    use ParseErrorKind::*;
    let err = |registry: Option<&str>, repository: &str| {
        Reference::new(registry, repository)
            .unwrap_err()
            .kind()
            .clone()
    };
    assert_eq!(err(None, "a..b"), BadNameSeparator { position: 2 });
    assert_eq!(err(Some("r.io"), "A"), UppercaseName { position: 0 });
    assert_eq!(
        err(Some("bad_host.io"), "a"),
        BadRegistryChar { position: 3 }
    );
    assert_eq!(err(Some("myhost"), "a"), UnqualifiedRegistry);
    assert_eq!(err(None, "foo.com/bar"), AmbiguousRepository);
    assert_eq!(err(None, "localhost/bar"), AmbiguousRepository);
    assert_eq!(
        err(Some("r.io"), &"a".repeat(251)),
        NameTooLong { max: 255 }
    );
    assert!(Reference::new(Some("r.io"), &"a".repeat(250)).is_ok());
    // A dotted component is fine when it cannot be mistaken for the registry.
    assert!(Reference::new(None, "foo.com").is_ok());
    assert!(Reference::new(None, "a/foo.com").is_ok());
    assert!(Reference::new(Some("r.io"), "foo.com/bar").is_ok());
    assert!(Reference::new(Some("MyHost"), "a").is_ok());
}

#[test]
fn client_accessors() {
    let r = parse("alpine");
    assert_eq!(r.registry_or_default(), "docker.io");
    assert_eq!(r.api_host(), "registry-1.docker.io");
    assert_eq!(r.api_repository(), "library/alpine");

    let r = parse("index.docker.io/user/app");
    assert_eq!(r.registry_or_default(), "index.docker.io");
    assert_eq!(r.api_host(), "registry-1.docker.io");
    assert_eq!(r.api_repository(), "user/app");

    let r = parse("docker.io/alpine");
    assert_eq!(r.api_repository(), "library/alpine");

    let r = parse("localhost:5000/alpine");
    assert_eq!(r.registry_or_default(), "localhost:5000");
    assert_eq!(r.api_host(), "localhost:5000");
    assert_eq!(r.api_repository(), "alpine");

    assert_eq!(api_host("docker.io"), "registry-1.docker.io");
    assert_eq!(api_host("index.docker.io"), "registry-1.docker.io");
    assert_eq!(api_host("ghcr.io"), "ghcr.io");
    assert_eq!(api_host("registry-1.docker.io"), "registry-1.docker.io");
}

#[test]
fn traits() {
    let a: Reference = "r.io/a:1".parse().unwrap();
    let b = Reference::try_from("r.io/a:2").unwrap();
    let c = Reference::try_from(String::from("r.io/a:1")).unwrap();
    assert_eq!(a, c);
    assert_ne!(a, b);
    assert!(a < b);
    assert_eq!(format!("{a:?}"), "Reference(r.io/a:1)");
    assert_eq!(String::from(a.clone()), "r.io/a:1");
    let set: HashSet<Reference> = [a.clone(), b.clone(), c].into_iter().collect();
    assert_eq!(set.len(), 2);
    // No implicit normalisation in equality.
    assert_ne!(parse("alpine"), parse("docker.io/library/alpine"));

    let json = serde_json::to_string(&vec![a.clone(), b]).unwrap();
    assert_eq!(json, r#"["r.io/a:1","r.io/a:2"]"#);
    let back: Vec<Reference> = serde_json::from_str(&json).unwrap();
    assert_eq!(back[0], a);
    let err = serde_json::from_str::<Reference>(r#""foo//bar""#).unwrap_err();
    assert!(
        err.to_string()
            .contains("repository name component is empty at byte 4")
    );
}

// ---------------------------------------------------------------------------------------
// Property tests.

const NAME_RE: &str = r"^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$";
const TAG_RE: &str = r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$";

fn name_component() -> impl Strategy<Value = String> {
    (
        "[a-z0-9]{1,4}",
        prop::collection::vec(("(\\.|_|__|-{1,3})", "[a-z0-9]{1,4}"), 0..3),
    )
        .prop_map(|(head, rest)| {
            let mut out = head;
            for (separator, alnum) in rest {
                out.push_str(&separator);
                out.push_str(&alnum);
            }
            out
        })
}

fn valid_name() -> impl Strategy<Value = String> {
    prop::collection::vec(name_component(), 1..5).prop_map(|components| components.join("/"))
}

fn valid_registry() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("localhost".to_string()),
        "[a-zA-Z0-9]([a-zA-Z0-9-]{0,3}[a-zA-Z0-9])?(\\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,3}[a-zA-Z0-9])?){1,3}",
        Just("[::1]".to_string()),
        Just("[2001:db8::42]".to_string()),
    ]
    .prop_flat_map(|host| {
        prop::option::of(1u32..=65535).prop_map(move |port| match port {
            Some(port) => format!("{host}:{port}"),
            None => host.clone(),
        })
    })
}

proptest! {
    #[test]
    fn generated_references_round_trip(
        registry in prop::option::of(valid_registry()),
        name in valid_name(),
        tag in prop::option::of("[a-zA-Z0-9_][a-zA-Z0-9._-]{0,20}"),
        digest in prop::option::of(Just(Digest::empty_sha256())),
    ) {
        prop_assert!(validate_name(&name).is_ok());
        let built = Reference::new(registry.as_deref(), &name);
        let first_is_dotted = name.split('/').next().is_some_and(|c| c.contains('.'));
        if registry.is_none() && name.contains('/') && first_is_dotted {
            let err = built.unwrap_err();
            prop_assert_eq!(err.kind(), &ParseErrorKind::AmbiguousRepository);
            return Ok(());
        }
        let mut r = built.unwrap();
        if let Some(tag) = &tag {
            r = r.with_tag(tag).unwrap();
        }
        if let Some(digest) = digest.clone() {
            r = r.with_digest(digest);
        }
        let text = r.to_string();
        let mut expected = registry.as_ref().map(|r| format!("{r}/")).unwrap_or_default();
        expected.push_str(&name);
        if let Some(tag) = &tag {
            expected.push(':');
            expected.push_str(tag);
        }
        if let Some(digest) = &digest {
            expected.push('@');
            expected.push_str(digest.as_str());
        }
        prop_assert_eq!(&text, &expected);
        let back = Reference::parse(&text).unwrap();
        prop_assert_eq!(back.registry(), registry.as_deref());
        prop_assert_eq!(back.repository(), name.as_str());
        prop_assert_eq!(back.tag(), tag.as_deref());
        prop_assert_eq!(&back, &r);
        let n = Reference::parse_normalized(&text).unwrap();
        prop_assert_eq!(Reference::parse_normalized(&n.familiar()).unwrap(), n);
    }

    #[test]
    fn validate_name_agrees_with_the_spec_regex(s in "[a-zA-Z0-9._/-]{0,20}") {
        let re = regex::Regex::new(NAME_RE).unwrap();
        prop_assert_eq!(validate_name(&s).is_ok(), re.is_match(&s), "{:?}", s);
    }

    #[test]
    fn validate_name_agrees_on_separator_heavy_strings(s in "[ab._/-]{0,16}") {
        let re = regex::Regex::new(NAME_RE).unwrap();
        prop_assert_eq!(validate_name(&s).is_ok(), re.is_match(&s), "{:?}", s);
    }

    #[test]
    fn validate_tag_agrees_with_the_spec_regex(s in "[a-zA-Z0-9._ :/-]{0,130}") {
        let re = regex::Regex::new(TAG_RE).unwrap();
        prop_assert_eq!(validate_tag(&s).is_ok(), re.is_match(&s), "{:?}", s);
    }

    #[test]
    fn parse_round_trips_whatever_it_accepts(s in "[a-zA-Z0-9._/:@\\[\\]-]{0,30}") {
        if let Ok(r) = Reference::parse(&s) {
            prop_assert_eq!(r.to_string(), s.clone());
            prop_assert!(validate_name(r.repository()).is_ok());
            if let Some(tag) = r.tag() {
                prop_assert!(validate_tag(tag).is_ok());
            }
            if let Some(registry) = r.registry() {
                prop_assert!(validate_registry(registry).is_ok());
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The fuzz oracle, over the seed corpus and generated inputs.

#[cfg(feature = "__fuzz")]
mod oracle {
    use super::*;

    #[test]
    fn fuzz_oracle_accepts_every_seed() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fuzz/seeds/reference_parse");
        let mut count = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let data = std::fs::read(entry.unwrap().path()).unwrap();
            ocikit_digest::fuzz::reference_parse(&data);
            count += 1;
        }
        assert!(count >= 20, "only {count} seeds in {}", dir.display());
    }

    proptest! {
        #[test]
        fn fuzz_oracle_holds(s in "[a-zA-Z0-9._/:@\\[\\]-]{0,40}") {
            ocikit_digest::fuzz::reference_parse(s.as_bytes());
        }

        #[test]
        fn fuzz_oracle_holds_on_reference_shapes(
            registry in prop::option::of(prop_oneof![
                Just("localhost"), Just("r.io"), Just("[::1]:5000"), Just("docker.io"),
                Just("index.docker.io"), Just("Foo"), Just("a-.b"), Just("x:0"),
            ]),
            name in "[a-z0-9._/-]{0,12}",
            tag in prop::option::of("[a-zA-Z0-9._-]{0,6}"),
            digest in prop::option::of(prop_oneof![
                Just(format!("sha256:{HEX}")), Just("sha256:abc".to_string()),
            ]),
        ) {
            let mut s = registry.map(|r| format!("{r}/")).unwrap_or_default();
            s.push_str(&name);
            if let Some(tag) = tag {
                s.push(':');
                s.push_str(&tag);
            }
            if let Some(digest) = digest {
                s.push('@');
                s.push_str(&digest);
            }
            ocikit_digest::fuzz::reference_parse(s.as_bytes());
        }
    }
}
