//! The one-call verbs of `ocikit build`, `diff` and `repack` ([`ocikit_layout::build`],
//! [`ocikit_layout::repack`]) and the [`ConfigChanges`] they apply: on every backend, on
//! real trees and tar files, and refusing bad input without writing anything.
#![cfg_attr(not(feature = "gzip"), allow(unused_imports, dead_code))]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use ocikit_digest::oci_spec::image::{Descriptor, ImageConfiguration};
use ocikit_digest::{Digest, descriptor, platform};
use ocikit_layout::build::{BuildRequest, build, build_at};
use ocikit_layout::image::ChangeErrorKind;
use ocikit_layout::repack::{ChangeKind, DiffOptions, RepackOptions, diff, repack};
use ocikit_layout::{
    ConfigChanges, Error, Event, ImageConfig, Layout, Operation, Progress, UnpackOptions, unpack,
};
use serde_json::json;

use crate::image::{blob_count, config_json, layouts, make_tree, snapshot, tar_with};

/// A progress sink that keeps every step event, and the events it kept.
fn recorder() -> (Progress, Arc<Mutex<Vec<Event>>>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let kept = Arc::clone(&events);
    let progress = Progress::new(move |event| {
        if matches!(
            event,
            Event::StepStarted { .. } | Event::StepProgress { .. } | Event::StepDone { .. }
        ) {
            kept.lock().unwrap().push(event.clone());
        }
    });
    (progress, events)
}

/// The step starts among `events`: operation, name, size.
fn starts(events: &[Event]) -> Vec<(Operation, String, Option<u64>)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::StepStarted {
                operation,
                name,
                size,
            } => Some((*operation, name.clone(), *size)),
            _ => None,
        })
        .collect()
}

/// A request for `tag` with reproducible dates (whatever the environment says).
fn request(tag: &str) -> BuildRequest {
    let mut request = BuildRequest::new(tag);
    request.source_date_epoch = Some(1_700_000_000);
    request
}

fn linux_amd64() -> ocikit_digest::oci_spec::image::Platform {
    platform::parse("linux/amd64").unwrap()
}

#[cfg(feature = "gzip")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_packs_directories_and_tar_files_in_order_with_the_changes() {
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("tree");
    make_tree(&tree);
    let tar = work.path().join("extra.tar");
    std::fs::write(
        &tar,
        tar_with(&[("etc/motd", b"from the tar\n"), ("opt/app", b"app\n")]),
    )
    .unwrap();
    for (layout, _guard) in layouts().await {
        let (progress, events) = recorder();
        let mut request = request("v1").layer(&tree).layer(&tar).progress(progress);
        request.created_by = Some("test build".into());
        request.changes = ConfigChanges::new()
            .platform(platform::parse("linux/x86_64").unwrap())
            .env("PATH", "/usr/bin:/bin")
            .env("GREETING", "hi")
            .entrypoint(["/opt/app", "--serve"])
            .cmd(["--port", "80"])
            .label("org.example.team", "a")
            .annotation("org.example.note", "n")
            .working_dir("/opt")
            .user("1000:1000")
            .expose("8080/tcp")
            .author("someone");
        let built = build(&layout, &request).await.unwrap();

        assert_eq!(
            layout.resolve("v1").await.unwrap().digest(),
            built.manifest.digest()
        );
        assert_eq!(built.layers.len(), 2);
        assert_eq!(built.layers[0].source, tree);
        assert_eq!(built.layers[1].source, tar);
        let (manifest, config) = config_json(&layout, &built.manifest).await;
        let layer_digests: Vec<&str> = manifest["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["digest"].as_str().unwrap())
            .collect();
        let built_digests: Vec<String> = built
            .layers
            .iter()
            .map(|l| l.descriptor.digest().to_string())
            .collect();
        assert_eq!(layer_digests, built_digests);
        assert_eq!(manifest["annotations"]["org.example.note"], "n");
        // x86_64 is written amd64; created is SOURCE_DATE_EPOCH.
        assert_eq!(config["architecture"], "amd64");
        assert_eq!(config["created"], "2023-11-14T22:13:20Z");
        assert_eq!(config["author"], "someone");
        assert_eq!(
            config["config"],
            json!({
                "Env": ["PATH=/usr/bin:/bin", "GREETING=hi"],
                "Entrypoint": ["/opt/app", "--serve"],
                "Cmd": ["--port", "80"],
                "Labels": {"org.example.team": "a"},
                "WorkingDir": "/opt",
                "User": "1000:1000",
                "ExposedPorts": {"8080/tcp": {}},
            })
        );
        assert_eq!(config["history"][0]["created_by"], "test build");
        assert_eq!(config["history"].as_array().unwrap().len(), 2);

        // Unpacked: the tree, with the tar's files on top.
        let out = tempfile::tempdir().unwrap();
        let root = out.path().join("rootfs");
        unpack(&layout, &built.manifest, &root, &UnpackOptions::new())
            .await
            .unwrap();
        assert_eq!(
            std::fs::read(root.join("etc/motd")).unwrap(),
            b"from the tar\n"
        );
        assert_eq!(std::fs::read(root.join("opt/app")).unwrap(), b"app\n");
        assert!(root.join("usr/bin/tool").is_file());

        // One step per source: a walk (no size) then the tar file (its size, read to the
        // end), each finished.
        let events = events.lock().unwrap();
        let tar_size = std::fs::metadata(&tar).unwrap().len();
        assert_eq!(
            starts(&events),
            vec![
                (Operation::Build, tree.display().to_string(), None),
                (Operation::Build, tar.display().to_string(), Some(tar_size)),
            ]
        );
        assert!(events.iter().any(|e| matches!(
            e,
            Event::StepProgress { bytes, .. } if *bytes == tar_size
        )));
        let done = events
            .iter()
            .filter(|e| matches!(e, Event::StepDone { .. }))
            .count();
        assert_eq!(done, 2);
    }
}

