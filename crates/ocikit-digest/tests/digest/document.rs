//! Manifest and index parsing: the image spec's examples and Docker's shapes parse; every
//! rule refuses a document that breaks it with its own kind.

use bytes::Bytes;
use ocikit_digest::document::{Document, InvalidDocumentKind as K, MAX_DOCUMENT_SIZE, is_document};
use ocikit_digest::media_type::{
    DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, IMAGE_CONFIG, IMAGE_INDEX, IMAGE_MANIFEST,
};
use serde_json::{Value, json};

/// The image spec's example manifest (image-manifest.md), with its subject.
fn spec_manifest() -> Value {
    json!({
      "schemaVersion": 2,
      "mediaType": "application/vnd.oci.image.manifest.v1+json",
      "config": {
        "mediaType": "application/vnd.oci.image.config.v1+json",
        "digest": "sha256:b5b2b2c507a0944348e0303114d8d93aaaa081732b86451d9bce1f432a537bc7",
        "size": 7023
      },
      "layers": [
        {
          "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
          "digest": "sha256:9834876dcfb05cb167a5c24953eba58c4ac89b1adf57f28f2f9d09af107ee8f0",
          "size": 32654
        },
        {
          "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
          "digest": "sha256:3c3a4604a545cdc127456d94e421cd355bca5b528f4a9c1905b15da2eb4a4c6b",
          "size": 16724
        },
        {
          "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
          "digest": "sha256:ec4b8955958665577945c89419d1af06b5f7636b4ac3da7f12184802ad867736",
          "size": 73109
        }
      ],
      "subject": {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": "sha256:5b0bcabd1ed22e9fb1310cf6c2dec7cdef19f0ad69efa1f392e94a4333501270",
        "size": 7682
      },
      "annotations": {
        "com.example.key1": "value1",
        "com.example.key2": "value2"
      }
    })
}

/// The image spec's example index (image-index.md).
fn spec_index() -> Value {
    json!({
      "schemaVersion": 2,
      "mediaType": "application/vnd.oci.image.index.v1+json",
      "manifests": [
        {
          "mediaType": "application/vnd.oci.image.manifest.v1+json",
          "size": 7143,
          "digest": "sha256:e692418e4cbaf90ca69d05a66403747baa33ee08806650b51fab815ad7fc331f",
          "platform": {"architecture": "ppc64le", "os": "linux"}
        },
        {
          "mediaType": "application/vnd.oci.image.manifest.v1+json",
          "size": 7682,
          "digest": "sha256:5b0bcabd1ed22e9fb1310cf6c2dec7cdef19f0ad69efa1f392e94a4333501270",
          "platform": {"architecture": "amd64", "os": "linux"}
        }
      ],
      "annotations": {"com.example.key1": "value1", "com.example.key2": "value2"}
    })
}

fn bytes(v: &Value) -> Bytes {
    Bytes::from(serde_json::to_vec(v).unwrap())
}

fn refused(media_type: &str, v: &Value) -> K {
    Document::parse_as(media_type, bytes(v))
        .expect_err(&v.to_string())
        .kind()
        .clone()
}

fn with(mut v: Value, field: &str, value: Value) -> Value {
    v[field] = value;
    v
}

fn without(mut v: Value, field: &str) -> Value {
    v.as_object_mut().unwrap().remove(field);
    v
}

#[test]
fn the_spec_examples_parse() {
    let manifest = Document::parse_as(IMAGE_MANIFEST, bytes(&spec_manifest())).unwrap();
    let Document::Manifest {
        manifest: m,
        bytes: b,
    } = &manifest
    else {
        panic!("{manifest:?}")
    };
    assert_eq!(b, &bytes(&spec_manifest()));
    assert_eq!(m.layers().len(), 3);
    let children = manifest.children();
    assert_eq!(children.len(), 4);
    assert_eq!(children[0].size(), 7023);
    assert_eq!(manifest.subject().unwrap().size(), 7682);
    assert_eq!(manifest.artifact_type().as_deref(), Some(IMAGE_CONFIG));
    assert_eq!(
        manifest.annotations().unwrap()["com.example.key2"],
        "value2"
    );

    let index = Document::parse_as(IMAGE_INDEX, bytes(&spec_index())).unwrap();
    assert!(matches!(index, Document::Index { .. }));
    assert_eq!(index.children().len(), 2);
    assert_eq!(index.artifact_type(), None);
    assert!(index.subject().is_none());
}

