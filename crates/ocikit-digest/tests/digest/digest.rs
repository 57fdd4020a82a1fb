//! Digest parsing, display, ordering, serde and path safety.

use ocikit_digest::digest::{EMPTY_JSON_SHA256, EMPTY_SHA256, MAX_DIGEST_LEN, ParseErrorKind};
use ocikit_digest::{Algorithm, Digest};
use proptest::prelude::*;

const HEX64: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

fn kind(s: &str) -> ParseErrorKind {
    Digest::parse(s).expect_err(s).kind().clone()
}

#[test]
fn parses_registered_algorithms() {
    let d = Digest::parse(EMPTY_SHA256).unwrap();
    assert_eq!(d.algorithm(), &Algorithm::Sha256);
    assert_eq!(d.encoded(), HEX64);
    assert_eq!(d.as_str(), EMPTY_SHA256);
    assert!(d.is_supported());

    let sha512 = format!("sha512:{}", "ab".repeat(64));
    let d = Digest::parse(&sha512).unwrap();
    assert_eq!(d.algorithm(), &Algorithm::Sha512);
    assert!(d.is_supported());

    let blake3 = format!("blake3:{HEX64}");
    let d = Digest::parse(&blake3).unwrap();
    assert_eq!(d.algorithm(), &Algorithm::Blake3);
    assert!(!d.is_supported(), "blake3 is carried but not computed");
}

// SPEC C-D06: grammar-valid unregistered algorithms pass validation, never verification.
#[test]
fn unregistered_algorithms_are_carried_but_unsupported() {
    for s in [
        "md5:d41d8cd98f00b204e9800998ecf8427e",
        "sha256+b64u:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564",
        "multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8",
        "a.b_c-d+e:x=",
    ] {
        let d = Digest::parse(s).unwrap();
        assert!(matches!(d.algorithm(), Algorithm::Other(_)), "{s}");
        assert!(!d.is_supported());
        assert_eq!(d.to_string(), s);
        assert!(d.to_raw().is_none());
        let err = Digest::parse_supported(s).unwrap_err();
        assert!(matches!(
            err.kind(),
            ParseErrorKind::UnsupportedAlgorithm { .. }
        ));
        assert!(matches!(
            d.verify(b""),
            Err(ocikit_digest::Error::UnsupportedAlgorithm { .. })
        ));
    }
}

// SPEC C-D01
#[test]
fn wrong_length_is_rejected() {
    assert_eq!(
        kind(&format!("sha256:{}", &HEX64[..63])),
        ParseErrorKind::WrongLength {
            algorithm: Algorithm::Sha256,
            expected: 64,
            actual: 63
        }
    );
    assert_eq!(
        kind(&format!("sha256:{HEX64}0")),
        ParseErrorKind::WrongLength {
            algorithm: Algorithm::Sha256,
            expected: 64,
            actual: 65
        }
    );
    assert_eq!(
        kind(&format!("sha512:{HEX64}")),
        ParseErrorKind::WrongLength {
            algorithm: Algorithm::Sha512,
            expected: 128,
            actual: 64
        }
    );
}

// SPEC C-D02
#[test]
fn uppercase_hex_is_rejected() {
    assert_eq!(
        kind(&format!("sha256:{}", HEX64.to_uppercase())),
        ParseErrorKind::UppercaseHex { position: 7 }
    );
    let mut mixed = HEX64.to_string();
    mixed.replace_range(10..11, "B");
    assert_eq!(
        kind(&format!("sha256:{mixed}")),
        ParseErrorKind::UppercaseHex { position: 17 }
    );
}

// SPEC C-D03: traversal and separators never get through.
#[test]
fn path_traversal_is_rejected() {
    assert_eq!(
        kind("sha256:../../../../etc/passwd"),
        ParseErrorKind::BadHexChar { position: 7 }
    );
    assert_eq!(
        kind("sha256:..%2f.."),
        ParseErrorKind::BadHexChar { position: 7 }
    );
    assert_eq!(
        kind("sha256/../x:y"),
        ParseErrorKind::BadAlgorithmChar { position: 6 }
    );
    assert_eq!(
        kind("foo:a/b"),
        ParseErrorKind::BadEncodedChar { position: 5 }
    );
    assert_eq!(
        kind("foo:a\0b"),
        ParseErrorKind::BadEncodedChar { position: 5 }
    );
    assert_eq!(
        kind("foo:a..b"),
        ParseErrorKind::BadEncodedChar { position: 5 }
    );
    assert_eq!(
        kind("foo:a\\b"),
        ParseErrorKind::BadEncodedChar { position: 5 }
    );
    assert_eq!(
        kind(".:x"),
        ParseErrorKind::MisplacedSeparator { position: 0 }
    );
    assert_eq!(
        kind("..:x"),
        ParseErrorKind::MisplacedSeparator { position: 0 }
    );
}

