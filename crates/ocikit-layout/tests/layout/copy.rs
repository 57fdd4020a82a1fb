//! Copying images and indexes between layouts on memory and filesystem stores, and the
//! test images (hand-written JSON, layers built with the `tar` crate) the archive tests
//! share.
// Tests that need a codec are gated on its feature, so that `cargo test --no-default-features`
// runs the rest; what only they use is then unused.
#![cfg_attr(
    not(all(feature = "gzip", feature = "zstd")),
    allow(unused_imports, dead_code)
)]

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::sync::{Arc, Mutex};

use futures::TryStreamExt;
use ocikit_codec::compression::Compression;
use ocikit_codec::writer::{LayerOptions, LayerWriter};
use ocikit_digest::Digest;
use ocikit_digest::oci_spec::image::Descriptor;
use ocikit_layout::copy::{CopyOptions, copy_all, copy_image, copy_tag};
use ocikit_layout::{Document, Error, Event, Layout, Operation, Progress};
use ocikit_store::{FsStore, LinkMode, MemoryStore, Store, StoreExt};
use serde_json::json;

pub(crate) const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub(crate) const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub(crate) const LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub(crate) const LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// A tar of regular files (mode 0644, mtime 0), written by the testkit's own tar writer.
pub(crate) use ocikit_testkit::tarball::tar_of;

pub(crate) fn gzip(tar: &[u8]) -> Vec<u8> {
    let (blob, _) = LayerWriter::from_reader(
        tar,
        Vec::new(),
        LayerOptions::new(Compression::Gzip).with_threads(0),
    )
    .unwrap();
    blob
}

pub(crate) fn digest(bytes: &[u8]) -> Digest {
    Digest::sha256(bytes)
}

/// A test image's parts, as independent facts to check against.
#[derive(Clone, Debug)]
pub(crate) struct TestImage {
    pub(crate) manifest: Descriptor,
    pub(crate) config: Vec<u8>,
    /// Each layer's uncompressed tar.
    pub(crate) tars: Vec<Vec<u8>>,
    /// Each layer's blob as stored.
    pub(crate) blobs: Vec<Vec<u8>>,
}

impl TestImage {
    pub(crate) fn diff_ids(&self) -> Vec<Digest> {
        self.tars.iter().map(|t| digest(t)).collect()
    }
}

/// An image of two layers (one gzip, one plain tar) whose content depends on `seed`.
pub(crate) async fn make_image(layout: &Layout, seed: &str) -> TestImage {
    let motd = format!("hello from {seed}\n");
    let big = seed.repeat(40_000);
    let tar1 = tar_of(&[
        ("etc/motd", motd.as_bytes()),
        ("usr/share/big", big.as_bytes()),
    ]);
    let tar2 = tar_of(&[("etc/hostname", seed.as_bytes())]);
    let blob1 = gzip(&tar1);
    let blob2 = tar2.clone();
    let l1 = layout.put_blob(LAYER_GZIP, &blob1).await.unwrap();
    let l2 = layout.put_blob(LAYER, &blob2).await.unwrap();
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": [format!("SEED={seed}")]},
        "rootfs": {"type": "layers", "diff_ids": [digest(&tar1).to_string(), digest(&tar2).to_string()]},
    }))
    .unwrap();
    let c = layout.put_blob(CONFIG, &config).await.unwrap();
    let manifest = layout
        .put_json(
            MANIFEST,
            &json!({
                "schemaVersion": 2,
                "mediaType": MANIFEST,
                "config": c,
                "layers": [l1, l2],
            }),
        )
        .await
        .unwrap();
    TestImage {
        manifest,
        config,
        tars: vec![tar1, tar2],
        blobs: vec![blob1, blob2],
    }
}

/// An index over an inner index over two images (nesting), plus the images.
pub(crate) async fn make_index(layout: &Layout) -> (Descriptor, Vec<TestImage>) {
    let a = make_image(layout, "amd").await;
    let b = make_image(layout, "arm").await;
    let inner = layout
        .put_json(
            INDEX,
            &json!({"schemaVersion": 2, "mediaType": INDEX, "manifests": [a.manifest, b.manifest]}),
        )
        .await
        .unwrap();
    let outer = layout
        .put_json(
            INDEX,
            &json!({"schemaVersion": 2, "mediaType": INDEX, "manifests": [inner]}),
        )
        .await
        .unwrap();
    (outer, vec![a, b])
}

