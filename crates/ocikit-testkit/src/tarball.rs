//! Tar bytes with chosen entries, written here by hand (independently of the `tar` crate and
//! of ocikit's own tar code), hostile ones included: `..` and absolute names, links out of
//! the root, devices, sizes that lie, bad checksums, PAX records, GNU long names and any byte
//! of a header patched.

/// One tar entry: a ustar header (with a PAX header before it when needed) and its data.
#[derive(Clone, Debug)]
pub struct Entry {
    /// The name, as bytes (a PAX `path` record carries it when over 100 bytes).
    pub name: Vec<u8>,
    /// The link target of links (a PAX `linkpath` record when over 100 bytes).
    pub link: Vec<u8>,
    /// The typeflag (`b'0'` file, `b'5'` directory, `b'2'` symlink, `b'1'` hardlink, ...).
    pub typeflag: u8,
    /// Permission bits (and more, if a test wants them).
    pub mode: u32,
    /// Owner.
    pub uid: u64,
    /// Group.
    pub gid: u64,
    /// Modification time, seconds since the epoch.
    pub mtime: u64,
    /// The data that follows the header (padded to 512 bytes).
    pub data: Vec<u8>,
    /// The size the header claims, when it should differ from the data's length.
    pub size: Option<u64>,
    /// Device major and minor numbers.
    pub dev: (u32, u32),
    /// PAX records for a PAX header before this entry.
    pub pax: Vec<(Vec<u8>, Vec<u8>)>,
    /// Whether the header checksum is off by one.
    pub bad_checksum: bool,
    /// Bytes written over the header at these offsets, after it is built and before its
    /// checksum.
    pub patches: Vec<(usize, Vec<u8>)>,
}

impl Entry {
    /// An entry of any typeflag with a name of any bytes, mode 0644, owner 0, mtime 0.
    pub fn raw(name: impl AsRef<[u8]>, typeflag: u8) -> Entry {
        Entry {
            name: name.as_ref().to_vec(),
            link: Vec::new(),
            typeflag,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 0,
            data: Vec::new(),
            size: None,
            dev: (0, 0),
            pax: Vec::new(),
            bad_checksum: false,
            patches: Vec::new(),
        }
    }

    /// A regular file.
    pub fn file(name: impl AsRef<[u8]>, data: impl AsRef<[u8]>) -> Entry {
        Entry {
            data: data.as_ref().to_vec(),
            ..Entry::raw(name, b'0')
        }
    }

    /// A directory, mode 0755.
    pub fn dir(name: impl AsRef<[u8]>) -> Entry {
        Entry::raw(name, b'5').mode(0o755)
    }

    /// A symbolic link to `target`, mode 0777.
    pub fn symlink(name: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> Entry {
        Entry {
            link: target.as_ref().to_vec(),
            ..Entry::raw(name, b'2').mode(0o777)
        }
    }

    /// A hard link to the earlier entry `target`.
    pub fn hardlink(name: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> Entry {
        Entry {
            link: target.as_ref().to_vec(),
            ..Entry::raw(name, b'1')
        }
    }

    /// A character device.
    pub fn char_device(name: impl AsRef<[u8]>, major: u32, minor: u32) -> Entry {
        Entry {
            dev: (major, minor),
            ..Entry::raw(name, b'3')
        }
    }

    /// A FIFO.
    pub fn fifo(name: impl AsRef<[u8]>) -> Entry {
        Entry::raw(name, b'6')
    }

    /// A GNU long-name (`b'L'`) or long-link (`b'K'`) record carrying `value`.
    pub fn gnu_long(typeflag: u8, value: impl AsRef<[u8]>) -> Entry {
        let mut data = value.as_ref().to_vec();
        data.push(0);
        Entry {
            data,
            ..Entry::raw("././@LongLink", typeflag)
        }
    }

    /// With these permission bits.
    pub fn mode(mut self, mode: u32) -> Entry {
        self.mode = mode;
        self
    }

    /// With this owner and group.
    pub fn owner(mut self, uid: u64, gid: u64) -> Entry {
        self.uid = uid;
        self.gid = gid;
        self
    }

    /// With this modification time.
    pub fn mtime(mut self, mtime: u64) -> Entry {
        self.mtime = mtime;
        self
    }

    /// Claiming `size` bytes in the header, whatever the data is.
    pub fn claimed_size(mut self, size: u64) -> Entry {
        self.size = Some(size);
        self
    }

    /// With a PAX record `key=value`.
    pub fn pax(mut self, key: &str, value: &[u8]) -> Entry {
        self.pax.push((key.as_bytes().to_vec(), value.to_vec()));
        self
    }

    /// With a wrong header checksum.
    pub fn bad_checksum(mut self) -> Entry {
        self.bad_checksum = true;
        self
    }

    /// With `bytes` written over the header at `offset`.
    pub fn patch(mut self, offset: usize, bytes: &[u8]) -> Entry {
        self.patches.push((offset, bytes.to_vec()));
        self
    }

    /// The entry's 512-byte ustar header (names and links cut at 100 bytes).
    pub fn header(&self) -> [u8; 512] {
        let mut h = [0u8; 512];
        let name = &self.name[..self.name.len().min(100)];
        h[..name.len()].copy_from_slice(name);
        octal(&mut h[100..108], u64::from(self.mode));
        octal(&mut h[108..116], self.uid);
        octal(&mut h[116..124], self.gid);
        octal(
            &mut h[124..136],
            self.size.unwrap_or(self.data.len() as u64),
        );
        octal(&mut h[136..148], self.mtime);
        h[156] = self.typeflag;
        let link = &self.link[..self.link.len().min(100)];
        h[157..157 + link.len()].copy_from_slice(link);
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        octal(&mut h[329..337], u64::from(self.dev.0));
        octal(&mut h[337..345], u64::from(self.dev.1));
        for (offset, bytes) in &self.patches {
            h[*offset..*offset + bytes.len()].copy_from_slice(bytes);
        }
        h[148..156].copy_from_slice(b"        ");
        let mut sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
        if self.bad_checksum {
            sum += 1;
        }
        let text = format!("{sum:06o}\0 ");
        h[148..156].copy_from_slice(&text.as_bytes()[text.len() - 8..]);
        h
    }
}

/// Writes `value` as zero-padded octal with a NUL terminator, or in base-256 when it does
/// not fit (as GNU tar does for large sizes).
fn octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let text = format!("{value:0digits$o}");
    if text.len() <= digits {
        field[..digits].copy_from_slice(text.as_bytes());
        field[digits] = 0;
    } else {
        // Base-256: the marker bit in the first byte, the value big-endian in the rest.
        field.fill(0);
        let bytes = value.to_be_bytes();
        let n = field.len().min(9) - 1;
        let end = field.len();
        field[end - n..].copy_from_slice(&bytes[8 - n..]);
        field[0] |= 0x80;
    }
}

/// One PAX record, `LEN key=value\n`, its length counting itself.
pub fn pax_record(key: &[u8], value: &[u8]) -> Vec<u8> {
    let body = key.len() + value.len() + 3;
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    let mut record = format!("{len} ").into_bytes();
    record.extend_from_slice(key);
    record.push(b'=');
    record.extend_from_slice(value);
    record.push(b'\n');
    record
}

fn pad(out: &mut Vec<u8>) {
    let rem = out.len() % 512;
    if rem != 0 {
        out.resize(out.len() + 512 - rem, 0);
    }
}

/// The entries as tar bytes, without the end-of-archive marker (for truncated archives, or
/// to append to).
pub fn body(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        let mut records = Vec::new();
        if e.name.len() > 100 {
            records.extend(pax_record(b"path", &e.name));
        }
        if e.link.len() > 100 {
            records.extend(pax_record(b"linkpath", &e.link));
        }
        for (k, v) in &e.pax {
            records.extend(pax_record(k, v));
        }
        if !records.is_empty() {
            let x = Entry {
                data: records,
                ..Entry::raw("PaxHeaders/x", b'x')
            };
            out.extend_from_slice(&x.header());
            out.extend_from_slice(&x.data);
            pad(&mut out);
        }
        out.extend_from_slice(&e.header());
        out.extend_from_slice(&e.data);
        pad(&mut out);
    }
    out
}

