//! The durability of the filesystem store's writes, watched call by call: a file is renamed
//! into place only after its bytes were fsynced, and the directory that holds the new name is
//! fsynced after the rename (after an unlink, and after a directory was created in it).
//!
//! Killing a writer with SIGKILL cannot show this: the page cache survives the process, so
//! such trials pass with every fsync removed. These tests fail when one is removed.
//! `fs.rs` records each step through `trace!`, which exists only in unit tests.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use bytes::Bytes;
use ocikit_digest::Digest;

use super::FsStore;
use crate::{DocumentKey, LinkMode, LinkTrust, Linked, Precondition, Store, StoreExt};

/// One step that makes (or, missing, breaks) a write's durability.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// `fdatasync` of a file before it is renamed into place.
    SyncFile(PathBuf),
    /// `fsync` of a directory.
    SyncDir(PathBuf),
    /// A directory created.
    CreateDir(PathBuf),
    /// A staged file renamed (or linked) into place.
    Rename { from: PathBuf, to: PathBuf },
    /// A blob or document removed.
    Remove(PathBuf),
}

static STEPS: Mutex<Vec<Step>> = Mutex::new(Vec::new());

pub(super) fn record(step: Step) {
    STEPS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(step);
}

impl Step {
    fn path(&self) -> &Path {
        match self {
            Step::SyncFile(p) | Step::SyncDir(p) | Step::CreateDir(p) | Step::Remove(p) => p,
            Step::Rename { to, .. } => to,
        }
    }
}

/// The steps taken under `root` (a test's temporary directory), in order: other tests run
/// at the same time elsewhere.
fn steps_under(root: &Path) -> Vec<Step> {
    STEPS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .filter(|s| s.path().starts_with(root))
        .cloned()
        .collect()
}

/// Every rename onto `target` was of a file fsynced before it (after it was last renamed
/// onto `target`, if ever), and was followed by an fsync of `target`'s directory. Returns
/// how many renames there were.
fn assert_renamed_durably(steps: &[Step], target: &Path) -> usize {
    let dir = target.parent().unwrap().to_path_buf();
    let renames: Vec<usize> = steps
        .iter()
        .enumerate()
        .filter(|(_, s)| matches!(s, Step::Rename { to, .. } if to == target))
        .map(|(i, _)| i)
        .collect();
    assert!(
        !renames.is_empty(),
        "{target:?} never renamed into place: {steps:#?}"
    );
    let mut previous = 0;
    for &i in &renames {
        let Step::Rename { from, .. } = &steps[i] else {
            unreachable!()
        };
        assert!(
            steps[previous..i].contains(&Step::SyncFile(from.clone())),
            "{from:?} renamed onto {target:?} before its bytes were fsynced: {steps:#?}"
        );
        let next = renames
            .iter()
            .find(|&&j| j > i)
            .copied()
            .unwrap_or(steps.len());
        assert!(
            steps[i + 1..next].contains(&Step::SyncDir(dir.clone())),
            "{dir:?} not fsynced after {target:?} was renamed into it: {steps:#?}"
        );
        previous = i + 1;
    }
    renames.len()
}

/// Every directory created under `root` was followed by an fsync of its parent.
fn assert_created_durably(steps: &[Step]) {
    for (i, step) in steps.iter().enumerate() {
        if let Step::CreateDir(dir) = step {
            let parent = dir.parent().unwrap().to_path_buf();
            assert!(
                steps[i + 1..].contains(&Step::SyncDir(parent.clone())),
                "{parent:?} not fsynced after {dir:?} was created in it: {steps:#?}"
            );
        }
    }
}

/// `path` was removed, and its directory fsynced after.
fn assert_removed_durably(steps: &[Step], path: &Path) {
    let removed = steps
        .iter()
        .rposition(|s| s == &Step::Remove(path.to_path_buf()))
        .unwrap_or_else(|| panic!("{path:?} never removed: {steps:#?}"));
    let dir = path.parent().unwrap().to_path_buf();
    assert!(
        steps[removed + 1..].contains(&Step::SyncDir(dir.clone())),
        "{dir:?} not fsynced after {path:?} was removed: {steps:#?}"
    );
}

