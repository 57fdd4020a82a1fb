//! Applying layers to a root filesystem: the image spec's changeset semantics, hardened
//! against hostile archives.
//!
//! [`apply_layer`] reads an *uncompressed* layer tar (decompress with
//! [`compression::Decoder`](crate::compression::Decoder)) and applies it to a directory, as
//! `IS layer.md §Applying Changesets` says (SPEC A.9):
//!
//! - A directory entry over an existing directory keeps it (its contents merge) and gives
//!   it the entry's attributes; any other entry **unlinks** what exists at its path (a whole
//!   directory tree, if need be) and creates itself anew. An existing file is never opened
//!   or truncated, so a file hardlinked to another name (or to a lower snapshot) is never
//!   changed through the other name.
//! - `.wh.<name>` removes `<name>` — a file, a symlink (not what it points to) or a whole
//!   tree — as it came from *lower* layers: paths this layer wrote, before or after the
//!   whiteout, stay (a whiteout only hides lower content). A whiteout of a missing path, or
//!   in a missing directory, does nothing.
//! - `.wh..wh..opq` in directory `D` removes everything `D` held from lower layers, wherever
//!   the marker is in the archive (before or after this layer's own entries in `D`, which
//!   stay). `D` itself stays.
//! - Whiteouts are never materialised. `.wh..wh.*` names other than the opaque marker are
//!   AUFS metadata (`.wh..wh.plnk/...`, `.wh..wh.aufs`) and are skipped, with everything
//!   below them. `.wh.`, `.wh..` and `.wh...` are refused
//!   ([`InvalidEntry::BadWhiteoutTarget`]); in strict mode a whiteout must be an empty
//!   regular file ([`InvalidEntry::WhiteoutNotEmptyFile`]) and a `.wh.` name cannot be a
//!   directory ([`InvalidEntry::WhiteoutAsDirectory`]); lenient mode applies such whiteouts
//!   and skips entries below a `.wh.` directory.
//! - Directory attributes (mode and times) are set after the last entry, deepest first,
//!   since creating children changes a directory's mtime (and a read-only mode would stop
//!   them being created).
//!
//! With [`ApplyMode::Overlay`], whiteouts are kept the way overlayfs stores them, for a
//! snapshotter whose target directory is the layer's own upper directory: `.wh.<name>`
//! becomes a character device 0:0 named `<name>`, and `.wh..wh..opq` sets
//! `trusted.overlay.opaque=y` (or `user.overlay.opaque=y`, see
//! [`ApplyOptions::overlay_userxattr`]) on its directory. A directory that this layer both
//! whites out and recreates is made opaque, so the result means the same as in
//! [`ApplyMode::Apply`].
//!
//! # Hardening
//!
//! Nothing outside the root is ever created, written, linked, removed or changed, whatever
//! the archive holds (SPEC C.1-C.4, D.1):
//!
//! - Entry names are cleaned lexically: leading `/` and `./` go, `.` and empty components
//!   go, and `..` is refused in strict mode when it would climb above the root
//!   ([`InvalidEntry::EscapesRoot`]) or stops at the root in lenient mode. An entry that
//!   would *be* the root is accepted only as a directory (its attributes apply to the root);
//!   anything else is [`InvalidEntry::ReplacesRoot`] (CVE-2021-29136).
//! - Parent directories are resolved from the root's descriptor with
//!   `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)` (or, where the kernel or a seccomp
//!   profile refuses `openat2`, an `O_NOFOLLOW` walk with the same semantics): a symlink in
//!   the root, even one this layer just made, resolves as if the root were `/`. Missing
//!   parents are created through the same resolver. Leaves are made with `O_CREAT | O_EXCL |
//!   O_NOFOLLOW`, `mkdirat`, `symlinkat`, `mknodat` and `linkat` relative to the parent's
//!   descriptor. Symlink targets are data, never resolved at creation.
//! - Hardlink targets are resolved inside the root the same way (an absolute target is
//!   relative to the root) and linked without following a final symlink. A missing target
//!   is [`InvalidEntry::HardlinkTargetMissing`] (no forward references), a directory
//!   [`InvalidEntry::HardlinkToDirectory`].
//! - Metadata never follows symlinks: owners and times are set on the open descriptor or
//!   with `AT_SYMLINK_NOFOLLOW`; symlinks are never chmod-ed; device nodes and FIFOs are
//!   chmod-ed through an `O_PATH | O_NOFOLLOW` descriptor checked to be the node made.
//! - Modes are masked to `0o7777`; setuid and setgid bits are dropped from non-directories
//!   when owners are not kept (unless [`ApplyOptions::strip_setid`] says otherwise). Owners
//!   are kept only when asked or running as root ([`ApplyOptions::preserve_owner`]); ids
//!   must be in `0..=4294967294` ([`InvalidEntry::BadOwner`]); with a uid or gid map
//!   ([`ApplyOptions::uid_map`], [`IdMap`]) they are translated to host ids, and an id no
//!   range holds is refused ([`InvalidEntry::UnmappedOwner`]). [`ApplyOptions::rootless`]
//!   sets no owner at all and records the layer's in an xattr, as `umoci --rootless` does.
//!   Device numbers must fit the
//!   kernel's 12-bit major and 20-bit minor, since larger values would alias other devices
//!   (4096:0 would become the 0:0 whiteout device) ([`InvalidEntry::BadDeviceNumber`]);
//!   devices follow the [`DevicePolicy`].
//! - Extended attributes are applied from an allow-list ([`XattrPolicy`]); overlayfs'
//!   `trusted.overlay.*` and `user.overlay.*` and `security.selinux` never are (SPEC C-W15,
//!   C-S05).
//! - The tar parser is ocikit's own ([`crate::tar`]), strict where parsers are known to
//!   disagree (SPEC C.4), with [`Limits`](crate::Limits) on the entry count and per-entry
//!   metadata; file data is streamed, never buffered whole. `tar::Archive::unpack` is never
//!   used.
//! - Unknown entry types are refused in strict mode ([`InvalidEntry::UnsupportedType`]) or
//!   skipped; PAX global headers are ignored (strict mode refuses those that carry `size`,
//!   `path` or `linkpath`, which GNU tar would apply); mtimes out of range are saturated.
//! - The archive ends at its end-of-archive marker, or where the stream ends at an entry
//!   boundary (umoci writes layers without end blocks); a stream that ends inside a header
//!   or an entry's data is [`Error::Corrupt`].
//!
//! # Failure
//!
//! On error, the root holds whatever was applied before the failing entry; nothing outside
//! it was touched. Rolling back is the caller's job: apply into a fresh snapshot (or a copy)
//! and discard it on error, as snapshotters do. The same holds for
//! [`Error::DiffIdMismatch`], which is known only at the end of the stream.
//!
//! ```no_run
//! use std::fs::File;
//! use std::path::Path;
//! use ocikit_codec::apply::{apply_layer, ApplyOptions};
//! use ocikit_codec::compression::Decoder;
//! use ocikit_codec::Limits;
//!
//! let blob = File::open("layer.tar.gz")?;
//! let tar = Decoder::for_media_type(
//!     blob,
//!     "application/vnd.oci.image.layer.v1.tar+gzip",
//!     Limits::default(),
//! )?;
//! let report = apply_layer(Path::new("rootfs"), tar, &ApplyOptions::default())?;
//! println!("applied {} entries, diffID {}", report.entries, report.diff_id);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod entry;
mod fs;
pub(crate) mod hash;
mod idmap;
mod list;
mod metadata;
mod options;
pub(crate) mod pipeline;
mod whiteout;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::Read;
use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};

