//! Staging directories: how a directory tree is made all or nothing on a local filesystem.
//!
//! The one mechanism behind [`crate::unpack::unpack_staged`] and
//! [`crate::Layout::create_staged`]: the tree is made in a staging directory beside its
//! target (on the same filesystem) and renamed into place only once it is complete; on
//! failure, or when the work is dropped, the staging directory is removed.
//!
//! A staging directory is named `.NAME.ocikit-staging-RANDOM`, where `NAME` is the target's
//! name, and lives in the target's parent directory. When that parent (or more of the
//! target's ancestors) does not exist yet, it lives in the nearest ancestor that does,
//! `NAME` is the name of the first missing directory, and the missing directories are
//! created only when the tree is committed: a failed run creates no directory at all.
//!
//! It holds two things: a `lock` file, on which the process using it holds an exclusive
//! `flock` from the moment the directory is made until it is gone, and the tree itself in a
//! subdirectory (`rootfs` for an unpack, `layout` for a layout), which is what is renamed:
//! the lock file never ends up in the target. The kernel releases a `flock` when its process
//! dies, however it dies, so a staging directory whose lock can be taken was left by a
//! killed process and is stale; the next run for the same target removes it (only those of
//! the same owner as the running process). One whose lock is held belongs to a run still
//! going and is left alone. This relies on `flock` working on the target's filesystem, as it
//! does on local ones. A new staged layout takes over the partial downloads
//! (`layout/.ocikit/partial`) of the stale staging directory it removes, so a killed pull
//! into a new layout resumes in the next run. (A run that fails rather than dies removes its
//! staging directory, partial downloads included; in an existing layout they stay.)

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The file in a staging directory whose `flock` says that the run using it is alive.
const STAGING_LOCK: &str = "lock";
/// What follows the target's name in the name of its staging directories.
const STAGING_MARK: &str = ".ocikit-staging-";
/// The longest part of a target's name that goes into its staging directories' names (the
/// rest of the name must fit in `NAME_MAX`).
const STAGING_NAME_MAX: usize = 200;
/// How often a fresh staging directory is made when a cleaner claimed the previous one.
const STAGING_ATTEMPTS: usize = 16;

pub(crate) fn io_error(operation: &'static str, path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        operation,
        path: path.to_path_buf(),
        source,
    }
}

/// A staging directory, locked while this value lives; removed when it is dropped unless it
/// was committed.
#[derive(Debug)]
pub(crate) struct Staging {
    /// The staging directory.
    dir: PathBuf,
    /// The name of the subdirectory that becomes the target.
    inner: &'static str,
    /// The target, and its parent directory (perhaps not there yet).
    target: PathBuf,
    parent: PathBuf,
    /// The mode of the empty directory the tree replaces, if one is there.
    replaced_mode: Option<u32>,
    /// The locked `lock` file (`None` once the directory is gone).
    lock: Option<File>,
}

