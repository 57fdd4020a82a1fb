//! Hashing and verifying adapters over `std::io` readers and writers.

use std::io::{self, Read, Write};

use crate::{Algorithm, Digest, Error, Hasher, Result};

/// A writer that hashes every byte it passes on to the inner writer ("tee while writing").
///
/// Only the bytes the inner writer accepted are hashed, so the digest always describes what
/// was actually written.
#[derive(Debug)]
pub struct DigestWriter<W> {
    inner: W,
    hasher: Hasher,
    written: u64,
}

impl<W: Write> DigestWriter<W> {
    /// Wraps `inner`, hashing with `algorithm`.
    pub fn new(inner: W, algorithm: &Algorithm) -> Result<Self> {
        Ok(DigestWriter {
            inner,
            hasher: Hasher::new(algorithm)?,
            written: 0,
        })
    }

    /// Wraps `inner`, hashing with SHA-256.
    pub fn sha256(inner: W) -> Self {
        DigestWriter {
            inner,
            hasher: Hasher::sha256(),
            written: 0,
        }
    }

    /// Bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.written
    }

    /// The digest of the bytes written so far.
    pub fn digest(&self) -> Digest {
        self.hasher.current()
    }

    /// The inner writer.
    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    /// The inner writer, mutably. Bytes written through it directly are not hashed.
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// Returns the inner writer, the digest and the number of bytes written.
    pub fn finish(self) -> (W, Digest, u64) {
        (self.inner, self.hasher.finish(), self.written)
    }
}

impl<W: Write> Write for DigestWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that hashes every byte read through it.
#[derive(Debug)]
pub struct DigestReader<R> {
    inner: R,
    hasher: Hasher,
    read: u64,
}

impl<R: Read> DigestReader<R> {
    /// Wraps `inner`, hashing with `algorithm`.
    pub fn new(inner: R, algorithm: &Algorithm) -> Result<Self> {
        Ok(DigestReader {
            inner,
            hasher: Hasher::new(algorithm)?,
            read: 0,
        })
    }

    /// Wraps `inner`, hashing with SHA-256.
    pub fn sha256(inner: R) -> Self {
        DigestReader {
            inner,
            hasher: Hasher::sha256(),
            read: 0,
        }
    }

    /// Bytes read so far.
    pub fn bytes_read(&self) -> u64 {
        self.read
    }

    /// The digest of the bytes read so far.
    pub fn digest(&self) -> Digest {
        self.hasher.current()
    }

    /// The inner reader.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// Returns the inner reader, the digest and the number of bytes read.
    pub fn finish(self) -> (R, Digest, u64) {
        (self.inner, self.hasher.finish(), self.read)
    }
}

impl<R: Read> Read for DigestReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

/// The state machine shared by the sync and async verifying readers.
#[derive(Debug)]
pub(crate) struct Verifier {
    hasher: Hasher,
    expected: Digest,
    size: u64,
    seen: u64,
    state: State,
}

#[derive(Debug)]
enum State {
    Reading,
    Verified,
    Failed(Failure),
}

#[derive(Debug, Clone)]
enum Failure {
    Size { actual: u64 },
    Digest { actual: Digest },
}

/// What the verifying reader should do next.
pub(crate) enum Step {
    /// Read at most this many bytes into the caller's buffer.
    Read(usize),
    /// All declared bytes were read: probe the inner reader for one extra byte.
    Probe,
    /// Verification finished; report EOF.
    Eof,
}

impl Verifier {
    pub(crate) fn new(expected: Digest, size: u64) -> Result<Verifier> {
        Ok(Verifier {
            hasher: Hasher::new(expected.algorithm())?,
            expected,
            size,
            seen: 0,
            state: State::Reading,
        })
    }

    pub(crate) fn step(&self, buf_len: usize) -> io::Result<Step> {
        match &self.state {
            State::Verified => Ok(Step::Eof),
            State::Failed(failure) => Err(self.error(failure).into()),
            State::Reading => {
                let remaining = self.size - self.seen;
                if remaining == 0 {
                    Ok(Step::Probe)
                } else {
                    Ok(Step::Read(
                        usize::try_from(remaining).map_or(buf_len, |r| r.min(buf_len)),
                    ))
                }
            }
        }
    }

