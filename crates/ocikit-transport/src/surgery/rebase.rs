//! [`rebase`]: `ocikit rebase`, the layers of an image's old base swapped for a new base's,
//! from any location to any other.

use std::path::{Path, PathBuf};

use ocikit_client::{CopyWithinOptions, PushOptions};
use ocikit_digest::oci_spec::image::Descriptor;
use ocikit_digest::{Digest, media_type, platform};
use ocikit_layout::{CopyOptions as LayoutCopyOptions, Layout, PlatformQuery, copy_graph};
use serde_json::Value;

use super::{
    EditOptions, EditReport, ImageEdit, Picked, SOURCE_TAG, copied, destination_name, digest_of,
    edit_image, missing_history, pick_in_layout, read_picked, read_registry, write_edited,
};
use crate::copy::{CopyOptions, ScratchSpace, copy, scratch_layout};
use crate::error::{Error, Result};
use crate::location::{Location, Selector};
use crate::open::{open_layout, resolve};
use crate::progress::Stage;

/// The manifest annotation naming the digest of the image's base (OCI annotations).
const BASE_DIGEST: &str = "org.opencontainers.image.base.digest";
/// The manifest annotation naming the base image's reference.
const BASE_NAME: &str = "org.opencontainers.image.base.name";

/// How to [`rebase`]: the [`EditOptions`] (how to reach the registries, the platform of an
/// index, progress). The source options reach the image and both bases.
#[derive(Clone, Debug, Default)]
pub struct RebaseOptions {
    edit: EditOptions,
}

impl RebaseOptions {
    /// Default [`EditOptions`].
    pub fn new() -> RebaseOptions {
        RebaseOptions::default()
    }

    /// How to read the image and the bases, and write the destination.
    pub fn with_edit(mut self, edit: EditOptions) -> RebaseOptions {
        self.edit = edit;
        self
    }
}

/// An image manifest read for the rebase: the layout that holds it (with its layers when
/// they are needed), and the manifest and config.
struct Read {
    layout: Layout,
    picked: Picked,
}

/// Takes the image `source` names off its old base `old_base` and puts it on `new_base`,
/// writing the result to `destination`, tagged as it says (`ocikit rebase`, as `crane
/// rebase`).
///
/// - The image's first N diffIDs must be the old base's N diffIDs (N its layer count),
///   else [`Error::NotBuiltOn`] names the first layer that differs. Comparing diffIDs, not
///   layer digests, accepts an old base whose layers were recompressed.
/// - The new base must be of the image's platform (`os/arch[/variant]`), else
///   [`Error::RebasePlatform`].
/// - The new layers are the new base's, then the image's above the old base; `rootfs.
///   diff_ids` likewise. The history is the new base's entries, then the image's entries
///   after the old base's history: an image built on the base starts with the base's
///   history whole, `empty_layer` entries included, so all H of them are cut (H counted
///   with those entries) and the base's trailing `CMD`/`ENV` entries go with it. Where the
///   image's history does not start with the base's (rewritten by a tool), the entries
///   after its N-th layer entry are kept instead (so an `ENV` of the image is never lost;
///   a trailing empty entry of the old base may stay). A side without history gets one
///   made-up entry per layer when the other has some.
/// - The rest of the config (env, entrypoint, labels, `created`, ...) is the image's; the
///   manifest's annotations are the image's, with `org.opencontainers.image.base.digest`
///   set to the new base's image manifest digest and `org.opencontainers.image.base.name`
///   to its reference when it is a `docker://` reference by tag (removed otherwise, so that
///   it never names the old base). A Docker schema 2 manifest has no annotations: it gets
///   none.
///
/// An index (the image or a base) needs a platform in the options ([`Error::EditIndex`]
/// for the image); a base given as an index without one is picked for the image's
/// platform. The old base is only read (manifest and config); the new base's layers reach
/// the destination with the config and manifest: when the image, the new base and the
/// destination are in one registry they are mounted there from the new base's repository
/// (and the image's own layers from its repository), nothing is downloaded; anywhere else
/// the new base is first staged in scratch space. Every check runs before anything is
/// written: a refusal leaves every location as it was.
pub async fn rebase(
    source: &Location,
    old_base: &Location,
    new_base: &Location,
    destination: &Location,
    options: &RebaseOptions,
) -> Result<EditReport> {
    destination_name(destination)?;
    let edit = &options.edit;
    let near = destination.path().or_else(|| source.path()).map_or_else(
        || std::env::temp_dir().join("ocikit-rebase"),
        Path::to_path_buf,
    );
    let scratch = ScratchSpace::near(&near).await?;
    let result = run(
        source,
        old_base,
        new_base,
        destination,
        edit,
        &scratch.path(),
    )
    .await;
    drop(scratch);
    let mut report = result?;
    report.source = source.to_string();
    report.destination = destination.to_string();
    Ok(report)
}

