//! fsck: a clean layout is clean; every problem of a damaged one is reported in one run.
// Tests that need a codec are gated on its feature, so that `cargo test --no-default-features`
// runs the rest; what only they use is then unused.
#![cfg_attr(
    not(all(feature = "gzip", feature = "zstd")),
    allow(unused_imports, dead_code)
)]

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use ocikit_digest::Digest;
use ocikit_layout::{Artifact, Event, FsckOptions, Layout, Operation, ProblemKind, Progress};
use ocikit_store::FsStore;
use serde_json::json;

use crate::artifact::{
    CONFIG, INDEX, MANIFEST, SIGNATURE, TAR_GZIP, desc_json, digest, image, image_with, stores,
    write_index,
};

fn kinds(report: &ocikit_layout::FsckReport) -> Vec<(Digest, ProblemKind)> {
    report
        .problems
        .iter()
        .map(|p| (p.digest.clone(), p.kind.clone()))
        .collect()
}

#[cfg(feature = "gzip")]
#[tokio::test]
async fn a_clean_layout_has_no_problems_and_every_blob_is_counted_once() {
    for (store, _guard) in stores().await {
        let layout = Layout::create(store).await.unwrap();
        let a = image(&layout, "a").await;
        let b = image(&layout, "b").await;
        // The same image under a second tag, and both inside a nested index.
        layout.set_tag("a-again", &a.manifest).await.unwrap();
        let nested = json!({"schemaVersion": 2, "mediaType": INDEX,
            "manifests": [desc_json(&a.manifest), desc_json(&b.manifest)]});
        let nested = layout
            .put_blob(INDEX, &serde_json::to_vec(&nested).unwrap())
            .await
            .unwrap();
        layout.set_tag("multi", &nested).await.unwrap();
        let sig = layout
            .attach(
                &a.manifest,
                &Artifact::new(SIGNATURE).with_blob("application/octet-stream", &b"sig"[..]),
            )
            .await
            .unwrap();

        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        let options = FsckOptions::new()
            .with_diff_ids(true)
            .with_progress(Progress::new(move |e| sink.lock().unwrap().push(e.clone())));
        let report = layout.fsck(&options).await.unwrap();
        assert!(report.is_clean(), "{:#?}", report.problems);

        let mut expected: HashSet<Digest> = a.blobs().into_iter().chain(b.blobs()).collect();
        expected.insert(digest(&nested));
        expected.insert(digest(&sig));
        expected.insert(Digest::sha256(b"sig"));
        expected.insert(Digest::sha256(b"{}"));
        assert_eq!(report.blobs_checked, expected.len() as u64);
        let mut bytes = 0;
        for d in &expected {
            bytes += layout.store().stat(d).await.unwrap().unwrap();
        }
        assert_eq!(report.bytes_checked, bytes);

        let events = events.lock().unwrap().clone();
        let done: Vec<&Digest> = events
            .iter()
            .filter_map(|e| match e {
                Event::Done {
                    operation: Operation::Fsck,
                    digest,
                    ..
                } => Some(digest),
                _ => None,
            })
            .collect();
        assert_eq!(done.len(), expected.len(), "each blob finished once");
        assert_eq!(
            done.iter().copied().collect::<HashSet<_>>(),
            expected.iter().collect()
        );
        assert!(
            events.iter().any(
                |e| matches!(e, Event::Skipped { digest, .. } if *digest == digest_of(&a.manifest))
            ),
            "the second reach of a manifest is skipped"
        );
        // With one thread at a time, the same answer.
        let one = layout
            .fsck(&FsckOptions::new().with_concurrency(1))
            .await
            .unwrap();
        assert!(one.is_clean());
        assert_eq!(one.blobs_checked, report.blobs_checked);
    }
}

fn digest_of(d: &ocikit_digest::oci_spec::image::Descriptor) -> Digest {
    digest(d)
}

