//! Building images and multi-platform indexes in a layout.
//!
//! [`ImageBuilder`] starts a new image ([`ImageBuilder::new`]) or one based on an image of
//! the layout ([`ImageBuilder::from_image`], [`ImageBuilder::from_tag`]: its config, layers
//! and history are carried over), adds layers — from a directory, a tar stream, or a blob
//! already stored — each with a history entry, edits the config (entrypoint, cmd, env,
//! labels...) and writes config and manifest as canonical JSON: the same inputs always give
//! the same manifest digest.
//!
//! Layers are built, compressed and hashed on a blocking thread (`spawn_blocking`) and
//! streamed into the store through a bounded channel: memory stays bounded whatever the
//! layer's size, and a layer that fails on either side leaves nothing published.
//!
//! [`IndexBuilder`] gathers image manifests (with their platforms) into an image index.
//!
//! ```
//! use ocikit_layout::image::{ImageBuilder, LayerSpec};
//! use ocikit_layout::Layout;
//! use ocikit_store::MemoryStore;
//!
//! # #[cfg(feature = "gzip")]
//! # tokio::runtime::Builder::new_multi_thread().build().unwrap().block_on(async {
//! let layout = Layout::create(MemoryStore::new()).await?;
//! let tree = tempfile::tempdir().unwrap();
//! std::fs::write(tree.path().join("hello.txt"), b"hello\n").unwrap();
//!
//! let mut image = ImageBuilder::new(&layout);
//! image
//!     .platform(&ocikit_digest::platform::parse("linux/amd64").unwrap())
//!     .source_date_epoch(Some(0))
//!     .env("PATH", "/usr/bin:/bin")
//!     .cmd(["/bin/sh"]);
//! image
//!     .add_layer_from_dir(tree.path(), LayerSpec::new().created_by("COPY hello.txt /"))
//!     .await?;
//! let manifest = image.write_and_tag("v1").await?;
//! assert_eq!(layout.resolve("v1").await?.digest(), manifest.digest());
//! # Ok::<(), ocikit_layout::Error>(())
//! # }).unwrap();
//! ```

mod builder;
mod changes;
mod config;
mod index;

pub use builder::{ImageBuilder, LayerSpec};
pub use changes::{ChangeErrorKind, ConfigChanges};
pub use config::ImageConfig;
pub use index::IndexBuilder;

use ocikit_digest::{Digest, media_type};

use crate::Error;

/// The annotation naming the digest of the image an image was built on.
pub const BASE_DIGEST_ANNOTATION: &str = "org.opencontainers.image.base.digest";

/// Comment of the history entries made up for base layers that had none, so that history
/// and layers stay consistent.
pub const MISSING_HISTORY_COMMENT: &str = "layer without recorded history";

fn invalid_config(digest: &Digest, reason: impl Into<String>) -> Error {
    Error::InvalidDocument {
        digest: digest.clone(),
        reason: reason.into(),
        source: None,
    }
}

fn invalid_image(reason: impl Into<String>) -> Error {
    Error::InvalidImage {
        reason: reason.into(),
    }
}

/// `time` as a config's `created` (RFC 3339, whole seconds, UTC), or `None` outside the
/// years 0000-9999.
fn format_created(time: std::time::SystemTime) -> Option<String> {
    // Whole seconds, rounded down, without chrono's `From<SystemTime>` (which panics out
    // of its range).
    let secs = match time.duration_since(std::time::UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).ok()?,
        Err(before) => {
            let before = before.duration();
            let whole = i64::try_from(before.as_secs()).ok()?;
            let partial = i64::from(before.subsec_nanos() > 0);
            whole.checked_add(partial)?.checked_neg()?
        }
    };
    format_created_utc(chrono::DateTime::from_timestamp(secs, 0)?)
}

fn format_created_utc(time: chrono::DateTime<chrono::Utc>) -> Option<String> {
    use chrono::Datelike;
    (0..=9999)
        .contains(&time.year())
        .then(|| time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

/// Whether a config media type is an image config this crate reads (OCI or Docker).
pub fn is_image_config(media_type: &str) -> bool {
    let essence = media_type::essence(media_type);
    essence == media_type::IMAGE_CONFIG || essence == media_type::DOCKER_CONFIG
}
