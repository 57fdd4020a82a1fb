//! Three registry replicas on one S3 bucket (moto, started by the tests), each with S3
//! stores of its own as separate processes would have: concurrent tag pushes and deletes
//! across replicas, a chunked upload whose PATCHes go to three replicas, referrers and the
//! catalog seen from every replica right after the write (the consistency model of
//! docs/replicas.md); and garbage collection with replicas running: one collector at a time
//! through the lease, the lease renewed while collecting, taken over once expired, refused
//! when garbage, a re-upload and a mount renewing the grace period, and the torture test
//! (pushes through two replicas while the third collects, repeatedly).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::stream::BoxStream;
use ocikit_digest::Digest;
use ocikit_registry::lease::LEASE_KEY;
use ocikit_registry::{Config, Error, GcLeaseError, GcOptions, LeaseOptions, Registry};
use ocikit_store::{DocumentKey, Precondition, S3Store, Store};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::*;

/// A replica's content store and upload store.
type Stores = (Arc<dyn Store>, Arc<dyn Store>);

/// Three replicas' stores on one fresh bucket, or `None` without moto (never under CI).
fn fleet_stores() -> Option<Vec<Stores>> {
    let moto = ocikit_testkit::moto::shared()?;
    let bucket = moto.bucket();
    Some(
        (0..3)
            .map(|_| {
                let content: Arc<dyn Store> =
                    Arc::new(S3Store::new(s3_config(moto, &bucket, "registry/content")).unwrap());
                let uploads: Arc<dyn Store> =
                    Arc::new(S3Store::new(s3_config(moto, &bucket, "registry/uploads")).unwrap());
                (content, uploads)
            })
            .collect(),
    )
}

/// Three replicas serving one bucket.
async fn fleet() -> Option<Vec<Arc<Server>>> {
    let mut servers = Vec::new();
    for (content, uploads) in fleet_stores()? {
        let registry = Registry::new(content, uploads, Config::default()).unwrap();
        servers.push(Arc::new(Server::start(registry).await));
    }
    Some(servers)
}

