//! The walk shared by [`build_layer`](super::build_layer) (no lower tree: everything is added)
//! and [`build_changeset`](super::build_changeset).
//!
//! Depth-first over the upper tree with an explicit stack (no recursion, so deep trees cannot
//! overflow the stack), each directory's entries sorted by name bytes and merged with the
//! lower tree's. A directory's own entry is written lazily: when it changed, or when the first
//! thing below it is written, so that unchanged directories with unchanged contents stay out
//! of a changeset while the parents of every written entry are in it.

use std::collections::HashMap;
use std::ffi::{CStr, CString, OsStr};
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::fsutil::{self, Kind, Meta, XattrSource, Xattrs};
use super::tarfmt::{self, EntryHeader, TypeFlag};
use super::{BuildOptions, BuildReport, ChangeDetection, OwnerPolicy};
use crate::{Error, Result};

/// The prefix of whiteout names.
pub(super) const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// What follows [`WHITEOUT_PREFIX`] in an opaque whiteout (`.wh..wh..opq`).
const OPAQUE_TARGET: &[u8] = b".wh..opq";

/// Output buffer size: large enough that a layer writer downstream sees few, large writes.
const OUT_BUFFER: usize = 128 << 10;
/// Chunk size for streaming and comparing file contents.
const CHUNK: usize = 64 << 10;

/// Which tree an error happened in (for its `operation`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Tree {
    Upper,
    Lower,
}

/// An operation, named as [`Error::Io`] reports it for each tree.
#[derive(Clone, Copy)]
struct Op {
    upper: &'static str,
    lower: &'static str,
}

const OPEN: Op = Op {
    upper: "open",
    lower: "open lower",
};
const STAT: Op = Op {
    upper: "stat",
    lower: "stat lower",
};
const READ_DIR: Op = Op {
    upper: "read directory",
    lower: "read lower directory",
};
const READ: Op = Op {
    upper: "read",
    lower: "read lower",
};
const READLINK: Op = Op {
    upper: "readlink",
    lower: "readlink lower",
};
const READ_XATTRS: Op = Op {
    upper: "read xattrs",
    lower: "read lower xattrs",
};

/// Maps an I/O error of `op` on `rel` in `tree` to an [`Error::Io`].
fn err<'a>(op: Op, tree: Tree, rel: &'a [u8]) -> impl FnOnce(io::Error) -> Error + 'a {
    move |source| {
        let operation = match tree {
            Tree::Upper => op.upper,
            Tree::Lower => op.lower,
        };
        Error::io(operation, Some(rel_path(rel)), source)
    }
}

fn rel_path(rel: &[u8]) -> PathBuf {
    if rel.is_empty() {
        PathBuf::from(".")
    } else {
        PathBuf::from(OsStr::from_bytes(rel))
    }
}

fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut rel = Vec::with_capacity(dir.len() + 1 + name.len());
    rel.extend_from_slice(dir);
    if !dir.is_empty() {
        rel.push(b'/');
    }
    rel.extend_from_slice(name);
    rel
}

fn changed_underfoot(rel: &[u8]) -> Error {
    Error::io(
        "stat",
        Some(rel_path(rel)),
        io::Error::other("file changed while the layer was being built"),
    )
}

/// Builds a layer from `upper`, as a changeset against `lower` when there is one.
pub(super) fn run<W: Write>(
    lower: Option<&Path>,
    upper: &Path,
    out: W,
    options: &BuildOptions,
) -> Result<BuildReport> {
    let prefix = super::prefix_bytes(options.prefix.as_deref())?;
    let upper_fd =
        fsutil::open_root(upper).map_err(|e| Error::io("open", Some(upper.to_path_buf()), e))?;
    let lower_fd = match lower {
        Some(path) => Some(
            fsutil::open_root(path)
                .map_err(|e| Error::io("open lower", Some(path.to_path_buf()), e))?,
        ),
        None => None,
    };
    let mut walker = Walker {
        stack: Vec::new(),
        emitted: 0,
        roots: Roots {
            upper,
            lower: lower.unwrap_or(upper),
        },
        sink: Sink {
            out: BufWriter::with_capacity(OUT_BUFFER, out),
            options,
            prefix,
            report: BuildReport::default(),
            links: HashMap::new(),
        },
    };
    walker.start(upper_fd, lower_fd)?;
    walker.walk()?;
    walker.sink.finish()
}

