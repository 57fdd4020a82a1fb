//! fd-relative, never-following filesystem access for the tree walk.
//!
//! Every directory is opened with `O_DIRECTORY | O_NOFOLLOW` relative to its parent's
//! descriptor, every entry is `lstat`ed with `AT_SYMLINK_NOFOLLOW`, and files are opened with
//! `O_NOFOLLOW | O_NONBLOCK` (a FIFO swapped in under our feet cannot block us), so a symlink
//! in the tree is never followed, even one swapped in while we walk.

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{AtFlags, CWD, FileType, Mode, OFlags};

/// The kind of a directory entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Dir,
    File,
    Symlink,
    Char,
    Block,
    Fifo,
    Socket,
    Other,
}

/// What `lstat` says about an entry, in fixed-width types.
#[derive(Clone, Copy, Debug)]
pub(super) struct Meta {
    pub(super) kind: Kind,
    /// Permission bits, masked to `0o7777`.
    pub(super) mode: u32,
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) size: u64,
    pub(super) mtime: i64,
    pub(super) mtime_nsec: u64,
    pub(super) dev: u64,
    pub(super) ino: u64,
    pub(super) nlink: u64,
    pub(super) rdev_major: u32,
    pub(super) rdev_minor: u32,
}

impl Meta {
    /// Whether `other` is the same inode.
    pub(super) fn same_inode(&self, other: &Meta) -> bool {
        self.dev == other.dev && self.ino == other.ino
    }
}

// Field widths of `struct stat` differ between architectures; these casts are widening (or
// identity) on every Linux target.
#[allow(clippy::unnecessary_cast, clippy::cast_lossless)]
fn meta(st: &rustix::fs::Stat) -> Meta {
    let raw_mode = st.st_mode as u32;
    let kind = match FileType::from_raw_mode(raw_mode as rustix::fs::RawMode) {
        FileType::Directory => Kind::Dir,
        FileType::RegularFile => Kind::File,
        FileType::Symlink => Kind::Symlink,
        FileType::CharacterDevice => Kind::Char,
        FileType::BlockDevice => Kind::Block,
        FileType::Fifo => Kind::Fifo,
        FileType::Socket => Kind::Socket,
        _ => Kind::Other,
    };
    let rdev = st.st_rdev as u64;
    Meta {
        kind,
        mode: raw_mode & 0o7777,
        uid: st.st_uid as u32,
        gid: st.st_gid as u32,
        size: u64::try_from(st.st_size as i64).unwrap_or(0),
        mtime: st.st_mtime as i64,
        mtime_nsec: st.st_mtime_nsec as u64,
        dev: st.st_dev as u64,
        ino: st.st_ino as u64,
        nlink: st.st_nlink as u64,
        rdev_major: rustix::fs::major(rdev as rustix::fs::Dev),
        rdev_minor: rustix::fs::minor(rdev as rustix::fs::Dev),
    }
}

/// `lstat` of `name` in `dir`.
pub(super) fn stat_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<Meta> {
    Ok(meta(&rustix::fs::statat(
        dir,
        name,
        AtFlags::SYMLINK_NOFOLLOW,
    )?))
}

/// `fstat` of an open descriptor.
pub(super) fn fstat(fd: BorrowedFd<'_>) -> io::Result<Meta> {
    Ok(meta(&rustix::fs::fstat(fd)?))
}

