//! The filesystem backend: the conformance suite, and its own hardening (symlinks, FIFOs,
//! stray entries, temp files, tampering).

use std::os::unix::fs::symlink;

use ocikit_digest::Digest;
use ocikit_store::{DocumentKey, Error, FsStore, Precondition, Store, StoreExt};
use tempfile::TempDir;

async fn fresh() -> (FsStore, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::open(dir.path().join("layout")).await.unwrap();
    (store, dir)
}

#[cfg(feature = "conformance")]
mod conformance {
    ocikit_store::conformance_tests!(async {
        let (store, guard) = super::fresh().await;
        ocikit_store::conformance::Guarded { store, guard }
    });
}

async fn listed(store: &FsStore) -> Vec<Digest> {
    use futures::TryStreamExt;
    let mut v: Vec<Digest> = store.list().try_collect().await.unwrap();
    v.sort();
    v
}

#[tokio::test]
async fn uses_the_oci_layout_convention_and_survives_reopening() {
    let (store, dir) = fresh().await;
    let digest = store.put_bytes(b"hello").await.unwrap();
    let path = dir
        .path()
        .join("layout/blobs/sha256")
        .join(digest.encoded());
    assert_eq!(store.blob_path(&digest), path);
    assert_eq!(std::fs::read(&path).unwrap(), b"hello");
    let key = DocumentKey::new("index.json").unwrap();
    store
        .write_document(&key, "{}".into(), Precondition::MustNotExist)
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(dir.path().join("layout/index.json")).unwrap(),
        b"{}"
    );

    let reopened = FsStore::open(store.root()).await.unwrap();
    assert_eq!(
        reopened.get_bytes(&digest, 100).await.unwrap().unwrap(),
        &b"hello"[..]
    );
    assert_eq!(
        &reopened.read_document(&key).await.unwrap().unwrap().bytes[..],
        b"{}"
    );
}

// SPEC C-L06: a blob that is a symlink is refused, and nothing is read through it.
#[tokio::test]
async fn symlinked_blobs_are_refused() {
    let (store, dir) = fresh().await;
    let outside = dir.path().join("outside-secret");
    std::fs::write(&outside, b"secret").unwrap();
    let digest = Digest::sha256(b"secret");
    std::fs::create_dir_all(store.blob_path(&digest).parent().unwrap()).unwrap();
    symlink(&outside, store.blob_path(&digest)).unwrap();

    assert!(matches!(
        store.stat(&digest).await,
        Err(Error::NotARegularFile { .. })
    ));
    assert!(matches!(
        store.get(&digest, None).await,
        Err(Error::NotARegularFile { .. })
    ));
    let local = store
        .local_blobs()
        .expect("the filesystem store has local blobs");
    assert!(matches!(
        local.open_blocking(&digest),
        Err(Error::NotARegularFile { .. })
    ));
    assert!(
        listed(&store).await.is_empty(),
        "a symlink was listed as a blob"
    );

    // Publishing the real content replaces the symlink itself, never writing through it.
    store.put_bytes(b"secret").await.unwrap();
    assert!(
        std::fs::symlink_metadata(store.blob_path(&digest))
            .unwrap()
            .is_file()
    );
    assert_eq!(std::fs::read(&outside).unwrap(), b"secret");
    assert_eq!(listed(&store).await, vec![digest]);
}

#[tokio::test]
async fn fifo_and_directory_blobs_are_refused_without_hanging() {
    let (store, _dir) = fresh().await;
    let fifo = Digest::sha256(b"fifo");
    let path = store.blob_path(&fifo);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let status = std::process::Command::new("mkfifo")
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success());
    let opened =
        tokio::time::timeout(std::time::Duration::from_secs(5), store.get(&fifo, None)).await;
    assert!(matches!(
        opened.expect("opening a FIFO must not block"),
        Err(Error::NotARegularFile { .. })
    ));
    let local = store
        .local_blobs()
        .expect("the filesystem store has local blobs");
    let blocking = {
        let store = store.clone();
        let fifo = fifo.clone();
        tokio::task::spawn_blocking(move || {
            store.local_blobs().map(|local| {
                matches!(
                    local.open_blocking(&fifo),
                    Err(Error::NotARegularFile { .. })
                )
            })
        })
    };
    let refused = tokio::time::timeout(std::time::Duration::from_secs(5), blocking).await;
    assert_eq!(
        refused.expect("opening a FIFO must not block").unwrap(),
        Some(true)
    );

    let dir_blob = Digest::sha256(b"dir");
    std::fs::create_dir(store.blob_path(&dir_blob)).unwrap();
    assert!(matches!(
        store.get(&dir_blob, None).await,
        Err(Error::NotARegularFile { .. })
    ));
    assert!(matches!(
        local.open_blocking(&dir_blob),
        Err(Error::NotARegularFile { .. })
    ));
    assert!(listed(&store).await.is_empty());
}

