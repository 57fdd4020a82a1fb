//! The conformance suite: the behaviour every [`Store`] backend must have, as checks that
//! every backend's tests run (feature `conformance`).
//!
//! Each check takes a fresh, empty store and panics with a message naming what broke; it is
//! test code, so the "never panic" rule of the library does not apply to it. A backend's test
//! file runs them all with [`conformance_tests!`](crate::conformance_tests):
//!
//! ```
//! // In a backend's integration tests: one `#[tokio::test]` per check.
//! ocikit_store::conformance_tests!(async { ocikit_store::MemoryStore::new() });
//! # fn main() {}
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use ocikit_digest::{Algorithm, Digest, Hasher};
use tokio::io::AsyncWriteExt;

use crate::{DocumentKey, Error, Precondition, Store, StoreExt};

/// Deterministic pseudo-random bytes (xorshift), so checks need no fixtures.
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

async fn put(store: &dyn Store, data: &[u8]) -> Digest {
    let digest = Digest::sha256(data);
    let mut writer = store.writer().await.unwrap();
    for chunk in data.chunks(7919) {
        writer.write_all(chunk).await.unwrap();
    }
    writer.commit(&digest, data.len() as u64).await.unwrap();
    digest
}

async fn read_all(
    store: &dyn Store,
    digest: &Digest,
    range: Option<std::ops::Range<u64>>,
) -> Vec<u8> {
    let blob = store.open(digest, range).await.unwrap();
    let expected_len = blob.len();
    let chunks: Vec<Bytes> = blob.into_stream().try_collect().await.unwrap();
    let data = chunks.concat();
    assert_eq!(
        data.len() as u64,
        expected_len,
        "stream length differs from Blob::len"
    );
    data
}

async fn listed(store: &dyn Store) -> Vec<Digest> {
    let mut all: Vec<Digest> = store.list().try_collect().await.unwrap();
    all.sort();
    all
}

/// Blobs written in chunks come back byte for byte, with the right size.
pub async fn round_trip(store: &dyn Store) {
    for (seed, len) in [(1, 0), (2, 1), (3, 65_536), (4, 3 << 20)] {
        let data = bytes(seed, len);
        let digest = put(store, &data).await;
        assert_eq!(store.stat(&digest).await.unwrap(), Some(len as u64));
        assert_eq!(read_all(store, &digest, None).await, data);
        let whole = store.get_bytes(&digest, u64::MAX).await.unwrap().unwrap();
        assert_eq!(&whole[..], &data[..]);
        if let Some(local) = store.local_blobs() {
            let (mut file, size) = local.open_blocking(&digest).unwrap().unwrap();
            assert_eq!(size, len as u64);
            let mut read = Vec::new();
            std::io::Read::read_to_end(&mut file, &mut read).unwrap();
            assert_eq!(read, data, "a local blob file holds the blob");
        }
    }
}

/// Absent blobs are `None`, and `require`/`open` turn that into `NotFound`.
pub async fn missing_is_none(store: &dyn Store) {
    let digest = Digest::sha256(b"never stored");
    assert_eq!(store.stat(&digest).await.unwrap(), None);
    assert!(store.get(&digest, None).await.unwrap().is_none());
    assert!(
        matches!(store.require(&digest).await, Err(Error::NotFound { digest: d }) if d == digest)
    );
    assert!(!store.delete(&digest).await.unwrap());
    assert!(store.get_bytes(&digest, 10).await.unwrap().is_none());
    if let Some(local) = store.local_blobs() {
        assert!(local.open_blocking(&digest).unwrap().is_none());
    }
}

/// A commit under the wrong digest or size fails and publishes nothing, under either name.
pub async fn mismatches_are_rejected_and_invisible(store: &dyn Store) {
    let data = bytes(10, 10_000);
    let right = Digest::sha256(&data);
    let wrong = Digest::sha256(b"other");

    let mut writer = store.writer().await.unwrap();
    writer.write_all(&data).await.unwrap();
    match writer.commit(&wrong, data.len() as u64).await {
        Err(Error::DigestMismatch { expected, actual }) => {
            assert_eq!(expected, wrong);
            assert_eq!(actual, right);
        }
        other => panic!("expected DigestMismatch, got {other:?}"),
    }

    let mut writer = store.writer().await.unwrap();
    writer.write_all(&data).await.unwrap();
    assert!(matches!(
        writer.commit(&right, data.len() as u64 + 1).await,
        Err(Error::SizeMismatch {
            expected: 10_001,
            actual: 10_000
        })
    ));

    for digest in [&right, &wrong] {
        assert_eq!(store.stat(digest).await.unwrap(), None);
    }
    assert!(listed(store).await.is_empty(), "a rejected blob was listed");
}