/// Every blob reachable from the layout's tags, read back verified; returns their digests.
pub(crate) async fn fsck(layout: &Layout) -> HashSet<Digest> {
    let mut seen = HashSet::new();
    let mut pending: Vec<Descriptor> = layout
        .tags()
        .await
        .unwrap()
        .into_iter()
        .map(|(_, d)| d)
        .collect();
    while let Some(d) = pending.pop() {
        let digest: Digest = d.digest().to_string().parse().unwrap();
        if !seen.insert(digest.clone()) {
            continue;
        }
        let bytes = layout
            .store()
            .get_bytes(&digest, u64::MAX)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{digest} missing"));
        assert_eq!(bytes.len() as u64, d.size(), "{digest}");
        if let Document::Manifest { .. } | Document::Index { .. } =
            layout.read_document(&d).await.unwrap()
        {
            pending.extend(layout.read_document(&d).await.unwrap().children());
        }
    }
    seen
}

pub(crate) fn recorder() -> (Progress, Arc<Mutex<Vec<Event>>>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    (
        Progress::new(move |e| sink.lock().unwrap().push(e.clone())),
        events,
    )
}

async fn fs_layout(dir: &std::path::Path) -> (Layout, FsStore) {
    let store = FsStore::open(dir).await.unwrap();
    (Layout::create(store.clone()).await.unwrap(), store)
}

#[cfg(feature = "gzip")]
#[tokio::test]
async fn copies_nested_index_memory_to_fs_then_fs_to_fs() {
    let source = Layout::create(MemoryStore::new()).await.unwrap();
    let (root, images) = make_index(&source).await;
    source.set_tag("multi", &root).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (fs1, _) = fs_layout(&dir.path().join("one")).await;
    let (progress, events) = recorder();
    let report = copy_tag(
        &source,
        "multi",
        &fs1,
        Some("copied"),
        &CopyOptions::new()
            .with_progress(progress)
            .with_concurrency(3),
    )
    .await
    .unwrap();
    // 2 indexes + 2 x (manifest + config + 2 layers) = 10 blobs.
    assert_eq!(report.blobs, 10);
    assert_eq!(report.copied, 10);
    assert_eq!(fs1.resolve("copied").await.unwrap().digest(), root.digest());
    assert_eq!(fsck(&fs1).await.len(), 10);
    let layer = digest(&images[0].blobs[0]);
    assert_eq!(
        &fs1.store()
            .get_bytes(&layer, u64::MAX)
            .await
            .unwrap()
            .unwrap()[..],
        &images[0].blobs[0][..]
    );
    {
        let events = events.lock().unwrap();
        let done: Vec<&Digest> = events
            .iter()
            .filter_map(|e| match e {
                Event::Done {
                    operation: Operation::Copy,
                    digest,
                    ..
                } => Some(digest),
                _ => None,
            })
            .collect();
        assert_eq!(done.len(), 10);
        // Children before parents: the outer index is the last blob done, and every
        // manifest is done after its layers.
        assert_eq!(done.last().unwrap().to_string(), root.digest().to_string());
        let at = |d: &Digest| done.iter().position(|x| *x == d).unwrap();
        let manifest: Digest = images[0].manifest.digest().to_string().parse().unwrap();
        assert!(at(&layer) < at(&manifest));
        assert!(events.iter().any(|e| matches!(
            e,
            Event::Progress {
                operation: Operation::Copy,
                ..
            }
        )));
        assert!(events.iter().any(|e| matches!(
            e,
            Event::Started {
                operation: Operation::Copy,
                ..
            }
        )));
    }

    // fs -> fs, then again: the second copy skips everything.
    let (fs2, _) = fs_layout(&dir.path().join("two")).await;
    copy_tag(&fs1, "copied", &fs2, None, &CopyOptions::new())
        .await
        .unwrap();
    assert_eq!(fsck(&fs2).await.len(), 10);
    let (progress, events) = recorder();
    let again = copy_tag(
        &fs1,
        "copied",
        &fs2,
        Some("again"),
        &CopyOptions::new().with_progress(progress),
    )
    .await
    .unwrap();
    assert_eq!(
        (
            again.skipped,
            again.copied,
            again.hardlinked,
            again.reflinked
        ),
        (10, 0, 0, 0)
    );
    assert_eq!(fs2.resolve("again").await.unwrap().digest(), root.digest());
    let events = events.lock().unwrap();
    assert_eq!(events.len(), 10);
    assert!(events.iter().all(|e| matches!(
        e,
        Event::Skipped {
            operation: Operation::Copy,
            ..
        }
    )));
}

