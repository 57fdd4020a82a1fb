//! Building layers: a directory tree, or the difference between two trees, as a reproducible,
//! uncompressed tar stream.
//!
//! [`build_layer`] packs a whole tree; [`build_changeset`] packs what changed from a lower tree
//! to an upper one, with whiteouts for what was deleted, as `umoci repack` and containerd's
//! diff do. Both write *uncompressed* tar to any [`Write`]; to compress it and compute the
//! diffID and digest in the same pass, hand them the crate's layer writer (see
//! [`writer`](crate::writer)) by `&mut`.
//!
//! # Reproducibility
//!
//! The same tree (content, names, modes, owners, mtimes, xattrs, hardlink structure) gives the
//! same bytes on every run, wherever the tree lives and whatever its atimes, ctimes and inode
//! numbers are:
//!
//! - The walk is depth-first; the entries of each directory are sorted by the bytes of their
//!   names. A directory's entry comes before its contents; in a changeset, a directory's
//!   whiteouts come before its other entries (`IS layer.md §Whiteouts`: producers SHOULD place
//!   whiteouts before siblings).
//! - Only mtime is recorded, in whole seconds (no atime or ctime, no sub-second PAX times).
//!   With [`BuildOptions::source_date_epoch`], every mtime later than it is clamped to it.
//! - Owners are numeric only: `uname` and `gname` stay empty and the host's user database is
//!   never consulted (the host's `/etc/passwd` is not the image's), as containerd and moby
//!   do (`FileInfoHeaderNoLookups`). [`OwnerPolicy::Normalize`] replaces every uid and gid.
//! - PAX records: the standard keys sorted, then the `SCHILY.xattr.*` records sorted by name.
//!
//! # Tar format
//!
//! One format throughout: POSIX ustar headers, each preceded by a PAX extended header (`x`)
//! only when something does not fit ustar. This is `--format=pax` for GNU tar and what Go's
//! archive/tar (hence docker, containerd, buildkit) and the `tar` crate all read.
//!
//! - Names longer than 100 bytes go to a PAX `path` record (the ustar `prefix` field is never
//!   used, so there is one rule for every long name); link targets longer than 100 bytes go to
//!   `linkpath`. The ustar field then holds the first 100 bytes, as Go writes it.
//! - uid and gid above `0o7777777`, sizes and mtimes above `0o77777777777`, and negative mtimes
//!   go to PAX `uid`, `gid`, `size` and `mtime` records, with 0 in the ustar field. Base-256
//!   (GNU) numbers are never written.
//! - Names are bytes: names that are not UTF-8 are written as they are, in the ustar field or
//!   in the PAX record (GNU tar, Go and the `tar` crate read them back unchanged).
//! - Extended attributes are PAX `SCHILY.xattr.<name>` records, as GNU tar and Go write them;
//!   their values are bytes. They come after the standard records, so that a reader which
//!   splits records at newlines (the `tar` crate does) still sees `path`, `size`, `uid`...
//! - The archive ends with two zero blocks and no further record padding.
//!
//! # What is packed
//!
//! - The tree's root directory has no entry of its own (as docker and buildkit layers): entries
//!   are `etc/`, `etc/passwd`... With a [`BuildOptions::prefix`], the root becomes the entry
//!   `<prefix>/` (with the root's metadata) and everything else goes below it; the prefix's
//!   own parents get no entries, so applying the layer does not clobber the metadata a lower
//!   layer gave them (appliers create missing parents).
//! - Directories as `name/` entries; regular files with their content; symlinks as symlink
//!   entries (the target as `readlink` returns it, never followed); character and block
//!   devices and FIFOs as their types, device numbers from `st_rdev`.
//! - Hardlinks: the first path of an inode with more than one link is written in full, later
//!   paths of the same inode as hardlink entries (typeflag `1`) naming it (relative to the
//!   archive root, prefix included).
//! - Sockets are skipped (tar has no type for them) and counted in
//!   [`BuildReport::sockets_skipped`].
//! - A file or directory whose name starts with `.wh.` is refused with
//!   [`Error::Unpackable`]: in a layer it would be a whiteout (SPEC C-W14).
//! - Mode is the permission bits of `lstat`, masked to `0o7777` (setuid, setgid and sticky
//!   included).
//! - With [`BuildOptions::xattrs`] (the default), extended attributes are packed except
//!   `security.selinux` (a host-specific label, as umoci leaves it out) and overlayfs
//!   metadata (`trusted.overlay.*`, `user.overlay.*`, SPEC C-W15). POSIX ACLs
//!   (`system.posix_acl_*`) are packed as the xattrs they are. An xattr name that a PAX key
//!   cannot hold (not UTF-8, or with `=`) is refused with [`Error::Unpackable`].
//!
//! Symlinks in the tree are never followed: every directory is opened relative to its
//! parent's descriptor with `O_NOFOLLOW`, and every entry is `lstat`ed. Only the tree's root
//! path itself, which the caller names, may be a symlink. Mount points inside the tree are
//! crossed like any directory.
//!
//! A regular file is streamed with the size its open descriptor reports; if it ends early or
//! has more bytes than that, the build fails rather than write a corrupt entry. A tree that
//! changes while it is packed may fail the build; it never yields a malformed archive, but the
//! output written until the error must be discarded.
//!
//! # Changesets
//!
//! [`build_changeset`] walks both trees side by side, in the same order:
//!
//! - A path only in the upper tree is added (with everything below it).
//! - A path only in the lower tree gets a whiteout `.wh.<name>` in its parent; only the
//!   topmost deleted path is whited out, not each of its descendants. Whiteouts are empty
//!   regular files, mode `0o644`, owner 0:0, mtime [`BuildOptions::source_date_epoch`] or 0.
//! - A path in both is written (in full) when it changed: its type, mode, owner (after the
//!   [`OwnerPolicy`]), mtime (seconds and nanoseconds), xattrs (when packed), symlink target
//!   or device number differ, or, for a regular file, its size. With
//!   [`ChangeDetection::Content`], regular files that look the same are also compared byte
//!   by byte (unless they are the same inode); the default, [`ChangeDetection::Metadata`],
//!   trusts size and mtime, as `rsync`'s quick check does.
//! - A directory in both trees is walked; it is written when its own metadata changed, or
//!   when anything below it is written (so the layer carries its parents, self-contained).
//! - A type change is just the new entry: appliers replace a non-directory, or a directory
//!   that becomes a non-directory, with the entry (`IS layer.md §Changeset over existing
//!   files`); a directory replacing a non-directory is written with all its contents.
//! - Opaque whiteouts: by default none; explicit whiteouts are what producers SHOULD emit,
//!   and a directory deleted and recreated between the two trees cannot be told from one that
//!   was edited (the edits are the whiteouts and additions). With
//!   [`BuildOptions::opaque_whiteouts`], one rule: a directory present in both trees none of
//!   whose lower entries is still in the upper tree gets `.wh..wh..opq` (first, right after
//!   its own entry) instead of a whiteout per deleted entry.
//! - Hardlinks are recorded only between paths written in this layer (`IS layer.md
//!   §Hardlinks`: partners outside the changeset are not recorded); a new link to an
//!   unchanged file is written as a full copy.
//! - Sockets, on either side, are as if absent. A deleted path whose name starts with `.wh.`
//!   cannot be whited out and is refused, like any `.wh.` name in the upper tree.
//! - The root's own metadata is part of a changeset only with a prefix (as `<prefix>/`).
//!
//! ```no_run
//! use std::path::Path;
//! use ocikit_codec::build::{build_layer, BuildOptions, OwnerPolicy};
//!
//! let options = BuildOptions::from_env()?.with_owner(OwnerPolicy::Normalize { uid: 0, gid: 0 });
//! let mut tar = Vec::new();
//! let report = build_layer(Path::new("rootfs"), &mut tar, &options)?;
//! assert_eq!(report.sockets_skipped, 0);
//! # Ok::<(), ocikit_codec::Error>(())
//! ```

