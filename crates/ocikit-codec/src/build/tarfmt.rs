//! Encoding tar headers: one ustar header block per entry, preceded by a PAX extended header
//! (`x`) when a value does not fit ustar.
//!
//! The encoder is ours rather than `tar::Builder`'s because the output must be byte-for-byte
//! deterministic and in one format: `tar::Builder` emits GNU long-name (`L`/`K`) entries for
//! long names and base-256 numbers for large ones, and silently truncates device numbers.

use std::collections::BTreeMap;

/// Size of a tar block.
pub(crate) const BLOCK: usize = 512;

/// Largest value of a 7-digit octal field (mode, uid, gid, devmajor, devminor).
const MAX_OCTAL_7: u64 = 0o7_777_777;
/// Largest value of an 11-digit octal field (size, mtime).
const MAX_OCTAL_11: u64 = 0o77_777_777_777;

/// Entry types this builder writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TypeFlag {
    Regular,
    HardLink,
    Symlink,
    Char,
    Block,
    Directory,
    Fifo,
}

impl TypeFlag {
    fn byte(self) -> u8 {
        match self {
            TypeFlag::Regular => b'0',
            TypeFlag::HardLink => b'1',
            TypeFlag::Symlink => b'2',
            TypeFlag::Char => b'3',
            TypeFlag::Block => b'4',
            TypeFlag::Directory => b'5',
            TypeFlag::Fifo => b'6',
        }
    }
}

/// Everything one entry's header records.
pub(crate) struct EntryHeader<'a> {
    /// The full name in the archive (directories end in `/`).
    pub(crate) path: &'a [u8],
    pub(crate) typeflag: TypeFlag,
    /// Permission bits (already masked to `0o7777`).
    pub(crate) mode: u32,
    pub(crate) uid: u64,
    pub(crate) gid: u64,
    pub(crate) size: u64,
    /// Seconds since the epoch (may be negative).
    pub(crate) mtime: i64,
    /// Symlink target or hardlink target; empty otherwise.
    pub(crate) link: &'a [u8],
    /// Device numbers for character and block devices.
    pub(crate) dev: (u32, u32),
    /// Extended attributes, sorted by name; names are UTF-8 without `=`.
    pub(crate) xattrs: &'a [(Vec<u8>, Vec<u8>)],
}