/// Opens the root of a tree (the one place a symlink is followed: the caller named it).
pub(super) fn open_root(path: &Path) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        CWD,
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Opens directory `name` in `dir`, refusing to follow a symlink.
pub(super) fn open_dir(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Opens file `name` in `dir` for reading, refusing to follow a symlink or to block.
pub(super) fn open_file(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<File> {
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    Ok(File::from(fd))
}

/// The target of symlink `name` in `dir`.
pub(super) fn read_link(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<Vec<u8>> {
    Ok(rustix::fs::readlinkat(dir, name, Vec::new())?.into_bytes())
}

/// One entry of a directory listing.
pub(super) struct Child {
    pub(super) name: CString,
    pub(super) meta: Meta,
}

/// The entries of `dir` (without `.` and `..`), `lstat`ed, sorted by name bytes.
pub(super) fn list(dir: BorrowedFd<'_>) -> io::Result<Vec<Child>> {
    let mut entries = rustix::fs::Dir::read_from(dir)?;
    let mut children = Vec::new();
    while let Some(entry) = entries.read() {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_bytes() == b"." || name.to_bytes() == b".." {
            continue;
        }
        let meta = stat_at(dir, name)?;
        children.push(Child {
            name: name.to_owned(),
            meta,
        });
    }
    children.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    Ok(children)
}

/// Extended attributes: `(name, value)` sorted by name.
pub(super) type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

/// Where to read extended attributes from.
#[derive(Clone, Copy)]
pub(super) enum XattrSource<'a> {
    /// An open descriptor (directories).
    Fd(BorrowedFd<'a>),
    /// Entry `name` of directory `dir`, read without following it. `root` joined with `rel` is
    /// its full path, used only when `/proc/self/fd` is unavailable.
    At {
        dir: BorrowedFd<'a>,
        name: &'a CStr,
        root: &'a Path,
        rel: &'a [u8],
    },
}

/// Whether an attribute is left out of layers: host-specific labels and overlayfs metadata
/// (which a later overlay mount would obey, SPEC C-W15).
pub(super) fn xattr_excluded(name: &[u8]) -> bool {
    name == b"security.selinux"
        || name.starts_with(b"trusted.overlay.")
        || name.starts_with(b"user.overlay.")
}

/// Reads every extended attribute of `source` except the [excluded](xattr_excluded) ones.
/// A filesystem without xattr support has none.
pub(super) fn read_xattrs(source: XattrSource<'_>) -> io::Result<Xattrs> {
    match source {
        XattrSource::Fd(fd) => read_xattrs_with(
            || rustix::fs::flistxattr_query(fd),
            |buf| rustix::fs::flistxattr(fd, rustix::buffer::spare_capacity(buf)).map(drop),
            |name| rustix::fs::fgetxattr_query(fd, name),
            |name, buf| {
                rustix::fs::fgetxattr(fd, name, rustix::buffer::spare_capacity(buf)).map(drop)
            },
        ),
        XattrSource::At {
            dir,
            name,
            root,
            rel,
        } => {
            let mut proc = format!("/proc/self/fd/{}/", as_raw(dir)).into_bytes();
            proc.extend_from_slice(name.to_bytes());
            let proc = CString::new(proc).map_err(io::Error::other)?;
            let path: &CStr = &proc;
            match read_xattrs_at(path) {
                Err(e) if e.kind() == io::ErrorKind::NotFound && !proc_fd_available() => {
                    use std::os::unix::ffi::OsStrExt;
                    read_xattrs_at(root.join(std::ffi::OsStr::from_bytes(rel)).as_path())
                }
                other => other,
            }
        }
    }
}

fn as_raw(fd: BorrowedFd<'_>) -> i32 {
    use std::os::fd::AsRawFd;
    fd.as_fd().as_raw_fd()
}

fn proc_fd_available() -> bool {
    Path::new("/proc/self/fd").is_dir()
}

fn read_xattrs_at<P: rustix::path::Arg + Copy>(path: P) -> io::Result<Xattrs> {
    read_xattrs_with(
        || rustix::fs::llistxattr_query(path),
        |buf| rustix::fs::llistxattr(path, rustix::buffer::spare_capacity(buf)).map(drop),
        |name| rustix::fs::lgetxattr_query(path, name),
        |name, buf| {
            rustix::fs::lgetxattr(path, name, rustix::buffer::spare_capacity(buf)).map(drop)
        },
    )
}

fn unsupported(e: rustix::io::Errno) -> bool {
    e == rustix::io::Errno::NOTSUP || e == rustix::io::Errno::OPNOTSUPP
}

/// The list-then-get dance with size queries, retrying when an attribute grows in between.
fn read_xattrs_with(
    list_query: impl Fn() -> rustix::io::Result<usize>,
    list: impl Fn(&mut Vec<u8>) -> rustix::io::Result<()>,
    get_query: impl Fn(&CStr) -> rustix::io::Result<usize>,
    get: impl Fn(&CStr, &mut Vec<u8>) -> rustix::io::Result<()>,
) -> io::Result<Xattrs> {
    let names = loop {
        let size = match list_query() {
            Ok(size) => size,
            Err(e) if unsupported(e) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        if size == 0 {
            return Ok(Vec::new());
        }
        let mut buf = Vec::with_capacity(size);
        match list(&mut buf) {
            Ok(()) => break buf,
            Err(rustix::io::Errno::RANGE) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    let mut out = Vec::new();
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        if xattr_excluded(name) {
            continue;
        }
        let cname = CString::new(name).map_err(io::Error::other)?;
        let value = loop {
            let size = match get_query(&cname) {
                Ok(size) => size,
                Err(rustix::io::Errno::NODATA) => break None,
                Err(e) => return Err(e.into()),
            };
            let mut buf = Vec::with_capacity(size);
            if size == 0 {
                break Some(buf);
            }
            match get(&cname, &mut buf) {
                Ok(()) => break Some(buf),
                Err(rustix::io::Errno::RANGE) => continue,
                Err(rustix::io::Errno::NODATA) => break None,
                Err(e) => return Err(e.into()),
            }
        };
        if let Some(value) = value {
            out.push((name.to_vec(), value));
        }
    }
    out.sort();
    Ok(out)
}