// SPEC C-L08: stray and malformed entries are ignored by list.
#[tokio::test]
async fn stray_entries_are_not_listed() {
    let (store, _dir) = fresh().await;
    let real = store.put_bytes(b"real").await.unwrap();
    let blobs = store.root().join("blobs");
    let hex = Digest::sha256(b"x").encoded().to_string();
    std::fs::create_dir_all(blobs.join("SHA256")).unwrap();
    std::fs::write(blobs.join("SHA256").join(&hex), b"x").unwrap();
    std::fs::write(blobs.join("sha256").join(hex.to_uppercase()), b"x").unwrap();
    std::fs::write(blobs.join("sha256").join(".tmp-123"), b"x").unwrap();
    std::fs::write(blobs.join("sha256").join("abc"), b"x").unwrap();
    std::fs::write(blobs.join("README"), b"x").unwrap();
    std::fs::create_dir_all(blobs.join("sha256").join(Digest::sha256(b"d").encoded())).unwrap();
    assert_eq!(listed(&store).await, vec![real]);
}

#[tokio::test]
async fn temp_files_are_never_blobs_and_can_be_cleaned() {
    let (store, _dir) = fresh().await;
    // A writer that is dropped mid-way leaves nothing, not even its temp file.
    let mut writer = store.writer().await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut writer, b"partial")
        .await
        .unwrap();
    drop(writer);
    ocikit_testkit::eventually(
        "the dropped writer's temp file removed",
        std::time::Duration::from_secs(10),
        || async { (std::fs::read_dir(store.temp_dir()).unwrap().count() == 0).then_some(()) },
    )
    .await;

    // What a crashed writer leaves is ignored by list and removed by clean_temp.
    std::fs::write(store.temp_dir().join("blob-crashed"), b"partial").unwrap();
    assert!(listed(&store).await.is_empty());
    assert_eq!(
        store
            .clean_temp(std::time::Duration::from_secs(3600))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store.clean_temp(std::time::Duration::ZERO).await.unwrap(),
        1
    );
}

// Issue 14: a blob under an unregistered algorithm, as another tool could write it, is
// refused by reads, never returned unverified.
#[tokio::test]
async fn blobs_under_an_unregistered_algorithm_are_refused() {
    let (store, _dir) = fresh().await;
    let data = b"{\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[]}}";
    let foreign: Digest = format!("foo:{}", Digest::sha256(data).encoded())
        .parse()
        .unwrap();
    let path = store.blob_path(&foreign);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, data).unwrap();
    // The store sees it...
    assert_eq!(store.stat(&foreign).await.unwrap(), Some(data.len() as u64));
    // ...and refuses to read it as verified content.
    match store.get_bytes(&foreign, 1 << 20).await {
        Err(Error::Unverifiable { digest }) => assert_eq!(digest, foreign),
        other => panic!(
            "{foreign} was not refused: {:?}",
            other.map(|read| read.map(|bytes| bytes.len()))
        ),
    }
}

// SPEC C-L07: tampered content is detected on read.
#[tokio::test]
async fn tampered_blobs_fail_verification() {
    let (store, _dir) = fresh().await;
    let digest = store.put_bytes(b"original").await.unwrap();
    std::fs::write(store.blob_path(&digest), b"tampered").unwrap();
    assert!(matches!(
        store.get_bytes(&digest, 100).await,
        Err(Error::DigestMismatch { .. })
    ));
    std::fs::write(store.blob_path(&digest), b"short").unwrap();
    // The size on disk is what the store reports; verification catches the rest.
    assert_eq!(store.stat(&digest).await.unwrap(), Some(5));
    assert!(store.get_bytes(&digest, 100).await.is_err());
}

#[tokio::test]
async fn symlinked_documents_are_refused() {
    let (store, dir) = fresh().await;
    let outside = dir.path().join("outside.json");
    std::fs::write(&outside, b"{\"secret\":1}").unwrap();
    symlink(&outside, store.root().join("index.json")).unwrap();
    let key = DocumentKey::new("index.json").unwrap();
    assert!(matches!(
        store.read_document(&key).await,
        Err(Error::NotARegularFile { .. })
    ));
    assert!(matches!(
        store
            .write_document(&key, "{}".into(), Precondition::None)
            .await,
        Err(Error::NotARegularFile { .. })
    ));
    assert_eq!(std::fs::read(&outside).unwrap(), b"{\"secret\":1}");
}

