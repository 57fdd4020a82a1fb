//! `layer_apply`: applying any layers never touches anything outside the root.
//!
//! The input is read one of two ways:
//! - a tar stream (the first block has the `ustar` magic: the seeds, and their mutations),
//!   applied as one layer with options taken from its length;
//! - otherwise a small program: up to three layers of up to twelve entries each (files,
//!   directories, symlinks, hardlinks, whiteouts, opaque whiteouts, FIFOs, devices, odd
//!   typeflags), with names from a small alphabet of components (`..`, `.`, empty, `.wh.`
//!   forms) and link targets aimed at the root, above it, at the canaries' absolute path and
//!   at a host path, rendered to tars with the `tar` crate's header type.
//!
//! Each run applies into a fresh `<base>/g/p/root` (`<base>` on tmpfs when `/dev/shm`
//! exists), so that climbing out lands in directories the oracle owns: canaries in the
//! root's parent `p` (a file, a sibling directory with a file), its grandparent `g` (a file,
//! an "aunt" directory), `<base>` itself, and `<base>/outside` (a mode 0400 file, a
//! directory, a FIFO, a hardlink, a symlink), which absolute link targets aim at. Oracles,
//! after every layer: everything under `<base>` but the root is unchanged (bytes, mode,
//! owner, link count, mtime, existence, and no new entries anywhere); in the directories
//! above `<base>` (up to `/`) and in the system temporary directory, no entry appeared or
//! vanished whose name the layer's bytes hold (other processes share those directories, but
//! an escape can only make names that the layer carries); the host probe path does not
//! exist; no name in the root starts with `.wh.`; a successful apply reports the SHA-256 of
//! the bytes as the diffID; errors are of the kinds a hostile layer may cause. When the
//! program has no links and no odd typeflags (and the oracle runs as root), the root must
//! also equal an in-memory model of the spec's semantics after every layer (names, types,
//! contents). The unit tests run the oracle over deliberately escaping appliers and check
//! that each escape is caught.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use ocikit_digest::Digest;

use crate::Error;
use crate::apply::{ApplyMode, ApplyOptions, ApplyReport, DevicePolicy, XattrPolicy, apply_layer};

/// A host path that no run may create.
const PROBE: &str = "/tmp/ocikit-fuzz-apply-probe";
/// The name of every run's base directory starts with this (runs on other threads and in
/// other processes make and remove theirs beside ours).
const RUN_PREFIX: &str = "ocikit-fuzz-apply-";

static RUN: AtomicU64 = AtomicU64::new(0);
/// Layers checked against the model (for the oracle's own test).
static MODELLED: AtomicU64 = AtomicU64::new(0);

const COMPONENTS: &[&str] = &[
    "a",
    "b",
    "c",
    "..",
    ".",
    "",
    ".wh.a",
    ".wh..wh..opq",
    ".wh.",
    ".wh..",
    ".wh..wh.plnk",
    "out",
    "d",
    "a",
    "b",
    "..",
];

struct Input<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    fn done(&self) -> bool {
        self.pos >= self.data.len()
    }

    fn path(&mut self) -> String {
        let b = self.byte();
        let mut path = String::new();
        if b & 0x80 != 0 {
            path.push('/');
        }
        let parts = 1 + usize::from(b & 3);
        for i in 0..parts {
            if i > 0 {
                path.push('/');
            }
            path.push_str(COMPONENTS[usize::from(self.byte()) % COMPONENTS.len()]);
        }
        if b & 0x40 != 0 {
            path.push('/');
        }
        path
    }

    fn target(&mut self, outside: &Path) -> String {
        match self.byte() % 16 {
            0 => "/".into(),
            1 => "..".into(),
            2 => "../..".into(),
            3 => "../../../outside/passwd".into(),
            4 => format!("{}/passwd", outside.display()),
            5 => outside.display().to_string(),
            6 => PROBE.into(),
            7 => "a/../../..".into(),
            8 => ".".into(),
            9 => String::new(),
            10 => "../sibling/file".into(),
            11 => "../../aunt".into(),
            12 => "../../../..".into(),
            _ => self.path(),
        }
    }
}

