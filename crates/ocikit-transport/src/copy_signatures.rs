//! Cosign signatures that travel with a [`copy`](crate::copy) (see
//! [`CopyOptions::with_signatures`]): the signature manifest tagged `sha256-<hex>.sig`
//! beside an image whose digest is `sha256:<hex>`, in a registry repository or a layout,
//! copied under the same tag beside the copied image. Each is itself copied with
//! [`copy`](crate::copy) (every blob verified, what the destination has skipped; within one
//! registry, mounted), as [`sync`](crate::sync) copies the attachments it finds.

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;

use ocikit_digest::media_type;
use ocikit_digest::oci_spec::image::Descriptor;

use crate::copy::{CopiedImage, CopyOptions, CopyReport, copy};
use crate::error::{Error, Operation, Result};
use crate::location::{Location, Selector};
use crate::open::open_layout;

/// The tag cosign keeps the signatures of the image with `digest` (`sha256:<hex>`) under:
/// `sha256-<hex>.sig`.
pub(crate) fn signature_tag(digest: &str) -> String {
    format!("{}.sig", digest.replacen(':', "-", 1))
}

/// Copies the signature manifests of `images` (as the destination holds them) that the
/// source has from `source` to `destination`; how many were copied. Between locations that
/// keep none (archives), or from a whole layout (its signature tags were copied with its
/// images), nothing.
pub(crate) async fn carry(
    source: &Location,
    destination: &Location,
    images: &[CopiedImage],
    options: &CopyOptions,
) -> Result<usize> {
    let whole_layout = matches!(source, Location::Oci { selector: None, .. });
    if whole_layout || at_tag(source, "x").is_none() || at_tag(destination, "x").is_none() {
        return Ok(0);
    }
    let digests: BTreeSet<String> = images.iter().map(|i| i.root.digest().to_string()).collect();
    let signature_options = options.for_signatures();
    let mut copied = 0;
    for digest in digests {
        let tag = signature_tag(&digest);
        let (Some(from), Some(to)) = (at_tag(source, &tag), at_tag(destination, &tag)) else {
            continue;
        };
        if !has_tag(&from, &tag, options).await? {
            continue;
        }
        boxed_copy(&from, &to, &signature_options).await?;
        copied += 1;
    }
    Ok(copied)
}

/// Refuses ([`Error::SignaturesInvalidated`]) a copy that rewrites (`how`: "recompressed to
/// zstd", "converted to v2s2") the images `roots` of `source` when one of them has
/// signatures there that the copy would carry: its copy gets a new digest, which none of
/// them vouches for (as skopeo refuses to modify a signed image's manifest). Nothing to
/// check when the signatures are left behind
/// ([`CopyOptions::with_signatures`]`(false)`) or the source keeps none (archives). For a
/// whole layout (`oci:DIR`), its images' signatures are among `source_tags`, the tags of
/// the images the copy takes.
pub(crate) async fn refuse_rewrite(
    source: &Location,
    roots: &[&Descriptor],
    source_tags: &[&str],
    how: &str,
    options: &CopyOptions,
) -> Result<()> {
    if !options.carries_signatures() {
        return Ok(());
    }
    let whole_layout = matches!(source, Location::Oci { selector: None, .. });
    for root in roots {
        let digest = root.digest().to_string();
        let tag = signature_tag(&digest);
        let signed = if whole_layout {
            source_tags.contains(&tag.as_str())
        } else {
            match at_tag(source, &tag) {
                Some(from) => has_tag(&from, &tag, options).await?,
                None => false,
            }
        };
        if signed {
            return Err(Error::SignaturesInvalidated {
                location: source.to_string(),
                digest,
                signatures: tag,
                how: how.to_string(),
            });
        }
    }
    Ok(())
}

