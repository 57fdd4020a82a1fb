//! Filesystem operations confined to a root directory.
//!
//! Every path is resolved from the root's descriptor, never from a path string: with
//! `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)` when the kernel has it (Linux 5.6), or
//! else with a walk of `O_PATH | O_NOFOLLOW` opens, one component at a time, that follows
//! symlinks itself, resolving absolute targets from the root and clamping `..` at the root
//! (the same semantics). Leaves are then created, removed and changed relative to their
//! parent's descriptor with no-follow operations. So nothing outside the root is reached,
//! whatever symlinks the root holds and whatever another process swaps in meanwhile (SPEC
//! C-P04...C-P20).

use std::collections::HashMap;
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::rc::Rc;

use rustix::fs::{
    AtFlags, CWD, Dir, FileType, Mode, OFlags, ResolveFlags, Stat, mkdirat, openat, openat2,
    readlinkat, statat, unlinkat,
};
use rustix::io::Errno;

/// How many directory descriptors the resolver keeps open.
const CACHE: usize = 128;
/// Symlinks followed while resolving one path (as the kernel's `MAXSYMLINKS`).
const MAX_SYMLINKS: usize = 40;

/// An open directory inside the root.
#[derive(Debug)]
pub(crate) struct DirHandle {
    /// A descriptor for `*at` calls: read-only, or `O_PATH` when the directory is not
    /// readable.
    pub(crate) fd: OwnedFd,
    /// The directory has the setgid bit: what is created in it takes its group.
    pub(crate) setgid: bool,
    /// Files created in it get exactly the mode asked for, less the umask (no default ACL,
    /// as far as we know).
    pub(crate) plain_modes: bool,
    pub(crate) dev: u64,
    pub(crate) ino: u64,
}

impl DirHandle {
    /// Wraps a directory descriptor, learning what creating files in it does.
    /// `inherited_acl`: what is known already (a directory just made inherits its parent's
    /// default ACL); `None` to ask the filesystem.
    pub(crate) fn new(fd: OwnedFd, inherited_acl: Option<bool>) -> Result<DirHandle, Errno> {
        let st = rustix::fs::fstat(&fd)?;
        let acl = match inherited_acl {
            Some(acl) => acl,
            None => !matches!(
                rustix::fs::fgetxattr_query(&fd, "system.posix_acl_default"),
                Err(Errno::NODATA | Errno::OPNOTSUPP)
            ),
        };
        Ok(DirHandle {
            fd,
            setgid: st.st_mode & 0o2000 != 0,
            plain_modes: !acl,
            dev: st.st_dev,
            ino: st.st_ino,
        })
    }
}

/// The root directory, and a cache of directories resolved inside it.
pub(crate) struct Root {
    fd: OwnedFd,
    openat2: bool,
    cache: HashMap<Vec<u8>, (Rc<DirHandle>, u64)>,
    tick: u64,
}

pub(crate) fn is_not_found(err: Errno) -> bool {
    matches!(err, Errno::NOENT | Errno::NOTDIR | Errno::LOOP)
}

fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC
}

fn path_flags() -> OFlags {
    OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC
}

