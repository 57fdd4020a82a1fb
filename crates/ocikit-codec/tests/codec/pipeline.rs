//! `apply_blob`: compressed layers applied with decompression on a second thread give what
//! `apply_layer` over a `Decoder` gives, and the decoder's typed errors come through.
// Tests that need a codec are gated on its feature, so that `cargo test --no-default-features`
// runs the rest; what only they use is then unused.
#![cfg_attr(
    not(all(feature = "gzip", feature = "zstd")),
    allow(unused_imports, dead_code)
)]

use std::io::Write;

use ocikit_codec::apply::{ApplyOptions, apply_blob, apply_layer};
use ocikit_codec::compression::{Compression, Decoder, Encoder};
use ocikit_codec::{Error, Limit, Limits};
use ocikit_digest::Digest;
use ocikit_digest::media_type::{IMAGE_LAYER, IMAGE_LAYER_GZIP, IMAGE_LAYER_ZSTD};

/// A tar (made with the `tar` crate) of many files, big enough to take many chunks.
fn layer_tar() -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for i in 0..40u32 {
        let data: Vec<u8> = (0..(20_000 + i * 7_000))
            .map(|j| (j.wrapping_mul(2_654_435_761) >> (i % 24)) as u8)
            .collect();
        let mut header = tar::Header::new_ustar();
        header.set_path(format!("d{}/f{i}", i % 5)).unwrap();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(1_700_000_000);
        header.set_cksum();
        builder.append(&header, &data[..]).unwrap();
    }
    builder.into_inner().unwrap()
}

fn compress(tar: &[u8], compression: Compression) -> Vec<u8> {
    let mut encoder = Encoder::new(Vec::new(), compression, None).unwrap();
    encoder.write_all(tar).unwrap();
    encoder.finish().unwrap()
}

fn files(root: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for dir in std::fs::read_dir(root).unwrap() {
        let dir = dir.unwrap().path();
        for file in std::fs::read_dir(&dir).unwrap() {
            let file = file.unwrap().path();
            let name = file.strip_prefix(root).unwrap().display().to_string();
            out.push((name, std::fs::read(&file).unwrap()));
        }
    }
    out.sort();
    out
}

#[cfg(all(feature = "gzip", feature = "zstd"))]
#[test]
fn same_result_as_the_single_threaded_path_for_every_compression() {
    let tar = layer_tar();
    let diff_id = Digest::sha256(&tar);
    for (compression, media_type) in [
        (Compression::Gzip, IMAGE_LAYER_GZIP),
        (Compression::Zstd, IMAGE_LAYER_ZSTD),
        (Compression::None, IMAGE_LAYER),
    ] {
        let blob = compress(&tar, compression);
        let piped = tempfile::tempdir().unwrap();
        let options = ApplyOptions::new().with_expected_diff_id(Some(diff_id.clone()));
        let report = apply_blob(piped.path(), &blob[..], media_type, &options).unwrap();
        assert_eq!(report.diff_id, diff_id, "{media_type}");
        assert_eq!(report.tar_size, tar.len() as u64);
        assert_eq!(report.files, 40);

        let direct = tempfile::tempdir().unwrap();
        let decoder = Decoder::new(&blob[..], compression, Limits::default());
        apply_layer(direct.path(), decoder, &options).unwrap();
        assert_eq!(files(piped.path()), files(direct.path()), "{media_type}");
    }
}

#[cfg(feature = "gzip")]
#[test]
fn a_bomb_fails_with_the_decoders_limit_error() {
    let tar = layer_tar();
    let blob = compress(&tar, Compression::Gzip);
    let root = tempfile::tempdir().unwrap();
    let limits = Limits::default().with_max_decompressed_bytes(100_000);
    let options = ApplyOptions::new().with_limits(limits);
    let err = apply_blob(root.path(), &blob[..], IMAGE_LAYER_GZIP, &options).unwrap_err();
    assert!(
        matches!(
            err,
            Error::LimitExceeded {
                limit: Limit::DecompressedBytes,
                max: 100_000
            }
        ),
        "{err:?}"
    );
}

