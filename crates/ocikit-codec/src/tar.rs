//! The strict tar reader: archives read entry by entry, with limits, refusing what tar
//! parsers are known to disagree on.
//!
//! [`TarReader`] is the one tar parser of ocikit: the layer applier
//! ([`apply_layer`](crate::apply::apply_layer)), [`list_entries`](crate::apply::list_entries),
//! the check of users' tar files ([`LayerWriter::from_tar_file`](crate::writer::LayerWriter::from_tar_file))
//! and `ocikit-layout`'s import of `oci-archive` and `docker-archive` files all read through
//! it. It streams: [`TarReader::next_header`] returns each entry's [`Header`] with its
//! extension records applied, and [`TarReader::data`] reads that entry's data (whatever of
//! it is left unread is skipped at the next header); nothing is preallocated from a header.
//! Its counterpart [`TarWriter`] writes archives of files and directories (`ocikit-layout`'s
//! `oci-archive` and `docker-archive` exports) in the header format of ocikit's layers.
//!
//! ```
//! use std::io::Read;
//! use ocikit_codec::Limits;
//! use ocikit_codec::tar::{Kind, TarReader};
//!
//! # let mut builder = tar::Builder::new(Vec::new());
//! # let mut header = tar::Header::new_ustar();
//! # header.set_size(5);
//! # header.set_mode(0o644);
//! # builder.append_data(&mut header, "etc/hostname", &b"host\n"[..])?;
//! # let archive = builder.into_inner()?;
//! let mut reader = TarReader::new(&archive[..], Limits::default());
//! while let Some(header) = reader.next_header()? {
//!     if header.kind == Kind::File {
//!         let mut data = Vec::new();
//!         reader.data().read_to_end(&mut data)?;
//!         assert_eq!((&header.name[..], &data[..]), (&b"etc/hostname"[..], &b"host\n"[..]));
//!     }
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Hostile input
//!
//! It reads what Go's `archive/tar` reads (the parser behind docker, containerd and buildkit),
//! and where the two could disagree on the entries of an archive it refuses instead of
//! guessing (SPEC C.4, D.2):
//!
//! - The checksum is checked (unsigned or signed sum, as Go and GNU tar accept); numeric
//!   fields are strict octal (spaces and NULs trimmed) or GNU base-256, overflow and negative
//!   sizes refused (C-T08).
//! - PAX records are parsed by their length prefixes and refused when malformed (C-T02); PAX
//!   `size`, `path`, `linkpath`, `uid`, `gid` and `mtime` override the header, as in Go. An
//!   extension header (`x`, `L`, `K`) is read only after its size has been checked against
//!   [`Limits::max_entry_metadata`], counted with every other extension of the same entry and
//!   512 bytes per extension header (C-T03); `g` global headers are checked the same way and
//!   then ignored (C-S07). More than [`Limits::max_entries`] entries are refused.
//! - The archive ends at the first zero block (the end-of-archive marker, one or two blocks),
//!   or where the stream ends cleanly at an entry boundary: after an entry's header and data,
//!   with or without the padding to the next block (C-T05). That is what Go's archive/tar,
//!   GNU tar and umoci read, and umoci (`repack`, `insert`) writes layers with neither end
//!   blocks nor final padding. A stream that ends inside a header, inside an extension
//!   header or its records, or inside an entry's data is truncated ([`Error::Corrupt`] with
//!   [`io::ErrorKind::UnexpectedEof`]), in both modes.
//! - Strict mode (the default; [`TarReader::with_strict`]) also refuses the ambiguous cases:
//!   two PAX headers or two long names for one entry, a GNU long name together with a PAX
//!   `path`, a header-only entry (directory, link, device, FIFO) with a non-zero size, a
//!   non-numeric PAX `mtime`, PAX numbers with a leading `+` (Go accepts them, GNU tar does
//!   not), a PAX global header carrying `size`, `path` or `linkpath` (GNU tar applies them to
//!   the entries that follow, Go ignores them) and a non-zero block after the first zero
//!   block. Lenient mode does what Go does.
//! - Entry data is streamed, never preallocated from a header (C-T04). Names are returned
//!   as recorded (bytes, not normalised): what a name may be is the caller's rule.
//!
//! # Errors
//!
//! [`Error::Corrupt`] (`"tar"`) for a stream that is not a well-formed tar (bad checksum,
//! truncated), [`Error::InvalidEntry`] ([`InvalidEntry::MalformedHeader`],
//! [`InvalidEntry::NulInName`]) for a malformed header or extension record,
//! [`Error::LimitExceeded`] past the [`Limits`], and the source's own read errors as
//! [`Error::Io`].

