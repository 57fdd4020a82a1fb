//! Staged pulls (issue 20): a blob download interrupted by SIGKILL or a dropped connection
//! resumes from the bytes on disk (`Range`), the whole verified (in the same run, or in the
//! next: after a kill, or after a run whose retries ran out); a partial file changed on
//! disk is discarded and the blob fetched again; `gc` removes stale partial downloads and
//! keeps fresh ones; fsck never takes a partial download for a blob.
//!
//! The registry is a small HTTP server in the test that serves one image, sends the layer
//! slowly (so the copy can be killed halfway), can drop a connection mid-blob, and counts
//! the layer's bytes it sent.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use ocikit::digest::Digest;
use ocikit_testkit::{poll, prng, tarball};

use crate::{json, oci, ok};

const REPOSITORY: &str = "test/app";
const LAYER_FILE: usize = 24 << 20;
/// Bytes of the layer per write, and the pause after each while throttled.
const SEND_CHUNK: usize = 64 << 10;

struct Image {
    manifest: Vec<u8>,
    manifest_digest: Digest,
    layer: Vec<u8>,
    layer_digest: Digest,
    blobs: HashMap<String, Vec<u8>>,
}

fn image() -> Image {
    let data = prng::bytes(20, LAYER_FILE);
    let layer = tarball::tar_of(&[("data.bin", data.as_slice())]);
    let layer_digest = Digest::sha256(&layer);
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{}},"rootfs":{{"type":"layers","diff_ids":["{layer_digest}"]}}}}"#
    )
    .into_bytes();
    let config_digest = Digest::sha256(&config);
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer_digest}","size":{}}}]}}"#,
        config.len(),
        layer.len()
    )
    .into_bytes();
    let manifest_digest = Digest::sha256(&manifest);
    let mut blobs = HashMap::new();
    blobs.insert(config_digest.to_string(), config);
    blobs.insert(layer_digest.to_string(), layer.clone());
    Image {
        manifest,
        manifest_digest,
        layer,
        layer_digest,
        blobs,
    }
}

/// What the server does and saw.
#[derive(Default)]
struct State {
    /// Bytes of the layer sent (bodies only).
    layer_bytes: AtomicU64,
    /// Microseconds to pause after each chunk of the layer.
    pause_micros: AtomicU64,
    /// Close the next layer response after this many body bytes (0: never), once.
    drop_after: AtomicU64,
    /// Close every layer response after this many body bytes (0: never).
    drop_every: AtomicU64,
    /// Layer responses being sent.
    sending: AtomicU64,
    /// The `Range` header of each layer request (`None` without one).
    layer_ranges: Mutex<Vec<Option<String>>>,
}

struct Registry {
    addr: String,
    state: Arc<State>,
    stop: Arc<AtomicBool>,
}

impl Registry {
    fn start() -> Registry {
        let image = Arc::new(image());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let state = Arc::new(State::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (state.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let (image, state) = (image.clone(), s.clone());
                std::thread::spawn(move || serve(stream, &image, &state));
            }
        });
        Registry { addr, state, stop }
    }

    fn layer_bytes(&self) -> u64 {
        self.state.layer_bytes.load(Ordering::SeqCst)
    }

    fn reference(&self) -> String {
        format!("docker://{}/{REPOSITORY}:v1", self.addr)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.addr);
    }
}