#[cfg(feature = "gzip")]
#[test]
fn corrupt_truncated_and_mislabelled_blobs_are_refused() {
    let tar = layer_tar();
    let gzip = compress(&tar, Compression::Gzip);
    let root = tempfile::tempdir().unwrap();
    let options = ApplyOptions::new();

    let mut flipped = gzip.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0xff;
    let err = apply_blob(root.path(), &flipped[..], IMAGE_LAYER_GZIP, &options).unwrap_err();
    assert!(
        matches!(err, Error::Corrupt { format: "gzip", .. }),
        "{err:?}"
    );

    let truncated = &gzip[..gzip.len() - 9];
    let err = apply_blob(root.path(), truncated, IMAGE_LAYER_GZIP, &options).unwrap_err();
    assert!(
        matches!(err, Error::Corrupt { format: "gzip", .. }),
        "{err:?}"
    );

    let err = apply_blob(root.path(), &gzip[..], IMAGE_LAYER_ZSTD, &options).unwrap_err();
    assert!(matches!(err, Error::CompressionMismatch { .. }), "{err:?}");

    let err = apply_blob(
        root.path(),
        &gzip[..],
        "application/vnd.oci.image.layer.v1.tar+bzip2",
        &options,
    )
    .unwrap_err();
    assert!(matches!(err, Error::UnsupportedMediaType { .. }), "{err:?}");
}

#[cfg(feature = "zstd")]
#[test]
fn a_wrong_diff_id_is_reported_after_the_whole_stream() {
    let tar = layer_tar();
    let blob = compress(&tar, Compression::Zstd);
    let root = tempfile::tempdir().unwrap();
    let wrong = Digest::sha256(b"not this layer");
    let options = ApplyOptions::new().with_expected_diff_id(Some(wrong.clone()));
    let err = apply_blob(root.path(), &blob[..], IMAGE_LAYER_ZSTD, &options).unwrap_err();
    match err {
        Error::DiffIdMismatch { expected, actual } => {
            assert_eq!(expected, wrong);
            assert_eq!(actual, Digest::sha256(&tar));
        }
        other => panic!("{other:?}"),
    }
}

/// One entry of a layer made with the `tar` crate.
enum Entry<'a> {
    Dir(&'a str, u32),
    File(&'a str, Vec<u8>, u32),
    /// A hard link: name, target.
    Link(&'a str, &'a str),
    Symlink(&'a str, &'a str),
}

fn layer_of(entries: Vec<Entry<'_>>) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let mut header = tar::Header::new_gnu();
        header.set_mtime(1_700_000_000);
        header.set_uid(0);
        header.set_gid(0);
        match entry {
            Entry::Dir(name, mode) => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(mode);
                header.set_size(0);
                builder
                    .append_data(&mut header, name, std::io::empty())
                    .unwrap();
            }
            Entry::File(name, data, mode) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(mode);
                header.set_size(data.len() as u64);
                builder.append_data(&mut header, name, &data[..]).unwrap();
            }
            Entry::Link(name, target) => {
                header.set_entry_type(tar::EntryType::Link);
                header.set_size(0);
                builder.append_link(&mut header, name, target).unwrap();
            }
            Entry::Symlink(name, target) => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_mode(0o777);
                header.set_size(0);
                builder.append_link(&mut header, name, target).unwrap();
            }
        }
    }
    builder.into_inner().unwrap()
}

/// Bytes that compress somewhat (so that a layer is many compressed and decompressed
/// chunks), different for each `seed`.
fn content(seed: u32, len: usize) -> Vec<u8> {
    (0..len as u32)
        .map(|i| ((i / 3).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 27) as u8 + b'a')
        .collect()
}

/// Reads at most 4,093 bytes at a time (odd sizes: chunk boundaries fall anywhere).
struct Dribble<'a>(&'a [u8]);

impl std::io::Read for Dribble<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.0.len()).min(4093);
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

