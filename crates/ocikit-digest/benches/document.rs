//! Manifest and index parsing: `Document::parse_as` (the strict I-JSON reading, the raw
//! descriptor rules and the typed view) on the documents a layout's fsck reads most, and
//! `json::parse_strict` (what `index.json` goes through) for comparison.
//!
//! Run with `cargo bench -p ocikit-digest --bench document`. Prints one line per case,
//! `BENCH <name> <median> us/op <min> <max>`, each run parsing the document repeatedly for
//! about `OCIKIT_BENCH_MILLIS` (default 300) ms, over `OCIKIT_BENCH_RUNS` (default 7) runs.
#![allow(missing_docs, clippy::print_stdout, clippy::unwrap_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ocikit_digest::document::Document;
use ocikit_digest::{Digest, json, media_type};
use serde_json::json;

fn measure(name: &str, runs: usize, budget: Duration, mut f: impl FnMut()) {
    // Calibrate the number of calls per run to the budget.
    let start = Instant::now();
    let mut calls = 0u64;
    while start.elapsed() < budget / 4 {
        f();
        calls += 1;
    }
    let per_run = (calls * 4).max(1);
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..per_run {
                f();
            }
            start.elapsed().as_secs_f64() * 1e6 / per_run as f64
        })
        .collect();
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "BENCH {name} {:.3} us/op {:.3} {:.3}",
        times[times.len() / 2],
        times[0],
        times[times.len() - 1]
    );
}

fn descriptor(media_type: &str, seed: usize, size: u64) -> serde_json::Value {
    json!({
        "mediaType": media_type,
        "digest": Digest::sha256(seed.to_string().as_bytes()).to_string(),
        "size": size,
    })
}

/// A manifest as a layout's fsck meets them: a config and `layers` layers.
fn manifest(layers: usize) -> Vec<u8> {
    let layers: Vec<_> = (0..layers)
        .map(|i| descriptor(media_type::IMAGE_LAYER_GZIP, i, 1000 + i as u64))
        .collect();
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": media_type::IMAGE_MANIFEST,
        "config": descriptor(media_type::IMAGE_CONFIG, 1 << 20, 1234),
        "layers": layers,
        "annotations": {"org.opencontainers.image.created": "2026-01-01T00:00:00Z"},
    }))
    .unwrap()
}

/// An index of `entries` platform manifests, each with a platform and an annotation.
fn index(entries: usize) -> Vec<u8> {
    let manifests: Vec<_> = (0..entries)
        .map(|i| {
            let mut d = descriptor(media_type::IMAGE_MANIFEST, i, 500 + i as u64);
            d["platform"] = json!({"os": "linux", "architecture": "amd64", "variant": "v3"});
            d["annotations"] = json!({"org.opencontainers.image.ref.name": format!("tag-{i}")});
            d
        })
        .collect();
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": media_type::IMAGE_INDEX,
        "manifests": manifests,
    }))
    .unwrap()
}

fn main() {
    let runs: usize = std::env::var("OCIKIT_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7)
        .max(1);
    let budget = Duration::from_millis(
        std::env::var("OCIKIT_BENCH_MILLIS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(300),
    );
    let cases = [
        ("manifest-2-layers", media_type::IMAGE_MANIFEST, manifest(2)),
        (
            "manifest-10-layers",
            media_type::IMAGE_MANIFEST,
            manifest(10),
        ),
        ("index-4", media_type::IMAGE_INDEX, index(4)),
        ("index-2000", media_type::IMAGE_INDEX, index(2000)),
    ];
    for (name, declared, bytes) in cases {
        let bytes = Bytes::from(bytes);
        Document::parse_as(declared, bytes.clone()).unwrap();
        measure(&format!("document/{name}"), runs, budget, || {
            black_box(Document::parse_as(declared, black_box(bytes.clone())).unwrap());
        });
        measure(&format!("parse-strict/{name}"), runs, budget, || {
            black_box(json::parse_strict(black_box(&bytes)).unwrap());
        });
    }
}
