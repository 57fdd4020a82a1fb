//! Authentication for the client: `WWW-Authenticate` challenges, basic credentials, and
//! bearer tokens fetched from the realm a registry names, cached per scope.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

use base64::Engine as _;

/// A user name and password (or token) for a registry. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub username: String,
    /// The password or personal access token.
    pub password: String,
}

impl Credentials {
    /// Credentials from a user name and a password.
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Credentials {
        Credentials {
            username: username.into(),
            password: password.into(),
        }
    }

    /// Parses `user:password` (the password may itself contain `:`); `None` without a `:`
    /// or with an empty user name.
    pub fn parse(text: &str) -> Option<Credentials> {
        let (user, password) = text.split_once(':')?;
        (!user.is_empty()).then(|| Credentials::new(user, password))
    }

    /// The `Authorization` header value for basic authentication.
    pub(crate) fn basic(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// What a registry asked for in its last `WWW-Authenticate` challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Scheme {
    /// Nothing seen yet: requests go out anonymously.
    Unknown,
    /// `Basic`: send the credentials with every request.
    Basic,
    /// `Bearer realm=... service=...`: fetch a token per scope from the realm.
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Challenge {
    pub(crate) scheme: String,
    pub(crate) params: HashMap<String, String>,
}

/// Parses the first challenge of a `WWW-Authenticate` value: `Scheme k="v", k2=v2`.
/// Quoted values may hold commas and `\"` escapes.
pub(crate) fn parse_challenge(header: &str) -> Option<Challenge> {
    // A list may start with empty elements; a scheme ends at a space or at the comma that
    // ends a challenge without parameters.
    let header = header
        .trim_start_matches(|c: char| c == ',' || c.is_whitespace())
        .trim_end();
    let (scheme, rest) = match header.find(|c: char| c == ',' || c.is_whitespace()) {
        Some(i) => (&header[..i], &header[i..]),
        None => (header, ""),
    };
    if scheme.is_empty() {
        return None;
    }
    let mut params = HashMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == ',' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        if key.is_empty() {
            break;
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek() != Some(&'=') {
            // A token68 or a new scheme: the first challenge ends here.
            break;
        }
        chars.next();
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(escaped) = chars.next() {
                            value.push(escaped);
                        }
                    }
                    '"' => break,
                    other => value.push(other),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' || c.is_whitespace() {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        params.insert(key.to_ascii_lowercase(), value);
    }
    Some(Challenge {
        scheme: scheme.to_ascii_lowercase(),
        params,
    })
}

/// A bearer token and when it stops being usable.
#[derive(Clone, Debug)]
pub(crate) struct Token {
    pub(crate) value: String,
    pub(crate) expires: Instant,
}

/// The scheme a registry asked for and the tokens fetched so far, keyed by scope set.
#[derive(Debug)]
pub(crate) struct AuthState {
    pub(crate) scheme: Scheme,
    pub(crate) tokens: HashMap<String, Token>,
}

impl Default for AuthState {
    fn default() -> AuthState {
        AuthState {
            scheme: Scheme::Unknown,
            tokens: HashMap::new(),
        }
    }
}

impl AuthState {
    /// A cached token for `key` that is still good for a few seconds.
    pub(crate) fn token(&self, key: &str) -> Option<String> {
        let token = self.tokens.get(key)?;
        (token.expires > Instant::now() + Duration::from_secs(5)).then(|| token.value.clone())
    }
}

/// The token endpoint's answer (`token`, or OAuth2's `access_token`; `expires_in` seconds,
/// 60 when absent, as the token specification says).
#[derive(Debug, serde::Deserialize)]
pub(crate) struct TokenResponse {
    #[serde(default)]
    pub(crate) token: Option<String>,
    #[serde(default)]
    pub(crate) access_token: Option<String>,
    #[serde(default)]
    pub(crate) expires_in: Option<u64>,
}

/// The cache key of a set of scopes.
pub(crate) fn scope_key(scopes: &[String]) -> String {
    let mut sorted: Vec<&str> = scopes.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    sorted.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_challenges() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        )
        .unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.params["realm"], "https://auth.example/token");
        assert_eq!(c.params["service"], "registry.example");
        assert_eq!(c.params["scope"], "repository:a/b:pull,push");
        let basic = parse_challenge(r#"Basic realm="ocikit""#).unwrap();
        assert_eq!(basic.scheme, "basic");
        let odd = parse_challenge(r#"Bearer realm = "a\"b,c" , service=x"#).unwrap();
        assert_eq!(odd.params["realm"], "a\"b,c");
        assert_eq!(odd.params["service"], "x");
        assert!(parse_challenge("").is_none());
    }

    /// A list whose first challenge has no parameters, or that starts with an empty element
    /// (RFC 9110's `#challenge` allows both; found by the `www_authenticate` fuzz target):
    /// the scheme ends at the comma.
    #[test]
    fn a_scheme_ends_at_a_comma() {
        let basic = parse_challenge(r#"Basic, Bearer realm="b""#).unwrap();
        assert_eq!(basic.scheme, "basic");
        assert!(basic.params.is_empty());
        let bearer = parse_challenge(", Bearer realm=b").unwrap();
        assert_eq!(bearer.scheme, "bearer");
        assert_eq!(bearer.params["realm"], "b");
    }

    #[test]
    fn credentials_parse_and_hide_the_password() {
        let c = Credentials::parse("u:p:q").unwrap();
        assert_eq!(c.password, "p:q");
        assert!(Credentials::parse(":p").is_none());
        assert!(Credentials::parse("nocolon").is_none());
        assert!(!format!("{c:?}").contains("p:q"));
        assert_eq!(c.basic(), "Basic dTpwOnE=");
    }
}
