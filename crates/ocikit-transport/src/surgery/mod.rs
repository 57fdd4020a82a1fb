//! Image surgery: an image read from any location, its config and manifest edited, and the
//! result written to any location, moving only what changed.
//!
//! [`edit_image`] is the engine; [`mutate`] (`ocikit mutate`) is it with a
//! [`ConfigChanges`](ocikit_layout::ConfigChanges). It reads the source's manifest and
//! config (picking one platform's image from an index), lets the caller edit an
//! [`ImageEdit`], writes the new config and manifest, and puts them at the destination with
//! the layers as they were:
//!
//! - within one registry (both `docker://` on one host, reached with the same options), only
//!   the manifest and the config travel: the source's manifest and config are fetched, the
//!   layers are skipped when the destination repository has them (HEAD) or mounted from the
//!   source repository ([`ocikit_client::Client::copy_blobs_within`]; streamed only where
//!   the registry refuses a mount), then the new config is uploaded and the manifest put;
//! - within one layout (`oci:` to the same `oci:` directory), the new config and manifest are
//!   written there and the tag set, nothing else;
//! - anywhere else the source is staged as a layout in scratch space (an `oci:` source's
//!   blobs hardlinked there, an archive imported, a registry image pulled, by [`copy`]), the
//!   new config and manifest are written there, and the edited image is [`copy`]'d to the
//!   destination, which skips (or, in a registry, mounts) what it has.
//!
//! The destination always names a tag; nothing is tagged there before every blob the new
//! manifest reaches is present, and a destination layout that did not exist appears only
//! once complete (the copy engine's guarantees).
//!
//! An edit may also change the layers ([`ImageEdit::push_layer`], [`ImageEdit::set_layers`],
//! which keep diffIDs and history in step): the blobs it adds come from the layout of
//! [`EditOptions::with_new_blobs`] and travel with the config and manifest; the source's
//! layers it keeps are still skipped or mounted within a registry, never downloaded and
//! uploaded again. [`append`] (`ocikit append`) adds layers this way, [`flatten`]
//! (`ocikit flatten`) replaces them all with one. An edit that changes
//! the number of diffIDs without changing the layers is refused.

mod append;
mod flatten;
mod mutate;
mod rebase;

pub use append::{AppendOptions, LayerSource, append};
pub use flatten::{FlattenOptions, flatten};
pub use mutate::{MutateOptions, MutateReport, mutate, parse_created};
pub use rebase::{RebaseOptions, rebase};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ocikit_client::{CopyWithinOptions, PushOptions};
use ocikit_digest::oci_spec::image::Descriptor;
use ocikit_digest::{Digest, descriptor, media_type, platform};
use ocikit_layout::{
    CopyOptions as LayoutCopyOptions, Document, ImageConfig, Layout, PlatformQuery, copy_graph,
};
use ocikit_store::LinkMode;
use serde_json::{Map, Value};

use crate::access::RegistryOptions;
use crate::copy::{CopiedImage, CopyOptions, ImageName, ScratchSpace, copy, copy_from_scratch};
use crate::error::{Error, Result};
use crate::image::open_image;
use crate::location::{Location, Selector};
use crate::open::{open_layout, resolve};
use crate::progress::{Progress, Stage};

/// Index levels followed at most from a registry's index to the image picked.
const MAX_INDEX_DEPTH: usize = 8;

/// The tag the edited image gets in a scratch layout.
const EDITED_TAG: &str = "edited";
/// The tag a staged source gets in a scratch layout.
const SOURCE_TAG: &str = "source";

/// How to [`edit_image`] (and [`mutate`]): how to reach each side's registry, which image
/// of an index to edit, and where to report progress.
#[derive(Clone, Debug, Default)]
pub struct EditOptions {
    source: RegistryOptions,
    destination: RegistryOptions,
    platform: Option<PlatformQuery>,
    progress: Progress,
    new_blobs: Option<Layout>,
}

impl EditOptions {
    /// TLS verified on both sides, stored credentials, no platform (an index is refused),
    /// no progress.
    pub fn new() -> EditOptions {
        EditOptions::default()
    }

    /// How to reach the source registry.
    pub fn with_source(mut self, options: RegistryOptions) -> EditOptions {
        self.source = options;
        self
    }

    /// How to reach the destination registry.
    pub fn with_destination(mut self, options: RegistryOptions) -> EditOptions {
        self.destination = options;
        self
    }

    /// The image of an index to edit (the result is that one image, as crane writes it);
    /// without one an index source is refused ([`Error::EditIndex`]). An image manifest is
    /// edited whatever its platform.
    pub fn with_platform(mut self, platform: Option<PlatformQuery>) -> EditOptions {
        self.platform = platform;
        self
    }

