//! Who may do what: basic-auth users (read-write and pull-only), anonymous pulls, read-only
//! mode, the health endpoint, and HTTPS.

use std::sync::Arc;

use base64::Engine as _;
use ocikit_registry::{Access, Config, Registry, TlsConfig, Users};
use ocikit_store::{FsStore, MemoryStore, Store, StoreExt};
use reqwest::{Method, StatusCode};

use crate::{BACKENDS, Server, assert_error, data, header, server_with, with_digest};

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// alice may push, bob may only pull (bcrypt cost 4 keeps the tests quick).
fn users() -> Users {
    let mut users = Users::new();
    let alice = bcrypt::hash("alice-pw", 4).unwrap();
    let bob = bcrypt::hash("bob-pw", 4).unwrap();
    users
        .add_htpasswd(&format!("alice:{alice}\n"), Access::ReadWrite, "rw")
        .unwrap();
    users
        .add_htpasswd(&format!("bob:{bob}\n"), Access::Read, "ro")
        .unwrap();
    users
}

async fn push_as(server: &Server, auth: &str, name: &str, bytes: &[u8]) -> reqwest::Response {
    let digest = ocikit_digest::Digest::sha256(bytes);
    server
        .request(
            Method::POST,
            &with_digest(&format!("/v2/{name}/blobs/uploads/"), &digest),
        )
        .header("authorization", auth)
        .header("content-type", "application/octet-stream")
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn users_must_authenticate_and_pull_only_users_cannot_push() {
    for backend in BACKENDS {
        let server = server_with(backend, Config::default().users(Some(users()))).await;
        // No credentials: a challenge, on the base endpoint as on every other.
        let resp = server.send(Method::GET, "/v2/").await;
        assert_eq!(
            header(&resp, "www-authenticate"),
            r#"Basic realm="ocikit""#,
            "{backend:?}"
        );
        assert_error(resp, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
        for auth in [
            basic("alice", "wrong"),
            basic("carol", "alice-pw"),
            "Bearer alice-pw".to_owned(),
            "Basic not-base64!".to_owned(),
        ] {
            let resp = server
                .request(Method::GET, "/v2/")
                .header("authorization", &auth)
                .send()
                .await
                .unwrap();
            assert_error(resp, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
            let resp = push_as(&server, &auth, "app", b"sneaky").await;
            assert_error(resp, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
        }
        let bytes = data(10_000, 3);
        let resp = push_as(&server, &basic("alice", "alice-pw"), "app", &bytes).await;
        assert_eq!(resp.status(), StatusCode::CREATED, "{backend:?}");
        let blob = header(&resp, "location");

        // bob pulls, twice (the second from the remembered verification), but cannot push,
        // start an upload or delete; none of it leaves anything behind.
        for _ in 0..2 {
            let resp = server
                .request(Method::GET, &blob)
                .header("authorization", basic("bob", "bob-pw"))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
            assert_eq!(resp.bytes().await.unwrap(), bytes);
        }
        let resp = push_as(&server, &basic("bob", "bob-pw"), "app", b"bob's").await;
        assert_error(resp, StatusCode::FORBIDDEN, "DENIED").await;
        let resp = server
            .request(Method::DELETE, &blob)
            .header("authorization", basic("bob", "bob-pw"))
            .send()
            .await
            .unwrap();
        assert_error(resp, StatusCode::FORBIDDEN, "DENIED").await;
        let resp = server
            .request(Method::POST, "/v2/app/blobs/uploads/")
            .header("authorization", basic("bob", "bob-pw"))
            .send()
            .await
            .unwrap();
        assert_error(resp, StatusCode::FORBIDDEN, "DENIED").await;
        assert!(
            server
                .registry
                .upload_store()
                .list_documents("sessions")
                .await
                .unwrap()
                .is_empty()
        );
        let resp = server
            .request(Method::GET, &blob)
            .header("authorization", basic("alice", "alice-pw"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "bob's delete did nothing");
        // The health endpoint needs no credentials.
        assert_eq!(
            server.send(Method::GET, "/healthz").await.status(),
            StatusCode::OK
        );
        server.stop().await;
    }
}

#[tokio::test]
async fn anonymous_reads_pull_but_never_push_and_bad_credentials_still_fail() {
    let config = Config::default().users(Some(users())).anonymous_read(true);
    let server = server_with(BACKENDS[0], config).await;
    let bytes = data(5_000, 9);
    let resp = push_as(&server, &basic("alice", "alice-pw"), "pub", &bytes).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let blob = header(&resp, "location");
    let resp = server.send(Method::GET, &blob).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().await.unwrap(), bytes);
    assert_eq!(
        server.send(Method::HEAD, &blob).await.status(),
        StatusCode::OK
    );
    let resp = server.send(Method::POST, "/v2/pub/blobs/uploads/").await;
    assert_error(resp, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    // Credentials sent are checked even where none are needed: `docker login` relies on it.
    let resp = server
        .request(Method::GET, "/v2/")
        .header("authorization", basic("alice", "nope"))
        .send()
        .await
        .unwrap();
    assert_error(resp, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    server.stop().await;
}

/// skopeo (containers/image) pings `GET /v2/` first and sends credentials only if that
/// answers with a challenge; a 200 there locks it out of pushing. So the base endpoint
/// challenges anonymous requests even when anonymous pulls are allowed, as Distribution
/// does, and everything a pull needs still answers without credentials (also to the empty
/// `Basic` pair such clients send after a challenge when they have no credentials).
#[tokio::test]
async fn anonymous_read_challenges_the_base_endpoint_but_serves_pulls() {
    let config = Config::default().users(Some(users())).anonymous_read(true);
    let server = server_with(BACKENDS[0], config).await;
    let alice = basic("alice", "alice-pw");
    let layer = data(3_000, 4);
    let resp = push_as(&server, &alice, "pub", &layer).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let resp = push_as(&server, &alice, "pub", b"{}").await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let layer_digest = ocikit_digest::Digest::sha256(&layer);
    let config_digest = ocikit_digest::Digest::sha256(b"{}");
    let manifest = crate::image_manifest((&config_digest, 2), &[(&layer_digest, layer.len())]);
    let resp = server
        .request(Method::PUT, "/v2/pub/manifests/v1")
        .header("authorization", &alice)
        .header("content-type", crate::MANIFEST)
        .body(manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let manifest_digest = ocikit_digest::Digest::sha256(&manifest);

    for method in [Method::GET, Method::HEAD] {
        let resp = server.send(method.clone(), "/v2/").await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{method}");
        assert_eq!(header(&resp, "www-authenticate"), r#"Basic realm="ocikit""#);
    }
    for who in [&alice, &basic("bob", "bob-pw")] {
        let resp = server
            .request(Method::GET, "/v2/")
            .header("authorization", who)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
    }
    let empty_pair = basic("", "");
    let reads = [
        (Method::GET, "/v2/pub/manifests/v1".to_owned()),
        (Method::HEAD, "/v2/pub/manifests/v1".to_owned()),
        (Method::GET, format!("/v2/pub/manifests/{manifest_digest}")),
        (Method::GET, format!("/v2/pub/blobs/{layer_digest}")),
        (Method::HEAD, format!("/v2/pub/blobs/{layer_digest}")),
        (Method::GET, "/v2/pub/tags/list".to_owned()),
        (Method::GET, format!("/v2/pub/referrers/{manifest_digest}")),
    ];
    for (method, path) in &reads {
        for auth in [None, Some(&empty_pair)] {
            let mut request = server.request(method.clone(), path);
            if let Some(auth) = auth {
                request = request.header("authorization", auth);
            }
            let resp = request.send().await.unwrap();
            assert_eq!(resp.status(), StatusCode::OK, "{method} {path} ({auth:?})");
        }
    }
    // The empty pair is anonymous, not a user: it pushes no more than no credentials do.
    let resp = push_as(&server, &empty_pair, "pub", b"anonymous").await;
    assert_error(resp, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    let resp = server.send(Method::POST, "/v2/pub/blobs/uploads/").await;
    assert_error(resp, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    server.stop().await;
}

#[tokio::test]
async fn read_only_refuses_every_write_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let open = |read_only: bool| {
        let root = dir.path().to_owned();
        async move {
            let store = FsStore::open(root.join("content")).await.unwrap();
            let uploads = FsStore::open(root.join("uploads")).await.unwrap();
            let config = Config::default().read_only(read_only);
            Registry::new(Arc::new(store), Arc::new(uploads), config).unwrap()
        }
    };
    let writable = Server::start(open(false).await).await;
    let bytes = data(4096, 1);
    let digest = writable.push_blob("app", &bytes).await;
    let config = (ocikit_digest::Digest::sha256(b"{}"), 2usize);
    writable.push_blob("app", b"{}").await;
    let manifest = crate::image_manifest((&config.0, config.1), &[(&digest, bytes.len())]);
    let resp = writable
        .put_manifest("app", "v1", crate::MANIFEST, &manifest)
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let session = writable.start_upload("app").await;
    writable.stop().await;

    let server = Server::start(open(true).await).await;
    let before = server
        .registry
        .store()
        .list_documents("_registry")
        .await
        .unwrap();
    let blob = format!("/v2/app/blobs/{digest}");
    for (method, path) in [
        (Method::POST, "/v2/app/blobs/uploads/".to_owned()),
        (
            Method::POST,
            format!("/v2/app/blobs/uploads/?digest={digest}"),
        ),
        (Method::PATCH, session.clone()),
        (Method::PUT, with_digest(&session, &digest)),
        (Method::DELETE, session.clone()),
        (Method::PUT, "/v2/app/manifests/v2".to_owned()),
        (Method::DELETE, "/v2/app/manifests/v1".to_owned()),
        (Method::DELETE, blob.clone()),
    ] {
        let resp = server
            .request(method.clone(), &path)
            .header("content-type", crate::MANIFEST)
            .body(manifest.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(header(&resp, "allow"), "GET, HEAD", "{method} {path}");
        assert_error(resp, StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED").await;
    }
    let after = server
        .registry
        .store()
        .list_documents("_registry")
        .await
        .unwrap();
    assert_eq!(before, after, "a refused write changed the metadata");
    // Pulls go on.
    let resp = server.send(Method::GET, "/v2/app/manifests/v1").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().await.unwrap(), manifest);
    let resp = server.send(Method::GET, &blob).await;
    assert_eq!(resp.bytes().await.unwrap(), bytes);
    assert_eq!(
        server.send(Method::GET, &session).await.status(),
        StatusCode::NO_CONTENT,
        "upload status is a read"
    );
    server.stop().await;
}

#[tokio::test]
async fn health_says_whether_the_stores_answer() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::open(dir.path().join("content")).await.unwrap();
    let uploads = FsStore::open(dir.path().join("uploads")).await.unwrap();
    let registry = Registry::new(Arc::new(store), Arc::new(uploads), Config::default()).unwrap();
    let server = Server::start(registry).await;
    let resp = server.send(Method::GET, "/healthz").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.text().await.unwrap(), r#"{"status":"ok"}"#);
    assert_eq!(
        server.send(Method::HEAD, "/healthz").await.status(),
        StatusCode::OK
    );
    // A store that cannot answer: where its metadata directory should be lies a file.
    std::fs::write(dir.path().join("content/_registry"), b"not a directory").unwrap();
    let resp = server.send(Method::GET, "/healthz").await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    server.stop().await;
}

#[test]
fn users_refuse_htpasswd_files_that_are_not_bcrypt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("htpasswd");
    std::fs::write(&path, "alice:$apr1$salt$hash\n").unwrap();
    let err = Users::new().load_htpasswd(&path, Access::Read).unwrap_err();
    assert!(
        matches!(err, ocikit_registry::Error::Htpasswd { line: 1, .. }),
        "{err:?}"
    );
    let err = Users::new()
        .load_htpasswd(&dir.path().join("missing"), Access::Read)
        .unwrap_err();
    assert!(
        matches!(err, ocikit_registry::Error::ReadFile { .. }),
        "{err:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// HTTPS

struct Pki {
    dir: tempfile::TempDir,
    cert_der: rustls_pki_types::CertificateDer<'static>,
}

/// A self-signed certificate for 127.0.0.1 and localhost, as PEM files.
fn pki() -> Pki {
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    let cert = params.self_signed(&key).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).unwrap();
    Pki {
        cert_der: cert.der().clone(),
        dir,
    }
}

/// A GET over TLS trusting only `cert`, with hyper's client on a rustls stream.
async fn https_get(
    addr: std::net::SocketAddr,
    cert: &rustls_pki_types::CertificateDer<'static>,
    path: &str,
) -> Result<(u16, Vec<u8>), String> {
    use http_body_util::BodyExt as _;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let request = hyper::Request::get(path)
        .header("host", addr.to_string())
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, body.to_vec()))
}

#[tokio::test]
async fn serves_https_and_a_silent_client_does_not_hold_up_others() {
    let pki = self::pki();
    let tls = TlsConfig::from_pem_files(
        &pki.dir.path().join("cert.pem"),
        &pki.dir.path().join("key.pem"),
    )
    .unwrap();
    let registry = Registry::new(
        Arc::new(MemoryStore::new()),
        Arc::new(MemoryStore::new()),
        Config::default(),
    )
    .unwrap();
    let bytes = data(70_000, 5);
    let digest = registry.store().put_bytes(&bytes).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = registry.clone();
    let task = tokio::spawn(async move {
        serving
            .serve_tls(listener, &tls, async {
                stopped.await.ok();
            })
            .await
    });
    // A client that connects and never says hello.
    let _silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (status, body) = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        https_get(addr, &pki.cert_der, "/v2/"),
    )
    .await
    .expect("the handshake was not held up by the silent client")
    .unwrap();
    assert_eq!((status, body), (200, b"{}".to_vec()));
    let (status, _) = https_get(addr, &pki.cert_der, &format!("/v2/app/blobs/{digest}"))
        .await
        .unwrap();
    assert_eq!(status, 404, "the blob is not linked into `app`");

    // Plain HTTP on the TLS port gets no HTTP answer.
    let plain = crate::http_client();
    assert!(
        plain
            .get(format!("http://{addr}/v2/"))
            .send()
            .await
            .is_err()
    );
    // A client that does not trust the certificate is refused in the handshake.
    let other = self::pki();
    assert!(https_get(addr, &other.cert_der, "/v2/").await.is_err());

    stop.send(()).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[test]
fn tls_configurations_refuse_unusable_files() {
    let pki = pki();
    let dir = pki.dir.path();
    std::fs::write(dir.join("empty.pem"), "").unwrap();
    std::fs::write(
        dir.join("garbage.pem"),
        "-----BEGIN CERTIFICATE-----\n!!!\n",
    )
    .unwrap();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let other = pki_key_only();
    for (c, k, what) in [
        (dir.join("empty.pem"), key.clone(), "certificate chain"),
        (dir.join("garbage.pem"), key.clone(), "certificate chain"),
        (cert.clone(), dir.join("empty.pem"), "private key"),
        (cert.clone(), cert.clone(), "private key"),
    ] {
        match TlsConfig::from_pem_files(&c, &k) {
            Err(ocikit_registry::Error::Pem { what: got, .. }) => assert_eq!(got, what),
            other => panic!("{c:?} {k:?}: {other:?}"),
        }
    }
    match TlsConfig::from_pem_files(&cert, &dir.join("missing.pem")) {
        Err(ocikit_registry::Error::ReadFile { .. }) => {}
        other => panic!("{other:?}"),
    }
    // A key that is not the certificate's.
    std::fs::write(dir.join("other-key.pem"), other).unwrap();
    match TlsConfig::from_pem_files(&cert, &dir.join("other-key.pem")) {
        Err(ocikit_registry::Error::Tls(_)) => {}
        other => panic!("{other:?}"),
    }
}

fn pki_key_only() -> String {
    rcgen::KeyPair::generate().unwrap().serialize_pem()
}
