//! The image cosign stores signatures in, as documents: what the transport layer writes under
//! [`signature_tag`](crate::signature_tag) and reads back. Fetching and storing blobs is the
//! caller's; this module builds and reads the JSON.
//!
//! The signature image is an OCI image manifest whose layers are the signatures: each
//! layer's blob is a payload ([`SIMPLE_SIGNING_MEDIA_TYPE`]), its descriptor carries the
//! signature annotation. Its config is the empty image config cosign writes, one `diff_ids`
//! entry and one history entry per layer.
//!
//! Signing an image that has signatures already appends: [`SignatureImage::append`] keeps
//! the existing layers as they are (their blobs are in the repository already) and adds the
//! new ones, skipping a signature already present.
//!
//! ```
//! use ocikit_digest::{Digest, Reference};
//! use ocikit_sign::image::{SignatureImage, signature_from_layer};
//! use ocikit_sign::{PrivateKey, sign_image};
//!
//! let key = PrivateKey::generate()?;
//! let image = Reference::parse("localhost:5000/app:v1")?;
//! let signature = sign_image(&key, &image, Digest::sha256(b"manifest"))?;
//!
//! let sig_image = SignatureImage::append(&[], std::slice::from_ref(&signature))?;
//! // Upload sig_image.new_blobs() and the config, then the manifest under the signature tag.
//! assert_eq!(sig_image.new_blobs().len(), 1);
//! let layer = &sig_image.manifest().layers()[0];
//! let (_, payload) = &sig_image.new_blobs()[0];
//! assert_eq!(signature_from_layer(layer, payload.clone())?, signature);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeMap;

use ocikit_digest::document::Document;
use ocikit_digest::oci_spec::image::{Descriptor, ImageManifest};
use ocikit_digest::{Digest, descriptor};
use serde_json::{Value, json};

use crate::payload::MAX_PAYLOAD_LEN;
use crate::signature::{SIGNATURE_ANNOTATION, SIMPLE_SIGNING_MEDIA_TYPE, Signature};
use crate::{Error, Result};

/// The media type of the signature image's manifest.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// The media type of the signature image's config.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
/// The most signatures one signature image holds here; past it, signing is refused rather
/// than writing a manifest other tools may not read.
pub const MAX_SIGNATURES: usize = 1000;

/// The signature from one layer of a signature image and its blob (which the caller read
/// and verified against the descriptor's digest and size). Refused
/// ([`Error::SignatureLayer`]) when the descriptor is not a simple-signing layer, declares
/// more than [`MAX_PAYLOAD_LEN`] bytes, or its size differs from the blob's; otherwise as
/// [`Signature::from_layer`].
pub fn signature_from_layer(layer: &Descriptor, blob: Vec<u8>) -> Result<Signature> {
    check_layer(layer)?;
    if layer.size() != blob.len() as u64 {
        return Err(Error::SignatureLayer {
            reason: format!(
                "blob is {} bytes, the layer declares {}",
                blob.len(),
                layer.size()
            ),
        });
    }
    let annotations: BTreeMap<String, String> = layer
        .annotations()
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Signature::from_layer(layer.media_type().as_ref(), blob, &annotations)
}

/// Checks a layer descriptor before its blob is fetched: the media type, and a declared size
/// within [`MAX_PAYLOAD_LEN`] (so an oversized layer is refused without reading it).
pub fn check_layer(layer: &Descriptor) -> Result<()> {
    let media_type = layer.media_type().to_string();
    if media_type != SIMPLE_SIGNING_MEDIA_TYPE {
        return Err(Error::SignatureLayer {
            reason: format!("media type `{media_type}`, expected {SIMPLE_SIGNING_MEDIA_TYPE}"),
        });
    }
    if layer.size() > MAX_PAYLOAD_LEN as u64 {
        return Err(Error::SignatureLayer {
            reason: format!(
                "layer declares {} bytes, more than {MAX_PAYLOAD_LEN}",
                layer.size()
            ),
        });
    }
    Ok(())
}