mod fsutil;
pub(crate) mod tarfmt;
mod walk;

use std::io::Write;
use std::path::{Component, Path, PathBuf};

use crate::{Error, Result};

/// How to record file owners.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum OwnerPolicy {
    /// The numeric uid and gid of each file, as `lstat` reports them.
    #[default]
    Keep,
    /// The same uid and gid for every entry (for trees built by an unprivileged user).
    Normalize {
        /// The uid of every entry.
        uid: u32,
        /// The gid of every entry.
        gid: u32,
    },
}

/// How [`build_changeset`] decides that a regular file present in both trees changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChangeDetection {
    /// Metadata only: type, mode, owner, size, mtime (to the nanosecond) and xattrs. Fast; an
    /// edit that keeps the size and restores the mtime goes unnoticed.
    #[default]
    Metadata,
    /// Metadata, then the contents of files whose metadata is the same (unless both paths are
    /// the same inode).
    Content,
}

/// Options for [`build_layer`] and [`build_changeset`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BuildOptions {
    /// Clamp every mtime to at most this many seconds since the epoch (the
    /// [`SOURCE_DATE_EPOCH`](https://reproducible-builds.org/specs/source-date-epoch/)
    /// convention); also the mtime of whiteouts. `None` (the default) keeps mtimes as they are.
    pub source_date_epoch: Option<i64>,
    /// How to record owners (default: [`OwnerPolicy::Keep`]).
    pub owner: OwnerPolicy,
    /// Pack extended attributes as PAX `SCHILY.xattr.*` records (default: true, since the
    /// layer format says layers MUST include xattrs where supported).
    pub xattrs: bool,
    /// Put the tree under this relative path in the layer (no `..`; `.` and leading `/` are
    /// ignored). `None` (the default) puts it at the layer's root.
    pub prefix: Option<PathBuf>,
    /// How [`build_changeset`] compares regular files (default: [`ChangeDetection::Metadata`]).
    pub change_detection: ChangeDetection,
    /// In [`build_changeset`], replace the whiteouts of a directory by one opaque whiteout
    /// (`.wh..wh..opq`) when *none* of its lower entries survive in the upper tree (its
    /// content was replaced wholesale: `rm -rf d/*`, or an overlayfs opaque directory). Its
    /// upper content is then written in full, as it is anyway. Default false: explicit
    /// whiteouts only, which the layer spec says producers SHOULD emit.
    pub opaque_whiteouts: bool,
}