impl Root {
    /// Opens `path` (following symlinks: the caller names it) as the root. `portable` forces
    /// the component walk instead of `openat2`.
    pub(crate) fn open(path: &Path, portable: bool) -> Result<Root, Errno> {
        let fd = openat(
            CWD,
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let mut root = Root {
            fd,
            openat2: !portable,
            cache: HashMap::new(),
            tick: 0,
        };
        if root.openat2 {
            // Probe: seccomp profiles and old kernels refuse openat2.
            match openat2(
                &root.fd,
                ".",
                dir_flags(),
                Mode::empty(),
                ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
            ) {
                Ok(_) => {}
                Err(Errno::NOSYS | Errno::PERM | Errno::INVAL | Errno::OPNOTSUPP) => {
                    root.openat2 = false;
                }
                Err(err) => return Err(err),
            }
        }
        Ok(root)
    }

    /// The root's descriptor (readable: for `fstat`, `fsetxattr`, `fchmod`...).
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Forgets every cached directory (after anything that could change how a path
    /// resolves: a directory or symlink removed or replaced).
    pub(crate) fn invalidate(&mut self) {
        self.cache.clear();
    }

    /// Opens `path` (relative, normalised: no `.`, `..` or empty components) inside the
    /// root with `flags`, following symlinks inside the root except, with `nofollow`, at the
    /// last component.
    pub(crate) fn resolve(
        &self,
        path: &[u8],
        flags: OFlags,
        nofollow: bool,
    ) -> Result<OwnedFd, Errno> {
        let flags = flags
            | OFlags::CLOEXEC
            | if nofollow {
                OFlags::NOFOLLOW
            } else {
                OFlags::empty()
            };
        if path.is_empty() {
            return openat(&self.fd, ".", flags, Mode::empty());
        }
        if self.openat2 {
            let mut tries = 0;
            loop {
                match openat2(
                    &self.fd,
                    path,
                    flags,
                    Mode::empty(),
                    ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
                ) {
                    // A rename elsewhere raced with a `..`: the kernel asks to retry.
                    Err(Errno::AGAIN) if tries < 16 => tries += 1,
                    other => return other,
                }
            }
        }
        let walked = self.walk(path, !nofollow)?;
        match walked {
            None => openat(&self.fd, ".", flags, Mode::empty()),
            Some(fd) => {
                if flags.contains(OFlags::PATH) && !flags.contains(OFlags::DIRECTORY) {
                    return Ok(fd);
                }
                // Reopen the object itself with the wanted flags: through `.` for a
                // directory; anything else is refused (callers only reopen directories).
                let st = rustix::fs::fstat(&fd)?;
                if FileType::from_raw_mode(st.st_mode) == FileType::Symlink {
                    return Err(Errno::LOOP);
                }
                if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
                    return Err(Errno::NOTDIR);
                }
                openat(&fd, ".", flags & !OFlags::NOFOLLOW, Mode::empty())
            }
        }
    }

    /// The component walk: resolves `path` with `O_PATH | O_NOFOLLOW` opens, following
    /// symlinks itself inside the root. `None` is the root itself.
    fn walk(&self, path: &[u8], follow_last: bool) -> Result<Option<OwnedFd>, Errno> {
        // Components still to walk, in reverse order (the next one last).
        let mut pending: Vec<Vec<u8>> = path
            .split(|&b| b == b'/')
            .rev()
            .map(<[u8]>::to_vec)
            .collect();
        // The directories walked so far, from the root down (empty: at the root).
        let mut stack: Vec<OwnedFd> = Vec::new();
        let mut links = 0;
        while let Some(component) = pending.pop() {
            match component.as_slice() {
                b"" | b"." => continue,
                b".." => {
                    stack.pop();
                    continue;
                }
                _ => {}
            }
            let fd = {
                let parent = stack.last().map_or(self.fd.as_fd(), AsFd::as_fd);
                openat(
                    parent,
                    component.as_slice(),
                    OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )?
            };
            let st = rustix::fs::fstat(&fd)?;
            match FileType::from_raw_mode(st.st_mode) {
                FileType::Symlink if follow_last || !pending.is_empty() => {
                    links += 1;
                    if links > MAX_SYMLINKS {
                        return Err(Errno::LOOP);
                    }
                    let target = readlinkat(&fd, "", Vec::new())?.into_bytes();
                    if target.first() == Some(&b'/') {
                        stack.clear();
                    }
                    pending.extend(target.split(|&b| b == b'/').rev().map(<[u8]>::to_vec));
                }
                FileType::Directory => stack.push(fd),
                _ if pending.is_empty() => stack.push(fd),
                _ => return Err(Errno::NOTDIR),
            }
        }
        Ok(stack.pop())
    }

    fn cached(&mut self, path: &[u8]) -> Option<Rc<DirHandle>> {
        self.tick += 1;
        let tick = self.tick;
        self.cache.get_mut(path).map(|(dir, used)| {
            *used = tick;
            Rc::clone(dir)
        })
    }

    /// Caches `dir` as the directory at `path`.
    pub(crate) fn remember(&mut self, path: &[u8], dir: &Rc<DirHandle>) {
        if self.cache.len() >= CACHE {
            // Evict the least recently used.
            if let Some(oldest) = self
                .cache
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone())
            {
                self.cache.remove(&oldest);
            }
        }
        self.tick += 1;
        self.cache
            .insert(path.to_vec(), (Rc::clone(dir), self.tick));
    }

