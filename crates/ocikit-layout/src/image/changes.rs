//! [`ConfigChanges`]: edits of an image's config and manifest annotations, checked as a
//! whole before any is made.

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use ocikit_digest::oci_spec::image::{ImageConfiguration, Platform};
use ocikit_digest::platform;
use serde_json::{Map, Value};

use super::{ImageConfig, format_created, invalid_image};
use crate::{Error, Result};

/// Edits of an image's config (environment, entrypoint, command, labels, working
/// directory, user, exposed ports, platform, creation time, author) and of its manifest's
/// annotations: what `ocikit build` sets on a new image, applicable to any image's config.
///
/// Build it with the chaining setters (or by assigning the public fields), then apply it
/// with [`ConfigChanges::apply_to_config`] (the crate's [`ImageConfig`], which keeps fields
/// ocikit does not know), [`ConfigChanges::apply`] (an oci-spec [`ImageConfiguration`]) or
/// [`ImageBuilder::apply`](super::ImageBuilder::apply) (config and annotations of an image
/// being built). Every apply first [checks](ConfigChanges::check) all the changes and
/// refuses bad ones with [`Error::InvalidChange`], changing nothing:
///
/// - an environment variable or removal whose name is empty or holds `=` or NUL (its value
///   may hold anything but NUL);
/// - a label or annotation (or removal) with an empty key;
/// - an exposed port that is not `PORT[/PROTO]`, PORT 1-65535 and PROTO `tcp`, `udp` or
///   `sctp`;
/// - a platform with an empty `os` or `architecture`; a time outside the years 0000-9999;
/// - a name both set and removed (which one wins would be a guess).
///
/// Removals come first, then settings: an environment variable set again replaces its
/// entry in place (so `PATH` keeps its position), a new one is appended. Removing what is not
/// there is not an error. Platform names are normalised (`x86_64` is written `amd64`).
///
/// ```
/// use ocikit_layout::image::{ConfigChanges, ImageConfig};
///
/// let mut config = ImageConfig::new(&ocikit_digest::platform::parse("linux/amd64").unwrap());
/// ConfigChanges::new().env("PATH", "/bin").env("DEBUG", "1").apply_to_config(&mut config)?;
/// ConfigChanges::new()
///     .env("PATH", "/usr/bin:/bin")
///     .remove_env("DEBUG")
///     .cmd(["/bin/sh"])
///     .apply_to_config(&mut config)?;
/// let typed = config.to_oci()?;
/// let exec = typed.config().as_ref().unwrap();
/// assert_eq!(exec.env().as_deref(), Some(&["PATH=/usr/bin:/bin".to_string()][..]));
///
/// // Checked before anything changes: a name holding `=` is refused.
/// let bad = ConfigChanges::new().env("A=B", "1").apply_to_config(&mut config);
/// assert!(matches!(bad, Err(ocikit_layout::Error::InvalidChange { field: "env", .. })));
/// # Ok::<(), ocikit_layout::Error>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct ConfigChanges {
    /// Environment variables to set, in order (`KEY`, `VALUE`).
    pub env: Vec<(String, String)>,
    /// Environment variables to remove, by name.
    pub env_remove: Vec<String>,
    /// The new `Entrypoint`.
    pub entrypoint: Option<Vec<String>>,
    /// The new `Cmd`.
    pub cmd: Option<Vec<String>>,
    /// Labels to set (`Labels` of the config).
    pub labels: Vec<(String, String)>,
    /// Labels to remove, by key.
    pub labels_remove: Vec<String>,
    /// Manifest annotations to set.
    pub annotations: Vec<(String, String)>,
    /// Manifest annotations to remove, by key.
    pub annotations_remove: Vec<String>,
    /// The new `WorkingDir`.
    pub working_dir: Option<String>,
    /// The new `User` (`name`, `uid`, `user:group`, `uid:gid`...).
    pub user: Option<String>,
    /// Ports to expose (`8080/tcp`, `53/udp`, `80`).
    pub expose: Vec<String>,
    /// Exposed ports to remove.
    pub expose_remove: Vec<String>,
    /// The new platform (`os`, `architecture`, `variant`, `os.version`, `os.features`).
    pub platform: Option<Platform>,
    /// The new `created` time.
    pub created: Option<SystemTime>,
    /// The new `author`.
    pub author: Option<String>,
}

/// What is wrong with one change of a [`ConfigChanges`] ([`Error::InvalidChange`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChangeErrorKind {
    /// An empty variable name, label or annotation key.
    #[error("the name is empty")]
    EmptyName,
    /// An environment variable name holding `=`.
    #[error("the name holds `=`")]
    EqualsInName,
    /// A NUL byte, which an environment cannot hold.
    #[error("it holds a NUL byte")]
    Nul,
    /// Not `PORT[/PROTO]` with PORT 1-65535 and PROTO `tcp`, `udp` or `sctp`.
    #[error("not PORT[/PROTO] with PORT 1-65535 and PROTO tcp, udp or sctp")]
    BadPort,
    /// A platform whose `os` or `architecture` is empty.
    #[error("os or architecture is empty")]
    BadPlatform,
    /// A time outside the years 0000-9999.
    #[error("outside the years 0000-9999")]
    BadTime,
    /// The same name both set and removed.
    #[error("it is both set and removed")]
    SetAndRemoved,
}

