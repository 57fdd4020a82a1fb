//! Hashers, digesting readers and writers, and the verifying readers (sync and async).

use std::io::{self, Read, Write};

use ocikit_digest::{
    Algorithm, Digest, DigestReader, DigestWriter, Error, Hasher, VerifyingReader, read_verified,
};
use proptest::prelude::*;

/// A reader that hands out at most `step` bytes per call, to exercise partial reads.
struct Trickle<'a> {
    data: &'a [u8],
    step: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.data.len().min(self.step).min(buf.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// A writer that accepts at most `step` bytes per call.
struct Stingy {
    out: Vec<u8>,
    step: usize,
}

impl Write for Stingy {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(self.step);
        self.out.extend_from_slice(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn ocikit_error(err: &io::Error) -> &Error {
    err.get_ref()
        .and_then(|e| e.downcast_ref::<Error>())
        .expect("an ocikit error inside")
}

#[test]
fn streaming_equals_one_shot_across_chunk_boundaries() {
    let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 + i / 13) as u8).collect();
    for alg in [Algorithm::Sha256, Algorithm::Sha512] {
        let whole = Digest::compute(&alg, &data).unwrap();
        for chunk in [1, 63, 64, 65, 127, 128, 129, 4096] {
            let mut h = Hasher::new(&alg).unwrap();
            for c in data.chunks(chunk) {
                h.update(c);
            }
            assert_eq!(h.current(), whole);
            assert_eq!(h.finish(), whole);
        }
    }
}

#[test]
fn unsupported_algorithms_have_no_hasher() {
    for alg in [Algorithm::Blake3, "md5".parse().unwrap()] {
        assert!(matches!(
            Hasher::new(&alg),
            Err(Error::UnsupportedAlgorithm { .. })
        ));
    }
}

#[test]
fn digest_writer_hashes_only_what_was_accepted() {
    let data = b"the quick brown fox jumps over the lazy dog".repeat(100);
    let mut w = DigestWriter::sha256(Stingy {
        out: Vec::new(),
        step: 7,
    });
    w.write_all(&data).unwrap();
    let (inner, digest, n) = w.finish();
    assert_eq!(inner.out, data);
    assert_eq!(n, data.len() as u64);
    assert_eq!(digest, Digest::sha256(&data));

    let mut w = DigestWriter::new(Vec::new(), &Algorithm::Sha512).unwrap();
    w.write_all(b"abc").unwrap();
    assert_eq!(w.digest(), Digest::sha512(b"abc"));
}

#[test]
fn digest_reader_hashes_what_was_read() {
    let data = vec![42u8; 100_000];
    let mut r = DigestReader::sha256(Trickle {
        data: &data,
        step: 999,
    });
    let mut out = Vec::new();
    r.read_to_end(&mut out).unwrap();
    assert_eq!(out, data);
    assert_eq!(r.bytes_read(), 100_000);
    assert_eq!(r.digest(), Digest::sha256(&data));
}

#[test]
fn verifying_reader_accepts_exact_content() {
    let data = b"hello world";
    let d = Digest::sha256(data);
    for step in [1, 3, 11, 100] {
        let mut r = VerifyingReader::new(Trickle { data, step }, d.clone(), 11).unwrap();
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out, data);
        assert!(r.is_verified());
        // Reads after verification keep returning EOF.
        assert_eq!(r.read(&mut [0u8; 4]).unwrap(), 0);
    }
    assert_eq!(read_verified(&data[..], &d, 11).unwrap(), data);
}

#[test]
fn verifying_reader_accepts_empty_content() {
    let d = Digest::sha256(b"");
    let mut out = Vec::new();
    VerifyingReader::new(&b""[..], d, 0)
        .unwrap()
        .read_to_end(&mut out)
        .unwrap();
    assert!(out.is_empty());
}

// SPEC C-D10: never yield more than the declared size.
#[test]
fn verifying_reader_never_yields_more_than_declared() {
    let data = b"0123456789X";
    let d = Digest::sha256(&data[..10]);
    let mut r = VerifyingReader::new(&data[..], d, 10).unwrap();
    let mut buf = [0u8; 64];
    let n = r.read(&mut buf).unwrap();
    assert_eq!(n, 10);
    let err = r.read(&mut buf).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    assert!(matches!(
        ocikit_error(&err),
        Error::SizeMismatch {
            expected: 10,
            actual: 11
        }
    ));
    // The failure is sticky.
    let err = r.read(&mut buf).unwrap_err();
    assert!(matches!(
        ocikit_error(&err),
        Error::SizeMismatch {
            expected: 10,
            actual: 11
        }
    ));
    assert!(!r.is_verified());
}

