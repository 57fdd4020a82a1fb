//! `append` with [`AppendOptions::with_changes`] and an explicit SOURCE_DATE_EPOCH (what
//! `ocikit build --from` asks of it): the layers put on and the config changed in one edit,
//! the rest of the config kept, file times clamped; bad changes refused with nothing written.

use std::path::Path;
use std::time::{Duration, SystemTime};

use ocikit_layout::ConfigChanges;
use ocikit_transport::{AppendOptions, Error, LayerSource, append};
use serde_json::{Value, json};

use crate::surgery::{blob_count, read};
use crate::{at, files, image, open};

/// A directory holding one file whose modification time is `mtime`.
fn tree(dir: &Path, mtime: SystemTime) -> std::path::PathBuf {
    let tree = dir.join("tree");
    std::fs::create_dir_all(tree.join("etc")).unwrap();
    let file = tree.join("etc/app.conf");
    std::fs::write(&file, "mode = built\n").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    tree
}

fn changes() -> ConfigChanges {
    ConfigChanges::new()
        .env("MODE", "production")
        .label("team", "infra")
        .annotation("org.example.built", "yes")
}

#[tokio::test(flavor = "multi_thread")]
async fn changes_are_made_in_the_edit_that_appends_the_layers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("images");
    let (layout, root) = image(&path, "v1").await;
    let (manifest, config) = read(&layout, &root).await;
    let now = SystemTime::now();
    let layers = [LayerSource::from_path(tree(dir.path(), now))];
    let options = AppendOptions::new()
        .with_created_by(Some("ocikit build".into()))
        .with_changes(changes())
        .with_source_date_epoch(Some(1_000_000_000));

    // Into another layout (the source staged, the edit copied there).
    let out = dir.path().join("out");
    let report = append(
        &at("oci", &path, ":v1"),
        &at("oci", &out, ":built"),
        &layers,
        &options,
    )
    .await
    .unwrap();
    let out_layout = open(&out).await;
    let built = out_layout.resolve("built").await.unwrap();
    assert_eq!(built.digest().to_string(), report.digest);
    let (new_manifest, new_config) = read(&out_layout, &built).await;
    // The base's layers, then the new one.
    let base = manifest.layers().len();
    assert_eq!(new_manifest.layers().len(), base + 1);
    assert_eq!(&new_manifest.layers()[..base], &manifest.layers()[..]);
    let diff_ids = new_config["rootfs"]["diff_ids"].as_array().unwrap();
    assert_eq!(diff_ids.len(), base + 1);
    assert_eq!(
        diff_ids[..base],
        config["rootfs"]["diff_ids"].as_array().unwrap()[..]
    );
    // The changes made, the rest of the config kept.
    let mut expected = config["config"].clone();
    let env = expected["Env"].as_array().cloned().unwrap_or_default();
    let mut env: Vec<Value> = env;
    env.push(json!("MODE=production"));
    expected["Env"] = Value::Array(env);
    expected["Labels"] = json!({"team": "infra"});
    assert_eq!(new_config["config"], expected);
    assert_eq!(new_config["config"]["Cmd"], json!(["/usr/bin/hello"]));
    assert_eq!(new_config["architecture"], config["architecture"]);
    assert_eq!(new_config["os"], config["os"]);
    assert_eq!(
        new_manifest
            .annotations()
            .as_ref()
            .unwrap()
            .get("org.example.built")
            .map(String::as_str),
        Some("yes")
    );
    // Dated by SOURCE_DATE_EPOCH: the image and the new history entry.
    assert_eq!(new_config["created"], "2001-09-09T01:46:40Z");
    let history = new_config["history"].as_array().unwrap();
    assert_eq!(history.len(), base + 1);
    assert_eq!(history[base]["created"], "2001-09-09T01:46:40Z");
    assert_eq!(history[base]["created_by"], "ocikit build");
    // The unpacked tree: the base's files and the new one.
    let mut tree_files = crate::unpacked(&layout, &root).await;
    tree_files.push(("etc/app.conf".into(), b"mode = built\n".to_vec()));
    tree_files.sort();
    assert_eq!(crate::unpacked(&out_layout, &built).await, tree_files);

    // File times are clamped: the same tree touched an hour later gives the same image.
    let later = dir.path().join("later");
    std::fs::create_dir(&later).unwrap();
    let layers = [LayerSource::from_path(tree(
        &later,
        now + Duration::from_secs(3600),
    ))];
    let again = append(
        &at("oci", &path, ":v1"),
        &at("oci", &dir.path().join("again"), ":built"),
        &layers,
        &options,
    )
    .await
    .unwrap();
    assert_eq!(again.digest, report.digest);
    // Without the epoch, the file's time is kept and the layer differs.
    let unclamped = options.clone().with_source_date_epoch(None);
    let dated_now = append(
        &at("oci", &path, ":v1"),
        &at("oci", &dir.path().join("now"), ":built"),
        &layers,
        &unclamped,
    )
    .await
    .unwrap();
    let now_layout = open(&dir.path().join("now")).await;
    let (now_manifest, now_config) =
        read(&now_layout, &now_layout.resolve("built").await.unwrap()).await;
    assert_eq!(now_manifest.layers().len(), base + 1);
    assert_ne!(now_manifest.layers()[base], new_manifest.layers()[base]);
    assert_ne!(now_config["created"], "2001-09-09T01:46:40Z");
    assert_ne!(dated_now.digest, report.digest);

    // As `build --from`: the base's digest annotated, then the changes' annotations.
    let annotated = options.with_base_annotation(true);
    append(
        &at("oci", &path, ":v1"),
        &at("oci", &out, ":annotated"),
        &layers,
        &annotated,
    )
    .await
    .unwrap();
    let annotated = out_layout.resolve("annotated").await.unwrap();
    let (annotated, _) = read(&out_layout, &annotated).await;
    let expected: std::collections::HashMap<String, String> = [
        (
            "org.opencontainers.image.base.digest".to_string(),
            root.digest().to_string(),
        ),
        ("org.example.built".to_string(), "yes".to_string()),
    ]
    .into();
    assert_eq!(annotated.annotations().as_ref(), Some(&expected));
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_changes_are_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("images");
    image(&path, "v1").await;
    let layers = [LayerSource::from_path(tree(dir.path(), SystemTime::now()))];
    let before = blob_count(&path);
    let snapshot = files(&path);
    for (destination, options) in [
        (
            at("oci", &path, ":v2"),
            AppendOptions::new().with_changes(ConfigChanges::new().env("", "x")),
        ),
        (
            at("oci", &dir.path().join("new"), ":v2"),
            AppendOptions::new().with_changes(ConfigChanges::new().expose("99999/tcp")),
        ),
        (
            at("oci", &dir.path().join("new"), ":v2"),
            AppendOptions::new().with_source_date_epoch(Some(i64::MAX)),
        ),
    ] {
        let err = append(&at("oci", &path, ":v1"), &destination, &layers, &options)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::InvalidChanges {
                    source: ocikit_layout::Error::InvalidChange { .. }
                }
            ),
            "{err:?}"
        );
    }
    assert!(!dir.path().join("new").exists());
    assert_eq!(blob_count(&path), before);
    assert_eq!(files(&path), snapshot);
}

