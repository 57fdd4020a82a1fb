//! `mutate`: a new config and manifest, layers untouched, on a layout, an archive and a
//! registry served in-process (whose traffic is counted at the server), and bad input
//! refused with nothing written.

use std::collections::BTreeMap;

use ocikit_layout::{ConfigChanges, ImageBuilder, Layout};
use ocikit_store::FsStore;
use ocikit_transport::{CopyOptions, Error, ImageName, MutateOptions, copy, mutate, parse_created};
use serde_json::Value;

use crate::registry::{docker, plain};
use crate::surgery::{big_image, blob_count, counted_registry, read};
use crate::{at, image, open};

/// Every change `mutate` takes but the platform.
fn all_changes() -> ConfigChanges {
    ConfigChanges::new()
        .env("MODE", "production")
        .env("PATH", "/opt/bin:/usr/bin")
        .entrypoint(["/bin/app", "--serve"])
        .cmd(["--port", "8080"])
        .label("team", "infra")
        .label("tier", "web")
        .annotation("org.example.reviewed", "yes")
        .annotation("org.example.ticket", "42")
        .user("1000:1000")
        .working_dir("/srv")
        .expose("8080/tcp")
        .expose("53/udp")
        .created(parse_created("2024-05-01T12:00:00Z").unwrap())
        .author("The Infra Team")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_layout_image_gets_a_new_config_and_manifest_and_keeps_its_layers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("images");
    let (layout, old_root) = image(&path, "v1").await;
    let (old_manifest, old_config) = read(&layout, &old_root).await;
    let blobs_before = blob_count(&path);

    let report = mutate(
        &at("oci", &path, ":v1"),
        &at("oci", &path, ":v2"),
        &all_changes(),
        &MutateOptions::new(),
    )
    .await
    .unwrap();
    // The source tag is untouched; the new one names a new manifest.
    assert_eq!(
        layout.resolve("v1").await.unwrap().digest(),
        old_root.digest()
    );
    let new_root = layout.resolve("v2").await.unwrap();
    assert_eq!(new_root.digest().to_string(), report.digest);
    assert_ne!(new_root.digest(), old_root.digest());
    assert_eq!(report.source_digest, old_root.digest().to_string());
    assert_eq!(report.image.name, ImageName::Tag("v2".into()));
    // Config and manifest are the only new blobs.
    assert_eq!(blob_count(&path), blobs_before + 2);
    assert_eq!(report.blobs_written, 2, "{report:?}");

    let (manifest, config) = read(&layout, &new_root).await;
    assert_eq!(manifest.layers(), old_manifest.layers());
    assert_eq!(config["rootfs"], old_config["rootfs"]);
    assert_eq!(config["history"], old_config["history"]);
    assert_eq!(manifest.config().digest().to_string(), report.config_digest);
    let exec = &config["config"];
    assert_eq!(
        exec["Env"],
        serde_json::json!(["MODE=production", "PATH=/opt/bin:/usr/bin"])
    );
    assert_eq!(
        exec["Entrypoint"],
        serde_json::json!(["/bin/app", "--serve"])
    );
    assert_eq!(exec["Cmd"], serde_json::json!(["--port", "8080"]));
    assert_eq!(exec["Labels"]["team"], "infra");
    assert_eq!(exec["User"], "1000:1000");
    assert_eq!(exec["WorkingDir"], "/srv");
    assert_eq!(
        exec["ExposedPorts"],
        serde_json::json!({"53/udp": {}, "8080/tcp": {}})
    );
    assert_eq!(config["created"], "2024-05-01T12:00:00Z");
    assert_eq!(config["author"], "The Infra Team");
    let annotations = manifest.annotations().clone().unwrap();
    assert_eq!(annotations["org.example.ticket"], "42");

    // The removals, on the mutated image.
    let removals = ConfigChanges::new()
        .remove_env("MODE")
        .remove_label("team")
        .remove_annotation("org.example.ticket")
        .remove_expose("53/udp");
    mutate(
        &at("oci", &path, ":v2"),
        &at("oci", &path, ":v3"),
        &removals,
        &MutateOptions::new(),
    )
    .await
    .unwrap();
    let (manifest, config) = read(&layout, &layout.resolve("v3").await.unwrap()).await;
    let exec = &config["config"];
    assert_eq!(exec["Env"], serde_json::json!(["PATH=/opt/bin:/usr/bin"]));
    assert_eq!(exec["Labels"], serde_json::json!({"tier": "web"}));
    assert_eq!(exec["ExposedPorts"], serde_json::json!({"8080/tcp": {}}));
    assert_eq!(
        manifest.annotations().clone().unwrap(),
        BTreeMap::from([("org.example.reviewed".to_string(), "yes".to_string())])
            .into_iter()
            .collect()
    );
    assert_eq!(manifest.layers(), old_manifest.layers());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_image_is_mutated_from_a_layout_into_archives_and_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("images");
    let (layout, old_root) = image(&path, "v1").await;
    let (_, old_config) = read(&layout, &old_root).await;
    let changes = ConfigChanges::new().env("WHERE", "archive");

    // Layout to oci-archive, then that archive to a docker-archive, then back to a layout.
    let oci_tar = dir.path().join("v2.tar");
    mutate(
        &at("oci", &path, ":v1"),
        &at("oci-archive", &oci_tar, ":v2"),
        &changes,
        &MutateOptions::new(),
    )
    .await
    .unwrap();
    let docker_tar = dir.path().join("v3.tar");
    mutate(
        &at("oci-archive", &oci_tar, ":v2"),
        &at("docker-archive", &docker_tar, ":demo:v3"),
        &ConfigChanges::new().label("from", "oci-archive"),
        &MutateOptions::new(),
    )
    .await
    .unwrap();
    let back = dir.path().join("back");
    let report = mutate(
        &at("docker-archive", &docker_tar, ":demo:v3"),
        &at("oci", &back, ":v4"),
        &ConfigChanges::new().user("nobody"),
        &MutateOptions::new(),
    )
    .await
    .unwrap();
    let layout = open(&back).await;
    let root = layout.resolve("v4").await.unwrap();
    // The report names the image as the destination holds it.
    assert_eq!(report.image.root.digest(), root.digest());
    assert!(report.image.root.annotations().is_none(), "{report:?}");
    assert_eq!(root.digest().to_string(), report.digest);
    let (_, config) = read(&layout, &root).await;
    let exec = &config["config"];
    assert!(
        exec["Env"]
            .as_array()
            .unwrap()
            .contains(&Value::from("WHERE=archive")),
        "{exec}"
    );
    assert_eq!(exec["Labels"]["from"], "oci-archive");
    assert_eq!(exec["User"], "nobody");
    // Every layer went through with its content (a docker-archive holds them
    // uncompressed: same diffIDs, other digests), the history as it was.
    assert_eq!(config["rootfs"], old_config["rootfs"]);
    assert_eq!(config["history"], old_config["history"]);
    assert_eq!(
        crate::unpacked(&layout, &root).await,
        crate::unpacked(&open(&path).await, &old_root).await
    );
    // The source layout is as it was: one tag.
    let tags = open(&path).await.tags().await.unwrap();
    assert_eq!(tags.len(), 1);
    assert_eq!(tags[0].1.digest(), old_root.digest());
}

