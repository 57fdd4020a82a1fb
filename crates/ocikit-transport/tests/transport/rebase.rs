//! `rebase`: an image's old base swapped for a new one, on a layout, through an archive and
//! within a registry served in-process (whose traffic is counted at the server), and images
//! that are not built on the old base, a new base of another platform and a missing base
//! refused with nothing written.

use std::path::Path;

use ocikit_digest::oci_spec::image::Descriptor;
use ocikit_layout::{ImageBuilder, LayerSpec, Layout, PlatformQuery};
use ocikit_store::FsStore;
use ocikit_transport::{CopyOptions, EditOptions, Error, RebaseOptions, copy, rebase};
use serde_json::Value;

use crate::registry::{docker, plain};
use crate::surgery::{blob_count, counted_registry, read};
use crate::{at, files, open};

const BASE_DIGEST: &str = "org.opencontainers.image.base.digest";
const BASE_NAME: &str = "org.opencontainers.image.base.name";

/// A layer of the files `entries` (path, content).
async fn layer(builder: &mut ImageBuilder, entries: &[(&str, &str)], created_by: &str) {
    let tree = tempfile::tempdir().unwrap();
    for (path, content) in entries {
        let path = tree.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
    builder
        .add_layer_from_dir(tree.path(), LayerSpec::new().created_by(created_by))
        .await
        .unwrap();
}

/// A base image of two layers, tagged `tag`: `etc/os-release` says `name`, and a trailing
/// history entry without a layer (a `CMD`).
async fn base(layout: &Layout, tag: &str, name: &str, platform: &str) -> Descriptor {
    let mut builder = ImageBuilder::new(layout);
    builder
        .platform(&ocikit_digest::platform::parse(platform).unwrap())
        .cmd(["/bin/sh"]);
    layer(
        &mut builder,
        &[("etc/os-release", &format!("NAME={name}\n"))],
        &format!("{name} base"),
    )
    .await;
    layer(
        &mut builder,
        &[(&format!("usr/lib/{name}.so") as &str, name)],
        &format!("{name} libs"),
    )
    .await;
    builder.add_empty_history(format!("CMD for {name}"), None);
    builder.write_and_tag(tag).await.unwrap()
}

/// A layout at `dir` with bases `a` and `b` (linux/amd64), `arm` (linux/arm64), and `app`:
/// `a` with one layer of its own and an env.
async fn images(dir: &Path) -> Layout {
    let layout = Layout::create(FsStore::open(dir).await.unwrap())
        .await
        .unwrap();
    let a = base(&layout, "a", "alpha", "linux/amd64").await;
    base(&layout, "b", "beta", "linux/amd64").await;
    base(&layout, "arm", "gamma", "linux/arm64").await;
    let query = PlatformQuery::new(&ocikit_digest::platform::parse("linux/amd64").unwrap());
    let mut app = ImageBuilder::from_image(&layout, &a, &query).await.unwrap();
    app.env("APP_MODE", "production");
    layer(&mut app, &[("app/run.sh", "echo app\n")], "COPY run.sh").await;
    app.write_and_tag("app").await.unwrap();
    layout
}

/// The image tagged `tag` in the layout at `path` copied into `DIR/TAG.tar`.
async fn archive(path: &Path, dir: &Path, tag: &str) -> std::path::PathBuf {
    let file = dir.join(format!("{tag}.tar"));
    copy(
        &at("oci", path, &format!(":{tag}")),
        &at("oci-archive", &file, &format!(":{tag}")),
        &CopyOptions::new(),
    )
    .await
    .unwrap();
    file
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.to_string())
        .collect()
}

