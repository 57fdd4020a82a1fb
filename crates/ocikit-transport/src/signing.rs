//! cosign-compatible signatures where cosign keeps them: [`sign`] (`ocikit sign`) and
//! [`verify`] (`ocikit verify`) on registries (`docker://`) and layouts (`oci:`), and the key
//! files of `ocikit key generate` ([`generate_key_files`]).
//!
//! The signatures of the image whose manifest (or index) has digest `sha256:<hex>` are an
//! OCI image manifest tagged `sha256-<hex>.sig` beside it, in the same repository, or in a
//! layout under that `org.opencontainers.image.ref.name` in `index.json`: one layer per
//! signature, whose blob is the simple-signing payload
//! (`application/vnd.dev.cosign.simplesigning.v1+json`) and whose descriptor carries the
//! base64 signature in `dev.cosignproject.cosign/signature`; the config is the empty image
//! config cosign writes ([`ocikit_sign::image`] builds both). That is where `cosign sign`
//! and containers/image (skopeo, podman, with `use-sigstore-attachments`) put and look for
//! them.
//!
//! - Signing an index signs the index's digest, as `cosign sign` does without
//!   `--recursive`: a verifier given the index (by tag or digest) checks that digest; the
//!   images it lists are not signed one by one.
//! - Signing appends: the current signature manifest's layers are kept as they are, and
//!   the new signature added after them. A signature the same key already made over the
//!   same payload is not added twice ([`SignReport::added`] is then `false`).
//! - In a layout the tag moves by compare-and-swap on `index.json`: two signers at once
//!   both land (the second re-reads and appends again). A registry has no such primitive:
//!   the manifest `PUT` is atomic, but two signers of one image at the same moment can each
//!   replace the other's manifest, as with cosign.
//! - The payload's docker reference is the registry location's reference, normalised as
//!   containers/image writes it (`host/repo:tag`, or `host/repo@sha256:…` for a digest). A
//!   layout has none: give one ([`SignOptions::with_docker_reference`]), which verification
//!   then checks ([`VerifyOptions::with_docker_reference`]).
//!
//! Verification fetches every layer of the signature manifest (an oversized or
//! non-signature layer is refused from its descriptor, unread), checks each signature with
//! the keys given, then what its payload says: the manifest digest, and the docker
//! reference under the identity rule (containers' `matchRepoDigestOrExact` by default). It
//! succeeds when at least one signature passes every check; the others are reported with
//! their reasons. When none does, the error says why, most specific first: a reference
//! mismatch ([`SigningError::ReferenceMismatch`]), a payload for another manifest
//! ([`SigningError::ForAnotherManifest`]), a signed payload that is not one
//! ([`SigningError::InvalidPayload`]), no signature by these keys
//! ([`SigningError::NotSignedByKeys`]); none at all is [`SigningError::NoSignatures`].

use std::io::Write as _;
use std::path::{Path, PathBuf};

use ocikit_client::{Client, PushOptions};
use ocikit_digest::oci_spec::image::{Descriptor, ImageManifest};
use ocikit_digest::{Digest, Reference, descriptor};
use ocikit_layout::{Document, Layout};
use ocikit_sign::image::{
    CONFIG_MEDIA_TYPE, MANIFEST_MEDIA_TYPE, SignatureImage, check_layer, signature_from_layer,
};
use ocikit_sign::{
    Expected, PrivateKey, PublicKey, SIMPLE_SIGNING_MEDIA_TYPE, SignedIdentity, signature_tag,
};
use ocikit_store::MemoryStore;
use serde::Serialize;
use zeroize::Zeroizing;

use crate::access::RegistryOptions;
use crate::error::{Error, Operation};
use crate::location::Location;
use crate::open::{open_layout, resolve};

/// The file name of the private key `ocikit key generate` writes (cosign's).
pub const PRIVATE_KEY_FILE: &str = "cosign.key";
/// The file name of the public key `ocikit key generate` writes (cosign's).
pub const PUBLIC_KEY_FILE: &str = "cosign.pub";
/// How many times a layout signature is retried when another writer moved the tag between
/// our read and our write.
const MAX_SIGN_ATTEMPTS: usize = 8;

