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
