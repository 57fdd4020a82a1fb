//! [`ImageConfig`]: an image configuration, parsed strictly, edited as JSON.

use ocikit_digest::oci_spec::image::{History, ImageConfiguration, Platform};
use ocikit_digest::{Digest, json, platform};
use serde_json::{Map, Value};

use super::{invalid_config, invalid_image};
use crate::layout::MAX_DOCUMENT_SIZE;
use crate::{Error, Result};

/// An image configuration, parsed strictly and kept as JSON so that fields ocikit does not
/// know (`Healthcheck`, `Shell`, `OnBuild`, vendor fields) survive edits.
///
/// [`ImageConfig::parse`] refuses what the image spec and SPEC C-J08 forbid: anything but
/// I-JSON within [`MAX_DOCUMENT_SIZE`], a document that does not deserialise as an image
/// configuration (wrong types, `architecture`, `os` or `rootfs` missing, labels that are not
/// strings), empty `os` or `architecture`, `rootfs.type` other than `layers`, and diffIDs
/// that are not digests.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageConfig {
    pub(super) json: Map<String, Value>,
}

impl ImageConfig {
    /// A config for `platform` with no layers, no history and no execution parameters.
    pub fn new(platform: &Platform) -> ImageConfig {
        let mut config = ImageConfig { json: Map::new() };
        config.set_platform(platform);
        let mut rootfs = Map::new();
        rootfs.insert("type".into(), Value::from("layers"));
        rootfs.insert("diff_ids".into(), Value::Array(Vec::new()));
        config.json.insert("rootfs".into(), Value::Object(rootfs));
        config
    }

    /// Parses a config blob; `digest` (the blob's) names it in errors.
    pub fn parse(digest: &Digest, bytes: &[u8]) -> Result<ImageConfig> {
        if bytes.len() as u64 > MAX_DOCUMENT_SIZE {
            return Err(invalid_config(digest, "config is larger than 16 MiB"));
        }
        let value =
            json::parse_strict_with_limit(bytes, MAX_DOCUMENT_SIZE as usize).map_err(|e| {
                Error::InvalidDocument {
                    digest: digest.clone(),
                    reason: "malformed JSON".into(),
                    source: Some(Box::new(e.into())),
                }
            })?;
        let Value::Object(json) = value else {
            return Err(invalid_config(digest, "config is not a JSON object"));
        };
        let config = ImageConfig { json };
        config.check(digest)?;
        Ok(config)
    }

    pub(super) fn check(&self, digest: &Digest) -> Result<()> {
        let typed: ImageConfiguration = serde_json::from_value(Value::Object(self.json.clone()))
            .map_err(|e| invalid_config(digest, format!("not an image configuration: {e}")))?;
        if typed.os().to_string().is_empty() || typed.architecture().to_string().is_empty() {
            return Err(invalid_config(digest, "os or architecture is empty"));
        }
        if typed.rootfs().typ() != "layers" {
            return Err(invalid_config(
                digest,
                format!("rootfs.type is {:?}, not \"layers\"", typed.rootfs().typ()),
            ));
        }
        for (i, diff_id) in typed.rootfs().diff_ids().iter().enumerate() {
            Digest::parse(diff_id).map_err(|e| Error::InvalidDocument {
                digest: digest.clone(),
                reason: format!("rootfs.diff_ids[{i}] is not a digest"),
                source: Some(Box::new(e.into())),
            })?;
        }
        Ok(())
    }

    /// The config as JSON (unknown fields included).
    pub fn as_json(&self) -> &Map<String, Value> {
        &self.json
    }

    /// The typed view of the config (unknown fields left out).
    pub fn to_oci(&self) -> Result<ImageConfiguration> {
        serde_json::from_value(Value::Object(self.json.clone()))
            .map_err(|e| invalid_image(format!("config is not an image configuration: {e}")))
    }

