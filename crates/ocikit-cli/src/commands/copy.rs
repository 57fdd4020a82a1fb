//! `copy` (and its shorthands `import`, `export`, `pull` and `push`): images between any two
//! transports.
//!
//! The source is first made a layout: an `oci:` source is used as it is, an archive is
//! imported (streaming, verified) and a registry image pulled into a scratch layout beside
//! the destination, so that the destination side only ever copies (or pushes) from a layout,
//! with hardlinks where both sit on one filesystem. A registry image bound for an `oci:`
//! layout is pulled straight into it. A registry image bound for another repository of the
//! same registry (reached with the same credentials and TLS settings) is copied there
//! without any blob passing through: manifests only, blobs mounted. Nothing is tagged at the
//! destination before every blob it reaches is there.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use ocikit::digest::oci_spec::image::Descriptor;
use ocikit::layout::archive::{docker, oci};
use ocikit::layout::{
    CopyOptions, Layout, RecompressOptions, StagedLayout, copy_image, recompress,
};
use ocikit::store::{FsStore, LinkMode};
use serde::Serialize;

use ocikit::layout::PlatformQuery;
use ocikit::client::{
    Client, ClientBuilder, CopyWithinOptions, Credentials, DockerConfig, PullOptions, PushOptions,
};

use super::{open_layout, resolve};
use crate::bars::Bars;
use crate::commands::image::CompressionArg;
use crate::location::{Location, Selector};
use crate::output::{Output, human_size};

/// An image to copy: where it is tagged in the staged layout, if anywhere, and its root.
struct Item {
    tag: Option<String>,
    root: Descriptor,
}

/// How to reach one registry over TLS, for the commands that talk to one (`inspect`, `tags`,
/// `referrers`, `login`); `copy` has a `--src-` and a `--dest-` variant of each.
#[derive(Clone, Debug, clap::Args)]
pub(crate) struct TlsArgs {
    /// Verify the registry's TLS certificate; `false` accepts any certificate, and plain
    /// HTTP if the registry does not speak HTTPS (for test registries: credentials and
    /// content then travel unprotected).
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true")]
    tls_verify: bool,
    /// Trust the certificate authorities in DIR/*.crt, and present DIR/NAME.cert with
    /// DIR/NAME.key if the registry asks for a client certificate (as skopeo).
    #[arg(long, value_name = "DIR")]
    cert_dir: Option<PathBuf>,
    /// Trust the certificate authorities of this PEM file as well as the system's.
    #[arg(long, value_name = "FILE")]
    ca_file: Option<PathBuf>,
}

impl TlsArgs {
    /// A client builder for `registry` set up as these flags say.
    pub(crate) fn client(&self, registry: &str) -> ClientBuilder {
        let mut builder = Client::builder(registry).allow_insecure(!self.tls_verify);
        if let Some(dir) = &self.cert_dir {
            builder = builder.cert_dir(dir);
        }
        if let Some(file) = &self.ca_file {
            builder = builder.ca_file(file);
        }
        builder
    }
}

/// How the command that ran spells its TLS flags, so that a hint names flags it takes.
#[derive(Debug)]
pub(crate) enum TlsFlags {
    /// One registry: `--tls-verify`, `--ca-file`, `--cert-dir`, `--creds` (`inspect`,
    /// `tags`, ...).
    One,
    /// `login`: the TLS flags of [`TlsFlags::One`], credentials of its own.
    Login,
    /// A source and a destination (`copy`, `pull`, `push`): `--src-` and `--dest-` forms.
    Sides {
        /// The source location, if the command has one.
        source: Option<String>,
        /// The destination location, if the command has one.
        destination: Option<String>,
    },
}

