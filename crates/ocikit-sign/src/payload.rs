//! The simple-signing payload cosign and containers/image sign: what a signature says about
//! an image.
//!
//! ```json
//! {"critical":{"identity":{"docker-reference":"quay.io/team/app:v1"},
//!              "image":{"docker-manifest-digest":"sha256:…"},
//!              "type":"cosign container image signature"},
//!  "optional":{"creator":"ocikit 0.1.0","timestamp":1700000000}}
//! ```
//!
//! [`Payload::to_json`] writes it as containers/image does (object keys sorted, no spaces;
//! the full docker reference with its tag). [`Payload::parse`] reads it as strictly as
//! containers/image: `critical`, `image` and `identity` hold exactly their fields, the type is
//! exactly cosign's, the digest and the reference must parse, `optional` may be `null` (cosign
//! writes that) or an object whose `creator` must be a string and `timestamp` an integer;
//! duplicate keys anywhere are refused.

use std::collections::BTreeMap;

use ocikit_digest::{Digest, Reference};
use serde_json::{Map, Value};

/// The `critical.type` of every cosign image signature.
pub const SIGNATURE_TYPE: &str = "cosign container image signature";
/// The largest payload read, in bytes. A payload is a few hundred bytes; cosign's
/// `optional` annotations may add some.
pub const MAX_PAYLOAD_LEN: usize = 256 * 1024;

/// Why a payload was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind}")]
pub struct PayloadError {
    kind: PayloadErrorKind,
}

impl PayloadError {
    fn new(kind: PayloadErrorKind) -> PayloadError {
        PayloadError { kind }
    }

    /// What exactly was wrong.
    pub fn kind(&self) -> &PayloadErrorKind {
        &self.kind
    }
}

/// The precise reason a payload was refused. `field` names are JSON paths
/// (`critical.image.docker-manifest-digest`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PayloadErrorKind {
    /// The payload is larger than [`MAX_PAYLOAD_LEN`].
    #[error("payload is larger than {max} bytes")]
    TooLarge {
        /// The limit.
        max: usize,
    },
    /// Not JSON, or JSON with duplicate keys.
    #[error("payload is not valid JSON: {reason}")]
    Json {
        /// The JSON parser's complaint.
        reason: String,
    },
    /// A field has the wrong JSON type.
    #[error("`{field}` is not {expected}")]
    WrongType {
        /// The field.
        field: String,
        /// What it should be.
        expected: &'static str,
    },
    /// A required field is missing.
    #[error("`{field}` is missing")]
    MissingField {
        /// The field.
        field: String,
    },
    /// An object that must hold exactly its fields holds another.
    #[error("unexpected field `{field}`")]
    UnknownField {
        /// The field.
        field: String,
    },
    /// `critical.type` is not [`SIGNATURE_TYPE`].
    #[error("unrecognised signature type `{found}`")]
    UnknownType {
        /// The type found.
        found: String,
    },
    /// `critical.image.docker-manifest-digest` is not a digest.
    #[error("invalid docker-manifest-digest `{value}`")]
    InvalidDigest {
        /// The value found.
        value: String,
    },
    /// `critical.identity.docker-reference` is not a docker reference.
    #[error("invalid docker-reference `{value}`")]
    InvalidReference {
        /// The value found.
        value: String,
    },
    /// `optional.timestamp` is not an integer.
    #[error("`optional.timestamp` is not an integer")]
    NonIntegerTimestamp,
}

fn error(kind: PayloadErrorKind) -> PayloadError {
    PayloadError::new(kind)
}

/// A simple-signing payload: the manifest digest and docker reference a signature vouches
/// for, and optional metadata.
#[derive(Clone, Debug, PartialEq)]
pub struct Payload {
    docker_reference: String,
    manifest_digest: Digest,
    creator: Option<String>,
    timestamp: Option<i64>,
    /// `optional` members other than `creator` and `timestamp` (cosign's annotations).
    other: BTreeMap<String, Value>,
    /// Whether `optional` was `null` (cosign) rather than an object.
    optional_null: bool,
}

impl Payload {
    /// The payload for the image with manifest `manifest_digest`, known as `reference`.
    ///
    /// The reference is written normalised, as containers/image writes it
    /// (`alpine` is `docker.io/library/alpine:latest`), so that the default
    /// `matchRepoDigestOrExact` rule of a `policy.json` accepts the signature for that tag.
    /// `creator` is `ocikit <version>`; no timestamp unless [`Payload::with_timestamp`]
    /// sets one.
    pub fn new(reference: &Reference, manifest_digest: Digest) -> Payload {
        let docker_reference = Reference::parse_normalized(&reference.to_string())
            .map_or_else(|_| reference.to_string(), |r| r.to_string());
        Payload {
            docker_reference,
            manifest_digest,
            creator: Some(format!("ocikit {}", env!("CARGO_PKG_VERSION"))),
            timestamp: None,
            other: BTreeMap::new(),
            optional_null: false,
        }
    }

