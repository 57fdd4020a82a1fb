//! [`Layout`]: an OCI image layout on any store.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use ocikit_digest::oci_spec::image::Descriptor;
use ocikit_digest::{Digest, descriptor, json};
use ocikit_store::{
    DocumentKey, Error as StoreError, FsStore, Precondition, Store, StoreExt, Version,
};

use crate::document::{self, Document};
use crate::image::{ImageConfig, is_image_config};
use crate::index::Index;
use crate::staging::Staging;
use crate::{Error, Result};

/// The document key of `index.json`.
pub const INDEX_JSON: &str = "index.json";
/// The document key of the `oci-layout` file.
pub const OCI_LAYOUT: &str = "oci-layout";
/// The only image-layout version there is.
pub const LAYOUT_VERSION: &str = "1.0.0";
/// How often an `index.json` edit is retried after losing a compare-and-swap.
pub const MAX_EDIT_ATTEMPTS: usize = 1000;
/// Largest manifest, index or config read into memory (the distribution spec's minimum is
/// 4 MiB; real configs stay far below this).
pub const MAX_DOCUMENT_SIZE: u64 = ocikit_digest::document::MAX_DOCUMENT_SIZE;

fn no_index() -> Error {
    Error::NotALayout {
        reason: "no index.json".into(),
    }
}

fn key(name: &str) -> DocumentKey {
    // Both names are constants that pass the key grammar.
    DocumentKey::new(name).unwrap_or_else(|_| unreachable!("constant document key {name}"))
}

/// An OCI image layout on a store: `oci-layout`, `index.json` and `blobs/`.
///
/// Every edit of `index.json` is a compare-and-swap on the store (re-read, re-apply, write
/// if unchanged, retry otherwise), so many writers (threads, processes, machines on S3)
/// never lose each other's tags.
///
/// A layout keeps the last `index.json` it parsed (shared by its clones), with the version
/// the store gave it. A read ([`Layout::resolve`], [`Layout::index`], [`Layout::tags`]) asks
/// the store for the document's current version ([`Store::document_version`]: on the
/// filesystem, the file's metadata once it was read) and parses again only when it changed;
/// an edit applies itself to the kept index and writes it on the condition that the store
/// still holds that version, re-reading on a conflict. Another process, or another
/// [`Layout`] on the same directory, writing `index.json` is therefore always seen: the
/// versions are the content's (a hash, an ETag), never a guess.
#[derive(Clone, Debug)]
pub struct Layout {
    store: Arc<dyn Store>,
    index: IndexCache,
}

/// The last `index.json` a [`Layout`] (and its clones) parsed, with its store version.
#[derive(Clone, Default)]
struct IndexCache(Arc<Mutex<Option<CachedIndex>>>);

struct CachedIndex {
    version: Version,
    index: Index,
}

impl std::fmt::Debug for IndexCache {
    /// The version kept, not the index.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let version = self
            .0
            .lock()
            .ok()
            .and_then(|kept| kept.as_ref().map(|c| c.version.clone()));
        f.debug_tuple("IndexCache").field(&version).finish()
    }
}

impl IndexCache {
    /// `read` applied to the kept index if it is at `version`; `read` back otherwise.
    fn read<T, F>(&self, version: &Version, read: F) -> std::result::Result<T, F>
    where
        F: FnOnce(&Index) -> T,
    {
        let Ok(kept) = self.0.lock() else {
            return Err(read);
        };
        match kept.as_ref() {
            Some(c) if c.version == *version => Ok(read(&c.index)),
            _ => Err(read),
        }
    }

    /// Takes the kept index out (to edit it).
    fn take(&self) -> Option<CachedIndex> {
        self.0.lock().ok()?.take()
    }

    /// Keeps `index`, read or written at `version`.
    fn keep(&self, version: Version, index: Index) {
        if let Ok(mut kept) = self.0.lock() {
            *kept = Some(CachedIndex { version, index });
        }
    }
}

