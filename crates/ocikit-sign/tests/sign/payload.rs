//! Payload round trips over generated references, digests and metadata.

use ocikit_digest::{Digest, Reference};
use ocikit_sign::Payload;
use proptest::prelude::*;

fn reference() -> impl Strategy<Value = Reference> {
    (
        prop::sample::select(vec![
            "quay.io",
            "localhost:5000",
            "docker.io",
            "10.0.0.1:443",
        ]),
        "[a-z0-9]{1,8}(/[a-z0-9]{1,8}){0,2}",
        prop::option::of("[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}"),
    )
        .prop_map(|(registry, repository, tag)| {
            let reference = Reference::new(Some(registry), &repository).unwrap();
            match tag {
                Some(tag) => reference.with_tag(&tag).unwrap(),
                None => reference,
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn written_payloads_parse_back_equal(
        reference in reference(),
        manifest in prop::collection::vec(any::<u8>(), 0..64),
        timestamp in prop::option::of(any::<i64>()),
        creator in prop::option::of("[ -~]{0,30}"),
        repository_only in any::<bool>(),
    ) {
        let digest = Digest::sha256(&manifest);
        let mut payload = if repository_only {
            Payload::for_repository(&reference, digest.clone())
        } else {
            Payload::new(&reference, digest.clone())
        };
        payload = payload.with_creator(creator);
        if let Some(timestamp) = timestamp {
            payload = payload.with_timestamp(timestamp);
        }
        let bytes = payload.to_json();
        let parsed = Payload::parse(&bytes).unwrap();
        prop_assert_eq!(&parsed, &payload);
        prop_assert_eq!(parsed.manifest_digest(), &digest);
        prop_assert_eq!(parsed.to_json(), bytes);
        // The reference written is the normalised one, which reads back to itself.
        let written = Reference::parse_normalized(parsed.docker_reference()).unwrap();
        prop_assert_eq!(written.name(), Reference::parse_normalized(&reference.to_string()).unwrap().name());
    }
}
