//! Recompressing an image's layers (gzip to zstd, zstd to gzip, to or from uncompressed)
//! inside a layout, as `skopeo copy --dest-compress-format` does.
//!
//! [`recompress`] takes a manifest or an index and writes, beside it, the same image with
//! every layer in the wanted compression: each layer is read (verified against its digest),
//! decoded, re-encoded and hashed in one pass on a blocking thread, and its uncompressed
//! content is checked against the config's `rootfs.diff_ids` entry (a layer whose content
//! does not match is refused, never silently re-labelled). The diffIDs therefore stay what
//! they were, and so does the config; the new manifests name the new layer blobs, and a new
//! index names the new manifests. Nothing is tagged: the caller tags the returned root (or
//! copies it on). If anything fails, the blobs already written stay as unreferenced,
//! verified content, which garbage collection removes.
//!
//! What is kept as it is:
//! - layers already in the wanted compression (their blob is shared);
//! - non-distributable and foreign layers (their blobs usually live elsewhere);
//! - manifests that are not images (artifacts: their config is not an image config), and
//!   anything in an index that is neither a manifest nor an index.
//!
//! Docker schema 2 manifests stay Docker manifests for gzip and uncompressed layers. Docker
//! has no zstd layer type in common use, so for zstd a Docker manifest becomes an OCI
//! manifest (config and remaining layer media types mapped to their OCI twins, as skopeo
//! does), and a Docker manifest list holding one becomes an OCI index. Layer annotations
//! that describe the old compressed bytes (eStargz and zstd:chunked tables of contents) and
//! embedded `data` are dropped from the layers that change.
//!
//! ```
//! use ocikit_codec::compression::Compression;
//! use ocikit_layout::recompress::{RecompressOptions, recompress};
//! use ocikit_layout::{ImageBuilder, LayerSpec, Layout};
//! use ocikit_store::MemoryStore;
//!
//! # #[cfg(all(feature = "gzip", feature = "zstd"))]
//! # tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap().block_on(async {
//! let layout = Layout::create(MemoryStore::new()).await?;
//! # let dir = tempfile::tempdir().unwrap();
//! # std::fs::write(dir.path().join("hello"), "hello").unwrap();
//! let mut builder = ImageBuilder::new(&layout);
//! builder.add_layer_from_dir(dir.path(), LayerSpec::new()).await?; // gzip by default
//! let image = builder.write().await?;
//!
//! let report = recompress(&layout, &image, &RecompressOptions::new(Compression::Zstd)).await?;
//! assert_eq!(report.layers_recompressed, 1);
//! layout.set_tag("zstd", &report.root).await?;
//! # Ok::<(), ocikit_layout::Error>(())
//! # }).unwrap();
//! ```

use std::collections::HashMap;
use std::io::Write;

use futures::{StreamExt, TryStreamExt};
use ocikit_codec::Limits;
use ocikit_codec::compression::{Compression, Decoder};
use ocikit_codec::writer::{LayerOptions, LayerWriter};
use ocikit_digest::media_type::{self, MediaKind};
use ocikit_digest::oci_spec::image::Descriptor;
use ocikit_digest::{Digest, descriptor};
use serde_json::{Map, Value};

use crate::copy::MAX_GRAPH_DEPTH;
use crate::image::is_image_config;
use crate::progress::{Operation, Progress};
use crate::{Document, Error, ImageConfig, Layout, Result, bridge, source};

/// Layer annotation prefixes that describe a layer's compressed bytes (eStargz and
/// zstd:chunked tables of contents): stale once the layer is recompressed.
pub const COMPRESSED_BYTES_ANNOTATIONS: &[&str] = &[
    "containerd.io/snapshot/stargz/",
    "io.github.containers.zstd-chunked.",
    "io.github.containers.compression.",
];