#[tokio::test]
async fn missing_layer_corrupt_config_and_wrong_manifest_size_in_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::open(dir.path()).await.unwrap();
    let layout = Layout::create(store.clone()).await.unwrap();
    let a = image(&layout, "a").await;
    let b = image(&layout, "b").await;
    let c = image(&layout, "c").await;
    // a: a layer is gone. b: its config rotted on disk. c: index.json gives the wrong size.
    layout.store().delete(&digest(&a.layers[1])).await.unwrap();
    let path = store.blob_path(&digest(&b.config));
    let mut rotten = std::fs::read(&path).unwrap();
    rotten[10] ^= 0x01; // bit rot: same size, other content
    std::fs::write(&path, &rotten).unwrap();
    let mut c_entry = desc_json(&c.manifest);
    c_entry["size"] = json!(c.manifest.size() + 3);
    c_entry["annotations"] = json!({"org.opencontainers.image.ref.name": "c"});
    let tagged = |d, t: &str| {
        let mut e = desc_json(d);
        e["annotations"] = json!({"org.opencontainers.image.ref.name": t});
        e
    };
    write_index(
        &layout,
        &json!({"schemaVersion": 2, "manifests": [tagged(&a.manifest, "a"), tagged(&b.manifest, "b"), c_entry]}),
    )
    .await;

    let report = layout.fsck(&FsckOptions::new()).await.unwrap();
    let found = kinds(&report);
    assert_eq!(found.len(), 3, "{:#?}", report.problems);
    assert!(found.contains(&(digest(&a.layers[1]), ProblemKind::Missing)));
    assert!(found.contains(&(
        digest(&b.config),
        ProblemKind::DigestMismatch {
            actual: Digest::sha256(&rotten)
        }
    )));
    assert!(found.contains(&(
        digest(&c.manifest),
        ProblemKind::SizeMismatch {
            expected: c.manifest.size() + 3,
            actual: c.manifest.size()
        }
    )));
    let missing = report
        .problems
        .iter()
        .find(|p| p.kind == ProblemKind::Missing)
        .unwrap();
    assert_eq!(missing.path, "index.json manifests[0] (a) > layers[1]");
    let rotten = report
        .problems
        .iter()
        .find(|p| p.digest == digest(&b.config))
        .unwrap();
    assert_eq!(rotten.path, "index.json manifests[1] (b) > config");
    // The healthy blobs were all still hashed.
    assert!(report.blobs_checked >= 7, "{}", report.blobs_checked);
}

#[tokio::test]
async fn memory_store_damage_is_reported_too() {
    for (store, _guard) in stores().await {
        let layout = Layout::create(store).await.unwrap();
        let a = image(&layout, "a").await;
        layout.store().delete(&digest(&a.layers[0])).await.unwrap();
        layout.store().delete(&digest(&a.config)).await.unwrap();
        // An artifact whose subject is gone.
        let b = image(&layout, "b").await;
        layout
            .attach(&b.manifest, &Artifact::new(SIGNATURE))
            .await
            .unwrap();
        layout.remove_tag("b").await.unwrap();
        layout.store().delete(&digest(&b.manifest)).await.unwrap();
        let report = layout.fsck(&FsckOptions::new()).await.unwrap();
        let found = kinds(&report);
        assert!(found.contains(&(digest(&a.layers[0]), ProblemKind::Missing)));
        assert!(found.contains(&(digest(&a.config), ProblemKind::Missing)));
        assert!(found.contains(&(digest(&b.manifest), ProblemKind::DanglingSubject)));
        assert_eq!(found.len(), 3, "{:#?}", report.problems);
    }
}

