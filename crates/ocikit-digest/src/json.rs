//! Canonical JSON for documents ocikit writes, and strict (I-JSON) parsing for documents it
//! reads.
//!
//! Both sit on serde_json; this module adds only what serde_json does not do: refuse
//! duplicate object keys (serde_json keeps the last one, a parser-differential risk), U+0000
//! and noncharacters, and deep nesting; and write object members in canonical order.
//!
//! # Canonical form
//!
//! [`to_canonical_vec`], [`value_to_canonical_vec`] and [`canonicalize`] write JSON with
//!
//! - object members sorted by their keys compared as sequences of **UTF-16 code units**, the
//!   order RFC 8785 (JCS) uses. It differs from UTF-8 byte (code point) order, the order of
//!   serde_json's sorted maps, only when a character above the Basic Multilingual Plane is
//!   compared with one in `U+E000..=U+FFFF`; sorting is done explicitly while writing, so it
//!   does not depend on whether serde_json's `preserve_order` feature is enabled;
//! - no insignificant whitespace;
//! - strings escaped by serde_json, which escapes exactly what RFC 8785 escapes (`"`, `\`, and
//!   control characters, as `\b \t \n \f \r` or lowercase `\u00xx`) and writes everything
//!   else, including `/` and non-ASCII, as is;
//! - integers written in decimal, and other numbers in serde_json's shortest round-trip form
//!   (`1.5`, `100.0`, `1e+100`). This differs from RFC 8785 for non-integers, which the OCI
//!   formats do not use, so for documents whose numbers are integers of magnitude at most
//!   2^53 the output is RFC 8785 canonical JSON.
//!
//! [`to_canonical_vec`] writes the value with serde_json and reads it back strictly, so
//! duplicate keys (from flattened structs, say), keys that do not serialise to strings,
//! strings containing U+0000 or a Unicode noncharacter, 128-bit integers outside the range of
//! `i64` and `u64`, and nesting deeper than [`MAX_DEPTH`] are rejected. Non-finite floats
//! are written as `null`, as serde_json writes them (no OCI document has floats). So
//! canonical output always parses again with [`parse_strict`], to an equal value, and
//! canonicalising it again gives the same bytes: same value, same bytes, same digest.
//!
//! # Strict parsing
//!
//! [`parse_strict`] and [`from_slice_strict`] accept exactly one JSON value (RFC 8259) that
//! also follows the I-JSON rules (RFC 7493) and ocikit's limits. They reject documents
//! larger than [`MAX_DOCUMENT_SIZE`] (the `_with_limit` variants take another limit),
//! invalid UTF-8, escaped lone surrogates (`"\ud800"`), U+0000 and Unicode noncharacters in
//! strings and keys, duplicate object keys at any depth, nesting deeper than [`MAX_DEPTH`],
//! and anything after the value but whitespace. Numbers are correctly rounded (serde_json's
//! `float_roundtrip` parser).
//!
//! ```
//! use ocikit_digest::json::{self, JsonErrorKind};
//!
//! let canonical = json::canonicalize(br#"{ "b": [1, 2], "a": "x" }"#)?;
//! assert_eq!(canonical, br#"{"a":"x","b":[1,2]}"#);
//!
//! let err = json::parse_strict(br#"{"a": 1, "a": 2}"#).unwrap_err();
//! assert_eq!(err.kind(), &JsonErrorKind::DuplicateKey { key: "a".into() });
//! # Ok::<(), json::JsonError>(())
//! ```

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::HashSet;
use std::{fmt, io};

