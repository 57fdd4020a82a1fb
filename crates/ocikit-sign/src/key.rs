//! ECDSA P-256 keys in cosign's files.
//!
//! - [`PrivateKey`]: generated with ring, kept as PKCS#8 DER, written and read as cosign's
//!   encrypted key file: a PEM block labelled [`COSIGN_PRIVATE_KEY_LABEL`] (or
//!   [`SIGSTORE_PRIVATE_KEY_LABEL`], cosign 2's label; both are read) whose body is a JSON
//!   object
//!
//!   ```text
//!   {"kdf":{"name":"scrypt","params":{"N":32768,"r":8,"p":1},"salt":"<base64>"},
//!    "cipher":{"name":"nacl/secretbox","nonce":"<base64>"},"ciphertext":"<base64>"}
//!   ```
//!
//!   (one line in the file): the PKCS#8 DER sealed by NaCl secretbox (XSalsa20-Poly1305,
//!   tag first) under a 32-byte key that scrypt derives from the passphrase and a 32-byte
//!   salt. This is the format of go-securesystemslib's `encrypted` package, which cosign,
//!   sigstore-go and containers/image use.
//! - [`PublicKey`]: a PKIX `SubjectPublicKeyInfo` in a `PUBLIC KEY` PEM block, as
//!   `cosign generate-key-pair` writes `cosign.pub`.
//!
//! Only the scrypt costs go-securesystemslib accepts are read ([`ScryptCost`]): N = 2^15,
//! 2^16 or 2^17 with r = 8, p = 1, so a hostile file cannot make a reader spend unbounded
//! memory or time. New files use N = 2^15 ([`ScryptCost::Legacy`]), the one cost every
//! reader accepts (skopeo 1.9 and cosign 1 read no other).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use crypto_secretbox::aead::{Aead, KeyInit};
use crypto_secretbox::{Nonce, XSalsa20Poly1305};
use ocikit_digest::Digest;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{self as ring_sig, EcdsaKeyPair, KeyPair as _};
use serde::Serialize;
use yasna::models::ObjectIdentifier;
use zeroize::Zeroizing;

use crate::{Error, Result};

/// The PEM label of cosign 1's encrypted private keys, written by default: every reader of
/// cosign keys accepts it (containers/image before 5.24, so skopeo 1.9, reads only this one).
pub const COSIGN_PRIVATE_KEY_LABEL: &str = "ENCRYPTED COSIGN PRIVATE KEY";
/// The PEM label cosign 2 and sigstore-go write for encrypted private keys.
pub const SIGSTORE_PRIVATE_KEY_LABEL: &str = "ENCRYPTED SIGSTORE PRIVATE KEY";
/// The PEM label of a PKIX public key.
pub const PUBLIC_KEY_LABEL: &str = "PUBLIC KEY";
/// The file name `cosign generate-key-pair` gives the encrypted private key.
pub const PRIVATE_KEY_FILE: &str = "cosign.key";
/// The file name `cosign generate-key-pair` gives the public key.
pub const PUBLIC_KEY_FILE: &str = "cosign.pub";
/// The environment variable cosign (and ocikit's commands) read a key's passphrase from.
/// Reading it is the caller's business: this crate reads no environment.
pub const PASSPHRASE_ENV: &str = "COSIGN_PASSWORD";
/// The largest key file read, in bytes. A P-256 key file is under 1 KiB.
pub const MAX_KEY_FILE_LEN: usize = 64 * 1024;

const KDF_SCRYPT: &str = "scrypt";
const CIPHER_SECRETBOX: &str = "nacl/secretbox";
const SALT_LEN: usize = 32;
const NONCE_LEN: usize = 24;
const BOX_KEY_LEN: usize = 32;
const TAG_LEN: usize = 16;

/// Which PEM label an encrypted private key is written with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PrivateKeyLabel {
    /// [`COSIGN_PRIVATE_KEY_LABEL`], read by every cosign-compatible tool (the default).
    #[default]
    Cosign,
    /// [`SIGSTORE_PRIVATE_KEY_LABEL`], what cosign 2 writes; older readers (skopeo 1.9)
    /// refuse it.
    Sigstore,
}

impl PrivateKeyLabel {
    /// The PEM label itself.
    pub fn as_str(self) -> &'static str {
        match self {
            PrivateKeyLabel::Cosign => COSIGN_PRIVATE_KEY_LABEL,
            PrivateKeyLabel::Sigstore => SIGSTORE_PRIVATE_KEY_LABEL,
        }
    }
}

/// The scrypt costs of an encrypted key file: go-securesystemslib's three levels, all with
/// r = 8 and p = 1. Files with any other parameters are refused.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ScryptCost {
    /// N = 2^15: cosign 1's cost, and the only one older readers accept (the default).
    #[default]
    Legacy,
    /// N = 2^16: go-securesystemslib's current default, which cosign 2 writes.
    Standard,
    /// N = 2^17: OWASP's recommendation.
    Owasp,
}

impl ScryptCost {
    /// log2(N).
    pub fn log_n(self) -> u8 {
        match self {
            ScryptCost::Legacy => 15,
            ScryptCost::Standard => 16,
            ScryptCost::Owasp => 17,
        }
    }