impl Layout {
    /// Opens the layout in `store`, creating `oci-layout` and an empty `index.json` when the
    /// store has none; an existing layout is validated, not overwritten.
    pub async fn create(store: impl Store + 'static) -> Result<Layout> {
        let layout = Layout {
            store: Arc::new(store),
            index: IndexCache::default(),
        };
        let marker = format!("{{\"imageLayoutVersion\":\"{LAYOUT_VERSION}\"}}");
        match layout
            .store
            .write_document(
                &key(OCI_LAYOUT),
                Bytes::from(marker),
                Precondition::MustNotExist,
            )
            .await
        {
            Ok(_) | Err(StoreError::Conflict { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let empty = Bytes::from(Index::empty().to_bytes()?);
        match layout
            .store
            .write_document(&key(INDEX_JSON), empty, Precondition::MustNotExist)
            .await
        {
            Ok(_) | Err(StoreError::Conflict { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        layout.check().await?;
        Ok(layout)
    }

    /// Starts a new layout in the local directory `path`, all or nothing: it is made in a
    /// staging directory beside `path` and appears there only when
    /// [`StagedLayout::commit`] renames it into place, whole; dropping the
    /// [`StagedLayout`] (or a failing commit) removes it, leaving `path` as it was.
    ///
    /// For a store on a local filesystem only ([`FsStore`]): a layout on another store has
    /// no directory to rename, and its writes are atomic one by one.
    ///
    /// `path` must not exist, or be an empty directory (a symbolic link to one is followed;
    /// a mount point is refused); anything else is [`Error::TargetExists`]
    /// ([`Layout::create_or_stage`] opens an existing layout in place instead). Missing
    /// parent directories are created only by the commit. The staging directory,
    /// `.NAME.ocikit-staging-RANDOM` in the parent (or the nearest existing ancestor), holds
    /// a `lock` file and the layout in its `layout` subdirectory, which is what is renamed:
    /// nothing of the staging ends up in the layout. It is locked (`flock`) while the
    /// [`StagedLayout`] lives, so one left by a killed process is found stale and removed
    /// by the next `create_staged` of the same path, while one still in use is left alone:
    /// the mechanism [`crate::unpack::unpack_staged`] uses too.
    pub async fn create_staged(path: impl AsRef<Path>) -> Result<StagedLayout> {
        let target = path.as_ref().to_path_buf();
        let staging =
            tokio::task::spawn_blocking(move || Staging::prepare(&target, "layout", "create"))
                .await
                .map_err(crate::bridge::join_error)??;
        let root = staging.path();
        let layout = Layout::create(FsStore::open(&root).await?).await?;
        Ok(StagedLayout {
            path: staging.target().to_path_buf(),
            layout,
            staging: Some(staging),
        })
    }

    /// The layout to write into at the local directory `path` (on an [`FsStore`]): a
    /// directory that is there and not empty is opened in place, as [`Layout::create`]
    /// opens it (its writes are atomic, so a failed run changes no tag in it); anything else
    /// is a new layout, staged as [`Layout::create_staged`] stages it. Either way, call
    /// [`StagedLayout::commit`] once everything is written.
    pub async fn create_or_stage(path: impl AsRef<Path>) -> Result<StagedLayout> {
        let path = path.as_ref();
        let existing = match std::fs::symlink_metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => return Err(crate::staging::io_error("inspect", path, e)),
            Ok(meta) if meta.is_dir() => std::fs::read_dir(path)
                .map_err(|e| crate::staging::io_error("read", path, e))?
                .next()
                .is_some(),
            // A symbolic link is staged onto when it leads to an empty directory, refused
            // otherwise; a file is no layout, and FsStore says so.
            Ok(meta) if meta.file_type().is_symlink() => match std::fs::read_dir(path) {
                Ok(mut entries) => entries.next().is_some(),
                Err(_) => true,
            },
            Ok(_) => true,
        };
        if !existing {
            return Layout::create_staged(path).await;
        }
        let layout = Layout::create(FsStore::open(path).await?).await?;
        Ok(StagedLayout {
            path: path.to_path_buf(),
            layout,
            staging: None,
        })
    }

    /// Opens an existing layout, checking `oci-layout` and `index.json` (SPEC C-L01, C-L03).
    pub async fn open(store: impl Store + 'static) -> Result<Layout> {
        let layout = Layout {
            store: Arc::new(store),
            index: IndexCache::default(),
        };
        layout.check().await?;
        Ok(layout)
    }

    async fn check(&self) -> Result<()> {
        let marker = self
            .store
            .read_document(&key(OCI_LAYOUT))
            .await?
            .ok_or_else(|| Error::NotALayout {
                reason: "no oci-layout file".into(),
            })?;
        let value = json::parse_strict(&marker.bytes).map_err(|_| Error::NotALayout {
            reason: "oci-layout is not valid JSON".into(),
        })?;
        match value.get("imageLayoutVersion").and_then(|v| v.as_str()) {
            Some(LAYOUT_VERSION) => {}
            Some(other) => {
                return Err(Error::NotALayout {
                    reason: format!("unsupported imageLayoutVersion {other:?}"),
                });
            }
            None => {
                return Err(Error::NotALayout {
                    reason: "oci-layout has no imageLayoutVersion string".into(),
                });
            }
        }
        self.index().await.map(|_| ())
    }

    /// The store underneath.
    pub fn store(&self) -> &dyn Store {
        &*self.store
    }

    /// The current `index.json`.
    pub async fn index(&self) -> Result<Index> {
        self.with_index(Index::clone).await
    }

    /// `read` applied to the current `index.json`: the kept one when the store's version of
    /// the document is the kept one's, else the document read and parsed (and kept).
    async fn with_index<T>(&self, read: impl FnOnce(&Index) -> T) -> Result<T> {
        let key = key(INDEX_JSON);
        let Some(version) = self.store.document_version(&key).await? else {
            return Err(no_index());
        };
        let read = match self.index.read(&version, read) {
            Ok(out) => return Ok(out),
            Err(read) => read,
        };
        let (version, index) = self.read_index(&key).await?;
        let out = read(&index);
        self.index.keep(version, index);
        Ok(out)
    }

    /// Reads and parses `index.json` from the store.
    async fn read_index(&self, key: &DocumentKey) -> Result<(Version, Index)> {
        let doc = self.store.read_document(key).await?.ok_or_else(no_index)?;
        Ok((doc.version, Index::parse(&doc.bytes)?))
    }

    /// Edits `index.json` by compare-and-swap: `edit` is applied to the current index and
    /// the result written only if nobody wrote in between; otherwise it is re-read and `edit`
    /// applied again. `edit` returns whether it changed anything (nothing is written if not).
    /// Returns the index as written.
    ///
    /// The edit starts from the index this layout kept (see [`Layout`]) without reading the
    /// document: the write's condition is the kept version, so an index changed meanwhile
    /// (by another process or handle) is a conflict, and the edit is applied again to the
    /// document read afresh. An edit that changes nothing is checked against the store's
    /// current version the same way before its result is returned.
    pub async fn edit_index<F>(&self, edit: F) -> Result<Index>
    where
        F: FnMut(&mut Index) -> Result<bool>,
    {
        self.edit_kept(edit, Index::clone).await
    }

    /// [`Layout::edit_index`], returning `out` of the index as written (or as found, when
    /// `edit` changed nothing).
    async fn edit_kept<F, T>(&self, mut edit: F, out: impl Fn(&Index) -> T) -> Result<T>
    where
        F: FnMut(&mut Index) -> Result<bool>,
    {
        let key = key(INDEX_JSON);
        let mut afresh = false;
        for _ in 0..MAX_EDIT_ATTEMPTS {
            let kept = if afresh { None } else { self.index.take() };
            let from_kept = kept.is_some();
            let (version, mut index) = match kept {
                Some(CachedIndex { version, index }) => (version, index),
                None => self.read_index(&key).await?,
            };
            if !edit(&mut index)? {
                // Unchanged: only an index known to be current is an answer.
                if from_kept && self.store.document_version(&key).await?.as_ref() != Some(&version)
                {
                    afresh = true;
                    continue;
                }
                let result = out(&index);
                self.index.keep(version, index);
                return Ok(result);
            }
            let bytes = Bytes::from(index.to_bytes()?);
            match self
                .store
                .write_document(&key, bytes, Precondition::Matches(version))
                .await
            {
                Ok(written) => {
                    let result = out(&index);
                    self.index.keep(written, index);
                    return Ok(result);
                }
                Err(StoreError::Conflict { .. }) => afresh = true,
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Contended {
            attempts: MAX_EDIT_ATTEMPTS,
        })
    }

    /// Points `tag` at `descriptor` (moving it from any entry that had it).
    ///
    /// A descriptor whose digest ocikit cannot verify (an unregistered algorithm) is refused
    /// with [`Error::Unverifiable`]: a tag names content that reads can check.
    pub async fn set_tag(&self, tag: &str, descriptor: &Descriptor) -> Result<()> {
        crate::index::validate_tag(tag)?;
        let digest = digest_of(descriptor)?;
        if !digest.is_supported() {
            return Err(Error::Unverifiable { digest });
        }
        self.edit_kept(
            |index| index.set_tag(tag, descriptor).map(|()| true),
            |_| (),
        )
        .await
    }

    /// Removes `tag`; returns whether it existed. The image's blobs stay until garbage
    /// collection.
    pub async fn remove_tag(&self, tag: &str) -> Result<bool> {
        let mut removed = false;
        self.edit_kept(
            |index| {
                removed = index.remove_tag(tag);
                Ok(removed)
            },
            |_| (),
        )
        .await?;
        Ok(removed)
    }

    /// The descriptor a tag points at.
    pub async fn resolve(&self, tag: &str) -> Result<Descriptor> {
        crate::index::validate_tag(tag)?;
        self.with_index(|index| index.find(tag).cloned())
            .await?
            .ok_or_else(|| Error::TagNotFound { tag: tag.into() })
    }

    /// Every tag and the descriptor it points at, in index order.
    pub async fn tags(&self) -> Result<Vec<(String, Descriptor)>> {
        self.with_index(|index| {
            index
                .tags()
                .into_iter()
                .map(|(name, d)| (name.to_string(), d.clone()))
                .collect()
        })
        .await
    }

    /// The images `index.json` lists, as a listing shows them, in index order: every tag
    /// with the first entry carrying it (as [`Layout::tags`]), and every untagged entry (as
    /// `skopeo copy … oci:DIR` and untagged oci-archives leave them) with `None`, unless a
    /// tag names the same digest or an earlier untagged entry listed it already.
    ///
    /// An untagged manifest or index with a `subject` is an artifact attached to another
    /// image (see [`Layout::attach`]) and is not listed ([`Layout::referrers`] lists it);
    /// telling that needs the document, so each untagged manifest or index is read, verified
    /// as [`Layout::read_document`] reads it, and its errors (a manifest that is not stored,
    /// corrupt or unverifiable) are this listing's. Entries of other media types are listed
    /// unread.
    pub async fn entries(&self) -> Result<Vec<(Option<String>, Descriptor)>> {
        let index = self.index().await?;
        let tagged: std::collections::HashSet<&str> = index
            .tags()
            .into_iter()
            .map(|(_, d)| d.digest().as_ref())
            .collect();
        let mut tags_seen = std::collections::HashSet::new();
        let mut untagged_seen = std::collections::HashSet::new();
        let mut listed = Vec::new();
        for (tag, descriptor) in index.entries() {
            match tag {
                Some(tag) => {
                    if tags_seen.insert(tag) {
                        listed.push((Some(tag.to_string()), descriptor.clone()));
                    }
                }
                None => {
                    let digest = descriptor.digest().as_ref();
                    if tagged.contains(digest) || !untagged_seen.insert(digest) {
                        continue;
                    }
                    if self.read_document(descriptor).await?.subject().is_some() {
                        continue;
                    }
                    listed.push((None, descriptor.clone()));
                }
            }
        }
        Ok(listed)
    }

    /// Stores `bytes` as a blob and returns its descriptor.
    pub async fn put_blob(&self, media_type: &str, bytes: &[u8]) -> Result<Descriptor> {
        let digest = self.store.put_bytes(bytes).await?;
        descriptor::new(media_type, &digest, bytes.len() as u64).map_err(|e| {
            Error::InvalidDocument {
                digest,
                reason: "cannot describe the blob".into(),
                source: Some(Box::new(e.into())),
            }
        })
    }

    /// Stores a JSON document (manifest, index, config) as canonical JSON and returns its
    /// descriptor: the same value always gives the same digest.
    pub async fn put_json<T: serde::Serialize + ?Sized>(
        &self,
        media_type: &str,
        value: &T,
    ) -> Result<Descriptor> {
        let bytes = json::to_canonical_vec(value).map_err(|e| Error::InvalidDocument {
            digest: Digest::sha256(b""),
            reason: "cannot serialise".into(),
            source: Some(Box::new(e.into())),
        })?;
        self.put_blob(media_type, &bytes).await
    }

    /// Reads the blob a descriptor points at, exactly as stored, checking size and digest
    /// (SPEC C-D10, C-L07). Blobs larger than [`MAX_DOCUMENT_SIZE`] are refused unread, and
    /// so are blobs under a digest algorithm ocikit cannot compute ([`Error::Unverifiable`]):
    /// what this returns was always verified.
    pub async fn read_blob(&self, descriptor: &Descriptor) -> Result<Bytes> {
        let digest = digest_of(descriptor)?;
        let stored = self.store.require(&digest).await?;
        if !digest.is_supported() {
            return Err(Error::Unverifiable { digest });
        }
        if stored != descriptor.size() {
            return Err(Error::Store(StoreError::SizeMismatch {
                expected: descriptor.size(),
                actual: stored,
            }));
        }
        let bytes = self
            .store
            .get_bytes(&digest, MAX_DOCUMENT_SIZE.min(descriptor.size()))
            .await?
            .ok_or(Error::Store(StoreError::NotFound { digest }))?;
        Ok(bytes)
    }

    /// Reads and parses the image config a descriptor points at (verified, as
    /// [`Layout::read_blob`] does, and strict: see [`ImageConfig::parse`], which refuses
    /// duplicate keys among the rest). `None` when the descriptor's media type is not an
    /// image config (an artifact's config), which is then not read.
    pub async fn read_image_config(&self, descriptor: &Descriptor) -> Result<Option<ImageConfig>> {
        if !is_image_config(descriptor.media_type().as_ref()) {
            return Ok(None);
        }
        let digest = digest_of(descriptor)?;
        let bytes = self.read_blob(descriptor).await?;
        ImageConfig::parse(&digest, &bytes).map(Some)
    }

    /// Reads and parses the manifest or index a descriptor points at (verified, strict: see
    /// [`Document::parse`]); any other media type is [`Document::Opaque`] and is not read.
    pub async fn read_document(&self, descriptor: &Descriptor) -> Result<Document> {
        if !document::is_document(descriptor.media_type().as_ref()) {
            return Ok(Document::Opaque);
        }
        let bytes = self.read_blob(descriptor).await?;
        document::parse(descriptor, bytes)
    }
}

/// A layout on a local filesystem being written, made by [`Layout::create_staged`] or
/// [`Layout::create_or_stage`]: write through [`StagedLayout::layout`], then
/// [`StagedLayout::commit`]. A new layout lives in a staging directory until the commit and
/// is removed with it when this is dropped uncommitted.
#[derive(Debug)]
pub struct StagedLayout {
    /// Where the layout is (or goes).
    path: PathBuf,
    /// The layout written through (in the staging directory when new).
    layout: Layout,
    /// The staging directory of a new layout; `None` for one opened in place.
    staging: Option<Staging>,
}

impl StagedLayout {
    /// The layout to write through. For a new layout it is valid until
    /// [`StagedLayout::commit`]; use the layout the commit returns afterwards.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Whether the layout is new (staged), not an existing one opened in place.
    pub fn is_new(&self) -> bool {
        self.staging.is_some()
    }

    /// Where the layout appears.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Gives up a new layout: its staging directory is removed before this returns (dropping
    /// the [`StagedLayout`] removes it too, on a blocking thread, without waiting). A layout
    /// opened in place is left as it is.
    pub async fn discard(self) {
        let StagedLayout {
            layout, staging, ..
        } = self;
        drop(layout);
        if let Some(staging) = staging {
            let _ = tokio::task::spawn_blocking(move || staging.discard()).await;
        }
    }

    /// Puts a new layout in place (the mode of an empty directory it replaces is kept; the
    /// filesystem is synced, missing parents are created, the layout renamed into place and
    /// the parent directory synced) and returns it opened there; for a layout opened in
    /// place, returns it. On failure the staging directory is removed and the target is as
    /// it was.
    pub async fn commit(self) -> Result<Layout> {
        let StagedLayout {
            path,
            layout,
            staging,
        } = self;
        let Some(staging) = staging else {
            return Ok(layout);
        };
        drop(layout);
        tokio::task::spawn_blocking(move || {
            if let Some(mode) = staging.replaced_mode() {
                use std::os::unix::fs::PermissionsExt;
                let root = staging.path();
                std::fs::set_permissions(&root, std::fs::Permissions::from_mode(mode))
                    .map_err(|e| crate::staging::io_error("set the mode of", &root, e))?;
            }
            staging.commit()
        })
        .await
        .map_err(crate::bridge::join_error)??;
        Layout::open(FsStore::open(&path).await?).await
    }
}

/// The digest of a descriptor, parsed.
fn digest_of(descriptor: &Descriptor) -> Result<Digest> {
    descriptor::digest_of(descriptor).map_err(|e| Error::InvalidDocument {
        digest: Digest::sha256(b""),
        reason: "descriptor digest is invalid".into(),
        source: Some(Box::new(e.into())),
    })
}
