//! Raw HTTP/1.1 over TCP to a loopback address: the exact bytes a test chooses (paths that
//! clients would normalise, truncated bodies, bad framing), and the response read back and
//! split into status, headers and body.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long a read waits before the test fails (a server that never answers).
pub const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// A parsed response.
#[derive(Clone, Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Header names in lowercase, values trimmed, in order.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked when the response was chunked.
    pub body: Vec<u8>,
}

impl Response {
    /// The first header of that (lowercase) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A request head with `Host`, `Connection: close`, `Content-Length: len` and `headers`.
pub fn head(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    len: usize,
) -> String {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {len}\r\n"
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    head
}

/// A connection to `addr` with [`READ_TIMEOUT`] on reads.
pub fn connect(addr: &str) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    stream
}

/// Writes `request` as is and reads until the server closes; the raw response, or the I/O
/// error (a server not listening yet).
pub fn try_send_raw(addr: &str, request: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    stream.write_all(request)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    Ok(response)
}

/// [`try_send_raw`], failing the test on an I/O error.
pub fn send_raw(addr: &str, request: &[u8]) -> Vec<u8> {
    try_send_raw(addr, request).unwrap_or_else(|e| panic!("raw request to {addr}: {e}"))
}

/// One request with `Connection: close`; `None` when nothing answers (for polling a server
/// that is starting) or the answer is not HTTP.
pub fn try_request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> Option<Response> {
    let mut request = head(addr, method, path, headers, body.len()).into_bytes();
    request.extend_from_slice(body);
    parse_response(&try_send_raw(addr, &request).ok()?)
}

/// [`try_request`], failing the test when nothing or no HTTP answers.
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> Response {
    try_request(addr, method, path, headers, body)
        .unwrap_or_else(|| panic!("no HTTP answer from {addr} to {method} {path}"))
}

/// Reads a whole response from `stream` (until the server closes it).
pub fn read_response(stream: &mut impl Read) -> Response {
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read the response");
    parse_response(&raw)
        .unwrap_or_else(|| panic!("not an HTTP response: {:?}", String::from_utf8_lossy(&raw)))
}

/// [`send_raw`] on a tokio socket, for tests whose server runs in the same runtime; the
/// connection stays open for writing, and a server that never answers fails the test.
pub async fn send_raw_async(addr: &str, request: &[u8]) -> Vec<u8> {
    let mut conn = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    conn.write_all(request).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(READ_TIMEOUT, conn.read_to_end(&mut response))
        .await
        .expect("the server answered instead of waiting forever")
        .unwrap();
    response
}

/// A raw response split into status, headers and body (de-chunked); `None` if it has no
/// status line and complete head.
pub fn parse_response(raw: &[u8]) -> Option<Response> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    if !status_line.starts_with("HTTP/1.") {
        return None;
    }
    let status = status_line.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body)?;
    }
    Some(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = raw.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&raw[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        raw = &raw[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(raw.get(..size)?);
        raw = raw.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A one-shot server that records the request and answers `reply`.
    fn answer_once(reply: &'static [u8]) -> (String, std::thread::JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut got = vec![0; 4096];
            let n = conn.read(&mut got).unwrap();
            got.truncate(n);
            conn.write_all(reply).unwrap();
            got
        });
        (addr, server)
    }

    #[test]
    fn requests_go_out_as_written_and_chunked_answers_come_back_whole() {
        let (addr, server) = answer_once(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n",
        );
        let response = request(&addr, "PUT", "/v2/../x", &[("X-B", "2".into())], b"hi");
        assert_eq!(response.status, 200);
        assert_eq!(response.header("x-a"), Some("1"));
        assert_eq!(response.body, b"abcde");
        let sent = String::from_utf8(server.join().unwrap()).unwrap();
        assert!(sent.starts_with("PUT /v2/../x HTTP/1.1\r\n"), "{sent}");
        assert!(sent.contains("\r\nContent-Length: 2\r\n"), "{sent}");
        assert!(sent.contains("\r\nX-B: 2\r\n"), "{sent}");
        assert!(sent.ends_with("\r\n\r\nhi"), "{sent}");
    }

    #[test]
    fn what_is_not_http_is_refused() {
        assert!(parse_response(b"SSH-2.0-x\r\n\r\n").is_none());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n").is_none());
        let bad_chunks = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
        assert!(parse_response(bad_chunks).is_none());
        let free = crate::free_port();
        assert!(try_request(&format!("127.0.0.1:{free}"), "GET", "/", &[], b"").is_none());
    }
}
