//! Signatures that travel with copy, push and pull (between registries served in-process
//! and layouts), and the trust policy a copy enforces before anything is written: each
//! refusal with its reason, the destination left as it was.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use ocikit_codec::compression::Compression;
use ocikit_digest::oci_spec::image::Descriptor;
use ocikit_digest::{Digest, Reference};
use ocikit_layout::{ImageBuilder, LayerSpec, Layout};
use ocikit_sign::policy::Rejection;
use ocikit_sign::{Policy, PrivateKey};
use ocikit_store::FsStore;
use ocikit_transport::signing::{SignOptions, SigningError, VerifyOptions};
use ocikit_transport::{
    CopyOptions, Error, Location, check_policy, copy, load_policy, sign, verify,
};

use crate::registry::{docker, plain, serve};
use crate::{at, example_rootfs, files};

/// A small layout image (the example tree, one uncompressed layer, `cmd` making it unique)
/// tagged `tag`.
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

fn digest(d: &Descriptor) -> Digest {
    d.digest().to_string().parse().unwrap()
}

fn sig_tag(d: &Descriptor) -> String {
    format!("sha256-{}.sig", digest(d).encoded())
}

fn registry_options() -> CopyOptions {
    CopyOptions::new()
        .with_source(plain())
        .with_destination(plain())
}

/// Verifies `location` with `key`, the payload claiming `claimed`.
async fn verifies(location: &Location, key: &PrivateKey, claimed: &str) {
    let options = VerifyOptions::new()
        .with_registry(plain())
        .with_docker_reference(Some(Reference::parse(claimed).unwrap()));
    let report = verify(location, &[key.public_key()], &options)
        .await
        .unwrap_or_else(|e| panic!("{location}: {e}"));
    assert_eq!(report.verified[0].docker_reference, claimed);
}