/// The rebased image `root` of `layout` checked against the app and the bases of `images`:
/// layers, diffIDs, history, config, annotations and unpacked tree.
async fn check_rebased(layout: &Layout, root: &Descriptor, images: &Layout, name: Option<&str>) {
    let app_root = images.resolve("app").await.unwrap();
    let b_root = images.resolve("b").await.unwrap();
    let (app, app_config) = read(images, &app_root).await;
    let (b, b_config) = read(images, &b_root).await;
    let (rebased, config) = read(layout, root).await;
    // Layers and diffIDs: the new base's, then the app's top one.
    let mut layers = b.layers().clone();
    layers.push(app.layers()[2].clone());
    assert_eq!(rebased.layers(), &layers);
    let mut ids = strings(&b_config["rootfs"]["diff_ids"]);
    ids.push(strings(&app_config["rootfs"]["diff_ids"])[2].clone());
    assert_eq!(strings(&config["rootfs"]["diff_ids"]), ids);
    // History: the new base's three entries (its CMD included), then the app's own; the old
    // base's CMD is gone.
    let mut history = b_config["history"].as_array().unwrap().clone();
    history.push(app_config["history"].as_array().unwrap()[3].clone());
    assert_eq!(config["history"].as_array().unwrap(), &history);
    assert_eq!(history[3]["created_by"], "COPY run.sh");
    assert!(!config.to_string().contains("CMD for alpha"));
    // The rest of the config is the app's.
    assert_eq!(config["config"], app_config["config"]);
    assert_eq!(config["created"], app_config["created"]);
    // Annotations.
    let annotations = rebased.annotations().clone().unwrap_or_default();
    assert_eq!(
        annotations.get(BASE_DIGEST),
        Some(&b_root.digest().to_string())
    );
    assert_eq!(annotations.get(BASE_NAME).map(String::as_str), name);
    // The tree: the new base's, with the app's file.
    let tree = crate::unpacked(layout, root).await;
    let mut expected = crate::unpacked(images, &b_root).await;
    expected.push(("app/run.sh".into(), b"echo app\n".to_vec()));
    expected.sort();
    assert_eq!(tree, expected);
    assert!(
        tree.iter()
            .any(|(p, b)| p == Path::new("etc/os-release") && b == b"NAME=beta\n")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_image_is_rebased_on_a_layout_and_through_archives() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("images");
    let layout = images(&path).await;
    let options = RebaseOptions::new();

    // Within the layout: only the config and the manifest are written.
    let before = blob_count(&path);
    let report = rebase(
        &at("oci", &path, ":app"),
        &at("oci", &path, ":a"),
        &at("oci", &path, ":b"),
        &at("oci", &path, ":rebased"),
        &options,
    )
    .await
    .unwrap();
    assert_eq!(blob_count(&path), before + 2, "{report:?}");
    assert_eq!(report.blobs_written, 2, "{report:?}");
    let root = layout.resolve("rebased").await.unwrap();
    assert_eq!(root.digest().to_string(), report.digest);
    check_rebased(&layout, &root, &layout, None).await;

    // Each image in an archive of its own, the result into a new layout.
    let (app, a, b) = (
        archive(&path, dir.path(), "app").await,
        archive(&path, dir.path(), "a").await,
        archive(&path, dir.path(), "b").await,
    );
    let out = dir.path().join("out");
    let report = rebase(
        &at("oci-archive", &app, ":app"),
        &at("oci-archive", &a, ":a"),
        &at("oci-archive", &b, ":b"),
        &at("oci", &out, ":rebased"),
        &options,
    )
    .await
    .unwrap();
    let out_layout = open(&out).await;
    let out_root = out_layout.resolve("rebased").await.unwrap();
    assert_eq!(out_root.digest().to_string(), report.digest);
    assert_eq!(out_root.digest(), root.digest());
    check_rebased(&out_layout, &out_root, &layout, None).await;
    // Only the rebased image's blobs: the old base's layers did not come along.
    assert_eq!(blob_count(&out), 5);

    // A layout's image into an oci-archive.
    let rebased = dir.path().join("rebased.tar");
    let report = rebase(
        &at("oci", &path, ":app"),
        &at("oci", &path, ":a"),
        &at("oci", &path, ":b"),
        &at("oci-archive", &rebased, ":rebased"),
        &options,
    )
    .await
    .unwrap();
    assert_eq!(report.digest, root.digest().to_string());
}

#[tokio::test(flavor = "multi_thread")]
async fn within_a_registry_the_new_base_is_mounted_and_nothing_uploaded_again() {
    let (addr, traffic) = counted_registry().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("images");
    let layout = images(&path).await;
    let push = |tag: &'static str, to: &'static str| {
        let (path, addr) = (path.clone(), addr.clone());
        async move {
            copy(
                &at("oci", &path, &format!(":{tag}")),
                &docker(&addr, to),
                &CopyOptions::new()
                    .with_source(plain())
                    .with_destination(plain()),
            )
            .await
            .unwrap();
        }
    };
    push("a", "base/alpha:v1").await;
    push("b", "base/beta:v2").await;
    push("app", "team/app:v1").await;
    let app_root = layout.resolve("app").await.unwrap();
    let (app, _) = read(&layout, &app_root).await;
    let top = app.layers()[2].digest().to_string();
    let options = RebaseOptions::new().with_edit(
        EditOptions::new()
            .with_source(plain())
            .with_destination(plain()),
    );
    traffic.reset();
    let report = rebase(
        &docker(&addr, "team/app:v1"),
        &docker(&addr, "base/alpha:v1"),
        &docker(&addr, "base/beta:v2"),
        &docker(&addr, "team/app:rebased"),
        &options,
    )
    .await
    .unwrap();
    eprintln!("{report:?}");
    // No layer was read or written: the new base's were mounted from its repository, the
    // app's own found where it is.
    for digest in app.layers().iter().chain(
        read(&layout, &layout.resolve("b").await.unwrap())
            .await
            .0
            .layers(),
    ) {
        for request in traffic.touching(digest.digest().as_ref()) {
            assert!(
                request.starts_with("HEAD ") || request.starts_with("POST "),
                "{request}"
            );
        }
    }
    assert!(!traffic.touching(&top).is_empty());
    assert_eq!(report.blobs_mounted, 2, "{report:?}");
    // The config is the one blob uploaded.
    assert_eq!(report.blobs_written, 1, "{report:?}");
    let (uploaded, _) = traffic.totals();
    assert!(uploaded < 16 << 10, "uploaded {uploaded} bytes");

    // Read back through a pull: the same image as a rebase on the layout, but for the name.
    let pulled = dir.path().join("pulled");
    copy(
        &docker(&addr, "team/app:rebased"),
        &at("oci", &pulled, ":pulled"),
        &CopyOptions::new().with_source(plain()),
    )
    .await
    .unwrap();
    let local = open(&pulled).await;
    let root = local.resolve("pulled").await.unwrap();
    assert_eq!(root.digest().to_string(), report.digest);
    check_rebased(
        &local,
        &root,
        &layout,
        Some(&format!("{addr}/base/beta:v2")),
    )
    .await;

    // Out of the registry into a layout: the image and the new base pulled, the old base
    // only read; the same image as within the registry.
    let out = dir.path().join("out");
    let report_out = rebase(
        &docker(&addr, "team/app:v1"),
        &docker(&addr, "base/alpha:v1"),
        &docker(&addr, "base/beta:v2"),
        &at("oci", &out, ":rebased"),
        &options,
    )
    .await
    .unwrap();
    assert_eq!(report_out.digest, report.digest);
    let out_layout = open(&out).await;
    let out_root = out_layout.resolve("rebased").await.unwrap();
    check_rebased(
        &out_layout,
        &out_root,
        &layout,
        Some(&format!("{addr}/base/beta:v2")),
    )
    .await;
    assert_eq!(blob_count(&out), 5);

    // The new base from a layout, the app in the registry: its layers are uploaded.
    let report = rebase(
        &docker(&addr, "team/app:v1"),
        &at("oci", &path, ":a"),
        &at("oci", &path, ":b"),
        &docker(&addr, "other/app:rebased"),
        &options,
    )
    .await
    .unwrap();
    assert_eq!(report.blobs_written, 3, "{report:?}");
    assert_eq!(report.blobs_mounted, 1, "{report:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_rebases_are_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("images");
    images(&path).await;
    let before = blob_count(&path);
    let snapshot = files(&path);
    let options = RebaseOptions::new();
    let new = dir.path().join("new");

    for destination in [at("oci", &path, ":rebased"), at("oci", &new, ":rebased")] {
        // Not built on `b`: its first layer differs.
        let err = rebase(
            &at("oci", &path, ":app"),
            &at("oci", &path, ":b"),
            &at("oci", &path, ":a"),
            &destination,
            &options,
        )
        .await
        .unwrap_err();
        let Error::NotBuiltOn {
            layer,
            image_diff_id,
            ..
        } = &err
        else {
            panic!("{err:?}");
        };
        assert_eq!(*layer, 1);
        assert!(image_diff_id.is_some());
        let message = err.to_string();
        assert!(
            message.contains("is not built on") && message.contains(":b ("),
            "{message}"
        );
        // Nor on the app itself (more layers than the image).
        let err = rebase(
            &at("oci", &path, ":a"),
            &at("oci", &path, ":app"),
            &at("oci", &path, ":b"),
            &destination,
            &options,
        )
        .await
        .unwrap_err();
        assert!(
            matches!(
                err,
                Error::NotBuiltOn {
                    layer: 3,
                    image_diff_id: None,
                    ..
                }
            ),
            "{err:?}"
        );
        // A new base of another platform.
        let err = rebase(
            &at("oci", &path, ":app"),
            &at("oci", &path, ":a"),
            &at("oci", &path, ":arm"),
            &destination,
            &options,
        )
        .await
        .unwrap_err();
        let Error::RebasePlatform {
            image_platform,
            base_platform,
            ..
        } = &err
        else {
            panic!("{err:?}");
        };
        assert_eq!(
            (image_platform.as_str(), base_platform.as_str()),
            ("linux/amd64", "linux/arm64")
        );
        assert!(err.to_string().contains("linux/arm64"), "{err}");
        // A base that is not there.
        let err = rebase(
            &at("oci", &path, ":app"),
            &at("oci", &path, ":a"),
            &at("oci", &path, ":missing"),
            &destination,
            &options,
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
        let err = rebase(
            &at("oci", &path, ":app"),
            &at("oci", &dir.path().join("nowhere"), ":a"),
            &at("oci", &path, ":b"),
            &destination,
            &options,
        )
        .await
        .unwrap_err();
        assert!(!matches!(err, Error::NotBuiltOn { .. }), "{err:?}");
    }
    // A destination without a tag.
    assert!(matches!(
        rebase(
            &at("oci", &path, ":app"),
            &at("oci", &path, ":a"),
            &at("oci", &path, ":b"),
            &at("oci", &path, ""),
            &options,
        )
        .await,
        Err(Error::EditNeedsTag { .. })
    ));
    assert!(!new.exists());
    assert!(!dir.path().join("nowhere").exists());
    assert_eq!(blob_count(&path), before);
    assert_eq!(files(&path), snapshot);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_base_given_as_an_index_is_picked_for_the_image_s_platform() {
    use ocikit_digest::media_type;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("images");
    let layout = images(&path).await;
    let mut index = ocikit_layout::IndexBuilder::new(&layout);
    index
        .add(&layout.resolve("arm").await.unwrap())
        .await
        .unwrap();
    index
        .add(&layout.resolve("b").await.unwrap())
        .await
        .unwrap();
    index.write_and_tag("multi").await.unwrap();
    // The old base as an index too.
    let mut old = ocikit_layout::IndexBuilder::new(&layout);
    old.add(&layout.resolve("a").await.unwrap()).await.unwrap();
    old.write_and_tag("old-multi").await.unwrap();
    rebase(
        &at("oci", &path, ":app"),
        &at("oci", &path, ":old-multi"),
        &at("oci", &path, ":multi"),
        &at("oci", &path, ":rebased"),
        &RebaseOptions::new(),
    )
    .await
    .unwrap();
    let root = layout.resolve("rebased").await.unwrap();
    check_rebased(&layout, &root, &layout, None).await;
    // An arm64 image gets the index's arm64 image (not this machine's platform's).
    let arm = layout.resolve("arm").await.unwrap();
    let query = PlatformQuery::new(&ocikit_digest::platform::parse("linux/arm64").unwrap());
    let mut app = ImageBuilder::from_image(&layout, &arm, &query)
        .await
        .unwrap();
    layer(&mut app, &[("app/run.sh", "echo arm\n")], "COPY run.sh").await;
    let arm_app = app.write_and_tag("arm-app").await.unwrap();
    rebase(
        &at("oci", &path, ":arm-app"),
        &at("oci", &path, ":arm"),
        &at("oci", &path, ":multi"),
        &at("oci", &path, ":arm-rebased"),
        &RebaseOptions::new(),
    )
    .await
    .unwrap();
    let (arm_rebased, _) = read(&layout, &layout.resolve("arm-rebased").await.unwrap()).await;
    assert_eq!(
        arm_rebased.layers(),
        read(&layout, &arm_app).await.0.layers()
    );

    // A Docker schema 2 image keeps its manifest type and gets no annotations (it has
    // none); the new base's layers get Docker media types.
    let app = layout.resolve("app").await.unwrap();
    let mut manifest: Value =
        serde_json::from_slice(&layout.read_blob(&app).await.unwrap()).unwrap();
    manifest["mediaType"] = media_type::DOCKER_MANIFEST.into();
    manifest["config"]["mediaType"] = media_type::DOCKER_CONFIG.into();
    manifest.as_object_mut().unwrap().remove("annotations");
    for layer in manifest["layers"].as_array_mut().unwrap() {
        layer["mediaType"] = media_type::DOCKER_LAYER_GZIP.into();
    }
    let docker = layout
        .put_json(media_type::DOCKER_MANIFEST, &manifest)
        .await
        .unwrap();
    layout.set_tag("docker", &docker).await.unwrap();
    rebase(
        &at("oci", &path, ":docker"),
        &at("oci", &path, ":a"),
        &at("oci", &path, ":b"),
        &at("oci", &path, ":docker-rebased"),
        &RebaseOptions::new(),
    )
    .await
    .unwrap();
    let root = layout.resolve("docker-rebased").await.unwrap();
    assert_eq!(root.media_type().to_string(), media_type::DOCKER_MANIFEST);
    let (rebased, config) = read(&layout, &root).await;
    assert!(rebased.annotations().is_none());
    let b_root = layout.resolve("b").await.unwrap();
    let (b, b_config) = read(&layout, &b_root).await;
    for (layer, base_layer) in rebased.layers().iter().zip(b.layers()) {
        assert_eq!(layer.digest(), base_layer.digest());
        assert_eq!(
            layer.media_type().to_string(),
            media_type::DOCKER_LAYER_GZIP
        );
    }
    assert_eq!(
        strings(&config["rootfs"]["diff_ids"])[..2],
        strings(&b_config["rootfs"]["diff_ids"])[..]
    );
}