/// The entries as a complete tar (two zero blocks at the end).
pub fn archive(entries: &[Entry]) -> Vec<u8> {
    let mut out = body(entries);
    out.extend_from_slice(&[0u8; 1024]);
    out
}

/// A complete tar of regular files, mode 0644, owner 0, mtime 0.
pub fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let entries: Vec<Entry> = files
        .iter()
        .map(|(name, data)| Entry::file(name, data))
        .collect();
    archive(&entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The header read back by hand: checksum, fields and padding as the format says.
    #[test]
    fn headers_follow_ustar() {
        let tar = archive(&[
            Entry::file("a/b.txt", b"hello")
                .mode(0o600)
                .owner(1, 2)
                .mtime(9),
            Entry::symlink("link", "../../etc/passwd"),
        ]);
        assert_eq!(tar.len(), 512 * 2 + 512 + 1024);
        let h = &tar[..512];
        assert_eq!(&h[..8], b"a/b.txt\0");
        assert_eq!(&h[100..108], b"0000600\0");
        assert_eq!(&h[124..136], b"00000000005\0");
        assert_eq!(&h[257..265], b"ustar\x0000");
        let stored = u64::from_str_radix(std::str::from_utf8(&h[148..154]).unwrap(), 8).unwrap();
        let mut blanked = h.to_vec();
        blanked[148..156].copy_from_slice(b"        ");
        assert_eq!(stored, blanked.iter().map(|&b| u64::from(b)).sum::<u64>());
        assert_eq!(&tar[512..517], b"hello");
        assert!(tar[517..1024].iter().all(|&b| b == 0));
        assert_eq!(tar[1024 + 156], b'2');
        assert_eq!(&tar[1024 + 157..1024 + 173], b"../../etc/passwd");
    }

    #[test]
    fn hostile_headers_are_what_was_asked_for() {
        let bad = Entry::file("x", b"").bad_checksum().header();
        let good = Entry::file("x", b"").header();
        assert_ne!(bad[148..156], good[148..156]);
        let lying = Entry::file("x", b"abc").claimed_size(1 << 30).header();
        assert_eq!(&lying[124..136], b"10000000000\0");
        let huge = Entry::file("x", b"").claimed_size(1 << 36).header();
        assert_eq!(huge[124], 0x80);
        assert_eq!(&huge[131..136], &[0x10, 0, 0, 0, 0]);
        // An 8-byte field keeps its marker: 7 bytes of value.
        let owner = Entry::file("x", b"").owner(3_000_000_000, 0).header();
        assert_eq!(&owner[108..116], &[0x80, 0, 0, 0, 0xb2, 0xd0, 0x5e, 0x00]);
        let long = "d/".repeat(80) + "f";
        let tar = archive(&[Entry::file(&long, b"")]);
        assert_eq!(tar[156], b'x', "a PAX header carries the long name");
        let record = pax_record(b"path", long.as_bytes());
        assert_eq!(&tar[512..512 + record.len()], &record[..]);
        assert_eq!(
            record.len().to_string(),
            String::from_utf8_lossy(&record).split(' ').next().unwrap()
        );
    }
}