/// The manifest bytes a registry holds under `repository:tag`, if any.
async fn registry_manifest(addr: &str, repository: &str, tag: &str) -> Option<Vec<u8>> {
    let client = plain().client(addr).unwrap();
    match client.get_manifest(repository, tag).await {
        Ok((_, bytes)) => Some(bytes.to_vec()),
        Err(ocikit_client::Error::NotFound { .. }) => None,
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn signatures_travel_with_copy_push_and_pull_unless_removed() {
    let (a, b) = (serve().await, serve().await);
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    let root = small_image(&images, "v1", "/a").await;
    let unsigned = small_image(&images, "v2", "/b").await;
    let options = registry_options();
    for tag in ["v1", "v2"] {
        copy(
            &at("oci", &images, &format!(":{tag}")),
            &docker(&a, &format!("team/app:{tag}")),
            &options,
        )
        .await
        .unwrap();
    }
    let signed = docker(&a, "team/app:v1");
    let key = PrivateKey::generate().unwrap();
    sign(&signed, &key, &SignOptions::new().with_registry(plain()))
        .await
        .unwrap();
    let claimed = format!("{a}/team/app:v1");
    let stored = registry_manifest(&a, "team/app", &sig_tag(&root))
        .await
        .unwrap();

    // To another registry: the signature manifest goes as it is, and verifies there.
    let report = copy(&signed, &docker(&b, "mirror/app:v1"), &options)
        .await
        .unwrap();
    assert_eq!(report.signatures, 1);
    assert_eq!(
        registry_manifest(&b, "mirror/app", &sig_tag(&root)).await,
        Some(stored.clone())
    );
    verifies(&docker(&b, "mirror/app:v1"), &key, &claimed).await;
    // Its payload names the first reference: under the default identity rule the copy's
    // own name is refused, as skopeo's copies are.
    let err = verify(
        &docker(&b, "mirror/app:v1"),
        &[key.public_key()],
        &VerifyOptions::new().with_registry(plain()),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, SigningError::ReferenceMismatch { .. }),
        "{err}"
    );

    // Within one registry (mounted), pulled into a layout, pushed from it.
    let report = copy(&signed, &docker(&a, "team/mirror:v1"), &options)
        .await
        .unwrap();
    assert_eq!(report.signatures, 1);
    verifies(&docker(&a, "team/mirror:v1"), &key, &claimed).await;
    let pulled = dir.path().join("pulled");
    let report = copy(&signed, &at("oci", &pulled, ":v1"), &options)
        .await
        .unwrap();
    assert_eq!(report.signatures, 1);
    verifies(&at("oci", &pulled, ":v1"), &key, &claimed).await;
    let report = copy(
        &at("oci", &pulled, ":v1"),
        &docker(&b, "pushed:v1"),
        &options,
    )
    .await
    .unwrap();
    assert_eq!(report.signatures, 1);
    verifies(&docker(&b, "pushed:v1"), &key, &claimed).await;
    // Layout to layout, and through the scratch path (a registry source into an
    // oci-archive keeps none: archives hold no signatures).
    let copied = dir.path().join("copied");
    copy(
        &at("oci", &pulled, ":v1"),
        &at("oci", &copied, ":renamed"),
        &CopyOptions::new(),
    )
    .await
    .unwrap();
    verifies(&at("oci", &copied, ":renamed"), &key, &claimed).await;
    let report = copy(
        &signed,
        &at("oci-archive", &dir.path().join("v1.tar"), ":v1"),
        &options,
    )
    .await
    .unwrap();
    assert_eq!(report.signatures, 0);

    // Removed: the image goes, its signatures stay behind.
    let report = copy(
        &signed,
        &docker(&b, "bare/app:v1"),
        &registry_options().with_signatures(false),
    )
    .await
    .unwrap();
    assert_eq!(report.signatures, 0);
    assert_eq!(
        registry_manifest(&b, "bare/app", &sig_tag(&root)).await,
        None
    );
    let err = verify(
        &docker(&b, "bare/app:v1"),
        &[key.public_key()],
        &VerifyOptions::new().with_registry(plain()),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, SigningError::NoSignatures { .. }), "{err}");
    // An unsigned image copies as before, with no signature.
    let report = copy(
        &docker(&a, "team/app:v2"),
        &docker(&b, "other:v2"),
        &options,
    )
    .await
    .unwrap();
    assert_eq!(report.signatures, 0);
    assert_eq!(
        registry_manifest(&b, "other", &sig_tag(&unsigned)).await,
        None
    );
    // The report says so in JSON only when signatures went.
    let json = serde_json::to_value(&report).unwrap();
    assert!(json.get("signaturesCopied").is_none(), "{json}");
}

/// A policy file in `dir` with `text`, loaded.
async fn policy(dir: &Path, name: &str, text: &str) -> Policy {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    load_policy(&path).await.unwrap()
}

