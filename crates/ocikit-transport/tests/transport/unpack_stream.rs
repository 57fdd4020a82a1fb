//! `unpack` from every location: a registry image applied as it downloads (in-process
//! `ocikit serve` and Distribution 2.8) is the tree the layout unpack of the same image
//! makes, and `--keep` stores the image in a layout in the same pass; an archive unpacks
//! too. Bad data (a layer whose bytes do not match its digest, a diffID the layer does not
//! have) and a policy refusal leave no target, no staging and no unverified blob.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use ocikit_digest::Digest;
use ocikit_digest::oci_spec::image::Descriptor;
use ocikit_layout::{FsckOptions, Layout, UnpackOptions};
use ocikit_transport::{
    CopyOptions, Error, Location, UnpackImageOptions, copy, fsck, open_layout, unpack,
};
use serde_json::json;

use crate::registry::{docker, plain, serve};
use crate::surgery::read;
use crate::{at, image};

/// Kind, content, mode, owner of every path below `root`.
type Tree = BTreeMap<PathBuf, (String, Vec<u8>, u32, u32, u32)>;

fn tree(root: &Path) -> Tree {
    let mut out = Tree::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let (kind, content) = if meta.is_dir() {
                stack.push(path.clone());
                ("dir", Vec::new())
            } else if meta.is_symlink() {
                let target = std::fs::read_link(&path).unwrap();
                ("symlink", target.into_os_string().into_encoded_bytes())
            } else if meta.is_file() {
                ("file", std::fs::read(&path).unwrap())
            } else {
                ("other", Vec::new())
            };
            out.insert(
                path.strip_prefix(root).unwrap().to_path_buf(),
                (
                    kind.to_string(),
                    content,
                    meta.mode() & 0o7777,
                    meta.uid(),
                    meta.gid(),
                ),
            );
        }
    }
    out
}

/// The tree the layout unpack makes of `root`, checked not to be trivially empty.
async fn layout_tree(layout: &Layout, root: &Descriptor) -> Tree {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("rootfs");
    ocikit_layout::unpack_staged(layout, root, &target, &UnpackOptions::new())
        .await
        .unwrap();
    let tree = tree(&target);
    assert!(
        tree.contains_key(Path::new("payload.bin")),
        "{:?}",
        tree.keys()
    );
    assert!(tree.len() > 3);
    tree
}

fn options() -> UnpackImageOptions {
    UnpackImageOptions::new(UnpackOptions::new()).with_registry(plain())
}

/// The names in `dir` (to see that nothing was left beside a target).
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The blob file of `digest` in the layout at `dir`.
fn blob_path(dir: &Path, digest: &str) -> PathBuf {
    let (algorithm, hex) = digest.split_once(':').unwrap();
    dir.join("blobs").join(algorithm).join(hex)
}

/// Checks that the layout at `dir` passes fsck and tags `tag` as `root`, with every blob.
async fn check_kept(dir: &Path, tag: &str, root: &Descriptor) {
    let report = fsck(&at("oci", dir, ""), &FsckOptions::default())
        .await
        .unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    let kept = open_layout(dir).await.unwrap();
    assert_eq!(kept.resolve(tag).await.unwrap().digest(), root.digest());
    let (manifest, _) = read(&kept, root).await;
    for layer in manifest.layers() {
        assert!(blob_path(dir, layer.digest().as_ref()).is_file());
    }
}

/// Pushes the image tagged `tag` of the layout at `path` to `location`.
async fn push(path: &Path, tag: &str, location: &Location) {
    copy(
        &at("oci", path, &format!(":{tag}")),
        location,
        &CopyOptions::new()
            .with_source(plain())
            .with_destination(plain()),
    )
    .await
    .unwrap();
}