impl TlsFlags {
    /// The flag prefixes that set `registry`'s TLS options: `""` for [`TlsFlags::One`]; for
    /// [`TlsFlags::Sides`], the side(s) whose `docker://` location names `registry` (both
    /// registry sides when none does by name, as for Docker Hub's short names), and how to
    /// join them: "and" when both sides are that registry (a copy within it needs both),
    /// else "or".
    fn prefixes(&self, registry: &str) -> (Vec<&'static str>, &'static str) {
        let TlsFlags::Sides {
            source,
            destination,
        } = self
        else {
            return (vec![""], " or ");
        };
        let sides = [("src-", source), ("dest-", destination)];
        let host = |location: &str| {
            location
                .strip_prefix("docker://")
                .map(|rest| rest.split('/').next().unwrap_or(rest).to_owned())
        };
        let remote: Vec<(&'static str, Option<String>)> = sides
            .iter()
            .filter_map(|(prefix, location)| {
                let location = location.as_deref()?;
                location
                    .starts_with("docker://")
                    .then(|| (*prefix, host(location)))
            })
            .collect();
        let named: Vec<&'static str> = remote
            .iter()
            .filter(|(_, host)| host.as_deref() == Some(registry))
            .map(|(prefix, _)| *prefix)
            .collect();
        match (named.is_empty(), remote.is_empty()) {
            (false, _) => (named, " and "),
            (true, false) => (remote.iter().map(|(prefix, _)| *prefix).collect(), " or "),
            (true, true) => (vec!["src-", "dest-"], " or "),
        }
    }
}

/// `err`, with what to do about it on top when a registry spoke plain HTTP, presented a
/// certificate that does not verify, or wants credentials: the flags that change that, as
/// `flags` spells them.
pub(crate) fn tls_hint(err: anyhow::Error, flags: &TlsFlags) -> anyhow::Error {
    use ocikit::client::Error as RegistryError;
    let either = |(prefixes, joiner): &(Vec<&str>, &str), flag: &str| {
        prefixes
            .iter()
            .map(|prefix| format!("--{prefix}{flag}"))
            .collect::<Vec<_>>()
            .join(joiner)
    };
    let hint = err.chain().find_map(|cause| match cause.downcast_ref() {
        Some(RegistryError::NotHttps { registry, .. }) => {
            let prefixes = flags.prefixes(registry);
            Some(format!(
                "{registry} speaks plain HTTP, not HTTPS: allow that with {}",
                either(&prefixes, "tls-verify=false")
            ))
        }
        Some(RegistryError::Certificate { registry, .. }) => {
            let prefixes = flags.prefixes(registry);
            Some(format!(
                "the TLS certificate of {registry} does not verify: trust its authority with \
                 {} FILE or {} DIR, or skip verification with {}",
                either(&prefixes, "ca-file"),
                either(&prefixes, "cert-dir"),
                either(&prefixes, "tls-verify=false")
            ))
        }
        Some(RegistryError::Unauthorized { registry, .. }) if !matches!(flags, TlsFlags::Login) => {
            let prefixes = flags.prefixes(registry);
            Some(format!(
                "{registry} wants credentials, or refused the ones given: give them with {} \
                 USER:PASSWORD, or store them with `ocikit login {registry}`",
                either(&prefixes, "creds")
            ))
        }
        Some(RegistryError::CaAsServerCertificate { registry, .. }) => {
            let prefixes = flags.prefixes(registry);
            Some(format!(
                "the TLS certificate of {registry} is a CA certificate (CA:TRUE) serving as its \
                 own server certificate: trust exactly that certificate with {} (or a \
                 certificate directory, {}), give the registry a certificate with \
                 basicConstraints CA:FALSE, or skip verification with {}",
                either(&prefixes, "ca-file"),
                either(&prefixes, "cert-dir"),
                either(&prefixes, "tls-verify=false")
            ))
        }
        _ => None,
    });
    match hint {
        Some(hint) => err.context(hint),
        None => err,
    }
}

/// How to reach registries (`docker://` locations) and what to take from an index.
#[derive(Debug, clap::Args)]
pub(crate) struct TransferArgs {
    /// Verify the source registry's TLS certificate; `false` accepts any certificate, and
    /// plain HTTP if the registry does not speak HTTPS (for test registries: credentials and
    /// content then travel unprotected).
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true")]
    src_tls_verify: bool,
    /// Verify the destination registry's TLS certificate; `false` accepts any certificate,
    /// and plain HTTP if the registry does not speak HTTPS.
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true")]
    dest_tls_verify: bool,
    /// For the source registry, trust the certificate authorities in DIR/*.crt, and present
    /// DIR/NAME.cert with DIR/NAME.key if it asks for a client certificate (as skopeo).
    #[arg(long, value_name = "DIR")]
    src_cert_dir: Option<PathBuf>,
    /// For the destination registry, trust DIR/*.crt, and present DIR/NAME.cert with
    /// DIR/NAME.key if it asks for a client certificate.
    #[arg(long, value_name = "DIR")]
    dest_cert_dir: Option<PathBuf>,
    /// For the source registry, trust the certificate authorities of this PEM file as well
    /// as the system's.
    #[arg(long, value_name = "FILE")]
    src_ca_file: Option<PathBuf>,
    /// For the destination registry, trust the certificate authorities of this PEM file as
    /// well as the system's.
    #[arg(long, value_name = "FILE")]
    dest_ca_file: Option<PathBuf>,
    /// Credentials for the source registry.
    #[arg(long, value_name = "USER:PASSWORD")]
    src_creds: Option<String>,
    /// Credentials for the destination registry.
    #[arg(long, value_name = "USER:PASSWORD")]
    dest_creds: Option<String>,
    /// The credentials file for registries without --src-creds/--dest-creds (default:
    /// $DOCKER_CONFIG/config.json, else ~/.docker/config.json; see `ocikit login`).
    #[arg(long, value_name = "PATH")]
    authfile: Option<PathBuf>,
    /// From a registry, copy every image of an index (default: only this machine's
    /// platform, as skopeo does).
    #[arg(long)]
    all: bool,
    /// Copy this platform's image of an index (os/arch[/variant]), from any source (default:
    /// from a registry, this machine's; from a layout or an archive, the whole index).
    #[arg(long, conflicts_with = "all")]
    platform: Option<String>,
    /// Recompress every layer for the destination (new layer digests, so new manifest
    /// digests; the diffIDs are checked and stay). Default: layers are copied byte for byte.
    /// Docker manifests become OCI ones for zstd.
    #[arg(
        long,
        value_enum,
        value_name = "FORMAT",
        alias = "dest-compress-format"
    )]
    compression: Option<CompressionArg>,
    /// The level for --compression (gzip 1-9, default 6; zstd 1-19, default 3).
    #[arg(
        long,
        value_name = "LEVEL",
        requires = "compression",
        alias = "dest-compress-level"
    )]
    compression_level: Option<i32>,
    /// Between two layouts (oci: to oci:), hardlink blobs instead of copying them. Not a
    /// flag of the shared set: only `copy --hardlink` sets it (pull and push have a registry
    /// on one side, nothing to link).
    #[arg(skip)]
    pub(crate) hardlink: bool,
}

