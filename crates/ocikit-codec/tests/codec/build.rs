//! `build_layer`: reproducibility, options, refusals, and the exact archive layout.
// Tests that need a codec are gated on its feature, so that `cargo test --no-default-features`
// runs the rest; what only they use is then unused.
#![cfg_attr(
    not(all(feature = "gzip", feature = "zstd")),
    allow(unused_imports, dead_code)
)]

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ocikit_codec::Error;
use ocikit_codec::build::{BuildOptions, OwnerPolicy, build_layer};
use ocikit_codec::compression::Compression;
use ocikit_codec::writer::{LayerOptions, LayerWriter};
use ocikit_digest::Digest;

use crate::roundtrip::{
    copy_tree, have_tool, is_root, layer, mkdir, read_tar, rich_tree, set_mtime, set_xattr,
    stamp_mtimes, symlink, write_file,
};

fn names(bytes: &[u8]) -> Vec<String> {
    read_tar(bytes)
        .iter()
        .map(|e| String::from_utf8_lossy(&e.path).into_owned())
        .collect()
}

fn unpackable_path(err: &Error) -> &Path {
    match err {
        Error::Unpackable { path, .. } => path,
        other => panic!("expected Unpackable, got {other:?}"),
    }
}

#[test]
fn same_tree_same_bytes_twice() {
    let tmp = tempfile::tempdir().unwrap();
    rich_tree(tmp.path());
    let options = BuildOptions::new();
    let first = layer(tmp.path(), &options);
    let second = layer(tmp.path(), &options);
    assert_eq!(first, second);
    assert_eq!(Digest::sha256(&first), Digest::sha256(&second));
}

/// Builds a tree of 60 files and a few directories, creating them in forward or reverse
/// order (so directory order and inode numbers differ), with fixed mtimes.
fn ordered_tree(root: &Path, reverse: bool) {
    let mut names: Vec<String> = (0..60)
        .map(|i| format!("f{:02}-{}", i, "x".repeat(i % 7)))
        .collect();
    names.extend(["B", "a", "a.b", "a-b", "a_b", "Z", "é", "\u{1F600}"].map(String::from));
    if reverse {
        names.reverse();
    }
    for dir in ["d", "d/e"] {
        mkdir(&root.join(dir), 0o755);
    }
    for name in &names {
        write_file(&root.join(name), name.as_bytes(), 0o644);
        write_file(&root.join("d/e").join(name), b"", 0o600);
    }
    stamp_mtimes(root, 1_234_567_890);
    for name in &names {
        // Same mtimes whatever the creation order.
        set_mtime(&root.join(name), 1_000_000 + name.len() as i64, 0);
    }
    set_mtime(&root.join("d/e"), 42, 0);
    set_mtime(&root.join("d"), 43, 0);
}

#[test]
fn creation_order_atimes_ctimes_and_location_do_not_matter() {
    if !have_tool("cp") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    mkdir(&a, 0o755);
    mkdir(&b, 0o755);
    ordered_tree(&a, false);
    ordered_tree(&b, true);
    let options = BuildOptions::new();
    let reference = layer(&a, &options);
    assert_eq!(
        reference,
        layer(&b, &options),
        "creation order changed the bytes"
    );

    // Entries are sorted by name bytes within each directory, directories first.
    let listed = names(&reference);
    assert_eq!(listed[0], "B");
    assert_eq!(listed[1], "Z");
    let top: Vec<&String> = listed.iter().filter(|n| !n.starts_with("d/")).collect();
    let mut sorted = top.clone();
    sorted.sort_by(|x, y| {
        x.trim_end_matches('/')
            .as_bytes()
            .cmp(y.trim_end_matches('/').as_bytes())
    });
    assert_eq!(top, sorted);
    let d = listed.iter().position(|n| n == "d/").unwrap();
    assert_eq!(listed[d + 1], "d/e/");

    // Reading every file changes atimes; chmod to the same mode changes ctimes.
    for entry in crate::roundtrip::post_order(&a) {
        let meta = fs::symlink_metadata(&entry).unwrap();
        if meta.is_file() {
            fs::read(&entry).unwrap();
            let f = fs::File::open(&entry).unwrap();
            f.set_times(fs::FileTimes::new().set_accessed(std::time::SystemTime::now()))
                .unwrap();
        }
        if !meta.file_type().is_symlink() {
            fs::set_permissions(&entry, meta.permissions()).unwrap();
        }
    }
    assert_eq!(
        reference,
        layer(&a, &options),
        "atimes or ctimes changed the bytes"
    );

    // A copy elsewhere (new inodes, new path) gives the same bytes, for the rich tree too.
    let copy = tmp.path().join("copy-of-a");
    copy_tree(&a, &copy);
    assert_eq!(reference, layer(&copy, &options), "the copy differs");
    let rich = tmp.path().join("rich");
    mkdir(&rich, 0o755);
    rich_tree(&rich);
    let rich_copy = tmp.path().join("elsewhere/deeper/rich");
    fs::create_dir_all(rich_copy.parent().unwrap()).unwrap();
    copy_tree(&rich, &rich_copy);
    assert_eq!(layer(&rich, &options), layer(&rich_copy, &options));
}