/// Unpacks `location` three ways and compares each with the layout's own unpack: with a
/// new keep layout, with no prefetch into that same (now existing) layout, and with none.
async fn check_registry_unpack(location: &Location, path: &Path) {
    let layout = open_layout(path).await.unwrap();
    let root = layout.resolve("v1").await.unwrap();
    let expected = layout_tree(&layout, &root).await;
    let dir = tempfile::tempdir().unwrap();

    let keep = dir.path().join("kept");
    let target = dir.path().join("a").join("rootfs");
    let report = unpack(
        location,
        &target,
        &options().with_keep(Some(at("oci", &keep, ""))),
    )
    .await
    .unwrap();
    assert_eq!(report.unpacked.manifest.digest(), root.digest());
    assert_eq!(report.unpacked.layers.len(), 2);
    assert_eq!(report.kept, Some(at("oci", &keep, ":v1")));
    assert_eq!(tree(&target), expected);
    check_kept(&keep, "v1", &root).await;

    let target = dir.path().join("b");
    unpack(
        location,
        &target,
        &options()
            .with_prefetch(0)
            .with_keep(Some(at("oci", &keep, ":again"))),
    )
    .await
    .unwrap();
    assert_eq!(tree(&target), expected);
    check_kept(&keep, "again", &root).await;

    let target = dir.path().join("c");
    let report = unpack(location, &target, &options()).await.unwrap();
    assert!(report.kept.is_none());
    assert_eq!(tree(&target), expected);
    assert_eq!(names(dir.path()), ["a", "b", "c", "kept"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_registry_image_unpacks_in_one_stream_as_the_layout_unpack_does() {
    let addr = serve().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("src");
    image(&path, "v1").await;
    let location = docker(&addr, "team/app:v1");
    push(&path, "v1", &location).await;
    check_registry_unpack(&location, &path).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_distribution_image_unpacks_in_one_stream_as_the_layout_unpack_does() {
    let Some(registry) = ocikit_testkit::distribution::Distribution::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("src");
    image(&path, "v1").await;
    let location = docker(registry.addr(), "team/app:v1");
    push(&path, "v1", &location).await;
    check_registry_unpack(&location, &path).await;
    registry.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_archive_unpacks_as_the_layout_does() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("src");
    let (layout, root) = image(&path, "v1").await;
    let expected = layout_tree(&layout, &root).await;
    let archive = dir.path().join("image.tar");
    copy(
        &at("oci", &path, ":v1"),
        &at("oci-archive", &archive, ""),
        &CopyOptions::new(),
    )
    .await
    .unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();

    let target = out.join("rootfs");
    let report = unpack(&at("oci-archive", &archive, ":v1"), &target, &options())
        .await
        .unwrap();
    assert_eq!(report.unpacked.manifest.digest(), root.digest());
    assert_eq!(tree(&target), expected);
    // The scratch layout it went through is gone.
    assert_eq!(names(&out), ["rootfs"]);

    let keep = out.join("kept");
    let target = out.join("again");
    unpack(
        &at("oci-archive", &archive, ":v1"),
        &target,
        &options().with_keep(Some(at("oci", &keep, ""))),
    )
    .await
    .unwrap();
    assert_eq!(tree(&target), expected);
    check_kept(&keep, "v1", &root).await;

    // A missing archive: nothing appears.
    let err = unpack(
        &at("oci-archive", &dir.path().join("missing.tar"), ":v1"),
        &out.join("never"),
        &options(),
    )
    .await
    .unwrap_err();
    assert!(!out.join("never").exists(), "{err}");
    assert_eq!(names(&out), ["again", "kept", "rootfs"]);
}

/// A registry that serves the layout at `dir`'s image `root` as `team/app:v1`, with the
/// blob `corrupt` served with its last byte flipped.
async fn corrupting_registry(dir: PathBuf, root: Descriptor, corrupt: String) -> String {
    use axum::body::Body;
    use axum::http::{Response, StatusCode, Uri};
    let handler = move |uri: Uri| {
        let (dir, root, corrupt) = (dir.clone(), root.clone(), corrupt.clone());
        async move {
            let path = uri.path();
            let found = |bytes: Vec<u8>, media_type: &str, digest: &str| {
                Response::builder()
                    .status(StatusCode::OK)
                    .header("content-type", media_type)
                    .header("content-length", bytes.len())
                    .header("docker-content-digest", digest)
                    .body(Body::from(bytes))
                    .unwrap()
            };
            if path == "/v2/" {
                return found(b"{}".to_vec(), "application/json", "");
            }
            if path == "/v2/team/app/manifests/v1" {
                let digest = root.digest().to_string();
                let bytes = std::fs::read(blob_path(&dir, &digest)).unwrap();
                return found(bytes, root.media_type().as_ref(), &digest);
            }
            if let Some(digest) = path.strip_prefix("/v2/team/app/blobs/") {
                let mut bytes = std::fs::read(blob_path(&dir, digest)).unwrap();
                if digest == corrupt {
                    let last = bytes.len() - 1;
                    bytes[last] ^= 0xff;
                }
                return found(bytes, "application/octet-stream", digest);
            }
            Response::builder()
                .status(StatusCode::NOT_FOUND)
                .body(Body::empty())
                .unwrap()
        }
    };
    let app = axum::Router::new().fallback(handler);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.ok();
    });
    addr.to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_layer_whose_bytes_do_not_match_its_digest_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("src");
    let (layout, root) = image(&path, "v1").await;
    let (manifest, _) = read(&layout, &root).await;
    // The big layer (the test binary), so that it is spooled and applied in many pieces
    // before its end shows it was not what the manifest named.
    let bad = manifest.layers()[1].digest().to_string();
    let addr = corrupting_registry(path.clone(), root.clone(), bad.clone()).await;
    let location = docker(&addr, "team/app:v1");
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();

    // A new keep layout does not appear.
    let keep = out.join("kept");
    let err = unpack(
        &location,
        &out.join("rootfs"),
        &options().with_keep(Some(at("oci", &keep, ""))),
    )
    .await
    .unwrap_err();
    match &err {
        Error::Pull { source, .. } => assert!(
            matches!(source, ocikit_client::Error::ContentMismatch { .. }),
            "{source:?}"
        ),
        other => panic!("expected a pull error, got {other:?}"),
    }
    assert!(names(&out).is_empty(), "{:?}", names(&out));

    // An existing keep layout gets no unverified blob and no tag.
    ocikit_transport::init(&at("oci", &keep, "")).await.unwrap();
    for prefetch in [0, 2] {
        let err = unpack(
            &location,
            &out.join("rootfs"),
            &options()
                .with_prefetch(prefetch)
                .with_keep(Some(at("oci", &keep, ""))),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, Error::Pull { .. }), "{err:?}");
        assert_eq!(names(&out), ["kept"]);
        assert!(!blob_path(&keep, &bad).exists());
        let kept = open_layout(&keep).await.unwrap();
        assert!(kept.resolve("v1").await.is_err());
        let report = fsck(&at("oci", &keep, ""), &FsckOptions::default())
            .await
            .unwrap();
        assert!(report.is_clean(), "{:?}", report.problems);
    }

    // The same server serving sound bytes (another layer corrupted only by name) works:
    // the refusal was the bytes'.
    let addr = corrupting_registry(path.clone(), root.clone(), "none".into()).await;
    unpack(
        &docker(&addr, "team/app:v1"),
        &out.join("rootfs"),
        &options(),
    )
    .await
    .unwrap();
    assert_eq!(tree(&out.join("rootfs")), layout_tree(&layout, &root).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_diff_id_the_layer_does_not_have_leaves_nothing() {
    let addr = serve().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("src");
    let (layout, root) = image(&path, "v1").await;
    // The config claims another diffID for the last layer; the blobs are sound.
    let (manifest, mut config) = read(&layout, &root).await;
    config["rootfs"]["diff_ids"][1] = json!(Digest::sha256(b"another layer").to_string());
    let config_descriptor = layout
        .put_json(manifest.config().media_type().as_ref(), &config)
        .await
        .unwrap();
    let mut manifest_json = serde_json::to_value(&manifest).unwrap();
    manifest_json["config"] = serde_json::to_value(&config_descriptor).unwrap();
    let lying = layout
        .put_json(root.media_type().as_ref(), &manifest_json)
        .await
        .unwrap();
    layout.set_tag("lying", &lying).await.unwrap();
    let location = docker(&addr, "team/app:lying");
    push(&path, "lying", &location).await;

    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let err = unpack(
        &location,
        &out.join("rootfs"),
        &options().with_keep(Some(at("oci", &out.join("kept"), ""))),
    )
    .await
    .unwrap_err();
    let Error::Read { source, .. } = &err else {
        panic!("expected a read error, got {err:?}");
    };
    let ocikit_layout::Error::Layer { source, .. } = source else {
        panic!("expected a layer error, got {source:?}");
    };
    assert!(
        matches!(
            **source,
            ocikit_layout::Error::Codec(ocikit_codec::Error::DiffIdMismatch { .. })
        ),
        "{source:?}"
    );
    assert!(names(&out).is_empty(), "{:?}", names(&out));
}

#[cfg(feature = "sign")]
#[tokio::test(flavor = "multi_thread")]
async fn a_policy_refusal_writes_nothing() {
    let addr = serve().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("src");
    image(&path, "v1").await;
    let location = docker(&addr, "team/app:v1");
    push(&path, "v1", &location).await;
    let policy_file = dir.path().join("policy.json");
    std::fs::write(&policy_file, r#"{"default":[{"type":"reject"}]}"#).unwrap();
    let policy = ocikit_transport::load_policy(&policy_file).await.unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let keep = at("oci", &out.join("kept"), "");
    let err = unpack(
        &location,
        &out.join("rootfs"),
        &UnpackImageOptions::new(UnpackOptions::new())
            .with_policy(Some(policy), plain())
            .with_keep(Some(keep.clone())),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::PolicyRejected { .. }), "{err:?}");
    assert!(names(&out).is_empty(), "{:?}", names(&out));

    // The same image under a policy that accepts it unpacks, by the digest accepted.
    std::fs::write(
        &policy_file,
        r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
    )
    .unwrap();
    let policy = ocikit_transport::load_policy(&policy_file).await.unwrap();
    let report = unpack(
        &location,
        &out.join("rootfs"),
        &UnpackImageOptions::new(UnpackOptions::new())
            .with_policy(Some(policy), plain())
            .with_keep(Some(keep)),
    )
    .await
    .unwrap();
    let accepted = report.accepted.unwrap();
    assert_eq!(
        accepted.digest.to_string(),
        report.unpacked.manifest.digest().to_string()
    );
    // Kept under the tag the image was named by, though it was read by digest.
    assert_eq!(report.kept, Some(at("oci", &out.join("kept"), ":v1")));
    assert_eq!(names(&out), ["kept", "rootfs"]);
}