    /// The canonical JSON bytes of the config.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        json::value_to_canonical_vec(&Value::Object(self.json.clone())).map_err(|e| {
            Error::InvalidDocument {
                digest: Digest::sha256(b""),
                reason: "cannot serialise the config".into(),
                source: Some(Box::new(e.into())),
            }
        })
    }

    pub(super) fn str_field(&self, key: &str) -> Option<&str> {
        self.json.get(key).and_then(Value::as_str)
    }

    /// The platform the config names: `os`, `architecture`, `variant`, `os.version` and
    /// `os.features`.
    pub fn platform(&self) -> Platform {
        let mut p = platform::build(
            self.str_field("os").unwrap_or_default(),
            self.str_field("architecture").unwrap_or_default(),
            self.str_field("variant"),
        );
        p.set_os_version(self.str_field("os.version").map(str::to_owned));
        let features: Option<Vec<String>> = self
            .json
            .get("os.features")
            .and_then(|v| serde_json::from_value(v.clone()).ok());
        p.set_os_features(features);
        p
    }

    pub(super) fn set_platform(&mut self, platform: &Platform) {
        let fields = [
            ("os", Some(platform.os().to_string())),
            ("architecture", Some(platform.architecture().to_string())),
            ("variant", platform.variant().clone()),
            ("os.version", platform.os_version().clone()),
        ];
        for (key, value) in fields {
            match value {
                Some(v) => self.json.insert(key.into(), Value::from(v)),
                None => self.json.remove(key),
            };
        }
        match platform.os_features() {
            Some(features) => self
                .json
                .insert("os.features".into(), Value::from(features.clone())),
            None => self.json.remove("os.features"),
        };
    }

    /// `rootfs.diff_ids`, in order.
    pub fn diff_ids(&self) -> Vec<Digest> {
        self.json
            .get("rootfs")
            .and_then(|r| r.get("diff_ids"))
            .and_then(Value::as_array)
            .map(|ids| {
                ids.iter()
                    .filter_map(|id| id.as_str().and_then(|s| Digest::parse(s).ok()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The history, in order (empty when absent).
    pub fn history(&self) -> Vec<History> {
        self.json
            .get("history")
            .filter(|h| !h.is_null())
            .and_then(|h| serde_json::from_value(h.clone()).ok())
            .unwrap_or_default()
    }

    /// Checks that layers, `rootfs.diff_ids` and history agree: one diffID per layer, and,
    /// when there is a history, one entry without `empty_layer` per layer (SPEC C-J09).
    pub fn check_layers(&self, digest: &Digest, layers: usize) -> Result<()> {
        let diff_ids = self.diff_ids().len();
        if diff_ids != layers {
            return Err(invalid_config(
                digest,
                format!("config has {diff_ids} diff_ids but the manifest has {layers} layers"),
            ));
        }
        let history = self.history();
        let non_empty = history
            .iter()
            .filter(|h| h.empty_layer() != Some(true))
            .count();
        if !history.is_empty() && non_empty != diff_ids {
            return Err(invalid_config(
                digest,
                format!(
                    "history has {non_empty} entries for layers but rootfs has {diff_ids} diff_ids"
                ),
            ));
        }
        Ok(())
    }

    /// The execution parameters (`config`), created empty when absent or null.
    pub(super) fn exec(&mut self) -> &mut Map<String, Value> {
        let entry = self
            .json
            .entry("config")
            .or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        match entry {
            Value::Object(map) => map,
            // Made an object just above.
            _ => unreachable!("config was just made an object"),
        }
    }

    pub(super) fn exec_map(&mut self, key: &str) -> &mut Map<String, Value> {
        let entry = self
            .exec()
            .entry(key)
            .or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        match entry {
            Value::Object(map) => map,
            _ => unreachable!("{key} was just made an object"),
        }
    }

    /// Sets the environment variable `key` to `value`, replacing an existing `key=...` (or
    /// bare `key`) entry in place, else appending.
    pub(super) fn set_env(&mut self, key: &str, value: &str) {
        let entry = Value::String(format!("{key}={value}"));
        let env = self.exec_array("Env");
        match env.iter_mut().find(|v| env_entry_is(v, key)) {
            Some(existing) => *existing = entry,
            None => env.push(entry),
        }
    }

    /// Removes every entry of the environment variable `key`.
    pub(super) fn remove_env(&mut self, key: &str) {
        if let Some(Value::Array(items)) = self.existing_exec().and_then(|e| e.get_mut("Env")) {
            items.retain(|v| !env_entry_is(v, key));
        }
    }

    /// The array `key` of the execution parameters, created empty when absent or not an
    /// array.
    fn exec_array(&mut self, key: &str) -> &mut Vec<Value> {
        let entry = self
            .exec()
            .entry(key)
            .or_insert_with(|| Value::Array(Vec::new()));
        if !entry.is_array() {
            *entry = Value::Array(Vec::new());
        }
        match entry {
            Value::Array(items) => items,
            _ => unreachable!("{key} was just made an array"),
        }
    }

    /// Removes `key` from the map `map` of the execution parameters (labels, exposed ports),
    /// leaving the config as it was when there is no such map.
    pub(super) fn remove_from_exec_map(&mut self, map: &str, key: &str) {
        if let Some(Value::Object(entries)) = self.existing_exec().and_then(|e| e.get_mut(map)) {
            entries.remove(key);
        }
    }

    /// The execution parameters, when the config has them (removals create nothing).
    fn existing_exec(&mut self) -> Option<&mut Map<String, Value>> {
        match self.json.get_mut("config") {
            Some(Value::Object(map)) => Some(map),
            _ => None,
        }
    }

    pub(super) fn history_mut(&mut self) -> &mut Vec<Value> {
        let entry = self
            .json
            .entry("history")
            .or_insert_with(|| Value::Array(Vec::new()));
        if !entry.is_array() {
            *entry = Value::Array(Vec::new());
        }
        match entry {
            Value::Array(items) => items,
            _ => unreachable!("history was just made an array"),
        }
    }

    pub(super) fn push_diff_id(&mut self, diff_id: &Digest) {
        if let Some(Value::Array(ids)) = self
            .json
            .get_mut("rootfs")
            .and_then(|r| r.get_mut("diff_ids"))
        {
            ids.push(Value::from(diff_id.as_str()));
        }
    }
}

/// Whether an `Env` entry sets `key` (`key=...`, or a bare `key`).
fn env_entry_is(entry: &Value, key: &str) -> bool {
    entry.as_str().is_some_and(|s| {
        s.strip_prefix(key)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('='))
    })
}
