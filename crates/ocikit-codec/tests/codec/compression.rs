//! Codecs: round trips, multi-member gzip, zstd frames, magic checks, unsupported media
//! types, and every compression hostile input of SPEC part C.5.
// Tests that need a codec are gated on its feature, so that `cargo test --no-default-features`
// runs the rest; what only they use is then unused.
#![cfg_attr(
    not(all(feature = "gzip", feature = "zstd")),
    allow(unused_imports, dead_code)
)]

use std::io::{self, Read, Write};

use ocikit_codec::compression::{
    self, Compression, Decoder, Encoder, check_magic, compression_of, error_from_io, sniff,
};
use ocikit_codec::{Error, Limit, Limits};
use proptest::prelude::*;

pub(crate) const GZIP_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub(crate) const ZSTD_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub(crate) const PLAIN_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";

/// Deterministic, source-code-like text (compresses to roughly a quarter), `len` bytes.
pub(crate) fn text_like(len: usize, seed: u64) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "fn",
        "let",
        "mut",
        "self",
        "return",
        "match",
        "impl",
        "pub",
        "struct",
        "Vec<u8>",
        "Option",
        "Some(x)",
        "None",
        "if",
        "else",
        "for",
        "in",
        "while",
        "loop",
        "=>",
        "{",
        "}",
        "(",
        ");",
        "&mut",
        "usize",
        "u64",
        "io::Result<()>",
        "Ok(())",
        "Err(e)",
        "// comment",
        "buffer",
        "reader",
        "writer",
        "digest",
        "layer",
        "compress",
        "0x1f",
    ];
    let mut rng = ocikit_testkit::prng::Prng::new(seed);
    let mut out = Vec::with_capacity(len + 32);
    while out.len() < len {
        let state = rng.next_u64();
        let word = WORDS[(state % WORDS.len() as u64) as usize];
        out.extend_from_slice(word.as_bytes());
        out.push(if state >> 60 == 0 { b'\n' } else { b' ' });
        if state >> 58 == 1 {
            // Some numbers, as in real code and data.
            out.extend_from_slice(format!("{} ", state >> 40).as_bytes());
        }
    }
    out.truncate(len);
    out
}

/// Deterministic incompressible bytes.
pub(crate) fn noise(len: usize, seed: u64) -> Vec<u8> {
    ocikit_testkit::prng::bytes(seed, len)
}

pub(crate) fn encode(data: &[u8], compression: Compression, threads: usize) -> Vec<u8> {
    let mut encoder = Encoder::new(Vec::new(), compression, None).unwrap();
    encoder.multithread(threads).unwrap();
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn flate2_gzip(data: &[u8], level: u32) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn decode_with(blob: &[u8], compression: Compression, limits: Limits) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    Decoder::new(blob, compression, limits)
        .read_to_end(&mut out)
        .map_err(error_from_io)?;
    Ok(out)
}

pub(crate) fn decode(blob: &[u8], compression: Compression) -> Result<Vec<u8>, Error> {
    decode_with(blob, compression, Limits::default())
}

fn skippable(magic_low: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![0x50 | (magic_low & 0x0f), 0x2a, 0x4d, 0x18];
    frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    frame.extend_from_slice(payload);
    frame
}

fn assert_corrupt(result: Result<Vec<u8>, Error>, expected: &str) {
    match result {
        Err(Error::Corrupt { format, .. }) => assert_eq!(format, expected),
        other => panic!("expected Corrupt {{ {expected} }}, got {other:?}"),
    }
}

/// Runs `gzip -d` on `blob` and returns its output; `None` (skip) when gzip is not
/// installed, except under CI where it must be.
pub(crate) fn system_gunzip(blob: &[u8]) -> Option<Vec<u8>> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("layer.gz");
    std::fs::write(&path, blob).unwrap();
    let output = ocikit_testkit::Tool::require("gzip")?
        .command()
        .arg("-d")
        .arg("-c")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "gzip -d rejected the stream: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Some(output.stdout)
}

#[cfg(all(feature = "gzip", feature = "zstd"))]
#[test]
fn round_trips_every_codec() {
    let data = [
        Vec::new(),
        b"x".to_vec(),
        text_like(100_000, 1),
        noise(70_000, 2),
        [text_like(3 << 20, 3), noise(1 << 20, 4)].concat(),
    ];
    for compression in [Compression::None, Compression::Gzip, Compression::Zstd] {
        for input in &data {
            for threads in [0, 2] {
                let blob = encode(input, compression, threads);
                assert_eq!(sniff(&blob), compression);
                assert_eq!(
                    &decode(&blob, compression).unwrap(),
                    input,
                    "{compression:?}"
                );
            }
        }
    }
}