    /// The cost with these parameters, if it is one of the three.
    fn from_params(n: u64, r: u64, p: u64) -> Option<ScryptCost> {
        if r != 8 || p != 1 {
            return None;
        }
        [ScryptCost::Legacy, ScryptCost::Standard, ScryptCost::Owasp]
            .into_iter()
            .find(|cost| n == 1u64 << cost.log_n())
    }
}

/// How [`PrivateKey::to_encrypted_pem_with`] writes a key file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EncryptOptions {
    label: PrivateKeyLabel,
    cost: ScryptCost,
}

impl EncryptOptions {
    /// cosign 1's label and cost, which every reader accepts.
    pub fn new() -> EncryptOptions {
        EncryptOptions::default()
    }

    /// Writes the PEM block with `label`.
    pub fn with_label(mut self, label: PrivateKeyLabel) -> EncryptOptions {
        self.label = label;
        self
    }

    /// Derives the key with scrypt at `cost`.
    pub fn with_cost(mut self, cost: ScryptCost) -> EncryptOptions {
        self.cost = cost;
        self
    }
}

/// Why a key, key file or key structure was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind}")]
pub struct KeyError {
    kind: KeyErrorKind,
}

impl KeyError {
    pub(crate) fn new(kind: KeyErrorKind) -> KeyError {
        KeyError { kind }
    }

    /// What exactly was wrong.
    pub fn kind(&self) -> &KeyErrorKind {
        &self.kind
    }
}

impl From<KeyErrorKind> for Error {
    fn from(kind: KeyErrorKind) -> Error {
        Error::Key(KeyError::new(kind))
    }
}

/// The precise reason a key was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyErrorKind {
    /// The file is not one well-formed PEM block.
    #[error("not a PEM block: {reason}")]
    Pem {
        /// The PEM reader's complaint.
        reason: String,
    },
    /// The file is larger than [`MAX_KEY_FILE_LEN`].
    #[error("key file is larger than {max} bytes")]
    TooLarge {
        /// The limit.
        max: usize,
    },
    /// The PEM block has another label than the one expected.
    #[error("PEM block is labelled `{found}`, expected {expected}")]
    UnexpectedLabel {
        /// The label found.
        found: String,
        /// The label(s) expected.
        expected: &'static str,
    },
    /// An unencrypted private key was given where an encrypted key file belongs.
    #[error("`{label}` is an unencrypted private key; an encrypted cosign key file is required")]
    Unencrypted {
        /// The label found.
        label: String,
    },
    /// The body of an encrypted key file is not the JSON object it should be.
    #[error("encrypted key file body is malformed: {reason}")]
    Malformed {
        /// What is missing or wrong.
        reason: String,
    },
    /// The key derivation function is not scrypt.
    #[error("unsupported key derivation function `{name}` (only scrypt)")]
    UnsupportedKdf {
        /// The name in the file.
        name: String,
    },
    /// The cipher is not NaCl secretbox.
    #[error("unsupported cipher `{name}` (only nacl/secretbox)")]
    UnsupportedCipher {
        /// The name in the file.
        name: String,
    },
    /// The scrypt parameters are not one of the accepted costs ([`ScryptCost`]).
    #[error("unsupported scrypt parameters N={n}, r={r}, p={p}")]
    UnsupportedScryptParams {
        /// N.
        n: u64,
        /// r.
        r: u64,
        /// p.
        p: u64,
    },
    /// A field of the key file had a bad value (not base64, wrong length).
    #[error("key file field `{field}` is invalid: {reason}")]
    InvalidField {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The key is not ECDSA on P-256.
    #[error("unsupported key type {algorithm}; only ECDSA P-256 keys are supported")]
    UnsupportedAlgorithm {
        /// The algorithm (and curve) of the key, by name when known, else by OID.
        algorithm: String,
    },
    /// The DER of a key structure is malformed.
    #[error("malformed {structure}")]
    InvalidDer {
        /// `PKCS#8 private key` or `SubjectPublicKeyInfo`.
        structure: &'static str,
    },
    /// The key structure parsed, but ring refused the key (an inconsistent or invalid key).
    #[error("key refused: {reason}")]
    Rejected {
        /// ring's reason.
        reason: String,
    },
}

fn kind(kind: KeyErrorKind) -> Error {
    Error::from(kind)
}

const OID_EC_PUBLIC_KEY: &[u64] = &[1, 2, 840, 10045, 2, 1];
const OID_P256: &[u64] = &[1, 2, 840, 10045, 3, 1, 7];

/// A human name for a key algorithm (and, for EC keys, its curve parameters).
fn algorithm_name(algorithm: &ObjectIdentifier, params: Option<&[u8]>) -> String {
    let curve = params.and_then(|p| yasna::parse_der(p, |r| r.read_oid()).ok());
    let components: &[u64] = algorithm.components();
    match components {
        [1, 2, 840, 10045, 2, 1] => {
            let curve_name = match curve.as_ref().map(|c| c.components().as_slice()) {
                Some([1, 2, 840, 10045, 3, 1, 7]) => "P-256".to_string(),
                Some([1, 3, 132, 0, 34]) => "P-384".to_string(),
                Some([1, 3, 132, 0, 35]) => "P-521".to_string(),
                Some([1, 3, 132, 0, 10]) => "secp256k1".to_string(),
                Some(_) => format!(
                    "curve {}",
                    curve.as_ref().map(|c| c.to_string()).unwrap_or_default()
                ),
                None => "without a named curve".to_string(),
            };
            format!("ECDSA {curve_name}")
        }
        [1, 2, 840, 113549, 1, 1, 1] => "RSA".to_string(),
        [1, 3, 101, 112] => "Ed25519".to_string(),
        [1, 3, 101, 113] => "Ed448".to_string(),
        _ => format!("with algorithm OID {algorithm}"),
    }
}