#[cfg(feature = "gzip")]
#[tokio::test]
async fn diff_id_checks_catch_wrong_configs_and_bad_layers() {
    for (store, _guard) in stores().await {
        let layout = Layout::create(store).await.unwrap();
        // The config claims the top layer's diffID is the digest of something else.
        let good = image(&layout, "good").await;
        let wrong_id = Digest::sha256(b"not the layer");
        let bad = image_with(
            &layout,
            "bad",
            Some(vec![good.diff_ids[0].to_string(), wrong_id.to_string()]),
        )
        .await;
        layout.set_tag("bad", &bad.manifest).await.unwrap();
        // Without diffID checks, everything hashes fine.
        assert!(layout.fsck(&FsckOptions::new()).await.unwrap().is_clean());
        let report = layout
            .fsck(&FsckOptions::new().with_diff_ids(true))
            .await
            .unwrap();
        // The base layer of `bad` differs from `good`'s (seeded), so it mismatches too.
        let top = report
            .problems
            .iter()
            .find(|p| p.digest == digest(&bad.layers[1]))
            .unwrap();
        assert_eq!(
            top.kind,
            ProblemKind::DiffIdMismatch {
                expected: wrong_id.clone(),
                actual: bad.diff_ids[1].clone()
            }
        );
        assert_eq!(top.path, "index.json manifests[1] (bad) > layers[1]");
        assert!(
            report
                .problems
                .iter()
                .all(|p| !good.blobs().contains(&p.digest)),
            "the good image is clean: {:#?}",
            report.problems
        );

        // A config listing too few diffIDs, and a "gzip" layer that is not gzip.
        let not_gzip = layout.put_blob(TAR_GZIP, b"plain bytes").await.unwrap();
        let config = json!({"architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [Digest::sha256(b"plain bytes").to_string()]}});
        let config = layout
            .put_blob(
                "application/vnd.oci.image.config.v1+json",
                &serde_json::to_vec(&config).unwrap(),
            )
            .await
            .unwrap();
        let m = json!({"schemaVersion": 2, "mediaType": MANIFEST, "config": desc_json(&config),
            "layers": [desc_json(&not_gzip)]});
        let m = layout
            .put_blob(MANIFEST, &serde_json::to_vec(&m).unwrap())
            .await
            .unwrap();
        layout.set_tag("undecodable", &m).await.unwrap();
        let m2 = json!({"schemaVersion": 2, "mediaType": MANIFEST, "config": desc_json(&config),
            "layers": [desc_json(&good.layers[0]), desc_json(&good.layers[1])]});
        let m2 = layout
            .put_blob(MANIFEST, &serde_json::to_vec(&m2).unwrap())
            .await
            .unwrap();
        layout.set_tag("short", &m2).await.unwrap();
        let report = layout
            .fsck(&FsckOptions::new().with_diff_ids(true))
            .await
            .unwrap();
        assert!(
            report.problems.iter().any(|p| p.digest == digest(&not_gzip)
                && matches!(p.kind, ProblemKind::Undecodable { .. }))
        );
        assert!(report.problems.iter().any(|p| p.digest == digest(&config)
            && p.kind
                == ProblemKind::DiffIdCount {
                    diff_ids: 1,
                    layers: 2
                }));
    }
}

#[cfg(feature = "gzip")]
#[tokio::test]
async fn invalid_documents_are_reported_and_the_walk_goes_on() {
    for (store, _guard) in stores().await {
        let layout = Layout::create(store).await.unwrap();
        let ok = image(&layout, "ok").await;
        let dup = layout
            .put_blob(
                MANIFEST,
                br#"{"schemaVersion":2,"schemaVersion":2,"config":{},"layers":[]}"#,
            )
            .await
            .unwrap();
        layout.set_tag("dup", &dup).await.unwrap();
        // A config of the image type that says rootfs.type "foo" (SPEC C-J08).
        let config = layout
            .put_blob(
                "application/vnd.oci.image.config.v1+json",
                br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"foo","diff_ids":[]}}"#,
            )
            .await
            .unwrap();
        let m = json!({"schemaVersion": 2, "mediaType": MANIFEST, "config": desc_json(&config), "layers": []});
        let m = layout
            .put_blob(MANIFEST, &serde_json::to_vec(&m).unwrap())
            .await
            .unwrap();
        layout.set_tag("foo", &m).await.unwrap();
        let report = layout
            .fsck(&FsckOptions::new().with_diff_ids(true))
            .await
            .unwrap();
        let found = kinds(&report);
        assert_eq!(found.len(), 2, "{:#?}", report.problems);
        assert!(report.problems.iter().any(|p| p.digest == digest(&dup)
            && matches!(&p.kind, ProblemKind::InvalidDocument { reason } if reason.contains("malformed JSON"))));
        assert!(report.problems.iter().any(|p| p.digest == digest(&config)
            && matches!(&p.kind, ProblemKind::InvalidDocument { reason } if reason.contains("rootfs.type"))));
        let _ = ok;
    }
}