#[cfg(all(feature = "gzip", feature = "zstd"))]
#[test]
fn media_types_choose_the_codec() {
    for (media_type, compression) in [
        (PLAIN_TYPE, Compression::None),
        (GZIP_TYPE, Compression::Gzip),
        (ZSTD_TYPE, Compression::Zstd),
        (
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
            Compression::Gzip,
        ),
        (
            "application/vnd.docker.image.rootfs.diff.tar.zstd",
            Compression::Zstd,
        ),
        (
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
            Compression::Gzip,
        ),
        (
            "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
            Compression::Gzip,
        ),
    ] {
        assert_eq!(compression_of(media_type).unwrap(), compression);
        let blob = encode(b"some tar bytes", compression, 0);
        let mut out = Vec::new();
        Decoder::for_media_type(&blob[..], media_type, Limits::default())
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, b"some tar bytes");
    }
}

/// C-Z08: unknown layer types are refused with a typed error (and nothing is run).
#[test]
fn unsupported_media_types_are_refused() {
    for media_type in [
        "application/vnd.oci.image.layer.v1.tar+bzip2",
        "application/vnd.oci.image.layer.v1.tar+xz",
        "application/vnd.example.layer.v1.tar+lz4",
        "application/vnd.oci.image.config.v1+json",
        "application/octet-stream",
        "",
    ] {
        match compression_of(media_type) {
            Err(Error::UnsupportedMediaType { media_type: m }) => assert_eq!(m, media_type),
            other => panic!("{media_type}: {other:?}"),
        }
        assert!(matches!(
            Decoder::for_media_type(&b"BZh91AY&SY"[..], media_type, Limits::default()),
            Err(Error::UnsupportedMediaType { .. })
        ));
    }
}

/// A build without a codec's feature (`--no-default-features`) refuses that codec's layers as
/// unsupported, for decoding and encoding alike: a gzip or zstd blob is never passed through
/// as if it were a plain tar, and uncompressed layers still work.
#[cfg(not(all(feature = "gzip", feature = "zstd")))]
#[test]
fn a_codec_whose_feature_is_off_is_refused() {
    let missing: Vec<_> = [
        (
            cfg!(feature = "gzip"),
            Compression::Gzip,
            GZIP_TYPE,
            flate2_gzip(b"tar bytes", 6),
        ),
        (
            cfg!(feature = "zstd"),
            Compression::Zstd,
            ZSTD_TYPE,
            zstd::encode_all(&b"tar bytes"[..], 3).unwrap(),
        ),
    ]
    .into_iter()
    .filter(|(enabled, ..)| !enabled)
    .map(|(_, compression, media_type, blob)| (compression, media_type, blob))
    .collect();
    assert!(!missing.is_empty());
    for (compression, media_type, blob) in missing {
        let mut decoder = Decoder::for_media_type(&blob[..], media_type, Limits::default())
            .expect("the media type is known");
        let error = error_from_io(decoder.read_to_end(&mut Vec::new()).unwrap_err());
        match error {
            Error::UnsupportedMediaType { media_type } => {
                assert!(media_type.contains("feature not enabled"), "{media_type}")
            }
            other => panic!("{compression:?}: {other:?}"),
        }
        assert!(matches!(
            Encoder::new(Vec::new(), compression, None),
            Err(Error::UnsupportedMediaType { .. })
        ));
    }
    assert_eq!(
        decode(b"plain tar", Compression::None).unwrap(),
        b"plain tar"
    );
}

#[cfg(feature = "zstd")]
/// C-Z06: every data frame is decoded and skippable frames (any of the 16 magics) skipped.
#[test]
fn zstd_concatenated_and_skippable_frames() {
    let a = text_like(300_000, 5);
    let b = noise(10_000, 6);
    let c = text_like(1000, 7);
    let mut blob = skippable(0, b"leading metadata");
    blob.extend(encode(&a, Compression::Zstd, 0));
    blob.extend(skippable(0xf, &noise(5000, 8)));
    blob.extend(encode(&b, Compression::Zstd, 2));
    blob.extend(skippable(7, b""));
    blob.extend(encode(&c, Compression::Zstd, 0));
    blob.extend(skippable(3, b"trailing"));
    assert_eq!(sniff(&blob), Compression::Zstd);
    assert_eq!(
        decode(&blob, Compression::Zstd).unwrap(),
        [a, b, c].concat()
    );
    // A stream of nothing but skippable frames is a valid, empty stream.
    let only = [skippable(1, b"x"), skippable(2, b"")].concat();
    assert_eq!(decode(&only, Compression::Zstd).unwrap(), b"");
}

