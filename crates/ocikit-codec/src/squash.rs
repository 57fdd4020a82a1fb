//! Squashing a stack of layers into one tar stream: the merged filesystem, whiteouts
//! resolved, in one streaming pass (the core of `ocikit flatten` and `ocikit unpack --tar`,
//! crane's `flatten` and `export`).
//!
//! [`squash`] reads the layers' *uncompressed* tar streams and writes one tar stream whose
//! unpacked tree is the tree the layers give when applied in turn
//! ([`apply_layer`](crate::apply::apply_layer), `IS layer.md §Applying Changesets`);
//! [`squash_layer`] sends that stream through a [`LayerWriter`], so that decompression,
//! merge and recompression (with the digest, size and diffID of the new layer) are one pass.
//! Everything is synchronous and CPU-bound: async callers run it on a blocking thread
//! (`tokio::task::spawn_blocking`).
//!
//! ```
//! use ocikit_codec::squash::{squash, SquashOptions};
//! use ocikit_codec::tar::{EntryMeta, TarWriter};
//!
//! // Two layers: the top one deletes `etc/old` and replaces `etc/motd`.
//! let mut base = TarWriter::new(Vec::new());
//! base.append_dir(b"etc", &EntryMeta::new(0o755))?;
//! base.append_file(b"etc/old", &EntryMeta::new(0o644), 3, &b"old"[..])?;
//! base.append_file(b"etc/motd", &EntryMeta::new(0o644), 2, &b"v1"[..])?;
//! let mut top = TarWriter::new(Vec::new());
//! top.append_file(b"etc/.wh.old", &EntryMeta::new(0o644), 0, &b""[..])?;
//! top.append_file(b"etc/motd", &EntryMeta::new(0o600), 2, &b"v2"[..])?;
//! let layers = [base.finish()?, top.finish()?];
//!
//! let mut merged = Vec::new();
//! let report = squash(2, |i| Ok(&layers[i][..]), &mut merged, &SquashOptions::new())?;
//! // `etc/motd` (from the top layer) and `etc/` (from the base); no whiteout, no `etc/old`.
//! assert_eq!((report.files, report.directories, report.hidden), (1, 1, 2));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Algorithm
//!
//! The layers are read from the top down, as crane's `export` does: an entry is written
//! unless a higher layer already had an entry at its path, whited it out (`.wh.name`, which
//! hides the path and everything below it), made a parent of it opaque (`.wh..wh..opq`) or
//! put a non-directory at one of its parents (a file or symlink that replaced a directory
//! replaced everything below it too). Whiteouts and opaque markers are never written, and
//! they act only on *lower* layers: what a layer does to itself (a path written twice, a
//! directory replaced by a file further down the same archive) is reproduced by writing its
//! entries in their order, so an applier does the same with the output as with the layer.
//! Memory holds the paths seen (with a few flag bits each) and the current layer's entries,
//! never file contents.
//!
//! Names are read with the applier's rules ([`classify_name`]
//! and its lexical cleaning: no `..` above the root, a leading `/` or `./` dropped): the
//! output names are the cleaned ones (directories end in `/`, the root is `./`).
//!
//! ## Order
//!
//! Entries of a higher layer come before those of lower layers, so a file may come before
//! the entry of its parent directory (when a higher layer added the file without an entry
//! for the directory, whose metadata a lower layer holds), and entries of a lower layer go
//! back into directories whose entries came before. Appliers create missing parents and
//! give a directory the metadata of its entry when it comes later, so the tree unpacked is
//! the same: [`apply_layer`](crate::apply::apply_layer) sets directory times and modes after
//! the last entry; GNU tar does with `--delay-directory-restore` (as for any archive not in
//! directory order; without it, it sets a directory's time when it leaves the directory, and
//! entries that come back into it change it again). Both are tested on generated stacks.
//! Reordering would need the whole stream twice (or in memory), so this order is the
//! price of one streaming pass, as in crane's `export`.
//!
//! ## Directories no entry describes
//!
//! Applying a layer makes the missing parents of its entries (mode `0755`). When a higher
//! layer removes such an entry but not its parent, the parent stays in the applied tree
//! though no entry of the stack describes it: the squash writes it at the end, `0755`, owned
//! by 0:0, mtime 0 ([`SquashReport::implicit_directories`]). And when a layer removes a
//! directory (a whiteout, an opaque parent) after writing entries below it without an entry
//! for the directory itself, the applier keeps the directory with the metadata lower
//! layers gave it: the squash then writes that lower entry (not the rest of what lower
//! layers had below it).
//!
//! ## Hard links
//!
//! A hard link names an inode by a path, as the layer stood when the link was applied. The
//! output keeps every link whose inode is still in the result under a path that is written:
//!
//! - a link to an entry written earlier in the same layer is written as it is (the target
//!   comes first in the output too);
//! - a link to a path the layer did not write refers to a *lower* layer's inode: it waits
//!   until the squash reaches the lower layer that last wrote that path and is written right
//!   after that layer's entries, as a link to a path that holds the inode in the output;
//! - when no written path holds the inode any more (a higher layer replaced or deleted
//!   every other name of it), the first link is *materialised*: written as a copy of the
//!   target's entry (its type, metadata and content) under the link's name, the other
//!   links then naming it. The content has been streamed past by then, so that layer is
//!   opened and read a second time up to the entries needed
//!   ([`SquashReport::layers_reread`]); this happens only for such links.
//!
//! A link whose target is missing when its layer is applied (deleted, never written) is
//! [`InvalidEntry::HardlinkTargetMissing`], a link to a directory
//! [`InvalidEntry::HardlinkToDirectory`], as the applier says.
//!
//! ## What a squash refuses
//!
//! Besides what the applier refuses (names climbing out of the root, bad whiteouts, owners
//! and device numbers out of range, unsupported entry types in strict mode; all as
//! [`Error::InvalidEntry`] naming the entry), a squash refuses a stack in which an entry is
//! applied *through* a symlink or another non-directory of a layer (a layer that writes
//! `lib/x` over a lower layer's symlink `lib -> usr/lib`, without an entry for `lib/`
//! itself): an applier follows the symlink (or fails), and a merged stream cannot say that.
//! That is [`InvalidEntry::CrossesNonDirectory`]. The check is conservative: a directory
//! entry for the path, in the layer of the entry before it or in a layer between, makes the
//! stack acceptable; a whiteout of the path in a layer between does too.
//!
//! ## What is not kept
//!
//! Sub-second modification times (the output has whole seconds, like ocikit's layers),
//! owner names (numeric owners only), and PAX records other than `path`, `linkpath`, `size`,
//! `uid`, `gid`, `mtime` and `SCHILY.xattr.*`. Extended attributes are kept as they are
//! (the applier decides which to apply).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::{self, BufWriter, Write};
use std::ops::Bound;

