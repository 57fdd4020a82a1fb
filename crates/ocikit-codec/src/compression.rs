//! Layer compression: none, gzip and zstd, chosen from the media type and checked against
//! the content's magic bytes.
//!
//! - [`Decoder`] is a [`Read`] adapter that decodes a layer blob to its tar stream, under
//!   [`Limits`]: multi-member gzip streams decode fully (as Go and containerd do), zstd
//!   streams decode every frame and skip skippable frames, a zstd frame asking for a window
//!   over [`Limits::max_zstd_window_log`] fails with [`Limit::ZstdWindow`], and more output
//!   than [`Limits::max_decompressed_bytes`] fails with [`Limit::DecompressedBytes`].
//! - [`Encoder`] is a [`Write`] adapter that compresses, with [`Encoder::finish`]. Its gzip
//!   compresses blocks in parallel (pigz-style) into one ordinary gzip member whose bytes do
//!   not depend on the number of threads; its zstd uses zstd's own worker threads.
//! - [`compression_of`], [`sniff`] and [`check_magic`]: the media type and magic-byte rules.
//!
//! Media types this crate cannot decode (`+bzip2`, `+xz`, vendor types) fail with
//! [`Error::UnsupportedMediaType`]; no external decompressor is ever run.
//!
//! Because [`Decoder`] is a [`Read`], its errors are [`io::Error`]s that carry this crate's
//! [`Error`] inside; [`error_from_io`] takes it back out.
//!
//! ```
//! # #[cfg(feature = "gzip")] {
//! use std::io::{Read, Write};
//! use ocikit_codec::compression::{Compression, Decoder, Encoder};
//! use ocikit_codec::Limits;
//!
//! let mut encoder = Encoder::new(Vec::new(), Compression::Gzip, None)?;
//! encoder.write_all(b"a tar stream, in real life")?;
//! let blob = encoder.finish()?;
//!
//! let mut decoder = Decoder::for_media_type(
//!     &blob[..],
//!     "application/vnd.oci.image.layer.v1.tar+gzip",
//!     Limits::default(),
//! )?;
//! let mut tar = Vec::new();
//! decoder.read_to_end(&mut tar)?;
//! assert_eq!(tar, b"a tar stream, in real life");
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#[cfg(feature = "gzip")]
pub(crate) mod parallel_gzip;

use std::fmt;
use std::io::{self, Read, Write};

pub use ocikit_digest::media_type::Compression;
use ocikit_digest::media_type::layer_compression;

use crate::{Error, Limit, Limits, Result};

/// The gzip magic bytes (RFC 1952 `ID1 ID2`).
pub const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// The zstd frame magic number (`0xFD2FB528`, little-endian).
pub const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// How many leading bytes [`sniff`] and [`check_magic`] look at.
pub const MAGIC_LEN: usize = 4;

/// Default gzip level for layers (as `gzip`, Go and containerd).
pub const DEFAULT_GZIP_LEVEL: i32 = 6;
/// Default zstd level for layers (as `zstd` and containerd).
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;

/// The input block size of the parallel gzip encoder (1 MiB): each block is compressed on
/// its own with the previous 32 KiB as dictionary.
pub const DEFAULT_GZIP_BLOCK_SIZE: usize = 1 << 20;

/// The job size of the multithreaded zstd encoder (2 MiB): the input is cut into jobs of
/// this size, each compressed by a worker with the overlap zstd's level gives (at level 3
/// the last 256 KiB of the previous job) as history. It is fixed rather than left to zstd
/// (which derives 8 MiB from level 3's window) because it bounds the encoder's memory: the
/// input ring holds about (workers + 3) jobs and every job in flight an output buffer of a
/// job's size, about 70-90 MiB for two workers at 8 MiB and 21 MiB at 2 MiB. It changes the
/// output bytes (about 0.7% larger than with 8 MiB jobs at level 3), never with the number of
/// workers, so it must stay the same for reproducible layers. zstd raises it to the overlap
/// where that is larger (levels whose overlap is a whole 8 MiB window).
pub const ZSTD_JOB_SIZE: u32 = 2 << 20;

