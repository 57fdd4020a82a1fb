//! Online garbage collection: what goes (an overwritten tag's old layers, a deleted
//! manifest's blobs, blobs never referenced once the grace period is over), what stays
//! (fresh uploads, blobs another repository shares, referrers, index children), refused
//! options, a dry run that matches the real run, a blob restored when a link races its
//! deletion, and pushes running while collections run.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use ocikit_digest::Digest;
use ocikit_registry::{Clock, Config, Error, GcOptions, GcOptionsError, GcReport, Registry};
use ocikit_store::conformance::Intercept;
use ocikit_store::{MemoryStore, Precondition, Store};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::*;

/// Collect everything old: no grace period (nothing else pushes in these tests), by a clock
/// a second ahead, so that what was written in the last millisecond counts without waiting.
fn now_options() -> GcOptions {
    GcOptions::new()
        .grace(Duration::ZERO)
        .clock(Clock::from_fn(|| {
            SystemTime::now() + Duration::from_secs(1)
        }))
}

/// Pushes an image (its config unique to this push) whose layers are `layers`; returns
/// the manifest digest, the config digest and the layer digests.
async fn push_image(
    s: &Server,
    name: &str,
    reference: &str,
    layers: &[&[u8]],
) -> (Digest, Digest, Vec<Digest>) {
    static PUSHED: AtomicUsize = AtomicUsize::new(0);
    let n = PUSHED.fetch_add(1, Ordering::SeqCst);
    let config_bytes = format!("{{\"image\":\"{name}:{reference}#{n:04}\"}}").into_bytes();
    let config = s.push_blob(name, &config_bytes).await;
    let mut digests = Vec::new();
    for layer in layers {
        digests.push(s.push_blob(name, layer).await);
    }
    let pairs: Vec<(&Digest, usize)> = digests
        .iter()
        .zip(layers)
        .map(|(d, l)| (d, l.len()))
        .collect();
    let manifest = image_manifest((&config, config_bytes.len()), &pairs);
    let resp = s.put_manifest(name, reference, MANIFEST, &manifest).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    (Digest::sha256(&manifest), config, digests)
}

async fn blob_status(s: &Server, name: &str, digest: &Digest) -> StatusCode {
    s.send(Method::HEAD, &format!("/v2/{name}/blobs/{digest}"))
        .await
        .status()
}

async fn manifest_status(s: &Server, name: &str, reference: &str) -> StatusCode {
    s.send(Method::HEAD, &format!("/v2/{name}/manifests/{reference}"))
        .await
        .status()
}

/// The stored sizes of `digests`, summed.
async fn sizes(s: &Server, digests: &[Digest]) -> u64 {
    let mut total = 0;
    for d in digests {
        total += s.registry.store().stat(d).await.unwrap().unwrap();
    }
    total
}

async fn gc(s: &Server, options: &GcOptions) -> GcReport {
    s.registry.gc(options).await.unwrap()
}

