//! Partial downloads of the filesystem store (`ocikit_store::fs::Partials`): kept across
//! opens, the prefix hashed on open, the whole verified before it is published, one writer
//! at a time, stale ones removed only when unlocked and old.

use std::time::{Duration, SystemTime};

use futures::TryStreamExt;
use ocikit_digest::Digest;
use ocikit_store::{Error, FsStore, Store};
use ocikit_testkit::prng;
use tempfile::TempDir;

async fn fresh() -> (FsStore, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::open(dir.path().join("layout")).await.unwrap();
    (store, dir)
}

async fn listed(store: &FsStore) -> Vec<Digest> {
    store.list().try_collect().await.unwrap()
}

#[tokio::test]
async fn a_suspended_download_resumes_in_a_new_open_and_publishes_verified() {
    let (store, _dir) = fresh().await;
    let blob = prng::bytes(1, 3 << 20);
    let digest = Digest::sha256(&blob);
    let size = blob.len() as u64;
    let partials = store
        .partial_downloads()
        .expect("a filesystem store keeps them");

    let mut first = partials.open(&digest, size).await.unwrap();
    assert_eq!(first.resumed_from(), 0);
    first.write(&blob[..1_500_000]).await.unwrap();
    assert_eq!(first.suspend().await.unwrap(), 1_500_000);
    // Not a blob while partial.
    assert_eq!(store.stat(&digest).await.unwrap(), None);
    assert!(listed(&store).await.is_empty());

    // A new open (as a new process would) goes on from the bytes on disk.
    let mut second = partials.open(&digest, size).await.unwrap();
    assert_eq!(second.resumed_from(), 1_500_000);
    second.write(&blob[1_500_000..]).await.unwrap();
    second.commit(&digest, size).await.unwrap();
    assert_eq!(store.stat(&digest).await.unwrap(), Some(size));
    assert_eq!(
        std::fs::read(store.blob_path(&digest)).unwrap(),
        blob,
        "the published blob is the blob"
    );
    assert!(!partials.path(&digest).exists());
}

/// Chunks handed over as `Bytes` (held, not copied, until written with the others gathered
/// with them): of every size around the 1 MiB at which they are written, an empty one among
/// them. What a suspend keeps, what a new open resumes from and what is published are the
/// bytes in order; a chunk with one bit flipped is refused at the commit and leaves nothing.
#[tokio::test]
async fn chunks_handed_over_as_bytes_are_kept_in_order_and_verified() {
    let (store, _dir) = fresh().await;
    let blob = bytes::Bytes::from(prng::bytes(4, (5 << 20) + 123));
    let digest = Digest::sha256(&blob);
    let size = blob.len() as u64;
    let partials = store.partials();
    let sizes = [1, 0, 4096, (1 << 20) - 1, 1, 1 << 20, 3, 700_000, 65_536];
    let chunks = |from: usize, to: usize| {
        let mut out = Vec::new();
        let mut at = from;
        for n in sizes.iter().cycle() {
            if at >= to {
                break;
            }
            let end = to.min(at + n);
            out.push(blob.slice(at..end));
            at = end;
        }
        out
    };
    let half = 2_500_001;
    let mut first = partials.open(&digest, size).await.unwrap();
    for chunk in chunks(0, half) {
        first.write_bytes(chunk).await.unwrap();
    }
    assert_eq!(first.len(), half as u64);
    assert_eq!(first.suspend().await.unwrap(), half as u64);
    assert_eq!(std::fs::read(partials.path(&digest)).unwrap(), blob[..half]);

    let mut second = partials.open(&digest, size).await.unwrap();
    assert_eq!(second.resumed_from(), half as u64);
    for chunk in chunks(half, blob.len()) {
        second.write_bytes(chunk).await.unwrap();
    }
    assert_eq!(second.len(), size);
    second.commit(&digest, size).await.unwrap();
    assert_eq!(std::fs::read(store.blob_path(&digest)).unwrap(), blob);

    // The same blob with one bit flipped in a chunk past the first MiB written.
    let (other, _other_dir) = fresh().await;
    let partials = other.partials();
    let mut download = partials.open(&digest, size).await.unwrap();
    for (i, chunk) in chunks(0, blob.len()).into_iter().enumerate() {
        let chunk = if i == 7 {
            let mut flipped = chunk.to_vec();
            flipped[0] ^= 1;
            bytes::Bytes::from(flipped)
        } else {
            chunk
        };
        download.write_bytes(chunk).await.unwrap();
    }
    let refused = download.commit(&digest, size).await;
    assert!(
        matches!(refused, Err(Error::DigestMismatch { .. })),
        "{refused:?}"
    );
    assert_eq!(other.stat(&digest).await.unwrap(), None);
    assert!(listed(&other).await.is_empty());
    assert!(!partials.path(&digest).exists());
}

