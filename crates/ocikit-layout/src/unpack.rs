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
//! source. As with [`apply_layer`], the root then holds the layers applied so far: unpack
//! into a fresh directory and discard it on error.
//!
//! Blobs are read from the store's local file where it has one (a filesystem layout, read
//! with positioned reads on the blocking thread), otherwise streamed from the async store
//! through a bounded channel that reads ahead while the blocking thread decompresses.
//! Progress is reported as [`Event`]s of [`Operation::Unpack`], in compressed bytes.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ocikit_codec::apply::{ApplyOptions, ApplyReport, apply_blob};
use ocikit_codec::compression::compression_of;
use ocikit_digest::oci_spec::image::{Descriptor, Platform};
use ocikit_digest::{Digest, VerifyingReader, descriptor};
use ocikit_store::{Error as StoreError, StoreExt};

use crate::bridge;
use crate::platform::{PlatformQuery, resolve};
use crate::progress::{Event, Operation, Progress};
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
/// `options.platform`) into `root`, which is created if missing; see the
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
    for layer in &layers {
        let media_type = layer.media_type().to_string();
        if compression_of(&media_type).is_err() {
            return Err(Error::UnsupportedMediaType {
                media_type,
                operation: "unpack",
            });
        }
    }
    tokio::fs::create_dir_all(&root)
        .await
        .map_err(|e| Error::Io {
            operation: "create",
            path: root.clone(),
            source: e,
        })?;
    let mut reports = Vec::with_capacity(layers.len());
    for (layer, diff_id) in layers.iter().zip(diff_ids) {
        let digest = descriptor::digest_of(layer).map_err(|e| Error::InvalidDocument {
            digest: config_digest.clone(),
            reason: "invalid layer descriptor".into(),
            source: Some(Box::new(e.into())),
        })?;
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

/// Everything the blocking thread needs for one layer.
struct Job {
    cancelled: Arc<AtomicBool>,
    digest: Digest,
    size: u64,
    media_type: String,
    root: PathBuf,
    apply: ApplyOptions,
    progress: Progress,
}

async fn apply_one(
    layout: &Layout,
    layer: &Descriptor,
    digest: &Digest,
    diff_id: Digest,
    root: &Path,
    options: &UnpackOptions,
) -> Result<ApplyReport> {
    let size = layer.size();
    let blob = layout.store().open(digest, None).await?;
    if blob.size() != size {
        return Err(Error::Store(StoreError::SizeMismatch {
            expected: size,
            actual: blob.size(),
        }));
    }
    options.progress.emit(Event::Started {
        operation: Operation::Unpack,
        digest: digest.clone(),
        size,
    });
    // If this future is dropped, the blocking thread stops at its next read instead of
    // applying the rest of the layer to a root nobody waits for.
    let cancel = CancelOnDrop(Arc::new(AtomicBool::new(false)));
    let job = Job {
        cancelled: cancel.0.clone(),
        digest: digest.clone(),
        size,
        media_type: layer.media_type().to_string(),
        root: root.to_path_buf(),
        apply: options.apply.clone().with_expected_diff_id(Some(diff_id)),
        progress: options.progress.clone(),
    };
    let local = blob
        .local_file()
        .map(File::try_clone)
        .transpose()
        .map_err(|e| Error::Store(StoreError::Stream(e)))?;
    match local {
        Some(file) => {
            let range = blob.range();
            drop(blob);
            let source = FileRange {
                file,
                pos: range.start,
                end: range.end,
            };
            let applied = tokio::task::spawn_blocking(move || apply_from(source, job))
                .await
                .map_err(bridge::join_error)?;
            drop(cancel);
            applied
        }
        None => {
            let (reader, feed) = bridge::feed(blob.into_stream());
            let task = tokio::task::spawn_blocking(move || apply_from(reader, job));
            let (fed, applied) = futures::join!(feed, task);
            let applied = applied.map_err(bridge::join_error)?;
            drop(cancel);
            match (fed, applied) {
                // The stream's own error explains the reader's failure.
                (Err(e), Err(_)) => Err(Error::Store(e)),
                (_, applied) => applied,
            }
        }
    }
}

/// Verifies, decodes and applies one layer (on a blocking thread).
fn apply_from<R: Read + Send>(source: R, job: Job) -> Result<ApplyReport> {
    let verifying = VerifyingReader::new(source, job.digest.clone(), job.size).map_err(|_| {
        Error::Store(StoreError::UnsupportedAlgorithm {
            algorithm: job.digest.algorithm().clone(),
        })
    })?;
    let mut source = Counting {
        inner: verifying,
        progress: job.progress.clone(),
        digest: job.digest.clone(),
        bytes: 0,
        reported: 0,
        cancelled: job.cancelled.clone(),
    };
    // Decompression (and the blob's digest) on a second thread, the file-system work on
    // this one: `apply_blob`'s pipeline.
    let applied =
        apply_blob(&job.root, &mut source, &job.media_type, &job.apply).map_err(Error::Codec);
    // Read whatever the decoder left, so the blob's digest is always checked: a corrupt
    // blob is reported as such, even when the decompressor or the tar parser noticed first.
    let drained = io::copy(&mut source, &mut io::sink());
    if let Err(e) = &drained
        && let Some(corrupt) = blob_error(e)
    {
        return Err(corrupt);
    }
    let report = applied?;
    match drained {
        Err(e) => return Err(Error::Store(StoreError::Stream(e))),
        Ok(_) if !source.inner.is_verified() => {
            return Err(Error::Store(StoreError::Stream(io::Error::new(
                io::ErrorKind::InvalidData,
                "layer blob was not verified",
            ))));
        }
        Ok(_) => {}
    }
    job.progress.emit(Event::Done {
        operation: Operation::Unpack,
        digest: job.digest,
        bytes: source.bytes,
    });
    Ok(report)
}

/// The store error for a verification failure of the blob's bytes.
fn blob_error(e: &io::Error) -> Option<Error> {
    let inner = e.get_ref()?.downcast_ref::<ocikit_digest::Error>()?;
    match inner {
        ocikit_digest::Error::DigestMismatch { expected, actual } => {
            Some(Error::Store(StoreError::DigestMismatch {
                expected: expected.clone(),
                actual: actual.clone(),
            }))
        }
        ocikit_digest::Error::SizeMismatch { expected, actual } => {
            Some(Error::Store(StoreError::SizeMismatch {
                expected: *expected,
                actual: *actual,
            }))
        }
        _ => None,
    }
}

/// A byte range of a local file, read with positioned reads (the descriptor may be shared
/// with the store's own stream, so its offset is never used).
struct FileRange {
    file: File,
    pos: u64,
    end: u64,
}

impl Read for FileRange {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.end.saturating_sub(self.pos);
        let n = usize::try_from(left).map_or(buf.len(), |left| left.min(buf.len()));
        if n == 0 {
            return Ok(0);
        }
        let read = self.file.read_at(&mut buf[..n], self.pos)?;
        self.pos += read as u64;
        Ok(read)
    }
}

/// Sets its flag when dropped.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Counts the compressed bytes read, reports progress, and stops when cancelled.
struct Counting<R> {
    inner: R,
    progress: Progress,
    digest: Digest,
    bytes: u64,
    reported: u64,
    cancelled: Arc<AtomicBool>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.cancelled.load(Ordering::Relaxed) {
            // Not `Interrupted`, which readers retry.
            return Err(io::Error::other("the unpack was cancelled"));
        }
        let n = self.inner.read(buf)?;
        self.bytes += n as u64;
        if self.bytes - self.reported >= PROGRESS_INTERVAL {
            self.reported = self.bytes;
            self.progress.emit(Event::Progress {
                operation: Operation::Unpack,
                digest: self.digest.clone(),
                bytes: self.bytes,
            });
        }
        Ok(n)
    }
}
