//! `sync`: repositories mirrored between registries served in-process (their requests
//! counted at the server) and directories of layouts; incremental reruns that write
//! nothing; a registry failing halfway; bad sync files and selections refused.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use axum::body::Body;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use ocikit_digest::oci_spec::image::Descriptor;
use ocikit_layout::{ImageBuilder, LayerSpec, Layout};
use ocikit_registry::{Config, Registry};
use ocikit_store::{FsStore, MemoryStore};
use ocikit_transport::{
    CopyOptions, Error, SyncDestination, SyncEvent, SyncFileErrorKind, SyncOptions, SyncOutcome,
    SyncProgress, SyncReport, SyncSource, TagSelection, copy, sync,
};

use crate::registry::{docker, plain};
use crate::{at, open};

/// What a registry was asked, as `METHOD PATH`, and a blob digest it answers 404 for.
#[derive(Clone, Default)]
struct Watched {
    requests: Arc<Mutex<Vec<String>>>,
    broken: Arc<Mutex<Option<String>>>,
}

impl Watched {
    fn reset(&self) {
        self.requests.lock().unwrap().clear();
    }

    /// The requests that could write (anything but GET and HEAD).
    fn writes(&self) -> Vec<String> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| !r.starts_with("GET ") && !r.starts_with("HEAD "))
            .cloned()
            .collect()
    }

    /// The blob downloads.
    fn blob_reads(&self) -> Vec<String> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.starts_with("GET ") && r.contains("/blobs/"))
            .cloned()
            .collect()
    }

    fn break_blob(&self, digest: Option<String>) {
        *self.broken.lock().unwrap() = digest;
    }
}

async fn watch(watched: Watched, request: Request, next: Next) -> Response {
    let line = format!("{} {}", request.method(), request.uri().path());
    watched.requests.lock().unwrap().push(line.clone());
    let broken = watched.broken.lock().unwrap().clone();
    if let Some(digest) = broken
        && line.starts_with("GET ")
        && line.contains("/blobs/")
        && line.contains(&digest)
    {
        return (StatusCode::NOT_FOUND, Body::from("{\"errors\":[]}")).into_response();
    }
    next.run(request).await
}

/// A registry served in-process whose requests are recorded.
async fn watched_registry() -> (String, Watched) {
    let registry = Registry::new(
        Arc::new(MemoryStore::new()),
        Arc::new(MemoryStore::new()),
        Config::default(),
    )
    .unwrap();
    let watched = Watched::default();
    let seen = watched.clone();
    let app = registry
        .router()
        .layer(middleware::from_fn(move |request: Request, next: Next| {
            watch(seen.clone(), request, next)
        }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.ok();
    });
    (addr.to_string(), watched)
}

/// A small image (one layer holding `content`) tagged `tag` in the layout at `dir`.
async fn small_image(dir: &Path, tag: &str, content: &str) -> Descriptor {
    let tree = tempfile::tempdir().unwrap();
    std::fs::write(tree.path().join("file.txt"), content).unwrap();
    let layout = Layout::create(FsStore::open(dir).await.unwrap())
        .await
        .unwrap();
    let mut builder = ImageBuilder::new(&layout);
    builder.platform(&ocikit_digest::platform::parse("linux/amd64").unwrap());
    builder
        .add_layer_from_dir(tree.path(), LayerSpec::new())
        .await
        .unwrap();
    builder.write_and_tag(tag).await.unwrap()
}

/// Pushes images tagged `tags` (each with its own layer) to `addr`'s `repository`, and a
/// cosign-style signature of the first; returns the roots in order.
async fn populate(addr: &str, repository: &str, tags: &[&str]) -> Vec<Descriptor> {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("src");
    let mut roots = Vec::new();
    for tag in tags {
        let root = small_image(&layout, tag, &format!("{repository} {tag}\n")).await;
        copy(
            &at("oci", &layout, &format!(":{tag}")),
            &docker(addr, &format!("{repository}:{tag}")),
            &CopyOptions::new().with_destination(plain()),
        )
        .await
        .unwrap();
        roots.push(root);
    }
    let signature = format!(
        "{}.sig",
        roots[0].digest().to_string().replacen(':', "-", 1)
    );
    small_image(&layout, &signature, "a signature\n").await;
    copy(
        &at("oci", &layout, &format!(":{signature}")),
        &docker(addr, &format!("{repository}:{signature}")),
        &CopyOptions::new().with_destination(plain()),
    )
    .await
    .unwrap();
    roots
}

