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
    /// Packing a layer source (a directory, a tar file, a changeset) into a layer blob:
    /// [`Event::StepStarted`] and its kin, named by the source.
    Build,
    /// Comparing a root filesystem with the image it came from: [`Event::StepStarted`] and
    /// its kin, named by the root filesystem's path.
    Compare,
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
    /// Work that is not on a blob of known digest began: a layer source being packed, a
    /// tree being compared. Steps of one operation follow each other, never overlap.
    StepStarted {
        /// The operation.
        operation: Operation,
        /// What is worked on (a path, or a description such as `4 changes`).
        name: String,
        /// The bytes to read, when known in advance (a file's size); `None` for a walk.
        size: Option<u64>,
    },
    /// `bytes` of the step's input have been read so far (cumulative).
    StepProgress {
        /// The operation.
        operation: Operation,
        /// What is worked on.
        name: String,
        /// Bytes read so far.
        bytes: u64,
    },
    /// The step finished (or failed: its error is what the operation returns).
    StepDone {
        /// The operation.
        operation: Operation,
        /// What was worked on.
        name: String,
        /// Bytes read in all (0 for a walk).
        bytes: u64,
    },
}

impl Event {
    /// The operation the event belongs to.
    pub fn operation(&self) -> Operation {
        match self {
            Event::Started { operation, .. }
            | Event::Progress { operation, .. }
            | Event::Done { operation, .. }
            | Event::Skipped { operation, .. }
            | Event::StepStarted { operation, .. }
            | Event::StepProgress { operation, .. }
            | Event::StepDone { operation, .. } => *operation,
        }
    }
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

/// A reader that reports the bytes read through it as [`Event::StepProgress`], every
/// [`PROGRESS_INTERVAL`](crate::unpack::PROGRESS_INTERVAL) bytes and at the end (the
/// caller reports [`Event::StepStarted`] and [`Event::StepDone`]).
pub(crate) struct StepReader<R> {
    pub(crate) inner: R,
    pub(crate) progress: Progress,
    pub(crate) operation: Operation,
    pub(crate) name: String,
    pub(crate) bytes: u64,
    pub(crate) reported: u64,
}

impl<R> StepReader<R> {
    /// Reads `inner` as the step `name` of `operation`, which has been started.
    pub(crate) fn new(inner: R, progress: Progress, operation: Operation, name: String) -> Self {
        StepReader {
            inner,
            progress,
            operation,
            name,
            bytes: 0,
            reported: 0,
        }
    }
}

impl<R: std::io::Read> std::io::Read for StepReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes += n as u64;
        if n == 0 || self.bytes - self.reported >= crate::unpack::PROGRESS_INTERVAL {
            self.reported = self.bytes;
            let (operation, bytes) = (self.operation, self.bytes);
            self.progress.emit_with(|| Event::StepProgress {
                operation,
                name: self.name.clone(),
                bytes,
            });
        }
        Ok(n)
    }
}