impl Staging {
    /// Checks `target` (missing, or an empty directory: anything else is
    /// [`Error::TargetExists`]), removes its stale staging directories and makes a new one,
    /// locked, whose subdirectory `inner` (not created) becomes the target on commit.
    /// `operation` names the work in errors (`"unpack into"`).
    pub(crate) fn prepare(
        target: &Path,
        inner: &'static str,
        operation: &'static str,
    ) -> Result<Staging> {
        let (target, replaced_mode) = check_target(target, operation)?;
        let no_name = || {
            let e = std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the path does not end in a name",
            );
            io_error(operation, &target, e)
        };
        target.file_name().ok_or_else(no_name)?;
        let parent = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        // The nearest existing ancestor, and the name of its child on the way to the target.
        let mut child: &Path = &target;
        let (base, name) = loop {
            let name = child.file_name().ok_or_else(no_name)?;
            match child.parent() {
                Some(p) if p.as_os_str().is_empty() => break (PathBuf::from("."), name),
                None => break (PathBuf::from("."), name),
                Some(p) if p.is_dir() => break (p.to_path_buf(), name),
                Some(p) => child = p,
            }
        };
        let prefix = staging_prefix(name, STAGING_MARK);
        let (dir, lock) = make_locked(&base, &prefix, &target)?;
        // A new layout takes over the partial downloads of a killed run for the same target,
        // so its pull resumes from them (their bytes are verified before any is published).
        let carry = (inner == LAYOUT_INNER).then(|| dir.join(inner));
        remove_stale_carrying(&base, &prefix, carry.as_deref());
        Ok(Staging {
            dir,
            inner,
            target,
            parent,
            replaced_mode,
            lock: Some(lock),
        })
    }

    /// Where the tree is made (the staging directory's subdirectory).
    pub(crate) fn path(&self) -> PathBuf {
        self.dir.join(self.inner)
    }

    /// The target the tree is renamed onto.
    pub(crate) fn target(&self) -> &Path {
        &self.target
    }

    /// The mode of the empty directory the tree replaces (`None` when there is none).
    pub(crate) fn replaced_mode(&self) -> Option<u32> {
        self.replaced_mode
    }

    /// Syncs the staged tree, creates the target's missing parents, renames the tree into
    /// place, syncs the parent and removes what is left of the staging directory.
    pub(crate) fn commit(mut self) -> Result<()> {
        let root = self.path();
        let dir = File::open(&root).map_err(|e| io_error("open", &root, e))?;
        rustix::fs::syncfs(&dir).map_err(|e| io_error("sync", &root, e.into()))?;
        drop(dir);
        std::fs::create_dir_all(&self.parent).map_err(|e| io_error("create", &self.parent, e))?;
        if let Err(e) = std::fs::rename(&root, &self.target) {
            return Err(match e.raw_os_error() {
                Some(code)
                    if code == rustix::io::Errno::NOTEMPTY.raw_os_error()
                        || code == rustix::io::Errno::EXIST.raw_os_error()
                        || code == rustix::io::Errno::NOTDIR.raw_os_error() =>
                {
                    Error::TargetExists {
                        path: self.target.clone(),
                    }
                }
                _ => io_error("rename into place", &self.target, e),
            });
        }
        let parent = File::open(&self.parent).map_err(|e| io_error("open", &self.parent, e))?;
        parent
            .sync_all()
            .map_err(|e| io_error("sync", &self.parent, e))?;
        // The tree is in place; what is left is an empty directory and the lock file, which
        // a later run removes if this fails.
        self.remove();
        Ok(())
    }

    /// Removes the staging directory (what a failed run does).
    pub(crate) fn discard(mut self) {
        self.remove();
    }

    /// Removes the staging directory, then lets go of the lock.
    fn remove(&mut self) {
        if let Some(lock) = self.lock.take() {
            let _ = remove_tree(&self.dir);
            drop(lock);
        }
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if self.lock.is_none() {
            return;
        }
        // The work was dropped: remove the staging directory, off the async threads when
        // there are some. The leftover removes it when dropped, wherever that is: a blocking
        // task that a shutting-down runtime drops unrun still removes it (and never comes back
        // here, which once recursed until the stack overflowed).
        let leftover = Leftover {
            dir: std::mem::take(&mut self.dir),
            lock: self.lock.take(),
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn_blocking(move || drop(leftover));
            }
            Err(_) => drop(leftover),
        }
    }
}

/// A dropped staging directory, removed (then its lock released) when this drops.
struct Leftover<L> {
    dir: PathBuf,
    lock: Option<L>,
}

impl<L> Drop for Leftover<L> {
    fn drop(&mut self) {
        if let Some(lock) = self.lock.take() {
            let _ = remove_tree(&self.dir);
            drop(lock);
        }
    }
}

