//! Hashing throughput, side by side in one run: ocikit's `Hasher` and `VerifyingReader`
//! against the raw `sha2` and `ring` implementations it was chosen between.
//!
//! Run with `cargo bench -p ocikit-digest --bench hashing` (or `cargo xtask bench digest`,
//! which adds `openssl speed` and writes `docs/benchmarks.md`). Prints one line per case,
//! `BENCH <name> <median> GB/s <min> <max>`, over several runs of a 256 MiB stream in 1 MiB
//! chunks from one reused buffer.
#![allow(missing_docs, clippy::print_stdout, clippy::unwrap_used)]

use std::hint::black_box;
use std::io::Read;
use std::time::Instant;

use ocikit_digest::{Algorithm, Digest, Hasher, VerifyingReader};

const CHUNK: usize = 1 << 20;
const TOTAL: usize = 256 << 20;

fn measure(name: &str, runs: usize, mut f: impl FnMut()) {
    f(); // warm up
    let mut rates: Vec<f64> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            TOTAL as f64 / start.elapsed().as_secs_f64() / 1e9
        })
        .collect();
    rates.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "BENCH {name} {:.3} GB/s {:.3} {:.3}",
        rates[rates.len() / 2],
        rates[0],
        rates[rates.len() - 1]
    );
}

/// Hands out `TOTAL` bytes from one reused chunk.
struct Repeat<'a> {
    chunk: &'a [u8],
    left: usize,
}

impl Read for Repeat<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.chunk.len()).min(self.left);
        buf[..n].copy_from_slice(&self.chunk[..n]);
        self.left -= n;
        Ok(n)
    }
}

fn main() {
    let runs: usize = std::env::var("OCIKIT_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7);
    let chunk: Vec<u8> = (0..CHUNK).map(|i| (i * 31 + i / 7) as u8).collect();

    measure("sha256/ocikit-hasher", runs, || {
        let mut h = Hasher::sha256();
        for _ in 0..TOTAL / CHUNK {
            h.update(&chunk);
        }
        black_box(h.finish());
    });
    measure("sha256/sha2-raw", runs, || {
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        for _ in 0..TOTAL / CHUNK {
            h.update(&chunk);
        }
        black_box(h.finalize());
    });
    measure("sha256/ring-raw", runs, || {
        let mut h = ring::digest::Context::new(&ring::digest::SHA256);
        for _ in 0..TOTAL / CHUNK {
            h.update(&chunk);
        }
        black_box(h.finish());
    });

    // The verifying reader, including the copy out of the source reader.
    let expected = {
        let mut h = Hasher::sha256();
        for _ in 0..TOTAL / CHUNK {
            h.update(&chunk);
        }
        h.finish()
    };
    let mut buf = vec![0u8; CHUNK];
    measure("sha256/ocikit-verifying-reader", runs, || {
        let src = Repeat {
            chunk: &chunk,
            left: TOTAL,
        };
        let mut r = VerifyingReader::new(src, expected.clone(), TOTAL as u64).unwrap();
        while r.read(&mut buf).unwrap() != 0 {}
        assert!(r.is_verified());
    });

    measure("sha512/ocikit-hasher", runs.min(5), || {
        let mut h = Hasher::new(&Algorithm::Sha512).unwrap();
        for _ in 0..TOTAL / CHUNK {
            h.update(&chunk);
        }
        black_box(h.finish());
    });
    measure("sha512/ring-raw", runs.min(5), || {
        let mut h = ring::digest::Context::new(&ring::digest::SHA512);
        for _ in 0..TOTAL / CHUNK {
            h.update(&chunk);
        }
        black_box(h.finish());
    });
    black_box(Digest::sha256(b""));
}
