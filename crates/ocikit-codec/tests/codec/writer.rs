//! LayerWriter: one pass gives the blob, its digest and size, the diffID and the
//! uncompressed size, each equal to an independent computation.
// Tests that need a codec are gated on its feature, so that `cargo test --no-default-features`
// runs the rest; what only they use is then unused.
#![cfg_attr(
    not(all(feature = "gzip", feature = "zstd")),
    allow(unused_imports, dead_code)
)]

use std::io::{self, Read, Write};

use ocikit_codec::compression::{Compression, Decoder, error_from_io};
use ocikit_codec::writer::{LayerInfo, LayerOptions, LayerWriter};
use ocikit_codec::{Error, Limits};
use ocikit_digest::Digest;
use proptest::prelude::*;

use super::compression::{Failing, decode, noise, system_gunzip, text_like};

/// A small but real tar stream: text files, a binary, a symlink, a directory.
fn sample_tar() -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut add = |path: &str, data: &[u8], kind: tar::EntryType| {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_size(data.len() as u64);
        header.set_mode(if kind == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        });
        header.set_mtime(0);
        builder.append_data(&mut header, path, data).unwrap();
    };
    add("usr/", b"", tar::EntryType::Directory);
    add(
        "usr/share/doc.txt",
        &text_like(700_000, 40),
        tar::EntryType::Regular,
    );
    add(
        "usr/lib/blob.bin",
        &noise(300_000, 41),
        tar::EntryType::Regular,
    );
    add(
        "usr/src/main.rs",
        &text_like(1_500_000, 42),
        tar::EntryType::Regular,
    );
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Symlink);
    header.set_size(0);
    header.set_mode(0o777);
    builder
        .append_link(&mut header, "usr/bin/link", "../share/doc.txt")
        .unwrap();
    builder.into_inner().unwrap()
}

fn write_layer(input: &[u8], options: LayerOptions, chunk: usize) -> (Vec<u8>, LayerInfo) {
    let mut writer = LayerWriter::new(Vec::new(), options).unwrap();
    for piece in input.chunks(chunk.max(1)) {
        writer.write_all(piece).unwrap();
    }
    assert_eq!(writer.uncompressed_size(), input.len() as u64);
    writer.finish().unwrap()
}

fn check_info(input: &[u8], blob: &[u8], info: &LayerInfo, compression: Compression) {
    assert_eq!(
        info.digest,
        Digest::sha256(blob),
        "digest is sha256 of the blob"
    );
    assert_eq!(info.size, blob.len() as u64);
    assert_eq!(
        info.diff_id,
        Digest::sha256(input),
        "diffID is sha256 of the tar"
    );
    assert_eq!(info.uncompressed_size, input.len() as u64);
    assert_eq!(
        info.media_type,
        ocikit_digest::media_type::oci_layer_type(compression)
    );
    assert_eq!(&decode(blob, compression).unwrap(), input);
}

#[cfg(all(feature = "gzip", feature = "zstd"))]
#[test]
fn layer_info_matches_independent_computations() {
    let tar = sample_tar();
    for compression in [Compression::Gzip, Compression::Zstd, Compression::None] {
        for threads in [0, 1, 2] {
            let options = LayerOptions::new(compression).with_threads(threads);
            let (blob, info) = write_layer(&tar, options, 10_000);
            check_info(&tar, &blob, &info, compression);
            if compression == Compression::None {
                assert_eq!(blob, tar);
                assert_eq!(info.digest, info.diff_id);
            } else {
                assert_ne!(info.digest, info.diff_id);
                assert!(info.size < info.uncompressed_size);
            }
        }
    }
}

#[cfg(all(feature = "gzip", feature = "zstd"))]
#[test]
fn from_reader_equals_writing() {
    let tar = sample_tar();
    for compression in [Compression::Gzip, Compression::Zstd, Compression::None] {
        let options = LayerOptions::new(compression).with_threads(2);
        let (written, info) = write_layer(&tar, options, 65_536);
        let (read, read_info) = LayerWriter::from_reader(&tar[..], Vec::new(), options).unwrap();
        assert_eq!(read, written);
        assert_eq!(read_info, info);
    }
}

