//! Per-repository access rules for htpasswd users: pull, push and delete allowed and
//! refused by pattern, groups, anonymous pulls per pattern, the read-only file as a
//! ceiling, mounts from repositories the user may not pull, and the catalog.

use std::sync::OnceLock;

use base64::Engine as _;
use ocikit_digest::Digest;
use ocikit_registry::{Access, AccessPolicy, Config, Users};
use reqwest::{Method, StatusCode};

use crate::{MANIFEST, Server, data, header, image_manifest, refused};

const POLICY: &str = r#"{
    "groups": { "team-a": { "users": ["alice", "bob"] } },
    "repositories": {
        "team-a/**": {
            "policies": [
                { "groups": ["team-a"], "actions": ["pull", "push"] },
                { "users": ["bob"], "actions": ["delete"] }
            ]
        },
        "team-a/secret": { "policies": [ { "users": ["alice"], "actions": ["pull", "push"] } ] },
        "public/*": { "anonymousPolicy": ["pull"], "policies": [ { "users": ["alice"], "actions": ["push"] } ] },
        "shared/*": { "defaultPolicy": ["pull"] }
    },
    "adminPolicy": { "users": ["root"], "actions": ["pull", "push", "delete"] }
}"#;

/// alice and bob (team-a), carol (nobody's), root (admin): read-write; dave read-only
/// though the policy would let him push (bcrypt cost 4 keeps the tests quick).
fn users() -> Users {
    static HASH: OnceLock<String> = OnceLock::new();
    let hash = HASH.get_or_init(|| bcrypt::hash("pw", 4).unwrap());
    let mut users = Users::new();
    let rw: String = ["alice", "bob", "carol", "root"]
        .iter()
        .map(|u| format!("{u}:{hash}\n"))
        .collect();
    users.add_htpasswd(&rw, Access::ReadWrite, "rw").unwrap();
    users
        .add_htpasswd(&format!("dave:{hash}\n"), Access::Read, "ro")
        .unwrap();
    users
}

fn policy() -> AccessPolicy {
    // dave is in team-a too: the read-only file still caps him.
    AccessPolicy::from_json(
        &POLICY.replace(r#"["alice", "bob"]"#, r#"["alice", "bob", "dave"]"#),
        "test",
    )
    .unwrap()
}

async fn server() -> Server {
    Server::start(
        Config::default()
            .users(Some(users()))
            .access(Some(policy())),
    )
    .await
}

fn basic(user: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:pw"))
    )
}

/// `user`'s request (None: anonymous).
fn as_user(
    server: &Server,
    user: Option<&str>,
    method: Method,
    path: &str,
) -> reqwest::RequestBuilder {
    let request = server.request(method, path);
    match user {
        Some(user) => request.header("authorization", basic(user)),
        None => request,
    }
}

/// Pushes a two-blob image to `repo:v1` as `user`; the status of the first refused step,
/// or 201 and the manifest's digest.
async fn push(server: &Server, user: Option<&str>, repo: &str) -> (StatusCode, Option<Digest>) {
    let mut blobs = Vec::new();
    for (len, seed) in [(100, 1), (3_000, 2)] {
        let bytes = data(len, seed);
        let digest = Digest::sha256(&bytes);
        let resp = as_user(
            server,
            user,
            Method::POST,
            &format!("/v2/{repo}/blobs/uploads/?digest={digest}"),
        )
        .header("content-type", "application/octet-stream")
        .body(bytes)
        .send()
        .await
        .unwrap();
        if resp.status() != StatusCode::CREATED {
            return (resp.status(), None);
        }
        blobs.push((digest, len));
    }
    let manifest = image_manifest(
        (blobs[0].0.as_str(), blobs[0].1),
        (blobs[1].0.as_str(), blobs[1].1),
    );
    let resp = as_user(
        server,
        user,
        Method::PUT,
        &format!("/v2/{repo}/manifests/v1"),
    )
    .header("content-type", MANIFEST)
    .body(manifest.clone())
    .send()
    .await
    .unwrap();
    (resp.status(), Some(Digest::sha256(&manifest)))
}

