//! `login` and `logout`: credentials in Docker's `config.json` (or the credential helper it
//! names: `credHelpers`, `credsStore`), shared with docker, podman and skopeo, and used by
//! `copy`, `pull` and `push` when no `--creds` are given.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use ocikit::client::{Credentials, DockerConfig};
use serde::Serialize;

use crate::output::Output;

/// Arguments of `login`.
#[derive(Debug, clap::Args)]
pub(crate) struct LoginArgs {
    /// The registry: HOST[:PORT].
    registry: String,
    /// The user name.
    #[arg(short, long)]
    username: String,
    /// The password (visible to other users of this machine; prefer --password-stdin).
    #[arg(short, long, conflicts_with = "password_stdin")]
    password: Option<String>,
    /// Read the password from standard input.
    #[arg(long)]
    password_stdin: bool,
    #[command(flatten)]
    tls: super::copy::TlsArgs,
    /// The credentials file (default: $DOCKER_CONFIG/config.json, else ~/.docker/config.json).
    #[arg(long, value_name = "PATH")]
    authfile: Option<PathBuf>,
}

/// The registry part of `HOST[:PORT]` or `docker://HOST[:PORT][/...]`.
fn registry_name(text: &str) -> Result<String> {
    let text = text.strip_prefix("docker://").unwrap_or(text);
    let host = text.split('/').next().unwrap_or("");
    if host.is_empty() {
        bail!("name a registry: HOST[:PORT]");
    }
    ocikit::digest::reference::validate_registry(host)
        .with_context(|| format!("`{host}` is not a registry host[:port]"))?;
    Ok(ocikit::digest::reference::api_host(host).to_string())
}

/// The credentials file: `--authfile`, else Docker's.
pub(crate) fn config_path(authfile: Option<&PathBuf>) -> Result<PathBuf> {
    match authfile {
        Some(path) => Ok(path.clone()),
        None => DockerConfig::default_path().context(
            "cannot find Docker's config.json: set DOCKER_CONFIG or HOME, or pass --authfile",
        ),
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LoggedIn {
    registry: String,
    username: String,
    config: String,
    /// The credential helper that keeps the secret, when config.json names one.
    helper: Option<String>,
}

pub(crate) async fn login(args: LoginArgs, out: &Output) -> Result<()> {
    let registry = registry_name(&args.registry)?;
    let password = match (args.password, args.password_stdin) {
        (Some(password), _) => password,
        (None, true) => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("cannot read the password from standard input")?;
            text.trim_end_matches(['\r', '\n']).to_string()
        }
        (None, false) => bail!("give the password with --password-stdin (or --password)"),
    };
    if args.username.is_empty() || args.username.contains(':') {
        bail!("the user name must be non-empty and hold no `:`");
    }
    let credentials = Credentials::new(args.username.clone(), password);
    let client = args
        .tls
        .client(&registry)
        .credentials(Some(credentials.clone()))
        .build()
        .with_context(|| format!("cannot set up a client for {registry}"))?;
    match client.ping().await {
        Ok(()) => {}
        Err(e @ ocikit::client::Error::Unauthorized { .. }) => {
            return Err(anyhow::Error::new(e).context(format!(
                "cannot log in to {registry}: it refused the credentials of {}",
                args.username
            )));
        }
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!("cannot log in to {registry}")));
        }
    }
    let path = config_path(args.authfile.as_ref())?;
    let mut config = DockerConfig::load(&path)?;
    let helper = config.store(&registry, &credentials)?;
    config.save()?;
    let shown = LoggedIn {
        registry,
        username: args.username,
        config: path.display().to_string(),
        helper,
    };
    out.show(&shown, || {
        let kept = match &shown.helper {
            Some(helper) => format!("credential helper docker-credential-{helper}"),
            None => shown.config.clone(),
        };
        format!(
            "logged in to {} as {} (credentials in {kept})",
            shown.registry, shown.username
        )
    })
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LoggedOut {
    registry: String,
    removed: bool,
}

pub(crate) async fn logout(registry: &str, authfile: Option<&PathBuf>, out: &Output) -> Result<()> {
    let registry = registry_name(registry)?;
    let path = config_path(authfile)?;
    let mut config = DockerConfig::load(&path)?;
    let removed = config.erase(&registry)?;
    if removed {
        config.save()?;
    }
    let shown = LoggedOut { registry, removed };
    out.show(&shown, || {
        if shown.removed {
            format!("logged out of {}", shown.registry)
        } else {
            format!("not logged in to {}", shown.registry)
        }
    })
}