#[cfg(all(feature = "gzip", feature = "zstd"))]
#[test]
fn layers_are_reproducible_across_thread_counts() {
    let tar = [sample_tar(), text_like(3 << 20, 43)].concat();
    let gzip = write_layer(
        &tar,
        LayerOptions::new(Compression::Gzip).with_threads(0),
        1 << 20,
    );
    for threads in [1, 2, 5] {
        let options = LayerOptions::new(Compression::Gzip).with_threads(threads);
        assert_eq!(
            write_layer(&tar, options, 4096),
            gzip,
            "gzip, {threads} threads"
        );
    }
    // zstd: 0 threads still uses one worker (zstd's output differs without workers).
    let zstd = write_layer(
        &tar,
        LayerOptions::new(Compression::Zstd).with_threads(0),
        1 << 20,
    );
    for threads in [1, 2, 4] {
        let options = LayerOptions::new(Compression::Zstd).with_threads(threads);
        assert_eq!(
            write_layer(&tar, options, 100_000),
            zstd,
            "zstd, {threads} threads"
        );
    }
}

#[cfg(feature = "gzip")]
#[test]
fn parallel_gzip_layer_is_accepted_by_gzip_and_flate2() {
    let tar = [sample_tar(), noise(2 << 20, 44), text_like(4 << 20, 45)].concat();
    let options = LayerOptions::new(Compression::Gzip).with_threads(2);
    let (blob, info) = write_layer(&tar, options, 1 << 16);
    check_info(&tar, &blob, &info, Compression::Gzip);
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(&blob[..])
        .read_to_end(&mut out)
        .unwrap();
    assert_eq!(out, tar);
    if let Some(out) = system_gunzip(&blob) {
        assert_eq!(Digest::sha256(&out), info.diff_id);
    }
}

#[cfg(all(feature = "gzip", feature = "zstd"))]
#[test]
fn flushing_does_not_change_the_layer() {
    let tar = [sample_tar(), text_like(2 << 20, 46)].concat();
    for compression in [Compression::Gzip, Compression::Zstd, Compression::None] {
        let options = LayerOptions::new(compression).with_threads(2);
        let expected = write_layer(&tar, options, 1 << 20);
        let mut writer = LayerWriter::new(Vec::new(), options).unwrap();
        for (i, piece) in tar.chunks(123_457).enumerate() {
            writer.write_all(piece).unwrap();
            if i % 3 == 0 {
                writer.flush().unwrap();
            }
        }
        assert_eq!(writer.finish().unwrap(), expected, "{compression:?}");
    }
}