#[tokio::test]
async fn private_directories_are_not_documents() {
    let (store, _dir) = fresh().await;
    std::fs::write(store.root().join(".hidden"), b"x").unwrap();
    let key = DocumentKey::new("a/b").unwrap();
    store
        .write_document(&key, "1".into(), Precondition::None)
        .await
        .unwrap();
    let keys = store.list_documents("").await.unwrap();
    assert_eq!(keys, vec![key]);
}

/// `document_version` agrees with `read_document`, follows the store's own writes, and
/// notices another program's edits made in place, with the same size, right after a read
/// (times of coarse granularity) and later.
#[tokio::test]
async fn document_versions_follow_every_change() {
    let (store, _dir) = fresh().await;
    let key = DocumentKey::new("index.json").unwrap();
    assert_eq!(store.document_version(&key).await.unwrap(), None);
    let written = store
        .write_document(&key, "{\"a\":1}".into(), Precondition::MustNotExist)
        .await
        .unwrap();
    let read = store.read_document(&key).await.unwrap().unwrap();
    assert_eq!(read.version, written);
    assert_eq!(
        store.document_version(&key).await.unwrap(),
        Some(written.clone())
    );

    // Another program rewrites the file in place, same length, at once.
    let path = store.document_path(&key);
    std::fs::write(&path, "{\"a\":2}").unwrap();
    let now = store.document_version(&key).await.unwrap().unwrap();
    assert_ne!(
        now, written,
        "an in-place edit right after a read went unnoticed"
    );
    assert_eq!(
        now,
        store.read_document(&key).await.unwrap().unwrap().version
    );

    // Read long after the last change, the version comes from the metadata; an in-place
    // edit then changes the file's times, and is noticed too.
    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    let settled = store.read_document(&key).await.unwrap().unwrap().version;
    assert_eq!(
        store.document_version(&key).await.unwrap(),
        Some(settled.clone())
    );
    std::fs::write(&path, "{\"a\":3}").unwrap();
    let edited = store.document_version(&key).await.unwrap().unwrap();
    assert_ne!(edited, settled);
    assert_eq!(
        edited,
        store.read_document(&key).await.unwrap().unwrap().version
    );

    // Replaced by rename, and removed.
    let other = path.with_extension("new");
    std::fs::write(&other, "{\"b\":4}").unwrap();
    std::fs::rename(&other, &path).unwrap();
    assert_ne!(store.document_version(&key).await.unwrap(), Some(edited));
    std::fs::remove_file(&path).unwrap();
    assert_eq!(store.document_version(&key).await.unwrap(), None);
}

#[tokio::test]
async fn reads_stream_in_order_and_a_blob_truncated_behind_our_back_fails_the_stream() {
    use futures::StreamExt;
    let (store, dir) = fresh().await;
    // Not a multiple of the read chunk, so the last read is short; ranges cross chunks.
    let bytes: Vec<u8> = (0..(3u32 << 20) + 12_345)
        .map(|i| (i % 251) as u8)
        .collect();
    let digest = store.put_bytes(&bytes).await.unwrap();
    for range in [None, Some(5..(2 << 20) + 7), Some(0..1), Some(10..10)] {
        let blob = store.get(&digest, range.clone()).await.unwrap().unwrap();
        let mut got = Vec::new();
        let mut stream = blob.into_stream();
        while let Some(chunk) = stream.next().await {
            got.extend_from_slice(&chunk.unwrap());
        }
        let want = match &range {
            Some(r) => &bytes[r.start as usize..r.end as usize],
            None => &bytes[..],
        };
        assert!(got == want, "range {range:?}");
    }
    let blob = store.get(&digest, None).await.unwrap().unwrap();
    let path = dir
        .path()
        .join("layout/blobs/sha256")
        .join(&digest.as_str()["sha256:".len()..]);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    let mut stream = blob.into_stream();
    let mut got = 0;
    let mut failed = false;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(c) => got += c.len(),
            Err(e) => {
                assert!(e.to_string().contains("read"), "{e}");
                failed = true;
                break;
            }
        }
    }
    assert!(
        failed,
        "a short file ended the stream quietly after {got} bytes"
    );
}