/// How [`recompress`] runs.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RecompressOptions {
    /// The compression every layer should end up in.
    pub compression: Compression,
    /// The encoder's level (`None`: the codec's default, gzip 6 or zstd 3).
    pub level: Option<i32>,
    /// Encoder threads in all, shared by the layers recompressed at once: each of them gets
    /// `threads / layers at once` (at least 1), so that two layers on two CPUs run one worker
    /// each rather than two (which would only double the encoders' memory). gzip and zstd
    /// compress blocks in parallel; a layer's bytes are the same for any number of threads
    /// from 1 up.
    pub threads: usize,
    /// Layers recompressed at once.
    pub concurrency: usize,
    /// Bounds on decoding each source layer.
    pub limits: Limits,
    /// Where [`Operation::Recompress`] events go (one blob per source layer recompressed).
    pub progress: Progress,
}

impl RecompressOptions {
    /// Every layer to `compression` at its default level, two layers at a time, with as many
    /// encoder threads in all as CPUs.
    pub fn new(compression: Compression) -> RecompressOptions {
        RecompressOptions {
            compression,
            level: None,
            threads: std::thread::available_parallelism().map_or(1, usize::from),
            concurrency: 2,
            limits: Limits::default(),
            progress: Progress::none(),
        }
    }

    /// These options at compression level `level`.
    pub fn with_level(mut self, level: Option<i32>) -> RecompressOptions {
        self.level = level;
        self
    }

    /// These options with `threads` encoder threads in all (at least 1; see
    /// [`RecompressOptions::threads`]).
    pub fn with_threads(mut self, threads: usize) -> RecompressOptions {
        self.threads = threads.max(1);
        self
    }

    /// These options recompressing `n` layers at once (at least 1).
    pub fn with_concurrency(mut self, n: usize) -> RecompressOptions {
        self.concurrency = n.max(1);
        self
    }

    /// These options with other decoding limits.
    pub fn with_limits(mut self, limits: Limits) -> RecompressOptions {
        self.limits = limits;
        self
    }

    /// These options reporting to `progress`.
    pub fn with_progress(mut self, progress: Progress) -> RecompressOptions {
        self.progress = progress;
        self
    }
}

/// What [`recompress`] did.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RecompressReport {
    /// The recompressed image or index (the source's own descriptor when nothing changed),
    /// with the source descriptor's platform, annotations and artifact type.
    pub root: Descriptor,
    /// Image manifests rewritten.
    pub images: usize,
    /// Layers recompressed (each distinct source layer counts once).
    pub layers_recompressed: usize,
    /// Layers kept as they were (already in the wanted compression, or foreign).
    pub layers_kept: usize,
    /// Bytes of the source layers recompressed.
    pub bytes_read: u64,
    /// Bytes of the layers written.
    pub bytes_written: u64,
}

/// Writes into `layout` the image or index `root` points at with every layer in
/// `options.compression`, and returns the new root; see the [module documentation](self).
///
/// Errors: [`Error::UnsupportedMediaType`] for a root that is neither a manifest nor an
/// index, or an image layer whose compression cannot be decoded; [`Error::Layer`] naming a
/// layer that is missing, corrupt (a store digest or size mismatch), undecodable, or whose
/// content is not its diffID (a [`ocikit_codec::Error::DiffIdMismatch`]);
/// [`Error::InvalidDocument`] when the config's diffIDs and the layers disagree in number;
/// [`Error::GraphTooLarge`] for indexes nested deeper than [`MAX_GRAPH_DEPTH`].
pub async fn recompress(
    layout: &Layout,
    root: &Descriptor,
    options: &RecompressOptions,
) -> Result<RecompressReport> {
    let digest = digest_of(root)?;
    let media_type = root.media_type().to_string();
    if !media_type::is_manifest_like(&media_type) && !media_type::is_index_like(&media_type) {
        return Err(Error::UnsupportedMediaType {
            media_type,
            operation: "recompress",
        });
    }
    let mut run = Run {
        layout,
        options,
        root: digest,
        documents: HashMap::new(),
        layers: HashMap::new(),
        report: RecompressReport {
            root: root.clone(),
            images: 0,
            layers_recompressed: 0,
            layers_kept: 0,
            bytes_read: 0,
            bytes_written: 0,
        },
    };
    let new_root = run.node(root, 0).await?;
    let mut report = run.report;
    report.root = new_root;
    Ok(report)
}

