//! Logging in and out as `docker login` and `docker logout` do: the credentials are
//! checked against the registry (`GET /v2/`), then kept in Docker's `config.json` (or in the
//! credential helper it names), shared with docker, podman and skopeo; logging out forgets
//! them there.

use std::path::{Path, PathBuf};

use crate::{ClientBuilder, Credentials, DockerConfig, Error, Result};

/// Where credentials are kept: the file given (`--authfile`), else Docker's
/// ([`DockerConfig::default_path`]: `$DOCKER_CONFIG/config.json`, else
/// `~/.docker/config.json`). Refuses to guess when there is neither a file given nor
/// `DOCKER_CONFIG` or `HOME` ([`Error::NoAuthFile`]).
pub fn auth_file_path(authfile: Option<&Path>) -> Result<PathBuf> {
    match authfile {
        Some(path) => Ok(path.to_path_buf()),
        None => DockerConfig::default_path().ok_or(Error::NoAuthFile),
    }
}

/// The registry of `HOST[:PORT]` or `docker://HOST[:PORT][/...]`, checked against the
/// registry grammar and mapped to the host its API is served from (`docker.io` →
/// `registry-1.docker.io`): the name to build a client for and to file credentials under.
pub fn registry_host(text: &str) -> Result<String> {
    let text = text.strip_prefix("docker://").unwrap_or(text);
    let host = text.split('/').next().unwrap_or("");
    if host.is_empty() {
        return Err(Error::NoRegistry);
    }
    ocikit_digest::reference::validate_registry(host).map_err(|source| Error::InvalidRegistry {
        registry: host.to_owned(),
        source,
    })?;
    Ok(ocikit_digest::reference::api_host(host).to_owned())
}

/// Options of [`login`] and [`logout`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoginOptions {
    /// The credentials file to use instead of Docker's ([`auth_file_path`]).
    pub authfile: Option<PathBuf>,
}

impl LoginOptions {
    /// Docker's credentials file.
    pub fn new() -> LoginOptions {
        LoginOptions::default()
    }

    /// Sets [`LoginOptions::authfile`].
    pub fn authfile(mut self, path: Option<PathBuf>) -> LoginOptions {
        self.authfile = path;
        self
    }
}

/// What [`login`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoginReport {
    /// The registry logged in to (`host[:port]`).
    pub registry: String,
    /// The user.
    pub username: String,
    /// The credentials file.
    pub authfile: PathBuf,
    /// The credential helper keeping the secret (`docker-credential-<helper>`), when the
    /// file names one; the file then holds only an empty entry for the registry.
    pub helper: Option<String>,
}

/// What [`logout`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogoutReport {
    /// The registry (`host[:port]`).
    pub registry: String,
    /// The credentials file.
    pub authfile: PathBuf,
    /// Whether there were credentials to forget.
    pub removed: bool,
}

/// Logs in to the registry `client` is set up for (its TLS settings, a registry name from
/// [`registry_host`]) as `credentials`, as `docker login` does: refuses a user name that is
/// empty or holds a `:` ([`Error::InvalidUsername`]), reads the credentials file, checks the
/// credentials with `GET /v2/` ([`crate::Client::ping`]; refused ones are
/// [`Error::Unauthorized`]), and only then keeps them ([`DockerConfig::store`]: in the
/// credential helper the file names, else in its `auths`) and writes the file atomically.
/// A login that fails leaves the file as it was.
pub async fn login(
    client: ClientBuilder,
    credentials: Credentials,
    options: &LoginOptions,
) -> Result<LoginReport> {
    if credentials.username.is_empty() || credentials.username.contains(':') {
        return Err(Error::InvalidUsername {
            username: credentials.username,
        });
    }
    let authfile = auth_file_path(options.authfile.as_deref())?;
    let registry = client.registry.clone();
    let username = credentials.username.clone();
    let mut config = load(&authfile).await?;
    let client = client.credentials(Some(credentials.clone())).build()?;
    client.ping().await?;
    let key = registry.clone();
    let helper = blocking(&authfile, move || {
        let helper = config.store(&key, &credentials)?;
        config.save()?;
        Ok(helper)
    })
    .await?;
    Ok(LoginReport {
        registry,
        username,
        authfile,
        helper,
    })
}

/// Forgets the credentials of `registry` (`HOST[:PORT]` or `docker://HOST[:PORT]`, read by
/// [`registry_host`]) as `docker logout` does: in the credential helper the file names
/// and in its `auths` ([`DockerConfig::erase`]); the file is rewritten only when something
/// was removed from it or its helper.
pub async fn logout(registry: &str, options: &LoginOptions) -> Result<LogoutReport> {
    let registry = registry_host(registry)?;
    let authfile = auth_file_path(options.authfile.as_deref())?;
    let mut config = load(&authfile).await?;
    let name = registry.clone();
    let removed = blocking(&authfile, move || {
        let removed = config.erase(&name)?;
        if removed {
            config.save()?;
        }
        Ok(removed)
    })
    .await?;
    Ok(LogoutReport {
        registry,
        authfile,
        removed,
    })
}

/// [`DockerConfig::load`], off the async threads.
async fn load(path: &Path) -> Result<DockerConfig> {
    let owned = path.to_path_buf();
    blocking(path, move || DockerConfig::load(owned)).await
}

/// Runs work on the credentials file at `path` (reading, writing, credential helpers) on
/// the blocking pool.
async fn blocking<T, F>(path: &Path, work: F) -> Result<T>
where
    F: FnOnce() -> Result<T> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::ConfigFile {
            path: path.to_path_buf(),
            reason: "the task handling it failed".into(),
            source: Some(std::io::Error::other(e)),
        })?
}