#[cfg(feature = "gzip")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_on_a_base_keeps_its_layers_and_replaces_its_env() {
    let work = tempfile::tempdir().unwrap();
    let (lower, upper) = (work.path().join("lower"), work.path().join("upper"));
    std::fs::create_dir_all(lower.join("etc")).unwrap();
    std::fs::write(lower.join("etc/base"), b"base\n").unwrap();
    std::fs::create_dir_all(&upper).unwrap();
    std::fs::write(upper.join("app"), b"app\n").unwrap();
    for (layout, _guard) in layouts().await {
        let mut base = request("base").layer(&lower);
        base.changes = ConfigChanges::new()
            .platform(linux_amd64())
            .env("PATH", "/bin")
            .env("MODE", "base")
            .label("keep", "1")
            .label("drop", "1");
        let base = build(&layout, &base).await.unwrap();

        let mut app = request("app").layer(&upper).base(base.manifest.clone());
        app.changes = ConfigChanges::new()
            .env("MODE", "app")
            .remove_env("PATH")
            .remove_label("drop");
        let app = build(&layout, &app).await.unwrap();
        let (manifest, config) = config_json(&layout, &app.manifest).await;
        assert_eq!(manifest["layers"].as_array().unwrap().len(), 2);
        assert_eq!(
            manifest["annotations"]["org.opencontainers.image.base.digest"],
            base.manifest.digest().to_string()
        );
        // The base's platform is kept when the request names none.
        assert_eq!(config["architecture"], "amd64");
        assert_eq!(config["config"]["Env"], json!(["MODE=app"]));
        assert_eq!(config["config"]["Labels"], json!({"keep": "1"}));
    }
}