#[test]
fn docker_schema_2_shapes_parse_and_other_types_are_opaque() {
    let mut docker = spec_manifest();
    docker["mediaType"] = json!(DOCKER_MANIFEST);
    docker["config"]["mediaType"] = json!("application/vnd.docker.container.image.v1+json");
    let doc = Document::parse_as(DOCKER_MANIFEST, bytes(&docker)).unwrap();
    assert_eq!(doc.children().len(), 4);
    let mut list = spec_index();
    list["mediaType"] = json!(DOCKER_MANIFEST_LIST);
    assert_eq!(
        Document::parse_as(DOCKER_MANIFEST_LIST, bytes(&list))
            .unwrap()
            .children()
            .len(),
        2
    );
    // A config, a layer, schema 1: not parsed at all, whatever the bytes.
    for other in [
        IMAGE_CONFIG,
        "application/vnd.oci.image.layer.v1.tar",
        "application/vnd.docker.distribution.manifest.v1+json",
    ] {
        let doc = Document::parse_as(other, Bytes::from_static(b"not json")).unwrap();
        assert!(matches!(doc, Document::Opaque), "{other}");
        assert!(doc.children().is_empty() && doc.bytes().is_none());
    }
}

#[test]
fn media_types_are_compared_by_essence() {
    let with_params = format!("{IMAGE_MANIFEST}; charset=utf-8");
    assert!(is_document(&with_params));
    assert!(is_document(&format!("{IMAGE_INDEX} ;x=y")));
    // Declared with parameters, body without; and the other way round.
    assert!(matches!(
        Document::parse_as(&with_params, bytes(&spec_manifest())).unwrap(),
        Document::Manifest { .. }
    ));
    let labelled = with(spec_manifest(), "mediaType", json!(with_params));
    assert!(matches!(
        Document::parse_as(IMAGE_MANIFEST, bytes(&labelled)).unwrap(),
        Document::Manifest { .. }
    ));
    // The essence itself is compared exactly.
    let upper = with(
        spec_manifest(),
        "mediaType",
        json!(IMAGE_MANIFEST.to_uppercase()),
    );
    assert!(matches!(
        refused(IMAGE_MANIFEST, &upper),
        K::MediaTypeMismatch { .. }
    ));
}

