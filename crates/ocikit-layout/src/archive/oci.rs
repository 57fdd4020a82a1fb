//! `oci-archive`: an OCI image layout in a tar stream (what `skopeo copy oci-archive:`
//! reads and writes): `oci-layout`, `index.json` and `blobs/<alg>/<encoded>`.
//!
//! [`import`] reads one in a single pass whatever its entry order: every blob entry is
//! streamed into the store and committed only if it hashes to its name; `oci-layout` and
//! `index.json` are read under size caps and parsed strictly ([`Index::parse`]); the
//! archive's index entries are merged into the layout's index (one compare-and-swap edit)
//! only once every blob they reach is present. Untagged entries (what `skopeo copy …
//! oci-archive:FILE` writes by default) are imported untagged; [`ImportOptions::with_digest`]
//! picks one image by digest. [`export`] writes chosen tags (or everything)
//! with the blobs they reach, each verified as it is read from the store.
//!
//! ```
//! use ocikit_layout::archive::oci::{ExportOptions, ImportOptions, export, import};
//! use ocikit_layout::Layout;
//! use ocikit_store::MemoryStore;
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let source = Layout::create(MemoryStore::new()).await?;
//! let blob = source.put_blob("application/vnd.oci.empty.v1+json", b"{}").await?;
//! source.set_tag("v1", &blob).await?;
//! let (tar, _) = export(&source, Some(&["v1"]), Vec::new(), &ExportOptions::new()).await?;
//!
//! let destination = Layout::create(MemoryStore::new()).await?;
//! import(&destination, &tar[..], &ImportOptions::new()).await?;
//! assert_eq!(destination.resolve("v1").await?.digest(), blob.digest());
//! # Ok::<(), ocikit_layout::Error>(())
//! # }).unwrap();
//! ```

use std::collections::{BTreeSet, HashSet};
use std::path::Path;

use bytes::Bytes;
use ocikit_codec::tar::Kind;
use ocikit_digest::oci_spec::image::Descriptor;
use ocikit_digest::{Digest, json};
use ocikit_store::{BlobWriter, StoreExt};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::{
    ArchiveErrorKind, ChannelReader, ImportEntry, MAX_JSON_SIZE, MAX_LAYOUT_FILE_SIZE, TarMsg,
    archive_error, archive_error_with, claim_file, commit_blob, consumer_gone, for_each_entry,
    malformed, read_capped, send_blob, stream_entry, with_tar_reader, with_tar_writer,
};
use crate::copy::{ref_name, set_entries, walk};
use crate::layout::{INDEX_JSON, LAYOUT_VERSION, OCI_LAYOUT};
use crate::progress::{Event, Operation, Progress};
use crate::{Error, Index, Layout, Result};

/// How an import runs.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct ImportOptions {
    /// Import only these tags of the archive (all its index entries, tagged or not, when
    /// `None`).
    pub tags: Option<Vec<String>>,
    /// Import only the index entry (or entries) with this manifest or index digest
    /// (`oci-archive:FILE@DIGEST`); combined with `tags`, an entry must match both.
    pub digest: Option<Digest>,
    /// Where [`Operation::Import`] events go.
    pub progress: Progress,
    /// Skip files that have no place in an OCI layout instead of refusing the archive
    /// (the image-layout spec's note says readers should not error on them). `docker
    /// save`'s `manifest.json` and `repositories` are always skipped.
    pub allow_unknown_entries: bool,
}

impl ImportOptions {
    /// All tags, no progress, unknown files refused.
    pub fn new() -> ImportOptions {
        ImportOptions::default()
    }

    /// These options importing only `tags`.
    pub fn with_tags<I: IntoIterator<Item = S>, S: Into<String>>(mut self, tags: I) -> Self {
        self.tags = Some(tags.into_iter().map(Into::into).collect());
        self
    }

    /// These options importing only the index entry with `digest` (untagged archives, as
    /// skopeo writes them by default, name their images only by digest).
    pub fn with_digest(mut self, digest: Digest) -> ImportOptions {
        self.digest = Some(digest);
        self
    }

    /// These options reporting to `progress`.
    pub fn with_progress(mut self, progress: Progress) -> ImportOptions {
        self.progress = progress;
        self
    }

