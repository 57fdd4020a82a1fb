//! "Refuse what is not a layer" (issue 14): `build` reads tar-file sources with the strict tar
//! reader as they stream. A gzip- or zstd-compressed tar (compressed by the system's `gzip`
//! and `zstd`) is decompressed, as `crane append -f layer.tar.gz` does: the layer's diffID is
//! that of the tar and unpacking gives its tree. Text and a truncated tar are refused, with
//! nothing tagged and the layout unchanged.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use ocikit::digest::Digest;

use crate::{contents, fails, json, oci, ok};

/// A tar with a directory, a text file, an executable and a symlink, written by the `tar`
/// crate, and the tree it holds (path → (kind, mode, content or link target)).
type Tree = BTreeMap<PathBuf, (&'static str, u32, Vec<u8>)>;

fn sample() -> (Vec<u8>, Tree) {
    let mut builder = tar::Builder::new(Vec::new());
    let mut tree = Tree::new();
    let mut add = |path: &str, kind: tar::EntryType, mode: u32, data: &[u8], link: &str| {
        let mut header = tar::Header::new_ustar();
        header.set_path(path).unwrap();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_mtime(1_700_000_000);
        header.set_size(data.len() as u64);
        if !link.is_empty() {
            header.set_link_name(link).unwrap();
        }
        header.set_cksum();
        builder.append(&header, data).unwrap();
        let node = match kind {
            tar::EntryType::Directory => ("dir", mode, Vec::new()),
            tar::EntryType::Symlink => ("link", 0, link.as_bytes().to_vec()),
            _ => ("file", mode, data.to_vec()),
        };
        tree.insert(PathBuf::from(path.trim_end_matches('/')), node);
    };
    add("etc/", tar::EntryType::Directory, 0o755, b"", "");
    add("etc/motd", tar::EntryType::Regular, 0o644, b"welcome\n", "");
    let tool: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
    add("etc/tool", tar::EntryType::Regular, 0o755, &tool, "");
    add("etc/link", tar::EntryType::Symlink, 0o777, b"", "motd");
    (builder.into_inner().unwrap(), tree)
}

/// What unpacking left under `root`, in the form of [`sample`]'s tree.
fn tree_of(root: &Path) -> Tree {
    let mut out = Tree::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            let mode = meta.permissions().mode() & 0o7777;
            let node = if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).unwrap();
                ("link", 0, target.into_os_string().into_encoded_bytes())
            } else if meta.is_dir() {
                stack.push(path.clone());
                ("dir", mode, Vec::new())
            } else {
                ("file", mode, std::fs::read(&path).unwrap())
            };
            out.insert(rel, node);
        }
    }
    out
}

/// `bytes` through the system's `tool` (`gzip -c` or `zstd -c`); `None` (a skip, said so)
/// when the tool is missing outside CI.
fn compress(tool: &str, bytes: &[u8]) -> Option<Vec<u8>> {
    let mut child = ocikit_testkit::Tool::require(tool)?
        .command()
        .args(["-c", "-q"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = bytes.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input).unwrap());
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(out.status.success(), "{tool} failed");
    Some(out.stdout)
}

