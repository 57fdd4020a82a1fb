//! The S3 backend: the conformance suite against a real S3 server (moto, on 127.0.0.1) and
//! against `object_store`'s in-memory backend, plus what is particular to S3: the key layout
//! under a prefix, multipart uploads and their cleanup, stray objects, shared buckets,
//! versioned buckets, backpressure.
//!
//! The moto tests need `moto_server` on `PATH` (`pip install 'moto[server]'`); the server is
//! `ocikit_testkit::moto`. Without it they print "skipping" and pass, except under CI, where
//! they fail.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{GetOptions, ObjectStore, PutOptions, PutPayload};
use ocikit_digest::{Digest, Hasher};
use ocikit_store::s3::{MIN_PART_SIZE, S3Config};
use ocikit_store::{DocumentKey, Error, Precondition, S3Store, Store, StoreExt};
use ocikit_testkit::moto::{self, MotoServer};
use ocikit_testkit::prng::bytes;
use tokio::io::AsyncWriteExt;

// ---------------------------------------------------------------------------------------
// The moto server
// ---------------------------------------------------------------------------------------

/// The server all tests of this process share (each test uses buckets of its own), or `None`
/// to skip.
fn moto() -> Option<&'static MotoServer> {
    moto::shared()
}

/// The configuration of a store in `bucket` on moto, under `prefix`.
fn config(server: &MotoServer, bucket: &str, prefix: &str) -> S3Config {
    S3Config::new(bucket)
        .with_endpoint(server.endpoint())
        .with_credentials(moto::ACCESS_KEY, moto::SECRET_KEY)
        .with_allow_http(true)
        .with_prefix(prefix)
}

/// A store in a fresh bucket under the prefix `layout`, with its bucket's name.
fn moto_store() -> Option<(S3Store, String)> {
    let server = moto()?;
    let bucket = server.bucket();
    let store = S3Store::new(config(server, &bucket, "layout")).unwrap();
    Some((store, bucket))
}

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

async fn put_chunked(store: &S3Store, data: &[u8], chunk: usize) -> Digest {
    let digest = Digest::sha256(data);
    let mut writer = store.writer().await.unwrap();
    for piece in data.chunks(chunk) {
        writer.write_all(piece).await.unwrap();
    }
    writer.commit(&digest, data.len() as u64).await.unwrap();
    digest
}

async fn listed(store: &S3Store) -> Vec<Digest> {
    let mut all: Vec<Digest> = store.list().try_collect().await.unwrap();
    all.sort();
    all
}

async fn objects_under(store: &Arc<dyn ObjectStore>, prefix: &str) -> Vec<String> {
    let prefix = Path::from(prefix);
    let mut keys: Vec<String> = store
        .list(Some(&prefix))
        .map_ok(|meta| meta.location.to_string())
        .try_collect()
        .await
        .unwrap();
    keys.sort();
    keys
}

async fn put_raw(store: &Arc<dyn ObjectStore>, key: &str, data: &'static [u8]) {
    store
        .put_opts(
            &Path::from(key),
            PutPayload::from_static(data),
            PutOptions::default(),
        )
        .await
        .unwrap();
}

/// Waits up to 10 s for the bucket's multipart uploads to be gone (dropped writers abort
/// theirs in the background).
async fn assert_no_pending_uploads(server: &MotoServer, bucket: &str) {
    ocikit_testkit::eventually(
        "no multipart uploads left behind",
        Duration::from_secs(10),
        || async { server.pending_uploads(bucket).is_empty().then_some(()) },
    )
    .await;
}

// ---------------------------------------------------------------------------------------
// The conformance suite
// ---------------------------------------------------------------------------------------

/// Against moto: one test per check, each on a fresh bucket (skipped without moto, failing
/// under `CI=true`).
#[cfg(feature = "conformance")]
mod conformance_on_moto {
    ocikit_store::conformance_tests!(async {
        super::moto_store().map(|(store, bucket)| ocikit_store::conformance::Guarded {
            store,
            guard: bucket,
        })
    });
}