#[tokio::test]
async fn an_overwritten_tags_old_layers_go_only_with_delete_untagged() {
    for backend in BACKENDS {
        let s = server(backend).await;
        let shared = data(3000, 1);
        let old_layer = data(5000, 2);
        let new_layer = data(7000, 3);
        let (old, old_config, old_layers) =
            push_image(&s, "app", "v1", &[&shared, &old_layer]).await;
        let (_, _, new_layers) = push_image(&s, "app", "v1", &[&shared, &new_layer]).await;

        // Untagged manifests are kept by default, and so is everything they reference.
        let report = gc(&s, &now_options()).await;
        assert_eq!(report.manifests_removed(), 0, "{report:?}");
        assert_eq!(report.links_removed(), 0, "{report:?}");
        assert!(report.blobs_removed.is_empty(), "{report:?}");
        assert_eq!(
            manifest_status(&s, "app", old.as_str()).await,
            StatusCode::OK
        );

        let mut freed = vec![old.clone(), old_config.clone(), old_layers[1].clone()];
        freed.sort();
        let freed_bytes = sizes(&s, &freed).await;
        let report = gc(&s, &now_options().delete_untagged(true)).await;
        let repo = &report.repositories[0];
        assert_eq!(repo.name, "app");
        assert_eq!(repo.manifests_removed, vec![old.clone()]);
        let mut gone = vec![old_config.clone(), old_layers[1].clone()];
        gone.sort();
        assert_eq!(repo.links_removed, gone);
        // The old manifest's content, its config and its own layer; not the shared layer.
        assert_eq!(report.blobs_removed, freed, "{backend:?}");
        assert_eq!(report.bytes_freed, freed_bytes);
        assert_eq!(
            manifest_status(&s, "app", old.as_str()).await,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            blob_status(&s, "app", &old_layers[1]).await,
            StatusCode::NOT_FOUND
        );
        assert!(
            s.registry
                .store()
                .stat(&old_layers[1])
                .await
                .unwrap()
                .is_none()
        );
        // The tagged image is whole.
        assert_eq!(manifest_status(&s, "app", "v1").await, StatusCode::OK);
        for layer in &new_layers {
            assert_eq!(blob_status(&s, "app", layer).await, StatusCode::OK);
        }
        // Nothing left to do.
        let again = gc(&s, &now_options().delete_untagged(true)).await;
        assert_eq!(again.manifests_removed() + again.links_removed(), 0);
        assert!(again.blobs_removed.is_empty());
    }
}

#[tokio::test]
async fn a_deleted_manifests_blobs_are_freed_and_a_dry_run_says_so_first() {
    for backend in BACKENDS {
        let s = server(backend).await;
        let layer = data(10_000, 4);
        let (manifest, config, layers) = push_image(&s, "app", "v1", &[&layer]).await;
        let resp = s
            .send(Method::DELETE, &format!("/v2/app/manifests/{manifest}"))
            .await;
        assert_eq!(resp.status(), StatusCode::ACCEPTED);

        let dry = gc(&s, &now_options().dry_run(true)).await;
        assert!(dry.dry_run);
        // Nothing changed.
        assert_eq!(blob_status(&s, "app", &layers[0]).await, StatusCode::OK);
        assert!(s.registry.store().stat(&manifest).await.unwrap().is_some());

        let mut expected = vec![manifest.clone(), config.clone(), layers[0].clone()];
        expected.sort();
        let expected_bytes = sizes(&s, &expected).await;
        let linked_bytes = sizes(&s, &[config.clone(), layers[0].clone()]).await;
        let real = gc(&s, &now_options()).await;
        assert!(!real.dry_run);
        assert_eq!(dry.repositories, real.repositories);
        assert_eq!(dry.blobs_removed, real.blobs_removed);
        assert_eq!(dry.bytes_freed, real.bytes_freed);
        assert_eq!(real.blobs_removed, expected);
        assert_eq!(real.bytes_freed, expected_bytes);
        assert_eq!(real.repositories[0].links_removed.len(), 2);
        assert_eq!(real.repositories[0].links_removed_bytes, linked_bytes);
        for d in [&config, &layers[0]] {
            assert_eq!(blob_status(&s, "app", d).await, StatusCode::NOT_FOUND);
            assert!(s.registry.store().stat(d).await.unwrap().is_none());
        }
    }
}

