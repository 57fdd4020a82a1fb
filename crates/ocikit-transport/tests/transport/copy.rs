//! Copies between layouts and archives, and what a copy refuses.

use ocikit_digest::Digest;
use ocikit_layout::Document;
use ocikit_transport::{CopyOptions, Error, ImageName, Stage, copy};

use crate::{Seen, at, files, image, open, unpacked};

/// The config digest of the image `root` in `layout` (it names the diffIDs, so it survives
/// every transport, whatever becomes of the manifest and the layer compression).
async fn config_of(
    layout: &ocikit_layout::Layout,
    root: &ocikit_digest::oci_spec::image::Descriptor,
) -> String {
    match layout.read_document(root).await.unwrap() {
        Document::Manifest { manifest, .. } => manifest.config().digest().to_string(),
        other => panic!("not a manifest: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_image_goes_round_layout_oci_archive_docker_archive_and_back() {
    let dir = tempfile::tempdir().unwrap();
    let (source, root) = image(&dir.path().join("src"), "v1").await;
    let expected = unpacked(&source, &root).await;
    assert!(expected.len() >= 5, "{expected:?}");

    let seen = Seen::default();
    let options = CopyOptions::new().with_progress(seen.sink());
    let oci_archive = at("oci-archive", &dir.path().join("v1.tar"), ":v1");
    let report = copy(
        &at("oci", &dir.path().join("src"), ":v1"),
        &oci_archive,
        &options,
    )
    .await
    .unwrap();
    assert_eq!(report.image_count, 1);
    assert_eq!(report.tags, 1);
    assert_eq!(report.images[0].name, ImageName::Tag("v1".into()));
    assert_eq!(report.images[0].root.digest(), root.digest());
    // Config, two layers and the manifest, with their bytes.
    assert_eq!(report.blobs, 4);
    assert!(report.bytes > 1 << 20, "{}", report.bytes);
    assert!(seen.stages().contains(&Stage::Write), "{:?}", seen.stages());

    let docker_archive = at(
        "docker-archive",
        &dir.path().join("v1.docker.tar"),
        ":demo:v1",
    );
    let report = copy(&oci_archive, &docker_archive, &options).await.unwrap();
    assert_eq!(report.images[0].name, ImageName::RepoTag("demo:v1".into()));
    assert_eq!(report.images[0].to_string(), "demo:v1");
    assert!(seen.stages().contains(&Stage::Read), "{:?}", seen.stages());

    let back = dir.path().join("back");
    let report = copy(&docker_archive, &at("oci", &back, ":again"), &options)
        .await
        .unwrap();
    assert_eq!(report.images[0].name, ImageName::Tag("again".into()));
    let layout = open(&back).await;
    let again = layout.resolve("again").await.unwrap();
    assert_eq!(
        config_of(&layout, &again).await,
        config_of(&source, &root).await
    );
    assert_eq!(unpacked(&layout, &again).await, expected);
    assert!(layout.fsck(&Default::default()).await.unwrap().is_clean());
    // A repeated copy finds everything there and reports the same size.
    let repeat = copy(&docker_archive, &at("oci", &back, ":again"), &options)
        .await
        .unwrap();
    assert_eq!((repeat.blobs, repeat.bytes), (report.blobs, report.bytes));
    assert_eq!(repeat.blobs_skipped, repeat.blobs);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_whole_layout_copies_every_image_and_recompresses_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let (source, root) = image(&dir.path().join("src"), "v1").await;
    source.set_tag("v2", &root).await.unwrap();
    let mirror = dir.path().join("mirror");
    let report = copy(
        &at("oci", &dir.path().join("src"), ""),
        &at("oci", &mirror, ""),
        &CopyOptions::new(),
    )
    .await
    .unwrap();
    assert_eq!((report.image_count, report.tags), (1, 2));
    let layout = open(&mirror).await;
    assert_eq!(layout.resolve("v2").await.unwrap().digest(), root.digest());

    let recompressed = dir.path().join("recompressed");
    let report = copy(
        &at("oci", &dir.path().join("src"), ":v1"),
        &at("oci", &recompressed, ":z"),
        &CopyOptions::new().with_compression(Some(ocikit_codec::compression::Compression::None)),
    )
    .await
    .unwrap();
    assert_eq!(report.layers_recompressed, 2);
    let layout = open(&recompressed).await;
    let z = layout.resolve("z").await.unwrap();
    assert_ne!(z.digest(), root.digest());
    assert_eq!(
        config_of(&layout, &z).await,
        config_of(&source, &root).await
    );
    assert_eq!(unpacked(&layout, &z).await, unpacked(&source, &root).await);
    // The source layout was only read.
    assert!(source.fsck(&Default::default()).await.unwrap().is_clean());
    assert_eq!(source.resolve("v1").await.unwrap().digest(), root.digest());
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_copies_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let (source, root) = image(&src, "v1").await;
    let before = files(&src);
    let new = dir.path().join("new");
    let options = CopyOptions::new();

    // A missing tag names the layout.
    let err = copy(&at("oci", &src, ":nope"), &at("oci", &new, ":x"), &options)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Layout(ocikit_layout::Error::TagNotFound { .. })),
        "{err:?}"
    );
    // A digest the layout does not have.
    let absent = Digest::sha256(b"not here");
    let err = copy(
        &at("oci", &src, &format!("@{absent}")),
        &at("oci", &new, ":x"),
        &options,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, Error::ManifestNotFound { ref digest } if *digest == absent),
        "{err:?}"
    );
    // A destination named by digest.
    let err = copy(
        &at("oci", &src, ":v1"),
        &at("oci", &new, &format!("@{}", root.digest())),
        &options,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::DestinationTakesATag { .. }), "{err:?}");
    // Hardlinks only between two layouts.
    let err = copy(
        &at("oci", &src, ":v1"),
        &at("oci-archive", &dir.path().join("a.tar"), ""),
        &CopyOptions::new().with_hardlink(true),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::HardlinkNeedsLayouts { .. }), "{err:?}");
    // No layout at all.
    let err = copy(
        &at("oci", &dir.path().join("none"), ":v1"),
        &at("oci", &new, ""),
        &options,
    )
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
    // An archive that is not one.
    let garbage = dir.path().join("garbage.tar");
    std::fs::write(&garbage, b"this is not a tar file at all").unwrap();
    let err = copy(
        &at("oci-archive", &garbage, ""),
        &at("oci", &new, ""),
        &options,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::Read { .. }), "{err:?}");
    // An untagged image for a docker-archive without a name.
    let untagged = dir.path().join("untagged");
    let err = copy(
        &at("oci", &src, &format!("@{}", root.digest())),
        &at("oci", &untagged, ""),
        &options,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::Untagged { .. }), "{err:?}");
    let whole = dir.path().join("whole");
    copy(&at("oci", &src, ""), &at("oci", &whole, ""), &options)
        .await
        .unwrap();
    let layout = open(&whole).await;
    layout.remove_tag("v1").await.unwrap();
    let mut bare = root.clone();
    bare.set_annotations(None);
    layout
        .edit_index(|index| index.add(&bare).map(|()| true))
        .await
        .unwrap();
    let err = copy(
        &at("oci", &whole, ""),
        &at("docker-archive", &dir.path().join("d.tar"), ""),
        &options,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::UnnamedForArchive), "{err:?}");

    assert!(!new.exists(), "a failed copy left a layout");
    assert!(!untagged.exists(), "a failed copy left a layout");
    assert!(!dir.path().join("a.tar").exists());
    assert!(!dir.path().join("d.tar").exists());
    assert_eq!(files(&src), before, "the source changed");
    drop(source);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_blob_is_written_out_verified() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let (layout, root) = image(&src, "v1").await;
    let digest: Digest = root.digest().to_string().parse().unwrap();
    let mut out = Vec::new();
    let size = ocikit_transport::write_blob(&layout, &src, &digest, &mut out)
        .await
        .unwrap();
    assert_eq!(size, root.size());
    assert_eq!(Digest::sha256(&out), digest);

    // A blob that is not there.
    let absent = Digest::sha256(b"absent");
    let err = ocikit_transport::write_blob(&layout, &src, &absent, &mut Vec::new())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NoBlob { .. }), "{err:?}");
    // A blob spoilt on disk: its bytes go out, and the result says they are corrupt.
    let file = src.join("blobs/sha256").join(digest.encoded());
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[0] ^= 0x20;
    std::fs::write(&file, &bytes).unwrap();
    let mut out = Vec::new();
    let err = ocikit_transport::write_blob(&layout, &src, &digest, &mut out)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::CorruptBlob {
                written,
                source: ocikit_digest::Error::DigestMismatch { ref expected, ref actual },
                ..
            } if written == bytes.len() as u64 && *expected == digest && *actual == Digest::sha256(&bytes)
        ),
        "{err:?}"
    );
    assert_eq!(out, bytes);
}