#[cfg(feature = "zstd")]
/// The multithreaded zstd encoder cuts its input into jobs of `ZSTD_JOB_SIZE` (which bounds
/// its memory): the bytes are libzstd's own with that job size, whatever the number of
/// workers from 1 up and the write sizes, and differ from libzstd's default job size (8 MiB
/// at level 3), so the job size really is applied.
#[test]
fn zstd_jobs_are_fixed_and_the_bytes_do_not_depend_on_the_workers() {
    // 12 MiB: six of our jobs, two of libzstd's default ones.
    let mut data = Vec::new();
    for i in 0..12 {
        data.extend(text_like(3 << 18, 60 + i));
        data.extend(noise(1 << 18, 80 + i));
    }
    let ours = |workers: usize, chunk: usize| {
        let mut encoder = Encoder::new(Vec::new(), Compression::Zstd, None).unwrap();
        encoder.multithread(workers).unwrap();
        for piece in data.chunks(chunk) {
            encoder.write_all(piece).unwrap();
        }
        encoder.finish().unwrap()
    };
    let libzstd = |job_size: Option<u32>| {
        let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        encoder.include_checksum(true).unwrap();
        encoder.multithread(1).unwrap();
        if let Some(size) = job_size {
            encoder
                .set_parameter(zstd::zstd_safe::CParameter::JobSize(size))
                .unwrap();
        }
        encoder.write_all(&data).unwrap();
        encoder.finish().unwrap()
    };
    // `assert!` rather than `assert_eq!`: a failure would print megabytes.
    let one = ours(1, 1 << 20);
    assert!(ours(2, 1 << 20) == one, "2 workers");
    assert!(ours(2, 77_777) == one, "2 workers, other writes");
    assert!(ours(3, 1 << 20) == one, "3 workers");
    assert!(
        one == libzstd(Some(compression::ZSTD_JOB_SIZE)),
        "libzstd with ZSTD_JOB_SIZE"
    );
    assert!(
        one != libzstd(None),
        "the default job size gives other bytes"
    );
    assert_eq!(decode(&one, Compression::Zstd).unwrap(), data);
}

#[cfg(feature = "gzip")]
#[test]
fn gzip_multi_member_decodes_fully() {
    let parts = [
        text_like(200_000, 9),
        Vec::new(),
        noise(50_000, 10),
        b"end".to_vec(),
    ];
    let mut blob = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        if i % 2 == 0 {
            blob.extend(flate2_gzip(part, 6));
        } else {
            blob.extend(encode(part, Compression::Gzip, 2));
        }
    }
    assert_eq!(decode(&blob, Compression::Gzip).unwrap(), parts.concat());
    if let Some(out) = system_gunzip(&blob) {
        assert_eq!(out, parts.concat());
    }
}

#[cfg(all(feature = "gzip", feature = "zstd"))]
#[test]
fn magic_mismatches_are_refused() {
    let gzip = encode(b"data", Compression::Gzip, 0);
    let zstd = encode(b"data", Compression::Zstd, 0);
    let skip = skippable(4, b"meta");
    let tar = b"etc/\0\0\0\0 a plain tar header".to_vec();
    let cases = [
        (&gzip, Compression::None, "uncompressed", "gzip"),
        (&zstd, Compression::None, "uncompressed", "zstd"),
        (&skip, Compression::None, "uncompressed", "zstd"),
        (&tar, Compression::Gzip, "gzip", "uncompressed"),
        (&tar, Compression::Zstd, "zstd", "uncompressed"),
        (&zstd, Compression::Gzip, "gzip", "zstd"),
        (&gzip, Compression::Zstd, "zstd", "gzip"),
    ];
    for (blob, declared, d, found) in cases {
        match decode(blob, declared) {
            Err(Error::CompressionMismatch { declared, detected }) => {
                assert_eq!((declared, detected), (d, found));
            }
            other => panic!("{declared:?} on {:?}: {other:?}", &blob[..4]),
        }
        assert!(check_magic(declared, &blob[..4]).is_err());
    }
    // A plain tar that merely starts with 0x1f (not 0x1f 0x8b) is fine.
    assert_eq!(decode(b"\x1fabc", Compression::None).unwrap(), b"\x1fabc");
    assert_eq!(decode(b"", Compression::None).unwrap(), b"");
    // Empty or cut inside the magic: corrupt (truncated), not a mismatch.
    assert_corrupt(decode(b"", Compression::Gzip), "gzip");
    assert_corrupt(decode(b"\x1f", Compression::Gzip), "gzip");
    assert_corrupt(decode(b"", Compression::Zstd), "zstd");
    assert_corrupt(decode(b"\x28\xb5\x2f", Compression::Zstd), "zstd");
    assert_corrupt(decode(b"\x5e\x2a", Compression::Zstd), "zstd");
}