/// Size of the read buffer between the source and a decompressor.
#[cfg(any(feature = "gzip", feature = "zstd"))]
const INPUT_BUFFER: usize = 128 << 10;

/// The compression a layer media type declares.
///
/// Fails with [`Error::UnsupportedMediaType`] for anything that is not one of the OCI or
/// Docker layer types (uncompressed, `+gzip`, `+zstd`, and their non-distributable and
/// foreign variants): `+bzip2`, `+xz`, vendor types and non-layer types alike.
pub fn compression_of(media_type: &str) -> Result<Compression> {
    layer_compression(media_type).ok_or_else(|| Error::UnsupportedMediaType {
        media_type: media_type.to_owned(),
    })
}

/// What the leading bytes of a blob look like: [`Compression::Gzip`] for `1f 8b`,
/// [`Compression::Zstd`] for a zstd frame or a skippable frame (`0x184D2A5?`), and
/// [`Compression::None`] for anything else (including fewer bytes than a magic).
pub fn sniff(prefix: &[u8]) -> Compression {
    if prefix.starts_with(&GZIP_MAGIC) {
        Compression::Gzip
    } else if prefix.starts_with(&ZSTD_MAGIC) || is_skippable(prefix) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

fn is_skippable(prefix: &[u8]) -> bool {
    matches!(prefix, [first, 0x2a, 0x4d, 0x18, ..] if first & 0xf0 == 0x50)
}

/// A short name for a compression, as used in errors: `"uncompressed"`, `"gzip"`, `"zstd"`.
pub fn name(compression: Compression) -> &'static str {
    match compression {
        Compression::Gzip => "gzip",
        Compression::Zstd => "zstd",
        _ => "uncompressed",
    }
}

/// Checks a blob's first bytes against the compression its media type declares.
///
/// `prefix` is the first [`MAGIC_LEN`] bytes of the blob, or the whole blob when it is
/// shorter. A plain tar that starts with a gzip or zstd magic, and a gzip or zstd blob
/// without its magic, fail with [`Error::CompressionMismatch`]; a gzip or zstd blob that
/// ends inside its magic (or is empty) fails with [`Error::Corrupt`].
pub fn check_magic(declared: Compression, prefix: &[u8]) -> Result<()> {
    let detected = sniff(prefix);
    if detected == declared {
        return Ok(());
    }
    let truncated = prefix.len() < MAGIC_LEN
        && match declared {
            Compression::Gzip => GZIP_MAGIC.starts_with(prefix),
            Compression::Zstd => {
                ZSTD_MAGIC.starts_with(prefix)
                    || prefix.first().is_none_or(|b| b & 0xf0 == 0x50)
                        && [0x2a, 0x4d, 0x18].starts_with(prefix.get(1..).unwrap_or_default())
            }
            _ => false,
        };
    if truncated {
        return Err(Error::Corrupt {
            format: name(declared),
            source: io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "stream ends before its magic bytes",
            ),
        });
    }
    Err(Error::CompressionMismatch {
        declared: name(declared),
        detected: name(detected),
    })
}

/// Takes this crate's [`Error`] back out of an [`io::Error`] returned by [`Decoder`],
/// [`Encoder`], [`crate::writer::LayerWriter`] or the async adapters. Any other I/O error
/// becomes [`Error::Io`] (operation `"read"`).
pub fn error_from_io(err: io::Error) -> Error {
    error_from_io_as(err, "read")
}

pub(crate) fn error_from_io_as(err: io::Error, operation: &'static str) -> Error {
    if err.get_ref().is_some_and(|inner| inner.is::<Error>()) {
        match err.into_inner().map(|inner| inner.downcast::<Error>()) {
            Some(Ok(inner)) => *inner,
            // Unreachable (checked above); keep the error whatever it is.
            Some(Err(other)) => Error::io(operation, None, io::Error::other(other)),
            None => Error::io(operation, None, io::Error::other("unknown error")),
        }
    } else {
        Error::io(operation, None, err)
    }
}

