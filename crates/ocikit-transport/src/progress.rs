//! Progress of a copy: the layout's and the client's blob events, each tagged with the
//! stage of the copy it belongs to, delivered to one sink the caller supplies.

use std::fmt;
use std::sync::Arc;

use ocikit_layout::{Event, Progress as BlobProgress};

/// The stage of a copy an [`Event`] belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Stage {
    /// Reading an archive source into a scratch layout.
    Read,
    /// Pulling from a registry.
    Pull,
    /// Copying blobs between layouts (or within one registry).
    Copy,
    /// Recompressing layers.
    Recompress,
    /// Writing an archive destination.
    Write,
    /// Pushing to a registry.
    Push,
}

impl Stage {
    /// The stage as one lowercase verb (`read`, `pull`, `copy`, `recompress`, `write`,
    /// `push`).
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Read => "read",
            Stage::Pull => "pull",
            Stage::Copy => "copy",
            Stage::Recompress => "recompress",
            Stage::Write => "write",
            Stage::Push => "push",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

type Sink = Arc<dyn Fn(Stage, &Event) + Send + Sync>;

/// A sink for a copy's events, cheap to clone. It is called from whatever task or thread
/// does the work, so it must be quick and must not block.
#[derive(Clone, Default)]
pub struct Progress(Option<Sink>);

impl Progress {
    /// A sink that calls `f` with every event and its stage.
    pub fn new(f: impl Fn(Stage, &Event) + Send + Sync + 'static) -> Progress {
        Progress(Some(Arc::new(f)))
    }

    /// A sink that discards every event.
    pub fn none() -> Progress {
        Progress(None)
    }

    /// The layout's (and client's) blob sink for one stage.
    pub(crate) fn stage(&self, stage: Stage) -> BlobProgress {
        match &self.0 {
            None => BlobProgress::none(),
            Some(f) => {
                let f = Arc::clone(f);
                BlobProgress::new(move |event| f(stage, event))
            }
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