/// Why signing, verifying or writing key files failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SigningError {
    /// Reading the image or writing the signatures failed.
    #[error(transparent)]
    Transport(#[from] Error),
    /// Signatures live in registries and layouts; an archive holds none.
    #[error("signatures are kept in a registry or a layout (docker:// or oci:), not in {location}")]
    Unsupported {
        /// The location given.
        location: String,
    },
    /// A layout has no docker reference for the payload to claim, or for the identity rule
    /// to check the claim against.
    #[error(
        "{location} has no docker reference: name the one the signature {} (--reference)",
        if *signing { "claims" } else { "must claim" }
    )]
    NoDockerReference {
        /// The location given.
        location: String,
        /// Whether it was signing (else verifying).
        signing: bool,
    },
    /// The signature (or a key file) could not be made or read.
    #[error("cannot sign {location}")]
    Sign {
        /// The location given.
        location: String,
        /// Why.
        #[source]
        source: ocikit_sign::Error,
    },
    /// The signature tag holds something other than an image manifest.
    #[error("{location}: the signature tag {tag} is not an image manifest of signatures")]
    SignatureManifest {
        /// The image.
        location: String,
        /// The signature tag.
        tag: String,
        /// Why.
        #[source]
        source: Option<ocikit_sign::Error>,
    },
    /// The image has no signature tag, or an empty one.
    #[error("{location} ({digest}) has no signatures (no {tag})")]
    NoSignatures {
        /// The image.
        location: String,
        /// The image's manifest digest.
        digest: Digest,
        /// The signature tag looked for.
        tag: String,
    },
    /// No signature verifies with the keys given (another key made them, or the payload or
    /// signature was changed, or a layer was not a signature).
    #[error("none of the {count} signatures of {location} verifies with the keys given")]
    NotSignedByKeys {
        /// The image.
        location: String,
        /// How many signatures there were.
        count: usize,
        /// Why the first one was refused.
        #[source]
        source: ocikit_sign::Error,
    },
    /// A signature verifies, but its payload is for another manifest (a replayed
    /// signature, or an image changed after signing).
    #[error("the signature of {location} is for manifest {signed}, not {expected}")]
    ForAnotherManifest {
        /// The image.
        location: String,
        /// The digest verified.
        expected: Digest,
        /// The digest the signed payload names.
        signed: Digest,
    },
    /// A signature verifies, but the docker reference its payload claims is not accepted
    /// for this image.
    #[error("the signature of {location} claims another image, `{signed}`")]
    ReferenceMismatch {
        /// The image.
        location: String,
        /// The docker reference the signed payload names.
        signed: String,
        /// The identity check's refusal.
        #[source]
        source: ocikit_sign::Error,
    },
    /// A signature verifies, but what it signed is not a simple-signing payload.
    #[error("the signature of {location} verifies, but its payload is invalid")]
    InvalidPayload {
        /// The image.
        location: String,
        /// Why.
        #[source]
        source: ocikit_sign::Error,
    },
    /// A key file could not be read, or is not a key of the expected kind.
    #[error("cannot use the key {}", path.display())]
    Key {
        /// The key file.
        path: PathBuf,
        /// Why.
        #[source]
        source: ocikit_sign::Error,
    },
    /// A key file could not be read or written.
    #[error("cannot {action} {}", path.display())]
    KeyFile {
        /// `read` or `write`.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `key generate` would overwrite a key file.
    #[error("{} exists: key files are never overwritten", path.display())]
    KeyFileExists {
        /// The file.
        path: PathBuf,
    },
    /// Another writer kept moving the signature tag of a layout.
    #[error("the signature tag {tag} kept changing under {location}: try again")]
    Contended {
        /// The image.
        location: String,
        /// The signature tag.
        tag: String,
    },
}

impl From<ocikit_layout::Error> for SigningError {
    fn from(e: ocikit_layout::Error) -> SigningError {
        SigningError::Transport(Error::Layout(e))
    }
}

