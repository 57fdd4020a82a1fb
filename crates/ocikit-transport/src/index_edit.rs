//! Multi-platform image indexes made and edited anywhere: [`index_create`], [`index_append`],
//! [`index_remove`] and [`index_annotate`] (`ocikit index create|append|remove|annotate`), as crane's
//! `index append` and `index filter` make them.
//!
//! Each image given (from a layout, an archive or a registry) becomes one entry, its
//! platform read from its config (`os`, `architecture`, `variant`, `os.version`,
//! `os.features`); an image that is itself an index gives its entries instead (crane's
//! `index append` flattens a child index the same way), their platforms as that index names
//! them (or, where it names none, as their configs do). Two entries with the same platform
//! are refused before anything is written.
//!
//! Everything is read and checked before anything is written at the destination:
//!
//! - to a registry (`docker://HOST/NAME:TAG`), an image of the same registry (reached with
//!   the same options) is copied into the destination repository by digest without its
//!   blobs passing through ([`copy`]'s within-registry path: blobs skipped or mounted), any
//!   other image is staged in scratch space and pushed by digest; the index is put last,
//!   under the tag;
//! - to a layout or an oci-archive, every image is staged in scratch space (an `oci:`
//!   image's blobs hardlinked there), the index written there, and the whole copied to the
//!   destination by [`copy`], which tags it only once every blob it reaches is there (a new
//!   layout appears only then).
//!
//! Media types: a new index is an OCI image index; an edited index keeps its own. A Docker
//! manifest list takes only Docker schema 2 manifests and lists, and no annotations; an OCI
//! index takes Docker schema 2 manifests as well as OCI ones, as the image spec allows.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ocikit_client::PushOptions;
use ocikit_digest::graph::{Limits, Walker};
use ocikit_digest::oci_spec::image::{Descriptor, Platform};
use ocikit_digest::{Digest, descriptor, media_type, platform};
use ocikit_layout::{Document, Layout};
use ocikit_store::{MemoryStore, StoreExt};
use serde_json::{Map, Value};

use crate::access::RegistryOptions;
use crate::copy::{
    CopiedImage, CopyOptions, ImageName, ScratchSpace, copy, copy_from_scratch, scratch_layout,
};
use crate::error::{Error, Result};
use crate::image::open_image;
use crate::inspect::IndexEntry;
use crate::location::{Location, Selector};
use crate::progress::{Progress, Stage};

/// The tag of the index written in scratch space.
const INDEX_TAG: &str = "index";

/// How to make or edit an index: how to reach the registries of the images (source) and of
/// the index (destination), and where to report progress.
#[derive(Clone, Debug, Default)]
pub struct IndexOptions {
    source: RegistryOptions,
    destination: RegistryOptions,
    progress: Progress,
}

impl IndexOptions {
    /// TLS verified on both sides, stored credentials, no progress.
    pub fn new() -> IndexOptions {
        IndexOptions::default()
    }

    /// How to reach the registries of the images added.
    pub fn with_source(mut self, options: RegistryOptions) -> IndexOptions {
        self.source = options;
        self
    }

    /// How to reach the registry of the index.
    pub fn with_destination(mut self, options: RegistryOptions) -> IndexOptions {
        self.destination = options;
        self
    }

    /// Where to report progress (the stages of the copies and pushes involved).
    pub fn with_progress(mut self, progress: Progress) -> IndexOptions {
        self.progress = progress;
        self
    }
}

/// The annotation changes of [`index_annotate`]: keys set and removed, on the index itself or on
/// the entry of one platform.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct IndexAnnotations {
    /// Annotations set (a key already there is replaced).
    pub set: BTreeMap<String, String>,
    /// Annotation keys removed (a key not there is no error).
    pub remove: Vec<String>,
    /// The platform whose entry's descriptor is annotated; `None` annotates the index.
    pub platform: Option<Platform>,
}

