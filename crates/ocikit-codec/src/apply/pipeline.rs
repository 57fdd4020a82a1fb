//! [`apply_blob`]: a compressed layer blob applied in three overlapped stages, the way GNU tar
//! runs gzip in a second process, with the blob's own reading (and whatever verification its
//! reader does) in a third.

use std::io::{self, Read};
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use super::{ApplyOptions, ApplyReport, apply_layer};
use crate::Result;
use crate::compression::{Compression, Decoder, compression_of};

/// Decompressed bytes handed from the decompressing thread to the applying one at a time.
const CHUNK: usize = 256 << 10;
/// Decompressed chunks in flight (4 MiB): enough to ride out a slow file creation or a slow
/// read.
const IN_FLIGHT: usize = 16;
/// Compressed bytes handed from the blob's reading thread to the decompressing one at a time.
const BLOB_CHUNK: usize = 256 << 10;
/// Compressed chunks in flight (1 MiB): the reading thread's work per chunk (a read, a
/// hash) is far lighter than the decoder's, so it stays ahead with few.
const BLOB_IN_FLIGHT: usize = 4;

/// Applies the layer blob `blob`, compressed as its layer `media_type` says, to `root`.
///
/// This is [`apply_layer`] over a [`Decoder`] over `blob`, in three stages on three threads,
/// each feeding the next through a bounded channel of recycled buffers:
///
/// 1. `blob` is read on a thread named `ocikit-blob-read`, so that the work its reader does
///    (a [`VerifyingReader`](ocikit_digest::VerifyingReader) hashing the compressed bytes,
///    reads of a file or of a download as it grows) is off the decompressing thread;
/// 2. the [`Decoder`] runs on a thread named `ocikit-decompress`: inflating is the longest
///    stage, so it gets a core to itself as far as the machine allows;
/// 3. the calling thread parses the tar and writes the files ([`apply_layer`], whose diffID
///    hash runs on a fourth thread past its first 8 MiB).
///
/// Uncompressed layers are applied on the calling thread alone. The decoder runs under
/// `options.limits` (decompressed size, zstd window); its errors (a bomb, corruption, a
/// compression that is not what the media type says) and `blob`'s own errors (a digest
/// mismatch of a verifying reader, unchanged) come back as this crate's typed errors,
/// exactly as from [`apply_layer`] over a [`Decoder`] over `blob`.
///
/// Memory stays bounded: at most `4 × 256 KiB` compressed and `16 × 256 KiB` decompressed
/// bytes are in flight. `blob` is read ahead of the decoder by at most that much; after an
/// error it is left where its reading thread stopped (a caller verifying it reads the rest).
///
/// # Errors
/// Those of [`compression_of`] for the media type, of the [`Decoder`], and of
/// [`apply_layer`]. As there, the root may hold part of the layer after an error.
pub fn apply_blob<R: Read + Send>(
    root: &Path,
    blob: R,
    media_type: &str,
    options: &ApplyOptions,
) -> Result<ApplyReport> {
    let compression = compression_of(media_type)?;
    if compression == Compression::None {
        return apply_layer(
            root,
            Decoder::new(blob, compression, options.limits),
            options,
        );
    }
    std::thread::scope(|scope| {
        let (compressed, reading) =
            read_ahead_with(scope, blob, "ocikit-blob-read", BLOB_CHUNK, BLOB_IN_FLIGHT)?;
        let decoder = Decoder::new(compressed, compression, options.limits);
        let (reader, inflater) =
            match read_ahead_with(scope, decoder, "ocikit-decompress", CHUNK, IN_FLIGHT) {
                Ok(started) => started,
                Err(e) => {
                    // The decoder (and the channel the reading thread feeds) was dropped:
                    // that thread stops at its next chunk.
                    let _ = reading.join();
                    return Err(e);
                }
            };
        // Dropping the reader (at the end or on an error) makes the inflater's next send
        // fail, so it stops instead of decompressing the rest for nobody, and dropping the
        // decoder with it stops the reading thread the same way.
        let applied = apply_layer(root, reader, options);
        // The threads only ever return; a panic there would be a bug in the decoder or in
        // `blob`, and shows as an error of the stage that reads from it.
        let _ = inflater.join();
        let _ = reading.join();
        applied
    })
}

/// Reads `source` (a [`Decoder`], typically) on a thread of `scope` named
/// `ocikit-decompress`, ahead of the returned reader, through a bounded channel of recycled
/// buffers (at most `16 × 256 KiB` in flight). The source's errors come through unchanged.
/// Dropping the reader stops the thread at its next chunk; join the handle after that.
pub(crate) fn read_ahead<'scope, R: Read + Send + 'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    source: R,
) -> Result<(ChannelReader, std::thread::ScopedJoinHandle<'scope, ()>)> {
    read_ahead_with(scope, source, "ocikit-decompress", CHUNK, IN_FLIGHT)
}

/// [`read_ahead`] on a thread named `name`, in chunks of `chunk` bytes, `in_flight` at most.
fn read_ahead_with<'scope, R: Read + Send + 'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    source: R,
    name: &str,
    chunk: usize,
    in_flight: usize,
) -> Result<(ChannelReader, std::thread::ScopedJoinHandle<'scope, ()>)> {
    let (chunks, received) = sync_channel::<io::Result<Vec<u8>>>(in_flight);
    let (recycle, recycled) = sync_channel::<Vec<u8>>(in_flight + 2);
    let thread = std::thread::Builder::new()
        .name(name.into())
        .spawn_scoped(scope, move || pump(source, chunk, &chunks, &recycled))
        .map_err(|e| crate::Error::io("spawn a read-ahead thread", None, e))?;
    let reader = ChannelReader {
        chunks: received,
        recycle,
        current: Vec::new(),
        pos: 0,
        ended: false,
    };
    Ok((reader, thread))
}

