//! [`sync`]: mirror repositories and tag sets between registries and directories of
//! layouts, as `skopeo sync` does, and incrementally.
//!
//! # Sources ([`SyncSource`])
//! - A registry repository, `HOST[:PORT]/NAME` (skopeo's `--src docker`): every tag, or
//!   those a [`TagSelection`] picks (a list, a regex, a semver range, the newest N), or the
//!   one tag or digest written after the name.
//! - A sync file in skopeo's YAML format ([`SyncFile`], `--src yaml`): registries, how to
//!   reach each (`tls-verify`, `cert-dir`, `credentials`), and their repositories by tag
//!   list, digest, regex or semver range.
//! - A layout, or a directory of layouts (`--src oci`): a directory holding `oci-layout` is
//!   one repository named after the directory; otherwise every layout below it is one,
//!   named by its path under it.
//!
//! # Destinations ([`SyncDestination`])
//! As skopeo names them: a repository `NAME` from `HOST/…/NAME` goes to `DEST/NAME` (the
//! last component only), or with [`SyncOptions::with_scoped`] to `DEST/HOST/…/NAME` (a
//! host's `:PORT` written `_PORT`, since neither a repository component nor an `oci:` path
//! may hold a colon). `DEST` is a registry with an optional repository prefix
//! (`HOST[:PORT][/PREFIX]`, skopeo's `--dest docker`), or a directory of layouts (`--dest
//! oci`): one layout per repository at `DIR/NAME`, holding its tags, which is what skopeo's
//! `--dest oci` writes (`oci:DIR/NAME:TAG`, readable by skopeo and by `ocikit`).
//!
//! # What is copied
//! Each tag (or digest) is one image, copied with [`copy`] (every blob verified, a blob the
//! destination has skipped): from a registry index only this machine's platform unless
//! [`SyncOptions::with_all_platforms`] or [`SyncOptions::with_platform`], as skopeo; from a
//! layout the whole index unless a platform is named; an image named by digest always whole,
//! so that its digest stays. Cosign-style attachments of each image (the tags
//! `sha256-<hex>.sig`, `.att` and `.sbom` of its digest, or of the platform's manifest
//! digest, in the source repository) are copied along unless
//! [`SyncOptions::with_signatures`] turns that off; referrers travel with
//! [`SyncOptions::with_referrers`].
//!
//! Between two registries, each blob streams from the source to the destination in one
//! pass, hashed on the way and never stored here ([`ocikit_client::Client::copy_from`]);
//! the run's copies share one client per registry (connections, tokens) and one
//! [`ocikit_client::BlobLedger`], so that a blob several images share (a base layer) is
//! moved once while the others wait for it, and not asked about again. With referrers
//! along, the images pass through one layout for the run instead (in the system's
//! temporary directory, removed at the end): a blob several images share is fetched from
//! the source once, and the destination is sent only the blobs it lacks. Within one
//! registry reached the same way, the blobs are mounted, never fetched.
//!
//! # Incremental, resumable, and per image
//! Before copying, each image's digest at the source is compared with what the destination
//! tag holds (a manifest `HEAD` on each side, both at once, nothing written; an index at
//! the source is read too, for its entries): an image
//! already there is [`SyncOutcome::UpToDate`] and costs no blob and no write, so a second
//! run with nothing changed writes nothing. From an index without `--all`, the destination holding the
//! index itself or the manifest of the wanted platform from it counts as up to date. A run
//! that was interrupted resumes where it stopped: copied images are up to date, and the
//! blobs a half-copied image left at the destination are skipped. One image failing does
//! not stop the others: the [`SyncReport`] lists every image's outcome, the failures with
//! their error. With [`SyncOptions::with_dry_run`] the plan (what would be copied, what is
//! up to date) is reported and nothing is written.
//!
//! Images are copied [`SyncOptions::with_jobs`] at a time (each copy moves its blobs with
//! the copy's own concurrency), and one [`SyncProgress`] sink receives every image's events.

mod file;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::StreamExt;
use ocikit_client::{BlobLedger, Client, CopyFromOptions};
use ocikit_digest::oci_spec::image::{Descriptor, ImageIndex, Platform};
use ocikit_digest::{Digest, media_type};
use ocikit_layout::{Document, Event, Layout, PlatformQuery};

use crate::access::RegistryOptions;
use crate::copy::{CopiedImage, CopyOptions, CopyReport, ImageName, copy};
use crate::error::{Error, Operation, Result};
use crate::location::{Location, Selector};
use crate::progress::{Progress, Stage};
use crate::tag_select::TagSelection;

pub use file::{SyncFile, SyncFileError, SyncFileErrorKind};

/// The suffixes of cosign's attachment tags (`sha256-<hex>.sig`, `.att`, `.sbom`).
const ATTACHMENT_SUFFIXES: [&str; 3] = ["sig", "att", "sbom"];

/// How deep [`SyncSource::layouts`] looks for layouts below a directory.
const MAX_LAYOUT_DEPTH: usize = 8;

/// What to mirror: see the [module docs](self).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum SyncSource {
    /// A registry repository, and the tags (and digests) to take from it.
    Repository {
        /// `HOST[:PORT]`.
        registry: String,
        /// The repository as the API names it.
        repository: String,
        /// Which tags.
        tags: TagSelection,
        /// Images named by digest, taken as well.
        digests: Vec<Digest>,
    },
    /// A layout, or a directory of layouts, and the tags to take from each.
    Layouts {
        /// The directory.
        path: PathBuf,
        /// Which tags.
        tags: TagSelection,
    },
    /// A sync file's registries and repositories.
    File(SyncFile),
}

impl SyncSource {
    /// A registry repository written as skopeo's `--src docker` takes it:
    /// `HOST[:PORT]/NAME` (every tag `tags` selects), or `HOST[:PORT]/NAME:TAG` or
    /// `…@DIGEST` (that one image; `tags` still narrows a tag). A leading `docker://` is
    /// accepted.
    pub fn repository(text: &str, tags: TagSelection) -> Result<SyncSource> {
        let text = text.strip_prefix("docker://").unwrap_or(text);
        let location: Location = format!("docker://{text}").parse()?;
        let Location::Docker {
            registry,
            repository,
            selector,
            ..
        } = location
        else {
            return Err(Error::SyncSource {
                source_text: text.to_string(),
                reason: "write it HOST[:PORT]/NAME[:TAG|@DIGEST]",
            });
        };
        let last = text.rsplit('/').next().unwrap_or(text);
        let (tags, digests) = match selector {
            Selector::Digest(digest) => {
                (TagSelection::all().tags(Vec::<String>::new()), vec![digest])
            }
            Selector::Tag(tag) if last.contains(':') => (tags.tags([tag]), Vec::new()),
            Selector::Tag(_) => (tags, Vec::new()),
        };
        Ok(SyncSource::Repository {
            registry,
            repository,
            tags,
            digests,
        })
    }

