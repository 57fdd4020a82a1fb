//! A registry image unpacked in one stream: each layer applied while it downloads, the next
//! layers downloading meanwhile into spool files, in order.
//!
//! The manifest (picked by platform from an index) and the config are fetched and verified
//! first and put in an in-memory layout, so that [`ocikit_layout::unpack_staged_from`] makes
//! every check of a layout unpack before the target is touched. When it asks for the first
//! layer, the downloads start: layer `i` may download while layer `i - prefetch - 1`
//! or a later one is applied (a window of permits, each given back when its layer was
//! applied), each into an anonymous file ([`tempfile::tempfile_in`], `O_TMPFILE`: gone when
//! closed, even when the process is killed) beside the target. The applier reads a spool as
//! it grows, waiting for the download where it caught up. The client verifies each blob's
//! digest and size as its bytes arrive, and the spool ends only after the client verified
//! the whole blob, or ends with an error when the download failed (that error, not the
//! applier's, is what the unpack reports): so the layout does not hash the bytes again
//! ([`LayerSource::verifies`]); it checks the size and the diffID as it reads.
//!
//! With a keep layout, each downloaded blob is also streamed into its store through a
//! verifying writer (published only when digest and size match), the config and manifest
//! put there verified, and the tag set once the unpack succeeded; a new keep layout is
//! staged and appears only then.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use ocikit_client::Client;
use ocikit_digest::Digest;
use ocikit_digest::oci_spec::image::Descriptor;
use ocikit_layout::document::Document;
use ocikit_layout::{LayerSource, Layout, StagedLayout, UnpackReport};
use ocikit_store::{MemoryStore, StoreExt};
use tokio::io::AsyncWriteExt;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use super::UnpackImageOptions;
use crate::error::{Error, Result};
use crate::location::{Location, Selector};

/// Downloaded bytes gathered before they are written to a spool (one blocking write each).
const FLUSH_BYTES: usize = 1 << 20;

/// Unpacks the registry image `location` (`registry`, `repository`, `selector`) into
/// `rootfs`, keeping it in the layout `keep` (directory, tag) when given.
pub(super) async fn unpack(
    location: &Location,
    (registry, repository, selector): (&str, &str, &Selector),
    rootfs: &Path,
    options: &UnpackImageOptions,
    keep: Option<&(PathBuf, String)>,
) -> Result<(UnpackReport, Option<Location>)> {
    let pull_error = |source| Error::Pull {
        location: location.to_string(),
        source,
    };
    let client = options.registry.client(registry)?;
    let (manifest, manifest_bytes) = client
        .resolve_image(
            repository,
            &selector.reference(),
            Some(&options.unpack.platform),
        )
        .await
        .map_err(pull_error)?;
    let manifest_digest = digest_of(&manifest)?;
    let parsed =
        ocikit_layout::document::parse(&manifest, manifest_bytes.clone()).map_err(|source| {
            Error::Read {
                location: location.to_string(),
                source,
            }
        })?;
    let Document::Manifest {
        manifest: image, ..
    } = parsed
    else {
        return Err(Error::NotAManifest {
            digest: manifest_digest.to_string(),
            media_type: manifest.media_type().to_string(),
        });
    };
    let config = image.config();
    let config_digest = digest_of(config)?;
    if config.size() > ocikit_layout::MAX_DOCUMENT_SIZE {
        return Err(Error::Read {
            location: location.to_string(),
            source: ocikit_layout::Error::Store(ocikit_store::Error::SizeMismatch {
                expected: ocikit_layout::MAX_DOCUMENT_SIZE,
                actual: config.size(),
            }),
        });
    }
    let config_bytes = read_whole(&client, repository, &config_digest, config.size())
        .await
        .map_err(pull_error)?;
    // The documents where the layout unpack reads them (and checks them).
    let documents = Layout::create(MemoryStore::new()).await?;
    documents
        .store()
        .put_verified(&config_digest, &config_bytes)
        .await?;
    documents
        .store()
        .put_verified(&manifest_digest, &manifest_bytes)
        .await?;
    let mut layers = Vec::with_capacity(image.layers().len());
    for layer in image.layers() {
        layers.push((digest_of(layer)?, layer.size()));
    }

    let staged_keep = match keep {
        Some((path, _)) => {
            Some(
                Layout::create_or_stage(path)
                    .await
                    .map_err(|source| Error::CreateLayout {
                        path: path.clone(),
                        source,
                    })?,
            )
        }
        None => None,
    };
    let outcome = stream_unpack(
        location,
        &client,
        repository,
        (&documents, &manifest),
        layers,
        rootfs,
        options,
        staged_keep.as_ref().map(StagedLayout::layout),
        [
            (&config_digest, &config_bytes),
            (&manifest_digest, &manifest_bytes),
        ],
    )
    .await;
    let unpacked = match outcome {
        Ok(unpacked) => unpacked,
        Err(e) => {
            if let Some(staged) = staged_keep {
                staged.discard().await;
            }
            return Err(e);
        }
    };
    let kept = match (staged_keep, keep) {
        (Some(staged), Some((path, tag))) => {
            let mut root = manifest.clone();
            root.set_annotations(None);
            let tagged = staged.layout().set_tag(tag, &root).await;
            if let Err(e) = tagged {
                staged.discard().await;
                return Err(Error::SetTag {
                    digest: manifest_digest.to_string(),
                    tag: tag.clone(),
                    source: e,
                });
            }
            staged.commit().await.map_err(|source| Error::Commit {
                path: path.clone(),
                source,
            })?;
            Some(Location::Oci {
                path: path.clone(),
                selector: Some(Selector::Tag(tag.clone())),
            })
        }
        _ => None,
    };
    Ok((unpacked, kept))
}

