//! [`unpack`]: an image from any location into a root filesystem, all or nothing, after the
//! trust policy (if any) accepted it: what `ocikit unpack` does.
//!
//! - `oci:` layouts are unpacked from their blob files ([`ocikit_layout::unpack_staged`]).
//! - `docker://` images are unpacked in one stream ([`registry`]): the manifest and config
//!   are fetched and checked first, then each layer is downloaded, verified, decompressed
//!   and applied as it arrives, the next layers downloading meanwhile, at most
//!   [`UnpackImageOptions::prefetch`] ahead, into anonymous spool files beside the target
//!   (removed when closed, even when the process is killed). The layers are applied in
//!   order; each is checked against its digest, size and diffID.
//! - Archives (`oci-archive:`, `docker-archive:`) are imported into a layout first (the
//!   `--keep` layout, or scratch space beside the target) and unpacked from there.
//!
//! In every case the tree is built in a staging directory beside the target and renamed into
//! place only when every layer was applied and verified. With
//! [`UnpackImageOptions::keep`], the image (its blobs, config and manifest, tagged) is also
//! stored in a layout: for a registry in the same pass, each blob published only once
//! verified and the tag set only when the unpack succeeded; a new layout appears only then.

mod registry;

use std::path::{Path, PathBuf};

use ocikit_layout::{UnpackOptions, UnpackReport};

use crate::access::RegistryOptions;
use crate::copy::{CopyOptions, ScratchSpace, copy};
use crate::error::{Error, Result};
use crate::location::{Location, Selector};
use crate::open::{open_layout, resolve};
#[cfg(feature = "sign")]
use crate::trust::PolicyAccepted;

/// Layers downloaded ahead of the one being applied, by default.
pub const DEFAULT_PREFETCH: usize = 2;

/// How to [`unpack`]: the layout crate's [`UnpackOptions`] (platform, rootless, ID maps,
/// progress), how to reach a registry, where to keep the image, and the trust policy the
/// image must pass first.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct UnpackImageOptions {
    /// How the layers are applied.
    pub unpack: UnpackOptions,
    /// The trust policy the image must pass before anything is written (see
    /// [`crate::check_policy`]); the image is then read by the digest accepted.
    #[cfg(feature = "sign")]
    pub policy: Option<ocikit_sign::Policy>,
    /// How to reach the registry of a `docker://` image (and the registries a policy's
    /// checks read).
    pub registry: RegistryOptions,
    /// An `oci:PATH[:TAG]` layout to store the image in as well (`--keep`): the tag given,
    /// else the source's tag.
    pub keep: Option<Location>,
    /// Layers of a registry image downloaded ahead of the one being applied (at least 0;
    /// each waits in a spool file until its turn). Default [`DEFAULT_PREFETCH`].
    pub prefetch: usize,
}

impl Default for UnpackImageOptions {
    fn default() -> UnpackImageOptions {
        UnpackImageOptions {
            unpack: UnpackOptions::default(),
            #[cfg(feature = "sign")]
            policy: None,
            registry: RegistryOptions::default(),
            keep: None,
            prefetch: DEFAULT_PREFETCH,
        }
    }
}

impl UnpackImageOptions {
    /// Applies the layers as `unpack` says, with no policy.
    pub fn new(unpack: UnpackOptions) -> UnpackImageOptions {
        UnpackImageOptions {
            unpack,
            ..UnpackImageOptions::default()
        }
    }

    /// These options enforcing `policy` ([`UnpackImageOptions::policy`]), reading
    /// registries with `registry`.
    #[cfg(feature = "sign")]
    pub fn with_policy(
        mut self,
        policy: Option<ocikit_sign::Policy>,
        registry: RegistryOptions,
    ) -> UnpackImageOptions {
        self.policy = policy;
        self.registry = registry;
        self
    }

    /// These options reaching registries with `registry`.
    pub fn with_registry(mut self, registry: RegistryOptions) -> UnpackImageOptions {
        self.registry = registry;
        self
    }

    /// These options storing the image in the layout `keep` too
    /// ([`UnpackImageOptions::keep`]).
    pub fn with_keep(mut self, keep: Option<Location>) -> UnpackImageOptions {
        self.keep = keep;
        self
    }

    /// These options downloading `layers` layers ahead ([`UnpackImageOptions::prefetch`]).
    pub fn with_prefetch(mut self, layers: usize) -> UnpackImageOptions {
        self.prefetch = layers;
        self
    }
}

/// What [`unpack`] did.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct UnpackImageReport {
    /// The layers applied, as [`ocikit_layout::unpack_staged`] reports them.
    pub unpacked: UnpackReport,
    /// Where the image was kept (`oci:PATH:TAG`), when [`UnpackImageOptions::keep`] gave a
    /// layout.
    pub kept: Option<Location>,
    /// What the trust policy accepted, when [`UnpackImageOptions::policy`] gave one.
    #[cfg(feature = "sign")]
    pub accepted: Option<PolicyAccepted>,
}

