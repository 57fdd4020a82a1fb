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
//! - compressed sizes, and speed and size ratios.
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
//!   `gzip-build`, `gzip-single`, and the same for `zstd`).
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
use ocikit_codec::compression::Compression;
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
            let start = Instant::now();
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
    ];
    for (case, label) in names {
        if let Some(i) = cases.iter().position(|c| *c == case) {
            report(label, "MB/s", &rates[i]);
        }
    }
    for (case, label) in names {
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
