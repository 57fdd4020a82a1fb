//! `ocikit artifact push` / `pull`, `attach` on a registry and `referrers --tree`, against
//! `ocikit serve`; files exchanged with oras-py (the `oras` package on PyPI, an independent
//! client); and what a pull refuses, with nothing written.

use std::path::{Path, PathBuf};

use ocikit::digest::Digest;

use crate::registry::Serve;
use crate::{contents, fails, json, ok};

/// python3 with the `oras` module, or `None` (skip) outside CI when either is missing.
#[allow(clippy::print_stderr)] // says why the test skips
fn oras_py() -> Option<ocikit_testkit::Tool> {
    let python = ocikit_testkit::Tool::require("python3")?;
    let found = python
        .command()
        .args(["-c", "import oras.client"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            !ocikit_testkit::in_ci(),
            "oras-py (`pip install oras`) is not installed, and CI must run every test that needs it"
        );
        eprintln!("skipping: the python module `oras` (pip install oras) is not installed");
        return None;
    }
    Some(python)
}

/// Runs a python script with oras-py in `dir`, with `args`; panics with its output if it
/// fails.
fn run_oras(python: &ocikit_testkit::Tool, dir: &Path, script: &str, args: &[&str]) {
    let out: std::process::Output = python
        .command()
        .current_dir(dir)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "oras-py failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `dir/NAME` written with `bytes`; returns its path.
fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn oras_py_and_ocikit_exchange_artifacts_through_ocikit_serve() {
    let Some(python) = oras_py() else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = Serve::start(&dir.path().join("root"), &[]);
    let input = dir.path().join("in");
    let notes = b"# notes\n\xe2\x9c\x93 byte exact\n".to_vec();
    let data = ocikit_testkit::prng::bytes(11, 300_000);
    write(&input, "notes.md", &notes);
    write(&input, "data.bin", &data);

    // oras-py pushes, ocikit pulls.
    let target = format!("{}/from-oras:v1", server.addr);
    run_oras(
        &python,
        &input,
        "import sys, oras.client\n\
         c = oras.client.OrasClient(insecure=True)\n\
         c.push(target=sys.argv[1], files=['notes.md:text/markdown', 'data.bin'], \
         manifest_annotations={'org.example.by': 'oras-py'})",
        &[&target],
    );
    let out = dir.path().join("pulled-by-ocikit");
    let pulled = json(&[
        "artifact",
        "pull",
        &format!("docker://{target}"),
        out.to_str().unwrap(),
        "--tls-verify=false",
    ]);
    assert_eq!(pulled["files"].as_array().unwrap().len(), 2, "{pulled}");
    assert_eq!(pulled["files"][0]["mediaType"], "text/markdown");
    assert_eq!(std::fs::read(out.join("notes.md")).unwrap(), notes);
    assert_eq!(std::fs::read(out.join("data.bin")).unwrap(), data);

    // ocikit pushes, oras-py pulls.
    let target = format!("{}/from-ocikit:v1", server.addr);
    let pushed = json(&[
        "artifact",
        "push",
        &format!("docker://{target}"),
        "--tls-verify=false",
        "--artifact-type",
        "application/vnd.example.notes",
        "--annotation",
        "org.example.by=ocikit",
        &format!("{}:text/markdown", input.join("notes.md").display()),
        input.join("data.bin").to_str().unwrap(),
    ]);
    assert_eq!(pushed["artifactType"], "application/vnd.example.notes");
    let out = dir.path().join("pulled-by-oras");
    run_oras(
        &python,
        dir.path(),
        "import sys, oras.client\n\
         c = oras.client.OrasClient(insecure=True)\n\
         files = c.pull(target=sys.argv[1], outdir=sys.argv[2])\n\
         assert len(files) == 2, files",
        &[&target, out.to_str().unwrap()],
    );
    assert_eq!(std::fs::read(out.join("notes.md")).unwrap(), notes);
    assert_eq!(std::fs::read(out.join("data.bin")).unwrap(), data);
    // What oras-py reads as the manifest is what ocikit said it pushed.
    let manifest = server.request("GET", "/v2/from-ocikit/manifests/v1", &[], b"");
    assert_eq!(manifest.status, 200);
    assert_eq!(
        Digest::sha256(&manifest.body).to_string(),
        pushed["digest"].as_str().unwrap()
    );
    let m: serde_json::Value = serde_json::from_slice(&manifest.body).unwrap();
    assert_eq!(
        m["config"]["mediaType"],
        "application/vnd.oci.empty.v1+json"
    );
    assert_eq!(m["annotations"]["org.example.by"], "ocikit");
    assert_eq!(
        m["layers"][1]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar"
    );
}

#[test]
fn attach_on_a_registry_and_the_referrers_tree() {
    let dir = tempfile::tempdir().unwrap();
    let server = Serve::start(&dir.path().join("root"), &[]);
    let files = dir.path().join("files");
    let image = format!("docker://{}/app:v1", server.addr);
    let readme = write(&files, "readme.txt", b"the subject");
    let pushed = json(&[
        "artifact",
        "push",
        &image,
        "--tls-verify=false",
        readme.to_str().unwrap(),
    ]);
    let sbom = write(&files, "sbom.json", b"{}");
    let attached = json(&[
        "attach",
        &image,
        "--tls-verify=false",
        "--artifact-type",
        "application/vnd.example.sbom+json",
        &format!("{}:application/json", sbom.display()),
    ]);
    assert_eq!(attached["subject"], pushed["digest"]);
    let sig = write(&files, "sbom.sig", b"signature");
    let of_sbom = format!(
        "docker://{}/app@{}",
        server.addr,
        attached["artifact"].as_str().unwrap()
    );
    json(&[
        "attach",
        &of_sbom,
        "--tls-verify=false",
        "--artifact-type",
        "application/vnd.example.sig",
        sig.to_str().unwrap(),
    ]);
    // The file name is the title: the SBOM comes back as sbom.json.
    let out = dir.path().join("out");
    ok(&[
        "artifact",
        "pull",
        &of_sbom,
        out.to_str().unwrap(),
        "--tls-verify=false",
    ]);
    assert_eq!(std::fs::read(out.join("sbom.json")).unwrap(), b"{}");

    // Flat (as before): one referrer, no nested key.
    let flat = json(&["referrers", &image, "--tls-verify=false"]);
    assert_eq!(flat["referrers"].as_array().unwrap().len(), 1, "{flat}");
    assert!(flat["referrers"][0].get("referrers").is_none(), "{flat}");
    // The tree: the signature under the SBOM.
    let tree = json(&["referrers", &image, "--tls-verify=false", "--tree"]);
    let sbom_row = &tree["referrers"][0];
    assert_eq!(
        sbom_row["artifactType"],
        "application/vnd.example.sbom+json"
    );
    assert_eq!(
        sbom_row["referrers"][0]["artifactType"],
        "application/vnd.example.sig"
    );
    let text = ok(&["referrers", &image, "--tls-verify=false", "--tree"]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[1].starts_with("  sha256:"), "{text}");
    // A type filters every level: no signature directly on the image.
    let sigs = json(&[
        "referrers",
        &image,
        "--tls-verify=false",
        "--tree",
        "--artifact-type",
        "application/vnd.example.sig",
    ]);
    assert!(sigs["referrers"].as_array().unwrap().is_empty(), "{sigs}");
    // Depth 0 is a usage error (status 2).
    let zero = crate::ocikit(&["referrers", &image, "--tls-verify=false", "--depth", "0"]);
    assert_eq!(zero.status.code(), Some(2));
}

/// A layout at `dir`, written by hand, whose tag `v1` is an artifact of one layer per
/// title, each holding `content`.
fn hand_written_layout(dir: &Path, titles: &[&str], content: &[u8]) {
    let blob = |bytes: &[u8]| {
        let digest = Digest::sha256(bytes);
        let path = dir.join(digest.blob_path());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
        digest
    };
    let empty = blob(b"{}");
    let layer = blob(content);
    let layers: Vec<serde_json::Value> = titles
        .iter()
        .map(|t| {
            serde_json::json!({
                "mediaType": "text/plain",
                "digest": layer.to_string(),
                "size": content.len(),
                "annotations": { "org.opencontainers.image.title": t },
            })
        })
        .collect();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.example",
        "config": { "mediaType": "application/vnd.oci.empty.v1+json", "digest": empty.to_string(), "size": 2 },
        "layers": layers,
    }))
    .unwrap();
    let m = blob(&manifest);
    write(dir, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": m.to_string(),
            "size": manifest.len(),
            "annotations": { "org.opencontainers.image.ref.name": "v1" },
        }],
    });
    write(dir, "index.json", &serde_json::to_vec(&index).unwrap());
}

