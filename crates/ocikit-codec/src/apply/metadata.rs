//! Metadata of the entries made: modes, times, extended attributes.

use std::os::fd::BorrowedFd;

use rustix::fs::{Timespec, Timestamps, XattrFlags, fsetxattr};
use rustix::io::Errno;

use super::Applier;
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

    pub(super) fn allowed_xattrs(&self, header: &Header) -> u64 {
        header
            .xattrs
            .iter()
            .filter(|(k, _)| self.options.xattrs.allows(k))
            .count() as u64
    }
}