#[tokio::test]
async fn unreferenced_uploads_survive_the_grace_period_then_go() {
    for backend in BACKENDS {
        let s = server(backend).await;
        let blob = data(4096, 5);
        let digest = s.push_blob("app", &blob).await;

        // Within the grace period: the client may be about to push its manifest.
        let report = gc(&s, &GcOptions::new().grace(Duration::from_secs(3600))).await;
        assert_eq!(report.repositories[0].links_kept_young, 1);
        assert!(report.blobs_removed.is_empty());
        assert_eq!(blob_status(&s, "app", &digest).await, StatusCode::OK);

        // Unlinked (by DELETE) but young: the content store keeps it too.
        let resp = s
            .send(Method::DELETE, &format!("/v2/app/blobs/{digest}"))
            .await;
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
        let report = gc(&s, &GcOptions::new().grace(Duration::from_secs(3600))).await;
        assert_eq!(report.blobs_kept_young, vec![digest.clone()]);
        assert!(s.registry.store().stat(&digest).await.unwrap().is_some());

        // A blob re-uploaded after being unlinked is linked and fresh again.
        s.push_blob("app", &blob).await;
        let report = gc(&s, &now_options()).await;
        assert_eq!(report.repositories[0].links_removed, vec![digest.clone()]);
        assert_eq!(report.blobs_removed, vec![digest.clone()]);
        assert_eq!(report.bytes_freed, 4096);
        assert_eq!(blob_status(&s, "app", &digest).await, StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn blobs_shared_with_another_repository_stay() {
    for backend in BACKENDS {
        let s = server(backend).await;
        let layer = data(8000, 6);
        let (a, _, layers) = push_image(&s, "team/a", "v1", &[&layer]).await;
        push_image(&s, "team/b", "v1", &[&layer]).await;
        // A mount into a third repository, never referenced there, but young.
        let resp = s
            .send(
                Method::POST,
                &format!("/v2/c/blobs/uploads/?mount={}&from=team/b", layers[0]),
            )
            .await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        let resp = s
            .send(Method::DELETE, &format!("/v2/team/a/manifests/{a}"))
            .await;
        assert_eq!(resp.status(), StatusCode::ACCEPTED);

        let report = gc(&s, &now_options()).await;
        let a_report = report
            .repositories
            .iter()
            .find(|r| r.name == "team/a")
            .unwrap();
        assert!(a_report.links_removed.contains(&layers[0]));
        // Still linked in team/b: the content stays, served there, not in team/a.
        assert!(!report.blobs_removed.contains(&layers[0]));
        assert_eq!(
            blob_status(&s, "team/a", &layers[0]).await,
            StatusCode::NOT_FOUND
        );
        assert_eq!(blob_status(&s, "team/b", &layers[0]).await, StatusCode::OK);
        // The mount's link was removed with a zero grace period, but team/b keeps the blob.
        assert_eq!(
            blob_status(&s, "c", &layers[0]).await,
            StatusCode::NOT_FOUND
        );
        let resp = s
            .send(Method::GET, &format!("/v2/team/b/blobs/{}", layers[0]))
            .await;
        assert_eq!(resp.bytes().await.unwrap(), &layer[..]);
    }
}

#[tokio::test]
async fn a_fresh_mount_survives_the_grace_period() {
    let s = server(Backend::Fs).await;
    let layer = data(2000, 7);
    let digest = s.push_blob("src", &layer).await;
    let resp = s
        .send(
            Method::POST,
            &format!("/v2/dst/blobs/uploads/?mount={digest}&from=src"),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let report = gc(&s, &GcOptions::new().grace(Duration::from_secs(60))).await;
    assert!(
        report
            .repositories
            .iter()
            .all(|r| r.links_removed.is_empty())
    );
    assert_eq!(blob_status(&s, "dst", &digest).await, StatusCode::OK);
}

/// An artifact manifest with `subject`, referring to one layer.
fn artifact(subject: &Digest, subject_len: usize, config: &Digest, layer: &Digest) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "artifactType": "application/vnd.example.sbom",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": config.as_str(), "size": 2},
        "layers": [{"mediaType": "application/json", "digest": layer.as_str(), "size": 5}],
        "subject": {"mediaType": MANIFEST, "digest": subject.as_str(), "size": subject_len},
    }))
    .unwrap()
}

