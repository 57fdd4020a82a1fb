//! Issue 22's proof: `ocikit serve`, started with 1024 file descriptors, keeps serving an
//! honest client that pushes and pulls a small image in a loop while attackers on other
//! loopback addresses (127.0.0.2 and up; Linux routes all of 127/8 to the loopback) hold
//! half-open connections, trickle bodies, open upload sessions, guess passwords and burst
//! manifest GETs. The honest client gets no error and p99 under 1 s; the server's open
//! files and VmHWM stay bounded; its files return to their count once the sessions the
//! attack opened expire.
//!
//! The test runs a scaled-down attack (about a minute on a loaded 2-core machine); the
//! `#[ignore]`d `..._full_size` variant runs the issue's counts (5,000 half-open
//! connections, 1,000 trickling, 20,000 POSTs, 10,000 wrong passwords, 50,000 GETs).

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How many of each attack.
#[derive(Clone, Copy, Debug)]
struct Scale {
    half_open: usize,
    trickling: usize,
    posts: usize,
    wrong_passwords: usize,
    gets: usize,
}

const PASSWORD: &str = "honest-password";

#[test]
fn the_registry_keeps_serving_an_honest_client_under_hostile_load() {
    run(Scale {
        half_open: 2_000,
        trickling: 300,
        posts: 4_000,
        wrong_passwords: 2_000,
        gets: 10_000,
    });
}

#[test]
#[ignore = "issue 22's full counts, minutes on a 2-core machine: cargo test -- --ignored"]
fn the_registry_keeps_serving_an_honest_client_under_hostile_load_full_size() {
    run(Scale {
        half_open: 5_000,
        trickling: 1_000,
        posts: 20_000,
        wrong_passwords: 10_000,
        gets: 50_000,
    });
}

/// `ocikit serve` under `ulimit -n 1024`.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start(root: &Path, htpasswd: &Path) -> Server {
        Server::start_with(root, htpasswd, 1024, &[])
    }

    /// `ocikit serve` under `ulimit -n nofile`, with `extra` flags.
    fn start_with(root: &Path, htpasswd: &Path, nofile: u32, extra: &[&str]) -> Server {
        let script = format!("ulimit -n {nofile} && exec \"$0\" \"$@\"");
        let mut child = Command::new("sh")
            .args(["-c", &script, env!("CARGO_BIN_EXE_ocikit")])
            .args(["serve", "--addr", "127.0.0.1:0", "--log", "warn"])
            .arg("--root")
            .arg(root)
            .arg("--htpasswd")
            .arg(htpasswd)
            .args(["--header-read-timeout", "2s", "--keep-alive-timeout", "3s"])
            .args(["--min-rate-grace", "2s", "--upload-ttl", "5s"])
            .args(extra)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        stderr.read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .rsplit_once("://")
            .map(|(_, a)| a.parse().unwrap())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        std::thread::spawn(move || {
            let mut line = String::new();
            while stderr.read_line(&mut line).is_ok_and(|n| n > 0) {
                line.clear();
            }
        });
        Server { child, addr }
    }

    /// Open file descriptors, and VmHWM in KiB.
    fn usage(&self) -> (usize, u64) {
        let pid = self.child.id();
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| d.count())
            .unwrap_or(0);
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let hwm = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0);
        (fds, hwm)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// Files under `root`.
fn count_files(root: &Path) -> usize {
    let mut count = 0;
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                dirs.push(entry.path());
            } else {
                count += 1;
            }
        }
    }
    count
}

fn basic(password: &str) -> String {
    use std::fmt::Write as _;
    let raw = format!("alice:{password}");
    // Base64 by hand: the test crate has no base64 of its own.
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in raw.as_bytes().chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    let mut header = String::new();
    write!(header, "Basic {out}").unwrap();
    header
}

/// A connection to `to` from `from`.
async fn connect(from: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    socket.connect(to).await
}

/// A kept-alive HTTP/1.1 client from one address.
struct Client {
    from: IpAddr,
    to: SocketAddr,
    conn: Option<TcpStream>,
    auth: String,
}

impl Client {
    fn new(last: u8, to: SocketAddr, password: &str) -> Client {
        Client {
            from: IpAddr::from([127, 0, 0, last]),
            to,
            conn: None,
            auth: basic(password),
        }
    }

    /// One request; the status (0 when the connection failed).
    async fn request(&mut self, method: &str, path: &str, headers: &str, body: &[u8]) -> u16 {
        match self.try_request(method, path, headers, body).await {
            Ok(status) => status,
            Err(_) => {
                self.conn = None;
                0
            }
        }
    }

