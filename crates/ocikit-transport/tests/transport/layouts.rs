//! A layout's own verbs by location: `init`, `list_images`, `tag`, `untag`, `attach`,
//! `fsck`, `gc`, and what they refuse.

use std::time::Duration;

use ocikit_digest::Digest;
use ocikit_layout::{FsckOptions, GcOptions};
use ocikit_transport::{ArtifactFile, ArtifactPushOptions, Error};

use crate::registry::plain;
use crate::{at, files, image};

/// The bytes of every blob file under `dir/blobs`, counted independently of the library.
fn blob_bytes(dir: &std::path::Path) -> u64 {
    files(&dir.join("blobs"))
        .iter()
        .map(|(_, b)| b.len() as u64)
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_layout_is_made_listed_tagged_and_untagged() {
    let dir = tempfile::tempdir().unwrap();
    let new = dir.path().join("new");
    ocikit_transport::init(&at("oci", &new, "")).await.unwrap();
    assert!(new.join("oci-layout").is_file() && new.join("index.json").is_file());
    let index = std::fs::read(new.join("index.json")).unwrap();
    // Again: it is a layout already, nothing changes.
    ocikit_transport::init(&at("oci", &new, "")).await.unwrap();
    assert_eq!(std::fs::read(new.join("index.json")).unwrap(), index);
    assert!(
        ocikit_transport::list_images(&at("oci", &new, ""))
            .await
            .unwrap()
            .is_empty()
    );

    let src = dir.path().join("src");
    let (_layout, root) = image(&src, "v1").await;
    let listed = ocikit_transport::list_images(&at("oci", &src, ""))
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    let row = &listed[0];
    assert_eq!(row.tag.as_deref(), Some("v1"));
    assert_eq!(row.digest, root.digest().to_string());
    // The footprint is every blob of the only image: all the blob files there are.
    assert_eq!(row.size, blob_bytes(&src));
    let here = ocikit_digest::platform::current();
    assert_eq!(
        row.platforms,
        [ocikit_digest::platform::format(
            &ocikit_digest::platform::build(
                &here.os().to_string(),
                &here.architecture().to_string(),
                here.variant().as_deref(),
            )
        )]
    );
    let json = serde_json::to_value(row).unwrap();
    assert_eq!(
        json.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["digest", "mediaType", "platforms", "size", "tag"]
    );

    // Tagged by digest, and by a location in the same layout; untagged again.
    let (tag, tagged) =
        ocikit_transport::tag(&at("oci", &src, &format!("@{}", root.digest())), "v2")
            .await
            .unwrap();
    assert_eq!((tag.as_str(), tagged.digest()), ("v2", root.digest()));
    let same = format!("oci:{}:v3", src.display());
    ocikit_transport::tag(&at("oci", &src, ":v1"), &same)
        .await
        .unwrap();
    let tags = |rows: Vec<ocikit_transport::ImageEntry>| -> Vec<Option<String>> {
        rows.into_iter().map(|r| r.tag).collect()
    };
    let listed = ocikit_transport::list_images(&at("oci", &src, ""))
        .await
        .unwrap();
    assert_eq!(
        tags(listed),
        [Some("v1".into()), Some("v2".into()), Some("v3".into())]
    );
    let (removed, descriptor) = ocikit_transport::untag(&at("oci", &src, ":v2"))
        .await
        .unwrap();
    assert_eq!(
        (removed.as_str(), descriptor.digest()),
        ("v2", root.digest())
    );
    let listed = ocikit_transport::list_images(&at("oci", &src, ""))
        .await
        .unwrap();
    assert_eq!(tags(listed), [Some("v1".into()), Some("v3".into())]);
}

#[tokio::test(flavor = "multi_thread")]
async fn layout_verbs_refuse_what_they_cannot_do_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    image(&src, "v1").await;
    let other = dir.path().join("other");
    let before = files(&src);

    let err = ocikit_transport::init(&at("oci", &other, ":v1"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotALayout { .. }), "{err:?}");
    assert!(!other.exists());
    let err = ocikit_transport::list_images(&at("oci", &other, ""))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::NoLayout {
                directory_exists: false,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!other.exists(), "ls made the directory it was to read");
    let err = ocikit_transport::tag(
        &at("oci", &src, ":v1"),
        &format!("oci:{}:v2", other.display()),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::OtherLayout { .. }), "{err:?}");
    let err = ocikit_transport::tag(&at("oci", &src, ":v1"), "../bad")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidTag { .. }), "{err:?}");
    let err = ocikit_transport::untag(&at("oci", &src, ":nope"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::TagNotFound { ref tag, .. } if tag == "nope"),
        "{err:?}"
    );
    let err = ocikit_transport::untag(&at("oci", &src, ""))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NeedsLayoutTag { .. }), "{err:?}");
    let sig = dir.path().join("sig.txt");
    std::fs::write(&sig, "x").unwrap();
    let options = ArtifactPushOptions::new()
        .with_artifact_type(Some("application/vnd.example.sig".into()))
        .with_file_media_type(Some("text/plain".into()));
    let err = ocikit_transport::attach(
        &at("oci", &src, ":nope"),
        &[ArtifactFile::new(&sig)],
        &options,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::TagNotFound { .. }), "{err:?}");
    for location in [at("oci", &src, ":v1"), at("oci-archive", &src, "")] {
        let err = ocikit_transport::fsck(&location, &FsckOptions::new())
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::NotALayout { .. } | Error::NeedsLayout { .. }),
            "{err:?}"
        );
        let err = ocikit_transport::gc(&location, &GcOptions::new())
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::NotALayout { .. } | Error::NeedsLayout { .. }),
            "{err:?}"
        );
    }
    assert_eq!(files(&src), before, "a refused verb changed the layout");

    // A manifest spoilt on disk: the listing names the tag that cannot be read.
    let listed = ocikit_transport::list_images(&at("oci", &src, ""))
        .await
        .unwrap();
    let digest: Digest = listed[0].digest.parse().unwrap();
    let file = src.join(digest.blob_path());
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[2] ^= 0x01;
    std::fs::write(&file, &bytes).unwrap();
    let err = ocikit_transport::list_images(&at("oci", &src, ""))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::ListImage { tag: Some(ref tag), .. } if tag == "v1"),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_artifact_is_attached_checked_and_collected() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let (_layout, root) = image(&src, "v1").await;
    let sbom = dir.path().join("sbom.json");
    std::fs::write(&sbom, b"{\"sbom\":true}").unwrap();
    let options = ArtifactPushOptions::new()
        .with_artifact_type(Some("application/vnd.example.sbom+json".into()))
        .with_file_media_type(Some("application/json".into()));
    let attached = ocikit_transport::attach(
        &at("oci", &src, ":v1"),
        &[ArtifactFile::new(&sbom)],
        &options,
    )
    .await
    .unwrap();
    assert_eq!(attached.subject.digest(), root.digest());
    let (subject, found) =
        ocikit_transport::referrers(&at("oci", &src, ":v1"), &plain(), None, "referrers")
            .await
            .unwrap();
    assert_eq!(subject.to_string(), root.digest().to_string());
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].digest(), attached.artifact.digest());

    let report = ocikit_transport::fsck(&at("oci", &src, ""), &FsckOptions::new())
        .await
        .unwrap();
    assert!(report.is_clean(), "{report:?}");
    // Image (4 blobs) and artifact (manifest, empty config, one blob).
    assert_eq!(report.blobs_checked, 7, "{report:?}");

    // An orphan blob: a dry run names it and keeps it, a run without grace removes it.
    let orphan = Digest::sha256(b"nobody refers to me");
    let file = src.join(orphan.blob_path());
    std::fs::write(&file, b"nobody refers to me").unwrap();
    let dry = ocikit_transport::gc(
        &at("oci", &src, ""),
        &GcOptions::new()
            .with_dry_run(true)
            .with_grace(Duration::ZERO),
    )
    .await
    .unwrap();
    assert_eq!(dry.removed, std::slice::from_ref(&orphan));
    assert!(file.exists());
    let done = ocikit_transport::gc(
        &at("oci", &src, ""),
        &GcOptions::new().with_grace(Duration::ZERO),
    )
    .await
    .unwrap();
    assert_eq!(done.removed, [orphan]);
    assert!(!file.exists());

    // A layer spoilt on disk: fsck runs and reports it.
    let layers: Vec<_> = files(&src.join("blobs/sha256"))
        .into_iter()
        .filter(|(_, b)| b.len() > 100_000)
        .collect();
    let (name, mut bytes) = layers.into_iter().next().unwrap();
    bytes[10] ^= 0x01;
    std::fs::write(src.join("blobs/sha256").join(name), &bytes).unwrap();
    let report = ocikit_transport::fsck(&at("oci", &src, ""), &FsckOptions::new())
        .await
        .unwrap();
    assert!(!report.is_clean());
}
