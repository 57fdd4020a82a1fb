//! Descriptor parsing and checks: the image spec's examples and the hostile inputs of SPEC
//! C.6 and C.8.

use base64::Engine as _;
use oci_spec::image::{Descriptor, MediaType};
use ocikit_digest::descriptor::{
    self, InvalidDescriptorKind as K, MAX_SIZE, check, digest_of, embedded_data, parse,
};
use ocikit_digest::digest::{EMPTY_JSON_SHA256, EMPTY_SHA256, ParseErrorKind};
use ocikit_digest::json::{self, JsonErrorKind};
use ocikit_digest::media_type::{self, MediaTypeErrorKind};
use ocikit_digest::{Algorithm, Digest};
use proptest::prelude::*;
use serde_json::{Value, json};

const MANIFEST_DIGEST: &str =
    "sha256:5b0bcabd1ed22e9fb1310cf6c2dec7cdef19f0ad69efa1f392e94a4333501270";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn kind_of(doc: &str) -> K {
    parse(doc.as_bytes()).expect_err(doc).kind().clone()
}

fn kind_of_value(v: &Value) -> K {
    kind_of(&v.to_string())
}

/// A valid manifest descriptor with `extra` fields merged in (a `null` removes a field).
fn with(extra: Value) -> Value {
    let mut base = json!({
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "size": 7682,
        "digest": MANIFEST_DIGEST,
    });
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            base.as_object_mut().unwrap().remove(k);
        } else {
            base[k] = v.clone();
        }
    }
    base
}

fn empty_with(extra: Value) -> Value {
    let mut base = json!({
        "mediaType": "application/vnd.oci.empty.v1+json",
        "digest": EMPTY_JSON_SHA256,
        "size": 2,
        "data": "e30=",
    });
    for (k, v) in extra.as_object().unwrap() {
        base[k] = v.clone();
    }
    base
}

fn bad_media(field: &'static str, kind: MediaTypeErrorKind) -> impl Fn(&K) -> bool {
    move |k| matches!(k, K::BadMediaType { field: f, error } if *f == field && error.kind() == &kind)
}

// ---------------------------------------------------------------------------------------------
// Valid descriptors (image-spec descriptor.md and schema tests)

#[test]
fn image_spec_examples_parse() {
    let d = parse(
        br#"{
          "mediaType": "application/vnd.oci.image.manifest.v1+json",
          "size": 7682,
          "digest": "sha256:5b0bcabd1ed22e9fb1310cf6c2dec7cdef19f0ad69efa1f392e94a4333501270"
        }"#,
    )
    .unwrap();
    assert_eq!(d.media_type(), &MediaType::ImageManifest);
    assert_eq!(d.size(), 7682);
    assert_eq!(digest_of(&d).unwrap().as_str(), MANIFEST_DIGEST);
    assert_eq!(embedded_data(&d).unwrap(), None);

    let d = parse(
        br#"{
          "mediaType": "application/vnd.oci.image.manifest.v1+json",
          "size": 7682,
          "digest": "sha256:5b0bcabd1ed22e9fb1310cf6c2dec7cdef19f0ad69efa1f392e94a4333501270",
          "urls": ["https://example.com/example-manifest"]
        }"#,
    )
    .unwrap();
    assert_eq!(
        d.urls().as_deref(),
        Some(&["https://example.com/example-manifest".to_owned()][..])
    );

    let d = parse(
        br#"{
          "mediaType": "application/vnd.oci.image.manifest.v1+json",
          "size": 123,
          "digest": "sha256:87923725d74f4bfb94c9e86d64170f7521aad8221a5de834851470ca142da630",
          "artifactType": "application/vnd.example.sbom.v1"
        }"#,
    )
    .unwrap();
    assert_eq!(
        d.artifact_type().as_ref().map(|t| t.to_string()).as_deref(),
        Some("application/vnd.example.sbom.v1")
    );

    // An index entry with a platform and annotations.
    let d = parse(
        br#"{
          "mediaType": "application/vnd.oci.image.manifest.v1+json",
          "size": 7143,
          "digest": "sha256:e692418e4cbaf90ca69d05a66403747baa33ee08806650b51fab815ad7fc331f",
          "platform": {"architecture": "ppc64le", "os": "linux", "variant": "power9",
                       "os.version": "5.0", "os.features": ["x"], "features": []},
          "annotations": {"org.opencontainers.image.ref.name": "v1", "empty": ""}
        }"#,
    )
    .unwrap();
    let platform = d.platform().as_ref().unwrap();
    assert_eq!(platform.architecture().to_string(), "ppc64le");
    assert_eq!(platform.variant().as_deref(), Some("power9"));
    assert_eq!(d.annotations().as_ref().unwrap()["empty"], "");
}

