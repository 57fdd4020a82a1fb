//! `docker-archive`: the `docker save` / `docker load` format.
//!
//! ```text
//! manifest.json        [{"Config": "<hex>.json", "RepoTags": ["name:tag"], "Layers": ["<id>/layer.tar"]}]
//! repositories         {"name": {"tag": "<top layer id>"}}      (legacy, optional)
//! <hex>.json           the image config (its SHA-256 is the image ID)
//! <id>/layer.tar       a layer, uncompressed (legacy; may be a symlink to another layer.tar)
//! blobs/sha256/<hex>   configs and layers in docker 25 and later
//! ```
//!
//! [`import`] reads the entries in any order (manifest.json may come last): every file that
//! can be a config or a layer is staged into the store as it streams by, keyed by its path,
//! and the images are assembled at the end. Layers may be plain tar, gzip or zstd (detected
//! by their magic bytes); each layer's diffID (SHA-256 of the uncompressed tar) is computed
//! and must match the config's `rootfs.diff_ids`. Each image becomes an OCI manifest over
//! the config (docker's config JSON is an OCI config) and the layers as they were, tagged
//! with each of its `RepoTags` in full (`name:tag` fits the `ref.name` grammar).
//! [`ImportReport::find`] picks an image by name as docker does (`hello` is
//! `docker.io/library/hello:latest`, whichever way the archive spells it).
//!
//! [`export`] writes chosen tags as `docker load` expects them: configs as `<hex>.json`,
//! layers decompressed (on the tar thread, streaming) as `<diffID hex>/layer.tar`,
//! `manifest.json` and `repositories`. [`repo_tag_for`] names the images of a whole layout
//! exported without names.
//!
//! Only files `manifest.json` can name are staged: `*.json`, `*.tar` (skopeo writes layers
//! as `<hex>.tar` at the top) and `blobs/<alg>/<hex>` (committed only if they hash to their
//! name); `<id>/json`, `<id>/VERSION`, `oci-layout` and `index.json` are skipped. Symlinks
//! are followed inside the archive only (at most 16 in a row); hardlinks, devices and FIFOs
//! are refused. Staged files that no image turns out to reference stay in the store as
//! unreferenced blobs until garbage collection.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use bytes::Bytes;
use ocikit_codec::compression::{Compression, MAGIC_LEN, sniff};
use ocikit_codec::tar::Kind;
use ocikit_digest::oci_spec::image::Descriptor;
use ocikit_digest::reference::Reference;
use ocikit_digest::{Algorithm, Digest, descriptor, json, media_type};
use ocikit_store::{BlobWriter, StoreExt};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::{
    ArchiveErrorKind, ChannelReader, ImportEntry, MAX_JSON_SIZE, TarMsg, archive_error,
    archive_error_with, claim_file, commit_blob, consumer_gone, decompressed_digest,
    for_each_entry, join_inside, malformed, read_capped, send_blob, stream_entry, with_tar_reader,
    with_tar_writer,
};
use crate::copy::set_entries;
use crate::layout::MAX_DOCUMENT_SIZE;
use crate::progress::{Event, Operation, Progress};
use crate::{Document, Error, Layout, REF_NAME, Result};

/// The name of the image list in a docker archive.
pub const MANIFEST_JSON: &str = "manifest.json";
/// The legacy repository map in a docker archive.
pub const REPOSITORIES: &str = "repositories";
/// How many symlinks in a row an archive path may go through.
const MAX_LINK_HOPS: usize = 16;

/// How a docker-archive import or export runs.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct Options {
    /// Where [`Operation::Import`] / [`Operation::Export`] events go.
    pub progress: Progress,
}

impl Options {
    /// No progress.
    pub fn new() -> Options {
        Options::default()
    }

    /// These options reporting to `progress`.
    pub fn with_progress(mut self, progress: Progress) -> Options {
        self.progress = progress;
        self
    }
}

/// One image read from a docker archive.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ImportedImage {
    /// The OCI manifest written for it (as its index entries carry it, untagged).
    pub manifest: Descriptor,
    /// The config blob (its encoded part is docker's image ID).
    pub config: Digest,
    /// The layers' diffIDs, bottom first.
    pub diff_ids: Vec<Digest>,
    /// The tags set for it (its `RepoTags`).
    pub tags: Vec<String>,
}