use serde::Serialize;
use serde::de::{self, DeserializeOwned, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::error::Category;
use serde_json::{Map, Value};

/// Largest document [`parse_strict`] and [`from_slice_strict`] accept: 16 MiB.
///
/// The distribution spec requires registries to accept manifests of at least 4 MiB; 16 MiB
/// leaves room for large indexes and configs while bounding memory.
pub const MAX_DOCUMENT_SIZE: usize = 16 * 1024 * 1024;

/// Deepest nesting of arrays and objects accepted when parsing and writing (the top-level
/// array or object is depth 1). serde_json's own limit, 128, is never reached.
pub const MAX_DEPTH: usize = 64;

// ---------------------------------------------------------------------------------------------
// Errors

/// Why a JSON document was rejected, or a value could not be written canonically.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind}{}", suffix(.kind, .position))]
pub struct JsonError {
    kind: JsonErrorKind,
    position: Option<Position>,
}

impl JsonError {
    fn new(kind: JsonErrorKind) -> JsonError {
        JsonError {
            kind,
            position: None,
        }
    }

    fn at(kind: JsonErrorKind, position: Option<Position>) -> JsonError {
        JsonError { kind, position }
    }

    /// What exactly was wrong.
    pub fn kind(&self) -> &JsonErrorKind {
        &self.kind
    }

    /// Where in the document the problem was noticed, when known (parsing only).
    pub fn position(&self) -> Option<Position> {
        self.position
    }
}

/// A position in a JSON document: 1-based line, and 1-based byte column within the line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Position {
    /// Line number, starting at 1.
    pub line: usize,
    /// Byte column within the line, starting at 1.
    pub column: usize,
}

struct PositionSuffix(Option<Position>);

/// The position, for kinds whose message does not already give it.
fn suffix(kind: &JsonErrorKind, position: &Option<Position>) -> PositionSuffix {
    match kind {
        JsonErrorKind::Syntax { .. }
        | JsonErrorKind::Eof { .. }
        | JsonErrorKind::TrailingCharacters { .. } => PositionSuffix(None),
        _ => PositionSuffix(*position),
    }
}

impl fmt::Display for PositionSuffix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(p) => write!(f, " (at line {} column {})", p.line, p.column),
            None => Ok(()),
        }
    }
}

/// The precise reason a JSON document was rejected or a value could not be written.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JsonErrorKind {
    /// The document is larger than the size limit.
    #[error("JSON document of {actual} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// The limit.
        max: usize,
        /// The document's size.
        actual: usize,
    },
    /// The document is not valid UTF-8.
    #[error("JSON document is not valid UTF-8 (byte {offset})")]
    InvalidUtf8 {
        /// Byte offset of the first invalid sequence.
        offset: usize,
    },
    /// A `\uXXXX` escape encodes a surrogate that is not part of a valid pair.
    #[error("escaped lone surrogate at byte {offset}")]
    LoneSurrogate {
        /// Byte offset of the backslash starting the escape.
        offset: usize,
    },
    /// A string or key contains U+0000 or a Unicode noncharacter (`U+FDD0..=U+FDEF`, or a
    /// code point ending in `FFFE`/`FFFF`), which I-JSON forbids (U+0000 is ocikit's rule).
    #[error("string contains forbidden code point U+{code_point:04X}")]
    ForbiddenCodePoint {
        /// The code point.
        code_point: u32,
    },
    /// The document is not JSON (RFC 8259), or a number is out of the range of `f64`.
    #[error("JSON syntax error at line {line} column {column}")]
    Syntax {
        /// Line, starting at 1.
        line: usize,
        /// Byte column, starting at 1.
        column: usize,
    },
    /// The document ended in the middle of a value (or is empty).
    #[error("JSON document ends unexpectedly at line {line} column {column}")]
    Eof {
        /// Line, starting at 1.
        line: usize,
        /// Byte column, starting at 1.
        column: usize,
    },
    /// Something other than whitespace follows the value.
    #[error("trailing characters after the JSON value at line {line} column {column}")]
    TrailingCharacters {
        /// Line, starting at 1.
        line: usize,
        /// Byte column, starting at 1.
        column: usize,
    },
    /// An object has two members with the same key.
    #[error("duplicate object key {key:?}")]
    DuplicateKey {
        /// The repeated key.
        key: String,
    },
    /// Arrays and objects are nested deeper than the limit.
    #[error("JSON nesting is deeper than {max} levels")]
    TooDeep {
        /// The limit.
        max: usize,
    },
    /// A 128-bit integer outside the range of `i64` and `u64` was to be written (a number in a
    /// document too large for `f64` is a [`JsonErrorKind::Syntax`] error).
    #[error("number out of range")]
    NumberOutOfRange,
    /// A map key does not serialise to a string (serde_json writes strings, characters,
    /// unit variants, integers, floats and booleans as strings; sequences, maps, `()`
    /// and `None` it refuses).
    #[error("JSON object key must be a string")]
    KeyMustBeString,
    /// The document is valid JSON but does not have the shape of the requested type.
    #[error("JSON document does not have the expected shape: {message}")]
    Type {
        /// serde's description of the mismatch.
        message: String,
    },
    /// A `Serialize` implementation failed.
    #[error("value could not be serialised: {message}")]
    Serialize {
        /// The implementation's message.
        message: String,
    },
}

