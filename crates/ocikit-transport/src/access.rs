//! How to reach a registry: TLS settings and credentials, turned into a client.

use std::path::{Path, PathBuf};

use ocikit_client::{Client, ClientBuilder, Credentials, DockerConfig};

use crate::error::{Error, Result};

/// How to reach one registry (one side of a copy): TLS verification, trusted authorities,
/// client certificates and credentials. The default verifies TLS against the system's
/// roots and takes credentials from Docker's `config.json` (`ocikit login`, docker,
/// podman and skopeo write it), else none.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegistryOptions {
    insecure: bool,
    cert_dir: Option<PathBuf>,
    ca_file: Option<PathBuf>,
    credentials: Option<Credentials>,
    authfile: Option<PathBuf>,
}

impl RegistryOptions {
    /// TLS verified, credentials from the default `config.json` if any.
    pub fn new() -> RegistryOptions {
        RegistryOptions::default()
    }

    /// Whether to verify the registry's TLS certificate (default `true`); `false` accepts
    /// any certificate, and plain HTTP if the registry does not speak HTTPS (skopeo's
    /// `--tls-verify=false`, for test registries).
    pub fn with_tls_verify(mut self, verify: bool) -> RegistryOptions {
        self.insecure = !verify;
        self
    }

    /// Trusts the authorities in `DIR/*.crt`, and presents `DIR/NAME.cert` with
    /// `DIR/NAME.key` if the registry asks for a client certificate (containers' layout).
    pub fn with_cert_dir(mut self, dir: Option<PathBuf>) -> RegistryOptions {
        self.cert_dir = dir;
        self
    }

    /// Trusts the authorities of this PEM file as well as the system's.
    pub fn with_ca_file(mut self, file: Option<PathBuf>) -> RegistryOptions {
        self.ca_file = file;
        self
    }

    /// Uses these credentials (instead of the stored ones).
    pub fn with_credentials(mut self, credentials: Option<Credentials>) -> RegistryOptions {
        self.credentials = credentials;
        self
    }

    /// Reads stored credentials from this Docker `config.json` instead of the default one
    /// (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`).
    pub fn with_authfile(mut self, path: Option<PathBuf>) -> RegistryOptions {
        self.authfile = path;
        self
    }

    /// A client builder for `registry` with these TLS settings (no credentials yet).
    pub fn builder(&self, registry: &str) -> ClientBuilder {
        let mut builder = Client::builder(registry).allow_insecure(self.insecure);
        if let Some(dir) = &self.cert_dir {
            builder = builder.cert_dir(dir);
        }
        if let Some(file) = &self.ca_file {
            builder = builder.ca_file(file);
        }
        builder
    }

    /// A client for `registry`: these TLS settings, and the credentials given, else the
    /// stored ones.
    pub fn client(&self, registry: &str) -> Result<Client> {
        self.client_with(registry, |builder| builder)
    }

    /// [`RegistryOptions::client`], with the builder adjusted by `adjust` (retries,
    /// timeouts) before it is built.
    pub(crate) fn client_with(
        &self,
        registry: &str,
        adjust: impl FnOnce(ClientBuilder) -> ClientBuilder,
    ) -> Result<Client> {
        let credentials = match &self.credentials {
            Some(credentials) => Some(credentials.clone()),
            None => self.stored_credentials(registry)?,
        };
        adjust(self.builder(registry))
            .credentials(credentials)
            .build()
            .map_err(|source| Error::Client {
                registry: registry.to_string(),
                source,
            })
    }

    /// What `ocikit login` (or docker, podman, skopeo) stored for `registry`. Without a
    /// file to look in (no HOME, no DOCKER_CONFIG), anonymous.
    fn stored_credentials(&self, registry: &str) -> Result<Option<Credentials>> {
        let path = match &self.authfile {
            Some(path) => path.clone(),
            None => match DockerConfig::default_path() {
                Some(path) => path,
                None => return Ok(None),
            },
        };
        let stored =
            |path: &Path| DockerConfig::load(path).and_then(|config| config.credentials(registry));
        stored(&path).map_err(|source| Error::StoredCredentials {
            registry: registry.to_string(),
            source,
        })
    }
}
