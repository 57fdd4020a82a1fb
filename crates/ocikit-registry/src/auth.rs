//! Who may send a request: basic authentication against bcrypt `htpasswd` users (each allowed
//! to pull or to pull and push, and per repository as an [`crate::AccessPolicy`] says), or
//! Docker bearer tokens ([`crate::TokenAuth`]); [`admit`] decides for every request.
//!
//! bcrypt is slow on purpose (tens of milliseconds at the usual costs), and a registry client
//! sends its credentials with every request, so a verified `user:password` pair is remembered
//! for a while under a keyed hash (never the password itself); verification runs on the
//! blocking pool, a few at a time, never inside a poll that other requests share.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use ring::hmac;
use tokio::sync::Semaphore;

use axum::http::{HeaderMap, Method, StatusCode, Uri, header};

use crate::Registry;
use crate::access;
use crate::error::{ApiError, Error, ErrorCode, Failure, Result};
use crate::route::{self, Query, Route};

/// What a user may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Access {
    /// Pull only: `GET` and `HEAD`.
    Read,
    /// Pull and push (and delete, where deletion is enabled).
    ReadWrite,
}

/// The outcome of checking a request's credentials (what the tests and the fuzz oracle
/// judge; requests go through [`admit`]).
#[cfg(any(test, feature = "__fuzz"))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Known user, right password: may do what the access allows.
    Allowed(Access),
    /// No credentials, malformed ones, an unknown user or a wrong password.
    Unauthenticated,
}

/// How long a verified `user:password` pair is trusted without running bcrypt again.
const REMEMBER: Duration = Duration::from_secs(300);
/// Most remembered pairs; past this the memory is cleared and rebuilt as requests come.
const REMEMBER_MAX: usize = 4096;
/// Longest `Authorization` header considered.
const MAX_HEADER: usize = 4096;

/// The users a registry accepts, read from `htpasswd` files of bcrypt entries
/// (`htpasswd -B`: `name:$2y$...`).
pub struct Users {
    users: HashMap<String, User>,
    /// Pairs verified lately: HMAC of the name's length, the name and the password (see
    /// [`Users::pair_key`]) → when, and the access granted.
    verified: Mutex<HashMap<[u8; 32], (Instant, Access)>>,
    /// A random HMAC-SHA256 key made with these users, never stored or sent: the remembered
    /// pairs cannot be computed, or matched against guesses, without it.
    key: hmac::Key,
    /// Bounds concurrent bcrypt verifications, so a flood of wrong passwords queues instead
    /// of taking every blocking thread.
    bcrypt_slots: Semaphore,
}

struct User {
    hash: String,
    access: Access,
}

impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the hashes.
        let mut names: Vec<_> = self.users.iter().map(|(n, u)| (n, u.access)).collect();
        names.sort();
        f.debug_struct("Users").field("users", &names).finish()
    }
}

impl Default for Users {
    fn default() -> Users {
        Users::new()
    }
}