async fn status(server: &Server, user: Option<&str>, method: Method, path: &str) -> StatusCode {
    as_user(server, user, method, path)
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn pull_push_and_delete_follow_the_longest_pattern_and_groups() {
    let server = server().await;
    let created = StatusCode::CREATED;
    for (user, repo) in [
        ("alice", "team-a/app"),
        ("bob", "team-a/tools/cli"),
        ("alice", "team-a/secret"),
        ("alice", "public/app"),
        ("root", "shared/base"),
        ("root", "elsewhere"),
    ] {
        assert_eq!(
            push(&server, Some(user), repo).await.0,
            created,
            "{user} {repo}"
        );
    }
    let allowed = [
        ("alice", Method::GET, "/v2/team-a/app/manifests/v1"),
        ("bob", Method::GET, "/v2/team-a/app/tags/list"),
        ("dave", Method::GET, "/v2/team-a/app/manifests/v1"),
        ("alice", Method::GET, "/v2/team-a/secret/manifests/v1"),
        ("carol", Method::GET, "/v2/shared/base/manifests/v1"),
        ("carol", Method::GET, "/v2/public/app/manifests/v1"),
        ("root", Method::GET, "/v2/team-a/secret/manifests/v1"),
    ];
    for (user, method, path) in allowed {
        assert_eq!(
            status(&server, Some(user), method.clone(), path).await,
            StatusCode::OK,
            "{user} {method} {path}"
        );
    }
    // Refused: 403 DENIED naming the scope, and nothing changes.
    let denied = [
        (
            "carol",
            Method::GET,
            "/v2/team-a/app/manifests/v1",
            "repository:team-a/app:pull",
        ),
        (
            "bob",
            Method::GET,
            "/v2/team-a/secret/manifests/v1",
            "repository:team-a/secret:pull",
        ),
        (
            "alice",
            Method::DELETE,
            "/v2/team-a/app/manifests/v1",
            "repository:team-a/app:delete",
        ),
        (
            "carol",
            Method::POST,
            "/v2/shared/base/blobs/uploads/",
            "repository:shared/base:pull,push",
        ),
        (
            "alice",
            Method::GET,
            "/v2/elsewhere/manifests/v1",
            "repository:elsewhere:pull",
        ),
        (
            "bob",
            Method::POST,
            "/v2/public/app/blobs/uploads/",
            "repository:public/app:pull,push",
        ),
    ];
    for (user, method, path, scope) in denied {
        let resp = as_user(&server, Some(user), method.clone(), path)
            .send()
            .await
            .unwrap();
        let message = refused(resp, StatusCode::FORBIDDEN, "DENIED").await;
        assert!(message.contains(scope), "{user} {method} {path}: {message}");
    }
    // dave's file is read-only: the policy's push for team-a does not lift it.
    let (code, _) = push(&server, Some("dave"), "team-a/app").await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    // bob may delete in team-a (his own policy), and it is gone.
    assert_eq!(
        status(
            &server,
            Some("bob"),
            Method::DELETE,
            "/v2/team-a/tools/cli/manifests/v1"
        )
        .await,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        status(
            &server,
            Some("bob"),
            Method::GET,
            "/v2/team-a/tools/cli/manifests/v1"
        )
        .await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        status(
            &server,
            Some("alice"),
            Method::GET,
            "/v2/team-a/app/manifests/v1"
        )
        .await,
        StatusCode::OK
    );
    let sessions = server
        .registry
        .upload_store()
        .list_documents("sessions")
        .await
        .unwrap();
    assert!(sessions.is_empty(), "{sessions:?}");
}

#[tokio::test]
async fn anonymous_requests_pull_only_where_a_pattern_lets_them() {
    let server = server().await;
    assert_eq!(
        push(&server, Some("alice"), "public/app").await.0,
        StatusCode::CREATED
    );
    assert_eq!(
        push(&server, Some("alice"), "team-a/app").await.0,
        StatusCode::CREATED
    );
    assert_eq!(
        status(&server, None, Method::GET, "/v2/public/app/manifests/v1").await,
        StatusCode::OK
    );
    assert_eq!(
        status(&server, None, Method::HEAD, "/v2/public/app/manifests/v1").await,
        StatusCode::OK
    );
    for (method, path) in [
        (Method::GET, "/v2/team-a/app/manifests/v1"),
        (Method::GET, "/v2/public/app/deeper/manifests/v1"),
        (Method::POST, "/v2/public/app/blobs/uploads/"),
        (Method::DELETE, "/v2/public/app/manifests/v1"),
        // The base endpoint challenges anonymous clients, so that they send credentials.
        (Method::GET, "/v2/"),
        (Method::GET, "/v2/_catalog"),
    ] {
        let resp = as_user(&server, None, method.clone(), path)
            .send()
            .await
            .unwrap();
        assert_eq!(header(&resp, "www-authenticate"), r#"Basic realm="ocikit""#);
        refused(resp, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    }
    // Wrong credentials are never anonymous.
    let resp = server
        .request(Method::GET, "/v2/public/app/manifests/v1")
        .header(
            "authorization",
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode("alice:wrong")
            ),
        )
        .send()
        .await
        .unwrap();
    refused(resp, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
}

/// A mount takes a blob from another repository: it needs pull there too, so a user cannot
/// copy what they could not read.
#[tokio::test]
async fn mounts_need_pull_on_the_repository_mounted_from() {
    let server = server().await;
    assert_eq!(
        push(&server, Some("alice"), "team-a/secret").await.0,
        StatusCode::CREATED
    );
    let digest = Digest::sha256(&data(3_000, 2));
    let path = format!("/v2/team-a/app/blobs/uploads/?mount={digest}&from=team-a/secret");
    let resp = as_user(&server, Some("bob"), Method::POST, &path)
        .send()
        .await
        .unwrap();
    let message = refused(resp, StatusCode::FORBIDDEN, "DENIED").await;
    assert!(
        message.contains("repository:team-a/secret:pull"),
        "{message}"
    );
    assert_eq!(
        status(
            &server,
            Some("bob"),
            Method::HEAD,
            &format!("/v2/team-a/app/blobs/{digest}")
        )
        .await,
        StatusCode::NOT_FOUND
    );
    let resp = as_user(&server, Some("alice"), Method::POST, &path)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::CREATED,
        "alice may read the secret"
    );
    assert_eq!(
        status(
            &server,
            Some("bob"),
            Method::HEAD,
            &format!("/v2/team-a/app/blobs/{digest}")
        )
        .await,
        StatusCode::OK
    );
}

/// The catalog names every repository: admins only.
#[tokio::test]
async fn the_catalog_is_for_admins() {
    let server = server().await;
    assert_eq!(
        push(&server, Some("alice"), "team-a/app").await.0,
        StatusCode::CREATED
    );
    let resp = as_user(&server, Some("root"), Method::GET, "/v2/_catalog")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["repositories"], serde_json::json!(["team-a/app"]));
    let resp = as_user(&server, Some("alice"), Method::GET, "/v2/_catalog")
        .send()
        .await
        .unwrap();
    let message = refused(resp, StatusCode::FORBIDDEN, "DENIED").await;
    assert!(message.contains("registry:catalog:*"), "{message}");
    // Every authenticated user may ping the base endpoint.
    assert_eq!(
        status(&server, Some("carol"), Method::GET, "/v2/").await,
        StatusCode::OK
    );
}

#[test]
fn policy_files_are_read_and_bad_ones_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("access.json");
    std::fs::write(&good, POLICY).unwrap();
    let policy = AccessPolicy::load(&good).unwrap();
    assert!(policy.allows(Some("bob"), "team-a/x/y", ocikit_registry::Action::Delete));
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"repositories": {"a/*": {"defaultPolicy": ["write"]}}}"#,
    )
    .unwrap();
    let err = AccessPolicy::load(&bad).unwrap_err();
    assert!(
        err.to_string().contains("bad.json") && err.to_string().contains("`write`"),
        "{err}"
    );
}