#[cfg(feature = "gzip")]
#[tokio::test]
async fn copy_between_every_pair_of_backends() {
    let dir = tempfile::tempdir().unwrap();
    let make = |i: usize| {
        let path = dir.path().join(format!("l{i}"));
        async move {
            if i.is_multiple_of(2) {
                Layout::create(MemoryStore::new()).await.unwrap()
            } else {
                Layout::create(FsStore::open(path).await.unwrap())
                    .await
                    .unwrap()
            }
        }
    };
    for (a, b) in [(0, 2), (0, 1), (1, 0), (1, 3)] {
        let source = make(a).await;
        let destination = make(b + 10).await;
        let image = make_image(&source, "pair").await;
        source.set_tag("x", &image.manifest).await.unwrap();
        let report = copy_image(
            &source,
            &image.manifest,
            &destination,
            "y",
            &CopyOptions::new(),
        )
        .await
        .unwrap();
        assert_eq!(report.blobs, 4);
        assert_eq!(fsck(&destination).await.len(), 4);
        assert_eq!(destination.tags().await.unwrap().len(), 1);
    }
}

#[cfg(feature = "gzip")]
#[tokio::test]
async fn fs_to_fs_hardlinks_share_blobs_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let (source, source_store) = fs_layout(&dir.path().join("src")).await;
    let image = make_image(&source, "linked").await;
    source.set_tag("v1", &image.manifest).await.unwrap();
    let (destination, destination_store) = fs_layout(&dir.path().join("dst")).await;
    let report = copy_tag(
        &source,
        "v1",
        &destination,
        None,
        &CopyOptions::new().with_link_mode(LinkMode::Hardlink),
    )
    .await
    .unwrap();
    // The layers and the config are opaque blobs: hardlinked, as asked. The manifest was
    // read by the walk and is written from memory.
    assert_eq!(report.hardlinked, 3, "{report:?}");
    assert_eq!(report.copied, 1);
    for blob in &image.blobs {
        let d = digest(blob);
        let a = std::fs::metadata(source_store.blob_path(&d)).unwrap();
        let b = std::fs::metadata(destination_store.blob_path(&d)).unwrap();
        assert_eq!((a.dev(), a.ino()), (b.dev(), b.ino()), "same inode");
        assert_eq!(
            std::fs::read(destination_store.blob_path(&d)).unwrap(),
            *blob
        );
    }
    assert_eq!(fsck(&destination).await.len(), 4);
    assert!(
        std::fs::read_dir(destination_store.temp_dir())
            .unwrap()
            .next()
            .is_none(),
        "no staging names left behind"
    );

    // Links off: real copies, other inodes.
    let (third, third_store) = fs_layout(&dir.path().join("third")).await;
    let report = copy_tag(
        &source,
        "v1",
        &third,
        None,
        &CopyOptions::new().with_links(false),
    )
    .await
    .unwrap();
    assert_eq!(
        (report.copied, report.hardlinked, report.reflinked),
        (4, 0, 0)
    );
    let d = digest(&image.blobs[0]);
    assert_ne!(
        std::fs::metadata(source_store.blob_path(&d)).unwrap().ino(),
        std::fs::metadata(third_store.blob_path(&d)).unwrap().ino()
    );
}

/// Overwrites a stored blob with other bytes of the same size (bit rot, tampering).
fn corrupt(store: &FsStore, d: &Digest) {
    let path = store.blob_path(d);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, bytes).unwrap();
}

