//! `squash`: a stack of layers merged into one tar stream. The tree it unpacks to (with the
//! crate's applier, and with GNU tar) equals the tree the layers give applied in turn, on
//! fixed stacks and on generated ones (files, directories, symlinks, hard links, FIFOs,
//! whiteouts, opaque directories); hostile and inconsistent stacks are refused naming the
//! entry.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::Command;

use ocikit_codec::apply::{ApplyOptions, apply_layer, list_entries};
use ocikit_codec::squash::{SquashOptions, SquashReport, squash};
use ocikit_codec::{Error, InvalidEntry, Limits};
use ocikit_digest::Digest;
use ocikit_testkit::tarball::{Entry, archive};
use proptest::prelude::*;

use crate::roundtrip::{Ignore, diff_trees, have_tool, is_root, run, snapshot};

/// Squashes `layers` (bottom first) into a tar stream.
fn squashed(layers: &[Vec<u8>]) -> Result<(Vec<u8>, SquashReport), Error> {
    let mut out = Vec::new();
    let report = squash(
        layers.len(),
        |i| Ok(&layers[i][..]),
        &mut out,
        &SquashOptions::new(),
    )?;
    Ok((out, report))
}

fn apply_all(root: &Path, layers: &[Vec<u8>]) {
    for (i, layer) in layers.iter().enumerate() {
        apply_layer(root, &layer[..], &ApplyOptions::new())
            .unwrap_or_else(|e| panic!("layer {i}: {e}"));
    }
}

/// The layers applied in turn, and their squash applied, give the same tree (and so does
/// GNU tar extracting the squash, when `gnu` and it is there). Returns the report.
fn check_stack(layers: &[Vec<u8>], gnu: bool) -> SquashReport {
    let layered = tempfile::tempdir().unwrap();
    apply_all(layered.path(), layers);
    let (merged, report) = squashed(layers).unwrap();
    let expected = snapshot(layered.path());

    let flat = tempfile::tempdir().unwrap();
    apply_layer(flat.path(), &merged[..], &ApplyOptions::new()).unwrap();
    let problems = diff_trees(&expected, &snapshot(flat.path()), |_, _| Ignore::default());
    assert!(problems.is_empty(), "applier: {problems:#?}");

    // No whiteout is written; names are clean.
    let (listed, _) = list_entries(&merged[..], Limits::default()).unwrap();
    for entry in &listed {
        let name = String::from_utf8_lossy(&entry.path);
        assert!(!name.contains(".wh."), "{name}");
        assert!(!name.starts_with('/') && !name.contains("//"), "{name}");
    }
    assert_eq!(listed.len() as u64, report.entries);

    if gnu && have_tool("tar") {
        let extracted = tempfile::tempdir().unwrap();
        let file = extracted.path().join("merged.tar");
        std::fs::write(&file, &merged).unwrap();
        let root = extracted.path().join("root");
        std::fs::create_dir(&root).unwrap();
        run(Command::new("tar")
            .args([
                "--extract",
                "--preserve-permissions",
                "--numeric-owner",
                "--delay-directory-restore",
                "--file",
            ])
            .arg(&file)
            .arg("--directory")
            .arg(&root));
        let problems = diff_trees(&expected, &snapshot(&root), |_, _| Ignore::default());
        assert!(problems.is_empty(), "GNU tar: {problems:#?}");
    }
    report
}

/// Each layer's entries as `name`, `name -> link` (hard links) or `name@ symlink`, for
/// failure messages.
fn listing(layers: &[Vec<u8>]) -> Vec<Vec<String>> {
    layers
        .iter()
        .map(|layer| {
            let (entries, _) = list_entries(&layer[..], Limits::default()).unwrap();
            entries
                .iter()
                .map(|e| {
                    let name = String::from_utf8_lossy(&e.path).into_owned();
                    match e.typeflag {
                        b'1' => format!("{name} -> {}", String::from_utf8_lossy(&e.link)),
                        b'2' => format!("{name}@ {}", String::from_utf8_lossy(&e.link)),
                        _ => format!("{name} {}:{}", e.uid, e.gid),
                    }
                })
                .collect()
        })
        .collect()
}

fn whiteout(name: &str) -> Entry {
    Entry::file(name, b"")
}