fn serve(mut stream: TcpStream, image: &Image, state: &State) {
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) if head.len() < 64 << 10 => head.push(byte[0]),
            _ => return, // closed, garbage (a TLS hello) or too long
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let (method, path) = (
        first.next().unwrap_or_default().to_string(),
        first.next().unwrap_or_default().to_string(),
    );
    let range = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("range"))
        .map(|(_, v)| v.trim().to_string());
    let prefix = format!("/v2/{REPOSITORY}/");
    let reply = |stream: &mut TcpStream, status: &str, headers: &[(&str, String)], len: usize| {
        let mut text =
            format!("HTTP/1.1 {status}\r\nConnection: close\r\nContent-Length: {len}\r\n");
        for (name, value) in headers {
            text.push_str(&format!("{name}: {value}\r\n"));
        }
        text.push_str("\r\n");
        stream.write_all(text.as_bytes())
    };
    if path == "/v2/" {
        let _ = reply(&mut stream, "200 OK", &[], 0);
        return;
    }
    let Some(rest) = path.strip_prefix(&prefix) else {
        let _ = reply(&mut stream, "404 Not Found", &[], 0);
        return;
    };
    let body_wanted = method == "GET";
    if let Some(reference) = rest.strip_prefix("manifests/") {
        if reference != "v1" && reference != image.manifest_digest.as_str() {
            let _ = reply(&mut stream, "404 Not Found", &[], 0);
            return;
        }
        let headers = [
            (
                "Content-Type",
                "application/vnd.oci.image.manifest.v1+json".to_string(),
            ),
            ("Docker-Content-Digest", image.manifest_digest.to_string()),
        ];
        if reply(&mut stream, "200 OK", &headers, image.manifest.len()).is_ok() && body_wanted {
            let _ = stream.write_all(&image.manifest);
        }
        return;
    }
    let Some(blob) = rest
        .strip_prefix("blobs/")
        .and_then(|digest| image.blobs.get(digest))
    else {
        let _ = reply(&mut stream, "404 Not Found", &[], 0);
        return;
    };
    let is_layer = blob.len() == image.layer.len();
    if is_layer && body_wanted {
        state.layer_ranges.lock().unwrap().push(range.clone());
    }
    let start = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|r| r.parse::<usize>().ok())
        .filter(|&start| start < blob.len());
    let body = &blob[start.unwrap_or(0)..];
    let mut headers = vec![("Content-Type", "application/octet-stream".to_string())];
    let status = match start {
        Some(start) => {
            headers.push((
                "Content-Range",
                format!("bytes {start}-{}/{}", blob.len() - 1, blob.len()),
            ));
            "206 Partial Content"
        }
        None => "200 OK",
    };
    if reply(&mut stream, status, &headers, body.len()).is_err() || !body_wanted {
        return;
    }
    if !is_layer {
        let _ = stream.write_all(body);
        return;
    }
    state.sending.fetch_add(1, Ordering::SeqCst);
    send_layer(&mut stream, body, state);
    state.sending.fetch_sub(1, Ordering::SeqCst);
}

/// Sends the layer's body (from the range asked for), throttled or cut as `state` says.
fn send_layer(stream: &mut TcpStream, body: &[u8], state: &State) {
    let drop_after = match state.drop_after.swap(0, Ordering::SeqCst) {
        0 => state.drop_every.load(Ordering::SeqCst),
        once => once,
    };
    let mut sent = 0usize;
    for chunk in body.chunks(SEND_CHUNK) {
        let chunk = if drop_after > 0 {
            let left = usize::try_from(drop_after).unwrap().saturating_sub(sent);
            if left == 0 {
                // The connection drops mid-blob.
                let _ = stream.shutdown(std::net::Shutdown::Both);
                return;
            }
            &chunk[..chunk.len().min(left)]
        } else {
            chunk
        };
        if stream.write_all(chunk).is_err() {
            return;
        }
        sent += chunk.len();
        state
            .layer_bytes
            .fetch_add(chunk.len() as u64, Ordering::SeqCst);
        let pause = state.pause_micros.load(Ordering::SeqCst);
        if pause > 0 {
            std::thread::sleep(Duration::from_micros(pause));
        }
    }
}

/// The `ocikit copy` command line from `registry` into `target`.
fn copy_args(registry: &Registry, target: &Path) -> Vec<String> {
    vec![
        "copy".into(),
        "--src-tls-verify=false".into(),
        registry.reference(),
        oci(target, ":v1"),
    ]
}