async fn tags(s: &Server, name: &str) -> BTreeSet<String> {
    let resp = s.send(Method::GET, &format!("/v2/{name}/tags/list")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    body["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect()
}

/// Pushes config and one layer through `s` and a manifest tagged `tag`; returns the
/// manifest's digest and bytes.
async fn push_small_image(s: &Server, name: &str, tag: &str, seed: u8) -> (Digest, Vec<u8>) {
    let config = format!("{{\"image\":\"{name}:{tag}:{seed}\"}}").into_bytes();
    let c = s.push_blob(name, &config).await;
    let layer = data(3000 + seed as usize, seed);
    let l = s.push_blob(name, &layer).await;
    let manifest = image_manifest((&c, config.len()), &[(&l, layer.len())]);
    let resp = s.put_manifest(name, tag, MANIFEST, &manifest).await;
    assert_eq!(resp.status(), StatusCode::CREATED, "{name}:{tag}");
    (Digest::sha256(&manifest), manifest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_on_one_bucket_agree_right_after_each_write() {
    let Some(fleet) = fleet().await else {
        return;
    };

    // A chunked upload whose PATCHes go to three replicas, closed on a fourth request.
    let blob = data(150_000, 9);
    let digest = Digest::sha256(&blob);
    let loc = fleet[0].start_upload("chunked").await;
    for (i, range) in [0..50_000, 50_000..100_000, 100_000..150_000]
        .into_iter()
        .enumerate()
    {
        let resp = fleet[i]
            .request(Method::PATCH, &loc)
            .header(
                "content-range",
                format!("{}-{}", range.start, range.end - 1),
            )
            .body(blob[range].to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::ACCEPTED, "PATCH on replica {i}");
        // Every replica reports the session's progress so far.
        let status = fleet[(i + 1) % 3].send(Method::GET, &loc).await;
        assert_eq!(status.status(), StatusCode::NO_CONTENT);
        assert_eq!(
            header(&status, "range"),
            format!("0-{}", (i + 1) * 50_000 - 1)
        );
    }
    let resp = fleet[1]
        .send(Method::PUT, &with_digest(&loc, &digest))
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    for s in &fleet {
        let resp = s
            .send(Method::GET, &format!("/v2/chunked/blobs/{digest}"))
            .await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.bytes().await.unwrap(), &blob[..]);
    }

    // Concurrent tag pushes and deletes across replicas: 3 repositories, 24 tags pushed by
    // 12 clients, every third one then deleted through another replica.
    let mut tasks = Vec::new();
    for client in 0..12usize {
        let fleet = fleet.clone();
        tasks.push(tokio::spawn(async move {
            let mut kept = Vec::new();
            for round in 0..2usize {
                let n = client * 2 + round;
                let name = format!("app{}", n % 3);
                let tag = format!("t{n:02}");
                let pusher = &fleet[n % 3];
                let (manifest, _) = push_small_image(pusher, &name, &tag, n as u8).await;
                if n % 3 == 0 {
                    // Deleted through the next replica, right after the push.
                    let deleter = &fleet[(n + 1) % 3];
                    let resp = deleter
                        .send(Method::DELETE, &format!("/v2/{name}/manifests/{tag}"))
                        .await;
                    assert_eq!(resp.status(), StatusCode::ACCEPTED, "{name}:{tag}");
                    let resp = fleet[(n + 2) % 3]
                        .send(Method::HEAD, &format!("/v2/{name}/manifests/{tag}"))
                        .await;
                    assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{name}:{tag}");
                } else {
                    // Read back through another replica, right after the push.
                    let resp = fleet[(n + 1) % 3]
                        .send(Method::GET, &format!("/v2/{name}/manifests/{tag}"))
                        .await;
                    assert_eq!(resp.status(), StatusCode::OK, "{name}:{tag}");
                    assert_eq!(header(&resp, "docker-content-digest"), manifest.as_str());
                    kept.push((name, tag));
                }
            }
            kept
        }));
    }
    let mut expected: std::collections::BTreeMap<String, BTreeSet<String>> = Default::default();
    for task in tasks {
        for (name, tag) in task.await.unwrap() {
            expected.entry(name).or_default().insert(tag);
        }
    }
    assert_eq!(expected.values().map(BTreeSet::len).sum::<usize>(), 16);
    for s in &fleet {
        for (name, want) in &expected {
            assert_eq!(&tags(s, name).await, want, "{name} from {}", s.base);
        }
    }

    // Referrers: an artifact pushed through one replica is listed by the others at once.
    let (subject, subject_bytes) = push_small_image(&fleet[0], "signed", "v1", 200).await;
    let empty = ocikit_digest::digest::EMPTY_JSON_SHA256;
    fleet[2].push_blob("signed", b"{}").await;
    let artifact = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": MANIFEST,
        "artifactType": "application/vnd.example.sig",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2}],
        "subject": {"mediaType": MANIFEST, "digest": subject.as_str(), "size": subject_bytes.len()},
    }))
    .unwrap();
    let artifact_digest = Digest::sha256(&artifact);
    let resp = fleet[2]
        .put_manifest("signed", artifact_digest.as_str(), MANIFEST, &artifact)
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    for s in &fleet {
        let resp = s
            .send(Method::GET, &format!("/v2/signed/referrers/{subject}"))
            .await;
        assert_eq!(resp.status(), StatusCode::OK);
        let body: Value = resp.json().await.unwrap();
        let listed: Vec<&str> = body["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["digest"].as_str().unwrap())
            .collect();
        assert_eq!(listed, [artifact_digest.as_str()], "from {}", s.base);
    }
    // Deleted through another replica: gone from every replica's list.
    let resp = fleet[1]
        .send(
            Method::DELETE,
            &format!("/v2/signed/manifests/{artifact_digest}"),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    for s in &fleet {
        let resp = s
            .send(Method::GET, &format!("/v2/signed/referrers/{subject}"))
            .await;
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["manifests"], json!([]), "from {}", s.base);
    }

    // The catalog: every repository, whichever replica created it, from every replica.
    let want: Vec<&str> = vec!["app0", "app1", "app2", "chunked", "signed"];
    for s in &fleet {
        let resp = s.send(Method::GET, "/v2/_catalog").await;
        assert_eq!(resp.status(), StatusCode::OK);
        let body: Value = resp.json().await.unwrap();
        let names: Vec<&str> = body["repositories"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap())
            .collect();
        assert_eq!(names, want, "from {}", s.base);
    }
    for s in fleet {
        Arc::into_inner(s).unwrap().stop().await;
    }
}

