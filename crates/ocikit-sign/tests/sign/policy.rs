//! Policies on disk: `Policy::load` reads the file and the keys its `keyPath`s name.

use std::path::Path;

use ocikit_digest::{Digest, Reference};
use ocikit_sign::policy::{ImageIdentity, PolicyErrorKind};
use ocikit_sign::{Error, Policy, PrivateKey, sign_image};

use crate::fixture;

fn write_policy(dir: &Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("policy.json");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_policy_file_with_key_paths_decides_with_those_keys() {
    let dir = tempfile::tempdir().unwrap();
    let key = PrivateKey::generate().unwrap();
    let key_path = dir.path().join("ours.pub");
    std::fs::write(&key_path, key.public_key().to_pem()).unwrap();
    let policy_path = write_policy(
        dir.path(),
        &format!(
            r#"{{"default":[{{"type":"reject"}}],"transports":{{"docker":{{
                "localhost:5000/team":[{{"type":"sigstoreSigned","keyPaths":["{}","{}"]}}]}}}}}}"#,
            fixture("python.pub").display(),
            key_path.display()
        ),
    );
    let policy = Policy::load(&policy_path).unwrap();
    let reference = Reference::parse("localhost:5000/team/app:v1").unwrap();
    let digest = Digest::sha256(b"manifest");
    let signature = sign_image(&key, &reference, digest.clone()).unwrap();
    let image = ImageIdentity::Docker(reference);
    let decision = policy.evaluate(&image, &digest, std::slice::from_ref(&signature));
    assert!(decision.is_accepted(), "{decision}");
    // The image changed after signing: its manifest digest is another.
    let decision = policy.evaluate(
        &image,
        &Digest::sha256(b"changed"),
        std::slice::from_ref(&signature),
    );
    assert!(!decision.is_accepted());
    assert!(
        decision.to_string().contains("signature is for manifest"),
        "{decision}"
    );
    // Outside the scope: the global default rejects.
    let elsewhere = ImageIdentity::Docker(Reference::parse("localhost:5000/other/app:v1").unwrap());
    assert!(
        !policy
            .evaluate(&elsewhere, &digest, &[signature])
            .is_accepted()
    );
}

#[test]
fn unreadable_and_unacceptable_key_files_are_errors_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pub");
    let policy_path = write_policy(
        dir.path(),
        &format!(
            r#"{{"default":[{{"type":"sigstoreSigned","keyPath":"{}"}}]}}"#,
            missing.display()
        ),
    );
    match Policy::load(&policy_path) {
        Err(Error::Io { path, .. }) => assert_eq!(path, missing),
        other => panic!("expected an I/O error, got {other:?}"),
    }
    let policy_path = write_policy(
        dir.path(),
        &format!(
            r#"{{"default":[{{"type":"sigstoreSigned","keyPath":"{}"}}]}}"#,
            fixture("python-p384.pub").display()
        ),
    );
    match Policy::load(&policy_path) {
        Err(Error::Policy(e)) => {
            assert_eq!(e.at(), "default[0].keyPath");
            assert!(matches!(e.kind(), PolicyErrorKind::Key(_)));
        }
        other => panic!("expected a policy error, got {other:?}"),
    }
    // A private key where a public one belongs.
    let policy_path = write_policy(
        dir.path(),
        &format!(
            r#"{{"default":[{{"type":"sigstoreSigned","keyPath":"{}"}}]}}"#,
            fixture("python-cosign.key").display()
        ),
    );
    assert!(matches!(Policy::load(&policy_path), Err(Error::Policy(_))));
}
