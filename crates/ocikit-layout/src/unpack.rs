//! Unpacking an image into a root filesystem.
//!
//! [`unpack`] resolves the platform ([`crate::platform::resolve`]), checks that layers,
//! `rootfs.diff_ids` and history agree, refuses layer media types it cannot decode before
//! touching the root, then applies every layer in order with [`ocikit_codec`]'s [`Decoder`]
//! and [`apply_layer`] on a blocking thread, each checked three ways:
//!
//! - the blob's bytes against the layer's digest and size (a blob corrupted in the store
//!   fails as [`ocikit_store::Error::DigestMismatch`] or `SizeMismatch`, even when the
//!   decompressor noticed first);
//! - its uncompressed content against the config's diffID
//!   ([`ocikit_codec::Error::DiffIdMismatch`]);
//! - everything the applier's hardening checks.
//!
//! A failing layer is [`Error::Layer`], naming the layer's digest, with the cause as its
//! source. Layers under a digest algorithm ocikit cannot compute are refused
//! ([`Error::Unverifiable`]) before the root is touched.
//!
//! Two calls, for two kinds of callers:
//!
//! - [`unpack_staged`] is all or nothing: it unpacks into a staging directory beside the
//!   target and renames the finished tree into place only when every layer was applied and
//!   verified; on failure nothing is left (see its documentation for how the staging
//!   directories of killed processes are found and removed). `ocikit unpack` uses it.
//! - [`unpack`] works in place, for callers who manage rollback themselves (a snapshotter
//!   that discards its directory, a test): as with [`apply_layer`], on failure the root
//!   holds the layers applied so far, and a mismatch found at the end of a layer (its blob
//!   digest or diffID) comes after all its files were written.
//!
//! Blobs are read from the store's local file where it has one (a filesystem layout, read
//! with positioned reads on the blocking thread), otherwise streamed from the async store
//! through a bounded channel that reads ahead while the blocking thread decompresses.
//! Progress is reported as [`Event`]s of [`Operation::Unpack`], in compressed bytes.
//!
//! [`Decoder`]: ocikit_codec::compression::Decoder
//! [`apply_layer`]: ocikit_codec::apply::apply_layer
//! [`Event`]: crate::Event

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ocikit_codec::apply::{ApplyOptions, ApplyReport, apply_blob};
use ocikit_codec::compression::compression_of;
use ocikit_digest::oci_spec::image::{Descriptor, Platform};
use ocikit_digest::{Digest, descriptor};

use crate::platform::{PlatformQuery, resolve};
use crate::progress::{Operation, Progress};
use crate::source;
use crate::{Error, Layout, Result};

/// How often (in compressed bytes) progress is reported while a layer is applied.
pub const PROGRESS_INTERVAL: u64 = 1 << 20;

/// Options for [`unpack`].
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct UnpackOptions {
    /// The platform to unpack (default: the host's).
    pub platform: PlatformQuery,
    /// How layers are applied: whiteout mode, owners, devices, xattrs, limits (the limits
    /// also bound decompression). The expected diffID is set for each layer from the config.
    pub apply: ApplyOptions,
    /// Where progress events go (default: nowhere).
    pub progress: Progress,
}

impl UnpackOptions {
    /// The defaults.
    pub fn new() -> UnpackOptions {
        UnpackOptions::default()
    }

    /// These options for another platform.
    pub fn with_platform(mut self, platform: PlatformQuery) -> UnpackOptions {
        self.platform = platform;
        self
    }

    /// These options with other [`ApplyOptions`].
    pub fn with_apply_options(mut self, apply: ApplyOptions) -> UnpackOptions {
        self.apply = apply;
        self
    }

    /// These options reporting progress to `progress`.
    pub fn with_progress(mut self, progress: Progress) -> UnpackOptions {
        self.progress = progress;
        self
    }
}

/// What [`unpack`] did.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct UnpackReport {
    /// The image manifest unpacked (with its platform).
    pub manifest: Descriptor,
    /// The image's platform, as its config says.
    pub platform: Platform,
    /// One report per layer, in order.
    pub layers: Vec<ApplyReport>,
}