    /// Where to report progress (the stages of the copies and pushes involved).
    pub fn with_progress(mut self, progress: Progress) -> EditOptions {
        self.progress = progress;
        self
    }

    /// A layout holding the blobs an edit adds (the layers it puts in the manifest that the
    /// source image does not have): each is taken from there (hardlinked where it can be)
    /// into the layout the new manifest is written to, and travels to the destination with
    /// the config and manifest. Without one, an edit can only reorder or drop the source's
    /// layers.
    pub fn with_new_blobs(mut self, layout: Option<Layout>) -> EditOptions {
        self.new_blobs = layout;
        self
    }

    /// The platform [`with_platform`](EditOptions::with_platform) named, if any.
    pub fn platform(&self) -> Option<&PlatformQuery> {
        self.platform.as_ref()
    }
}

/// The parts of an image an edit may change: its config, its manifest's annotations and its
/// layers. Made from the source image by [`edit_image`], handed to the caller's edit, then
/// written.
///
/// Layers change only through [`push_layer`](ImageEdit::push_layer) and
/// [`set_layers`](ImageEdit::set_layers), which keep `rootfs.diff_ids` and the history in
/// step with them; a new layer's blob must be in the layout of
/// [`EditOptions::with_new_blobs`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ImageEdit {
    /// The image config (unknown fields kept).
    pub config: ImageConfig,
    /// The manifest's annotations.
    pub annotations: BTreeMap<String, String>,
    manifest_media_type: String,
    layers: Vec<Descriptor>,
    from_index: bool,
    source_digest: Digest,
}

impl ImageEdit {
    /// Whether the image was picked from an index by the platform of the options.
    pub fn from_index(&self) -> bool {
        self.from_index
    }

    /// The manifest's media type (OCI or Docker schema 2).
    pub fn manifest_media_type(&self) -> &str {
        &self.manifest_media_type
    }

    /// The image's layers, bottom first, as the new manifest will name them.
    pub fn layers(&self) -> &[Descriptor] {
        &self.layers
    }

    /// Puts `layer` on top of the image: its descriptor at the end of the manifest's layers,
    /// `diff_id` (the digest of its uncompressed tar) at the end of `rootfs.diff_ids` and
    /// `history` (an entry of the config's history, not `empty_layer`) at the end of the
    /// history. A source image without history first gets one made-up entry per layer, so
    /// that history and layers agree. A blob the source lacks must be in the layout of
    /// [`EditOptions::with_new_blobs`] (checked when the edit is written).
    pub fn push_layer(
        &mut self,
        layer: Descriptor,
        diff_id: &Digest,
        history: Value,
    ) -> Result<()> {
        let below = self.layers.len();
        self.edit_config(|json| {
            push_diff_id(json, diff_id);
            let mut entries = match json.remove("history") {
                Some(Value::Array(entries)) => entries,
                _ => Vec::new(),
            };
            if entries.is_empty() {
                entries.extend((0..below).map(|_| missing_history()));
            }
            entries.push(history);
            json.insert("history".into(), Value::Array(entries));
        })?;
        self.layers.push(layer);
        Ok(())
    }

    /// Replaces every layer of the image with `layers` (bottom first, each with its
    /// diffID), and the history with `history` (one entry without `empty_layer` per layer,
    /// or none). The blobs the source lacks must be in the layout of
    /// [`EditOptions::with_new_blobs`] (checked when the edit is written).
    pub fn set_layers(
        &mut self,
        layers: Vec<(Descriptor, Digest)>,
        history: Vec<Value>,
    ) -> Result<()> {
        self.edit_config(|json| {
            let rootfs = json
                .entry("rootfs")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(rootfs) = rootfs {
                rootfs.insert(
                    "diff_ids".into(),
                    Value::Array(
                        layers
                            .iter()
                            .map(|(_, id)| Value::from(id.as_str()))
                            .collect(),
                    ),
                );
            }
            if history.is_empty() {
                json.remove("history");
            } else {
                json.insert("history".into(), Value::Array(history));
            }
        })?;
        self.layers = layers.into_iter().map(|(layer, _)| layer).collect();
        Ok(())
    }