/// An I/O error of the source reader, marked so that it is not mistaken for corruption when
/// it comes back out of a decompressor.
#[derive(Debug)]
pub(crate) struct SourceError(pub(crate) io::Error);

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for SourceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// Marks an error of the source (`Interrupted` and `WouldBlock` pass through unmarked, so
/// that retry loops keep working).
pub(crate) fn mark_source(err: io::Error) -> io::Error {
    match err.kind() {
        io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock => err,
        kind => io::Error::new(kind, SourceError(err)),
    }
}

/// Why a decoder stopped for good; kept so that every later read fails the same way.
#[derive(Clone, Debug)]
pub(crate) enum Failure {
    Mismatch {
        declared: &'static str,
        detected: &'static str,
    },
    Corrupt {
        format: &'static str,
        kind: io::ErrorKind,
        message: String,
    },
    Limit {
        limit: Limit,
        max: u64,
    },
    Unsupported {
        media_type: String,
    },
    Setup {
        message: String,
    },
}

impl Failure {
    pub(crate) fn from_error(err: &Error) -> Failure {
        match err {
            Error::CompressionMismatch { declared, detected } => {
                Failure::Mismatch { declared, detected }
            }
            Error::Corrupt { format, source } => Failure::Corrupt {
                format,
                kind: source.kind(),
                message: source.to_string(),
            },
            Error::LimitExceeded { limit, max } => Failure::Limit {
                limit: *limit,
                max: *max,
            },
            Error::UnsupportedMediaType { media_type } => Failure::Unsupported {
                media_type: media_type.clone(),
            },
            other => Failure::Setup {
                message: other.to_string(),
            },
        }
    }

    pub(crate) fn to_error(&self) -> Error {
        match self {
            Failure::Mismatch { declared, detected } => {
                Error::CompressionMismatch { declared, detected }
            }
            Failure::Corrupt {
                format,
                kind,
                message,
            } => Error::Corrupt {
                format,
                source: io::Error::new(*kind, message.clone()),
            },
            Failure::Limit { limit, max } => Error::LimitExceeded {
                limit: *limit,
                max: *max,
            },
            Failure::Unsupported { media_type } => Error::UnsupportedMediaType {
                media_type: media_type.clone(),
            },
            Failure::Setup { message } => Error::io(
                "start decompressor",
                None,
                io::Error::other(message.clone()),
            ),
        }
    }
}

/// Classifies an error that came out of a gzip or zstd decompressor (or the source below
/// it): returns the error to report, with the failure to poison the decoder with, if any
/// (none for `Interrupted`, `WouldBlock` and errors of the source, which are reported as
/// [`Error::Io`]).
pub(crate) fn classify_error(
    format: &'static str,
    err: io::Error,
    window_log: u32,
) -> (Option<Failure>, io::Error) {
    if matches!(
        err.kind(),
        io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
    ) {
        return (None, err);
    }
    if err.get_ref().is_some_and(|e| e.is::<SourceError>()) {
        let source = match err.into_inner().map(|e| e.downcast::<SourceError>()) {
            Some(Ok(marked)) => marked.0,
            Some(Err(other)) => io::Error::other(other),
            None => io::Error::other("source error"),
        };
        return (None, Error::io("read", None, source).into());
    }
    #[cfg(feature = "zstd")]
    if err
        .get_ref()
        .and_then(|e| e.downcast_ref::<zstd::Error>())
        .is_some_and(|e| {
            e.is(
                zstd::zstd_safe::zstd_sys::ZSTD_ErrorCode::ZSTD_error_frameParameter_windowTooLarge,
            )
        })
    {
        let failure = Failure::Limit {
            limit: Limit::ZstdWindow,
            max: 1u64 << window_log,
        };
        let error = failure.to_error();
        return (Some(failure), error.into());
    }
    #[cfg(not(feature = "zstd"))]
    let _ = window_log;
    let failure = Failure::Corrupt {
        format,
        kind: err.kind(),
        message: err.to_string(),
    };
    (
        Some(failure),
        Error::Corrupt {
            format,
            source: err,
        }
        .into(),
    )
}