/// Collect what is old: a grace period of two seconds (S3 keeps write times in whole
/// seconds), a short lease.
fn replica_gc(holder: &str) -> GcOptions {
    GcOptions::new().grace(Duration::from_secs(2)).lease(Some(
        LeaseOptions::new()
            .holder(holder)
            .ttl(Duration::from_millis(800)),
    ))
}

async fn lease_document(store: &dyn Store) -> Option<Value> {
    let doc = store
        .read_document(&DocumentKey::new(LEASE_KEY).unwrap())
        .await
        .unwrap()?;
    Some(serde_json::from_slice(&doc.bytes).unwrap())
}

/// A store whose blob listing (the sweep's) is slow: a collection on it lasts longer than
/// its lease's TTL.
#[derive(Debug)]
struct SlowListing {
    inner: Arc<dyn Store>,
    delay: Duration,
}

#[async_trait::async_trait]
impl Store for SlowListing {
    async fn stat(&self, digest: &Digest) -> ocikit_store::Result<Option<u64>> {
        self.inner.stat(digest).await
    }
    async fn get(
        &self,
        digest: &Digest,
        range: Option<std::ops::Range<u64>>,
    ) -> ocikit_store::Result<Option<ocikit_store::Blob>> {
        self.inner.get(digest, range).await
    }
    async fn stage(&self) -> ocikit_store::Result<Box<dyn ocikit_store::Staging>> {
        self.inner.stage().await
    }
    async fn written_at(&self, digest: &Digest) -> ocikit_store::Result<Option<SystemTime>> {
        self.inner.written_at(digest).await
    }
    async fn delete(&self, digest: &Digest) -> ocikit_store::Result<bool> {
        self.inner.delete(digest).await
    }
    fn list(&self) -> BoxStream<'_, ocikit_store::Result<Digest>> {
        use futures::StreamExt;
        let delay = self.delay;
        futures::stream::once(tokio::time::sleep(delay))
            .flat_map(move |()| self.inner.list())
            .boxed()
    }
    async fn read_document(
        &self,
        key: &DocumentKey,
    ) -> ocikit_store::Result<Option<ocikit_store::Document>> {
        self.inner.read_document(key).await
    }
    async fn write_document(
        &self,
        key: &DocumentKey,
        bytes: Bytes,
        precondition: Precondition,
    ) -> ocikit_store::Result<ocikit_store::Version> {
        self.inner.write_document(key, bytes, precondition).await
    }
    async fn delete_document(
        &self,
        key: &DocumentKey,
        precondition: Precondition,
    ) -> ocikit_store::Result<bool> {
        self.inner.delete_document(key, precondition).await
    }
    async fn list_documents(&self, prefix: &str) -> ocikit_store::Result<Vec<DocumentKey>> {
        self.inner.list_documents(prefix).await
    }
}

