//! `key generate`, `sign` and `verify`: cosign-compatible signatures, by
//! [`ocikit::transport::generate_key_files`], [`ocikit::transport::sign`] and
//! [`ocikit::transport::verify`]; this module reads the passphrase and the keys, and renders.
//!
//! The passphrase comes, as cosign takes it, from `COSIGN_PASSWORD` (even empty), else
//! `--passphrase-file FILE` (its first line), else a prompt on the terminal (echo off, with
//! rustix's termios: no crate of its own for twenty lines). Without any of them, and
//! without a terminal, the command stops and says so.

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use ocikit::digest::Reference;
use ocikit::transport::{RegistryOptions, SignOptions, VerifyOptions};
use zeroize::Zeroizing;

use crate::location::Location;
use crate::output::Output;

/// The environment variable cosign reads the passphrase from.
const PASSWORD_VAR: &str = "COSIGN_PASSWORD";

/// `ocikit key ...`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum KeyCommand {
    /// Generate an ECDSA P-256 key pair in cosign's files: DIR/cosign.key (encrypted with a
    /// passphrase, mode 0600) and DIR/cosign.pub.
    ///
    /// The passphrase comes from COSIGN_PASSWORD, else --passphrase-file, else a prompt on
    /// the terminal (asked twice). Existing key files are never overwritten.
    #[command(after_help = "Example:\n  COSIGN_PASSWORD=... ocikit key generate --out ./keys")]
    Generate(GenerateArgs),
}

/// `ocikit key generate`.
#[derive(Debug, clap::Args)]
pub(crate) struct GenerateArgs {
    /// The directory to write cosign.key and cosign.pub into (made if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    #[command(flatten)]
    passphrase: PassphraseArgs,
}

/// Where the passphrase comes from besides COSIGN_PASSWORD and the terminal.
#[derive(Debug, clap::Args)]
pub(crate) struct PassphraseArgs {
    /// Read the private key's passphrase from the first line of FILE (when COSIGN_PASSWORD
    /// is not set).
    #[arg(long, value_name = "FILE")]
    passphrase_file: Option<PathBuf>,
}

/// Registry access.
#[derive(Debug, clap::Args)]
pub(crate) struct AccessArgs {
    #[command(flatten)]
    tls: super::tls::TlsArgs,
    /// Credentials (default: what `ocikit login` stored, else anonymous).
    #[arg(long, value_name = "USER:PASSWORD")]
    creds: Option<String>,
    /// The credentials file (default: $DOCKER_CONFIG/config.json, else ~/.docker/config.json).
    #[arg(long, value_name = "PATH")]
    authfile: Option<PathBuf>,
}

impl AccessArgs {
    fn options(&self) -> Result<RegistryOptions> {
        self.tls
            .with_access(self.creds.as_deref(), self.authfile.as_ref())
    }
}

/// `ocikit sign`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "The signature is stored as cosign stores it: a layer of the image \
    manifest tagged sha256-<hex>.sig beside the image (in the repository, or in the \
    layout's index.json), appended to the signatures there. An index is signed as a whole \
    (its own digest). The payload claims the image's docker reference (host/repo:tag, or \
    host/repo@digest); a layout has none, so name one with --reference.\n\n\
    Examples:\n  ocikit sign --key cosign.key docker://registry.example/app:v1\n  \
    ocikit sign --key cosign.key --reference registry.example/app:v1 oci:./images:v1"
)]
pub(crate) struct SignArgs {
    /// The private key: cosign's encrypted key file (cosign.key).
    #[arg(long, value_name = "KEY")]
    key: PathBuf,
    /// The image: docker://HOST[:PORT]/NAME[:TAG|@DIGEST], oci:PATH:TAG or oci:PATH@DIGEST.
    image: String,
    /// The docker reference the signature claims (required for a layout; default: the
    /// registry location's).
    #[arg(long, value_name = "REFERENCE")]
    reference: Option<String>,
    #[command(flatten)]
    passphrase: PassphraseArgs,
    #[command(flatten)]
    access: AccessArgs,
}

/// `ocikit verify`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit status 0 when at least one signature verifies with a key given \
    and names this image's digest and (by containers' matchRepoDigestOrExact rule) its \
    reference: the verified payloads are printed. Exit status 1 otherwise, with the reason: \
    no signature, none by these keys, a payload for another manifest, or a claim of \
    another image.\n\n\
    Examples:\n  ocikit verify --key cosign.pub docker://registry.example/app:v1\n  \
    ocikit verify --key cosign.pub --reference registry.example/app:v1 oci:./images:v1 --json"
)]
pub(crate) struct VerifyArgs {
    /// The public key (cosign.pub); repeat to accept signatures by any of several keys.
    #[arg(long, value_name = "PUB", required = true)]
    key: Vec<PathBuf>,
    /// The image: docker://HOST[:PORT]/NAME[:TAG|@DIGEST], oci:PATH:TAG or oci:PATH@DIGEST.
    image: String,
    /// The docker reference the signatures must claim (required for a layout; default: the
    /// registry location's).
    #[arg(long, value_name = "REFERENCE")]
    reference: Option<String>,
    #[command(flatten)]
    access: AccessArgs,
}