#[tokio::test]
async fn large_blobs_are_streamed_with_progress_and_rot_at_the_end_is_found() {
    for (store, guard) in stores().await {
        let layout = Layout::create(store).await.unwrap();
        // 20 MiB of pseudo-random bytes as an opaque layer.
        let big = ocikit_testkit::prng::bytes(1, 20 << 20);
        let layer = layout
            .put_blob("application/vnd.example.data", &big)
            .await
            .unwrap();
        let config = layout
            .put_blob(crate::artifact::EMPTY, b"{}")
            .await
            .unwrap();
        let m = json!({"schemaVersion": 2, "mediaType": MANIFEST, "artifactType": "application/vnd.example",
            "config": desc_json(&config), "layers": [desc_json(&layer)]});
        let m = layout
            .put_blob(MANIFEST, &serde_json::to_vec(&m).unwrap())
            .await
            .unwrap();
        layout.set_tag("big", &m).await.unwrap();
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        let report = layout
            .fsck(
                &FsckOptions::new()
                    .with_progress(Progress::new(move |e| sink.lock().unwrap().push(e.clone()))),
            )
            .await
            .unwrap();
        assert!(report.is_clean(), "{:#?}", report.problems);
        assert_eq!(report.bytes_checked, (20 << 20) + 2 + m.size());
        let steps: Vec<u64> = events
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                Event::Progress { digest, bytes, .. } if *digest == digest_of(&layer) => {
                    Some(*bytes)
                }
                _ => None,
            })
            .collect();
        assert!(steps.len() >= 2, "{steps:?}");
        assert!(
            steps.windows(2).all(|w| w[0] < w[1]),
            "cumulative: {steps:?}"
        );

        if let Some(dir) = &guard {
            let fs = FsStore::open(dir.path().join("layout")).await.unwrap();
            let path = fs.blob_path(&digest_of(&layer));
            let mut bytes = std::fs::read(&path).unwrap();
            let last = bytes.len() - 1;
            bytes[last] ^= 0x80;
            std::fs::write(&path, &bytes).unwrap();
            let report = layout.fsck(&FsckOptions::new()).await.unwrap();
            assert_eq!(
                kinds(&report),
                [(
                    digest_of(&layer),
                    ProblemKind::DigestMismatch {
                        actual: Digest::sha256(&bytes)
                    }
                )]
            );
        }
    }
}

/// Every problem of `report` as `(digest, path, kind)`, sorted.
fn problems(report: &ocikit_layout::FsckReport) -> Vec<(Digest, String, ProblemKind)> {
    let mut all: Vec<_> = report
        .problems
        .iter()
        .map(|p| (p.digest.clone(), p.path.clone(), p.kind.clone()))
        .collect();
    all.sort_by(|a, b| (&a.1, a.0.to_string()).cmp(&(&b.1, b.0.to_string())));
    all
}

/// `count` tagged images `img-0`, `img-1`... (two layers, a config and a manifest each), as
/// entries 0, 1... of `index.json`.
async fn many_images(layout: &Layout, count: usize) -> Vec<crate::artifact::Image> {
    let mut all = Vec::new();
    for i in 0..count {
        all.push(image(layout, &format!("img-{i}")).await);
    }
    all
}

fn entry(i: usize) -> String {
    format!("index.json manifests[{i}] (img-{i})")
}

