//! `inspect` (summary, raw bytes, config) and `tags`, on layouts and on a registry served
//! in-process, and what they refuse.

use std::path::Path;

use ocikit_digest::Digest;
use ocikit_digest::media_type;
use ocikit_digest::oci_spec::image::Descriptor;
use ocikit_layout::{Artifact, Layout};
use ocikit_store::FsStore;
use ocikit_transport::{CopyOptions, Error, Operation, Summary, copy};
use serde_json::{Value, json};

use crate::at;
use crate::registry::{docker, plain, serve};

/// A layout at `dir` with a hand-made linux/arm64/v8 image tagged `v1` (config written as
/// JSON here, two layers of opaque bytes, manifest annotations); returns the layout, the
/// manifest and the config JSON.
async fn hand_made(dir: &Path) -> (Layout, Descriptor, Value) {
    let layout = Layout::create(FsStore::open(dir).await.unwrap())
        .await
        .unwrap();
    let layers = [
        layout
            .put_blob(media_type::IMAGE_LAYER_GZIP, b"first layer")
            .await
            .unwrap(),
        layout
            .put_blob(media_type::IMAGE_LAYER_GZIP, b"second, longer layer")
            .await
            .unwrap(),
    ];
    let config = json!({
        "architecture": "arm64", "os": "linux", "variant": "v8",
        "created": "2026-01-02T03:04:05Z",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/hello"], "WorkingDir": "/srv"},
        "rootfs": {"type": "layers", "diff_ids": [
            Digest::sha256(b"a").to_string(), Digest::sha256(b"b").to_string()
        ]}
    });
    let config_descriptor = layout
        .put_json(media_type::IMAGE_CONFIG, &config)
        .await
        .unwrap();
    let manifest = json!({
        "schemaVersion": 2, "mediaType": media_type::IMAGE_MANIFEST,
        "config": config_descriptor, "layers": layers,
        "annotations": {"org.example.z": "last", "org.example.a": "first"}
    });
    let manifest = layout
        .put_json(media_type::IMAGE_MANIFEST, &manifest)
        .await
        .unwrap();
    layout.set_tag("v1", &manifest).await.unwrap();
    (layout, manifest, config)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_image_is_summarised_from_a_layout_and_from_a_registry() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let (layout, manifest, config) = hand_made(&src).await;
    let Summary::Image(summary) = ocikit_transport::inspect(&at("oci", &src, ":v1"), &plain())
        .await
        .unwrap()
    else {
        panic!("not an image summary");
    };
    assert_eq!(summary.digest, manifest.digest().to_string());
    assert_eq!(summary.platform.as_deref(), Some("linux/arm64/v8"));
    assert_eq!(summary.created.as_deref(), Some("2026-01-02T03:04:05Z"));
    assert_eq!(summary.run_config.as_ref(), Some(&config["config"]));
    assert_eq!(
        summary.layers.iter().map(|l| l.size).collect::<Vec<_>>(),
        [11, 20]
    );
    // As `ocikit inspect --json` prints it: camelCase, annotations sorted, no
    // `artifactType` for an image.
    let text = serde_json::to_string(&summary).unwrap();
    let value: Value = serde_json::from_str(&text).unwrap();
    let keys: Vec<&str> = value
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let expected = [
        "digest",
        "mediaType",
        "platform",
        "created",
        "config",
        "layers",
        "runConfig",
        "annotations",
    ];
    let order: Vec<usize> = expected
        .iter()
        .map(|k| text.find(&format!("\"{k}\"")).unwrap())
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{text}");
    // What the config adds for `skopeo inspect`'s fields (no labels, no docker_version
    // here: left out).
    let mut expected = [&expected[..], &["architecture", "os", "variant", "env"]].concat();
    expected.sort_unstable();
    assert_eq!(keys, expected);
    assert_eq!(
        (summary.os.as_deref(), summary.architecture.as_deref()),
        (Some("linux"), Some("arm64"))
    );
    assert_eq!(summary.env.as_deref(), Some(&["PATH=/bin".to_string()][..]));
    assert!(
        text.find("org.example.a").unwrap() < text.find("org.example.z").unwrap(),
        "{text}"
    );
    assert_eq!(value["config"]["mediaType"], media_type::IMAGE_CONFIG);

    // The raw manifest is the bytes its digest names; the config is the JSON written.
    let raw = ocikit_transport::inspect_raw(&at("oci", &src, ":v1"), &plain())
        .await
        .unwrap();
    assert_eq!(
        Digest::sha256(&raw).to_string(),
        manifest.digest().to_string()
    );
    let read = ocikit_transport::inspect_config(&at("oci", &src, ":v1"), &plain())
        .await
        .unwrap();
    assert_eq!(read, config);

    // The same image in a registry summarises the same.
    let addr = serve().await;
    let options = CopyOptions::new()
        .with_source(plain())
        .with_destination(plain());
    copy(&at("oci", &src, ":v1"), &docker(&addr, "app:v1"), &options)
        .await
        .unwrap();
    let remote = ocikit_transport::inspect(&docker(&addr, "app:v1"), &plain())
        .await
        .unwrap();
    // ... with its name and its repository's tags, as skopeo shows them.
    let mut summary = summary;
    summary.name = Some(format!("{addr}/app"));
    summary.repo_tags = Some(vec!["v1".to_string()]);
    assert_eq!(remote, Summary::Image(summary));
    let remote = ocikit_transport::inspect_config(&docker(&addr, "app:v1"), &plain())
        .await
        .unwrap();
    assert_eq!(remote, config);
    drop(layout);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_index_and_an_artifact_are_summarised_for_what_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let (layout, manifest, _) = hand_made(&src).await;
    let mut entry = serde_json::to_value(&manifest).unwrap();
    entry["platform"] = json!({"os": "linux", "architecture": "arm64", "variant": "v8"});
    let index = layout
        .put_json(
            media_type::IMAGE_INDEX,
            &json!({"schemaVersion": 2, "mediaType": media_type::IMAGE_INDEX,
                    "manifests": [entry]}),
        )
        .await
        .unwrap();
    layout.set_tag("multi", &index).await.unwrap();
    let Summary::Index(summary) = ocikit_transport::inspect(&at("oci", &src, ":multi"), &plain())
        .await
        .unwrap()
    else {
        panic!("not an index summary");
    };
    assert_eq!(summary.digest, index.digest().to_string());
    assert_eq!(summary.manifests.len(), 1);
    assert_eq!(summary.manifests[0].digest, manifest.digest().to_string());
    assert_eq!(
        summary.manifests[0].platform.as_deref(),
        Some("linux/arm64/v8")
    );
    assert_eq!(summary.annotations, None);
    let err = ocikit_transport::inspect_config(&at("oci", &src, ":multi"), &plain())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::IndexHasNoConfig { .. }), "{err:?}");

    // An artifact: its type shown, no platform, no config to show.
    let artifact = layout
        .attach(
            &manifest,
            &Artifact::new("application/vnd.example.sbom+json").with_blob("text/plain", "sbom"),
        )
        .await
        .unwrap();
    let location = at("oci", &src, &format!("@{}", artifact.digest()));
    let Summary::Image(summary) = ocikit_transport::inspect(&location, &plain())
        .await
        .unwrap()
    else {
        panic!("not an image summary");
    };
    assert_eq!(
        summary.artifact_type.as_deref(),
        Some("application/vnd.example.sbom+json")
    );
    assert_eq!((summary.platform, summary.run_config), (None, None));
    let err = ocikit_transport::inspect_config(&location, &plain())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotAnImageConfig { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn inspect_refuses_bad_configs_and_locations() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let (layout, manifest, _) = hand_made(&src).await;

    // A config with a duplicate key (serde_json alone would keep the last `os`).
    let duplicate = br#"{"architecture":"arm64","os":"linux","os":"windows","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let config = layout
        .put_blob(media_type::IMAGE_CONFIG, duplicate)
        .await
        .unwrap();
    let bad = layout
        .put_json(
            media_type::IMAGE_MANIFEST,
            &json!({"schemaVersion": 2, "mediaType": media_type::IMAGE_MANIFEST,
                    "config": config, "layers": []}),
        )
        .await
        .unwrap();
    layout.set_tag("duplicate", &bad).await.unwrap();
    for result in [
        ocikit_transport::inspect(&at("oci", &src, ":duplicate"), &plain())
            .await
            .map(|_| ()),
        ocikit_transport::inspect_config(&at("oci", &src, ":duplicate"), &plain())
            .await
            .map(|_| ()),
    ] {
        let err = result.unwrap_err();
        assert!(matches!(err, Error::ConfigNotJson { .. }), "{err:?}");
    }

    // A config spoilt on disk: refused, not shown.
    let Summary::Image(summary) = ocikit_transport::inspect(&at("oci", &src, ":v1"), &plain())
        .await
        .unwrap()
    else {
        panic!("not an image summary");
    };
    let config: Digest = summary.config.digest.parse().unwrap();
    let file = src.join(config.blob_path());
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[1] ^= 0x01;
    std::fs::write(&file, &bytes).unwrap();
    let err = ocikit_transport::inspect(&at("oci", &src, ":v1"), &plain())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::ReadConfig { ref digest, .. } if *digest == config.to_string()),
        "{err:?}"
    );

    // A manifest spoilt on disk.
    let file = src.join(
        manifest
            .digest()
            .to_string()
            .parse::<Digest>()
            .unwrap()
            .blob_path(),
    );
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[3] ^= 0x01;
    std::fs::write(&file, &bytes).unwrap();
    let err = ocikit_transport::inspect_raw(&at("oci", &src, ":v1"), &plain())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ReadImage { .. }), "{err:?}");

    // Archives, missing tags; a layout for `tags`.
    let err = ocikit_transport::inspect(&at("oci-archive", &src, ""), &plain())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NeedsLayout { .. }), "{err:?}");
    let err = ocikit_transport::inspect(&at("oci", &src, ":nope"), &plain())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::TagNotFound { .. }), "{err:?}");
    let err = ocikit_transport::tags(&at("oci", &src, ""), &plain())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NeedsRegistry { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_repository_lists_its_tags_and_a_missing_one_is_a_typed_failure() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    hand_made(&src).await;
    let addr = serve().await;
    let options = CopyOptions::new()
        .with_source(plain())
        .with_destination(plain());
    for tag in ["v2", "v1"] {
        copy(
            &at("oci", &src, ":v1"),
            &docker(&addr, &format!("team/app:{tag}")),
            &options,
        )
        .await
        .unwrap();
    }
    let listed = ocikit_transport::tags(&docker(&addr, "team/app"), &plain())
        .await
        .unwrap();
    assert_eq!(listed.repository, format!("{addr}/team/app"));
    let mut tags = listed.tags.clone();
    tags.sort();
    assert_eq!(tags, ["v1", "v2"]);
    assert_eq!(
        serde_json::to_value(&listed).unwrap(),
        json!({"repository": format!("{addr}/team/app"), "tags": listed.tags})
    );

    let err = ocikit_transport::tags(&docker(&addr, "nothere"), &plain())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Registry {
                operation: Operation::ListTags,
                ..
            }
        ),
        "{err:?}"
    );
    let err = ocikit_transport::inspect(&docker(&addr, "team/app:nope"), &plain())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Registry {
                operation: Operation::ReadManifest,
                ..
            }
        ),
        "{err:?}"
    );
}
