//! `www_authenticate`: challenges against an RFC 9110 §11 reader.

use std::collections::HashMap;

use crate::auth::{Challenge, parse_challenge};

fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

fn is_token68_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~+/".contains(c)
}

struct Reader<'a> {
    s: &'a [u8],
    i: usize,
}

impl Reader<'_> {
    fn peek(&self) -> Option<char> {
        self.s.get(self.i).map(|&b| b as char)
    }
    fn ows(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t')) {
            self.i += 1;
        }
    }
    fn token(&mut self) -> Option<String> {
        let start = self.i;
        while self.peek().is_some_and(is_tchar) {
            self.i += 1;
        }
        (self.i > start).then(|| String::from_utf8(self.s[start..self.i].to_vec()).unwrap())
    }
    fn quoted(&mut self) -> Option<String> {
        self.i += 1;
        let mut out = Vec::new();
        loop {
            match *self.s.get(self.i)? {
                b'"' => {
                    self.i += 1;
                    return String::from_utf8(out).ok();
                }
                b'\\' => {
                    let c = *self.s.get(self.i + 1)?;
                    if !(c == b'\t' || c >= 0x20) || c == 0x7f {
                        return None;
                    }
                    out.push(c);
                    self.i += 2;
                }
                c if c == b'\t' || (c >= 0x20 && c != 0x7f) => {
                    out.push(c);
                    self.i += 1;
                }
                _ => return None,
            }
        }
    }
}

/// The first challenge of a header in RFC 9110's grammar (`#challenge`, `challenge =
/// auth-scheme [ 1*SP ( token68 / #auth-param ) ]`), or `None` when the header is not in
/// it. The second value says whether the first challenge used token68 or repeated a
/// parameter (which the client reads differently on purpose).
fn reference(header: &str) -> Option<(Challenge, bool)> {
    let mut r = Reader {
        s: header.as_bytes(),
        i: 0,
    };
    let mut challenges: Vec<(Challenge, bool)> = Vec::new();
    r.ows();
    // Leading empty list elements.
    while r.peek() == Some(',') {
        r.i += 1;
        r.ows();
    }
    loop {
        let scheme = r.token()?;
        let mut params = HashMap::new();
        let mut odd = false;
        // Parameters or a token68 after at least one space.
        let before = r.i;
        while r.peek() == Some(' ') {
            r.i += 1;
        }
        if r.i > before && r.peek().is_some_and(|c| c != ',') {
            let start = r.i;
            while r.peek().is_some_and(is_token68_char) {
                r.i += 1;
            }
            let word = r.i > start;
            while r.peek() == Some('=') {
                r.i += 1;
            }
            let mut after = r.i;
            while matches!(r.s.get(after), Some(b' ' | b'\t')) {
                after += 1;
            }
            // `token68 OWS` then `,` or the end: never an auth-param, which needs a value.
            if word && matches!(r.s.get(after), None | Some(b',')) {
                r.i = after;
                odd = true;
            } else {
                r.i = start;
                loop {
                    let key = r.token()?.to_ascii_lowercase();
                    r.ows();
                    if r.peek() != Some('=') {
                        return None;
                    }
                    r.i += 1;
                    r.ows();
                    let value = if r.peek() == Some('"') {
                        r.quoted()?
                    } else {
                        r.token()?
                    };
                    if params.insert(key, value).is_some() {
                        odd = true;
                    }
                    // Another parameter of this challenge, or the next challenge.
                    let mark = r.i;
                    r.ows();
                    if r.peek() != Some(',') {
                        r.i = mark;
                        break;
                    }
                    while r.peek() == Some(',') {
                        r.i += 1;
                        r.ows();
                    }
                    let save = r.i;
                    if r.token().is_some() {
                        r.ows();
                        let is_param = r.peek() == Some('=');
                        r.i = save;
                        if is_param {
                            continue;
                        }
                    }
                    r.i = save;
                    // A new challenge starts here (or the list ends).
                    r.i = mark;
                    break;
                }
            }
        }
        challenges.push((
            Challenge {
                scheme: scheme.to_ascii_lowercase(),
                params,
            },
            odd,
        ));
        r.ows();
        if r.i == r.s.len() {
            break;
        }
        if r.peek() != Some(',') {
            return None;
        }
        while r.peek() == Some(',') {
            r.i += 1;
            r.ows();
        }
        if r.i == r.s.len() {
            break;
        }
    }
    challenges.into_iter().next()
}

fn render(challenge: &Challenge) -> String {
    let mut out = challenge.scheme.clone();
    let mut params: Vec<_> = challenge.params.iter().collect();
    params.sort();
    for (i, (k, v)) in params.into_iter().enumerate() {
        out.push_str(if i == 0 { " " } else { ", " });
        out.push_str(k);
        out.push_str("=\"");
        for c in v.chars() {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('"');
    }
    out
}

/// Oracle for `WWW-Authenticate`: on every header in RFC 9110's grammar whose first
/// challenge has auth-params (no token68) named once each, the client reads the same scheme
/// and parameters as the reference; what it reads from any header, written back with
/// quoted values, reads back the same.
pub fn www_authenticate(data: &[u8]) {
    let Ok(header) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = parse_challenge(header);
    if let Some((want, odd)) = reference(header)
        && !odd
    {
        assert_eq!(parsed.as_ref(), Some(&want), "challenge {header:?}");
    }
    if let Some(challenge) = parsed
        && !challenge.scheme.is_empty()
        && challenge.scheme.chars().all(is_tchar)
        && challenge
            .params
            .keys()
            .all(|k| !k.is_empty() && k.chars().all(is_tchar))
    {
        let written = render(&challenge);
        assert_eq!(
            parse_challenge(&written).as_ref(),
            Some(&challenge),
            "{header:?} written as {written:?}"
        );
    }
}
