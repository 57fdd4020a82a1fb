//! OCI image layouts on any ocikit store: the index and its tags, manifests, images,
//! artifacts and referrers, fsck, garbage collection, copy, recompression and archives;
//! and the layout verbs of `ocikit` as one call each: [`build()`] (with
//! [`ConfigChanges`]), [`unpack_staged`], [`diff`] and [`repack()`].
//!
//! A [`Layout`] sits on any [`ocikit_store::Store`]: a directory ([`ocikit_store::FsStore`],
//! the usual `oci:DIR` layout), memory, or an S3 bucket. Every edit of `index.json` is a
//! compare-and-swap, so concurrent writers never lose tags.
//!
//! ```
//! use ocikit_layout::Layout;
//! use ocikit_store::MemoryStore;
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let layout = Layout::create(MemoryStore::new()).await?;
//! let config = layout.put_blob("application/vnd.oci.empty.v1+json", b"{}").await?;
//! layout.set_tag("v1", &config).await?;
//! assert_eq!(layout.resolve("v1").await?.digest(), config.digest());
//! assert!(layout.resolve("../etc").await.is_err());
//! # Ok::<(), ocikit_layout::Error>(())
//! # }).unwrap();
//! ```

pub mod archive;
pub mod artifact;
mod bridge;
pub mod build;
pub mod convert;
pub mod copy;
pub mod document;
mod error;
pub mod fsck;
#[cfg(feature = "__fuzz")]
#[doc(hidden)]
pub mod fuzz;
pub mod gc;
pub mod image;
pub mod index;
mod layout;
pub mod platform;
pub mod progress;
pub mod recompress;
pub mod referrers;
pub mod repack;
pub mod snapshot;
mod source;
pub mod staging;
pub mod unpack;

pub use artifact::Artifact;
pub use build::{BuildReport, BuildRequest, BuiltLayer, build, build_at};
pub use copy::{CopyOptions, CopyReport, copy_all, copy_graph, copy_image, copy_tag};
pub use document::Document;
pub use error::{Error, Result};
pub use fsck::{FsckOptions, FsckReport, Problem, ProblemKind};
pub use gc::{GcOptions, GcReport};
pub use image::{ConfigChanges, ImageBuilder, ImageConfig, IndexBuilder, LayerSpec};
pub use index::{Index, REF_NAME, validate_tag};
pub use layout::{
    INDEX_JSON, LAYOUT_VERSION, Layout, MAX_DOCUMENT_SIZE, MAX_EDIT_ATTEMPTS, OCI_LAYOUT,
    StagedLayout,
};
pub use platform::{PlatformQuery, ResolvedImage, resolve};
pub use progress::{Event, Operation, Progress};
pub use recompress::{RecompressOptions, RecompressReport, recompress};
pub use repack::{
    Change, ChangeKind, DiffOptions, DiffReport, RepackOptions, RepackReport, diff, repack,
};
pub use snapshot::{
    PrepareOptions, PrepareReport, SnapshotGcReport, SnapshotInfo, SnapshotOptions, SnapshotStore,
    WhiteoutForm,
};
pub use staging::Scratch;
pub use unpack::{
    LayerSource, UnpackOptions, UnpackReport, unpack, unpack_staged, unpack_staged_from,
    unpack_tag, unpack_tag_staged,
};
