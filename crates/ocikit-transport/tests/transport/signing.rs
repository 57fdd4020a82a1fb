//! cosign-compatible signatures stored and verified in a layout and in a registry served
//! in-process: the `sha256-<hex>.sig` manifest read back as plain JSON (not through the code
//! under test), appending, and each refusal with its own error.

use std::path::Path;

use base64::Engine as _;
use ocikit_codec::compression::Compression;
use ocikit_digest::oci_spec::image::Descriptor;
use ocikit_digest::{Digest, Reference};
use ocikit_layout::{ImageBuilder, LayerSpec, Layout};
use ocikit_sign::PrivateKey;
use ocikit_store::FsStore;
use ocikit_transport::signing::{SignOptions, SigningError, VerifyOptions};
use ocikit_transport::{Location, copy, sign, verify};

use crate::registry::{docker, plain, serve};
use crate::{at, example_rootfs};

/// A small layout image (the example tree, one uncompressed layer) tagged `tag`.
async fn small_image(dir: &Path, tag: &str, cmd: &str) -> (Layout, Descriptor) {
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
    let root = builder.write_and_tag(tag).await.unwrap();
    (layout, root)
}

fn digest(d: &Descriptor) -> Digest {
    d.digest().to_string().parse().unwrap()
}

fn reference(text: &str) -> Option<Reference> {
    Some(Reference::parse(text).unwrap())
}

/// Each signature layer's payload and decoded signature.
type StoredLayers = Vec<(Vec<u8>, Vec<u8>)>;

/// The signature manifest of `image` in the layout at `dir`, read as plain JSON, and the
/// payload and signature of each layer.
fn stored_signatures(dir: &Path, image: &Digest) -> (serde_json::Value, StoredLayers) {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let tag = format!("sha256-{}.sig", image.encoded());
    let entry = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag.as_str())
        .unwrap_or_else(|| panic!("no {tag} in {index}"));
    let blob = |digest: &str| {
        std::fs::read(
            dir.join("blobs/sha256")
                .join(digest.strip_prefix("sha256:").unwrap()),
        )
        .unwrap()
    };
    let manifest: serde_json::Value =
        serde_json::from_slice(&blob(entry["digest"].as_str().unwrap())).unwrap();
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    let config: serde_json::Value =
        serde_json::from_slice(&blob(manifest["config"]["digest"].as_str().unwrap())).unwrap();
    assert_eq!(config["rootfs"]["type"], "layers");
    let mut layers = Vec::new();
    for (i, layer) in manifest["layers"].as_array().unwrap().iter().enumerate() {
        assert_eq!(
            layer["mediaType"],
            "application/vnd.dev.cosign.simplesigning.v1+json"
        );
        assert_eq!(config["rootfs"]["diff_ids"][i], layer["digest"]);
        let signature = base64::engine::general_purpose::STANDARD
            .decode(
                layer["annotations"]["dev.cosignproject.cosign/signature"]
                    .as_str()
                    .unwrap(),
            )
            .unwrap();
        layers.push((blob(layer["digest"].as_str().unwrap()), signature));
    }
    (manifest, layers)
}