impl Users {
    /// No users yet.
    pub fn new() -> Users {
        // 244 random bits from the operating system's generator (through uuid's v4, which
        // never fails, unlike ring's `SystemRandom`), as the HMAC key.
        let mut key = [0u8; 32];
        key[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        key[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        Users {
            users: HashMap::new(),
            verified: Mutex::new(HashMap::new()),
            key: hmac::Key::new(hmac::HMAC_SHA256, &key),
            bcrypt_slots: Semaphore::new(4),
        }
    }

    /// Adds the users of an `htpasswd` file's text, each with `access`. Blank lines and lines
    /// starting with `#` are skipped; every other line must be `name:bcrypt-hash`. A name
    /// already added is refused, so one user cannot silently hold two passwords.
    pub fn add_htpasswd(&mut self, text: &str, access: Access, origin: &str) -> Result<()> {
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim_end_matches('\r').trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |reason: &str| Error::Htpasswd {
                origin: origin.to_owned(),
                line: n + 1,
                reason: reason.to_owned(),
            };
            let (name, hash) = line.split_once(':').ok_or_else(|| bad("no `:`"))?;
            if name.is_empty() || name.chars().any(|c| c.is_control() || c == ':') {
                return Err(bad("the user name is empty or holds a control character"));
            }
            if !["$2a$", "$2b$", "$2x$", "$2y$"]
                .iter()
                .any(|p| hash.starts_with(p))
            {
                return Err(bad(
                    "the password hash is not bcrypt (make it with `htpasswd -B`)",
                ));
            }
            // Checks the hash's shape now, not at the first login; bcrypt's parser takes any
            // cost (`99`, `+4`) that its verification then refuses.
            let parts = hash
                .parse::<bcrypt::HashParts>()
                .map_err(|_| bad("the bcrypt hash is malformed"))?;
            let digits = hash
                .get(4..6)
                .is_some_and(|c| c.bytes().all(|b| b.is_ascii_digit()));
            if !digits || !(4..=31).contains(&parts.get_cost()) {
                return Err(bad("the bcrypt cost is not a number from 04 to 31"));
            }
            if self.users.contains_key(name) {
                return Err(bad("the user is already defined"));
            }
            self.users.insert(
                name.to_owned(),
                User {
                    hash: hash.to_owned(),
                    access,
                },
            );
        }
        Ok(())
    }

    /// Adds the users of the `htpasswd` file at `path` (see [`Users::add_htpasswd`]).
    pub fn load_htpasswd(&mut self, path: &Path, access: Access) -> Result<()> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::ReadFile {
            path: path.to_owned(),
            source,
        })?;
        self.add_htpasswd(&text, access, &path.display().to_string())
    }

    /// The users of several `htpasswd` files, each file with its access (as `ocikit serve
    /// --htpasswd FILE --htpasswd-read-only FILE` takes them). Refuses a file that cannot be
    /// read ([`Error::ReadFile`]), a malformed line ([`Error::Htpasswd`], naming the file
    /// and the line), a user defined twice across the files, and files that define nobody
    /// at all ([`Error::NoUsers`]): a registry behind them would refuse everyone.
    pub fn from_htpasswd_files<I, P>(files: I) -> Result<Users>
    where
        I: IntoIterator<Item = (P, Access)>,
        P: AsRef<Path>,
    {
        let mut users = Users::new();
        for (file, access) in files {
            users.load_htpasswd(file.as_ref(), access)?;
        }
        if users.is_empty() {
            return Err(Error::NoUsers);
        }
        Ok(users)
    }

    /// How many users there are.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether there are no users.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Checks an `Authorization` header value.
    #[cfg(any(test, feature = "__fuzz"))]
    pub(crate) async fn check(&self, header: Option<&[u8]>) -> Verdict {
        match self.authenticate(header).await {
            Some((_, access)) => Verdict::Allowed(access),
            None => Verdict::Unauthenticated,
        }
    }

    /// The user an `Authorization` header value names and their access, if the password is
    /// theirs.
    pub(crate) async fn authenticate(&self, header: Option<&[u8]>) -> Option<(String, Access)> {
        let (name, password) = header.and_then(parse_basic)?;
        let user = self.users.get(&name)?;
        let key = self.pair_key(&name, &password);
        let remembered = self
            .verified
            .lock()
            .ok()
            .and_then(|verified| verified.get(&key).copied());
        if let Some((at, access)) = remembered
            && at.elapsed() < REMEMBER
            && access == user.access
        {
            return Some((name, access));
        }
        // A client out of failed-login tokens gets no bcrypt check (crate::limits).
        let login = crate::limits::login_attempt()?;
        let _slot = self.bcrypt_slots.acquire().await.ok()?;
        let hash = user.hash.clone();
        let ok = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash))
            .await
            .ok()
            .and_then(|r| r.ok())
            .unwrap_or(false);
        if !ok {
            return None;
        }
        login.succeeded();
        if let Ok(mut verified) = self.verified.lock() {
            if verified.len() >= REMEMBER_MAX {
                verified.clear();
            }
            verified.insert(key, (Instant::now(), user.access));
        }
        Some((name, user.access))
    }

    /// The key a verified pair is remembered under: HMAC-SHA256 under [`Users::key`] of the
    /// name's length (8 bytes, big-endian), the name and the password. The length makes the
    /// encoding unambiguous: no other (name, password) pair gives the same message.
    fn pair_key(&self, name: &str, password: &str) -> [u8; 32] {
        let mut context = hmac::Context::with_key(&self.key);
        context.update(&(name.len() as u64).to_be_bytes());
        context.update(name.as_bytes());
        context.update(password.as_bytes());
        let mut key = [0u8; 32];
        key.copy_from_slice(context.sign().as_ref());
        key
    }
}