#[tokio::test(flavor = "multi_thread")]
async fn cat_writes_a_layout_blob_and_refuses_an_image_location() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let (_layout, root) = image(&src, "v1").await;
    let digest: Digest = root.digest().to_string().parse().unwrap();
    let file = src.join("blobs/sha256").join(digest.encoded());
    let mut out = Vec::new();
    let size = ocikit_transport::cat(&at("oci", &src, ""), &digest, &mut out)
        .await
        .unwrap();
    assert_eq!(out, std::fs::read(&file).unwrap());
    assert_eq!(size, out.len() as u64);

    // An image location, another transport: refused before anything is written.
    let mut out = Vec::new();
    let err = ocikit_transport::cat(&at("oci", &src, ":v1"), &digest, &mut out)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotALayout { .. }), "{err:?}");
    let err = ocikit_transport::cat(&at("oci-archive", &src, ""), &digest, &mut out)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NeedsLayout { .. }), "{err:?}");
    assert!(out.is_empty());

    // A blob grown on disk: its bytes go out, the result says the blob is corrupt.
    let mut bytes = std::fs::read(&file).unwrap();
    bytes.extend_from_slice(b"\n");
    std::fs::write(&file, &bytes).unwrap();
    let err = ocikit_transport::cat(&at("oci", &src, ""), &digest, &mut out)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::CorruptBlob { written, .. } if written == bytes.len() as u64),
        "{err:?}"
    );
    assert_eq!(out, bytes);
}