use std::io::{self, Read, Write};

use ocikit_digest::{Digest, Hasher};

use crate::apply::hash::DiffIdHasher;

use crate::compression::error_from_io;
use crate::{Error, InvalidEntry, Limit, Limits, Result};

mod writer;

pub use writer::{EntryMeta, TarWriter};

const BLOCK: usize = 512;
/// The read buffer: big enough that large files are written in big chunks.
const BUFFER: usize = 1 << 20;

/// What an entry is, after the typeflag (and, for old `'\0'` entries, a trailing slash).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Kind {
    /// `'0'`, `'\0'`, `'7'`.
    File,
    /// `'5'` (or `'\0'` with a trailing slash).
    Dir,
    /// `'2'`.
    Symlink,
    /// `'1'`.
    Hardlink,
    /// `'3'`.
    Char,
    /// `'4'`.
    Block,
    /// `'6'`.
    Fifo,
    /// `'g'`: a PAX global header, ignored.
    Global,
    /// Anything else (sparse, volume labels, multi-volume, vendor types...).
    Unsupported,
}

impl Kind {
    /// Types whose header carries no data (Go's `isHeaderOnlyType`).
    fn header_only(self) -> bool {
        matches!(
            self,
            Kind::Dir | Kind::Symlink | Kind::Hardlink | Kind::Char | Kind::Block | Kind::Fifo
        )
    }
}

/// One entry's header, with its extension records (PAX, GNU long names) applied.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Header {
    /// The name as recorded (bytes, not normalised).
    pub name: Vec<u8>,
    /// The link target (symlinks and hardlinks).
    pub link: Vec<u8>,
    /// What the entry is.
    pub kind: Kind,
    /// The raw typeflag byte (`S` for GNU sparse files in PAX form).
    pub typeflag: u8,
    /// Permission bits, masked to `0o7777`.
    pub mode: u32,
    /// The owner's user id (not checked for range: the caller's rule).
    pub uid: i64,
    /// The owner's group id.
    pub gid: i64,
    /// Seconds since the epoch (saturated to `i64`) and nanoseconds.
    pub mtime: (i64, u32),
    /// The device major number (devices; 0 where the format has none).
    pub dev_major: i64,
    /// The device minor number.
    pub dev_minor: i64,
    /// The bytes of data that follow in the stream (0 for header-only entries).
    pub size: u64,
    /// `SCHILY.xattr.*` records, in order.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// A tar archive read entry by entry (see the [module documentation](self)).
///
/// The source is read through a 1 MiB buffer, so it needs no buffering of its own.
pub struct TarReader<R: Read> {
    inner: R,
    hash: DiffIdHasher,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    eof: bool,
    /// Data bytes of the current entry not consumed yet.
    remaining: u64,
    /// Padding after the current entry's data.
    padding: u64,
    limits: Limits,
    strict: bool,
    done: bool,
    /// Entries returned so far.
    entries: u64,
}

/// Extension records gathered for the next entry.
#[derive(Default)]
struct Pending {
    pax: Option<Vec<(Vec<u8>, Vec<u8>)>>,
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    metadata: u64,
}

fn corrupt(message: &'static str) -> Error {
    Error::Corrupt {
        format: "tar",
        source: io::Error::new(io::ErrorKind::InvalidData, message),
    }
}

fn truncated() -> Error {
    Error::Corrupt {
        format: "tar",
        source: io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "tar stream ends inside an entry",
        ),
    }
}

fn malformed(name: &[u8], detail: impl Into<String>) -> Error {
    Error::InvalidEntry {
        path: String::from_utf8_lossy(name).into_owned(),
        reason: InvalidEntry::MalformedHeader {
            detail: detail.into(),
        },
    }
}

/// A NUL-terminated header string.
fn cstr(field: &[u8]) -> &[u8] {
    match field.iter().position(|&b| b == 0) {
        Some(i) => &field[..i],
        None => field,
    }
}