#[test]
fn verifying_reader_rejects_short_content() {
    let data = b"0123456789";
    let d = Digest::sha256(data);
    let mut out = Vec::new();
    let err = VerifyingReader::new(&data[..9], d, 10)
        .unwrap()
        .read_to_end(&mut out)
        .unwrap_err();
    assert!(matches!(
        ocikit_error(&err),
        Error::SizeMismatch {
            expected: 10,
            actual: 9
        }
    ));
}

#[test]
fn verifying_reader_rejects_tampered_content() {
    let d = Digest::sha256(b"0123456789");
    let err = read_verified(&b"0123456788"[..], &d, 10).unwrap_err();
    match ocikit_error(&err) {
        Error::DigestMismatch { expected, actual } => {
            assert_eq!(expected, &d);
            assert_eq!(actual, &Digest::sha256(b"0123456788"));
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn verifying_reader_refuses_unverifiable_digests() {
    let d: Digest = "md5:d41d8cd98f00b204e9800998ecf8427e".parse().unwrap();
    assert!(matches!(
        VerifyingReader::new(&b""[..], d, 0),
        Err(Error::UnsupportedAlgorithm { .. })
    ));
}

#[test]
fn verifying_reader_does_not_preallocate_from_the_declared_size() {
    // SPEC C-D11: a huge declared size with a short body fails at EOF without allocating.
    let d = Digest::sha256(b"abc");
    let err = read_verified(&b"abc"[..], &d, i64::MAX as u64).unwrap_err();
    assert!(matches!(
        ocikit_error(&err),
        Error::SizeMismatch { actual: 3, .. }
    ));
}

proptest! {
    #[test]
    fn verifying_reader_accepts_exactly_the_right_bytes(
        data in proptest::collection::vec(any::<u8>(), 0..2048),
        other in proptest::collection::vec(any::<u8>(), 0..2048),
        step in 1usize..300,
    ) {
        let d = Digest::sha256(&data);
        let size = data.len() as u64;
        let mut out = Vec::new();
        let ok = VerifyingReader::new(Trickle { data: &data, step }, d.clone(), size).unwrap().read_to_end(&mut out);
        prop_assert!(ok.is_ok());
        prop_assert_eq!(&out, &data);

        let mut out = Vec::new();
        let result = VerifyingReader::new(Trickle { data: &other, step }, d, size).unwrap().read_to_end(&mut out);
        prop_assert_eq!(result.is_ok(), other == data);
        prop_assert!(out.len() as u64 <= size, "yielded {} of {}", out.len(), size);
    }
}

// The async twins exist only with the `tokio` feature (`cargo test -p ocikit-digest --features tokio`,
// or `--all-features` as CI runs).
#[cfg(feature = "tokio")]
#[tokio::test]
async fn async_adapters_agree_with_sync_ones() {
    use ocikit_digest::{AsyncDigestReader, AsyncDigestWriter, AsyncVerifyingReader};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let data: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
    let d = Digest::sha256(&data);

    let mut w = AsyncDigestWriter::sha256(Vec::new());
    w.write_all(&data).await.unwrap();
    let (inner, digest, n) = w.finish();
    assert_eq!(
        (inner, digest.clone(), n),
        (data.clone(), d.clone(), 50_000)
    );

    let mut r = AsyncDigestReader::new(&data[..], &Algorithm::Sha512).unwrap();
    let mut out = Vec::new();
    r.read_to_end(&mut out).await.unwrap();
    assert_eq!(r.digest(), Digest::sha512(&data));

    let mut r = AsyncVerifyingReader::new(&data[..], d.clone(), 50_000).unwrap();
    let mut out = Vec::new();
    r.read_to_end(&mut out).await.unwrap();
    assert!(r.is_verified());
    assert_eq!(out, data);

    // Longer than declared: exactly the declared bytes come out, then an error.
    let mut r = AsyncVerifyingReader::new(&data[..], Digest::sha256(&data[..100]), 100).unwrap();
    let mut buf = vec![0u8; 1000];
    assert_eq!(r.read(&mut buf).await.unwrap(), 100);
    let err = r.read(&mut buf).await.unwrap_err();
    assert!(matches!(
        ocikit_error(&err),
        Error::SizeMismatch {
            expected: 100,
            actual: 101
        }
    ));

    // Tampered and short.
    let mut tampered = data.clone();
    tampered[49_999] ^= 1;
    let err = AsyncVerifyingReader::new(&tampered[..], d.clone(), 50_000)
        .unwrap()
        .read_to_end(&mut Vec::new())
        .await
        .unwrap_err();
    assert!(matches!(ocikit_error(&err), Error::DigestMismatch { .. }));
    let err = AsyncVerifyingReader::new(&data[..49_999], d, 50_000)
        .unwrap()
        .read_to_end(&mut Vec::new())
        .await
        .unwrap_err();
    assert!(matches!(
        ocikit_error(&err),
        Error::SizeMismatch {
            expected: 50_000,
            actual: 49_999
        }
    ));
}