#[tokio::test]
async fn a_one_chunk_write_queue_still_stores_large_blobs_whole() {
    use tokio::io::AsyncWriteExt;
    let (store, _dir) = fresh().await;
    let store = store.with_write_queue(0); // clamped to one chunk
    let bytes: Vec<u8> = (0..(9u32 << 20) + 5).map(|i| (i % 253) as u8).collect();
    let mut writer = store.writer().await.unwrap();
    for part in bytes.chunks(300_000) {
        writer.write_all(part).await.unwrap();
    }
    let (digest, size) = writer.finish().await.unwrap();
    assert_eq!(digest, Digest::sha256(&bytes));
    assert_eq!(size, bytes.len() as u64);
    assert_eq!(
        store.get_bytes(&digest, 16 << 20).await.unwrap().unwrap(),
        bytes
    );
}

/// Reading a layout another tool wrote leaves it exactly as it was: the private `.ocikit/`
/// directories appear only with the first write of each kind, and then work as usual.
#[tokio::test]
async fn reading_a_foreign_layout_writes_nothing_into_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("foreign");
    std::fs::create_dir_all(root.join("blobs/sha256")).unwrap();
    let digest = Digest::sha256(b"made elsewhere");
    std::fs::write(
        root.join("blobs/sha256").join(digest.encoded()),
        b"made elsewhere",
    )
    .unwrap();
    std::fs::write(root.join("index.json"), b"{}").unwrap();
    let entries = |root: &std::path::Path| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(root)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let before = entries(&root);

    let store = FsStore::open(&root).await.unwrap();
    assert_eq!(listed(&store).await, vec![digest.clone()]);
    assert_eq!(store.stat(&digest).await.unwrap(), Some(14));
    assert!(store.get_bytes(&digest, 100).await.unwrap().is_some());
    let key = DocumentKey::new("index.json").unwrap();
    assert!(store.read_document(&key).await.unwrap().is_some());
    assert_eq!(store.list_documents("").await.unwrap(), vec![key.clone()]);
    assert_eq!(
        store
            .clean_temp(std::time::Duration::from_secs(0))
            .await
            .unwrap(),
        0
    );
    assert_eq!(entries(&root), before, "a read created something");
    assert!(!root.join(".ocikit").exists());

    // Each kind of write makes what it needs.
    store
        .write_document(&key, "{\"v\":1}".into(), Precondition::None)
        .await
        .unwrap();
    assert!(root.join(".ocikit/locks").is_dir());
    let written = store.put_bytes(b"ours").await.unwrap();
    assert!(root.join(".ocikit/tmp").is_dir());
    assert_eq!(
        store.get_bytes(&written, 10).await.unwrap().unwrap(),
        &b"ours"[..]
    );
    let fresh = tempfile::tempdir().unwrap();
    let other = FsStore::open(fresh.path().join("other")).await.unwrap();
    assert!(!fresh.path().join("other/.ocikit").exists());
    assert!(
        other
            .delete_document(&key, Precondition::None)
            .await
            .is_ok_and(|deleted| !deleted)
    );
}

/// Flips the last byte of a file in place (same inode), as bit rot or a stray write would.
fn flip_in_place(path: &std::path::Path) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let at = file.metadata().unwrap().len() - 1;
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, at).unwrap();
    file.write_all_at(&[byte[0] ^ 0xff], at).unwrap();
}

fn inode(path: &std::path::Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).unwrap();
    (meta.dev(), meta.ino())
}

fn temp_entries(store: &FsStore) -> usize {
    std::fs::read_dir(store.temp_dir()).map_or(0, |d| d.count())
}