    /// These options skipping (instead of refusing) unknown files.
    pub fn with_unknown_entries_allowed(mut self, allowed: bool) -> ImportOptions {
        self.allow_unknown_entries = allowed;
        self
    }
}

/// What an import did.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct ImportReport {
    /// Blobs read from the archive and committed (verified).
    pub blobs: usize,
    /// Their bytes.
    pub bytes: u64,
    /// The index entries merged into the layout (tagged ones carry `ref.name`).
    pub entries: Vec<Descriptor>,
}

impl ImportReport {
    /// The tags the import set.
    pub fn tags(&self) -> Vec<&str> {
        self.entries.iter().filter_map(ref_name).collect()
    }
}

/// How an export runs.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct ExportOptions {
    /// Where [`Operation::Export`] events go.
    pub progress: Progress,
}

impl ExportOptions {
    /// No progress.
    pub fn new() -> ExportOptions {
        ExportOptions::default()
    }

    /// These options reporting to `progress`.
    pub fn with_progress(mut self, progress: Progress) -> ExportOptions {
        self.progress = progress;
        self
    }
}

/// What an export wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExportReport {
    /// Blobs written.
    pub blobs: usize,
    /// Their bytes.
    pub bytes: u64,
}

enum Msg {
    Blob {
        entry: String,
        digest: Digest,
        size: u64,
    },
    Data(Bytes),
    End,
    Document {
        name: &'static str,
        entry: String,
        bytes: Vec<u8>,
    },
}

fn is_layout_dir(name: &str) -> bool {
    match name.split_once('/') {
        None => name.is_empty() || name == "blobs",
        Some(("blobs", alg)) => !alg.is_empty() && !alg.contains('/'),
        Some(_) => false,
    }
}

fn blob_name(entry: &str, name: &str) -> Result<Digest> {
    let Some(rest) = name.strip_prefix("blobs/") else {
        return Err(archive_error(entry, ArchiveErrorKind::Unexpected));
    };
    let Some((alg, encoded)) = rest.split_once('/') else {
        return Err(archive_error(entry, ArchiveErrorKind::Unexpected));
    };
    let digest = Digest::parse(&format!("{alg}:{encoded}")).map_err(|e| {
        archive_error_with(
            entry,
            ArchiveErrorKind::Malformed {
                reason: "blob name is not a digest".into(),
            },
            Error::InvalidDocument {
                digest: Digest::sha256(b""),
                reason: "blob name".into(),
                source: Some(Box::new(e.into())),
            },
        )
    })?;
    if !digest.is_supported() {
        return Err(malformed(
            entry,
            "digest algorithm cannot be verified by ocikit",
        ));
    }
    Ok(digest)
}

fn parse(reader: ChannelReader, tx: mpsc::Sender<Msg>, allow_unknown: bool) -> Result<()> {
    let send = |msg| tx.blocking_send(msg).map_err(|_| consumer_gone());
    let mut seen = HashSet::new();
    for_each_entry(reader, |entry| {
        let ImportEntry {
            data: entry,
            name,
            shown: shown_name,
            kind,
            typeflag,
            size,
            link: _,
        } = entry;
        if kind == Kind::Dir {
            if is_layout_dir(&name) || allow_unknown {
                return Ok(());
            }
            return Err(archive_error(shown_name, ArchiveErrorKind::Unexpected));
        }
        claim_file(&mut seen, &name, &shown_name, kind, typeflag)?;
        match name.as_str() {
            "oci-layout" | "index.json" => {
                let (key, limit) = if name == "index.json" {
                    (INDEX_JSON, MAX_JSON_SIZE)
                } else {
                    (OCI_LAYOUT, MAX_LAYOUT_FILE_SIZE)
                };
                let bytes = read_capped(entry, &shown_name, size, limit)?;
                send(Msg::Document {
                    name: key,
                    entry: shown_name,
                    bytes,
                })?;
            }
            blob if blob.starts_with("blobs/") => {
                let digest = blob_name(&shown_name, blob)?;
                send(Msg::Blob {
                    entry: shown_name.clone(),
                    digest,
                    size,
                })?;
                stream_entry(entry, &shown_name, size, |chunk| send(Msg::Data(chunk)))?;
                send(Msg::End)?;
            }
            // What `docker save` adds beside its OCI layout (docker 25 and later).
            "manifest.json" | "repositories" => {}
            _ if allow_unknown => {}
            _ => return Err(archive_error(shown_name, ArchiveErrorKind::Unexpected)),
        }
        Ok(())
    })
}