#[test]
fn a_fixed_stack_squashes_to_the_tree_its_layers_give() {
    let base = archive(&[
        Entry::dir("etc/").mtime(100),
        Entry::file("etc/passwd", b"root:x:0:0\n").mtime(100),
        Entry::file("etc/old.conf", b"old\n").mtime(100),
        Entry::dir("usr/").mtime(100),
        Entry::dir("usr/bin/").mtime(100),
        Entry::file("usr/bin/tool", b"#!/bin/sh\necho v1\n")
            .mode(0o755)
            .mtime(100),
        Entry::hardlink("usr/bin/tool-alias", "usr/bin/tool"),
        Entry::symlink("usr/bin/sh", "/bin/busybox").mtime(100),
        Entry::dir("var/").mtime(100),
        Entry::dir("var/cache/").mtime(100),
        Entry::file("var/cache/a", b"cached a").mtime(100),
        Entry::dir("var/cache/sub/").mtime(100),
        Entry::file("var/cache/sub/b", b"cached b").mtime(100),
        Entry::dir("opt/").mtime(100),
        Entry::file("opt/keep", b"kept").owner(1000, 100).mtime(100),
    ]);
    let middle = archive(&[
        Entry::dir("etc/").mtime(200),
        whiteout("etc/.wh.old.conf"),
        Entry::file("etc/new.conf", b"new\n").mtime(200),
        Entry::dir("var/").mtime(200),
        Entry::dir("var/cache/").mode(0o700).mtime(200),
        whiteout("var/cache/.wh..wh..opq"),
        Entry::file("var/cache/fresh", b"fresh").mtime(200),
        Entry::dir("usr/").mtime(200),
        Entry::dir("usr/bin/").mtime(200),
        // The tool is replaced: its alias keeps the old content (a link in the squash would
        // name the new one).
        Entry::file("usr/bin/tool", b"#!/bin/sh\necho v2\n")
            .mode(0o755)
            .mtime(200),
        Entry::fifo("usr/bin/pipe").mtime(200),
    ]);
    let top = archive(&[
        Entry::dir("usr/").mtime(300),
        Entry::dir("usr/bin/").mtime(300),
        // A link to a file of a lower layer: written after it in the squash.
        Entry::hardlink("usr/bin/passwd-copy", "etc/passwd"),
        Entry::dir("etc/").mtime(300),
        Entry::file("etc/passwd", b"root:x:0:0\nuser:x:1000:1000\n").mtime(300),
        Entry::dir("opt/").mode(0o750).owner(0, 10).mtime(300),
    ]);
    let layers = [base, middle, top];
    let report = check_stack(&layers, true);
    // `usr/bin/tool-alias` (its other name replaced in the middle layer) and
    // `usr/bin/passwd-copy` (linked to the base's `etc/passwd`, which its own layer then
    // replaced) are copies, both read from a second read of the base layer.
    assert_eq!(report.materialized, 2, "{report:?}");
    assert_eq!(report.layers_reread, 1, "{report:?}");
    assert_eq!(report.whiteouts, 2);
    assert!(report.diff_ids.is_empty());
    let ids: Vec<Digest> = layers.iter().map(|l| Digest::sha256(l)).collect();
    let options = SquashOptions::new().with_expected_diff_ids(Some(ids.clone()));
    let checked = squash(3, |i| Ok(&layers[i][..]), Vec::new(), &options).unwrap();
    assert_eq!(checked.diff_ids, ids);

    // What the tree holds, spelled out.
    let (merged, _) = squashed(&layers).unwrap();
    // The same bytes with the layers read on this thread.
    let mut same = Vec::new();
    let options = SquashOptions::new().with_read_ahead(false);
    squash(3, |i| Ok(&layers[i][..]), &mut same, &options).unwrap();
    assert_eq!(same, merged);
    let root = tempfile::tempdir().unwrap();
    apply_layer(root.path(), &merged[..], &ApplyOptions::new()).unwrap();
    let read = |p: &str| std::fs::read(root.path().join(p)).unwrap();
    assert_eq!(read("usr/bin/tool-alias"), b"#!/bin/sh\necho v1\n");
    assert_eq!(read("usr/bin/tool"), b"#!/bin/sh\necho v2\n");
    assert_eq!(read("usr/bin/passwd-copy"), b"root:x:0:0\n");
    assert_eq!(read("etc/passwd"), b"root:x:0:0\nuser:x:1000:1000\n");
    assert!(!root.path().join("etc/old.conf").exists());
    assert!(!root.path().join("var/cache/a").exists());
    assert!(!root.path().join("var/cache/sub").exists());
    assert_eq!(read("var/cache/fresh"), b"fresh");
}

