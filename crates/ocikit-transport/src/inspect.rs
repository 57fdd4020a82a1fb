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
use crate::tag_select::TagSelection;

/// What [`inspect`] found: an image manifest or an index. Serialized as the summary
/// itself (no tag), in camelCase, as `ocikit inspect --json` prints it.
// One summary per call: its size does not matter, and boxing would change the enum callers
// match on.
#[allow(clippy::large_enum_variant)]
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
    /// The descriptor's annotations, sorted by key (left out of JSON when there are none;
    /// skopeo's `LayersData[].Annotations`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

impl BlobSummary {
    fn of(descriptor: &Descriptor) -> BlobSummary {
        BlobSummary {
            digest: descriptor.digest().to_string(),
            media_type: descriptor.media_type().to_string(),
            size: descriptor.size(),
            annotations: sorted(descriptor.annotations()),
        }
    }
}

/// What an image manifest says, with what its config adds: as much as `skopeo inspect`
/// shows (its `Name`, `Digest`, `RepoTags`, `Created`, `DockerVersion`, `Labels`,
/// `Architecture`, `Os`, `Variant`, `Env`; `Layers` and `LayersData` are [`Self::layers`]).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ImageSummary {
    /// `HOST/NAME` for an image in a registry (left out of JSON otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The tags of its repository, for an image in a registry (left out of JSON otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repo_tags: Option<Vec<String>>,
    /// The image config's `architecture` (left out of JSON when there is none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub architecture: Option<String>,
    /// The image config's `os` (left out of JSON when there is none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
    /// The image config's `variant` (left out of JSON when there is none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// The image config's `docker_version`, which Docker's builder writes (left out of
    /// JSON when there is none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub docker_version: Option<String>,
    /// The config's `config.Labels`, sorted by key (left out of JSON when there are none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// The config's `config.Env` (left out of JSON when there is none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
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
    /// `HOST/NAME` for an index in a registry (left out of JSON otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The tags of its repository, for an index in a registry (left out of JSON otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repo_tags: Option<Vec<String>>,
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
/// strictly), annotations; for an image in a registry also its name and its repository's
/// tags (as `skopeo inspect` shows them). Archives are refused ([`Error::NeedsLayout`]).
pub async fn inspect(location: &Location, registry: &RegistryOptions) -> Result<Summary> {
    let (layout, descriptor) = open_image(location, registry, true, "inspect").await?;
    let mut summary = match read(&layout, &descriptor).await? {
        Document::Manifest { manifest, .. } => {
            let config = read_config(&layout, manifest.config()).await?;
            Summary::Image(image_summary(&descriptor, &manifest, config))
        }
        Document::Index { index, .. } => Summary::Index(index_summary(&descriptor, &index)),
        _ => return Err(not_a_manifest(&descriptor)),
    };
    if location.is_registry() {
        let listed = tags(location, registry).await?;
        let (name, repo_tags) = match &mut summary {
            Summary::Image(s) => (&mut s.name, &mut s.repo_tags),
            Summary::Index(s) => (&mut s.name, &mut s.repo_tags),
        };
        *name = Some(listed.repository);
        *repo_tags = Some(listed.tags);
    }
    Ok(summary)
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

/// `ocikit tags --filter REGEX --sort semver`: the tags of the registry repository
/// `location` names ([`tags`]) that `selection` picks, in its order
/// ([`TagSelection::select`]).
pub async fn tags_matching(
    location: &Location,
    registry: &RegistryOptions,
    selection: &TagSelection,
) -> Result<RepositoryTags> {
    let mut listed = tags(location, registry).await?;
    listed.tags = selection.select(&listed.tags);
    Ok(listed)
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
    let run = get("config");
    let labels = run
        .and_then(|r| r.get("Labels"))
        .and_then(Value::as_object)
        .map(|labels| {
            labels
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        });
    let env = run
        .and_then(|r| r.get("Env"))
        .and_then(Value::as_array)
        .map(|env| {
            env.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        });
    ImageSummary {
        name: None,
        repo_tags: None,
        architecture: text("architecture"),
        os: text("os"),
        variant: text("variant"),
        docker_version: text("docker_version"),
        labels,
        env,
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
        name: None,
        repo_tags: None,
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