/// Unpacks the image `image` (in a layout, an archive or a registry) into `rootfs`, new or
/// empty, all or nothing: staged beside it and renamed into place whole.
///
/// A registry image is unpacked in one stream: its manifest (picked by
/// [`UnpackOptions::platform`] from an index) and config are fetched and checked, then each
/// layer is applied while it downloads, the next [`UnpackImageOptions::prefetch`] layers
/// downloading meanwhile into anonymous spool files beside the target (gone when closed,
/// even if the process is killed); layers are applied in order, each checked against its
/// digest, size and diffID. An archive is imported into the keep layout, or scratch space
/// beside the target, and unpacked from there; a layout from its blob files.
///
/// With [`UnpackImageOptions::keep`], the image (blobs, config, manifest) is also stored in
/// that layout and tagged: for a registry in the same pass, each blob published only once
/// verified, the tag set only when the unpack succeeded, and a new layout appearing only
/// then. With a policy, the image is checked first and read by the digest accepted; a
/// refused image writes nothing.
///
/// # Errors
/// The policy's refusal; a `--keep` location that is no `oci:` layout
/// ([`Error::NeedsLayout`]) or names a digest ([`Error::DestinationTakesATag`]), or no tag
/// to keep the image under ([`Error::NoDestinationTag`]); those of reaching the image
/// ([`Error::Pull`] for a registry's, including a layer whose bytes do not match its
/// digest), of resolving it and of applying its layers (a diffID mismatch).
pub async fn unpack(
    image: &Location,
    rootfs: &Path,
    options: &UnpackImageOptions,
) -> Result<UnpackImageReport> {
    // Named from the image as given (a policy pins it by digest).
    let keep = match &options.keep {
        Some(keep) => Some(keep_target(image, keep)?),
        None => None,
    };
    #[cfg(feature = "sign")]
    let accepted = match &options.policy {
        Some(policy) => Some(crate::trust::check_policy(image, policy, &options.registry).await?),
        None => None,
    };
    #[cfg(feature = "sign")]
    let image = accepted.as_ref().map_or(image, |a| &a.pinned);
    let (unpacked, kept) = match image {
        Location::Docker {
            registry,
            repository,
            selector,
            ..
        } => {
            registry::unpack(
                image,
                (registry, repository, selector),
                rootfs,
                options,
                keep.as_ref(),
            )
            .await?
        }
        Location::Oci { path, selector } => {
            let kept = match &keep {
                Some((keep_path, tag)) => Some(copy_to_keep(image, keep_path, tag, options).await?),
                None => None,
            };
            let layout = open_layout(path).await?;
            let descriptor = resolve(&layout, path, selector.as_ref()).await?;
            let unpacked =
                ocikit_layout::unpack_staged(&layout, &descriptor, rootfs, &options.unpack).await?;
            (unpacked, kept)
        }
        _ => from_archive(image, rootfs, options, keep.as_ref()).await?,
    };
    Ok(UnpackImageReport {
        unpacked,
        kept,
        #[cfg(feature = "sign")]
        accepted,
    })
}

/// The layout directory and tag `keep` names for `image`: its own tag, else the image's.
fn keep_target(image: &Location, keep: &Location) -> Result<(PathBuf, String)> {
    let (path, selector) = keep.oci("keep an unpacked image in")?;
    let tag = match selector {
        Some(Selector::Tag(tag)) => tag.clone(),
        Some(Selector::Digest(_)) => {
            return Err(Error::DestinationTakesATag {
                syntax: "oci:PATH:TAG",
            });
        }
        None => match image {
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
            } => tag.clone(),
            Location::DockerArchive {
                reference: Some(reference),
                ..
            } => match reference.rsplit_once(':') {
                Some((_, tag)) if !tag.contains('/') => tag.to_string(),
                _ => "latest".to_string(),
            },
            _ => return Err(Error::NoDestinationTag),
        },
    };
    ocikit_layout::validate_tag(&tag).map_err(|source| Error::InvalidTag {
        what: "unpack --keep".to_string(),
        source,
    })?;
    Ok((path.clone(), tag))
}

/// Copies `image` into the keep layout under `tag` (a registry image: the platform's image
/// only); returns where it is.
async fn copy_to_keep(
    image: &Location,
    path: &Path,
    tag: &str,
    options: &UnpackImageOptions,
) -> Result<Location> {
    let kept = Location::Oci {
        path: path.to_path_buf(),
        selector: Some(Selector::Tag(tag.to_string())),
    };
    let platform = Some(options.unpack.platform.clone()).filter(|_| image.is_registry());
    copy(
        image,
        &kept,
        &CopyOptions::new()
            .with_source(options.registry.clone())
            .with_platform(platform),
    )
    .await?;
    Ok(kept)
}

/// An archive imported into the keep layout, or into scratch space beside the target, and
/// unpacked from there.
async fn from_archive(
    image: &Location,
    rootfs: &Path,
    options: &UnpackImageOptions,
    keep: Option<&(PathBuf, String)>,
) -> Result<(UnpackReport, Option<Location>)> {
    let (scratch, (path, tag)) = match keep {
        Some(keep) => (None, keep.clone()),
        None => {
            let near = rootfs
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
            let scratch = ScratchSpace::near(&near).await?;
            let path = scratch.path().join("source");
            (Some(scratch), (path, "unpack".to_string()))
        }
    };
    let kept = copy_to_keep(image, &path, &tag, options).await?;
    let layout = open_layout(&path).await?;
    let descriptor = layout.resolve(&tag).await?;
    let unpacked =
        ocikit_layout::unpack_staged(&layout, &descriptor, rootfs, &options.unpack).await?;
    drop(scratch);
    Ok((unpacked, keep.map(|_| kept)))
}
