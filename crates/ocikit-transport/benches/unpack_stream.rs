//! `ocikit unpack docker://…` (one stream: each layer applied while it downloads) side by
//! side with the two-pass ways to the same root filesystem: `skopeo copy` then `umoci
//! unpack`, and ocikit's own `copy` then `unpack`.
//!
//! The image is made here: five gzip layers of a tree of files of mixed sizes (1 KiB to
//! 2 MiB), mostly text-like (words of a small vocabulary, as configuration, scripts and
//! documentation are), some binary-like (a skewed byte alphabet, as executables are), some
//! incompressible (as already compressed files are), `OCIKIT_BENCH_MIB` MiB of content in
//! all (default 500). It is pushed (not timed) to Debian's `docker-registry` (Distribution
//! 2.8) on loopback, started here with its storage in the working directory. Every way runs
//! as processes, with the registry's storage, the layouts and the root filesystems on tmpfs
//! (`/dev/shm`, or `OCIKIT_BENCH_DIR`). Each round runs the three ways, in an order that
//! rotates round by round; outputs are removed (untimed) after each run. Prints the CPU
//! model (`CPU …`), the image's sizes, and `BENCH <name> <median> <unit> <min> <max>` lines:
//! seconds for each way, and each two-pass way's time over the one stream's (how many times
//! faster the stream is); the CPU seconds (user + system) of each way's processes (`-cpu`)
//! and of the registry meanwhile (`-registry-cpu`), and the two ocikit ways' ratio of all
//! that CPU (`-over-stream-cpu`): where both ways keep every core busy, the most the
//! stream's lead can be.
//!
//! Run it from the workspace root:
//!
//! ```text
//! cargo build --release -p ocikit-cli
//! OCIKIT_BENCH_OCIKIT=$PWD/target/release/ocikit cargo bench -p ocikit-transport --bench unpack_stream
//! ```
//!
//! Environment: `OCIKIT_BENCH_OCIKIT` (the `ocikit` binary; required), `OCIKIT_BENCH_RUNS`
//! (default 5), `OCIKIT_BENCH_MIB` (default 500), `OCIKIT_BENCH_DIR`,
//! `OCIKIT_BENCH_COMPRESSION` (`gzip`, the default and issue 20's case; `zstd` or `none` show
//! how the stream's lead moves with the cost of decompression). As root, both unpacks
//! apply owners; otherwise both run rootless (`umoci unpack --rootless`, `ocikit unpack
//! --rootless`).
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
use common::{Server, cpu_model, cpu_seconds, ratio, report};
use ocikit_testkit::prng::Prng;

const LAYERS: usize = 5;

const WORDS: &[&str] = &[
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "for",
    "on",
    "with",
    "as",
    "by",
    "at",
    "from",
    "or",
    "be",
    "this",
    "that",
    "it",
    "an",
    "are",
    "not",
    "config",
    "value",
    "default",
    "return",
    "int",
    "char",
    "void",
    "static",
    "const",
    "struct",
    "if",
    "else",
    "while",
    "for",
    "fn",
    "let",
    "mut",
    "pub",
    "use",
    "import",
    "export",
    "function",
    "class",
    "def",
    "self",
    "error",
    "warning",
    "info",
    "debug",
    "path",
    "file",
    "directory",
    "user",
    "group",
    "option",
    "enable",
    "disable",
    "true",
    "false",
    "null",
    "none",
    "string",
    "list",
    "map",
    "server",
    "client",
    "request",
    "response",
    "header",
    "body",
    "status",
    "version",
    "license",
    "copyright",
    "author",
    "package",
    "module",
    "library",
    "build",
    "install",
    "usr",
    "lib",
    "bin",
    "etc",
    "share",
    "local",
    "var",
    "log",
    "cache",
    "tmp",
    "home",
    "0",
    "1",
    "2",
    "42",
    "100",
    "255",
    "1024",
    "0x00",
    "0xff",
    "=",
    "{",
    "}",
    "(",
    ")",
    ";",
];

