//! [`export`]: an image's merged filesystem as one tar stream (`ocikit unpack --tar`, crane's
//! `export`), from any location.

use std::io::{self, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ocikit_codec::Limits;
use ocikit_codec::compression::Decoder;
use ocikit_codec::squash::{SquashOptions, SquashReport, squash};
use ocikit_digest::oci_spec::image::{Descriptor, Platform};
use ocikit_digest::{Digest, VerifyingReader};
use ocikit_layout::PlatformQuery;
use ocikit_store::LocalBlobs;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::access::RegistryOptions;
use crate::copy::{CopyOptions, ScratchSpace, copy};
use crate::error::{Error, Result};
use crate::location::{Location, Selector};
use crate::open::{open_layout, resolve};
use crate::progress::Progress;
#[cfg(feature = "sign")]
use crate::trust::PolicyAccepted;

/// The tag a registry image or an archive gets in the scratch layout it is staged in.
const STAGED_TAG: &str = "export";

/// How many chunks of the tar stream may wait between the squash and the writer.
const CHANNEL_CHUNKS: usize = 8;

/// How to [`export`]: the registry options of a `docker://` source, the platform picked
/// from an index (default: this machine's, as `ocikit unpack`), and where the progress of
/// staging a registry image or an archive goes.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct ExportOptions {
    /// TLS and credentials for a registry source.
    pub source: RegistryOptions,
    /// The image of an index to export.
    pub platform: PlatformQuery,
    /// Where the events of staging a registry image or an archive go.
    pub progress: Progress,
    /// The trust policy the image must pass before anything is read or written (see
    /// [`crate::check_policy`]); the image is then read by the digest accepted.
    #[cfg(feature = "sign")]
    pub policy: Option<ocikit_sign::Policy>,
}

impl ExportOptions {
    /// The defaults: stored credentials, this machine's platform, no progress.
    pub fn new() -> ExportOptions {
        ExportOptions::default()
    }

    /// These options reading a registry source with `options`.
    pub fn with_source(mut self, options: RegistryOptions) -> ExportOptions {
        self.source = options;
        self
    }

    /// These options picking `platform` from an index.
    pub fn with_platform(mut self, platform: PlatformQuery) -> ExportOptions {
        self.platform = platform;
        self
    }

    /// These options reporting the staging of a registry image or an archive to `progress`.
    pub fn with_progress(mut self, progress: Progress) -> ExportOptions {
        self.progress = progress;
        self
    }

    /// These options enforcing `policy` ([`ExportOptions::policy`]).
    #[cfg(feature = "sign")]
    pub fn with_policy(mut self, policy: Option<ocikit_sign::Policy>) -> ExportOptions {
        self.policy = policy;
        self
    }
}

/// What [`export`] wrote.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ExportReport {
    /// The image manifest exported.
    pub manifest: Descriptor,
    /// The image's platform, as its config says.
    pub platform: Platform,
    /// How many layers were merged.
    pub layers: usize,
    /// What the squash read and wrote (entries, whiteouts, bytes, each layer's diffID).
    pub squash: SquashReport,
    /// What the trust policy accepted, when [`ExportOptions::policy`] gave one.
    #[cfg(feature = "sign")]
    pub accepted: Option<PolicyAccepted>,
}

/// Writes the merged filesystem of the image `location` names to `out` as one uncompressed
/// tar stream: every layer applied in turn as an unpack would (whiteouts and opaque
/// directories resolved, never written), owners, modes, times and extended attributes kept
/// as the layers give them, numerically.
///
/// The layers are merged by [`ocikit_codec::squash::squash`] in one streaming pass on a
/// blocking thread, each decompressed and verified against its digest and its config's
/// diffID as it is read: straight from the blob files of an `oci:` source, or from a scratch
/// layout an archive or a registry image (the platform's image only) is first copied into.
/// The platform is picked from an index by [`ExportOptions::platform`].
///
/// `out` is written as the stream is made and flushed at the end. A layer is verified only
/// when it has been read whole, so on an error part of the stream may have been written:
/// discard it ([`export_to_path`] leaves no file then).
///
/// # Errors
/// Those of opening and staging the source (a missing layout, tag or platform, a registry
/// error); [`Error::Export`] for a layer that does not verify or an entry the squash
/// refuses; [`Error::ExportWrite`] when writing `out` fails.
pub async fn export<W>(location: &Location, out: W, options: &ExportOptions) -> Result<ExportReport>
where
    W: AsyncWrite + Unpin + Send,
{
    export_to(location, out, options, None).await
}

/// [`export`] into the file `path`, atomically: the stream is written to a hidden temporary
/// file beside it, synced, and renamed over `path` only when it is complete and every layer
/// verified; on any error `path` is left as it was (absent, or the old file). The file is
/// made 0666 less the umask, as any file a program makes.
///
/// # Errors
/// As [`export`]; [`Error::ExportWrite`] naming `path` for the file's own I/O.
pub async fn export_to_path(
    location: &Location,
    path: &Path,
    options: &ExportOptions,
) -> Result<ExportReport> {
    let write_error = |source: io::Error| Error::ExportWrite {
        path: Some(path.to_path_buf()),
        source,
    };
    let name = path
        .file_name()
        .ok_or_else(|| write_error(io::Error::other("the path names no file")))?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    // Created 0666 less the umask, as any file a program makes (a temporary file's 0600
    // would keep others from reading the result).
    let temporary = tempfile::Builder::new()
        .prefix(&format!(".{}.ocikit-export-", name.to_string_lossy()))
        .permissions(std::fs::Permissions::from_mode(0o666))
        .tempfile_in(&parent)
        .map_err(write_error)?;
    let file = temporary.as_file().try_clone().map_err(write_error)?;
    let mut file = tokio::fs::File::from_std(file);
    let report = export_to(location, &mut file, options, Some(path)).await?;
    file.sync_all().await.map_err(write_error)?;
    drop(file);
    let temporary_path = temporary.into_temp_path();
    let (from, to) = (temporary_path.to_path_buf(), path.to_path_buf());
    tokio::task::spawn_blocking(move || -> io::Result<()> {
        std::fs::rename(&from, &to)?;
        std::fs::File::open(&parent)?.sync_all()
    })
    .await
    .map_err(|e| write_error(io::Error::other(e)))?
    .map_err(write_error)?;
    // Renamed: nothing left to remove.
    let _ = temporary_path.keep();
    Ok(report)
}