/// Whether an algorithm identifier is ecPublicKey on P-256.
fn is_p256(algorithm: &ObjectIdentifier, params: Option<&[u8]>) -> bool {
    algorithm.components().as_slice() == OID_EC_PUBLIC_KEY
        && params
            .and_then(|p| yasna::parse_der(p, |r| r.read_oid()).ok())
            .is_some_and(|curve| curve.components().as_slice() == OID_P256)
}

/// Reads an AlgorithmIdentifier: the OID and the parameters' raw DER.
fn read_algorithm(
    r: yasna::BERReader<'_, '_>,
) -> yasna::ASN1Result<(ObjectIdentifier, Option<Vec<u8>>)> {
    r.read_sequence(|r| {
        let oid = r.next().read_oid()?;
        let params = r.read_optional(|r| r.read_der())?;
        Ok((oid, params))
    })
}

/// A PEM block as Go's `encoding/pem` writes it: 64-column lines ending in `\n`.
fn armor(label: &str, contents: Vec<u8>) -> String {
    pem::encode_config(
        &pem::Pem::new(label, contents),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// One PEM block, with the size limit.
fn parse_pem(bytes: &[u8]) -> Result<pem::Pem> {
    if bytes.len() > MAX_KEY_FILE_LEN {
        return Err(kind(KeyErrorKind::TooLarge {
            max: MAX_KEY_FILE_LEN,
        }));
    }
    let blocks = pem::parse_many(bytes).map_err(|e| {
        kind(KeyErrorKind::Pem {
            reason: e.to_string(),
        })
    })?;
    let mut blocks = blocks.into_iter();
    match (blocks.next(), blocks.next()) {
        (Some(block), None) => Ok(block),
        (None, _) => Err(kind(KeyErrorKind::Pem {
            reason: "no PEM block found".into(),
        })),
        (Some(_), Some(_)) => Err(kind(KeyErrorKind::Pem {
            reason: "more than one PEM block".into(),
        })),
    }
}

/// An ECDSA P-256 public key.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PublicKey {
    /// The uncompressed point (65 bytes, `04 || X || Y`).
    point: Vec<u8>,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("fingerprint", &self.fingerprint().to_string())
            .finish()
    }
}

impl PublicKey {
    /// Reads a `PUBLIC KEY` PEM file (PKIX `SubjectPublicKeyInfo`), as `cosign.pub`.
    pub fn from_pem(bytes: &[u8]) -> Result<PublicKey> {
        let block = parse_pem(bytes)?;
        if block.tag() != PUBLIC_KEY_LABEL {
            return Err(kind(KeyErrorKind::UnexpectedLabel {
                found: block.tag().to_string(),
                expected: "`PUBLIC KEY`",
            }));
        }
        PublicKey::from_spki_der(block.contents())
    }

    /// Reads the DER of a PKIX `SubjectPublicKeyInfo`.
    pub fn from_spki_der(der: &[u8]) -> Result<PublicKey> {
        let invalid = || {
            kind(KeyErrorKind::InvalidDer {
                structure: "SubjectPublicKeyInfo",
            })
        };
        let ((algorithm, params), (bits, bit_len)) = yasna::parse_der(der, |r| {
            r.read_sequence(|r| {
                let algorithm = read_algorithm(r.next())?;
                let key = r.next().read_bitvec_bytes()?;
                Ok((algorithm, key))
            })
        })
        .map_err(|_| invalid())?;
        if !is_p256(&algorithm, params.as_deref()) {
            return Err(kind(KeyErrorKind::UnsupportedAlgorithm {
                algorithm: algorithm_name(&algorithm, params.as_deref()),
            }));
        }
        if bit_len != bits.len() * 8 {
            return Err(invalid());
        }
        PublicKey::from_point(bits)
    }

    /// A key from its uncompressed point. ring checks that the point is on the curve at
    /// each verification (a point off it verifies nothing).
    fn from_point(point: Vec<u8>) -> Result<PublicKey> {
        if point.len() != 65 || point[0] != 4 {
            return Err(kind(KeyErrorKind::Rejected {
                reason: "not an uncompressed P-256 point".into(),
            }));
        }
        Ok(PublicKey { point })
    }

    /// The DER of the key's PKIX `SubjectPublicKeyInfo`.
    pub fn to_spki_der(&self) -> Vec<u8> {
        yasna::construct_der(|w| {
            w.write_sequence(|w| {
                w.next().write_sequence(|w| {
                    w.next()
                        .write_oid(&ObjectIdentifier::from_slice(OID_EC_PUBLIC_KEY));
                    w.next().write_oid(&ObjectIdentifier::from_slice(OID_P256));
                });
                w.next()
                    .write_bitvec_bytes(&self.point, self.point.len() * 8);
            })
        })
    }