impl Default for TransferArgs {
    /// What the flags default to: TLS verified, anonymous, this machine's platform.
    fn default() -> TransferArgs {
        TransferArgs {
            src_tls_verify: true,
            dest_tls_verify: true,
            src_cert_dir: None,
            dest_cert_dir: None,
            src_ca_file: None,
            dest_ca_file: None,
            src_creds: None,
            dest_creds: None,
            authfile: None,
            all: false,
            platform: None,
            compression: None,
            compression_level: None,
            hardlink: false,
        }
    }
}

impl TransferArgs {
    /// The arguments of a command that only reads from a registry (`inspect`, `tags`).
    pub(crate) fn source(tls: TlsArgs, creds: Option<String>) -> TransferArgs {
        TransferArgs {
            src_tls_verify: tls.tls_verify,
            src_cert_dir: tls.cert_dir,
            src_ca_file: tls.ca_file,
            src_creds: creds,
            ..TransferArgs::default()
        }
    }

    /// A client for the source (`source`) or destination registry `registry`.
    pub(crate) fn client(&self, registry: &str, source: bool) -> Result<Client> {
        let (tls, creds) = if source {
            let tls = TlsArgs {
                tls_verify: self.src_tls_verify,
                cert_dir: self.src_cert_dir.clone(),
                ca_file: self.src_ca_file.clone(),
            };
            (tls, &self.src_creds)
        } else {
            let tls = TlsArgs {
                tls_verify: self.dest_tls_verify,
                cert_dir: self.dest_cert_dir.clone(),
                ca_file: self.dest_ca_file.clone(),
            };
            (tls, &self.dest_creds)
        };
        let credentials = match creds {
            Some(text) => {
                Some(Credentials::parse(text).context("write credentials as USER:PASSWORD")?)
            }
            None => self.stored_credentials(registry)?,
        };
        tls.client(registry)
            .credentials(credentials)
            .build()
            .with_context(|| format!("cannot set up a client for {registry}"))
    }

    /// What `ocikit login` (or docker, podman, skopeo) stored for `registry`. Without a
    /// file to look in (no HOME, no DOCKER_CONFIG), anonymous.
    fn stored_credentials(&self, registry: &str) -> Result<Option<Credentials>> {
        let path = match &self.authfile {
            Some(path) => path.clone(),
            None => match DockerConfig::default_path() {
                Some(path) => path,
                None => return Ok(None),
            },
        };
        Ok(DockerConfig::load(&path)?.credentials(registry)?)
    }

    /// The platform `--platform` names, if any.
    fn platform(&self) -> Result<Option<PlatformQuery>> {
        self.platform
            .as_deref()
            .map(|text| {
                let platform = ocikit::digest::platform::parse(text)
                    .with_context(|| format!("`{text}` is not a platform (os/arch[/variant])"))?;
                Ok(PlatformQuery::new(&platform))
            })
            .transpose()
    }

    /// What to take from a registry's index: everything with --all, else --platform's
    /// image or this machine's.
    fn registry_platform(&self) -> Result<Option<PlatformQuery>> {
        Ok(if self.all {
            None
        } else {
            Some(self.platform()?.unwrap_or_else(PlatformQuery::current))
        })
    }

    fn pull_options(&self, bars: &Bars) -> Result<PullOptions> {
        Ok(PullOptions::new()
            .with_platform(self.registry_platform()?)
            .with_progress(bars.progress("pull")))
    }

    /// Whether the source and the destination are reached the same way (TLS settings and
    /// credentials), so that one client can do a copy within one registry.
    fn same_access(&self) -> bool {
        self.src_tls_verify == self.dest_tls_verify
            && self.src_cert_dir == self.dest_cert_dir
            && self.src_ca_file == self.dest_ca_file
            && self.src_creds == self.dest_creds
    }
}

fn reference_text(selector: &Selector) -> String {
    match selector {
        Selector::Tag(tag) => tag.clone(),
        Selector::Digest(digest) => digest.to_string(),
    }
}

/// Scratch space for intermediate layouts: beside `near` (so hardlinks work, and a killed
/// run's scratch is removed by the next run for the same destination), or in the system's
/// temporary directory where nothing can be made there. Removed on drop.
enum ScratchSpace {
    Beside(ocikit::layout::Scratch),
    Temporary(tempfile::TempDir),
}