#[test]
fn the_empty_descriptor() {
    let doc = empty_with(json!({})).to_string();
    let d = parse(doc.as_bytes()).unwrap();
    assert_eq!(d, descriptor::empty());
    assert_eq!(d.media_type(), &MediaType::EmptyJSON);
    assert_eq!(embedded_data(&d).unwrap(), Some(b"{}".to_vec()));
    check(&descriptor::empty()).unwrap();
    assert_eq!(
        json::to_canonical_vec(&descriptor::empty()).unwrap(),
        format!(
            r#"{{"data":"e30=","digest":"{EMPTY_JSON_SHA256}","mediaType":"application/vnd.oci.empty.v1+json","size":2}}"#
        )
        .as_bytes()
    );
}

#[test]
fn zero_length_blob_and_empty_data() {
    let d = parse(
        json!({"mediaType": "application/octet-stream", "digest": EMPTY_SHA256,
        "size": 0, "data": ""})
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    assert_eq!(embedded_data(&d).unwrap(), Some(Vec::new()));
}

// SPEC C-D07
#[test]
fn sha512_descriptors_and_data_verify() {
    let content = br#"{"schemaVersion":2}"#;
    let digest = Digest::sha512(content);
    let d = parse(
        json!({"mediaType": media_type::IMAGE_CONFIG, "digest": digest.as_str(),
        "size": content.len(), "data": b64(content)})
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    assert_eq!(digest_of(&d).unwrap().algorithm(), &Algorithm::Sha512);
    assert_eq!(embedded_data(&d).unwrap().as_deref(), Some(&content[..]));
}

// SPEC C-D06: grammar-valid unregistered algorithms are carried (when there is no data).
#[test]
fn unregistered_algorithms_are_accepted_without_data() {
    for digest in [
        "multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8",
        "sha256+b64u:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564",
    ] {
        let d = parse(with(json!({"digest": digest})).to_string().as_bytes()).unwrap();
        assert!(!digest_of(&d).unwrap().is_supported());
    }
}

// SPEC C-J12: unknown fields are accepted (on the descriptor and nested objects).
#[test]
fn unknown_fields_are_accepted() {
    let v = with(json!({
        "newUnspecifiedField": null,
        "another": {"deep": [1, 2, {"x": 1.5}]},
        "platform": {"os": "linux", "architecture": "amd64", "future": true},
    }));
    let d = parse(v.to_string().as_bytes()).unwrap();
    assert_eq!(d.size(), 7682);
    // Optional fields given as null read as absent.
    let d = parse(
        with(json!({"annotations": Value::Null}))
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    assert_eq!(d.annotations(), &None);
    let d = parse(
        br#"{"mediaType":"a/b","digest":"sha256:5b0bcabd1ed22e9fb1310cf6c2dec7cdef19f0ad69efa1f392e94a4333501270","size":1,"urls":null,"annotations":null,"platform":null,"artifactType":null,"data":null}"#,
    )
    .unwrap();
    assert_eq!(d.data(), &None);
}

// ---------------------------------------------------------------------------------------------
// Size: SPEC C-D09, C-D11

#[test]
fn negative_sizes_are_rejected() {
    for size in [
        json!(-1),
        json!(-7682),
        json!(i64::MIN),
        json!(-1.5),
        json!(-1e300),
    ] {
        assert_eq!(
            kind_of_value(&with(json!({ "size": size }))),
            K::NegativeSize,
            "{size}"
        );
    }
    // serde_json alone would reject -1 for a u64 only with a generic message; oci-spec too.
    assert_eq!(
        kind_of(&with(json!({})).to_string().replace("7682", "-0.5")),
        K::NegativeSize
    );
}

#[test]
fn non_integer_and_oversized_sizes_are_rejected() {
    assert_eq!(
        kind_of_value(&with(json!({"size": 1.5}))),
        K::SizeNotInteger
    );
    assert_eq!(
        kind_of(&with(json!({})).to_string().replace("7682", "7682.0")),
        K::SizeNotInteger
    );
    assert_eq!(
        kind_of(&with(json!({})).to_string().replace("7682", "7.682e3")),
        K::SizeNotInteger
    );
    assert_eq!(
        kind_of(&with(json!({})).to_string().replace("7682", "-0")),
        K::SizeNotInteger
    );
    assert_eq!(
        kind_of_value(&with(json!({"size": "7682"}))),
        K::WrongType {
            field: "size",
            expected: "integer"
        }
    );
    assert_eq!(
        kind_of_value(&with(json!({"size": (i64::MAX as u64) + 1}))),
        K::SizeTooLarge { max: MAX_SIZE }
    );
    assert_eq!(
        kind_of_value(&with(json!({"size": u64::MAX}))),
        K::SizeTooLarge { max: MAX_SIZE }
    );
    assert_eq!(
        kind_of(
            &with(json!({}))
                .to_string()
                .replace("7682", "18446744073709551616")
        ),
        K::SizeTooLarge { max: MAX_SIZE }
    );
    assert_eq!(
        kind_of(&with(json!({})).to_string().replace("7682", "1e30")),
        K::SizeTooLarge { max: MAX_SIZE }
    );
}

#[test]
fn huge_size_parses_and_nothing_is_preallocated() {
    let d = parse(with(json!({"size": i64::MAX})).to_string().as_bytes()).unwrap();
    assert_eq!(d.size(), MAX_SIZE);
    check(&d).unwrap();
    // With data, the decoded length is compared with the size; a preallocation of the declared
    // size would abort the process here.
    let v = empty_with(json!({"size": i64::MAX}));
    assert_eq!(
        kind_of_value(&v),
        K::DataSizeMismatch {
            declared: MAX_SIZE,
            actual: 2
        }
    );
    let mut d = descriptor::empty();
    d.set_size(MAX_SIZE);
    assert_eq!(
        embedded_data(&d).unwrap_err().kind(),
        &K::DataSizeMismatch {
            declared: MAX_SIZE,
            actual: 2
        }
    );
    // A typed descriptor above int64 fails the check.
    let mut d = descriptor::empty();
    d.set_data(None);
    d.set_size(u64::MAX);
    assert_eq!(
        check(&d).unwrap_err().kind(),
        &K::SizeTooLarge { max: MAX_SIZE }
    );
}

// ---------------------------------------------------------------------------------------------
// Embedded data: SPEC C-D10 (descriptor level), C-D12, C-D13

#[test]
fn data_must_be_padded_standard_base64() {
    // [0xfb, 0xff] is "+/8=" in the standard alphabet and "-_8=" in the URL-safe one.
    let bytes = [0xfb, 0xff];
    let digest = Digest::sha256(&bytes);
    let doc = |data: &str| {
        json!({"mediaType": "application/octet-stream", "digest": digest.as_str(), "size": 2,
               "data": data})
    };
    assert!(parse(doc("+/8=").to_string().as_bytes()).is_ok());
    for bad in [
        "-_8=",
        "+/8",
        "-_8",
        "not base64!",
        "+/8=\n",
        " +/8=",
        "+/8==",
        "+/9=",
        "+/ 8=",
    ] {
        assert_eq!(kind_of_value(&doc(bad)), K::BadBase64, "{bad:?}");
    }
    // The empty JSON blob: missing padding, trailing bits, whitespace.
    for bad in ["e30", "e31=", "e30=\n", "e30==", "ZTMwPQ"] {
        assert_eq!(
            kind_of_value(&empty_with(json!({ "data": bad }))),
            K::BadBase64,
            "{bad:?}"
        );
    }
    assert_eq!(
        kind_of_value(&empty_with(json!({ "data": 1 }))),
        K::WrongType {
            field: "data",
            expected: "string"
        }
    );
}

#[test]
fn data_must_match_size_and_digest() {
    // C-D10 at descriptor level: size says 1 or 3, data has 2 bytes.
    for size in [0u64, 1, 3, 11] {
        assert_eq!(
            kind_of_value(&empty_with(json!({ "size": size }))),
            K::DataSizeMismatch {
                declared: size,
                actual: 2
            }
        );
    }
    // C-D13: right length, wrong content.
    let v = empty_with(json!({ "data": b64(b"[]") }));
    assert_eq!(
        kind_of_value(&v),
        K::DataDigestMismatch {
            expected: Digest::parse(EMPTY_JSON_SHA256).unwrap(),
            actual: Digest::sha256(b"[]"),
        }
    );
    // Same bytes, digest of another algorithm's value.
    let v = empty_with(json!({ "digest": Digest::sha512(b"[]").as_str() }));
    assert!(matches!(kind_of_value(&v), K::DataDigestMismatch { .. }));
}

#[test]
fn data_with_an_unverifiable_digest_is_rejected() {
    let blake3 = format!("blake3:{}", "a".repeat(64));
    assert_eq!(
        kind_of_value(&empty_with(json!({ "digest": blake3 }))),
        K::DataUnverifiable {
            algorithm: Algorithm::Blake3
        }
    );
    assert!(matches!(
        kind_of_value(&empty_with(json!({ "digest": "md5:99914b932bd37a50b983c5e7c90ae93b" }))),
        K::DataUnverifiable { algorithm: Algorithm::Other(name) } if &*name == "md5"
    ));
}

// ---------------------------------------------------------------------------------------------
// Digests and media types: SPEC C-D01..C-D04, C-D15

#[test]
fn digests_are_revalidated_strictly() {
    let upper = MANIFEST_DIGEST
        .to_uppercase()
        .replacen("SHA256", "sha256", 1);
    assert_eq!(
        kind_of_value(&with(json!({ "digest": upper }))),
        K::BadDigest(Digest::parse(&upper).unwrap_err())
    );
    assert!(matches!(
        kind_of_value(&with(json!({ "digest": upper }))),
        K::BadDigest(e) if matches!(e.kind(), ParseErrorKind::UppercaseHex { position: 8 })
    ));
    for bad in [
        "sha256:../../../../etc/passwd",
        "sha256:5b0bcabd1ed22e9fb1310cf6c2dec7cdef19f0ad69efa1f392e94a433350127",
        "SHA256:5b0bcabd1ed22e9fb1310cf6c2dec7cdef19f0ad69efa1f392e94a4333501270",
        "sha256+foo+-b:abc",
        ":abc",
        "sha256",
        "sha256:",
        "sha256:5b0bcabd1ed22e9fb1310cf6c2dec7cdef19f0ad69efa1f392e94a4333501270\n",
        "blake3:abc", // oci-spec accepts this; ocikit knows blake3's length
    ] {
        assert!(
            matches!(
                kind_of_value(&with(json!({ "digest": bad }))),
                K::BadDigest(_)
            ),
            "{bad}"
        );
    }
    assert_eq!(
        kind_of_value(&with(json!({"digest": 1}))),
        K::WrongType {
            field: "digest",
            expected: "string"
        }
    );
}

#[test]
fn check_catches_what_oci_spec_lets_through() {
    // oci-spec accepts a short blake3 digest; ocikit does not.
    let lenient: Descriptor =
        serde_json::from_value(with(json!({"digest": "blake3:abc"}))).unwrap();
    assert!(matches!(
        check(&lenient).unwrap_err().kind(),
        K::BadDigest(_)
    ));
    assert!(matches!(
        digest_of(&lenient).unwrap_err().kind(),
        K::BadDigest(_)
    ));
    // ... and any media type.
    let lenient: Descriptor =
        serde_json::from_value(with(json!({"mediaType": ".foo/bar"}))).unwrap();
    assert!(bad_media(
        "mediaType",
        MediaTypeErrorKind::BadFirstChar { position: 0 }
    )(check(&lenient).unwrap_err().kind()));
    // ... and bad base64.
    let lenient: Descriptor = serde_json::from_value(empty_with(json!({"data": "e30"}))).unwrap();
    assert_eq!(check(&lenient).unwrap_err().kind(), &K::BadBase64);
    assert_eq!(embedded_data(&lenient).unwrap_err().kind(), &K::BadBase64);
}

#[test]
fn media_types_follow_rfc6838() {
    let cases = [
        (".foo/bar", MediaTypeErrorKind::BadFirstChar { position: 0 }),
        ("foo/.bar", MediaTypeErrorKind::BadFirstChar { position: 4 }),
        ("application", MediaTypeErrorKind::MissingSubtype),
        ("", MediaTypeErrorKind::Empty),
        (
            "application/json; charset=utf-8",
            MediaTypeErrorKind::BadChar { position: 16 },
        ),
    ];
    for (bad, expected) in cases.clone() {
        let k = kind_of_value(&with(json!({ "mediaType": bad })));
        assert!(bad_media("mediaType", expected.clone())(&k), "{bad}: {k:?}");
        let k = kind_of_value(&with(json!({ "artifactType": bad })));
        assert!(bad_media("artifactType", expected)(&k), "{bad}: {k:?}");
    }
    let long = format!("{}/json", "a".repeat(128));
    let k = kind_of_value(&with(json!({ "mediaType": long })));
    assert!(bad_media(
        "mediaType",
        MediaTypeErrorKind::TooLong {
            subtype: false,
            max: 127
        }
    )(&k));
    let ok = format!("{}/json", "a".repeat(127));
    assert!(parse(with(json!({ "mediaType": ok })).to_string().as_bytes()).is_ok());
    // Unknown but valid types are fine (SPEC C-L09).
    assert!(
        parse(
            with(json!({ "mediaType": "application/xml" }))
                .to_string()
                .as_bytes()
        )
        .is_ok()
    );
    assert_eq!(
        kind_of_value(&with(json!({"mediaType": ["a/b"]}))),
        K::WrongType {
            field: "mediaType",
            expected: "string"
        }
    );
    assert_eq!(
        kind_of_value(&with(json!({"artifactType": 1}))),
        K::WrongType {
            field: "artifactType",
            expected: "string"
        }
    );
}

// ---------------------------------------------------------------------------------------------
// URLs (SPEC A.2; C-D14 is a fetch policy, not a parse error)

#[test]
fn urls_must_be_absolute_uris() {
    let ok = with(json!({"urls": [
        "https://example.com/a?b=c#d",
        "http://[::1]:8080/%41",
        "file:///etc/shadow",
        "http://169.254.169.254/latest/meta-data",
        "urn:isbn:0451450523",
    ]}));
    assert!(parse(ok.to_string().as_bytes()).is_ok());
    for (urls, index) in [
        (json!([""]), 0),
        (json!(["https://ok", "not a url"]), 1),
        (json!(["/relative/path"]), 0),
        (json!(["example.com/x"]), 0),
        (json!(["1http://x"]), 0),
        (json!(["http://exa mple.com"]), 0),
        (json!(["http://x/%zz"]), 0),
        (json!(["http://x/%4"]), 0),
        (json!(["http://x/\n"]), 0),
        (json!(["http://x/é"]), 0),
        (json!(["http://x/<script>"]), 0),
    ] {
        assert_eq!(
            kind_of_value(&with(json!({ "urls": urls }))),
            K::BadUrl { index },
            "{urls}"
        );
    }
    for urls in [json!("https://x"), json!([1]), json!({})] {
        assert_eq!(
            kind_of_value(&with(json!({ "urls": urls }))),
            K::WrongType {
                field: "urls",
                expected: "array of strings"
            }
        );
    }
}

// ---------------------------------------------------------------------------------------------
// JSON rules: SPEC C-J05, C-J06, C-J10, C-J11, A.11

#[test]
fn duplicate_keys_are_rejected() {
    for doc in [
        format!(r#"{{"mediaType":"a/b","digest":"{MANIFEST_DIGEST}","size":1,"size":-1}}"#),
        format!(r#"{{"mediaType":"a/b","digest":"{MANIFEST_DIGEST}","size":-1,"size":1}}"#),
        format!(r#"{{"mediaType":"a/b","mediaType":"c/d","digest":"{MANIFEST_DIGEST}","size":1}}"#),
    ] {
        let k = kind_of(&doc);
        assert!(
            matches!(&k, K::Json(e) if matches!(e.kind(), JsonErrorKind::DuplicateKey { .. })),
            "{doc}: {k:?}"
        );
    }
    // In a map, serde_json alone keeps the last value silently.
    let doc = format!(
        r#"{{"mediaType":"a/b","digest":"{MANIFEST_DIGEST}","size":1,"annotations":{{"k":"a","k":"b"}}}}"#
    );
    let lenient: Descriptor = serde_json::from_str(&doc).unwrap();
    assert_eq!(lenient.annotations().as_ref().unwrap()["k"], "b", "premise");
    assert_eq!(
        kind_of(&doc),
        K::Json(json::parse_strict(doc.as_bytes()).unwrap_err())
    );
    assert!(matches!(
        kind_of(&doc),
        K::Json(e) if e.kind() == &JsonErrorKind::DuplicateKey { key: "k".into() }
    ));
}

#[test]
fn json_level_problems_are_reported_as_json() {
    let json_kind = |doc: &[u8]| match parse(doc).unwrap_err().kind() {
        K::Json(e) => e.kind().clone(),
        other => panic!("{other:?}"),
    };
    let good = with(json!({})).to_string();
    // Invalid UTF-8 inside an annotation.
    let mut bytes = with(json!({"annotations": {"k": "XX"}}))
        .to_string()
        .into_bytes();
    let at = bytes.windows(2).position(|w| w == b"XX").unwrap();
    bytes[at] = 0xff;
    assert_eq!(json_kind(&bytes), JsonErrorKind::InvalidUtf8 { offset: at });
    // Lone surrogate, NUL.
    let doc = good.replacen('{', r#"{"x":"\ud800","#, 1);
    assert!(matches!(
        json_kind(doc.as_bytes()),
        JsonErrorKind::LoneSurrogate { .. }
    ));
    let doc = good.replacen('{', r#"{"x":"a\u0000","#, 1);
    assert_eq!(
        json_kind(doc.as_bytes()),
        JsonErrorKind::ForbiddenCodePoint { code_point: 0 }
    );
    // Deep nesting in an unknown field.
    let doc = good.replacen('{', &format!(r#"{{"x":{},"#, "[".repeat(100_000)), 1);
    assert_eq!(
        json_kind(doc.as_bytes()),
        JsonErrorKind::TooDeep {
            max: json::MAX_DEPTH
        }
    );
    // Trailing garbage, nothing at all.
    assert!(matches!(
        json_kind(format!("{good} {good}").as_bytes()),
        JsonErrorKind::TrailingCharacters { .. }
    ));
    assert!(matches!(json_kind(b""), JsonErrorKind::Eof { .. }));
}

#[test]
fn annotations_must_be_strings() {
    for value in [json!(1), json!(null), json!({}), json!([]), json!(true)] {
        assert_eq!(
            kind_of_value(&with(json!({"annotations": {"ok": "", "bad": value}}))),
            K::AnnotationNotString { key: "bad".into() },
            "{value}"
        );
    }
    assert_eq!(
        kind_of_value(&with(json!({"annotations": ["a"]}))),
        K::WrongType {
            field: "annotations",
            expected: "object"
        }
    );
}

#[test]
fn platform_needs_os_and_architecture() {
    assert_eq!(
        kind_of_value(&with(json!({"platform": {"architecture": "amd64"}}))),
        K::MissingField {
            field: "platform.os"
        }
    );
    assert_eq!(
        kind_of_value(&with(json!({"platform": {"os": "linux"}}))),
        K::MissingField {
            field: "platform.architecture"
        }
    );
    assert_eq!(
        kind_of_value(&with(
            json!({"platform": {"os": "linux", "architecture": null}})
        )),
        K::MissingField {
            field: "platform.architecture"
        }
    );
    assert_eq!(
        kind_of_value(&with(
            json!({"platform": {"os": 1, "architecture": "amd64"}})
        )),
        K::WrongType {
            field: "platform.os",
            expected: "string"
        }
    );
    assert_eq!(
        kind_of_value(&with(
            json!({"platform": {"os": "linux", "architecture": "amd64", "variant": 7}})
        )),
        K::WrongType {
            field: "platform.variant",
            expected: "string"
        }
    );
    assert_eq!(
        kind_of_value(&with(
            json!({"platform": {"os": "linux", "architecture": "amd64", "os.features": "x"}})
        )),
        K::WrongType {
            field: "platform.os.features",
            expected: "array of strings"
        }
    );
    assert_eq!(
        kind_of_value(&with(json!({"platform": "linux/amd64"}))),
        K::WrongType {
            field: "platform",
            expected: "object"
        }
    );
}

#[test]
fn shape_errors() {
    assert_eq!(kind_of("[]"), K::NotAnObject);
    assert_eq!(kind_of("\"x\""), K::NotAnObject);
    assert_eq!(
        kind_of_value(&with(json!({"mediaType": null}))),
        K::MissingField { field: "mediaType" }
    );
    assert_eq!(
        kind_of_value(&with(json!({"digest": null}))),
        K::MissingField { field: "digest" }
    );
    assert_eq!(
        kind_of_value(&with(json!({"size": null}))),
        K::MissingField { field: "size" }
    );
    // Valid for ocikit (an unregistered algorithm) but oci-spec knows sha384's length.
    assert!(matches!(
        kind_of_value(&with(json!({"digest": "sha384:abc"}))),
        K::Shape { .. }
    ));
}

// ---------------------------------------------------------------------------------------------
// Constructors and integration

#[test]
fn constructors() {
    let digest = Digest::parse(MANIFEST_DIGEST).unwrap();
    let d = descriptor::new(media_type::IMAGE_MANIFEST, &digest, 7682).unwrap();
    assert_eq!(d, parse(with(json!({})).to_string().as_bytes()).unwrap());
    assert!(bad_media("mediaType", MediaTypeErrorKind::MissingSubtype)(
        descriptor::new("application", &digest, 1)
            .unwrap_err()
            .kind()
    ));
    assert_eq!(
        descriptor::new(media_type::IMAGE_MANIFEST, &digest, u64::MAX)
            .unwrap_err()
            .kind(),
        &K::SizeTooLarge { max: MAX_SIZE }
    );
    let odd = Digest::parse("sha384:abc").unwrap();
    assert_eq!(
        descriptor::new(media_type::IMAGE_MANIFEST, &odd, 1)
            .unwrap_err()
            .kind(),
        &K::DigestNotRepresentable
    );
    let sha512 = Digest::sha512(b"x");
    assert_eq!(
        digest_of(&descriptor::new("a/b", &sha512, 1).unwrap()).unwrap(),
        sha512
    );
}

#[test]
fn errors_convert_and_display() {
    let err = parse(b"{}").unwrap_err();
    assert_eq!(err.to_string(), "descriptor field `mediaType` is missing");
    let top: ocikit_digest::Error = err.clone().into();
    assert!(matches!(top, ocikit_digest::Error::Descriptor(e) if e == err));
    let err = parse(empty_with(json!({"data": "e30"})).to_string().as_bytes()).unwrap_err();
    assert!(err.to_string().contains("base64"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Properties

fn arb_descriptor() -> impl Strategy<Value = Value> {
    (
        "[a-z][a-z0-9.+-]{0,12}/[a-z][a-z0-9.+-]{0,12}",
        proptest::collection::vec(any::<u8>(), 0..64),
        any::<bool>(),
        any::<bool>(),
        proptest::option::of(proptest::collection::btree_map(
            "[a-z.]{1,8}",
            "[a-zA-Z0-9 é😀\\\\\"\u{1}]{0,8}",
            0..4,
        )),
        proptest::option::of(proptest::collection::vec(
            "https://example\\.com/[a-z0-9/]{0,10}",
            0..3,
        )),
        proptest::option::of("[a-z]{1,8}/[a-z0-9][a-z0-9.+-]{0,11}"),
        proptest::option::of((
            prop_oneof!["linux", "windows", "darwin"],
            prop_oneof!["amd64", "arm64", "arm", "s390x"],
            proptest::option::of("v[5-9]"),
        )),
        proptest::collection::btree_map("x[a-z]{0,6}", any::<i32>(), 0..3),
    )
        .prop_map(
            |(mt, content, sha512, with_data, annotations, urls, artifact, platform, unknown)| {
                let digest = if sha512 {
                    Digest::sha512(&content)
                } else {
                    Digest::sha256(&content)
                };
                let mut v =
                    json!({"mediaType": mt, "digest": digest.as_str(), "size": content.len()});
                if with_data {
                    v["data"] = json!(b64(&content));
                }
                if let Some(a) = annotations {
                    v["annotations"] = json!(a);
                }
                if let Some(u) = urls {
                    v["urls"] = json!(u);
                }
                if let Some(a) = artifact {
                    v["artifactType"] = json!(a);
                }
                if let Some((os, arch, variant)) = platform {
                    v["platform"] = json!({"os": os, "architecture": arch});
                    if let Some(variant) = variant {
                        v["platform"]["variant"] = json!(variant);
                    }
                }
                for (k, n) in unknown {
                    v[k] = json!(n);
                }
                v
            },
        )
}

proptest! {
    #[test]
    fn descriptors_round_trip_through_canonical_json(v in arb_descriptor()) {
        let text = serde_json::to_vec_pretty(&v).unwrap();
        let d = parse(&text).unwrap();
        prop_assert_eq!(d.size(), v["size"].as_u64().unwrap());
        prop_assert_eq!(d.digest().to_string(), v["digest"].as_str().unwrap());
        if v.get("data").is_some() {
            prop_assert!(embedded_data(&d).unwrap().is_some());
        }
        let canonical = json::to_canonical_vec(&d).unwrap();
        let again = parse(&canonical).unwrap();
        prop_assert_eq!(&again, &d);
        prop_assert_eq!(json::canonicalize(&canonical).unwrap(), canonical.clone());
        prop_assert_eq!(json::to_canonical_vec(&again).unwrap(), canonical);
        // The typed view agrees with lenient serde_json.
        prop_assert_eq!(serde_json::from_slice::<Descriptor>(&text).unwrap(), d);
    }

    // Any negative size is rejected, whatever else the descriptor holds.
    #[test]
    fn any_negative_size_is_rejected(v in arb_descriptor(), size in i64::MIN..0) {
        let mut v = v;
        v["size"] = json!(size);
        prop_assert_eq!(kind_of_value(&v), K::NegativeSize);
    }
}
