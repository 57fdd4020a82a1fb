//! Everything between a directory tree and an OCI layer blob, both ways.
//!
//! `ocikit-codec` is the third layer of ocikit: above [`ocikit_digest`] (which names and
//! verifies content), below `ocikit-layout` (which stores layers in images). It does no
//! storage of its own: it reads and writes [`std::io`] streams and directories, so a layer can
//! go to a file, a `Vec`, or a content store's blob writer alike.
//!
//! - [`compression`]: none / gzip / zstd, chosen from the media type and checked against the
//!   magic bytes; a [`Decoder`](compression::Decoder) under [`Limits`] (decompression bombs
//!   fail with a typed [`Error::LimitExceeded`]) and a parallel
//!   [`Encoder`](compression::Encoder). [`async_io`] (feature `tokio`) has the tokio twins.
//! - [`writer`]: [`LayerWriter`](writer::LayerWriter) takes a tar stream and yields the
//!   compressed blob plus its digest, size, diffID and media type from one pass, with the
//!   compression on worker threads.
//! - [`build`]: reproducible layers from a directory ([`build_layer`](build::build_layer)) and
//!   changesets with whiteouts from a lower and an upper tree
//!   ([`build_changeset`](build::build_changeset)).
//! - [`apply`]: [`apply_layer`](apply::apply_layer) applies a layer to a root filesystem with
//!   the image spec's whiteout semantics, resolving every path inside the root with
//!   fd-relative, no-follow operations.
//! - [`squash`]: a stack of layers merged into one tar stream, whiteouts resolved, in one
//!   streaming pass ([`squash_layer`](squash::squash_layer): straight into a layer writer).
//! - [`tar`]: the strict tar reader that applying, listing and checking layers (and
//!   `ocikit-layout`'s archive import) read through: entry by entry, under [`Limits`],
//!   refusing what tar parsers disagree on.
//!
//! Everything here is synchronous and CPU-bound: async callers run it on a blocking thread
//! (`tokio::task::spawn_blocking`), never inside a poll that a server shares.
//!
//! # Example
//!
//! Pack a directory into a gzip layer, then apply the layer to a fresh root:
//!
//! ```
//! # #[cfg(feature = "gzip")] {
//! use ocikit_codec::apply::{apply_layer, ApplyOptions};
//! use ocikit_codec::build::{build_layer, BuildOptions};
//! use ocikit_codec::compression::{Compression, Decoder};
//! use ocikit_codec::writer::{LayerOptions, LayerWriter};
//! use ocikit_codec::Limits;
//! use ocikit_digest::Digest;
//!
//! let tree = tempfile::tempdir()?;
//! std::fs::create_dir(tree.path().join("etc"))?;
//! std::fs::write(tree.path().join("etc/motd"), b"hello from a layer\n")?;
//!
//! // Tar, compress, and hash both sides in one pass.
//! let mut writer = LayerWriter::new(Vec::new(), LayerOptions::new(Compression::Gzip))?;
//! build_layer(tree.path(), &mut writer, &BuildOptions::new().with_source_date_epoch(Some(0)))?;
//! let (blob, layer) = writer.finish()?;
//! assert_eq!(layer.digest, Digest::sha256(&blob));
//!
//! // Decompress under the default limits and apply, checking the diffID on the way.
//! let root = tempfile::tempdir()?;
//! let tar = Decoder::for_media_type(&blob[..], layer.media_type, Limits::default())?;
//! let options = ApplyOptions::new().with_expected_diff_id(Some(layer.diff_id.clone()));
//! let report = apply_layer(root.path(), tar, &options)?;
//! assert_eq!(report.diff_id, layer.diff_id);
//! assert_eq!(std::fs::read(root.path().join("etc/motd"))?, b"hello from a layer\n");
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Features
//!
//! - `gzip` (default): gzip through flate2's pure-Rust zlib-rs backend.
//! - `zstd` (default): zstd through the zstd crate, multithreaded.
//! - `tokio`: async adapters over the codecs ([`async_io`]).

pub mod apply;
#[cfg(feature = "tokio")]
pub mod async_io;
pub mod build;
pub mod compression;
mod error;
#[cfg(feature = "__fuzz")]
#[doc(hidden)]
pub mod fuzz;
pub mod limits;
pub mod squash;
pub mod tar;
pub mod writer;

pub use error::{Error, InvalidEntry, Limit, Result};
pub use limits::Limits;
