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
//!   must be in `0..=4294967294` ([`InvalidEntry::BadOwner`]). Device numbers must fit the
//!   kernel's 12-bit major and 20-bit minor, since larger values would alias other devices
//!   (4096:0 would become the 0:0 whiteout device) ([`InvalidEntry::BadDeviceNumber`]);
//!   devices follow the [`DevicePolicy`].
//! - Extended attributes are applied from an allow-list ([`XattrPolicy`]); overlayfs'
//!   `trusted.overlay.*` and `user.overlay.*` and `security.selinux` never are (SPEC C-W15,
//!   C-S05).
//! - The tar parser is the applier's own, strict where parsers are known to disagree
//!   (see the `tar` submodule; SPEC C.4), with [`Limits`] on the entry count and per-entry
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

mod fs;
mod hash;
mod list;
mod pipeline;
mod tar;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::hash::{BuildHasher, Hasher as _};
use std::io::Read;
use std::ops::Bound;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use ocikit_digest::{Digest, Hasher};
use rustix::fs::{
    AtFlags, FileType, Gid, Mode, OFlags, Timespec, Timestamps, Uid, XattrFlags, chownat, fchmod,
    fchown, fsetxattr, fstat, futimens, linkat, makedev, mkdirat, mknodat, openat, symlinkat,
    utimensat,
};
use rustix::io::Errno;

use crate::{Error, InvalidEntry, Limit, Limits, Result};
use fs::{Removed, Root};
pub(crate) use list::check_tar;
pub use list::{EntryKind, ListedEntry, list_entries};
pub use pipeline::apply_blob;
use tar::{CopyError, Header, Kind, TarReader};

/// What to do with whiteouts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ApplyMode {
    /// Apply them: remove what they hide from the root (the default; a plain rootfs).
    #[default]
    Apply,
    /// Keep them as overlayfs does, for a snapshotter's upper directory: character devices
    /// 0:0 for whiteouts, an `overlay.opaque=y` xattr for opaque directories. Needs the
    /// privilege to make device nodes (and to set `trusted.*` xattrs, unless
    /// [`ApplyOptions::overlay_userxattr`]).
    Overlay,
}

/// What to do with character and block device entries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum DevicePolicy {
    /// Create them where permitted, skip them (counted in [`ApplyReport::devices_skipped`])
    /// where not: when not running as root, or when `mknod` is refused (a user namespace).
    /// The default.
    #[default]
    CreateOrSkip,
    /// Create them; fail when that is not permitted.
    Create,
    /// Never create them (counted in [`ApplyReport::devices_skipped`]).
    Skip,
    /// Refuse layers that have any ([`InvalidEntry::UnsupportedType`]).
    Refuse,
}

/// Which extended attributes (PAX `SCHILY.xattr.*` records) to apply.
///
/// Never applied, whatever the policy: `trusted.overlay.*` and `user.overlay.*` (they would
/// steer a later overlay mount, SPEC C-W15) and `security.selinux` (a host label, set by the
/// runtime). Other `security.*` and unknown namespaces are not applied either. An attribute
/// the filesystem or the kernel refuses (not supported, not permitted, too big, invalid) is
/// skipped and counted in [`ApplyReport::xattrs_skipped`]. Attributes apply to regular files
/// and directories only (the kernel allows `user.*` on nothing else).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct XattrPolicy {
    /// `user.*` (default true).
    pub user: bool,
    /// `security.capability`: file capabilities (default false; needs privilege).
    pub capabilities: bool,
    /// `trusted.*` (default false; needs privilege).
    pub trusted: bool,
    /// `system.posix_acl_access` and `system.posix_acl_default` (default false).
    pub acls: bool,
    /// Values longer than this are skipped (default 64 KiB, the kernel's limit).
    pub max_value_len: usize,
}

impl Default for XattrPolicy {
    fn default() -> XattrPolicy {
        XattrPolicy::user()
    }
}

impl XattrPolicy {
    /// No extended attributes at all.
    pub fn none() -> XattrPolicy {
        XattrPolicy {
            user: false,
            capabilities: false,
            trusted: false,
            acls: false,
            max_value_len: 64 << 10,
        }
    }

    /// `user.*` only (the default).
    pub fn user() -> XattrPolicy {
        XattrPolicy {
            user: true,
            ..XattrPolicy::none()
        }
    }

    /// `user.*`, `security.capability`, `trusted.*` and POSIX ACLs: what a privileged
    /// unpacker that trusts the image applies.
    pub fn privileged() -> XattrPolicy {
        XattrPolicy {
            user: true,
            capabilities: true,
            trusted: true,
            acls: true,
            max_value_len: 64 << 10,
        }
    }

    /// This policy with `security.capability` on or off.
    pub fn with_capabilities(mut self, on: bool) -> XattrPolicy {
        self.capabilities = on;
        self
    }

    /// This policy with another value size cap.
    pub fn with_max_value_len(mut self, len: usize) -> XattrPolicy {
        self.max_value_len = len;
        self
    }

