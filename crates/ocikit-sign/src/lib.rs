//! cosign-compatible image signatures: keys, payloads, signing, verification and trust
//! policy, with no network and no storage.
//!
//! ocikit-sign sits beside `ocikit-digest` at the bottom of the stack (it uses only digests
//! and references); the transport layer builds `key generate`, `sign`, `verify` and policy
//! enforcement on it, storing and fetching signatures where cosign keeps them.
//!
//! - [`key`]: ECDSA P-256 keys ([`PrivateKey`], [`PublicKey`]) in cosign's files: the
//!   scrypt + NaCl secretbox encrypted private key PEM (`ENCRYPTED SIGSTORE PRIVATE KEY` or
//!   `ENCRYPTED COSIGN PRIVATE KEY`) and the PKIX `PUBLIC KEY` PEM.
//! - [`payload`]: the simple-signing [`Payload`] (docker reference and manifest digest), written
//!   as containers/image writes it and parsed as strictly.
//! - [`signature`]: [`sign`]/[`sign_image`] and [`verify`], the cosign layer format
//!   ([`SIMPLE_SIGNING_MEDIA_TYPE`], [`SIGNATURE_ANNOTATION`], [`signature_tag`]).
//! - [`image`]: the signature image cosign stores under [`signature_tag`] (one layer per
//!   signature), built to append and read back layer by layer.
//! - [`identity`]: the `signedIdentity` rules ([`SignedIdentity`]).
//! - [`policy`]: containers' `policy.json` subset ([`Policy`]) and its evaluation
//!   ([`Decision`]).
//!
//! Signing an image and verifying it:
//!
//! ```
//! use ocikit_digest::{Digest, Reference};
//! use ocikit_sign::{Expected, PrivateKey, PublicKey, Signature, sign_image, verify};
//!
//! // `ocikit key generate`: an encrypted private key file and a public key file.
//! let key = PrivateKey::generate()?;
//! let private_pem = key.to_encrypted_pem(b"passphrase")?;
//! let public_pem = key.public_key().to_pem();
//!
//! // `ocikit sign`: the payload for a manifest digest and reference, and its signature.
//! let key = PrivateKey::from_encrypted_pem(private_pem.as_bytes(), b"passphrase")?;
//! let image = Reference::parse("localhost:5000/team/app:v1")?;
//! let manifest_digest = Digest::sha256(b"the manifest bytes");
//! let signature = sign_image(&key, &image, manifest_digest.clone())?;
//! // The layer blob is `signature.payload()`, its annotations `signature.layer_annotations()`.
//!
//! // `ocikit verify`: the layer read back, checked against the public key.
//! let layer = Signature::from_layer(
//!     ocikit_sign::SIMPLE_SIGNING_MEDIA_TYPE,
//!     signature.payload().to_vec(),
//!     &signature.layer_annotations(),
//! )?;
//! let public = PublicKey::from_pem(public_pem.as_bytes())?;
//! let expected = Expected::new(manifest_digest).with_image(image);
//! let verified = verify(&layer, &[public], &expected)?;
//! assert_eq!(verified.payload().docker_reference(), "localhost:5000/team/app:v1");
//!
//! // A signature over another manifest (a replay) is refused.
//! let other = Expected::new(Digest::sha256(b"another manifest"));
//! assert!(matches!(
//!     verify(&layer, &[key.public_key()], &other),
//!     Err(ocikit_sign::Error::DigestMismatch { .. })
//! ));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # How the transport layer uses it
//!
//! - `key generate --out DIR`: [`PrivateKey::generate`], then
//!   [`PrivateKey::to_encrypted_pem`] and [`PublicKey::to_pem`] written (atomically) to
//!   [`key::PRIVATE_KEY_FILE`] and [`key::PUBLIC_KEY_FILE`]; the passphrase from
//!   [`key::PASSPHRASE_ENV`], a file or a prompt.
//! - `sign --key KEY IMAGE`: [`PrivateKey::from_encrypted_pem`]; the image's manifest digest
//!   and reference; [`sign_image`]; the current manifest under [`signature_tag`], if any,
//!   parsed with `ocikit_digest::document`; [`image::SignatureImage::append`] with its layers;
//!   upload [`image::SignatureImage::new_blobs`], the config, then the manifest under the tag.
//! - `verify --key PUB IMAGE` and policy enforcement: the manifest under [`signature_tag`];
//!   for each layer [`image::check_layer`] (before fetching), the blob read verified, then
//!   [`image::signature_from_layer`]; then [`verify`] with [`Expected`] for one key, or
//!   [`Policy::evaluate`] with an [`ImageIdentity`] for a `policy.json` (no signature
//!   manifest means no candidates: [`policy::Rejection::NoSignatures`] where one is required).
//!   A refused image is refused before anything of it is written.
//!
//! Keyless signatures (Fulcio certificates, Rekor bundles) need the network and are not
//! verified here; [`Signature`] keeps a layer's other annotations so that an offline bundle
//! verifier can be added beside [`verify`].
//!
//! # Features
//! - `__fuzz`: the fuzz targets' entry points (not a public API).

#![cfg_attr(docsrs, feature(doc_cfg))]

mod error;
#[cfg(feature = "__fuzz")]
#[doc(hidden)]
pub mod fuzz;
pub mod identity;
pub mod image;
pub mod key;
pub mod payload;
pub mod policy;
pub mod signature;

pub use error::{Error, Result};
pub use identity::SignedIdentity;
pub use key::{EncryptOptions, PrivateKey, PrivateKeyLabel, PublicKey, ScryptCost};
pub use payload::Payload;
pub use policy::{Decision, ImageIdentity, Policy};
pub use signature::{
    Expected, SIGNATURE_ANNOTATION, SIMPLE_SIGNING_MEDIA_TYPE, Signature, VerifiedSignature, sign,
    sign_image, signature_tag, verify,
};

#[cfg(test)]
mod tests {
    /// Every public type crosses threads (the transport layer keeps keys, policies and
    /// decisions in async tasks).
    #[test]
    fn public_types_are_send_and_sync() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<crate::PrivateKey>();
        send_sync::<crate::PublicKey>();
        send_sync::<crate::Payload>();
        send_sync::<crate::Signature>();
        send_sync::<crate::VerifiedSignature>();
        send_sync::<crate::Expected>();
        send_sync::<crate::SignedIdentity>();
        send_sync::<crate::Policy>();
        send_sync::<crate::Decision>();
        send_sync::<crate::ImageIdentity>();
        send_sync::<crate::image::SignatureImage>();
        send_sync::<crate::Error>();
    }
}
