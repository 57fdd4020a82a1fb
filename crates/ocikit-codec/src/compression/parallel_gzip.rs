//! pigz-style parallel gzip: one ordinary gzip member from independently compressed blocks.
//!
//! The input is cut into fixed-size blocks. Each block is compressed as raw deflate with the
//! 32 KiB of input before it as preset dictionary, so matches can reach back across the
//! block boundary as in a single stream; non-final blocks end with a sync flush (an empty
//! stored block), which leaves them byte-aligned so that they concatenate into one valid
//! deflate stream, and the final block ends the stream. The gzip header, the blocks in
//! order, then the CRC32 (combined from per-block CRCs) and ISIZE make one gzip member.
//!
//! Blocks are compressed on worker threads; the thread that writes keeps the order, writes
//! the compressed blocks to the inner writer as they come back, and never has more than a
//! bounded number of blocks in flight. The output depends only on the input, the level and
//! the block size: the same with no worker thread as with many.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use flate2::{Compress, Crc, FlushCompress, Status};

/// The deflate window: how much earlier input a block may refer to.
const WINDOW: usize = 32 << 10;

/// Smallest and largest block sizes accepted.
const MIN_BLOCK: usize = 1 << 10;
const MAX_BLOCK: usize = 64 << 20;

/// A block to compress.
struct Job {
    data: Vec<u8>,
    dict: Vec<u8>,
    out: Vec<u8>,
    last: bool,
    reply: SyncSender<Done>,
}

/// A compressed block, with the buffers handed back for reuse.
struct Done {
    data: Vec<u8>,
    dict: Vec<u8>,
    out: Vec<u8>,
    crc: Crc,
    result: Result<(), String>,
}

/// Compresses blocks as raw deflate.
///
/// Each block gets a fresh deflate state: zlib-rs's `deflateReset` keeps the old window and
/// `prev` chains, and what was compressed before then changes how the next block is
/// compressed (still valid deflate, but different bytes), which would make the output depend
/// on which worker compressed which block.
struct BlockCompressor {
    level: flate2::Compression,
}

impl BlockCompressor {
    fn new(level: u32) -> BlockCompressor {
        BlockCompressor {
            level: flate2::Compression::new(level),
        }
    }

    fn compress(
        &self,
        data: &[u8],
        dict: &[u8],
        last: bool,
        out: &mut Vec<u8>,
    ) -> Result<(), String> {
        let mut deflate = Compress::new(self.level, false);
        if !dict.is_empty() {
            deflate
                .set_dictionary(dict)
                .map_err(|e| format!("deflate dictionary: {e}"))?;
        }
        out.clear();
        // More than deflate's worst case (stored blocks) plus the flush markers, so that one
        // call normally does it all.
        out.reserve(data.len() + (data.len() >> 6) + 1024);
        let flush = if last {
            FlushCompress::Finish
        } else {
            FlushCompress::Sync
        };
        loop {
            let consumed = usize::try_from(deflate.total_in()).unwrap_or(usize::MAX);
            let rest = data.get(consumed..).unwrap_or_default();
            let status = deflate
                .compress_vec(rest, out, flush)
                .map_err(|e| format!("deflate: {e}"))?;
            let consumed = usize::try_from(deflate.total_in()).unwrap_or(usize::MAX);
            match status {
                Status::StreamEnd => return Ok(()),
                // A sync flush is complete once all input is in and output space is left.
                Status::Ok | Status::BufError
                    if !last && consumed >= data.len() && out.len() < out.capacity() =>
                {
                    return Ok(());
                }
                Status::Ok | Status::BufError => out.reserve(out.capacity().max(4096)),
            }
        }
    }

    fn run(&mut self, job: Job) -> (SyncSender<Done>, Done) {
        let Job {
            data,
            dict,
            mut out,
            last,
            reply,
        } = job;
        let mut crc = Crc::new();
        crc.update(&data);
        let result = self.compress(&data, &dict, last, &mut out);
        (
            reply,
            Done {
                data,
                dict,
                out,
                crc,
                result,
            },
        )
    }
}

/// The worker threads and the queue that feeds them.
struct Pool {
    jobs: Option<SyncSender<Job>>,
    handles: Vec<JoinHandle<()>>,
}