fn copy_failure(result: Result<ocikit_layout::copy::CopyReport, Error>) -> (Digest, Error) {
    match result {
        Err(Error::Copy { digest, source }) => (digest, *source),
        other => panic!("expected a copy error, got {other:?}"),
    }
}

#[cfg(feature = "gzip")]
#[tokio::test]
async fn corrupt_or_missing_source_blobs_fail_typed_and_tag_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (source, source_store) = fs_layout(&dir.path().join("src")).await;
    let image = make_image(&source, "rot").await;
    source.set_tag("v1", &image.manifest).await.unwrap();
    let layer = digest(&image.blobs[0]);
    corrupt(&source_store, &layer);
    // Every way the blob can travel: linked and verified, streamed to fs, streamed to memory.
    for (name, options, memory) in [
        ("linked", CopyOptions::new(), false),
        ("streamed", CopyOptions::new().with_links(false), false),
        ("to memory", CopyOptions::new(), true),
    ] {
        let destination = if memory {
            Layout::create(MemoryStore::new()).await.unwrap()
        } else {
            fs_layout(&dir.path().join(name.replace(' ', "-"))).await.0
        };
        let (d, cause) = copy_failure(copy_tag(&source, "v1", &destination, None, &options).await);
        assert_eq!(d, layer, "{name}");
        assert!(
            matches!(cause, Error::Store(ocikit_store::Error::DigestMismatch { ref expected, .. }) if *expected == layer),
            "{name}: {cause:?}"
        );
        assert!(destination.tags().await.unwrap().is_empty(), "{name}");
        assert_eq!(
            destination.store().stat(&layer).await.unwrap(),
            None,
            "{name}"
        );
    }

    // A corrupt manifest fails the walk, naming the manifest.
    let (source, source_store) = fs_layout(&dir.path().join("src2")).await;
    let image = make_image(&source, "bad manifest").await;
    source.set_tag("v1", &image.manifest).await.unwrap();
    let manifest: Digest = image.manifest.digest().to_string().parse().unwrap();
    corrupt(&source_store, &manifest);
    let destination = Layout::create(MemoryStore::new()).await.unwrap();
    let (d, _) =
        copy_failure(copy_tag(&source, "v1", &destination, None, &CopyOptions::new()).await);
    assert_eq!(d, manifest);
    assert!(destination.tags().await.unwrap().is_empty());

    // A missing layer.
    let (source, source_store) = fs_layout(&dir.path().join("src3")).await;
    let image = make_image(&source, "gone").await;
    source.set_tag("v1", &image.manifest).await.unwrap();
    let gone = digest(&image.blobs[1]);
    source_store.delete(&gone).await.unwrap();
    let destination = Layout::create(MemoryStore::new()).await.unwrap();
    let (d, cause) =
        copy_failure(copy_tag(&source, "v1", &destination, None, &CopyOptions::new()).await);
    assert_eq!(d, gone);
    assert!(
        matches!(cause, Error::Store(ocikit_store::Error::NotFound { .. })),
        "{cause:?}"
    );
    assert!(destination.tags().await.unwrap().is_empty());
}

#[cfg(feature = "gzip")]
#[tokio::test]
async fn trusted_links_skip_hashing_and_verified_ones_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let (source, source_store) = fs_layout(&dir.path().join("src")).await;
    let image = make_image(&source, "trust").await;
    source.set_tag("v1", &image.manifest).await.unwrap();
    let layer = digest(&image.blobs[0]);
    corrupt(&source_store, &layer);
    let (verified, _) = fs_layout(&dir.path().join("verified")).await;
    assert!(
        copy_tag(&source, "v1", &verified, None, &CopyOptions::new())
            .await
            .is_err()
    );
    // Trusting the source publishes what it has without reading it: exactly why trust is
    // only for stores whose blobs were verified on write.
    let (trusted, trusted_store) = fs_layout(&dir.path().join("trusted")).await;
    let report = copy_tag(
        &source,
        "v1",
        &trusted,
        None,
        &CopyOptions::new().with_trusted_source(true),
    )
    .await
    .unwrap();
    assert_eq!(report.hardlinked, 0, "{report:?}");
    assert_eq!(
        std::fs::read(trusted_store.blob_path(&layer)).unwrap(),
        std::fs::read(source_store.blob_path(&layer)).unwrap(),
        "published as it was, unread"
    );
}

