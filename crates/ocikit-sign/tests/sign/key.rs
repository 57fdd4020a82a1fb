//! Keys written by an independent implementation are read; refusals of theirs are typed.

use ocikit_sign::key::{KeyErrorKind, PublicKey};
use ocikit_sign::{Error, PrivateKey};

use crate::{FIXTURE_PASSPHRASE, read_fixture};

fn key_kind<T: std::fmt::Debug>(result: Result<T, Error>) -> KeyErrorKind {
    match result {
        Err(Error::Key(e)) => e.kind().clone(),
        other => panic!("expected a key error, got {other:?}"),
    }
}

#[test]
fn both_labels_and_both_costs_of_a_foreign_key_file_are_read() {
    let public = PublicKey::from_pem(&read_fixture("python.pub")).unwrap();
    // cosign 1's label at N = 2^15, cosign 2's label at N = 2^16: the same key.
    for file in ["python-cosign.key", "python-sigstore.key"] {
        let key = PrivateKey::from_encrypted_pem(&read_fixture(file), FIXTURE_PASSPHRASE)
            .unwrap_or_else(|e| panic!("{file}: {e:?}"));
        assert_eq!(key.public_key(), public, "{file}");
        let signature = key.sign(b"payload").unwrap();
        public.verify(b"payload", &signature).unwrap();
    }
    // The PEM ocikit writes for the key is OpenSSL's, byte for byte.
    assert_eq!(public.to_pem().as_bytes(), read_fixture("python.pub"));
}

#[test]
fn foreign_keys_that_are_not_acceptable_are_refused_with_a_reason() {
    assert!(matches!(
        PrivateKey::from_encrypted_pem(&read_fixture("python-cosign.key"), b"wrong passphrase"),
        Err(Error::Decrypt)
    ));
    assert_eq!(
        key_kind(PrivateKey::from_encrypted_pem(
            &read_fixture("python-p384.key"),
            FIXTURE_PASSPHRASE
        )),
        KeyErrorKind::UnsupportedAlgorithm {
            algorithm: "ECDSA P-384".into()
        }
    );
    assert_eq!(
        key_kind(PublicKey::from_pem(&read_fixture("python-p384.pub"))),
        KeyErrorKind::UnsupportedAlgorithm {
            algorithm: "ECDSA P-384".into()
        }
    );
    assert_eq!(
        key_kind(PrivateKey::from_encrypted_pem(
            &read_fixture("python-unencrypted.key"),
            FIXTURE_PASSPHRASE
        )),
        KeyErrorKind::Unencrypted {
            label: "PRIVATE KEY".into()
        }
    );
    // A key file cut short.
    let whole = read_fixture("python-cosign.key");
    assert!(matches!(
        key_kind(PrivateKey::from_encrypted_pem(
            &whole[..whole.len() / 2],
            FIXTURE_PASSPHRASE
        )),
        KeyErrorKind::Pem { .. }
    ));
}
