//! `index_create`, `index_append`, `index_remove`, `index_annotate`: multi-platform indexes
//! made from images of layouts, archives and a registry served in-process, each entry's
//! platform its config's; and bad input refused with nothing written.

use std::path::Path;

use ocikit_codec::compression::Compression;
use ocikit_digest::oci_spec::image::{Descriptor, ImageIndex, Platform};
use ocikit_digest::platform;
use ocikit_layout::{Document, ImageBuilder, LayerSpec, Layout};
use ocikit_store::FsStore;
use ocikit_transport::{
    CopyOptions, Error, IndexAnnotations, IndexOptions, copy, index_annotate, index_append,
    index_create, index_remove,
};

use crate::registry::{docker, plain, serve};
use crate::{at, example_rootfs, open};

/// A layout at `dir` with one image per `(tag, platform)`: the example tree as one layer
/// (uncompressed, so each platform's image differs only by its config), the platform in
/// its config.
async fn images(dir: &Path, images: &[(&str, Platform)]) -> Layout {
    let layout = Layout::create(FsStore::open(dir).await.unwrap())
        .await
        .unwrap();
    for (tag, platform) in images {
        let mut builder = ImageBuilder::new(&layout);
        builder.platform(platform).cmd(["/usr/bin/hello"]);
        builder
            .add_layer_from_dir(
                example_rootfs(),
                LayerSpec::new().compression(Compression::None),
            )
            .await
            .unwrap();
        builder.write_and_tag(tag).await.unwrap();
    }
    layout
}

fn parse(text: &str) -> Platform {
    platform::parse(text).unwrap()
}

/// A Windows platform with an `os.version` and `os.features`, to show they travel.
fn windows() -> Platform {
    let mut p = parse("windows(10.0.17763.1234)/amd64");
    p.set_os_features(Some(vec!["win32k".into()]));
    p
}

/// The index `tag` names in `layout`.
async fn index_at(layout: &Layout, tag: &str) -> (Descriptor, ImageIndex) {
    let root = layout.resolve(tag).await.unwrap();
    let Document::Index { index, .. } = layout.read_document(&root).await.unwrap() else {
        panic!("{tag} is not an index");
    };
    (root, *index)
}

/// Every entry's platform, checked equal to its image config's.
async fn platforms_checked(layout: &Layout, index: &ImageIndex) -> Vec<Platform> {
    let mut out = Vec::new();
    for entry in index.manifests() {
        let Document::Manifest { manifest, .. } = layout.read_document(entry).await.unwrap() else {
            panic!("{} is not a manifest", entry.digest());
        };
        let config = layout
            .read_image_config(manifest.config())
            .await
            .unwrap()
            .unwrap();
        let have = entry.platform().clone().unwrap();
        assert_eq!(have, config.platform(), "entry {}", entry.digest());
        out.push(have);
    }
    out
}

fn options() -> IndexOptions {
    IndexOptions::new()
        .with_source(plain())
        .with_destination(plain())
}

