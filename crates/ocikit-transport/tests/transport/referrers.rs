//! Referrers along with a copy (`CopyOptions::with_referrers`, `oras cp -r`): an image with
//! an SBOM attached and a signature attached to the SBOM goes from a layout to a registry
//! with the referrers API (served in-process), to another registry, within one, back to a
//! layout, through an oci-archive, and to and from Distribution 2.8 (the referrers tag
//! schema); the two referrers are found by the destination's own discovery each time.
//! Without the option they stay behind; a corrupt referrer fails the copy and tags nothing;
//! a docker-archive refuses them.

use std::path::Path;

use ocikit_client::Client;
use ocikit_digest::Digest;
use ocikit_digest::oci_spec::image::Descriptor;
use ocikit_layout::{Artifact, ImageBuilder, LayerSpec, Layout};
use ocikit_store::FsStore;
use ocikit_testkit::distribution::Distribution;
use ocikit_testkit::tarball::{Entry, archive};
use ocikit_transport::copy_referrers::ReferrersReport;
use ocikit_transport::{CopyOptions, CopyReport, Error, Location, copy};

use crate::registry::{docker, plain, serve};
use crate::{Seen, at, open};

const SBOM: &str = "application/vnd.example.sbom+json";
const SIGNATURE: &str = "application/vnd.example.signature";

/// The image and its two referrers.
struct Signed {
    root: Descriptor,
    sbom: Descriptor,
    signature: Descriptor,
}

/// A layout at `dir` with a small image tagged `tag` (one layer) for `platform`.
async fn small_image(layout: &Layout, tag: Option<&str>, platform: &str) -> Descriptor {
    let mut builder = ImageBuilder::new(layout);
    builder.platform(&ocikit_digest::platform::parse(platform).unwrap());
    builder
        .add_layer_from_tar(
            std::io::Cursor::new(archive(&[Entry::file("etc/platform", platform)])),
            LayerSpec::new(),
        )
        .await
        .unwrap();
    match tag {
        Some(tag) => builder.write_and_tag(tag).await.unwrap(),
        None => builder.write().await.unwrap(),
    }
}

/// Attaches an SBOM to `subject` and a signature to the SBOM.
async fn sign(layout: &Layout, subject: &Descriptor, name: &str) -> (Descriptor, Descriptor) {
    let sbom = layout
        .attach(
            subject,
            &Artifact::new(SBOM).with_blob(SBOM, format!("{{\"sbom\":\"{name}\"}}")),
        )
        .await
        .unwrap();
    let signature = layout
        .attach(
            &sbom,
            &Artifact::new(SIGNATURE).with_blob(SIGNATURE, format!("signed {name}")),
        )
        .await
        .unwrap();
    (sbom, signature)
}

/// A layout at `dir` holding the image tagged `v1`, its SBOM and the SBOM's signature.
async fn signed(dir: &Path) -> Signed {
    let layout = Layout::create(FsStore::open(dir).await.unwrap())
        .await
        .unwrap();
    let root = small_image(&layout, Some("v1"), "linux/amd64").await;
    let (sbom, signature) = sign(&layout, &root, "v1").await;
    Signed {
        root,
        sbom,
        signature,
    }
}

fn options() -> CopyOptions {
    CopyOptions::new()
        .with_source(plain())
        .with_destination(plain())
        .with_progress(Seen::default().sink())
}

fn with_referrers() -> CopyOptions {
    options().with_referrers(true)
}

/// The digests of the referrers of `subject` that the location's own discovery lists: a
/// layout's referrers index, a registry's referrers API or tag schema.
async fn listed(location: &Location, subject: &Descriptor) -> Vec<String> {
    let subject: Digest = subject.digest().to_string().parse().unwrap();
    let found = match location {
        Location::Oci { path, .. } => open(path).await.referrers(&subject, None).await.unwrap(),
        Location::Docker {
            registry,
            repository,
            ..
        } => client(registry)
            .referrers(repository, &subject, None)
            .await
            .unwrap(),
        other => panic!("no discovery in {other}"),
    };
    found.iter().map(|d| d.digest().to_string()).collect()
}

