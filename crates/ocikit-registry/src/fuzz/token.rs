//! `token_verify`: bearer tokens (JWTs) against a reference reader of their claims.
//!
//! The first byte picks the mode. Even: the rest is a token as sent, which must never make
//! [`TokenAuth::verify`] panic, and which it accepts exactly when the reference does (the
//! signature checked with ring directly, the JSON read as untyped values). Odd: the rest is
//! a JWS header and claims (split at the first `0xff`), each read as JSON, written back and
//! signed with the fixed fuzz key, so that the fuzzer explores the claims behind a valid
//! signature: the verdict and the claims read must match the reference's.

use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};

use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair};
use serde_json::Value;

use crate::token::{Claims, Grant, MAX_TOKEN_LEN, TokenAuth};

/// The fuzz key's private scalar and public point (a fixed P-256 key, so that committed
/// seeds can hold tokens it signed).
const PRIVATE: &str = "65e8d1344ca138105621d58c7d2aa83b1512e83194675e0363a9d044fb818caf";
const PUBLIC: &str = "049423dd6ccc0f98f6caad9430a7bd7402956f650f9f9706b045c1490b20d66883435a4a32dd227968cc15cc8c35a1b061fef2195862f18ac2c7fa8d028788192d";
/// The DER prefix of a P-256 `SubjectPublicKeyInfo`, before its point.
const P256_SPKI_PREFIX: &str = "3059301306072a8648ce3d020106082a8648ce3d030107034200";
const ISSUER: &str = "fuzz-issuer";
const SERVICE: &str = "fuzz-service";
/// The time tokens are judged at: 2023-11-14T22:13:20Z.
const NOW: u64 = 1_700_000_000;
const LEEWAY: u64 = 60;

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn fixture() -> &'static (TokenAuth, EcdsaKeyPair) {
    static FIXTURE: OnceLock<(TokenAuth, EcdsaKeyPair)> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let mut der = hex(P256_SPKI_PREFIX);
        der.extend_from_slice(&hex(PUBLIC));
        let body = base64::engine::general_purpose::STANDARD.encode(der);
        let pem = format!("-----BEGIN PUBLIC KEY-----\n{body}\n-----END PUBLIC KEY-----\n");
        let auth = TokenAuth::new("http://fuzz/token", SERVICE, ISSUER, pem.as_bytes(), "fuzz")
            .unwrap()
            .with_leeway(Duration::from_secs(LEEWAY));
        let pair = EcdsaKeyPair::from_private_key_and_public_key(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &hex(PRIVATE),
            &hex(PUBLIC),
            &SystemRandom::new(),
        )
        .unwrap();
        (auth, pair)
    })
}

/// A token over exactly these header and claims bytes, signed with the fuzz key (what the
/// seeds are made with).
pub fn sign(header: &[u8], claims: &[u8]) -> String {
    let (_, pair) = fixture();
    let input = format!("{}.{}", b64(header), b64(claims));
    let sig = pair.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
    format!("{input}.{}", b64(sig.as_ref()))
}

/// An optional string claim: absent or null is `None`; anything else but a string is
/// malformed (`Err`).
fn opt_str(object: &serde_json::Map<String, Value>, key: &str) -> Result<Option<String>, ()> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(()),
    }
}

fn opt_u64(object: &serde_json::Map<String, Value>, key: &str) -> Result<Option<u64>, ()> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or(()),
    }
}

fn strings(value: &Value) -> Result<Vec<String>, ()> {
    value
        .as_array()
        .ok_or(())?
        .iter()
        .map(|v| v.as_str().map(str::to_owned).ok_or(()))
        .collect()
}

/// The reference judgement of a header and claims already known to be signed by the key:
/// the claims if the token is good, `None` if it is refused.
fn reference_claims(header: &Value, claims: &Value) -> Option<Claims> {
    let header = header.as_object()?;
    if header.get("alg")?.as_str()? != "ES256" {
        return None;
    }
    if header.get("crit").is_some_and(|c| !c.is_null()) {
        return None;
    }
    let claims = claims.as_object()?;
    let issuer = opt_str(claims, "iss").ok()?;
    let subject = opt_str(claims, "sub").ok()?;
    let audience = match claims.get("aud") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(other) => strings(other).ok()?,
    };
    let exp = opt_u64(claims, "exp").ok()?;
    let nbf = opt_u64(claims, "nbf").ok()?;
    let access = match claims.get("access") {
        None => Vec::new(),
        Some(list) => list
            .as_array()?
            .iter()
            .map(|g| {
                let g = g.as_object()?;
                Some(Grant {
                    kind: g.get("type")?.as_str()?.to_owned(),
                    name: g.get("name")?.as_str()?.to_owned(),
                    actions: match g.get("actions") {
                        None => Vec::new(),
                        Some(a) => strings(a).ok()?,
                    },
                })
            })
            .collect::<Option<Vec<_>>>()?,
    };
    let exp = exp?;
    if exp.saturating_add(LEEWAY) < NOW || nbf.is_some_and(|n| n > NOW + LEEWAY) {
        return None;
    }
    if issuer.as_deref() != Some(ISSUER) || !audience.iter().any(|a| a == SERVICE) {
        return None;
    }
    Some(Claims {
        subject: subject.unwrap_or_default(),
        expires: exp,
        access,
    })
}

/// The reference reading of a token as sent.
fn reference_token(token: &str) -> Option<Claims> {
    if token.len() > MAX_TOKEN_LEN {
        return None;
    }
    let parts: Vec<&str> = token.split('.').collect();
    let [header, payload, sig] = parts.as_slice() else {
        return None;
    };
    let decode = |part: &str| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part.trim_end_matches('='))
            .ok()
    };
    let (header_bytes, payload_bytes, sig) = (decode(header)?, decode(payload)?, decode(sig)?);
    let signed = format!("{header}.{payload}");
    signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, hex(PUBLIC))
        .verify(signed.as_bytes(), &sig)
        .ok()?;
    let header: Value = serde_json::from_slice(&header_bytes).ok()?;
    let claims: Value = serde_json::from_slice(&payload_bytes).ok()?;
    reference_claims(&header, &claims)
}

/// Oracle for bearer tokens (see the module documentation).
pub fn token_verify(data: &[u8]) {
    let (auth, _) = fixture();
    let now = UNIX_EPOCH + Duration::from_secs(NOW);
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        let token = String::from_utf8_lossy(rest);
        let got = auth.verify(&token, now).ok();
        assert_eq!(got, reference_token(&token), "token {token:?}");
        return;
    }
    let split = rest.iter().position(|b| *b == 0xff).unwrap_or(rest.len());
    let (header, claims) = (&rest[..split], rest.get(split + 1..).unwrap_or(&[]));
    let (Ok(header), Ok(claims)) = (
        serde_json::from_slice::<Value>(header),
        serde_json::from_slice::<Value>(claims),
    ) else {
        return;
    };
    let token = sign(header.to_string().as_bytes(), claims.to_string().as_bytes());
    let got = auth.verify(&token, now).ok();
    let expected = if token.len() > MAX_TOKEN_LEN {
        None
    } else {
        reference_claims(&header, &claims)
    };
    assert_eq!(got, expected, "header {header} claims {claims}");
}
