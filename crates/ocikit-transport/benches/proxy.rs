//! The pull-through cache (issue 19): pulling a ~500 MiB image of five layers (random bytes,
//! uncompressed tar) straight from Debian's `docker-registry` (distribution 2.8), against
//! pulling it through `ocikit serve --proxy` in front of that registry, first with an empty
//! cache and then again with the cache warm.
//!
//! A cache earns its keep when the upstream is far away, so by default the upstream is
//! reached through a relay in this process that limits what it sends to the clients to
//! `OCIKIT_BENCH_LINK_MBIT` megabits a second altogether (default 1000, a 1 Gbit/s link; 0
//! for none): the direct pulls and the cache's fetches cross the same link, and the cache
//! sits beside the clients.
//!
//! Everything else runs as processes: the upstream, the cache (`ocikit -q serve --proxy
//! docker://UPSTREAM --proxy-tls-verify=false --root DIR`), and each pull (`ocikit -q copy
//! docker://HOST/bench/app:v oci:DIR:v`, into a fresh layout, removed after). Storage and
//! work directories are on tmpfs (`/dev/shm`, or `OCIKIT_BENCH_DIR`), so this measures the
//! registries and the client, not the disk. Each round starts a fresh cache; rounds
//! alternate whether the direct pull goes before or after the two through the cache.
//! Prints the CPU model (`CPU …`) and `BENCH <name> <median> <unit> <min> <max>` lines:
//! seconds of each pull, and the direct pull's time over each pull through the cache (the
//! goals: first pull >= 0.8x, second >= 1.5x). Then the CPU seconds (user and system) each
//! process spent on each kind of pull (`…-cpu-client`, `…-cpu-cache`, `…-cpu-upstream`),
//! from `/proc`: on bare loopback the three processes share the machine's cores, so a
//! pull's time is bounded by their sum over the core count, and these say where it went.
//!
//! From the workspace root:
//!
//! ```text
//! cargo build --release -p ocikit-cli
//! OCIKIT_BENCH_OCIKIT=$PWD/target/release/ocikit cargo bench -p ocikit-transport --bench proxy
//! ```
//!
//! Environment: `OCIKIT_BENCH_OCIKIT` (the `ocikit` binary; required), `OCIKIT_BENCH_RUNS`
//! (default 5), `OCIKIT_BENCH_MIB` (MiB of the image, default 500, in five layers),
//! `OCIKIT_BENCH_LINK_MBIT`, `OCIKIT_BENCH_DIR`.
#![allow(
    missing_docs,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use ocikit_codec::compression::Compression;
use ocikit_layout::{ImageBuilder, LayerSpec, Layout};
use ocikit_store::FsStore;

mod common;
use common::{Server, cpu_model, cpu_seconds, report};

const LAYERS: usize = 5;

/// Bytes sent through the link, one after another at `rate` bytes a second in all.
struct Link {
    next: Mutex<Instant>,
    rate: f64,
}

impl Link {
    async fn send(&self, n: usize) {
        let at = {
            let mut next = self.next.lock().unwrap();
            let start = (*next).max(Instant::now());
            *next = start + Duration::from_secs_f64(n as f64 / self.rate);
            start
        };
        tokio::time::sleep_until(at.into()).await;
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    link: Option<Arc<Link>>,
) {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(link) = &link {
            link.send(n).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    to.shutdown().await.ok();
}

/// A relay to `target` on a free port whose replies share a link of `mbit` Mbit/s; returns
/// its address.
fn relay(target: String, mbit: f64) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let link = Arc::new(Link {
        next: Mutex::new(Instant::now()),
        rate: mbit * 1e6 / 8.0,
    });
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    continue;
                };
                let (target, link) = (target.clone(), link.clone());
                tokio::spawn(async move {
                    let Ok(outbound) = tokio::net::TcpStream::connect(&target).await else {
                        return;
                    };
                    inbound.set_nodelay(true).ok();
                    outbound.set_nodelay(true).ok();
                    let (in_read, in_write) = inbound.into_split();
                    let (out_read, out_write) = outbound.into_split();
                    tokio::spawn(pipe(in_read, out_write, None));
                    pipe(out_read, in_write, Some(link)).await;
                });
            }
        });
    });
    addr
}

/// A layout at `dir` tagged `v`: five layers of `mib / 5` MiB of random bytes each.
async fn image(dir: &Path, mib: usize) {
    let layout = Layout::create(FsStore::open(dir).await.unwrap())
        .await
        .unwrap();
    let mut builder = ImageBuilder::new(&layout);
    let per_layer = (mib << 20) / LAYERS;
    for i in 0..LAYERS {
        let tree = tempfile::tempdir().unwrap();
        std::fs::write(
            tree.path().join(format!("layer{i}.bin")),
            ocikit_testkit::prng::bytes(1000 + i as u64, per_layer),
        )
        .unwrap();
        builder
            .add_layer_from_dir(tree.path(), LayerSpec::new().compression(Compression::None))
            .await
            .unwrap();
    }
    builder.write_and_tag("v").await.unwrap();
}

/// One kind of pull's samples: wall seconds, and CPU seconds of the client (`ocikit copy`),
/// the cache (when pulled through it) and the upstream.
#[derive(Default)]
struct Samples {
    wall: Vec<f64>,
    client: Vec<f64>,
    cache: Vec<f64>,
    upstream: Vec<f64>,
}

