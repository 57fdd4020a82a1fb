//! Content-addressed storage for OCI content: the layer every other ocikit crate writes
//! through.
//!
//! One async trait, [`Store`], over three backends with the same semantics, proven by one
//! conformance suite that all of them run:
//!
//! - [`MemoryStore`]: `Bytes` in a map, for tests and embedding;
//! - [`FsStore`]: a directory laid out as an OCI image layout (`blobs/<alg>/<encoded>`),
//!   with atomic, durable writes and cross-process compare-and-swap for documents;
//! - `S3Store` (feature `s3`): an S3-compatible object store, for users who outgrow one
//!   machine.
//!
//! Blobs are immutable and named by digest; a [`BlobWriter`] hashes as it writes and
//! publishes only content that matches the digest and size it was promised. Documents
//! (`index.json`, a registry's tag lists) are small named byte strings updated by
//! compare-and-swap, so concurrent writers never lose each other's updates.
//!
//! ```
//! use ocikit_store::{DocumentKey, MemoryStore, Precondition, StoreExt, Store};
//! use tokio::io::AsyncWriteExt;
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let store = MemoryStore::new();
//!
//! // Stream a blob in; it becomes visible only once verified.
//! let expected = ocikit_digest::Digest::sha256(b"hello world");
//! let mut writer = store.writer().await?;
//! writer.write_all(b"hello world").await?;
//! writer.commit(&expected, 11).await?;
//! assert_eq!(store.stat(&expected).await?, Some(11));
//!
//! // Content that does not match is refused and leaves nothing behind.
//! let mut writer = store.writer().await?;
//! writer.write_all(b"hello w0rld").await?;
//! let wrong = ocikit_digest::Digest::sha256(b"something else");
//! assert!(writer.commit(&wrong, 11).await.is_err());
//! assert_eq!(store.stat(&wrong).await?, None);
//!
//! // Documents change by compare-and-swap.
//! let key = DocumentKey::new("index.json")?;
//! let v1 = store.write_document(&key, "{}".into(), Precondition::MustNotExist).await?;
//! store.write_document(&key, "[]".into(), Precondition::Matches(v1.clone())).await?;
//! let lost = store.write_document(&key, "?".into(), Precondition::Matches(v1)).await;
//! assert!(matches!(lost, Err(ocikit_store::Error::Conflict { .. })));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! # Features
//! - `s3`: the S3-compatible backend, through the `object_store` crate.
//! - `conformance`: the conformance suite, [`conformance`], for testing a backend.

#![cfg_attr(docsrs, feature(doc_cfg))]

mod clock;
#[cfg(feature = "conformance")]
pub mod conformance;
mod error;
mod ext;
pub mod fs;
pub mod memory;
#[cfg(feature = "s3")]
pub mod s3;
mod store;
mod writer;

pub use clock::Clock;
pub use error::{Error, Result};
pub use ext::{MAX_UPDATE_ATTEMPTS, StoreExt};
pub use fs::FsStore;
pub use memory::MemoryStore;
#[cfg(feature = "s3")]
pub use s3::S3Store;
pub use store::{
    Blob, Document, DocumentKey, LinkMode, LinkTrust, Linked, LocalBlobs, Precondition, Staging,
    Store, Version, resolve_range,
};
pub use writer::BlobWriter;

pub use ocikit_digest::{Algorithm, Digest};
