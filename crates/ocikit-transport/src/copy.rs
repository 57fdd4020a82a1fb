//! [`copy`]: images between any two locations.
//!
//! The source is first made a layout: an `oci:` source is used as it is, an archive is
//! imported (streaming, verified) and a registry image pulled into a scratch layout beside
//! the destination, so that the destination side only ever copies (or pushes) from a layout,
//! with hardlinks where both sit on one filesystem. A registry image bound for an `oci:`
//! layout is pulled straight into it. A registry image bound for another repository of the
//! same registry (reached with the same options) is copied there without any blob passing
//! through: manifests only, blobs mounted. Nothing is tagged at the destination before every
//! blob it reaches is there, and a layout that did not exist appears only once the copy is
//! complete.

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use ocikit_client::{CopyWithinOptions, PullOptions, PushOptions};
use ocikit_codec::compression::Compression;
use ocikit_digest::oci_spec::image::Descriptor;
use ocikit_layout::archive::{docker, oci};
use ocikit_layout::convert::{self, ConvertOptions, ManifestFormat};
use ocikit_layout::{
    CopyOptions as LayoutCopyOptions, Layout, PlatformQuery, RecompressOptions, StagedLayout,
    copy_image, recompress,
};
use ocikit_store::{FsStore, LinkMode};

use crate::access::RegistryOptions;
use crate::copy_referrers::{self, ReferrersReport};
use crate::copy_signatures;
use crate::error::{Error, Result};
use crate::location::{Location, Selector};
use crate::open::{open_layout, resolve};
use crate::progress::{Progress, Stage};

/// How to [`copy`]: how to reach each side's registry, what to take from an index, whether
/// to recompress, and where to report progress.
#[derive(Clone, Debug, Default)]
pub struct CopyOptions {
    source: RegistryOptions,
    destination: RegistryOptions,
    platform: Option<PlatformQuery>,
    all_platforms: bool,
    compression: Option<Compression>,
    compression_level: Option<i32>,
    format: Option<ManifestFormat>,
    drop_annotations: bool,
    hardlink: bool,
    referrers: bool,
    /// `with_signatures(false)` (stored negated so that the default carries them).
    remove_signatures: bool,
    #[cfg(feature = "sign")]
    policy: Option<ocikit_sign::Policy>,
    progress: Progress,
}

impl CopyOptions {
    /// TLS verified on both sides, stored credentials, this machine's platform from a
    /// registry index, the whole index from a layout or archive, layers copied byte for
    /// byte, blob files copied (never shared), no progress.
    pub fn new() -> CopyOptions {
        CopyOptions::default()
    }

    /// How to reach the source registry.
    pub fn with_source(mut self, options: RegistryOptions) -> CopyOptions {
        self.source = options;
        self
    }

    /// How to reach the destination registry.
    pub fn with_destination(mut self, options: RegistryOptions) -> CopyOptions {
        self.destination = options;
        self
    }

    /// Copies only this platform's image of an index, from any source (default: from a
    /// registry, this machine's; from a layout or an archive, the whole index).
    pub fn with_platform(mut self, platform: Option<PlatformQuery>) -> CopyOptions {
        self.platform = platform;
        self
    }

    /// From a registry, copies every image of an index (default `false`: only the
    /// [`with_platform`](CopyOptions::with_platform) one, else this machine's, as skopeo
    /// does).
    pub fn with_all_platforms(mut self, all: bool) -> CopyOptions {
        self.all_platforms = all;
        self
    }

    /// Recompresses every layer for the destination (new layer digests, so new manifest
    /// digests; the diffIDs are checked and stay); `None` (the default) copies layers byte
    /// for byte, except that a docker-archive's plain layers are gzipped for a registry.
    pub fn with_compression(mut self, compression: Option<Compression>) -> CopyOptions {
        self.compression = compression;
        self
    }

    /// The level for [`with_compression`](CopyOptions::with_compression) (the codec's
    /// default when `None`).
    pub fn with_compression_level(mut self, level: Option<i32>) -> CopyOptions {
        self.compression_level = level;
        self
    }

    /// Converts the manifests to this format (`None`, the default, keeps each image's own),
    /// as `skopeo copy --format` does: OCI and Docker schema 2 manifests and indexes are
    /// rewritten, configs and layers are kept byte for byte (see
    /// [`ocikit_layout::convert`]). What the format cannot describe is refused
    /// ([`Error::Convert`]; zstd layers in Docker schema 2, artifacts) before anything is
    /// written at the destination; with [`with_compression`](CopyOptions::with_compression)
    /// the layers are recompressed first, and a compression the format cannot describe is
    /// refused before anything is read ([`Error::FormatCompression`]). Annotations and
    /// artifact types that Docker schema 2 has no field for are refused too, unless
    /// [`with_drop_annotations`](CopyOptions::with_drop_annotations).
    pub fn with_format(mut self, format: Option<ManifestFormat>) -> CopyOptions {
        self.format = format;
        self
    }

    /// With [`with_format`](CopyOptions::with_format), drops the annotations and artifact
    /// types the format has no field for (as skopeo's `--format v2s2` does silently)
    /// instead of refusing the conversion. A `subject` is refused all the same.
    pub fn with_drop_annotations(mut self, drop: bool) -> CopyOptions {
        self.drop_annotations = drop;
        self
    }

    /// Between two layouts, hardlinks blob files instead of copying them (source and
    /// destination then share them: corrupting one corrupts both). Refused for any other
    /// pair of locations ([`Error::HardlinkNeedsLayouts`]).
    pub fn with_hardlink(mut self, on: bool) -> CopyOptions {
        self.hardlink = on;
        self
    }

    /// Copies the referrers of every document copied along (`oras cp -r`): the manifests and
    /// indexes whose `subject` is the image or index copied or, for an index, one of the
    /// manifests copied from it (so a platform not copied leaves its referrers behind), then
    /// their own referrers, down to [`copy_referrers::MAX_DEPTH`] levels (default `false`:
    /// they stay behind). Each is gathered from the source (a registry's referrers API, else
    /// its referrers tag schema; a layout's or an oci-archive's index) and verified with
    /// every blob it reaches before anything is written at the destination; then written:
    /// untagged into a layout or an oci-archive, by digest into a registry (one without the
    /// referrers API gets the subject's `sha256-<hex>` tag index updated), within one
    /// registry with its blobs mounted (there the image is copied by digest first, then its
    /// referrers, whose documents are verified on the way, and the tag is set last). One the
    /// destination lists already is skipped.
    ///
    /// Refused ([`Error::ReferrersNotHeld`]) with a docker-archive on either side, which
    /// cannot hold them, and ([`Error::ReferrersRewritten`]) with
    /// [`with_compression`](CopyOptions::with_compression) or
    /// [`with_format`](CopyOptions::with_format), which give the images new digests their
    /// referrers do not name.
    pub fn with_referrers(mut self, on: bool) -> CopyOptions {
        self.referrers = on;
        self
    }

