//! Digest algorithms: the registered ones ocikit can compute, and grammar-valid others that
//! can be carried but never count as verified.

use std::fmt;
use std::str::FromStr;

use crate::digest::{ParseError, ParseErrorKind};

/// Longest algorithm name accepted (an implementation limit; the spec sets none).
pub const MAX_ALGORITHM_LEN: usize = 64;

/// A digest algorithm.
///
/// `Sha256` and `Sha512` are registered and computed by ocikit. `Blake3` is registered by the
/// image spec after v1.1.1: its encoded form is checked (64 lowercase hex characters), but
/// ocikit does not compute it. Any other name that follows the algorithm grammar
/// (`[a-z0-9]+([+._-][a-z0-9]+)*`) is kept as [`Algorithm::Other`]: such digests are valid to
/// carry and copy, and are never treated as verified.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Algorithm {
    /// SHA-256, the algorithm every implementation must support.
    Sha256,
    /// SHA-512.
    Sha512,
    /// BLAKE3 (256-bit output), registered on the image spec's main branch.
    Blake3,
    /// A grammar-valid algorithm that is not registered.
    Other(Box<str>),
}

impl Algorithm {
    /// The algorithm's name as it appears in a digest string.
    pub fn as_str(&self) -> &str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
            Algorithm::Blake3 => "blake3",
            Algorithm::Other(name) => name,
        }
    }

    /// Whether ocikit can compute this algorithm, and so verify content against it.
    pub fn is_supported(&self) -> bool {
        matches!(self, Algorithm::Sha256 | Algorithm::Sha512)
    }

    /// The number of lowercase hex characters the encoded part must have, for registered
    /// algorithms; `None` for unregistered ones, whose encoded part is free-form.
    pub fn hex_len(&self) -> Option<usize> {
        match self {
            Algorithm::Sha256 | Algorithm::Blake3 => Some(64),
            Algorithm::Sha512 => Some(128),
            Algorithm::Other(_) => None,
        }
    }

    /// The length in bytes of the raw hash, for algorithms with a fixed output.
    pub fn output_len(&self) -> Option<usize> {
        self.hex_len().map(|n| n / 2)
    }

    /// Parses an algorithm name, checking the grammar. Returns the error kind with positions
    /// relative to the start of `name`.
    pub(crate) fn parse_name(name: &str) -> Result<Algorithm, ParseErrorKind> {
        match name {
            "sha256" => return Ok(Algorithm::Sha256),
            "sha512" => return Ok(Algorithm::Sha512),
            "blake3" => return Ok(Algorithm::Blake3),
            _ => {}
        }
        if name.is_empty() {
            return Err(ParseErrorKind::EmptyAlgorithm);
        }
        if name.len() > MAX_ALGORITHM_LEN {
            return Err(ParseErrorKind::AlgorithmTooLong {
                max: MAX_ALGORITHM_LEN,
            });
        }
        // component (separator component)*, component = [a-z0-9]+, separator = [+._-]
        let mut previous_was_separator = true; // a leading separator is an empty component
        for (position, byte) in name.bytes().enumerate() {
            match byte {
                b'a'..=b'z' | b'0'..=b'9' => previous_was_separator = false,
                b'+' | b'.' | b'_' | b'-' => {
                    if previous_was_separator {
                        return Err(ParseErrorKind::MisplacedSeparator { position });
                    }
                    previous_was_separator = true;
                }
                _ => return Err(ParseErrorKind::BadAlgorithmChar { position }),
            }
        }
        if previous_was_separator {
            return Err(ParseErrorKind::MisplacedSeparator {
                position: name.len() - 1,
            });
        }
        Ok(Algorithm::Other(name.into()))
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Algorithm {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Algorithm::parse_name(s).map_err(ParseError::new)
    }
}

impl serde::Serialize for Algorithm {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Algorithm {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}
