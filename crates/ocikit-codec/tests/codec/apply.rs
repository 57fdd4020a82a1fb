//! Applying layers (`apply::apply_layer`): the image spec's changeset semantics (SPEC A.9) and
//! every hostile input of SPEC C.1-C.4, containerd's `TestBreakouts` cases ported by name.
//!
//! Each hostile case builds its tar with `ocikit_testkit::tarball` (headers written by hand,
//! hostile fields and raw byte patches included), applies it into `<tmp>/root` with canaries beside it in
//! `<tmp>/outside` (a mode 0400 file, a directory, a FIFO, a hardlink, a symlink), and checks
//! that nothing outside the root changed (bytes, mode, owner, link count, mtime, existence,
//! and the listing of `<tmp>` itself) as well as what the spec says the root must hold.
//! Breakout cases run with both resolvers (`openat2` and the `O_NOFOLLOW` walk).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ocikit_codec::apply::{
    ApplyMode, ApplyOptions, ApplyReport, DevicePolicy, XattrPolicy, apply_layer,
};
use ocikit_codec::{Error, InvalidEntry, Limit, Limits};
use ocikit_digest::Digest;
use ocikit_testkit::tarball::{Entry, archive as tar_of, body as tar_body, pax_record};

// ---------------------------------------------------------------------------------------------
// Building tars
// ---------------------------------------------------------------------------------------------

/// One tar entry (`ocikit_testkit::tarball`: hand-written headers, independent of ocikit's
/// tar code), rendered by [`tar_of`].
type Ent = Entry;

/// The mtime of every entry unless a test says otherwise.
const MTIME: u64 = 1_600_000_000;

fn ent(name: &str, typeflag: u8) -> Ent {
    Entry::raw(name, typeflag).mtime(MTIME)
}

fn file(name: &str, data: &[u8]) -> Ent {
    Entry::file(name, data).mtime(MTIME)
}

fn dir(name: &str) -> Ent {
    Entry::dir(name).mtime(MTIME)
}

fn symlink(name: &str, target: &str) -> Ent {
    Entry::symlink(name, target).mtime(MTIME)
}

fn hardlink(name: &str, target: &str) -> Ent {
    Entry::hardlink(name, target).mtime(MTIME)
}

fn whiteout(name: &str) -> Ent {
    file(name, b"")
}

fn device(name: &str, typeflag: u8, major: u32, minor: u32) -> Ent {
    Ent {
        dev: (major, minor),
        mode: 0o660,
        ..ent(name, typeflag)
    }
}

fn header_block(e: &Ent) -> [u8; 512] {
    e.header()
}

/// A GNU long-name (`L`) or long-link (`K`) record.
fn gnu_long(typeflag: u8, value: &[u8]) -> Ent {
    Entry::gnu_long(typeflag, value).mtime(MTIME)
}

// ---------------------------------------------------------------------------------------------
// The sandbox and its canaries
// ---------------------------------------------------------------------------------------------

#[derive(Debug, PartialEq, Eq)]
struct Node {
    kind: &'static str,
    mode: u32,
    uid: u32,
    gid: u32,
    nlink: u64,
    mtime: (i64, i64),
    content: Vec<u8>,
}

fn kind_of(ft: fs::FileType) -> &'static str {
    if ft.is_symlink() {
        "symlink"
    } else if ft.is_dir() {
        "dir"
    } else if ft.is_file() {
        "file"
    } else if ft.is_fifo() {
        "fifo"
    } else if ft.is_char_device() {
        "char"
    } else if ft.is_block_device() {
        "block"
    } else {
        "other"
    }
}

fn node(path: &Path) -> Node {
    let m = fs::symlink_metadata(path).unwrap();
    let kind = kind_of(m.file_type());
    let content = match kind {
        "file" => fs::read(path).unwrap(),
        "symlink" => fs::read_link(path).unwrap().as_os_str().as_bytes().to_vec(),
        _ => Vec::new(),
    };
    Node {
        kind,
        mode: m.mode() & 0o7777,
        uid: m.uid(),
        gid: m.gid(),
        nlink: m.nlink(),
        mtime: (m.mtime(), m.mtime_nsec()),
        content,
    }
}

/// Everything under `dir` (recursively, not following symlinks), `skip` left out.
fn snapshot_tree(dir: &Path, skip: Option<&Path>) -> BTreeMap<PathBuf, Node> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        out.insert(d.clone(), node(&d));
        for child in fs::read_dir(&d).unwrap() {
            let path = child.unwrap().path();
            if Some(path.as_path()) == skip {
                continue;
            }
            if fs::symlink_metadata(&path).unwrap().is_dir() {
                stack.push(path);
            } else {
                out.insert(path.clone(), node(&path));
            }
        }
    }
    out
}

struct Sandbox {
    _tmp: tempfile::TempDir,
    base: PathBuf,
    root: PathBuf,
    outside: PathBuf,
    before: BTreeMap<PathBuf, Node>,
    host_passwd: Option<Node>,
}

fn scratch() -> tempfile::TempDir {
    if Path::new("/dev/shm").is_dir() {
        tempfile::tempdir_in("/dev/shm").unwrap()
    } else {
        tempfile::tempdir().unwrap()
    }
}