    /// The existing directory at `path` (symlinks followed inside the root), or `None` when
    /// it does not exist or is not a directory.
    pub(crate) fn lookup_dir(&mut self, path: &[u8]) -> Result<Option<Rc<DirHandle>>, Errno> {
        if let Some(dir) = self.cached(path) {
            return Ok(Some(dir));
        }
        let opened = match self.resolve(path, dir_flags(), false) {
            // Not readable (not running as root): good enough for `*at` calls.
            Err(Errno::ACCESS) => self.resolve(path, path_flags(), false),
            other => other,
        };
        match opened {
            Ok(fd) => {
                let dir = Rc::new(DirHandle::new(fd, None)?);
                self.remember(path, &dir);
                Ok(Some(dir))
            }
            Err(err) if is_not_found(err) => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// The directory at `path`, created (with its missing parents, mode 0o755 before the
    /// umask) if missing; `created` hears of each directory made. Fails with `ENOTDIR` when
    /// a component exists and is not a directory (nor a symlink to one).
    pub(crate) fn ensure_dir(
        &mut self,
        path: &[u8],
        created: &mut dyn FnMut(&[u8]),
    ) -> Result<Rc<DirHandle>, Errno> {
        if let Some(dir) = self.lookup_dir(path)? {
            return Ok(dir);
        }
        // Find the deepest existing ancestor.
        let mut ends: Vec<usize> = path
            .iter()
            .enumerate()
            .filter(|&(_, &b)| b == b'/')
            .map(|(i, _)| i)
            .collect();
        ends.push(path.len());
        let mut base: Option<(usize, Rc<DirHandle>)> = None;
        for k in (0..ends.len()).rev() {
            // Prefix of k components.
            let prefix = if k == 0 {
                &path[..0]
            } else {
                &path[..ends[k - 1]]
            };
            if let Some(dir) = self.lookup_dir(prefix)? {
                base = Some((k, dir));
                break;
            }
        }
        let Some((k, mut dir)) = base else {
            return Err(Errno::NOENT);
        };
        for (i, &end) in ends.iter().enumerate().skip(k) {
            let start = if i == 0 { 0 } else { ends[i - 1] + 1 };
            let name = &path[start..end];
            match mkdirat(&dir.fd, name, Mode::from_raw_mode(0o755)) {
                Ok(()) => created(&path[..end]),
                // Exists but did not resolve to a directory: a file or a dangling symlink.
                Err(Errno::EXIST) => return Err(Errno::NOTDIR),
                Err(err) => return Err(err),
            }
            let fd = openat(&dir.fd, name, dir_flags() | OFlags::NOFOLLOW, Mode::empty())?;
            dir = Rc::new(DirHandle::new(fd, Some(!dir.plain_modes))?);
            self.remember(&path[..end], &dir);
        }
        Ok(dir)
    }
}

/// `lstat` of `name` in `dir`; `None` when missing.
pub(crate) fn lstat(dir: BorrowedFd<'_>, name: &[u8]) -> Result<Option<Stat>, Errno> {
    match statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::NOENT) => Ok(None),
        Err(err) => Err(err),
    }
}

pub(crate) fn file_type(st: &Stat) -> FileType {
    FileType::from_raw_mode(st.st_mode)
}

/// The names in a directory (`.` and `..` left out).
pub(crate) fn list(dir: OwnedFd) -> Result<Vec<CString>, Errno> {
    let mut dir = Dir::new(dir)?;
    let mut names = Vec::new();
    while let Some(entry) = dir.read() {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_bytes() != b"." && name.to_bytes() != b".." {
            names.push(name.to_owned());
        }
    }
    Ok(names)
}

/// Opens the directory `name` in `parent` for reading, never through a symlink.
pub(crate) fn open_dir_nofollow(parent: BorrowedFd<'_>, name: &[u8]) -> Result<OwnedFd, Errno> {
    openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// What [`remove`] removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Removed {
    Nothing,
    /// A file, device, FIFO, socket.
    File,
    /// A symlink or a directory (tree): cached resolutions may be stale.
    LinkOrDir,
}