#[derive(Clone, Copy)]
struct Roots<'a> {
    upper: &'a Path,
    lower: &'a Path,
}

impl Roots<'_> {
    fn xattrs(&self, tree: Tree, dir: BorrowedFd<'_>, name: &CStr, rel: &[u8]) -> Result<Xattrs> {
        let root = match tree {
            Tree::Upper => self.upper,
            Tree::Lower => self.lower,
        };
        fsutil::read_xattrs(XattrSource::At {
            dir,
            name,
            root,
            rel,
        })
        .map_err(err(READ_XATTRS, tree, rel))
    }
}

/// A directory's own entry, waiting to be written.
struct DirEntry {
    meta: Meta,
    xattrs: Xattrs,
}

/// One thing to do in a directory.
enum Item {
    /// Write a whiteout for this lower-only name.
    Whiteout(CString),
    /// Write an opaque whiteout for this directory.
    Opaque,
    /// Consider this upper entry (and its lower counterpart, if any).
    Entry {
        name: CString,
        upper: Meta,
        lower: Option<Meta>,
    },
}

/// A directory being walked.
struct Frame {
    /// Its path relative to the tree's root (empty for the root).
    rel: Vec<u8>,
    upper: OwnedFd,
    /// The lower tree's directory at the same path, when that is a directory.
    lower: Option<OwnedFd>,
    /// Its own entry (none for the root without a prefix).
    entry: Option<DirEntry>,
    /// What remains to do in it: whiteouts first, then entries, each sorted.
    items: std::vec::IntoIter<Item>,
}

struct Walker<'a, W: Write> {
    stack: Vec<Frame>,
    /// Frames `[0, emitted)` have had their entry written (or have none).
    emitted: usize,
    roots: Roots<'a>,
    sink: Sink<'a, W>,
}

