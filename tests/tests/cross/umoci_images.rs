//! Images umoci itself builds (`init`, `new`, `repack` after deleting a file and a directory,
//! `insert` of files and directories, `insert --opaque`, `insert --whiteout`) are fscked
//! (diffIDs included) and unpacked by ocikit, giving the tree umoci's own unpack gives.
//!
//! umoci 0.4.7's `insert` writes layers without end-of-archive blocks and without the padding
//! after the last entry's data; the test checks that the image really has such layers, so it
//! exercises the tar reader's end-of-archive rule (a stream that ends at an entry boundary
//! ends the archive). Under `CI=true` a missing umoci fails the test.

use std::io::Read;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use ocikit_codec::Limits;
use ocikit_codec::compression::Decoder;
use ocikit_layout::{FsckOptions, Layout, UnpackOptions};
use ocikit_store::FsStore;
use ocikit_tests::require_tool;

use crate::interop::{run, runtime, snapshot};

/// The uncompressed layer tars of the image `tag` names in the layout at `dir`, read from
/// the files with serde_json (not through ocikit's layout code).
fn layer_tars(dir: &Path, tag: &str) -> Vec<Vec<u8>> {
    let json = |digest: &str| -> serde_json::Value {
        let hex = digest.strip_prefix("sha256:").unwrap();
        serde_json::from_slice(&std::fs::read(dir.join("blobs/sha256").join(hex)).unwrap()).unwrap()
    };
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let entry = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap_or_else(|| panic!("no tag {tag} in {index}"));
    let manifest = json(entry["digest"].as_str().unwrap());
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|layer| {
            let hex = layer["digest"]
                .as_str()
                .unwrap()
                .strip_prefix("sha256:")
                .unwrap();
            let blob = std::fs::File::open(dir.join("blobs/sha256").join(hex)).unwrap();
            let media_type = layer["mediaType"].as_str().unwrap();
            let mut tar = Vec::new();
            Decoder::for_media_type(blob, media_type, Limits::default())
                .unwrap()
                .read_to_end(&mut tar)
                .unwrap();
            tar
        })
        .collect()
}

fn ends_with_zero_block(tar: &[u8]) -> bool {
    tar.len().is_multiple_of(512)
        && tar.len() >= 512
        && tar[tar.len() - 512..].iter().all(|&b| b == 0)
}

