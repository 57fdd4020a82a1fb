//! A snapshot store for overlayfs: each layer extracted once, into a directory named by its
//! chain ID, shared by every image that has it, as containerd's overlayfs snapshotter keeps
//! them.
//!
//! [`SnapshotStore::prepare`] resolves an image in a [`Layout`], extracts the layers the
//! store does not have yet, and returns the chain of lower directories an overlay mount of
//! the image takes ([`PrepareReport::lowerdir`], top layer first, as `lowerdir=` wants it).
//! [`SnapshotStore::list`], [`SnapshotStore::remove`] and [`SnapshotStore::gc`] (which
//! removes what no kept image uses) manage the store.
//!
//! # Layout on disk
//!
//! ```text
//! ROOT/store.json                   the store's whiteout form: {"form":"device"|"marker"}
//! ROOT/store.lock                   shared while preparing, exclusive while removing
//! ROOT/snapshots/ALG/HEX/fs         a finished snapshot: the layer's upper directory
//! ROOT/snapshots/ALG/HEX/snapshot.json   what it is (chain ID, diffID, parent, layer, form)
//! ROOT/locks/ALG-HEX.lock           held while that chain ID is extracted or removed
//! ROOT/staging/ALG-HEX.RANDOM/      an extraction in progress (or one a killed run left)
//! ROOT/objects/ALG/XX/KEY           files stored once (see below)
//! ROOT/trash/                       snapshots being removed
//! ```
//!
//! # Whiteout forms
//!
//! A snapshot is the layer as overlayfs keeps an upper directory ([`WhiteoutForm::Device`]):
//! a whiteout is a character device 0:0, an opaque directory has `trusted.overlay.opaque=y`
//! (the applier's [`ApplyMode::Overlay`](ocikit_codec::apply::ApplyMode::Overlay)). That
//! takes the privilege to make device nodes and set `trusted.*` attributes; a store made by
//! a process without it (probed when the store is created) keeps whiteouts as rootless
//! runtimes and fuse-overlayfs do
//! ([`WhiteoutForm::Marker`]): an empty file `.wh.NAME` beside what it hides, and an empty
//! `.wh..wh..opq` in an opaque directory. The form is recorded in `store.json` and in every
//! snapshot's `snapshot.json`; a store keeps one form.
//!
//! A directory that a layer whites out and then fills again is opaque in both forms, so a
//! chain means what the layers applied in turn mean. Two differences from a full unpack,
//! which containerd's snapshotter (that mounts the parents while applying) does not have:
//! a directory that a layer creates only implicitly (an entry below it, no entry for the
//! directory itself) gets mode 0755 and root's owner in that layer's snapshot, which
//! overlayfs shows over the lower directory's attributes; and the root directory of a
//! snapshot takes its parent's mode and owner unless the layer has an entry for `./`.
//! Layers written by the usual tools (docker, buildkit, umoci, ocikit) list every
//! directory they touch.
//!
//! # Concurrency and crashes
//!
//! Every chain ID has a lock file; the process that extracts or removes that snapshot holds
//! an exclusive `flock` on it, so two processes preparing images that share layers extract
//! each shared layer once: the second waits, then finds the snapshot finished. A snapshot is
//! extracted into `staging/`, synced (`syncfs`) and renamed into `snapshots/` only when every
//! blob digest and diffID matched: a directory in `snapshots/` is always complete. A
//! killed extraction leaves a staging directory, which the next process to hold that chain
//! ID's lock (or any [`SnapshotStore::open`] finding the lock free) removes; it is never
//! used. Preparing holds `store.lock` shared, removing ([`SnapshotStore::remove`],
//! [`SnapshotStore::gc`]) exclusive, so nothing is removed from under an extraction. This
//! relies on `flock` working on the store's filesystem, as it does on local ones.
//!
//! A prepared chain stays valid until something removes one of its snapshots: the caller
//! that mounts it keeps it from a concurrent `gc` by naming the image among those kept.
//!
//! # Files stored once
//!
//! With [`SnapshotOptions::share_files`] (the default), every non-empty regular file of a
//! new snapshot is replaced by a hard link to a content-addressed object in `objects/`
//! (named by the SHA-256 of its content and a digest of its mode, owner, mtime and extended
//! attributes, which the links share), as composefs keeps its objects: identical files
//! across layers and images are stored once. Lower directories are never written by
//! overlayfs (a change copies the file up), so sharing is safe. An object is used while a
//! snapshot links to it; [`SnapshotStore::gc`] and [`SnapshotStore::remove`] delete the
//! objects whose link count fell to one (the object itself): the filesystem counts the
//! references.