impl<W: Write> Walker<'_, W> {
    fn start(&mut self, upper: OwnedFd, lower: Option<OwnedFd>) -> Result<()> {
        let xattrs = self.sink.options.xattrs;
        let (entry, changed) = if self.sink.prefix.is_empty() {
            (None, false)
        } else {
            let meta = fsutil::fstat(upper.as_fd()).map_err(err(STAT, Tree::Upper, b""))?;
            let upper_xattrs = if xattrs {
                fsutil::read_xattrs(XattrSource::Fd(upper.as_fd())).map_err(err(
                    READ_XATTRS,
                    Tree::Upper,
                    b"",
                ))?
            } else {
                Vec::new()
            };
            let changed = match &lower {
                None => true,
                Some(lower) => {
                    let lower_meta =
                        fsutil::fstat(lower.as_fd()).map_err(err(STAT, Tree::Lower, b""))?;
                    self.sink.meta_changed(&meta, &lower_meta)
                        || (xattrs
                            && upper_xattrs
                                != fsutil::read_xattrs(XattrSource::Fd(lower.as_fd()))
                                    .map_err(err(READ_XATTRS, Tree::Lower, b""))?)
                }
            };
            let entry = DirEntry {
                meta,
                xattrs: upper_xattrs,
            };
            (Some(entry), changed)
        };
        let frame = open_frame(&mut self.sink, Vec::new(), upper, lower, entry)?;
        self.stack.push(frame);
        if changed {
            flush(&self.stack, &mut self.emitted, &mut self.sink)?;
        }
        Ok(())
    }

    fn walk(&mut self) -> Result<()> {
        loop {
            let item = match self.stack.last_mut() {
                None => return Ok(()),
                Some(frame) => frame.items.next(),
            };
            match item {
                None => {
                    self.stack.pop();
                    self.emitted = self.emitted.min(self.stack.len());
                }
                Some(Item::Whiteout(name)) => {
                    flush(&self.stack, &mut self.emitted, &mut self.sink)?;
                    if let Some(frame) = self.stack.last() {
                        self.sink.write_whiteout(&frame.rel, name.as_bytes())?;
                    }
                }
                Some(Item::Opaque) => {
                    flush(&self.stack, &mut self.emitted, &mut self.sink)?;
                    if let Some(frame) = self.stack.last() {
                        self.sink.write_whiteout(&frame.rel, OPAQUE_TARGET)?;
                    }
                }
                Some(Item::Entry { name, upper, lower }) => self.entry(&name, upper, lower)?,
            }
        }
    }

    fn entry(&mut self, name: &CStr, upper: Meta, lower: Option<Meta>) -> Result<()> {
        let Walker {
            stack,
            emitted,
            roots,
            sink,
        } = self;
        let Some(frame) = stack.last() else {
            return Ok(());
        };
        let rel = join(&frame.rel, name.to_bytes());
        let upper_dir = frame.upper.as_fd();
        // The lower counterpart matters only if the lower parent is a directory (it is, when
        // there is a lower entry at all).
        let lower = match (&frame.lower, lower) {
            (Some(dir), Some(meta)) => Some((dir.as_fd(), meta)),
            _ => None,
        };
        let xattrs = if sink.options.xattrs {
            roots.xattrs(Tree::Upper, upper_dir, name, &rel)?
        } else {
            Vec::new()
        };

        if upper.kind == Kind::Dir {
            let fd = fsutil::open_dir(upper_dir, name).map_err(err(OPEN, Tree::Upper, &rel))?;
            let meta = fsutil::fstat(fd.as_fd()).map_err(err(STAT, Tree::Upper, &rel))?;
            if !meta.same_inode(&upper) {
                return Err(changed_underfoot(&rel));
            }
            let (lower_fd, changed) = match lower {
                Some((lower_dir, lower_meta)) if lower_meta.kind == Kind::Dir => {
                    let lower_fd =
                        fsutil::open_dir(lower_dir, name).map_err(err(OPEN, Tree::Lower, &rel))?;
                    let changed = sink.meta_changed(&meta, &lower_meta)
                        || (sink.options.xattrs
                            && xattrs != roots.xattrs(Tree::Lower, lower_dir, name, &rel)?);
                    (Some(lower_fd), changed)
                }
                _ => (None, true),
            };
            let entry = DirEntry { meta, xattrs };
            let frame = open_frame(sink, rel, fd, lower_fd, Some(entry))?;
            stack.push(frame);
            if changed {
                flush(stack, emitted, sink)?;
            }
            return Ok(());
        }

        let changed = match lower {
            None => true,
            Some((lower_dir, lower_meta)) => entry_changed(
                sink,
                roots,
                (upper_dir, lower_dir),
                name,
                &rel,
                (&upper, &lower_meta),
                &xattrs,
            )?,
        };
        if changed {
            flush(stack, emitted, sink)?;
            sink.write_nondir(upper_dir, name, &rel, &upper, &xattrs)?;
        }
        Ok(())
    }
}

/// Lists a directory of both trees and merges the listings into a frame.
fn open_frame<W: Write>(
    sink: &mut Sink<'_, W>,
    rel: Vec<u8>,
    upper: OwnedFd,
    lower: Option<OwnedFd>,
    entry: Option<DirEntry>,
) -> Result<Frame> {
    let upper_children = fsutil::list(upper.as_fd()).map_err(err(READ_DIR, Tree::Upper, &rel))?;
    let lower_children = match &lower {
        Some(fd) => fsutil::list(fd.as_fd()).map_err(err(READ_DIR, Tree::Lower, &rel))?,
        None => Vec::new(),
    };
    let mut whiteouts = Vec::new();
    let mut entries = Vec::new();
    let lower_count = lower_children
        .iter()
        .filter(|c| c.meta.kind != Kind::Socket)
        .count();
    let mut lower_iter = lower_children
        .into_iter()
        .filter(|c| c.meta.kind != Kind::Socket)
        .peekable();
    for child in upper_children {
        if child.meta.kind == Kind::Socket {
            sink.report.sockets_skipped += 1;
            continue;
        }
        let name = child.name.as_bytes();
        if name.starts_with(WHITEOUT_PREFIX) {
            return Err(Error::Unpackable {
                path: rel_path(&join(&rel, name)),
                reason: "a name starting with `.wh.` would be a whiteout in a layer (C-W14)",
            });
        }
        if child.meta.kind == Kind::Other {
            return Err(Error::Unpackable {
                path: rel_path(&join(&rel, name)),
                reason: "a file type that tar cannot hold",
            });
        }
        let mut lower_meta = None;
        while let Some(l) = lower_iter.peek() {
            match l.name.as_bytes().cmp(name) {
                std::cmp::Ordering::Less => {
                    if let Some(deleted) = lower_iter.next() {
                        whiteouts.push(deleted.name);
                    }
                }
                std::cmp::Ordering::Equal => {
                    lower_meta = lower_iter.next().map(|c| c.meta);
                    break;
                }
                std::cmp::Ordering::Greater => break,
            }
        }
        entries.push(Item::Entry {
            name: child.name,
            upper: child.meta,
            lower: lower_meta,
        });
    }
    whiteouts.extend(lower_iter.map(|c| c.name));
    // Nothing of the lower directory survives: one opaque whiteout can stand for them all.
    let opaque = sink.options.opaque_whiteouts && lower_count > 0 && whiteouts.len() == lower_count;
    let whiteouts = if opaque { Vec::new() } else { whiteouts };
    if let Some(bad) = whiteouts
        .iter()
        .find(|n| n.as_bytes().starts_with(WHITEOUT_PREFIX))
    {
        return Err(Error::Unpackable {
            path: rel_path(&join(&rel, bad.as_bytes())),
            reason: "a deleted name starting with `.wh.` cannot be whited out",
        });
    }
    let items: Vec<Item> = opaque
        .then_some(Item::Opaque)
        .into_iter()
        .chain(whiteouts.into_iter().map(Item::Whiteout))
        .chain(entries)
        .collect();
    Ok(Frame {
        rel,
        upper,
        lower,
        entry,
        items: items.into_iter(),
    })
}