/// `len` bytes of a file: text-like, binary-like or incompressible.
fn content(prng: &mut Prng, len: usize) -> Vec<u8> {
    let kind = prng.below(20);
    let mut out = Vec::with_capacity(len + 16);
    if kind < 13 {
        // Text: words, lines of a few to a dozen words, some indentation.
        while out.len() < len {
            let indent = prng.below(3) as usize * 4;
            out.extend(std::iter::repeat_n(b' ', indent));
            for _ in 0..3 + prng.below(10) {
                out.extend_from_slice(WORDS[prng.below(WORDS.len() as u64) as usize].as_bytes());
                out.push(b' ');
            }
            out.push(b'\n');
        }
    } else if kind < 18 {
        // Binary-like: mostly small values and runs, as machine code and tables are.
        while out.len() < len {
            let byte = match prng.below(8) {
                0..=3 => prng.below(16) as u8,
                4 | 5 => prng.below(256) as u8,
                _ => 0,
            };
            let run = 1 + prng.below(4) as usize;
            out.extend(std::iter::repeat_n(byte, run));
        }
    } else {
        out.resize(len, 0);
        prng.fill(&mut out);
    }
    out.truncate(len);
    out
}

/// Writes a layer's tree of about `bytes` bytes under `root`.
fn tree(root: &Path, prng: &mut Prng, bytes: usize) -> usize {
    let mut written = 0;
    let mut files = 0;
    while written < bytes {
        let dir = root
            .join(format!("d{}", prng.below(40)))
            .join(format!("s{}", prng.below(8)));
        std::fs::create_dir_all(&dir).unwrap();
        // Log-uniform sizes, 1 KiB to 2 MiB.
        let len = (1024.0 * 2f64.powf(prng.below(1100) as f64 / 100.0)) as usize;
        let len = len.min(bytes - written).max(1);
        std::fs::write(dir.join(format!("f{files}")), content(prng, len)).unwrap();
        written += len;
        files += 1;
    }
    files
}