#[tokio::test]
async fn referrers_of_kept_manifests_and_index_children_stay() {
    for backend in BACKENDS {
        let s = server(backend).await;
        // An image pushed by digest only, kept by a tagged index.
        let layer = data(3000, 8);
        let config = s.push_blob("app", b"{\"a\":1}").await;
        let layer_digest = s.push_blob("app", &layer).await;
        let child = image_manifest((&config, 7), &[(&layer_digest, layer.len())]);
        let child_digest = Digest::sha256(&child);
        let resp = s
            .put_manifest("app", child_digest.as_str(), MANIFEST, &child)
            .await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        let index = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": INDEX,
            "manifests": [{"mediaType": MANIFEST, "digest": child_digest.as_str(), "size": child.len()}],
        }))
        .unwrap();
        let resp = s.put_manifest("app", "v1", INDEX, &index).await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        // An untagged artifact attached to the child, and a referrer of that artifact.
        let empty = s.push_blob("app", b"{}").await;
        let sbom_layer = s.push_blob("app", b"sbom!").await;
        let sbom = artifact(&child_digest, child.len(), &empty, &sbom_layer);
        let sbom_digest = Digest::sha256(&sbom);
        let resp = s
            .put_manifest("app", sbom_digest.as_str(), MANIFEST, &sbom)
            .await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        let signature_layer = s.push_blob("app", b"sig!!").await;
        let signature = artifact(&sbom_digest, sbom.len(), &empty, &signature_layer);
        let signature_digest = Digest::sha256(&signature);
        let resp = s
            .put_manifest("app", signature_digest.as_str(), MANIFEST, &signature)
            .await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        // An untagged image nothing refers to, and an artifact attached to it.
        let (orphan, _, orphan_layers) = push_image(&s, "app", "tmp", &[&data(100, 9)]).await;
        let resp = s.send(Method::DELETE, "/v2/app/manifests/tmp").await;
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
        let orphan_len = s.registry.store().stat(&orphan).await.unwrap().unwrap();
        let orphan_sbom = artifact(&orphan, orphan_len as usize, &empty, &sbom_layer);
        let orphan_sbom_digest = Digest::sha256(&orphan_sbom);
        let resp = s
            .put_manifest("app", orphan_sbom_digest.as_str(), MANIFEST, &orphan_sbom)
            .await;
        assert_eq!(resp.status(), StatusCode::CREATED);

        let report = gc(&s, &now_options().delete_untagged(true)).await;
        let repo = &report.repositories[0];
        let mut removed = vec![orphan.clone(), orphan_sbom_digest.clone()];
        removed.sort();
        assert_eq!(repo.manifests_removed, removed, "{backend:?}");
        assert!(repo.links_removed.contains(&orphan_layers[0]));
        // The sbom layer is still used by the kept sbom.
        assert!(!repo.links_removed.contains(&sbom_layer));
        for m in [&child_digest, &sbom_digest, &signature_digest] {
            assert_eq!(manifest_status(&s, "app", m.as_str()).await, StatusCode::OK);
        }
        for b in [
            &config,
            &layer_digest,
            &empty,
            &sbom_layer,
            &signature_layer,
        ] {
            assert_eq!(blob_status(&s, "app", b).await, StatusCode::OK);
        }
        let resp = s
            .send(Method::GET, &format!("/v2/app/referrers/{child_digest}"))
            .await;
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["manifests"].as_array().unwrap().len(), 1);
        let resp = s
            .send(Method::GET, &format!("/v2/app/referrers/{orphan}"))
            .await;
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["manifests"].as_array().unwrap().len(), 0, "{body}");
        assert_eq!(
            manifest_status(&s, "app", orphan.as_str()).await,
            StatusCode::NOT_FOUND
        );
    }
}

#[tokio::test]
async fn young_untagged_manifests_stay() {
    let s = server(Backend::Memory).await;
    let (first, _, layers) = push_image(&s, "app", "v1", &[&data(500, 10)]).await;
    push_image(&s, "app", "v1", &[&data(600, 11)]).await;
    let report = gc(
        &s,
        &GcOptions::new()
            .grace(Duration::from_secs(60))
            .delete_untagged(true),
    )
    .await;
    assert_eq!(report.manifests_removed(), 0);
    assert_eq!(
        manifest_status(&s, "app", first.as_str()).await,
        StatusCode::OK
    );
    assert_eq!(blob_status(&s, "app", &layers[0]).await, StatusCode::OK);
}