/// Unpacks the image `descriptor` points at (a manifest, or an index resolved for
/// `options.platform`) into `root`, which is created if missing, in place: on failure `root`
/// holds what was applied so far. [`unpack_staged`] is the all-or-nothing variant; see the
/// [module documentation](self).
pub async fn unpack(
    layout: &Layout,
    descriptor: &Descriptor,
    root: impl AsRef<Path>,
    options: &UnpackOptions,
) -> Result<UnpackReport> {
    let root = root.as_ref().to_path_buf();
    let image = resolve(layout, descriptor, &options.platform).await?;
    let config_digest = image.config_digest()?;
    let layers = image.manifest.layers().clone();
    image.config.check_layers(&config_digest, layers.len())?;
    let diff_ids = image.config.diff_ids();
    let mut digests = Vec::with_capacity(layers.len());
    for layer in &layers {
        let media_type = layer.media_type().to_string();
        if compression_of(&media_type).is_err() {
            return Err(Error::UnsupportedMediaType {
                media_type,
                operation: "unpack",
            });
        }
        let digest = descriptor::digest_of(layer).map_err(|e| Error::InvalidDocument {
            digest: config_digest.clone(),
            reason: "invalid layer descriptor".into(),
            source: Some(Box::new(e.into())),
        })?;
        if !digest.is_supported() {
            return Err(Error::Unverifiable { digest });
        }
        digests.push(digest);
    }
    tokio::fs::create_dir_all(&root)
        .await
        .map_err(|e| Error::Io {
            operation: "create",
            path: root.clone(),
            source: e,
        })?;
    let mut reports = Vec::with_capacity(layers.len());
    for ((layer, digest), diff_id) in layers.iter().zip(digests).zip(diff_ids) {
        let report = apply_one(layout, layer, &digest, diff_id, &root, options)
            .await
            .map_err(|e| Error::Layer {
                digest,
                source: Box::new(e),
            })?;
        reports.push(report);
    }
    Ok(UnpackReport {
        platform: image.config.platform(),
        manifest: image.descriptor,
        layers: reports,
    })
}

/// [`unpack`] for the image a tag points at.
pub async fn unpack_tag(
    layout: &Layout,
    tag: &str,
    root: impl AsRef<Path>,
    options: &UnpackOptions,
) -> Result<UnpackReport> {
    let descriptor = layout.resolve(tag).await?;
    unpack(layout, &descriptor, root, options).await
}

async fn apply_one(
    layout: &Layout,
    layer: &Descriptor,
    digest: &Digest,
    diff_id: Digest,
    root: &Path,
    options: &UnpackOptions,
) -> Result<ApplyReport> {
    let root = root.to_path_buf();
    let media_type = layer.media_type().to_string();
    let apply = options.apply.clone().with_expected_diff_id(Some(diff_id));
    // Decompression (and the blob's digest) on a second thread, the file-system work on
    // the blocking one: `apply_blob`'s pipeline.
    source::read_verified(
        layout.store(),
        digest,
        layer.size(),
        Operation::Unpack,
        &options.progress,
        move |blob| apply_blob(&root, blob, &media_type, &apply).map_err(Error::Codec),
    )
    .await
}

/// The file in a staging directory whose `flock` says that the unpack using it is alive.
const STAGING_LOCK: &str = "lock";
/// The directory in a staging directory that becomes the target.
const STAGING_ROOT: &str = "rootfs";
/// What follows the target's name in the name of its staging directories.
const STAGING_MARK: &str = ".ocikit-staging-";
/// The longest part of a target's name that goes into its staging directories' names (the
/// rest of the name must fit in `NAME_MAX`).
const STAGING_NAME_MAX: usize = 200;
/// How often a fresh staging directory is made when a cleaner claimed the previous one.
const STAGING_ATTEMPTS: usize = 16;

/// Unpacks the image `descriptor` points at into `target`, all or nothing: afterwards
/// `target` holds the whole image, or it is as it was.
///
/// This is the call for callers who do not manage rollback themselves (`ocikit unpack`
/// uses it); [`unpack`] applies layers in place and leaves what it applied when it fails.
///
/// `target` must not exist, or be an empty directory (a symbolic link to one is followed;
/// a mount point is refused, as it cannot be replaced by a rename); anything else is
/// [`Error::TargetExists`], and missing parent directories are created. The layers are
/// applied, exactly as [`unpack`] applies them, into a staging directory beside `target`,
/// in the same parent directory and so on the same filesystem, named
/// `.NAME.ocikit-staging-RANDOM` for a target named `NAME`. Only after every layer was
/// applied and every blob digest and diffID matched is the filesystem synced (`syncfs`)
/// and the tree renamed into place, one atomic `rename` (which replaces an empty directory);
/// the parent directory is then synced. On any failure, or when the returned future is
/// dropped, the staging directory is removed.
///
/// A process killed while unpacking leaves its staging directory behind; the next
/// `unpack_staged` of the same target removes it. Each staging directory holds a `lock`
/// file on which its unpack holds an exclusive `flock` from the moment it is made until
/// it is gone; the kernel releases the lock when the process dies, however it dies, so a
/// staging directory whose lock can be taken is stale, and one whose lock is held belongs
/// to an unpack still running (of the same target, perhaps in another process), which is
/// left alone. Only directories of the same owner as this process are touched. This relies
/// on `flock` working on the target's filesystem, as it does on local ones.
pub async fn unpack_staged(
    layout: &Layout,
    descriptor: &Descriptor,
    target: impl AsRef<Path>,
    options: &UnpackOptions,
) -> Result<UnpackReport> {
    let target = target.as_ref().to_path_buf();
    let staging = tokio::task::spawn_blocking(move || Staging::prepare(&target))
        .await
        .map_err(crate::bridge::join_error)??;
    let unpacked = unpack(layout, descriptor, staging.root(), options).await;
    let committed = tokio::task::spawn_blocking(move || match unpacked {
        Ok(report) => staging.commit().map(|()| report),
        Err(e) => {
            staging.discard();
            Err(e)
        }
    });
    committed.await.map_err(crate::bridge::join_error)?
}

