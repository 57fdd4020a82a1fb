//! Files as artifacts (`artifact_push`, `artifact_pull`, `attach`, `referrers_tree`): round
//! trips through a layout, a registry and an oci-archive, and what a pull refuses (hostile
//! titles, symbolic links in the directory, existing files, bytes that do not match).

use std::path::{Path, PathBuf};

use ocikit_digest::Digest;
use ocikit_layout::Layout;
use ocikit_store::FsStore;
use ocikit_transport::{
    ArtifactError, ArtifactFile, ArtifactPullOptions, ArtifactPushOptions, Error, Location,
    TitleProblem, artifact_pull, artifact_push, referrers_tree,
};
use serde_json::json;

use crate::registry::{docker, plain, serve};
use crate::{at, files};

const TYPE: &str = "application/vnd.example.notes";
const TITLE: &str = "org.opencontainers.image.title";

/// Two small files and one of 1 MiB in `dir/in`; returns their paths.
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let input = dir.join("in");
    std::fs::create_dir_all(&input).unwrap();
    let paths = vec![
        input.join("readme.md"),
        input.join("data.bin"),
        input.join("empty"),
    ];
    std::fs::write(&paths[0], "# notes\n").unwrap();
    std::fs::write(&paths[1], ocikit_testkit::prng::bytes(7, 1 << 20)).unwrap();
    std::fs::write(&paths[2], b"").unwrap();
    paths
}

fn push_options() -> ArtifactPushOptions {
    ArtifactPushOptions::new()
        .with_artifact_type(Some(TYPE.into()))
        .with_annotation("org.example.note", "hello")
        .with_registry(plain())
}

fn pull_options() -> ArtifactPullOptions {
    ArtifactPullOptions::new().with_registry(plain())
}

fn to_push(paths: &[PathBuf]) -> Vec<ArtifactFile> {
    vec![
        ArtifactFile::parse(&format!("{}:text/markdown", paths[0].display())),
        ArtifactFile::new(&paths[1]),
        ArtifactFile::new(&paths[2]),
    ]
}