/// Against `object_store`'s in-memory backend: the same code paths without a server, so they
/// run everywhere.
#[cfg(feature = "conformance")]
mod conformance_in_memory {
    ocikit_store::conformance_tests!(async {
        let inner: std::sync::Arc<dyn object_store::ObjectStore> =
            std::sync::Arc::new(object_store::memory::InMemory::new());
        ocikit_store::S3Store::from_object_store(inner, "store").unwrap()
    });
}

// ---------------------------------------------------------------------------------------
// S3-specific behaviour, against moto
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn keys_follow_the_layout_under_the_prefix() {
    let Some((store, _)) = moto_store() else {
        return;
    };
    let raw = store.object_store().clone();
    assert_eq!(store.prefix(), "layout");
    let digest = store.put_bytes(b"hello").await.unwrap();
    let key = DocumentKey::new("index.json").unwrap();
    store
        .write_document(&key, "{}".into(), Precondition::MustNotExist)
        .await
        .unwrap();

    assert_eq!(
        objects_under(&raw, "").await,
        [
            format!("layout/blobs/sha256/{}", digest.encoded()),
            "layout/index.json".to_string()
        ]
    );
    assert_eq!(
        store.blob_key(&digest).unwrap().as_ref(),
        format!("layout/blobs/sha256/{}", digest.encoded())
    );
    assert_eq!(
        store.document_key(&key).unwrap().as_ref(),
        "layout/index.json"
    );
    let blob = raw
        .get_opts(&store.blob_key(&digest).unwrap(), GetOptions::new())
        .await
        .unwrap();
    assert_eq!(blob.bytes().await.unwrap(), &b"hello"[..]);
}

#[tokio::test]
async fn multipart_blobs_stream_and_leave_no_temp_objects() {
    let Some(server) = moto() else { return };
    let bucket = server.bucket();
    let store = S3Store::new(config(server, &bucket, "layout"))
        .unwrap()
        .with_part_size(MIN_PART_SIZE)
        .with_upload_concurrency(3);
    // 40 MiB and a bit: eight whole parts and a short last one.
    let data = bytes(1, (40 << 20) + 12_345);
    let digest = put_chunked(&store, &data, 64 << 10).await;

    assert_eq!(store.stat(&digest).await.unwrap(), Some(data.len() as u64));
    assert_eq!(
        store.get_bytes(&digest, u64::MAX).await.unwrap().unwrap(),
        &data[..]
    );
    // A range across a part boundary, and one running past the end.
    let boundary = MIN_PART_SIZE as u64;
    let blob = store
        .open(&digest, Some(boundary - 10..boundary + 10))
        .await
        .unwrap();
    let part: Vec<Bytes> = blob.into_stream().try_collect().await.unwrap();
    assert_eq!(
        part.concat(),
        &data[boundary as usize - 10..boundary as usize + 10]
    );
    let end = data.len() as u64;
    let blob = store.open(&digest, Some(end - 5..end + 100)).await.unwrap();
    assert_eq!((blob.range(), blob.size()), (end - 5..end, end));

    // Publishing again (deduplication) and the temp objects: nothing is left.
    put_chunked(&store, &data, 1 << 20).await;
    let raw = store.object_store().clone();
    assert_eq!(
        objects_under(&raw, "layout/.ocikit").await,
        Vec::<String>::new()
    );
    assert_eq!(listed(&store).await, [digest]);
    assert_no_pending_uploads(server, &bucket).await;
}

#[tokio::test]
async fn blobs_over_the_copy_limit_are_copied_through_the_client() {
    let Some(server) = moto() else { return };
    let bucket = server.bucket();
    let store = S3Store::new(config(server, &bucket, "layout"))
        .unwrap()
        .with_part_size(MIN_PART_SIZE)
        .with_server_copy_limit(0);
    let data = bytes(2, (12 << 20) + 1);
    let digest = put_chunked(&store, &data, 100_000).await;
    assert_eq!(
        store.get_bytes(&digest, u64::MAX).await.unwrap().unwrap(),
        &data[..]
    );
    let raw = store.object_store().clone();
    assert_eq!(
        objects_under(&raw, "layout/.ocikit").await,
        Vec::<String>::new()
    );
    assert_no_pending_uploads(server, &bucket).await;
}

