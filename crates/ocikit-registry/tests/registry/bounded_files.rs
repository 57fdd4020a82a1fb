//! A registry on filesystem stores holds as many files as its content needs, not as many as
//! its traffic made: pushing and deleting an image over and over leaves no lock files,
//! session documents or directories behind.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ocikit_registry::{Config, GcOptions, Registry};
use ocikit_store::FsStore;
use reqwest::{Method, StatusCode};

use crate::*;

/// Every file and directory under `root`, with the paths of the files for a failure message.
fn count_entries(root: &Path) -> (usize, Vec<String>) {
    let mut count = 0;
    let mut files = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            count += 1;
            if entry.file_type().unwrap().is_dir() {
                pending.push(entry.path());
            } else {
                let path = entry.path();
                files.push(path.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    files.sort();
    (count, files)
}

/// Pushes an image whose content depends on `i` (a layer, a config, a manifest tagged
/// `t<i>`), then deletes all of it.
async fn push_and_delete(s: &Server, i: usize) {
    let layer = format!("layer {i}").into_bytes();
    let config = format!("{{\"n\":{i}}}").into_bytes();
    let l = s.push_blob("app", &layer).await;
    let c = s.push_blob("app", &config).await;
    let manifest = image_manifest((&c, config.len()), &[(&l, layer.len())]);
    let digest = ocikit_digest::Digest::sha256(&manifest);
    let resp = s
        .put_manifest("app", &format!("t{i}"), MANIFEST, &manifest)
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let resp = s
        .send(Method::DELETE, &format!("/v2/app/manifests/{digest}"))
        .await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    for blob in [&l, &c] {
        let resp = s
            .send(Method::DELETE, &format!("/v2/app/blobs/{blob}"))
            .await;
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_push_and_delete_cycles_leave_the_file_count_flat() {
    // On a tmpfs where there is one: the count is the same on any filesystem, and fsync
    // costs nothing there.
    let shm = Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::tempdir_in(shm).unwrap()
    } else {
        tempfile::tempdir().unwrap()
    };
    let store = FsStore::open(dir.path().join("content")).await.unwrap();
    let uploads = FsStore::open(dir.path().join("uploads")).await.unwrap();
    let registry = Registry::new(Arc::new(store), Arc::new(uploads), Config::default()).unwrap();
    let s = Server::start(registry).await;
    let gc = GcOptions::new().grace(Duration::ZERO);

    // Warm up: every directory the repository needs exists after the first cycles.
    for i in 0..20 {
        push_and_delete(&s, i).await;
    }
    s.registry.gc(&gc).await.unwrap();
    let (before, files_before) = count_entries(dir.path());

    for i in 20..1_020 {
        push_and_delete(&s, i).await;
        if i % 250 == 0 {
            s.registry.gc(&gc).await.unwrap();
        }
    }
    s.registry.gc(&gc).await.unwrap();
    let (after, files_after) = count_entries(dir.path());
    let new: Vec<&String> = files_after
        .iter()
        .filter(|f| !files_before.contains(f))
        .take(10)
        .collect();
    assert_eq!(
        after, before,
        "entries grew with traffic; new files include {new:?}"
    );
    s.stop().await;
}