use ocikit_digest::{Digest, Hasher};

use crate::apply::pipeline::read_ahead;
use crate::apply::{NameClass, classify_name, normalize};
use crate::build::tarfmt::{self, BLOCK, EntryHeader, TypeFlag};
use crate::compression::error_from_io_as;
use crate::tar::{CopyError, Header, Kind, TarReader};
use crate::writer::{LayerInfo, LayerOptions, LayerWriter};
use crate::{Error, InvalidEntry, Limits, Result};

/// Options for [`squash`] and [`squash_layer`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SquashOptions {
    /// Limits on each layer's tar stream (entries, metadata per entry).
    pub limits: Limits,
    /// Strict mode (the default), as the applier's: ambiguous tar headers, whiteouts that
    /// are not empty regular files, `.wh.` directories and unsupported entry types are
    /// refused; lenient mode skips what it cannot write.
    pub strict: bool,
    /// The diffID each layer's stream must have, bottom first (from the image config's
    /// `rootfs.diff_ids`); a mismatch is [`Error::DiffIdMismatch`]. `None` (the default): the
    /// streams are not hashed (the callers' blob digests are what vouches for them).
    pub expected_diff_ids: Option<Vec<Digest>>,
    /// Read each layer's stream on a second thread (`ocikit-decompress`), ahead of the
    /// merge, through a bounded channel (at most 4 MiB in flight), as
    /// [`apply_blob`](crate::apply::apply_blob) does: decompression then overlaps the merge
    /// and whatever `out` does (compression). Default true.
    pub read_ahead: bool,
}

impl Default for SquashOptions {
    fn default() -> SquashOptions {
        SquashOptions {
            limits: Limits::default(),
            strict: true,
            expected_diff_ids: None,
            read_ahead: true,
        }
    }
}

impl SquashOptions {
    /// The defaults: strict, default limits, diffIDs not checked.
    pub fn new() -> SquashOptions {
        SquashOptions::default()
    }

    /// These options with other limits.
    pub fn with_limits(mut self, limits: Limits) -> SquashOptions {
        self.limits = limits;
        self
    }

    /// These options in strict or lenient mode.
    pub fn with_strict(mut self, strict: bool) -> SquashOptions {
        self.strict = strict;
        self
    }

    /// These options reading each layer on a second thread or not.
    pub fn with_read_ahead(mut self, read_ahead: bool) -> SquashOptions {
        self.read_ahead = read_ahead;
        self
    }

    /// These options checking each layer's diffID (bottom first).
    pub fn with_expected_diff_ids(mut self, diff_ids: Option<Vec<Digest>>) -> SquashOptions {
        self.expected_diff_ids = diff_ids;
        self
    }
}

/// What a squash read and wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SquashReport {
    /// Entries read from all layers (whiteouts and PAX global headers included).
    pub entries_read: u64,
    /// Entries written (PAX extended headers not counted).
    pub entries: u64,
    /// Directory entries written.
    pub directories: u64,
    /// Regular files written with their content (materialised links included).
    pub files: u64,
    /// Symlinks written.
    pub symlinks: u64,
    /// Hard link entries written.
    pub hardlinks: u64,
    /// Devices and FIFOs written.
    pub special_files: u64,
    /// Entries not written because a higher layer replaced or deleted them.
    pub hidden: u64,
    /// Whiteouts and opaque markers read.
    pub whiteouts: u64,
    /// Entries skipped in lenient mode (and AUFS metadata, in any mode).
    pub skipped: u64,
    /// Directories written for parents that only hidden entries had (see the module
    /// documentation).
    pub implicit_directories: u64,
    /// Hard links written as copies of their target (see the module documentation).
    pub materialized: u64,
    /// Layers read a second time for the content of materialised links.
    pub layers_reread: u64,
    /// Bytes of file content written.
    pub content_bytes: u64,
    /// Bytes of the tar stream written.
    pub tar_size: u64,
    /// With [`SquashOptions::expected_diff_ids`], the diffID of each layer's stream as read
    /// (all equal to the expected ones, when the squash succeeds), bottom first; empty
    /// otherwise.
    pub diff_ids: Vec<Digest>,
}

