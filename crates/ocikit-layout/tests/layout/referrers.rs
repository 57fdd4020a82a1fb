//! The referrers index: listing, filtering, staying right when other writers edit
//! `index.json`, and costing no manifest reads when in sync.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use ocikit_digest::Digest;
use ocikit_layout::{Artifact, Layout};
use ocikit_store::conformance::Intercept;
use ocikit_store::{DocumentKey, MemoryStore, Precondition};
use serde_json::{Value, json};

use crate::artifact::{
    EMPTY, EMPTY_DIGEST, INDEX, MANIFEST, SBOM, SIGNATURE, desc_json, digest, image, stores,
    write_index,
};

fn types(list: &[ocikit_digest::oci_spec::image::Descriptor]) -> Vec<String> {
    let mut t: Vec<String> = list
        .iter()
        .map(|d| {
            d.artifact_type()
                .as_ref()
                .map_or("-".into(), ToString::to_string)
        })
        .collect();
    t.sort();
    t
}

#[tokio::test]
async fn two_artifacts_are_listed_and_filtered() {
    for (store, _guard) in stores().await {
        let layout = Layout::create(store).await.unwrap();
        let img = image(&layout, "v1").await;
        let other = image(&layout, "v2").await;
        let sig = layout
            .attach(
                &img.manifest,
                &Artifact::new(SIGNATURE).with_annotation("org.example.signer", "alice"),
            )
            .await
            .unwrap();
        let sbom = layout
            .attach(
                &img.manifest,
                &Artifact::new(SBOM).with_blob(SBOM, &b"{\"spdx\":1}"[..]),
            )
            .await
            .unwrap();
        layout
            .attach(&other.manifest, &Artifact::new(SIGNATURE))
            .await
            .unwrap();

        let all = layout
            .referrers(&digest(&img.manifest), None)
            .await
            .unwrap();
        assert_eq!(types(&all), [SBOM, SIGNATURE]);
        let listed_sig = all.iter().find(|d| d.digest() == sig.digest()).unwrap();
        assert_eq!(listed_sig.media_type().to_string(), MANIFEST);
        assert_eq!(listed_sig.size(), sig.size());
        assert_eq!(
            listed_sig.annotations().clone().unwrap(),
            [("org.example.signer".to_string(), "alice".to_string())].into(),
            "exactly the manifest's annotations"
        );
        let listed_sbom = all.iter().find(|d| d.digest() == sbom.digest()).unwrap();
        assert!(listed_sbom.annotations().is_none());

        let only = layout
            .referrers(&digest(&img.manifest), Some(SBOM))
            .await
            .unwrap();
        assert_eq!(only.len(), 1);
        assert_eq!(only[0].digest(), sbom.digest());
        assert!(
            layout
                .referrers(&digest(&img.manifest), Some("application/unknown"))
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            types(
                &layout
                    .referrers(&digest(&other.manifest), None)
                    .await
                    .unwrap()
            ),
            [SIGNATURE]
        );
        // Digests nobody refers to, or that are not stored at all: empty lists.
        assert!(
            layout
                .referrers(&digest(&img.config), None)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            layout
                .referrers(&Digest::sha256(b"nothing"), None)
                .await
                .unwrap()
                .is_empty()
        );
    }
}