// ---------------------------------------------------------------------------------------------
// Strict parsing

/// Parses a JSON document strictly (see the [module documentation](self)), with the
/// [`MAX_DOCUMENT_SIZE`] limit.
pub fn parse_strict(bytes: &[u8]) -> Result<Value, JsonError> {
    parse_strict_with_limit(bytes, MAX_DOCUMENT_SIZE)
}

/// Parses a JSON document strictly, rejecting documents larger than `max_size` bytes.
pub fn parse_strict_with_limit(bytes: &[u8], max_size: usize) -> Result<Value, JsonError> {
    let text = strict_text(bytes, max_size)?;
    let mut broken = None;
    let mut de = serde_json::Deserializer::from_str(text);
    let value = Strict {
        broken: &mut broken,
        depth: 0,
    }
    .deserialize(&mut de);
    finish(text, &mut de, value, broken)
}

/// The first half of every strict parse: the size limit, then UTF-8.
pub(crate) fn strict_text(bytes: &[u8], max_size: usize) -> Result<&str, JsonError> {
    if bytes.len() > max_size {
        return Err(JsonError::new(JsonErrorKind::TooLarge {
            max: max_size,
            actual: bytes.len(),
        }));
    }
    std::str::from_utf8(bytes).map_err(|e| {
        let offset = e.valid_up_to();
        JsonError::at(
            JsonErrorKind::InvalidUtf8 { offset },
            Some(position_of(bytes, offset)),
        )
    })
}

/// The second half of every strict parse: names the error of a strict visitor run over
/// `text` by `de` (the rule left in `broken`, or serde_json's own), then refuses trailing
/// characters.
pub(crate) fn finish<T>(
    text: &str,
    de: &mut serde_json::Deserializer<serde_json::de::StrRead<'_>>,
    result: Result<T, serde_json::Error>,
    mut broken: Option<JsonErrorKind>,
) -> Result<T, JsonError> {
    let value = match result {
        Ok(value) => value,
        Err(e) => {
            return Err(match broken.take() {
                Some(kind) => JsonError::at(kind, serde_position(&e)),
                None => classify(text, &e),
            });
        }
    };
    if let Err(e) = de.end() {
        return Err(JsonError::at(
            JsonErrorKind::TrailingCharacters {
                line: e.line(),
                column: e.column(),
            },
            serde_position(&e),
        ));
    }
    Ok(value)
}

/// Parses a JSON document strictly (see [`parse_strict`]) and converts it to `T`; a shape
/// mismatch is [`JsonErrorKind::Type`].
pub fn from_slice_strict<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, JsonError> {
    from_slice_strict_with_limit(bytes, MAX_DOCUMENT_SIZE)
}

/// [`from_slice_strict`] with an explicit document size limit.
pub fn from_slice_strict_with_limit<T: DeserializeOwned>(
    bytes: &[u8],
    max_size: usize,
) -> Result<T, JsonError> {
    let value = parse_strict_with_limit(bytes, max_size)?;
    serde_json::from_value(value).map_err(|e| {
        JsonError::new(JsonErrorKind::Type {
            message: e.to_string(),
        })
    })
}

fn serde_position(e: &serde_json::Error) -> Option<Position> {
    (e.line() > 0).then(|| Position {
        line: e.line(),
        column: e.column(),
    })
}

/// Maps a serde_json parse error that none of our own rules raised.
fn classify(text: &str, e: &serde_json::Error) -> JsonError {
    let (line, column) = (e.line(), e.column());
    let kind = match e.classify() {
        Category::Eof => JsonErrorKind::Eof { line, column },
        Category::Data => JsonErrorKind::Type {
            message: e.to_string(),
        },
        Category::Syntax | Category::Io => {
            match lone_surrogate(text, offset_of(text, line, column)) {
                Some(offset) => {
                    let position = position_of(text.as_bytes(), offset);
                    return JsonError::at(JsonErrorKind::LoneSurrogate { offset }, Some(position));
                }
                None => JsonErrorKind::Syntax { line, column },
            }
        }
    };
    JsonError::at(kind, serde_position(e))
}