/// [`unpack_staged`] for the image a tag points at.
pub async fn unpack_tag_staged(
    layout: &Layout,
    tag: &str,
    target: impl AsRef<Path>,
    options: &UnpackOptions,
) -> Result<UnpackReport> {
    let descriptor = layout.resolve(tag).await?;
    unpack_staged(layout, &descriptor, target, options).await
}

fn io_error(operation: &'static str, path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        operation,
        path: path.to_path_buf(),
        source,
    }
}

/// A staging directory of [`unpack_staged`], locked while this value lives; removed when it
/// is dropped unless it was committed.
struct Staging {
    /// The staging directory.
    dir: PathBuf,
    /// The target, and its parent directory.
    target: PathBuf,
    parent: PathBuf,
    /// The locked `lock` file (`None` once the directory is gone).
    lock: Option<File>,
}

impl Staging {
    /// Checks `target`, removes its stale staging directories and makes a new one, locked.
    fn prepare(target: &Path) -> Result<Staging> {
        let target = check_target(target)?;
        let no_name = || {
            let e = std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the path does not end in a name",
            );
            io_error("unpack into", &target, e)
        };
        let name = target.file_name().ok_or_else(no_name)?;
        let parent = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&parent).map_err(|e| io_error("create", &parent, e))?;
        let prefix = staging_prefix(name);
        remove_stale(&parent, &prefix);
        for _ in 0..STAGING_ATTEMPTS {
            let dir = tempfile::Builder::new()
                .prefix(&prefix)
                .rand_bytes(12)
                .tempdir_in(&parent)
                .map_err(|e| io_error("create a staging directory in", &parent, e))?
                .keep();
            match claim(&dir) {
                Ok(Some(lock)) => {
                    return Ok(Staging {
                        dir,
                        target,
                        parent,
                        lock: Some(lock),
                    });
                }
                // A cleaner (another unpack of this target) took it for stale in the
                // moment before it was locked, and removes it: make another.
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
        Err(io_error("stage", &target, e))
    }

    /// Where the layers go.
    fn root(&self) -> PathBuf {
        self.dir.join(STAGING_ROOT)
    }

    /// Syncs the staged tree, renames it into place, syncs the parent and removes what is
    /// left of the staging directory.
    fn commit(mut self) -> Result<()> {
        let root = self.root();
        let dir = File::open(&root).map_err(|e| io_error("open", &root, e))?;
        rustix::fs::syncfs(&dir).map_err(|e| io_error("sync", &root, e.into()))?;
        drop(dir);
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
        // a later unpack removes if this fails.
        self.remove();
        Ok(())
    }

    /// Removes the staging directory (what a failed unpack does).
    fn discard(mut self) {
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
        // The unpack was dropped: remove the staging directory, off the async threads when
        // there are some.
        let mut rest = Staging {
            dir: std::mem::take(&mut self.dir),
            target: std::mem::take(&mut self.target),
            parent: std::mem::take(&mut self.parent),
            lock: self.lock.take(),
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn_blocking(move || rest.remove());
            }
            Err(_) => rest.remove(),
        }
    }
}

/// The target to rename the staged tree onto: `target` itself when it does not exist, or
/// the empty directory it is (or links to).
fn check_target(target: &Path) -> Result<PathBuf> {
    let exists = || Error::TargetExists {
        path: target.to_path_buf(),
    };
    let meta = match std::fs::symlink_metadata(target) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(target.to_path_buf()),
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
            "a mount point cannot be replaced; unpack into a directory inside it",
        );
        return Err(io_error("unpack into", &target, e));
    }
    Ok(target)
}

/// `.NAME.ocikit-staging-`, with at most [`STAGING_NAME_MAX`] bytes of the name.
fn staging_prefix(name: &OsStr) -> OsString {
    let bytes = name.as_bytes();
    let mut prefix = b".".to_vec();
    prefix.extend_from_slice(bytes.get(..STAGING_NAME_MAX).unwrap_or(bytes));
    prefix.extend_from_slice(STAGING_MARK.as_bytes());
    OsString::from_vec(prefix)
}

/// Removes the stale staging directories (`prefix…`) in `parent`: those whose lock no
/// process holds. Best effort: what cannot be removed now is tried again next time.
fn remove_stale(parent: &Path, prefix: &OsStr) {
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
/// search permission writable first (without following symbolic links).
fn remove_tree(path: &Path) -> std::io::Result<()> {
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
    std::fs::remove_dir_all(path)
}