impl From<ocikit_store::Error> for SigningError {
    fn from(e: ocikit_store::Error) -> SigningError {
        SigningError::Transport(Error::from(e))
    }
}

/// The result type of this module.
pub type Result<T, E = SigningError> = std::result::Result<T, E>;

/// How [`sign`] reaches the image and what the payload claims.
#[derive(Clone, Debug, Default)]
pub struct SignOptions {
    registry: RegistryOptions,
    docker_reference: Option<Reference>,
}

impl SignOptions {
    /// The default registry access; the location's own reference.
    pub fn new() -> SignOptions {
        SignOptions::default()
    }

    /// How to reach the registry.
    pub fn with_registry(mut self, registry: RegistryOptions) -> SignOptions {
        self.registry = registry;
        self
    }

    /// The docker reference the payload claims instead of the location's (required for a
    /// layout; for a registry, to sign a mirror with the canonical name).
    pub fn with_docker_reference(mut self, reference: Option<Reference>) -> SignOptions {
        self.docker_reference = reference;
        self
    }
}

/// How [`verify`] reaches the image and which claims it accepts.
#[derive(Clone, Debug, Default)]
pub struct VerifyOptions {
    registry: RegistryOptions,
    docker_reference: Option<Reference>,
    identity: SignedIdentity,
}

impl VerifyOptions {
    /// The default registry access; claims checked against the location's own reference by
    /// `matchRepoDigestOrExact`.
    pub fn new() -> VerifyOptions {
        VerifyOptions::default()
    }

    /// How to reach the registry.
    pub fn with_registry(mut self, registry: RegistryOptions) -> VerifyOptions {
        self.registry = registry;
        self
    }

    /// The reference the image is known by, for the identity rule, instead of the
    /// location's (a layout has none).
    pub fn with_docker_reference(mut self, reference: Option<Reference>) -> VerifyOptions {
        self.docker_reference = reference;
        self
    }

    /// The identity rule (containers' `signedIdentity`; default `matchRepoDigestOrExact`).
    pub fn with_identity(mut self, identity: SignedIdentity) -> VerifyOptions {
        self.identity = identity;
        self
    }
}

/// What [`sign`] did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct SignReport {
    /// The image signed, as given.
    pub location: String,
    /// The digest signed (the manifest's, or the index's).
    pub manifest_digest: Digest,
    /// The signed document's media type.
    pub media_type: String,
    /// The docker reference the payload claims.
    pub docker_reference: String,
    /// The tag the signatures are stored under.
    pub signature_tag: String,
    /// The digest of the signature manifest now tagged.
    pub signature_manifest: Digest,
    /// How many signatures it holds.
    pub signatures: usize,
    /// Whether a signature was added (`false`: this key had signed this payload already).
    pub added: bool,
    /// The digest of the payload (its layer).
    pub payload_digest: Digest,
    /// The SHA-256 of the public key's PKIX DER.
    pub key: Digest,
}

/// A signature that passed every check.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct VerifiedPayload {
    /// The docker reference the payload claims.
    pub docker_reference: String,
    /// The manifest digest it names.
    pub manifest_digest: Digest,
    /// `optional.creator`, if any.
    pub creator: Option<String>,
    /// `optional.timestamp`, if any.
    pub timestamp: Option<i64>,
    /// The payload's digest (its layer).
    pub payload_digest: Digest,
    /// The SHA-256 of the PKIX DER of the key that verified it.
    pub key: Digest,
    /// The payload itself, as signed.
    pub payload: serde_json::Value,
}

/// A signature layer that did not pass, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct RejectedSignature {
    /// The layer's digest as its descriptor states it.
    pub layer: String,
    /// Why it was refused.
    pub reason: String,
}

/// What [`verify`] found.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct VerifyReport {
    /// The image verified, as given.
    pub location: String,
    /// Its manifest (or index) digest.
    pub manifest_digest: Digest,
    /// The tag its signatures are stored under.
    pub signature_tag: String,
    /// The digest of the signature manifest read.
    pub signature_manifest: Digest,
    /// The signatures that verified (at least one).
    pub verified: Vec<VerifiedPayload>,
    /// The others, with their reasons.
    pub rejected: Vec<RejectedSignature>,
}

