use std::sync::OnceLock;

use base64::Engine as _;
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::descriptor;
use crate::json::{self, JsonErrorKind};
use crate::{Digest, media_type};

pub(super) fn media_type_regex() -> &'static regex::Regex {
    static RE: OnceLock<regex::Regex> = OnceLock::new();
    RE.get_or_init(|| {
        regex::Regex::new(
            r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$",
        )
        .unwrap()
    })
}

/// An independent duplicate-key detector: collects every object's keys into a vector and
/// looks for a repeat after sorting (the strict parser uses a map lookup per key).
struct HasDuplicate(bool);

impl<'de> Deserialize<'de> for HasDuplicate {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(DupVisitor)
    }
}

struct DupVisitor;

impl<'de> Visitor<'de> for DupVisitor {
    type Value = HasDuplicate;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON")
    }
    fn visit_bool<E>(self, _: bool) -> Result<HasDuplicate, E> {
        Ok(HasDuplicate(false))
    }
    fn visit_i64<E>(self, _: i64) -> Result<HasDuplicate, E> {
        Ok(HasDuplicate(false))
    }
    fn visit_u64<E>(self, _: u64) -> Result<HasDuplicate, E> {
        Ok(HasDuplicate(false))
    }
    fn visit_f64<E>(self, _: f64) -> Result<HasDuplicate, E> {
        Ok(HasDuplicate(false))
    }
    fn visit_str<E>(self, _: &str) -> Result<HasDuplicate, E> {
        Ok(HasDuplicate(false))
    }
    fn visit_unit<E>(self) -> Result<HasDuplicate, E> {
        Ok(HasDuplicate(false))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<HasDuplicate, A::Error> {
        let mut found = false;
        while let Some(HasDuplicate(d)) = seq.next_element()? {
            found |= d;
        }
        Ok(HasDuplicate(found))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<HasDuplicate, A::Error> {
        let mut keys: Vec<String> = Vec::new();
        let mut found = false;
        while let Some(key) = map.next_key::<String>()? {
            keys.push(key);
            let HasDuplicate(d) = map.next_value()?;
            found |= d;
        }
        keys.sort();
        found |= keys.windows(2).any(|w| w[0] == w[1]);
        Ok(HasDuplicate(found))
    }
}

/// Oracle for descriptor JSON: no panic; duplicate keys and negative sizes rejected; a
/// descriptor that parses is checked, agrees with lenient serde_json, has a valid digest and
/// RFC 6838 media types, verifiable embedded data, and round-trips through canonical JSON,
/// which is idempotent.
pub fn descriptor_json(data: &[u8]) {
    let strict = json::parse_strict(data);
    let parsed = descriptor::parse(data);

    // Strict parsing never accepts what lenient serde_json rejects, and agrees on the value
    // (modulo float rounding, where the strict parser is the exact one).
    if let Ok(value) = &strict {
        let lenient: serde_json::Value = serde_json::from_slice(data).unwrap();
        if !contains_float(value) {
            assert_eq!(&lenient, value);
        }
        // Whatever parses strictly can be written canonically, and that is a fixed point.
        let canonical = json::canonicalize(data).unwrap();
        assert_eq!(&json::parse_strict(&canonical).unwrap(), value);
        assert_eq!(json::canonicalize(&canonical).unwrap(), canonical);
    }

    // Duplicate keys, found independently, are always rejected.
    match serde_json::from_slice::<HasDuplicate>(data) {
        Ok(HasDuplicate(true)) => {
            assert!(strict.is_err(), "duplicate keys accepted");
            assert!(parsed.is_err(), "duplicate keys accepted");
        }
        Ok(HasDuplicate(false)) => {
            if let Err(e) = &strict {
                assert!(!matches!(e.kind(), JsonErrorKind::DuplicateKey { .. }));
            }
        }
        Err(_) => {}
    }
    if let Err(e) = &strict
        && matches!(e.kind(), JsonErrorKind::DuplicateKey { .. })
    {
        assert!(!matches!(
            serde_json::from_slice::<HasDuplicate>(data),
            Ok(HasDuplicate(false))
        ));
    }

    // Negative sizes are always rejected.
    if let Ok(serde_json::Value::Object(object)) = &strict
        && let Some(size) = object.get("size").and_then(serde_json::Value::as_f64)
        && size < 0.0
    {
        assert!(parsed.is_err(), "negative size accepted");
    }

    let Ok(d) = parsed else {
        return;
    };
    descriptor::check(&d).unwrap();
    let lenient: oci_spec::image::Descriptor = serde_json::from_slice(data).unwrap();
    assert_eq!(lenient, d);

    let digest = Digest::parse(d.digest().as_ref()).unwrap();
    assert_eq!(descriptor::digest_of(&d).unwrap(), digest);
    assert!(media_type_regex().is_match(d.media_type().as_ref()));
    assert!(media_type::validate_media_type(d.media_type().as_ref()).is_ok());
    if let Some(artifact_type) = d.artifact_type() {
        assert!(media_type_regex().is_match(artifact_type.as_ref()));
    }
    assert!(d.size() <= i64::MAX as u64);
    if let Some(data) = d.data() {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap();
        assert_eq!(decoded.len() as u64, d.size());
        assert_eq!(
            Digest::compute(digest.algorithm(), &decoded).unwrap(),
            digest
        );
        assert_eq!(descriptor::embedded_data(&d).unwrap(), Some(decoded));
    }

    let canonical = json::to_canonical_vec(&d).unwrap();
    let again = descriptor::parse(&canonical).unwrap();
    assert_eq!(again, d);
    assert_eq!(json::canonicalize(&canonical).unwrap(), canonical);
    assert_eq!(json::to_canonical_vec(&again).unwrap(), canonical);
}

pub(super) fn contains_float(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::Number(n) => n.is_f64(),
        serde_json::Value::Array(items) => items.iter().any(contains_float),
        serde_json::Value::Object(map) => map.values().any(contains_float),
        _ => false,
    }
}