/// Three layers as images have them: hard links (to this layer's files and to lower
/// ones), symlinks, whiteouts of files and of whole trees, an opaque directory, a
/// directory replaced by a file, mode changes, and files of many chunks (past the 8 MiB
/// after which the diffID is hashed on its own thread).
fn real_layers() -> Vec<Vec<u8>> {
    let lower = layer_of(vec![
        Entry::Dir("etc/", 0o755),
        Entry::File(
            "etc/passwd",
            b"root:x:0:0:root:/root:/bin/sh\n".to_vec(),
            0o644,
        ),
        Entry::File("etc/group", b"root:x:0:\n".to_vec(), 0o644),
        Entry::Dir("usr/", 0o755),
        Entry::Dir("usr/lib/", 0o755),
        Entry::File("usr/lib/libbig.so", content(1, 5_000_000), 0o755),
        Entry::Link("usr/lib/libbig.so.1", "usr/lib/libbig.so"),
        Entry::Symlink("usr/lib/libbig.so.2", "libbig.so.1"),
        Entry::Dir("opt/", 0o750),
        Entry::File("opt/a", b"a".to_vec(), 0o600),
        Entry::Dir("opt/sub/", 0o700),
        Entry::File("opt/sub/b", content(2, 300_000), 0o644),
        Entry::Dir("var/", 0o755),
        Entry::Dir("var/cache/", 0o755),
        Entry::File("var/cache/x", content(3, 700_000), 0o644),
        Entry::File("var/log", b"a file, later a directory".to_vec(), 0o644),
    ]);
    let middle = layer_of(vec![
        Entry::File("etc/.wh.passwd", Vec::new(), 0o644),
        Entry::File("opt/.wh..wh..opq", Vec::new(), 0o644),
        Entry::File("opt/new", content(4, 9_000_000), 0o644),
        Entry::Link("opt/new-link", "opt/new"),
        Entry::Link("etc/group-link", "etc/group"),
        Entry::File("var/.wh.cache", Vec::new(), 0o644),
        Entry::Dir("var/log/", 0o775),
        Entry::File("var/log/messages", content(5, 1_000), 0o640),
        Entry::Dir("usr/lib/", 0o700),
    ]);
    let upper = layer_of(vec![
        Entry::File("usr/lib/libbig.so", content(6, 400_000), 0o755),
        Entry::File("usr/lib/.wh.libbig.so.2", Vec::new(), 0o644),
        Entry::Dir("var/cache/", 0o755),
        Entry::File("var/cache/y", b"y".to_vec(), 0o644),
        Entry::Symlink("etc/passwd", "/usr/share/passwd"),
    ]);
    vec![lower, middle, upper]
}

/// A tree to compare: file contents as digests (for readable failures), and the times of
/// directories a later layer changed left out (they are the clock's then).
fn comparable(
    tree: &std::collections::BTreeMap<Vec<u8>, crate::roundtrip::Node>,
) -> Vec<(String, String)> {
    tree.iter()
        .map(|(name, node)| {
            let mut node = node.clone();
            let content = match &mut node.kind {
                crate::roundtrip::Kind::File(data) => {
                    let digest = Digest::sha256(data);
                    data.clear();
                    Some(digest)
                }
                crate::roundtrip::Kind::Dir => {
                    if node.mtime != 1_700_000_000 {
                        node.mtime = 0;
                    }
                    None
                }
                _ => None,
            };
            (
                String::from_utf8_lossy(name).into_owned(),
                format!("{node:?} {content:?}"),
            )
        })
        .collect()
}