/// The zstd window cap actually applied: [`Limits::max_zstd_window_log`] within what zstd
/// accepts on this platform.
pub(crate) fn effective_window_log(limits: &Limits) -> u32 {
    let max = if cfg!(target_pointer_width = "32") {
        30
    } else {
        31
    };
    limits.max_zstd_window_log.clamp(10, max)
}

/// The source reader: the sniffed magic bytes first, then the rest of the inner reader,
/// whose errors are marked.
#[derive(Debug)]
pub(crate) struct Source<R> {
    prefix: [u8; MAGIC_LEN],
    start: usize,
    end: usize,
    inner: R,
}

impl<R> Source<R> {
    fn new(inner: R) -> Source<R> {
        Source {
            prefix: [0; MAGIC_LEN],
            start: 0,
            end: 0,
            inner,
        }
    }
}

impl<R: Read> Source<R> {
    /// Reads until [`MAGIC_LEN`] bytes are buffered or the inner reader ends.
    fn sniff(&mut self) -> io::Result<&[u8]> {
        while self.end < MAGIC_LEN {
            let n = self
                .inner
                .read(&mut self.prefix[self.end..])
                .map_err(mark_source)?;
            if n == 0 {
                break;
            }
            self.end += n;
        }
        Ok(&self.prefix[..self.end])
    }
}

impl<R: Read> Read for Source<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.start < self.end {
            let n = (self.end - self.start).min(buf.len());
            buf[..n].copy_from_slice(&self.prefix[self.start..self.start + n]);
            self.start += n;
            return Ok(n);
        }
        self.inner.read(buf).map_err(mark_source)
    }
}

enum State<R: Read> {
    Sniffing(Source<R>),
    Plain(Source<R>),
    #[cfg(feature = "gzip")]
    Gzip(Box<flate2::bufread::MultiGzDecoder<io::BufReader<Source<R>>>>),
    #[cfg(feature = "zstd")]
    Zstd(Box<zstd::stream::read::Decoder<'static, io::BufReader<Source<R>>>>),
    Failed(Failure),
}

/// A [`Read`] adapter that decodes a layer blob (none, gzip or zstd) to its uncompressed
/// tar stream, under [`Limits`].
///
/// The magic bytes are checked on the first read. Errors are [`io::Error`]s carrying this
/// crate's [`Error`] ([`error_from_io`] takes it out):
///
/// - [`Error::CompressionMismatch`] when the magic bytes do not match the declared
///   compression (a plain layer starting with a gzip or zstd magic included);
/// - [`Error::Corrupt`] for truncated or corrupt gzip or zstd data (bad header, CRC32,
///   ISIZE, zstd checksum, early end, trailing garbage);
/// - [`Error::LimitExceeded`] with [`Limit::DecompressedBytes`] when decoding would produce
///   more than [`Limits::max_decompressed_bytes`] (exactly that many is fine), and with
///   [`Limit::ZstdWindow`] when a zstd frame asks for a larger window than
///   [`Limits::max_zstd_window_log`] allows;
/// - [`Error::Io`] for errors of the source reader.
///
/// After any error but an I/O error of the source (and `Interrupted`/`WouldBlock`), the
/// decoder is poisoned: every later read fails again, never returning `Ok(0)` as if the
/// stream had ended. Read to `Ok(0)` before trusting the output: only then were the final
/// checksums verified.
pub struct Decoder<R: Read> {
    state: State<R>,
    compression: Compression,
    limits: Limits,
    produced: u64,
}

impl<R: Read> fmt::Debug for Decoder<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decoder")
            .field("compression", &self.compression)
            .field("limits", &self.limits)
            .field("produced", &self.produced)
            .finish_non_exhaustive()
    }
}

impl<R: Read> Decoder<R> {
    /// Decodes `reader`, which must be compressed as `compression` says, within `limits`.
    pub fn new(reader: R, compression: Compression, limits: Limits) -> Decoder<R> {
        Decoder {
            state: State::Sniffing(Source::new(reader)),
            compression,
            limits,
            produced: 0,
        }
    }

