//! `index_json`: `index.json` parsing judged by serde_json's reading of the same bytes.

use std::sync::OnceLock;

use ocikit_digest::oci_spec::image::Descriptor;
use ocikit_digest::{descriptor, json, media_type};
use regex::Regex;
use serde_json::Value;

use crate::index::{Index, MAX_INDEX_SIZE, REF_NAME, validate_tag};

/// The image spec's `ref.name` grammar (SPEC A.10).
fn tag_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        let component = r"[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*";
        Regex::new(&format!(r"^{component}(?:/{component})*$")).unwrap()
    })
}

fn tag_ok(tag: &str) -> bool {
    tag.len() <= 1024 && tag_re().is_match(tag)
}

/// Whether `value` is an index as the spec and ocikit's rules read it (the JSON itself
/// already read strictly).
fn is_index(value: &Value) -> bool {
    let Value::Object(top) = value else {
        return false;
    };
    if top.get("schemaVersion").and_then(Value::as_u64) != Some(2) {
        return false;
    }
    if top
        .get("mediaType")
        .is_some_and(|mt| mt.as_str() != Some(media_type::IMAGE_INDEX))
    {
        return false;
    }
    if top.contains_key("layers") || top.contains_key("config") {
        return false;
    }
    let Some(Value::Array(items)) = top.get("manifests") else {
        return false;
    };
    items
        .iter()
        .all(|item| item.is_object() && descriptor::from_value(item.clone()).is_ok())
}

fn contains_float(value: &Value) -> bool {
    match value {
        Value::Number(n) => n.is_f64(),
        Value::Array(items) => items.iter().any(contains_float),
        Value::Object(map) => map.values().any(contains_float),
        _ => false,
    }
}

fn tagged(descriptor: &Descriptor, tag: &str) -> Descriptor {
    let mut d = descriptor.clone();
    let mut annotations = d.annotations().clone().unwrap_or_default();
    annotations.insert(REF_NAME.into(), tag.into());
    d.set_annotations(Some(annotations));
    d
}

/// Oracle for `index.json`: `Index::parse` accepts exactly the strictly read JSON documents
/// that are indexes by the spec's rules (checked here on serde_json values); its entries,
/// tags and lookups agree with the JSON; writing and parsing again is the identity, keeps
/// every field (unknown ones too) and is a fixed point; a tag set and removed leaves the
/// index as it was, a tag moved leaves one entry carrying it; `validate_tag` agrees with the
/// spec's grammar.
pub fn index_json(data: &[u8]) {
    if let Ok(s) = std::str::from_utf8(data) {
        assert_eq!(validate_tag(s).is_ok(), tag_ok(s), "validate_tag on {s:?}");
    }
    let parsed = Index::parse(data);
    let Ok(value) = json::parse_strict_with_limit(data, MAX_INDEX_SIZE) else {
        assert!(parsed.is_err(), "malformed JSON accepted");
        return;
    };
    let lenient: Value = serde_json::from_slice(data).unwrap();
    if !contains_float(&value) {
        assert_eq!(lenient, value);
    }
    assert_eq!(
        parsed.is_ok(),
        is_index(&value),
        "parser and reference disagree: {parsed:?}"
    );
    let Ok(index) = parsed else {
        return;
    };

    // Entries, tags and lookups as the JSON has them.
    let items = value["manifests"].as_array().unwrap();
    assert_eq!(index.manifests().len(), items.len());
    let mut tags: Vec<(&str, &Descriptor)> = Vec::new();
    for ((tag, d), item) in index.entries().zip(items) {
        assert_eq!(
            Some(d.digest().to_string().as_str()),
            item["digest"].as_str()
        );
        assert_eq!(
            Some(d.media_type().to_string().as_str()),
            item["mediaType"].as_str()
        );
        assert_eq!(tag, item["annotations"][REF_NAME].as_str());
        if let Some(tag) = tag
            && !tags.iter().any(|(t, _)| *t == tag)
        {
            tags.push((tag, d));
        }
    }
    assert_eq!(index.tags(), tags);
    for (tag, d) in &tags {
        assert_eq!(index.find(tag), Some(*d));
        assert_eq!(
            validate_tag(tag).is_ok(),
            tag_ok(tag),
            "validate_tag on {tag:?}"
        );
    }

    // Written and read back: the same index, every field kept, a fixed point.
    let written = index.to_bytes().unwrap();
    let again = Index::parse(&written).unwrap();
    assert!(
        again.entries().eq(index.entries()),
        "entries changed in writing"
    );
    assert_eq!(again.to_bytes().unwrap(), written);
    if !contains_float(&value) {
        let mut expected = value.clone();
        expected["mediaType"] = Value::from(media_type::IMAGE_INDEX);
        let reread: Value = serde_json::from_slice(&written).unwrap();
        assert_eq!(reread, expected, "fields lost or changed in writing");
    }

    // Edits: a new tag set then removed leaves the index as it was; an existing tag moved
    // is carried by exactly one entry, the last.
    let Some(first) = index.manifests().next().cloned() else {
        return;
    };
    let fresh = (0..)
        .map(|i| format!("fuzz-{i}"))
        .find(|t| index.find(t).is_none())
        .unwrap();
    let mut edited = index.clone();
    edited.set_tag(&fresh, &first).unwrap();
    assert_eq!(edited.find(&fresh), Some(&tagged(&first, &fresh)));
    assert_eq!(edited.tags().last().map(|(t, _)| *t), Some(fresh.as_str()));
    assert!(edited.remove_tag(&fresh));
    assert_eq!(edited, index);
    if let Some((tag, _)) = tags.iter().find(|(t, _)| tag_ok(t)) {
        let tag = (*tag).to_owned();
        let mut moved = index.clone();
        moved.set_tag(&tag, &first).unwrap();
        let carrying: Vec<_> = moved.entries().filter(|(t, _)| *t == Some(&tag)).collect();
        assert_eq!(carrying.len(), 1);
        assert_eq!(moved.entries().last().unwrap().0, Some(tag.as_str()));
        let others = index.entries().filter(|(t, _)| *t != Some(&tag)).count();
        assert_eq!(moved.manifests().len(), others + 1);
        let written = moved.to_bytes().unwrap();
        assert_eq!(Index::parse(&written).unwrap().to_bytes().unwrap(), written);
    }
}