impl IndexAnnotations {
    /// No changes, on the index itself.
    pub fn new() -> IndexAnnotations {
        IndexAnnotations::default()
    }

    /// Sets `key` to `value`.
    pub fn set(mut self, key: impl Into<String>, value: impl Into<String>) -> IndexAnnotations {
        self.set.insert(key.into(), value.into());
        self
    }

    /// Removes `key`.
    pub fn remove(mut self, key: impl Into<String>) -> IndexAnnotations {
        self.remove.push(key.into());
        self
    }

    /// Annotates the entry of `platform` instead of the index.
    pub fn on_platform(mut self, platform: Option<Platform>) -> IndexAnnotations {
        self.platform = platform;
        self
    }

    fn apply(&self, annotations: &mut BTreeMap<String, String>) {
        for key in &self.remove {
            annotations.remove(key);
        }
        for (key, value) in &self.set {
            annotations.insert(key.clone(), value.clone());
        }
    }
}

/// What [`index_create`], [`index_append`], [`index_remove`] or [`index_annotate`] did.
///
/// It serializes (camelCase) as `ocikit index … --json` prints it: the destination, the
/// index as `TAG DIGEST`, its digest and media type, its entries and annotations, and the
/// blob counts.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct IndexReport {
    /// The destination, as [`Location`]'s `Display` writes it.
    pub destination: String,
    /// The index at the destination, with its tag there.
    pub image: CopiedImage,
    /// The digest of the index written.
    pub digest: String,
    /// Its media type.
    pub media_type: String,
    /// Its entries, in order.
    pub manifests: Vec<IndexEntry>,
    /// The index's annotations.
    pub annotations: BTreeMap<String, String>,
    /// The blobs the index reaches (configs and layers).
    pub blobs: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Blobs written or uploaded to the destination.
    pub blobs_written: usize,
    /// Blobs a registry mounted from another repository.
    pub blobs_mounted: usize,
    /// Blobs the destination had already.
    pub blobs_skipped: usize,
}

/// Makes an index of `images` (each from a layout, an archive or a registry) at
/// `destination` (`oci:PATH:TAG`, `oci-archive:FILE:TAG` or `docker://HOST/NAME:TAG`), one
/// entry per image with the platform its config names; an image that is an index adds its
/// entries. Refused before anything is written: no image, a destination without a tag,
/// two entries with the same platform ([`Error::SamePlatform`]), an image that cannot be
/// read. See the [module documentation](self) for how each image gets there.
///
/// ```
/// use ocikit_layout::{ImageBuilder, Layout};
/// use ocikit_store::FsStore;
/// use ocikit_transport::{IndexOptions, Location, index_create};
///
/// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
/// let dir = tempfile::tempdir()?;
/// let layout = Layout::create(FsStore::open(dir.path()).await?).await?;
/// for (tag, platform) in [("amd64", "linux/amd64"), ("arm64", "linux/arm64")] {
///     let mut image = ImageBuilder::new(&layout);
///     image.platform(&ocikit_digest::platform::parse(platform)?);
///     image.write_and_tag(tag).await?;
/// }
/// let at = |rest: &str| format!("oci:{}:{rest}", dir.path().display()).parse::<Location>();
/// let report = index_create(&at("multi")?, &[at("amd64")?, at("arm64")?], &IndexOptions::new())
///     .await?;
/// let platforms: Vec<_> = report.manifests.iter().map(|m| m.platform.clone()).collect();
/// assert_eq!(platforms, [Some("linux/amd64".into()), Some("linux/arm64".into())]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub async fn index_create(
    destination: &Location,
    images: &[Location],
    options: &IndexOptions,
) -> Result<IndexReport> {
    if images.is_empty() {
        return Err(Error::IndexWithoutImages);
    }
    write_index(None, images, destination, options, |_| Ok(())).await
}