    /// Decodes `reader` with the compression its layer `media_type` declares; fails with
    /// [`Error::UnsupportedMediaType`] for types this crate cannot decode (see
    /// [`compression_of`]).
    pub fn for_media_type(reader: R, media_type: &str, limits: Limits) -> Result<Decoder<R>> {
        Ok(Decoder::new(reader, compression_of(media_type)?, limits))
    }

    /// The compression being decoded.
    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// Decompressed bytes returned so far.
    pub fn bytes_out(&self) -> u64 {
        self.produced
    }

    fn fail(&mut self, failure: Failure, error: Error) -> io::Error {
        self.state = State::Failed(failure);
        error.into()
    }

    fn classified(&mut self, (failure, err): (Option<Failure>, io::Error)) -> io::Error {
        if let Some(failure) = failure {
            self.state = State::Failed(failure);
        }
        err
    }

    /// Checks the magic and sets up the decompressor.
    fn start(&mut self) -> io::Result<()> {
        let State::Sniffing(source) = &mut self.state else {
            return Ok(());
        };
        let prefix = match source.sniff() {
            Ok(prefix) => prefix,
            Err(err) => return Err(self.classified(classify_error("source", err, 0))),
        };
        if let Err(error) = check_magic(self.compression, prefix) {
            return Err(self.fail(Failure::from_error(&error), error));
        }
        let State::Sniffing(source) = std::mem::replace(
            &mut self.state,
            State::Failed(Failure::Setup {
                message: "decoder setup interrupted".to_owned(),
            }),
        ) else {
            return Ok(());
        };
        match self.compression {
            #[cfg(feature = "gzip")]
            Compression::Gzip => {
                let buffered = io::BufReader::with_capacity(INPUT_BUFFER, source);
                self.state = State::Gzip(Box::new(flate2::bufread::MultiGzDecoder::new(buffered)));
            }
            #[cfg(feature = "zstd")]
            Compression::Zstd => {
                let buffered = io::BufReader::with_capacity(INPUT_BUFFER, source);
                let mut decoder = zstd::stream::read::Decoder::with_buffer(buffered)
                    .map_err(|e| Error::io("start zstd decoder", None, e))?;
                decoder
                    .window_log_max(effective_window_log(&self.limits))
                    .map_err(|e| Error::io("set zstd window limit", None, e))?;
                self.state = State::Zstd(Box::new(decoder));
            }
            Compression::None => self.state = State::Plain(source),
            other => {
                let error = Error::UnsupportedMediaType {
                    media_type: format!("{} (feature not enabled)", name(other)),
                };
                return Err(self.fail(Failure::from_error(&error), error));
            }
        }
        Ok(())
    }

    fn read_inner(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let window_log = effective_window_log(&self.limits);
        let (format, result) = match &mut self.state {
            State::Sniffing(_) => return Ok(0),
            State::Failed(failure) => return Err(failure.to_error().into()),
            State::Plain(source) => ("uncompressed", source.read(buf)),
            #[cfg(feature = "gzip")]
            State::Gzip(decoder) => ("gzip", decoder.read(buf)),
            #[cfg(feature = "zstd")]
            State::Zstd(decoder) => ("zstd", decoder.read(buf)),
        };
        match result {
            Ok(n) => Ok(n),
            Err(err) => Err(self.classified(classify_error(format, err, window_log))),
        }
    }
}

impl<R: Read> Read for Decoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let State::Failed(failure) = &self.state {
            return Err(failure.to_error().into());
        }
        if matches!(self.state, State::Sniffing(_)) {
            self.start()?;
        }
        if buf.is_empty() {
            return Ok(0);
        }
        let max = self.limits.max_decompressed_bytes;
        let allowed = max.saturating_sub(self.produced);
        if allowed == 0 {
            // Exactly the limit is fine; one byte more is not.
            let mut probe = [0u8; 1];
            return match self.read_inner(&mut probe)? {
                0 => Ok(0),
                _ => {
                    let failure = Failure::Limit {
                        limit: Limit::DecompressedBytes,
                        max,
                    };
                    let error = failure.to_error();
                    Err(self.fail(failure, error))
                }
            };
        }
        let len = usize::try_from(allowed).map_or(buf.len(), |a| a.min(buf.len()));
        let n = self.read_inner(&mut buf[..len])?;
        self.produced += n as u64;
        Ok(n)
    }
}