/// Whether `header` is `Basic` with an empty name and password: what containers/image
/// (skopeo, podman) sends after a `Basic` challenge when it has no credentials. It means
/// "anonymous", and is treated as no `Authorization` at all.
pub(crate) fn is_empty_basic(header: &[u8]) -> bool {
    parse_basic(header).is_some_and(|(name, password)| name.is_empty() && password.is_empty())
}

/// `Basic base64(name:password)` → the name and password.
pub(crate) fn parse_basic(header: &[u8]) -> Option<(String, String)> {
    if header.len() > MAX_HEADER {
        return None;
    }
    let text = std::str::from_utf8(header).ok()?.trim();
    let (scheme, encoded) = text.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (name, password) = decoded.split_once(':')?;
    Some((name.to_owned(), password.to_owned()))
}

/// Who sent a request, once [`admit`] let it in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Identity {
    /// No authentication is configured, or an anonymous request was allowed.
    Anonymous,
    /// An `htpasswd` user.
    User(String),
    /// A bearer token's subject.
    Token(String),
}

fn unauthorized(message: impl Into<String>, challenge: &str) -> Failure {
    ApiError::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, message)
        .header(header::WWW_AUTHENTICATE, challenge)
        .into()
}

fn denied(message: impl Into<String>) -> Failure {
    ApiError::new(StatusCode::FORBIDDEN, ErrorCode::Denied, message).into()
}