/// The files [`generate_key_files`] wrote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct GeneratedKeys {
    /// The encrypted private key (`cosign.key`, mode 0600).
    pub private_key: PathBuf,
    /// The public key (`cosign.pub`).
    pub public_key: PathBuf,
    /// The SHA-256 of the public key's PKIX DER.
    pub key: Digest,
}

/// Where an image and its signatures are: a layout, or a registry repository.
pub(crate) enum Place {
    Layout {
        layout: Layout,
    },
    Registry {
        client: Client,
        repository: String,
        scratch: Layout,
    },
}

/// The image a location names, opened where its signatures are kept.
pub(crate) struct Opened {
    pub(crate) place: Place,
    pub(crate) location: String,
    pub(crate) image: Descriptor,
    pub(crate) digest: Digest,
    /// The location's own docker reference (`None` for a layout).
    pub(crate) reference: Option<Reference>,
}

impl Opened {
    /// The image `location` names (a registry's or a layout's), where its signatures are.
    pub(crate) async fn open(location: &Location, registry: &RegistryOptions) -> Result<Opened> {
        let text = location.to_string();
        match location {
            Location::Oci { path, selector } => {
                let layout = open_layout(path).await?;
                let image = resolve(&layout, path, selector.as_ref()).await?;
                let digest = digest_of(&image)?;
                Ok(Opened {
                    place: Place::Layout { layout },
                    location: text,
                    image,
                    digest,
                    reference: None,
                })
            }
            Location::Docker {
                registry: host,
                repository,
                selector,
                written,
            } => {
                let client = registry.client(host)?;
                let (image, _) = client
                    .get_manifest(repository, &selector.reference())
                    .await
                    .map_err(|source| Error::Registry {
                        operation: Operation::ReadManifest,
                        location: text.clone(),
                        source,
                    })?;
                let digest = digest_of(&image)?;
                let reference = Reference::parse_normalized(written).ok();
                Ok(Opened {
                    place: Place::Registry {
                        client,
                        repository: repository.clone(),
                        scratch: Layout::create(MemoryStore::new()).await?,
                    },
                    location: text,
                    image,
                    digest,
                    reference,
                })
            }
            other => Err(SigningError::Unsupported {
                location: other.to_string(),
            }),
        }
    }

    /// The image `image` of `layout`, already open (`location` names it in messages).
    pub(crate) fn in_layout(layout: Layout, location: String, image: Descriptor) -> Result<Opened> {
        let digest = digest_of(&image)?;
        Ok(Opened {
            place: Place::Layout { layout },
            location,
            image,
            digest,
            reference: None,
        })
    }

    /// The signature manifest under `tag`, if there is one.
    pub(crate) async fn signatures(
        &self,
        tag: &str,
    ) -> Result<Option<(Descriptor, ImageManifest)>> {
        let (descriptor, document) = match &self.place {
            Place::Layout { layout } => {
                let Some(descriptor) = layout.index().await?.find(tag).cloned() else {
                    return Ok(None);
                };
                let document = layout.read_document(&descriptor).await?;
                (descriptor, document)
            }
            Place::Registry {
                client, repository, ..
            } => {
                let (descriptor, bytes) = match client.get_manifest(repository, tag).await {
                    Ok(found) => found,
                    Err(ocikit_client::Error::NotFound { .. }) => return Ok(None),
                    Err(source) => {
                        return Err(Error::Registry {
                            operation: Operation::ReadManifest,
                            location: format!("{} (its signatures, {tag})", self.location),
                            source,
                        }
                        .into());
                    }
                };
                let document = ocikit_layout::document::parse(&descriptor, bytes)?;
                (descriptor, document)
            }
        };
        match document {
            Document::Manifest { manifest, .. } => Ok(Some((descriptor, *manifest))),
            _ => Err(SigningError::SignatureManifest {
                location: self.location.clone(),
                tag: tag.to_string(),
                source: None,
            }),
        }
    }