impl ScratchSpace {
    async fn near(near: &Path) -> Result<ScratchSpace> {
        match ocikit::layout::Scratch::near(near).await {
            Ok(scratch) => Ok(ScratchSpace::Beside(scratch)),
            Err(_) => tempfile::tempdir()
                .map(ScratchSpace::Temporary)
                .context("cannot create a scratch directory"),
        }
    }

    fn path(&self) -> PathBuf {
        match self {
            ScratchSpace::Beside(scratch) => scratch.path(),
            ScratchSpace::Temporary(dir) => dir.path().to_path_buf(),
        }
    }
}

async fn scratch_layout(dir: &Path) -> Result<Layout> {
    Ok(Layout::create(FsStore::open(dir.join("layout")).await?).await?)
}

/// The source as a layout and the images to copy from it.
async fn stage(
    source: &Location,
    scratch: &Path,
    transfer: &TransferArgs,
    bars: &Bars,
) -> Result<(Layout, Vec<Item>)> {
    match source {
        Location::Docker {
            registry,
            repository,
            selector,
            ..
        } => {
            let layout = scratch_layout(scratch).await?;
            let client = transfer.client(registry, true)?;
            let report = client
                .pull(
                    repository,
                    &reference_text(selector),
                    &layout,
                    "pulled",
                    &transfer.pull_options(bars)?,
                )
                .await
                .with_context(|| format!("cannot pull {source}"))?;
            let root = report.root.context("the pull reported no image")?;
            let tag = match selector {
                Selector::Tag(tag) => Some(tag.clone()),
                Selector::Digest(_) => None,
            };
            Ok((layout, vec![Item { tag, root }]))
        }
        Location::Oci { path, selector } => {
            let layout = open_layout(path).await?;
            let items = match selector {
                Some(Selector::Tag(tag)) => vec![Item {
                    tag: Some(tag.clone()),
                    root: layout.resolve(tag).await?,
                }],
                Some(digest @ Selector::Digest(_)) => vec![Item {
                    tag: None,
                    root: resolve(&layout, Some(digest)).await?,
                }],
                // Every image, tagged or not (`skopeo copy … oci:DIR` leaves it untagged).
                None => layout
                    .entries()
                    .await?
                    .into_iter()
                    .map(|(tag, root)| Item { tag, root })
                    .collect(),
            };
            if items.is_empty() {
                bail!("{} holds no image", path.display());
            }
            Ok((layout, items))
        }
        Location::OciArchive { path, selector } => {
            let layout = scratch_layout(scratch).await?;
            let mut options = oci::ImportOptions::new().with_progress(bars.progress("read"));
            match selector {
                Some(Selector::Tag(tag)) => options = options.with_tags([tag.clone()]),
                Some(Selector::Digest(digest)) => options = options.with_digest(digest.clone()),
                None => {}
            }
            let report = oci::import_path(&layout, path, &options)
                .await
                .with_context(|| format!("cannot read {source}"))?;
            // Every image, tagged or not (skopeo writes untagged archives by default).
            let items: Vec<Item> = report
                .entries
                .iter()
                .map(|entry| {
                    let tag = entry
                        .annotations()
                        .as_ref()
                        .and_then(|a| a.get(ocikit::layout::REF_NAME))
                        .cloned();
                    let mut root = entry.clone();
                    if let Some(mut annotations) = root.annotations().clone() {
                        annotations.remove(ocikit::layout::REF_NAME);
                        root.set_annotations((!annotations.is_empty()).then_some(annotations));
                    }
                    Item { tag, root }
                })
                .collect();
            if items.is_empty() {
                bail!("{} holds no image", path.display());
            }
            Ok((layout, items))
        }
        Location::DockerArchive { path, reference } => {
            let layout = scratch_layout(scratch).await?;
            let options = docker::Options::new().with_progress(bars.progress("read"));
            let report = docker::import_path(&layout, path, &options)
                .await
                .with_context(|| format!("cannot read {source}"))?;
            let item = |image: &docker::ImportedImage, tag: Option<&str>| Item {
                tag: tag.map(str::to_owned),
                root: image.manifest.clone(),
            };
            let items: Vec<Item> = match reference {
                // Names are matched as docker matches them (`hello` is
                // docker.io/library/hello:latest); the image keeps the name that matched.
                Some(r) => match report.find_tag(r)? {
                    Some((image, tag)) => vec![item(image, Some(tag))],
                    None => bail!("{} has no image named {r:?}", path.display()),
                },
                // Every name of every image, as `docker load` sets them.
                None => report
                    .images
                    .iter()
                    .flat_map(|image| match image.tags.as_slice() {
                        [] => vec![item(image, None)],
                        tags => tags.iter().map(|t| item(image, Some(t))).collect(),
                    })
                    .collect(),
            };
            if items.is_empty() {
                bail!("{} holds no image", path.display());
            }
            Ok((layout, items))
        }
    }
}

