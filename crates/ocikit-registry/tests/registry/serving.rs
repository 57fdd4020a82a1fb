//! Running a registry as `ocikit serve` and `ocikit registry-gc` do, through the library:
//! users from htpasswd files, [`serve`] on a [`Storage`] with its events and periodic
//! garbage collection, [`Registry::spawn_periodic_gc`], [`Storage::collect_garbage`], and
//! (feature `s3`) a registry in an S3 bucket on moto.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use ocikit_digest::Digest;
use ocikit_registry::{
    Access, Clock, Config, Error, GcOptions, GcReport, Registry, ServeEvent, ServeOptions, Storage,
    Users, serve,
};
use ocikit_store::StoreExt;
use reqwest::StatusCode;

use crate::{http_client, location, with_digest};

/// Everything old: no grace period, by a clock a second ahead.
fn now_options() -> GcOptions {
    GcOptions::new()
        .grace(Duration::ZERO)
        .clock(Clock::from_fn(|| {
            SystemTime::now() + Duration::from_secs(1)
        }))
}

fn htpasswd(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// What the event sink of [`serve`] saw, in order, as short strings.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<Event>>>);

#[derive(Clone, Debug)]
enum Event {
    Serving {
        storage: String,
        addr: std::net::SocketAddr,
        tls: bool,
    },
    Collected(GcReport),
    Failed(String),
}

impl Seen {
    fn sink(&self) -> impl Fn(ServeEvent<'_>) + Send + Sync + 'static {
        let seen = self.0.clone();
        move |event| {
            let event = match event {
                ServeEvent::Serving { storage, addr, tls } => Event::Serving {
                    storage: storage.to_string(),
                    addr,
                    tls,
                },
                ServeEvent::Collected(report) => Event::Collected(report.clone()),
                ServeEvent::CollectionFailed(e) => Event::Failed(e.to_string()),
                other => panic!("unexpected event {other:?}"),
            };
            seen.lock().unwrap().push(event);
        }
    }

    fn all(&self) -> Vec<Event> {
        self.0.lock().unwrap().clone()
    }

    async fn serving(&self) -> (String, std::net::SocketAddr) {
        ocikit_testkit::eventually("the server says it serves", Duration::from_secs(20), || {
            let seen = self.all();
            async move {
                seen.iter().find_map(|e| match e {
                    Event::Serving { storage, addr, tls } => {
                        assert!(!tls);
                        Some((storage.clone(), *addr))
                    }
                    _ => None,
                })
            }
        })
        .await
    }
}

/// A server started with [`serve`] on a task, and how to stop it.
struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<ocikit_registry::Result<()>>,
}

async fn start(options: ServeOptions, seen: &Seen) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        stopped.await.ok();
    };
    let task = tokio::spawn(serve(listener, options, shutdown, seen.sink()));
    Running { stop, task }
}

impl Running {
    async fn stop(self) -> ocikit_registry::Result<()> {
        self.stop.send(()).ok();
        tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .expect("the server stopped in time")
            .unwrap()
    }
}

