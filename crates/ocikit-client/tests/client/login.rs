//! `login` and `logout` (what `ocikit login` and `ocikit logout` are): credentials checked
//! against ocikit's own server with htpasswd users, then kept in (and removed from) a
//! Docker `config.json`, every other field of it kept; refused credentials and bad names
//! leave the file as it was.

use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use ocikit_client::{
    Client, Credentials, DockerConfig, Error, LoginOptions, auth_file_path, login, logout,
    registry_host,
};
use ocikit_registry::{Access, Config, Registry, Users};
use ocikit_store::MemoryStore;

use crate::Server;

/// A registry whose one user is alice (password `alice-pw`).
async fn guarded() -> (Server, String) {
    let alice = bcrypt::hash("alice-pw", 4).unwrap();
    let mut users = Users::new();
    users
        .add_htpasswd(&format!("alice:{alice}\n"), Access::ReadWrite, "test")
        .unwrap();
    let registry = Registry::new(
        Arc::new(MemoryStore::new()),
        Arc::new(MemoryStore::new()),
        Config::default().users(Some(users)),
    )
    .unwrap();
    let server = Server::start(registry).await;
    let addr = server.base.trim_start_matches("http://").to_string();
    (server, addr)
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[tokio::test]
async fn login_checks_and_stores_the_credentials_and_logout_removes_them() {
    let (server, addr) = guarded().await;
    let dir = tempfile::tempdir().unwrap();
    let authfile = dir.path().join("docker").join("config.json");
    std::fs::create_dir(dir.path().join("docker")).unwrap();
    std::fs::write(&authfile, r#"{"psFormat":"table"}"#).unwrap();
    let options = LoginOptions::new().authfile(Some(authfile.clone()));

    let report = login(
        Client::builder(&addr).plain_http(true),
        Credentials::new("alice", "alice-pw"),
        &options,
    )
    .await
    .unwrap();
    assert_eq!(report.registry, addr);
    assert_eq!(report.username, "alice");
    assert_eq!(report.authfile, authfile);
    assert_eq!(report.helper, None);
    let stored = json(&authfile);
    let auth = base64::engine::general_purpose::STANDARD.encode("alice:alice-pw");
    assert_eq!(stored["auths"][&addr]["auth"], auth.as_str(), "{stored}");
    assert_eq!(stored["psFormat"], "table", "{stored}");
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&authfile).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // What was stored is what a client reads back and logs in with.
    let read = DockerConfig::load(&authfile)
        .unwrap()
        .credentials(&addr)
        .unwrap();
    assert_eq!(read, Some(Credentials::new("alice", "alice-pw")));
    Client::builder(&addr)
        .plain_http(true)
        .credentials(read)
        .build()
        .unwrap()
        .ping()
        .await
        .unwrap();

    let out = logout(&format!("docker://{addr}/team/app"), &options)
        .await
        .unwrap();
    assert_eq!(out.registry, addr);
    assert!(out.removed);
    let stored = json(&authfile);
    assert!(stored["auths"].get(&addr).is_none(), "{stored}");
    assert_eq!(stored["psFormat"], "table", "{stored}");
    let again = logout(&addr, &options).await.unwrap();
    assert!(!again.removed);
    server.stop().await;
}

#[tokio::test]
async fn refused_credentials_are_unauthorized_and_leave_the_file_untouched() {
    let (server, addr) = guarded().await;
    let dir = tempfile::tempdir().unwrap();
    let authfile = dir.path().join("config.json");
    let before = format!(r#"{{"auths":{{"{addr}":{{"auth":"b2xkOnNlY3JldA=="}}}}}}"#);
    std::fs::write(&authfile, &before).unwrap();
    let options = LoginOptions::new().authfile(Some(authfile.clone()));
    let err = login(
        Client::builder(&addr).plain_http(true),
        Credentials::new("alice", "wrong"),
        &options,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::Unauthorized { .. }), "{err:?}");
    assert_eq!(std::fs::read_to_string(&authfile).unwrap(), before);

    // No file before a refused login: none after.
    let fresh = dir.path().join("fresh").join("config.json");
    let err = login(
        Client::builder(&addr).plain_http(true),
        Credentials::new("mallory", "alice-pw"),
        &LoginOptions::new().authfile(Some(fresh.clone())),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::Unauthorized { .. }), "{err:?}");
    assert!(!fresh.exists());
    assert!(!dir.path().join("fresh").exists());
    server.stop().await;
}

#[tokio::test]
async fn bad_user_and_registry_names_are_refused_before_anything_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let authfile = dir.path().join("config.json");
    let options = LoginOptions::new().authfile(Some(authfile.clone()));
    // Port 1 answers nothing: reaching it would be a request error, not these.
    for name in ["", "ali:ce"] {
        let err = login(
            Client::builder("127.0.0.1:1").plain_http(true),
            Credentials::new(name, "pw"),
            &options,
        )
        .await
        .unwrap_err();
        match err {
            Error::InvalidUsername { username } => assert_eq!(username, name),
            other => panic!("user name {name:?}: {other:?}"),
        }
    }
    assert!(matches!(registry_host(""), Err(Error::NoRegistry)));
    assert!(matches!(
        registry_host("docker:///team/app"),
        Err(Error::NoRegistry)
    ));
    match registry_host("bad_host!:5000") {
        Err(Error::InvalidRegistry { registry, .. }) => assert_eq!(registry, "bad_host!:5000"),
        other => panic!("{other:?}"),
    }
    match logout("-dash.example", &options).await {
        Err(Error::InvalidRegistry { registry, .. }) => assert_eq!(registry, "-dash.example"),
        other => panic!("{other:?}"),
    }
    assert!(!authfile.exists());
    // Good names: docker.io is served from registry-1.docker.io; a location's path goes.
    assert_eq!(registry_host("docker.io").unwrap(), "registry-1.docker.io");
    assert_eq!(
        registry_host("docker://127.0.0.1:5000/team/app:v1").unwrap(),
        "127.0.0.1:5000"
    );
    assert_eq!(
        registry_host("registry.example:443").unwrap(),
        "registry.example:443"
    );
    // The file given is the file used; without one, Docker's.
    assert_eq!(auth_file_path(Some(&authfile)).unwrap(), authfile);
    match DockerConfig::default_path() {
        Some(path) => assert_eq!(auth_file_path(None).unwrap(), path),
        None => assert!(matches!(auth_file_path(None), Err(Error::NoAuthFile))),
    }
}

#[test]
fn login_types_and_futures_are_send() {
    fn check<T: Send + Sync + 'static>() {}
    fn future<F: std::future::Future + Send>(_: F) {}
    check::<LoginOptions>();
    check::<ocikit_client::LoginReport>();
    check::<ocikit_client::LogoutReport>();
    let options = LoginOptions::new();
    future(login(
        Client::builder("127.0.0.1:1"),
        Credentials::new("a", "b"),
        &options,
    ));
    future(logout("127.0.0.1:1", &options));
}