#[cfg(all(feature = "gzip", feature = "zstd"))]
/// C-Z01: a bomb stops at the configured cap (exactly the cap is still fine).
#[test]
fn decompression_bombs_hit_the_cap() {
    let zeros = vec![0u8; 16 << 20];
    for compression in [Compression::Gzip, Compression::Zstd, Compression::None] {
        let blob = encode(&zeros, compression, 0);
        if compression != Compression::None {
            assert!(
                blob.len() < 100_000,
                "{compression:?} bomb is {} bytes",
                blob.len()
            );
        }
        let cap = 1 << 20;
        let limits = Limits::default().with_max_decompressed_bytes(cap);
        let mut decoder = Decoder::new(&blob[..], compression, limits);
        let mut out = Vec::new();
        let err = decoder.read_to_end(&mut out).unwrap_err();
        assert_eq!(out.len() as u64, cap, "output stops at the cap");
        match error_from_io(err) {
            Error::LimitExceeded {
                limit: Limit::DecompressedBytes,
                max,
            } => assert_eq!(max, cap),
            other => panic!("{other:?}"),
        }
        // Poisoned: no clean EOF afterwards.
        assert!(decoder.read(&mut [0u8; 16]).is_err());
        // Exactly at the cap is fine.
        let exact = Limits::default().with_max_decompressed_bytes(zeros.len() as u64);
        assert_eq!(
            decode_with(&blob, compression, exact).unwrap().len(),
            zeros.len()
        );
    }
}

#[cfg(all(feature = "gzip", feature = "zstd"))]
/// C-Z02: truncated gzip (missing trailer, cut in the body, cut in the header) and zstd.
#[test]
fn truncated_streams_are_corrupt() {
    let data = text_like(200_000, 11);
    let gzip = encode(&data, Compression::Gzip, 2);
    for cut in [1, 4, 8, gzip.len() / 2, 9, 11] {
        assert_corrupt(decode(&gzip[..gzip.len() - cut], Compression::Gzip), "gzip");
    }
    for cut in [3, 10, 12] {
        assert_corrupt(decode(&gzip[..cut], Compression::Gzip), "gzip");
    }
    let zstd = encode(&data, Compression::Zstd, 0);
    for cut in [1, 4, zstd.len() / 2, zstd.len() - 6] {
        assert_corrupt(decode(&zstd[..zstd.len() - cut], Compression::Zstd), "zstd");
    }
    // A truncated skippable frame too.
    let skip = skippable(0, b"0123456789");
    assert_corrupt(decode(&skip[..12], Compression::Zstd), "zstd");
}

#[cfg(feature = "gzip")]
/// C-Z03: a wrong CRC32 or ISIZE fails, and the decoder stays failed.
#[test]
fn bad_gzip_trailers_are_corrupt() {
    let data = text_like(100_000, 12);
    let good = encode(&data, Compression::Gzip, 0);
    let n = good.len();
    for at in [n - 8, n - 5, n - 4, n - 1] {
        let mut bad = good.clone();
        bad[at] ^= 0x01;
        let mut decoder = Decoder::new(&bad[..], Compression::Gzip, Limits::default());
        let mut out = Vec::new();
        let err = error_from_io(decoder.read_to_end(&mut out).unwrap_err());
        assert!(
            matches!(err, Error::Corrupt { format: "gzip", .. }),
            "{err:?}"
        );
        // flate2's own decoder would now report a clean end; ours keeps failing.
        let again = error_from_io(decoder.read(&mut [0u8; 64]).unwrap_err());
        assert!(
            matches!(again, Error::Corrupt { format: "gzip", .. }),
            "{again:?}"
        );
    }
    // A corrupt deflate body and a bad second member too.
    let mut body = good.clone();
    body[n / 2] ^= 0xff;
    assert!(decode(&body, Compression::Gzip).is_err());
    let mut two = good.clone();
    two.extend_from_slice(&good[..20]);
    assert_corrupt(decode(&two, Compression::Gzip), "gzip");
}

#[cfg(all(feature = "gzip", feature = "zstd"))]
#[test]
fn trailing_garbage_is_corrupt() {
    let mut gzip = encode(b"layer", Compression::Gzip, 0);
    gzip.extend_from_slice(b"\0\0\0\0garbage");
    assert_corrupt(decode(&gzip, Compression::Gzip), "gzip");
    let mut zstd = encode(b"layer", Compression::Zstd, 0);
    zstd.extend_from_slice(b"garbage!");
    assert_corrupt(decode(&zstd, Compression::Zstd), "zstd");
    // A corrupted zstd block is caught by zstd (and the content checksum).
    let data = noise(100_000, 13);
    let mut bad = encode(&data, Compression::Zstd, 0);
    let at = bad.len() / 2;
    bad[at] ^= 0x40;
    assert_corrupt(decode(&bad, Compression::Zstd), "zstd");
}