    async fn try_request(
        &mut self,
        method: &str,
        path: &str,
        headers: &str,
        body: &[u8],
    ) -> std::io::Result<u16> {
        if self.conn.is_none() {
            self.conn = Some(connect(self.from, self.to).await?);
        }
        let conn = self.conn.as_mut().unwrap();
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nContent-Length: {}\r\n{headers}\r\n",
            self.auth,
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(body);
        conn.write_all(&request).await?;
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if conn.read(&mut byte).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
        let status: u16 = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .ok_or(std::io::ErrorKind::InvalidData)?;
        let mut rest = vec![0u8; length];
        if method != "HEAD" {
            conn.read_exact(&mut rest).await?;
        }
        if head.contains("connection: close") {
            self.conn = None;
        }
        Ok(status)
    }
}

/// Out of descriptors (64, with a connection cap far above that), the server backs off,
/// closes idle connections to make room, keeps answering, and accepts again afterwards.
#[test]
fn the_accept_loop_survives_running_out_of_descriptors() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("registry");
    let htpasswd = dir.path().join("htpasswd");
    let hash = bcrypt::hash(PASSWORD, 4).unwrap();
    std::fs::write(&htpasswd, format!("alice:{hash}\n")).unwrap();
    let server = Server::start_with(&root, &htpasswd, 64, &["--max-connections", "10000"]);
    let to = server.addr;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        // 100 connections that send half a header, more than the server has descriptors.
        let from = IpAddr::from([127, 0, 0, 2]);
        let mut open = Vec::new();
        for _ in 0..100 {
            let mut conn = connect(from, to).await.unwrap();
            conn.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n")
                .await
                .ok();
            open.push(conn);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (fds, _) = server.usage();
        assert!(fds <= 64, "{fds}");
        // An honest client is still answered, again and again, each time on a new
        // connection the server has to find a descriptor for.
        for _ in 0..20 {
            let mut honest = Client::new(1, to, PASSWORD);
            let started = Instant::now();
            let status = tokio::time::timeout(
                Duration::from_secs(5),
                honest.request("GET", "/v2/", "Connection: close\r\n", b""),
            )
            .await
            .expect("answered within 5 s");
            assert_eq!(status, 200);
            assert!(started.elapsed() < Duration::from_secs(5));
            let mut more = connect(from, to).await.unwrap();
            more.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n")
                .await
                .ok();
            open.push(more);
        }
        drop(open);
        let mut server = server;
        assert!(
            server.child.try_wait().unwrap().is_none(),
            "the server stopped"
        );
    });
}

fn sha256_hex(bytes: &[u8]) -> String {
    ocikit::digest::Digest::sha256(bytes).as_str().to_owned()
}

