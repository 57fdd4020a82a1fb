//! Fuzz entry points with their oracles: round trips and the meaning of a decision, not
//! only the absence of panics. Compiled only with the `__fuzz` feature.
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::Path;

use ocikit_digest::{Digest, Reference};

use crate::payload::Payload;
use crate::policy::{Decision, ImageIdentity, Policy, Requirement};
use crate::{Error, PrivateKey, PublicKey};

/// Key files: a public key that parses writes back to a PEM that parses to the same key
/// with the same DER; an encrypted private key file never panics, whatever it holds.
pub fn key_parse(data: &[u8]) {
    if let Ok(key) = PublicKey::from_pem(data) {
        let again = PublicKey::from_pem(key.to_pem().as_bytes()).unwrap();
        assert_eq!(again, key);
        assert_eq!(PublicKey::from_spki_der(&key.to_spki_der()).unwrap(), key);
    }
    if let Ok(key) = PrivateKey::from_encrypted_pem(data, b"fuzz") {
        // Only a file sealed under "fuzz" opens; its key must be whole.
        let signature = key.sign(b"m").unwrap();
        key.public_key().verify(b"m", &signature).unwrap();
    }
}

/// Payloads: parse → write → parse is the identity, and writing is stable.
pub fn payload_parse(data: &[u8]) {
    if let Ok(payload) = Payload::parse(data) {
        let written = payload.to_json();
        let again = Payload::parse(&written).unwrap();
        assert_eq!(again, payload);
        assert_eq!(again.to_json(), written);
    }
}

/// Policies: whatever parses decides without panicking, an image with no signatures is
/// accepted exactly when its scope holds neither `reject` nor `sigstoreSigned`, and where
/// `requires_signatures` says no, a candidate signature changes nothing.
pub fn policy_parse(data: &[u8]) {
    let Ok(policy) = Policy::parse(data, |path: &Path| {
        Err(Error::Io {
            path: path.to_path_buf(),
            source: std::io::ErrorKind::NotFound.into(),
        })
    }) else {
        return;
    };
    let digest = Digest::sha256(data);
    let images = [
        ImageIdentity::Docker(Reference::parse("quay.io/team/app:v1").unwrap()),
        ImageIdentity::Docker(Reference::parse("docker.io/library/busybox:latest").unwrap()),
        ImageIdentity::Oci {
            dir: "/srv/images".into(),
            image: Some("v1".into()),
        },
    ];
    for image in &images {
        let (_, requirements) = policy.requirements_for(image);
        let open = requirements
            .iter()
            .all(|r| matches!(r, Requirement::InsecureAcceptAnything));
        let decision = policy.evaluate(image, &digest, &[]);
        assert_eq!(
            matches!(decision, Decision::Accepted { .. }),
            open,
            "{decision}"
        );
        // Where signatures are not needed, a candidate changes nothing.
        if !policy.requires_signatures(image) {
            let junk = crate::Signature::new(b"{}".to_vec(), "AAAA".into());
            let with = policy.evaluate(image, &digest, &[junk]);
            assert_eq!(with.is_accepted(), decision.is_accepted(), "{with}");
        }
    }
}
