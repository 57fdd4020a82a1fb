//! Images between any two places: OCI image layouts, oci-archive and docker-archive files,
//! and registries, named as skopeo names them (containers/image's transports).
//!
//! This is the layer above the layout ([`ocikit_layout`]) and the registry client
//! ([`ocikit_client`]): a [`Location`] says where an image is (`oci:PATH[:TAG|@DIGEST]`,
//! `oci-archive:FILE[:TAG|@DIGEST]`, `docker-archive:FILE[:NAME[:TAG]]`,
//! `docker://HOST[:PORT]/NAME[:TAG|@DIGEST]`), and [`copy`] moves images from any location
//! to any other: platform selection, recompression, tags, per-side registry options, and
//! progress events delivered to a [`Progress`] sink the caller supplies. Every blob is
//! verified on the way; a failed copy tags nothing and leaves a new layout absent. The
//! `ocikit copy`, `pull`, `push`, `import` and `export` commands are this function.
//!
//! ```
//! use ocikit_codec::compression::Compression;
//! use ocikit_layout::{ImageBuilder, LayerSpec, Layout};
//! use ocikit_store::FsStore;
//! use ocikit_transport::{CopyOptions, Location, copy};
//!
//! # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
//! let dir = tempfile::tempdir()?;
//! let rootfs = dir.path().join("rootfs");
//! std::fs::create_dir_all(&rootfs)?;
//! std::fs::write(rootfs.join("hello"), "hi\n")?;
//! let layout = Layout::create(FsStore::open(dir.path().join("images")).await?).await?;
//! let mut image = ImageBuilder::new(&layout);
//! image.add_layer_from_dir(&rootfs, LayerSpec::new().compression(Compression::None)).await?;
//! image.write_and_tag("v1").await?;
//!
//! // A layout's image into an oci-archive, and back into a new layout.
//! let source: Location = format!("oci:{}:v1", dir.path().join("images").display()).parse()?;
//! let archive: Location = format!("oci-archive:{}", dir.path().join("v1.tar").display()).parse()?;
//! let report = copy(&source, &archive, &CopyOptions::new()).await?;
//! assert_eq!(report.image_count, 1);
//! let back: Location = format!("oci:{}", dir.path().join("copy").display()).parse()?;
//! copy(&archive, &back, &CopyOptions::new()).await?;
//! assert_eq!(report.images[0].to_string(), format!("v1 {}", report.images[0].root.digest()));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

// The layout's and the client's errors are carried inline, so that callers find them (and
// downcast to them) along the source chain; a copy is I/O-bound, a larger `Err` costs nothing.
#![allow(clippy::result_large_err)]

mod access;
pub mod artifact;
mod blob;
mod build;
mod copy;
pub mod copy_referrers;
mod copy_signatures;
mod error;
mod export;
mod image;
pub mod index_edit;
mod inspect;
mod layouts;
mod location;
mod manage;
mod open;
mod progress;
#[cfg(feature = "proxy")]
pub mod proxy;
#[cfg(feature = "sign")]
pub mod signing;
pub mod surgery;
pub mod sync;
pub mod tag_select;
#[cfg(feature = "sign")]
mod trust;
mod unpack;

pub use access::RegistryOptions;
pub use artifact::{
    ArtifactError, ArtifactFile, ArtifactLayer, ArtifactPullOptions, ArtifactPulled,
    ArtifactPushOptions, ArtifactPushed, TitleProblem, artifact_pull, artifact_push,
};
pub use blob::{cat, write_blob};
pub use build::{Built, BuiltLayer, build};
pub use copy::{CopiedImage, CopyOptions, CopyReport, ImageName, copy};
pub use error::{Error, Operation, Result};
pub use export::{ExportOptions, ExportReport, export, export_to_path};
pub use image::{MAX_REFERRER_DEPTH, ReferrerNode, open_image, referrers, referrers_tree};
pub use index_edit::{
    IndexAnnotations, IndexOptions, IndexReport, index_annotate, index_append, index_create,
    index_remove,
};
pub use inspect::{
    BlobSummary, ImageSummary, IndexEntry, IndexSummary, RepositoryTags, Summary, inspect,
    inspect_config, inspect_raw, tags, tags_matching,
};
pub use layouts::{Attached, ImageEntry, attach, fsck, gc, init, list_images, tag, untag};
pub use location::{Location, LocationError, LocationErrorKind, Selector};
pub use manage::{Catalog, CatalogOptions, DeleteOptions, DeleteReport, catalog, delete};
pub use open::{open_layout, resolve};
pub use progress::{Progress, Stage};
#[cfg(feature = "sign")]
pub use signing::{
    GeneratedKeys, RejectedSignature, SignOptions, SignReport, SigningError, VerifiedPayload,
    VerifyOptions, VerifyReport, generate_key_files, sign, verify,
};
pub use surgery::{
    AppendOptions, EditOptions, EditReport, FlattenOptions, ImageEdit, LayerSource, MutateOptions,
    MutateReport, RebaseOptions, append, edit_image, flatten, mutate, parse_created, rebase,
};
pub use sync::{
    SyncDestination, SyncEntry, SyncEvent, SyncFile, SyncFileError, SyncFileErrorKind, SyncOptions,
    SyncOutcome, SyncProgress, SyncReport, SyncSource, sync,
};
pub use tag_select::{TagOrder, TagSelection, TagSelectionError, TagSelectionErrorKind};
#[cfg(feature = "sign")]
pub use trust::{PolicyAccepted, check_policy, load_policy};
pub use unpack::{DEFAULT_PREFETCH, UnpackImageOptions, UnpackImageReport, unpack};