/// What a docker-archive import did.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct ImportReport {
    /// The images, in `manifest.json` order.
    pub images: Vec<ImportedImage>,
    /// Files staged into the store from the archive.
    pub files: usize,
    /// Their bytes.
    pub bytes: u64,
}

impl ImportReport {
    /// The image a reference names (`docker-archive:FILE:NAME[:TAG]`), matched as docker
    /// matches names: both it and each `RepoTags` entry are normalised first, so
    /// `demo/hello:v1` finds `docker.io/demo/hello:v1` (what skopeo writes) and `hello`
    /// finds `hello:latest` and `docker.io/library/hello:latest`. `RepoTags` entries that are
    /// not references match only when written exactly alike.
    ///
    /// # Errors
    /// [`Error::InvalidTag`] when `reference` is not a docker reference.
    pub fn find(&self, reference: &str) -> Result<Option<&ImportedImage>> {
        Ok(self.find_tag(reference)?.map(|(image, _)| image))
    }

    /// As [`ImportReport::find`], with the `RepoTags` entry that matched: the name to give
    /// the image (an image may have several, and the one asked for is not always the first).
    ///
    /// # Errors
    /// [`Error::InvalidTag`] when `reference` is not a docker reference.
    pub fn find_tag(&self, reference: &str) -> Result<Option<(&ImportedImage, &str)>> {
        let wanted = normalized(reference).ok_or_else(|| Error::InvalidTag {
            tag: reference.chars().take(300).collect(),
            reason: "not a docker reference (NAME[:TAG])",
        })?;
        Ok(self.images.iter().find_map(|image| {
            image
                .tags
                .iter()
                .find(|tag| *tag == reference || normalized(tag).as_deref() == Some(&wanted))
                .map(|tag| (image, tag.as_str()))
        }))
    }
}

/// `text` as docker reads a name: `docker.io/library/hello:latest` for `hello`.
fn normalized(text: &str) -> Option<String> {
    Reference::parse_normalized(text)
        .ok()
        .filter(|r| r.digest().is_none())
        .map(|r| r.to_string())
}

/// The `RepoTags` entry a layout tag gets when a whole layout is exported without names
/// (`export oci:DIR docker-archive:FILE`). The rule:
///
/// - a tag that is itself a reference, with a `/` or a `:` (`docker.io/demo/hello:v1`, as a
///   docker-archive import or `skopeo copy … oci:DIR:NAME:TAG` sets it), is kept, with
///   `:latest` added when it names no tag;
/// - a plain tag (`v1`) becomes `NAME:v1`, `name` being what the images are called
///   (the CLI passes the layout directory's name).
///
/// # Errors
/// [`Error::InvalidTag`] when the result is not a docker `name:tag` (`name` outside the
/// repository-name grammar, an uppercase name, a tag outside the tag grammar).
pub fn repo_tag_for(layout_tag: &str, name: &str) -> Result<String> {
    let text = if layout_tag.contains(['/', ':']) {
        match Reference::parse(layout_tag) {
            Ok(r) if r.tag().is_none() && r.digest().is_none() => format!("{layout_tag}:latest"),
            _ => layout_tag.to_string(),
        }
    } else {
        format!("{name}:{layout_tag}")
    };
    check_repo_tag(&text)?;
    Ok(text)
}

/// What a docker-archive export wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExportReport {
    /// Images (`manifest.json` entries) written.
    pub images: usize,
    /// Distinct layers written.
    pub layers: usize,
    /// Bytes of configs and uncompressed layers written.
    pub bytes: u64,
}

enum Msg {
    File {
        entry: String,
        name: String,
        size: u64,
        /// The digest its name claims (`blobs/<alg>/<hex>`), checked on commit.
        digest: Option<Digest>,
    },
    Data(Bytes),
    End,
    Json {
        name: String,
        entry: String,
        bytes: Vec<u8>,
    },
    Link {
        name: String,
        target: String,
    },
}

/// Files worth staging: what `manifest.json` can point at.
fn stageable(name: &str) -> bool {
    name.starts_with("blobs/") || name.ends_with(".json") || name.ends_with(".tar")
}

