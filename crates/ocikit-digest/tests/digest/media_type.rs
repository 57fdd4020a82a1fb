//! Media-type constants, classification and the RFC 6838 check.

use oci_spec::image::{MediaType, ToDockerV2S2};
use ocikit_digest::media_type::{
    self as mt, Compression, MAX_NAME_LEN, MediaKind, MediaTypeErrorKind, classify,
    validate_media_type,
};
use proptest::prelude::*;

const ALL: [&str; 24] = [
    mt::DESCRIPTOR,
    mt::LAYOUT_HEADER,
    mt::IMAGE_INDEX,
    mt::IMAGE_MANIFEST,
    mt::IMAGE_CONFIG,
    mt::IMAGE_LAYER,
    mt::IMAGE_LAYER_GZIP,
    mt::IMAGE_LAYER_ZSTD,
    mt::IMAGE_LAYER_NONDISTRIBUTABLE,
    mt::IMAGE_LAYER_NONDISTRIBUTABLE_GZIP,
    mt::IMAGE_LAYER_NONDISTRIBUTABLE_ZSTD,
    mt::EMPTY_JSON,
    mt::DOCKER_MANIFEST,
    mt::DOCKER_MANIFEST_LIST,
    mt::DOCKER_MANIFEST_SCHEMA1,
    mt::DOCKER_MANIFEST_SCHEMA1_SIGNED,
    mt::DOCKER_CONFIG,
    mt::DOCKER_PLUGIN_CONFIG,
    mt::DOCKER_LAYER_GZIP,
    mt::DOCKER_LAYER,
    mt::DOCKER_LAYER_ZSTD,
    mt::DOCKER_FOREIGN_LAYER_GZIP,
    mt::DOCKER_FOREIGN_LAYER,
    "application/vnd.oci.image.layer.v1.tar+gzip",
];

fn err(s: &str) -> MediaTypeErrorKind {
    validate_media_type(s).expect_err(s).kind().clone()
}

