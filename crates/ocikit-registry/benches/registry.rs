//! The registry server side by side with distribution 2.8 (Debian's `docker-registry`), in
//! one run (`cargo xtask bench registry` builds the `ocikit` binary, installs the peers and
//! writes docs/benchmarks.md):
//!
//! - push of a 500 MiB blob, monolithic (POST + PUT) and chunked (PATCHes of 8 MiB with
//!   `Content-Range`, then PUT), each push a fresh blob; MB/s, and each server's peak RSS;
//! - pull of the same blob (GET, bytes counted, not hashed, by the client);
//! - manifest GET by tag under `wrk` (2 threads, 8 connections, 10 s): requests/s, p99.
//!
//! Both servers run as their own processes on loopback with filesystem storage on tmpfs
//! (`/dev/shm`, or `OCIKIT_BENCH_DIR`), so this measures the servers, not the disk (ocikit
//! fsyncs its blobs, distribution does not; on tmpfs both cost nothing). Servers alternate
//! round by round. Prints `BENCH <name> <median> <unit> <min> <max>` lines.
//!
//! Environment: `OCIKIT_BENCH_SERVER` (the `ocikit` binary; required), `OCIKIT_BENCH_RUNS`
//! (default 3), `OCIKIT_BENCH_MIB` (default 500), `OCIKIT_BENCH_DIR`.
#![allow(
    missing_docs,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ocikit_digest::Digest;