async fn run(
    source: &Location,
    old_base: &Location,
    new_base: &Location,
    destination: &Location,
    edit: &EditOptions,
    scratch: &Path,
) -> Result<EditReport> {
    // One registry for the image, the new base and the destination: nothing is downloaded.
    let one_registry = match (source, new_base, destination) {
        (
            Location::Docker { registry: a, .. },
            Location::Docker { registry: b, .. },
            Location::Docker { registry: c, .. },
        ) => a == b && b == c && edit.source == edit.destination,
        _ => false,
    };
    let (image, pinned) = read_source(source, edit, &scratch.join("source")).await?;
    // The bases' indexes are picked for the platform asked, else for the image's.
    let query = edit
        .platform()
        .cloned()
        .unwrap_or_else(|| PlatformQuery::new(&strip(&image.picked.config.platform())));
    let old = read_base(old_base, edit, &query, &scratch.join("old-base"), false).await?;
    let new = read_base(
        new_base,
        edit,
        &query,
        &scratch.join("new-base"),
        !one_registry,
    )
    .await?;
    check_built_on(source, old_base, &image.picked, &old.picked)?;
    check_platform(source, new_base, &image.picked, &new.picked)?;
    let annotate = Annotate::new(new_base, &new.picked);
    let old_history = history_of(&old.picked.config);
    let old_layers = old.picked.layers.len();
    let apply = |image: &mut ImageEdit| {
        swap_base(image, old_layers, &old_history, &new.picked)?;
        annotate.apply(image);
        Ok(())
    };
    if one_registry {
        return within_registry(
            source,
            new_base,
            destination,
            image,
            &new.picked,
            edit,
            apply,
        )
        .await;
    }
    let engine = edit
        .clone()
        .with_platform(None)
        .with_new_blobs(Some(new.layout));
    edit_image(&pinned, destination, &engine, apply).await
}

/// The platform's `os/arch[/variant]` only (the query an index of a base is picked by).
fn strip(p: &ocikit_digest::oci_spec::image::Platform) -> ocikit_digest::oci_spec::image::Platform {
    platform::build(
        &p.os().to_string(),
        &p.architecture().to_string(),
        p.variant().as_deref(),
    )
}

