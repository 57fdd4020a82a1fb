//! Layout operations, side by side with ocidir 0.8 in one run
//! (`cargo bench -p ocikit-layout --bench layout`; `cargo xtask bench layout` also builds the
//! ocidir peer and writes docs/benchmarks.md):
//!
//! - fsck of a layout with many blobs (~1 GiB in ~600 blobs, and 8,000 small blobs):
//!   `Layout::fsck` against ocidir's `OciRead::fsck` (run by the peer program named in
//!   `OCIKIT_BENCH_PEER`, as `<peer> fsck <layout> 1`), interleaved round by round;
//! - the referrers of one subject among 10,000 manifests: `Layout::referrers` (persisted
//!   referrers index, in sync) against ocidir's `find_referrers`, which reads every manifest;
//!   the one-time sync that builds the referrers index of a layout written by another tool
//!   is reported too;
//! - tags: the cost per operation of `resolve` and `set_tag` with 100, 1,000, 10,000 and
//!   100,000 tags: `resolve` on a layout whose `index.json` has not changed since it last
//!   parsed it (`tags-N/resolve`), the first `resolve` of a new handle, which reads and
//!   parses the whole index (`tags-N/first-resolve`), and `set_tag`, a compare-and-swap that
//!   rewrites the file (`tags-N/set`), with its parts timed on their own: the index's
//!   serialisation (`tags-N/set-to-bytes`), one SHA-256 of it (`tags-N/set-sha256`), a
//!   store read of a document that size (`tags-N/set-read-document`) and a conditional
//!   store write of it (`tags-N/set-write-document`).
//!
//! Everything lives on tmpfs (`/dev/shm`, or `OCIKIT_BENCH_DIR`): this measures the code,
//! not the disk. Prints the CPU model (`CPU …`) and `BENCH <name> <median> <unit> <min>
//! <max>` lines.
//!
//! Environment: `OCIKIT_BENCH_RUNS` (default 3), `OCIKIT_BENCH_DIR`, `OCIKIT_BENCH_PEER`,
//! `OCIKIT_BENCH_ONLY` (a comma-separated subset of `fsck`, `referrers`, `tags`),
//! `OCIKIT_BENCH_FSCK` (a comma-separated subset of `large`, `small`: the fsck cases run; to
//! profile one. The small layout's blobs then differ from a full run's, their sizes drawn
//! from the same ranges), `OCIKIT_BENCH_TAGS` (a comma-separated subset of the tag counts).
#![allow(
    missing_docs,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use ocikit_digest::Digest;
use ocikit_digest::media_type;
use ocikit_digest::oci_spec::image::Descriptor;
use ocikit_layout::{FsckOptions, Layout};
use ocikit_store::{DocumentKey, FsStore, Precondition};
use serde_json::json;

fn report(name: &str, unit: &str, values: &[f64]) -> f64 {
    let mut values = values.to_vec();
    values.sort_by(f64::total_cmp);
    let median = values[values.len() / 2];
    println!(
        "BENCH {name} {median:.3} {unit} {:.3} {:.3}",
        values[0],
        values[values.len() - 1]
    );
    median
}

fn ratio(name: &str, value: f64) {
    println!("BENCH {name} {value:.3} x {value:.3} {value:.3}");
}

/// xorshift64*, deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(len);
        out
    }
}

async fn fs_layout(dir: &Path) -> Layout {
    Layout::create(FsStore::open(dir).await.unwrap())
        .await
        .unwrap()
}

/// `images` tagged images of `layers` random layers whose sizes are drawn from
/// `min..max` bytes. Returns the bytes stored in blobs.
async fn images(
    layout: &Layout,
    rng: &mut Rng,
    images: usize,
    layers: usize,
    min: usize,
    max: usize,
) -> u64 {
    let mut total = 0;
    let mut entries = Vec::new();
    for i in 0..images {
        let mut descriptors = Vec::new();
        let mut diff_ids = Vec::new();
        for _ in 0..layers {
            let len = min + (rng.next() as usize) % (max - min);
            let bytes = rng.bytes(len);
            total += len as u64;
            diff_ids.push(Digest::sha256(&bytes).to_string());
            descriptors.push(
                layout
                    .put_blob(media_type::IMAGE_LAYER, &bytes)
                    .await
                    .unwrap(),
            );
        }
        let config = json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        });
        let config = layout
            .put_json(media_type::IMAGE_CONFIG, &config)
            .await
            .unwrap();
        let manifest = json!({
            "schemaVersion": 2, "mediaType": media_type::IMAGE_MANIFEST,
            "config": config, "layers": descriptors,
        });
        let manifest = layout
            .put_json(media_type::IMAGE_MANIFEST, &manifest)
            .await
            .unwrap();
        total += manifest.size() + config.size();
        entries.push((format!("image-{i}"), manifest));
    }
    layout
        .edit_index(|index| {
            for (tag, descriptor) in &entries {
                index.set_tag(tag, descriptor)?;
            }
            Ok(true)
        })
        .await
        .unwrap();
    total
}

