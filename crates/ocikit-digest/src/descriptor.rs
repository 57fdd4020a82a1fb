//! Descriptors: strict parsing and the image spec's checks over `oci-spec`'s [`Descriptor`].
//!
//! [`parse`] reads a descriptor with the strict I-JSON rules of [`crate::json`] and checks
//! the raw JSON before `oci-spec` sees it, so that a negative or fractional `size`, a
//! non-string annotation or a bad digest each get their own error kind rather than a serde
//! message; it then applies [`check`]. Unknown fields are accepted (and, as with any typed
//! view, not kept: keep the original bytes when the content is addressed by digest).
//!
//! [`check`] re-validates a descriptor built by other means: the digest with
//! [`crate::Digest::parse`] (stricter than `oci-spec`, e.g. `blake3` lengths and the length
//! limit), `mediaType` and `artifactType` per RFC 6838, `size` within `int64`, each URL as an
//! absolute RFC 3986 URI, and embedded `data` as padded standard base64 whose decoded bytes
//! have the declared size and digest. Nothing is ever allocated from the declared `size`.
//!
//! ```
//! use ocikit_digest::descriptor::{self, InvalidDescriptorKind};
//!
//! let empty = descriptor::parse(br#"{
//!     "mediaType": "application/vnd.oci.empty.v1+json",
//!     "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
//!     "size": 2,
//!     "data": "e30="
//! }"#)?;
//! assert_eq!(empty, descriptor::empty());
//! assert_eq!(descriptor::embedded_data(&empty)?, Some(b"{}".to_vec()));
//!
//! let err = descriptor::parse(br#"{"mediaType": "application/vnd.oci.empty.v1+json",
//!     "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
//!     "size": -1}"#).unwrap_err();
//! assert_eq!(err.kind(), &InvalidDescriptorKind::NegativeSize);
//! # Ok::<(), descriptor::InvalidDescriptor>(())
//! ```

use base64::Engine as _;
use oci_spec::image::{Descriptor, MediaType};
use serde_json::{Map, Value};

use crate::json::{self, JsonError};
use crate::media_type::{self, InvalidMediaType};
use crate::{Algorithm, Digest};

/// Largest `size` a descriptor may declare: the image spec types it as `int64`.
pub const MAX_SIZE: u64 = i64::MAX as u64;

/// The OCI empty descriptor: `application/vnd.oci.empty.v1+json`, the 2-byte blob `{}`, with
/// the blob embedded as `data: "e30="`.
pub fn empty() -> Descriptor {
    let digest: oci_spec::image::Digest = crate::digest::EMPTY_JSON_SHA256
        .parse()
        .expect("the empty JSON digest constant is a valid digest");
    let mut descriptor = Descriptor::new(MediaType::EmptyJSON, 2, digest);
    descriptor.set_data(Some("e30=".to_owned()));
    descriptor
}

/// A descriptor with the three required fields, checked with [`check`].
///
/// Fails with [`InvalidDescriptorKind::BadMediaType`] for a media type that is not RFC 6838,
/// [`InvalidDescriptorKind::SizeTooLarge`] above [`MAX_SIZE`], and
/// [`InvalidDescriptorKind::DigestNotRepresentable`] for the rare digest `oci-spec` cannot
/// hold (an unregistered `sha384` encoding).
pub fn new(media_type: &str, digest: &Digest, size: u64) -> Result<Descriptor, InvalidDescriptor> {
    let oci_digest: oci_spec::image::Digest = digest
        .as_str()
        .parse()
        .map_err(|_| InvalidDescriptor::new(InvalidDescriptorKind::DigestNotRepresentable))?;
    let descriptor = Descriptor::new(MediaType::from(media_type), size, oci_digest);
    check(&descriptor)?;
    Ok(descriptor)
}

/// The descriptor's digest, re-validated under ocikit's rules.
pub fn digest_of(descriptor: &Descriptor) -> Result<Digest, InvalidDescriptor> {
    Digest::parse(descriptor.digest().as_ref())
        .map_err(|e| InvalidDescriptor::new(InvalidDescriptorKind::BadDigest(e)))
}

/// The embedded `data`, decoded and verified against `size` and `digest`; `None` when the
/// descriptor has no `data`.
pub fn embedded_data(descriptor: &Descriptor) -> Result<Option<Vec<u8>>, InvalidDescriptor> {
    let Some(data) = descriptor.data() else {
        return Ok(None);
    };
    let digest = digest_of(descriptor)?;
    decode_and_verify(data, &digest, descriptor.size())
        .map(Some)
        .map_err(InvalidDescriptor::new)
}