/// Adds `images` to the index `index` names (`oci:PATH:TAG` or `docker://HOST/NAME:TAG`),
/// as [`index_create`] adds them, writes the new index there and moves the tag. An image whose
/// platform the index has already is refused ([`Error::SamePlatform`]), as is an OCI
/// manifest for a Docker manifest list ([`Error::IndexMediaType`]); nothing is written then.
pub async fn index_append(
    index: &Location,
    images: &[Location],
    options: &IndexOptions,
) -> Result<IndexReport> {
    if images.is_empty() {
        return Err(Error::IndexWithoutImages);
    }
    in_place(index)?;
    write_index(Some(index), images, index, options, |_| Ok(())).await
}

/// Removes the entries of `platform` (matched as [`platform::matches`] matches: a variant
/// or `os.version` only when `platform` names one) from the index `index` names, writes the
/// new index there and moves the tag. No entry of that platform is
/// [`Error::NoSuchPlatform`], and nothing is written.
pub async fn index_remove(
    index: &Location,
    platform: &Platform,
    options: &IndexOptions,
) -> Result<IndexReport> {
    in_place(index)?;
    write_index(Some(index), &[], index, options, |draft| {
        let before = draft.manifests.len();
        draft.manifests.retain(|entry| {
            !entry
                .platform()
                .as_ref()
                .is_some_and(|have| platform::matches(platform, have))
        });
        if draft.manifests.len() == before {
            return Err(draft.no_such_platform(index, platform));
        }
        Ok(())
    })
    .await
}

/// Changes the annotations of the index `index` names, or of its entry for
/// [`IndexAnnotations::platform`], writes the new index there and moves the tag. A platform
/// no entry has is [`Error::NoSuchPlatform`]; a Docker manifest list, which has no
/// annotations, is [`Error::AnnotationsNeedOci`]; nothing is written then.
pub async fn index_annotate(
    index: &Location,
    changes: &IndexAnnotations,
    options: &IndexOptions,
) -> Result<IndexReport> {
    in_place(index)?;
    write_index(Some(index), &[], index, options, |draft| {
        if media_type::essence(&draft.media_type) == media_type::DOCKER_MANIFEST_LIST {
            return Err(Error::AnnotationsNeedOci {
                digest: draft.base_digest.clone().unwrap_or_default(),
                media_type: draft.media_type.clone(),
            });
        }
        let Some(wanted) = &changes.platform else {
            changes.apply(&mut draft.annotations);
            return Ok(());
        };
        let mut found = false;
        for entry in &mut draft.manifests {
            if entry
                .platform()
                .as_ref()
                .is_some_and(|have| platform::matches(wanted, have))
            {
                found = true;
                let mut annotations: BTreeMap<String, String> = entry
                    .annotations()
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .collect();
                changes.apply(&mut annotations);
                entry.set_annotations(
                    (!annotations.is_empty()).then(|| annotations.into_iter().collect()),
                );
            }
        }
        if !found {
            return Err(draft.no_such_platform(index, wanted));
        }
        Ok(())
    })
    .await
}

/// Edits happen where the index is: a layout or a registry, not an archive.
fn in_place(index: &Location) -> Result<()> {
    match index {
        Location::Oci {
            selector: Some(Selector::Tag(_)),
            ..
        }
        | Location::Docker {
            selector: Selector::Tag(_),
            ..
        } => Ok(()),
        _ => Err(Error::IndexEditNeedsTag {
            location: index.to_string(),
        }),
    }
}

/// The index being written: the base's JSON (unknown fields kept), its entries and
/// annotations, and its media type.
struct Draft {
    json: Map<String, Value>,
    media_type: String,
    manifests: Vec<Descriptor>,
    annotations: BTreeMap<String, String>,
    base_digest: Option<String>,
}

impl Draft {
    fn no_such_platform(&self, index: &Location, wanted: &Platform) -> Error {
        Error::NoSuchPlatform {
            location: index.to_string(),
            platform: platform::format(wanted),
            available: self
                .manifests
                .iter()
                .filter_map(|d| d.platform().as_ref().map(platform::format))
                .collect(),
        }
    }

