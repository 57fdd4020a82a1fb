//! Issue 22's attacks and honest client, shared by the hostile-load test
//! (`tests/cli/hostile_load.rs`) and the benchmark that runs them against `ocikit serve` and
//! distribution side by side (`benches/hostile.rs`, which includes this file by `#[path]`),
//! so that both run one copy of the attack code.
//!
//! Attackers connect from other loopback addresses (127.0.0.2 and up; Linux routes all of
//! 127/8 to the loopback), the honest client from 127.0.0.1, so per-address limits tell
//! them apart as they would tell apart hosts on a network. Every request is bounded by a
//! timeout, so a server that stops answering makes requests fail, never hang.

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// How many of each attack.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Scale {
    pub(crate) half_open: usize,
    pub(crate) trickling: usize,
    pub(crate) posts: usize,
    pub(crate) wrong_passwords: usize,
    pub(crate) gets: usize,
}

impl Scale {
    /// Issue 22's counts.
    pub(crate) const FULL: Scale = Scale {
        half_open: 5_000,
        trickling: 1_000,
        posts: 20_000,
        wrong_passwords: 10_000,
        gets: 50_000,
    };
}

/// One kind of attack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Attack {
    /// Connections from 127.0.0.2 that send half a request header, then nothing.
    HalfOpen,
    /// Manifest PUTs from 127.0.0.3 whose 100 kB body comes a byte every 500 ms.
    Trickling,
    /// Upload POSTs from 127.0.0.4 over 4 kept-alive connections.
    Posts,
    /// Requests with a wrong password from 127.0.0.5 over 4 connections.
    WrongPasswords,
    /// Manifest GETs from 127.0.0.6 over 8 connections.
    Gets,
}

impl Attack {
    pub(crate) const ALL: [Attack; 5] = [
        Attack::HalfOpen,
        Attack::Trickling,
        Attack::Posts,
        Attack::WrongPasswords,
        Attack::Gets,
    ];
}

/// How the attacks run.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    pub(crate) to: SocketAddr,
    pub(crate) scale: Scale,
    /// No attacker opens a connection or sends a byte after this.
    pub(crate) deadline: Instant,
    /// The half-open connections the attacker keeps at once (the oldest closed beyond).
    pub(crate) half_open_window: usize,
    /// How long the half-open connections are held once all are opened: `None` until the
    /// deadline.
    pub(crate) half_open_hold: Option<Duration>,
    /// The user and password of the attackers that authenticate (right ones: only the
    /// wrong-password attack, which guesses alice's, is refused at the door).
    pub(crate) user: String,
    pub(crate) password: String,
}