/// The diffIDs of the image `tag` names, read from the layout's files with serde_json.
fn diff_ids(layout: &Path, tag: &str) -> Vec<String> {
    let read = |digest: &str| -> serde_json::Value {
        let hex = digest.strip_prefix("sha256:").unwrap();
        serde_json::from_slice(&std::fs::read(layout.join("blobs/sha256").join(hex)).unwrap())
            .unwrap()
    };
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let entry = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap();
    let manifest = read(entry["digest"].as_str().unwrap());
    let config = read(manifest["config"]["digest"].as_str().unwrap());
    config["rootfs"]["diff_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn build_takes_plain_gzip_and_zstd_tar_files() {
    let (tar, expected) = sample();
    let (Some(gz), Some(zst)) = (compress("gzip", &tar), compress("zstd", &tar)) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("images");
    for (name, bytes) in [
        ("layer.tar", &tar),
        ("layer.tar.gz", &gz),
        ("layer.tar.zst", &zst),
    ] {
        let source = dir.path().join(name);
        std::fs::write(&source, bytes).unwrap();
        for compression in ["gzip", "zstd", "none"] {
            let tag = format!("{}-{compression}", name.replace('.', "-"));
            json(&[
                "build",
                "--compression",
                compression,
                "--tag",
                &oci(&layout, &format!(":{tag}")),
                source.to_str().unwrap(),
            ]);
            assert_eq!(
                diff_ids(&layout, &tag),
                [Digest::sha256(&tar).to_string()],
                "{tag}: the diffID is the tar's"
            );
            let rootfs = dir.path().join(format!("rootfs-{tag}"));
            ok(&[
                "unpack",
                &oci(&layout, &format!(":{tag}")),
                rootfs.to_str().unwrap(),
            ]);
            assert_eq!(tree_of(&rootfs), expected, "{tag}");
        }
    }
    ok(&["fsck", "--diff-ids", &oci(&layout, "")]);
}

#[test]
fn build_refuses_what_is_not_a_tar_and_tags_nothing() {
    let (tar, _) = sample();
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("images");
    // A good image first, so that "unchanged" has something to keep.
    let good = dir.path().join("good.tar");
    std::fs::write(&good, &tar).unwrap();
    ok(&[
        "build",
        "--tag",
        &oci(&layout, ":good"),
        good.to_str().unwrap(),
    ]);
    let before = contents(&layout);
    // Cut inside etc/tool's data (its header is the third block).
    let cut = 512 * 3 + 1000;
    for (name, bytes, says) in [
        ("garbage", b"garbage\n".to_vec(), "not a tar archive"),
        ("truncated.tar", tar[..cut].to_vec(), "ends inside"),
    ] {
        let source = dir.path().join(name);
        std::fs::write(&source, bytes).unwrap();
        let stderr = fails(&[
            "build",
            "--tag",
            &oci(&layout, ":bad"),
            source.to_str().unwrap(),
        ]);
        assert!(stderr.contains(says), "{name}: {stderr}");
        assert!(
            stderr.contains(name),
            "{name}: the source is named: {stderr}"
        );
        assert_eq!(contents(&layout), before, "{name}: the layout changed");
    }
    // (index.json among the unchanged files: nothing was tagged.)
    assert!(before.iter().any(|(p, _)| p.ends_with("index.json")));
}

/// Every path under `dir` (directories included), sorted: what a failed command must leave
/// as it found it.
fn paths_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path.clone());
            }
            out.push(path);
        }
    }
    out.sort();
    out
}

/// "A command that fails leaves the layouts it was given as they were" (docs/ARCHITECTURE.md):
/// a build that fails into a layout that does not exist yet (or an empty directory) leaves
/// no layout behind: no `oci-layout`, no `index.json`, no `blobs/`, no staging directory,
/// no parent directories it made. The same builds with a good source create the layout.
#[test]
fn a_failed_build_into_a_new_layout_leaves_no_directory() {
    let (tar, _) = sample();
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage-file");
    std::fs::write(&garbage, b"garbage\n").unwrap();
    let good = dir.path().join("good.tar");
    std::fs::write(&good, &tar).unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let empty = work.join("empty");
    std::fs::create_dir(&empty).unwrap();
    let targets = [
        work.join("NEW"),
        work.join("parents/not/there/NEW"),
        empty.clone(),
    ];
    let before = paths_under(&work);
    for target in &targets {
        let stderr = fails(&[
            "build",
            "--tag",
            &oci(target, ":t"),
            "--layer",
            garbage.to_str().unwrap(),
        ]);
        assert!(stderr.contains("not a tar archive"), "{stderr}");
        assert_eq!(
            paths_under(&work),
            before,
            "a failed build into {} left something",
            target.display()
        );
    }
    assert!(!work.join("NEW").exists() && !work.join("parents").exists());
    assert!(empty.is_dir(), "the empty directory given stays");

    // The same targets with a good source: the layout appears, complete, and reads back.
    for target in &targets {
        ok(&[
            "build",
            "--tag",
            &oci(target, ":t"),
            "--layer",
            good.to_str().unwrap(),
        ]);
        assert!(target.join("oci-layout").is_file(), "{}", target.display());
        ok(&["fsck", &oci(target, "")]);
        assert!(ok(&["ls", &oci(target, "")]).contains('t'));
    }
    // Nothing else appeared beside them (no staging left behind).
    let mut names: Vec<String> = std::fs::read_dir(&work)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["NEW", "empty", "parents"]);
}