    /// The signatures stored for this image, unverified, each layer's blob read (and checked
    /// against its descriptor); the layers that are no signature (an oversized or truncated
    /// blob, another media type, a missing annotation) with the reason. No signature tag is
    /// none of either.
    pub(crate) async fn candidates(
        &self,
    ) -> Result<(Vec<ocikit_sign::Signature>, Vec<ocikit_sign::Error>)> {
        let tag = signature_tag(&self.digest);
        let Some((_, manifest)) = self.signatures(&tag).await? else {
            return Ok((Vec::new(), Vec::new()));
        };
        let (mut signatures, mut refused) = (Vec::new(), Vec::new());
        for layer in manifest.layers() {
            match self
                .payload(layer)
                .await
                .and_then(|payload| signature_from_layer(layer, payload))
            {
                Ok(signature) => signatures.push(signature),
                Err(e) => refused.push(e),
            }
        }
        Ok((signatures, refused))
    }

    /// The payload of one signature layer, read and verified against its descriptor.
    async fn payload(&self, layer: &Descriptor) -> Result<Vec<u8>, ocikit_sign::Error> {
        check_layer(layer)?;
        let unreadable = |e: &dyn std::fmt::Display| ocikit_sign::Error::SignatureLayer {
            reason: format!("its blob cannot be read: {e}"),
        };
        match &self.place {
            Place::Layout { layout } => layout
                .read_blob(layer)
                .await
                .map(|b| b.to_vec())
                .map_err(|e| unreadable(&e)),
            Place::Registry {
                client,
                repository,
                scratch,
            } => {
                let digest = descriptor::digest_of(layer).map_err(|e| unreadable(&e))?;
                client
                    .fetch_blob(
                        repository,
                        &digest,
                        layer.size(),
                        scratch.store(),
                        &Default::default(),
                    )
                    .await
                    .map_err(|e| unreadable(&e))?;
                scratch
                    .read_blob(layer)
                    .await
                    .map(|b| b.to_vec())
                    .map_err(|e| unreadable(&e))
            }
        }
    }

    /// Stores `image` under `tag`, replacing `previous` (what was read before building it).
    /// `Ok(None)`: in a layout, another writer moved the tag in between.
    async fn store(
        &self,
        tag: &str,
        previous: Option<&Descriptor>,
        image: &SignatureImage,
    ) -> Result<Option<Descriptor>> {
        let layout = match &self.place {
            Place::Layout { layout } => layout,
            Place::Registry { scratch, .. } => scratch,
        };
        for (_, payload) in image.new_blobs() {
            layout.put_blob(SIMPLE_SIGNING_MEDIA_TYPE, payload).await?;
        }
        layout.put_blob(CONFIG_MEDIA_TYPE, image.config()).await?;
        let manifest = layout
            .put_blob(MANIFEST_MEDIA_TYPE, image.manifest_bytes())
            .await?;
        match &self.place {
            Place::Layout { layout } => {
                let mut moved = false;
                layout
                    .edit_index(|index| {
                        let current = index.find(tag).map(|d| d.digest().to_string());
                        if current != previous.map(|d| d.digest().to_string()) {
                            moved = true;
                            return Ok(false);
                        }
                        index.set_tag(tag, &manifest).map(|()| true)
                    })
                    .await?;
                Ok((!moved).then_some(manifest))
            }
            Place::Registry {
                client, repository, ..
            } => {
                client
                    .push(
                        layout,
                        &manifest,
                        repository,
                        Some(tag),
                        &PushOptions::new(),
                    )
                    .await
                    .map_err(|source| Error::Push {
                        digest: manifest.digest().to_string(),
                        location: format!("{} (its signatures, {tag})", self.location),
                        source,
                    })?;
                Ok(Some(manifest))
            }
        }
    }
}

/// A descriptor's digest as ocikit's [`Digest`].
fn digest_of(d: &Descriptor) -> Result<Digest> {
    let text = d.digest().to_string();
    text.parse().map_err(|source| {
        Error::InvalidDigest {
            digest: text.clone(),
            source,
        }
        .into()
    })
}

