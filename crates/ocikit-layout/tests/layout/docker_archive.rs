//! docker-archive import and export: hand-made `docker save` archives (the legacy layout and
//! the `blobs/sha256` one of docker 25+), their layers and diffIDs, round trips, and bad
//! archives refused with nothing tagged.
// Tests that need a codec are gated on its feature, so that `cargo test --no-default-features`
// runs the rest; what only they use is then unused.
#![cfg_attr(
    not(all(feature = "gzip", feature = "zstd")),
    allow(unused_imports, dead_code)
)]

use ocikit_codec::Limits;
use ocikit_codec::apply::list_entries;
use ocikit_codec::compression::Decoder;
use ocikit_digest::Digest;
use ocikit_layout::archive::ArchiveErrorKind;
use ocikit_layout::archive::docker::{Options, export, export_path, import, import_path};
use ocikit_layout::{Document, Error, Event, Layout, Operation};
use ocikit_store::{MemoryStore, StoreExt};
use serde_json::json;

use super::copy::{digest, gzip, make_image, recorder, tar_of};
use super::oci_archive::{E, archive};

fn hex(d: &Digest) -> String {
    d.encoded().to_string()
}

/// A docker config for these layer tars (hand-written JSON).
fn config_for(tars: &[&[u8]], cmd: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "architecture": "arm64",
        "variant": "v8",
        "os": "linux",
        "config": {"Cmd": [cmd]},
        "rootfs": {"type": "layers", "diff_ids": tars.iter().map(|t| digest(t).to_string()).collect::<Vec<_>>()},
        "history": [{"created_by": "hand"}],
    }))
    .unwrap()
}

struct Legacy {
    tar: Vec<u8>,
    base: Vec<u8>,
    app: Vec<u8>,
    extra: Vec<u8>,
    config_a: Vec<u8>,
    config_b: Vec<u8>,
}

/// A legacy `docker save` archive: two images sharing a base layer (the second image's copy
/// is a symlink, as older docker writes it), the app layer gzipped, manifest.json last.
fn legacy_archive() -> Legacy {
    let base = tar_of(&[("bin/sh", b"#!shell"), ("etc/os-release", b"ID=test\n")]);
    let app = tar_of(&[("app/run", b"run run run")]);
    let extra = tar_of(&[("etc/extra", b"x")]);
    let config_a = config_for(&[&base, &app], "a");
    let config_b = config_for(&[&base, &extra], "b");
    let (ca, cb) = (hex(&digest(&config_a)), hex(&digest(&config_b)));
    let entries = vec![
        E::Owned(format!("{ca}.json"), config_a.clone()),
        E::Dir("aaaa/"),
        E::File("aaaa/VERSION", b"1.0".to_vec()),
        E::File("aaaa/json", b"{}".to_vec()),
        E::File("aaaa/layer.tar", base.clone()),
        E::File("bbbb/layer.tar", gzip(&app)),
        E::Raw(b"cccc/layer.tar".to_vec(), tar::EntryType::Symlink, Vec::new(), "../aaaa/layer.tar"),
        E::File("dddd/layer.tar", extra.clone()),
        E::Owned(format!("{cb}.json"), config_b.clone()),
        E::File(
            "repositories",
            serde_json::to_vec(&json!({"example.com/app": {"1.0": "bbbb"}})).unwrap(),
        ),
        E::File(
            "manifest.json",
            serde_json::to_vec(&json!([
                {"Config": format!("{ca}.json"), "RepoTags": ["example.com/app:1.0", "app:latest"], "Layers": ["aaaa/layer.tar", "bbbb/layer.tar"]},
                {"Config": format!("{cb}.json"), "RepoTags": null, "Layers": ["cccc/layer.tar", "dddd/layer.tar"]},
            ]))
            .unwrap(),
        ),
    ];
    Legacy {
        tar: archive(&entries),
        base,
        app,
        extra,
        config_a,
        config_b,
    }
}

use crate::support::stores;