#[test]
fn links_to_a_lower_inode_follow_it_and_stay_links() {
    // The link in the top layer names the base's file; the squash writes it after the file
    // and as a link, so both names are one inode, as when the layers are applied in turn.
    let base = archive(&[
        Entry::dir("d/"),
        Entry::file("d/target", b"shared"),
        Entry::file("d/other", b"x"),
    ]);
    let top = archive(&[Entry::dir("d/"), Entry::hardlink("d/link", "d/target")]);
    let report = check_stack(&[base, top], true);
    assert_eq!((report.hardlinks, report.materialized), (1, 0));
}

#[test]
fn a_link_whose_other_names_are_all_gone_is_written_as_a_copy() {
    let base = archive(&[
        Entry::file("a", b"content of a").mode(0o640).owner(7, 8),
        Entry::hardlink("b", "a"),
        Entry::hardlink("c", "a"),
    ]);
    let top = archive(&[whiteout(".wh.a")]);
    let report = check_stack(&[base, top], true);
    assert_eq!(
        (report.materialized, report.hardlinks),
        (1, 1),
        "{report:?}"
    );
}

#[test]
fn entries_written_twice_in_one_layer_keep_the_last() {
    let base = archive(&[Entry::dir("d/"), Entry::file("d/x", b"lower")]);
    let top = archive(&[
        Entry::dir("d/"),
        Entry::file("d/x", b"first"),
        Entry::file("d/x", b"second"),
        Entry::dir("e/"),
        Entry::file("e/inner", b"gone with e"),
        Entry::file("e", b"e is a file now"),
    ]);
    check_stack(&[base, top], false);
}

#[test]
fn layers_without_entries_for_parent_directories_squash_too() {
    // As tools that append a tarball write them: `a/y` without `a/`. The lower layer's `a/`
    // comes after `a/y` in the squash, and gives `a` its metadata.
    let base = archive(&[
        Entry::dir("a/").mode(0o700).owner(5, 6).mtime(100),
        Entry::file("a/x", b"x"),
    ]);
    let top = archive(&[Entry::file("a/y", b"y"), Entry::file("b/c/d", b"d")]);
    let layered = tempfile::tempdir().unwrap();
    apply_all(layered.path(), &[base.clone(), top.clone()]);
    let (merged, _) = squashed(&[base, top]).unwrap();
    let flat = tempfile::tempdir().unwrap();
    apply_layer(flat.path(), &merged[..], &ApplyOptions::new()).unwrap();
    // Applied in turn, adding `a/y` moves `a`'s mtime to the time of the apply (no entry of
    // the top layer sets it back); the squash keeps the base's. All else is the same.
    let problems = diff_trees(
        &snapshot(layered.path()),
        &snapshot(flat.path()),
        |_, node| Ignore {
            mtime: node.kind == crate::roundtrip::Kind::Dir,
            xattrs: false,
        },
    );
    assert!(problems.is_empty(), "{problems:#?}");
    let meta = std::fs::metadata(flat.path().join("a")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(meta.mode() & 0o7777, 0o700);
    assert_eq!(meta.mtime(), 100);
}

#[test]
fn long_names_xattrs_devices_and_owners_pass_through() {
    let long_dir = format!("{}/", "d".repeat(120));
    let long_file = format!("{long_dir}{}", "f".repeat(150));
    let base = archive(&[
        Entry::dir(&long_dir).mtime(50),
        Entry::file(&long_file, b"long")
            .owner(3_000_000, 70_000)
            .mtime(50)
            .pax("SCHILY.xattr.user.note", b"kept\n\0binary"),
        Entry::char_device("null", 1, 3).mode(0o666).mtime(50),
        Entry::symlink("link", "x".repeat(200)).mtime(50),
        Entry::hardlink("long-link", &long_file),
    ]);
    let top = archive(&[Entry::file("other", b"o").mtime(60)]);
    let layers = [base, top];
    let report = check_stack(&layers, false);
    let flat = tempfile::tempdir().unwrap();
    apply_layer(
        flat.path(),
        &squashed(&layers).unwrap().0[..],
        &ApplyOptions::new(),
    )
    .unwrap();
    let file = flat.path().join(&long_file);
    assert_eq!(std::fs::read(&file).unwrap(), b"long");
    assert_eq!(
        crate::roundtrip::xattrs(&file)
            .get(&b"user.note"[..])
            .map(Vec::as_slice),
        Some(&b"kept\n\0binary"[..])
    );
    if is_root() {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::symlink_metadata(&file).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid(), meta.nlink()),
            (3_000_000, 70_000, 2)
        );
    }
    assert_eq!(
        (
            report.files,
            report.hardlinks,
            report.symlinks,
            report.special_files
        ),
        (2, 1, 1, 1)
    );
}

