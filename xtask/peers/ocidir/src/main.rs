//! ocidir 0.8 doing what ocikit's benchmarks measure, printing `BENCH <name> <median> <unit>
//! <min> <max>` lines that the ocikit bench reads.
//!
//! `ocidir-peer layers TREE RUNS OUT`: gzip level 6 and zstd level 3 layers of TREE, through
//! ocidir's own layer writers (`create_gzip_layer`, `create_layer_zstd_multithread`), from the
//! tree (tar crate builder straight into the writer) and from an in-memory tar.
//!
//! `ocidir-peer fsck LAYOUT RUNS`: `OciRead::fsck` of an existing layout (MB/s of the blob
//! bytes under `blobs/`, and blobs/s).
//!
//! `ocidir-peer referrers LAYOUT DIGEST RUNS`: `OciRead::find_referrers` of one subject
//! (milliseconds per call, and how many it found).

use std::io::{self, Write};
use std::path::Path;
use std::time::Instant;

use cap_std_ext::cap_std::{ambient_authority, fs::Dir};
use ocidir::{OciDir, OciRead};

const MIB: f64 = (1u64 << 20) as f64;

fn report(name: &str, unit: &str, mut values: Vec<f64>) {
    values.sort_by(f64::total_cmp);
    let median = values[values.len() / 2];
    println!(
        "BENCH {name} {median:.3} {unit} {:.3} {:.3}",
        values[0],
        values[values.len() - 1]
    );
}

/// Counts what the tar builder writes, to report MB/s of uncompressed input.
struct Counting<W> {
    inner: W,
    bytes: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn tar_into<W: Write>(tree: &Path, out: W) -> W {
    let mut builder = tar::Builder::new(out);
    builder.follow_symlinks(false);
    builder.append_dir_all(".", tree).expect("tar the tree");
    builder.into_inner().expect("finish the tar")
}

fn fresh_layout(out: &Path, name: &str) -> OciDir {
    let dir = out.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create layout dir");
    let dir = Dir::open_ambient_dir(&dir, ambient_authority()).expect("open layout dir");
    OciDir::ensure(dir).expect("create layout")
}

#[derive(Clone, Copy)]
enum Codec {
    Gzip6,
    Zstd3,
}

/// One layer; returns (uncompressed bytes, compressed bytes).
fn one(ocidir: &OciDir, codec: Codec, tree: &Path, tar: Option<&[u8]>) -> (u64, u64) {
    fn feed<W: Write>(w: W, tree: &Path, tar: Option<&[u8]>) -> (W, u64) {
        let mut c = Counting { inner: w, bytes: 0 };
        match tar {
            Some(tar) => {
                for chunk in tar.chunks(1 << 20) {
                    c.write_all(chunk).expect("write layer");
                }
            }
            None => c = tar_into(tree, c),
        }
        (c.inner, c.bytes)
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    match codec {
        Codec::Gzip6 => {
            let w = ocidir
                .create_gzip_layer(Some(flate2::Compression::new(6)))
                .expect("gzip layer");
            let (w, n) = feed(w, tree, tar);
            let layer = w.complete().expect("complete layer");
            (n, layer.blob.size())
        }
        Codec::Zstd3 => {
            let w = ocidir
                .create_layer_zstd_multithread(Some(3), threads)
                .expect("zstd layer");
            let (w, n) = feed(w, tree, tar);
            let layer = w.complete().expect("complete layer");
            (n, layer.blob.size())
        }
    }
}

fn layers(tree: &Path, runs: usize, out: &Path) {
    let tar = tar_into(tree, Vec::new());
    let cases = [
        ("ocidir/gzip6-tree", Codec::Gzip6, false),
        ("ocidir/gzip6-mem", Codec::Gzip6, true),
        ("ocidir/zstd3-tree", Codec::Zstd3, false),
        ("ocidir/zstd3-mem", Codec::Zstd3, true),
    ];
    let mut rates = vec![Vec::new(); cases.len()];
    let mut sizes = [0u64; 4];
    for round in 0..runs {
        for k in 0..cases.len() {
            let i = (k + round) % cases.len();
            let (_, codec, mem) = cases[i];
            let ocidir = fresh_layout(out, "layout");
            let start = Instant::now();
            let (input, size) = one(&ocidir, codec, tree, mem.then_some(&tar[..]));
            rates[i].push(input as f64 / start.elapsed().as_secs_f64() / 1e6);
            sizes[i] = size;
        }
    }
    for (i, (name, _, _)) in cases.iter().enumerate() {
        report(name, "MB/s", rates[i].clone());
    }
    let mib = sizes[1] as f64 / MIB;
    println!("BENCH ocidir/gzip6-size {mib:.3} MiB {mib:.3} {mib:.3}");
    let mib = sizes[3] as f64 / MIB;
    println!("BENCH ocidir/zstd3-size {mib:.3} MiB {mib:.3} {mib:.3}");
}

fn open_layout(path: &Path) -> OciDir {
    let dir = Dir::open_ambient_dir(path, ambient_authority()).expect("open layout dir");
    OciDir::open(dir).expect("open layout")
}

/// Bytes and count of the files under `blobs/`.
fn blob_bytes(layout: &Path) -> (u64, u64) {
    let (mut bytes, mut count) = (0, 0);
    for alg in std::fs::read_dir(layout.join("blobs")).expect("read blobs/") {
        for blob in std::fs::read_dir(alg.expect("entry").path()).expect("read blobs/<alg>") {
            bytes += blob.expect("entry").metadata().expect("stat blob").len();
            count += 1;
        }
    }
    (bytes, count)
}

fn fsck(layout: &Path, runs: usize) {
    let ocidir = open_layout(layout);
    let (bytes, count) = blob_bytes(layout);
    let (mut rates, mut per_second) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let start = Instant::now();
        let checked = ocidir.fsck().expect("fsck");
        let seconds = start.elapsed().as_secs_f64();
        assert!(checked > 0, "fsck checked nothing");
        rates.push(bytes as f64 / seconds / 1e6);
        per_second.push(count as f64 / seconds);
    }
    report("ocidir/fsck", "MB/s", rates);
    report("ocidir/fsck-blobs", "blobs/s", per_second);
}

fn referrers(layout: &Path, digest: &str, runs: usize) {
    use ocidir::oci_spec::image::Digest;
    let ocidir = open_layout(layout);
    let subject: Digest = digest.parse().expect("a digest");
    let (mut millis, mut found) = (Vec::new(), 0);
    for _ in 0..runs {
        let start = Instant::now();
        found = ocidir
            .find_referrers(&subject, None)
            .expect("find_referrers")
            .len();
        millis.push(start.elapsed().as_secs_f64() * 1e3);
    }
    report("ocidir/find-referrers", "ms", millis);
    let n = found as f64;
    println!("BENCH ocidir/find-referrers-found {n} count {n} {n}");
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["layers", tree, runs, out] => layers(
            Path::new(tree),
            runs.parse().expect("RUNS is a number"),
            Path::new(out),
        ),
        ["fsck", layout, runs] => fsck(Path::new(layout), runs.parse().expect("RUNS")),
        ["referrers", layout, digest, runs] => {
            referrers(Path::new(layout), digest, runs.parse().expect("RUNS"))
        }
        _ => {
            eprintln!(
                "usage: ocidir-peer layers TREE RUNS OUT | fsck LAYOUT RUNS | referrers LAYOUT DIGEST RUNS"
            );
            std::process::exit(2);
        }
    }
}