/// A zstd frame header asking for a 2^`log` byte window (no content, not single-segment).
fn zstd_frame_with_window_log(log: u8) -> Vec<u8> {
    // Magic, Frame_Header_Descriptor 0 (no FCS, no checksum, no dictionary), then the
    // Window_Descriptor (exponent = log - 10, mantissa 0), then one empty last raw block.
    let mut frame = compression::ZSTD_MAGIC.to_vec();
    frame.push(0);
    frame.push((log - 10) << 3);
    frame.extend_from_slice(&[1, 0, 0]);
    frame
}

#[cfg(feature = "zstd")]
/// C-Z05: a frame declaring window_log 31 (2 GiB) is refused before any allocation.
#[test]
fn zstd_window_over_the_cap_is_refused() {
    let frame = zstd_frame_with_window_log(31);
    match decode(&frame, Compression::Zstd) {
        Err(Error::LimitExceeded {
            limit: Limit::ZstdWindow,
            max,
        }) => assert_eq!(max, 1 << 27),
        other => panic!("{other:?}"),
    }
    // The same header under a 2 GiB cap is an (empty) valid frame.
    let unlimited = Limits::default().with_max_zstd_window_log(31);
    assert_eq!(
        decode_with(&frame, Compression::Zstd, unlimited).unwrap(),
        b""
    );
    // A real stream compressed with a 256 MiB window: refused at 27, fine at 28.
    let data = text_like(100_000, 14);
    let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
    encoder.window_log(28).unwrap();
    encoder.write_all(&data).unwrap();
    let blob = encoder.finish().unwrap();
    assert!(matches!(
        decode(&blob, Compression::Zstd),
        Err(Error::LimitExceeded {
            limit: Limit::ZstdWindow,
            ..
        })
    ));
    let ok = Limits::default().with_max_zstd_window_log(28);
    assert_eq!(decode_with(&blob, Compression::Zstd, ok).unwrap(), data);
    // A small cap refuses ordinary level-3 frames of large inputs (window 2^21).
    let big = text_like(4 << 20, 15);
    let blob = encode(&big, Compression::Zstd, 0);
    let small = Limits::default().with_max_zstd_window_log(20);
    assert!(matches!(
        decode_with(&blob, Compression::Zstd, small),
        Err(Error::LimitExceeded {
            limit: Limit::ZstdWindow,
            max: 1_048_576
        })
    ));
}

/// A reader that yields its bytes one at a time, with `Interrupted` in between, then
/// optionally fails.
struct Awkward<'a> {
    data: &'a [u8],
    interrupted: bool,
    fail_at_end: bool,
}

impl Read for Awkward<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.interrupted = !self.interrupted;
        if self.interrupted {
            return Err(io::ErrorKind::Interrupted.into());
        }
        match self.data.split_first() {
            Some((&b, rest)) if !buf.is_empty() => {
                buf[0] = b;
                self.data = rest;
                Ok(1)
            }
            _ if self.fail_at_end => Err(io::Error::new(io::ErrorKind::ConnectionReset, "gone")),
            _ => Ok(0),
        }
    }
}

#[cfg(all(feature = "gzip", feature = "zstd"))]
#[test]
fn source_errors_are_io_errors_not_corruption() {
    let data = text_like(20_000, 16);
    for compression in [Compression::None, Compression::Gzip, Compression::Zstd] {
        let blob = encode(&data, compression, 0);
        // Byte-at-a-time with Interrupted in between still decodes.
        let source = Awkward {
            data: &blob,
            interrupted: false,
            fail_at_end: false,
        };
        let mut out = Vec::new();
        Decoder::new(source, compression, Limits::default())
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, data);
        // A source that fails half-way: the error is the source's, as Error::Io.
        let source = Awkward {
            data: &blob[..blob.len() / 2],
            interrupted: false,
            fail_at_end: true,
        };
        let err = Decoder::new(source, compression, Limits::default())
            .read_to_end(&mut Vec::new())
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
        match error_from_io(err) {
            Error::Io { source, .. } => {
                assert_eq!(source.kind(), io::ErrorKind::ConnectionReset);
            }
            other => panic!("{compression:?}: {other:?}"),
        }
    }
    // Errors while reading the magic bytes too.
    let source = Awkward {
        data: b"",
        interrupted: true,
        fail_at_end: true,
    };
    let err = Decoder::new(source, Compression::Gzip, Limits::default())
        .read_to_end(&mut Vec::new())
        .unwrap_err();
    assert!(matches!(error_from_io(err), Error::Io { .. }));
}