/// `ocikit sign`: signs the image `location` names (`docker://…` or `oci:PATH:TAG|@DIGEST`)
/// with `key` and stores the signature where cosign does (see the [module](self)).
pub async fn sign(
    location: &Location,
    key: &PrivateKey,
    options: &SignOptions,
) -> Result<SignReport> {
    let opened = Opened::open(location, &options.registry).await?;
    let reference = match options
        .docker_reference
        .clone()
        .or(opened.reference.clone())
    {
        Some(reference) => reference,
        None => {
            return Err(SigningError::NoDockerReference {
                location: opened.location,
                signing: true,
            });
        }
    };
    let signing_error = |source| SigningError::Sign {
        location: opened.location.clone(),
        source,
    };
    let signature =
        ocikit_sign::sign_image(key, &reference, opened.digest.clone()).map_err(signing_error)?;
    let public = key.public_key();
    let docker_reference = ocikit_sign::Payload::parse(signature.payload())
        .map_err(|e| signing_error(e.into()))?
        .docker_reference()
        .to_string();
    let tag = signature_tag(&opened.digest);
    for _ in 0..MAX_SIGN_ATTEMPTS {
        let existing = opened.signatures(&tag).await?;
        let layers: &[Descriptor] = existing.as_ref().map_or(&[], |(_, m)| m.layers());
        // The same payload signed by this key already: nothing to add.
        let mut already = false;
        for layer in layers {
            if descriptor::digest_of(layer).ok().as_ref() != Some(&signature.payload_digest()) {
                continue;
            }
            let Ok(payload) = opened.payload(layer).await else {
                continue;
            };
            let expected = Expected::new(opened.digest.clone()).with_image(reference.clone());
            if signature_from_layer(layer, payload)
                .and_then(|s| ocikit_sign::verify(&s, std::slice::from_ref(&public), &expected))
                .is_ok()
            {
                already = true;
                break;
            }
        }
        let image = SignatureImage::append(
            layers,
            if already {
                &[]
            } else {
                std::slice::from_ref(&signature)
            },
        )
        .map_err(|source| SigningError::SignatureManifest {
            location: opened.location.clone(),
            tag: tag.clone(),
            source: Some(source),
        })?;
        let signature_manifest = match (&existing, already) {
            (Some((current, _)), true) => Some(current.clone()),
            _ => {
                opened
                    .store(&tag, existing.as_ref().map(|(d, _)| d), &image)
                    .await?
            }
        };
        let Some(signature_manifest) = signature_manifest else {
            continue;
        };
        return Ok(SignReport {
            location: opened.location.clone(),
            manifest_digest: opened.digest.clone(),
            media_type: opened.image.media_type().to_string(),
            docker_reference,
            signature_tag: tag,
            signature_manifest: digest_of(&signature_manifest)?,
            signatures: image.manifest().layers().len(),
            added: !already,
            payload_digest: signature.payload_digest(),
            key: public.fingerprint(),
        });
    }
    Err(SigningError::Contended {
        location: opened.location,
        tag,
    })
}

