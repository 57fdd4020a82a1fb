//! Layer writing, side by side in one run (`cargo bench -p ocikit-codec --bench layer`):
//!
//! - a deterministic ~500 MiB tree (source-like text files, low-compressibility binaries,
//!   a few large files, symlinks) is generated once and packed into a tar in memory;
//! - gzip level 6 through [`LayerWriter`] (parallel gzip, diffID and digest in one pass),
//!   from the in-memory tar and end to end from the tree (tar crate `Builder` → file), and
//!   the same work single-threaded with flate2's `GzEncoder` (the classic way);
//! - the same layers built by `ocikit_codec::build::build_layer` (the reproducible directory
//!   packer) straight into the [`LayerWriter`];
//! - zstd level 3 likewise, against single-threaded zstd;
//! - compressed sizes, and speed and size ratios;
//! - the machine's limits, measured in the same run on the same tar: libzstd level 3 on one
//!   thread (`zstd-limit`), the parallel gzip encoder on one thread (1 MiB blocks,
//!   `gzip-limit`), and SHA-256 on one thread (`sha256`), none of them hashing or writing a
//!   file. Twice the single-thread speed is the two-core limit; the ratio lines
//!   `*/ocikit-vs-2x-single*` compare the layer writer with it. The layer writer must also
//!   hash the tar (diffID) and the compressed bytes (digest) on the same two cores:
//!   `*/limit-with-hashing-vs-2x-single` is the best a writer that hashes can reach
//!   (compression and hashing core-seconds summed, spread over two cores), and the
//!   `*-cpu` lines give each case's CPU time (user + system, all threads) per uncompressed
//!   GB, which shows where a case's time goes besides compressing.
//!
//! Prints `BENCH <name> <median> <unit> <min> <max>` lines. MB/s are of uncompressed
//! (tar) input, 10^6 bytes per MB.
//!
//! Environment:
//! - `OCIKIT_BENCH_RUNS` (default 3): runs per case; cases are interleaved run by run.
//! - `OCIKIT_BENCH_DIR`: where the temporary tree and outputs go (default: the system temp
//!   directory).
//! - `OCIKIT_BENCH_TREE`: a directory to generate the tree in (or reuse, if it holds the
//!   same tree) and keep, so that another program can work on the identical tree.
//! - `OCIKIT_BENCH_TREE_MIB` (default 500): the tree's size.
//! - `OCIKIT_BENCH_ONLY`: a comma-separated subset of the cases (`gzip-mem`, `gzip-tree`,
//!   `gzip-build`, `gzip-single`, `gzip-limit`, the same for `zstd`, and `sha256`).
//! - `OCIKIT_BENCH_GZIP_BLOCK`: the parallel gzip block size in bytes (default 1 MiB).
//! - `OCIKIT_BENCH_COMPARE`: a program (and arguments; split at white space) run as
//!   `<program> [args] <tree> <runs> <out-dir>` whose
//!   `BENCH` lines are printed too; `BENCH ocidir/gzip6-tree` and `BENCH ocidir/zstd3-tree`
//!   lines (MB/s) and `ocidir/gzip6-size`/`ocidir/zstd3-size` (MiB) from it give ratio lines.
//!   (ocidir is not a dev-dependency: it forces flate2's C zlib backend, which would replace
//!   zlib-rs in this crate's own test and bench builds.)
#![allow(
    missing_docs,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use ocikit_codec::build::{BuildOptions, build_layer};
use ocikit_codec::compression::{Compression, Encoder};
use ocikit_codec::writer::{LayerOptions, LayerWriter};
use ocikit_digest::{DigestWriter, Hasher};

mod common;

use common::{MIB, generate_tree, report};

fn mbps(bytes: u64, start: Instant) -> f64 {
    bytes as f64 / start.elapsed().as_secs_f64() / 1e6
}

fn tar_of<W: Write>(root: &Path, out: W) -> W {
    let mut builder = tar::Builder::new(out);
    builder.follow_symlinks(false);
    builder.append_dir_all(".", root).unwrap();
    builder.into_inner().unwrap()
}

/// CPU time (user + system, every thread, finished ones included) of this process so far,
/// in seconds, from `/proc/self/stat` (clock ticks of 10 ms).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which ends with the last `)`): utime is the 12th and
    // stime the 13th of them.
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// The CPU model, as `/proc/cpuinfo` names it.
fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map_or_else(
            || "unknown".to_owned(),
            |l| l.trim_start_matches([' ', '\t', ':']).to_owned(),
        )
}

