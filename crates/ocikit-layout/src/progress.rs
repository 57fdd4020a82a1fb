//! Progress events: what long operations (copy, unpack, archive import and export, fsck)
//! report as they go, for a CLI to draw as bars or a server to log.
//!
//! An operation takes a [`Progress`] sink and calls it from whatever task or thread does the
//! work; the sink must be cheap and must not block. [`Progress::none`] discards everything.

use std::fmt;
use std::sync::Arc;

use ocikit_digest::Digest;

/// Which operation an [`Event`] belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Operation {
    /// Copying blobs between stores or layouts.
    Copy,
    /// Applying layers to a root filesystem.
    Unpack,
    /// Reading an archive into a layout.
    Import,
    /// Writing a layout's images into an archive.
    Export,
    /// Verifying blobs.
    Fsck,
    /// Recompressing layers (the events name the source layer).
    Recompress,
}

/// One step of an operation on one blob.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// Work on a blob began; `size` is its size in bytes.
    Started {
        /// The operation.
        operation: Operation,
        /// The blob.
        digest: Digest,
        /// Its size.
        size: u64,
    },
    /// `bytes` of the blob have been handled so far (cumulative, not a delta).
    Progress {
        /// The operation.
        operation: Operation,
        /// The blob.
        digest: Digest,
        /// Bytes handled so far.
        bytes: u64,
    },
    /// Work on the blob finished.
    Done {
        /// The operation.
        operation: Operation,
        /// The blob.
        digest: Digest,
        /// Bytes handled in all.
        bytes: u64,
    },
    /// The blob needed no work (already present at the destination, or already verified).
    Skipped {
        /// The operation.
        operation: Operation,
        /// The blob.
        digest: Digest,
        /// Its size.
        size: u64,
    },
}

type Sink = Arc<dyn Fn(&Event) + Send + Sync>;

/// A sink for [`Event`]s, cheap to clone.
#[derive(Clone, Default)]
pub struct Progress(Option<Sink>);

impl Progress {
    /// A sink that calls `f` with every event.
    pub fn new(f: impl Fn(&Event) + Send + Sync + 'static) -> Progress {
        Progress(Some(Arc::new(f)))
    }

    /// A sink that discards every event.
    pub fn none() -> Progress {
        Progress(None)
    }

    /// Reports one event.
    pub fn emit(&self, event: Event) {
        if let Some(f) = &self.0 {
            f(&event);
        }
    }

    /// Reports the event `event` makes, making it only when there is a sink (an event
    /// clones a digest: per blob of a large fsck, that adds up).
    pub(crate) fn emit_with(&self, event: impl FnOnce() -> Event) {
        if let Some(f) = &self.0 {
            f(&event());
        }
    }
}

impl fmt::Debug for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Progress(..)"
        } else {
            "Progress(none)"
        })
    }
}
