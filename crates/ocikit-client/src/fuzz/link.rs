//! `link_header`: `Link` pagination against an RFC 8288 §3 reader.

use crate::request::next_link_target;

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

struct Reader<'a> {
    s: &'a [u8],
    i: usize,
}

impl Reader<'_> {
    fn ows(&mut self) {
        while matches!(self.s.get(self.i), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }
    fn token(&mut self) -> Option<&str> {
        let start = self.i;
        while self.s.get(self.i).is_some_and(|&b| is_tchar(b)) {
            self.i += 1;
        }
        (self.i > start).then(|| std::str::from_utf8(&self.s[start..self.i]).unwrap())
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
                    out.push(*self.s.get(self.i + 1)?);
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

/// The target of the first link whose relation types include `next` (compared without
/// case), in RFC 8288's grammar: `#link-value`, `link-value = "<" URI-Reference ">" *(
/// OWS ";" OWS link-param )`, `link-param = token BWS [ "=" BWS ( token / quoted-string )
/// ]`, where only a link-value's first `rel` counts and its relation types are split on SP
/// or HTAB. The outer `None` is a header outside
/// the grammar.
fn reference(header: &str) -> Option<Option<String>> {
    let mut r = Reader {
        s: header.as_bytes(),
        i: 0,
    };
    let mut found = None;
    loop {
        r.ows();
        while r.s.get(r.i) == Some(&b',') {
            r.i += 1;
            r.ows();
        }
        if r.i == r.s.len() {
            return Some(found);
        }
        if r.s[r.i] != b'<' {
            return None;
        }
        let end = r.i + r.s[r.i..].iter().position(|&b| b == b'>')?;
        let target = std::str::from_utf8(&r.s[r.i + 1..end]).ok()?.to_owned();
        if target
            .bytes()
            .any(|b| b <= b' ' || b == b'<' || b == b'"' || b >= 0x7f)
        {
            return None;
        }
        r.i = end + 1;
        let mut rel: Option<String> = None;
        loop {
            let mark = r.i;
            r.ows();
            if r.s.get(r.i) != Some(&b';') {
                r.i = mark;
                break;
            }
            r.i += 1;
            r.ows();
            let name = r.token()?.to_ascii_lowercase();
            r.ows();
            let value = if r.s.get(r.i) == Some(&b'=') {
                r.i += 1;
                r.ows();
                if r.s.get(r.i) == Some(&b'"') {
                    r.quoted()?
                } else {
                    r.token()?.to_owned()
                }
            } else {
                String::new()
            };
            if name == "rel" && rel.is_none() {
                rel = Some(value);
            }
        }
        // RFC 8288 separates relation types by SP; the client, a tolerant reader, also
        // splits on HTAB (the only other whitespace a quoted-string can hold).
        let next = rel.is_some_and(|rel| {
            rel.split([' ', '\t'])
                .any(|t| t.eq_ignore_ascii_case("next"))
        });
        if next && found.is_none() {
            found = Some(target);
        }
        r.ows();
        match r.s.get(r.i) {
            None => return Some(found),
            Some(b',') => {}
            Some(_) => return None,
        }
    }
}

/// Oracle for `Link` pagination: on every header in RFC 8288's grammar, the client follows
/// the link the reference finds (the first whose `rel` includes `next`), or none.
pub fn link_header(data: &[u8]) {
    let Ok(header) = std::str::from_utf8(data) else {
        return;
    };
    let got = next_link_target(header);
    if let Some(want) = reference(header) {
        assert_eq!(got, want, "Link {header:?}");
    }
}