#[tokio::test]
async fn referrers_follow_foreign_edits_of_index_json_and_removals() {
    for (store, _guard) in stores().await {
        let layout = Layout::create(store).await.unwrap();
        let img = image(&layout, "v1").await;
        let subject = digest(&img.manifest);
        let sig = layout
            .attach(&img.manifest, &Artifact::new(SIGNATURE))
            .await
            .unwrap();
        let sbom = layout
            .attach(&img.manifest, &Artifact::new(SBOM))
            .await
            .unwrap();
        assert_eq!(layout.referrers(&subject, None).await.unwrap().len(), 2);

        // Another tool writes its own artifact (an index with a subject, and a manifest with
        // no artifactType whose config type stands in) and rewrites index.json by hand,
        // dropping the SBOM.
        let foreign_index = json!({
            "schemaVersion": 2, "mediaType": INDEX,
            "artifactType": "application/vnd.example.bundle",
            "manifests": [], "subject": desc_json(&img.manifest),
            "annotations": {"org.example.k": "v"}
        });
        let foreign_index = layout
            .put_blob(INDEX, &serde_json::to_vec(&foreign_index).unwrap())
            .await
            .unwrap();
        let config_type = "application/vnd.example.thing.config.v1+json";
        let config = layout.put_blob(config_type, b"{\"a\":1}").await.unwrap();
        let plain = json!({
            "schemaVersion": 2, "mediaType": MANIFEST,
            "config": desc_json(&config),
            "layers": [{"mediaType": EMPTY, "digest": EMPTY_DIGEST, "size": 2}],
            "subject": desc_json(&img.manifest)
        });
        let plain = layout
            .put_blob(MANIFEST, &serde_json::to_vec(&plain).unwrap())
            .await
            .unwrap();
        let mut tagged = desc_json(&img.manifest);
        tagged["annotations"] = json!({"org.opencontainers.image.ref.name": "v1"});
        write_index(
            &layout,
            &json!({"schemaVersion": 2, "manifests": [
                tagged, desc_json(&sig), desc_json(&foreign_index), desc_json(&plain),
                // Unknown media types and missing blobs are not errors.
                {"mediaType": "application/xml", "digest": Digest::sha256(b"x").to_string(), "size": 1},
                {"mediaType": MANIFEST, "digest": Digest::sha256(b"gone").to_string(), "size": 4}
            ]}),
        )
        .await;
        let all = layout.referrers(&subject, None).await.unwrap();
        assert_eq!(
            types(&all),
            ["application/vnd.example.bundle", SIGNATURE, config_type]
        );
        assert!(all.iter().all(|d| d.digest() != sbom.digest()));
        let bundle = all
            .iter()
            .find(|d| d.digest() == foreign_index.digest())
            .unwrap();
        assert_eq!(bundle.media_type().to_string(), INDEX);
        assert_eq!(
            bundle.annotations().clone().unwrap(),
            [("org.example.k".to_string(), "v".to_string())].into()
        );

        // An index with no artifactType is listed without one.
        let bare = json!({"schemaVersion": 2, "mediaType": INDEX, "manifests": [],
            "subject": desc_json(&img.manifest)});
        let bare = layout
            .put_blob(INDEX, &serde_json::to_vec(&bare).unwrap())
            .await
            .unwrap();
        let mut index: Value =
            serde_json::from_slice(&layout.index().await.unwrap().to_bytes().unwrap()).unwrap();
        index["manifests"]
            .as_array_mut()
            .unwrap()
            .push(desc_json(&bare));
        write_index(&layout, &index).await;
        let listed = layout.referrers(&subject, None).await.unwrap();
        assert_eq!(listed.len(), 4);
        assert!(
            listed
                .iter()
                .find(|d| d.digest() == bare.digest())
                .unwrap()
                .artifact_type()
                .is_none()
        );

        // Detaching through ocikit, then removing the image: nothing refers any more.
        assert!(layout.detach(&digest(&sig)).await.unwrap());
        assert!(!layout.detach(&digest(&sig)).await.unwrap());
        assert_eq!(
            types(&layout.referrers(&subject, Some(SIGNATURE)).await.unwrap()),
            Vec::<String>::new()
        );
        assert_eq!(layout.referrers(&subject, None).await.unwrap().len(), 3);
        let removed = layout.remove_image("v1").await.unwrap().unwrap();
        assert_eq!(removed.digest(), img.manifest.digest());
        assert!(layout.referrers(&subject, None).await.unwrap().is_empty());
        let left: Vec<String> = layout
            .index()
            .await
            .unwrap()
            .manifests()
            .map(|d| d.media_type().to_string())
            .collect();
        assert_eq!(
            left,
            ["application/xml", MANIFEST],
            "only the unrelated entries stay"
        );
        assert!(layout.remove_image("v1").await.unwrap().is_none());
    }
}

#[tokio::test]
async fn damaged_referrers_documents_are_rebuilt() {
    for (store, _guard) in stores().await {
        let layout = Layout::create(store).await.unwrap();
        let img = image(&layout, "v1").await;
        let subject = digest(&img.manifest);
        layout
            .attach(&img.manifest, &Artifact::new(SIGNATURE))
            .await
            .unwrap();
        let keys = layout
            .store()
            .list_documents("ocikit/referrers")
            .await
            .unwrap();
        assert_eq!(keys.len(), 3, "{keys:?}");
        for key in &keys {
            layout
                .store()
                .write_document(key, Bytes::from_static(b"garbage"), Precondition::None)
                .await
                .unwrap();
        }
        assert_eq!(
            types(&layout.referrers(&subject, None).await.unwrap()),
            [SIGNATURE]
        );
        // A stale list left behind with a higher generation than a rebuild would give.
        let stale = DocumentKey::new(&format!(
            "ocikit/referrers/subjects/sha256/{}",
            Digest::sha256(b"old subject").encoded()
        ))
        .unwrap();
        layout
            .store()
            .write_document(
                &stale,
                Bytes::from(
                    serde_json::to_vec(&json!({"format": 1, "generation": 999, "manifests": [desc_json(&img.manifest)]}))
                        .unwrap(),
                ),
                Precondition::None,
            )
            .await
            .unwrap();
        for key in &keys {
            layout
                .store()
                .delete_document(key, Precondition::None)
                .await
                .unwrap();
        }
        assert!(
            layout
                .referrers(&Digest::sha256(b"old subject"), None)
                .await
                .unwrap()
                .is_empty(),
            "a rebuild clears lists it cannot vouch for"
        );
        assert_eq!(
            types(&layout.referrers(&subject, None).await.unwrap()),
            [SIGNATURE]
        );
    }
}