fn refuse(field: &'static str, value: impl Into<String>, kind: ChangeErrorKind) -> Error {
    Error::InvalidChange {
        field,
        value: value.into(),
        kind,
    }
}

impl ConfigChanges {
    /// No changes.
    pub fn new() -> ConfigChanges {
        ConfigChanges::default()
    }

    /// Whether there is nothing to change.
    pub fn is_empty(&self) -> bool {
        self == &ConfigChanges::default()
    }

    /// Sets the environment variable `key` to `value`.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> ConfigChanges {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Removes the environment variable `key`.
    pub fn remove_env(mut self, key: impl Into<String>) -> ConfigChanges {
        self.env_remove.push(key.into());
        self
    }

    /// Sets `Entrypoint`.
    pub fn entrypoint<I, S>(mut self, args: I) -> ConfigChanges
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.entrypoint = Some(args.into_iter().map(Into::into).collect());
        self
    }

    /// Sets `Cmd`.
    pub fn cmd<I, S>(mut self, args: I) -> ConfigChanges
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.cmd = Some(args.into_iter().map(Into::into).collect());
        self
    }

    /// Sets the label `key`.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> ConfigChanges {
        self.labels.push((key.into(), value.into()));
        self
    }

    /// Removes the label `key`.
    pub fn remove_label(mut self, key: impl Into<String>) -> ConfigChanges {
        self.labels_remove.push(key.into());
        self
    }

    /// Sets the manifest annotation `key`.
    pub fn annotation(mut self, key: impl Into<String>, value: impl Into<String>) -> ConfigChanges {
        self.annotations.push((key.into(), value.into()));
        self
    }

    /// Removes the manifest annotation `key`.
    pub fn remove_annotation(mut self, key: impl Into<String>) -> ConfigChanges {
        self.annotations_remove.push(key.into());
        self
    }

    /// Sets `WorkingDir`.
    pub fn working_dir(mut self, dir: impl Into<String>) -> ConfigChanges {
        self.working_dir = Some(dir.into());
        self
    }

    /// Sets `User`.
    pub fn user(mut self, user: impl Into<String>) -> ConfigChanges {
        self.user = Some(user.into());
        self
    }

    /// Exposes a port (`8080/tcp`, `53/udp`, `80`).
    pub fn expose(mut self, port: impl Into<String>) -> ConfigChanges {
        self.expose.push(port.into());
        self
    }

    /// Stops exposing a port.
    pub fn remove_expose(mut self, port: impl Into<String>) -> ConfigChanges {
        self.expose_remove.push(port.into());
        self
    }

    /// Sets the platform.
    pub fn platform(mut self, platform: Platform) -> ConfigChanges {
        self.platform = Some(platform);
        self
    }

    /// Sets `created`.
    pub fn created(mut self, time: SystemTime) -> ConfigChanges {
        self.created = Some(time);
        self
    }

    /// Sets `author`.
    pub fn author(mut self, author: impl Into<String>) -> ConfigChanges {
        self.author = Some(author.into());
        self
    }

    /// Checks every change (see the [type's documentation](ConfigChanges)); the apply
    /// functions call it first.
    pub fn check(&self) -> Result<()> {
        let env_name = |name: &str| -> Result<()> {
            if name.is_empty() {
                return Err(refuse("env", name, ChangeErrorKind::EmptyName));
            }
            if name.contains('=') {
                return Err(refuse("env", name, ChangeErrorKind::EqualsInName));
            }
            if name.contains('\0') {
                return Err(refuse("env", name, ChangeErrorKind::Nul));
            }
            Ok(())
        };
        for (key, value) in &self.env {
            env_name(key)?;
            if value.contains('\0') {
                return Err(refuse(
                    "env",
                    format!("{key}={value}"),
                    ChangeErrorKind::Nul,
                ));
            }
        }
        for key in &self.env_remove {
            env_name(key)?;
        }
        let keys = |field: &'static str, set: &[(String, String)], removed: &[String]| {
            for key in set.iter().map(|(k, _)| k).chain(removed) {
                if key.is_empty() {
                    return Err(refuse(field, key.as_str(), ChangeErrorKind::EmptyName));
                }
            }
            both(field, set.iter().map(|(k, _)| k), removed)
        };
        keys("label", &self.labels, &self.labels_remove)?;
        keys("annotation", &self.annotations, &self.annotations_remove)?;
        both("env", self.env.iter().map(|(k, _)| k), &self.env_remove)?;
        for port in self.expose.iter().chain(&self.expose_remove) {
            if !is_port(port) {
                return Err(refuse("expose", port.as_str(), ChangeErrorKind::BadPort));
            }
        }
        both("expose", self.expose.iter(), &self.expose_remove)?;
        if let Some(p) = &self.platform
            && (p.os().to_string().is_empty() || p.architecture().to_string().is_empty())
        {
            return Err(refuse(
                "platform",
                platform::format(p),
                ChangeErrorKind::BadPlatform,
            ));
        }
        if let Some(time) = self.created
            && format_created(time).is_none()
        {
            return Err(refuse(
                "created",
                format!("{time:?}"),
                ChangeErrorKind::BadTime,
            ));
        }
        Ok(())
    }

    /// Applies the config changes (all but the annotations) to `config`, after
    /// [checking](ConfigChanges::check) them all; on error `config` is unchanged. Fields
    /// ocikit does not know are kept.
    pub fn apply_to_config(&self, config: &mut ImageConfig) -> Result<()> {
        self.check()?;
        for key in &self.env_remove {
            config.remove_env(key);
        }
        for (key, value) in &self.env {
            config.set_env(key, value);
        }
        let words = |args: &[String]| Value::Array(args.iter().cloned().map(Value::from).collect());
        if let Some(args) = &self.entrypoint {
            config.exec().insert("Entrypoint".into(), words(args));
        }
        if let Some(args) = &self.cmd {
            config.exec().insert("Cmd".into(), words(args));
        }
        for key in &self.labels_remove {
            config.remove_from_exec_map("Labels", key);
        }
        for (key, value) in &self.labels {
            config
                .exec_map("Labels")
                .insert(key.clone(), Value::from(value.as_str()));
        }
        if let Some(dir) = &self.working_dir {
            config
                .exec()
                .insert("WorkingDir".into(), Value::from(dir.as_str()));
        }
        if let Some(user) = &self.user {
            config
                .exec()
                .insert("User".into(), Value::from(user.as_str()));
        }
        for port in &self.expose_remove {
            config.remove_from_exec_map("ExposedPorts", port);
        }
        for port in &self.expose {
            config
                .exec_map("ExposedPorts")
                .insert(port.clone(), Value::Object(Map::new()));
        }
        if let Some(p) = &self.platform {
            config.set_platform(&platform::normalize(p));
        }
        if let Some(text) = self.created.and_then(format_created) {
            config.json.insert("created".into(), Value::String(text));
        }
        if let Some(author) = &self.author {
            config
                .json
                .insert("author".into(), Value::from(author.as_str()));
        }
        Ok(())
    }

    /// Applies the annotation changes to a manifest's `annotations`, after
    /// [checking](ConfigChanges::check) every change; on error they are unchanged.
    pub fn apply_to_annotations(&self, annotations: &mut BTreeMap<String, String>) -> Result<()> {
        self.check()?;
        for key in &self.annotations_remove {
            annotations.remove(key);
        }
        for (key, value) in &self.annotations {
            annotations.insert(key.clone(), value.clone());
        }
        Ok(())
    }

    /// [`apply_to_config`](ConfigChanges::apply_to_config) on an oci-spec
    /// [`ImageConfiguration`] (which has no room for fields it does not know).
    pub fn apply(&self, config: &mut ImageConfiguration) -> Result<()> {
        let Value::Object(json) = serde_json::to_value(&*config)
            .map_err(|e| invalid_image(format!("cannot read the configuration: {e}")))?
        else {
            return Err(invalid_image("the configuration is not a JSON object"));
        };
        let mut edited = ImageConfig { json };
        self.apply_to_config(&mut edited)?;
        *config = edited.to_oci()?;
        Ok(())
    }
}