#[derive(Default)]
struct Collected {
    blobs: usize,
    bytes: u64,
    layout_file: Option<(String, Vec<u8>)>,
    index: Option<(String, Vec<u8>)>,
}

async fn consume(
    layout: &Layout,
    mut rx: mpsc::Receiver<Msg>,
    progress: &Progress,
) -> Result<Collected> {
    let store = layout.store();
    let mut collected = Collected::default();
    let mut current: Option<(String, Digest, u64, BlobWriter)> = None;
    while let Some(msg) = rx.recv().await {
        match msg {
            Msg::Blob {
                entry,
                digest,
                size,
            } => {
                progress.emit(Event::Started {
                    operation: Operation::Import,
                    digest: digest.clone(),
                    size,
                });
                let writer = store.writer_with(digest.algorithm()).await?;
                current = Some((entry, digest, size, writer));
            }
            Msg::Data(chunk) => {
                if let Some((_, digest, _, writer)) = current.as_mut() {
                    writer
                        .write_all(&chunk)
                        .await
                        .map_err(ocikit_store::Error::Stream)?;
                    progress.emit(Event::Progress {
                        operation: Operation::Import,
                        digest: digest.clone(),
                        bytes: writer.bytes_written(),
                    });
                }
            }
            Msg::End => {
                if let Some((entry, digest, size, writer)) = current.take() {
                    commit_blob(writer, &entry, Some((&digest, size))).await?;
                    collected.blobs += 1;
                    collected.bytes += size;
                    progress.emit(Event::Done {
                        operation: Operation::Import,
                        digest,
                        bytes: size,
                    });
                }
            }
            Msg::Document { name, entry, bytes } => {
                if name == INDEX_JSON {
                    collected.index = Some((entry, bytes));
                } else {
                    collected.layout_file = Some((entry, bytes));
                }
            }
        }
    }
    Ok(collected)
}

/// Imports an oci-archive read from `reader` into `layout` (see the module docs).
///
/// # Errors
/// [`Error::Archive`] naming the entry for hostile or malformed content (nothing is tagged
/// then; blobs committed before the problem stay, as verified, unreferenced content),
/// [`Error::TagNotFound`] for a requested tag the archive lacks,
/// [`ArchiveErrorKind::NotInIndex`] for a requested digest it lacks, [`Error::InvalidTag`] for
/// an archive tag outside the `ref.name` grammar.
pub async fn import<R>(layout: &Layout, reader: R, options: &ImportOptions) -> Result<ImportReport>
where
    R: AsyncRead + Unpin + Send,
{
    let allow_unknown = options.allow_unknown_entries;
    let collected = with_tar_reader(
        reader,
        move |reader, tx| parse(reader, tx, allow_unknown),
        |rx| consume(layout, rx, &options.progress),
    )
    .await?;
    let (entry, marker) = collected
        .layout_file
        .ok_or_else(|| archive_error(OCI_LAYOUT, ArchiveErrorKind::Missing))?;
    let version = json::parse_strict(&marker)
        .ok()
        .and_then(|v| v.get("imageLayoutVersion")?.as_str().map(str::to_owned));
    if version.as_deref() != Some(LAYOUT_VERSION) {
        return Err(malformed(entry, "imageLayoutVersion is not \"1.0.0\""));
    }
    let (entry, index) = collected
        .index
        .ok_or_else(|| archive_error(INDEX_JSON, ArchiveErrorKind::Missing))?;
    let index = Index::parse(&index).map_err(|e| {
        archive_error_with(
            entry,
            ArchiveErrorKind::Malformed {
                reason: "not a valid index.json".into(),
            },
            e,
        )
    })?;
    let entries = select(&index, options.tags.as_deref(), options.digest.as_ref())?;
    for entry in &entries {
        if let Some(tag) = ref_name(entry) {
            crate::index::validate_tag(tag)?;
        }
    }
    check_complete(layout, &entries).await?;
    set_entries(layout, &entries).await?;
    Ok(ImportReport {
        blobs: collected.blobs,
        bytes: collected.bytes,
        entries,
    })
}