    /// A layout or a directory of layouts (skopeo's `--src oci`), and the tags to take.
    pub fn layouts(path: impl Into<PathBuf>, tags: TagSelection) -> SyncSource {
        SyncSource::Layouts {
            path: path.into(),
            tags,
        }
    }

    /// The sync file at `path` (skopeo's `--src yaml`), read and checked
    /// ([`Error::SyncFile`] names what is wrong).
    pub fn file(path: &Path) -> Result<SyncSource> {
        Ok(SyncSource::File(SyncFile::load(path)?))
    }
}

/// Where the mirror goes: see the [module docs](self).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SyncDestination {
    /// A registry, and a repository prefix (empty for none).
    Registry {
        /// `HOST[:PORT]`.
        registry: String,
        /// The repositories' prefix, without a trailing `/`.
        prefix: String,
    },
    /// A directory of layouts, one per repository.
    Layouts {
        /// The directory.
        path: PathBuf,
    },
}

impl SyncDestination {
    /// A registry written as skopeo's `--dest docker` takes it: `HOST[:PORT][/PREFIX]` (a
    /// leading `docker://` and a trailing `/` are accepted). A tag or digest, or a first
    /// component that is no registry host, is [`Error::SyncDestination`].
    pub fn registry(text: &str) -> Result<SyncDestination> {
        let written = text.strip_prefix("docker://").unwrap_or(text);
        let trimmed = written.trim_end_matches('/');
        let refuse = |reason: &'static str| Error::SyncDestination {
            destination: text.to_string(),
            reason,
        };
        let (host, prefix) = trimmed.split_once('/').unwrap_or((trimmed, ""));
        if host.is_empty() {
            return Err(refuse("it names no registry (HOST[:PORT][/PREFIX])"));
        }
        if prefix.contains(':') || prefix.contains('@') {
            return Err(refuse(
                "a destination is a registry and a repository prefix, without a tag or digest",
            ));
        }
        // The prefix and a name must read back as a repository of that host.
        let probe = if prefix.is_empty() {
            format!("docker://{host}/probe")
        } else {
            format!("docker://{host}/{prefix}/probe")
        };
        match probe.parse::<Location>() {
            Ok(Location::Docker { registry, .. }) if registry == host => {}
            Ok(_) => {
                return Err(refuse(
                    "its first component is no registry host (write HOST.DOMAIN, HOST:PORT or \
                     localhost)",
                ));
            }
            Err(e) => return Err(e.into()),
        }
        Ok(SyncDestination::Registry {
            registry: host.to_string(),
            prefix: prefix.to_string(),
        })
    }

    /// A directory of layouts (skopeo's `--dest oci`), made if missing.
    pub fn layouts(path: impl Into<PathBuf>) -> SyncDestination {
        SyncDestination::Layouts { path: path.into() }
    }
}

/// One event of a [`sync`], delivered to a [`SyncProgress`] sink.
#[derive(Debug)]
#[non_exhaustive]
pub enum SyncEvent<'a> {
    /// The plan is made: `images` images, `to_copy` of them to copy (the rest are up to
    /// date, or failed before copying).
    Planned {
        /// Images planned.
        images: usize,
        /// Images to copy.
        to_copy: usize,
    },
    /// The copy of image number `image` (its index in [`SyncReport::entries`]) began.
    ImageStarted {
        /// The image's number.
        image: usize,
        /// Its entry (the outcome not known yet: [`SyncOutcome::WouldCopy`]).
        entry: &'a SyncEntry,
    },
    /// A blob event of image number `image`'s copy.
    Blob {
        /// The image's number.
        image: usize,
        /// The copy's stage.
        stage: Stage,
        /// The event.
        event: &'a Event,
    },
    /// Image number `image` is done (copied, or failed).
    ImageDone {
        /// The image's number.
        image: usize,
        /// Its entry, with the outcome.
        entry: &'a SyncEntry,
    },
}

type SyncSink = Arc<dyn Fn(&SyncEvent<'_>) + Send + Sync>;

/// A sink for a sync's events, cheap to clone. It is called from whatever task does the
/// work, so it must be quick and must not block.
#[derive(Clone, Default)]
pub struct SyncProgress(Option<SyncSink>);

impl SyncProgress {
    /// A sink that calls `f` with every event.
    pub fn new(f: impl Fn(&SyncEvent<'_>) + Send + Sync + 'static) -> SyncProgress {
        SyncProgress(Some(Arc::new(f)))
    }

    /// A sink that discards every event.
    pub fn none() -> SyncProgress {
        SyncProgress(None)
    }

    fn emit(&self, event: &SyncEvent<'_>) {
        if let Some(f) = &self.0 {
            f(event);
        }
    }

    /// The copy's sink for image number `image`.
    fn for_image(&self, image: usize) -> Progress {
        match &self.0 {
            None => Progress::none(),
            Some(f) => {
                let f = Arc::clone(f);
                Progress::new(move |stage, event| {
                    f(&SyncEvent::Blob {
                        image,
                        stage,
                        event,
                    })
                })
            }
        }
    }
}

impl fmt::Debug for SyncProgress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "SyncProgress(..)"
        } else {
            "SyncProgress(none)"
        })
    }
}

/// How to [`sync`].
#[derive(Clone, Debug)]
pub struct SyncOptions {
    source: RegistryOptions,
    destination: RegistryOptions,
    scoped: bool,
    all_platforms: bool,
    platform: Option<PlatformQuery>,
    dry_run: bool,
    jobs: usize,
    referrers: bool,
    signatures: bool,
    progress: SyncProgress,
}