    /// The index as canonical JSON.
    fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut json = self.json.clone();
        json.insert("schemaVersion".into(), Value::from(2));
        json.insert("mediaType".into(), Value::from(self.media_type.clone()));
        let manifests = serde_json::to_value(&self.manifests).map_err(|e| {
            Error::Layout(ocikit_layout::Error::InvalidImage {
                reason: format!("cannot serialise the index's entries: {e}"),
            })
        })?;
        json.insert("manifests".into(), manifests);
        if self.annotations.is_empty() {
            json.remove("annotations");
        } else {
            json.insert(
                "annotations".into(),
                Value::Object(
                    self.annotations
                        .iter()
                        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                        .collect(),
                ),
            );
        }
        ocikit_digest::json::value_to_canonical_vec(&Value::Object(json)).map_err(|e| {
            Error::Layout(ocikit_layout::Error::InvalidImage {
                reason: format!("cannot serialise the index: {e}"),
            })
        })
    }

    /// Refuses two entries of one platform, and entries a Docker manifest list cannot hold.
    fn check(&self) -> Result<()> {
        let mut seen: BTreeMap<String, &Descriptor> = BTreeMap::new();
        for entry in &self.manifests {
            let Some(have) = entry.platform() else {
                continue;
            };
            if let Some(first) = seen.insert(platform_key(have), entry) {
                return Err(Error::SamePlatform {
                    platform: platform::format(have),
                    first: first.digest().to_string(),
                    second: entry.digest().to_string(),
                });
            }
        }
        if media_type::essence(&self.media_type) == media_type::DOCKER_MANIFEST_LIST {
            for entry in &self.manifests {
                let kind = media_type::essence(entry.media_type().as_ref());
                if kind != media_type::DOCKER_MANIFEST && kind != media_type::DOCKER_MANIFEST_LIST {
                    return Err(Error::IndexMediaType {
                        digest: entry.digest().to_string(),
                        media_type: entry.media_type().to_string(),
                        index_media_type: self.media_type.clone(),
                    });
                }
            }
        }
        Ok(())
    }
}

/// Two platforms are the same when they are once normalised, a missing variant being the
/// architecture's default one (`linux/arm64` is `linux/arm64/v8`), `os.features` in any
/// order.
fn platform_key(have: &Platform) -> String {
    let p = platform::normalize(have);
    let arch = p.architecture().to_string();
    let variant = p
        .variant()
        .clone()
        .or_else(|| platform::default_variant(&arch).map(str::to_owned))
        .unwrap_or_default();
    let mut features = p.os_features().clone().unwrap_or_default();
    features.sort();
    format!(
        "{}\n{arch}\n{variant}\n{}\n{}",
        p.os(),
        p.os_version().clone().unwrap_or_default(),
        features.join(",")
    )
}

/// One image (or the base index) read for the index: where to copy it from, the layout to
/// read it in, and its root.
struct Source {
    /// Where the destination copies it from (the user's location, or its staged copy).
    from: Location,
    /// Whether `from` is a registry (then `layout` holds only its documents and config).
    remote: bool,
    layout: Layout,
    root: Descriptor,
    digest: Digest,
}

impl Source {
    /// The entries this image gives: itself, with its config's platform; or, for an index,
    /// its entries (their platform from their config where they name none).
    async fn entries(&self, options: &IndexOptions) -> Result<Vec<Descriptor>> {
        let document = self
            .layout
            .read_document(&self.root)
            .await
            .map_err(|source| Error::ReadImage {
                digest: self.digest.to_string(),
                source,
            })?;
        match document {
            Document::Manifest { .. } => {
                let mut entry = descriptor::new(
                    self.root.media_type().as_ref(),
                    &self.digest,
                    self.root.size(),
                )
                .map_err(|source| Error::InvalidDescriptor {
                    digest: self.digest.clone(),
                    source,
                })?;
                entry.set_platform(Some(config_platform(&self.layout, &self.root).await?));
                Ok(vec![entry])
            }
            Document::Index { index, .. } => {
                let mut entries = Vec::new();
                for child in index.manifests() {
                    let mut entry = child.clone();
                    if entry.platform().is_none()
                        && media_type::is_manifest_like(child.media_type().as_ref())
                    {
                        entry.set_platform(Some(self.child_platform(child, options).await?));
                    }
                    entries.push(entry);
                }
                Ok(entries)
            }
            _ => Err(Error::NotAManifest {
                digest: self.digest.to_string(),
                media_type: self.root.media_type().to_string(),
            }),
        }
    }