fn peer(program: &Option<String>, args: &[&str]) -> Vec<(String, f64)> {
    let Some(program) = program else {
        return Vec::new();
    };
    let out = Command::new(program)
        .args(args)
        .output()
        .expect("run the ocidir peer");
    assert!(
        out.status.success(),
        "peer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut parts = l.strip_prefix("BENCH ")?.split_whitespace();
            Some((parts.next()?.to_string(), parts.next()?.parse().ok()?))
        })
        .collect()
}

fn value(lines: &[(String, f64)], name: &str) -> Option<f64> {
    lines.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
}

async fn fsck_case(
    name: &str,
    dir: &Path,
    bytes: u64,
    blobs: u64,
    runs: usize,
    peer_program: &Option<String>,
) {
    let layout = Layout::open(FsStore::open(dir).await.unwrap())
        .await
        .unwrap();
    let (mut ours, mut ours_blobs, mut theirs, mut theirs_blobs) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    // Warm-up: page cache and allocator.
    assert!(layout.fsck(&FsckOptions::new()).await.unwrap().is_clean());
    for _ in 0..runs {
        let start = Instant::now();
        let report = layout.fsck(&FsckOptions::new()).await.unwrap();
        let seconds = start.elapsed().as_secs_f64();
        assert!(report.is_clean(), "{:?}", report.problems);
        ours.push(bytes as f64 / seconds / 1e6);
        ours_blobs.push(blobs as f64 / seconds);
        let lines = peer(peer_program, &["fsck", dir.to_str().unwrap(), "1"]);
        if let (Some(rate), Some(per)) = (
            value(&lines, "ocidir/fsck"),
            value(&lines, "ocidir/fsck-blobs"),
        ) {
            theirs.push(rate);
            theirs_blobs.push(per);
        }
    }
    let a = report(&format!("fsck-{name}/ocikit"), "MB/s", &ours);
    report(&format!("fsck-{name}/ocikit-blobs"), "blobs/s", &ours_blobs);
    if !theirs.is_empty() {
        let b = report(&format!("fsck-{name}/ocidir"), "MB/s", &theirs);
        report(
            &format!("fsck-{name}/ocidir-blobs"),
            "blobs/s",
            &theirs_blobs,
        );
        ratio(&format!("fsck-{name}/ocikit-vs-ocidir"), a / b);
    }
}

