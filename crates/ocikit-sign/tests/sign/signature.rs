//! A signature made by an independent implementation over cosign's payload verifies; the
//! same bytes under another key, manifest or reference do not.

use ocikit_digest::{Digest, Reference};
use ocikit_sign::{Error, Expected, PublicKey, Signature, SignedIdentity, verify};

use crate::read_fixture;

fn python_signature() -> (Signature, Digest) {
    let payload = read_fixture("python-signed.payload");
    let signature = String::from_utf8(read_fixture("python-signed.sig")).unwrap();
    let digest: Digest = String::from_utf8(read_fixture("python-signed.digest"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    (
        Signature::new(payload, signature.trim().to_string()),
        digest,
    )
}

#[test]
fn a_foreign_signature_over_a_cosign_payload_verifies() {
    let (signature, digest) = python_signature();
    let key = PublicKey::from_pem(&read_fixture("python.pub")).unwrap();
    let image = Reference::parse("localhost:5000/fixture/app:v1").unwrap();
    // cosign's payload names the repository only: matchRepository accepts it...
    let expected = Expected::new(digest.clone())
        .with_image(image.clone())
        .with_identity(SignedIdentity::MatchRepository);
    let verified = verify(&signature, std::slice::from_ref(&key), &expected).unwrap();
    assert_eq!(
        verified.payload().docker_reference(),
        "localhost:5000/fixture/app"
    );
    assert_eq!(verified.payload().creator(), None);
    // ...the default rule does not (a repository-only claim protects no tag).
    let strict = Expected::new(digest.clone()).with_image(image);
    assert!(matches!(
        verify(&signature, std::slice::from_ref(&key), &strict),
        Err(Error::IdentityMismatch { .. })
    ));
    // Another manifest: refused.
    let replay = Expected::new(Digest::sha256(b"another manifest"))
        .with_identity(SignedIdentity::exact_repository("localhost:5000/fixture/app").unwrap());
    assert!(matches!(
        verify(&signature, std::slice::from_ref(&key), &replay),
        Err(Error::DigestMismatch { .. })
    ));
    // Another key: refused.
    let other = ocikit_sign::PrivateKey::generate().unwrap().public_key();
    assert!(matches!(
        verify(&signature, &[other], &expected_any(&digest)),
        Err(Error::BadSignature)
    ));
}

fn expected_any(digest: &Digest) -> Expected {
    Expected::new(digest.clone())
        .with_identity(SignedIdentity::exact_repository("localhost:5000/fixture/app").unwrap())
}

#[test]
fn a_truncated_foreign_signature_is_refused() {
    let (signature, digest) = python_signature();
    let key = PublicKey::from_pem(&read_fixture("python.pub")).unwrap();
    let cut = Signature::new(
        signature.payload()[..signature.payload().len() - 1].to_vec(),
        signature.signature_base64().to_string(),
    );
    assert!(matches!(
        verify(&cut, std::slice::from_ref(&key), &expected_any(&digest)),
        Err(Error::BadSignature)
    ));
    let short = &signature.signature_base64()[..20];
    let cut = Signature::new(signature.payload().to_vec(), short.to_string());
    assert!(matches!(
        verify(&cut, &[key], &expected_any(&digest)),
        Err(Error::BadSignature)
    ));
}
