//! A new layout on a local filesystem, made all or nothing: `Layout::create_staged`.

use ocikit_layout::{Error, Layout};

fn listing(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn a_dropped_staged_layout_leaves_nothing() {
    let parent = tempfile::tempdir().unwrap();
    let target = parent.path().join("deep/er/layout");
    let staged = Layout::create_staged(&target).await.unwrap();
    let config = staged
        .layout()
        .put_blob("application/vnd.oci.empty.v1+json", b"{}")
        .await
        .unwrap();
    staged.layout().set_tag("v1", &config).await.unwrap();
    assert!(!target.exists(), "the layout appeared before its commit");
    drop(staged);
    // Dropped, the staging directory is removed on a blocking thread: wait for it.
    ocikit_testkit::eventually(
        "the staging directory removed",
        std::time::Duration::from_secs(30),
        || async { listing(parent.path()).is_empty().then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn a_discarded_staged_layout_is_gone_at_once() {
    let parent = tempfile::tempdir().unwrap();
    let target = parent.path().join("layout");
    let staged = Layout::create_staged(&target).await.unwrap();
    staged
        .layout()
        .put_blob("application/octet-stream", b"partial")
        .await
        .unwrap();
    staged.discard().await;
    assert!(
        listing(parent.path()).is_empty(),
        "{:?}",
        listing(parent.path())
    );
}

#[tokio::test]
async fn a_committed_staged_layout_appears_whole() {
    let parent = tempfile::tempdir().unwrap();
    let target = parent.path().join("deep/layout");
    let staged = Layout::create_staged(&target).await.unwrap();
    assert!(staged.is_new());
    let config = staged
        .layout()
        .put_blob("application/vnd.oci.empty.v1+json", b"{}")
        .await
        .unwrap();
    staged.layout().set_tag("v1", &config).await.unwrap();
    let layout = staged.commit().await.unwrap();
    assert_eq!(
        layout.resolve("v1").await.unwrap().digest(),
        config.digest()
    );
    assert_eq!(listing(parent.path()), ["deep"]);
    assert_eq!(listing(&parent.path().join("deep")), ["layout"]);
    let names = listing(&target);
    assert!(names.contains(&"oci-layout".to_string()), "{names:?}");
    assert!(
        !names.iter().any(|n| n == "lock"),
        "the staging lock ended up in the layout: {names:?}"
    );
    // Reopened from its final place, by anyone.
    let reopened = Layout::open(ocikit_store::FsStore::open(&target).await.unwrap())
        .await
        .unwrap();
    assert_eq!(
        reopened.resolve("v1").await.unwrap().digest(),
        config.digest()
    );
}

#[tokio::test]
async fn an_empty_directory_is_replaced_and_a_full_one_refused() {
    use std::os::unix::fs::PermissionsExt;
    let parent = tempfile::tempdir().unwrap();
    let empty = parent.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    std::fs::set_permissions(&empty, std::fs::Permissions::from_mode(0o750)).unwrap();
    let staged = Layout::create_staged(&empty).await.unwrap();
    staged.commit().await.unwrap();
    assert!(empty.join("oci-layout").is_file());
    let mode = std::fs::metadata(&empty).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o750, "the replaced directory's mode was not kept");

    // A directory with something in it is not a new layout.
    match Layout::create_staged(&empty).await {
        Err(Error::TargetExists { path }) => assert_eq!(path, empty),
        other => panic!("expected TargetExists, got {:?}", other.map(|_| ())),
    }
    // ...but the destination form opens it in place.
    let existing = Layout::create_or_stage(&empty).await.unwrap();
    assert!(!existing.is_new());
    existing.commit().await.unwrap();
    assert_eq!(listing(parent.path()), ["empty"]);
}

#[tokio::test]
async fn stale_staging_is_removed_and_live_staging_left_alone() {
    let parent = tempfile::tempdir().unwrap();
    let target = parent.path().join("new");
    // Left by a killed run: a partial layout, its lock file held by nobody.
    let stale = parent.path().join(".new.ocikit-staging-killed1");
    std::fs::create_dir_all(stale.join("layout/blobs/sha256")).unwrap();
    std::fs::write(stale.join("lock"), b"").unwrap();
    // A run still going (a lock this test holds).
    let live = parent.path().join(".new.ocikit-staging-running");
    std::fs::create_dir_all(live.join("layout")).unwrap();
    let held = std::fs::File::create(live.join("lock")).unwrap();
    held.lock().unwrap();

    let staged = Layout::create_staged(&target).await.unwrap();
    staged.commit().await.unwrap();
    assert_eq!(
        listing(parent.path()),
        [".new.ocikit-staging-running", "new"]
    );
    drop(held);
    std::fs::remove_dir_all(&target).unwrap();
    let staged = Layout::create_staged(&target).await.unwrap();
    staged.discard().await;
    assert!(
        listing(parent.path()).is_empty(),
        "{:?}",
        listing(parent.path())
    );
}

#[tokio::test]
async fn scratch_space_is_removed_when_dropped_and_after_a_killed_run() {
    use ocikit_layout::Scratch;
    let parent = tempfile::tempdir().unwrap();
    let target = parent.path().join("dest");
    // Left by a killed run (lock held by nobody), and one still in use.
    let stale = parent.path().join(".dest.ocikit-scratch-killed1");
    std::fs::create_dir_all(stale.join("scratch/layout/blobs")).unwrap();
    std::fs::write(stale.join("lock"), b"").unwrap();
    let live = parent.path().join(".dest.ocikit-scratch-running");
    std::fs::create_dir_all(live.join("scratch")).unwrap();
    let held = std::fs::File::create(live.join("lock")).unwrap();
    held.lock().unwrap();

    let scratch = Scratch::near(&target).await.unwrap();
    assert!(scratch.path().is_dir());
    assert!(scratch.path().starts_with(parent.path()));
    std::fs::write(scratch.path().join("work"), b"work").unwrap();
    assert!(!stale.exists(), "the killed run's scratch stayed");
    assert!(live.join("scratch").is_dir(), "a live scratch was touched");
    drop(scratch);
    assert_eq!(listing(parent.path()), [".dest.ocikit-scratch-running"]);
    drop(held);
    // Beside a path whose parents do not exist yet: in the nearest existing ancestor.
    let scratch = Scratch::near(parent.path().join("a/b/dest")).await.unwrap();
    assert_eq!(
        scratch.path().parent().unwrap().parent().unwrap(),
        parent.path()
    );
    assert!(live.exists(), "another path's scratch was touched");
    drop(scratch);
    // The next run for `dest` removes the one whose process is gone.
    let scratch = Scratch::near(&target).await.unwrap();
    assert!(!live.exists(), "the finished run's scratch stayed");
    drop(scratch);
    assert!(
        listing(parent.path()).is_empty(),
        "{:?}",
        listing(parent.path())
    );
}