#[test]
fn every_rule_refuses_with_its_kind() {
    let m = spec_manifest;
    // Not JSON, duplicate keys, not an object.
    assert!(matches!(
        Document::parse_as(IMAGE_MANIFEST, Bytes::from_static(b"{\"a\":1,\"a\":2}"))
            .unwrap_err()
            .kind(),
        K::Json(_)
    ));
    assert_eq!(refused(IMAGE_MANIFEST, &json!([])), K::NotAnObject);
    // schemaVersion.
    assert_eq!(
        refused(IMAGE_MANIFEST, &without(m(), "schemaVersion")),
        K::SchemaVersionMissing
    );
    for v in [json!(1), json!("2"), json!(2.5), json!(3)] {
        assert_eq!(
            refused(IMAGE_MANIFEST, &with(m(), "schemaVersion", v)),
            K::SchemaVersion
        );
    }
    // mediaType: the wrong type, another type (CVE-2021-41190).
    assert_eq!(
        refused(IMAGE_MANIFEST, &with(m(), "mediaType", json!(7))),
        K::WrongType {
            field: "mediaType",
            expected: "a string"
        }
    );
    assert_eq!(
        refused(IMAGE_INDEX, &without(without(m(), "config"), "mediaType")),
        K::Ambiguous {
            field: "layers",
            is_index: true
        }
    );
    assert_eq!(
        refused(
            IMAGE_INDEX,
            &with(spec_index(), "mediaType", json!(IMAGE_MANIFEST))
        ),
        K::MediaTypeMismatch {
            declared: IMAGE_INDEX.into(),
            found: IMAGE_MANIFEST.into()
        }
    );
    // Ambiguous documents (SPEC A.6).
    assert_eq!(
        refused(IMAGE_MANIFEST, &with(m(), "manifests", json!([]))),
        K::Ambiguous {
            field: "manifests",
            is_index: false
        }
    );
    assert_eq!(
        refused(
            IMAGE_INDEX,
            &with(spec_index(), "config", m()["config"].clone())
        ),
        K::Ambiguous {
            field: "config",
            is_index: true
        }
    );
    // artifactType and annotations.
    assert!(matches!(
        refused(
            IMAGE_MANIFEST,
            &with(m(), "artifactType", json!(".bad/type"))
        ),
        K::BadArtifactType(_)
    ));
    assert_eq!(
        refused(IMAGE_INDEX, &with(spec_index(), "artifactType", json!(1))),
        K::WrongType {
            field: "artifactType",
            expected: "a string"
        }
    );
    assert_eq!(
        refused(IMAGE_MANIFEST, &with(m(), "annotations", json!({"k": 1}))),
        K::AnnotationNotString { key: "k".into() }
    );
    assert_eq!(
        refused(IMAGE_MANIFEST, &with(m(), "annotations", json!(["k"]))),
        K::WrongType {
            field: "annotations",
            expected: "an object"
        }
    );
    // Descriptors inside, named by where they are.
    let mut bad_layer = m();
    bad_layer["layers"][1]["size"] = json!(-1);
    assert!(matches!(
        refused(IMAGE_MANIFEST, &bad_layer),
        K::Descriptor { at, .. } if at == "layers[1]"
    ));
    let mut bad_subject = m();
    bad_subject["subject"]["digest"] = json!("sha256:abc");
    assert!(matches!(
        refused(IMAGE_MANIFEST, &bad_subject),
        K::Descriptor { at, .. } if at == "subject"
    ));
    let mut bad_entry = spec_index();
    bad_entry["manifests"][0]["platform"] = json!({"os": "linux"});
    assert!(matches!(
        refused(IMAGE_INDEX, &bad_entry),
        K::Descriptor { at, .. } if at == "manifests[0]"
    ));
    let mut bad_data = m();
    bad_data["config"]["data"] = json!("e30=");
    assert!(matches!(
        refused(IMAGE_MANIFEST, &bad_data),
        K::Descriptor { at, .. } if at == "config"
    ));
    // The shape: a manifest without config, an index without manifests.
    assert!(matches!(
        refused(IMAGE_MANIFEST, &without(m(), "config")),
        K::Shape {
            is_index: false,
            ..
        }
    ));
    assert!(matches!(
        refused(IMAGE_INDEX, &without(spec_index(), "manifests")),
        K::Shape { is_index: true, .. }
    ));
}

#[test]
fn documents_over_the_size_limit_are_refused_unparsed() {
    assert_eq!(MAX_DOCUMENT_SIZE, 16 << 20);
    let doc = bytes(&spec_manifest());
    let len = doc.len() as u64;
    assert!(Document::parse_with_limit(IMAGE_MANIFEST, doc.clone(), len).is_ok());
    let err = Document::parse_with_limit(IMAGE_MANIFEST, doc, len - 1).unwrap_err();
    assert_eq!(
        err.kind(),
        &K::TooLarge {
            max: len - 1,
            actual: len
        }
    );
    let mut big = serde_json::to_vec(&spec_manifest()).unwrap();
    big.pop();
    big.extend_from_slice(b",\"pad\":\"");
    big.resize(big.len() + (16 << 20), b'a');
    big.extend_from_slice(b"\"}");
    let err = Document::parse_as(IMAGE_MANIFEST, Bytes::from(big)).unwrap_err();
    assert!(matches!(err.kind(), K::TooLarge { max, .. } if *max == MAX_DOCUMENT_SIZE));
    assert_eq!(err.to_string(), "document is larger than 16 MiB");
}

#[test]
fn errors_chain_their_cause() {
    let mut bad = spec_manifest();
    bad["layers"][0]["digest"] = json!("sha256:abc");
    let err = Document::parse_as(IMAGE_MANIFEST, bytes(&bad)).unwrap_err();
    assert_eq!(err.to_string(), "invalid descriptor at layers[0]");
    let cause = std::error::Error::source(&err).unwrap().to_string();
    assert!(cause.contains("digest"), "{cause}");
}