    /// Whether an attribute of this name is applied.
    pub fn allows(&self, name: &[u8]) -> bool {
        if name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.") {
            return false;
        }
        if name.starts_with(b"user.") {
            return self.user;
        }
        if name.starts_with(b"trusted.") {
            return self.trusted;
        }
        match name {
            b"security.capability" => self.capabilities,
            b"system.posix_acl_access" | b"system.posix_acl_default" => self.acls,
            _ => false,
        }
    }
}

/// Options for [`apply_layer`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ApplyOptions {
    /// Whiteouts applied, or kept for overlayfs (default [`ApplyMode::Apply`]).
    pub mode: ApplyMode,
    /// Refuse what the spec forbids or parsers disagree on (default true); see the
    /// [module documentation](self) for what lenient mode accepts instead.
    pub strict: bool,
    /// Give entries their recorded owners (`None`, the default: when running as root).
    /// With `Some(true)` and no privilege, `chown` fails the layer.
    pub preserve_owner: Option<bool>,
    /// Drop setuid and setgid bits from non-directories (`None`, the default: when owners
    /// are not preserved, so that a file owned by the unpacking user does not become a
    /// setuid program of that user).
    pub strip_setid: Option<bool>,
    /// Device nodes (default [`DevicePolicy::CreateOrSkip`]).
    pub devices: DevicePolicy,
    /// Extended attributes (default [`XattrPolicy::user`]).
    pub xattrs: XattrPolicy,
    /// Entry count and per-entry metadata limits (the decompressed size is the decoder's).
    pub limits: Limits,
    /// The diffID the layer must have (the image config's `rootfs.diff_ids` entry); checked
    /// after the whole stream, trailing bytes included ([`Error::DiffIdMismatch`]).
    pub expected_diff_id: Option<Digest>,
    /// In [`ApplyMode::Overlay`], mark opaque directories with `user.overlay.opaque`
    /// instead of `trusted.overlay.opaque` (overlayfs mounted with `userxattr`, in a user
    /// namespace). Default false.
    pub overlay_userxattr: bool,
    /// Resolve with the `O_NOFOLLOW` component walk even where `openat2` works (tests).
    #[doc(hidden)]
    pub portable_resolver: bool,
}

impl Default for ApplyOptions {
    fn default() -> ApplyOptions {
        ApplyOptions {
            mode: ApplyMode::Apply,
            strict: true,
            preserve_owner: None,
            strip_setid: None,
            devices: DevicePolicy::CreateOrSkip,
            xattrs: XattrPolicy::user(),
            limits: Limits::default(),
            expected_diff_id: None,
            overlay_userxattr: false,
            portable_resolver: false,
        }
    }
}

impl ApplyOptions {
    /// The defaults: strict, whiteouts applied, owners kept when root.
    pub fn new() -> ApplyOptions {
        ApplyOptions::default()
    }

    /// These options with another [`mode`](Self::mode).
    pub fn with_mode(mut self, mode: ApplyMode) -> ApplyOptions {
        self.mode = mode;
        self
    }

    /// These options, strict or lenient.
    pub fn with_strict(mut self, strict: bool) -> ApplyOptions {
        self.strict = strict;
        self
    }

    /// These options with owners kept or not (`None`: when running as root).
    pub fn with_preserve_owner(mut self, preserve: Option<bool>) -> ApplyOptions {
        self.preserve_owner = preserve;
        self
    }

    /// These options with setuid and setgid bits dropped or not (`None`: when owners are
    /// not preserved).
    pub fn with_strip_setid(mut self, strip: Option<bool>) -> ApplyOptions {
        self.strip_setid = strip;
        self
    }

    /// These options with another [`DevicePolicy`].
    pub fn with_devices(mut self, devices: DevicePolicy) -> ApplyOptions {
        self.devices = devices;
        self
    }

    /// These options with another [`XattrPolicy`].
    pub fn with_xattrs(mut self, xattrs: XattrPolicy) -> ApplyOptions {
        self.xattrs = xattrs;
        self
    }

    /// These options with other [`Limits`].
    pub fn with_limits(mut self, limits: Limits) -> ApplyOptions {
        self.limits = limits;
        self
    }

    /// These options with a diffID to check.
    pub fn with_expected_diff_id(mut self, diff_id: Option<Digest>) -> ApplyOptions {
        self.expected_diff_id = diff_id;
        self
    }

    /// These options with [`overlay_userxattr`](Self::overlay_userxattr) on or off.
    pub fn with_overlay_userxattr(mut self, on: bool) -> ApplyOptions {
        self.overlay_userxattr = on;
        self
    }

    #[doc(hidden)]
    pub fn with_portable_resolver(mut self, on: bool) -> ApplyOptions {
        self.portable_resolver = on;
        self
    }
}