impl Samples {
    /// Pulls from `addr` (see [`pull`]), counting the CPU of the client, of `cache` (when
    /// given) and of `upstream`.
    fn pull(&mut self, binary: &Path, addr: &str, work: &Path, cache: Option<u32>, upstream: u32) {
        let me = std::process::id();
        let (client0, upstream0) = (cpu_seconds(me, true), cpu_seconds(upstream, false));
        let cache0 = cache.map(|pid| cpu_seconds(pid, false));
        self.wall.push(pull(binary, addr, work));
        self.client.push(cpu_seconds(me, true) - client0);
        self.upstream.push(cpu_seconds(upstream, false) - upstream0);
        if let (Some(pid), Some(before)) = (cache, cache0) {
            self.cache.push(cpu_seconds(pid, false) - before);
        }
    }

    /// Prints the `BENCH` lines of the CPU seconds; returns the median wall time.
    fn report(&self, name: &str) -> f64 {
        let wall = report(name, "s", &self.wall);
        report(&format!("{name}-cpu-client"), "s", &self.client);
        if !self.cache.is_empty() {
            report(&format!("{name}-cpu-cache"), "s", &self.cache);
        }
        report(&format!("{name}-cpu-upstream"), "s", &self.upstream);
        wall
    }
}

/// Runs `ocikit ARGS` and returns its wall time in seconds; panics if it fails.
fn timed(binary: &Path, args: &[String]) -> f64 {
    let start = Instant::now();
    let status = Command::new(binary)
        .args(args)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    let took = start.elapsed().as_secs_f64();
    assert!(status.success(), "ocikit {args:?} failed");
    took
}

/// Pulls `bench/app:v` from `addr` into a fresh layout under `work`, removed after.
fn pull(binary: &Path, addr: &str, work: &Path) -> f64 {
    let target = work.join("pull");
    let took = timed(
        binary,
        &[
            "-q".into(),
            "copy".into(),
            "--src-tls-verify=false".into(),
            format!("docker://{addr}/bench/app:v"),
            format!("oci:{}:v", target.display()),
        ],
    );
    std::fs::remove_dir_all(&target).unwrap();
    took
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
    let mib = env("OCIKIT_BENCH_MIB", 500).max(LAYERS);
    let mbit = env("OCIKIT_BENCH_LINK_MBIT", 1000);
    let base_dir = std::env::var("OCIKIT_BENCH_DIR").unwrap_or_else(|_| "/dev/shm".into());
    let dir = tempfile::tempdir_in(base_dir).unwrap();
    println!("CPU {}", cpu_model());
    println!(
        "# an image of {mib} MiB in {LAYERS} layers, {runs} runs, upstream link {}",
        if mbit == 0 {
            "none (loopback)".to_string()
        } else {
            format!("{mbit} Mbit/s")
        }
    );

    let upstream = Server::distribution(dir.path());
    let layout = dir.path().join("image");
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(image(&layout, mib));
    timed(
        &binary,
        &[
            "-q".into(),
            "copy".into(),
            "--dest-tls-verify=false".into(),
            format!("oci:{}:v", layout.display()),
            format!("docker://{}/bench/app:v", upstream.addr),
        ],
    );
    std::fs::remove_dir_all(&layout).unwrap();
    // Where the clients and the cache reach the upstream.
    let far = match mbit {
        0 => upstream.addr.clone(),
        mbit => relay(upstream.addr.clone(), mbit as f64),
    };

    let upstream_pid = upstream.pid();
    let (mut direct, mut first, mut second) =
        (Samples::default(), Samples::default(), Samples::default());
    for round in 0..runs {
        let work = dir.path().join(format!("work-{round}"));
        std::fs::create_dir_all(&work).unwrap();
        if round % 2 == 0 {
            direct.pull(&binary, &far, &work, None, upstream_pid);
        }
        let root = dir.path().join(format!("cache-{round}"));
        let upstream_flag = format!("docker://{far}");
        let cache = Server::ocikit(
            &root,
            &binary,
            &["--proxy", &upstream_flag, "--proxy-tls-verify=false"],
        );
        let cache_pid = Some(cache.pid());
        first.pull(&binary, &cache.addr, &work, cache_pid, upstream_pid);
        second.pull(&binary, &cache.addr, &work, cache_pid, upstream_pid);
        drop(cache);
        std::fs::remove_dir_all(&root).unwrap();
        if round % 2 == 1 {
            direct.pull(&binary, &far, &work, None, upstream_pid);
        }
        eprintln!(
            "round {round}: direct {:.2} s, first {:.2} s (cache CPU {:.2} s), \
             second {:.2} s (cache CPU {:.2} s)",
            direct.wall[round],
            first.wall[round],
            first.cache[round],
            second.wall[round],
            second.cache[round],
        );
    }
    let d = direct.report("proxy-direct-pull");
    let f = first.report("proxy-first-pull");
    let s = second.report("proxy-second-pull");
    let ratio =
        |name: &str, value: f64| println!("BENCH {name} {value:.3} x {value:.3} {value:.3}");
    // How many times the direct pull's time each pull through the cache is (> 1: faster).
    ratio("proxy-first-vs-direct", d / f);
    ratio("proxy-second-vs-direct", d / s);
}