/// Aborted and dropped writers leave nothing visible.
pub async fn abort_leaves_no_trace(store: &dyn Store) {
    let data = bytes(20, 100_000);
    let digest = Digest::sha256(&data);
    let mut writer = store.writer().await.unwrap();
    writer.write_all(&data).await.unwrap();
    writer.abort().await.unwrap();

    let mut writer = store.writer().await.unwrap();
    writer.write_all(&data).await.unwrap();
    drop(writer);

    assert_eq!(store.stat(&digest).await.unwrap(), None);
    assert!(listed(store).await.is_empty());
}

/// Committing content that exists already succeeds and changes nothing.
pub async fn duplicate_commit_succeeds(store: &dyn Store) {
    let data = bytes(30, 5000);
    let first = put(store, &data).await;
    let second = put(store, &data).await;
    assert_eq!(first, second);
    assert_eq!(listed(store).await, vec![first.clone()]);
    assert_eq!(read_all(store, &first, None).await, data);
    assert_eq!(store.put_bytes(&data).await.unwrap(), first);
}

/// Many writers of the same digest at once all succeed and the blob is intact.
pub async fn concurrent_writers_of_one_digest(store: &dyn Store) {
    let data = Arc::new(bytes(40, 1 << 20));
    let digest = Digest::sha256(&data);
    let results = futures::future::join_all((0..8).map(|i| {
        let data = data.clone();
        let digest = digest.clone();
        async move {
            let mut writer = store.writer().await?;
            for chunk in data.chunks(4096 + i * 100) {
                writer.write_all(chunk).await.map_err(Error::Stream)?;
                tokio::task::yield_now().await;
            }
            writer.commit(&digest, data.len() as u64).await
        }
    }))
    .await;
    for result in results {
        result.unwrap();
    }
    assert_eq!(read_all(store, &digest, None).await, *data);
    assert_eq!(listed(store).await, vec![digest]);
}

/// Listing shows exactly the stored blobs, before and after a delete.
pub async fn list_after_delete(store: &dyn Store) {
    let mut digests = Vec::new();
    for seed in 50..55 {
        digests.push(put(store, &bytes(seed, 100 + seed as usize)).await);
    }
    digests.sort();
    assert_eq!(listed(store).await, digests);
    let gone = digests.remove(2);
    assert!(store.delete(&gone).await.unwrap());
    assert!(!store.delete(&gone).await.unwrap());
    assert_eq!(store.stat(&gone).await.unwrap(), None);
    assert_eq!(listed(store).await, digests);
}

/// Ranged reads at and past the edges.
pub async fn ranged_reads(store: &dyn Store) {
    let data = bytes(60, 2048);
    let digest = put(store, &data).await;
    for (range, expected) in [
        (0..2048, &data[..]),
        (500..1500, &data[500..1500]),
        (2000..5000, &data[2000..]),
        (2047..2048, &data[2047..]),
        (0..1, &data[..1]),
        (0..0, &data[..0]),
        (2048..2048, &data[..0]),
        (2048..4096, &data[..0]),
    ] {
        let blob = store.open(&digest, Some(range.clone())).await.unwrap();
        assert_eq!(blob.size(), 2048);
        assert_eq!(
            read_all(store, &digest, Some(range.clone())).await,
            expected,
            "range {range:?}"
        );
    }
    for range in [2049..3000, 5000..10_000] {
        assert!(
            matches!(
                store.get(&digest, Some(range.clone())).await,
                Err(Error::InvalidRange { size: 2048, .. })
            ),
            "range {range:?} should be refused"
        );
    }
    #[allow(clippy::reversed_empty_ranges)]
    let backwards = 500..0;
    assert!(matches!(
        store.get(&digest, Some(backwards)).await,
        Err(Error::InvalidRange { .. })
    ));
}