#[cfg(feature = "gzip")]
#[tokio::test]
async fn copy_all_merges_every_entry_and_refuses_bad_tags_first() {
    let source = Layout::create(MemoryStore::new()).await.unwrap();
    let a = make_image(&source, "a").await;
    let b = make_image(&source, "b").await;
    source.set_tag("a", &a.manifest).await.unwrap();
    source.set_tag("b", &b.manifest).await.unwrap();
    source
        .edit_index(|index| index.add(&a.manifest).map(|()| true))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (destination, _) = fs_layout(dir.path()).await;
    let report = copy_all(&source, &destination, &CopyOptions::new())
        .await
        .unwrap();
    assert_eq!(report.blobs, 8);
    let tags: Vec<String> = destination
        .tags()
        .await
        .unwrap()
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    assert_eq!(tags, ["a", "b"]);
    assert_eq!(destination.index().await.unwrap().manifests().len(), 3);

    let bad = Layout::create(MemoryStore::new()).await.unwrap();
    assert!(matches!(
        copy_image(&source, &a.manifest, &bad, "../x", &CopyOptions::new()).await,
        Err(Error::InvalidTag { .. })
    ));
    assert_eq!(
        bad.store()
            .list()
            .try_collect::<Vec<_>>()
            .await
            .unwrap()
            .len(),
        0,
        "nothing copied"
    );
    assert!(matches!(
        copy_tag(&source, "nope", &bad, None, &CopyOptions::new()).await,
        Err(Error::TagNotFound { .. })
    ));
}

#[cfg(feature = "gzip")]
#[tokio::test]
async fn a_squatter_at_the_destination_is_replaced_by_verified_content() {
    let dir = tempfile::tempdir().unwrap();
    let (source, _) = fs_layout(&dir.path().join("src")).await;
    let image = make_image(&source, "squat").await;
    source.set_tag("v1", &image.manifest).await.unwrap();
    for links in [true, false] {
        let (destination, store) = fs_layout(&dir.path().join(format!("dst-{links}"))).await;
        let layer = digest(&image.blobs[0]);
        let path = store.blob_path(&layer);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"truncated").unwrap();
        copy_tag(
            &source,
            "v1",
            &destination,
            None,
            &CopyOptions::new().with_links(links),
        )
        .await
        .unwrap();
        assert_eq!(
            std::fs::read(&path).unwrap(),
            image.blobs[0],
            "links: {links}"
        );
        assert_eq!(fsck(&destination).await.len(), 4);
    }
}

#[cfg(feature = "gzip")]
#[tokio::test]
async fn graphs_deeper_than_the_limit_are_refused() {
    let source = Layout::create(MemoryStore::new()).await.unwrap();
    let image = make_image(&source, "deep").await;
    let mut top = image.manifest.clone();
    for _ in 0..=ocikit_layout::copy::MAX_GRAPH_DEPTH {
        top = source
            .put_json(
                INDEX,
                &json!({"schemaVersion": 2, "mediaType": INDEX, "manifests": [top]}),
            )
            .await
            .unwrap();
    }
    source.set_tag("deep", &top).await.unwrap();
    let destination = Layout::create(MemoryStore::new()).await.unwrap();
    match copy_tag(&source, "deep", &destination, None, &CopyOptions::new()).await {
        Err(Error::GraphTooLarge { root, .. }) => {
            assert_eq!(root.to_string(), top.digest().to_string())
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        destination
            .store()
            .list()
            .try_collect::<Vec<_>>()
            .await
            .unwrap()
            .len(),
        0
    );
    assert!(destination.tags().await.unwrap().is_empty());
}

/// Every long operation's future can be spawned on a multi-threaded runtime, and the
/// option and report types cross threads.
#[test]
fn futures_are_send() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<CopyOptions>();
    send_sync::<ocikit_layout::copy::CopyReport>();
    send_sync::<ocikit_layout::archive::oci::ImportOptions>();
    send_sync::<ocikit_layout::archive::oci::ImportReport>();
    send_sync::<ocikit_layout::archive::oci::ExportReport>();
    send_sync::<ocikit_layout::archive::docker::Options>();
    send_sync::<ocikit_layout::archive::docker::ImportReport>();
    send_sync::<ocikit_layout::archive::docker::ExportReport>();
    send_sync::<ocikit_layout::archive::ArchiveErrorKind>();
    send_sync::<Error>();
    fn send<T: Send>(_: T) {}
    let a = futures::executor::block_on(Layout::create(MemoryStore::new())).unwrap();
    let b = a.clone();
    let options = CopyOptions::new();
    send(copy_tag(&a, "x", &b, None, &options));
    send(ocikit_layout::copy::copy_all(&a, &b, &options));
    let import = ocikit_layout::archive::oci::ImportOptions::new();
    let export = ocikit_layout::archive::oci::ExportOptions::new();
    send(ocikit_layout::archive::oci::import(&a, &b""[..], &import));
    send(ocikit_layout::archive::oci::export(
        &a,
        None,
        Vec::new(),
        &export,
    ));
    let docker = ocikit_layout::archive::docker::Options::new();
    send(ocikit_layout::archive::docker::import(
        &a,
        &b""[..],
        &docker,
    ));
    send(ocikit_layout::archive::docker::export(
        &a,
        &[],
        Vec::new(),
        &docker,
    ));
}