    /// The config platform of an index entry: read from the layout, or (from a registry)
    /// fetched with its config.
    async fn child_platform(&self, child: &Descriptor, options: &IndexOptions) -> Result<Platform> {
        if !self.remote {
            return config_platform(&self.layout, child).await;
        }
        let digest = digest_of(child)?;
        let at = by_digest(&self.from, &digest);
        let (layout, root) = open_image(&at, &options.source, true, "index").await?;
        config_platform(&layout, &root).await
    }
}

/// The platform the config of the image manifest `manifest` names.
async fn config_platform(layout: &Layout, manifest: &Descriptor) -> Result<Platform> {
    let digest = digest_of(manifest)?;
    let document = layout
        .read_document(manifest)
        .await
        .map_err(|source| Error::ReadImage {
            digest: digest.to_string(),
            source,
        })?;
    let Document::Manifest { manifest, .. } = document else {
        return Err(Error::NotAManifest {
            digest: digest.to_string(),
            media_type: manifest.media_type().to_string(),
        });
    };
    let config = manifest.config();
    let parsed = layout
        .read_image_config(config)
        .await
        .map_err(|source| Error::ReadConfig {
            digest: config.digest().to_string(),
            source,
        })?
        .ok_or_else(|| Error::NotAnImageConfig {
            digest: digest.to_string(),
            media_type: config.media_type().to_string(),
        })?;
    Ok(parsed.platform())
}

/// The same registry repository as `location`, by `digest`.
fn by_digest(location: &Location, digest: &Digest) -> Location {
    match location {
        Location::Docker {
            registry,
            repository,
            ..
        } => Location::Docker {
            written: format!("{registry}/{repository}@{digest}"),
            registry: registry.clone(),
            repository: repository.clone(),
            selector: Selector::Digest(digest.clone()),
        },
        other => other.clone(),
    }
}