/// Line and column (both 1-based, column in bytes) of a byte offset.
fn position_of(bytes: &[u8], offset: usize) -> Position {
    let before = &bytes[..offset.min(bytes.len())];
    let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    Position {
        line,
        column: offset - line_start + 1,
    }
}

/// The byte offset just past the last byte serde_json read when it reported an error at
/// `line` and `column` (its column counts the bytes of the line read so far).
fn offset_of(text: &str, line: usize, column: usize) -> usize {
    let line_start = text
        .match_indices('\n')
        .nth(line.saturating_sub(2))
        .filter(|_| line > 1)
        .map_or(0, |(i, _)| i + 1);
    (line_start + column).min(text.len())
}

/// The byte offset of the first `\u` escape of a lone surrogate that ends at or before
/// `end`, for naming the syntax error serde_json reported there (it rejects lone surrogates
/// but does not say so in a way we can match). Only strings hold backslashes in a document
/// that serde_json read up to `end`, so escapes are found without tracking strings.
fn lone_surrogate(text: &str, end: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i + 6 <= end {
        if bytes[i] != b'\\' {
            i += 1;
        } else if bytes.get(i + 1) != Some(&b'u') {
            i += 2;
        } else {
            match hex4(bytes, i + 2) {
                Some(0xD800..=0xDBFF)
                    if bytes.get(i + 6..i + 8) == Some(b"\\u")
                        && matches!(hex4(bytes, i + 8), Some(0xDC00..=0xDFFF)) =>
                {
                    i += 12;
                }
                Some(0xD800..=0xDFFF) => return Some(i),
                _ => i += 2,
            }
        }
    }
    None
}

fn hex4(bytes: &[u8], at: usize) -> Option<u32> {
    let digits = bytes.get(at..at + 4)?;
    let mut value = 0;
    for &d in digits {
        value = (value << 4) | char::from(d).to_digit(16)?;
    }
    Some(value)
}

/// Whether `c` is U+0000 or a Unicode noncharacter.
fn is_forbidden(c: char) -> bool {
    let cp = u32::from(c);
    cp == 0 || (0xFDD0..=0xFDEF).contains(&cp) || cp & 0xFFFE == 0xFFFE
}

fn check_str(s: &str) -> Result<(), JsonErrorKind> {
    match s.chars().find(|&c| is_forbidden(c)) {
        Some(c) => Err(JsonErrorKind::ForbiddenCodePoint {
            code_point: u32::from(c),
        }),
        None => Ok(()),
    }
}

/// Builds a `Value` from serde_json's tokens, refusing what I-JSON and our limits forbid.
/// The first broken rule is left in `broken`, since serde's error type carries only text.
struct Strict<'b> {
    broken: &'b mut Option<JsonErrorKind>,
    depth: usize,
}

impl<'b> Strict<'b> {
    fn fail<E: de::Error>(self, kind: JsonErrorKind) -> E {
        *self.broken = Some(kind);
        E::custom("strict JSON rule violated")
    }

    fn nested<E: de::Error>(self) -> Result<(&'b mut Option<JsonErrorKind>, usize), E> {
        let depth = self.depth + 1;
        if depth > MAX_DEPTH {
            return Err(self.fail(JsonErrorKind::TooDeep { max: MAX_DEPTH }));
        }
        Ok((self.broken, depth))
    }
}

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        // serde_json reports numbers beyond f64 as syntax errors, so `v` is finite.
        match serde_json::Number::from_f64(v) {
            Some(n) => Ok(Value::Number(n)),
            None => Err(self.fail(JsonErrorKind::NumberOutOfRange)),
        }
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        match check_str(v) {
            Ok(()) => Ok(Value::String(v.to_owned())),
            Err(kind) => Err(self.fail(kind)),
        }
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        match check_str(&v) {
            Ok(()) => Ok(Value::String(v)),
            Err(kind) => Err(self.fail(kind)),
        }
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let (broken, depth) = self.nested()?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(Strict {
            broken: &mut *broken,
            depth,
        })? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let (broken, depth) = self.nested()?;
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let strict = Strict {
                broken: &mut *broken,
                depth,
            };
            if let Err(kind) = check_str(&key) {
                return Err(strict.fail(kind));
            }
            match object.entry(key) {
                serde_json::map::Entry::Occupied(entry) => {
                    let key = entry.key().clone();
                    return Err(strict.fail(JsonErrorKind::DuplicateKey { key }));
                }
                serde_json::map::Entry::Vacant(entry) => {
                    entry.insert(map.next_value_seed(strict)?);
                }
            }
        }
        Ok(Value::Object(object))
    }
}