#[test]
fn a_root_opaque_marker_hides_every_lower_entry() {
    let base = archive(&[
        Entry::dir("a/"),
        Entry::file("a/x", b"x"),
        Entry::file("y", b"y"),
    ]);
    let top = archive(&[whiteout(".wh..wh..opq"), Entry::file("z", b"z")]);
    let report = check_stack(&[base, top], true);
    assert_eq!(report.files, 1);
}

#[test]
fn lenient_mode_skips_what_the_lenient_applier_skips() {
    let base = archive(&[
        Entry::dir("d/"),
        Entry::file("d/x", b"x"),
        Entry::file("d/y", b"y"),
    ]);
    let top = archive(&[
        Entry::raw("sparse", b'S'),
        Entry::file(".wh.etc/below", b"z"),
        Entry::dir("d/"),
        Entry::file("d/.wh.x", b"a whiteout with data"),
        Entry::file("../climbs", b"stops at the root"),
        Entry::file("kept", b"k"),
    ]);
    let lenient = ApplyOptions::new().with_strict(false);
    let layered = tempfile::tempdir().unwrap();
    for layer in [&base, &top] {
        apply_layer(layered.path(), &layer[..], &lenient).unwrap();
    }
    let layers = [base, top];
    let mut merged = Vec::new();
    let options = SquashOptions::new().with_strict(false);
    let report = squash(2, |i| Ok(&layers[i][..]), &mut merged, &options).unwrap();
    assert_eq!((report.skipped, report.whiteouts), (2, 1), "{report:?}");
    let flat = tempfile::tempdir().unwrap();
    apply_layer(flat.path(), &merged[..], &lenient).unwrap();
    let problems = diff_trees(&snapshot(layered.path()), &snapshot(flat.path()), |_, _| {
        Ignore::default()
    });
    assert!(problems.is_empty(), "{problems:#?}");
    assert!(flat.path().join("climbs").exists());
    assert!(!flat.path().join("d/x").exists());
    // Strict mode refuses the same stack at its first such entry (the top layer's `sparse`).
    assert_eq!(
        refused(&layers),
        (
            "sparse".to_string(),
            InvalidEntry::UnsupportedType { typeflag: b'S' }
        )
    );
}

fn refused(layers: &[Vec<u8>]) -> (String, InvalidEntry) {
    match squashed(layers) {
        Err(Error::InvalidEntry { path, reason }) => (path, reason),
        other => panic!("expected a refused entry, got {other:?}"),
    }
}

#[test]
fn hostile_entries_are_refused_naming_them() {
    let ok = archive(&[Entry::file("fine", b"ok")]);
    let cases: Vec<(Vec<u8>, &str, InvalidEntry)> = vec![
        (
            archive(&[Entry::file("../escape", b"x")]),
            "../escape",
            InvalidEntry::EscapesRoot,
        ),
        (
            archive(&[Entry::file("a/../../escape", b"x")]),
            "a/../../escape",
            InvalidEntry::EscapesRoot,
        ),
        (
            archive(&[whiteout("etc/.wh..")]),
            "etc/.wh..",
            InvalidEntry::BadWhiteoutTarget,
        ),
        (
            archive(&[whiteout(".wh.")]),
            ".wh.",
            InvalidEntry::BadWhiteoutTarget,
        ),
        (
            archive(&[Entry::file(".wh.x", b"not empty")]),
            ".wh.x",
            InvalidEntry::WhiteoutNotEmptyFile,
        ),
        (
            archive(&[Entry::file(".wh.etc/x", b"")]),
            ".wh.etc/x",
            InvalidEntry::WhiteoutAsDirectory,
        ),
        (
            archive(&[Entry::hardlink("l", "../../etc/shadow")]),
            "l",
            InvalidEntry::EscapesRoot,
        ),
        (
            archive(&[Entry::hardlink("l", "nowhere")]),
            "l",
            InvalidEntry::HardlinkTargetMissing {
                target: "nowhere".into(),
            },
        ),
        (
            archive(&[Entry::file("./", b"")]),
            "./",
            InvalidEntry::ReplacesRoot,
        ),
        (
            archive(&[Entry::file("f", b"").owner(u64::from(u32::MAX), 0)]),
            "f",
            InvalidEntry::BadOwner,
        ),
        (
            archive(&[Entry::char_device("dev", 4096, 0)]),
            "dev",
            InvalidEntry::BadDeviceNumber,
        ),
        (
            archive(&[Entry::raw("sparse", b'S')]),
            "sparse",
            InvalidEntry::UnsupportedType { typeflag: b'S' },
        ),
    ];
    for (layer, name, reason) in cases {
        // On top of a good layer, and under one.
        assert_eq!(
            refused(&[ok.clone(), layer.clone()]),
            (name.to_string(), reason.clone())
        );
        assert_eq!(refused(&[layer, ok.clone()]), (name.to_string(), reason));
    }
}