/// The image to rebase, read, and the location the edit engine reads it from again, pinned
/// to the manifest read: an `oci:` layout or a registry as they are (a registry's manifest
/// and config only), an archive imported into scratch space at `staged`.
async fn read_source(
    source: &Location,
    edit: &EditOptions,
    staged: &Path,
) -> Result<(Read, Location)> {
    match source {
        Location::Oci { path, selector } => {
            let layout = open_layout(path).await?;
            let root = resolve(&layout, path, selector.as_ref()).await?;
            let (manifest, from_index) =
                pick_in_layout(&layout, &root, edit.platform(), source).await?;
            let mut picked = read_picked(&layout, &manifest).await?;
            picked.from_index = from_index;
            let pinned = Location::Oci {
                path: path.clone(),
                selector: Some(Selector::Digest(picked.digest.clone())),
            };
            Ok((Read { layout, picked }, pinned))
        }
        Location::Docker {
            registry,
            repository,
            ..
        } => {
            let (layout, picked) = read_registry(source, edit).await?;
            let digest = picked.digest.clone();
            let pinned = Location::Docker {
                written: format!("{registry}/{repository}@{digest}"),
                registry: registry.clone(),
                repository: repository.clone(),
                selector: Selector::Digest(digest),
            };
            Ok((Read { layout, picked }, pinned))
        }
        _ => {
            let layout = stage(source, edit, None, staged).await?;
            let root = layout.resolve(SOURCE_TAG).await?;
            let (manifest, from_index) =
                pick_in_layout(&layout, &root, edit.platform(), source).await?;
            let mut picked = read_picked(&layout, &manifest).await?;
            picked.from_index = from_index;
            let pinned = Location::Oci {
                path: staged.join("layout"),
                selector: Some(Selector::Digest(picked.digest.clone())),
            };
            Ok((Read { layout, picked }, pinned))
        }
    }
}

/// A base image, picked for `query` from an index: read from an `oci:` layout or a
/// registry where it is (manifest and config), or from a copy in scratch space at `staged`
/// (an archive; and, when `layers` are wanted, every base, so that its blobs can travel
/// from a layout of ocikit's own).
async fn read_base(
    location: &Location,
    edit: &EditOptions,
    query: &PlatformQuery,
    staged: &Path,
    layers: bool,
) -> Result<Read> {
    let pick = edit.clone().with_platform(Some(query.clone()));
    match location {
        Location::Oci { path, selector } => {
            let layout = open_layout(path).await?;
            let root = resolve(&layout, path, selector.as_ref()).await?;
            let (manifest, _) = pick_in_layout(&layout, &root, pick.platform(), location).await?;
            if !layers {
                let picked = read_picked(&layout, &manifest).await?;
                return Ok(Read { layout, picked });
            }
            // Copied, not hardlinked: the blobs go on into the destination, which must not
            // share files with the user's layout.
            let copy_to = scratch_layout(staged).await?;
            copy_graph(
                &layout,
                std::slice::from_ref(&manifest),
                &copy_to,
                &LayoutCopyOptions::new().with_progress(edit.progress.stage(Stage::Copy)),
            )
            .await
            .map_err(|e| Error::Copy {
                digest: manifest.digest().to_string(),
                destination: "scratch space".into(),
                source: e,
            })?;
            let picked = read_picked(&copy_to, &manifest).await?;
            Ok(Read {
                layout: copy_to,
                picked,
            })
        }
        Location::Docker { .. } if !layers => {
            let (layout, picked) = read_registry(location, &pick).await?;
            Ok(Read { layout, picked })
        }
        _ => {
            let platform = Some(query.clone()).filter(|_| location.is_registry());
            let layout = stage(location, edit, platform, staged).await?;
            let root = layout.resolve(SOURCE_TAG).await?;
            let (manifest, _) = pick_in_layout(&layout, &root, pick.platform(), location).await?;
            let picked = read_picked(&layout, &manifest).await?;
            Ok(Read { layout, picked })
        }
    }
}

/// `location` copied into a new layout at `staged` (its `layout` directory), tagged
/// [`SOURCE_TAG`]; from a registry, the image of `platform` only.
async fn stage(
    location: &Location,
    edit: &EditOptions,
    platform: Option<PlatformQuery>,
    staged: &Path,
) -> Result<Layout> {
    let path: PathBuf = staged.join("layout");
    let stage_at = Location::Oci {
        path: path.clone(),
        selector: Some(Selector::Tag(SOURCE_TAG.into())),
    };
    copy(
        location,
        &stage_at,
        &CopyOptions::new()
            .with_source(edit.source.clone())
            .with_platform(platform)
            .with_progress(edit.progress.clone()),
    )
    .await?;
    open_layout(&path).await
}