#[tokio::test]
async fn a_prefix_changed_on_disk_fails_the_digest_and_is_discarded() {
    let (store, _dir) = fresh().await;
    let blob = prng::bytes(2, 100_000);
    let digest = Digest::sha256(&blob);
    let size = blob.len() as u64;
    let partials = store.partials();

    let mut first = partials.open(&digest, size).await.unwrap();
    first.write(&blob[..60_000]).await.unwrap();
    first.suspend().await.unwrap();
    let path = partials.path(&digest);
    let mut on_disk = std::fs::read(&path).unwrap();
    on_disk[10] ^= 1;
    std::fs::write(&path, &on_disk).unwrap();

    let mut second = partials.open(&digest, size).await.unwrap();
    assert_eq!(second.resumed_from(), 60_000);
    second.write(&blob[60_000..]).await.unwrap();
    let refused = second.commit(&digest, size).await;
    assert!(
        matches!(refused, Err(Error::DigestMismatch { .. })),
        "{refused:?}"
    );
    assert_eq!(store.stat(&digest).await.unwrap(), None);
    assert!(
        !path.exists(),
        "a partial file that cannot become right is removed"
    );

    // Too long to be the blob's beginning: emptied on open.
    std::fs::write(&path, vec![0u8; blob.len() + 1]).unwrap();
    let third = partials.open(&digest, size).await.unwrap();
    assert_eq!(third.resumed_from(), 0);
    // Short: a size error, discarded too.
    let refused = third.commit(&digest, size).await;
    assert!(
        matches!(refused, Err(Error::SizeMismatch { .. })),
        "{refused:?}"
    );
    assert!(!path.exists());
}

#[tokio::test]
async fn a_second_writer_waits_for_the_lock_and_then_finds_the_rest() {
    let (store, _dir) = fresh().await;
    let blob = prng::bytes(3, 10_000);
    let digest = Digest::sha256(&blob);
    let size = blob.len() as u64;
    let partials = store.partials();

    let mut first = partials.open(&digest, size).await.unwrap();
    first.write(&blob[..4_000]).await.unwrap();
    let waiting = tokio::spawn({
        let partials = partials.clone();
        let digest = digest.clone();
        async move { partials.open(&digest, size).await.unwrap().resumed_from() }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished(), "the lock is held");
    first.suspend().await.unwrap();
    assert_eq!(waiting.await.unwrap(), 4_000);
}

#[tokio::test]
async fn remove_stale_takes_old_unlocked_partials_only() {
    let (store, _dir) = fresh().await;
    let partials = store.partials();
    let now = SystemTime::now();
    let day = Duration::from_secs(24 * 3600);
    let old = Digest::sha256(b"old");
    let young = Digest::sha256(b"young");
    let busy = Digest::sha256(b"busy");
    for digest in [&old, &young, &busy] {
        let mut partial = partials.open(digest, 100).await.unwrap();
        partial.write(b"abc").await.unwrap();
        partial.suspend().await.unwrap();
    }
    for digest in [&old, &busy] {
        std::fs::File::options()
            .write(true)
            .open(partials.path(digest))
            .unwrap()
            .set_modified(now - 2 * day)
            .unwrap();
    }
    // A stray name in the directory is left alone.
    std::fs::write(partials.dir().join("sha256").join("not-a-digest"), b"x").unwrap();
    let held = partials.open(&busy, 100).await.unwrap();

    let dry = partials.remove_stale(day, now, true).await.unwrap();
    assert_eq!(dry.iter().map(|s| &s.digest).collect::<Vec<_>>(), [&old]);
    assert!(partials.path(&old).exists());

    let removed = partials.remove_stale(day, now, false).await.unwrap();
    assert_eq!(removed.len(), 1);
    assert_eq!((&removed[0].digest, removed[0].size), (&old, 3));
    assert!(!partials.path(&old).exists());
    assert!(partials.path(&young).exists());
    assert!(partials.path(&busy).exists(), "being written: never stale");
    assert!(partials.dir().join("sha256").join("not-a-digest").exists());
    drop(held);
    assert_eq!(
        partials.remove_stale(day, now, false).await.unwrap().len(),
        1
    );
}