#[test]
fn inconsistent_stacks_are_refused_naming_the_entry() {
    // A link to a file that a layer between deleted.
    let stack = [
        archive(&[Entry::file("f", b"f")]),
        archive(&[whiteout(".wh.f")]),
        archive(&[Entry::hardlink("l", "f")]),
    ];
    assert_eq!(
        refused(&stack),
        (
            "l".into(),
            InvalidEntry::HardlinkTargetMissing { target: "f".into() }
        )
    );
    // A link to a directory of a lower layer.
    let stack = [
        archive(&[Entry::dir("d/")]),
        archive(&[Entry::hardlink("l", "d")]),
    ];
    assert_eq!(
        refused(&stack),
        (
            "l".into(),
            InvalidEntry::HardlinkToDirectory { target: "d".into() }
        )
    );
    // A layer writing through a lower layer's symlink (`lib -> usr/lib`, then `lib/x`
    // without an entry for `lib/`): appliers follow the link, a merged stream cannot.
    let stack = [
        archive(&[
            Entry::dir("usr/"),
            Entry::dir("usr/lib/"),
            Entry::symlink("lib", "usr/lib"),
        ]),
        archive(&[Entry::file("lib/x", b"x")]),
    ];
    assert_eq!(
        refused(&stack),
        (
            "lib".into(),
            InvalidEntry::CrossesNonDirectory {
                through: "lib".into()
            }
        )
    );
    // The same within one layer.
    let stack = [archive(&[
        Entry::symlink("s", "elsewhere"),
        Entry::file("s/x", b"x"),
    ])];
    assert_eq!(
        refused(&stack),
        (
            "s/x".into(),
            InvalidEntry::CrossesNonDirectory {
                through: "s".into()
            }
        )
    );
    // With an entry making `lib` a directory again, the stack is fine.
    let stack = [
        archive(&[Entry::dir("usr/"), Entry::symlink("lib", "usr")]),
        archive(&[Entry::dir("lib/"), Entry::file("lib/x", b"x")]),
    ];
    check_stack(&stack, true);
}

#[test]
fn corrupt_streams_and_wrong_diff_ids_are_refused() {
    let good = archive(&[Entry::file("f", b"data")]);
    let mut truncated = good.clone();
    truncated.truncate(514);
    for read_ahead in [true, false] {
        let layers = [good.clone(), truncated.clone()];
        let options = SquashOptions::new().with_read_ahead(read_ahead);
        let err = squash(2, |i| Ok(&layers[i][..]), Vec::new(), &options).unwrap_err();
        assert!(
            matches!(err, Error::Corrupt { format: "tar", .. }),
            "{err:?}"
        );
    }
    // The source's own errors come through the read-ahead thread typed.
    #[cfg(feature = "gzip")]
    {
        use ocikit_codec::Limit;
        use ocikit_codec::compression::{Compression, Decoder};
        let blob = crate::compression::encode(&good, Compression::Gzip, 1);
        let err = squash(
            1,
            |_| {
                Ok(Decoder::new(
                    &blob[..],
                    Compression::Gzip,
                    Limits::default().with_max_decompressed_bytes(100),
                ))
            },
            Vec::new(),
            &SquashOptions::new(),
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                Error::LimitExceeded {
                    limit: Limit::DecompressedBytes,
                    max: 100
                }
            ),
            "{err:?}"
        );
    }

    let other = archive(&[Entry::file("g", b"other")]);
    let layers = [good.clone(), other.clone()];
    let options = SquashOptions::new()
        .with_expected_diff_ids(Some(vec![Digest::sha256(&good), Digest::sha256(&good)]));
    let err = squash(2, |i| Ok(&layers[i][..]), Vec::new(), &options).unwrap_err();
    match err {
        Error::DiffIdMismatch { expected, actual } => {
            assert_eq!(expected, Digest::sha256(&good));
            assert_eq!(actual, Digest::sha256(&other));
        }
        other => panic!("{other:?}"),
    }
    let options = SquashOptions::new()
        .with_expected_diff_ids(Some(vec![Digest::sha256(&good), Digest::sha256(&other)]));
    squash(2, |i| Ok(&layers[i][..]), Vec::new(), &options).unwrap();
}

