//! `document_parse`: the one manifest and index parser judged against the rules checked
//! here, independently, on the JSON value; what it accepts re-read canonically.

use std::collections::HashMap;

use bytes::Bytes;
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};
use serde_json::Value;

use super::descriptor::{contains_float, media_type_regex};
use crate::document::{Document, InvalidDocumentKind};
use crate::{descriptor, json, media_type};

/// The media types an input may be declared as, picked by its first byte: every kind of
/// document (parameters and a space before them included), and types that are not
/// documents.
const DECLARED: [&str; 8] = [
    media_type::IMAGE_MANIFEST,
    media_type::IMAGE_INDEX,
    media_type::DOCKER_MANIFEST,
    media_type::DOCKER_MANIFEST_LIST,
    "application/vnd.oci.image.manifest.v1+json; charset=utf-8",
    "application/vnd.oci.image.index.v1+json ;x=y",
    media_type::IMAGE_CONFIG,
    "application/vnd.oci.image.index.v1+json+extra",
];

/// What a media type is, by this oracle's own reading: the part before `;` without the
/// spaces and tabs that end it, compared exactly (media types are not case-folded in
/// ocikit).
fn essence(media_type: &str) -> &str {
    let head = media_type.split(';').next().unwrap_or("");
    if media_type.contains(';') {
        head.trim_end_matches([' ', '\t'])
    } else {
        head
    }
}

fn kind_of(declared: &str) -> Option<bool> {
    match essence(declared) {
        media_type::IMAGE_MANIFEST | media_type::DOCKER_MANIFEST => Some(false),
        media_type::IMAGE_INDEX | media_type::DOCKER_MANIFEST_LIST => Some(true),
        _ => None,
    }
}

/// Whether the JSON object `value`, declared as `declared` (an index when `is_index`),
/// keeps every rule of a document, each checked here on the value; `Err` names the first
/// rule broken, in the parser's order.
fn rules(value: &Value, declared: &str, is_index: bool) -> Result<(), &'static str> {
    let Value::Object(object) = value else {
        return Err("not an object");
    };
    match object.get("schemaVersion") {
        Some(v) if *v == 2u64 => {}
        _ => return Err("schemaVersion"),
    }
    match object.get("mediaType") {
        None => {}
        Some(Value::String(own)) if essence(own) == essence(declared) => {}
        Some(Value::String(_)) => return Err("mediaType mismatch"),
        Some(_) => return Err("mediaType type"),
    }
    let foreign: &[&str] = if is_index {
        &["config", "layers"]
    } else {
        &["manifests"]
    };
    if foreign.iter().any(|f| object.contains_key(*f)) {
        return Err("ambiguous");
    }
    match object.get("artifactType") {
        None | Some(Value::Null) => {}
        Some(Value::String(t)) if media_type_regex().is_match(t) => {}
        Some(_) => return Err("artifactType"),
    }
    match object.get("annotations") {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) if map.values().all(Value::is_string) => {}
        Some(_) => return Err("annotations"),
    }
    let descriptor_ok = |v: &Value| descriptor::from_value(v.clone()).is_ok();
    let mut inner: Vec<&Value> = Vec::new();
    if let Some(config) = object.get("config") {
        inner.push(config);
    }
    for list in ["layers", "manifests"] {
        if let Some(Value::Array(items)) = object.get(list) {
            inner.extend(items);
        }
    }
    if let Some(subject) = object.get("subject").filter(|s| !s.is_null()) {
        inner.push(subject);
    }
    if !inner.into_iter().all(descriptor_ok) {
        return Err("descriptor");
    }
    let shape = if is_index {
        serde_json::from_value::<ImageIndex>(value.clone()).is_ok()
    } else {
        serde_json::from_value::<ImageManifest>(value.clone()).is_ok()
    };
    if shape { Ok(()) } else { Err("shape") }
}

/// The descriptors a document names, by this oracle's reading of the JSON.
fn children_of(value: &Value, is_index: bool) -> Vec<Descriptor> {
    let list = |name: &str| -> Vec<Descriptor> {
        value[name]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .map(|v| serde_json::from_value(v.clone()).unwrap())
                    .collect()
            })
            .unwrap_or_default()
    };
    if is_index {
        list("manifests")
    } else {
        let mut all = vec![serde_json::from_value(value["config"].clone()).unwrap()];
        all.extend(list("layers"));
        all
    }
}