/// `ocikit verify`: the signatures of the image `location` names that verify with one of
/// `keys` and vouch for this image (see the [module](self) for the checks and the errors).
pub async fn verify(
    location: &Location,
    keys: &[PublicKey],
    options: &VerifyOptions,
) -> Result<VerifyReport> {
    let opened = Opened::open(location, &options.registry).await?;
    let image = options
        .docker_reference
        .clone()
        .or(opened.reference.clone());
    let needs_image = !matches!(
        options.identity,
        SignedIdentity::ExactReference { .. } | SignedIdentity::ExactRepository { .. }
    );
    if image.is_none() && needs_image {
        return Err(SigningError::NoDockerReference {
            location: opened.location,
            signing: false,
        });
    }
    let mut expected = Expected::new(opened.digest.clone()).with_identity(options.identity.clone());
    if let Some(image) = image {
        expected = expected.with_image(image);
    }
    let tag = signature_tag(&opened.digest);
    let no_signatures = || SigningError::NoSignatures {
        location: opened.location.clone(),
        digest: opened.digest.clone(),
        tag: tag.clone(),
    };
    let Some((manifest_descriptor, manifest)) = opened.signatures(&tag).await? else {
        return Err(no_signatures());
    };
    if manifest.layers().is_empty() {
        return Err(no_signatures());
    }
    let mut verified = Vec::new();
    let mut refusals: Vec<(String, ocikit_sign::Error)> = Vec::new();
    for layer in manifest.layers() {
        let outcome = match opened.payload(layer).await {
            Ok(payload) => signature_from_layer(layer, payload)
                .and_then(|s| ocikit_sign::verify(&s, keys, &expected).map(|v| (s, v))),
            Err(e) => Err(e),
        };
        match outcome {
            Ok((signature, v)) => verified.push(VerifiedPayload {
                docker_reference: v.payload().docker_reference().to_string(),
                manifest_digest: v.payload().manifest_digest().clone(),
                creator: v.payload().creator().map(str::to_string),
                timestamp: v.payload().timestamp(),
                payload_digest: v.payload_digest().clone(),
                key: v.key().fingerprint(),
                payload: serde_json::from_slice(signature.payload())
                    .unwrap_or(serde_json::Value::Null),
            }),
            Err(e) => refusals.push((layer.digest().to_string(), e)),
        }
    }
    if verified.is_empty() {
        return Err(refused(opened.location, refusals));
    }
    Ok(VerifyReport {
        location: opened.location,
        manifest_digest: opened.digest,
        signature_tag: tag,
        signature_manifest: digest_of(&manifest_descriptor)?,
        verified,
        rejected: refusals
            .into_iter()
            .map(|(layer, e)| RejectedSignature {
                layer,
                reason: error_chain(&e),
            })
            .collect(),
    })
}

/// The error for signatures none of which passed: the most specific refusal (a signature
/// that verified with a key but claims another image or manifest says more than one that
/// did not verify at all).
fn refused(location: String, refusals: Vec<(String, ocikit_sign::Error)>) -> SigningError {
    let count = refusals.len();
    let rank = |e: &ocikit_sign::Error| match e {
        ocikit_sign::Error::IdentityMismatch { .. } => 0,
        ocikit_sign::Error::DigestMismatch { .. } => 1,
        ocikit_sign::Error::Payload(_) => 2,
        _ => 3,
    };
    let Some((_, first)) = refusals.into_iter().min_by_key(|(_, e)| rank(e)) else {
        return SigningError::NotSignedByKeys {
            location,
            count,
            source: ocikit_sign::Error::BadSignature,
        };
    };
    match first {
        ocikit_sign::Error::IdentityMismatch { ref signed, .. } => {
            SigningError::ReferenceMismatch {
                location,
                signed: signed.clone(),
                source: first,
            }
        }
        ocikit_sign::Error::DigestMismatch { expected, signed } => {
            SigningError::ForAnotherManifest {
                location,
                expected,
                signed,
            }
        }
        ocikit_sign::Error::Payload(_) => SigningError::InvalidPayload {
            location,
            source: first,
        },
        other => SigningError::NotSignedByKeys {
            location,
            count,
            source: other,
        },
    }
}

/// An error and its causes on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Reads cosign's encrypted private key file at `path` and opens it with `passphrase`
/// (scrypt runs on a blocking thread).
pub async fn load_private_key(path: &Path, passphrase: &[u8]) -> Result<PrivateKey> {
    let bytes = read_key_file(path).await?;
    let passphrase = Zeroizing::new(passphrase.to_vec());
    let owned = path.to_path_buf();
    tokio::task::spawn_blocking(move || PrivateKey::from_encrypted_pem(&bytes, &passphrase))
        .await
        .map_err(|e| SigningError::KeyFile {
            action: "read",
            path: owned.clone(),
            source: std::io::Error::other(e),
        })?
        .map_err(|source| SigningError::Key {
            path: path.to_path_buf(),
            source,
        })
}