pub(crate) async fn key(command: KeyCommand, out: &Output) -> Result<()> {
    let KeyCommand::Generate(args) = command;
    let passphrase = passphrase(&args.passphrase, true)?;
    let keys = ocikit::transport::generate_key_files(&args.out, passphrase.as_bytes())
        .await
        .context("cannot generate a key pair")?;
    out.show(&keys, || {
        format!(
            "private key written to {}\npublic key written to {}\n",
            keys.private_key.display(),
            keys.public_key.display()
        )
    })
}

pub(crate) async fn sign(args: SignArgs, out: &Output) -> Result<()> {
    let location = Location::parse(&args.image)?;
    let options = SignOptions::new()
        .with_registry(args.access.options()?)
        .with_docker_reference(reference(args.reference.as_deref())?);
    let passphrase = passphrase(&args.passphrase, false)?;
    let key =
        ocikit::transport::signing::load_private_key(&args.key, passphrase.as_bytes()).await?;
    let report = ocikit::transport::sign(&location, &key, &options).await?;
    out.show(&report, || {
        let what = if report.added {
            "signed"
        } else {
            "already signed by this key:"
        };
        format!(
            "{what} {} ({}) as {}\nsignatures: {} in {}\n",
            report.location,
            report.manifest_digest,
            report.docker_reference,
            report.signatures,
            report.signature_tag
        )
    })
}

pub(crate) async fn verify(args: VerifyArgs, out: &Output) -> Result<()> {
    let location = Location::parse(&args.image)?;
    let mut keys = Vec::new();
    for path in &args.key {
        keys.push(ocikit::transport::signing::load_public_key(path).await?);
    }
    let options = VerifyOptions::new()
        .with_registry(args.access.options()?)
        .with_docker_reference(reference(args.reference.as_deref())?);
    let report = ocikit::transport::verify(&location, &keys, &options).await?;
    out.answer(
        &report,
        || {
            let mut text = format!(
                "verified {} of {} signatures of {} ({})\n",
                report.verified.len(),
                report.verified.len() + report.rejected.len(),
                report.location,
                report.manifest_digest
            );
            for verified in &report.verified {
                text.push_str(&verified.payload.to_string());
                text.push('\n');
            }
            text
        },
        || {
            report
                .verified
                .iter()
                .map(|v| format!("{}\n", v.payload))
                .collect()
        },
    )
}

/// `--reference`, parsed.
fn reference(text: Option<&str>) -> Result<Option<Reference>> {
    text.map(|t| {
        Reference::parse(t).with_context(|| format!("--reference {t} is not a docker reference"))
    })
    .transpose()
}

/// A passphrase, wiped when dropped.
type Passphrase = Zeroizing<String>;

/// The passphrase: COSIGN_PASSWORD, else --passphrase-file, else the terminal (asked twice
/// when `confirm`).
fn passphrase(args: &PassphraseArgs, confirm: bool) -> Result<Passphrase> {
    if let Some(value) = std::env::var_os(PASSWORD_VAR) {
        let Some(text) = value.to_str() else {
            bail!("{PASSWORD_VAR} is not UTF-8");
        };
        return Ok(Zeroizing::new(text.to_string()));
    }
    if let Some(path) = &args.passphrase_file {
        return read_passphrase_file(path);
    }
    if !std::io::stdin().is_terminal() {
        bail!(
            "no passphrase: set {PASSWORD_VAR} or give --passphrase-file (there is no terminal to ask on)"
        );
    }
    let first = prompt("Enter passphrase for the private key: ")?;
    if confirm {
        let again = prompt("Enter it again: ")?;
        if *again != *first {
            bail!("the passphrases differ");
        }
    }
    Ok(first)
}

fn read_passphrase_file(path: &Path) -> Result<Passphrase> {
    let text = Zeroizing::new(
        std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the passphrase file {}", path.display()))?,
    );
    let line = text.lines().next().unwrap_or("");
    Ok(Zeroizing::new(line.to_string()))
}

/// Asks on the terminal with echo off, restoring the terminal's settings afterwards.
fn prompt(question: &str) -> Result<Passphrase> {
    use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
    let stdin = std::io::stdin();
    let saved = tcgetattr(&stdin).context("cannot read the terminal's settings")?;
    let mut quiet = saved.clone();
    quiet.local_modes.remove(LocalModes::ECHO);
    quiet.local_modes.insert(LocalModes::ECHONL);
    let mut stderr = std::io::stderr().lock();
    stderr.write_all(question.as_bytes())?;
    stderr.flush()?;
    tcsetattr(&stdin, OptionalActions::Flush, &quiet)
        .context("cannot turn the terminal's echo off")?;
    let mut line = Zeroizing::new(String::new());
    let read = stdin.lock().read_line(&mut line);
    let restored = tcsetattr(&stdin, OptionalActions::Flush, &saved);
    read.context("cannot read the passphrase from the terminal")?;
    restored.context("cannot restore the terminal's settings")?;
    Ok(Zeroizing::new(
        line.trim_end_matches(['\n', '\r']).to_string(),
    ))
}
