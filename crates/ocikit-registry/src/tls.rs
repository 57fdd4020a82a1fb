//! HTTPS: a rustls server configuration (on ring) from PEM files. The connection loop
//! ([`crate::conn`]) runs each handshake on the connection's own task, off the accept loop,
//! so one slow or silent client cannot hold up the others.

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::error::{Error, Result};

/// A TLS server configuration for [`crate::Registry::serve_tls`].
#[derive(Clone, Debug)]
pub struct TlsConfig {
    config: Arc<rustls::ServerConfig>,
}

impl TlsConfig {
    /// A configuration from a PEM certificate chain (leaf first) and a PEM private key
    /// (PKCS#8, PKCS#1 or SEC1), offering HTTP/1.1 by ALPN, TLS 1.2 and 1.3, on ring.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<TlsConfig> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| Error::ReadFile {
                path: path.to_owned(),
                source,
            })
        };
        let cert_pem = read(cert)?;
        let key_pem = read(key)?;
        let chain = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|source| Error::Pem {
                path: cert.to_owned(),
                what: "certificate chain",
                source,
            })?;
        if chain.is_empty() {
            return Err(Error::Pem {
                path: cert.to_owned(),
                what: "certificate chain",
                source: rustls_pki_types::pem::Error::NoItemsFound,
            });
        }
        let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|source| Error::Pem {
            path: key.to_owned(),
            what: "private key",
            source,
        })?;
        TlsConfig::from_der(chain, key_der)
    }

    /// A configuration from a DER certificate chain and private key.
    pub fn from_der(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<TlsConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(Error::Tls)?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(Error::Tls)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsConfig {
            config: Arc::new(config),
        })
    }

    /// A configuration from a rustls one built by the caller (client certificates, other
    /// providers, certificate resolvers).
    pub fn from_rustls(config: Arc<rustls::ServerConfig>) -> TlsConfig {
        TlsConfig { config }
    }

    /// The acceptor the connection loop runs each handshake with (on the connection's own
    /// task, bounded in time, counted against the connection limits).
    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.config.clone())
    }
}