/// Whether a request may go on: a bearer token against [`crate::Config::token`], else
/// credentials against [`crate::Config::users`] and [`crate::Config::access`]; writes
/// against [`crate::Config::read_only`]. Returns who sent it.
///
/// Without a policy, with [`crate::Config::anonymous_read`], reads without credentials go
/// on, except the base endpoint `/v2/`: clients such as skopeo ping it first and send
/// credentials only if it challenges them, so it always answers anonymous requests with the
/// challenge (as Distribution does), or those clients could never push. With a policy,
/// anonymous requests get what its `anonymousPolicy` grants, and the base endpoint
/// challenges them likewise.
pub(crate) async fn admit(
    registry: &Registry,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Identity, Failure> {
    let config = registry.config();
    let writes = !(method == Method::GET || method == Method::HEAD);
    let route = route::parse_path(uri.path()).ok().flatten();
    let query = Query::parse(uri.query());
    let authorization = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
    let identity = if let Some(token) = &config.token {
        let needs = access::needs(method, route.as_ref(), &query);
        let bearer = authorization
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| {
                let (scheme, rest) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            });
        let Some(bearer) = bearer else {
            return Err(unauthorized(
                "authentication required",
                &token.challenge(&needs, None),
            ));
        };
        let claims = token
            .verify(bearer, config.clock.now())
            .map_err(|rejection| {
                unauthorized(
                    format!("invalid token: {rejection}"),
                    &token.challenge(&needs, Some("invalid_token")),
                )
            })?;
        if let Some(missing) = needs.iter().find(|n| !claims.grants(n)) {
            return Err(unauthorized(
                format!("the token does not grant {}", missing.scope()),
                &token.challenge(&needs, Some("insufficient_scope")),
            ));
        }
        Identity::Token(claims.subject)
    } else if let Some(users) = &config.users {
        let credentials = authorization.filter(|v| !is_empty_basic(v));
        let base = matches!(route, Some(Route::Base));
        let challenge = r#"Basic realm="ocikit""#;
        match (credentials, &config.access) {
            (None, Some(policy)) => {
                let needs = access::needs(method, route.as_ref(), &query);
                if needs.is_empty() || !policy.grants(None, &needs) {
                    return Err(unauthorized("authentication required", challenge));
                }
                Identity::Anonymous
            }
            (None, None) if !writes && !base && config.anonymous_read => Identity::Anonymous,
            (credentials, policy) => {
                let Some((name, user_access)) = users.authenticate(credentials).await else {
                    return Err(unauthorized("authentication required", challenge));
                };
                if writes && user_access == Access::Read {
                    return Err(denied("this user may pull but not push or delete"));
                }
                if let Some(policy) = policy {
                    let needs = access::needs(method, route.as_ref(), &query);
                    if let Some(missing) = needs
                        .iter()
                        .find(|n| !policy.grants(Some(&name), std::slice::from_ref(n)))
                    {
                        return Err(denied(format!(
                            "user {name:?} may not have {}",
                            missing.scope()
                        )));
                    }
                }
                Identity::User(name)
            }
        }
    } else {
        Identity::Anonymous
    };
    if writes && config.read_only {
        return Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::Unsupported,
            "the registry is read-only",
        )
        .header(header::ALLOW, "GET, HEAD")
        .into());
    }
    Ok(identity)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user: &str, password: &str) -> Vec<u8> {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        )
        .into_bytes()
    }

    #[tokio::test]
    async fn verifies_bcrypt_users_and_remembers_them() {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let mut users = Users::new();
        users
            .add_htpasswd(
                &format!("# comment\n\nalice:{hash}\n"),
                Access::ReadWrite,
                "t",
            )
            .unwrap();
        let good = basic("alice", "s3cret");
        assert_eq!(
            users.check(Some(&good)).await,
            Verdict::Allowed(Access::ReadWrite)
        );
        // The second time comes from memory, and gives the same answer.
        assert_eq!(
            users.check(Some(&good)).await,
            Verdict::Allowed(Access::ReadWrite)
        );
        for bad in [
            basic("alice", "wrong"),
            basic("bob", "s3cret"),
            b"Bearer abc".to_vec(),
            b"Basic !!!".to_vec(),
            b"Basic".to_vec(),
        ] {
            assert_eq!(users.check(Some(&bad)).await, Verdict::Unauthenticated);
        }
        assert_eq!(users.check(None).await, Verdict::Unauthenticated);
    }

    /// The remembered pairs are keyed by an HMAC that sees where the name ends: a name and
    /// password that would read the same joined with a NUL (`a\0b` + `c`, `a` + `b\0c`) get
    /// different keys, as do two `Users` (each has its own secret key).
    #[test]
    fn remembered_pairs_do_not_collide_across_the_name_boundary() {
        let users = Users::new();
        let joined = users.pair_key("a\0b", "c");
        assert_ne!(joined, users.pair_key("a", "b\0c"));
        assert_ne!(users.pair_key("ab", "c"), users.pair_key("a", "bc"));
        assert_eq!(joined, users.pair_key("a\0b", "c"));
        assert_ne!(joined, Users::new().pair_key("a\0b", "c"));
    }

    #[test]
    fn refuses_what_is_not_a_bcrypt_htpasswd() {
        let hash = bcrypt::hash("x", 4).unwrap();
        for (text, reason) in [
            ("alice", "no `:`"),
            ("alice:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=", "not bcrypt"),
            ("alice:$apr1$abc$def", "not bcrypt"),
            ("alice:$2y$05$short", "malformed"),
            (":$2y$05$abc", "empty"),
        ] {
            let err = Users::new()
                .add_htpasswd(text, Access::Read, "f")
                .unwrap_err();
            assert!(err.to_string().contains("line 1"), "{err}");
            let source = format!("{err:?}");
            assert!(source.contains(reason), "{text}: {source}");
        }
        let mut users = Users::new();
        users
            .add_htpasswd(&format!("a:{hash}"), Access::Read, "f")
            .unwrap();
        let err = users
            .add_htpasswd(&format!("\na:{hash}"), Access::ReadWrite, "g")
            .unwrap_err();
        assert!(format!("{err:?}").contains("already defined"), "{err:?}");
        assert!(err.to_string().contains("line 2"), "{err}");
    }

    /// A hash whose cost bcrypt cannot compute (outside 04..=31, or not two digits) would
    /// make every login of that user fail; it is refused when the file is read (found by the
    /// `htpasswd` fuzz target).
    #[test]
    fn refuses_costs_bcrypt_cannot_compute() {
        let hash = bcrypt::hash("x", 4).unwrap();
        for cost in ["99", "32", "03", "00", "+4", "+9"] {
            let text = format!("alice:{}{cost}{}", &hash[..4], &hash[6..]);
            let err = Users::new()
                .add_htpasswd(&text, Access::Read, "f")
                .expect_err(&text);
            assert!(format!("{err:?}").contains("cost"), "{text}: {err:?}");
        }
        for cost in ["04", "10", "31"] {
            let text = format!("alice:{}{cost}{}", &hash[..4], &hash[6..]);
            Users::new().add_htpasswd(&text, Access::Read, "f").unwrap();
        }
    }
}