fn run(scale: Scale) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("registry");
    let htpasswd = dir.path().join("htpasswd");
    let hash = bcrypt::hash(PASSWORD, 6).unwrap();
    std::fs::write(&htpasswd, format!("alice:{hash}\n")).unwrap();
    let server = Server::start(&root, &htpasswd);
    let to = server.addr;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        // The honest client's image, pushed once before the attack.
        let mut honest = Client::new(1, to, PASSWORD);
        let layer: Vec<u8> = (0..20_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
        let (layer_digest, config_digest) = (sha256_hex(&layer), sha256_hex(&config));
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer_digest}","size":{}}}]}}"#,
            config.len(),
            layer.len()
        );
        let push = async |c: &mut Client| -> Vec<(u16, Duration)> {
            let mut results = Vec::new();
            for (digest, bytes) in [(&layer_digest, &layer), (&config_digest, &config)] {
                let started = Instant::now();
                let status = c
                    .request("POST", &format!("/v2/honest/app/blobs/uploads/?digest={digest}"), "", bytes)
                    .await;
                results.push((status, started.elapsed()));
            }
            let started = Instant::now();
            let status = c
                .request(
                    "PUT",
                    "/v2/honest/app/manifests/v1",
                    "Content-Type: application/vnd.oci.image.manifest.v1+json\r\n",
                    manifest.as_bytes(),
                )
                .await;
            results.push((status, started.elapsed()));
            for path in [
                "/v2/honest/app/manifests/v1".to_owned(),
                format!("/v2/honest/app/blobs/{layer_digest}"),
            ] {
                let started = Instant::now();
                let status = c.request("GET", &path, "", b"").await;
                results.push((status, started.elapsed()));
            }
            results
        };
        for (status, _) in push(&mut honest).await {
            assert!((200..300).contains(&status), "the first push: {status}");
        }
        let files_before = count_files(&root);
        let stop = Arc::new(AtomicBool::new(false));
        let deadline = Instant::now() + Duration::from_secs(50);
        let peak_fds = Arc::new(AtomicU64::new(0));

        let mut attacks = Vec::new();
        // Half-open connections from .2: half a header, then silence (the last 600 kept
        // open on this side, so the test itself needs few descriptors).
        attacks.push(tokio::spawn(async move {
            let from = IpAddr::from([127, 0, 0, 2]);
            let mut open = std::collections::VecDeque::new();
            for _ in 0..scale.half_open {
                if Instant::now() > deadline {
                    break;
                }
                if let Ok(mut conn) = connect(from, to).await {
                    conn.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Half: ").await.ok();
                    open.push_back(conn);
                }
                if open.len() > 600 {
                    open.pop_front();
                }
            }
            tokio::time::sleep(Duration::from_secs(3)).await;
        }));
        // Trickling bodies from .3: manifest PUTs whose 100 kB body comes a byte at a time.
        let trickle_auth = basic(PASSWORD);
        attacks.push(tokio::spawn(async move {
            let from = IpAddr::from([127, 0, 0, 3]);
            let mut tasks = tokio::task::JoinSet::new();
            for _ in 0..scale.trickling {
                if Instant::now() > deadline {
                    break;
                }
                let auth = trickle_auth.clone();
                tasks.spawn(async move {
                    let Ok(mut conn) = connect(from, to).await else { return };
                    let head = format!(
                        "PUT /v2/evil/app/manifests/t HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: 100000\r\n\r\n"
                    );
                    if conn.write_all(head.as_bytes()).await.is_err() {
                        return;
                    }
                    while Instant::now() < deadline {
                        if conn.write_all(b"{").await.is_err() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                });
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            while tasks.join_next().await.is_some() {}
        }));
        // Upload POSTs from .4, over a few kept-alive connections.
        let posts_each = scale.posts / 4;
        for _ in 0..4 {
            attacks.push(tokio::spawn(async move {
                let mut c = Client::new(4, to, PASSWORD);
                for _ in 0..posts_each {
                    if Instant::now() > deadline {
                        break;
                    }
                    c.request("POST", "/v2/evil/app/blobs/uploads/", "", b"").await;
                }
            }));
        }
        // Wrong passwords from .5.
        let wrong_each = scale.wrong_passwords / 4;
        for _ in 0..4 {
            attacks.push(tokio::spawn(async move {
                let mut c = Client::new(5, to, "wrong-password");
                for _ in 0..wrong_each {
                    if Instant::now() > deadline {
                        break;
                    }
                    c.request("GET", "/v2/honest/app/manifests/v1", "", b"").await;
                }
            }));
        }
        // A burst of manifest GETs from .6.
        let gets_each = scale.gets / 8;
        for _ in 0..8 {
            attacks.push(tokio::spawn(async move {
                let mut c = Client::new(6, to, PASSWORD);
                for _ in 0..gets_each {
                    if Instant::now() > deadline {
                        break;
                    }
                    c.request("GET", "/v2/honest/app/manifests/v1", "", b"").await;
                }
            }));
        }
        // The server's descriptors, sampled while the attack runs.
        let sampler = {
            let (stop, peak_fds) = (stop.clone(), peak_fds.clone());
            let pid = server.child.id();
            tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
                        .map(|d| d.count() as u64)
                        .unwrap_or(0);
                    peak_fds.fetch_max(fds, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            })
        };
        // The honest client, all along.
        let started = Instant::now();
        let mut results = Vec::new();
        let mut rounds = 0;
        while attacks.iter().any(|a| !a.is_finished()) && started.elapsed() < Duration::from_secs(55) {
            results.extend(push(&mut honest).await);
            rounds += 1;
        }
        stop.store(true, Ordering::SeqCst);
        for attack in attacks {
            attack.abort();
        }
        sampler.await.ok();
        let (fds_after_attack, hwm_kib) = server.usage();

        let failed: Vec<_> = results.iter().filter(|(s, _)| !(200..300).contains(s)).collect();
        assert!(failed.is_empty(), "honest requests failed: {failed:?} of {}", results.len());
        let mut latencies: Vec<Duration> = results.iter().map(|(_, d)| *d).collect();
        latencies.sort();
        let p99 = latencies[(latencies.len() * 99 / 100).min(latencies.len() - 1)];
        let peak = peak_fds.load(Ordering::SeqCst);
        let summary = format!(
            "{rounds} honest rounds, {} requests, p99 {p99:?}, max {:?}; server peak fds {peak}, VmHWM {} MiB",
            results.len(),
            latencies.last().unwrap(),
            hwm_kib / 1024
        );
        assert!(rounds >= 3, "too few honest rounds: {summary}");
        assert!(p99 < Duration::from_secs(1), "{summary}");
        // 512 connections at most (half of 1024), and the store's files.
        assert!(peak <= 700, "too many descriptors: {summary}");
        assert!(hwm_kib <= 128 * 1024, "too much memory: {summary}");
        // The attack's sessions expire (TTL 5 s), the half-open connections time out.
        let settle = Instant::now() + Duration::from_secs(30);
        loop {
            let (fds, _) = server.usage();
            let files = count_files(&root);
            if files == files_before && fds < 50 {
                break;
            }
            assert!(
                Instant::now() < settle,
                "after the attack: {files} files (before: {files_before}), {fds} descriptors (during: {fds_after_attack})"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
}
