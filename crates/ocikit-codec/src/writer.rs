//! [`LayerWriter`]: a tar stream in, a compressed layer blob out, and everything a
//! descriptor and an image config need about it from one pass.
//!
//! The uncompressed bytes are hashed (the diffID) on the writing thread as they come in, the
//! compressed bytes are hashed (the blob digest) as they are written out, in order, and the
//! compression runs on worker threads: pigz-style parallel gzip (one ordinary gzip member
//! whose bytes do not depend on the number of threads), zstd's own worker threads, or no
//! compression at all (one hash, digest = diffID). Memory stays bounded: a few blocks per
//! worker for gzip, zstd's job buffers for zstd.
//!
//! ```
//! # #[cfg(feature = "gzip")] {
//! use std::io::Write;
//! use ocikit_codec::compression::Compression;
//! use ocikit_codec::writer::{LayerOptions, LayerWriter};
//! use ocikit_digest::Digest;
//!
//! let tar = b"pretend this is a tar stream".repeat(100);
//! let mut writer = LayerWriter::new(Vec::new(), LayerOptions::new(Compression::Gzip))?;
//! writer.write_all(&tar)?;
//! let (blob, info) = writer.finish()?;
//!
//! assert_eq!(info.media_type, "application/vnd.oci.image.layer.v1.tar+gzip");
//! assert_eq!(info.digest, Digest::sha256(&blob));
//! assert_eq!(info.size, blob.len() as u64);
//! assert_eq!(info.diff_id, Digest::sha256(&tar));
//! assert_eq!(info.uncompressed_size, tar.len() as u64);
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::io::{self, Read, Write};

use ocikit_digest::media_type::oci_layer_type;
use ocikit_digest::{Digest, DigestWriter, Hasher};

use crate::apply::check_tar;
use crate::compression::{
    self, Compression, DEFAULT_GZIP_BLOCK_SIZE, Decoder, Encoder, MAGIC_LEN, error_from_io_as,
    sniff,
};
use crate::{Error, Limits, Result};

/// How [`LayerWriter`] compresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LayerOptions {
    /// The compression (default gzip, the most widely supported).
    pub compression: Compression,
    /// The level (`None`: 6 for gzip, 3 for zstd); clamped to the codec's range.
    pub level: Option<i32>,
    /// Worker threads for compression (default: the available parallelism; 0 compresses
    /// on the writing thread). The gzip output is the same whatever the number; the zstd
    /// output is the same for any number from 1 up.
    pub threads: usize,
    /// The input block size of the parallel gzip encoder (default
    /// [`DEFAULT_GZIP_BLOCK_SIZE`], 1 MiB; clamped to 1 KiB - 64 MiB). It changes the output
    /// bytes: keep the default for reproducible layers.
    pub gzip_block_size: usize,
}

impl Default for LayerOptions {
    fn default() -> LayerOptions {
        LayerOptions::new(Compression::Gzip)
    }
}

impl LayerOptions {
    /// Options for `compression` at its default level, on all available cores.
    pub fn new(compression: Compression) -> LayerOptions {
        LayerOptions {
            compression,
            level: None,
            threads: std::thread::available_parallelism().map_or(1, usize::from),
            gzip_block_size: DEFAULT_GZIP_BLOCK_SIZE,
        }
    }

    /// These options with another level.
    pub fn with_level(mut self, level: i32) -> LayerOptions {
        self.level = Some(level);
        self
    }

    /// These options with another number of worker threads.
    pub fn with_threads(mut self, threads: usize) -> LayerOptions {
        self.threads = threads;
        self
    }

    /// These options with another gzip block size.
    pub fn with_gzip_block_size(mut self, bytes: usize) -> LayerOptions {
        self.gzip_block_size = bytes;
        self
    }
}