/// Removes `name` in `parent` whatever it is: a directory with everything below it, never
/// following symlinks (a symlink is removed itself). Iterative, so any depth is fine.
pub(crate) fn remove(parent: BorrowedFd<'_>, name: &[u8]) -> Result<Removed, Errno> {
    let is_link = match lstat(parent, name)? {
        None => return Ok(Removed::Nothing),
        Some(st) => file_type(&st) == FileType::Symlink,
    };
    match unlinkat(parent, name, AtFlags::empty()) {
        Ok(()) => {
            return Ok(if is_link {
                Removed::LinkOrDir
            } else {
                Removed::File
            });
        }
        Err(Errno::NOENT) => return Ok(Removed::Nothing),
        Err(Errno::ISDIR) => {}
        Err(err) => return Err(err),
    }
    struct Frame {
        fd: OwnedFd,
        names: Vec<CString>,
        name: CString,
    }
    let frame = |parent: BorrowedFd<'_>, name: CString| -> Result<Frame, Errno> {
        let fd = open_dir_nofollow(parent, name.to_bytes())?;
        let listing = openat(
            &fd,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Frame {
            fd,
            names: list(listing)?,
            name,
        })
    };
    let top = CString::new(name).map_err(|_| Errno::INVAL)?;
    let mut stack = vec![frame(parent, top)?];
    while let Some(current) = stack.last_mut() {
        if let Some(child) = current.names.pop() {
            let mut unlinked = unlinkat(&current.fd, child.as_c_str(), AtFlags::empty());
            if unlinked == Err(Errno::ACCESS) {
                // A directory its (unprivileged) owner may not write to, going anyway.
                if let Ok(st) = rustix::fs::fstat(&current.fd) {
                    let _ = rustix::fs::fchmod(
                        &current.fd,
                        Mode::from_raw_mode((st.st_mode & 0o7777) | 0o700),
                    );
                }
                unlinked = unlinkat(&current.fd, child.as_c_str(), AtFlags::empty());
            }
            match unlinked {
                Ok(()) | Err(Errno::NOENT) => {}
                Err(Errno::ISDIR) => {
                    let next = frame(current.fd.as_fd(), child)?;
                    stack.push(next);
                }
                Err(err) => return Err(err),
            }
        } else {
            let Some(done) = stack.pop() else { break };
            let dir = stack.last().map_or(parent, |f| f.fd.as_fd());
            drop(done.fd);
            match unlinkat(dir, done.name.as_c_str(), AtFlags::REMOVEDIR) {
                Ok(()) | Err(Errno::NOENT) => {}
                Err(err) => return Err(err),
            }
        }
    }
    Ok(Removed::LinkOrDir)
}

/// `chmod` of a device node or FIFO without following symlinks and without opening it:
/// through an `O_PATH | O_NOFOLLOW` descriptor checked to be of `kind`, via its
/// `/proc/self/fd` entry (the only way without `fchmodat2`; glibc does the same). Without
/// `/proc`, a FIFO is opened non-blocking instead; a device then fails.
pub(crate) fn chmod_special(
    parent: BorrowedFd<'_>,
    name: &[u8],
    kind: FileType,
    mode: u32,
) -> Result<(), Errno> {
    let fd = openat(
        parent,
        name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let st = rustix::fs::fstat(&fd)?;
    if file_type(&st) != kind {
        // Swapped by someone else: not ours to change.
        return Err(Errno::STALE);
    }
    if st.st_mode & 0o7777 == mode {
        return Ok(());
    }
    let proc_path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    match rustix::fs::chmodat(
        CWD,
        proc_path.as_str(),
        Mode::from_raw_mode(mode),
        AtFlags::empty(),
    ) {
        // No /proc: a FIFO can be opened without blocking or side effects instead (a
        // device could not: opening it runs its driver).
        Err(Errno::NOENT) if kind == FileType::Fifo => {
            let fifo = openat(
                parent,
                name,
                OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            let st = rustix::fs::fstat(&fifo)?;
            if file_type(&st) != FileType::Fifo {
                return Err(Errno::STALE);
            }
            rustix::fs::fchmod(&fifo, Mode::from_raw_mode(mode))
        }
        other => other,
    }
}