/// One [`recompress`] call's state: what was converted already (documents and layers are
/// converted once, however often the graph names them).
struct Run<'a> {
    layout: &'a Layout,
    options: &'a RecompressOptions,
    root: Digest,
    documents: HashMap<Digest, Descriptor>,
    layers: HashMap<Digest, Map<String, Value>>,
    report: RecompressReport,
}

impl Run<'_> {
    /// The converted descriptor for `node` (a manifest, an index, or anything else, which is
    /// kept).
    async fn node(&mut self, node: &Descriptor, depth: usize) -> Result<Descriptor> {
        if depth > MAX_GRAPH_DEPTH {
            return Err(Error::GraphTooLarge {
                root: self.root.clone(),
                reason: "indexes are nested too deeply",
            });
        }
        let digest = digest_of(node)?;
        if let Some(done) = self.documents.get(&digest) {
            return Ok(with_target(node, done));
        }
        let converted = match self.layout.read_document(node).await? {
            Document::Manifest { manifest, bytes } => {
                if is_image_config(manifest.config().media_type().as_ref()) {
                    self.manifest(node, &digest, &manifest, &bytes).await?
                } else {
                    node.clone()
                }
            }
            Document::Index { index, bytes } => {
                let mut children = Vec::with_capacity(index.manifests().len());
                for child in index.manifests() {
                    // Boxed: the recursion's future would otherwise be infinitely large.
                    children.push(Box::pin(self.node(child, depth + 1)).await?);
                }
                self.index(node, &digest, &bytes, &children).await?
            }
            _ => node.clone(),
        };
        self.documents.insert(digest, converted.clone());
        Ok(converted)
    }

    /// A new image manifest with converted layers (or `node` itself when none changes).
    async fn manifest(
        &mut self,
        node: &Descriptor,
        digest: &Digest,
        manifest: &ocikit_digest::oci_spec::image::ImageManifest,
        bytes: &[u8],
    ) -> Result<Descriptor> {
        let config_bytes = self.layout.read_blob(manifest.config()).await?;
        let config_digest = digest_of(manifest.config())?;
        let config = ImageConfig::parse(&config_digest, &config_bytes)?;
        let layers = manifest.layers();
        config.check_layers(&config_digest, layers.len())?;
        let diff_ids = config.diff_ids();
        let target = self.options.compression;
        let docker = media_type::essence(node.media_type().as_ref()) == media_type::DOCKER_MANIFEST;
        // Docker manifests have no zstd layer type in common use: they become OCI.
        let oci = !docker || target == Compression::Zstd;

        let mut json = parse_object(digest, bytes)?;
        let mut plans = Vec::with_capacity(layers.len());
        for (layer, diff_id) in layers.iter().zip(&diff_ids) {
            plans.push(self.plan(layer, diff_id, oci)?);
        }
        // Each layer not converted yet, once (an image may list a layer twice).
        let mut unique: Vec<(Digest, u64, Compression, Digest)> = Vec::new();
        for plan in &plans {
            if let Plan::Recompress {
                digest,
                size,
                from,
                diff_id,
            } = plan
                && !self.layers.contains_key(digest)
                && !unique.iter().any(|(d, ..)| d == digest)
            {
                unique.push((digest.clone(), *size, *from, diff_id.clone()));
            }
        }
        let mut per_layer = self.options.clone();
        per_layer.threads =
            threads_per_layer(self.options.threads, self.options.concurrency, unique.len());
        let per_layer = &per_layer;
        let written: Vec<(Digest, u64, Map<String, Value>)> = futures::stream::iter(unique)
            .map(|(digest, size, from, diff_id)| {
                let layout = self.layout;
                let options = per_layer;
                let family = if oci { Family::Oci } else { Family::Docker };
                async move {
                    let fields =
                        recompress_layer(layout, &digest, size, from, &diff_id, family, options)
                            .await
                            .map_err(|e| Error::Layer {
                                digest: digest.clone(),
                                source: Box::new(e),
                            })?;
                    Ok::<_, Error>((digest, size, fields))
                }
            })
            .buffered(self.options.concurrency)
            .try_collect()
            .await?;
        for (digest, size, fields) in written {
            self.report.layers_recompressed += 1;
            self.report.bytes_read += size;
            self.report.bytes_written += fields
                .get("size")
                .and_then(Value::as_u64)
                .unwrap_or_default();
            self.layers.insert(digest, fields);
        }

        let mut changed = false;
        let json_layers = json
            .get_mut("layers")
            .and_then(Value::as_array_mut)
            .ok_or_else(|| invalid(digest, "the manifest has no layers array"))?;
        for (entry, plan) in json_layers.iter_mut().zip(&plans) {
            let Value::Object(entry) = entry else {
                return Err(invalid(digest, "a layer descriptor is not an object"));
            };
            match plan {
                Plan::Keep => self.report.layers_kept += 1,
                Plan::Rename(media_type) => {
                    self.report.layers_kept += 1;
                    entry.insert("mediaType".into(), Value::from(*media_type));
                    changed = true;
                }
                Plan::Recompress { digest, .. } => {
                    let fields = self
                        .layers
                        .get(digest)
                        .ok_or_else(|| invalid(digest, "a recompressed layer went missing"))?;
                    replace_blob(entry, fields);
                    changed = true;
                }
            }
        }
        if oci && docker {
            json.insert("mediaType".into(), Value::from(media_type::IMAGE_MANIFEST));
            if let Some(Value::Object(config)) = json.get_mut("config") {
                config.insert("mediaType".into(), Value::from(media_type::IMAGE_CONFIG));
            }
            changed = true;
        }
        if !changed {
            return Ok(node.clone());
        }
        self.report.images += 1;
        let manifest_type = if oci {
            media_type::IMAGE_MANIFEST
        } else {
            media_type::DOCKER_MANIFEST
        };
        self.write_document(node, manifest_type, &Value::Object(json))
            .await
    }

    /// What to do with one layer of an image whose manifest is (or becomes) `oci`.
    fn plan(&self, layer: &Descriptor, diff_id: &Digest, oci: bool) -> Result<Plan> {
        let declared = layer.media_type().to_string();
        let MediaKind::Layer {
            compression,
            distributable,
            docker,
        } = media_type::classify(&declared)
        else {
            return Err(Error::UnsupportedMediaType {
                media_type: declared,
                operation: "recompress",
            });
        };
        let renamed = |to: &'static str| {
            if media_type::essence(&declared) == to {
                Plan::Keep
            } else {
                Plan::Rename(to)
            }
        };
        if !distributable {
            // Foreign layers keep their bytes; only a Docker manifest turning OCI renames them.
            return Ok(match (docker && oci, compression) {
                (false, _) => Plan::Keep,
                (true, Compression::None) => renamed(media_type::IMAGE_LAYER_NONDISTRIBUTABLE),
                (true, Compression::Gzip) => renamed(media_type::IMAGE_LAYER_NONDISTRIBUTABLE_GZIP),
                (true, Compression::Zstd) => renamed(media_type::IMAGE_LAYER_NONDISTRIBUTABLE_ZSTD),
                (true, _) => {
                    return Err(Error::UnsupportedMediaType {
                        media_type: declared,
                        operation: "recompress",
                    });
                }
            });
        }
        if compression == self.options.compression {
            let family = if oci { Family::Oci } else { Family::Docker };
            return Ok(renamed(family.layer_type(compression)));
        }
        Ok(Plan::Recompress {
            digest: digest_of(layer)?,
            size: layer.size(),
            from: compression,
            diff_id: diff_id.clone(),
        })
    }

    /// A new index naming `children` in place of its entries (or `node` itself when none
    /// changes).
    async fn index(
        &mut self,
        node: &Descriptor,
        digest: &Digest,
        bytes: &[u8],
        children: &[Descriptor],
    ) -> Result<Descriptor> {
        let mut json = parse_object(digest, bytes)?;
        let entries = json
            .get_mut("manifests")
            .and_then(Value::as_array_mut)
            .ok_or_else(|| invalid(digest, "the index has no manifests array"))?;
        let mut changed = false;
        let mut any_oci = false;
        for (entry, child) in entries.iter_mut().zip(children) {
            let Value::Object(entry) = entry else {
                return Err(invalid(digest, "a manifest descriptor is not an object"));
            };
            let child_type = child.media_type().to_string();
            any_oci |= media_type::essence(&child_type) == media_type::IMAGE_MANIFEST
                || media_type::essence(&child_type) == media_type::IMAGE_INDEX;
            let same = entry.get("digest").and_then(Value::as_str)
                == Some(child.digest().to_string().as_str());
            if !same {
                let fields = blob_fields(&child_type, &digest_of(child)?, child.size());
                replace_blob(entry, &fields);
                changed = true;
            }
        }
        let docker_list =
            media_type::essence(node.media_type().as_ref()) == media_type::DOCKER_MANIFEST_LIST;
        let index_type = if docker_list && any_oci {
            json.insert("mediaType".into(), Value::from(media_type::IMAGE_INDEX));
            changed = true;
            media_type::IMAGE_INDEX
        } else if docker_list {
            media_type::DOCKER_MANIFEST_LIST
        } else {
            media_type::IMAGE_INDEX
        };
        if !changed {
            return Ok(node.clone());
        }
        self.write_document(node, index_type, &Value::Object(json))
            .await
    }

    /// Stores `json` as a document of `media_type`; returns `node` pointing at it.
    async fn write_document(
        &self,
        node: &Descriptor,
        media_type: &str,
        json: &Value,
    ) -> Result<Descriptor> {
        let written = self.layout.put_json(media_type, json).await?;
        Ok(with_target(node, &written))
    }
}