/// [`Error::NotBuiltOn`] unless the image's first diffIDs are the old base's.
fn check_built_on(
    source: &Location,
    old_base: &Location,
    image: &Picked,
    old: &Picked,
) -> Result<()> {
    let have = image.config.diff_ids();
    for (at, wanted) in old.config.diff_ids().iter().enumerate() {
        let found = have.get(at);
        if found != Some(wanted) {
            return Err(Error::NotBuiltOn {
                image: format!("{source} ({})", image.digest),
                base: format!("{old_base} ({})", old.digest),
                layer: at + 1,
                image_diff_id: found.map(ToString::to_string),
                base_diff_id: wanted.to_string(),
            });
        }
    }
    Ok(())
}

/// [`Error::RebasePlatform`] unless the new base is of the image's platform.
fn check_platform(
    source: &Location,
    new_base: &Location,
    image: &Picked,
    new: &Picked,
) -> Result<()> {
    let have = strip(&image.config.platform());
    let base = strip(&new.config.platform());
    if PlatformQuery::new(&have).matches(&base) {
        return Ok(());
    }
    Err(Error::RebasePlatform {
        image: source.to_string(),
        image_platform: platform::format(&have),
        base: new_base.to_string(),
        base_platform: platform::format(&base),
    })
}

/// The layers, diffIDs and history of `image` with the old base's (`old_layers` layers,
/// the history `old_history`) swapped for `new`'s.
fn swap_base(
    image: &mut ImageEdit,
    old_layers: usize,
    old_history: &[Value],
    new: &Picked,
) -> Result<()> {
    let diff_ids = image.config.diff_ids();
    let new_ids = new.config.diff_ids();
    let mut layers: Vec<(Descriptor, Digest)> = new.layers.iter().cloned().zip(new_ids).collect();
    layers.extend(
        image
            .layers()
            .iter()
            .cloned()
            .zip(diff_ids)
            .skip(old_layers),
    );
    let top = image.layers().len().saturating_sub(old_layers);
    let base_history = history_of(&new.config);
    let image_history = history_of(&image.config);
    let above = above_base(&image_history, old_layers, old_history, top);
    let history = match (base_history.is_empty(), above.is_empty()) {
        (true, true) => Vec::new(),
        (base_empty, above_empty) => {
            let mut history = if base_empty {
                (0..new.layers.len()).map(|_| missing_history()).collect()
            } else {
                base_history
            };
            if above_empty {
                history.extend((0..top).map(|_| missing_history()));
            } else {
                history.extend(above);
            }
            history
        }
    };
    image.set_layers(layers, history)
}

/// The config's history entries as JSON (empty when absent).
fn history_of(config: &ocikit_layout::ImageConfig) -> Vec<Value> {
    match config.as_json().get("history") {
        Some(Value::Array(entries)) => entries.clone(),
        _ => Vec::new(),
    }
}

fn is_layer_entry(entry: &Value) -> bool {
    entry.get("empty_layer").and_then(Value::as_bool) != Some(true)
}

/// The entries of `history` above the base: when it starts with the base's history
/// `old_history` (entry for entry, `empty_layer` ones included), the entries after it;
/// else those after the entry of the `old_layers`-th layer. Empty when what is left does
/// not hold `top` layers.
fn above_base(
    history: &[Value],
    old_layers: usize,
    old_history: &[Value],
    top: usize,
) -> Vec<Value> {
    let layers_in = |entries: &[Value]| entries.iter().filter(|e| is_layer_entry(e)).count();
    if history.is_empty() {
        return Vec::new();
    }
    if history.starts_with(old_history) && layers_in(&history[old_history.len()..]) == top {
        return history[old_history.len()..].to_vec();
    }
    let mut seen = 0;
    let mut start = 0;
    if old_layers > 0 {
        for (at, entry) in history.iter().enumerate() {
            if is_layer_entry(entry) {
                seen += 1;
                if seen == old_layers {
                    start = at + 1;
                    break;
                }
            }
        }
    }
    let rest = &history[start.min(history.len())..];
    if layers_in(rest) == top {
        rest.to_vec()
    } else {
        Vec::new()
    }
}