/// The unpack proper: downloads driven beside the layout unpack reading them.
#[allow(clippy::too_many_arguments)]
async fn stream_unpack(
    location: &Location,
    client: &Client,
    repository: &str,
    (documents, manifest): (&Layout, &Descriptor),
    layers: Vec<(Digest, u64)>,
    rootfs: &Path,
    options: &UnpackImageOptions,
    keep: Option<&Layout>,
    keep_documents: [(&Digest, &[u8]); 2],
) -> Result<UnpackReport> {
    if let Some(keep) = keep {
        for (digest, bytes) in keep_documents {
            keep.store().put_verified(digest, bytes).await?;
        }
    }
    let dir = existing_ancestor(rootfs);
    let spools: Arc<[Spool]> = layers.iter().map(|_| Spool::default()).collect();
    let started = Arc::new(Notify::new());
    let source = Arc::new(SpoolSource {
        spools: Arc::clone(&spools),
        started: Arc::clone(&started),
    });
    let downloads = Downloads {
        client: client.clone(),
        repository: repository.to_string(),
        location: location.to_string(),
        dir,
        keep: keep.cloned(),
    };
    let window = Arc::new(Semaphore::new(options.prefetch.saturating_add(1)));
    // Dropped (the unpack over, or this future dropped): the downloads stop, and a reader
    // still waiting is woken with an error.
    let _guard = CancelOnDrop(Arc::clone(&spools));
    let driver = drive(downloads, layers, Arc::clone(&spools), window, started);
    tokio::pin!(driver);
    let unpack = ocikit_layout::unpack_staged_from(
        documents,
        manifest,
        rootfs,
        &options.unpack,
        source as Arc<dyn LayerSource>,
    );
    tokio::pin!(unpack);
    // The driver ends first (every blob downloaded) or with the first download error; the
    // unpack goes on to read what is spooled.
    let mut failed = None;
    let unpacked = tokio::select! {
        unpacked = &mut unpack => unpacked,
        driven = &mut driver => {
            if let Err(e) = driven {
                failed = Some(e);
                // The other downloads were dropped with the driver: a reader waiting for
                // one is woken with an error rather than left waiting.
                for spool in spools.iter() {
                    spool.release();
                }
            }
            unpack.await
        }
    };
    match (unpacked, failed) {
        // The download's error explains why its layer failed.
        (Err(_), Some(e)) => Err(e),
        (Err(e), None) => Err(Error::Read {
            location: location.to_string(),
            source: e,
        }),
        (Ok(unpacked), _) => Ok(unpacked),
    }
}

/// What every download needs.
struct Downloads {
    client: Client,
    repository: String,
    location: String,
    /// Where spool files are made.
    dir: PathBuf,
    /// The keep layout's store.
    keep: Option<Layout>,
}