impl Default for SyncOptions {
    fn default() -> SyncOptions {
        SyncOptions {
            source: RegistryOptions::new(),
            destination: RegistryOptions::new(),
            scoped: false,
            all_platforms: false,
            platform: None,
            dry_run: false,
            jobs: 4,
            referrers: false,
            signatures: true,
            progress: SyncProgress::none(),
        }
    }
}

impl SyncOptions {
    /// TLS verified and stored credentials on both sides, repositories named by their last
    /// component, this machine's platform from a registry index, 4 images at a time,
    /// cosign attachments along, referrers left behind, no progress.
    pub fn new() -> SyncOptions {
        SyncOptions::default()
    }

    /// How to reach the source registries (a sync file's `tls-verify`, `cert-dir` and
    /// `credentials` override it per registry).
    pub fn with_source(mut self, options: RegistryOptions) -> SyncOptions {
        self.source = options;
        self
    }

    /// How to reach the destination registry.
    pub fn with_destination(mut self, options: RegistryOptions) -> SyncOptions {
        self.destination = options;
        self
    }

    /// Names each repository at the destination by its whole source path, host included
    /// (skopeo's `--scoped`), instead of its last component.
    pub fn with_scoped(mut self, on: bool) -> SyncOptions {
        self.scoped = on;
        self
    }

    /// Copies every image of an index (skopeo's `--all`).
    pub fn with_all_platforms(mut self, all: bool) -> SyncOptions {
        self.all_platforms = all;
        self
    }

    /// Copies only this platform's image of an index, from any source.
    pub fn with_platform(mut self, platform: Option<PlatformQuery>) -> SyncOptions {
        self.platform = platform;
        self
    }

    /// Plans only: reads both sides, reports what would be copied and what is up to date,
    /// writes nothing.
    pub fn with_dry_run(mut self, on: bool) -> SyncOptions {
        self.dry_run = on;
        self
    }

    /// How many images are listed, compared and copied at once (at least 1; default 4).
    pub fn with_jobs(mut self, jobs: usize) -> SyncOptions {
        self.jobs = jobs.max(1);
        self
    }

    /// Copies each image's referrers along ([`CopyOptions::with_referrers`]).
    pub fn with_referrers(mut self, on: bool) -> SyncOptions {
        self.referrers = on;
        self
    }

    /// Whether to copy cosign-style attachments (`sha256-<hex>.sig`, `.att`, `.sbom`) of
    /// each image along (default `true`; skopeo's `--remove-signatures` is `false`).
    pub fn with_signatures(mut self, on: bool) -> SyncOptions {
        self.signatures = on;
        self
    }

    /// Where to report progress.
    pub fn with_progress(mut self, progress: SyncProgress) -> SyncOptions {
        self.progress = progress;
        self
    }

    /// The platform asked for, else this machine's.
    fn query(&self) -> PlatformQuery {
        self.platform.clone().unwrap_or_else(PlatformQuery::current)
    }
}

/// What became of one image.
#[derive(Debug)]
#[non_exhaustive]
pub enum SyncOutcome {
    /// Copied; the copy's report.
    Copied(CopyReport),
    /// The destination holds it already: nothing was read beyond the manifests, nothing
    /// written.
    UpToDate,
    /// A dry run's plan: it would be copied.
    WouldCopy,
    /// It could not be listed, compared or copied.
    Failed(Error),
}

impl SyncOutcome {
    /// `copied`, `up-to-date`, `would-copy` or `failed`.
    pub fn as_str(&self) -> &'static str {
        match self {
            SyncOutcome::Copied(_) => "copied",
            SyncOutcome::UpToDate => "up-to-date",
            SyncOutcome::WouldCopy => "would-copy",
            SyncOutcome::Failed(_) => "failed",
        }
    }
}

/// One image of a sync (or one repository that could not be listed).
#[derive(Debug)]
#[non_exhaustive]
pub struct SyncEntry {
    /// The image at the source (a repository or layout when it could not be listed).
    pub source: String,
    /// Where it goes.
    pub destination: String,
    /// Its digest at the source, once known.
    pub digest: Option<String>,
    /// A cosign-style attachment (`sha256-<hex>.sig` …) of another image of the sync.
    pub attachment: bool,
    /// What became of it.
    pub outcome: SyncOutcome,
}

impl serde::Serialize for SyncEntry {
    /// `{source, destination, digest, attachment, status, ...}`: with the copy's counts
    /// (`blobsCopied`, `blobsMounted`, `blobsSkipped`, `bytes`) when copied, the error and
    /// its causes (`error`) when failed.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("source", &self.source)?;
        map.serialize_entry("destination", &self.destination)?;
        map.serialize_entry("digest", &self.digest)?;
        map.serialize_entry("attachment", &self.attachment)?;
        map.serialize_entry("status", self.outcome.as_str())?;
        match &self.outcome {
            SyncOutcome::Copied(report) => {
                map.serialize_entry("blobsCopied", &report.blobs_copied)?;
                map.serialize_entry("blobsMounted", &report.blobs_mounted)?;
                map.serialize_entry("blobsSkipped", &report.blobs_skipped)?;
                map.serialize_entry("bytes", &report.bytes)?;
            }
            SyncOutcome::Failed(error) => map.serialize_entry("error", &chain(error))?,
            SyncOutcome::UpToDate | SyncOutcome::WouldCopy => {}
        }
        map.end()
    }
}

/// An error and its causes, `: `-joined.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        text.push_str(": ");
        text.push_str(&e.to_string());
        cause = e.source();
    }
    text
}

/// What a [`sync`] did (or, for a dry run, would do): one entry per image. First the
/// repositories that could not be listed and the tags asked for that they lack, then the
/// images in the order the source lists them (repository by repository), attachments last.
#[derive(Debug, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct SyncReport {
    /// Whether this was a dry run (nothing written).
    pub dry_run: bool,
    /// Every image, and what became of it.
    pub entries: Vec<SyncEntry>,
}

impl SyncReport {
    /// The entries that failed.
    pub fn failures(&self) -> Vec<&SyncEntry> {
        self.entries
            .iter()
            .filter(|e| matches!(e.outcome, SyncOutcome::Failed(_)))
            .collect()
    }

    /// How many entries have this outcome (by [`SyncOutcome::as_str`]).
    pub fn count(&self, status: &str) -> usize {
        self.entries
            .iter()
            .filter(|e| e.outcome.as_str() == status)
            .count()
    }