#[cfg(feature = "gzip")]
#[test]
fn parallel_gzip_is_reproducible_and_standard() {
    let data = [
        text_like(5 << 20, 17),
        noise(1 << 20, 18),
        text_like(300_000, 19),
    ]
    .concat();
    let reference = encode(&data, Compression::Gzip, 0);
    for threads in [1, 2, 3, 8] {
        assert_eq!(
            encode(&data, Compression::Gzip, threads),
            reference,
            "{threads} threads"
        );
    }
    // Write sizes and flushes do not change the bytes either.
    let mut encoder = Encoder::new(Vec::new(), Compression::Gzip, None).unwrap();
    encoder.multithread(2).unwrap();
    for (i, chunk) in data.chunks(77_777).enumerate() {
        encoder.write_all(chunk).unwrap();
        if i % 5 == 0 {
            encoder.flush().unwrap();
        }
    }
    assert_eq!(encoder.finish().unwrap(), reference);

    // Standard gzip: flate2's decoder and the system gzip accept it.
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(&reference[..])
        .read_to_end(&mut out)
        .unwrap();
    assert_eq!(out, data);
    if let Some(out) = system_gunzip(&reference) {
        assert_eq!(out, data);
    }
    // Header: mtime 0, OS unknown; trailer: ISIZE.
    assert_eq!(&reference[..10], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]);
    let isize = u32::from_le_bytes(reference[reference.len() - 4..].try_into().unwrap());
    assert_eq!(isize as usize, data.len());

    // Within 1% of single-stream level 6.
    let single = flate2_gzip(&data, 6);
    let ratio = reference.len() as f64 / single.len() as f64;
    assert!(
        ratio < 1.01,
        "parallel {} vs single {} ({ratio})",
        reference.len(),
        single.len()
    );
}

#[cfg(feature = "gzip")]
/// Many small blocks of mixed content, compressed by different workers in different
/// orders: the bytes must not depend on which worker compressed what before (zlib-rs's
/// `deflateReset` leaves state that changes later output; each block needs a fresh state).
#[test]
fn parallel_gzip_blocks_do_not_depend_on_worker_history() {
    let mut data = Vec::new();
    for i in 0..48 {
        data.extend(text_like(20_000 + i * 997, 100 + i as u64));
        data.extend(noise(15_000 + i * 131, 200 + i as u64));
        data.extend(std::iter::repeat_n(b'z', i * 100));
    }
    let encode_with = |threads: usize| {
        let mut encoder = Encoder::new(Vec::new(), Compression::Gzip, None).unwrap();
        encoder.set_gzip_block_size(16 << 10);
        encoder.multithread(threads).unwrap();
        encoder.write_all(&data).unwrap();
        encoder.finish().unwrap()
    };
    let reference = encode_with(0);
    for threads in [2, 3, 5] {
        for _ in 0..3 {
            assert_eq!(encode_with(threads), reference, "{threads} threads");
        }
    }
    assert_eq!(decode(&reference, Compression::Gzip).unwrap(), data);
}

#[cfg(feature = "gzip")]
#[test]
fn gzip_levels_and_block_sizes() {
    let data = text_like(200_000, 20);
    for level in [0, 1, 6, 9, 42, -3] {
        for block in [1 << 10, 5000, 32 << 10, 1 << 20] {
            let mut encoder = Encoder::new(Vec::new(), Compression::Gzip, Some(level)).unwrap();
            encoder.set_gzip_block_size(block);
            encoder.multithread(2).unwrap();
            encoder.write_all(&data).unwrap();
            let blob = encoder.finish().unwrap();
            assert_eq!(
                decode(&blob, Compression::Gzip).unwrap(),
                data,
                "{level} {block}"
            );
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&blob[..])
                .read_to_end(&mut out)
                .unwrap();
            assert_eq!(out, data);
        }
    }
    // Level 0 stores; level 9 compresses at least as well as level 1.
    let stored = encode_level(&data, 0);
    assert!(stored.len() > data.len());
    assert!(encode_level(&data, 9).len() <= encode_level(&data, 1).len());
}

