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