    /// Edits the config's JSON and parses the result again (the layout's strict parser).
    fn edit_config(&mut self, change: impl FnOnce(&mut Map<String, Value>)) -> Result<()> {
        let mut json = self.config.as_json().clone();
        change(&mut json);
        let refuse = |source| Error::Edit {
            digest: self.source_digest.to_string(),
            source,
        };
        let bytes = serde_json::to_vec(&Value::Object(json)).map_err(|e| {
            refuse(ocikit_layout::Error::InvalidImage {
                reason: format!("cannot serialise the config: {e}"),
            })
        })?;
        self.config = ImageConfig::parse(&self.source_digest, &bytes).map_err(refuse)?;
        Ok(())
    }
}

/// The comment of a history entry made up for a layer that had none.
const MISSING_HISTORY: &str = "history entry added by ocikit: the source image had none";

fn missing_history() -> Value {
    let mut entry = Map::new();
    entry.insert("comment".into(), Value::from(MISSING_HISTORY));
    Value::Object(entry)
}

/// `diff_id` appended to the config's `rootfs.diff_ids` (made when absent).
fn push_diff_id(json: &mut Map<String, Value>, diff_id: &Digest) {
    let rootfs = json
        .entry("rootfs")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(rootfs) = rootfs {
        let ids = rootfs
            .entry("diff_ids")
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(ids) = ids {
            ids.push(Value::from(diff_id.as_str()));
        }
    }
}

/// What an [`edit_image`] (or [`mutate`]) did.
///
/// It serializes (camelCase) as `ocikit mutate --json` prints it: the locations, the image
/// as `TAG DIGEST` (or a docker-archive's `NAME:TAG`), the digests of the new manifest, of
/// the source image and of the new config, and the blob counts.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct EditReport {
    /// The source, as [`Location`]'s `Display` writes it.
    pub source: String,
    /// The destination, as [`Location`]'s `Display` writes it.
    pub destination: String,
    /// The edited image at the destination, with its name there.
    pub image: CopiedImage,
    /// The digest of the new manifest.
    pub digest: String,
    /// The digest of the image manifest that was edited (picked from an index, if the
    /// source was one).
    pub source_digest: String,
    /// The digest of the new config.
    pub config_digest: String,
    /// The blobs the new image reaches (config and layers).
    pub blobs: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Blobs written or uploaded to the destination (the new config; layers only where the
    /// destination lacked them and could not mount them).
    pub blobs_written: usize,
    /// Blobs a registry mounted from the source repository.
    pub blobs_mounted: usize,
    /// Blobs the destination had already.
    pub blobs_skipped: usize,
}

/// The image manifest being edited, read and verified from a layout that holds at least it
/// and its config.
struct Picked {
    descriptor: Descriptor,
    digest: Digest,
    json: Map<String, Value>,
    config: ImageConfig,
    layers: Vec<Descriptor>,
    from_index: bool,
}

impl Picked {
    fn edit(&self) -> ImageEdit {
        let annotations = match self.json.get("annotations") {
            Some(Value::Object(map)) => map
                .iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect(),
            _ => BTreeMap::new(),
        };
        ImageEdit {
            config: self.config.clone(),
            annotations,
            manifest_media_type: self.descriptor.media_type().to_string(),
            layers: self.layers.clone(),
            from_index: self.from_index,
            source_digest: self.digest.clone(),
        }
    }
}

/// Reads the image `source` names, applies `edit` to its config and manifest annotations,
/// and writes the new image to `destination` under the tag it names, moving only what
/// changed (see the [module documentation](self)). `edit` runs before anything is written
/// anywhere: an error it returns leaves every location as it was.
pub async fn edit_image<F>(
    source: &Location,
    destination: &Location,
    options: &EditOptions,
    edit: F,
) -> Result<EditReport>
where
    F: FnOnce(&mut ImageEdit) -> Result<()>,
{
    let name = destination_name(destination)?;
    let mut report = if let (
        Location::Docker {
            registry,
            repository: from,
            ..
        },
        Location::Docker {
            registry: to_registry,
            repository: to,
            ..
        },
    ) = (source, destination)
        && registry == to_registry
        && options.source == options.destination
    {
        within_registry(source, destination, (from, to), &name, options, edit).await?
    } else if let (Location::Oci { path: a, .. }, Location::Oci { path: b, .. }) =
        (source, destination)
        && same_directory(a, b)
    {
        within_layout(source, a, &name, options, edit).await?
    } else {
        through_scratch(source, destination, options, edit).await?
    };
    report.source = source.to_string();
    report.destination = destination.to_string();
    Ok(report)
}

/// The name the destination gives the edited image: it must name one.
fn destination_name(destination: &Location) -> Result<ImageName> {
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
        } => Ok(ImageName::Tag(tag.clone())),
        Location::DockerArchive {
            reference: Some(name),
            ..
        } => Ok(ImageName::RepoTag(name.clone())),
        _ => Err(Error::EditNeedsTag {
            location: destination.to_string(),
        }),
    }
}