/// Starts `attack`'s tasks; they end by themselves by the plan's deadline.
pub(crate) fn launch(attack: Attack, plan: &Plan) -> Vec<JoinHandle<()>> {
    let (to, deadline, scale) = (plan.to, plan.deadline, plan.scale);
    let mut tasks = Vec::new();
    match attack {
        Attack::HalfOpen => {
            let (window, hold) = (plan.half_open_window, plan.half_open_hold);
            tasks.push(tokio::spawn(async move {
                let from = IpAddr::from([127, 0, 0, 2]);
                let mut open = std::collections::VecDeque::new();
                for _ in 0..scale.half_open {
                    if Instant::now() > deadline {
                        break;
                    }
                    let connected =
                        tokio::time::timeout(Duration::from_secs(2), connect(from, to)).await;
                    if let Ok(Ok(mut conn)) = connected {
                        let half = b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Half: ";
                        tokio::time::timeout(Duration::from_secs(2), conn.write_all(half))
                            .await
                            .ok();
                        open.push_back(conn);
                    }
                    if open.len() > window {
                        open.pop_front();
                    }
                }
                match hold {
                    Some(hold) => tokio::time::sleep(hold).await,
                    None => tokio::time::sleep_until(deadline.into()).await,
                }
            }));
        }
        Attack::Trickling => {
            let auth = basic(&plan.user, &plan.password);
            tasks.push(tokio::spawn(async move {
                let from = IpAddr::from([127, 0, 0, 3]);
                let mut tasks = tokio::task::JoinSet::new();
                for _ in 0..scale.trickling {
                    if Instant::now() > deadline {
                        break;
                    }
                    let auth = auth.clone();
                    tasks.spawn(async move {
                        let connected =
                            tokio::time::timeout(Duration::from_secs(2), connect(from, to)).await;
                        let Ok(Ok(mut conn)) = connected else { return };
                        let head = format!(
                            "PUT /v2/evil/app/manifests/t HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: 100000\r\n\r\n"
                        );
                        if !write_within(&mut conn, head.as_bytes()).await {
                            return;
                        }
                        while Instant::now() < deadline {
                            if !write_within(&mut conn, b"{").await {
                                return;
                            }
                            tokio::time::sleep(Duration::from_millis(500)).await;
                        }
                    });
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                while tasks.join_next().await.is_some() {}
            }));
        }
        Attack::Posts => {
            for _ in 0..4 {
                let mut c = Client::with_user(4, to, &plan.user, &plan.password);
                tasks.push(tokio::spawn(async move {
                    for _ in 0..scale.posts / 4 {
                        if Instant::now() > deadline {
                            break;
                        }
                        c.request("POST", "/v2/evil/app/blobs/uploads/", "", b"")
                            .await;
                    }
                }));
            }
        }
        Attack::WrongPasswords => {
            for _ in 0..4 {
                let mut c = Client::new(5, to, "wrong-password");
                tasks.push(tokio::spawn(async move {
                    for _ in 0..scale.wrong_passwords / 4 {
                        if Instant::now() > deadline {
                            break;
                        }
                        c.request("GET", "/v2/honest/app/manifests/v1", ACCEPT, b"")
                            .await;
                    }
                }));
            }
        }
        Attack::Gets => {
            for _ in 0..8 {
                let mut c = Client::with_user(6, to, &plan.user, &plan.password);
                tasks.push(tokio::spawn(async move {
                    for _ in 0..scale.gets / 8 {
                        if Instant::now() > deadline {
                            break;
                        }
                        c.request("GET", "/v2/honest/app/manifests/v1", ACCEPT, b"")
                            .await;
                    }
                }));
            }
        }
    }
    tasks
}

/// Writes `bytes`, giving up after 2 s: whether they went.
async fn write_within(conn: &mut TcpStream, bytes: &[u8]) -> bool {
    matches!(
        tokio::time::timeout(Duration::from_secs(2), conn.write_all(bytes)).await,
        Ok(Ok(()))
    )
}

/// The Accept header of manifest GETs (distribution answers an OCI manifest only to a client
/// that accepts one).
pub(crate) const ACCEPT: &str = "Accept: application/vnd.oci.image.manifest.v1+json\r\n";

/// A registry server process (`ocikit serve`, or distribution), killed when dropped.
pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) addr: SocketAddr,
}

