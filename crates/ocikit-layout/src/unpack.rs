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
//! [`unpack_staged_from`] reads them from a [`LayerSource`] instead (a download applied as
//! it arrives), verified the same way.
//! Progress is reported as [`Event`]s of [`Operation::Unpack`], in compressed bytes.
//!
//! [`Decoder`]: ocikit_codec::compression::Decoder
//! [`apply_layer`]: ocikit_codec::apply::apply_layer
//! [`Event`]: crate::Event

use std::io::{self, Read};
use std::path::Path;
use std::sync::Arc;

use ocikit_codec::apply::{ApplyOptions, ApplyReport, DevicePolicy, IdMap, apply_blob};
use ocikit_codec::compression::compression_of;
use ocikit_digest::oci_spec::image::{Descriptor, Platform};
use ocikit_digest::{Digest, VerifyingReader, descriptor};

use crate::platform::{PlatformQuery, resolve};
use crate::progress::{Operation, Progress};
use crate::source;
use crate::staging::Staging;
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

    /// These options with layer uids translated through `map` (`umoci unpack --uid-map`):
    /// [`ApplyOptions::uid_map`], whose rules apply (an id outside the map fails the layer).
    /// As umoci does, the root directory then belongs to the host ids of the container's 0
    /// (unless a layer has an entry for it, or owners are not applied).
    pub fn with_uid_map(mut self, map: Option<IdMap>) -> UnpackOptions {
        self.apply = self.apply.with_uid_map(map);
        self
    }

    /// These options with layer gids translated through `map` (`umoci unpack --gid-map`):
    /// [`ApplyOptions::gid_map`].
    pub fn with_gid_map(mut self, map: Option<IdMap>) -> UnpackOptions {
        self.apply = self.apply.with_gid_map(map);
        self
    }

    /// These options unpacking as an unprivileged user (`umoci unpack --rootless`):
    /// [`ApplyOptions::rootless`] on, and device entries skipped ([`DevicePolicy::Skip`],
    /// counted; umoci makes empty files in their place, ocikit never does); `false` turns
    /// the mode off and leaves devices as they are.
    pub fn with_rootless(mut self, on: bool) -> UnpackOptions {
        self.apply = self.apply.with_rootless(on);
        if on {
            self.apply = self.apply.with_devices(DevicePolicy::Skip);
        }
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
    unpack_with(layout, descriptor, root.as_ref(), options, None).await
}

/// Where [`unpack_staged_from`] reads the layer blobs of an image whose manifest and config
/// are in the layout but whose layers are not (a registry download applied as it arrives).
pub trait LayerSource: Send + Sync {
    /// A reader of the blob of layer `index` (`digest`, `size` bytes). Called on a blocking
    /// thread, in layer order, each once the layer before was applied; the reader may block
    /// until more bytes arrive. Its bytes are verified against `digest` and `size` as they
    /// are read, exactly as a stored blob's are (unless [`LayerSource::verifies`] says the
    /// reader does it), and read to the end; an error the reader returns fails the layer.
    fn open(&self, index: usize, digest: &Digest, size: u64) -> io::Result<Box<dyn Read + Send>>;

    /// Whether the readers [`LayerSource::open`] returns verify the blob themselves: each
    /// ends (`Ok(0)`) only once the whole blob was checked against its `digest` and `size`,
    /// and fails instead when it did not match (a registry download that the client verifies
    /// as it arrives). Then the unpack does not hash the compressed bytes a second time: it
    /// counts them, reads every reader to its end before the layer counts as applied, and
    /// checks the size. The default, `false`: the unpack verifies digest and size itself.
    fn verifies(&self) -> bool {
        false
    }
}