/// A copy's report serializes as `ocikit copy --json` prints it: the locations, each image
/// as its `TAG DIGEST` line, the counts in camelCase, in this order, and nothing else.
#[tokio::test(flavor = "multi_thread")]
async fn a_copy_report_serializes_as_the_cli_shows_it() {
    let dir = tempfile::tempdir().unwrap();
    let (_source, root) = image(&dir.path().join("src"), "v1").await;
    let source = at("oci", &dir.path().join("src"), ":v1");
    let destination = at("oci-archive", &dir.path().join("a.tar"), ":v1");
    let report = copy(&source, &destination, &CopyOptions::new())
        .await
        .unwrap();
    let text = serde_json::to_string(&report).unwrap();
    let expected = serde_json::json!({
        "source": source.to_string(),
        "destination": destination.to_string(),
        "images": [format!("v1 {}", root.digest())],
        "blobs": 4,
        "bytes": report.bytes,
        "blobsCopied": 4,
        "blobsMounted": 0,
        "blobsSkipped": 0,
        "layersRecompressed": 0,
    });
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&text).unwrap(),
        expected
    );
    let keys = [
        "\"source\"",
        "\"destination\"",
        "\"images\"",
        "\"blobs\"",
        "\"bytes\"",
        "\"blobsCopied\"",
        "\"blobsMounted\"",
        "\"blobsSkipped\"",
        "\"layersRecompressed\"",
    ];
    let at: Vec<usize> = keys.iter().map(|k| text.find(k).unwrap()).collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "key order: {text}");
    // The bytes are those of the four blobs the archive holds, counted independently.
    let layout_bytes: u64 = files(&dir.path().join("src").join("blobs"))
        .iter()
        .map(|(_, b)| b.len() as u64)
        .sum();
    assert_eq!(report.bytes, layout_bytes);
}
