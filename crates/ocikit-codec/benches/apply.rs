//! Layer application, side by side in one run (`cargo bench -p ocikit-codec --bench apply`):
//!
//! - a deterministic ~500 MiB tree (source-like text files 40 to a directory, binaries of
//!   64 KiB - 2 MiB, a log, an incompressible blob, a database-like file, symlinks) is
//!   generated once and packed with the system `tar -czf` (GNU tar and gzip -6) into a
//!   `.tar.gz`, and with `tar -cf` into a plain tar;
//! - extraction of the `.tar.gz` into a fresh directory: GNU `tar -xzf` (which runs `gzip -d`
//!   in a second process), against ocikit: flate2's `MultiGzDecoder` (zlib-rs) on a second
//!   thread feeding [`apply_layer`] through a channel, so that decompression and extraction
//!   overlap as they do for GNU tar, diffID included;
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
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::time::Instant;

use ocikit_codec::apply::{ApplyOptions, apply_layer};

const MIB: usize = 1 << 20;
/// Chunks handed from the decompressing thread to the applying one.
const CHUNK: usize = 256 << 10;

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

/// xorshift64*: deterministic and fast.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn fill(&mut self, out: &mut Vec<u8>, len: usize) {
        while out.len() + 8 <= len {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        while out.len() < len {
            out.push(self.next() as u8);
        }
    }
}

const WORDS: &[&str] = &[
    "fn", "let", "mut", "pub", "impl", "struct", "match", "return", "self", "use", "buffer",
    "reader", "writer", "len", "offset", "digest", "layer", "entry", "header", "path", "config",
    "manifest", "index", "blob", "size", "result", "error", "value", "(", ")", "{", "}", ";", "->",
    "&", "::", "=", "+", "<", ">", "0", "1", "42", "\"name\"", "Some", "None", "Ok",
];

fn code_line(rng: &mut Rng) -> Vec<u8> {
    let mut line = vec![b' '; 4 * rng.below(4) as usize];
    for _ in 0..3 + rng.below(10) {
        line.extend_from_slice(WORDS[rng.below(WORDS.len() as u64) as usize].as_bytes());
        line.push(b' ');
    }
    line.push(b'\n');
    line
}

/// Source-like text: lines mostly from a per-file pick of a shared set (gzip -6: ~1/4).
fn text(rng: &mut Rng, shared: &[Vec<u8>], len: usize) -> Vec<u8> {
    let local: Vec<usize> = (0..24)
        .map(|_| rng.below(shared.len() as u64) as usize)
        .collect();
    let mut out = Vec::with_capacity(len + 128);
    while out.len() < len {
        match rng.below(10) {
            0..=6 => out.extend_from_slice(&shared[local[rng.below(24) as usize]]),
            7 | 8 => out.extend_from_slice(&shared[rng.below(shared.len() as u64) as usize]),
            _ => out.extend(code_line(rng)),
        }
    }
    out.truncate(len);
    out
}

/// Machine-code-like bytes: random runs, near repeats, small alphabets (gzip -6: ~2/3).
fn binary(rng: &mut Rng, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 256);
    while out.len() < len {
        let start = out.len();
        match rng.below(10) {
            0..=4 => rng.fill(&mut out, start + 256),
            5..=7 if start >= 4096 => {
                let from = start - 256 * (1 + rng.below(((start / 256).min(100)) as u64) as usize);
                for i in 0..256 {
                    let b = out[from + i];
                    out.push(if rng.below(10) == 0 {
                        rng.next() as u8
                    } else {
                        b
                    });
                }
            }
            _ => out.extend((0..256).map(|_| (rng.next() % 16) as u8)),
        }
    }
    out.truncate(len);
    out
}