/// Refuses a name that is both set and removed.
fn both<'a>(
    field: &'static str,
    set: impl Iterator<Item = &'a String>,
    removed: &[String],
) -> Result<()> {
    let removed: BTreeSet<&String> = removed.iter().collect();
    for key in set {
        if removed.contains(key) {
            return Err(refuse(field, key.as_str(), ChangeErrorKind::SetAndRemoved));
        }
    }
    Ok(())
}

/// `PORT[/PROTO]`: PORT 1-65535 in decimal, PROTO `tcp`, `udp` or `sctp`.
fn is_port(text: &str) -> bool {
    let (port, proto) = match text.split_once('/') {
        Some((port, proto)) => (port, Some(proto)),
        None => (text, None),
    };
    let number = !port.is_empty()
        && port.len() <= 5
        && port.bytes().all(|b| b.is_ascii_digit())
        && port.parse::<u32>().is_ok_and(|n| (1..=65535).contains(&n));
    number && proto.is_none_or(|p| matches!(p, "tcp" | "udp" | "sctp"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_port_slash_protocol() {
        for good in ["80", "8080/tcp", "53/udp", "65535/sctp", "1"] {
            assert!(is_port(good), "{good}");
        }
        for bad in [
            "", "0", "65536", "80/", "/tcp", "80/TCP", "http", "80/tcp/x", "+80", "080000",
        ] {
            assert!(!is_port(bad), "{bad}");
        }
    }
}
