//! OCI container images and artifacts in Rust: the facade over the ocikit crates.
//!
//! ocikit is a stack of small crates, each usable on its own; this crate re-exports them by
//! feature so that one dependency line gives you the layers you need:
//!
//! | module | crate | feature | what it is for |
//! |---|---|---|---|
//! | [`digest`] | `ocikit-digest` | always | digests, hashing and verifying readers, descriptors, media types, platforms, image references, canonical JSON |
//! | `store` | `ocikit-store` | `fs` | content-addressed stores: filesystem, memory, S3 (`s3`) |
//! | `codec` | `ocikit-codec` | `codec` (with `fs`) | layer compression (`gzip`, `zstd`), one-pass layer writers, reproducible layers and changesets, the hardened layer applier |
//! | `layout` | `ocikit-layout` | `fs` | OCI image layouts on any store: tags, images, platforms, artifacts and referrers, fsck, GC, copy, archives |
//! | `registry` | `ocikit-registry` | `registry` | the OCI Distribution registry server over any store, on a directory or (`s3`) a bucket, as `ocikit serve` runs it |
//! | `client` | `ocikit-client` | `client` | the OCI Distribution registry client: pull into layouts, push from them |
//! | `transport` | `ocikit-transport` | `transport` | copies between layouts, oci-archive and docker-archive files and registries (`Location`, `copy`) |
//! | `sign` | `ocikit-sign` | `sign` | cosign-compatible keys, signatures and `policy.json` evaluation |
//!
//! Default features: `fs` and `gzip`. Others: `zstd`, `s3`, `tokio` (async adapters of the
//! digest and codec streams), `registry` (the registry server, as `ocikit::registry`, with
//! `ocikit::store` but without layouts or codecs), `client` (the registry client, as
//! `ocikit::client`, with `fs`) and `transport` (copies between any two locations, as
//! `ocikit::transport`, with `client`).
//!
//! # A first program
//!
//! Create a layout on disk, store a blob, tag it, and find it again:
//!
//! ```
//! # #[cfg(feature = "fs")]
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use ocikit::layout::Layout;
//! use ocikit::store::FsStore;
//!
//! let dir = tempfile::tempdir()?;
//! let layout = Layout::create(FsStore::open(dir.path().join("layout")).await?).await?;
//! let blob = layout.put_blob("application/vnd.oci.empty.v1+json", b"{}").await?;
//! layout.set_tag("latest", &blob).await?;
//! assert_eq!(layout.resolve("latest").await?.digest(), blob.digest());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! # Build, check and unpack an image
//!
//! ```
//! # #[cfg(feature = "fs")]
//! # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
//! use ocikit::layout::{ImageBuilder, LayerSpec, Layout, UnpackOptions};
//! use ocikit::store::FsStore;
//!
//! let dir = tempfile::tempdir()?;
//! let rootfs = dir.path().join("rootfs");
//! std::fs::create_dir_all(rootfs.join("etc"))?;
//! std::fs::write(rootfs.join("etc/motd"), "hello\n")?;
//!
//! let layout = Layout::create(FsStore::open(dir.path().join("images")).await?).await?;
//! let mut image = ImageBuilder::new(&layout);
//! image.cmd(["/bin/sh"]).env("GREETING", "hi");
//! image.add_layer_from_dir(&rootfs, LayerSpec::new()).await?;
//! let manifest = image.write_and_tag("v1").await?;
//!
//! assert!(layout.fsck(&Default::default()).await?.is_clean());
//! let unpacked = dir.path().join("unpacked");
//! // All or nothing: `unpacked` appears only once the whole tree is there.
//! ocikit::layout::unpack_staged(&layout, &manifest, &unpacked, &UnpackOptions::new()).await?;
//! assert_eq!(std::fs::read_to_string(unpacked.join("etc/motd"))?, "hello\n");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! # Verifying content
//!
//! ```
//! use ocikit::digest::{Digest, Reference};
//!
//! let digest = Digest::sha256(b"hello");
//! assert_eq!(digest.algorithm().as_str(), "sha256");
//! let reference: Reference = "ghcr.io/ocikit/demo:v1".parse()?;
//! assert_eq!(reference.tag(), Some("v1"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub use ocikit_digest as digest;

#[cfg(feature = "client")]
pub use ocikit_client as client;
#[cfg(feature = "codec")]
pub use ocikit_codec as codec;
#[cfg(feature = "fs")]
pub use ocikit_layout as layout;
#[cfg(feature = "registry")]
pub use ocikit_registry as registry;
#[cfg(feature = "sign")]
pub use ocikit_sign as sign;
#[cfg(any(feature = "fs", feature = "registry"))]
pub use ocikit_store as store;
#[cfg(feature = "transport")]
pub use ocikit_transport as transport;