async fn unpack_with(
    layout: &Layout,
    descriptor: &Descriptor,
    root: &Path,
    options: &UnpackOptions,
    source: Option<&Arc<dyn LayerSource>>,
) -> Result<UnpackReport> {
    let root = root.to_path_buf();
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
    for (index, ((layer, digest), diff_id)) in layers.iter().zip(digests).zip(diff_ids).enumerate()
    {
        let applied = match source {
            None => apply_one(layout, layer, &digest, diff_id, &root, options).await,
            Some(source) => {
                apply_from(source, index, layer, &digest, diff_id, &root, options).await
            }
        };
        let report = applied.map_err(|e| Error::Layer {
            digest,
            source: Box::new(e),
        })?;
        reports.push(report);
    }
    map_root_owner(&root, &options.apply).await?;
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

/// With a uid or gid map (and owners applied), the root itself gets the host ids of the
/// container's 0, as umoci gives it, unless a layer gave it an owner (an entry for `./`);
/// done last, so that a staging directory stays this process's while layers are applied.
async fn map_root_owner(root: &Path, apply: &ApplyOptions) -> Result<()> {
    if apply.rootless
        || apply.preserve_owner == Some(false)
        || (apply.uid_map.is_none() && apply.gid_map.is_none())
    {
        return Ok(());
    }
    let host_root = |map: &Option<IdMap>| map.as_ref().map_or(Some(0), |m| m.to_host(0));
    let (Some(uid), Some(gid)) = (host_root(&apply.uid_map), host_root(&apply.gid_map)) else {
        return Ok(());
    };
    let path = root.to_path_buf();
    tokio::task::spawn_blocking(move || {
        use std::os::unix::fs::MetadataExt;
        let st = std::fs::metadata(&path)?;
        let me = (
            rustix::process::geteuid().as_raw(),
            rustix::process::getegid().as_raw(),
        );
        if (st.uid(), st.gid()) == me && me != (uid, gid) {
            std::os::unix::fs::chown(&path, Some(uid), Some(gid))?;
        }
        Ok(())
    })
    .await
    .map_err(crate::bridge::join_error)?
    .map_err(|e| Error::Io {
        operation: "chown",
        path: root.to_path_buf(),
        source: e,
    })
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

/// [`apply_one`] with the blob read from `source` (verified here, as
/// [`source::read_verified`] verifies a stored one: digest and size, the rest drained, a
/// mismatch reported as the store's even when the decompressor noticed first; or, from a
/// source that [verifies](LayerSource::verifies) its own bytes, only counted).
async fn apply_from(
    source: &Arc<dyn LayerSource>,
    index: usize,
    layer: &Descriptor,
    digest: &Digest,
    diff_id: Digest,
    root: &Path,
    options: &UnpackOptions,
) -> Result<ApplyReport> {
    let root = root.to_path_buf();
    let media_type = layer.media_type().to_string();
    let apply = options.apply.clone().with_expected_diff_id(Some(diff_id));
    let (source, digest, size) = (Arc::clone(source), digest.clone(), layer.size());
    let progress = options.progress.clone();
    progress.emit(crate::Event::Started {
        operation: Operation::Unpack,
        digest: digest.clone(),
        size,
    });
    let done = digest.clone();
    let report = tokio::task::spawn_blocking(move || -> Result<ApplyReport> {
        let stream_error = |e: io::Error| Error::Store(ocikit_store::Error::Stream(e));
        let reader = source.open(index, &digest, size).map_err(stream_error)?;
        if source.verifies() {
            return apply_counted(reader, size, &root, &media_type, &apply);
        }
        let mut verifying = VerifyingReader::new(reader, digest.clone(), size)
            .map_err(|_| Error::Unverifiable { digest })?;
        let applied = apply_blob(&root, &mut verifying, &media_type, &apply).map_err(Error::Codec);
        let drained = io::copy(&mut verifying, &mut io::sink());
        if let Err(e) = &drained
            && let Some(mismatch) = e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<ocikit_digest::Error>())
        {
            return Err(Error::Store(match mismatch {
                ocikit_digest::Error::DigestMismatch { expected, actual } => {
                    ocikit_store::Error::DigestMismatch {
                        expected: expected.clone(),
                        actual: actual.clone(),
                    }
                }
                ocikit_digest::Error::SizeMismatch { expected, actual } => {
                    ocikit_store::Error::SizeMismatch {
                        expected: *expected,
                        actual: *actual,
                    }
                }
                _ => return Err(stream_error(io::Error::other(mismatch.to_string()))),
            }));
        }
        let report = applied?;
        drained.map_err(stream_error)?;
        if !verifying.is_verified() {
            return Err(stream_error(io::Error::new(
                io::ErrorKind::InvalidData,
                "the blob was not verified",
            )));
        }
        Ok(report)
    })
    .await
    .map_err(crate::bridge::join_error)??;
    progress.emit(crate::Event::Done {
        operation: Operation::Unpack,
        digest: done,
        bytes: size,
    });
    Ok(report)
}

/// [`apply_blob`] over the reader of a [`LayerSource`] that verifies its own bytes: the rest
/// drained after the applier stopped (so that the source's verdict on the whole blob is
/// always had), the source's error preferred to the applier's (which may only be a symptom
/// of bytes the source refused), and the byte count checked against `size`.
fn apply_counted(
    reader: Box<dyn Read + Send>,
    size: u64,
    root: &Path,
    media_type: &str,
    apply: &ApplyOptions,
) -> Result<ApplyReport> {
    let mut counted = Counted {
        inner: reader,
        bytes: 0,
    };
    let applied = apply_blob(root, &mut counted, media_type, apply).map_err(Error::Codec);
    let drained = io::copy(&mut counted, &mut io::sink());
    if let Err(e) = drained {
        return Err(Error::Store(ocikit_store::Error::Stream(e)));
    }
    let report = applied?;
    if counted.bytes != size {
        return Err(Error::Store(ocikit_store::Error::SizeMismatch {
            expected: size,
            actual: counted.bytes,
        }));
    }
    Ok(report)
}

/// Counts the bytes read through it.
struct Counted<R> {
    inner: R,
    bytes: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
}

/// Unpacks the image `descriptor` points at into `target`, all or nothing: afterwards
/// `target` holds the whole image, or it is as it was.
///
/// This is the call for callers who do not manage rollback themselves (`ocikit unpack`
/// uses it); [`unpack`] applies layers in place and leaves what it applied when it fails.
///
/// `target` must not exist, or be an empty directory (a symbolic link to one is followed;
/// a mount point is refused, as it cannot be replaced by a rename); anything else is
/// [`Error::TargetExists`]; missing parent directories are created when the tree is
/// renamed into place, not before. The layers are applied, exactly as [`unpack`] applies
/// them, into a staging directory beside `target` (in its parent directory, or in its
/// nearest existing ancestor, so on the same filesystem), named
/// `.NAME.ocikit-staging-RANDOM` for a target named `NAME`. Only after every layer was
/// applied and every blob digest and diffID matched is the filesystem synced (`syncfs`)
/// and the tree renamed into place, one atomic `rename` (which replaces an empty directory);
/// the parent directory is then synced. On any failure, or when the returned future is
/// dropped, the staging directory is removed.
///
/// A process killed while unpacking leaves its staging directory behind; the next
/// `unpack_staged` of the same target removes it, and a staging directory whose process is
/// alive (its `flock` held) is left alone. The mechanism, shared with
/// [`Layout::create_staged`], is described in the crate's `staging` module: only
/// directories of the same owner as this process are touched, and it relies on `flock`
/// working on the target's filesystem, as it does on local ones.
pub async fn unpack_staged(
    layout: &Layout,
    descriptor: &Descriptor,
    target: impl AsRef<Path>,
    options: &UnpackOptions,
) -> Result<UnpackReport> {
    staged_with(layout, descriptor, target.as_ref(), options, None).await
}

/// [`unpack_staged`] with the layer blobs read from `source` instead of the layout's store,
/// which need only hold the manifest (or index) and the config: the same checks before the
/// target is touched, each blob verified as it is read (digest and size, here or by the
/// source as [`LayerSource::verifies`] says; the diffID here), and the tree renamed into
/// place only when every layer was applied.
pub async fn unpack_staged_from(
    layout: &Layout,
    descriptor: &Descriptor,
    target: impl AsRef<Path>,
    options: &UnpackOptions,
    source: Arc<dyn LayerSource>,
) -> Result<UnpackReport> {
    staged_with(layout, descriptor, target.as_ref(), options, Some(&source)).await
}

async fn staged_with(
    layout: &Layout,
    descriptor: &Descriptor,
    target: &Path,
    options: &UnpackOptions,
    source: Option<&Arc<dyn LayerSource>>,
) -> Result<UnpackReport> {
    let target = target.to_path_buf();
    let staging =
        tokio::task::spawn_blocking(move || Staging::prepare(&target, "rootfs", "unpack into"))
            .await
            .map_err(crate::bridge::join_error)??;
    let unpacked = unpack_with(layout, descriptor, &staging.path(), options, source).await;
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