/// Pushes `bytes` as a blob of `name` through the registry at `base`.
async fn push_blob(client: &reqwest::Client, base: &str, name: &str, bytes: &[u8]) -> Digest {
    let digest = Digest::sha256(bytes);
    let resp = client
        .post(format!("{base}/v2/{name}/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let mut upload = location(&resp);
    if upload.starts_with('/') {
        upload = format!("{base}{upload}");
    }
    let resp = client
        .put(with_digest(&upload, &digest))
        .header("content-type", "application/octet-stream")
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    digest
}

#[tokio::test]
async fn users_from_htpasswd_files_each_with_its_access_guard_the_registry() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let writers = htpasswd(
        d,
        "writers",
        &format!(
            "# who may push\nalice:{}\n",
            bcrypt::hash("alice-pw", 4).unwrap()
        ),
    );
    let readers = htpasswd(
        d,
        "readers",
        &format!("bob:{}\n", bcrypt::hash("bob-pw", 4).unwrap()),
    );
    let users =
        Users::from_htpasswd_files([(&writers, Access::ReadWrite), (&readers, Access::Read)])
            .unwrap();
    assert_eq!(users.len(), 2);
    let seen = Seen::default();
    let root = d.join("registry");
    let options = ServeOptions::new(Storage::Directory(root.clone()))
        .config(Config::default().users(Some(users)));
    let server = start(options, &seen).await;
    let (_, addr) = seen.serving().await;
    let base = format!("http://{addr}");
    let client = http_client();
    let ping = |user: Option<(&'static str, &'static str)>| {
        let mut request = client.get(format!("{base}/v2/"));
        if let Some((name, password)) = user {
            request = request.basic_auth(name, Some(password));
        }
        async move { request.send().await.unwrap().status() }
    };
    assert_eq!(ping(Some(("alice", "alice-pw"))).await, StatusCode::OK);
    assert_eq!(ping(Some(("bob", "bob-pw"))).await, StatusCode::OK);
    assert_eq!(
        ping(Some(("alice", "wrong"))).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(ping(None).await, StatusCode::UNAUTHORIZED);
    // bob reads only: his push is refused.
    let resp = client
        .post(format!("{base}/v2/app/blobs/uploads/"))
        .basic_auth("bob", Some("bob-pw"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    server.stop().await.unwrap();
}

#[test]
fn htpasswd_files_that_cannot_make_users_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let good = format!("alice:{}\n", bcrypt::hash("pw", 4).unwrap());
    // A malformed second line: the error names the file and the line.
    let bad = htpasswd(d, "bad", &format!("{good}bob-without-a-hash\n"));
    match Users::from_htpasswd_files([(&bad, Access::ReadWrite)]) {
        Err(Error::Htpasswd { origin, line, .. }) => {
            assert_eq!(line, 2);
            assert!(origin.ends_with("bad"), "{origin}");
        }
        other => panic!("a malformed line was accepted: {other:?}"),
    }
    // Comments only, in every file: nobody could log in.
    let empty = htpasswd(d, "empty", "# nobody yet\n\n");
    assert!(matches!(
        Users::from_htpasswd_files([(&empty, Access::ReadWrite), (&empty, Access::Read)]),
        Err(Error::NoUsers)
    ));
    assert!(matches!(
        Users::from_htpasswd_files(Vec::<(&Path, Access)>::new()),
        Err(Error::NoUsers)
    ));
    // One user in two files.
    let again = htpasswd(d, "again", &good);
    let twice = htpasswd(d, "twice", &good);
    assert!(matches!(
        Users::from_htpasswd_files([(&again, Access::ReadWrite), (&twice, Access::Read)]),
        Err(Error::Htpasswd { line: 1, .. })
    ));
    let missing = d.join("missing");
    match Users::from_htpasswd_files([(&missing, Access::Read)]) {
        Err(Error::ReadFile { path, .. }) => assert_eq!(path, missing),
        other => panic!("a missing file was accepted: {other:?}"),
    }
}

#[tokio::test]
async fn serve_opens_a_new_directory_serves_it_and_stops_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("registry");
    let seen = Seen::default();
    let server = start(ServeOptions::new(Storage::Directory(root.clone())), &seen).await;
    let (storage, addr) = seen.serving().await;
    assert_eq!(storage, root.display().to_string());
    assert!(root.is_dir(), "serve created the registry directory");
    let base = format!("http://{addr}");
    let client = http_client();
    let digest = push_blob(&client, &base, "app", b"served").await;
    let resp = client
        .get(format!("{base}/v2/app/blobs/{digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(&resp.bytes().await.unwrap()[..], b"served");
    assert!(root.join(digest.blob_path()).is_file());
    drop(client);
    server.stop().await.unwrap();
    assert_eq!(seen.all().len(), 1, "only the Serving event");
}

#[tokio::test]
async fn serve_refuses_a_storage_it_cannot_open_before_serving() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "not a directory").unwrap();
    let seen = Seen::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let result = serve(
        listener,
        ServeOptions::new(Storage::Directory(file.join("registry"))),
        std::future::pending(),
        seen.sink(),
    )
    .await;
    assert!(result.is_err(), "a registry under a file was served");
    assert!(seen.all().is_empty(), "{:?}", seen.all());
}

#[tokio::test]
async fn serve_collects_garbage_on_its_interval_and_stops_collecting_with_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("registry");
    // A blob no repository references, in the registry before it serves.
    let orphan = {
        let registry = Registry::open(&root).await.unwrap();
        registry
            .store()
            .put_bytes(b"nobody links me")
            .await
            .unwrap()
    };
    let seen = Seen::default();
    let options = ServeOptions::new(Storage::Directory(root.clone()))
        .periodic_gc(Some(Duration::from_millis(10)), now_options());
    let server = start(options, &seen).await;
    seen.serving().await;
    let report = ocikit_testkit::eventually(
        "a periodic collection removed the orphan",
        Duration::from_secs(30),
        || {
            let seen = seen.all();
            let orphan = orphan.clone();
            async move {
                seen.into_iter().find_map(|e| match e {
                    Event::Collected(report) if report.blobs_removed.contains(&orphan) => {
                        Some(report)
                    }
                    Event::Failed(e) => panic!("a collection failed: {e}"),
                    _ => None,
                })
            }
        },
    )
    .await;
    assert!(!report.dry_run);
    assert!(!root.join(orphan.blob_path()).exists());
    server.stop().await.unwrap();
    // The sink was dropped with the server and its collector: no collection outlives them.
    assert_eq!(Arc::strong_count(&seen.0), 1);
}

#[tokio::test]
async fn a_periodic_collection_reports_each_run_and_ends_when_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::open(dir.path().join("registry")).await.unwrap();
    let orphan = registry.store().put_bytes(b"orphan").await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let collector = registry.spawn_periodic_gc(Duration::ZERO, now_options(), move |outcome| {
        tx.send(outcome).ok();
    });
    let first = tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .expect("a collection within the deadline")
        .expect("the collector is running")
        .unwrap();
    assert_eq!(first.blobs_removed, vec![orphan.clone()]);
    assert_eq!(registry.store().stat(&orphan).await.unwrap(), None);
    tokio::time::timeout(Duration::from_secs(20), collector.stop())
        .await
        .expect("the collector stopped in time");
    // Stopped: its sink is gone, so the channel ends after what was sent before.
    tokio::time::timeout(Duration::from_secs(5), async {
        while rx.recv().await.is_some() {}
    })
    .await
    .expect("the channel ended");
}