impl Pool {
    /// Starts up to `threads` workers; `None` if not even one could be started.
    fn spawn(threads: usize, level: u32, capacity: usize) -> Option<Pool> {
        let (jobs, queue) = mpsc::sync_channel::<Job>(capacity);
        let queue = Arc::new(Mutex::new(queue));
        let mut handles = Vec::with_capacity(threads);
        for index in 0..threads {
            let queue = Arc::clone(&queue);
            let spawned = std::thread::Builder::new()
                .name(format!("ocikit-gzip-{index}"))
                .spawn(move || worker(&queue, level));
            match spawned {
                Ok(handle) => handles.push(handle),
                Err(_) => break,
            }
        }
        if handles.is_empty() {
            return None;
        }
        Some(Pool {
            jobs: Some(jobs),
            handles,
        })
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Closing the queue ends the workers once they finish their current block.
        drop(self.jobs.take());
        for handle in self.handles.drain(..) {
            let _ = handle.join();
        }
    }
}

fn worker(queue: &Mutex<Receiver<Job>>, level: u32) {
    let mut compressor = BlockCompressor::new(level);
    loop {
        let job = queue.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok(job) = job else { return };
        let (reply, done) = compressor.run(job);
        // The writer may have gone away (dropped without finishing): nothing to do then.
        let _ = reply.send(done);
    }
}

/// Keeps the last [`WINDOW`] bytes of the input seen so far.
fn advance_history(history: &mut Vec<u8>, block: &[u8]) {
    if block.len() >= WINDOW {
        history.clear();
        history.extend_from_slice(&block[block.len() - WINDOW..]);
    } else {
        history.extend_from_slice(block);
        if history.len() > WINDOW {
            history.drain(..history.len() - WINDOW);
        }
    }
}

fn gzip_header(level: u32) -> [u8; 10] {
    // XFL as zlib and flate2 set it: 2 for the slowest level, 4 for the fastest.
    let xfl = match level {
        9.. => 2,
        0 | 1 => 4,
        _ => 0,
    };
    // Magic, CM=deflate, no flags, MTIME=0 (reproducible), XFL, OS=255 (unknown).
    [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 255]
}

fn worker_gone() -> io::Error {
    io::Error::other("a gzip compression thread stopped unexpectedly")
}

fn poisoned() -> io::Error {
    io::Error::other("gzip encoder unusable after an earlier error")
}

/// The parallel gzip encoder (see the module docs).
pub(crate) struct ParallelGzip<W: Write> {
    out: W,
    level: u32,
    block_size: usize,
    threads: usize,
    /// The block being filled.
    buf: Vec<u8>,
    /// The last 32 KiB of input before `buf`.
    history: Vec<u8>,
    /// CRC32 of the blocks written so far.
    crc: Crc,
    total_in: u64,
    header_written: bool,
    /// Blocks in flight, oldest first.
    pending: VecDeque<Receiver<Done>>,
    pool: Option<Pool>,
    /// The compressor used on this thread when there are no workers.
    local: Option<BlockCompressor>,
    spare_data: Vec<Vec<u8>>,
    spare_dict: Vec<Vec<u8>>,
    spare_out: Vec<Vec<u8>>,
    poisoned: bool,
}

impl<W: Write> ParallelGzip<W> {
    pub(crate) fn new(out: W, level: u32, block_size: usize) -> ParallelGzip<W> {
        ParallelGzip {
            out,
            level: level.min(9),
            block_size: block_size.clamp(MIN_BLOCK, MAX_BLOCK),
            threads: 0,
            buf: Vec::new(),
            history: Vec::with_capacity(WINDOW),
            crc: Crc::new(),
            total_in: 0,
            header_written: false,
            pending: VecDeque::new(),
            pool: None,
            local: None,
            spare_data: Vec::new(),
            spare_dict: Vec::new(),
            spare_out: Vec::new(),
            poisoned: false,
        }
    }

    /// Worker threads to use (0: compress on the writing thread). Takes effect if no block
    /// has been handed to workers yet.
    pub(crate) fn set_threads(&mut self, threads: usize) {
        if self.pool.is_none() {
            self.threads = threads;
        }
    }

    /// The block size; takes effect if nothing has been written yet.
    pub(crate) fn set_block_size(&mut self, bytes: usize) {
        if self.total_in == 0 && self.buf.is_empty() {
            self.block_size = bytes.clamp(MIN_BLOCK, MAX_BLOCK);
        }
    }

    pub(crate) fn get_ref(&self) -> &W {
        &self.out
    }

    pub(crate) fn get_mut(&mut self) -> &mut W {
        &mut self.out
    }

    fn max_in_flight(&self) -> usize {
        (self.threads * 2).max(2)
    }

    /// Writes out everything, the trailer, flushes, and returns the inner writer.
    pub(crate) fn finish(mut self) -> io::Result<W> {
        if self.poisoned {
            return Err(poisoned());
        }
        self.dispatch(true)?;
        while self.retire(true)? {}
        let mut trailer = [0u8; 8];
        trailer[..4].copy_from_slice(&self.crc.sum().to_le_bytes());
        // ISIZE: the input size modulo 2^32 (RFC 1952).
        trailer[4..].copy_from_slice(&(self.total_in as u32).to_le_bytes());
        self.out.write_all(&trailer)?;
        self.out.flush()?;
        // Stop the workers before handing the writer back.
        drop(self.pool.take());
        Ok(self.out)
    }

