//! Flattening a five-layer image against writing its merged tree as one gzip layer
//! (`cargo bench -p ocikit-codec --bench flatten`; issue 16: flatten at ≥ 90% of the speed of
//! the gzip layer writer on the merged tree, since it is the same work plus decompression
//! and a merge):
//!
//! - the benches' deterministic "realistic" tree (default 160 MiB) is dealt out file by file
//!   to five layers (each with the directories its files need), then the top layer replaces
//!   one file in ten of the lower layers with new content and whites out one in fifty: the
//!   lower layers hold content the result does not;
//! - each layer is a gzip blob made by [`LayerWriter`];
//! - `flatten`: [`squash_layer`] of the five blobs, each decompressed as it is read, into a
//!   gzip [`LayerWriter`] (decompress, merge, recompress in one pass);
//! - `gzip6-merged-tree`: the merged tar (the squash's output, in memory) through a gzip
//!   [`LayerWriter`]; `gzip6-merged-tree-build`: the merged tree unpacked to a directory
//!   and packed from there by [`build_layer`] into the same writer (as `ocikit build`);
//! - `ratio`: flatten / gzip-merged, both as MB/s of the merged tar; `cpu-ratio` the same
//!   per CPU second of the process (all threads), steadier on a shared machine;
//! - `merge-only`: the squash of the five blobs into nothing (decompression and merge
//!   without compression), for where the time goes.
//!
//! Prints `BENCH <name> <median> <unit> <min> <max>` lines; 10^6 bytes per MB.
//!
//! Environment:
//! - `OCIKIT_BENCH_RUNS` (default 3): runs per case, interleaved.
//! - `OCIKIT_BENCH_DIR`: where the temporary tree goes (default: the system temp directory).
//! - `OCIKIT_BENCH_TREE_MIB` (default 160): the tree's size.
#![allow(
    missing_docs,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use ocikit_codec::Limits;
use ocikit_codec::apply::{ApplyOptions, apply_layer};
use ocikit_codec::build::{BuildOptions, build_layer};
use ocikit_codec::compression::{Compression, Decoder};
use ocikit_codec::squash::{SquashOptions, squash, squash_layer};
use ocikit_codec::writer::{LayerOptions, LayerWriter};

mod common;

use common::{MIB, Rng, generate_tree, report};

const LAYERS: usize = 5;

/// Every path below `root` (relative), parents first, sorted.
fn walk(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) {
    let mut names: Vec<_> = std::fs::read_dir(root.join(rel))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    for name in names {
        let path = rel.join(name);
        out.push(path.clone());
        if std::fs::symlink_metadata(root.join(&path))
            .unwrap()
            .is_dir()
        {
            walk(root, &path, out);
        }
    }
}

fn header(kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(1_700_000_000);
    h
}

/// Appends the directories of `path` not yet in `layer`.
fn parents(builder: &mut tar::Builder<Vec<u8>>, done: &mut Vec<PathBuf>, path: &Path) {
    let mut ancestors: Vec<&Path> = path.ancestors().skip(1).collect();
    ancestors.reverse();
    for dir in ancestors {
        if dir.as_os_str().is_empty() || done.iter().any(|d| d == dir) {
            continue;
        }
        let mut h = header(tar::EntryType::Directory, 0, 0o755);
        let mut name = dir.as_os_str().as_bytes().to_vec();
        name.push(b'/');
        builder
            .append_data(
                &mut h,
                Path::new(std::ffi::OsStr::from_bytes(&name)),
                &[][..],
            )
            .unwrap();
        done.push(dir.to_path_buf());
    }
}