/// The manifest tagged `tag` in the layout at `path`, as JSON.
async fn manifest_json(path: &Path, tag: &str) -> serde_json::Value {
    let layout = crate::open(path).await;
    let d = layout.resolve(tag).await.unwrap();
    serde_json::from_slice(&layout.read_blob(&d).await.unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn files_travel_as_an_artifact_through_a_layout_a_registry_and_an_archive() {
    let dir = tempfile::tempdir().unwrap();
    let paths = inputs(dir.path());
    let expected: Vec<(PathBuf, Vec<u8>)> = files(&dir.path().join("in"));

    // Into a new layout.
    let layout = dir.path().join("layout");
    let pushed = artifact_push(
        &at("oci", &layout, ":v1"),
        &to_push(&paths),
        &push_options(),
    )
    .await
    .unwrap();
    assert_eq!(pushed.artifact_type, TYPE);
    assert_eq!(pushed.tag.as_deref(), Some("v1"));
    let titles: Vec<&str> = pushed.files.iter().map(|f| f.title.as_str()).collect();
    assert_eq!(titles, ["readme.md", "data.bin", "empty"]);
    // The manifest as OCI 1.1 says an artifact looks, read back independently.
    let m = manifest_json(&layout, "v1").await;
    assert_eq!(m["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(m["artifactType"], TYPE);
    assert_eq!(
        m["config"]["mediaType"],
        "application/vnd.oci.empty.v1+json"
    );
    assert_eq!(m["config"]["digest"], Digest::sha256(b"{}").to_string());
    assert_eq!(m["annotations"]["org.example.note"], "hello");
    let layers = m["layers"].as_array().unwrap();
    assert_eq!(layers[0]["mediaType"], "text/markdown");
    assert_eq!(
        layers[1]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar"
    );
    assert_eq!(layers[1]["annotations"][TITLE], "data.bin");
    assert_eq!(
        layers[1]["digest"],
        Digest::sha256(&std::fs::read(&paths[1]).unwrap()).to_string()
    );
    assert_eq!(layers[1]["size"], 1 << 20);

    let out = dir.path().join("from-layout");
    let pulled = artifact_pull(&at("oci", &layout, ":v1"), &out, &pull_options())
        .await
        .unwrap();
    assert_eq!(pulled.digest, pushed.digest);
    assert_eq!(pulled.artifact_type, TYPE);
    assert_eq!(files(&out), expected);

    // Into a registry and back.
    let addr = serve().await;
    let remote = docker(&addr, "team/notes:v1");
    let to_registry = artifact_push(&remote, &to_push(&paths), &push_options())
        .await
        .unwrap();
    assert_eq!(
        to_registry.digest, pushed.digest,
        "the same files, the same manifest"
    );
    let out = dir.path().join("from-registry");
    artifact_pull(&remote, &out, &pull_options()).await.unwrap();
    assert_eq!(files(&out), expected);

    // Into an oci-archive, read back through a layout.
    let archive = dir.path().join("notes.tar");
    artifact_push(
        &at("oci-archive", &archive, ":v2"),
        &to_push(&paths),
        &push_options(),
    )
    .await
    .unwrap();
    let back = dir.path().join("back");
    ocikit_transport::copy(
        &at("oci-archive", &archive, ":v2"),
        &at("oci", &back, ":v2"),
        &ocikit_transport::CopyOptions::new(),
    )
    .await
    .unwrap();
    let out = dir.path().join("from-archive");
    artifact_pull(&at("oci", &back, ":v2"), &out, &pull_options())
        .await
        .unwrap();
    assert_eq!(files(&out), expected);

    // A config file instead of the empty one, of oras' default type.
    let config = dir.path().join("config.json");
    std::fs::write(&config, b"{\"k\":1}").unwrap();
    artifact_push(
        &at("oci", &layout, ":with-config"),
        &to_push(&paths)[..1],
        &push_options().with_config(Some(ArtifactFile::new(&config))),
    )
    .await
    .unwrap();
    let m = manifest_json(&layout, "with-config").await;
    assert_eq!(
        m["config"]["mediaType"],
        "application/vnd.unknown.config.v1+json"
    );
    assert_eq!(m["config"]["size"], 7);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_push_refuses_a_missing_file_and_a_destination_it_cannot_keep() {
    let dir = tempfile::tempdir().unwrap();
    let paths = inputs(dir.path());
    let layout = dir.path().join("layout");
    let missing = ArtifactFile::new(dir.path().join("in/absent.txt"));
    let err = artifact_push(
        &at("oci", &layout, ":v1"),
        &[ArtifactFile::new(&paths[0]), missing.clone()],
        &push_options(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Write { source: ocikit_layout::Error::Io { path, .. }, .. }
                if path.ends_with("absent.txt")
        ),
        "{err:?}"
    );
    assert!(
        !layout.exists(),
        "a failed push into a new layout left it behind"
    );

    // Into a registry: nothing is tagged.
    let addr = serve().await;
    let err = artifact_push(&docker(&addr, "notes:v1"), &[missing], &push_options())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Write { .. }), "{err:?}");
    let client = plain().client(&addr).unwrap();
    assert!(client.get_manifest("notes", "v1").await.is_err());

    // No tag and no subject: nothing would keep it. Two files of one name: one title.
    let err = artifact_push(&at("oci", &layout, ""), &to_push(&paths), &push_options())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Artifact(ArtifactError::NeedsTag)),
        "{err:?}"
    );
    let twin = dir.path().join("twin");
    std::fs::create_dir_all(&twin).unwrap();
    std::fs::write(twin.join("readme.md"), "other").unwrap();
    let err = artifact_push(
        &at("oci", &layout, ":v1"),
        &[
            ArtifactFile::new(&paths[0]),
            ArtifactFile::new(twin.join("readme.md")),
        ],
        &push_options(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Write {
                source: ocikit_layout::Error::InvalidArtifact { .. },
                ..
            }
        ),
        "{err:?}"
    );
    let err = artifact_push(
        &at("docker-archive", &dir.path().join("x.tar"), ""),
        &to_push(&paths),
        &push_options(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, Error::Artifact(ArtifactError::Unsupported { .. })),
        "{err:?}"
    );
    assert!(!layout.exists());
}

/// A layout at `dir` with one artifact tagged `v1` whose layers are `titles` (each the bytes
/// `content`), written by hand.
async fn hand_written(dir: &Path, titles: &[&str], content: &[u8]) -> Location {
    let layout = Layout::create(FsStore::open(dir).await.unwrap())
        .await
        .unwrap();
    layout
        .put_blob("application/vnd.oci.empty.v1+json", b"{}")
        .await
        .unwrap();
    let blob = layout.put_blob("text/plain", content).await.unwrap();
    let layers: Vec<serde_json::Value> = titles
        .iter()
        .map(|t| {
            json!({
                "mediaType": "text/plain",
                "digest": blob.digest().to_string(),
                "size": blob.size(),
                "annotations": { TITLE: t },
            })
        })
        .collect();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": TYPE,
        "config": {
            "mediaType": "application/vnd.oci.empty.v1+json",
            "digest": Digest::sha256(b"{}").to_string(),
            "size": 2,
        },
        "layers": layers,
    });
    // Plain serde_json: the canonical writer would refuse a NUL before ocikit could.
    let d = layout
        .put_blob(
            "application/vnd.oci.image.manifest.v1+json",
            &serde_json::to_vec(&manifest).unwrap(),
        )
        .await
        .unwrap();
    layout.set_tag("v1", &d).await.unwrap();
    at("oci", dir, ":v1")
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_titles_are_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, TitleProblem); 7] = [
        ("../escape.txt", TitleProblem::ParentDir),
        ("sub/../../escape.txt", TitleProblem::ParentDir),
        ("/tmp/escape.txt", TitleProblem::Absolute),
        ("nul\0.txt", TitleProblem::Nul),
        ("", TitleProblem::Empty),
        ("a//b", TitleProblem::NotNormal),
        ("./a", TitleProblem::NotNormal),
    ];
    for (i, (title, problem)) in cases.iter().enumerate() {
        let source = hand_written(
            &dir.path().join(format!("l{i}")),
            &["fine.txt", title],
            b"x",
        )
        .await;
        let out = dir.path().join(format!("out{i}"));
        let err = artifact_pull(&source, &out, &pull_options())
            .await
            .unwrap_err();
        if *problem == TitleProblem::Nul {
            // The strict JSON reader refuses a NUL anywhere in a manifest before the title
            // is looked at (the title check refuses it too: a unit test shows it).
            assert!(matches!(&err, Error::ReadImage { .. }), "{err:?}");
            assert!(format!("{err:?}").contains("ForbiddenCodePoint"), "{err:?}");
        } else {
            assert!(
                matches!(
                    &err,
                    Error::Artifact(ArtifactError::UnsafeTitle { title: t, problem: p, .. })
                        if t == title && p == problem
                ),
                "{title:?}: {err:?}"
            );
        }
        // Not even the harmless first file, nor DIR: titles are checked first.
        assert!(!out.exists(), "{title:?}");
    }
    assert!(!dir.path().join("escape.txt").exists());
    assert!(!Path::new("/tmp/escape.txt").exists());

    // Two layers of one title.
    let source = hand_written(&dir.path().join("dup"), &["a.txt", "a.txt"], b"x").await;
    let err = artifact_pull(&source, &dir.path().join("dup-out"), &pull_options())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Artifact(ArtifactError::DuplicateTitle { .. })),
        "{err:?}"
    );

    // A title with a directory lands inside DIR.
    let source = hand_written(&dir.path().join("nested"), &["docs/a/b.txt"], b"deep").await;
    let out = dir.path().join("nested-out");
    artifact_pull(&source, &out, &pull_options()).await.unwrap();
    assert_eq!(std::fs::read(out.join("docs/a/b.txt")).unwrap(), b"deep");
}

