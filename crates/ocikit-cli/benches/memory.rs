//! Issue 21's memory goal as a benchmark: every streaming path (build, copy, push, pull,
//! unpack, and `ocikit serve` under the push and the pull) keeps its peak RSS under 64 MiB
//! whatever the image size.
//!
//! Per input size, in a scratch directory (default `/dev/shm`), the bench generates a tree of
//! that many bytes (four large files of a fifth each, the last fifth in small files of 1-64
//! KiB, 100 to a directory; semi-compressible: a quarter of each file random bytes, the rest
//! four bits of entropy a byte, so gzip keeps about two thirds), then runs the release
//! `ocikit` binary once per path, each a child of its own:
//!
//! - `build` the tree into a layout (one gzip layer);
//! - `copy` that layout into another, recompressing with `--compression zstd`;
//! - `push` (`copy oci:... docker://127.0.0.1:PORT/...`) to an `ocikit serve` on 127.0.0.1;
//! - `pull` it back into a fresh layout;
//! - `unpack` the pulled layout into a root filesystem, and `unpack` from the registry (the
//!   one-stream path of issue 20);
//! - and the `serve` process itself, its peak reset (`/proc/PID/clear_refs`, 5: the mark
//!   becomes the resident set of that moment, memory its allocator kept included) before
//!   the push, the pull and the registry unpack.
//!
//! Each child's VmHWM (`/proc/PID/status`, the kernel's high-water mark of its resident set)
//! is read every 10 ms while it runs, the last reading kept: a peak reached in the last 10 ms
//! before the exit would be missed. What a step no longer needs is removed before the next one,
//! so the 2 GiB run needs about 4 GiB of scratch space at most.
//!
//! Prints the CPU model, the load average, and a markdown table (lines starting with `|`) on
//! stdout; progress on stderr. `cargo xtask bench memory` runs it and writes the table into
//! docs/benchmarks.md.
//!
//! Environment: `OCIKIT_BENCH_OCIKIT` (the `ocikit` binary; default: the one cargo built for
//! this bench, target/release/ocikit), `OCIKIT_BENCH_MEMORY_SIZES` (input sizes in MiB, comma
//! separated; default `100,2048`), `OCIKIT_BENCH_DIR` (default `/dev/shm`).
#![allow(
    missing_docs,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The goal of issue 21.
const GOAL_MIB: f64 = 64.0;
const POLL: Duration = Duration::from_millis(10);
const MIB: u64 = 1 << 20;

/// One row of the table.
struct Row {
    path: String,
    size_mib: u64,
    hwm_kib: u64,
    /// The step's wall time; none for the server's rows.
    secs: Option<f64>,
}

fn main() {
    // `cargo bench` passes `--bench`; nothing here takes arguments.
    let ocikit = std::env::var_os("OCIKIT_BENCH_OCIKIT").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_ocikit")),
        PathBuf::from,
    );
    let sizes: Vec<u64> = std::env::var("OCIKIT_BENCH_MEMORY_SIZES")
        .unwrap_or_else(|_| "100,2048".into())
        .split(',')
        .map(|s| {
            s.trim()
                .parse()
                .expect("OCIKIT_BENCH_MEMORY_SIZES: sizes in MiB, comma separated")
        })
        .collect();
    let base = std::env::var_os("OCIKIT_BENCH_DIR")
        .map_or_else(|| PathBuf::from("/dev/shm"), PathBuf::from);
    println!("CPU: {}", cpu());
    println!("LOAD before: {}", load());
    println!("BINARY: {}", ocikit.display());
    let mut rows = Vec::new();
    for &size in &sizes {
        let need = size * MIB * 2 + 512 * MIB;
        let free = free_bytes(&base);
        assert!(
            free >= need,
            "{}: {} MiB free, the {size} MiB run needs about {} MiB",
            base.display(),
            free / MIB,
            need / MIB
        );
        let dir = tempfile::Builder::new()
            .prefix("ocikit-bench-memory-")
            .tempdir_in(&base)
            .unwrap();
        rows.extend(run_size(&ocikit, dir.path(), size));
    }
    println!("LOAD after: {}", load());
    println!();
    println!("| path | input | VmHWM | goal | met | wall time |");
    println!("|---|---|---|---|---|---|");
    for r in &rows {
        let mib = r.hwm_kib as f64 / 1024.0;
        let input = if r.size_mib >= 1024 && r.size_mib.is_multiple_of(1024) {
            format!("{} GiB", r.size_mib / 1024)
        } else {
            format!("{} MiB", r.size_mib)
        };
        let secs = r
            .secs
            .map_or_else(|| "—".to_owned(), |s| format!("{s:.1} s"));
        println!(
            "| {} | {input} | {mib:.1} MiB | {GOAL_MIB:.0} MiB | {} | {secs} |",
            r.path,
            if mib < GOAL_MIB { "met" } else { "**not met**" },
        );
    }
}

