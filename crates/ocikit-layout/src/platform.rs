//! Platform resolution: from a descriptor (usually a tag's target) to the image manifest
//! for a wanted platform (SPEC A.6).
//!
//! - A plain image manifest resolves to itself when its config's platform matches (always,
//!   for [`PlatformQuery::any`]).
//! - An index is searched in order, depth first; the **first** matching entry wins. An
//!   entry's `platform` decides; an image manifest entry without one is matched by its
//!   config's `os`, `architecture`, `variant` and `os.version`. A nested index is searched
//!   in turn (skipped when it carries a platform that does not match), down to
//!   [`PlatformQuery::max_depth`] levels of indexes; deeper nesting is
//!   [`Error::IndexTooDeep`]. Entries of other media types (artifacts, unknown types) are
//!   skipped, never an error.
//! - Matching is [`ocikit_digest::platform::matches`]: names are normalised (`aarch64` is
//!   `arm64`, `x86_64` is `amd64`), a variant is compared only when the query names one,
//!   and an image without a variant has its architecture's default (`arm64` is `arm64/v8`).
//! - No match is [`Error::PlatformNotFound`], listing every platform seen.
//!
//! Configs are read strictly ([`ImageConfig::parse`]): `rootfs.type` must be `layers`.

use futures::FutureExt;
use futures::future::BoxFuture;
use ocikit_digest::oci_spec::image::{Descriptor, ImageManifest, Platform};
use ocikit_digest::{Digest, descriptor, media_type, platform};

use crate::document::Document;
use crate::image::{ImageConfig, is_image_config};
use crate::{Error, Layout, Result};

/// Default limit on nested indexes (an index in an index in an index...): the one limit of
/// [`ocikit_digest::graph`].
pub const MAX_INDEX_DEPTH: usize = ocikit_digest::graph::MAX_DEPTH;

/// Which platform to resolve an image for.
#[derive(Clone, Debug, PartialEq)]
pub struct PlatformQuery {
    wanted: Option<Platform>,
    max_depth: usize,
}

impl Default for PlatformQuery {
    /// The host's platform.
    fn default() -> PlatformQuery {
        PlatformQuery::current()
    }
}

impl PlatformQuery {
    /// This platform (normalised; see [`ocikit_digest::platform::parse`] to get one from
    /// `os/arch[/variant]`).
    pub fn new(platform: &Platform) -> PlatformQuery {
        PlatformQuery {
            wanted: Some(platform::normalize(platform)),
            max_depth: MAX_INDEX_DEPTH,
        }
    }

    /// The platform ocikit runs on ([`ocikit_digest::platform::current`]).
    pub fn current() -> PlatformQuery {
        PlatformQuery::new(&platform::current())
    }

    /// Any platform: the first image found.
    pub fn any() -> PlatformQuery {
        PlatformQuery {
            wanted: None,
            max_depth: MAX_INDEX_DEPTH,
        }
    }

    /// This query with another limit on nested indexes (the top index counts as one).
    pub fn with_max_depth(mut self, depth: usize) -> PlatformQuery {
        self.max_depth = depth;
        self
    }

    /// The platform wanted (`None`: any).
    pub fn platform(&self) -> Option<&Platform> {
        self.wanted.as_ref()
    }

    /// The limit on nested indexes.
    pub fn max_depth(&self) -> usize {
        self.max_depth
    }

    /// Whether an image of platform `have` is wanted.
    pub fn matches(&self, have: &Platform) -> bool {
        match &self.wanted {
            None => true,
            Some(want) => platform::matches(want, have),
        }
    }

    fn describe(&self) -> String {
        match &self.wanted {
            None => "any".into(),
            Some(p) => platform::format(p),
        }
    }
}

/// An image manifest found for a platform, with its config.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ResolvedImage {
    /// The manifest's descriptor: the index entry that matched (with its platform), or the
    /// descriptor resolved, given the config's platform when it had none.
    pub descriptor: Descriptor,
    /// The manifest.
    pub manifest: ImageManifest,
    /// The image config, parsed strictly.
    pub config: ImageConfig,
}

impl ResolvedImage {
    /// The config blob's digest.
    pub fn config_digest(&self) -> Result<Digest> {
        digest_of(self.manifest.config())
    }

    /// The image's platform, as its config says.
    pub fn platform(&self) -> Platform {
        self.config.platform()
    }
}