struct Entry {
    name: Vec<u8>,
    typeflag: u8,
    mode: u32,
    data: Vec<u8>,
    link: Vec<u8>,
    dev: (u32, u32),
    uid: u64,
}

fn render(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        let mut h = tar::Header::new_ustar();
        h.set_mode(e.mode);
        h.set_uid(e.uid);
        h.set_gid(e.uid);
        h.set_mtime(1_600_000_000);
        h.set_size(e.data.len() as u64);
        h.set_entry_type(tar::EntryType::new(e.typeflag));
        h.set_device_major(e.dev.0).unwrap();
        h.set_device_minor(e.dev.1).unwrap();
        {
            let u = h.as_ustar_mut().unwrap();
            let n = e.name.len().min(100);
            u.name[..n].copy_from_slice(&e.name[..n]);
            let l = e.link.len().min(100);
            u.linkname[..l].copy_from_slice(&e.link[..l]);
        }
        // `set_entry_type` maps NUL to `'0'`; put odd typeflags back as they are.
        h.as_mut_bytes()[156] = e.typeflag;
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(&e.data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

/// A program's layers as tars, and as entries when the model can follow them (no links,
/// no extension or odd typeflags).
fn program(input: &mut Input<'_>, outside: &Path) -> (Vec<Vec<u8>>, Option<Vec<Vec<Entry>>>) {
    let layers = 1 + usize::from(input.byte() % 3);
    let mut out = Vec::new();
    let mut model = Some(Vec::new());
    for _ in 0..layers {
        let count = 1 + usize::from(input.byte() % 12);
        let mut entries = Vec::new();
        for _ in 0..count {
            if input.done() {
                break;
            }
            let kind = input.byte() % 12;
            let mut e = Entry {
                name: input.path().into_bytes(),
                typeflag: b'0',
                mode: (u32::from(input.byte()) * 0o41) & 0o7777,
                data: Vec::new(),
                link: Vec::new(),
                dev: (0, 0),
                uid: u64::from(input.byte() % 3) * 1000,
            };
            match kind {
                0 => {}
                1 => e.typeflag = b'5',
                2 => {
                    e.typeflag = b'2';
                    e.link = input.target(outside).into_bytes();
                }
                3 => {
                    e.typeflag = b'1';
                    e.link = input.target(outside).into_bytes();
                }
                4 => {
                    let mut name = input.path().into_bytes();
                    let at = name.iter().rposition(|&b| b == b'/').map_or(0, |i| i + 1);
                    name.splice(at..at, b".wh.".iter().copied());
                    e.name = name;
                }
                5 => {
                    let mut name = input.path().into_bytes();
                    name.extend_from_slice(b"/.wh..wh..opq");
                    e.name = name;
                }
                6 => e.typeflag = b'6',
                7 => {
                    e.typeflag = if input.byte() & 1 == 0 { b'3' } else { b'4' };
                    e.dev = (u32::from(input.byte() % 3), u32::from(input.byte() % 3));
                }
                8 => {
                    let len = usize::from(input.byte());
                    e.data = vec![b'x'; len];
                }
                9 => e.typeflag = [b'S', b'V', b'g', b'x', 0, b'7'][usize::from(input.byte()) % 6],
                _ => {
                    e.data = b"content".to_vec();
                }
            }
            if !matches!(e.typeflag, b'0' | b'5' | b'6' | b'3' | b'4') {
                model = None;
            }
            entries.push(e);
        }
        out.push(render(&entries));
        if let Some(model) = model.as_mut() {
            model.push(entries);
        }
    }
    (out, model)
}

/// What the oracle compares: everything about a path but its atime and ctime.
#[derive(Debug, PartialEq, Eq)]
struct Node {
    mode: u32,
    uid: u32,
    gid: u32,
    nlink: u64,
    mtime: (i64, i64),
    size: u64,
    content: Option<Vec<u8>>,
}

fn snapshot(base: &Path, skip: &Path) -> BTreeMap<PathBuf, Node> {
    let mut out = BTreeMap::new();
    let mut stack = vec![base.to_path_buf()];
    while let Some(path) = stack.pop() {
        let m = fs::symlink_metadata(&path).unwrap();
        let content = if m.file_type().is_file() {
            Some(fs::read(&path).unwrap())
        } else if m.file_type().is_symlink() {
            Some(
                fs::read_link(&path)
                    .unwrap()
                    .into_os_string()
                    .into_encoded_bytes(),
            )
        } else {
            None
        };
        if m.is_dir() {
            for child in fs::read_dir(&path).unwrap() {
                let child = child.unwrap().path();
                if child != skip {
                    stack.push(child);
                }
            }
        }
        out.insert(
            path,
            Node {
                mode: m.mode(),
                uid: m.uid(),
                gid: m.gid(),
                nlink: m.nlink(),
                mtime: (m.mtime(), m.mtime_nsec()),
                size: m.size(),
                content,
            },
        );
    }
    out
}

/// Names under `root` starting with `.wh.`.
fn whiteout_names(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for child in entries {
            let child = child.unwrap();
            if child.file_name().as_encoded_bytes().starts_with(b".wh.") {
                found.push(child.path());
            }
            if child.file_type().unwrap().is_dir() {
                stack.push(child.path());
            }
        }
    }
    found
}

fn remove_tree(base: &Path) {
    if fs::remove_dir_all(base).is_ok() {
        return;
    }
    // Directories left without write or search permission (when not root).
    let mut stack = vec![base.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let _ = fs::set_permissions(&dir, fs::Permissions::from_mode(0o700));
        if let Ok(entries) = fs::read_dir(&dir) {
            for child in entries.flatten() {
                if child.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(child.path());
                }
            }
        }
    }
    let _ = fs::remove_dir_all(base);
}