fn report(name: &str, unit: &str, values: &[f64]) -> f64 {
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

fn ratio(name: &str, value: f64) {
    println!("BENCH {name} {value:.3} x {value:.3} {value:.3}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A server process under test.
struct Server {
    name: &'static str,
    child: Child,
    base: String,
}

impl Server {
    fn distribution(dir: &Path) -> Server {
        let port = free_port();
        let storage = dir.join("distribution");
        std::fs::create_dir_all(&storage).unwrap();
        let config = dir.join("distribution.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n\
                 storage:\n  cache:\n    blobdescriptor: inmemory\n  filesystem:\n    \
                 rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
                storage.display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry (apt install docker-registry)");
        Server::ready("distribution", child, port)
    }

    fn ocikit(dir: &Path, binary: &Path) -> Server {
        let port = free_port();
        let child = Command::new(binary)
            .args(["-q", "serve", "--log", "off", "--addr"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--root")
            .arg(dir.join("ocikit"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the ocikit binary");
        Server::ready("ocikit", child, port)
    }

    fn ready(name: &'static str, child: Child, port: u16) -> Server {
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            assert!(Instant::now() < deadline, "{name} did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Server { name, child, base }
    }

    /// Peak resident memory so far, in MiB.
    fn peak_rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(0.0, |kib| kib / 1024.0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

fn location(base: &str, resp: &reqwest::Response) -> String {
    let loc = resp.headers()["location"].to_str().unwrap();
    if loc.starts_with("http") {
        loc.to_owned()
    } else {
        format!("{base}{loc}")
    }
}

fn with_digest(location: &str, digest: &Digest) -> String {
    let sep = if location.contains('?') { '&' } else { '?' };
    format!("{location}{sep}digest={digest}")
}

async fn start_upload(client: &reqwest::Client, base: &str, name: &str) -> String {
    let resp = client
        .post(format!("{base}/v2/{name}/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202, "POST upload");
    location(base, &resp)
}

/// POST + PUT of `blob`; seconds.
async fn push_monolithic(
    client: &reqwest::Client,
    base: &str,
    blob: &Bytes,
    digest: &Digest,
) -> f64 {
    let started = Instant::now();
    let loc = start_upload(client, base, "bench/blob").await;
    let resp = client
        .put(with_digest(&loc, digest))
        .header("content-type", "application/octet-stream")
        .header("content-length", blob.len())
        .body(blob.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "monolithic PUT");
    started.elapsed().as_secs_f64()
}

/// POST, PATCHes of `chunk` bytes, PUT; seconds.
async fn push_chunked(
    client: &reqwest::Client,
    base: &str,
    blob: &Bytes,
    digest: &Digest,
    chunk: usize,
) -> f64 {
    let started = Instant::now();
    let mut loc = start_upload(client, base, "bench/blob").await;
    let mut at = 0;
    while at < blob.len() {
        let end = (at + chunk).min(blob.len());
        let resp = client
            .patch(&loc)
            .header("content-type", "application/octet-stream")
            .header("content-range", format!("{at}-{}", end - 1))
            .header("content-length", end - at)
            .body(blob.slice(at..end))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 202, "PATCH");
        loc = location(base, &resp);
        at = end;
    }
    let resp = client
        .put(with_digest(&loc, digest))
        .header("content-length", 0)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "chunked PUT");
    started.elapsed().as_secs_f64()
}

/// GET of a blob, its bytes counted; seconds.
async fn pull(client: &reqwest::Client, base: &str, digest: &Digest, size: usize) -> f64 {
    use futures::StreamExt;
    let started = Instant::now();
    let resp = client
        .get(format!("{base}/v2/bench/blob/blobs/{digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "GET blob");
    let mut stream = resp.bytes_stream();
    let mut got = 0;
    while let Some(chunk) = stream.next().await {
        got += chunk.unwrap().len();
    }
    assert_eq!(got, size);
    started.elapsed().as_secs_f64()
}

/// Pushes a small image tagged `v1` to `bench/app`; the manifest's path.
async fn push_image(client: &reqwest::Client, base: &str) -> String {
    let config = Bytes::from_static(
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#,
    );
    let config_digest = Digest::sha256(&config);
    let loc = start_upload(client, base, "bench/app").await;
    let resp = client
        .put(with_digest(&loc, &config_digest))
        .body(config.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest.to_string(),
            "size": config.len(),
        },
        "layers": [],
    }))
    .unwrap();
    let resp = client
        .put(format!("{base}/v2/bench/app/manifests/v1"))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "manifest PUT");
    format!("{base}/v2/bench/app/manifests/v1")
}

/// `wrk` against `url`: (requests/s, p99 ms).
fn wrk(url: &str) -> (f64, f64) {
    let out = Command::new("wrk")
        .args(["-t2", "-c8", "-d10s", "--latency", "-H"])
        .arg("Accept: application/vnd.oci.image.manifest.v1+json")
        .arg(url)
        .output()
        .expect("wrk (apt install wrk)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains("Non-2xx"),
        "wrk saw errors from {url}:\n{text}"
    );
    let rps = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Requests/sec in:\n{text}"));
    let p99 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("99%"))
        .map(|v| parse_wrk_time(v.trim()))
        .unwrap_or_else(|| panic!("no 99% line in:\n{text}"));
    (rps, p99)
}

/// `1.23ms`, `456.00us`, `1.10s` → milliseconds.
fn parse_wrk_time(v: &str) -> f64 {
    for (suffix, scale) in [("us", 0.001), ("ms", 1.0), ("s", 1000.0)] {
        if let Some(n) = v.strip_suffix(suffix) {
            return n.parse::<f64>().unwrap() * scale;
        }
    }
    panic!("unknown wrk time {v}")
}

fn main() {
    let binary = PathBuf::from(std::env::var("OCIKIT_BENCH_SERVER").expect(
        "OCIKIT_BENCH_SERVER names the ocikit binary (cargo xtask bench registry sets it)",
    ));
    let runs: usize = std::env::var("OCIKIT_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let mib: usize = std::env::var("OCIKIT_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let base_dir = std::env::var("OCIKIT_BENCH_DIR").unwrap_or_else(|_| "/dev/shm".into());
    let dir = tempfile::tempdir_in(base_dir).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // reqwest is built without a crypto provider of its own: install ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(4)
        .build()
        .unwrap();

    // One buffer reused for every push; each push changes its first 8 bytes, so every push
    // is a new blob (no deduplication shortcut on either side).
    let size = mib << 20;
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut buffer: Vec<u8> = Vec::with_capacity(size);
    while buffer.len() < size {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        buffer.extend_from_slice(&state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    buffer.truncate(size);
    let mut serial = 0u64;
    let mut next_blob = || {
        serial += 1;
        buffer[..8].copy_from_slice(&serial.to_le_bytes());
        let blob = Bytes::copy_from_slice(&buffer);
        let digest = Digest::sha256(&blob);
        (blob, digest)
    };

    let servers = [
        Server::distribution(dir.path()),
        Server::ocikit(dir.path(), &binary),
    ];
    let mb = size as f64 / 1e6;
    let mut results: Vec<[Vec<f64>; 5]> = vec![Default::default(), Default::default()];
    let urls: Vec<String> = servers
        .iter()
        .map(|s| rt.block_on(push_image(&client, &s.base)))
        .collect();
    for round in 0..runs {
        for k in 0..2 {
            // Alternate which server goes first.
            let i = (k + round) % 2;
            let server = &servers[i];
            let (blob, digest) = next_blob();
            let t = rt.block_on(push_monolithic(&client, &server.base, &blob, &digest));
            results[i][0].push(mb / t);
            let t = rt.block_on(pull(&client, &server.base, &digest, size));
            results[i][2].push(mb / t);
            drop(blob);
            let (blob, digest) = next_blob();
            let t = rt.block_on(push_chunked(&client, &server.base, &blob, &digest, 8 << 20));
            results[i][1].push(mb / t);
            drop(blob);
            let (rps, p99) = wrk(&urls[i]);
            results[i][3].push(rps);
            results[i][4].push(p99);
            eprintln!("round {round}: {} done", server.name);
        }
    }
    let mut medians = [[0.0; 5]; 2];
    for (i, server) in servers.iter().enumerate() {
        let n = server.name;
        medians[i][0] = report(&format!("push-monolithic/{n}"), "MB/s", &results[i][0]);
        medians[i][1] = report(&format!("push-chunked/{n}"), "MB/s", &results[i][1]);
        medians[i][2] = report(&format!("pull/{n}"), "MB/s", &results[i][2]);
        medians[i][3] = report(&format!("manifest-get/{n}"), "req/s", &results[i][3]);
        medians[i][4] = report(&format!("manifest-get-p99/{n}"), "ms", &results[i][4]);
        let rss = server.peak_rss_mib();
        report(&format!("peak-rss/{n}"), "MiB", &[rss]);
    }
    let [d, o] = medians;
    ratio("push-monolithic/ocikit-vs-distribution", o[0] / d[0]);
    ratio("push-chunked/ocikit-vs-distribution", o[1] / d[1]);
    ratio("pull/ocikit-vs-distribution", o[2] / d[2]);
    ratio("manifest-get/ocikit-vs-distribution", o[3] / d[3]);
}
