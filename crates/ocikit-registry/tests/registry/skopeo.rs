//! The real `skopeo` pushes an OCI layout image into the server and pulls it back, digests
//! preserved.

use std::io::Write;
use std::path::Path;

use ocikit_digest::{Digest, media_type};
use ocikit_layout::Layout;
use ocikit_registry::Registry;
use ocikit_store::FsStore;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::*;

/// A gzip-compressed tar layer with one file, made with the `tar` and `flate2` crates.
fn layer() -> (Vec<u8>, Digest) {
    let mut tar = tar::Builder::new(Vec::new());
    let content = b"hello from the registry test\n";
    let mut header = tar::Header::new_gnu();
    header.set_size(content.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(1_700_000_000);
    header.set_cksum();
    tar.append_data(&mut header, "etc/greeting", &content[..])
        .unwrap();
    let tar = tar.into_inner().unwrap();
    let diff_id = Digest::sha256(&tar);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).unwrap();
    (gz.finish().unwrap(), diff_id)
}

async fn build_layout(dir: &Path) -> (Vec<u8>, Digest) {
    let layout = Layout::create(FsStore::open(dir).await.unwrap())
        .await
        .unwrap();
    let (blob, diff_id) = layer();
    let layer = layout
        .put_blob(media_type::IMAGE_LAYER_GZIP, &blob)
        .await
        .unwrap();
    let config = json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/true"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id.as_str()]},
    });
    let config = layout
        .put_json(media_type::IMAGE_CONFIG, &config)
        .await
        .unwrap();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": media_type::IMAGE_MANIFEST,
        "config": config,
        "layers": [layer],
        "annotations": {"org.opencontainers.image.title": "registry test"},
    });
    let manifest = layout
        .put_json(media_type::IMAGE_MANIFEST, &manifest)
        .await
        .unwrap();
    layout.set_tag("v1", &manifest).await.unwrap();
    let digest: Digest = manifest.digest().to_string().parse().unwrap();
    let bytes = std::fs::read(dir.join(digest.blob_path())).unwrap();
    (bytes, digest)
}

/// skopeo with `args` (a copy with `--preserve-digests` unless the first is another
/// command), expected to succeed; its stdout.
async fn skopeo(args: &[&str]) -> String {
    let skopeo = ocikit_testkit::tool::skopeo().expect("skopeo is installed");
    if args[0] != "list-tags" && args[0] != "delete" && args[0] != "inspect" {
        let mut copy = vec!["copy", "--preserve-digests"];
        copy.extend_from_slice(args);
        return skopeo.ok_async(&copy).await;
    }
    skopeo.ok_async(args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_pushes_and_pulls_back() {
    // CI installs skopeo (`cargo xtask install-tools`); there it must run.
    if ocikit_testkit::tool::skopeo().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source");
    let (manifest, digest) = build_layout(&source).await;
    let s = Server::start(Registry::open(dir.path().join("registry")).await.unwrap()).await;
    let host = s.base.trim_start_matches("http://").to_owned();

    let src = format!("oci:{}:v1", source.display());
    let dest = format!("docker://{host}/library/app:v1");
    skopeo(&["--dest-tls-verify=false", &src, &dest]).await;

    // Served byte for byte, under the same digest.
    let resp = s
        .request(Method::GET, "/v2/library/app/manifests/v1")
        .header("accept", MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, "docker-content-digest"), digest.as_str());
    assert_eq!(header(&resp, "content-type"), MANIFEST);
    assert_eq!(resp.bytes().await.unwrap(), &manifest[..]);

    // And back into a new layout.
    let back = dir.path().join("back");
    let dest = format!("oci:{}:v1", back.display());
    let src = format!("docker://{host}/library/app:v1");
    skopeo(&["--src-tls-verify=false", &src, &dest]).await;
    let pulled = std::fs::read(back.join(digest.blob_path())).unwrap();
    assert_eq!(pulled, manifest);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(back.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["digest"], digest.as_str());
    let m: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    for blob in [&m["config"], &m["layers"][0]] {
        let d: Digest = blob["digest"].as_str().unwrap().parse().unwrap();
        let original = std::fs::read(source.join(d.blob_path())).unwrap();
        let copied = std::fs::read(back.join(d.blob_path())).unwrap();
        assert_eq!(original, copied);
    }

    // Registry to registry (skopeo offers a cross-repository mount for each blob), then
    // list-tags, inspect and delete.
    let other = format!("docker://{host}/other/app:copy");
    skopeo(&[
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        &src,
        &other,
    ])
    .await;
    let resp = s.send(Method::GET, "/v2/other/app/manifests/copy").await;
    assert_eq!(header(&resp, "docker-content-digest"), digest.as_str());
    for blob in [&m["config"], &m["layers"][0]] {
        let resp = s
            .send(
                Method::HEAD,
                &format!("/v2/other/app/blobs/{}", blob["digest"].as_str().unwrap()),
            )
            .await;
        assert_eq!(resp.status(), StatusCode::OK);
    }
    let tags = skopeo(&[
        "list-tags",
        "--tls-verify=false",
        &format!("docker://{host}/library/app"),
    ])
    .await;
    let tags: serde_json::Value = serde_json::from_str(&tags).unwrap();
    assert_eq!(tags["Tags"], json!(["v1"]));
    let inspect = skopeo(&["inspect", "--tls-verify=false", "--raw", &src]).await;
    assert_eq!(inspect.as_bytes(), &manifest[..]);
    skopeo(&["delete", "--tls-verify=false", &other]).await;
    let resp = s.send(Method::GET, "/v2/other/app/manifests/copy").await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let resp = s.send(Method::GET, "/v2/library/app/manifests/v1").await;
    assert_eq!(resp.status(), StatusCode::OK);
    s.stop().await;
}