/// What happens to one layer.
enum Plan {
    /// Kept exactly.
    Keep,
    /// Same blob, another media type name (a Docker layer in a manifest turned OCI).
    Rename(&'static str),
    /// Decoded from `from` and encoded anew.
    Recompress {
        digest: Digest,
        size: u64,
        from: Compression,
        diff_id: Digest,
    },
}

/// Which family of layer media types a manifest uses.
#[derive(Clone, Copy)]
enum Family {
    Oci,
    Docker,
}

impl Family {
    fn layer_type(self, compression: Compression) -> &'static str {
        match (self, compression) {
            (Family::Docker, Compression::None) => media_type::DOCKER_LAYER,
            (Family::Docker, Compression::Gzip) => media_type::DOCKER_LAYER_GZIP,
            (_, compression) => media_type::oci_layer_type(compression),
        }
    }
}

/// Each layer's encoder threads when `layers` layers are to be recompressed, `concurrency`
/// at once, with `threads` in all: never more workers in total than `threads` (each zstd
/// worker holds its jobs' buffers; more workers than CPUs only add memory), at least one
/// per layer.
fn threads_per_layer(threads: usize, concurrency: usize, layers: usize) -> usize {
    let at_once = concurrency.min(layers).max(1);
    (threads / at_once).max(1)
}

