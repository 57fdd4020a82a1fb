//! Round trips: build a layer from a rich tree, extract it with GNU tar (and read it with the
//! `tar` crate), and compare the result with the source tree through an independent walker.
//! Also changesets: lower + changeset, applied, must equal upper.
//!
//! The helpers here (tree snapshots, tool checks) are shared with `build.rs` and `gnu_tar.rs`.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use ocikit_codec::build::{BuildOptions, ChangeDetection, build_changeset, build_layer};

// ---------------------------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------------------------

/// Whether an external tool is on `PATH`. Missing tools skip the test with a message, except
/// under CI, where they fail it.
pub(crate) fn have_tool(name: &str) -> bool {
    ocikit_testkit::require_tool(name).is_some()
}

/// Whether we may chown, mknod and set trusted xattrs.
pub(crate) fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// A path from raw bytes.
pub(crate) fn p(bytes: &[u8]) -> &Path {
    Path::new(OsStr::from_bytes(bytes))
}

/// Runs a command, panicking with its stderr if it fails; returns stdout.
pub(crate) fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

pub(crate) fn write_file(path: &Path, content: &[u8], mode: u32) {
    fs::write(path, content).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

pub(crate) fn mkdir(path: &Path, mode: u32) {
    fs::create_dir(path).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

pub(crate) fn symlink(target: &[u8], path: &Path) {
    std::os::unix::fs::symlink(p(target), path).unwrap();
}

pub(crate) fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    rustix::fs::lsetxattr(path, name, value, rustix::fs::XattrFlags::empty()).unwrap();
}

pub(crate) fn mkfifo(path: &Path, mode: u32) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(mode),
        0,
    )
    .unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// Sets the mtime (and atime) of `path` without following a symlink.
pub(crate) fn set_mtime(path: &Path, secs: i64, nsec: i64) {
    let ts = rustix::fs::Timespec {
        tv_sec: secs,
        tv_nsec: nsec as _,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        path,
        &rustix::fs::Timestamps {
            last_access: ts,
            last_modification: ts,
        },
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
}

/// Every path below `root` (not `root` itself), children before parents.
pub(crate) fn post_order(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut entries: Vec<_> = fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if fs::symlink_metadata(&path).unwrap().is_dir() {
            out.extend(post_order(&path));
        }
        out.push(path);
    }
    out
}

/// Gives every path below `root` a distinct, deterministic mtime (children first, so setting
/// them does not disturb their directories' mtimes).
pub(crate) fn stamp_mtimes(root: &Path, base: i64) {
    for (i, path) in post_order(root).iter().enumerate() {
        set_mtime(path, base + i as i64 * 61, 0);
    }
}

/// What the walker records of each file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Dir,
    File(Vec<u8>),
    Symlink(Vec<u8>),
    Char(u32, u32),
    Block(u32, u32),
    Fifo,
    Socket,
}

/// One file as the independent walker sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Node {
    pub(crate) kind: Kind,
    /// Permission bits (`0o7777`); 0 for symlinks (Linux has no symlink modes).
    pub(crate) mode: u32,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    /// Whole seconds.
    pub(crate) mtime: i64,
    pub(crate) xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    /// For files with other names in the tree: the smallest of its names (so hardlinked
    /// names share it).
    pub(crate) link_group: Option<Vec<u8>>,
}

/// An independent walk of a tree (std::fs, lstat, recursion): path bytes → node. The root
/// itself is not included.
pub(crate) fn snapshot(root: &Path) -> BTreeMap<Vec<u8>, Node> {
    let mut nodes = BTreeMap::new();
    let mut inodes: HashMap<(u64, u64), Vec<Vec<u8>>> = HashMap::new();
    walk(root, b"", &mut nodes, &mut inodes);
    for names in inodes.values().filter(|names| names.len() > 1) {
        let first = names.iter().min().unwrap().clone();
        for name in names {
            nodes.get_mut(name).unwrap().link_group = Some(first.clone());
        }
    }
    nodes
}

fn walk(
    dir: &Path,
    rel: &[u8],
    nodes: &mut BTreeMap<Vec<u8>, Node>,
    inodes: &mut HashMap<(u64, u64), Vec<Vec<u8>>>,
) {
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        let mut name = rel.to_vec();
        if !name.is_empty() {
            name.push(b'/');
        }
        name.extend_from_slice(entry.file_name().as_bytes());
        let meta = fs::symlink_metadata(&path).unwrap();
        let ft = meta.file_type();
        use std::os::unix::fs::FileTypeExt;
        let kind = if ft.is_dir() {
            Kind::Dir
        } else if ft.is_file() {
            Kind::File(fs::read(&path).unwrap())
        } else if ft.is_symlink() {
            Kind::Symlink(fs::read_link(&path).unwrap().into_os_string().into_vec())
        } else if ft.is_char_device() {
            Kind::Char(
                rustix::fs::major(meta.rdev()),
                rustix::fs::minor(meta.rdev()),
            )
        } else if ft.is_block_device() {
            Kind::Block(
                rustix::fs::major(meta.rdev()),
                rustix::fs::minor(meta.rdev()),
            )
        } else if ft.is_fifo() {
            Kind::Fifo
        } else {
            Kind::Socket
        };
        if !ft.is_dir() && meta.nlink() > 1 {
            inodes
                .entry((meta.dev(), meta.ino()))
                .or_default()
                .push(name.clone());
        }
        let node = Node {
            mode: if ft.is_symlink() {
                0
            } else {
                meta.mode() & 0o7777
            },
            uid: meta.uid(),
            gid: meta.gid(),
            mtime: meta.mtime(),
            xattrs: xattrs(&path),
            link_group: None,
            kind,
        };
        nodes.insert(name.clone(), node);
        if ft.is_dir() {
            walk(&path, &name, nodes, inodes);
        }
    }
}