fn same_directory(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// `oci:` to the same layout: the new config and manifest written there, the tag set.
async fn within_layout<F>(
    source: &Location,
    path: &Path,
    name: &ImageName,
    options: &EditOptions,
    edit: F,
) -> Result<EditReport>
where
    F: FnOnce(&mut ImageEdit) -> Result<()>,
{
    let ImageName::Tag(tag) = name else {
        return Err(Error::EditNeedsTag {
            location: source.to_string(),
        });
    };
    let (_, selector) = source.oci("mutate")?;
    let layout = open_layout(path).await?;
    let root = resolve(&layout, path, selector).await?;
    let (manifest, from_index) = pick_in_layout(&layout, &root, options.platform(), source).await?;
    let mut picked = read_picked(&layout, &manifest).await?;
    picked.from_index = from_index;
    let mut changes = picked.edit();
    edit(&mut changes)?;
    let imported = import_new_blobs(options, &picked, &changes, &layout).await?;
    let written = write_edited(&layout, &picked, changes).await?;
    layout
        .set_tag(tag, &written.descriptor)
        .await
        .map_err(|source| Error::SetTag {
            digest: written.descriptor.digest().to_string(),
            tag: tag.clone(),
            source,
        })?;
    let (blobs, bytes) =
        ocikit_layout::copy::reach(&layout, std::slice::from_ref(&written.descriptor)).await?;
    Ok(EditReport {
        source: String::new(),
        destination: String::new(),
        image: copied(name, &written.descriptor),
        digest: written.descriptor.digest().to_string(),
        source_digest: picked.digest.to_string(),
        config_digest: written.config.digest().to_string(),
        blobs,
        bytes,
        blobs_written: written.new_blobs + imported,
        blobs_mounted: 0,
        blobs_skipped: blobs.saturating_sub(written.new_blobs + imported),
    })
}

/// `docker://` to the same registry: the manifest and config fetched, the layers skipped or
/// mounted, the new config uploaded and the manifest put.
async fn within_registry<F>(
    source: &Location,
    destination: &Location,
    (from, to): (&str, &str),
    name: &ImageName,
    options: &EditOptions,
    edit: F,
) -> Result<EditReport>
where
    F: FnOnce(&mut ImageEdit) -> Result<()>,
{
    let ImageName::Tag(tag) = name else {
        return Err(Error::EditNeedsTag {
            location: destination.to_string(),
        });
    };
    let Location::Docker { registry, .. } = destination else {
        return Err(Error::EditNeedsTag {
            location: destination.to_string(),
        });
    };
    let (fetched, picked) = read_registry(source, options).await?;
    let mut changes = picked.edit();
    edit(&mut changes)?;
    // New layers are pushed from the layout that holds them, with the config and manifest.
    let layout = options.new_blobs.as_ref().unwrap_or(&fetched);
    import_new_blobs(options, &picked, &changes, layout).await?;
    let layers = kept_layers(&picked, &changes)?;
    let written = write_edited(layout, &picked, changes).await?;
    let client = options.destination.client(registry)?;
    let within = client
        .copy_blobs_within(
            from,
            to,
            &layers,
            &CopyWithinOptions::new().with_progress(options.progress.stage(Stage::Copy)),
        )
        .await
        .map_err(|source_error| Error::CopyWithin {
            source_location: source.to_string(),
            destination: destination.to_string(),
            source: source_error,
        })?;
    let pushed = client
        .push(
            layout,
            &written.descriptor,
            to,
            Some(tag),
            &PushOptions::new().with_progress(options.progress.stage(Stage::Push)),
        )
        .await
        .map_err(|source_error| Error::Push {
            digest: written.descriptor.digest().to_string(),
            location: destination.to_string(),
            source: source_error,
        })?;
    Ok(EditReport {
        source: String::new(),
        destination: String::new(),
        image: copied(name, &written.descriptor),
        digest: written.descriptor.digest().to_string(),
        source_digest: picked.digest.to_string(),
        config_digest: written.config.digest().to_string(),
        blobs: pushed.blobs,
        bytes: pushed.total_bytes,
        // The push found every kept layer there (skipped or mounted just before): what it
        // uploaded is the config, if the repository lacked it, and the new layers.
        blobs_written: pushed.transferred + within.transferred,
        blobs_mounted: within.mounted,
        blobs_skipped: within.skipped + pushed.skipped.saturating_sub(layers.len()),
    })
}

/// Anywhere else: the source staged in scratch space, edited there, and copied to the
/// destination by the copy engine.
async fn through_scratch<F>(
    source: &Location,
    destination: &Location,
    options: &EditOptions,
    edit: F,
) -> Result<EditReport>
where
    F: FnOnce(&mut ImageEdit) -> Result<()>,
{
    let near = destination.path().or_else(|| source.path()).map_or_else(
        || std::env::temp_dir().join("ocikit-edit"),
        Path::to_path_buf,
    );
    let scratch = ScratchSpace::near(&near).await?;
    let staged_path: PathBuf = scratch.path().join("edit");
    // Whether the scratch layout shares files with the user's source layout (then the
    // destination must not share them in turn).
    let shares_source_files;
    let staged;
    let picked;
    match source {
        Location::Oci { path, selector } => {
            let layout = open_layout(path).await?;
            let root = resolve(&layout, path, selector.as_ref()).await?;
            let (manifest, from_index) =
                pick_in_layout(&layout, &root, options.platform(), source).await?;
            staged = crate::copy::scratch_layout(&staged_path).await?;
            // Scratch is only read, then removed: hardlinks cost nothing.
            copy_graph(
                &layout,
                std::slice::from_ref(&manifest),
                &staged,
                &LayoutCopyOptions::new()
                    .with_link_mode(LinkMode::Hardlink)
                    .with_progress(options.progress.stage(Stage::Copy)),
            )
            .await
            .map_err(|e| Error::Copy {
                digest: manifest.digest().to_string(),
                destination: "scratch space".into(),
                source: e,
            })?;
            let mut read = read_picked(&staged, &manifest).await?;
            read.from_index = from_index;
            picked = read;
            shares_source_files = true;
        }
        _ => {
            // A registry's index is refused (without a platform) before any layer is
            // pulled; the pull takes the platform's image only. An archive is imported
            // whole and the image picked from it.
            let mut registry_index = false;
            if source.is_registry() {
                let (layout, root) = open_image(source, &options.source, false, "mutate").await?;
                if options.platform.is_none() {
                    refuse_index(&layout, &root, source).await?;
                }
                registry_index = media_type::is_index_like(root.media_type().as_ref());
            }
            let stage_at = Location::Oci {
                path: staged_path.join("layout"),
                selector: Some(Selector::Tag(SOURCE_TAG.into())),
            };
            copy(
                source,
                &stage_at,
                &CopyOptions::new()
                    .with_source(options.source.clone())
                    .with_platform(options.platform.clone().filter(|_| source.is_registry()))
                    .with_progress(options.progress.clone()),
            )
            .await?;
            staged = open_layout(&staged_path.join("layout")).await?;
            let root = staged.resolve(SOURCE_TAG).await?;
            let (manifest, from_index) =
                pick_in_layout(&staged, &root, options.platform(), source).await?;
            let mut read = read_picked(&staged, &manifest).await?;
            read.from_index = from_index || registry_index;
            picked = read;
            shares_source_files = false;
        }
    }
    let mut changes = picked.edit();
    edit(&mut changes)?;
    import_new_blobs(options, &picked, &changes, &staged).await?;
    let written = write_edited(&staged, &picked, changes).await?;
    staged.set_tag(EDITED_TAG, &written.descriptor).await?;
    let edited = Location::Oci {
        path: staged_path.join("layout"),
        selector: Some(Selector::Tag(EDITED_TAG.into())),
    };
    let (report, name, root) = copy_from_scratch(
        &edited,
        destination,
        &options.destination,
        shares_source_files,
        &options.progress,
    )
    .await?;
    Ok(EditReport {
        source: String::new(),
        destination: String::new(),
        image: copied(&name, &root),
        digest: root.digest().to_string(),
        source_digest: picked.digest.to_string(),
        config_digest: written.config.digest().to_string(),
        blobs: report.blobs,
        bytes: report.bytes,
        blobs_written: report.blobs_copied,
        blobs_mounted: report.blobs_mounted,
        blobs_skipped: report.blobs_skipped,
    })
}

fn copied(name: &ImageName, root: &Descriptor) -> CopiedImage {
    CopiedImage {
        name: name.clone(),
        root: root.clone(),
    }
}

/// The image manifest to edit from `root` in `layout`: `root` itself, or the image of an
/// index the platform picks; an index without a platform is refused.
async fn pick_in_layout(
    layout: &Layout,
    root: &Descriptor,
    platform: Option<&PlatformQuery>,
    location: &Location,
) -> Result<(Descriptor, bool)> {
    if !media_type::is_index_like(root.media_type().as_ref()) {
        return Ok((root.clone(), false));
    }
    let Some(query) = platform else {
        refuse_index(layout, root, location).await?;
        return Ok((root.clone(), false));
    };
    let found = ocikit_layout::platform::resolve(layout, root, query)
        .await
        .map_err(|source| Error::Platform {
            location: location.to_string(),
            source,
        })?;
    let mut descriptor = found.descriptor;
    descriptor.set_platform(None);
    descriptor.set_annotations(None);
    Ok((descriptor, true))
}

/// [`Error::EditIndex`] when `root` is an index (naming the platforms it lists).
async fn refuse_index(layout: &Layout, root: &Descriptor, location: &Location) -> Result<()> {
    if !media_type::is_index_like(root.media_type().as_ref()) {
        return Ok(());
    }
    let platforms = match layout.read_document(root).await? {
        Document::Index { index, .. } => index
            .manifests()
            .iter()
            .filter_map(|d| d.platform().as_ref().map(platform::format))
            .collect(),
        _ => Vec::new(),
    };
    Err(Error::EditIndex {
        location: location.to_string(),
        digest: root.digest().to_string(),
        platforms,
    })
}

/// A registry image's manifest (picked from an index by the platform, following index
/// entries' `platform`) and config, fetched and verified into a memory layout.
async fn read_registry(source: &Location, options: &EditOptions) -> Result<(Layout, Picked)> {
    let mut current = source.clone();
    for depth in 0..MAX_INDEX_DEPTH {
        let (layout, root) = open_image(&current, &options.source, true, "mutate").await?;
        if !media_type::is_index_like(root.media_type().as_ref()) {
            let mut picked = read_picked(&layout, &root).await?;
            picked.from_index = depth > 0;
            return Ok((layout, picked));
        }
        let Some(query) = options.platform() else {
            refuse_index(&layout, &root, source).await?;
            break;
        };
        let Document::Index { index, .. } = layout.read_document(&root).await? else {
            break;
        };
        let available: Vec<String> = index
            .manifests()
            .iter()
            .filter_map(|d| d.platform().as_ref().map(platform::format))
            .collect();
        let Some(entry) = index
            .manifests()
            .iter()
            .find(|d| d.platform().as_ref().is_some_and(|p| query.matches(p)))
        else {
            return Err(Error::Platform {
                location: source.to_string(),
                source: ocikit_layout::Error::PlatformNotFound {
                    wanted: query.platform().map(platform::format).unwrap_or_default(),
                    available,
                },
            });
        };
        let Location::Docker {
            registry,
            repository,
            ..
        } = &current
        else {
            break;
        };
        let digest = digest_of(entry)?;
        current = Location::Docker {
            written: format!("{registry}/{repository}@{digest}"),
            registry: registry.clone(),
            repository: repository.clone(),
            selector: Selector::Digest(digest),
        };
    }
    Err(Error::Platform {
        location: source.to_string(),
        source: ocikit_layout::Error::PlatformNotFound {
            wanted: options
                .platform()
                .and_then(PlatformQuery::platform)
                .map(platform::format)
                .unwrap_or_default(),
            available: Vec::new(),
        },
    })
}

/// The image manifest `descriptor` names in `layout` and its config, read and verified.
async fn read_picked(layout: &Layout, descriptor: &Descriptor) -> Result<Picked> {
    let digest = digest_of(descriptor)?;
    let document = layout
        .read_document(descriptor)
        .await
        .map_err(|source| Error::ReadImage {
            digest: digest.to_string(),
            source,
        })?;
    let Document::Manifest { manifest, bytes } = document else {
        return Err(Error::NotAManifest {
            digest: digest.to_string(),
            media_type: descriptor.media_type().to_string(),
        });
    };
    let json = match ocikit_digest::json::parse_strict(&bytes) {
        Ok(Value::Object(json)) => json,
        Ok(_) => {
            return Err(Error::NotAManifest {
                digest: digest.to_string(),
                media_type: descriptor.media_type().to_string(),
            });
        }
        Err(source) => return Err(Error::NotJson { digest, source }),
    };
    let config_descriptor = manifest.config();
    let config = layout
        .read_image_config(config_descriptor)
        .await
        .map_err(|source| Error::ReadConfig {
            digest: config_descriptor.digest().to_string(),
            source,
        })?
        .ok_or_else(|| Error::NotAnImageConfig {
            digest: digest.to_string(),
            media_type: config_descriptor.media_type().to_string(),
        })?;
    Ok(Picked {
        descriptor: descriptor.clone(),
        digest,
        json,
        config,
        layers: manifest.layers().clone(),
        from_index: false,
    })
}

/// The new manifest and config [`write_edited`] wrote.
struct Written {
    descriptor: Descriptor,
    config: Descriptor,
    /// Of the config and the manifest, how many the layout did not have.
    new_blobs: usize,
}

/// Writes the edited config, then the manifest naming it (the source's manifest with the
/// config descriptor's digest and size, the annotations and the layers changed; everything
/// else as it was), into `layout`, and reads the manifest back through the one strict
/// parser. Every layer the edit added must be in `layout` already ([`import_new_blobs`]).
async fn write_edited(layout: &Layout, picked: &Picked, edit: ImageEdit) -> Result<Written> {
    let refuse = |source: ocikit_layout::Error| Error::Edit {
        digest: picked.digest.to_string(),
        source,
    };
    let before = picked.config.diff_ids().len();
    let config_bytes = edit.config.to_bytes().map_err(refuse)?;
    let mut json = picked.json.clone();
    let original_annotations = picked.edit().annotations;
    if edit.annotations != original_annotations
        && !edit.annotations.is_empty()
        && media_type::essence(&edit.manifest_media_type) == media_type::DOCKER_MANIFEST
    {
        return Err(Error::AnnotationsNeedOci {
            digest: picked.digest.to_string(),
            media_type: edit.manifest_media_type,
        });
    }
    let config_media_type = match json.get("config") {
        Some(Value::Object(config)) => config
            .get("mediaType")
            .and_then(Value::as_str)
            .map(str::to_owned),
        _ => None,
    }
    .unwrap_or_else(|| media_type::IMAGE_CONFIG.to_string());
    // Checked as a config before it is stored: the diffIDs and history agree with the
    // layers; where the layers stay, so must the diffIDs' count.
    let layers_changed = edit.layers != picked.layers;
    let parsed = ImageConfig::parse(&picked.digest, &config_bytes).map_err(refuse)?;
    if !layers_changed && parsed.diff_ids().len() != before {
        return Err(refuse(ocikit_layout::Error::InvalidImage {
            reason: "an edit of the config may not change its diffIDs".into(),
        }));
    }
    parsed
        .check_layers(&picked.digest, edit.layers.len())
        .map_err(refuse)?;
    let mut new_blobs = 0;
    if layers_changed {
        let layers = layers_json(layout, picked, &edit).await?;
        json.insert("layers".into(), Value::Array(layers));
    }
    let config_digest = Digest::sha256(&config_bytes);
    if !exists(layout, &config_digest).await? {
        new_blobs += 1;
    }
    let config = layout.put_blob(&config_media_type, &config_bytes).await?;
    if let Some(Value::Object(entry)) = json.get_mut("config") {
        entry.insert("digest".into(), Value::from(config.digest().to_string()));
        entry.insert("size".into(), Value::from(config.size()));
    }
    if edit.annotations.is_empty() {
        json.remove("annotations");
    } else {
        json.insert(
            "annotations".into(),
            Value::Object(
                edit.annotations
                    .into_iter()
                    .map(|(k, v)| (k, Value::String(v)))
                    .collect(),
            ),
        );
    }
    let manifest_bytes = ocikit_digest::json::value_to_canonical_vec(&Value::Object(json))
        .map_err(|e| {
            refuse(ocikit_layout::Error::InvalidImage {
                reason: format!("cannot serialise the manifest: {e}"),
            })
        })?;
    let manifest_digest = Digest::sha256(&manifest_bytes);
    if !exists(layout, &manifest_digest).await? {
        new_blobs += 1;
    }
    let stored = layout
        .put_blob(picked.descriptor.media_type().as_ref(), &manifest_bytes)
        .await?;
    let descriptor = descriptor::new(
        picked.descriptor.media_type().as_ref(),
        &digest_of(&stored)?,
        stored.size(),
    )
    .map_err(|source| Error::InvalidDescriptor {
        digest: manifest_digest.clone(),
        source,
    })?;
    // The one strict parser has the last word on the new manifest.
    layout.read_document(&descriptor).await.map_err(refuse)?;
    Ok(Written {
        descriptor,
        config,
        new_blobs,
    })
}

/// The manifest's `layers` for the edit's layers: a source layer as the source's manifest
/// wrote it, a new one as its descriptor (with the Docker media type in a Docker manifest),
/// once its blob is found in `layout` with its size.
async fn layers_json(layout: &Layout, picked: &Picked, edit: &ImageEdit) -> Result<Vec<Value>> {
    let refuse = |reason: String| Error::Edit {
        digest: picked.digest.to_string(),
        source: ocikit_layout::Error::InvalidImage { reason },
    };
    let originals = match picked.json.get("layers") {
        Some(Value::Array(layers)) => layers.clone(),
        _ => Vec::new(),
    };
    let docker = media_type::essence(&edit.manifest_media_type) == media_type::DOCKER_MANIFEST;
    let mut out = Vec::with_capacity(edit.layers.len());
    for layer in &edit.layers {
        if let Some(at) = picked.layers.iter().position(|l| l == layer)
            && let Some(original) = originals.get(at)
        {
            out.push(original.clone());
            continue;
        }
        let digest = digest_of(layer)?;
        match layout.store().stat(&digest).await? {
            Some(size) if size == layer.size() => {}
            _ => {
                return Err(refuse(format!(
                    "the new layer {digest} ({} bytes) is not among the edit's new blobs",
                    layer.size()
                )));
            }
        }
        let mut layer = layer.clone();
        if docker {
            layer.set_media_type(docker_layer_type(picked, &layer)?.into());
        }
        let value = serde_json::to_value(&layer)
            .map_err(|e| refuse(format!("cannot serialise a layer descriptor: {e}")))?;
        out.push(value);
    }
    Ok(out)
}

/// The Docker schema 2 media type of a new layer of `picked` (a Docker manifest): gzip and
/// uncompressed layers have one, anything else is refused.
fn docker_layer_type(picked: &Picked, layer: &Descriptor) -> Result<&'static str> {
    let oci = layer.media_type().to_string();
    match media_type::essence(&oci) {
        media_type::IMAGE_LAYER_GZIP | media_type::DOCKER_LAYER_GZIP => {
            Ok(media_type::DOCKER_LAYER_GZIP)
        }
        media_type::IMAGE_LAYER | media_type::DOCKER_LAYER => Ok(media_type::DOCKER_LAYER),
        _ => Err(Error::Edit {
            digest: picked.digest.to_string(),
            source: ocikit_layout::Error::InvalidImage {
                reason: format!(
                    "a {} manifest cannot name a {oci} layer (use gzip or no compression)",
                    media_type::DOCKER_MANIFEST
                ),
            },
        }),
    }
}