#[tokio::test]
async fn one_repository_at_a_time() {
    let s = server(Backend::Fs).await;
    let mut layers = Vec::new();
    for name in ["a", "b"] {
        let (m, _, l) = push_image(&s, name, "v1", &[&data(900, 12)]).await;
        let resp = s
            .send(Method::DELETE, &format!("/v2/{name}/manifests/{m}"))
            .await;
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
        layers.push(l[0].clone());
    }
    let report = gc(&s, &now_options().repositories(["a"])).await;
    assert_eq!(report.repositories.len(), 1);
    assert_eq!(report.repositories[0].name, "a");
    assert_eq!(report.repositories[0].links_removed.len(), 2);
    // The shared layer is still linked in b; b's own config is b's business.
    assert_eq!(blob_status(&s, "b", &layers[1]).await, StatusCode::OK);
    assert!(!report.blobs_removed.contains(&layers[0]));
    let report = gc(&s, &now_options().repositories(["b"])).await;
    assert!(report.blobs_removed.contains(&layers[1]));
}

#[tokio::test]
async fn bad_options_are_refused() {
    let s = server(Backend::Memory).await;
    push_image(&s, "app", "v1", &[&data(10, 13)]).await;
    let refused = |r: Result<GcReport, Error>| match r {
        Err(Error::GcOptions(kind)) => kind,
        other => panic!("not refused: {other:?}"),
    };
    let r = s
        .registry
        .gc(&GcOptions::new().repositories(["Upper"]))
        .await;
    assert_eq!(
        refused(r),
        GcOptionsError::InvalidRepository {
            name: "Upper".into()
        }
    );
    let r = s
        .registry
        .gc(&GcOptions::new().repositories(["nope"]))
        .await;
    assert_eq!(
        refused(r),
        GcOptionsError::UnknownRepository {
            name: "nope".into()
        }
    );
    let none: [&str; 0] = [];
    let r = s.registry.gc(&GcOptions::new().repositories(none)).await;
    assert_eq!(refused(r), GcOptionsError::NoRepositories);
    let r = s.registry.gc(&GcOptions::new().grace(Duration::MAX)).await;
    assert!(matches!(refused(r), GcOptionsError::GraceTooLong { .. }));
    // A content store shared with an image layout that has images: its blobs are not ours.
    let index = br#"{"schemaVersion":2,"manifests":[{"mediaType":"x","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":1}]}"#;
    s.registry
        .store()
        .write_document(
            &"index.json".parse().unwrap(),
            bytes::Bytes::from_static(index),
            Precondition::None,
        )
        .await
        .unwrap();
    let r = s.registry.gc(&GcOptions::new()).await;
    assert!(matches!(r, Err(Error::ForeignReferences { .. })), "{r:?}");
    // Without the blob sweep the repositories can still be collected.
    s.registry
        .gc(&GcOptions::new().sweep_blobs(false))
        .await
        .unwrap();
}

