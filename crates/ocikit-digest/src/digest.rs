//! The [`Digest`] type: parsing exactly per the image spec, display, ordering, serde and a
//! path-safe view for `blobs/<alg>/<encoded>`.

use std::cmp::Ordering;
use std::fmt;
use std::hash::Hash;
use std::str::FromStr;

use crate::Algorithm;

/// Longest digest string accepted, algorithm and encoded part together (an implementation
/// limit that keeps every digest usable as a file name pair; the spec sets none).
pub const MAX_DIGEST_LEN: usize = 1024;

/// The SHA-256 digest of zero bytes.
pub const EMPTY_SHA256: &str =
    "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// The SHA-256 digest of the empty JSON object `{}` (the OCI empty descriptor's content).
pub const EMPTY_JSON_SHA256: &str =
    "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

/// A content digest, `algorithm ":" encoded`, validated per the OCI image spec.
///
/// Parsing is exact and anchored: registered algorithms (`sha256`, `sha512`, `blake3`)
/// require their exact number of lowercase hex characters; other algorithms must follow the
/// grammar and are kept, but [`Digest::is_supported`] is false for them and nothing in
/// ocikit will treat content as verified against them.
///
/// Equality, ordering and hashing are those of the digest string.
///
/// ```
/// use ocikit_digest::{Algorithm, Digest};
///
/// let d: Digest = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
///     .parse()?;
/// assert_eq!(d.algorithm(), &Algorithm::Sha256);
/// assert_eq!(d, Digest::sha256(b""));
/// assert!("sha256:E3B0C442".parse::<Digest>().is_err());
/// # Ok::<(), ocikit_digest::digest::ParseError>(())
/// ```
#[derive(Clone)]
pub struct Digest {
    full: Box<str>,
    colon: usize,
    algorithm: Algorithm,
}

impl Digest {
    /// Parses and validates a digest string.
    pub fn parse(s: &str) -> Result<Digest, ParseError> {
        parse(s).map_err(ParseError::new)
    }

    /// Parses a digest and also requires an algorithm ocikit can compute (for content about
    /// to be written or served, where it must be verified).
    pub fn parse_supported(s: &str) -> Result<Digest, ParseError> {
        let digest = Digest::parse(s)?;
        if digest.is_supported() {
            Ok(digest)
        } else {
            Err(ParseError::new(ParseErrorKind::UnsupportedAlgorithm {
                algorithm: digest.algorithm,
            }))
        }
    }

    /// Builds a digest from an algorithm and the raw bytes of its hash.
    ///
    /// Fails with [`ParseErrorKind::WrongLength`] when the length does not fit a registered
    /// algorithm; unregistered algorithms are given the lowercase hex of the bytes.
    pub fn from_raw(algorithm: Algorithm, raw: &[u8]) -> Result<Digest, ParseError> {
        if let Some(expected) = algorithm.hex_len()
            && raw.len() * 2 != expected
        {
            return Err(ParseError::new(ParseErrorKind::WrongLength {
                algorithm,
                expected,
                actual: raw.len() * 2,
            }));
        }
        let mut full = String::with_capacity(algorithm.as_str().len() + 1 + raw.len() * 2);
        full.push_str(algorithm.as_str());
        full.push(':');
        push_hex(&mut full, raw);
        if full.len() > MAX_DIGEST_LEN {
            return Err(ParseError::new(ParseErrorKind::TooLong {
                max: MAX_DIGEST_LEN,
            }));
        }
        let colon = algorithm.as_str().len();
        Ok(Digest {
            full: full.into_boxed_str(),
            colon,
            algorithm,
        })
    }

    /// Assembles a digest from parts the caller built correctly (a hasher's output).
    pub(crate) fn from_trusted_parts(full: String, colon: usize, algorithm: Algorithm) -> Digest {
        debug_assert!(parse(&full).is_ok());
        Digest {
            full: full.into_boxed_str(),
            colon,
            algorithm,
        }
    }

    /// The whole digest string, `algorithm:encoded`.
    pub fn as_str(&self) -> &str {
        &self.full
    }

    /// The algorithm.
    pub fn algorithm(&self) -> &Algorithm {
        &self.algorithm
    }