#[tokio::test]
async fn linked_blobs_are_independent_copies_unless_hardlinks_are_asked_for() {
    use ocikit_store::{LinkMode, LinkTrust, Linked};
    let dir = tempfile::tempdir().unwrap();
    let open = |name: &str| FsStore::open(dir.path().join(name));
    let source = open("a").await.unwrap();
    // Larger than one read chunk, not a multiple of a page.
    let bytes: Vec<u8> = (0..(2 << 20) + 4321).map(|i| (i * 7 % 251) as u8).collect();
    let size = bytes.len() as u64;
    let digest = source.put_bytes(&bytes).await.unwrap();
    let blob = source.get(&digest, None).await.unwrap().unwrap();
    let file = blob.local_file().unwrap();

    // The default: a reflink or a copy, either way a file of its own.
    let copy = open("b").await.unwrap();
    let how = copy
        .link_blob(&digest, size, file, LinkTrust::Verify, LinkMode::default())
        .await
        .unwrap();
    assert!(matches!(how, Linked::Reflink | Linked::Copied), "{how:?}");
    assert_ne!(
        inode(&copy.blob_path(&digest)),
        inode(&source.blob_path(&digest))
    );
    assert_eq!(std::fs::read(copy.blob_path(&digest)).unwrap(), bytes);
    assert_eq!(temp_entries(&copy), 0, "no staging names left behind");
    flip_in_place(&copy.blob_path(&digest));
    assert_eq!(
        std::fs::read(source.blob_path(&digest)).unwrap(),
        bytes,
        "a write to the copy changed the source"
    );
    // Present already (even corrupt: fsck's business): nothing is linked.
    assert_eq!(
        copy.link_blob(&digest, size, file, LinkTrust::Verify, LinkMode::Copy)
            .await
            .unwrap(),
        Linked::Present
    );

    // Hardlinks, asked for: one inode, shared.
    let linked = open("c").await.unwrap();
    let how = linked
        .link_blob(&digest, size, file, LinkTrust::Verify, LinkMode::Hardlink)
        .await
        .unwrap();
    assert_eq!(how, Linked::Hardlink);
    assert_eq!(
        inode(&linked.blob_path(&digest)),
        inode(&source.blob_path(&digest))
    );

    // A source that does not hash to the digest is refused, and nothing is published.
    let wrong = Digest::sha256(b"something else");
    for mode in [LinkMode::Copy, LinkMode::Hardlink] {
        let refused = open(&format!("refused-{mode:?}")).await.unwrap();
        let result = refused
            .link_blob(&wrong, size, file, LinkTrust::Verify, mode)
            .await;
        assert!(
            matches!(result, Err(Error::DigestMismatch { ref expected, .. }) if *expected == wrong),
            "{mode:?}: {result:?}"
        );
        assert_eq!(refused.stat(&wrong).await.unwrap(), None, "{mode:?}");
        assert_eq!(temp_entries(&refused), 0, "{mode:?}");
        // A size that is not the file's is refused before anything is written.
        assert!(matches!(
            refused
                .link_blob(&digest, size + 1, file, LinkTrust::Verify, mode)
                .await,
            Err(Error::SizeMismatch { .. })
        ));
    }
}

/// Sets the process umask for the life of the guard. The umask is process-wide: tests that
/// need one set it themselves (and only ever narrow what other tests see for a moment).
struct Umask(rustix::fs::Mode);

impl Umask {
    fn set(mask: u32) -> Umask {
        Umask(rustix::process::umask(rustix::fs::Mode::from_raw_mode(
            mask,
        )))
    }
}

impl Drop for Umask {
    fn drop(&mut self) {
        rustix::process::umask(self.0);
    }
}

fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

/// Layouts are created as skopeo creates them: files 0644 and directories 0755, less the
/// umask, so that other users can read them (not `tempfile`'s private 0600).
#[tokio::test]
async fn files_and_directories_get_skopeo_modes_less_the_umask() {
    use ocikit_store::{LinkMode, LinkTrust};
    let dir = tempfile::tempdir().unwrap();
    for (mask, file_mode, dir_mode) in [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)] {
        let root = dir.path().join(format!("layout-{mask:o}"));
        let (store, other, digest, linked) = {
            let _umask = Umask::set(mask);
            let store = FsStore::open(&root).await.unwrap();
            let digest = store.put_bytes(b"readable").await.unwrap();
            let key = DocumentKey::new("index.json").unwrap();
            store
                .write_document(&key, "{}".into(), Precondition::None)
                .await
                .unwrap();
            // A blob that arrives file to file gets the same mode.
            let other = FsStore::open(dir.path().join(format!("other-{mask:o}")))
                .await
                .unwrap();
            let linked = other.put_bytes(b"copied file to file").await.unwrap();
            let blob = other.get(&linked, None).await.unwrap().unwrap();
            store
                .link_blob(
                    &linked,
                    19,
                    blob.local_file().unwrap(),
                    LinkTrust::Verify,
                    LinkMode::Copy,
                )
                .await
                .unwrap();
            (store, other, digest, linked)
        };
        drop(other);
        for file in [
            store.blob_path(&digest),
            store.blob_path(&linked),
            root.join("index.json"),
        ] {
            assert_eq!(mode(&file), file_mode, "umask {mask:o}: {}", file.display());
        }
        for directory in [
            root.clone(),
            root.join("blobs"),
            root.join("blobs/sha256"),
            store.temp_dir().to_path_buf(),
        ] {
            assert_eq!(
                mode(&directory),
                dir_mode,
                "umask {mask:o}: {}",
                directory.display()
            );
        }
    }
}

