//! `ocikit sync` side by side with `skopeo sync` on the same work: mirroring one repository
//! of 20 tags of ~25 MiB images (a shared base layer and a layer of its own each, random
//! bytes, uncompressed tar) from Debian's `docker-registry` (distribution 2.8) into a fresh
//! `ocikit serve`, then the same sync again with nothing changed.
//!
//! Both tools run as processes (`ocikit -q sync …`, `skopeo sync --src docker --dest docker
//! …`), with the registries' storage and the working directory on tmpfs (`/dev/shm`, or
//! `OCIKIT_BENCH_DIR`), so this measures the tools and the registries, not the disk. Each
//! round starts a fresh destination registry per tool; which tool goes first alternates
//! round by round. Prints the CPU model (`CPU …`) and `BENCH <name> <median> <unit> <min>
//! <max>` lines: seconds for the first run and the no-change rerun of each tool, and
//! skopeo's time over ocikit's (how many times faster ocikit is).
//!
//! Run it on a quiet machine, from the workspace root:
//!
//! ```text
//! cargo build --release -p ocikit-cli
//! OCIKIT_BENCH_OCIKIT=$PWD/target/release/ocikit cargo bench -p ocikit-transport --bench sync
//! ```
//!
//! Environment: `OCIKIT_BENCH_OCIKIT` (the `ocikit` binary; required), `OCIKIT_BENCH_RUNS`
//! (default 5), `OCIKIT_BENCH_TAGS` (default 20), `OCIKIT_BENCH_MIB` (MiB per image,
//! default 25), `OCIKIT_BENCH_JOBS` (`ocikit sync --jobs`, default its own), `OCIKIT_BENCH_DIR`.
#![allow(
    missing_docs,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use ocikit_codec::compression::Compression;
use ocikit_layout::{ImageBuilder, LayerSpec, Layout};
use ocikit_store::FsStore;

mod common;
use common::{Server, cpu_model, ratio, report};

/// `tags` images of `mib` MiB in a layout at `dir`: a base layer of 2/5 of it shared by
/// all, and a layer of its own each.
async fn images(dir: &Path, tags: usize, mib: usize) {
    let layout = Layout::create(FsStore::open(dir).await.unwrap())
        .await
        .unwrap();
    let base_len = (mib << 20) * 2 / 5;
    let own_len = (mib << 20) - base_len;
    let base = tempfile::tempdir().unwrap();
    std::fs::write(
        base.path().join("base.bin"),
        ocikit_testkit::prng::bytes(1, base_len),
    )
    .unwrap();
    for n in 0..tags {
        let own = tempfile::tempdir().unwrap();
        std::fs::write(
            own.path().join("own.bin"),
            ocikit_testkit::prng::bytes(100 + n as u64, own_len),
        )
        .unwrap();
        let mut builder = ImageBuilder::new(&layout);
        builder
            .platform(&ocikit_digest::platform::parse("linux/amd64").unwrap())
            .cmd(["/bin/sh"]);
        for tree in [base.path(), own.path()] {
            builder
                .add_layer_from_dir(tree, LayerSpec::new().compression(Compression::None))
                .await
                .unwrap();
        }
        builder.write_and_tag(&format!("1.{n}.0")).await.unwrap();
    }
}

/// Runs `program args` in `cwd`, expecting success; seconds.
fn timed(program: &Path, args: &[String], cwd: &Path) -> f64 {
    let started = Instant::now();
    let out = Command::new(program)
        .args(args)
        .current_dir(cwd)
        .env("DOCKER_CONFIG", "/nonexistent/ocikit-bench")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    let elapsed = started.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "{} {args:?} failed:\n{}",
        program.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    elapsed
}

fn main() {
    let binary = PathBuf::from(std::env::var("OCIKIT_BENCH_OCIKIT").expect(
        "OCIKIT_BENCH_OCIKIT names the ocikit binary (cargo build --release -p ocikit-cli)",
    ));
    let env = |name: &str, default: usize| -> usize {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let runs = env("OCIKIT_BENCH_RUNS", 5).max(1);
    let tags = env("OCIKIT_BENCH_TAGS", 20).max(1);
    let mib = env("OCIKIT_BENCH_MIB", 25).max(1);
    let jobs = std::env::var("OCIKIT_BENCH_JOBS").ok();
    let skopeo = PathBuf::from("skopeo");
    let base_dir = std::env::var("OCIKIT_BENCH_DIR").unwrap_or_else(|_| "/dev/shm".into());
    let dir = tempfile::tempdir_in(base_dir).unwrap();
    println!("CPU {}", cpu_model());
    println!("# {tags} tags of {mib} MiB, {runs} runs");

    let source = Server::distribution(dir.path());
    let layout = dir.path().join("app");
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(images(&layout, tags, mib));
    // The source repository: <distribution>/src/app, pushed by ocikit (not timed).
    timed(
        &binary,
        &[
            "-q".into(),
            "sync".into(),
            "--src".into(),
            "oci".into(),
            "--dest-tls-verify=false".into(),
            layout.display().to_string(),
            format!("{}/src", source.addr),
        ],
        dir.path(),
    );
    std::fs::remove_dir_all(&layout).unwrap();
    let repository = format!("{}/src/app", source.addr);

    let tools = ["ocikit", "skopeo"];
    // [tool][first, rerun]
    let mut results: Vec<[Vec<f64>; 2]> = vec![Default::default(), Default::default()];
    for round in 0..runs {
        for k in 0..2 {
            let i = (k + round) % 2;
            let root = dir.path().join(format!("dest-{round}-{i}"));
            let work = dir.path().join(format!("work-{round}-{i}"));
            std::fs::create_dir_all(&work).unwrap();
            let destination = Server::ocikit(&root, &binary, &[]);
            let target = format!("{}/mirror", destination.addr);
            let (program, args): (&Path, Vec<String>) = if tools[i] == "ocikit" {
                let mut args: Vec<String> = [
                    "-q",
                    "sync",
                    "--src-tls-verify=false",
                    "--dest-tls-verify=false",
                ]
                .map(String::from)
                .to_vec();
                if let Some(jobs) = &jobs {
                    args.extend(["--jobs".into(), jobs.clone()]);
                }
                args.extend([repository.clone(), target]);
                (&binary, args)
            } else {
                let args = [
                    "--insecure-policy",
                    "sync",
                    "--src",
                    "docker",
                    "--dest",
                    "docker",
                    "--src-tls-verify=false",
                    "--dest-tls-verify=false",
                ]
                .map(String::from)
                .into_iter()
                .chain([repository.clone(), target])
                .collect();
                (&skopeo, args)
            };
            let first = timed(program, &args, &work);
            let rerun = timed(program, &args, &work);
            eprintln!(
                "round {round}: {} first {first:.2} s, rerun {rerun:.3} s",
                tools[i]
            );
            results[i][0].push(first);
            results[i][1].push(rerun);
            drop(destination);
            std::fs::remove_dir_all(&root).ok();
            std::fs::remove_dir_all(&work).ok();
        }
    }
    let mut medians = [[0.0; 2]; 2];
    for (i, tool) in tools.iter().enumerate() {
        medians[i][0] = report(&format!("sync-first/{tool}"), "s", &results[i][0]);
        medians[i][1] = report(&format!("sync-rerun/{tool}"), "s", &results[i][1]);
    }
    ratio(
        "sync-first/skopeo-over-ocikit",
        medians[1][0] / medians[0][0],
    );
    ratio(
        "sync-rerun/skopeo-over-ocikit",
        medians[1][1] / medians[0][1],
    );
    drop(source);
}
