//! The tar-quirks corpus (`tests/corpus/tar-quirks/`, written by its `gen.py` with Python's
//! `tarfile` header encoder): the ways real generators end a tar stream (no end blocks, one
//! end block, no padding after the last entry's data as umoci writes it, trailing zero
//! blocks) applied by ocikit's applier, strict and lenient, each giving the tree its
//! `.expected` listing names, with the diffID of every byte; and the truncated streams (ending
//! inside a header, inside an entry's data) refused.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use ocikit_codec::Error;
use ocikit_codec::Limits;
use ocikit_codec::apply::{ApplyOptions, apply_layer, list_entries};
use ocikit_digest::Digest;
use ocikit_tests::workspace_root;

fn corpus() -> Vec<(String, Vec<u8>, String)> {
    let dir = workspace_root().join("tests/corpus/tar-quirks");
    let mut cases: Vec<(String, Vec<u8>, String)> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "tar"))
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            let expected = fs::read_to_string(p.with_extension("expected"))
                .unwrap_or_else(|e| panic!("{name}.expected: {e}"));
            (name, fs::read(&p).unwrap(), expected)
        })
        .collect();
    cases.sort();
    cases
}

/// The tree under `root` in the `.expected` format, sorted by path.
fn listing(root: &Path) -> String {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(PathBuf, String)>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            let meta = fs::symlink_metadata(&path).unwrap();
            let mode = meta.permissions().mode() & 0o7777;
            let line = if meta.file_type().is_symlink() {
                format!(
                    "symlink {} -> {}",
                    rel.display(),
                    fs::read_link(&path).unwrap().display()
                )
            } else if meta.is_dir() {
                walk(root, &path, out);
                format!("dir {mode:o} {}", rel.display())
            } else {
                let data = fs::read(&path).unwrap();
                let digest = Digest::sha256(&data).to_string();
                let hex = digest.strip_prefix("sha256:").unwrap();
                format!("file {mode:o} {} {hex} {}", data.len(), rel.display())
            };
            out.push((rel, line));
        }
    }
    let mut lines = Vec::new();
    walk(root, root, &mut lines);
    lines.sort();
    lines.into_iter().map(|(_, l)| l + "\n").collect()
}

#[test]
fn generator_quirks_apply_to_their_expected_trees_and_truncations_are_refused() {
    let cases = corpus();
    let names: Vec<&str> = cases.iter().map(|(n, ..)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "ends-inside-data",
            "ends-inside-header",
            "no-end-blocks",
            "no-final-padding",
            "one-end-block",
            "trailing-zero-blocks",
        ]
    );
    for (name, tar, expected) in &cases {
        for strict in [true, false] {
            let root = tempfile::tempdir().unwrap();
            let options = ApplyOptions::default().with_strict(strict);
            let result = apply_layer(root.path(), &tar[..], &options);
            let listed = list_entries(&tar[..], Limits::default());
            if expected.trim() == "refused: truncated" {
                for err in [
                    result.as_ref().err().map(|e| e as &Error),
                    listed.as_ref().err(),
                ] {
                    assert!(
                        matches!(err, Some(Error::Corrupt { format: "tar", source })
                            if source.kind() == std::io::ErrorKind::UnexpectedEof),
                        "{name} (strict: {strict}): {err:?}"
                    );
                }
                continue;
            }
            let report = result.unwrap_or_else(|e| panic!("{name} (strict: {strict}): {e:?}"));
            assert_eq!(listing(root.path()), *expected, "{name} (strict: {strict})");
            assert_eq!(report.diff_id, Digest::sha256(tar), "{name}: the diffID");
            assert_eq!(report.tar_size, tar.len() as u64, "{name}");
            let (entries, diff_id) = listed.unwrap_or_else(|e| panic!("{name}: {e:?}"));
            assert_eq!(entries.len(), 8, "{name}: the listing");
            assert_eq!(diff_id, report.diff_id, "{name}");
        }
    }
}