fn lock_files(store: &FsStore) -> Vec<String> {
    let locks = store.root().join(".ocikit/locks");
    let mut names: Vec<String> = std::fs::read_dir(locks)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Lock files are bounded by the documents that exist: deleting a document (or being
/// refused on an absent one) removes its lock file, so traffic does not pile them up.
#[tokio::test]
async fn lock_files_go_with_their_documents() {
    let (store, _dir) = fresh().await;
    let keep = DocumentKey::new("index.json").unwrap();
    store
        .write_document(&keep, "{}".into(), Precondition::MustNotExist)
        .await
        .unwrap();
    for i in 0..50 {
        let key = DocumentKey::new(&format!("repos/app/tags/t{i}")).unwrap();
        let version = store
            .write_document(&key, format!("{i}").into(), Precondition::MustNotExist)
            .await
            .unwrap();
        assert!(
            store
                .delete_document(&key, Precondition::Matches(version))
                .await
                .unwrap()
        );
        // Refused, and deleting what is not there: no lock file either.
        let refused = store
            .write_document(
                &key,
                "x".into(),
                Precondition::Matches(ocikit_store::Version::new("nope")),
            )
            .await;
        assert!(
            matches!(refused, Err(Error::Conflict { .. })),
            "{refused:?}"
        );
        assert!(
            !store
                .delete_document(&key, Precondition::None)
                .await
                .unwrap()
        );
    }
    assert_eq!(lock_files(&store), ["index.json.lock"]);
    // The document that stays works as before.
    store
        .write_document(&keep, "{\"v\":2}".into(), Precondition::None)
        .await
        .unwrap();
    assert_eq!(
        &store.read_document(&keep).await.unwrap().unwrap().bytes[..],
        b"{\"v\":2}"
    );
}

/// Removing lock files keeps compare-and-swap exclusive: writers racing to create and delete
/// one document (through separate handles, as separate processes would) never both create
/// it, so each one's delete of the version it wrote succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn removing_lock_files_keeps_compare_and_swap_exclusive() {
    let (store, _dir) = fresh().await;
    let key = DocumentKey::new("contended").unwrap();
    let mut tasks = Vec::new();
    for task in 0..6 {
        let handle = FsStore::open(store.root()).await.unwrap();
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            let mut created = 0;
            for round in 0..150 {
                let bytes = format!("task {task} round {round}");
                match handle
                    .write_document(&key, bytes.into(), Precondition::MustNotExist)
                    .await
                {
                    Ok(version) => {
                        created += 1;
                        let deleted = handle
                            .delete_document(&key, Precondition::Matches(version))
                            .await;
                        assert!(
                            matches!(deleted, Ok(true)),
                            "another writer replaced task {task}'s document: {deleted:?}"
                        );
                    }
                    Err(Error::Conflict { .. }) => {}
                    Err(e) => panic!("{e}"),
                }
            }
            created
        }));
    }
    let mut created = 0;
    for task in tasks {
        created += task.await.unwrap();
    }
    assert!(created > 0);
    assert!(store.read_document(&key).await.unwrap().is_none());
    assert!(lock_files(&store).is_empty(), "{:?}", lock_files(&store));
}

/// Across filesystems (a tmpfs and the temp directory's): a copy still works (the kernel may
/// refuse `copy_file_range` there, and the bytes go through a buffer), and a hardlink, which
/// cannot be made, is `NotSupported` so the caller streams instead.
#[tokio::test]
async fn linking_across_filesystems_copies_or_declines() {
    use ocikit_store::{LinkMode, LinkTrust, Linked};
    let shm = std::path::Path::new("/dev/shm");
    if !shm.is_dir() {
        return;
    }
    let there = tempfile::tempdir_in(shm).unwrap();
    let here = tempfile::tempdir().unwrap();
    let source = FsStore::open(there.path().join("a")).await.unwrap();
    let bytes: Vec<u8> = (0..(3 << 20) + 17).map(|i| (i * 13 % 241) as u8).collect();
    let digest = source.put_bytes(&bytes).await.unwrap();
    let blob = source.get(&digest, None).await.unwrap().unwrap();
    let file = blob.local_file().unwrap();
    let size = bytes.len() as u64;
    let destination = FsStore::open(here.path().join("b")).await.unwrap();
    assert_eq!(
        destination
            .link_blob(&digest, size, file, LinkTrust::Verify, LinkMode::Hardlink)
            .await
            .unwrap(),
        Linked::NotSupported
    );
    assert_eq!(destination.stat(&digest).await.unwrap(), None);
    assert_eq!(
        destination
            .link_blob(&digest, size, file, LinkTrust::Verify, LinkMode::Copy)
            .await
            .unwrap(),
        Linked::Copied
    );
    assert_eq!(
        std::fs::read(destination.blob_path(&digest)).unwrap(),
        bytes
    );
    assert_eq!(temp_entries(&destination), 0);
}

