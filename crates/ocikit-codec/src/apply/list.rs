//! Listing a layer's entries with the applier's own tar reader, without touching a
//! filesystem: what `tar -tv` shows, as values.

use std::io::Read;

use ocikit_digest::{Digest, Hasher};

use crate::tar::{Kind, TarReader};
use crate::{Error, Limits, Result};

/// What a listed entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EntryKind {
    /// A regular file (typeflag `0`, `\0` or `7`).
    File,
    /// A directory (typeflag `5`, or an old `\0` entry whose name ends in `/`).
    Directory,
    /// A symbolic link (typeflag `2`).
    Symlink,
    /// A hard link to an earlier entry (typeflag `1`).
    Hardlink,
    /// A character device (typeflag `3`).
    CharDevice,
    /// A block device (typeflag `4`).
    BlockDevice,
    /// A FIFO (typeflag `6`).
    Fifo,
    /// Anything the applier does not create (sparse files, volume labels, vendor types);
    /// [`ListedEntry::typeflag`] says which.
    Other,
}

/// One entry of a layer, its extension headers (PAX, GNU long names) applied.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListedEntry {
    /// The name as recorded (bytes, not cleaned: a leading `./` or `/` stays).
    pub path: Vec<u8>,
    /// The link target of a symlink or hardlink (empty otherwise).
    pub link: Vec<u8>,
    /// What the entry is.
    pub kind: EntryKind,
    /// The raw typeflag byte.
    pub typeflag: u8,
    /// Permission bits (`0o7777` at most).
    pub mode: u32,
    /// The owner's uid.
    pub uid: i64,
    /// The owner's gid.
    pub gid: i64,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// The sub-second part of the modification time (PAX `mtime` only).
    pub mtime_nanos: u32,
    /// Bytes of data the entry carries.
    pub size: u64,
    /// Major and minor numbers of a device entry.
    pub device: Option<(i64, i64)>,
    /// `SCHILY.xattr.*` records, in archive order.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Every entry of an uncompressed layer tar, in archive order, and the layer's diffID
/// (SHA-256 of the whole stream, trailing bytes included). PAX global headers are not
/// entries and are left out.
///
/// The reader is the one [`apply_layer`](super::apply_layer) uses, under the same `limits`
/// and in its strict mode, so what this lists is what applying would see; entry names are
/// not judged here (a listing of a hostile layer shows its `../` names as they are).
///
/// ```
/// use ocikit_codec::apply::{list_entries, EntryKind};
/// use ocikit_codec::Limits;
///
/// let mut builder = tar::Builder::new(Vec::new());
/// let mut header = tar::Header::new_ustar();
/// header.set_path("etc/hostname")?;
/// header.set_size(5);
/// header.set_mode(0o644);
/// header.set_cksum();
/// builder.append(&header, &b"host\n"[..])?;
/// let tar = builder.into_inner()?;
///
/// let (entries, _diff_id) = list_entries(&tar[..], Limits::default())?;
/// assert_eq!(entries[0].path, b"etc/hostname");
/// assert_eq!((entries[0].kind, entries[0].size), (EntryKind::File, 5));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// [`Error::Corrupt`](crate::Error::Corrupt) for a malformed or truncated tar,
/// [`Error::InvalidEntry`](crate::Error::InvalidEntry) for malformed extension records, and
/// [`Error::LimitExceeded`](crate::Error::LimitExceeded) past `limits`.
pub fn list_entries<R: Read>(tar: R, limits: Limits) -> Result<(Vec<ListedEntry>, Digest)> {
    let mut reader = TarReader::hashed(tar, Hasher::sha256(), limits, true);
    let mut entries = Vec::new();
    while let Some(h) = reader.next_header()? {
        let kind = match h.kind {
            Kind::Global => continue,
            Kind::File => EntryKind::File,
            Kind::Dir => EntryKind::Directory,
            Kind::Symlink => EntryKind::Symlink,
            Kind::Hardlink => EntryKind::Hardlink,
            Kind::Char => EntryKind::CharDevice,
            Kind::Block => EntryKind::BlockDevice,
            Kind::Fifo => EntryKind::Fifo,
            Kind::Unsupported => EntryKind::Other,
        };
        let device = matches!(kind, EntryKind::CharDevice | EntryKind::BlockDevice)
            .then_some((h.dev_major, h.dev_minor));
        entries.push(ListedEntry {
            path: h.name,
            link: h.link,
            kind,
            typeflag: h.typeflag,
            mode: h.mode,
            uid: h.uid,
            gid: h.gid,
            mtime: h.mtime.0,
            mtime_nanos: h.mtime.1,
            size: h.size,
            device,
            xattrs: h.xattrs,
        });
    }
    let (diff_id, _) = reader.finish()?;
    Ok((entries, diff_id))
}

/// Reads a whole tar stream with the applier's strict reader, entry data skipped: what
/// [`LayerWriter::from_tar_file`](crate::writer::LayerWriter::from_tar_file) checks a tar
/// file with. A stream whose first header is not a tar header is [`Error::NotTar`]
/// (`compression` names what the stream was); anything the reader refuses later keeps its
/// own error.
pub(crate) fn check_tar<R: Read>(tar: R, limits: Limits, compression: &'static str) -> Result<()> {
    // The layer writer the bytes are teed into computes the diffID: no second hash here.
    let mut reader = TarReader::new(tar, limits);
    match reader.next_header() {
        Ok(_) => {}
        Err(err @ Error::Corrupt { format: "tar", .. }) => {
            return Err(Error::NotTar {
                compression,
                source: Box::new(err),
            });
        }
        Err(err) => return Err(err),
    }
    // At the end of the archive the reader has read the rest of the stream.
    while reader.next_header()?.is_some() {}
    Ok(())
}