/// The base annotations the rebased manifest gets.
struct Annotate {
    digest: String,
    name: Option<String>,
}

impl Annotate {
    fn new(new_base: &Location, new: &Picked) -> Annotate {
        let name = match new_base {
            Location::Docker {
                registry,
                repository,
                selector: Selector::Tag(tag),
                ..
            } => Some(format!("{registry}/{repository}:{tag}")),
            _ => None,
        };
        Annotate {
            digest: new.digest.to_string(),
            name,
        }
    }

    fn apply(&self, image: &mut ImageEdit) {
        if media_type::essence(image.manifest_media_type()) == media_type::DOCKER_MANIFEST {
            return;
        }
        image
            .annotations
            .insert(BASE_DIGEST.into(), self.digest.clone());
        match &self.name {
            Some(name) => image.annotations.insert(BASE_NAME.into(), name.clone()),
            None => image.annotations.remove(BASE_NAME),
        };
    }
}

/// The image, the new base and the destination in one registry: the rebased config and
/// manifest written to the image's memory layout, the new base's layers mounted from its
/// repository and the image's from its own, then the config and manifest pushed.
async fn within_registry<F>(
    source: &Location,
    new_base: &Location,
    destination: &Location,
    image: Read,
    new: &Picked,
    edit: &EditOptions,
    apply: F,
) -> Result<EditReport>
where
    F: FnOnce(&mut ImageEdit) -> Result<()>,
{
    let (
        Location::Docker {
            repository: from, ..
        },
        Location::Docker {
            repository: base_repository,
            ..
        },
        Location::Docker {
            registry,
            repository: to,
            selector: Selector::Tag(tag),
            ..
        },
    ) = (source, new_base, destination)
    else {
        return Err(Error::EditNeedsTag {
            location: destination.to_string(),
        });
    };
    let Read { layout, mut picked } = image;
    let mut changes = picked.edit();
    apply(&mut changes)?;
    // The rebased manifest and config become the "source" the edit is written from: its
    // layers are the new list (the new base's as its manifest wrote them), so that the
    // writer, which finds a changed layer list's new blobs in the layout, writes the
    // manifest naming blobs that only the registry holds.
    let originals = match picked.json.get("layers") {
        Some(Value::Array(layers)) => layers.clone(),
        _ => Vec::new(),
    };
    let base_json = new_layers_json(new, &picked)?;
    let top = changes.layers().len() - new.layers.len();
    let mut layers_json = base_json;
    layers_json.extend(originals.iter().skip(originals.len() - top).cloned());
    picked
        .json
        .insert("layers".into(), Value::Array(layers_json));
    picked.layers = changes.layers().to_vec();
    picked.config = changes.config.clone();
    let base_blobs = blobs_of(&new.layers)?;
    let image_blobs = blobs_of(&picked.layers[new.layers.len()..])?;
    let written = write_edited(&layout, &picked, changes).await?;
    let client = edit.destination.client(registry)?;
    let within_options = CopyWithinOptions::new().with_progress(edit.progress.stage(Stage::Copy));
    let failed = |e| Error::CopyWithin {
        source_location: source.to_string(),
        destination: destination.to_string(),
        source: e,
    };
    let base_moved = client
        .copy_blobs_within(base_repository, to, &base_blobs, &within_options)
        .await
        .map_err(failed)?;
    let image_moved = client
        .copy_blobs_within(from, to, &image_blobs, &within_options)
        .await
        .map_err(failed)?;
    let pushed = client
        .push(
            &layout,
            &written.descriptor,
            to,
            Some(tag),
            &PushOptions::new().with_progress(edit.progress.stage(Stage::Push)),
        )
        .await
        .map_err(|e| Error::Push {
            digest: written.descriptor.digest().to_string(),
            location: destination.to_string(),
            source: e,
        })?;
    let layers = base_blobs.len() + image_blobs.len();
    Ok(EditReport {
        source: String::new(),
        destination: String::new(),
        image: copied(
            &crate::copy::ImageName::Tag(tag.clone()),
            &written.descriptor,
        ),
        digest: written.descriptor.digest().to_string(),
        source_digest: picked.digest.to_string(),
        config_digest: written.config.digest().to_string(),
        blobs: pushed.blobs,
        bytes: pushed.total_bytes,
        blobs_written: pushed.transferred + base_moved.transferred + image_moved.transferred,
        blobs_mounted: base_moved.mounted + image_moved.mounted,
        blobs_skipped: base_moved.skipped
            + image_moved.skipped
            + pushed.skipped.saturating_sub(layers),
    })
}