/// A store whose directory was removed while it was open (a staged layout given up while a
/// copy's last writes were still under way) is not brought back by those writes: each
/// fails, and nothing appears where the store was. Before, a blob write made the store's
/// directory and `blobs/sha256` again, and a failed copy into a new layout sometimes left
/// that skeleton behind.
#[tokio::test]
async fn writes_to_a_removed_store_fail_and_leave_nothing() {
    use ocikit_store::{LinkMode, LinkTrust};
    let dir = tempfile::tempdir().unwrap();
    let source = FsStore::open(dir.path().join("source")).await.unwrap();
    let bytes = b"a blob that outlives its destination".to_vec();
    let digest = source.put_bytes(&bytes).await.unwrap();
    let blob = source.get(&digest, None).await.unwrap().unwrap();
    let file = blob.local_file().unwrap();

    let root = dir.path().join("gone");
    let store = FsStore::open(&root).await.unwrap();
    std::fs::remove_dir_all(&root).unwrap();

    assert!(store.put_bytes(&bytes).await.is_err());
    assert!(!root.exists(), "a blob write brought the store back");
    for mode in [LinkMode::Copy, LinkMode::Hardlink] {
        assert!(
            store
                .link_blob(&digest, bytes.len() as u64, file, LinkTrust::Verify, mode)
                .await
                .is_err()
        );
        assert!(!root.exists(), "a {mode:?} link brought the store back");
    }
    let key = DocumentKey::new("index.json").unwrap();
    assert!(
        store
            .write_document(&key, bytes.clone().into(), Precondition::None)
            .await
            .is_err()
    );
    assert!(!root.exists(), "a document write brought the store back");
    assert!(
        store
            .delete_document(&key, Precondition::None)
            .await
            .is_err()
            || !root.exists()
    );
    assert!(!root.exists(), "a document delete brought the store back");
    // Reopening is how a store is made: that still creates it.
    FsStore::open(&root).await.unwrap();
    assert!(root.join("blobs").is_dir());
}

/// A page of a listing reuses the directory's entries from the last read while the
/// directory is unchanged (one stat, not a read of 100,000 names), and never serves them once
/// an entry was added, removed or replaced, by this handle or by another one on the same root
/// (another process), even right after the read.
#[tokio::test]
async fn listing_pages_reuse_a_directory_read_only_while_it_is_unchanged() {
    let dir = TempDir::new().unwrap();
    let store = FsStore::open(dir.path().join("layout")).await.unwrap();
    let other = FsStore::open(dir.path().join("layout")).await.unwrap();
    let key = |i: usize| DocumentKey::new(&format!("r/_tags/t{i:04}")).unwrap();
    for i in (0..600).step_by(2) {
        store
            .write_document(&key(i), "{}".into(), Precondition::None)
            .await
            .unwrap();
    }
    let page = |store: FsStore, after: Option<String>| async move {
        store
            .list_documents_after("r/_tags", after.as_deref(), 5)
            .await
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
    };
    let expect = |from: usize| {
        (from..)
            .step_by(2)
            .take(5)
            .map(|i| format!("r/_tags/t{i:04}"))
            .collect::<Vec<_>>()
    };
    // Past the racy window, a read is remembered; pages from anywhere come from it.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(page(store.clone(), None).await, expect(0));
    assert_eq!(
        page(store.clone(), Some("r/_tags/t0100".into())).await,
        expect(102)
    );
    assert_eq!(
        page(store.clone(), Some("r/_tags/t0101".into())).await,
        expect(102)
    );
    // Another handle adds a tag inside the remembered page, and removes one: seen at once.
    other
        .write_document(&key(103), "{}".into(), Precondition::None)
        .await
        .unwrap();
    other
        .delete_document(&key(104), Precondition::None)
        .await
        .unwrap();
    let page_now = page(store.clone(), Some("r/_tags/t0100".into())).await;
    assert_eq!(
        page_now,
        ["t0102", "t0103", "t0106", "t0108", "t0110"]
            .map(|t| format!("r/_tags/{t}"))
            .to_vec()
    );
    // Changes in quick succession, each listed right away, are all seen.
    for i in (1..40).step_by(2) {
        store
            .write_document(&key(i), "{}".into(), Precondition::None)
            .await
            .unwrap();
        let listed = page(store.clone(), Some(format!("r/_tags/t{:04}", i - 1))).await;
        assert_eq!(
            listed[0],
            format!("r/_tags/t{i:04}"),
            "after adding t{i:04}"
        );
    }
    // A directory that went away lists nothing; one made again lists its new entries.
    std::fs::remove_dir_all(dir.path().join("layout/r")).unwrap();
    assert!(page(store.clone(), None).await.is_empty());
    store
        .write_document(&key(7), "{}".into(), Precondition::None)
        .await
        .unwrap();
    assert_eq!(page(store.clone(), None).await, ["r/_tags/t0007"]);
}

