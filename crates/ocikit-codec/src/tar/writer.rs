//! [`TarWriter`]: archives of regular files and directories, in the one header format
//! ocikit writes (the format of the layer builder, [`crate::build`]).

use std::io::{self, Read, Write};

use crate::build::tarfmt::{self, BLOCK, EntryHeader, TypeFlag};

/// Bytes copied at a time from an entry's data.
const COPY_CHUNK: usize = 64 << 10;

/// The metadata of one entry a [`TarWriter`] writes: permission bits, numeric owner and
/// modification time. Owner names (`uname`, `gname`) are never written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct EntryMeta {
    /// Permission bits (masked to `0o7777` when written).
    pub mode: u32,
    /// The owner's user id.
    pub uid: u64,
    /// The owner's group id.
    pub gid: u64,
    /// Seconds since the epoch (negative values are written as a PAX `mtime` record).
    pub mtime: i64,
}

impl EntryMeta {
    /// Permission bits `mode`, owned by 0:0, modified at the epoch.
    pub const fn new(mode: u32) -> EntryMeta {
        EntryMeta {
            mode,
            uid: 0,
            gid: 0,
            mtime: 0,
        }
    }

    /// This metadata owned by `uid`:`gid`.
    pub const fn with_owner(mut self, uid: u64, gid: u64) -> EntryMeta {
        self.uid = uid;
        self.gid = gid;
        self
    }

    /// This metadata with the modification time `mtime` (seconds since the epoch).
    pub const fn with_mtime(mut self, mtime: i64) -> EntryMeta {
        self.mtime = mtime;
        self
    }
}

/// Writes a tar archive of regular files and directories to any [`Write`], one entry at a
/// time, streaming each file's data (nothing is buffered beyond one copy chunk).
///
/// The headers are those of ocikit's layers ([`crate::build`], "Tar format"): POSIX ustar,
/// each preceded by a PAX extended header only when a value does not fit (names over 100
/// bytes, sizes of 8 GiB and more, owners over `0o7777777`, negative times); no GNU
/// extensions, no owner names, no access or change times. The bytes depend only on the
/// entries appended, so the same entries always give the same archive. Go's `archive/tar`
/// (skopeo, docker, containerd), GNU tar, the `tar` crate and [`TarReader`](super::TarReader)
/// read it.
///
/// Names are written as given (bytes; a directory's gets a trailing `/`); what a name may
/// be is the caller's rule, except that it must not be empty or hold a NUL byte.
///
/// ```
/// use std::io::Read;
/// use ocikit_codec::Limits;
/// use ocikit_codec::tar::{EntryMeta, Kind, TarReader, TarWriter};
///
/// let mut writer = TarWriter::new(Vec::new());
/// writer.append_dir(b"etc", &EntryMeta::new(0o755))?;
/// writer.append_file(b"etc/hostname", &EntryMeta::new(0o644), 5, &b"host\n"[..])?;
/// let archive = writer.finish()?;
///
/// let mut reader = TarReader::new(&archive[..], Limits::default());
/// let dir = reader.next_header()?.unwrap();
/// assert_eq!((dir.kind, &dir.name[..], dir.mode), (Kind::Dir, &b"etc/"[..], 0o755));
/// let file = reader.next_header()?.unwrap();
/// let mut data = Vec::new();
/// reader.data().read_to_end(&mut data)?;
/// assert_eq!((&file.name[..], &data[..]), (&b"etc/hostname"[..], &b"host\n"[..]));
/// assert!(reader.next_header()?.is_none());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
///
/// Every method fails with the output's own write errors, and
/// [`append_file`](TarWriter::append_file) with its data source's read errors, unchanged.
/// A name that is empty or holds a NUL is [`io::ErrorKind::InvalidInput`]; data shorter
/// than the size given is [`io::ErrorKind::UnexpectedEof`], longer is
/// [`io::ErrorKind::InvalidData`]. After an error the archive is incomplete (the entry's
/// header may have been written): discard what was written.
#[derive(Debug)]
pub struct TarWriter<W: Write> {
    out: W,
    buf: Vec<u8>,
    entries: u64,
}