    /// The payload cosign writes: the repository only (`docker.io/library/alpine`, no tag),
    /// which `matchRepository`/`exactRepository` rules accept.
    pub fn for_repository(reference: &Reference, manifest_digest: Digest) -> Payload {
        let normalised = Reference::parse_normalized(&reference.to_string())
            .unwrap_or_else(|_| reference.clone());
        Payload {
            docker_reference: normalised.name(),
            ..Payload::new(reference, manifest_digest)
        }
    }

    /// Records when the signature was made (seconds since the Unix epoch). The caller's
    /// clock decides: this crate never reads the time.
    pub fn with_timestamp(mut self, unix_seconds: i64) -> Payload {
        self.timestamp = Some(unix_seconds);
        self
    }

    /// Sets (or, with `None`, leaves out) `optional.creator`.
    pub fn with_creator(mut self, creator: Option<String>) -> Payload {
        self.creator = creator;
        self
    }

    /// `critical.identity.docker-reference`, as written in the payload.
    pub fn docker_reference(&self) -> &str {
        &self.docker_reference
    }

    /// `critical.image.docker-manifest-digest`.
    pub fn manifest_digest(&self) -> &Digest {
        &self.manifest_digest
    }

    /// `optional.creator`, if any.
    pub fn creator(&self) -> Option<&str> {
        self.creator.as_deref()
    }

    /// `optional.timestamp`, if any.
    pub fn timestamp(&self) -> Option<i64> {
        self.timestamp
    }

    /// Other members of `optional` (cosign's `-a key=value` annotations), unchecked.
    pub fn optional(&self) -> &BTreeMap<String, Value> {
        &self.other
    }

    /// The payload's JSON bytes, as containers/image writes them: keys sorted, no spaces.
    pub fn to_json(&self) -> Vec<u8> {
        let mut identity = Map::new();
        identity.insert(
            "docker-reference".into(),
            Value::String(self.docker_reference.clone()),
        );
        let mut image = Map::new();
        image.insert(
            "docker-manifest-digest".into(),
            Value::String(self.manifest_digest.to_string()),
        );
        let mut critical = Map::new();
        critical.insert("identity".into(), Value::Object(identity));
        critical.insert("image".into(), Value::Object(image));
        critical.insert("type".into(), Value::String(SIGNATURE_TYPE.into()));
        let optional = if self.optional_null
            && self.creator.is_none()
            && self.timestamp.is_none()
            && self.other.is_empty()
        {
            Value::Null
        } else {
            let mut optional: Map<String, Value> = self
                .other
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if let Some(creator) = &self.creator {
                optional.insert("creator".into(), Value::String(creator.clone()));
            }
            if let Some(timestamp) = self.timestamp {
                optional.insert("timestamp".into(), Value::from(timestamp));
            }
            Value::Object(optional)
        };
        let mut top = Map::new();
        top.insert("critical".into(), Value::Object(critical));
        top.insert("optional".into(), optional);
        // serde_json's Map is a BTreeMap here (no `preserve_order`), so keys come out sorted,
        // as Go's encoding/json writes maps.
        serde_json::to_vec(&Value::Object(top)).unwrap_or_default()
    }