/// SHA-512 blobs are stored and verified under their own algorithm; algorithms ocikit cannot
/// compute are refused.
pub async fn other_algorithms(store: &dyn Store) {
    let data = bytes(70, 3000);
    let digest = Digest::sha512(&data);
    let mut writer = store.writer_with(&Algorithm::Sha512).await.unwrap();
    writer.write_all(&data).await.unwrap();
    writer.commit(&digest, 3000).await.unwrap();
    assert_eq!(
        store.get_bytes(&digest, 1 << 20).await.unwrap().unwrap(),
        data
    );
    assert!(listed(store).await.contains(&digest));

    let md5: Digest = "md5:d41d8cd98f00b204e9800998ecf8427e".parse().unwrap();
    assert!(matches!(
        store.writer_with(md5.algorithm()).await,
        Err(Error::UnsupportedAlgorithm { .. })
    ));
    assert!(matches!(
        store.put_verified(&md5, b"").await,
        Err(Error::UnsupportedAlgorithm { .. })
    ));
}

/// `get_bytes` never returns content under a digest ocikit cannot compute (a well-formed but
/// unregistered algorithm, `foo:…`) as if it were verified: it refuses it with
/// [`Error::Unverifiable`] naming the digest, whatever the backend serves for it. (Backends
/// cannot be given such a blob through a writer, so the backend's answer is supplied by an
/// [`Intercept`] where the backend has none.)
pub async fn unverifiable_digests_are_refused(store: &dyn Store) {
    let data = bytes(81, 300);
    let verified = put(store, &data).await;
    let foreign: Digest = format!("foo:{}", verified.encoded()).parse().unwrap();
    assert!(!foreign.is_supported());
    let served = Bytes::from(data.clone());
    let wanted = foreign.clone();
    let store = Intercept::new(store, move |digest, blob| {
        if digest != &wanted || blob.is_some() {
            return blob;
        }
        let chunk = served.clone();
        let size = chunk.len() as u64;
        Some(crate::Blob::new(
            size,
            0..size,
            futures::stream::once(async move { Ok(chunk) }).boxed(),
            None,
        ))
    });
    match store.get_bytes(&foreign, u64::MAX).await {
        Err(err @ Error::Unverifiable { .. }) => {
            assert!(
                matches!(&err, Error::Unverifiable { digest } if digest == &foreign),
                "{err:?}"
            );
            assert!(err.to_string().contains(foreign.as_str()), "{err}");
        }
        other => panic!(
            "get_bytes of {foreign} was not refused as unverifiable: {:?}",
            other.map(|read| read.map(|bytes| bytes.len()))
        ),
    }
    // The refusal is about the algorithm: the same bytes under SHA-256 read.
    assert_eq!(
        store.get_bytes(&verified, u64::MAX).await.unwrap().unwrap(),
        data
    );
    // Absent stays absent.
    let absent: Digest = format!("foo:{}", Digest::sha256(b"absent").encoded())
        .parse()
        .unwrap();
    assert!(store.get_bytes(&absent, u64::MAX).await.unwrap().is_none());
}

/// `get_bytes` refuses blobs over the limit before reading them.
pub async fn size_cap(store: &dyn Store) {
    let digest = put(store, &bytes(80, 1000)).await;
    assert!(matches!(
        store.get_bytes(&digest, 999).await,
        Err(Error::TooLarge {
            size: 1000,
            limit: 999
        })
    ));
    assert!(store.get_bytes(&digest, 1000).await.unwrap().is_some());
}