/// Every path on one input size, in `dir`.
fn run_size(ocikit: &Path, dir: &Path, size_mib: u64) -> Vec<Row> {
    let mut rows = Vec::new();
    let tree = dir.join("tree");
    let started = Instant::now();
    generate(&tree, size_mib * MIB);
    eprintln!(
        "[{size_mib} MiB] tree generated in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let log = dir.join("log");
    let mut step = |path: &str, args: &[&std::ffi::OsStr]| {
        let mut cmd = Command::new(ocikit);
        cmd.args(args);
        let (hwm_kib, secs) = measured(cmd, &log);
        eprintln!(
            "[{size_mib} MiB] {path}: VmHWM {:.1} MiB, {secs:.1} s",
            hwm_kib as f64 / 1024.0
        );
        rows.push(Row {
            path: path.to_owned(),
            size_mib,
            hwm_kib,
            secs: Some(secs),
        });
    };
    let oci = |layout: &str, tag: &str| dir.join(layout).into_os_string().apply(tag);

    let built = oci("built", "v1");
    step(
        "build (gzip)",
        &["build".as_ref(), "--tag".as_ref(), &built, tree.as_os_str()],
    );
    std::fs::remove_dir_all(&tree).unwrap();

    let zstd = oci("zstd", "v1");
    step(
        "copy oci → oci, --compression zstd",
        &[
            "copy".as_ref(),
            "--compression".as_ref(),
            "zstd".as_ref(),
            &built,
            &zstd,
        ],
    );

    let server = Serve::start(ocikit, &dir.join("registry"), &dir.join("serve.log"));
    let remote: std::ffi::OsString = format!("docker://{}/bench/memory:v1", server.addr).into();
    server.reset_peak();
    step(
        "push (copy oci → docker://)",
        &[
            "copy".as_ref(),
            "--dest-tls-verify=false".as_ref(),
            &built,
            &remote,
        ],
    );
    let serve_push = server.peak_kib();
    std::fs::remove_dir_all(dir.join("zstd")).unwrap();
    std::fs::remove_dir_all(dir.join("built")).unwrap();

    server.reset_peak();
    let pulled = oci("pulled", "v1");
    step(
        "pull (docker:// → oci)",
        &[
            "pull".as_ref(),
            "--src-tls-verify=false".as_ref(),
            &remote,
            &pulled,
        ],
    );
    let serve_pull = server.peak_kib();

    let rootfs = dir.join("rootfs");
    step(
        "unpack (layout → rootfs)",
        &["unpack".as_ref(), &pulled, rootfs.as_os_str()],
    );
    std::fs::remove_dir_all(&rootfs).unwrap();
    std::fs::remove_dir_all(dir.join("pulled")).unwrap();

    server.reset_peak();
    step(
        "unpack (docker:// → rootfs, one stream)",
        &[
            "unpack".as_ref(),
            "--tls-verify=false".as_ref(),
            &remote,
            rootfs.as_os_str(),
        ],
    );
    let serve_unpack = server.peak_kib();
    drop(server);
    std::fs::remove_dir_all(&rootfs).unwrap();
    std::fs::remove_dir_all(dir.join("registry")).unwrap();

    for (what, hwm_kib) in [
        ("serve, under the push", serve_push),
        ("serve, under the pull", serve_pull),
        ("serve, under the registry unpack", serve_unpack),
    ] {
        eprintln!(
            "[{size_mib} MiB] {what}: VmHWM {:.1} MiB",
            hwm_kib as f64 / 1024.0
        );
        rows.push(Row {
            path: what.to_owned(),
            size_mib,
            hwm_kib,
            secs: None,
        });
    }
    rows
}

/// `PATH:TAG` as an `oci:` reference.
trait Apply {
    fn apply(self, tag: &str) -> std::ffi::OsString;
}

impl Apply for std::ffi::OsString {
    fn apply(self, tag: &str) -> std::ffi::OsString {
        let mut s = std::ffi::OsString::from("oci:");
        s.push(self);
        s.push(":");
        s.push(tag);
        s
    }
}

/// Runs `cmd` to its end, its output to `log`, reading its VmHWM every 10 ms; panics (with
/// the log) on a failure. Returns the last VmHWM read, in KiB, and the wall time.
fn measured(mut cmd: Command, log: &Path) -> (u64, f64) {
    let file = std::fs::File::create(log).unwrap();
    cmd.stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file);
    let started = Instant::now();
    let mut child = cmd.spawn().unwrap();
    let mut hwm = 0;
    let status = loop {
        if let Some(kib) = vm_hwm_kib(child.id()) {
            hwm = hwm.max(kib);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        std::thread::sleep(POLL);
    };
    let secs = started.elapsed().as_secs_f64();
    if !status.success() {
        let out = std::fs::read_to_string(log).unwrap_or_default();
        panic!("{cmd:?} failed ({status}):\n{out}");
    }
    (hwm, secs)
}

/// The `VmHWM:` line of /proc/PID/status, in KiB; `None` once the process is gone (or a
/// zombie, which has no memory left to report).
fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// `ocikit serve` on a free loopback port, its VmHWM watched every 10 ms.
struct Serve {
    child: Child,
    addr: std::net::SocketAddr,
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Serve {
    fn start(ocikit: &Path, root: &Path, log: &Path) -> Serve {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
        let file = std::fs::File::create(log).unwrap();
        let child = Command::new(ocikit)
            .arg("serve")
            .arg("--root")
            .arg(root)
            .arg("--addr")
            .arg(addr.to_string())
            .args(["--log", "warn"])
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "ocikit serve did not listen on {addr} within 30 s: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
            std::thread::sleep(POLL);
        }
        let peak = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let pid = child.id();
        {
            let (peak, stop) = (Arc::clone(&peak), Arc::clone(&stop));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(kib) = vm_hwm_kib(pid) {
                        peak.store(kib, Ordering::Relaxed);
                    }
                    std::thread::sleep(POLL);
                }
            });
        }
        Serve {
            child,
            addr,
            peak,
            stop,
        }
    }

    /// Resets the kernel's high-water mark to the present resident set (`clear_refs` 5).
    fn reset_peak(&self) {
        let path = format!("/proc/{}/clear_refs", self.child.id());
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|mut f| f.write_all(b"5"))
            .unwrap_or_else(|e| panic!("cannot reset the peak RSS through {path}: {e}"));
        if let Some(kib) = vm_hwm_kib(self.child.id()) {
            self.peak.store(kib, Ordering::Relaxed);
        }
    }

    /// The high-water mark since the last reset, in KiB, read now.
    fn peak_kib(&self) -> u64 {
        let now = vm_hwm_kib(self.child.id()).unwrap_or(0);
        now.max(self.peak.load(Ordering::Relaxed))
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// xorshift64*: fast, and the same tree every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// A tree of `total` bytes: four large files of a fifth each, the rest in small files.
fn generate(root: &Path, total: u64) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    std::fs::create_dir_all(root).unwrap();
    let large = total / 5;
    for i in 0..4 {
        write_file(&root.join(format!("large-{i}.bin")), large, &mut rng);
    }
    let mut left = total - 4 * large;
    let mut n = 0u64;
    while left > 0 {
        let dir = root.join(format!("small/{:04}", n / 100));
        if n.is_multiple_of(100) {
            std::fs::create_dir_all(&dir).unwrap();
        }
        let len = (1024 + rng.next() % (63 * 1024)).min(left);
        write_file(&dir.join(format!("f{n:06}.dat")), len, &mut rng);
        left -= len;
        n += 1;
    }
}

/// `len` semi-compressible bytes: of each 4 KiB block, the first of four random, the others
/// lowercase-ish letters of four bits of entropy each.
fn write_file(path: &Path, len: u64, rng: &mut Rng) {
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    let mut block = [0u8; 4096];
    let mut written = 0u64;
    let mut index = 0u64;
    while written < len {
        let random = index.is_multiple_of(4);
        for chunk in block.chunks_exact_mut(8) {
            let mut v = rng.next();
            if !random {
                v = (v & 0x0F0F_0F0F_0F0F_0F0F) | 0x6060_6060_6060_6060;
            }
            chunk.copy_from_slice(&v.to_le_bytes());
        }
        let n = (len - written).min(block.len() as u64) as usize;
        out.write_all(&block[..n]).unwrap();
        written += n as u64;
        index += 1;
    }
    out.flush().unwrap();
}

fn free_bytes(dir: &Path) -> u64 {
    let out = Command::new("df")
        .args(["-B1", "--output=avail"])
        .arg(dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0)
}

fn cpu() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{model}, {cores} cores")
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}