#[tokio::test(flavor = "multi_thread")]
async fn links_in_the_directory_and_existing_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("target.txt"), b"keep").unwrap();

    // A directory on the way that is a link to outside.
    let source = hand_written(&dir.path().join("l1"), &["sub/x.txt"], b"new").await;
    let out = dir.path().join("out1");
    std::fs::create_dir_all(&out).unwrap();
    std::os::unix::fs::symlink(&outside, out.join("sub")).unwrap();
    for overwrite in [false, true] {
        let err = artifact_pull(&source, &out, &pull_options().with_overwrite(overwrite))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::Artifact(ArtifactError::ThroughLink { path, .. }) if path.ends_with("sub")),
            "{err:?}"
        );
    }
    assert!(!outside.join("x.txt").exists());

    // The name itself a link to a file outside, even with overwrite.
    let source = hand_written(&dir.path().join("l2"), &["target.txt"], b"new").await;
    let out = dir.path().join("out2");
    std::fs::create_dir_all(&out).unwrap();
    std::os::unix::fs::symlink(outside.join("target.txt"), out.join("target.txt")).unwrap();
    let err = artifact_pull(&source, &out, &pull_options().with_overwrite(true))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Artifact(ArtifactError::ThroughLink { .. })),
        "{err:?}"
    );
    assert_eq!(std::fs::read(outside.join("target.txt")).unwrap(), b"keep");

    // An existing file: refused, unchanged; replaced with overwrite.
    let out = dir.path().join("out3");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("target.txt"), b"old").unwrap();
    let err = artifact_pull(&source, &out, &pull_options())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Artifact(ArtifactError::Exists { .. })),
        "{err:?}"
    );
    assert_eq!(std::fs::read(out.join("target.txt")).unwrap(), b"old");
    artifact_pull(&source, &out, &pull_options().with_overwrite(true))
        .await
        .unwrap();
    assert_eq!(std::fs::read(out.join("target.txt")).unwrap(), b"new");
    // No temporary file left beside it.
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn bytes_that_do_not_match_their_digest_never_appear() {
    let dir = tempfile::tempdir().unwrap();
    // In a layout: the blob spoilt on disk.
    let source = hand_written(&dir.path().join("l"), &["a.txt"], b"the real bytes").await;
    let blob = dir
        .path()
        .join("l")
        .join(Digest::sha256(b"the real bytes").blob_path());
    std::fs::write(&blob, b"the fake bytes").unwrap();
    let out = dir.path().join("out");
    let err = artifact_pull(&source, &out, &pull_options())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::CorruptBlob { .. }), "{err:?}");
    assert!(files(&out).is_empty(), "{:?}", files(&out));
    assert_eq!(
        std::fs::read_dir(&out).unwrap().count(),
        0,
        "a temporary file was left"
    );

    // From a registry that serves other bytes than the manifest says.
    let (addr, digest) = lying_registry(b"the real bytes", b"the fake bytes").await;
    let out = dir.path().join("out-registry");
    let err = artifact_pull(&docker(&addr, "notes:v1"), &out, &pull_options())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Pull { .. }), "{err:?}");
    let chain = std::iter::successors(Some(&err as &dyn std::error::Error), |e| e.source())
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ");
    assert!(chain.contains(&digest.to_string()), "{chain}");
    assert!(files(&out).is_empty());
}

