//! Canonical JSON for documents ocikit writes, and strict (I-JSON) parsing for documents it
//! reads.
//!
//! # Canonical form
//!
//! [`to_canonical_vec`], [`value_to_canonical_vec`] and [`canonicalize`] write JSON with
//!
//! - object members sorted by their keys compared as sequences of **UTF-16 code units**, the
//!   order RFC 8785 (JCS) uses. It differs from UTF-8 byte (code point) order only when a
//!   character above the Basic Multilingual Plane is compared with one in `U+E000..=U+FFFF`;
//!   sorting is done explicitly while writing, so it does not depend on whether serde_json's
//!   `preserve_order` feature is enabled;
//! - no insignificant whitespace;
//! - strings escaped by serde_json, which escapes exactly what RFC 8785 escapes (`"`, `\`, and
//!   control characters, as `\b \t \n \f \r` or lowercase `\u00xx`) and writes everything
//!   else, including `/` and non-ASCII, as is;
//! - integers written in decimal, and other numbers in serde_json's shortest round-trip form
//!   (`1.5`, `100.0`, `1e+100`). This differs from RFC 8785 for non-integers, which the OCI
//!   formats do not use, so for documents whose numbers are integers of magnitude at most
//!   2^53 the output is RFC 8785 canonical JSON.
//!
//! Non-finite floats, keys that do not serialise to strings, duplicate keys, strings
//! containing U+0000 or a Unicode noncharacter, and nesting deeper than [`MAX_DEPTH`] are
//! rejected, so canonical output always parses again with [`parse_strict`], to an equal value,
//! and canonicalising it again gives the same bytes: same value, same bytes, same digest.
//!
//! # Strict parsing
//!
//! [`parse_strict`] and [`from_slice_strict`] accept exactly one JSON value (RFC 8259) that
//! also follows the I-JSON rules (RFC 7493) and ocikit's limits. They reject documents
//! larger than [`MAX_DOCUMENT_SIZE`] (the `_with_limit` variants take another limit),
//! invalid UTF-8, escaped lone surrogates (`"\ud800"`), U+0000 and Unicode noncharacters in
//! strings and keys, duplicate object keys at any depth (serde_json on its own keeps the last
//! one, a parser-differential risk), nesting deeper than [`MAX_DEPTH`], and anything after
//! the value but whitespace. Numbers are correctly rounded (serde_json's default float
//! parser is not, so parsed floats are re-read from their text).
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

use std::cmp::Ordering;
use std::fmt;