/// The layer tars of the image `tag` points at, decompressed, with their entry paths.
async fn layers_of(layout: &Layout, tag: &str) -> Vec<(Vec<u8>, Vec<String>)> {
    let d = layout.resolve(tag).await.unwrap();
    let Document::Manifest { manifest, .. } = layout.read_document(&d).await.unwrap() else {
        panic!("not a manifest");
    };
    let mut out = Vec::new();
    for layer in manifest.layers() {
        let d: Digest = layer.digest().to_string().parse().unwrap();
        let blob = layout
            .store()
            .get_bytes(&d, u64::MAX)
            .await
            .unwrap()
            .unwrap();
        let compression =
            ocikit_codec::compression::compression_of(layer.media_type().as_ref()).unwrap();
        let mut tar = Vec::new();
        std::io::Read::read_to_end(
            &mut Decoder::new(&blob[..], compression, Limits::default()),
            &mut tar,
        )
        .unwrap();
        let (entries, diff_id) = list_entries(&tar[..], Limits::default()).unwrap();
        assert_eq!(diff_id, digest(&tar));
        out.push((
            tar,
            entries
                .into_iter()
                .map(|e| String::from_utf8(e.path).unwrap())
                .collect(),
        ));
    }
    out
}

#[cfg(feature = "gzip")]
#[tokio::test]
async fn imports_a_legacy_docker_save_archive() {
    let legacy = legacy_archive();
    for (store, _guard) in stores().await {
        let layout = Layout::create(store).await.unwrap();
        let (progress, events) = recorder();
        let report = import(
            &layout,
            &legacy.tar[..],
            &Options::new().with_progress(progress),
        )
        .await
        .unwrap();
        assert_eq!(report.images.len(), 2);
        let a = &report.images[0];
        assert_eq!(a.config, digest(&legacy.config_a));
        assert_eq!(a.diff_ids, [digest(&legacy.base), digest(&legacy.app)]);
        assert_eq!(a.tags, ["example.com/app:1.0", "app:latest"]);
        assert_eq!(
            report.images[1].diff_ids,
            [digest(&legacy.base), digest(&legacy.extra)]
        );
        assert_eq!(report.images[1].config, digest(&legacy.config_b));
        let mut tags: Vec<String> = layout
            .tags()
            .await
            .unwrap()
            .into_iter()
            .map(|(t, _)| t)
            .collect();
        tags.sort();
        assert_eq!(tags, ["app:latest", "example.com/app:1.0"]);
        // The untagged image is an index entry too.
        assert_eq!(layout.index().await.unwrap().manifests().len(), 3);

        let layers = layers_of(&layout, "app:latest").await;
        assert_eq!(layers[0].0, legacy.base);
        assert_eq!(layers[0].1, ["bin/sh", "etc/os-release"]);
        assert_eq!(
            layers[1].0, legacy.app,
            "gzip layer kept as gzip, content right"
        );
        assert_eq!(layers[1].1, ["app/run"]);
        let d = layout.resolve("app:latest").await.unwrap();
        let Document::Manifest { manifest, .. } = layout.read_document(&d).await.unwrap() else {
            panic!()
        };
        assert_eq!(
            manifest.layers()[1].media_type().to_string(),
            "application/vnd.oci.image.layer.v1.tar+gzip"
        );
        assert_eq!(
            manifest.layers()[0].media_type().to_string(),
            "application/vnd.oci.image.layer.v1.tar"
        );
        assert_eq!(
            manifest.config().digest().to_string(),
            digest(&legacy.config_a).to_string()
        );
        let platform = d.platform().as_ref().unwrap();
        assert_eq!(platform.architecture().to_string(), "arm64");
        assert_eq!(platform.variant().as_deref(), Some("v8"));
        assert!(events.lock().unwrap().iter().any(|e| matches!(
            e,
            Event::Done {
                operation: Operation::Import,
                ..
            }
        )));
    }
}