fn set_mtime(path: &Path, secs: i64) {
    let ts = rustix::fs::Timespec {
        tv_sec: secs,
        tv_nsec: 0,
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

fn mkfifo(path: &Path, mode: u32) {
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

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

impl Sandbox {
    fn new() -> Sandbox {
        Sandbox::with_lower(|_| {})
    }

    /// A sandbox whose root is prepared by `lower` (a "lower layer" made by hand).
    fn with_lower(lower: impl FnOnce(&Path)) -> Sandbox {
        let tmp = scratch();
        let base = tmp.path().to_path_buf();
        let root = base.join("root");
        let outside = base.join("outside");
        fs::create_dir(&root).unwrap();
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("passwd"), b"canary passwd\n").unwrap();
        fs::set_permissions(outside.join("passwd"), fs::Permissions::from_mode(0o400)).unwrap();
        fs::create_dir(outside.join("dir")).unwrap();
        fs::write(outside.join("dir/file"), b"canary file\n").unwrap();
        fs::hard_link(outside.join("dir/file"), outside.join("hard")).unwrap();
        mkfifo(&outside.join("fifo"), 0o600);
        std::os::unix::fs::symlink("passwd", outside.join("link")).unwrap();
        lower(&root);
        for p in ["passwd", "dir/file", "fifo", "link", "dir", "hard", ""] {
            set_mtime(&outside.join(p), 1_000_000_000);
        }
        set_mtime(&base, 1_000_000_000);
        let before = snapshot_tree(&base, Some(&root));
        let host_passwd = fs::symlink_metadata("/etc/passwd")
            .is_ok()
            .then(|| node(Path::new("/etc/passwd")));
        Sandbox {
            _tmp: tmp,
            base,
            root,
            outside,
            before,
            host_passwd,
        }
    }

    /// Nothing outside the root changed.
    fn check(&self) {
        let after = snapshot_tree(&self.base, Some(&self.root));
        assert_eq!(self.before, after, "something outside the root changed");
        if let Some(host) = &self.host_passwd {
            assert_eq!(
                *host,
                node(Path::new("/etc/passwd")),
                "host /etc/passwd changed"
            );
        }
    }

    fn apply(&self, entries: &[Ent], options: &ApplyOptions) -> Result<ApplyReport, Error> {
        self.apply_bytes(&tar_of(entries), options)
    }

    fn apply_bytes(&self, tar: &[u8], options: &ApplyOptions) -> Result<ApplyReport, Error> {
        let result = apply_layer(&self.root, tar, options);
        self.check();
        result
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    fn read(&self, rel: &str) -> Vec<u8> {
        fs::read(self.p(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
    }

    fn exists(&self, rel: &str) -> bool {
        fs::symlink_metadata(self.p(rel)).is_ok()
    }

    fn same_file(&self, a: &str, b: &str) -> bool {
        let a = fs::symlink_metadata(self.p(a)).unwrap();
        let b = fs::symlink_metadata(self.p(b)).unwrap();
        (a.dev(), a.ino()) == (b.dev(), b.ino())
    }

    /// Every name in the root, relative, sorted.
    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = snapshot_tree(&self.root, None)
            .into_keys()
            .filter(|p| p != &self.root)
            .map(|p| {
                p.strip_prefix(&self.root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        names.sort();
        names
    }
}

impl Drop for Sandbox {
    /// Makes every directory writable again, so that the temporary directory can be removed
    /// when not running as root (layers make read-only directories).
    fn drop(&mut self) {
        let mut stack = vec![self.root.clone()];
        while let Some(dir) = stack.pop() {
            let _ = fs::set_permissions(&dir, fs::Permissions::from_mode(0o700));
            if let Ok(entries) = fs::read_dir(&dir) {
                for entry in entries.flatten() {
                    if entry.file_type().is_ok_and(|t| t.is_dir()) {
                        stack.push(entry.path());
                    }
                }
            }
        }
    }
}

/// A host path that must never exist (unique per test).
fn host_probe(tag: &str) -> PathBuf {
    let path = PathBuf::from(format!(
        "/tmp/ocikit-apply-breakout-{}-{tag}",
        std::process::id()
    ));
    assert!(!path.exists());
    path
}

fn strict() -> ApplyOptions {
    ApplyOptions::default()
}

fn lenient() -> ApplyOptions {
    ApplyOptions::default().with_strict(false)
}

/// Both resolvers.
fn resolvers(options: ApplyOptions) -> [ApplyOptions; 2] {
    [
        options.clone().with_portable_resolver(false),
        options.with_portable_resolver(true),
    ]
}

fn reason(result: Result<ApplyReport, Error>) -> InvalidEntry {
    match result {
        Err(Error::InvalidEntry { reason, .. }) => reason,
        other => panic!("expected an invalid-entry error, got {other:?}"),
    }
}

fn reason_for(result: Result<ApplyReport, Error>, name: &str) -> InvalidEntry {
    match result {
        Err(Error::InvalidEntry { reason, path }) => {
            assert_eq!(path, name);
            reason
        }
        other => panic!("expected an invalid-entry error, got {other:?}"),
    }
}

fn malformed(result: Result<ApplyReport, Error>) -> String {
    match reason(result) {
        InvalidEntry::MalformedHeader { detail } => detail,
        other => panic!("expected MalformedHeader, got {other:?}"),
    }
}

fn corrupt(result: Result<ApplyReport, Error>) {
    match result {
        Err(Error::Corrupt { format: "tar", .. }) => {}
        other => panic!("expected a corrupt tar, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// C.1: path traversal and link escapes
// ---------------------------------------------------------------------------------------------

#[test]
fn c_p01_dotdot_names_are_refused_in_strict_mode() {
    for name in [
        "../../etc/passwd",
        "a/../../x",
        "./../x",
        "../outside/passwd",
        "..",
    ] {
        let sb = Sandbox::new();
        let r = sb.apply(&[file("ok", b"1"), file(name, b"pwned")], &strict());
        assert_eq!(reason_for(r, name), InvalidEntry::EscapesRoot, "{name}");
        // Entries before the failing one stay (rollback is the caller's).
        assert_eq!(sb.names(), ["ok"]);
    }
}

#[test]
fn c_p01_dotdot_names_are_clamped_in_lenient_mode() {
    for (name, lands) in [
        ("../../etc/passwd", "etc/passwd"),
        ("a/../../x", "x"),
        ("./../x", "x"),
        ("../outside/passwd", "outside/passwd"),
    ] {
        let sb = Sandbox::new();
        sb.apply(&[file(name, b"pwned")], &lenient()).unwrap();
        assert_eq!(sb.read(lands), b"pwned", "{name}");
    }
}

#[test]
fn c_p02_absolute_names_are_relative_to_the_root() {
    let sb = Sandbox::new();
    let outside = format!("{}/passwd", sb.outside.display());
    sb.apply(
        &[file("/etc/passwd", b"root"), file(&outside, b"inside")],
        &strict(),
    )
    .unwrap();
    assert_eq!(sb.read("etc/passwd"), b"root");
    assert_eq!(
        fs::read(sb.root.join(outside.trim_start_matches('/'))).unwrap(),
        b"inside"
    );
}

#[test]
fn c_p04_symlink_to_slash_then_file_through_it() {
    for options in resolvers(strict()) {
        let sb = Sandbox::new();
        let probe = host_probe("p04");
        let name = format!("foo/{}", probe.display());
        sb.apply(&[symlink("foo", "/"), file(&name, b"breakout")], &options)
            .unwrap();
        assert!(!probe.exists());
        assert_eq!(
            fs::read(sb.root.join(probe.strip_prefix("/").unwrap())).unwrap(),
            b"breakout"
        );
        assert_eq!(fs::read_link(sb.p("foo")).unwrap(), Path::new("/"));
    }
}

/// containerd "SymlinkAbsolute".
#[test]
fn c_p05_symlink_absolute() {
    for options in resolvers(strict()) {
        let sb = Sandbox::new();
        sb.apply(
            &[
                dir("etc"),
                symlink("localetc", "/etc"),
                file("/localetc/unbroken", b"unbroken"),
            ],
            &options,
        )
        .unwrap();
        assert_eq!(sb.read("etc/unbroken"), b"unbroken");
    }
}

#[test]
fn c_p05_symlink_to_the_canaries_then_file_through_it() {
    for options in resolvers(strict()) {
        let sb = Sandbox::new();
        let target = sb.outside.display().to_string();
        // The target does not exist inside the root: refused, never followed out.
        let r = sb.apply(
            &[
                symlink("localetc", &target),
                file("localetc/passwd", b"pwned"),
            ],
            &options,
        );
        assert!(matches!(r, Err(Error::Io { .. })), "{r:?}");
        // With the target's path made inside the root first, the write lands there.
        let sb = Sandbox::new();
        sb.apply(
            &[
                dir(&target),
                symlink("localetc", &target),
                file("localetc/passwd", b"pwned"),
            ],
            &options,
        )
        .unwrap();
        assert_eq!(
            fs::read(sb.root.join(target.trim_start_matches('/')).join("passwd")).unwrap(),
            b"pwned"
        );
    }
}

/// containerd "SymlinkUpAndOut", "SymlinkMultipleAbsolute", "SymlinkMultipleRelative",
/// "SymlinkEmptyFile".
#[test]
fn c_p06_symlink_chains_and_climbs() {
    let cases: Vec<(&str, Vec<Ent>)> = vec![
        (
            "SymlinkUpAndOut",
            vec![
                dir("etc"),
                dir("dummy"),
                symlink("localetc", "/dummy/../etc"),
                file("/localetc/unbroken", b"unbroken"),
            ],
        ),
        (
            "SymlinkMultipleAbsolute",
            vec![
                dir("etc"),
                dir("dummy"),
                symlink("/dummy/etc", "/etc"),
                symlink("localetc", "/dummy/etc"),
                file("/dummy/etc/unbroken", b"unbroken"),
            ],
        ),
        (
            "SymlinkMultipleRelative",
            vec![
                dir("etc"),
                dir("dummy"),
                symlink("/dummy/etc", "/etc"),
                symlink("localetc", "./dummy/etc"),
                file("/dummy/etc/unbroken", b"unbroken"),
            ],
        ),
        (
            "SymlinkLongClimb",
            vec![
                dir("etc"),
                symlink("localetc", "../../../../../../../../etc"),
                file("localetc/unbroken", b"unbroken"),
            ],
        ),
    ];
    for (name, entries) in cases {
        for options in resolvers(strict()) {
            let sb = Sandbox::new();
            sb.apply(&entries, &options)
                .unwrap_or_else(|e| panic!("{name}: {e:?}"));
            assert_eq!(sb.read("etc/unbroken"), b"unbroken", "{name}");
        }
    }
    // SymlinkEmptyFile: the file behind the symlink is replaced, emptied.
    for options in resolvers(strict()) {
        let sb = Sandbox::new();
        sb.apply(
            &[
                dir("etc"),
                file("etc/emptied", b"notempty"),
                symlink("localetc", "/etc"),
                file("/localetc/emptied", b""),
            ],
            &options,
        )
        .unwrap();
        assert_eq!(sb.read("etc/emptied"), b"");
    }
}

/// RUSTSEC-2021-0080: `symlink -> ..` then `symlink/exploit/foo/bar`.
#[test]
fn c_p07_parent_symlink_does_not_create_directories_outside() {
    for options in resolvers(strict()) {
        let sb = Sandbox::new();
        sb.apply(
            &[
                symlink("symlink", ".."),
                file("symlink/exploit/foo/bar", b"x"),
            ],
            &options,
        )
        .unwrap();
        // `..` stops at the root: everything lands inside.
        assert_eq!(sb.read("exploit/foo/bar"), b"x");
        assert!(!sb.base.join("exploit").exists());
    }
    // Through an absolute symlink to the sandbox: refused, nothing made outside.
    for options in resolvers(strict()) {
        let sb = Sandbox::new();
        let target = sb.base.display().to_string();
        let r = sb.apply(
            &[symlink("up", &target), file("up/exploit/foo/bar", b"x")],
            &options,
        );
        assert!(r.is_err());
        assert!(!sb.base.join("exploit").exists());
    }
}

#[test]
fn c_p08_symlink_then_regular_file_of_the_same_name() {
    for options in resolvers(strict()) {
        let sb = Sandbox::new();
        let probe = host_probe("p08");
        let canary = format!("{}/passwd", sb.outside.display());
        sb.apply(
            &[
                symlink("x", &canary),
                file("x", b"replaced"),
                symlink("y", &probe.display().to_string()),
                file("y", b"replaced"),
            ],
            &options,
        )
        .unwrap();
        for name in ["x", "y"] {
            let m = fs::symlink_metadata(sb.p(name)).unwrap();
            assert!(m.is_file(), "{name}");
            assert_eq!(sb.read(name), b"replaced");
        }
        assert!(!probe.exists());
    }
}

/// RUSTSEC-2026-0067: a symlink, then a directory entry of the same name.
#[test]
fn c_p09_symlink_then_directory_of_the_same_name() {
    for options in resolvers(strict()) {
        let sb = Sandbox::new();
        let target = format!("{}/dir", sb.outside.display());
        sb.apply(
            &[
                symlink("d", &target),
                dir("d").mode(0o777).owner(1234, 1234),
            ],
            &options,
        )
        .unwrap();
        let m = fs::symlink_metadata(sb.p("d")).unwrap();
        assert!(m.is_dir());
        assert_eq!(m.mode() & 0o7777, 0o777);
        if is_root() {
            assert_eq!((m.uid(), m.gid()), (1234, 1234));
        }
    }
    // The same with the symlink in a lower layer.
    let sb = Sandbox::with_lower(|root| {
        std::os::unix::fs::symlink("/", root.join("d")).unwrap();
    });
    sb.apply(&[dir("d").mode(0o700)], &strict()).unwrap();
    assert!(fs::symlink_metadata(sb.p("d")).unwrap().is_dir());
}

/// containerd "HardlinkSymlinkChmod" and metadata on symlinks.
#[test]
fn c_p10_metadata_never_follows_symlinks() {
    for options in resolvers(strict()) {
        let sb = Sandbox::new();
        let perm400 = format!("{}/passwd", sb.outside.display());
        let exists_outside = format!("{}/dir/file", sb.outside.display());
        sb.apply(
            &[
                symlink(&exists_outside, &perm400),
                hardlink("sketchylink", &exists_outside),
                symlink("chmodme", &perm400)
                    .mode(0o777)
                    .owner(4321, 4321)
                    .mtime(5),
            ],
            &options,
        )
        .unwrap();
        // The link's own owner and time changed, nothing behind it.
        let m = fs::symlink_metadata(sb.p("chmodme")).unwrap();
        assert!(m.file_type().is_symlink());
        assert_eq!(m.mtime(), 5);
        if is_root() {
            assert_eq!((m.uid(), m.gid()), (4321, 4321));
        }
        assert!(
            fs::symlink_metadata(sb.p("sketchylink"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }
}

fn etc_passwd() -> Vec<Ent> {
    vec![dir("etc").mode(0o770), file("/etc/passwd", b"inside")]
}

/// containerd "HardlinkDirectAbsolute".
#[test]
fn c_p11_hardlink_absolute_target_resolves_inside() {
    for options in resolvers(strict()) {
        let sb = Sandbox::new();
        let mut entries = etc_passwd();
        entries.push(hardlink("localpasswd", "/etc/passwd"));
        sb.apply(&entries, &options).unwrap();
        assert!(sb.same_file("localpasswd", "etc/passwd"));
        assert_eq!(fs::symlink_metadata(sb.p("etc/passwd")).unwrap().nlink(), 2);
    }
    // No /etc/passwd in the root: refused, never linked to the host's.
    let sb = Sandbox::new();
    let r = sb.apply(&[hardlink("localpasswd", "/etc/passwd")], &strict());
    assert_eq!(
        reason(r),
        InvalidEntry::HardlinkTargetMissing {
            target: "/etc/passwd".into()
        }
    );
    // Nor to the canaries.
    let canary = format!("{}/passwd", sb.outside.display());
    let r = sb.apply(&[hardlink("c", &canary)], &strict());
    assert!(matches!(
        reason(r),
        InvalidEntry::HardlinkTargetMissing { .. }
    ));
}

/// containerd "HardlinkDirectRelative".
#[test]
fn c_p12_hardlink_climbing_target() {
    let mut entries = etc_passwd();
    entries.push(hardlink("localpasswd", "../../../../../etc/passwd"));
    let sb = Sandbox::new();
    assert_eq!(
        reason(sb.apply(&entries, &strict())),
        InvalidEntry::EscapesRoot
    );
    let sb = Sandbox::new();
    sb.apply(&entries, &lenient()).unwrap();
    assert!(sb.same_file("localpasswd", "etc/passwd"));
    // Towards the canary: refused in strict mode, missing in lenient mode.
    let sb = Sandbox::new();
    let r = sb.apply(&[hardlink("c", "../outside/passwd")], &lenient());
    assert!(matches!(
        reason(r),
        InvalidEntry::HardlinkTargetMissing { .. }
    ));
}

/// containerd "HardlinkRelative", "HardlinkDownAndOut", "HardlinkAbsolute",
/// "HardlinkRelativeLong".
#[test]
fn c_p13_hardlink_through_symlinks() {
    let cases: Vec<(&str, Vec<Ent>, &str)> = vec![
        (
            "HardlinkRelative",
            vec![
                dir("breakouts"),
                symlink("breakouts/d1", "../../etc"),
                hardlink("breakouts/mypasswd", "/breakouts/d1/passwd"),
            ],
            "breakouts/mypasswd",
        ),
        (
            "HardlinkDownAndOut",
            vec![
                dir("breakouts"),
                dir("downandout"),
                symlink("breakouts/d1", "../downandout/../../etc"),
                hardlink("breakouts/mypasswd", "/breakouts/d1/passwd"),
            ],
            "breakouts/mypasswd",
        ),
        (
            "HardlinkAbsolute",
            vec![
                symlink("localetc", "/etc"),
                hardlink("localpasswd", "/localetc/passwd"),
            ],
            "localpasswd",
        ),
        (
            "HardlinkRelativeLong",
            vec![
                symlink("localetc", "../../../../../../../etc"),
                hardlink("localpasswd", "/localetc/passwd"),
            ],
            "localpasswd",
        ),
    ];
    for (name, rest, link) in cases {
        for options in resolvers(strict()) {
            let sb = Sandbox::new();
            let mut entries = etc_passwd();
            entries.extend(rest.iter().cloned());
            sb.apply(&entries, &options)
                .unwrap_or_else(|e| panic!("{name}: {e:?}"));
            assert!(sb.same_file(link, "etc/passwd"), "{name}");
        }
    }
}

/// containerd "HardlinkRelativeUpAndOut": `upandout/../../../etc` does not resolve, since the
/// kernel walks `upandout` before `..` (containerd cleans the target lexically and links
/// `etc/passwd`): refused as missing, and nothing escapes either way.
#[test]
fn c_p13_hardlink_through_a_symlink_that_does_not_resolve() {
    for options in resolvers(strict()) {
        let sb = Sandbox::new();
        let mut entries = etc_passwd();
        entries.push(symlink("localetc", "upandout/../../../etc"));
        entries.push(hardlink("localpasswd", "/localetc/passwd"));
        let r = sb.apply(&entries, &options);
        assert_eq!(
            reason_for(r, "localpasswd"),
            InvalidEntry::HardlinkTargetMissing {
                target: "/localetc/passwd".into()
            }
        );
        // With `upandout` present, it resolves (inside the root).
        let sb = Sandbox::new();
        let mut entries = etc_passwd();
        entries.push(dir("upandout"));
        entries.push(symlink("localetc", "upandout/../../../etc"));
        entries.push(hardlink("localpasswd", "/localetc/passwd"));
        sb.apply(&entries, &options).unwrap();
        assert!(sb.same_file("localpasswd", "etc/passwd"));
    }
}

/// containerd "HardlinkSymlinkRelative", "HardlinkSymlinkAbsolute",
/// "HardlinkSymlinkBeforeCreateTarget": a hardlink to a symlink links the symlink itself.
#[test]
fn c_p13_hardlink_to_a_symlink_links_the_symlink() {
    for target in ["../../../../../etc/passwd", "/etc/passwd"] {
        let sb = Sandbox::new();
        let mut entries = etc_passwd();
        entries.push(symlink("passwdlink", target));
        entries.push(hardlink("localpasswd", "/passwdlink"));
        sb.apply(&entries, &strict()).unwrap();
        assert!(sb.same_file("localpasswd", "passwdlink"));
        assert_eq!(
            fs::read_link(sb.p("localpasswd")).unwrap(),
            Path::new(target)
        );
        assert_eq!(fs::symlink_metadata(sb.p("etc/passwd")).unwrap().nlink(), 1);
    }
    let sb = Sandbox::new();
    sb.apply(
        &[
            dir("etc"),
            symlink("localpasswd", "/etc/passwd"),
            hardlink("localpasswd-dup", "localpasswd"),
            file("/etc/passwd", b"after"),
        ],
        &strict(),
    )
    .unwrap();
    assert!(sb.same_file("localpasswd-dup", "localpasswd"));
    assert_eq!(sb.read("etc/passwd"), b"after");
}

#[test]
fn c_p15_hardlink_to_a_directory_is_refused() {
    for target in ["etc", "/etc/", ".", "/"] {
        let sb = Sandbox::new();
        let r = sb.apply(&[dir("etc"), hardlink("l", target)], &strict());
        assert_eq!(
            reason_for(r, "l"),
            InvalidEntry::HardlinkToDirectory {
                target: target.into()
            },
            "{target}"
        );
    }
    // Through a symlink to a directory: the symlink itself is linked, no directory.
    let sb = Sandbox::new();
    sb.apply(
        &[dir("etc"), symlink("e", "etc"), hardlink("l", "e")],
        &strict(),
    )
    .unwrap();
    assert!(
        fs::symlink_metadata(sb.p("l"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

#[test]
fn c_p16_hardlink_forward_reference_and_lower_layer_target() {
    let sb = Sandbox::new();
    let r = sb.apply(&[hardlink("early", "late"), file("late", b"x")], &strict());
    assert_eq!(
        reason(r),
        InvalidEntry::HardlinkTargetMissing {
            target: "late".into()
        }
    );
    assert!(!sb.exists("early"));

    // A target in a lower layer is fine; writing either name later unlinks and recreates.
    let sb = Sandbox::new();
    sb.apply(&[file("a", b"lower")], &strict()).unwrap();
    sb.apply(&[hardlink("b", "a")], &strict()).unwrap();
    assert!(sb.same_file("a", "b"));
    sb.apply(&[file("a", b"upper")], &strict()).unwrap();
    assert_eq!(sb.read("a"), b"upper");
    assert_eq!(sb.read("b"), b"lower");
    assert!(!sb.same_file("a", "b"));
    assert_eq!(fs::metadata(sb.p("b")).unwrap().nlink(), 1);
}

/// containerd "SymlinkOverrideDirectory", "SymlinkOverrideDirectoryRelative",
/// "DirectoryOverrideSymlink", "DirectoryOverrideSymlinkAndHardlink".
#[test]
fn c_p18_type_changes_between_layers() {
    let lower = |root: &Path| {
        fs::create_dir(root.join("etc")).unwrap();
        fs::write(root.join("etc/passwd"), b"inside").unwrap();
        fs::create_dir(root.join("localetc")).unwrap();
        fs::write(root.join("localetc/lowerfile"), b"lower").unwrap();
    };
    for target in ["/etc", "../../etc"] {
        for options in resolvers(strict()) {
            let sb = Sandbox::with_lower(lower);
            sb.apply(
                &[
                    symlink("localetc", target),
                    hardlink("/localetc/localpasswd", "/etc/passwd"),
                ],
                &options,
            )
            .unwrap();
            assert!(
                fs::symlink_metadata(sb.p("localetc"))
                    .unwrap()
                    .file_type()
                    .is_symlink()
            );
            assert!(sb.same_file("etc/localpasswd", "etc/passwd"));
            assert!(!sb.exists("etc/lowerfile"));
        }
    }
    // DirectoryOverrideSymlink
    let lower_link = |root: &Path| {
        fs::create_dir(root.join("etc")).unwrap();
        fs::write(root.join("etc/passwd"), b"inside").unwrap();
        std::os::unix::fs::symlink("/etc", root.join("localetc")).unwrap();
    };
    let sb = Sandbox::with_lower(lower_link);
    sb.apply(
        &[
            dir("/localetc/"),
            hardlink("/localetc/localpasswd", "/etc/passwd"),
        ],
        &strict(),
    )
    .unwrap();
    assert!(fs::symlink_metadata(sb.p("localetc")).unwrap().is_dir());
    assert!(sb.same_file("localetc/localpasswd", "etc/passwd"));
    // DirectoryOverrideSymlinkAndHardlink
    let lower_both = |root: &Path| {
        fs::create_dir(root.join("etc")).unwrap();
        fs::write(root.join("etc/passwd"), b"inside").unwrap();
        std::os::unix::fs::symlink("etc", root.join("localetc")).unwrap();
        fs::hard_link(root.join("etc/passwd"), root.join("etc/localpasswd")).unwrap();
    };
    let sb = Sandbox::with_lower(lower_both);
    sb.apply(
        &[
            dir("/localetc/"),
            file("/localetc/localpasswd", b"different"),
        ],
        &strict(),
    )
    .unwrap();
    assert!(!sb.same_file("localetc/localpasswd", "etc/passwd"));
    assert_eq!(sb.read("etc/passwd"), b"inside");
    assert_eq!(sb.read("localetc/localpasswd"), b"different");
}

/// containerd "SymlinkParentDirectory", "SymlinkEmptyFilename", "SymlinkParentRelative",
/// "SymlinkSlashEnded"; CVE-2021-29136 (an entry replacing the root).
#[test]
fn c_p19_names_that_are_the_root_or_empty() {
    // A symlink named `..`: strict refuses the climb; lenient stops at the root, which a
    // symlink cannot replace.
    let sb = Sandbox::new();
    let mut entries = etc_passwd();
    entries.push(symlink("..", "/etc/"));
    assert_eq!(
        reason(sb.apply(&entries, &strict())),
        InvalidEntry::EscapesRoot
    );
    let sb = Sandbox::new();
    assert_eq!(
        reason(sb.apply(&entries, &lenient())),
        InvalidEntry::ReplacesRoot
    );
    assert!(fs::symlink_metadata(&sb.root).unwrap().is_dir());

    // Empty name.
    let sb = Sandbox::new();
    let mut entries = etc_passwd();
    entries.push(symlink("", "/etc/"));
    assert_eq!(
        reason(sb.apply(&entries, &strict())),
        InvalidEntry::EmptyName
    );

    // CVE-2021-29136: `.` or `/` as anything but a directory.
    for (name, e) in [
        (".", symlink(".", "/etc")),
        ("/", file("/", b"x")),
        ("./", hardlink("./", "etc/passwd")),
        ("a/..", symlink("a/..", "/")),
    ] {
        let sb = Sandbox::new();
        let mut entries = etc_passwd();
        entries.push(e);
        assert_eq!(
            reason_for(sb.apply(&entries, &strict()), name),
            InvalidEntry::ReplacesRoot
        );
        assert!(fs::symlink_metadata(&sb.root).unwrap().is_dir());
    }
    // `./` as a directory: the root's attributes.
    let sb = Sandbox::new();
    sb.apply(
        &[dir("./").mode(0o750).mtime(1234), file("f", b"x")],
        &strict(),
    )
    .unwrap();
    let m = fs::metadata(&sb.root).unwrap();
    assert_eq!((m.mode() & 0o7777, m.mtime()), (0o750, 1234));

    // SymlinkParentRelative: `localetc/sub/..` is `localetc`.
    let sb = Sandbox::new();
    let mut entries = etc_passwd();
    entries.push(symlink("localetc/sub/..", "/etc/"));
    entries.push(hardlink("/localetc/localpasswd", "/etc/passwd"));
    sb.apply(&entries, &strict()).unwrap();
    assert!(sb.same_file("etc/localpasswd", "etc/passwd"));
    // SymlinkSlashEnded
    let sb = Sandbox::new();
    let mut entries = etc_passwd();
    entries.push(dir("localetc/"));
    entries.push(hardlink("/localetc/localpasswd", "/etc/passwd"));
    sb.apply(&entries, &strict()).unwrap();
    assert!(sb.same_file("localetc/localpasswd", "etc/passwd"));
}

/// CVE-2018-15664, CVE-2025-47290: a symlink swapped in during the unpack.
#[test]
fn c_p20_concurrent_symlink_swap_stays_inside() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    for options in resolvers(lenient()) {
        let sb = Sandbox::with_lower(|root| {
            fs::create_dir(root.join("swap")).unwrap();
        });
        let decoy = sb.root.join("decoy");
        std::os::unix::fs::symlink(&sb.outside, &decoy).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let swapper = {
            let stop = Arc::clone(&stop);
            let root = sb.root.clone();
            std::thread::spawn(move || {
                let mut swaps = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let _ = rustix::fs::renameat_with(
                        rustix::fs::CWD,
                        root.join("swap"),
                        rustix::fs::CWD,
                        root.join("decoy"),
                        rustix::fs::RenameFlags::EXCHANGE,
                    );
                    swaps += 1;
                }
                swaps
            })
        };
        let entries: Vec<Ent> = (0..3000)
            .map(|i| match i % 3 {
                0 => file(&format!("swap/f{i}"), b"x"),
                1 => dir(&format!("swap/d{i}")),
                _ => symlink(&format!("swap/l{i}"), "passwd"),
            })
            .collect();
        let result = apply_layer(&sb.root, &tar_of(&entries)[..], &options);
        stop.store(true, Ordering::Relaxed);
        assert!(swapper.join().unwrap() > 0);
        // Errors are fine (the tree moved under the applier); escapes are not.
        let _ = result;
        sb.check();
        assert_eq!(fs::read_dir(&sb.outside).unwrap().count(), 5);
    }
}

#[test]
fn c_p21_names_differing_by_case_or_normalisation_are_distinct() {
    let sb = Sandbox::new();
    sb.apply(
        &[
            file("Foo", b"upper"),
            file("foo", b"lower"),
            file("caf\u{e9}", b"nfc"),
            file("cafe\u{301}", b"nfd"),
        ],
        &strict(),
    )
    .unwrap();
    assert_eq!(sb.read("Foo"), b"upper");
    assert_eq!(sb.read("foo"), b"lower");
    assert_eq!(sb.read("caf\u{e9}"), b"nfc");
    assert_eq!(sb.read("cafe\u{301}"), b"nfd");
}

#[test]
fn c_p22_backslashes_and_drive_letters_are_ordinary_characters() {
    let sb = Sandbox::new();
    sb.apply(
        &[file("..\\..\\evil", b"1"), file("C:\\x", b"2")],
        &strict(),
    )
    .unwrap();
    assert_eq!(sb.names(), ["..\\..\\evil", "C:\\x"]);
}

// ---------------------------------------------------------------------------------------------
// C.2: whiteouts
// ---------------------------------------------------------------------------------------------

fn lower_etc(root: &Path) {
    fs::create_dir(root.join("etc")).unwrap();
    fs::write(root.join("etc/passwd"), b"all users").unwrap();
    fs::write(root.join("etc/whitedout"), b"ahhhh whiteout").unwrap();
}

/// containerd "WhiteoutRoot", "WhiteoutCurrentDirectory", "WhiteoutRootParent",
/// "WhiteoutParent"; ISm's empty whiteout name.
#[test]
fn c_w01_c_w02_c_w03_whiteouts_of_dot_dotdot_and_nothing() {
    for name in [
        ".wh..",
        "etc/.wh..",
        ".wh...",
        "etc/.wh...",
        ".wh.",
        "etc/.wh.",
    ] {
        let sb = Sandbox::with_lower(lower_etc);
        let r = sb.apply(&[whiteout(name)], &lenient());
        assert_eq!(
            reason_for(r, name),
            InvalidEntry::BadWhiteoutTarget,
            "{name}"
        );
        assert_eq!(sb.read("etc/passwd"), b"all users", "{name}");
        assert_eq!(sb.names(), ["etc", "etc/passwd", "etc/whitedout"]);
    }
}

/// containerd "WhiteoutSymlink", "WhiteoutSymlinkPath".
#[test]
fn c_w05_whiteout_of_a_symlink_removes_the_link() {
    let lower = |root: &Path| {
        lower_etc(root);
        std::os::unix::fs::symlink("/etc", root.join("localetc")).unwrap();
    };
    let sb = Sandbox::with_lower(lower);
    let report = sb.apply(&[whiteout(".wh.localetc")], &strict()).unwrap();
    assert_eq!(report.whiteouts, 1);
    assert!(!sb.exists("localetc"));
    assert_eq!(sb.read("etc/passwd"), b"all users");

    let sb = Sandbox::with_lower(lower);
    sb.apply(&[whiteout("localetc/.wh.whitedout")], &strict())
        .unwrap();
    assert!(!sb.exists("etc/whitedout"));
    assert_eq!(sb.read("etc/passwd"), b"all users");

    // A symlink to the canaries: whiting it out, or whiting out through it, never reaches
    // them.
    for options in resolvers(strict()) {
        let mut outside = PathBuf::new();
        let sb = Sandbox::with_lower(|root| {
            let o = root.parent().unwrap().join("outside");
            std::os::unix::fs::symlink(&o, root.join("out")).unwrap();
            outside = o;
        });
        sb.apply(
            &[
                whiteout("out/.wh.passwd"),
                whiteout("out/.wh.dir"),
                whiteout("out/.wh..wh..opq"),
            ],
            &options,
        )
        .unwrap();
        sb.apply(&[whiteout(".wh.out")], &options).unwrap();
        assert!(!sb.exists("out"));
        assert!(outside.join("passwd").exists());
    }
}

/// containerd "WhiteoutDeadSymlinkParent"; whiteouts of missing paths.
#[test]
fn c_w06_whiteouts_of_missing_paths_do_nothing() {
    let sb = Sandbox::with_lower(|root| {
        lower_etc(root);
        std::os::unix::fs::symlink("/dne", root.join("localetc")).unwrap();
    });
    sb.apply(
        &[
            whiteout("localetc/.wh.etc"),
            whiteout(".wh.nothing"),
            whiteout("no/such/dir/.wh.x"),
            whiteout("no/such/.wh..wh..opq"),
            whiteout("etc/passwd/.wh.x"),
        ],
        &strict(),
    )
    .unwrap();
    assert_eq!(sb.read("etc/passwd"), b"all users");
    assert_eq!(
        sb.names(),
        ["etc", "etc/passwd", "etc/whitedout", "localetc"]
    );
}

/// containerd "WhiteoutRelativePath".
#[test]
fn c_w07_whiteout_path_with_dotdot_is_normalised() {
    let sb = Sandbox::with_lower(lower_etc);
    sb.apply(&[whiteout("dne/../.wh.etc")], &strict()).unwrap();
    assert!(!sb.exists("etc"));
    let sb = Sandbox::with_lower(lower_etc);
    assert_eq!(
        reason(sb.apply(&[whiteout("../.wh.etc")], &strict())),
        InvalidEntry::EscapesRoot
    );
    assert!(sb.exists("etc/passwd"));
}

/// containerd "WhiteoutDirectoryName".
#[test]
fn c_w08_whiteout_prefix_as_a_directory() {
    let sb = Sandbox::with_lower(lower_etc);
    let r = sb.apply(&[file(".wh.etc/somefile", b"non-empty")], &strict());
    assert_eq!(reason(r), InvalidEntry::WhiteoutAsDirectory);
    let sb = Sandbox::with_lower(lower_etc);
    let report = sb
        .apply(
            &[file(".wh.etc/somefile", b"non-empty"), dir("a/.wh.b/c")],
            &lenient(),
        )
        .unwrap();
    assert_eq!(report.entries_skipped, 2);
    assert_eq!(sb.names(), ["etc", "etc/passwd", "etc/whitedout"]);
}

#[test]
fn c_w09_whiteouts_must_be_empty_regular_files() {
    let bad = [
        file("etc/.wh.passwd", b"payload"),
        symlink("etc/.wh.passwd", "/x"),
        dir("etc/.wh.passwd"),
        hardlink("etc/.wh.passwd", "etc/whitedout"),
        device("etc/.wh.passwd", b'6', 0, 0),
        file("etc/.wh..wh..opq", b"payload"),
    ];
    for e in &bad {
        let sb = Sandbox::with_lower(lower_etc);
        let r = sb.apply(std::slice::from_ref(e), &strict());
        assert_eq!(reason(r), InvalidEntry::WhiteoutNotEmptyFile, "{e:?}");
        assert!(sb.exists("etc/passwd"));
        // Lenient: applied as a whiteout, never materialised.
        let sb = Sandbox::with_lower(lower_etc);
        sb.apply(&[e.clone(), file("after", b"ok")], &lenient())
            .unwrap();
        assert!(!sb.exists("etc/passwd"), "{e:?}");
        assert!(
            sb.names().iter().all(|n| !n.contains(".wh.")),
            "{:?}",
            sb.names()
        );
        assert_eq!(sb.read("after"), b"ok");
    }
}

#[test]
fn c_w12_opaque_whiteout_at_the_top_level() {
    let sb = Sandbox::with_lower(lower_etc);
    let report = sb
        .apply(
            &[
                file("new", b"n"),
                whiteout("./.wh..wh..opq"),
                dir("etc"),
                file("etc/x", b"x"),
            ],
            &strict(),
        )
        .unwrap();
    assert_eq!(report.whiteouts, 1);
    assert_eq!(sb.names(), ["etc", "etc/x", "new"]);
    assert!(sb.root.is_dir());
}

#[test]
fn c_w13_aufs_metadata_is_never_materialised() {
    let sb = Sandbox::with_lower(lower_etc);
    let report = sb
        .apply(
            &[
                dir(".wh..wh.plnk"),
                file(".wh..wh.plnk/123", b"x"),
                file(".wh..wh.aufs", b""),
                file("etc/.wh..wh.foo", b"x"),
                dir("etc/.wh..wh.orph/x"),
                file("ok", b"ok"),
            ],
            &strict(),
        )
        .unwrap();
    assert_eq!(report.entries_skipped, 5);
    assert_eq!(sb.names(), ["etc", "etc/passwd", "etc/whitedout", "ok"]);
}

#[test]
fn c_w15_overlay_metadata_in_a_tar_is_stripped() {
    let sb = Sandbox::new();
    let options = strict().with_xattrs(XattrPolicy::privileged());
    sb.apply(
        &[
            dir("d")
                .pax("SCHILY.xattr.trusted.overlay.opaque", b"y")
                .pax("SCHILY.xattr.user.overlay.opaque", b"y")
                .pax("SCHILY.xattr.user.kept", b"1"),
            file("f", b"x")
                .pax("SCHILY.xattr.trusted.overlay.redirect", b"/etc")
                .pax("SCHILY.xattr.user.overlay.origin", b"x"),
        ],
        &options,
    )
    .unwrap();
    for name in ["trusted.overlay.opaque", "user.overlay.opaque"] {
        assert_eq!(xattr(&sb.p("d"), name), None, "{name}");
    }
    assert_eq!(xattr(&sb.p("d"), "user.kept").as_deref(), Some(&b"1"[..]));
    assert_eq!(xattr(&sb.p("f"), "trusted.overlay.redirect"), None);
    assert_eq!(xattr(&sb.p("f"), "user.overlay.origin"), None);

    // A char device 0:0 is a device in Apply mode, refused in Overlay mode (it would be a
    // whiteout there).
    if is_root() {
        let sb = Sandbox::new();
        sb.apply(&[device("wh", b'3', 0, 0)], &strict()).unwrap();
        assert!(
            fs::symlink_metadata(sb.p("wh"))
                .unwrap()
                .file_type()
                .is_char_device()
        );
        let sb = Sandbox::new();
        let r = sb.apply(
            &[device("wh", b'3', 0, 0)],
            &strict().with_mode(ApplyMode::Overlay),
        );
        assert_eq!(reason(r), InvalidEntry::UnsupportedType { typeflag: b'3' });
        let sb = Sandbox::new();
        let report = sb
            .apply(
                &[device("wh", b'3', 0, 0)],
                &lenient().with_mode(ApplyMode::Overlay),
            )
            .unwrap();
        assert_eq!(report.entries_skipped, 1);
        assert!(!sb.exists("wh"));
    }
}

fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 65536];
    match rustix::fs::lgetxattr(path, name, &mut buf[..]) {
        Ok(n) => Some(buf[..n].to_vec()),
        Err(_) => None,
    }
}

// ---------------------------------------------------------------------------------------------
// C.3: special files, ownership, metadata
// ---------------------------------------------------------------------------------------------

fn rdev(path: &Path) -> (u32, u32) {
    let r = fs::symlink_metadata(path).unwrap().rdev();
    (rustix::fs::major(r), rustix::fs::minor(r))
}

#[test]
fn c_s01_devices_follow_the_policy() {
    let entries = [
        device("dev/sda", b'4', 8, 0),
        device("dev/null", b'3', 1, 3),
        device("fifo", b'6', 0, 0),
    ];
    let sb = Sandbox::new();
    let report = sb
        .apply(&entries, &strict().with_devices(DevicePolicy::Skip))
        .unwrap();
    assert_eq!((report.devices_skipped, report.special_files), (2, 1));
    assert!(!sb.exists("dev/sda") && !sb.exists("dev/null"));
    assert!(
        fs::symlink_metadata(sb.p("fifo"))
            .unwrap()
            .file_type()
            .is_fifo()
    );

    let sb = Sandbox::new();
    let r = sb.apply(&entries, &strict().with_devices(DevicePolicy::Refuse));
    assert_eq!(reason(r), InvalidEntry::UnsupportedType { typeflag: b'4' });

    let sb = Sandbox::new();
    let report = sb.apply(&entries, &strict()).unwrap();
    if is_root() {
        assert_eq!((report.devices_skipped, report.special_files), (0, 3));
        let m = fs::symlink_metadata(sb.p("dev/sda")).unwrap();
        assert!(m.file_type().is_block_device());
        assert_eq!(m.mode() & 0o7777, 0o660);
        assert_eq!(rdev(&sb.p("dev/sda")), (8, 0));
        assert!(
            fs::symlink_metadata(sb.p("dev/null"))
                .unwrap()
                .file_type()
                .is_char_device()
        );
        assert_eq!(rdev(&sb.p("dev/null")), (1, 3));
    } else {
        assert_eq!(report.devices_skipped, 2);
        assert!(!sb.exists("dev/sda"));
    }
}

#[test]
fn c_s02_device_numbers_out_of_range() {
    let neg = [0xff_u8; 8];
    let big = [0x80_u8, 0, 0, 1, 0, 0, 0, 0]; // 2^32
    for e in [
        device("d", b'3', 0, 0).patch(329, &neg),
        device("d", b'3', 0, 0).patch(337, &neg),
        device("d", b'4', 0, 0).patch(329, &big),
        device("d", b'3', 4096, 0),
        device("d", b'3', 0, 1 << 20),
        device("d", b'4', 0, 0).patch(329, b"0000008\0"),
    ] {
        let sb = Sandbox::new();
        let r = sb.apply(std::slice::from_ref(&e), &strict());
        match r {
            Err(Error::InvalidEntry {
                reason: InvalidEntry::BadDeviceNumber | InvalidEntry::MalformedHeader { .. },
                ..
            }) => {}
            other => panic!("{e:?}: {other:?}"),
        }
        assert!(!sb.exists("d"));
    }
    if is_root() {
        let sb = Sandbox::new();
        sb.apply(&[device("d", b'3', 4095, (1 << 20) - 1)], &strict())
            .unwrap();
        assert_eq!(rdev(&sb.p("d")), (4095, (1 << 20) - 1));
    }
}

#[test]
fn c_s03_modes_are_masked_and_setid_follows_ownership() {
    let entries = [
        file("su", b"x").mode(0o4755),
        file("all", b"x").mode(0o7777),
        file("high", b"x").patch(100, b"0107644\0"),
        dir("tmp").mode(0o1777),
        dir("sgid").mode(0o2755),
    ];
    let sb = Sandbox::new();
    sb.apply(&entries, &strict().with_preserve_owner(Some(is_root())))
        .unwrap();
    let mode = |n: &str| fs::symlink_metadata(sb.p(n)).unwrap().mode() & 0o7777;
    if is_root() {
        assert_eq!((mode("su"), mode("all")), (0o4755, 0o7777));
    }
    assert_eq!(mode("high"), 0o7644 & !if is_root() { 0 } else { 0o6000 });
    assert_eq!((mode("tmp"), mode("sgid")), (0o1777, 0o2755));

    // Owners not kept: setuid and setgid dropped from files (not directories).
    let sb = Sandbox::new();
    sb.apply(&entries, &strict().with_preserve_owner(Some(false)))
        .unwrap();
    let mode = |n: &str| fs::symlink_metadata(sb.p(n)).unwrap().mode() & 0o7777;
    assert_eq!(
        (mode("su"), mode("all"), mode("high")),
        (0o755, 0o1777, 0o1644)
    );
    assert_eq!((mode("tmp"), mode("sgid")), (0o1777, 0o2755));
    let sb = Sandbox::new();
    sb.apply(
        &entries,
        &strict()
            .with_preserve_owner(Some(false))
            .with_strip_setid(Some(false)),
    )
    .unwrap();
    assert_eq!(
        fs::symlink_metadata(sb.p("su")).unwrap().mode() & 0o7777,
        0o4755
    );
}

#[test]
fn c_s04_owner_ids_out_of_range() {
    let neg = [0xff_u8; 8];
    for e in [
        file("f", b"x").patch(108, &neg),
        file("f", b"x").patch(116, &neg),
        file("f", b"x").pax("uid", b"-1"),
        file("f", b"x").pax("uid", b"4294967295"),
        file("f", b"x").pax("gid", b"4294967296"),
        file("f", b"x").pax("uid", b"99999999999999999999"),
    ] {
        let sb = Sandbox::new();
        let r = sb.apply(std::slice::from_ref(&e), &strict());
        match r {
            Err(Error::InvalidEntry {
                reason: InvalidEntry::BadOwner | InvalidEntry::MalformedHeader { .. },
                ..
            }) => {}
            other => panic!("{e:?}: {other:?}"),
        }
        assert!(!sb.exists("f"));
    }
    // 2^31 and 3e9 are valid Linux ids.
    let sb = Sandbox::new();
    sb.apply(
        &[
            file("a", b"x")
                .pax("uid", b"2147483648")
                .pax("gid", b"2147483648"),
            file("b", b"x").owner(3_000_000_000, 1000),
            symlink("l", "a").owner(7, 8),
        ],
        &strict(),
    )
    .unwrap();
    let m = |n: &str| fs::symlink_metadata(sb.p(n)).unwrap();
    if is_root() {
        assert_eq!((m("a").uid(), m("a").gid()), (1 << 31, 1 << 31));
        assert_eq!((m("b").uid(), m("b").gid()), (3_000_000_000, 1000));
        assert_eq!((m("l").uid(), m("l").gid()), (7, 8));
    }
    // Not preserved: owned by the applier.
    let sb = Sandbox::new();
    sb.apply(
        &[file("b", b"x").owner(1000, 1000)],
        &strict().with_preserve_owner(Some(false)),
    )
    .unwrap();
    let me = rustix::process::geteuid().as_raw();
    assert_eq!(fs::symlink_metadata(sb.p("b")).unwrap().uid(), me);
}

#[test]
fn c_s05_xattrs_are_allow_listed_and_capped() {
    let e = || {
        file("f", b"x")
            .pax("SCHILY.xattr.user.a", b"1")
            .pax(
                "SCHILY.xattr.security.capability",
                b"\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",
            )
            .pax(
                "SCHILY.xattr.security.selinux",
                b"system_u:object_r:etc_t:s0",
            )
            .pax("SCHILY.xattr.trusted.t", b"t")
            .pax("SCHILY.xattr.user.big", &vec![b'x'; 70_000])
    };
    let sb = Sandbox::new();
    let report = sb.apply(&[e()], &strict()).unwrap();
    assert_eq!(xattr(&sb.p("f"), "user.a").as_deref(), Some(&b"1"[..]));
    assert_eq!(xattr(&sb.p("f"), "security.capability"), None);
    assert_eq!(xattr(&sb.p("f"), "trusted.t"), None);
    assert_eq!(xattr(&sb.p("f"), "user.big"), None);
    assert_eq!(report.xattrs_skipped, 1);

    let sb = Sandbox::new();
    sb.apply(&[e()], &strict().with_xattrs(XattrPolicy::privileged()))
        .unwrap();
    assert_eq!(xattr(&sb.p("f"), "security.selinux"), None);
    if is_root() {
        assert!(xattr(&sb.p("f"), "security.capability").is_some());
        assert_eq!(xattr(&sb.p("f"), "trusted.t").as_deref(), Some(&b"t"[..]));
    }

    let sb = Sandbox::new();
    sb.apply(&[e()], &strict().with_xattrs(XattrPolicy::none()))
        .unwrap();
    assert_eq!(xattr(&sb.p("f"), "user.a"), None);

    // Too much xattr metadata for one entry.
    let sb = Sandbox::new();
    let huge = file("f", b"x").pax("SCHILY.xattr.user.huge", &vec![b'x'; 2 << 20]);
    assert!(matches!(
        sb.apply(&[huge], &strict()),
        Err(Error::LimitExceeded {
            limit: Limit::EntryMetadata,
            ..
        })
    ));
}

#[test]
fn c_s06_unknown_and_sparse_types() {
    for typeflag in [b'V', b'M', b'Z', b'S', b'N', b'D', b'A'] {
        let sb = Sandbox::new();
        let odd = file("odd", b"some data that must be skipped").patch(156, &[typeflag]);
        let r = sb.apply(&[odd.clone(), file("after", b"ok")], &strict());
        assert_eq!(reason(r), InvalidEntry::UnsupportedType { typeflag });
        let sb = Sandbox::new();
        let report = sb.apply(&[odd, file("after", b"ok")], &lenient()).unwrap();
        assert_eq!(report.entries_skipped, 1);
        assert_eq!(sb.names(), ["after"]);
        assert_eq!(sb.read("after"), b"ok");
    }
    // GNU sparse with extension blocks, skipped whole in lenient mode.
    let mut ext = [0u8; 512];
    ext[504] = 0;
    let sparse = file("sparse", b"")
        .patch(156, b"S")
        .patch(482, &[1])
        .patch(483, b"00000001000\0");
    let mut bytes = tar_body(&[sparse]);
    bytes.extend_from_slice(&ext);
    bytes.extend(tar_of(&[file("after", b"ok")]));
    let sb = Sandbox::new();
    sb.apply_bytes(&bytes, &lenient()).unwrap();
    assert_eq!(sb.names(), ["after"]);
    // PAX-style sparse files.
    let sb = Sandbox::new();
    let r = sb.apply(&[file("s", b"x").pax("GNU.sparse.major", b"1")], &strict());
    assert_eq!(reason(r), InvalidEntry::UnsupportedType { typeflag: b'S' });
}

#[test]
fn c_s07_pax_global_headers_are_ignored() {
    let global = Ent {
        data: [
            pax_record(b"uid", b"666"),
            pax_record(b"mtime", b"1"),
            pax_record(b"comment", b"made by a test"),
        ]
        .concat(),
        ..ent("pax_global_header", b'g')
    };
    let sb = Sandbox::new();
    let report = sb
        .apply(&[global, file("f", b"x").owner(5, 5).mtime(77)], &strict())
        .unwrap();
    assert_eq!(sb.names(), ["f"]);
    let m = fs::symlink_metadata(sb.p("f")).unwrap();
    assert_eq!(m.mtime(), 77);
    if is_root() {
        assert_eq!(m.uid(), 5);
    }
    assert_eq!(report.entries, 2);
    // A malformed global header is refused like any PAX header.
    let bad = Ent {
        data: b"99 path=x\n".to_vec(),
        ..ent("g", b'g')
    };
    let sb = Sandbox::new();
    malformed(sb.apply(&[bad], &strict()));
}

/// A global header whose records would change framing (`size`) or names (`path`,
/// `linkpath`) for the entries after it: GNU tar applies them, Go ignores them, so the two
/// list different entries. Strict mode refuses; lenient mode ignores them, as Go does.
#[test]
fn c_s07_global_headers_that_change_framing_or_names_are_refused_in_strict_mode() {
    let global = |key: &[u8], value: &[u8]| Ent {
        data: pax_record(key, value),
        ..ent("pax_global_header", b'g')
    };
    let smuggled = tar_body(&[file("smuggled", b"s")]);
    let size = smuggled.len().to_string();
    for (key, value) in [
        (&b"size"[..], size.as_bytes()),
        (b"path", b"evil"),
        (b"linkpath", b"/etc/passwd"),
    ] {
        let mut bytes = tar_body(&[global(key, value), file("f", b"")]);
        bytes.extend_from_slice(&smuggled);
        bytes.extend_from_slice(&[0u8; 1024]);
        let detail = malformed(Sandbox::new().apply_bytes(&bytes, &strict()));
        assert!(detail.contains("global"), "{detail}");
        let sb = Sandbox::new();
        sb.apply_bytes(&bytes, &lenient()).unwrap();
        assert_eq!(sb.names(), ["f", "smuggled"]);
    }
}

/// PAX numbers with a leading `+`: Go's strconv accepts them, GNU tar refuses them.
#[test]
fn pax_numbers_with_a_plus_sign_are_refused_in_strict_mode() {
    for (key, value) in [
        ("size", &b"+1"[..]),
        ("uid", b"+5"),
        ("gid", b"+5"),
        ("mtime", b"+77"),
        ("mtime", b"+77.5"),
    ] {
        let entry = || file("f", b"x").pax(key, value);
        let detail = malformed(Sandbox::new().apply(&[entry()], &strict()));
        assert!(detail.contains(key), "{key}: {detail}");
        let sb = Sandbox::new();
        sb.apply(&[entry()], &lenient()).unwrap();
        assert_eq!(sb.read("f"), b"x");
    }
    // Without the sign, the same numbers are fine.
    let sb = Sandbox::new();
    sb.apply(
        &[file("f", b"x").pax("size", b"1").pax("mtime", b"77.5")],
        &strict(),
    )
    .unwrap();
    assert_eq!(fs::symlink_metadata(sb.p("f")).unwrap().mtime(), 77);
}

#[test]
fn c_s08_mtimes_out_of_range_are_clamped() {
    let sb = Sandbox::new();
    sb.apply(
        &[
            file("y10000", b"x").pax("mtime", b"253402300800"),
            file("old", b"x").pax("mtime", b"-86400"),
            file("frac", b"x").pax("mtime", b"1700000000.999999999"),
            file("huge", b"x").pax("mtime", b"99999999999999999999999999"),
            file("hugeneg", b"x").pax("mtime", b"-99999999999999999999999999"),
            dir("d").pax("mtime", b"-1.5"),
        ],
        &strict(),
    )
    .unwrap();
    let m = |n: &str| fs::symlink_metadata(sb.p(n)).unwrap();
    assert_eq!(m("y10000").mtime(), 253_402_300_800);
    assert_eq!(m("old").mtime(), -86_400);
    assert_eq!(
        (m("frac").mtime(), m("frac").mtime_nsec()),
        (1_700_000_000, 999_999_999)
    );
    assert_eq!((m("d").mtime(), m("d").mtime_nsec()), (-2, 500_000_000));
    assert!(m("huge").mtime() > 253_402_300_800);
    assert!(m("hugeneg").mtime() < 0);
    // Not a number: refused in strict mode, the header's mtime in lenient mode.
    let e = file("nan", b"x").mtime(42).pax("mtime", b"1e400");
    let sb = Sandbox::new();
    malformed(sb.apply(std::slice::from_ref(&e), &strict()));
    let sb = Sandbox::new();
    sb.apply(&[e], &lenient()).unwrap();
    assert_eq!(fs::symlink_metadata(sb.p("nan")).unwrap().mtime(), 42);
}

// ---------------------------------------------------------------------------------------------
// C.4: tar parsing
// ---------------------------------------------------------------------------------------------

fn raw_pax(records: &[u8]) -> Ent {
    Ent {
        data: records.to_vec(),
        ..ent("PaxHeaders/x", b'x')
    }
}

#[test]
fn c_t02_malformed_pax_records_are_refused() {
    for records in [
        &b"99 path=a\n"[..],
        b"5 path=abc\n",
        b"12 pathxabc\n",
        b"xx path=abc\n",
        b"12 path=abc!",
        b"9 =value\n",
        b"12 path=abc\n\0\0\0\0",
        b"-12 path=abc\n",
    ] {
        let sb = Sandbox::new();
        let mut bytes = tar_body(&[raw_pax(records)]);
        bytes.extend(tar_of(&[file("f", b"x")]));
        malformed(sb.apply_bytes(&bytes, &lenient()));
        assert!(!sb.exists("f"));
    }
    for (key, value) in [
        ("size", &b"12x"[..]),
        ("size", b"-1"),
        ("uid", b"abc"),
        ("gid", b"1.5"),
    ] {
        let sb = Sandbox::new();
        malformed(sb.apply(&[file("f", b"x").pax(key, value)], &lenient()));
    }
    // PAX size is honoured over the header's (RUSTSEC-2026-0068, TARmageddon).
    let sb = Sandbox::new();
    let smuggled = tar_body(&[file("inner", b"smuggled")]);
    let outer = file("outer", &smuggled)
        .claimed_size(0)
        .pax("size", smuggled.len().to_string().as_bytes());
    sb.apply(&[outer, file("after", b"ok")], &strict()).unwrap();
    assert_eq!(sb.names(), ["after", "outer"]);
    assert_eq!(sb.read("outer"), smuggled);
}

#[test]
fn c_t03_metadata_is_capped_before_it_is_read() {
    let over = |r: Result<ApplyReport, Error>| {
        assert!(
            matches!(
                r,
                Err(Error::LimitExceeded {
                    limit: Limit::EntryMetadata,
                    ..
                })
            ),
            "{r:?}"
        );
    };
    // A 1 GiB PAX header with no body: refused from its header alone.
    let sb = Sandbox::new();
    let header = header_block(&raw_pax(b"").claimed_size(1 << 30));
    over(sb.apply_bytes(&header, &strict()));
    // A 2 MiB PAX record and a 2 MiB GNU long name.
    let sb = Sandbox::new();
    over(sb.apply(
        &[file("f", b"x").pax("comment", &vec![b'c'; 2 << 20])],
        &strict(),
    ));
    let sb = Sandbox::new();
    let long = gnu_long(b'L', &vec![b'n'; 2 << 20]);
    over(sb.apply(&[long, file("f", b"x")], &strict()));
    // A chain of PAX headers: refused in strict mode, capped in total in lenient mode.
    let chunk = pax_record(b"comment", &vec![b'c'; 200 << 10]);
    let chain: Vec<Ent> = (0..8).map(|_| raw_pax(&chunk)).collect();
    let mut bytes = tar_body(&chain);
    bytes.extend(tar_of(&[file("f", b"x")]));
    let sb = Sandbox::new();
    malformed(sb.apply_bytes(&bytes, &strict()));
    let sb = Sandbox::new();
    over(sb.apply_bytes(&bytes, &lenient()));
    let sb = Sandbox::new();
    let small = Limits::default().with_max_entry_metadata(4 << 20);
    sb.apply_bytes(&bytes, &lenient().with_limits(small))
        .unwrap();
    assert_eq!(sb.names(), ["f"]);
    // Entry count.
    let sb = Sandbox::new();
    let many: Vec<Ent> = (0..10).map(|i| file(&format!("f{i}"), b"x")).collect();
    let r = sb.apply(
        &many,
        &strict().with_limits(Limits::default().with_max_entries(5)),
    );
    assert!(
        matches!(
            r,
            Err(Error::LimitExceeded {
                limit: Limit::Entries,
                max: 5
            })
        ),
        "{r:?}"
    );
}

#[test]
fn c_t04_huge_declared_sizes_stream_and_fail_at_eof() {
    // 8 EiB in base-256, a few bytes of body.
    let mut size = [0u8; 12];
    size[0] = 0x80;
    size[4] = 0x7f;
    let e = file("big", b"").patch(124, &size);
    let mut bytes = tar_body(&[e]);
    bytes.extend_from_slice(b"only a little data");
    let sb = Sandbox::new();
    corrupt(sb.apply_bytes(&bytes, &strict()));
}

#[test]
fn c_t05_truncated_archives_are_errors() {
    let full = tar_of(&[file("a", &[b'a'; 1000]), file("b", b"b")]);
    // Inside the first header, inside a's data, inside b's header, and one byte into the end
    // marker's place after a whole entry is fine (see below); these are not entry boundaries.
    for cut in [100, 512 + 500, 512 * 3 + 100] {
        for options in [strict(), lenient()] {
            let sb = Sandbox::new();
            let r = sb.apply_bytes(&full[..cut], &options);
            assert!(
                matches!(r, Err(Error::Corrupt { .. })),
                "cut at {cut}: {r:?}"
            );
        }
    }
    // A PAX header whose entry never comes.
    let mut pax_only = tar_body(&[raw_pax(&pax_record(b"path", b"x"))]);
    corrupt(Sandbox::new().apply_bytes(&pax_only, &strict()));
    corrupt(Sandbox::new().apply_bytes(&pax_only, &lenient()));
    // ... or is cut inside its records.
    pax_only.truncate(512 + 4);
    corrupt(Sandbox::new().apply_bytes(&pax_only, &strict()));
    // A zero block then a header: not an end marker.
    let body = tar_body(&[file("a", b"a")]);
    let mut hidden = body.clone();
    hidden.extend_from_slice(&[0u8; 512]);
    hidden.extend(tar_of(&[file("hidden", b"h")]));
    corrupt(Sandbox::new().apply_bytes(&hidden, &strict()));
    let sb = Sandbox::new();
    sb.apply_bytes(&hidden, &lenient()).unwrap();
    assert!(!sb.exists("hidden"));
}

/// The end-of-archive rule: a stream that ends at an entry boundary, after the last entry's
/// data (padded or not), ends the archive, as for umoci, Go's archive/tar and GNU tar; one
/// that ends inside a header or inside an entry's data is truncated. Both modes agree.
#[test]
fn archives_end_at_any_entry_boundary_and_nowhere_else() {
    let entries = [dir("d"), file("d/f", b"hello"), file("last", &[b'l'; 700])];
    let body = tar_body(&entries);
    let last_data_end = body.len() - (512 - 700 % 512); // 700 bytes of data, then padding
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("no end blocks", body.clone()),
        ("one end block", [&body[..], &[0u8; 512]].concat()),
        ("two end blocks", [&body[..], &[0u8; 1024]].concat()),
        (
            "trailing zero blocks",
            [&body[..], &[0u8; 512 * 20]].concat(),
        ),
        ("no final padding", body[..last_data_end].to_vec()),
        (
            "part of the final padding",
            body[..last_data_end + 100].to_vec(),
        ),
    ];
    for (what, bytes) in &cases {
        for options in [strict(), lenient()] {
            let sb = Sandbox::new();
            let report = sb
                .apply_bytes(bytes, &options)
                .unwrap_or_else(|e| panic!("{what}: {e:?}"));
            assert_eq!(sb.names(), ["d", "d/f", "last"], "{what}");
            assert_eq!(sb.read("d/f"), b"hello", "{what}");
            assert_eq!(sb.read("last"), [b'l'; 700], "{what}");
            // The diffID covers every byte of the stream.
            assert_eq!(report.diff_id, Digest::sha256(bytes), "{what}");
            assert_eq!(report.tar_size, bytes.len() as u64, "{what}");
        }
    }
    // An empty stream is an empty archive.
    let sb = Sandbox::new();
    sb.apply_bytes(&[], &strict()).unwrap();
    assert!(sb.names().is_empty());
    // A header-only last entry, no end blocks.
    let sb = Sandbox::new();
    sb.apply_bytes(&tar_body(&[file("f", b"x"), dir("e")]), &strict())
        .unwrap();
    assert_eq!(sb.names(), ["e", "f"]);

    // Ends inside the last header, or inside the last entry's data.
    let last_header = body.len() - 1024 - 512;
    for (what, cut) in [
        ("inside the last header", last_header + 1),
        ("inside the last header", last_header + 511),
        ("inside the last data", last_header + 512 + 1),
        ("inside the last data", last_data_end - 1),
    ] {
        for options in [strict(), lenient()] {
            let r = Sandbox::new().apply_bytes(&body[..cut], &options);
            assert!(
                matches!(&r, Err(Error::Corrupt { format: "tar", source })
                    if source.kind() == std::io::ErrorKind::UnexpectedEof),
                "{what} ({cut}): {r:?}"
            );
        }
    }
}

#[test]
fn c_t07_duplicate_entries_last_wins() {
    let sb = Sandbox::new();
    sb.apply(
        &[
            file("f", b"first"),
            file("f", b"second"),
            file("d", b"file"),
            dir("d"),
            file("d/x", b"x"),
            dir("e"),
            file("e/x", b"x"),
            file("e", b"file now"),
            dir("g").mode(0o700),
            dir("g").mode(0o750),
        ],
        &strict(),
    )
    .unwrap();
    assert_eq!(sb.read("f"), b"second");
    assert_eq!(sb.read("d/x"), b"x");
    assert_eq!(sb.read("e"), b"file now");
    assert_eq!(fs::metadata(sb.p("g")).unwrap().mode() & 0o7777, 0o750);
}

#[test]
fn c_t08_bad_checksums_and_numbers() {
    let mut e = file("f", b"x");
    e.bad_checksum = true;
    corrupt(Sandbox::new().apply(&[e], &lenient()));
    malformed(Sandbox::new().apply(&[file("f", b"x").patch(100, b"0006x4\0\0")], &lenient()));
    malformed(Sandbox::new().apply(&[file("f", b"x").patch(136, b"1234567890x\0")], &lenient()));
    // Negative base-256 size.
    let mut neg = [0xffu8; 12];
    neg[11] = 0xf0;
    malformed(Sandbox::new().apply(&[file("f", b"x").patch(124, &neg)], &lenient()));
    // Not a tar at all.
    corrupt(Sandbox::new().apply_bytes(&[b'x'; 2048], &lenient()));
}

#[test]
fn c_t09_long_link_names_are_resolved_like_short_ones() {
    let climb = format!("/{}etc/passwd", "../".repeat(40));
    let mut entries = etc_passwd();
    entries.push(gnu_long(b'K', climb.as_bytes()));
    entries.push(hardlink("l", "ignored"));
    let sb = Sandbox::new();
    assert_eq!(
        reason(sb.apply(&entries, &strict())),
        InvalidEntry::EscapesRoot
    );
    let sb = Sandbox::new();
    sb.apply(&entries, &lenient()).unwrap();
    assert!(sb.same_file("l", "etc/passwd"));
    // Symlink targets are data: kept as they are.
    let target = format!("{}/{}", "..".repeat(60), "etc/shadow");
    let sb = Sandbox::new();
    sb.apply(
        &[gnu_long(b'K', target.as_bytes()), symlink("s", "ignored")],
        &strict(),
    )
    .unwrap();
    assert_eq!(
        fs::read_link(sb.p("s")).unwrap().as_os_str().as_bytes(),
        target.as_bytes()
    );
    // Long names via GNU `L` and PAX `path`.
    let long = format!("{}/f", "d".repeat(150));
    let sb = Sandbox::new();
    sb.apply(
        &[gnu_long(b'L', long.as_bytes()), file("short", b"L")],
        &strict(),
    )
    .unwrap();
    assert_eq!(sb.read(&long), b"L");
}

#[test]
fn c_t_parser_differentials_are_refused_in_strict_mode() {
    // Both a GNU long name and a PAX path: Go takes PAX, tar-rs takes GNU.
    let entries = [
        gnu_long(b'L', b"gnu-name"),
        file("short", b"x").pax("path", b"pax-name"),
    ];
    malformed(Sandbox::new().apply(&entries, &strict()));
    let sb = Sandbox::new();
    sb.apply(&entries, &lenient()).unwrap();
    assert_eq!(sb.names(), ["pax-name"]);
    // Two PAX headers for one entry.
    let mut bytes = tar_body(&[raw_pax(&pax_record(b"path", b"one"))]);
    bytes.extend(tar_of(&[file("f", b"x").pax("path", b"two")]));
    malformed(Sandbox::new().apply_bytes(&bytes, &strict()));
    // A header-only entry with a size: Go reads no data, others skip it.
    let smuggled = tar_body(&[file("smuggled", b"s")]);
    let d = dir("d").claimed_size(smuggled.len() as u64);
    let mut bytes = tar_body(&[d]);
    bytes.extend_from_slice(&smuggled);
    bytes.extend_from_slice(&[0u8; 1024]);
    malformed(Sandbox::new().apply_bytes(&bytes, &strict()));
    let sb = Sandbox::new();
    sb.apply_bytes(&bytes, &lenient()).unwrap();
    assert_eq!(sb.names(), ["d", "smuggled"]);
    // NUL in a PAX path.
    let sb = Sandbox::new();
    malformed(sb.apply(&[file("f", b"x").pax("path", b"a\0b")], &strict()));
    // NUL inside a GNU long name.
    let sb = Sandbox::new();
    let r = sb.apply(&[gnu_long(b'L', b"a\0b"), file("f", b"x")], &strict());
    assert_eq!(reason(r), InvalidEntry::NulInName);
}

#[test]
fn old_style_names_and_formats() {
    // V7 header (no magic), regular file typeflag NUL, and NUL typeflag + trailing slash.
    let v7 = file("v7file", b"v7").patch(257, &[0u8; 8]).patch(156, &[0]);
    let v7dir = ent("v7dir/", 0).patch(257, &[0u8; 8]).patch(156, &[0]);
    // ustar prefix field.
    let prefixed = file("name", b"p").patch(345, b"some/prefix");
    let sb = Sandbox::new();
    sb.apply(&[v7, v7dir, prefixed], &strict()).unwrap();
    assert_eq!(sb.read("v7file"), b"v7");
    assert!(fs::metadata(sb.p("v7dir")).unwrap().is_dir());
    assert_eq!(sb.read("some/prefix/name"), b"p");
}

// ---------------------------------------------------------------------------------------------
// A.9: changeset semantics
// ---------------------------------------------------------------------------------------------

#[test]
fn multi_layer_whiteouts() {
    let sb = Sandbox::new();
    sb.apply(
        &[
            dir("a"),
            file("a/x", b"x"),
            file("a/y", b"y"),
            dir("b"),
            dir("b/sub"),
            file("b/sub/z", b"z"),
            file("c", b"old"),
            symlink("s", "a"),
        ],
        &strict(),
    )
    .unwrap();
    let report = sb
        .apply(
            &[
                whiteout("a/.wh.x"),
                whiteout(".wh.b"),
                file("c", b"new"),
                whiteout(".wh.s"),
            ],
            &strict(),
        )
        .unwrap();
    assert_eq!(report.whiteouts, 3);
    assert_eq!(sb.names(), ["a", "a/y", "c"]);
    assert_eq!(sb.read("c"), b"new");
    // A later layer can bring a whited-out path back.
    sb.apply(&[dir("b"), file("b/back", b"1")], &strict())
        .unwrap();
    assert_eq!(sb.names(), ["a", "a/y", "b", "b/back", "c"]);
}

#[test]
fn opaque_whiteouts_are_order_independent() {
    let lower = [
        dir("a"),
        file("a/old", b"o"),
        dir("a/sub"),
        file("a/sub/deep", b"d"),
        file("keep", b"k"),
    ];
    let first = [
        dir("a"),
        whiteout("a/.wh..wh..opq"),
        file("a/new", b"n"),
        dir("a/sub"),
        file("a/sub/n2", b"2"),
    ];
    let last = [
        dir("a"),
        file("a/new", b"n"),
        dir("a/sub"),
        file("a/sub/n2", b"2"),
        whiteout("a/.wh..wh..opq"),
    ];
    let middle = [
        dir("a"),
        file("a/new", b"n"),
        whiteout("a/.wh..wh..opq"),
        dir("a/sub"),
        file("a/sub/n2", b"2"),
    ];
    for upper in [&first[..], &last[..], &middle[..]] {
        let sb = Sandbox::new();
        sb.apply(&lower, &strict()).unwrap();
        sb.apply(upper, &strict()).unwrap();
        assert_eq!(sb.names(), ["a", "a/new", "a/sub", "a/sub/n2", "keep"]);
    }
}

#[test]
fn same_layer_whiteouts_spare_same_layer_paths() {
    let sb = Sandbox::new();
    sb.apply(
        &[dir("d"), file("d/lower", b"l"), file("f", b"lower f")],
        &strict(),
    )
    .unwrap();
    sb.apply(
        &[
            file("f", b"upper f"),
            whiteout(".wh.f"),
            dir("d"),
            file("d/upper", b"u"),
            whiteout(".wh.d"),
            whiteout(".wh.g"),
            file("g", b"g"),
        ],
        &strict(),
    )
    .unwrap();
    // f and d/upper are this layer's; d's lower content went; g came after its whiteout.
    assert_eq!(sb.names(), ["d", "d/upper", "f", "g"]);
    assert_eq!(sb.read("f"), b"upper f");
}

#[test]
fn unlink_and_recreate_never_writes_through_a_hardlink() {
    // A file in the root hardlinked to a canary outside: rewriting it must not touch the
    // canary (no O_TRUNC of an existing inode).
    let tmp = scratch();
    let root = tmp.path().join("root");
    fs::create_dir(&root).unwrap();
    let canary = tmp.path().join("canary");
    fs::write(&canary, b"canary").unwrap();
    fs::set_permissions(&canary, fs::Permissions::from_mode(0o400)).unwrap();
    fs::hard_link(&canary, root.join("x")).unwrap();
    apply_layer(
        &root,
        &tar_of(&[file("x", b"replaced").mode(0o777)])[..],
        &strict(),
    )
    .unwrap();
    assert_eq!(fs::read(&canary).unwrap(), b"canary");
    let m = fs::metadata(&canary).unwrap();
    assert_eq!((m.mode() & 0o7777, m.nlink()), (0o400, 1));
    assert_eq!(fs::read(root.join("x")).unwrap(), b"replaced");
}

#[test]
fn directories_merge_and_take_the_entry_attributes_last() {
    let sb = Sandbox::new();
    sb.apply(
        &[dir("d").mode(0o755).mtime(1000), file("d/f", b"f")],
        &strict(),
    )
    .unwrap();
    assert_eq!(fs::metadata(sb.p("d")).unwrap().mtime(), 1000);
    let many: Vec<Ent> = std::iter::once(
        dir("d")
            .mode(0o700)
            .mtime(2000)
            .pax("SCHILY.xattr.user.d", b"v"),
    )
    .chain((0..50).map(|i| file(&format!("d/g{i}"), b"g")))
    .chain(std::iter::once(dir("d/sub").mode(0o555).mtime(3000)))
    .chain(std::iter::once(file("d/sub/inner", b"i")))
    .collect();
    sb.apply(&many, &strict()).unwrap();
    let m = fs::metadata(sb.p("d")).unwrap();
    assert_eq!((m.mode() & 0o7777, m.mtime()), (0o700, 2000));
    let m = fs::metadata(sb.p("d/sub")).unwrap();
    assert_eq!((m.mode() & 0o7777, m.mtime()), (0o555, 3000));
    assert_eq!(sb.read("d/f"), b"f");
    assert_eq!(xattr(&sb.p("d"), "user.d").as_deref(), Some(&b"v"[..]));
    // Implicit parents are created (0755 before the umask).
    let sb = Sandbox::new();
    sb.apply(&[file("x/y/z", b"z")], &strict()).unwrap();
    assert!(fs::metadata(sb.p("x/y")).unwrap().is_dir());
    // A file where a directory is needed, without a directory entry: refused.
    let sb = Sandbox::new();
    assert!(matches!(
        sb.apply(&[file("x", b"x"), file("x/y", b"y")], &strict()),
        Err(Error::Io { .. })
    ));
}

#[test]
fn overlay_mode_keeps_whiteouts_for_overlayfs() {
    if !is_root() {
        return;
    }
    for (userxattr, name) in [
        (false, "trusted.overlay.opaque"),
        (true, "user.overlay.opaque"),
    ] {
        let sb = Sandbox::new();
        let options = strict()
            .with_mode(ApplyMode::Overlay)
            .with_overlay_userxattr(userxattr);
        let report = sb
            .apply(
                &[
                    whiteout(".wh.gone"),
                    dir("d"),
                    file("d/new", b"n"),
                    whiteout("d/.wh..wh..opq"),
                    whiteout("e/.wh.f"),
                    whiteout(".wh.r"),
                    dir("r"),
                    file("r/x", b"x"),
                    dir("s"),
                    whiteout(".wh.s"),
                    file("t", b"t"),
                    whiteout(".wh.t"),
                    whiteout(".wh..wh..opq"),
                    whiteout(".wh.m"),
                    file("m/n/x", b"x"),
                ],
                &options,
            )
            .unwrap();
        assert_eq!(report.whiteouts, 8);
        for wh in ["gone", "e/f"] {
            let m = fs::symlink_metadata(sb.p(wh)).unwrap();
            assert!(m.file_type().is_char_device(), "{wh}");
            assert_eq!(rdev(&sb.p(wh)), (0, 0));
        }
        for opaque in ["d", "r", "s", "m"] {
            assert_eq!(
                xattr(&sb.p(opaque), name).as_deref(),
                Some(&b"y"[..]),
                "{opaque}"
            );
        }
        assert_eq!(xattr(&sb.root, name).as_deref(), Some(&b"y"[..]));
        assert_eq!(sb.read("t"), b"t");
        assert_eq!(xattr(&sb.p("m/n"), name), None);
        assert_eq!(
            sb.names(),
            [
                "d", "d/new", "e", "e/f", "gone", "m", "m/n", "m/n/x", "r", "r/x", "s", "t"
            ]
        );
    }
}

#[test]
fn diff_id_is_the_digest_of_the_whole_stream() {
    let mut bytes = tar_of(&[file("a", b"a"), dir("d")]);
    bytes.extend_from_slice(&[0u8; 10240 - 2048]);
    bytes.extend_from_slice(b"trailing garbage after the archive");
    let expected = Digest::sha256(&bytes);
    let sb = Sandbox::new();
    let report = sb.apply_bytes(&bytes, &strict()).unwrap();
    assert_eq!(report.diff_id, expected);
    assert_eq!(report.tar_size, bytes.len() as u64);
    assert_eq!(
        (
            report.entries,
            report.files,
            report.directories,
            report.content_bytes
        ),
        (2, 1, 1, 1)
    );

    let sb = Sandbox::new();
    sb.apply_bytes(
        &bytes,
        &strict().with_expected_diff_id(Some(expected.clone())),
    )
    .unwrap();
    let sha512 = Digest::sha512(&bytes);
    let report = sb
        .apply_bytes(
            &bytes,
            &strict().with_expected_diff_id(Some(sha512.clone())),
        )
        .unwrap();
    assert_eq!(report.diff_id, sha512);

    // An algorithm that cannot be computed: refused before anything is applied.
    let blake3 = Digest::parse(&format!("blake3:{}", "ab".repeat(32))).unwrap();
    let sb = Sandbox::new();
    let r = sb.apply_bytes(&bytes, &strict().with_expected_diff_id(Some(blake3)));
    assert!(
        matches!(
            r,
            Err(Error::Io {
                operation: "hash",
                ..
            })
        ),
        "{r:?}"
    );
    assert!(sb.names().is_empty());

    let wrong = Digest::sha256(b"something else");
    let sb = Sandbox::new();
    match sb.apply_bytes(&bytes, &strict().with_expected_diff_id(Some(wrong.clone()))) {
        Err(Error::DiffIdMismatch {
            expected: e,
            actual,
        }) => {
            assert_eq!((e, actual), (wrong, expected));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn reports_count_what_was_done() {
    let sb = Sandbox::new();
    sb.apply(&[file("gone", b"")], &strict()).unwrap();
    let report = sb
        .apply(
            &[
                dir("d"),
                file("d/f", b"12345"),
                symlink("l", "d/f"),
                hardlink("h", "d/f"),
                device("p", b'6', 0, 0),
                whiteout(".wh.gone"),
                file(".wh..wh.aufs", b""),
            ],
            &strict(),
        )
        .unwrap();
    assert_eq!(report.entries, 7);
    assert_eq!(
        (
            report.directories,
            report.files,
            report.symlinks,
            report.hardlinks
        ),
        (1, 1, 1, 1)
    );
    assert_eq!(
        (
            report.special_files,
            report.whiteouts,
            report.entries_skipped
        ),
        (1, 1, 1)
    );
    assert_eq!(report.content_bytes, 5);
}

#[test]
fn the_root_must_exist_and_may_be_named_through_a_symlink() {
    let tmp = scratch();
    let r = apply_layer(&tmp.path().join("missing"), &tar_of(&[])[..], &strict());
    assert!(
        matches!(
            r,
            Err(Error::Io {
                operation: "open",
                ..
            })
        ),
        "{r:?}"
    );
    fs::create_dir(tmp.path().join("real")).unwrap();
    std::os::unix::fs::symlink("real", tmp.path().join("alias")).unwrap();
    apply_layer(
        &tmp.path().join("alias"),
        &tar_of(&[file("f", b"x")])[..],
        &strict(),
    )
    .unwrap();
    assert_eq!(fs::read(tmp.path().join("real/f")).unwrap(), b"x");
}

/// The applier and GNU tar agree on a layer GNU tar wrote (an independent producer and an
/// independent extractor).
#[test]
fn agrees_with_gnu_tar() {
    if ocikit_testkit::require_tool("tar").is_none() {
        return;
    }
    let tmp = scratch();
    let src = tmp.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::create_dir_all(src.join("etc/ssl")).unwrap();
    fs::write(src.join("etc/passwd"), b"root:x:0:0\n").unwrap();
    fs::write(src.join("etc/ssl/big"), vec![7u8; 300_000]).unwrap();
    fs::set_permissions(src.join("etc/ssl"), fs::Permissions::from_mode(0o750)).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", src.join("abs")).unwrap();
    std::os::unix::fs::symlink("etc/ssl/big", src.join("rel")).unwrap();
    fs::hard_link(src.join("etc/passwd"), src.join("hl")).unwrap();
    mkfifo(&src.join("fifo"), 0o640);
    let long = src.join(format!("{}/{}", "l".repeat(120), "n".repeat(130)));
    fs::create_dir_all(long.parent().unwrap()).unwrap();
    fs::write(&long, b"long").unwrap();
    let layer = tmp.path().join("layer.tar");
    let status = std::process::Command::new("tar")
        .args(["--format=pax", "--numeric-owner", "-cf"])
        .arg(&layer)
        .arg("-C")
        .arg(&src)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    let bytes = fs::read(&layer).unwrap();

    let ours = tmp.path().join("ours");
    let gnu = tmp.path().join("gnu");
    fs::create_dir(&ours).unwrap();
    fs::create_dir(&gnu).unwrap();
    apply_layer(&ours, &bytes[..], &strict()).unwrap();
    let status = std::process::Command::new("tar")
        .args(["--numeric-owner", "-xpf"])
        .arg(&layer)
        .arg("-C")
        .arg(&gnu)
        .status()
        .unwrap();
    assert!(status.success());
    let view = |dir: &Path| -> BTreeMap<PathBuf, Node> {
        snapshot_tree(dir, None)
            .into_iter()
            .map(|(p, mut n)| {
                // Link counts differ only for the root; atime is not compared.
                if p == dir {
                    n.nlink = 0;
                }
                (p.strip_prefix(dir).unwrap().to_path_buf(), n)
            })
            .collect()
    };
    assert_eq!(view(&ours), view(&gnu));
}

/// The committed fuzz seeds (`fuzz/seeds/layer_apply`) and crash inputs
/// (`fuzz/artifacts/layer_apply`), replayed through the fuzz oracle.
#[cfg(feature = "__fuzz")]
#[test]
fn fuzz_seeds_replay() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut seeds = 0;
    for dir in ["seeds/layer_apply", "artifacts/layer_apply"] {
        let Ok(entries) = fs::read_dir(fuzz.join(dir)) else {
            continue;
        };
        for entry in entries {
            let data = fs::read(entry.unwrap().path()).unwrap();
            ocikit_codec::fuzz::layer_apply(&data);
            seeds += 1;
        }
    }
    assert!(seeds >= 20, "{seeds} seeds");
}

/// Found by the fuzzer's model: opaque markers made `a` known to hold nothing lower, and a
/// whiteout of `a` itself (a lower directory) was then skipped.
#[test]
fn whiteout_of_a_directory_emptied_by_an_opaque_marker() {
    let sb = Sandbox::with_lower(|root| {
        fs::create_dir_all(root.join("a/a")).unwrap();
        fs::write(root.join("a/a/d"), b"d").unwrap();
        fs::write(root.join("keep"), b"k").unwrap();
    });
    sb.apply(
        &[
            whiteout("a/a/.wh..wh..opq"),
            whiteout("a/.wh..wh..opq"),
            whiteout(".wh.a"),
        ],
        &strict(),
    )
    .unwrap();
    assert_eq!(sb.names(), ["keep"]);
}

/// Whiteouts below directories this layer made, or already emptied, have nothing to do;
/// but once a symlink takes such a directory's name, whiteouts through it reach what it
/// points to.
#[test]
fn whiteouts_after_a_directory_became_a_symlink() {
    let lower = |root: &Path| {
        fs::create_dir(root.join("lower")).unwrap();
        fs::write(root.join("lower/x"), b"x").unwrap();
        fs::write(root.join("lower/y"), b"y").unwrap();
    };
    let sb = Sandbox::with_lower(lower);
    sb.apply(
        &[
            dir("d"),
            dir("d/sub"),
            whiteout("d/.wh..wh..opq"),
            symlink("d", "lower"),
            whiteout("d/.wh.x"),
            whiteout("d/.wh..wh..opq"),
        ],
        &strict(),
    )
    .unwrap();
    // `d/.wh.x` went through the symlink (as any path does), then the opaque marker
    // emptied `lower` of its lower content.
    assert_eq!(sb.names(), ["d", "lower"]);
}

/// Opaque markers at every level of a deep directory chain, in either order: each level is
/// emptied of lower content once, this layer's content stays.
#[test]
fn opaque_markers_at_every_level_of_a_deep_chain() {
    const DEPTH: usize = 120;
    let chain = |i: usize| vec!["c"; i + 1].join("/");
    for deepest_first in [false, true] {
        let sb = Sandbox::with_lower(|root| {
            for i in 0..DEPTH {
                let d = root.join(chain(i));
                fs::create_dir(&d).unwrap();
                fs::write(d.join("lower"), b"l").unwrap();
            }
        });
        let mut entries: Vec<Ent> = (0..DEPTH)
            .flat_map(|i| [dir(&chain(i)), file(&format!("{}/upper", chain(i)), b"u")])
            .collect();
        let mut markers: Vec<Ent> = (0..DEPTH)
            .map(|i| whiteout(&format!("{}/.wh..wh..opq", chain(i))))
            .collect();
        if deepest_first {
            markers.reverse();
        }
        entries.extend(markers);
        let report = sb.apply(&entries, &strict()).unwrap();
        assert_eq!(report.whiteouts, DEPTH as u64);
        let names = sb.names();
        assert!(names.iter().all(|n| !n.ends_with("lower")), "{names:?}");
        assert_eq!(names.iter().filter(|n| n.ends_with("upper")).count(), DEPTH);
    }
}

#[test]
fn names_are_bytes() {
    use std::ffi::OsStr;
    let sb = Sandbox::new();
    let latin1 = Ent {
        name: b"caf\xe9".to_vec(),
        ..file("x", b"latin-1")
    };
    let long = Ent {
        name: [b"\xfe".repeat(120), b"/\xff".to_vec()].concat(),
        ..file("x", b"long")
    };
    sb.apply(&[latin1, long], &strict()).unwrap();
    assert_eq!(
        fs::read(sb.root.join(OsStr::from_bytes(b"caf\xe9"))).unwrap(),
        b"latin-1"
    );
    let long_path = sb.root.join(OsStr::from_bytes(
        &[b"\xfe".repeat(120), b"/\xff".to_vec()].concat(),
    ));
    assert_eq!(fs::read(long_path).unwrap(), b"long");
}

/// A layer big enough for the diffID to be hashed on its own thread.
#[test]
fn diff_id_of_a_large_layer() {
    let big: Vec<u8> = (0..20_000_000u32)
        .map(|i| (i * 31 + i / 977) as u8)
        .collect();
    let mut bytes = tar_of(&[file("big", &big), file("small", b"s")]);
    bytes.extend_from_slice(b"trailing");
    let sb = Sandbox::new();
    let report = sb
        .apply_bytes(
            &bytes,
            &strict().with_expected_diff_id(Some(Digest::sha256(&bytes))),
        )
        .unwrap();
    assert_eq!(report.diff_id, Digest::sha256(&bytes));
    assert_eq!(report.tar_size, bytes.len() as u64);
    assert_eq!(sb.read("big"), big);
    let wrong = sb.apply_bytes(
        &bytes,
        &strict().with_expected_diff_id(Some(Digest::sha256(b"x"))),
    );
    assert!(matches!(wrong, Err(Error::DiffIdMismatch { .. })));
}
