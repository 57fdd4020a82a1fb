//! What changed in a root filesystem since it was unpacked from an image ([`diff`]), and
//! a new image with those changes as one more layer ([`repack`], as `umoci repack` does).
//!
//! The image is unpacked afresh into a scratch directory (the lower tree) and compared with
//! the root filesystem (the upper tree) by [`ocikit_codec::build::build_changeset`]: added
//! and modified paths in full, deletions as whiteouts, written to a scratch tar file. Both
//! calls list the changes that changeset records ([`Change`]); [`repack`] then stores it
//! as a layer on top of the image's own and tags the new image.
//!
//! Comparing is reported as a step of [`Operation::Compare`] named by the root
//! filesystem's path; [`repack`] reports packing the changeset as a step of
//! [`Operation::Build`] named `N changes`, with the changeset's size and the bytes read.
//!
//! ```
//! use ocikit_layout::image::ImageBuilder;
//! use ocikit_layout::repack::{ChangeKind, DiffOptions, diff};
//! use ocikit_layout::{Layout, UnpackOptions, unpack};
//! use ocikit_store::MemoryStore;
//!
//! # #[cfg(feature = "gzip")]
//! # tokio::runtime::Builder::new_multi_thread().build().unwrap().block_on(async {
//! let layout = Layout::create(MemoryStore::new()).await?;
//! let tree = tempfile::tempdir().unwrap();
//! std::fs::write(tree.path().join("motd"), b"hello\n").unwrap();
//! let mut image = ImageBuilder::new(&layout);
//! image.add_layer_from_dir(tree.path(), Default::default()).await?;
//! let manifest = image.write_and_tag("v1").await?;
//!
//! let scratch = tempfile::tempdir().unwrap();
//! let rootfs = scratch.path().join("rootfs");
//! unpack(&layout, &manifest, &rootfs, &UnpackOptions::new()).await?;
//! std::fs::write(rootfs.join("motd"), b"changed\n").unwrap();
//!
//! let listed = diff(&layout, &manifest, &rootfs, &DiffOptions::new()).await?;
//! assert_eq!(listed.changes.len(), 1);
//! assert_eq!(listed.changes[0].path, "motd");
//! assert_eq!(listed.changes[0].kind, ChangeKind::Modified);
//! # Ok::<(), ocikit_layout::Error>(())
//! # }).unwrap();
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use ocikit_codec::Limits;
use ocikit_codec::apply::{EntryKind, NameClass, classify_name, list_entries};
use ocikit_codec::build::{BuildOptions, build_changeset};
use ocikit_codec::compression::Compression;
use ocikit_digest::oci_spec::image::Descriptor;

use crate::image::{ImageBuilder, LayerSpec};
use crate::platform::PlatformQuery;
use crate::progress::{Event, Operation, Progress, StepReader};
use crate::staging::io_error;
use crate::unpack::{UnpackOptions, unpack};
use crate::{Error, Layout, Result};

/// How a path changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ChangeKind {
    /// New in the root filesystem.
    Added,
    /// There in the image, different in the root filesystem.
    Modified,
    /// There in the image, gone from the root filesystem.
    Deleted,
    /// A directory whose every entry from the image is gone (recorded as one opaque
    /// whiteout, with [`RepackOptions::opaque_whiteouts`]).
    Emptied,
}

impl ChangeKind {
    /// `added`, `modified`, `deleted` or `emptied`.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Added => "added",
            ChangeKind::Modified => "modified",
            ChangeKind::Deleted => "deleted",
            ChangeKind::Emptied => "emptied",
        }
    }
}

impl fmt::Display for ChangeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One changed path.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Change {
    /// The path, relative to the root, `/`-separated (a directory emptied ends in `/`; the
    /// root emptied is the empty path). Names that are not UTF-8 are decoded lossily.
    pub path: String,
    /// How it changed.
    pub kind: ChangeKind,
}

/// Options for [`diff`].
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct DiffOptions {
    /// The platform to compare with, for an index (default: the host's).
    pub platform: PlatformQuery,
    /// Where progress events go (default: nowhere).
    pub progress: Progress,
}

impl DiffOptions {
    /// The defaults.
    pub fn new() -> DiffOptions {
        DiffOptions::default()
    }

    /// These options for another platform.
    pub fn with_platform(mut self, platform: PlatformQuery) -> DiffOptions {
        self.platform = platform;
        self
    }