    /// The key as a `PUBLIC KEY` PEM file, as cosign writes `cosign.pub`.
    pub fn to_pem(&self) -> String {
        armor(PUBLIC_KEY_LABEL, self.to_spki_der())
    }

    /// The SHA-256 digest of the key's `SubjectPublicKeyInfo` DER: a stable name for the key
    /// in reports.
    pub fn fingerprint(&self) -> Digest {
        Digest::sha256(&self.to_spki_der())
    }

    /// Verifies a DER ECDSA P-256 SHA-256 signature over `message`.
    ///
    /// [`Error::SignatureEncoding`] when the signature is longer than a P-256 DER signature
    /// can be; [`Error::BadSignature`] when it does not verify (malformed DER included).
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<()> {
        if signature.is_empty() || signature.len() > MAX_DER_SIGNATURE_LEN {
            return Err(Error::SignatureEncoding);
        }
        ring_sig::UnparsedPublicKey::new(&ring_sig::ECDSA_P256_SHA256_ASN1, &self.point)
            .verify(message, signature)
            .map_err(|_| Error::BadSignature)
    }
}

/// The longest DER ECDSA P-256 signature: a SEQUENCE of two INTEGERs of up to 33 bytes.
pub(crate) const MAX_DER_SIGNATURE_LEN: usize = 72;

/// An ECDSA P-256 private key.
///
/// `Debug` shows only the public key's fingerprint; the PKCS#8 bytes are wiped on drop.
pub struct PrivateKey {
    pair: EcdsaKeyPair,
    pkcs8: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey")
            .field("public_key", &self.public_key())
            .finish_non_exhaustive()
    }
}

impl PrivateKey {
    /// A new key from the system's random number generator.
    pub fn generate() -> Result<PrivateKey> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ring_sig::ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
            .map_err(|_| Error::Random)?;
        PrivateKey::from_pkcs8_der(pkcs8.as_ref())
    }

    /// A key from its PKCS#8 DER (unencrypted `PrivateKeyInfo`).
    pub fn from_pkcs8_der(der: &[u8]) -> Result<PrivateKey> {
        let (algorithm, params) = yasna::parse_der(der, |r| {
            r.read_sequence(|r| {
                let _version = r.next().read_u8()?;
                let algorithm = read_algorithm(r.next())?;
                let _key = r.next().read_bytes()?;
                // Attributes and the public key, whatever they hold: ring checks them.
                while r.read_optional(|r| r.read_der())?.is_some() {}
                Ok(algorithm)
            })
        })
        .map_err(|_| {
            kind(KeyErrorKind::InvalidDer {
                structure: "PKCS#8 private key",
            })
        })?;
        if !is_p256(&algorithm, params.as_deref()) {
            return Err(kind(KeyErrorKind::UnsupportedAlgorithm {
                algorithm: algorithm_name(&algorithm, params.as_deref()),
            }));
        }
        let pair = EcdsaKeyPair::from_pkcs8(
            &ring_sig::ECDSA_P256_SHA256_ASN1_SIGNING,
            der,
            &SystemRandom::new(),
        )
        .map_err(|e| {
            kind(KeyErrorKind::Rejected {
                reason: e.to_string(),
            })
        })?;
        Ok(PrivateKey {
            pair,
            pkcs8: Zeroizing::new(der.to_vec()),
        })
    }

    /// The key's PKCS#8 DER (unencrypted: handle with care).
    pub fn to_pkcs8_der(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The public half.
    pub fn public_key(&self) -> PublicKey {
        PublicKey {
            point: self.pair.public_key().as_ref().to_vec(),
        }
    }

    /// Signs `message` with ECDSA P-256 over SHA-256; the signature is ASN.1 DER, as cosign
    /// writes it (base64 of it is the `dev.cosignproject.cosign/signature` annotation).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>> {
        let signature = self
            .pair
            .sign(&SystemRandom::new(), message)
            .map_err(|_| Error::Random)?;
        Ok(signature.as_ref().to_vec())
    }

    /// Reads cosign's encrypted key file (either label), decrypting it with `passphrase`.
    ///
    /// Refused: garbage or several PEM blocks, another label (an unencrypted `PRIVATE KEY` or
    /// `EC PRIVATE KEY` gets [`KeyErrorKind::Unencrypted`]), a malformed body, a KDF other
    /// than scrypt at an accepted cost, a cipher other than secretbox, a wrong passphrase or
    /// altered ciphertext ([`Error::Decrypt`]), a key that is not ECDSA P-256.
    pub fn from_encrypted_pem(bytes: &[u8], passphrase: &[u8]) -> Result<PrivateKey> {
        let block = parse_pem(bytes)?;
        match block.tag() {
            COSIGN_PRIVATE_KEY_LABEL | SIGSTORE_PRIVATE_KEY_LABEL => {}
            label @ ("PRIVATE KEY" | "EC PRIVATE KEY" | "RSA PRIVATE KEY") => {
                return Err(kind(KeyErrorKind::Unencrypted {
                    label: label.to_string(),
                }));
            }
            other => {
                return Err(kind(KeyErrorKind::UnexpectedLabel {
                    found: other.to_string(),
                    expected: "`ENCRYPTED SIGSTORE PRIVATE KEY` or `ENCRYPTED COSIGN PRIVATE KEY`",
                }));
            }
        }
        let der = decrypt(block.contents(), passphrase)?;
        PrivateKey::from_pkcs8_der(&der)
    }

    /// The key as cosign's encrypted key file, with cosign 1's label and scrypt cost (which
    /// every cosign-compatible reader accepts). The salt and nonce are fresh random bytes.
    pub fn to_encrypted_pem(&self, passphrase: &[u8]) -> Result<String> {
        self.to_encrypted_pem_with(passphrase, &EncryptOptions::new())
    }

    /// The key as cosign's encrypted key file, with the label and cost of `options`.
    pub fn to_encrypted_pem_with(
        &self,
        passphrase: &[u8],
        options: &EncryptOptions,
    ) -> Result<String> {
        let body = encrypt(&self.pkcs8, passphrase, options.cost)?;
        Ok(armor(options.label.as_str(), body))
    }
}