async fn referrers_case(base: &Path, runs: usize, peer_program: &Option<String>) {
    let dir = base.join("referrers");
    let layout = fs_layout(&dir).await;
    let mut rng = Rng(7);
    // 1,000 subjects (tiny blobs), 10,000 artifact manifests, 10 of them on the target.
    let empty = layout
        .put_blob(media_type::EMPTY_JSON, b"{}")
        .await
        .unwrap();
    let mut subjects = Vec::new();
    for _ in 0..1000 {
        let bytes = rng.bytes(64);
        subjects.push(
            layout
                .put_blob(media_type::IMAGE_MANIFEST, &bytes)
                .await
                .unwrap(),
        );
    }
    let target: Descriptor = subjects[0].clone();
    let mut manifests = Vec::new();
    for i in 0..10_000usize {
        let subject = if i % 1000 == 0 {
            &target
        } else {
            &subjects[1 + i % 999]
        };
        let manifest = json!({
            "schemaVersion": 2, "mediaType": media_type::IMAGE_MANIFEST,
            "artifactType": format!("application/vnd.example.kind{}", i % 3),
            "config": empty, "layers": [empty], "subject": subject,
            "annotations": {"n": i.to_string()},
        });
        manifests.push(
            layout
                .put_json(media_type::IMAGE_MANIFEST, &manifest)
                .await
                .unwrap(),
        );
    }
    layout
        .edit_index(|index| {
            for m in &manifests {
                index.add(m)?;
            }
            Ok(true)
        })
        .await
        .unwrap();
    let target_digest: Digest = target.digest().to_string().parse().unwrap();
    // The first call brings the referrers index up to date with an index.json it has never
    // seen (as after another tool wrote the layout): a one-time cost.
    let start = Instant::now();
    let found = layout.referrers(&target_digest, None).await.unwrap();
    let sync = start.elapsed().as_secs_f64() * 1e3;
    assert_eq!(found.len(), 10);
    println!("BENCH referrers/ocikit-first-sync-10000 {sync:.3} ms {sync:.3} {sync:.3}");
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let mut samples = Vec::new();
        for _ in 0..20 {
            let start = Instant::now();
            let found = layout.referrers(&target_digest, None).await.unwrap();
            samples.push(start.elapsed().as_secs_f64() * 1e3);
            assert_eq!(found.len(), 10);
        }
        samples.sort_by(f64::total_cmp);
        ours.push(samples[samples.len() / 2]);
        let lines = peer(
            peer_program,
            &[
                "referrers",
                dir.to_str().unwrap(),
                target_digest.as_ref(),
                "1",
            ],
        );
        if let Some(ms) = value(&lines, "ocidir/find-referrers") {
            assert_eq!(value(&lines, "ocidir/find-referrers-found"), Some(10.0));
            theirs.push(ms);
        }
    }
    let a = report("referrers/ocikit-in-sync", "ms", &ours);
    if !theirs.is_empty() {
        let b = report("referrers/ocidir-find-referrers", "ms", &theirs);
        ratio("referrers/ocikit-vs-ocidir", b / a);
    }
}

/// The first `model name` of /proc/cpuinfo.
fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

async fn tags_case(base: &Path, runs: usize) {
    let only = std::env::var("OCIKIT_BENCH_TAGS").unwrap_or_default();
    let counts = [100usize, 1_000, 10_000, 100_000]
        .into_iter()
        .filter(|count| only.is_empty() || only.split(',').any(|c| c == count.to_string()));
    for count in counts {
        let dir = base.join(format!("tags-{count}"));
        let layout = fs_layout(&dir).await;
        let blob = layout
            .put_blob(media_type::EMPTY_JSON, b"{}")
            .await
            .unwrap();
        let manifest = json!({
            "schemaVersion": 2, "mediaType": media_type::IMAGE_MANIFEST,
            "artifactType": "application/vnd.example", "config": blob, "layers": [blob],
        });
        let manifest = layout
            .put_json(media_type::IMAGE_MANIFEST, &manifest)
            .await
            .unwrap();
        layout
            .edit_index(|index| {
                for i in 0..count {
                    index.set_tag(&format!("t{i}"), &manifest)?;
                }
                Ok(true)
            })
            .await
            .unwrap();
        let (mut resolve, mut first, mut set) = (Vec::new(), Vec::new(), Vec::new());
        let (mut to_bytes, mut sha256) = (Vec::new(), Vec::new());
        let (mut read, mut write) = (Vec::new(), Vec::new());
        let scratch = DocumentKey::new("bench-index.json").unwrap();
        for round in 0..runs {
            // The filesystem store trusts a file's metadata only once it is older than its
            // racy window (100 ms): `index.json` unchanged since the last parse.
            tokio::time::sleep(std::time::Duration::from_millis(150)).await;
            // A new handle (opening it parses the index once: `first-resolve` times a new
            // store's first read and parse of it instead).
            let store = FsStore::open(&dir).await.unwrap();
            let start = Instant::now();
            let fresh = Layout::open(store).await.unwrap();
            fresh.resolve("t0").await.unwrap();
            first.push(start.elapsed().as_secs_f64() * 1e6);
            layout.resolve("t0").await.unwrap();
            let start = Instant::now();
            for i in 0..1000 {
                layout
                    .resolve(&format!("t{}", (i * 7919) % count))
                    .await
                    .unwrap();
            }
            resolve.push(start.elapsed().as_secs_f64() * 1e6 / 1000.0);
            let start = Instant::now();
            for i in 0..20 {
                layout
                    .set_tag(&format!("new-{round}-{i}"), &manifest)
                    .await
                    .unwrap();
            }
            set.push(start.elapsed().as_secs_f64() * 1e6 / 20.0);
            // Where a `set_tag`'s time goes (each part on its own, so they add up only
            // roughly): the layout's serialisation of the index, one SHA-256 of its bytes,
            // the store's read of a document (what checking a precondition by content
            // costs), and the store's conditional write of the bytes (to another document,
            // so that the layout's kept version stays current).
            let index = layout.index().await.unwrap();
            let start = Instant::now();
            let mut bytes = Vec::new();
            for _ in 0..5 {
                bytes = index.to_bytes().unwrap();
            }
            to_bytes.push(start.elapsed().as_secs_f64() * 1e6 / 5.0);
            let start = Instant::now();
            for _ in 0..5 {
                std::hint::black_box(Digest::sha256(std::hint::black_box(&bytes)));
            }
            sha256.push(start.elapsed().as_secs_f64() * 1e6 / 5.0);
            let bytes = bytes::Bytes::from(bytes);
            let store = layout.store();
            let mut version = store
                .write_document(&scratch, bytes.clone(), Precondition::None)
                .await
                .unwrap();
            let start = Instant::now();
            for _ in 0..5 {
                std::hint::black_box(store.read_document(&scratch).await.unwrap());
            }
            read.push(start.elapsed().as_secs_f64() * 1e6 / 5.0);
            let start = Instant::now();
            for _ in 0..5 {
                version = store
                    .write_document(&scratch, bytes.clone(), Precondition::Matches(version))
                    .await
                    .unwrap();
            }
            write.push(start.elapsed().as_secs_f64() * 1e6 / 5.0);
        }
        report(&format!("tags-{count}/resolve"), "us/op", &resolve);
        report(&format!("tags-{count}/first-resolve"), "us/op", &first);
        report(&format!("tags-{count}/set"), "us/op", &set);
        report(&format!("tags-{count}/set-to-bytes"), "us/op", &to_bytes);
        report(&format!("tags-{count}/set-sha256"), "us/op", &sha256);
        report(&format!("tags-{count}/set-read-document"), "us/op", &read);
        report(&format!("tags-{count}/set-write-document"), "us/op", &write);
        let bytes = std::fs::metadata(dir.join("index.json")).unwrap().len();
        let mib = bytes as f64 / (1 << 20) as f64;
        println!("BENCH tags-{count}/index-size {mib:.2} MiB {mib:.2} {mib:.2}");
    }
}