/// A link written between the sweep's last check and its delete (an upload that
/// deduplicated against the doomed blob, linking just after): the re-check after the delete
/// sees it, and the blob is written back from the handle held open.
#[tokio::test]
async fn a_link_racing_the_delete_gets_its_blob_back() {
    let content = MemoryStore::new();
    let inner = content.clone();
    let target = Arc::new(std::sync::Mutex::new(None::<Digest>));
    let armed = Arc::new(AtomicBool::new(false));
    let hook = {
        let target = target.clone();
        let armed = armed.clone();
        move |digest: &Digest, blob| {
            if armed.load(Ordering::SeqCst)
                && target.lock().unwrap().as_ref() == Some(digest)
                && armed.swap(false, Ordering::SeqCst)
            {
                // The collector opens the blob just before deleting it: link it now.
                let key = format!(
                    "_registry/repositories/late/_blobs/{}",
                    digest.as_str().replace(':', "/")
                );
                futures::executor::block_on(inner.write_document(
                    &key.parse().unwrap(),
                    bytes::Bytes::from_static(b"{\"size\":4000}"),
                    Precondition::None,
                ))
                .unwrap();
            }
            blob
        }
    };
    let registry = Registry::new(
        Arc::new(Intercept::new(content, hook)),
        Arc::new(MemoryStore::new()),
        Config::default(),
    )
    .unwrap();
    let s = Server::start(registry).await;
    let blob = data(4000, 14);
    let digest = s.push_blob("app", &blob).await;
    let resp = s
        .send(Method::DELETE, &format!("/v2/app/blobs/{digest}"))
        .await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    *target.lock().unwrap() = Some(digest.clone());
    armed.store(true, Ordering::SeqCst);
    let report = gc(&s, &now_options()).await;
    assert_eq!(report.blobs_restored, vec![digest.clone()], "{report:?}");
    assert!(report.blobs_removed.is_empty());
    let resp = s
        .send(Method::GET, &format!("/v2/late/blobs/{digest}"))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().await.unwrap(), &blob[..]);
}