/// A memory store whose `get` takes a while and counts how many run at once.
#[derive(Debug, Default)]
struct Slow {
    inner: MemoryStore,
    now: std::sync::atomic::AtomicUsize,
    most: std::sync::atomic::AtomicUsize,
}

impl Slow {
    async fn enter(&self) {
        use std::sync::atomic::Ordering::SeqCst;
        let now = self.now.fetch_add(1, SeqCst) + 1;
        self.most.fetch_max(now, SeqCst);
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        self.now.fetch_sub(1, SeqCst);
    }
}

impl Store for Slow {
    fn stat<'a, 'b, 'c>(
        &'a self,
        digest: &'b Digest,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = ocikit_store::Result<Option<u64>>> + Send + 'c>,
    >
    where
        'a: 'c,
        'b: 'c,
    {
        self.inner.stat(digest)
    }
    fn get<'a, 'b, 'c>(
        &'a self,
        digest: &'b Digest,
        range: Option<std::ops::Range<u64>>,
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<Output = ocikit_store::Result<Option<ocikit_store::Blob>>>
                + Send
                + 'c,
        >,
    >
    where
        'a: 'c,
        'b: 'c,
    {
        Box::pin(async move {
            self.enter().await;
            self.inner.get(digest, range).await
        })
    }
    fn stage<'a, 'c>(
        &'a self,
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<Output = ocikit_store::Result<Box<dyn ocikit_store::Staging>>>
                + Send
                + 'c,
        >,
    >
    where
        'a: 'c,
    {
        self.inner.stage()
    }
    fn delete<'a, 'b, 'c>(
        &'a self,
        digest: &'b Digest,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ocikit_store::Result<bool>> + Send + 'c>>
    where
        'a: 'c,
        'b: 'c,
    {
        self.inner.delete(digest)
    }
    fn list(&self) -> futures::stream::BoxStream<'_, ocikit_store::Result<Digest>> {
        self.inner.list()
    }
    fn read_document<'a, 'b, 'c>(
        &'a self,
        key: &'b ocikit_store::DocumentKey,
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<Output = ocikit_store::Result<Option<ocikit_store::Document>>>
                + Send
                + 'c,
        >,
    >
    where
        'a: 'c,
        'b: 'c,
    {
        self.inner.read_document(key)
    }
    fn write_document<'a, 'b, 'c>(
        &'a self,
        key: &'b ocikit_store::DocumentKey,
        bytes: bytes::Bytes,
        precondition: ocikit_store::Precondition,
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<Output = ocikit_store::Result<ocikit_store::Version>>
                + Send
                + 'c,
        >,
    >
    where
        'a: 'c,
        'b: 'c,
    {
        self.inner.write_document(key, bytes, precondition)
    }
    fn delete_document<'a, 'b, 'c>(
        &'a self,
        key: &'b ocikit_store::DocumentKey,
        precondition: ocikit_store::Precondition,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ocikit_store::Result<bool>> + Send + 'c>>
    where
        'a: 'c,
        'b: 'c,
    {
        self.inner.delete_document(key, precondition)
    }
    fn list_documents<'a, 'b, 'c>(
        &'a self,
        prefix: &'b str,
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<Output = ocikit_store::Result<Vec<ocikit_store::DocumentKey>>>
                + Send
                + 'c,
        >,
    >
    where
        'a: 'c,
        'b: 'c,
    {
        self.inner.list_documents(prefix)
    }
}