/// Starts the downloads once the first layer is asked for, in layer order, each when the
/// window has room; returns when all ended, or at the first failure (the others are then
/// dropped with the returned future's set).
async fn drive(
    downloads: Downloads,
    layers: Vec<(Digest, u64)>,
    spools: Arc<[Spool]>,
    window: Arc<Semaphore>,
    started: Arc<Notify>,
) -> Result<()> {
    started.notified().await;
    let downloads = Arc::new(downloads);
    let mut running = JoinSet::new();
    let mut layers = layers.into_iter().enumerate();
    loop {
        tokio::select! {
            permit = Arc::clone(&window).acquire_owned(), if layers.len() > 0 => {
                let Ok(permit) = permit else { break };
                if let Some((index, (digest, size))) = layers.next() {
                    spools[index].hold(permit);
                    let downloads = Arc::clone(&downloads);
                    let spools = Arc::clone(&spools);
                    running.spawn(async move {
                        let spool = &spools[index];
                        let result = download(&downloads, &digest, size, spool).await;
                        spool.end(result.as_ref().map(|_| ()).map_err(ToString::to_string));
                        result
                    });
                }
            }
            joined = running.join_next(), if !running.is_empty() => {
                match joined {
                    Some(Ok(Ok(()))) | None => {}
                    Some(Ok(Err(e))) => return Err(e),
                    Some(Err(e)) => {
                        return Err(Error::Scratch {
                            source: io::Error::other(e.to_string()),
                        });
                    }
                }
            }
            else => break,
        }
    }
    Ok(())
}

/// Downloads one blob into its spool (and the keep store).
async fn download(downloads: &Downloads, digest: &Digest, size: u64, spool: &Spool) -> Result<()> {
    let pull_error = |source| Error::Pull {
        location: downloads.location.clone(),
        source,
    };
    let dir = downloads.dir.clone();
    let file = tokio::task::spawn_blocking(move || tempfile::tempfile_in(dir))
        .await
        .map_err(|e| Error::Scratch {
            source: io::Error::other(e.to_string()),
        })?
        .map_err(|source| Error::Scratch { source })?;
    let file = Arc::new(file);
    spool.open(Arc::clone(&file));
    let mut keep = match &downloads.keep {
        Some(layout) if layout.store().stat(digest).await? != Some(size) => {
            Some(layout.store().writer_with(digest.algorithm()).await?)
        }
        _ => None,
    };
    let mut read = downloads
        .client
        .read_blob(&downloads.repository, digest, size)
        .map_err(pull_error)?;
    let mut pending: Vec<u8> = Vec::with_capacity(FLUSH_BYTES);
    let mut offset = 0u64;
    let outcome: Result<()> = async {
        loop {
            let chunk = read.chunk().await.map_err(pull_error)?;
            let last = chunk.is_none();
            if let Some(chunk) = chunk {
                if let Some(writer) = keep.as_mut() {
                    writer
                        .write_all(&chunk)
                        .await
                        .map_err(|e| Error::Store(ocikit_store::Error::Stream(e)))?;
                }
                pending.extend_from_slice(&chunk);
            }
            if pending.len() >= FLUSH_BYTES || (last && !pending.is_empty()) {
                let chunk = std::mem::replace(&mut pending, Vec::with_capacity(FLUSH_BYTES));
                let file = Arc::clone(&file);
                let at = offset;
                tokio::task::spawn_blocking(move || {
                    file.write_all_at(&chunk, at).map(|()| chunk.len())
                })
                .await
                .map_err(|e| io::Error::other(e.to_string()))
                .and_then(|r| r)
                .map(|written| offset += written as u64)
                .map_err(|source| Error::Scratch { source })?;
                if !spool.advance(offset) {
                    // The unpack is over (failed elsewhere): stop.
                    return Err(Error::Scratch {
                        source: io::Error::other("the unpack ended"),
                    });
                }
            }
            if last {
                return Ok(());
            }
        }
    }
    .await;
    match (outcome, keep) {
        (Ok(()), Some(writer)) => writer.commit(digest, size).await.map_err(|e| e.into()),
        (Ok(()), None) => Ok(()),
        (Err(e), writer) => {
            if let Some(writer) = writer {
                let _ = writer.abort().await;
            }
            Err(e)
        }
    }
}