fn parse(reader: ChannelReader, tx: mpsc::Sender<Msg>) -> Result<()> {
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
            link,
        } = entry;
        if kind == Kind::Dir {
            return Ok(());
        }
        if kind == Kind::Symlink {
            // Older `docker save` links identical layers to one copy.
            let target = link;
            let dir = name.rsplit_once('/').map_or("", |(dir, _)| dir);
            let resolved = std::str::from_utf8(&target)
                .ok()
                .and_then(|t| join_inside(dir, t))
                .ok_or_else(|| archive_error(shown_name.clone(), ArchiveErrorKind::UnsafePath))?;
            if !seen.insert(name.clone()) {
                return Err(archive_error(shown_name, ArchiveErrorKind::Duplicate));
            }
            send(Msg::Link {
                name,
                target: resolved,
            })?;
            return Ok(());
        }
        claim_file(&mut seen, &name, &shown_name, kind, typeflag)?;
        if name == MANIFEST_JSON || name == REPOSITORIES {
            let bytes = read_capped(entry, &shown_name, size, MAX_JSON_SIZE)?;
            send(Msg::Json {
                name,
                entry: shown_name,
                bytes,
            })?;
        } else if stageable(&name) {
            let digest = match name.strip_prefix("blobs/").and_then(|r| r.split_once('/')) {
                Some((alg, hex)) => Some(
                    Digest::parse(&format!("{alg}:{hex}"))
                        .ok()
                        .filter(Digest::is_supported)
                        .ok_or_else(|| {
                            malformed(shown_name.clone(), "blob name is not a digest")
                        })?,
                ),
                None => None,
            };
            send(Msg::File {
                entry: shown_name.clone(),
                name,
                size,
                digest,
            })?;
            stream_entry(entry, &shown_name, size, |chunk| send(Msg::Data(chunk)))?;
            send(Msg::End)?;
        }
        // Anything else (`<id>/json`, `<id>/VERSION`, `oci-layout`, `index.json`) is not
        // needed: its data is skipped.
        Ok(())
    })
}

#[derive(Default)]
struct Staged {
    files: HashMap<String, (Digest, u64)>,
    links: HashMap<String, String>,
    json: HashMap<String, (String, Vec<u8>)>,
    count: usize,
    bytes: u64,
}

async fn consume(
    layout: &Layout,
    mut rx: mpsc::Receiver<Msg>,
    progress: &Progress,
) -> Result<Staged> {
    let store = layout.store();
    let mut staged = Staged::default();
    let mut current: Option<(String, String, u64, Option<Digest>, BlobWriter)> = None;
    while let Some(msg) = rx.recv().await {
        match msg {
            Msg::File {
                entry,
                name,
                size,
                digest,
            } => {
                if let Some(d) = &digest {
                    progress.emit(Event::Started {
                        operation: Operation::Import,
                        digest: d.clone(),
                        size,
                    });
                }
                let writer = match &digest {
                    Some(d) => store.writer_with(d.algorithm()).await?,
                    None => store.writer().await?,
                };
                current = Some((entry, name, size, digest, writer));
            }
            Msg::Data(chunk) => {
                if let Some((_, _, _, digest, writer)) = current.as_mut() {
                    writer
                        .write_all(&chunk)
                        .await
                        .map_err(ocikit_store::Error::Stream)?;
                    if let Some(digest) = digest {
                        progress.emit(Event::Progress {
                            operation: Operation::Import,
                            digest: digest.clone(),
                            bytes: writer.bytes_written(),
                        });
                    }
                }
            }
            Msg::End => {
                if let Some((entry, name, size, digest, writer)) = current.take() {
                    let expected = digest.as_ref().map(|d| (d, size));
                    let (digest, size) = commit_blob(writer, &entry, expected).await?;
                    progress.emit(Event::Done {
                        operation: Operation::Import,
                        digest: digest.clone(),
                        bytes: size,
                    });
                    staged.count += 1;
                    staged.bytes += size;
                    staged.files.insert(name, (digest, size));
                }
            }
            Msg::Json { name, entry, bytes } => {
                staged.json.insert(name, (entry, bytes));
            }
            Msg::Link { name, target } => {
                staged.links.insert(name, target);
            }
        }
    }
    Ok(staged)
}

impl Staged {
    /// The staged file a `manifest.json` path names, through symlinks.
    fn resolve(&self, path: &str) -> Result<(Digest, u64)> {
        let mut name = join_inside("", path)
            .ok_or_else(|| archive_error(path, ArchiveErrorKind::UnsafePath))?;
        for _ in 0..MAX_LINK_HOPS {
            if let Some(found) = self.files.get(&name) {
                return Ok(found.clone());
            }
            match self.links.get(&name) {
                Some(target) => name.clone_from(target),
                None => return Err(archive_error(path, ArchiveErrorKind::Missing)),
            }
        }
        Err(malformed(path, "too many symlinks"))
    }
}