/// Documents: compare-and-swap in every direction, deletes, listing by prefix.
pub async fn documents_compare_and_swap(store: &dyn Store) {
    let key = DocumentKey::new("index.json").unwrap();
    assert!(store.read_document(&key).await.unwrap().is_none());
    assert!(matches!(
        store
            .write_document(
                &key,
                "x".into(),
                Precondition::Matches(crate::Version::new("nope"))
            )
            .await,
        Err(Error::Conflict { .. })
    ));
    let v1 = store
        .write_document(&key, "one".into(), Precondition::MustNotExist)
        .await
        .unwrap();
    assert!(matches!(
        store
            .write_document(&key, "again".into(), Precondition::MustNotExist)
            .await,
        Err(Error::Conflict { .. })
    ));
    let doc = store.read_document(&key).await.unwrap().unwrap();
    assert_eq!((&doc.bytes[..], &doc.version), (&b"one"[..], &v1));

    let v2 = store
        .write_document(&key, "two".into(), Precondition::Matches(v1.clone()))
        .await
        .unwrap();
    assert_ne!(v1, v2);
    assert!(matches!(
        store
            .write_document(&key, "stale".into(), Precondition::Matches(v1.clone()))
            .await,
        Err(Error::Conflict { .. })
    ));
    assert_eq!(
        &store.read_document(&key).await.unwrap().unwrap().bytes[..],
        b"two"
    );

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
    assert!(
        !store
            .delete_document(&key, Precondition::None)
            .await
            .unwrap()
    );

    let v = store
        .write_document(&key, "three".into(), Precondition::None)
        .await
        .unwrap();
    assert_eq!(store.read_document(&key).await.unwrap().unwrap().version, v);

    for name in [
        "repos/a/tags.json",
        "repos/a/b/tags.json",
        "repos/ab/tags.json",
        "other.json",
    ] {
        let key = DocumentKey::new(name).unwrap();
        store
            .write_document(&key, "{}".into(), Precondition::None)
            .await
            .unwrap();
    }
    let names = |keys: Vec<DocumentKey>| keys.iter().map(|k| k.to_string()).collect::<Vec<_>>();
    assert_eq!(
        names(store.list_documents("repos/a").await.unwrap()),
        ["repos/a/b/tags.json", "repos/a/tags.json"]
    );
    assert_eq!(
        names(store.list_documents("").await.unwrap()),
        [
            "index.json",
            "other.json",
            "repos/a/b/tags.json",
            "repos/a/tags.json",
            "repos/ab/tags.json"
        ]
    );
    // Blobs are not documents.
    put(store, b"blob").await;
    assert!(
        !names(store.list_documents("").await.unwrap())
            .iter()
            .any(|k| k.starts_with("blobs"))
    );
}

/// `list_documents_after` pages through a prefix in byte order: every key strictly under it
/// once, whatever the page size, from any `after` (a key, a position between keys, garbage),
/// and nothing for an empty page or a prefix no key can have.
pub async fn document_pages(store: &dyn Store) {
    // Directory and file names whose order differs from a walk's sorted by name alone:
    // `a-b` and `a.x` sort before `a/...`, `a/0` before `a/_r`.
    let names = [
        "p/a-b",
        "p/a.x",
        "p/a/0/deep",
        "p/a/_r",
        "p/a/b/c",
        "p/a0",
        "p/b",
        "p/z",
        "pq/x",
        "o",
    ];
    for name in names {
        store
            .write_document(
                &DocumentKey::new(name).unwrap(),
                "{}".into(),
                Precondition::None,
            )
            .await
            .unwrap();
    }
    let strings = |keys: Vec<DocumentKey>| keys.iter().map(|k| k.to_string()).collect::<Vec<_>>();
    let mut under: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| n.starts_with("p/"))
        .collect();
    under.sort();
    let whole = strings(store.list_documents_after("p", None, 100).await.unwrap());
    assert_eq!(whole, under, "one page of everything under p");
    for limit in 1..=4 {
        let mut seen: Vec<String> = Vec::new();
        loop {
            let after = seen.last().cloned();
            let page = strings(
                store
                    .list_documents_after("p/", after.as_deref(), limit)
                    .await
                    .unwrap(),
            );
            assert!(page.len() <= limit, "{page:?} is more than {limit}");
            if page.is_empty() {
                break;
            }
            seen.extend(page);
        }
        assert_eq!(seen, under, "pages of {limit}");
    }
    for after in [
        "p/a~",
        "p/a!",
        "p/..",
        "p/a//",
        "p/a/",
        "p/a/0/",
        "p/",
        "p",
        "o",
        "",
        "p/\u{e9}",
        "p/a/b/c/d",
    ] {
        let expected: Vec<&str> = under.iter().copied().filter(|k| *k > after).collect();
        assert_eq!(
            strings(
                store
                    .list_documents_after("p", Some(after), 100)
                    .await
                    .unwrap()
            ),
            expected,
            "after {after:?}"
        );
        assert_eq!(
            strings(
                store
                    .list_documents_after("p", Some(after), 1)
                    .await
                    .unwrap()
            ),
            expected[..expected.len().min(1)],
            "one after {after:?}"
        );
    }
    for after in ["p/zz", "p0", "q", "pq/x"] {
        assert!(
            store
                .list_documents_after("p", Some(after), 100)
                .await
                .unwrap()
                .is_empty(),
            "after {after:?}"
        );
    }
    assert!(
        store
            .list_documents_after("p", None, 0)
            .await
            .unwrap()
            .is_empty()
    );
    for prefix in ["nothing", "p/z", "blobs", "../p", "p/.x"] {
        assert!(
            store
                .list_documents_after(prefix, None, 100)
                .await
                .unwrap()
                .is_empty(),
            "under {prefix:?}"
        );
    }
}