#[cfg(feature = "gzip")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_refuses_bad_input_and_tags_nothing() {
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(tree.join("f"), b"f").unwrap();
    let text = work.path().join("notes.txt");
    std::fs::write(&text, vec![b'x'; 4096]).unwrap();
    for (layout, _guard) in layouts().await {
        // Refused before anything is written.
        let missing = work.path().join("no-such-source");
        match build(&layout, &request("x").layer(&tree).layer(&missing)).await {
            Err(Error::LayerSourceNotFound { path }) => assert_eq!(path, missing),
            other => panic!("a missing source was not refused: {other:?}"),
        }
        assert!(matches!(
            build(&layout, &request("../x").layer(&tree)).await,
            Err(Error::InvalidTag { .. })
        ));
        let mut bad_env = request("x").layer(&tree);
        bad_env.changes = ConfigChanges::new().env("A=B", "1");
        assert!(matches!(
            build(&layout, &bad_env).await,
            Err(Error::InvalidChange {
                field: "env",
                kind: ChangeErrorKind::EqualsInName,
                ..
            })
        ));
        assert_eq!(blob_count(&layout).await, 0, "a refused build wrote blobs");

        // A source that is not a tar: named, and the codec says why.
        match build(&layout, &request("x").layer(&tree).layer(&text)).await {
            Err(Error::LayerSource { path, source }) => {
                assert_eq!(path, text);
                assert!(
                    matches!(*source, Error::Codec(ocikit_codec::Error::NotTar { .. })),
                    "{source:?}"
                );
            }
            other => panic!("a text file was taken as a tar: {other:?}"),
        }
        // A base that is not in the layout.
        let bytes = br#"{"schemaVersion":2}"#;
        let absent = descriptor::new(
            "application/vnd.oci.image.manifest.v1+json",
            &Digest::sha256(bytes),
            bytes.len() as u64,
        )
        .unwrap();
        match build(&layout, &request("x").layer(&tree).base(absent.clone())).await {
            Err(Error::Base { digest, .. }) => assert_eq!(digest, absent.digest().to_string()),
            other => panic!("a missing base was used: {other:?}"),
        }
        assert!(
            layout.tags().await.unwrap().is_empty(),
            "a failed build tagged"
        );
    }
}

#[cfg(feature = "gzip")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_at_creates_a_layout_only_for_a_build_that_succeeds() {
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(tree.join("f"), b"f").unwrap();
    let text = work.path().join("notes.txt");
    std::fs::write(&text, b"not a tar at all").unwrap();
    let target = work.path().join("images");

    let failed = build_at(&target, &request("v1").layer(&tree).layer(&text)).await;
    assert!(
        matches!(failed, Err(Error::LayerSource { .. })),
        "{failed:?}"
    );
    assert!(!target.exists(), "a failed build left a layout");
    // Nothing of its staging is left beside it either.
    let left: Vec<_> = std::fs::read_dir(work.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 2, "{left:?}");

    let built = build_at(&target, &request("v1").layer(&tree))
        .await
        .unwrap();
    assert!(target.join("oci-layout").is_file());
    let store = ocikit_store::FsStore::open(&target).await.unwrap();
    let layout = Layout::open(store).await.unwrap();
    assert_eq!(
        layout.resolve("v1").await.unwrap().digest(),
        built.manifest.digest()
    );
    // An existing layout is written in place; a failure there changes no tag.
    let again = build_at(&target, &request("v1").layer(&text)).await;
    assert!(again.is_err());
    assert_eq!(
        layout.resolve("v1").await.unwrap().digest(),
        built.manifest.digest()
    );
}