/// Encodes `h` as its header blocks: an optional PAX header with its records, then the ustar
/// header. The entry's content (if any) and its padding follow; see [`padding`].
///
/// Fails with a reason when the entry cannot be represented (device numbers out of range).
pub(crate) fn encode(h: &EntryHeader<'_>) -> Result<Vec<u8>, &'static str> {
    let mut records: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    let mut number = |key: &str, value: String| {
        records.insert(key.as_bytes().to_vec(), value.into_bytes());
    };
    let uid = fit(h.uid, MAX_OCTAL_7, "uid", &mut number);
    let gid = fit(h.gid, MAX_OCTAL_7, "gid", &mut number);
    let size = fit(h.size, MAX_OCTAL_11, "size", &mut number);
    let mtime = match u64::try_from(h.mtime) {
        Ok(m) => fit(m, MAX_OCTAL_11, "mtime", &mut number),
        Err(_) => {
            number("mtime", h.mtime.to_string());
            0
        }
    };
    let (major, minor) = (u64::from(h.dev.0), u64::from(h.dev.1));
    if major > MAX_OCTAL_7 || minor > MAX_OCTAL_7 {
        return Err("device number too large for a tar header");
    }
    if h.path.len() > 100 {
        records.insert(b"path".to_vec(), h.path.to_vec());
    }
    if h.link.len() > 100 {
        records.insert(b"linkpath".to_vec(), h.link.to_vec());
    }

    let mut out = Vec::with_capacity(3 * BLOCK);
    if !records.is_empty() || !h.xattrs.is_empty() {
        // The standard keys (sorted) come before the xattrs (sorted by name): a reader that
        // splits records at newlines instead of using their lengths (the `tar` crate up to at
        // least 0.4.46) gives up on the rest of the header at the first binary xattr value
        // holding a newline, and must not lose `size`, `uid` or `gid` to that.
        let mut data = Vec::new();
        for (key, value) in &records {
            pax_record(&mut data, key, value);
        }
        for (name, value) in h.xattrs {
            let mut key = b"SCHILY.xattr.".to_vec();
            key.extend_from_slice(name);
            pax_record(&mut data, &key, value);
        }
        let name = pax_header_name(h.path);
        let data_len = u64::try_from(data.len()).map_err(|_| "PAX header too large")?;
        if data_len > MAX_OCTAL_11 {
            return Err("PAX header too large");
        }
        out.extend_from_slice(&ustar_block(&UstarFields {
            name: &name,
            typeflag: b'x',
            mode: 0o644,
            uid: 0,
            gid: 0,
            size: data_len,
            mtime: 0,
            link: b"",
            dev: (0, 0),
        }));
        out.extend_from_slice(&data);
        out.resize(out.len() + padding(data_len), 0);
    }
    out.extend_from_slice(&ustar_block(&UstarFields {
        name: h.path,
        typeflag: h.typeflag.byte(),
        mode: u64::from(h.mode & 0o7777),
        uid,
        gid,
        size,
        mtime,
        link: h.link,
        dev: (major, minor),
    }));
    Ok(out)
}

/// Zero bytes that pad `len` bytes of content to a whole block.
pub(crate) fn padding(len: u64) -> usize {
    // `% 512` keeps it below 512, so the conversion cannot fail.
    usize::try_from((BLOCK as u64 - len % BLOCK as u64) % BLOCK as u64).unwrap_or(0)
}

/// `value` if it fits an octal field of `max`; otherwise records it as PAX `key` and returns 0
/// for the ustar field (as Go's archive/tar does).
fn fit(value: u64, max: u64, key: &str, record: &mut impl FnMut(&str, String)) -> u64 {
    if value <= max {
        value
    } else {
        record(key, value.to_string());
        0
    }
}

/// Appends one PAX record, `"<len> <key>=<value>\n"`, where `<len>` counts the whole record
/// including its own digits.
fn pax_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + 1;
    loop {
        let total = digits(len) + body;
        if total == len {
            break;
        }
        len = total;
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

fn digits(mut n: usize) -> usize {
    let mut d = 1;
    while n >= 10 {
        n /= 10;
        d += 1;
    }
    d
}

/// The (informational) name of a PAX header: `<dir>/PaxHeaders.0/<base>` as Go writes it,
/// ASCII only, at most 100 bytes. Readers that understand PAX never use it.
fn pax_header_name(path: &[u8]) -> Vec<u8> {
    let trimmed = path.strip_suffix(b"/").unwrap_or(path);
    let (dir, base) = match trimmed.iter().rposition(|&b| b == b'/') {
        Some(i) => (&trimmed[..=i], &trimmed[i + 1..]),
        None => (&b""[..], trimmed),
    };
    let mut name = Vec::with_capacity(path.len() + 13);
    name.extend_from_slice(dir);
    name.extend_from_slice(b"PaxHeaders.0/");
    name.extend_from_slice(base);
    name.truncate(100);
    for b in &mut name {
        if !b.is_ascii() || *b == 0 {
            *b = b'_';
        }
    }
    name
}

struct UstarFields<'a> {
    name: &'a [u8],
    typeflag: u8,
    mode: u64,
    uid: u64,
    gid: u64,
    size: u64,
    mtime: u64,
    link: &'a [u8],
    dev: (u64, u64),
}

/// One POSIX ustar header block. Numbers must fit their fields (the callers check); names
/// longer than their fields are truncated (their full value is in a PAX record).
fn ustar_block(f: &UstarFields<'_>) -> [u8; BLOCK] {
    let mut b = [0u8; BLOCK];
    put_bytes(&mut b[0..100], f.name);
    put_octal(&mut b[100..108], f.mode);
    put_octal(&mut b[108..116], f.uid);
    put_octal(&mut b[116..124], f.gid);
    put_octal(&mut b[124..136], f.size);
    put_octal(&mut b[136..148], f.mtime);
    b[156] = f.typeflag;
    put_bytes(&mut b[157..257], f.link);
    b[257..263].copy_from_slice(b"ustar\0");
    b[263..265].copy_from_slice(b"00");
    // uname (265..297) and gname (297..329) stay empty: see the module docs of `build`.
    put_octal(&mut b[329..337], f.dev.0);
    put_octal(&mut b[337..345], f.dev.1);
    // prefix (345..500) stays empty: long names go to PAX `path`.
    b[148..156].copy_from_slice(b"        ");
    let sum: u32 = b.iter().map(|&x| u32::from(x)).sum();
    put_octal(&mut b[148..155], u64::from(sum));
    b[155] = b' ';
    b
}

fn put_bytes(field: &mut [u8], value: &[u8]) {
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value[..n]);
}