#[cfg(feature = "gzip")]
#[tokio::test]
async fn copies_several_blobs_at_once_but_no_more_than_asked() {
    for concurrency in [1, 3] {
        let slow = Arc::new(Slow::default());
        let source = Layout::create(slow.clone()).await.unwrap();
        let (root, _) = make_index(&source).await;
        let destination = Layout::create(MemoryStore::new()).await.unwrap();
        let report = copy_image(
            &source,
            &root,
            &destination,
            "x",
            &CopyOptions::new().with_concurrency(concurrency),
        )
        .await
        .unwrap();
        assert_eq!(report.copied, 10);
        // Six configs and layers are streamed from the source (documents come from the walk).
        assert_eq!(
            slow.most.load(std::sync::atomic::Ordering::SeqCst),
            concurrency,
            "concurrency {concurrency}"
        );
    }
}

/// Flips the last byte of a stored blob in place (same inode, as bit rot or a stray write
/// would), unlike [`corrupt`], which replaces the file.
fn flip_in_place(store: &FsStore, d: &Digest) {
    use std::os::unix::fs::FileExt;
    let path = store.blob_path(d);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let at = file.metadata().unwrap().len() - 1;
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, at).unwrap();
    file.write_all_at(&[byte[0] ^ 0xff], at).unwrap();
}

#[cfg(feature = "gzip")]
#[tokio::test]
async fn a_default_copy_is_independent_of_its_source() {
    let dir = tempfile::tempdir().unwrap();
    let (source, source_store) = fs_layout(&dir.path().join("a")).await;
    let image = make_image(&source, "independent").await;
    source.set_tag("v1", &image.manifest).await.unwrap();
    let (destination, destination_store) = fs_layout(&dir.path().join("b")).await;
    let report = copy_tag(&source, "v1", &destination, None, &CopyOptions::new())
        .await
        .unwrap();
    assert_eq!(report.hardlinked, 0, "{report:?}");
    let layer = digest(&image.blobs[0]);
    let a = std::fs::metadata(source_store.blob_path(&layer)).unwrap();
    let b = std::fs::metadata(destination_store.blob_path(&layer)).unwrap();
    assert_ne!((a.dev(), a.ino()), (b.dev(), b.ino()), "its own inode");

    flip_in_place(&destination_store, &layer);
    let options = ocikit_layout::FsckOptions::new();
    let in_source = source.fsck(&options).await.unwrap();
    assert!(in_source.is_clean(), "{:?}", in_source.problems);
    let in_destination = destination.fsck(&options).await.unwrap();
    let flagged: Vec<&Digest> = in_destination.problems.iter().map(|p| &p.digest).collect();
    assert_eq!(flagged, [&layer], "{:?}", in_destination.problems);

    // Hardlinks, only when asked, share the files: that is what the option says it does.
    let (linked, linked_store) = fs_layout(&dir.path().join("c")).await;
    let report = copy_tag(
        &source,
        "v1",
        &linked,
        None,
        &CopyOptions::new().with_link_mode(LinkMode::Hardlink),
    )
    .await
    .unwrap();
    assert_eq!(report.hardlinked, 3, "{report:?}");
    let c = std::fs::metadata(linked_store.blob_path(&layer)).unwrap();
    assert_eq!((a.dev(), a.ino()), (c.dev(), c.ino()), "one shared inode");
    flip_in_place(&linked_store, &layer);
    assert!(!source.fsck(&options).await.unwrap().is_clean());
}