#[tokio::test]
async fn failed_aborted_and_dropped_multipart_writers_leave_nothing() {
    let Some(server) = moto() else { return };
    let bucket = server.bucket();
    let store = S3Store::new(config(server, &bucket, "layout"))
        .unwrap()
        .with_part_size(MIN_PART_SIZE);
    let data = bytes(3, (11 << 20) + 7);
    let digest = Digest::sha256(&data);

    let mut writer = store.writer().await.unwrap();
    writer.write_all(&data).await.unwrap();
    writer.abort().await.unwrap();

    let mut writer = store.writer().await.unwrap();
    writer.write_all(&data).await.unwrap();
    drop(writer);

    let mut writer = store.writer().await.unwrap();
    writer.write_all(&data).await.unwrap();
    let wrong = Digest::sha256(b"something else");
    assert!(matches!(
        writer.commit(&wrong, data.len() as u64).await,
        Err(Error::DigestMismatch { .. })
    ));

    assert_eq!(store.stat(&digest).await.unwrap(), None);
    assert_eq!(store.stat(&wrong).await.unwrap(), None);
    assert!(listed(&store).await.is_empty());
    assert!(store.list_documents("").await.unwrap().is_empty());
    let raw = store.object_store().clone();
    assert_eq!(objects_under(&raw, "").await, Vec::<String>::new());
    assert_no_pending_uploads(server, &bucket).await;
}

#[tokio::test]
async fn stray_objects_are_never_blobs_or_documents() {
    let Some((store, _)) = moto_store() else {
        return;
    };
    let raw = store.object_store().clone();
    let digest = store.put_bytes(b"real").await.unwrap();
    let valid = Digest::sha256(b"elsewhere").encoded().to_string();
    for key in [
        "layout/.ocikit/tmp/blob-123".to_string(),
        "layout/.ocikit/locks/x".to_string(),
        "layout/blobs/README".to_string(),
        "layout/blobs/sha256/not-a-digest".to_string(),
        format!("layout/blobs/sha256/{valid}/nested"),
        format!("layout/blobs/SHA256/{valid}"),
        format!("layout/blobs/sha256/{}", valid.to_uppercase()),
        "layout/.hidden".to_string(),
        "layout/bad key".to_string(),
        "outside/blobs/sha256/0000".to_string(),
        "outside.json".to_string(),
    ] {
        put_raw(&raw, &key, b"stray").await;
    }
    assert_eq!(listed(&store).await, [digest]);
    assert!(store.list_documents("").await.unwrap().is_empty());
    assert!(store.list_documents("blobs").await.unwrap().is_empty());
    assert!(store.list_documents(".ocikit").await.unwrap().is_empty());
}

#[tokio::test]
async fn stores_sharing_a_bucket_are_independent() {
    let Some(server) = moto() else { return };
    let bucket = server.bucket();
    let a = S3Store::new(config(server, &bucket, "/team/a/")).unwrap();
    let b = S3Store::new(config(server, &bucket, "team/b")).unwrap();
    assert_eq!(a.prefix(), "team/a");
    let key = DocumentKey::new("index.json").unwrap();

    let in_a = a.put_bytes(b"a").await.unwrap();
    let in_b = b.put_bytes(b"b").await.unwrap();
    a.write_document(&key, "a".into(), Precondition::MustNotExist)
        .await
        .unwrap();
    // The same key in the other store does not exist yet.
    b.write_document(&key, "b".into(), Precondition::MustNotExist)
        .await
        .unwrap();

    assert_eq!(listed(&a).await, std::slice::from_ref(&in_a));
    assert_eq!(listed(&b).await, std::slice::from_ref(&in_b));
    assert_eq!(b.stat(&in_a).await.unwrap(), None);
    assert_eq!(
        &a.read_document(&key).await.unwrap().unwrap().bytes[..],
        b"a"
    );
    assert_eq!(
        &b.read_document(&key).await.unwrap().unwrap().bytes[..],
        b"b"
    );
    assert_eq!(
        a.list_documents("").await.unwrap(),
        std::slice::from_ref(&key)
    );
    assert!(b.delete(&in_b).await.unwrap());
    assert_eq!(a.stat(&in_a).await.unwrap(), Some(1));
}