/// A registry on 127.0.0.1 whose `notes:v1` is an artifact of one layer `real`, whose blob
/// it serves as `served` (of the same length). Returns its address and the layer digest.
async fn lying_registry(real: &'static [u8], served: &'static [u8]) -> (String, Digest) {
    use axum::http::{HeaderMap, StatusCode, Uri, header};
    let layer = Digest::sha256(real);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": TYPE,
        "config": {
            "mediaType": "application/vnd.oci.empty.v1+json",
            "digest": Digest::sha256(b"{}").to_string(),
            "size": 2,
        },
        "layers": [{
            "mediaType": "text/plain",
            "digest": layer.to_string(),
            "size": real.len(),
            "annotations": { TITLE: "a.txt" },
        }],
    }))
    .unwrap();
    let manifest_digest = Digest::sha256(&manifest).to_string();
    let layer_path = format!("/v2/notes/blobs/{layer}");
    let app = axum::Router::new().fallback(move |uri: Uri| {
        let manifest = manifest.clone();
        let manifest_digest = manifest_digest.clone();
        let layer_path = layer_path.clone();
        async move {
            let mut headers = HeaderMap::new();
            let path = uri.path();
            if path == "/v2/" {
                return (StatusCode::OK, headers, Vec::new());
            }
            if path == "/v2/notes/manifests/v1" {
                headers.insert(
                    header::CONTENT_TYPE,
                    "application/vnd.oci.image.manifest.v1+json"
                        .parse()
                        .unwrap(),
                );
                headers.insert("docker-content-digest", manifest_digest.parse().unwrap());
                return (StatusCode::OK, headers, manifest);
            }
            if path == layer_path {
                return (StatusCode::OK, headers, served.to_vec());
            }
            (StatusCode::NOT_FOUND, headers, Vec::new())
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.ok();
    });
    (addr.to_string(), layer)
}