/// The JSON body, fields in go-securesystemslib's order.
#[derive(Serialize)]
struct EncryptedBody<'a> {
    kdf: KdfJson<'a>,
    cipher: CipherJson<'a>,
    ciphertext: String,
}

#[derive(Serialize)]
struct KdfJson<'a> {
    name: &'a str,
    params: ParamsJson,
    salt: String,
}

#[derive(Serialize)]
struct ParamsJson {
    #[serde(rename = "N")]
    n: u64,
    r: u64,
    p: u64,
}

#[derive(Serialize)]
struct CipherJson<'a> {
    name: &'a str,
    nonce: String,
}

fn derive_key(
    passphrase: &[u8],
    salt: &[u8],
    cost: ScryptCost,
) -> Result<Zeroizing<[u8; BOX_KEY_LEN]>> {
    let params = scrypt::Params::new(cost.log_n(), 8, 1).map_err(|_| {
        kind(KeyErrorKind::UnsupportedScryptParams {
            n: 1 << cost.log_n(),
            r: 8,
            p: 1,
        })
    })?;
    let mut key = Zeroizing::new([0u8; BOX_KEY_LEN]);
    scrypt::scrypt(passphrase, salt, &params, key.as_mut()).map_err(|_| {
        kind(KeyErrorKind::UnsupportedScryptParams {
            n: 1 << cost.log_n(),
            r: 8,
            p: 1,
        })
    })?;
    Ok(key)
}

/// Seals `plaintext` as go-securesystemslib's `encrypted.Encrypt` does; returns the JSON.
pub(crate) fn encrypt(plaintext: &[u8], passphrase: &[u8], cost: ScryptCost) -> Result<Vec<u8>> {
    let rng = SystemRandom::new();
    let mut salt = [0u8; SALT_LEN];
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill(&mut salt).map_err(|_| Error::Random)?;
    rng.fill(&mut nonce).map_err(|_| Error::Random)?;
    let key = derive_key(passphrase, &salt, cost)?;
    let cipher = XSalsa20Poly1305::new(key.as_ref().into());
    let ciphertext = cipher
        .encrypt(Nonce::from_slice(&nonce), plaintext)
        .map_err(|_| Error::Decrypt)?;
    let body = EncryptedBody {
        kdf: KdfJson {
            name: KDF_SCRYPT,
            params: ParamsJson {
                n: 1 << cost.log_n(),
                r: 8,
                p: 1,
            },
            salt: STANDARD.encode(salt),
        },
        cipher: CipherJson {
            name: CIPHER_SECRETBOX,
            nonce: STANDARD.encode(nonce),
        },
        ciphertext: STANDARD.encode(ciphertext),
    };
    serde_json::to_vec(&body).map_err(|e| {
        kind(KeyErrorKind::Malformed {
            reason: e.to_string(),
        })
    })
}

fn malformed(reason: impl Into<String>) -> Error {
    kind(KeyErrorKind::Malformed {
        reason: reason.into(),
    })
}

/// The object member `name` of `value`, which must be an object.
fn member<'v>(
    value: &'v serde_json::Value,
    name: &str,
    within: &str,
) -> Result<&'v serde_json::Value> {
    value
        .as_object()
        .ok_or_else(|| malformed(format!("`{within}` is not an object")))?
        .get(name)
        .ok_or_else(|| malformed(format!("`{within}` has no `{name}`")))
}

fn string_member<'v>(value: &'v serde_json::Value, name: &str, within: &str) -> Result<&'v str> {
    member(value, name, within)?
        .as_str()
        .ok_or_else(|| malformed(format!("`{within}.{name}` is not a string")))
}

fn integer_member(value: &serde_json::Value, name: &str, within: &str) -> Result<u64> {
    member(value, name, within)?
        .as_u64()
        .ok_or_else(|| malformed(format!("`{within}.{name}` is not a non-negative integer")))
}

fn base64_member(value: &serde_json::Value, name: &'static str, within: &str) -> Result<Vec<u8>> {
    let text = string_member(value, name, within)?;
    STANDARD.decode(text).map_err(|e| {
        kind(KeyErrorKind::InvalidField {
            field: name,
            reason: format!("not base64: {e}"),
        })
    })
}