/// A numeric header field as Go's `archive/tar` reads it: base-256 when the top bit of the
/// first byte is set, otherwise octal with leading and trailing spaces and NULs trimmed.
/// `None` when it is neither (or overflows `i64`).
pub(crate) fn parse_numeric(field: &[u8]) -> Option<i64> {
    let first = *field.first()?;
    if first & 0x80 != 0 {
        let inv: u8 = if first & 0x40 != 0 { 0xff } else { 0 };
        let mut x: u64 = 0;
        for (i, &c) in field.iter().enumerate() {
            let mut c = c ^ inv;
            if i == 0 {
                c &= 0x7f;
            }
            if x >> 56 != 0 {
                return None;
            }
            x = (x << 8) | u64::from(c);
        }
        if x >> 63 != 0 {
            return None;
        }
        let x = i64::try_from(x).ok()?;
        return Some(if inv == 0xff { !x } else { x });
    }
    let trimmed = {
        let is_pad = |b: &u8| *b == b' ' || *b == 0;
        let start = field.iter().position(|b| !is_pad(b)).unwrap_or(field.len());
        let end = field
            .iter()
            .rposition(|b| !is_pad(b))
            .map_or(start, |i| i + 1);
        cstr(&field[start..end])
    };
    let mut x: u64 = 0;
    for &c in trimmed {
        if !(b'0'..=b'7').contains(&c) {
            return None;
        }
        x = x.checked_mul(8)?.checked_add(u64::from(c - b'0'))?;
    }
    i64::try_from(x).ok()
}

