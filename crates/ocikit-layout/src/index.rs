//! `index.json`: parsed strictly, edited as JSON so that fields ocikit does not know survive.
//!
//! An [`Index`] is built for being kept between reads (a [`crate::Layout`] keeps the last one
//! it parsed, see [`crate::Layout::resolve`]): tags are found through a map built on the
//! first lookup and kept up to date by [`Index::set_tag`], each entry keeps its canonical
//! JSON once written, so that writing the index again only joins bytes, and clones share
//! the entries.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use ocikit_digest::oci_spec::image::Descriptor;
use ocikit_digest::{descriptor, json, media_type};
use serde_json::{Map, Value};

use crate::{Error, Result};

/// The annotation that names an `index.json` entry (the layout's tag).
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Largest `index.json` read: 32 MiB, room for about 120,000 tagged entries (a tagged
/// entry takes 200-300 bytes), within the filesystem store's 64 MiB document limit.
pub const MAX_INDEX_SIZE: usize = 32 << 20;

/// A parsed `index.json`.
///
/// Parsing is strict (SPEC A.6, C.7, C.8): I-JSON (no duplicate keys), an object with
/// `schemaVersion` 2, a `manifests` array (never `null` or missing), no `layers`/`config`
/// (a document that is both index and manifest is refused), every entry a valid
/// descriptor. Entries with media types ocikit does not know are kept (SPEC C-L09). Unknown
/// fields, at the top and in entries, are kept through edits. Tags written by other tools
/// that break the `ref.name` grammar are read as they are (never used as paths); ocikit
/// refuses to write such tags (SPEC C-L05).
#[derive(Debug)]
pub struct Index {
    top: Map<String, Value>,
    /// Shared with clones: an entry never changes once made (edits replace or drop it).
    entries: Vec<Arc<Entry>>,
    /// Each tag and the position of its first entry, built on the first lookup; kept by
    /// appends, dropped by removals (then built again when next needed).
    tags: OnceLock<HashMap<String, usize>>,
}

impl Clone for Index {
    /// The entries are shared; the tag map is not copied (a clone builds its own when it
    /// needs one).
    fn clone(&self) -> Index {
        Index {
            top: self.top.clone(),
            entries: self.entries.clone(),
            tags: OnceLock::new(),
        }
    }
}

impl PartialEq for Index {
    /// The same top-level fields and the same entries in the same order.
    fn eq(&self, other: &Index) -> bool {
        self.top == other.top && self.entries == other.entries
    }
}

#[derive(Debug)]
struct Entry {
    raw: Map<String, Value>,
    descriptor: Descriptor,
    /// `raw` as canonical JSON, once the index was written with it.
    canonical: OnceLock<Vec<u8>>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Entry) -> bool {
        self.raw == other.raw && self.descriptor == other.descriptor
    }
}

impl Entry {
    fn new(raw: Map<String, Value>, descriptor: Descriptor) -> Arc<Entry> {
        Arc::new(Entry {
            raw,
            descriptor,
            canonical: OnceLock::new(),
        })
    }

    /// The entry as canonical JSON (serialised once).
    fn canonical(&self) -> Result<&[u8]> {
        if let Some(bytes) = self.canonical.get() {
            return Ok(bytes);
        }
        let bytes = json::value_to_canonical_vec(&Value::Object(self.raw.clone()))
            .map_err(cannot_serialise)?;
        Ok(self.canonical.get_or_init(|| bytes))
    }
}

fn cannot_serialise(e: json::JsonError) -> Error {
    Error::InvalidIndex {
        reason: "cannot serialise".into(),
        source: Some(Box::new(e.into())),
    }
}

/// Stands for the `manifests` array while the top-level object is serialised; the entries'
/// bytes are put in its place. Should a foreign field hold the same string, the index is
/// serialised as a whole instead.
const MANIFESTS_PLACEHOLDER: &str = "ocikit:index.json:manifests:placeholder";

fn invalid(reason: impl Into<String>) -> Error {
    Error::InvalidIndex {
        reason: reason.into(),
        source: None,
    }
}

impl Index {
    /// An index with no entries.
    pub fn empty() -> Index {
        let mut top = Map::new();
        top.insert("schemaVersion".into(), Value::from(2));
        top.insert("mediaType".into(), Value::from(media_type::IMAGE_INDEX));
        top.insert("manifests".into(), Value::Array(Vec::new()));
        Index {
            top,
            entries: Vec::new(),
            tags: OnceLock::new(),
        }
    }