#[test]
fn images_umoci_builds_unpack_with_ocikit_as_with_umoci() {
    let Some(umoci) = require_tool("umoci") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let layout_dir = dir.path().join("layout");
    let image = |tag: &str| format!("{}:{tag}", layout_dir.display());
    let umoci_cmd = || Command::new(&umoci);
    run(umoci_cmd().args(["init", "--layout"]).arg(&layout_dir));
    run(umoci_cmd().args(["new", "--image"]).arg(image("base")));

    // Layer 1 (repack): a tree with a directory and a file that the next layer deletes.
    let bundle = dir.path().join("bundle");
    run(umoci_cmd()
        .args(["unpack", "--rootless", "--image"])
        .arg(image("base"))
        .arg(&bundle));
    let rootfs = bundle.join("rootfs");
    std::fs::create_dir_all(rootfs.join("etc/app/conf.d")).unwrap();
    std::fs::create_dir_all(rootfs.join("usr/bin")).unwrap();
    std::fs::create_dir_all(rootfs.join("var/cache/junk/deep")).unwrap();
    std::fs::write(rootfs.join("etc/app/app.conf"), b"level = 3\n").unwrap();
    std::fs::write(rootfs.join("etc/app/conf.d/extra.conf"), b"x = 1\n").unwrap();
    std::fs::write(rootfs.join("etc/obsolete"), b"to be deleted\n").unwrap();
    std::fs::write(rootfs.join("var/cache/junk/deep/blob"), vec![7u8; 5000]).unwrap();
    let tool = rootfs.join("usr/bin/tool");
    std::fs::write(&tool, b"#!/bin/sh\necho tool\n").unwrap();
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
    symlink("../usr/bin/tool", rootfs.join("etc/tool-link")).unwrap();
    std::fs::write(rootfs.join("etc/empty"), b"").unwrap();
    // (`--refresh-bundle`: the next repack is a diff against this layer, not the base.)
    run(umoci_cmd()
        .args(["repack", "--refresh-bundle", "--image"])
        .arg(image("one"))
        .arg(&bundle));

    // Layer 2 (repack): a file and a directory deleted (whiteouts), a file changed.
    std::fs::remove_file(rootfs.join("etc/obsolete")).unwrap();
    std::fs::remove_dir_all(rootfs.join("var/cache/junk")).unwrap();
    std::fs::write(rootfs.join("etc/app/app.conf"), b"level = 4\n").unwrap();
    run(umoci_cmd()
        .args(["repack", "--image"])
        .arg(image("two"))
        .arg(&bundle));

    // Layers 3-6 (insert): a file whose size is not a multiple of 512, a directory, the same
    // directory again as opaque, and a whiteout.
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("tree/sub")).unwrap();
    std::fs::write(src.join("single"), b"inserted, 21 bytes!\n").unwrap();
    std::fs::write(src.join("tree/a"), vec![b'a'; 1000]).unwrap();
    std::fs::write(src.join("tree/sub/b"), b"b\n").unwrap();
    run(umoci_cmd()
        .args(["insert", "--image"])
        .arg(image("two"))
        .args(["--tag", "three"])
        .arg(src.join("single"))
        .arg("/opt/single"));
    run(umoci_cmd()
        .args(["insert", "--image"])
        .arg(image("three"))
        .args(["--tag", "four"])
        .arg(src.join("tree"))
        .arg("/etc/app"));
    std::fs::remove_file(src.join("tree/a")).unwrap();
    run(umoci_cmd()
        .args(["insert", "--image"])
        .arg(image("four"))
        .args(["--tag", "five", "--opaque"])
        .arg(src.join("tree"))
        .arg("/etc/app"));
    run(umoci_cmd()
        .args(["insert", "--image"])
        .arg(image("five"))
        .args(["--tag", "six", "--whiteout", "/usr/bin"]));

    // The image has layers that end without end blocks and without final padding.
    let tars = layer_tars(&layout_dir, "six");
    assert_eq!(tars.len(), 6);
    assert!(
        tars.iter().any(|t| !ends_with_zero_block(t)),
        "no umoci layer without end blocks"
    );
    assert!(
        tars.iter().any(|t| t.len() % 512 != 0),
        "no umoci layer without its final padding"
    );

    let mut checked = Vec::new();
    let rt = runtime();
    for tag in ["one", "two", "three", "four", "five", "six"] {
        // What umoci itself unpacks.
        let theirs = dir.path().join(format!("umoci-{tag}"));
        run(umoci_cmd()
            .args(["unpack", "--rootless", "--image"])
            .arg(image(tag))
            .arg(&theirs));
        let expected = snapshot(&theirs.join("rootfs"));

        let ours = dir.path().join(format!("ocikit-{tag}"));
        rt.block_on(async {
            let layout = Layout::open(FsStore::open(&layout_dir).await.unwrap())
                .await
                .unwrap();
            let report = layout
                .fsck(&FsckOptions::new().with_diff_ids(true))
                .await
                .unwrap();
            assert!(report.is_clean(), "fsck: {:?}", report.problems);
            let target = layout.resolve(tag).await.unwrap();
            ocikit_layout::unpack(&layout, &target, &ours, &UnpackOptions::new())
                .await
                .unwrap_or_else(|e| panic!("unpacking {tag}: {e:?}"));
        });
        assert_eq!(snapshot(&ours), expected, "the tree of {tag}");
        checked.push((tag, expected));
    }

    // The whiteouts and inserts did what they say (so the comparison above is not vacuous).
    let has = |i: usize, p: &str| checked[i].1.contains_key(&PathBuf::from(p));
    assert!(has(3, "etc/app/a") && has(3, "etc/app/app.conf") && has(3, "opt/single"));
    assert!(!has(5, "etc/obsolete") && !has(5, "var/cache/junk") && !has(5, "usr/bin"));
    assert!(has(5, "var/cache") && has(5, "opt/single") && has(5, "etc/app/sub/b"));
    assert!(!has(5, "etc/app/a") && !has(5, "etc/app/app.conf") && !has(5, "etc/app/conf.d"));
    assert!(
        checked[0]
            .1
            .contains_key(Path::new("var/cache/junk/deep/blob"))
    );
}
