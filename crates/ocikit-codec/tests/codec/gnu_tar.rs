//! Differential: the entry lists that ocikit's own tar reader (the applier's, through
//! `apply::list_entries`) and the `tar` crate read from an archive equal GNU tar's `tar -tv`
//! listing of the same archive, field by field (path, type, size, link name,
//! mode, uid, gid, mtime), over a corpus GNU tar itself writes (PAX, GNU long names and long
//! link names, old GNU, ustar with prefix, base-256 and PAX numbers, a hand-edited base-256
//! size) and over ocikit's own layers.

use std::fs;
use std::path::Path;
use std::process::Command;

use ocikit_codec::Limits;
use ocikit_codec::apply::{EntryKind, list_entries};
use ocikit_codec::build::BuildOptions;

use crate::roundtrip::{
    have_tool, is_root, layer, mkdir, mkfifo, p, read_tar, rich_tree, run, set_mtime, symlink,
    write_file,
};

/// One entry as a listing shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Listed {
    /// `-`, `d`, `l`, `h`, `c`, `b` or `p`.
    kind: char,
    mode: u32,
    uid: u64,
    gid: u64,
    /// The size, or for devices `major,minor`.
    size: String,
    mtime: i64,
    path: Vec<u8>,
    link: Vec<u8>,
}

/// `tar -tv` in the C locale and UTC, numeric owners, full times, escaped names.
fn gnu_list(archive: &Path) -> Vec<Listed> {
    let out = run(Command::new("tar")
        .env("LC_ALL", "C")
        .env("TZ", "UTC")
        .args([
            "--list",
            "--verbose",
            "--numeric-owner",
            "--full-time",
            "--quoting-style=escape",
            "--file",
        ])
        .arg(archive));
    out.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(parse_line)
        .collect()
}

/// Parses `drwxr-xr-x 0/0  0 2020-01-01 00:00:00 name[ -> target| link to target]`.
fn parse_line(line: &[u8]) -> Listed {
    let text = String::from_utf8(line.to_vec()).expect("escaped listing is ASCII");
    let mut rest = text.as_str();
    let mut field = || {
        rest = rest.trim_start_matches(' ');
        let end = rest.find(' ').unwrap_or(rest.len());
        let (token, tail) = rest.split_at(end);
        rest = tail.strip_prefix(' ').unwrap_or(tail);
        token.to_string()
    };
    let perms = field();
    let owner = field();
    let size = field();
    let date = field();
    let time = field();
    // Without sub-second times, `--full-time` pads the time to the width of one with them.
    // (So names starting with spaces cannot be listed; the corpus has none.)
    let name = rest.trim_start_matches(' ').to_string();
    let kind = perms.chars().next().unwrap();
    let (uid, gid) = owner.split_once('/').unwrap();
    let (path, link) = if kind == 'l' {
        let (a, b) = name.split_once(" -> ").unwrap();
        (a.to_string(), b.to_string())
    } else if kind == 'h' {
        let (a, b) = name.split_once(" link to ").unwrap();
        (a.to_string(), b.to_string())
    } else {
        (name, String::new())
    };
    Listed {
        kind,
        mode: mode_of(&perms),
        uid: uid.parse().unwrap(),
        gid: gid.parse().unwrap(),
        size,
        mtime: epoch_of(&date, &time),
        path: unescape(&path),
        link: unescape(&link),
    }
}

/// `rwsr-x--T` → `0o4750` (the type character is skipped).
fn mode_of(perms: &str) -> u32 {
    let c: Vec<char> = perms.chars().skip(1).collect();
    let mut mode = 0;
    for (i, bit) in [0o400, 0o200, 0o100, 0o40, 0o20, 0o10, 0o4, 0o2, 0o1]
        .into_iter()
        .enumerate()
    {
        if !matches!(c[i], '-' | 'S' | 'T') {
            mode |= bit;
        }
    }
    if matches!(c[2], 's' | 'S') {
        mode |= 0o4000;
    }
    if matches!(c[5], 's' | 'S') {
        mode |= 0o2000;
    }
    if matches!(c[8], 't' | 'T') {
        mode |= 0o1000;
    }
    mode
}

/// `2020-01-02` `03:04:05[.fraction]` in UTC → seconds since the epoch.
fn epoch_of(date: &str, time: &str) -> i64 {
    let d: Vec<i64> = date.split('-').map(|x| x.parse().unwrap()).collect();
    let t: Vec<i64> = time
        .split('.')
        .next()
        .unwrap()
        .split(':')
        .map(|x| x.parse().unwrap())
        .collect();
    days_from_civil(d[0], d[1], d[2]) * 86_400 + t[0] * 3_600 + t[1] * 60 + t[2]
}