fn blob_path(root: &Path, digest: &Digest) -> PathBuf {
    root.join(digest.blob_path())
}

#[tokio::test]
async fn a_blob_is_fsynced_before_its_rename_and_its_directory_after() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let store = FsStore::open(&root).await.unwrap();
    let digest = store.put_bytes(b"durable blob").await.unwrap();
    // Written through a BlobWriter, in pieces, too.
    let data = vec![7u8; 3 << 20];
    let big = Digest::sha256(&data);
    let mut writer = store.writer().await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut writer, &data)
        .await
        .unwrap();
    writer.commit(&big, data.len() as u64).await.unwrap();

    let steps = steps_under(dir.path());
    assert_eq!(
        assert_renamed_durably(&steps, &blob_path(&root, &digest)),
        1
    );
    assert_eq!(assert_renamed_durably(&steps, &blob_path(&root, &big)), 1);
    // `blobs/sha256/` was created by the first write, and made durable in `blobs/`.
    assert!(steps.contains(&Step::CreateDir(root.join("blobs/sha256"))));
    assert_created_durably(&steps);

    assert!(store.delete(&digest).await.unwrap());
    assert_removed_durably(&steps_under(dir.path()), &blob_path(&root, &digest));
}

#[tokio::test]
async fn a_linked_blob_is_fsynced_before_its_rename_and_its_directory_after() {
    let dir = tempfile::tempdir().unwrap();
    let source_root = dir.path().join("source");
    let source = FsStore::open(&source_root).await.unwrap();
    let digest = source.put_bytes(b"linked blob").await.unwrap();
    let root = dir.path().join("target");
    let target = FsStore::open(&root).await.unwrap();
    let file = std::fs::File::open(blob_path(&source_root, &digest)).unwrap();
    for mode in [LinkMode::Copy, LinkMode::Hardlink] {
        let linked = target
            .link_blob(&digest, 11, &file, LinkTrust::Verify, mode)
            .await
            .unwrap();
        assert!(
            !matches!(linked, Linked::NotSupported | Linked::Present),
            "{linked:?}"
        );
        let steps = steps_under(dir.path());
        assert_renamed_durably(&steps, &blob_path(&root, &digest));
        assert_created_durably(&steps);
        assert!(target.delete(&digest).await.unwrap());
    }
}

#[tokio::test]
async fn a_document_is_fsynced_before_its_rename_and_its_directory_after() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let store = FsStore::open(&root).await.unwrap();
    let key = DocumentKey::new("refs/index.json").unwrap();
    let path = root.join("refs/index.json");

    // Created, then replaced by compare-and-swap, then replaced unconditionally.
    let v1 = store
        .write_document(&key, Bytes::from_static(b"{}"), Precondition::MustNotExist)
        .await
        .unwrap();
    let v2 = store
        .write_document(&key, Bytes::from_static(b"[1]"), Precondition::Matches(v1))
        .await
        .unwrap();
    store
        .write_document(&key, Bytes::from_static(b"[2]"), Precondition::None)
        .await
        .unwrap();
    // A refused swap renames nothing.
    assert!(
        store
            .write_document(&key, Bytes::from_static(b"[3]"), Precondition::Matches(v2))
            .await
            .is_err()
    );
    let steps = steps_under(dir.path());
    assert_eq!(assert_renamed_durably(&steps, &path), 3);
    // `refs/` was created for it, and made durable in the root.
    assert!(steps.contains(&Step::CreateDir(root.join("refs"))));
    assert_created_durably(&steps);

    assert!(
        store
            .delete_document(&key, Precondition::None)
            .await
            .unwrap()
    );
    assert_removed_durably(&steps_under(dir.path()), &path);
}