fn digest_of(d: &Descriptor) -> Result<Digest> {
    descriptor::digest_of(d).map_err(|e| Error::InvalidDocument {
        digest: Digest::sha256(b""),
        reason: "invalid descriptor".into(),
        source: Some(Box::new(e.into())),
    })
}

/// Finds the image manifest for `query` starting at `descriptor` (a manifest or an index);
/// see the [module documentation](self).
pub async fn resolve(
    layout: &Layout,
    descriptor: &Descriptor,
    query: &PlatformQuery,
) -> Result<ResolvedImage> {
    let kind = descriptor.media_type().to_string();
    if media_type::is_manifest_like(&kind) {
        let Some((manifest, config)) = load(layout, descriptor).await? else {
            return Err(Error::UnsupportedMediaType {
                media_type: descriptor.media_type().to_string(),
                operation: "resolve an image (the manifest's config is not an image config)",
            });
        };
        let have = config.platform();
        if !query.matches(&have) {
            return Err(Error::PlatformNotFound {
                wanted: query.describe(),
                available: vec![platform::format(&have)],
            });
        }
        let mut descriptor = descriptor.clone();
        if descriptor.platform().is_none() {
            descriptor.set_platform(Some(have));
        }
        return Ok(ResolvedImage {
            descriptor,
            manifest,
            config,
        });
    }
    if !media_type::is_index_like(&kind) {
        return Err(Error::UnsupportedMediaType {
            media_type: kind,
            operation: "resolve an image",
        });
    }
    let mut available = Vec::new();
    match search(layout, descriptor.clone(), query, 1, &mut available).await? {
        Some(found) => Ok(found),
        None => Err(Error::PlatformNotFound {
            wanted: query.describe(),
            available,
        }),
    }
}

/// Searches the index `index` (at nesting level `depth`, the top being 1).
fn search<'a>(
    layout: &'a Layout,
    index: Descriptor,
    query: &'a PlatformQuery,
    depth: usize,
    available: &'a mut Vec<String>,
) -> BoxFuture<'a, Result<Option<ResolvedImage>>> {
    async move {
        if depth > query.max_depth {
            return Err(Error::IndexTooDeep {
                digest: digest_of(&index)?,
                max_depth: query.max_depth,
            });
        }
        let Document::Index { index: parsed, .. } = layout.read_document(&index).await? else {
            return Ok(None);
        };
        for entry in parsed.manifests() {
            let kind = entry.media_type().to_string();
            if media_type::is_manifest_like(&kind) {
                if let Some(have) = entry.platform() {
                    available.push(platform::format(have));
                    if !query.matches(have) {
                        continue;
                    }
                    if let Some((manifest, config)) = load(layout, entry).await? {
                        return Ok(Some(ResolvedImage {
                            descriptor: entry.clone(),
                            manifest,
                            config,
                        }));
                    }
                    continue;
                }
                // No platform on the entry: its config says.
                let Some((manifest, config)) = load(layout, entry).await? else {
                    continue;
                };
                let have = config.platform();
                available.push(platform::format(&have));
                if query.matches(&have) {
                    let mut descriptor = entry.clone();
                    descriptor.set_platform(Some(have));
                    return Ok(Some(ResolvedImage {
                        descriptor,
                        manifest,
                        config,
                    }));
                }
            } else if media_type::is_index_like(&kind) {
                if let Some(have) = entry.platform()
                    && !query.matches(have)
                {
                    available.push(platform::format(have));
                    continue;
                }
                if let Some(found) =
                    search(layout, entry.clone(), query, depth + 1, available).await?
                {
                    return Ok(Some(found));
                }
            }
        }
        Ok(None)
    }
    .boxed()
}

/// Reads an image manifest and its config; `None` when the config is not an image config
/// (an artifact).
async fn load(
    layout: &Layout,
    descriptor: &Descriptor,
) -> Result<Option<(ImageManifest, ImageConfig)>> {
    let Document::Manifest { manifest, .. } = layout.read_document(descriptor).await? else {
        return Ok(None);
    };
    if !is_image_config(manifest.config().media_type().as_ref()) {
        return Ok(None);
    }
    let config_digest = digest_of(manifest.config())?;
    let bytes = layout.read_blob(manifest.config()).await?;
    let config = ImageConfig::parse(&config_digest, &bytes)?;
    Ok(Some((*manifest, config)))
}