#[tokio::test(flavor = "multi_thread")]
async fn signatures_in_a_layout_append_and_verify_by_key() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    let (_, root) = small_image(&images, "v1", "/a").await;
    let location = at("oci", &images, ":v1");
    let (alice, bob, eve) = (
        PrivateKey::generate().unwrap(),
        PrivateKey::generate().unwrap(),
        PrivateKey::generate().unwrap(),
    );
    let claim = SignOptions::new().with_docker_reference(reference("example.com/team/app:v1"));
    let known = VerifyOptions::new().with_docker_reference(reference("example.com/team/app:v1"));

    // Nothing signed yet.
    let err = verify(&location, &[alice.public_key()], &known)
        .await
        .unwrap_err();
    assert!(
        matches!(err, SigningError::NoSignatures { ref digest, .. } if *digest == digest_of(&root)),
        "{err}"
    );

    let first = sign(&location, &alice, &claim).await.unwrap();
    assert_eq!(first.manifest_digest, digest_of(&root));
    assert_eq!(first.docker_reference, "example.com/team/app:v1");
    assert_eq!((first.signatures, first.added), (1, true));
    let second = sign(&location, &bob, &claim).await.unwrap();
    assert_eq!((second.signatures, second.added), (2, true));
    // The same key again: the same payload is signed already, nothing is added.
    let again = sign(&location, &alice, &claim).await.unwrap();
    assert_eq!((again.signatures, again.added), (2, false));
    assert_eq!(again.signature_manifest, second.signature_manifest);

    // As stored: two layers, each payload naming the image, each signature verifying with
    // its key over the payload bytes.
    let (_, layers) = stored_signatures(&images, &digest_of(&root));
    assert_eq!(layers.len(), 2);
    for ((payload, signature), key) in layers.iter().zip([&alice, &bob]) {
        let json: serde_json::Value = serde_json::from_slice(payload).unwrap();
        assert_eq!(
            json["critical"]["image"]["docker-manifest-digest"],
            root.digest().to_string()
        );
        assert_eq!(
            json["critical"]["identity"]["docker-reference"],
            "example.com/team/app:v1"
        );
        key.public_key().verify(payload, signature).unwrap();
    }

    // Each key finds its own signature; both keys find both.
    let report = verify(&location, &[bob.public_key()], &known)
        .await
        .unwrap();
    assert_eq!(report.verified.len(), 1);
    assert_eq!(report.verified[0].key, bob.public_key().fingerprint());
    assert_eq!(report.rejected.len(), 1);
    let both = verify(&location, &[alice.public_key(), bob.public_key()], &known)
        .await
        .unwrap();
    assert_eq!(both.verified.len(), 2);
    assert!(both.rejected.is_empty());
    // By digest, too.
    let by_digest = at("oci", &images, &format!("@{}", root.digest()));
    verify(&by_digest, &[alice.public_key()], &known)
        .await
        .unwrap();

    // Another key.
    let err = verify(&location, &[eve.public_key()], &known)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            SigningError::NotSignedByKeys {
                count: 2,
                source: ocikit_sign::Error::BadSignature,
                ..
            }
        ),
        "{err}"
    );
    // Another reference than the one signed.
    let elsewhere =
        VerifyOptions::new().with_docker_reference(reference("example.com/team/other:v1"));
    let err = verify(&location, &[alice.public_key()], &elsewhere)
        .await
        .unwrap_err();
    assert!(
        matches!(err, SigningError::ReferenceMismatch { ref signed, .. } if signed == "example.com/team/app:v1"),
        "{err}"
    );
    // A layout has no reference of its own: signing and verifying need one.
    let err = sign(&location, &alice, &SignOptions::new())
        .await
        .unwrap_err();
    assert!(
        matches!(err, SigningError::NoDockerReference { signing: true, .. }),
        "{err}"
    );
    let err = verify(&location, &[alice.public_key()], &VerifyOptions::new())
        .await
        .unwrap_err();
    assert!(
        matches!(err, SigningError::NoDockerReference { signing: false, .. }),
        "{err}"
    );
    // Archives hold no signatures.
    let archive = at("oci-archive", &dir.path().join("a.tar"), "");
    let err = sign(&archive, &alice, &claim).await.unwrap_err();
    assert!(matches!(err, SigningError::Unsupported { .. }), "{err}");
}