/// Every tag of `name` is fully pullable: the manifest, and every blob it names with the
/// right digest.
async fn assert_pullable(s: &Server, name: &str) -> usize {
    let resp = s.send(Method::GET, &format!("/v2/{name}/tags/list")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    let tags = body["tags"].as_array().unwrap().clone();
    for tag in &tags {
        let tag = tag.as_str().unwrap();
        let resp = s
            .send(Method::GET, &format!("/v2/{name}/manifests/{tag}"))
            .await;
        assert_eq!(resp.status(), StatusCode::OK, "{name}:{tag}");
        let manifest: Value = resp.json().await.unwrap();
        let mut blobs = vec![manifest["config"]["digest"].as_str().unwrap().to_owned()];
        for layer in manifest["layers"].as_array().unwrap() {
            blobs.push(layer["digest"].as_str().unwrap().to_owned());
        }
        for blob in blobs {
            let resp = s
                .send(Method::GET, &format!("/v2/{name}/blobs/{blob}"))
                .await;
            assert_eq!(resp.status(), StatusCode::OK, "{name}:{tag} {blob}");
            let bytes = resp.bytes().await.unwrap();
            assert_eq!(Digest::sha256(&bytes).as_str(), blob, "{name}:{tag}");
        }
    }
    tags.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_while_collections_run_stay_pullable() {
    const GRACE: Duration = Duration::from_millis(1500);
    for backend in BACKENDS {
        let s = Arc::new(server(backend).await);
        // Old garbage that the pushers will upload (and mount) again while it is swept.
        let garbage: Vec<Vec<u8>> = (0..12)
            .map(|i| data(20_000 + i * 100, 100 + i as u8))
            .collect();
        for g in &garbage {
            s.push_blob("old", g).await;
        }
        let (m, _, _) = push_image(&s, "old", "gone", &[&garbage[0]]).await;
        let resp = s
            .send(Method::DELETE, &format!("/v2/old/manifests/{m}"))
            .await;
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
        tokio::time::sleep(GRACE + Duration::from_millis(100)).await;

        let done = Arc::new(AtomicBool::new(false));
        let runs = Arc::new(AtomicUsize::new(0));
        let collector = {
            let s = s.clone();
            let done = done.clone();
            let runs = runs.clone();
            tokio::spawn(async move {
                let mut removed = 0;
                let mut restored = 0;
                while !done.load(Ordering::SeqCst) {
                    let options = GcOptions::new().grace(GRACE).delete_untagged(true);
                    let report = s.registry.gc(&options).await.unwrap();
                    removed += report.blobs_removed.len();
                    restored += report.blobs_restored.len();
                    runs.fetch_add(1, Ordering::SeqCst);
                    tokio::task::yield_now().await;
                }
                (removed, restored)
            })
        };
        let mut pushers = Vec::new();
        for p in 0..4usize {
            let s = s.clone();
            let garbage = garbage.clone();
            pushers.push(tokio::spawn(async move {
                let name = format!("app{p}");
                for i in 0..12usize {
                    let reused = &garbage[(p * 3 + i) % garbage.len()];
                    let reused_digest = Digest::sha256(reused);
                    // Every other time, try a mount from the repository being swept.
                    if i % 2 == 0 {
                        let resp = s
                            .send(
                                Method::POST,
                                &format!(
                                    "/v2/{name}/blobs/uploads/?mount={reused_digest}&from=old"
                                ),
                            )
                            .await;
                        if resp.status() != StatusCode::CREATED {
                            assert_eq!(resp.status(), StatusCode::ACCEPTED);
                            s.push_blob(&name, reused).await;
                        }
                    } else {
                        s.push_blob(&name, reused).await;
                    }
                    let own = data(5000 + i, (p * 16 + i) as u8);
                    let own_digest = s.push_blob(&name, &own).await;
                    let config = format!("{{\"p\":{p},\"i\":{i}}}").into_bytes();
                    let config_digest = s.push_blob(&name, &config).await;
                    let manifest = image_manifest(
                        (&config_digest, config.len()),
                        &[(&reused_digest, reused.len()), (&own_digest, own.len())],
                    );
                    // Tags are overwritten: the earlier images become untagged garbage.
                    let resp = s
                        .put_manifest(&name, &format!("t{}", i % 4), MANIFEST, &manifest)
                        .await;
                    assert_eq!(resp.status(), StatusCode::CREATED);
                    tokio::task::yield_now().await;
                }
            }));
        }
        for pusher in pushers {
            pusher.await.unwrap();
        }
        done.store(true, Ordering::SeqCst);
        let (removed, _restored) = collector.await.unwrap();
        assert!(runs.load(Ordering::SeqCst) >= 2, "{backend:?}");
        assert!(removed > 0, "the collections removed nothing ({backend:?})");
        let mut tags = 0;
        for p in 0..4 {
            tags += assert_pullable(&s, &format!("app{p}")).await;
        }
        assert_eq!(tags, 16);
        // And once more after a final collection with everything older than the grace.
        tokio::time::sleep(GRACE + Duration::from_millis(100)).await;
        s.registry
            .gc(&GcOptions::new().grace(GRACE).delete_untagged(true))
            .await
            .unwrap();
        for p in 0..4 {
            assert_pullable(&s, &format!("app{p}")).await;
        }
    }
}

/// The grace period is measured by the clock the options carry: an hour and a half later by
/// that clock, a collection removes what one now keeps, without anyone waiting.
#[tokio::test]
async fn the_grace_period_is_judged_by_the_injected_clock() {
    for backend in BACKENDS {
        let s = server(backend).await;
        let digest = s.push_blob("app", &data(3000, 7)).await;
        let clock = ocikit_testkit::ManualClock::starting_now();
        let options = GcOptions::new().clock(Clock::from_fn(clock.reader()));
        let now = gc(&s, &options).await;
        assert!(now.blobs_removed.is_empty(), "{now:?}");
        clock.advance(Duration::from_secs(30 * 60));
        let later = gc(&s, &options).await;
        assert!(later.blobs_removed.is_empty(), "within the hour: {later:?}");
        assert_eq!(blob_status(&s, "app", &digest).await, StatusCode::OK);
        clock.advance(Duration::from_secs(60 * 60));
        let past = gc(&s, &options).await;
        assert_eq!(past.blobs_removed, vec![digest.clone()]);
        assert_eq!(blob_status(&s, "app", &digest).await, StatusCode::NOT_FOUND);
        s.stop().await;
    }
}