#[test]
fn config_changes_replace_in_place_remove_and_keep_unknown_fields() {
    let digest = Digest::sha256(b"");
    let before = json!({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": []},
        "config": {
            "Env": ["PATH=/bin", "A=1", "B=2"],
            "Labels": {"keep": "k", "drop": "d"},
            "ExposedPorts": {"80/tcp": {}, "443/tcp": {}},
            "Healthcheck": {"Test": ["CMD", "true"]},
        },
        "vendor.field": 7,
    });
    let mut config = ImageConfig::parse(&digest, before.to_string().as_bytes()).unwrap();
    let created = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    ConfigChanges::new()
        .env("PATH", "/usr/bin:/bin")
        .env("C", "3")
        .remove_env("A")
        .remove_label("drop")
        .label("new", "n")
        .remove_expose("443/tcp")
        .expose("53/udp")
        .user("nobody")
        .created(created)
        .author("me")
        .platform(platform::parse("linux/arm64/v8").unwrap())
        .apply_to_config(&mut config)
        .unwrap();
    let after = config.as_json();
    let exec = &after["config"];
    // PATH keeps its place; A goes; C is appended.
    assert_eq!(exec["Env"], json!(["PATH=/usr/bin:/bin", "B=2", "C=3"]));
    assert_eq!(exec["Labels"], json!({"keep": "k", "new": "n"}));
    assert_eq!(exec["ExposedPorts"], json!({"80/tcp": {}, "53/udp": {}}));
    assert_eq!(exec["User"], "nobody");
    assert_eq!(exec["Healthcheck"], json!({"Test": ["CMD", "true"]}));
    assert_eq!(after["vendor.field"], 7);
    assert_eq!(after["created"], "2023-11-14T22:13:20Z");
    assert_eq!(after["author"], "me");
    assert_eq!(after["architecture"], "arm64");
    assert_eq!(after["variant"], "v8");

    // Removing what is not there changes nothing, and creates no empty maps.
    let bare = ImageConfig::new(&linux_amd64());
    let mut edited = bare.clone();
    ConfigChanges::new()
        .remove_env("NOPE")
        .remove_label("nope")
        .remove_expose("1/tcp")
        .apply_to_config(&mut edited)
        .unwrap();
    assert_eq!(edited, bare);

    // Annotations, and the same changes on oci-spec's typed configuration.
    let mut annotations = BTreeMap::from([
        ("keep".to_string(), "k".to_string()),
        ("drop".to_string(), "d".to_string()),
    ]);
    ConfigChanges::new()
        .remove_annotation("drop")
        .annotation("add", "a")
        .apply_to_annotations(&mut annotations)
        .unwrap();
    assert_eq!(
        annotations,
        BTreeMap::from([
            ("add".to_string(), "a".to_string()),
            ("keep".to_string(), "k".to_string()),
        ])
    );
    let mut typed: ImageConfiguration = serde_json::from_value(before).unwrap();
    ConfigChanges::new()
        .env("A", "changed")
        .cmd(["/bin/sh"])
        .apply(&mut typed)
        .unwrap();
    let exec = typed.config().as_ref().unwrap();
    assert_eq!(
        exec.env().as_deref().unwrap(),
        ["PATH=/bin", "A=changed", "B=2"]
    );
    assert_eq!(exec.cmd().as_deref().unwrap(), ["/bin/sh"]);
}

#[test]
fn config_changes_refuse_bad_input_and_change_nothing() {
    let future = SystemTime::UNIX_EPOCH + Duration::from_secs(400_000_000_000);
    let cases: Vec<(ConfigChanges, &str, ChangeErrorKind)> = vec![
        (
            ConfigChanges::new().env("", "x"),
            "env",
            ChangeErrorKind::EmptyName,
        ),
        (
            ConfigChanges::new().env("A=B", "x"),
            "env",
            ChangeErrorKind::EqualsInName,
        ),
        (
            ConfigChanges::new().env("A", "x\0y"),
            "env",
            ChangeErrorKind::Nul,
        ),
        (
            ConfigChanges::new().remove_env("A=1"),
            "env",
            ChangeErrorKind::EqualsInName,
        ),
        (
            ConfigChanges::new().env("A", "1").remove_env("A"),
            "env",
            ChangeErrorKind::SetAndRemoved,
        ),
        (
            ConfigChanges::new().label("", "x"),
            "label",
            ChangeErrorKind::EmptyName,
        ),
        (
            ConfigChanges::new().label("k", "1").remove_label("k"),
            "label",
            ChangeErrorKind::SetAndRemoved,
        ),
        (
            ConfigChanges::new().annotation("", "x"),
            "annotation",
            ChangeErrorKind::EmptyName,
        ),
        (
            ConfigChanges::new().expose("http"),
            "expose",
            ChangeErrorKind::BadPort,
        ),
        (
            ConfigChanges::new().expose("70000/tcp"),
            "expose",
            ChangeErrorKind::BadPort,
        ),
        (
            ConfigChanges::new().expose("80/icmp"),
            "expose",
            ChangeErrorKind::BadPort,
        ),
        (
            ConfigChanges::new().platform(platform::build("", "amd64", None)),
            "platform",
            ChangeErrorKind::BadPlatform,
        ),
        (
            ConfigChanges::new().created(future),
            "created",
            ChangeErrorKind::BadTime,
        ),
    ];
    let original = ImageConfig::new(&linux_amd64());
    for (changes, want_field, want_kind) in cases {
        // Good changes beside the bad one are not made either.
        let changes = changes.env("GOOD", "1").user("root");
        let mut config = original.clone();
        match changes.apply_to_config(&mut config) {
            Err(Error::InvalidChange { field, kind, .. }) => {
                assert_eq!((field, kind), (want_field, want_kind), "{changes:?}");
            }
            other => panic!("{changes:?} was not refused: {other:?}"),
        }
        assert_eq!(config, original, "a refused change changed the config");
        let mut annotations = BTreeMap::new();
        assert!(changes.apply_to_annotations(&mut annotations).is_err());
        assert!(annotations.is_empty());
    }
}

