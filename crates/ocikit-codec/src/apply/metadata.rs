//! Metadata of the entries made: modes, times, extended attributes.

use std::os::fd::BorrowedFd;

use rustix::fs::{Timespec, Timestamps, XattrFlags, fremovexattr, fsetxattr};
use rustix::io::Errno;

use super::Applier;
use super::idmap::{ROOTLESS_OWNER_XATTR, rootless_owner_record};
use crate::Result;
use crate::tar::Header;

/// The umask, from `/proc/self/status` (Linux 4.7); `None` when it cannot be read.
pub(super) fn read_umask() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Umask:"))?;
    u32::from_str_radix(line["Umask:".len()..].trim(), 8).ok()
}

impl Applier<'_> {
    pub(super) fn mode_for(&self, mode: u32, is_dir: bool) -> u32 {
        let mode = mode & 0o7777;
        if self.strip_setid && !is_dir {
            mode & !0o6000
        } else {
            mode
        }
    }

    pub(super) fn timestamps(mtime: (i64, u32)) -> Timestamps {
        let ts = Timespec {
            tv_sec: mtime.0,
            tv_nsec: i64::from(mtime.1),
        };
        Timestamps {
            last_access: ts,
            last_modification: ts,
        }
    }

    pub(super) fn set_xattrs(
        &mut self,
        fd: BorrowedFd<'_>,
        header: &Header,
        path: &[u8],
    ) -> Result<()> {
        let policy = self.xattrs;
        for (key, value) in &header.xattrs {
            if !self.xattr_allowed(key) {
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

    /// Whether the layer's attribute `key` is applied: the policy's allow-list, less the
    /// owner record in rootless mode (ours replaces it).
    fn xattr_allowed(&self, key: &[u8]) -> bool {
        self.xattrs.allows(key)
            && !(self.options.rootless && key == ROOTLESS_OWNER_XATTR.as_bytes())
    }

    pub(super) fn allowed_xattrs(&self, header: &Header) -> u64 {
        header
            .xattrs
            .iter()
            .filter(|(k, _)| self.xattr_allowed(k))
            .count() as u64
    }

    /// In rootless mode, records the layer's owner of a regular file or directory in
    /// [`ROOTLESS_OWNER_XATTR`] (or removes a record a lower layer left on a merged
    /// directory now owned by `0:0`). Refusals count as skipped attributes.
    pub(super) fn record_owner(
        &mut self,
        fd: BorrowedFd<'_>,
        owner: (u32, u32),
        path: &[u8],
        merged: bool,
    ) -> Result<()> {
        if !self.options.rootless {
            return Ok(());
        }
        let result = match rootless_owner_record(owner.0, owner.1) {
            Some(value) => fsetxattr(fd, ROOTLESS_OWNER_XATTR, &value, XattrFlags::empty()),
            None if merged => match fremovexattr(fd, ROOTLESS_OWNER_XATTR) {
                Err(Errno::NODATA | Errno::OPNOTSUPP) => Ok(()),
                other => other,
            },
            None => Ok(()),
        };
        match result {
            Ok(()) => Ok(()),
            Err(
                Errno::PERM
                | Errno::OPNOTSUPP
                | Errno::TOOBIG
                | Errno::RANGE
                | Errno::INVAL
                | Errno::NOSPC
                | Errno::ACCESS,
            ) => {
                self.counts.xattrs_skipped += 1;
                Ok(())
            }
            Err(err) => Err(Self::io("setxattr", path, err)),
        }
    }
}
