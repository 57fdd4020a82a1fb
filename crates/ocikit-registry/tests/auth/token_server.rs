//! A Docker token server written for the tests: `GET /token?service=..&scope=..` with basic
//! credentials (or none, for anonymous tokens) answers `{"token", "expires_in"}`, a JWT
//! signed ES256 or RS256 with a key made here, granting of each scope asked the actions the
//! user's rules allow (as Distribution's token servers do: never more than asked).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair as _, RsaKeyPair};
use serde_json::{Value, json};

/// The DER prefix of a P-256 `SubjectPublicKeyInfo`, before its 65-byte point.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

pub(crate) const ISSUER: &str = "test-token-issuer";
pub(crate) const SERVICE: &str = "test-registry";

pub(crate) fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A signing key made in the test, and its public key as PEM.
pub(crate) enum Signer {
    Es256(EcdsaKeyPair),
    Rs256(RsaKeyPair),
}

impl Signer {
    /// A fresh P-256 key (ring).
    pub(crate) fn es256() -> Signer {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .unwrap();
        Signer::Es256(
            EcdsaKeyPair::from_pkcs8(
                &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                pkcs8.as_ref(),
                &rng,
            )
            .unwrap(),
        )
    }

    /// A fresh 2048-bit RSA key: ring signs with RSA but does not make RSA keys, so
    /// `openssl genpkey` makes it (`None`, and a line on stderr, where openssl is missing
    /// outside CI). Its public PEM is openssl's, so the registry's reading of PKIX RSA keys
    /// is checked against another implementation.
    pub(crate) fn rs256() -> Option<(Signer, String)> {
        let openssl = ocikit_testkit::tool::Tool::require("openssl")?;
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key.der");
        let public = dir.path().join("public.pem");
        let (key_arg, public_arg) = (key.to_str().unwrap(), public.to_str().unwrap());
        openssl.ok(&[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-outform",
            "DER",
            "-out",
            key_arg,
        ]);
        openssl.ok(&[
            "pkey", "-inform", "DER", "-in", key_arg, "-pubout", "-out", public_arg,
        ]);
        // PKCS#8, or PKCS#1 where openssl writes the traditional form in DER.
        let der = std::fs::read(&key).unwrap();
        let pair = RsaKeyPair::from_pkcs8(&der)
            .or_else(|_| RsaKeyPair::from_der(&der))
            .unwrap();
        Some((
            Signer::Rs256(pair),
            std::fs::read_to_string(&public).unwrap(),
        ))
    }

    pub(crate) fn alg(&self) -> &'static str {
        match self {
            Signer::Es256(_) => "ES256",
            Signer::Rs256(_) => "RS256",
        }
    }

    /// The public key as a `PUBLIC KEY` PEM block (ES256 only; RS256's comes from openssl).
    pub(crate) fn es256_public_pem(&self) -> String {
        let Signer::Es256(pair) = self else {
            panic!("not an ES256 key")
        };
        let mut der = P256_SPKI_PREFIX.to_vec();
        der.extend_from_slice(pair.public_key().as_ref());
        let body = base64::engine::general_purpose::STANDARD.encode(der);
        format!("-----BEGIN PUBLIC KEY-----\n{body}\n-----END PUBLIC KEY-----\n")
    }

    /// A JWS over `header` and `claims`, signed with this key whatever `header` says.
    pub(crate) fn sign_with_header(&self, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let rng = SystemRandom::new();
        let signature = match self {
            Signer::Es256(pair) => pair.sign(&rng, input.as_bytes()).unwrap().as_ref().to_vec(),
            Signer::Rs256(pair) => {
                let mut sig = vec![0; pair.public().modulus_len()];
                pair.sign(
                    &signature::RSA_PKCS1_SHA256,
                    &rng,
                    input.as_bytes(),
                    &mut sig,
                )
                .unwrap();
                sig
            }
        };
        format!("{input}.{}", b64(&signature))
    }

    /// A JWS over `claims` with this key's own algorithm.
    pub(crate) fn sign(&self, claims: &Value) -> String {
        self.sign_with_header(&json!({"alg": self.alg(), "typ": "JWT"}), claims)
    }
}