impl BuildOptions {
    /// The defaults: mtimes kept, owners kept, xattrs packed, no prefix.
    pub fn new() -> BuildOptions {
        BuildOptions::default()
    }

    /// The defaults, with [`source_date_epoch`](Self::source_date_epoch) taken from the
    /// `SOURCE_DATE_EPOCH` environment variable when it is set and not empty.
    ///
    /// Fails if it is set to anything but an integer (the convention says a malformed value
    /// must fail the build rather than be ignored).
    pub fn from_env() -> Result<BuildOptions> {
        let epoch = match std::env::var_os("SOURCE_DATE_EPOCH") {
            None => None,
            Some(value) if value.is_empty() => None,
            Some(value) => Some(parse_epoch(&value.to_string_lossy())?),
        };
        Ok(BuildOptions::new().with_source_date_epoch(epoch))
    }

    /// These options with another [`source_date_epoch`](Self::source_date_epoch).
    pub fn with_source_date_epoch(mut self, epoch: Option<i64>) -> BuildOptions {
        self.source_date_epoch = epoch;
        self
    }

    /// These options with another [`owner`](Self::owner) policy.
    pub fn with_owner(mut self, owner: OwnerPolicy) -> BuildOptions {
        self.owner = owner;
        self
    }

    /// These options with extended attributes packed or not.
    pub fn with_xattrs(mut self, xattrs: bool) -> BuildOptions {
        self.xattrs = xattrs;
        self
    }

    /// These options with the tree put under `prefix` in the layer.
    pub fn with_prefix(mut self, prefix: impl Into<PathBuf>) -> BuildOptions {
        self.prefix = Some(prefix.into());
        self
    }

    /// These options with another [`change_detection`](Self::change_detection).
    pub fn with_change_detection(mut self, detection: ChangeDetection) -> BuildOptions {
        self.change_detection = detection;
        self
    }

    /// These options with [`opaque_whiteouts`](Self::opaque_whiteouts) on or off.
    pub fn with_opaque_whiteouts(mut self, opaque: bool) -> BuildOptions {
        self.opaque_whiteouts = opaque;
        self
    }
}

impl Default for BuildOptions {
    fn default() -> BuildOptions {
        BuildOptions {
            source_date_epoch: None,
            owner: OwnerPolicy::Keep,
            xattrs: true,
            prefix: None,
            change_detection: ChangeDetection::Metadata,
            opaque_whiteouts: false,
        }
    }
}

