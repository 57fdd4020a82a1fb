//! [`unpack`]: an image of an `oci:` layout into a root filesystem, all or nothing, after
//! the trust policy (if any) accepted it: what `ocikit unpack` does.

use std::path::Path;

use ocikit_layout::{UnpackOptions, UnpackReport};

use crate::error::Result;
use crate::location::Location;
use crate::open::{open_layout, resolve};
#[cfg(feature = "sign")]
use crate::{access::RegistryOptions, trust::PolicyAccepted};

/// How to [`unpack`]: the layout crate's [`UnpackOptions`] (platform, rootless, ID maps,
/// progress) and the trust policy the image must pass first.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct UnpackImageOptions {
    /// How the layers are applied.
    pub unpack: UnpackOptions,
    /// The trust policy the image must pass before anything is written (see
    /// [`crate::check_policy`]); the image is then read by the digest accepted.
    #[cfg(feature = "sign")]
    pub policy: Option<ocikit_sign::Policy>,
    /// How to reach the registries a policy's checks read (signatures are read where the
    /// image is; for an `oci:` image none is reached).
    #[cfg(feature = "sign")]
    pub registry: RegistryOptions,
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
}

/// What [`unpack`] did.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct UnpackImageReport {
    /// The layers applied, as [`ocikit_layout::unpack_staged`] reports them.
    pub unpacked: UnpackReport,
    /// What the trust policy accepted, when [`UnpackImageOptions::policy`] gave one.
    #[cfg(feature = "sign")]
    pub accepted: Option<PolicyAccepted>,
}

/// Unpacks the image `image` (an `oci:` layout's tag or digest, or its only image) into
/// `rootfs`, new or empty, all or nothing: staged beside it and renamed into place whole
/// ([`ocikit_layout::unpack_staged`]). With a policy, the image is checked first and read
/// by the digest accepted; a refused image writes nothing.
///
/// # Errors
/// [`crate::Error::NeedsLayout`] for a location that is no layout; the policy's refusal;
/// those of opening the layout, resolving the image and applying its layers.
pub async fn unpack(
    image: &Location,
    rootfs: &Path,
    options: &UnpackImageOptions,
) -> Result<UnpackImageReport> {
    #[cfg(feature = "sign")]
    let accepted = match &options.policy {
        Some(policy) => Some(crate::trust::check_policy(image, policy, &options.registry).await?),
        None => None,
    };
    #[cfg(feature = "sign")]
    let image = accepted.as_ref().map_or(image, |a| &a.pinned);
    let (path, selector) = image.oci("unpack")?;
    let layout = open_layout(path).await?;
    let descriptor = resolve(&layout, path, selector).await?;
    let unpacked =
        ocikit_layout::unpack_staged(&layout, &descriptor, rootfs, &options.unpack).await?;
    Ok(UnpackImageReport {
        unpacked,
        #[cfg(feature = "sign")]
        accepted,
    })
}