/// The new base's layers as its manifest wrote them, with Docker media types for a Docker
/// schema 2 image.
fn new_layers_json(new: &Picked, image: &Picked) -> Result<Vec<Value>> {
    let written = match new.json.get("layers") {
        Some(Value::Array(layers)) => layers.clone(),
        _ => Vec::new(),
    };
    let docker =
        media_type::essence(image.descriptor.media_type().as_ref()) == media_type::DOCKER_MANIFEST;
    let mut out = Vec::with_capacity(written.len());
    for (layer, mut value) in new.layers.iter().zip(written) {
        if docker {
            let media = super::docker_layer_type(image, layer)?;
            if let Value::Object(entry) = &mut value {
                entry.insert("mediaType".into(), Value::from(media));
            }
        }
        out.push(value);
    }
    Ok(out)
}

/// Each layer's digest and size, once.
fn blobs_of(layers: &[Descriptor]) -> Result<Vec<(Digest, u64)>> {
    let mut out = Vec::new();
    for layer in layers {
        let blob = (digest_of(layer)?, layer.size());
        if !out.contains(&blob) {
            out.push(blob);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::above_base;

    /// The old base's history: two layers and a CMD.
    fn base() -> Vec<Value> {
        vec![layer("base 1"), layer("base 2"), empty("base CMD")]
    }

    fn layer(name: &str) -> Value {
        json!({ "created_by": name })
    }

    fn empty(name: &str) -> Value {
        json!({ "created_by": name, "empty_layer": true })
    }

    #[test]
    fn the_entries_above_the_base_s_history_are_kept() {
        // The base: two layers and a CMD; the image adds an ENV and one layer.
        let history = [
            layer("base 1"),
            layer("base 2"),
            empty("base CMD"),
            empty("ENV"),
            layer("COPY"),
        ];
        assert_eq!(
            above_base(&history, 2, &base(), 1),
            [empty("ENV"), layer("COPY")]
        );
    }

    #[test]
    fn a_history_that_lost_the_base_s_empty_entries_is_cut_after_its_layers() {
        // The image's history lost the base's CMD: counting three entries would cut the
        // image's ENV; the cut after the base's second layer keeps it.
        let history = [
            layer("base 1"),
            layer("base 2"),
            empty("ENV"),
            layer("COPY"),
        ];
        assert_eq!(
            above_base(&history, 2, &base(), 1),
            [empty("ENV"), layer("COPY")]
        );
        // A history that does not hold the layers above: none kept (made up instead).
        assert!(above_base(&history, 2, &base(), 2).is_empty());
        assert!(above_base(&[], 2, &base(), 1).is_empty());
        // No base layers at all (a base of scratch with a CMD entry).
        assert_eq!(
            above_base(&[empty("CMD"), layer("COPY")], 0, &[empty("CMD")], 1),
            [layer("COPY")]
        );
    }
}