fn digest_of(d: &Descriptor) -> Digest {
    digest(d)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signature_moved_to_another_image_or_a_changed_payload_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    let (layout, v1) = small_image(&images, "v1", "/a").await;
    let (_, v2) = small_image(&images, "v2", "/b").await;
    let key = PrivateKey::generate().unwrap();
    let claim = SignOptions::new().with_docker_reference(reference("example.com/app:v1"));
    sign(&at("oci", &images, ":v1"), &key, &claim)
        .await
        .unwrap();

    // Replay: v1's signature manifest tagged as v2's.
    let v1_sigs = layout
        .resolve(&format!("sha256-{}.sig", digest(&v1).encoded()))
        .await
        .unwrap();
    layout
        .set_tag(&format!("sha256-{}.sig", digest(&v2).encoded()), &v1_sigs)
        .await
        .unwrap();
    let known = VerifyOptions::new().with_docker_reference(reference("example.com/app:v1"));
    let err = verify(&at("oci", &images, ":v2"), &[key.public_key()], &known)
        .await
        .unwrap_err();
    match err {
        SigningError::ForAnotherManifest {
            expected, signed, ..
        } => {
            assert_eq!(expected, digest(&v2));
            assert_eq!(signed, digest(&v1));
        }
        other => panic!("{other}"),
    }

    // Tampered: a payload changed after signing, stored by hand with the old signature.
    let (manifest, layers) = stored_signatures(&images, &digest(&v1));
    let (payload, _) = &layers[0];
    let changed = String::from_utf8(payload.clone())
        .unwrap()
        .replace("example.com/app:v1", "example.com/app:v9");
    let changed_digest = Digest::sha256(changed.as_bytes());
    std::fs::write(
        images.join("blobs/sha256").join(changed_digest.encoded()),
        &changed,
    )
    .unwrap();
    let mut tampered = manifest.clone();
    tampered["layers"][0]["digest"] = changed_digest.to_string().into();
    tampered["layers"][0]["size"] = changed.len().into();
    let bytes = serde_json::to_vec(&tampered).unwrap();
    let put = layout
        .put_blob("application/vnd.oci.image.manifest.v1+json", &bytes)
        .await
        .unwrap();
    layout
        .set_tag(&format!("sha256-{}.sig", digest(&v1).encoded()), &put)
        .await
        .unwrap();
    let err = verify(&at("oci", &images, ":v1"), &[key.public_key()], &known)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            SigningError::NotSignedByKeys {
                source: ocikit_sign::Error::BadSignature,
                ..
            }
        ),
        "{err}"
    );

    // A layer declaring more than a payload may be is refused unread.
    let mut oversized = manifest;
    oversized["layers"][0]["size"] = (1u64 << 30).into();
    let bytes = serde_json::to_vec(&oversized).unwrap();
    let put = layout
        .put_blob("application/vnd.oci.image.manifest.v1+json", &bytes)
        .await
        .unwrap();
    layout
        .set_tag(&format!("sha256-{}.sig", digest(&v1).encoded()), &put)
        .await
        .unwrap();
    let err = verify(&at("oci", &images, ":v1"), &[key.public_key()], &known)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            SigningError::NotSignedByKeys {
                source: ocikit_sign::Error::SignatureLayer { .. },
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn signatures_in_a_registry_append_and_verify_by_key() {
    let addr = serve().await;
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    let (_, root) = small_image(&images, "v1", "/a").await;
    small_image(&images, "v2", "/b").await;
    let options = ocikit_transport::CopyOptions::new()
        .with_source(plain())
        .with_destination(plain());
    for tag in ["v1", "v2"] {
        copy(
            &at("oci", &images, &format!(":{tag}")),
            &docker(&addr, &format!("team/app:{tag}")),
            &options,
        )
        .await
        .unwrap();
    }
    let location: Location = docker(&addr, "team/app:v1");
    let (alice, bob) = (
        PrivateKey::generate().unwrap(),
        PrivateKey::generate().unwrap(),
    );
    let claim = SignOptions::new().with_registry(plain());
    let check = VerifyOptions::new().with_registry(plain());

    let first = sign(&location, &alice, &claim).await.unwrap();
    assert_eq!(first.docker_reference, format!("{addr}/team/app:v1"));
    assert_eq!(first.manifest_digest, digest(&root));
    let second = sign(&location, &bob, &claim).await.unwrap();
    assert_eq!((second.signatures, second.added), (2, true));

    // Read back as any client reads it: the tag and its manifest, by plain HTTP.
    let client = plain().client(&addr).unwrap();
    let (_, bytes) = client
        .get_manifest(
            "team/app",
            &format!("sha256-{}.sig", digest(&root).encoded()),
        )
        .await
        .unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 2);
    assert_eq!(
        Digest::sha256(&bytes),
        second.signature_manifest,
        "the tag names the manifest reported"
    );

    let report = verify(&location, &[alice.public_key(), bob.public_key()], &check)
        .await
        .unwrap();
    assert_eq!(report.verified.len(), 2);
    assert_eq!(
        report.verified[0].docker_reference,
        format!("{addr}/team/app:v1")
    );
    // By digest: the tag-claiming payload is in the same repository.
    let by_digest = docker(&addr, &format!("team/app@{}", root.digest()));
    verify(&by_digest, &[alice.public_key()], &check)
        .await
        .unwrap();
    // Wrong key.
    let err = verify(
        &location,
        &[PrivateKey::generate().unwrap().public_key()],
        &check,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, SigningError::NotSignedByKeys { count: 2, .. }),
        "{err}"
    );
    // Unsigned image.
    let err = verify(&docker(&addr, "team/app:v2"), &[alice.public_key()], &check)
        .await
        .unwrap_err();
    assert!(matches!(err, SigningError::NoSignatures { .. }), "{err}");
    // The image copied under another name: its signatures travel with it and claim the
    // first name; alice signs the copy's name too.
    copy(
        &location,
        &docker(&addr, "team/copy:v1"),
        &ocikit_transport::CopyOptions::new()
            .with_source(plain())
            .with_destination(plain()),
    )
    .await
    .unwrap();
    sign(&docker(&addr, "team/copy:v1"), &alice, &claim)
        .await
        .unwrap();
    let err = verify(&docker(&addr, "team/copy:v1"), &[bob.public_key()], &check)
        .await
        .unwrap_err();
    assert!(
        matches!(err, SigningError::ReferenceMismatch { ref signed, .. }
            if *signed == format!("{addr}/team/app:v1")),
        "{err}"
    );
    let report = verify(
        &docker(&addr, "team/copy:v1"),
        &[alice.public_key()],
        &check,
    )
    .await
    .unwrap();
    assert_eq!(report.verified.len(), 1);
    assert_eq!(report.rejected.len(), 2);
}