    /// The encoded part, after the colon.
    pub fn encoded(&self) -> &str {
        &self.full[self.colon + 1..]
    }

    /// Whether ocikit can compute this digest's algorithm (and so verify content against it).
    pub fn is_supported(&self) -> bool {
        self.algorithm.is_supported()
    }

    /// The raw hash bytes, decoded from hex, for registered algorithms; `None` otherwise.
    pub fn to_raw(&self) -> Option<Vec<u8>> {
        self.algorithm.hex_len()?;
        let hex = self.encoded().as_bytes();
        let mut out = Vec::with_capacity(hex.len() / 2);
        for pair in hex.chunks_exact(2) {
            out.push((hex_value(pair[0])? << 4) | hex_value(pair[1])?);
        }
        Some(out)
    }

    /// The two path components under which a content-addressed store keeps this blob,
    /// `(algorithm, encoded)`, as in `blobs/<algorithm>/<encoded>`.
    ///
    /// Both are guaranteed non-empty and free of `/`, `\`, NUL and `.`-only names (`.`,
    /// `..`): the algorithm starts with `[a-z0-9]` and the encoded part has no `.` at all, so
    /// neither can climb out of the directory they are joined onto.
    pub fn path_components(&self) -> (&str, &str) {
        (&self.full[..self.colon], self.encoded())
    }

    /// The relative path `blobs/<algorithm>/<encoded>` of this blob in an OCI image layout.
    pub fn blob_path(&self) -> String {
        let (algorithm, encoded) = self.path_components();
        format!("blobs/{algorithm}/{encoded}")
    }

    /// The digest of the empty byte string under SHA-256.
    pub fn empty_sha256() -> Digest {
        Digest::sha256(b"")
    }
}

fn parse(s: &str) -> Result<Digest, ParseErrorKind> {
    if s.is_empty() {
        return Err(ParseErrorKind::Empty);
    }
    if s.len() > MAX_DIGEST_LEN {
        return Err(ParseErrorKind::TooLong {
            max: MAX_DIGEST_LEN,
        });
    }
    let colon = s.find(':').ok_or(ParseErrorKind::MissingColon)?;
    let algorithm = Algorithm::parse_name(&s[..colon])?;
    let encoded = &s[colon + 1..];
    if encoded.is_empty() {
        return Err(ParseErrorKind::EmptyEncoded);
    }
    let offset = colon + 1;
    match algorithm.hex_len() {
        Some(expected) => {
            for (i, byte) in encoded.bytes().enumerate() {
                match byte {
                    b'0'..=b'9' | b'a'..=b'f' => {}
                    b'A'..=b'F' => {
                        return Err(ParseErrorKind::UppercaseHex {
                            position: offset + i,
                        });
                    }
                    _ => {
                        return Err(ParseErrorKind::BadHexChar {
                            position: offset + i,
                        });
                    }
                }
            }
            if encoded.len() != expected {
                return Err(ParseErrorKind::WrongLength {
                    algorithm,
                    expected,
                    actual: encoded.len(),
                });
            }
        }
        None => {
            for (i, byte) in encoded.bytes().enumerate() {
                if !matches!(byte, b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'=' | b'_' | b'-') {
                    return Err(ParseErrorKind::BadEncodedChar {
                        position: offset + i,
                    });
                }
            }
        }
    }
    Ok(Digest {
        full: s.into(),
        colon,
        algorithm,
    })
}

pub(crate) fn push_hex(out: &mut String, raw: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for byte in raw {
        out.push(HEX[usize::from(byte >> 4)] as char);
        out.push(HEX[usize::from(byte & 0xf)] as char);
    }
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

impl PartialEq for Digest {
    fn eq(&self, other: &Self) -> bool {
        self.full == other.full
    }
}

impl Eq for Digest {}

impl Hash for Digest {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.full.hash(state);
    }
}

impl PartialOrd for Digest {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Digest {
    fn cmp(&self, other: &Self) -> Ordering {
        self.full.cmp(&other.full)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.full)
    }
}

impl AsRef<str> for Digest {
    fn as_ref(&self) -> &str {
        &self.full
    }
}

impl std::borrow::Borrow<str> for Digest {
    fn borrow(&self) -> &str {
        &self.full
    }
}

