//! `copy --format`: images converted between OCI and Docker schema 2 manifests, configs and
//! layers kept byte for byte, and what Docker schema 2 cannot describe refused with nothing
//! written.

use std::path::Path;

use ocikit_codec::compression::Compression;
use ocikit_digest::media_type;
use ocikit_digest::oci_spec::image::{Descriptor, ImageIndex, ImageManifest};
use ocikit_layout::convert::{ManifestFormat, Refusal};
use ocikit_layout::{Document, ImageBuilder, IndexBuilder, LayerSpec, Layout};
use ocikit_store::FsStore;
use ocikit_transport::{CopyOptions, Error, copy};
use serde_json::Value;

use crate::{at, files, open, unpacked};

/// A layout at `dir` with a small image tagged `tag` for `platform` (`os/arch`): one layer
/// in `first` compression and one plain layer, and a manifest annotation.
async fn small_image(dir: &Path, tag: &str, platform: &str, first: Compression) -> Descriptor {
    let layout = match Layout::open(FsStore::open(dir).await.unwrap()).await {
        Ok(layout) => layout,
        Err(_) => Layout::create(FsStore::open(dir).await.unwrap())
            .await
            .unwrap(),
    };
    let a = tempfile::tempdir().unwrap();
    std::fs::write(a.path().join("hello"), format!("hello {platform}\n")).unwrap();
    let b = tempfile::tempdir().unwrap();
    std::fs::create_dir(b.path().join("etc")).unwrap();
    std::fs::write(b.path().join("etc/motd"), "plain layer\n").unwrap();
    let mut builder = ImageBuilder::new(&layout);
    let (os, arch) = platform.split_once('/').unwrap();
    builder.platform(&ocikit_digest::platform::build(os, arch, None));
    builder.cmd(["/hello"]);
    builder.annotation("org.example.note", "dropped by v2s2");
    builder
        .add_layer_from_dir(a.path(), LayerSpec::new().compression(first))
        .await
        .unwrap();
    builder
        .add_layer_from_dir(b.path(), LayerSpec::new().compression(Compression::None))
        .await
        .unwrap();
    builder.write_and_tag(tag).await.unwrap()
}

async fn manifest(layout: &Layout, root: &Descriptor) -> (ImageManifest, Value) {
    match layout.read_document(root).await.unwrap() {
        Document::Manifest { manifest, bytes } => {
            (*manifest, serde_json::from_slice(&bytes).unwrap())
        }
        other => panic!("not a manifest: {other:?}"),
    }
}

async fn index(layout: &Layout, root: &Descriptor) -> ImageIndex {
    match layout.read_document(root).await.unwrap() {
        Document::Index { index, .. } => *index,
        other => panic!("not an index: {other:?}"),
    }
}

/// The media types of a manifest: its own, its config's, its layers'.
fn types(manifest: &ImageManifest) -> (String, String, Vec<String>) {
    (
        manifest.media_type().as_ref().unwrap().to_string(),
        manifest.config().media_type().to_string(),
        manifest
            .layers()
            .iter()
            .map(|l| l.media_type().to_string())
            .collect(),
    )
}

fn digests(manifest: &ImageManifest) -> Vec<String> {
    std::iter::once(manifest.config())
        .chain(manifest.layers())
        .map(|d| d.digest().to_string())
        .collect()
}

