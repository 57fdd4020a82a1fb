//! Garbage collection: orphans older than the grace period go, young ones and everything
//! reachable (referrers included) stay; dry runs delete nothing; removing images.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use ocikit_digest::Digest;
use ocikit_layout::gc::Clock;
use ocikit_layout::{Artifact, Error, FsckOptions, GcOptions, Layout};
use ocikit_store::{DocumentKey, FsStore, Precondition, StoreExt};
use serde_json::json;

use crate::artifact::{INDEX, MANIFEST, SBOM, SIGNATURE, desc_json, digest, image, stores};

async fn present(layout: &Layout, d: &Digest) -> bool {
    layout.store().stat(d).await.unwrap().is_some()
}

#[tokio::test]
async fn gc_sweeps_old_orphans_keeps_young_ones_and_everything_reachable() {
    for (store, _guard) in stores().await {
        let layout = Layout::create(store).await.unwrap();
        let img = image(&layout, "v1").await;
        let sig = layout
            .attach(
                &img.manifest,
                &Artifact::new(SIGNATURE).with_blob("application/octet-stream", &b"sig"[..]),
            )
            .await
            .unwrap();
        let nested = json!({"schemaVersion": 2, "mediaType": INDEX, "manifests": [desc_json(&img.manifest)]});
        let nested = layout
            .put_blob(INDEX, &serde_json::to_vec(&nested).unwrap())
            .await
            .unwrap();
        layout.set_tag("multi", &nested).await.unwrap();
        let old = layout.store().put_bytes(b"old orphan").await.unwrap();
        let old_written = layout.store().written_at(&old).await.unwrap().unwrap();
        // Written more than a second apart (S3's LastModified has a resolution of one
        // second); then the collections read a clock that stands still, with the grace
        // period half a second short of `old`'s age, however slow a loaded machine is.
        ocikit_testkit::wait_until(
            "a second past the old orphan's write",
            Duration::from_secs(10),
            || (SystemTime::now() > old_written + Duration::from_millis(1100)).then_some(()),
        );
        let young = layout.store().put_bytes(b"young orphan").await.unwrap();
        let clock = ocikit_testkit::ManualClock::starting_now();
        let grace = clock.now().duration_since(old_written).unwrap() - Duration::from_millis(500);
        let options = GcOptions::new()
            .with_grace(grace)
            .with_clock(Clock::from_fn(clock.reader()));

        let dry = layout
            .gc(&options.clone().with_dry_run(true))
            .await
            .unwrap();
        assert!(dry.dry_run);
        assert_eq!(dry.removed, vec![old.clone()]);
        assert_eq!(dry.removed_bytes, 10);
        assert_eq!(dry.kept_young, vec![young.clone()]);
        assert!(present(&layout, &old).await, "a dry run deletes nothing");

        let report = layout.gc(&options).await.unwrap();
        assert!(!report.dry_run);
        assert_eq!(report.removed, vec![old.clone()]);
        assert_eq!(report.removed_bytes, 10);
        assert_eq!(report.kept_young, vec![young.clone()]);
        assert!(!present(&layout, &old).await);
        assert!(present(&layout, &young).await);
        let mut reachable = img.blobs();
        reachable.extend([
            digest(&sig),
            digest(&nested),
            Digest::sha256(b"sig"),
            Digest::sha256(b"{}"),
        ]);
        for d in &reachable {
            assert!(present(&layout, d).await, "{d} was swept");
        }
        assert_eq!(report.reachable, reachable.len());
        assert!(
            layout.fsck(&FsckOptions::new()).await.unwrap().is_clean(),
            "nothing reachable went"
        );
        assert_eq!(
            layout
                .referrers(&digest(&img.manifest), None)
                .await
                .unwrap()
                .len(),
            1
        );
        // Nothing more to do, and the default grace period keeps the young orphan.
        let again = layout.gc(&GcOptions::new()).await.unwrap();
        assert!(again.removed.is_empty());
        assert_eq!(again.kept_young, [young]);
    }
}

/// The grace period is measured by the clock the options carry: a collection an hour and a
/// half later (by that clock) removes what one now keeps, without anyone waiting.
#[tokio::test]
async fn the_grace_period_is_judged_by_the_injected_clock() {
    for (store, _guard) in stores().await {
        let layout = Layout::create(store).await.unwrap();
        let orphan = layout.store().put_bytes(b"orphan").await.unwrap();
        let clock = ocikit_testkit::ManualClock::starting_now();
        let options = GcOptions::new().with_clock(Clock::from_fn(clock.reader()));
        let now = layout.gc(&options).await.unwrap();
        assert_eq!(now.kept_young, vec![orphan.clone()]);
        assert!(now.removed.is_empty());
        clock.advance(Duration::from_secs(30 * 60));
        let later = layout.gc(&options).await.unwrap();
        assert_eq!(later.kept_young, vec![orphan.clone()], "within the hour");
        clock.advance(Duration::from_secs(60 * 60));
        let past = layout.gc(&options).await.unwrap();
        assert_eq!(past.removed, vec![orphan.clone()]);
        assert!(past.kept_young.is_empty());
        assert!(!present(&layout, &orphan).await);
    }
}

