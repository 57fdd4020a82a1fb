//! Credentials kept in Docker's `config.json` (`auths`), read and written the way `docker
//! login` does, so that ocikit, docker, podman and skopeo share one login.
//!
//! Credentials come from a credential helper (`credHelpers` for the registry, else
//! `credsStore`; `docker-credential-<name> get`), else from the `auths` entries: `auth`
//! (base64 of `user:password`) or `username` and `password`. [`DockerConfig::set`],
//! [`DockerConfig::remove`] and [`DockerConfig::save`] touch `auths` only; every other field
//! of the file is kept as it is. [`DockerConfig::store`] and [`DockerConfig::erase`] do what
//! `docker login` and `docker logout` do: with a helper configured for the registry the
//! secret goes to the helper (`store`, `erase`) and `auths` keeps only an empty entry, never
//! the password.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::{Map, Value};

use super::Credentials;
use crate::{Error, Result};

/// The Docker Hub key `docker login` writes.
const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";
/// Largest config file read.
const MAX_SIZE: u64 = 4 << 20;

/// A `config.json`, as read (or empty when absent).
#[derive(Clone, Debug)]
pub struct DockerConfig {
    path: PathBuf,
    root: Map<String, Value>,
}

fn config_error(path: &Path, reason: impl Into<String>) -> Error {
    Error::ConfigFile {
        path: path.to_path_buf(),
        reason: reason.into(),
        source: None,
    }
}

fn io_error(path: &Path, reason: &str, source: std::io::Error) -> Error {
    Error::ConfigFile {
        path: path.to_path_buf(),
        reason: reason.into(),
        source: Some(source),
    }
}

fn is_docker_hub(registry: &str) -> bool {
    matches!(
        registry,
        "docker.io" | "index.docker.io" | "registry-1.docker.io"
    )
}

/// The key `docker login` files `registry` under.
fn primary_key(registry: &str) -> String {
    if is_docker_hub(registry) {
        DOCKER_HUB_KEY.to_string()
    } else {
        registry.to_string()
    }
}

/// The program for credential helper `helper`, which must be a plain name.
fn helper_program(path: &Path, helper: &str) -> Result<String> {
    if helper.is_empty()
        || !helper
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(config_error(
            path,
            format!("credential helper name {helper:?} is not a plain name"),
        ));
    }
    Ok(format!("docker-credential-{helper}"))
}

/// What a helper printed, for an error message (its first line, stdout then stderr).
fn said(output: &std::process::Output) -> String {
    let text = String::from_utf8_lossy(&output.stdout).trim().to_string()
        + String::from_utf8_lossy(&output.stderr).trim();
    match text.lines().next() {
        Some(line) if !line.is_empty() => line.chars().take(200).collect(),
        _ => format!("exit status {}", output.status),
    }
}

/// The keys an `auths` entry for `registry` may be filed under.
fn keys(registry: &str) -> Vec<String> {
    if is_docker_hub(registry) {
        return vec![
            DOCKER_HUB_KEY.to_string(),
            "index.docker.io".into(),
            "docker.io".into(),
            "registry-1.docker.io".into(),
        ];
    }
    vec![
        registry.to_string(),
        format!("https://{registry}"),
        format!("http://{registry}"),
        format!("https://{registry}/v1/"),
        format!("https://{registry}/v2/"),
    ]
}