/// Howard Hinnant's days_from_civil.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Undoes GNU tar's `escape` quoting (`\\`, `\ooo`, C escapes).
fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        let next = b[i + 1];
        if next.is_ascii_digit() {
            let octal = std::str::from_utf8(&b[i + 1..i + 4]).unwrap();
            out.push(u8::from_str_radix(octal, 8).unwrap());
            i += 4;
            continue;
        }
        out.push(match next {
            b'\\' => b'\\',
            b'n' => b'\n',
            b't' => b'\t',
            b'r' => b'\r',
            b'a' => 7,
            b'b' => 8,
            b'f' => 12,
            b'v' => 11,
            b'?' => b'?',
            b' ' => b' ',
            other => panic!("unknown escape \\{}", other as char),
        });
        i += 2;
    }
    out
}

/// The same fields, as the `tar` crate reads them.
fn crate_list(bytes: &[u8]) -> Vec<Listed> {
    read_tar(bytes)
        .into_iter()
        .map(|e| {
            let kind = match e.typeflag {
                b'0' | b'\0' | b'7' => '-',
                b'1' => 'h',
                b'2' => 'l',
                b'3' => 'c',
                b'4' => 'b',
                b'5' => 'd',
                b'6' => 'p',
                other => panic!("unexpected typeflag {other}"),
            };
            let size = match kind {
                'c' | 'b' => format!("{},{}", e.dev.0, e.dev.1),
                'h' | 'l' | 'd' => "0".to_string(),
                _ => e.size.to_string(),
            };
            Listed {
                kind,
                mode: e.mode & 0o7777,
                uid: e.uid,
                gid: e.gid,
                size,
                mtime: e.mtime,
                path: e.path,
                link: e.link,
            }
        })
        .collect()
}

/// ocikit's own reader (the applier's, through `list_entries`), in the same shape.
fn ocikit_list(bytes: &[u8]) -> Vec<Listed> {
    let (entries, diff_id) = list_entries(bytes, Limits::default()).unwrap();
    assert_eq!(diff_id, ocikit_digest::Digest::sha256(bytes));
    entries
        .into_iter()
        .map(|e| {
            let kind = match e.kind {
                EntryKind::File => '-',
                EntryKind::Hardlink => 'h',
                EntryKind::Symlink => 'l',
                EntryKind::CharDevice => 'c',
                EntryKind::BlockDevice => 'b',
                EntryKind::Directory => 'd',
                EntryKind::Fifo => 'p',
                other => panic!("unexpected kind {other:?}"),
            };
            let size = match (kind, e.device) {
                ('c' | 'b', Some((major, minor))) => format!("{major},{minor}"),
                ('h' | 'l' | 'd', _) => "0".to_string(),
                _ => e.size.to_string(),
            };
            Listed {
                kind,
                mode: e.mode,
                uid: e.uid.try_into().unwrap(),
                gid: e.gid.try_into().unwrap(),
                size,
                mtime: e.mtime,
                path: e.path,
                link: e.link,
            }
        })
        .collect()
}

/// Which readers a listing comparison covers besides GNU tar.
#[derive(Clone, Copy, PartialEq)]
enum Readers {
    /// ocikit's reader and the `tar` crate.
    Both,
    /// ocikit's reader only (where the `tar` crate is known to read otherwise).
    Ocikit,
}

fn compare(label: &str, reader: &str, ours: &[Listed], theirs: &[Listed]) -> Vec<String> {
    let mut problems = Vec::new();
    for i in 0..ours.len().max(theirs.len()) {
        match (ours.get(i), theirs.get(i)) {
            (Some(a), Some(b)) if a == b => {}
            (a, b) => problems.push(format!("{label} #{i}\n  {reader} {a:?}\n  GNU tar {b:?}")),
        }
    }
    problems
}

/// Compares the listings of `archive`, naming the archive, reader and entry on failure.
fn assert_same_listing(archive: &Path) {
    assert_same_listing_of(archive, Readers::Both);
}

