//! Docker token authentication: the registry trusts bearer tokens (JWTs) that an
//! authorization server signs, and names that server in its challenges.
//!
//! A request without a token gets 401 with `WWW-Authenticate: Bearer realm="...",
//! service="...",scope="..."` carrying the scope it needs (`repository:NAME:pull`,
//! `repository:NAME:pull,push`, `repository:NAME:delete`, `registry:catalog:*`); the client
//! asks the realm for a token with that scope and sends it back as `Authorization: Bearer`.
//! [`TokenAuth::verify`] accepts a token only when all of these hold:
//!
//! - it is at most [`MAX_TOKEN_LEN`] bytes, three base64url parts (no padding) of JSON;
//! - its header's `alg` is `ES256` (for a P-256 key) or `RS256` (for an RSA key of 2048 to
//!   8192 bits) and names no `crit` extension; `none`, HMAC and every other algorithm are
//!   refused, and the signature must verify under one of the configured public keys;
//! - its `iss` is the configured issuer and its `aud` (a string or a list) holds the
//!   configured service;
//! - it has an `exp` that is not past, and its `nbf` (if any) is not ahead, each judged
//!   with [`LEEWAY`] (one minute, Distribution's) of allowance for clocks that disagree.
//!
//! Its `access` claim then says what it grants: a list of `{"type", "name", "actions"}`;
//! a repository's grant must name the repository exactly, and `*` among its actions grants
//! them all.

use std::fmt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use ring::signature;
use rustls_pki_types::pem::{PemObject as _, SectionKind};
use serde::Deserialize;

use crate::access::Need;
use crate::error::{Error, Result};

/// Longest token accepted, in bytes (the whole `header.payload.signature`); longer ones
/// are refused before any decoding.
pub const MAX_TOKEN_LEN: usize = 8 << 10;

/// How far `exp` and `nbf` may be off: tokens are accepted until a minute after they
/// expire and from a minute before they become valid (as Distribution allows), so that an
/// authorization server's clock a little ahead of or behind the registry's does no harm.
pub const LEEWAY: Duration = Duration::from_secs(60);

/// Largest public key file read, in bytes.
const MAX_KEY_FILE: u64 = 1 << 20;

/// A signature algorithm a token may use, fixed by the key that verifies it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Alg {
    Es256,
    Rs256,
}

impl Alg {
    fn name(self) -> &'static str {
        match self {
            Alg::Es256 => "ES256",
            Alg::Rs256 => "RS256",
        }
    }
}

/// A public key tokens are verified with.
#[derive(Clone)]
struct VerifyingKey {
    alg: Alg,
    /// ES256: the uncompressed P-256 point; RS256: the DER of the PKCS#1 `RSAPublicKey`.
    bytes: Vec<u8>,
}

/// Docker token authentication's settings: where clients get tokens (`realm`), the name
/// tokens must be issued for (`service`, their audience), who must have issued them
/// (`issuer`), and the public keys their signatures must verify under.
#[derive(Clone)]
pub struct TokenAuth {
    realm: String,
    service: String,
    issuer: String,
    keys: Vec<VerifyingKey>,
    leeway: Duration,
}

impl fmt::Debug for TokenAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<&str> = self.keys.iter().map(|k| k.alg.name()).collect();
        f.debug_struct("TokenAuth")
            .field("realm", &self.realm)
            .field("service", &self.service)
            .field("issuer", &self.issuer)
            .field("keys", &keys)
            .field("leeway", &self.leeway)
            .finish()
    }
}

/// Why a token was refused; its `Display` is what the 401's error message says.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenRejection {
    /// Longer than [`MAX_TOKEN_LEN`].
    TooLarge {
        /// Its length.
        len: usize,
    },
    /// Not three base64url parts of JSON with the fields a token needs.
    Malformed {
        /// What is wrong.
        reason: String,
    },
    /// An algorithm other than the configured keys' (`none`, `HS256`, `ES384`, ...).
    Algorithm {
        /// The header's `alg`.
        alg: String,
    },
    /// The header names `crit` extensions, which this registry does not understand.
    Critical,
    /// The signature does not verify under any configured key.
    Signature,
    /// `exp` is past (beyond the leeway).
    Expired {
        /// The token's `exp`, in seconds since the epoch.
        exp: u64,
        /// The registry's time.
        now: u64,
    },
    /// `nbf` is ahead (beyond the leeway).
    NotYetValid {
        /// The token's `nbf`.
        nbf: u64,
        /// The registry's time.
        now: u64,
    },
    /// `aud` does not name this registry's service.
    Audience {
        /// What the token named.
        found: Vec<String>,
    },
    /// `iss` is not the configured issuer.
    Issuer {
        /// What the token named.
        found: String,
    },
}