// SPEC C-D04
#[test]
fn malformed_algorithms_are_rejected() {
    assert_eq!(
        kind(&format!("SHA256:{HEX64}")),
        ParseErrorKind::BadAlgorithmChar { position: 0 }
    );
    assert_eq!(
        kind("sha256+foo+-b:abc"),
        ParseErrorKind::MisplacedSeparator { position: 11 }
    );
    assert_eq!(
        kind("sha256-:abc"),
        ParseErrorKind::MisplacedSeparator { position: 6 }
    );
    assert_eq!(
        kind("-sha256:abc"),
        ParseErrorKind::MisplacedSeparator { position: 0 }
    );
    assert_eq!(kind(":abc"), ParseErrorKind::EmptyAlgorithm);
    assert_eq!(kind("sha256"), ParseErrorKind::MissingColon);
    assert_eq!(kind("sha256:"), ParseErrorKind::EmptyEncoded);
    assert_eq!(kind(""), ParseErrorKind::Empty);
    assert_eq!(
        kind(&format!("{}:abc", "a".repeat(65))),
        ParseErrorKind::AlgorithmTooLong { max: 64 }
    );
    assert_eq!(
        kind(&format!("x:{}", "a".repeat(MAX_DIGEST_LEN))),
        ParseErrorKind::TooLong {
            max: MAX_DIGEST_LEN
        }
    );
    assert_eq!(
        kind("sha256:ab:cd"),
        ParseErrorKind::BadHexChar { position: 9 }
    );
    assert_eq!(
        kind("shä256:ab"),
        ParseErrorKind::BadAlgorithmChar { position: 2 }
    );
}

// SPEC C-D07
#[test]
fn sha512_digests_verify_with_the_right_hasher() {
    let d = Digest::sha512(b"abc");
    assert_eq!(
        d.as_str(),
        "sha512:ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a\
         2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
    );
    d.verify(b"abc").unwrap();
    assert!(d.verify(b"abd").is_err());
    assert_eq!(Digest::parse(d.as_str()).unwrap(), d);
}

// SPEC C-D08: characters are checked before the length, so a trailing newline is named.
#[test]
fn surrounding_whitespace_is_rejected() {
    assert_eq!(
        kind(&format!("{EMPTY_SHA256}\n")),
        ParseErrorKind::BadHexChar { position: 71 }
    );
    assert_eq!(
        kind(&format!(" {EMPTY_SHA256}")),
        ParseErrorKind::BadAlgorithmChar { position: 0 }
    );
    assert_eq!(
        kind(&format!("{EMPTY_SHA256} ")),
        ParseErrorKind::BadHexChar { position: 71 }
    );
}