/// Oracle for manifests and indexes. The first byte picks the declared media type, the rest
/// is the document. `Document::parse_as` never panics and accepts exactly what keeps the
/// rules checked here on the strictly read JSON (which lenient serde_json reads the same);
/// a document that is not a manifest or index by its declared type is opaque, whatever the
/// bytes. What it accepts keeps its exact bytes and has the children, subject, annotations
/// and artifact type the JSON says; it is refused as the other kind (a manifest is never
/// also an index, CVE-2021-41190) and under a size limit one byte short; written
/// canonically and parsed again it is the same document, and the canonical form is a
/// fixed point.
pub fn document_parse(data: &[u8]) {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let declared = DECLARED[usize::from(selector) % DECLARED.len()];
    let bytes = Bytes::copy_from_slice(body);
    let parsed = Document::parse_as(declared, bytes.clone());

    let Some(is_index) = kind_of(declared) else {
        assert!(
            matches!(parsed, Ok(Document::Opaque)),
            "{declared} is not a document type, parsed as {parsed:?}"
        );
        return;
    };
    // A declared type with parameters is the same type.
    assert_eq!(
        Document::parse_as(essence(declared), bytes.clone()).is_ok(),
        parsed.is_ok(),
        "parameters of {declared:?} changed the verdict"
    );

    let Ok(value) = json::parse_strict(body) else {
        match &parsed {
            Err(e) => assert!(matches!(e.kind(), InvalidDocumentKind::Json(_)), "{e:?}"),
            Ok(d) => panic!("malformed JSON accepted: {d:?}"),
        }
        return;
    };
    let lenient: Value = serde_json::from_slice(body).unwrap();
    if !contains_float(&value) {
        assert_eq!(lenient, value);
    }
    let expected = rules(&value, declared, is_index);
    let document = match (expected, parsed) {
        (Ok(()), Ok(document)) => document,
        (Err(_), Err(_)) => return,
        (Ok(()), Err(e)) => panic!("a document keeping every rule was refused: {e:?}"),
        (Err(rule), Ok(d)) => panic!("a document breaking {rule} was accepted: {d:?}"),
    };
    let other = if is_index {
        media_type::IMAGE_MANIFEST
    } else {
        media_type::IMAGE_INDEX
    };
    assert!(
        Document::parse_as(other, bytes.clone()).is_err(),
        "a document is both a manifest and an index"
    );
    match (&document, is_index) {
        (Document::Manifest { .. }, false) | (Document::Index { .. }, true) => {}
        (other, _) => panic!("parsed as the wrong kind: {other:?}"),
    }
    assert_eq!(document.bytes(), Some(&bytes));
    assert!(
        Document::parse_with_limit(declared, bytes.clone(), body.len() as u64 - 1).is_err(),
        "a document over the size limit was accepted"
    );

    // What it names, as the JSON says.
    assert_eq!(document.children(), children_of(&value, is_index));
    let subject: Option<Descriptor> = match &value["subject"] {
        Value::Null => None,
        s => Some(serde_json::from_value(s.clone()).unwrap()),
    };
    assert_eq!(document.subject(), subject.as_ref());
    let annotations: Option<HashMap<String, String>> = match &value["annotations"] {
        Value::Object(map) => Some(
            map.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                .collect(),
        ),
        _ => None,
    };
    assert_eq!(document.annotations(), annotations.as_ref());
    let artifact_type = value["artifactType"]
        .as_str()
        .map(str::to_owned)
        .or_else(|| (!is_index).then(|| value["config"]["mediaType"].as_str().unwrap().to_owned()));
    assert_eq!(document.artifact_type(), artifact_type);

    // Written canonically and read again: the same document, and a fixed point.
    let canonical = json::canonicalize(body).unwrap();
    let again = Document::parse_as(declared, Bytes::from(canonical.clone())).unwrap();
    assert_eq!(again.children(), document.children());
    assert_eq!(again.subject(), document.subject());
    assert_eq!(again.annotations(), document.annotations());
    assert_eq!(again.artifact_type(), document.artifact_type());
    match (&document, &again) {
        (Document::Manifest { manifest: a, .. }, Document::Manifest { manifest: b, .. }) => {
            assert_eq!(a, b)
        }
        (Document::Index { index: a, .. }, Document::Index { index: b, .. }) => {
            assert_eq!(a, b)
        }
        (a, b) => panic!("{a:?} read back as {b:?}"),
    }
    assert_eq!(json::canonicalize(&canonical).unwrap(), canonical);
}
