//! What the codec benches share: the report line format, a fast deterministic generator, and
//! the ~500 MiB "realistic" tree (source-like text files 40 to a directory, binaries of
//! 64 KiB - 2 MiB, a log, an incompressible asset, a database-like file, symlinks) that both
//! the layer and the apply benches work on.
#![allow(dead_code, unreachable_pub)] // each bench uses its own part; shared by `mod common;`

use std::path::{Path, PathBuf};

pub const MIB: usize = 1 << 20;

/// Prints `BENCH <name> <median> <unit> <min> <max>` and returns the median.
pub fn report(name: &str, unit: &str, values: &[f64]) -> f64 {
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
pub struct Rng(pub u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    pub fn fill(&mut self, out: &mut Vec<u8>, len: usize) {
        while out.len() + 8 <= len {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        while out.len() < len {
            out.push(self.next() as u8);
        }
    }
}

const KEYWORDS: &[&str] = &[
    "fn", "let", "mut", "pub", "impl", "struct", "enum", "match", "if", "else", "for", "while",
    "return", "use", "mod", "self", "Self", "const", "static", "async", "await", "where", "trait",
    "type", "unsafe", "loop", "break", "continue", "in", "as", "ref",
];
const IDENTS: &[&str] = &[
    "buffer", "reader", "writer", "len", "offset", "digest", "layer", "entry", "header", "path",
    "config", "manifest", "index", "blob", "size", "count", "result", "error", "value", "key",
    "name", "data", "inner", "state", "options", "limits", "context", "request", "response",
    "client", "server", "cache", "store", "item", "node", "parent",
];
const PUNCT: &[&str] = &[
    "(", ")", "{", "}", ";", ",", ".", "::", "->", "=>", "&", "&mut ", "?", " = ", " + ", " == ",
    "<", ">", "[", "]", ": ",
];

/// One line of source-code-like text.
fn code_line(rng: &mut Rng, out: &mut Vec<u8>) {
    out.extend(std::iter::repeat_n(b' ', 4 * rng.below(5) as usize));
    let tokens = 2 + rng.below(9);
    for _ in 0..tokens {
        match rng.below(10) {
            0..=2 => out
                .extend_from_slice(KEYWORDS[rng.below(KEYWORDS.len() as u64) as usize].as_bytes()),
            3..=5 => {
                out.extend_from_slice(IDENTS[rng.below(IDENTS.len() as u64) as usize].as_bytes());
                if rng.below(4) == 0 {
                    out.push(b'_');
                    out.extend_from_slice(
                        IDENTS[rng.below(IDENTS.len() as u64) as usize].as_bytes(),
                    );
                }
            }
            6 => out.extend_from_slice(rng.below(1000).to_string().as_bytes()),
            7 => {
                out.push(b'"');
                let n = 3 + rng.below(12) as usize;
                out.extend((0..n).map(|_| b'a' + rng.below(26) as u8));
                out.push(b'"');
            }
            _ => out.extend_from_slice(PUNCT[rng.below(PUNCT.len() as u64) as usize].as_bytes()),
        }
        out.push(b' ');
    }
    out.push(b'\n');
}

/// Source-code-like text: lines mostly repeated from a per-file set and a shared set, as
/// in real code (gzip -6 takes it to roughly a quarter).
fn text_file(rng: &mut Rng, shared: &[Vec<u8>], len: usize) -> Vec<u8> {
    let local: Vec<&[u8]> = (0..24)
        .map(|_| shared[rng.below(shared.len() as u64) as usize].as_slice())
        .collect();
    let mut out = Vec::with_capacity(len + 128);
    while out.len() < len {
        match rng.below(20) {
            0..=12 => out.extend_from_slice(local[rng.below(local.len() as u64) as usize]),
            13..=16 => out.extend_from_slice(&shared[rng.below(shared.len() as u64) as usize]),
            _ => code_line(rng, &mut out),
        }
    }
    out.truncate(len);
    out
}

/// Machine-code-like bytes: mostly random, with repeats and small-alphabet runs (gzip -6
/// keeps roughly two thirds).
fn binary_file(rng: &mut Rng, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 256);
    while out.len() < len {
        let start = out.len();
        match rng.below(20) {
            0..=9 => rng.fill(&mut out, start + 256),
            10..=16 if start >= 4096 => {
                // A near copy of something recent.
                let from = start - 256 * (1 + rng.below(((start / 256).min(120)) as u64) as usize);
                for i in 0..256 {
                    let b = out[from + i];
                    let b = if rng.below(12) == 0 {
                        rng.next() as u8
                    } else {
                        b
                    };
                    out.push(b);
                }
            }
            _ => out.extend((0..256).map(|_| (rng.next() % 16) as u8)),
        }
    }
    out.truncate(len);
    out
}

/// Log lines with increasing timestamps (very compressible).
fn log_file(rng: &mut Rng, len: usize) -> Vec<u8> {
    let levels = ["INFO", "DEBUG", "WARN", "INFO", "INFO", "ERROR"];
    let mut out = Vec::with_capacity(len + 256);
    let mut t = 1_700_000_000_000u64;
    while out.len() < len {
        t += rng.below(5000);
        let line = format!(
            "{t} {} worker-{} request_id={:016x} path=/v2/{}/blobs/sha256:{:016x} status={} bytes={} took={}ms\n",
            levels[rng.below(levels.len() as u64) as usize],
            rng.below(16),
            rng.next(),
            IDENTS[rng.below(IDENTS.len() as u64) as usize],
            rng.next(),
            [200, 200, 200, 404, 201, 500][rng.below(6) as usize],
            rng.below(10_000_000),
            rng.below(2000),
        );
        out.extend_from_slice(line.as_bytes());
    }
    out.truncate(len);
    out
}

/// Database-like pages: records of text, the rest of each 4 KiB page zero.
fn db_file(rng: &mut Rng, shared: &[Vec<u8>], len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 4096);
    while out.len() < len {
        let page = out.len();
        let fill = 256 + rng.below(3000) as usize;
        out.extend_from_slice(&text_file(rng, shared, fill));
        out.resize(page + 4096, 0);
    }
    out.truncate(len);
    out
}

