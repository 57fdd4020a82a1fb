//! `mutate`: an image's config and manifest annotations changed, its layers untouched, by
//! [`ocikit::transport::mutate`]; this module parses the flags and renders the report.

use std::path::PathBuf;

use anyhow::{Context, Result};
use ocikit::layout::{ConfigChanges, PlatformQuery};
use ocikit::transport::{Location, MutateOptions, MutateReport};

use super::image::{key_value, words};
use super::tls::TlsArgs;
use crate::bars::Bars;
use crate::output::Output;
use crate::output::plural;

/// What `ocikit mutate` was asked for.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Within one registry only the new config and manifest are uploaded: the \
    layers are found in the destination repository or mounted from the source's. Within one \
    layout only those two blobs are written. Anywhere else the image goes through scratch \
    space, as `copy` moves it.\n\n\
    Where ocikit differs from crane: an index needs --platform (crane picks linux/amd64), and \
    --entrypoint keeps the command (crane, as docker, clears it unless --cmd is given too).\n\n\
    Examples:\n  ocikit mutate oci:./images:v1 --tag oci:./images:v2 --env MODE=production \
    --label team=infra\n  \
    ocikit mutate docker://registry.example/app:v1 --tag docker://registry.example/app:v1-debug \
    --entrypoint '[\"/bin/sh\",\"-c\"]' --cmd '[\"sleep infinity\"]'\n  \
    ocikit mutate oci-archive:./app.tar:v1 --tag oci:./images:v2 --env-rm DEBUG --expose 8080/tcp\n  \
    ocikit mutate docker://registry.example/multi:v1 --platform linux/arm64 \
    --tag docker://registry.example/multi:v1-arm64 --created 2024-05-01T12:00:00Z"
)]
pub(crate) struct MutateArgs {
    /// The image: oci:PATH:TAG, oci:PATH@DIGEST, oci-archive:FILE[:TAG|@DIGEST],
    /// docker-archive:FILE[:NAME:TAG] or docker://HOST[:PORT]/NAME[:TAG|@DIGEST].
    source: String,
    /// Where the changed image goes, tagged: oci:PATH:TAG (a missing layout is created),
    /// oci-archive:FILE:TAG, docker-archive:FILE:NAME:TAG or docker://HOST[:PORT]/NAME:TAG.
    #[arg(long, short)]
    tag: String,
    /// Set environment variables, KEY=VALUE (a KEY already set is replaced in place).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Remove environment variables.
    #[arg(long = "env-rm", value_name = "KEY")]
    env_rm: Vec<String>,
    /// The entrypoint: a JSON array (`["/bin/app","--flag"]`) or one program path.
    #[arg(long)]
    entrypoint: Option<String>,
    /// The default command: a JSON array or one word.
    #[arg(long)]
    cmd: Option<String>,
    /// Set labels, KEY=VALUE.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    labels: Vec<String>,
    /// Remove labels.
    #[arg(long = "label-rm", value_name = "KEY")]
    labels_rm: Vec<String>,
    /// Set manifest annotations, KEY=VALUE (OCI manifests only).
    #[arg(long = "annotation", value_name = "KEY=VALUE")]
    annotations: Vec<String>,
    /// Remove manifest annotations.
    #[arg(long = "annotation-rm", value_name = "KEY")]
    annotations_rm: Vec<String>,
    /// The user (name, uid, or uid:gid).
    #[arg(long)]
    user: Option<String>,
    /// The working directory.
    #[arg(long)]
    workdir: Option<String>,
    /// Expose ports, like 8080/tcp.
    #[arg(long = "expose", value_name = "PORT[/PROTO]")]
    expose: Vec<String>,
    /// Stop exposing ports.
    #[arg(long = "expose-rm", value_name = "PORT[/PROTO]")]
    expose_rm: Vec<String>,
    /// os/arch[/variant]: the image to change in an index (which becomes a single image),
    /// or, for a single image, the platform to set in its config.
    #[arg(long)]
    platform: Option<String>,
    /// The creation time to set, RFC 3339 (2024-05-01T12:00:00Z).
    #[arg(long, value_name = "TIME")]
    created: Option<String>,
    /// The author to set.
    #[arg(long)]
    author: Option<String>,
    #[command(flatten)]
    tls: TlsArgs,
    /// Registry credentials (default: what `ocikit login` stored, else anonymous).
    #[arg(long, value_name = "USER:PASSWORD")]
    creds: Option<String>,
    /// The credentials file for registries without --creds (default:
    /// $DOCKER_CONFIG/config.json, else ~/.docker/config.json; see `ocikit login`).
    #[arg(long, value_name = "PATH")]
    authfile: Option<PathBuf>,
}