    /// Copies the cosign signatures of each image along (default `true`; skopeo's
    /// `--remove-signatures` is `false`): the image whose digest at the destination is
    /// `sha256:<hex>` gets the source repository's (or layout's) `sha256-<hex>.sig`, if there
    /// is one, copied beside it (registries and layouts: an archive keeps none; from a whole
    /// layout, `oci:DIR`, they are among its images already). They go once the image is
    /// there, as they are: a payload names the docker reference that was signed, so a copy
    /// under another name keeps the old name in its payloads (as skopeo's copies do). An
    /// index's signatures stay behind when only one platform is copied from it.
    ///
    /// A signed image that [`with_compression`](CopyOptions::with_compression) or
    /// [`with_format`](CopyOptions::with_format) would rewrite (a new digest, which none of
    /// its signatures vouches for) is refused ([`Error::SignaturesInvalidated`]) before
    /// anything is written at the destination, as skopeo refuses to modify a signed image's
    /// manifest: copy it as it is, or without its signatures (`with_signatures(false)`). A
    /// registry image is refused before it is pulled (an index once the platform copied
    /// from it is known), a layout's before anything is read beyond its documents. Any
    /// compression asked for counts as a rewrite, even where the layers have it already; a
    /// format counts only where the conversion changes the image.
    pub fn with_signatures(mut self, on: bool) -> CopyOptions {
        self.remove_signatures = !on;
        self
    }

    /// Enforces a trust policy (containers' `policy.json`, see [`crate::check_policy`]) on
    /// the source image(s) before anything is written at the destination: a registry image
    /// is checked first and then read by the digest accepted; every image of a layout is
    /// checked once found. A refusal is [`Error::PolicyRejected`]; an archive source is
    /// refused ([`Error::PolicySource`]). Default: none.
    #[cfg(feature = "sign")]
    pub fn with_policy(mut self, policy: Option<ocikit_sign::Policy>) -> CopyOptions {
        self.policy = policy;
        self
    }

    /// Where to report progress.
    pub fn with_progress(mut self, progress: Progress) -> CopyOptions {
        self.progress = progress;
        self
    }

    /// Whether the images' signatures go along
    /// ([`with_signatures`](CopyOptions::with_signatures)).
    pub(crate) fn carries_signatures(&self) -> bool {
        !self.remove_signatures
    }

    /// How the source registry is reached.
    pub(crate) fn source_registry(&self) -> &RegistryOptions {
        &self.source
    }

    /// The options a signature manifest is copied with: the same access and linking, as
    /// it is (no recompression, no conversion), without signatures, referrers or policy of
    /// its own.
    pub(crate) fn for_signatures(&self) -> CopyOptions {
        CopyOptions::new()
            .with_source(self.source.clone())
            .with_destination(self.destination.clone())
            .with_all_platforms(true)
            .with_hardlink(self.hardlink)
            .with_signatures(false)
    }

    /// The platform [`with_platform`](CopyOptions::with_platform) named, if any.
    fn platform(&self) -> Option<PlatformQuery> {
        self.platform.clone()
    }

    /// What to take from a registry's index: everything with `all_platforms`, else the
    /// platform asked for or this machine's.
    fn registry_platform(&self) -> Option<PlatformQuery> {
        if self.all_platforms {
            None
        } else {
            Some(self.platform().unwrap_or_else(PlatformQuery::current))
        }
    }

    fn pull_options(&self) -> PullOptions {
        PullOptions::new()
            .with_platform(self.registry_platform())
            .with_progress(self.progress.stage(Stage::Pull))
    }
}

/// How an image is named at the destination of a copy.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ImageName {
    /// Tagged (in a layout, an oci-archive or a registry repository).
    Tag(String),
    /// Named `NAME:TAG` in a docker-archive.
    RepoTag(String),
    /// Untagged in a layout or an oci-archive.
    Untagged,
    /// Pushed to a registry by digest.
    ByDigest,
}

/// One image a copy put at its destination.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct CopiedImage {
    /// Its name there.
    pub name: ImageName,
    /// The image (or index) as the destination holds it.
    pub root: Descriptor,
}

impl fmt::Display for CopiedImage {
    /// `TAG DIGEST`, `(untagged) DIGEST`, `(by digest) DIGEST`, or a docker-archive's
    /// `NAME:TAG`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digest = self.root.digest();
        match &self.name {
            ImageName::Tag(tag) => write!(f, "{tag} {digest}"),
            ImageName::RepoTag(name) => f.write_str(name),
            ImageName::Untagged => write!(f, "(untagged) {digest}"),
            ImageName::ByDigest => write!(f, "(by digest) {digest}"),
        }
    }
}

impl serde::Serialize for CopiedImage {
    /// As its [`Display`](fmt::Display): `TAG DIGEST`, `(untagged) DIGEST`, ...
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// What a copy did. `blobs` and `bytes` measure the whole image as the destination now
/// holds it (every blob reached, each once: written, mounted or already there), so a
/// repeated copy reports the same size; the other counts say how each blob got there.
///
/// It serializes (camelCase) as `ocikit copy --json` prints it: the locations, each image
/// as its [`Display`](fmt::Display) line, and the counts; `image_count` and `tags`, which
/// `images` already says, are left out.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct CopyReport {
    /// The source, as [`Location`]'s `Display` writes it.
    pub source: String,
    /// The destination, as [`Location`]'s `Display` writes it.
    pub destination: String,
    /// The images at the destination, one per name.
    pub images: Vec<CopiedImage>,
    /// Blobs of the image(s), each once.
    pub blobs: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Blobs written (streamed, linked or uploaded).
    pub blobs_copied: usize,
    /// Blobs a registry mounted from the source repository instead of an upload.
    pub blobs_mounted: usize,
    /// Blobs the destination had already.
    pub blobs_skipped: usize,
    /// Layers recompressed on the way.
    pub layers_recompressed: usize,
    /// What became of the referrers, when the copy took them along
    /// ([`CopyOptions::with_referrers`]; `None`, and no keys in JSON, otherwise). Their
    /// blobs are not in `blobs`.
    #[serde(flatten)]
    pub referrers: Option<ReferrersReport>,
    /// Signature manifests (`sha256-<hex>.sig`) copied along
    /// ([`CopyOptions::with_signatures`]); in JSON `signaturesCopied`, only when some were.
    #[serde(rename = "signaturesCopied", skip_serializing_if = "is_zero")]
    pub signatures: usize,
    /// Distinct images (by digest) copied.
    #[serde(skip)]
    pub image_count: usize,
    /// Names (tags, repo tags) the destination gives them.
    #[serde(skip)]
    pub tags: usize,
}