    /// Blobs the copies wrote (or had the registry mount) at the destination, over every
    /// image copied.
    pub fn blobs_copied(&self) -> usize {
        self.entries
            .iter()
            .map(|e| match &e.outcome {
                SyncOutcome::Copied(r) => r.blobs_copied + r.blobs_mounted,
                _ => 0,
            })
            .sum()
    }
}

/// Mirrors `source` into `destination`: see the [module docs](self). Errors here are those
/// of the request itself (a destination client that cannot be made, a directory without
/// any layout); everything that goes wrong with one repository or image is its entry's
/// [`SyncOutcome::Failed`], and the others go on.
pub async fn sync(
    source: &SyncSource,
    destination: &SyncDestination,
    options: &SyncOptions,
) -> Result<SyncReport> {
    let repos = repositories(source, options).await?;
    let target = Target::new(destination, options)?;
    let jobs = options.jobs.max(1);
    let mut report = SyncReport {
        dry_run: options.dry_run,
        entries: Vec::new(),
    };

    // List each repository and pick its tags. (The futures are made before they are
    // streamed, here and below, so that no stream holds a closure over borrowed arguments:
    // the future `sync` returns stays `Send`.)
    let lists: Vec<_> = repos.iter().map(|repo| list(repo, &target)).collect();
    let mut listed: Vec<Listed> = futures::stream::iter(lists).buffered(jobs).collect().await;
    let mut items = Vec::new();
    for (repo, listed) in repos.iter().zip(&mut listed) {
        report.entries.append(&mut listed.entries);
        if let Some(found) = &listed.found {
            items.extend(found.selected.iter().cloned().map(|reference| Item {
                repo: repo.clone(),
                reference,
                attachment: false,
            }));
        }
    }

    // Compare each image with the destination, then its attachments.
    let mut checked = check_all(items, &listed, &target, options, jobs).await;
    if options.signatures {
        let mut seen: HashSet<(usize, String)> = checked
            .iter()
            .filter_map(|c| match &c.item.reference {
                Reference::Tag(tag) => Some((c.item.repo.index, tag.clone())),
                Reference::Digest(_) => None,
            })
            .collect();
        let mut attachments = Vec::new();
        for c in &checked {
            let Ok(state) = &c.state else { continue };
            let Some(found) = &listed[c.item.repo.index].found else {
                continue;
            };
            for digest in state.attachment_subjects(c.all) {
                for tag in attachment_tags(&digest) {
                    if found.all_tags.contains(&tag)
                        && seen.insert((c.item.repo.index, tag.clone()))
                    {
                        attachments.push(Item {
                            repo: c.item.repo.clone(),
                            reference: Reference::Tag(tag),
                            attachment: true,
                        });
                    }
                }
            }
        }
        checked.extend(check_all(attachments, &listed, &target, options, jobs).await);
    }

    let to_copy = checked
        .iter()
        .filter(|c| matches!(&c.state, Ok(state) if !state.up_to_date))
        .count();
    let first = report.entries.len();
    let mut copies = Vec::new();
    for c in checked {
        let number = report.entries.len();
        let attachment = c.item.attachment;
        let outcome = match c.state {
            Err(error) => SyncOutcome::Failed(error),
            Ok(state) if state.up_to_date => SyncOutcome::UpToDate,
            Ok(state) => {
                let source_client = listed[c.item.repo.index]
                    .found
                    .as_ref()
                    .and_then(|found| found.client.clone());
                copies.push(Planned {
                    number,
                    item: c.item,
                    source: state.source,
                    destination: state.destination,
                    all: c.all,
                    source_client,
                });
                SyncOutcome::WouldCopy
            }
        };
        report.entries.push(SyncEntry {
            source: c.source_text,
            destination: c.destination_text,
            digest: c.state_digest,
            attachment,
            outcome,
        });
    }
    options.progress.emit(&SyncEvent::Planned {
        images: report.entries.len() - first,
        to_copy,
    });
    if options.dry_run {
        return Ok(report);
    }

    // Copy, `jobs` images at a time; a new layout is made by one copy at a time.
    let locks: HashMap<PathBuf, Arc<futures::lock::Mutex<()>>> = copies
        .iter()
        .filter_map(|planned| match &planned.destination {
            Location::Oci { path, .. } => Some(path.clone()),
            _ => None,
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .map(|path| (path, Arc::default()))
        .collect();
    // Between two registries, blobs stream from one to the other, each moved once for the
    // run (the ledger); with referrers along, images go through one layout for the run
    // instead, so that a blob several images share is fetched once.
    let ledger = BlobLedger::new();
    let relay = if options.referrers && copies.iter().any(|planned| relayed(planned, options)) {
        Some(Relay::new().await?)
    } else {
        None
    };
    let relay = relay.as_ref();
    let entries = &report.entries;
    let results: Vec<(usize, SyncOutcome)> = futures::stream::iter(
        copies
            .into_iter()
            .map(|planned| {
                let (locks, target, ledger) = (&locks, &target, &ledger);
                async move {
                    options.progress.emit(&SyncEvent::ImageStarted {
                        image: planned.number,
                        entry: &entries[planned.number],
                    });
                    (
                        planned.number,
                        copy_one(&planned, locks, relay, (target, ledger), options).await,
                    )
                }
            })
            .collect::<Vec<_>>(),
    )
    .buffer_unordered(jobs)
    .collect()
    .await;
    for (number, outcome) in results {
        report.entries[number].outcome = outcome;
        options.progress.emit(&SyncEvent::ImageDone {
            image: number,
            entry: &report.entries[number],
        });
    }
    Ok(report)
}

/// An image to copy: its number in the report, where from and to, and whether the whole
/// index goes.
struct Planned {
    number: usize,
    item: Item,
    source: Location,
    destination: Location,
    all: bool,
    /// The source's registry client, when it is one (shared by the run's copies).
    source_client: Option<Client>,
}

/// One image's copy.
async fn copy_one(
    planned: &Planned,
    locks: &HashMap<PathBuf, Arc<futures::lock::Mutex<()>>>,
    relay: Option<&Relay>,
    (target, ledger): (&Target, &BlobLedger),
    options: &SyncOptions,
) -> SyncOutcome {
    let Planned {
        number,
        item,
        source,
        destination,
        all,
        ..
    } = planned;
    let (number, all) = (*number, *all);
    let source_access = match &item.repo.origin {
        Origin::Registry { access, .. } => access.clone(),
        Origin::Layout { .. } => options.source.clone(),
    };
    let copy_options = CopyOptions::new()
        .with_source(source_access)
        .with_destination(options.destination.clone())
        .with_platform(if all { None } else { options.platform.clone() })
        .with_all_platforms(all)
        .with_referrers(options.referrers)
        // Attachments are entries of their own here (see `with_signatures`).
        .with_signatures(false)
        .with_progress(options.progress.for_image(number));
    if !options.referrers
        && relayed(planned, options)
        && let (Some(from_client), Some(to_client)) = (&planned.source_client, &target.client)
    {
        // Straight from one registry to the other, each blob once for the run.
        return match stream_image(planned, (from_client, to_client), ledger, options).await {
            Ok(report) => SyncOutcome::Copied(report),
            Err(error) => SyncOutcome::Failed(error),
        };
    }
    if let Some(relay) = relay
        && relayed(planned, options)
    {
        // Into the run's layout (blobs it has are not fetched), then out of it (blobs the
        // destination has are not sent): everything the image is was chosen on the way in.
        let staged = Location::Oci {
            path: relay.path.clone(),
            selector: Some(Selector::Tag(format!("image-{number}"))),
        };
        let out = CopyOptions::new()
            .with_destination(options.destination.clone())
            .with_referrers(options.referrers)
            .with_signatures(false)
            .with_progress(options.progress.for_image(number));
        let copied = match copy(source, &staged, &copy_options).await {
            Ok(_) => copy(&staged, destination, &out).await,
            Err(error) => Err(error),
        };
        return match copied {
            Ok(report) => SyncOutcome::Copied(report),
            Err(error) => SyncOutcome::Failed(error),
        };
    }
    // A layout that is not there yet is made by one copy while the others wait (two copies
    // staging one new layout would collide).
    let _made = match destination {
        Location::Oci { path, .. } if !path.join("oci-layout").exists() => match locks.get(path) {
            Some(lock) => Some(lock.lock().await),
            None => None,
        },
        _ => None,
    };
    match copy(source, destination, &copy_options).await {
        Ok(report) => SyncOutcome::Copied(report),
        Err(error) => SyncOutcome::Failed(error),
    }
}

/// Whether an image goes through the run's [`Relay`]: from one registry to another (within
/// one registry reached the same way, [`copy`] mounts the blobs instead).
fn relayed(planned: &Planned, options: &SyncOptions) -> bool {
    match (&planned.item.repo.origin, &planned.destination) {
        (
            Origin::Registry {
                registry, access, ..
            },
            Location::Docker {
                registry: destination,
                ..
            },
        ) => registry != destination || *access != options.destination,
        _ => false,
    }
}

/// An image from one registry to another, its blobs streamed ([`Client::copy_from`]): the
/// run's clients (their connections and tokens) and its ledger, so that a blob several
/// images share moves once and is not asked about again.
async fn stream_image(
    planned: &Planned,
    (from_client, to_client): (&Client, &Client),
    ledger: &BlobLedger,
    options: &SyncOptions,
) -> Result<CopyReport> {
    let (source, destination) = (&planned.source, &planned.destination);
    let (
        Location::Docker {
            repository: from,
            selector,
            ..
        },
        Location::Docker {
            repository: to,
            selector: target,
            ..
        },
    ) = (source, destination)
    else {
        return Err(Error::SyncSource {
            source_text: source.to_string(),
            reason: "a registry image goes to a registry",
        });
    };
    let copy_options = CopyFromOptions::new()
        .with_platform((!planned.all).then(|| options.query()))
        .with_ledger(ledger.clone())
        .with_progress(
            options
                .progress
                .for_image(planned.number)
                .stage(Stage::Copy),
        );
    let report = to_client
        .copy_from(
            from_client,
            from,
            &selector.reference(),
            to,
            Some(&target.reference()),
            &copy_options,
        )
        .await
        .map_err(|err| Error::CopyWithin {
            source_location: source.to_string(),
            destination: destination.to_string(),
            source: err,
        })?;
    let root = report.root.ok_or_else(|| Error::NoImageReported {
        location: source.to_string(),
    })?;
    let name = match target {
        Selector::Tag(tag) => ImageName::Tag(tag.clone()),
        Selector::Digest(_) => ImageName::ByDigest,
    };
    Ok(CopyReport {
        source: source.to_string(),
        destination: destination.to_string(),
        images: vec![CopiedImage { name, root }],
        blobs: report.blobs,
        bytes: report.total_bytes,
        blobs_copied: report.transferred,
        blobs_mounted: report.mounted,
        blobs_skipped: report.skipped,
        image_count: 1,
        tags: usize::from(matches!(target, Selector::Tag(_))),
        ..CopyReport::default()
    })
}

/// The layout every image between two registries passes through when its referrers go
/// along, in the system's temporary directory, removed with the run.
struct Relay {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Relay {
    async fn new() -> Result<Relay> {
        let dir = tempfile::tempdir().map_err(|source| Error::Scratch { source })?;
        let path = dir.path().join("relay");
        let store =
            ocikit_store::FsStore::open(&path)
                .await
                .map_err(|source| Error::OpenStore {
                    path: path.clone(),
                    source,
                })?;
        Layout::create(store)
            .await
            .map_err(|source| Error::CreateLayout {
                path: path.clone(),
                source,
            })?;
        Ok(Relay { _dir: dir, path })
    }
}

/// A repository to mirror: where it is read, which tags, and its name at the destination.
#[derive(Clone, Debug)]
struct Repo {
    index: usize,
    origin: Origin,
    tags: TagSelection,
    digests: Vec<Digest>,
    /// Its repository name (or layout directory) under the destination.
    name: String,
}

#[derive(Clone, Debug)]
enum Origin {
    Registry {
        registry: String,
        repository: String,
        access: RegistryOptions,
    },
    Layout {
        path: PathBuf,
    },
}

impl Origin {
    fn describe(&self) -> String {
        match self {
            Origin::Registry {
                registry,
                repository,
                ..
            } => format!("docker://{registry}/{repository}"),
            Origin::Layout { path } => format!("oci:{}", path.display()),
        }
    }

    fn location(&self, reference: &Reference) -> Result<Location> {
        match self {
            Origin::Registry {
                registry,
                repository,
                ..
            } => Ok(format!("docker://{registry}/{repository}{}", reference.suffix()).parse()?),
            Origin::Layout { path } => Ok(Location::Oci {
                path: path.clone(),
                selector: Some(reference.selector()),
            }),
        }
    }
}

/// A tag or a digest of a repository.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Reference {
    Tag(String),
    Digest(Digest),
}

impl Reference {
    fn suffix(&self) -> String {
        match self {
            Reference::Tag(tag) => format!(":{tag}"),
            Reference::Digest(digest) => format!("@{digest}"),
        }
    }

    fn selector(&self) -> Selector {
        match self {
            Reference::Tag(tag) => Selector::Tag(tag.clone()),
            Reference::Digest(digest) => Selector::Digest(digest.clone()),
        }
    }

    fn text(&self) -> String {
        match self {
            Reference::Tag(tag) => tag.clone(),
            Reference::Digest(digest) => digest.to_string(),
        }
    }
}

/// The repositories a source names, with their destination names.
async fn repositories(source: &SyncSource, options: &SyncOptions) -> Result<Vec<Repo>> {
    let mut repos = Vec::new();
    let mut push = |origin: Origin, tags: TagSelection, digests: Vec<Digest>, name: String| {
        repos.push(Repo {
            index: repos.len(),
            origin,
            tags,
            digests,
            name,
        });
    };
    match source {
        SyncSource::Repository {
            registry,
            repository,
            tags,
            digests,
        } => push(
            Origin::Registry {
                registry: registry.clone(),
                repository: repository.clone(),
                access: options.source.clone(),
            },
            tags.clone(),
            digests.clone(),
            registry_name(registry, repository, options.scoped),
        ),
        SyncSource::File(file) => {
            for registry in &file.registries {
                let mut access = options.source.clone();
                if let Some(verify) = registry.tls_verify {
                    access = access.with_tls_verify(verify);
                }
                if let Some(dir) = &registry.cert_dir {
                    access = access.with_cert_dir(Some(dir.clone()));
                }
                if let Some(credentials) = &registry.credentials {
                    access = access.with_credentials(Some(credentials.clone()));
                }
                for repository in &registry.repositories {
                    push(
                        Origin::Registry {
                            registry: registry.host.clone(),
                            repository: repository.name.clone(),
                            access: access.clone(),
                        },
                        repository.tags.clone(),
                        repository.digests.clone(),
                        registry_name(&registry.host, &repository.name, options.scoped),
                    );
                }
            }
        }
        SyncSource::Layouts { path, tags } => {
            let root = path.clone();
            let found = tokio::task::spawn_blocking(move || find_layouts(&root))
                .await
                .map_err(|_| Error::NoLayout {
                    path: path.clone(),
                    directory_exists: path.is_dir(),
                })?;
            if found.is_empty() {
                return Err(Error::NoLayout {
                    path: path.clone(),
                    directory_exists: path.is_dir(),
                });
            }
            for relative in found {
                let name = if relative.as_os_str().is_empty() {
                    // The directory is a layout: its own name.
                    let full = path.canonicalize().unwrap_or_else(|_| path.clone());
                    full.file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_else(|| "image".into())
                } else if options.scoped {
                    relative.to_string_lossy().into_owned()
                } else {
                    relative
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default()
                };
                push(
                    Origin::Layout {
                        path: path.join(&relative),
                    },
                    tags.clone(),
                    Vec::new(),
                    name,
                );
            }
        }
    }
    Ok(repos)
}

/// `NAME` (the last component) or, scoped, `HOST/…/NAME` with the host's `:` as `_`.
fn registry_name(registry: &str, repository: &str, scoped: bool) -> String {
    if scoped {
        format!("{}/{repository}", registry.replace(':', "_"))
    } else {
        repository
            .rsplit('/')
            .next()
            .unwrap_or(repository)
            .to_string()
    }
}

/// The layouts at or below `root` (relative paths; empty for `root` itself), sorted.
fn find_layouts(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![(PathBuf::new(), 0)];
    while let Some((relative, depth)) = stack.pop() {
        let dir = root.join(&relative);
        if dir.join("oci-layout").is_file() {
            found.push(relative);
            continue;
        }
        if depth >= MAX_LAYOUT_DEPTH {
            continue;
        }
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            // Directories only, never through a symbolic link; hidden ones (staging) skipped.
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let name = entry.file_name();
            if kind.is_dir() && !name.to_string_lossy().starts_with('.') {
                stack.push((relative.join(name), depth + 1));
            }
        }
    }
    found.sort();
    found
}

/// The destination, ready to be read: a registry client, or the directory of layouts.
struct Target {
    destination: SyncDestination,
    client: Option<Client>,
}

impl Target {
    fn new(destination: &SyncDestination, options: &SyncOptions) -> Result<Target> {
        let client = match destination {
            SyncDestination::Registry { registry, .. } => {
                Some(options.destination.client(registry)?)
            }
            SyncDestination::Layouts { .. } => None,
        };
        Ok(Target {
            destination: destination.clone(),
            client,
        })
    }

    /// The repository (registry) or layout directory a repository named `name` goes to.
    fn describe(&self, name: &str) -> String {
        match &self.destination {
            SyncDestination::Registry { registry, prefix } => {
                format!("docker://{registry}/{}", join(prefix, name))
            }
            SyncDestination::Layouts { path } => format!("oci:{}", path.join(name).display()),
        }
    }

    fn location(&self, name: &str, reference: &Reference) -> Result<Location> {
        match &self.destination {
            SyncDestination::Registry { registry, prefix } => Ok(format!(
                "docker://{registry}/{}{}",
                join(prefix, name),
                reference.suffix()
            )
            .parse()?),
            SyncDestination::Layouts { path } => match reference {
                Reference::Tag(tag) => Ok(Location::Oci {
                    path: path.join(name),
                    selector: Some(Selector::Tag(tag.clone())),
                }),
                Reference::Digest(_) => Err(Error::DestinationTakesATag {
                    syntax: "a tag: an image named by digest cannot be synced into a layout",
                }),
            },
        }
    }

    /// The digest the destination holds for `reference`, if any (reads only).
    async fn digest(&self, location: &Location) -> Result<Option<String>> {
        match location {
            Location::Docker {
                repository,
                selector,
                ..
            } => {
                let Some(client) = &self.client else {
                    return Ok(None);
                };
                match client
                    .head_manifest(repository, &selector.reference())
                    .await
                {
                    Ok(descriptor) => Ok(Some(descriptor.digest().to_string())),
                    Err(ocikit_client::Error::NotFound { .. }) => Ok(None),
                    Err(source) => Err(Error::Registry {
                        operation: Operation::ReadManifest,
                        location: location.to_string(),
                        source,
                    }),
                }
            }
            Location::Oci {
                path,
                selector: Some(Selector::Tag(tag)),
            } => {
                if !path.join("oci-layout").is_file() {
                    return Ok(None);
                }
                let layout = crate::open::open_layout(path).await?;
                let index = layout.index().await.map_err(|source| Error::OpenLayout {
                    path: path.clone(),
                    source,
                })?;
                Ok(index.find(tag).map(|d| d.digest().to_string()))
            }
            _ => Ok(None),
        }
    }
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}/{name}")
    }
}

