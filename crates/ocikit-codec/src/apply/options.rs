//! What [`apply_layer`](super::apply_layer) is told ([`ApplyOptions`] and its policies) and
//! what it reports ([`ApplyReport`]).

use ocikit_digest::Digest;

use super::idmap::IdMap;
use crate::Limits;

/// What to do with whiteouts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ApplyMode {
    /// Apply them: remove what they hide from the root (the default; a plain rootfs).
    #[default]
    Apply,
    /// Keep them as overlayfs does, for a snapshotter's upper directory: character devices
    /// 0:0 for whiteouts, an `overlay.opaque=y` xattr for opaque directories. Needs the
    /// privilege to make device nodes (and to set `trusted.*` xattrs, unless
    /// [`ApplyOptions::overlay_userxattr`]).
    Overlay,
}

/// What to do with character and block device entries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum DevicePolicy {
    /// Create them where permitted, skip them (counted in [`ApplyReport::devices_skipped`])
    /// where not: when not running as root, or when `mknod` is refused (a user namespace).
    /// The default.
    #[default]
    CreateOrSkip,
    /// Create them; fail when that is not permitted.
    Create,
    /// Never create them (counted in [`ApplyReport::devices_skipped`]).
    Skip,
    /// Refuse layers that have any ([`InvalidEntry::UnsupportedType`](crate::InvalidEntry::UnsupportedType)).
    Refuse,
}

/// Which extended attributes (PAX `SCHILY.xattr.*` records) to apply.
///
/// Never applied, whatever the policy: `trusted.overlay.*` and `user.overlay.*` (they would
/// steer a later overlay mount, SPEC C-W15) and `security.selinux` (a host label, set by the
/// runtime). Other `security.*` and unknown namespaces are not applied either. An attribute
/// the filesystem or the kernel refuses (not supported, not permitted, too big, invalid) is
/// skipped and counted in [`ApplyReport::xattrs_skipped`]. Attributes apply to regular files
/// and directories only (the kernel allows `user.*` on nothing else).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct XattrPolicy {
    /// `user.*` (default true).
    pub user: bool,
    /// `security.capability`: file capabilities (default false; needs privilege).
    pub capabilities: bool,
    /// `trusted.*` (default false; needs privilege).
    pub trusted: bool,
    /// `system.posix_acl_access` and `system.posix_acl_default` (default false).
    pub acls: bool,
    /// Values longer than this are skipped (default 64 KiB, the kernel's limit).
    pub max_value_len: usize,
}

impl Default for XattrPolicy {
    fn default() -> XattrPolicy {
        XattrPolicy::user()
    }
}

impl XattrPolicy {
    /// No extended attributes at all.
    pub fn none() -> XattrPolicy {
        XattrPolicy {
            user: false,
            capabilities: false,
            trusted: false,
            acls: false,
            max_value_len: 64 << 10,
        }
    }

    /// `user.*` only (the default).
    pub fn user() -> XattrPolicy {
        XattrPolicy {
            user: true,
            ..XattrPolicy::none()
        }
    }

    /// `user.*`, `security.capability`, `trusted.*` and POSIX ACLs: what a privileged
    /// unpacker that trusts the image applies.
    pub fn privileged() -> XattrPolicy {
        XattrPolicy {
            user: true,
            capabilities: true,
            trusted: true,
            acls: true,
            max_value_len: 64 << 10,
        }
    }

    /// This policy with `security.capability` on or off.
    pub fn with_capabilities(mut self, on: bool) -> XattrPolicy {
        self.capabilities = on;
        self
    }

    /// This policy with another value size cap.
    pub fn with_max_value_len(mut self, len: usize) -> XattrPolicy {
        self.max_value_len = len;
        self
    }

    /// Whether an attribute of this name is applied.
    pub fn allows(&self, name: &[u8]) -> bool {
        if name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.") {
            return false;
        }
        if name.starts_with(b"user.") {
            return self.user;
        }
        if name.starts_with(b"trusted.") {
            return self.trusted;
        }
        match name {
            b"security.capability" => self.capabilities,
            b"system.posix_acl_access" | b"system.posix_acl_default" => self.acls,
            _ => false,
        }
    }
}