#[cfg(all(feature = "gzip", feature = "zstd"))]
#[test]
fn real_layers_give_the_same_tree_as_the_single_threaded_path() {
    let layers = real_layers();
    for (compression, media_type) in [
        (Compression::Gzip, IMAGE_LAYER_GZIP),
        (Compression::Zstd, IMAGE_LAYER_ZSTD),
    ] {
        let piped = tempfile::tempdir().unwrap();
        let direct = tempfile::tempdir().unwrap();
        for tar in &layers {
            let blob = compress(tar, compression);
            let options = ApplyOptions::new().with_expected_diff_id(Some(Digest::sha256(tar)));
            let report = apply_blob(piped.path(), Dribble(&blob), media_type, &options).unwrap();
            let decoder = Decoder::new(&blob[..], compression, Limits::default());
            let single = apply_layer(direct.path(), decoder, &options).unwrap();
            assert_eq!(format!("{report:?}"), format!("{single:?}"), "{media_type}");
            assert_eq!(report.tar_size, tar.len() as u64);
        }
        let tree = crate::roundtrip::snapshot(piped.path());
        let ours = comparable(&tree);
        let theirs = comparable(&crate::roundtrip::snapshot(direct.path()));
        assert!(ours == theirs, "{media_type}: {ours:#?}\n{theirs:#?}");

        // What the layers mean, so that two empty trees cannot pass.
        let names: Vec<String> = tree
            .keys()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "etc",
                "etc/group",
                "etc/group-link",
                "etc/passwd",
                "opt",
                "opt/new",
                "opt/new-link",
                "usr",
                "usr/lib",
                "usr/lib/libbig.so",
                "usr/lib/libbig.so.1",
                "var",
                "var/cache",
                "var/cache/y",
                "var/log",
                "var/log/messages",
            ],
            "{media_type}"
        );
        let node = |name: &str| &tree[name.as_bytes()];
        assert_eq!(node("opt/new").link_group, Some(b"opt/new".to_vec()));
        assert_eq!(node("opt/new-link").link_group, Some(b"opt/new".to_vec()));
        assert_eq!(
            node("etc/group-link").link_group,
            Some(b"etc/group".to_vec())
        );
        // The upper layer replaced libbig.so by a new file: its old hard link keeps the
        // lower content.
        assert_eq!(node("usr/lib/libbig.so").link_group, None);
        assert!(matches!(&node("usr/lib/libbig.so.1").kind,
            crate::roundtrip::Kind::File(data) if *data == content(1, 5_000_000)));
        assert_eq!(node("usr/lib").mode, 0o700);
        assert_eq!(node("var/log").mode, 0o775);
    }
}

#[cfg(feature = "gzip")]
#[test]
fn the_blob_readers_own_error_comes_through_typed() {
    let tar = layer_tar();
    let blob = compress(&tar, Compression::Gzip);
    let root = tempfile::tempdir().unwrap();
    // A verifying reader expecting other bytes: its mismatch (at the end of the blob,
    // after every entry was applied) is the error, not the end of a sound layer.
    let wrong = Digest::sha256(b"another blob");
    let reader =
        ocikit_digest::VerifyingReader::new(&blob[..], wrong.clone(), blob.len() as u64).unwrap();
    let err = apply_blob(root.path(), reader, IMAGE_LAYER_GZIP, &ApplyOptions::new()).unwrap_err();
    match digest_error(&err) {
        Some(ocikit_digest::Error::DigestMismatch { expected, .. }) => {
            assert_eq!(expected, &wrong);
        }
        other => panic!("{other:?} in {err:?}"),
    }

    // A short blob: the reader's size mismatch (or the decompressor's corruption error,
    // whichever is seen first), never a short tree taken as whole.
    let reader = ocikit_digest::VerifyingReader::new(
        &blob[..blob.len() / 2],
        Digest::sha256(&blob),
        blob.len() as u64,
    )
    .unwrap();
    let err = apply_blob(root.path(), reader, IMAGE_LAYER_GZIP, &ApplyOptions::new()).unwrap_err();
    assert!(
        matches!(err, Error::Corrupt { format: "gzip", .. })
            || matches!(
                digest_error(&err),
                Some(ocikit_digest::Error::SizeMismatch { actual, .. })
                    if *actual == blob.len() as u64 / 2
            ),
        "{err:?}"
    );
}

/// The digest crate's error an [`Error::Io`] carries, if any.
fn digest_error(err: &Error) -> Option<&ocikit_digest::Error> {
    let Error::Io { source, .. } = err else {
        return None;
    };
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(source);
    while let Some(e) = cause {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
            && let Some(found) = inner.downcast_ref::<ocikit_digest::Error>()
        {
            return Some(found);
        }
        if let Some(found) = e.downcast_ref::<ocikit_digest::Error>() {
            return Some(found);
        }
        cause = e.source();
    }
    None
}