/// Writes the entries of every directory on the stack not written yet, outermost first.
fn flush<W: Write>(stack: &[Frame], emitted: &mut usize, sink: &mut Sink<'_, W>) -> Result<()> {
    for frame in stack.iter().skip(*emitted) {
        if let Some(entry) = &frame.entry {
            sink.write_dir(&frame.rel, entry)?;
        }
    }
    *emitted = stack.len();
    Ok(())
}

/// Whether a non-directory present in both trees changed.
fn entry_changed<W: Write>(
    sink: &Sink<'_, W>,
    roots: &Roots<'_>,
    (upper_dir, lower_dir): (BorrowedFd<'_>, BorrowedFd<'_>),
    name: &CStr,
    rel: &[u8],
    (upper, lower): (&Meta, &Meta),
    upper_xattrs: &Xattrs,
) -> Result<bool> {
    if upper.kind != lower.kind || sink.meta_changed(upper, lower) {
        return Ok(true);
    }
    match upper.kind {
        Kind::File if upper.size != lower.size => return Ok(true),
        Kind::Symlink => {
            let a = fsutil::read_link(upper_dir, name).map_err(err(READLINK, Tree::Upper, rel))?;
            let b = fsutil::read_link(lower_dir, name).map_err(err(READLINK, Tree::Lower, rel))?;
            if a != b {
                return Ok(true);
            }
        }
        Kind::Char | Kind::Block
            if (upper.rdev_major, upper.rdev_minor) != (lower.rdev_major, lower.rdev_minor) =>
        {
            return Ok(true);
        }
        _ => {}
    }
    if sink.options.xattrs && *upper_xattrs != roots.xattrs(Tree::Lower, lower_dir, name, rel)? {
        return Ok(true);
    }
    if upper.kind == Kind::File
        && sink.options.change_detection == ChangeDetection::Content
        && !upper.same_inode(lower)
    {
        let mut a = fsutil::open_file(upper_dir, name).map_err(err(OPEN, Tree::Upper, rel))?;
        let mut b = fsutil::open_file(lower_dir, name).map_err(err(OPEN, Tree::Lower, rel))?;
        return same_content(&mut a, &mut b, rel).map(|same| !same);
    }
    Ok(false)
}