/// Imports the oci-archive at `path` (see [`import`]).
pub async fn import_path(
    layout: &Layout,
    path: impl AsRef<Path>,
    options: &ImportOptions,
) -> Result<ImportReport> {
    let path = path.as_ref();
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|source| Error::Io {
            operation: "open archive",
            path: path.into(),
            source,
        })?;
    import(layout, file, options).await
}

/// The index entries to import: every one, the tagged ones asked for, and of those the
/// ones with the digest asked for.
fn select(
    index: &Index,
    tags: Option<&[String]>,
    digest: Option<&Digest>,
) -> Result<Vec<Descriptor>> {
    let entries: Vec<Descriptor> = match tags {
        None => index.manifests().cloned().collect(),
        Some(tags) => tags
            .iter()
            .map(|tag| {
                index
                    .find(tag)
                    .cloned()
                    .ok_or_else(|| Error::TagNotFound { tag: tag.clone() })
            })
            .collect::<Result<_>>()?,
    };
    let Some(digest) = digest else {
        return Ok(entries);
    };
    let chosen: Vec<Descriptor> = entries
        .into_iter()
        .filter(|e| e.digest().to_string() == digest.as_str())
        .collect();
    if chosen.is_empty() {
        return Err(archive_error(
            INDEX_JSON,
            ArchiveErrorKind::NotInIndex {
                wanted: digest.to_string(),
            },
        ));
    }
    Ok(chosen)
}

/// Checks that every blob `roots` reach is in `layout` (documents verified as they are
/// read), naming the first missing one by its archive path.
pub(crate) async fn check_complete(layout: &Layout, roots: &[Descriptor]) -> Result<()> {
    let missing = |digest: &Digest| archive_error(digest.blob_path(), ArchiveErrorKind::Missing);
    let graph = match walk(layout, roots).await {
        Ok(graph) => graph,
        Err(Error::Copy { digest, source }) => {
            return Err(match *source {
                Error::Store(ocikit_store::Error::NotFound { .. }) => missing(&digest),
                other => Error::Copy {
                    digest,
                    source: Box::new(other),
                },
            });
        }
        Err(e) => return Err(e),
    };
    for node in graph.nodes() {
        if node.bytes.is_none() && layout.store().stat(&node.digest).await? != Some(node.size) {
            return Err(missing(&node.digest));
        }
    }
    Ok(())
}

/// Exports `tags` of `layout` (every index entry when `None`) as an oci-archive into
/// `writer`; returns the writer and what was written.
///
/// Blobs are streamed from the store and verified on the way; a missing or corrupt blob
/// fails with [`Error::Copy`] naming it, and the archive is left incomplete (no
/// end-of-archive marker), so it cannot be mistaken for a whole one.
pub async fn export<W>(
    layout: &Layout,
    tags: Option<&[&str]>,
    writer: W,
    options: &ExportOptions,
) -> Result<(W, ExportReport)>
where
    W: AsyncWrite + Unpin + Send,
{
    let mut images: Vec<(Option<String>, Descriptor)> = Vec::new();
    match tags {
        Some(tags) => {
            for tag in tags {
                images.push((Some((*tag).to_owned()), layout.resolve(tag).await?));
            }
        }
        None => {
            for descriptor in layout.index().await?.manifests() {
                images.push((ref_name(descriptor).map(str::to_owned), descriptor.clone()));
            }
        }
    }
    let images: Vec<(Option<&str>, &Descriptor)> = images
        .iter()
        .map(|(tag, descriptor)| (tag.as_deref(), descriptor))
        .collect();
    export_images(layout, &images, writer, options).await
}