#[derive(serde::Deserialize)]
struct ManifestEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

fn diff_ids_of(entry: &str, config: &Value) -> Result<Vec<Digest>> {
    let ids = config
        .get("rootfs")
        .and_then(|r| r.get("diff_ids"))
        .and_then(Value::as_array)
        .ok_or_else(|| malformed(entry, "config has no rootfs.diff_ids array"))?;
    ids.iter()
        .map(|id| {
            id.as_str()
                .and_then(|s| Digest::parse(s).ok())
                .ok_or_else(|| malformed(entry, "a rootfs.diff_ids entry is not a digest"))
        })
        .collect()
}

/// The compression of a stored blob, from its magic bytes.
async fn sniff_blob(layout: &Layout, digest: &Digest, size: u64) -> Result<Compression> {
    use futures::TryStreamExt;
    let range = 0..(MAGIC_LEN as u64).min(size);
    let blob = layout.store().open(digest, Some(range)).await?;
    let chunks: Vec<Bytes> = blob.into_stream().try_collect().await?;
    Ok(sniff(&chunks.concat()))
}

/// Imports a docker archive read from `reader` into `layout` (see the module docs).
///
/// # Errors
/// [`Error::Archive`] naming the entry for hostile or inconsistent content (a missing
/// config or layer, a diffID that does not match, malformed JSON); nothing is tagged then.
/// [`Error::InvalidTag`] for a `RepoTags` entry outside the `ref.name` grammar.
pub async fn import<R>(layout: &Layout, reader: R, options: &Options) -> Result<ImportReport>
where
    R: AsyncRead + Unpin + Send,
{
    let staged =
        with_tar_reader(reader, parse, |rx| consume(layout, rx, &options.progress)).await?;
    let (entry, bytes) = staged
        .json
        .get(MANIFEST_JSON)
        .ok_or_else(|| archive_error(MANIFEST_JSON, ArchiveErrorKind::Missing))?;
    let manifest: Vec<ManifestEntry> =
        json::from_slice_strict_with_limit(bytes, MAX_JSON_SIZE as usize).map_err(|e| {
            archive_error_with(
                entry.clone(),
                ArchiveErrorKind::Malformed {
                    reason: "not a docker manifest.json".into(),
                },
                Error::InvalidIndex {
                    reason: "manifest.json".into(),
                    source: Some(Box::new(e.into())),
                },
            )
        })?;
    if let Some((entry, bytes)) = staged.json.get(REPOSITORIES) {
        json::parse_strict_with_limit(bytes, MAX_JSON_SIZE as usize)
            .ok()
            .filter(Value::is_object)
            .ok_or_else(|| malformed(entry.clone(), "repositories is not a JSON object"))?;
    }
    let mut report = ImportReport {
        files: staged.count,
        bytes: staged.bytes,
        ..ImportReport::default()
    };
    let mut diff_cache: HashMap<Digest, (Compression, Digest)> = HashMap::new();
    let mut entries = Vec::new();
    for image in &manifest {
        let tags = image.repo_tags.clone().unwrap_or_default();
        for tag in &tags {
            crate::index::validate_tag(tag)?;
        }
        let (config, config_size) = staged.resolve(&image.config)?;
        let config_bytes = layout
            .store()
            .get_bytes(&config, MAX_DOCUMENT_SIZE)
            .await?
            .ok_or_else(|| archive_error(image.config.clone(), ArchiveErrorKind::Missing))?;
        let config_json = json::parse_strict_with_limit(&config_bytes, MAX_DOCUMENT_SIZE as usize)
            .ok()
            .filter(Value::is_object)
            .ok_or_else(|| malformed(image.config.clone(), "config is not a JSON object"))?;
        let expected = diff_ids_of(&image.config, &config_json)?;
        if expected.len() != image.layers.len() {
            return Err(malformed(
                image.config.clone(),
                format!(
                    "config lists {} diffIDs for {} layers",
                    expected.len(),
                    image.layers.len()
                ),
            ));
        }
        let mut layers = Vec::new();
        for (path, expected) in image.layers.iter().zip(&expected) {
            let (digest, size) = staged.resolve(path)?;
            let (compression, diff_id) = match diff_cache.get(&digest) {
                Some(known) => known.clone(),
                None => {
                    let compression = sniff_blob(layout, &digest, size).await?;
                    let diff_id = if compression == Compression::None
                        && digest.algorithm() == &Algorithm::Sha256
                    {
                        digest.clone()
                    } else {
                        decompressed_digest(layout.store(), &digest, size, compression)
                            .await
                            .map_err(|e| {
                                archive_error_with(path.clone(), ArchiveErrorKind::Corrupt, e)
                            })?
                            .1
                    };
                    diff_cache.insert(digest.clone(), (compression, diff_id.clone()));
                    (compression, diff_id)
                }
            };
            if &diff_id != expected {
                return Err(archive_error(
                    path.clone(),
                    ArchiveErrorKind::DiffIdMismatch {
                        expected: expected.clone(),
                        actual: diff_id,
                    },
                ));
            }
            layers.push(json!({
                "mediaType": media_type::oci_layer_type(compression),
                "digest": digest.as_str(),
                "size": size,
            }));
        }
        let manifest_value = json!({
            "schemaVersion": 2,
            "mediaType": media_type::IMAGE_MANIFEST,
            "config": {
                "mediaType": media_type::IMAGE_CONFIG,
                "digest": config.as_str(),
                "size": config_size,
            },
            "layers": layers,
        });
        let put = layout
            .put_json(media_type::IMAGE_MANIFEST, &manifest_value)
            .await?;
        let mut entry_value = json!({
            "mediaType": media_type::IMAGE_MANIFEST,
            "digest": put.digest().to_string(),
            "size": put.size(),
        });
        let platform_of = |field: &str| config_json.get(field).and_then(Value::as_str);
        if let (Some(os), Some(arch)) = (platform_of("os"), platform_of("architecture")) {
            let mut platform = json!({"os": os, "architecture": arch});
            if let Some(variant) = platform_of("variant") {
                platform["variant"] = Value::from(variant);
            }
            entry_value["platform"] = platform;
        }
        let descriptor = descriptor::from_value(entry_value).map_err(|e| {
            archive_error_with(
                image.config.clone(),
                ArchiveErrorKind::Malformed {
                    reason: "config platform is not valid".into(),
                },
                Error::InvalidDocument {
                    digest: config.clone(),
                    reason: "platform".into(),
                    source: Some(Box::new(e.into())),
                },
            )
        })?;
        if tags.is_empty() {
            entries.push(descriptor.clone());
        }
        for tag in &tags {
            let mut tagged = descriptor.clone();
            let mut annotations = tagged.annotations().clone().unwrap_or_default();
            annotations.insert(REF_NAME.to_string(), tag.clone());
            tagged.set_annotations(Some(annotations));
            entries.push(tagged);
        }
        report.images.push(ImportedImage {
            manifest: descriptor,
            config,
            diff_ids: expected,
            tags,
        });
    }
    set_entries(layout, &entries).await?;
    Ok(report)
}