/// Reads a public key file (a PKIX `PUBLIC KEY` PEM, as `cosign.pub`).
pub async fn load_public_key(path: &Path) -> Result<PublicKey> {
    let bytes = read_key_file(path).await?;
    PublicKey::from_pem(&bytes).map_err(|source| SigningError::Key {
        path: path.to_path_buf(),
        source,
    })
}

/// The key file's bytes, at most one past the largest key file (the parsers refuse more).
async fn read_key_file(path: &Path) -> Result<Vec<u8>> {
    use tokio::io::AsyncReadExt as _;
    let read_error = |source| SigningError::KeyFile {
        action: "read",
        path: path.to_path_buf(),
        source,
    };
    let file = tokio::fs::File::open(path).await.map_err(read_error)?;
    let mut bytes = Vec::new();
    file.take(ocikit_sign::key::MAX_KEY_FILE_LEN as u64 + 1)
        .read_to_end(&mut bytes)
        .await
        .map_err(read_error)?;
    Ok(bytes)
}

/// `ocikit key generate`: a new ECDSA P-256 key pair written into `dir` (made if missing) as
/// cosign writes it: [`PRIVATE_KEY_FILE`], encrypted with `passphrase` (scrypt and NaCl
/// secretbox, cosign 1's label and cost, which every reader accepts; mode 0600), and
/// [`PUBLIC_KEY_FILE`]. Refuses to overwrite either file ([`SigningError::KeyFileExists`]);
/// each file appears whole or not at all, and a failure leaves neither.
pub async fn generate_key_files(dir: &Path, passphrase: &[u8]) -> Result<GeneratedKeys> {
    let dir = dir.to_path_buf();
    let passphrase = Zeroizing::new(passphrase.to_vec());
    tokio::task::spawn_blocking(move || generate_blocking(&dir, &passphrase))
        .await
        .map_err(|e| SigningError::KeyFile {
            action: "write",
            path: PathBuf::from(PRIVATE_KEY_FILE),
            source: std::io::Error::other(e),
        })?
}

fn generate_blocking(dir: &Path, passphrase: &[u8]) -> Result<GeneratedKeys> {
    let private_path = dir.join(PRIVATE_KEY_FILE);
    let public_path = dir.join(PUBLIC_KEY_FILE);
    for path in [&private_path, &public_path] {
        if path.symlink_metadata().is_ok() {
            return Err(SigningError::KeyFileExists { path: path.clone() });
        }
    }
    let write_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SigningError::KeyFile {
            action: "write",
            path,
            source,
        }
    };
    std::fs::create_dir_all(dir).map_err(write_error(dir))?;
    let key = PrivateKey::generate().map_err(|source| SigningError::Key {
        path: private_path.clone(),
        source,
    })?;
    let private_pem = key
        .to_encrypted_pem(passphrase)
        .map_err(|source| SigningError::Key {
            path: private_path.clone(),
            source,
        })?;
    let public = key.public_key();
    write_new(&private_path, private_pem.as_bytes(), 0o600).map_err(write_error(&private_path))?;
    if let Err(e) = write_new(&public_path, public.to_pem().as_bytes(), 0o644) {
        // Neither file, rather than half a pair.
        let _ = std::fs::remove_file(&private_path);
        return Err(write_error(&public_path)(e));
    }
    Ok(GeneratedKeys {
        private_key: private_path,
        public_key: public_path,
        key: public.fingerprint(),
    })
}

/// Writes `bytes` to a temporary file beside `path`, syncs it, and links it into place only
/// if nothing is there (never replacing a file, even one made meanwhile).
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut file = tempfile::Builder::new()
        .prefix(".ocikit-key-")
        .tempfile_in(dir)?;
    file.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))?;
    file.write_all(bytes)?;
    file.as_file().sync_all()?;
    file.persist_noclobber(path).map_err(|e| e.error)?;
    if let Ok(handle) = std::fs::File::open(dir) {
        let _ = handle.sync_all();
    }
    Ok(())
}
