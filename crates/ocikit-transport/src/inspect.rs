//! What an image is ([`inspect`], [`inspect_raw`], [`inspect_config`]) and what a registry
//! repository holds ([`tags`]): `ocikit inspect` and `ocikit tags`.

use std::collections::{BTreeMap, HashMap};

use ocikit_digest::media_type;
use ocikit_digest::oci_spec::image::{Descriptor, ImageIndex, ImageManifest};
use ocikit_digest::platform;
use ocikit_layout::{Document, Layout};
use serde::Serialize;
use serde_json::Value;

use crate::access::RegistryOptions;
use crate::error::{Error, Operation, Result};
use crate::image::open_image;
use crate::location::Location;

/// What [`inspect`] found: an image manifest or an index. Serialized as the summary
/// itself (no tag), in camelCase, as `ocikit inspect --json` prints it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
#[non_exhaustive]
pub enum Summary {
    /// An image (or artifact) manifest.
    Image(ImageSummary),
    /// An index.
    Index(IndexSummary),
}

/// A blob an image manifest names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct BlobSummary {
    /// Its digest.
    pub digest: String,
    /// Its media type.
    pub media_type: String,
    /// Its size in bytes.
    pub size: u64,
}

impl BlobSummary {
    fn of(descriptor: &Descriptor) -> BlobSummary {
        BlobSummary {
            digest: descriptor.digest().to_string(),
            media_type: descriptor.media_type().to_string(),
            size: descriptor.size(),
        }
    }
}

/// What an image manifest says, with what its config adds.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ImageSummary {
    /// The manifest's digest.
    pub digest: String,
    /// The manifest's media type.
    pub media_type: String,
    /// An artifact manifest's `artifactType` (left out of JSON when there is none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// `os/arch[/variant]`: the platform the descriptor names, else the image config's;
    /// `None` for an artifact.
    pub platform: Option<String>,
    /// The image config's `created`.
    pub created: Option<String>,
    /// The config blob.
    pub config: BlobSummary,
    /// The layers, in order.
    pub layers: Vec<BlobSummary>,
    /// The config's `config` object (Env, Entrypoint, Cmd, WorkingDir, User, Labels...),
    /// as the config holds it, when the config is an image config.
    pub run_config: Option<Value>,
    /// The manifest's annotations, sorted by key.
    pub annotations: Option<BTreeMap<String, String>>,
}

/// What an index says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct IndexSummary {
    /// The index's digest.
    pub digest: String,
    /// The index's media type.
    pub media_type: String,
    /// Its entries, in order.
    pub manifests: Vec<IndexEntry>,
    /// The index's annotations, sorted by key.
    pub annotations: Option<BTreeMap<String, String>>,
}

/// One entry of an index.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct IndexEntry {
    /// The manifest's (or nested index's) digest.
    pub digest: String,
    /// Its media type.
    pub media_type: String,
    /// Its size in bytes.
    pub size: u64,
    /// The entry's platform, `os/arch[/variant]`.
    pub platform: Option<String>,
}

/// The tags of a registry repository, as [`tags`] lists them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct RepositoryTags {
    /// `HOST/NAME`.
    pub repository: String,
    /// Its tags, as the registry lists them.
    pub tags: Vec<String>,
}

/// `ocikit inspect`: the manifest or index `location` names (`oci:PATH:TAG|@DIGEST` or
/// `docker://…`), summarised: blobs and sizes, the platform (the descriptor's, else the
/// image config's), the config's `created` and run settings (read verified and parsed
/// strictly), annotations. Archives are refused ([`Error::NeedsLayout`]).
pub async fn inspect(location: &Location, registry: &RegistryOptions) -> Result<Summary> {
    let (layout, descriptor) = open_image(location, registry, true, "inspect").await?;
    match read(&layout, &descriptor).await? {
        Document::Manifest { manifest, .. } => {
            let config = read_config(&layout, manifest.config()).await?;
            Ok(Summary::Image(image_summary(
                &descriptor,
                &manifest,
                config,
            )))
        }
        Document::Index { index, .. } => Ok(Summary::Index(index_summary(&descriptor, &index))),
        _ => Err(not_a_manifest(&descriptor)),
    }
}

/// `ocikit inspect --raw`: the exact bytes of the manifest or index `location` names
/// (what its digest covers), verified.
pub async fn inspect_raw(location: &Location, registry: &RegistryOptions) -> Result<Vec<u8>> {
    let (layout, descriptor) = open_image(location, registry, false, "inspect").await?;
    let bytes = match read(&layout, &descriptor).await? {
        Document::Manifest { bytes, .. } | Document::Index { bytes, .. } => bytes,
        _ => layout
            .read_blob(&descriptor)
            .await
            .map_err(|source| Error::ReadImage {
                digest: descriptor.digest().to_string(),
                source,
            })?,
    };
    Ok(bytes.to_vec())
}

