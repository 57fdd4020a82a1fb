//! Issue 22's hostile-load test as a benchmark, side by side: `ocikit serve` and distribution
//! 2.8.2 (Debian's `docker-registry`), each under `ulimit -n 1024` with its default limits,
//! filesystem storage (on tmpfs) and htpasswd users (one bcrypt file, cost 5 as
//! `htpasswd -B` writes it), face each attack alone while an honest client on 127.0.0.1
//! (user alice) pushes (POST + PUT per blob, as distribution 2.8 needs) and pulls a small
//! image in a loop, a round every 100 ms at most. The attackers that authenticate do so as a user of their own (mallory);
//! the wrong passwords are guesses at alice's. The attacks and the honest client are the
//! test's own (`tests/cli/hostile_load/attack.rs`, included here): 5,000 half-open
//! connections (all held to the end of the phase), 1,000 trickling manifest bodies, 20,000
//! upload POSTs, 10,000 wrong passwords, 50,000 manifest GETs.
//!
//! Each (attack, server) phase gets a fresh server and store. Per phase: the honest requests
//! made while the attack ran, their success rate, p99 and max latency, how many got no answer
//! within 10 s and how many a 5xx; the server's VmHWM, its open files at peak and 5 s after the
//! attack stopped, the files the attack left in the store, and whether the server answers
//! then. A server that stops answering makes the honest requests time out (10 s each), and
//! every attacker stops at the phase's deadline, so the run always ends.
//!
//! Prints the CPU model, the load average, and the table (markdown, lines starting with `|`)
//! on stdout; progress on stderr. `cargo xtask bench hostile` runs it and writes the table
//! into docs/benchmarks.md.
//!
//! Environment: `OCIKIT_BENCH_OCIKIT` (the `ocikit` binary; default: the one cargo built for
//! this bench), `OCIKIT_BENCH_HOSTILE_SCALE` (a factor on the attack counts, default 1),
//! `OCIKIT_BENCH_HOSTILE_SECS` (the longest an attack phase runs, default 40),
//! `OCIKIT_BENCH_HOSTILE_SERVERS` (`ocikit,distribution`), `OCIKIT_BENCH_DIR` (default
//! `/dev/shm`).
#![allow(
    missing_docs,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    clippy::expect_used
)]

#[path = "../tests/cli/hostile_load/attack.rs"]
mod attack;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use attack::{Attack, Client, Image, Plan, Scale, Server, count_files, percentile};

const PASSWORD: &str = "honest-password";
/// The attackers' own account: they flood with valid credentials of their own, so the
/// per-user upload-session cap of ocikit counts them apart from alice.
const MALLORY: &str = "mallory-password";
/// The honest client starts a round (7 requests) this often at most: about 70 requests a
/// second, a busy CI runner rather than a flood of its own (unpaced, it makes thousands a
/// second and meets ocikit's own per-address write rate, 1,000/s).
const ROUND_EVERY: Duration = Duration::from_millis(100);
/// How long after the attack stopped the server is looked at again.
const SETTLE: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Ocikit,
    Distribution,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Ocikit => "ocikit",
            Kind::Distribution => "distribution 2.8.2",
        }
    }
}