#[cfg(all(feature = "gzip", feature = "zstd"))]
#[test]
fn levels_and_media_types() {
    let tar = sample_tar();
    let fast = write_layer(
        &tar,
        LayerOptions::new(Compression::Gzip).with_level(1),
        1 << 20,
    );
    let best = write_layer(
        &tar,
        LayerOptions::new(Compression::Gzip).with_level(9),
        1 << 20,
    );
    assert!(best.1.size <= fast.1.size);
    assert_eq!(fast.1.diff_id, best.1.diff_id);
    let z1 = write_layer(
        &tar,
        LayerOptions::new(Compression::Zstd).with_level(1),
        1 << 20,
    );
    let z19 = write_layer(
        &tar,
        LayerOptions::new(Compression::Zstd).with_level(19),
        1 << 20,
    );
    assert!(z19.1.size < z1.1.size);
    assert_eq!(
        z1.1.media_type,
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    assert_eq!(LayerOptions::default().compression, Compression::Gzip);
    let plain = write_layer(&tar, LayerOptions::new(Compression::None), 1 << 20);
    assert_eq!(plain.1.media_type, "application/vnd.oci.image.layer.v1.tar");
    // The blob decodes through the media type it was given.
    let mut out = Vec::new();
    Decoder::for_media_type(&z19.0[..], z19.1.media_type, Limits::default())
        .unwrap()
        .read_to_end(&mut out)
        .unwrap();
    assert_eq!(out, tar);
}

#[cfg(all(feature = "gzip", feature = "zstd"))]
#[test]
fn empty_layers() {
    for compression in [Compression::Gzip, Compression::Zstd, Compression::None] {
        let (blob, info) = write_layer(b"", LayerOptions::new(compression), 1);
        check_info(b"", &blob, &info, compression);
        assert_eq!(info.diff_id, Digest::sha256(b""));
    }
}

#[cfg(all(feature = "gzip", feature = "zstd"))]
#[test]
fn write_errors_surface() {
    let tar = noise(3 << 20, 47);
    for compression in [Compression::Gzip, Compression::Zstd, Compression::None] {
        let options = LayerOptions::new(compression).with_threads(2);
        let result = LayerWriter::from_reader(&tar[..], Failing { room: 50_000 }, options);
        match result {
            Err(Error::Io { source, .. }) => assert_eq!(source.kind(), io::ErrorKind::StorageFull),
            other => panic!("{compression:?}: {other:?}"),
        }
        let mut writer = LayerWriter::new(Failing { room: 50_000 }, options).unwrap();
        let err = writer
            .write_all(&tar)
            .map_err(error_from_io)
            .err()
            .or_else(|| writer.finish().err());
        assert!(matches!(err, Some(Error::Io { .. })), "{err:?}");
    }
    // Read errors of the tar source are reported as reads.
    struct Broken;
    impl Read for Broken {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::other("broken source"))
        }
    }
    match LayerWriter::from_reader(Broken, Vec::new(), LayerOptions::default()) {
        Err(Error::Io { operation, .. }) => assert_eq!(operation, "read"),
        other => panic!("{other:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[cfg(all(feature = "gzip", feature = "zstd"))]
    #[test]
    fn random_layers_round_trip(
        data in proptest::collection::vec(any::<u8>(), 0..30_000),
        repeat in 1usize..5,
        chunk in 1usize..10_000,
        threads in 0usize..4,
        block in 1024usize..16_384,
        which in 0usize..3,
    ) {
        let compression = [Compression::Gzip, Compression::Zstd, Compression::None][which];
        let input = data.repeat(repeat);
        let options = LayerOptions::new(compression)
            .with_threads(threads)
            .with_gzip_block_size(block);
        let (blob, info) = write_layer(&input, options, chunk);
        prop_assert_eq!(&info.digest, &Digest::sha256(&blob));
        prop_assert_eq!(info.size, blob.len() as u64);
        prop_assert_eq!(&info.diff_id, &Digest::sha256(&input));
        prop_assert_eq!(info.uncompressed_size, input.len() as u64);
        prop_assert_eq!(&decode(&blob, compression).unwrap(), &input);
        // The same options always give the same bytes, with any thread count.
        let again = write_layer(&input, options.with_threads(1), 7777);
        prop_assert_eq!(again.0, blob);
    }
}

/// `tar` compressed by the gzip and zstd crates directly (not by this crate's encoder).
fn gzip_and_zstd_of(tar: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(tar).unwrap();
    (gz.finish().unwrap(), zstd::encode_all(tar, 3).unwrap())
}

#[cfg(all(feature = "gzip", feature = "zstd"))]
#[test]
fn tar_files_plain_gzip_or_zstd_give_the_layer_of_the_tar() {
    let tar = sample_tar();
    let (gz, zst) = gzip_and_zstd_of(&tar);
    for compression in [Compression::Gzip, Compression::Zstd, Compression::None] {
        let options = LayerOptions::new(compression).with_threads(2);
        let expected = LayerWriter::from_reader(&tar[..], Vec::new(), options).unwrap();
        for (what, source) in [("plain", &tar), ("gzip", &gz), ("zstd", &zst)] {
            let got =
                LayerWriter::from_tar_file(&source[..], Vec::new(), options, Limits::default())
                    .unwrap_or_else(|e| panic!("{what} into {compression:?}: {e:?}"));
            assert_eq!(got, expected, "{what} into {compression:?}");
            // The diffID is of the uncompressed tar, whatever the file's compression.
            assert_eq!(got.1.diff_id, Digest::sha256(&tar));
            assert_eq!(decode(&got.0, compression).unwrap(), tar);
        }
    }
    // A tar as umoci writes it (no end blocks, no final padding) is a tar; its bytes are kept.
    let mut header = tar::Header::new_ustar();
    header.set_path("hello").unwrap();
    header.set_size(5);
    header.set_mode(0o644);
    header.set_cksum();
    let cut = [&header.as_bytes()[..], b"hello"].concat();
    let options = LayerOptions::new(Compression::None);
    let (blob, info) =
        LayerWriter::from_tar_file(&cut[..], Vec::new(), options, Limits::default()).unwrap();
    assert_eq!(
        (blob.as_slice(), info.diff_id),
        (&cut[..], Digest::sha256(&cut))
    );
    // An empty file is an empty archive.
    LayerWriter::from_tar_file(&b""[..], Vec::new(), options, Limits::default()).unwrap();
}

#[cfg(all(feature = "gzip", feature = "zstd"))]
#[test]
fn tar_files_that_are_not_tars_are_refused() {
    let tar = sample_tar();
    let options = LayerOptions::new(Compression::Gzip).with_threads(0);
    let refuse = |source: &[u8]| {
        LayerWriter::from_tar_file(source, Vec::new(), options, Limits::default())
            .expect_err("accepted")
    };
    // Not a tar at all, plain or compressed.
    let (gz_garbage, zst_garbage) = gzip_and_zstd_of(&noise(4096, 7));
    for (source, compression) in [
        (&b"garbage\n"[..], "uncompressed"),
        (&noise(4096, 7), "uncompressed"),
        (&text_like(10_000, 8), "uncompressed"),
        (&gz_garbage, "gzip"),
        (&zst_garbage, "zstd"),
    ] {
        match refuse(source) {
            Error::NotTar {
                compression: found, ..
            } => assert_eq!(found, compression),
            other => panic!("expected NotTar, got {other:?}"),
        }
    }
    // A tar cut inside an entry's data, or inside a header: truncated.
    // usr/ is block 0, usr/share/doc.txt's header block 1, its 700,000 bytes from block 2.
    for cut in [512 + 100, 1024 + 100, 1024 + 700_000 - 1] {
        match refuse(&tar[..cut]) {
            Error::Corrupt {
                format: "tar",
                source,
            } => assert_eq!(source.kind(), io::ErrorKind::UnexpectedEof, "cut at {cut}"),
            other => panic!("cut at {cut}: expected a truncated tar, got {other:?}"),
        }
    }
    // A gzip file cut short: the gzip stream is corrupt.
    let (gz, _) = gzip_and_zstd_of(&tar);
    assert!(matches!(
        refuse(&gz[..gz.len() / 2]),
        Error::Corrupt { format: "gzip", .. }
    ));
    // What the strict reader refuses (here a PAX number with a leading `+`).
    let mut builder = tar::Builder::new(Vec::new());
    builder
        .append_pax_extensions([("size", &b"+1"[..])])
        .unwrap();
    let mut header = tar::Header::new_ustar();
    header.set_path("f").unwrap();
    header.set_size(1);
    header.set_cksum();
    builder.append(&header, &b"x"[..]).unwrap();
    let plus = builder.into_inner().unwrap();
    assert!(matches!(refuse(&plus), Error::InvalidEntry { .. }));
}

#[test]
fn tar_file_write_and_read_errors_are_not_taken_for_bad_tars() {
    let tar = [sample_tar(), sample_tar()].concat();
    let options = LayerOptions::new(Compression::None).with_threads(0);
    match LayerWriter::from_tar_file(
        &tar[..],
        Failing { room: 50_000 },
        options,
        Limits::default(),
    ) {
        Err(Error::Io {
            operation, source, ..
        }) => {
            assert_eq!(operation, "write");
            assert_eq!(source.kind(), io::ErrorKind::StorageFull);
        }
        other => panic!("{other:?}"),
    }
    struct Broken;
    impl Read for Broken {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::other("broken source"))
        }
    }
    match LayerWriter::from_tar_file(Broken, Vec::new(), options, Limits::default()) {
        Err(Error::Io { operation, .. }) => assert_eq!(operation, "read"),
        other => panic!("{other:?}"),
    }
}
