//! Writing one stored blob out, verified on the way.

use std::path::Path;

use futures::StreamExt;
use ocikit_digest::{Digest, Hasher};
use ocikit_layout::Layout;
use ocikit_store::StoreExt;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::error::{Error, Result};

/// Streams the blob `digest` of `layout` (a layout at `path`, named in errors) into `out`,
/// hashing it on the way, and returns its size. The bytes go out as they are read, so a
/// blob that does not match its digest is reported ([`Error::CorruptBlob`]) after they
/// went: what tells is the result, as with `sha256sum -c`. A digest whose algorithm ocikit
/// cannot compute is refused before anything is written ([`Error::Unverifiable`]).
pub async fn write_blob<W: AsyncWrite + Unpin>(
    layout: &Layout,
    path: &Path,
    digest: &Digest,
    out: &mut W,
) -> Result<u64> {
    let mut hasher = Hasher::new(digest.algorithm()).map_err(|source| Error::Unverifiable {
        digest: digest.clone(),
        source,
    })?;
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
    let mut stream = blob.into_stream();
    let mut written = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        hasher.update(&chunk);
        written += chunk.len() as u64;
        out.write_all(&chunk)
            .await
            .map_err(|source| Error::Output { source })?;
    }
    out.flush()
        .await
        .map_err(|source| Error::Output { source })?;
    let actual = hasher.finish();
    if written != size || actual != *digest {
        return Err(Error::CorruptBlob {
            digest: digest.clone(),
            written,
            actual,
        });
    }
    Ok(written)
}
