//! The trust policy (containers' `policy.json` subset, [`ocikit_sign::policy`]) that `copy`
//! ([`CopyOptions::with_policy`](crate::CopyOptions::with_policy), so `pull` too) and
//! `unpack` ([`check_policy`]) enforce on the image they read, before anything of it is
//! written.
//!
//! The image is named by its location: a registry image is looked up as
//! [`ImageIdentity::Docker`] with the reference written after `docker://` (normalised, so
//! `docker.io/library/alpine:latest` for Docker Hub's `alpine`), a layout image as
//! [`ImageIdentity::Oci`] with the layout's resolved directory and its tag. Its digest is
//! the manifest's (or the index's) that the tag names, as `cosign sign` signs it. When the
//! requirements that apply need signatures, the layers of its `sha256-<hex>.sig` manifest
//! are read (each checked against its descriptor, an oversized one refused unread) and
//! handed to [`Policy::evaluate`]; a layer that is no signature becomes one of the
//! reasons of a refusal. A refusal is [`Error::PolicyRejected`], naming the scope and the
//! reason (`reject`, no signature, each signature's: another key, another manifest, another
//! docker reference).
//!
//! What was accepted is the digest: the copy then reads the image by that digest
//! ([`PolicyAccepted::pinned`]), so a tag moved meanwhile cannot slip another image in.
//! Archives hold no signatures and are refused ([`Error::PolicySource`]).

use std::path::{Path, PathBuf};

use ocikit_digest::Digest;
use ocikit_digest::oci_spec::image::Descriptor;
use ocikit_layout::Layout;
use ocikit_sign::policy::{Decision, ImageIdentity, Rejection};
use ocikit_sign::{Policy, Signature};

use crate::access::RegistryOptions;
use crate::copy_signatures::without_selector;
use crate::error::{Error, Result};
use crate::location::{Location, Selector};
use crate::signing::{Opened, SigningError};

/// What a trust policy accepted.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct PolicyAccepted {
    /// The image, as given.
    pub location: String,
    /// The digest accepted (the manifest's, or the index's, that the location names).
    pub digest: Digest,
    /// The part of the policy that applied, in words (`scope `localhost:5000/app` of
    /// transport `docker``, `the global default`).
    pub scope: String,
    /// How many signatures were verified (none under `insecureAcceptAnything` alone).
    pub verified: usize,
    /// The location by the accepted digest (`docker://HOST/NAME@DIGEST`,
    /// `oci:DIR@DIGEST`): read the image there, not by its tag, which may have moved since.
    #[serde(skip)]
    pub pinned: Location,
}

/// Reads the `policy.json` at `path` and the key files its `keyPath`s name (on a blocking
/// thread).
pub async fn load_policy(path: &Path) -> Result<Policy> {
    let owned = path.to_path_buf();
    let loaded = tokio::task::spawn_blocking(move || Policy::load(&owned)).await;
    let policy_error = |source| Error::PolicyFile {
        path: path.to_path_buf(),
        source,
    };
    match loaded {
        Ok(loaded) => loaded.map_err(policy_error),
        Err(join) => Err(policy_error(ocikit_sign::Error::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other(join),
        })),
    }
}

/// Decides whether `policy` accepts the image `location` names (`docker://…` reached with
/// `registry`, or `oci:DIR:TAG|@DIGEST`); nothing is written. Refused:
/// [`Error::PolicyRejected`]; an archive: [`Error::PolicySource`].
pub async fn check_policy(
    location: &Location,
    policy: &Policy,
    registry: &RegistryOptions,
) -> Result<PolicyAccepted> {
    if !matches!(location, Location::Docker { .. } | Location::Oci { .. }) {
        return Err(Error::PolicySource {
            location: location.to_string(),
        });
    }
    let text = location.to_string();
    let opened = Opened::open(location, registry)
        .await
        .map_err(|e| signing_error(&text, e))?;
    let identity = match location {
        Location::Oci { path, selector } => {
            let tag = match selector {
                Some(Selector::Tag(tag)) => Some(tag.as_str()),
                _ => None,
            };
            oci_identity(path, tag).await?
        }
        _ => match &opened.reference {
            Some(reference) => ImageIdentity::Docker(reference.clone()),
            None => {
                return Err(signing_error(
                    &text,
                    SigningError::NoDockerReference {
                        location: text.clone(),
                        signing: false,
                    },
                ));
            }
        },
    };
    let (scope, verified) = decide(&opened, &identity, policy).await?;
    Ok(PolicyAccepted {
        location: text,
        pinned: pinned(location, &opened.digest),
        digest: opened.digest,
        scope,
        verified,
    })
}