    /// These options reporting progress to `progress`.
    pub fn with_progress(mut self, progress: Progress) -> DiffOptions {
        self.progress = progress;
        self
    }
}

/// What [`diff`] found.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct DiffReport {
    /// The image manifest compared with (with its platform).
    pub image: Descriptor,
    /// The changes, sorted by path.
    pub changes: Vec<Change>,
}

/// Lists what changed in `rootfs` against the image `image` points at (a manifest, or an
/// index resolved for `options.platform`); see the [module documentation](self). A `rootfs`
/// that is not a directory is [`Error::NotADirectory`].
pub async fn diff(
    layout: &Layout,
    image: &Descriptor,
    rootfs: impl AsRef<Path>,
    options: &DiffOptions,
) -> Result<DiffReport> {
    let changeset = Changeset::make(
        layout,
        image,
        rootfs.as_ref(),
        &options.platform,
        false,
        &options.progress,
    )
    .await?;
    Ok(DiffReport {
        image: changeset.base,
        changes: changeset.changes,
    })
}

/// Options for [`repack`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RepackOptions {
    /// The platform of the image, for an index (default: the host's).
    pub platform: PlatformQuery,
    /// How the new layer is compressed (default gzip).
    pub compression: Compression,
    /// Record a directory whose every old entry is gone as one opaque whiteout instead of
    /// one whiteout per entry (default: no).
    pub opaque_whiteouts: bool,
    /// What the new layer's history entry says created it (default: nothing).
    pub created_by: Option<String>,
    /// Where progress events go (default: nowhere).
    pub progress: Progress,
}

impl Default for RepackOptions {
    fn default() -> RepackOptions {
        RepackOptions {
            platform: PlatformQuery::default(),
            compression: Compression::Gzip,
            opaque_whiteouts: false,
            created_by: None,
            progress: Progress::none(),
        }
    }
}

impl RepackOptions {
    /// The defaults.
    pub fn new() -> RepackOptions {
        RepackOptions::default()
    }
}

/// What [`repack`] made.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RepackReport {
    /// The new image's manifest, tagged.
    pub manifest: Descriptor,
    /// The new layer.
    pub layer: Descriptor,
    /// The changes it records, sorted by path.
    pub changes: Vec<Change>,
}

/// Stores what changed in `rootfs` against the image `image` points at as one more layer
/// on top of it (config, layers and history carried over, as
/// [`ImageBuilder::from_image`] does) and tags the new image `tag` (moving the tag if it
/// is the image's own, as `umoci repack` does); see the [module documentation](self). An
/// invalid tag ([`Error::InvalidTag`]) and a `rootfs` that is not a directory
/// ([`Error::NotADirectory`]) are refused before any work.
pub async fn repack(
    layout: &Layout,
    image: &Descriptor,
    rootfs: impl AsRef<Path>,
    tag: &str,
    options: &RepackOptions,
) -> Result<RepackReport> {
    crate::index::validate_tag(tag)?;
    let changeset = Changeset::make(
        layout,
        image,
        rootfs.as_ref(),
        &options.platform,
        options.opaque_whiteouts,
        &options.progress,
    )
    .await?;
    let mut builder = ImageBuilder::from_image(layout, &changeset.base, &options.platform)
        .await
        .map_err(|e| Error::Base {
            digest: changeset.base.digest().to_string(),
            source: Box::new(e),
        })?;
    let file =
        std::fs::File::open(&changeset.tar).map_err(|e| io_error("open", &changeset.tar, e))?;
    let size = file.metadata().ok().map(|m| m.len());
    let (operation, name) = (
        Operation::Build,
        format!("{} changes", changeset.changes.len()),
    );
    options.progress.emit(Event::StepStarted {
        operation,
        name: name.clone(),
        size,
    });
    let mut spec = LayerSpec::new().compression(options.compression);
    if let Some(created_by) = &options.created_by {
        spec = spec.created_by(created_by.clone());
    }
    let reader = StepReader::new(
        std::io::BufReader::new(file),
        options.progress.clone(),
        operation,
        name.clone(),
    );
    let layer = builder.add_layer_from_tar(reader, spec).await;
    options.progress.emit(Event::StepDone {
        operation,
        name,
        bytes: size.unwrap_or(0),
    });
    let layer = layer?;
    let manifest = builder.write_and_tag(tag).await?;
    Ok(RepackReport {
        manifest,
        layer,
        changes: changeset.changes,
    })
}