/// A write's precondition is checked against the version the store remembers for the file
/// (its own last write or read) only while the file is in the state it remembered; another
/// program changing the file behind the store's back, in any way, fails a precondition on
/// the old version: later with another size, later with the same size but other content in
/// another inode (written beside and renamed over), and at once, in place, with the same
/// size. Small documents and large ones (whose hashing the store keeps) alike.
#[tokio::test]
async fn preconditions_fail_when_the_file_changed_behind_the_stores_back() {
    use std::time::Duration;
    let (store, _dir) = fresh().await;
    for size in [20usize, 300 << 10] {
        let key = DocumentKey::new(&format!("doc-{size}.json")).unwrap();
        let path = store.document_path(&key);
        let content = |fill: u8, len: usize| bytes::Bytes::from(vec![fill; len]);
        fn conflict<T: std::fmt::Debug>(result: Result<T, Error>, what: &str) {
            match result {
                Err(Error::Conflict { .. }) => {}
                other => panic!("{what}: expected a conflict, got {other:?}"),
            }
        }
        let v1 = store
            .write_document(&key, content(b'a', size), Precondition::MustNotExist)
            .await
            .unwrap();
        // The store's own version holds at once, and a compare-and-swap on it goes ahead.
        assert_eq!(
            store.document_version(&key).await.unwrap(),
            Some(v1.clone())
        );
        let v2 = store
            .write_document(&key, content(b'b', size), Precondition::Matches(v1.clone()))
            .await
            .unwrap();
        conflict(
            store
                .write_document(&key, content(b'x', size), Precondition::Matches(v1.clone()))
                .await,
            "an outdated version",
        );

        // Later, another size, in place.
        tokio::time::sleep(Duration::from_millis(150)).await;
        std::fs::write(&path, vec![b'c'; size + 1]).unwrap();
        conflict(
            store
                .write_document(&key, content(b'x', size), Precondition::Matches(v2.clone()))
                .await,
            "a larger file",
        );
        conflict(
            store
                .delete_document(&key, Precondition::Matches(v2.clone()))
                .await,
            "a larger file (delete)",
        );
        assert_eq!(std::fs::read(&path).unwrap(), vec![b'c'; size + 1]);

        // The store's version of what is there now: a write on it goes ahead.
        let v3 = store.read_document(&key).await.unwrap().unwrap().version;
        let v4 = store
            .write_document(&key, content(b'd', size), Precondition::Matches(v3))
            .await
            .unwrap();
        // Later, the same size, other content, another inode.
        tokio::time::sleep(Duration::from_millis(150)).await;
        let before = inode(&path);
        let beside = path.with_extension("new");
        let mut other = vec![b'd'; size];
        other[size / 2] = b'e';
        std::fs::write(&beside, &other).unwrap();
        std::fs::rename(&beside, &path).unwrap();
        assert_ne!(inode(&path), before);
        conflict(
            store
                .write_document(&key, content(b'x', size), Precondition::Matches(v4.clone()))
                .await,
            "the same size renamed over",
        );
        assert_eq!(std::fs::read(&path).unwrap(), other);
        assert_eq!(
            store
                .document_version(&key)
                .await
                .unwrap()
                .unwrap()
                .as_str(),
            Digest::sha256(&other).encoded()
        );

        // At once after the store's own write: the same size, in place, one byte changed.
        let v5 = store.read_document(&key).await.unwrap().unwrap().version;
        let v6 = store
            .write_document(&key, content(b'f', size), Precondition::Matches(v5))
            .await
            .unwrap();
        flip_in_place(&path);
        conflict(
            store
                .write_document(&key, content(b'x', size), Precondition::Matches(v6.clone()))
                .await,
            "a byte flipped in place at once",
        );
        conflict(
            store.delete_document(&key, Precondition::Matches(v6)).await,
            "a byte flipped in place at once (delete)",
        );
        let flipped = std::fs::read(&path).unwrap();
        assert_ne!(flipped, vec![b'f'; size]);
        let v7 = store.document_version(&key).await.unwrap().unwrap();
        assert_eq!(v7.as_str(), Digest::sha256(&flipped).encoded());
        assert!(
            store
                .delete_document(&key, Precondition::Matches(v7))
                .await
                .unwrap()
        );
    }
}
