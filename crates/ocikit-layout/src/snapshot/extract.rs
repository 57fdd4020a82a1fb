//! Extracting one layer into a staging directory, in the store's whiteout form.

use std::fs::{DirBuilder, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use ocikit_codec::apply::{
    ApplyMode, ApplyOptions, ApplyReport, ListedEntry, NameClass, apply_blob, apply_layer,
    classify_name, list_entries,
};
use ocikit_codec::compression::Decoder;

use super::fsutil::io_at;
use super::{FS, LayerJob, PrepareOptions, SnapshotInfo, SnapshotStore, WhiteoutForm};
use crate::progress::Operation;
use crate::source;
use crate::{Error, Layout, Result};

/// Extracts `job`'s layer into `staging`'s `fs` directory, verified (blob digest and size,
/// diffID), whiteouts in the store's form.
pub(super) async fn extract(
    store: &SnapshotStore,
    layout: &Layout,
    job: &LayerJob,
    staging: &Path,
    options: &PrepareOptions,
) -> Result<SnapshotInfo> {
    let root = staging.join(FS);
    let media_type = job.layer.media_type().to_string();
    let form = store.form();
    let apply = options
        .apply
        .clone()
        .with_expected_diff_id(Some(job.diff_id.clone()))
        .with_mode(match form {
            WhiteoutForm::Device => ApplyMode::Overlay,
            WhiteoutForm::Marker => ApplyMode::Apply,
        });
    let report = source::read_verified(
        layout.store(),
        &job.digest,
        job.layer.size(),
        Operation::Unpack,
        &options.progress,
        move |blob| match form {
            WhiteoutForm::Device => {
                apply_blob(&root, blob, &media_type, &apply).map_err(Error::Codec)
            }
            WhiteoutForm::Marker => apply_with_markers(&root, blob, &media_type, &apply),
        },
    )
    .await?;
    Ok(SnapshotInfo {
        chain_id: job.chain_id.clone(),
        diff_id: job.diff_id.clone(),
        parent: job.parent.clone(),
        layer: job.digest.clone(),
        form,
        content_bytes: report.content_bytes,
        files: report.files,
        path: PathBuf::new(),
    })
}

/// The marker form: the layer applied to the empty `root` (where its whiteouts have nothing
/// to remove), while a second thread lists its entries from the same decompressed stream;
/// then a marker file for each whiteout.
fn apply_with_markers(
    root: &Path,
    blob: &mut (dyn Read + Send),
    media_type: &str,
    apply: &ApplyOptions,
) -> Result<ApplyReport> {
    let decoder = Decoder::for_media_type(blob, media_type, apply.limits)?;
    let limits = apply.limits;
    let (tx, rx) = sync_channel::<Vec<u8>>(16);
    let (applied, listed) = std::thread::scope(|scope| {
        let lister = scope.spawn(move || {
            list_entries(
                ChannelReader {
                    rx,
                    buf: Vec::new(),
                    pos: 0,
                },
                limits,
            )
        });
        // `apply_layer` drops the tee when it returns, which ends the lister's stream.
        let applied = apply_layer(
            root,
            Tee {
                inner: decoder,
                tx: Some(tx),
            },
            apply,
        );
        (applied, lister.join())
    });
    let report = applied?;
    let (entries, _) = match listed {
        Ok(listed) => listed?,
        Err(_) => {
            return Err(io_at(
                "list the entries of the layer in",
                root,
                io::Error::other("the listing thread panicked"),
            ));
        }
    };
    write_markers(root, &entries)?;
    Ok(report)
}

/// Passes a reader's bytes on, and sends a copy of them down a channel (until its receiver
/// is gone).
struct Tee<R> {
    inner: R,
    tx: Option<SyncSender<Vec<u8>>>,
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(out)?;
        if n > 0
            && let Some(tx) = &self.tx
            && tx.send(out[..n].to_vec()).is_err()
        {
            self.tx = None;
        }
        Ok(n)
    }
}

