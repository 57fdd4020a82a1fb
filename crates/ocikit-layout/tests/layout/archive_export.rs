//! What archive exports are made of: `ocikit-codec`'s tar writer, so the same images give
//! the same bytes on every store and every run, every header is POSIX ustar (no GNU
//! extensions), owned by 0:0 at the epoch, and both ocikit's strict reader and an
//! independent one read it back.
// Tests that need a codec are gated on its feature (`make_image` writes a gzip layer).
#![cfg_attr(not(feature = "gzip"), allow(unused_imports, dead_code))]

use std::io::Read;

use ocikit_codec::Limits;
use ocikit_codec::tar::{Kind, TarReader};
use ocikit_layout::Layout;
use ocikit_layout::archive::{docker, oci};

use super::copy::{make_image, make_index};
use super::support::stores;

/// The same tags and images, built on `layout`.
async fn fill(layout: &Layout) {
    let (root, _) = make_index(layout).await;
    let single = make_image(layout, "single").await;
    let other = make_image(layout, "other").await;
    layout.set_tag("multi", &root).await.unwrap();
    layout.set_tag("single", &single.manifest).await.unwrap();
    layout.set_tag("other", &other.manifest).await.unwrap();
}

/// An entry as ocikit's strict reader sees it: kind, name, mode, uid, gid, mtime, data.
type Entry = (Kind, String, u32, i64, i64, i64, Vec<u8>);

/// Every entry of `archive` as ocikit's strict reader sees it, with its data.
fn strict_entries(archive: &[u8]) -> Vec<Entry> {
    let mut reader = TarReader::new(archive, Limits::default());
    let mut entries = Vec::new();
    while let Some(h) = reader.next_header().unwrap() {
        let mut data = Vec::new();
        reader.data().read_to_end(&mut data).unwrap();
        let name = String::from_utf8(h.name).unwrap();
        entries.push((h.kind, name, h.mode, h.uid, h.gid, h.mtime.0, data));
    }
    entries
}

/// Checks every header of `archive` with the `tar` crate: POSIX ustar, no owner names, and
/// the names and data the strict reader saw.
fn check_headers(archive: &[u8], strict: &[Entry]) {
    let mut seen = Vec::new();
    for entry in tar::Archive::new(archive).entries().unwrap() {
        let mut entry = entry.unwrap();
        let header = entry.header().clone();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        assert!(
            header.as_ustar().is_some(),
            "{name}: not a POSIX ustar header"
        );
        assert!(header.as_gnu().is_none(), "{name}: a GNU header");
        assert_eq!(header.username_bytes(), Some(&b""[..]), "{name}");
        assert_eq!(header.groupname_bytes(), Some(&b""[..]), "{name}");
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        seen.push((name, data));
    }
    let expected: Vec<(String, Vec<u8>)> = strict
        .iter()
        .map(|(_, name, .., data)| (name.clone(), data.clone()))
        .collect();
    assert_eq!(seen, expected);
    for (kind, name, mode, uid, gid, mtime, _) in strict {
        let want = match kind {
            Kind::Dir => 0o755,
            Kind::File => 0o644,
            other => panic!("{name}: unexpected entry kind {other:?}"),
        };
        assert_eq!((*mode, *uid, *gid, *mtime), (want, 0, 0, 0), "{name}");
    }
}

#[cfg(feature = "gzip")]
#[tokio::test]
async fn the_same_images_export_to_the_same_ustar_bytes_on_every_store() {
    let mut oci_exports = Vec::new();
    let mut docker_exports = Vec::new();
    for (store, _guard) in stores().await {
        let layout = Layout::create(store).await.unwrap();
        fill(&layout).await;
        for _ in 0..2 {
            let (archive, report) = oci::export(
                &layout,
                Some(&["multi", "single"]),
                Vec::new(),
                &oci::ExportOptions::new(),
            )
            .await
            .unwrap();
            assert_eq!(report.blobs, 14);
            oci_exports.push(archive);
            let (archive, report) = docker::export(
                &layout,
                &[
                    ("single", "example.com/single:1"),
                    ("other", "other:latest"),
                ],
                Vec::new(),
                &docker::Options::new(),
            )
            .await
            .unwrap();
            assert_eq!(report.images, 2);
            docker_exports.push(archive);
        }
    }
    assert!(oci_exports.len() >= 4);
    for exports in [&oci_exports, &docker_exports] {
        let first = &exports[0];
        assert_eq!(first.len() % 512, 0);
        assert!(first.ends_with(&[0u8; 1024]), "the end-of-archive blocks");
        for (i, other) in exports.iter().enumerate() {
            assert!(other == first, "export {i} differs from the first");
        }
        let strict = strict_entries(first);
        assert!(strict.len() > 3);
        check_headers(first, &strict);
    }
    let names: Vec<String> = strict_entries(&oci_exports[0])
        .into_iter()
        .map(|e| e.1)
        .collect();
    assert_eq!(names[..3], ["oci-layout", "blobs/", "blobs/sha256/"]);
    assert_eq!(names.last().map(String::as_str), Some("index.json"));
    let names: Vec<String> = strict_entries(&docker_exports[0])
        .into_iter()
        .map(|e| e.1)
        .collect();
    assert_eq!(
        names[names.len() - 2..],
        ["manifest.json".to_string(), "repositories".to_string()]
    );
    assert!(names.iter().any(|n| n.ends_with("/layer.tar")));
}