impl Server {
    /// `ocikit` (`binary`) serving `root` to the users of `htpasswd` on a free loopback port,
    /// under `ulimit -n nofile`, with `extra` flags.
    pub(crate) fn ocikit(
        binary: &Path,
        root: &Path,
        htpasswd: &Path,
        nofile: u32,
        extra: &[&str],
    ) -> Server {
        let script = format!("ulimit -n {nofile} && exec \"$0\" \"$@\"");
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(&script)
            .arg(binary)
            .args(["serve", "--addr", "127.0.0.1:0", "--log", "warn"])
            .arg("--root")
            .arg(root)
            .arg("--htpasswd")
            .arg(htpasswd)
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
    pub(crate) fn usage(&self) -> (usize, u64) {
        usage(self.child.id())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// Open file descriptors of process `pid`, and its VmHWM in KiB (0, 0 once it is gone).
pub(crate) fn usage(pid: u32) -> (usize, u64) {
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

/// Files under `root`.
pub(crate) fn count_files(root: &Path) -> usize {
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

/// `Basic …` for `user` with `password`.
pub(crate) fn basic(user: &str, password: &str) -> String {
    let raw = format!("{user}:{password}");
    // Base64 by hand: the test crate has no base64 of its own.
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::from("Basic ");
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
    out
}

/// A connection to `to` from `from`.
pub(crate) async fn connect(from: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    socket.connect(to).await
}

/// What one request got.
#[derive(Clone, Debug)]
pub(crate) struct Reply {
    /// The status; 0 when the connection failed or the request timed out.
    pub(crate) status: u16,
    /// The `Location` header, when there was one.
    pub(crate) location: Option<String>,
    /// No answer within the client's timeout.
    pub(crate) timed_out: bool,
}

/// A kept-alive HTTP/1.1 client from one address, each request bounded by a timeout.
pub(crate) struct Client {
    from: IpAddr,
    to: SocketAddr,
    conn: Option<tokio::io::BufReader<TcpStream>>,
    auth: String,
    timeout: Duration,
}

impl Client {
    /// A client from 127.0.0.`last`, as user alice with `password`; 10 s per request.
    pub(crate) fn new(last: u8, to: SocketAddr, password: &str) -> Client {
        Client::with_user(last, to, "alice", password)
    }

    /// A client from 127.0.0.`last`, as `user` with `password`; 10 s per request.
    pub(crate) fn with_user(last: u8, to: SocketAddr, user: &str, password: &str) -> Client {
        Client {
            from: IpAddr::from([127, 0, 0, last]),
            to,
            conn: None,
            auth: basic(user, password),
            timeout: Duration::from_secs(10),
        }
    }

    /// One request; the status (0 when the connection failed or the request timed out).
    pub(crate) async fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &str,
        body: &[u8],
    ) -> u16 {
        self.send(method, path, headers, body).await.status
    }

    /// One request, with what the answer said.
    pub(crate) async fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &str,
        body: &[u8],
    ) -> Reply {
        let timeout = self.timeout;
        let attempt = self.try_request(method, path, headers, body);
        match tokio::time::timeout(timeout, attempt).await {
            Ok(Ok(reply)) => reply,
            failed => {
                self.conn = None;
                Reply {
                    status: 0,
                    location: None,
                    timed_out: failed.is_err(),
                }
            }
        }
    }

    async fn try_request(
        &mut self,
        method: &str,
        path: &str,
        headers: &str,
        body: &[u8],
    ) -> std::io::Result<Reply> {
        if self.conn.is_none() {
            let conn = connect(self.from, self.to).await?;
            self.conn = Some(tokio::io::BufReader::new(conn));
        }
        let Some(conn) = self.conn.as_mut() else {
            return Err(std::io::ErrorKind::NotConnected.into());
        };
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nContent-Length: {}\r\n{headers}\r\n",
            self.auth,
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(body);
        conn.get_mut().write_all(&request).await?;
        let mut head = String::new();
        loop {
            let mut line = String::new();
            if conn.read_line(&mut line).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            if line == "\r\n" || line == "\n" {
                break;
            }
            head.push_str(&line);
        }
        let status: u16 = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut location = None;
        let (mut length, mut chunked, mut close) = (None, false, false);
        for line in head.lines().skip(1) {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
            match name.as_str() {
                "content-length" => length = value.parse::<u64>().ok(),
                "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
                "connection" => close = value.eq_ignore_ascii_case("close"),
                "location" => location = Some(value.to_owned()),
                _ => {}
            }
        }
        let bodiless = method == "HEAD" || status == 204 || status == 304 || status < 200;
        if bodiless {
        } else if chunked {
            loop {
                let mut size = String::new();
                conn.read_line(&mut size).await?;
                let size = u64::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)
                    .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidData))?;
                if size == 0 {
                    // Trailers, up to the empty line.
                    loop {
                        let mut line = String::new();
                        if conn.read_line(&mut line).await? == 0 || line.trim().is_empty() {
                            break;
                        }
                    }
                    break;
                }
                skip(conn, size + 2).await?;
            }
        } else if let Some(length) = length {
            skip(conn, length).await?;
        } else {
            // Delimited by the end of the connection.
            let mut sink = Vec::new();
            conn.read_to_end(&mut sink).await?;
            close = true;
        }
        if close {
            self.conn = None;
        }
        Ok(Reply {
            status,
            location,
            timed_out: false,
        })
    }
}