/// A repository listed: what was found (none when it could not be listed), and the
/// entries of its failure or of the listed tags it lacks.
struct Listed {
    found: Option<Found>,
    entries: Vec<SyncEntry>,
}

/// A repository's tags, the images picked, and how to read it.
struct Found {
    all_tags: HashSet<String>,
    /// The source's layout, when it is one.
    layout: Option<Layout>,
    /// The source's registry client, when it is one.
    client: Option<Client>,
    selected: Vec<Reference>,
}

async fn list(repo: &Repo, target: &Target) -> Listed {
    let failed = |error: Error| Listed {
        found: None,
        entries: vec![SyncEntry {
            source: repo.origin.describe(),
            destination: target.describe(&repo.name),
            digest: None,
            attachment: false,
            outcome: SyncOutcome::Failed(error),
        }],
    };
    let (tags, layout, client) = match &repo.origin {
        Origin::Registry {
            registry,
            repository,
            access,
        } => {
            let client = match access.client(registry) {
                Ok(client) => client,
                Err(e) => return failed(e),
            };
            match client.tags(repository).await {
                Ok(tags) => (tags, None, Some(client)),
                Err(source) => {
                    return failed(Error::Registry {
                        operation: Operation::ListTags,
                        location: repo.origin.describe(),
                        source,
                    });
                }
            }
        }
        Origin::Layout { path } => {
            let layout = match crate::open::open_layout(path).await {
                Ok(layout) => layout,
                Err(e) => return failed(e),
            };
            match layout.tags().await {
                Ok(tags) => (
                    tags.into_iter().map(|(tag, _)| tag).collect(),
                    Some(layout),
                    None,
                ),
                Err(source) => {
                    return failed(Error::OpenLayout {
                        path: path.clone(),
                        source,
                    });
                }
            }
        }
    };
    let mut selected: Vec<Reference> = repo
        .tags
        .select(&tags)
        .into_iter()
        .map(Reference::Tag)
        .collect();
    selected.extend(repo.digests.iter().cloned().map(Reference::Digest));
    let missing = repo
        .tags
        .missing(&tags)
        .into_iter()
        .map(|tag| SyncEntry {
            source: format!("{}:{tag}", repo.origin.describe()),
            destination: format!("{}:{tag}", target.describe(&repo.name)),
            digest: None,
            attachment: false,
            outcome: SyncOutcome::Failed(Error::SyncTagMissing {
                repository: repo.origin.describe(),
                tag,
            }),
        })
        .collect();
    Listed {
        found: Some(Found {
            all_tags: tags.into_iter().collect(),
            layout,
            client,
            selected,
        }),
        entries: missing,
    }
}

