//! Whiteouts: names classified, lower content removed, overlayfs markers, and the
//! bookkeeping of what this layer wrote (which whiteouts spare).

use std::hash::{BuildHasher, Hasher as _};
use std::ops::Bound;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{
    FileType, Mode, OFlags, XattrFlags, fsetxattr, makedev, mkdirat, mknodat, openat,
};

use super::fs::Removed;
use crate::tar::{Header, Kind};
use crate::{InvalidEntry, Result};

use super::{Applier, ApplyMode, fs, join, split_parent};

/// What a layer entry's name says it is, by the whiteout rules of the image spec (see the
/// [module documentation](super)); [`classify_name`](super::classify_name) tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Class<'a> {
    /// An ordinary entry.
    Normal,
    /// `dir/.wh.name`: removes `dir/name` of lower layers.
    Whiteout {
        /// The directory (empty for the root), without a trailing `/`.
        dir: &'a [u8],
        /// The name removed.
        target: &'a [u8],
    },
    /// `dir/.wh..wh..opq`: removes everything `dir` held from lower layers.
    Opaque {
        /// The directory (empty for the root), without a trailing `/`.
        dir: &'a [u8],
    },
    /// `.wh..wh.*` AUFS metadata (or anything below it): skipped.
    Aufs,
    /// An entry below a `.wh.` directory component: skipped.
    BelowWhiteout,
}

/// Classifies a layer entry's name, normalised (no leading `/`, no `.`, `..` or empty
/// components, no trailing `/`); refuses a whiteout of an empty, `.` or `..` name with
/// [`InvalidEntry::BadWhiteoutTarget`].
pub fn classify(path: &[u8]) -> Result<Class<'_>, InvalidEntry> {
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

impl Applier<'_> {
    pub(super) fn written_or_above(&self, path: &[u8]) -> bool {
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
    pub(super) fn prefix_hashes<'a>(&self, path: &'a [u8]) -> impl Iterator<Item = u64> + 'a {
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
    pub(super) fn is_clean(&self, path: &[u8]) -> bool {
        !self.clean.is_empty() && self.prefix_hashes(path).any(|h| self.clean.contains(&h))
    }

    pub(super) fn mark_clean(&mut self, path: &[u8]) {
        if let Some(h) = self.prefix_hashes(path).last() {
            self.clean.insert(h);
            self.clean_paths.insert(path.into());
        }
    }

    /// Forgets what is known clean at or below `path` (something there is being replaced, or
    /// a symlink made: the path may now lead to lower content).
    pub(super) fn unclean(&mut self, path: &[u8]) {
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

    pub(super) fn mark_written(&mut self, path: &[u8]) {
        if !self.written.contains(path) {
            self.written.insert(path.into());
        }
    }
    pub(super) fn check_whiteout(&self, header: &Header) -> Result<()> {
        if self.options.strict && !(header.kind == Kind::File && header.size == 0) {
            return Err(Self::invalid(
                &header.name,
                InvalidEntry::WhiteoutNotEmptyFile,
            ));
        }
        Ok(())
    }
    pub(super) fn opaque_name(&self) -> &'static str {
        if self.options.overlay_userxattr {
            "user.overlay.opaque"
        } else {
            "trusted.overlay.opaque"
        }
    }

    pub(super) fn set_opaque(&self, fd: BorrowedFd<'_>, path: &[u8]) -> Result<()> {
        fsetxattr(fd, self.opaque_name(), b"y", XattrFlags::empty())
            .map_err(|e| Self::io("setxattr", path, e))
    }

    /// `dir/.wh.target`.
    pub(super) fn whiteout(&mut self, dir: &[u8], target: &[u8]) -> Result<()> {
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
        self.open_up(dir, &parent)?;
        if self.remove_lower(parent.fd.as_fd(), target, &path)? {
            self.root.invalidate();
        }
        Ok(())
    }

    /// `dir/.wh..wh..opq`.
    pub(super) fn opaque(&mut self, dir: &[u8]) -> Result<()> {
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
        self.open_up(dir, &handle)?;
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
    pub(super) fn remove_lower_children(&mut self, fd: OwnedFd, dir: &[u8]) -> Result<bool> {
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
    pub(super) fn remove_lower(
        &mut self,
        parent: BorrowedFd<'_>,
        name: &[u8],
        path: &[u8],
    ) -> Result<bool> {
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
        let fd = if self.options.rootless {
            let handle =
                fs::DirHandle::new(fd, Some(false)).map_err(|e| Self::io("stat", path, e))?;
            self.open_up(path, &handle)?;
            handle.fd
        } else {
            fd
        };
        let removed = self.remove_lower_children(fd, path)?;
        self.mark_clean(path);
        Ok(removed)
    }

    pub(super) fn overlay_whiteout(
        &mut self,
        dir: &[u8],
        target: &[u8],
        path: &[u8],
    ) -> Result<()> {
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
    pub(super) fn unmark_prefixes(&mut self, dir: &[u8]) -> Result<()> {
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