#[cfg(all(feature = "gzip", feature = "zstd"))]
#[tokio::test]
async fn imports_the_blobs_layout_of_newer_docker() {
    let base = tar_of(&[("etc/hello", b"new docker")]);
    let gz = gzip(&tar_of(&[("usr/bin/tool", b"tool")]));
    let tool_tar = tar_of(&[("usr/bin/tool", b"tool")]);
    let zstd_tar = tar_of(&[("opt/z", b"zstd layer")]);
    let (zst, _) = ocikit_codec::writer::LayerWriter::from_reader(
        &zstd_tar[..],
        Vec::new(),
        ocikit_codec::writer::LayerOptions::new(ocikit_codec::compression::Compression::Zstd),
    )
    .unwrap();
    let config = config_for(&[&base, &tool_tar, &zstd_tar], "new");
    let path = |b: &[u8]| format!("blobs/sha256/{}", hex(&digest(b)));
    let entries = vec![
        E::File(
            "manifest.json",
            serde_json::to_vec(&json!([{"Config": path(&config), "RepoTags": ["new:v25"], "Layers": [path(&base), path(&gz), path(&zst)]}])).unwrap(),
        ),
        E::File("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()),
        E::File("index.json", br#"{"schemaVersion":2,"manifests":[]}"#.to_vec()),
        E::Dir("blobs/"),
        E::Dir("blobs/sha256/"),
        E::Owned(path(&gz), gz.clone()),
        E::Owned(path(&config), config.clone()),
        E::Owned(path(&base), base.clone()),
        E::Owned(path(&zst), zst.clone()),
    ];
    let layout = Layout::create(MemoryStore::new()).await.unwrap();
    let report = import(&layout, &archive(&entries)[..], &Options::new())
        .await
        .unwrap();
    assert_eq!(
        report.images[0].diff_ids,
        [digest(&base), digest(&tool_tar), digest(&zstd_tar)]
    );
    let layers = layers_of(&layout, "new:v25").await;
    assert_eq!(layers[1].0, tool_tar);
    assert_eq!(layers[1].1, ["usr/bin/tool"]);
    assert_eq!(layers[2].0, zstd_tar, "zstd detected by its magic");
    assert_eq!(layers[2].1, ["opt/z"]);

    // A blobs/ entry whose content does not match its name is refused.
    let mut spoiled = entries;
    spoiled[5] = E::Owned(path(&gz), gzip(&tar_of(&[("other", b"x")])));
    let layout = Layout::create(MemoryStore::new()).await.unwrap();
    match import(&layout, &archive(&spoiled)[..], &Options::new()).await {
        Err(Error::Archive { entry, kind, .. }) => {
            assert_eq!(entry, path(&gz));
            assert!(matches!(*kind, ArchiveErrorKind::DigestMismatch { .. }));
        }
        other => panic!("{other:?}"),
    }
    assert!(layout.tags().await.unwrap().is_empty());
}

#[cfg(feature = "gzip")]
#[tokio::test]
async fn export_then_import_gives_the_same_diff_ids_and_tags() {
    for (store, _guard) in stores().await {
        let source = Layout::create(store).await.unwrap();
        let image = make_image(&source, "roundtrip").await;
        let other = make_image(&source, "second").await;
        source.set_tag("v1", &image.manifest).await.unwrap();
        source.set_tag("v2", &other.manifest).await.unwrap();
        let (progress, events) = recorder();
        let (tar, report) = export(
            &source,
            &[
                ("v1", "example.com/rt:1"),
                ("v1", "rt:latest"),
                ("v2", "second:2"),
            ],
            Vec::new(),
            &Options::new().with_progress(progress),
        )
        .await
        .unwrap();
        assert_eq!((report.images, report.layers), (2, 4));
        assert!(events.lock().unwrap().iter().any(|e| matches!(
            e,
            Event::Done {
                operation: Operation::Export,
                ..
            }
        )));

        // What docker load reads, checked with the tar crate: manifest.json, the config
        // under its hex, layers uncompressed under their diffID.
        let mut files = std::collections::HashMap::new();
        for entry in tar::Archive::new(&tar[..]).entries().unwrap() {
            let mut entry = entry.unwrap();
            if entry.header().entry_type().is_file() {
                let name = entry.path().unwrap().to_string_lossy().into_owned();
                let mut data = Vec::new();
                std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
                files.insert(name, data);
            }
        }
        let manifest: serde_json::Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
        assert_eq!(
            manifest[0]["RepoTags"],
            json!(["example.com/rt:1", "rt:latest"])
        );
        let config_name = format!("{}.json", hex(&digest(&image.config)));
        assert_eq!(manifest[0]["Config"], json!(config_name));
        assert_eq!(files[&config_name], image.config);
        let diff_ids = image.diff_ids();
        for (i, tar) in image.tars.iter().enumerate() {
            let name = format!("{}/layer.tar", hex(&diff_ids[i]));
            assert_eq!(manifest[0]["Layers"][i], json!(name));
            assert_eq!(&files[&name], tar, "layer {i} uncompressed");
        }
        let repositories: serde_json::Value =
            serde_json::from_slice(&files["repositories"]).unwrap();
        assert_eq!(repositories["rt"]["latest"], json!(hex(&diff_ids[1])));

        let destination = Layout::create(MemoryStore::new()).await.unwrap();
        let again = import(&destination, &tar[..], &Options::new())
            .await
            .unwrap();
        assert_eq!(again.images[0].diff_ids, diff_ids);
        assert_eq!(again.images[1].diff_ids, other.diff_ids());
        assert_eq!(again.images[0].config, digest(&image.config));
        let mut tags: Vec<String> = destination
            .tags()
            .await
            .unwrap()
            .into_iter()
            .map(|(t, _)| t)
            .collect();
        tags.sort();
        assert_eq!(tags, ["example.com/rt:1", "rt:latest", "second:2"]);
        let layers = layers_of(&destination, "rt:latest").await;
        assert_eq!(layers[0].0, image.tars[0]);
        assert_eq!(layers[0].1, ["etc/motd", "usr/share/big"]);
    }

    // Through a file.
    let source = Layout::create(MemoryStore::new()).await.unwrap();
    let image = make_image(&source, "file").await;
    source.set_tag("v1", &image.manifest).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("docker.tar");
    export_path(&source, &[("v1", "file:v1")], &path, &Options::new())
        .await
        .unwrap();
    let destination = Layout::create(MemoryStore::new()).await.unwrap();
    import_path(&destination, &path, &Options::new())
        .await
        .unwrap();
    assert!(destination.resolve("file:v1").await.is_ok());
}

#[cfg(feature = "gzip")]
#[tokio::test]
async fn export_refuses_what_docker_load_could_not_read() {
    let source = Layout::create(MemoryStore::new()).await.unwrap();
    let image = make_image(&source, "x").await;
    source.set_tag("v1", &image.manifest).await.unwrap();
    for bad in ["no-tag", "UPPER:case", "a@sha256:abc"] {
        assert!(
            matches!(
                export(&source, &[("v1", bad)], Vec::new(), &Options::new()).await,
                Err(Error::InvalidTag { .. })
            ),
            "{bad}"
        );
    }
    let index = source
        .put_json(
            super::copy::INDEX,
            &json!({"schemaVersion": 2, "mediaType": super::copy::INDEX, "manifests": [image.manifest]}),
        )
        .await
        .unwrap();
    source.set_tag("multi", &index).await.unwrap();
    assert!(matches!(
        export(&source, &[("multi", "m:1")], Vec::new(), &Options::new()).await,
        Err(Error::UnsupportedMediaType { .. })
    ));
    // A config whose diffIDs do not match the layers.
    let config = source
        .put_blob(super::copy::CONFIG, br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:0000000000000000000000000000000000000000000000000000000000000000","sha256:0000000000000000000000000000000000000000000000000000000000000000"]}}"#)
        .await
        .unwrap();
    let Document::Manifest { manifest, .. } = source.read_document(&image.manifest).await.unwrap()
    else {
        panic!()
    };
    let lying = source
        .put_json(
            super::copy::MANIFEST,
            &json!({"schemaVersion": 2, "mediaType": super::copy::MANIFEST, "config": config, "layers": manifest.layers()}),
        )
        .await
        .unwrap();
    source.set_tag("lying", &lying).await.unwrap();
    assert!(matches!(
        export(&source, &[("lying", "l:1")], Vec::new(), &Options::new()).await,
        Err(Error::InvalidDocument { .. })
    ));
}

#[cfg(feature = "gzip")]
#[tokio::test]
async fn bad_docker_archives_are_refused_and_tag_nothing() {
    let base = tar_of(&[("etc/a", b"a")]);
    let config = config_for(&[&base], "c");
    let cname = format!("{}.json", hex(&digest(&config)));
    let manifest = |layers: serde_json::Value, tags: serde_json::Value| {
        E::File(
            "manifest.json",
            serde_json::to_vec(&json!([{"Config": cname, "RepoTags": tags, "Layers": layers}]))
                .unwrap(),
        )
    };
    let good = || {
        vec![
            E::Owned(cname.clone(), config.clone()),
            E::File("l1/layer.tar", base.clone()),
            manifest(json!(["l1/layer.tar"]), json!(["ok:1"])),
        ]
    };
    let layout = Layout::create(MemoryStore::new()).await.unwrap();
    import(&layout, &archive(&good())[..], &Options::new())
        .await
        .unwrap();
    assert!(
        layout.resolve("ok:1").await.is_ok(),
        "the good archive imports"
    );

    let with = |mut entries: Vec<E>, at: usize, e: E| {
        entries[at] = e;
        archive(&entries)
    };
    let other = tar_of(&[("etc/b", b"b")]);
    let cases: Vec<(&str, Vec<u8>, ArchiveErrorKind, &str)> = vec![
        (
            "diffID mismatch",
            with(good(), 1, E::File("l1/layer.tar", other.clone())),
            ArchiveErrorKind::DiffIdMismatch {
                expected: digest(&base),
                actual: digest(&other),
            },
            "l1/layer.tar",
        ),
        (
            "missing layer",
            with(
                good(),
                2,
                manifest(json!(["nope/layer.tar"]), json!(["ok:1"])),
            ),
            ArchiveErrorKind::Missing,
            "nope/layer.tar",
        ),
        (
            "escaping layer path",
            with(
                good(),
                2,
                manifest(json!(["../../etc/passwd"]), json!(["ok:1"])),
            ),
            ArchiveErrorKind::UnsafePath,
            "../../etc/passwd",
        ),
        (
            "escaping symlink",
            with(
                good(),
                1,
                E::Raw(
                    b"l1/layer.tar".to_vec(),
                    tar::EntryType::Symlink,
                    Vec::new(),
                    "../../../etc/shadow",
                ),
            ),
            ArchiveErrorKind::UnsafePath,
            "l1/layer.tar",
        ),
        (
            "device",
            with(
                good(),
                1,
                E::Raw(
                    b"l1/layer.tar".to_vec(),
                    tar::EntryType::Block,
                    Vec::new(),
                    "",
                ),
            ),
            ArchiveErrorKind::UnsupportedType { typeflag: b'4' },
            "l1/layer.tar",
        ),
        (
            "absolute entry",
            with(
                good(),
                1,
                E::Raw(
                    b"/l1/layer.tar".to_vec(),
                    tar::EntryType::Regular,
                    base.clone(),
                    "",
                ),
            ),
            ArchiveErrorKind::UnsafePath,
            "/l1/layer.tar",
        ),
        (
            "no manifest.json",
            archive(
                &good()[..2]
                    .iter()
                    .map(|e| match e {
                        E::Owned(p, d) => E::Owned(p.clone(), d.clone()),
                        E::File(p, d) => E::File(p, d.clone()),
                        _ => unreachable!(),
                    })
                    .collect::<Vec<_>>(),
            ),
            ArchiveErrorKind::Missing,
            "manifest.json",
        ),
        (
            "manifest.json with duplicate keys",
            with(
                good(),
                2,
                E::File(
                    "manifest.json",
                    br#"[{"Config":"a","Config":"b","Layers":[]}]"#.to_vec(),
                ),
            ),
            ArchiveErrorKind::Malformed {
                reason: "not a docker manifest.json".into(),
            },
            "manifest.json",
        ),
        (
            "duplicate entry",
            {
                let mut entries = good();
                entries.insert(1, E::File("l1/layer.tar", base.clone()));
                archive(&entries)
            },
            ArchiveErrorKind::Duplicate,
            "l1/layer.tar",
        ),
        (
            "diffID count",
            with(
                good(),
                2,
                manifest(json!(["l1/layer.tar", "l1/layer.tar"]), json!(["ok:1"])),
            ),
            ArchiveErrorKind::Malformed {
                reason: "config lists 1 diffIDs for 2 layers".into(),
            },
            &cname,
        ),
        (
            "corrupt gzip layer",
            {
                let mut gz = gzip(&base);
                let n = gz.len();
                gz[n - 6] ^= 0xff; // the CRC32
                with(good(), 1, E::File("l1/layer.tar", gz))
            },
            ArchiveErrorKind::Corrupt,
            "l1/layer.tar",
        ),
    ];
    for (case, tar, expected, entry) in cases {
        for (store, _guard) in stores().await {
            let layout = Layout::create(store).await.unwrap();
            match import(&layout, &tar[..], &Options::new()).await {
                Err(Error::Archive {
                    entry: got_entry,
                    kind,
                    ..
                }) => {
                    assert_eq!(*kind, expected, "{case}");
                    assert_eq!(got_entry, entry, "{case}");
                }
                other => panic!("{case}: {other:?}"),
            }
            assert!(layout.tags().await.unwrap().is_empty(), "{case}");
        }
    }
    // A RepoTag outside the ref.name grammar.
    let layout = Layout::create(MemoryStore::new()).await.unwrap();
    assert!(matches!(
        import(
            &layout,
            &with(
                good(),
                2,
                manifest(json!(["l1/layer.tar"]), json!(["bad tag"]))
            )[..],
            &Options::new()
        )
        .await,
        Err(Error::InvalidTag { .. })
    ));
    assert!(layout.tags().await.unwrap().is_empty());
}

#[cfg(feature = "gzip")]
#[tokio::test]
async fn references_find_images_as_docker_normalises_them() {
    let legacy = legacy_archive();
    let layout = Layout::create(MemoryStore::new()).await.unwrap();
    let report = import(&layout, &legacy.tar[..], &Options::new())
        .await
        .unwrap();
    let a = &report.images[0];
    // `app:latest` in RepoTags is docker.io/library/app:latest, however it is written.
    for wanted in [
        "app",
        "app:latest",
        "library/app",
        "docker.io/library/app:latest",
        "index.docker.io/library/app",
        "example.com/app:1.0",
    ] {
        assert_eq!(report.find(wanted).unwrap(), Some(a), "{wanted}");
    }
    for absent in [
        "app:1.0",
        "example.com/app",
        "other/app:latest",
        "localhost/app",
    ] {
        assert_eq!(report.find(absent).unwrap(), None, "{absent}");
    }
    for bad in ["Bad Name", "app:", "../app"] {
        assert!(
            matches!(report.find(bad), Err(Error::InvalidTag { .. })),
            "{bad}"
        );
    }
}

#[cfg(feature = "gzip")]
/// An image with several names: the one a reference matches is the one reported, not the
/// first (`docker-archive:FILE:example.com/app:1.0` names the image `example.com/app:1.0`).
#[tokio::test]
async fn references_find_the_name_they_match() {
    let legacy = legacy_archive();
    let layout = Layout::create(MemoryStore::new()).await.unwrap();
    let report = import(&layout, &legacy.tar[..], &Options::new())
        .await
        .unwrap();
    let a = &report.images[0];
    assert_eq!(a.tags.len(), 2, "{:?}", a.tags);
    for (wanted, name) in [
        ("app", "app:latest"),
        ("docker.io/library/app:latest", "app:latest"),
        ("example.com/app:1.0", "example.com/app:1.0"),
    ] {
        assert_eq!(
            report.find_tag(wanted).unwrap(),
            Some((a, name)),
            "{wanted}"
        );
    }
    assert_eq!(report.find_tag("app:1.0").unwrap(), None);
}

#[test]
fn whole_layout_exports_name_images_by_layout_and_tag() {
    use ocikit_layout::archive::docker::repo_tag_for;
    assert_eq!(repo_tag_for("v1", "images").unwrap(), "images:v1");
    assert_eq!(repo_tag_for("latest", "images").unwrap(), "images:latest");
    // A tag that is a whole reference (what a docker-archive import or skopeo sets) is kept.
    assert_eq!(
        repo_tag_for("docker.io/demo/hello:v1", "images").unwrap(),
        "docker.io/demo/hello:v1"
    );
    assert_eq!(repo_tag_for("app:1.0", "images").unwrap(), "app:1.0");
    assert_eq!(
        repo_tag_for("demo/hello", "images").unwrap(),
        "demo/hello:latest"
    );
    for (tag, name) in [
        ("v1", "Images"),
        ("v1", ""),
        ("v1", "a b"),
        ("-v1", "images"),
    ] {
        assert!(
            matches!(repo_tag_for(tag, name), Err(Error::InvalidTag { .. })),
            "{tag} in {name}"
        );
    }
}

#[cfg(feature = "gzip")]
/// Issue 14: nothing unverifiable is exported as if it were verified. An image whose config,
/// or one of whose layers, is stored under a well-formed but unregistered algorithm (`foo:`,
/// as another tool could write it) is refused by the export with [`Error::Unverifiable`]
/// naming the digest, and no archive is written.
#[tokio::test]
async fn export_refuses_content_under_an_unregistered_algorithm() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("layout");
    let layout = Layout::create(ocikit_store::FsStore::open(&root).await.unwrap())
        .await
        .unwrap();
    let image = make_image(&layout, "foreign").await;
    layout.set_tag("sound", &image.manifest).await.unwrap();
    let Document::Manifest { manifest, .. } = layout.read_document(&image.manifest).await.unwrap()
    else {
        panic!("not a manifest")
    };
    // The same bytes under `foo:`, written where another tool would put them.
    let put_foreign = |bytes: &[u8]| -> Digest {
        let foreign: Digest = format!("foo:{}", hex(&digest(bytes))).parse().unwrap();
        std::fs::create_dir_all(root.join("blobs/foo")).unwrap();
        std::fs::write(root.join("blobs/foo").join(hex(&digest(bytes))), bytes).unwrap();
        foreign
    };
    let foreign_config = put_foreign(&image.config);
    let foreign_layer = put_foreign(&image.blobs[1]);
    let described = |d: &ocikit_digest::oci_spec::image::Descriptor, foreign: Option<&Digest>| {
        let mut value = serde_json::to_value(d).unwrap();
        if let Some(foreign) = foreign {
            value["digest"] = json!(foreign.to_string());
        }
        value
    };
    let layers = manifest.layers();
    for (tag, config, top, foreign) in [
        (
            "by-config",
            described(manifest.config(), Some(&foreign_config)),
            described(&layers[1], None),
            &foreign_config,
        ),
        (
            "by-layer",
            described(manifest.config(), None),
            described(&layers[1], Some(&foreign_layer)),
            &foreign_layer,
        ),
    ] {
        let doc = layout
            .put_json(
                super::copy::MANIFEST,
                &json!({"schemaVersion": 2, "mediaType": super::copy::MANIFEST,
                    "config": config, "layers": [described(&layers[0], None), top]}),
            )
            .await
            .unwrap();
        layout.set_tag(tag, &doc).await.unwrap();
        match export(&layout, &[(tag, "demo/x:1")], Vec::new(), &Options::new()).await {
            Err(Error::Unverifiable { digest }) => assert_eq!(&digest, foreign, "{tag}"),
            Err(other) => panic!("{tag}: refused, but not as unverifiable: {other:?}"),
            Ok((archive, _)) => panic!("{tag}: exported {} bytes", archive.len()),
        }
        let path = dir.path().join(format!("{tag}.tar"));
        assert!(
            export_path(&layout, &[(tag, "demo/x:1")], &path, &Options::new())
                .await
                .is_err()
        );
        assert!(!path.exists(), "{tag}: an archive was left behind");
    }
    // The sound image exports: the refusal is about the algorithm.
    export(
        &layout,
        &[("sound", "demo/x:1")],
        Vec::new(),
        &Options::new(),
    )
    .await
    .unwrap();
}
