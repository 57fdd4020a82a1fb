//! The handlers of each kind of entry: regular files, directories, symlinks, hardlinks,
//! devices and FIFOs.

use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};

use rustix::fs::{
    AtFlags, FileType, Gid, Mode, OFlags, Uid, chownat, fchmod, fchown, futimens, linkat, makedev,
    mkdirat, mknodat, openat, symlinkat, utimensat,
};
use rustix::io::Errno;

use super::whiteout::{Class, classify};
use super::{Applier, ApplyMode, DeferredDir, DevicePolicy, fs, normalize, rel, split_parent};
use crate::tar::{CopyError, Header, Kind, TarReader};
use crate::{Error, InvalidEntry, Result};

impl Applier<'_> {
    pub(super) fn file<R: Read>(
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
        // `user.*` xattrs need write permission: a read-only file gets them before its mode.
        let xattrs_first =
            mode & 0o200 == 0 && (self.options.rootless || !header.xattrs.is_empty());
        let exact = parent.plain_modes
            && mode & !0o777 == 0
            && !xattrs_first
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
        self.set_xattrs(fd.as_fd(), header, path)?;
        self.record_owner(fd.as_fd(), owner, path, false)?;
        if !exact {
            fchmod(&fd, Mode::from_raw_mode(mode)).map_err(|e| Self::io("chmod", path, e))?;
        }
        futimens(&fd, &Self::timestamps(header.mtime)).map_err(|e| Self::io("utimes", path, e))?;
        self.counts.files += 1;
        Ok(())
    }

    pub(super) fn directory(
        &mut self,
        header: &Header,
        path: &[u8],
        owner: (u32, u32),
    ) -> Result<()> {
        let (fd, created_over_marker, merged) = if path.is_empty() {
            let fd = openat(
                self.root.fd(),
                ".",
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| Self::io("open", path, e))?;
            (fd, false, true)
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
            (fd, was_marker, !created)
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
        self.record_owner(fd.as_fd(), owner, path, merged)?;
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
            mtime: Some(header.mtime),
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

    pub(super) fn symlink(
        &mut self,
        header: &Header,
        path: &[u8],
        owner: (u32, u32),
    ) -> Result<()> {
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

    pub(super) fn hardlink(&mut self, header: &Header, path: &[u8]) -> Result<()> {
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

    pub(super) fn special(
        &mut self,
        header: &Header,
        path: &[u8],
        owner: (u32, u32),
    ) -> Result<()> {
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
}
