//! The commands, one module per group.

pub(crate) mod append;
pub(crate) mod artifact;
pub(crate) mod copy;
pub(crate) mod flatten;
pub(crate) mod health;
pub(crate) mod image;
pub(crate) mod index;
mod inspect;
mod layout;
pub(crate) mod login;
pub(crate) mod manage;
pub(crate) mod mutate;
pub(crate) mod rebase;
pub(crate) mod registry;
pub(crate) mod repack;
pub(crate) mod serve;
pub(crate) mod sign;
pub(crate) mod snapshot;
pub(crate) mod sync;
pub(crate) mod tls;
pub(crate) mod unpack;

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Result, bail};
use ocikit::digest::oci_spec::image::Descriptor;
use ocikit::layout::Layout;

use crate::Command;
use crate::location::{Location, Selector};
use crate::output::Output;

pub(crate) async fn run(command: Command, out: &Output) -> Result<ExitCode> {
    match command {
        Command::Fsck {
            layout: location,
            diff_ids,
        } => {
            return health::fsck(&Location::parse(&location)?, diff_ids, out).await;
        }
        Command::Build(args) => image::build(args, out).await,
        Command::Unpack(args) => unpack::unpack(args, out).await,
        Command::Gc {
            layout: location,
            dry_run,
            grace,
        } => health::gc(&Location::parse(&location)?, dry_run, grace, out).await,
        Command::Attach(args) => health::attach(args, out).await,
        Command::Artifact(args) => artifact::run(args, out).await,
        Command::Serve(args) => serve::serve(*args, out).await,
        Command::RegistryGc {
            root,
            s3,
            dry_run,
            repositories,
            gc,
        } => registry::gc(root.as_deref(), &s3, dry_run, repositories, &gc, out).await,
        Command::Diff { image, rootfs } => {
            repack::diff(&Location::parse(&image)?, &rootfs, out).await
        }
        Command::Repack(args) => repack::repack(args, out).await,
        Command::Mutate(args) => mutate::mutate(args, out).await,
        Command::Append(args) => append::append(args, out).await,
        Command::Flatten(args) => flatten::flatten(args, out).await,
        Command::Rebase(args) => rebase::rebase(args, out).await,
        Command::Sync(args) => return sync::sync(args, out).await,
        Command::Key(command) => sign::key(command, out).await,
        Command::Sign(args) => sign::sign(args, out).await,
        Command::Verify(args) => sign::verify(args, out).await,
        Command::Index(command) => index::run(command, out).await,
        Command::Snapshot(command) => snapshot::run(command, out).await,
        Command::Copy {
            source,
            destination,
            mut transfer,
            hardlink,
        } => {
            let source = Location::parse(&source)?;
            let destination = Location::parse(&destination)?;
            if hardlink
                && !matches!(
                    (&source, &destination),
                    (Location::Oci { .. }, Location::Oci { .. })
                )
            {
                bail!(
                    "--hardlink acts only between two layouts (oci: to oci:), not from {source} to {destination}"
                );
            }
            transfer.hardlink = hardlink;
            copy::copy(&source, &destination, &transfer, out).await
        }
        Command::Pull {
            image,
            layout,
            transfer,
        } => {
            let source = Location::parse(&image)?;
            if !matches!(source, Location::Docker { .. }) {
                bail!("pull reads from a registry (docker://HOST/NAME:TAG), not `{source}`");
            }
            let destination = Location::parse(&layout)?;
            if matches!(destination, Location::Docker { .. }) {
                bail!("pull writes a layout or an archive, not `{destination}`; use copy");
            }
            copy::copy(&source, &destination, &transfer, out).await
        }
        Command::Login(args) => login::login(args, out).await,
        Command::Logout { registry, authfile } => {
            login::logout(&registry, authfile.as_ref(), out).await
        }
        Command::Push {
            image,
            destination,
            transfer,
        } => {
            let source = Location::parse(&image)?;
            if matches!(source, Location::Docker { .. }) {
                bail!("push reads a layout or an archive, not `{source}`; use copy");
            }
            let destination = Location::parse(&destination)?;
            if !matches!(destination, Location::Docker { .. }) {
                bail!("push writes to a registry (docker://HOST/NAME:TAG), not `{destination}`");
            }
            copy::copy(&source, &destination, &transfer, out).await
        }
        Command::Import {
            archive,
            layout,
            referrers,
        } => {
            let source = Location::parse(&archive)?;
            if matches!(source, Location::Oci { .. }) {
                anyhow::bail!(
                    "import reads an archive (oci-archive: or docker-archive:), not `{source}`"
                );
            }
            let destination = Location::parse(&layout)?;
            destination.oci("import")?;
            let transfer = copy::TransferArgs::local(referrers);
            copy::copy(&source, &destination, &transfer, out).await
        }
        Command::Export {
            layout,
            archive,
            referrers,
        } => {
            let source = Location::parse(&layout)?;
            source.oci("export")?;
            let destination = Location::parse(&archive)?;
            if matches!(destination, Location::Oci { .. }) {
                anyhow::bail!(
                    "export writes an archive (oci-archive: or docker-archive:), not `{destination}`"
                );
            }
            let transfer = copy::TransferArgs::local(referrers);
            copy::copy(&source, &destination, &transfer, out).await
        }
        Command::Referrers {
            image,
            artifact_type,
            tree,
            depth,
            registry,
        } => {
            health::referrers(
                &Location::parse(&image)?,
                artifact_type.as_deref(),
                depth
                    .map(usize::from)
                    .or(tree.then_some(ocikit::transport::MAX_REFERRER_DEPTH)),
                &registry.transfer(),
                out,
            )
            .await
        }
        Command::Init { layout: location } => layout::init(&Location::parse(&location)?, out).await,
        Command::Ls { layout: location } => layout::ls(&Location::parse(&location)?, out).await,
        Command::Tag { image, tag } => layout::tag(&Location::parse(&image)?, &tag, out).await,
        Command::Untag { image } => layout::untag(&Location::parse(&image)?, out).await,
        Command::Inspect {
            image,
            raw,
            config,
            registry,
        } => {
            let transfer = registry.transfer();
            inspect::inspect(&Location::parse(&image)?, raw, config, &transfer, out).await
        }
        Command::Tags {
            repository,
            select,
            registry,
        } => {
            let location = Location::parse(&repository)?;
            manage::tags(&location, &select, &registry.transfer(), out).await
        }
        Command::Delete(args) => manage::delete(args, out).await,
        Command::Catalog(args) => manage::catalog(args, out).await,
        Command::Cat {
            layout: location,
            digest,
        } => inspect::cat(&Location::parse(&location)?, &digest).await,
        Command::Completions { shell } => {
            let mut command = <crate::Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "ocikit", &mut std::io::stdout());
            Ok(())
        }
    }?;
    Ok(ExitCode::SUCCESS)
}

/// Opens an existing layout directory, without creating anything when there is none.
pub(crate) async fn open_layout(path: &Path) -> Result<Layout> {
    Ok(ocikit::transport::open_layout(path).await?)
}

/// The descriptor a selector names in the layout at `path`: a tag's entry (a missing tag
/// named with that layout), or the index entry (or stored manifest) with that digest.
pub(crate) async fn resolve_at(
    path: &Path,
    layout: &Layout,
    selector: Option<&Selector>,
) -> Result<Descriptor> {
    Ok(ocikit::transport::resolve(layout, path, selector).await?)
}