/// The tags the destination gives the items: its own tag for a single image (then one tag,
/// for the first item: the others are the same image under other names), else each image's
/// tag.
fn destination_tags(items: &[Item], wanted: Option<&str>) -> Result<Vec<String>> {
    let one_image = items
        .iter()
        .all(|i| items.first().map(|first| first.root.digest()) == Some(i.root.digest()));
    match wanted {
        Some(tag) if one_image => Ok(vec![tag.to_string()]),
        Some(_) => bail!(
            "the source holds {} images: name one in the source, or leave the destination's tag out",
            items.len()
        ),
        None => items
            .iter()
            .map(|i| {
                i.tag.clone().with_context(|| {
                    format!(
                        "name a tag for the destination: the source image {} has no tag",
                        i.root.digest()
                    )
                })
            })
            .collect(),
    }
}

/// What a copy reports. `blobs` and `bytes` measure the whole image as the destination now
/// holds it (every blob reached, each once: written, mounted or already there), so a
/// repeated copy reports the same size; the other counts say how each blob got there.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
struct Copied {
    source: String,
    destination: String,
    images: Vec<String>,
    /// Blobs of the image(s), each once.
    blobs: usize,
    /// Their bytes.
    bytes: u64,
    /// Blobs written (streamed, linked or uploaded).
    blobs_copied: usize,
    /// Blobs a registry mounted from the source repository instead of an upload.
    blobs_mounted: usize,
    /// Blobs the destination had already.
    blobs_skipped: usize,
    /// Layers recompressed on the way (`--compression`).
    layers_recompressed: usize,
    /// Distinct images (by digest) copied, for the summary line.
    #[serde(skip)]
    image_count: usize,
    /// Names (tags, repo tags) the destination gives them, for the summary line.
    #[serde(skip)]
    tags: usize,
}

impl Copied {
    /// Counts the blobs and bytes of `roots` in `layout`. A blob that one image of this copy
    /// wrote and the next one found (one image under two tags) was not already present: the
    /// blobs skipped are at most those this copy neither wrote nor mounted.
    async fn measure(&mut self, layout: &Layout, roots: &[Descriptor]) -> Result<()> {
        let (blobs, bytes) = ocikit::layout::copy::reach(layout, roots).await?;
        self.blobs = blobs;
        self.bytes = bytes;
        self.blobs_skipped = self
            .blobs_skipped
            .min(blobs.saturating_sub(self.blobs_copied + self.blobs_mounted));
        Ok(())
    }
}

