//! `decompress`: decoding arbitrary bytes as gzip, zstd and plain never panics and never
//! yields more than the output cap; bytes compressed here (gzip, parallel gzip in small
//! blocks, multi-member gzip, zstd with several frames and skippable frames) decode back to
//! exactly what went in.

use std::io::{Read, Write};

use crate::compression::{Compression, Decoder, Encoder, error_from_io};
use crate::writer::{LayerOptions, LayerWriter};
use crate::{Error, Limit, Limits};

/// The output cap the oracle decodes under.
const CAP: u64 = 1 << 20;
/// The zstd window cap the oracle decodes under (1 MiB).
const WINDOW_LOG: u32 = 20;

fn limits() -> Limits {
    Limits::default()
        .with_max_decompressed_bytes(CAP)
        .with_max_zstd_window_log(WINDOW_LOG)
}

/// Decodes `blob` to the end (or the first error), checking the cap. Returns the output,
/// or the error.
fn decode(blob: &[u8], compression: Compression) -> Result<Vec<u8>, Error> {
    let mut decoder = Decoder::new(blob, compression, limits());
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match decoder.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                assert!(out.len() as u64 <= CAP, "decoded past the output cap");
                assert_eq!(decoder.bytes_out(), out.len() as u64);
            }
            Err(err) => {
                // Poisoned: the next read fails too, never a clean end.
                assert!(
                    decoder.read(&mut buf).is_err(),
                    "read after an error succeeded"
                );
                let err = error_from_io(err);
                match &err {
                    Error::Corrupt { .. }
                    | Error::CompressionMismatch { .. }
                    | Error::LimitExceeded {
                        limit: Limit::DecompressedBytes | Limit::ZstdWindow,
                        ..
                    } => {}
                    other => panic!("unexpected error kind: {other:?}"),
                }
                return Err(err);
            }
        }
    }
    Ok(out)
}

fn compress(data: &[u8], compression: Compression, threads: usize, block: usize) -> Vec<u8> {
    let mut encoder = Encoder::new(Vec::new(), compression, Some(1)).unwrap();
    encoder.multithread(threads).unwrap();
    encoder.set_gzip_block_size(block);
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn skippable(payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![0x5a, 0x2a, 0x4d, 0x18];
    frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// The fuzz entry point.
pub fn decompress(data: &[u8]) {
    // 1. Arbitrary bytes under each declared compression: no panic, the cap holds, and a
    //    plain "decode" is the identity (within the cap).
    for compression in [Compression::Gzip, Compression::Zstd] {
        let _ = decode(data, compression);
    }
    match decode(data, Compression::None) {
        Ok(out) => assert_eq!(out, data),
        Err(Error::LimitExceeded { .. }) => assert!(data.len() as u64 > CAP),
        Err(Error::CompressionMismatch { .. }) => {}
        Err(other) => panic!("plain decode failed: {other:?}"),
    }

    // 2. Valid streams built from the input decode back to it.
    let input = &data[..data.len().min(CAP as usize)];
    let split = data
        .first()
        .map_or(0, |&b| usize::from(b) * input.len() / 256);
    let (head, tail) = input.split_at(split);

    // gzip: one stream, small parallel blocks (byte-identical to the inline encoder), and
    // two members concatenated.
    let single = compress(input, Compression::Gzip, 0, 1 << 10);
    assert_eq!(decode(&single, Compression::Gzip).unwrap(), input);
    let threaded = compress(input, Compression::Gzip, 2, 1 << 10);
    assert_eq!(
        threaded, single,
        "parallel gzip depends on the thread count"
    );
    let mut members = compress(head, Compression::Gzip, 0, 64 << 10);
    members.extend(compress(tail, Compression::Gzip, 0, 64 << 10));
    assert_eq!(decode(&members, Compression::Gzip).unwrap(), input);

    // zstd: two frames with skippable frames around and between them.
    let mut frames = skippable(head);
    frames.extend(compress(head, Compression::Zstd, 0, 0));
    frames.extend(skippable(b""));
    frames.extend(compress(tail, Compression::Zstd, 0, 0));
    frames.extend(skippable(tail.get(..16).unwrap_or(tail)));
    assert_eq!(decode(&frames, Compression::Zstd).unwrap(), input);

    // Truncating a valid gzip stream is always an error, never a short success.
    if single.len() > 1 {
        let cut = split % single.len();
        assert!(decode(&single[..cut], Compression::Gzip).is_err());
    }

    // The layer writer's figures match the bytes.
    let options = LayerOptions::new(Compression::Gzip)
        .with_threads(1)
        .with_gzip_block_size(1 << 10)
        .with_level(1);
    let mut layer = LayerWriter::new(Vec::new(), options).unwrap();
    layer.write_all(input).unwrap();
    let (blob, info) = layer.finish().unwrap();
    assert_eq!(blob, compress(input, Compression::Gzip, 0, 1 << 10));
    assert_eq!(info.digest, ocikit_digest::Digest::sha256(&blob));
    assert_eq!(info.diff_id, ocikit_digest::Digest::sha256(input));
    assert_eq!(info.size, blob.len() as u64);
    assert_eq!(info.uncompressed_size, input.len() as u64);
}