impl fmt::Display for TokenRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenRejection::TooLarge { len } => {
                write!(f, "token is {len} bytes, more than {MAX_TOKEN_LEN}")
            }
            TokenRejection::Malformed { reason } => write!(f, "malformed token: {reason}"),
            TokenRejection::Algorithm { alg } => {
                write!(f, "token algorithm {alg:?} is not accepted")
            }
            TokenRejection::Critical => f.write_str("token names critical extensions"),
            TokenRejection::Signature => {
                f.write_str("token signature does not verify under the registry's keys")
            }
            TokenRejection::Expired { exp, now } => {
                write!(f, "token expired (exp {exp}, now {now})")
            }
            TokenRejection::NotYetValid { nbf, now } => {
                write!(f, "token is not valid yet (nbf {nbf}, now {now})")
            }
            TokenRejection::Audience { found } => {
                write!(f, "token audience {found:?} does not name this registry")
            }
            TokenRejection::Issuer { found } => {
                write!(f, "token issuer {found:?} is not trusted")
            }
        }
    }
}

/// One entry of a token's `access` claim.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct Grant {
    /// `repository` or `registry`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The repository's name, or `catalog`.
    pub name: String,
    /// `pull`, `push`, `delete`, or `*`.
    #[serde(default)]
    pub actions: Vec<String>,
}

/// What a verified token says.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Claims {
    /// `sub`: who the token was issued to (empty for anonymous tokens).
    pub subject: String,
    /// `exp`, in seconds since the epoch.
    pub expires: u64,
    /// `access`: what it grants.
    pub access: Vec<Grant>,
}

impl Claims {
    /// Whether the token grants `need`.
    pub(crate) fn grants(&self, need: &Need) -> bool {
        match need {
            Need::Repository { name, actions } => actions.iter().all(|action| {
                self.access.iter().any(|g| {
                    g.kind == "repository"
                        && g.name == *name
                        && g.actions.iter().any(|a| a == action.as_str() || a == "*")
                })
            }),
            Need::Catalog => self.access.iter().any(|g| {
                g.kind == "registry" && g.name == "catalog" && g.actions.iter().any(|a| a == "*")
            }),
        }
    }
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    crit: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct Payload {
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    aud: Option<Audience>,
    #[serde(default)]
    exp: Option<u64>,
    #[serde(default)]
    nbf: Option<u64>,
    #[serde(default)]
    access: Vec<Grant>,
}

fn malformed(reason: impl Into<String>) -> TokenRejection {
    TokenRejection::Malformed {
        reason: reason.into(),
    }
}

/// One base64url part, without padding (a trailing `=` is tolerated and dropped).
fn decode_part(part: &str, what: &str) -> std::result::Result<Vec<u8>, TokenRejection> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|_| malformed(format!("the {what} is not base64url")))
}

impl TokenAuth {
    /// Token authentication with the public keys of `keys_pem`: one or more `PUBLIC KEY`
    /// PEM blocks (PKIX `SubjectPublicKeyInfo`), each ECDSA P-256 (tokens signed `ES256`)
    /// or RSA of 2048 to 8192 bits (`RS256`); `origin` names the text in errors. Refuses
    /// text without such a block, blocks of another kind (a certificate, a private key) or of
    /// another algorithm, and malformed DER
    /// ([`Error::TokenKey`]).
    pub fn new(
        realm: impl Into<String>,
        service: impl Into<String>,
        issuer: impl Into<String>,
        keys_pem: &[u8],
        origin: &str,
    ) -> Result<TokenAuth> {
        let bad = |reason: String| Error::TokenKey {
            origin: origin.to_owned(),
            reason,
        };
        let mut keys = Vec::new();
        for (i, block) in <(SectionKind, Vec<u8>)>::pem_slice_iter(keys_pem).enumerate() {
            let (kind, der) = block.map_err(|e| bad(format!("not PEM: {e}")))?;
            if kind != SectionKind::PublicKey {
                return Err(bad(format!(
                    "block {} is of kind {kind:?}, not a `PUBLIC KEY`",
                    i + 1
                )));
            }
            keys.push(spki_key(&der).map_err(|reason| bad(format!("block {}: {reason}", i + 1)))?);
        }
        if keys.is_empty() {
            return Err(bad("no `PUBLIC KEY` PEM block found".into()));
        }
        Ok(TokenAuth {
            realm: realm.into(),
            service: service.into(),
            issuer: issuer.into(),
            keys,
            leeway: LEEWAY,
        })
    }

