//! `login` and `logout`: credentials in Docker's `config.json` (or the credential helper it
//! names: `credHelpers`, `credsStore`), shared with docker, podman and skopeo, and used by
//! `copy`, `pull` and `push` when no `--creds` are given.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use ocikit::client::{self, Credentials, LoginOptions};
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
    tls: super::tls::TlsArgs,
    /// The credentials file (default: $DOCKER_CONFIG/config.json, else ~/.docker/config.json).
    #[arg(long, value_name = "PATH")]
    authfile: Option<PathBuf>,
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
    let registry = client::registry_host(&args.registry)?;
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
    let credentials = Credentials::new(args.username.clone(), password);
    let options = LoginOptions::new().authfile(args.authfile);
    let report = match client::login(args.tls.client(&registry), credentials, &options).await {
        Ok(report) => report,
        Err(e @ client::Error::Unauthorized { .. }) => {
            return Err(anyhow::Error::new(e).context(format!(
                "cannot log in to {registry}: it refused the credentials of {}",
                args.username
            )));
        }
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!("cannot log in to {registry}")));
        }
    };
    let shown = LoggedIn {
        registry: report.registry,
        username: report.username,
        config: report.authfile.display().to_string(),
        helper: report.helper,
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
    let options = LoginOptions::new().authfile(authfile.cloned());
    let report = client::logout(registry, &options)
        .await
        .context("cannot log out")?;
    let shown = LoggedOut {
        registry: report.registry,
        removed: report.removed,
    };
    out.show(&shown, || {
        if shown.removed {
            format!("logged out of {}", shown.registry)
        } else {
            format!("not logged in to {}", shown.registry)
        }
    })
}
