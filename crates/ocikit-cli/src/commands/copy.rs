//! `copy` (and its shorthands `import`, `export`, `pull` and `push`): images between any two
//! transports, by [`ocikit::transport::copy`]; this module holds the flags, their hints and
//! the summary.

use std::path::PathBuf;

use anyhow::{Context, Result};
use ocikit::layout::PlatformQuery;
use ocikit::layout::convert::ManifestFormat;
use ocikit::transport::{CopyOptions, CopyReport, Location, RegistryOptions};

use super::tls::TlsArgs;
use crate::bars::Bars;
use crate::commands::image::CompressionArg;
use crate::output::{Output, human_size, plural};

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
    /// Convert the manifests to this format, as skopeo's --format: oci (OCI manifests and
    /// indexes) or v2s2 (Docker schema 2 manifests and manifest lists). Configs and layers
    /// keep their bytes; what the format cannot describe is refused (zstd layers,
    /// artifacts and referrers, i.e. a subject, in v2s2), and so is what else v2s2 has no
    /// field for (annotations, artifactType) unless --drop-annotations (skopeo drops them
    /// silently). Unlike skopeo, oci keeps a Docker config's bytes (skopeo rewrites it as an
    /// OCI config). Default: each image keeps its own.
    #[arg(long, value_enum, value_name = "FORMAT")]
    format: Option<FormatArg>,
    /// With --format v2s2, drop the annotations and artifact types Docker schema 2 has no
    /// field for instead of refusing the conversion (what skopeo does without asking).
    #[arg(long, requires = "format")]
    drop_annotations: bool,
    /// Copy the referrers along (SBOMs, signatures... whose subject is an image copied, and
    /// theirs), as `oras cp -r`: from a registry's referrers API or its referrers tag
    /// schema, or a layout's (or oci-archive's) untagged entries; to a registry by digest (the
    /// subject's sha256-HEX tag index updated where it has no referrers API), untagged into a
    /// layout or an oci-archive. Only those of the platforms copied; each verified before
    /// anything is written; one the destination lists already is skipped. Not with a
    /// docker-archive, --compression or --format.
    #[arg(long)]
    pub(crate) referrers: bool,
    /// Leave the images' cosign signatures behind, as skopeo's --remove-signatures. By
    /// default the signature manifest tagged sha256-HEX.sig beside an image copied (in a
    /// registry repository or a layout) is copied beside it, as it is: its payloads keep
    /// naming the reference that was signed. Archives keep none. A signed image that
    /// --compression or --format would rewrite (a new digest, which none of its signatures
    /// vouches for) is refused before anything is written, unless its signatures are left
    /// behind with this flag.
    #[arg(long)]
    pub(crate) remove_signatures: bool,
    /// Copy only what this trust policy accepts (containers' policy.json:
    /// insecureAcceptAnything, reject, sigstoreSigned with keyPath or keyData and
    /// signedIdentity, scoped by registry and repository or layout directory), checked
    /// before anything is written: a registry image, then read by the digest accepted, or
    /// each image of a layout. Archives hold no signatures and are refused.
    #[arg(long, value_name = "FILE")]
    pub(crate) policy: Option<PathBuf>,
    /// Between two layouts (oci: to oci:), hardlink blobs instead of copying them. Not a
    /// flag of the shared set: only `copy --hardlink` sets it (pull and push have a registry
    /// on one side, nothing to link).
    #[arg(skip)]
    pub(crate) hardlink: bool,
}

/// The manifest formats of `--format`, by skopeo's names.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub(crate) enum FormatArg {
    /// OCI image manifests and indexes.
    Oci,
    /// Docker image manifests, schema 2, and manifest lists.
    V2s2,
}

impl FormatArg {
    /// The library's format.
    fn format(self) -> ManifestFormat {
        match self {
            FormatArg::Oci => ManifestFormat::Oci,
            FormatArg::V2s2 => ManifestFormat::DockerV2S2,
        }
    }
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
            format: None,
            drop_annotations: false,
            referrers: false,
            remove_signatures: false,
            policy: None,
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

    /// The arguments of a command between local locations (`import`, `export`): the
    /// defaults, and `--referrers`.
    pub(crate) fn local(referrers: bool) -> TransferArgs {
        TransferArgs {
            referrers,
            ..TransferArgs::default()
        }
    }

    /// The library's options for the source (`source`) or the destination registry.
    fn registry_options(&self, source: bool) -> Result<RegistryOptions> {
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
        tls.with_access(creds.as_deref(), self.authfile.as_ref())
    }

    /// The library's options for the source registry (`inspect`, `tags`, `referrers`).
    pub(crate) fn source_options(&self) -> Result<RegistryOptions> {
        self.registry_options(true)
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

    /// The library's copy options these flags make, with progress drawn on `bars`.
    fn options(&self, bars: &Bars) -> Result<CopyOptions> {
        Ok(CopyOptions::new()
            .with_source(self.registry_options(true)?)
            .with_destination(self.registry_options(false)?)
            .with_platform(self.platform()?)
            .with_all_platforms(self.all)
            .with_compression(self.compression.map(CompressionArg::compression))
            .with_compression_level(self.compression_level)
            .with_format(self.format.map(FormatArg::format))
            .with_drop_annotations(self.drop_annotations)
            .with_hardlink(self.hardlink)
            .with_referrers(self.referrers)
            .with_signatures(!self.remove_signatures)
            .with_progress(bars.transport()))
    }
}

pub(crate) async fn copy(
    source: &Location,
    destination: &Location,
    transfer: &TransferArgs,
    out: &Output,
) -> Result<()> {
    let policy = match &transfer.policy {
        Some(path) => Some(ocikit::transport::load_policy(path).await?),
        None => None,
    };
    let bars = Bars::new(out);
    let options = transfer.options(&bars)?.with_policy(policy);
    let report = ocikit::transport::copy(source, destination, &options).await;
    drop(bars);
    let report = report.map_err(|err| match err {
        same @ ocikit::transport::Error::SameLayout { .. } => {
            anyhow::Error::new(same).context("use `ocikit tag` to add a tag to a layout's image")
        }
        other => anyhow::Error::new(other),
    })?;
    show(&report, out)
}

/// The report as `--json` shows it (the report's own serialization), or its summary line.
fn show(copied: &CopyReport, out: &Output) -> Result<()> {
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
        let referrers = match copied.referrers {
            None => String::new(),
            Some(r) if r.skipped == 0 => format!("; {}", plural(r.copied, "referrer")),
            Some(r) => format!(
                "; {} ({} already present)",
                plural(r.copied + r.skipped, "referrer"),
                r.skipped
            ),
        };
        let signatures = match copied.signatures {
            0 => String::new(),
            n => format!("; {} copied along", plural(n, "signature manifest")),
        };
        format!(
            "copied {images} from {} to {}: {}, {}{how}{referrers}{signatures}",
            copied.source,
            copied.destination,
            plural(copied.blobs, "blob"),
            human_size(copied.bytes)
        )
    })
}
