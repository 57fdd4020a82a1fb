//! [`mutate`]: `ocikit mutate`, an image's config and manifest annotations changed, its
//! layers untouched, from any location to any other.

use std::time::SystemTime;

use ocikit_layout::{ConfigChanges, PlatformQuery};

use super::{EditOptions, EditReport, edit_image};
use crate::error::{Error, Result};
use crate::location::Location;

/// How to [`mutate`]: [`EditOptions`]. Its platform picks the image of an index to change
/// and, for a source that is one image, is the platform set in its config.
pub type MutateOptions = EditOptions;

/// What a [`mutate`] did: [`EditReport`].
pub type MutateReport = EditReport;

/// Changes the config (environment, entrypoint, command, labels, user, working directory,
/// exposed ports, platform, creation time, author) and the manifest annotations of the
/// image `source` names, and writes the new image to `destination`, tagged as it says; the
/// layers, diffIDs and history stay as they are (no history entry is added, as crane does).
///
/// `changes` are checked first ([`Error::InvalidChanges`]), before anything is read or
/// written. An index source needs a platform in `options` ([`Error::EditIndex`]
/// otherwise): that image is changed and written as a single image (as `crane mutate
/// --platform` does; crane picks linux/amd64 when none is given). For a source that is one
/// image, the platform of `options` (if any) is set in its config, as
/// [`ConfigChanges::platform`] would. Within one registry only the new config and manifest
/// are uploaded, the layers mounted or found there; see [`edit_image`](crate::edit_image) for every pair of
/// locations.
///
/// ```
/// use ocikit_layout::{ConfigChanges, ImageBuilder, LayerSpec, Layout};
/// use ocikit_store::FsStore;
/// use ocikit_transport::{Location, MutateOptions, mutate};
///
/// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
/// let dir = tempfile::tempdir()?;
/// let layout = Layout::create(FsStore::open(dir.path()).await?).await?;
/// let mut image = ImageBuilder::new(&layout);
/// image.platform(&ocikit_digest::platform::parse("linux/amd64")?).cmd(["/bin/sh"]);
/// image.write_and_tag("v1").await?;
///
/// let source: Location = format!("oci:{}:v1", dir.path().display()).parse()?;
/// let destination: Location = format!("oci:{}:v2", dir.path().display()).parse()?;
/// let changes = ConfigChanges::new().env("MODE", "production").label("team", "infra");
/// let report = mutate(&source, &destination, &changes, &MutateOptions::new()).await?;
/// assert_eq!(layout.resolve("v2").await?.digest().to_string(), report.digest);
/// assert_ne!(report.digest, report.source_digest);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub async fn mutate(
    source: &Location,
    destination: &Location,
    changes: &ConfigChanges,
    options: &MutateOptions,
) -> Result<MutateReport> {
    changes
        .check()
        .map_err(|source| Error::InvalidChanges { source })?;
    edit_image(source, destination, options, |image| {
        let mut changes = changes.clone();
        if !image.from_index()
            && let Some(platform) = options.platform().and_then(PlatformQuery::platform)
        {
            changes.platform = Some(platform.clone());
        }
        let refuse = |source| Error::InvalidChanges { source };
        changes.apply_to_config(&mut image.config).map_err(refuse)?;
        changes
            .apply_to_annotations(&mut image.annotations)
            .map_err(refuse)?;
        Ok(())
    })
    .await
}

/// Parses a creation time as RFC 3339 (`2024-05-01T12:00:00Z`, `2024-05-01T14:00:00+02:00`),
/// as `ocikit mutate --created` takes it; anything else is [`Error::InvalidTime`].
pub fn parse_created(text: &str) -> Result<SystemTime> {
    let time = chrono::DateTime::parse_from_rfc3339(text).map_err(|source| Error::InvalidTime {
        text: text.to_string(),
        source,
    })?;
    let seconds = time.timestamp();
    let nanos = time.timestamp_subsec_nanos();
    let since = |s: u64| std::time::Duration::new(s, nanos);
    let at = if seconds >= 0 {
        SystemTime::UNIX_EPOCH.checked_add(since(seconds.unsigned_abs()))
    } else {
        SystemTime::UNIX_EPOCH
            .checked_sub(std::time::Duration::from_secs(seconds.unsigned_abs()))
            .and_then(|t| t.checked_add(std::time::Duration::from_nanos(u64::from(nanos))))
    };
    at.ok_or_else(|| Error::TimeOutOfRange {
        text: text.to_string(),
    })
}