/// Concurrent read-modify-write updates through `update_document` lose nothing.
pub async fn concurrent_document_updates(store: &dyn Store) {
    let key = DocumentKey::new("counter").unwrap();
    let tasks = (0..16).map(|i| {
        let key = key.clone();
        async move {
            for round in 0..4 {
                store
                    .update_document(&key, |old| {
                        let mut text = old
                            .map(|b| String::from_utf8_lossy(b).into_owned())
                            .unwrap_or_default();
                        text.push_str(&format!("{i}.{round}\n"));
                        Ok(Some(Bytes::from(text)))
                    })
                    .await
                    .unwrap();
            }
        }
    });
    futures::future::join_all(tasks).await;
    let doc = store.read_document(&key).await.unwrap().unwrap();
    let mut lines: Vec<&str> = std::str::from_utf8(&doc.bytes).unwrap().lines().collect();
    lines.sort();
    let mut expected: Vec<String> = (0..16)
        .flat_map(|i| (0..4).map(move |r| format!("{i}.{r}")))
        .collect();
    expected.sort();
    assert_eq!(lines, expected, "an update was lost");
}

/// Size of the large-blob check.
pub const LARGE_BLOB: u64 = 256 << 20;

/// A blob of [`LARGE_BLOB`] bytes streams in and out in 1 MiB chunks without being held in
/// memory by the test itself (the data is generated chunk by chunk).
pub async fn large_blob(store: &dyn Store) {
    let chunk = bytes(90, 1 << 20);
    let chunks = LARGE_BLOB / (1 << 20);
    let mut expected = Hasher::sha256();
    let mut piece = chunk.clone();
    for i in 0..chunks {
        piece[..8].copy_from_slice(&i.to_le_bytes());
        expected.update(&piece);
    }
    let digest = expected.finish();

    let mut writer = store.writer().await.unwrap();
    for i in 0..chunks {
        piece[..8].copy_from_slice(&i.to_le_bytes());
        writer.write_all(&piece).await.unwrap();
    }
    writer.commit(&digest, LARGE_BLOB).await.unwrap();
    assert_eq!(store.stat(&digest).await.unwrap(), Some(LARGE_BLOB));

    let mut hasher = Hasher::sha256();
    let mut total = 0u64;
    let mut stream = store.open(&digest, None).await.unwrap().into_stream();
    while let Some(bytes) = stream.next().await {
        let bytes = bytes.unwrap();
        total += bytes.len() as u64;
        hasher.update(&bytes);
    }
    assert_eq!(total, LARGE_BLOB);
    assert_eq!(hasher.finish(), digest);
}

/// What a conformance test's setup returns: a store, a store with something that must live
/// as long as it (a temp directory, a server process), or `None` when the backend is not
/// available here (the check then skips; a setup that must not skip, under CI, fails
/// instead of returning `None`).
pub trait TestStore: Send + Sync {
    /// The store under test, if any.
    fn store(&self) -> Option<&dyn Store>;
}

impl<S: Store> TestStore for S {
    fn store(&self) -> Option<&dyn Store> {
        Some(self)
    }
}

impl<T: TestStore> TestStore for Option<T> {
    fn store(&self) -> Option<&dyn Store> {
        self.as_ref().and_then(TestStore::store)
    }
}

/// A store together with a guard kept alive until the check ends.
pub struct Guarded<S, G> {
    /// The store under test.
    pub store: S,
    /// Dropped after the check (e.g. a `tempfile::TempDir`).
    pub guard: G,
}

impl<S: Store, G: Send + Sync> TestStore for Guarded<S, G> {
    fn store(&self) -> Option<&dyn Store> {
        Some(&self.store)
    }
}