/// `ocikit inspect --config`: the image config of the manifest `location` names, verified
/// and parsed strictly, as JSON. An artifact's config is [`Error::NotAnImageConfig`], an
/// index [`Error::IndexHasNoConfig`].
pub async fn inspect_config(location: &Location, registry: &RegistryOptions) -> Result<Value> {
    let (layout, descriptor) = open_image(location, registry, true, "inspect").await?;
    match read(&layout, &descriptor).await? {
        Document::Manifest { manifest, .. } => read_config(&layout, manifest.config())
            .await?
            .ok_or_else(|| Error::NotAnImageConfig {
                digest: descriptor.digest().to_string(),
                media_type: manifest.config().media_type().to_string(),
            }),
        Document::Index { .. } => Err(Error::IndexHasNoConfig {
            digest: descriptor.digest().to_string(),
        }),
        _ => Err(not_a_manifest(&descriptor)),
    }
}

/// `ocikit tags`: the tags of the registry repository `location` names
/// (`docker://HOST/NAME`; a tag or digest in it is ignored). Other transports are
/// [`Error::NeedsRegistry`].
pub async fn tags(location: &Location, registry: &RegistryOptions) -> Result<RepositoryTags> {
    let Location::Docker {
        registry: host,
        repository,
        ..
    } = location
    else {
        return Err(Error::NeedsRegistry {
            what: "tags".into(),
            location: location.to_string(),
            advice: "; for a layout use ls",
        });
    };
    let client = registry.client(host)?;
    let tags = client
        .tags(repository)
        .await
        .map_err(|source| Error::Registry {
            operation: Operation::ListTags,
            location: location.to_string(),
            source,
        })?;
    Ok(RepositoryTags {
        repository: format!("{host}/{repository}"),
        tags,
    })
}

/// The document `descriptor` names in `layout`, verified and parsed strictly.
async fn read(layout: &Layout, descriptor: &Descriptor) -> Result<Document> {
    layout
        .read_document(descriptor)
        .await
        .map_err(|source| Error::ReadImage {
            digest: descriptor.digest().to_string(),
            source,
        })
}

fn not_a_manifest(descriptor: &Descriptor) -> Error {
    Error::NotAManifest {
        digest: descriptor.digest().to_string(),
        media_type: descriptor.media_type().to_string(),
    }
}

/// The config `descriptor` names, verified and parsed strictly (duplicate keys refused), when
/// its media type is a config's (OCI or Docker image config); `None` (not read) otherwise.
async fn read_config(layout: &Layout, descriptor: &Descriptor) -> Result<Option<Value>> {
    if !media_type::classify(descriptor.media_type().as_ref()).is_config_like() {
        return Ok(None);
    }
    let digest = descriptor.digest().to_string();
    let bytes = layout
        .read_blob(descriptor)
        .await
        .map_err(|source| Error::ReadConfig {
            digest: digest.clone(),
            source,
        })?;
    let value = ocikit_digest::json::parse_strict(&bytes)
        .map_err(|source| Error::ConfigNotJson { digest, source })?;
    Ok(Some(value))
}

fn image_summary(
    descriptor: &Descriptor,
    manifest: &ImageManifest,
    config: Option<Value>,
) -> ImageSummary {
    let get = |key: &str| config.as_ref().and_then(|c| c.get(key));
    let text = |key: &str| get(key).and_then(Value::as_str).map(str::to_string);
    let platform = descriptor
        .platform()
        .as_ref()
        .map(platform::format)
        .or_else(|| {
            let (os, arch) = (text("os")?, text("architecture")?);
            let variant = text("variant");
            Some(platform::format(&platform::build(
                &os,
                &arch,
                variant.as_deref(),
            )))
        });
    ImageSummary {
        digest: descriptor.digest().to_string(),
        media_type: descriptor.media_type().to_string(),
        artifact_type: manifest.artifact_type().as_ref().map(|t| t.to_string()),
        platform,
        created: text("created"),
        config: BlobSummary::of(manifest.config()),
        layers: manifest.layers().iter().map(BlobSummary::of).collect(),
        run_config: get("config").cloned(),
        annotations: sorted(manifest.annotations()),
    }
}

fn index_summary(descriptor: &Descriptor, index: &ImageIndex) -> IndexSummary {
    IndexSummary {
        digest: descriptor.digest().to_string(),
        media_type: descriptor.media_type().to_string(),
        manifests: index
            .manifests()
            .iter()
            .map(|m| IndexEntry {
                digest: m.digest().to_string(),
                media_type: m.media_type().to_string(),
                size: m.size(),
                platform: m.platform().as_ref().map(platform::format),
            })
            .collect(),
        annotations: sorted(index.annotations()),
    }
}

fn sorted(annotations: &Option<HashMap<String, String>>) -> Option<BTreeMap<String, String>> {
    annotations
        .as_ref()
        .map(|map| map.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}