/// One image to sync.
#[derive(Clone, Debug)]
struct Item {
    repo: Repo,
    reference: Reference,
    attachment: bool,
}

/// An image compared with the destination.
struct Checked {
    item: Item,
    source_text: String,
    destination_text: String,
    /// Whether the whole index is copied.
    all: bool,
    state_digest: Option<String>,
    state: Result<State>,
}

/// What the comparison found.
struct State {
    /// The root's digest.
    root: String,
    /// An index's entries (digest, platform), when the root is one.
    entries: Vec<(String, Option<Platform>)>,
    up_to_date: bool,
    source: Location,
    destination: Location,
}

impl State {
    /// The digests whose attachments go along: the root's, and for a platform picked from
    /// an index, its entries'.
    fn attachment_subjects(&self, all: bool) -> Vec<String> {
        let mut subjects = vec![self.root.clone()];
        if !all {
            subjects.extend(self.entries.iter().map(|(d, _)| d.clone()));
        }
        subjects
    }
}

/// `sha256-<hex>.sig`, `.att`, `.sbom`.
fn attachment_tags(digest: &str) -> Vec<String> {
    let base = digest.replacen(':', "-", 1);
    ATTACHMENT_SUFFIXES
        .iter()
        .map(|suffix| format!("{base}.{suffix}"))
        .collect()
}

