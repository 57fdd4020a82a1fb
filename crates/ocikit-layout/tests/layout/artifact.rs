//! Attaching artifacts (SPEC A.5), and the fixtures the health tests share: images built
//! from hand-written JSON and tar layers made with the `tar` crate.
// Tests that need a codec are gated on its feature, so that `cargo test --no-default-features`
// runs the rest; what only they use is then unused.
#![cfg_attr(
    not(all(feature = "gzip", feature = "zstd")),
    allow(unused_imports, dead_code)
)]

use std::io::Write;

use bytes::Bytes;
use ocikit_digest::Digest;
use ocikit_digest::oci_spec::image::Descriptor;
use ocikit_layout::{Artifact, Document, Error, Layout};
use ocikit_store::{DocumentKey, MemoryStore, Precondition};
use serde_json::{Value, json};

pub(crate) const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub(crate) const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub(crate) const TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub(crate) const TAR_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub(crate) const EMPTY: &str = "application/vnd.oci.empty.v1+json";
pub(crate) const EMPTY_DIGEST: &str =
    "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";
pub(crate) const SIGNATURE: &str = "application/vnd.example.signature.v1+json";
pub(crate) const SBOM: &str = "application/spdx+json";

pub(crate) use crate::support::stores;

/// A tar of regular files (mode 0644, mtime 0), written by the testkit's own tar writer.
pub(crate) use ocikit_testkit::tarball::tar_of;

pub(crate) fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

pub(crate) fn desc_json(d: &Descriptor) -> Value {
    json!({"mediaType": d.media_type().to_string(), "digest": d.digest().to_string(), "size": d.size()})
}

pub(crate) fn digest(d: &Descriptor) -> Digest {
    d.digest().as_ref().parse().unwrap()
}

/// A two-layer image (gzip and plain tar) whose contents depend on `seed`.
pub(crate) struct Image {
    pub(crate) manifest: Descriptor,
    pub(crate) config: Descriptor,
    pub(crate) layers: Vec<Descriptor>,
    pub(crate) diff_ids: Vec<Digest>,
}

impl Image {
    /// Every blob of the image.
    pub(crate) fn blobs(&self) -> Vec<Digest> {
        let mut all = vec![digest(&self.manifest), digest(&self.config)];
        all.extend(self.layers.iter().map(digest));
        all
    }
}

/// Stores the image's blobs and manifest; `diff_ids` overrides the config's diffIDs.
pub(crate) async fn image_with(
    layout: &Layout,
    seed: &str,
    diff_ids: Option<Vec<String>>,
) -> Image {
    let base = tar_of(&[("etc/motd", format!("hello {seed}\n").as_bytes())]);
    let top = tar_of(&[("app/run", format!("run {seed}").as_bytes())]);
    let real_ids = vec![Digest::sha256(&base), Digest::sha256(&top)];
    let layers = vec![
        layout.put_blob(TAR_GZIP, &gzip(&base)).await.unwrap(),
        layout.put_blob(TAR, &top).await.unwrap(),
    ];
    let ids: Vec<String> =
        diff_ids.unwrap_or_else(|| real_ids.iter().map(ToString::to_string).collect());
    let config = json!({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": ids},
        "config": {"Env": [format!("SEED={seed}")]}
    });
    let config = layout
        .put_blob(CONFIG, &serde_json::to_vec(&config).unwrap())
        .await
        .unwrap();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": desc_json(&config),
        "layers": layers.iter().map(desc_json).collect::<Vec<_>>(),
    });
    let manifest = layout
        .put_blob(MANIFEST, &serde_json::to_vec_pretty(&manifest).unwrap())
        .await
        .unwrap();
    Image {
        manifest,
        config,
        layers,
        diff_ids: real_ids,
    }
}

/// A tagged image.
pub(crate) async fn image(layout: &Layout, tag: &str) -> Image {
    let image = image_with(layout, tag, None).await;
    layout.set_tag(tag, &image.manifest).await.unwrap();
    image
}

/// Writes `index.json` directly through the store, as another tool would.
pub(crate) async fn write_index(layout: &Layout, index: &Value) {
    layout
        .store()
        .write_document(
            &DocumentKey::new("index.json").unwrap(),
            Bytes::from(serde_json::to_vec(index).unwrap()),
            Precondition::None,
        )
        .await
        .unwrap();
}

async fn index_bytes(layout: &Layout) -> Bytes {
    layout
        .store()
        .read_document(&DocumentKey::new("index.json").unwrap())
        .await
        .unwrap()
        .unwrap()
        .bytes
}