/// `copy --format FORMAT --drop-annotations` (the images here carry a manifest
/// annotation, which Docker schema 2 has no field for).
fn with_format(format: ManifestFormat) -> CopyOptions {
    CopyOptions::new()
        .with_format(Some(format))
        .with_drop_annotations(true)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_oci_image_goes_to_v2s2_and_back_with_its_config_and_layers_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let root = small_image(&src, "v1", "linux/amd64", Compression::Gzip).await;
    let source = open(&src).await;
    let before = files(&src);
    let (oci, oci_json) = manifest(&source, &root).await;
    assert!(oci_json.get("annotations").is_some());

    let docker_dir = dir.path().join("docker");
    let report = copy(
        &at("oci", &src, ":v1"),
        &at("oci", &docker_dir, ":d"),
        &with_format(ManifestFormat::DockerV2S2),
    )
    .await
    .unwrap();
    let docker_layout = open(&docker_dir).await;
    let d = docker_layout.resolve("d").await.unwrap();
    assert_eq!(report.images[0].root.digest(), d.digest());
    assert_ne!(d.digest(), root.digest());
    assert_eq!(d.media_type().to_string(), media_type::DOCKER_MANIFEST);
    let (docker, docker_json) = manifest(&docker_layout, &d).await;
    assert_eq!(
        types(&docker),
        (
            media_type::DOCKER_MANIFEST.to_string(),
            media_type::DOCKER_CONFIG.to_string(),
            vec![
                media_type::DOCKER_LAYER_GZIP.to_string(),
                media_type::DOCKER_LAYER.to_string()
            ]
        )
    );
    // Same config and layer blobs; schema 2 has no annotations (dropped, as skopeo does).
    assert_eq!(digests(&docker), digests(&oci));
    assert_eq!(
        docker_layout.read_blob(docker.config()).await.unwrap(),
        source.read_blob(oci.config()).await.unwrap()
    );
    let keys: Vec<&String> = docker_json.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["config", "layers", "mediaType", "schemaVersion"]);
    assert_eq!(
        unpacked(&docker_layout, &d).await,
        unpacked(&source, &root).await
    );
    assert!(
        docker_layout
            .fsck(&Default::default())
            .await
            .unwrap()
            .is_clean()
    );
    // The source layout was only read.
    assert_eq!(files(&src), before);

    // Back to OCI: the OCI media types, the same blobs.
    let back_dir = dir.path().join("back");
    copy(
        &at("oci", &docker_dir, ":d"),
        &at("oci", &back_dir, ":o"),
        &with_format(ManifestFormat::Oci),
    )
    .await
    .unwrap();
    let back_layout = open(&back_dir).await;
    let o = back_layout.resolve("o").await.unwrap();
    let (back, _) = manifest(&back_layout, &o).await;
    assert_eq!(types(&back).0, media_type::IMAGE_MANIFEST);
    assert_eq!(
        (types(&back).1, types(&back).2),
        (types(&oci).1, types(&oci).2)
    );
    assert_eq!(digests(&back), digests(&oci));

    // A second conversion to the same format is a fixed point.
    for (layout_dir, tag, format, digest) in [
        (&docker_dir, ":d", ManifestFormat::DockerV2S2, d.digest()),
        (&back_dir, ":o", ManifestFormat::Oci, o.digest()),
    ] {
        let again = dir.path().join(format!("again-{format}"));
        let report = copy(
            &at("oci", layout_dir, tag),
            &at("oci", &again, ":x"),
            &with_format(format),
        )
        .await
        .unwrap();
        assert_eq!(report.images[0].root.digest(), digest, "{format}");
    }
    // And the library call agrees with the copy.
    let planned = ocikit_layout::convert::plan_with(
        &source,
        &root,
        ManifestFormat::DockerV2S2,
        &ocikit_layout::convert::ConvertOptions::new().with_drop_annotations(true),
    )
    .await
    .unwrap();
    assert_eq!(planned.root().digest(), d.digest());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_index_becomes_a_manifest_list_and_back() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let amd = small_image(&src, "amd", "linux/amd64", Compression::Gzip).await;
    let arm = small_image(&src, "arm", "linux/arm64", Compression::Gzip).await;
    let source = open(&src).await;
    let mut builder = IndexBuilder::new(&source);
    builder.add(&amd).await.unwrap();
    builder.add(&arm).await.unwrap();
    builder.annotation("org.example.index", "dropped by v2s2");
    builder.write_and_tag("both").await.unwrap();

    let list_dir = dir.path().join("list");
    copy(
        &at("oci", &src, ":both"),
        &at("oci", &list_dir, ":l"),
        &with_format(ManifestFormat::DockerV2S2),
    )
    .await
    .unwrap();
    let list_layout = open(&list_dir).await;
    let l = list_layout.resolve("l").await.unwrap();
    assert_eq!(l.media_type().to_string(), media_type::DOCKER_MANIFEST_LIST);
    let list = index(&list_layout, &l).await;
    assert!(list.annotations().is_none());
    let mut platforms = Vec::new();
    for (entry, original) in list.manifests().iter().zip([&amd, &arm]) {
        assert_eq!(entry.media_type().to_string(), media_type::DOCKER_MANIFEST);
        let platform = entry.platform().as_ref().unwrap();
        platforms.push(format!("{}/{}", platform.os(), platform.architecture()));
        let (child, _) = manifest(&list_layout, entry).await;
        assert_eq!(types(&child).1, media_type::DOCKER_CONFIG);
        let (before, _) = manifest(&source, original).await;
        assert_eq!(digests(&child), digests(&before));
    }
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"]);

    let back_dir = dir.path().join("back");
    copy(
        &at("oci", &list_dir, ":l"),
        &at("oci", &back_dir, ":i"),
        &with_format(ManifestFormat::Oci),
    )
    .await
    .unwrap();
    let back_layout = open(&back_dir).await;
    let i = back_layout.resolve("i").await.unwrap();
    assert_eq!(i.media_type().to_string(), media_type::IMAGE_INDEX);
    let back = index(&back_layout, &i).await;
    for (entry, original) in back.manifests().iter().zip([&amd, &arm]) {
        assert_eq!(entry.media_type().to_string(), media_type::IMAGE_MANIFEST);
        assert_eq!(entry.platform(), original.platform());
        let (child, _) = manifest(&back_layout, entry).await;
        let (before, _) = manifest(&source, original).await;
        assert_eq!(types(&child).1, media_type::IMAGE_CONFIG);
        assert_eq!(digests(&child), digests(&before));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_zstd_recompression_to_v2s2_is_refused_before_anything_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let dst = dir.path().join("dst");
    let gzip = dir.path().join("gzip-src");
    small_image(&gzip, "g", "linux/amd64", Compression::Gzip).await;
    let err = copy(
        &at("oci", &gzip, ":g"),
        &at("oci", &dst, ":d"),
        &with_format(ManifestFormat::DockerV2S2).with_compression(Some(Compression::Zstd)),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::FormatCompression {
                format: ManifestFormat::DockerV2S2,
                compression: Compression::Zstd
            }
        ),
        "{err:?}"
    );
    assert!(!dst.exists());
}