#[test]
fn source_date_epoch_clamps_later_mtimes_only() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    mkdir(&root.join("dir"), 0o755);
    write_file(&root.join("dir/early"), b"e", 0o644);
    write_file(&root.join("late"), b"l", 0o644);
    write_file(&root.join("negative"), b"n", 0o644);
    symlink(b"late", &root.join("link"));
    set_mtime(&root.join("dir/early"), 500, 123);
    set_mtime(&root.join("late"), 4_000_000_000, 0);
    set_mtime(&root.join("negative"), -3, 0);
    set_mtime(&root.join("link"), 2_000, 0);
    set_mtime(&root.join("dir"), 1_000, 0);

    let mtimes = |options: &BuildOptions| -> Vec<(String, i64)> {
        read_tar(&layer(root, options))
            .iter()
            .map(|e| (String::from_utf8_lossy(&e.path).into_owned(), e.mtime))
            .collect()
    };
    let kept = mtimes(&BuildOptions::new());
    assert_eq!(
        kept,
        [
            ("dir/".to_string(), 1_000),
            ("dir/early".to_string(), 500),
            ("late".to_string(), 4_000_000_000),
            ("link".to_string(), 2_000),
            ("negative".to_string(), -3),
        ]
    );
    let clamped = mtimes(&BuildOptions::new().with_source_date_epoch(Some(1_000)));
    assert_eq!(
        clamped,
        [
            ("dir/".to_string(), 1_000),
            ("dir/early".to_string(), 500),
            ("late".to_string(), 1_000),
            ("link".to_string(), 1_000),
            ("negative".to_string(), -3),
        ]
    );
}

/// Run by [`from_env_reads_source_date_epoch`] in a child process with a controlled
/// environment (changing the environment of this multithreaded process would be unsound).
#[test]
fn from_env_probe() {
    let Ok(expect) = std::env::var("OCIKIT_FROM_ENV_EXPECT") else {
        return;
    };
    let got = BuildOptions::from_env();
    match expect.as_str() {
        "error" => assert!(got.is_err(), "{got:?}"),
        "none" => assert_eq!(got.unwrap().source_date_epoch, None),
        n => assert_eq!(got.unwrap().source_date_epoch, Some(n.parse().unwrap())),
    }
}

#[test]
fn from_env_reads_source_date_epoch() {
    let exe = std::env::current_exe().unwrap();
    for (value, expect) in [
        (Some("1700000000"), "1700000000"),
        (Some("-5"), "-5"),
        (Some(""), "none"),
        (None, "none"),
        (Some("12abc"), "error"),
        (Some("1.5"), "error"),
    ] {
        let mut cmd = Command::new(&exe);
        cmd.args(["--exact", "build::from_env_probe", "--test-threads=1"])
            .env("OCIKIT_FROM_ENV_EXPECT", expect);
        match value {
            Some(v) => cmd.env("SOURCE_DATE_EPOCH", v),
            None => cmd.env_remove("SOURCE_DATE_EPOCH"),
        };
        let out = cmd.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{value:?}: {stdout}");
        assert!(stdout.contains("1 passed"), "probe did not run: {stdout}");
    }
}