#[cfg(feature = "gzip")]
#[test]
fn squash_layer_compresses_in_the_same_pass() {
    use ocikit_codec::compression::{Compression, Decoder};
    use ocikit_codec::squash::squash_layer;
    use ocikit_codec::writer::LayerOptions;

    let layers = [
        archive(&[Entry::dir("a/"), Entry::file("a/x", b"x".repeat(100_000))]),
        archive(&[
            Entry::dir("a/"),
            whiteout("a/.wh.x"),
            Entry::file("a/y", b"y"),
        ]),
    ];
    let (blob, info, report) = squash_layer(
        2,
        |i| Ok(&layers[i][..]),
        Vec::new(),
        LayerOptions::new(Compression::Gzip),
        &SquashOptions::new(),
    )
    .unwrap();
    let mut tar = Vec::new();
    Decoder::for_media_type(&blob[..], info.media_type, Limits::default())
        .unwrap()
        .read_to_end(&mut tar)
        .unwrap();
    assert_eq!(info.diff_id, Digest::sha256(&tar));
    assert_eq!(info.uncompressed_size, report.tar_size);
    assert_eq!(tar, squashed(&layers).unwrap().0);
}

// ---- generated stacks ----

/// The names generated paths are made of, up to three deep: few, so that layers collide.
fn paths() -> Vec<String> {
    let names = ["a", "b", "c"];
    let mut out: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    for depth in 0..2 {
        let prev: Vec<String> = out
            .iter()
            .filter(|p| p.matches('/').count() == depth)
            .cloned()
            .collect();
        for p in prev {
            for n in names {
                out.push(format!("{p}/{n}"));
            }
        }
    }
    out
}

#[derive(Clone, Debug)]
enum Op {
    File { path: usize, content: u8, meta: u8 },
    Dir { path: usize, meta: u8 },
    Symlink { path: usize, target: u8 },
    Hardlink { path: usize, target: usize },
    Fifo { path: usize },
    Whiteout { target: usize },
    Opaque { dir: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (any::<usize>(), any::<u8>(), any::<u8>())
            .prop_map(|(path, content, meta)| Op::File { path, content, meta }),
        2 => (any::<usize>(), any::<u8>()).prop_map(|(path, meta)| Op::Dir { path, meta }),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(path, target)| Op::Symlink { path, target }),
        2 => (any::<usize>(), any::<usize>())
            .prop_map(|(path, target)| Op::Hardlink { path, target }),
        1 => any::<usize>().prop_map(|path| Op::Fifo { path }),
        2 => any::<usize>().prop_map(|target| Op::Whiteout { target }),
        1 => any::<usize>().prop_map(|dir| Op::Opaque { dir }),
    ]
}

/// What the model tree has at a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum M {
    Dir,
    File,
    Other,
}

fn parents(path: &str) -> Vec<String> {
    path.match_indices('/')
        .map(|(i, _)| path[..i].to_string())
        .collect()
}

fn below(path: &str, other: &str) -> bool {
    path.is_empty() || other.starts_with(&format!("{path}/"))
}