use std::os::unix::ffi::OsStringExt;

/// All xattrs of `path` (not following symlinks), except SELinux labels.
pub(crate) fn xattrs(path: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut names = vec![0u8; 64 << 10];
    let n = match rustix::fs::llistxattr(path, &mut names[..]) {
        Ok(n) => n,
        Err(e) if e == rustix::io::Errno::NOTSUP => return out,
        Err(e) => panic!("llistxattr {}: {e}", path.display()),
    };
    for name in names[..n].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        if name == b"security.selinux" {
            continue;
        }
        let mut value = vec![0u8; 64 << 10];
        let len = rustix::fs::lgetxattr(path, name, &mut value[..]).unwrap();
        out.insert(name.to_vec(), value[..len].to_vec());
    }
    out
}

/// Lists differences between two snapshots, ignoring what `ignore` says to.
pub(crate) fn diff_trees(
    expected: &BTreeMap<Vec<u8>, Node>,
    actual: &BTreeMap<Vec<u8>, Node>,
    ignore: impl Fn(&[u8], &Node) -> Ignore,
) -> Vec<String> {
    let mut problems = Vec::new();
    for (path, want) in expected {
        let shown = String::from_utf8_lossy(path);
        let Some(got) = actual.get(path) else {
            problems.push(format!("{shown}: missing"));
            continue;
        };
        let ign = ignore(path, want);
        let mut want = want.clone();
        let mut got = got.clone();
        if ign.mtime {
            want.mtime = 0;
            got.mtime = 0;
        }
        if ign.xattrs {
            want.xattrs.clear();
            got.xattrs.clear();
        }
        if want != got {
            problems.push(format!("{shown}:\n  want {want:?}\n  got  {got:?}"));
        }
    }
    for path in actual.keys().filter(|k| !expected.contains_key(*k)) {
        problems.push(format!("{}: unexpected", String::from_utf8_lossy(path)));
    }
    problems
}

/// What [`diff_trees`] may ignore for one path.
#[derive(Clone, Copy, Default)]
pub(crate) struct Ignore {
    pub(crate) mtime: bool,
    pub(crate) xattrs: bool,
}

/// One entry as the `tar` crate reads it (PAX `mtime` applied by hand: the crate applies
/// `path`, `linkpath`, `size`, `uid` and `gid` itself).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TarEntry {
    pub(crate) path: Vec<u8>,
    pub(crate) typeflag: u8,
    pub(crate) mode: u32,
    pub(crate) uid: u64,
    pub(crate) gid: u64,
    pub(crate) size: u64,
    pub(crate) mtime: i64,
    pub(crate) link: Vec<u8>,
    pub(crate) dev: (u32, u32),
    pub(crate) xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    pub(crate) content: Vec<u8>,
    pub(crate) uname: Vec<u8>,
    pub(crate) gname: Vec<u8>,
    /// Whether the header is POSIX ustar (not GNU or v7).
    pub(crate) ustar: bool,
}

/// Parses PAX records by their length prefixes (values may hold any byte, newlines included).
pub(crate) fn parse_pax(mut data: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let space = data.iter().position(|&b| b == b' ').unwrap();
        let len: usize = std::str::from_utf8(&data[..space])
            .unwrap()
            .parse()
            .unwrap();
        let record = &data[space + 1..len];
        assert_eq!(data[len - 1], b'\n', "record does not end in a newline");
        let record = &record[..record.len() - 1];
        let eq = record.iter().position(|&b| b == b'=').unwrap();
        out.push((record[..eq].to_vec(), record[eq + 1..].to_vec()));
        data = &data[len..];
    }
    out
}

/// Reads every entry of an uncompressed tar with the `tar` crate; PAX records are parsed by
/// [`parse_pax`] (the crate's own record iterator splits at newlines).
pub(crate) fn read_tar(bytes: &[u8]) -> Vec<TarEntry> {
    // Pass 1, raw: the PAX data in front of each entry.
    let mut pax_of_entry = Vec::new();
    let mut pending = None;
    let mut raw = tar::Archive::new(bytes);
    for entry in raw.entries().unwrap().raw(true) {
        let mut entry = entry.unwrap();
        match entry.header().entry_type().as_byte() {
            b'x' => {
                let mut data = Vec::new();
                entry.read_to_end(&mut data).unwrap();
                pending = Some(parse_pax(&data));
            }
            b'g' | b'L' | b'K' => {}
            _ => pax_of_entry.push(pending.take().unwrap_or_default()),
        }
    }
    // Pass 2: the crate's view of each entry.
    let mut archive = tar::Archive::new(bytes);
    let mut out = Vec::new();
    for (i, entry) in archive.entries().unwrap().enumerate() {
        let mut entry = entry.unwrap();
        let mut mtime = None;
        let mut xattrs = BTreeMap::new();
        for (key, value) in &pax_of_entry[i] {
            if key == b"mtime" {
                let text = std::str::from_utf8(value).unwrap();
                mtime = Some(text.split('.').next().unwrap().parse::<i64>().unwrap());
            } else if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                xattrs.insert(name.to_vec(), value.clone());
            }
        }
        let h = entry.header().clone();
        let typeflag = h.entry_type().as_byte();
        let mut content = Vec::new();
        entry.read_to_end(&mut content).unwrap();
        let dev = if matches!(typeflag, b'3' | b'4') {
            (
                h.device_major().unwrap().unwrap(),
                h.device_minor().unwrap().unwrap(),
            )
        } else {
            (0, 0)
        };
        out.push(TarEntry {
            path: entry.path_bytes().into_owned(),
            typeflag,
            mode: h.mode().unwrap(),
            uid: h.uid().unwrap(),
            gid: h.gid().unwrap(),
            size: entry.size(),
            mtime: mtime.unwrap_or_else(|| h.mtime().unwrap() as i64),
            link: entry
                .link_name_bytes()
                .map(|l| l.into_owned())
                .unwrap_or_default(),
            dev,
            xattrs,
            content,
            uname: h.username_bytes().unwrap_or_default().to_vec(),
            gname: h.groupname_bytes().unwrap_or_default().to_vec(),
            ustar: h.as_ustar().is_some(),
        });
    }
    assert_eq!(out.len(), pax_of_entry.len());
    out
}

