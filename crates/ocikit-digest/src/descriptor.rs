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

use std::fmt;

use base64::Engine as _;
use oci_spec::image::{Descriptor, MediaType};
use serde::de::{self, DeserializeSeed, MapAccess, Visitor};
use serde_json::Value;

use crate::json::{self, Checker, JsonError, Keys, Scan, Scanner};
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

fn check_raw(value: &Value) -> Result<(), InvalidDescriptorKind> {
    let Value::Object(object) = value else {
        return Err(InvalidDescriptorKind::NotAnObject);
    };
    let field = |name: &str| object.get(name).map(Scan::of);
    let platform = match object.get("platform") {
        Some(Value::Object(platform)) => {
            let field = |name: &str| platform.get(name).map(Scan::of);
            Some(RawPlatform {
                os: field("os"),
                architecture: field("architecture"),
                os_version: field("os.version"),
                variant: field("variant"),
                os_features: field("os.features"),
                features: field("features"),
            })
        }
        _ => None,
    };
    Raw {
        media_type: field("mediaType"),
        digest: field("digest"),
        size: field("size"),
        artifact_type: field("artifactType"),
        data: field("data"),
        urls: field("urls"),
        annotations: field("annotations"),
        platform: field("platform"),
        platform_fields: platform,
    }
    .check()
}

/// What the raw-JSON rules look at in a descriptor object: each field as scanned (`None`
/// when absent), from a parsed [`Value`] ([`check_raw`]) or straight from the bytes
/// ([`RawSeed`]), so that both are judged by the one [`Raw::check`].
#[derive(Default)]
struct Raw<'a> {
    media_type: Option<Scan<'a>>,
    digest: Option<Scan<'a>>,
    size: Option<Scan<'a>>,
    artifact_type: Option<Scan<'a>>,
    data: Option<Scan<'a>>,
    urls: Option<Scan<'a>>,
    annotations: Option<Scan<'a>>,
    platform: Option<Scan<'a>>,
    /// The fields of `platform`, when it is an object.
    platform_fields: Option<RawPlatform<'a>>,
}

#[derive(Default)]
struct RawPlatform<'a> {
    os: Option<Scan<'a>>,
    architecture: Option<Scan<'a>>,
    os_version: Option<Scan<'a>>,
    variant: Option<Scan<'a>>,
    os_features: Option<Scan<'a>>,
    features: Option<Scan<'a>>,
}

impl Raw<'_> {
    /// The raw rules, in their order: `mediaType`, `digest`, `size`, `artifactType`, `data`,
    /// `urls`, `annotations`, `platform`.
    fn check(&self) -> Result<(), InvalidDescriptorKind> {
        use InvalidDescriptorKind as K;
        let media_type = required_str(&self.media_type, "mediaType")?;
        check_media_type("mediaType", media_type)?;
        let digest = required_str(&self.digest, "digest")?;
        Digest::parse(digest).map_err(K::BadDigest)?;
        match &self.size {
            None => return Err(K::MissingField { field: "size" }),
            Some(Scan::Number(n)) => {
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
        if let Some(artifact_type) = optional_str(&self.artifact_type, "artifactType")? {
            check_media_type("artifactType", artifact_type)?;
        }
        optional_str(&self.data, "data")?;
        match optional(&self.urls) {
            None | Some(Scan::Array { all_strings: true }) => {}
            Some(_) => {
                return Err(K::WrongType {
                    field: "urls",
                    expected: "array of strings",
                });
            }
        }
        match optional(&self.annotations) {
            None => {}
            Some(Scan::Object { non_string: None }) => {}
            Some(Scan::Object {
                non_string: Some(key),
            }) => {
                return Err(K::AnnotationNotString {
                    key: key.to_string(),
                });
            }
            Some(_) => {
                return Err(K::WrongType {
                    field: "annotations",
                    expected: "object",
                });
            }
        }
        if optional(&self.platform).is_some() {
            let Some(platform) = &self.platform_fields else {
                return Err(K::WrongType {
                    field: "platform",
                    expected: "object",
                });
            };
            for (value, field) in [
                (&platform.os, "platform.os"),
                (&platform.architecture, "platform.architecture"),
            ] {
                match value {
                    Some(Scan::Str(_)) => {}
                    None | Some(Scan::Null) => return Err(K::MissingField { field }),
                    Some(_) => {
                        return Err(K::WrongType {
                            field,
                            expected: "string",
                        });
                    }
                }
            }
            for (value, field) in [
                (&platform.os_version, "platform.os.version"),
                (&platform.variant, "platform.variant"),
            ] {
                if !matches!(value, None | Some(Scan::Null | Scan::Str(_))) {
                    return Err(K::WrongType {
                        field,
                        expected: "string",
                    });
                }
            }
            for (value, field) in [
                (&platform.os_features, "platform.os.features"),
                (&platform.features, "platform.features"),
            ] {
                if !matches!(
                    value,
                    None | Some(Scan::Null | Scan::Array { all_strings: true })
                ) {
                    return Err(K::WrongType {
                        field,
                        expected: "array of strings",
                    });
                }
            }
        }
        Ok(())
    }
}

fn optional<'s, 'a>(value: &'s Option<Scan<'a>>) -> Option<&'s Scan<'a>> {
    value.as_ref().filter(|v| !v.is_null())
}

fn required_str<'s>(
    value: &'s Option<Scan<'_>>,
    field: &'static str,
) -> Result<&'s str, InvalidDescriptorKind> {
    match value {
        None => Err(InvalidDescriptorKind::MissingField { field }),
        Some(Scan::Str(s)) => Ok(s),
        Some(_) => Err(InvalidDescriptorKind::WrongType {
            field,
            expected: "string",
        }),
    }
}