/// The five layer tars: the tree dealt out, then overrides and whiteouts on top.
fn layers(root: &Path) -> Vec<Vec<u8>> {
    let mut paths = Vec::new();
    walk(root, Path::new(""), &mut paths);
    let mut builders: Vec<tar::Builder<Vec<u8>>> =
        (0..LAYERS).map(|_| tar::Builder::new(Vec::new())).collect();
    let mut dirs: Vec<Vec<PathBuf>> = vec![Vec::new(); LAYERS];
    let mut lower_files = Vec::new();
    let mut n = 0usize;
    for path in &paths {
        let full = root.join(path);
        let meta = std::fs::symlink_metadata(&full).unwrap();
        if meta.is_dir() {
            continue;
        }
        let layer = n % LAYERS;
        n += 1;
        parents(&mut builders[layer], &mut dirs[layer], path);
        if meta.file_type().is_symlink() {
            let mut h = header(tar::EntryType::Symlink, 0, 0o777);
            builders[layer]
                .append_link(&mut h, path, std::fs::read_link(&full).unwrap())
                .unwrap();
        } else {
            let mut h = header(tar::EntryType::Regular, meta.len(), 0o644);
            builders[layer]
                .append_data(&mut h, path, std::fs::File::open(&full).unwrap())
                .unwrap();
            if layer < LAYERS - 1 {
                lower_files.push((path.clone(), meta.len()));
            }
        }
    }
    // The top layer: one lower file in ten replaced, one in fifty deleted.
    let top = LAYERS - 1;
    let mut rng = Rng::new(7);
    for (i, (path, len)) in lower_files.iter().enumerate() {
        if i % 10 == 3 {
            parents(&mut builders[top], &mut dirs[top], path);
            let mut data = Vec::new();
            rng.fill(&mut data, (*len as usize).min(MIB));
            let mut h = header(tar::EntryType::Regular, data.len() as u64, 0o644);
            builders[top].append_data(&mut h, path, &data[..]).unwrap();
        } else if i % 50 == 7 {
            parents(&mut builders[top], &mut dirs[top], path);
            let mut name = path.parent().unwrap().as_os_str().as_bytes().to_vec();
            if !name.is_empty() {
                name.push(b'/');
            }
            name.extend_from_slice(b".wh.");
            name.extend_from_slice(path.file_name().unwrap().as_bytes());
            let mut h = header(tar::EntryType::Regular, 0, 0o644);
            builders[top]
                .append_data(
                    &mut h,
                    Path::new(std::ffi::OsStr::from_bytes(&name)),
                    &[][..],
                )
                .unwrap();
        }
    }
    builders
        .into_iter()
        .map(|b| b.into_inner().unwrap())
        .collect()
}

/// CPU seconds (user and system) this process has used, all threads (`/proc/self/stat`).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the command name (which is in parentheses): utime and stime are the
    // 12th and 13th.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    // USER_HZ is 100 on Linux.
    ticks / 100.0
}