#[test]
fn known_constants_match_their_content() {
    assert_eq!(Digest::sha256(b"").as_str(), EMPTY_SHA256);
    assert_eq!(Digest::sha256(b"{}").as_str(), EMPTY_JSON_SHA256);
    assert_eq!(Digest::empty_sha256().as_str(), EMPTY_SHA256);
    assert_eq!(
        Digest::sha256(b"abc").as_str(),
        "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

#[test]
fn blob_path_and_components() {
    let d = Digest::sha256(b"");
    assert_eq!(d.path_components(), ("sha256", HEX64));
    assert_eq!(d.blob_path(), format!("blobs/sha256/{HEX64}"));
}

#[test]
fn raw_bytes_round_trip() {
    let d = Digest::sha256(b"abc");
    let raw = d.to_raw().unwrap();
    assert_eq!(raw.len(), 32);
    assert_eq!(Digest::from_raw(Algorithm::Sha256, &raw).unwrap(), d);
    let err = Digest::from_raw(Algorithm::Sha256, &raw[..31]).unwrap_err();
    assert_eq!(
        err.kind(),
        &ParseErrorKind::WrongLength {
            algorithm: Algorithm::Sha256,
            expected: 64,
            actual: 62
        }
    );
}

#[test]
fn serde_round_trip_and_rejection() {
    let d = Digest::sha256(b"x");
    let json = serde_json::to_string(&d).unwrap();
    assert_eq!(json, format!("\"{d}\""));
    assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
    let err = serde_json::from_str::<Digest>("\"sha256:abc\"").unwrap_err();
    assert!(err.to_string().contains("64 hex characters"), "{err}");
    assert_eq!(
        serde_json::from_str::<Algorithm>("\"sha512\"").unwrap(),
        Algorithm::Sha512
    );
}

#[test]
fn ordering_and_hashing_follow_the_string() {
    let mut v: Vec<Digest> = [
        "sha512:".to_string() + &"0".repeat(128),
        format!("sha256:{HEX64}"),
        "sha256+b64u:x".into(),
    ]
    .iter()
    .map(|s| Digest::parse(s).unwrap())
    .collect();
    v.sort();
    let strings: Vec<&str> = v.iter().map(Digest::as_str).collect();
    let mut sorted = strings.clone();
    sorted.sort();
    assert_eq!(strings, sorted);
    let set: std::collections::HashSet<Digest> = v.iter().cloned().collect();
    assert!(set.contains(format!("sha256:{HEX64}").as_str()));
}

#[test]
fn oci_spec_digest_conversion_is_stricter() {
    let theirs: ocikit_digest::oci_spec::image::Digest = EMPTY_SHA256.parse().unwrap();
    let ours = Digest::try_from(&theirs).unwrap();
    assert_eq!(ours.as_str(), EMPTY_SHA256);
    let back = ocikit_digest::oci_spec::image::Digest::try_from(&ours).unwrap();
    assert_eq!(back.to_string(), EMPTY_SHA256);
}

#[test]
fn error_messages_name_the_problem() {
    let e = Digest::parse(&format!("sha256:{}", &HEX64[..63])).unwrap_err();
    assert_eq!(
        e.to_string(),
        "sha256 digest must have 64 hex characters, found 63"
    );
    let e: ocikit_digest::Error = e.into();
    assert_eq!(e.to_string(), "invalid digest");
    assert!(std::error::Error::source(&e).is_some());
}

fn reference_regex() -> regex::Regex {
    regex::Regex::new(r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$").unwrap()
}

proptest! {
    #[test]
    fn display_parse_round_trip(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        for d in [Digest::sha256(&bytes), Digest::sha512(&bytes)] {
            let shown = d.to_string();
            let again = Digest::parse(&shown).unwrap();
            prop_assert_eq!(&again, &d);
            prop_assert_eq!(again.to_string(), d.to_string());
        }
    }

    #[test]
    fn parser_agrees_with_the_spec_regex(s in "[a-z0-9+._:A-Z=/-]{0,24}") {
        let (alg, enc) = s.split_once(':').unwrap_or(("", ""));
        let registered = match alg {
            "sha256" | "blake3" => enc.len() == 64 && enc.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "sha512" => enc.len() == 128 && enc.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            _ => true,
        };
        prop_assert_eq!(Digest::parse(&s).is_ok(), reference_regex().is_match(&s) && registered, "{}", s);
    }

    #[test]
    fn unregistered_digests_round_trip(alg in "[a-z0-9]{1,8}([+._-][a-z0-9]{1,8}){0,3}", enc in "[a-zA-Z0-9=_-]{1,40}") {
        prop_assume!(!matches!(alg.as_str(), "sha256" | "sha512" | "blake3"));
        let s = format!("{alg}:{enc}");
        let d = Digest::parse(&s).unwrap();
        prop_assert_eq!(d.to_string(), s);
        let (a, e) = d.path_components();
        prop_assert!(!a.contains('/') && !e.contains('/') && a != ".." && e != "..");
    }
}

#[test]
fn public_types_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Digest>();
    check::<Algorithm>();
    check::<ocikit_digest::Hasher>();
    check::<ocikit_digest::Error>();
    check::<ocikit_digest::digest::ParseError>();
    check::<ocikit_digest::Reference>();
    check::<ocikit_digest::reference::ParseError>();
    check::<ocikit_digest::descriptor::InvalidDescriptor>();
    check::<ocikit_digest::json::JsonError>();
    check::<ocikit_digest::VerifyingReader<&[u8]>>();
    check::<ocikit_digest::DigestWriter<Vec<u8>>>();
    #[cfg(feature = "tokio")]
    check::<ocikit_digest::AsyncVerifyingReader<&[u8]>>();
}