/// Zero-padded octal digits filling all but the last byte of `field`, then NUL.
fn put_octal(field: &mut [u8], value: u64) {
    let Some((last, digits)) = field.split_last_mut() else {
        return;
    };
    *last = 0;
    let mut v = value;
    for slot in digits.iter_mut().rev() {
        // `v & 7` is below 8, so the cast is exact.
        *slot = b'0' + (v & 7) as u8;
        v >>= 3;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn pax_record_lengths_count_themselves() {
        for body in 0..300 {
            let value = vec![b'a'; body];
            let mut out = Vec::new();
            pax_record(&mut out, b"path", &value);
            let text = String::from_utf8(out.clone()).unwrap();
            let (len, _) = text.split_once(' ').unwrap();
            assert_eq!(len.parse::<usize>().unwrap(), out.len(), "{text:?}");
        }
    }

    #[test]
    fn header_checksum_and_fields() {
        let bytes = encode(&EntryHeader {
            path: b"etc/passwd",
            typeflag: TypeFlag::Regular,
            mode: 0o4755,
            uid: 1000,
            gid: 100,
            size: 12,
            mtime: 1_700_000_000,
            link: b"",
            dev: (0, 0),
            xattrs: &[],
        })
        .unwrap();
        assert_eq!(bytes.len(), BLOCK);
        let h = tar::Header::from_byte_slice(&bytes);
        assert_eq!(h.path_bytes().as_ref(), b"etc/passwd");
        assert_eq!(h.mode().unwrap(), 0o4755);
        assert_eq!(h.uid().unwrap(), 1000);
        assert_eq!(h.size().unwrap(), 12);
        assert_eq!(h.mtime().unwrap(), 1_700_000_000);
        assert_eq!(h.cksum().unwrap(), {
            let mut copy = bytes.clone();
            copy[148..156].copy_from_slice(b"        ");
            copy.iter().map(|&x| u32::from(x)).sum::<u32>()
        });
    }

    #[test]
    fn large_values_go_to_pax() {
        let bytes = encode(&EntryHeader {
            path: b"f",
            typeflag: TypeFlag::Regular,
            mode: 0o644,
            uid: 3_000_000_000,
            gid: 5,
            size: 0,
            mtime: -1,
            link: b"",
            dev: (0, 0),
            xattrs: &[],
        })
        .unwrap();
        let text = String::from_utf8_lossy(&bytes[BLOCK..2 * BLOCK]);
        assert!(
            text.starts_with("12 mtime=-1\n18 uid=3000000000\n"),
            "{text}"
        );
        assert!(
            encode(&EntryHeader {
                path: b"dev",
                typeflag: TypeFlag::Char,
                mode: 0o600,
                uid: 0,
                gid: 0,
                size: 0,
                mtime: 0,
                link: b"",
                dev: (1 << 22, 0),
                xattrs: &[],
            })
            .is_err()
        );
    }

    #[test]
    fn pax_header_names() {
        assert_eq!(pax_header_name(b"a/b/c"), b"a/b/PaxHeaders.0/c");
        assert_eq!(pax_header_name(b"dir/"), b"PaxHeaders.0/dir");
        assert_eq!(pax_header_name(b"\xff"), b"PaxHeaders.0/_");
        assert_eq!(pax_header_name(&[b'x'; 300]).len(), 100);
    }
}
