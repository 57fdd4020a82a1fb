//! SIGKILL in the middle of an upload (issue 7): after a restart on the same directory the
//! session reports what was durably received (whole chunks, at least what was
//! acknowledged), the upload resumes and finishes, and no partial blob is ever visible under
//! the digest; a fresh monolithic upload of the same blob works too.

use std::io::Write;
use std::time::Duration;

use ocikit::digest::Digest;

use ocikit_testkit::http;
use ocikit_testkit::prng::bytes;

use crate::registry::{Serve, blob_status, push_blob};

const BLOB: usize = 64 << 20;
const CHUNK: usize = 4 << 20;

/// Where the server dies.
#[derive(Clone, Copy, Debug)]
enum KillPoint {
    /// Halfway through the body of chunk `n`.
    MidBody(usize),
    /// After chunk `n`'s body was sent in full, before its response was read.
    BeforeReply(usize),
    /// After chunk `n` was acknowledged, before the next request.
    Between(usize),
}

/// Sends PATCH chunks from `from` up to the kill point, then SIGKILLs the server; returns
/// the bytes acknowledged (202) and the bytes sent.
fn upload_until_killed(
    s: Serve,
    location: &str,
    blob: &[u8],
    from: usize,
    kill: KillPoint,
) -> (usize, usize) {
    let (last, mid) = match kill {
        KillPoint::MidBody(n) => (n, 1),
        KillPoint::BeforeReply(n) => (n, 2),
        KillPoint::Between(n) => (n, 3),
    };
    let mut acked = from;
    let mut sent = from;
    for n in from / CHUNK..=last {
        let start = n * CHUNK;
        let chunk = &blob[start..start + CHUNK];
        let mut stream = s.connect();
        stream
            .write_all(
                http::head(
                    &s.addr,
                    "PATCH",
                    location,
                    &[
                        ("Content-Type", "application/octet-stream".into()),
                        ("Content-Range", format!("{start}-{}", start + CHUNK - 1)),
                    ],
                    CHUNK,
                )
                .as_bytes(),
            )
            .unwrap();
        if n == last && mid == 1 {
            stream.write_all(&chunk[..CHUNK / 2]).unwrap();
            stream.flush().unwrap();
            std::thread::sleep(Duration::from_millis(200));
            s.kill9();
            return (acked, sent + CHUNK / 2);
        }
        stream.write_all(chunk).unwrap();
        sent += CHUNK;
        if n == last && mid == 2 {
            s.kill9();
            return (acked, sent);
        }
        let reply = http::read_response(&mut stream);
        assert_eq!(
            reply.status,
            202,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        assert_eq!(
            reply.header("range"),
            Some(format!("0-{}", start + CHUNK - 1).as_str())
        );
        acked += CHUNK;
    }
    s.kill9();
    (acked, sent)
}

#[test]
fn sigkill_mid_upload_then_resume_and_no_partial_blob_is_visible() {
    let blob = bytes(7, BLOB);
    let digest = Digest::sha256(&blob);
    let kills = [
        KillPoint::MidBody(0),
        KillPoint::MidBody(5),
        KillPoint::BeforeReply(3),
        KillPoint::Between(9),
    ];
    for (i, kill) in kills.into_iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("registry");
        let name = format!("crash/k{i}");
        let s = Serve::start(&root, &[]);
        let started = s.request("POST", &format!("/v2/{name}/blobs/uploads/"), &[], b"");
        assert_eq!(started.status, 202);
        let location = started.header("location").unwrap().to_owned();
        let (acked, sent) = upload_until_killed(s, &location, &blob, 0, kill);

        let s = Serve::start(&root, &[]);
        // Nothing is visible under the digest before the upload finishes.
        assert_eq!(blob_status(&s, &name, &digest), 404, "{kill:?}");
        assert!(!root.join(digest.blob_path()).exists(), "{kill:?}");
        let status = s.request("GET", &location, &[], b"");
        let resume_at = match status.status {
            204 => {
                let range = status.header("range").unwrap();
                let end: usize = range.strip_prefix("0-").unwrap().parse().unwrap();
                let received = if end == 0 { 0 } else { end + 1 };
                // What the server says it holds: at least what it acknowledged, at most what
                // was sent, and whole chunks only (a torn chunk is never counted).
                assert!(
                    received >= acked && received <= sent,
                    "{kill:?}: {received} of {acked}..{sent}"
                );
                assert_eq!(received % CHUNK, 0, "{kill:?}");
                received
            }
            // The session may also be gone, with the spec's error.
            404 => {
                let body = String::from_utf8_lossy(&status.body).into_owned();
                assert!(body.contains("BLOB_UPLOAD_UNKNOWN"), "{body}");
                assert_eq!(acked, 0, "{kill:?}: an acknowledged session was lost");
                0
            }
            other => panic!("{kill:?}: upload status {other}"),
        };
        // Resume from where the server is, then a closing PUT with no body.
        for start in (resume_at..BLOB).step_by(CHUNK) {
            let reply = s.request(
                "PATCH",
                &location,
                &[
                    ("Content-Type", "application/octet-stream".into()),
                    ("Content-Range", format!("{start}-{}", start + CHUNK - 1)),
                ],
                &blob[start..start + CHUNK],
            );
            assert_eq!(reply.status, 202, "{kill:?}");
            assert_eq!(blob_status(&s, &name, &digest), 404, "{kill:?}");
        }
        let done = s.request("PUT", &format!("{location}?digest={digest}"), &[], b"");
        assert_eq!(
            done.status,
            201,
            "{kill:?}: {}",
            String::from_utf8_lossy(&done.body)
        );
        let got = s.request("GET", &format!("/v2/{name}/blobs/{digest}"), &[], b"");
        assert_eq!(got.status, 200);
        assert_eq!(got.body.len(), BLOB);
        assert_eq!(Digest::sha256(&got.body), digest, "{kill:?}");
        assert_eq!(
            got.header("docker-content-digest"),
            Some(digest.to_string().as_str())
        );

        // After the kill, a fresh monolithic upload of the same blob works too (another
        // repository, so the blob is not linked there yet).
        let other = format!("{name}-mono");
        assert_eq!(blob_status(&s, &other, &digest), 404);
        assert_eq!(push_blob(&s, &other, &blob), digest);
        let got = s.request("GET", &format!("/v2/{other}/blobs/{digest}"), &[], b"");
        assert_eq!(Digest::sha256(&got.body), digest);
        s.stop();
    }
}

#[test]
fn sigkill_then_a_fresh_monolithic_upload_of_the_torn_blob() {
    let blob = bytes(9, BLOB / 4);
    let digest = Digest::sha256(&blob);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("registry");
    let s = Serve::start(&root, &[]);
    // A monolithic PUT killed halfway through its body.
    let started = s.request("POST", "/v2/app/blobs/uploads/", &[], b"");
    let location = started.header("location").unwrap().to_owned();
    let mut stream = s.connect();
    stream
        .write_all(
            http::head(
                &s.addr,
                "PUT",
                &format!("{location}?digest={digest}"),
                &[("Content-Type", "application/octet-stream".into())],
                blob.len(),
            )
            .as_bytes(),
        )
        .unwrap();
    stream.write_all(&blob[..blob.len() / 2]).unwrap();
    stream.flush().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    s.kill9();

    let s = Serve::start(&root, &[]);
    assert_eq!(blob_status(&s, "app", &digest), 404);
    assert!(!root.join(digest.blob_path()).exists());
    assert_eq!(push_blob(&s, "app", &blob), digest);
    let got = s.request("GET", &format!("/v2/app/blobs/{digest}"), &[], b"");
    assert_eq!(Digest::sha256(&got.body), digest);
    s.stop();
}