fn encode_level(data: &[u8], level: i32) -> Vec<u8> {
    let mut encoder = Encoder::new(Vec::new(), Compression::Gzip, Some(level)).unwrap();
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

#[cfg(feature = "zstd")]
#[test]
fn zstd_output_does_not_depend_on_worker_count() {
    let data = [text_like(12 << 20, 21), noise(2 << 20, 22)].concat();
    let one = encode(&data, Compression::Zstd, 1);
    for threads in [2, 3] {
        assert_eq!(
            encode(&data, Compression::Zstd, threads),
            one,
            "{threads} workers"
        );
    }
    assert_eq!(decode(&one, Compression::Zstd).unwrap(), data);
    // The system zstd accepts it (installed: a failure under CI otherwise).
    if let Some(zstd) = ocikit_testkit::Tool::require("zstd") {
        let mut child = zstd
            .command()
            .args(["-d", "-c", "-q"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let blob = one.clone();
        let feeder = std::thread::spawn(move || stdin.write_all(&blob));
        let output = child.wait_with_output().unwrap();
        feeder.join().unwrap().unwrap();
        assert!(output.status.success());
        assert_eq!(output.stdout, data);
    }
}

/// A writer that fails after `room` bytes.
#[derive(Debug)]
pub(crate) struct Failing {
    pub(crate) room: usize,
}

impl Write for Failing {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.room == 0 {
            return Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"));
        }
        let n = buf.len().min(self.room);
        self.room -= n;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(all(feature = "gzip", feature = "zstd"))]
#[test]
fn encoder_write_errors_surface() {
    let data = noise(3 << 20, 23);
    for compression in [Compression::Gzip, Compression::Zstd, Compression::None] {
        for threads in [0, 2] {
            let mut encoder = Encoder::new(Failing { room: 100_000 }, compression, None).unwrap();
            encoder.multithread(threads).unwrap();
            let result = encoder.write_all(&data).map_err(error_from_io);
            let err = match result {
                Err(err) => err,
                Ok(()) => encoder.finish().unwrap_err(),
            };
            match err {
                Error::Io { source, .. } => assert_eq!(source.kind(), io::ErrorKind::StorageFull),
                other => panic!("{compression:?}: {other:?}"),
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[cfg(all(feature = "gzip", feature = "zstd"))]
    #[test]
    fn random_bytes_round_trip(
        data in proptest::collection::vec(any::<u8>(), 0..40_000),
        repeat in 1usize..4,
        chunk in 1usize..9000,
        threads in 0usize..3,
        block in 1024usize..20_000,
    ) {
        // Repeating makes it compressible; chunked writes exercise block boundaries.
        let input = data.repeat(repeat);
        for compression in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let mut encoder = Encoder::new(Vec::new(), compression, None).unwrap();
            encoder.multithread(threads).unwrap();
            encoder.set_gzip_block_size(block);
            for piece in input.chunks(chunk) {
                encoder.write_all(piece).unwrap();
            }
            let blob = encoder.finish().unwrap();
            prop_assert_eq!(&decode(&blob, compression).unwrap(), &input);
        }
    }

    #[test]
    fn arbitrary_bytes_never_exceed_the_cap(data in proptest::collection::vec(any::<u8>(), 0..2000)) {
        let limits = Limits::default().with_max_decompressed_bytes(4096);
        for compression in [Compression::Gzip, Compression::Zstd] {
            let mut prefixed = match compression {
                Compression::Gzip => vec![0x1f, 0x8b, 8, 0],
                _ => compression::ZSTD_MAGIC.to_vec(),
            };
            prefixed.extend_from_slice(&data);
            if let Ok(out) = decode_with(&prefixed, compression, limits) {
                prop_assert!(out.len() <= 4096);
            }
        }
    }
}

#[cfg(feature = "tokio")]
mod asynchronous {
    use ocikit_codec::async_io::{AsyncDecoder, AsyncEncoder};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    async fn async_encode(data: &[u8], compression: Compression) -> Vec<u8> {
        let mut encoder = AsyncEncoder::new(Vec::new(), compression, None).unwrap();
        for chunk in data.chunks(100_000) {
            encoder.write_all(chunk).await.unwrap();
        }
        encoder.finish().await.unwrap()
    }

    async fn async_decode(
        blob: &[u8],
        compression: Compression,
        limits: Limits,
    ) -> Result<Vec<u8>, Error> {
        let mut out = Vec::new();
        AsyncDecoder::new(blob, compression, limits)
            .read_to_end(&mut out)
            .await
            .map_err(error_from_io)?;
        Ok(out)
    }

    #[tokio::test]
    async fn async_round_trips_and_interoperates() {
        let data = [text_like(1 << 20, 30), noise(100_000, 31)].concat();
        for compression in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let blob = async_encode(&data, compression).await;
            assert_eq!(
                async_decode(&blob, compression, Limits::default())
                    .await
                    .unwrap(),
                data
            );
            // Async-encoded decodes with the sync decoder, and sync-encoded with async.
            assert_eq!(decode(&blob, compression).unwrap(), data);
            let sync_blob = encode(&data, compression, 2);
            assert_eq!(
                async_decode(&sync_blob, compression, Limits::default())
                    .await
                    .unwrap(),
                data
            );
            let empty = async_encode(b"", compression).await;
            assert_eq!(
                async_decode(&empty, compression, Limits::default())
                    .await
                    .unwrap(),
                b""
            );
        }
    }

    #[tokio::test]
    async fn async_multi_member_and_frames() {
        let a = text_like(100_000, 32);
        let b = noise(20_000, 33);
        let gzip = [encode(&a, Compression::Gzip, 0), flate2_gzip(&b, 1)].concat();
        assert_eq!(
            async_decode(&gzip, Compression::Gzip, Limits::default())
                .await
                .unwrap(),
            [a.clone(), b.clone()].concat()
        );
        let zstd = [
            skippable(0, b"x"),
            encode(&a, Compression::Zstd, 0),
            skippable(9, b"between"),
            encode(&b, Compression::Zstd, 0),
        ]
        .concat();
        assert_eq!(
            async_decode(&zstd, Compression::Zstd, Limits::default())
                .await
                .unwrap(),
            [a, b].concat()
        );
    }

    #[tokio::test]
    async fn async_hostile_inputs() {
        let limits = Limits::default();
        // Mismatch and truncated magic.
        let gzip = encode(b"data", Compression::Gzip, 0);
        assert!(matches!(
            async_decode(&gzip, Compression::None, limits).await,
            Err(Error::CompressionMismatch {
                declared: "uncompressed",
                detected: "gzip"
            })
        ));
        assert!(matches!(
            async_decode(b"tar", Compression::Zstd, limits).await,
            Err(Error::CompressionMismatch { .. })
        ));
        assert_corrupt(async_decode(b"", Compression::Gzip, limits).await, "gzip");
        assert!(matches!(
            AsyncDecoder::for_media_type(
                &b""[..],
                "application/vnd.oci.image.layer.v1.tar+xz",
                limits
            ),
            Err(Error::UnsupportedMediaType { .. })
        ));
        // Bomb.
        let zeros = vec![0u8; 8 << 20];
        for compression in [Compression::Gzip, Compression::Zstd, Compression::None] {
            let blob = encode(&zeros, compression, 0);
            let capped = Limits::default().with_max_decompressed_bytes(100_000);
            let mut decoder = AsyncDecoder::new(&blob[..], compression, capped);
            let mut out = Vec::new();
            let err = error_from_io(decoder.read_to_end(&mut out).await.unwrap_err());
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
            assert_eq!(out.len(), 100_000);
            assert!(decoder.read(&mut [0u8; 8]).await.is_err());
            let exact = Limits::default().with_max_decompressed_bytes(zeros.len() as u64);
            assert_eq!(
                async_decode(&blob, compression, exact).await.unwrap().len(),
                zeros.len()
            );
        }
        // Truncated, bad CRC, bad ISIZE.
        let good = encode(&text_like(50_000, 34), Compression::Gzip, 0);
        assert_corrupt(
            async_decode(&good[..good.len() - 8], Compression::Gzip, limits).await,
            "gzip",
        );
        for at in [good.len() - 6, good.len() - 2] {
            let mut bad = good.clone();
            bad[at] ^= 1;
            assert_corrupt(async_decode(&bad, Compression::Gzip, limits).await, "gzip");
        }
        let zstd = encode(&text_like(50_000, 35), Compression::Zstd, 0);
        assert_corrupt(
            async_decode(&zstd[..zstd.len() - 3], Compression::Zstd, limits).await,
            "zstd",
        );
        // Window log 31.
        match async_decode(&zstd_frame_with_window_log(31), Compression::Zstd, limits).await {
            Err(Error::LimitExceeded {
                limit: Limit::ZstdWindow,
                max,
            }) => assert_eq!(max, 1 << 27),
            other => panic!("{other:?}"),
        }
    }
}

/// Every seed of the `decompress` fuzz target passes the oracle, and fails (or not) the
/// way its name says under a 1 MiB cap.
#[cfg(feature = "__fuzz")]
#[test]
fn fuzz_seeds_pass_the_oracle_and_fail_as_named() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/decompress");
    let limits = Limits::default().with_max_decompressed_bytes(1 << 20);
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        let bytes = std::fs::read(&path).unwrap();
        ocikit_codec::fuzz::decompress(&bytes);
        seen += 1;
        let compression = match name.split('_').next() {
            Some("gzip") => Compression::Gzip,
            Some("zstd") => Compression::Zstd,
            _ => Compression::None,
        };
        let result = decode_with(&bytes, compression, limits);
        let bad = ["truncated", "bad_", "garbage", "_then_"];
        if name.contains("window") || name.contains("2gib") {
            assert!(
                matches!(
                    result,
                    Err(Error::LimitExceeded {
                        limit: Limit::ZstdWindow,
                        ..
                    })
                ),
                "{name}: {result:?}"
            );
        } else if name.contains("bomb") {
            assert!(
                matches!(
                    result,
                    Err(Error::LimitExceeded {
                        limit: Limit::DecompressedBytes,
                        ..
                    })
                ),
                "{name}: {result:?}"
            );
        } else if bad.iter().any(|b| name.contains(b)) {
            assert!(
                matches!(result, Err(Error::Corrupt { .. })),
                "{name}: {result:?}"
            );
        } else {
            assert!(result.is_ok(), "{name}: {result:?}");
        }
    }
    assert!(seen >= 20, "only {seen} seeds in {}", dir.display());
}