/// Imports the docker archive at `path` (see [`import`]).
pub async fn import_path(
    layout: &Layout,
    path: impl AsRef<Path>,
    options: &Options,
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

struct ExportImage {
    config: Digest,
    config_bytes: Bytes,
    layers: Vec<ExportLayer>,
    repo_tags: Vec<String>,
}

#[derive(Clone)]
struct ExportLayer {
    digest: Digest,
    size: u64,
    compression: Compression,
    diff_id: Digest,
    uncompressed: u64,
}

fn check_repo_tag(repo_tag: &str) -> Result<()> {
    let bad = |reason| Error::InvalidTag {
        tag: repo_tag.chars().take(300).collect(),
        reason,
    };
    let parsed = Reference::parse(repo_tag).map_err(|_| bad("not a docker reference"))?;
    if parsed.tag().is_none() || parsed.digest().is_some() {
        return Err(bad("a RepoTag must be name:tag"));
    }
    Ok(())
}

/// Exports images as a docker archive into `writer`: each `(layout tag, RepoTag)` pair
/// names an image manifest in `layout` and the `name:tag` it gets in the archive (several
/// pairs may name one image). Returns the writer and what was written.
///
/// # Errors
/// [`Error::UnsupportedMediaType`] when a tag points at an index (pick a platform's
/// manifest first), [`Error::InvalidTag`] for a RepoTag that is not `name:tag`,
/// [`Error::InvalidDocument`] when a layer's content does not match the config's diffID,
/// [`Error::Copy`] naming a missing or corrupt blob, [`Error::Unverifiable`] naming a
/// manifest, config or layer under a digest algorithm ocikit cannot compute.
pub async fn export<W>(
    layout: &Layout,
    images: &[(&str, &str)],
    writer: W,
    options: &Options,
) -> Result<(W, ExportReport)>
where
    W: AsyncWrite + Unpin + Send,
{
    let mut order: Vec<Digest> = Vec::new();
    let mut by_manifest: HashMap<Digest, ExportImage> = HashMap::new();
    let mut layer_cache: HashMap<Digest, (u64, Digest)> = HashMap::new();
    for (tag, repo_tag) in images {
        check_repo_tag(repo_tag)?;
        let descriptor = layout.resolve(tag).await?;
        let manifest_digest =
            descriptor::digest_of(&descriptor).map_err(|e| Error::InvalidDocument {
                digest: Digest::sha256(b""),
                reason: "descriptor digest is invalid".into(),
                source: Some(Box::new(e.into())),
            })?;
        if let Some(image) = by_manifest.get_mut(&manifest_digest) {
            if !image.repo_tags.iter().any(|t| t == repo_tag) {
                image.repo_tags.push((*repo_tag).to_string());
            }
            continue;
        }
        let Document::Manifest { manifest, .. } = layout.read_document(&descriptor).await? else {
            return Err(Error::UnsupportedMediaType {
                media_type: descriptor.media_type().to_string(),
                operation: "docker-archive export (needs an image manifest)",
            });
        };
        let config_bytes = layout.read_blob(manifest.config()).await?;
        let config = Digest::sha256(&config_bytes);
        let config_json = json::parse_strict_with_limit(&config_bytes, MAX_DOCUMENT_SIZE as usize)
            .map_err(|e| Error::InvalidDocument {
                digest: config.clone(),
                reason: "config is not JSON".into(),
                source: Some(Box::new(e.into())),
            })?;
        let diff_ids =
            diff_ids_of(config.as_str(), &config_json).map_err(|_| Error::InvalidDocument {
                digest: config.clone(),
                reason: "config has no valid rootfs.diff_ids".into(),
                source: None,
            })?;
        if diff_ids.len() != manifest.layers().len() {
            return Err(Error::InvalidDocument {
                digest: manifest_digest,
                reason: "the config's diffIDs do not match the layers".into(),
                source: None,
            });
        }
        let mut layers = Vec::new();
        for (layer, expected) in manifest.layers().iter().zip(diff_ids) {
            let media = layer.media_type().to_string();
            let compression = ocikit_codec::compression::compression_of(&media)?;
            let digest = descriptor::digest_of(layer).map_err(|e| Error::InvalidDocument {
                digest: manifest_digest.clone(),
                reason: "layer digest is invalid".into(),
                source: Some(Box::new(e.into())),
            })?;
            // Checked before anything is written: a layer ocikit cannot hash is never
            // exported as if it had been verified (the config is, by `read_blob`).
            if !digest.is_supported() {
                return Err(Error::Unverifiable { digest });
            }
            let (uncompressed, diff_id) = match layer_cache.get(&digest) {
                Some(known) => known.clone(),
                // Uncompressed: the diffID is the digest (the content is verified as it is
                // written out).
                None if compression == Compression::None
                    && digest.algorithm() == &Algorithm::Sha256 =>
                {
                    (layer.size(), digest.clone())
                }
                None => {
                    let found =
                        decompressed_digest(layout.store(), &digest, layer.size(), compression)
                            .await?;
                    layer_cache.insert(digest.clone(), found.clone());
                    found
                }
            };
            if diff_id != expected {
                return Err(Error::InvalidDocument {
                    digest: manifest_digest,
                    reason: format!("layer {digest} is {diff_id}, the config says {expected}"),
                    source: None,
                });
            }
            layers.push(ExportLayer {
                digest,
                size: layer.size(),
                compression,
                diff_id,
                uncompressed,
            });
        }
        order.push(manifest_digest.clone());
        by_manifest.insert(
            manifest_digest,
            ExportImage {
                config,
                config_bytes,
                layers,
                repo_tags: vec![(*repo_tag).to_string()],
            },
        );
    }
    let images: Vec<ExportImage> = order.iter().filter_map(|d| by_manifest.remove(d)).collect();
    let manifest_json = build_manifest_json(&images)?;
    let repositories = build_repositories(&images)?;
    let store = layout.store();
    let progress = &options.progress;
    with_tar_writer(writer, |tx| async move {
        let send = |msg| {
            let tx = tx.clone();
            async move { tx.send(msg).await.map_err(|_| consumer_gone()) }
        };
        let mut report = ExportReport::default();
        let mut written: HashSet<String> = HashSet::new();
        for image in &images {
            let config_path = format!("{}.json", image.config.encoded());
            if written.insert(config_path.clone()) {
                send(TarMsg::File {
                    path: config_path,
                    size: image.config_bytes.len() as u64,
                    decode: None,
                })
                .await?;
                send(TarMsg::Data(image.config_bytes.clone())).await?;
                send(TarMsg::End).await?;
                report.bytes += image.config_bytes.len() as u64;
            }
            for layer in &image.layers {
                let dir = layer.diff_id.encoded().to_string();
                if !written.insert(dir.clone()) {
                    continue;
                }
                progress.emit(Event::Started {
                    operation: Operation::Export,
                    digest: layer.digest.clone(),
                    size: layer.size,
                });
                send(TarMsg::Dir(dir.clone())).await?;
                send(TarMsg::File {
                    path: format!("{dir}/layer.tar"),
                    size: layer.uncompressed,
                    decode: (layer.compression != Compression::None)
                        .then(|| (layer.compression, layer.diff_id.clone())),
                })
                .await?;
                send_blob(store, &layer.digest, layer.size, &tx, |bytes| {
                    progress.emit(Event::Progress {
                        operation: Operation::Export,
                        digest: layer.digest.clone(),
                        bytes,
                    });
                })
                .await?;
                progress.emit(Event::Done {
                    operation: Operation::Export,
                    digest: layer.digest.clone(),
                    bytes: layer.size,
                });
                report.layers += 1;
                report.bytes += layer.uncompressed;
            }
            report.images += 1;
        }
        for (path, bytes) in [(MANIFEST_JSON, manifest_json), (REPOSITORIES, repositories)] {
            send(TarMsg::File {
                path: path.into(),
                size: bytes.len() as u64,
                decode: None,
            })
            .await?;
            send(TarMsg::Data(Bytes::from(bytes))).await?;
            send(TarMsg::End).await?;
        }
        Ok(report)
    })
    .await
}

fn to_json(value: &Value) -> Result<Vec<u8>> {
    json::value_to_canonical_vec(value).map_err(|e| Error::InvalidDocument {
        digest: Digest::sha256(b""),
        reason: "cannot serialise".into(),
        source: Some(Box::new(e.into())),
    })
}

fn build_manifest_json(images: &[ExportImage]) -> Result<Vec<u8>> {
    let list: Vec<Value> = images
        .iter()
        .map(|image| {
            json!({
                "Config": format!("{}.json", image.config.encoded()),
                "RepoTags": image.repo_tags,
                "Layers": image
                    .layers
                    .iter()
                    .map(|l| format!("{}/layer.tar", l.diff_id.encoded()))
                    .collect::<Vec<_>>(),
            })
        })
        .collect();
    to_json(&Value::Array(list))
}

fn build_repositories(images: &[ExportImage]) -> Result<Vec<u8>> {
    let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for image in images {
        let Some(top) = image.layers.last() else {
            continue;
        };
        for repo_tag in &image.repo_tags {
            // `check_repo_tag` made sure a tag follows the last `:` after the last `/`.
            if let Some((name, tag)) = repo_tag.rsplit_once(':') {
                repositories
                    .entry(name.to_string())
                    .or_default()
                    .insert(tag.to_string(), top.diff_id.encoded().to_string());
            }
        }
    }
    json::to_canonical_vec(&repositories).map_err(|e| Error::InvalidDocument {
        digest: Digest::sha256(b""),
        reason: "cannot serialise".into(),
        source: Some(Box::new(e.into())),
    })
}

/// Exports to a file at `path`, atomically (see [`export`]).
pub async fn export_path(
    layout: &Layout,
    images: &[(&str, &str)],
    path: impl AsRef<Path>,
    options: &Options,
) -> Result<ExportReport> {
    super::write_file_atomically(path.as_ref(), |file| async move {
        let (mut file, report) = export(layout, images, file, options).await?;
        file.flush().await.map_err(|source| Error::Io {
            operation: "write archive",
            path: Default::default(),
            source,
        })?;
        Ok((file, report))
    })
    .await
}
