//! Async twins of [`Decoder`](crate::compression::Decoder) and
//! [`Encoder`](crate::compression::Encoder) over tokio's `AsyncRead`/`AsyncWrite`, through
//! `async-compression` (feature `tokio`).
//!
//! [`AsyncDecoder`] applies the same magic-byte checks and [`Limits`] as the sync decoder
//! and fails the same way (an [`io::Error`] carrying this crate's [`Error`];
//! [`error_from_io`](crate::compression::error_from_io) takes it out). [`AsyncEncoder`]
//! compresses on the task's thread (single-stream gzip, single-threaded zstd); for large
//! layers, the sync [`LayerWriter`](crate::writer::LayerWriter) on a blocking thread is
//! several times faster.
//!
//! ```
//! use ocikit_codec::async_io::{AsyncDecoder, AsyncEncoder};
//! use ocikit_codec::compression::Compression;
//! use ocikit_codec::Limits;
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
//! let mut encoder = AsyncEncoder::new(Vec::new(), Compression::Zstd, None)?;
//! encoder.write_all(b"tar bytes").await?;
//! let blob = encoder.finish().await?;
//!
//! let mut decoder = AsyncDecoder::new(&blob[..], Compression::Zstd, Limits::default());
//! let mut out = Vec::new();
//! decoder.read_to_end(&mut out).await?;
//! assert_eq!(out, b"tar bytes");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use async_compression::Level;
use async_compression::tokio::bufread::{GzipDecoder, ZstdDecoder};
use async_compression::tokio::write::{GzipEncoder, ZstdEncoder};
use async_compression::zstd::{CParameter, DParameter};
use tokio::io::{AsyncRead, AsyncWrite, BufReader, ReadBuf};

use crate::compression::{
    Compression, DEFAULT_GZIP_LEVEL, DEFAULT_ZSTD_LEVEL, Failure, MAGIC_LEN, check_magic,
    classify_error, compression_of, effective_window_log, error_from_io_as, mark_source, name,
};
use crate::{Error, Limit, Limits, Result};

/// Size of the read buffer between the source and a decompressor.
const INPUT_BUFFER: usize = 128 << 10;

/// The source: the sniffed magic bytes first, then the rest of the inner reader, whose
/// errors are marked.
struct AsyncSource<R> {
    prefix: [u8; MAGIC_LEN],
    start: usize,
    end: usize,
    inner: R,
}

impl<R: AsyncRead + Unpin> AsyncSource<R> {
    fn poll_sniff(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.end < MAGIC_LEN {
            let mut buf = ReadBuf::new(&mut self.prefix[self.end..]);
            ready!(Pin::new(&mut self.inner).poll_read(cx, &mut buf)).map_err(mark_source)?;
            let n = buf.filled().len();
            if n == 0 {
                break;
            }
            self.end += n;
        }
        Poll::Ready(Ok(()))
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for AsyncSource<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.start < this.end {
            let n = (this.end - this.start).min(buf.remaining());
            buf.put_slice(&this.prefix[this.start..this.start + n]);
            this.start += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner)
            .poll_read(cx, buf)
            .map_err(mark_source)
    }
}

enum State<R> {
    Sniffing(AsyncSource<R>),
    Plain(AsyncSource<R>),
    Gzip(Box<GzipDecoder<BufReader<AsyncSource<R>>>>),
    Zstd(Box<ZstdDecoder<BufReader<AsyncSource<R>>>>),
    Failed(Failure),
}

/// An `AsyncRead` that decodes a layer blob (none, gzip or zstd) to its tar stream under
/// [`Limits`], with the same checks and errors as the sync
/// [`Decoder`](crate::compression::Decoder): magic bytes on the first read, multi-member
/// gzip and every zstd frame decoded (skippable frames skipped), zstd window and
/// decompressed-size caps, poisoned after a failure.
pub struct AsyncDecoder<R> {
    state: State<R>,
    compression: Compression,
    limits: Limits,
    produced: u64,
}

impl<R> fmt::Debug for AsyncDecoder<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncDecoder")
            .field("compression", &self.compression)
            .field("limits", &self.limits)
            .field("produced", &self.produced)
            .finish_non_exhaustive()
    }
}