#[tokio::test]
async fn registry_gc_collects_an_existing_registry_and_refuses_a_missing_directory() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("registry");
    let orphan = {
        let registry = Registry::open(&root).await.unwrap();
        registry.store().put_bytes(b"garbage").await.unwrap()
    };
    let storage = Storage::Directory(root.clone());
    let dry = storage
        .collect_garbage(&now_options().dry_run(true))
        .await
        .unwrap();
    assert_eq!(dry.blobs_removed, vec![orphan.clone()]);
    assert!(
        root.join(orphan.blob_path()).exists(),
        "a dry run removed it"
    );
    let real = storage.collect_garbage(&now_options()).await.unwrap();
    assert_eq!(real.blobs_removed, dry.blobs_removed);
    assert_eq!(real.bytes_freed, b"garbage".len() as u64);
    assert!(!root.join(orphan.blob_path()).exists());

    let typo = dir.path().join("registyr");
    match Storage::Directory(typo.clone())
        .collect_garbage(&now_options())
        .await
    {
        Err(Error::NotARegistryDirectory { path }) => assert_eq!(path, typo),
        other => panic!("a missing directory was collected: {other:?}"),
    }
    assert!(!typo.exists(), "collecting created the directory");
    assert!(matches!(
        storage
            .collect_garbage(&now_options().repositories(["Nope"]))
            .await,
        Err(Error::GcOptions(_))
    ));
}