fn gzip(tar: &[u8]) -> Vec<u8> {
    let mut w = LayerWriter::new(Vec::new(), LayerOptions::new(Compression::Gzip)).unwrap();
    w.write_all(tar).unwrap();
    w.finish().unwrap().0
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
        .unwrap_or(160);
    let base = std::env::var_os("OCIKIT_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    let dir = tempfile::tempdir_in(base).unwrap();
    let tree = dir.path().join("tree");
    let (files, links, bytes) = generate_tree(&tree, tree_mib * MIB);
    eprintln!("tree: {files} files, {links} symlinks, {} MiB", bytes / MIB);

    let tars = layers(&tree);
    let blobs: Vec<Vec<u8>> = tars.iter().map(|t| gzip(t)).collect();
    drop(tars);
    let _ = std::fs::remove_dir_all(&tree);
    let open = |i: usize| -> ocikit_codec::Result<_> {
        Ok(Decoder::new(
            &blobs[i][..],
            Compression::Gzip,
            Limits::default(),
        ))
    };
    let mut merged = Vec::new();
    let squashed = squash(LAYERS, open, &mut merged, &SquashOptions::new()).unwrap();
    let input: usize = blobs.iter().map(Vec::len).sum();
    eprintln!(
        "layers: {} MiB of gzip; merged tar {} MiB ({} entries, {} hidden, {} whiteouts)",
        input / MIB,
        merged.len() / MIB,
        squashed.entries,
        squashed.hidden,
        squashed.whiteouts
    );

    // The merged tree on disk, for the layer writer fed by the directory packer.
    let merged_tree = dir.path().join("merged");
    std::fs::create_dir(&merged_tree).unwrap();
    apply_layer(&merged_tree, &merged[..], &ApplyOptions::new()).unwrap();

    let (mut flat, mut plain, mut merge) = (Vec::new(), Vec::new(), Vec::new());
    let (mut flat_cpu, mut plain_cpu) = (Vec::new(), Vec::new());
    let (mut built, mut built_cpu, mut inflate) = (Vec::new(), Vec::new(), Vec::new());
    let mb = merged.len() as f64 / 1e6;
    for _ in 0..runs {
        let (start, cpu) = (Instant::now(), cpu_seconds());
        let (blob, info, _) = squash_layer(
            LAYERS,
            open,
            Vec::new(),
            LayerOptions::new(Compression::Gzip),
            &SquashOptions::new(),
        )
        .unwrap();
        flat.push(mb / start.elapsed().as_secs_f64());
        flat_cpu.push(mb / (cpu_seconds() - cpu));
        assert_eq!(info.uncompressed_size, merged.len() as u64);
        drop(blob);

        let start = Instant::now();
        squash(LAYERS, open, std::io::sink(), &SquashOptions::new()).unwrap();
        merge.push(mb / start.elapsed().as_secs_f64());

        let start = Instant::now();
        for i in 0..LAYERS {
            std::io::copy(&mut open(i).unwrap(), &mut std::io::sink()).unwrap();
        }
        inflate.push(mb / start.elapsed().as_secs_f64());

        let (start, cpu) = (Instant::now(), cpu_seconds());
        let mut w = LayerWriter::new(Vec::new(), LayerOptions::new(Compression::Gzip)).unwrap();
        build_layer(&merged_tree, &mut w, &BuildOptions::new()).unwrap();
        let (blob, _) = w.finish().unwrap();
        built.push(mb / start.elapsed().as_secs_f64());
        built_cpu.push(mb / (cpu_seconds() - cpu));
        drop(blob);

        let (start, cpu) = (Instant::now(), cpu_seconds());
        let mut w = LayerWriter::new(Vec::new(), LayerOptions::new(Compression::Gzip)).unwrap();
        for chunk in merged.chunks(MIB) {
            w.write_all(chunk).unwrap();
        }
        let (blob, info) = w.finish().unwrap();
        plain.push(mb / start.elapsed().as_secs_f64());
        plain_cpu.push(mb / (cpu_seconds() - cpu));
        assert_eq!(info.uncompressed_size, merged.len() as u64);
        drop(blob);
    }
    let fa = report("flatten/gzip6", "MB/s", &flat);
    let b = report("gzip6-merged-tree", "MB/s", &plain);
    report("flatten/ratio", "x", &[fa / b]);
    // The same per CPU second (all threads): on a machine shared with other work, wall
    // times move with the load, CPU time much less.
    let a = report("flatten/gzip6-cpu", "MB/cpu-s", &flat_cpu);
    let b = report("gzip6-merged-tree-cpu", "MB/cpu-s", &plain_cpu);
    report("flatten/cpu-ratio", "x", &[a / b]);
    // The merged tree packed from disk by the directory packer into the same writer.
    let c = report("gzip6-merged-tree-build", "MB/s", &built);
    report("flatten/ratio-vs-build", "x", &[fa / c]);
    let c = report("gzip6-merged-tree-build-cpu", "MB/cpu-s", &built_cpu);
    report("flatten/cpu-ratio-vs-build", "x", &[a / c]);
    // The squash alone (decompression and merge, no compression), and decompression alone,
    // for where the time goes (MB of the merged tar per second).
    report("flatten/merge-only", "MB/s", &merge);
    report("flatten/inflate-only", "MB/s", &inflate);
}