#[test]
fn owner_policies() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    mkdir(&root.join("d"), 0o755);
    write_file(&root.join("d/f"), b"x", 0o644);
    symlink(b"f", &root.join("d/l"));
    let me = (
        rustix::process::geteuid().as_raw(),
        rustix::process::getegid().as_raw(),
    );
    let mut expected_kept = vec![(u64::from(me.0), u64::from(me.1)); 3];
    if is_root() {
        std::os::unix::fs::lchown(root.join("d/f"), Some(1234), Some(5678)).unwrap();
        std::os::unix::fs::lchown(root.join("d/l"), Some(3_000_000_000), Some(9)).unwrap();
        expected_kept = vec![(0, 0), (1234, 5678), (3_000_000_000, 9)];
    }
    let owners = |options: &BuildOptions| -> Vec<(u64, u64)> {
        let entries = read_tar(&layer(root, options));
        assert!(
            entries
                .iter()
                .all(|e| e.uname.is_empty() && e.gname.is_empty())
        );
        entries.iter().map(|e| (e.uid, e.gid)).collect()
    };
    assert_eq!(owners(&BuildOptions::new()), expected_kept);
    let normalized = BuildOptions::new().with_owner(OwnerPolicy::Normalize { uid: 0, gid: 0 });
    assert_eq!(owners(&normalized), vec![(0, 0); 3]);
    let other = BuildOptions::new().with_owner(OwnerPolicy::Normalize {
        uid: 1000,
        gid: 100,
    });
    assert_eq!(owners(&other), vec![(1000, 100); 3]);
}

#[test]
fn whiteout_names_are_refused() {
    for (make, expected) in [
        (
            &(|r: &Path| write_file(&r.join(".wh.x"), b"", 0o644)) as &dyn Fn(&Path),
            ".wh.x",
        ),
        (
            &|r: &Path| {
                mkdir(&r.join("sub"), 0o755);
                mkdir(&r.join("sub/.wh.dir"), 0o755);
            },
            "sub/.wh.dir",
        ),
        (
            &|r: &Path| {
                mkdir(&r.join("a"), 0o755);
                write_file(&r.join("a/.wh..wh..opq"), b"", 0o644);
            },
            "a/.wh..wh..opq",
        ),
        (&|r: &Path| symlink(b"x", &r.join(".wh.")), ".wh."),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        write_file(&tmp.path().join("fine"), b"", 0o644);
        make(tmp.path());
        let err = build_layer(tmp.path(), &mut Vec::new(), &BuildOptions::new()).unwrap_err();
        assert_eq!(unpackable_path(&err), Path::new(expected));
    }
    // Names that merely contain `.wh.` are fine.
    let tmp = tempfile::tempdir().unwrap();
    write_file(&tmp.path().join("x.wh.y"), b"", 0o644);
    write_file(&tmp.path().join(".whx"), b"", 0o644);
    build_layer(tmp.path(), &mut Vec::new(), &BuildOptions::new()).unwrap();
    // And so is a prefix, unless it has a `.wh.` component.
    let err = build_layer(
        tmp.path(),
        &mut Vec::new(),
        &BuildOptions::new().with_prefix("opt/.wh.app"),
    )
    .unwrap_err();
    assert!(matches!(err, Error::Unpackable { .. }), "{err:?}");
    let err = build_layer(
        tmp.path(),
        &mut Vec::new(),
        &BuildOptions::new().with_prefix("../x"),
    )
    .unwrap_err();
    assert!(matches!(err, Error::Unpackable { .. }), "{err:?}");
}

#[test]
fn sockets_are_skipped_and_counted() {
    let tmp = tempfile::tempdir().unwrap();
    mkdir(&tmp.path().join("run"), 0o755);
    let _a = std::os::unix::net::UnixListener::bind(tmp.path().join("run/a.sock")).unwrap();
    let _b = std::os::unix::net::UnixListener::bind(tmp.path().join(".wh.sock")).unwrap();
    write_file(&tmp.path().join("run/pid"), b"1", 0o644);
    let mut bytes = Vec::new();
    let report = build_layer(tmp.path(), &mut bytes, &BuildOptions::new()).unwrap();
    assert_eq!(report.sockets_skipped, 2);
    assert_eq!(names(&bytes), ["run/", "run/pid"]);
    assert_eq!(
        (report.entries, report.directories, report.files),
        (2, 1, 1)
    );
}

#[test]
fn symlinks_are_never_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    mkdir(&outside, 0o755);
    write_file(&outside.join("secret"), b"do not pack", 0o600);
    let root = tmp.path().join("root");
    mkdir(&root, 0o755);
    symlink(outside.as_os_str().as_encoded_bytes(), &root.join("out"));
    symlink(b".", &root.join("loop"));
    symlink(b"../outside/secret", &root.join("rel"));
    let bytes = layer(&root, &BuildOptions::new());
    let entries = read_tar(&bytes);
    assert_eq!(names(&bytes), ["loop", "out", "rel"]);
    assert!(entries.iter().all(|e| e.typeflag == b'2' && e.size == 0));
    assert!(!bytes.windows(11).any(|w| w == b"do not pack"));

    // The root itself may be a symlink (the caller named it).
    let via = tmp.path().join("via");
    symlink(root.as_os_str().as_encoded_bytes(), &via);
    assert_eq!(layer(&via, &BuildOptions::new()), bytes);
}