fn decode_and_verify(
    data: &str,
    digest: &Digest,
    size: u64,
) -> Result<Vec<u8>, InvalidDescriptorKind> {
    // STANDARD: the RFC 4648 §4 alphabet, canonical padding required, no trailing bits.
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|_| InvalidDescriptorKind::BadBase64)?;
    let actual = bytes.len() as u64;
    if actual != size {
        return Err(InvalidDescriptorKind::DataSizeMismatch {
            declared: size,
            actual,
        });
    }
    if !digest.is_supported() {
        return Err(InvalidDescriptorKind::DataUnverifiable {
            algorithm: digest.algorithm().clone(),
        });
    }
    let computed = Digest::compute(digest.algorithm(), &bytes).map_err(|_| {
        InvalidDescriptorKind::DataUnverifiable {
            algorithm: digest.algorithm().clone(),
        }
    })?;
    if &computed != digest {
        return Err(InvalidDescriptorKind::DataDigestMismatch {
            expected: digest.clone(),
            actual: computed,
        });
    }
    Ok(bytes)
}

/// Checks a descriptor against the image spec (see the module documentation).
pub fn check(descriptor: &Descriptor) -> Result<(), InvalidDescriptor> {
    check_kind(descriptor).map_err(InvalidDescriptor::new)
}

fn check_kind(descriptor: &Descriptor) -> Result<(), InvalidDescriptorKind> {
    let digest =
        Digest::parse(descriptor.digest().as_ref()).map_err(InvalidDescriptorKind::BadDigest)?;
    check_media_type("mediaType", descriptor.media_type().as_ref())?;
    if let Some(artifact_type) = descriptor.artifact_type() {
        check_media_type("artifactType", artifact_type.as_ref())?;
    }
    if descriptor.size() > MAX_SIZE {
        return Err(InvalidDescriptorKind::SizeTooLarge { max: MAX_SIZE });
    }
    if let Some(urls) = descriptor.urls() {
        for (index, url) in urls.iter().enumerate() {
            if !is_absolute_uri(url) {
                return Err(InvalidDescriptorKind::BadUrl { index });
            }
        }
    }
    if let Some(data) = descriptor.data() {
        decode_and_verify(data, &digest, descriptor.size())?;
    }
    Ok(())
}

fn check_media_type(field: &'static str, value: &str) -> Result<(), InvalidDescriptorKind> {
    media_type::validate_media_type(value)
        .map_err(|error| InvalidDescriptorKind::BadMediaType { field, error })
}

/// An absolute URI per RFC 3986 in shape: `scheme ":" rest`, the scheme
/// `ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`, and the rest made only of unreserved,
/// reserved and percent-encoded characters. Not a full parse of the authority and path.
fn is_absolute_uri(url: &str) -> bool {
    let Some((scheme, rest)) = url.split_once(':') else {
        return false;
    };
    let mut scheme_bytes = scheme.bytes();
    if !scheme_bytes.next().is_some_and(|b| b.is_ascii_alphabetic()) {
        return false;
    }
    if !scheme_bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')) {
        return false;
    }
    let bytes = rest.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = |j: usize| bytes.get(j).is_some_and(u8::is_ascii_hexdigit);
            if !(hex(i + 1) && hex(i + 2)) {
                return false;
            }
            i += 3;
            continue;
        }
        let allowed = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b':'
                    | b'/'
                    | b'?'
                    | b'#'
                    | b'['
                    | b']'
                    | b'@'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
            );
        if !allowed {
            return false;
        }
        i += 1;
    }
    true
}

/// Parses a descriptor strictly from JSON and [`check`]s it.
///
/// The document is read with [`json::parse_strict`] (duplicate keys, invalid UTF-8, lone
/// surrogates, excessive nesting and trailing data are rejected), then the raw fields are
/// checked in this order: `mediaType`, `digest`, `size` (a non-negative integer no larger
/// than [`MAX_SIZE`]), `artifactType`, `data`, `urls`, `annotations` (string values only),
/// `platform` (`os` and `architecture` required strings). Optional fields may be `null`,
/// which reads as absent. Unknown fields are accepted.
pub fn parse(bytes: &[u8]) -> Result<Descriptor, InvalidDescriptor> {
    let value = json::parse_strict(bytes)
        .map_err(|e| InvalidDescriptor::new(InvalidDescriptorKind::Json(e)))?;
    from_value(value)
}