/// The target to rename the staged tree onto: `target` itself when it does not exist, or
/// the empty directory it is (or links to), with that directory's mode.
fn check_target(target: &Path, operation: &'static str) -> Result<(PathBuf, Option<u32>)> {
    let exists = || Error::TargetExists {
        path: target.to_path_buf(),
    };
    let meta = match std::fs::symlink_metadata(target) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok((target.to_path_buf(), None));
        }
        Err(e) => return Err(io_error("inspect", target, e)),
    };
    let target = if meta.file_type().is_symlink() {
        match std::fs::canonicalize(target) {
            Ok(real) if real.is_dir() => real,
            _ => return Err(exists()),
        }
    } else if meta.is_dir() && target.file_name().is_none() {
        // `.` or `dir/..`: the directory's own name is what gets replaced.
        std::fs::canonicalize(target).map_err(|e| io_error("resolve", target, e))?
    } else if meta.is_dir() {
        target.to_path_buf()
    } else {
        return Err(exists());
    };
    let mut entries = std::fs::read_dir(&target).map_err(|e| io_error("read", &target, e))?;
    if entries.next().is_some() {
        return Err(exists());
    }
    let parent = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let inner = std::fs::metadata(&target).map_err(|e| io_error("inspect", &target, e))?;
    let outer = std::fs::metadata(parent).map_err(|e| io_error("inspect", parent, e))?;
    if inner.dev() != outer.dev() {
        let e = std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "a mount point cannot be replaced; name a directory inside it",
        );
        return Err(io_error(operation, &target, e));
    }
    let mode = inner.permissions().mode() & 0o7777;
    Ok((target, Some(mode)))
}

/// `.NAME` then `mark` (`.ocikit-staging-`), with at most [`STAGING_NAME_MAX`] bytes of
/// the name.
fn staging_prefix(name: &OsStr, mark: &str) -> OsString {
    let bytes = name.as_bytes();
    let mut prefix = b".".to_vec();
    prefix.extend_from_slice(bytes.get(..STAGING_NAME_MAX).unwrap_or(bytes));
    prefix.extend_from_slice(mark.as_bytes());
    OsString::from_vec(prefix)
}

/// Makes a directory `prefix…` in `base` and takes the lock of its `lock` file.
fn make_locked(base: &Path, prefix: &OsStr, target: &Path) -> Result<(PathBuf, File)> {
    for _ in 0..STAGING_ATTEMPTS {
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .rand_bytes(12)
            .tempdir_in(base)
            .map_err(|e| io_error("create a staging directory in", base, e))?
            .keep();
        match claim(&dir) {
            Ok(Some(lock)) => return Ok((dir, lock)),
            // A cleaner (another run for this target) took it for stale in the moment
            // before it was locked, and removes it: make another.
            Ok(None) => continue,
            Err(e) => {
                let _ = remove_tree(&dir);
                return Err(io_error("lock", &dir.join(STAGING_LOCK), e));
            }
        }
    }
    let e = std::io::Error::new(
        std::io::ErrorKind::WouldBlock,
        "every staging directory made was claimed by another process",
    );
    Err(io_error("stage", target, e))
}

/// What follows the name in the names of scratch directories.
const SCRATCH_MARK: &str = ".ocikit-scratch-";

/// A scratch directory beside a path on a local filesystem (on the same filesystem, so files
/// can be hard-linked or renamed from it to the path), for work that must not be seen there:
/// a copy's intermediate layouts. Named `.NAME.ocikit-scratch-RANDOM` in the path's parent
/// (or nearest existing ancestor); it holds a `lock` file, locked (`flock`) while this value
/// lives, and the work in [`Scratch::path`]. Dropping it removes it, on the dropping thread
/// (as `tempfile::TempDir` does). A scratch directory left by a killed process is found by
/// its lock, which nobody holds, and removed by the next [`Scratch::near`] for the same path;
/// one in use is left alone. See the [`staging`](self) mechanism this shares.
#[derive(Debug)]
pub struct Scratch {
    /// The scratch directory.
    dir: PathBuf,
    /// The locked `lock` file.
    lock: Option<File>,
}

impl Scratch {
    /// Makes a scratch directory beside `path` (which need not exist), after removing the
    /// stale ones of killed processes for the same path.
    pub async fn near(path: impl AsRef<Path>) -> Result<Scratch> {
        let path = path.as_ref().to_path_buf();
        tokio::task::spawn_blocking(move || Scratch::near_blocking(&path))
            .await
            .map_err(crate::bridge::join_error)?
    }