/// Recompresses one layer blob into a new blob of the layout; returns the new descriptor's
/// `mediaType`, `digest` and `size` as JSON fields.
async fn recompress_layer(
    layout: &Layout,
    digest: &Digest,
    size: u64,
    from: Compression,
    diff_id: &Digest,
    family: Family,
    options: &RecompressOptions,
) -> Result<Map<String, Value>> {
    let store = layout.store();
    let (out, pump) = bridge::blob_sink(store).await?;
    let layer_options = {
        let mut layer = LayerOptions::new(options.compression).with_threads(options.threads);
        if let Some(level) = options.level {
            layer = layer.with_level(level);
        }
        layer
    };
    let limits = options.limits;
    let expected = diff_id.clone();
    let read = source::read_verified(
        store,
        digest,
        size,
        Operation::Recompress,
        &options.progress,
        move |blob| {
            let mut out = out;
            let decoder = Decoder::new(blob, from, limits);
            let (_, info) = LayerWriter::from_reader(decoder, &mut out, layer_options)?;
            out.flush()
                .map_err(|e| Error::Codec(ocikit_codec::compression::error_from_io(e)))?;
            Ok(info)
        },
    );
    let (pumped, read) = futures::join!(pump, read);
    // A layer whose content is not its diffID is refused, never published re-labelled.
    let checked = read.and_then(|info| {
        if info.diff_id == expected {
            let (digest, size) = (info.digest.clone(), info.size);
            Ok((info, digest, size))
        } else {
            Err(Error::Codec(ocikit_codec::Error::DiffIdMismatch {
                expected,
                actual: info.diff_id,
            }))
        }
    });
    let info = bridge::finish(pumped, checked).await?;
    Ok(blob_fields(
        family.layer_type(options.compression),
        &info.digest,
        info.size,
    ))
}