/// What [`apply_layer`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ApplyReport {
    /// Tar entries read (extension headers not counted; skipped entries and whiteouts
    /// counted).
    pub entries: u64,
    /// Regular files written.
    pub files: u64,
    /// Directory entries applied (created or merged).
    pub directories: u64,
    /// Symlinks created.
    pub symlinks: u64,
    /// Hardlinks created.
    pub hardlinks: u64,
    /// Device nodes and FIFOs created.
    pub special_files: u64,
    /// Whiteouts applied (or, in overlay mode, kept), opaque ones included.
    pub whiteouts: u64,
    /// Device entries not created ([`DevicePolicy`]).
    pub devices_skipped: u64,
    /// Entries skipped: AUFS metadata, and in lenient mode unsupported types and entries
    /// below `.wh.` directories.
    pub entries_skipped: u64,
    /// Extended attributes not applied although the policy allows them (refused by the
    /// filesystem or the kernel, too big, or on an entry that cannot hold them).
    pub xattrs_skipped: u64,
    /// Bytes of regular-file content written.
    pub content_bytes: u64,
    /// Size of the uncompressed tar stream, trailing bytes included.
    pub tar_size: u64,
    /// Digest of the uncompressed tar stream (the layer's diffID): SHA-256, or the
    /// algorithm of [`ApplyOptions::expected_diff_id`].
    pub diff_id: Digest,
}

/// Applies one layer — the *uncompressed* tar stream `tar` — to the directory `root`, which
/// must exist; see the [module documentation](self).
///
/// The stream is read to its end (bytes after the end-of-archive marker included) and hashed
/// on the way: [`ApplyReport::diff_id`] is the layer's diffID, and with
/// [`ApplyOptions::expected_diff_id`] a mismatch fails with [`Error::DiffIdMismatch`]. Past
/// the first 8 MiB the hash runs on a helper thread (`ocikit-diffid`, fed copies of the
/// bytes), so that it overlaps with the file system work; `tar` itself is only ever read on
/// the calling thread. Single-threaded otherwise: [`apply_blob`] also overlaps the
/// decompression of a compressed blob, on a second thread.
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
    let mut tar = TarReader::new(tar, hasher, options.limits, options.strict);
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

/// What an entry's (normalised) name says it is.
#[derive(Debug, PartialEq, Eq)]
enum Class<'a> {
    Normal,
    /// `dir/.wh.name`
    Whiteout {
        dir: &'a [u8],
        target: &'a [u8],
    },
    /// `dir/.wh..wh..opq`
    Opaque {
        dir: &'a [u8],
    },
    /// `.wh..wh.*` metadata (or anything below it).
    Aufs,
    /// An entry below a `.wh.` directory component.
    BelowWhiteout,
}

/// Cleans an entry name: no leading `/`, no `.` or empty components, `..` resolved
/// lexically (refused above the root when `strict`, else stopped there). Empty result: the
/// root.
fn normalize(name: &[u8], strict: bool) -> Result<Vec<u8>, InvalidEntry> {
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

fn classify(path: &[u8]) -> Result<Class<'_>, InvalidEntry> {
    let mut offset = 0;
    let mut components = path.split(|&b| b == b'/').peekable();
    while let Some(component) = components.next() {
        let last = components.peek().is_none();
        if component.starts_with(b".wh.") {
            if component.starts_with(b".wh..wh.") {
                if last && component == b".wh..wh..opq" {
                    let dir = if offset == 0 {
                        &path[..0]
                    } else {
                        &path[..offset - 1]
                    };
                    return Ok(Class::Opaque { dir });
                }
                return Ok(Class::Aufs);
            }
            if !last {
                return Ok(Class::BelowWhiteout);
            }
            let target = &component[4..];
            if target.is_empty() || target == b"." || target == b".." {
                return Err(InvalidEntry::BadWhiteoutTarget);
            }
            let dir = if offset == 0 {
                &path[..0]
            } else {
                &path[..offset - 1]
            };
            return Ok(Class::Whiteout { dir, target });
        }
        offset += component.len() + 1;
    }
    Ok(Class::Normal)
}

/// The umask, from `/proc/self/status` (Linux 4.7); `None` when it cannot be read.
fn read_umask() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Umask:"))?;
    u32::from_str_radix(line["Umask:".len()..].trim(), 8).ok()
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
    mtime: (i64, u32),
}

struct Applier<'o> {
    root: Root,
    options: &'o ApplyOptions,
    preserve_owner: bool,
    strip_setid: bool,
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
    counts: Counts,
}