use ocikit_digest::Hasher;
use rustix::fs::{Mode, OFlags, fchmod, fstat, futimens};
use rustix::io::Errno;

use crate::tar::{Header, Kind, TarReader};
use crate::{Error, InvalidEntry, Limit, Result};
use fs::{Removed, Root};
pub use idmap::{
    IdField, IdKind, IdMap, IdMapError, IdMapping, ROOTLESS_OWNER_XATTR, rootless_owner_record,
};
pub(crate) use list::check_tar;
pub use list::{EntryKind, ListedEntry, list_entries};
use metadata::read_umask;
pub use options::{ApplyMode, ApplyOptions, ApplyReport, DevicePolicy, XattrPolicy};
pub use pipeline::apply_blob;
use whiteout::{Class, classify};
pub use whiteout::{Class as NameClass, classify as classify_name};

/// Applies one layer — the *uncompressed* tar stream `tar` — to the directory `root`, which
/// must exist; see the [module documentation](self).
///
/// The stream is read to its end (bytes after the end-of-archive marker included) and hashed
/// on the way: [`ApplyReport::diff_id`] is the layer's diffID, and with
/// [`ApplyOptions::expected_diff_id`] a mismatch fails with [`Error::DiffIdMismatch`]. Past
/// the first 8 MiB the hash runs on a helper thread (`ocikit-diffid`, fed copies of the
/// bytes), so that it overlaps with the file system work; `tar` itself is only ever read on
/// the calling thread. Single-threaded otherwise: [`apply_blob`] also overlaps the
/// decompression of a compressed blob, and the reading of the blob, on threads of their own.
///
/// # Errors
/// - [`Error::InvalidEntry`] for an entry the spec or the hardening rules forbid, naming it;
/// - [`Error::Corrupt`] (`"tar"`) for a stream that is not a well-formed tar (bad checksum,
///   truncated);
/// - [`Error::LimitExceeded`] for too many entries or too much metadata for one entry, and
///   whatever the reader's own errors carry (a [`Decoder`](crate::compression::Decoder)'s
///   decompression limits and corruption);
/// - [`Error::Io`] when the filesystem refuses (the path is relative to the root);
/// - [`Error::DiffIdMismatch`].
///
/// On any error the root may hold part of the layer; nothing outside it was touched.
pub fn apply_layer<R: Read>(root: &Path, tar: R, options: &ApplyOptions) -> Result<ApplyReport> {
    let hasher = match &options.expected_diff_id {
        Some(expected) => Hasher::new(expected.algorithm()).map_err(|_| {
            Error::io(
                "hash",
                None,
                std::io::Error::new(
                    std::io::ErrorKind::Unsupported,
                    format!("cannot compute {} diffIDs", expected.algorithm()),
                ),
            )
        })?,
        None => Hasher::sha256(),
    };
    let root_dir = Root::open(root, options.portable_resolver)
        .map_err(|e| Error::io("open", Some(root.to_path_buf()), e.into()))?;
    let mut applier = Applier::new(root_dir, options);
    let mut tar = TarReader::hashed(tar, hasher, options.limits, options.strict);
    while let Some(header) = tar.next_header()? {
        applier.entry(&mut tar, header)?;
    }
    applier.finish()?;
    let (diff_id, tar_size) = tar.finish()?;
    if let Some(expected) = &options.expected_diff_id
        && *expected != diff_id
    {
        return Err(Error::DiffIdMismatch {
            expected: expected.clone(),
            actual: diff_id,
        });
    }
    let c = applier.counts;
    Ok(ApplyReport {
        entries: c.entries,
        files: c.files,
        directories: c.directories,
        symlinks: c.symlinks,
        hardlinks: c.hardlinks,
        special_files: c.special_files,
        whiteouts: c.whiteouts,
        devices_skipped: c.devices_skipped,
        entries_skipped: c.entries_skipped,
        xattrs_skipped: c.xattrs_skipped,
        content_bytes: c.content_bytes,
        tar_size,
        diff_id,
    })
}