/// Reads what a [`Tee`] sends; the end of the stream when it is dropped.
struct ChannelReader {
    rx: Receiver<Vec<u8>>,
    buf: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.buf.len() {
            match self.rx.recv() {
                Ok(buf) => {
                    self.buf = buf;
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// A whiteout of the layer, its name cleaned.
enum Marker {
    Whiteout { dir: Vec<u8>, target: Vec<u8> },
    Opaque { dir: Vec<u8> },
}

impl Marker {
    fn dir(&self) -> &[u8] {
        match self {
            Marker::Whiteout { dir, .. } | Marker::Opaque { dir } => dir,
        }
    }
}

/// The name cleaned as the applier cleans it (no leading `/`, no `.` or empty components;
/// `..` climbs, never above the root).
fn clean(name: &[u8]) -> Vec<u8> {
    let mut parts: Vec<&[u8]> = Vec::new();
    for part in name.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                parts.pop();
            }
            _ => parts.push(part),
        }
    }
    parts.join(&b'/')
}

/// Writes the marker files of `entries`' whiteouts into `root`, which holds the layer
/// applied: `dir/.wh.NAME` for a whiteout of something the layer did not write, an opaque
/// marker in a directory it did write (or that it marked opaque), nothing for a
/// non-directory it wrote (that already hides what is below).
fn write_markers(root: &Path, entries: &[ListedEntry]) -> Result<()> {
    let mut markers = Vec::new();
    for entry in entries {
        let name = clean(&entry.path);
        match classify_name(&name) {
            Ok(NameClass::Whiteout { dir, target }) => markers.push(Marker::Whiteout {
                dir: dir.to_vec(),
                target: target.to_vec(),
            }),
            Ok(NameClass::Opaque { dir }) => markers.push(Marker::Opaque { dir: dir.to_vec() }),
            _ => {}
        }
    }
    // Shallow ones first: below a whited-out directory nothing more is needed.
    markers.sort_by_key(|m| {
        m.dir()
            .split(|&b| b == b'/')
            .filter(|p| !p.is_empty())
            .count()
    });
    for marker in &markers {
        let Some(dir) = walk(root, marker.dir())? else {
            continue;
        };
        match marker {
            Marker::Opaque { .. } => touch(&dir.join(".wh..wh..opq"))?,
            Marker::Whiteout { target, .. } => {
                let target = std::ffi::OsStr::from_bytes(target);
                let path = dir.join(target);
                match std::fs::symlink_metadata(&path) {
                    Ok(meta) if meta.is_dir() => touch(&path.join(".wh..wh..opq"))?,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        let mut name = b".wh.".to_vec();
                        name.extend_from_slice(target.as_bytes());
                        touch(&dir.join(std::ffi::OsStr::from_bytes(&name)))?;
                    }
                    Err(e) => return Err(io_at("inspect", &path, e)),
                }
            }
        }
    }
    Ok(())
}

use std::os::unix::ffi::OsStrExt;

/// The directory `dir` below `root`, made (0755) where missing, without following symbolic
/// links; `None` when a component is not a directory, or is whited out itself.
fn walk(root: &Path, dir: &[u8]) -> Result<Option<PathBuf>> {
    let mut current = root.to_path_buf();
    for part in dir.split(|&b| b == b'/').filter(|p| !p.is_empty()) {
        let next = current.join(std::ffi::OsStr::from_bytes(part));
        match std::fs::symlink_metadata(&next) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let mut whiteout = b".wh.".to_vec();
                whiteout.extend_from_slice(part);
                if std::fs::symlink_metadata(current.join(std::ffi::OsStr::from_bytes(&whiteout)))
                    .is_ok()
                {
                    return Ok(None);
                }
                DirBuilder::new()
                    .mode(0o755)
                    .create(&next)
                    .map_err(|e| io_at("create", &next, e))?;
            }
            Err(e) => return Err(io_at("inspect", &next, e)),
        }
        current = next;
    }
    Ok(Some(current))
}

/// Makes an empty marker file (mode 0644) at `path`, if there is none.
fn touch(path: &Path) -> Result<()> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
        .map(drop)
        .map_err(|e| io_at("create", path, e))
}
