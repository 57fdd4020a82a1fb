//! Writing one stored blob out, verified on the way.

use std::path::Path;

use ocikit_digest::{AsyncVerifyingReader, Digest};
use ocikit_layout::Layout;
use ocikit_store::StoreExt;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::error::{Error, Result};
use crate::location::Location;
use crate::open::open_layout;

/// The buffer a blob is copied through.
const CHUNK: usize = 64 * 1024;

/// Streams the blob `digest` of `layout` (a layout at `path`, named in errors) into `out`
/// through ocikit-digest's verifying reader, and returns its size. The bytes go out as they
/// are read, so a blob that does not match its digest is reported ([`Error::CorruptBlob`])
/// after they went: what tells is the result, as with `sha256sum -c`. A digest whose
/// algorithm ocikit cannot compute is refused before anything is written
/// ([`Error::Unverifiable`]).
pub async fn write_blob<W: AsyncWrite + Unpin>(
    layout: &Layout,
    path: &Path,
    digest: &Digest,
    out: &mut W,
) -> Result<u64> {
    let blob = layout
        .store()
        .open(digest, None)
        .await
        .map_err(|source| Error::NoBlob {
            digest: digest.clone(),
            path: path.to_path_buf(),
            source,
        })?;
    let size = blob.size();
    let mut reader =
        AsyncVerifyingReader::new(blob.into_reader(), digest.clone(), size).map_err(|source| {
            Error::Unverifiable {
                digest: digest.clone(),
                source,
            }
        })?;
    let mut buffer = vec![0u8; CHUNK];
    loop {
        let n = match reader.read(&mut buffer).await {
            Ok(n) => n,
            Err(err) => {
                let written = reader.bytes_read();
                return Err(match mismatch(err) {
                    Ok(source) => Error::CorruptBlob {
                        digest: digest.clone(),
                        written,
                        source,
                    },
                    Err(source) => Error::ReadBlob {
                        digest: digest.clone(),
                        source,
                    },
                });
            }
        };
        if n == 0 {
            break;
        }
        out.write_all(&buffer[..n])
            .await
            .map_err(|source| Error::Output { source })?;
    }
    out.flush()
        .await
        .map_err(|source| Error::Output { source })?;
    Ok(reader.bytes_read())
}

/// The verifying reader's digest or size mismatch inside `err`, else `err` itself (the
/// store failed to read).
fn mismatch(err: std::io::Error) -> Result<ocikit_digest::Error, std::io::Error> {
    let is_mismatch = err
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<ocikit_digest::Error>())
        .is_some_and(|inner| {
            matches!(
                inner,
                ocikit_digest::Error::DigestMismatch { .. }
                    | ocikit_digest::Error::SizeMismatch { .. }
            )
        });
    if !is_mismatch {
        return Err(err);
    }
    match err
        .into_inner()
        .map(|inner| inner.downcast::<ocikit_digest::Error>())
    {
        Some(Ok(inner)) => Ok(*inner),
        Some(Err(other)) => Err(std::io::Error::other(other)),
        None => Err(std::io::Error::other("blob read failed")),
    }
}

/// `ocikit cat`: the blob `digest` of the layout `location` names (`oci:PATH`, no tag or
/// digest: the digest is the argument) written to `out` by [`write_blob`], verified; returns
/// its size. An image location is refused ([`Error::NotALayout`]).
pub async fn cat<W: AsyncWrite + Unpin>(
    location: &Location,
    digest: &Digest,
    out: &mut W,
) -> Result<u64> {
    let path = crate::open::layout_only(location, "cat")?;
    let layout = open_layout(path).await?;
    write_blob(&layout, path, digest, out).await
}