fn assert_same_listing_of(archive: &Path, readers: Readers) {
    let bytes = fs::read(archive).unwrap();
    let theirs = gnu_list(archive);
    let label = archive.file_name().unwrap().to_string_lossy();
    assert!(!theirs.is_empty(), "{label}: empty listing");
    let mut problems = compare(&label, "ocikit", &ocikit_list(&bytes), &theirs);
    if readers == Readers::Both {
        problems.extend(compare(&label, "tar crate", &crate_list(&bytes), &theirs));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// A tree with what the formats differ on: long names and link names, hardlinks to long
/// names, non-UTF-8 and odd bytes, special modes, devices.
fn corpus_tree(root: &Path) {
    let r = |s: &str| root.join(s);
    mkdir(&r("dir with space"), 0o755);
    write_file(&r("dir with space/f"), b"x", 0o644);
    write_file(&root.join(p(b"caf\xe9")), b"latin-1", 0o644);
    write_file(&r("back\\slash"), b"b", 0o644);
    write_file(&r("tab\there"), b"t", 0o644);
    symlink(b"dir with space/f", &r("sl"));
    let long = "L".repeat(150);
    write_file(&r(&long), &vec![7; 70_001], 0o4755);
    fs::hard_link(r(&long), r(&"H".repeat(120))).unwrap();
    symlink(format!("/{}", "T".repeat(150)).as_bytes(), &r("longlink"));
    let mut deep = root.to_path_buf();
    for c in ["a", "b", "c"] {
        deep.push(c.repeat(99));
        mkdir(&deep, 0o700);
    }
    write_file(&deep.join("leaf"), b"deep", 0o600);
    mkdir(&r("sticky"), 0o1777);
    write_file(&r("sticky/setgid"), b"", 0o2750);
    mkfifo(&r("fifo"), 0o640);
    if is_root() {
        rustix::fs::mknodat(
            rustix::fs::CWD,
            r("null"),
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::from_raw_mode(0o666),
            rustix::fs::makedev(1, 3),
        )
        .unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            r("sda"),
            rustix::fs::FileType::BlockDevice,
            rustix::fs::Mode::from_raw_mode(0o660),
            rustix::fs::makedev(8, 0),
        )
        .unwrap();
    }
    crate::roundtrip::stamp_mtimes(root, 1_600_000_000);
}

/// `tar --create` of `src` into `dest` with extra arguments.
fn gnu_create(src: &Path, dest: &Path, args: &[&str]) {
    run(Command::new("tar")
        .arg("--create")
        .arg("--file")
        .arg(dest)
        .args(args)
        .arg("--directory")
        .arg(src)
        .arg("."));
}

#[test]
fn listings_agree_on_archives_gnu_tar_writes() {
    if !have_tool("tar") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    mkdir(&src, 0o755);
    corpus_tree(&src);
    let a = |name: &str| tmp.path().join(name);
    gnu_create(&src, &a("pax.tar"), &["--format=pax"]);
    gnu_create(&src, &a("pax-xattrs.tar"), &["--format=pax", "--xattrs"]);
    gnu_create(&src, &a("gnu.tar"), &["--format=gnu"]);
    gnu_create(&src, &a("oldgnu.tar"), &["--format=oldgnu"]);
    // uid/gid beyond 7 octal digits and negative or huge mtimes: base-256 in GNU format,
    // PAX records in PAX format.
    for (format, owner, mtime) in [
        ("gnu", "3000000000", "@-1000"),
        ("gnu", "2097152", "@99999999999"),
        ("pax", "3000000000", "@-1000"),
        ("pax", "2097152", "@99999999999"),
    ] {
        let name = format!("{format}-{owner}-{}.tar", mtime.trim_start_matches('@'));
        gnu_create(
            &src,
            &a(&name),
            &[
                &format!("--format={format}"),
                &format!("--owner={owner}"),
                &format!("--group={owner}"),
                &format!("--mtime={mtime}"),
            ],
        );
    }
    for name in [
        "pax.tar",
        "pax-xattrs.tar",
        "gnu.tar",
        "oldgnu.tar",
        "gnu-3000000000--1000.tar",
        "gnu-2097152-99999999999.tar",
        "pax-3000000000--1000.tar",
        "pax-2097152-99999999999.tar",
    ] {
        assert_same_listing(&a(name));
    }
}

#[test]
fn listings_agree_on_ustar_prefix_names() {
    if !have_tool("tar") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    mkdir(&src, 0o755);
    let dir = src.join("p".repeat(80));
    mkdir(&dir, 0o755);
    write_file(
        &dir.join("q".repeat(90)),
        b"split between prefix and name",
        0o644,
    );
    set_mtime(&dir, 1_000_000, 0);
    let archive = tmp.path().join("ustar.tar");
    gnu_create(&src, &archive, &["--format=ustar"]);
    // The long name really is split into the prefix field.
    let bytes = fs::read(&archive).unwrap();
    let headers = bytes.chunks(512).filter(|b| &b[257..263] == b"ustar\0");
    assert!(headers.into_iter().any(|h| h[345] != 0), "no prefix used");
    assert_same_listing(&archive);
}

/// Rewrites the size field of the first regular-file header of a GNU archive in base-256
/// (same value), as tar writers do for sizes of 8 GiB and more.
#[test]
fn listings_agree_on_a_base256_size() {
    if !have_tool("tar") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    mkdir(&src, 0o755);
    write_file(&src.join("file"), &vec![b'z'; 1_234], 0o644);
    let archive = tmp.path().join("base256.tar");
    gnu_create(&src, &archive, &["--format=gnu"]);
    let mut bytes = fs::read(&archive).unwrap();
    let at = bytes
        .chunks(512)
        .position(|h| h[156] == b'0' && h.starts_with(b"./file\0"))
        .unwrap()
        * 512;
    let header = &mut bytes[at..at + 512];
    let mut size = [0u8; 12];
    size[0] = 0x80;
    size[4..].copy_from_slice(&1_234u64.to_be_bytes());
    header[124..136].copy_from_slice(&size);
    header[148..156].copy_from_slice(b"        ");
    let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
    header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    fs::write(&archive, &bytes).unwrap();
    assert_same_listing(&archive);
    let entries = read_tar(&bytes);
    let file = entries.iter().find(|e| e.path == b"./file").unwrap();
    assert_eq!(file.content, vec![b'z'; 1_234]);
}

#[test]
fn listings_agree_on_ocikit_layers() {
    if !have_tool("tar") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    mkdir(&src, 0o755);
    rich_tree(&src);
    corpus_tree(&src.join("etc"));
    for (name, options) in [
        ("ocikit.tar", BuildOptions::new()),
        (
            "ocikit-prefixed.tar",
            BuildOptions::new()
                .with_prefix("opt/app")
                .with_source_date_epoch(Some(1_600_000_100)),
        ),
    ] {
        let archive = tmp.path().join(name);
        fs::write(&archive, layer(&src, &options)).unwrap();
        assert_same_listing(&archive);
    }
}

#[test]
fn listing_parser_reads_what_it_should() {
    let l =
        parse_line(b"hrwsr-x--T 3000000000/7      0 1969-12-31 23:43:20 a\\\\b\\351 c link to x y");
    assert_eq!(l.kind, 'h');
    assert_eq!(l.mode, 0o5750);
    assert_eq!((l.uid, l.gid), (3_000_000_000, 7));
    assert_eq!(l.mtime, -1000);
    assert_eq!(l.path, b"a\\b\xe9 c");
    assert_eq!(l.link, b"x y");
    assert_eq!(epoch_of("2000-03-01", "00:00:00.5"), 951_868_800);
}

/// A PAX header whose records are `SCHILY.xattr.user.x=a\nb` then `size=1024` (the order Go
/// writes: keys sorted, uppercase first), for a file whose content looks like a tar header.
/// GNU tar (and Go) find the records by their lengths and see one 1024-byte file; the `tar`
/// crate 0.4.46 splits records at newlines, gives up on the header at the broken record, uses
/// the ustar size 0 and reads the content as a second, smuggled entry. Anything that parses
/// layers with the `tar` crate inherits this (SPEC C-T02, RUSTSEC-2026-0068's family).
/// ocikit's own layers write `size`, `uid` and `gid` before any xattr so they stay readable.
#[test]
fn listings_agree_on_pax_values_with_newlines() {
    if !have_tool("tar") {
        return;
    }
    fn ustar(path: &str, typeflag: u8, size: u64) -> Vec<u8> {
        let mut h = tar::Header::new_ustar();
        h.set_path(path).unwrap();
        h.set_entry_type(tar::EntryType::new(typeflag));
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(size);
        h.set_mtime(1_000_000);
        h.set_cksum();
        h.as_bytes().to_vec()
    }
    let mut records = Vec::new();
    for (key, value) in [("SCHILY.xattr.user.x", "a\nb"), ("size", "1024")] {
        let body = key.len() + value.len() + 3;
        let mut len = body + 1;
        while len != body + len.to_string().len() {
            len = body + len.to_string().len();
        }
        records.extend_from_slice(format!("{len} {key}={value}\n").as_bytes());
    }
    let mut bytes = ustar("PaxHeaders.0/file", b'x', records.len() as u64);
    records.resize(512, 0);
    bytes.extend_from_slice(&records);
    bytes.extend_from_slice(&ustar("file", b'0', 0));
    let mut content = ustar("smuggled", b'0', 0);
    content.resize(1024, 0);
    bytes.extend_from_slice(&content);
    bytes.extend_from_slice(&[0; 1024]);
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("pax-newline.tar");
    fs::write(&archive, &bytes).unwrap();
    // GNU tar sees one 1024-byte file.
    let theirs = gnu_list(&archive);
    assert_eq!(theirs.len(), 1);
    assert_eq!(theirs[0].size, "1024");
    // The `tar` crate (0.4.46) splits PAX records at newlines and reads this otherwise, so
    // only ocikit's reader, the one the applier uses, is held to GNU tar's reading here.
    assert_same_listing_of(&archive, Readers::Ocikit);
}