#[cfg(feature = "zstd")]
#[tokio::test(flavor = "multi_thread")]
async fn zstd_layers_are_refused_for_v2s2_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let root = small_image(&src, "z", "linux/amd64", Compression::Zstd).await;
    let source = open(&src).await;
    let (oci, _) = manifest(&source, &root).await;
    let zstd_layer = oci.layers()[0].digest().to_string();
    let before = files(&src);

    let dst = dir.path().join("dst");
    let err = copy(
        &at("oci", &src, ":z"),
        &at("oci", &dst, ":d"),
        &with_format(ManifestFormat::DockerV2S2),
    )
    .await
    .unwrap_err();
    let Error::Convert {
        format,
        source: ocikit_layout::Error::Unconvertible {
            digest, refusal, ..
        },
        ..
    } = &err
    else {
        panic!("{err:?}");
    };
    assert_eq!(*format, ManifestFormat::DockerV2S2);
    assert_eq!(digest.to_string(), root.digest().to_string());
    let Refusal::ZstdLayer { layer } = refusal.as_ref() else {
        panic!("{refusal:?}");
    };
    assert_eq!(layer.to_string(), zstd_layer);
    assert!(!dst.exists());
    assert_eq!(files(&src), before);

    // Recompressed to gzip first (as skopeo does), the zstd image converts.
    copy(
        &at("oci", &src, ":z"),
        &at("oci", &dst, ":d"),
        &with_format(ManifestFormat::DockerV2S2).with_compression(Some(Compression::Gzip)),
    )
    .await
    .unwrap();
    let layout = open(&dst).await;
    let d = layout.resolve("d").await.unwrap();
    let (docker, _) = manifest(&layout, &d).await;
    assert_eq!(
        types(&docker).2,
        [media_type::DOCKER_LAYER_GZIP, media_type::DOCKER_LAYER_GZIP]
    );
    assert_eq!(unpacked(&layout, &d).await, unpacked(&source, &root).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_artifact_is_refused_for_v2s2() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let layout = Layout::create(FsStore::open(&src).await.unwrap())
        .await
        .unwrap();
    let config = layout
        .put_blob("application/vnd.example.config+json", b"{}")
        .await
        .unwrap();
    let blob = layout
        .put_blob("application/vnd.example.data", b"data")
        .await
        .unwrap();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type::IMAGE_MANIFEST,
        "config": config,
        "layers": [blob],
    });
    let root = layout
        .put_json(media_type::IMAGE_MANIFEST, &manifest)
        .await
        .unwrap();
    layout.set_tag("a", &root).await.unwrap();

    let dst = dir.path().join("dst");
    let err = copy(
        &at("oci", &src, ":a"),
        &at("oci", &dst, ":d"),
        &with_format(ManifestFormat::DockerV2S2),
    )
    .await
    .unwrap_err();
    let Error::Convert {
        source: ocikit_layout::Error::Unconvertible { refusal, .. },
        ..
    } = &err
    else {
        panic!("{err:?}");
    };
    assert_eq!(
        **refusal,
        Refusal::NotAnImage {
            media_type: "application/vnd.example.config+json".into()
        }
    );
    assert!(!dst.exists());
    // To OCI it is kept as it is.
    let report = copy(
        &at("oci", &src, ":a"),
        &at("oci", &dst, ":d"),
        &with_format(ManifestFormat::Oci),
    )
    .await
    .unwrap();
    assert_eq!(report.images[0].root.digest(), root.digest());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_manifest_list_entry_without_a_platform_takes_its_config_s() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let arm = small_image(&src, "arm", "linux/arm64", Compression::Gzip).await;
    let layout = open(&src).await;
    // An OCI index whose entry names no platform (allowed in OCI, not in a manifest list).
    let mut entry = arm.clone();
    entry.set_platform(None);
    entry.set_annotations(None);
    let bare = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type::IMAGE_INDEX,
        "manifests": [entry],
    });
    let root = layout
        .put_json(media_type::IMAGE_INDEX, &bare)
        .await
        .unwrap();
    layout.set_tag("bare", &root).await.unwrap();

    let report = ocikit_layout::convert::plan_with(
        &layout,
        &root,
        ManifestFormat::DockerV2S2,
        &ocikit_layout::convert::ConvertOptions::new().with_drop_annotations(true),
    )
    .await
    .unwrap()
    .write(&layout)
    .await
    .unwrap();
    assert_eq!((report.manifests, report.indexes), (1, 1));
    let list = index(&layout, &report.root).await;
    let platform = list.manifests()[0].platform().as_ref().unwrap();
    assert_eq!(
        (
            platform.os().to_string(),
            platform.architecture().to_string()
        ),
        ("linux".to_string(), "arm64".to_string())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_nested_index_is_refused_for_a_manifest_list_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let amd = small_image(&src, "amd", "linux/amd64", Compression::Gzip).await;
    let layout = open(&src).await;
    let mut inner = IndexBuilder::new(&layout);
    inner.add(&amd).await.unwrap();
    let inner = inner.write().await.unwrap();
    let mut outer = IndexBuilder::new(&layout);
    outer.add(&inner).await.unwrap();
    outer.write_and_tag("nested").await.unwrap();
    let before = files(&src);

    let dst = dir.path().join("dst");
    let err = copy(
        &at("oci", &src, ":nested"),
        &at("oci", &dst, ":l"),
        &with_format(ManifestFormat::DockerV2S2),
    )
    .await
    .unwrap_err();
    let Error::Convert {
        source: ocikit_layout::Error::Unconvertible { refusal, .. },
        ..
    } = &err
    else {
        panic!("{err:?}");
    };
    assert_eq!(
        **refusal,
        Refusal::NotAnImageEntry {
            child: inner.digest().to_string().parse().unwrap(),
            media_type: media_type::IMAGE_INDEX.into()
        }
    );
    assert!(!dst.exists());
    assert_eq!(files(&src), before);
    // Within OCI it converts (nothing to do) and copies.
    copy(
        &at("oci", &src, ":nested"),
        &at("oci", &dst, ":l"),
        &with_format(ManifestFormat::Oci),
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_encrypted_layer_is_refused_for_v2s2() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let image = small_image(&src, "v1", "linux/amd64", Compression::Gzip).await;
    let layout = open(&src).await;
    let (_, mut json) = manifest(&layout, &image).await;
    let encrypted = "application/vnd.oci.image.layer.v1.tar+gzip+encrypted";
    json["layers"][0]["mediaType"] = Value::from(encrypted);
    let layer = json["layers"][0]["digest"].as_str().unwrap().to_string();
    let root = layout
        .put_json(media_type::IMAGE_MANIFEST, &json)
        .await
        .unwrap();
    let err = ocikit_layout::convert::plan(&layout, &root, ManifestFormat::DockerV2S2)
        .await
        .unwrap_err();
    let ocikit_layout::Error::Unconvertible { refusal, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(
        **refusal,
        Refusal::LayerMediaType {
            layer: layer.parse().unwrap(),
            media_type: encrypted.into(),
            format: ManifestFormat::DockerV2S2,
        }
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_referrer_is_refused_for_v2s2_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let base = small_image(&src, "base", "linux/amd64", Compression::Gzip).await;
    let other = small_image(&src, "other", "linux/arm64", Compression::Gzip).await;
    let layout = open(&src).await;
    let subject = serde_json::json!({
        "mediaType": base.media_type().to_string(),
        "digest": base.digest().to_string(),
        "size": base.size(),
    });
    // An image (image config, gzip layers) that refers to `base`: schema 2 has no subject.
    let (_, mut json) = manifest(&layout, &other).await;
    json["subject"] = subject.clone();
    let referrer = layout
        .put_json(media_type::IMAGE_MANIFEST, &json)
        .await
        .unwrap();
    layout.set_tag("ref", &referrer).await.unwrap();
    let before = files(&src);

    let dst = dir.path().join("dst");
    let err = copy(
        &at("oci", &src, ":ref"),
        &at("oci", &dst, ":d"),
        &with_format(ManifestFormat::DockerV2S2),
    )
    .await
    .unwrap_err();
    let Error::Convert {
        format,
        source: ocikit_layout::Error::Unconvertible {
            digest, refusal, ..
        },
        ..
    } = &err
    else {
        panic!("{err:?}");
    };
    assert_eq!(*format, ManifestFormat::DockerV2S2);
    assert_eq!(digest.to_string(), referrer.digest().to_string());
    assert_eq!(
        **refusal,
        Refusal::Subject {
            subject: base.digest().to_string().parse().unwrap()
        }
    );
    assert!(
        refusal.to_string().contains(&base.digest().to_string()),
        "{refusal}"
    );
    assert!(!dst.exists());
    assert_eq!(files(&src), before);

    // An index with a subject is refused the same way (its images alone would convert).
    let mut entry = base.clone();
    entry.set_annotations(None);
    let list = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type::IMAGE_INDEX,
        "manifests": [entry],
        "subject": subject,
    });
    let list = layout
        .put_json(media_type::IMAGE_INDEX, &list)
        .await
        .unwrap();
    let err = ocikit_layout::convert::plan_with(
        &layout,
        &list,
        ManifestFormat::DockerV2S2,
        &ocikit_layout::convert::ConvertOptions::new().with_drop_annotations(true),
    )
    .await
    .unwrap_err();
    let ocikit_layout::Error::Unconvertible {
        digest, refusal, ..
    } = &err
    else {
        panic!("{err:?}");
    };
    assert_eq!(digest.to_string(), list.digest().to_string());
    assert_eq!(
        **refusal,
        Refusal::Subject {
            subject: base.digest().to_string().parse().unwrap()
        }
    );

    // To OCI there is nothing to convert: the referrer copies as it is, subject and all.
    let report = copy(
        &at("oci", &src, ":ref"),
        &at("oci", &dst, ":d"),
        &with_format(ManifestFormat::Oci),
    )
    .await
    .unwrap();
    assert_eq!(report.images[0].root.digest(), referrer.digest());
    let copied = open(&dst).await;
    let (_, copied_json) = manifest(&copied, &copied.resolve("d").await.unwrap()).await;
    assert_eq!(copied_json["subject"], json["subject"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn v2s2_refuses_to_lose_annotations_unless_asked_to_drop_them() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    small_image(&src, "v1", "linux/amd64", Compression::Gzip).await;
    let before = files(&src);
    let dst = dir.path().join("dst");
    let err = copy(
        &at("oci", &src, ":v1"),
        &at("oci", &dst, ":d"),
        &CopyOptions::new().with_format(Some(ManifestFormat::DockerV2S2)),
    )
    .await
    .unwrap_err();
    let Error::Convert {
        source: ocikit_layout::Error::Unconvertible { refusal, .. },
        ..
    } = &err
    else {
        panic!("{err:?}");
    };
    assert_eq!(
        **refusal,
        Refusal::Annotations {
            field: "annotations (org.example.note)".into()
        }
    );
    let mut chain = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        chain.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    assert!(chain.contains("org.example.note"), "{chain}");
    assert!(!dst.exists());
    assert_eq!(files(&src), before);

    // A layer descriptor's annotation is named with its layer.
    let layout = open(&src).await;
    let root = layout.resolve("v1").await.unwrap();
    let (_, mut json) = manifest(&layout, &root).await;
    json.as_object_mut().unwrap().remove("annotations");
    json["layers"][1]["annotations"] = serde_json::json!({"org.opencontainers.image.title": "b"});
    let layer = json["layers"][1]["digest"].as_str().unwrap().to_string();
    let edited = layout
        .put_json(media_type::IMAGE_MANIFEST, &json)
        .await
        .unwrap();
    let err = ocikit_layout::convert::plan(&layout, &edited, ManifestFormat::DockerV2S2)
        .await
        .unwrap_err();
    let ocikit_layout::Error::Unconvertible { refusal, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(
        **refusal,
        Refusal::Annotations {
            field: format!("layer {layer}'s annotations (org.opencontainers.image.title)")
        }
    );

    // Asked to drop them, the copy converts, and the result has none.
    copy(
        &at("oci", &src, ":v1"),
        &at("oci", &dst, ":d"),
        &with_format(ManifestFormat::DockerV2S2),
    )
    .await
    .unwrap();
    let out = open(&dst).await;
    let converted = out.resolve("d").await.unwrap();
    let (_, json) = manifest(&out, &converted).await;
    assert!(json.get("annotations").is_none(), "{json}");
    assert_eq!(json["mediaType"], media_type::DOCKER_MANIFEST);
}
