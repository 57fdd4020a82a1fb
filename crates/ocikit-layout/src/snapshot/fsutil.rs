//! The snapshot store's file-system work: locks, atomic writes, removal, the whiteout form
//! probe, and files stored once.

use std::fs::{File, FileTimes, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use ocikit_digest::Hasher;

use super::WhiteoutForm;
use crate::staging::io_error;
use crate::{Error, Result};

/// Opens (creating) the lock file at `path` and takes its `flock`, exclusive or shared,
/// waiting for it.
pub(super) fn lock(path: &Path, exclusive: bool) -> Result<File> {
    let file = open_lock(path).map_err(|e| io_error("open", path, e))?;
    let locked = if exclusive {
        file.lock()
    } else {
        file.lock_shared()
    };
    locked.map_err(|e| io_error("lock", path, e))?;
    Ok(file)
}

/// Takes the exclusive `flock` of `path` if nobody holds it (`None` when someone does).
pub(super) fn try_lock(path: &Path) -> io::Result<Option<File>> {
    let file = open_lock(path)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

fn open_lock(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
}

/// Writes `bytes` to a new file at `path` and syncs it.
pub(super) fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = File::create(path).map_err(|e| io_error("create", path, e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| io_error("write", path, e))
}

/// Writes `bytes` to `path` atomically (temporary file, sync, rename), unless a file is
/// there already (the first writer wins).
pub(super) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut temp = tempfile::NamedTempFile::new_in(dir).map_err(|e| io_error("create", dir, e))?;
    temp.write_all(bytes)
        .and_then(|()| temp.as_file().sync_all())
        .map_err(|e| io_error("write", temp.path(), e))?;
    match temp.persist_noclobber(path) {
        Ok(_) => {}
        Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io_error("write", path, e.error)),
    }
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| io_error("sync", dir, e))
}

pub(super) use crate::staging::remove_tree;

/// [`WhiteoutForm::Device`] when this process can make a 0:0 character device and set
/// `trusted.overlay.opaque` in `dir`, else [`WhiteoutForm::Marker`].
pub(super) fn probe_form(dir: &Path) -> WhiteoutForm {
    let Ok(probe) = tempfile::Builder::new().prefix("probe.").tempdir_in(dir) else {
        return WhiteoutForm::Marker;
    };
    let device = rustix::fs::mknodat(
        rustix::fs::CWD,
        probe.path().join("whiteout"),
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::empty(),
        rustix::fs::makedev(0, 0),
    )
    .is_ok();
    let opaque = rustix::fs::lsetxattr(
        probe.path(),
        "trusted.overlay.opaque",
        b"y",
        rustix::fs::XattrFlags::empty(),
    )
    .is_ok();
    if device && opaque {
        WhiteoutForm::Device
    } else {
        WhiteoutForm::Marker
    }
}

/// What a sweep of the stored-once objects removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ObjectSweep {
    /// Objects removed (no snapshot linked to them any more).
    pub removed: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Objects kept.
    pub kept: u64,
}

/// Removes the objects under `objects` whose link count is one: no snapshot uses them.
pub(super) fn sweep_objects(objects: &Path) -> Result<ObjectSweep> {
    let mut sweep = ObjectSweep::default();
    let mut stack = vec![objects.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_error("read", &dir, e)),
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                stack.push(path);
            } else if meta.nlink() <= 1 {
                std::fs::remove_file(&path).map_err(|e| io_error("remove", &path, e))?;
                sweep.removed += 1;
                sweep.bytes += meta.len();
            } else {
                sweep.kept += 1;
            }
        }
    }
    Ok(sweep)
}

/// Replaces every non-empty regular file under `root` that has no other link by a hard
/// link to its object in `objects` (made from it when there is none yet). Directories keep
/// their times.
pub(super) fn share_files(root: &Path, objects: &Path) -> Result<()> {
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let dir_meta = std::fs::symlink_metadata(&dir).map_err(|e| io_error("inspect", &dir, e))?;
        let entries = std::fs::read_dir(&dir).map_err(|e| io_error("read", &dir, e))?;
        let mut changed = false;
        for entry in entries {
            let entry = entry.map_err(|e| io_error("read", &dir, e))?;
            let path = entry.path();
            let meta =
                std::fs::symlink_metadata(&path).map_err(|e| io_error("inspect", &path, e))?;
            if meta.is_dir() {
                stack.push(path);
            } else if meta.is_file() && meta.len() > 0 && meta.nlink() == 1 {
                changed |= share_one(&dir, &path, &meta, objects)?;
            }
        }
        if changed {
            let times = FileTimes::new()
                .set_accessed(
                    dir_meta
                        .accessed()
                        .map_err(|e| io_error("inspect", &dir, e))?,
                )
                .set_modified(
                    dir_meta
                        .modified()
                        .map_err(|e| io_error("inspect", &dir, e))?,
                );
            File::open(&dir)
                .and_then(|f| f.set_times(times))
                .map_err(|e| io_error("set the times of", &dir, e))?;
        }
    }
    Ok(())
}