/// The image, the changeset of a root filesystem against it in a scratch tar file, and
/// the scratch directory (which holds the lower tree and the tar until dropped).
struct Changeset {
    base: Descriptor,
    tar: PathBuf,
    changes: Vec<Change>,
    _scratch: tempfile::TempDir,
}

impl Changeset {
    async fn make(
        layout: &Layout,
        image: &Descriptor,
        rootfs: &Path,
        platform: &PlatformQuery,
        opaque: bool,
        progress: &Progress,
    ) -> Result<Changeset> {
        if !rootfs.is_dir() {
            return Err(Error::NotADirectory {
                path: rootfs.to_path_buf(),
            });
        }
        let (operation, name) = (Operation::Compare, rootfs.display().to_string());
        progress.emit(Event::StepStarted {
            operation,
            name: name.clone(),
            size: None,
        });
        let made = Changeset::compare(layout, image, rootfs, platform, opaque).await;
        progress.emit(Event::StepDone {
            operation,
            name,
            bytes: 0,
        });
        made
    }

    async fn compare(
        layout: &Layout,
        image: &Descriptor,
        rootfs: &Path,
        platform: &PlatformQuery,
        opaque: bool,
    ) -> Result<Changeset> {
        let scratch = tempfile::Builder::new()
            .prefix(".ocikit-repack-")
            .tempdir()
            .map_err(|e| io_error("create a scratch directory in", &std::env::temp_dir(), e))?;
        let lower = scratch.path().join("lower");
        let unpacked = unpack(
            layout,
            image,
            &lower,
            &UnpackOptions::new().with_platform(platform.clone()),
        )
        .await?;
        let tar = scratch.path().join("changes.tar");
        let (upper, tar_path) = (rootfs.to_path_buf(), tar.clone());
        let changes = tokio::task::spawn_blocking(move || -> Result<Vec<Change>> {
            let file =
                std::fs::File::create(&tar_path).map_err(|e| io_error("create", &tar_path, e))?;
            let options = BuildOptions::new().with_opaque_whiteouts(opaque);
            build_changeset(&lower, &upper, std::io::BufWriter::new(file), &options).map_err(
                |e| Error::Compare {
                    path: upper.clone(),
                    source: Box::new(Error::Codec(e)),
                },
            )?;
            describe(&tar_path, &lower)
        })
        .await
        .map_err(crate::bridge::join_error)??;
        Ok(Changeset {
            base: unpacked.manifest,
            tar,
            changes,
            _scratch: scratch,
        })
    }
}

/// The changes a changeset tar records, against the lower tree.
fn describe(tar: &Path, lower: &Path) -> Result<Vec<Change>> {
    let file = std::fs::File::open(tar).map_err(|e| io_error("open", tar, e))?;
    let (entries, _) = list_entries(std::io::BufReader::new(file), Limits::default())?;
    let mut out = BTreeMap::new();
    for entry in entries {
        let path = entry.path.strip_suffix(b"/").unwrap_or(&entry.path);
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        // A directory path as the listing shows it: with a trailing `/`, the root empty.
        let dir_text = |dir: &[u8]| {
            if dir.is_empty() {
                String::new()
            } else {
                format!("{}/", text(dir))
            }
        };
        match classify_name(path) {
            Ok(NameClass::Opaque { dir }) => {
                out.insert(dir_text(dir), ChangeKind::Emptied);
            }
            Ok(NameClass::Whiteout { dir, target }) => {
                out.insert(
                    format!("{}{}", dir_text(dir), text(target)),
                    ChangeKind::Deleted,
                );
            }
            Ok(NameClass::Normal) => {
                let name = text(path);
                let existed = std::fs::symlink_metadata(lower.join(&name)).is_ok();
                // Directories are carried because something below them changed: only new
                // ones are changes of their own.
                if entry.kind == EntryKind::Directory && existed {
                    continue;
                }
                let kind = if existed {
                    ChangeKind::Modified
                } else {
                    ChangeKind::Added
                };
                out.insert(name, kind);
            }
            // The changeset writer writes neither AUFS metadata nor bad whiteouts.
            Ok(_) => {}
            Err(reason) => {
                return Err(Error::Codec(ocikit_codec::Error::InvalidEntry {
                    path: text(path),
                    reason,
                }));
            }
        }
    }
    Ok(out
        .into_iter()
        .map(|(path, kind)| Change { path, kind })
        .collect())
}