/// A PAX decimal integer (`strconv.ParseInt(v, 10, 64)`: optional sign, digits).
fn parse_decimal(value: &[u8]) -> Option<i64> {
    let (negative, digits) = match value.first() {
        Some(b'-') => (true, &value[1..]),
        Some(b'+') => (false, &value[1..]),
        _ => (false, value),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut x: i64 = 0;
    for &c in digits {
        let d = i64::from(c - b'0');
        x = x.checked_mul(10)?;
        x = if negative {
            x.checked_sub(d)?
        } else {
            x.checked_add(d)?
        };
    }
    Some(x)
}

/// A PAX time (`[-]seconds[.fraction]`), saturated to `i64` seconds (SPEC C-S08). `None` when
/// it is not that syntax.
fn parse_pax_time(value: &[u8]) -> Option<(i64, u32)> {
    let (secs, frac) = match value.iter().position(|&b| b == b'.') {
        Some(i) => (&value[..i], Some(&value[i + 1..])),
        None => (value, None),
    };
    let (negative, digits) = match secs.first() {
        Some(b'-') => (true, &secs[1..]),
        Some(b'+') => (false, &secs[1..]),
        _ => (false, secs),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut s: i64 = 0;
    for &c in digits {
        let d = i64::from(c - b'0');
        s = s.saturating_mul(10);
        s = if negative {
            s.saturating_sub(d)
        } else {
            s.saturating_add(d)
        };
    }
    let mut nanos: u32 = 0;
    if let Some(frac) = frac {
        if frac.is_empty() || !frac.iter().all(u8::is_ascii_digit) {
            return None;
        }
        for i in 0..9 {
            nanos = nanos * 10 + frac.get(i).map_or(0, |c| u32::from(c - b'0'));
        }
        // A negative time with a fraction: -1.5 is 2 seconds before 0 plus 0.5.
        if negative && nanos > 0 {
            s = s.saturating_sub(1);
            nanos = 1_000_000_000 - nanos;
        }
    }
    Some((s, nanos))
}

/// Parses PAX records (`"%d %s=%s\n"`), refusing malformed ones (Go's `parsePAXRecord`).
fn parse_pax(mut data: &[u8]) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut records = Vec::new();
    while !data.is_empty() {
        let space = data.iter().position(|&b| b == b' ')?;
        let len_str = &data[..space];
        if len_str.is_empty() || !len_str.iter().all(u8::is_ascii_digit) || len_str.len() > 19 {
            return None;
        }
        let len = std::str::from_utf8(len_str).ok()?.parse::<usize>().ok()?;
        if len < 5 || len > data.len() || len <= space + 1 {
            return None;
        }
        let record = &data[space + 1..len];
        let (&last, body) = record.split_last()?;
        if last != b'\n' {
            return None;
        }
        let eq = body.iter().position(|&b| b == b'=')?;
        let (key, value) = (&body[..eq], &body[eq + 1..]);
        if key.is_empty() || key.contains(&0) {
            return None;
        }
        if matches!(key, b"path" | b"linkpath" | b"uname" | b"gname") && value.contains(&0) {
            return None;
        }
        records.push((key.to_vec(), value.to_vec()));
        data = &data[len..];
    }
    Some(records)
}

impl<R: Read> TarReader<R> {
    /// A strict reader of the archive `inner` under `limits` (of which it uses
    /// [`Limits::max_entries`] and [`Limits::max_entry_metadata`]).
    pub fn new(inner: R, limits: Limits) -> TarReader<R> {
        TarReader::with_hash(inner, DiffIdHasher::off(), limits, true)
    }

    /// Strict (the default) or lenient: see the [module documentation](self).
    pub fn with_strict(mut self, strict: bool) -> TarReader<R> {
        self.strict = strict;
        self
    }

    /// A reader that also hashes the whole stream (the diffID), for [`TarReader::finish`].
    pub(crate) fn hashed(inner: R, hasher: Hasher, limits: Limits, strict: bool) -> TarReader<R> {
        TarReader::with_hash(inner, DiffIdHasher::new(hasher), limits, strict)
    }

    /// The rest of the current entry's data (the one [`TarReader::next_header`] returned
    /// last), as a [`Read`]. It ends after the entry's `size` bytes; a stream that ends
    /// sooner fails with an [`io::Error`] carrying [`Error::Corrupt`] (recover it with
    /// [`crate::compression::error_from_io`]). Data left unread is skipped by
    /// the next call to [`TarReader::next_header`].
    pub fn data(&mut self) -> EntryData<'_, R> {
        EntryData { reader: self }
    }

    /// Entries returned so far (PAX global headers included).
    pub fn entries(&self) -> u64 {
        self.entries
    }

    fn with_hash(inner: R, hash: DiffIdHasher, limits: Limits, strict: bool) -> TarReader<R> {
        TarReader {
            inner,
            hash,
            buf: vec![0u8; BUFFER].into_boxed_slice(),
            start: 0,
            end: 0,
            eof: false,
            remaining: 0,
            padding: 0,
            limits,
            strict,
            done: false,
            entries: 0,
        }
    }

    fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// Reads more into the buffer until at least `want` bytes are buffered (or the stream
    /// ends). Returns the bytes buffered.
    fn fill(&mut self, want: usize) -> Result<usize> {
        let want = want.min(self.buf.len());
        if self.buffered() >= want || self.eof {
            return Ok(self.buffered());
        }
        if self.start + want > self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        while self.buffered() < want {
            match self.inner.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => {
                    let n = n.min(self.buf.len() - self.end);
                    self.hash.update(&self.buf[self.end..self.end + n])?;
                    self.end += n;
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(error_from_io(err)),
            }
        }
        Ok(self.buffered())
    }

    /// The next 512-byte block, `None` at a clean end of stream, an error mid-block.
    fn block(&mut self) -> Result<Option<[u8; BLOCK]>> {
        let have = self.fill(BLOCK)?;
        if have == 0 {
            return Ok(None);
        }
        if have < BLOCK {
            return Err(Error::Corrupt {
                format: "tar",
                source: io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "tar stream ends inside a header",
                ),
            });
        }
        let mut block = [0u8; BLOCK];
        block.copy_from_slice(&self.buf[self.start..self.start + BLOCK]);
        self.start += BLOCK;
        Ok(Some(block))
    }

    /// Skips `n` bytes of the stream.
    fn skip(&mut self, mut n: u64) -> Result<()> {
        while n > 0 {
            if self.buffered() == 0 && self.fill(BLOCK)? == 0 {
                return Err(truncated());
            }
            let take = usize::try_from(n)
                .unwrap_or(usize::MAX)
                .min(self.buffered());
            self.start += take;
            n -= take as u64;
        }
        Ok(())
    }

    /// Skips the padding after an entry's data. `false` when the stream ends inside it (or
    /// right where it starts): a clean end of the archive.
    fn skip_padding(&mut self, mut n: u64) -> Result<bool> {
        while n > 0 {
            if self.buffered() == 0 && self.fill(BLOCK)? == 0 {
                return Ok(false);
            }
            let take = usize::try_from(n)
                .unwrap_or(usize::MAX)
                .min(self.buffered());
            self.start += take;
            n -= take as u64;
        }
        Ok(true)
    }

    /// Reads `n` bytes (already checked against the metadata limit).
    fn read_vec(&mut self, n: usize) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(n.min(BUFFER));
        while out.len() < n {
            if self.buffered() == 0 && self.fill(BLOCK)? == 0 {
                return Err(truncated());
            }
            let take = (n - out.len()).min(self.buffered());
            out.extend_from_slice(&self.buf[self.start..self.start + take]);
            self.start += take;
        }
        Ok(out)
    }

    /// Copies the rest of the current entry's data to `out` (big writes, straight from the
    /// buffer). Returns the bytes copied.
    pub(crate) fn copy_data(&mut self, out: &mut impl Write) -> Result<u64, CopyError> {
        let total = self.remaining;
        while self.remaining > 0 {
            let want = usize::try_from(self.remaining).unwrap_or(usize::MAX);
            // Gather a good chunk before writing (sources may hand out small reads).
            if self.buffered() < want.min(256 << 10) {
                let have = self
                    .fill(want.min(self.buf.len()))
                    .map_err(CopyError::Read)?;
                if have == 0 {
                    return Err(CopyError::Read(truncated()));
                }
            }
            let take = want.min(self.buffered());
            out.write_all(&self.buf[self.start..self.start + take])
                .map_err(CopyError::Write)?;
            self.start += take;
            self.remaining -= take as u64;
        }
        Ok(total)
    }

    fn strict_check(&self, ok: bool, name: &[u8], detail: &str) -> Result<()> {
        if self.strict && !ok {
            return Err(malformed(name, detail));
        }
        Ok(())
    }

    /// Reads an extension header's data, after checking it against the metadata limit.
    fn extension(&mut self, pending: &mut Pending, size: u64) -> Result<Vec<u8>> {
        pending.metadata = pending
            .metadata
            .saturating_add(size)
            .saturating_add(BLOCK as u64);
        if pending.metadata > self.limits.max_entry_metadata {
            return Err(Error::LimitExceeded {
                limit: Limit::EntryMetadata,
                max: self.limits.max_entry_metadata,
            });
        }
        let n = usize::try_from(size).map_err(|_| Error::LimitExceeded {
            limit: Limit::EntryMetadata,
            max: self.limits.max_entry_metadata,
        })?;
        let data = self.read_vec(n)?;
        self.skip(padding(size))?;
        Ok(data)
    }

    /// The next entry, `None` at the end of the archive (after which the rest of the stream
    /// has been read). PAX global headers are returned too ([`Kind::Global`], their records
    /// checked and then ignored), so that callers see every entry the archive has.
    ///
    /// # Errors
    /// See the [module documentation](self#errors). After an error the reader is not usable.
    pub fn next_header(&mut self) -> Result<Option<Header>> {
        if self.done {
            return Ok(None);
        }
        // Whatever the caller left of the previous entry: its data must all be there; its
        // padding may be cut short by the end of the stream (the end of the archive).
        let (rest, padding) = (self.remaining, self.padding);
        self.remaining = 0;
        self.padding = 0;
        self.skip(rest)?;
        if !self.skip_padding(padding)? {
            self.done = true;
            return Ok(None);
        }

        let mut pending = Pending::default();
        loop {
            let Some(block) = self.block()? else {
                // End of stream at an entry boundary without the end-of-archive marker: the
                // end of the archive, unless extension headers were waiting for their entry.
                if pending.pax.is_some()
                    || pending.long_name.is_some()
                    || pending.long_link.is_some()
                {
                    return Err(truncated());
                }
                self.done = true;
                return Ok(None);
            };
            if block.iter().all(|&b| b == 0) {
                if pending.pax.is_some()
                    || pending.long_name.is_some()
                    || pending.long_link.is_some()
                {
                    return Err(corrupt("extension header without an entry"));
                }
                // Go: a second zero block, or the end of the stream, ends the archive.
                if let Some(next) = self.block()?
                    && self.strict
                    && next.iter().any(|&b| b != 0)
                {
                    return Err(corrupt("data after the end-of-archive marker"));
                }
                self.drain()?;
                self.done = true;
                return Ok(None);
            }
            check_checksum(&block)?;

            let typeflag = block[156];
            let raw_size = parse_numeric(&block[124..136]);
            let header_name = header_name(&block);
            let size = match raw_size {
                Some(s) if s >= 0 => s as u64,
                _ => return Err(malformed(&header_name, "bad size field")),
            };
            match typeflag {
                b'x' => {
                    if pending.pax.is_some() {
                        self.strict_check(false, &header_name, "two PAX headers for one entry")?;
                    }
                    let data = self.extension(&mut pending, size)?;
                    let records = parse_pax(&data)
                        .ok_or_else(|| malformed(&header_name, "malformed PAX record"))?;
                    pending.pax.get_or_insert_with(Vec::new).extend(records);
                    continue;
                }
                b'L' => {
                    self.strict_check(
                        pending.long_name.is_none(),
                        &header_name,
                        "two GNU long names for one entry",
                    )?;
                    let data = self.extension(&mut pending, size)?;
                    pending.long_name = Some(trim_nuls(data));
                    continue;
                }
                b'K' => {
                    self.strict_check(
                        pending.long_link.is_none(),
                        &header_name,
                        "two GNU long link names for one entry",
                    )?;
                    let data = self.extension(&mut pending, size)?;
                    pending.long_link = Some(trim_nuls(data));
                    continue;
                }
                _ => {}
            }
            self.entries += 1;
            if self.entries > self.limits.max_entries {
                return Err(Error::LimitExceeded {
                    limit: Limit::Entries,
                    max: self.limits.max_entries,
                });
            }
            return self.finish_header(&block, size, pending).map(Some);
        }
    }

    fn finish_header(
        &mut self,
        block: &[u8; BLOCK],
        mut size: u64,
        pending: Pending,
    ) -> Result<Header> {
        let mut typeflag = block[156];
        let mut name = header_name(block);
        let mut link = cstr(&block[157..257]).to_vec();
        let num = |range: std::ops::Range<usize>, what: &str, name: &[u8]| {
            parse_numeric(&block[range]).ok_or_else(|| malformed(name, format!("bad {what} field")))
        };
        let mode = num(100..108, "mode", &name)?;
        if mode < 0 {
            return Err(malformed(&name, "negative mode"));
        }
        let mut uid = num(108..116, "uid", &name)?;
        let mut gid = num(116..124, "gid", &name)?;
        let mut mtime = (num(136..148, "mtime", &name)?, 0u32);
        let format_has_devices = &block[257..263] == b"ustar\0" || &block[257..265] == b"ustar  \0";
        let (dev_major, dev_minor) = if format_has_devices {
            (
                num(329..337, "devmajor", &name)?,
                num(337..345, "devminor", &name)?,
            )
        } else {
            (0, 0)
        };
        let mut sparse = typeflag == b'S';

        let had_long_name = pending.long_name.is_some();
        let had_long_link = pending.long_link.is_some();
        if let Some(long) = pending.long_name {
            name = long;
        }
        if let Some(long) = pending.long_link {
            link = long;
        }
        let mut xattrs = Vec::new();
        if let Some(records) = pending.pax {
            for (key, value) in records {
                // Go: an empty value keeps the header's value.
                if value.is_empty() {
                    continue;
                }
                // Go's strconv takes a leading `+`; GNU tar refuses it.
                if matches!(key.as_slice(), b"size" | b"uid" | b"gid" | b"mtime")
                    && value.first() == Some(&b'+')
                {
                    self.strict_check(
                        false,
                        &name,
                        &format!("PAX {} with a leading `+`", String::from_utf8_lossy(&key)),
                    )?;
                }
                match key.as_slice() {
                    b"path" => {
                        self.strict_check(
                            !had_long_name,
                            &name,
                            "both a GNU long name and a PAX path",
                        )?;
                        name = value;
                    }
                    b"linkpath" => {
                        self.strict_check(
                            !had_long_link,
                            &name,
                            "both a GNU long link name and a PAX linkpath",
                        )?;
                        link = value;
                    }
                    b"size" => {
                        size = parse_decimal(&value)
                            .and_then(|s| u64::try_from(s).ok())
                            .ok_or_else(|| malformed(&name, "bad PAX size"))?;
                    }
                    b"uid" => {
                        uid =
                            parse_decimal(&value).ok_or_else(|| malformed(&name, "bad PAX uid"))?
                    }
                    b"gid" => {
                        gid =
                            parse_decimal(&value).ok_or_else(|| malformed(&name, "bad PAX gid"))?
                    }
                    b"mtime" => match parse_pax_time(&value) {
                        Some(t) => mtime = t,
                        None => self.strict_check(false, &name, "bad PAX mtime")?,
                    },
                    _ if key.starts_with(b"SCHILY.xattr.") => {
                        xattrs.push((key[b"SCHILY.xattr.".len()..].to_vec(), value));
                    }
                    _ if key.starts_with(b"GNU.sparse.") => sparse = true,
                    _ => {}
                }
            }
        }
        if name.contains(&0) || link.contains(&0) {
            return Err(Error::InvalidEntry {
                path: String::from_utf8_lossy(&name).into_owned(),
                reason: InvalidEntry::NulInName,
            });
        }

        let kind = match typeflag {
            b'0' | b'7' => Kind::File,
            0 if name.ends_with(b"/") => Kind::Dir,
            0 => Kind::File,
            b'1' => Kind::Hardlink,
            b'2' => Kind::Symlink,
            b'3' => Kind::Char,
            b'4' => Kind::Block,
            b'5' => Kind::Dir,
            b'6' => Kind::Fifo,
            b'g' => Kind::Global,
            _ => Kind::Unsupported,
        };
        let kind = if sparse {
            // GNU sparse in PAX form: report it as the sparse type it is.
            typeflag = b'S';
            Kind::Unsupported
        } else {
            kind
        };

        if kind == Kind::Global {
            // Checked like any extension, then ignored (SPEC C-S07).
            let mut pending = Pending::default();
            let data = self.extension(&mut pending, size)?;
            let records =
                parse_pax(&data).ok_or_else(|| malformed(&name, "malformed PAX global record"))?;
            // GNU tar applies these to every entry that follows (so it frames and names them
            // differently from Go, which ignores them): strict mode refuses them.
            if let Some((key, _)) = records
                .iter()
                .find(|(key, _)| matches!(key.as_slice(), b"size" | b"path" | b"linkpath"))
            {
                self.strict_check(
                    false,
                    &name,
                    &format!(
                        "PAX global record `{}` would apply to every entry",
                        String::from_utf8_lossy(key)
                    ),
                )?;
            }
            size = 0;
        } else if kind.header_only() && size > 0 {
            // Go reads no data for these whatever the size says; strict mode refuses the
            // ambiguity.
            self.strict_check(false, &name, "non-zero size for an entry without data")?;
            size = 0;
        }
        if block[156] == b'S' {
            // GNU sparse extension blocks follow the header.
            let mut extended = block[482] != 0;
            while extended {
                let Some(ext) = self.block()? else {
                    return Err(truncated());
                };
                extended = ext[504] != 0;
            }
        }

        self.remaining = size;
        self.padding = padding(size);
        Ok(Header {
            name,
            link,
            kind,
            typeflag,
            mode: (mode & 0o7777) as u32,
            uid,
            gid,
            mtime,
            dev_major,
            dev_minor,
            size,
            xattrs,
        })
    }

    /// Reads the rest of the stream (bytes after the end-of-archive marker count towards the
    /// diffID).
    fn drain(&mut self) -> Result<()> {
        self.start = 0;
        self.end = 0;
        while !self.eof {
            match self.inner.read(&mut self.buf) {
                Ok(0) => self.eof = true,
                Ok(n) => {
                    let n = n.min(self.buf.len());
                    self.hash.update(&self.buf[..n])?;
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(error_from_io(err)),
            }
        }
        Ok(())
    }

    /// The digest and size of the whole stream (call after [`TarReader::next_header`] has
    /// returned `None`).
    pub(crate) fn finish(self) -> Result<(Digest, u64)> {
        let size = self.hash.bytes();
        Ok((self.hash.finish()?, size))
    }
}