pub(crate) async fn copy(
    source: &Location,
    destination: &Location,
    transfer: &TransferArgs,
    out: &Output,
) -> Result<()> {
    // Within one registry, blobs never pass through here: mounted from the source
    // repository (streamed only where the registry refuses a mount).
    if let (
        Location::Docker {
            registry,
            repository: from,
            selector,
            ..
        },
        Location::Docker {
            registry: to_registry,
            repository: to,
            selector: target,
            ..
        },
    ) = (source, destination)
        && registry == to_registry
        && transfer.compression.is_none()
        && transfer.same_access()
    {
        return copy_within_registry(
            source,
            destination,
            registry,
            from,
            selector,
            to,
            target,
            transfer,
            out,
        )
        .await;
    }
    if let (
        Location::Docker {
            registry,
            repository,
            selector,
            ..
        },
        Location::Oci {
            path,
            selector: wanted,
        },
    ) = (source, destination)
        && transfer.compression.is_none()
    {
        return pull_into_layout(
            source,
            registry,
            repository,
            selector,
            destination,
            path,
            wanted.as_ref(),
            transfer,
            out,
        )
        .await;
    }
    let near = match destination {
        Location::Oci { path, .. }
        | Location::OciArchive { path, .. }
        | Location::DockerArchive { path, .. } => path.clone(),
        Location::Docker { .. } => PathBuf::from("./registry-push"),
    };
    if let (Location::Oci { path: a, .. }, Location::Oci { path: b, .. }) = (source, destination)
        && a == b
        && matches!(destination, Location::Oci { selector: None, .. })
    {
        bail!("source and destination are the same layout; use `ocikit tag` to add a tag");
    }
    let scratch = ScratchSpace::near(&near).await?;
    let scratch_dir = scratch.path();
    let bars = Bars::new(out);
    let (mut staged, mut items) = stage(source, scratch_dir.as_path(), transfer, &bars).await?;
    // Blobs go file to file as independent copies, unless --hardlink asks to share them;
    // hardlinks from a scratch layout (removed when done) share nothing with the user's.
    let link_mode = |from_scratch: bool| {
        if transfer.hardlink || from_scratch {
            LinkMode::Hardlink
        } else {
            LinkMode::Copy
        }
    };
    let mut from_scratch = !matches!(source, Location::Oci { .. });
    let options = CopyOptions::new()
        .with_link_mode(link_mode(from_scratch))
        .with_progress(bars.progress("copy"))
        .with_platform(transfer.platform()?);
    // From an index, only the wanted platform's image (a registry pull chose it already).
    for item in &mut items {
        item.root = options
            .select(&staged, &item.root)
            .await
            .with_context(|| format!("cannot pick a platform from {source}"))?;
    }
    let mut copied = Copied {
        source: source.to_string(),
        destination: destination.to_string(),
        ..Copied::default()
    };
    // A docker-archive's layers are plain tar: a registry gets them gzipped, as skopeo
    // pushes them, unless --compression says otherwise.
    let compression = transfer.compression.or_else(|| {
        matches!(
            (source, destination),
            (Location::DockerArchive { .. }, Location::Docker { .. })
        )
        .then_some(CompressionArg::Gzip)
    });
    if let Some(format) = compression {
        if matches!(source, Location::Oci { .. }) {
            // The source layout is only read: recompress in a scratch copy (independent
            // copies of the source's blobs unless --hardlink).
            let layout = scratch_layout(&scratch_dir.as_path().join("recompress")).await?;
            for item in &items {
                let tag = item.tag.clone().unwrap_or_else(|| "staged".into());
                copy_image(&staged, &item.root, &layout, &tag, &options).await?;
            }
            staged = layout;
            from_scratch = true;
        }
        let options = RecompressOptions::new(format.compression())
            .with_level(transfer.compression_level)
            .with_progress(bars.progress("recompress"));
        for item in &mut items {
            let report = recompress(&staged, &item.root, &options)
                .await
                .with_context(|| format!("cannot recompress {}", item.root.digest()))?;
            copied.layers_recompressed += report.layers_recompressed;
            item.root = report.root;
            if let Some(tag) = &item.tag {
                staged.set_tag(tag, &item.root).await?;
            }
        }
    }
    let options = options.with_link_mode(link_mode(from_scratch));
    match destination {
        Location::Oci { path, selector } => {
            let wanted = match selector {
                None => None,
                Some(Selector::Tag(tag)) => Some(tag.as_str()),
                Some(Selector::Digest(_)) => {
                    bail!("the destination takes a tag (oci:PATH:TAG), not a digest")
                }
            };
            // Untagged images of an archive or a whole layout stay untagged (as skopeo
            // imports them) unless the destination names one.
            let archive = matches!(
                source,
                Location::OciArchive { .. }
                    | Location::DockerArchive { .. }
                    | Location::Oci { selector: None, .. }
            );
            let tags: Vec<Option<String>> = match wanted {
                None if archive => items.iter().map(|i| i.tag.clone()).collect(),
                _ => destination_tags(&items, wanted)?
                    .into_iter()
                    .map(Some)
                    .collect(),
            };
            // A layout that does not exist yet is made in a staging directory and appears
            // only once everything is copied: a failed copy leaves nothing.
            let target = Layout::create_or_stage(path).await.with_context(|| {
                format!("cannot open or create the layout at {}", path.display())
            })?;
            let layout = target.layout().clone();
            let written = async {
                for (item, tag) in items.iter().zip(&tags) {
                    let copy = async {
                        match tag {
                            Some(tag) => {
                                copy_image(&staged, &item.root, &layout, tag, &options).await
                            }
                            None => {
                                let report = ocikit::layout::copy_graph(
                                    &staged,
                                    std::slice::from_ref(&item.root),
                                    &layout,
                                    &options,
                                )
                                .await?;
                                layout
                                    .edit_index(|index| index.add(&item.root).map(|()| true))
                                    .await?;
                                Ok(report)
                            }
                        }
                    };
                    let report = copy.await.with_context(|| {
                        format!("cannot copy {} to {destination}", item.root.digest())
                    })?;
                    copied.blobs_copied += report.copied + report.hardlinked + report.reflinked;
                    copied.blobs_skipped += report.skipped;
                    copied.tags += usize::from(tag.is_some());
                    copied.images.push(format!(
                        "{} {}",
                        tag.as_deref().unwrap_or("(untagged)"),
                        item.root.digest()
                    ));
                }
                Ok::<(), anyhow::Error>(())
            }
            .await;
            drop(layout);
            commit_or_discard(target, written, path).await?;
        }
        Location::OciArchive { path, selector } => {
            let tag = match selector {
                None => None,
                Some(Selector::Tag(tag)) => Some(tag.as_str()),
                Some(Selector::Digest(_)) => {
                    bail!("the destination takes a tag (oci-archive:FILE:TAG), not a digest")
                }
            };
            // A whole layout or archive goes in as it is: untagged images stay untagged,
            // as skopeo writes them into an oci-archive; a tag given names the one image.
            let whole = tag.is_none()
                && matches!(
                    source,
                    Location::OciArchive { .. }
                        | Location::DockerArchive { .. }
                        | Location::Oci { selector: None, .. }
                );
            let tags: Vec<Option<String>> = if whole {
                items.iter().map(|i| i.tag.clone()).collect()
            } else {
                destination_tags(&items, tag)?
                    .into_iter()
                    .map(Some)
                    .collect()
            };
            let images: Vec<(Option<&str>, &Descriptor)> = items
                .iter()
                .zip(&tags)
                .map(|(item, tag)| (tag.as_deref(), &item.root))
                .collect();
            let report = oci::export_images_path(
                &staged,
                &images,
                path,
                &oci::ExportOptions::new().with_progress(bars.progress("write")),
            )
            .await
            .with_context(|| format!("cannot write {destination}"))?;
            copied.blobs_copied = report.blobs;
            copied.tags = tags.iter().flatten().count();
            copied.images = items
                .iter()
                .zip(&tags)
                .map(|(item, tag)| {
                    format!(
                        "{} {}",
                        tag.as_deref().unwrap_or("(untagged)"),
                        item.root.digest()
                    )
                })
                .collect();
        }
        Location::Docker {
            registry,
            repository,
            selector,
            ..
        } => {
            let client = transfer.client(registry, false)?;
            let tag = match selector {
                Selector::Tag(tag) if items.len() == 1 => Some(tag.as_str()),
                Selector::Tag(_) => bail!(
                    "the source holds {} images: name one in the source",
                    items.len()
                ),
                Selector::Digest(digest) => {
                    if items.len() != 1 || items[0].root.digest().to_string() != digest.to_string()
                    {
                        bail!("the destination names {digest}, which is not the source image");
                    }
                    None
                }
            };
            // Within one registry, blobs are mounted from the source repository.
            let mount_from = match source {
                Location::Docker {
                    registry: from_registry,
                    repository: from,
                    ..
                } if from_registry == registry && from != repository => Some(from.clone()),
                _ => None,
            };
            let options = PushOptions::new()
                .with_mount_from(mount_from)
                .with_progress(bars.progress("push"));
            for item in &items {
                let report = client
                    .push(&staged, &item.root, repository, tag, &options)
                    .await
                    .with_context(|| {
                        format!("cannot push {} to {destination}", item.root.digest())
                    })?;
                copied.blobs_copied += report.transferred;
                copied.blobs_mounted += report.mounted;
                copied.blobs_skipped += report.skipped;
                copied.tags += usize::from(tag.is_some());
                copied.images.push(format!(
                    "{} {}",
                    tag.unwrap_or("(by digest)"),
                    item.root.digest()
                ));
            }
        }
        Location::DockerArchive { path, reference } => {
            let repo_tags = match reference {
                // `hello` is `hello:latest`, as docker names it.
                Some(r) if items.len() == 1 => {
                    let tagged = r.rsplit('/').next().is_some_and(|last| last.contains(':'));
                    vec![if tagged {
                        r.clone()
                    } else {
                        format!("{r}:latest")
                    }]
                }
                Some(_) => bail!("the source holds {} images: name one", items.len()),
                // A whole layout: `v1` becomes NAME:v1, NAME from the source's name (see
                // docker::repo_tag_for); tags that are references stay.
                None => {
                    let name = image_name(source);
                    items
                        .iter()
                        .map(|i| {
                            let tag = i.tag.as_deref().context(
                                "name the image for the archive: docker-archive:FILE:NAME:TAG",
                            )?;
                            docker::repo_tag_for(tag, &name).with_context(|| {
                                format!(
                                    "cannot name the image tagged {tag:?} after {name:?}; \
                                     name it: docker-archive:FILE:NAME:TAG"
                                )
                            })
                        })
                        .collect::<Result<_>>()?
                }
            };
            // docker-archive export names images by their tag in the layout.
            let dir = scratch_dir.as_path().join("export");
            let layout = scratch_layout(&dir).await?;
            let mut pairs = Vec::new();
            for (n, item) in items.iter().enumerate() {
                let tag = format!("export-{n}");
                copy_image(&staged, &item.root, &layout, &tag, &options).await?;
                pairs.push(tag);
            }
            let images: Vec<(&str, &str)> = pairs
                .iter()
                .map(String::as_str)
                .zip(repo_tags.iter().map(String::as_str))
                .collect();
            let report = docker::export_path(
                &layout,
                &images,
                path,
                &docker::Options::new().with_progress(bars.progress("write")),
            )
            .await
            .with_context(|| format!("cannot write {destination}"))?;
            copied.blobs_copied = report.layers;
            copied.tags = repo_tags.len();
            copied.images = repo_tags;
        }
    }
    drop(bars);
    let roots: Vec<Descriptor> = items.iter().map(|i| i.root.clone()).collect();
    copied.image_count = roots
        .iter()
        .map(|r| r.digest().to_string())
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    copied.measure(&staged, &roots).await?;
    show(&copied, out)
}