/// Builds a layer of `dir` into memory.
pub(crate) fn layer(dir: &Path, options: &BuildOptions) -> Vec<u8> {
    let mut out = Vec::new();
    build_layer(dir, &mut out, options).unwrap();
    out
}

// ---------------------------------------------------------------------------------------------
// The rich tree
// ---------------------------------------------------------------------------------------------

/// A 300-byte path made of three 90-byte directory names and a 25-byte file name.
pub(crate) const DEEP_DIRS: [&str; 3] = [
    "d1-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "d2-bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
    "d3-ccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc",
];

/// Fills `root` with every kind of thing a layer can hold (plus a socket, which it cannot):
/// returns the number of sockets.
pub(crate) fn rich_tree(root: &Path) -> u64 {
    let r = |s: &str| root.join(s);
    mkdir(&r("etc"), 0o755);
    write_file(&r("etc/passwd"), b"root:x:0:0::/root:/bin/sh\n", 0o644);
    write_file(&r("etc/shadow"), b"root:*::0:::::\n", 0o600);
    set_xattr(&r("etc/passwd"), "user.test", b"value");
    set_xattr(&r("etc/passwd"), "user.binary", b"\0\xff\x01=\n");
    mkdir(&r("bin"), 0o755);
    write_file(&r("bin/su"), &[0x7f, b'E', b'L', b'F', 0, 1, 2, 3], 0o4755);
    write_file(&r("bin/sg"), b"#!/bin/sh\n", 0o2711);
    write_file(&r("bin/big"), &vec![0xa5; 70_001], 0o755);
    write_file(&r("bin/empty"), b"", 0o400);
    mkdir(&r("tmp"), 0o1777);
    mkdir(&r("empty"), 0o700);
    set_xattr(&r("empty"), "user.dir", b"x");
    symlink(b"etc/passwd", &r("link-rel"));
    symlink(b"/etc/shadow", &r("link-abs"));
    symlink(b"nowhere/at/all", &r("dangling"));
    let long_target = format!("/{}", "t".repeat(150));
    symlink(long_target.as_bytes(), &r("link-long"));
    write_file(&r("hard1"), b"shared inode\n", 0o640);
    fs::hard_link(r("hard1"), r("hard2")).unwrap();
    mkdir(&r("sub"), 0o750);
    fs::hard_link(r("hard1"), r("sub/hard3")).unwrap();
    write_file(&r(&"n".repeat(150)), b"long name\n", 0o644);
    let mut deep = root.to_path_buf();
    for d in DEEP_DIRS {
        deep.push(d);
        mkdir(&deep, 0o755);
    }
    write_file(&deep.join("file-at-depth-300-bytes.x"), b"deep\n", 0o644);
    fs::hard_link(deep.join("file-at-depth-300-bytes.x"), r("deep-hardlink")).unwrap();
    write_file(&root.join(p(b"caf\xe9")), b"latin-1 name\n", 0o644);
    mkdir(&root.join(p(b"\xff\xfe")), 0o755);
    write_file(&root.join(p(b"\xff\xfe/\x80\x81")), b"bytes\n", 0o644);
    write_file(
        &root.join(p(
            &[b"\xfe".repeat(120), b"-long-non-utf8".to_vec()].concat()
        )),
        b"long bytes\n",
        0o644,
    );
    mkfifo(&r("fifo"), 0o640);
    write_file(&r("old"), b"before 1970\n", 0o644);
    let _socket = std::os::unix::net::UnixListener::bind(r("socket")).unwrap();
    if is_root() {
        mkdir(&r("dev"), 0o755);
        rustix::fs::mknodat(
            rustix::fs::CWD,
            r("dev/null"),
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::from_raw_mode(0o666),
            rustix::fs::makedev(1, 3),
        )
        .unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            r("dev/loop9"),
            rustix::fs::FileType::BlockDevice,
            rustix::fs::Mode::from_raw_mode(0o660),
            rustix::fs::makedev(7, 9),
        )
        .unwrap();
        mkdir(&r("home"), 0o755);
        mkdir(&r("home/user"), 0o700);
        write_file(&r("home/user/.profile"), b"export X=1\n", 0o644);
        std::os::unix::fs::lchown(r("home/user"), Some(4242), Some(4343)).unwrap();
        std::os::unix::fs::lchown(r("home/user/.profile"), Some(1000), Some(1000)).unwrap();
        write_file(&r("bigid"), b"uid beyond ustar\n", 0o644);
        std::os::unix::fs::lchown(r("bigid"), Some(3_000_000_000), Some(2_500_000)).unwrap();
        std::os::unix::fs::lchown(r("link-rel"), Some(7), Some(8)).unwrap();
        set_xattr(&r("bin/su"), "trusted.ocikit", b"t");
    }
    stamp_mtimes(root, 1_600_000_000);
    set_mtime(&r("old"), -86_400, 0);
    set_mtime(&r("bin/big"), 1_700_000_000, 999_999_999);
    1
}

