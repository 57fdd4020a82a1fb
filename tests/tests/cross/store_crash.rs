//! Crash safety and cross-process compare-and-swap of the filesystem store, with real
//! processes: writers are SIGKILLed at random points, and many processes update one document
//! at once. A killed process shows atomicity only: its page cache survives, so these trials
//! would pass without any fsync; `ocikit-store`'s `fs/durability_tests.rs` checks the fsyncs.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use futures::TryStreamExt;
use ocikit_digest::Digest;
use ocikit_store::{DocumentKey, FsStore, Store, StoreExt};

const TORTURE: &str = env!("CARGO_BIN_EXE_store-torture");

fn trials() -> u64 {
    std::env::var("OCIKIT_CRASH_TRIALS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Checks the store after a crash: every listed blob verifies, every blob the writer reported
/// committed is there, and the journal document is intact, no older than the last write a
/// writer saw acknowledged (`acknowledged`: its sequence number), and names a blob that is
/// there. Returns how many temp files the crash left behind.
async fn check_store(
    root: &std::path::Path,
    committed: &[Digest],
    acknowledged: Option<u64>,
) -> usize {
    let store = FsStore::open(root).await.unwrap();
    let listed: Vec<Digest> = store.list().try_collect().await.unwrap();
    for digest in &listed {
        let size = store.require(digest).await.unwrap();
        store
            .get_bytes(digest, size)
            .await
            .unwrap_or_else(|e| panic!("listed blob {digest} does not verify: {e}"));
    }
    for digest in committed {
        assert!(listed.contains(digest), "committed blob {digest} vanished");
    }
    let journal = store
        .read_document(&DocumentKey::new("journal").unwrap())
        .await
        .unwrap();
    match (journal, acknowledged) {
        (None, None) => {}
        (None, Some(seq)) => panic!("the journal vanished after write {seq} was acknowledged"),
        (Some(doc), acknowledged) => {
            let text = std::str::from_utf8(&doc.bytes).expect("journal is text");
            let (body, sum) = text
                .rsplit_once("sum=")
                .expect("journal has its checksum line");
            assert_eq!(
                sum.trim_end(),
                Digest::sha256(body.as_bytes()).as_str(),
                "journal document is torn"
            );
            let field = |name: &str| {
                body.lines()
                    .find_map(|l| l.strip_prefix(name))
                    .unwrap_or_else(|| panic!("journal has no {name} line: {body}"))
                    .to_string()
            };
            let seq: u64 = field("seq=").parse().expect("a sequence number");
            if let Some(acknowledged) = acknowledged {
                assert!(
                    seq >= acknowledged,
                    "the journal went back to write {seq} after write {acknowledged} was acknowledged"
                );
            }
            let last = Digest::parse(&field("last=")).expect("a digest");
            assert!(
                listed.contains(&last),
                "the journal names {last}, which is gone"
            );
        }
    }
    std::fs::read_dir(store.temp_dir())
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn sigkilled_writers_leave_a_valid_store() {
    let rt = runtime();
    let mut rng = ocikit_testkit::prng::Prng::new(0x1234_5678_9abc_def1);
    let mut next = move || rng.next_u64();
    let mut dir = tempfile::tempdir().unwrap();
    let mut committed = Vec::new();
    let mut acknowledged: Option<u64> = None;
    let mut interrupted_mid_write = 0;
    let mut documents_checked = 0;
    for trial in 0..trials() {
        if trial % 10 == 0 {
            // A fresh store now and then keeps each check small.
            dir = tempfile::tempdir().unwrap();
            committed.clear();
            acknowledged = None;
        }
        let root = dir.path().join("store");
        let mut child = Command::new(TORTURE)
            .args(["write", root.to_str().unwrap(), &next().to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start store-torture");
        std::thread::sleep(Duration::from_micros(2_000 + next() % 40_000));
        child.kill().expect("SIGKILL the writer");
        child.wait().unwrap();
        let mut out = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        committed.extend(
            out.lines()
                .filter_map(|l| l.strip_prefix("committed "))
                .map(|d| Digest::parse(d).expect("a digest")),
        );
        // Each writer starts its sequence at 0 again: what it acknowledged last is the floor
        // for this trial (a later writer's older numbers would not be a regression).
        let seen = out
            .lines()
            .filter_map(|l| l.strip_prefix("document "))
            .map(|n| n.parse::<u64>().expect("a sequence number"))
            .max();
        if seen.is_some() {
            acknowledged = seen;
            documents_checked += 1;
        } else if acknowledged.is_some() {
            // This writer acknowledged nothing; the journal may hold an older writer's last
            // write or this writer's unacknowledged first: only its integrity is checked.
            acknowledged = Some(0);
        }
        if root.exists() {
            let leftovers = rt.block_on(check_store(&root, &committed, acknowledged));
            if leftovers > 0 {
                interrupted_mid_write += 1;
            }
            // Crash leftovers are removable and never needed.
            rt.block_on(async {
                let store = FsStore::open(&root).await.unwrap();
                store.clean_temp(Duration::ZERO).await.unwrap();
            });
        }
    }
    assert!(
        documents_checked * 10 >= trials(),
        "only {documents_checked} of {} writers got a document write acknowledged",
        trials()
    );
    assert!(
        interrupted_mid_write * 10 >= trials(),
        "only {interrupted_mid_write} of {} kills landed mid-write: the test is not exercising crashes",
        trials()
    );
}

#[test]
fn sixteen_processes_updating_one_document_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let rounds = 20;
    let children: Vec<_> = (0..16)
        .map(|id| {
            Command::new(TORTURE)
                .args([
                    "cas",
                    root.to_str().unwrap(),
                    &format!("p{id}"),
                    &rounds.to_string(),
                ])
                .stderr(Stdio::piped())
                .spawn()
                .expect("start store-torture")
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "worker failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let rt = runtime();
    let text = rt.block_on(async {
        let store = FsStore::open(&root).await.unwrap();
        let doc = store
            .require_document(&DocumentKey::new("counter").unwrap())
            .await
            .unwrap();
        String::from_utf8(doc.bytes.to_vec()).unwrap()
    });
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort();
    let mut expected: Vec<String> = (0..16)
        .flat_map(|id| (0..rounds).map(move |r| format!("p{id}.{r}")))
        .collect();
    expected.sort();
    assert_eq!(lines, expected, "a compare-and-swap update was lost");
}

/// Peak resident memory of a `store-torture` process run with `args` (it streams a blob
/// into a store and back, then reports its VmHWM).
fn streaming_peak_kib(args: &[&str]) -> u64 {
    let out = Command::new(TORTURE)
        .args(args)
        .output()
        .expect("start store-torture");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    text.trim()
        .strip_prefix("vmhwm_kib ")
        .and_then(|v| v.parse().ok())
        .expect("a vmhwm line")
}

/// [`streaming_peak_kib`] for `mib` MiB into a fresh filesystem store.
fn fs_streaming_peak_kib(mib: u64) -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    streaming_peak_kib(&["stream", root.to_str().unwrap(), &mib.to_string()])
}

#[test]
fn streaming_memory_does_not_grow_with_blob_size() {
    // The writer's bounded queue holds up to 32 MiB; how full it gets depends on how fast the
    // disk drains it, so two runs may differ by up to that much whatever their sizes. Growth
    // with blob size would show as hundreds of MiB between these two, far above that band.
    let small = fs_streaming_peak_kib(64);
    let large = fs_streaming_peak_kib(512);
    assert!(large < 96 * 1024, "streaming 512 MiB peaked at {large} KiB");
    assert!(
        large < small + 48 * 1024,
        "peak memory grew with blob size: {small} KiB for 64 MiB, {large} KiB for 512 MiB"
    );
}

/// The S3 backend streams too: multipart parts in flight bound the writer, ranged reads the
/// reader. On moto (started on 127.0.0.1 by the test; required under CI=true).
#[test]
fn s3_streaming_memory_does_not_grow_with_blob_size() {
    let Some(server) = ocikit_testkit::moto::shared() else {
        return;
    };
    let peak = |mib: u64| {
        let bucket = server.bucket();
        streaming_peak_kib(&["stream-s3", &server.endpoint(), &bucket, &mib.to_string()])
    };
    let small = peak(24);
    let large = peak(224);
    eprintln!("s3 streaming peaks: {small} KiB for 24 MiB, {large} KiB for 224 MiB");
    assert!(
        large < 128 * 1024,
        "streaming 224 MiB to S3 peaked at {large} KiB"
    );
    assert!(
        large < small + 48 * 1024,
        "peak memory grew with blob size: {small} KiB for 24 MiB, {large} KiB for 224 MiB"
    );
}