mod extract;
mod fsutil;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use ocikit_codec::apply::ApplyOptions;
use ocikit_codec::compression::compression_of;
use ocikit_digest::oci_spec::image::{Descriptor, Platform};
use ocikit_digest::{Digest, Hasher, descriptor};
use serde::{Deserialize, Serialize};

use crate::platform::{PlatformQuery, resolve};
use crate::progress::Progress;
use crate::staging::io_error;
use crate::{Error, Layout, Result};

pub use fsutil::ObjectSweep;

/// The store's description file.
const STORE_JSON: &str = "store.json";
/// The store-wide lock (shared while preparing, exclusive while removing).
const STORE_LOCK: &str = "store.lock";
/// Finished snapshots.
const SNAPSHOTS: &str = "snapshots";
/// Per-chain-ID locks.
const LOCKS: &str = "locks";
/// Extractions in progress.
const STAGING: &str = "staging";
/// Files stored once.
const OBJECTS: &str = "objects";
/// Snapshots being removed.
const TRASH: &str = "trash";
/// A snapshot's description.
const SNAPSHOT_JSON: &str = "snapshot.json";
/// A snapshot's upper directory.
const FS: &str = "fs";

/// How a snapshot keeps whiteouts and opaque directories.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum WhiteoutForm {
    /// As overlayfs keeps them: character devices 0:0 and `trusted.overlay.opaque=y` (or
    /// `user.overlay.opaque`, with [`ApplyOptions::overlay_userxattr`]). Needs privilege.
    Device,
    /// As rootless runtimes and fuse-overlayfs keep them: empty `.wh.NAME` files and
    /// `.wh..wh..opq` in opaque directories.
    Marker,
}

impl std::fmt::Display for WhiteoutForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WhiteoutForm::Device => "device",
            WhiteoutForm::Marker => "marker",
        })
    }
}

/// What a snapshot store refused ([`Error::Snapshot`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The text given is not a chain ID (`ALGORITHM:HEX` of a supported algorithm).
    #[error("{given:?} is not a chain ID: {reason}")]
    InvalidChainId {
        /// What was given.
        given: String,
        /// Why it is not one.
        reason: String,
    },
    /// No finished snapshot has this chain ID.
    #[error("no snapshot {chain_id}")]
    NotFound {
        /// The chain ID asked for.
        chain_id: Digest,
    },
    /// Other snapshots are built on this one (remove them first, or use `gc`).
    #[error("snapshot {chain_id} is the parent of {child}")]
    HasChildren {
        /// The snapshot asked for.
        chain_id: Digest,
        /// One snapshot whose parent it is.
        child: Digest,
    },
    /// The store keeps whiteouts in another form than the one asked for.
    #[error("the store keeps whiteouts as {store} files, not as {asked}")]
    FormMismatch {
        /// The store's form.
        store: WhiteoutForm,
        /// The form asked for.
        asked: WhiteoutForm,
    },
    /// A store file is not what the store writes.
    #[error("{} is not a snapshot store file: {reason}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// Options for [`SnapshotStore::open`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SnapshotOptions {
    /// The whiteout form (`None`, the default: the store's, or for a new store
    /// [`WhiteoutForm::Device`] when this process may make device nodes and set
    /// `trusted.*` attributes there, else [`WhiteoutForm::Marker`]).
    pub form: Option<WhiteoutForm>,
    /// Store identical regular files once, hard-linked from `objects/` (default true).
    pub share_files: bool,
}

impl Default for SnapshotOptions {
    fn default() -> SnapshotOptions {
        SnapshotOptions {
            form: None,
            share_files: true,
        }
    }
}