/// What one phase measured.
struct Row {
    attack: String,
    server: &'static str,
    attack_secs: f64,
    /// The phase's time limit stopped the attack (the half-open one always holds on to it).
    cut: bool,
    requests: usize,
    ok: usize,
    p99: Duration,
    max: Duration,
    timeouts: usize,
    server_errors: usize,
    hwm_mib: f64,
    fds_peak: u64,
    fds_after: usize,
    files_left: i64,
    answers_after: bool,
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let factor: f64 = env_or("OCIKIT_BENCH_HOSTILE_SCALE", 1.0);
    let secs: u64 = env_or("OCIKIT_BENCH_HOSTILE_SECS", 40);
    let scaled = |n: usize| ((n as f64 * factor).round() as usize).max(8);
    let full = Scale::FULL;
    let scale = Scale {
        half_open: scaled(full.half_open),
        trickling: scaled(full.trickling),
        posts: scaled(full.posts),
        wrong_passwords: scaled(full.wrong_passwords),
        gets: scaled(full.gets),
    };
    let servers: Vec<Kind> = std::env::var("OCIKIT_BENCH_HOSTILE_SERVERS")
        .unwrap_or_else(|_| "ocikit,distribution".into())
        .split(',')
        .map(|s| match s.trim() {
            "ocikit" => Kind::Ocikit,
            "distribution" => Kind::Distribution,
            other => panic!("OCIKIT_BENCH_HOSTILE_SERVERS: unknown server `{other}`"),
        })
        .collect();
    let ocikit = std::env::var_os("OCIKIT_BENCH_OCIKIT").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_ocikit")),
        PathBuf::from,
    );
    let registry = servers.contains(&Kind::Distribution).then(|| {
        ocikit_testkit::find_tool("docker-registry")
            .expect("docker-registry (Debian's distribution 2.8.2) on PATH")
    });
    let base = std::env::var_os("OCIKIT_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let shm = PathBuf::from("/dev/shm");
            if shm.is_dir() {
                shm
            } else {
                std::env::temp_dir()
            }
        });
    let htpasswd_line = format!(
        "alice:{}\nmallory:{}\n",
        bcrypt::hash(PASSWORD, 5).unwrap(),
        bcrypt::hash(MALLORY, 5).unwrap()
    );

    println!("CPU: {}", cpu_model());
    println!("LOAD before: {}", load_average());
    println!("SCALE: factor {factor}, phases of at most {secs} s, servers under ulimit -n 1024");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut rows = Vec::new();
    for attack in Attack::ALL {
        for &kind in &servers {
            eprintln!(
                "hostile bench: {} against {}",
                describe(attack, &scale),
                kind.name()
            );
            let dir = tempfile::tempdir_in(&base).unwrap();
            let htpasswd = dir.path().join("htpasswd");
            std::fs::write(&htpasswd, &htpasswd_line).unwrap();
            let root = dir.path().join("store");
            std::fs::create_dir_all(&root).unwrap();
            let server = match kind {
                Kind::Ocikit => Server::ocikit(&ocikit, &root, &htpasswd, 1024, &[]),
                Kind::Distribution => {
                    distribution(registry.as_deref().unwrap(), dir.path(), &root, &htpasswd)
                }
            };
            let row = runtime.block_on(phase(&server, &root, kind, attack, scale, secs));
            eprintln!(
                "hostile bench: {} honest requests, {} ok, p99 {:?}, {} timeouts",
                row.requests, row.ok, row.p99, row.timeouts
            );
            rows.push(row);
            drop(server);
        }
    }
    println!("LOAD after: {}", load_average());
    print!("{}", table(&rows));
}