#[tokio::test]
async fn many_blobs_missing_among_them_are_all_reported_on_every_store() {
    for (store, _guard) in stores().await {
        let layout = Layout::create(store).await.unwrap();
        let images = many_images(&layout, 24).await;
        let gone = [
            (
                3,
                digest(&images[3].layers[0]),
                format!("{} > layers[0]", entry(3)),
            ),
            (
                8,
                digest(&images[8].layers[1]),
                format!("{} > layers[1]", entry(8)),
            ),
            (
                12,
                digest(&images[12].config),
                format!("{} > config", entry(12)),
            ),
            (19, digest(&images[19].manifest), entry(19)),
            (
                23,
                digest(&images[23].layers[1]),
                format!("{} > layers[1]", entry(23)),
            ),
        ];
        for (_, d, _) in &gone {
            assert!(layout.store().delete(d).await.unwrap());
        }
        let mut expected: Vec<_> = gone
            .iter()
            .map(|(_, d, path)| (d.clone(), path.clone(), ProblemKind::Missing))
            .collect();
        expected.sort_by(|a, b| (&a.1, a.0.to_string()).cmp(&(&b.1, b.0.to_string())));
        let report = layout.fsck(&FsckOptions::new()).await.unwrap();
        assert_eq!(problems(&report), expected);
        // 96 blobs; 5 are gone and the missing manifest's 3 were never reached.
        assert_eq!(report.blobs_checked, 96 - 5 - 3);
        let one = layout
            .fsck(&FsckOptions::new().with_concurrency(1))
            .await
            .unwrap();
        assert_eq!(one, report, "one blob at a time finds the same");
    }
}

#[tokio::test]
async fn corrupt_and_truncated_files_among_many_are_all_reported() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::open(dir.path()).await.unwrap();
    let layout = Layout::create(store.clone()).await.unwrap();
    let images = many_images(&layout, 24).await;
    let flip = |d: &ocikit_digest::oci_spec::image::Descriptor| {
        let path = store.blob_path(&digest(d));
        let mut bytes = std::fs::read(&path).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x20;
        std::fs::write(&path, &bytes).unwrap();
        Digest::sha256(&bytes)
    };
    let cut = |d: &ocikit_digest::oci_spec::image::Descriptor| {
        let path = store.blob_path(&digest(d));
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.truncate(bytes.len() - 5);
        std::fs::write(&path, &bytes).unwrap();
        (Digest::sha256(&bytes), bytes.len() as u64)
    };
    let mut expected = Vec::new();
    for (i, layer) in [(2, 0), (6, 1), (15, 0)] {
        let actual = flip(&images[i].layers[layer]);
        expected.push((
            digest(&images[i].layers[layer]),
            format!("{} > layers[{layer}]", entry(i)),
            ProblemKind::DigestMismatch { actual },
        ));
    }
    let actual = flip(&images[9].config);
    expected.push((
        digest(&images[9].config),
        format!("{} > config", entry(9)),
        ProblemKind::DigestMismatch { actual },
    ));
    // A manifest that rotted: reported, and what it references is not reached.
    let actual = flip(&images[11].manifest);
    expected.push((
        digest(&images[11].manifest),
        entry(11),
        ProblemKind::DigestMismatch { actual },
    ));
    // A truncated layer has the wrong size and the wrong content.
    let (actual, short) = cut(&images[17].layers[1]);
    let path = format!("{} > layers[1]", entry(17));
    let declared = images[17].layers[1].size();
    expected.push((
        digest(&images[17].layers[1]),
        path.clone(),
        ProblemKind::SizeMismatch {
            expected: declared,
            actual: short,
        },
    ));
    expected.push((
        digest(&images[17].layers[1]),
        path,
        ProblemKind::DigestMismatch { actual },
    ));
    // A truncated config is hashed like a layer (and, with diffID checks, refused by its
    // size unread); a truncated manifest is refused by its size.
    let (actual, short) = cut(&images[20].config);
    expected.push((
        digest(&images[20].config),
        format!("{} > config", entry(20)),
        ProblemKind::SizeMismatch {
            expected: images[20].config.size(),
            actual: short,
        },
    ));
    let hashed_config = (
        digest(&images[20].config),
        format!("{} > config", entry(20)),
        ProblemKind::DigestMismatch { actual },
    );
    let (_, short) = cut(&images[22].manifest);
    expected.push((
        digest(&images[22].manifest),
        entry(22),
        ProblemKind::SizeMismatch {
            expected: images[22].manifest.size(),
            actual: short,
        },
    ));
    let mut hashed = expected.clone();
    hashed.push(hashed_config);
    hashed.sort_by(|a, b| (&a.1, a.0.to_string()).cmp(&(&b.1, b.0.to_string())));

    let report = layout.fsck(&FsckOptions::new()).await.unwrap();
    assert_eq!(problems(&report), hashed);
    // 96 blobs; the two broken manifests and their 2 * 3 blobs are not counted.
    assert_eq!(report.blobs_checked, 96 - 2 - 6);
    let one = layout
        .fsck(&FsckOptions::new().with_concurrency(1))
        .await
        .unwrap();
    assert_eq!(one, report, "one blob at a time finds the same");
    // With diffID checks the same damage is found (and the corrupt layers' content too).
    let with_ids = layout
        .fsck(&FsckOptions::new().with_diff_ids(true))
        .await
        .unwrap();
    for problem in &expected {
        assert!(
            problems(&with_ids).contains(problem),
            "{problem:?} not in {:#?}",
            with_ids.problems
        );
    }
}