/// `tar -x` with GNU tar, preserving everything.
fn gnu_extract(layer: &[u8], dest: &Path) {
    let file = dest.with_extension("tar");
    fs::write(&file, layer).unwrap();
    run(Command::new("tar")
        .arg("--extract")
        .arg("--file")
        .arg(&file)
        .arg("--directory")
        .arg(dest)
        .args([
            "--preserve-permissions",
            "--numeric-owner",
            "--xattrs",
            "--xattrs-include=*",
        ])
        .args(is_root().then_some("--same-owner")));
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[test]
fn gnu_tar_extracts_what_was_packed() {
    if !have_tool("tar") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    mkdir(&src, 0o755);
    let sockets = rich_tree(&src);
    let options = BuildOptions::new();
    let mut bytes = Vec::new();
    let report = build_layer(&src, &mut bytes, &options).unwrap();
    assert_eq!(report.sockets_skipped, sockets);

    let dest = tmp.path().join("dest");
    mkdir(&dest, 0o755);
    gnu_extract(&bytes, &dest);

    let mut expected = snapshot(&src);
    expected.retain(|_, n| n.kind != Kind::Socket);
    let actual = snapshot(&dest);
    let problems = diff_trees(&expected, &actual, |_, node| Ignore {
        // GNU tar only restores user.* xattrs unless told more and privileged; trusted.* is
        // checked through the tar crate below.
        xattrs: node.xattrs.keys().any(|k| k.starts_with(b"trusted.")),
        ..Ignore::default()
    });
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn tar_crate_reads_what_was_packed() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    mkdir(&src, 0o755);
    rich_tree(&src);
    let bytes = layer(&src, &BuildOptions::new());
    let entries = read_tar(&bytes);
    let expected: BTreeMap<_, _> = snapshot(&src)
        .into_iter()
        .filter(|(_, n)| n.kind != Kind::Socket)
        .collect();

    // Every entry is a POSIX ustar header (behind PAX where needed), with no owner names.
    assert!(entries.iter().all(|e| e.ustar), "non-ustar header");
    assert!(
        entries
            .iter()
            .all(|e| e.uname.is_empty() && e.gname.is_empty())
    );
    // Exactly the tree, once each.
    let names: Vec<Vec<u8>> = entries
        .iter()
        .map(|e| e.path.strip_suffix(b"/").unwrap_or(&e.path).to_vec())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), names.len(), "duplicate entries");
    assert_eq!(sorted, expected.keys().cloned().collect::<Vec<_>>());

    let mut first_of_inode: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    for (entry, name) in entries.iter().zip(&names) {
        let node = &expected[name];
        let shown = String::from_utf8_lossy(name);
        // Parents come before children.
        if let Some(slash) = name.iter().rposition(|&b| b == b'/') {
            let parent = &name[..slash];
            let pos = names.iter().position(|n| n == parent).unwrap();
            let me = names.iter().position(|n| n == name).unwrap();
            assert!(pos < me, "{shown}: parent after child");
        }
        assert_eq!(entry.uid, u64::from(node.uid), "{shown}");
        assert_eq!(entry.gid, u64::from(node.gid), "{shown}");
        assert_eq!(entry.mtime, node.mtime, "{shown}");
        let hardlink_target = node
            .link_group
            .as_ref()
            .and_then(|group| first_of_inode.get(group).cloned());
        if let Some(target) = hardlink_target {
            assert_eq!(entry.typeflag, b'1', "{shown} should be a hardlink");
            assert_eq!(entry.link, target, "{shown}");
            assert_eq!(entry.size, 0);
            continue;
        }
        if let Some(group) = &node.link_group {
            first_of_inode.insert(group.clone(), name.clone());
        }
        assert_eq!(entry.xattrs, node.xattrs, "{shown}");
        if !matches!(node.kind, Kind::Symlink(_)) {
            assert_eq!(entry.mode, node.mode, "{shown}");
        }
        match &node.kind {
            Kind::Dir => {
                assert_eq!(entry.typeflag, b'5', "{shown}");
                assert!(entry.path.ends_with(b"/"), "{shown}");
            }
            Kind::File(content) => {
                assert_eq!(entry.typeflag, b'0', "{shown}");
                assert_eq!(&entry.content, content, "{shown}");
            }
            Kind::Symlink(target) => {
                assert_eq!(entry.typeflag, b'2', "{shown}");
                assert_eq!(&entry.link, target, "{shown}");
            }
            Kind::Char(ma, mi) => assert_eq!((entry.typeflag, entry.dev), (b'3', (*ma, *mi))),
            Kind::Block(ma, mi) => assert_eq!((entry.typeflag, entry.dev), (b'4', (*ma, *mi))),
            Kind::Fifo => assert_eq!(entry.typeflag, b'6', "{shown}"),
            Kind::Socket => unreachable!(),
        }
    }
    // Hardlinks: hard1 first, then hard2 and sub/hard3 as links to it; the deep file is
    // written in full (its path sorts after `deep-hardlink`? no: `d1-...` < `deep-hardlink`).
    let find = |n: &[u8]| entries.iter().find(|e| e.path == n).unwrap();
    assert_eq!(find(b"hard2").link, b"hard1");
    assert_eq!(find(b"sub/hard3").link, b"hard1");
    let deep = [
        DEEP_DIRS.join("/").as_bytes(),
        b"/file-at-depth-300-bytes.x",
    ]
    .concat();
    assert_eq!(find(b"deep-hardlink").link, deep);
    assert_eq!(find(&deep).typeflag, b'0');
}