impl SnapshotOptions {
    /// The defaults.
    pub fn new() -> SnapshotOptions {
        SnapshotOptions::default()
    }

    /// These options with a whiteout form (`None`: probed for a new store).
    pub fn with_form(mut self, form: Option<WhiteoutForm>) -> SnapshotOptions {
        self.form = form;
        self
    }

    /// These options with files stored once or not.
    pub fn with_share_files(mut self, on: bool) -> SnapshotOptions {
        self.share_files = on;
        self
    }
}

/// Options for [`SnapshotStore::prepare`].
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct PrepareOptions {
    /// The platform to prepare (default: the host's).
    pub platform: PlatformQuery,
    /// How layers are applied (owners, devices, xattrs, limits). The whiteout mode is the
    /// store's, and the expected diffID is set for each layer from the config.
    pub apply: ApplyOptions,
    /// Where progress events go ([`Operation::Unpack`](crate::Operation::Unpack), for the
    /// layers extracted).
    pub progress: Progress,
}

impl PrepareOptions {
    /// The defaults.
    pub fn new() -> PrepareOptions {
        PrepareOptions::default()
    }

    /// These options for another platform.
    pub fn with_platform(mut self, platform: PlatformQuery) -> PrepareOptions {
        self.platform = platform;
        self
    }

    /// These options with other [`ApplyOptions`].
    pub fn with_apply_options(mut self, apply: ApplyOptions) -> PrepareOptions {
        self.apply = apply;
        self
    }

    /// These options reporting progress to `progress`.
    pub fn with_progress(mut self, progress: Progress) -> PrepareOptions {
        self.progress = progress;
        self
    }
}

/// A finished snapshot, as its `snapshot.json` describes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct SnapshotInfo {
    /// Its chain ID (the name it is stored under).
    pub chain_id: Digest,
    /// The diffID of its layer.
    pub diff_id: Digest,
    /// The chain ID of the snapshot below it (`None` for a base layer).
    pub parent: Option<Digest>,
    /// The layer blob it was extracted from (one of them: any blob with this diffID on this
    /// parent gives the same snapshot).
    pub layer: Digest,
    /// How it keeps whiteouts.
    pub form: WhiteoutForm,
    /// Bytes of regular-file content the layer wrote.
    pub content_bytes: u64,
    /// Regular files the layer wrote.
    pub files: u64,
    /// Its upper directory (what goes into `lowerdir=`); not stored in `snapshot.json`.
    #[serde(skip)]
    pub path: PathBuf,
}

/// What [`SnapshotStore::prepare`] did.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct PrepareReport {
    /// The image manifest prepared (with its platform).
    pub manifest: Descriptor,
    /// The image's platform, as its config says.
    pub platform: Platform,
    /// The image's snapshots, base layer first.
    pub snapshots: Vec<SnapshotInfo>,
    /// The chain IDs this call extracted (the others were in the store, or extracted by
    /// another process while this one waited for them).
    pub extracted: Vec<Digest>,
}

impl PrepareReport {
    /// The lower directories of an overlay mount of the image, top layer first.
    pub fn lowerdirs(&self) -> Vec<PathBuf> {
        self.snapshots
            .iter()
            .rev()
            .map(|s| s.path.clone())
            .collect()
    }

    /// [`lowerdirs`](Self::lowerdirs) joined with `:`, as overlayfs' `lowerdir=` option
    /// takes them.
    pub fn lowerdir(&self) -> String {
        let dirs: Vec<String> = self
            .lowerdirs()
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        dirs.join(":")
    }
}

/// What [`SnapshotStore::gc`] and [`SnapshotStore::remove`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SnapshotGcReport {
    /// The snapshots removed.
    pub removed: Vec<Digest>,
    /// The snapshots kept.
    pub kept: usize,
    /// Stored-once objects that no snapshot used any more, removed, and their bytes.
    pub objects: ObjectSweep,
    /// Staging directories of killed extractions, removed.
    pub staging_removed: usize,
}

