//! Converting images between OCI and Docker schema 2 manifests, as `skopeo copy --format`
//! does: [`plan`] reads an image or index and works out the converted documents (refusing
//! what the other format cannot say), [`Conversion::write`] stores them.
//!
//! Only manifests and indexes change: the config blob keeps its bytes (its descriptor's
//! media type becomes [`DOCKER_CONFIG`](media_type::DOCKER_CONFIG) or
//! [`IMAGE_CONFIG`](media_type::IMAGE_CONFIG)), every layer keeps its blob (only the name of
//! its media type changes), so a converted image has a new manifest digest and nothing is
//! re-encoded. The layer types map one to one:
//!
//! | OCI | Docker schema 2 |
//! |---|---|
//! | `…image.layer.v1.tar` | `…image.rootfs.diff.tar` |
//! | `…image.layer.v1.tar+gzip` | `…image.rootfs.diff.tar.gzip` |
//! | `…image.layer.nondistributable.v1.tar` | `…image.rootfs.foreign.diff.tar` |
//! | `…image.layer.nondistributable.v1.tar+gzip` | `…image.rootfs.foreign.diff.tar.gzip` |
//! | `…image.layer.v1.tar+zstd` (and the non-distributable one) | none: refused |
//!
//! (Docker's own `…rootfs.diff.tar.zstd` becomes the OCI zstd type.) An index becomes a
//! manifest list and back, each image in it converted; a manifest list cannot hold an index,
//! an artifact or anything but images, so those are refused, and so is the conversion of
//! any manifest whose config is not an image config (artifacts, Docker plugins); one already
//! in the format is kept. An index entry without a platform gets its image config's (a
//! manifest list entry must have one).
//!
//! A manifest or index with a `subject` (a referrer: a signature, an SBOM, ...) is refused
//! for Docker schema 2, which has no field for it: dropping it would cut the referrer from
//! the image it is about (skopeo drops it). So are, unless the caller asks to drop them
//! ([`ConvertOptions::with_drop_annotations`]; skopeo drops them silently), the other
//! fields Docker schema 2 has no place for: a manifest's and an index's `annotations` and
//! `artifactType`, and those of a descriptor (layer, config, index entry), each refused as
//! [`Refusal::Annotations`] naming the field. A descriptor's `data` is dropped: it only
//! repeats the blob's bytes. Nothing else is lost: converting back gives an image with the
//! same config and layers. A document already in the wanted format is kept as it is, so a
//! second conversion changes nothing.
//!
//! [`plan`] reads only; every refusal comes from it, so a refused conversion writes nothing.
//!
//! ```
//! use ocikit_layout::convert::{ManifestFormat, plan};
//! use ocikit_layout::{ImageBuilder, LayerSpec, Layout};
//! use ocikit_store::MemoryStore;
//!
//! # #[cfg(feature = "gzip")]
//! # tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap().block_on(async {
//! let layout = Layout::create(MemoryStore::new()).await?;
//! # let dir = tempfile::tempdir().unwrap();
//! # std::fs::write(dir.path().join("hello"), "hello").unwrap();
//! let mut builder = ImageBuilder::new(&layout);
//! builder.add_layer_from_dir(dir.path(), LayerSpec::new()).await?; // gzip by default
//! let image = builder.write().await?;
//!
//! let report = plan(&layout, &image, ManifestFormat::DockerV2S2).await?.write(&layout).await?;
//! assert_eq!(
//!     report.root.media_type().to_string(),
//!     "application/vnd.docker.distribution.manifest.v2+json"
//! );
//! # Ok::<(), ocikit_layout::Error>(())
//! # }).unwrap();
//! ```

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use ocikit_digest::media_type::{self, Compression, MediaKind};
use ocikit_digest::oci_spec::image::{Descriptor, ImageManifest};
use ocikit_digest::{Digest, descriptor, json};
use serde_json::{Map, Value};

use crate::copy::MAX_GRAPH_DEPTH;
use crate::image::is_image_config;
use crate::{Document, Error, ImageConfig, Layout, Result};

/// The manifest format an image is converted to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ManifestFormat {
    /// OCI image manifests and indexes (`oci`).
    Oci,
    /// Docker image manifests, schema 2, and manifest lists (`v2s2`).
    DockerV2S2,
}