async fn check_all(
    items: Vec<Item>,
    listed: &[Listed],
    target: &Target,
    options: &SyncOptions,
    jobs: usize,
) -> Vec<Checked> {
    futures::stream::iter(
        items
            .into_iter()
            .map(|item| check(item, listed, target, options))
            .collect::<Vec<_>>(),
    )
    .buffered(jobs)
    .collect()
    .await
}

async fn check(item: Item, listed: &[Listed], target: &Target, options: &SyncOptions) -> Checked {
    let digest_named = matches!(item.reference, Reference::Digest(_));
    let all = options.all_platforms
        || digest_named
        || item.attachment
        || (matches!(item.repo.origin, Origin::Layout { .. }) && options.platform.is_none());
    let source = item.repo.origin.location(&item.reference);
    let destination = target.location(&item.repo.name, &item.reference);
    let source_text = match &source {
        Ok(l) => l.to_string(),
        Err(_) => format!("{}{}", item.repo.origin.describe(), item.reference.suffix()),
    };
    let destination_text = match &destination {
        Ok(l) => l.to_string(),
        Err(_) => format!(
            "{}{}",
            target.describe(&item.repo.name),
            item.reference.suffix()
        ),
    };
    let (source, destination) = match (source, destination) {
        (Ok(source), Ok(destination)) => (source, destination),
        (Err(error), _) | (_, Err(error)) => {
            return Checked {
                item,
                source_text,
                destination_text,
                all,
                state_digest: None,
                state: Err(error),
            };
        }
    };
    let state = async {
        // Both sides are read at once: a check costs one round trip, not two.
        let (resolved, held) = futures::join!(
            resolve_source(&item, &source, &listed[item.repo.index]),
            target.digest(&destination)
        );
        let (root, entries) = resolved?;
        let held = held?;
        let query = options.query();
        let root_digest = root.digest().to_string();
        let up_to_date = held.as_ref().is_some_and(|held| {
            *held == root_digest
                || (!all
                    && entries.iter().any(|(digest, platform)| {
                        digest == held && platform.as_ref().is_none_or(|p| query.matches(p))
                    }))
        });
        Ok(State {
            root: root_digest,
            entries,
            up_to_date,
            source,
            destination,
        })
    }
    .await;
    Checked {
        state_digest: state.as_ref().ok().map(|s| s.root.clone()),
        item,
        source_text,
        destination_text,
        all,
        state,
    }
}

