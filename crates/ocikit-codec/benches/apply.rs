//! Layer application, side by side in one run (`cargo bench -p ocikit-codec --bench apply`):
//!
//! - the deterministic ~500 MiB tree of `common/` (the one the layer bench packs) is
//!   generated once and packed with the system `tar -czf` (GNU tar and gzip -6) into a
//!   `.tar.gz`, and with `tar -cf` into a plain tar;
//! - extraction of the `.tar.gz` into a fresh directory: GNU `tar -xzf` (which runs `gzip -d`
//!   in a second process), against ocikit's [`apply_blob`] (the layer decoder on zlib-rs on a
//!   second thread feeding [`apply_layer`] through a channel, so that decompression and
//!   extraction overlap as they do for GNU tar, diffID included);
//! - extraction of the plain tar: GNU `tar -xf` against [`apply_layer`] from the file;
//! - the raw limits: gunzip alone (flate2 on zlib-rs, to a sink) and SHA-256 of the tar.
//!
//! Cases are interleaved run by run (the order rotating); each extraction goes to a fresh
//! directory removed afterwards (the removal is not timed). Prints `BENCH <name> <median>
//! <unit> <min> <max>` lines (seconds, and MB/s of uncompressed tar, 10^6 bytes per MB) and
//! the ratios of the medians.
//!
//! Environment:
//! - `OCIKIT_BENCH_RUNS` (default 5): runs per case.
//! - `OCIKIT_BENCH_DIR`: where the tree, archives and extractions go (default `/dev/shm`
//!   when it exists, else the system temp directory): a tmpfs measures the extractors, not
//!   the disk.
//! - `OCIKIT_BENCH_TREE_MIB` (default 500): the tree's size.
//! - `OCIKIT_BENCH_ONLY`: a comma-separated subset of `gz`, `plain`, `limits`.
//! - `OCIKIT_BENCH_KEEP`: keep the archives (their directory is printed), for profiling.
#![allow(
    missing_docs,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use ocikit_codec::apply::{ApplyOptions, apply_blob, apply_layer};

mod common;

use common::{MIB, generate_tree, report};
/// Chunks handed from the decompressing thread to the applying one.
const CHUNK: usize = 256 << 10;

fn run(cmd: &mut Command) {
    let status = cmd.status().expect("start tool");
    assert!(status.success(), "{cmd:?} failed");
}

/// Applies the gzip blob into `dest` through the library's two-thread pipeline.
fn ocikit_gz(blob: &Path, dest: &Path) {
    let file = File::open(blob).unwrap();
    apply_blob(
        dest,
        file,
        "application/vnd.oci.image.layer.v1.tar+gzip",
        &ApplyOptions::default(),
    )
    .unwrap();
}

fn main() {
    let runs: usize = std::env::var("OCIKIT_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5)
        .max(1);
    let tree_mib: usize = std::env::var("OCIKIT_BENCH_TREE_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(500);
    let only = std::env::var("OCIKIT_BENCH_ONLY").unwrap_or_default();
    let enabled = |case: &str| only.is_empty() || only.split(',').any(|c| c == case);
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
    let scratch = tempfile::tempdir_in(&base).unwrap();
    let tree = scratch.path().join("tree");
    fs::create_dir(&tree).unwrap();
    let start = Instant::now();
    let (files, links, bytes) = generate_tree(&tree, tree_mib * MIB);
    eprintln!(
        "tree: {files} files, {links} symlinks, {:.0} MiB, generated in {:.1}s",
        bytes as f64 / MIB as f64,
        start.elapsed().as_secs_f64()
    );
    let gz = scratch.path().join("layer.tar.gz");
    let plain = scratch.path().join("layer.tar");
    run(Command::new("tar")
        .arg("-C")
        .arg(&tree)
        .arg("-czf")
        .arg(&gz)
        .arg("."));
    run(Command::new("tar")
        .arg("-C")
        .arg(&tree)
        .arg("-cf")
        .arg(&plain)
        .arg("."));
    fs::remove_dir_all(&tree).unwrap();
    let tar_bytes = fs::metadata(&plain).unwrap().len();
    eprintln!(
        "tar {:.0} MiB, tar.gz {:.0} MiB",
        tar_bytes as f64 / MIB as f64,
        fs::metadata(&gz).unwrap().len() as f64 / MIB as f64
    );

    // The raw limits: gunzip alone (flate2, zlib-rs) to a sink, and SHA-256 of the tar.
    if enabled("limits") {
        let mut gunzip = Vec::new();
        let mut sha = Vec::new();
        let mut buf = vec![0u8; CHUNK];
        for _ in 0..runs {
            let start = Instant::now();
            let file = io::BufReader::with_capacity(256 << 10, File::open(&gz).unwrap());
            let mut decoder = flate2::read::MultiGzDecoder::new(file);
            while decoder.read(&mut buf).unwrap() > 0 {}
            gunzip.push(tar_bytes as f64 / start.elapsed().as_secs_f64() / 1e6);
            let data = fs::read(&plain).unwrap();
            let start = Instant::now();
            std::hint::black_box(ocikit_digest::Digest::sha256(&data));
            sha.push(tar_bytes as f64 / start.elapsed().as_secs_f64() / 1e6);
        }
        report("limit/gunzip-zlib-rs", "MB/s", &gunzip);
        report("limit/sha256", "MB/s", &sha);
    }

    let mut seconds: Vec<Vec<f64>> = vec![Vec::new(); 4];
    let names = [
        "gz/gnu-tar-xzf",
        "gz/ocikit",
        "plain/gnu-tar-xf",
        "plain/ocikit",
    ];
    for i in 0..runs {
        for case in (0..4).map(|k| (k + i) % 4) {
            if !enabled(if case < 2 { "gz" } else { "plain" }) {
                continue;
            }
            let dest = scratch.path().join(format!("x-{case}-{i}"));
            fs::create_dir(&dest).unwrap();
            let start = Instant::now();
            match case {
                0 => run(Command::new("tar")
                    .arg("-xzf")
                    .arg(&gz)
                    .arg("-C")
                    .arg(&dest)),
                1 => ocikit_gz(&gz, &dest),
                2 => run(Command::new("tar")
                    .arg("-xf")
                    .arg(&plain)
                    .arg("-C")
                    .arg(&dest)),
                _ => {
                    let file = File::open(&plain).unwrap();
                    apply_layer(&dest, file, &ApplyOptions::default()).unwrap();
                }
            }
            seconds[case].push(start.elapsed().as_secs_f64());
            fs::remove_dir_all(&dest).unwrap();
        }
    }
    let mut medians = [0.0; 4];
    for (case, name) in names.iter().enumerate() {
        if seconds[case].is_empty() {
            continue;
        }
        medians[case] = report(name, "s", &seconds[case]);
        let rates: Vec<f64> = seconds[case]
            .iter()
            .map(|s| tar_bytes as f64 / s / 1e6)
            .collect();
        report(&format!("{name}-rate"), "MB/s", &rates);
    }
    if medians[0] > 0.0 && medians[1] > 0.0 {
        let x = medians[0] / medians[1];
        println!("BENCH gz/speedup-vs-gnu-tar {x:.3} x {x:.3} {x:.3}");
    }
    if medians[2] > 0.0 && medians[3] > 0.0 {
        let x = medians[2] / medians[3];
        println!("BENCH plain/speedup-vs-gnu-tar {x:.3} x {x:.3} {x:.3}");
    }
    if std::env::var_os("OCIKIT_BENCH_KEEP").is_some() {
        eprintln!("kept: {}", scratch.keep().display());
    }
}