/// Applies a changeset the way the image spec says, with the `tar` crate as the parser: a
/// test-only interpreter, independent of ocikit's applier.
fn apply_changeset(root: &Path, layer: &[u8]) {
    let mut dir_times = Vec::new();
    for entry in read_tar(layer) {
        let rel = entry
            .path
            .strip_suffix(b"/")
            .unwrap_or(&entry.path)
            .to_vec();
        let path = root.join(p(&rel));
        let (parent, base) = match rel.iter().rposition(|&b| b == b'/') {
            Some(i) => (&rel[..i], &rel[i + 1..]),
            None => (&b""[..], &rel[..]),
        };
        if base == b".wh..wh..opq" {
            // Placed right after its directory's entry, before any same-layer child: hide
            // everything the directory holds now.
            assert_eq!((entry.typeflag, entry.size), (b'0', 0));
            for child in fs::read_dir(root.join(p(parent))).unwrap() {
                let child = child.unwrap().path();
                if fs::symlink_metadata(&child).unwrap().is_dir() {
                    fs::remove_dir_all(&child).unwrap();
                } else {
                    fs::remove_file(&child).unwrap();
                }
            }
            continue;
        }
        if let Some(target) = base.strip_prefix(b".wh.") {
            assert_eq!((entry.typeflag, entry.size), (b'0', 0));
            let victim = root.join(p(parent)).join(p(target));
            match fs::symlink_metadata(&victim) {
                Ok(m) if m.is_dir() => fs::remove_dir_all(&victim).unwrap(),
                Ok(_) => fs::remove_file(&victim).unwrap(),
                Err(_) => {}
            }
            continue;
        }
        if let Ok(existing) = fs::symlink_metadata(&path)
            && !(existing.is_dir() && entry.typeflag == b'5')
        {
            if existing.is_dir() {
                fs::remove_dir_all(&path).unwrap();
            } else {
                fs::remove_file(&path).unwrap();
            }
        }
        match entry.typeflag {
            b'5' => {
                if !path.exists() {
                    fs::create_dir(&path).unwrap();
                }
                dir_times.push((path.clone(), entry.mtime));
            }
            b'0' => fs::write(&path, &entry.content).unwrap(),
            b'1' => {
                fs::hard_link(root.join(p(&entry.link)), &path).unwrap();
                continue;
            }
            b'2' => symlink(&entry.link, &path),
            b'6' => mkfifo(&path, 0o600),
            other => panic!("unexpected typeflag {other}"),
        }
        std::os::unix::fs::lchown(&path, Some(entry.uid as u32), Some(entry.gid as u32)).unwrap();
        if entry.typeflag != b'2' {
            fs::set_permissions(&path, fs::Permissions::from_mode(entry.mode)).unwrap();
        }
        for (name, value) in &entry.xattrs {
            set_xattr(&path, std::str::from_utf8(name).unwrap(), value);
        }
        set_mtime(&path, entry.mtime, 0);
    }
    // Directory mtimes last, innermost first (writing children changes them).
    for (path, mtime) in dir_times.iter().rev() {
        set_mtime(path, *mtime, 0);
    }
}

/// Copies a tree with `cp -a` (preserving everything, hardlinks included).
pub(crate) fn copy_tree(from: &Path, to: &Path) {
    run(Command::new("cp").arg("-a").arg(from).arg(to));
}

/// Lower tree for the changeset tests.
fn lower_tree(root: &Path) {
    let r = |s: &str| root.join(s);
    mkdir(&r("etc"), 0o755);
    write_file(&r("etc/keep"), b"unchanged\n", 0o644);
    write_file(&r("etc/edit"), b"old content\n", 0o644);
    write_file(&r("etc/chmod"), b"mode changes\n", 0o644);
    write_file(&r("etc/gone"), b"deleted\n", 0o644);
    write_file(&r("etc/sneaky"), b"same size A\n", 0o644);
    mkdir(&r("deleted-dir"), 0o755);
    mkdir(&r("deleted-dir/inner"), 0o755);
    write_file(&r("deleted-dir/inner/f"), b"x", 0o644);
    write_file(&r("file-to-dir"), b"becomes a directory\n", 0o644);
    mkdir(&r("dir-to-symlink"), 0o755);
    write_file(&r("dir-to-symlink/child"), b"child\n", 0o644);
    mkdir(&r("untouched"), 0o755);
    write_file(&r("untouched/a"), b"a\n", 0o644);
    mkdir(&r("deep"), 0o755);
    mkdir(&r("deep/er"), 0o755);
    write_file(&r("deep/er/leaf"), b"leaf v1\n", 0o644);
    symlink(b"target-a", &r("retarget"));
    write_file(&r("solo"), b"linked later\n", 0o644);
    stamp_mtimes(root, 1_500_000_000);
}