/// `{"type":"sigstoreSigned","keyData":...}` for `key`, with `identity` (JSON) if any.
fn sigstore_signed(key: &PrivateKey, identity: Option<&str>) -> String {
    let data = base64::engine::general_purpose::STANDARD.encode(key.public_key().to_pem());
    match identity {
        Some(identity) => {
            format!(r#"{{"type":"sigstoreSigned","keyData":"{data}","signedIdentity":{identity}}}"#)
        }
        None => format!(r#"{{"type":"sigstoreSigned","keyData":"{data}"}}"#),
    }
}

/// The reasons of a policy refusal, as the sign crate's errors.
fn rejection(err: &Error) -> &Rejection {
    match err {
        Error::PolicyRejected { reason, .. } => reason,
        other => panic!("not a policy refusal: {other}"),
    }
}

fn reasons(err: &Error) -> &[ocikit_sign::Error] {
    match rejection(err) {
        Rejection::NoValidSignature { reasons } => reasons,
        other => panic!("not a signature refusal: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_registry_image_the_policy_refuses_writes_nothing_with_the_reason() {
    let (a, b) = (serve().await, serve().await);
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    let v1 = small_image(&images, "v1", "/a").await;
    let v2 = small_image(&images, "v2", "/b").await;
    let v3 = small_image(&images, "v3", "/c").await;
    let options = registry_options();
    for tag in ["v1", "v2", "v3"] {
        copy(
            &at("oci", &images, &format!(":{tag}")),
            &docker(&a, &format!("team/app:{tag}")),
            &options,
        )
        .await
        .unwrap();
    }
    let key = PrivateKey::generate().unwrap();
    let signing = SignOptions::new().with_registry(plain());
    sign(&docker(&a, "team/app:v1"), &key, &signing)
        .await
        .unwrap();
    // v3 signed with a payload claiming another image.
    sign(
        &docker(&a, "team/app:v3"),
        &key,
        &signing.clone().with_docker_reference(Some(
            Reference::parse(&format!("{a}/else/where:v3")).unwrap(),
        )),
    )
    .await
    .unwrap();
    // v2 "signed" by replaying v1's signature manifest under v2's signature tag.
    copy(
        &docker(&a, &format!("team/app:{}", sig_tag(&v1))),
        &docker(&a, &format!("team/app:{}", sig_tag(&v2))),
        &options,
    )
    .await
    .unwrap();

    let matching = sigstore_signed(&key, Some(r#"{"type":"matchRepository"}"#));
    let trusted = policy(
        dir.path(),
        "trusted.json",
        &format!(
            r#"{{"default":[{{"type":"insecureAcceptAnything"}}],
                "transports":{{"docker":{{"{a}/team":[{matching}]}}}}}}"#
        ),
    )
    .await;
    let enforcing = registry_options().with_policy(Some(trusted.clone()));

    // Accepted: pulled with its signature.
    let pulled = dir.path().join("pulled");
    let report = copy(
        &docker(&a, "team/app:v1"),
        &at("oci", &pulled, ""),
        &enforcing,
    )
    .await
    .unwrap();
    assert_eq!(report.images[0].root.digest(), v1.digest());
    assert_eq!(report.signatures, 1);
    assert!(pulled.join("index.json").is_file());
    let before = files(&pulled);

    // Each refusal: into a new layout (which never appears), into the existing one (left
    // byte for byte as it was), and to another registry (no manifest, no blob).
    let layer = {
        let layout = ocikit_transport::open_layout(&images).await.unwrap();
        let manifest: serde_json::Value =
            serde_json::from_slice(&layout.read_blob(&v2).await.unwrap()).unwrap();
        manifest["layers"][0]["digest"]
            .as_str()
            .unwrap()
            .parse::<Digest>()
            .unwrap()
    };
    let attempts = async |tag: &str, options: &CopyOptions| -> Vec<Error> {
        let source = docker(&a, &format!("team/app:{tag}"));
        let fresh = dir.path().join(format!("fresh-{tag}"));
        let mut errors = Vec::new();
        for destination in [
            at("oci", &fresh, ""),
            at("oci", &pulled, &format!(":{tag}")),
            docker(&b, &format!("refused/app:{tag}")),
        ] {
            errors.push(copy(&source, &destination, options).await.unwrap_err());
        }
        assert!(!fresh.exists(), "{} appeared", fresh.display());
        assert_eq!(files(&pulled), before, "the layout changed");
        assert_eq!(registry_manifest(&b, "refused/app", tag).await, None);
        let client = plain().client(&b).unwrap();
        assert!(!client.blob_exists("refused/app", &layer).await.unwrap());
        errors
    };

    // Replayed: a signature over another manifest.
    for err in attempts("v2", &enforcing).await {
        assert!(
            matches!(
                reasons(&err),
                [ocikit_sign::Error::DigestMismatch { signed, expected }]
                    if *signed == digest(&v1) && *expected == digest(&v2)
            ),
            "{err}"
        );
        assert!(err.to_string().contains(&v2.digest().to_string()), "{err}");
    }
    // A payload for another docker reference.
    for err in attempts("v3", &enforcing).await {
        assert!(
            matches!(
                reasons(&err),
                [ocikit_sign::Error::IdentityMismatch { signed, .. }] if signed.contains("else/where")
            ),
            "{err}"
        );
        assert!(err.to_string().contains(&v3.digest().to_string()), "{err}");
    }
    // Another key.
    let other = PrivateKey::generate().unwrap();
    let wrong_key = policy(
        dir.path(),
        "wrong-key.json",
        &format!(r#"{{"default":[{}]}}"#, sigstore_signed(&other, None)),
    )
    .await;
    for err in attempts("v1", &registry_options().with_policy(Some(wrong_key))).await {
        assert!(
            matches!(reasons(&err), [ocikit_sign::Error::BadSignature]),
            "{err}"
        );
    }
    // No signature at all (v1's removed from another repository's copy).
    copy(
        &docker(&a, "team/app:v1"),
        &docker(&a, "team/unsigned:v1"),
        &registry_options().with_signatures(false),
    )
    .await
    .unwrap();
    let err = copy(
        &docker(&a, "team/unsigned:v1"),
        &docker(&b, "refused/unsigned:v1"),
        &enforcing,
    )
    .await
    .unwrap_err();
    assert!(matches!(rejection(&err), Rejection::NoSignatures), "{err}");
    assert_eq!(registry_manifest(&b, "refused/unsigned", "v1").await, None);
    // `reject`.
    let reject = policy(
        dir.path(),
        "reject.json",
        r#"{"default":[{"type":"reject"}]}"#,
    )
    .await;
    for err in attempts("v1", &registry_options().with_policy(Some(reject))).await {
        assert!(matches!(rejection(&err), Rejection::Rejected), "{err}");
    }

    // A scope that does not apply: the default accepts an unsigned image elsewhere.
    copy(
        &docker(&a, "team/app:v2"),
        &docker(&a, "elsewhere/app:v2"),
        &registry_options().with_signatures(false),
    )
    .await
    .unwrap();
    copy(
        &docker(&a, "elsewhere/app:v2"),
        &docker(&b, "accepted/app:v2"),
        &enforcing,
    )
    .await
    .unwrap();
    assert!(registry_manifest(&b, "accepted/app", "v2").await.is_some());
    // An archive holds no signatures: refused, not let through.
    let err = copy(
        &at("oci-archive", &dir.path().join("v1.tar"), ""),
        &at("oci", &dir.path().join("from-archive"), ""),
        &enforcing,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::PolicySource { .. }), "{err}");
}

/// A layout image's signature manifest replaced by `edit` of its JSON (written by hand).
async fn edit_signatures(
    dir: &Path,
    image: &Descriptor,
    edit: impl FnOnce(&mut serde_json::Value),
) {
    let layout = ocikit_transport::open_layout(dir).await.unwrap();
    let current = layout.resolve(&sig_tag(image)).await.unwrap();
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&layout.read_blob(&current).await.unwrap()).unwrap();
    edit(&mut manifest);
    let bytes = serde_json::to_vec(&manifest).unwrap();
    let put = layout
        .put_blob("application/vnd.oci.image.manifest.v1+json", &bytes)
        .await
        .unwrap();
    layout.set_tag(&sig_tag(image), &put).await.unwrap();
}

/// A change made to a signature manifest's JSON.
type Edit = fn(&mut serde_json::Value);

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../ocikit-sign/tests/sign/fixtures")
        .join(name)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_layout_image_the_policy_refuses_writes_nothing_and_bad_layers_are_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    let v1 = small_image(&images, "v1", "/a").await;
    let key = PrivateKey::generate().unwrap();
    sign(
        &at("oci", &images, ":v1"),
        &key,
        &SignOptions::new()
            .with_docker_reference(Some(Reference::parse("example.com/team/app:v1").unwrap())),
    )
    .await
    .unwrap();
    // A layout has no docker reference: the policy names the one signed.
    let exact = sigstore_signed(
        &key,
        Some(r#"{"type":"exactReference","dockerReference":"example.com/team/app:v1"}"#),
    );
    let trusted = policy(
        dir.path(),
        "policy.json",
        &format!(r#"{{"default":[{exact}]}}"#),
    )
    .await;
    let enforcing = CopyOptions::new().with_policy(Some(trusted.clone()));

    let out = dir.path().join("out");
    let report = copy(
        &at("oci", &images, ":v1"),
        &at("oci", &out, ":v1"),
        &enforcing,
    )
    .await
    .unwrap();
    assert_eq!(report.signatures, 1);
    // The whole layout: the image checked, its signature manifest going as its signature.
    let whole = dir.path().join("whole");
    let report = copy(&at("oci", &images, ""), &at("oci", &whole, ""), &enforcing)
        .await
        .unwrap();
    assert_eq!(report.image_count, 2);
    verify(
        &at("oci", &whole, ":v1"),
        &[key.public_key()],
        &VerifyOptions::new()
            .with_docker_reference(Some(Reference::parse("example.com/team/app:v1").unwrap())),
    )
    .await
    .unwrap();
    // unpack's check: accepted, and pinned to the digest accepted.
    let accepted = check_policy(&at("oci", &images, ":v1"), &trusted, &plain())
        .await
        .unwrap();
    assert_eq!(accepted.digest, digest(&v1));
    assert_eq!(accepted.verified, 1);
    assert_eq!(
        accepted.pinned.to_string(),
        format!("oci:{}@{}", images.display(), v1.digest())
    );
    let before = files(&out);
    let good = ocikit_transport::open_layout(&images)
        .await
        .unwrap()
        .resolve(&sig_tag(&v1))
        .await
        .unwrap();

    // A truncated layer (its blob shorter than its descriptor says), then an oversized one
    // (refused from its descriptor, unread): no signature left, each layer a reason.
    let edits: [(&str, Edit); 2] = [
        ("truncated", |m| {
            let size = m["layers"][0]["size"].as_u64().unwrap();
            m["layers"][0]["size"] = (size + 10).into();
        }),
        ("oversized", |m| {
            m["layers"][0]["size"] = (1u64 << 30).into()
        }),
    ];
    for (what, edit) in edits {
        edit_signatures(&images, &v1, edit).await;
        for destination in [
            at("oci", &out, ":v1-again"),
            at("oci", &dir.path().join("never"), ":v1"),
        ] {
            let err = copy(&at("oci", &images, ":v1"), &destination, &enforcing)
                .await
                .unwrap_err();
            assert!(
                matches!(reasons(&err), [ocikit_sign::Error::SignatureLayer { .. }]),
                "{what}: {err}"
            );
        }
        assert_eq!(files(&out), before, "{what}: the destination changed");
        assert!(!dir.path().join("never").exists());
        let err = check_policy(&at("oci", &images, ":v1"), &trusted, &plain())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::PolicyRejected { .. }), "{what}: {err}");
        // Back to the good signature manifest.
        ocikit_transport::open_layout(&images)
            .await
            .unwrap()
            .set_tag(&sig_tag(&v1), &good)
            .await
            .unwrap();
    }
    copy(
        &at("oci", &images, ":v1"),
        &at("oci", &out, ":v1-again"),
        &enforcing,
    )
    .await
    .unwrap();

    // A policy whose key is of another curve (P-384) is refused when read: nothing copies.
    let p384 = dir.path().join("p384.json");
    std::fs::write(
        &p384,
        format!(
            r#"{{"default":[{{"type":"sigstoreSigned","keyPath":"{}"}}]}}"#,
            fixture("python-p384.pub").display()
        ),
    )
    .unwrap();
    let err = load_policy(&p384).await.unwrap_err();
    assert!(matches!(err, Error::PolicyFile { .. }), "{err}");
}

/// [`ocikit_transport::unpack`] and [`ocikit_transport::export_to_path`] with a policy: an
/// image signed with the trusted key unpacks and exports (the acceptance reported, by the
/// signed digest); under `reject` or another key, nothing is written; a registry location
/// is no layout to unpack.
#[tokio::test]
async fn unpack_and_export_enforce_the_policy_before_writing() {
    use ocikit_layout::UnpackOptions;
    use ocikit_transport::{ExportOptions, UnpackImageOptions, export_to_path, unpack};

    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    let v1 = small_image(&images, "v1", "/a").await;
    let key = PrivateKey::generate().unwrap();
    let claimed = "example.com/team/app:v1";
    sign(
        &at("oci", &images, ":v1"),
        &key,
        &SignOptions::new().with_docker_reference(Some(Reference::parse(claimed).unwrap())),
    )
    .await
    .unwrap();
    let identity = format!(r#"{{"type":"exactReference","dockerReference":"{claimed}"}}"#);
    let trusted = policy(
        dir.path(),
        "trusted.json",
        &format!(
            r#"{{"default":[{}]}}"#,
            sigstore_signed(&key, Some(&identity))
        ),
    )
    .await;
    let source = at("oci", &images, ":v1");
    let enforcing = |policy: &Policy| {
        UnpackImageOptions::new(UnpackOptions::new()).with_policy(Some(policy.clone()), plain())
    };

    let rootfs = dir.path().join("rootfs");
    let report = unpack(&source, &rootfs, &enforcing(&trusted))
        .await
        .unwrap();
    assert_eq!(report.accepted.unwrap().digest, digest(&v1));
    assert_eq!(report.unpacked.manifest.digest(), v1.digest());
    assert_eq!(files(&rootfs), files(&example_rootfs()));
    let tar = dir.path().join("fs.tar");
    let exported = export_to_path(
        &source,
        &tar,
        &ExportOptions::new().with_policy(Some(trusted.clone())),
    )
    .await
    .unwrap();
    assert_eq!(exported.accepted.unwrap().digest, digest(&v1));
    assert!(tar.is_file());

    let other = PrivateKey::generate().unwrap();
    let refusing = [
        policy(
            dir.path(),
            "reject.json",
            r#"{"default":[{"type":"reject"}]}"#,
        )
        .await,
        policy(
            dir.path(),
            "other.json",
            &format!(
                r#"{{"default":[{}]}}"#,
                sigstore_signed(&other, Some(&identity))
            ),
        )
        .await,
    ];
    for refused in &refusing {
        let rootfs = dir.path().join("refused-rootfs");
        let err = unpack(&source, &rootfs, &enforcing(refused))
            .await
            .expect_err("the policy refuses");
        assert!(matches!(err, Error::PolicyRejected { .. }), "{err}");
        assert!(!rootfs.exists(), "{err}");
        let tar = dir.path().join("refused.tar");
        let err = export_to_path(
            &source,
            &tar,
            &ExportOptions::new().with_policy(Some(refused.clone())),
        )
        .await
        .expect_err("the policy refuses");
        assert!(matches!(err, Error::PolicyRejected { .. }), "{err}");
        assert!(!tar.exists(), "{err}");
    }
    // Every location unpacks now (issue 20); a registry that cannot be reached is an error
    // naming it, and nothing appears at the target.
    let remote = Location::parse("docker://127.0.0.1:1/app:v1").unwrap();
    let target = dir.path().join("r");
    let err = unpack(&remote, &target, &UnpackImageOptions::default())
        .await
        .expect_err("nothing listens there");
    assert!(err.to_string().contains("127.0.0.1:1"), "{err}");
    assert!(!target.exists(), "{err}");
}