// SPEC A.3: the exact strings.
#[test]
fn constants_are_the_spec_strings() {
    assert_eq!(mt::DESCRIPTOR, "application/vnd.oci.descriptor.v1+json");
    assert_eq!(
        mt::LAYOUT_HEADER,
        "application/vnd.oci.layout.header.v1+json"
    );
    assert_eq!(mt::IMAGE_INDEX, "application/vnd.oci.image.index.v1+json");
    assert_eq!(
        mt::IMAGE_MANIFEST,
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(mt::IMAGE_CONFIG, "application/vnd.oci.image.config.v1+json");
    assert_eq!(mt::IMAGE_LAYER, "application/vnd.oci.image.layer.v1.tar");
    assert_eq!(
        mt::IMAGE_LAYER_GZIP,
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    assert_eq!(
        mt::IMAGE_LAYER_ZSTD,
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    assert_eq!(
        mt::IMAGE_LAYER_NONDISTRIBUTABLE_GZIP,
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
    );
    assert_eq!(mt::EMPTY_JSON, "application/vnd.oci.empty.v1+json");
    assert_eq!(
        mt::DOCKER_LAYER_GZIP,
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    );
    assert_eq!(
        mt::DOCKER_FOREIGN_LAYER_GZIP,
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
    );
    assert_eq!(
        mt::DOCKER_PLUGIN_CONFIG,
        "application/vnd.docker.plugin.v1+json"
    );
}

#[test]
fn constants_agree_with_oci_spec() {
    for (ours, theirs) in [
        (mt::LAYOUT_HEADER, MediaType::LayoutHeader),
        (mt::IMAGE_INDEX, MediaType::ImageIndex),
        (mt::IMAGE_MANIFEST, MediaType::ImageManifest),
        (mt::IMAGE_CONFIG, MediaType::ImageConfig),
        (mt::IMAGE_LAYER, MediaType::ImageLayer),
        (mt::IMAGE_LAYER_GZIP, MediaType::ImageLayerGzip),
        (mt::IMAGE_LAYER_ZSTD, MediaType::ImageLayerZstd),
        (
            mt::IMAGE_LAYER_NONDISTRIBUTABLE,
            MediaType::ImageLayerNonDistributable,
        ),
        (
            mt::IMAGE_LAYER_NONDISTRIBUTABLE_GZIP,
            MediaType::ImageLayerNonDistributableGzip,
        ),
        (
            mt::IMAGE_LAYER_NONDISTRIBUTABLE_ZSTD,
            MediaType::ImageLayerNonDistributableZstd,
        ),
        (mt::EMPTY_JSON, MediaType::EmptyJSON),
    ] {
        assert_eq!(ours, theirs.as_ref());
        assert_eq!(MediaType::from(ours), theirs);
    }
    for (oci, docker) in [
        (MediaType::ImageIndex, mt::DOCKER_MANIFEST_LIST),
        (MediaType::ImageManifest, mt::DOCKER_MANIFEST),
        (MediaType::ImageConfig, mt::DOCKER_CONFIG),
        (MediaType::ImageLayerGzip, mt::DOCKER_LAYER_GZIP),
    ] {
        assert_eq!(oci.to_docker_v2s2().unwrap(), docker);
    }
}

#[test]
fn every_constant_is_a_valid_media_type() {
    for s in ALL {
        assert!(validate_media_type(s).is_ok(), "{s}");
        assert_ne!(classify(s), MediaKind::Unknown, "{s}");
    }
}

#[test]
fn classification() {
    let layer = |compression, distributable, docker| MediaKind::Layer {
        compression,
        distributable,
        docker,
    };
    for (s, kind) in [
        (mt::DESCRIPTOR, MediaKind::Descriptor),
        (mt::LAYOUT_HEADER, MediaKind::LayoutHeader),
        (mt::IMAGE_INDEX, MediaKind::Index),
        (mt::IMAGE_MANIFEST, MediaKind::Manifest),
        (mt::IMAGE_CONFIG, MediaKind::Config),
        (mt::EMPTY_JSON, MediaKind::Empty),
        (mt::IMAGE_LAYER, layer(Compression::None, true, false)),
        (mt::IMAGE_LAYER_GZIP, layer(Compression::Gzip, true, false)),
        (mt::IMAGE_LAYER_ZSTD, layer(Compression::Zstd, true, false)),
        (
            mt::IMAGE_LAYER_NONDISTRIBUTABLE,
            layer(Compression::None, false, false),
        ),
        (
            mt::IMAGE_LAYER_NONDISTRIBUTABLE_GZIP,
            layer(Compression::Gzip, false, false),
        ),
        (
            mt::IMAGE_LAYER_NONDISTRIBUTABLE_ZSTD,
            layer(Compression::Zstd, false, false),
        ),
        (mt::DOCKER_MANIFEST, MediaKind::DockerManifest),
        (mt::DOCKER_MANIFEST_LIST, MediaKind::DockerManifestList),
        (
            mt::DOCKER_MANIFEST_SCHEMA1,
            MediaKind::DockerManifestSchema1,
        ),
        (
            mt::DOCKER_MANIFEST_SCHEMA1_SIGNED,
            MediaKind::DockerManifestSchema1,
        ),
        (mt::DOCKER_CONFIG, MediaKind::DockerConfig),
        (mt::DOCKER_PLUGIN_CONFIG, MediaKind::DockerPluginConfig),
        (mt::DOCKER_LAYER, layer(Compression::None, true, true)),
        (mt::DOCKER_LAYER_GZIP, layer(Compression::Gzip, true, true)),
        (mt::DOCKER_LAYER_ZSTD, layer(Compression::Zstd, true, true)),
        (
            mt::DOCKER_FOREIGN_LAYER,
            layer(Compression::None, false, true),
        ),
        (
            mt::DOCKER_FOREIGN_LAYER_GZIP,
            layer(Compression::Gzip, false, true),
        ),
        (
            "application/vnd.oci.artifact.manifest.v1+json",
            MediaKind::Unknown,
        ),
        ("application/json", MediaKind::Unknown),
        ("", MediaKind::Unknown),
    ] {
        assert_eq!(classify(s), kind, "{s}");
    }
}

#[test]
fn classification_ignores_parameters_but_not_case() {
    assert_eq!(
        classify("application/vnd.oci.image.manifest.v1+json; charset=utf-8"),
        MediaKind::Manifest
    );
    assert_eq!(
        classify("application/vnd.oci.image.index.v1+json;x=y"),
        MediaKind::Index
    );
    assert_eq!(
        classify("application/vnd.oci.image.index.v1+json \t; x"),
        MediaKind::Index
    );
    assert_eq!(mt::essence("a/b ; c"), "a/b");
    assert_eq!(mt::essence("a/b"), "a/b");
    assert_eq!(
        classify("Application/vnd.oci.image.manifest.v1+json"),
        MediaKind::Unknown
    );
    assert_eq!(
        classify(" application/vnd.oci.image.manifest.v1+json"),
        MediaKind::Unknown
    );
    assert_eq!(
        classify("application/vnd.oci.image.manifest.v1+json\n"),
        MediaKind::Unknown
    );
}

#[test]
fn helpers() {
    assert!(mt::is_manifest_like(mt::IMAGE_MANIFEST));
    assert!(mt::is_manifest_like(mt::DOCKER_MANIFEST));
    assert!(!mt::is_manifest_like(mt::IMAGE_INDEX));
    assert!(!mt::is_manifest_like(mt::DOCKER_MANIFEST_SCHEMA1));
    assert!(mt::is_index_like(mt::IMAGE_INDEX));
    assert!(mt::is_index_like(mt::DOCKER_MANIFEST_LIST));
    assert!(!mt::is_index_like(mt::IMAGE_MANIFEST));
    assert!(classify(mt::DOCKER_CONFIG).is_config_like());
    assert!(classify(mt::IMAGE_CONFIG).is_config_like());
    assert!(!classify(mt::EMPTY_JSON).is_config_like());
    assert!(mt::is_layer(mt::DOCKER_FOREIGN_LAYER_GZIP));
    assert!(!mt::is_layer(mt::IMAGE_CONFIG));
    assert_eq!(
        mt::layer_compression(mt::IMAGE_LAYER),
        Some(Compression::None)
    );
    assert_eq!(
        mt::layer_compression(mt::DOCKER_LAYER_GZIP),
        Some(Compression::Gzip)
    );
    assert_eq!(
        mt::layer_compression(mt::IMAGE_LAYER_NONDISTRIBUTABLE_ZSTD),
        Some(Compression::Zstd)
    );
    assert_eq!(mt::layer_compression(mt::IMAGE_MANIFEST), None);
    assert_eq!(mt::layer_compression("application/x-tar"), None);
    for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
        let s = mt::oci_layer_type(c);
        assert_eq!(
            classify(s),
            MediaKind::Layer {
                compression: c,
                distributable: true,
                docker: false
            }
        );
    }
}

// SPEC C-D15
#[test]
fn rfc6838_violations_have_precise_kinds() {
    assert_eq!(
        err(".foo/bar"),
        MediaTypeErrorKind::BadFirstChar { position: 0 }
    );
    assert_eq!(
        err("foo/.bar"),
        MediaTypeErrorKind::BadFirstChar { position: 4 }
    );
    assert_eq!(err("application"), MediaTypeErrorKind::MissingSubtype);
    assert_eq!(err(""), MediaTypeErrorKind::Empty);
    assert_eq!(err("/json"), MediaTypeErrorKind::EmptyType);
    assert_eq!(err("application/"), MediaTypeErrorKind::EmptySubtype);
    assert_eq!(
        err("application//json"),
        MediaTypeErrorKind::BadFirstChar { position: 12 }
    );
    assert_eq!(err("a/b/c"), MediaTypeErrorKind::BadChar { position: 3 });
    assert_eq!(
        err("application/json; charset=utf-8"),
        MediaTypeErrorKind::BadChar { position: 16 }
    );
    assert_eq!(
        err("application/json "),
        MediaTypeErrorKind::BadChar { position: 16 }
    );
    assert_eq!(
        err("application/json\n"),
        MediaTypeErrorKind::BadChar { position: 16 }
    );
    assert_eq!(
        err("appl ication/json"),
        MediaTypeErrorKind::BadChar { position: 4 }
    );
    assert_eq!(
        err("application/jsön"),
        MediaTypeErrorKind::BadChar { position: 14 }
    );
    assert_eq!(
        err("-a/b"),
        MediaTypeErrorKind::BadFirstChar { position: 0 }
    );
    assert_eq!(
        err("a/+b"),
        MediaTypeErrorKind::BadFirstChar { position: 2 }
    );
    assert_eq!(
        validate_media_type("a/b\"").unwrap_err().position(),
        Some(3)
    );

    // 127 characters per name is the maximum; 128 is too long.
    let name127 = "a".repeat(MAX_NAME_LEN);
    let name128 = "a".repeat(MAX_NAME_LEN + 1);
    assert!(validate_media_type(&format!("{name127}/{name127}")).is_ok());
    assert_eq!(
        err(&format!("{name128}/json")),
        MediaTypeErrorKind::TooLong {
            subtype: false,
            max: 127
        }
    );
    assert_eq!(
        err(&format!("application/{name128}")),
        MediaTypeErrorKind::TooLong {
            subtype: true,
            max: 127
        }
    );
    // Every allowed punctuation character after the first.
    assert!(validate_media_type("A0!#$&^_.+-/z9!#$&^_.+-").is_ok());
    let message = validate_media_type(".foo/bar").unwrap_err().to_string();
    assert!(message.contains("byte 0"), "{message}");
}

fn regex() -> regex::Regex {
    regex::Regex::new(
        r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$",
    )
    .unwrap()
}

proptest! {
    // The hand-written check agrees with the schema's regular expression.
    #[test]
    fn validation_agrees_with_the_schema_regex(
        s in prop_oneof![
            "[a-c0!#$&^_.+/;= \\-é]{0,12}",
            "[a-z]{1,3}[a-z.+-]{120,130}/[a-z.]{1,3}",
            "[a-z]{1,3}/[a-z][a-z.+-]{120,130}",
        ]
    ) {
        prop_assert_eq!(validate_media_type(&s).is_ok(), regex().is_match(&s), "{:?}", s);
    }
}