impl DockerConfig {
    /// Where Docker keeps it: `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`;
    /// `None` without either variable.
    pub fn default_path() -> Option<PathBuf> {
        if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
            return Some(PathBuf::from(dir).join("config.json"));
        }
        let home = std::env::var_os("HOME").filter(|h| !h.is_empty())?;
        Some(PathBuf::from(home).join(".docker").join("config.json"))
    }

    /// Reads the file at `path`; a missing file is an empty configuration.
    pub fn load(path: impl Into<PathBuf>) -> Result<DockerConfig> {
        let path = path.into();
        let bytes = match std::fs::metadata(&path) {
            Ok(meta) if meta.len() > MAX_SIZE => {
                return Err(config_error(&path, "larger than 4 MiB"));
            }
            Ok(_) => std::fs::read(&path).map_err(|e| io_error(&path, "cannot read it", e))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(DockerConfig {
                    path,
                    root: Map::new(),
                });
            }
            Err(e) => return Err(io_error(&path, "cannot read it", e)),
        };
        let root = match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(root)) => root,
            Ok(_) => return Err(config_error(&path, "not a JSON object")),
            Err(e) => return Err(config_error(&path, format!("not JSON: {e}"))),
        };
        Ok(DockerConfig { path, root })
    }

    /// The file this configuration is read from and written to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The credentials for `registry` (`host[:port]`), if any: from the credential helper
    /// `credHelpers` names for it, else from the `credsStore` helper, else from `auths`.
    /// A helper is the program `docker-credential-<name>` on `PATH`, run as `get` with the
    /// registry on standard input (Docker's protocol); its "not found" falls through to the
    /// next source. Identity tokens (`<token>` users) are not supported and count as none.
    pub fn credentials(&self, registry: &str) -> Result<Option<Credentials>> {
        if let Some((key, helper)) = self.registry_helper(registry)
            && let Some(found) = self.run_helper(helper, &key)?
        {
            return Ok(Some(found));
        }
        if let Some(store) = self.creds_store() {
            for key in keys(registry) {
                if let Some(found) = self.run_helper(store, &key)? {
                    return Ok(Some(found));
                }
            }
        }
        let Some(auths) = self.root.get("auths").and_then(Value::as_object) else {
            return Ok(None);
        };
        for key in keys(registry) {
            let Some(entry) = auths.get(&key).and_then(Value::as_object) else {
                continue;
            };
            if let Some(auth) = entry
                .get("auth")
                .and_then(Value::as_str)
                .filter(|a| !a.is_empty())
            {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(auth.trim())
                    .ok()
                    .and_then(|raw| String::from_utf8(raw).ok())
                    .and_then(|text| Credentials::parse(&text))
                    .ok_or_else(|| {
                        config_error(
                            &self.path,
                            format!("the `auth` of `{key}` is not base64 of user:password"),
                        )
                    })?;
                return Ok(Some(decoded));
            }
            if let (Some(user), Some(password)) = (
                entry.get("username").and_then(Value::as_str),
                entry.get("password").and_then(Value::as_str),
            ) && !user.is_empty()
            {
                return Ok(Some(Credentials::new(user, password)));
            }
        }
        Ok(None)
    }

    /// Runs `docker-credential-<helper> get` for `server`; `None` when it has nothing.
    fn run_helper(&self, helper: &str, server: &str) -> Result<Option<Credentials>> {
        let program = helper_program(&self.path, helper)?;
        let output = match self.call_helper(&program, "get", server.as_bytes())? {
            // A helper named but not installed gives nothing, as for an anonymous pull.
            None => return Ok(None),
            Some(output) => output,
        };
        if !output.status.success() {
            // Docker's helpers answer "credentials not found" with a failure exit.
            return Ok(None);
        }
        #[derive(serde::Deserialize)]
        struct Answer {
            #[serde(rename = "Username", default)]
            username: String,
            #[serde(rename = "Secret", default)]
            secret: String,
        }
        let answer: Answer = serde_json::from_slice(&output.stdout).map_err(|e| {
            config_error(
                &self.path,
                format!("{program} answered something other than its JSON: {e}"),
            )
        })?;
        if answer.username.is_empty() || answer.username == "<token>" {
            return Ok(None);
        }
        Ok(Some(Credentials::new(answer.username, answer.secret)))
    }

    /// Runs `program action` with `input` on its standard input; `None` when the program
    /// is not installed.
    fn call_helper(
        &self,
        program: &str,
        action: &str,
        input: &[u8],
    ) -> Result<Option<std::process::Output>> {
        let helper_error = |reason: String, source: std::io::Error| Error::ConfigFile {
            path: self.path.clone(),
            reason,
            source: Some(source),
        };
        let mut child = match std::process::Command::new(program)
            .arg(action)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
        {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(helper_error(format!("cannot run {program}"), e)),
        };
        if let Some(mut stdin) = child.stdin.take() {
            std::io::Write::write_all(&mut stdin, input)
                .map_err(|e| helper_error(format!("cannot talk to {program}"), e))?;
        }
        child
            .wait_with_output()
            .map(Some)
            .map_err(|e| helper_error(format!("cannot run {program}"), e))
    }

    /// The credential helper that keeps `registry`'s secrets, if the file names one:
    /// `credHelpers` for it, else `credsStore`.
    pub fn helper_for(&self, registry: &str) -> Option<String> {
        self.registry_helper(registry)
            .map(|(_, helper)| helper)
            .or_else(|| self.creds_store())
            .map(str::to_string)
    }

    /// The `credHelpers` entry for `registry`: the key it is filed under and the helper.
    fn registry_helper(&self, registry: &str) -> Option<(String, &str)> {
        let helpers = self.root.get("credHelpers").and_then(Value::as_object)?;
        keys(registry)
            .into_iter()
            .find_map(|k| helpers.get(&k).and_then(Value::as_str).map(|h| (k, h)))
    }

    /// The `credsStore` helper, if one is named.
    fn creds_store(&self) -> Option<&str> {
        self.root
            .get("credsStore")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    }

    /// Keeps `credentials` for `registry` as `docker login` does: through the registry's
    /// credential helper when the file names one ([`helper_for`](Self::helper_for); the
    /// helper must be installed), with only an empty `auths` entry left in the file, else
    /// in `auths` ([`set`](Self::set)). Returns the helper used, if any. Call
    /// [`save`](Self::save) afterwards.
    pub fn store(&mut self, registry: &str, credentials: &Credentials) -> Result<Option<String>> {
        let Some(helper) = self.helper_for(registry) else {
            self.set(registry, credentials);
            return Ok(None);
        };
        let program = helper_program(&self.path, &helper)?;
        let key = primary_key(registry);
        let input = serde_json::json!({
            "ServerURL": key,
            "Username": credentials.username,
            "Secret": credentials.password,
        });
        let output = self
            .call_helper(&program, "store", input.to_string().as_bytes())?
            .ok_or_else(|| {
                config_error(
                    &self.path,
                    format!("it names the credential helper {program}, which is not installed"),
                )
            })?;
        if !output.status.success() {
            return Err(config_error(
                &self.path,
                format!(
                    "{program} refused to store the credentials: {}",
                    said(&output)
                ),
            ));
        }
        // No secret stays in the file; the empty entry tells docker the registry is logged in.
        self.remove(registry);
        self.insert_auth(key, Map::new());
        Ok(Some(helper))
    }

    /// Forgets `registry`'s credentials as `docker logout` does: in its credential helper
    /// (when the file names one and it is installed) and in `auths`. Returns whether there
    /// were any. Call [`save`](Self::save) afterwards.
    pub fn erase(&mut self, registry: &str) -> Result<bool> {
        let mut erased = false;
        if let Some(helper) = self.helper_for(registry) {
            let program = helper_program(&self.path, &helper)?;
            let key = primary_key(registry);
            if let Some(output) = self.call_helper(&program, "erase", key.as_bytes())? {
                // Helpers fail with "credentials not found" for a registry they do not hold.
                erased = output.status.success();
            }
        }
        Ok(self.remove(registry) | erased)
    }

    /// Files `entry` under `key` in `auths`, which is created (or reset, if it is not an
    /// object) as needed.
    fn insert_auth(&mut self, key: String, entry: Map<String, Value>) {
        let auths = self
            .root
            .entry("auths")
            .or_insert_with(|| Value::Object(Map::new()));
        if !auths.is_object() {
            *auths = Value::Object(Map::new());
        }
        if let Some(auths) = auths.as_object_mut() {
            auths.insert(key, Value::Object(entry));
        }
    }

    /// Records `credentials` for `registry` (replacing any entry under another key form).
    pub fn set(&mut self, registry: &str, credentials: &Credentials) {
        self.remove(registry);
        let raw = format!("{}:{}", credentials.username, credentials.password);
        let auth = base64::engine::general_purpose::STANDARD.encode(raw);
        let mut entry = Map::new();
        entry.insert("auth".into(), Value::String(auth));
        self.insert_auth(primary_key(registry), entry);
    }

    /// Forgets the credentials for `registry`; returns whether there were any.
    pub fn remove(&mut self, registry: &str) -> bool {
        let Some(Value::Object(auths)) = self.root.get_mut("auths") else {
            return false;
        };
        let mut removed = false;
        for key in keys(registry) {
            removed |= auths.remove(&key).is_some();
        }
        removed
    }

    /// Writes the file atomically (a temp file beside it, then a rename), readable by its
    /// owner only (0600); the directory is created (0700) if needed.
    pub fn save(&self) -> Result<()> {
        let path = &self.path;
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if !dir.exists() {
            let mut builder = std::fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
            builder
                .create(dir)
                .map_err(|e| io_error(path, "cannot create its directory", e))?;
        }
        let mut bytes = serde_json::to_vec_pretty(&Value::Object(self.root.clone()))
            .map_err(|e| config_error(path, format!("cannot serialise it: {e}")))?;
        bytes.push(b'\n');
        let mut temp = tempfile::Builder::new()
            .prefix(".config.json.")
            .tempfile_in(dir)
            .map_err(|e| io_error(path, "cannot create a temp file beside it", e))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            temp.as_file()
                .set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(|e| io_error(path, "cannot restrict its permissions", e))?;
        }
        std::io::Write::write_all(&mut temp, &bytes)
            .map_err(|e| io_error(path, "cannot write it", e))?;
        temp.as_file()
            .sync_all()
            .map_err(|e| io_error(path, "cannot sync it", e))?;
        temp.persist(path)
            .map_err(|e| io_error(path, "cannot rename it into place", e.error))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_writes_and_forgets_credentials_keeping_other_fields() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("config.json");
        let mut config = DockerConfig::load(&path).unwrap();
        assert!(config.credentials("127.0.0.1:5000").unwrap().is_none());
        config.set("127.0.0.1:5000", &Credentials::new("alice", "pw:1"));
        config.set("docker.io", &Credentials::new("bob", "hub"));
        config.save().unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("https://index.docker.io/v1/"), "{text}");
        assert!(text.contains("YWxpY2U6cHc6MQ=="), "{text}");

        // Another tool's fields survive; entries filed as URLs are found too.
        std::fs::write(
            &path,
            r#"{"auths":{"https://r.example:443":{"auth":"dTpw"},"h":{"username":"x","password":"y"}},"credsStore":"desktop","psFormat":"table"}"#,
        )
        .unwrap();
        let mut config = DockerConfig::load(&path).unwrap();
        assert_eq!(
            config.credentials("r.example:443").unwrap(),
            Some(Credentials::new("u", "p"))
        );
        assert_eq!(
            config.credentials("h").unwrap(),
            Some(Credentials::new("x", "y"))
        );
        assert!(config.remove("r.example:443"));
        assert!(!config.remove("r.example:443"));
        config.save().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("psFormat") && text.contains("credsStore"),
            "{text}"
        );
        assert!(!text.contains("r.example"), "{text}");

        std::fs::write(&path, r#"{"auths":{"bad":{"auth":"!!!"}}}"#).unwrap();
        let config = DockerConfig::load(&path).unwrap();
        assert!(matches!(
            config.credentials("bad"),
            Err(Error::ConfigFile { .. })
        ));
        std::fs::write(&path, "[]").unwrap();
        assert!(matches!(
            DockerConfig::load(&path),
            Err(Error::ConfigFile { .. })
        ));
    }
}