impl<'o> Applier<'o> {
    fn new(root: Root, options: &'o ApplyOptions) -> Applier<'o> {
        let preserve_owner = options
            .preserve_owner
            .unwrap_or_else(|| rustix::process::geteuid().is_root());
        Applier {
            root,
            options,
            preserve_owner,
            strip_setid: options.strip_setid.unwrap_or(!preserve_owner),
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

    fn written_or_above(&self, path: &[u8]) -> bool {
        if self.written.contains(path) {
            return true;
        }
        if path.is_empty() {
            return !self.written.is_empty();
        }
        let mut prefix = Vec::with_capacity(path.len() + 1);
        prefix.extend_from_slice(path);
        prefix.push(b'/');
        self.written
            .range::<[u8], _>((Bound::Included(prefix.as_slice()), Bound::Unbounded))
            .next()
            .is_some_and(|p| p.starts_with(&prefix))
    }

    /// Hashes of `path` and of each of its ancestors, root first (the root's included).
    fn prefix_hashes<'a>(&self, path: &'a [u8]) -> impl Iterator<Item = u64> + 'a {
        let mut hasher = self.hash_keys.build_hasher();
        let root = hasher.finish();
        let parts = path.split(|&b| b == b'/').filter(|c| !c.is_empty());
        std::iter::once(root).chain(parts.map(move |part| {
            hasher.write_usize(part.len());
            hasher.write(part);
            hasher.finish()
        }))
    }

    /// Whether nothing from lower layers can be below `path` (`path` itself may be lower,
    /// unless an ancestor is clean too).
    fn is_clean(&self, path: &[u8]) -> bool {
        !self.clean.is_empty() && self.prefix_hashes(path).any(|h| self.clean.contains(&h))
    }

    fn mark_clean(&mut self, path: &[u8]) {
        if let Some(h) = self.prefix_hashes(path).last() {
            self.clean.insert(h);
            self.clean_paths.insert(path.into());
        }
    }

    /// Forgets what is known clean at or below `path` (something there is being replaced, or
    /// a symlink made: the path may now lead to lower content).
    fn unclean(&mut self, path: &[u8]) {
        if self.clean_paths.is_empty() {
            return;
        }
        let mut prefix = path.to_vec();
        if !prefix.is_empty() {
            prefix.push(b'/');
        }
        let mut gone: Vec<Box<[u8]>> = self
            .clean_paths
            .range::<[u8], _>((Bound::Included(prefix.as_slice()), Bound::Unbounded))
            .take_while(|p| p.starts_with(&prefix))
            .cloned()
            .collect();
        if self.clean_paths.contains(path) {
            gone.push(path.into());
        }
        for p in gone {
            if let Some(h) = self.prefix_hashes(&p).last() {
                self.clean.remove(&h);
            }
            self.clean_paths.remove(&p);
        }
    }

    fn mark_written(&mut self, path: &[u8]) {
        if !self.written.contains(path) {
            self.written.insert(path.into());
        }
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
        let owner = (ids(header.uid)?, ids(header.gid)?);
        match header.kind {
            Kind::File => self.file(tar, &header, &path, owner),
            Kind::Dir => self.directory(&header, &path, owner),
            Kind::Symlink => self.symlink(&header, &path, owner),
            Kind::Hardlink => self.hardlink(&header, &path),
            Kind::Char | Kind::Block | Kind::Fifo => self.special(&header, &path, owner),
            Kind::Global | Kind::Unsupported => Ok(()),
        }
    }

    fn check_whiteout(&self, header: &Header) -> Result<()> {
        if self.options.strict && !(header.kind == Kind::File && header.size == 0) {
            return Err(Self::invalid(
                &header.name,
                InvalidEntry::WhiteoutNotEmptyFile,
            ));
        }
        Ok(())
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
        Ok(handle)
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

    fn mode_for(&self, mode: u32, is_dir: bool) -> u32 {
        let mode = mode & 0o7777;
        if self.strip_setid && !is_dir {
            mode & !0o6000
        } else {
            mode
        }
    }

    fn timestamps(mtime: (i64, u32)) -> Timestamps {
        let ts = Timespec {
            tv_sec: mtime.0,
            tv_nsec: i64::from(mtime.1),
        };
        Timestamps {
            last_access: ts,
            last_modification: ts,
        }
    }

    fn set_xattrs(&mut self, fd: BorrowedFd<'_>, header: &Header, path: &[u8]) -> Result<()> {
        let policy = self.options.xattrs;
        for (key, value) in &header.xattrs {
            if !policy.allows(key) {
                continue;
            }
            if value.len() > policy.max_value_len {
                self.counts.xattrs_skipped += 1;
                continue;
            }
            match fsetxattr(fd, key.as_slice(), value, XattrFlags::empty()) {
                Ok(()) => {}
                Err(
                    Errno::PERM
                    | Errno::OPNOTSUPP
                    | Errno::TOOBIG
                    | Errno::RANGE
                    | Errno::INVAL
                    | Errno::NOSPC
                    | Errno::ACCESS,
                ) => self.counts.xattrs_skipped += 1,
                Err(err) => return Err(Self::io("setxattr", path, err)),
            }
        }
        Ok(())
    }

    fn allowed_xattrs(&self, header: &Header) -> u64 {
        header
            .xattrs
            .iter()
            .filter(|(k, _)| self.options.xattrs.allows(k))
            .count() as u64
    }

    fn file<R: Read>(
        &mut self,
        tar: &mut TarReader<R>,
        header: &Header,
        path: &[u8],
        owner: (u32, u32),
    ) -> Result<()> {
        let (dir, leaf) = split_parent(path);
        let parent = self.parent(dir)?;
        let mode = self.mode_for(header.mode, false);
        // Created with its mode when the umask (and no default ACL) leaves it so; else
        // private until `fchmod`.
        let exact = parent.plain_modes
            && mode & !0o777 == 0
            && self.umask.is_some_and(|umask| mode & umask == 0);
        let chown = self.preserve_owner && (owner != self.creator || parent.setgid);
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let create_mode = Mode::from_raw_mode(if exact { mode } else { 0o600 });
        let create = || openat(&parent.fd, leaf, flags, create_mode);
        let fd = match create() {
            Ok(fd) => fd,
            Err(Errno::EXIST) => {
                self.clear(parent.fd.as_fd(), leaf, path)?;
                create().map_err(|e| Self::io("create", path, e))?
            }
            Err(err) => return Err(Self::io("create", path, err)),
        };
        self.mark_written(path);
        let mut file = std::fs::File::from(fd);
        let written = match tar.copy_data(&mut file) {
            Ok(n) => n,
            Err(CopyError::Read(err)) => return Err(err),
            Err(CopyError::Write(err)) => return Err(Error::io("write", Some(rel(path)), err)),
        };
        self.counts.content_bytes += written;
        let fd = OwnedFd::from(file);
        if chown {
            fchown(
                &fd,
                Some(Uid::from_raw(owner.0)),
                Some(Gid::from_raw(owner.1)),
            )
            .map_err(|e| Self::io("chown", path, e))?;
        }
        if !exact {
            fchmod(&fd, Mode::from_raw_mode(mode)).map_err(|e| Self::io("chmod", path, e))?;
        }
        self.set_xattrs(fd.as_fd(), header, path)?;
        futimens(&fd, &Self::timestamps(header.mtime)).map_err(|e| Self::io("utimes", path, e))?;
        self.counts.files += 1;
        Ok(())
    }

    fn directory(&mut self, header: &Header, path: &[u8], owner: (u32, u32)) -> Result<()> {
        let (fd, created_over_marker) = if path.is_empty() {
            let fd = openat(
                self.root.fd(),
                ".",
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| Self::io("open", path, e))?;
            (fd, false)
        } else {
            let (dir, leaf) = split_parent(path);
            let parent = self.parent(dir)?;
            let was_marker = self.markers.remove(path);
            let created = match mkdirat(&parent.fd, leaf, Mode::from_raw_mode(0o700)) {
                Ok(()) => true,
                Err(Errno::EXIST) => {
                    let st = fs::lstat(parent.fd.as_fd(), leaf)
                        .map_err(|e| Self::io("stat", path, e))?;
                    let is_dir = st.as_ref().map(fs::file_type) == Some(FileType::Directory);
                    if !is_dir {
                        self.clear(parent.fd.as_fd(), leaf, path)?;
                        mkdirat(&parent.fd, leaf, Mode::from_raw_mode(0o700))
                            .map_err(|e| Self::io("mkdir", path, e))?;
                    }
                    !is_dir
                }
                Err(err) => return Err(Self::io("mkdir", path, err)),
            };
            if created {
                self.mark_clean(path);
            }
            let fd = fs::open_dir_nofollow(parent.fd.as_fd(), leaf)
                .map_err(|e| Self::io("open", path, e))?;
            (fd, was_marker)
        };
        self.mark_written(path);
        if self.preserve_owner {
            fchown(
                &fd,
                Some(Uid::from_raw(owner.0)),
                Some(Gid::from_raw(owner.1)),
            )
            .map_err(|e| Self::io("chown", path, e))?;
        }
        self.set_xattrs(fd.as_fd(), header, path)?;
        if created_over_marker && self.options.mode == ApplyMode::Overlay {
            // Whited out and recreated in this layer: nothing of the lower one shows.
            self.set_opaque(fd.as_fd(), path)?;
        }
        // Its entries usually follow: keep it open for them.
        let handle =
            std::rc::Rc::new(fs::DirHandle::new(fd, None).map_err(|e| Self::io("stat", path, e))?);
        self.root.remember(path, &handle);
        let deferred = DeferredDir {
            path: path.to_vec(),
            dev: handle.dev,
            ino: handle.ino,
            mode: self.mode_for(header.mode, true),
            mtime: header.mtime,
        };
        match self.dir_index.get(path) {
            Some(&i) => self.dirs[i] = deferred,
            None => {
                self.dir_index.insert(path.to_vec(), self.dirs.len());
                self.dirs.push(deferred);
            }
        }
        self.counts.directories += 1;
        Ok(())
    }

    fn symlink(&mut self, header: &Header, path: &[u8], owner: (u32, u32)) -> Result<()> {
        let (dir, leaf) = split_parent(path);
        let parent = self.parent(dir)?;
        match symlinkat(header.link.as_slice(), &parent.fd, leaf) {
            Ok(()) => {}
            Err(Errno::EXIST) => {
                self.clear(parent.fd.as_fd(), leaf, path)?;
                symlinkat(header.link.as_slice(), &parent.fd, leaf)
                    .map_err(|e| Self::io("symlink", path, e))?;
            }
            Err(err) => return Err(Self::io("symlink", path, err)),
        }
        self.mark_written(path);
        self.unclean(path);
        if self.preserve_owner {
            chownat(
                &parent.fd,
                leaf,
                Some(Uid::from_raw(owner.0)),
                Some(Gid::from_raw(owner.1)),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(|e| Self::io("chown", path, e))?;
        }
        utimensat(
            &parent.fd,
            leaf,
            &Self::timestamps(header.mtime),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| Self::io("utimes", path, e))?;
        self.counts.xattrs_skipped += self.allowed_xattrs(header);
        self.counts.symlinks += 1;
        Ok(())
    }

    fn hardlink(&mut self, header: &Header, path: &[u8]) -> Result<()> {
        let name = header.name.as_slice();
        let target_name = String::from_utf8_lossy(&header.link).into_owned();
        let missing = || {
            Self::invalid(
                name,
                InvalidEntry::HardlinkTargetMissing {
                    target: target_name.clone(),
                },
            )
        };
        let target = match normalize(&header.link, self.options.strict) {
            Ok(t) => t,
            Err(InvalidEntry::EmptyName) => return Err(missing()),
            Err(reason) => return Err(Self::invalid(name, reason)),
        };
        if target.is_empty() {
            return Err(Self::invalid(
                name,
                InvalidEntry::HardlinkToDirectory {
                    target: target_name.clone(),
                },
            ));
        }
        if classify(&target) != Ok(Class::Normal) || self.markers.contains(&target) {
            return Err(missing());
        }
        let (tdir, tleaf) = split_parent(&target);
        let Some(tparent) = self
            .root
            .lookup_dir(tdir)
            .map_err(|e| Self::io("resolve", &target, e))?
        else {
            return Err(missing());
        };
        let tst = match fs::lstat(tparent.fd.as_fd(), tleaf) {
            Ok(Some(st)) => st,
            Ok(None) | Err(Errno::NOTDIR | Errno::LOOP) => return Err(missing()),
            Err(err) => return Err(Self::io("stat", &target, err)),
        };
        if fs::file_type(&tst) == FileType::Directory {
            return Err(Self::invalid(
                name,
                InvalidEntry::HardlinkToDirectory {
                    target: target_name,
                },
            ));
        }
        let (dir, leaf) = split_parent(path);
        let parent = self.parent(dir)?;
        let existing = fs::lstat(parent.fd.as_fd(), leaf).map_err(|e| Self::io("stat", path, e))?;
        match existing {
            Some(st) if st.st_dev == tst.st_dev && st.st_ino == tst.st_ino => {}
            other => {
                if other.is_some() {
                    self.clear(parent.fd.as_fd(), leaf, path)?;
                }
                linkat(&tparent.fd, tleaf, &parent.fd, leaf, AtFlags::empty())
                    .map_err(|e| Self::io("link", path, e))?;
            }
        }
        self.mark_written(path);
        self.unclean(path);
        self.counts.hardlinks += 1;
        Ok(())
    }

    fn special(&mut self, header: &Header, path: &[u8], owner: (u32, u32)) -> Result<()> {
        let name = header.name.as_slice();
        let kind = match header.kind {
            Kind::Char => FileType::CharacterDevice,
            Kind::Block => FileType::BlockDevice,
            _ => FileType::Fifo,
        };
        let device = kind != FileType::Fifo;
        let dev = if device {
            // The kernel's dev_t: 12-bit major, 20-bit minor; larger numbers would alias.
            let major = u32::try_from(header.dev_major).ok().filter(|&m| m <= 0xfff);
            let minor = u32::try_from(header.dev_minor)
                .ok()
                .filter(|&m| m <= 0xf_ffff);
            let (Some(major), Some(minor)) = (major, minor) else {
                return Err(Self::invalid(name, InvalidEntry::BadDeviceNumber));
            };
            if self.options.mode == ApplyMode::Overlay
                && kind == FileType::CharacterDevice
                && major == 0
                && minor == 0
            {
                // In an upper directory this would be a whiteout, not a device.
                if self.options.strict {
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
            match self.options.devices {
                DevicePolicy::Refuse => {
                    return Err(Self::invalid(
                        name,
                        InvalidEntry::UnsupportedType {
                            typeflag: header.typeflag,
                        },
                    ));
                }
                DevicePolicy::Skip => {
                    self.counts.devices_skipped += 1;
                    return Ok(());
                }
                DevicePolicy::CreateOrSkip if !rustix::process::geteuid().is_root() => {
                    self.counts.devices_skipped += 1;
                    return Ok(());
                }
                _ => {}
            }
            makedev(major, minor)
        } else {
            0
        };
        let (dir, leaf) = split_parent(path);
        let parent = self.parent(dir)?;
        let mode = self.mode_for(header.mode, false);
        let make = || mknodat(&parent.fd, leaf, kind, Mode::from_raw_mode(mode), dev);
        let made = match make() {
            Err(Errno::EXIST) => {
                self.clear(parent.fd.as_fd(), leaf, path)?;
                make()
            }
            other => other,
        };
        match made {
            Ok(()) => {}
            Err(Errno::PERM) if device && self.options.devices == DevicePolicy::CreateOrSkip => {
                self.counts.devices_skipped += 1;
                return Ok(());
            }
            Err(err) => return Err(Self::io("mknod", path, err)),
        }
        self.mark_written(path);
        if self.preserve_owner {
            chownat(
                &parent.fd,
                leaf,
                Some(Uid::from_raw(owner.0)),
                Some(Gid::from_raw(owner.1)),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(|e| Self::io("chown", path, e))?;
        }
        // mknod applied the umask (and chown may have cleared bits).
        fs::chmod_special(parent.fd.as_fd(), leaf, kind, mode)
            .map_err(|e| Self::io("chmod", path, e))?;
        utimensat(
            &parent.fd,
            leaf,
            &Self::timestamps(header.mtime),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| Self::io("utimes", path, e))?;
        self.counts.xattrs_skipped += self.allowed_xattrs(header);
        self.counts.special_files += 1;
        Ok(())
    }

    fn opaque_name(&self) -> &'static str {
        if self.options.overlay_userxattr {
            "user.overlay.opaque"
        } else {
            "trusted.overlay.opaque"
        }
    }

    fn set_opaque(&self, fd: BorrowedFd<'_>, path: &[u8]) -> Result<()> {
        fsetxattr(fd, self.opaque_name(), b"y", XattrFlags::empty())
            .map_err(|e| Self::io("setxattr", path, e))
    }

    /// `dir/.wh.target`.
    fn whiteout(&mut self, dir: &[u8], target: &[u8]) -> Result<()> {
        let path = join(dir, target);
        self.counts.whiteouts += 1;
        if self.options.mode == ApplyMode::Overlay {
            return self.overlay_whiteout(dir, target, &path);
        }
        // Below a directory with nothing lower in it, `target` is not lower either (but a
        // clean `target` itself may be: it is only empty of lower content).
        if self.is_clean(dir) {
            return Ok(());
        }
        let parent = match self.root.lookup_dir(dir) {
            Ok(Some(parent)) => parent,
            // Nothing there to hide (SPEC C-W06).
            Ok(None) => return Ok(()),
            Err(err) => return Err(Self::io("resolve", dir, err)),
        };
        if self.remove_lower(parent.fd.as_fd(), target, &path)? {
            self.root.invalidate();
        }
        Ok(())
    }

    /// `dir/.wh..wh..opq`.
    fn opaque(&mut self, dir: &[u8]) -> Result<()> {
        self.counts.whiteouts += 1;
        if self.options.mode == ApplyMode::Overlay {
            let handle = self.parent(dir)?;
            let fd = openat(
                &handle.fd,
                ".",
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| Self::io("open", dir, e))?;
            return self.set_opaque(fd.as_fd(), dir);
        }
        if self.is_clean(dir) {
            return Ok(());
        }
        let handle = match self.root.lookup_dir(dir) {
            Ok(Some(handle)) => handle,
            Ok(None) => return Ok(()),
            Err(err) => return Err(Self::io("resolve", dir, err)),
        };
        let fd = openat(
            &handle.fd,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Self::io("open", dir, e))?;
        if self.remove_lower_children(fd, dir)? {
            self.root.invalidate();
        }
        self.mark_clean(dir);
        Ok(())
    }

    /// Removes, below `dir` (open as `fd`), everything this layer did not write.
    fn remove_lower_children(&mut self, fd: OwnedFd, dir: &[u8]) -> Result<bool> {
        let listing = openat(
            &fd,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Self::io("open", dir, e))?;
        let names = fs::list(listing).map_err(|e| Self::io("readdir", dir, e))?;
        let mut removed = false;
        for child in names {
            let path = join(dir, child.to_bytes());
            removed |= self.remove_lower(fd.as_fd(), child.to_bytes(), &path)?;
        }
        Ok(removed)
    }

    /// Removes `name` in `parent` (at `path`) as it came from lower layers: entirely, unless
    /// this layer wrote it or something below it, in which case only the rest of what is
    /// below it goes. Returns whether anything was removed.
    fn remove_lower(&mut self, parent: BorrowedFd<'_>, name: &[u8], path: &[u8]) -> Result<bool> {
        if !self.written_or_above(path) {
            let removed = fs::remove(parent, name).map_err(|e| Self::io("remove", path, e))?;
            return Ok(removed != Removed::Nothing);
        }
        if self.is_clean(path) {
            return Ok(false);
        }
        let st = fs::lstat(parent, name).map_err(|e| Self::io("stat", path, e))?;
        if st.as_ref().map(fs::file_type) != Some(FileType::Directory) {
            return Ok(false);
        }
        let fd = fs::open_dir_nofollow(parent, name).map_err(|e| Self::io("open", path, e))?;
        let removed = self.remove_lower_children(fd, path)?;
        self.mark_clean(path);
        Ok(removed)
    }

    fn overlay_whiteout(&mut self, dir: &[u8], target: &[u8], path: &[u8]) -> Result<()> {
        let parent = self.parent(dir)?;
        if self.written_or_above(path) {
            // Written by this layer: a whiteout hides only lower content, so a directory
            // becomes opaque, and anything else already hides what is below.
            if let Ok(fd) = fs::open_dir_nofollow(parent.fd.as_fd(), target) {
                self.set_opaque(fd.as_fd(), path)?;
            }
            return Ok(());
        }
        self.clear(parent.fd.as_fd(), target, path)?;
        mknodat(
            &parent.fd,
            target,
            FileType::CharacterDevice,
            Mode::empty(),
            makedev(0, 0),
        )
        .map_err(|e| Self::io("mknod", path, e))?;
        self.markers.insert(path.to_vec());
        Ok(())
    }

    /// Overlay mode: turns whiteout devices this layer made at `dir` or above it back into
    /// directories (opaque: the layer whited the path out, then put things in it).
    fn unmark_prefixes(&mut self, dir: &[u8]) -> Result<()> {
        let ends = dir
            .iter()
            .enumerate()
            .filter(|&(_, &b)| b == b'/')
            .map(|(i, _)| i)
            .chain((!dir.is_empty()).then_some(dir.len()));
        for end in ends.collect::<Vec<_>>() {
            let prefix = &dir[..end];
            if !self.markers.remove(prefix) {
                continue;
            }
            let (up, leaf) = split_parent(prefix);
            let parent = self.parent(up)?;
            self.clear(parent.fd.as_fd(), leaf, prefix)?;
            mkdirat(&parent.fd, leaf, Mode::from_raw_mode(0o755))
                .map_err(|e| Self::io("mkdir", prefix, e))?;
            let fd = fs::open_dir_nofollow(parent.fd.as_fd(), leaf)
                .map_err(|e| Self::io("open", prefix, e))?;
            self.set_opaque(fd.as_fd(), prefix)?;
            self.mark_written(prefix);
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
            futimens(&fd, &Self::timestamps(d.mtime))
                .map_err(|e| Self::io("utimes", &d.path, e))?;
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

    #[test]
    fn whiteouts_are_classified() {
        assert_eq!(classify(b"a/b"), Ok(Class::Normal));
        assert_eq!(
            classify(b"a/.wh.b"),
            Ok(Class::Whiteout {
                dir: b"a",
                target: b"b"
            })
        );
        assert_eq!(
            classify(b".wh.b"),
            Ok(Class::Whiteout {
                dir: b"",
                target: b"b"
            })
        );
        assert_eq!(classify(b"a/.wh..wh..opq"), Ok(Class::Opaque { dir: b"a" }));
        assert_eq!(classify(b".wh..wh..opq"), Ok(Class::Opaque { dir: b"" }));
        assert_eq!(classify(b".wh..wh.plnk/123"), Ok(Class::Aufs));
        assert_eq!(classify(b"a/.wh..wh.aufs"), Ok(Class::Aufs));
        assert_eq!(classify(b".wh..wh..opq/x"), Ok(Class::Aufs));
        assert_eq!(classify(b".wh.etc/x"), Ok(Class::BelowWhiteout));
        assert_eq!(classify(b"a/.wh."), Err(InvalidEntry::BadWhiteoutTarget));
        assert_eq!(classify(b".wh.."), Err(InvalidEntry::BadWhiteoutTarget));
        assert_eq!(
            classify(b"etc/.wh..."),
            Err(InvalidEntry::BadWhiteoutTarget)
        );
        assert_eq!(classify(b"a.wh.b"), Ok(Class::Normal));
    }

    #[test]
    fn xattr_allow_list() {
        let user = XattrPolicy::user();
        assert!(user.allows(b"user.x"));
        assert!(!user.allows(b"user.overlay.opaque"));
        assert!(!user.allows(b"trusted.overlay.opaque"));
        assert!(!user.allows(b"security.capability"));
        assert!(!user.allows(b"trusted.x"));
        let all = XattrPolicy::privileged();
        assert!(all.allows(b"security.capability"));
        assert!(all.allows(b"trusted.x"));
        assert!(all.allows(b"system.posix_acl_access"));
        assert!(!all.allows(b"security.selinux"));
        assert!(!all.allows(b"trusted.overlay.redirect"));
        assert!(!all.allows(b"security.ima"));
        assert!(!XattrPolicy::none().allows(b"user.x"));
    }
}