fn parse_epoch(value: &str) -> Result<i64> {
    let digits = value.strip_prefix('-').unwrap_or(value);
    let valid = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
    valid
        .then(|| value.parse::<i64>().ok())
        .flatten()
        .ok_or_else(|| {
            Error::io(
                "parse SOURCE_DATE_EPOCH",
                None,
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("SOURCE_DATE_EPOCH={value:?} is not an integer number of seconds"),
                ),
            )
        })
}

/// What a build wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BuildReport {
    /// Tar entries written (PAX extended headers not counted).
    pub entries: u64,
    /// Directory entries.
    pub directories: u64,
    /// Regular files written with their content.
    pub files: u64,
    /// Hardlink entries.
    pub hardlinks: u64,
    /// Symlink entries.
    pub symlinks: u64,
    /// Character devices, block devices and FIFOs.
    pub special_files: u64,
    /// Whiteouts, opaque ones included (changesets only).
    pub whiteouts: u64,
    /// Sockets left out (tar cannot hold them).
    pub sockets_skipped: u64,
    /// Bytes of regular-file content written (before tar padding).
    pub content_bytes: u64,
}

/// Writes the tree at `dir` to `out` as an uncompressed tar layer; see the
/// [module documentation](self) for exactly what is written.
///
/// `out` is written through a buffer and flushed before returning; pass `&mut writer` to keep
/// using it afterwards. On error, what was written is not a valid layer and must be discarded.
///
/// # Errors
/// [`Error::Unpackable`] for a `.wh.*` name, an xattr name PAX cannot hold, a device number
/// tar cannot hold or a file type tar has no entry for; [`Error::Io`] when reading the tree or
/// writing `out` fails, or a file changes size while it is read.
pub fn build_layer<W: Write>(dir: &Path, out: W, options: &BuildOptions) -> Result<BuildReport> {
    walk::run(None, dir, out, options)
}

/// Writes to `out` the changeset that turns the tree at `lower` into the tree at `upper`: the
/// added and modified entries, and whiteouts for deletions; see the
/// [module documentation](self#changesets) for the rules.
///
/// Neither tree is modified.
///
/// # Errors
/// As [`build_layer`]; also [`Error::Unpackable`] for a deleted path whose name starts with
/// `.wh.`.
pub fn build_changeset<W: Write>(
    lower: &Path,
    upper: &Path,
    out: W,
    options: &BuildOptions,
) -> Result<BuildReport> {
    walk::run(Some(lower), upper, out, options)
}

/// The prefix as archive bytes ending in `/` (empty for none), validated.
fn prefix_bytes(prefix: Option<&Path>) -> Result<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;

    let mut out = Vec::new();
    let Some(prefix) = prefix else {
        return Ok(out);
    };
    for component in prefix.components() {
        match component {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(name) => {
                if name.as_bytes().starts_with(walk::WHITEOUT_PREFIX) {
                    return Err(Error::Unpackable {
                        path: prefix.to_path_buf(),
                        reason: "a prefix component starting with `.wh.` would be a whiteout",
                    });
                }
                out.extend_from_slice(name.as_bytes());
                out.push(b'/');
            }
            Component::ParentDir | Component::Prefix(_) => {
                return Err(Error::Unpackable {
                    path: prefix.to_path_buf(),
                    reason: "the prefix must be a relative path without `..`",
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn epochs() {
        assert_eq!(parse_epoch("0").unwrap(), 0);
        assert_eq!(parse_epoch("1700000000").unwrap(), 1_700_000_000);
        assert_eq!(parse_epoch("-5").unwrap(), -5);
        for bad in [
            "",
            "-",
            " 1",
            "1 ",
            "1.5",
            "+1",
            "0x10",
            "99999999999999999999",
        ] {
            assert!(parse_epoch(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn prefixes() {
        assert_eq!(prefix_bytes(None).unwrap(), b"");
        assert_eq!(prefix_bytes(Some(Path::new("."))).unwrap(), b"");
        assert_eq!(
            prefix_bytes(Some(Path::new("/opt/./app/"))).unwrap(),
            b"opt/app/"
        );
        assert!(prefix_bytes(Some(Path::new("opt/../x"))).is_err());
        assert!(prefix_bytes(Some(Path::new("opt/.wh.x"))).is_err());
    }

    #[test]
    fn defaults_pack_xattrs() {
        assert!(BuildOptions::default().xattrs);
        assert_eq!(BuildOptions::new(), BuildOptions::default());
    }
}
