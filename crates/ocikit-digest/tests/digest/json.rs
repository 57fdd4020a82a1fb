//! Canonical JSON writing and strict (I-JSON) parsing.

use std::collections::{BTreeMap, HashMap};

use ocikit_digest::json::{
    self, JsonErrorKind, MAX_DEPTH, MAX_DOCUMENT_SIZE, canonicalize, from_slice_strict,
    parse_strict, parse_strict_with_limit, to_canonical_vec, value_to_canonical_vec,
};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

fn kind(bytes: &[u8]) -> JsonErrorKind {
    parse_strict(bytes)
        .expect_err(&String::from_utf8_lossy(bytes))
        .kind()
        .clone()
}

fn canon_str(bytes: &[u8]) -> String {
    String::from_utf8(canonicalize(bytes).unwrap()).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Canonical writing

#[test]
fn canonical_sorts_keys_and_drops_whitespace() {
    assert_eq!(
        canon_str(br#" { "b" : [ 1 , { "z": null, "y": true } ], "a": "x", "": false } "#),
        r#"{"":false,"a":"x","b":[1,{"y":true,"z":null}]}"#
    );
    assert_eq!(canon_str(b"[]"), "[]");
    assert_eq!(canon_str(b"{}"), "{}");
    assert_eq!(canon_str(b" \"s\" "), "\"s\"");
    assert_eq!(canon_str(b"\n\t42\r\n"), "42");
}

#[test]
fn canonical_key_order_is_utf16_code_units() {
    // U+10000 is D800 DC00 in UTF-16, which sorts before U+E000; in UTF-8 (and code point)
    // order it would sort after.
    let doc = "{\"\u{E000}\":1,\"\u{10000}\":2,\"a\":3,\"\u{7f}\":4,\"\u{e9}\":5}";
    assert_eq!(
        canon_str(doc.as_bytes()),
        "{\"a\":3,\"\u{7f}\":4,\"\u{e9}\":5,\"\u{10000}\":2,\"\u{E000}\":1}"
    );
    // Prefixes sort first.
    assert_eq!(
        canon_str(br#"{"ab":1,"a":2,"b":3}"#),
        r#"{"a":2,"ab":1,"b":3}"#
    );
}

#[test]
fn canonical_string_escapes_are_minimal() {
    let doc = br#"["\u0001\u001f\b\f\n\r\t\"\\\/", "\u007f\u2028\u00e9\ud83d\ude00"]"#;
    assert_eq!(
        canon_str(doc),
        "[\"\\u0001\\u001f\\b\\f\\n\\r\\t\\\"\\\\/\",\"\u{7f}\u{2028}\u{e9}\u{1F600}\"]"
    );
}

#[test]
fn canonical_numbers() {
    assert_eq!(
        canon_str(b"[0, -0, 1.5, 100.0, 1e2, 1E+2, -7, 1e100, 0.1]"),
        { "[0,-0.0,1.5,100.0,100.0,100.0,-7,1e+100,0.1]" }
    );
    assert_eq!(
        canon_str(b"[18446744073709551615, -9223372036854775808, 9223372036854775807]"),
        "[18446744073709551615,-9223372036854775808,9223372036854775807]"
    );
    // Beyond u64: read as a float.
    assert_eq!(canon_str(b"18446744073709551616"), "1.8446744073709552e+19");
}

// serde_json's default float parser is not correctly rounded; the strict parser re-reads
// floats exactly, so canonicalisation is a fixed point and values survive.
#[test]
fn floats_are_parsed_exactly_and_canonical_floats_are_stable() {
    let exact: f64 = "1.947700395895162e-169".parse().unwrap();
    let value = parse_strict(b"1.947700395895162e-169").unwrap();
    assert_eq!(value.as_f64(), Some(exact));
    for i in 0..20_000u32 {
        let f = f64::from(i) / 1000.0 + 0.1;
        let text = serde_json::to_string(&f).unwrap();
        let parsed = parse_strict(text.as_bytes()).unwrap();
        assert_eq!(parsed.as_f64(), Some(f), "{text}");
        let canonical = canonicalize(text.as_bytes()).unwrap();
        assert_eq!(canonical, text.as_bytes());
        assert_eq!(canonicalize(&canonical).unwrap(), canonical);
    }
}

#[test]
fn escape_equivalent_keys_sort_by_their_decoded_text() {
    assert_eq!(canon_str(br#"{"\u0062":1,"a":2}"#), r#"{"a":2,"b":1}"#);
}

#[test]
fn to_canonical_vec_sorts_struct_fields_and_maps() {
    #[derive(Serialize)]
    struct Doc {
        zeta: u8,
        alpha: Vec<&'static str>,
        #[serde(rename = "mediaType")]
        media_type: &'static str,
        map: HashMap<String, i32>,
        none: Option<u8>,
        #[serde(skip_serializing_if = "Option::is_none")]
        skipped: Option<u8>,
    }
    let mut map = HashMap::new();
    for (i, k) in ["d", "c", "b", "a", "e", "f", "g"].iter().enumerate() {
        map.insert((*k).to_owned(), i as i32);
    }
    let doc = Doc {
        zeta: 1,
        alpha: vec!["x", "y"],
        media_type: "m",
        map,
        none: None,
        skipped: None,
    };
    let out = String::from_utf8(to_canonical_vec(&doc).unwrap()).unwrap();
    assert_eq!(
        out,
        r#"{"alpha":["x","y"],"map":{"a":3,"b":2,"c":1,"d":0,"e":4,"f":5,"g":6},"mediaType":"m","none":null,"zeta":1}"#
    );
}

#[test]
fn to_canonical_vec_handles_enums_bytes_and_integer_keys() {
    #[derive(Serialize)]
    enum E {
        Unit,
        New(u8),
        Tuple(u8, u8),
        Struct { b: u8, a: u8 },
    }
    let out =
        to_canonical_vec(&(E::Unit, E::New(1), E::Tuple(1, 2), E::Struct { b: 2, a: 1 })).unwrap();
    assert_eq!(
        out,
        br#"["Unit",{"New":1},{"Tuple":[1,2]},{"Struct":{"a":1,"b":2}}]"#
    );

    let mut keys = BTreeMap::new();
    keys.insert(10u32, "ten");
    keys.insert(9u32, "nine");
    // Integer keys become strings and sort as strings.
    assert_eq!(
        to_canonical_vec(&keys).unwrap(),
        br#"{"10":"ten","9":"nine"}"#
    );
    assert_eq!(to_canonical_vec(&'c').unwrap(), br#""c""#);
    assert_eq!(to_canonical_vec(&()).unwrap(), b"null");
    assert_eq!(
        to_canonical_vec(&u128::from(u64::MAX)).unwrap(),
        b"18446744073709551615"
    );
    assert_eq!(
        to_canonical_vec(&i128::from(i64::MIN)).unwrap(),
        b"-9223372036854775808"
    );
}

// Non-finite floats are written as `null`, as serde_json writes them: never as `NaN` or
// `Infinity`, which are not JSON, so the output is still canonical and parses strictly.
#[test]
fn to_canonical_vec_writes_non_finite_floats_as_null() {
    #[derive(Serialize)]
    struct S {
        inner: Vec<f64>,
    }
    for f in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        assert_eq!(to_canonical_vec(&f).unwrap(), b"null");
        let out = to_canonical_vec(&S {
            inner: vec![1.0, f],
        })
        .unwrap();
        assert_eq!(out, br#"{"inner":[1.0,null]}"#);
        assert_eq!(canonicalize(&out).unwrap(), out);
    }
    assert_eq!(to_canonical_vec(&f32::NAN).unwrap(), b"null");
    assert_eq!(to_canonical_vec(&1.5f64).unwrap(), b"1.5");
}

#[test]
fn to_canonical_vec_rejects_duplicate_keys_from_flatten() {
    #[derive(Serialize)]
    struct Inner {
        a: u8,
    }
    #[derive(Serialize)]
    struct Outer {
        a: u8,
        #[serde(flatten)]
        inner: Inner,
    }
    let err = to_canonical_vec(&Outer {
        a: 1,
        inner: Inner { a: 2 },
    })
    .unwrap_err();
    assert_eq!(err.kind(), &JsonErrorKind::DuplicateKey { key: "a".into() });
}

#[test]
fn to_canonical_vec_rejects_bad_keys_and_huge_integers() {
    let mut map = BTreeMap::new();
    map.insert((1, 2), 3);
    assert_eq!(
        to_canonical_vec(&map).unwrap_err().kind(),
        &JsonErrorKind::KeyMustBeString
    );
    let mut map = BTreeMap::new();
    map.insert(None::<&str>, 3);
    assert_eq!(
        to_canonical_vec(&map).unwrap_err().kind(),
        &JsonErrorKind::KeyMustBeString
    );
    let mut map = BTreeMap::new();
    map.insert(vec![1u8], 3);
    assert_eq!(
        to_canonical_vec(&map).unwrap_err().kind(),
        &JsonErrorKind::KeyMustBeString
    );
    // Keys serde_json writes as strings are written, then sorted as strings.
    let mut map = BTreeMap::new();
    map.insert(Some("b"), 1);
    map.insert(Some("a"), 2);
    assert_eq!(to_canonical_vec(&map).unwrap(), br#"{"a":2,"b":1}"#);
    // A 128-bit integer that fits is written exactly; one that does not is refused, not
    // turned into a float.
    assert_eq!(
        to_canonical_vec(&i128::from(u64::MAX)).unwrap(),
        b"18446744073709551615"
    );
    assert_eq!(
        to_canonical_vec(&(u128::from(u64::MAX) + 1))
            .unwrap_err()
            .kind(),
        &JsonErrorKind::NumberOutOfRange
    );
    assert_eq!(
        to_canonical_vec(&u128::MAX).unwrap_err().kind(),
        &JsonErrorKind::NumberOutOfRange
    );
    assert_eq!(
        to_canonical_vec(&i128::MIN).unwrap_err().kind(),
        &JsonErrorKind::NumberOutOfRange
    );
}

#[test]
fn canonical_writer_rejects_what_strict_parsing_would() {
    assert_eq!(
        to_canonical_vec("a\u{0}b").unwrap_err().kind(),
        &JsonErrorKind::ForbiddenCodePoint { code_point: 0 }
    );
    let mut map = BTreeMap::new();
    map.insert("\u{FFFF}", 1);
    assert_eq!(
        to_canonical_vec(&map).unwrap_err().kind(),
        &JsonErrorKind::ForbiddenCodePoint { code_point: 0xFFFF }
    );
    assert_eq!(
        value_to_canonical_vec(&nested_arrays(MAX_DEPTH + 1))
            .unwrap_err()
            .kind(),
        &JsonErrorKind::TooDeep { max: MAX_DEPTH }
    );
    let ok = value_to_canonical_vec(&nested_arrays(MAX_DEPTH)).unwrap();
    assert_eq!(parse_strict(&ok).unwrap(), nested_arrays(MAX_DEPTH));
}

fn nested_arrays(depth: usize) -> Value {
    let mut v = json!(1);
    for _ in 0..depth {
        v = Value::Array(vec![v]);
    }
    v
}

#[test]
fn canonical_output_of_same_value_is_identical_whatever_the_input_order() {
    let a = canonicalize(br#"{"b":{"y":1,"x":[true,null]},"a":0}"#).unwrap();
    let b = canonicalize(br#"{ "a" : 0 , "b" : { "x" : [ true , null ] , "y" : 1 } }"#).unwrap();
    assert_eq!(a, b);
    assert_eq!(
        ocikit_digest::Digest::sha256(&a),
        ocikit_digest::Digest::sha256(&b)
    );
}

// ---------------------------------------------------------------------------------------------
// Strict parsing

#[test]
fn parses_ordinary_documents() {
    let v = parse_strict(br#"{"a":[1,-2,3.5,"s",true,false,null,{}],"b":{"c":"\u00e9"}}"#).unwrap();
    assert_eq!(
        v,
        json!({"a": [1, -2, 3.5, "s", true, false, null, {}], "b": {"c": "é"}})
    );
    assert_eq!(parse_strict(b"  \"top\"  ").unwrap(), json!("top"));
    assert_eq!(parse_strict(b"{}\n").unwrap(), json!({}));
}

// SPEC A.11: duplicate object names MUST NOT appear (serde_json keeps the last silently).
#[test]
fn duplicate_keys_are_rejected_at_any_depth() {
    assert!(
        serde_json::from_slice::<Value>(br#"{"a":1,"a":2}"#).is_ok(),
        "premise"
    );
    assert_eq!(
        kind(br#"{"a":1,"a":2}"#),
        JsonErrorKind::DuplicateKey { key: "a".into() }
    );
    assert_eq!(
        kind(br#"{"a":1,"b":2,"a":1}"#),
        JsonErrorKind::DuplicateKey { key: "a".into() }
    );
    assert_eq!(
        kind(br#"[0, {"x": {"y": [ {"k": 1, "k": 1} ]}}]"#),
        JsonErrorKind::DuplicateKey { key: "k".into() }
    );
    // Same key after unescaping.
    assert_eq!(
        kind(br#"{"a":1,"\u0061":2}"#),
        JsonErrorKind::DuplicateKey { key: "a".into() }
    );
    assert_eq!(
        kind(br#"{"":1,"":2}"#),
        JsonErrorKind::DuplicateKey { key: "".into() }
    );
    // The same key in different objects is fine.
    assert!(parse_strict(br#"{"a":{"a":{"a":1}},"b":[{"a":1},{"a":2}]}"#).is_ok());
    // The error says where.
    let err = parse_strict(b"{\n\"a\":1,\n\"a\":2}").unwrap_err();
    assert_eq!(err.position().map(|p| p.line), Some(3));
}

// SPEC C-J05
#[test]
fn invalid_utf8_is_rejected() {
    assert_eq!(kind(b"\"\xff\""), JsonErrorKind::InvalidUtf8 { offset: 1 });
    assert_eq!(
        kind(b"{\"a\":\"\xc0\xaf\"}"),
        JsonErrorKind::InvalidUtf8 { offset: 6 }
    );
    // A UTF-8-encoded surrogate (CESU style).
    assert_eq!(
        kind(b"[\"\xed\xa0\x80\"]"),
        JsonErrorKind::InvalidUtf8 { offset: 2 }
    );
    assert_eq!(
        kind(b"\"ab\xe2\x82\""),
        JsonErrorKind::InvalidUtf8 { offset: 3 }
    );
}

// SPEC C-J05: serde_json already rejects escaped lone surrogates; we name them.
#[test]
fn lone_surrogates_are_rejected() {
    for doc in [
        r#""\ud800""#,
        r#""\udc00""#,
        r#""\ud800\u0041""#,
        r#""x\ud800y""#,
        r#""\uDBFF""#,
        r#""\ud800\ud800""#,
        r#""\udc00\ud800""#,
    ] {
        assert!(
            serde_json::from_str::<Value>(doc).is_err(),
            "serde_json accepts {doc}"
        );
        assert!(
            matches!(kind(doc.as_bytes()), JsonErrorKind::LoneSurrogate { .. }),
            "{doc}"
        );
    }
    assert_eq!(
        kind(br#"{"k":"ab\ud800"}"#),
        JsonErrorKind::LoneSurrogate { offset: 8 }
    );
    assert_eq!(
        kind(br#"{"\udfff":1}"#),
        JsonErrorKind::LoneSurrogate { offset: 2 }
    );
    // A valid pair is a character; an escaped backslash before "ud800" is not an escape.
    assert_eq!(
        parse_strict(br#""\ud83d\ude00""#).unwrap(),
        json!("\u{1F600}")
    );
    assert_eq!(parse_strict(br#""\\ud800""#).unwrap(), json!("\\ud800"));
    assert_eq!(
        parse_strict(br#"["\\", "\ud83d\ude00"]"#).unwrap(),
        json!(["\\", "😀"])
    );
}

// SPEC C-J05: NUL inside strings; I-JSON: noncharacters.
#[test]
fn nul_and_noncharacters_are_rejected() {
    assert_eq!(
        kind(br#""a\u0000b""#),
        JsonErrorKind::ForbiddenCodePoint { code_point: 0 }
    );
    assert_eq!(
        kind(br#"{"\u0000":1}"#),
        JsonErrorKind::ForbiddenCodePoint { code_point: 0 }
    );
    assert_eq!(
        kind(br#""\uffff""#),
        JsonErrorKind::ForbiddenCodePoint { code_point: 0xFFFF }
    );
    assert_eq!(
        kind(br#""\uFDD0""#),
        JsonErrorKind::ForbiddenCodePoint { code_point: 0xFDD0 }
    );
    assert_eq!(
        kind("\"\u{FFFE}\"".as_bytes()),
        JsonErrorKind::ForbiddenCodePoint { code_point: 0xFFFE }
    );
    assert_eq!(
        kind(br#""\ud83f\udfff""#),
        JsonErrorKind::ForbiddenCodePoint {
            code_point: 0x1FFFF
        }
    );
    // Raw control characters are a syntax error.
    assert!(matches!(kind(b"\"a\x00b\""), JsonErrorKind::Syntax { .. }));
    // Neighbours are fine.
    assert!(parse_strict("\"\u{FDCF}\u{FDF0}\u{FFFD}\u{10FFFD}\"".as_bytes()).is_ok());
    assert!(parse_strict(br#""\u0001""#).is_ok());
}

// SPEC C-J06
#[test]
fn nesting_is_limited() {
    let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
    assert!(parse_strict(ok.as_bytes()).is_ok());
    let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
    assert_eq!(
        kind(deep.as_bytes()),
        JsonErrorKind::TooDeep { max: MAX_DEPTH }
    );
    let objects = format!(
        "{}1{}",
        r#"{"a":"#.repeat(MAX_DEPTH + 1),
        "}".repeat(MAX_DEPTH + 1)
    );
    assert_eq!(
        kind(objects.as_bytes()),
        JsonErrorKind::TooDeep { max: MAX_DEPTH }
    );
    // 100,000 unclosed brackets: rejected without exhausting the stack.
    assert_eq!(
        kind("[".repeat(100_000).as_bytes()),
        JsonErrorKind::TooDeep { max: MAX_DEPTH }
    );
    assert_eq!(
        kind(r#"{"a":["#.repeat(100_000).as_bytes()),
        JsonErrorKind::TooDeep { max: MAX_DEPTH }
    );
}

#[test]
fn trailing_data_is_rejected() {
    assert_eq!(
        kind(b"{} x"),
        JsonErrorKind::TrailingCharacters { line: 1, column: 4 }
    );
    assert!(matches!(
        kind(b"{}{}"),
        JsonErrorKind::TrailingCharacters { .. }
    ));
    assert!(matches!(
        kind(b"1 2"),
        JsonErrorKind::TrailingCharacters { .. }
    ));
    assert!(matches!(
        kind(b"{}\0"),
        JsonErrorKind::TrailingCharacters { .. }
    ));
}

#[test]
fn syntax_errors_carry_their_position() {
    assert!(matches!(kind(b""), JsonErrorKind::Eof { .. }));
    assert!(matches!(kind(b"   "), JsonErrorKind::Eof { .. }));
    assert!(matches!(kind(b"{\"a\":"), JsonErrorKind::Eof { .. }));
    assert!(matches!(
        kind(b"[1,]"),
        JsonErrorKind::Syntax { line: 1, .. }
    ));
    match kind(b"{\n  \"a\": tru }") {
        JsonErrorKind::Syntax { line, .. } => assert_eq!(line, 2),
        other => panic!("{other:?}"),
    }
    for bad in [
        &b"\xef\xbb\xbf{}"[..], // byte order mark
        b"{'a':1}",
        b"[NaN]",
        b"[Infinity]",
        b"{\"a\":1,}",
        b"// c\n{}",
        b"[01]",
        b"[1e400]",
        b"[-]",
        b"{a:1}",
    ] {
        assert!(
            matches!(kind(bad), JsonErrorKind::Syntax { .. }),
            "{:?}: {:?}",
            String::from_utf8_lossy(bad),
            kind(bad)
        );
    }
}

// SPEC C-J07 (document size cap)
#[test]
fn size_is_limited() {
    assert_eq!(
        parse_strict_with_limit(b"{}", 1).unwrap_err().kind(),
        &JsonErrorKind::TooLarge { max: 1, actual: 2 }
    );
    assert!(parse_strict_with_limit(b"{}", 2).is_ok());
    let mut big = vec![b' '; MAX_DOCUMENT_SIZE + 1];
    big[0] = b'0';
    assert_eq!(
        parse_strict(&big).unwrap_err().kind(),
        &JsonErrorKind::TooLarge {
            max: MAX_DOCUMENT_SIZE,
            actual: MAX_DOCUMENT_SIZE + 1
        }
    );
    big.pop();
    assert_eq!(parse_strict(&big).unwrap(), json!(0));
}

#[test]
fn from_slice_strict_checks_rules_then_shape() {
    #[derive(Debug, Deserialize, PartialEq)]
    struct Doc {
        a: u32,
        #[serde(default)]
        b: Vec<String>,
    }
    assert_eq!(
        from_slice_strict::<Doc>(br#"{"a":1,"b":["x"]}"#).unwrap(),
        Doc {
            a: 1,
            b: vec!["x".into()]
        }
    );
    // serde_json alone keeps the last `a` in a map (derived structs catch it themselves).
    let lenient: HashMap<String, u32> = serde_json::from_slice(br#"{"a":1,"a":2}"#).unwrap();
    assert_eq!(lenient["a"], 2, "premise");
    assert_eq!(
        from_slice_strict::<HashMap<String, u32>>(br#"{"a":1,"a":2}"#)
            .unwrap_err()
            .kind(),
        &JsonErrorKind::DuplicateKey { key: "a".into() }
    );
    assert_eq!(
        from_slice_strict::<Doc>(br#"{"a":1,"a":2}"#)
            .unwrap_err()
            .kind(),
        &JsonErrorKind::DuplicateKey { key: "a".into() }
    );
    assert!(matches!(
        from_slice_strict::<Doc>(br#"{"a":"1"}"#).unwrap_err().kind(),
        JsonErrorKind::Type { message } if message.contains("invalid type")
    ));
    assert!(matches!(
        from_slice_strict::<Doc>(br#"{"a":-1}"#).unwrap_err().kind(),
        JsonErrorKind::Type { .. }
    ));
    assert_eq!(
        json::from_slice_strict_with_limit::<Doc>(br#"{"a":1}"#, 3)
            .unwrap_err()
            .kind(),
        &JsonErrorKind::TooLarge { max: 3, actual: 7 }
    );
}

#[test]
fn errors_convert_and_display() {
    let err = parse_strict(br#"{"a":1,"a":2}"#).unwrap_err();
    let message = err.to_string();
    assert!(message.contains("duplicate object key \"a\""), "{message}");
    assert!(message.contains("line 1"), "{message}");
    let syntax = parse_strict(b"[1,]").unwrap_err().to_string();
    assert_eq!(syntax, "JSON syntax error at line 1 column 4");
    let top: ocikit_digest::Error = err.clone().into();
    assert!(matches!(top, ocikit_digest::Error::Json(e) if e == err));
}

// ---------------------------------------------------------------------------------------------
// Properties

fn allowed_char() -> impl Strategy<Value = char> {
    any::<char>().prop_filter("I-JSON forbids NUL and noncharacters", |&c| {
        let cp = u32::from(c);
        cp != 0 && !(0xFDD0..=0xFDEF).contains(&cp) && cp & 0xFFFE != 0xFFFE
    })
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::collection::vec(allowed_char(), 0..6).prop_map(String::from_iter),
        "[a-c]{0,3}",
        proptest::collection::vec(
            prop_oneof![
                Just('\u{E000}'),
                Just('\u{10000}'),
                Just('a'),
                Just('\u{1}')
            ],
            0..3
        )
        .prop_map(String::from_iter),
    ]
}

fn arb_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 96, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(text(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Writes `value` non-canonically: object members in reverse key order (or rotated), with
/// whitespace between tokens.
fn write_scrambled(value: &Value, rotate: usize, out: &mut String) {
    match value {
        Value::Array(items) => {
            out.push_str("[ ");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(" ,\n");
                }
                write_scrambled(item, rotate, out);
            }
            out.push_str(" ]");
        }
        Value::Object(map) => {
            let mut members: Vec<_> = map.iter().collect();
            members.reverse();
            if !members.is_empty() {
                let r = rotate % members.len();
                members.rotate_left(r);
            }
            out.push_str("{\t");
            for (i, (k, v)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&serde_json::to_string(k).unwrap());
                out.push_str(" : ");
                write_scrambled(v, rotate, out);
            }
            out.push_str("\r\n}");
        }
        other => out.push_str(&serde_json::to_string(other).unwrap()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn canonical_json_is_stable(value in arb_value(), rotate in 0usize..8) {
        let canonical = value_to_canonical_vec(&value).unwrap();
        // Idempotent.
        prop_assert_eq!(canonicalize(&canonical).unwrap(), canonical.clone());
        // Parses back to the same value.
        prop_assert_eq!(parse_strict(&canonical).unwrap(), value.clone());
        // Independent of the input's key order and whitespace.
        let mut scrambled = String::new();
        write_scrambled(&value, rotate, &mut scrambled);
        prop_assert_eq!(canonicalize(scrambled.as_bytes()).unwrap(), canonical.clone());
        let pretty = serde_json::to_vec_pretty(&value).unwrap();
        prop_assert_eq!(canonicalize(&pretty).unwrap(), canonical.clone());
        // The serializer path agrees with the value path.
        prop_assert_eq!(to_canonical_vec(&value).unwrap(), canonical.clone());
        // No insignificant whitespace: as long as serde_json's compact output.
        prop_assert_eq!(serde_json::to_vec(&value).unwrap().len(), canonical.len());
    }

    #[test]
    fn strict_parsing_agrees_with_serde_json_on_valid_documents(value in arb_value()) {
        let text = serde_json::to_vec(&value).unwrap();
        prop_assert_eq!(parse_strict(&text).unwrap(), value);
    }
}

#[test]
fn numbers_beyond_f64_are_rejected() {
    // Correctly rounded, this is infinity; serde_json's approximation may say otherwise.
    for doc in [
        &b"[1.7976931348623159e308]"[..],
        b"-1.797693134862316e308",
        b"1e309",
    ] {
        assert!(
            matches!(
                kind(doc),
                JsonErrorKind::NumberOutOfRange | JsonErrorKind::Syntax { .. }
            ),
            "{:?}",
            kind(doc)
        );
    }
    assert_eq!(
        parse_strict(b"1.7976931348623157e308").unwrap().as_f64(),
        Some(f64::MAX)
    );
    assert_eq!(parse_strict(b"5e-324").unwrap().as_f64(), Some(5e-324));
    assert_eq!(parse_strict(b"1e-400").unwrap().as_f64(), Some(0.0));
}

// Integers and floats interleave; each float is re-read from its own text.
#[test]
fn mixed_numbers_keep_their_exact_values() {
    let doc = br#"[1, 0.1, -0, 18446744073709551616, -9223372036854775809, 5, "1.5", 2.5e-3,
        {"a": 7, "b": 1.947700395895162e-169, "c": [-1, 6.162599865641032e196]}, 9.5]"#;
    let v = parse_strict(doc).unwrap();
    let f = |s: &str| s.parse::<f64>().unwrap();
    assert_eq!(v[0], json!(1));
    assert_eq!(v[1].as_f64(), Some(0.1));
    assert!(v[2].as_f64().unwrap().is_sign_negative());
    assert_eq!(v[3].as_f64(), Some(f("18446744073709551616")));
    assert_eq!(v[4].as_f64(), Some(f("-9223372036854775809")));
    assert_eq!(v[5], json!(5));
    assert_eq!(v[6], json!("1.5"));
    assert_eq!(v[7].as_f64(), Some(0.0025));
    assert_eq!(v[8]["a"], json!(7));
    assert_eq!(v[8]["b"].as_f64(), Some(f("1.947700395895162e-169")));
    assert_eq!(v[8]["c"][0], json!(-1));
    assert_eq!(v[8]["c"][1].as_f64(), Some(f("6.162599865641032e196")));
    assert_eq!(v[9].as_f64(), Some(9.5));
}