/// What [`LayerWriter::finish`] learned about the layer it wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LayerInfo {
    /// The OCI layer media type for the compression (`application/vnd.oci.image.layer.v1.tar`,
    /// `...+gzip` or `...+zstd`).
    pub media_type: &'static str,
    /// SHA-256 of the blob (the compressed bytes): the descriptor's digest.
    pub digest: Digest,
    /// Size of the blob in bytes: the descriptor's size.
    pub size: u64,
    /// SHA-256 of the uncompressed tar stream: the image config's `rootfs.diff_ids` entry.
    pub diff_id: Digest,
    /// Size of the uncompressed tar stream in bytes.
    pub uncompressed_size: u64,
}

/// A [`Write`] that takes an uncompressed tar stream, compresses it into `W`, and returns
/// the layer's [`LayerInfo`] from [`LayerWriter::finish`], all in one pass.
///
/// Write errors are [`io::Error`]s; [`crate::compression::error_from_io`] takes this crate's
/// [`Error`] out of them. After a failed write the layer is incomplete: drop the writer.
pub struct LayerWriter<W: Write> {
    encoder: Encoder<DigestWriter<W>>,
    /// Hashes the uncompressed stream; `None` when it is not compressed (the blob digest
    /// is then the diffID).
    diff: Option<Hasher>,
    uncompressed: u64,
    media_type: &'static str,
}

impl<W: Write> std::fmt::Debug for LayerWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LayerWriter")
            .field("media_type", &self.media_type)
            .field("uncompressed", &self.uncompressed)
            .finish_non_exhaustive()
    }
}

impl<W: Write> LayerWriter<W> {
    /// A writer that compresses into `writer` as `options` say.
    pub fn new(writer: W, options: LayerOptions) -> Result<LayerWriter<W>> {
        let compression = options.compression;
        let mut encoder = Encoder::new(DigestWriter::sha256(writer), compression, options.level)?;
        let threads = match compression {
            // zstd's output is the same for any number of workers from 1 up (and differs
            // without workers): keep layers reproducible across machines.
            Compression::Zstd => options.threads.max(1),
            _ => options.threads,
        };
        encoder.multithread(threads)?;
        encoder.set_gzip_block_size(options.gzip_block_size);
        Ok(LayerWriter {
            encoder,
            diff: (compression != Compression::None).then(Hasher::sha256),
            uncompressed: 0,
            media_type: oci_layer_type(compression),
        })
    }