enum EncoderInner<W: Write> {
    None(W),
    #[cfg(feature = "gzip")]
    Gzip(Box<parallel_gzip::ParallelGzip<W>>),
    #[cfg(feature = "zstd")]
    Zstd(Box<zstd::stream::write::Encoder<'static, W>>),
}

/// A [`Write`] adapter that compresses into `W`; call [`Encoder::finish`] at the end.
///
/// - gzip (level 0-9, default 6) is compressed pigz-style: the input is cut into blocks
///   ([`DEFAULT_GZIP_BLOCK_SIZE`]), each compressed as raw deflate with the previous 32 KiB
///   as dictionary and ended byte-aligned, on [`Encoder::multithread`] worker threads, and
///   the results are concatenated in order into one gzip member (header with mtime 0 and OS
///   "unknown", then CRC32 and ISIZE). The output bytes depend only on the input, the level
///   and the block size, never on the number of threads; it is within a fraction of a
///   percent of the size of a single-stream `gzip -6`.
/// - zstd (default level 3; zstd's levels, negative ones included) writes frames with a
///   content checksum. With [`Encoder::multithread`] zstd compresses on its own worker
///   threads, in jobs of [`ZSTD_JOB_SIZE`]; zstd's output is the same for any number of
///   workers from 1 up, and differs (still valid) with none.
/// - none passes bytes through.
///
/// Errors of `W` are returned as they are. Once a write has failed, the encoder is
/// unusable: its output is incomplete.
pub struct Encoder<W: Write> {
    inner: EncoderInner<W>,
}

impl<W: Write> fmt::Debug for Encoder<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Encoder")
            .field("compression", &self.compression())
            .finish_non_exhaustive()
    }
}

impl<W: Write> Encoder<W> {
    /// Compresses into `writer` with `compression` at `level` (`None`: the default level;
    /// levels outside the codec's range are clamped to it). Compression happens on the
    /// calling thread until [`Encoder::multithread`] asks for worker threads.
    pub fn new(writer: W, compression: Compression, level: Option<i32>) -> Result<Encoder<W>> {
        #[cfg(not(any(feature = "gzip", feature = "zstd")))]
        let _ = level;
        let inner = match compression {
            Compression::None => EncoderInner::None(writer),
            #[cfg(feature = "gzip")]
            Compression::Gzip => {
                let level = level.unwrap_or(DEFAULT_GZIP_LEVEL).clamp(0, 9);
                EncoderInner::Gzip(Box::new(parallel_gzip::ParallelGzip::new(
                    writer,
                    level.unsigned_abs(),
                    DEFAULT_GZIP_BLOCK_SIZE,
                )))
            }
            #[cfg(feature = "zstd")]
            Compression::Zstd => {
                let range = zstd::compression_level_range();
                let level = level
                    .unwrap_or(DEFAULT_ZSTD_LEVEL)
                    .clamp(*range.start(), *range.end());
                let mut encoder = zstd::stream::write::Encoder::new(writer, level)
                    .map_err(|e| Error::io("start zstd encoder", None, e))?;
                encoder
                    .include_checksum(true)
                    .map_err(|e| Error::io("start zstd encoder", None, e))?;
                // Only used with workers; set here so that every multithreaded frame has it.
                encoder
                    .set_parameter(zstd::zstd_safe::CParameter::JobSize(ZSTD_JOB_SIZE))
                    .map_err(|e| Error::io("start zstd encoder", None, e))?;
                EncoderInner::Zstd(Box::new(encoder))
            }
            other => {
                return Err(Error::UnsupportedMediaType {
                    media_type: format!("{} (feature not enabled)", name(other)),
                });
            }
        };
        Ok(Encoder { inner })
    }