impl ManifestFormat {
    /// The name skopeo's `--format` gives it: `oci` or `v2s2`.
    pub fn name(self) -> &'static str {
        match self {
            ManifestFormat::Oci => "oci",
            ManifestFormat::DockerV2S2 => "v2s2",
        }
    }

    /// The media type of its image manifests.
    pub fn manifest_media_type(self) -> &'static str {
        match self {
            ManifestFormat::Oci => media_type::IMAGE_MANIFEST,
            ManifestFormat::DockerV2S2 => media_type::DOCKER_MANIFEST,
        }
    }

    /// The media type of its indexes.
    pub fn index_media_type(self) -> &'static str {
        match self {
            ManifestFormat::Oci => media_type::IMAGE_INDEX,
            ManifestFormat::DockerV2S2 => media_type::DOCKER_MANIFEST_LIST,
        }
    }

    /// The media type of its image configs.
    pub fn config_media_type(self) -> &'static str {
        match self {
            ManifestFormat::Oci => media_type::IMAGE_CONFIG,
            ManifestFormat::DockerV2S2 => media_type::DOCKER_CONFIG,
        }
    }

    /// Whether its layers can be compressed with `compression` (Docker schema 2 has no
    /// zstd layers).
    pub fn supports(self, compression: Compression) -> bool {
        !(self == ManifestFormat::DockerV2S2 && compression == Compression::Zstd)
    }
}

impl fmt::Display for ManifestFormat {
    /// [`name`](ManifestFormat::name).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is neither `oci` nor `v2s2`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown manifest format {0:?} (expected oci or v2s2)")]
pub struct UnknownFormat(pub String);

impl FromStr for ManifestFormat {
    type Err = UnknownFormat;

    /// `oci` or `v2s2` (skopeo's names; `v2s1` is not supported).
    fn from_str(s: &str) -> std::result::Result<ManifestFormat, UnknownFormat> {
        match s {
            "oci" => Ok(ManifestFormat::Oci),
            "v2s2" => Ok(ManifestFormat::DockerV2S2),
            other => Err(UnknownFormat(other.to_string())),
        }
    }
}

/// Why an image or index cannot be converted (see [`Error::Unconvertible`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// A zstd layer: Docker schema 2 has no media type for it.
    #[error("layer {layer} is zstd-compressed, which docker schema 2 cannot describe")]
    ZstdLayer {
        /// The layer's digest.
        layer: Digest,
    },
    /// A layer media type with no twin in the other format (encrypted, unknown).
    #[error("layer {layer} has media type `{media_type}`, which has no {format} twin")]
    LayerMediaType {
        /// The layer's digest.
        layer: Digest,
        /// Its media type.
        media_type: String,
        /// The format converted to.
        format: ManifestFormat,
    },
    /// A manifest whose config is not an image config (an artifact, a Docker plugin).
    #[error("its config has media type `{media_type}`, not an image config")]
    NotAnImage {
        /// The config's media type.
        media_type: String,
    },
    /// An index entry a Docker manifest list cannot hold (an index, an artifact, a blob).
    #[error("entry {child} has media type `{media_type}`: a manifest list holds only images")]
    NotAnImageEntry {
        /// The entry's digest.
        child: Digest,
        /// Its media type.
        media_type: String,
    },
    /// A manifest or index that refers to another (`subject`, a referrer): dropping the
    /// field would cut it from the image it is about.
    #[error("it refers to {subject} (subject), which docker schema 2 cannot say")]
    Subject {
        /// The digest of the document it refers to.
        subject: Digest,
    },
    /// Annotations or an artifact type, which docker schema 2 has no field for, and the
    /// caller did not ask to drop ([`ConvertOptions::with_drop_annotations`]).
    #[error(
        "its {field} would be lost: docker schema 2 has no field for it (drop annotations \
         explicitly to convert)"
    )]
    Annotations {
        /// What would be lost: `annotations (KEY, ...)` or `artifactType TYPE`, of the
        /// document or of one of its descriptors.
        field: String,
    },
}

/// How [`plan_with`] converts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConvertOptions {
    drop_annotations: bool,
}

impl ConvertOptions {
    /// Refuses to lose annotations (the default).
    pub fn new() -> ConvertOptions {
        ConvertOptions::default()
    }