/// Reads `source` into chunks of `size` bytes and sends them until the end (then an empty
/// chunk, the end marker), an error, or a hang-up.
fn pump(
    mut source: impl Read,
    size: usize,
    chunks: &SyncSender<io::Result<Vec<u8>>>,
    recycled: &Receiver<Vec<u8>>,
) {
    loop {
        let mut chunk = recycled
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(size));
        chunk.resize(size, 0);
        let mut filled = 0;
        let outcome = loop {
            match source.read(&mut chunk[filled..]) {
                Ok(0) => break Ok(true),
                Ok(n) => {
                    filled += n;
                    if filled == chunk.len() {
                        break Ok(false);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        chunk.truncate(filled);
        if !chunk.is_empty() && chunks.send(Ok(chunk)).is_err() {
            return;
        }
        match outcome {
            Ok(false) => {}
            Ok(true) => {
                let _ = chunks.send(Ok(Vec::new()));
                return;
            }
            Err(e) => {
                let _ = chunks.send(Err(e));
                return;
            }
        }
    }
}

/// A [`Read`] over chunks from a read-ahead thread; spent buffers go back to it.
pub(crate) struct ChannelReader {
    chunks: Receiver<io::Result<Vec<u8>>>,
    recycle: SyncSender<Vec<u8>>,
    current: Vec<u8>,
    pos: usize,
    /// The end marker arrived.
    ended: bool,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.current.len() {
            if self.ended {
                return Ok(0);
            }
            match self.chunks.recv() {
                Ok(chunk) => {
                    let chunk = chunk?;
                    if chunk.is_empty() {
                        self.ended = true;
                        continue;
                    }
                    let spent = std::mem::replace(&mut self.current, chunk);
                    // Full (enough buffers in reserve) or gone: the buffer is just dropped.
                    let _ = self.recycle.try_send(spent);
                    self.pos = 0;
                }
                // Gone without its end marker or an error: it stopped (panicked) midway, and
                // what was read so far is not the whole stream.
                Err(_) => {
                    return Err(io::Error::other(
                        "the read-ahead thread stopped before the end of the stream",
                    ));
                }
            }
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads `data` in pieces of odd sizes, failing after `fail_after` bytes when given.
    struct Source {
        data: Vec<u8>,
        pos: usize,
        fail_after: Option<usize>,
    }

    impl Read for Source {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if let Some(limit) = self.fail_after
                && self.pos >= limit
            {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "broken source"));
            }
            let end = self
                .data
                .len()
                .min(self.pos + 7919)
                .min(self.pos + buf.len());
            let n = end - self.pos;
            buf[..n].copy_from_slice(&self.data[self.pos..end]);
            self.pos = end;
            Ok(n)
        }
    }

    fn data() -> Vec<u8> {
        (0..3_000_000u32).map(|i| (i * 31 + i / 7) as u8).collect()
    }

    #[test]
    fn read_ahead_passes_every_byte_and_the_source_error() {
        let data = data();
        std::thread::scope(|scope| {
            let source = Source {
                data: data.clone(),
                pos: 0,
                fail_after: None,
            };
            let (mut reader, thread) = read_ahead_with(scope, source, "t", 4096, 3).unwrap();
            let mut out = Vec::new();
            reader.read_to_end(&mut out).unwrap();
            assert_eq!(out, data);
            // Past the end marker: still the end.
            assert_eq!(reader.read(&mut [0u8; 8]).unwrap(), 0);
            thread.join().unwrap();
        });
        std::thread::scope(|scope| {
            let source = Source {
                data: data.clone(),
                pos: 0,
                fail_after: Some(100_000),
            };
            let (mut reader, thread) = read_ahead_with(scope, source, "t", 4096, 3).unwrap();
            let mut out = Vec::new();
            let err = reader.read_to_end(&mut out).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData);
            assert_eq!(err.to_string(), "broken source");
            assert!(out.len() >= 100_000 && data.starts_with(&out));
            thread.join().unwrap();
        });
    }

    #[test]
    fn a_source_that_stops_without_its_end_is_an_error_not_the_end() {
        struct Panics(usize);
        impl Read for Panics {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                assert!(self.0 < 3, "the source gives up");
                self.0 += 1;
                buf.fill(1);
                Ok(buf.len())
            }
        }
        let result = std::thread::scope(|scope| {
            let (mut reader, thread) = read_ahead_with(scope, Panics(0), "t", 1024, 2).unwrap();
            let mut out = Vec::new();
            let read = reader.read_to_end(&mut out);
            assert!(thread.join().is_err());
            read
        });
        assert!(result.is_err(), "{result:?}");
    }

    #[test]
    fn dropping_the_reader_stops_the_thread() {
        let data = data();
        std::thread::scope(|scope| {
            let source = Source {
                data,
                pos: 0,
                fail_after: None,
            };
            let (mut reader, thread) = read_ahead_with(scope, source, "t", 1024, 2).unwrap();
            let mut first = [0u8; 10];
            reader.read_exact(&mut first).unwrap();
            drop(reader);
            // Joins: the thread saw the hang-up instead of blocking on a full channel.
            thread.join().unwrap();
        });
    }
}