fn optional_str<'s>(
    value: &'s Option<Scan<'_>>,
    field: &'static str,
) -> Result<Option<&'s str>, InvalidDescriptorKind> {
    match optional(value) {
        None => Ok(None),
        Some(Scan::Str(s)) => Ok(Some(s)),
        Some(_) => Err(InvalidDescriptorKind::WrongType {
            field,
            expected: "string",
        }),
    }
}

/// Checks a descriptor's JSON strictly while it is read (building no tree) and judges it by
/// the raw rules of [`from_value`]: the value is the verdict (`NotAnObject` for a value
/// that is not an object). Used by [`crate::document`] for the descriptors inside a
/// manifest or index.
pub(crate) struct RawSeed<'b>(pub(crate) Checker<'b>);

impl<'de> DeserializeSeed<'de> for RawSeed<'_> {
    type Value = Result<(), InvalidDescriptorKind>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RawSeed<'_> {
    type Value = Result<(), InvalidDescriptorKind>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a descriptor")
    }

    json::scan_others!(|_| Err(InvalidDescriptorKind::NotAnObject));

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut inner = self.0.nested()?;
        let mut keys = Keys::default();
        let mut raw = Raw::default();
        while let Some(key) = inner.next_key(&mut map, &mut keys)? {
            let slot = match &*key {
                "mediaType" => &mut raw.media_type,
                "digest" => &mut raw.digest,
                "size" => &mut raw.size,
                "artifactType" => &mut raw.artifact_type,
                "data" => &mut raw.data,
                "urls" => &mut raw.urls,
                "annotations" => &mut raw.annotations,
                "platform" => {
                    let (scan, fields) = map.next_value_seed(PlatformSeed(inner.member()))?;
                    raw.platform = Some(scan);
                    raw.platform_fields = fields;
                    continue;
                }
                _ => {
                    map.next_value_seed(Scanner(inner.member()))?;
                    continue;
                }
            };
            *slot = Some(map.next_value_seed(Scanner(inner.member()))?);
        }
        Ok(raw.check())
    }
}

/// A descriptor's `platform`, scanned, with its fields when it is an object.
struct PlatformSeed<'b>(Checker<'b>);

impl<'de> DeserializeSeed<'de> for PlatformSeed<'_> {
    type Value = (Scan<'de>, Option<RawPlatform<'de>>);

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for PlatformSeed<'_> {
    type Value = (Scan<'de>, Option<RawPlatform<'de>>);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a platform")
    }

    json::scan_others!(|scan| (scan, None));

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut inner = self.0.nested()?;
        let mut keys = Keys::default();
        let mut platform = RawPlatform::default();
        while let Some(key) = inner.next_key(&mut map, &mut keys)? {
            let value = map.next_value_seed(Scanner(inner.member()))?;
            let slot = match &*key {
                "os" => &mut platform.os,
                "architecture" => &mut platform.architecture,
                "os.version" => &mut platform.os_version,
                "variant" => &mut platform.variant,
                "os.features" => &mut platform.os_features,
                "features" => &mut platform.features,
                _ => continue,
            };
            *slot = Some(value);
        }
        // Only whether the platform's own values are strings matters to the rules, not
        // what the object scan would say of them.
        Ok((Scan::Object { non_string: None }, Some(platform)))
    }
}

/// Why a descriptor was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind}")]
pub struct InvalidDescriptor {
    kind: InvalidDescriptorKind,
}

impl InvalidDescriptor {
    pub(crate) fn new(kind: InvalidDescriptorKind) -> InvalidDescriptor {
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
