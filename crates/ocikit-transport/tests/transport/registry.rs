//! Copies to, within and from a registry served in-process on 127.0.0.1.

use std::sync::Arc;

use ocikit_registry::{Config, Registry};
use ocikit_store::MemoryStore;
use ocikit_transport::{
    CopyOptions, Error, ImageName, Location, Operation, RegistryOptions, Stage, copy,
};

use crate::{Seen, at, image, open, unpacked};

/// Serves a fresh in-memory registry on an ephemeral loopback port; returns `host:port`.
pub(crate) async fn serve() -> String {
    let registry = Registry::new(
        Arc::new(MemoryStore::new()),
        Arc::new(MemoryStore::new()),
        Config::default(),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = registry.router();
    tokio::spawn(async move {
        axum::serve(listener, app).await.ok();
    });
    addr.to_string()
}

/// Plain HTTP on loopback, and no stored credentials (never the developer's logins).
pub(crate) fn plain() -> RegistryOptions {
    RegistryOptions::new()
        .with_tls_verify(false)
        .with_authfile(Some(
            "/nonexistent/ocikit-transport-tests/config.json".into(),
        ))
}

pub(crate) fn options(seen: &Seen) -> CopyOptions {
    CopyOptions::new()
        .with_source(plain())
        .with_destination(plain())
        .with_progress(seen.sink())
}

pub(crate) fn docker(addr: &str, rest: &str) -> Location {
    format!("docker://{addr}/{rest}").parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_image_goes_to_a_registry_within_it_and_back() {
    let addr = serve().await;
    let dir = tempfile::tempdir().unwrap();
    let (source, root) = image(&dir.path().join("src"), "v1").await;
    let seen = Seen::default();
    let options = options(&seen);

    let report = copy(
        &at("oci", &dir.path().join("src"), ":v1"),
        &docker(&addr, "team/app:v1"),
        &options,
    )
    .await
    .unwrap();
    // The config and two layers uploaded (the manifest is not a blob upload), four blobs
    // in all.
    assert_eq!((report.blobs_copied, report.blobs), (3, 4), "{report:?}");
    assert_eq!(report.images[0].name, ImageName::Tag("v1".into()));
    assert!(seen.stages().contains(&Stage::Push), "{:?}", seen.stages());

    // Within the registry: the blobs are mounted, none uploaded again.
    let report = copy(
        &docker(&addr, "team/app:v1"),
        &docker(&addr, "other:v2"),
        &options,
    )
    .await
    .unwrap();
    assert_eq!(report.images[0].root.digest(), root.digest());
    assert_eq!(report.blobs_mounted, 3, "{report:?}");
    assert_eq!(report.blobs_copied, 0, "{report:?}");

    // Back into a new layout, and into an oci-archive through a scratch layout.
    let back = dir.path().join("back");
    let report = copy(&docker(&addr, "other:v2"), &at("oci", &back, ""), &options)
        .await
        .unwrap();
    assert_eq!(report.images[0].name, ImageName::Tag("v2".into()));
    let layout = open(&back).await;
    let pulled = layout.resolve("v2").await.unwrap();
    assert_eq!(pulled.digest(), root.digest());
    assert_eq!(
        unpacked(&layout, &pulled).await,
        unpacked(&source, &root).await
    );
    let archive = at("oci-archive", &dir.path().join("pulled.tar"), "");
    let report = copy(
        &docker(&addr, &format!("other@{}", root.digest())),
        &archive,
        &options,
    )
    .await
    .unwrap_err();
    // Named by digest, the image has no tag for the archive to give it.
    assert!(matches!(report, Error::Untagged { .. }), "{report:?}");
    copy(&docker(&addr, "other:v2"), &archive, &options)
        .await
        .unwrap();
    assert!(seen.stages().contains(&Stage::Pull), "{:?}", seen.stages());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_registry_refuses_what_is_wrong_and_changes_nothing() {
    let addr = serve().await;
    let dir = tempfile::tempdir().unwrap();
    let (_, root) = image(&dir.path().join("src"), "v1").await;
    let seen = Seen::default();
    let options = options(&seen);
    let src = at("oci", &dir.path().join("src"), ":v1");

    // A destination digest that is not the image's.
    let other = ocikit_digest::Digest::sha256(b"another image");
    let err = copy(&src, &docker(&addr, &format!("app@{other}")), &options)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::NotTheSource { ref digest } if *digest == other),
        "{err:?}"
    );
    // By its own digest it goes.
    copy(
        &src,
        &docker(&addr, &format!("app@{}", root.digest())),
        &options,
    )
    .await
    .unwrap();
    // A missing tag in the registry: nothing appears at the destination.
    let new = dir.path().join("new");
    let err = copy(&docker(&addr, "app:nope"), &at("oci", &new, ""), &options)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Pull { .. }), "{err:?}");
    assert!(!new.exists(), "a failed pull left a layout");
    // Named by digest with no destination tag.
    let err = copy(
        &docker(&addr, &format!("app@{}", root.digest())),
        &at("oci", &new, ""),
        &options,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::NoDestinationTag), "{err:?}");
    // TLS verified (the default) against a plain-HTTP registry: the client's error, chained.
    let err = copy(&src, &docker(&addr, "app:v9"), &CopyOptions::new())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Push { .. }), "{err:?}");
    assert!(std::error::Error::source(&err).is_some());
    assert!(!new.exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_image_is_read_and_its_referrers_listed_wherever_it_is() {
    let addr = serve().await;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let (source, root) = image(&src, "v1").await;
    let seen = Seen::default();
    copy(
        &at("oci", &src, ":v1"),
        &docker(&addr, "app:v1"),
        &options(&seen),
    )
    .await
    .unwrap();

    // From the registry: the manifest, verified, and its config, in a memory layout.
    let (layout, descriptor) =
        ocikit_transport::open_image(&docker(&addr, "app:v1"), &plain(), true, "inspect")
            .await
            .unwrap();
    assert_eq!(descriptor.digest(), root.digest());
    let ocikit_layout::Document::Manifest { manifest, .. } =
        layout.read_document(&descriptor).await.unwrap()
    else {
        panic!("not a manifest");
    };
    assert_eq!(
        layout.read_blob(manifest.config()).await.unwrap(),
        source.read_blob(manifest.config()).await.unwrap()
    );
    // From the layout, by tag.
    let (_, descriptor) =
        ocikit_transport::open_image(&at("oci", &src, ":v1"), &plain(), false, "inspect")
            .await
            .unwrap();
    assert_eq!(descriptor.digest(), root.digest());

    // Referrers of the layout's image.
    let artifact = ocikit_layout::Artifact::new("application/vnd.example.sbom+json")
        .with_blob("application/json", b"{}".to_vec());
    let attached = source.attach(&root, &artifact).await.unwrap();
    let (subject, found) =
        ocikit_transport::referrers(&at("oci", &src, ":v1"), &plain(), None, "referrers")
            .await
            .unwrap();
    assert_eq!(subject.to_string(), root.digest().to_string());
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].digest(), attached.digest());
    // The registry image has none (a copy of the image does not take its referrers).
    let (subject, found) =
        ocikit_transport::referrers(&docker(&addr, "app:v1"), &plain(), None, "referrers")
            .await
            .unwrap();
    assert_eq!(subject.to_string(), root.digest().to_string());
    assert!(found.is_empty());

    // Refused: an archive, a missing tag (naming the layout), a missing registry tag.
    let err = ocikit_transport::open_image(
        &at("oci-archive", &dir.path().join("a.tar"), ""),
        &plain(),
        false,
        "inspect",
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::NeedsLayout { .. }), "{err:?}");
    let err = ocikit_transport::open_image(&at("oci", &src, ":nope"), &plain(), false, "inspect")
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::TagNotFound { ref tag, ref path, .. } if tag == "nope" && *path == src),
        "{err:?}"
    );
    let err = ocikit_transport::open_image(&docker(&addr, "app:nope"), &plain(), true, "inspect")
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Registry {
                operation: Operation::ReadManifest,
                ..
            }
        ),
        "{err:?}"
    );
}