    /// Parses a payload strictly (see the module docs).
    pub fn parse(bytes: &[u8]) -> Result<Payload, PayloadError> {
        if bytes.len() > MAX_PAYLOAD_LEN {
            return Err(error(PayloadErrorKind::TooLarge {
                max: MAX_PAYLOAD_LEN,
            }));
        }
        let value =
            ocikit_digest::json::parse_strict_with_limit(bytes, MAX_PAYLOAD_LEN).map_err(|e| {
                error(PayloadErrorKind::Json {
                    reason: e.to_string(),
                })
            })?;
        let top = exact_fields(&value, "payload", &["critical", "optional"])?;
        let critical = exact_fields(&top["critical"], "critical", &["identity", "image", "type"])?;
        let kind = string(&critical["type"], "critical.type")?;
        if kind != SIGNATURE_TYPE {
            return Err(error(PayloadErrorKind::UnknownType {
                found: kind.to_string(),
            }));
        }
        let image = exact_fields(
            &critical["image"],
            "critical.image",
            &["docker-manifest-digest"],
        )?;
        let digest_text = string(
            &image["docker-manifest-digest"],
            "critical.image.docker-manifest-digest",
        )?;
        let manifest_digest = Digest::parse(digest_text).map_err(|_| {
            error(PayloadErrorKind::InvalidDigest {
                value: digest_text.to_string(),
            })
        })?;
        let identity = exact_fields(
            &critical["identity"],
            "critical.identity",
            &["docker-reference"],
        )?;
        let docker_reference = string(
            &identity["docker-reference"],
            "critical.identity.docker-reference",
        )?;
        if Reference::parse_normalized(docker_reference).is_err() {
            return Err(error(PayloadErrorKind::InvalidReference {
                value: docker_reference.to_string(),
            }));
        }
        let mut payload = Payload {
            docker_reference: docker_reference.to_string(),
            manifest_digest,
            creator: None,
            timestamp: None,
            other: BTreeMap::new(),
            optional_null: false,
        };
        match &top["optional"] {
            Value::Null => payload.optional_null = true,
            Value::Object(optional) => {
                for (key, value) in optional {
                    match key.as_str() {
                        "creator" => {
                            payload.creator = Some(string(value, "optional.creator")?.to_string())
                        }
                        "timestamp" => payload.timestamp = Some(integer_timestamp(value)?),
                        _ => {
                            payload.other.insert(key.clone(), value.clone());
                        }
                    }
                }
            }
            _ => {
                return Err(error(PayloadErrorKind::WrongType {
                    field: "optional".into(),
                    expected: "an object or null",
                }));
            }
        }
        Ok(payload)
    }
}

/// `value` as an object holding exactly `fields`.
fn exact_fields<'v>(
    value: &'v Value,
    at: &str,
    fields: &[&str],
) -> Result<&'v Map<String, Value>, PayloadError> {
    let object = value.as_object().ok_or_else(|| {
        error(PayloadErrorKind::WrongType {
            field: at.to_string(),
            expected: "an object",
        })
    })?;
    let path = |name: &str| {
        if at == "payload" {
            name.to_string()
        } else {
            format!("{at}.{name}")
        }
    };
    if let Some(unknown) = object.keys().find(|k| !fields.contains(&k.as_str())) {
        return Err(error(PayloadErrorKind::UnknownField {
            field: path(unknown),
        }));
    }
    if let Some(missing) = fields.iter().find(|f| !object.contains_key(**f)) {
        return Err(error(PayloadErrorKind::MissingField {
            field: path(missing),
        }));
    }
    Ok(object)
}

fn string<'v>(value: &'v Value, field: &str) -> Result<&'v str, PayloadError> {
    value.as_str().ok_or_else(|| {
        error(PayloadErrorKind::WrongType {
            field: field.to_string(),
            expected: "a string",
        })
    })
}

