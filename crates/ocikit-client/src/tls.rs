//! TLS: the certificate verifiers (the platform's with the caller's roots, the exact trust
//! of a self-signed CA certificate, none at all for insecure clients), certificates read
//! from files and containers-style directories, and TLS failures told apart.

use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The certificate verifier of a client: the platform verifier with the roots the caller
/// added, and one case more, as Go's TLS stack (skopeo's) has it. A server certificate that
/// is itself one of those added roots, byte for byte, is accepted although it is a CA
/// (basicConstraints CA:TRUE, as `openssl req -x509` makes a self-signed certificate by
/// default), once its host name matches. The verifier refuses such a certificate only for
/// being a CA, after it checked its validity period; the user trusted exactly that
/// certificate, so nothing else is taken on faith. A CA certificate that the user did not
/// add is refused as before ([`Error::CaAsServerCertificate`]).
#[derive(Debug)]
pub(crate) struct TrustedExactly {
    pub(crate) inner: rustls_platform_verifier::Verifier,
    pub(crate) trusted: Vec<rustls_pki_types::CertificateDer<'static>>,
}

impl rustls::client::danger::ServerCertVerifier for TrustedExactly {
    fn verify_server_cert(
        &self,
        end_entity: &rustls_pki_types::CertificateDer<'_>,
        intermediates: &[rustls_pki_types::CertificateDer<'_>],
        server_name: &rustls_pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls_pki_types::UnixTime,
    ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let refused = match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Ok(verified) => return Ok(verified),
            Err(e) => e,
        };
        if !is_ca_as_end_entity(&refused)
            || !self
                .trusted
                .iter()
                .any(|t| t.as_ref() == end_entity.as_ref())
        {
            return Err(refused);
        }
        let certificate = webpki::EndEntityCert::try_from(end_entity).map_err(|_| {
            rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)
        })?;
        certificate
            .verify_is_valid_for_subject_name(server_name)
            .map_err(|_| {
                rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName)
            })?;
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Whether the certificate verifier refused a server certificate for being a CA
/// (basicConstraints CA:TRUE), the one refusal [`TrustedExactly`] may overrule.
pub(crate) fn is_ca_as_end_entity(error: &rustls::Error) -> bool {
    matches!(
        error,
        rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other))
            if other.0.downcast_ref::<webpki::Error>() == Some(&webpki::Error::CaUsedAsEndEntity)
    )
}

/// A certificate verifier that accepts anything ([`ClientBuilder::allow_insecure`]), still
/// checking handshake signatures so the session is at least consistent.
#[derive(Debug)]
pub(crate) struct NoVerification(pub(crate) Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls_pki_types::CertificateDer<'_>,
        _intermediates: &[rustls_pki_types::CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Why a certificate file or directory cannot be used, and the cause.
pub(crate) type ReadFailure = (String, Option<Box<dyn std::error::Error + Send + Sync>>);

/// The certificates of a PEM file (at least one).
pub(crate) fn read_certificates(
    path: &Path,
) -> std::result::Result<Vec<rustls_pki_types::CertificateDer<'static>>, ReadFailure> {
    use rustls_pki_types::pem::PemObject as _;
    let bytes = std::fs::read(path).map_err(|e| ("cannot read it".to_string(), Some(e.into())))?;
    let certificates = rustls_pki_types::CertificateDer::pem_slice_iter(&bytes)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| ("not PEM certificates".to_string(), Some(e.into())))?;
    if certificates.is_empty() {
        return Err(("holds no PEM certificate".into(), None));
    }
    Ok(certificates)
}

/// A client certificate chain and its private key.
pub(crate) type Identity = (
    Vec<rustls_pki_types::CertificateDer<'static>>,
    rustls_pki_types::PrivateKeyDer<'static>,
);

/// The roots (`*.crt`) and the client certificate (`NAME.cert` + `NAME.key`) of a
/// containers-style certificate directory.
#[allow(clippy::type_complexity)]
pub(crate) fn read_cert_dir(
    dir: &Path,
) -> std::result::Result<
    (
        Vec<rustls_pki_types::CertificateDer<'static>>,
        Option<Identity>,
    ),
    ReadFailure,
> {
    use rustls_pki_types::pem::PemObject as _;
    let entries =
        std::fs::read_dir(dir).map_err(|e| ("cannot read it".to_string(), Some(e.into())))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| ("cannot read it".to_string(), Some(e.into())))?;
        names.push(entry.path());
    }
    names.sort();
    let with_extension = |ext: &str| -> Vec<PathBuf> {
        names
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == ext))
            .cloned()
            .collect()
    };
    let mut roots = Vec::new();
    for file in with_extension("crt") {
        roots.extend(
            read_certificates(&file)
                .map_err(|(reason, source)| (format!("`{}` {reason}", file.display()), source))?,
        );
    }
    let certs = with_extension("cert");
    let keys = with_extension("key");
    for key in &keys {
        if !certs.contains(&key.with_extension("cert")) {
            return Err((
                format!("`{}` has no matching .cert file", key.display()),
                None,
            ));
        }
    }
    let mut identity = None;
    for cert in &certs {
        let key = cert.with_extension("key");
        if !keys.contains(&key) {
            return Err((
                format!("`{}` has no matching .key file", cert.display()),
                None,
            ));
        }
        if identity.is_some() {
            return Err(("holds more than one client certificate".into(), None));
        }
        let chain = read_certificates(cert)
            .map_err(|(reason, source)| (format!("`{}` {reason}", cert.display()), source))?;
        let der = rustls_pki_types::PrivateKeyDer::from_pem_file(&key).map_err(|e| {
            (
                format!("`{}` is not a PEM private key", key.display()),
                Some(e.into()),
            )
        })?;
        identity = Some((chain, der));
    }
    Ok((roots, identity))
}

/// The TLS error under a request error, if the request failed in the TLS layer.
pub(crate) fn tls_failure(e: &reqwest::Error) -> Option<&rustls::Error> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(tls) = c.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        // An io::Error's `source` skips the error it wraps (which may be another
        // io::Error): go into it instead.
        cause = match c
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => c.source(),
        };
    }
    None
}

/// Whether a TLS failure means the server answered in plain text (an HTTP server).
pub(crate) fn answered_plain_text(e: &rustls::Error) -> bool {
    matches!(
        e,
        rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType)
    )
}