/// The engine of the four operations: reads the base index (if any) and the images,
/// builds the entries, lets `edit` change them, checks the result, and only then writes it.
async fn write_index<F>(
    base: Option<&Location>,
    images: &[Location],
    destination: &Location,
    options: &IndexOptions,
    edit: F,
) -> Result<IndexReport>
where
    F: FnOnce(&mut Draft) -> Result<()>,
{
    let tag = destination_tag(destination)?;
    let mut scratch = Stager::new(destination, images);
    // A registry destination takes the images of its own registry without their blobs
    // passing through here; everything else is staged in scratch space.
    let to_registry = match destination {
        Location::Docker {
            registry,
            repository,
            ..
        } => Some((registry.clone(), repository.clone())),
        _ => None,
    };
    let near = |location: &Location| match (&to_registry, location) {
        (Some((to, _)), Location::Docker { registry, .. }) => {
            registry == to && options.source == options.destination
        }
        _ => false,
    };
    // The base is the index edited in place: read where it is in a registry, staged
    // (hardlinked) from a layout.
    let base = match base {
        Some(location) if to_registry.is_some() => {
            Some(remote(location, &options.destination).await?)
        }
        Some(location) => Some(scratch.stage(location, &options.source, options).await?),
        None => None,
    };
    let mut sources = Vec::new();
    for image in images {
        let source = if near(image) {
            remote(image, &options.source).await?
        } else {
            scratch.stage(image, &options.source, options).await?
        };
        sources.push(source);
    }
    let mut draft = match &base {
        Some(base) => base_draft(base, destination).await?,
        None => Draft {
            json: Map::new(),
            media_type: media_type::IMAGE_INDEX.to_string(),
            manifests: Vec::new(),
            annotations: BTreeMap::new(),
            base_digest: None,
        },
    };
    for source in &sources {
        draft.manifests.extend(source.entries(options).await?);
    }
    edit(&mut draft)?;
    draft.check()?;
    let bytes = draft.to_bytes()?;

    let mut report = match &to_registry {
        Some((registry, repository)) => {
            let mut all: Vec<&Source> = Vec::new();
            if let Some(base) = &base
                && !same_repository(&base.from, registry, repository)
            {
                all.push(base);
            }
            all.extend(sources.iter());
            to_registry_write(
                (registry, repository, tag),
                destination,
                &all,
                &draft,
                &bytes,
                options,
            )
            .await?
        }
        None => to_layout_write(destination, &mut scratch, &draft, &bytes, options).await?,
    };
    report.destination = destination.to_string();
    report.manifests = draft
        .manifests
        .iter()
        .map(|m| IndexEntry {
            digest: m.digest().to_string(),
            media_type: m.media_type().to_string(),
            size: m.size(),
            platform: m.platform().as_ref().map(platform::format),
        })
        .collect();
    report.annotations = draft.annotations.clone();
    report.media_type = draft.media_type.clone();
    Ok(report)
}

fn same_repository(location: &Location, registry: &str, repository: &str) -> bool {
    matches!(location, Location::Docker { registry: r, repository: n, .. } if r == registry && n == repository)
}

/// The tag the index gets at `destination`, which must name one.
fn destination_tag(destination: &Location) -> Result<String> {
    match destination {
        Location::Oci {
            selector: Some(Selector::Tag(tag)),
            ..
        }
        | Location::OciArchive {
            selector: Some(Selector::Tag(tag)),
            ..
        }
        | Location::Docker {
            selector: Selector::Tag(tag),
            ..
        } => Ok(tag.clone()),
        _ => Err(Error::IndexNeedsTag {
            location: destination.to_string(),
        }),
    }
}

/// A registry image read where it is: its manifest or index (and an image's config)
/// fetched, verified, into memory.
async fn remote(location: &Location, registry: &RegistryOptions) -> Result<Source> {
    let (layout, root) = open_image(location, registry, true, "index").await?;
    let digest = digest_of(&root)?;
    Ok(Source {
        from: by_digest(location, &digest),
        remote: true,
        layout,
        root,
        digest,
    })
}

/// The base index as a draft: its JSON, entries, annotations and media type; refused when
/// it is not an index.
async fn base_draft(base: &Source, location: &Location) -> Result<Draft> {
    let not_an_index = || Error::NotAnIndex {
        location: location.to_string(),
        digest: base.digest.to_string(),
        media_type: base.root.media_type().to_string(),
    };
    if !media_type::is_index_like(base.root.media_type().as_ref()) {
        return Err(not_an_index());
    }
    let document = base
        .layout
        .read_document(&base.root)
        .await
        .map_err(|source| Error::ReadImage {
            digest: base.digest.to_string(),
            source,
        })?;
    let Document::Index { index, bytes } = document else {
        return Err(not_an_index());
    };
    let json = match ocikit_digest::json::parse_strict(&bytes) {
        Ok(Value::Object(json)) => json,
        Ok(_) => return Err(not_an_index()),
        Err(source) => {
            return Err(Error::NotJson {
                digest: base.digest.clone(),
                source,
            });
        }
    };
    Ok(Draft {
        json,
        media_type: base.root.media_type().to_string(),
        manifests: index.manifests().clone(),
        annotations: index
            .annotations()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
        base_digest: Some(base.digest.to_string()),
    })
}