#[tokio::test]
async fn gc_judges_files_by_their_modification_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::open(dir.path()).await.unwrap();
    let layout = Layout::create(store.clone()).await.unwrap();
    image(&layout, "v1").await;
    let old = layout.store().put_bytes(b"two hours old").await.unwrap();
    let young = layout.store().put_bytes(b"just written").await.unwrap();
    std::fs::File::options()
        .write(true)
        .open(store.blob_path(&old))
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(7200))
        .unwrap();
    let report = layout.gc(&GcOptions::new()).await.unwrap();
    assert_eq!(report.removed, vec![old.clone()]);
    assert_eq!(report.kept_young, [young]);
    assert!(!store.blob_path(&old).exists());
    // Stray entries in blobs/ (SPEC C-L08) are neither blobs nor errors.
    std::fs::create_dir_all(dir.path().join("blobs/SHA256")).unwrap();
    std::fs::write(dir.path().join("blobs/SHA256/abc"), b"x").unwrap();
    std::fs::write(dir.path().join("blobs/sha256/ABC"), b"x").unwrap();
    let report = layout.gc(&GcOptions::new()).await.unwrap();
    assert!(report.removed.is_empty(), "{:?}", report.removed);
    assert!(dir.path().join("blobs/sha256/ABC").exists());
}

#[tokio::test]
async fn removed_images_are_collected_shared_blobs_and_other_tags_stay() {
    for (store, _guard) in stores().await {
        let layout = Layout::create(store).await.unwrap();
        let a = image(&layout, "a").await;
        let b = image(&layout, "b").await;
        layout.set_tag("b-too", &b.manifest).await.unwrap();
        // c shares a's base layer.
        let c = json!({"schemaVersion": 2, "mediaType": MANIFEST, "config": desc_json(&b.config),
            "layers": [desc_json(&a.layers[0])]});
        let c = layout
            .put_blob(MANIFEST, &serde_json::to_vec(&c).unwrap())
            .await
            .unwrap();
        layout.set_tag("c", &c).await.unwrap();
        let sig = layout
            .attach(&a.manifest, &Artifact::new(SIGNATURE))
            .await
            .unwrap();
        // An artifact on the artifact: removed with it.
        let sig_sbom = layout.attach(&sig, &Artifact::new(SBOM)).await.unwrap();

        // Removing one of two tags of b keeps the image.
        assert!(layout.remove_image("b-too").await.unwrap().is_some());
        assert_eq!(
            layout.resolve("b").await.unwrap().digest(),
            b.manifest.digest()
        );

        let removed = layout.remove_image("a").await.unwrap().unwrap();
        assert_eq!(removed.digest(), a.manifest.digest());
        let left: Vec<String> = layout
            .index()
            .await
            .unwrap()
            .manifests()
            .map(|d| d.digest().to_string())
            .collect();
        assert_eq!(
            left,
            [b.manifest.digest().to_string(), c.digest().to_string()]
        );
        // Blobs stay until GC.
        assert!(present(&layout, &digest(&a.manifest)).await);
        let report = layout
            .gc(&GcOptions::new().with_grace(Duration::ZERO))
            .await
            .unwrap();
        let mut gone = vec![
            digest(&a.manifest),
            digest(&a.config),
            digest(&a.layers[1]),
            digest(&sig),
            digest(&sig_sbom),
            // The empty config of the artifacts: nothing else uses it.
            Digest::sha256(b"{}"),
        ];
        gone.sort();
        assert_eq!(report.removed, gone);
        assert!(
            present(&layout, &digest(&a.layers[0])).await,
            "shared with c"
        );
        for d in b.blobs() {
            assert!(present(&layout, &d).await);
        }
        // The referrers documents of a are gone too.
        let docs = layout
            .store()
            .list_documents("ocikit/referrers/subjects")
            .await
            .unwrap();
        assert!(docs.is_empty(), "{docs:?}");
        assert_eq!(
            report.documents_removed.len(),
            2,
            "{:?}",
            report.documents_removed
        );
        assert!(layout.fsck(&FsckOptions::new()).await.unwrap().is_clean());
    }
}

#[tokio::test]
async fn gc_refuses_to_sweep_when_a_reachable_document_is_unreadable() {
    for (store, _guard) in stores().await {
        let layout = Layout::create(store).await.unwrap();
        let img = image(&layout, "v1").await;
        let bad = layout
            .put_blob(
                MANIFEST,
                br#"{"schemaVersion":2,"manifests":[],"layers":[]}"#,
            )
            .await
            .unwrap();
        layout.set_tag("bad", &bad).await.unwrap();
        let orphan = layout.store().put_bytes(b"orphan").await.unwrap();
        let result = layout
            .gc(&GcOptions::new().with_grace(Duration::ZERO))
            .await;
        assert!(
            matches!(&result, Err(Error::InvalidDocument { digest: d, .. }) if *d == digest(&bad)),
            "{result:?}"
        );
        assert!(present(&layout, &orphan).await, "nothing deleted");
        for d in img.blobs() {
            assert!(present(&layout, &d).await);
        }
    }
}

