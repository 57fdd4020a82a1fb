//! Library-level tests of the copy engine: real images moved between layouts, archives and a
//! registry served in-process on 127.0.0.1, and bad requests refused with nothing changed.
//!
//! The images are built with gzip layers, so the tests need the `gzip` feature (a default).
#![cfg(feature = "gzip")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod append;
mod append_changes;
mod artifact;
mod copy;
mod export;
mod flatten;
mod format;
mod index_edit;
mod inspect;
mod layouts;
mod location;
mod manage;
mod mutate;
#[cfg(feature = "proxy")]
mod proxy;
mod rebase;
mod referrers;
mod registry;
#[cfg(feature = "sign")]
mod signatures_rewrite;
#[cfg(feature = "sign")]
mod signatures_travel;
#[cfg(feature = "sign")]
mod signing;
mod surgery;
mod sync;
mod unpack_stream;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ocikit_digest::oci_spec::image::Descriptor;
use ocikit_layout::{ImageBuilder, LayerSpec, Layout, UnpackOptions};
use ocikit_store::FsStore;
use ocikit_transport::{Location, Progress, Stage};

/// The example tree of the README (real files, a symlink, an executable).
pub(crate) fn example_rootfs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/example-rootfs")
}

/// A layout at `dir` with one image tagged `tag`: the example tree as one layer, and a
/// second layer holding this test binary (several MiB of real bytes).
pub(crate) async fn image(dir: &Path, tag: &str) -> (Layout, Descriptor) {
    let extra = tempfile::tempdir().unwrap();
    let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
    std::fs::write(extra.path().join("payload.bin"), &exe).unwrap();
    let layout = Layout::create(FsStore::open(dir).await.unwrap())
        .await
        .unwrap();
    let mut builder = ImageBuilder::new(&layout);
    builder.cmd(["/usr/bin/hello"]);
    builder
        .add_layer_from_dir(example_rootfs(), LayerSpec::new())
        .await
        .unwrap();
    builder
        .add_layer_from_dir(extra.path(), LayerSpec::new())
        .await
        .unwrap();
    let root = builder.write_and_tag(tag).await.unwrap();
    (layout, root)
}

/// Opens the layout at `dir`.
pub(crate) async fn open(dir: &Path) -> Layout {
    ocikit_transport::open_layout(dir).await.unwrap()
}

/// Every regular file under `dir` (relative path, bytes), sorted.
pub(crate) fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                stack.push(path);
            } else if meta.is_file() {
                let bytes = std::fs::read(&path).unwrap();
                out.push((path.strip_prefix(dir).unwrap().to_path_buf(), bytes));
            }
        }
    }
    out.sort();
    out
}

/// The files of `root` in `layout`, unpacked.
pub(crate) async fn unpacked(layout: &Layout, root: &Descriptor) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("rootfs");
    ocikit_layout::unpack_staged(layout, root, &target, &UnpackOptions::new())
        .await
        .unwrap();
    files(&target)
}

/// `TRANSPORT:PATH[REST]` parsed.
pub(crate) fn at(transport: &str, path: &Path, rest: &str) -> Location {
    format!("{transport}:{}{rest}", path.display())
        .parse()
        .unwrap()
}

/// A progress sink that records each stage it saw and the bytes reported done.
#[derive(Clone, Default)]
pub(crate) struct Seen(Arc<Mutex<Vec<(Stage, u64)>>>);

impl Seen {
    pub(crate) fn sink(&self) -> Progress {
        let seen = self.0.clone();
        Progress::new(move |stage, event| {
            if let ocikit_layout::Event::Done { bytes, .. } = event {
                seen.lock().unwrap().push((stage, *bytes));
            }
        })
    }

    pub(crate) fn stages(&self) -> Vec<Stage> {
        let mut stages: Vec<Stage> = self.0.lock().unwrap().iter().map(|(s, _)| *s).collect();
        stages.dedup();
        stages
    }
}