/// Puts into `target` each layer of `edit` that the source image does not name and
/// `target` lacks, from the layout of [`EditOptions::with_new_blobs`] (hardlinked where it
/// can be); returns how many it put there.
async fn import_new_blobs(
    options: &EditOptions,
    picked: &Picked,
    edit: &ImageEdit,
    target: &Layout,
) -> Result<usize> {
    let docker = media_type::essence(&edit.manifest_media_type) == media_type::DOCKER_MANIFEST;
    let Some(from) = &options.new_blobs else {
        return Ok(0);
    };
    let mut wanted = Vec::new();
    for layer in &edit.layers {
        if picked.layers.contains(layer) || wanted.contains(layer) {
            continue;
        }
        // Refused before any blob is put anywhere.
        if docker {
            docker_layer_type(picked, layer)?;
        }
        if !exists(target, &digest_of(layer)?).await? {
            wanted.push(layer.clone());
        }
    }
    if wanted.is_empty() {
        return Ok(0);
    }
    copy_graph(
        from,
        &wanted,
        target,
        &LayoutCopyOptions::new()
            .with_link_mode(LinkMode::Hardlink)
            .with_progress(options.progress.stage(Stage::Copy)),
    )
    .await
    .map_err(|e| Error::Copy {
        digest: picked.digest.to_string(),
        destination: "the edited image's layout".into(),
        source: e,
    })?;
    Ok(wanted.len())
}

/// The source's layers the edit keeps, as the registry copy moves them.
fn kept_layers(picked: &Picked, edit: &ImageEdit) -> Result<Vec<(Digest, u64)>> {
    let mut kept = Vec::new();
    for layer in &picked.layers {
        let blob = (digest_of(layer)?, layer.size());
        if edit.layers.contains(layer) && !kept.contains(&blob) {
            kept.push(blob);
        }
    }
    Ok(kept)
}

async fn exists(layout: &Layout, digest: &Digest) -> Result<bool> {
    Ok(layout.store().stat(digest).await?.is_some())
}

/// A descriptor's digest as ocikit's [`Digest`].
fn digest_of(descriptor: &Descriptor) -> Result<Digest> {
    let text = descriptor.digest().to_string();
    text.parse().map_err(|source| Error::InvalidDigest {
        digest: text.clone(),
        source,
    })
}