/// What [`resolve_source`] finds: the root's descriptor and an index's entries.
type Resolved = (Descriptor, Vec<(String, Option<Platform>)>);

/// The source's root descriptor for an image, and an index's entries. From a registry, a
/// manifest costs a `HEAD` (its digest and media type are all a comparison needs); only an
/// index is fetched, for its entries.
async fn resolve_source(item: &Item, location: &Location, listed: &Listed) -> Result<Resolved> {
    let Some(Found { layout, client, .. }) = &listed.found else {
        return Err(Error::SyncSource {
            source_text: location.to_string(),
            reason: "its repository could not be listed",
        });
    };
    if let (Some(client), Origin::Registry { repository, .. }) = (client, &item.repo.origin) {
        let registry_error = |source| Error::Registry {
            operation: Operation::ReadManifest,
            location: location.to_string(),
            source,
        };
        let reference = item.reference.text();
        let root = client
            .head_manifest(repository, &reference)
            .await
            .map_err(registry_error)?;
        if !media_type::is_index_like(root.media_type().as_ref()) {
            return Ok((root, Vec::new()));
        }
        // By the digest the HEAD named, so that the entries are the index compared.
        let (root, bytes) = client
            .get_manifest(repository, root.digest().as_ref())
            .await
            .map_err(registry_error)?;
        let entries = serde_json::from_slice::<ImageIndex>(&bytes)
            .map(|index| entries_of(&index))
            .unwrap_or_default();
        return Ok((root, entries));
    }
    let (Some(layout), Origin::Layout { path }) = (layout, &item.repo.origin) else {
        return Err(Error::SyncSource {
            source_text: location.to_string(),
            reason: "its repository could not be listed",
        });
    };
    let root = crate::open::resolve(layout, path, Some(&item.reference.selector())).await?;
    let entries = if media_type::is_index_like(root.media_type().as_ref()) {
        match layout.read_document(&root).await {
            Ok(Document::Index { index, .. }) => entries_of(&index),
            _ => Vec::new(),
        }
    } else {
        Vec::new()
    };
    Ok((root, entries))
}

fn entries_of(index: &ImageIndex) -> Vec<(String, Option<Platform>)> {
    index
        .manifests()
        .iter()
        .map(|m| (m.digest().to_string(), m.platform().clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_types_and_the_sync_future_are_send_and_sync() {
        fn send_sync<T: Send + Sync>() {}
        fn send<T: Send>(_: &T) {}
        send_sync::<SyncSource>();
        send_sync::<SyncDestination>();
        send_sync::<SyncOptions>();
        send_sync::<SyncProgress>();
        send_sync::<SyncReport>();
        send_sync::<SyncEntry>();
        send_sync::<SyncFile>();
        send_sync::<SyncFileError>();
        let source = SyncSource::layouts("/nonexistent", TagSelection::all());
        let destination = SyncDestination::layouts("/nonexistent");
        let options = SyncOptions::new();
        send(&sync(&source, &destination, &options));
    }

    #[test]
    fn destinations_are_named_as_skopeo_names_them() {
        assert_eq!(registry_name("quay.io", "coreos/etcd", false), "etcd");
        assert_eq!(
            registry_name("localhost:5000", "coreos/etcd", true),
            "localhost_5000/coreos/etcd"
        );
        assert_eq!(
            SyncDestination::registry("docker://localhost:5000/mirror/").unwrap(),
            SyncDestination::Registry {
                registry: "localhost:5000".into(),
                prefix: "mirror".into()
            }
        );
        for bad in [
            "localhost:5000/repo:tag",
            "",
            "mirror/x",
            "localhost:5000/Bad",
        ] {
            assert!(SyncDestination::registry(bad).is_err(), "{bad}");
        }
        let digest = Digest::sha256(b"x");
        let tags = attachment_tags(digest.as_ref());
        assert_eq!(tags[0], format!("sha256-{}.sig", digest.encoded()));
        assert_eq!(tags.len(), 3);
    }

    #[test]
    fn a_source_repository_names_a_tag_or_a_digest_or_all() {
        let SyncSource::Repository {
            registry,
            repository,
            tags,
            digests,
        } = SyncSource::repository("localhost:5000/team/app", TagSelection::all()).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (registry.as_str(), repository.as_str()),
            ("localhost:5000", "team/app")
        );
        assert!(tags.is_all() && digests.is_empty());
        let SyncSource::Repository { tags, .. } =
            SyncSource::repository("docker://localhost:5000/app:v1", TagSelection::all()).unwrap()
        else {
            panic!()
        };
        assert_eq!(tags.explicit_tags(), Some(&["v1".to_string()][..]));
        let text = format!("localhost:5000/app@{}", Digest::sha256(b"x"));
        let SyncSource::Repository { tags, digests, .. } =
            SyncSource::repository(&text, TagSelection::all()).unwrap()
        else {
            panic!()
        };
        assert_eq!(digests.len(), 1);
        assert!(tags.select(&["v1".to_string()]).is_empty());
        assert!(SyncSource::repository("localhost:5000", TagSelection::all()).is_err());
    }
}