/// One run's directories: the root, the canaries around it, and the listings of the
/// shared directories above them. Removed when dropped (also when an oracle fails).
struct Sandbox {
    base: PathBuf,
    root: PathBuf,
    outside: PathBuf,
    /// Directories above `base` and the system temporary directory, with their listings.
    host: Vec<(PathBuf, BTreeSet<Vec<u8>>)>,
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        remove_tree(&self.base);
    }
}

fn listing(dir: &Path) -> BTreeSet<Vec<u8>> {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().into_encoded_bytes())
                .collect()
        })
        .unwrap_or_default()
}

fn sandbox() -> Sandbox {
    let tmp = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let base = tmp.join(format!(
        "{RUN_PREFIX}{}-{}",
        std::process::id(),
        RUN.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = fs::remove_dir_all(&base);
    let parent = base.join("g/p");
    let root = parent.join("root");
    let outside = base.join("outside");
    fs::create_dir_all(&root).unwrap();
    fs::create_dir_all(parent.join("sibling/dir")).unwrap();
    fs::create_dir_all(base.join("g/aunt")).unwrap();
    fs::create_dir_all(outside.join("dir")).unwrap();
    fs::write(parent.join("canary"), b"parent canary\n").unwrap();
    fs::write(parent.join("sibling/file"), b"sibling canary\n").unwrap();
    fs::write(base.join("g/canary"), b"grandparent canary\n").unwrap();
    fs::write(base.join("g/aunt/file"), b"aunt canary\n").unwrap();
    fs::write(base.join("canary"), b"base canary\n").unwrap();
    fs::write(outside.join("passwd"), b"canary\n").unwrap();
    fs::set_permissions(outside.join("passwd"), fs::Permissions::from_mode(0o400)).unwrap();
    fs::write(outside.join("dir/file"), b"canary file\n").unwrap();
    fs::hard_link(outside.join("dir/file"), outside.join("hard")).unwrap();
    std::os::unix::fs::symlink("passwd", outside.join("link")).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        outside.join("fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    let mut host: Vec<PathBuf> = base.ancestors().skip(1).map(Path::to_path_buf).collect();
    for dir in [std::env::temp_dir(), PathBuf::from("/tmp")] {
        if !host.contains(&dir) {
            host.push(dir);
        }
    }
    let host = host
        .into_iter()
        .map(|dir| {
            let names = listing(&dir);
            (dir, names)
        })
        .collect();
    Sandbox {
        base,
        root,
        outside,
        host,
    }
}

/// Whether `needle` occurs in `haystack`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

impl Sandbox {
    /// Panics when anything outside the root changed: under `base` (compared with `before`
    /// in full), or in a shared directory above it (an entry appeared or vanished whose name
    /// occurs in `layer`).
    fn check_outside(&self, before: &BTreeMap<PathBuf, Node>, layer: &[u8]) {
        assert_eq!(
            before,
            &snapshot(&self.base, &self.root),
            "something outside the root changed"
        );
        for (dir, names) in &self.host {
            let now = listing(dir);
            let changed: Vec<String> = now
                .symmetric_difference(names)
                .filter(|name| !name.starts_with(RUN_PREFIX.as_bytes()) && contains(layer, name))
                .map(|name| String::from_utf8_lossy(name).into_owned())
                .collect();
            assert!(
                changed.is_empty(),
                "something outside the root changed: {changed:?} appeared or vanished in {}",
                dir.display()
            );
        }
        assert!(
            fs::symlink_metadata(PROBE).is_err(),
            "something outside the root changed: a host path was created"
        );
        assert!(
            fs::symlink_metadata(&self.root).is_ok_and(|m| m.is_dir()),
            "the root was replaced"
        );
    }
}

fn check_error(err: &Error) {
    match err {
        Error::InvalidEntry { .. }
        | Error::Io { .. }
        | Error::Corrupt { format: "tar", .. }
        | Error::LimitExceeded { .. } => {}
        other => panic!("unexpected error kind: {other:?}"),
    }
}

/// The fuzz entry point.
pub fn layer_apply(data: &[u8]) {
    check(data, &|root, layer, options| {
        apply_layer(root, layer, options)
    });
}

/// An applier under test: the root, the layer's bytes, the options.
type Applier<'a> = &'a dyn Fn(&Path, &[u8], &ApplyOptions) -> crate::Result<ApplyReport>;

/// The oracle over any applier (the real one, or an escaping one in the oracle's tests).
fn check(data: &[u8], apply: Applier<'_>) {
    let sandbox = sandbox();
    let (base, root, outside) = (&sandbox.base, &sandbox.root, &sandbox.outside);
    let before = snapshot(base, root);
    let root_user = rustix::process::geteuid().is_root();

    let raw = data.len() >= 512 && data.get(257..262) == Some(b"ustar".as_slice());
    let (layers, model_layers, selector) = if raw {
        (vec![data.to_vec()], None, data.len())
    } else {
        let mut input = Input { data, pos: 0 };
        let selector = usize::from(input.byte());
        let (layers, model) = program(&mut input, outside);
        (layers, model, selector)
    };
    let overlay = selector & 2 != 0 && root_user;
    let options = ApplyOptions::default()
        .with_strict(selector & 1 == 0)
        .with_mode(if overlay {
            ApplyMode::Overlay
        } else {
            ApplyMode::Apply
        })
        .with_portable_resolver(selector & 4 != 0)
        .with_preserve_owner(Some(selector & 8 != 0 && root_user))
        .with_devices(if selector & 16 != 0 {
            DevicePolicy::Skip
        } else {
            DevicePolicy::CreateOrSkip
        })
        .with_xattrs(XattrPolicy::privileged());

    let devices_made = root_user && selector & 16 == 0;
    // (As root only: without privilege, directories the layer makes unreadable cannot be
    // listed to compare.)
    let mut model = (root_user && !overlay && model_layers.is_some()).then(Model::default);
    let mut seen: Vec<u8> = Vec::new();
    for (i, layer) in layers.iter().enumerate() {
        let result = apply(root, layer.as_slice(), &options);
        seen.extend_from_slice(layer);
        sandbox.check_outside(&before, &seen);
        let whiteouts = whiteout_names(root);
        assert!(
            whiteouts.is_empty(),
            "whiteout names materialised: {whiteouts:?}"
        );
        match result {
            Ok(report) => assert_eq!(report.diff_id, Digest::sha256(layer)),
            Err(err) => {
                check_error(&err);
                break;
            }
        }
        if let (Some(model), Some(entries)) = (model.as_mut(), model_layers.as_ref()) {
            model.apply(&entries[i], selector & 1 == 0, devices_made);
            assert_eq!(
                model.nodes,
                observe(root),
                "the root differs from the model"
            );
            MODELLED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// What the model knows of a path.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Kind {
    Dir,
    File(Vec<u8>),
    Fifo,
    Device,
}

/// `IS layer.md` applied in memory, on lexical paths: unlink and recreate, directories
/// merged, whiteouts hiding only what earlier layers made, opaque whiteouts wherever they
/// are in the layer. Written independently of the applier.
#[derive(Default)]
struct Model {
    nodes: BTreeMap<String, Kind>,
}

/// Cleans a name: `None` when it climbs out in strict mode or is empty.
fn clean(name: &[u8], strict: bool) -> Option<Vec<String>> {
    if name.is_empty() {
        return None;
    }
    let mut parts: Vec<String> = Vec::new();
    for part in String::from_utf8_lossy(name).split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() && strict {
                    return None;
                }
            }
            p => parts.push(p.to_string()),
        }
    }
    Some(parts)
}

impl Model {
    fn below(&self, path: &str) -> Vec<String> {
        let prefix = format!("{path}/");
        self.nodes
            .keys()
            .filter(|k| path.is_empty() || k.starts_with(&prefix))
            .cloned()
            .collect()
    }

    fn remove_tree(&mut self, path: &str) {
        for k in self.below(path) {
            self.nodes.remove(&k);
        }
        self.nodes.remove(path);
    }

    /// Removes what lower layers put at or below `path`, sparing `written` paths and their
    /// ancestors.
    fn remove_lower(&mut self, path: &str, written: &[String]) {
        let prefix = format!("{path}/");
        let kept = written.iter().any(|w| w == path || w.starts_with(&prefix));
        if !kept {
            self.remove_tree(path);
            return;
        }
        if self.nodes.get(path) != Some(&Kind::Dir) {
            return;
        }
        let children: Vec<String> = self
            .below(path)
            .into_iter()
            .filter(|k| !k[prefix.len()..].contains('/'))
            .collect();
        for child in children {
            self.remove_lower(&child, written);
        }
    }

    fn apply(&mut self, entries: &[Entry], strict: bool, devices: bool) {
        let mut written: Vec<String> = Vec::new();
        for e in entries {
            let Some(parts) = clean(&e.name, strict) else {
                continue;
            };
            let wh = parts.iter().position(|p| p.starts_with(".wh."));
            if let Some(i) = wh {
                if i + 1 != parts.len() {
                    continue; // AUFS metadata or below a `.wh.` directory: skipped
                }
                let dir = parts[..i].join("/");
                let last = &parts[i];
                if last == ".wh..wh..opq" {
                    if self.nodes.get(&dir) == Some(&Kind::Dir) || dir.is_empty() {
                        let children: Vec<String> = if dir.is_empty() {
                            self.nodes
                                .keys()
                                .filter(|k| !k.contains('/'))
                                .cloned()
                                .collect()
                        } else {
                            let prefix = format!("{dir}/");
                            self.below(&dir)
                                .into_iter()
                                .filter(|k| !k[prefix.len()..].contains('/'))
                                .collect()
                        };
                        for child in children {
                            self.remove_lower(&child, &written);
                        }
                    }
                } else if !last.starts_with(".wh..wh.") {
                    let target = &last[4..];
                    let path = if dir.is_empty() {
                        target.to_string()
                    } else {
                        format!("{dir}/{target}")
                    };
                    if dir.is_empty() || self.nodes.get(&dir) == Some(&Kind::Dir) {
                        self.remove_lower(&path, &written);
                    }
                }
                continue;
            }
            if parts.is_empty() {
                continue; // the root's own attributes
            }
            let path = parts.join("/");
            let kind = match e.typeflag {
                b'5' => Kind::Dir,
                b'6' => Kind::Fifo,
                b'3' | b'4' if !devices => continue,
                b'3' | b'4' => Kind::Device,
                _ => Kind::File(e.data.clone()),
            };
            for i in 1..parts.len() {
                let p = parts[..i].join("/");
                if !self.nodes.contains_key(&p) {
                    self.nodes.insert(p.clone(), Kind::Dir);
                    written.push(p);
                }
            }
            if !(kind == Kind::Dir && self.nodes.get(&path) == Some(&Kind::Dir)) {
                self.remove_tree(&path);
                self.nodes.insert(path.clone(), kind);
            }
            written.push(path);
        }
    }
}

/// The root as the model sees it.
fn observe(root: &Path) -> BTreeMap<String, Kind> {
    use std::os::unix::fs::FileTypeExt;
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for child in fs::read_dir(&dir).unwrap() {
            let child = child.unwrap().path();
            let rel = child
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let t = fs::symlink_metadata(&child).unwrap().file_type();
            let kind = if t.is_dir() {
                stack.push(child.clone());
                Kind::Dir
            } else if t.is_file() {
                Kind::File(fs::read(&child).unwrap())
            } else if t.is_fifo() {
                Kind::Fifo
            } else {
                Kind::Device
            };
            out.insert(rel, kind);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::Path;

    use super::{Applier, apply_layer, check};

    /// A one-entry ustar layer (read by the oracle as a raw tar) naming `name`.
    fn layer_naming(name: &str) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_ustar();
        header.set_size(2);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        builder
            .append_data(&mut header, name, b"x\n".as_slice())
            .unwrap();
        builder.into_inner().unwrap()
    }

    /// The oracle's failure message over `apply`, or `None` when it passed.
    fn failure(data: &[u8], apply: Applier<'_>) -> Option<String> {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(data, apply)));
        let payload = outcome.err()?;
        Some(
            payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default(),
        )
    }

    fn assert_caught(what: &str, data: &[u8], apply: Applier<'_>) {
        let message = failure(data, apply).unwrap_or_else(|| panic!("{what}: escape not caught"));
        assert!(
            message.contains("outside the root"),
            "{what}: failed for another reason: {message}"
        );
    }

    #[test]
    fn escaping_appliers_are_caught() {
        let name = format!("ocikit-escape-probe-{}", std::process::id());
        let data = layer_naming(&name);
        // What the escapes below write outside the sandbox, removed even when a check fails.
        struct Cleanup(Vec<std::path::PathBuf>);
        impl Drop for Cleanup {
            fn drop(&mut self) {
                for path in &self.0 {
                    let _ = fs::remove_file(path);
                }
            }
        }
        let _cleanup = Cleanup(vec![
            Path::new("/dev/shm").join(&name),
            std::env::temp_dir().join(&name),
            Path::new("/").join(&name),
        ]);
        // The honest applier passes on this layer, so what fails below is the escape.
        assert_eq!(
            failure(&data, &|root, layer, options| apply_layer(
                root, layer, options
            )),
            None
        );

        let honest = |root: &Path, layer: &[u8], options: &super::ApplyOptions| {
            apply_layer(root, layer, options)
        };
        assert_caught(
            "new entry in the grandparent",
            &data,
            &|root, layer, options| {
                fs::write(root.join("../../escaped"), b"x").unwrap();
                honest(root, layer, options)
            },
        );
        assert_caught("new entry in the parent", &data, &|root, layer, options| {
            fs::create_dir(root.join("../escaped")).unwrap();
            honest(root, layer, options)
        });
        assert_caught("sibling rewritten", &data, &|root, layer, options| {
            fs::write(root.join("../sibling/file"), b"sibling canary\n").unwrap();
            honest(root, layer, options)
        });
        assert_caught(
            "new entry deep in a sibling",
            &data,
            &|root, layer, options| {
                fs::write(root.join("../sibling/dir/new"), b"").unwrap();
                honest(root, layer, options)
            },
        );
        assert_caught("aunt removed", &data, &|root, layer, options| {
            fs::remove_file(root.join("../../aunt/file")).unwrap();
            honest(root, layer, options)
        });

        // Beside the sandbox, in the shared temporary directory above it.
        assert_caught(
            "entry beside the sandbox",
            &data,
            &|root, layer, options| {
                let shared = root.ancestors().nth(4).unwrap().join(&name);
                fs::write(&shared, b"x").unwrap();
                honest(root, layer, options)
            },
        );
        let _ = fs::remove_file(Path::new("/dev/shm").join(&name));
        let _ = fs::remove_file(std::env::temp_dir().join(&name));

        // In the system temporary directory (not an ancestor of the sandbox on tmpfs).
        let in_tmp = std::env::temp_dir().join(&name);
        assert_caught(
            "entry in the temporary directory",
            &data,
            &|root, layer, options| {
                fs::write(&in_tmp, b"x").unwrap();
                honest(root, layer, options)
            },
        );
        let _ = fs::remove_file(&in_tmp);

        // At the filesystem's root (`/a`), where only root may write.
        if rustix::process::geteuid().is_root() {
            let at_root = Path::new("/").join(&name);
            assert_caught("entry at /", &data, &|root, layer, options| {
                fs::write(&at_root, b"x").unwrap();
                honest(root, layer, options)
            });
            let _ = fs::remove_file(&at_root);
        }
    }

    #[test]
    fn seeds_and_small_programs() {
        super::layer_apply(b"");
        super::layer_apply(&[0, 2, 2, 0x81, 11, 0, 5, 0, 0x01, 0, 0, 4]);
        for i in 0..=255u8 {
            super::layer_apply(&[
                i,
                i.wrapping_mul(7),
                i.wrapping_add(3),
                0x83,
                i,
                3,
                1,
                2,
                i,
                9,
                1,
            ]);
        }
        // Files, directories and whiteouts only, over two layers: checked against the model.
        let before = super::MODELLED.load(std::sync::atomic::Ordering::Relaxed);
        let names = [0u8, 1, 2, 12]; // a, b, c, d
        let entry = |kind: u8, x: u8, y: u8| -> Vec<u8> {
            let (a, b) = (names[usize::from(x) % 4], names[usize::from(y) % 4]);
            let mut e = vec![kind, 0x01 | (x & 0x40), a, b, 0o44, 0];
            match kind {
                4 | 5 => e.extend([0, b]),
                8 => e.push(x.wrapping_mul(y)),
                _ => {}
            }
            e
        };
        for i in 0..64u8 {
            let kinds = [0u8, 1, 4, 5, 8, 10];
            let mut program = vec![i & 0xfc & !16, 1, 7];
            for j in 0..8u8 {
                program.extend(entry(kinds[usize::from(i + j) % 6], i + j, i / 3 + j));
            }
            program.push(7);
            for j in 0..8u8 {
                program.extend(entry(kinds[usize::from(i ^ j) % 6], j * 3 + i, i + 1));
            }
            super::layer_apply(&program);
        }
        if rustix::process::geteuid().is_root() {
            assert!(super::MODELLED.load(std::sync::atomic::Ordering::Relaxed) > before + 32);
        }
    }
}