#[derive(Default, Clone, Copy)]
struct Counts {
    entries: u64,
    files: u64,
    directories: u64,
    symlinks: u64,
    hardlinks: u64,
    special_files: u64,
    whiteouts: u64,
    devices_skipped: u64,
    entries_skipped: u64,
    xattrs_skipped: u64,
    content_bytes: u64,
}

/// Longest path (normalised, relative to the root) an entry may have: `PATH_MAX` less the
/// terminating NUL.
const MAX_PATH: usize = 4095;

/// Cleans an entry name: no leading `/`, no `.` or empty components, `..` resolved
/// lexically (refused above the root when `strict`, else stopped there). Empty result: the
/// root. (Also the squash's rule for names, [`crate::squash`].)
pub(crate) fn normalize(name: &[u8], strict: bool) -> Result<Vec<u8>, InvalidEntry> {
    if name.is_empty() {
        return Err(InvalidEntry::EmptyName);
    }
    let mut parts: Vec<&[u8]> = Vec::new();
    for part in name.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                if parts.pop().is_none() && strict {
                    return Err(InvalidEntry::EscapesRoot);
                }
            }
            _ => parts.push(part),
        }
    }
    Ok(parts.join(&b'/'))
}

fn split_parent(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&path[..0], path),
    }
}

fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(dir.len() + 1 + name.len());
    out.extend_from_slice(dir);
    if !dir.is_empty() {
        out.push(b'/');
    }
    out.extend_from_slice(name);
    out
}

fn lossy(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}

fn rel(path: &[u8]) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    PathBuf::from(std::ffi::OsStr::from_bytes(path))
}

/// A directory whose mode and times are set at the end.
struct DeferredDir {
    path: Vec<u8>,
    dev: u64,
    ino: u64,
    mode: u32,
    /// `None`: a lower directory opened up for a rootless apply; its mode is restored, its
    /// times are left as this layer's changes leave them (as for other lower directories).
    mtime: Option<(i64, u32)>,
}

struct Applier<'o> {
    root: Root,
    options: &'o ApplyOptions,
    preserve_owner: bool,
    strip_setid: bool,
    /// The extended attributes applied: the options' policy, limited to `user.*` when
    /// rootless.
    xattrs: XattrPolicy,
    /// The owner new files get without `chown`.
    creator: (u32, u32),
    /// The process umask (read from `/proc/self/status`), when known: files whose mode it
    /// leaves alone are created with their mode and need no `fchmod`.
    umask: Option<u32>,
    /// Paths this layer created or replaced (whiteouts spare them and what is below them).
    written: BTreeSet<Box<[u8]>>,
    /// Overlay whiteout devices this layer made.
    markers: HashSet<Vec<u8>>,
    /// Directories known to hold nothing from lower layers below them (made by this layer,
    /// or emptied of lower content by a whiteout; the directory itself may be lower), by
    /// keyed hash of their path: whiteouts below them have nothing to do, which keeps
    /// whiteout handling linear (each directory is walked at most once) however the
    /// whiteouts are arranged.
    clean: HashSet<u64>,
    /// The same directories by path, to forget them (and what is below them) when a
    /// symlink or a replacement could make their paths lead elsewhere.
    clean_paths: BTreeSet<Box<[u8]>>,
    hash_keys: std::collections::hash_map::RandomState,
    dirs: Vec<DeferredDir>,
    dir_index: HashMap<Vec<u8>, usize>,
    /// Directories (by device and inode) known writable and searchable by their owner, or
    /// opened up to be so ([`Applier::open_up`], rootless mode).
    writable_dirs: HashSet<(u64, u64)>,
    counts: Counts,
}

