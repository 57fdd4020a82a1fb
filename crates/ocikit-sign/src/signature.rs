//! Signing and verifying simple-signing payloads, and how cosign stores them.
//!
//! cosign stores the signatures of the image with manifest `sha256:<hex>` in the same
//! repository under the tag [`signature_tag`] (`sha256-<hex>.sig`): an image manifest with
//! one layer per signature. Each layer's blob is the payload (media type
//! [`SIMPLE_SIGNING_MEDIA_TYPE`]) and its descriptor's annotation [`SIGNATURE_ANNOTATION`]
//! holds the base64 of the DER signature over those bytes. Storing and fetching that manifest
//! is the transport's work; this module makes and checks the layers' content.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ocikit_digest::{Digest, Reference};

use crate::identity::SignedIdentity;
use crate::key::{MAX_DER_SIGNATURE_LEN, PrivateKey, PublicKey};
use crate::payload::{MAX_PAYLOAD_LEN, Payload};
use crate::{Error, Result};

/// The media type of a cosign signature layer (its blob is the payload).
pub const SIMPLE_SIGNING_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The layer annotation holding the base64 DER signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// The layer annotation of a keyless signature's Fulcio certificate (not verified here).
pub const CERTIFICATE_ANNOTATION: &str = "dev.sigstore.cosign/certificate";
/// The layer annotation of a keyless signature's certificate chain (not verified here).
pub const CHAIN_ANNOTATION: &str = "dev.sigstore.cosign/chain";
/// The layer annotation of a signature's Rekor bundle (not verified here).
pub const BUNDLE_ANNOTATION: &str = "dev.sigstore.cosign/bundle";
/// The suffix of cosign's signature tags.
pub const SIGNATURE_TAG_SUFFIX: &str = ".sig";
/// The longest signature annotation accepted: base64 of the longest P-256 DER signature,
/// with room for other key types' signatures to be refused by length, not by a parse.
pub const MAX_SIGNATURE_ANNOTATION_LEN: usize = 1024;

/// The tag cosign stores the signatures of the manifest `digest` under:
/// `<algorithm>-<encoded>.sig` (`sha256-4f1c….sig`).
pub fn signature_tag(digest: &Digest) -> String {
    format!(
        "{}-{}{SIGNATURE_TAG_SUFFIX}",
        digest.algorithm().as_str(),
        digest.encoded()
    )
}

/// One candidate signature: a payload and the signature over it, with the layer's other
/// annotations (kept so that keyless certificates or bundles can be verified later).
/// Nothing in it is trusted until [`verify`] says so.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signature {
    payload: Vec<u8>,
    signature: String,
    annotations: BTreeMap<String, String>,
}

impl Signature {
    /// A signature from the payload bytes and the base64 signature.
    pub fn new(payload: Vec<u8>, signature_base64: String) -> Signature {
        Signature {
            payload,
            signature: signature_base64,
            annotations: BTreeMap::new(),
        }
    }

    /// The signature a cosign signature layer holds: its media type must be
    /// [`SIMPLE_SIGNING_MEDIA_TYPE`], its payload (the blob, already read and verified against
    /// the layer's digest by the caller) at most [`MAX_PAYLOAD_LEN`] bytes, and its
    /// annotations must hold [`SIGNATURE_ANNOTATION`] of at most
    /// [`MAX_SIGNATURE_ANNOTATION_LEN`] bytes.
    pub fn from_layer(
        media_type: &str,
        payload: Vec<u8>,
        annotations: &BTreeMap<String, String>,
    ) -> Result<Signature> {
        if media_type != SIMPLE_SIGNING_MEDIA_TYPE {
            return Err(Error::SignatureLayer {
                reason: format!("media type `{media_type}`, expected {SIMPLE_SIGNING_MEDIA_TYPE}"),
            });
        }
        if payload.len() > MAX_PAYLOAD_LEN {
            return Err(Error::SignatureLayer {
                reason: format!("payload is larger than {MAX_PAYLOAD_LEN} bytes"),
            });
        }
        let signature =
            annotations
                .get(SIGNATURE_ANNOTATION)
                .ok_or_else(|| Error::SignatureLayer {
                    reason: format!("no `{SIGNATURE_ANNOTATION}` annotation"),
                })?;
        if signature.len() > MAX_SIGNATURE_ANNOTATION_LEN {
            return Err(Error::SignatureLayer {
                reason: format!(
                    "`{SIGNATURE_ANNOTATION}` is longer than {MAX_SIGNATURE_ANNOTATION_LEN} bytes"
                ),
            });
        }
        let mut others = annotations.clone();
        others.remove(SIGNATURE_ANNOTATION);
        Ok(Signature {
            payload,
            signature: signature.clone(),
            annotations: others,
        })
    }

    /// The payload bytes (the layer's blob).
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// The base64 DER signature (the [`SIGNATURE_ANNOTATION`] value).
    pub fn signature_base64(&self) -> &str {
        &self.signature
    }