/// Modifies a copy of the lower tree into the upper tree.
fn modify(root: &Path) {
    let r = |s: &str| root.join(s);
    // Added.
    write_file(&r("etc/added"), b"new file\n", 0o644);
    mkdir(&r("newdir"), 0o755);
    write_file(&r("newdir/f"), b"in a new dir\n", 0o600);
    // Content changed (new size).
    write_file(&r("etc/edit"), b"new content, longer\n", 0o644);
    // Mode changed.
    fs::set_permissions(r("etc/chmod"), fs::Permissions::from_mode(0o600)).unwrap();
    // Deleted file, deleted directory with contents.
    fs::remove_file(r("etc/gone")).unwrap();
    fs::remove_dir_all(r("deleted-dir")).unwrap();
    // Replacements.
    fs::remove_file(r("file-to-dir")).unwrap();
    mkdir(&r("file-to-dir"), 0o755);
    write_file(&r("file-to-dir/inside"), b"inside\n", 0o644);
    fs::remove_dir_all(r("dir-to-symlink")).unwrap();
    symlink(b"etc", &r("dir-to-symlink"));
    // Deep leaf changed: its unchanged parents must come along.
    write_file(&r("deep/er/leaf"), b"leaf v2\n", 0o644);
    set_mtime(&r("deep/er/leaf"), 1_650_000_000, 0);
    // Symlink retargeted.
    fs::remove_file(r("retarget")).unwrap();
    symlink(b"target-b", &r("retarget"));
    // A new hardlink to an unchanged file, and a new pair of linked files.
    fs::hard_link(r("solo"), r("solo-link")).unwrap();
    write_file(&r("pair1"), b"pair\n", 0o644);
    fs::hard_link(r("pair1"), r("pair2")).unwrap();
    // An xattr added to an otherwise unchanged file.
    set_xattr(&r("untouched/a"), "user.new", b"1");
    // Same size, same mtime, different bytes: only content comparison sees it.
    let sneaky = fs::symlink_metadata(r("etc/sneaky")).unwrap();
    fs::write(r("etc/sneaky"), b"same size B\n").unwrap();
    set_mtime(&r("etc/sneaky"), sneaky.mtime(), sneaky.mtime_nsec());
    // Parent directories of changes got new mtimes from the edits above; make them
    // deterministic but keep `untouched/` and `deep/` (whose direct children did not change)
    // as they were.
    for dir in ["etc", "newdir", "file-to-dir"] {
        set_mtime(&r(dir), 1_660_000_000, 0);
    }
    set_mtime(root, 1_660_000_000, 0);
}

fn changeset_names(bytes: &[u8]) -> Vec<String> {
    read_tar(bytes)
        .iter()
        .map(|e| String::from_utf8_lossy(&e.path).into_owned())
        .collect()
}

#[test]
fn changeset_applied_to_lower_gives_upper() {
    if !have_tool("cp") {
        return;
    }
    for detection in [ChangeDetection::Metadata, ChangeDetection::Content] {
        let tmp = tempfile::tempdir().unwrap();
        let lower = tmp.path().join("lower");
        mkdir(&lower, 0o755);
        lower_tree(&lower);
        let upper = tmp.path().join("upper");
        copy_tree(&lower, &upper);
        modify(&upper);

        let options = BuildOptions::new().with_change_detection(detection);
        let mut bytes = Vec::new();
        let report = build_changeset(&lower, &upper, &mut bytes, &options).unwrap();
        let names = changeset_names(&bytes);
        let mut expected = vec![
            ".wh.deleted-dir",
            "deep/",
            "deep/er/",
            "deep/er/leaf",
            "dir-to-symlink",
            "etc/",
            "etc/.wh.gone",
            "etc/added",
            "etc/chmod",
            "etc/edit",
            "file-to-dir/",
            "file-to-dir/inside",
            "newdir/",
            "newdir/f",
            "pair1",
            "pair2",
            "retarget",
            "solo-link",
            "untouched/",
            "untouched/a",
        ];
        if detection == ChangeDetection::Content {
            expected.insert(10, "etc/sneaky");
        }
        assert_eq!(names, expected, "{detection:?}");
        assert_eq!(report.whiteouts, 2);
        assert_eq!(report.hardlinks, 1, "pair2 → pair1");
        let entries = read_tar(&bytes);
        let pair2 = entries.iter().find(|e| e.path == b"pair2").unwrap();
        assert_eq!(
            (pair2.typeflag, pair2.link.as_slice()),
            (b'1', &b"pair1"[..])
        );
        // solo-link's partner is outside the changeset: a full file.
        let solo = entries.iter().find(|e| e.path == b"solo-link").unwrap();
        assert_eq!(solo.typeflag, b'0');

        // Apply lower + changeset; the result equals upper.
        let applied = tmp.path().join("applied");
        copy_tree(&lower, &applied);
        apply_changeset(&applied, &bytes);
        let mut want = snapshot(&upper);
        let got = snapshot(&applied);
        // solo-link's partner is outside the changeset, so their link is not recorded.
        for name in [&b"solo"[..], b"solo-link"] {
            want.get_mut(name).unwrap().link_group = None;
        }
        let problems = diff_trees(&want, &got, |_, _| Ignore::default());
        if detection == ChangeDetection::Metadata {
            // Same size, same mtime: invisible without comparing contents.
            assert_eq!(problems.len(), 1, "{}", problems.join("\n"));
            assert!(problems[0].starts_with("etc/sneaky:"), "{}", problems[0]);
        } else {
            assert!(problems.is_empty(), "{}", problems.join("\n"));
        }
    }
}

