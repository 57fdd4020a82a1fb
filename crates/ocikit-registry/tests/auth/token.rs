//! Docker token authentication: challenges naming the scope each request needs, ocikit's
//! client and skopeo through the token realm (ES256 and RS256), and hostile tokens refused
//! with a reason.

use ocikit_digest::Digest;
use ocikit_layout::Layout;
use ocikit_registry::{Config, TokenAuth};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::token_server::{ISSUER, SERVICE, Signer, TokenServer, b64, claims, now};
use crate::{MANIFEST, Server, data, header, image_manifest, refused};

const PASSWORDS: &[(&str, &str)] = &[
    ("alice", "alice-pw"),
    ("reader", "reader-pw"),
    ("root", "root-pw"),
];

/// alice pushes and pulls under `team/`, reader pulls there, root lists the catalog and
/// deletes; anonymous tokens pull `public/`.
fn rules() -> Vec<crate::token_server::Rule> {
    vec![
        ("alice", "team/", &["pull", "push"]),
        ("reader", "team/", &["pull"]),
        ("root", "", &["pull", "push", "delete", "catalog"]),
        ("", "public/", &["pull"]),
    ]
}

fn token_auth(realm: &str, public_pem: &str) -> TokenAuth {
    TokenAuth::new(realm, SERVICE, ISSUER, public_pem.as_bytes(), "test key").unwrap()
}

/// The registry behind `tokens`, which verifies with `public_pem`.
async fn registry(tokens: &TokenServer, public_pem: &str) -> Server {
    Server::start(Config::default().token(Some(token_auth(&tokens.realm, public_pem)))).await
}

/// Writes that image into `layout`, tagged `v1`.
async fn fill(layout: &Layout) -> ocikit_digest::oci_spec::image::Descriptor {
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for (len, seed) in [(200_000, 1), (5_000, 2), (10, 3)] {
        let d = layout
            .put_blob("application/vnd.oci.image.layer.v1.tar", &data(len, seed))
            .await
            .unwrap();
        diff_ids.push(d.digest().to_string());
        layers.push(json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": d.digest().to_string(), "size": d.size()
        }));
    }
    let config = json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids}
    });
    let config = layout
        .put_blob(
            "application/vnd.oci.image.config.v1+json",
            &serde_json::to_vec(&config).unwrap(),
        )
        .await
        .unwrap();
    let manifest = json!({
        "schemaVersion": 2, "mediaType": MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config.digest().to_string(), "size": config.size()
        },
        "layers": layers,
    });
    let manifest = layout
        .put_blob(MANIFEST, &serde_json::to_vec(&manifest).unwrap())
        .await
        .unwrap();
    layout.set_tag("v1", &manifest).await.unwrap();
    manifest
}