/// One attack against one server, with the honest client running.
async fn phase(
    server: &Server,
    root: &Path,
    kind: Kind,
    attack: Attack,
    scale: Scale,
    secs: u64,
) -> Row {
    let to = server.addr;
    let ready = Instant::now() + Duration::from_secs(20);
    loop {
        let mut probe = Client::new(1, to, PASSWORD);
        if probe.request("GET", "/v2/", "", b"").await == 200 {
            break;
        }
        assert!(Instant::now() < ready, "{} does not answer", kind.name());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut honest = Client::new(1, to, PASSWORD);
    let image = Image::new();
    for outcome in image.round(&mut honest, false).await {
        assert!(outcome.ok(), "{}: the first push: {outcome:?}", kind.name());
    }
    let files_before = count_files(root);
    let plan = Plan {
        to,
        scale,
        deadline: Instant::now() + Duration::from_secs(secs),
        half_open_window: usize::MAX,
        half_open_hold: None,
        user: "mallory".to_owned(),
        password: MALLORY.to_owned(),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let peak_fds = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (stop, peak_fds) = (stop.clone(), peak_fds.clone());
        let pid = server.child.id();
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let (fds, _) = attack::usage(pid);
                peak_fds.fetch_max(fds as u64, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let started = Instant::now();
    let tasks = attack::launch(attack, &plan);
    let mut results = Vec::new();
    while tasks.iter().any(|t| !t.is_finished()) && Instant::now() < plan.deadline {
        let next = Instant::now() + ROUND_EVERY;
        results.extend(image.round(&mut honest, false).await);
        tokio::time::sleep_until(next.into()).await;
    }
    let attack_secs = started.elapsed().as_secs_f64();
    let cut = tasks.iter().any(|t| !t.is_finished());
    for task in tasks {
        task.abort();
        task.await.ok();
    }
    stop.store(true, Ordering::SeqCst);
    sampler.await.ok();
    let (_, hwm_kib) = server.usage();
    tokio::time::sleep(SETTLE).await;
    let mut probe = Client::new(1, to, PASSWORD);
    let answers_after = probe.request("GET", "/v2/", "", b"").await == 200;
    let (fds_after, _) = server.usage();
    let files_left = count_files(root) as i64 - files_before as i64;

    let mut failures = std::collections::BTreeMap::new();
    for o in results.iter().filter(|o| !o.ok()) {
        *failures.entry((o.what, o.status)).or_insert(0usize) += 1;
    }
    if !failures.is_empty() {
        eprintln!("hostile bench: failed honest requests (what, status: count): {failures:?}");
    }
    let mut latencies: Vec<Duration> = results.iter().map(|o| o.elapsed).collect();
    let p99 = percentile(&mut latencies, 99);
    Row {
        attack: describe(attack, &scale),
        server: kind.name(),
        attack_secs,
        cut,
        requests: results.len(),
        ok: results.iter().filter(|o| o.ok()).count(),
        p99,
        max: latencies.last().copied().unwrap_or_default(),
        timeouts: results.iter().filter(|o| o.timed_out).count(),
        server_errors: results.iter().filter(|o| o.status >= 500).count(),
        hwm_mib: hwm_kib as f64 / 1024.0,
        fds_peak: peak_fds.load(Ordering::SeqCst),
        fds_after,
        files_left,
        answers_after,
    }
}

/// Distribution 2.8.2 on a free loopback port under `ulimit -n 1024`: filesystem storage
/// in `root`, the users of `htpasswd`, its defaults otherwise (logs at error level, no
/// access log).
fn distribution(binary: &Path, dir: &Path, root: &Path, htpasswd: &Path) -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let config = dir.join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\n\
             log:\n  level: error\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n\
             http:\n  addr: 127.0.0.1:{port}\n\
             auth:\n  htpasswd:\n    realm: bench\n    path: {}\n",
            root.display(),
            htpasswd.display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("registry.log")).unwrap();
    let child = Command::new("sh")
        .arg("-c")
        .arg("ulimit -n 1024 && exec \"$0\" \"$@\"")
        .arg(binary)
        .arg("serve")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    Server {
        child,
        addr: ([127, 0, 0, 1], port).into(),
    }
}

/// How an attack is named in the table.
fn describe(attack: Attack, scale: &Scale) -> String {
    let n = |n: usize| {
        let digits = n.to_string();
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        out
    };
    match attack {
        Attack::HalfOpen => format!("{} half-open connections", n(scale.half_open)),
        Attack::Trickling => format!("{} trickling bodies", n(scale.trickling)),
        Attack::Posts => format!("{} upload POSTs", n(scale.posts)),
        Attack::WrongPasswords => format!("{} wrong passwords", n(scale.wrong_passwords)),
        Attack::Gets => format!("{} manifest GETs", n(scale.gets)),
    }
}

fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| attack | server | attack ran | honest requests | success | p99 | max | no answer in 10 s | 5xx | VmHWM | open files peak / after | files left | after the attack |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    let ms = |d: Duration| {
        if d >= Duration::from_secs(1) {
            format!("{:.1} s", d.as_secs_f64())
        } else {
            format!("{} ms", d.as_millis())
        }
    };
    for r in rows {
        let success = if r.requests == 0 {
            "-".to_owned()
        } else {
            format!("{:.1} %", 100.0 * r.ok as f64 / r.requests as f64)
        };
        let after = if r.answers_after {
            "answers"
        } else {
            "**unresponsive**"
        };
        let state = if r.timeouts > 0 {
            format!("**{}** (unresponsive)", r.timeouts)
        } else {
            "0".to_owned()
        };
        let ran = if r.cut { " (limit)" } else { "" };
        writeln!(
            out,
            "| {} | {} | {:.1} s{ran} | {} | {success} | {} | {} | {state} | {} | {:.0} MiB | {} / {} | {} | {after} |",
            r.attack,
            r.server,
            r.attack_secs,
            r.requests,
            ms(r.p99),
            ms(r.max),
            r.server_errors,
            r.hwm_mib,
            r.fds_peak,
            r.fds_after,
            r.files_left,
        )
        .unwrap();
    }
    out
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}: `{v}` is not a valid value"))
        })
        .unwrap_or(default)
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}