#[tokio::test]
async fn a_store_with_no_prefix_uses_the_whole_bucket() {
    let Some(server) = moto() else { return };
    let bucket = server.bucket();
    let store = S3Store::new(config(server, &bucket, "")).unwrap();
    assert_eq!(store.prefix(), "");
    let digest = store.put_bytes(b"top").await.unwrap();
    let key = DocumentKey::new("repos/x/tags.json").unwrap();
    store
        .write_document(&key, "[]".into(), Precondition::None)
        .await
        .unwrap();
    let raw = store.object_store().clone();
    assert_eq!(
        objects_under(&raw, "").await,
        [
            format!("blobs/sha256/{}", digest.encoded()),
            "repos/x/tags.json".to_string()
        ]
    );
    assert_eq!(listed(&store).await, [digest]);
    assert_eq!(
        store.list_documents("").await.unwrap(),
        std::slice::from_ref(&key)
    );
    assert_eq!(store.list_documents("repos/x").await.unwrap(), [key]);
}

#[tokio::test]
async fn conditional_writes_and_deletes_are_enforced_by_the_server() {
    let Some((store, _)) = moto_store() else {
        return;
    };
    let key = DocumentKey::new("tags/latest").unwrap();
    let v1 = store
        .write_document(&key, "1".into(), Precondition::MustNotExist)
        .await
        .unwrap();
    // Versions are the server's ETags.
    assert!(v1.as_str().starts_with('"'), "{v1:?}");
    assert!(matches!(
        store.write_document(&key, "x".into(), Precondition::MustNotExist).await,
        Err(Error::Conflict { key: k }) if k == "tags/latest"
    ));
    let v2 = store
        .write_document(&key, "2".into(), Precondition::Matches(v1.clone()))
        .await
        .unwrap();
    assert!(matches!(
        store
            .write_document(&key, "x".into(), Precondition::Matches(v1.clone()))
            .await,
        Err(Error::Conflict { .. })
    ));
    assert!(matches!(
        store.delete_document(&key, Precondition::Matches(v1)).await,
        Err(Error::Conflict { .. })
    ));
    assert!(matches!(
        store
            .delete_document(&key, Precondition::MustNotExist)
            .await,
        Err(Error::Conflict { .. })
    ));
    assert_eq!(
        &store.read_document(&key).await.unwrap().unwrap().bytes[..],
        b"2"
    );
    assert!(
        store
            .delete_document(&key, Precondition::Matches(v2.clone()))
            .await
            .unwrap()
    );
    assert!(matches!(
        store.delete_document(&key, Precondition::Matches(v2)).await,
        Err(Error::Conflict { .. })
    ));
    assert!(
        !store
            .delete_document(&key, Precondition::MustNotExist)
            .await
            .unwrap()
    );
    assert!(
        !store
            .delete_document(&key, Precondition::None)
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn versioned_buckets_work_and_versions_name_the_object_version() {
    let Some(server) = moto() else { return };
    let bucket = server.bucket();
    server.enable_versioning(&bucket);
    let store = S3Store::new(config(server, &bucket, "layout")).unwrap();
    let key = DocumentKey::new("index.json").unwrap();
    let v1 = store
        .write_document(&key, "one".into(), Precondition::MustNotExist)
        .await
        .unwrap();
    assert!(v1.as_str().contains(' '), "no object version in {v1:?}");
    let doc = store.read_document(&key).await.unwrap().unwrap();
    assert_eq!(doc.version, v1);
    // Same bytes, new object version: the version tells them apart.
    let v2 = store
        .write_document(&key, "one".into(), Precondition::Matches(v1.clone()))
        .await
        .unwrap();
    assert_ne!(v1, v2);
    assert!(matches!(
        store.delete_document(&key, Precondition::Matches(v1)).await,
        Err(Error::Conflict { .. })
    ));
    assert!(
        store
            .delete_document(&key, Precondition::Matches(v2))
            .await
            .unwrap()
    );
    assert!(store.read_document(&key).await.unwrap().is_none());

    let digest = put_chunked(&store, &bytes(4, 1000), 100).await;
    assert!(store.delete(&digest).await.unwrap());
    assert_eq!(store.stat(&digest).await.unwrap(), None);
    assert!(listed(&store).await.is_empty());
}

#[tokio::test]
async fn a_missing_bucket_is_a_backend_error_on_write() {
    let Some(server) = moto() else { return };
    let store = S3Store::new(config(server, "no-such-bucket", "")).unwrap();
    let key = DocumentKey::new("index.json").unwrap();
    for precondition in [Precondition::None, Precondition::MustNotExist] {
        let result = store.write_document(&key, "{}".into(), precondition).await;
        assert!(
            matches!(result, Err(Error::Backend { backend: "s3", .. })),
            "{result:?}"
        );
    }
    let result = store.put_bytes(b"x").await;
    assert!(
        matches!(result, Err(Error::Backend { backend: "s3", .. })),
        "{result:?}"
    );
}

#[tokio::test]
async fn clean_temp_removes_old_temp_objects_only() {
    let Some((store, _)) = moto_store() else {
        return;
    };
    let raw = store.object_store().clone();
    put_raw(&raw, "layout/.ocikit/tmp/blob-left-behind", b"x").await;
    let digest = store.put_bytes(b"kept").await.unwrap();
    assert_eq!(
        store.clean_temp(Duration::from_secs(3600)).await.unwrap(),
        0
    );
    assert_eq!(store.clean_temp(Duration::ZERO).await.unwrap(), 1);
    assert_eq!(
        objects_under(&raw, "layout/.ocikit").await,
        Vec::<String>::new()
    );
    assert_eq!(store.stat(&digest).await.unwrap(), Some(4));
}

// ---------------------------------------------------------------------------------------
// Without a server
// ---------------------------------------------------------------------------------------

fn in_memory(prefix: &str) -> S3Store {
    S3Store::from_object_store(Arc::new(InMemory::new()), prefix).unwrap()
}

#[test]
fn prefixes_are_normalised_and_checked() {
    assert_eq!(in_memory("/a/b/").prefix(), "a/b");
    assert_eq!(in_memory("").prefix(), "");
    for bad in ["a//b", "a/../b", "a/./b"] {
        let result = S3Store::from_object_store(Arc::new(InMemory::new()), bad);
        assert!(
            matches!(result, Err(Error::Backend { backend: "s3", .. })),
            "{bad}"
        );
    }
}

#[test]
fn half_a_credential_is_refused_and_secrets_are_not_printed() {
    let mut config = S3Config::new("bucket").with_credentials("AKIDEXAMPLE", "hunter2");
    config.session_token = Some("swordfish".into());
    let printed = format!("{config:?}");
    assert!(
        printed.contains("AKIDEXAMPLE")
            && !printed.contains("hunter2")
            && !printed.contains("swordfish"),
        "{printed}"
    );
    let store = S3Store::new(config.clone()).unwrap();
    let printed = format!("{store:?}");
    assert!(
        !printed.contains("hunter2") && !printed.contains("swordfish"),
        "{printed}"
    );

    config.secret_access_key = None;
    assert!(matches!(
        S3Store::new(config),
        Err(Error::Backend { backend: "s3", .. })
    ));
}

/// Writers wait while `upload_concurrency` parts are in flight, so a writer's memory is
/// bounded by `(concurrency + 1) × part size` whatever the blob's size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_wait_for_parts_in_flight() {
    use object_store::throttle::{ThrottleConfig, ThrottledStore};
    let delay = Duration::from_millis(150);
    let throttled = ThrottledStore::new(
        InMemory::new(),
        ThrottleConfig {
            wait_put_per_call: delay,
            ..ThrottleConfig::default()
        },
    );
    let store = S3Store::from_object_store(Arc::new(throttled), "")
        .unwrap()
        .with_part_size(MIN_PART_SIZE)
        .with_upload_concurrency(1);
    let parts = 6;
    let data = bytes(5, parts * MIN_PART_SIZE + 1);
    let mut writer = store.writer().await.unwrap();
    let started = Instant::now();
    for chunk in data.chunks(256 << 10) {
        writer.write_all(chunk).await.unwrap();
    }
    // With one part in flight, writing part n+1 waits for part n: at least `parts - 1`
    // uploads' delays (unbounded, the writes would take no time at all).
    let waited = started.elapsed();
    assert!(
        waited >= delay * (parts as u32 - 1),
        "writes did not wait: {waited:?}"
    );
    let digest = Digest::sha256(&data);
    writer.commit(&digest, data.len() as u64).await.unwrap();
    let mut hasher = Hasher::sha256();
    let mut stream = store.open(&digest, None).await.unwrap().into_stream();
    while let Some(chunk) = futures::StreamExt::next(&mut stream).await {
        hasher.update(&chunk.unwrap());
    }
    assert_eq!(hasher.finish(), digest);
}

#[tokio::test]
async fn written_at_is_the_objects_last_modified_time() {
    use std::time::SystemTime;
    let Some((store, _)) = moto_store() else {
        return;
    };
    assert_eq!(
        store.written_at(&Digest::sha256(b"absent")).await.unwrap(),
        None
    );
    // S3 keeps whole seconds.
    let before = SystemTime::now() - Duration::from_secs(2);
    let digest = store.put_bytes(b"timed").await.unwrap();
    let after = SystemTime::now() + Duration::from_secs(2);
    let at = store.written_at(&digest).await.unwrap().unwrap();
    assert!(at >= before && at <= after, "{at:?}");
}

/// Publishing a stored blob again renews its `LastModified` (what `written_at` reports and
/// garbage collection's grace period judges): for a blob under one part (one PUT) and for
/// a multipart one (complete and server-side copy); a blob over the copy limit is left as it
/// was, its staged bytes discarded.
#[tokio::test]
async fn publishing_again_renews_written_at() {
    let Some(server) = moto() else { return };
    let bucket = server.bucket();
    let store = S3Store::new(config(server, &bucket, "layout"))
        .unwrap()
        .with_part_size(MIN_PART_SIZE);
    let small = bytes(3, 10_000);
    let large = bytes(4, MIN_PART_SIZE + 1000);
    let small_digest = put_chunked(&store, &small, 4096).await;
    let large_digest = put_chunked(&store, &large, 1 << 20).await;
    let small_first = store.written_at(&small_digest).await.unwrap().unwrap();
    let large_first = store.written_at(&large_digest).await.unwrap().unwrap();
    // S3 keeps whole seconds.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    put_chunked(&store, &small, 4096).await;
    put_chunked(&store, &large, 1 << 20).await;
    let small_again = store.written_at(&small_digest).await.unwrap().unwrap();
    let large_again = store.written_at(&large_digest).await.unwrap().unwrap();
    assert!(
        small_again > small_first,
        "{small_first:?} -> {small_again:?}"
    );
    assert!(
        large_again > large_first,
        "{large_first:?} -> {large_again:?}"
    );
    assert_eq!(
        store
            .get_bytes(&large_digest, u64::MAX)
            .await
            .unwrap()
            .unwrap(),
        &large[..]
    );
    let raw = store.object_store().clone();
    assert_eq!(
        objects_under(&raw, "layout/.ocikit").await,
        Vec::<String>::new()
    );

    // Over the copy limit, a blob stored already is not streamed through the client again.
    let capped = S3Store::new(config(server, &bucket, "layout"))
        .unwrap()
        .with_part_size(MIN_PART_SIZE)
        .with_server_copy_limit(0);
    put_chunked(&capped, &large, 1 << 20).await;
    assert_eq!(
        capped.written_at(&large_digest).await.unwrap().unwrap(),
        large_again
    );
    assert_no_pending_uploads(server, &bucket).await;
}