/// Every 401 names the realm, the service and the scope the request needs.
#[tokio::test]
async fn challenges_carry_the_scope_each_request_needs() {
    let signer = Signer::es256();
    let pem = signer.es256_public_pem();
    let tokens = TokenServer::start(signer, PASSWORDS, rules()).await;
    let server = registry(&tokens, &pem).await;
    let prefix = format!(r#"Bearer realm="{}",service="{SERVICE}""#, tokens.realm);
    let digest = Digest::sha256(b"x");
    for (method, path, scope) in [
        (Method::GET, "/v2/".to_owned(), None),
        (
            Method::GET,
            "/v2/_catalog".to_owned(),
            Some("registry:catalog:*"),
        ),
        (
            Method::GET,
            "/v2/a/b/manifests/v1".to_owned(),
            Some("repository:a/b:pull"),
        ),
        (
            Method::HEAD,
            format!("/v2/a/blobs/{digest}"),
            Some("repository:a:pull"),
        ),
        (
            Method::GET,
            "/v2/a/tags/list".to_owned(),
            Some("repository:a:pull"),
        ),
        (
            Method::PUT,
            "/v2/a/manifests/v1".to_owned(),
            Some("repository:a:pull,push"),
        ),
        (
            Method::POST,
            "/v2/a/blobs/uploads/".to_owned(),
            Some("repository:a:pull,push"),
        ),
        (
            Method::DELETE,
            "/v2/a/manifests/v1".to_owned(),
            Some("repository:a:delete"),
        ),
        (
            Method::DELETE,
            format!("/v2/a/blobs/{digest}"),
            Some("repository:a:delete"),
        ),
        (
            Method::POST,
            format!("/v2/a/blobs/uploads/?mount={digest}&from=b/c"),
            Some("repository:a:pull,push repository:b/c:pull"),
        ),
    ] {
        let resp = server.request(method.clone(), &path).send().await.unwrap();
        let expected = match scope {
            Some(scope) => format!(r#"{prefix},scope="{scope}""#),
            None => prefix.clone(),
        };
        assert_eq!(
            header(&resp, "www-authenticate"),
            expected,
            "{method} {path}"
        );
        if method == Method::HEAD {
            assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        } else {
            refused(resp, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
        }
    }
    // Basic credentials are no token.
    let resp = server
        .request(Method::GET, "/v2/")
        .basic_auth("alice", Some("alice-pw"))
        .send()
        .await
        .unwrap();
    refused(resp, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    // Any valid token opens the base endpoint; the catalog needs its own scope.
    let plain = tokens.signer().sign(&claims("alice", json!([])));
    let resp = server
        .request(Method::GET, "/v2/")
        .bearer_auth(&plain)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = server
        .request(Method::GET, "/v2/_catalog")
        .bearer_auth(&plain)
        .send()
        .await
        .unwrap();
    assert!(
        header(&resp, "www-authenticate")
            .ends_with(r#"scope="registry:catalog:*",error="insufficient_scope""#)
    );
    refused(resp, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    let catalog = tokens.signer().sign(&claims(
        "root",
        json!([{"type": "registry", "name": "catalog", "actions": ["*"]}]),
    ));
    let resp = server
        .request(Method::GET, "/v2/_catalog")
        .bearer_auth(&catalog)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

/// Pushes a blob and a manifest to `repo` with an all-powerful token.
async fn seed(server: &Server, signer: &Signer, repo: &str) -> Digest {
    let token = signer.sign(&claims(
        "root",
        json!([{"type": "repository", "name": repo, "actions": ["pull", "push"]}]),
    ));
    let mut digests = Vec::new();
    for bytes in [data(100, 7), data(2_000, 8)] {
        let digest = Digest::sha256(&bytes);
        let resp = server
            .request(
                Method::POST,
                &format!("/v2/{repo}/blobs/uploads/?digest={digest}"),
            )
            .bearer_auth(&token)
            .header("content-type", "application/octet-stream")
            .body(bytes.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
        digests.push((digest, bytes.len()));
    }
    let manifest = image_manifest(
        (digests[0].0.as_str(), digests[0].1),
        (digests[1].0.as_str(), digests[1].1),
    );
    let resp = server
        .request(Method::PUT, &format!("/v2/{repo}/manifests/v1"))
        .bearer_auth(&token)
        .header("content-type", MANIFEST)
        .body(manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    Digest::sha256(&manifest)
}

/// Hostile tokens are refused with 401, `error="invalid_token"` (or `insufficient_scope`)
/// in the challenge and the reason in the body; none of them reads or writes anything.
#[tokio::test]
async fn hostile_tokens_are_refused_with_a_reason() {
    let signer = Signer::es256();
    let pem = signer.es256_public_pem();
    let tokens = TokenServer::start(signer, PASSWORDS, rules()).await;
    let server = registry(&tokens, &pem).await;
    let signer = tokens.signer();
    seed(&server, signer, "team/app").await;

    let pull =
        json!([{"type": "repository", "name": "team/app", "actions": ["pull", "push", "delete"]}]);
    let good = claims("alice", pull.clone());
    let with = |field: &str, value: serde_json::Value| {
        let mut c = good.clone();
        c[field] = value;
        signer.sign(&c)
    };
    let without = |field: &str| {
        let mut c = good.clone();
        c.as_object_mut().unwrap().remove(field);
        signer.sign(&c)
    };
    let payload = b64(good.to_string().as_bytes());
    let other_key = Signer::es256();
    // HS256 "signed" with the registry's public key: the classic algorithm confusion.
    let hs256 = {
        let input = format!("{}.{payload}", b64(br#"{"alg":"HS256","typ":"JWT"}"#));
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, pem.as_bytes());
        let tag = ring::hmac::sign(&key, input.as_bytes());
        format!("{input}.{}", b64(tag.as_ref()))
    };
    let good_token = signer.sign(&good);
    let (head, rest) = good_token.split_once('.').unwrap();
    let (_, signature) = rest.split_once('.').unwrap();
    let cases: Vec<(&str, String, &str)> = vec![
        ("expired", with("exp", (now() - 3600).into()), "expired"),
        (
            "not yet valid",
            with("nbf", (now() + 3600).into()),
            "not valid yet",
        ),
        ("no exp", without("exp"), "no `exp`"),
        (
            "wrong audience",
            with("aud", "another-registry".into()),
            "audience",
        ),
        ("no audience", without("aud"), "audience"),
        ("wrong issuer", with("iss", "mallory".into()), "issuer"),
        (
            "alg none",
            format!("{}.{payload}.", b64(br#"{"alg":"none","typ":"JWT"}"#)),
            "\"none\"",
        ),
        (
            "alg None with signature",
            format!("{}.{payload}.{signature}", b64(br#"{"alg":"None"}"#)),
            "\"None\"",
        ),
        ("HS256 with the public key", hs256, "\"HS256\""),
        (
            "RS256 header on an ES256 signature",
            signer.sign_with_header(&json!({"alg": "RS256"}), &good),
            "\"RS256\"",
        ),
        ("another key", other_key.sign(&good), "signature"),
        (
            "payload swapped under a good signature",
            format!(
                "{head}.{}.{signature}",
                b64(claims("root", pull.clone()).to_string().as_bytes())
            ),
            "signature",
        ),
        (
            "oversized",
            signer.sign(&json!({"pad": "x".repeat(9000), "iss": ISSUER})),
            "more than 8192",
        ),
        (
            "malformed base64",
            format!("{head}.!!!.{signature}"),
            "base64url",
        ),
        (
            "malformed header JSON",
            format!("{}.{payload}.{signature}", b64(b"{not json")),
            "header",
        ),
        (
            "malformed claims JSON",
            signer.sign_with_header(&json!({"alg": "ES256"}), &json!("just a string")),
            "claims",
        ),
        ("two parts", format!("{head}.{payload}"), "three"),
        (
            "crit",
            signer.sign_with_header(&json!({"alg": "ES256", "crit": ["exp"]}), &good),
            "critical",
        ),
    ];
    let digest = Digest::sha256(&data(2_000, 8));
    for (what, token, reason) in cases {
        for (method, path) in [
            (Method::GET, format!("/v2/team/app/blobs/{digest}")),
            (Method::POST, "/v2/team/app/blobs/uploads/".to_owned()),
            (Method::DELETE, "/v2/team/app/manifests/v1".to_owned()),
        ] {
            let resp = server
                .request(method.clone(), &path)
                .bearer_auth(&token)
                .send()
                .await
                .unwrap();
            assert!(
                header(&resp, "www-authenticate").ends_with(r#"error="invalid_token""#),
                "{what}: {}",
                header(&resp, "www-authenticate")
            );
            let message = refused(resp, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
            assert!(message.contains(reason), "{what} ({method}): {message}");
        }
    }

    // A good token for another repository (and a prefix of this one's name) grants nothing
    // here; pull alone does not push or delete.
    for (access, method, path) in [
        (
            json!([{"type": "repository", "name": "team/other", "actions": ["pull", "push", "delete"]}]),
            Method::GET,
            format!("/v2/team/app/blobs/{digest}"),
        ),
        (
            json!([{"type": "repository", "name": "team", "actions": ["*"]}]),
            Method::GET,
            "/v2/team/app/manifests/v1".to_owned(),
        ),
        (
            json!([{"type": "registry", "name": "team/app", "actions": ["*"]}]),
            Method::GET,
            "/v2/team/app/tags/list".to_owned(),
        ),
        (
            json!([{"type": "repository", "name": "team/app", "actions": ["pull"]}]),
            Method::POST,
            "/v2/team/app/blobs/uploads/".to_owned(),
        ),
        (
            json!([{"type": "repository", "name": "team/app", "actions": ["pull", "push"]}]),
            Method::DELETE,
            "/v2/team/app/manifests/v1".to_owned(),
        ),
        (
            json!([{"type": "repository", "name": "team/app", "actions": ["pull", "push"]}]),
            Method::POST,
            format!("/v2/team/app/blobs/uploads/?mount={digest}&from=team/secret"),
        ),
    ] {
        let token = signer.sign(&claims("alice", access.clone()));
        let resp = server
            .request(method.clone(), &path)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert!(
            header(&resp, "www-authenticate").ends_with(r#"error="insufficient_scope""#),
            "{access} {method} {path}"
        );
        let message = refused(resp, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
        assert!(message.contains("does not grant repository:"), "{message}");
    }

    // Nothing was written or removed by any of it: no upload session, the tag is there.
    let sessions = server
        .registry
        .upload_store()
        .list_documents("sessions")
        .await
        .unwrap();
    assert!(sessions.is_empty(), "{sessions:?}");
    let resp = server
        .request(Method::GET, "/v2/team/app/manifests/v1")
        .bearer_auth(signer.sign(&good))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    // And within the leeway a token just expired still works (clocks disagree a little).
    let resp = server
        .request(Method::GET, "/v2/team/app/manifests/v1")
        .bearer_auth(with("exp", (now() - 20).into()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

/// skopeo copies an OCI layout into the registry with `--dest-creds`, getting its tokens
/// from the realm; it reads the image back, and a user granted pull only cannot push.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_copies_through_the_token_realm() {
    let Some(skopeo) = ocikit_testkit::tool::skopeo() else {
        return;
    };
    // RS256 here (ES256 elsewhere in these tests; both with ocikit's client in the client
    // crate's tests), when openssl can make the RSA key.
    let rs256 = Signer::rs256();
    assert!(rs256.is_some() || !ocikit_testkit::in_ci());
    let (signer, pem) = rs256.unwrap_or_else(|| {
        let signer = Signer::es256();
        let pem = signer.es256_public_pem();
        (signer, pem)
    });
    let tokens = TokenServer::start(signer, PASSWORDS, rules()).await;
    let server = registry(&tokens, &pem).await;
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("src");
    let layout = Layout::create(ocikit_store::FsStore::open(&source).await.unwrap())
        .await
        .unwrap();
    let root = fill(&layout).await;
    let src = format!("oci:{}:v1", source.display());
    let dest = format!("docker://{}/team/app:v1", server.host);
    skopeo
        .ok_async(&[
            "copy",
            "--preserve-digests",
            "--dest-tls-verify=false",
            "--dest-creds",
            "alice:alice-pw",
            &src,
            &dest,
        ])
        .await;
    assert!(
        tokens
            .asked()
            .concat()
            .iter()
            .any(|s| s == "repository:team/app:pull,push"),
        "{:?}",
        tokens.asked()
    );
    let raw = skopeo
        .ok_async(&[
            "inspect",
            "--raw",
            "--tls-verify=false",
            "--creds",
            "reader:reader-pw",
            &dest,
        ])
        .await;
    assert_eq!(
        Digest::sha256(raw.as_bytes()).as_str(),
        root.digest().to_string()
    );

    // reader may pull but not push; without credentials nothing under team/ is reachable.
    let other = format!("docker://{}/team/copy:v1", server.host);
    let output = skopeo.output(&[
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        "reader:reader-pw",
        &src,
        &other,
    ]);
    assert!(!output.status.success());
    let output = skopeo.output(&["inspect", "--raw", "--tls-verify=false", &dest]);
    assert!(!output.status.success());
    let resp = server
        .request(Method::GET, "/v2/team/copy/manifests/v1")
        .bearer_auth(tokens.signer().sign(&claims(
            "root",
            json!([{"type": "repository", "name": "team/copy", "actions": ["pull"]}]),
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

/// The key file is read as `ocikit serve --token-public-key` reads it; keys of another
/// kind are refused with the file's name.
#[test]
fn key_files_are_read_and_bad_ones_refused() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("key.pem");
    let signer = Signer::es256();
    let second = Signer::es256();
    // Two keys (a rotation): tokens of either verify.
    std::fs::write(
        &good,
        format!("{}{}", signer.es256_public_pem(), second.es256_public_pem()),
    )
    .unwrap();
    let auth = TokenAuth::from_key_file("http://r", SERVICE, ISSUER, &good).unwrap();
    for s in [&signer, &second] {
        auth.verify(
            &s.sign(&claims("a", json!([]))),
            std::time::SystemTime::now(),
        )
        .unwrap();
    }
    let private = dir.path().join("private.pem");
    std::fs::write(
        &private,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let err = TokenAuth::from_key_file("http://r", SERVICE, ISSUER, &private).unwrap_err();
    assert!(err.to_string().contains("private.pem"), "{err}");
    let err = TokenAuth::from_key_file("http://r", SERVICE, ISSUER, &dir.path().join("missing"))
        .unwrap_err();
    assert!(
        matches!(err, ocikit_registry::Error::ReadFile { .. }),
        "{err}"
    );
}