    /// Compresses on `threads` worker threads (0: on the calling thread). Call it before
    /// writing: for zstd it applies from the next frame.
    pub fn multithread(&mut self, threads: usize) -> Result<()> {
        #[cfg(not(any(feature = "gzip", feature = "zstd")))]
        let _ = threads;
        match &mut self.inner {
            EncoderInner::None(_) => Ok(()),
            #[cfg(feature = "gzip")]
            EncoderInner::Gzip(gzip) => {
                gzip.set_threads(threads);
                Ok(())
            }
            #[cfg(feature = "zstd")]
            EncoderInner::Zstd(zstd) => zstd
                .multithread(u32::try_from(threads).unwrap_or(u32::MAX))
                .map_err(|e| Error::io("set zstd workers", None, e)),
        }
    }

    /// Sets the input block size of the parallel gzip encoder (clamped to 1 KiB - 64 MiB;
    /// ignored by the other codecs). It changes the output bytes, so it must stay the same
    /// for reproducible layers. Call it before writing.
    pub fn set_gzip_block_size(&mut self, bytes: usize) {
        #[cfg(feature = "gzip")]
        if let EncoderInner::Gzip(gzip) = &mut self.inner {
            gzip.set_block_size(bytes);
        }
        #[cfg(not(feature = "gzip"))]
        let _ = bytes;
    }

    /// The compression being written.
    pub fn compression(&self) -> Compression {
        match &self.inner {
            EncoderInner::None(_) => Compression::None,
            #[cfg(feature = "gzip")]
            EncoderInner::Gzip(_) => Compression::Gzip,
            #[cfg(feature = "zstd")]
            EncoderInner::Zstd(_) => Compression::Zstd,
        }
    }

    /// The inner writer. Compressed bytes may still be buffered in the encoder.
    pub fn get_ref(&self) -> &W {
        match &self.inner {
            EncoderInner::None(w) => w,
            #[cfg(feature = "gzip")]
            EncoderInner::Gzip(gzip) => gzip.get_ref(),
            #[cfg(feature = "zstd")]
            EncoderInner::Zstd(zstd) => zstd.get_ref(),
        }
    }

    /// The inner writer, mutably. Bytes written through it directly end up in the middle
    /// of the compressed stream.
    pub fn get_mut(&mut self) -> &mut W {
        match &mut self.inner {
            EncoderInner::None(w) => w,
            #[cfg(feature = "gzip")]
            EncoderInner::Gzip(gzip) => gzip.get_mut(),
            #[cfg(feature = "zstd")]
            EncoderInner::Zstd(zstd) => zstd.get_mut(),
        }
    }

    /// Writes out everything buffered and the stream's end, flushes, and returns the inner
    /// writer. Errors are [`Error::Io`] (operation `"write"`), or the [`Error`] that a
    /// failed write of `W` carried.
    pub fn finish(self) -> Result<W> {
        let result = match self.inner {
            EncoderInner::None(mut w) => w.flush().map(|()| w),
            #[cfg(feature = "gzip")]
            EncoderInner::Gzip(gzip) => gzip.finish(),
            #[cfg(feature = "zstd")]
            EncoderInner::Zstd(zstd) => zstd.finish().and_then(|mut w| w.flush().map(|()| w)),
        };
        result.map_err(|e| error_from_io_as(e, "write"))
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.inner {
            EncoderInner::None(w) => w.write(buf),
            #[cfg(feature = "gzip")]
            EncoderInner::Gzip(gzip) => gzip.write(buf),
            #[cfg(feature = "zstd")]
            EncoderInner::Zstd(zstd) => zstd.write(buf),
        }
    }

    /// Flushes what has been compressed so far. For gzip, input still waiting in the
    /// current block stays there (so that the output does not depend on flushes).
    fn flush(&mut self) -> io::Result<()> {
        match &mut self.inner {
            EncoderInner::None(w) => w.flush(),
            #[cfg(feature = "gzip")]
            EncoderInner::Gzip(gzip) => gzip.flush(),
            #[cfg(feature = "zstd")]
            EncoderInner::Zstd(zstd) => zstd.flush(),
        }
    }
}