#[tokio::test(flavor = "multi_thread")]
async fn within_a_registry_only_the_config_and_manifest_travel() {
    const LAYER: usize = 32 << 20;
    let (addr, traffic) = counted_registry().await;
    let dir = tempfile::tempdir().unwrap();
    let (layout, root) = big_image(&dir.path().join("src"), "v1", LAYER).await;
    let (manifest, _) = read(&layout, &root).await;
    let layer = manifest.layers()[0].digest().to_string();
    let copy_options = CopyOptions::new()
        .with_source(plain())
        .with_destination(plain());
    copy(
        &at("oci", &dir.path().join("src"), ":v1"),
        &docker(&addr, "team/app:v1"),
        &copy_options,
    )
    .await
    .unwrap();
    // The counter sees a layer go by: the push uploaded it whole.
    assert!(traffic.totals().0 >= LAYER as u64, "{:?}", traffic.totals());

    let options = MutateOptions::new()
        .with_source(plain())
        .with_destination(plain());
    let changes = ConfigChanges::new()
        .env("MODE", "production")
        .annotation("org.example.reviewed", "yes");
    for destination in ["team/app:v2", "other/app:v1"] {
        traffic.reset();
        let report = mutate(
            &docker(&addr, "team/app:v1"),
            &docker(&addr, destination),
            &changes,
            &options,
        )
        .await
        .unwrap();
        let (uploaded, downloaded) = traffic.totals();
        assert!(
            uploaded < 1 << 20,
            "{destination}: uploaded {uploaded} bytes"
        );
        assert!(
            downloaded < 1 << 20,
            "{destination}: downloaded {downloaded} bytes"
        );
        // The layer was named (HEAD, or a mount) but never read or written.
        for request in traffic.touching(&layer) {
            assert!(
                request.starts_with("HEAD ") || request.starts_with("POST "),
                "{destination}: {request}"
            );
        }
        assert_eq!(report.blobs_written, 1, "{destination}: {report:?}");
        assert_eq!(report.blobs, 2, "{report:?}");
        if destination.starts_with("other/") {
            assert_eq!(report.blobs_mounted, 1, "{report:?}");
        } else {
            assert_eq!(report.blobs_skipped, 1, "{report:?}");
        }
        eprintln!("{destination}: uploaded {uploaded} B, downloaded {downloaded} B");

        // The result, read back from the registry: same layer, new config.
        let (remote, pushed) =
            ocikit_transport::open_image(&docker(&addr, destination), &plain(), true, "test")
                .await
                .unwrap();
        assert_eq!(pushed.digest().to_string(), report.digest);
        let (new_manifest, config) = read(&remote, &pushed).await;
        assert_eq!(new_manifest.layers(), manifest.layers());
        assert!(
            config["config"]["Env"]
                .as_array()
                .unwrap()
                .contains(&Value::from("MODE=production"))
        );
    }
    // The source tag still names the original.
    let (_, still) =
        ocikit_transport::open_image(&docker(&addr, "team/app:v1"), &plain(), false, "test")
            .await
            .unwrap();
    assert_eq!(still.digest(), root.digest());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_index_needs_a_platform_and_its_image_is_mutated_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("images");
    let layout = Layout::create(FsStore::open(&path).await.unwrap())
        .await
        .unwrap();
    let mut index = ocikit_layout::IndexBuilder::new(&layout);
    for p in ["linux/amd64", "linux/arm64"] {
        let mut builder = ImageBuilder::new(&layout);
        builder.platform(&ocikit_digest::platform::parse(p).unwrap());
        builder.cmd([p]);
        let root = builder.write().await.unwrap();
        index.add(&root).await.unwrap();
    }
    let index_root = index.write_and_tag("multi").await.unwrap();
    let err = mutate(
        &at("oci", &path, ":multi"),
        &at("oci", &path, ":changed"),
        &ConfigChanges::new().env("A", "1"),
        &MutateOptions::new(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, Error::EditIndex { platforms, .. } if platforms.len() == 2),
        "{err:?}"
    );
    assert!(err.to_string().contains("linux/arm64"), "{err}");
    assert!(layout.resolve("changed").await.is_err());

    let arm =
        ocikit_layout::PlatformQuery::new(&ocikit_digest::platform::parse("linux/arm64").unwrap());
    mutate(
        &at("oci", &path, ":multi"),
        &at("oci", &path, ":changed"),
        &ConfigChanges::new().env("A", "1"),
        &MutateOptions::new().with_platform(Some(arm)),
    )
    .await
    .unwrap();
    let (_, config) = read(&layout, &layout.resolve("changed").await.unwrap()).await;
    assert_eq!(config["architecture"], "arm64");
    assert_eq!(config["config"]["Cmd"], serde_json::json!(["linux/arm64"]));
    assert_eq!(
        layout.resolve("multi").await.unwrap().digest(),
        index_root.digest()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("images");
    let (layout, root) = image(&path, "v1").await;
    let blobs_before = blob_count(&path);
    let index_before = std::fs::read(path.join("index.json")).unwrap();
    let elsewhere = dir.path().join("elsewhere");
    let unchanged = |what: &str| {
        assert_eq!(blob_count(&path), blobs_before, "{what}: blobs written");
        assert_eq!(
            std::fs::read(path.join("index.json")).unwrap(),
            index_before,
            "{what}: index.json changed"
        );
        assert!(!elsewhere.exists(), "{what}: a destination appeared");
    };
    let options = MutateOptions::new();

    // An environment variable whose name holds `=` (what `--env A` without one would be
    // if it were taken as a name), and an empty one.
    for (bad, kind) in [
        (
            ConfigChanges::new().env("A=B", "1"),
            ocikit_layout::image::ChangeErrorKind::EqualsInName,
        ),
        (
            ConfigChanges::new().env("", "1"),
            ocikit_layout::image::ChangeErrorKind::EmptyName,
        ),
        (
            ConfigChanges::new().expose("http"),
            ocikit_layout::image::ChangeErrorKind::BadPort,
        ),
    ] {
        for destination in [at("oci", &path, ":v2"), at("oci", &elsewhere, ":v2")] {
            let err = mutate(&at("oci", &path, ":v1"), &destination, &bad, &options)
                .await
                .unwrap_err();
            assert!(
                matches!(
                    &err,
                    Error::InvalidChanges {
                        source: ocikit_layout::Error::InvalidChange { kind: k, .. }
                    } if *k == kind
                ),
                "{err:?}"
            );
            unchanged("bad change");
        }
    }
    // Times that are not RFC 3339.
    for text in [
        "yesterday",
        "2024-05-01",
        "2024-05-01 12:00:00",
        "1714564800",
    ] {
        assert!(
            matches!(parse_created(text), Err(Error::InvalidTime { .. })),
            "{text}"
        );
    }
    assert_eq!(
        parse_created("2024-05-01T14:00:00+02:00").unwrap(),
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_714_564_800)
    );
    // A source tag the layout does not have.
    for destination in [at("oci", &path, ":v2"), at("oci", &elsewhere, ":v2")] {
        let err = mutate(
            &at("oci", &path, ":nope"),
            &destination,
            &ConfigChanges::new().env("A", "1"),
            &options,
        )
        .await
        .unwrap_err();
        assert!(
            matches!(err, Error::TagNotFound { ref tag, .. } if tag == "nope"),
            "{err:?}"
        );
        unchanged("missing tag");
    }
    // A destination without a tag.
    for destination in [at("oci", &path, ""), at("oci-archive", &elsewhere, "")] {
        let err = mutate(
            &at("oci", &path, ":v1"),
            &destination,
            &ConfigChanges::new().env("A", "1"),
            &options,
        )
        .await
        .unwrap_err();
        assert!(matches!(err, Error::EditNeedsTag { .. }), "{err:?}");
        unchanged("untagged destination");
    }
    assert_eq!(layout.resolve("v1").await.unwrap().digest(), root.digest());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_registry_index_is_mutated_one_platform_at_a_time_to_anywhere() {
    let addr = crate::registry::serve().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("images");
    let layout = Layout::create(FsStore::open(&path).await.unwrap())
        .await
        .unwrap();
    let mut index = ocikit_layout::IndexBuilder::new(&layout);
    for p in ["linux/amd64", "linux/arm64"] {
        let mut builder = ImageBuilder::new(&layout);
        builder.platform(&ocikit_digest::platform::parse(p).unwrap());
        builder.cmd([p]);
        let root = builder.write().await.unwrap();
        index.add(&root).await.unwrap();
    }
    index.write_and_tag("multi").await.unwrap();
    let copy_options = CopyOptions::new()
        .with_source(plain())
        .with_destination(plain());
    copy(
        &at("oci", &path, ":multi"),
        &docker(&addr, "multi:v1"),
        &copy_options,
    )
    .await
    .unwrap();
    let options = MutateOptions::new()
        .with_source(plain())
        .with_destination(plain());
    let changes = ConfigChanges::new().env("CHANGED", "yes");
    let query = |p: &str| {
        Some(ocikit_layout::PlatformQuery::new(
            &ocikit_digest::platform::parse(p).unwrap(),
        ))
    };

    // Without a platform: refused, before anything is pushed or pulled.
    let out = dir.path().join("out");
    for destination in [docker(&addr, "multi:changed"), at("oci", &out, ":amd")] {
        let err = mutate(&docker(&addr, "multi:v1"), &destination, &changes, &options)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::EditIndex { platforms, .. } if platforms.len() == 2),
            "{err:?}"
        );
    }
    assert!(!out.exists());
    let client = plain().client(&addr).unwrap();
    assert_eq!(client.tags("multi").await.unwrap(), vec!["v1".to_string()]);

    // Within the registry, one platform's image.
    let arm = options.clone().with_platform(query("linux/arm64"));
    mutate(
        &docker(&addr, "multi:v1"),
        &docker(&addr, "multi:arm"),
        &changes,
        &arm,
    )
    .await
    .unwrap();
    // From the registry into a layout, and from the layout's index into the registry.
    let amd = options.clone().with_platform(query("linux/amd64"));
    mutate(
        &docker(&addr, "multi:v1"),
        &at("oci", &out, ":amd"),
        &changes,
        &amd,
    )
    .await
    .unwrap();
    mutate(
        &at("oci", &path, ":multi"),
        &docker(&addr, "fromlayout:arm"),
        &changes,
        &arm,
    )
    .await
    .unwrap();
    let out_layout = open(&out).await;
    let mut results = vec![(
        "linux/amd64",
        read(&out_layout, &out_layout.resolve("amd").await.unwrap()).await,
    )];
    for (p, name) in [
        ("linux/arm64", "multi:arm"),
        ("linux/arm64", "fromlayout:arm"),
    ] {
        let (remote, root) =
            ocikit_transport::open_image(&docker(&addr, name), &plain(), true, "test")
                .await
                .unwrap();
        assert!(
            !ocikit_digest::media_type::is_index_like(root.media_type().as_ref()),
            "{name} is an index"
        );
        results.push((p, read(&remote, &root).await));
    }
    for (p, (_, config)) in results {
        let platform = ocikit_digest::platform::parse(p).unwrap();
        assert_eq!(
            config["architecture"],
            platform.architecture().to_string(),
            "{p}"
        );
        assert_eq!(config["config"]["Cmd"], serde_json::json!([p]));
        assert_eq!(config["config"]["Env"], serde_json::json!(["CHANGED=yes"]));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_docker_manifest_stays_one_and_takes_no_annotations() {
    use ocikit_digest::media_type;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("images");
    let (layout, root) = image(&path, "v1").await;
    // The same image under Docker schema 2 media types, written by hand.
    let mut manifest: Value =
        serde_json::from_slice(&layout.read_blob(&root).await.unwrap()).unwrap();
    manifest["mediaType"] = media_type::DOCKER_MANIFEST.into();
    manifest["config"]["mediaType"] = "application/vnd.docker.container.image.v1+json".into();
    for layer in manifest["layers"].as_array_mut().unwrap() {
        layer["mediaType"] = "application/vnd.docker.image.rootfs.diff.tar.gzip".into();
    }
    let docker = layout
        .put_json(media_type::DOCKER_MANIFEST, &manifest)
        .await
        .unwrap();
    layout.set_tag("docker", &docker).await.unwrap();

    let err = mutate(
        &at("oci", &path, ":docker"),
        &at("oci", &path, ":annotated"),
        &ConfigChanges::new().annotation("org.example.k", "v"),
        &MutateOptions::new(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::AnnotationsNeedOci { .. }), "{err:?}");
    assert!(layout.resolve("annotated").await.is_err());

    mutate(
        &at("oci", &path, ":docker"),
        &at("oci", &path, ":changed"),
        &ConfigChanges::new().env("A", "1"),
        &MutateOptions::new(),
    )
    .await
    .unwrap();
    let changed = layout.resolve("changed").await.unwrap();
    assert_eq!(
        changed.media_type().to_string(),
        media_type::DOCKER_MANIFEST
    );
    let written: Value =
        serde_json::from_slice(&layout.read_blob(&changed).await.unwrap()).unwrap();
    assert_eq!(written["mediaType"], media_type::DOCKER_MANIFEST);
    assert_eq!(
        written["config"]["mediaType"],
        "application/vnd.docker.container.image.v1+json"
    );
    assert_eq!(written["layers"], manifest["layers"]);
    assert!(written.get("annotations").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_platform_of_a_single_image_is_set_in_its_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("images");
    let (layout, _) = image(&path, "v1").await;
    let arm = ocikit_layout::PlatformQuery::new(
        &ocikit_digest::platform::parse("linux/arm64/v8").unwrap(),
    );
    mutate(
        &at("oci", &path, ":v1"),
        &at("oci", &path, ":arm"),
        &ConfigChanges::new(),
        &MutateOptions::new().with_platform(Some(arm)),
    )
    .await
    .unwrap();
    let (_, config) = read(&layout, &layout.resolve("arm").await.unwrap()).await;
    assert_eq!(config["os"], "linux");
    assert_eq!(config["architecture"], "arm64");
    assert_eq!(config["variant"], "v8");
}