    /// Parses `index.json` bytes.
    pub fn parse(bytes: &[u8]) -> Result<Index> {
        let value = json::parse_strict_with_limit(bytes, MAX_INDEX_SIZE).map_err(|e| {
            Error::InvalidIndex {
                reason: "malformed JSON".into(),
                source: Some(Box::new(e.into())),
            }
        })?;
        let Value::Object(mut top) = value else {
            return Err(invalid("not a JSON object"));
        };
        match top.get("schemaVersion") {
            Some(v) if v.as_u64() == Some(2) => {}
            Some(_) => return Err(invalid("schemaVersion is not 2")),
            None => return Err(invalid("schemaVersion is missing")),
        }
        if let Some(mt) = top.get("mediaType")
            && mt.as_str() != Some(media_type::IMAGE_INDEX)
        {
            return Err(invalid("mediaType is not the image index type"));
        }
        if top.contains_key("layers") || top.contains_key("config") {
            return Err(invalid(
                "document is both an index and a manifest (has layers or config)",
            ));
        }
        let manifests = match top.remove("manifests") {
            Some(Value::Array(items)) => items,
            Some(Value::Null) | None => return Err(invalid("manifests is missing or null")),
            Some(_) => return Err(invalid("manifests is not an array")),
        };
        let mut entries = Vec::with_capacity(manifests.len());
        for (i, item) in manifests.into_iter().enumerate() {
            let Value::Object(raw) = item else {
                return Err(invalid(format!("manifests[{i}] is not an object")));
            };
            let descriptor = descriptor::from_value(Value::Object(raw.clone())).map_err(|e| {
                Error::InvalidIndex {
                    reason: format!("manifests[{i}] is not a valid descriptor"),
                    source: Some(Box::new(e.into())),
                }
            })?;
            entries.push(Entry::new(raw, descriptor));
        }
        top.insert("manifests".into(), Value::Array(Vec::new()));
        Ok(Index {
            top,
            entries,
            tags: OnceLock::new(),
        })
    }

    /// Each tag and the position of its first entry (built on the first call).
    fn tag_map(&self) -> &HashMap<String, usize> {
        self.tags.get_or_init(|| {
            let mut map = HashMap::with_capacity(self.entries.len());
            for (i, e) in self.entries.iter().enumerate() {
                if let Some(name) = ref_name(&e.descriptor) {
                    map.entry(name.to_string()).or_insert(i);
                }
            }
            map
        })
    }

    /// The entries, in order.
    pub fn manifests(&self) -> impl ExactSizeIterator<Item = &Descriptor> {
        self.entries.iter().map(|e| &e.descriptor)
    }

    /// The first entry carrying `tag` (SPEC F12: the first match wins on read). The first
    /// lookup in an index builds a map of its tags; the next ones cost one hash lookup.
    pub fn find(&self, tag: &str) -> Option<&Descriptor> {
        let position = *self.tag_map().get(tag)?;
        self.entries.get(position).map(|e| &e.descriptor)
    }

    /// Every tag with its entry, in index order (a tag that appears twice is listed once,
    /// with its first entry).
    pub fn tags(&self) -> Vec<(&str, &Descriptor)> {
        let mut seen = std::collections::HashSet::new();
        self.entries
            .iter()
            .filter_map(|e| ref_name(&e.descriptor).map(|name| (name, &e.descriptor)))
            .filter(|(name, _)| seen.insert(*name))
            .collect()
    }

    /// Every entry with its tag (`None` for an untagged one), in index order, as they are:
    /// a tag or a digest may appear more than once.
    pub fn entries(&self) -> impl ExactSizeIterator<Item = (Option<&str>, &Descriptor)> {
        self.entries
            .iter()
            .map(|e| (ref_name(&e.descriptor), &e.descriptor))
    }

    /// Points `tag` at `descriptor`: entries that carried the tag are removed (the tag moves),
    /// and a new entry with the tag is appended.
    pub fn set_tag(&mut self, tag: &str, descriptor: &Descriptor) -> Result<()> {
        validate_tag(tag)?;
        // A new tag is only appended; one that moves is removed from every entry first.
        if self.tag_map().contains_key(tag) {
            self.remove_tag(tag);
        }
        let mut tagged = descriptor.clone();
        let mut annotations = tagged.annotations().clone().unwrap_or_default();
        annotations.insert(REF_NAME.to_string(), tag.to_string());
        tagged.set_annotations(Some(annotations));
        self.push(tagged)
    }

    /// Removes every entry carrying `tag`; returns whether there was one.
    pub fn remove_tag(&mut self, tag: &str) -> bool {
        let before = self.entries.len();
        self.entries
            .retain(|e| ref_name(&e.descriptor) != Some(tag));
        let removed = self.entries.len() != before;
        if removed {
            // Positions after the first removal moved.
            self.tags = OnceLock::new();
        }
        removed
    }