/// The whole (small) blob, verified.
async fn read_whole(
    client: &Client,
    repository: &str,
    digest: &Digest,
    size: u64,
) -> std::result::Result<Vec<u8>, ocikit_client::Error> {
    let mut read = client.read_blob(repository, digest, size)?;
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    while let Some(chunk) = read.chunk().await? {
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

fn digest_of(descriptor: &Descriptor) -> Result<Digest> {
    let text = descriptor.digest().to_string();
    text.parse().map_err(|source| Error::InvalidDigest {
        digest: text.clone(),
        source,
    })
}

/// The nearest directory of `path`'s ancestors that exists (spools go there, on the
/// target's filesystem).
fn existing_ancestor(path: &Path) -> PathBuf {
    let mut dir = path.parent();
    while let Some(d) = dir {
        if d.as_os_str().is_empty() {
            return PathBuf::from(".");
        }
        if d.is_dir() {
            return d.to_path_buf();
        }
        dir = d.parent();
    }
    PathBuf::from(".")
}

/// One layer's download as it grows: written by its download task, read by the applier.
#[derive(Default)]
struct Spool {
    state: Mutex<SpoolState>,
    grown: Condvar,
}

#[derive(Default)]
struct SpoolState {
    file: Option<Arc<File>>,
    /// Bytes written so far.
    written: u64,
    /// `Some` once the download ended: verified, or why not.
    end: Option<std::result::Result<(), String>>,
    /// The window's permit, given back when the layer was applied.
    permit: Option<OwnedSemaphorePermit>,
    /// The reader is done with it (or the unpack is over): nothing more is wanted.
    released: bool,
}

impl Spool {
    fn lock(&self) -> MutexGuard<'_, SpoolState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn hold(&self, permit: OwnedSemaphorePermit) {
        let mut state = self.lock();
        if state.released {
            return;
        }
        state.permit = Some(permit);
    }

    fn open(&self, file: Arc<File>) {
        self.lock().file = Some(file);
    }

    /// Records `written` bytes in the file; `false` when nobody wants them any more.
    fn advance(&self, written: u64) -> bool {
        let mut state = self.lock();
        state.written = written;
        self.grown.notify_all();
        !state.released
    }

    fn end(&self, result: std::result::Result<(), String>) {
        let mut state = self.lock();
        if state.end.is_none() {
            state.end = Some(result);
        }
        self.grown.notify_all();
    }

    /// Done with: the file closed (its space freed), the window's permit given back, a
    /// reader still waiting woken with an error.
    fn release(&self) {
        let mut state = self.lock();
        state.released = true;
        state.file = None;
        state.permit = None;
        if state.end.is_none() {
            state.end = Some(Err("the unpack ended".into()));
        }
        self.grown.notify_all();
    }
}

/// The layers as [`ocikit_layout::unpack_staged_from`] reads them: each spool in turn.
struct SpoolSource {
    spools: Arc<[Spool]>,
    started: Arc<Notify>,
}

impl LayerSource for SpoolSource {
    fn open(&self, index: usize, _digest: &Digest, _size: u64) -> io::Result<Box<dyn Read + Send>> {
        if index == 0 {
            self.started.notify_one();
        }
        if index >= self.spools.len() {
            return Err(io::Error::other(format!("no layer {index}")));
        }
        Ok(Box::new(SpoolReader {
            spools: Arc::clone(&self.spools),
            index,
            pos: 0,
        }))
    }

    /// A spool ends (`Ok(0)`) only once the client verified the whole download against the
    /// layer's digest and size, and fails otherwise ([`SpoolReader`]).
    fn verifies(&self) -> bool {
        true
    }
}

/// Reads one spool as it grows; releases it when dropped.
struct SpoolReader {
    spools: Arc<[Spool]>,
    index: usize,
    pos: u64,
}

impl Read for SpoolReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let spool = &self.spools[self.index];
        let mut state = spool.lock();
        loop {
            if self.pos < state.written
                && let Some(file) = state.file.clone()
            {
                let left = state.written - self.pos;
                drop(state);
                let n = usize::try_from(left).map_or(buf.len(), |left| left.min(buf.len()));
                let read = file.read_at(&mut buf[..n], self.pos)?;
                if read == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the spool file is shorter than written",
                    ));
                }
                self.pos += read as u64;
                return Ok(read);
            }
            match &state.end {
                Some(Ok(())) => return Ok(0),
                Some(Err(why)) => {
                    return Err(io::Error::other(format!("the download failed: {why}")));
                }
                None => {}
            }
            state = spool
                .grown
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

impl Drop for SpoolReader {
    fn drop(&mut self) {
        self.spools[self.index].release();
    }
}

/// Releases every spool when dropped.
struct CancelOnDrop(Arc<[Spool]>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        for spool in self.0.iter() {
            spool.release();
        }
    }
}