// SPEC C-L06: fsck never reads through a blob that is a symlink, and a directory or a FIFO
// where a blob should be is reported without hanging.
#[cfg(feature = "gzip")]
#[tokio::test]
async fn blobs_that_are_not_regular_files_are_reported_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::open(dir.path().join("layout")).await.unwrap();
    let layout = Layout::create(store.clone()).await.unwrap();
    let images = many_images(&layout, 6).await;
    // Symlinks to files holding exactly the right bytes: following them would pass.
    let mut replaced = Vec::new();
    for (n, d) in [&images[1].layers[0], &images[4].manifest]
        .into_iter()
        .enumerate()
    {
        let path = store.blob_path(&digest(d));
        let copy = dir.path().join(format!("outside-{n}"));
        std::fs::rename(&path, &copy).unwrap();
        std::os::unix::fs::symlink(&copy, &path).unwrap();
        replaced.push(digest(d));
    }
    let as_dir = store.blob_path(&digest(&images[2].layers[1]));
    std::fs::remove_file(&as_dir).unwrap();
    std::fs::create_dir(&as_dir).unwrap();
    replaced.push(digest(&images[2].layers[1]));
    let fifo = store.blob_path(&digest(&images[3].config));
    std::fs::remove_file(&fifo).unwrap();
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    replaced.push(digest(&images[3].config));

    for options in [
        FsckOptions::new(),
        FsckOptions::new().with_concurrency(1),
        FsckOptions::new().with_diff_ids(true),
    ] {
        let report =
            tokio::time::timeout(std::time::Duration::from_secs(20), layout.fsck(&options))
                .await
                .expect("fsck must not block on a FIFO")
                .unwrap();
        let mut found: Vec<Digest> = report.problems.iter().map(|p| p.digest.clone()).collect();
        found.sort();
        let mut want = replaced.clone();
        want.sort();
        assert_eq!(found, want, "{:#?}", report.problems);
        for p in &report.problems {
            assert!(
                matches!(&p.kind, ProblemKind::Unreadable { reason } if reason.contains("not a regular file")),
                "{p}"
            );
        }
    }
}

/// Writes `bytes` as a blob under `foo:` (a well-formed digest of an algorithm nobody
/// registered), as another tool could, straight into the layout directory at `root`.
fn put_foreign(root: &std::path::Path, bytes: &[u8]) -> Digest {
    let encoded = Digest::sha256(bytes).encoded().to_string();
    let dir = root.join("blobs").join("foo");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(&encoded), bytes).unwrap();
    Digest::parse(&format!("foo:{encoded}")).unwrap()
}

fn foreign_desc(media_type: &str, digest: &Digest, size: usize) -> serde_json::Value {
    json!({"mediaType": media_type, "digest": digest.to_string(), "size": size})
}