/// The chain IDs of layers with `diff_ids`, base first: the first is the first diffID,
/// each next one the SHA-256 of `PARENT DIFFID` (the image spec's `ChainID`).
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut chain: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for diff_id in diff_ids {
        let next = match chain.last() {
            None => diff_id.clone(),
            Some(parent) => {
                let mut hasher = Hasher::sha256();
                hasher.update(parent.as_str().as_bytes());
                hasher.update(b" ");
                hasher.update(diff_id.as_str().as_bytes());
                hasher.finish()
            }
        };
        chain.push(next);
    }
    chain
}

/// Parses a chain ID given as text (`sha256:HEX`), as [`SnapshotStore::remove`] takes it.
pub fn parse_chain_id(text: &str) -> Result<Digest> {
    Digest::parse_supported(text).map_err(|e| Error::Snapshot {
        refusal: Box::new(Refusal::InvalidChainId {
            given: text.to_string(),
            reason: e.to_string(),
        }),
    })
}

/// A snapshot store in a local directory; see the [module documentation](self). Handles are
/// cheap; several (in one process or many) may use one store at once.
#[derive(Clone, Debug)]
pub struct SnapshotStore {
    root: PathBuf,
    form: WhiteoutForm,
    share_files: bool,
}

#[derive(Serialize, Deserialize)]
struct StoreFile {
    form: WhiteoutForm,
}

/// One layer to prepare.
struct LayerJob {
    layer: Descriptor,
    digest: Digest,
    diff_id: Digest,
    chain_id: Digest,
    parent: Option<Digest>,
}

impl SnapshotStore {
    /// Opens the store at `root`, creating it if missing, and removes the staging
    /// directories killed extractions left (those whose chain ID nobody is extracting).
    pub async fn open(root: impl AsRef<Path>, options: SnapshotOptions) -> Result<SnapshotStore> {
        let root = root.as_ref().to_path_buf();
        blocking(move || SnapshotStore::open_blocking(root, options)).await
    }