impl CopyReport {
    /// Adds what writing the referrers did.
    fn add_referrers(&mut self, written: ReferrersReport) {
        let referrers = self.referrers.get_or_insert_default();
        referrers.copied += written.copied;
        referrers.skipped += written.skipped;
        referrers.blobs += written.blobs;
    }

    /// Counts the blobs and bytes of `roots` in `layout`. A blob that one image of this copy
    /// wrote and the next one found (one image under two tags) was not already present: the
    /// blobs skipped are at most those this copy neither wrote nor mounted.
    async fn measure(&mut self, layout: &Layout, roots: &[Descriptor]) -> Result<()> {
        let (blobs, bytes) = ocikit_layout::copy::reach(layout, roots).await?;
        self.blobs = blobs;
        self.bytes = bytes;
        self.blobs_skipped = self
            .blobs_skipped
            .min(blobs.saturating_sub(self.blobs_copied + self.blobs_mounted));
        Ok(())
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// An image to copy: where it is tagged in the staged layout, if anywhere, and its root.
struct Item {
    tag: Option<String>,
    root: Descriptor,
}

/// Copies the image(s) at `source` to `destination`, verifying every blob and skipping
/// what the destination has. A source that names no image (`oci:DIR`, an archive without
/// a tag) copies every image in it, tagged or not; a destination tag then takes one image.
/// A failed copy leaves a layout that did not exist absent, and tags nothing.
pub async fn copy(
    source: &Location,
    destination: &Location,
    options: &CopyOptions,
) -> Result<CopyReport> {
    let mut report = copy_between(source, destination, options).await?;
    if !options.remove_signatures {
        report.signatures =
            copy_signatures::carry(source, destination, &report.images, options).await?;
    }
    report.source = source.to_string();
    report.destination = destination.to_string();
    Ok(report)
}

/// [`copy`], but for the locations in the report and the signatures: a registry source
/// checked against the policy (if any) and then read by the digest accepted.
async fn copy_between(
    source: &Location,
    destination: &Location,
    options: &CopyOptions,
) -> Result<CopyReport> {
    #[cfg(feature = "sign")]
    if let Some(policy) = &options.policy {
        match source {
            Location::Docker { .. } => {
                check_options(source, destination, options)?;
                let accepted = crate::trust::check_policy(source, policy, &options.source).await?;
                let (source, destination) = pin(source, destination, &accepted.pinned)?;
                return copy_checked(&source, &destination, options).await;
            }
            // Checked image by image once found (before anything is written).
            Location::Oci { .. } => {}
            other => {
                return Err(Error::PolicySource {
                    location: other.to_string(),
                });
            }
        }
    }
    copy_checked(source, destination, options).await
}

/// The source read by the digest a policy accepted (`pinned`), and the destination named as
/// the source's tag would have named it.
#[cfg(feature = "sign")]
fn pin(
    source: &Location,
    destination: &Location,
    pinned: &Location,
) -> Result<(Location, Location)> {
    let Location::Docker {
        selector: Selector::Tag(tag),
        ..
    } = source
    else {
        return Ok((pinned.clone(), destination.clone()));
    };
    let tagged = Some(Selector::Tag(tag.clone()));
    let destination = match destination {
        Location::Oci {
            path,
            selector: None,
        } => Location::Oci {
            path: path.clone(),
            selector: tagged,
        },
        Location::OciArchive {
            path,
            selector: None,
        } => Location::OciArchive {
            path: path.clone(),
            selector: tagged,
        },
        Location::DockerArchive {
            path,
            reference: None,
        } => {
            let name = image_name(source);
            let reference = docker::repo_tag_for(tag, &name).map_err(|source| Error::RepoTag {
                tag: tag.clone(),
                name,
                source,
            })?;
            Location::DockerArchive {
                path: path.clone(),
                reference: Some(reference),
            }
        }
        other => other.clone(),
    };
    Ok((pinned.clone(), destination))
}

/// The checks of the options against the locations, before anything is read.
fn check_options(source: &Location, destination: &Location, options: &CopyOptions) -> Result<()> {
    if options.hardlink
        && !matches!(
            (source, destination),
            (Location::Oci { .. }, Location::Oci { .. })
        )
    {
        return Err(Error::HardlinkNeedsLayouts {
            source_location: source.to_string(),
            destination: destination.to_string(),
        });
    }
    if let (Some(format), Some(compression)) = (options.format, options.compression)
        && !format.supports(compression)
    {
        return Err(Error::FormatCompression {
            format,
            compression,
        });
    }
    if options.referrers {
        if let Some(archive) = [source, destination]
            .into_iter()
            .find(|l| matches!(l, Location::DockerArchive { .. }))
        {
            return Err(Error::ReferrersNotHeld {
                location: archive.to_string(),
            });
        }
        if options.compression.is_some() || options.format.is_some() {
            return Err(Error::ReferrersRewritten {
                what: if options.compression.is_some() {
                    "recompressed"
                } else {
                    "converted"
                },
            });
        }
    }
    Ok(())
}

/// [`copy_between`] once the policy has accepted a registry source.
async fn copy_checked(
    source: &Location,
    destination: &Location,
    options: &CopyOptions,
) -> Result<CopyReport> {
    check_options(source, destination, options)?;
    // Within one registry, blobs never pass through here: mounted from the source
    // repository (streamed only where the registry refuses a mount).
    if let (
        Location::Docker {
            registry,
            repository: from,
            selector,
            ..
        },
        Location::Docker {
            registry: to_registry,
            repository: to,
            selector: target,
            ..
        },
    ) = (source, destination)
        && registry == to_registry
        && options.compression.is_none()
        && options.format.is_none()
        && options.source == options.destination
    {
        return copy_within_registry(
            source,
            destination,
            registry,
            (from, selector),
            (to, target),
            options,
        )
        .await;
    }
    if let (
        Location::Docker {
            registry,
            repository,
            selector,
            ..
        },
        Location::Oci {
            path,
            selector: wanted,
        },
    ) = (source, destination)
        && options.compression.is_none()
        && options.format.is_none()
        && !options.referrers
    {
        // (With referrers, through a scratch layout: the image is tagged only once they
        // are gathered and verified too.)
        return pull_into_layout(
            source,
            (registry, repository, selector),
            path,
            wanted.as_ref(),
            options,
        )
        .await;
    }
    // Scratch space beside the destination file or layout (renames and hardlinks stay on
    // one filesystem), else beside the source's, else in the temporary directory: never in
    // the working directory.
    let near = destination.path().or_else(|| source.path()).map_or_else(
        || std::env::temp_dir().join("ocikit-copy"),
        Path::to_path_buf,
    );
    if let (Location::Oci { path: a, .. }, Location::Oci { path: b, .. }) = (source, destination)
        && a == b
        && matches!(destination, Location::Oci { selector: None, .. })
    {
        return Err(Error::SameLayout { path: a.clone() });
    }
    // A signed registry image is refused before it is pulled, a layout's once found (read
    // in place), when the copy would give it a new digest.
    let recompressed = options
        .compression
        .map(|c| format!("recompressed to {}", ocikit_codec::compression::name(c)));
    if let Some(how) = &recompressed {
        copy_signatures::refuse_rewrite_early(source, how, options).await?;
    }
    let scratch = ScratchSpace::near(&near).await?;
    let scratch_dir = scratch.path();
    let (mut staged, mut items) = stage(source, scratch_dir.as_path(), options).await?;
    // A layout's images are checked against the policy as they are found (a registry's
    // were before they were read).
    #[cfg(feature = "sign")]
    if let (Some(policy), Location::Oci { path, .. }) = (&options.policy, source) {
        // A whole layout holds the signature manifests of its images too: they are
        // checked as their images' signatures, not as images of their own.
        let signatures: HashSet<String> = items
            .iter()
            .map(|i| copy_signatures::signature_tag(i.root.digest().as_ref()))
            .collect();
        for item in &items {
            if item.tag.as_ref().is_some_and(|t| signatures.contains(t)) {
                continue;
            }
            crate::trust::check_layout_image(
                &staged,
                path,
                item.tag.as_deref(),
                &item.root,
                policy,
            )
            .await?;
        }
    }
    // Blobs go file to file as independent copies, unless hardlinks are asked for;
    // hardlinks from a scratch layout (removed when done) share nothing with the user's.
    let link_mode = |from_scratch: bool| {
        if options.hardlink || from_scratch {
            LinkMode::Hardlink
        } else {
            LinkMode::Copy
        }
    };
    let mut from_scratch = !matches!(source, Location::Oci { .. });
    let layout_options = LayoutCopyOptions::new()
        .with_link_mode(link_mode(from_scratch))
        .with_progress(options.progress.stage(Stage::Copy))
        .with_platform(options.platform());
    // From an index, only the wanted platform's image (a registry pull chose it already).
    for item in &mut items {
        item.root = layout_options
            .select(&staged, &item.root)
            .await
            .map_err(|err| Error::Platform {
                location: source.to_string(),
                source: err,
            })?;
    }
    // The referrers to copy along, gathered (verified) before anything is written.
    let referrers = if options.referrers {
        Some(gather_referrers(source, &staged, &items, scratch_dir.as_path(), options).await?)
    } else {
        None
    };
    if let Some(how) = &recompressed {
        let roots: Vec<&Descriptor> = items.iter().map(|i| &i.root).collect();
        let tags: Vec<&str> = items.iter().filter_map(|i| i.tag.as_deref()).collect();
        copy_signatures::refuse_rewrite(source, &roots, &tags, how, options).await?;
    }
    let mut copied = CopyReport::default();
    // A docker-archive's layers are plain tar: a registry gets them gzipped, as skopeo
    // pushes them, unless a compression is asked for.
    let compression = options.compression.or_else(|| {
        matches!(
            (source, destination),
            (Location::DockerArchive { .. }, Location::Docker { .. })
        )
        .then_some(Compression::Gzip)
    });
    if let Some(format) = compression {
        if matches!(source, Location::Oci { .. }) {
            // The source layout is only read: recompress in a scratch copy (independent
            // copies of the source's blobs unless hardlinks are asked for).
            let layout = scratch_layout(&scratch_dir.as_path().join("recompress")).await?;
            for item in &items {
                let tag = item.tag.clone().unwrap_or_else(|| "staged".into());
                copy_image(&staged, &item.root, &layout, &tag, &layout_options).await?;
            }
            staged = layout;
            from_scratch = true;
        }
        let recompress_options = RecompressOptions::new(format)
            .with_level(options.compression_level)
            .with_progress(options.progress.stage(Stage::Recompress));
        for item in &mut items {
            let report = recompress(&staged, &item.root, &recompress_options)
                .await
                .map_err(|source| Error::Recompress {
                    digest: item.root.digest().to_string(),
                    source,
                })?;
            copied.layers_recompressed += report.layers_recompressed;
            item.root = report.root;
            if let Some(tag) = &item.tag {
                staged.set_tag(tag, &item.root).await?;
            }
        }
    }
    if let Some(format) = options.format {
        // Planned on the staged images (read only): a refusal writes nothing.
        let mut plans = Vec::with_capacity(items.len());
        for item in &items {
            let convert_options =
                ConvertOptions::new().with_drop_annotations(options.drop_annotations);
            let plan = convert::plan_with(&staged, &item.root, format, &convert_options)
                .await
                .map_err(|source| Error::Convert {
                    digest: item.root.digest().to_string(),
                    format,
                    source,
                })?;
            plans.push(plan);
        }
        let converted: Vec<&Descriptor> = items
            .iter()
            .zip(&plans)
            .filter(|(_, plan)| plan.changes())
            .map(|(item, _)| &item.root)
            .collect();
        let tags: Vec<&str> = items.iter().filter_map(|i| i.tag.as_deref()).collect();
        let how = format!("converted to {format}");
        copy_signatures::refuse_rewrite(source, &converted, &tags, &how, options).await?;
        if plans.iter().any(convert::Conversion::changes) {
            if !from_scratch {
                // The source layout is only read: convert in a scratch copy.
                let layout = scratch_layout(&scratch_dir.as_path().join("convert")).await?;
                for item in &items {
                    let tag = item.tag.clone().unwrap_or_else(|| "staged".into());
                    copy_image(&staged, &item.root, &layout, &tag, &layout_options).await?;
                }
                staged = layout;
                from_scratch = true;
            }
            for (item, plan) in items.iter_mut().zip(plans) {
                let report = plan.write(&staged).await.map_err(|source| Error::Convert {
                    digest: item.root.digest().to_string(),
                    format,
                    source,
                })?;
                item.root = report.root;
                if let Some(tag) = &item.tag {
                    staged.set_tag(tag, &item.root).await?;
                }
            }
        }
    }
    let layout_options = layout_options.with_link_mode(link_mode(from_scratch));
    match destination {
        Location::Oci { path, selector } => {
            let wanted = match selector {
                None => None,
                Some(Selector::Tag(tag)) => Some(tag.as_str()),
                Some(Selector::Digest(_)) => {
                    return Err(Error::DestinationTakesATag {
                        syntax: "oci:PATH:TAG",
                    });
                }
            };
            // Untagged images of an archive or a whole layout stay untagged (as skopeo
            // imports them) unless the destination names one.
            let archive = matches!(
                source,
                Location::OciArchive { .. }
                    | Location::DockerArchive { .. }
                    | Location::Oci { selector: None, .. }
            );
            let tags: Vec<Option<String>> = match wanted {
                None if archive => items.iter().map(|i| i.tag.clone()).collect(),
                _ => destination_tags(&items, wanted)?
                    .into_iter()
                    .map(Some)
                    .collect(),
            };
            // A layout that does not exist yet is made in a staging directory and appears
            // only once everything is copied: a failed copy leaves nothing.
            let target =
                Layout::create_or_stage(path)
                    .await
                    .map_err(|source| Error::CreateLayout {
                        path: path.clone(),
                        source,
                    })?;
            let layout = target.layout().clone();
            let written = async {
                for (item, tag) in items.iter().zip(&tags) {
                    let copy = async {
                        match tag {
                            Some(tag) => {
                                copy_image(&staged, &item.root, &layout, tag, &layout_options).await
                            }
                            None => {
                                let report = ocikit_layout::copy_graph(
                                    &staged,
                                    std::slice::from_ref(&item.root),
                                    &layout,
                                    &layout_options,
                                )
                                .await?;
                                layout
                                    .edit_index(|index| index.add(&item.root).map(|()| true))
                                    .await?;
                                Ok(report)
                            }
                        }
                    };
                    let report = copy.await.map_err(|source| Error::Copy {
                        digest: item.root.digest().to_string(),
                        destination: destination.to_string(),
                        source,
                    })?;
                    copied.blobs_copied += report.copied + report.hardlinked + report.reflinked;
                    copied.blobs_skipped += report.skipped;
                    copied.tags += usize::from(tag.is_some());
                    copied.images.push(CopiedImage {
                        name: tag.clone().map_or(ImageName::Untagged, ImageName::Tag),
                        root: item.root.clone(),
                    });
                }
                if let Some(gathered) = &referrers {
                    // From a scratch layout: linked (and hashed), never shared with the
                    // user's files.
                    let link = layout_options.clone().with_link_mode(LinkMode::Hardlink);
                    let written = copy_referrers::into_layout(
                        &gathered.layout,
                        &gathered.found,
                        &layout,
                        &link,
                        destination,
                    )
                    .await?;
                    copied.add_referrers(written);
                }
                Ok::<(), Error>(())
            }
            .await;
            drop(layout);
            commit_or_discard(target, written, path).await?;
        }
        Location::OciArchive { path, selector } => {
            let tag = match selector {
                None => None,
                Some(Selector::Tag(tag)) => Some(tag.as_str()),
                Some(Selector::Digest(_)) => {
                    return Err(Error::DestinationTakesATag {
                        syntax: "oci-archive:FILE:TAG",
                    });
                }
            };
            // A whole layout or archive goes in as it is: untagged images stay untagged,
            // as skopeo writes them into an oci-archive; a tag given names the one image.
            let whole = tag.is_none()
                && matches!(
                    source,
                    Location::OciArchive { .. }
                        | Location::DockerArchive { .. }
                        | Location::Oci { selector: None, .. }
                );
            let tags: Vec<Option<String>> = if whole {
                items.iter().map(|i| i.tag.clone()).collect()
            } else {
                destination_tags(&items, tag)?
                    .into_iter()
                    .map(Some)
                    .collect()
            };
            let mut images: Vec<(Option<&str>, &Descriptor)> = items
                .iter()
                .zip(&tags)
                .map(|(item, tag)| (tag.as_deref(), &item.root))
                .collect();
            // Referrers go in untagged, as a layout holds them (the staged layout has them:
            // the source layout itself, or the scratch they were gathered into).
            let mut referrer_blobs = 0;
            if let Some(gathered) = &referrers {
                let descriptors: Vec<Descriptor> = gathered
                    .found
                    .iter()
                    .map(|f| f.descriptor.clone())
                    .collect();
                if !descriptors.is_empty() {
                    referrer_blobs = ocikit_layout::copy::reach(&staged, &descriptors).await?.0;
                }
                images.extend(gathered.found.iter().map(|f| (None, &f.descriptor)));
            }
            let report = oci::export_images_path(
                &staged,
                &images,
                path,
                &oci::ExportOptions::new().with_progress(options.progress.stage(Stage::Write)),
            )
            .await
            .map_err(|source| Error::Write {
                location: destination.to_string(),
                source,
            })?;
            copied.blobs_copied = report.blobs.saturating_sub(referrer_blobs);
            if let Some(gathered) = &referrers {
                copied.add_referrers(ReferrersReport {
                    copied: gathered.found.len(),
                    skipped: 0,
                    blobs: referrer_blobs,
                });
            }
            copied.tags = tags.iter().flatten().count();
            copied.images = items
                .iter()
                .zip(&tags)
                .map(|(item, tag)| CopiedImage {
                    name: tag.clone().map_or(ImageName::Untagged, ImageName::Tag),
                    root: item.root.clone(),
                })
                .collect();
        }
        Location::Docker {
            registry,
            repository,
            selector,
            ..
        } => {
            let client = options.destination.client(registry)?;
            let tag = match selector {
                Selector::Tag(tag) if items.len() == 1 => Some(tag.as_str()),
                Selector::Tag(_) => {
                    return Err(Error::SeveralImages {
                        count: items.len(),
                        advice: "name one in the source",
                    });
                }
                Selector::Digest(digest) => {
                    if items.len() != 1 || items[0].root.digest().to_string() != digest.to_string()
                    {
                        return Err(Error::NotTheSource {
                            digest: digest.clone(),
                        });
                    }
                    None
                }
            };
            // Within one registry, blobs are mounted from the source repository.
            let mount_from = match source {
                Location::Docker {
                    registry: from_registry,
                    repository: from,
                    ..
                } if from_registry == registry && from != repository => Some(from.clone()),
                _ => None,
            };
            let push_options = PushOptions::new()
                .with_mount_from(mount_from)
                .with_progress(options.progress.stage(Stage::Push));
            for item in &items {
                let report = client
                    .push(&staged, &item.root, repository, tag, &push_options)
                    .await
                    .map_err(|source| Error::Push {
                        digest: item.root.digest().to_string(),
                        location: destination.to_string(),
                        source,
                    })?;
                copied.blobs_copied += report.transferred;
                copied.blobs_mounted += report.mounted;
                copied.blobs_skipped += report.skipped;
                copied.tags += usize::from(tag.is_some());
                copied.images.push(CopiedImage {
                    name: tag.map_or(ImageName::ByDigest, |t| ImageName::Tag(t.to_string())),
                    root: item.root.clone(),
                });
            }
            if let Some(gathered) = &referrers {
                let written = copy_referrers::to_registry(
                    &client,
                    &gathered.layout,
                    &gathered.found,
                    repository,
                    &push_options,
                    destination,
                )
                .await?;
                copied.add_referrers(written);
            }
        }
        Location::DockerArchive { path, reference } => {
            let repo_tags = match reference {
                // `hello` is `hello:latest`, as docker names it.
                Some(r) if items.len() == 1 => {
                    let tagged = r.rsplit('/').next().is_some_and(|last| last.contains(':'));
                    vec![if tagged {
                        r.clone()
                    } else {
                        format!("{r}:latest")
                    }]
                }
                Some(_) => {
                    return Err(Error::SeveralImages {
                        count: items.len(),
                        advice: "name one",
                    });
                }
                // A whole layout: `v1` becomes NAME:v1, NAME from the source's name (see
                // docker::repo_tag_for); tags that are references stay.
                None => {
                    let name = image_name(source);
                    items
                        .iter()
                        .map(|i| {
                            let tag = i.tag.as_deref().ok_or(Error::UnnamedForArchive)?;
                            docker::repo_tag_for(tag, &name).map_err(|source| Error::RepoTag {
                                tag: tag.to_string(),
                                name: name.clone(),
                                source,
                            })
                        })
                        .collect::<Result<Vec<_>>>()?
                }
            };
            // docker-archive export names images by their tag in the layout.
            let dir = scratch_dir.as_path().join("export");
            let layout = scratch_layout(&dir).await?;
            let mut pairs = Vec::new();
            for (n, item) in items.iter().enumerate() {
                let tag = format!("export-{n}");
                copy_image(&staged, &item.root, &layout, &tag, &layout_options).await?;
                pairs.push(tag);
            }
            let images: Vec<(&str, &str)> = pairs
                .iter()
                .map(String::as_str)
                .zip(repo_tags.iter().map(String::as_str))
                .collect();
            let report = docker::export_path(
                &layout,
                &images,
                path,
                &docker::Options::new().with_progress(options.progress.stage(Stage::Write)),
            )
            .await
            .map_err(|source| Error::Write {
                location: destination.to_string(),
                source,
            })?;
            copied.blobs_copied = report.layers;
            copied.tags = repo_tags.len();
            copied.images = items
                .iter()
                .zip(repo_tags)
                .map(|(item, name)| CopiedImage {
                    name: ImageName::RepoTag(name),
                    root: item.root.clone(),
                })
                .collect();
        }
    }
    let roots: Vec<Descriptor> = items.iter().map(|i| i.root.clone()).collect();
    copied.image_count = roots
        .iter()
        .map(|r| r.digest().to_string())
        .collect::<BTreeSet<_>>()
        .len();
    copied.measure(&staged, &roots).await?;
    Ok(copied)
}

/// The referrers of a copy's images, gathered before anything is written at the
/// destination: the layout holding them (with every blob they reach, verified) and each one.
struct GatheredReferrers {
    layout: Layout,
    found: Vec<copy_referrers::Found>,
}

/// Gathers the referrers of the documents under the items' roots in `staged`: from a
/// registry source, pulled into `staged` (a scratch layout); from a layout, copied into a
/// scratch layout of their own (the source is only read); from an oci-archive, found in
/// `staged`, which it was imported into whole.
async fn gather_referrers(
    source: &Location,
    staged: &Layout,
    items: &[Item],
    scratch: &Path,
    options: &CopyOptions,
) -> Result<GatheredReferrers> {
    let roots: Vec<Descriptor> = items.iter().map(|i| i.root.clone()).collect();
    let subjects = copy_referrers::layout_documents(staged, &roots).await?;
    let seen: HashSet<String> = roots.iter().map(|r| r.digest().to_string()).collect();
    let progress = &options.progress;
    match source {
        Location::Docker {
            registry,
            repository,
            ..
        } => {
            let client = options.source.client(registry)?;
            let origin = copy_referrers::Origin::Registry {
                client: &client,
                repository,
                location: source,
            };
            let found =
                copy_referrers::gather(&origin, Some(staged), subjects, seen, progress).await?;
            Ok(GatheredReferrers {
                layout: staged.clone(),
                found,
            })
        }
        Location::Oci { .. } => {
            let layout = scratch_layout(&scratch.join("referrers")).await?;
            let origin = copy_referrers::Origin::Layout {
                layout: staged,
                location: source,
            };
            let found =
                copy_referrers::gather(&origin, Some(&layout), subjects, seen, progress).await?;
            Ok(GatheredReferrers { layout, found })
        }
        _ => {
            let origin = copy_referrers::Origin::Layout {
                layout: staged,
                location: source,
            };
            let found = copy_referrers::gather(&origin, None, subjects, seen, progress).await?;
            Ok(GatheredReferrers {
                layout: staged.clone(),
                found,
            })
        }
    }
}

/// Scratch space for intermediate layouts: beside `near` (so hardlinks work, and a killed
/// run's scratch is removed by the next run for the same destination), or in the system's
/// temporary directory where nothing can be made there. Removed on drop.
pub(crate) enum ScratchSpace {
    Beside(ocikit_layout::Scratch),
    Temporary(tempfile::TempDir),
}

impl ScratchSpace {
    pub(crate) async fn near(near: &Path) -> Result<ScratchSpace> {
        match ocikit_layout::Scratch::near(near).await {
            Ok(scratch) => Ok(ScratchSpace::Beside(scratch)),
            Err(_) => tempfile::tempdir()
                .map(ScratchSpace::Temporary)
                .map_err(|source| Error::Scratch { source }),
        }
    }

    pub(crate) fn path(&self) -> PathBuf {
        match self {
            ScratchSpace::Beside(scratch) => scratch.path(),
            ScratchSpace::Temporary(dir) => dir.path().to_path_buf(),
        }
    }
}

pub(crate) async fn scratch_layout(dir: &Path) -> Result<Layout> {
    Ok(Layout::create(FsStore::open(dir.join("layout")).await?).await?)
}

/// The source as a layout and the images to copy from it.
async fn stage(
    source: &Location,
    scratch: &Path,
    options: &CopyOptions,
) -> Result<(Layout, Vec<Item>)> {
    let (layout, items, path) = match source {
        Location::Docker {
            registry,
            repository,
            selector,
            ..
        } => {
            let layout = scratch_layout(scratch).await?;
            let client = options.source.client(registry)?;
            let report = client
                .pull(
                    repository,
                    &selector.reference(),
                    &layout,
                    "pulled",
                    &options.pull_options(),
                )
                .await
                .map_err(|err| Error::Pull {
                    location: source.to_string(),
                    source: err,
                })?;
            let root = report.root.ok_or_else(|| Error::NoImageReported {
                location: source.to_string(),
            })?;
            let tag = match selector {
                Selector::Tag(tag) => Some(tag.clone()),
                Selector::Digest(_) => None,
            };
            return Ok((layout, vec![Item { tag, root }]));
        }
        Location::Oci { path, selector } => {
            let layout = open_layout(path).await?;
            let items = match selector {
                Some(Selector::Tag(tag)) => vec![Item {
                    tag: Some(tag.clone()),
                    root: layout.resolve(tag).await?,
                }],
                Some(digest @ Selector::Digest(_)) => vec![Item {
                    tag: None,
                    root: resolve(&layout, path, Some(digest)).await?,
                }],
                // Every image, tagged or not (`skopeo copy … oci:DIR` leaves it untagged).
                None => layout
                    .entries()
                    .await?
                    .into_iter()
                    .map(|(tag, root)| Item { tag, root })
                    .collect(),
            };
            (layout, items, path)
        }
        Location::OciArchive { path, selector } => {
            let layout = scratch_layout(scratch).await?;
            let mut import =
                oci::ImportOptions::new().with_progress(options.progress.stage(Stage::Read));
            // With referrers, the whole archive: they are untagged entries of its own.
            let whole = options.referrers;
            match selector {
                _ if whole => {}
                Some(Selector::Tag(tag)) => import = import.with_tags([tag.clone()]),
                Some(Selector::Digest(digest)) => import = import.with_digest(digest.clone()),
                None => {}
            }
            let report = oci::import_path(&layout, path, &import)
                .await
                .map_err(|err| Error::Read {
                    location: source.to_string(),
                    source: err,
                })?;
            // Every image, tagged or not (skopeo writes untagged archives by default).
            let items: Vec<Item> = report
                .entries
                .iter()
                .map(|entry| {
                    let tag = entry
                        .annotations()
                        .as_ref()
                        .and_then(|a| a.get(ocikit_layout::REF_NAME))
                        .cloned();
                    let mut root = entry.clone();
                    if let Some(mut annotations) = root.annotations().clone() {
                        annotations.remove(ocikit_layout::REF_NAME);
                        root.set_annotations((!annotations.is_empty()).then_some(annotations));
                    }
                    Item { tag, root }
                })
                .collect();
            let items = match selector {
                Some(selector) if whole => select_imported(items, selector, path)?,
                _ => items,
            };
            (layout, items, path)
        }
        Location::DockerArchive { path, reference } => {
            let layout = scratch_layout(scratch).await?;
            let import = docker::Options::new().with_progress(options.progress.stage(Stage::Read));
            let report = docker::import_path(&layout, path, &import)
                .await
                .map_err(|err| Error::Read {
                    location: source.to_string(),
                    source: err,
                })?;
            let item = |image: &docker::ImportedImage, tag: Option<&str>| Item {
                tag: tag.map(str::to_owned),
                root: image.manifest.clone(),
            };
            let items: Vec<Item> = match reference {
                // Names are matched as docker matches them (`hello` is
                // docker.io/library/hello:latest); the image keeps the name that matched.
                Some(r) => match report.find_tag(r)? {
                    Some((image, tag)) => vec![item(image, Some(tag))],
                    None => {
                        return Err(Error::NoImageNamed {
                            path: path.clone(),
                            name: r.clone(),
                        });
                    }
                },
                // Every name of every image, as `docker load` sets them.
                None => report
                    .images
                    .iter()
                    .flat_map(|image| match image.tags.as_slice() {
                        [] => vec![item(image, None)],
                        tags => tags.iter().map(|t| item(image, Some(t))).collect(),
                    })
                    .collect(),
            };
            (layout, items, path)
        }
    };
    if items.is_empty() {
        return Err(Error::NoImage { path: path.clone() });
    }
    Ok((layout, items))
}

/// The items of a whole imported archive that `selector` names (what an import of only
/// them would have given): those tagged so, or those with the digest.
fn select_imported(items: Vec<Item>, selector: &Selector, path: &Path) -> Result<Vec<Item>> {
    let picked: Vec<Item> = items
        .into_iter()
        .filter(|item| match selector {
            Selector::Tag(tag) => item.tag.as_ref() == Some(tag),
            Selector::Digest(digest) => item.root.digest().to_string() == digest.to_string(),
        })
        .collect();
    if picked.is_empty() {
        return Err(match selector {
            Selector::Tag(tag) => Error::TagNotFound {
                tag: tag.clone(),
                path: path.to_path_buf(),
                source: ocikit_layout::Error::TagNotFound { tag: tag.clone() },
            },
            Selector::Digest(digest) => Error::ManifestNotFound {
                digest: digest.clone(),
            },
        });
    }
    Ok(picked)
}

/// The tags the destination gives the items: its own tag for a single image (then one tag,
/// for the first item: the others are the same image under other names), else each image's
/// tag.
fn destination_tags(items: &[Item], wanted: Option<&str>) -> Result<Vec<String>> {
    let one_image = items
        .iter()
        .all(|i| items.first().map(|first| first.root.digest()) == Some(i.root.digest()));
    match wanted {
        Some(tag) if one_image => Ok(vec![tag.to_string()]),
        Some(_) => Err(Error::SeveralImages {
            count: items.len(),
            advice: "name one in the source, or leave the destination's tag out",
        }),
        None => items
            .iter()
            .map(|i| {
                i.tag.clone().ok_or_else(|| Error::Untagged {
                    digest: i.root.digest().to_string(),
                })
            })
            .collect(),
    }
}

/// What the images of a source are called in a docker-archive written without names: the
/// layout directory's or archive file's name (lowercase), or the registry repository.
fn image_name(source: &Location) -> String {
    let stem = |path: &Path| {
        let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        path.file_stem()
            .map(|s| s.to_string_lossy().to_lowercase())
            .unwrap_or_default()
    };
    match source {
        Location::Oci { path, .. } => {
            let path = path.canonicalize().unwrap_or_else(|_| path.clone());
            path.file_name()
                .map(|s| s.to_string_lossy().to_lowercase())
                .unwrap_or_default()
        }
        Location::OciArchive { path, .. } | Location::DockerArchive { path, .. } => stem(path),
        Location::Docker { repository, .. } => repository.clone(),
    }
}

/// Copies a registry image to another repository of the same registry: only its manifests
/// pass through the client (`Client::copy_within`).
async fn copy_within_registry(
    source: &Location,
    destination: &Location,
    registry: &str,
    (from, selector): (&str, &Selector),
    (to, target): (&str, &Selector),
    options: &CopyOptions,
) -> Result<CopyReport> {
    let client = options.destination.client(registry)?;
    let within = CopyWithinOptions::new()
        .with_platform(options.registry_platform())
        .with_progress(options.progress.stage(Stage::Copy));
    let copy_error = |err| Error::CopyWithin {
        source_location: source.to_string(),
        destination: destination.to_string(),
        source: err,
    };
    // With referrers, the image goes by digest first and is tagged only once they are
    // there too: a referrer that fails tags nothing.
    let tag_last = match target {
        Selector::Tag(tag) if options.referrers => Some(tag.as_str()),
        _ => None,
    };
    let first = match tag_last {
        Some(_) => None,
        None => Some(target.reference()),
    };
    let report = client
        .copy_within(from, &selector.reference(), to, first.as_deref(), &within)
        .await
        .map_err(copy_error)?;
    let root = report.root.ok_or_else(|| Error::NoImageReported {
        location: source.to_string(),
    })?;
    let name = match target {
        Selector::Tag(tag) => ImageName::Tag(tag.clone()),
        Selector::Digest(_) => ImageName::ByDigest,
    };
    let mut referrers = None;
    if options.referrers {
        // Their documents are read (verified) from the source repository, their blobs
        // mounted as the image's were.
        let origin = copy_referrers::Origin::Registry {
            client: &client,
            repository: from,
            location: source,
        };
        let subjects = copy_referrers::registry_documents(&client, from, &root, source).await?;
        let seen = HashSet::from([root.digest().to_string()]);
        let found =
            copy_referrers::gather(&origin, None, subjects, seen, &options.progress).await?;
        referrers = Some(
            copy_referrers::within_registry(
                &client,
                from,
                &found,
                to,
                &CopyWithinOptions::new().with_progress(options.progress.stage(Stage::Copy)),
                (source, destination),
            )
            .await?,
        );
    }
    if let Some(tag) = tag_last {
        // Everything is there: only the documents are pushed again, under the tag.
        client
            .copy_within(from, root.digest().as_ref(), to, Some(tag), &within)
            .await
            .map_err(copy_error)?;
    }
    Ok(CopyReport {
        images: vec![CopiedImage { name, root }],
        blobs: report.blobs,
        bytes: report.total_bytes,
        blobs_copied: report.transferred,
        blobs_mounted: report.mounted,
        blobs_skipped: report.skipped,
        image_count: 1,
        tags: usize::from(matches!(target, Selector::Tag(_))),
        referrers,
        ..CopyReport::default()
    })
}

/// Pulls a registry image straight into a layout (no scratch copy).
async fn pull_into_layout(
    source: &Location,
    (registry, repository, selector): (&str, &str, &Selector),
    path: &Path,
    wanted: Option<&Selector>,
    options: &CopyOptions,
) -> Result<CopyReport> {
    let tag = match (wanted, selector) {
        (Some(Selector::Tag(tag)), _) | (None, Selector::Tag(tag)) => tag.clone(),
        (Some(Selector::Digest(_)), _) => {
            return Err(Error::DestinationTakesATag {
                syntax: "oci:PATH:TAG",
            });
        }
        (None, Selector::Digest(_)) => return Err(Error::NoDestinationTag),
    };
    let client = options.source.client(registry)?;
    let target = Layout::create_or_stage(path)
        .await
        .map_err(|source| Error::CreateLayout {
            path: path.to_path_buf(),
            source,
        })?;
    let pulled = client
        .pull(
            repository,
            &selector.reference(),
            target.layout(),
            &tag,
            &options.pull_options(),
        )
        .await
        .map_err(|err| Error::Pull {
            location: source.to_string(),
            source: err,
        });
    let (layout, report) = match pulled {
        Ok(report) => (commit(target, path).await?, report),
        Err(e) => {
            target.discard().await;
            return Err(e);
        }
    };
    let root = report.root.ok_or_else(|| Error::NoImageReported {
        location: source.to_string(),
    })?;
    let mut copied = CopyReport {
        images: vec![CopiedImage {
            name: ImageName::Tag(tag),
            root: root.clone(),
        }],
        blobs_copied: report.transferred,
        blobs_skipped: report.skipped,
        image_count: 1,
        tags: 1,
        ..CopyReport::default()
    };
    copied.measure(&layout, std::slice::from_ref(&root)).await?;
    Ok(copied)
}

/// Puts a layout written by a copy in place (a new one appears only now), or removes a new
/// one when the copy failed: a failed copy leaves the destination as it was.
async fn commit_or_discard(
    target: StagedLayout,
    written: Result<()>,
    path: &Path,
) -> Result<Layout> {
    match written {
        Ok(()) => commit(target, path).await,
        Err(e) => {
            target.discard().await;
            Err(e)
        }
    }
}

async fn commit(target: StagedLayout, path: &Path) -> Result<Layout> {
    target.commit().await.map_err(|source| Error::Commit {
        path: path.to_path_buf(),
        source,
    })
}

/// Copies the image a scratch layout holds under a tag (`from`) to `destination`, as the
/// surgery and index commands finish: hardlinked into a layout destination unless the
/// scratch layout shares files with the user's (then copied), pushed or mounted elsewhere.
/// Returns the copy's report and the image written, its root without the scratch tag's
/// annotations (the tag is no part of the image at the destination).
pub(crate) async fn copy_from_scratch(
    from: &Location,
    destination: &Location,
    registry: &RegistryOptions,
    shares_files: bool,
    progress: &Progress,
) -> Result<(CopyReport, ImageName, Descriptor)> {
    let hardlink = !shares_files && matches!(destination, Location::Oci { .. });
    let report = copy(
        from,
        destination,
        &CopyOptions::new()
            .with_destination(registry.clone())
            .with_hardlink(hardlink)
            .with_signatures(false)
            .with_progress(progress.clone()),
    )
    .await?;
    let Some(image) = report.images.first() else {
        return Err(Error::NoImageReported {
            location: from.to_string(),
        });
    };
    let (name, mut root) = (image.name.clone(), image.root.clone());
    root.set_annotations(None);
    Ok((report, name, root))
}