    /// The layer's other annotations ([`CERTIFICATE_ANNOTATION`], [`BUNDLE_ANNOTATION`]...).
    pub fn other_annotations(&self) -> &BTreeMap<String, String> {
        &self.annotations
    }

    /// The annotations of the layer descriptor that stores this signature: the signature and
    /// the others it came with.
    pub fn layer_annotations(&self) -> BTreeMap<String, String> {
        let mut annotations = self.annotations.clone();
        annotations.insert(SIGNATURE_ANNOTATION.to_string(), self.signature.clone());
        annotations
    }

    /// The digest of the layer blob (the payload).
    pub fn payload_digest(&self) -> Digest {
        Digest::sha256(&self.payload)
    }

    /// The decoded DER signature.
    fn der(&self) -> Result<Vec<u8>> {
        if self.signature.len() > MAX_SIGNATURE_ANNOTATION_LEN {
            return Err(Error::SignatureEncoding);
        }
        let der = STANDARD
            .decode(self.signature.as_bytes())
            .map_err(|_| Error::SignatureEncoding)?;
        if der.is_empty() || der.len() > MAX_DER_SIGNATURE_LEN {
            return Err(Error::SignatureEncoding);
        }
        Ok(der)
    }
}

/// Signs `payload` with `key`: the payload's JSON bytes and the base64 of the DER ECDSA
/// P-256 SHA-256 signature over them.
pub fn sign(key: &PrivateKey, payload: &Payload) -> Result<Signature> {
    let bytes = payload.to_json();
    let der = key.sign(&bytes)?;
    Ok(Signature::new(bytes, STANDARD.encode(der)))
}

/// Signs the image with manifest `manifest_digest` known as `reference`
/// ([`Payload::new`]: the normalised reference with its tag; no timestamp).
pub fn sign_image(
    key: &PrivateKey,
    reference: &Reference,
    manifest_digest: Digest,
) -> Result<Signature> {
    sign(key, &Payload::new(reference, manifest_digest))
}

/// What a signature must vouch for to be accepted by [`verify`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expected {
    manifest_digest: Digest,
    image: Option<Reference>,
    identity: SignedIdentity,
}

impl Expected {
    /// The manifest whose digest the payload must name, with the default identity rule
    /// (`matchRepoDigestOrExact`) and no image reference (set one with
    /// [`Expected::with_image`], or choose an `exact…` rule).
    pub fn new(manifest_digest: Digest) -> Expected {
        Expected {
            manifest_digest,
            image: None,
            identity: SignedIdentity::default(),
        }
    }

    /// The reference the image is known by (what the `match…` rules compare with).
    pub fn with_image(mut self, image: Reference) -> Expected {
        self.image = Some(image);
        self
    }

    /// The identity rule.
    pub fn with_identity(mut self, identity: SignedIdentity) -> Expected {
        self.identity = identity;
        self
    }

    /// The manifest digest expected.
    pub fn manifest_digest(&self) -> &Digest {
        &self.manifest_digest
    }

    /// The image reference, if any.
    pub fn image(&self) -> Option<&Reference> {
        self.image.as_ref()
    }

    /// The identity rule.
    pub fn identity(&self) -> &SignedIdentity {
        &self.identity
    }
}

/// A signature that verified: by which key, and the payload it vouches for.
#[derive(Clone, Debug, PartialEq)]
pub struct VerifiedSignature {
    payload: Payload,
    key: PublicKey,
    payload_digest: Digest,
}

impl VerifiedSignature {
    /// The verified payload.
    pub fn payload(&self) -> &Payload {
        &self.payload
    }

    /// The key that made the signature.
    pub fn key(&self) -> &PublicKey {
        &self.key
    }

    /// The digest of the payload bytes (the signature layer's digest).
    pub fn payload_digest(&self) -> &Digest {
        &self.payload_digest
    }
}