#[tokio::test]
async fn gc_deletes_referrers_documents_others_damaged() {
    let (store, _guard) = stores().await.remove(0);
    let layout = Layout::create(store).await.unwrap();
    let img = image(&layout, "v1").await;
    // The referrers index exists; then another tool leaves junk in it.
    assert!(
        layout
            .referrers(&digest(&img.manifest), None)
            .await
            .unwrap()
            .is_empty()
    );
    let junk = DocumentKey::new("ocikit/referrers/subjects/sha256/junk").unwrap();
    layout
        .store()
        .write_document(&junk, Bytes::from_static(b"not json"), Precondition::None)
        .await
        .unwrap();
    let dry = layout
        .gc(&GcOptions::new().with_dry_run(true))
        .await
        .unwrap();
    assert_eq!(dry.documents_removed, vec![junk.clone()]);
    assert!(layout.store().read_document(&junk).await.unwrap().is_some());
    let report = layout.gc(&GcOptions::new()).await.unwrap();
    assert_eq!(report.documents_removed, vec![junk.clone()]);
    assert!(layout.store().read_document(&junk).await.unwrap().is_none());
    let _ = img;
}

/// GC running again and again while a writer pushes images: with a grace period, nothing the
/// writer stored is lost, even before its tag exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_is_safe_while_another_writer_pushes() {
    for (store, _guard) in stores().await {
        let layout = Layout::create(store).await.unwrap();
        let writer = {
            let layout = layout.clone();
            tokio::spawn(async move {
                for i in 0..15 {
                    let img = crate::artifact::image_with(&layout, &format!("w{i}"), None).await;
                    tokio::task::yield_now().await;
                    layout
                        .set_tag(&format!("w{i}"), &img.manifest)
                        .await
                        .unwrap();
                    layout
                        .attach(&img.manifest, &Artifact::new(SIGNATURE))
                        .await
                        .unwrap();
                }
            })
        };
        let collector = {
            let layout = layout.clone();
            tokio::spawn(async move {
                let mut runs = 0;
                while runs < 200 {
                    let report = layout
                        .gc(&GcOptions::new().with_grace(Duration::from_secs(60)))
                        .await
                        .unwrap();
                    assert!(report.removed.is_empty(), "{:?}", report.removed);
                    runs += 1;
                    tokio::task::yield_now().await;
                }
            })
        };
        writer.await.unwrap();
        collector.await.unwrap();
        assert_eq!(layout.tags().await.unwrap().len(), 15);
        assert!(layout.fsck(&FsckOptions::new()).await.unwrap().is_clean());
    }
}

/// Storing an old unreferenced blob again renews its write time, so the grace period
/// protects the new writer (SPEC: blobs younger than the grace period are never swept).
#[tokio::test]
async fn rewriting_an_old_orphan_makes_it_young_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::open(dir.path()).await.unwrap();
    let layout = Layout::create(store.clone()).await.unwrap();
    let blob = layout.store().put_bytes(b"reused layer").await.unwrap();
    std::fs::File::options()
        .write(true)
        .open(store.blob_path(&blob))
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(7200))
        .unwrap();
    let dry = layout
        .gc(&GcOptions::new().with_dry_run(true))
        .await
        .unwrap();
    assert_eq!(dry.removed, vec![blob.clone()]);
    layout.store().put_bytes(b"reused layer").await.unwrap();
    let report = layout.gc(&GcOptions::new()).await.unwrap();
    assert!(report.removed.is_empty());
    assert_eq!(report.kept_young, vec![blob]);
}

/// A store an ocikit registry also serves keeps the registry's references in `_registry/`
/// documents; a layout GC, which does not read them, refuses instead of deleting its blobs.
#[tokio::test]
async fn gc_refuses_a_store_that_holds_registry_metadata() {
    for (store, _guard) in stores().await {
        let layout = Layout::create(store).await.unwrap();
        let pushed = layout
            .store()
            .put_bytes(b"a blob a registry holds")
            .await
            .unwrap();
        layout
            .store()
            .write_document(
                &DocumentKey::new("_registry/repositories/app/_tags/v1").unwrap(),
                Bytes::from(format!("{{\"digest\":\"{pushed}\"}}")),
                Precondition::MustNotExist,
            )
            .await
            .unwrap();
        let options = GcOptions::new().with_grace(Duration::ZERO);
        let err = layout.gc(&options).await.unwrap_err();
        assert!(
            matches!(&err, Error::ForeignReferences { prefix } if prefix == "_registry/"),
            "{err:?}"
        );
        assert!(
            layout.store().exists(&pushed).await.unwrap(),
            "gc deleted a registry blob"
        );
    }
}