/// Scratch space (made when first needed) where images are staged as one layout.
struct Stager {
    near: PathBuf,
    /// Kept for as long as the scratch layout is used; removed on drop.
    space: Option<ScratchSpace>,
    made: Option<(Layout, PathBuf)>,
    count: usize,
    /// Whether an `oci:` image's blob files were hardlinked into it (then the destination
    /// must not share them in turn).
    shares_files: bool,
}

impl Stager {
    fn new(destination: &Location, images: &[Location]) -> Stager {
        let near = destination
            .path()
            .or_else(|| images.iter().find_map(Location::path))
            .map_or_else(
                || std::env::temp_dir().join("ocikit-index"),
                Path::to_path_buf,
            );
        Stager {
            near,
            space: None,
            made: None,
            count: 0,
            shares_files: false,
        }
    }

    /// The scratch layout and its path, made on first use.
    async fn layout(&mut self) -> Result<(Layout, PathBuf)> {
        if let Some((layout, path)) = &self.made {
            return Ok((layout.clone(), path.clone()));
        }
        let space = ScratchSpace::near(&self.near).await?;
        let dir = space.path().join("index");
        let layout = scratch_layout(&dir).await?;
        let path = dir.join("layout");
        self.space = Some(space);
        self.made = Some((layout.clone(), path.clone()));
        Ok((layout, path))
    }

    /// Copies the image `location` names (whole, every platform of an index) into the
    /// scratch layout.
    async fn stage(
        &mut self,
        location: &Location,
        registry: &RegistryOptions,
        options: &IndexOptions,
    ) -> Result<Source> {
        let (layout, path) = self.layout().await?;
        let tag = format!("image-{}", self.count);
        self.count += 1;
        let at = Location::Oci {
            path: path.clone(),
            selector: Some(Selector::Tag(tag.clone())),
        };
        let hardlink = matches!(location, Location::Oci { .. });
        copy(
            location,
            &at,
            &CopyOptions::new()
                .with_source(registry.clone())
                .with_all_platforms(true)
                .with_hardlink(hardlink)
                .with_progress(options.progress.clone()),
        )
        .await?;
        self.shares_files |= hardlink;
        let root = layout.resolve(&tag).await?;
        let digest = digest_of(&root)?;
        let mut root_clean = root.clone();
        root_clean.set_annotations(None);
        Ok(Source {
            from: at,
            remote: false,
            layout,
            root: root_clean,
            digest,
        })
    }
}

/// To a layout or an oci-archive: the index written in scratch space beside the staged
/// images, and copied to the destination.
async fn to_layout_write(
    destination: &Location,
    scratch: &mut Stager,
    draft: &Draft,
    bytes: &[u8],
    options: &IndexOptions,
) -> Result<IndexReport> {
    let (layout, path) = scratch.layout().await?;
    let index = put_index(&layout, draft, bytes).await?;
    layout.set_tag(INDEX_TAG, &index).await?;
    let from = Location::Oci {
        path,
        selector: Some(Selector::Tag(INDEX_TAG.into())),
    };
    let (copied, name, root) = copy_from_scratch(
        &from,
        destination,
        &options.destination,
        scratch.shares_files,
        &options.progress,
    )
    .await?;
    Ok(IndexReport {
        destination: String::new(),
        image: CopiedImage {
            name,
            root: root.clone(),
        },
        digest: root.digest().to_string(),
        media_type: String::new(),
        manifests: Vec::new(),
        annotations: BTreeMap::new(),
        blobs: copied.blobs,
        bytes: copied.bytes,
        blobs_written: copied.blobs_copied,
        blobs_mounted: copied.blobs_mounted,
        blobs_skipped: copied.blobs_skipped,
    })
}

