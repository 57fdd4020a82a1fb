//! `delete`, `catalog`, `tags_matching` and the registry side of `inspect`: in layouts, in
//! an in-process `ocikit serve`, and in Distribution 2.8 (which deletes by digest only).

use std::path::Path;
use std::sync::Arc;

use ocikit_codec::compression::Compression;
use ocikit_digest::oci_spec::image::Descriptor;
use ocikit_layout::{Artifact, ImageBuilder, IndexBuilder, LayerSpec, Layout};
use ocikit_registry::{Config, Registry};
use ocikit_store::{FsStore, MemoryStore};
use ocikit_transport::{
    CatalogOptions, CopyOptions, DeleteOptions, Error, Location, Operation, Summary, TagOrder,
    TagSelection, catalog, copy, delete, inspect, tags, tags_matching,
};

use crate::registry::{docker, plain, serve};

/// A small image in `layout` tagged `tag`: the layer of `base` (shared by every image made
/// from it), then a layer holding one file with `content`.
async fn small(layout: &Layout, base: &Path, tag: &str, content: &str) -> Descriptor {
    let top = tempfile::tempdir().unwrap();
    std::fs::write(top.path().join("file.txt"), content).unwrap();
    let mut builder = ImageBuilder::new(layout);
    builder.env("CONTENT", content);
    builder.label("org.example.tag", tag);
    for dir in [base, top.path()] {
        builder
            .add_layer_from_dir(dir, LayerSpec::new().compression(Compression::None))
            .await
            .unwrap();
    }
    builder.write_and_tag(tag).await.unwrap()
}

fn base() -> tempfile::TempDir {
    let base = tempfile::tempdir().unwrap();
    std::fs::write(base.path().join("base.txt"), "the shared base\n").unwrap();
    base
}

async fn new_layout(dir: &Path) -> Layout {
    Layout::create(FsStore::open(dir).await.unwrap())
        .await
        .unwrap()
}