/// The machine's limits: one codec on one thread, from memory into nothing (no hashing, no
/// file), the same 1 MiB writes as the layer writer gets.
fn limit(tar: &[u8], case: &str) -> u64 {
    let mut counted = Counted(0);
    match case {
        "zstd-limit" => {
            let mut e = zstd::stream::write::Encoder::new(&mut counted, 3).unwrap();
            e.include_checksum(true).unwrap();
            for chunk in tar.chunks(MIB) {
                e.write_all(chunk).unwrap();
            }
            e.finish().unwrap();
        }
        "gzip-limit" => {
            // The parallel gzip encoder itself with no worker thread: 1 MiB blocks (its
            // default), each raw deflate with a dictionary, CRC32 included.
            let mut e = Encoder::new(&mut counted, Compression::Gzip, Some(6)).unwrap();
            e.multithread(0).unwrap();
            for chunk in tar.chunks(MIB) {
                e.write_all(chunk).unwrap();
            }
            e.finish().unwrap();
        }
        _ => {
            let mut h = Hasher::sha256();
            for chunk in tar.chunks(MIB) {
                h.update(chunk);
            }
            std::hint::black_box(h.finish());
            return 0;
        }
    }
    counted.0
}

/// A writer that only counts.
struct Counted(u64);

impl Write for Counted {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn median(values: &[f64]) -> f64 {
    let mut values = values.to_vec();
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The classic single-threaded way, same work (diffID + digest + file).
fn single_stream(tar: &[u8], compression: Compression, path: &Path) -> (File, u64) {
    let file = File::create(path).unwrap();
    let mut diff = Hasher::sha256();
    let out = DigestWriter::sha256(file);
    let mut out = match compression {
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(out, flate2::Compression::new(6));
            for chunk in tar.chunks(MIB) {
                diff.update(chunk);
                e.write_all(chunk).unwrap();
            }
            e.finish().unwrap()
        }
        _ => {
            let mut e = zstd::stream::write::Encoder::new(out, 3).unwrap();
            e.include_checksum(true).unwrap();
            for chunk in tar.chunks(MIB) {
                diff.update(chunk);
                e.write_all(chunk).unwrap();
            }
            e.finish().unwrap()
        }
    };
    out.flush().unwrap();
    std::hint::black_box(diff.finish());
    let (file, _, size) = out.finish();
    (file, size)
}

fn main() {
    let runs: usize = std::env::var("OCIKIT_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3)
        .max(1);
    let tree_mib: usize = std::env::var("OCIKIT_BENCH_TREE_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(500);
    let base = std::env::var_os("OCIKIT_BENCH_DIR").map_or_else(std::env::temp_dir, Into::into);
    let scratch = tempfile::tempdir_in(&base).unwrap();
    let threads = std::thread::available_parallelism().map_or(1, usize::from);

    // The tree, generated once (or reused when OCIKIT_BENCH_TREE already holds it).
    let root = match std::env::var_os("OCIKIT_BENCH_TREE") {
        Some(dir) => PathBuf::from(dir),
        None => scratch.path().join("tree"),
    };
    let marker = root.join(format!(".ocikit-bench-tree-{tree_mib}"));
    let start = Instant::now();
    if !marker.exists() {
        if root.exists() {
            std::fs::remove_dir_all(&root).unwrap();
        }
        let (files, links, bytes) = generate_tree(&root, tree_mib * MIB);
        std::fs::write(&marker, "").unwrap();
        // Write the tree out now, not while something is being measured.
        rustix::fs::sync();
        eprintln!(
            "generated {files} files ({:.0} MiB) and {links} symlinks in {:.1}s",
            bytes as f64 / MIB as f64,
            start.elapsed().as_secs_f64()
        );
    }
    let tar: Vec<u8> = {
        let mut tar = tar_of(&root, Vec::with_capacity(tree_mib * MIB + 64 * MIB));
        std::mem::take(std::hint::black_box(&mut tar))
    };
    let tar_len = tar.len() as u64;
    println!("BENCH-CPU {}, {threads} cores", cpu_model());
    println!(
        "BENCH tree/tar-size {:.3} MiB {0:.3} {0:.3}",
        tar_len as f64 / MIB as f64
    );

    let out = scratch.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let all = [
        "gzip-mem",
        "gzip-tree",
        "gzip-build",
        "gzip-single",
        "zstd-mem",
        "zstd-tree",
        "zstd-build",
        "zstd-single",
        "gzip-limit",
        "zstd-limit",
        "sha256",
    ];
    let only = std::env::var("OCIKIT_BENCH_ONLY").unwrap_or_default();
    let cases: Vec<&str> = all
        .into_iter()
        .filter(|c| only.is_empty() || only.split(',').any(|o| o == *c))
        .collect();
    let block: usize = std::env::var("OCIKIT_BENCH_GZIP_BLOCK")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(ocikit_codec::compression::DEFAULT_GZIP_BLOCK_SIZE);
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    let mut cpu: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    let mut sizes = vec![0u64; cases.len()];
    let mut build_tar_len = 0;
    for round in 0..runs {
        for k in 0..cases.len() {
            let case = (k + round) % cases.len();
            let name = cases[case];
            let path = out.join(name);
            let _ = std::fs::remove_file(&path);
            let compression = if name.starts_with("gzip") {
                Compression::Gzip
            } else {
                Compression::Zstd
            };
            let options = LayerOptions::new(compression)
                .with_threads(threads)
                .with_gzip_block_size(block);
            let cpu_start = cpu_seconds();
            let start = Instant::now();
            if name.ends_with("-limit") || name == "sha256" {
                let size = limit(&tar, name);
                rates[case].push(mbps(tar_len, start));
                cpu[case].push((cpu_seconds() - cpu_start) / (tar_len as f64 / 1e9));
                sizes[case] = size;
                continue;
            }
            let (file, size) = match name {
                "gzip-mem" | "zstd-mem" => {
                    let mut w = LayerWriter::new(File::create(&path).unwrap(), options).unwrap();
                    for chunk in tar.chunks(MIB) {
                        w.write_all(chunk).unwrap();
                    }
                    let (file, info) = w.finish().unwrap();
                    assert_eq!(info.uncompressed_size, tar_len);
                    (file, info.size)
                }
                "gzip-tree" | "zstd-tree" => {
                    let w = LayerWriter::new(File::create(&path).unwrap(), options).unwrap();
                    let (file, info) = tar_of(&root, w).finish().unwrap();
                    assert_eq!(info.uncompressed_size, tar_len);
                    (file, info.size)
                }
                "gzip-build" | "zstd-build" => {
                    let mut w = LayerWriter::new(File::create(&path).unwrap(), options).unwrap();
                    build_layer(&root, &mut w, &BuildOptions::new()).unwrap();
                    let (file, info) = w.finish().unwrap();
                    build_tar_len = info.uncompressed_size;
                    (file, info.size)
                }
                _ => single_stream(&tar, compression, &path),
            };
            let input = if name.ends_with("-build") {
                build_tar_len
            } else {
                tar_len
            };
            rates[case].push(mbps(input, start));
            cpu[case].push((cpu_seconds() - cpu_start) / (input as f64 / 1e9));
            sizes[case] = size;
            // Write the output out before the next case (not measured).
            file.sync_all().unwrap();
        }
    }

    if build_tar_len > 0 {
        let mib = build_tar_len as f64 / MIB as f64;
        println!("BENCH tree/build-layer-tar-size {mib:.3} MiB {mib:.3} {mib:.3}");
    }
    let rate = |name: &str| {
        let i = cases.iter().position(|c| *c == name)?;
        Some((median(&rates[i]), sizes[i]))
    };
    let names = [
        ("gzip-mem", "gzip6/ocikit-layerwriter-mem"),
        ("gzip-tree", "gzip6/ocikit-layerwriter-tree"),
        ("gzip-build", "gzip6/ocikit-build-layer"),
        ("gzip-single", "gzip6/flate2-single-stream-mem"),
        ("zstd-mem", "zstd3/ocikit-layerwriter-mem"),
        ("zstd-tree", "zstd3/ocikit-layerwriter-tree"),
        ("zstd-build", "zstd3/ocikit-build-layer"),
        ("zstd-single", "zstd3/zstd-single-thread-mem"),
        ("gzip-limit", "gzip6/limit-single-thread-1MiB-blocks"),
        ("zstd-limit", "zstd3/limit-libzstd-single-thread"),
        ("sha256", "sha256/single-thread"),
    ];
    for (case, label) in names {
        if let Some(i) = cases.iter().position(|c| *c == case) {
            report(label, "MB/s", &rates[i]);
        }
    }
    for (case, label) in names {
        if let Some(i) = cases.iter().position(|c| *c == case) {
            report(&format!("{label}-cpu"), "s/GB", &cpu[i]);
        }
    }
    for (case, label) in names {
        if case.ends_with("-limit") || case == "sha256" {
            continue;
        }
        if let Some((_, size)) = rate(case) {
            let mib = size as f64 / MIB as f64;
            println!("BENCH {label}-size {mib:.3} MiB {mib:.3} {mib:.3}");
        }
    }
    let ratio =
        |name: &str, value: f64| println!("BENCH {name} {value:.3} x {value:.3} {value:.3}");
    if let (Some((gz, gz_size)), Some((gz1, gz1_size))) = (rate("gzip-mem"), rate("gzip-single")) {
        ratio("gzip6/parallel-vs-single-speed", gz / gz1);
        ratio(
            "gzip6/parallel-vs-single-size",
            gz_size as f64 / gz1_size as f64,
        );
    }
    if let (Some((zs, _)), Some((zs1, _))) = (rate("zstd-mem"), rate("zstd-single")) {
        ratio("zstd3/ocikit-vs-single-speed", zs / zs1);
    }
    // The two-core limits, and the best a writer that also hashes both streams can do.
    let sha = rate("sha256").map(|(r, _)| r);
    for (codec, mem, tree, build, lim) in [
        ("zstd3", "zstd-mem", "zstd-tree", "zstd-build", "zstd-limit"),
        ("gzip6", "gzip-mem", "gzip-tree", "gzip-build", "gzip-limit"),
    ] {
        let Some((single, compressed)) = rate(lim) else {
            continue;
        };
        let suffix = if codec == "gzip6" { "-1MiB-blocks" } else { "" };
        for (case, what) in [(mem, "mem"), (tree, "tree"), (build, "build")] {
            if let Some((speed, _)) = rate(case) {
                ratio(
                    &format!("{codec}/ocikit-vs-2x-single{suffix}-{what}"),
                    speed / (2.0 * single),
                );
            }
        }
        if let Some(sha) = sha {
            // Core-seconds per input byte: compressing, hashing the input, hashing the
            // output (a fraction of the input's size).
            let fraction = compressed as f64 / tar_len as f64;
            let per_byte = 1.0 / single + 1.0 / sha + fraction / sha;
            let with_hashing = 2.0 / per_byte;
            ratio(
                &format!("{codec}/limit-with-hashing-vs-2x-single{suffix}"),
                with_hashing / (2.0 * single),
            );
            if let Some((speed, _)) = rate(mem) {
                ratio(
                    &format!("{codec}/ocikit-vs-limit-with-hashing-mem"),
                    speed / with_hashing,
                );
            }
        }
    }
    if let Some((_, size)) = rate("gzip-mem") {
        ratio("gzip6/compressed-fraction", size as f64 / tar_len as f64);
    }
    if let Some((_, size)) = rate("zstd-mem") {
        ratio("zstd3/compressed-fraction", size as f64 / tar_len as f64);
    }

    // An external comparison (ocidir) on the identical tree, in its own process.
    if let Some(program) = std::env::var_os("OCIKIT_BENCH_COMPARE") {
        let other_out = scratch.path().join("compare");
        std::fs::create_dir_all(&other_out).unwrap();
        // The program, then any arguments that go before `<tree> <runs> <out-dir>`.
        let program = program.to_string_lossy().into_owned();
        let mut words = program.split_whitespace();
        let output = std::process::Command::new(words.next().unwrap())
            .args(words)
            .arg(&root)
            .arg(runs.to_string())
            .arg(&other_out)
            .output()
            .expect("run the comparison program");
        assert!(output.status.success(), "comparison failed: {output:?}");
        let text = String::from_utf8_lossy(&output.stdout);
        let mut theirs = std::collections::HashMap::new();
        for line in text.lines().filter(|l| l.starts_with("BENCH ")) {
            println!("{line}");
            let mut parts = line.split_whitespace().skip(1);
            if let (Some(name), Some(value)) = (parts.next(), parts.next()) {
                theirs.insert(name.to_owned(), value.parse::<f64>().unwrap_or(f64::NAN));
            }
        }
        let mib = |bytes: u64| bytes as f64 / MIB as f64;
        let pairs = [
            (
                "gzip-tree",
                "ocidir/gzip6-tree",
                "gzip6/ocikit-vs-ocidir-speed-tree",
            ),
            (
                "gzip-mem",
                "ocidir/gzip6-mem",
                "gzip6/ocikit-vs-ocidir-speed-mem",
            ),
            (
                "zstd-tree",
                "ocidir/zstd3-tree",
                "zstd3/ocikit-vs-ocidir-speed-tree",
            ),
            (
                "zstd-mem",
                "ocidir/zstd3-mem",
                "zstd3/ocikit-vs-ocidir-speed-mem",
            ),
        ];
        for (ours, theirs_name, label) in pairs {
            if let (Some((value, _)), Some(other)) = (rate(ours), theirs.get(theirs_name)) {
                ratio(label, value / other);
            }
        }
        let sizes = [
            (
                "gzip-mem",
                "ocidir/gzip6-size",
                "gzip6/ocikit-vs-ocidir-size",
            ),
            (
                "zstd-mem",
                "ocidir/zstd3-size",
                "zstd3/ocikit-vs-ocidir-size",
            ),
        ];
        for (ours, theirs_name, label) in sizes {
            if let (Some((_, size)), Some(other)) = (rate(ours), theirs.get(theirs_name)) {
                ratio(label, mib(size) / other);
            }
        }
    }
}