/// A layout holding one sound image and three that reach content under `foo:`: the
/// manifest itself, the config, a layer. Returns the layout, the foreign digests
/// (manifest, config, layer) and the descriptors of the three images.
async fn foreign_layout(
    root: &std::path::Path,
    store_of: impl Fn(FsStore) -> Box<dyn ocikit_store::Store>,
) -> (
    Layout,
    [Digest; 3],
    Vec<ocikit_digest::oci_spec::image::Descriptor>,
) {
    let layout = Layout::create(store_of(FsStore::open(root).await.unwrap()))
        .await
        .unwrap();
    let sound = image(&layout, "sound").await;
    let manifest_bytes = layout.read_blob(&sound.manifest).await.unwrap();
    let config_bytes = layout.read_blob(&sound.config).await.unwrap();
    let top_bytes = layout.read_blob(&sound.layers[1]).await.unwrap();
    let foreign_manifest = put_foreign(root, &manifest_bytes);
    let foreign_config = put_foreign(root, &config_bytes);
    let foreign_layer = put_foreign(root, &top_bytes);
    let with = |config: serde_json::Value, layers: Vec<serde_json::Value>| {
        serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": MANIFEST,
            "config": config, "layers": layers}))
        .unwrap()
    };
    let config_json = desc_json(&sound.config);
    let layers_json: Vec<_> = sound.layers.iter().map(desc_json).collect();
    let by_config = with(
        foreign_desc(
            "application/vnd.oci.image.config.v1+json",
            &foreign_config,
            config_bytes.len(),
        ),
        layers_json.clone(),
    );
    let by_config = layout.put_blob(MANIFEST, &by_config).await.unwrap();
    let by_layer = with(
        config_json,
        vec![
            layers_json[0].clone(),
            foreign_desc(
                "application/vnd.oci.image.layer.v1.tar",
                &foreign_layer,
                top_bytes.len(),
            ),
        ],
    );
    let by_layer = layout.put_blob(MANIFEST, &by_layer).await.unwrap();
    let mut index = serde_json::from_slice::<serde_json::Value>(
        &std::fs::read(root.join("index.json")).unwrap(),
    )
    .unwrap();
    let tagged = |d: serde_json::Value, tag: &str| {
        let mut d = d;
        d["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
        d
    };
    let by_manifest = foreign_desc(MANIFEST, &foreign_manifest, manifest_bytes.len());
    for (d, tag) in [
        (by_manifest.clone(), "by-manifest"),
        (desc_json(&by_config), "by-config"),
        (desc_json(&by_layer), "by-layer"),
    ] {
        index["manifests"]
            .as_array_mut()
            .unwrap()
            .push(tagged(d, tag));
    }
    write_index(&layout, &index).await;
    let by_manifest: ocikit_digest::oci_spec::image::Descriptor =
        serde_json::from_value(by_manifest).unwrap();
    (
        layout,
        [foreign_manifest, foreign_config, foreign_layer],
        vec![by_manifest, by_config, by_layer],
    )
}

#[cfg(feature = "gzip")]
#[tokio::test]
async fn content_under_an_unregistered_algorithm_is_reported_unverifiable() {
    // Local files (one worker pool) and a streamed store over the same directory.
    let stores: [fn(FsStore) -> Box<dyn ocikit_store::Store>; 2] = [
        |fs| Box::new(fs),
        |fs| {
            Box::new(ocikit_store::conformance::Intercept::new(fs, |_, blob| {
                blob
            }))
        },
    ];
    for store_of in stores {
        for diff_ids in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let (layout, [manifest, config, layer], _) =
                foreign_layout(&dir.path().join("layout"), store_of).await;
            let report = layout
                .fsck(&FsckOptions::new().with_diff_ids(diff_ids))
                .await
                .unwrap();
            let mut found = kinds(&report);
            found.sort_by_key(|(d, _)| d.to_string());
            let mut expected = vec![
                (manifest.clone(), ProblemKind::Unverifiable),
                (config.clone(), ProblemKind::Unverifiable),
                (layer.clone(), ProblemKind::Unverifiable),
            ];
            expected.sort_by_key(|(d, _)| d.to_string());
            assert_eq!(
                found, expected,
                "diff_ids {diff_ids}: {:#?}",
                report.problems
            );
        }
    }
}

