//! ocikit's client through Docker token authentication: a token server (the registry
//! crate's test token server, ES256 and RS256 JWTs signed with keys made in the test) in
//! front of ocikit's server with token auth, on 127.0.0.1. (The server's own token tests
//! live with the server; this one is here because only the client's tests may use the
//! server, not the other way round.)

use std::sync::Arc;
use std::time::Duration;

use ocikit_client::{Client, Credentials, PullOptions, PushOptions};
use ocikit_digest::Digest;
use ocikit_layout::Layout;
use ocikit_registry::{Config, Registry, TokenAuth};
use ocikit_store::{MemoryStore, StoreExt};
use reqwest::StatusCode;
use serde_json::json;

use crate::token_server::{ISSUER, SERVICE, Signer, TokenServer, claims};
use crate::{Server, data};

const PASSWORDS: &[(&str, &str)] = &[
    ("alice", "alice-pw"),
    ("reader", "reader-pw"),
    ("root", "root-pw"),
];

/// alice pushes and pulls under `team/`, reader pulls there, root may do anything.
fn rules() -> Vec<crate::token_server::Rule> {
    vec![
        ("alice", "team/", &["pull", "push"]),
        ("reader", "team/", &["pull"]),
        ("root", "", &["pull", "push", "delete", "catalog"]),
    ]
}

/// The registry behind `tokens`, which verifies with `public_pem`.
async fn registry(tokens: &TokenServer, public_pem: &str) -> Server {
    let auth = TokenAuth::new(
        &tokens.realm,
        SERVICE,
        ISSUER,
        public_pem.as_bytes(),
        "test key",
    )
    .unwrap();
    let registry = Registry::new(
        Arc::new(MemoryStore::new()),
        Arc::new(MemoryStore::new()),
        Config::default().token(Some(auth)),
    )
    .unwrap();
    Server::start(registry).await
}

fn client(host: &str, credentials: Option<Credentials>) -> Client {
    Client::builder(host)
        .plain_http(true)
        .credentials(credentials)
        .retries(2, Duration::from_millis(10), Duration::from_millis(100))
        .chunking(64 << 10, 40 << 10)
        .build()
        .unwrap()
}

/// ocikit's client pushes and pulls through the realm with tokens of each algorithm; the
/// token server is asked for exactly the scopes the challenges named; a user granted pull
/// only cannot push, and nothing of the refused push is tagged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_pushes_and_pulls_through_es256_and_rs256_tokens() {
    let mut signers = vec![{
        let signer = Signer::es256();
        let pem = signer.es256_public_pem();
        (signer, pem)
    }];
    signers.extend(Signer::rs256());
    assert!(signers.len() == 2 || !ocikit_testkit::in_ci());
    for (signer, public_pem) in signers {
        let alg = signer.alg();
        let tokens = TokenServer::start(signer, PASSWORDS, rules()).await;
        let server = registry(&tokens, &public_pem).await;
        let host = server.base.trim_start_matches("http://").to_owned();
        let source = Layout::create(MemoryStore::new()).await.unwrap();
        let layers = [data(200_000, 1), data(5_000, 2), data(10, 3)];
        let root = crate::client::image(&source, "amd64", &layers).await;

        let alice = client(&host, Some(Credentials::new("alice", "alice-pw")));
        alice
            .push(&source, &root, "team/app", Some("v1"), &PushOptions::new())
            .await
            .unwrap_or_else(|e| panic!("{alg}: {e}"));
        let asked = tokens.asked().concat();
        assert!(
            asked.contains(&"repository:team/app:pull,push".to_owned()),
            "{alg}: {asked:?}"
        );

        let reader = client(&host, Some(Credentials::new("reader", "reader-pw")));
        let back = Layout::create(MemoryStore::new()).await.unwrap();
        reader
            .pull("team/app", "v1", &back, "copy", &PullOptions::new())
            .await
            .unwrap_or_else(|e| panic!("{alg}: {e}"));
        let pulled: Vec<Digest> = {
            use futures::StreamExt as _;
            let mut all: Vec<Digest> = back.store().list().map(|d| d.unwrap()).collect().await;
            all.sort_by(|a, b| a.as_str().cmp(b.as_str()));
            all
        };
        assert_eq!(pulled.len(), 5, "{alg}: manifest, config, three layers");
        for digest in &pulled {
            assert_eq!(
                back.store().get_bytes(digest, 1 << 30).await.unwrap(),
                source.store().get_bytes(digest, 1 << 30).await.unwrap()
            );
        }
        assert!(
            tokens
                .asked()
                .concat()
                .contains(&"repository:team/app:pull".to_owned()),
            "{alg}"
        );

        // reader's token grants pull only: the push fails and tags nothing.
        let err = reader
            .push(
                &source,
                &root,
                "team/other",
                Some("v1"),
                &PushOptions::new(),
            )
            .await
            .expect_err("reader may not push");
        assert!(err.to_string().contains("team/other"), "{alg}: {err}");
        let no_tag = crate::http_client()
            .get(format!("{}/v2/team/other/manifests/v1", server.base))
            .bearer_auth(tokens.signer().sign(&claims(
                "root",
                json!([{"type": "repository", "name": "team/other", "actions": ["pull"]}]),
            )))
            .send()
            .await
            .unwrap();
        assert_eq!(no_tag.status(), StatusCode::NOT_FOUND, "{alg}");

        // Wrong password: the realm refuses, and so the client fails.
        let mallory = client(&host, Some(Credentials::new("alice", "guess")));
        assert!(
            mallory
                .pull("team/app", "v1", &back, "again", &PullOptions::new())
                .await
                .is_err()
        );
    }
}