impl MutateArgs {
    /// The changes the flags ask for.
    fn changes(&self) -> Result<ConfigChanges> {
        let mut changes = ConfigChanges::new();
        for text in &self.env {
            let (k, v) = key_value(text, "--env")?;
            changes = changes.env(k, v);
        }
        for text in &self.labels {
            let (k, v) = key_value(text, "--label")?;
            changes = changes.label(k, v);
        }
        for text in &self.annotations {
            let (k, v) = key_value(text, "--annotation")?;
            changes = changes.annotation(k, v);
        }
        changes.env_remove = self.env_rm.clone();
        changes.labels_remove = self.labels_rm.clone();
        changes.annotations_remove = self.annotations_rm.clone();
        changes.entrypoint = self
            .entrypoint
            .as_deref()
            .map(|e| words(e, "--entrypoint"))
            .transpose()?;
        changes.cmd = self.cmd.as_deref().map(|c| words(c, "--cmd")).transpose()?;
        changes.user = self.user.clone();
        changes.working_dir = self.workdir.clone();
        changes.expose = self.expose.clone();
        changes.expose_remove = self.expose_rm.clone();
        changes.created = self
            .created
            .as_deref()
            .map(ocikit::transport::parse_created)
            .transpose()?;
        changes.author = self.author.clone();
        Ok(changes)
    }

    /// The library's options: the same registry options on both sides, the platform.
    fn options(&self, bars: &Bars) -> Result<MutateOptions> {
        edit_options(
            &self.tls,
            self.creds.as_deref(),
            self.authfile.as_ref(),
            self.platform.as_deref(),
            bars,
        )
    }
}

/// The options of an image edit (`mutate`, `append`, `flatten`): the same registry options
/// on both sides (TLS, `--creds` or the credentials file), the platform of an index, the
/// progress bars.
pub(crate) fn edit_options(
    tls: &TlsArgs,
    creds: Option<&str>,
    authfile: Option<&PathBuf>,
    platform: Option<&str>,
    bars: &Bars,
) -> Result<MutateOptions> {
    let registry = tls.with_access(creds, authfile)?;
    let platform = platform
        .map(|text| {
            let platform = ocikit::digest::platform::parse(text)
                .with_context(|| format!("`{text}` is not a platform (os/arch[/variant])"))?;
            Ok::<_, anyhow::Error>(PlatformQuery::new(&platform))
        })
        .transpose()?;
    Ok(MutateOptions::new()
        .with_source(registry.clone())
        .with_destination(registry)
        .with_platform(platform)
        .with_progress(bars.transport()))
}

pub(crate) async fn mutate(args: MutateArgs, out: &Output) -> Result<()> {
    let source = Location::parse(&args.source)?;
    let destination = Location::parse(&args.tag)?;
    let changes = args.changes()?;
    let bars = Bars::new(out);
    let options = args.options(&bars)?;
    let report = ocikit::transport::mutate(&source, &destination, &changes, &options).await;
    drop(bars);
    show(&report?, "mutated", out)
}

/// The report of an image edit as `--json` shows it, its summary line (`VERB SOURCE into
/// DESTINATION: ...`), or (`-q`) the new digest.
pub(crate) fn show(report: &MutateReport, verb: &str, out: &Output) -> Result<()> {
    out.answer(
        report,
        || {
            let mut how = vec![format!("{} written", plural(report.blobs_written, "blob"))];
            if report.blobs_mounted > 0 {
                how.push(format!("{} mounted", report.blobs_mounted));
            }
            if report.blobs_skipped > 0 {
                how.push(format!("{} already present", report.blobs_skipped));
            }
            format!(
                "{verb} {} into {}: {} (config {}; {})",
                report.source,
                report.destination,
                report.image,
                report.config_digest,
                how.join(", ")
            )
        },
        || report.digest.clone(),
    )
}