fn blob_count(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("blobs/sha256")).unwrap().count()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tag_goes_from_a_layout_with_the_blobs_only_it_reaches() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("images");
    let layout = new_layout(&path).await;
    let base = base();
    let one = small(&layout, base.path(), "v1", "one").await;
    layout.set_tag("v1-alias", &one).await.unwrap();
    let two = small(&layout, base.path(), "v2", "two").await;
    // Two images of manifest, config and two layers, the base layer shared.
    assert_eq!(blob_count(&path), 7);

    // Another tag names the image: only the tag goes.
    let report = delete(
        &format!("oci:{}:v1", path.display()).parse().unwrap(),
        &DeleteOptions::new(),
    )
    .await
    .unwrap();
    assert_eq!(report.tags_removed, ["v1"]);
    assert_eq!(report.digest, one.digest().to_string());
    assert!(report.blobs_removed.is_empty(), "{report:?}");
    assert!(!report.manifest_removed);
    assert_eq!(blob_count(&path), 7);

    // The last tag: its manifest, config and own layer go, the shared base stays.
    let report = delete(
        &format!("oci:{}:v1-alias", path.display()).parse().unwrap(),
        &DeleteOptions::new(),
    )
    .await
    .unwrap();
    assert_eq!(report.tags_removed, ["v1-alias"]);
    assert_eq!(report.blobs_removed.len(), 3, "{report:?}");
    assert!(report.manifest_removed);
    assert!(report.bytes_removed > 0);
    assert_eq!(blob_count(&path), 4);
    let tags: Vec<String> = layout
        .tags()
        .await
        .unwrap()
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    assert_eq!(tags, ["v2"]);
    let fsck = layout
        .fsck(&ocikit_layout::FsckOptions::new())
        .await
        .unwrap();
    assert!(fsck.is_clean(), "{fsck:?}");
    assert_eq!(
        layout.resolve("v2").await.unwrap().digest(),
        two.digest(),
        "the other image is whole"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_digest_still_referenced_in_a_layout_is_refused_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("images");
    let layout = new_layout(&path).await;
    let base = base();
    let one = small(&layout, base.path(), "v1", "one").await;
    let mut index = IndexBuilder::new(&layout);
    index.add(&one).await.unwrap();
    let multi = index.write_and_tag("multi").await.unwrap();
    let at_digest: Location = format!("oci:{}@{}", path.display(), one.digest())
        .parse()
        .unwrap();

    let before = std::fs::read(path.join("index.json")).unwrap();
    let blobs = blob_count(&path);
    let err = delete(&at_digest, &DeleteOptions::new()).await.unwrap_err();
    let Error::StillReferenced { references, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(
        references,
        &[format!("index {}", multi.digest()), "tag v1".to_string()]
    );
    assert!(err.to_string().contains("tag v1"), "{err}");
    // Nothing changed.
    assert_eq!(std::fs::read(path.join("index.json")).unwrap(), before);
    assert_eq!(blob_count(&path), blobs);

    // Forced: the tag goes, and the blobs the index still reaches stay.
    let report = delete(&at_digest, &DeleteOptions::new().with_force(true))
        .await
        .unwrap();
    assert_eq!(report.tags_removed, ["v1"]);
    assert_eq!(report.forced.len(), 2, "{report:?}");
    assert!(!report.manifest_removed);
    assert!(report.blobs_removed.is_empty());
    assert!(layout.resolve("v1").await.is_err());
    assert!(
        layout
            .fsck(&ocikit_layout::FsckOptions::new())
            .await
            .unwrap()
            .is_clean()
    );

    // The index by digest: nothing else names it but its tag, which force lets go, and
    // then everything goes.
    let report = delete(
        &format!("oci:{}@{}", path.display(), multi.digest())
            .parse()
            .unwrap(),
        &DeleteOptions::new().with_force(true),
    )
    .await
    .unwrap();
    assert_eq!(report.tags_removed, ["multi"]);
    assert!(report.manifest_removed);
    assert_eq!(blob_count(&path), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn attached_artifacts_go_with_their_image_and_a_tagged_one_holds_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("images");
    let layout = new_layout(&path).await;
    let base = base();
    let one = small(&layout, base.path(), "v1", "one").await;
    let sbom = layout
        .attach(
            &one,
            &Artifact::new("application/vnd.example.sbom")
                .with_blob("application/json", &b"{\"sbom\":1}"[..]),
        )
        .await
        .unwrap();
    let two = small(&layout, base.path(), "v2", "two").await;
    let signature = layout
        .attach(
            &two,
            &Artifact::new("application/vnd.example.signature")
                .with_blob("application/octet-stream", &b"signed"[..]),
        )
        .await
        .unwrap();
    layout.set_tag("sig", &signature).await.unwrap();

    // The untagged SBOM goes with v1.
    let report = delete(
        &format!("oci:{}@{}", path.display(), one.digest())
            .parse()
            .unwrap(),
        &DeleteOptions::new().with_force(true),
    )
    .await
    .unwrap();
    assert_eq!(report.referrers_removed, [sbom.digest().to_string()]);
    assert!(report.manifest_removed);
    assert!(report.blobs_removed.contains(&sbom.digest().to_string()));

    // v2's tagged signature refers to it: the digest is refused without force.
    layout.remove_tag("v2").await.unwrap();
    let err = delete(
        &format!("oci:{}@{}", path.display(), two.digest())
            .parse()
            .unwrap(),
        &DeleteOptions::new(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, Error::StillReferenced { references, .. } if references == &[format!("artifact {}", signature.digest())]),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_images_and_archives_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("images");
    let layout = new_layout(&path).await;
    let base = base();
    small(&layout, base.path(), "v1", "one").await;
    let before = std::fs::read(path.join("index.json")).unwrap();
    let err = delete(
        &format!("oci:{}:nope", path.display()).parse().unwrap(),
        &DeleteOptions::new(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, Error::TagNotFound { tag, .. } if tag == "nope"),
        "{err:?}"
    );
    let err = delete(
        &format!("oci:{}@sha256:{}", path.display(), "0".repeat(64))
            .parse()
            .unwrap(),
        &DeleteOptions::new(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::ManifestNotFound { .. }), "{err:?}");
    let err = delete(
        &format!("oci:{}", path.display()).parse().unwrap(),
        &DeleteOptions::new(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::NoSelector), "{err:?}");
    let err = delete(
        &format!("oci-archive:{}", dir.path().join("a.tar").display())
            .parse()
            .unwrap(),
        &DeleteOptions::new(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::DeleteUnsupported { .. }), "{err:?}");
    assert_eq!(std::fs::read(path.join("index.json")).unwrap(), before);
}

/// Pushes `tag` of the layout at `path` to `docker://addr/repo:as_tag`.
async fn push(path: &Path, tag: &str, addr: &str, destination: &str) {
    copy(
        &format!("oci:{}:{tag}", path.display()).parse().unwrap(),
        &docker(addr, destination),
        &CopyOptions::new()
            .with_source(plain())
            .with_destination(plain()),
    )
    .await
    .unwrap();
}

async fn repository_tags(addr: &str, repo: &str) -> Vec<String> {
    let mut listed = tags(&docker(addr, repo), &plain()).await.unwrap().tags;
    listed.sort();
    listed
}

/// A layout with images `v1` and `v2`.
async fn two_images(dir: &Path) -> (Descriptor, Descriptor) {
    let layout = new_layout(dir).await;
    let base = base();
    let one = small(&layout, base.path(), "v1", "one").await;
    let two = small(&layout, base.path(), "v2", "two").await;
    (one, two)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_registry_deletes_tags_and_refuses_referenced_digests_unless_forced() {
    let addr = serve().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("images");
    let (one, _) = two_images(&path).await;
    push(&path, "v1", &addr, "app:v1").await;
    push(&path, "v1", &addr, "app:also-v1").await;
    push(&path, "v2", &addr, "app:v2").await;
    let options = DeleteOptions::new().with_registry(plain());

    // A tag goes alone (ocikit serve deletes tags).
    let report = delete(&docker(&addr, "app:v1"), &options).await.unwrap();
    assert_eq!(report.tags_removed, ["v1"]);
    assert!(!report.manifest_removed);
    assert_eq!(report.digest, one.digest().to_string());
    assert_eq!(repository_tags(&addr, "app").await, ["also-v1", "v2"]);

    // The digest is still tagged `also-v1`.
    let by_digest = docker(&addr, &format!("app@{}", one.digest()));
    let err = delete(&by_digest, &options).await.unwrap_err();
    assert!(
        matches!(&err, Error::StillReferenced { references, .. } if references == &["tag also-v1".to_string()]),
        "{err:?}"
    );
    assert_eq!(repository_tags(&addr, "app").await, ["also-v1", "v2"]);
    let report = delete(&by_digest, &options.clone().with_force(true))
        .await
        .unwrap();
    assert!(report.manifest_removed);
    assert_eq!(report.tags_removed, ["also-v1"]);
    assert_eq!(repository_tags(&addr, "app").await, ["v2"]);
    let gone = ocikit_transport::inspect_raw(&by_digest, &plain()).await;
    assert!(gone.is_err(), "the manifest is gone");

    // Unknown tags and digests are the registry's NotFound.
    for missing in ["app:nope".to_string(), format!("app@{}", one.digest())] {
        let err = delete(&docker(&addr, &missing), &options)
            .await
            .unwrap_err();
        assert!(
            matches!(
                &err,
                Error::Registry {
                    source: ocikit_client::Error::NotFound { .. },
                    ..
                }
            ),
            "{missing}: {err:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_index_in_a_registry_holds_its_images() {
    let addr = serve().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("images");
    let (one, two) = two_images(&path).await;
    let layout = crate::open(&path).await;
    let mut index = IndexBuilder::new(&layout);
    index.add(&one).await.unwrap();
    index.add(&two).await.unwrap();
    let multi = index.write_and_tag("multi").await.unwrap();
    push(&path, "multi", &addr, "app:multi").await;

    let err = delete(
        &docker(&addr, &format!("app@{}", two.digest())),
        &DeleteOptions::new().with_registry(plain()),
    )
    .await
    .unwrap_err();
    let Error::StillReferenced { references, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(
        references,
        &[format!("index {} (tag multi)", multi.digest())]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_registry_that_does_not_delete_is_unsupported() {
    let registry = Registry::new(
        Arc::new(MemoryStore::new()),
        Arc::new(MemoryStore::new()),
        Config::default().delete_enabled(false),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let app = registry.router();
    tokio::spawn(async move {
        axum::serve(listener, app).await.ok();
    });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("images");
    two_images(&path).await;
    push(&path, "v1", &addr, "app:v1").await;
    let err = delete(
        &docker(&addr, "app:v1"),
        &DeleteOptions::new().with_registry(plain()).with_force(true),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Registry {
                operation: Operation::Delete,
                source: ocikit_client::Error::Unsupported { status: 405, .. },
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(repository_tags(&addr, "app").await, ["v1"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_catalog_is_read_page_by_page() {
    let addr = serve().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("images");
    two_images(&path).await;
    for repo in ["c/app", "a/app", "b", "d", "e"] {
        push(&path, "v1", &addr, &format!("{repo}:v1")).await;
    }
    let host = format!("docker://{addr}");
    let options = CatalogOptions::new().with_registry(plain());
    let all = catalog(&host, &options.clone().with_page_size(Some(2)))
        .await
        .unwrap();
    assert_eq!(all.repositories, ["a/app", "b", "c/app", "d", "e"]);
    assert_eq!(all.registry, addr);
    let first = catalog(
        &format!("{host}/"),
        &options.clone().with_page_size(Some(2)).with_limit(Some(3)),
    )
    .await
    .unwrap();
    assert_eq!(first.repositories, ["a/app", "b", "c/app"]);
    let whole = catalog(&host, &options).await.unwrap();
    assert_eq!(whole.repositories, all.repositories);

    // The page API itself: `next` is where the next page starts.
    let client = plain().client(&addr).unwrap();
    let page = client.catalog_page(Some(2), Some("b")).await.unwrap();
    assert_eq!(page.repositories, ["c/app", "d"]);
    assert_eq!(page.next.as_deref(), Some("d"));
    let last = client.catalog_page(Some(2), Some("d")).await.unwrap();
    assert_eq!(
        (last.repositories, last.next),
        (vec!["e".to_string()], None)
    );

    for bad in [
        format!("docker://{addr}/a/app"),
        format!("oci:{}", path.display()),
        "docker://".to_string(),
        addr.clone(),
    ] {
        let err = catalog(&bad, &options).await.unwrap_err();
        assert!(
            matches!(err, Error::NeedsRegistryHost { ref location, .. } if *location == bad),
            "{bad}: {err:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tags_are_filtered_and_ordered_by_version() {
    let addr = serve().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("images");
    two_images(&path).await;
    for tag in [
        "v1.10.0",
        "latest",
        "v1.2.0",
        "1.9",
        "v2.0.0-rc.1",
        "v2.0.0",
    ] {
        push(&path, "v1", &addr, &format!("app:{tag}")).await;
    }
    let app = docker(&addr, "app");
    let selection = TagSelection::all()
        .filter(r"^v?1\.")
        .unwrap()
        .order(TagOrder::Semver);
    let listed = tags_matching(&app, &plain(), &selection).await.unwrap();
    assert_eq!(listed.tags, ["v1.2.0", "1.9", "v1.10.0"]);
    let newest = TagSelection::all()
        .newest(2)
        .order(TagOrder::SemverDescending);
    let listed = tags_matching(&app, &plain(), &newest).await.unwrap();
    assert_eq!(listed.tags, ["v2.0.0", "v2.0.0-rc.1"]);
    let range = TagSelection::all().range(">=1.9, <2").unwrap();
    let mut listed = tags_matching(&app, &plain(), &range).await.unwrap().tags;
    listed.sort();
    assert_eq!(listed, ["1.9", "v1.10.0"]);
    // The plain listing is the registry's, whole.
    assert_eq!(tags(&app, &plain()).await.unwrap().tags.len(), 6);
    let err = Error::from(TagSelection::all().filter("v1.(").unwrap_err());
    assert!(err.to_string().contains("`v1.(`"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn inspecting_a_registry_image_says_what_skopeo_says() {
    let addr = serve().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("images");
    let (one, _) = two_images(&path).await;
    push(&path, "v1", &addr, "team/app:v1").await;
    push(&path, "v2", &addr, "team/app:v2").await;
    let Summary::Image(summary) = inspect(&docker(&addr, "team/app:v1"), &plain())
        .await
        .unwrap()
    else {
        panic!("an image");
    };
    assert_eq!(summary.name.as_deref(), Some(&*format!("{addr}/team/app")));
    let mut repo_tags = summary.repo_tags.clone().unwrap();
    repo_tags.sort();
    assert_eq!(repo_tags, ["v1", "v2"]);
    assert_eq!(summary.digest, one.digest().to_string());
    assert_eq!(summary.os.as_deref(), Some("linux"));
    assert!(summary.architecture.is_some());
    assert_eq!(
        summary.env.as_deref(),
        Some(&["CONTENT=one".to_string()][..])
    );
    assert_eq!(
        summary
            .labels
            .as_ref()
            .unwrap()
            .get("org.example.tag")
            .map(String::as_str),
        Some("v1")
    );
    assert_eq!(summary.layers.len(), 2);
    let json = serde_json::to_value(&summary).unwrap();
    for key in [
        "name",
        "repoTags",
        "digest",
        "created",
        "labels",
        "architecture",
        "os",
        "layers",
        "env",
        "mediaType",
        "platform",
        "config",
        "runConfig",
    ] {
        assert!(json.get(key).is_some(), "{key} in {json}");
    }
    // A layout's image has neither name nor repository tags.
    let Summary::Image(local) = inspect(
        &format!("oci:{}:v1", path.display()).parse().unwrap(),
        &plain(),
    )
    .await
    .unwrap() else {
        panic!("an image");
    };
    assert_eq!((local.name, local.repo_tags), (None, None));
}

#[tokio::test(flavor = "multi_thread")]
async fn distribution_deletes_by_digest_only() {
    let Some(registry) = ocikit_testkit::distribution::Distribution::start() else {
        return;
    };
    let addr = registry.addr().to_string();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("images");
    let (one, two) = two_images(&path).await;
    push(&path, "v1", &addr, "app:v1").await;
    push(&path, "v1", &addr, "app:also-v1").await;
    push(&path, "v2", &addr, "app:v2").await;
    push(&path, "v2", &addr, "other:v2").await;
    let options = DeleteOptions::new().with_registry(plain());

    // Distribution cannot delete the tag alone, and deleting the digest would take
    // `also-v1` too.
    let err = delete(&docker(&addr, "app:v1"), &options)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::StillReferenced { references, .. } if references == &["tag also-v1".to_string()]),
        "{err:?}"
    );
    assert_eq!(repository_tags(&addr, "app").await, ["also-v1", "v1", "v2"]);

    // v2 is tagged once: its digest goes, and the tag with it.
    let report = delete(&docker(&addr, "app:v2"), &options).await.unwrap();
    assert!(report.manifest_removed);
    assert_eq!(report.tags_removed, ["v2"]);
    assert_eq!(report.digest, two.digest().to_string());
    assert_eq!(repository_tags(&addr, "app").await, ["also-v1", "v1"]);

    // Forced: v1's digest goes with both its tags.
    let report = delete(&docker(&addr, "app:v1"), &options.clone().with_force(true))
        .await
        .unwrap();
    assert_eq!(report.tags_removed, ["also-v1", "v1"]);
    assert_eq!(report.digest, one.digest().to_string());
    assert!(repository_tags(&addr, "app").await.is_empty());

    let listed = catalog(
        &format!("docker://{addr}"),
        &CatalogOptions::new()
            .with_registry(plain())
            .with_page_size(Some(1)),
    )
    .await
    .unwrap();
    assert_eq!(listed.repositories, ["app", "other"]);
}