/// Options for [`apply_layer`](super::apply_layer).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ApplyOptions {
    /// Whiteouts applied, or kept for overlayfs (default [`ApplyMode::Apply`]).
    pub mode: ApplyMode,
    /// Refuse what the spec forbids or parsers disagree on (default true); see the
    /// [module documentation](super) for what lenient mode accepts instead.
    pub strict: bool,
    /// Give entries their recorded owners (`None`, the default: when running as root, or
    /// when a [`uid_map`](Self::uid_map) or [`gid_map`](Self::gid_map) is set; never in
    /// [`rootless`](Self::rootless) mode).
    /// With `Some(true)` and no privilege, `chown` fails the layer.
    pub preserve_owner: Option<bool>,
    /// Drop setuid and setgid bits from non-directories (`None`, the default: when owners
    /// are not preserved, so that a file owned by the unpacking user does not become a
    /// setuid program of that user).
    pub strip_setid: Option<bool>,
    /// Device nodes (default [`DevicePolicy::CreateOrSkip`]).
    pub devices: DevicePolicy,
    /// Extended attributes (default [`XattrPolicy::user`]).
    pub xattrs: XattrPolicy,
    /// Entry count and per-entry metadata limits (the decompressed size is the decoder's).
    pub limits: Limits,
    /// The diffID the layer must have (the image config's `rootfs.diff_ids` entry); checked
    /// after the whole stream, trailing bytes included ([`Error::DiffIdMismatch`](crate::Error::DiffIdMismatch)).
    pub expected_diff_id: Option<Digest>,
    /// In [`ApplyMode::Overlay`], mark opaque directories with `user.overlay.opaque`
    /// instead of `trusted.overlay.opaque` (overlayfs mounted with `userxattr`, in a user
    /// namespace). Default false.
    pub overlay_userxattr: bool,
    /// Owners from the layer are translated through this map before they are applied
    /// (`None`, the default: kept as they are). An entry whose uid no range holds is
    /// refused before anything is made for it
    /// ([`InvalidEntry::UnmappedOwner`](crate::InvalidEntry::UnmappedOwner), as umoci
    /// refuses it), whether owners are applied or not; hardlinks (which have no owner of
    /// their own) and whiteouts are not checked. Setting a map also makes
    /// [`preserve_owner`](Self::preserve_owner)'s default "yes": as a non-root user a map
    /// onto one's own ids (`0:$(id -u):1`) works; onto others' ids `chown` fails the layer.
    /// Not consulted in [`rootless`](Self::rootless) mode (nothing is chowned there).
    pub uid_map: Option<IdMap>,
    /// The same for group ids.
    pub gid_map: Option<IdMap>,
    /// Unpack as an unprivileged user, as `umoci unpack --rootless` does (default false):
    ///
    /// - no owner is set: everything belongs to the unpacking user
    ///   ([`preserve_owner`](Self::preserve_owner) and the maps are not used);
    /// - the layer's owner of each regular file and directory, when not `0:0`, is recorded
    ///   in its [`ROOTLESS_OWNER_XATTR`](super::ROOTLESS_OWNER_XATTR) xattr (see
    ///   [`rootless_owner_record`](super::rootless_owner_record)), where umoci records it; a
    ///   filesystem that refuses it counts in [`ApplyReport::xattrs_skipped`]. Symlinks and
    ///   FIFOs cannot hold `user.*` xattrs, so theirs are not recorded. The layer's own
    ///   `user.rootlesscontainers` attributes are dropped;
    /// - extended attributes are limited to `user.*` (of what [`xattrs`](Self::xattrs)
    ///   allows);
    /// - setuid and setgid bits are dropped from non-directories unless
    ///   [`strip_setid`](Self::strip_setid) is `Some(false)`. umoci keeps them; ocikit does
    ///   not by default, since the files now belong to the unpacking user, and a setuid
    ///   program of that user lets anyone who can run it act as that user.
    ///
    /// Devices follow [`devices`](Self::devices); the [`rootless`](Self::rootless) preset
    /// skips them ([`DevicePolicy::Skip`], counted). umoci puts an empty regular file in
    /// each device's place instead; ocikit never does (SPEC C-S01: a later diff or repack
    /// would take the stand-in for a real file).
    pub rootless: bool,
    /// Resolve with the `O_NOFOLLOW` component walk even where `openat2` works (tests).
    #[doc(hidden)]
    pub portable_resolver: bool,
}

impl Default for ApplyOptions {
    fn default() -> ApplyOptions {
        ApplyOptions {
            mode: ApplyMode::Apply,
            strict: true,
            preserve_owner: None,
            strip_setid: None,
            devices: DevicePolicy::CreateOrSkip,
            xattrs: XattrPolicy::user(),
            limits: Limits::default(),
            expected_diff_id: None,
            overlay_userxattr: false,
            uid_map: None,
            gid_map: None,
            rootless: false,
            portable_resolver: false,
        }
    }
}

impl ApplyOptions {
    /// The defaults: strict, whiteouts applied, owners kept when root.
    pub fn new() -> ApplyOptions {
        ApplyOptions::default()
    }

    /// The defaults for an unprivileged user, as `umoci unpack --rootless`:
    /// [`rootless`](Self::rootless) on, devices skipped ([`DevicePolicy::Skip`], counted in
    /// [`ApplyReport::devices_skipped`]).
    pub fn rootless() -> ApplyOptions {
        ApplyOptions::default()
            .with_rootless(true)
            .with_devices(DevicePolicy::Skip)
    }