#[test]
fn hardlinks_are_stored_as_links() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    mkdir(&root.join("z"), 0o755);
    write_file(&root.join("z/first"), b"content", 0o644);
    fs::hard_link(root.join("z/first"), root.join("a")).unwrap();
    fs::hard_link(root.join("z/first"), root.join("m")).unwrap();
    crate::roundtrip::mkfifo(&root.join("fifo"), 0o600);
    fs::hard_link(root.join("fifo"), root.join("fifo2")).unwrap();
    let mut bytes = Vec::new();
    let report = build_layer(root, &mut bytes, &BuildOptions::new()).unwrap();
    let entries = read_tar(&bytes);
    let summary: Vec<(String, u8, String, usize)> = entries
        .iter()
        .map(|e| {
            (
                String::from_utf8_lossy(&e.path).into_owned(),
                e.typeflag,
                String::from_utf8_lossy(&e.link).into_owned(),
                e.content.len(),
            )
        })
        .collect();
    let s = |x: &str| x.to_string();
    assert_eq!(
        summary,
        [
            (s("a"), b'0', s(""), 7),
            (s("fifo"), b'6', s(""), 0),
            (s("fifo2"), b'1', s("fifo"), 0),
            (s("m"), b'1', s("a"), 0),
            (s("z/"), b'5', s(""), 0),
            (s("z/first"), b'1', s("a"), 0),
        ]
    );
    assert_eq!(
        (report.hardlinks, report.files, report.content_bytes),
        (3, 1, 7)
    );
}

#[test]
fn prefix_places_the_tree_below_a_path() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    fs::set_permissions(root, fs::Permissions::from_mode(0o750)).unwrap();
    write_file(&root.join("f"), b"x", 0o644);
    fs::hard_link(root.join("f"), root.join("g")).unwrap();
    set_mtime(root, 99, 0);
    let bytes = layer(root, &BuildOptions::new().with_prefix("/opt/app/"));
    let entries = read_tar(&bytes);
    assert_eq!(names(&bytes), ["opt/app/", "opt/app/f", "opt/app/g"]);
    assert_eq!((entries[0].mode, entries[0].mtime), (0o750, 99));
    assert_eq!(entries[2].link, b"opt/app/f");
    assert_eq!(
        layer(root, &BuildOptions::new().with_prefix(".")),
        layer(root, &BuildOptions::new())
    );
}

#[test]
fn xattrs_option_and_exclusions() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write_file(&root.join("f"), b"x", 0o644);
    set_xattr(&root.join("f"), "user.keep", b"1");
    set_xattr(&root.join("f"), "user.overlay.opaque", b"y");
    if is_root() {
        set_xattr(&root.join("f"), "trusted.overlay.opaque", b"y");
        set_xattr(&root.join("f"), "trusted.keep", b"2");
    }
    let entries = read_tar(&layer(root, &BuildOptions::new()));
    let keys: Vec<&[u8]> = entries[0].xattrs.keys().map(Vec::as_slice).collect();
    if is_root() {
        assert_eq!(keys, [&b"trusted.keep"[..], b"user.keep"]);
    } else {
        assert_eq!(keys, [&b"user.keep"[..]]);
    }
    let bytes = layer(root, &BuildOptions::new().with_xattrs(false));
    assert!(read_tar(&bytes)[0].xattrs.is_empty());
    assert!(!bytes.windows(6).any(|w| w == b"SCHILY"));

    // An xattr name a PAX key cannot hold is refused, not dropped.
    set_xattr(&root.join("f"), "user.a=b", b"v");
    let err = build_layer(root, &mut Vec::new(), &BuildOptions::new()).unwrap_err();
    assert_eq!(unpackable_path(&err), Path::new("f"));
    build_layer(
        root,
        &mut Vec::new(),
        &BuildOptions::new().with_xattrs(false),
    )
    .unwrap();
}