/// Generates the tree under `root`; returns (files, symlinks, bytes).
pub fn generate_tree(root: &Path, total: usize) -> (usize, usize, usize) {
    let mut rng = Rng::new(42);
    let shared: Vec<Vec<u8>> = (0..4000)
        .map(|_| {
            let mut line = Vec::new();
            code_line(&mut rng, &mut line);
            line
        })
        .collect();
    let (mut files, mut links, mut bytes) = (0, 0, 0);
    let mut write = |path: PathBuf, data: &[u8]| {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, data).unwrap();
        files += 1;
        bytes += data.len();
    };
    // 40%: small source-like files, 200 B - 24 KiB, 40 to a directory.
    let mut small = 0;
    let mut n = 0;
    let mut small_paths = Vec::new();
    while small < total * 40 / 100 {
        let len = 200 + (rng.below(24 << 10) as usize * rng.below(100) as usize / 100);
        let path = root.join(format!(
            "src/project{}/module{}/file{n}.rs",
            n / 2000,
            n / 40 % 50
        ));
        write(path.clone(), &text_file(&mut rng, &shared, len));
        small_paths.push(path);
        small += len;
        n += 1;
    }
    // 30%: medium binaries, 64 KiB - 2 MiB.
    let mut medium = 0;
    let mut n = 0;
    while medium < total * 30 / 100 {
        let len = (64 << 10) + rng.below(2 * MIB as u64 - (64 << 10)) as usize;
        let path = root.join(format!("usr/lib/pkg{}/lib{n}.so", n / 20));
        write(path, &binary_file(&mut rng, len));
        medium += len;
        n += 1;
    }
    // 30%: a log, an incompressible asset, a database.
    write(
        root.join("var/log/app.log"),
        &log_file(&mut rng, total * 12 / 100),
    );
    let mut asset = Vec::new();
    rng.fill(&mut asset, total * 8 / 100);
    write(root.join("usr/share/model/weights.bin"), &asset);
    write(
        root.join("var/lib/db/data.db"),
        &db_file(&mut rng, &shared, total / 10),
    );
    // Symlinks to some of the small files, relative.
    for (i, target) in small_paths.iter().step_by(20).enumerate() {
        let link = root.join(format!("usr/bin/tool{i}"));
        std::fs::create_dir_all(link.parent().unwrap()).unwrap();
        let relative = Path::new("../..").join(target.strip_prefix(root).unwrap());
        std::os::unix::fs::symlink(relative, link).unwrap();
        links += 1;
    }
    (files, links, bytes)
}