/// Builds the image of `make_tree` as `v1` and unpacks it to `root`.
async fn image_and_rootfs(layout: &Layout, tree: &Path, root: &Path) -> Descriptor {
    let mut base = request("v1").layer(tree);
    base.changes = ConfigChanges::new().env("A", "1");
    let built = build(layout, &base).await.unwrap();
    unpack(layout, &built.manifest, root, &UnpackOptions::new())
        .await
        .unwrap();
    built.manifest
}

#[cfg(feature = "gzip")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diff_lists_the_changes_and_repack_stores_them_as_a_layer() {
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("tree");
    make_tree(&tree);
    for (layout, _guard) in layouts().await {
        let scratch = tempfile::tempdir().unwrap();
        let root = scratch.path().join("rootfs");
        let image = image_and_rootfs(&layout, &tree, &root).await;

        let none = diff(&layout, &image, &root, &DiffOptions::new())
            .await
            .unwrap();
        assert_eq!(none.image.digest(), image.digest());
        assert!(none.changes.is_empty(), "{:?}", none.changes);

        std::fs::write(root.join("etc/motd"), b"changed\n").unwrap();
        std::fs::remove_file(root.join("etc/secret")).unwrap();
        std::fs::create_dir(root.join("srv")).unwrap();
        std::fs::write(root.join("srv/new"), b"new\n").unwrap();
        let (progress, events) = recorder();
        let listed = diff(
            &layout,
            &image,
            &root,
            &DiffOptions::new().with_progress(progress),
        )
        .await
        .unwrap();
        let got: Vec<(&str, ChangeKind)> = listed
            .changes
            .iter()
            .map(|c| (c.path.as_str(), c.kind))
            .collect();
        assert_eq!(
            got,
            vec![
                ("etc/motd", ChangeKind::Modified),
                ("etc/secret", ChangeKind::Deleted),
                ("srv", ChangeKind::Added),
                ("srv/new", ChangeKind::Added),
            ]
        );
        assert_eq!(
            starts(&events.lock().unwrap()),
            vec![(Operation::Compare, root.display().to_string(), None)]
        );

        // Repack onto the image's own tag: the tag moves to the new image.
        let (progress, events) = recorder();
        let mut options = RepackOptions::new();
        options.created_by = Some("repack test".into());
        options.progress = progress;
        let repacked = repack(&layout, &image, &root, "v1", &options)
            .await
            .unwrap();
        assert_eq!(repacked.changes, listed.changes);
        assert_eq!(
            layout.resolve("v1").await.unwrap().digest(),
            repacked.manifest.digest()
        );
        let (manifest, config) = config_json(&layout, &repacked.manifest).await;
        assert_eq!(manifest["layers"].as_array().unwrap().len(), 2);
        assert_eq!(
            manifest["layers"][1]["digest"],
            repacked.layer.digest().to_string()
        );
        assert_eq!(config["config"]["Env"], json!(["A=1"]));
        assert_eq!(config["history"][1]["created_by"], "repack test");
        let steps = starts(&events.lock().unwrap());
        assert_eq!(steps.len(), 2, "{steps:?}");
        assert_eq!(steps[0].0, Operation::Compare);
        assert_eq!(steps[1].0, Operation::Build);
        assert_eq!(steps[1].1, "4 changes");
        assert!(steps[1].2.is_some_and(|size| size > 0));

        // A fresh unpack of the new image is the edited tree, with nothing left to diff.
        let again = scratch.path().join("again");
        unpack(&layout, &repacked.manifest, &again, &UnpackOptions::new())
            .await
            .unwrap();
        assert_eq!(std::fs::read(again.join("etc/motd")).unwrap(), b"changed\n");
        assert!(!again.join("etc/secret").exists());
        assert_eq!(std::fs::read(again.join("srv/new")).unwrap(), b"new\n");
        let after = diff(&layout, &repacked.manifest, &again, &DiffOptions::new())
            .await
            .unwrap();
        assert!(after.changes.is_empty(), "{:?}", after.changes);
        assert_eq!(
            snapshot(&again).keys().collect::<Vec<_>>(),
            snapshot(&root).keys().collect::<Vec<_>>()
        );
    }
}