/// [`parse`] for a JSON value already read (with [`json::parse_strict`], or the duplicate-key
/// check is lost).
pub fn from_value(value: Value) -> Result<Descriptor, InvalidDescriptor> {
    check_raw(&value).map_err(InvalidDescriptor::new)?;
    let descriptor: Descriptor = serde_json::from_value(value).map_err(|e| {
        InvalidDescriptor::new(InvalidDescriptorKind::Shape {
            message: e.to_string(),
        })
    })?;
    check(&descriptor)?;
    Ok(descriptor)
}

/// The raw-JSON checks of [`from_value`] alone (for descriptors inside a document that is
/// deserialised whole).
pub(crate) fn check_value(value: &Value) -> Result<(), InvalidDescriptor> {
    check_raw(value).map_err(InvalidDescriptor::new)
}

fn check_raw(value: &Value) -> Result<(), InvalidDescriptorKind> {
    use InvalidDescriptorKind as K;
    let Value::Object(object) = value else {
        return Err(K::NotAnObject);
    };

    let media_type = required_str(object, "mediaType")?;
    check_media_type("mediaType", media_type)?;
    let digest = required_str(object, "digest")?;
    Digest::parse(digest).map_err(K::BadDigest)?;
    match object.get("size") {
        None => return Err(K::MissingField { field: "size" }),
        Some(Value::Number(n)) => {
            if let Some(size) = n.as_u64() {
                if size > MAX_SIZE {
                    return Err(K::SizeTooLarge { max: MAX_SIZE });
                }
            } else if n.is_i64() {
                return Err(K::NegativeSize);
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                return Err(if f < 0.0 {
                    K::NegativeSize
                } else if f >= 9_223_372_036_854_775_808.0 {
                    K::SizeTooLarge { max: MAX_SIZE }
                } else {
                    K::SizeNotInteger
                });
            }
        }
        Some(_) => {
            return Err(K::WrongType {
                field: "size",
                expected: "integer",
            });
        }
    }
    if let Some(artifact_type) = optional_str(object, "artifactType")? {
        check_media_type("artifactType", artifact_type)?;
    }
    optional_str(object, "data")?;
    if let Some(urls) = optional(object, "urls") {
        let Value::Array(urls) = urls else {
            return Err(K::WrongType {
                field: "urls",
                expected: "array of strings",
            });
        };
        if !urls.iter().all(Value::is_string) {
            return Err(K::WrongType {
                field: "urls",
                expected: "array of strings",
            });
        }
    }
    if let Some(annotations) = optional(object, "annotations") {
        let Value::Object(annotations) = annotations else {
            return Err(K::WrongType {
                field: "annotations",
                expected: "object",
            });
        };
        if let Some((key, _)) = annotations.iter().find(|(_, v)| !v.is_string()) {
            return Err(K::AnnotationNotString { key: key.clone() });
        }
    }
    if let Some(platform) = optional(object, "platform") {
        let Value::Object(platform) = platform else {
            return Err(K::WrongType {
                field: "platform",
                expected: "object",
            });
        };
        for (name, field) in [
            ("os", "platform.os"),
            ("architecture", "platform.architecture"),
        ] {
            match platform.get(name) {
                Some(Value::String(_)) => {}
                None | Some(Value::Null) => return Err(K::MissingField { field }),
                Some(_) => {
                    return Err(K::WrongType {
                        field,
                        expected: "string",
                    });
                }
            }
        }
        for (name, field) in [
            ("os.version", "platform.os.version"),
            ("variant", "platform.variant"),
        ] {
            if !matches!(
                platform.get(name),
                None | Some(Value::Null | Value::String(_))
            ) {
                return Err(K::WrongType {
                    field,
                    expected: "string",
                });
            }
        }
        for (name, field) in [
            ("os.features", "platform.os.features"),
            ("features", "platform.features"),
        ] {
            let ok = match platform.get(name) {
                None | Some(Value::Null) => true,
                Some(Value::Array(items)) => items.iter().all(Value::is_string),
                Some(_) => false,
            };
            if !ok {
                return Err(K::WrongType {
                    field,
                    expected: "array of strings",
                });
            }
        }
    }
    Ok(())
}

fn optional<'v>(object: &'v Map<String, Value>, field: &'static str) -> Option<&'v Value> {
    object.get(field).filter(|v| !v.is_null())
}