#[test]
fn changeset_of_identical_trees_is_empty() {
    if !have_tool("cp") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let lower = tmp.path().join("lower");
    mkdir(&lower, 0o755);
    rich_tree(&lower);
    let upper = tmp.path().join("upper");
    copy_tree(&lower, &upper);
    let mut bytes = Vec::new();
    let options = BuildOptions::new().with_change_detection(ChangeDetection::Content);
    let report = build_changeset(&lower, &upper, &mut bytes, &options).unwrap();
    assert_eq!(report.entries, 0, "{:?}", changeset_names(&bytes));
    assert_eq!(bytes, vec![0u8; 1024], "just the end-of-archive marker");
}

#[test]
fn changeset_against_empty_lower_is_the_full_layer() {
    let tmp = tempfile::tempdir().unwrap();
    let lower = tmp.path().join("lower");
    mkdir(&lower, 0o755);
    let upper = tmp.path().join("upper");
    mkdir(&upper, 0o755);
    rich_tree(&upper);
    let mut bytes = Vec::new();
    build_changeset(&lower, &upper, &mut bytes, &BuildOptions::new()).unwrap();
    assert_eq!(bytes, layer(&upper, &BuildOptions::new()));
}

#[test]
fn changeset_whiteouts_come_first_and_deleted_whiteout_names_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let lower = tmp.path().join("lower");
    let upper = tmp.path().join("upper");
    mkdir(&lower, 0o755);
    mkdir(&upper, 0o755);
    for name in ["a", "m", "z"] {
        write_file(&lower.join(name), b"x", 0o644);
    }
    write_file(&upper.join("m"), b"x", 0o644);
    write_file(&upper.join("b"), b"new", 0o644);
    stamp_mtimes(&lower, 1_000);
    stamp_mtimes(&upper, 1_000);
    let mut bytes = Vec::new();
    let options = BuildOptions::new().with_source_date_epoch(Some(77));
    build_changeset(&lower, &upper, &mut bytes, &options).unwrap();
    let entries = read_tar(&bytes);
    let names: Vec<_> = entries.iter().map(|e| e.path.as_slice()).collect();
    assert_eq!(names, [&b".wh.a"[..], b".wh.z", b"b"]);
    let wh = &entries[0];
    assert_eq!((wh.typeflag, wh.size, wh.mtime), (b'0', 0, 77));

    // A lower-only `.wh.` name cannot be whited out.
    write_file(&lower.join(".wh.odd"), b"", 0o644);
    let err = build_changeset(&lower, &upper, &mut Vec::new(), &options).unwrap_err();
    assert!(
        matches!(&err, ocikit_codec::Error::Unpackable { path, .. } if path == Path::new(".wh.odd")),
        "{err:?}"
    );
}

#[test]
fn changeset_prefix_and_root_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let lower = tmp.path().join("lower");
    let upper = tmp.path().join("upper");
    mkdir(&lower, 0o755);
    mkdir(&upper, 0o755);
    write_file(&lower.join("f"), b"1", 0o644);
    write_file(&upper.join("f"), b"1", 0o644);
    stamp_mtimes(&lower, 1_000);
    stamp_mtimes(&upper, 1_000);
    set_mtime(&lower, 5, 0);
    set_mtime(&upper, 5, 0);
    let options = BuildOptions::new().with_prefix("opt/app");
    let mut bytes = Vec::new();
    build_changeset(&lower, &upper, &mut bytes, &options).unwrap();
    assert!(changeset_names(&bytes).is_empty());
    // A root mode change is visible only through the prefix entry.
    fs::set_permissions(&upper, fs::Permissions::from_mode(0o700)).unwrap();
    let mut bytes = Vec::new();
    build_changeset(&lower, &upper, &mut bytes, &options).unwrap();
    assert_eq!(changeset_names(&bytes), ["opt/app/"]);
    let mut bytes = Vec::new();
    build_changeset(&lower, &upper, &mut bytes, &BuildOptions::new()).unwrap();
    assert!(changeset_names(&bytes).is_empty());
    // A change below gives the prefix directory and the file.
    fs::set_permissions(&upper, fs::Permissions::from_mode(0o755)).unwrap();
    fs::remove_file(upper.join("f")).unwrap();
    set_mtime(&upper, 5, 0);
    let mut bytes = Vec::new();
    build_changeset(&lower, &upper, &mut bytes, &options).unwrap();
    assert_eq!(changeset_names(&bytes), ["opt/app/", "opt/app/.wh.f"]);
}