impl<R: AsyncRead + Unpin> AsyncDecoder<R> {
    /// Decodes `reader`, which must be compressed as `compression` says, within `limits`.
    pub fn new(reader: R, compression: Compression, limits: Limits) -> AsyncDecoder<R> {
        AsyncDecoder {
            state: State::Sniffing(AsyncSource {
                prefix: [0; MAGIC_LEN],
                start: 0,
                end: 0,
                inner: reader,
            }),
            compression,
            limits,
            produced: 0,
        }
    }

    /// Decodes `reader` with the compression its layer `media_type` declares; fails with
    /// [`Error::UnsupportedMediaType`] for types this crate cannot decode.
    pub fn for_media_type(reader: R, media_type: &str, limits: Limits) -> Result<AsyncDecoder<R>> {
        Ok(AsyncDecoder::new(
            reader,
            compression_of(media_type)?,
            limits,
        ))
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

    fn poll_start(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let State::Sniffing(source) = &mut self.state else {
            return Poll::Ready(Ok(()));
        };
        if let Err(err) = ready!(source.poll_sniff(cx)) {
            return Poll::Ready(Err(self.classified(classify_error("source", err, 0))));
        }
        if let Err(error) = check_magic(self.compression, &source.prefix[..source.end]) {
            return Poll::Ready(Err(self.fail(Failure::from_error(&error), error)));
        }
        let placeholder = State::Failed(Failure::Setup {
            message: "decoder setup interrupted".to_owned(),
        });
        let State::Sniffing(source) = std::mem::replace(&mut self.state, placeholder) else {
            return Poll::Ready(Ok(()));
        };
        self.state = match self.compression {
            Compression::Gzip => {
                let mut decoder = GzipDecoder::new(BufReader::with_capacity(INPUT_BUFFER, source));
                decoder.multiple_members(true);
                State::Gzip(Box::new(decoder))
            }
            Compression::Zstd => {
                let params = [DParameter::window_log_max(effective_window_log(
                    &self.limits,
                ))];
                let mut decoder = ZstdDecoder::with_params(
                    BufReader::with_capacity(INPUT_BUFFER, source),
                    &params,
                );
                decoder.multiple_members(true);
                State::Zstd(Box::new(decoder))
            }
            Compression::None => State::Plain(source),
            other => {
                let error = Error::UnsupportedMediaType {
                    media_type: name(other).to_owned(),
                };
                return Poll::Ready(Err(self.fail(Failure::from_error(&error), error)));
            }
        };
        Poll::Ready(Ok(()))
    }

    /// Reads at most `len` (≥ 1) decoded bytes into `buf`.
    fn poll_inner(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
        len: usize,
    ) -> Poll<io::Result<usize>> {
        let window_log = effective_window_log(&self.limits);
        let dst = buf.initialize_unfilled_to(len.min(buf.remaining()));
        let mut sub = ReadBuf::new(dst);
        let (format, result) = match &mut self.state {
            State::Sniffing(_) => return Poll::Ready(Ok(0)),
            State::Failed(failure) => return Poll::Ready(Err(failure.to_error().into())),
            State::Plain(source) => ("uncompressed", Pin::new(source).poll_read(cx, &mut sub)),
            State::Gzip(decoder) => ("gzip", Pin::new(decoder.as_mut()).poll_read(cx, &mut sub)),
            State::Zstd(decoder) => ("zstd", Pin::new(decoder.as_mut()).poll_read(cx, &mut sub)),
        };
        match ready!(result) {
            Ok(()) => {
                let n = sub.filled().len();
                buf.advance(n);
                Poll::Ready(Ok(n))
            }
            Err(err) => Poll::Ready(Err(self.classified(classify_error(format, err, window_log)))),
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for AsyncDecoder<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let State::Failed(failure) = &this.state {
            return Poll::Ready(Err(failure.to_error().into()));
        }
        ready!(this.poll_start(cx))?;
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let max = this.limits.max_decompressed_bytes;
        let allowed = max.saturating_sub(this.produced);
        if allowed == 0 {
            // Exactly the limit is fine; one byte more is not.
            let mut byte = [0u8; 1];
            let mut probe = ReadBuf::new(&mut byte);
            return match ready!(this.poll_inner(cx, &mut probe, 1))? {
                0 => Poll::Ready(Ok(())),
                _ => {
                    let failure = Failure::Limit {
                        limit: Limit::DecompressedBytes,
                        max,
                    };
                    let error = failure.to_error();
                    Poll::Ready(Err(this.fail(failure, error)))
                }
            };
        }
        let len = usize::try_from(allowed).unwrap_or(usize::MAX);
        let n = ready!(this.poll_inner(cx, buf, len))?;
        this.produced += n as u64;
        Poll::Ready(Ok(()))
    }
}

enum EncoderInner<W> {
    None(W),
    Gzip(Box<GzipEncoder<W>>),
    Zstd(Box<ZstdEncoder<W>>),
}

/// An `AsyncWrite` that compresses into `W` (gzip: one single-threaded member, default
/// level 6; zstd: default level 3, with a content checksum). Call
/// [`AsyncEncoder::finish`] (or `shutdown`) at the end.
pub struct AsyncEncoder<W> {
    inner: EncoderInner<W>,
}

impl<W> fmt::Debug for AsyncEncoder<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let compression = match self.inner {
            EncoderInner::None(_) => Compression::None,
            EncoderInner::Gzip(_) => Compression::Gzip,
            EncoderInner::Zstd(_) => Compression::Zstd,
        };
        f.debug_struct("AsyncEncoder")
            .field("compression", &compression)
            .finish_non_exhaustive()
    }
}