/// Pushes `bytes` into `name` and unlinks it again: a blob nothing references.
async fn garbage(s: &Server, name: &str, bytes: &[u8]) -> Digest {
    let digest = s.push_blob(name, bytes).await;
    let resp = s
        .send(Method::DELETE, &format!("/v2/{name}/blobs/{digest}"))
        .await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    digest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_collector_at_a_time_across_replicas() {
    let Some(stores) = fleet_stores() else {
        return;
    };
    let [(c0, u0), (c1, u1), (c2, u2)] = <[_; 3]>::try_from(stores).unwrap();
    // Replica 0's collections list blobs slowly: each lasts over twice its lease's TTL.
    let slow: Arc<dyn Store> = Arc::new(SlowListing {
        inner: c0,
        delay: Duration::from_millis(2000),
    });
    let r0 = Server::start(Registry::new(slow, u0, Config::default()).unwrap()).await;
    let r1 = Server::start(Registry::new(c1.clone(), u1, Config::default()).unwrap()).await;
    let r2 = Registry::new(c2, u2, Config::default()).unwrap();
    let old = garbage(&r1, "app", &data(4000, 1)).await;
    tokio::time::sleep(Duration::from_millis(3100)).await;

    // Replica 0 collects; while it does, replicas 1 and 2 try and are refused, again and
    // again past the TTL (it is renewed meanwhile), and delete nothing.
    let collecting = {
        let registry = r0.registry.clone();
        tokio::spawn(async move { registry.gc(&replica_gc("replica-0")).await })
    };
    ocikit_testkit::poll::eventually("replica 0 holds the lease", Duration::from_secs(10), || {
        let store = c1.clone();
        async move { lease_document(store.as_ref()).await }
    })
    .await;
    let mut refused = 0;
    let mut expiries = BTreeSet::new();
    while !collecting.is_finished() {
        for (registry, holder) in [(&r1.registry, "replica-1"), (&r2, "replica-2")] {
            match registry.gc(&replica_gc(holder)).await {
                Err(Error::GcLease(GcLeaseError::Held { holder, .. })) => {
                    assert_eq!(holder, "replica-0");
                    refused += 1;
                }
                // Replica 0 released the lease between the check and this attempt (what it
                // collected is gone already).
                Ok(report) => {
                    assert!(report.blobs_removed.is_empty(), "{report:?}");
                    break;
                }
                other => panic!("{holder}: {other:?}"),
            }
        }
        if let Some(lease) = lease_document(c1.as_ref()).await {
            expiries.insert(lease["expires_ms"].as_u64().unwrap());
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let report = collecting.await.unwrap().unwrap();
    assert_eq!(report.blobs_removed, vec![old.clone()]);
    assert!(refused >= 4, "refused {refused} times");
    assert!(expiries.len() >= 2, "the lease was renewed: {expiries:?}");
    // Released at the end: the next collector takes it at once.
    assert_eq!(lease_document(c1.as_ref()).await, None);
    r1.registry.gc(&replica_gc("replica-1")).await.unwrap();

    // A holder that died: its lease expired a while ago; the next collector takes over.
    let key = DocumentKey::new(LEASE_KEY).unwrap();
    let now = ocikit_store::Clock::system().now_unix_ms();
    let dead =
        json!({"holder": "replica-dead", "acquired_ms": now - 90_000, "expires_ms": now - 30_000});
    c1.write_document(
        &key,
        serde_json::to_vec(&dead).unwrap().into(),
        Precondition::None,
    )
    .await
    .unwrap();
    let report = r2.gc(&replica_gc("replica-2")).await.unwrap();
    assert_eq!(
        report.lease_taken_over_from.as_deref(),
        Some("replica-dead")
    );
    assert_eq!(lease_document(c1.as_ref()).await, None);

    // One whose lease is still running is not taken over.
    let alive = json!({"holder": "replica-busy", "acquired_ms": now, "expires_ms": now + 60_000});
    c1.write_document(
        &key,
        serde_json::to_vec(&alive).unwrap().into(),
        Precondition::None,
    )
    .await
    .unwrap();
    let victim = garbage(&r1, "app", &data(4000, 2)).await;
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let err = r2.gc(&replica_gc("replica-2")).await.unwrap_err();
    assert!(
        matches!(&err, Error::GcLease(GcLeaseError::Held { holder, remaining_ms, .. })
            if holder == "replica-busy" && *remaining_ms > 50_000),
        "{err:?}"
    );
    assert!(c1.stat(&victim).await.unwrap().is_some(), "nothing deleted");

    // A lease document that is garbage: refused, left as it is, nothing deleted.
    for junk in [
        &b"{\"holder\":"[..],
        b"[]",
        br#"{"holder":"x","acquired_ms":1,"expires_ms":"soon"}"#,
    ] {
        c1.write_document(&key, Bytes::copy_from_slice(junk), Precondition::None)
            .await
            .unwrap();
        let err = r2.gc(&replica_gc("replica-2")).await.unwrap_err();
        assert!(
            matches!(&err, Error::GcLease(GcLeaseError::Corrupt { .. })),
            "{err:?}"
        );
        let doc = c1.read_document(&key).await.unwrap().unwrap();
        assert_eq!(doc.bytes, junk);
        assert!(c1.stat(&victim).await.unwrap().is_some(), "nothing deleted");
    }
    // A dry run takes no lease, so it reports despite the junk.
    let dry = r2.gc(&replica_gc("replica-2").dry_run(true)).await.unwrap();
    assert_eq!(dry.blobs_removed, vec![victim.clone()]);
    // Once an operator removes it, collections resume.
    c1.delete_document(&key, Precondition::None).await.unwrap();
    let report = r2.gc(&replica_gc("replica-2")).await.unwrap();
    assert_eq!(report.blobs_removed, vec![victim]);
    r0.stop().await;
    r1.stop().await;
}

/// On S3, a blob uploaded again or mounted from another repository counts as written at
/// that moment: a collection keeps it for the grace period even when nothing references it
/// (a client pushing an image references it a moment later), and removes it after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reupload_and_a_mount_renew_the_grace_period_on_s3() {
    let Some(fleet) = fleet().await else {
        return;
    };
    let grace = Duration::from_secs(3);
    let options = GcOptions::new().grace(grace);
    let reuploaded = data(6000, 31);
    let mounted = data(6000, 32);
    let r = garbage(&fleet[0], "first", &reuploaded).await;
    let m = fleet[0].push_blob("source", &mounted).await;
    tokio::time::sleep(grace + Duration::from_millis(1100)).await;

    // Uploaded again through another replica (then unlinked: nothing references it), and
    // mounted into another repository (then both links removed).
    assert_eq!(garbage(&fleet[1], "second", &reuploaded).await, r);
    let resp = fleet[2]
        .send(
            Method::POST,
            &format!("/v2/target/blobs/uploads/?mount={m}&from=source"),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    for name in ["source", "target"] {
        let resp = fleet[0]
            .send(Method::DELETE, &format!("/v2/{name}/blobs/{m}"))
            .await;
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
    }
    let store = fleet[0].registry.store();
    let report = fleet[1].registry.gc(&options).await.unwrap();
    assert!(report.blobs_removed.is_empty(), "{report:?}");
    assert!(report.blobs_kept_young.contains(&r), "{report:?}");
    assert!(report.blobs_kept_young.contains(&m), "{report:?}");
    assert!(store.stat(&r).await.unwrap().is_some());
    assert!(store.stat(&m).await.unwrap().is_some());

    // A grace period later both go, and the mount's marker with them.
    tokio::time::sleep(grace + Duration::from_millis(1100)).await;
    let report = fleet[2].registry.gc(&options).await.unwrap();
    let mut want = vec![r, m];
    want.sort();
    assert_eq!(report.blobs_removed, want);
    assert_eq!(
        store
            .list_documents(ocikit_registry::gc::TOUCHED_PREFIX)
            .await
            .unwrap(),
        Vec::<DocumentKey>::new()
    );
    for s in fleet {
        Arc::into_inner(s).unwrap().stop().await;
    }
}

/// What one pusher did.
#[derive(Default)]
struct Pushed {
    /// Manifests pushed successfully: repository and the blobs they reference.
    manifests: Vec<(String, Digest, Vec<Digest>)>,
    /// Requests refused with a proper error response (a blob collected under the push).
    clean_failures: usize,
}

/// Sends `request`; `Ok(response)` when the status is `want`, `Err(())` for a clean failure
/// (an error status with the spec's JSON error body); panics on anything else, and on a
/// request that does not complete in 20 s.
async fn expect(
    request: reqwest::RequestBuilder,
    want: StatusCode,
) -> Result<reqwest::Response, ()> {
    let resp = tokio::time::timeout(Duration::from_secs(20), request.send())
        .await
        .expect("the request completes")
        .unwrap();
    if resp.status() == want {
        return Ok(resp);
    }
    let status = resp.status();
    assert!(
        status.is_client_error() || status.is_server_error(),
        "{status}"
    );
    let body: Value = resp.json().await.expect("an error body");
    assert!(body["errors"][0]["code"].is_string(), "{body}");
    Err(())
}

/// Pushes a blob by POST then PUT through `s`; `false` on a clean failure.
async fn try_push_blob(s: &Server, name: &str, bytes: &[u8]) -> bool {
    let digest = Digest::sha256(bytes);
    let Ok(resp) = expect(
        s.request(Method::POST, &format!("/v2/{name}/blobs/uploads/")),
        StatusCode::ACCEPTED,
    )
    .await
    else {
        return false;
    };
    let loc = location(&resp);
    expect(
        s.request(Method::PUT, &with_digest(&loc, &digest))
            .header("content-type", "application/octet-stream")
            .body(bytes.to_vec()),
        StatusCode::CREATED,
    )
    .await
    .is_ok()
}

/// The torture test: two replicas take pushes (re-uploading and mounting old garbage the
/// collector is sweeping, overwriting tags) while the third collects, again and again, under
/// the lease. Every push completes or fails cleanly, and every manifest pushed successfully
/// has every blob readable afterwards, through either replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_through_two_replicas_while_the_third_collects() {
    let Some(fleet) = fleet().await else {
        return;
    };
    const GRACE: Duration = Duration::from_secs(2);
    let started = std::time::Instant::now();
    // Old garbage: pushed into `old`, unlinked, and older than the grace period once the
    // pushers start; the pushers reuse half of it (uploaded again or mounted from `old`,
    // whose links the collector is removing) and never touch the rest.
    let garbage_blobs: Vec<Vec<u8>> = (0..12).map(|i| data(8000 + i * 10, 60 + i as u8)).collect();
    for (i, g) in garbage_blobs.iter().enumerate() {
        if i % 2 == 0 {
            fleet[0].push_blob("old", g).await; // linked in `old`, mountable
        } else {
            garbage(&fleet[0], "old", g).await;
        }
    }
    tokio::time::sleep(GRACE + Duration::from_millis(1100)).await;

    let done = Arc::new(AtomicBool::new(false));
    let runs = Arc::new(AtomicUsize::new(0));
    let collector = {
        let s = fleet[2].clone();
        let (done, runs) = (done.clone(), runs.clone());
        tokio::spawn(async move {
            let mut removed = BTreeSet::new();
            while !done.load(Ordering::SeqCst) {
                let options = replica_gc("collector").delete_untagged(false);
                match s.registry.gc(&options).await {
                    Ok(report) => removed.extend(report.blobs_removed),
                    Err(Error::GcLease(GcLeaseError::Held { .. })) => {}
                    Err(e) => panic!("collection failed: {e:?}"),
                }
                runs.fetch_add(1, Ordering::SeqCst);
            }
            removed
        })
    };
    let mut pushers = Vec::new();
    for p in 0..4usize {
        let s = fleet[p % 2].clone();
        let garbage_blobs = garbage_blobs.clone();
        pushers.push(tokio::spawn(async move {
            let mut pushed = Pushed::default();
            let name = format!("app{p}");
            for i in 0..6usize {
                // Garbage 0, 2, 4 are linked in `old`: mounted from there while the link
                // lasts, uploaded again once the collector removed it; 1, 3, 5 uploaded again.
                let k = (p + i) % 6;
                let reused = &garbage_blobs[k];
                let reused_digest = Digest::sha256(reused);
                let linked = if k % 2 == 0 {
                    let mount = format!("/v2/{name}/blobs/uploads/?mount={reused_digest}&from=old");
                    let resp = tokio::time::timeout(
                        Duration::from_secs(20),
                        s.request(Method::POST, &mount).send(),
                    )
                    .await
                    .expect("the mount completes")
                    .unwrap();
                    match resp.status() {
                        StatusCode::CREATED => true,
                        // No link to mount from any more: a session instead, abandoned.
                        StatusCode::ACCEPTED => try_push_blob(&s, &name, reused).await,
                        status => panic!("mount: {status}"),
                    }
                } else {
                    try_push_blob(&s, &name, reused).await
                };
                let own = data(5000 + i, (p * 16 + i) as u8);
                let config = format!("{{\"p\":{p},\"i\":{i}}}").into_bytes();
                let ok = linked
                    && try_push_blob(&s, &name, &own).await
                    && try_push_blob(&s, &name, &config).await;
                if !ok {
                    pushed.clean_failures += 1;
                    continue;
                }
                let own_digest = Digest::sha256(&own);
                let config_digest = Digest::sha256(&config);
                let manifest = image_manifest(
                    (&config_digest, config.len()),
                    &[(&reused_digest, reused.len()), (&own_digest, own.len())],
                );
                match expect(
                    s.request(Method::PUT, &format!("/v2/{name}/manifests/t{}", i % 3))
                        .header("content-type", MANIFEST)
                        .body(manifest.clone()),
                    StatusCode::CREATED,
                )
                .await
                {
                    Ok(_) => pushed.manifests.push((
                        name.clone(),
                        Digest::sha256(&manifest),
                        vec![config_digest, reused_digest, own_digest],
                    )),
                    Err(()) => pushed.clean_failures += 1,
                }
            }
            pushed
        }));
    }
    let mut manifests = Vec::new();
    let mut clean_failures = 0;
    for pusher in pushers {
        let pushed = pusher.await.unwrap();
        manifests.extend(pushed.manifests);
        clean_failures += pushed.clean_failures;
    }
    // Let the collector run once more after the last push, then stop it.
    let after = runs.load(Ordering::SeqCst);
    ocikit_testkit::poll::eventually("one more collection", Duration::from_secs(30), || {
        let runs = runs.clone();
        async move { (runs.load(Ordering::SeqCst) > after + 1).then_some(()) }
    })
    .await;
    done.store(true, Ordering::SeqCst);
    let removed = collector.await.unwrap();
    assert!(
        runs.load(Ordering::SeqCst) >= 3,
        "collections: {}",
        runs.load(Ordering::SeqCst)
    );
    // The garbage no pusher reused is gone (it was old before the pushes began).
    for (i, g) in garbage_blobs.iter().enumerate().skip(6) {
        if i % 2 == 1 {
            assert!(
                removed.contains(&Digest::sha256(g)),
                "garbage {i} was not collected"
            );
        }
    }
    assert!(
        manifests.len() + clean_failures == 24 && manifests.len() >= 12,
        "{} pushed, {clean_failures} failed cleanly",
        manifests.len()
    );
    // Every manifest pushed successfully: readable by digest, with every blob, through both
    // pushing replicas.
    for (name, manifest, blobs) in &manifests {
        for s in &fleet[..2] {
            let resp = s
                .send(Method::GET, &format!("/v2/{name}/manifests/{manifest}"))
                .await;
            assert_eq!(resp.status(), StatusCode::OK, "{name}@{manifest}");
            for blob in blobs {
                let resp = s
                    .send(Method::GET, &format!("/v2/{name}/blobs/{blob}"))
                    .await;
                assert_eq!(resp.status(), StatusCode::OK, "{name}@{manifest}: {blob}");
                let bytes = resp.bytes().await.unwrap();
                assert_eq!(&Digest::sha256(&bytes), blob);
            }
        }
    }
    eprintln!(
        "torture: {} manifests pushed, {clean_failures} pushes failed cleanly, {} collections, \
         {} blobs removed, {:?}",
        manifests.len(),
        runs.load(Ordering::SeqCst),
        removed.len(),
        started.elapsed()
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
    for s in fleet {
        Arc::into_inner(s).unwrap().stop().await;
    }
}

/// A collector whose lease is taken from it while it collects (its holder judged dead by
/// another, as after a long pause) stops before its next deletion, and leaves the new
/// holder's lease alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_loses_its_lease_stops_before_deleting() {
    use ocikit_store::{MemoryStore, StoreExt};
    let content: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let slow: Arc<dyn Store> = Arc::new(SlowListing {
        inner: content.clone(),
        delay: Duration::from_millis(1500),
    });
    let registry = Registry::new(slow, Arc::new(MemoryStore::new()), Config::default()).unwrap();
    let orphan = content.put_bytes(b"nobody links me").await.unwrap();
    let options = GcOptions::new()
        .grace(Duration::ZERO)
        .clock(ocikit_registry::Clock::from_fn(|| {
            SystemTime::now() + Duration::from_secs(1)
        }))
        .lease(Some(
            LeaseOptions::new()
                .holder("paused")
                .ttl(Duration::from_millis(400)),
        ));
    let collecting = {
        let registry = registry.clone();
        let options = options.clone();
        tokio::spawn(async move { registry.gc(&options).await })
    };
    ocikit_testkit::poll::eventually("the lease is taken", Duration::from_secs(10), || {
        let store = content.clone();
        async move { lease_document(store.as_ref()).await }
    })
    .await;
    let now = ocikit_store::Clock::system().now_unix_ms();
    let usurper = json!({"holder": "usurper", "acquired_ms": now, "expires_ms": now + 60_000});
    content
        .write_document(
            &DocumentKey::new(LEASE_KEY).unwrap(),
            serde_json::to_vec(&usurper).unwrap().into(),
            Precondition::None,
        )
        .await
        .unwrap();
    let err = collecting.await.unwrap().unwrap_err();
    assert!(
        matches!(&err, Error::GcLease(GcLeaseError::Lost { holder, taken_by })
            if holder == "paused" && taken_by.as_deref() == Some("usurper")),
        "{err:?}"
    );
    assert!(
        content.stat(&orphan).await.unwrap().is_some(),
        "deleted after losing the lease"
    );
    assert_eq!(lease_document(content.as_ref()).await, Some(usurper));
    // Without the usurper, the same collection removes it.
    content
        .delete_document(&DocumentKey::new(LEASE_KEY).unwrap(), Precondition::None)
        .await
        .unwrap();
    let report = registry.gc(&options).await.unwrap();
    assert_eq!(report.blobs_removed, vec![orphan]);
}