#[tokio::test]
async fn attached_artifacts_are_spec_shaped_and_listed_untagged() {
    for (store, _guard) in stores().await {
        let layout = Layout::create(store).await.unwrap();
        let img = image(&layout, "v1").await;
        let sig = layout
            .attach(
                &img.manifest,
                &Artifact::new(SIGNATURE)
                    .with_blob("application/vnd.example.sig", &b"signature bytes"[..])
                    .with_annotation("org.example.signer", "alice"),
            )
            .await
            .unwrap();
        let sbom = layout
            .attach(&img.manifest, &Artifact::new(SBOM))
            .await
            .unwrap();
        assert_eq!(sig.artifact_type().as_ref().unwrap().to_string(), SIGNATURE);

        // The signature manifest: empty config, one blob, annotations, subject.
        let raw = layout.read_blob(&sig).await.unwrap();
        let value: Value = serde_json::from_slice(&raw).unwrap();
        assert_eq!(value["schemaVersion"], 2);
        assert_eq!(value["mediaType"], MANIFEST);
        assert_eq!(value["artifactType"], SIGNATURE);
        assert_eq!(value["config"]["mediaType"], EMPTY);
        assert_eq!(value["config"]["digest"], EMPTY_DIGEST);
        assert_eq!(value["config"]["size"], 2);
        assert_eq!(value["layers"].as_array().unwrap().len(), 1);
        assert_eq!(
            value["layers"][0]["mediaType"],
            "application/vnd.example.sig"
        );
        assert_eq!(
            value["layers"][0]["digest"],
            Digest::sha256(b"signature bytes").to_string()
        );
        assert_eq!(value["annotations"], json!({"org.example.signer": "alice"}));
        assert_eq!(value["subject"], desc_json(&img.manifest));
        // The empty config blob is stored, as `{}`.
        assert_eq!(
            &layout
                .read_blob(&ocikit_digest::descriptor::empty())
                .await
                .unwrap()[..],
            b"{}"
        );

        // No blobs: the single empty descriptor as the layer (SPEC A.5).
        let doc = layout.read_document(&sbom).await.unwrap();
        let Document::Manifest { manifest, .. } = &doc else {
            panic!("not a manifest: {doc:?}")
        };
        assert_eq!(manifest.layers().len(), 1);
        assert_eq!(manifest.layers()[0].digest().to_string(), EMPTY_DIGEST);
        assert_eq!(doc.subject().unwrap().digest(), img.manifest.digest());
        assert_eq!(doc.artifact_type().as_deref(), Some(SBOM));

        // index.json: the tag, plus both artifacts untagged with their artifactType.
        let index: Value = serde_json::from_slice(&index_bytes(&layout).await).unwrap();
        let entries = index["manifests"].as_array().unwrap();
        assert_eq!(entries.len(), 3);
        for (d, t) in [(&sig, SIGNATURE), (&sbom, SBOM)] {
            let entry = entries
                .iter()
                .find(|e| e["digest"] == d.digest().to_string())
                .unwrap();
            assert_eq!(entry["artifactType"], t);
            assert!(entry.get("annotations").is_none(), "untagged: {entry}");
        }
        assert_eq!(layout.tags().await.unwrap().len(), 1);

        // Attaching the same artifact again changes nothing.
        let again = layout
            .attach(&img.manifest, &Artifact::new(SBOM))
            .await
            .unwrap();
        assert_eq!(again.digest(), sbom.digest());
        assert_eq!(layout.index().await.unwrap().manifests().len(), 3);
    }
}

#[tokio::test]
async fn custom_config_artifacts_keep_their_config() {
    let layout = Layout::create(MemoryStore::new()).await.unwrap();
    let img = image(&layout, "v1").await;
    let config_type = "application/vnd.example.config.v1+json";
    let d = layout
        .attach(
            &img.manifest,
            &Artifact::new(SIGNATURE).with_config(config_type, &br#"{"k":"v"}"#[..]),
        )
        .await
        .unwrap();
    let value: Value = serde_json::from_slice(&layout.read_blob(&d).await.unwrap()).unwrap();
    assert_eq!(value["config"]["mediaType"], config_type);
    assert_eq!(
        value["config"]["digest"],
        Digest::sha256(br#"{"k":"v"}"#).to_string()
    );
    assert_eq!(value["artifactType"], SIGNATURE);
    let refs = layout
        .referrers(&digest(&img.manifest), None)
        .await
        .unwrap();
    assert_eq!(refs.len(), 1);
    assert_eq!(
        refs[0].artifact_type().as_ref().unwrap().to_string(),
        SIGNATURE
    );
}

#[tokio::test]
async fn bad_artifacts_and_subjects_are_refused_and_change_nothing() {
    for (store, _guard) in stores().await {
        let layout = Layout::create(store).await.unwrap();
        let img = image(&layout, "v1").await;
        let before = index_bytes(&layout).await;
        for bad in [
            "",
            "application",
            "a/b c",
            ".foo/bar",
            "foo/",
            "text/plain; charset=utf-8",
        ] {
            assert!(
                matches!(
                    layout.attach(&img.manifest, &Artifact::new(bad)).await,
                    Err(Error::InvalidArtifact { .. })
                ),
                "artifactType {bad:?}"
            );
        }
        for artifact in [
            Artifact::new(SIGNATURE).with_blob("not a type", &b"x"[..]),
            Artifact::new(SIGNATURE).with_config("/x", &b"{}"[..]),
            Artifact::new(SIGNATURE).with_annotation("", "empty key"),
        ] {
            assert!(matches!(
                layout.attach(&img.manifest, &artifact).await,
                Err(Error::InvalidArtifact { .. })
            ));
        }
        // A layer is no subject.
        assert!(matches!(
            layout
                .attach(&img.layers[0], &Artifact::new(SIGNATURE))
                .await,
            Err(Error::InvalidArtifact { .. })
        ));
        // A subject that is not stored, or stored with another size.
        let absent =
            ocikit_digest::descriptor::new(MANIFEST, &Digest::sha256(b"nothing"), 7).unwrap();
        match layout.attach(&absent, &Artifact::new(SIGNATURE)).await {
            Err(Error::Store(ocikit_store::Error::NotFound { digest: d })) => {
                assert_eq!(d, Digest::sha256(b"nothing"))
            }
            other => panic!("{other:?}"),
        }
        let mut wrong = img.manifest.clone();
        wrong.set_size(img.manifest.size() + 1);
        assert!(matches!(
            layout.attach(&wrong, &Artifact::new(SIGNATURE)).await,
            Err(Error::Store(ocikit_store::Error::SizeMismatch { .. }))
        ));
        assert_eq!(index_bytes(&layout).await, before, "index.json untouched");
        assert!(
            layout
                .referrers(&digest(&img.manifest), None)
                .await
                .unwrap()
                .is_empty()
        );
    }
}