// ---------------------------------------------------------------------------------------------
// Strict checking without a tree

/// The strict rules of [`Strict`] for visitors that build no tree (the document and
/// descriptor scanners): where the first broken rule is left, and the nesting depth.
pub(crate) struct Checker<'b> {
    broken: &'b mut Option<JsonErrorKind>,
    depth: usize,
}

impl<'b> Checker<'b> {
    /// A checker for a document's top-level value; the broken rule is left in `broken`.
    pub(crate) fn root(broken: &'b mut Option<JsonErrorKind>) -> Checker<'b> {
        Checker { broken, depth: 0 }
    }

    fn fail<E: de::Error>(&mut self, kind: JsonErrorKind) -> E {
        *self.broken = Some(kind);
        E::custom("strict JSON rule violated")
    }

    /// The checker for the members of an array or object being entered.
    pub(crate) fn nested<E: de::Error>(&mut self) -> Result<Checker<'_>, E> {
        let depth = self.depth + 1;
        if depth > MAX_DEPTH {
            return Err(self.fail(JsonErrorKind::TooDeep { max: MAX_DEPTH }));
        }
        Ok(Checker {
            broken: &mut *self.broken,
            depth,
        })
    }

    /// The same checker, reborrowed for one member.
    pub(crate) fn member(&mut self) -> Checker<'_> {
        Checker {
            broken: &mut *self.broken,
            depth: self.depth,
        }
    }

    /// Checks a string value.
    pub(crate) fn string<E: de::Error>(&mut self, s: &str) -> Result<(), E> {
        check_str(s).map_err(|kind| self.fail(kind))
    }

    /// Reads the next key of an object (checked like a string, and refused when `keys`
    /// already holds it); `None` at the end of the object.
    pub(crate) fn next_key<'de, A: MapAccess<'de>>(
        &mut self,
        map: &mut A,
        keys: &mut Keys<'de>,
    ) -> Result<Option<Cow<'de, str>>, A::Error> {
        let Some(KeyText(key)) = map.next_key::<KeyText<'de>>()? else {
            return Ok(None);
        };
        self.string::<A::Error>(&key)?;
        if !keys.insert(key.clone()) {
            return Err(self.fail(JsonErrorKind::DuplicateKey {
                key: key.into_owned(),
            }));
        }
        Ok(Some(key))
    }
}