/// The exact bytes of a small archive: headers, PAX only where needed, padding, end marker.
#[test]
fn archive_layout_is_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    mkdir(&root.join("a"), 0o755);
    write_file(&root.join("a/f"), b"hi", 0o4750);
    let name100 = "n".repeat(100);
    let name101 = "m".repeat(101);
    write_file(&root.join(&name100), b"", 0o644);
    write_file(&root.join(&name101), b"", 0o644);
    let dir99 = "d".repeat(99);
    mkdir(&root.join(&dir99), 0o700);
    stamp_mtimes(root, 0o1234567);
    let bytes = layer(
        root,
        &BuildOptions::new().with_owner(OwnerPolicy::Normalize { uid: 0, gid: 0 }),
    );

    let block = |i: usize| &bytes[i * 512..(i + 1) * 512];
    let field = |b: &[u8], start: usize, len: usize| b[start..start + len].to_vec();
    // 0: a/  1: a/f  2: content  3: dddd/ (99 + '/' = 100 bytes, no PAX)  4: m×101's PAX header
    // 5: its records  6: m×101  7: n×100 (no PAX)  8, 9: end marker.
    assert_eq!(bytes.len(), 10 * 512, "{:?}", names(&bytes));
    let a = block(0);
    assert_eq!(field(a, 0, 3), b"a/\0");
    assert_eq!(a[156], b'5');
    assert_eq!(field(a, 100, 8), b"0000755\0");
    assert_eq!(field(a, 108, 8), b"0000000\0");
    assert_eq!(field(a, 124, 12), b"00000000000\0");
    assert_eq!(field(a, 257, 8), b"ustar\x0000");
    assert_eq!(field(a, 265, 64), vec![0u8; 64], "no uname/gname");
    assert_eq!(field(a, 329, 16), b"0000000\x000000000\0");
    assert_eq!(field(a, 345, 167), vec![0u8; 167], "no prefix");
    let f = block(1);
    assert_eq!(field(f, 0, 4), b"a/f\0");
    assert_eq!(f[156], b'0');
    assert_eq!(field(f, 100, 8), b"0004750\0");
    assert_eq!(field(f, 124, 12), b"00000000002\0");
    let mut content = b"hi".to_vec();
    content.resize(512, 0);
    assert_eq!(block(2), content.as_slice());
    let d = block(3);
    assert_eq!(field(d, 0, 100), format!("{dir99}/").as_bytes());
    assert_eq!(d[156], b'5');
    assert_eq!(field(d, 100, 8), b"0000700\0");
    let x = block(4);
    assert_eq!(x[156], b'x');
    assert_eq!(&x[..13], b"PaxHeaders.0/");
    let record = format!("111 path={name101}\n");
    assert_eq!(&block(5)[..record.len()], record.as_bytes());
    assert_eq!(
        field(x, 124, 12),
        format!("{:011o}\0", record.len()).as_bytes()
    );
    let m = block(6);
    assert_eq!(field(m, 0, 100), &name101.as_bytes()[..100]);
    assert_eq!(m[156], b'0');
    let n = block(7);
    assert_eq!(field(n, 0, 100), name100.as_bytes());
    assert_eq!(bytes[8 * 512..], [0u8; 1024]);
    // Checksums: six octal digits, NUL, space.
    for i in [0, 1, 3, 4, 6, 7] {
        let b = block(i);
        let mut copy = b.to_vec();
        copy[148..156].copy_from_slice(b"        ");
        let sum: u32 = copy.iter().map(|&x| u32::from(x)).sum();
        assert_eq!(
            field(b, 148, 8),
            format!("{sum:06o}\0 ").as_bytes(),
            "block {i}"
        );
    }
    // mtimes: `stamp_mtimes` gave a/f the base and a/ the base + 61.
    assert_eq!(
        field(f, 136, 12),
        format!("{:011o}\0", 0o1234567).as_bytes()
    );
    assert_eq!(
        field(a, 136, 12),
        format!("{:011o}\0", 0o1234567 + 61).as_bytes()
    );
}

#[test]
fn deep_trees_do_not_recurse() {
    let tmp = tempfile::tempdir().unwrap();
    let mut dir = tmp.path().to_path_buf();
    for _ in 0..400 {
        dir.push("d");
        fs::create_dir(&dir).unwrap();
    }
    write_file(&dir.join("leaf"), b"bottom", 0o644);
    let bytes = layer(tmp.path(), &BuildOptions::new());
    let entries = read_tar(&bytes);
    assert_eq!(entries.len(), 401);
    assert_eq!(
        entries[400].path,
        ["d/".repeat(400).as_bytes(), b"leaf"].concat()
    );
    assert_eq!(entries[400].content, b"bottom");
}

