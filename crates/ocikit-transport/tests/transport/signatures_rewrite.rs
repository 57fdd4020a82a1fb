//! A copy that would rewrite a signed image's manifest (`with_compression`, `with_format`)
//! while carrying its signatures is refused before anything is written at the destination
//! (the image would get a digest none of its signatures vouches for); without the
//! signatures, or for an unsigned image, it goes.

use std::path::Path;

use ocikit_codec::compression::Compression;
use ocikit_digest::oci_spec::image::Descriptor;
use ocikit_layout::convert::ManifestFormat;
use ocikit_layout::{ImageBuilder, LayerSpec, Layout};
use ocikit_sign::PrivateKey;
use ocikit_store::FsStore;
use ocikit_transport::signing::SignOptions;
use ocikit_transport::{CopyOptions, Error, copy, sign};

use crate::registry::{docker, plain, serve};
use crate::{Seen, at, example_rootfs, open};

/// A layout image at `dir` (one uncompressed layer, `cmd` making it unique) tagged `tag`.
async fn small_image(dir: &Path, tag: &str, cmd: &str) -> Descriptor {
    let layout = match ocikit_transport::open_layout(dir).await {
        Ok(layout) => layout,
        Err(_) => Layout::create(FsStore::open(dir).await.unwrap())
            .await
            .unwrap(),
    };
    let mut builder = ImageBuilder::new(&layout);
    builder.cmd([cmd]);
    builder
        .add_layer_from_dir(
            example_rootfs(),
            LayerSpec::new().compression(Compression::None),
        )
        .await
        .unwrap();
    builder.write_and_tag(tag).await.unwrap()
}

fn sig_tag(d: &Descriptor) -> String {
    d.digest().to_string().replacen(':', "-", 1) + ".sig"
}

/// The refusal's fields: (digest, signature tag, how).
fn refusal(err: &Error) -> (&str, &str, &str) {
    match err {
        Error::SignaturesInvalidated {
            digest,
            signatures,
            how,
            ..
        } => (digest, signatures, how),
        other => panic!("expected SignaturesInvalidated, got {other:?}"),
    }
}