    /// Drops annotations and artifact types that the format has no field for instead of
    /// refusing ([`Refusal::Annotations`]), as skopeo's `--format v2s2` does. A `subject`
    /// is refused all the same.
    pub fn with_drop_annotations(mut self, drop: bool) -> ConvertOptions {
        self.drop_annotations = drop;
        self
    }
}

/// A planned conversion: the documents to write, children first, and the new root.
#[derive(Clone, Debug)]
pub struct Conversion {
    root: Descriptor,
    documents: Vec<(&'static str, Vec<u8>)>,
    manifests: usize,
    indexes: usize,
}

/// What a conversion did.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ConvertReport {
    /// The converted image or index (the source's own descriptor when it was in the format
    /// already), with the source descriptor's platform.
    pub root: Descriptor,
    /// Image manifests rewritten.
    pub manifests: usize,
    /// Indexes rewritten.
    pub indexes: usize,
}

impl Conversion {
    /// The root the conversion gives (written or not).
    pub fn root(&self) -> &Descriptor {
        &self.root
    }

    /// Whether anything changes (false when the image is in the format already).
    pub fn changes(&self) -> bool {
        !self.documents.is_empty()
    }

    /// Stores the converted documents in `layout`, children first; the layout must hold
    /// the image's configs and layers (the one [`plan`] read, or a copy of its image).
    /// Nothing is tagged: the caller tags [`ConvertReport::root`].
    pub async fn write(self, layout: &Layout) -> Result<ConvertReport> {
        for (media_type, bytes) in &self.documents {
            layout.put_blob(media_type, bytes).await?;
        }
        Ok(ConvertReport {
            root: self.root,
            manifests: self.manifests,
            indexes: self.indexes,
        })
    }
}

/// Works out the conversion of the image or index `root` of `layout` to `format`, reading
/// only; see the [module documentation](self).
///
/// Errors: [`Error::Unconvertible`] naming the document and the [`Refusal`];
/// [`Error::UnsupportedMediaType`] for a root that is neither a manifest nor an index;
/// [`Error::GraphTooLarge`] for indexes nested deeper than [`MAX_GRAPH_DEPTH`]; read errors
/// of the documents and configs.
pub async fn plan(
    layout: &Layout,
    root: &Descriptor,
    format: ManifestFormat,
) -> Result<Conversion> {
    plan_with(layout, root, format, &ConvertOptions::new()).await
}

/// [`plan`] with options: whether annotations may be dropped.
pub async fn plan_with(
    layout: &Layout,
    root: &Descriptor,
    format: ManifestFormat,
    options: &ConvertOptions,
) -> Result<Conversion> {
    let media_type = root.media_type().to_string();
    if !media_type::is_manifest_like(&media_type) && !media_type::is_index_like(&media_type) {
        return Err(Error::UnsupportedMediaType {
            media_type,
            operation: "convert",
        });
    }
    let mut run = Planner {
        layout,
        format,
        drop_annotations: options.drop_annotations,
        root: digest_of(root)?,
        done: HashMap::new(),
        conversion: Conversion {
            root: root.clone(),
            documents: Vec::new(),
            manifests: 0,
            indexes: 0,
        },
    };
    let (new_root, _) = run.node(root, 0).await?;
    let mut conversion = run.conversion;
    conversion.root = new_root;
    Ok(conversion)
}

/// [`plan`] and [`Conversion::write`] into the same layout.
pub async fn convert(
    layout: &Layout,
    root: &Descriptor,
    format: ManifestFormat,
) -> Result<ConvertReport> {
    plan(layout, root, format).await?.write(layout).await
}

/// One [`plan`]'s state: each document is converted once, however often it is named.
struct Planner<'a> {
    layout: &'a Layout,
    format: ManifestFormat,
    /// Whether annotations schema 2 cannot hold are dropped rather than refused.
    drop_annotations: bool,
    root: Digest,
    /// Converted node per source digest, with the platform of its image's config.
    done: HashMap<Digest, (Descriptor, Option<Value>)>,
    conversion: Conversion,
}

