//! Conveniences, pointer impls, copying between backends, and thread-safety of the API.

use std::sync::Arc;

use ocikit_digest::Digest;
use ocikit_store::{
    BlobWriter, DocumentKey, Error, FsStore, MemoryStore, Precondition, Store, StoreExt,
};

fn assert_send_sync<T: Send + Sync>() {}
fn assert_send<T: Send>(_: &T) {}

#[test]
fn public_types_are_send_and_sync() {
    assert_send_sync::<MemoryStore>();
    assert_send_sync::<FsStore>();
    assert_send_sync::<Arc<dyn Store>>();
    assert_send_sync::<DocumentKey>();
    assert_send_sync::<Error>();
    fn writer_is_send<T: Send>() {}
    writer_is_send::<BlobWriter>();
}

#[tokio::test]
async fn futures_are_send() {
    let store = MemoryStore::new();
    let d = Digest::sha256(b"");
    assert_send(&store.stat(&d));
    assert_send(&store.writer());
    assert_send(&store.get_bytes(&d, 1));
}

#[tokio::test]
async fn pointers_and_trait_objects_are_stores() {
    let store = MemoryStore::new();
    // `&S` is a store too (a generic function taking the reference by value proves it).
    async fn put_through<S: Store>(store: S) -> Digest {
        store.put_bytes(b"one").await.unwrap()
    }
    let digest = put_through(&store).await;
    let boxed: Box<dyn Store> = Box::new(store.clone());
    assert_eq!(boxed.stat(&digest).await.unwrap(), Some(3));
    let arc: Arc<dyn Store> = Arc::new(store.clone());
    assert_eq!(arc.require(&digest).await.unwrap(), 3);
    let by_ref: &dyn Store = &store;
    assert!(by_ref.exists(&digest).await.unwrap());
}

#[tokio::test]
async fn copy_between_backends_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FsStore::open(dir.path()).await.unwrap();
    let memory = MemoryStore::new();
    let digest = memory.put_bytes(&vec![7u8; 300_000]).await.unwrap();
    memory.copy_to(&digest, &fs).await.unwrap();
    assert_eq!(
        fs.get_bytes(&digest, u64::MAX).await.unwrap().unwrap(),
        vec![7u8; 300_000]
    );
    // Copying again is a no-op; copying something absent is NotFound.
    memory.copy_to(&digest, &fs).await.unwrap();
    let absent = Digest::sha256(b"absent");
    assert!(matches!(
        memory.copy_to(&absent, &fs).await,
        Err(Error::NotFound { .. })
    ));

    // A corrupted source is refused by the destination, which publishes nothing.
    let bad = fs.put_bytes(b"good bytes").await.unwrap();
    std::fs::write(fs.blob_path(&bad), b"evil bytes").unwrap();
    let err = fs.copy_to(&bad, &memory).await.unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err:?}");
    assert_eq!(memory.stat(&bad).await.unwrap(), None);
}

#[tokio::test]
async fn update_document_can_leave_a_document_alone() {
    let store = MemoryStore::new();
    let key = DocumentKey::new("doc").unwrap();
    assert_eq!(
        store.update_document(&key, |_| Ok(None)).await.unwrap(),
        None
    );
    assert!(store.read_document(&key).await.unwrap().is_none());
    let v = store
        .write_document(&key, "x".into(), Precondition::None)
        .await
        .unwrap();
    assert_eq!(
        store.update_document(&key, |_| Ok(None)).await.unwrap(),
        Some(v)
    );
    // An edit's error stops the update and is returned.
    let err = store
        .update_document(&key, |_| Err(Error::DocumentNotFound { key: "why".into() }))
        .await
        .unwrap_err();
    assert!(err.is_not_found());
    assert!(matches!(
        store
            .require_document(&DocumentKey::new("nope").unwrap())
            .await,
        Err(Error::DocumentNotFound { .. })
    ));
}

/// `written_at`: absent blobs have none; a blob's time lies between the moments before and
/// after it was written; publishing the same content again renews it; `Box<dyn Store>`
/// forwards to the backend rather than using the trait's default.
async fn written_at_tracks_publishing(store: Box<dyn Store>) {
    use std::time::{Duration, SystemTime};
    let absent = Digest::sha256(b"never stored");
    assert_eq!(store.written_at(&absent).await.unwrap(), None);
    let before = SystemTime::now() - Duration::from_millis(50);
    let digest = store.put_bytes(b"timed").await.unwrap();
    let after = SystemTime::now() + Duration::from_millis(50);
    let first = store.written_at(&digest).await.unwrap().unwrap();
    assert!(first >= before && first <= after, "{first:?}");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let again = store.written_at(&digest).await.unwrap().unwrap();
    assert_eq!(again, first, "reading does not change the write time");
    store.put_bytes(b"timed").await.unwrap();
    let renewed = store.written_at(&digest).await.unwrap().unwrap();
    assert!(
        renewed >= first + Duration::from_secs(1),
        "{renewed:?} vs {first:?}"
    );
    store.delete(&digest).await.unwrap();
    assert_eq!(store.written_at(&digest).await.unwrap(), None);
}

#[tokio::test]
async fn written_at_on_memory_and_fs() {
    written_at_tracks_publishing(Box::new(MemoryStore::new())).await;
    let dir = tempfile::tempdir().unwrap();
    let fs = FsStore::open(dir.path()).await.unwrap();
    written_at_tracks_publishing(Box::new(fs.clone())).await;
    // The filesystem store reports the file's modification time, whoever set it.
    let digest = fs.put_bytes(b"old").await.unwrap();
    let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
    std::fs::File::options()
        .write(true)
        .open(fs.blob_path(&digest))
        .unwrap()
        .set_modified(old)
        .unwrap();
    assert_eq!(fs.written_at(&digest).await.unwrap(), Some(old));
}