/// Verifies `signature` with any of `keys`, then checks what its payload says against
/// `expected`, in containers/image's order:
///
/// 1. the signature decodes ([`Error::SignatureEncoding`]) and verifies over the payload
///    bytes with one of the keys ([`Error::BadSignature`]);
/// 2. the payload parses strictly ([`Error::Payload`]);
/// 3. it names the expected manifest digest ([`Error::DigestMismatch`]);
/// 4. its docker reference satisfies the identity rule ([`Error::IdentityMismatch`]).
///
/// The payload is parsed only once the signature verified, so unsigned bytes are never
/// interpreted.
pub fn verify(
    signature: &Signature,
    keys: &[PublicKey],
    expected: &Expected,
) -> Result<VerifiedSignature> {
    let der = signature.der()?;
    let key = keys
        .iter()
        .find(|key| key.verify(&signature.payload, &der).is_ok())
        .ok_or(Error::BadSignature)?;
    let payload = Payload::parse(&signature.payload)?;
    if payload.manifest_digest() != &expected.manifest_digest {
        return Err(Error::DigestMismatch {
            expected: expected.manifest_digest.clone(),
            signed: payload.manifest_digest().clone(),
        });
    }
    expected
        .identity
        .check(expected.image.as_ref(), payload.docker_reference())?;
    Ok(VerifiedSignature {
        payload_digest: signature.payload_digest(),
        payload,
        key: key.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference() -> Reference {
        Reference::parse("localhost:5000/team/app:v1").unwrap()
    }

    #[test]
    fn the_signature_tag_is_cosign_s() {
        let digest: Digest =
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
                .parse()
                .unwrap();
        assert_eq!(
            signature_tag(&digest),
            "sha256-e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855.sig"
        );
    }

    #[test]
    fn a_signed_image_verifies_and_reports_its_payload() {
        let key = PrivateKey::generate().unwrap();
        let digest = Digest::sha256(b"manifest");
        let signature = sign_image(&key, &reference(), digest.clone()).unwrap();
        let expected = Expected::new(digest.clone()).with_image(reference());
        let verified = verify(&signature, &[key.public_key()], &expected).unwrap();
        assert_eq!(verified.payload().manifest_digest(), &digest);
        assert_eq!(
            verified.payload().docker_reference(),
            "localhost:5000/team/app:v1"
        );
        assert_eq!(verified.key(), &key.public_key());
        // Through the layer form and back.
        let layer = Signature::from_layer(
            SIMPLE_SIGNING_MEDIA_TYPE,
            signature.payload().to_vec(),
            &signature.layer_annotations(),
        )
        .unwrap();
        assert_eq!(layer, signature);
    }

    #[test]
    fn each_failure_has_its_own_error() {
        let key = PrivateKey::generate().unwrap();
        let other = PrivateKey::generate().unwrap();
        let digest = Digest::sha256(b"manifest");
        let expected = Expected::new(digest.clone()).with_image(reference());
        let good = sign_image(&key, &reference(), digest.clone()).unwrap();

        // Another key.
        assert!(matches!(
            verify(&good, &[other.public_key()], &expected),
            Err(Error::BadSignature)
        ));
        // Any of several keys.
        verify(&good, &[other.public_key(), key.public_key()], &expected).unwrap();
        // A changed payload.
        let mut changed = good.payload().to_vec();
        let at = changed.len() - 3;
        changed[at] ^= 1;
        let tampered = Signature::new(changed, good.signature_base64().to_string());
        assert!(matches!(
            verify(&tampered, &[key.public_key()], &expected),
            Err(Error::BadSignature)
        ));
        // Not base64, or too long to be a P-256 signature.
        for bad in [
            "%%%".to_string(),
            STANDARD.encode([0x30; 100]),
            String::new(),
        ] {
            let s = Signature::new(good.payload().to_vec(), bad);
            assert!(matches!(
                verify(&s, &[key.public_key()], &expected),
                Err(Error::SignatureEncoding)
            ));
        }
        // Replay: a valid signature over another manifest.
        let replayed = sign_image(&key, &reference(), Digest::sha256(b"other")).unwrap();
        assert!(matches!(
            verify(&replayed, &[key.public_key()], &expected),
            Err(Error::DigestMismatch { .. })
        ));
        // A payload for another reference.
        let elsewhere = Reference::parse("localhost:5000/team/other:v1").unwrap();
        let moved = sign_image(&key, &elsewhere, digest.clone()).unwrap();
        assert!(matches!(
            verify(&moved, &[key.public_key()], &expected),
            Err(Error::IdentityMismatch {
                rule: "matchRepoDigestOrExact",
                ..
            })
        ));
        // A validly signed payload that is not a payload.
        let junk = b"{}".to_vec();
        let signed_junk = Signature::new(junk.clone(), STANDARD.encode(key.sign(&junk).unwrap()));
        assert!(matches!(
            verify(&signed_junk, &[key.public_key()], &expected),
            Err(Error::Payload(_))
        ));
        // No keys at all.
        assert!(matches!(
            verify(&good, &[], &expected),
            Err(Error::BadSignature)
        ));
    }

    #[test]
    fn bad_layers_are_refused() {
        let mut annotations = BTreeMap::new();
        assert!(matches!(
            Signature::from_layer(SIMPLE_SIGNING_MEDIA_TYPE, b"{}".to_vec(), &annotations),
            Err(Error::SignatureLayer { .. })
        ));
        annotations.insert(SIGNATURE_ANNOTATION.to_string(), "AAAA".to_string());
        assert!(matches!(
            Signature::from_layer("application/json", b"{}".to_vec(), &annotations),
            Err(Error::SignatureLayer { .. })
        ));
        assert!(matches!(
            Signature::from_layer(
                SIMPLE_SIGNING_MEDIA_TYPE,
                vec![b' '; MAX_PAYLOAD_LEN + 1],
                &annotations
            ),
            Err(Error::SignatureLayer { .. })
        ));
        annotations.insert(
            SIGNATURE_ANNOTATION.to_string(),
            "A".repeat(MAX_SIGNATURE_ANNOTATION_LEN + 1),
        );
        assert!(matches!(
            Signature::from_layer(SIMPLE_SIGNING_MEDIA_TYPE, b"{}".to_vec(), &annotations),
            Err(Error::SignatureLayer { .. })
        ));
    }
}