/// Starts `ocikit copy` and SIGKILLs it once the server has sent half the layer; returns
/// the bytes of the layer sent by then.
fn copy_killed_halfway(registry: &Registry, target: &Path) -> u64 {
    registry.state.pause_micros.store(4000, Ordering::SeqCst);
    let mut child = Command::new(env!("CARGO_BIN_EXE_ocikit"))
        .args(copy_args(registry, target))
        .env("DOCKER_CONFIG", "/nonexistent/ocikit-tests-docker-config")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let half = image().layer.len() as u64 / 2;
    poll::wait_until("half the layer sent", Duration::from_secs(60), || {
        (registry.layer_bytes() >= half).then_some(())
    });
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    registry.state.pause_micros.store(0, Ordering::SeqCst);
    // The server's last writes (into a socket whose reader is gone) count once they end.
    poll::wait_until(
        "the server to stop sending",
        Duration::from_secs(30),
        || (registry.state.sending.load(Ordering::SeqCst) == 0).then_some(()),
    );
    registry.layer_bytes()
}

/// Every file under `dir` whose path ends in `tail` (components).
fn find(dir: &Path, tail: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path);
            } else if path.ends_with(tail) {
                found.push(path);
            }
        }
    }
    found
}

fn partial_tail(digest: &Digest) -> PathBuf {
    Path::new(".ocikit/partial/sha256").join(digest.encoded())
}

fn blob_tail(digest: &Digest) -> PathBuf {
    Path::new("blobs/sha256").join(digest.encoded())
}

/// The one partial download of `digest` under `dir`, and its length.
fn the_partial(dir: &Path, digest: &Digest) -> (PathBuf, u64) {
    let found = find(dir, &partial_tail(digest));
    assert_eq!(found.len(), 1, "one partial download: {found:?}");
    let len = std::fs::metadata(&found[0]).unwrap().len();
    (found[0].clone(), len)
}

#[test]
fn a_killed_copy_resumes_from_the_bytes_on_disk_and_transfers_only_the_rest() {
    let registry = Registry::start();
    let image = image();
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("pulled");
    let size = image.layer.len() as u64;

    let sent_before = copy_killed_halfway(&registry, &target);
    assert!(sent_before < size, "killed before the layer was sent whole");
    // What the killed run left: a partial download, never a blob, and no layout yet.
    let (_, kept) = the_partial(dir.path(), &image.layer_digest);
    assert!(kept > 0 && kept < size, "kept {kept} of {size}");
    assert!(find(dir.path(), &blob_tail(&image.layer_digest)).is_empty());
    assert!(!target.exists());

    ok(&copy_args(&registry, &target)
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>());
    let rerun = registry.layer_bytes() - sent_before;
    assert_eq!(rerun, size - kept, "the rerun sent only the rest");
    assert_eq!(
        registry.state.layer_ranges.lock().unwrap().last().cloned(),
        Some(Some(format!("bytes={kept}-")))
    );
    assert_eq!(
        std::fs::read(target.join(blob_tail(&image.layer_digest))).unwrap(),
        image.layer
    );
    assert_eq!(json(&["fsck", &oci(&target, "")])["clean"], true);
    // Published: no partial download and no staging left.
    assert!(find(dir.path(), &partial_tail(&image.layer_digest)).is_empty());
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("pulled")]);
}

#[test]
fn a_partial_download_changed_on_disk_is_discarded_and_the_blob_fetched_again() {
    let registry = Registry::start();
    let image = image();
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("pulled");
    let size = image.layer.len() as u64;

    let sent_before = copy_killed_halfway(&registry, &target);
    let (partial, kept) = the_partial(dir.path(), &image.layer_digest);
    // One byte of the kept prefix changes on disk between the runs.
    let mut bytes = std::fs::read(&partial).unwrap();
    bytes[1000] ^= 0xff;
    std::fs::write(&partial, &bytes).unwrap();

    ok(&copy_args(&registry, &target)
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>());
    // The rest, which failed to verify with the prefix, then the whole blob again.
    assert_eq!(registry.layer_bytes() - sent_before, (size - kept) + size);
    let ranges = registry.state.layer_ranges.lock().unwrap().clone();
    assert_eq!(
        ranges[ranges.len() - 2..],
        [Some(format!("bytes={kept}-")), None]
    );
    assert_eq!(
        std::fs::read(target.join(blob_tail(&image.layer_digest))).unwrap(),
        image.layer
    );
    assert_eq!(json(&["fsck", &oci(&target, "")])["clean"], true);
    assert!(find(dir.path(), &partial_tail(&image.layer_digest)).is_empty());
}