#[test]
fn opaque_whiteouts_only_where_nothing_of_the_lower_directory_survives() {
    let tmp = tempfile::tempdir().unwrap();
    let lower = tmp.path().join("lower");
    let upper = tmp.path().join("upper");
    for root in [&lower, &upper] {
        mkdir(root, 0o755);
        for dir in ["replaced", "partly", "emptied", "kept"] {
            mkdir(&root.join(dir), 0o755);
        }
    }
    for name in ["a", "b", "c"] {
        write_file(&lower.join("replaced").join(name), name.as_bytes(), 0o644);
        write_file(&lower.join("partly").join(name), name.as_bytes(), 0o644);
        write_file(&lower.join("emptied").join(name), name.as_bytes(), 0o644);
    }
    mkdir(&lower.join("replaced/sub"), 0o755);
    write_file(&lower.join("replaced/sub/deep"), b"d", 0o644);
    write_file(&lower.join("replaced/.wh.odd"), b"", 0o644);
    write_file(&lower.join("kept/k"), b"k", 0o644);
    // The replaced directory's new content; `partly` keeps `b`; `emptied` is empty.
    write_file(&upper.join("replaced/x"), b"x", 0o644);
    write_file(&upper.join("partly/b"), b"b", 0o644);
    write_file(&upper.join("kept/k"), b"k", 0o644);
    stamp_mtimes(&lower, 1_000);
    stamp_mtimes(&upper, 1_000);
    for dir in ["replaced", "partly", "emptied"] {
        set_mtime(&upper.join(dir), 5_000, 0);
    }
    for root in [&lower, &upper] {
        set_mtime(&root.join("kept/k"), 7, 0);
        set_mtime(&root.join("partly/b"), 7, 0);
        set_mtime(&root.join("kept"), 8, 0);
    }

    // Explicit whiteouts cannot white out a lower `.wh.` name; an opaque one hides it.
    let err = build_changeset(&lower, &upper, &mut Vec::new(), &BuildOptions::new()).unwrap_err();
    assert!(
        matches!(err, ocikit_codec::Error::Unpackable { .. }),
        "{err:?}"
    );
    let options = BuildOptions::new().with_opaque_whiteouts(true);
    let mut opaque = Vec::new();
    let report = build_changeset(&lower, &upper, &mut opaque, &options).unwrap();
    // Opaque where nothing survives (`replaced/`, `emptied/`), explicit in `partly/`, none at
    // the root (which keeps `kept/`).
    assert_eq!(
        changeset_names(&opaque),
        [
            "emptied/",
            "emptied/.wh..wh..opq",
            "partly/",
            "partly/.wh.a",
            "partly/.wh.c",
            "replaced/",
            "replaced/.wh..wh..opq",
            "replaced/x",
        ]
    );
    assert_eq!(report.whiteouts, 4);

    fs::remove_file(lower.join("replaced/.wh.odd")).unwrap();
    let mut explicit = Vec::new();
    build_changeset(&lower, &upper, &mut explicit, &BuildOptions::new()).unwrap();
    let names = changeset_names(&explicit);
    assert!(!names.iter().any(|n| n.contains(".wh..wh.")), "{names:?}");
    assert!(names.contains(&"replaced/.wh.sub".to_string()), "{names:?}");

    // Both apply to the same tree.
    for (i, layer) in [&explicit, &opaque].into_iter().enumerate() {
        let applied = tmp.path().join(format!("applied{i}"));
        copy_tree(&lower, &applied);
        apply_changeset(&applied, layer);
        let problems = diff_trees(&snapshot(&upper), &snapshot(&applied), |_, _| {
            Ignore::default()
        });
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }
}

/// Round trips through ocikit's own applier, `apply::apply_layer(root, reader, &options)`.
/// Off (`cfg(any())`) until that function lands; turn on by deleting the attribute.
#[cfg(any())]
mod ocikit_applier {
    use super::*;
    use ocikit_codec::apply::{ApplyOptions, apply_layer};

    fn apply(root: &Path, layer: &[u8]) {
        apply_layer(root, layer, &ApplyOptions::default()).unwrap();
    }

    #[test]
    fn ocikit_applier_extracts_what_was_packed() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        mkdir(&src, 0o755);
        rich_tree(&src);
        let dest = tmp.path().join("dest");
        mkdir(&dest, 0o755);
        apply(&dest, &layer(&src, &BuildOptions::new()));
        let mut expected = snapshot(&src);
        expected.retain(|_, n| n.kind != Kind::Socket);
        let problems = diff_trees(&expected, &snapshot(&dest), |_, _| Ignore::default());
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    #[test]
    fn ocikit_applier_applies_changesets() {
        if !have_tool("cp") {
            return;
        }
        for detection in [ChangeDetection::Metadata, ChangeDetection::Content] {
            let tmp = tempfile::tempdir().unwrap();
            let lower = tmp.path().join("lower");
            mkdir(&lower, 0o755);
            lower_tree(&lower);
            let upper = tmp.path().join("upper");
            copy_tree(&lower, &upper);
            modify(&upper);
            let options = BuildOptions::new().with_change_detection(detection);
            let mut diff = Vec::new();
            build_changeset(&lower, &upper, &mut diff, &options).unwrap();

            let rootfs = tmp.path().join("rootfs");
            mkdir(&rootfs, 0o755);
            apply(&rootfs, &layer(&lower, &options));
            apply(&rootfs, &diff);
            let mut want = snapshot(&upper);
            for name in [&b"solo"[..], b"solo-link"] {
                want.get_mut(name).unwrap().link_group = None;
            }
            let problems = diff_trees(&want, &snapshot(&rootfs), |_, _| Ignore::default());
            if detection == ChangeDetection::Metadata {
                assert_eq!(problems.len(), 1, "{}", problems.join("\n"));
                assert!(problems[0].starts_with("etc/sneaky:"), "{}", problems[0]);
            } else {
                assert!(problems.is_empty(), "{}", problems.join("\n"));
            }
        }
    }
}