fn client(registry: &str) -> Client {
    Client::builder(registry).plain_http(true).build().unwrap()
}

/// The SBOM is the image's one referrer, the signature the SBOM's, at `location`.
async fn assert_discoverable(location: &Location, signed: &Signed) {
    assert_eq!(
        listed(location, &signed.root).await,
        vec![signed.sbom.digest().to_string()],
        "the image's referrers at {location}"
    );
    assert_eq!(
        listed(location, &signed.sbom).await,
        vec![signed.signature.digest().to_string()],
        "the SBOM's referrers at {location}"
    );
}

/// The referrer counts of a copy that took them along.
fn counts(report: &CopyReport) -> ReferrersReport {
    report
        .referrers
        .unwrap_or_else(|| panic!("no referrers report: {report:?}"))
}

fn assert_copied(report: &CopyReport, copied: usize, skipped: usize) {
    let counts = counts(report);
    assert_eq!(
        (counts.copied, counts.skipped),
        (copied, skipped),
        "{report:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn referrers_travel_between_layouts_and_registries_with_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let signed = signed(&src).await;
    let (one, two) = (serve().await, serve().await);

    // Layout to registry: both referrers, with their blobs (manifest, config, layer each;
    // the empty config is one blob for both).
    let pushed = copy(
        &at("oci", &src, ":v1"),
        &docker(&one, "app:v1"),
        &with_referrers(),
    )
    .await
    .unwrap();
    assert_copied(&pushed, 2, 0);
    assert_eq!(counts(&pushed).blobs, 3, "{pushed:?}");
    assert_discoverable(&docker(&one, "app:v1"), &signed).await;
    let json = serde_json::to_value(&pushed).unwrap();
    assert_eq!(json["referrersCopied"], 2, "{json}");

    // Again: present, skipped, no blob moved.
    let again = copy(
        &at("oci", &src, ":v1"),
        &docker(&one, "app:v1"),
        &with_referrers(),
    )
    .await
    .unwrap();
    assert_copied(&again, 0, 2);
    assert_eq!(counts(&again).blobs, 0, "{again:?}");

    // Registry to another registry (through a scratch layout).
    let report = copy(
        &docker(&one, "app:v1"),
        &docker(&two, "mirror/app:v1"),
        &with_referrers(),
    )
    .await
    .unwrap();
    assert_copied(&report, 2, 0);
    assert_discoverable(&docker(&two, "mirror/app:v1"), &signed).await;

    // Within one registry: blobs mounted, none uploaded.
    let report = copy(
        &docker(&one, "app:v1"),
        &docker(&one, "other:v1"),
        &with_referrers(),
    )
    .await
    .unwrap();
    assert_copied(&report, 2, 0);
    assert_eq!(report.blobs_copied, 0, "{report:?}");
    assert_discoverable(&docker(&one, "other:v1"), &signed).await;
    let report = copy(
        &docker(&one, "app:v1"),
        &docker(&one, "other:v1"),
        &with_referrers(),
    )
    .await
    .unwrap();
    assert_copied(&report, 0, 2);
    assert_eq!(counts(&report).blobs, 0, "{report:?}");

    // Registry to a new layout, and again into it (present: skipped).
    let back = dir.path().join("back");
    let report = copy(
        &docker(&two, "mirror/app:v1"),
        &at("oci", &back, ":v1"),
        &with_referrers(),
    )
    .await
    .unwrap();
    assert_copied(&report, 2, 0);
    assert_discoverable(&at("oci", &back, ":v1"), &signed).await;
    let report = copy(
        &docker(&two, "mirror/app:v1"),
        &at("oci", &back, ":v1"),
        &with_referrers(),
    )
    .await
    .unwrap();
    assert_copied(&report, 0, 2);
    assert_eq!(counts(&report).blobs, 0, "{report:?}");
    assert!(
        open(&back)
            .await
            .fsck(&Default::default())
            .await
            .unwrap()
            .is_clean()
    );

    // Layout to layout.
    let other = dir.path().join("other");
    let report = copy(
        &at("oci", &src, ":v1"),
        &at("oci", &other, ":v1"),
        &with_referrers(),
    )
    .await
    .unwrap();
    assert_copied(&report, 2, 0);
    assert_discoverable(&at("oci", &other, ":v1"), &signed).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn referrers_travel_through_an_oci_archive() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let signed = signed(&src).await;
    let file = dir.path().join("signed.tar");

    let report = copy(
        &at("oci", &src, ":v1"),
        &at("oci-archive", &file, ":v1"),
        &with_referrers(),
    )
    .await
    .unwrap();
    assert_copied(&report, 2, 0);
    // Into a layout, by tag (the archive's referrers are untagged entries of its own).
    let back = dir.path().join("back");
    let report = copy(
        &at("oci-archive", &file, ":v1"),
        &at("oci", &back, ":v1"),
        &with_referrers(),
    )
    .await
    .unwrap();
    assert_copied(&report, 2, 0);
    assert_eq!(report.image_count, 1, "{report:?}");
    assert_discoverable(&at("oci", &back, ":v1"), &signed).await;
    // The archive as skopeo reads it: one tag, two untagged entries.
    let whole = dir.path().join("whole");
    copy(
        &at("oci-archive", &file, ""),
        &at("oci", &whole, ""),
        &options(),
    )
    .await
    .unwrap();
    let index = open(&whole).await.index().await.unwrap();
    let tags: Vec<String> = index
        .tags()
        .into_iter()
        .map(|(t, _)| t.to_string())
        .collect();
    assert_eq!(
        (index.manifests().count(), tags),
        (3, vec!["v1".to_string()])
    );

    // Without the option, the archive holds the image alone.
    let bare = dir.path().join("bare.tar");
    copy(
        &at("oci", &src, ":v1"),
        &at("oci-archive", &bare, ":v1"),
        &options(),
    )
    .await
    .unwrap();
    let alone = dir.path().join("alone");
    copy(
        &at("oci-archive", &bare, ""),
        &at("oci", &alone, ""),
        &options(),
    )
    .await
    .unwrap();
    assert_eq!(
        open(&alone)
            .await
            .index()
            .await
            .unwrap()
            .manifests()
            .count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn referrers_travel_to_and_from_distribution_through_the_tag_schema() {
    let Some(registry) = Distribution::start() else {
        return;
    };
    let addr = registry.addr().to_string();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let signed = signed(&src).await;

    let report = copy(
        &at("oci", &src, ":v1"),
        &docker(&addr, "app:v1"),
        &with_referrers(),
    )
    .await
    .unwrap();
    assert_copied(&report, 2, 0);
    // No referrers API there: the subjects' tag schema indexes hold them.
    let tags = client(&addr).tags("app").await.unwrap();
    for subject in [&signed.root, &signed.sbom] {
        let fallback = subject.digest().to_string().replace(':', "-");
        assert!(tags.contains(&fallback), "{tags:?}");
    }
    assert_discoverable(&docker(&addr, "app:v1"), &signed).await;
    let again = copy(
        &at("oci", &src, ":v1"),
        &docker(&addr, "app:v1"),
        &with_referrers(),
    )
    .await
    .unwrap();
    assert_copied(&again, 0, 2);
    assert_eq!(counts(&again).blobs, 0, "{again:?}");

    // Within Distribution (blobs mounted), and out of it into a layout and to `ocikit serve`.
    let report = copy(
        &docker(&addr, "app:v1"),
        &docker(&addr, "copy/app:v1"),
        &with_referrers(),
    )
    .await
    .unwrap();
    assert_copied(&report, 2, 0);
    assert_discoverable(&docker(&addr, "copy/app:v1"), &signed).await;
    let back = dir.path().join("back");
    let report = copy(
        &docker(&addr, "copy/app:v1"),
        &at("oci", &back, ":v1"),
        &with_referrers(),
    )
    .await
    .unwrap();
    assert_copied(&report, 2, 0);
    assert_discoverable(&at("oci", &back, ":v1"), &signed).await;
    let ours = serve().await;
    copy(
        &docker(&addr, "copy/app:v1"),
        &docker(&ours, "app:v1"),
        &with_referrers(),
    )
    .await
    .unwrap();
    assert_discoverable(&docker(&ours, "app:v1"), &signed).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_the_option_referrers_stay_behind() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let signed = signed(&src).await;
    let addr = serve().await;

    let report = copy(
        &at("oci", &src, ":v1"),
        &docker(&addr, "app:v1"),
        &options(),
    )
    .await
    .unwrap();
    assert_eq!(report.referrers, None);
    let json = serde_json::to_value(&report).unwrap();
    assert!(json.get("referrersCopied").is_none(), "{json}");
    assert!(
        listed(&docker(&addr, "app:v1"), &signed.root)
            .await
            .is_empty()
    );
    let back = dir.path().join("back");
    copy(
        &docker(&addr, "app:v1"),
        &at("oci", &back, ":v1"),
        &options(),
    )
    .await
    .unwrap();
    assert!(
        listed(&at("oci", &back, ":v1"), &signed.root)
            .await
            .is_empty()
    );
    let other = dir.path().join("other");
    copy(
        &at("oci", &src, ":v1"),
        &at("oci", &other, ":v1"),
        &options(),
    )
    .await
    .unwrap();
    assert!(
        listed(&at("oci", &other, ":v1"), &signed.root)
            .await
            .is_empty()
    );
    assert_eq!(
        open(&other)
            .await
            .index()
            .await
            .unwrap()
            .manifests()
            .count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_referrers_of_the_platform_copied_go_along() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let layout = Layout::create(FsStore::open(&src).await.unwrap())
        .await
        .unwrap();
    let mut index = ocikit_layout::IndexBuilder::new(&layout);
    let mut images = Vec::new();
    for platform in ["linux/amd64", "linux/arm64"] {
        let root = small_image(&layout, None, platform).await;
        index.add(&root).await.unwrap();
        images.push(root);
    }
    let index = index.write_and_tag("multi").await.unwrap();
    let (amd_sbom, _) = sign(&layout, &images[0], "amd64").await;
    let (arm_sbom, _) = sign(&layout, &images[1], "arm64").await;
    let (index_sbom, _) = sign(&layout, &index, "index").await;

    // One platform: its image's referrers only (the index is not copied, nor are its).
    let amd = dir.path().join("amd");
    let query =
        ocikit_layout::PlatformQuery::new(&ocikit_digest::platform::parse("linux/amd64").unwrap());
    let report = copy(
        &at("oci", &src, ":multi"),
        &at("oci", &amd, ":app"),
        &with_referrers().with_platform(Some(query)),
    )
    .await
    .unwrap();
    assert_copied(&report, 2, 0);
    let copied = at("oci", &amd, ":app");
    assert_eq!(
        listed(&copied, &images[0]).await,
        vec![amd_sbom.digest().to_string()]
    );
    assert!(listed(&copied, &images[1]).await.is_empty());
    assert!(listed(&copied, &index).await.is_empty());

    // The whole index: the index's, and each image's, to a registry.
    let addr = serve().await;
    let report = copy(
        &at("oci", &src, ":multi"),
        &docker(&addr, "multi:v1"),
        &with_referrers(),
    )
    .await
    .unwrap();
    assert_copied(&report, 6, 0);
    let there = docker(&addr, "multi:v1");
    for (subject, sbom) in [
        (&images[0], &amd_sbom),
        (&images[1], &arm_sbom),
        (&index, &index_sbom),
    ] {
        assert_eq!(
            listed(&there, subject).await,
            vec![sbom.digest().to_string()]
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_referrer_fails_the_copy_and_tags_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let signed = signed(&src).await;
    // The signature's layer, same size, other bytes.
    let layout = open(&src).await;
    let ocikit_layout::Document::Manifest { manifest, .. } =
        layout.read_document(&signed.signature).await.unwrap()
    else {
        panic!("not a manifest");
    };
    let layer: Digest = manifest.layers()[0].digest().to_string().parse().unwrap();
    let path = src.join(layer.blob_path());
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[0] ^= 0x20;
    std::fs::write(&path, &bytes).unwrap();
    let addr = serve().await;

    let referrer_error = |err: &Error| matches!(err, Error::Referrer { digest, .. } if *digest == signed.signature.digest().to_string());
    // To a registry: nothing tagged (and the referrers that did verify are not pushed).
    let err = copy(
        &at("oci", &src, ":v1"),
        &docker(&addr, "app:v1"),
        &with_referrers(),
    )
    .await
    .unwrap_err();
    assert!(referrer_error(&err), "{err:?}");
    assert!(
        client(&addr)
            .tags("app")
            .await
            .unwrap_or_default()
            .is_empty()
    );
    // To a new layout: none appears.
    let new = dir.path().join("new");
    let err = copy(
        &at("oci", &src, ":v1"),
        &at("oci", &new, ":v1"),
        &with_referrers(),
    )
    .await
    .unwrap_err();
    assert!(referrer_error(&err), "{err:?}");
    assert!(!new.exists());
    // To an existing layout: no tag set.
    let existing = dir.path().join("existing");
    Layout::create(FsStore::open(&existing).await.unwrap())
        .await
        .unwrap();
    let err = copy(
        &at("oci", &src, ":v1"),
        &at("oci", &existing, ":v1"),
        &with_referrers(),
    )
    .await
    .unwrap_err();
    assert!(referrer_error(&err), "{err:?}");
    assert_eq!(
        open(&existing)
            .await
            .index()
            .await
            .unwrap()
            .manifests()
            .count(),
        0
    );
    // To an archive: no file.
    let file = dir.path().join("out.tar");
    let err = copy(
        &at("oci", &src, ":v1"),
        &at("oci-archive", &file, ":v1"),
        &with_referrers(),
    )
    .await
    .unwrap_err();
    assert!(referrer_error(&err), "{err:?}");
    assert!(!file.exists());
    // The image alone still goes.
    copy(
        &at("oci", &src, ":v1"),
        &docker(&addr, "app:v1"),
        &options(),
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_docker_archive_refuses_referrers() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    signed(&src).await;
    let file = dir.path().join("docker.tar");
    let docker_archive: Location = format!("docker-archive:{}:app:v1", file.display())
        .parse()
        .unwrap();

    let err = copy(&at("oci", &src, ":v1"), &docker_archive, &with_referrers())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::ReferrersNotHeld { ref location } if location.starts_with("docker-archive:")),
        "{err:?}"
    );
    assert!(!file.exists());
    // Without referrers it is written; read back with them, refused too.
    copy(&at("oci", &src, ":v1"), &docker_archive, &options())
        .await
        .unwrap();
    let back = dir.path().join("back");
    let err = copy(&docker_archive, &at("oci", &back, ":v1"), &with_referrers())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ReferrersNotHeld { .. }), "{err:?}");
    assert!(!back.exists());
    // New digests would orphan them: recompression is refused with referrers.
    let err = copy(
        &at("oci", &src, ":v1"),
        &at("oci", &back, ":v1"),
        &with_referrers().with_compression(Some(ocikit_codec::compression::Compression::Gzip)),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::ReferrersRewritten { .. }), "{err:?}");
    assert!(!back.exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn referrers_are_followed_down_to_the_bound_and_refused_below_it() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let layout = Layout::create(FsStore::open(&src).await.unwrap())
        .await
        .unwrap();
    let root = small_image(&layout, Some("v1"), "linux/amd64").await;
    // A chain of signatures, each on the one before, MAX_DEPTH long.
    let mut chain = vec![root.clone()];
    for n in 0..ocikit_transport::copy_referrers::MAX_DEPTH {
        let next = layout
            .attach(
                chain.last().unwrap(),
                &Artifact::new(SIGNATURE).with_blob(SIGNATURE, format!("signature {n}")),
            )
            .await
            .unwrap();
        chain.push(next);
    }
    let within = dir.path().join("within");
    let report = copy(
        &at("oci", &src, ":v1"),
        &at("oci", &within, ":v1"),
        &with_referrers(),
    )
    .await
    .unwrap();
    assert_copied(&report, ocikit_transport::copy_referrers::MAX_DEPTH, 0);
    let copied = at("oci", &within, ":v1");
    for pair in chain.windows(2) {
        assert_eq!(
            listed(&copied, &pair[0]).await,
            vec![pair[1].digest().to_string()]
        );
    }

    // One more level: refused, naming the referrer found too deep; nothing written.
    let deepest = layout
        .attach(
            chain.last().unwrap(),
            &Artifact::new(SIGNATURE).with_blob(SIGNATURE, "one too deep"),
        )
        .await
        .unwrap();
    let beyond = dir.path().join("beyond");
    let err = copy(
        &at("oci", &src, ":v1"),
        &at("oci", &beyond, ":v1"),
        &with_referrers(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, Error::ReferrersTooDeep { ref digest, .. } if *digest == deepest.digest().to_string()),
        "{err:?}"
    );
    assert!(!beyond.exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_whole_layout_takes_its_referrers_along_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let signed = signed(&src).await;

    // `oci:DIR` names every image; the attached artifacts are no images of their own.
    let bare = dir.path().join("bare");
    let report = copy(&at("oci", &src, ""), &at("oci", &bare, ""), &options())
        .await
        .unwrap();
    assert_eq!(report.image_count, 1);
    assert_eq!(report.referrers, None);
    assert_eq!(
        open(&bare).await.index().await.unwrap().manifests().count(),
        1
    );

    let mirror = dir.path().join("mirror");
    let report = copy(
        &at("oci", &src, ""),
        &at("oci", &mirror, ""),
        &with_referrers(),
    )
    .await
    .unwrap();
    assert_eq!(report.image_count, 1, "{report:?}");
    assert_copied(&report, 2, 0);
    assert_discoverable(&at("oci", &mirror, ""), &signed).await;
    // Into the layout that has the image already: only the referrers are added.
    let report = copy(
        &at("oci", &src, ""),
        &at("oci", &bare, ""),
        &with_referrers(),
    )
    .await
    .unwrap();
    assert_copied(&report, 2, 0);
    assert_eq!(report.blobs_copied, 0, "{report:?}");
    assert_discoverable(&at("oci", &bare, ""), &signed).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn within_one_registry_a_referrer_that_fails_tags_nothing() {
    use ocikit_store::Store as _;
    // A registry whose content store the test holds.
    let store = std::sync::Arc::new(ocikit_store::MemoryStore::new());
    let registry = ocikit_registry::Registry::new(
        store.clone(),
        std::sync::Arc::new(ocikit_store::MemoryStore::new()),
        ocikit_registry::Config::default(),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let app = registry.router();
    tokio::spawn(async move {
        axum::serve(listener, app).await.ok();
    });
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let signed = signed(&src).await;
    copy(
        &at("oci", &src, ":v1"),
        &docker(&addr, "app:v1"),
        &with_referrers(),
    )
    .await
    .unwrap();
    // The signature's layer goes missing from the registry.
    let ocikit_layout::Document::Manifest { manifest, .. } = open(&src)
        .await
        .read_document(&signed.signature)
        .await
        .unwrap()
    else {
        panic!("not a manifest");
    };
    let layer: Digest = manifest.layers()[0].digest().to_string().parse().unwrap();
    assert!(store.delete(&layer).await.unwrap());

    let err = copy(
        &docker(&addr, "app:v1"),
        &docker(&addr, "other:v1"),
        &with_referrers(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::CopyWithin { .. }), "{err:?}");
    let tags = client(&addr).tags("other").await.unwrap_or_default();
    assert!(!tags.contains(&"v1".to_string()), "{tags:?}");
    // Without referrers the image alone is copied and tagged.
    copy(
        &docker(&addr, "app:v1"),
        &docker(&addr, "other:v1"),
        &options(),
    )
    .await
    .unwrap();
    assert!(
        client(&addr)
            .tags("other")
            .await
            .unwrap()
            .contains(&"v1".to_string())
    );
}