/// Squashes `layers` layers into one uncompressed tar stream written to `out`; see the
/// [module documentation](self).
///
/// `open(i)` gives layer `i`'s *uncompressed* tar stream, `0` being the bottom layer (wrap a
/// blob in a [`Decoder`](crate::compression::Decoder)). It is called once for each layer,
/// from the top down, and once more for a layer only when a hard link needs the content of
/// an entry the squash did not write ([`SquashReport::layers_reread`]). Each stream is read
/// to its end (bytes after the end-of-archive marker included), so that a verifying reader
/// sees all of it; with [`SquashOptions::read_ahead`] (the default) it is read on a second
/// thread, hence `Send`.
///
/// `out` is written through a buffer and flushed before returning; pass `&mut writer` to
/// keep using it. On error, what was written is not a valid archive: discard it.
///
/// # Errors
/// - [`Error::InvalidEntry`] for an entry the applier would refuse or a squash cannot
///   reproduce, naming it;
/// - [`Error::Corrupt`], [`Error::LimitExceeded`] from the tar reader, and whatever `open`
///   or its readers return;
/// - [`Error::DiffIdMismatch`] with [`SquashOptions::expected_diff_ids`];
/// - [`Error::Io`] with operation `"write"` when writing `out` fails.
pub fn squash<R, F, W>(
    layers: usize,
    open: F,
    out: W,
    options: &SquashOptions,
) -> Result<SquashReport>
where
    R: io::Read + Send,
    F: FnMut(usize) -> Result<R>,
    W: Write,
{
    if let Some(expected) = &options.expected_diff_ids
        && expected.len() != layers
    {
        return Err(Error::io(
            "squash",
            None,
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} expected diffIDs for {layers} layers", expected.len()),
            ),
        ));
    }
    let mut squasher = Squasher {
        out: Output {
            inner: BufWriter::with_capacity(1 << 20, out),
            written: 0,
        },
        options,
        open,
        flags: HashMap::new(),
        uncovered: HashMap::new(),
        pending: BTreeMap::new(),
        implicit: BTreeSet::new(),
        spared: BTreeSet::new(),
        report: SquashReport::default(),
    };
    for index in (0..layers).rev() {
        squasher.layer(index)?;
    }
    squasher.finish()
}

/// [`squash`] into a [`LayerWriter`] on `writer`: the squashed layer, compressed as `layer`
/// says, with its digest, size and diffID, from one pass. Returns `writer`, the new layer's
/// [`LayerInfo`] and the [`SquashReport`].
///
/// # Errors
/// As [`squash`], and the [`LayerWriter`]'s own.
pub fn squash_layer<R, F, W>(
    layers: usize,
    open: F,
    writer: W,
    layer: LayerOptions,
    options: &SquashOptions,
) -> Result<(W, LayerInfo, SquashReport)>
where
    R: io::Read + Send,
    F: FnMut(usize) -> Result<R>,
    W: Write,
{
    let mut out = LayerWriter::new(writer, layer)?;
    let report = squash(layers, open, &mut out, options)?;
    let (writer, info) = out.finish()?;
    Ok((writer, info, report))
}

/// An entry at this path in a higher layer.
const SEEN: u8 = 1;
/// A non-directory at this path in a higher layer: lower layers' entries below it are gone.
const NONDIR: u8 = 2;
/// Whited out in a higher layer: lower layers' entries at it and below it are gone.
const WHITEOUT: u8 = 4;
/// Opaque in a higher layer: lower layers' entries below it are gone.
const OPAQUE: u8 = 8;
/// Written to the output (any layer).
const EMITTED: u8 = 16;

/// What hides an entry at a path, and what hides one below a path.
const HIDES_SELF: u8 = SEEN | WHITEOUT;
const HIDES_BELOW: u8 = NONDIR | WHITEOUT | OPAQUE;

/// The output, counted.
struct Output<W: Write> {
    inner: BufWriter<W>,
    written: u64,
}

impl<W: Write> Write for Output<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The metadata of a hard link entry as written.
#[derive(Clone, Copy, Debug)]
struct Meta {
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: i64,
}

/// A visible hard link waiting for the inode it names to be found.
#[derive(Clone, Debug)]
struct Waiter {
    /// Its path (normalised).
    path: Box<[u8]>,
    /// Its name as recorded (for errors).
    name: Box<[u8]>,
    meta: Meta,
}

/// What a path of the current layer is, as the layer leaves it so far.
#[derive(Clone, Debug)]
enum Node {
    Dir,
    /// A non-directory inode made by this layer (an index into [`LayerState::inodes`]).
    Inode(usize),
    /// A hard link to the inode that this path of the layers below holds.
    Lower(Box<[u8]>),
}

/// A non-directory made by the current layer.
#[derive(Debug)]
struct Inode {
    /// The index of its entry in the layer's stream.
    entry: u64,
    /// Paths written to the output that hold it now.
    holders: Vec<Box<[u8]>>,
    /// Visible links to it not written yet.
    waiters: Vec<Waiter>,
}

/// Where a visible link of the current layer waits.
#[derive(Clone, Debug)]
enum Wait {
    Inode(usize),
    Lower(Box<[u8]>),
}