/// A file `name` in `dir` holding `bytes`.
fn file(dir: &Path, name: &str, bytes: &[u8]) -> ArtifactFile {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    ArtifactFile::new(path)
}

/// `(artifactType, depth)` of every node of a tree, depth first.
fn shape(nodes: &[ocikit_transport::ReferrerNode], depth: usize, out: &mut Vec<(String, usize)>) {
    for n in nodes {
        out.push((
            n.descriptor.artifact_type().as_ref().unwrap().to_string(),
            depth,
        ));
        shape(&n.referrers, depth + 1, out);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn attach_works_on_registries_and_referrers_show_the_tree() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let (_, root) = crate::image(&src, "v1").await;
    let addr = serve().await;
    ocikit_transport::copy(
        &at("oci", &src, ":v1"),
        &docker(&addr, "app:v1"),
        &ocikit_transport::CopyOptions::new().with_destination(plain()),
    )
    .await
    .unwrap();
    let sig = "application/vnd.example.sig";
    let sbom = "application/vnd.example.sbom+json";
    let options = |t: &str| {
        ArtifactPushOptions::new()
            .with_artifact_type(Some(t.into()))
            .with_registry(plain())
    };
    for (image, name) in [
        (docker(&addr, "app:v1"), "registry"),
        (at("oci", &src, ":v1"), "layout"),
    ] {
        let files_dir = dir.path().join(name);
        std::fs::create_dir_all(&files_dir).unwrap();
        let sbom_file = file(&files_dir, "sbom.json", b"{\"sbom\":1}");
        let attached = ocikit_transport::attach(&image, &[sbom_file], &options(sbom))
            .await
            .unwrap();
        assert_eq!(attached.subject.digest(), root.digest());
        // A signature of the SBOM, attached by the SBOM's digest.
        let sbom_location: Location = match &image {
            Location::Docker { .. } => {
                docker(&addr, &format!("app@{}", attached.artifact.digest()))
            }
            _ => at("oci", &src, &format!("@{}", attached.artifact.digest())),
        };
        let sig_file = file(&files_dir, "sbom.sig", b"signed");
        ocikit_transport::attach(&sbom_location, &[sig_file], &options(sig))
            .await
            .unwrap();
        let sig_file = file(&files_dir, "image.sig", b"signed too");
        ocikit_transport::attach(&image, &[sig_file], &options(sig))
            .await
            .unwrap();

        // The title is the file name.
        let out = dir.path().join(format!("{name}-out"));
        artifact_pull(&sbom_location, &out, &pull_options())
            .await
            .unwrap();
        assert_eq!(
            std::fs::read(out.join("sbom.json")).unwrap(),
            b"{\"sbom\":1}"
        );

        let (subject, tree) = referrers_tree(&image, &plain(), None, 16, "referrers")
            .await
            .unwrap();
        assert_eq!(subject.to_string(), root.digest().to_string());
        let mut seen = Vec::new();
        shape(&tree, 1, &mut seen);
        seen.sort();
        let expected: Vec<(String, usize)> =
            vec![(sbom.into(), 1), (sig.into(), 1), (sig.into(), 2)];
        assert_eq!(seen, expected, "{name}");
        // The SBOM's signature is under the SBOM.
        let sbom_node = tree
            .iter()
            .find(|n| n.descriptor.digest() == attached.artifact.digest())
            .unwrap();
        assert_eq!(sbom_node.referrers.len(), 1, "{name}");

        // One level: the image's referrers only; a type: that type at every level.
        let (_, flat) = referrers_tree(&image, &plain(), None, 1, "referrers")
            .await
            .unwrap();
        assert!(flat.iter().all(|n| n.referrers.is_empty()) && flat.len() == 2);
        let (_, sigs) = referrers_tree(&image, &plain(), Some(sig), 16, "referrers")
            .await
            .unwrap();
        let mut seen = Vec::new();
        shape(&sigs, 1, &mut seen);
        assert_eq!(seen, [(sig.to_string(), 1)], "{name}");
    }
}
