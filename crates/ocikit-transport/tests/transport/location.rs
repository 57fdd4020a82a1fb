//! Locations: parsing and printing back, and what is refused.

use ocikit_digest::Digest;
use ocikit_transport::{Location, LocationErrorKind, Selector};

#[test]
fn every_transport_parses_and_prints_back() {
    let digest = Digest::sha256(b"x");
    for text in [
        "oci:dir".to_string(),
        "oci:/a/b:v1".to_string(),
        format!("oci:dir@{digest}"),
        "oci-archive:a.tar".to_string(),
        format!("oci-archive:a.tar@{digest}"),
        "docker-archive:d.tar:library/alpine:3".to_string(),
        "docker://127.0.0.1:5000/team/app:v1".to_string(),
        format!("docker://localhost:5000/app@{digest}"),
    ] {
        let location: Location = text.parse().unwrap();
        assert_eq!(location.to_string(), text);
    }
    match "docker://alpine".parse::<Location>().unwrap() {
        Location::Docker {
            registry,
            repository,
            selector,
            ..
        } => {
            assert_eq!(registry, "registry-1.docker.io");
            assert_eq!(repository, "library/alpine");
            assert_eq!(selector, Selector::Tag("latest".into()));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn bad_location_strings_are_refused_with_their_kind() {
    let kind = |text: &str| text.parse::<Location>().unwrap_err().kind().clone();
    assert!(matches!(
        kind("images"),
        LocationErrorKind::NoTransport { .. }
    ));
    assert!(matches!(
        kind("zip:images"),
        LocationErrorKind::UnknownTransport { .. }
    ));
    assert_eq!(kind("oci:"), LocationErrorKind::EmptyPath);
    assert_eq!(kind("oci:images:"), LocationErrorKind::EmptyTag);
    assert!(matches!(
        kind("oci:images@sha256:abc"),
        LocationErrorKind::InvalidDigest { .. }
    ));
    assert_eq!(
        kind(&format!("oci:images:v1@{}", Digest::sha256(b"x"))),
        LocationErrorKind::TagAndDigest
    );
    assert_eq!(kind("docker:alpine"), LocationErrorKind::NotDockerSyntax);
    assert!(matches!(
        kind("docker://127.0.0.1:5000"),
        LocationErrorKind::NoRepository { .. }
    ));
    assert!(matches!(
        kind("docker://UPPER/x:"),
        LocationErrorKind::InvalidReference { .. }
    ));
}