/// The current layer's own state.
#[derive(Default)]
struct LayerState {
    nodes: BTreeMap<Box<[u8]>, Node>,
    inodes: Vec<Inode>,
    waiting: HashMap<Box<[u8]>, Wait>,
    /// This layer's visible links to lower inodes, by the path naming them.
    lower_waiters: BTreeMap<Box<[u8]>, Vec<Waiter>>,
    /// This layer's whiteouts, opaque directories and non-directories (flags).
    hides: HashMap<Box<[u8]>, u8>,
    /// Whether it has whiteouts or opaque markers.
    removes: bool,
    /// Directories its removals spared (see [`Squasher::spared`]).
    spare: BTreeSet<Box<[u8]>>,
    /// Paths this layer's entries cross as directories without an entry of this layer
    /// making them one first: what lower layers have there must be a directory.
    uncovered: HashSet<Box<[u8]>>,
}

struct Squasher<'o, W: Write, F> {
    out: Output<W>,
    options: &'o SquashOptions,
    open: F,
    /// Flags of paths, from the layers above the current one.
    flags: HashMap<Box<[u8]>, u8>,
    /// Paths that entries of higher layers cross as directories (see
    /// [`LayerState::uncovered`]), with the lowest such layer.
    uncovered: HashMap<Box<[u8]>, usize>,
    /// Links of higher layers waiting for the inode at a path as the layers below leave it.
    pending: BTreeMap<Box<[u8]>, Vec<Waiter>>,
    /// Directories that applying the layers makes as parents of entries the squash does
    /// not write (a higher layer removed them): written at the end unless an entry of
    /// theirs was.
    implicit: BTreeSet<Box<[u8]>>,
    /// Directories that a layer's whiteouts or opaque markers removed from below it but
    /// that it wrote entries below (without an entry of its own for them): the applier
    /// keeps them, with the metadata the layers below gave them, so a lower entry for one
    /// is written (its other contents stay hidden).
    spared: BTreeSet<Box<[u8]>>,
    report: SquashReport,
}

fn lossy(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}

fn invalid(name: &[u8], reason: InvalidEntry) -> Error {
    Error::InvalidEntry {
        path: lossy(name),
        reason,
    }
}

fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(dir.len() + 1 + name.len());
    out.extend_from_slice(dir);
    if !dir.is_empty() {
        out.push(b'/');
    }
    out.extend_from_slice(name);
    out
}

/// Whether `map` has `own` at `path` or `above` at one of its parents (the root included).
fn hidden_by(map: &HashMap<Box<[u8]>, u8>, path: &[u8], own: u8, above: u8) -> bool {
    if map.is_empty() {
        return false;
    }
    let has = |p: &[u8], mask: u8| map.get(p).is_some_and(|f| f & mask != 0);
    if has(path, own) {
        return true;
    }
    if path.is_empty() {
        return false;
    }
    has(b"", above)
        || path
            .iter()
            .enumerate()
            .any(|(i, &b)| b == b'/' && has(&path[..i], above))
}

/// An owner id as the applier takes it.
fn owner_id(name: &[u8], id: i64) -> Result<u64> {
    u32::try_from(id)
        .ok()
        .filter(|&id| id != u32::MAX)
        .map(u64::from)
        .ok_or_else(|| invalid(name, InvalidEntry::BadOwner))
}

/// Device numbers as the applier takes them (the kernel's 12-bit major, 20-bit minor).
fn device(header: &Header) -> Result<(u32, u32)> {
    if !matches!(header.kind, Kind::Char | Kind::Block) {
        return Ok((0, 0));
    }
    let major = u32::try_from(header.dev_major).ok().filter(|&m| m <= 0xfff);
    let minor = u32::try_from(header.dev_minor)
        .ok()
        .filter(|&m| m <= 0xf_ffff);
    match (major, minor) {
        (Some(major), Some(minor)) => Ok((major, minor)),
        _ => Err(invalid(&header.name, InvalidEntry::BadDeviceNumber)),
    }
}

fn changed() -> Error {
    Error::Corrupt {
        format: "tar",
        source: io::Error::new(
            io::ErrorKind::InvalidData,
            "the layer's stream changed between two reads",
        ),
    }
}