/// Exports the images `images` of `layout` as an oci-archive into `writer`, each under the
/// tag given with it (`org.opencontainers.image.ref.name`), or untagged for `None`, as
/// skopeo writes untagged images; one image may come several times, under several tags.
/// Returns the writer and what was written; blobs are streamed and verified as by
/// [`export`].
pub async fn export_images<W>(
    layout: &Layout,
    images: &[(Option<&str>, &Descriptor)],
    writer: W,
    options: &ExportOptions,
) -> Result<(W, ExportReport)>
where
    W: AsyncWrite + Unpin + Send,
{
    let mut index = Index::empty();
    let mut roots: Vec<Descriptor> = Vec::new();
    for (tag, descriptor) in images {
        match tag {
            Some(tag) => index.set_tag(tag, descriptor)?,
            None => {
                // An untagged entry carries no name, whatever the descriptor was found under.
                let mut untagged = (*descriptor).clone();
                if let Some(mut annotations) = untagged.annotations().clone() {
                    annotations.remove(crate::index::REF_NAME);
                    untagged.set_annotations((!annotations.is_empty()).then_some(annotations));
                }
                index.add(&untagged)?
            }
        }
        if !roots.iter().any(|r| r.digest() == descriptor.digest()) {
            roots.push((*descriptor).clone());
        }
    }
    let index_bytes = index.to_bytes()?;
    let graph = walk(layout, &roots).await?;
    let progress = &options.progress;
    let store = layout.store();
    with_tar_writer(writer, |tx| async move {
        let send = |msg| {
            let tx = tx.clone();
            async move { tx.send(msg).await.map_err(|_| consumer_gone()) }
        };
        let marker = format!("{{\"imageLayoutVersion\":\"{LAYOUT_VERSION}\"}}");
        send(TarMsg::File {
            path: OCI_LAYOUT.into(),
            size: marker.len() as u64,
            decode: None,
        })
        .await?;
        send(TarMsg::Data(Bytes::from(marker))).await?;
        send(TarMsg::End).await?;
        send(TarMsg::Dir("blobs".into())).await?;
        let algorithms: BTreeSet<String> = graph
            .nodes()
            .map(|n| n.digest.algorithm().as_str().to_owned())
            .collect();
        for algorithm in algorithms {
            send(TarMsg::Dir(format!("blobs/{algorithm}"))).await?;
        }
        let mut report = ExportReport::default();
        for node in graph.nodes() {
            let (algorithm, encoded) = node.digest.path_components();
            send(TarMsg::File {
                path: format!("blobs/{algorithm}/{encoded}"),
                size: node.size,
                decode: None,
            })
            .await?;
            progress.emit(Event::Started {
                operation: Operation::Export,
                digest: node.digest.clone(),
                size: node.size,
            });
            match &node.bytes {
                Some(bytes) => {
                    send(TarMsg::Data(bytes.clone())).await?;
                    send(TarMsg::End).await?;
                }
                None => {
                    send_blob(store, &node.digest, node.size, &tx, |bytes| {
                        progress.emit(Event::Progress {
                            operation: Operation::Export,
                            digest: node.digest.clone(),
                            bytes,
                        });
                    })
                    .await?;
                }
            }
            progress.emit(Event::Done {
                operation: Operation::Export,
                digest: node.digest.clone(),
                bytes: node.size,
            });
            report.blobs += 1;
            report.bytes += node.size;
        }
        send(TarMsg::File {
            path: INDEX_JSON.into(),
            size: index_bytes.len() as u64,
            decode: None,
        })
        .await?;
        send(TarMsg::Data(Bytes::from(index_bytes))).await?;
        send(TarMsg::End).await?;
        Ok(report)
    })
    .await
}

/// Exports to a file at `path`, atomically: the archive is written to a temp file beside
/// it, synced, and renamed into place only when complete (see [`export`]).
pub async fn export_path(
    layout: &Layout,
    tags: Option<&[&str]>,
    path: impl AsRef<Path>,
    options: &ExportOptions,
) -> Result<ExportReport> {
    super::write_file_atomically(path.as_ref(), |file| async move {
        let (mut file, report) = export(layout, tags, file, options).await?;
        file.flush().await.map_err(|source| Error::Io {
            operation: "write archive",
            path: Default::default(),
            source,
        })?;
        Ok((file, report))
    })
    .await
}

/// Exports `images` to a file at `path`, atomically, as [`export_path`] does (see
/// [`export_images`]).
pub async fn export_images_path(
    layout: &Layout,
    images: &[(Option<&str>, &Descriptor)],
    path: impl AsRef<Path>,
    options: &ExportOptions,
) -> Result<ExportReport> {
    super::write_file_atomically(path.as_ref(), |file| async move {
        let (mut file, report) = export_images(layout, images, file, options).await?;
        file.flush().await.map_err(|source| Error::Io {
            operation: "write archive",
            path: Default::default(),
            source,
        })?;
        Ok((file, report))
    })
    .await
}