    fn near_blocking(path: &Path) -> Result<Scratch> {
        let path = match path.file_name() {
            Some(_) => path.to_path_buf(),
            // `.` or `dir/..`: named by what it resolves to.
            None => std::fs::canonicalize(path).map_err(|e| io_error("resolve", path, e))?,
        };
        let no_name = || {
            let e = std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the path does not end in a name",
            );
            io_error("make scratch space for", &path, e)
        };
        let mut child: &Path = &path;
        let (base, name) = loop {
            let name = child.file_name().ok_or_else(no_name)?;
            match child.parent() {
                Some(p) if p.as_os_str().is_empty() => break (PathBuf::from("."), name),
                None => break (PathBuf::from("."), name),
                Some(p) if p.is_dir() => break (p.to_path_buf(), name),
                Some(p) => child = p,
            }
        };
        let prefix = staging_prefix(name, SCRATCH_MARK);
        remove_stale(&base, &prefix);
        let (dir, lock) = make_locked(&base, &prefix, &path)?;
        let scratch = Scratch {
            dir,
            lock: Some(lock),
        };
        let work = scratch.path();
        std::fs::create_dir(&work).map_err(|e| io_error("create", &work, e))?;
        Ok(scratch)
    }

    /// The directory to work in (inside the scratch directory, beside its lock file).
    pub fn path(&self) -> PathBuf {
        self.dir.join("scratch")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(lock) = self.lock.take() {
            let _ = remove_tree(&self.dir);
            drop(lock);
        }
    }
}

/// Removes the stale staging directories (`prefix…`) in `parent`: those whose lock no
/// process holds. Best effort: what cannot be removed now is tried again next time.
fn remove_stale(parent: &Path, prefix: &OsStr) {
    remove_stale_carrying(parent, prefix, None);
}

/// The subdirectory of a staged layout ([`crate::Layout::create_staged`]).
const LAYOUT_INNER: &str = "layout";
/// Where a layout's store keeps partial downloads ([`ocikit_store::fs::Partials`]).
const PARTIALS: &str = ".ocikit/partial";

/// [`remove_stale`], first moving the partial downloads of each stale staged layout into
/// the layout at `carry` (the first one's only, when several were left).
fn remove_stale_carrying(parent: &Path, prefix: &OsStr, carry: Option<&Path>) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    let me = rustix::process::geteuid().as_raw();
    for entry in entries.flatten() {
        if !entry.file_name().as_bytes().starts_with(prefix.as_bytes()) {
            continue;
        }
        let dir = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&dir) else {
            continue;
        };
        if !meta.is_dir() || meta.uid() != me {
            continue;
        }
        if let Ok(Some(lock)) = claim(&dir) {
            if let Some(carry) = carry {
                let from = dir.join(LAYOUT_INNER).join(PARTIALS);
                let to = carry.join(PARTIALS);
                if from.is_dir() && !to.exists() {
                    // Best effort: without them the pull only starts over.
                    if let Some(parent) = to.parent()
                        && std::fs::create_dir_all(parent).is_ok()
                    {
                        let _ = std::fs::rename(&from, &to);
                    }
                }
            }
            let _ = remove_tree(&dir);
            drop(lock);
        }
    }
}

/// Takes the lock of staging directory `dir` (creating its lock file if missing): `None`
/// when another process holds it, or when the directory was removed meanwhile (the lock
/// taken is then on a file no longer there).
fn claim(dir: &Path) -> std::io::Result<Option<File>> {
    use rustix::fs::{Mode, OFlags};
    let path = dir.join(STAGING_LOCK);
    let fd = rustix::fs::open(
        &path,
        OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_bits_truncate(0o600),
    );
    let file = match fd {
        Ok(fd) => File::from(fd),
        Err(rustix::io::Errno::NOENT) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
        Err(std::fs::TryLockError::Error(e)) => return Err(e),
    }
    let held = file.metadata()?;
    match std::fs::symlink_metadata(&path) {
        Ok(now) if now.dev() == held.dev() && now.ino() == held.ino() => Ok(Some(file)),
        _ => Ok(None),
    }
}

/// Removes the tree at `path`, making directories that a layer left without write or
/// search permission writable first (without following symbolic links); a tree already gone
/// is removed.
pub(crate) fn remove_tree(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(_) => {}
    }
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&dir) else {
            continue;
        };
        if !meta.is_dir() {
            continue;
        }
        let mode = meta.permissions().mode();
        if mode & 0o700 != 0o700 {
            let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode | 0o700));
        }
        if let Ok(entries) = std::fs::read_dir(&dir) {
            stack.extend(entries.flatten().map(|e| e.path()));
        }
    }
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}