/// The other half of the rule: a failed build into a layout that exists leaves every file
/// and directory of it as it was, byte for byte.
#[test]
fn a_failed_build_into_an_existing_layout_leaves_it_byte_identical() {
    let (tar, _) = sample();
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("images");
    let good = dir.path().join("good.tar");
    std::fs::write(&good, &tar).unwrap();
    ok(&[
        "build",
        "--tag",
        &oci(&layout, ":good"),
        good.to_str().unwrap(),
    ]);
    let garbage = dir.path().join("garbage-file");
    std::fs::write(&garbage, b"garbage\n").unwrap();
    let files = contents(&layout);
    let paths = paths_under(&layout);
    // A good layer then a bad one: the first layer's blob must not stay either.
    let stderr = fails(&[
        "build",
        "--tag",
        &oci(&layout, ":bad"),
        "--layer",
        good.to_str().unwrap(),
        "--layer",
        garbage.to_str().unwrap(),
    ]);
    assert!(stderr.contains("not a tar archive"), "{stderr}");
    assert_eq!(contents(&layout), files, "a file changed");
    assert_eq!(paths_under(&layout), paths, "a path appeared or vanished");
}

/// Issue 14, "nothing unverifiable is ever treated as verified": a manifest named by a digest
/// under an unregistered algorithm (`oci:L@foo:…`, stored but in no index entry) is refused
/// with the digest named, not read unverified.
#[test]
fn an_image_named_by_an_unverifiable_digest_is_refused() {
    let (tar, _) = sample();
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("images");
    let good = dir.path().join("good.tar");
    std::fs::write(&good, &tar).unwrap();
    ok(&[
        "build",
        "--tag",
        &oci(&layout, ":v1"),
        good.to_str().unwrap(),
    ]);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest = Digest::parse(index["manifests"][0]["digest"].as_str().unwrap()).unwrap();
    let bytes = std::fs::read(layout.join("blobs/sha256").join(manifest.encoded())).unwrap();
    std::fs::create_dir_all(layout.join("blobs/foo")).unwrap();
    std::fs::write(layout.join("blobs/foo").join(manifest.encoded()), &bytes).unwrap();
    let foreign = format!("foo:{}", manifest.encoded());
    // Bytes that are no manifest at all under `foo:`: reading them to find a media type
    // would already be using them unverified.
    let junk = Digest::sha256(b"junk");
    std::fs::write(layout.join("blobs/foo").join(junk.encoded()), b"junk").unwrap();
    let junk = format!("foo:{}", junk.encoded());
    // The sound digest reads: the refusal is about the algorithm.
    ok(&["inspect", &oci(&layout, &format!("@{manifest}"))]);
    let target = dir.path().join("rootfs");
    for (foreign, args) in [
        (
            &foreign,
            vec!["inspect".to_string(), oci(&layout, &format!("@{foreign}"))],
        ),
        (
            &junk,
            vec!["inspect".to_string(), oci(&layout, &format!("@{junk}"))],
        ),
        (
            &foreign,
            vec![
                "unpack".to_string(),
                oci(&layout, &format!("@{foreign}")),
                target.to_str().unwrap().to_string(),
            ],
        ),
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let stderr = fails(&args);
        assert!(
            stderr.contains(foreign.as_str()) && stderr.contains("cannot verify"),
            "{args:?}: {stderr}"
        );
    }
    assert!(!target.exists());
}