/// The object of `path`: the SHA-256 of its content, and a digest of what its links share
/// (mode, owner, mtime, extended attributes).
fn object_path(path: &Path, meta: &std::fs::Metadata, objects: &Path) -> Result<PathBuf> {
    let mut content = Hasher::sha256();
    let mut file = File::open(path).map_err(|e| io_error("open", path, e))?;
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = file.read(&mut buf).map_err(|e| io_error("read", path, e))?;
        if n == 0 {
            break;
        }
        content.update(&buf[..n]);
    }
    let content = content.finish();
    let mut shared = Hasher::sha256();
    shared.update(
        format!(
            "{:o} {} {} {} {}\n",
            meta.mode(),
            meta.uid(),
            meta.gid(),
            meta.mtime(),
            meta.mtime_nsec()
        )
        .as_bytes(),
    );
    for (name, value) in xattrs(path).map_err(|e| io_error("read the xattrs of", path, e))? {
        shared.update(&(name.len() as u64).to_le_bytes());
        shared.update(&name);
        shared.update(&(value.len() as u64).to_le_bytes());
        shared.update(&value);
    }
    let shared = shared.finish();
    let (algorithm, hex) = content.path_components();
    let (_, meta_hex) = shared.path_components();
    Ok(objects
        .join(algorithm)
        .join(&hex[..2])
        .join(format!("{hex}-{}", &meta_hex[..16])))
}

/// Shares `path` (in `dir`) through its object; whether it was replaced by a link.
fn share_one(dir: &Path, path: &Path, meta: &std::fs::Metadata, objects: &Path) -> Result<bool> {
    let object = object_path(path, meta, objects)?;
    for _ in 0..2 {
        match std::fs::symlink_metadata(&object) {
            Ok(existing) if existing.is_file() && existing.len() == meta.len() => {
                let temp = dir.join(format!(
                    ".ocikit-share-{}",
                    object.file_name().and_then(|n| n.to_str()).unwrap_or("x")
                ));
                match std::fs::hard_link(&object, &temp) {
                    Ok(()) => {}
                    // Too many links, the object went, or the layer has a file of the
                    // temporary's name: keep this copy.
                    Err(e) if tolerable(&e) || e.kind() == io::ErrorKind::AlreadyExists => {
                        return Ok(false);
                    }
                    Err(e) => return Err(io_error("link", &temp, e)),
                }
                if let Err(e) = std::fs::rename(&temp, path) {
                    let _ = std::fs::remove_file(&temp);
                    return Err(io_error("replace", path, e));
                }
                return Ok(true);
            }
            Ok(_) => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if let Some(parent) = object.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| io_error("create", parent, e))?;
                }
                match std::fs::hard_link(path, &object) {
                    Ok(()) => return Ok(false),
                    // Another extraction stored it first: link to that one.
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                    Err(e) if tolerable(&e) => return Ok(false),
                    Err(e) => return Err(io_error("link", &object, e)),
                }
            }
            Err(e) => return Err(io_error("inspect", &object, e)),
        }
    }
    Ok(false)
}

/// Link errors after which the file simply keeps its own copy.
fn tolerable(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
        || e.raw_os_error() == Some(rustix::io::Errno::MLINK.raw_os_error())
        || e.raw_os_error() == Some(rustix::io::Errno::XDEV.raw_os_error())
}

/// The extended attributes of `path` (not following a symlink), sorted by name.
pub(super) fn xattrs(path: &Path) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut names = vec![0u8; 64 << 10];
    let n = match rustix::fs::llistxattr(path, &mut names[..]) {
        Ok(n) => n,
        Err(rustix::io::Errno::NOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    for name in names[..n].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let mut value = vec![0u8; 64 << 10];
        let len = rustix::fs::lgetxattr(path, name, &mut value[..]).map_err(io::Error::from)?;
        value.truncate(len);
        out.push((name.to_vec(), value));
    }
    out.sort();
    Ok(out)
}

/// An error as the crate reports it, for the extraction's own file-system work.
pub(super) fn io_at(operation: &'static str, path: &Path, e: io::Error) -> Error {
    io_error(operation, path, e)
}
