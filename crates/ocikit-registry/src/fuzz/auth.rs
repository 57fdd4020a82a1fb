//! `htpasswd`: htpasswd files and `Authorization: Basic` headers against reference readers.

use std::sync::OnceLock;

use base64::Engine as _;
use regex::Regex;

use crate::auth::{Access, Users, Verdict};
use crate::error::Error;

/// bcrypt's modular crypt form: `$2?$` version, a cost bcrypt can compute (4 to 31), a
/// 22-character salt and a 31-character hash in bcrypt's base64 alphabet, both without
/// stray trailing bits.
fn bcrypt_ok(hash: &str) -> bool {
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = RE.get_or_init(|| {
        Regex::new(r"^\$2[abxy]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{21}[.Oeu][./A-Za-z0-9]{30}[.CGKOSWaeimquy26]$")
            .unwrap()
    });
    re.is_match(hash)
}

/// The reference htpasswd reader: the users, or the 1-based number of the first bad line.
fn reference(text: &str) -> Result<Vec<String>, usize> {
    let mut users: Vec<String> = Vec::new();
    let mut lines: Vec<&str> = text.split('\n').collect();
    if text.ends_with('\n') {
        lines.pop();
    }
    for (i, line) in lines.into_iter().enumerate() {
        let line = line.trim_end_matches('\r').trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some(colon) = line.find(':') else {
            return Err(i + 1);
        };
        let (name, hash) = (&line[..colon], &line[colon + 1..]);
        if name.is_empty() || name.chars().any(char::is_control) || !bcrypt_ok(hash) {
            return Err(i + 1);
        }
        if users.iter().any(|u| u == name) {
            return Err(i + 1);
        }
        users.push(name.to_owned());
    }
    Ok(users)
}

/// The reference `Basic` reader.
fn reference_basic(header: &[u8]) -> Option<(String, String)> {
    if header.len() > 4096 {
        return None;
    }
    let text = std::str::from_utf8(header).ok()?.trim();
    let space = text.find(' ')?;
    if !text[..space].eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(text[space + 1..].trim())
        .ok()?;
    let raw = String::from_utf8(raw).ok()?;
    let colon = raw.find(':')?;
    Some((raw[..colon].to_owned(), raw[colon + 1..].to_owned()))
}

const USER: &str = "fuzz";
const PASSWORD: &str = "pass:word";

/// A registry's users with one known user, hashed at bcrypt's lowest cost so that
/// checking is fast.
fn known() -> &'static (tokio::runtime::Runtime, Users) {
    static KNOWN: OnceLock<(tokio::runtime::Runtime, Users)> = OnceLock::new();
    KNOWN.get_or_init(|| {
        let hash = bcrypt::hash(PASSWORD, 4).unwrap();
        let mut users = Users::new();
        users
            .add_htpasswd(&format!("{USER}:{hash}\n"), Access::ReadWrite, "known")
            .unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        (runtime, users)
    })
}

/// Oracle for htpasswd files and `Authorization` headers: `Users::add_htpasswd` accepts
/// exactly what the reference reader accepts (a bcrypt hash it can compute, names without
/// control characters, no user twice), with as many users, and refuses at the same line;
/// the same bytes as an `Authorization` header are let in exactly when the reference reads
/// the known user's name and password from them.
pub fn htpasswd(data: &[u8]) {
    let (runtime, users) = known();
    let verdict = runtime.block_on(users.check(Some(data)));
    let expected = reference_basic(data);
    let right = expected
        .as_ref()
        .is_some_and(|(u, p)| u == USER && p == PASSWORD);
    assert_eq!(
        verdict,
        if right {
            Verdict::Allowed(Access::ReadWrite)
        } else {
            Verdict::Unauthenticated
        },
        "Authorization {data:?}: {expected:?}"
    );
    assert_eq!(
        crate::auth::is_empty_basic(data),
        expected.is_some_and(|(u, p)| u.is_empty() && p.is_empty())
    );

    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut loaded = Users::new();
    let result = loaded.add_htpasswd(text, Access::Read, "f");
    match (result, reference(text)) {
        (Ok(()), Ok(names)) => assert_eq!(loaded.len(), names.len()),
        (Err(Error::Htpasswd { line, .. }), Err(want)) => {
            assert_eq!(line, want, "refused at another line: {text:?}");
        }
        (got, want) => {
            panic!("htpasswd reader and reference disagree on {text:?}: {got:?} vs {want:?}")
        }
    }
}