#[cfg(feature = "s3")]
mod s3 {
    use super::*;
    use ocikit_registry::S3Location;

    fn on_moto(moto: &ocikit_testkit::moto::MotoServer, bucket: &str) -> S3Location {
        S3Location::new(bucket)
            .with_prefix("/team/registry/")
            .with_endpoint(moto.endpoint())
            .with_region(ocikit_testkit::moto::REGION)
            .with_credentials(
                ocikit_testkit::moto::ACCESS_KEY,
                ocikit_testkit::moto::SECRET_KEY,
            )
    }

    #[test]
    fn bucket_names_that_cannot_be_buckets_are_refused() {
        for bucket in ["", "a/b", "with space", "tab\tbed"] {
            match Registry::open_s3(&S3Location::new(bucket), Config::default()) {
                Err(Error::InvalidBucket { bucket: named }) => assert_eq!(named, bucket),
                other => panic!("bucket {bucket:?} was accepted: {other:?}"),
            }
        }
        let location = S3Location::new("images");
        assert_eq!(location.prefix(), ocikit_registry::DEFAULT_S3_PREFIX);
        assert_eq!(location.content_prefix(), "registry/content");
        assert_eq!(location.uploads_prefix(), "registry/uploads");
        let bare = S3Location::new("images").with_prefix("");
        assert_eq!(bare.content_prefix(), "content");
        assert_eq!(
            Storage::S3(location).to_string(),
            "s3://images/registry/content"
        );
    }

    #[tokio::test]
    async fn serve_keeps_a_registry_in_a_bucket_under_its_prefix() {
        let Some(moto) = ocikit_testkit::moto::shared() else {
            return;
        };
        let bucket = moto.bucket();
        let storage = Storage::S3(on_moto(moto, &bucket));
        let seen = Seen::default();
        let server = start(ServeOptions::new(storage), &seen).await;
        let (named, addr) = seen.serving().await;
        assert_eq!(named, format!("s3://{bucket}/team/registry/content"));
        let client = http_client();
        let digest = push_blob(&client, &format!("http://{addr}"), "app", b"in the bucket").await;
        drop(client);
        server.stop().await.unwrap();
        let (status, listing) = moto.request(
            "GET",
            &format!("/{bucket}?list-type=2&prefix=team/registry/content/blobs/"),
            "",
        );
        assert_eq!(status, 200);
        assert!(listing.contains(digest.encoded()), "{listing}");
        // The same bucket opened again (as registry-gc does) holds the blob.
        let registry = Registry::open_s3(&on_moto(moto, &bucket), Config::default()).unwrap();
        assert_eq!(
            registry.store().stat(&digest).await.unwrap(),
            Some(b"in the bucket".len() as u64)
        );
    }

    #[tokio::test]
    async fn serve_refuses_a_bucket_that_does_not_exist() {
        let Some(moto) = ocikit_testkit::moto::shared() else {
            return;
        };
        let seen = Seen::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let storage = Storage::S3(on_moto(moto, "ocikit-no-such-bucket"));
        let result = serve(
            listener,
            ServeOptions::new(storage),
            std::future::pending(),
            seen.sink(),
        )
        .await;
        assert!(
            matches!(result, Err(Error::StoreUnavailable { .. })),
            "{result:?}"
        );
        assert!(seen.all().is_empty());
    }
}

#[test]
fn serving_types_and_futures_are_send() {
    fn check<T: Send + Sync + 'static>() {}
    fn future<F: std::future::Future + Send>(_: F) {}
    check::<ServeOptions>();
    check::<Storage>();
    check::<ocikit_registry::PeriodicGc>();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let storage = Storage::Directory("unused".into());
    future(serve(
        listener,
        ServeOptions::new(storage.clone()),
        std::future::pending(),
        |_: ServeEvent<'_>| {},
    ));
    future(storage.collect_garbage(&GcOptions::new()));
    future(storage.open(Config::default()));
}
