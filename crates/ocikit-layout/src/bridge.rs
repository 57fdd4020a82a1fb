//! The bridge between blocking CPU work (building, compressing, decompressing and applying
//! layers, on `spawn_blocking` threads) and the store's async I/O.
//!
//! Both directions go through a bounded tokio channel of [`Bytes`] chunks, so memory stays
//! bounded (at most [`CHANNEL_CHUNKS`] chunks of about [`CHUNK_SIZE`] bytes in flight)
//! whatever the blob's size, and the blocking side and the async side overlap:
//!
//! - [`write_blob`]: a blocking producer writes into a [`ChannelWriter`] (a
//!   [`std::io::Write`]); an async loop on the caller's task hands the chunks to a
//!   [`BlobWriter`], which commits (verifies digest and size, then publishes atomically)
//!   only once the producer succeeded. If either side fails, the other stops at its next
//!   chunk and nothing is published; the error returned is the side that failed first (the
//!   store's error rather than the producer's resulting "broken pipe").
//! - [`sink`]: the same [`ChannelWriter`] drained into any `AsyncWrite` (an archive being
//!   exported to a file or a stream).
//! - [`feed`]: an async loop reads a stream of chunks and hands them to a [`ChannelReader`]
//!   (a [`std::io::Read`]) used on a blocking thread. It reads ahead by up to the channel's
//!   capacity, so fetching overlaps with decompression (and tar parsing, in archive
//!   imports); [`reader_channel`] is the bare pair, for a producer that sends chunks itself.
//!
//! These are the layout's only bridges between the two worlds: the archive code, the image
//! builder, unpacking and recompression all use them.

use std::io::{self, Read, Write};

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use ocikit_digest::Digest;
use ocikit_store::{BlobWriter, Error as StoreError, Store, StoreExt};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::{Error, Result};

/// Size of the chunks handed over the channel.
pub(crate) const CHUNK_SIZE: usize = 256 << 10;
/// How many chunks may be in flight between the two sides.
pub(crate) const CHANNEL_CHUNKS: usize = 8;

/// A [`Write`] for a blocking thread that hands what is written, in chunks, to an async task.
///
/// A write fails with [`io::ErrorKind::BrokenPipe`] once the async side has stopped (it
/// failed, or its future was dropped).
#[derive(Debug)]
pub(crate) struct ChannelWriter {
    tx: mpsc::Sender<Bytes>,
    buf: BytesMut,
}

impl ChannelWriter {
    fn new(tx: mpsc::Sender<Bytes>) -> ChannelWriter {
        ChannelWriter {
            tx,
            buf: BytesMut::with_capacity(CHUNK_SIZE),
        }
    }