async fn export_to<W>(
    location: &Location,
    mut out: W,
    options: &ExportOptions,
    path: Option<&Path>,
) -> Result<ExportReport>
where
    W: AsyncWrite + Unpin + Send,
{
    #[cfg(feature = "sign")]
    let accepted = match &options.policy {
        Some(policy) => Some(crate::trust::check_policy(location, policy, &options.source).await?),
        None => None,
    };
    #[cfg(feature = "sign")]
    let location = accepted.as_ref().map_or(location, |a| &a.pinned);
    // Kept until the squash is over: a staged source's blobs live in it.
    let (layout, root, _scratch) = match location {
        Location::Oci { path, selector } => {
            let layout = open_layout(path).await?;
            let root = resolve(&layout, path, selector.as_ref()).await?;
            (layout, root, None)
        }
        _ => {
            let near = location.path().map_or_else(
                || std::env::temp_dir().join("ocikit-export"),
                Path::to_path_buf,
            );
            let scratch = ScratchSpace::near(&near).await?;
            let staged_path = scratch.path().join("source");
            let stage_at = Location::Oci {
                path: staged_path.clone(),
                selector: Some(Selector::Tag(STAGED_TAG.into())),
            };
            let platform = Some(options.platform.clone()).filter(|_| location.is_registry());
            copy(
                location,
                &stage_at,
                &CopyOptions::new()
                    .with_source(options.source.clone())
                    .with_platform(platform)
                    .with_progress(options.progress.clone()),
            )
            .await?;
            let layout = open_layout(&staged_path).await?;
            let root = layout.resolve(STAGED_TAG).await?;
            (layout, root, Some(scratch))
        }
    };
    let image = ocikit_layout::platform::resolve(&layout, &root, &options.platform)
        .await
        .map_err(|source| Error::Platform {
            location: location.to_string(),
            source,
        })?;
    let manifest = image.descriptor.clone();
    let digest = manifest.digest().to_string();
    let layers = image.manifest.layers().clone();
    let export_error = |source| Error::Export {
        digest: digest.clone(),
        source,
    };
    let local = layout.store().local_blobs().ok_or_else(|| {
        export_error(other(
            "open",
            "the layout's blobs are not local files".into(),
        ))
    })?;
    let mut blobs = Vec::with_capacity(layers.len());
    for layer in &layers {
        let text = layer.digest().to_string();
        let digest = text.parse().map_err(|source| Error::InvalidDigest {
            digest: text.clone(),
            source,
        })?;
        blobs.push((digest, layer.size(), layer.media_type().to_string()));
    }
    let squash_options = SquashOptions::new().with_expected_diff_ids(Some(image.config.diff_ids()));

    let (sender, mut receiver) = mpsc::channel::<Vec<u8>>(CHANNEL_CHUNKS);
    let task = tokio::task::spawn_blocking(move || {
        squash_blobs(local, &blobs, ChannelWriter(sender), &squash_options)
    });
    let mut written = Ok(());
    while let Some(chunk) = receiver.recv().await {
        if let Err(e) = out.write_all(&chunk).await {
            written = Err(e);
            break;
        }
    }
    // The squash sees a closed pipe if the writer failed, and ends.
    drop(receiver);
    let squashed = task
        .await
        .map_err(|e| export_error(other("squash", e.to_string())))?;
    let write_error = |source| Error::ExportWrite {
        path: path.map(Path::to_path_buf),
        source,
    };
    written.map_err(write_error)?;
    let report = squashed.map_err(export_error)?;
    out.flush().await.map_err(write_error)?;
    Ok(ExportReport {
        manifest,
        platform: image.config.platform(),
        layers: layers.len(),
        squash: report,
        #[cfg(feature = "sign")]
        accepted,
    })
}

/// The layers, bottom first, squashed into `out`: each blob read from its local file,
/// verified against its digest and size, decompressed as its media type says.
fn squash_blobs(
    local: Arc<dyn LocalBlobs>,
    blobs: &[(Digest, u64, String)],
    out: ChannelWriter,
    options: &SquashOptions,
) -> std::result::Result<SquashReport, ocikit_codec::Error> {
    let open = |i: usize| {
        let (digest, size, media_type) = &blobs[i];
        let (file, _) = local
            .open_blocking(digest)
            .map_err(|e| other("open", format!("layer {digest}: {e}")))?
            .ok_or_else(|| other("open", format!("the layer {digest} is missing")))?;
        let verified = VerifyingReader::new(BufReader::new(file), digest.clone(), *size)
            .map_err(|e| other("verify", e.to_string()))?;
        Decoder::for_media_type(verified, media_type, Limits::default())
    };
    squash(blobs.len(), open, out, options)
}

fn other(operation: &'static str, message: String) -> ocikit_codec::Error {
    ocikit_codec::Error::Io {
        operation,
        path: None,
        source: io::Error::other(message),
    }
}

/// The squash's output, sent in chunks to the task that writes the caller's writer.
struct ChannelWriter(mpsc::Sender<Vec<u8>>);

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.0
            .blocking_send(buf.to_vec())
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the output was closed"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