    /// Writes the layer for the tar stream `tar` into `writer` and returns both.
    ///
    /// Errors reading `tar` are [`Error::Io`] with operation `"read"`; errors writing are
    /// [`Error::Io`] with operation `"write"`.
    pub fn from_reader(
        mut tar: impl Read,
        writer: W,
        options: LayerOptions,
    ) -> Result<(W, LayerInfo)> {
        let mut layer = LayerWriter::new(writer, options)?;
        let mut buf = vec![0u8; 256 << 10];
        loop {
            let n = match tar.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io("read", None, e)),
            };
            layer
                .write_all(&buf[..n])
                .map_err(|e| error_from_io_as(e, "write"))?;
        }
        layer.finish()
    }

    /// Writes the layer for a tar *file* as users hand one over (`ocikit build`, `crane
    /// append -f`): an uncompressed, gzip- or zstd-compressed tar, told apart by its magic
    /// bytes. Compressed files are decompressed within `limits`; the layer holds the tar's
    /// bytes, compressed as `options` say, and its diffID is that of the uncompressed tar.
    ///
    /// The tar is read with the applier's strict reader as it streams through (headers,
    /// checksums, extension records, framing; entry names are not judged), so that a layer
    /// written here is one that unpacking can read. On any error the bytes written to
    /// `writer` so far are not a layer: discard them.
    ///
    /// ```
    /// # #[cfg(feature = "gzip")] {
    /// use ocikit_codec::Error;
    /// use ocikit_codec::compression::Compression;
    /// use ocikit_codec::writer::{LayerOptions, LayerWriter};
    /// use ocikit_codec::Limits;
    ///
    /// let options = LayerOptions::new(Compression::Gzip);
    /// let refused = LayerWriter::from_tar_file(&b"garbage"[..], Vec::new(), options, Limits::default());
    /// assert!(matches!(refused, Err(Error::NotTar { compression: "uncompressed", .. })));
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`Error::NotTar`] when the (decompressed) file does not start with a tar header;
    /// [`Error::Corrupt`] for a truncated or corrupt tar, gzip or zstd stream;
    /// [`Error::InvalidEntry`] for headers the strict reader refuses;
    /// [`Error::LimitExceeded`] past `limits`; [`Error::Io`] for errors reading the file
    /// (operation `"read"`) or writing the layer (operation `"write"`).
    pub fn from_tar_file(
        mut file: impl Read,
        writer: W,
        options: LayerOptions,
        limits: Limits,
    ) -> Result<(W, LayerInfo)> {
        let mut prefix = [0u8; MAGIC_LEN];
        let mut have = 0;
        while have < MAGIC_LEN {
            match file.read(&mut prefix[have..]) {
                Ok(0) => break,
                Ok(n) => have += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io("read", None, e)),
            }
        }
        let detected = sniff(&prefix[..have]);
        let source = io::Cursor::new(prefix).take(have as u64).chain(file);
        let tar: Box<dyn Read + '_> = match detected {
            Compression::Gzip | Compression::Zstd => {
                Box::new(Decoder::new(source, detected, limits))
            }
            _ => Box::new(source),
        };
        let mut layer = LayerWriter::new(writer, options)?;
        let mut failed = None;
        let tee = Tee {
            inner: tar,
            layer: &mut layer,
            failed: &mut failed,
        };
        let checked = check_tar(tee, limits, compression::name(detected));
        if let Some(write_error) = failed {
            return Err(write_error);
        }
        checked?;
        layer.finish()
    }

    /// Uncompressed bytes written so far.
    pub fn uncompressed_size(&self) -> u64 {
        self.uncompressed
    }

    /// The media type the layer will have.
    pub fn media_type(&self) -> &'static str {
        self.media_type
    }

    /// The inner writer. Compressed bytes may still be buffered in the encoder.
    pub fn get_ref(&self) -> &W {
        self.encoder.get_ref().get_ref()
    }

    /// Ends the compressed stream, flushes, and returns the inner writer and the layer's
    /// [`LayerInfo`].
    pub fn finish(self) -> Result<(W, LayerInfo)> {
        let LayerWriter {
            encoder,
            diff,
            uncompressed,
            media_type,
        } = self;
        let (writer, digest, size) = encoder.finish()?.finish();
        let diff_id = diff.map_or_else(|| digest.clone(), Hasher::finish);
        Ok((
            writer,
            LayerInfo {
                media_type,
                digest,
                size,
                diff_id,
                uncompressed_size: uncompressed,
            },
        ))
    }
}

impl<W: Write> Write for LayerWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.encoder.write(buf)?;
        let accepted = buf.get(..n).unwrap_or(buf);
        if let Some(diff) = &mut self.diff {
            diff.update(accepted);
        }
        self.uncompressed += accepted.len() as u64;
        Ok(n)
    }

    /// Flushes the compressed bytes written out so far. Input still inside the compressor
    /// stays there, so that flushing never changes the layer's bytes.
    fn flush(&mut self) -> io::Result<()> {
        match self.encoder.compression() {
            Compression::Gzip | Compression::None => self.encoder.flush(),
            // A zstd flush would end a block early and change the output.
            _ => self.encoder.get_mut().flush(),
        }
    }
}

/// A reader that writes everything it reads into the layer.
struct Tee<'a, R, W: Write> {
    inner: R,
    layer: &'a mut LayerWriter<W>,
    failed: &'a mut Option<Error>,
}

impl<R: Read, W: Write> Read for Tee<'_, R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Err(e) = self.layer.write_all(buf.get(..n).unwrap_or(buf)) {
            let message = e.to_string();
            *self.failed = Some(error_from_io_as(e, "write"));
            return Err(io::Error::other(message));
        }
        Ok(n)
    }
}