/// Reads and drops `n` bytes.
async fn skip(conn: &mut tokio::io::BufReader<TcpStream>, n: u64) -> std::io::Result<()> {
    let copied = tokio::io::copy(&mut (&mut *conn).take(n), &mut tokio::io::sink()).await?;
    if copied < n {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

/// One honest request's outcome.
#[derive(Clone, Debug)]
pub(crate) struct Outcome {
    pub(crate) what: &'static str,
    pub(crate) status: u16,
    pub(crate) elapsed: Duration,
    pub(crate) timed_out: bool,
}

impl Outcome {
    pub(crate) fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// The honest client's small image (a 20 kB layer, a config, a manifest) in repository
/// honest/app, tag v1.
pub(crate) struct Image {
    layer: Vec<u8>,
    config: Vec<u8>,
    layer_digest: String,
    config_digest: String,
    manifest: String,
}

impl Image {
    pub(crate) fn new() -> Image {
        let layer: Vec<u8> = (0..20_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
        let sha256 = |b: &[u8]| ocikit::digest::Digest::sha256(b).as_str().to_owned();
        let (layer_digest, config_digest) = (sha256(&layer), sha256(&config));
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer_digest}","size":{}}}]}}"#,
            config.len(),
            layer.len()
        );
        Image {
            layer,
            config,
            layer_digest,
            config_digest,
            manifest,
        }
    }

    /// One round of the honest client: push the image (each blob in one POST when
    /// `monolithic`, else a POST, then a PUT of the bytes to the session, which distribution
    /// 2.8 needs; then the manifest), pull it (the manifest by tag, the layer). The round
    /// ends at a request that timed out (the server answers nobody; waiting on it again would
    /// only stretch the round).
    pub(crate) async fn round(&self, c: &mut Client, monolithic: bool) -> Vec<Outcome> {
        let mut out = Vec::new();
        for (digest, bytes) in [
            (&self.layer_digest, &self.layer),
            (&self.config_digest, &self.config),
        ] {
            let uploads = "/v2/honest/app/blobs/uploads/";
            if monolithic {
                let post = format!("{uploads}?digest={digest}");
                if timed(c, &mut out, "POST blob", "POST", &post, "", bytes)
                    .await
                    .is_none()
                {
                    return out;
                }
                continue;
            }
            let Some(post) = timed(c, &mut out, "POST upload", "POST", uploads, "", b"").await
            else {
                return out;
            };
            let Some(location) = post.location.filter(|_| post.status == 202) else {
                continue;
            };
            // Distribution answers an absolute URL, ocikit a path.
            let path = match location.split_once("://") {
                Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]).to_owned(),
                None => location,
            };
            let join = if path.contains('?') { '&' } else { '?' };
            let put = format!("{path}{join}digest={digest}");
            let octets = "Content-Type: application/octet-stream\r\n";
            timed(c, &mut out, "PUT blob", "PUT", &put, octets, bytes).await;
        }
        let manifest_type = "Content-Type: application/vnd.oci.image.manifest.v1+json\r\n";
        let tag = "/v2/honest/app/manifests/v1";
        let (body, layer) = (
            self.manifest.as_bytes(),
            format!("/v2/honest/app/blobs/{}", self.layer_digest),
        );
        timed(c, &mut out, "PUT manifest", "PUT", tag, manifest_type, body).await;
        timed(c, &mut out, "GET manifest", "GET", tag, ACCEPT, b"").await;
        timed(c, &mut out, "GET layer", "GET", &layer, "", b"").await;
        out
    }
}

/// One request of a round, timed into `out`; nothing once a request of the round timed out.
async fn timed(
    c: &mut Client,
    out: &mut Vec<Outcome>,
    what: &'static str,
    method: &str,
    path: &str,
    headers: &str,
    body: &[u8],
) -> Option<Reply> {
    if out.last().is_some_and(|o| o.timed_out) {
        return None;
    }
    let started = Instant::now();
    let reply = c.send(method, path, headers, body).await;
    out.push(Outcome {
        what,
        status: reply.status,
        elapsed: started.elapsed(),
        timed_out: reply.timed_out,
    });
    Some(reply)
}

/// The `pct` percentile of `latencies` (sorted here; zero when there are none).
pub(crate) fn percentile(latencies: &mut [Duration], pct: usize) -> Duration {
    latencies.sort();
    match latencies.len() {
        0 => Duration::ZERO,
        n => latencies[(n * pct / 100).min(n - 1)],
    }
}