    fn send_buffered(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = self.buf.split().freeze();
        self.buf.reserve(CHUNK_SIZE);
        self.tx
            .blocking_send(chunk)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the async side stopped"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = CHUNK_SIZE.saturating_sub(self.buf.len()).max(1);
        let n = room.min(buf.len());
        self.buf.extend_from_slice(&buf[..n]);
        if self.buf.len() >= CHUNK_SIZE {
            self.send_buffered()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send_buffered()
    }
}

/// Runs `produce` on a blocking thread, streaming what it writes into a new blob of `store`,
/// and commits the blob under the digest and size `produce` returns (the commit verifies
/// both). Returns `produce`'s value.
///
/// Nothing is published unless `produce` succeeds and the bytes written hash to what it
/// said. Dropping the returned future stops the producer at its next chunk and discards
/// the staged bytes.
pub(crate) async fn write_blob<T, F>(store: &dyn Store, produce: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce(&mut ChannelWriter) -> Result<(T, Digest, u64)> + Send + 'static,
{
    let (mut out, pump) = blob_sink(store).await?;
    let producer = tokio::task::spawn_blocking(move || {
        let produced = produce(&mut out)?;
        out.flush()
            .map_err(|e| Error::Codec(ocikit_codec::compression::error_from_io(e)))?;
        Ok::<_, Error>(produced)
    });
    let (pumped, produced) = futures::join!(pump, producer);
    finish(pumped, produced.map_err(join_error).and_then(|p| p)).await
}

/// A [`ChannelWriter`] for a blocking producer, and the future that hands what it writes
/// to a new blob of `store` (run it on the async side while the producer writes). The
/// future ends once the writer is dropped, returning the blob's writer uncommitted: the
/// caller commits it under the digest the producer computed, or aborts it. If the store
/// fails, the future returns its error and the producer's next write fails with
/// [`io::ErrorKind::BrokenPipe`].
pub(crate) async fn blob_sink(
    store: &dyn Store,
) -> Result<(
    ChannelWriter,
    impl Future<Output = Result<BlobWriter>> + Send + use<>,
)> {
    let mut writer = store.writer().await?;
    let (tx, rx) = mpsc::channel::<Bytes>(CHANNEL_CHUNKS);
    let pump = async move {
        if let Err(e) = drain(&mut writer, rx).await {
            abort(writer).await;
            return Err(Error::Store(StoreError::Stream(e)));
        }
        Ok(writer)
    };
    Ok((ChannelWriter::new(tx), pump))
}

/// A [`ChannelWriter`] for a blocking producer, and the future that writes what it writes
/// to `writer` (run it on the async side while the producer writes). The future ends once
/// the channel writer is dropped, flushing `writer` and returning it. If `writer` fails,
/// the future returns its error and the producer's next write fails with
/// [`io::ErrorKind::BrokenPipe`].
pub(crate) fn sink<W: AsyncWrite + Unpin>(
    mut writer: W,
) -> (ChannelWriter, impl Future<Output = io::Result<W>>) {
    let (tx, rx) = mpsc::channel::<Bytes>(CHANNEL_CHUNKS);
    let pump = async move {
        drain(&mut writer, rx).await?;
        writer.flush().await?;
        Ok(writer)
    };
    (ChannelWriter::new(tx), pump)
}

/// Writes the chunks of `rx` to `writer` until the channel closes; on a failed write, drops
/// `rx` first, so that the producer stops at its next chunk.
async fn drain<W: AsyncWrite + Unpin>(
    writer: &mut W,
    mut rx: mpsc::Receiver<Bytes>,
) -> io::Result<()> {
    while let Some(chunk) = rx.recv().await {
        if let Err(e) = writer.write_all(&chunk).await {
            drop(rx);
            return Err(e);
        }
    }
    Ok(())
}

/// Ends a blob written through [`blob_sink`]: commits it under the digest and size the
/// producer returned with its value, or discards it. When both sides failed the store's
/// error wins (the producer's is then a consequence: "broken pipe").
pub(crate) async fn finish<T>(
    pumped: Result<BlobWriter>,
    produced: Result<(T, Digest, u64)>,
) -> Result<T> {
    match (pumped, produced) {
        (Err(e), _) => Err(e),
        (Ok(writer), Err(e)) => {
            abort(writer).await;
            Err(e)
        }
        (Ok(writer), Ok((value, digest, size))) => {
            writer.commit(&digest, size).await?;
            Ok(value)
        }
    }
}

async fn abort(writer: BlobWriter) {
    // Dropping discards as well; aborting just does it now. The original error matters more
    // than a failure to clean up.
    writer.abort().await.ok();
}

/// The error for a blocking task that panicked or was cancelled (the runtime shutting down).
pub(crate) fn join_error(e: tokio::task::JoinError) -> Error {
    Error::Store(StoreError::Stream(io::Error::other(format!(
        "blocking task failed: {e}"
    ))))
}

/// A [`Read`] for a blocking thread over chunks that an async [`feed`] hands over.
///
/// It ends (`Ok(0)`) when the feed has delivered everything; if the feed failed it returns
/// an error instead (the feed's own result carries the typed error). A reader whose feed
/// was dropped early also ends: callers that need the exact content verify it (the unpacker
/// reads through a [`ocikit_digest::VerifyingReader`]).
#[derive(Debug)]
pub(crate) struct ChannelReader {
    rx: mpsc::Receiver<Option<Bytes>>,
    current: Bytes,
    failed: bool,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        while self.current.is_empty() {
            if self.failed {
                return Err(source_failed());
            }
            match self.rx.blocking_recv() {
                None => return Ok(0),
                Some(Some(chunk)) => self.current = chunk,
                Some(None) => {
                    self.failed = true;
                    return Err(source_failed());
                }
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

fn source_failed() -> io::Error {
    io::Error::other("the source stream failed")
}

/// A bare [`ChannelReader`] and the sender that feeds it: send `Some(chunk)` for data and
/// `None` for a failure (the reader then fails); dropping the sender ends the reader.
pub(crate) fn reader_channel() -> (mpsc::Sender<Option<Bytes>>, ChannelReader) {
    let (tx, rx) = mpsc::channel::<Option<Bytes>>(CHANNEL_CHUNKS);
    let reader = ChannelReader {
        rx,
        current: Bytes::new(),
        failed: false,
    };
    (tx, reader)
}

/// A [`ChannelReader`] and the future that feeds it from `stream`; run the future on the
/// async side while the reader is used on a blocking thread. The future returns the
/// stream's first error, if any (the reader then fails too); it stops early, without
/// error, when the reader is dropped.
pub(crate) fn feed<S, E>(
    stream: S,
) -> (
    ChannelReader,
    impl Future<Output = std::result::Result<(), E>>,
)
where
    S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
{
    let (tx, reader) = reader_channel();
    let future = async move {
        let mut stream = stream;
        while let Some(item) = stream.next().await {
            match item {
                Ok(chunk) if chunk.is_empty() => {}
                Ok(chunk) => {
                    if tx.send(Some(chunk)).await.is_err() {
                        return Ok(());
                    }
                }
                Err(e) => {
                    tx.send(None).await.ok();
                    return Err(e);
                }
            }
        }
        Ok(())
    };
    (reader, future)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_writer_never_runs_more_than_the_channel_ahead() {
        let (tx, mut rx) = mpsc::channel::<Bytes>(CHANNEL_CHUNKS);
        let written = Arc::new(AtomicU64::new(0));
        let counter = written.clone();
        let producer = tokio::task::spawn_blocking(move || {
            let mut out = ChannelWriter::new(tx);
            for _ in 0..200 {
                out.write_all(&[1u8; 64 << 10]).unwrap();
                counter.fetch_add(64 << 10, Ordering::SeqCst);
            }
            out.flush().unwrap();
        });
        let bound = ((CHANNEL_CHUNKS + 2) * CHUNK_SIZE) as u64;
        let mut received = 0u64;
        while let Some(chunk) = rx.recv().await {
            received += chunk.len() as u64;
            // A slow consumer: the producer must wait for it.
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            let ahead = written.load(Ordering::SeqCst).saturating_sub(received);
            assert!(ahead <= bound, "{ahead} bytes in flight");
        }
        producer.await.unwrap();
        assert_eq!(received, 200 * (64 << 10));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_writer_whose_reader_is_gone_fails_with_broken_pipe() {
        let (tx, rx) = mpsc::channel::<Bytes>(1);
        drop(rx);
        let err = tokio::task::spawn_blocking(move || {
            let mut out = ChannelWriter::new(tx);
            out.write_all(&vec![0u8; CHUNK_SIZE * 2])
        })
        .await
        .unwrap()
        .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_fed_reader_yields_the_stream_then_its_failure() {
        let items: Vec<std::result::Result<Bytes, &'static str>> = vec![
            Ok(Bytes::from_static(b"abc")),
            Ok(Bytes::new()),
            Ok(Bytes::from_static(b"def")),
        ];
        let (mut reader, feeding) = feed(futures::stream::iter(items));
        let read = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            reader.read_to_end(&mut out).map(|_| out)
        });
        let (fed, read) = futures::join!(feeding, read);
        fed.unwrap();
        assert_eq!(read.unwrap().unwrap(), b"abcdef");

        let items: Vec<std::result::Result<Bytes, &'static str>> =
            vec![Ok(Bytes::from_static(b"abc")), Err("broken")];
        let (mut reader, feeding) = feed(futures::stream::iter(items));
        let read = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            let result = reader.read_to_end(&mut out);
            // Once failed, it stays failed: never a clean end.
            (result.is_err(), reader.read(&mut [0u8; 4]).is_err())
        });
        let (fed, read) = futures::join!(feeding, read);
        assert_eq!(fed, Err("broken"));
        assert_eq!(read.unwrap(), (true, true));
    }
}