/// Expands to one `#[tokio::test]` per conformance check, each on a fresh store built by
/// the given async expression, which yields anything [`TestStore`] covers: a
/// [`Store`](crate::Store), a [`Guarded`] store, or an `Option` of either. The calling crate needs tokio with `macros` and
/// `rt-multi-thread`.
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::conformance_tests!(@each $make;
            round_trip, missing_is_none, mismatches_are_rejected_and_invisible,
            abort_leaves_no_trace, duplicate_commit_succeeds, concurrent_writers_of_one_digest,
            list_after_delete, ranged_reads, other_algorithms, size_cap, unverifiable_digests_are_refused,
            documents_compare_and_swap, document_pages, concurrent_document_updates, large_blob);
    };
    (@each $make:expr; $($check:ident),*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $check() {
            let setup = $make.await;
            let Some(store) = $crate::conformance::TestStore::store(&setup) else {
                eprintln!("skipping {}: backend not available", stringify!($check));
                return;
            };
            $crate::conformance::$check(store).await;
        }
    )*};
}

/// What [`Intercept`] does with each blob `get` of its inner store returns.
pub type GetHook = Arc<dyn Fn(&Digest, Option<crate::Blob>) -> Option<crate::Blob> + Send + Sync>;

/// A store that forwards everything to `inner`, except that every blob `get` returns goes
/// through `hook` first: for tests that count reads, or corrupt or truncate a stream. It
/// offers no [`Store::local_blobs`], so that every blob read goes through the hook.
pub struct Intercept<S> {
    /// The store doing the work.
    pub inner: S,
    /// Sees (and may replace) every `get` result.
    pub hook: GetHook,
}

impl<S: std::fmt::Debug> std::fmt::Debug for Intercept<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Intercept")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S> Intercept<S> {
    /// `inner` with `hook` on its gets.
    pub fn new(
        inner: S,
        hook: impl Fn(&Digest, Option<crate::Blob>) -> Option<crate::Blob> + Send + Sync + 'static,
    ) -> Intercept<S> {
        Intercept {
            inner,
            hook: Arc::new(hook),
        }
    }

    /// `inner`, counting its gets in `gets`.
    pub fn counting(inner: S, gets: Arc<std::sync::atomic::AtomicUsize>) -> Intercept<S> {
        Intercept::new(inner, move |_, blob| {
            gets.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            blob
        })
    }
}

#[async_trait::async_trait]
impl<S: Store> Store for Intercept<S> {
    async fn stat(&self, digest: &Digest) -> crate::Result<Option<u64>> {
        self.inner.stat(digest).await
    }
    async fn get(
        &self,
        digest: &Digest,
        range: Option<std::ops::Range<u64>>,
    ) -> crate::Result<Option<crate::Blob>> {
        let blob = self.inner.get(digest, range).await?;
        Ok((self.hook)(digest, blob))
    }
    async fn written_at(&self, digest: &Digest) -> crate::Result<Option<std::time::SystemTime>> {
        self.inner.written_at(digest).await
    }
    async fn stage(&self) -> crate::Result<Box<dyn crate::Staging>> {
        self.inner.stage().await
    }
    async fn delete(&self, digest: &Digest) -> crate::Result<bool> {
        self.inner.delete(digest).await
    }
    fn list(&self) -> futures::stream::BoxStream<'_, crate::Result<Digest>> {
        self.inner.list()
    }
    async fn read_document(&self, key: &DocumentKey) -> crate::Result<Option<crate::Document>> {
        self.inner.read_document(key).await
    }
    async fn document_version(&self, key: &DocumentKey) -> crate::Result<Option<crate::Version>> {
        self.inner.document_version(key).await
    }
    async fn write_document(
        &self,
        key: &DocumentKey,
        bytes: Bytes,
        precondition: Precondition,
    ) -> crate::Result<crate::Version> {
        self.inner.write_document(key, bytes, precondition).await
    }
    async fn delete_document(
        &self,
        key: &DocumentKey,
        precondition: Precondition,
    ) -> crate::Result<bool> {
        self.inner.delete_document(key, precondition).await
    }
    async fn list_documents(&self, prefix: &str) -> crate::Result<Vec<DocumentKey>> {
        self.inner.list_documents(prefix).await
    }
    async fn list_documents_after(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> crate::Result<Vec<DocumentKey>> {
        self.inner.list_documents_after(prefix, after, limit).await
    }
    async fn link_blob(
        &self,
        digest: &Digest,
        size: u64,
        file: &std::fs::File,
        trust: crate::LinkTrust,
        mode: crate::LinkMode,
    ) -> crate::Result<crate::Linked> {
        self.inner.link_blob(digest, size, file, trust, mode).await
    }
}