    fn open_blocking(root: PathBuf, options: SnapshotOptions) -> Result<SnapshotStore> {
        for dir in [SNAPSHOTS, LOCKS, STAGING, OBJECTS, TRASH] {
            let path = root.join(dir);
            std::fs::create_dir_all(&path).map_err(|e| io_error("create", &path, e))?;
        }
        let root = std::fs::canonicalize(&root).map_err(|e| io_error("resolve", &root, e))?;
        let store_json = root.join(STORE_JSON);
        let form = match std::fs::read(&store_json) {
            Ok(bytes) => {
                let file: StoreFile =
                    serde_json::from_slice(&bytes).map_err(|e| Error::Snapshot {
                        refusal: Box::new(Refusal::Corrupt {
                            path: store_json.clone(),
                            reason: e.to_string(),
                        }),
                    })?;
                if let Some(asked) = options.form
                    && asked != file.form
                {
                    return Err(Error::Snapshot {
                        refusal: Box::new(Refusal::FormMismatch {
                            store: file.form,
                            asked,
                        }),
                    });
                }
                file.form
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let form = match options.form {
                    Some(form) => form,
                    None => fsutil::probe_form(&root.join(STAGING)),
                };
                let bytes = serde_json::to_vec(&StoreFile { form })
                    .map_err(|e| io_error("encode", &store_json, std::io::Error::other(e)))?;
                fsutil::write_atomic(&store_json, &bytes)?;
                // Two processes creating the store at once: the first file written wins.
                match std::fs::read(&store_json)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<StoreFile>(&b).ok())
                {
                    Some(file) => file.form,
                    None => form,
                }
            }
            Err(e) => return Err(io_error("read", &store_json, e)),
        };
        let store = SnapshotStore {
            root,
            form,
            share_files: options.share_files,
        };
        store.remove_stale_staging();
        Ok(store)
    }

    /// The store's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// How the store keeps whiteouts.
    pub fn form(&self) -> WhiteoutForm {
        self.form
    }

    /// Where the snapshot `chain_id` is (finished or not).
    pub fn snapshot_dir(&self, chain_id: &Digest) -> PathBuf {
        let (algorithm, hex) = chain_id.path_components();
        self.root.join(SNAPSHOTS).join(algorithm).join(hex)
    }

    /// The upper directory of snapshot `chain_id` (an overlay lower directory).
    pub fn snapshot_fs(&self, chain_id: &Digest) -> PathBuf {
        self.snapshot_dir(chain_id).join(FS)
    }

    fn key(chain_id: &Digest) -> String {
        let (algorithm, hex) = chain_id.path_components();
        format!("{algorithm}-{hex}")
    }

    fn lock_path(&self, chain_id: &Digest) -> PathBuf {
        self.root
            .join(LOCKS)
            .join(format!("{}.lock", Self::key(chain_id)))
    }

    /// Extracts the layers of the image `descriptor` points at (a manifest, or an index
    /// resolved for `options.platform`) that the store does not have, and returns the
    /// image's snapshots. Layers are checked as [`crate::unpack()`] checks them (media types
    /// and digest algorithms before anything is extracted; each blob's digest and size and
    /// its diffID while it is extracted); a layer that fails leaves no snapshot, and the
    /// error names it ([`Error::Layer`]). Snapshots finished before it stay (they are
    /// complete, and other images may share them).
    pub async fn prepare(
        &self,
        layout: &Layout,
        descriptor: &Descriptor,
        options: &PrepareOptions,
    ) -> Result<PrepareReport> {
        let image = resolve(layout, descriptor, &options.platform).await?;
        let config_digest = image.config_digest()?;
        let layers = image.manifest.layers().clone();
        image.config.check_layers(&config_digest, layers.len())?;
        let diff_ids = image.config.diff_ids();
        let chain = chain_ids(&diff_ids);
        let mut jobs = Vec::with_capacity(layers.len());
        for (i, layer) in layers.into_iter().enumerate() {
            let media_type = layer.media_type().to_string();
            if compression_of(&media_type).is_err() {
                return Err(Error::UnsupportedMediaType {
                    media_type,
                    operation: "snapshot",
                });
            }
            let digest = descriptor::digest_of(&layer).map_err(|e| Error::InvalidDocument {
                digest: config_digest.clone(),
                reason: "invalid layer descriptor".into(),
                source: Some(Box::new(e.into())),
            })?;
            if !digest.is_supported() {
                return Err(Error::Unverifiable { digest });
            }
            if !diff_ids[i].is_supported() {
                return Err(Error::Unverifiable {
                    digest: diff_ids[i].clone(),
                });
            }
            jobs.push(LayerJob {
                layer,
                digest,
                diff_id: diff_ids[i].clone(),
                chain_id: chain[i].clone(),
                parent: i.checked_sub(1).map(|p| chain[p].clone()),
            });
        }
        let _shared = self.lock_store(false).await?;
        let mut snapshots = Vec::with_capacity(jobs.len());
        let mut extracted = Vec::new();
        for job in jobs {
            let digest = job.digest.clone();
            let (info, fresh) =
                self.ensure(layout, job, options)
                    .await
                    .map_err(|e| Error::Layer {
                        digest,
                        source: Box::new(e),
                    })?;
            if fresh {
                extracted.push(info.chain_id.clone());
            }
            snapshots.push(info);
        }
        Ok(PrepareReport {
            platform: image.config.platform(),
            manifest: image.descriptor,
            snapshots,
            extracted,
        })
    }

    /// [`prepare`](Self::prepare) for the image a tag points at.
    pub async fn prepare_tag(
        &self,
        layout: &Layout,
        tag: &str,
        options: &PrepareOptions,
    ) -> Result<PrepareReport> {
        let descriptor = layout.resolve(tag).await?;
        self.prepare(layout, &descriptor, options).await
    }

    /// The chain IDs of the image `descriptor` points at, base first, without extracting
    /// anything (what [`gc`](Self::gc) keeps for it).
    pub async fn chain_of(
        layout: &Layout,
        descriptor: &Descriptor,
        platform: &PlatformQuery,
    ) -> Result<Vec<Digest>> {
        let image = resolve(layout, descriptor, platform).await?;
        let config_digest = image.config_digest()?;
        image
            .config
            .check_layers(&config_digest, image.manifest.layers().len())?;
        Ok(chain_ids(&image.config.diff_ids()))
    }

    /// The snapshot `job` names: found finished, or extracted now (`true`).
    async fn ensure(
        &self,
        layout: &Layout,
        job: LayerJob,
        options: &PrepareOptions,
    ) -> Result<(SnapshotInfo, bool)> {
        if let Some(info) = self.read_info_async(&job.chain_id).await? {
            return Ok((info, false));
        }
        let lock_path = self.lock_path(&job.chain_id);
        let _lock = blocking(move || fsutil::lock(&lock_path, true)).await?;
        // Whoever held the lock may have finished it.
        if let Some(info) = self.read_info_async(&job.chain_id).await? {
            return Ok((info, false));
        }
        let this = self.clone();
        let chain_id = job.chain_id.clone();
        let parent = job.parent.clone();
        let staging = blocking(move || this.make_staging(&chain_id, parent.as_ref())).await?;
        let info = match extract::extract(self, layout, &job, staging.path(), options).await {
            Ok(info) => info,
            Err(e) => {
                // Removed before the lock is let go, so the next holder finds nothing.
                blocking(move || {
                    staging.discard();
                    Ok(())
                })
                .await?;
                return Err(e);
            }
        };
        let this = self.clone();
        let info = blocking(move || this.finish(staging, info)).await?;
        Ok((info, true))
    }

    async fn read_info_async(&self, chain_id: &Digest) -> Result<Option<SnapshotInfo>> {
        let this = self.clone();
        let chain_id = chain_id.clone();
        blocking(move || this.read_info(&chain_id)).await
    }

    /// The finished snapshot `chain_id`, if there is one.
    fn read_info(&self, chain_id: &Digest) -> Result<Option<SnapshotInfo>> {
        let dir = self.snapshot_dir(chain_id);
        let path = dir.join(SNAPSHOT_JSON);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error("read", &path, e)),
        };
        let corrupt = |reason: String| Error::Snapshot {
            refusal: Box::new(Refusal::Corrupt {
                path: path.clone(),
                reason,
            }),
        };
        let mut info: SnapshotInfo =
            serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        if info.chain_id != *chain_id {
            return Err(corrupt(format!(
                "it describes {}, not {chain_id}",
                info.chain_id
            )));
        }
        info.path = dir.join(FS);
        Ok(Some(info))
    }

    /// A new staging directory for `chain_id` (its lock held), after removing the ones
    /// killed runs left for it; its `fs` gets the parent snapshot's root mode and owner.
    fn make_staging(&self, chain_id: &Digest, parent: Option<&Digest>) -> Result<StagingDir> {
        let staging = self.root.join(STAGING);
        let key = Self::key(chain_id);
        let prefix = format!("{key}.");
        if let Ok(entries) = std::fs::read_dir(&staging) {
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().starts_with(&prefix) {
                    let _ = fsutil::remove_tree(&entry.path());
                }
            }
        }
        let dir = tempfile::Builder::new()
            .prefix(&prefix)
            .rand_bytes(12)
            .tempdir_in(&staging)
            .map_err(|e| io_error("create a staging directory in", &staging, e))?
            .keep();
        let guard = StagingDir { dir: Some(dir) };
        let fs = guard.path().join(FS);
        std::fs::create_dir(&fs).map_err(|e| io_error("create", &fs, e))?;
        if let Some(parent) = parent {
            let lower = self.snapshot_fs(parent);
            let meta = std::fs::metadata(&lower).map_err(|e| io_error("inspect", &lower, e))?;
            std::os::unix::fs::chown(&fs, Some(meta.uid()), Some(meta.gid()))
                .or_else(|e| {
                    // Without privilege the owner stays this process's.
                    if e.kind() == std::io::ErrorKind::PermissionDenied {
                        Ok(())
                    } else {
                        Err(e)
                    }
                })
                .map_err(|e| io_error("chown", &fs, e))?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&fs, std::fs::Permissions::from_mode(meta.mode() & 0o7777))
                .map_err(|e| io_error("chmod", &fs, e))?;
        }
        Ok(guard)
    }

    /// Stores files once, writes `snapshot.json`, syncs, and renames the staging directory
    /// into place.
    fn finish(&self, staging: StagingDir, mut info: SnapshotInfo) -> Result<SnapshotInfo> {
        let dir = staging.path().to_path_buf();
        let fs = dir.join(FS);
        if self.share_files {
            fsutil::share_files(&fs, &self.root.join(OBJECTS))?;
        }
        let json = dir.join(SNAPSHOT_JSON);
        let bytes = serde_json::to_vec_pretty(&info)
            .map_err(|e| io_error("encode", &json, std::io::Error::other(e)))?;
        fsutil::write_synced(&json, &bytes)?;
        let handle = File::open(&dir).map_err(|e| io_error("open", &dir, e))?;
        rustix::fs::syncfs(&handle).map_err(|e| io_error("sync", &dir, e.into()))?;
        drop(handle);
        let target = self.snapshot_dir(&info.chain_id);
        let parent = target.parent().unwrap_or(&self.root).to_path_buf();
        std::fs::create_dir_all(&parent).map_err(|e| io_error("create", &parent, e))?;
        std::fs::rename(&dir, &target).map_err(|e| io_error("rename into place", &target, e))?;
        staging.committed();
        File::open(&parent)
            .and_then(|f| f.sync_all())
            .map_err(|e| io_error("sync", &parent, e))?;
        info.path = target.join(FS);
        Ok(info)
    }

    /// Every finished snapshot, by chain ID.
    pub async fn list(&self) -> Result<Vec<SnapshotInfo>> {
        let this = self.clone();
        blocking(move || this.list_blocking()).await
    }

    fn list_blocking(&self) -> Result<Vec<SnapshotInfo>> {
        let mut found = BTreeMap::new();
        let snapshots = self.root.join(SNAPSHOTS);
        let algorithms =
            std::fs::read_dir(&snapshots).map_err(|e| io_error("read", &snapshots, e))?;
        for algorithm in algorithms.flatten() {
            let Ok(entries) = std::fs::read_dir(algorithm.path()) else {
                continue;
            };
            for entry in entries.flatten() {
                let text = format!(
                    "{}:{}",
                    algorithm.file_name().to_string_lossy(),
                    entry.file_name().to_string_lossy()
                );
                let Ok(chain_id) = Digest::parse(&text) else {
                    continue;
                };
                if let Some(info) = self.read_info(&chain_id)? {
                    found.insert(chain_id.to_string(), info);
                }
            }
        }
        Ok(found.into_values().collect())
    }

    /// Removes snapshot `chain_id`, and the stored-once objects only it used. Refuses one
    /// that is not there ([`Refusal::NotFound`]) and one other snapshots are built on
    /// ([`Refusal::HasChildren`]). The snapshot is first renamed out of `snapshots/`, so a
    /// removal cut short leaves nothing that looks finished.
    pub async fn remove(&self, chain_id: &Digest) -> Result<SnapshotGcReport> {
        let _exclusive = self.lock_store(true).await?;
        let this = self.clone();
        let chain_id = chain_id.clone();
        blocking(move || {
            let all = this.list_blocking()?;
            if !all.iter().any(|s| s.chain_id == chain_id) {
                return Err(Error::Snapshot {
                    refusal: Box::new(Refusal::NotFound { chain_id }),
                });
            }
            if let Some(child) = all.iter().find(|s| s.parent.as_ref() == Some(&chain_id)) {
                return Err(Error::Snapshot {
                    refusal: Box::new(Refusal::HasChildren {
                        chain_id,
                        child: child.chain_id.clone(),
                    }),
                });
            }
            this.remove_one(&chain_id)?;
            Ok(SnapshotGcReport {
                removed: vec![chain_id],
                kept: all.len() - 1,
                objects: fsutil::sweep_objects(&this.root.join(OBJECTS))?,
                staging_removed: 0,
            })
        })
        .await
    }

    /// Removes every snapshot that none of `keep` (images in layouts, resolved for
    /// `platform`) uses, then the stored-once objects no snapshot uses, and the staging
    /// directories of killed extractions.
    pub async fn gc(
        &self,
        keep: &[(&Layout, &Descriptor)],
        platform: &PlatformQuery,
    ) -> Result<SnapshotGcReport> {
        let mut kept = BTreeSet::new();
        for (layout, descriptor) in keep {
            kept.extend(Self::chain_of(layout, descriptor, platform).await?);
        }
        self.gc_keeping(&kept).await
    }

    /// [`gc`](Self::gc) keeping the snapshots with these chain IDs.
    pub async fn gc_keeping(&self, keep: &BTreeSet<Digest>) -> Result<SnapshotGcReport> {
        let _exclusive = self.lock_store(true).await?;
        let this = self.clone();
        let keep = keep.clone();
        blocking(move || {
            let staging_removed = this.remove_stale_staging();
            let mut report = SnapshotGcReport {
                staging_removed,
                ..SnapshotGcReport::default()
            };
            for info in this.list_blocking()? {
                if keep.contains(&info.chain_id) {
                    report.kept += 1;
                } else {
                    this.remove_one(&info.chain_id)?;
                    report.removed.push(info.chain_id);
                }
            }
            let trash = this.root.join(TRASH);
            if let Ok(entries) = std::fs::read_dir(&trash) {
                for entry in entries.flatten() {
                    let _ = fsutil::remove_tree(&entry.path());
                }
            }
            report.objects = fsutil::sweep_objects(&this.root.join(OBJECTS))?;
            Ok(report)
        })
        .await
    }

    /// Moves a snapshot to the trash (under its lock), then deletes it.
    fn remove_one(&self, chain_id: &Digest) -> Result<()> {
        let _lock = fsutil::lock(&self.lock_path(chain_id), true)?;
        let dir = self.snapshot_dir(chain_id);
        let trash = tempfile::Builder::new()
            .prefix(&format!("{}.", Self::key(chain_id)))
            .rand_bytes(12)
            .tempdir_in(self.root.join(TRASH))
            .map_err(|e| io_error("create", &self.root.join(TRASH), e))?
            .keep();
        let gone = trash.join("snapshot");
        std::fs::rename(&dir, &gone).map_err(|e| io_error("remove", &dir, e))?;
        if let Some(parent) = dir.parent() {
            let _ = File::open(parent).and_then(|f| f.sync_all());
        }
        fsutil::remove_tree(&trash).map_err(|e| io_error("remove", &trash, e))?;
        Ok(())
    }

    /// Removes staging directories whose chain ID's lock is free (their extraction was
    /// killed); returns how many.
    fn remove_stale_staging(&self) -> usize {
        let staging = self.root.join(STAGING);
        let Ok(entries) = std::fs::read_dir(&staging) else {
            return 0;
        };
        let mut removed = 0;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some((key, _)) = name.split_once('.') else {
                continue;
            };
            let lock = self.root.join(LOCKS).join(format!("{key}.lock"));
            if let Ok(Some(_held)) = fsutil::try_lock(&lock)
                && fsutil::remove_tree(&entry.path()).is_ok()
            {
                removed += 1;
            }
        }
        removed
    }

    async fn lock_store(&self, exclusive: bool) -> Result<File> {
        let path = self.root.join(STORE_LOCK);
        blocking(move || fsutil::lock(&path, exclusive)).await
    }
}

/// A staging directory, removed when dropped unless committed.
struct StagingDir {
    dir: Option<PathBuf>,
}

impl StagingDir {
    fn path(&self) -> &Path {
        self.dir.as_deref().unwrap_or(Path::new(""))
    }

    fn committed(mut self) {
        self.dir = None;
    }

    /// Removes it now, on this thread.
    fn discard(mut self) {
        if let Some(dir) = self.dir.take() {
            let _ = fsutil::remove_tree(&dir);
        }
    }
}

impl Drop for StagingDir {
    fn drop(&mut self) {
        if let Some(dir) = self.dir.take() {
            match tokio::runtime::Handle::try_current() {
                Ok(handle) => {
                    handle.spawn_blocking(move || fsutil::remove_tree(&dir));
                }
                Err(_) => {
                    let _ = fsutil::remove_tree(&dir);
                }
            }
        }
    }
}

/// Runs `work` on a blocking thread.
async fn blocking<T, F>(work: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(crate::bridge::join_error)?
}
