//! `artifact push`, `artifact pull`: files as artifacts, as oras moves them.

use std::path::PathBuf;

use anyhow::{Result, bail};
use ocikit::transport::{ArtifactFile, ArtifactPullOptions, ArtifactPushOptions, RegistryOptions};

use crate::location::Location;
use crate::output::{Output, human_size};

/// What `ocikit artifact` was asked for.
#[derive(Debug, clap::Args)]
pub(crate) struct ArtifactArgs {
    #[command(subcommand)]
    command: ArtifactCommand,
}

#[derive(Debug, clap::Subcommand)]
enum ArtifactCommand {
    /// Push files as an artifact: an OCI 1.1 image manifest with an artifactType, the
    /// empty config (unless --config), one layer per file titled with its file name
    /// (org.opencontainers.image.title), as `oras push` writes it.
    #[command(
        after_help = "Examples:\n  ocikit artifact push docker://127.0.0.1:5000/notes:v1 --artifact-type application/vnd.example.notes readme.md:text/markdown data.bin\n  \
        ocikit artifact push oci:./images:sbom --annotation org.opencontainers.image.source=https://example.org sbom.json:application/spdx+json"
    )]
    Push(PushArgs),
    /// Restore the files of an artifact (its layers titled with
    /// org.opencontainers.image.title) into a directory, as `oras pull` does. A title with
    /// `..`, an absolute path, a NUL or an empty component, or whose path goes through a
    /// symbolic link in DIR, is refused with nothing written; existing files are refused
    /// unless --overwrite. Layers without a title are skipped.
    #[command(
        after_help = "Example:\n  ocikit artifact pull docker://127.0.0.1:5000/notes:v1 ./notes"
    )]
    Pull(PullArgs),
}

/// Registry access for one side.
#[derive(Debug, clap::Args)]
struct Access {
    #[command(flatten)]
    tls: super::tls::TlsArgs,
    /// Credentials (default: what `ocikit login` stored, else anonymous).
    #[arg(long, value_name = "USER:PASSWORD")]
    creds: Option<String>,
    /// The credentials file (default: $DOCKER_CONFIG/config.json, else ~/.docker/config.json).
    #[arg(long, value_name = "PATH")]
    authfile: Option<PathBuf>,
}

impl Access {
    fn options(&self) -> Result<RegistryOptions> {
        self.tls
            .with_access(self.creds.as_deref(), self.authfile.as_ref())
    }
}

#[derive(Debug, clap::Args)]
struct PushArgs {
    /// Where: docker://HOST[:PORT]/NAME[:TAG], oci:PATH[:TAG] (made if missing; without a
    /// tag only with --subject) or oci-archive:FILE[:TAG].
    destination: String,
    /// The files, FILE[:MEDIATYPE] each (default media type
    /// application/vnd.oci.image.layer.v1.tar, as oras).
    #[arg(required = true)]
    files: Vec<String>,
    /// The artifact's type, a media type (default application/vnd.unknown.artifact.v1, as
    /// oras).
    #[arg(long, value_name = "MEDIATYPE")]
    artifact_type: Option<String>,
    /// A manifest annotation, KEY=VALUE (repeatable).
    #[arg(long = "annotation", value_name = "KEY=VALUE")]
    annotations: Vec<String>,
    /// A config file instead of the empty config (default media type
    /// application/vnd.unknown.config.v1+json, as oras).
    #[arg(long, value_name = "FILE[:MEDIATYPE]")]
    config: Option<String>,
    /// The manifest the artifact refers to (its subject): a tag or digest in the
    /// destination's layout or repository.
    #[arg(long, value_name = "TAG|DIGEST")]
    subject: Option<String>,
    #[command(flatten)]
    access: Access,
}

#[derive(Debug, clap::Args)]
struct PullArgs {
    /// The artifact: docker://HOST[:PORT]/NAME[:TAG|@DIGEST] or oci:PATH:TAG|@DIGEST.
    source: String,
    /// The directory to restore the files into (made if missing).
    dir: PathBuf,
    /// Replace files that exist already (a symbolic link is refused all the same).
    #[arg(long)]
    overwrite: bool,
    #[command(flatten)]
    access: Access,
}

/// `KEY=VALUE` pairs, as `--annotation` takes them.
pub(crate) fn annotations(pairs: &[String]) -> Result<Vec<(String, String)>> {
    pairs
        .iter()
        .map(|a| match a.split_once('=') {
            Some((k, v)) => Ok((k.to_string(), v.to_string())),
            None => bail!("--annotation `{a}` is not KEY=VALUE"),
        })
        .collect()
}

pub(crate) async fn run(args: ArtifactArgs, out: &Output) -> Result<()> {
    match args.command {
        ArtifactCommand::Push(args) => push(args, out).await,
        ArtifactCommand::Pull(args) => pull(args, out).await,
    }
}

async fn push(args: PushArgs, out: &Output) -> Result<()> {
    let destination = Location::parse(&args.destination)?;
    let files: Vec<ArtifactFile> = args.files.iter().map(|f| ArtifactFile::parse(f)).collect();
    let mut options = ArtifactPushOptions::new()
        .with_artifact_type(args.artifact_type)
        .with_config(args.config.as_deref().map(ArtifactFile::parse))
        .with_subject(args.subject)
        .with_registry(args.access.options()?);
    for (k, v) in annotations(&args.annotations)? {
        options = options.with_annotation(k, v);
    }
    let pushed = ocikit::transport::artifact_push(&destination, &files, &options).await?;
    out.answer(
        &pushed,
        || {
            let mut text = String::new();
            for f in &pushed.files {
                text.push_str(&format!(
                    "{}  {}  {}\n",
                    f.digest,
                    human_size(f.size),
                    f.title
                ));
            }
            text.push_str(&format!(
                "pushed {} ({}) to {destination}",
                pushed.digest, pushed.artifact_type
            ));
            text
        },
        || format!("{}\n", pushed.digest),
    )
}

async fn pull(args: PullArgs, out: &Output) -> Result<()> {
    let source = Location::parse(&args.source)?;
    let options = ArtifactPullOptions::new()
        .with_overwrite(args.overwrite)
        .with_registry(args.access.options()?);
    let pulled = ocikit::transport::artifact_pull(&source, &args.dir, &options).await?;
    out.show(&pulled, || {
        let mut text = String::new();
        for f in &pulled.files {
            text.push_str(&format!(
                "{}  {}  {}\n",
                f.digest,
                human_size(f.size),
                f.title
            ));
        }
        text.push_str(&format!(
            "pulled {} files of {} ({}) into {}",
            pulled.files.len(),
            pulled.digest,
            pulled.artifact_type,
            args.dir.display()
        ));
        if pulled.untitled > 0 {
            text.push_str(&format!(
                "; {} layers without a title skipped",
                pulled.untitled
            ));
        }
        text
    })
}