/// The image (tag `v1`) in a new layout at `dir`; returns (files, compressed bytes).
async fn image(dir: &Path, mib: usize, compression: Compression) -> (usize, u64) {
    let layout = Layout::create(FsStore::open(dir).await.unwrap())
        .await
        .unwrap();
    let mut builder = ImageBuilder::new(&layout);
    builder.cmd(["/bin/sh"]);
    let mut prng = Prng::new(20);
    let mut files = 0;
    let mut compressed = 0;
    for _ in 0..LAYERS {
        let layer = tempfile::tempdir_in(dir.parent().unwrap()).unwrap();
        files += tree(layer.path(), &mut prng, (mib << 20) / LAYERS);
        let built = builder
            .add_layer_from_dir(layer.path(), LayerSpec::new().compression(compression))
            .await
            .unwrap();
        compressed += built.size();
    }
    builder.write_and_tag("v1").await.unwrap();
    (files, compressed)
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

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_string()).collect()
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
    let base_dir = std::env::var("OCIKIT_BENCH_DIR").unwrap_or_else(|_| "/dev/shm".into());
    let dir = tempfile::tempdir_in(base_dir).unwrap();
    let work = dir.path();
    let rootless = rustix::process::geteuid().as_raw() != 0;
    let compression = match std::env::var("OCIKIT_BENCH_COMPRESSION").as_deref() {
        Err(_) | Ok("gzip") => Compression::Gzip,
        Ok("zstd") => Compression::Zstd,
        Ok("none") => Compression::None,
        Ok(other) => panic!("OCIKIT_BENCH_COMPRESSION: gzip, zstd or none, not {other:?}"),
    };
    let codec = ocikit_codec::compression::name(compression);
    println!("CPU {}", cpu_model());

    let source = work.join("source");
    let (files, compressed) = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(image(&source, mib, compression));
    println!(
        "# {LAYERS} {codec} layers, {files} files, {mib} MiB of content, {:.1} MiB compressed, \
         {runs} runs{}",
        compressed as f64 / f64::from(1 << 20),
        if rootless { ", rootless" } else { ", as root" }
    );
    let registry = Server::distribution(work);
    let image = format!("docker://{}/bench/app:v1", registry.addr);
    timed(
        &binary,
        &[
            "-q".into(),
            "copy".into(),
            "--dest-tls-verify=false".into(),
            format!("oci:{}:v1", source.display()),
            image.clone(),
        ],
        work,
    );
    std::fs::remove_dir_all(&source).unwrap();

    // umoci reads only gzip and uncompressed layers.
    let ways: &[&str] = if compression == Compression::Zstd {
        &["ocikit-stream", "ocikit-copy+unpack"]
    } else {
        &["ocikit-stream", "ocikit-copy+unpack", "skopeo+umoci"]
    };
    let mut results: Vec<Vec<f64>> = vec![Vec::new(); ways.len()];
    // CPU seconds (user + system) of each way's own processes, and of the registry meanwhile.
    let mut client_cpu: Vec<Vec<f64>> = vec![Vec::new(); ways.len()];
    let mut registry_cpu: Vec<Vec<f64>> = vec![Vec::new(); ways.len()];
    let me = std::process::id();
    let rootfs = work.join("rootfs");
    let layout = work.join("layout");
    let bundle = work.join("bundle");
    for round in 0..runs {
        for k in 0..ways.len() {
            let way = (k + round) % ways.len();
            let layout_at = format!("oci:{}:v1", layout.display());
            let (client0, registry0) = (cpu_seconds(me, true), cpu_seconds(registry.pid(), false));
            let seconds = match ways[way] {
                "ocikit-stream" => {
                    let mut args = strings(&["-q", "unpack", "--tls-verify=false"]);
                    if rootless {
                        args.push("--rootless".into());
                    }
                    args.extend([image.clone(), rootfs.display().to_string()]);
                    timed(&binary, &args, work)
                }
                "ocikit-copy+unpack" => {
                    let copy = timed(
                        &binary,
                        &[
                            "-q".into(),
                            "copy".into(),
                            "--src-tls-verify=false".into(),
                            image.clone(),
                            layout_at.clone(),
                        ],
                        work,
                    );
                    let mut args = strings(&["-q", "unpack"]);
                    if rootless {
                        args.push("--rootless".into());
                    }
                    args.extend([layout_at.clone(), rootfs.display().to_string()]);
                    copy + timed(&binary, &args, work)
                }
                _ => {
                    let copy = timed(
                        Path::new("skopeo"),
                        &[
                            "--insecure-policy".into(),
                            "copy".into(),
                            "--src-tls-verify=false".into(),
                            image.clone(),
                            layout_at.clone(),
                        ],
                        work,
                    );
                    let mut args = strings(&["unpack"]);
                    if rootless {
                        args.push("--rootless".into());
                    }
                    args.extend([
                        "--image".into(),
                        format!("{}:v1", layout.display()),
                        bundle.display().to_string(),
                    ]);
                    copy + timed(Path::new("umoci"), &args, work)
                }
            };
            eprintln!("round {round}: {} {seconds:.2} s", ways[way]);
            results[way].push(seconds);
            client_cpu[way].push(cpu_seconds(me, true) - client0);
            registry_cpu[way].push(cpu_seconds(registry.pid(), false) - registry0);
            for path in [&rootfs, &layout, &bundle] {
                std::fs::remove_dir_all(path).ok();
            }
        }
    }
    let medians: Vec<f64> = ways
        .iter()
        .zip(&results)
        .map(|(way, values)| report(&format!("unpack/{way}"), "s", values))
        .collect();
    let mut cpu = Vec::new();
    for (k, way) in ways.iter().enumerate() {
        let client = report(&format!("unpack/{way}-cpu"), "s", &client_cpu[k]);
        let served = report(&format!("unpack/{way}-registry-cpu"), "s", &registry_cpu[k]);
        cpu.push(client + served);
    }
    if let Some(skopeo) = medians.get(2) {
        ratio("unpack/skopeo+umoci-over-stream", skopeo / medians[0]);
    }
    ratio(
        "unpack/ocikit-copy+unpack-over-stream",
        medians[1] / medians[0],
    );
    // Where both ways keep every core busy, each takes its CPU (the registry's included)
    // over the cores, so the lead of the stream can be at most this.
    ratio("unpack/ocikit-copy+unpack-over-stream-cpu", cpu[1] / cpu[0]);
    drop(registry);
}
