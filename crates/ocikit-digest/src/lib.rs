//! Naming and verifying OCI content: the bottom layer of ocikit.
//!
//! Every other ocikit crate names content with this crate's [`Digest`], checks it with its
//! hashers and verifying readers, and describes it with its descriptors and media types.
//! It does no I/O of its own; it has no async runtime unless the `tokio` feature asks for
//! the async twins of its readers and writers.
//!
//! - [`Digest`] and [`Algorithm`]: digests parsed exactly per the image spec, with a
//!   path-safe view for `blobs/<alg>/<encoded>`.
//! - [`Hasher`], [`DigestReader`], [`DigestWriter`], [`VerifyingReader`]: streaming hashing,
//!   and a reader that never yields more than the declared size and fails at the end on a
//!   size or digest mismatch.
//! - [`media_type`], [`descriptor`], [`platform`]: media-type constants and classification,
//!   descriptor checks, platform helpers, over the `oci-spec` types.
//! - [`document`] and [`graph`]: the one strict parser of manifests and indexes, and the
//!   one graph walk over them, with one set of limits.
//! - [`reference`](mod@reference): image references and the distribution spec's name and tag grammars.
//! - [`json`]: canonical JSON for documents ocikit writes, and strict (I-JSON) parsing.
//!
//! ```
//! use std::io::Read;
//! use ocikit_digest::{Digest, VerifyingReader};
//!
//! let blob = b"hello world";
//! let digest = Digest::sha256(blob);
//! assert_eq!(digest.blob_path(),
//!     "blobs/sha256/b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9");
//!
//! // Reading through a verifying reader succeeds for the right bytes...
//! let mut out = Vec::new();
//! VerifyingReader::new(&blob[..], digest.clone(), 11)?.read_to_end(&mut out)?;
//! assert_eq!(out, blob);
//!
//! // ...and fails at the end for tampered ones.
//! let err = VerifyingReader::new(&b"hello w0rld"[..], digest, 11)?
//!     .read_to_end(&mut Vec::new())
//!     .unwrap_err();
//! assert!(matches!(
//!     err.get_ref().and_then(|e| e.downcast_ref()),
//!     Some(ocikit_digest::Error::DigestMismatch { .. })
//! ));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Features
//! - `tokio`: [`AsyncDigestReader`], [`AsyncDigestWriter`] and [`AsyncVerifyingReader`],
//!   over tokio's `AsyncRead`/`AsyncWrite`.

#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod algorithm;
#[cfg(feature = "tokio")]
mod async_io;
pub mod descriptor;
pub mod digest;
pub mod document;
mod error;
#[cfg(feature = "__fuzz")]
#[doc(hidden)]
pub mod fuzz;
pub mod graph;
mod hash;
mod io;
pub mod json;
pub mod media_type;
pub mod platform;
pub mod reference;

pub use algorithm::Algorithm;
#[cfg(feature = "tokio")]
pub use async_io::{AsyncDigestReader, AsyncDigestWriter, AsyncVerifyingReader};
pub use digest::Digest;
pub use error::{Error, Result};
pub use hash::Hasher;
pub use io::{DigestReader, DigestWriter, VerifyingReader, read_verified};
pub use reference::Reference;

/// The `oci-spec` crate, re-exported so callers use the same version of its types.
pub use oci_spec;