/// The data of a [`TarReader`]'s current entry, from [`TarReader::data`].
pub struct EntryData<'a, R: Read> {
    reader: &'a mut TarReader<R>,
}

impl<R: Read> EntryData<'_, R> {
    /// Bytes of the entry's data not read yet.
    pub fn remaining(&self) -> u64 {
        self.reader.remaining
    }
}

impl<R: Read> Read for EntryData<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let r = &mut *self.reader;
        if r.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = usize::try_from(r.remaining)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        if r.buffered() == 0 {
            let have = r.fill(want.min(BUFFER)).map_err(io::Error::other)?;
            if have == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, truncated()));
            }
        }
        let n = want.min(r.buffered());
        buf[..n].copy_from_slice(&r.buf[r.start..r.start + n]);
        r.start += n;
        r.remaining -= n as u64;
        Ok(n)
    }
}

/// Why copying entry data failed: reading the archive, or writing the file.
pub(crate) enum CopyError {
    Read(Error),
    Write(io::Error),
}

fn padding(size: u64) -> u64 {
    (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64
}

fn trim_nuls(mut data: Vec<u8>) -> Vec<u8> {
    while data.last() == Some(&0) {
        data.pop();
    }
    data
}

/// The name from the header fields: `prefix/name` for POSIX ustar (131-byte prefix for
/// star), the name field alone otherwise.
fn header_name(block: &[u8; BLOCK]) -> Vec<u8> {
    let name = cstr(&block[..100]);
    if &block[257..263] == b"ustar\0" {
        let prefix = if &block[508..512] == b"tar\0" {
            cstr(&block[345..476])
        } else {
            cstr(&block[345..500])
        };
        if !prefix.is_empty() {
            let mut full = Vec::with_capacity(prefix.len() + 1 + name.len());
            full.extend_from_slice(prefix);
            full.push(b'/');
            full.extend_from_slice(name);
            return full;
        }
    }
    name.to_vec()
}

fn check_checksum(block: &[u8; BLOCK]) -> Result<()> {
    let Some(recorded) = parse_numeric(&block[148..156]) else {
        return Err(corrupt("bad header checksum field"));
    };
    let mut unsigned: i64 = 0;
    let mut signed: i64 = 0;
    for (i, &b) in block.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += i64::from(b);
        signed += i64::from(b as i8);
    }
    if recorded != unsigned && recorded != signed {
        return Err(corrupt("header checksum mismatch"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_fields() {
        assert_eq!(parse_numeric(b"0000644\0"), Some(0o644));
        assert_eq!(parse_numeric(b"  644 \0"), Some(0o644));
        assert_eq!(parse_numeric(b"\0\0\0\0"), Some(0));
        assert_eq!(parse_numeric(b"0000648\0"), None);
        assert_eq!(parse_numeric(b"-000644\0"), None);
        // base-256, positive and negative
        assert_eq!(parse_numeric(&[0x80, 0, 0, 0, 0, 0, 1, 0]), Some(256));
        assert_eq!(parse_numeric(&[0xff; 8]), Some(-1));
        assert_eq!(
            parse_numeric(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe]),
            Some(-2)
        );
        // overflow of 12-byte base-256
        assert_eq!(
            parse_numeric(&[0x80, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            None
        );
        assert_eq!(
            parse_numeric(&[
                0x80, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff
            ]),
            Some(i64::MAX)
        );
    }

    #[test]
    fn pax_records() {
        assert_eq!(
            parse_pax(b"12 path=abc\n"),
            Some(vec![(b"path".to_vec(), b"abc".to_vec())])
        );
        assert_eq!(parse_pax(b"13 path=abc\n"), None);
        assert_eq!(parse_pax(b"11 path=abc\n"), None);
        assert_eq!(parse_pax(b"12 pathxabc\n"), None);
        assert_eq!(parse_pax(b"x2 path=abc\n"), None);
        assert_eq!(parse_pax(b"9 =value\n"), None);
        assert_eq!(parse_pax(b"13 path=a\0bc\n"), None);
        assert_eq!(
            parse_pax(b"26 SCHILY.xattr.user.a=\0\n\n"),
            Some(vec![(b"SCHILY.xattr.user.a".to_vec(), b"\0\n".to_vec())])
        );
        assert_eq!(parse_pax(b"12 path=abc\n\0\0\0"), None);
    }

    #[test]
    fn pax_times() {
        assert_eq!(
            parse_pax_time(b"1700000000.5"),
            Some((1_700_000_000, 500_000_000))
        );
        assert_eq!(parse_pax_time(b"-1.5"), Some((-2, 500_000_000)));
        assert_eq!(
            parse_pax_time(b"99999999999999999999999"),
            Some((i64::MAX, 0))
        );
        assert_eq!(parse_pax_time(b"1e400"), None);
        assert_eq!(parse_pax_time(b""), None);
        assert_eq!(parse_pax_time(b"1."), None);
    }

    #[test]
    fn decimals() {
        assert_eq!(parse_decimal(b"42"), Some(42));
        assert_eq!(parse_decimal(b"-1"), Some(-1));
        assert_eq!(parse_decimal(b"99999999999999999999"), None);
        assert_eq!(parse_decimal(b"4 2"), None);
    }
}