/// Claims a good token for `subject` granting `access` would carry.
pub(crate) fn claims(subject: &str, access: Value) -> Value {
    let now = now();
    json!({
        "iss": ISSUER, "sub": subject, "aud": SERVICE,
        "exp": now + 300, "nbf": now - 5, "iat": now - 5,
        "jti": uuid_like(now), "access": access,
    })
}

fn uuid_like(n: u64) -> String {
    format!("jti-{n:x}-{:x}", std::process::id())
}

/// What a user may be granted on a repository: `(user, repository prefix, actions)`;
/// `user` `""` means anonymous, `catalog` among the actions grants `registry:catalog:*`.
pub(crate) type Rule = (&'static str, &'static str, &'static [&'static str]);

struct Shared {
    signer: Signer,
    passwords: HashMap<String, String>,
    rules: Vec<Rule>,
    /// The `scope` parameters of every token request, in order.
    asked: Mutex<Vec<Vec<String>>>,
}

/// The token server, on an ephemeral loopback port until dropped.
pub(crate) struct TokenServer {
    pub(crate) realm: String,
    shared: Arc<Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl TokenServer {
    pub(crate) async fn start(
        signer: Signer,
        passwords: &[(&str, &str)],
        rules: Vec<Rule>,
    ) -> TokenServer {
        let shared = Arc::new(Shared {
            signer,
            passwords: passwords
                .iter()
                .map(|(u, p)| (u.to_string(), p.to_string()))
                .collect(),
            rules,
            asked: Mutex::new(Vec::new()),
        });
        let app = axum::Router::new()
            .route("/token", axum::routing::get(issue))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    rx.await.ok();
                })
                .await
                .unwrap();
        });
        TokenServer {
            realm: format!("http://{addr}/token"),
            shared,
            shutdown: Some(tx),
        }
    }

    /// The signing key.
    pub(crate) fn signer(&self) -> &Signer {
        &self.shared.signer
    }

    /// The scopes asked for so far, one list per token request.
    pub(crate) fn asked(&self) -> Vec<Vec<String>> {
        self.shared.asked.lock().unwrap().clone()
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            tx.send(()).ok();
        }
    }
}

async fn issue(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let query = request.uri().query().unwrap_or("");
    let mut service = None;
    let mut scopes = Vec::new();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match &*key {
            "service" => service = Some(value.into_owned()),
            "scope" => scopes.extend(value.split(' ').map(str::to_owned)),
            _ => {}
        }
    }
    shared.asked.lock().unwrap().push(scopes.clone());
    if service.as_deref() != Some(SERVICE) {
        return (StatusCode::BAD_REQUEST, "unknown service").into_response();
    }
    let user = match request.headers().get(header::AUTHORIZATION) {
        None => String::new(),
        Some(value) => {
            let decoded = value
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Basic "))
                .and_then(|v| base64::engine::general_purpose::STANDARD.decode(v).ok())
                .and_then(|v| String::from_utf8(v).ok());
            let Some((user, password)) = decoded.as_deref().and_then(|d| d.split_once(':')) else {
                return StatusCode::UNAUTHORIZED.into_response();
            };
            if shared.passwords.get(user).map(String::as_str) != Some(password) {
                return StatusCode::UNAUTHORIZED.into_response();
            }
            user.to_owned()
        }
    };
    let mut access = Vec::new();
    for scope in &scopes {
        let mut parts = scope.splitn(3, ':');
        let (Some(kind), Some(name), Some(actions)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let rules = shared.rules.iter().filter(|(u, _, _)| *u == user);
        if kind == "registry" && name == "catalog" {
            if rules.clone().any(|(_, _, a)| a.contains(&"catalog")) {
                access.push(json!({"type": "registry", "name": "catalog", "actions": ["*"]}));
            }
            continue;
        }
        if kind != "repository" {
            continue;
        }
        let granted: Vec<&str> = actions
            .split(',')
            .filter(|action| {
                rules.clone().any(|(_, prefix, allowed)| {
                    name.starts_with(prefix) && allowed.contains(action)
                })
            })
            .collect();
        if !granted.is_empty() {
            access.push(json!({"type": "repository", "name": name, "actions": granted}));
        }
    }
    let token = shared.signer.sign(&claims(&user, Value::Array(access)));
    (
        [(header::CONTENT_TYPE, "application/json")],
        json!({"token": token, "expires_in": 300}).to_string(),
    )
        .into_response()
}