    /// Records bytes the caller read in a `Step::Read`. An empty slice means the inner
    /// reader hit EOF early.
    pub(crate) fn consumed(&mut self, bytes: &[u8]) -> io::Result<()> {
        if bytes.is_empty() {
            return self.fail(Failure::Size { actual: self.seen });
        }
        self.hasher.update(bytes);
        self.seen += bytes.len() as u64;
        Ok(())
    }

    /// Records the outcome of a `Step::Probe`: `extra` is whether the inner reader yielded
    /// another byte. Returns `Ok(())` when the content verified.
    pub(crate) fn probed(&mut self, extra: bool) -> io::Result<()> {
        if extra {
            return self.fail(Failure::Size {
                actual: self.size.saturating_add(1),
            });
        }
        let actual = self.hasher.current();
        if actual == self.expected {
            self.state = State::Verified;
            Ok(())
        } else {
            self.fail(Failure::Digest { actual })
        }
    }

    pub(crate) fn is_verified(&self) -> bool {
        matches!(self.state, State::Verified)
    }

    pub(crate) fn bytes_read(&self) -> u64 {
        self.seen
    }

    fn fail(&mut self, failure: Failure) -> io::Result<()> {
        let err = self.error(&failure);
        self.state = State::Failed(failure);
        Err(err.into())
    }

    fn error(&self, failure: &Failure) -> Error {
        match failure {
            Failure::Size { actual } => Error::SizeMismatch {
                expected: self.size,
                actual: *actual,
            },
            Failure::Digest { actual } => Error::DigestMismatch {
                expected: self.expected.clone(),
                actual: actual.clone(),
            },
        }
    }
}

/// A reader that yields content only up to its declared size and verifies it at the end.
///
/// - It never returns more than `size` bytes: if the inner reader has more, the read that
///   would go past the end fails with [`Error::SizeMismatch`].
/// - If the inner reader ends early, the read fails with [`Error::SizeMismatch`].
/// - When exactly `size` bytes were read, the final read returns `Ok(0)` only if they hash
///   to the expected digest, and fails with [`Error::DigestMismatch`] otherwise.
///
/// Errors are [`io::ErrorKind::InvalidData`] with the [`Error`] as their source. Once
/// failed, every later read fails again. A caller must read to EOF (`Ok(0)`) before
/// trusting what it has read.
///
/// Construction fails with [`Error::UnsupportedAlgorithm`] for digests ocikit cannot
/// compute, so unverifiable content can never pass through as verified.
#[derive(Debug)]
pub struct VerifyingReader<R> {
    inner: R,
    verifier: Verifier,
}

impl<R: Read> VerifyingReader<R> {
    /// Wraps `inner`, which must yield exactly `size` bytes hashing to `expected`.
    pub fn new(inner: R, expected: Digest, size: u64) -> Result<Self> {
        Ok(VerifyingReader {
            inner,
            verifier: Verifier::new(expected, size)?,
        })
    }

    /// Whether the content has been read to the end and verified.
    pub fn is_verified(&self) -> bool {
        self.verifier.is_verified()
    }

    /// Bytes yielded so far.
    pub fn bytes_read(&self) -> u64 {
        self.verifier.bytes_read()
    }

    /// Returns the inner reader.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            match self.verifier.step(buf.len())? {
                Step::Eof => return Ok(0),
                Step::Read(limit) => {
                    let n = self.inner.read(&mut buf[..limit])?;
                    self.verifier.consumed(&buf[..n])?;
                    return Ok(n);
                }
                Step::Probe => {
                    let mut probe = [0u8; 1];
                    let extra = loop {
                        match self.inner.read(&mut probe) {
                            Ok(n) => break n > 0,
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            Err(e) => return Err(e),
                        }
                    };
                    self.verifier.probed(extra)?;
                }
            }
        }
    }
}

/// Reads all of `reader`, requiring exactly `size` bytes that hash to `expected`, and
/// returns them. Never buffers more than `size` bytes (plus one probe byte).
pub fn read_verified<R: Read>(
    reader: R,
    expected: &Digest,
    size: u64,
) -> Result<Vec<u8>, io::Error> {
    let mut out = Vec::with_capacity(usize::try_from(size.min(1 << 20)).unwrap_or(0));
    VerifyingReader::new(reader, expected.clone(), size)?.read_to_end(&mut out)?;
    Ok(out)
}