/// [`refuse_rewrite`] for a registry image, before anything is pulled: the manifest its
/// selector names is fetched (verified) and refused if it is signed. An index is left to the
/// check once the image is staged, where the platform copied from it is known (its own
/// signatures are not the index's). Other sources are read without a copy, or keep no
/// signatures: nothing to do here.
pub(crate) async fn refuse_rewrite_early(
    source: &Location,
    how: &str,
    options: &CopyOptions,
) -> Result<()> {
    let Location::Docker {
        registry,
        repository,
        selector,
        ..
    } = source
    else {
        return Ok(());
    };
    if !options.carries_signatures() {
        return Ok(());
    }
    let client = options.source_registry().client(registry)?;
    let (root, _) = client
        .get_manifest(repository, &selector.reference())
        .await
        .map_err(|err| Error::Registry {
            operation: Operation::ReadManifest,
            location: source.to_string(),
            source: err,
        })?;
    if media_type::is_index_like(root.media_type().as_ref()) {
        return Ok(());
    }
    refuse_rewrite(source, &[&root], &[], how, options).await
}

/// [`copy`] behind a pointer: a copy copies its signatures with a copy.
fn boxed_copy<'a>(
    source: &'a Location,
    destination: &'a Location,
    options: &'a CopyOptions,
) -> Pin<Box<dyn Future<Output = Result<CopyReport>> + Send + 'a>> {
    Box::pin(copy(source, destination, options))
}

/// `location`'s repository or layout, with the image named `tag` there; `None` for
/// archives, which keep no signatures.
fn at_tag(location: &Location, tag: &str) -> Option<Location> {
    match location {
        Location::Docker {
            registry,
            repository,
            written,
            ..
        } => Some(Location::Docker {
            registry: registry.clone(),
            repository: repository.clone(),
            selector: Selector::Tag(tag.to_string()),
            written: format!("{}:{tag}", without_selector(written)),
        }),
        Location::Oci { path, .. } => Some(Location::Oci {
            path: path.clone(),
            selector: Some(Selector::Tag(tag.to_string())),
        }),
        Location::OciArchive { .. } | Location::DockerArchive { .. } => None,
    }
}

/// Whether the source location (a repository or a layout) holds `tag`.
async fn has_tag(location: &Location, tag: &str, options: &CopyOptions) -> Result<bool> {
    match location {
        Location::Docker {
            registry,
            repository,
            ..
        } => {
            let client = options.source_registry().client(registry)?;
            match client.get_manifest(repository, tag).await {
                Ok(_) => Ok(true),
                Err(ocikit_client::Error::NotFound { .. }) => Ok(false),
                Err(source) => Err(Error::Registry {
                    operation: Operation::ReadManifest,
                    location: location.to_string(),
                    source,
                }),
            }
        }
        Location::Oci { path, .. } => {
            let layout = open_layout(path).await?;
            Ok(layout.index().await?.find(tag).is_some())
        }
        Location::OciArchive { .. } | Location::DockerArchive { .. } => Ok(false),
    }
}

/// A written registry reference without its `:TAG` or `@DIGEST`.
pub(crate) fn without_selector(written: &str) -> &str {
    if let Some((name, _)) = written.split_once('@') {
        return name;
    }
    let last = written.rfind('/').map_or(0, |slash| slash + 1);
    match written[last..].find(':') {
        Some(colon) => &written[..last + colon],
        None => written,
    }
}

#[cfg(test)]
mod tests {
    use super::{signature_tag, without_selector};

    #[test]
    fn a_written_reference_loses_its_tag_or_digest_not_its_port() {
        assert_eq!(
            without_selector("localhost:5000/app:v1"),
            "localhost:5000/app"
        );
        assert_eq!(without_selector("localhost:5000/app"), "localhost:5000/app");
        assert_eq!(
            without_selector("localhost:5000/team/app@sha256:abc"),
            "localhost:5000/team/app"
        );
        assert_eq!(without_selector("alpine:3"), "alpine");
    }

    #[test]
    fn the_signature_tag_is_cosigns() {
        assert_eq!(signature_tag("sha256:abc"), "sha256-abc.sig");
    }
}