#[test]
fn a_dropped_connection_resumes_in_the_same_run() {
    let registry = Registry::start();
    let image = image();
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("pulled");
    let size = image.layer.len() as u64;
    let cut = size / 3;
    registry.state.drop_after.store(cut, Ordering::SeqCst);

    ok(&copy_args(&registry, &target)
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>());
    assert_eq!(registry.layer_bytes(), size, "no byte sent twice");
    assert_eq!(
        registry.state.layer_ranges.lock().unwrap().clone(),
        vec![None, Some(format!("bytes={cut}-"))]
    );
    assert_eq!(json(&["fsck", &oci(&target, "")])["clean"], true);
}

#[test]
fn a_run_cut_off_for_good_keeps_its_bytes_in_an_existing_layout_for_the_next_run() {
    let registry = Registry::start();
    let image = image();
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("layout");
    ok(&["init", "-q", &oci(&target, "")]);
    let size = image.layer.len() as u64;
    // Every response is cut off after 1 MiB: the retries run out and the copy fails.
    registry.state.drop_every.store(1 << 20, Ordering::SeqCst);
    let args = copy_args(&registry, &target);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    crate::fails(&args);
    let failed_run = registry.layer_bytes();
    let (_, kept) = the_partial(&target, &image.layer_digest);
    assert_eq!(kept, failed_run, "every byte received is kept");
    assert!(kept >= 2 << 20, "resumed within the run: {kept}");
    assert!(!target.join(blob_tail(&image.layer_digest)).exists());
    assert_eq!(json(&["fsck", &oci(&target, "")])["clean"], true);

    registry.state.drop_every.store(0, Ordering::SeqCst);
    ok(&args);
    assert_eq!(registry.layer_bytes() - failed_run, size - kept);
    assert_eq!(
        std::fs::read(target.join(blob_tail(&image.layer_digest))).unwrap(),
        image.layer
    );
    assert_eq!(json(&["fsck", &oci(&target, "")])["clean"], true);
    assert!(find(&target, &partial_tail(&image.layer_digest)).is_empty());
}

#[test]
fn gc_removes_stale_partial_downloads_and_keeps_fresh_ones_which_fsck_ignores() {
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("pulled");
    ok(&copy_args(&registry, &target)
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>());

    // Two partial downloads: one not written for two days, one just now.
    let stale = Digest::sha256(b"stale");
    let fresh = Digest::sha256(b"fresh");
    for (digest, bytes) in [(&stale, b"st".as_slice()), (&fresh, b"fr".as_slice())] {
        let path = target.join(partial_tail(digest));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, bytes).unwrap();
    }
    std::fs::File::options()
        .write(true)
        .open(target.join(partial_tail(&stale)))
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(2 * 24 * 3600))
        .unwrap();

    // Neither is a blob to fsck or to a listing.
    assert_eq!(json(&["fsck", &oci(&target, "")])["clean"], true);

    let dry = json(&["gc", "--dry-run", &oci(&target, "")]);
    assert_eq!(
        dry["partialsRemoved"],
        serde_json::json!([stale.to_string()])
    );
    assert!(
        target.join(partial_tail(&stale)).exists(),
        "a dry run removes nothing"
    );

    let report = json(&["gc", &oci(&target, "")]);
    assert_eq!(
        report["partialsRemoved"],
        serde_json::json!([stale.to_string()])
    );
    assert!(!target.join(partial_tail(&stale)).exists());
    assert!(target.join(partial_tail(&fresh)).exists());
    // The image itself is untouched.
    assert_eq!(report["removed"], serde_json::json!([]));
    assert_eq!(json(&["fsck", &oci(&target, "")])["clean"], true);
}