fn integer_timestamp(value: &Value) -> Result<i64, PayloadError> {
    let Value::Number(number) = value else {
        return Err(error(PayloadErrorKind::WrongType {
            field: "optional.timestamp".into(),
            expected: "a number",
        }));
    };
    if let Some(i) = number.as_i64() {
        return Ok(i);
    }
    // Go reads the number as a float64 and requires it to be integral; 1.7e9 is accepted.
    match number.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(f as i64),
        _ => Err(error(PayloadErrorKind::NonIntegerTimestamp)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest() -> Digest {
        Digest::sha256(b"manifest")
    }

    fn kind(bytes: &[u8]) -> PayloadErrorKind {
        Payload::parse(bytes).unwrap_err().kind().clone()
    }

    #[test]
    fn a_payload_is_written_as_containers_image_writes_it() {
        let reference = Reference::parse("quay.io/team/app:v1").unwrap();
        let payload = Payload::new(&reference, digest()).with_timestamp(1_700_000_000);
        let expected = format!(
            concat!(
                r#"{{"critical":{{"identity":{{"docker-reference":"quay.io/team/app:v1"}},"#,
                r#""image":{{"docker-manifest-digest":"{}"}},"#,
                r#""type":"cosign container image signature"}},"#,
                r#""optional":{{"creator":"ocikit {}","timestamp":1700000000}}}}"#
            ),
            digest(),
            env!("CARGO_PKG_VERSION")
        );
        assert_eq!(String::from_utf8(payload.to_json()).unwrap(), expected);
        assert_eq!(Payload::parse(expected.as_bytes()).unwrap(), payload);
    }

    #[test]
    fn references_are_written_normalised_or_as_a_repository() {
        let alpine = Reference::parse("alpine").unwrap();
        assert_eq!(
            Payload::new(&alpine, digest()).docker_reference(),
            "docker.io/library/alpine:latest"
        );
        assert_eq!(
            Payload::for_repository(&alpine, digest()).docker_reference(),
            "docker.io/library/alpine"
        );
    }

    #[test]
    fn cosign_s_null_optional_and_annotations_are_read() {
        let text = format!(
            r#"{{"critical":{{"identity":{{"docker-reference":"localhost:5000/app"}},"image":{{"docker-manifest-digest":"{}"}},"type":"cosign container image signature"}},"optional":null}}"#,
            digest()
        );
        let payload = Payload::parse(text.as_bytes()).unwrap();
        assert_eq!(payload.docker_reference(), "localhost:5000/app");
        assert_eq!(payload.creator(), None);
        assert_eq!(payload.to_json(), text.as_bytes());
        let text = text.replace("null", r#"{"sha":"abc","timestamp":1.7e9}"#);
        let payload = Payload::parse(text.as_bytes()).unwrap();
        assert_eq!(payload.optional()["sha"], "abc");
        assert_eq!(payload.timestamp(), Some(1_700_000_000));
    }

    #[test]
    fn malformed_payloads_are_refused_with_their_reason() {
        let good = String::from_utf8(
            Payload::new(&Reference::parse("a.io/b:c").unwrap(), digest())
                .with_timestamp(5)
                .to_json(),
        )
        .unwrap();
        let d = digest().to_string();
        let cases: Vec<(String, PayloadErrorKind)> = vec![
            (
                good[..good.len() - 3].to_string(),
                PayloadErrorKind::Json {
                    reason: String::new(),
                },
            ),
            (
                good.replace(r#""critical":"#, r#""critical":{"type":"x"},"critical":"#),
                PayloadErrorKind::Json {
                    reason: String::new(),
                },
            ),
            (
                good.replace(r#""optional":"#, r#""extra":1,"optional":"#),
                PayloadErrorKind::UnknownField {
                    field: "extra".into(),
                },
            ),
            (
                good.replace(r#""type":"cosign container image signature""#, r#""type":"x""#),
                PayloadErrorKind::UnknownType { found: "x".into() },
            ),
            (
                good.replace(&d, "sha256:abc"),
                PayloadErrorKind::InvalidDigest {
                    value: "sha256:abc".into(),
                },
            ),
            (
                good.replace("a.io/b:c", "A b"),
                PayloadErrorKind::InvalidReference {
                    value: "A b".into(),
                },
            ),
            (
                good.replace(r#""timestamp":5"#, r#""timestamp":5.5"#),
                PayloadErrorKind::NonIntegerTimestamp,
            ),
            (
                good.replace(r#""timestamp":5"#, r#""timestamp":"5""#),
                PayloadErrorKind::WrongType {
                    field: "optional.timestamp".into(),
                    expected: "a number",
                },
            ),
            (
                good.replace(r#""docker-reference":"a.io/b:c""#, r#""docker-reference":7"#),
                PayloadErrorKind::WrongType {
                    field: "critical.identity.docker-reference".into(),
                    expected: "a string",
                },
            ),
            (
                good.replace(
                    r#"{"docker-manifest-digest":"#,
                    r#"{"more":1,"docker-manifest-digest":"#,
                ),
                PayloadErrorKind::UnknownField {
                    field: "critical.image.more".into(),
                },
            ),
            (
                good.replace(r#","optional":{"#, r#","zzz":{"#),
                PayloadErrorKind::UnknownField { field: "zzz".into() },
            ),
            (
                r#"{"critical":{"identity":{"docker-reference":"a"},"type":"cosign container image signature"},"optional":null}"#.into(),
                PayloadErrorKind::MissingField {
                    field: "critical.image".into(),
                },
            ),
            (
                good.replace(r#""optional":{"#, r#""optional":[{"#).replace("}}", "}]}"),
                PayloadErrorKind::WrongType {
                    field: "optional".into(),
                    expected: "an object or null",
                },
            ),
            ("[]".into(), PayloadErrorKind::WrongType { field: "payload".into(), expected: "an object" }),
        ];
        for (text, expected) in cases {
            let found = kind(text.as_bytes());
            match (&found, &expected) {
                (PayloadErrorKind::Json { .. }, PayloadErrorKind::Json { .. }) => {}
                _ => assert_eq!(found, expected, "{text}"),
            }
        }
        let huge = vec![b' '; MAX_PAYLOAD_LEN + 1];
        assert_eq!(
            kind(&huge),
            PayloadErrorKind::TooLarge {
                max: MAX_PAYLOAD_LEN
            }
        );
        // A truncated payload (a cut signature layer) is not JSON.
        assert!(matches!(
            kind(&good.as_bytes()[..40]),
            PayloadErrorKind::Json { .. }
        ));
    }
}