/// A key as written: borrowed from the document unless it holds escapes.
struct KeyText<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for KeyText<'de> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = KeyText<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<KeyText<'de>, E> {
                Ok(KeyText(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<KeyText<'de>, E> {
                Ok(KeyText(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<KeyText<'de>, E> {
                Ok(KeyText(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// The keys of one object seen so far: a short list, then a hash set for large objects.
#[derive(Default)]
pub(crate) struct Keys<'de> {
    few: Vec<Cow<'de, str>>,
    many: HashSet<Cow<'de, str>>,
}

impl<'de> Keys<'de> {
    /// Adds `key`; false if it was already there.
    fn insert(&mut self, key: Cow<'de, str>) -> bool {
        const FEW: usize = 16;
        if self.many.is_empty() {
            if self.few.contains(&key) {
                return false;
            }
            if self.few.len() < FEW {
                self.few.push(key);
                return true;
            }
            self.many.extend(self.few.drain(..));
        }
        self.many.insert(key)
    }
}

/// What a scanned value is, with what the descriptor and document rules ask of it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Scan<'de> {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool,
    /// A number, as [`Value`] would hold it.
    Number(serde_json::Number),
    /// A string.
    Str(Cow<'de, str>),
    /// An array, and whether all its items are strings.
    Array {
        /// Whether every item is a string.
        all_strings: bool,
    },
    /// An object, and its least key (in byte order, as [`Map`] iterates) whose value is not
    /// a string.
    Object {
        /// That key, if any.
        non_string: Option<Cow<'de, str>>,
    },
}

impl<'v> Scan<'v> {
    /// The scan of a value already parsed.
    pub(crate) fn of(value: &'v Value) -> Scan<'v> {
        match value {
            Value::Null => Scan::Null,
            Value::Bool(_) => Scan::Bool,
            Value::Number(n) => Scan::Number(n.clone()),
            Value::String(s) => Scan::Str(Cow::Borrowed(s)),
            Value::Array(items) => Scan::Array {
                all_strings: items.iter().all(Value::is_string),
            },
            Value::Object(map) => Scan::Object {
                non_string: map
                    .iter()
                    .find(|(_, v)| !v.is_string())
                    .map(|(k, _)| Cow::Borrowed(k.as_str())),
            },
        }
    }

    /// Whether it is `null`.
    pub(crate) fn is_null(&self) -> bool {
        matches!(self, Scan::Null)
    }
}

/// Checks any value strictly, building no tree, and tells what it is ([`Scan`]).
pub(crate) struct Scanner<'b>(pub(crate) Checker<'b>);

impl<'de> DeserializeSeed<'de> for Scanner<'_> {
    type Value = Scan<'de>;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Scan<'de>, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Scanner<'_> {
    type Value = Scan<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Scan<'de>, E> {
        Ok(Scan::Null)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Scan<'de>, E> {
        Ok(Scan::Bool)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scan<'de>, E> {
        Ok(Scan::Number(v.into()))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scan<'de>, E> {
        Ok(Scan::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(mut self, v: f64) -> Result<Scan<'de>, E> {
        match serde_json::Number::from_f64(v) {
            Some(n) => Ok(Scan::Number(n)),
            None => Err(self.0.fail(JsonErrorKind::NumberOutOfRange)),
        }
    }

    fn visit_borrowed_str<E: de::Error>(mut self, v: &'de str) -> Result<Scan<'de>, E> {
        self.0.string(v)?;
        Ok(Scan::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(mut self, v: &str) -> Result<Scan<'de>, E> {
        self.0.string(v)?;
        Ok(Scan::Str(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E: de::Error>(mut self, v: String) -> Result<Scan<'de>, E> {
        self.0.string(&v)?;
        Ok(Scan::Str(Cow::Owned(v)))
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<Scan<'de>, A::Error> {
        let mut inner = self.0.nested()?;
        let mut all_strings = true;
        while let Some(item) = seq.next_element_seed(Scanner(inner.member()))? {
            all_strings &= matches!(item, Scan::Str(_));
        }
        Ok(Scan::Array { all_strings })
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Scan<'de>, A::Error> {
        let mut inner = self.0.nested()?;
        let mut keys = Keys::default();
        let mut non_string: Option<Cow<'de, str>> = None;
        while let Some(key) = inner.next_key(&mut map, &mut keys)? {
            let value = map.next_value_seed(Scanner(inner.member()))?;
            if !matches!(value, Scan::Str(_)) && non_string.as_ref().is_none_or(|k| key < *k) {
                non_string = Some(key);
            }
        }
        Ok(Scan::Object { non_string })
    }
}

/// Implements the scalar and array visits of a [`Visitor`] whose `self.0` is a
/// [`Checker`] by scanning the value with [`Scanner`] and mapping the scan with `$map`
/// (for visitors that only look into objects).
macro_rules! scan_others {
    ($map:expr) => {
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            $crate::json::Scanner(self.0).visit_unit().map($map)
        }
        fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Self::Value, E> {
            $crate::json::Scanner(self.0).visit_bool(v).map($map)
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
            $crate::json::Scanner(self.0).visit_u64(v).map($map)
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
            $crate::json::Scanner(self.0).visit_i64(v).map($map)
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
            $crate::json::Scanner(self.0).visit_f64(v).map($map)
        }
        fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
            $crate::json::Scanner(self.0)
                .visit_borrowed_str(v)
                .map($map)
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            $crate::json::Scanner(self.0).visit_str(v).map($map)
        }
        fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Self::Value, E> {
            $crate::json::Scanner(self.0).visit_string(v).map($map)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
            $crate::json::Scanner(self.0).visit_seq(seq).map($map)
        }
    };
}
pub(crate) use scan_others;

// ---------------------------------------------------------------------------------------------
// Canonical writing

/// Serialises `value` as canonical JSON (see the [module documentation](self)).
///
/// The value is written by serde_json and read back with the strict parser, which refuses
/// duplicate keys (from flattened structs, say); then written with sorted keys.
pub fn to_canonical_vec<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, JsonError> {
    let mut text = Vec::new();
    let mut serializer = serde_json::Serializer::with_formatter(&mut text, Checked);
    value.serialize(&mut serializer).map_err(|e| {
        JsonError::new(match e.classify() {
            // Writing to a `Vec` never fails: only `Checked` raises I/O errors.
            Category::Io => JsonErrorKind::NumberOutOfRange,
            // serde_json's serializer reports only map keys it cannot write as syntax errors.
            Category::Syntax => JsonErrorKind::KeyMustBeString,
            Category::Data | Category::Eof => JsonErrorKind::Serialize {
                message: e.to_string(),
            },
        })
    })?;
    let tree = parse_strict_with_limit(&text, usize::MAX).map_err(|e| JsonError::new(e.kind))?;
    value_to_canonical_vec(&tree)
}

/// serde_json's compact format, refusing 128-bit integers that the strict parser would read
/// back as floats (outside the range of `i64` and `u64`).
struct Checked;

fn out_of_range() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "number out of range")
}

impl serde_json::ser::Formatter for Checked {
    fn write_i128<W: ?Sized + io::Write>(&mut self, writer: &mut W, value: i128) -> io::Result<()> {
        match (i64::try_from(value), u64::try_from(value)) {
            (Ok(v), _) => self.write_i64(writer, v),
            (_, Ok(v)) => self.write_u64(writer, v),
            _ => Err(out_of_range()),
        }
    }

    fn write_u128<W: ?Sized + io::Write>(&mut self, writer: &mut W, value: u128) -> io::Result<()> {
        match u64::try_from(value) {
            Ok(v) => self.write_u64(writer, v),
            Err(_) => Err(out_of_range()),
        }
    }
}

/// Writes a JSON value as canonical JSON.
pub fn value_to_canonical_vec(value: &Value) -> Result<Vec<u8>, JsonError> {
    let mut out = Vec::new();
    write_value(value, &mut out, 0).map_err(JsonError::new)?;
    Ok(out)
}

/// Parses `bytes` strictly (see [`parse_strict`]) and writes the value back as canonical JSON.
///
/// Idempotent: canonicalising canonical JSON returns the same bytes.
pub fn canonicalize(bytes: &[u8]) -> Result<Vec<u8>, JsonError> {
    value_to_canonical_vec(&parse_strict(bytes)?)
}

/// Compares keys as sequences of UTF-16 code units (RFC 8785 §3.2.3).
fn utf16_cmp(a: &str, b: &str) -> Ordering {
    a.encode_utf16().cmp(b.encode_utf16())
}

fn write_value(value: &Value, out: &mut Vec<u8>, depth: usize) -> Result<(), JsonErrorKind> {
    match value {
        Value::Null | Value::Bool(_) | Value::Number(_) => write_json(value, out)?,
        Value::String(s) => write_string(s, out)?,
        Value::Array(items) => {
            let depth = enter(depth)?;
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, out, depth)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let depth = enter(depth)?;
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_by(|a, b| utf16_cmp(a.0, b.0));
            out.push(b'{');
            for (i, (key, item)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(key, out)?;
                out.push(b':');
                write_value(item, out, depth)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

fn enter(depth: usize) -> Result<usize, JsonErrorKind> {
    if depth >= MAX_DEPTH {
        Err(JsonErrorKind::TooDeep { max: MAX_DEPTH })
    } else {
        Ok(depth + 1)
    }
}

fn write_string(s: &str, out: &mut Vec<u8>) -> Result<(), JsonErrorKind> {
    check_str(s)?;
    write_json(s, out)
}

fn write_json<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), JsonErrorKind> {
    serde_json::to_writer(out, value).map_err(|e| JsonErrorKind::Serialize {
        message: e.to_string(),
    })
}