/// What the images of a source are called in a docker-archive written without names: the
/// layout directory's or archive file's name (lowercase), or the registry repository.
fn image_name(source: &Location) -> String {
    let stem = |path: &Path| {
        let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        path.file_stem()
            .map(|s| s.to_string_lossy().to_lowercase())
            .unwrap_or_default()
    };
    match source {
        Location::Oci { path, .. } => {
            let path = path.canonicalize().unwrap_or_else(|_| path.clone());
            path.file_name()
                .map(|s| s.to_string_lossy().to_lowercase())
                .unwrap_or_default()
        }
        Location::OciArchive { path, .. } | Location::DockerArchive { path, .. } => stem(path),
        Location::Docker { repository, .. } => repository.clone(),
    }
}

/// Copies a registry image to another repository of the same registry: only its manifests
/// pass through the client ([`Client::copy_within`]).
#[allow(clippy::too_many_arguments)]
async fn copy_within_registry(
    source: &Location,
    destination: &Location,
    registry: &str,
    from: &str,
    selector: &Selector,
    to: &str,
    target: &Selector,
    transfer: &TransferArgs,
    out: &Output,
) -> Result<()> {
    let client = transfer.client(registry, false)?;
    let bars = Bars::new(out);
    let options = CopyWithinOptions::new()
        .with_platform(transfer.registry_platform()?)
        .with_progress(bars.progress("copy"));
    let target_text = reference_text(target);
    let report = client
        .copy_within(
            from,
            &reference_text(selector),
            to,
            Some(&target_text),
            &options,
        )
        .await
        .with_context(|| format!("cannot copy {source} to {destination}"))?;
    drop(bars);
    let root = report.root.context("the copy reported no image")?;
    let label = match target {
        Selector::Tag(tag) => tag.as_str(),
        Selector::Digest(_) => "(by digest)",
    };
    let copied = Copied {
        source: source.to_string(),
        destination: destination.to_string(),
        images: vec![format!("{label} {}", root.digest())],
        blobs: report.blobs,
        bytes: report.total_bytes,
        blobs_copied: report.transferred,
        blobs_mounted: report.mounted,
        blobs_skipped: report.skipped,
        image_count: 1,
        tags: usize::from(matches!(target, Selector::Tag(_))),
        ..Copied::default()
    };
    show(&copied, out)
}