/// `--hardlink` appears only where it acts: `copy` between two layouts. `pull` and `push`
/// (a registry on one side: nothing to link to) do not offer it, and `copy` refuses it where
/// a registry or an archive is involved instead of ignoring it.
#[test]
fn hardlink_is_offered_only_where_it_acts() {
    assert!(ok(&["copy", "--help"]).contains("--hardlink"));
    for command in ["pull", "push", "import", "export"] {
        let help = ok(&[command, "--help"]);
        assert!(!help.contains("--hardlink"), "{command} --help: {help}");
    }
    // A usage error, as for any flag a command does not have.
    let out = crate::ocikit(&[
        "pull",
        "--hardlink",
        "docker://127.0.0.1:9/a:b",
        "oci:/nonexistent/x:y",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--hardlink"), "{stderr}");

    let (tar, _) = sample();
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("images");
    let good = dir.path().join("good.tar");
    std::fs::write(&good, &tar).unwrap();
    ok(&[
        "build",
        "--tag",
        &oci(&layout, ":v1"),
        good.to_str().unwrap(),
    ]);
    let archive = dir.path().join("v1.tar");
    let stderr = fails(&[
        "copy",
        "--hardlink",
        &oci(&layout, ":v1"),
        &format!("oci-archive:{}", archive.display()),
    ]);
    assert!(
        stderr.contains("--hardlink") && stderr.contains("oci:"),
        "{stderr}"
    );
    assert!(!archive.exists());
    // Between layouts it acts: the blob files are shared.
    let other = dir.path().join("other");
    ok(&[
        "copy",
        "-q",
        "--hardlink",
        &oci(&layout, ":v1"),
        &oci(&other, ":v1"),
    ]);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(other.join("index.json")).unwrap()).unwrap();
    let manifest = Digest::parse(index["manifests"][0]["digest"].as_str().unwrap()).unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(other.join("blobs/sha256").join(manifest.encoded())).unwrap(),
    )
    .unwrap();
    let layer = Digest::parse(manifest["layers"][0]["digest"].as_str().unwrap()).unwrap();
    let path = |root: &Path| root.join("blobs/sha256").join(layer.encoded());
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(path(&layout)).unwrap().ino(),
        std::fs::metadata(path(&other)).unwrap().ino()
    );
}

/// Every entry under `dir` whose name marks it as ocikit staging (or scratch) left behind.
fn staging_under(dir: &Path) -> Vec<PathBuf> {
    paths_under(dir)
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().contains(".ocikit-"))
        })
        .collect()
}

/// A built layout at `dir/A` (tag `t`); returns the path of its layer blob (the largest).
fn built_layout(dir: &Path) -> (PathBuf, PathBuf) {
    let (tar, _) = sample();
    let good = dir.join("good.tar");
    std::fs::write(&good, &tar).unwrap();
    let layout = dir.join("A");
    ok(&[
        "build",
        "--tag",
        &oci(&layout, ":t"),
        good.to_str().unwrap(),
    ]);
    let largest = std::fs::read_dir(layout.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    (layout, largest)
}

/// Issue 14, "finish completely or leave nothing": a copy into a layout that does not exist
/// yet that fails (a corrupt source blob) leaves no layout, no parents and no staging.
#[test]
fn a_failed_copy_into_a_new_layout_leaves_no_directory() {
    let dir = tempfile::tempdir().unwrap();
    let (source, blob) = built_layout(dir.path());
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    // The sound copy works, and then the source is spoilt.
    let sound = work.join("sound");
    ok(&["copy", &oci(&source, ":t"), &oci(&sound, ":t")]);
    ok(&["fsck", &oci(&sound, "")]);
    std::fs::remove_dir_all(&sound).unwrap();
    let mut bytes = std::fs::read(&blob).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&blob, &bytes).unwrap();
    for target in [work.join("NEW"), work.join("not/there/NEW")] {
        fails(&["copy", &oci(&source, ":t"), &oci(&target, ":t")]);
        assert!(
            paths_under(&work).is_empty(),
            "a failed copy into {} left {:?}",
            target.display(),
            paths_under(&work)
        );
    }
}

/// A pull into a layout that does not exist yet that fails (here: nothing listens) leaves no
/// layout either.
#[test]
fn a_failed_pull_into_a_new_layout_leaves_no_directory() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // The listener is gone: connections are refused.
    for target in [dir.path().join("NEW"), dir.path().join("not/there/NEW")] {
        fails(&[
            "pull",
            &format!("docker://127.0.0.1:{port}/demo/app:v1"),
            &oci(&target, ":v1"),
        ]);
        assert!(
            paths_under(dir.path()).is_empty(),
            "{:?}",
            paths_under(dir.path())
        );
    }
}