impl<W, F, R> Squasher<'_, W, F>
where
    W: Write,
    F: FnMut(usize) -> Result<R>,
    R: io::Read + Send,
{
    /// Reads layer `index` (all layers above it are done).
    fn layer(&mut self, index: usize) -> Result<()> {
        let reader = (self.open)(index)?;
        if !self.options.read_ahead {
            return self.read_layer(index, reader);
        }
        std::thread::scope(|scope| {
            let (reader, thread) = read_ahead(scope, reader)?;
            let read = self.read_layer(index, reader);
            // It only ever returns (a panic would be a bug of the source); the reader is
            // gone, so it stops at its next chunk.
            let _ = thread.join();
            read
        })
    }

    fn read_layer<T: io::Read>(&mut self, index: usize, reader: T) -> Result<()> {
        let options = self.options;
        let expected = options
            .expected_diff_ids
            .as_ref()
            .and_then(|ids| ids.get(index));
        let (limits, strict) = (options.limits, options.strict);
        let mut tar = match expected {
            Some(expected) => {
                let hasher = Hasher::new(expected.algorithm()).map_err(|_| {
                    Error::io(
                        "hash",
                        None,
                        io::Error::new(
                            io::ErrorKind::Unsupported,
                            format!("cannot compute {} diffIDs", expected.algorithm()),
                        ),
                    )
                })?;
                TarReader::hashed(reader, hasher, limits, strict)
            }
            // Not hashed: the stream is still read to its end.
            None => TarReader::new(reader, limits).with_strict(strict),
        };
        let mut state = LayerState::default();
        let mut number = 0u64;
        while let Some(header) = tar.next_header()? {
            self.entry(&mut state, &mut tar, header, number)?;
            number += 1;
        }
        if let Some(expected) = expected {
            let (diff_id, _) = tar.finish()?;
            if *expected != diff_id {
                return Err(Error::DiffIdMismatch {
                    expected: expected.clone(),
                    actual: diff_id,
                });
            }
            self.report.diff_ids.push(diff_id);
        }
        self.end_layer(index, state)
    }

    fn entry<T: io::Read>(
        &mut self,
        state: &mut LayerState,
        tar: &mut TarReader<T>,
        header: Header,
        number: u64,
    ) -> Result<()> {
        self.report.entries_read += 1;
        if header.kind == Kind::Global {
            return Ok(());
        }
        let strict = self.options.strict;
        let name = header.name.as_slice();
        let path = normalize(name, strict).map_err(|r| invalid(name, r))?;
        match classify_name(&path).map_err(|r| invalid(name, r))? {
            NameClass::Normal => {}
            NameClass::Aufs => {
                self.report.skipped += 1;
                return Ok(());
            }
            NameClass::BelowWhiteout => {
                if strict {
                    return Err(invalid(name, InvalidEntry::WhiteoutAsDirectory));
                }
                self.report.skipped += 1;
                return Ok(());
            }
            NameClass::Whiteout { dir, target } => {
                if strict && !(header.kind == Kind::File && header.size == 0) {
                    return Err(invalid(name, InvalidEntry::WhiteoutNotEmptyFile));
                }
                self.report.whiteouts += 1;
                let removed = join(dir, target);
                Self::cross_parents(state, &removed, name)?;
                Self::spare(state, &removed, true);
                *state.hides.entry(removed.into()).or_default() |= WHITEOUT;
                state.removes = true;
                return Ok(());
            }
            NameClass::Opaque { dir } => {
                if strict && !(header.kind == Kind::File && header.size == 0) {
                    return Err(invalid(name, InvalidEntry::WhiteoutNotEmptyFile));
                }
                self.report.whiteouts += 1;
                Self::cross_parents(state, &path, name)?;
                Self::spare(state, dir, false);
                *state.hides.entry(dir.into()).or_default() |= OPAQUE;
                state.removes = true;
                return Ok(());
            }
        }
        if header.kind == Kind::Unsupported {
            if strict {
                return Err(invalid(
                    name,
                    InvalidEntry::UnsupportedType {
                        typeflag: header.typeflag,
                    },
                ));
            }
            self.report.skipped += 1;
            return Ok(());
        }
        if path.is_empty() && header.kind != Kind::Dir {
            return Err(invalid(name, InvalidEntry::ReplacesRoot));
        }
        owner_id(name, header.uid)?;
        owner_id(name, header.gid)?;
        device(&header)?;

        let is_dir = header.kind == Kind::Dir;
        Self::cross_parents(state, &path, name)?;
        // Entries of higher layers crossed this path as a directory: it must be one.
        if !is_dir && self.uncovered.contains_key(path.as_slice()) {
            return Err(invalid(
                name,
                InvalidEntry::CrossesNonDirectory {
                    through: lossy(&path),
                },
            ));
        }
        let visible = !self.hidden(&path, is_dir);
        if !visible {
            self.implicit_parents(state, &path);
        }

        if header.kind == Kind::Hardlink {
            return self.hardlink(state, &header, path, visible);
        }
        Self::replace(state, &path, is_dir);
        let node = if is_dir {
            Node::Dir
        } else {
            *state.hides.entry(path.clone().into()).or_default() |= NONDIR;
            state.inodes.push(Inode {
                entry: number,
                holders: Vec::new(),
                waiters: Vec::new(),
            });
            Node::Inode(state.inodes.len() - 1)
        };
        if visible {
            self.write_entry(&header, &path, Some(tar))?;
            if let Node::Inode(i) = node {
                state.inodes[i].holders.push(path.clone().into());
            }
        } else {
            self.report.hidden += 1;
        }
        state.nodes.insert(path.into(), node);
        Ok(())
    }

    /// A hard link at `path`, after the checks every entry gets.
    fn hardlink(
        &mut self,
        state: &mut LayerState,
        header: &Header,
        path: Vec<u8>,
        visible: bool,
    ) -> Result<()> {
        let name = header.name.as_slice();
        let missing = || {
            invalid(
                name,
                InvalidEntry::HardlinkTargetMissing {
                    target: lossy(&header.link),
                },
            )
        };
        let to_dir = || {
            invalid(
                name,
                InvalidEntry::HardlinkToDirectory {
                    target: lossy(&header.link),
                },
            )
        };
        let target = match normalize(&header.link, self.options.strict) {
            Ok(target) => target,
            Err(InvalidEntry::EmptyName) => return Err(missing()),
            Err(reason) => return Err(invalid(name, reason)),
        };
        if target.is_empty() {
            return Err(to_dir());
        }
        if classify_name(&target) != Ok(NameClass::Normal) {
            return Err(missing());
        }
        Self::cross_parents(state, &target, name)?;
        // The inode the link names, as the layer stands now.
        let node = match state.nodes.get(target.as_slice()) {
            Some(Node::Dir) => return Err(to_dir()),
            Some(Node::Inode(i)) => Node::Inode(*i),
            Some(Node::Lower(lower)) => Node::Lower(lower.clone()),
            None => {
                if hidden_by(&state.hides, &target, WHITEOUT | NONDIR, HIDES_BELOW) {
                    return Err(missing());
                }
                Node::Lower(target.into())
            }
        };
        Self::replace(state, &path, false);
        *state.hides.entry(path.clone().into()).or_default() |= NONDIR;
        if visible {
            let waiter = Waiter {
                path: path.clone().into(),
                name: name.into(),
                meta: Meta {
                    mode: header.mode,
                    uid: owner_id(name, header.uid)?,
                    gid: owner_id(name, header.gid)?,
                    mtime: header.mtime.0,
                },
            };
            match &node {
                Node::Inode(i) => match state.inodes[*i].holders.first().cloned() {
                    Some(holder) => {
                        self.write_link(&waiter, &holder)?;
                        state.inodes[*i].holders.push(waiter.path);
                    }
                    None => {
                        state.waiting.insert(waiter.path.clone(), Wait::Inode(*i));
                        state.inodes[*i].waiters.push(waiter);
                    }
                },
                Node::Lower(lower) => {
                    state
                        .waiting
                        .insert(waiter.path.clone(), Wait::Lower(lower.clone()));
                    state
                        .lower_waiters
                        .entry(lower.clone())
                        .or_default()
                        .push(waiter);
                }
                Node::Dir => {}
            }
        } else {
            self.report.hidden += 1;
        }
        state.nodes.insert(path.into(), node);
        Ok(())
    }

    /// The parents of `path` that an entry crosses: a non-directory of this layer among them
    /// is refused; those this layer has no entry for must be directories below it.
    fn cross_parents(state: &mut LayerState, path: &[u8], name: &[u8]) -> Result<()> {
        let mut end = path.len();
        while let Some(i) = path[..end].iter().rposition(|&b| b == b'/') {
            let parent = &path[..i];
            match state.nodes.get(parent) {
                Some(Node::Dir) => return Ok(()),
                Some(_) => {
                    return Err(invalid(
                        name,
                        InvalidEntry::CrossesNonDirectory {
                            through: lossy(parent),
                        },
                    ));
                }
                None => {
                    if !state.uncovered.contains(parent) {
                        state.uncovered.insert(parent.into());
                    }
                }
            }
            end = i;
        }
        Ok(())
    }

    /// An entry at `path` replaces what this layer had there (and below it, unless both are
    /// directories).
    fn replace(state: &mut LayerState, path: &[u8], is_dir: bool) {
        let mut gone: Vec<Box<[u8]>> = Vec::new();
        if let Some(old) = state.nodes.get(path)
            && !(is_dir && matches!(old, Node::Dir))
        {
            gone.push(path.into());
        }
        if !is_dir {
            // A non-directory replaces a directory with everything below it (an entry for
            // the directory or not).
            let mut prefix = path.to_vec();
            prefix.push(b'/');
            gone.extend(
                state
                    .nodes
                    .range::<[u8], _>((Bound::Included(prefix.as_slice()), Bound::Unbounded))
                    .take_while(|(k, _)| k.starts_with(&prefix))
                    .map(|(k, _)| k.clone()),
            );
        }
        for key in gone {
            if let Some(Node::Inode(i)) = state.nodes.remove(&key) {
                state.inodes[i].holders.retain(|h| *h != key);
            }
            match state.waiting.remove(&key) {
                Some(Wait::Inode(i)) => state.inodes[i].waiters.retain(|w| w.path != key),
                Some(Wait::Lower(lower)) => {
                    if let Some(waiters) = state.lower_waiters.get_mut(&lower) {
                        waiters.retain(|w| w.path != key);
                    }
                }
                None => {}
            }
        }
    }

    /// A removal of `path` (itself too, when `itself`; else what is below it) in the
    /// current layer: the applier keeps, with their lower metadata, the directories at or
    /// below it that lead to entries this layer wrote *before* the removal, without
    /// entries of their own.
    fn spare(state: &mut LayerState, path: &[u8], itself: bool) {
        let mut prefix = path.to_vec();
        if !prefix.is_empty() {
            prefix.push(b'/');
        }
        let written = state
            .nodes
            .range::<[u8], _>((Bound::Included(prefix.as_slice()), Bound::Unbounded))
            .take_while(|(p, _)| p.starts_with(&prefix))
            .map(|(p, _)| p);
        let mut found: Vec<Box<[u8]>> = Vec::new();
        for written in written {
            let mut end = written.len();
            while let Some(i) = written[..end].iter().rposition(|&b| b == b'/') {
                let parent = &written[..i];
                let inside = if itself {
                    parent == path || parent.starts_with(&prefix)
                } else {
                    parent.starts_with(&prefix)
                };
                if !inside {
                    break;
                }
                // A directory an earlier removal of this layer took (and did not spare) was
                // made again by this layer: nothing lower is left there to keep.
                let remade = hidden_by(&state.hides, parent, WHITEOUT, WHITEOUT | OPAQUE)
                    && !state.spare.contains(parent);
                if !state.nodes.contains_key(parent) && !remade {
                    found.push(parent.into());
                }
                end = i;
            }
        }
        state.spare.extend(found);
    }

    /// Whether higher layers hide an entry at `path` (a directory entry, when `is_dir`).
    fn hidden(&self, path: &[u8], is_dir: bool) -> bool {
        if is_dir && self.spared.contains(path) {
            // Kept by the layer that spared it: only an entry of a layer between, or a
            // non-directory above it, hides it (removals between end the sparing).
            return hidden_by(&self.flags, path, SEEN, NONDIR);
        }
        hidden_by(&self.flags, path, HIDES_SELF, HIDES_BELOW)
    }

    /// An entry at `path` is not written: the parents that applying it would make (those
    /// this layer has no entry for, and no higher layer removes) must be made anyway.
    fn implicit_parents(&mut self, state: &LayerState, path: &[u8]) {
        let mut end = path.len();
        while let Some(i) = path[..end].iter().rposition(|&b| b == b'/') {
            let parent = &path[..i];
            if matches!(state.nodes.get(parent), Some(Node::Dir)) {
                // Its own entry made it (and, written or not, saw to its parents).
                return;
            }
            if !self.hidden(parent, true) && !self.implicit.contains(parent) {
                self.implicit.insert(parent.into());
            }
            end = i;
        }
    }

    /// After the last entry of layer `index`: links waiting for its inodes are written, the
    /// layer's hiding is recorded for the layers below.
    fn end_layer(&mut self, index: usize, mut state: LayerState) -> Result<()> {
        // Links of higher layers naming a path this layer wrote or removed.
        let mut still: BTreeMap<Box<[u8]>, Vec<Waiter>> = BTreeMap::new();
        for (target, waiters) in std::mem::take(&mut self.pending) {
            let Some(first) = waiters.first() else {
                continue;
            };
            match state.nodes.get(&target) {
                Some(Node::Dir) => {
                    return Err(invalid(
                        &first.name,
                        InvalidEntry::HardlinkToDirectory {
                            target: lossy(&target),
                        },
                    ));
                }
                Some(Node::Inode(i)) => state.inodes[*i].waiters.extend(waiters),
                Some(Node::Lower(lower)) => still.entry(lower.clone()).or_default().extend(waiters),
                None => {
                    if hidden_by(&state.hides, &target, WHITEOUT | NONDIR, HIDES_BELOW) {
                        return Err(invalid(
                            &first.name,
                            InvalidEntry::HardlinkTargetMissing {
                                target: lossy(&target),
                            },
                        ));
                    }
                    still.entry(target).or_default().extend(waiters);
                }
            }
        }
        // Inodes of this layer that links wait for: a link to a path holding it, or a copy.
        let mut copies: Vec<(u64, usize)> = Vec::new();
        for i in 0..state.inodes.len() {
            if state.inodes[i].waiters.is_empty() {
                continue;
            }
            match state.inodes[i].holders.first().cloned() {
                Some(holder) => {
                    for waiter in std::mem::take(&mut state.inodes[i].waiters) {
                        self.write_link(&waiter, &holder)?;
                    }
                }
                None => copies.push((state.inodes[i].entry, i)),
            }
        }
        if !copies.is_empty() {
            self.materialize(index, &mut state, &copies)?;
        }
        // This layer's links to lower inodes wait below it.
        for (target, waiters) in std::mem::take(&mut state.lower_waiters) {
            if !waiters.is_empty() {
                still.entry(target).or_default().extend(waiters);
            }
        }
        self.pending = still;
        // Paths higher layers crossed as directories: this layer's last word on them decides
        // (a directory, or removed: fine; a non-directory: refused).
        if !self.uncovered.is_empty() {
            let mut resolved = Vec::new();
            for path in self.uncovered.keys() {
                match state.nodes.get(path) {
                    Some(Node::Dir) => resolved.push(path.clone()),
                    Some(_) => {
                        return Err(invalid(
                            path,
                            InvalidEntry::CrossesNonDirectory {
                                through: lossy(path),
                            },
                        ));
                    }
                    None => {
                        if hidden_by(&state.hides, path, WHITEOUT, WHITEOUT | OPAQUE) {
                            resolved.push(path.clone());
                        }
                    }
                }
            }
            for path in resolved {
                self.uncovered.remove(&path);
            }
        }
        // What this layer hides from the layers below. Its removals also end what higher
        // layers spared there: below this layer, those directories are gone.
        let spare: Vec<Box<[u8]>> = std::mem::take(&mut state.spare)
            .into_iter()
            .filter(|dir| !state.nodes.contains_key(dir) && !self.hidden(dir, true))
            .collect();
        if state.removes {
            for (path, flags) in &state.hides {
                if self.spared.is_empty() {
                    break;
                }
                let mut prefix = path.to_vec();
                if !prefix.is_empty() {
                    prefix.push(b'/');
                }
                if flags & WHITEOUT != 0 {
                    self.spared.remove(path);
                }
                if flags & (WHITEOUT | OPAQUE) != 0 {
                    let below: Vec<Box<[u8]>> = self
                        .spared
                        .range::<[u8], _>((Bound::Included(prefix.as_slice()), Bound::Unbounded))
                        .take_while(|p| p.starts_with(&prefix))
                        .cloned()
                        .collect();
                    for p in below {
                        self.spared.remove(&p);
                    }
                }
            }
        }
        for (path, _) in std::mem::take(&mut state.nodes) {
            *self.flags.entry(path).or_default() |= SEEN;
        }
        for (path, flags) in state.hides {
            *self.flags.entry(path).or_default() |= flags;
        }
        self.spared.extend(spare);
        for path in state.uncovered {
            self.uncovered.insert(path, index);
        }
        Ok(())
    }

    /// Reads layer `index` again for the entries `copies` (entry number, inode; in stream
    /// order), writing each as a copy under its first waiting link's path, and the other
    /// waiting links as links to it.
    fn materialize(
        &mut self,
        index: usize,
        state: &mut LayerState,
        copies: &[(u64, usize)],
    ) -> Result<()> {
        self.report.layers_reread += 1;
        let reader = (self.open)(index)?;
        let mut tar = TarReader::new(reader, self.options.limits).with_strict(self.options.strict);
        let mut number = 0u64;
        for &(entry, inode) in copies {
            let header = loop {
                let header = tar.next_header()?.ok_or_else(changed)?;
                number += 1;
                if number - 1 == entry {
                    break header;
                }
            };
            if matches!(
                header.kind,
                Kind::Dir | Kind::Hardlink | Kind::Global | Kind::Unsupported
            ) {
                return Err(changed());
            }
            let waiters = std::mem::take(&mut state.inodes[inode].waiters);
            let Some((first, rest)) = waiters.split_first() else {
                continue;
            };
            self.write_entry(&header, &first.path, Some(&mut tar))?;
            self.report.materialized += 1;
            for waiter in rest {
                self.write_link(waiter, &first.path)?;
            }
        }
        Ok(())
    }

    fn finish(mut self) -> Result<SquashReport> {
        if let Some((target, first)) = self
            .pending
            .iter()
            .find_map(|(target, waiters)| waiters.first().map(|w| (target, w)))
        {
            return Err(invalid(
                &first.name,
                InvalidEntry::HardlinkTargetMissing {
                    target: lossy(target),
                },
            ));
        }
        // Parents first (sorted: a path sorts before the paths below it).
        for dir in std::mem::take(&mut self.implicit) {
            if self.flags.get(&dir).is_some_and(|f| f & EMITTED != 0) {
                continue;
            }
            let mut name = dir.to_vec();
            name.push(b'/');
            self.write_header(&EntryHeader {
                path: &name,
                typeflag: TypeFlag::Directory,
                mode: 0o755,
                uid: 0,
                gid: 0,
                size: 0,
                mtime: 0,
                link: b"",
                dev: (0, 0),
                xattrs: &[],
            })?;
            self.report.directories += 1;
            self.report.implicit_directories += 1;
        }
        self.out
            .write_all(&[0u8; 2 * BLOCK])
            .and_then(|()| self.out.flush())
            .map_err(|e| error_from_io_as(e, "write"))?;
        self.report.tar_size = self.out.written;
        self.report.diff_ids.reverse();
        Ok(self.report)
    }

    fn write_header(&mut self, header: &EntryHeader<'_>) -> Result<()> {
        let bytes = tarfmt::encode(header).map_err(|reason| Error::Unpackable {
            path: std::path::PathBuf::from(lossy(header.path)),
            reason,
        })?;
        self.out
            .write_all(&bytes)
            .map_err(|e| error_from_io_as(e, "write"))?;
        self.report.entries += 1;
        Ok(())
    }

    /// Writes `header`'s entry under `path` (normalised), with its data from `tar`.
    fn write_entry<T: io::Read>(
        &mut self,
        header: &Header,
        path: &[u8],
        tar: Option<&mut TarReader<T>>,
    ) -> Result<()> {
        let name = header.name.as_slice();
        let (typeflag, link): (TypeFlag, &[u8]) = match header.kind {
            Kind::Dir => (TypeFlag::Directory, b""),
            Kind::Symlink => (TypeFlag::Symlink, &header.link),
            Kind::Char => (TypeFlag::Char, b""),
            Kind::Block => (TypeFlag::Block, b""),
            Kind::Fifo => (TypeFlag::Fifo, b""),
            _ => (TypeFlag::Regular, b""),
        };
        let mut out_name = path.to_vec();
        if typeflag == TypeFlag::Directory {
            if out_name.is_empty() {
                out_name.push(b'.');
            }
            out_name.push(b'/');
        }
        let size = if typeflag == TypeFlag::Regular {
            header.size
        } else {
            0
        };
        self.write_header(&EntryHeader {
            path: &out_name,
            typeflag,
            mode: header.mode & 0o7777,
            uid: owner_id(name, header.uid)?,
            gid: owner_id(name, header.gid)?,
            size,
            mtime: header.mtime.0,
            link,
            dev: device(header)?,
            xattrs: &header.xattrs,
        })?;
        if !self.implicit.is_empty() {
            *self.flags.entry(path.into()).or_default() |= EMITTED;
        }
        match typeflag {
            TypeFlag::Directory => self.report.directories += 1,
            TypeFlag::Symlink => self.report.symlinks += 1,
            TypeFlag::Regular => self.report.files += 1,
            _ => self.report.special_files += 1,
        }
        if size > 0 {
            let Some(tar) = tar else {
                return Err(changed());
            };
            let copied = match tar.copy_data(&mut self.out) {
                Ok(n) => n,
                Err(CopyError::Read(err)) => return Err(err),
                Err(CopyError::Write(err)) => return Err(error_from_io_as(err, "write")),
            };
            if copied != size {
                return Err(changed());
            }
            self.report.content_bytes += size;
            let pad = [0u8; BLOCK];
            self.out
                .write_all(&pad[..tarfmt::padding(size)])
                .map_err(|e| error_from_io_as(e, "write"))?;
        }
        Ok(())
    }

    /// Writes the hard link `waiter` naming `target` (a path written before it).
    fn write_link(&mut self, waiter: &Waiter, target: &[u8]) -> Result<()> {
        if !self.implicit.is_empty() {
            *self.flags.entry(waiter.path.clone()).or_default() |= EMITTED;
        }
        self.write_header(&EntryHeader {
            path: &waiter.path,
            typeflag: TypeFlag::HardLink,
            mode: waiter.meta.mode & 0o7777,
            uid: waiter.meta.uid,
            gid: waiter.meta.gid,
            size: 0,
            mtime: waiter.meta.mtime,
            link: target,
            dev: (0, 0),
            xattrs: &[],
        })?;
        self.report.hardlinks += 1;
        Ok(())
    }
}