impl<W: AsyncWrite + Unpin> AsyncEncoder<W> {
    /// Compresses into `writer` with `compression` at `level` (`None`: the default level;
    /// levels outside the codec's range are clamped to it).
    pub fn new(writer: W, compression: Compression, level: Option<i32>) -> Result<AsyncEncoder<W>> {
        let inner = match compression {
            Compression::None => EncoderInner::None(writer),
            Compression::Gzip => {
                let level = level.unwrap_or(DEFAULT_GZIP_LEVEL).clamp(0, 9);
                EncoderInner::Gzip(Box::new(GzipEncoder::with_quality(
                    writer,
                    Level::Precise(level),
                )))
            }
            Compression::Zstd => {
                // zstd's range: ZSTD_minCLevel() (-2^17) to ZSTD_maxCLevel() (22).
                let level = level.unwrap_or(DEFAULT_ZSTD_LEVEL).clamp(-(1 << 17), 22);
                EncoderInner::Zstd(Box::new(ZstdEncoder::with_quality_and_params(
                    writer,
                    Level::Precise(level),
                    &[CParameter::checksum_flag(true)],
                )))
            }
            other => {
                return Err(Error::UnsupportedMediaType {
                    media_type: name(other).to_owned(),
                });
            }
        };
        Ok(AsyncEncoder { inner })
    }

    /// The inner writer.
    pub fn get_ref(&self) -> &W {
        match &self.inner {
            EncoderInner::None(w) => w,
            EncoderInner::Gzip(e) => e.get_ref(),
            EncoderInner::Zstd(e) => e.get_ref(),
        }
    }

    /// The inner writer (call after `shutdown`, or the stream is incomplete).
    pub fn into_inner(self) -> W {
        match self.inner {
            EncoderInner::None(w) => w,
            EncoderInner::Gzip(e) => e.into_inner(),
            EncoderInner::Zstd(e) => e.into_inner(),
        }
    }

    /// Ends the compressed stream, shuts the inner writer down, and returns it.
    pub async fn finish(mut self) -> Result<W> {
        tokio::io::AsyncWriteExt::shutdown(&mut self)
            .await
            .map_err(|e| error_from_io_as(e, "write"))?;
        Ok(self.into_inner())
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for AsyncEncoder<W> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().inner {
            EncoderInner::None(w) => Pin::new(w).poll_write(cx, buf),
            EncoderInner::Gzip(e) => Pin::new(e.as_mut()).poll_write(cx, buf),
            EncoderInner::Zstd(e) => Pin::new(e.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            EncoderInner::None(w) => Pin::new(w).poll_flush(cx),
            EncoderInner::Gzip(e) => Pin::new(e.as_mut()).poll_flush(cx),
            EncoderInner::Zstd(e) => Pin::new(e.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            EncoderInner::None(w) => Pin::new(w).poll_shutdown(cx),
            EncoderInner::Gzip(e) => Pin::new(e.as_mut()).poll_shutdown(cx),
            EncoderInner::Zstd(e) => Pin::new(e.as_mut()).poll_shutdown(cx),
        }
    }
}