/// `build` (what `ocikit build` calls): on a base in the target layout through the
/// layout's own build, on a base elsewhere through `append`; both give one image for one
/// request and report the new layer; a base that is not there is refused, the target's
/// tags unchanged.
#[tokio::test(flavor = "multi_thread")]
async fn build_takes_a_base_in_the_layout_or_anywhere_else() {
    use ocikit_layout::BuildRequest;
    use ocikit_transport::{EditOptions, build};
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base");
    image(&base, "v1").await;
    let layer = tree(dir.path(), SystemTime::UNIX_EPOCH + Duration::from_secs(5));
    let request = |tag: &str| {
        let mut request = BuildRequest::new(tag.to_string());
        request.layers = vec![layer.clone()];
        request.changes = changes();
        request.source_date_epoch = Some(1_000_000_000);
        request.created_by = Some("ocikit build".into());
        request
    };
    // In the base's own layout.
    let here = build(
        &base,
        Some(&at("oci", &base, ":v1")),
        request("here"),
        EditOptions::new(),
    )
    .await
    .unwrap();
    assert_eq!(here.layers.len(), 1);
    assert_eq!(here.layers[0].source, layer);
    // From another layout: the same image.
    let out = dir.path().join("out");
    let there = build(
        &out,
        Some(&at("oci", &base, ":v1")),
        request("there"),
        EditOptions::new(),
    )
    .await
    .unwrap();
    assert_eq!(there.digest, here.digest);
    assert_eq!(
        there.layers[0].descriptor.digest(),
        here.layers[0].descriptor.digest()
    );
    // A base that is not there: refused, nothing tagged.
    let before = std::fs::read(out.join("index.json")).unwrap();
    let missing = build(
        &out,
        Some(&at("oci", &base, ":nope")),
        request("bad"),
        EditOptions::new(),
    )
    .await;
    assert!(missing.is_err(), "{missing:?}");
    assert_eq!(std::fs::read(out.join("index.json")).unwrap(), before);
}