#[tokio::test]
async fn concurrent_attachers_are_all_listed() {
    for (store, _guard) in stores().await {
        let layout = Layout::create(store).await.unwrap();
        let img = image(&layout, "v1").await;
        let tasks = (0..12).map(|i| {
            let layout = layout.clone();
            let subject = img.manifest.clone();
            async move {
                layout
                    .attach(
                        &subject,
                        &Artifact::new(format!("application/vnd.example.t{i}")),
                    )
                    .await
                    .unwrap()
            }
        });
        let attached = futures::future::join_all(tasks).await;
        let listed = layout
            .referrers(&digest(&img.manifest), None)
            .await
            .unwrap();
        assert_eq!(listed.len(), 12);
        for d in attached {
            assert!(listed.iter().any(|l| l.digest() == d.digest()));
        }
    }
}

#[tokio::test]
async fn lookups_in_sync_read_no_manifests_and_catch_up_reads_only_new_ones() {
    let gets = Arc::new(AtomicUsize::new(0));
    let layout = Layout::create(Intercept::counting(MemoryStore::new(), gets.clone()))
        .await
        .unwrap();
    let img = image(&layout, "base").await;
    let subject = digest(&img.manifest);
    // 300 more manifests listed in index.json, none referring to anything.
    let mut entries = vec![desc_json(&img.manifest)];
    for i in 0..300 {
        let m = json!({"schemaVersion": 2, "mediaType": MANIFEST,
            "config": {"mediaType": EMPTY, "digest": EMPTY_DIGEST, "size": 2},
            "layers": [], "annotations": {"n": i.to_string()}});
        entries.push(desc_json(
            &layout
                .put_blob(MANIFEST, &serde_json::to_vec(&m).unwrap())
                .await
                .unwrap(),
        ));
    }
    write_index(&layout, &json!({"schemaVersion": 2, "manifests": entries})).await;
    gets.store(0, Ordering::SeqCst);
    assert!(layout.referrers(&subject, None).await.unwrap().is_empty());
    assert_eq!(
        gets.load(Ordering::SeqCst),
        301,
        "the first lookup reads each once"
    );

    gets.store(0, Ordering::SeqCst);
    for _ in 0..5 {
        assert!(layout.referrers(&subject, None).await.unwrap().is_empty());
    }
    assert_eq!(
        gets.load(Ordering::SeqCst),
        0,
        "in sync: no manifest is read"
    );

    // One artifact added by hand: only it is read.
    let art = json!({"schemaVersion": 2, "mediaType": MANIFEST, "artifactType": SIGNATURE,
        "config": {"mediaType": EMPTY, "digest": EMPTY_DIGEST, "size": 2},
        "layers": [{"mediaType": EMPTY, "digest": EMPTY_DIGEST, "size": 2}],
        "subject": desc_json(&img.manifest)});
    let art = layout
        .put_blob(MANIFEST, &serde_json::to_vec(&art).unwrap())
        .await
        .unwrap();
    entries.push(desc_json(&art));
    write_index(&layout, &json!({"schemaVersion": 2, "manifests": entries})).await;
    gets.store(0, Ordering::SeqCst);
    assert_eq!(
        types(&layout.referrers(&subject, None).await.unwrap()),
        [SIGNATURE]
    );
    assert_eq!(gets.load(Ordering::SeqCst), 1);
}

/// A writer that died after committing `state` but before the subject documents and `head`:
/// the next lookup finishes its work.
#[tokio::test]
async fn an_update_cut_short_is_finished_by_the_next_lookup() {
    for (store, _guard) in stores().await {
        let layout = Layout::create(store).await.unwrap();
        let img = image(&layout, "v1").await;
        let subject = digest(&img.manifest);
        layout
            .attach(&img.manifest, &Artifact::new(SIGNATURE))
            .await
            .unwrap();
        let head = DocumentKey::new("ocikit/referrers/head").unwrap();
        let sub = DocumentKey::new(&format!(
            "ocikit/referrers/subjects/sha256/{}",
            subject.encoded()
        ))
        .unwrap();
        let old_head = layout.store().read_document(&head).await.unwrap().unwrap();
        let old_sub = layout.store().read_document(&sub).await.unwrap().unwrap();
        layout
            .attach(&img.manifest, &Artifact::new(SBOM))
            .await
            .unwrap();
        for (key, doc) in [(&head, old_head), (&sub, old_sub)] {
            layout
                .store()
                .write_document(key, doc.bytes, Precondition::None)
                .await
                .unwrap();
        }
        assert_eq!(
            types(&layout.referrers(&subject, None).await.unwrap()),
            [SBOM, SIGNATURE]
        );
    }
}
