//! Issue 22: the limits that keep the registry serving honest clients under hostile load
//! (`Config::limits`). Each limit refuses (a closed connection, 400, 429 with
//! `Retry-After`), and honest traffic next to it passes. Clients come from several
//! loopback addresses (127.0.0.2, ...), which Linux routes like 127.0.0.1, so that
//! per-client limits can be seen.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use ocikit_registry::{Config, Limits, Rate, Registry};
use ocikit_store::{FsStore, Store};
use reqwest::{Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::*;

fn ip(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

fn addr(s: &Server) -> SocketAddr {
    s.base.trim_start_matches("http://").parse().unwrap()
}

/// A connection to `s` from 127.0.0.`from`.
async fn connect_from(s: &Server, from: u8) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(ip(from), 0)).unwrap();
    socket.connect(addr(s)).await.unwrap()
}

/// A reqwest client whose connections come from 127.0.0.`from`.
fn client_from(from: u8) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .local_address(ip(from))
        .build()
        .unwrap()
}

/// Reads until the server closes the connection (or `within` passes: `None`); what came.
async fn read_until_closed(conn: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    let read = tokio::time::timeout(within, async {
        let mut buf = [0u8; 4096];
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    read.ok().map(|()| got)
}

/// A server on the filesystem, and its upload store, with `limits`.
async fn fs_server(config: Config) -> (Server, std::sync::Arc<FsStore>) {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let store = FsStore::open(dir.path().join("content")).await.unwrap();
    let uploads = std::sync::Arc::new(FsStore::open(dir.path().join("uploads")).await.unwrap());
    let registry = Registry::new(std::sync::Arc::new(store), uploads.clone(), config).unwrap();
    (Server::start_keeping(registry, vec![dir]).await, uploads)
}

/// Session documents and chunks in an upload store.
async fn upload_files(uploads: &FsStore) -> usize {
    use futures::StreamExt;
    let sessions = uploads.list_documents("sessions/").await.unwrap().len();
    let chunks = uploads.list().count().await;
    sessions + chunks
}

fn limits() -> Limits {
    Limits::unlimited()
}

#[tokio::test]
async fn a_half_sent_header_is_cut_off_at_the_header_read_timeout() {
    let config = Config::default().limits(
        limits()
            .header_read_timeout(Duration::from_millis(400))
            .keep_alive_timeout(Duration::from_secs(30)),
    );
    let s = server_with(Backend::Memory, config).await;
    let mut quiet = connect_from(&s, 2).await;
    quiet
        .write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Half: ")
        .await
        .unwrap();
    let started = Instant::now();
    // An honest request meanwhile is answered.
    let resp = s.send(Method::GET, "/v2/").await;
    assert_eq!(resp.status(), StatusCode::OK);
    read_until_closed(&mut quiet, Duration::from_secs(5))
        .await
        .expect("the server closed the half-open connection");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(300), "{took:?}");
    // And a complete header sent well within the timeout is served.
    let mut honest = connect_from(&s, 2).await;
    honest
        .write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let got = read_until_closed(&mut honest, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(
        got.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    s.stop().await;
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed_at_the_keep_alive_timeout() {
    let config = Config::default().limits(
        limits()
            .header_read_timeout(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_millis(300)),
    );
    let s = server_with(Backend::Memory, config).await;
    let mut conn = connect_from(&s, 2).await;
    // Two requests on the one connection, 100 ms apart: kept alive between them.
    for _ in 0..2 {
        conn.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 1024];
        let n = conn.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let started = Instant::now();
    read_until_closed(&mut conn, Duration::from_secs(5))
        .await
        .expect("the idle connection was closed");
    assert!(started.elapsed() < Duration::from_secs(2));
    s.stop().await;
}

/// A PATCH trickling a few bytes a second is refused once the grace period is spent (400,
/// nothing of it kept); one at a real, if slow, rate is taken.
#[tokio::test]
async fn a_trickled_upload_is_cut_off_and_a_slow_real_one_is_not() {
    let config = Config::default().limits(
        limits()
            .min_transfer_rate(2000, Duration::from_millis(500))
            .keep_alive_timeout(Duration::from_secs(30)),
    );
    let (s, uploads) = fs_server(config).await;
    let loc = s.start_upload("app").await;
    let before = upload_files(&uploads).await;
    let mut conn = connect_from(&s, 2).await;
    conn.write_all(
        format!("PATCH {loc} HTTP/1.1\r\nHost: x\r\nContent-Length: 10000\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    for _ in 0..100 {
        if conn.write_all(b"abcde").await.is_err() {
            break;
        }
        let mut buf = [0u8; 2048];
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(100), conn.read(&mut buf)).await
        {
            answer.extend_from_slice(&buf[..n]);
            break;
        }
    }
    let answer = String::from_utf8_lossy(&answer).into_owned();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("SIZE_INVALID"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(5));
    let resp = s.send(Method::GET, &loc).await;
    assert_eq!(header(&resp, "range"), "0-0");
    assert_eq!(upload_files(&uploads).await, before);

    // 20 KB at 20 KB/s in 2 KB pieces, ten times the minimum: taken.
    let mut conn = connect_from(&s, 2).await;
    conn.write_all(
        format!(
            "PATCH {loc} HTTP/1.1\r\nHost: x\r\nContent-Length: 20000\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    for _ in 0..10 {
        conn.write_all(&[7u8; 2000]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = read_until_closed(&mut conn, Duration::from_secs(10))
        .await
        .unwrap();
    let got = String::from_utf8_lossy(&got).into_owned();
    assert!(got.starts_with("HTTP/1.1 202"), "{got}");
    let resp = s.send(Method::GET, &loc).await;
    assert_eq!(header(&resp, "range"), "0-19999");
    s.stop().await;
}

/// A client reading a response at a trickle has its connection closed after the grace
/// period; the registry keeps answering others.
#[tokio::test]
async fn a_response_read_at_a_trickle_is_cut_off() {
    let config = Config::default().limits(
        limits()
            .min_transfer_rate(10_000_000, Duration::from_millis(500))
            .keep_alive_timeout(Duration::from_secs(30)),
    );
    let s = server_with(Backend::Memory, config).await;
    let blob = data(32 << 20, 3);
    let digest = s.push_blob("app", &blob).await;
    let mut slow = connect_from(&s, 2).await;
    slow.write_all(format!("GET /v2/app/blobs/{digest} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    // 50 KB/s for three seconds (the kernel's buffers take the first megabytes at once)...
    let started = Instant::now();
    let mut read = 0usize;
    while started.elapsed() < Duration::from_secs(3) {
        let mut buf = [0u8; 1024];
        match slow.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => read += n,
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // ... then as fast as possible: only what was sent before the server gave up comes.
    let rest = read_until_closed(&mut slow, Duration::from_secs(20))
        .await
        .expect("the connection ended");
    let read = read + rest.len();
    assert!(read < blob.len(), "the whole blob came: {read}");
    let resp = s
        .send(Method::GET, &format!("/v2/app/blobs/{digest}"))
        .await;
    assert_eq!(resp.bytes().await.unwrap().len(), blob.len());
    s.stop().await;
}

/// Past the per-client cap, the client's oldest idle connection is closed to admit a new
/// one; when all of them have requests in flight, the new one is refused with 503. Other
/// clients are not affected.
#[tokio::test]
async fn connections_past_the_per_client_cap_evict_idle_ones_or_are_refused() {
    let config = Config::default().limits(
        limits()
            .max_connections(Some(100), 3)
            .keep_alive_timeout(Duration::from_secs(30))
            .header_read_timeout(Duration::from_secs(30)),
    );
    let (s, _) = fs_server(config).await;
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(connect_from(&s, 2).await);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // A fourth: the oldest idle one goes.
    let fourth = connect_from(&s, 2).await;
    read_until_closed(&mut idle[0], Duration::from_secs(5))
        .await
        .expect("the oldest idle connection was closed");
    // The three left are made busy with uploads whose bodies are still coming.
    let loc = s.start_upload("app").await;
    let mut busy = vec![idle.pop().unwrap(), idle.pop().unwrap(), fourth];
    for conn in &mut busy {
        conn.write_all(
            format!("PATCH {loc} HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nabc")
                .as_bytes(),
        )
        .await
        .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut refused = connect_from(&s, 2).await;
    let got = read_until_closed(&mut refused, Duration::from_secs(5))
        .await
        .unwrap();
    let got = String::from_utf8_lossy(&got).into_owned();
    assert!(got.starts_with("HTTP/1.1 503"), "{got}");
    // Another client is served all along.
    let other = client_from(3);
    let resp = other.get(format!("{}/v2/", s.base)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    drop(busy);
    s.stop().await;
}

/// Past the total cap, the idle connection of the client holding the most goes first.
#[tokio::test]
async fn past_the_total_cap_the_greediest_clients_idle_connection_goes() {
    let config = Config::default().limits(
        limits()
            .max_connections(Some(4), 100)
            .keep_alive_timeout(Duration::from_secs(30))
            .header_read_timeout(Duration::from_secs(30)),
    );
    let s = server_with(Backend::Memory, config).await;
    let mut quiet = connect_from(&s, 2).await;
    let mut greedy = Vec::new();
    for _ in 0..3 {
        greedy.push(connect_from(&s, 3).await);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    for _ in 0..3 {
        greedy.push(connect_from(&s, 3).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The quiet client's connection, the oldest of all, is still served.
    quiet
        .write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let got = read_until_closed(&mut quiet, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(
        got.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    // The greedy client's three oldest were closed.
    for conn in &mut greedy[..3] {
        read_until_closed(conn, Duration::from_secs(5))
            .await
            .expect("closed");
    }
    s.stop().await;
}

/// Past the per-client cap of upload sessions, POST gets 429 `TOOMANYREQUESTS` with
/// `Retry-After`; another client still opens sessions; cancelling one makes room; past the
/// total cap everyone gets 429.
#[tokio::test]
async fn upload_sessions_are_capped_per_client_and_in_total() {
    let config = Config::default().limits(limits().max_upload_sessions(5, 3));
    let (s, uploads) = fs_server(config).await;
    let (a, b, c) = (client_from(2), client_from(3), client_from(4));
    let post = |client: &reqwest::Client| {
        client
            .post(format!("{}/v2/app/blobs/uploads/", s.base))
            .send()
    };
    let mut opened = Vec::new();
    for _ in 0..3 {
        let resp = post(&a).await.unwrap();
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
        opened.push(location(&resp));
    }
    let before = upload_files(&uploads).await;
    let resp = post(&a).await.unwrap();
    let retry: u64 = header(&resp, "retry-after").parse().unwrap();
    assert!(retry >= 1);
    assert_error(resp, StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS").await;
    assert_eq!(
        upload_files(&uploads).await,
        before,
        "a refused POST stored nothing"
    );
    for _ in 0..2 {
        assert_eq!(post(&b).await.unwrap().status(), StatusCode::ACCEPTED);
    }
    // Five open: the registry is full, for a third client too.
    let resp = post(&c).await.unwrap();
    assert_error(resp, StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS").await;
    // A cancelled session and a finished one make room again.
    let resp = a
        .delete(format!("{}{}", s.base, opened[0]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let resp = post(&c).await.unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let digest = ocikit_digest::Digest::sha256(b"x");
    let resp = a
        .put(format!("{}{}", s.base, with_digest(&opened[1], &digest)))
        .body(&b"x"[..])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(post(&a).await.unwrap().status(), StatusCode::ACCEPTED);
    s.stop().await;
}

/// Sessions are counted per user when the request carries a user's credentials, whatever
/// address they come from.
#[tokio::test]
async fn upload_sessions_of_a_user_are_counted_per_user() {
    let hash = bcrypt::hash("pw", 4).unwrap();
    let mut users = ocikit_registry::Users::new();
    users
        .add_htpasswd(
            &format!("alice:{hash}\nbob:{hash}\n"),
            ocikit_registry::Access::ReadWrite,
            "t",
        )
        .unwrap();
    let config = Config::default()
        .users(Some(users))
        .limits(limits().max_upload_sessions(100, 2));
    let s = server_with(Backend::Memory, config).await;
    let post = |from: u8, user: &str| {
        client_from(from)
            .post(format!("{}/v2/app/blobs/uploads/", s.base))
            .basic_auth(user, Some("pw"))
            .send()
    };
    assert_eq!(
        post(2, "alice").await.unwrap().status(),
        StatusCode::ACCEPTED
    );
    assert_eq!(
        post(3, "alice").await.unwrap().status(),
        StatusCode::ACCEPTED
    );
    let resp = post(4, "alice").await.unwrap();
    assert_error(resp, StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS").await;
    assert_eq!(post(2, "bob").await.unwrap().status(), StatusCode::ACCEPTED);
    s.stop().await;
}

/// A session past its TTL is removed without waiting for the sweep (five minutes away),
/// chunks and all, and no longer counts against its client.
#[tokio::test]
async fn expired_sessions_go_without_waiting_for_the_sweep() {
    let config = Config::default()
        .upload_ttl(Duration::from_millis(500))
        .limits(limits().max_upload_sessions(100, 1));
    let (s, uploads) = fs_server(config).await;
    let empty = upload_files(&uploads).await;
    let loc = s.start_upload("app").await;
    let resp = s
        .request(Method::PATCH, &loc)
        .body(vec![1u8; 1000])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert!(upload_files(&uploads).await >= empty + 2);
    let refused = s.send(Method::POST, "/v2/app/blobs/uploads/").await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let deadline = Instant::now() + Duration::from_secs(10);
    while upload_files(&uploads).await > empty {
        assert!(
            Instant::now() < deadline,
            "the expired session is still there"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let resp = s.send(Method::POST, "/v2/app/blobs/uploads/").await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    s.stop().await;
}

/// A session may hold only so many chunks.
#[tokio::test]
async fn a_session_holds_at_most_max_upload_chunks() {
    let config = Config::default().limits(limits().max_upload_chunks(3));
    let (s, uploads) = fs_server(config).await;
    let loc = s.start_upload("app").await;
    for i in 0..3u64 {
        let resp = s
            .request(Method::PATCH, &loc)
            .header("content-range", format!("{}-{}", i * 10, i * 10 + 9))
            .body(vec![1u8; 10])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
    }
    let before = upload_files(&uploads).await;
    let resp = s
        .request(Method::PATCH, &loc)
        .header("content-range", "30-39")
        .body(vec![1u8; 10])
        .send()
        .await
        .unwrap();
    assert_error(resp, StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID").await;
    assert_eq!(upload_files(&uploads).await, before);
    // The upload can still be finished.
    let digest = ocikit_digest::Digest::sha256(&[1u8; 30]);
    let resp = s
        .request(Method::PUT, &with_digest(&loc, &digest))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    s.stop().await;
}

/// Reads and writes past a client's bucket get 429 with `Retry-After`; other clients and
/// the other class are not affected; the bucket refills.
#[tokio::test]
async fn requests_past_a_clients_rate_get_429() {
    let config = Config::default().limits(limits().rates(
        Some(Rate::new(5.0, 5)),
        Some(Rate::new(2.0, 2)),
        None,
    ));
    let s = server_with(Backend::Memory, config).await;
    let (greedy, other) = (client_from(2), client_from(3));
    let get = |client: &reqwest::Client| client.get(format!("{}/v2/", s.base)).send();
    for _ in 0..5 {
        assert_eq!(get(&greedy).await.unwrap().status(), StatusCode::OK);
    }
    let resp = get(&greedy).await.unwrap();
    assert_eq!(header(&resp, "retry-after"), "1");
    assert_error(resp, StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS").await;
    assert_eq!(get(&other).await.unwrap().status(), StatusCode::OK);
    // Writes have their own bucket.
    let post = || {
        greedy
            .post(format!("{}/v2/app/blobs/uploads/", s.base))
            .send()
    };
    assert_eq!(post().await.unwrap().status(), StatusCode::ACCEPTED);
    assert_eq!(post().await.unwrap().status(), StatusCode::ACCEPTED);
    assert_eq!(
        post().await.unwrap().status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    // /healthz is never limited.
    let resp = greedy
        .get(format!("{}/healthz", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(get(&greedy).await.unwrap().status(), StatusCode::OK);
    s.stop().await;
}

/// Wrong passwords from one client use up its failed-login tokens; then its requests with
/// credentials get 429 before any bcrypt check, while the right password from elsewhere
/// still works, and a right password gives its token back.
#[tokio::test]
async fn failed_logins_are_refused_before_bcrypt_once_the_budget_is_spent() {
    let hash = bcrypt::hash("right", 4).unwrap();
    let mut users = ocikit_registry::Users::new();
    users
        .add_htpasswd(
            &format!("alice:{hash}\n"),
            ocikit_registry::Access::ReadWrite,
            "t",
        )
        .unwrap();
    let config = Config::default().users(Some(users)).limits(limits().rates(
        None,
        None,
        Some(Rate::new(0.1, 3)),
    ));
    let s = server_with(Backend::Memory, config).await;
    let (attacker, honest) = (client_from(2), client_from(3));
    let get = |client: &reqwest::Client, password: &str| {
        client
            .get(format!("{}/v2/", s.base))
            .basic_auth("alice", Some(password))
            .send()
    };
    // Right passwords never use the budget up.
    for _ in 0..5 {
        assert_eq!(
            get(&attacker, "right").await.unwrap().status(),
            StatusCode::OK
        );
    }
    for _ in 0..3 {
        assert_eq!(
            get(&attacker, "wrong").await.unwrap().status(),
            StatusCode::UNAUTHORIZED
        );
    }
    let started = Instant::now();
    for _ in 0..50 {
        let resp = get(&attacker, "wrong").await.unwrap();
        assert!(header(&resp, "retry-after").parse::<u64>().unwrap() >= 1);
        assert_error(resp, StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS").await;
    }
    // Fifty refusals without bcrypt take no time at all.
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(
        get(&honest, "right").await.unwrap().status(),
        StatusCode::OK
    );
    // Requests without credentials are not failed logins.
    let resp = attacker
        .get(format!("{}/v2/", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    s.stop().await;
}

/// A chunk whose `Content-Range` lies about a chunked body, a chunked body past the upload
/// limit, and a chunked body that never ends are cut off, and leave nothing behind.
#[tokio::test]
async fn lying_and_endless_chunked_bodies_leave_nothing_behind() {
    let config = Config::default().max_upload_size(64 << 10).limits(
        limits()
            .min_transfer_rate(10_000, Duration::from_millis(500))
            .keep_alive_timeout(Duration::from_secs(30)),
    );
    let (s, uploads) = fs_server(config).await;
    let loc = s.start_upload("app").await;
    let before = upload_files(&uploads).await;
    let chunked = |size: usize| {
        let mut body = format!("{size:x}\r\n").into_bytes();
        body.extend(std::iter::repeat_n(b'z', size));
        body.extend_from_slice(b"\r\n");
        body
    };
    // Content-Range says 100 bytes, the chunked body has 1000.
    let mut request = format!(
        "PATCH {loc} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Range: 0-99\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    request.extend(chunked(1000));
    request.extend_from_slice(b"0\r\n\r\n");
    let got = ocikit_testkit::http::send_raw_async(&s.base[7..], &request).await;
    let got = String::from_utf8_lossy(&got).into_owned();
    assert!(got.starts_with("HTTP/1.1 400"), "{got}");
    assert!(got.contains("SIZE_INVALID"), "{got}");
    // Content-Length and chunked at once: hyper frames by the chunks; the length is not
    // believed (nor kept for the handler).
    let mut request = format!(
        "PATCH {loc} HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nTransfer-Encoding: chunked\r\nContent-Range: 0-9\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    request.extend(chunked(5000));
    request.extend_from_slice(b"0\r\n\r\n");
    let got = ocikit_testkit::http::send_raw_async(&s.base[7..], &request).await;
    let got = String::from_utf8_lossy(&got).into_owned();
    assert!(got.starts_with("HTTP/1.1 400"), "{got}");
    // A chunked body past max_upload_size.
    let mut conn = connect_from(&s, 2).await;
    conn.write_all(
        format!("PATCH {loc} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    for _ in 0..100 {
        if conn.write_all(&chunked(8 << 10)).await.is_err() {
            break;
        }
        let mut buf = [0u8; 2048];
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(20), conn.read(&mut buf)).await
        {
            answer.extend_from_slice(&buf[..n]);
            break;
        }
    }
    let answer = String::from_utf8_lossy(&answer).into_owned();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    // A chunked body that keeps coming, slowly, forever.
    let mut conn = connect_from(&s, 2).await;
    conn.write_all(
        format!("PATCH {loc} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    while started.elapsed() < Duration::from_secs(10) {
        if conn.write_all(&chunked(10)).await.is_err() {
            break;
        }
        let mut buf = [0u8; 2048];
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(100), conn.read(&mut buf)).await
        {
            answer.extend_from_slice(&buf[..n]);
            break;
        }
    }
    let answer = String::from_utf8_lossy(&answer).into_owned();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    // Nothing of any of them was kept.
    assert_eq!(upload_files(&uploads).await, before);
    let resp = s.send(Method::GET, &loc).await;
    assert_eq!(header(&resp, "range"), "0-0");
    s.stop().await;
}

/// With the default limits, an honest client's pushes and pulls pass: no limit is near.
#[tokio::test]
async fn honest_traffic_passes_the_default_limits() {
    let s = server(Backend::Fs).await;
    for i in 0..50u8 {
        let layer = data(10_000, i);
        let config = data(100, i.wrapping_add(1));
        let (l, c) = (
            s.push_blob("app", &layer).await,
            s.push_blob("app", &config).await,
        );
        let manifest = image_manifest((&c, config.len()), &[(&l, layer.len())]);
        let resp = s
            .put_manifest("app", &format!("v{i}"), MANIFEST, &manifest)
            .await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        let resp = s
            .send(Method::GET, &format!("/v2/app/manifests/v{i}"))
            .await;
        assert_eq!(resp.status(), StatusCode::OK);
        let resp = s.send(Method::GET, &format!("/v2/app/blobs/{l}")).await;
        assert_eq!(resp.bytes().await.unwrap().len(), layer.len());
    }
    s.stop().await;
}