#[tokio::test]
async fn reads_refuse_content_under_an_unregistered_algorithm() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("layout");
    let (layout, [manifest, config, layer], images) =
        foreign_layout(&root, |fs| Box::new(fs)).await;
    let unverifiable = |result: ocikit_layout::Result<()>, digest: &Digest| match result {
        Err(ocikit_layout::Error::Unverifiable { digest: named }) => assert_eq!(&named, digest),
        other => panic!("expected {digest} refused as unverifiable, got {other:?}"),
    };
    let by_manifest = &images[0];
    unverifiable(layout.read_blob(by_manifest).await.map(drop), &manifest);
    unverifiable(layout.read_document(by_manifest).await.map(drop), &manifest);
    unverifiable(layout.set_tag("again", by_manifest).await, &manifest);
    let platform =
        ocikit_layout::PlatformQuery::new(&ocikit_digest::platform::parse("linux/amd64").unwrap());
    let options = ocikit_layout::UnpackOptions::new().with_platform(platform);
    for (image, digest) in images.iter().zip([&manifest, &config, &layer]) {
        let out = tempfile::tempdir().unwrap();
        let root = out.path().join("root");
        let result = ocikit_layout::unpack(&layout, image, &root, &options).await;
        unverifiable(result.map(drop), digest);
        assert!(!root.exists(), "{digest}: the root was touched");
    }
    let Ok(ocikit_layout::Document::Manifest {
        manifest: by_config,
        ..
    }) = layout.read_document(&images[1]).await
    else {
        panic!("the manifest naming a foreign config is itself sound");
    };
    unverifiable(
        layout.read_image_config(by_config.config()).await.map(drop),
        &config,
    );
    assert!(layout.resolve("again").await.is_err(), "the tag was set");
    // The same bytes under their sha256 digest read as ever.
    assert!(layout.resolve("sound").await.is_ok());
    let sound = layout.resolve("sound").await.unwrap();
    layout.read_document(&sound).await.unwrap();
}

#[cfg(feature = "gzip")]
#[tokio::test]
async fn layers_whose_diff_id_cannot_be_computed_are_reported() {
    for (store, _guard) in stores().await {
        let layout = Layout::create(store).await.unwrap();
        let sound = image(&layout, "sound").await;
        let odd_type = "application/vnd.example.layer.v1+squashfs";
        let odd = layout.put_blob(odd_type, b"hsqs not a tar").await.unwrap();
        let config = json!({"architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [
                sound.diff_ids[0].to_string(), Digest::sha256(b"hsqs not a tar").to_string()]}});
        let config = layout
            .put_blob(CONFIG, &serde_json::to_vec(&config).unwrap())
            .await
            .unwrap();
        let manifest = json!({"schemaVersion": 2, "mediaType": MANIFEST,
            "config": desc_json(&config),
            "layers": [desc_json(&sound.layers[0]), desc_json(&odd)]});
        let manifest = layout
            .put_blob(MANIFEST, &serde_json::to_vec(&manifest).unwrap())
            .await
            .unwrap();
        layout.set_tag("odd", &manifest).await.unwrap();
        // Without diffIDs, nothing is wrong: every blob hashes to its digest.
        let report = layout.fsck(&FsckOptions::new()).await.unwrap();
        assert!(report.is_clean(), "{:#?}", report.problems);
        let report = layout
            .fsck(&FsckOptions::new().with_diff_ids(true))
            .await
            .unwrap();
        assert_eq!(
            problems(&report),
            [(
                digest(&odd),
                "index.json manifests[1] (odd) > layers[1]".to_string(),
                ProblemKind::UndecodableMediaType {
                    media_type: odd_type.into()
                }
            )]
        );
    }
}
