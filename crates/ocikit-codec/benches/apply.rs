//! Layer application, side by side in one run (`cargo bench -p ocikit-codec --bench apply`):
//!
//! - the deterministic ~500 MiB tree of `common/` (the one the layer bench packs) is
//!   generated once and packed with the system `tar -czf` (GNU tar and gzip -6) into a
//!   `.tar.gz`, and with `tar -cf` into a plain tar;
//! - extraction of the `.tar.gz` into a fresh directory: GNU `tar -xzf` (which runs `gzip -d`
//!   in a second process), against ocikit's [`apply_blob`] (the layer decoder on zlib-rs on a
//!   second thread feeding [`apply_layer`] through a channel, so that decompression and
//!   extraction overlap as they do for GNU tar, diffID included);
//! - the same `.tar.gz` read through a [`VerifyingReader`] (the compressed bytes hashed and
//!   checked, as `ocikit unpack` reads a stored layer): [`apply_blob`] (the blob read and
//!   hashed on a third thread, off the decompressing one), against the two-thread pipeline
//!   that `apply_blob` was before (hash and decompression on one thread, replicated here as
//!   `gz/two-stage-verified`), so that the third stage is measured in one run;
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
//! - `OCIKIT_BENCH_ONLY`: a comma-separated subset of `gz`, `verified`, `plain`, `limits`.
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

use ocikit_codec::Limits;
use ocikit_codec::apply::{ApplyOptions, apply_blob, apply_layer};
use ocikit_codec::compression::Decoder;
use ocikit_digest::{Digest, VerifyingReader};

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

const GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// Applies the gzip blob into `dest` through [`apply_blob`], verifying it as a layout
/// unpack does.
fn ocikit_verified(blob: &Path, digest: &Digest, dest: &Path) {
    let file = File::open(blob).unwrap();
    let size = file.metadata().unwrap().len();
    let mut reader = VerifyingReader::new(file, digest.clone(), size).unwrap();
    apply_blob(dest, &mut reader, GZIP, &ApplyOptions::default()).unwrap();
    io::copy(&mut reader, &mut io::sink()).unwrap();
    assert!(reader.is_verified());
}

/// The two-thread pipeline `apply_blob` was before its third stage: the verifying reader
/// and the decoder on one thread, feeding [`apply_layer`] chunks of 256 KiB (16 in flight).
fn two_stage_verified(blob: &Path, digest: &Digest, dest: &Path) {
    use std::sync::mpsc::{Receiver, sync_channel};
    struct Chunks {
        rx: Receiver<Vec<u8>>,
        current: Vec<u8>,
        pos: usize,
    }
    impl Read for Chunks {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            while self.pos == self.current.len() {
                match self.rx.recv() {
                    Ok(chunk) => {
                        self.current = chunk;
                        self.pos = 0;
                    }
                    Err(_) => return Ok(0),
                }
            }
            let n = buf.len().min(self.current.len() - self.pos);
            buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }
    }
    let file = File::open(blob).unwrap();
    let size = file.metadata().unwrap().len();
    let mut reader = VerifyingReader::new(file, digest.clone(), size).unwrap();
    let (tx, rx) = sync_channel::<Vec<u8>>(16);
    std::thread::scope(|scope| {
        scope.spawn(move || {
            let mut decoder =
                Decoder::for_media_type(&mut reader, GZIP, Limits::default()).unwrap();
            loop {
                let mut chunk = vec![0u8; CHUNK];
                let mut filled = 0;
                while filled < CHUNK {
                    let n = decoder.read(&mut chunk[filled..]).unwrap();
                    if n == 0 {
                        break;
                    }
                    filled += n;
                }
                chunk.truncate(filled);
                if chunk.is_empty() || tx.send(chunk).is_err() {
                    break;
                }
            }
            drop(decoder);
            io::copy(&mut reader, &mut io::sink()).unwrap();
            assert!(reader.is_verified());
        });
        let chunks = Chunks {
            rx,
            current: Vec::new(),
            pos: 0,
        };
        apply_layer(dest, chunks, &ApplyOptions::default()).unwrap();
    });
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
    let gz_digest = Digest::sha256(&fs::read(&gz).unwrap());
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

    let names = [
        "gz/gnu-tar-xzf",
        "gz/ocikit",
        "plain/gnu-tar-xf",
        "plain/ocikit",
        "gz/ocikit-verified",
        "gz/two-stage-verified",
    ];
    let mut seconds: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    for i in 0..runs {
        for case in (0..names.len()).map(|k| (k + i) % names.len()) {
            let group = match case {
                0 | 1 => "gz",
                2 | 3 => "plain",
                _ => "verified",
            };
            if !enabled(group) {
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
                3 => {
                    let file = File::open(&plain).unwrap();
                    apply_layer(&dest, file, &ApplyOptions::default()).unwrap();
                }
                4 => ocikit_verified(&gz, &gz_digest, &dest),
                _ => two_stage_verified(&gz, &gz_digest, &dest),
            }
            seconds[case].push(start.elapsed().as_secs_f64());
            fs::remove_dir_all(&dest).unwrap();
        }
    }
    let mut medians = [0.0; 6];
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
    if medians[4] > 0.0 && medians[5] > 0.0 {
        let x = medians[5] / medians[4];
        println!("BENCH verified/three-over-two-stage {x:.3} x {x:.3} {x:.3}");
    }
    if medians[2] > 0.0 && medians[3] > 0.0 {
        let x = medians[2] / medians[3];
        println!("BENCH plain/speedup-vs-gnu-tar {x:.3} x {x:.3} {x:.3}");
    }
    if std::env::var_os("OCIKIT_BENCH_KEEP").is_some() {
        eprintln!("kept: {}", scratch.keep().display());
    }
}