/// Turns generated operations into valid layers, as a changeset producer would write them:
/// parents' entries first, no path twice in a layer, whiteouts of what lower layers have,
/// links to files that exist. A model of the tree (what the applier does) keeps them valid.
fn build_stack(layers: &[Vec<Op>], with_parents: &[bool], rewrites: bool) -> Vec<Vec<u8>> {
    let all = paths();
    let modes = [0o644, 0o600, 0o755, 0o4755, 0o640];
    let dir_modes = [0o755, 0o700, 0o1777, 0o750];
    let owners = [(0, 0), (1000, 1000), (65534, 100)];
    let mut model: BTreeMap<String, M> = BTreeMap::new();
    let mut out = Vec::new();
    for (layer, ops) in layers.iter().enumerate() {
        let mtime = 1_600_000_000 + layer as u64 * 1000;
        let mut written: BTreeMap<String, bool> = BTreeMap::new();
        let mut entries: Vec<Entry> = Vec::new();
        let remove = |model: &mut BTreeMap<String, M>, path: &str| {
            model.retain(|p, _| p != path && !below(path, p));
        };
        let parent_entries = with_parents.get(layer).copied().unwrap_or(true);
        let add_parents = |entries: &mut Vec<Entry>,
                           written: &mut BTreeMap<String, bool>,
                           model: &mut BTreeMap<String, M>,
                           path: &str,
                           meta: u8| {
            for parent in parents(path) {
                if written.contains_key(&parent) {
                    continue;
                }
                if !parent_entries {
                    // The applier makes missing parents (and goes through a symlink, or
                    // fails on a file, where the model cannot follow).
                    model.entry(parent).or_insert(M::Dir);
                    continue;
                }
                let (uid, gid) = owners[usize::from(meta) % owners.len()];
                entries.push(
                    Entry::dir(format!("{parent}/"))
                        .mode(dir_modes[usize::from(meta / 3) % dir_modes.len()])
                        .owner(uid, gid)
                        .mtime(mtime),
                );
                written.insert(parent.clone(), true);
                if model.get(&parent) != Some(&M::Dir) {
                    remove(model, &parent);
                    model.insert(parent, M::Dir);
                }
            }
        };
        for op in ops {
            let (path, is_dir) = match op {
                Op::File { path, .. }
                | Op::Symlink { path, .. }
                | Op::Hardlink { path, .. }
                | Op::Fifo { path } => (all[path % all.len()].clone(), false),
                Op::Dir { path, .. } => (all[path % all.len()].clone(), true),
                Op::Whiteout { target } => {
                    // Something lower layers have that this layer has not touched.
                    let candidates: Vec<String> = model
                        .keys()
                        .filter(|p| {
                            !written.contains_key(*p) && !written.keys().any(|w| below(p, w))
                        })
                        .cloned()
                        .collect();
                    if candidates.is_empty() {
                        continue;
                    }
                    let target = candidates[target % candidates.len()].clone();
                    add_parents(&mut entries, &mut written, &mut model, &target, 0);
                    let (dir, base) = match target.rsplit_once('/') {
                        Some((dir, base)) => (format!("{dir}/"), base.to_string()),
                        None => (String::new(), target.clone()),
                    };
                    entries.push(whiteout(&format!("{dir}.wh.{base}")).mtime(mtime));
                    remove(&mut model, &target);
                    continue;
                }
                Op::Opaque { dir } => {
                    let mut candidates: Vec<String> = vec![String::new()];
                    candidates.extend(
                        model
                            .iter()
                            .filter(|(p, m)| **m == M::Dir && written.get(*p) != Some(&false))
                            .map(|(p, _)| p.clone()),
                    );
                    let dir = candidates[dir % candidates.len()].clone();
                    if !dir.is_empty() {
                        let marker = format!("{dir}/x");
                        add_parents(&mut entries, &mut written, &mut model, &marker, 1);
                    }
                    let marker = if dir.is_empty() {
                        ".wh..wh..opq".to_string()
                    } else {
                        format!("{dir}/.wh..wh..opq")
                    };
                    entries.push(whiteout(&marker).mtime(mtime));
                    // Lower content below the directory goes; this layer's stays.
                    model.retain(|p, _| {
                        !below(&dir, p)
                            || written.contains_key(p)
                            || written.keys().any(|w| below(p, w))
                    });
                    continue;
                }
            };
            // With `rewrites`, a non-directory may be written again in its layer (the last
            // one counts); otherwise a path is written once per layer.
            let again = rewrites && !is_dir && written.get(&path) == Some(&false);
            if (written.contains_key(&path) && !again)
                || parents(&path)
                    .iter()
                    .any(|p| written.get(p) == Some(&false))
                || (!is_dir && written.keys().any(|w| below(&path, w)))
            {
                continue;
            }
            let link_target = if let Op::Hardlink { target, .. } = op {
                let files: Vec<String> = model
                    .iter()
                    .filter(|(p, m)| {
                        **m == M::File && **p != path && !below(&path, p) && !below(p, &path)
                    })
                    .map(|(p, _)| p.clone())
                    .collect();
                if files.is_empty() {
                    continue;
                }
                Some(files[target % files.len()].clone())
            } else {
                None
            };
            let meta = match op {
                Op::File { meta, .. } | Op::Dir { meta, .. } => *meta,
                _ => 0,
            };
            add_parents(&mut entries, &mut written, &mut model, &path, meta);
            let (uid, gid) = owners[usize::from(meta) % owners.len()];
            let (entry, kind) = match op {
                Op::File { content, .. } => (
                    Entry::file(
                        &path,
                        format!("{path} {content} ").repeat(usize::from(content % 7) + 1),
                    )
                    .mode(modes[usize::from(meta / 3) % modes.len()])
                    .owner(uid, gid),
                    M::File,
                ),
                Op::Dir { .. } => (
                    Entry::dir(format!("{path}/"))
                        .mode(dir_modes[usize::from(meta / 3) % dir_modes.len()])
                        .owner(uid, gid),
                    M::Dir,
                ),
                Op::Symlink { target, .. } => {
                    let targets = ["a", "../b", "/c/a", "nowhere", "."];
                    (
                        Entry::symlink(&path, targets[usize::from(*target) % targets.len()]),
                        M::Other,
                    )
                }
                Op::Hardlink { .. } => (
                    Entry::hardlink(&path, link_target.clone().unwrap_or_default()),
                    M::File,
                ),
                _ => (Entry::fifo(&path).mode(0o640), M::Other),
            };
            entries.push(entry.mtime(mtime));
            written.insert(path.clone(), is_dir);
            if is_dir {
                if model.get(&path) != Some(&M::Dir) {
                    remove(&mut model, &path);
                }
            } else {
                remove(&mut model, &path);
            }
            model.insert(path, kind);
        }
        out.push(archive(&entries));
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn generated_stacks_squash_to_the_tree_their_layers_give(
        layers in proptest::collection::vec(proptest::collection::vec(op(), 0..14), 1..6),
    ) {
        check_stack(&build_stack(&layers, &[], false), true);
    }

    /// Layers that leave out their parents' entries (as appended tarballs do) may be
    /// written through a lower symlink: the squash then refuses them, and otherwise gives
    /// the tree the layers give (directories' mtimes aside: applied in turn, a directory
    /// another layer adds to without an entry gets the time of the apply). Layers here may
    /// also write a non-directory twice (the applier keeps the last).
    #[test]
    fn generated_stacks_without_parent_entries_squash_to_the_same_tree_or_are_refused(
        layers in proptest::collection::vec(proptest::collection::vec(op(), 0..12), 1..5),
        with_parents in proptest::collection::vec(any::<bool>(), 5),
    ) {
        let stack = build_stack(&layers, &with_parents, true);
        let layered = tempfile::tempdir().unwrap();
        let applied = stack
            .iter()
            .try_for_each(|layer| apply_layer(layered.path(), &layer[..], &ApplyOptions::new()).map(drop));
        prop_assume!(applied.is_ok());
        let merged = match squashed(&stack) {
            Ok((merged, _)) => merged,
            Err(Error::InvalidEntry { reason: InvalidEntry::CrossesNonDirectory { .. }, .. }) => {
                return Ok(());
            }
            Err(other) => panic!("{other:?}"),
        };
        let ignore = |_: &[u8], node: &crate::roundtrip::Node| Ignore {
            mtime: node.kind == crate::roundtrip::Kind::Dir,
            xattrs: false,
        };
        let flat = tempfile::tempdir().unwrap();
        apply_layer(flat.path(), &merged[..], &ApplyOptions::new()).unwrap();
        let problems = diff_trees(&snapshot(layered.path()), &snapshot(flat.path()), ignore);
        prop_assert!(problems.is_empty(), "{:#?}\nlayers: {:#?}\nsquash: {:?}", problems, listing(&stack), listing(&[merged]));
    }
}