/// The same for an import whose archive lacks the tag asked for.
#[test]
fn a_failed_import_into_a_new_layout_leaves_no_directory() {
    let dir = tempfile::tempdir().unwrap();
    let (source, _) = built_layout(dir.path());
    let archive = dir.path().join("a.tar");
    ok(&[
        "export",
        &oci(&source, ":t"),
        &format!("oci-archive:{}", archive.display()),
    ]);
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let target = work.join("NEW");
    fails(&[
        "import",
        &format!("oci-archive:{}:missing", archive.display()),
        &oci(&target, ""),
    ]);
    assert!(paths_under(&work).is_empty(), "{:?}", paths_under(&work));
    // The tag that is there imports.
    ok(&[
        "import",
        &format!("oci-archive:{}:t", archive.display()),
        &oci(&target, ""),
    ]);
    ok(&["fsck", &oci(&target, "")]);
    assert!(
        staging_under(&work).is_empty(),
        "{:?}",
        staging_under(&work)
    );
}

/// Staging left by a killed build (its lock held by nobody) is removed by the next build of
/// the same target; staging still in use (its lock held) is left alone.
#[test]
fn staging_of_a_killed_run_is_removed_by_the_next_run_for_the_target() {
    let dir = tempfile::tempdir().unwrap();
    let (source, _) = built_layout(dir.path());
    let (tar, _) = sample();
    let good = dir.path().join("good.tar");
    std::fs::write(&good, &tar).unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let killed = |name: &str| {
        let stale = work.join(format!(".{name}.ocikit-staging-killed1"));
        std::fs::create_dir_all(stale.join("layout/blobs/sha256")).unwrap();
        std::fs::write(stale.join("layout/oci-layout"), b"{}").unwrap();
        std::fs::write(stale.join("lock"), b"").unwrap();
        stale
    };
    let stale = killed("NEW");
    let live = work.join(".NEW.ocikit-staging-running");
    std::fs::create_dir_all(live.join("layout")).unwrap();
    let held = std::fs::File::create(live.join("lock")).unwrap();
    held.lock().unwrap();
    ok(&[
        "build",
        "--tag",
        &oci(&work.join("NEW"), ":t"),
        good.to_str().unwrap(),
    ]);
    assert!(!stale.exists(), "the killed build's staging stayed");
    assert!(live.join("layout").is_dir(), "a live staging was touched");
    drop(held);
    // Copies into a new layout clean up the same way, scratch space included.
    let stale = killed("COPY");
    let scratch = work.join(".COPY.ocikit-scratch-killed1");
    std::fs::create_dir_all(scratch.join("scratch/layout/blobs/sha256")).unwrap();
    std::fs::write(scratch.join("lock"), b"").unwrap();
    ok(&["copy", &oci(&source, ":t"), &oci(&work.join("COPY"), ":t")]);
    assert!(!stale.exists(), "the killed copy's staging stayed");
    assert!(!scratch.exists(), "the killed copy's scratch stayed");
    let left: Vec<PathBuf> = staging_under(&work)
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(".COPY."))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    ok(&["fsck", &oci(&work.join("COPY"), "")]);
}

/// A manifest named by digest and in no index entry is read with the strict parser: one
/// with a duplicate key (serde_json would keep the last `mediaType`) is refused by every
/// command that names it so, and `tag` tags nothing.
#[test]
fn a_manifest_with_a_duplicate_key_named_by_digest_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (layout, _) = built_layout(dir.path());
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest = Digest::parse(index["manifests"][0]["digest"].as_str().unwrap()).unwrap();
    let text = String::from_utf8(
        std::fs::read(layout.join("blobs/sha256").join(manifest.encoded())).unwrap(),
    )
    .unwrap();
    assert!(
        text.starts_with('{') && text.contains("\"mediaType\""),
        "{text}"
    );
    let twice = format!(
        "{{\"mediaType\":\"application/vnd.oci.image.index.v1+json\",{}",
        &text[1..]
    );
    let digest = Digest::sha256(twice.as_bytes());
    std::fs::write(layout.join("blobs/sha256").join(digest.encoded()), &twice).unwrap();
    let files = contents(&layout);
    for args in [
        vec!["inspect".to_string(), oci(&layout, &format!("@{digest}"))],
        vec![
            "tag".to_string(),
            oci(&layout, &format!("@{digest}")),
            "dup".to_string(),
        ],
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let stderr = fails(&args);
        assert!(stderr.contains("duplicate"), "{args:?}: {stderr}");
    }
    assert_eq!(contents(&layout), files, "the layout changed");
    // The sound manifest, named the same way, is fine.
    ok(&["tag", &oci(&layout, &format!("@{manifest}")), "again"]);
}
