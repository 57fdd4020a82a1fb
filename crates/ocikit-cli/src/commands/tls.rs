//! The TLS and access flags of the commands that talk to registries (`--tls-verify`,
//! `--cert-dir`, `--creds`…), turned into [`RegistryOptions`] and client builders, and the
//! hints added to an error when a registry spoke plain HTTP, presented a certificate that
//! does not verify, or wanted credentials.

use std::path::PathBuf;

use anyhow::{Context, Result};
use ocikit::client::{ClientBuilder, Credentials};
use ocikit::transport::RegistryOptions;

/// How to reach one registry over TLS, for the commands that talk to one (`inspect`, `tags`,
/// `referrers`, `login`); `copy` has a `--src-` and a `--dest-` variant of each.
#[derive(Clone, Debug, clap::Args)]
pub(crate) struct TlsArgs {
    /// Verify the registry's TLS certificate; `false` accepts any certificate, and plain
    /// HTTP if the registry does not speak HTTPS (for test registries: credentials and
    /// content then travel unprotected).
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true")]
    pub(crate) tls_verify: bool,
    /// Trust the certificate authorities in DIR/*.crt, and present DIR/NAME.cert with
    /// DIR/NAME.key if the registry asks for a client certificate (as skopeo).
    #[arg(long, value_name = "DIR")]
    pub(crate) cert_dir: Option<PathBuf>,
    /// Trust the certificate authorities of this PEM file as well as the system's.
    #[arg(long, value_name = "FILE")]
    pub(crate) ca_file: Option<PathBuf>,
}

impl TlsArgs {
    /// The library's options for a registry reached as these flags say (no credentials).
    pub(crate) fn registry_options(&self) -> RegistryOptions {
        RegistryOptions::new()
            .with_tls_verify(self.tls_verify)
            .with_cert_dir(self.cert_dir.clone())
            .with_ca_file(self.ca_file.clone())
    }

    /// [`TlsArgs::registry_options`] with `--creds USER:PASSWORD` (when given) and
    /// `--authfile` (where stored credentials are looked up).
    pub(crate) fn with_access(
        &self,
        creds: Option<&str>,
        authfile: Option<&PathBuf>,
    ) -> Result<RegistryOptions> {
        let credentials = creds
            .map(|text| Credentials::parse(text).context("write credentials as USER:PASSWORD"))
            .transpose()?;
        Ok(self
            .registry_options()
            .with_credentials(credentials)
            .with_authfile(authfile.cloned()))
    }

    /// A client builder for `registry` set up as these flags say.
    pub(crate) fn client(&self, registry: &str) -> ClientBuilder {
        self.registry_options().builder(registry)
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