impl<W: Write> TarWriter<W> {
    /// A writer of an archive into `out`.
    pub fn new(out: W) -> TarWriter<W> {
        TarWriter {
            out,
            buf: Vec::new(),
            entries: 0,
        }
    }

    /// Appends the directory `name` (a trailing `/` is added when it has none).
    pub fn append_dir(&mut self, name: &[u8], meta: &EntryMeta) -> io::Result<()> {
        let mut path = name.to_vec();
        if !path.ends_with(b"/") {
            path.push(b'/');
        }
        self.header(&path, TypeFlag::Directory, meta, 0)
    }

    /// Appends the regular file `name` of `size` bytes, reading its data from `data`: exactly
    /// `size` bytes, then one more read, which must find the end (so a source that checks
    /// its content at its end, a decoder or a verifying reader, has done so when this
    /// returns).
    pub fn append_file<R: Read>(
        &mut self,
        name: &[u8],
        meta: &EntryMeta,
        size: u64,
        mut data: R,
    ) -> io::Result<()> {
        self.header(name, TypeFlag::Regular, meta, size)?;
        if self.buf.is_empty() {
            self.buf.resize(COPY_CHUNK, 0);
        }
        let mut left = size;
        while left > 0 {
            let want = usize::try_from(left).map_or(COPY_CHUNK, |l| l.min(COPY_CHUNK));
            let chunk = &mut self.buf[..want];
            let n = match data.read(chunk) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("entry data ended {left} bytes before its size"),
                    ));
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.out.write_all(&chunk[..n])?;
            left -= n as u64;
        }
        let mut probe = [0u8; 1];
        loop {
            match data.read(&mut probe) {
                Ok(0) => break,
                Ok(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "entry data is longer than its size",
                    ));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let pad = [0u8; BLOCK];
        self.out.write_all(&pad[..tarfmt::padding(size)])
    }

    /// Entries appended so far.
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// The output.
    pub fn get_ref(&self) -> &W {
        &self.out
    }

    /// Writes the end-of-archive marker (two zero blocks), flushes and returns the output.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.write_all(&[0u8; 2 * BLOCK])?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn header(
        &mut self,
        path: &[u8],
        typeflag: TypeFlag,
        meta: &EntryMeta,
        size: u64,
    ) -> io::Result<()> {
        if path.is_empty() || path == b"/" || path.contains(&0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a tar entry name must not be empty or hold NUL",
            ));
        }
        let bytes = tarfmt::encode(&EntryHeader {
            path,
            typeflag,
            mode: meta.mode & 0o7777,
            uid: meta.uid,
            gid: meta.gid,
            size,
            mtime: meta.mtime,
            link: b"",
            dev: (0, 0),
            xattrs: &[],
        })
        .map_err(|reason| io::Error::new(io::ErrorKind::InvalidInput, reason))?;
        self.out.write_all(&bytes)?;
        self.entries += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::Limits;
    use crate::tar::{Kind, TarReader};

    /// Kind, name, mode, uid, gid, mtime and data of an entry read back.
    type Entry = (Kind, Vec<u8>, u32, i64, i64, i64, Vec<u8>);

    fn entries(archive: &[u8]) -> Vec<Entry> {
        let mut reader = TarReader::new(archive, Limits::default());
        let mut out = Vec::new();
        while let Some(h) = reader.next_header().unwrap() {
            let mut data = Vec::new();
            reader.data().read_to_end(&mut data).unwrap();
            out.push((h.kind, h.name, h.mode, h.uid, h.gid, h.mtime.0, data));
        }
        out
    }

    #[test]
    fn files_and_directories_read_back_with_their_metadata() {
        let long = [b'n'; 150];
        let mut name = b"blobs/sha512/".to_vec();
        name.extend_from_slice(&long);
        let content: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut w = TarWriter::new(Vec::new());
        w.append_dir(b"blobs/", &EntryMeta::new(0o755)).unwrap();
        w.append_file(
            b"a",
            &EntryMeta::new(0o600)
                .with_owner(3_000_000_000, 7)
                .with_mtime(-5),
            3,
            &b"abc"[..],
        )
        .unwrap();
        w.append_file(&name, &EntryMeta::new(0o644), 200_000, &content[..])
            .unwrap();
        w.append_file(b"empty", &EntryMeta::new(0o644), 0, io::empty())
            .unwrap();
        assert_eq!(w.entries(), 4);
        let archive = w.finish().unwrap();
        assert_eq!(archive.len() % BLOCK, 0);
        assert_eq!(
            entries(&archive),
            [
                (Kind::Dir, b"blobs/".to_vec(), 0o755, 0, 0, 0, vec![]),
                (
                    Kind::File,
                    b"a".to_vec(),
                    0o600,
                    3_000_000_000,
                    7,
                    -5,
                    b"abc".to_vec()
                ),
                (Kind::File, name.clone(), 0o644, 0, 0, 0, content.clone()),
                (Kind::File, b"empty".to_vec(), 0o644, 0, 0, 0, vec![]),
            ]
        );
        // An independent reader agrees.
        let mut archive_ref = tar::Archive::new(&archive[..]);
        let names: Vec<Vec<u8>> = archive_ref
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path_bytes().into_owned())
            .collect();
        assert_eq!(
            names,
            [b"blobs/".to_vec(), b"a".to_vec(), name, b"empty".to_vec()]
        );
    }

    #[test]
    fn the_same_entries_give_the_same_bytes() {
        let write = || {
            let mut w = TarWriter::new(Vec::new());
            w.append_dir(b"d", &EntryMeta::new(0o755)).unwrap();
            w.append_file(b"d/f", &EntryMeta::new(0o644), 4, &b"data"[..])
                .unwrap();
            w.finish().unwrap()
        };
        let (a, b) = (write(), write());
        assert_eq!(a, b);
        // Two headers, one data block, two end blocks; ustar magic, no owner names.
        assert_eq!(a.len(), 5 * BLOCK);
        assert_eq!(&a[257..265], b"ustar\x0000");
        assert!(a[265..329].iter().all(|&b| b == 0));
    }

    #[test]
    fn data_of_the_wrong_length_is_refused() {
        let mut w = TarWriter::new(Vec::new());
        let short = w
            .append_file(b"f", &EntryMeta::new(0o644), 10, &b"abc"[..])
            .unwrap_err();
        assert_eq!(short.kind(), io::ErrorKind::UnexpectedEof);
        let mut w = TarWriter::new(Vec::new());
        let long = w
            .append_file(b"f", &EntryMeta::new(0o644), 2, &b"abc"[..])
            .unwrap_err();
        assert_eq!(long.kind(), io::ErrorKind::InvalidData);
        // The source's own error comes through unchanged.
        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::new(io::ErrorKind::PermissionDenied, "nope"))
            }
        }
        let mut w = TarWriter::new(Vec::new());
        let failed = w
            .append_file(b"f", &EntryMeta::new(0o644), 2, Failing)
            .unwrap_err();
        assert_eq!(failed.kind(), io::ErrorKind::PermissionDenied);
    }

    #[test]
    fn names_that_tar_cannot_hold_are_refused() {
        let mut w = TarWriter::new(Vec::new());
        for name in [&b""[..], b"a\0b", b"/"] {
            let e = w
                .append_file(name, &EntryMeta::new(0o644), 0, io::empty())
                .unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{name:?}");
        }
        let e = w.append_dir(b"", &EntryMeta::new(0o755)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(w.entries(), 0);
        assert!(w.get_ref().is_empty());
    }
}