    /// Hands the current block to a worker (or compresses it here), writing out whatever
    /// blocks are done, in order.
    fn dispatch(&mut self, last: bool) -> io::Result<()> {
        let mut fresh = self.spare_data.pop().unwrap_or_default();
        fresh.clear();
        let data = std::mem::replace(&mut self.buf, fresh);
        let mut dict = self.spare_dict.pop().unwrap_or_default();
        dict.clear();
        dict.extend_from_slice(&self.history);
        advance_history(&mut self.history, &data);
        self.total_in += data.len() as u64;
        let out = self.spare_out.pop().unwrap_or_default();
        let (reply, receiver) = mpsc::sync_channel(1);
        let job = Job {
            data,
            dict,
            out,
            last,
            reply,
        };

        let job = if self.threads > 0 && self.ensure_pool() {
            while self.pending.len() >= self.max_in_flight() {
                self.retire(true)?;
            }
            let sent = match self.pool.as_ref().and_then(|pool| pool.jobs.as_ref()) {
                Some(jobs) => jobs.send(job).map_err(|mpsc::SendError(job)| job),
                None => Err(job),
            };
            match sent {
                Ok(()) => {
                    self.pending.push_back(receiver);
                    while self.retire(false)? {}
                    return Ok(());
                }
                Err(job) => {
                    // Every worker is gone: go on without them.
                    self.pool = None;
                    self.threads = 0;
                    job
                }
            }
        } else {
            job
        };
        // Compress here, after everything already in flight.
        while self.retire(true)? {}
        let level = self.level;
        let (_, done) = self
            .local
            .get_or_insert_with(|| BlockCompressor::new(level))
            .run(job);
        self.emit(done)
    }

    fn ensure_pool(&mut self) -> bool {
        if self.pool.is_none() {
            self.pool = Pool::spawn(self.threads, self.level, self.max_in_flight());
        }
        self.pool.is_some()
    }

    /// Writes out the oldest block in flight, waiting for it if `wait`. Returns whether a
    /// block was written.
    fn retire(&mut self, wait: bool) -> io::Result<bool> {
        let Some(front) = self.pending.front() else {
            return Ok(false);
        };
        let done = if wait {
            front.recv().map_err(|_| worker_gone())?
        } else {
            match front.try_recv() {
                Ok(done) => done,
                Err(TryRecvError::Empty) => return Ok(false),
                Err(TryRecvError::Disconnected) => return Err(worker_gone()),
            }
        };
        self.pending.pop_front();
        self.emit(done)?;
        Ok(true)
    }

    fn emit(&mut self, done: Done) -> io::Result<()> {
        let Done {
            mut data,
            dict,
            mut out,
            crc,
            result,
        } = done;
        result.map_err(io::Error::other)?;
        if !self.header_written {
            self.out.write_all(&gzip_header(self.level))?;
            self.header_written = true;
        }
        self.out.write_all(&out)?;
        self.crc.combine(&crc);
        let keep = self.max_in_flight() + 1;
        if self.spare_data.len() < keep {
            data.clear();
            self.spare_data.push(data);
        }
        if self.spare_dict.len() < keep {
            self.spare_dict.push(dict);
        }
        if self.spare_out.len() < keep {
            out.clear();
            self.spare_out.push(out);
        }
        Ok(())
    }
}

impl<W: Write> Write for ParallelGzip<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.poisoned {
            return Err(poisoned());
        }
        let mut written = 0;
        while written < data.len() {
            if self.buf.capacity() < self.block_size {
                self.buf.reserve_exact(self.block_size - self.buf.len());
            }
            let n = (self.block_size - self.buf.len()).min(data.len() - written);
            self.buf.extend_from_slice(&data[written..written + n]);
            written += n;
            if self.buf.len() >= self.block_size
                && let Err(err) = self.dispatch(false)
            {
                self.poisoned = true;
                return Err(err);
            }
        }
        Ok(written)
    }

    /// Writes out the blocks in flight and flushes the inner writer; input waiting in the
    /// current block stays there, so that flushing never changes the output.
    fn flush(&mut self) -> io::Result<()> {
        if self.poisoned {
            return Err(poisoned());
        }
        let result = (|| {
            while self.retire(true)? {}
            self.out.flush()
        })();
        if result.is_err() {
            self.poisoned = true;
        }
        result
    }
}