fn copy_options() -> CopyOptions {
    CopyOptions::new()
        .with_source(plain())
        .with_destination(plain())
        .with_all_platforms(true)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_index_is_made_from_a_layout_an_archive_and_a_registry_into_each() {
    let addr = serve().await;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    images(
        &src,
        &[
            ("amd64", parse("linux/amd64")),
            ("arm", parse("linux/arm/v7")),
            ("win", windows()),
        ],
    )
    .await;
    // One image from an oci-archive, one from the registry, one from the layout.
    let archive = dir.path().join("arm.tar");
    copy(
        &at("oci", &src, ":arm"),
        &at("oci-archive", &archive, ":arm"),
        &copy_options(),
    )
    .await
    .unwrap();
    copy(
        &at("oci", &src, ":win"),
        &docker(&addr, "team/win:v1"),
        &copy_options(),
    )
    .await
    .unwrap();
    let sources = [
        at("oci", &src, ":amd64"),
        at("oci-archive", &archive, ":arm"),
        docker(&addr, "team/win:v1"),
    ];
    let wanted = vec![parse("linux/amd64"), parse("linux/arm/v7"), windows()];

    // Into a new layout: it appears with the index tagged, the entries' platforms their
    // configs'.
    let out = dir.path().join("out");
    let report = index_create(&at("oci", &out, ":multi"), &sources, &options())
        .await
        .unwrap();
    let layout = open(&out).await;
    let (root, index) = index_at(&layout, "multi").await;
    assert_eq!(root.digest().to_string(), report.digest);
    assert_eq!(
        root.media_type().to_string(),
        "application/vnd.oci.image.index.v1+json"
    );
    assert_eq!(platforms_checked(&layout, &index).await, wanted);
    let listed: Vec<_> = report
        .manifests
        .iter()
        .map(|m| m.platform.clone())
        .collect();
    assert_eq!(
        listed,
        [
            Some("linux/amd64".to_string()),
            Some("linux/arm/v7".into()),
            Some("windows(10.0.17763.1234)/amd64".into())
        ]
    );
    assert_eq!(report.image.to_string(), format!("multi {}", report.digest));

    // Into an oci-archive, read back.
    let multi_tar = dir.path().join("multi.tar");
    let archived = index_create(
        &at("oci-archive", &multi_tar, ":multi"),
        &sources,
        &options(),
    )
    .await
    .unwrap();
    assert_eq!(archived.digest, report.digest);
    let back = dir.path().join("back");
    copy(
        &at("oci-archive", &multi_tar, ":multi"),
        &at("oci", &back, ":multi"),
        &copy_options(),
    )
    .await
    .unwrap();
    let back_layout = open(&back).await;
    let (_, index) = index_at(&back_layout, "multi").await;
    assert_eq!(platforms_checked(&back_layout, &index).await, wanted);

    // Into the registry: the same index (the same bytes), readable back in full.
    let pushed = index_create(&docker(&addr, "team/multi:v1"), &sources, &options())
        .await
        .unwrap();
    assert_eq!(pushed.digest, report.digest);
    let pulled = dir.path().join("pulled");
    copy(
        &docker(&addr, "team/multi:v1"),
        &at("oci", &pulled, ":multi"),
        &copy_options(),
    )
    .await
    .unwrap();
    let pulled_layout = open(&pulled).await;
    let (root, index) = index_at(&pulled_layout, "multi").await;
    assert_eq!(root.digest().to_string(), report.digest);
    assert_eq!(platforms_checked(&pulled_layout, &index).await, wanted);
}

#[tokio::test(flavor = "multi_thread")]
async fn within_one_registry_the_images_blobs_are_mounted_not_uploaded() {
    let addr = serve().await;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    images(
        &src,
        &[
            ("amd64", parse("linux/amd64")),
            ("arm64", parse("linux/arm64")),
        ],
    )
    .await;
    for tag in ["amd64", "arm64"] {
        copy(
            &at("oci", &src, &format!(":{tag}")),
            &docker(&addr, &format!("team/{tag}:v1")),
            &copy_options(),
        )
        .await
        .unwrap();
    }
    let report = index_create(
        &docker(&addr, "multi:v1"),
        &[
            docker(&addr, "team/amd64:v1"),
            docker(&addr, "team/arm64:v1"),
        ],
        &options(),
    )
    .await
    .unwrap();
    // Two configs and one shared layer: mounted into `multi`, nothing uploaded.
    assert_eq!(report.blobs, 3, "{report:?}");
    assert_eq!(report.blobs_written, 0, "{report:?}");
    assert_eq!(report.blobs_mounted, 3, "{report:?}");
    let pulled = dir.path().join("pulled");
    copy(
        &docker(&addr, "multi:v1"),
        &at("oci", &pulled, ":multi"),
        &copy_options(),
    )
    .await
    .unwrap();
    let layout = open(&pulled).await;
    let (_, index) = index_at(&layout, "multi").await;
    assert_eq!(
        platforms_checked(&layout, &index).await,
        [parse("linux/amd64"), parse("linux/arm64")]
    );

    // An index among the images gives its entries (as crane's `index append` flattens).
    let flat = index_create(
        &docker(&addr, "flat:v1"),
        &[docker(&addr, "multi:v1")],
        &options(),
    )
    .await
    .unwrap();
    assert_eq!(flat.digest, report.digest);

    // Images of the index's own repository are there already: nothing moves but the index.
    let own = index_create(
        &docker(&addr, "team/amd64:multi"),
        &[docker(&addr, "team/amd64:v1")],
        &options(),
    )
    .await
    .unwrap();
    assert_eq!((own.blobs_written, own.blobs_mounted), (0, 0), "{own:?}");
    assert_eq!(own.manifests[0].platform.as_deref(), Some("linux/amd64"));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_index_is_appended_to_pruned_and_annotated_in_a_layout_and_a_registry() {
    let addr = serve().await;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let layout = images(
        &src,
        &[
            ("amd64", parse("linux/amd64")),
            ("arm64", parse("linux/arm64")),
            ("s390x", parse("linux/s390x")),
        ],
    )
    .await;
    let multi = at("oci", &src, ":multi");
    let first = index_create(&multi, &[at("oci", &src, ":amd64")], &options())
        .await
        .unwrap();

    // Append: the tag moves to a new index with both.
    let appended = index_append(
        &multi,
        &[at("oci", &src, ":arm64"), at("oci", &src, ":s390x")],
        &options(),
    )
    .await
    .unwrap();
    assert_ne!(appended.digest, first.digest);
    let (root, index) = index_at(&layout, "multi").await;
    assert_eq!(root.digest().to_string(), appended.digest);
    assert_eq!(
        platforms_checked(&layout, &index).await,
        [
            parse("linux/amd64"),
            parse("linux/arm64"),
            parse("linux/s390x")
        ]
    );

    // Remove: `linux/arm64` matches the entry written `linux/arm64` (variant v8 implied).
    let removed = index_remove(&multi, &parse("linux/arm64/v8"), &options())
        .await
        .unwrap();
    let (root, index) = index_at(&layout, "multi").await;
    assert_eq!(root.digest().to_string(), removed.digest);
    assert_eq!(
        platforms_checked(&layout, &index).await,
        [parse("linux/amd64"), parse("linux/s390x")]
    );

    // Annotate the index, then one entry; then remove an index annotation.
    let changes = IndexAnnotations::new()
        .set("org.opencontainers.image.version", "1.2")
        .set("org.example.team", "infra");
    index_annotate(&multi, &changes, &options()).await.unwrap();
    let entry_changes = IndexAnnotations::new()
        .set("org.example.arch", "mainframe")
        .on_platform(Some(parse("linux/s390x")));
    index_annotate(&multi, &entry_changes, &options())
        .await
        .unwrap();
    let report = index_annotate(
        &multi,
        &IndexAnnotations::new().remove("org.example.team"),
        &options(),
    )
    .await
    .unwrap();
    let (root, index) = index_at(&layout, "multi").await;
    assert_eq!(root.digest().to_string(), report.digest);
    let annotations = index.annotations().clone().unwrap();
    assert_eq!(
        annotations
            .get("org.opencontainers.image.version")
            .map(String::as_str),
        Some("1.2")
    );
    assert!(!annotations.contains_key("org.example.team"));
    let s390x = &index.manifests()[1];
    assert_eq!(
        s390x
            .annotations()
            .as_ref()
            .and_then(|a| a.get("org.example.arch"))
            .map(String::as_str),
        Some("mainframe")
    );
    assert!(index.manifests()[0].annotations().is_none());

    // The same in a registry: the index pushed, then edited in place from a layout image.
    let remote = docker(&addr, "team/multi:v1");
    index_create(&remote, &[at("oci", &src, ":amd64")], &options())
        .await
        .unwrap();
    let appended = index_append(&remote, &[at("oci", &src, ":arm64")], &options())
        .await
        .unwrap();
    assert_eq!(appended.manifests.len(), 2);
    let removed = index_remove(&remote, &parse("linux/amd64"), &options())
        .await
        .unwrap();
    let annotated = index_annotate(
        &remote,
        &IndexAnnotations::new().set("org.example.team", "infra"),
        &options(),
    )
    .await
    .unwrap();
    assert_ne!(annotated.digest, removed.digest);
    let pulled = dir.path().join("pulled");
    copy(&remote, &at("oci", &pulled, ":multi"), &copy_options())
        .await
        .unwrap();
    let pulled_layout = open(&pulled).await;
    let (root, index) = index_at(&pulled_layout, "multi").await;
    assert_eq!(root.digest().to_string(), annotated.digest);
    assert_eq!(
        platforms_checked(&pulled_layout, &index).await,
        [parse("linux/arm64")]
    );
    assert_eq!(
        index
            .annotations()
            .as_ref()
            .and_then(|a| a.get("org.example.team"))
            .map(String::as_str),
        Some("infra")
    );
}

/// The bytes of `index.json` in the layout at `dir`.
fn index_json(dir: &Path) -> Vec<u8> {
    std::fs::read(dir.join("index.json")).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_refused_and_writes_nothing() {
    let addr = serve().await;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let layout = images(
        &src,
        &[
            ("amd64", parse("linux/amd64")),
            ("x86_64", parse("linux/x86_64")),
            ("arm64", parse("linux/arm64")),
        ],
    )
    .await;

    // Two images of one platform (x86_64 is amd64): refused, no layout appears, no tag in
    // the registry.
    let out = dir.path().join("out");
    let same = [at("oci", &src, ":amd64"), at("oci", &src, ":x86_64")];
    let err = index_create(&at("oci", &out, ":multi"), &same, &options())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::SamePlatform { platform, .. } if platform == "linux/amd64"),
        "{err:?}"
    );
    assert!(!out.exists());
    let err = index_create(&docker(&addr, "team/multi:v1"), &same, &options())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::SamePlatform { .. }), "{err:?}");
    let tags = ocikit_transport::tags(&docker(&addr, "team/multi"), &plain()).await;
    assert!(
        tags.as_ref().map_or(true, |t| t.tags.is_empty()),
        "{tags:?}"
    );

    // An image that does not exist: refused, nothing written.
    let err = index_create(
        &at("oci", &out, ":multi"),
        &[at("oci", &src, ":amd64"), at("oci", &src, ":nope")],
        &options(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, Error::Layout(ocikit_layout::Error::TagNotFound { tag }) if tag == "nope"),
        "{err:?}"
    );
    assert!(!out.exists());
    let err = index_create(
        &at("oci", &out, ":multi"),
        &[at("oci", &dir.path().join("nowhere"), ":amd64")],
        &options(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::NoLayout { .. }), "{err:?}");
    assert!(!out.exists());

    // In an existing index: appending a platform it has, removing or annotating one it
    // has not, editing an image as an index: refused, index.json unchanged.
    let multi = at("oci", &src, ":multi");
    index_create(&multi, &[at("oci", &src, ":amd64")], &options())
        .await
        .unwrap();
    let created = layout.resolve("multi").await.unwrap();
    let before = index_json(&src);
    let err = index_append(&multi, &[at("oci", &src, ":x86_64")], &options())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::SamePlatform { .. }), "{err:?}");
    let err = index_remove(&multi, &parse("linux/arm64"), &options())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::NoSuchPlatform { platform, available, .. }
            if platform == "linux/arm64" && available == &["linux/amd64".to_string()]),
        "{err:?}"
    );
    let err = index_annotate(
        &multi,
        &IndexAnnotations::new()
            .set("a", "b")
            .on_platform(Some(parse("linux/arm64"))),
        &options(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::NoSuchPlatform { .. }), "{err:?}");
    let err = index_append(
        &at("oci", &src, ":amd64"),
        &[at("oci", &src, ":arm64")],
        &options(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::NotAnIndex { .. }), "{err:?}");
    assert_eq!(index_json(&src), before);
    assert_eq!(
        layout.resolve("multi").await.unwrap().digest(),
        created.digest()
    );

    // Destinations that name no tag; no image at all.
    let err = index_create(
        &at("oci", &out, ""),
        &[at("oci", &src, ":amd64")],
        &options(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::IndexNeedsTag { .. }), "{err:?}");
    let err = index_create(&at("oci", &out, ":multi"), &[], &options())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::IndexWithoutImages), "{err:?}");
    let err = index_append(
        &at("oci-archive", &dir.path().join("x.tar"), ":multi"),
        &[at("oci", &src, ":amd64")],
        &options(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::IndexEditNeedsTag { .. }), "{err:?}");
    assert!(!out.exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_docker_manifest_list_stays_one_and_an_oci_index_takes_docker_images() {
    use ocikit_layout::convert::ManifestFormat;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let layout = images(
        &src,
        &[
            ("amd64", parse("linux/amd64")),
            ("arm64", parse("linux/arm64")),
            ("s390x", parse("linux/s390x")),
        ],
    )
    .await;
    let v2s2 = copy_options().with_format(Some(ManifestFormat::DockerV2S2));
    for tag in ["amd64", "s390x"] {
        copy(
            &at("oci", &src, &format!(":{tag}")),
            &at("oci", &src, &format!(":{tag}-v2s2")),
            &v2s2,
        )
        .await
        .unwrap();
    }
    let docker_manifest = "application/vnd.docker.distribution.manifest.v2+json";

    // An OCI index of a Docker schema 2 image and an OCI one, as the image spec allows.
    let mixed = at("oci", &src, ":mixed");
    let report = index_create(
        &mixed,
        &[at("oci", &src, ":amd64-v2s2"), at("oci", &src, ":arm64")],
        &options(),
    )
    .await
    .unwrap();
    assert_eq!(report.media_type, "application/vnd.oci.image.index.v1+json");
    assert_eq!(report.manifests[0].media_type, docker_manifest);
    let (_, index) = index_at(&layout, "mixed").await;
    assert_eq!(
        platforms_checked(&layout, &index).await,
        [parse("linux/amd64"), parse("linux/arm64")]
    );

    // A Docker manifest list (made by copy --format v2s2) stays one: it takes a Docker
    // image, refuses an OCI one and annotations, and keeps its media type.
    copy(&mixed, &at("oci", &src, ":list"), &v2s2)
        .await
        .unwrap();
    let list = at("oci", &src, ":list");
    let list_type = "application/vnd.docker.distribution.manifest.list.v2+json";
    assert_eq!(
        layout
            .resolve("list")
            .await
            .unwrap()
            .media_type()
            .to_string(),
        list_type
    );
    let before = index_json(&src);
    let err = index_append(&list, &[at("oci", &src, ":s390x")], &options())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::IndexMediaType { index_media_type, .. } if index_media_type == list_type),
        "{err:?}"
    );
    let err = index_annotate(&list, &IndexAnnotations::new().set("a", "b"), &options())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AnnotationsNeedOci { .. }), "{err:?}");
    assert_eq!(index_json(&src), before);
    let appended = index_append(&list, &[at("oci", &src, ":s390x-v2s2")], &options())
        .await
        .unwrap();
    assert_eq!(appended.media_type, list_type);
    let (root, index) = index_at(&layout, "list").await;
    assert_eq!(root.media_type().to_string(), list_type);
    assert_eq!(
        platforms_checked(&layout, &index).await,
        [
            parse("linux/amd64"),
            parse("linux/arm64"),
            parse("linux/s390x")
        ]
    );
}