/// [`check_policy`] for the image `root` of the layout at `path` (open as `layout`),
/// tagged `tag` there, if it is.
pub(crate) async fn check_layout_image(
    layout: &Layout,
    path: &Path,
    tag: Option<&str>,
    root: &Descriptor,
    policy: &Policy,
) -> Result<()> {
    let text = Location::Oci {
        path: path.to_path_buf(),
        selector: Some(match tag {
            Some(tag) => Selector::Tag(tag.to_string()),
            None => Selector::Digest(digest_of(root)?),
        }),
    }
    .to_string();
    let opened = Opened::in_layout(layout.clone(), text.clone(), root.clone())
        .map_err(|e| signing_error(&text, e))?;
    let identity = oci_identity(path, tag).await?;
    decide(&opened, &identity, policy).await.map(|_| ())
}

/// The policy's decision for the opened image: the scope and the number of signatures
/// verified when accepted, else [`Error::PolicyRejected`].
async fn decide(
    opened: &Opened,
    identity: &ImageIdentity,
    policy: &Policy,
) -> Result<(String, usize)> {
    let (signatures, not_signatures): (Vec<Signature>, Vec<ocikit_sign::Error>) =
        if policy.requires_signatures(identity) {
            opened
                .candidates()
                .await
                .map_err(|e| signing_error(&opened.location, e))?
        } else {
            (Vec::new(), Vec::new())
        };
    match policy.evaluate(identity, &opened.digest, &signatures) {
        Decision::Accepted { scope, signatures } => Ok((scope.to_string(), signatures.len())),
        Decision::Rejected { scope, reason } => {
            // Layers that were no signature are reasons too: "none" would be untrue.
            let reason = match reason {
                Rejection::NoSignatures if !not_signatures.is_empty() => {
                    Rejection::NoValidSignature {
                        reasons: not_signatures,
                    }
                }
                Rejection::NoValidSignature { mut reasons } => {
                    reasons.extend(not_signatures);
                    Rejection::NoValidSignature { reasons }
                }
                other => other,
            };
            Err(Error::PolicyRejected {
                location: opened.location.clone(),
                digest: opened.digest.to_string(),
                scope,
                reason,
            })
        }
        _ => Err(Error::PolicyRejected {
            location: opened.location.clone(),
            digest: opened.digest.to_string(),
            scope: ocikit_sign::policy::Scope::Default,
            reason: Rejection::Rejected,
        }),
    }
}

/// A layout image as the policy names it: its directory resolved (symlinks, `..`), and its
/// tag.
async fn oci_identity(path: &Path, tag: Option<&str>) -> Result<ImageIdentity> {
    let dir: PathBuf = tokio::fs::canonicalize(path)
        .await
        .map_err(|_| Error::NoLayout {
            path: path.to_path_buf(),
            directory_exists: path.exists(),
        })?;
    Ok(ImageIdentity::Oci {
        dir,
        image: tag.map(str::to_string),
    })
}

/// `location`, naming the image by `digest` instead of its tag.
pub(crate) fn pinned(location: &Location, digest: &Digest) -> Location {
    match location {
        Location::Docker {
            registry,
            repository,
            written,
            ..
        } => Location::Docker {
            registry: registry.clone(),
            repository: repository.clone(),
            selector: Selector::Digest(digest.clone()),
            written: format!("{}@{digest}", without_selector(written)),
        },
        Location::Oci { path, .. } => Location::Oci {
            path: path.clone(),
            selector: Some(Selector::Digest(digest.clone())),
        },
        other => other.clone(),
    }
}

fn digest_of(d: &Descriptor) -> Result<Digest> {
    let text = d.digest().to_string();
    text.parse().map_err(|source| Error::InvalidDigest {
        digest: text.clone(),
        source,
    })
}

/// A signing error met while deciding, as the crate's error: a transport failure as it is,
/// the rest as [`Error::PolicySignatures`].
fn signing_error(location: &str, e: SigningError) -> Error {
    match e {
        SigningError::Transport(e) => e,
        SigningError::Unsupported { location } => Error::PolicySource { location },
        other => Error::PolicySignatures {
            location: location.to_string(),
            source: Box::new(other),
        },
    }
}