impl<'o> Applier<'o> {
    fn new(root: Root, options: &'o ApplyOptions) -> Applier<'o> {
        let mapped = options.uid_map.is_some() || options.gid_map.is_some();
        let preserve_owner = !options.rootless
            && options
                .preserve_owner
                .unwrap_or_else(|| mapped || rustix::process::geteuid().is_root());
        let xattrs = if options.rootless {
            XattrPolicy {
                user: options.xattrs.user,
                ..XattrPolicy::none().with_max_value_len(options.xattrs.max_value_len)
            }
        } else {
            options.xattrs
        };
        Applier {
            root,
            options,
            preserve_owner,
            strip_setid: options.strip_setid.unwrap_or(!preserve_owner),
            xattrs,
            creator: (
                rustix::process::geteuid().as_raw(),
                rustix::process::getegid().as_raw(),
            ),
            umask: read_umask(),
            written: BTreeSet::new(),
            markers: HashSet::new(),
            clean: HashSet::new(),
            clean_paths: BTreeSet::new(),
            hash_keys: std::collections::hash_map::RandomState::new(),
            dirs: Vec::new(),
            dir_index: HashMap::new(),
            writable_dirs: HashSet::new(),
            counts: Counts::default(),
        }
    }

    fn invalid(name: &[u8], reason: InvalidEntry) -> Error {
        Error::InvalidEntry {
            path: lossy(name),
            reason,
        }
    }

    fn io(operation: &'static str, path: &[u8], err: Errno) -> Error {
        Error::io(operation, Some(rel(path)), err.into())
    }

    fn entry<R: Read>(&mut self, tar: &mut TarReader<R>, header: Header) -> Result<()> {
        self.counts.entries += 1;
        if self.counts.entries > self.options.limits.max_entries {
            return Err(Error::LimitExceeded {
                limit: Limit::Entries,
                max: self.options.limits.max_entries,
            });
        }
        if header.kind == Kind::Global {
            return Ok(());
        }
        let strict = self.options.strict;
        let name = header.name.as_slice();
        let path = normalize(name, strict).map_err(|r| Self::invalid(name, r))?;
        if path.len() > MAX_PATH {
            return Err(Self::io("resolve", &path, Errno::NAMETOOLONG));
        }
        match classify(&path).map_err(|r| Self::invalid(name, r))? {
            Class::Normal => {}
            Class::Aufs => {
                self.counts.entries_skipped += 1;
                return Ok(());
            }
            Class::BelowWhiteout => {
                if strict {
                    return Err(Self::invalid(name, InvalidEntry::WhiteoutAsDirectory));
                }
                self.counts.entries_skipped += 1;
                return Ok(());
            }
            Class::Whiteout { dir, target } => {
                self.check_whiteout(&header)?;
                return self.whiteout(dir, target);
            }
            Class::Opaque { dir } => {
                self.check_whiteout(&header)?;
                return self.opaque(dir);
            }
        }
        if header.kind == Kind::Unsupported {
            if strict {
                return Err(Self::invalid(
                    name,
                    InvalidEntry::UnsupportedType {
                        typeflag: header.typeflag,
                    },
                ));
            }
            self.counts.entries_skipped += 1;
            return Ok(());
        }
        if path.is_empty() && header.kind != Kind::Dir {
            return Err(Self::invalid(name, InvalidEntry::ReplacesRoot));
        }
        let ids = |id: i64| -> Result<u32> {
            u32::try_from(id)
                .ok()
                .filter(|&id| id != u32::MAX)
                .ok_or_else(|| Self::invalid(name, InvalidEntry::BadOwner))
        };
        let mut owner = (ids(header.uid)?, ids(header.gid)?);
        if !self.options.rootless && header.kind != Kind::Hardlink {
            owner = self.map_owner(owner).map_err(|r| Self::invalid(name, r))?;
        }
        match header.kind {
            Kind::File => self.file(tar, &header, &path, owner),
            Kind::Dir => self.directory(&header, &path, owner),
            Kind::Symlink => self.symlink(&header, &path, owner),
            Kind::Hardlink => self.hardlink(&header, &path),
            Kind::Char | Kind::Block | Kind::Fifo => self.special(&header, &path, owner),
            Kind::Global | Kind::Unsupported => Ok(()),
        }
    }
    /// A layer's owner as the host has it, through the uid and gid maps.
    fn map_owner(&self, (uid, gid): (u32, u32)) -> Result<(u32, u32), InvalidEntry> {
        let map = |map: &Option<IdMap>, kind: IdKind, id: u32| match map {
            None => Ok(id),
            Some(map) => map
                .to_host(id)
                .ok_or(InvalidEntry::UnmappedOwner { kind, id }),
        };
        Ok((
            map(&self.options.uid_map, IdKind::Uid, uid)?,
            map(&self.options.gid_map, IdKind::Gid, gid)?,
        ))
    }

    /// The parent directory of an entry, created if missing.
    fn parent(&mut self, dir: &[u8]) -> Result<std::rc::Rc<fs::DirHandle>> {
        if !self.markers.is_empty() {
            self.unmark_prefixes(dir)?;
        }
        let mut made = Vec::new();
        let handle = self
            .root
            .ensure_dir(dir, &mut |p: &[u8]| made.push(p.to_vec()))
            .map_err(|e| Self::io("mkdir", dir, e))?;
        for p in made {
            self.mark_written(&p);
            self.mark_clean(&p);
        }
        self.open_up(dir, &handle)?;
        Ok(handle)
    }

    /// In rootless mode, makes a directory of the unpacking user that its owner may not
    /// write to or search (a lower layer's `0555` or `0550`, say) writable and searchable
    /// for the rest of this layer, as umoci's rootless mode does; its mode is restored at
    /// the end ([`Applier::finish`]), or set to this layer's entry for it. Root needs none
    /// of this; a directory that is not readable (opened `O_PATH`) is left as it is.
    fn open_up(&mut self, path: &[u8], dir: &fs::DirHandle) -> Result<()> {
        if !self.options.rootless || self.writable_dirs.contains(&(dir.dev, dir.ino)) {
            return Ok(());
        }
        let st = fstat(&dir.fd).map_err(|e| Self::io("stat", path, e))?;
        let mode = st.st_mode & 0o7777;
        if mode & 0o300 != 0o300 {
            if st.st_uid != self.creator.0 {
                return Ok(());
            }
            match fchmod(&dir.fd, Mode::from_raw_mode(mode | 0o700)) {
                Ok(()) => {}
                // An `O_PATH` descriptor: not readable, so not listable either.
                Err(Errno::BADF) => return Ok(()),
                Err(err) => return Err(Self::io("chmod", path, err)),
            }
            if !self.dir_index.contains_key(path) {
                self.dir_index.insert(path.to_vec(), self.dirs.len());
                self.dirs.push(DeferredDir {
                    path: path.to_vec(),
                    dev: dir.dev,
                    ino: dir.ino,
                    mode,
                    mtime: None,
                });
            }
        }
        self.writable_dirs.insert((dir.dev, dir.ino));
        Ok(())
    }

    /// Removes what exists at `name` in `parent` (unlink-and-recreate), forgetting cached
    /// resolutions when that was a directory or symlink.
    fn clear(&mut self, parent: BorrowedFd<'_>, name: &[u8], path: &[u8]) -> Result<()> {
        self.unclean(path);
        let removed = fs::remove(parent, name).map_err(|e| Self::io("remove", path, e))?;
        if removed == Removed::LinkOrDir {
            self.root.invalidate();
        }
        Ok(())
    }
    /// Sets the deferred directory modes and times, deepest first.
    fn finish(&mut self) -> Result<()> {
        let mut dirs = std::mem::take(&mut self.dirs);
        dirs.sort_by_key(|d| {
            std::cmp::Reverse(
                d.path.iter().filter(|&&b| b == b'/').count() + usize::from(!d.path.is_empty()),
            )
        });
        for d in dirs {
            let fd = match self
                .root
                .resolve(&d.path, OFlags::RDONLY | OFlags::DIRECTORY, true)
            {
                Ok(fd) => fd,
                // Replaced or removed by a later entry.
                Err(err) if fs::is_not_found(err) => continue,
                Err(err) => return Err(Self::io("open", &d.path, err)),
            };
            let st = fstat(&fd).map_err(|e| Self::io("stat", &d.path, e))?;
            if st.st_dev != d.dev || st.st_ino != d.ino {
                continue;
            }
            if st.st_mode & 0o7777 != d.mode {
                fchmod(&fd, Mode::from_raw_mode(d.mode))
                    .map_err(|e| Self::io("chmod", &d.path, e))?;
            }
            if let Some(mtime) = d.mtime {
                futimens(&fd, &Self::timestamps(mtime))
                    .map_err(|e| Self::io("utimes", &d.path, e))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_cleaned() {
        assert_eq!(normalize(b"/etc/passwd", true).unwrap(), b"etc/passwd");
        assert_eq!(normalize(b"./etc//./passwd/", true).unwrap(), b"etc/passwd");
        assert_eq!(normalize(b"a/../b", true).unwrap(), b"b");
        assert_eq!(normalize(b"./", true).unwrap(), b"");
        assert_eq!(normalize(b"../x", true), Err(InvalidEntry::EscapesRoot));
        assert_eq!(
            normalize(b"a/../../x", true),
            Err(InvalidEntry::EscapesRoot)
        );
        assert_eq!(normalize(b"a/../../x", false).unwrap(), b"x");
        assert_eq!(normalize(b"", true), Err(InvalidEntry::EmptyName));
        assert_eq!(normalize(b"..\\..\\x", true).unwrap(), b"..\\..\\x");
    }
}