/// The `mediaType`, `digest` and `size` fields of a descriptor.
fn blob_fields(media_type: &str, digest: &Digest, size: u64) -> Map<String, Value> {
    let mut fields = Map::new();
    fields.insert("mediaType".into(), Value::from(media_type));
    fields.insert("digest".into(), Value::from(digest.to_string()));
    fields.insert("size".into(), Value::from(size));
    fields
}

/// Points the descriptor `entry` at another blob: `fields` replace its media type, digest
/// and size, and what described the old bytes (embedded data, URLs, compressed-bytes
/// annotations) goes.
fn replace_blob(entry: &mut Map<String, Value>, fields: &Map<String, Value>) {
    for (key, value) in fields {
        entry.insert(key.clone(), value.clone());
    }
    entry.remove("data");
    entry.remove("urls");
    if let Some(Value::Object(annotations)) = entry.get_mut("annotations") {
        annotations.retain(|key, _| {
            !COMPRESSED_BYTES_ANNOTATIONS
                .iter()
                .any(|prefix| key.starts_with(prefix))
        });
        if annotations.is_empty() {
            entry.remove("annotations");
        }
    }
}

/// `node` (keeping its platform, annotations, artifact type) pointing at `target`'s blob.
fn with_target(node: &Descriptor, target: &Descriptor) -> Descriptor {
    let mut descriptor = node.clone();
    descriptor.set_media_type(target.media_type().clone());
    descriptor.set_digest(target.digest().clone());
    descriptor.set_size(target.size());
    descriptor.set_data(None);
    descriptor.set_urls(None);
    descriptor
}

fn parse_object(digest: &Digest, bytes: &[u8]) -> Result<Map<String, Value>> {
    // Already parsed strictly by `read_document`; this copy keeps unknown fields.
    match serde_json::from_slice(bytes) {
        Ok(Value::Object(object)) => Ok(object),
        _ => Err(invalid(digest, "not a JSON object")),
    }
}

fn digest_of(descriptor: &Descriptor) -> Result<Digest> {
    descriptor::digest_of(descriptor).map_err(|e| Error::InvalidDocument {
        digest: Digest::sha256(b""),
        reason: "invalid descriptor digest".into(),
        source: Some(Box::new(e.into())),
    })
}

fn invalid(digest: &Digest, reason: &str) -> Error {
    Error::InvalidDocument {
        digest: digest.clone(),
        reason: reason.into(),
        source: None,
    }
}

#[cfg(test)]
mod tests {
    use super::threads_per_layer;

    #[test]
    fn the_layers_in_flight_share_the_encoder_threads() {
        // Two CPUs, two layers at once: one worker each, not two.
        assert_eq!(threads_per_layer(2, 2, 5), 1);
        // A single layer gets them all.
        assert_eq!(threads_per_layer(2, 2, 1), 2);
        assert_eq!(threads_per_layer(8, 2, 1), 8);
        assert_eq!(threads_per_layer(8, 2, 3), 4);
        assert_eq!(threads_per_layer(9, 4, 4), 2);
        // Never none, even with fewer threads than layers at once (or nothing to do).
        assert_eq!(threads_per_layer(1, 2, 2), 1);
        assert_eq!(threads_per_layer(3, 8, 8), 1);
        assert_eq!(threads_per_layer(2, 2, 0), 2);
    }
}