impl Planner<'_> {
    /// The converted descriptor of `node`, and for an image its config's platform as JSON.
    async fn node(
        &mut self,
        node: &Descriptor,
        depth: usize,
    ) -> Result<(Descriptor, Option<Value>)> {
        if depth > MAX_GRAPH_DEPTH {
            return Err(Error::GraphTooLarge {
                root: self.root.clone(),
                reason: "indexes are nested too deeply",
            });
        }
        let digest = digest_of(node)?;
        if let Some((done, platform)) = self.done.get(&digest) {
            return Ok((with_target(node, done), platform.clone()));
        }
        let converted = match self.layout.read_document(node).await? {
            Document::Manifest { manifest, bytes } => {
                self.manifest(node, &digest, &manifest, &bytes).await?
            }
            Document::Index { index, bytes } => {
                let mut children = Vec::with_capacity(index.manifests().len());
                for child in index.manifests() {
                    let child_type = child.media_type().to_string();
                    let kind = media_type::classify(&child_type);
                    let docker_list = self.format == ManifestFormat::DockerV2S2;
                    if docker_list && !kind.is_manifest_like() {
                        return Err(self.refuse(
                            &digest,
                            Refusal::NotAnImageEntry {
                                child: digest_of(child)?,
                                media_type: child_type,
                            },
                        ));
                    }
                    if kind.is_manifest_like() || kind.is_index_like() {
                        // Boxed: the recursion's future would otherwise be infinitely large.
                        children.push(Some(Box::pin(self.node(child, depth + 1)).await?));
                    } else {
                        children.push(None);
                    }
                }
                (self.index(node, &digest, &bytes, &children)?, None)
            }
            _ => (node.clone(), None),
        };
        self.done.insert(digest, converted.clone());
        Ok(converted)
    }

    fn refuse(&self, digest: &Digest, refusal: Refusal) -> Error {
        Error::Unconvertible {
            digest: digest.clone(),
            format: self.format,
            refusal: Box::new(refusal),
        }
    }

    /// [`Refusal::Subject`] when the document `json` (to become Docker schema 2, which has
    /// no such field) names a subject.
    fn refuse_subject(&self, digest: &Digest, json: &Map<String, Value>) -> Result<()> {
        let Some(subject) = json.get("subject") else {
            return Ok(());
        };
        let subject = subject
            .get("digest")
            .and_then(Value::as_str)
            .and_then(|d| Digest::parse(d).ok())
            .ok_or_else(|| invalid(digest, "the subject has no valid digest"))?;
        Err(self.refuse(digest, Refusal::Subject { subject }))
    }

    /// [`Refusal::Annotations`] when `json` (a document, or a descriptor: `whose` says
    /// which, empty for the document itself) has annotations or an artifact type that
    /// Docker schema 2 would lose, unless they may be dropped.
    fn refuse_annotations(
        &self,
        digest: &Digest,
        whose: &str,
        json: &Map<String, Value>,
    ) -> Result<()> {
        if self.drop_annotations || self.format != ManifestFormat::DockerV2S2 {
            return Ok(());
        }
        let field = match (json.get("annotations"), json.get("artifactType")) {
            (Some(Value::Object(annotations)), _) if !annotations.is_empty() => {
                let keys: Vec<&str> = annotations.keys().map(String::as_str).collect();
                format!("annotations ({})", keys.join(", "))
            }
            (_, Some(Value::String(artifact_type))) => format!("artifactType {artifact_type}"),
            _ => return Ok(()),
        };
        let field = if whose.is_empty() {
            field
        } else {
            format!("{whose}'s {field}")
        };
        Err(self.refuse(digest, Refusal::Annotations { field }))
    }

    /// An image manifest in the format (`node` itself when it is in it already).
    async fn manifest(
        &mut self,
        node: &Descriptor,
        digest: &Digest,
        manifest: &ImageManifest,
        bytes: &[u8],
    ) -> Result<(Descriptor, Option<Value>)> {
        let config_type = manifest.config().media_type().to_string();
        let target = self.format.manifest_media_type();
        let already = media_type::essence(node.media_type().as_ref()) == target;
        // A document in the format is kept, artifacts included; only a manifest list
        // needs an image's platform.
        if already && (self.format == ManifestFormat::Oci || !is_image_config(&config_type)) {
            return Ok((node.clone(), None));
        }
        if !is_image_config(&config_type) {
            return Err(self.refuse(
                digest,
                Refusal::NotAnImage {
                    media_type: config_type,
                },
            ));
        }
        let config_digest = digest_of(manifest.config())?;
        let config = ImageConfig::parse(
            &config_digest,
            &self.layout.read_blob(manifest.config()).await?,
        )?;
        let platform = serde_json::to_value(config.platform()).ok();
        if already {
            return Ok((node.clone(), platform));
        }
        let mut json = parse_object(digest, bytes)?;
        if self.format == ManifestFormat::DockerV2S2 {
            // A subject first: it is refused even where annotations may be dropped.
            self.refuse_subject(digest, &json)?;
        }
        let mut layers = Vec::with_capacity(manifest.layers().len());
        let json_layers = match json.remove("layers") {
            Some(Value::Array(layers)) => layers,
            _ => return Err(invalid(digest, "the manifest has no layers array")),
        };
        for (layer, entry) in manifest.layers().iter().zip(json_layers) {
            let Value::Object(entry) = entry else {
                return Err(invalid(digest, "a layer descriptor is not an object"));
            };
            let renamed = self.layer_type(digest, layer)?;
            self.refuse_annotations(digest, &format!("layer {}", layer.digest()), &entry)?;
            layers.push(Value::Object(self.descriptor(entry, renamed)));
        }
        let config_entry = match json.remove("config") {
            Some(Value::Object(config)) => config,
            _ => return Err(invalid(digest, "the manifest has no config object")),
        };
        self.refuse_annotations(digest, "config descriptor", &config_entry)?;
        let config_entry = self.descriptor(config_entry, self.format.config_media_type());
        if self.format == ManifestFormat::DockerV2S2 {
            self.refuse_annotations(digest, "", &json)?;
            // Schema 2 has no annotations or artifactType: dropped when asked.
            json.retain(|key, _| key == "schemaVersion");
        }
        json.insert("mediaType".into(), Value::from(target));
        json.insert("config".into(), Value::Object(config_entry));
        json.insert("layers".into(), Value::Array(layers));
        self.conversion.manifests += 1;
        Ok((self.stage(node, digest, target, &json)?, platform))
    }

    /// The media type a layer gets in the format, or the refusal.
    fn layer_type(&self, manifest: &Digest, layer: &Descriptor) -> Result<&'static str> {
        let declared = layer.media_type().to_string();
        let to_docker = self.format == ManifestFormat::DockerV2S2;
        let mapped = match media_type::classify(&declared) {
            MediaKind::Layer {
                compression: Compression::Zstd,
                ..
            } if to_docker => {
                return Err(self.refuse(
                    manifest,
                    Refusal::ZstdLayer {
                        layer: digest_of(layer)?,
                    },
                ));
            }
            MediaKind::Layer {
                compression,
                distributable,
                ..
            } => match (to_docker, distributable, compression) {
                (true, true, Compression::None) => Some(media_type::DOCKER_LAYER),
                (true, true, Compression::Gzip) => Some(media_type::DOCKER_LAYER_GZIP),
                (true, false, Compression::None) => Some(media_type::DOCKER_FOREIGN_LAYER),
                (true, false, Compression::Gzip) => Some(media_type::DOCKER_FOREIGN_LAYER_GZIP),
                (false, true, c) => Some(media_type::oci_layer_type(c)),
                (false, false, Compression::None) => Some(media_type::IMAGE_LAYER_NONDISTRIBUTABLE),
                (false, false, Compression::Gzip) => {
                    Some(media_type::IMAGE_LAYER_NONDISTRIBUTABLE_GZIP)
                }
                (false, false, Compression::Zstd) => {
                    Some(media_type::IMAGE_LAYER_NONDISTRIBUTABLE_ZSTD)
                }
                _ => None,
            },
            _ => None,
        };
        match mapped {
            Some(mapped) => Ok(mapped),
            None => Err(self.refuse(
                manifest,
                Refusal::LayerMediaType {
                    layer: digest_of(layer)?,
                    media_type: declared,
                    format: self.format,
                },
            )),
        }
    }

    /// A descriptor (as JSON) with `media_type`; for Docker only the fields schema 2 has.
    fn descriptor(&self, mut entry: Map<String, Value>, media_type: &str) -> Map<String, Value> {
        if self.format == ManifestFormat::DockerV2S2 {
            entry.retain(|key, _| matches!(key.as_str(), "size" | "digest" | "urls"));
        }
        entry.insert("mediaType".into(), Value::from(media_type));
        entry
    }

    /// An index in the format naming the converted `children` (`node` itself when nothing
    /// changes). `children` holds, per entry, its conversion and its image's platform, or
    /// `None` for an entry that is kept (not a manifest or index).
    fn index(
        &mut self,
        node: &Descriptor,
        digest: &Digest,
        bytes: &[u8],
        children: &[Option<(Descriptor, Option<Value>)>],
    ) -> Result<Descriptor> {
        let target = self.format.index_media_type();
        let to_docker = self.format == ManifestFormat::DockerV2S2;
        let mut json = parse_object(digest, bytes)?;
        let entries = match json.remove("manifests") {
            Some(Value::Array(entries)) => entries,
            _ => return Err(invalid(digest, "the index has no manifests array")),
        };
        let mut changed = media_type::essence(node.media_type().as_ref()) != target;
        let mut converted = Vec::with_capacity(entries.len());
        for (entry, child) in entries.into_iter().zip(children) {
            let Value::Object(mut entry) = entry else {
                return Err(invalid(digest, "a manifest descriptor is not an object"));
            };
            if let Some((child, platform)) = child {
                let same = entry.get("digest").and_then(Value::as_str)
                    == Some(child.digest().to_string().as_str());
                changed |= !same;
                let child_type = child.media_type().to_string();
                entry.insert("digest".into(), Value::from(child.digest().to_string()));
                entry.insert("size".into(), Value::from(child.size()));
                if to_docker {
                    self.refuse_annotations(digest, &format!("entry {}", child.digest()), &entry)?;
                    entry.retain(|key, _| {
                        matches!(key.as_str(), "size" | "digest" | "urls" | "platform")
                    });
                    if !entry.contains_key("platform")
                        && let Some(platform) = platform
                    {
                        entry.insert("platform".into(), platform.clone());
                    }
                } else if let Some(Value::Object(platform)) = entry.get_mut("platform") {
                    // OCI platforms have no `features` (skopeo drops it too).
                    platform.remove("features");
                }
                entry.insert("mediaType".into(), Value::from(child_type));
            }
            converted.push(Value::Object(entry));
        }
        if !changed {
            return Ok(node.clone());
        }
        if to_docker {
            self.refuse_subject(digest, &json)?;
            self.refuse_annotations(digest, "", &json)?;
            json.retain(|key, _| key == "schemaVersion");
        }
        json.insert("mediaType".into(), Value::from(target));
        json.insert("manifests".into(), Value::Array(converted));
        self.conversion.indexes += 1;
        self.stage(node, digest, target, &json)
    }

    /// Adds `json` to the documents to write; returns `node` pointing at it.
    fn stage(
        &mut self,
        node: &Descriptor,
        digest: &Digest,
        media_type: &'static str,
        json: &Map<String, Value>,
    ) -> Result<Descriptor> {
        let bytes = json::to_canonical_vec(json).map_err(|e| Error::InvalidDocument {
            digest: digest.clone(),
            reason: "cannot serialise the converted document".into(),
            source: Some(Box::new(e.into())),
        })?;
        let written = descriptor::new(media_type, &Digest::sha256(&bytes), bytes.len() as u64)
            .map_err(|e| Error::InvalidDocument {
                digest: digest.clone(),
                reason: "cannot describe the converted document".into(),
                source: Some(Box::new(e.into())),
            })?;
        // The converted document must be one the strict parser accepts.
        crate::document::parse(&written, bytes.clone().into())?;
        self.conversion.documents.push((media_type, bytes));
        Ok(with_target(node, &written))
    }
}

/// `node` (keeping its platform) pointing at `target`'s blob; annotations and artifact
/// type go when the target is a Docker document (schema 2 has neither).
fn with_target(node: &Descriptor, target: &Descriptor) -> Descriptor {
    let mut descriptor = node.clone();
    descriptor.set_media_type(target.media_type().clone());
    descriptor.set_digest(target.digest().clone());
    descriptor.set_size(target.size());
    descriptor.set_data(None);
    let essence = target.media_type().to_string();
    if matches!(
        media_type::classify(&essence),
        MediaKind::DockerManifest | MediaKind::DockerManifestList
    ) {
        descriptor.set_annotations(None);
        descriptor.set_artifact_type(None);
    }
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