    /// [`TokenAuth::new`] with the keys of the PEM file at `key_file` (as `ocikit serve
    /// --token-public-key FILE` reads it).
    pub fn from_key_file(
        realm: impl Into<String>,
        service: impl Into<String>,
        issuer: impl Into<String>,
        key_file: &Path,
    ) -> Result<TokenAuth> {
        let read = |source| Error::ReadFile {
            path: key_file.to_owned(),
            source,
        };
        let file = std::fs::File::open(key_file).map_err(read)?;
        let mut bytes = Vec::new();
        use std::io::Read as _;
        file.take(MAX_KEY_FILE + 1)
            .read_to_end(&mut bytes)
            .map_err(read)?;
        let origin = key_file.display().to_string();
        if bytes.len() as u64 > MAX_KEY_FILE {
            return Err(Error::TokenKey {
                origin,
                reason: format!("larger than {MAX_KEY_FILE} bytes"),
            });
        }
        TokenAuth::new(realm, service, issuer, &bytes, &origin)
    }

    /// Sets how far `exp` and `nbf` may be off (default [`LEEWAY`]).
    pub fn with_leeway(mut self, leeway: Duration) -> TokenAuth {
        self.leeway = leeway;
        self
    }

    /// Where clients get tokens.
    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// The audience tokens must name.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The issuer tokens must name.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Checks a token (the text after `Bearer `) at time `now`; its claims, or why it is
    /// refused (see the [module documentation](self)).
    pub fn verify(
        &self,
        token: &str,
        now: SystemTime,
    ) -> std::result::Result<Claims, TokenRejection> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenRejection::TooLarge { len: token.len() });
        }
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed("not three `.`-separated parts"));
        };
        let header: Header = serde_json::from_slice(&decode_part(header_b64, "header")?)
            .map_err(|e| malformed(format!("the header is not a JWS header: {e}")))?;
        let Some(alg) = self
            .keys
            .iter()
            .map(|k| k.alg)
            .find(|a| a.name() == header.alg)
        else {
            return Err(TokenRejection::Algorithm { alg: header.alg });
        };
        if header.crit.is_some() {
            return Err(TokenRejection::Critical);
        }
        let payload = decode_part(payload_b64, "payload")?;
        let signature = decode_part(signature_b64, "signature")?;
        let signed = &token.as_bytes()[..header_b64.len() + 1 + payload_b64.len()];
        let verified = self.keys.iter().filter(|k| k.alg == alg).any(|key| {
            let algorithm: &dyn signature::VerificationAlgorithm = match key.alg {
                Alg::Es256 => &signature::ECDSA_P256_SHA256_FIXED,
                Alg::Rs256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            };
            signature::UnparsedPublicKey::new(algorithm, &key.bytes)
                .verify(signed, &signature)
                .is_ok()
        });
        if !verified {
            return Err(TokenRejection::Signature);
        }
        // Only a signed payload is read: nothing an attacker wrote is parsed past this point.
        let payload: Payload = serde_json::from_slice(&payload)
            .map_err(|e| malformed(format!("the claims are not JSON of a token: {e}")))?;
        let now = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let leeway = self.leeway.as_secs();
        let Some(exp) = payload.exp else {
            return Err(malformed("no `exp` claim"));
        };
        if exp.saturating_add(leeway) < now {
            return Err(TokenRejection::Expired { exp, now });
        }
        if let Some(nbf) = payload.nbf
            && nbf > now.saturating_add(leeway)
        {
            return Err(TokenRejection::NotYetValid { nbf, now });
        }
        let issuer = payload.iss.unwrap_or_default();
        if issuer != self.issuer {
            return Err(TokenRejection::Issuer { found: issuer });
        }
        let audience = match payload.aud {
            Some(Audience::One(one)) => vec![one],
            Some(Audience::Many(many)) => many,
            None => Vec::new(),
        };
        if !audience.contains(&self.service) {
            return Err(TokenRejection::Audience { found: audience });
        }
        Ok(Claims {
            subject: payload.sub.unwrap_or_default(),
            expires: exp,
            access: payload.access,
        })
    }

    /// The `WWW-Authenticate` value asking for a token with `needs` (none: the base
    /// endpoint, any valid token), and with `error` (`invalid_token`, `insufficient_scope`)
    /// when a token was sent and refused.
    pub(crate) fn challenge(&self, needs: &[Need], error: Option<&str>) -> String {
        let quote = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
        let mut value = format!(
            r#"Bearer realm="{}",service="{}""#,
            quote(&self.realm),
            quote(&self.service)
        );
        if !needs.is_empty() {
            let scopes: Vec<String> = needs.iter().map(Need::scope).collect();
            value.push_str(&format!(r#",scope="{}""#, quote(&scopes.join(" "))));
        }
        if let Some(error) = error {
            value.push_str(&format!(r#",error="{error}""#));
        }
        value
    }
}

const OID_EC_PUBLIC_KEY: &[u64] = &[1, 2, 840, 10045, 2, 1];
const OID_P256: &[u64] = &[1, 2, 840, 10045, 3, 1, 7];
const OID_RSA: &[u64] = &[1, 2, 840, 113549, 1, 1, 1];

/// The key of a DER `SubjectPublicKeyInfo`, or why it cannot verify tokens.
fn spki_key(der: &[u8]) -> std::result::Result<VerifyingKey, String> {
    let (algorithm, params, bits, bit_len) = yasna::parse_der(der, |r| {
        r.read_sequence(|r| {
            let (algorithm, params) = r.next().read_sequence(|r| {
                let oid = r.next().read_oid()?;
                let params = r.read_optional(|r| r.read_der())?;
                Ok((oid, params))
            })?;
            let (bits, bit_len) = r.next().read_bitvec_bytes()?;
            Ok((algorithm, params, bits, bit_len))
        })
    })
    .map_err(|_| "not a DER SubjectPublicKeyInfo".to_owned())?;
    if bit_len != bits.len() * 8 {
        return Err("the key's bit string is not whole bytes".into());
    }
    let oid = algorithm.components().as_slice();
    if oid == OID_EC_PUBLIC_KEY {
        let curve = params
            .as_deref()
            .and_then(|p| yasna::parse_der(p, |r| r.read_oid()).ok());
        if curve.as_ref().map(|c| c.components().as_slice()) != Some(OID_P256) {
            return Err("an EC key not on P-256 (only ES256 is accepted for EC keys)".into());
        }
        if bits.len() != 65 || bits[0] != 4 {
            return Err("not an uncompressed P-256 point".into());
        }
        return Ok(VerifyingKey {
            alg: Alg::Es256,
            bytes: bits,
        });
    }
    if oid == OID_RSA {
        let (modulus, positive) = yasna::parse_der(&bits, |r| {
            r.read_sequence(|r| {
                let n = r.next().read_bigint_bytes()?;
                let _e = r.next().read_bigint_bytes()?;
                Ok(n)
            })
        })
        .map_err(|_| "not a DER RSAPublicKey".to_owned())?;
        // The modulus's size in bits: its bytes past DER's leading zero byte.
        let significant = modulus.iter().skip_while(|b| **b == 0).collect::<Vec<_>>();
        let size = match significant.first() {
            Some(top) if positive => {
                (significant.len() - 1) * 8 + (8 - top.leading_zeros() as usize)
            }
            _ => 0,
        };
        if !(2048..=8192).contains(&size) {
            return Err(format!("an RSA key of {size} bits (2048 to 8192 accepted)"));
        }
        return Ok(VerifyingKey {
            alg: Alg::Rs256,
            bytes: bits,
        });
    }
    Err(format!(
        "unsupported key algorithm {algorithm} (ECDSA P-256 or RSA)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::Action;
    use ring::rand::SystemRandom;
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};

    /// The DER prefix of a P-256 `SubjectPublicKeyInfo`, before its 65-byte point.
    const P256_SPKI_PREFIX: [u8; 26] = [
        0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08,
        0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
    ];

    fn keypair() -> EcdsaKeyPair {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap()
    }

    fn public_pem(key: &EcdsaKeyPair) -> String {
        let mut der = P256_SPKI_PREFIX.to_vec();
        der.extend_from_slice(key.public_key().as_ref());
        armor("PUBLIC KEY", &der)
    }

    fn armor(label: &str, der: &[u8]) -> String {
        let body = base64::engine::general_purpose::STANDARD.encode(der);
        format!("-----BEGIN {label}-----\n{body}\n-----END {label}-----\n")
    }

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    fn sign(key: &EcdsaKeyPair, header: &serde_json::Value, claims: &serde_json::Value) -> String {
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let sig = key.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
        format!("{input}.{}", b64(sig.as_ref()))
    }

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    #[test]
    fn verifies_es256_and_judges_every_claim() {
        let key = keypair();
        let auth = TokenAuth::new(
            "http://auth/token",
            "reg",
            "issuer",
            public_pem(&key).as_bytes(),
            "k",
        )
        .unwrap();
        let header = serde_json::json!({"alg": "ES256", "typ": "JWT"});
        let good = serde_json::json!({
            "iss": "issuer", "sub": "alice", "aud": ["other", "reg"], "exp": now() + 300,
            "nbf": now() - 10,
            "access": [{"type": "repository", "name": "a/b", "actions": ["pull", "push"]}],
        });
        let claims = auth
            .verify(&sign(&key, &header, &good), SystemTime::now())
            .unwrap();
        assert_eq!(claims.subject, "alice");
        let need = |actions: &[Action]| Need::Repository {
            name: "a/b".into(),
            actions: actions.to_vec(),
        };
        assert!(claims.grants(&need(&[Action::Pull, Action::Push])));
        assert!(!claims.grants(&need(&[Action::Delete])));
        assert!(!claims.grants(&Need::Catalog));

        let with = |field: &str, value: serde_json::Value| {
            let mut claims = good.clone();
            claims[field] = value;
            auth.verify(&sign(&key, &header, &claims), SystemTime::now())
        };
        assert!(matches!(
            with("exp", (now() - 120).into()),
            Err(TokenRejection::Expired { .. })
        ));
        // Within the leeway: still good.
        assert!(with("exp", (now() - 30).into()).is_ok());
        assert!(with("nbf", (now() + 30).into()).is_ok());
        assert!(matches!(
            with("nbf", (now() + 120).into()),
            Err(TokenRejection::NotYetValid { .. })
        ));
        assert!(matches!(
            with("aud", "other".into()),
            Err(TokenRejection::Audience { .. })
        ));
        assert!(matches!(
            with("iss", "mallory".into()),
            Err(TokenRejection::Issuer { .. })
        ));
        assert!(matches!(
            with("exp", serde_json::Value::Null),
            Err(TokenRejection::Malformed { .. })
        ));

        let other = keypair();
        assert_eq!(
            auth.verify(&sign(&other, &header, &good), SystemTime::now()),
            Err(TokenRejection::Signature)
        );
        let none = format!(
            "{}.{}.",
            b64(br#"{"alg":"none"}"#),
            b64(good.to_string().as_bytes())
        );
        assert!(matches!(
            auth.verify(&none, SystemTime::now()),
            Err(TokenRejection::Algorithm { .. })
        ));
        let crit = sign(
            &key,
            &serde_json::json!({"alg": "ES256", "crit": ["exp"]}),
            &good,
        );
        assert_eq!(
            auth.verify(&crit, SystemTime::now()),
            Err(TokenRejection::Critical)
        );
        let long = "a".repeat(MAX_TOKEN_LEN + 1);
        assert!(matches!(
            auth.verify(&long, SystemTime::now()),
            Err(TokenRejection::TooLarge { .. })
        ));
        for bad in ["", "a.b", "a.b.c.d", "!!.b.c", "e30.e30.e30"] {
            assert!(auth.verify(bad, SystemTime::now()).is_err(), "{bad}");
        }
    }

    #[test]
    fn refuses_keys_it_cannot_use() {
        for (text, reason) in [
            ("nothing".to_owned(), "no `PUBLIC KEY` PEM block"),
            (armor("CERTIFICATE", &[1, 2]), "not a `PUBLIC KEY`"),
            (armor("PUBLIC KEY", &[0x30, 0x03, 1, 2, 3]), "not a DER"),
        ] {
            let err = TokenAuth::new("r", "s", "i", text.as_bytes(), "key.pem").unwrap_err();
            let shown = err.to_string();
            assert!(
                shown.contains("key.pem") && shown.contains(reason),
                "{shown}"
            );
        }
    }

    #[test]
    fn challenges_carry_the_scopes_needed() {
        let key = keypair();
        let auth = TokenAuth::new(
            "https://auth/token",
            "reg",
            "i",
            public_pem(&key).as_bytes(),
            "k",
        )
        .unwrap();
        let needs = [
            Need::Repository {
                name: "a".into(),
                actions: vec![Action::Pull, Action::Push],
            },
            Need::Repository {
                name: "b".into(),
                actions: vec![Action::Pull],
            },
        ];
        assert_eq!(
            auth.challenge(&needs, Some("insufficient_scope")),
            r#"Bearer realm="https://auth/token",service="reg",scope="repository:a:pull,push repository:b:pull",error="insufficient_scope""#
        );
        assert_eq!(
            auth.challenge(&[], None),
            r#"Bearer realm="https://auth/token",service="reg""#
        );
    }
}