fn gzip() -> CopyOptions {
    CopyOptions::new().with_compression(Some(Compression::Gzip))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signed_layout_image_is_not_rewritten_unless_its_signatures_stay_behind() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    let signed = small_image(&images, "v1", "/a").await;
    let unsigned = small_image(&images, "v2", "/b").await;
    let key = PrivateKey::generate().unwrap();
    let reference = ocikit_digest::Reference::parse("example.com/app:v1").unwrap();
    let options = SignOptions::new().with_docker_reference(Some(reference));
    sign(&at("oci", &images, ":v1"), &key, &options)
        .await
        .unwrap();
    let source = at("oci", &images, ":v1");
    let before = crate::files(&images);

    // Recompressed: refused, naming the image, its signatures and why; nothing lands.
    let out = dir.path().join("out");
    let err = copy(&source, &at("oci", &out, ":v1"), &gzip())
        .await
        .unwrap_err();
    assert_eq!(
        refusal(&err),
        (
            signed.digest().as_ref(),
            sig_tag(&signed).as_str(),
            "recompressed to gzip"
        )
    );
    let message = err.to_string();
    assert!(message.contains("--remove-signatures"), "{message}");
    assert!(!out.exists(), "a refused copy made the destination layout");
    // Into an existing layout: it stays as it was.
    let existing = dir.path().join("existing");
    small_image(&existing, "other", "/c").await;
    let held = crate::files(&existing);
    copy(&source, &at("oci", &existing, ":v1"), &gzip())
        .await
        .unwrap_err();
    assert_eq!(crate::files(&existing), held);

    // Converted to another format: refused the same way; to its own format (no rewrite),
    // the signature goes along.
    let v2s2 = CopyOptions::new().with_format(Some(ManifestFormat::DockerV2S2));
    let err = copy(&source, &at("oci", &out, ":v1"), &v2s2)
        .await
        .unwrap_err();
    assert_eq!(refusal(&err).2, "converted to v2s2");
    assert!(!out.exists());
    let same = CopyOptions::new().with_format(Some(ManifestFormat::Oci));
    let report = copy(&source, &at("oci", &out, ":v1"), &same).await.unwrap();
    assert_eq!(report.signatures, 1);
    std::fs::remove_dir_all(&out).unwrap();

    // A whole layout holds its signatures as images of its own: refused too.
    let err = copy(&at("oci", &images, ""), &at("oci", &out, ""), &gzip())
        .await
        .unwrap_err();
    assert_eq!(refusal(&err).0, signed.digest().as_ref());
    assert!(!out.exists());

    // Without its signatures: recompressed, and none goes.
    let report = copy(
        &source,
        &at("oci", &out, ":v1"),
        &gzip().with_signatures(false),
    )
    .await
    .unwrap();
    assert_eq!(report.signatures, 0);
    assert!(report.layers_recompressed > 0);
    let copied = open(&out).await;
    assert_ne!(
        copied.resolve("v1").await.unwrap().digest(),
        signed.digest()
    );
    assert_eq!(copied.index().await.unwrap().manifests().len(), 1);

    // An unsigned image recompresses as before.
    let report = copy(&at("oci", &images, ":v2"), &at("oci", &out, ":v2"), &gzip())
        .await
        .unwrap();
    assert_eq!(report.signatures, 0);
    assert!(report.layers_recompressed > 0);
    assert_ne!(report.images[0].root.digest(), unsigned.digest());
    // The source was only read.
    assert_eq!(crate::files(&images), before);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signed_registry_image_is_refused_before_it_is_pulled() {
    let (a, b) = (serve().await, serve().await);
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    let root = small_image(&images, "v1", "/a").await;
    small_image(&images, "v2", "/b").await;
    let registries = CopyOptions::new()
        .with_source(plain())
        .with_destination(plain());
    for tag in ["v1", "v2"] {
        copy(
            &at("oci", &images, &format!(":{tag}")),
            &docker(&a, &format!("team/app:{tag}")),
            &registries,
        )
        .await
        .unwrap();
    }
    let signed = docker(&a, "team/app:v1");
    let key = PrivateKey::generate().unwrap();
    sign(&signed, &key, &SignOptions::new().with_registry(plain()))
        .await
        .unwrap();

    // To a layout and to another registry: refused, nothing pulled (no progress at all),
    // nothing written.
    let seen = Seen::default();
    let recompressing = registries
        .clone()
        .with_compression(Some(Compression::Gzip))
        .with_progress(seen.sink());
    let out = dir.path().join("out");
    let err = copy(&signed, &at("oci", &out, ":v1"), &recompressing)
        .await
        .unwrap_err();
    assert_eq!(refusal(&err).0, root.digest().as_ref());
    assert!(!out.exists());
    let err = copy(&signed, &docker(&b, "mirror/app:v1"), &recompressing)
        .await
        .unwrap_err();
    assert_eq!(refusal(&err).1, sig_tag(&root));
    assert!(seen.stages().is_empty(), "{:?}", seen.stages());
    let client = plain().client(&b).unwrap();
    assert!(matches!(
        client.get_manifest("mirror/app", "v1").await,
        Err(ocikit_client::Error::NotFound { .. })
    ));

    // Without signatures it goes; an unsigned image goes with them kept.
    let report = copy(
        &signed,
        &docker(&b, "mirror/app:v1"),
        &recompressing.clone().with_signatures(false),
    )
    .await
    .unwrap();
    assert_eq!(report.signatures, 0);
    assert!(report.layers_recompressed > 0);
    assert!(matches!(
        client.get_manifest("mirror/app", &sig_tag(&root)).await,
        Err(ocikit_client::Error::NotFound { .. })
    ));
    let report = copy(
        &docker(&a, "team/app:v2"),
        &at("oci", &out, ":v2"),
        &recompressing,
    )
    .await
    .unwrap();
    assert!(report.layers_recompressed > 0);
}