#[test]
fn a_pull_refuses_hostile_titles_links_and_existing_files_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    write(&outside, "keep.txt", b"keep");
    let before = contents(&outside);

    for (i, (title, says)) in [
        ("../outside/keep.txt", "climbs out with `..`"),
        ("/etc/hostname", "is an absolute path"),
        ("", "is empty"),
        ("a//b", "empty or `.` component"),
    ]
    .iter()
    .enumerate()
    {
        let layout = dir.path().join(format!("hostile{i}"));
        hand_written_layout(&layout, &["fine.txt", title], b"evil");
        let out = dir.path().join(format!("out{i}"));
        let err = fails(&[
            "artifact",
            "pull",
            &format!("oci:{}:v1", layout.display()),
            out.to_str().unwrap(),
        ]);
        assert!(err.contains(says), "{title:?}: {err}");
        assert!(!out.exists(), "{title:?}");
    }

    // A link in DIR on a title's way, to a directory outside.
    let layout = dir.path().join("nested");
    hand_written_layout(&layout, &["sub/keep.txt"], b"evil");
    let out = dir.path().join("linked");
    std::fs::create_dir_all(&out).unwrap();
    std::os::unix::fs::symlink(&outside, out.join("sub")).unwrap();
    let err = fails(&[
        "artifact",
        "pull",
        &format!("oci:{}:v1", layout.display()),
        out.to_str().unwrap(),
        "--overwrite",
    ]);
    assert!(err.contains("symbolic link"), "{err}");
    assert_eq!(contents(&outside), before);

    // An existing file: refused and kept; replaced with --overwrite.
    let layout = dir.path().join("plain");
    hand_written_layout(&layout, &["keep.txt"], b"new");
    let source = format!("oci:{}:v1", layout.display());
    let err = fails(&["artifact", "pull", &source, outside.to_str().unwrap()]);
    assert!(err.contains("exists already"), "{err}");
    assert_eq!(contents(&outside), before);
    ok(&[
        "artifact",
        "pull",
        &source,
        outside.to_str().unwrap(),
        "--overwrite",
    ]);
    assert_eq!(std::fs::read(outside.join("keep.txt")).unwrap(), b"new");

    // A push of a file that is not there: refused, naming it, no layout made.
    let target = dir.path().join("never");
    let err = fails(&[
        "artifact",
        "push",
        &format!("oci:{}:v1", target.display()),
        dir.path().join("absent.txt").to_str().unwrap(),
    ]);
    assert!(err.contains("absent.txt"), "{err}");
    assert!(!target.exists());
}