fn same_content(a: &mut File, b: &mut File, rel: &[u8]) -> Result<bool> {
    let mut buf_a = vec![0u8; CHUNK];
    let mut buf_b = vec![0u8; CHUNK];
    loop {
        let n = read_full(a, &mut buf_a).map_err(err(READ, Tree::Upper, rel))?;
        let m = read_full(b, &mut buf_b).map_err(err(READ, Tree::Lower, rel))?;
        if buf_a.get(..n) != buf_b.get(..m) {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

/// Reads until `buf` is full or the end of the file.
fn read_full(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while let Some(rest) = buf.get_mut(filled..).filter(|r| !r.is_empty()) {
        match file.read(rest) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Where entries go, and what we know about what went.
struct Sink<'a, W: Write> {
    out: BufWriter<W>,
    options: &'a BuildOptions,
    /// The prefix, ending in `/`, or empty.
    prefix: Vec<u8>,
    report: BuildReport,
    /// (dev, ino) of multiply-linked files written in full → their archive path.
    links: HashMap<(u64, u64), Vec<u8>>,
}

impl<W: Write> Sink<'_, W> {
    fn owner(&self, meta: &Meta) -> (u64, u64) {
        match self.options.owner {
            OwnerPolicy::Keep => (u64::from(meta.uid), u64::from(meta.gid)),
            OwnerPolicy::Normalize { uid, gid } => (u64::from(uid), u64::from(gid)),
        }
    }

    fn mtime(&self, meta: &Meta) -> i64 {
        match self.options.source_date_epoch {
            Some(epoch) => meta.mtime.min(epoch),
            None => meta.mtime,
        }
    }

    /// Whether the metadata every type shares differs (mode, owner as written, mtime).
    fn meta_changed(&self, upper: &Meta, lower: &Meta) -> bool {
        upper.mode != lower.mode
            || self.owner(upper) != self.owner(lower)
            || (upper.mtime, upper.mtime_nsec) != (lower.mtime, lower.mtime_nsec)
    }

    fn archive_path(&self, rel: &[u8], dir: bool) -> Vec<u8> {
        let mut path = Vec::with_capacity(self.prefix.len() + rel.len() + 1);
        path.extend_from_slice(&self.prefix);
        path.extend_from_slice(rel);
        if dir && !rel.is_empty() {
            path.push(b'/');
        }
        path
    }

    fn write_header(&mut self, header: &EntryHeader<'_>, rel: &[u8]) -> Result<()> {
        for (name, _) in header.xattrs {
            if std::str::from_utf8(name).is_err() || name.contains(&b'=') {
                return Err(Error::Unpackable {
                    path: rel_path(rel),
                    reason: "an xattr name that is not UTF-8 or contains `=` cannot be a PAX key",
                });
            }
        }
        let bytes = tarfmt::encode(header).map_err(|reason| Error::Unpackable {
            path: rel_path(rel),
            reason,
        })?;
        self.write(&bytes)?;
        self.report.entries += 1;
        Ok(())
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.out
            .write_all(bytes)
            .map_err(|e| Error::io("write", None, e))
    }

    fn write_dir(&mut self, rel: &[u8], entry: &DirEntry) -> Result<()> {
        let path = self.archive_path(rel, true);
        let (uid, gid) = self.owner(&entry.meta);
        self.write_header(
            &EntryHeader {
                path: &path,
                typeflag: TypeFlag::Directory,
                mode: entry.meta.mode,
                uid,
                gid,
                size: 0,
                mtime: self.mtime(&entry.meta),
                link: b"",
                dev: (0, 0),
                xattrs: &entry.xattrs,
            },
            rel,
        )?;
        self.report.directories += 1;
        Ok(())
    }

    fn write_whiteout(&mut self, dir_rel: &[u8], name: &[u8]) -> Result<()> {
        let mut whiteout = WHITEOUT_PREFIX.to_vec();
        whiteout.extend_from_slice(name);
        let rel = join(dir_rel, &whiteout);
        let path = self.archive_path(&rel, false);
        self.write_header(
            &EntryHeader {
                path: &path,
                typeflag: TypeFlag::Regular,
                mode: 0o644,
                uid: 0,
                gid: 0,
                size: 0,
                mtime: self.options.source_date_epoch.unwrap_or(0),
                link: b"",
                dev: (0, 0),
                xattrs: &[],
            },
            &rel,
        )?;
        self.report.whiteouts += 1;
        Ok(())
    }

    fn write_nondir(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &CStr,
        rel: &[u8],
        meta: &Meta,
        xattrs: &Xattrs,
    ) -> Result<()> {
        let path = self.archive_path(rel, false);
        let key = (meta.dev, meta.ino);
        if meta.nlink > 1
            && let Some(target) = self.links.get(&key).cloned()
        {
            let (uid, gid) = self.owner(meta);
            self.write_header(
                &EntryHeader {
                    path: &path,
                    typeflag: TypeFlag::HardLink,
                    mode: meta.mode,
                    uid,
                    gid,
                    size: 0,
                    mtime: self.mtime(meta),
                    link: &target,
                    dev: (0, 0),
                    xattrs: &[],
                },
                rel,
            )?;
            self.report.hardlinks += 1;
            return Ok(());
        }
        let (uid, gid) = self.owner(meta);
        let mut header = EntryHeader {
            path: &path,
            typeflag: TypeFlag::Regular,
            mode: meta.mode,
            uid,
            gid,
            size: 0,
            mtime: self.mtime(meta),
            link: b"",
            dev: (0, 0),
            xattrs,
        };
        match meta.kind {
            Kind::File => {
                let mut file = fsutil::open_file(dir, name).map_err(err(OPEN, Tree::Upper, rel))?;
                let opened = fsutil::fstat(file.as_fd()).map_err(err(STAT, Tree::Upper, rel))?;
                if opened.kind != Kind::File || !opened.same_inode(meta) {
                    return Err(changed_underfoot(rel));
                }
                let (uid, gid) = self.owner(&opened);
                header.mode = opened.mode;
                header.uid = uid;
                header.gid = gid;
                header.mtime = self.mtime(&opened);
                header.size = opened.size;
                self.write_header(&header, rel)?;
                self.copy_content(&mut file, opened.size, rel)?;
                self.report.files += 1;
                self.report.content_bytes += opened.size;
            }
            Kind::Symlink => {
                let target =
                    fsutil::read_link(dir, name).map_err(err(READLINK, Tree::Upper, rel))?;
                header.typeflag = TypeFlag::Symlink;
                header.link = &target;
                self.write_header(&header, rel)?;
                self.report.symlinks += 1;
            }
            Kind::Char | Kind::Block | Kind::Fifo => {
                header.typeflag = match meta.kind {
                    Kind::Char => TypeFlag::Char,
                    Kind::Block => TypeFlag::Block,
                    _ => TypeFlag::Fifo,
                };
                if meta.kind != Kind::Fifo {
                    header.dev = (meta.rdev_major, meta.rdev_minor);
                }
                self.write_header(&header, rel)?;
                self.report.special_files += 1;
            }
            Kind::Dir | Kind::Socket | Kind::Other => {
                return Err(Error::Unpackable {
                    path: rel_path(rel),
                    reason: "a file type that tar cannot hold",
                });
            }
        }
        if meta.nlink > 1 {
            self.links.insert(key, path);
        }
        Ok(())
    }

    /// Streams exactly `size` bytes of `file`, then its padding; fails if the file has fewer
    /// or more bytes than that.
    fn copy_content(&mut self, file: &mut File, size: u64, rel: &[u8]) -> Result<()> {
        let mut buf = vec![0u8; CHUNK];
        let mut left = size;
        while left > 0 {
            let want = usize::try_from(left.min(CHUNK as u64)).unwrap_or(CHUNK);
            let chunk = buf.get_mut(..want).unwrap_or_default();
            let n = match file.read(chunk) {
                Ok(0) => {
                    return Err(Error::io(
                        "read",
                        Some(rel_path(rel)),
                        io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "file shrank while it was being read",
                        ),
                    ));
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(err(READ, Tree::Upper, rel)(e)),
            };
            let data = chunk.get(..n).unwrap_or_default();
            self.write(data)?;
            left -= n as u64;
        }
        let mut probe = [0u8; 1];
        loop {
            match file.read(&mut probe) {
                Ok(0) => break,
                Ok(_) => {
                    return Err(Error::io(
                        "read",
                        Some(rel_path(rel)),
                        io::Error::new(
                            io::ErrorKind::InvalidData,
                            "file grew while it was being read",
                        ),
                    ));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(err(READ, Tree::Upper, rel)(e)),
            }
        }
        let pad = [0u8; tarfmt::BLOCK];
        self.write(pad.get(..tarfmt::padding(size)).unwrap_or_default())
    }

    /// Writes the end-of-archive marker and flushes.
    fn finish(mut self) -> Result<BuildReport> {
        self.write(&[0u8; 2 * tarfmt::BLOCK])?;
        self.out.flush().map_err(|e| Error::io("write", None, e))?;
        Ok(self.report)
    }
}