impl FromStr for Digest {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Digest::parse(s)
    }
}

impl TryFrom<&str> for Digest {
    type Error = ParseError;

    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Digest::parse(s)
    }
}

impl TryFrom<String> for Digest {
    type Error = ParseError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Digest::parse(&s)
    }
}

impl TryFrom<&oci_spec::image::Digest> for Digest {
    type Error = ParseError;

    /// Re-validates an `oci-spec` digest under ocikit's stricter rules.
    fn try_from(d: &oci_spec::image::Digest) -> Result<Self, Self::Error> {
        Digest::parse(d.as_ref())
    }
}

impl TryFrom<&Digest> for oci_spec::image::Digest {
    type Error = oci_spec::OciSpecError;

    fn try_from(d: &Digest) -> Result<Self, Self::Error> {
        d.as_str().parse()
    }
}

impl From<Digest> for String {
    fn from(d: Digest) -> String {
        d.full.into()
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.full)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Digest::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Why a digest string was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind}")]
pub struct ParseError {
    kind: ParseErrorKind,
}

impl ParseError {
    pub(crate) fn new(kind: ParseErrorKind) -> ParseError {
        ParseError { kind }
    }

    /// What exactly was wrong.
    pub fn kind(&self) -> &ParseErrorKind {
        &self.kind
    }
}

/// The precise reason a digest string was rejected. Positions are byte offsets into the
/// whole digest string.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseErrorKind {
    /// The string is empty.
    #[error("digest is empty")]
    Empty,
    /// The string is longer than [`MAX_DIGEST_LEN`].
    #[error("digest is longer than {max} bytes")]
    TooLong {
        /// The limit.
        max: usize,
    },
    /// There is no `:` between algorithm and encoded part.
    #[error("digest has no `:` between algorithm and encoded part")]
    MissingColon,
    /// Nothing stands before the `:`.
    #[error("digest algorithm is empty")]
    EmptyAlgorithm,
    /// The algorithm name is longer than [`crate::algorithm::MAX_ALGORITHM_LEN`].
    #[error("digest algorithm is longer than {max} characters")]
    AlgorithmTooLong {
        /// The limit.
        max: usize,
    },
    /// A character other than `a-z`, `0-9` and the separators `+._-` in the algorithm.
    #[error(
        "invalid character in digest algorithm at byte {position} (allowed: a-z, 0-9, and + . _ - between them)"
    )]
    BadAlgorithmChar {
        /// Byte offset of the character.
        position: usize,
    },
    /// An algorithm separator at the start or end, or two in a row.
    #[error("digest algorithm separator at byte {position} does not stand between two components")]
    MisplacedSeparator {
        /// Byte offset of the separator.
        position: usize,
    },
    /// Nothing follows the `:`.
    #[error("digest encoded part is empty")]
    EmptyEncoded,
    /// A character outside `[a-zA-Z0-9=_-]` in the encoded part.
    #[error(
        "invalid character in digest encoded part at byte {position} (allowed: A-Z, a-z, 0-9, =, _, -)"
    )]
    BadEncodedChar {
        /// Byte offset of the character.
        position: usize,
    },
    /// An uppercase hex digit where a registered algorithm requires lowercase.
    #[error("uppercase hex digit at byte {position}: registered algorithms require lowercase hex")]
    UppercaseHex {
        /// Byte offset of the character.
        position: usize,
    },
    /// A non-hex character where a registered algorithm requires lowercase hex.
    #[error("character at byte {position} is not lowercase hex")]
    BadHexChar {
        /// Byte offset of the character.
        position: usize,
    },
    /// A registered algorithm's encoded part has the wrong number of characters.
    #[error("{algorithm} digest must have {expected} hex characters, found {actual}")]
    WrongLength {
        /// The algorithm.
        algorithm: Algorithm,
        /// The required number of hex characters.
        expected: usize,
        /// The number found.
        actual: usize,
    },
    /// The digest is valid but its algorithm cannot be computed by ocikit (from
    /// [`Digest::parse_supported`]).
    #[error("digest algorithm `{algorithm}` is not supported")]
    UnsupportedAlgorithm {
        /// The algorithm.
        algorithm: Algorithm,
    },
}
