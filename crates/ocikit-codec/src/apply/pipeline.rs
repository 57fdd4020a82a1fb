//! [`apply_blob`]: a compressed layer blob applied with decompression and file-system work
//! overlapped on two threads, the way GNU tar runs gzip in a second process.

use std::io::{self, Read};
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use super::{ApplyOptions, ApplyReport, apply_layer};
use crate::Result;
use crate::compression::{Compression, Decoder, compression_of};

/// Bytes handed from the decompressing thread to the applying one at a time.
const CHUNK: usize = 256 << 10;
/// Chunks in flight (4 MiB): enough to ride out a slow file creation or a slow read.
const IN_FLIGHT: usize = 16;

/// Applies the layer blob `blob`, compressed as its layer `media_type` says, to `root`.
///
/// This is [`apply_layer`] over a [`Decoder`], with the decoder on a second thread (named
/// `ocikit-decompress`) feeding this one through a bounded channel of recycled buffers, so
/// that inflating and writing files overlap. Uncompressed layers are applied on this thread
/// alone. The decoder runs under `options.limits` (decompressed size, zstd window); its
/// errors (a bomb, corruption, a compression that is not what the media type says) come back
/// as this crate's typed errors, exactly as from [`apply_layer`] over a [`Decoder`].
///
/// Memory stays bounded: at most `16 × 256 KiB` of decompressed bytes are in flight.
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
    let decoder = Decoder::new(blob, compression, options.limits);
    if compression == Compression::None {
        return apply_layer(root, decoder, options);
    }
    std::thread::scope(|scope| {
        let (reader, inflater) = read_ahead(scope, decoder)?;
        // Dropping the reader (at the end or on an error) makes the inflater's next send
        // fail, so it stops instead of decompressing the rest for nobody.
        let applied = apply_layer(root, reader, options);
        // The inflater only ever returns; a panic there would be a bug in the decoder.
        let _ = inflater.join();
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
    let (chunks, received) = sync_channel::<io::Result<Vec<u8>>>(IN_FLIGHT);
    let (recycle, recycled) = sync_channel::<Vec<u8>>(IN_FLIGHT + 2);
    let inflater = std::thread::Builder::new()
        .name("ocikit-decompress".into())
        .spawn_scoped(scope, move || inflate(source, &chunks, &recycled))
        .map_err(|e| crate::Error::io("spawn decompression thread", None, e))?;
    let reader = ChannelReader {
        chunks: received,
        recycle,
        current: Vec::new(),
        pos: 0,
    };
    Ok((reader, inflater))
}

/// Decodes into chunks and sends them until the end, an error, or a hang-up.
fn inflate(
    mut decoder: impl Read,
    chunks: &SyncSender<io::Result<Vec<u8>>>,
    recycled: &Receiver<Vec<u8>>,
) {
    loop {
        let mut chunk = recycled
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(CHUNK));
        chunk.resize(CHUNK, 0);
        let mut filled = 0;
        let outcome = loop {
            match decoder.read(&mut chunk[filled..]) {
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
            Ok(true) => return,
            Err(e) => {
                let _ = chunks.send(Err(e));
                return;
            }
        }
    }
}

/// A [`Read`] over chunks from the inflater; spent buffers go back to it.
pub(crate) struct ChannelReader {
    chunks: Receiver<io::Result<Vec<u8>>>,
    recycle: SyncSender<Vec<u8>>,
    current: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.current.len() {
            match self.chunks.recv() {
                Ok(chunk) => {
                    let spent = std::mem::replace(&mut self.current, chunk?);
                    // Full (enough buffers in reserve) or gone: the buffer is just dropped.
                    let _ = self.recycle.try_send(spent);
                    self.pos = 0;
                }
                // The inflater hung up after its last chunk: the end of the stream.
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