fn main() {
    let runs: usize = std::env::var("OCIKIT_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3)
        .max(1);
    let base: PathBuf = std::env::var_os("OCIKIT_BENCH_DIR").map_or_else(
        || {
            if Path::new("/dev/shm").is_dir() {
                PathBuf::from("/dev/shm")
            } else {
                std::env::temp_dir()
            }
        },
        Into::into,
    );
    let peer_program = std::env::var("OCIKIT_BENCH_PEER").ok();
    println!("CPU {}", cpu_model());
    let scratch = tempfile::tempdir_in(&base).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let only = std::env::var("OCIKIT_BENCH_ONLY").unwrap_or_default();
        let enabled = |case: &str| only.is_empty() || only.split(',').any(|c| c == case);
        let mut rng = Rng(42);
        if enabled("fsck") {
            let cases = std::env::var("OCIKIT_BENCH_FSCK").unwrap_or_default();
            let fsck = |case: &str| cases.is_empty() || cases.split(',').any(|c| c == case);
            let start = Instant::now();
            let big = scratch.path().join("fsck-large");
            let big_bytes = if fsck("large") {
                images(&fs_layout(&big).await, &mut rng, 120, 4, 64 << 10, 4 << 20).await
            } else {
                0
            };
            let small = scratch.path().join("fsck-small");
            let small_bytes = if fsck("small") {
                images(
                    &fs_layout(&small).await,
                    &mut rng,
                    2000,
                    2,
                    4 << 10,
                    16 << 10,
                )
                .await
            } else {
                0
            };
            eprintln!(
                "generated the fsck layouts in {:.1}s",
                start.elapsed().as_secs_f64()
            );
            if fsck("large") {
                let mib = big_bytes as f64 / (1 << 20) as f64;
                println!("BENCH fsck-large/layout-size {mib:.1} MiB {mib:.1} {mib:.1}");
                fsck_case("large", &big, big_bytes, 120 * 6, runs, &peer_program).await;
            }
            if fsck("small") {
                fsck_case("small", &small, small_bytes, 2000 * 4, runs, &peer_program).await;
            }
        }
        if enabled("referrers") {
            referrers_case(scratch.path(), runs, &peer_program).await;
        }
        if enabled("tags") {
            tags_case(scratch.path(), runs).await;
        }
    });
}