#[cfg(feature = "gzip")]
#[test]
fn layer_writer_hashes_the_same_tar() {
    let tmp = tempfile::tempdir().unwrap();
    rich_tree(tmp.path());
    let plain = layer(tmp.path(), &BuildOptions::new());
    let mut writer = LayerWriter::new(Vec::new(), LayerOptions::new(Compression::Gzip)).unwrap();
    build_layer(tmp.path(), &mut writer, &BuildOptions::new()).unwrap();
    let (blob, info) = writer.finish().unwrap();
    assert_eq!(info.diff_id, Digest::sha256(&plain));
    assert_eq!(info.uncompressed_size, plain.len() as u64);
    assert_eq!(info.digest, Digest::sha256(&blob));
}

/// A file that changes size while the layer is built either fails the build or is written
/// consistently; the archive is never malformed.
#[test]
fn files_changing_under_the_build_never_corrupt_the_archive() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    write_file(&root.join("a-before"), b"stable", 0o644);
    write_file(&root.join("flapping"), &vec![1u8; 1 << 20], 0o644);
    write_file(&root.join("z-after"), b"stable too", 0o644);
    let stop = Arc::new(AtomicBool::new(false));
    let flapper = {
        let stop = stop.clone();
        let path = root.join("flapping");
        std::thread::spawn(move || {
            let big = vec![2u8; 1 << 20];
            while !stop.load(Ordering::Relaxed) {
                let mut f = fs::OpenOptions::new().write(true).open(&path).unwrap();
                f.set_len(100).unwrap();
                f.write_all(&big).unwrap();
            }
        })
    };
    let mut failures = 0;
    for _ in 0..30 {
        let mut bytes = Vec::new();
        match build_layer(&root, &mut bytes, &BuildOptions::new()) {
            Ok(_) => {
                let entries = read_tar(&bytes);
                assert_eq!(entries.len(), 3);
                assert_eq!(entries[1].content.len() as u64, entries[1].size);
                assert_eq!(entries[2].content, b"stable too");
            }
            Err(Error::Io {
                operation, path, ..
            }) => {
                assert_eq!(operation, "read");
                assert_eq!(path.as_deref(), Some(Path::new("flapping")));
                failures += 1;
            }
            Err(other) => panic!("unexpected error {other:?}"),
        }
    }
    stop.store(true, Ordering::Relaxed);
    flapper.join().unwrap();
    eprintln!("{failures}/30 builds saw the file change");
}

#[test]
fn report_counts_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let sockets = rich_tree(tmp.path());
    let mut bytes = Vec::new();
    let report = build_layer(tmp.path(), &mut bytes, &BuildOptions::new()).unwrap();
    let entries = read_tar(&bytes);
    assert_eq!(report.entries, entries.len() as u64);
    let count = |t: u8| entries.iter().filter(|e| e.typeflag == t).count() as u64;
    assert_eq!(report.directories, count(b'5'));
    assert_eq!(report.files, count(b'0'));
    assert_eq!(report.hardlinks, count(b'1'));
    assert_eq!(report.symlinks, count(b'2'));
    assert_eq!(
        report.special_files,
        count(b'3') + count(b'4') + count(b'6')
    );
    assert_eq!(report.whiteouts, 0);
    assert_eq!(report.sockets_skipped, sockets);
    assert_eq!(
        report.content_bytes,
        entries.iter().map(|e| e.content.len() as u64).sum::<u64>()
    );
}

/// Files whose `stat` size is not their length (procfs says 0, sysfs says 4096) fail the
/// build instead of producing an entry whose content disagrees with its header.
#[test]
fn size_mismatches_fail_the_build() {
    for (dir, kind) in [
        ("/proc/sys/kernel/random", std::io::ErrorKind::InvalidData),
        (
            "/sys/kernel/mm/transparent_hugepage",
            std::io::ErrorKind::UnexpectedEof,
        ),
    ] {
        if !Path::new(dir).is_dir() {
            eprintln!("skipping {dir}: not available");
            continue;
        }
        let err = build_layer(Path::new(dir), &mut Vec::new(), &BuildOptions::new()).unwrap_err();
        match &err {
            Error::Io {
                operation, source, ..
            } => {
                assert_eq!(*operation, "read", "{err:?}");
                assert_eq!(source.kind(), kind, "{err:?}");
            }
            other => panic!("{dir}: {other:?}"),
        }
    }
}