#[cfg(feature = "gzip")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emptied_directory_is_one_opaque_whiteout_when_asked() {
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("tree");
    make_tree(&tree);
    let (layout, _guard) = layouts().await.swap_remove(0);
    let root = work.path().join("rootfs");
    let image = image_and_rootfs(&layout, &tree, &root).await;
    for name in ["motd", "secret"] {
        std::fs::remove_file(root.join("etc").join(name)).unwrap();
    }
    let mut options = RepackOptions::new();
    options.opaque_whiteouts = true;
    let repacked = repack(&layout, &image, &root, "v2", &options)
        .await
        .unwrap();
    let got: Vec<(&str, ChangeKind)> = repacked
        .changes
        .iter()
        .map(|c| (c.path.as_str(), c.kind))
        .collect();
    assert_eq!(got, vec![("etc/", ChangeKind::Emptied)]);
    // Without the option, each entry is its own whiteout.
    let listed = diff(&layout, &image, &root, &DiffOptions::new())
        .await
        .unwrap();
    assert_eq!(listed.changes.len(), 2, "{:?}", listed.changes);
}

#[cfg(feature = "gzip")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diff_and_repack_refuse_what_they_cannot_use() {
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("tree");
    make_tree(&tree);
    for (layout, _guard) in layouts().await {
        let scratch = tempfile::tempdir().unwrap();
        let root = scratch.path().join("rootfs");
        let image = image_and_rootfs(&layout, &tree, &root).await;
        let blobs = blob_count(&layout).await;

        let file = scratch.path().join("file");
        std::fs::write(&file, b"not a tree").unwrap();
        for not_dir in [scratch.path().join("missing"), file] {
            match diff(&layout, &image, &not_dir, &DiffOptions::new()).await {
                Err(Error::NotADirectory { path }) => assert_eq!(path, not_dir),
                other => panic!("{} was compared: {other:?}", not_dir.display()),
            }
            assert!(matches!(
                repack(&layout, &image, &not_dir, "v2", &RepackOptions::new()).await,
                Err(Error::NotADirectory { .. })
            ));
        }
        std::fs::write(root.join("etc/motd"), b"changed\n").unwrap();
        assert!(matches!(
            repack(&layout, &image, &root, "../x", &RepackOptions::new()).await,
            Err(Error::InvalidTag { .. })
        ));
        // An image that is not in the layout.
        let bytes = br#"{"schemaVersion":2}"#;
        let absent = descriptor::new(
            "application/vnd.oci.image.manifest.v1+json",
            &Digest::sha256(bytes),
            bytes.len() as u64,
        )
        .unwrap();
        assert!(
            diff(&layout, &absent, &root, &DiffOptions::new())
                .await
                .is_err()
        );
        assert!(
            repack(&layout, &absent, &root, "v2", &RepackOptions::new())
                .await
                .is_err()
        );
        let tags: Vec<String> = layout
            .tags()
            .await
            .unwrap()
            .into_iter()
            .map(|(tag, _)| tag)
            .collect();
        assert_eq!(tags, ["v1"], "a refused repack tagged something");
        assert_eq!(
            blob_count(&layout).await,
            blobs,
            "a refused repack wrote blobs"
        );
    }
}

/// Servers need every future of these calls to be `Send`, and their values `Send + Sync`.
#[test]
fn the_calls_are_send_and_their_values_send_and_sync() {
    fn send<T: Send>(_: &T) {}
    fn send_sync<T: Send + Sync>() {}
    send_sync::<BuildRequest>();
    send_sync::<ocikit_layout::BuildReport>();
    send_sync::<ConfigChanges>();
    send_sync::<ocikit_layout::DiffReport>();
    send_sync::<RepackOptions>();
    send_sync::<ocikit_layout::RepackReport>();
    send_sync::<Error>();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let layout = runtime
        .block_on(Layout::create(ocikit_store::MemoryStore::new()))
        .unwrap();
    let request = BuildRequest::new("x");
    send(&build(&layout, &request));
    send(&build_at("/nonexistent", &request));
    let d = descriptor::empty();
    send(&diff(&layout, &d, "/nonexistent", &DiffOptions::new()));
    send(&repack(
        &layout,
        &d,
        "/nonexistent",
        "x",
        &RepackOptions::new(),
    ));
}