fn required_str<'v>(
    object: &'v Map<String, Value>,
    field: &'static str,
) -> Result<&'v str, InvalidDescriptorKind> {
    match object.get(field) {
        None => Err(InvalidDescriptorKind::MissingField { field }),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(InvalidDescriptorKind::WrongType {
            field,
            expected: "string",
        }),
    }
}

fn optional_str<'v>(
    object: &'v Map<String, Value>,
    field: &'static str,
) -> Result<Option<&'v str>, InvalidDescriptorKind> {
    match optional(object, field) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(InvalidDescriptorKind::WrongType {
            field,
            expected: "string",
        }),
    }
}

/// Why a descriptor was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind}")]
pub struct InvalidDescriptor {
    kind: InvalidDescriptorKind,
}

impl InvalidDescriptor {
    fn new(kind: InvalidDescriptorKind) -> InvalidDescriptor {
        InvalidDescriptor { kind }
    }

    /// What exactly was wrong.
    pub fn kind(&self) -> &InvalidDescriptorKind {
        &self.kind
    }
}

/// The precise reason a descriptor was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidDescriptorKind {
    /// The document is not strict JSON.
    #[error("descriptor is not valid JSON: {0}")]
    Json(JsonError),
    /// The document is JSON but not an object.
    #[error("descriptor is not a JSON object")]
    NotAnObject,
    /// A required field is absent (for `platform.os` and `platform.architecture`, also `null`).
    #[error("descriptor field `{field}` is missing")]
    MissingField {
        /// The field, dotted for nested ones (`platform.os`).
        field: &'static str,
    },
    /// A field has the wrong JSON type.
    #[error("descriptor field `{field}` must be {expected}")]
    WrongType {
        /// The field, dotted for nested ones.
        field: &'static str,
        /// What it must be.
        expected: &'static str,
    },
    /// `digest` does not follow the digest grammar and rules.
    #[error("descriptor digest is invalid: {0}")]
    BadDigest(crate::digest::ParseError),
    /// The digest is valid for ocikit but `oci-spec` cannot represent it.
    #[error("digest cannot be represented by oci-spec")]
    DigestNotRepresentable,
    /// `mediaType` or `artifactType` is not an RFC 6838 media type.
    #[error("descriptor `{field}` is invalid: {error}")]
    BadMediaType {
        /// `mediaType` or `artifactType`.
        field: &'static str,
        /// Why.
        error: InvalidMediaType,
    },
    /// `size` is negative.
    #[error("descriptor size is negative")]
    NegativeSize,
    /// `size` is a number but not an integer (as `1.5`, or `1.0`).
    #[error("descriptor size is not an integer")]
    SizeNotInteger,
    /// `size` is larger than `int64` allows.
    #[error("descriptor size exceeds {max}")]
    SizeTooLarge {
        /// The limit, [`MAX_SIZE`].
        max: u64,
    },
    /// `data` is not padded standard base64 (RFC 4648 §4): other characters, the URL-safe
    /// alphabet, missing padding or non-zero trailing bits.
    #[error("descriptor data is not padded standard base64")]
    BadBase64,
    /// `data` decodes to another number of bytes than `size`.
    #[error("descriptor data decodes to {actual} bytes but size is {declared}")]
    DataSizeMismatch {
        /// The declared size.
        declared: u64,
        /// The decoded length.
        actual: u64,
    },
    /// `data` decodes to bytes with another digest than `digest`.
    #[error("descriptor data hashes to {actual}, not {expected}")]
    DataDigestMismatch {
        /// The declared digest.
        expected: Digest,
        /// The digest of the decoded data.
        actual: Digest,
    },
    /// `data` is present but the digest's algorithm cannot be computed, so it cannot be
    /// verified.
    #[error("descriptor data cannot be verified against a `{algorithm}` digest")]
    DataUnverifiable {
        /// The algorithm.
        algorithm: Algorithm,
    },
    /// A `urls` entry is not an absolute URI.
    #[error("descriptor urls[{index}] is not an absolute URI")]
    BadUrl {
        /// Index of the entry.
        index: usize,
    },
    /// An annotation value is not a string.
    #[error("annotation {key:?} is not a string")]
    AnnotationNotString {
        /// The annotation's key.
        key: String,
    },
    /// `oci-spec` rejected the document's shape for another reason.
    #[error("descriptor has an invalid shape: {message}")]
    Shape {
        /// serde's message.
        message: String,
    },
}