/// Generates the tree; returns (files, symlinks, directories, bytes).
fn generate(root: &Path, total: usize) -> (usize, usize, usize, usize) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let shared: Vec<Vec<u8>> = (0..4000).map(|_| code_line(&mut rng)).collect();
    let (mut files, mut links, mut bytes) = (0, 0, 0);
    let mut dirs = std::collections::BTreeSet::new();
    let mut write = |path: PathBuf, data: &[u8], dirs: &mut std::collections::BTreeSet<PathBuf>| {
        let parent = path.parent().unwrap().to_path_buf();
        if dirs.insert(parent.clone()) {
            fs::create_dir_all(&parent).unwrap();
        }
        fs::write(&path, data).unwrap();
        files += 1;
        bytes += data.len();
    };
    // 40%: small text files, 40 to a directory.
    let (mut small, mut n) = (0, 0);
    let mut small_paths = Vec::new();
    while small < total * 40 / 100 {
        let len = 200 + rng.below(24 << 10) as usize * rng.below(100) as usize / 100;
        let rel = format!("src/project{}/module{}/file{n}.rs", n / 2000, n / 40 % 50);
        write(root.join(&rel), &text(&mut rng, &shared, len), &mut dirs);
        small_paths.push(rel);
        small += len;
        n += 1;
    }
    // 30%: binaries, 64 KiB - 2 MiB.
    let (mut medium, mut n) = (0, 0);
    while medium < total * 30 / 100 {
        let len = (64 << 10) + rng.below(2 * MIB as u64 - (64 << 10)) as usize;
        write(
            root.join(format!("usr/lib/pkg{}/lib{n}.so", n / 20)),
            &binary(&mut rng, len),
            &mut dirs,
        );
        medium += len;
        n += 1;
    }
    // 30%: a log (12%), an incompressible blob (8%), a database-like file (10%).
    let mut log = Vec::new();
    let mut t = 1_700_000_000_000u64;
    while log.len() < total * 12 / 100 {
        t += rng.below(5000);
        log.extend_from_slice(
            format!(
                "{t} INFO worker-{} request_id={:016x} status={} took={}ms\n",
                rng.below(16),
                rng.next(),
                [200, 404, 500][rng.below(3) as usize],
                rng.below(2000)
            )
            .as_bytes(),
        );
    }
    write(root.join("var/log/app.log"), &log, &mut dirs);
    let mut blob = Vec::new();
    rng.fill(&mut blob, total * 8 / 100);
    write(root.join("usr/share/model/weights.bin"), &blob, &mut dirs);
    let mut db = Vec::new();
    while db.len() < total / 10 {
        let page = db.len();
        let fill = 256 + rng.below(3000) as usize;
        db.extend(text(&mut rng, &shared, fill));
        db.resize(page + 4096, 0);
    }
    write(root.join("var/lib/db/data.db"), &db, &mut dirs);
    // Symlinks to every 20th small file.
    fs::create_dir_all(root.join("usr/bin")).unwrap();
    for (i, target) in small_paths.iter().step_by(20).enumerate() {
        std::os::unix::fs::symlink(
            format!("../../{target}"),
            root.join(format!("usr/bin/tool{i}")),
        )
        .unwrap();
        links += 1;
    }
    (files, links, dirs.len(), bytes)
}

fn run(cmd: &mut Command) {
    let status = cmd.status().expect("start tool");
    assert!(status.success(), "{cmd:?} failed");
}

/// A [`Read`] over chunks received from another thread (buffers go back for reuse).
struct ChannelReader {
    chunks: Receiver<io::Result<Vec<u8>>>,
    recycle: SyncSender<Vec<u8>>,
    current: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.current.len() {
            match self.chunks.recv() {
                Ok(chunk) => {
                    let old = std::mem::replace(&mut self.current, chunk?);
                    let _ = self.recycle.try_send(old);
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

/// Decompresses `blob` on another thread and applies the stream into `dest`.
fn ocikit_gz(blob: &Path, dest: &Path) {
    let (tx, rx) = sync_channel::<io::Result<Vec<u8>>>(8);
    let (recycle_tx, recycle_rx) = sync_channel::<Vec<u8>>(16);
    let blob = blob.to_path_buf();
    let decoder = std::thread::spawn(move || {
        let file = io::BufReader::with_capacity(256 << 10, File::open(&blob).unwrap());
        let mut gz = flate2::read::MultiGzDecoder::new(file);
        loop {
            let mut chunk = recycle_rx
                .try_recv()
                .unwrap_or_else(|_| Vec::with_capacity(CHUNK));
            chunk.resize(CHUNK, 0);
            let mut filled = 0;
            let result = loop {
                match gz.read(&mut chunk[filled..]) {
                    Ok(0) => break Ok(true),
                    Ok(n) => {
                        filled += n;
                        if filled == chunk.len() {
                            break Ok(false);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => break Err(e),
                }
            };
            chunk.truncate(filled);
            match result {
                Ok(done) => {
                    if !chunk.is_empty() && tx.send(Ok(chunk)).is_err() {
                        return;
                    }
                    if done {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            }
        }
    });
    let reader = ChannelReader {
        chunks: rx,
        recycle: recycle_tx,
        current: Vec::new(),
        pos: 0,
    };
    apply_layer(dest, reader, &ApplyOptions::default()).unwrap();
    decoder.join().unwrap();
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
    let (files, links, dirs, bytes) = generate(&tree, tree_mib * MIB);
    eprintln!(
        "tree: {files} files, {links} symlinks, {dirs} directories, {:.0} MiB, generated in {:.1}s",
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