/// The signature image to store: its manifest, its config, and the payload blobs of the
/// signatures it adds.
#[derive(Clone, Debug)]
pub struct SignatureImage {
    manifest: ImageManifest,
    manifest_bytes: Vec<u8>,
    config: Vec<u8>,
    new_blobs: Vec<(Digest, Vec<u8>)>,
}

impl SignatureImage {
    /// The signature image holding the layers of `existing` (the current signature
    /// manifest's layers, kept byte for byte; empty when there is none) and then each of
    /// `signatures` not already there (the same payload digest and signature).
    pub fn append(existing: &[Descriptor], signatures: &[Signature]) -> Result<SignatureImage> {
        let mut layers: Vec<Value> = Vec::new();
        let mut present: Vec<(Digest, String)> = Vec::new();
        for layer in existing {
            let digest = descriptor::digest_of(layer).map_err(|e| Error::SignatureLayer {
                reason: format!("existing layer: {e}"),
            })?;
            let signature = layer
                .annotations()
                .as_ref()
                .and_then(|a| a.get(SIGNATURE_ANNOTATION))
                .cloned()
                .unwrap_or_default();
            present.push((digest, signature));
            layers.push(
                serde_json::to_value(layer).map_err(|e| Error::SignatureLayer {
                    reason: format!("existing layer: {e}"),
                })?,
            );
        }
        let mut new_blobs = Vec::new();
        for signature in signatures {
            let digest = signature.payload_digest();
            let key = (digest.clone(), signature.signature_base64().to_string());
            if present.contains(&key) {
                continue;
            }
            present.push(key);
            layers.push(json!({
                "mediaType": SIMPLE_SIGNING_MEDIA_TYPE,
                "size": signature.payload().len(),
                "digest": digest.to_string(),
                "annotations": signature.layer_annotations(),
            }));
            new_blobs.push((digest, signature.payload().to_vec()));
        }
        if layers.len() > MAX_SIGNATURES {
            return Err(Error::SignatureLayer {
                reason: format!("more than {MAX_SIGNATURES} signatures in one image"),
            });
        }
        let diff_ids: Vec<String> = present.iter().map(|(d, _)| d.to_string()).collect();
        let epoch = "0001-01-01T00:00:00Z";
        let history: Vec<Value> = diff_ids.iter().map(|_| json!({"created": epoch})).collect();
        let config = serde_json::to_vec(&json!({
            "architecture": "",
            "config": {},
            "created": epoch,
            "history": history,
            "os": "",
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }))
        .map_err(|e| Error::SignatureLayer {
            reason: e.to_string(),
        })?;
        let manifest_value = json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "config": {
                "mediaType": CONFIG_MEDIA_TYPE,
                "size": config.len(),
                "digest": Digest::sha256(&config).to_string(),
            },
            "layers": layers,
        });
        let manifest_bytes =
            serde_json::to_vec(&manifest_value).map_err(|e| Error::SignatureLayer {
                reason: e.to_string(),
            })?;
        // The one manifest parser of ocikit must read what is written here.
        let manifest = match Document::parse_as(MANIFEST_MEDIA_TYPE, manifest_bytes.clone().into())
        {
            Ok(Document::Manifest { manifest, .. }) => *manifest,
            Ok(_) => {
                return Err(Error::SignatureLayer {
                    reason: "the signature manifest did not parse as a manifest".into(),
                });
            }
            Err(e) => {
                return Err(Error::SignatureLayer {
                    reason: format!("the signature manifest is invalid: {e}"),
                });
            }
        };
        Ok(SignatureImage {
            manifest,
            manifest_bytes,
            config,
            new_blobs,
        })
    }

    /// The manifest, parsed.
    pub fn manifest(&self) -> &ImageManifest {
        &self.manifest
    }

    /// The manifest's bytes (media type [`MANIFEST_MEDIA_TYPE`]).
    pub fn manifest_bytes(&self) -> &[u8] {
        &self.manifest_bytes
    }

    /// The manifest's digest.
    pub fn manifest_digest(&self) -> Digest {
        Digest::sha256(&self.manifest_bytes)
    }

    /// The config blob's bytes (media type [`CONFIG_MEDIA_TYPE`]).
    pub fn config(&self) -> &[u8] {
        &self.config
    }

    /// The payload blobs of the signatures this image adds, by digest: to upload before the
    /// manifest.
    pub fn new_blobs(&self) -> &[(Digest, Vec<u8>)] {
        &self.new_blobs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{PrivateKey, sign_image};
    use ocikit_digest::Reference;

    fn signature(key: &PrivateKey, manifest: &[u8]) -> Signature {
        let reference = Reference::parse("localhost:5000/app:v1").unwrap();
        sign_image(key, &reference, Digest::sha256(manifest)).unwrap()
    }

    #[test]
    fn a_new_signature_image_holds_one_layer_per_signature() {
        let key = PrivateKey::generate().unwrap();
        let one = signature(&key, b"m");
        let two = signature(&key, b"m");
        let image = SignatureImage::append(&[], &[one.clone(), two.clone()]).unwrap();
        let layers = image.manifest().layers();
        assert_eq!(layers.len(), 2);
        assert_eq!(image.new_blobs().len(), 2);
        for (layer, (digest, blob)) in layers.iter().zip(image.new_blobs()) {
            assert_eq!(&descriptor::digest_of(layer).unwrap(), digest);
            assert_eq!(layer.size(), blob.len() as u64);
        }
        assert_eq!(
            signature_from_layer(&layers[0], one.payload().to_vec()).unwrap(),
            one
        );
        // The config names each layer, as cosign's does.
        let config: Value = serde_json::from_slice(image.config()).unwrap();
        assert_eq!(
            config["rootfs"]["diff_ids"][1],
            one.payload_digest().to_string()
        );
        assert_eq!(config["history"].as_array().unwrap().len(), 2);
        assert_eq!(
            descriptor::digest_of(image.manifest().config()).unwrap(),
            Digest::sha256(image.config())
        );
    }

    #[test]
    fn appending_keeps_the_existing_layers_and_skips_a_signature_already_there() {
        let key = PrivateKey::generate().unwrap();
        let first = signature(&key, b"m");
        let base = SignatureImage::append(&[], std::slice::from_ref(&first)).unwrap();
        let second = signature(&PrivateKey::generate().unwrap(), b"m");
        let appended =
            SignatureImage::append(base.manifest().layers(), &[first.clone(), second.clone()])
                .unwrap();
        assert_eq!(appended.manifest().layers().len(), 2);
        assert_eq!(
            &appended.manifest().layers()[0],
            &base.manifest().layers()[0]
        );
        // Only the new payload is to be uploaded.
        assert_eq!(
            appended.new_blobs(),
            &[(second.payload_digest(), second.payload().to_vec())]
        );
        // Nothing new: the same manifest.
        let again = SignatureImage::append(appended.manifest().layers(), &[first, second]).unwrap();
        assert_eq!(again.manifest_bytes(), appended.manifest_bytes());
        assert!(again.new_blobs().is_empty());
    }

    #[test]
    fn layers_that_are_not_signatures_are_refused_before_and_after_fetching() {
        let key = PrivateKey::generate().unwrap();
        let one = signature(&key, b"m");
        let image = SignatureImage::append(&[], std::slice::from_ref(&one)).unwrap();
        let layer = image.manifest().layers()[0].clone();
        // Truncated blob.
        let cut = one.payload()[..10].to_vec();
        assert!(matches!(
            signature_from_layer(&layer, cut),
            Err(Error::SignatureLayer { .. })
        ));
        // Oversized: refused from the descriptor alone.
        let mut big = layer.clone();
        big.set_size(MAX_PAYLOAD_LEN as u64 + 1);
        assert!(matches!(
            check_layer(&big),
            Err(Error::SignatureLayer { .. })
        ));
        // Another media type.
        let mut other = layer.clone();
        other.set_media_type("application/vnd.oci.image.layer.v1.tar".into());
        assert!(matches!(
            check_layer(&other),
            Err(Error::SignatureLayer { .. })
        ));
        // No signature annotation.
        let mut bare = layer;
        bare.set_annotations(None);
        assert!(matches!(
            signature_from_layer(&bare, one.payload().to_vec()),
            Err(Error::SignatureLayer { .. })
        ));
    }
}