fn options() -> SyncOptions {
    SyncOptions::new()
        .with_source(plain())
        .with_destination(plain())
        .with_jobs(3)
}

fn statuses(report: &SyncReport) -> Vec<(String, &'static str)> {
    let mut out: Vec<(String, &'static str)> = report
        .entries
        .iter()
        .map(|e| (e.destination.clone(), e.outcome.as_str()))
        .collect();
    out.sort();
    out
}

/// Every file under `dir` with its size and modification time.
fn stamps(dir: &Path) -> Vec<(PathBuf, u64, SystemTime)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                stack.push(entry.path());
            }
            out.push((entry.path(), meta.len(), meta.modified().unwrap()));
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_repository_is_mirrored_between_registries_and_a_rerun_writes_nothing() {
    let (from, source) = watched_registry().await;
    let (to, destination) = watched_registry().await;
    let roots = populate(&from, "team/app", &["v1.0.0", "v1.1.0", "v2.0.0"]).await;
    let events = Arc::new(Mutex::new((0usize, 0usize, 0usize)));
    let seen = events.clone();
    let progress = SyncProgress::new(move |event| {
        let mut counts = seen.lock().unwrap();
        match event {
            SyncEvent::Planned { .. } => counts.0 += 1,
            SyncEvent::Blob { .. } => counts.1 += 1,
            SyncEvent::ImageDone { .. } => counts.2 += 1,
            _ => {}
        }
    });

    let report = sync(
        &SyncSource::repository(&format!("{from}/team/app"), TagSelection::all()).unwrap(),
        &SyncDestination::registry(&format!("{to}/mirror")).unwrap(),
        &options().with_progress(progress),
    )
    .await
    .unwrap();
    let signature = format!(
        "{}.sig",
        roots[0].digest().to_string().replacen(':', "-", 1)
    );
    let base = format!("docker://{to}/mirror/app");
    assert_eq!(
        statuses(&report),
        [
            (format!("{base}:{signature}"), "copied"),
            (format!("{base}:v1.0.0"), "copied"),
            (format!("{base}:v1.1.0"), "copied"),
            (format!("{base}:v2.0.0"), "copied"),
        ]
    );
    assert!(report.failures().is_empty());
    // The signature was a tag of the repository: it is listed once, not as an attachment too.
    assert_eq!(report.entries.iter().filter(|e| e.attachment).count(), 0);
    for (tag, root) in ["v1.0.0", "v1.1.0", "v2.0.0"].iter().zip(&roots) {
        let entry = report
            .entries
            .iter()
            .find(|e| e.destination.ends_with(&format!(":{tag}")))
            .unwrap();
        assert_eq!(entry.digest.as_deref(), Some(&*root.digest().to_string()));
    }
    let (planned, blobs, done) = *events.lock().unwrap();
    assert_eq!((planned, done), (1, 4));
    assert!(blobs > 0, "no blob events");
    // What the destination holds is the source's images, digest for digest.
    let held = ocikit_transport::inspect_raw(&docker(&to, "mirror/app:v1.1.0"), &plain())
        .await
        .unwrap();
    assert_eq!(
        ocikit_digest::Digest::sha256(&held).to_string(),
        roots[1].digest().to_string()
    );

    // Nothing changed: no blob is read from the source, nothing is written.
    source.reset();
    destination.reset();
    let again = sync(
        &SyncSource::repository(&format!("{from}/team/app"), TagSelection::all()).unwrap(),
        &SyncDestination::registry(&format!("{to}/mirror")).unwrap(),
        &options(),
    )
    .await
    .unwrap();
    assert_eq!(again.count("up-to-date"), 4, "{:?}", statuses(&again));
    assert_eq!(destination.writes(), Vec::<String>::new());
    assert_eq!(source.writes(), Vec::<String>::new());
    assert_eq!(source.blob_reads(), Vec::<String>::new());
    assert_eq!(destination.blob_reads(), Vec::<String>::new());

    // A new tag at the source: only it is copied.
    populate(&from, "team/app", &["v2.1.0"]).await;
    destination.reset();
    let third = sync(
        &SyncSource::repository(&format!("{from}/team/app"), TagSelection::all()).unwrap(),
        &SyncDestination::registry(&format!("{to}/mirror")).unwrap(),
        &options(),
    )
    .await
    .unwrap();
    let copied: Vec<&str> = third
        .entries
        .iter()
        .filter(|e| e.outcome.as_str() == "copied")
        .map(|e| e.destination.rsplit(':').next().unwrap())
        .collect();
    assert_eq!(copied.len(), 2, "{:?}", statuses(&third));
    assert!(copied.contains(&"v2.1.0"));
    assert!(!destination.writes().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn selections_go_to_a_directory_of_layouts_with_their_signatures() {
    let (from, _) = watched_registry().await;
    let roots = populate(&from, "team/app", &["v1.0.0", "v1.1.0", "v2.0.0", "latest"]).await;
    let dir = tempfile::tempdir().unwrap();
    let mirror = dir.path().join("mirror");

    // The newest two versions below 2: v1.0.0 and v1.1.0, and v1.0.0's signature along.
    let selection = TagSelection::all().range("<2").unwrap().newest(2);
    let source = SyncSource::repository(&format!("{from}/team/app"), selection).unwrap();
    let report = sync(&source, &SyncDestination::layouts(&mirror), &options())
        .await
        .unwrap();
    assert!(report.failures().is_empty(), "{:?}", statuses(&report));
    let signature = format!(
        "{}.sig",
        roots[0].digest().to_string().replacen(':', "-", 1)
    );
    let attachments: Vec<&str> = report
        .entries
        .iter()
        .filter(|e| e.attachment)
        .map(|e| e.destination.as_str())
        .collect();
    assert_eq!(
        attachments,
        [format!("oci:{}:{signature}", mirror.join("app").display())]
    );
    let layout = open(&mirror.join("app")).await;
    let mut tags: Vec<String> = layout
        .tags()
        .await
        .unwrap()
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    tags.sort();
    assert_eq!(tags, [signature.clone(), "v1.0.0".into(), "v1.1.0".into()]);
    assert_eq!(
        layout.resolve("v1.1.0").await.unwrap().digest(),
        roots[1].digest()
    );
    // Every blob of the copied image is there and verifies.
    let (manifest, _) = crate::surgery::read(&layout, &roots[1]).await;
    for layer in manifest.layers() {
        layout.read_blob(layer).await.unwrap();
    }

    // Unchanged: the layouts' files are not touched.
    let before = stamps(&mirror);
    let again = sync(&source, &SyncDestination::layouts(&mirror), &options())
        .await
        .unwrap();
    assert_eq!(again.count("up-to-date"), 3, "{:?}", statuses(&again));
    assert_eq!(stamps(&mirror), before);

    // A regex, and no signatures: only `latest`.
    let only_latest = SyncSource::repository(
        &format!("{from}/team/app"),
        TagSelection::all().filter("^lat").unwrap(),
    )
    .unwrap();
    let report = sync(
        &only_latest,
        &SyncDestination::layouts(&mirror),
        &options().with_signatures(false),
    )
    .await
    .unwrap();
    assert_eq!(
        statuses(&report),
        [(
            format!("oci:{}:latest", mirror.join("app").display()),
            "copied"
        )]
    );

    // Layouts back to a registry, scoped: each layout under its path.
    let (to, _) = watched_registry().await;
    let back = sync(
        &SyncSource::layouts(dir.path(), TagSelection::all().tags(["latest"])),
        &SyncDestination::registry(&to).unwrap(),
        &options().with_scoped(true),
    )
    .await
    .unwrap();
    assert_eq!(
        statuses(&back),
        [(format!("docker://{to}/mirror/app:latest"), "copied")]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_registry_failing_halfway_fails_one_image_and_a_rerun_finishes() {
    let (from, source) = watched_registry().await;
    let (to, _) = watched_registry().await;
    let roots = populate(&from, "app", &["a", "b", "c"]).await;
    let dir = tempfile::tempdir().unwrap();
    // b's layer: the only blob b does not share with a and c.
    let layout = {
        let scratch = dir.path().join("probe");
        ocikit_transport::copy(
            &docker(&from, "app:b"),
            &at("oci", &scratch, ":b"),
            &CopyOptions::new().with_source(plain()),
        )
        .await
        .unwrap();
        open(&scratch).await
    };
    let (manifest, _) = crate::surgery::read(&layout, &roots[1]).await;
    let layer = manifest.layers()[0].digest().to_string();
    source.break_blob(Some(layer.clone()));

    let request = (
        SyncSource::repository(
            &format!("{from}/app"),
            TagSelection::all().tags(["a", "b", "c", "gone"]),
        )
        .unwrap(),
        SyncDestination::registry(&to).unwrap(),
    );
    let report = sync(&request.0, &request.1, &options().with_signatures(false))
        .await
        .unwrap();
    let failed: Vec<&str> = report
        .failures()
        .iter()
        .map(|e| e.source.as_str())
        .collect();
    assert_eq!(
        failed,
        [
            format!("docker://{from}/app:gone"),
            format!("docker://{from}/app:b")
        ]
    );
    assert!(matches!(
        &report.failures()[0].outcome,
        SyncOutcome::Failed(Error::SyncTagMissing { tag, .. }) if tag == "gone"
    ));
    let SyncOutcome::Failed(error) = &report.failures()[1].outcome else {
        unreachable!()
    };
    let mut chain = error.to_string();
    let mut cause = std::error::Error::source(error);
    while let Some(e) = cause {
        chain.push_str(&format!(": {e}"));
        cause = e.source();
    }
    assert!(chain.contains(&layer), "{chain}");
    assert_eq!(report.count("copied"), 2);

    // The registry mends: the rerun copies b only.
    source.break_blob(None);
    let report = sync(&request.0, &request.1, &options().with_signatures(false))
        .await
        .unwrap();
    assert_eq!(report.count("copied"), 1);
    assert_eq!(report.count("up-to-date"), 2);
    assert_eq!(report.failures().len(), 1, "only the missing tag fails");
    let held = ocikit_transport::inspect_raw(&docker(&to, "app:b"), &plain())
        .await
        .unwrap();
    assert_eq!(
        ocikit_digest::Digest::sha256(&held).to_string(),
        roots[1].digest().to_string()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sync_file_names_registries_repositories_and_selections() {
    let (from, _) = watched_registry().await;
    populate(&from, "team/app", &["1.0.0", "1.2.0", "2.0.0"]).await;
    populate(&from, "tools/cli", &["edge", "stable"]).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sync.yml");
    std::fs::write(
        &file,
        format!(
            "{from}:\n  tls-verify: false\n  images:\n    tools/cli: [stable]\n  \
             images-by-semver:\n    team/app: '>= 1.1, < 2'\n"
        ),
    )
    .unwrap();
    let mirror = dir.path().join("mirror");

    // The plan first: nothing is written.
    let plan = sync(
        &SyncSource::file(&file).unwrap(),
        &SyncDestination::layouts(&mirror),
        &SyncOptions::new()
            .with_source(plain())
            .with_signatures(false)
            .with_dry_run(true),
    )
    .await
    .unwrap();
    assert!(plan.dry_run);
    assert_eq!(
        statuses(&plan),
        [
            (
                format!("oci:{}:1.2.0", mirror.join("app").display()),
                "would-copy"
            ),
            (
                format!("oci:{}:stable", mirror.join("cli").display()),
                "would-copy"
            ),
        ]
    );
    assert!(!mirror.exists(), "a dry run wrote the destination");

    // tls-verify: false comes from the file (the options verify TLS, which fails on plain HTTP).
    let report = sync(
        &SyncSource::file(&file).unwrap(),
        &SyncDestination::layouts(&mirror),
        &SyncOptions::new().with_signatures(false).with_source(
            ocikit_transport::RegistryOptions::new()
                .with_authfile(Some("/nonexistent/ocikit-sync-tests/config.json".into())),
        ),
    )
    .await
    .unwrap();
    assert_eq!(report.count("copied"), 2, "{:?}", statuses(&report));
    assert_eq!(
        open(&mirror.join("cli")).await.tags().await.unwrap().len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_sync_files_sources_and_destinations_are_refused_naming_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let kind = |path: &Path| match SyncSource::file(path) {
        Err(Error::SyncFile(e)) => e,
        other => panic!("{path:?}: {other:?}"),
    };
    let err = kind(&write("bad.yml", "quay.io:\n  images: [unclosed\n"));
    assert!(
        matches!(err.kind(), SyncFileErrorKind::Syntax { .. }),
        "{err:?}"
    );
    assert_eq!(err.path(), dir.path().join("bad.yml"));
    let err = kind(&write(
        "key.yml",
        "quay.io:\n  images:\n    a: []\n  tls_verify: false\n",
    ));
    assert!(
        matches!(err.kind(), SyncFileErrorKind::UnknownKey { key } if key == "tls_verify"),
        "{err:?}"
    );
    assert_eq!(err.line(), Some(4));
    let err = kind(&write(
        "transport.yml",
        "oci:/srv/images:\n  images:\n    a: []\n",
    ));
    assert!(
        matches!(err.kind(), SyncFileErrorKind::UnknownTransport { transport } if transport == "oci"),
        "{err:?}"
    );
    let err = kind(&write(
        "regex.yml",
        "quay.io:\n  images-by-tag-regex:\n    a: '^v(1'\n",
    ));
    assert!(
        matches!(err.kind(), SyncFileErrorKind::TagSelection(_)),
        "{err:?}"
    );
    assert_eq!(err.key(), Some("quay.io.images-by-tag-regex.a"));
    assert!(TagSelection::all().filter("v1.(").is_err());

    assert!(matches!(
        SyncDestination::registry("localhost:5000/mirror:v1"),
        Err(Error::SyncDestination { .. })
    ));
    assert!(matches!(
        SyncSource::repository("localhost:5000", TagSelection::all()),
        Err(Error::Location(_))
    ));
    // A directory with no layout in it.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    assert!(matches!(
        sync(
            &SyncSource::layouts(&empty, TagSelection::all()),
            &SyncDestination::layouts(dir.path().join("out")),
            &options()
        )
        .await,
        Err(Error::NoLayout { .. })
    ));
    assert!(!dir.path().join("out").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn between_registries_a_blob_several_images_share_is_fetched_once() {
    let (from, source) = watched_registry().await;
    let (to, destination) = watched_registry().await;
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("src");
    // Two tags of one image: two manifests to copy, one config and one layer between them.
    let root = small_image(&layout, "a", "shared\n").await;
    for tag in ["a", "b"] {
        copy(
            &at("oci", &layout, ":a"),
            &docker(&from, &format!("app:{tag}")),
            &CopyOptions::new().with_destination(plain()),
        )
        .await
        .unwrap();
    }
    source.reset();
    let report = sync(
        &SyncSource::repository(&format!("{from}/app"), TagSelection::all()).unwrap(),
        &SyncDestination::registry(&to).unwrap(),
        &options().with_jobs(1),
    )
    .await
    .unwrap();
    assert_eq!(report.count("copied"), 2, "{:?}", statuses(&report));
    assert_eq!(source.blob_reads().len(), 2, "{:?}", source.blob_reads());
    let uploads: Vec<String> = destination
        .writes()
        .into_iter()
        .filter(|w| w.starts_with("POST ") && w.contains("/blobs/uploads"))
        .collect();
    assert_eq!(uploads.len(), 2, "{uploads:?}");
    for tag in ["a", "b"] {
        let held = ocikit_transport::inspect_raw(&docker(&to, &format!("app:{tag}")), &plain())
            .await
            .unwrap();
        assert_eq!(
            ocikit_digest::Digest::sha256(&held).to_string(),
            root.digest().to_string()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn between_registries_blobs_stream_and_a_shared_base_layer_moves_once() {
    let (from, source) = watched_registry().await;
    let (to, destination) = watched_registry().await;
    let dir = tempfile::tempdir().unwrap();
    let layout_dir = dir.path().join("src");
    let layout = Layout::create(FsStore::open(&layout_dir).await.unwrap())
        .await
        .unwrap();
    // Four images: one 2 MiB base layer (incompressible), and a small layer of their own.
    let base = tempfile::tempdir().unwrap();
    let noise: Vec<u8> = (0..2u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(base.path().join("base.bin"), &noise).unwrap();
    let tags = ["t1", "t2", "t3", "t4"];
    for tag in tags {
        let own = tempfile::tempdir().unwrap();
        std::fs::write(own.path().join("own.txt"), tag).unwrap();
        let mut builder = ImageBuilder::new(&layout);
        builder.platform(&ocikit_digest::platform::parse("linux/amd64").unwrap());
        for tree in [base.path(), own.path()] {
            builder
                .add_layer_from_dir(tree, LayerSpec::new())
                .await
                .unwrap();
        }
        builder.write_and_tag(tag).await.unwrap();
        copy(
            &at("oci", &layout_dir, &format!(":{tag}")),
            &docker(&from, &format!("app:{tag}")),
            &CopyOptions::new().with_destination(plain()),
        )
        .await
        .unwrap();
    }
    source.reset();
    destination.reset();
    let report = sync(
        &SyncSource::repository(&format!("{from}/app"), TagSelection::all()).unwrap(),
        &SyncDestination::registry(&to).unwrap(),
        &options().with_jobs(4),
    )
    .await
    .unwrap();
    assert_eq!(report.count("copied"), 4, "{:?}", statuses(&report));
    // Nine blobs (the base, four layers and four configs of their own): each read from
    // the source once and uploaded once, however many images wanted it at once.
    let reads = source.blob_reads();
    let mut distinct = reads.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!((reads.len(), distinct.len()), (9, 9), "{reads:?}");
    let uploads = destination
        .writes()
        .into_iter()
        .filter(|w| w.starts_with("POST ") && w.contains("/blobs/uploads"))
        .count();
    assert_eq!(uploads, 9, "{:?}", destination.writes());
    let copied: usize = report
        .entries
        .iter()
        .map(|e| match &e.outcome {
            SyncOutcome::Copied(r) => r.blobs_copied,
            _ => 0,
        })
        .sum();
    assert_eq!(copied, 9);
    // Nothing passed through a layout here: what the destination holds is the source's,
    // byte for byte (read back through the registry, each blob verified).
    for tag in tags {
        let back = dir.path().join(format!("back-{tag}"));
        copy(
            &docker(&to, &format!("app:{tag}")),
            &at("oci", &back, &format!(":{tag}")),
            &CopyOptions::new().with_source(plain()),
        )
        .await
        .unwrap();
        let held = ocikit_transport::inspect_raw(&docker(&to, &format!("app:{tag}")), &plain())
            .await
            .unwrap();
        let original =
            ocikit_transport::inspect_raw(&docker(&from, &format!("app:{tag}")), &plain())
                .await
                .unwrap();
        assert_eq!(held, original, "{tag}");
    }
    // The rerun: HEADs only at the destination (and the insecure client's probe of
    // `/v2/`), nothing written.
    destination.reset();
    let again = sync(
        &SyncSource::repository(&format!("{from}/app"), TagSelection::all()).unwrap(),
        &SyncDestination::registry(&to).unwrap(),
        &options().with_jobs(4),
    )
    .await
    .unwrap();
    assert_eq!(again.count("up-to-date"), 4, "{:?}", statuses(&again));
    assert!(
        destination.writes().is_empty(),
        "{:?}",
        destination.writes()
    );
    let asked = destination.requests.lock().unwrap().clone();
    assert!(
        asked
            .iter()
            .all(|r| r.starts_with("HEAD ") || r == "GET /v2/"),
        "{asked:?}"
    );
    assert_eq!(asked.iter().filter(|r| r.starts_with("HEAD ")).count(), 4);
}