/// Pulls a registry image straight into a layout (no scratch copy).
#[allow(clippy::too_many_arguments)]
async fn pull_into_layout(
    source: &Location,
    registry: &str,
    repository: &str,
    selector: &Selector,
    destination: &Location,
    path: &Path,
    wanted: Option<&Selector>,
    transfer: &TransferArgs,
    out: &Output,
) -> Result<()> {
    let tag = match (wanted, selector) {
        (Some(Selector::Tag(tag)), _) | (None, Selector::Tag(tag)) => tag.clone(),
        (Some(Selector::Digest(_)), _) => {
            bail!("the destination takes a tag (oci:PATH:TAG), not a digest")
        }
        (None, Selector::Digest(_)) => {
            bail!("name a tag for the destination (oci:PATH:TAG): the source is named by digest")
        }
    };
    let client = transfer.client(registry, true)?;
    let target = Layout::create_or_stage(path)
        .await
        .with_context(|| format!("cannot open or create the layout at {}", path.display()))?;
    let bars = Bars::new(out);
    let pulled = async {
        client
            .pull(
                repository,
                &reference_text(selector),
                target.layout(),
                &tag,
                &transfer.pull_options(&bars)?,
            )
            .await
            .with_context(|| format!("cannot pull {source}"))
    }
    .await;
    drop(bars);
    let (layout, report) = match pulled {
        Ok(report) => (commit(target, path).await?, report),
        Err(e) => {
            target.discard().await;
            return Err(e);
        }
    };
    let root = report.root.context("the pull reported no image")?;
    let mut copied = Copied {
        source: source.to_string(),
        destination: destination.to_string(),
        images: vec![format!("{tag} {}", root.digest())],
        blobs_copied: report.transferred,
        blobs_skipped: report.skipped,
        image_count: 1,
        tags: 1,
        ..Copied::default()
    };
    copied.measure(&layout, std::slice::from_ref(&root)).await?;
    show(&copied, out)
}

/// Puts a layout written by a copy in place (a new one appears only now), or removes a new
/// one when the copy failed: a failed copy leaves the destination as it was.
async fn commit_or_discard(
    target: StagedLayout,
    written: Result<()>,
    path: &Path,
) -> Result<Layout> {
    match written {
        Ok(()) => commit(target, path).await,
        Err(e) => {
            target.discard().await;
            Err(e)
        }
    }
}

async fn commit(target: StagedLayout, path: &Path) -> Result<Layout> {
    target
        .commit()
        .await
        .with_context(|| format!("cannot put the new layout in place at {}", path.display()))
}

fn show(copied: &Copied, out: &Output) -> Result<()> {
    out.show(copied, || {
        let mut how = Vec::new();
        if copied.blobs_skipped > 0 {
            how.push(format!("{} already present", copied.blobs_skipped));
        }
        if copied.blobs_mounted > 0 {
            how.push(format!("{} mounted", copied.blobs_mounted));
        }
        if copied.layers_recompressed > 0 {
            how.push(format!(
                "{} recompressed",
                plural(copied.layers_recompressed, "layer")
            ));
        }
        let how = if how.is_empty() {
            String::new()
        } else {
            format!(" ({})", how.join(", "))
        };
        // One image under several names is one image: the names are counted apart.
        let images = plural(copied.image_count, "image");
        let images = if copied.tags > copied.image_count {
            format!("{images} ({})", plural(copied.tags, "tag"))
        } else {
            images
        };
        format!(
            "copied {images} from {} to {}: {}, {}{how}",
            copied.source,
            copied.destination,
            plural(copied.blobs, "blob"),
            human_size(copied.bytes)
        )
    })
}

/// `n` and `noun`, plural unless `n` is 1 ("1 image", "3 images").
pub(crate) fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("{n} {noun}")
    } else {
        format!("{n} {noun}s")
    }
}