/// Opens go-securesystemslib's `encrypted` JSON with `passphrase`.
pub(crate) fn decrypt(body: &[u8], passphrase: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    let value = ocikit_digest::json::parse_strict_with_limit(body, MAX_KEY_FILE_LEN)
        .map_err(|e| malformed(format!("not a JSON object: {e}")))?;
    if !value.is_object() {
        return Err(malformed("not a JSON object"));
    }
    let kdf = member(&value, "kdf", "body")?;
    let kdf_name = string_member(kdf, "name", "kdf")?;
    if kdf_name != KDF_SCRYPT {
        return Err(kind(KeyErrorKind::UnsupportedKdf {
            name: kdf_name.to_string(),
        }));
    }
    let cipher = member(&value, "cipher", "body")?;
    let cipher_name = string_member(cipher, "name", "cipher")?;
    if cipher_name != CIPHER_SECRETBOX {
        return Err(kind(KeyErrorKind::UnsupportedCipher {
            name: cipher_name.to_string(),
        }));
    }
    let params = member(kdf, "params", "kdf")?;
    let (n, r, p) = (
        integer_member(params, "N", "kdf.params")?,
        integer_member(params, "r", "kdf.params")?,
        integer_member(params, "p", "kdf.params")?,
    );
    let cost = ScryptCost::from_params(n, r, p)
        .ok_or_else(|| kind(KeyErrorKind::UnsupportedScryptParams { n, r, p }))?;
    let salt = base64_member(kdf, "salt", "kdf")?;
    let nonce = base64_member(cipher, "nonce", "cipher")?;
    if nonce.len() != NONCE_LEN {
        return Err(kind(KeyErrorKind::InvalidField {
            field: "nonce",
            reason: format!("{} bytes, expected {NONCE_LEN}", nonce.len()),
        }));
    }
    let ciphertext = base64_member(&value, "ciphertext", "body")?;
    if ciphertext.len() < TAG_LEN {
        return Err(kind(KeyErrorKind::InvalidField {
            field: "ciphertext",
            reason: format!(
                "{} bytes, shorter than the {TAG_LEN}-byte tag",
                ciphertext.len()
            ),
        }));
    }
    let key = derive_key(passphrase, &salt, cost)?;
    let cipher = XSalsa20Poly1305::new(key.as_ref().into());
    cipher
        .decrypt(Nonce::from_slice(&nonce), ciphertext.as_slice())
        .map(Zeroizing::new)
        .map_err(|_| Error::Decrypt)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_kind(result: Result<impl fmt::Debug>) -> KeyErrorKind {
        match result {
            Err(Error::Key(e)) => e.kind().clone(),
            other => panic!("expected a key error, got {other:?}"),
        }
    }

    #[test]
    fn a_generated_key_signs_and_its_public_key_verifies() {
        let key = PrivateKey::generate().unwrap();
        let public = key.public_key();
        let signature = key.sign(b"payload").unwrap();
        public.verify(b"payload", &signature).unwrap();
        assert!(matches!(
            public.verify(b"payloaD", &signature),
            Err(Error::BadSignature)
        ));
        let other = PrivateKey::generate().unwrap().public_key();
        assert!(matches!(
            other.verify(b"payload", &signature),
            Err(Error::BadSignature)
        ));
        assert!(matches!(
            public.verify(b"payload", &[0x30; 73]),
            Err(Error::SignatureEncoding)
        ));
    }

    #[test]
    fn public_key_pem_round_trips_and_is_the_p256_spki() {
        let public = PrivateKey::generate().unwrap().public_key();
        let pem_text = public.to_pem();
        assert!(pem_text.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        assert!(
            !pem_text.contains('\r'),
            "Go's encoding/pem writes LF line endings"
        );
        assert_eq!(PublicKey::from_pem(pem_text.as_bytes()).unwrap(), public);
        let der = public.to_spki_der();
        // The fixed prefix of every P-256 SubjectPublicKeyInfo (RFC 5480), then the point.
        let prefix = [
            0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
            0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
        ];
        assert_eq!(&der[..prefix.len()], &prefix);
        assert_eq!(&der[prefix.len()..], public.point.as_slice());
    }

    #[test]
    fn encrypted_key_round_trips_with_both_labels() {
        let key = PrivateKey::generate().unwrap();
        for label in [PrivateKeyLabel::Cosign, PrivateKeyLabel::Sigstore] {
            let text = key
                .to_encrypted_pem_with(b"pass", &EncryptOptions::new().with_label(label))
                .unwrap();
            assert!(text.starts_with(&format!("-----BEGIN {}-----", label.as_str())));
            let back = PrivateKey::from_encrypted_pem(text.as_bytes(), b"pass").unwrap();
            assert_eq!(back.public_key(), key.public_key());
            assert_eq!(back.to_pkcs8_der(), key.to_pkcs8_der());
        }
    }

    #[test]
    fn the_body_is_go_securesystemslib_json() {
        let key = PrivateKey::generate().unwrap();
        let text = key.to_encrypted_pem(b"").unwrap();
        let block = pem::parse(&text).unwrap();
        let body: serde_json::Value = serde_json::from_slice(block.contents()).unwrap();
        assert_eq!(body["kdf"]["name"], "scrypt");
        assert_eq!(body["kdf"]["params"]["N"], 32768);
        assert_eq!(body["kdf"]["params"]["r"], 8);
        assert_eq!(body["kdf"]["params"]["p"], 1);
        assert_eq!(body["cipher"]["name"], "nacl/secretbox");
        assert_eq!(
            STANDARD
                .decode(body["kdf"]["salt"].as_str().unwrap())
                .unwrap()
                .len(),
            32
        );
        let nonce = STANDARD
            .decode(body["cipher"]["nonce"].as_str().unwrap())
            .unwrap();
        assert_eq!(nonce.len(), 24);
        let sealed = STANDARD
            .decode(body["ciphertext"].as_str().unwrap())
            .unwrap();
        assert_eq!(sealed.len(), key.to_pkcs8_der().len() + TAG_LEN);
        // Keys in go's field order.
        let raw = std::str::from_utf8(block.contents()).unwrap();
        assert!(
            raw.starts_with(r#"{"kdf":{"name":"scrypt","params":{"N":32768,"r":8,"p":1},"salt":""#)
        );
        // An empty passphrase is allowed (cosign allows it too) and round-trips.
        PrivateKey::from_encrypted_pem(text.as_bytes(), b"").unwrap();
    }

    #[test]
    fn a_wrong_passphrase_or_altered_ciphertext_is_a_decrypt_error() {
        let key = PrivateKey::generate().unwrap();
        let text = key.to_encrypted_pem(b"right").unwrap();
        assert!(matches!(
            PrivateKey::from_encrypted_pem(text.as_bytes(), b"wrong"),
            Err(Error::Decrypt)
        ));
        let block = pem::parse(&text).unwrap();
        let mut body: serde_json::Value = serde_json::from_slice(block.contents()).unwrap();
        let mut sealed = STANDARD
            .decode(body["ciphertext"].as_str().unwrap())
            .unwrap();
        sealed[20] ^= 1;
        body["ciphertext"] = STANDARD.encode(&sealed).into();
        let altered = pem::encode(&pem::Pem::new(
            COSIGN_PRIVATE_KEY_LABEL,
            serde_json::to_vec(&body).unwrap(),
        ));
        assert!(matches!(
            PrivateKey::from_encrypted_pem(altered.as_bytes(), b"right"),
            Err(Error::Decrypt)
        ));
    }

    fn with_body(edit: impl FnOnce(&mut serde_json::Value)) -> String {
        let key = PrivateKey::generate().unwrap();
        let text = key.to_encrypted_pem(b"p").unwrap();
        let block = pem::parse(&text).unwrap();
        let mut body: serde_json::Value = serde_json::from_slice(block.contents()).unwrap();
        edit(&mut body);
        pem::encode(&pem::Pem::new(
            SIGSTORE_PRIVATE_KEY_LABEL,
            serde_json::to_vec(&body).unwrap(),
        ))
    }

    #[test]
    fn unknown_kdf_cipher_and_parameters_are_refused_before_any_work() {
        type Edit = Box<dyn FnOnce(&mut serde_json::Value)>;
        let cases: Vec<(Edit, KeyErrorKind)> = vec![
            (
                Box::new(|b| b["kdf"]["name"] = "argon2".into()),
                KeyErrorKind::UnsupportedKdf {
                    name: "argon2".into(),
                },
            ),
            (
                Box::new(|b| b["cipher"]["name"] = "aes-gcm".into()),
                KeyErrorKind::UnsupportedCipher {
                    name: "aes-gcm".into(),
                },
            ),
            (
                // A hostile cost (N = 2^40) is refused, never computed.
                Box::new(|b| b["kdf"]["params"]["N"] = (1u64 << 40).into()),
                KeyErrorKind::UnsupportedScryptParams {
                    n: 1 << 40,
                    r: 8,
                    p: 1,
                },
            ),
            (
                Box::new(|b| b["kdf"]["params"]["r"] = 1.into()),
                KeyErrorKind::UnsupportedScryptParams {
                    n: 32768,
                    r: 1,
                    p: 1,
                },
            ),
            (
                Box::new(|b| b["cipher"]["nonce"] = "AAAA".into()),
                KeyErrorKind::InvalidField {
                    field: "nonce",
                    reason: "3 bytes, expected 24".into(),
                },
            ),
            (
                Box::new(|b| b["ciphertext"] = "AAAA".into()),
                KeyErrorKind::InvalidField {
                    field: "ciphertext",
                    reason: "3 bytes, shorter than the 16-byte tag".into(),
                },
            ),
            (
                Box::new(|b| {
                    b.as_object_mut().unwrap().remove("cipher");
                }),
                KeyErrorKind::Malformed {
                    reason: "`body` has no `cipher`".into(),
                },
            ),
            (
                Box::new(|b| b["kdf"]["params"]["N"] = "32768".into()),
                KeyErrorKind::Malformed {
                    reason: "`kdf.params.N` is not a non-negative integer".into(),
                },
            ),
        ];
        for (edit, expected) in cases {
            let text = with_body(edit);
            assert_eq!(
                key_kind(PrivateKey::from_encrypted_pem(text.as_bytes(), b"p")),
                expected
            );
        }
        let text = with_body(|b| b["kdf"]["salt"] = "not base64!".into());
        assert!(matches!(
            key_kind(PrivateKey::from_encrypted_pem(text.as_bytes(), b"p")),
            KeyErrorKind::InvalidField { field: "salt", .. }
        ));
    }

    #[test]
    fn garbage_and_unexpected_pem_are_refused() {
        assert!(matches!(
            key_kind(PrivateKey::from_encrypted_pem(b"hello", b"")),
            KeyErrorKind::Pem { .. }
        ));
        assert!(matches!(
            key_kind(PublicKey::from_pem(
                b"-----BEGIN PUBLIC KEY-----\n!!!\n-----END PUBLIC KEY-----\n"
            )),
            KeyErrorKind::Pem { .. }
        ));
        let key = PrivateKey::generate().unwrap();
        let plain = pem::encode(&pem::Pem::new("PRIVATE KEY", key.to_pkcs8_der().to_vec()));
        assert_eq!(
            key_kind(PrivateKey::from_encrypted_pem(plain.as_bytes(), b"")),
            KeyErrorKind::Unencrypted {
                label: "PRIVATE KEY".into()
            }
        );
        let public = key.public_key().to_pem();
        assert!(matches!(
            key_kind(PrivateKey::from_encrypted_pem(public.as_bytes(), b"")),
            KeyErrorKind::UnexpectedLabel { .. }
        ));
        let private = key.to_encrypted_pem(b"").unwrap();
        assert!(matches!(
            key_kind(PublicKey::from_pem(private.as_bytes())),
            KeyErrorKind::UnexpectedLabel { .. }
        ));
        let two = format!("{public}{public}");
        assert_eq!(
            key_kind(PublicKey::from_pem(two.as_bytes())),
            KeyErrorKind::Pem {
                reason: "more than one PEM block".into()
            }
        );
        let huge = vec![b'A'; MAX_KEY_FILE_LEN + 1];
        assert_eq!(
            key_kind(PublicKey::from_pem(&huge)),
            KeyErrorKind::TooLarge {
                max: MAX_KEY_FILE_LEN
            }
        );
        let not_der = pem::encode(&pem::Pem::new("PUBLIC KEY", b"\x30\x03abc".to_vec()));
        assert_eq!(
            key_kind(PublicKey::from_pem(not_der.as_bytes())),
            KeyErrorKind::InvalidDer {
                structure: "SubjectPublicKeyInfo"
            }
        );
        let text = with_body(|b| *b = serde_json::json!([1, 2]));
        assert!(matches!(
            key_kind(PrivateKey::from_encrypted_pem(text.as_bytes(), b"p")),
            KeyErrorKind::Malformed { .. }
        ));
    }

    #[test]
    fn keys_of_other_algorithms_are_named_and_refused() {
        let rng = SystemRandom::new();
        let p384 =
            EcdsaKeyPair::generate_pkcs8(&ring_sig::ECDSA_P384_SHA384_ASN1_SIGNING, &rng).unwrap();
        let ed25519 = ring_sig::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        for (der, name) in [
            (p384.as_ref(), "ECDSA P-384"),
            (ed25519.as_ref(), "Ed25519"),
        ] {
            assert_eq!(
                key_kind(PrivateKey::from_pkcs8_der(der)),
                KeyErrorKind::UnsupportedAlgorithm {
                    algorithm: name.into()
                }
            );
            // Through an encrypted file too.
            let body = encrypt(der, b"x", ScryptCost::Legacy).unwrap();
            let text = pem::encode(&pem::Pem::new(COSIGN_PRIVATE_KEY_LABEL, body));
            assert_eq!(
                key_kind(PrivateKey::from_encrypted_pem(text.as_bytes(), b"x")),
                KeyErrorKind::UnsupportedAlgorithm {
                    algorithm: name.into()
                }
            );
        }
        // A P-384 public key.
        let pair = EcdsaKeyPair::from_pkcs8(
            &ring_sig::ECDSA_P384_SHA384_ASN1_SIGNING,
            p384.as_ref(),
            &rng,
        )
        .unwrap();
        let spki = yasna::construct_der(|w| {
            w.write_sequence(|w| {
                w.next().write_sequence(|w| {
                    w.next()
                        .write_oid(&ObjectIdentifier::from_slice(OID_EC_PUBLIC_KEY));
                    w.next()
                        .write_oid(&ObjectIdentifier::from_slice(&[1, 3, 132, 0, 34]));
                });
                let point = pair.public_key().as_ref();
                w.next().write_bitvec_bytes(point, point.len() * 8);
            })
        });
        assert_eq!(
            key_kind(PublicKey::from_spki_der(&spki)),
            KeyErrorKind::UnsupportedAlgorithm {
                algorithm: "ECDSA P-384".into()
            }
        );
    }

    #[test]
    fn a_point_of_the_wrong_shape_is_refused() {
        let public = PrivateKey::generate().unwrap().public_key();
        let mut der = public.to_spki_der();
        // Compressed-point marker instead of uncompressed.
        let at = der.len() - 65;
        der[at] = 2;
        assert!(matches!(
            key_kind(PublicKey::from_spki_der(&der)),
            KeyErrorKind::Rejected { .. }
        ));
    }
}