    /// Adds an untagged entry unless an untagged entry with the same digest exists.
    pub fn add(&mut self, descriptor: &Descriptor) -> Result<()> {
        let exists = self.entries.iter().any(|e| {
            e.descriptor.digest() == descriptor.digest() && ref_name(&e.descriptor).is_none()
        });
        if exists {
            Ok(())
        } else {
            self.push(descriptor.clone())
        }
    }

    fn push(&mut self, descriptor: Descriptor) -> Result<()> {
        let raw = match serde_json::to_value(&descriptor) {
            Ok(Value::Object(raw)) => raw,
            _ => return Err(invalid("descriptor does not serialise to an object")),
        };
        let position = self.entries.len();
        if let (Some(map), Some(name)) = (self.tags.get_mut(), ref_name(&descriptor)) {
            map.entry(name.to_string()).or_insert(position);
        }
        self.entries.push(Entry::new(raw, descriptor));
        Ok(())
    }

    /// The canonical JSON bytes of this index (always with `mediaType`).
    ///
    /// The top-level object is serialised with the entries' canonical bytes put in place of
    /// its `manifests` array: each entry is serialised once in the life of an index (and of
    /// its clones), so writing an index again after an edit costs a copy of its bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut top = self.top.clone();
        top.insert("mediaType".into(), Value::from(media_type::IMAGE_INDEX));
        top.insert(
            "manifests".into(),
            Value::from(MANIFESTS_PLACEHOLDER.to_string()),
        );
        let head = json::value_to_canonical_vec(&Value::Object(top)).map_err(cannot_serialise)?;
        let placeholder = format!("\"{MANIFESTS_PLACEHOLDER}\"");
        let mut found = head
            .windows(placeholder.len())
            .enumerate()
            .filter(|(_, w)| *w == placeholder.as_bytes())
            .map(|(i, _)| i);
        let (Some(at), None) = (found.next(), found.next()) else {
            return self.to_bytes_whole();
        };
        let mut entries = Vec::with_capacity(self.entries.len());
        let mut size = head.len() + 2;
        for entry in &self.entries {
            let bytes = entry.canonical()?;
            size += bytes.len() + 1;
            entries.push(bytes);
        }
        let mut out = Vec::with_capacity(size);
        out.extend_from_slice(&head[..at]);
        out.push(b'[');
        for (i, bytes) in entries.into_iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(bytes);
        }
        out.push(b']');
        out.extend_from_slice(&head[at + placeholder.len()..]);
        Ok(out)
    }

    /// [`Index::to_bytes`] by serialising the whole index as one JSON value.
    fn to_bytes_whole(&self) -> Result<Vec<u8>> {
        let mut top = self.top.clone();
        top.insert("mediaType".into(), Value::from(media_type::IMAGE_INDEX));
        top.insert(
            "manifests".into(),
            Value::Array(
                self.entries
                    .iter()
                    .map(|e| Value::Object(e.raw.clone()))
                    .collect(),
            ),
        );
        json::value_to_canonical_vec(&Value::Object(top)).map_err(cannot_serialise)
    }
}

fn ref_name(descriptor: &Descriptor) -> Option<&str> {
    descriptor
        .annotations()
        .as_ref()
        .and_then(|a| a.get(REF_NAME))
        .map(String::as_str)
}

/// Checks a tag against the image spec's `org.opencontainers.image.ref.name` grammar:
/// `component ("/" component)*`, `component ::= alphanum (separator alphanum)*`,
/// `alphanum ::= [A-Za-z0-9]+`, `separator ::= [-._:@+] | "--"` (SPEC A.10, C-L05).
pub fn validate_tag(tag: &str) -> Result<()> {
    let bad = |reason| Error::InvalidTag {
        tag: tag.chars().take(300).collect(),
        reason,
    };
    if tag.is_empty() {
        return Err(bad("empty"));
    }
    if tag.len() > 1024 {
        return Err(bad("longer than 1024 bytes"));
    }
    for component in tag.split('/') {
        if component.is_empty() {
            return Err(bad("empty path component"));
        }
        let bytes = component.as_bytes();
        let mut i = 0;
        let mut expect_alnum = true;
        while i < bytes.len() {
            let b = bytes[i];
            if b.is_ascii_alphanumeric() {
                expect_alnum = false;
                i += 1;
            } else if matches!(b, b'-' | b'.' | b'_' | b':' | b'@' | b'+') {
                if expect_alnum {
                    return Err(bad("separator not between letters or digits"));
                }
                // `--` is one separator; any other pair is two.
                i += if b == b'-' && bytes.get(i + 1) == Some(&b'-') {
                    2
                } else {
                    1
                };
                expect_alnum = true;
            } else {
                return Err(bad("character outside A-Z a-z 0-9 - . _ : @ + /"));
            }
        }
        if expect_alnum {
            return Err(bad("component ends with a separator"));
        }
    }
    Ok(())
}