use serde::Serialize;
use serde::de::{self, DeserializeOwned, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::ser::{self, Impossible};
use serde_json::{Map, Number, Value};

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
    /// A NaN or infinite float was to be written; JSON cannot express it.
    #[error("non-finite number cannot be written as JSON")]
    NonFiniteNumber,
    /// A number in the document is too large for `f64` once correctly rounded (serde_json
    /// reports most such numbers as [`JsonErrorKind::Syntax`]), or a 128-bit integer outside
    /// the range of `i64` and `u64` was to be written.
    #[error("number out of range")]
    NumberOutOfRange,
    /// A map key does not serialise to a string (or an integer, written as a string).
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
    if bytes.len() > max_size {
        return Err(JsonError::new(JsonErrorKind::TooLarge {
            max: max_size,
            actual: bytes.len(),
        }));
    }
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            let offset = e.valid_up_to();
            return Err(JsonError::at(
                JsonErrorKind::InvalidUtf8 { offset },
                Some(position_of(bytes, offset)),
            ));
        }
    };
    let numbers = scan(text).map_err(|offset| {
        JsonError::at(
            JsonErrorKind::LoneSurrogate { offset },
            Some(position_of(bytes, offset)),
        )
    })?;
    let mut ctx = Ctx {
        text,
        numbers,
        next_number: 0,
        error: None,
    };
    let mut de = serde_json::Deserializer::from_str(text);
    let value = Seed {
        ctx: &mut ctx,
        depth: 0,
    }
    .deserialize(&mut de);
    let value = match value {
        Ok(value) => value,
        Err(e) => {
            let position = serde_position(&e);
            return Err(match ctx.error.take() {
                Some(kind) => JsonError::at(kind, position),
                None => classify(&e),
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

fn classify(e: &serde_json::Error) -> JsonError {
    let (line, column) = (e.line(), e.column());
    let kind = match e.classify() {
        serde_json::error::Category::Eof => JsonErrorKind::Eof { line, column },
        serde_json::error::Category::Data => JsonErrorKind::Type {
            message: e.to_string(),
        },
        serde_json::error::Category::Syntax | serde_json::error::Category::Io => {
            JsonErrorKind::Syntax { line, column }
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

/// One pass over the text that finds escaped lone surrogates (returning the byte offset of
/// the first) and records, in document order, the byte ranges of the number tokens serde_json
/// reads as floats, so they can be re-read exactly. Strings are skipped exactly, and numbers
/// follow the RFC 8259 grammar as serde_json does, so up to the point where serde_json stops
/// reading an invalid document, the tokens are the ones it visits.
fn scan(text: &str) -> Result<Vec<(usize, usize)>, usize> {
    let bytes = text.as_bytes();
    let mut numbers = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                i += 1;
                while i < bytes.len() {
                    match bytes[i] {
                        b'"' => break,
                        b'\\' => {
                            if bytes.get(i + 1) == Some(&b'u') {
                                match hex4(bytes, i + 2) {
                                    Some(0xD800..=0xDBFF) => {
                                        let low_ok = bytes.get(i + 6) == Some(&b'\\')
                                            && bytes.get(i + 7) == Some(&b'u')
                                            && matches!(hex4(bytes, i + 8), Some(0xDC00..=0xDFFF));
                                        if !low_ok {
                                            return Err(i);
                                        }
                                        i += 12;
                                    }
                                    Some(0xDC00..=0xDFFF) => return Err(i),
                                    _ => i += 2,
                                }
                            } else {
                                i += 2;
                            }
                        }
                        _ => i += 1,
                    }
                }
                i += 1; // the closing quote
            }
            b'-' | b'0'..=b'9' => {
                // Exactly the RFC 8259 number grammar, as serde_json reads it, so that on a
                // document serde_json stops reading mid-way the tokens so far still match.
                let start = i;
                let digits = |mut i: usize| {
                    while i < bytes.len() && bytes[i].is_ascii_digit() {
                        i += 1;
                    }
                    i
                };
                if bytes[i] == b'-' {
                    i += 1;
                }
                if bytes.get(i) == Some(&b'0') {
                    i += 1;
                } else {
                    i = digits(i);
                }
                if bytes.get(i) == Some(&b'.') && bytes.get(i + 1).is_some_and(u8::is_ascii_digit) {
                    i = digits(i + 1);
                }
                if matches!(bytes.get(i), Some(b'e' | b'E')) {
                    let mut j = i + 1;
                    if matches!(bytes.get(j), Some(b'+' | b'-')) {
                        j += 1;
                    }
                    if bytes.get(j).is_some_and(u8::is_ascii_digit) {
                        i = digits(j);
                    }
                }
                if i == start {
                    i += 1;
                }
                if read_as_float(&text[start..i]) {
                    numbers.push((start, i));
                }
            }
            _ => i += 1,
        }
    }
    Ok(numbers)
}

/// Whether serde_json hands this number token to the visitor as an `f64` (rather than a
/// `u64` or `i64`): it has a fraction or exponent, is `-0`, or overflows the integer types.
fn read_as_float(token: &str) -> bool {
    if token.contains(['.', 'e', 'E']) || token == "-0" {
        return true;
    }
    if token.starts_with('-') {
        token.parse::<i64>().is_err()
    } else {
        token.parse::<u64>().is_err()
    }
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

/// Whether a correctly rounded float and serde_json's approximation of the same text agree
/// up to serde_json's error (a few units in the last place; more near the subnormal range).
fn near(exact: f64, approximate: f64) -> bool {
    let difference = (exact - approximate).abs();
    difference <= exact.abs().max(approximate.abs()) * 1e-9 || difference <= 1e-300
}

struct Ctx<'t> {
    text: &'t str,
    numbers: Vec<(usize, usize)>,
    next_number: usize,
    error: Option<JsonErrorKind>,
}

impl Ctx<'_> {
    fn fail<E: de::Error>(&mut self, kind: JsonErrorKind) -> E {
        self.error = Some(kind);
        E::custom("strict JSON rule violated")
    }

    /// The text of the next number token serde_json reads as a float, in document order.
    fn next_float_text(&mut self) -> Option<&str> {
        let (start, end) = *self.numbers.get(self.next_number)?;
        self.next_number += 1;
        self.text.get(start..end)
    }
}

struct Seed<'c, 't> {
    ctx: &'c mut Ctx<'t>,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for Seed<'_, '_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seed<'_, '_> {
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
        Ok(Value::Number(v.into()))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, approximate: f64) -> Result<Value, E> {
        // serde_json's default float parser is not correctly rounded; std's is.
        let exact = self
            .ctx
            .next_float_text()
            .and_then(|t| t.parse::<f64>().ok());
        let value = match exact {
            Some(exact) if !exact.is_finite() => {
                return Err(self.ctx.fail(JsonErrorKind::NumberOutOfRange));
            }
            Some(exact) => {
                let close = near(exact, approximate);
                debug_assert!(close, "number tokens out of step: {exact} vs {approximate}");
                if close { exact } else { approximate }
            }
            None => {
                debug_assert!(exact.is_some(), "no number token for {approximate}");
                approximate
            }
        };
        match Number::from_f64(value) {
            Some(n) => Ok(Value::Number(n)),
            None => Err(self.ctx.fail(JsonErrorKind::NumberOutOfRange)),
        }
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        match check_str(v) {
            Ok(()) => Ok(Value::String(v.to_owned())),
            Err(kind) => Err(self.ctx.fail(kind)),
        }
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        match check_str(&v) {
            Ok(()) => Ok(Value::String(v)),
            Err(kind) => Err(self.ctx.fail(kind)),
        }
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let depth = self.depth + 1;
        let ctx = self.ctx;
        if depth > MAX_DEPTH {
            return Err(ctx.fail(JsonErrorKind::TooDeep { max: MAX_DEPTH }));
        }
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(Seed {
            ctx: &mut *ctx,
            depth,
        })? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let depth = self.depth + 1;
        let ctx = self.ctx;
        if depth > MAX_DEPTH {
            return Err(ctx.fail(JsonErrorKind::TooDeep { max: MAX_DEPTH }));
        }
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if let Err(kind) = check_str(&key) {
                return Err(ctx.fail(kind));
            }
            if object.contains_key(&key) {
                return Err(ctx.fail(JsonErrorKind::DuplicateKey { key }));
            }
            let value = map.next_value_seed(Seed {
                ctx: &mut *ctx,
                depth,
            })?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

// ---------------------------------------------------------------------------------------------
// Canonical writing

/// Serialises `value` as canonical JSON (see the [module documentation](self)).
///
/// The value is first turned into a tree, rejecting non-finite floats, duplicate keys (from
/// flattened structs, say) and keys that are not strings; then written with sorted keys.
pub fn to_canonical_vec<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, JsonError> {
    let tree = value
        .serialize(ValueSerializer)
        .map_err(|e| JsonError::new(e.0))?;
    value_to_canonical_vec(&tree)
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
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => {
            if n.as_f64().is_some_and(|f| !f.is_finite()) {
                return Err(JsonErrorKind::NonFiniteNumber);
            }
            write_json(n, out)?;
        }
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

// ---------------------------------------------------------------------------------------------
// A serde serializer that builds a `Value`, stricter than `serde_json::to_value` (which turns
// NaN into `null` and lets a later duplicate key overwrite an earlier one).

#[derive(Debug)]
struct SerError(JsonErrorKind);

impl fmt::Display for SerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for SerError {}

impl ser::Error for SerError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        SerError(JsonErrorKind::Serialize {
            message: msg.to_string(),
        })
    }
}

/// Struct names serde_json uses for `Number` (with `arbitrary_precision`) and `RawValue`.
const SERDE_JSON_NUMBER_TOKEN: &str = "$serde_json::private::Number";
const SERDE_JSON_RAW_TOKEN: &str = "$serde_json::private::RawValue";

struct ValueSerializer;

fn float(v: f64) -> Result<Value, SerError> {
    Number::from_f64(v)
        .map(Value::Number)
        .ok_or(SerError(JsonErrorKind::NonFiniteNumber))
}

impl ser::Serializer for ValueSerializer {
    type Ok = Value;
    type Error = SerError;
    type SerializeSeq = SeqBuilder;
    type SerializeTuple = SeqBuilder;
    type SerializeTupleStruct = SeqBuilder;
    type SerializeTupleVariant = SeqBuilder;
    type SerializeMap = MapBuilder;
    type SerializeStruct = MapBuilder;
    type SerializeStructVariant = MapBuilder;

    fn serialize_bool(self, v: bool) -> Result<Value, SerError> {
        Ok(Value::Bool(v))
    }
    fn serialize_i8(self, v: i8) -> Result<Value, SerError> {
        Ok(Value::from(v))
    }
    fn serialize_i16(self, v: i16) -> Result<Value, SerError> {
        Ok(Value::from(v))
    }
    fn serialize_i32(self, v: i32) -> Result<Value, SerError> {
        Ok(Value::from(v))
    }
    fn serialize_i64(self, v: i64) -> Result<Value, SerError> {
        Ok(Value::from(v))
    }
    fn serialize_i128(self, v: i128) -> Result<Value, SerError> {
        if let Ok(v) = i64::try_from(v) {
            Ok(Value::from(v))
        } else if let Ok(v) = u64::try_from(v) {
            Ok(Value::from(v))
        } else {
            Err(SerError(JsonErrorKind::NumberOutOfRange))
        }
    }
    fn serialize_u8(self, v: u8) -> Result<Value, SerError> {
        Ok(Value::from(v))
    }
    fn serialize_u16(self, v: u16) -> Result<Value, SerError> {
        Ok(Value::from(v))
    }
    fn serialize_u32(self, v: u32) -> Result<Value, SerError> {
        Ok(Value::from(v))
    }
    fn serialize_u64(self, v: u64) -> Result<Value, SerError> {
        Ok(Value::from(v))
    }
    fn serialize_u128(self, v: u128) -> Result<Value, SerError> {
        u64::try_from(v)
            .map(Value::from)
            .map_err(|_| SerError(JsonErrorKind::NumberOutOfRange))
    }
    fn serialize_f32(self, v: f32) -> Result<Value, SerError> {
        float(f64::from(v))
    }
    fn serialize_f64(self, v: f64) -> Result<Value, SerError> {
        float(v)
    }
    fn serialize_char(self, v: char) -> Result<Value, SerError> {
        Ok(Value::String(v.to_string()))
    }
    fn serialize_str(self, v: &str) -> Result<Value, SerError> {
        Ok(Value::String(v.to_owned()))
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<Value, SerError> {
        Ok(Value::Array(v.iter().map(|&b| Value::from(b)).collect()))
    }
    fn serialize_none(self) -> Result<Value, SerError> {
        Ok(Value::Null)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<Value, SerError> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<Value, SerError> {
        Ok(Value::Null)
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<Value, SerError> {
        Ok(Value::Null)
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<Value, SerError> {
        Ok(Value::String(variant.to_owned()))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<Value, SerError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<Value, SerError> {
        let mut map = Map::new();
        map.insert(variant.to_owned(), value.serialize(self)?);
        Ok(Value::Object(map))
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<SeqBuilder, SerError> {
        Ok(SeqBuilder {
            variant: None,
            items: Vec::new(),
        })
    }
    fn serialize_tuple(self, len: usize) -> Result<SeqBuilder, SerError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        len: usize,
    ) -> Result<SeqBuilder, SerError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<SeqBuilder, SerError> {
        Ok(SeqBuilder {
            variant: Some(variant),
            items: Vec::new(),
        })
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<MapBuilder, SerError> {
        Ok(MapBuilder::new(None, Token::None))
    }
    fn serialize_struct(self, name: &'static str, _len: usize) -> Result<MapBuilder, SerError> {
        let token = match name {
            SERDE_JSON_NUMBER_TOKEN => Token::Number,
            SERDE_JSON_RAW_TOKEN => Token::Raw,
            _ => Token::None,
        };
        Ok(MapBuilder::new(None, token))
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<MapBuilder, SerError> {
        Ok(MapBuilder::new(Some(variant), Token::None))
    }
}

struct SeqBuilder {
    variant: Option<&'static str>,
    items: Vec<Value>,
}

impl SeqBuilder {
    fn push<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), SerError> {
        self.items.push(value.serialize(ValueSerializer)?);
        Ok(())
    }

    fn finish(self) -> Value {
        let array = Value::Array(self.items);
        match self.variant {
            Some(variant) => {
                let mut map = Map::new();
                map.insert(variant.to_owned(), array);
                Value::Object(map)
            }
            None => array,
        }
    }
}

impl ser::SerializeSeq for SeqBuilder {
    type Ok = Value;
    type Error = SerError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), SerError> {
        self.push(value)
    }
    fn end(self) -> Result<Value, SerError> {
        Ok(self.finish())
    }
}

impl ser::SerializeTuple for SeqBuilder {
    type Ok = Value;
    type Error = SerError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), SerError> {
        self.push(value)
    }
    fn end(self) -> Result<Value, SerError> {
        Ok(self.finish())
    }
}

impl ser::SerializeTupleStruct for SeqBuilder {
    type Ok = Value;
    type Error = SerError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), SerError> {
        self.push(value)
    }
    fn end(self) -> Result<Value, SerError> {
        Ok(self.finish())
    }
}

impl ser::SerializeTupleVariant for SeqBuilder {
    type Ok = Value;
    type Error = SerError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), SerError> {
        self.push(value)
    }
    fn end(self) -> Result<Value, SerError> {
        Ok(self.finish())
    }
}

/// serde_json's private struct tokens, whose single field holds JSON text.
enum Token {
    None,
    Number,
    Raw,
}

struct MapBuilder {
    variant: Option<&'static str>,
    token: Token,
    map: Map<String, Value>,
    next_key: Option<String>,
}

impl MapBuilder {
    fn new(variant: Option<&'static str>, token: Token) -> MapBuilder {
        MapBuilder {
            variant,
            token,
            map: Map::new(),
            next_key: None,
        }
    }

    fn insert(&mut self, key: String, value: Value) -> Result<(), SerError> {
        if self.map.contains_key(&key) {
            return Err(SerError(JsonErrorKind::DuplicateKey { key }));
        }
        self.map.insert(key, value);
        Ok(())
    }

    fn finish(self) -> Result<Value, SerError> {
        match self.token {
            Token::None => {}
            Token::Number | Token::Raw => {
                // The single field is the JSON text of the number or raw value.
                let text = match self.map.into_iter().next() {
                    Some((_, Value::String(text))) => text,
                    _ => {
                        return Err(SerError(JsonErrorKind::Serialize {
                            message: "malformed serde_json private token".into(),
                        }));
                    }
                };
                return parse_strict(text.as_bytes()).map_err(|e| SerError(e.kind));
            }
        }
        let object = Value::Object(self.map);
        Ok(match self.variant {
            Some(variant) => {
                let mut map = Map::new();
                map.insert(variant.to_owned(), object);
                Value::Object(map)
            }
            None => object,
        })
    }
}

impl ser::SerializeMap for MapBuilder {
    type Ok = Value;
    type Error = SerError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), SerError> {
        self.next_key = Some(key.serialize(KeySerializer)?);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), SerError> {
        let key = self.next_key.take().ok_or_else(|| {
            SerError(JsonErrorKind::Serialize {
                message: "map value serialised before its key".into(),
            })
        })?;
        let value = value.serialize(ValueSerializer)?;
        self.insert(key, value)
    }
    fn end(self) -> Result<Value, SerError> {
        self.finish()
    }
}

impl ser::SerializeStruct for MapBuilder {
    type Ok = Value;
    type Error = SerError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), SerError> {
        let value = value.serialize(ValueSerializer)?;
        self.insert(key.to_owned(), value)
    }
    fn end(self) -> Result<Value, SerError> {
        self.finish()
    }
}

impl ser::SerializeStructVariant for MapBuilder {
    type Ok = Value;
    type Error = SerError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), SerError> {
        let value = value.serialize(ValueSerializer)?;
        self.insert(key.to_owned(), value)
    }
    fn end(self) -> Result<Value, SerError> {
        self.finish()
    }
}

/// Serialises map keys: strings, characters, integers (as their decimal text, as serde_json
/// does), unit variants and newtypes around those.
struct KeySerializer;

fn key_error() -> SerError {
    SerError(JsonErrorKind::KeyMustBeString)
}

impl ser::Serializer for KeySerializer {
    type Ok = String;
    type Error = SerError;
    type SerializeSeq = Impossible<String, SerError>;
    type SerializeTuple = Impossible<String, SerError>;
    type SerializeTupleStruct = Impossible<String, SerError>;
    type SerializeTupleVariant = Impossible<String, SerError>;
    type SerializeMap = Impossible<String, SerError>;
    type SerializeStruct = Impossible<String, SerError>;
    type SerializeStructVariant = Impossible<String, SerError>;

    fn serialize_bool(self, _v: bool) -> Result<String, SerError> {
        Err(key_error())
    }
    fn serialize_i8(self, v: i8) -> Result<String, SerError> {
        Ok(v.to_string())
    }
    fn serialize_i16(self, v: i16) -> Result<String, SerError> {
        Ok(v.to_string())
    }
    fn serialize_i32(self, v: i32) -> Result<String, SerError> {
        Ok(v.to_string())
    }
    fn serialize_i64(self, v: i64) -> Result<String, SerError> {
        Ok(v.to_string())
    }
    fn serialize_i128(self, v: i128) -> Result<String, SerError> {
        Ok(v.to_string())
    }
    fn serialize_u8(self, v: u8) -> Result<String, SerError> {
        Ok(v.to_string())
    }
    fn serialize_u16(self, v: u16) -> Result<String, SerError> {
        Ok(v.to_string())
    }
    fn serialize_u32(self, v: u32) -> Result<String, SerError> {
        Ok(v.to_string())
    }
    fn serialize_u64(self, v: u64) -> Result<String, SerError> {
        Ok(v.to_string())
    }
    fn serialize_u128(self, v: u128) -> Result<String, SerError> {
        Ok(v.to_string())
    }
    fn serialize_f32(self, _v: f32) -> Result<String, SerError> {
        Err(key_error())
    }
    fn serialize_f64(self, _v: f64) -> Result<String, SerError> {
        Err(key_error())
    }
    fn serialize_char(self, v: char) -> Result<String, SerError> {
        Ok(v.to_string())
    }
    fn serialize_str(self, v: &str) -> Result<String, SerError> {
        Ok(v.to_owned())
    }
    fn serialize_bytes(self, _v: &[u8]) -> Result<String, SerError> {
        Err(key_error())
    }
    fn serialize_none(self) -> Result<String, SerError> {
        Err(key_error())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _value: &T) -> Result<String, SerError> {
        Err(key_error())
    }
    fn serialize_unit(self) -> Result<String, SerError> {
        Err(key_error())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<String, SerError> {
        Err(key_error())
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<String, SerError> {
        Ok(variant.to_owned())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<String, SerError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _value: &T,
    ) -> Result<String, SerError> {
        Err(key_error())
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Self::SerializeSeq, SerError> {
        Err(key_error())
    }
    fn serialize_tuple(self, _len: usize) -> Result<Self::SerializeTuple, SerError> {
        Err(key_error())
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleStruct, SerError> {
        Err(key_error())
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleVariant, SerError> {
        Err(key_error())
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Self::SerializeMap, SerError> {
        Err(key_error())
    }
    fn serialize_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStruct, SerError> {
        Err(key_error())
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStructVariant, SerError> {
        Err(key_error())
    }
}