    /// These options with [`rootless`](Self::rootless) on or off (devices are left to
    /// [`with_devices`](Self::with_devices)).
    pub fn with_rootless(mut self, on: bool) -> ApplyOptions {
        self.rootless = on;
        self
    }

    /// These options with another [`uid_map`](Self::uid_map).
    pub fn with_uid_map(mut self, map: Option<IdMap>) -> ApplyOptions {
        self.uid_map = map;
        self
    }

    /// These options with another [`gid_map`](Self::gid_map).
    pub fn with_gid_map(mut self, map: Option<IdMap>) -> ApplyOptions {
        self.gid_map = map;
        self
    }

    /// These options with another [`mode`](Self::mode).
    pub fn with_mode(mut self, mode: ApplyMode) -> ApplyOptions {
        self.mode = mode;
        self
    }

    /// These options, strict or lenient.
    pub fn with_strict(mut self, strict: bool) -> ApplyOptions {
        self.strict = strict;
        self
    }

    /// These options with owners kept or not (`None`: when running as root).
    pub fn with_preserve_owner(mut self, preserve: Option<bool>) -> ApplyOptions {
        self.preserve_owner = preserve;
        self
    }

    /// These options with setuid and setgid bits dropped or not (`None`: when owners are
    /// not preserved).
    pub fn with_strip_setid(mut self, strip: Option<bool>) -> ApplyOptions {
        self.strip_setid = strip;
        self
    }

    /// These options with another [`DevicePolicy`].
    pub fn with_devices(mut self, devices: DevicePolicy) -> ApplyOptions {
        self.devices = devices;
        self
    }

    /// These options with another [`XattrPolicy`].
    pub fn with_xattrs(mut self, xattrs: XattrPolicy) -> ApplyOptions {
        self.xattrs = xattrs;
        self
    }

    /// These options with other [`Limits`].
    pub fn with_limits(mut self, limits: Limits) -> ApplyOptions {
        self.limits = limits;
        self
    }

    /// These options with a diffID to check.
    pub fn with_expected_diff_id(mut self, diff_id: Option<Digest>) -> ApplyOptions {
        self.expected_diff_id = diff_id;
        self
    }

    /// These options with [`overlay_userxattr`](Self::overlay_userxattr) on or off.
    pub fn with_overlay_userxattr(mut self, on: bool) -> ApplyOptions {
        self.overlay_userxattr = on;
        self
    }

    #[doc(hidden)]
    pub fn with_portable_resolver(mut self, on: bool) -> ApplyOptions {
        self.portable_resolver = on;
        self
    }
}

/// What [`apply_layer`](super::apply_layer) did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ApplyReport {
    /// Tar entries read (extension headers not counted; skipped entries and whiteouts
    /// counted).
    pub entries: u64,
    /// Regular files written.
    pub files: u64,
    /// Directory entries applied (created or merged).
    pub directories: u64,
    /// Symlinks created.
    pub symlinks: u64,
    /// Hardlinks created.
    pub hardlinks: u64,
    /// Device nodes and FIFOs created.
    pub special_files: u64,
    /// Whiteouts applied (or, in overlay mode, kept), opaque ones included.
    pub whiteouts: u64,
    /// Device entries not created ([`DevicePolicy`]).
    pub devices_skipped: u64,
    /// Entries skipped: AUFS metadata, and in lenient mode unsupported types and entries
    /// below `.wh.` directories.
    pub entries_skipped: u64,
    /// Extended attributes not applied although the policy allows them (refused by the
    /// filesystem or the kernel, too big, or on an entry that cannot hold them).
    pub xattrs_skipped: u64,
    /// Bytes of regular-file content written.
    pub content_bytes: u64,
    /// Size of the uncompressed tar stream, trailing bytes included.
    pub tar_size: u64,
    /// Digest of the uncompressed tar stream (the layer's diffID): SHA-256, or the
    /// algorithm of [`ApplyOptions::expected_diff_id`].
    pub diff_id: Digest,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xattr_allow_list() {
        let user = XattrPolicy::user();
        assert!(user.allows(b"user.x"));
        assert!(!user.allows(b"user.overlay.opaque"));
        assert!(!user.allows(b"trusted.overlay.opaque"));
        assert!(!user.allows(b"security.capability"));
        assert!(!user.allows(b"trusted.x"));
        let all = XattrPolicy::privileged();
        assert!(all.allows(b"security.capability"));
        assert!(all.allows(b"trusted.x"));
        assert!(all.allows(b"system.posix_acl_access"));
        assert!(!all.allows(b"security.selinux"));
        assert!(!all.allows(b"trusted.overlay.redirect"));
        assert!(!all.allows(b"security.ima"));
        assert!(!XattrPolicy::none().allows(b"user.x"));
    }
}