/// To a registry: every image copied into the repository by digest (mounted within the
/// registry, pushed from scratch otherwise), then the index put under the tag.
async fn to_registry_write(
    (registry, repository, tag): (&str, &str, String),
    destination: &Location,
    sources: &[&Source],
    draft: &Draft,
    bytes: &[u8],
    options: &IndexOptions,
) -> Result<IndexReport> {
    let mut written = 0;
    let mut mounted = 0;
    let mut skipped = 0;
    for source in sources {
        let target = Location::Docker {
            written: format!("{registry}/{repository}@{}", source.digest),
            registry: registry.to_string(),
            repository: repository.to_string(),
            selector: Selector::Digest(source.digest.clone()),
        };
        // A registry image is of this registry, reached with the same options on both
        // sides: the copy engine mounts its blobs.
        let copy_options = CopyOptions::new()
            .with_source(options.source.clone())
            .with_destination(options.destination.clone())
            .with_all_platforms(true)
            .with_progress(options.progress.clone());
        let report = copy(&source.from, &target, &copy_options).await?;
        written += report.blobs_copied;
        mounted += report.blobs_mounted;
        skipped += report.blobs_skipped;
    }
    // The push reads every document under the index from a layout: the index, and the
    // entries' documents fetched back (verified) from the repository that now holds them.
    let client = options.destination.client(registry)?;
    let layout = Layout::create(MemoryStore::new()).await?;
    let mut walker = Walker::new(Limits::new());
    for entry in &draft.manifests {
        walker.add_root(entry).map_err(ocikit_layout::Error::from)?;
    }
    while let Some(wanted) = walker.next_wanted() {
        let digest = digest_of(&wanted)?;
        let (_, fetched) = client
            .get_manifest(repository, digest.as_ref())
            .await
            .map_err(|source| Error::Registry {
                operation: crate::error::Operation::ReadManifest,
                location: by_digest(destination, &digest).to_string(),
                source,
            })?;
        layout.store().put_verified(&digest, &fetched).await?;
        walker
            .visit(&wanted, fetched)
            .map_err(ocikit_layout::Error::from)?;
    }
    walker.finish().map_err(ocikit_layout::Error::from)?;
    let index = put_index(&layout, draft, bytes).await?;
    let pushed = client
        .push(
            &layout,
            &index,
            repository,
            Some(&tag),
            &PushOptions::new().with_progress(options.progress.stage(Stage::Push)),
        )
        .await
        .map_err(|source| Error::Push {
            digest: index.digest().to_string(),
            location: destination.to_string(),
            source,
        })?;
    Ok(IndexReport {
        destination: String::new(),
        image: CopiedImage {
            name: ImageName::Tag(tag),
            root: index.clone(),
        },
        digest: index.digest().to_string(),
        media_type: String::new(),
        manifests: Vec::new(),
        annotations: BTreeMap::new(),
        blobs: pushed.blobs,
        bytes: pushed.total_bytes,
        blobs_written: written + pushed.transferred,
        blobs_mounted: mounted + pushed.mounted,
        // Each blob counted once: the push found them all (copied just before).
        blobs_skipped: skipped.min(pushed.blobs.saturating_sub(written + mounted)),
    })
}

/// Stores the index in `layout` and reads it back through the one strict parser.
async fn put_index(layout: &Layout, draft: &Draft, bytes: &[u8]) -> Result<Descriptor> {
    let stored = layout.put_blob(&draft.media_type, bytes).await?;
    let digest = digest_of(&stored)?;
    let index = descriptor::new(&draft.media_type, &digest, stored.size()).map_err(|source| {
        Error::InvalidDescriptor {
            digest: digest.clone(),
            source,
        }
    })?;
    layout
        .read_document(&index)
        .await
        .map_err(|source| Error::NotADocument {
            digest: digest.clone(),
            source,
        })?;
    Ok(index)
}

/// A descriptor's digest as ocikit's [`Digest`].
fn digest_of(descriptor: &Descriptor) -> Result<Digest> {
    let text = descriptor.digest().to_string();
    text.parse().map_err(|source| Error::InvalidDigest {
        digest: text.clone(),
        source,
    })
}
