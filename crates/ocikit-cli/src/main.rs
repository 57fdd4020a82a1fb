//! `ocikit`: build, inspect, verify, unpack and move OCI images and artifacts.
//!
//! Image locations follow skopeo's transports: `oci:PATH[:TAG]` (an OCI image layout),
//! `oci-archive:FILE[:TAG|@DIGEST]`, `docker-archive:FILE[:NAME:TAG]`, and registries as
//! `docker://HOST[:PORT]/NAME[:TAG|@DIGEST]`. Every read command takes
//! `--json` for a stable machine-readable shape; errors print their whole cause chain once
//! and exit with status 1 (2 for a usage error).

mod bars;
mod commands;
mod location;
mod output;
mod reference;

use std::process::ExitCode;

use clap::{CommandFactory as _, Parser, Subcommand};

use crate::output::Output;

/// Build, inspect, verify, unpack and move OCI images and artifacts.
#[derive(Debug, Parser)]
#[command(name = "ocikit", version, about, long_about = None, propagate_version = true)]
#[command(
    after_help = "Locations: oci:PATH[:TAG|@DIGEST], oci-archive:FILE[:TAG|@DIGEST], \
    docker-archive:FILE[:NAME:TAG], docker://HOST[:PORT]/NAME[:TAG|@DIGEST].\n\n\
    JSON: every --json output spells its keys in camelCase, as the OCI documents do \
    (mediaType, blobsCopied); documents and annotations shown inside it keep their own keys. \
    -q: read commands print only their answer (tags, digests), others nothing.\n\nExamples:\n  ocikit init oci:./images\n  \
    ocikit ls oci:./images\n  ocikit inspect oci:./images:v1 --config"
)]
struct Cli {
    /// Print machine-readable JSON instead of text (keys in camelCase).
    #[arg(long, global = true)]
    json: bool,
    /// Print nothing but errors, and the answer of a read command (tags, digests).
    #[arg(short, long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create an empty OCI image layout (nothing changes if one is there already).
    #[command(after_help = "Example:\n  ocikit init oci:./images")]
    Init {
        /// The layout: oci:PATH.
        layout: String,
    },
    /// List a layout's images: tags with their digests, sizes and platforms.
    ///
    /// Untagged images (as `skopeo copy ... oci:DIR` without a tag leaves them) are listed
    /// too, with TAG `<none>`: in --json their row has no `tag` key, and -q prints their
    /// digest where it prints the tags of the others. An image a tag names is listed under
    /// its tags only; artifacts attached to an image are listed by `ocikit referrers`.
    #[command(after_help = "Examples:\n  ocikit ls oci:./images\n  ocikit ls oci:./images --json")]
    Ls {
        /// The layout: oci:PATH.
        layout: String,
    },
    /// Point a new tag at an image (moving the tag if it exists).
    #[command(after_help = "Examples:\n  ocikit tag oci:./images:v1 latest\n  \
        ocikit tag oci:./images:v1 oci:./images:stable\n  \
        ocikit tag oci:./images@sha256:... v2")]
    Tag {
        /// The image: oci:PATH:TAG or oci:PATH@DIGEST.
        image: String,
        /// The new tag: TAG, or oci:PATH:TAG with the image's own PATH.
        tag: String,
    },
    /// Remove a tag (the image's blobs go at the next `ocikit gc`).
    #[command(after_help = "Example:\n  ocikit untag oci:./images:old")]
    Untag {
        /// The tag: oci:PATH:TAG.
        image: String,
    },
    /// Show an image: a summary, or its manifest, index or config.
    #[command(after_help = "Examples:\n  ocikit inspect oci:./images:v1\n  \
        ocikit inspect oci:./images:v1 --raw\n  ocikit inspect oci:./images:v1 --config\n  \
        ocikit inspect --raw docker://registry.example/app:v1")]
    Inspect {
        /// The image: oci:PATH:TAG, oci:PATH@DIGEST or docker://HOST/NAME[:TAG|@DIGEST].
        image: String,
        /// Print the manifest (or index) exactly as stored (verified against its digest).
        #[arg(long, conflicts_with = "config")]
        raw: bool,
        /// Print the image config (of the first manifest, for an index).
        #[arg(long)]
        config: bool,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// List a registry repository's tags.
    #[command(
        after_help = "Examples:\n  ocikit tags docker://registry.example/app\n  \
        ocikit tags docker://registry.example/app --filter '^v1\\.' --sort semver"
    )]
    Tags {
        /// The repository: docker://HOST[:PORT]/NAME.
        repository: String,
        #[command(flatten)]
        select: commands::manage::TagsArgs,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Delete an image from a layout or a registry: a tag, or a manifest by digest.
    Delete(commands::manage::DeleteArgs),
    /// List a registry's repositories (every page of its catalog).
    Catalog(commands::manage::CatalogArgs),
    /// Key pairs for signing images, in cosign's files.
    #[command(subcommand)]
    Key(commands::sign::KeyCommand),
    /// Sign an image with a private key; the signature is stored as cosign stores it.
    Sign(commands::sign::SignArgs),
    /// Verify an image's cosign signatures with public keys.
    Verify(commands::sign::VerifyArgs),
    /// Write a blob's bytes to standard output, verified against its digest.
    #[command(after_help = "Example:\n  ocikit cat oci:./images sha256:... > blob")]
    Cat {
        /// The layout: oci:PATH.
        layout: String,
        /// The blob's digest.
        digest: String,
    },
    /// Build an image from directories (or tar files), one layer each.
    Build(commands::image::BuildArgs),
    /// Unpack an image into a root filesystem directory (new or empty), all or nothing, or
    /// write its merged filesystem as one tar stream (--tar).
    ///
    /// The tree is built in a hidden staging directory beside the target
    /// (`.NAME.ocikit-staging-*`) and renamed into place only once every layer was applied
    /// and every digest and diffID matched; on any failure the target is left as it was.
    /// Staging left by a killed run is removed by the next unpack of the same target.
    Unpack(commands::unpack::UnpackArgs),
    /// Verify every blob reachable from index.json; exits 1 when anything is wrong.
    #[command(
        after_help = "Examples:\n  ocikit fsck oci:./images\n  ocikit fsck oci:./images --diff-ids --json"
    )]
    Fsck {
        /// The layout: oci:PATH.
        layout: String,
        /// Also decompress every layer and check its diffID against the image config.
        #[arg(long)]
        diff_ids: bool,
    },
    /// Remove blobs nothing reachable from index.json refers to.
    #[command(
        after_help = "Examples:\n  ocikit gc oci:./images --dry-run\n  ocikit gc oci:./images --grace 10m"
    )]
    Gc {
        /// The layout: oci:PATH.
        layout: String,
        /// Report what would go without removing anything.
        #[arg(long)]
        dry_run: bool,
        /// Keep unreferenced blobs younger than this (writers in flight): `90s`, `30m`,
        /// `1h`, `2d`; plain numbers are seconds.
        #[arg(long, default_value = "1h", value_parser = commands::registry::parse_duration)]
        grace: std::time::Duration,
    },
    /// Attach an artifact (an SBOM, a signature...) to an image as a referrer.
    Attach(commands::health::AttachArgs),
    /// Push and pull plain files as artifacts, as oras does.
    Artifact(commands::artifact::ArtifactArgs),
    /// List the artifacts attached to an image.
    #[command(
        after_help = "Examples:\n  ocikit referrers oci:./images:v1 --artifact-type application/vnd.example.sbom+json\n  \
        ocikit referrers docker://127.0.0.1:5000/app:v1 --tree"
    )]
    Referrers {
        /// The subject image: oci:PATH:TAG, oci:PATH@DIGEST, or
        /// docker://HOST[:PORT]/NAME[:TAG|@DIGEST] (the referrers API, or the referrers tag
        /// schema where the registry has no API).
        image: String,
        /// Only referrers of this artifact type (at every level of a tree).
        #[arg(long)]
        artifact_type: Option<String>,
        /// Show the whole tree: the referrers of each referrer too, as `oras discover` does
        /// (16 levels at most).
        #[arg(long)]
        tree: bool,
        /// Show the tree down to this many levels (1: the referrers of the image only).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=16))]
        depth: Option<u16>,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// List what changed in a root filesystem since it was unpacked from an image.
    #[command(after_help = "Example:\n  ocikit diff oci:./images:v1 ./rootfs")]
    Diff {
        /// The image: oci:PATH:TAG or oci:PATH@DIGEST.
        image: String,
        /// The root filesystem.
        rootfs: std::path::PathBuf,
    },
    /// Add what changed in a root filesystem as a new layer on top of its image.
    Repack(commands::repack::RepackArgs),
    /// Change an image's config (env, entrypoint, cmd, labels, user, workdir, ports,
    /// platform, created, author) and manifest annotations, anywhere: a new config and
    /// manifest, the layers untouched.
    Mutate(commands::mutate::MutateArgs),
    /// Put layers (directories, or tar, tar.gz or tar.zst files) on top of an image,
    /// anywhere: each gets a history entry; within one registry the base's layers are
    /// mounted or found there, never downloaded and uploaded again.
    Append(commands::append::AppendArgs),
    /// Squash every layer of an image into one, anywhere: whiteouts resolved in one
    /// streaming pass, one diffID and one history entry.
    Flatten(commands::flatten::FlattenArgs),
    /// Swap the layers of an image's old base for a new base's, anywhere: diffIDs, history
    /// and the base annotations updated; refused when the image is not built on the old
    /// base.
    Rebase(commands::rebase::RebaseArgs),
    /// Mirror repositories (all tags, or a selection) between registries and directories of
    /// layouts, as `skopeo sync`: incrementally (an image the destination holds already is
    /// skipped without a write), a failed image not stopping the others.
    ///
    /// Names follow skopeo: a repository HOST/PATH/NAME goes to DEST/NAME (DEST/HOST/PATH/NAME
    /// with --scoped, HOST:PORT written HOST_PORT). --dest oci writes one layout per
    /// repository, DIR/NAME, holding its tags (what skopeo's --dest oci writes: skopeo reads
    /// them as oci:DIR/NAME:TAG). --src yaml reads skopeo's sync file (images,
    /// images-by-tag-regex, images-by-semver, tls-verify, cert-dir, credentials); its
    /// semver ranges are read with cargo's rules. An image is compared with the destination
    /// by digest before anything is copied; from an index without --all, the destination
    /// holding the index or the wanted platform's manifest counts as up to date. Cosign
    /// attachments (sha256-<hex>.sig, .att, .sbom tags) of each image go along unless
    /// --remove-signatures. Exits 1 naming the images that failed; run it again to finish.
    #[command(after_help = "Examples:\n  \
        ocikit sync registry.example/team/app mirror.example/team\n  \
        ocikit sync --dest oci --semver '>=1.2, <2' registry.example/app ./mirror\n  \
        ocikit sync --src yaml --dest docker sync.yml 127.0.0.1:5000/mirror --dest-tls-verify=false\n  \
        ocikit sync --src oci --dest docker --scoped ./mirror registry.example --dry-run")]
    Sync(commands::sync::SyncArgs),
    /// Make and edit multi-platform indexes anywhere (layouts, archives, registries): each
    /// entry's platform read from its image's config.
    ///
    /// Where ocikit differs from crane: `index create` makes an OCI index of the images
    /// given as arguments (crane's `index append -m` without a base); an image that is an
    /// index gives its entries, as crane's default `--flatten`; an edited index keeps its
    /// media type (an OCI index takes Docker schema 2 images too, a Docker manifest list no
    /// OCI manifest and no annotations); two entries of one platform are refused (crane
    /// appends them); `append`, `remove` and `annotate` edit the index in place, where it
    /// is tagged (crane's `-t` can write the result elsewhere).
    #[command(subcommand)]
    Index(commands::index::IndexCommand),
    /// Per-layer snapshots for overlayfs: each layer extracted once into a directory named
    /// by its chain ID, shared by every image that has it (`prepare` prints the
    /// `lowerdir=` chain of an image); `ls`, `rm`, and `gc` of what no kept image uses.
    #[command(subcommand)]
    Snapshot(commands::snapshot::SnapshotCommand),
    /// Copy images between any two locations (layouts, oci-archive and docker-archive
    /// files, registries), verifying every blob and skipping what the destination has.
    ///
    /// The summary counts the whole image: every blob it reaches, each once, and their
    /// bytes, whether written, mounted (within one registry, blobs are mounted from the
    /// source repository, not uploaded again) or already present.
    #[command(
        after_help = "Examples:\n  ocikit copy oci:./images:v1 oci:./other:v1\n  \
        ocikit copy oci:./images:v1 oci-archive:./v1.tar\n  \
        ocikit copy docker-archive:./saved.tar:alpine:3 oci:./images:alpine\n  \
        ocikit copy oci:./images oci:./mirror   (every image, tagged or not)\n  \
        ocikit copy --all docker://registry.example/app:v1 oci:./images:app\n  \
        ocikit copy --dest-tls-verify=false oci:./images:v1 docker://127.0.0.1:5000/app:v1"
    )]
    Copy {
        /// Where from.
        source: String,
        /// Where to.
        destination: String,
        #[command(flatten)]
        transfer: commands::copy::TransferArgs,
        /// Between two layouts (oci: to oci:), hardlink blobs instead of copying them (a
        /// reflink where the filesystem has them, else a plain copy): source and destination
        /// share blob files: corrupting one corrupts both.
        #[arg(long)]
        hardlink: bool,
    },
    /// Pull an image from a registry into a layout or an archive (`copy` from docker://).
    #[command(
        after_help = "Examples:\n  ocikit pull docker://registry.example/app:v1 oci:./images:app\n  \
        ocikit pull --src-tls-verify=false --src-creds user:pw docker://127.0.0.1:5000/app:v1 oci:./images"
    )]
    Pull {
        /// The image: docker://HOST[:PORT]/NAME[:TAG|@DIGEST].
        image: String,
        /// Where to: oci:PATH[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE[:NAME:TAG].
        layout: String,
        #[command(flatten)]
        transfer: commands::copy::TransferArgs,
    },
    /// Log in to a registry: check the credentials, then keep them in Docker's config.json,
    /// or in the credential helper it names (credHelpers, credsStore) as docker does (shared
    /// with docker, podman and skopeo; used when no --creds are given).
    #[command(
        after_help = "Examples:\n  echo \"$PASSWORD\" | ocikit login -u alice --password-stdin registry.example\n  \
        ocikit login -u alice --password-stdin --tls-verify=false 127.0.0.1:5000 < pw.txt"
    )]
    Login(commands::login::LoginArgs),
    /// Forget a registry's credentials (in Docker's config.json).
    #[command(after_help = "Example:\n  ocikit logout registry.example")]
    Logout {
        /// The registry: HOST[:PORT].
        registry: String,
        /// The credentials file (default: $DOCKER_CONFIG/config.json, else ~/.docker/config.json).
        #[arg(long, value_name = "PATH")]
        authfile: Option<std::path::PathBuf>,
    },
    /// Push an image from a layout or an archive to a registry (`copy` to docker://).
    #[command(
        after_help = "Example:\n  ocikit push --dest-creds user:pw oci:./images:v1 docker://registry.example/app:v1"
    )]
    Push {
        /// The image: oci:PATH:TAG, oci-archive:FILE[:TAG|@DIGEST], docker-archive:FILE[:NAME:TAG].
        image: String,
        /// The registry image: docker://HOST[:PORT]/NAME[:TAG|@DIGEST].
        destination: String,
        #[command(flatten)]
        transfer: commands::copy::TransferArgs,
    },
    /// Import an archive into a layout (`copy` with an archive source).
    #[command(
        after_help = "Examples:\n  ocikit import docker-archive:./saved.tar oci:./images\n  \
        ocikit import oci-archive:./skopeo.tar@sha256:... oci:./images:app"
    )]
    Import {
        /// The archive: oci-archive:FILE[:TAG|@DIGEST] (every image when neither is given) or
        /// docker-archive:FILE[:NAME[:TAG]] (names matched as docker does).
        archive: String,
        /// The layout: oci:PATH, or oci:PATH:TAG to tag the (one) imported image TAG.
        layout: String,
        /// Import the referrers of the image(s) too (an oci-archive's untagged entries whose
        /// subject is an image imported, and theirs), as `copy --referrers`.
        #[arg(long)]
        referrers: bool,
    },
    /// Export images of a layout to an archive (`copy` with an archive destination).
    #[command(
        after_help = "Example:\n  ocikit export oci:./images:v1 docker-archive:./v1.tar:demo:v1"
    )]
    Export {
        /// The image or layout: oci:PATH[:TAG].
        layout: String,
        /// The archive: oci-archive:FILE[:TAG] or docker-archive:FILE[:NAME:TAG]. A whole
        /// layout goes into a docker-archive as DIR:TAG for each plain tag (DIR being the
        /// layout directory's name, lowercase), and under its own name for a tag that is a
        /// reference (docker.io/demo/hello:v1).
        archive: String,
        /// Export the referrers of the image(s) too (untagged into an oci-archive; a
        /// docker-archive cannot hold them), as `copy --referrers`.
        #[arg(long)]
        referrers: bool,
    },
    /// Serve a directory or an S3 bucket as an OCI Distribution v1.1 registry (until SIGTERM
    /// or Ctrl-C).
    #[command(
        after_help = "Examples:\n  ocikit serve --root ./registry --addr 127.0.0.1:5000\n  \
        skopeo copy --dest-tls-verify=false oci:./images:v1 docker://127.0.0.1:5000/app:v1\n  \
        ocikit serve --root ./registry --addr 0.0.0.0:5000 --tls-cert cert.pem --tls-key key.pem \\\n    \
        --htpasswd ./writers.htpasswd --htpasswd-read-only ./readers.htpasswd\n  \
        AWS_ACCESS_KEY_ID=.. AWS_SECRET_ACCESS_KEY=.. ocikit serve --s3-bucket images --s3-region eu-west-1"
    )]
    Serve(Box<commands::serve::ServeArgs>),
    /// Collect a registry's garbage (a directory or an S3 bucket); safe while `ocikit serve`
    /// runs on it.
    #[command(
        name = "registry-gc",
        after_help = "Removes blob links no kept manifest references and blobs no repository \
        references, once older than the grace period (pushes in flight are safe).\n\n\
        Examples:\n  ocikit registry-gc --root ./registry --dry-run\n  \
        ocikit registry-gc --root ./registry --delete-untagged --grace 2h --json\n  \
        ocikit registry-gc --s3-bucket images --s3-region eu-west-1 --dry-run"
    )]
    RegistryGc {
        /// The registry's directory (as given to `ocikit serve --root`).
        #[arg(
            long,
            required_unless_present = "s3_bucket",
            conflicts_with = "s3_bucket"
        )]
        root: Option<std::path::PathBuf>,
        #[command(flatten)]
        s3: commands::registry::S3Args,
        /// Report what would go without removing anything.
        #[arg(long)]
        dry_run: bool,
        /// Only these repositories' links and manifests (repeatable; default all).
        #[arg(long = "repository", value_name = "NAME")]
        repositories: Vec<String>,
        #[command(flatten)]
        gc: commands::registry::GcArgs,
    },
    /// Print a shell completion script.
    #[command(after_help = "Example:\n  ocikit completions bash > /etc/bash_completion.d/ocikit")]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// How to reach a registry for a command that reads from one.
#[derive(Debug, clap::Args)]
struct RegistryArgs {
    #[command(flatten)]
    tls: commands::tls::TlsArgs,
    /// Credentials (default: what `ocikit login` stored, else anonymous).
    #[arg(long, value_name = "USER:PASSWORD")]
    creds: Option<String>,
}

impl RegistryArgs {
    fn transfer(self) -> commands::copy::TransferArgs {
        commands::copy::TransferArgs::source(self.tls, self.creds)
    }
}

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some(reference::ARG) {
        return reference::print();
    }
    // `serve --config FILE`: the file's keys become flags before the command line's own.
    let args = commands::serve::expand_args(std::env::args_os().collect(), Cli::command)
        .unwrap_or_else(|e| {
            clap::Error::raw(clap::error::ErrorKind::ValueValidation, e + "\n").exit()
        });
    let cli = Cli::parse_from(args);
    let out = Output::new(cli.json, cli.quiet);
    let tls_flags = tls_flags(&cli.command);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return out.fail(&anyhow::Error::new(e).context("cannot start the runtime")),
    };
    match runtime.block_on(commands::run(cli.command, &out)) {
        Ok(code) => code,
        Err(err) => out.fail(&commands::tls::tls_hint(err, &tls_flags)),
    }
}

/// How `command` spells its TLS flags, for the hint on a TLS failure.
fn tls_flags(command: &Command) -> commands::tls::TlsFlags {
    use commands::tls::TlsFlags;
    match command {
        Command::Copy {
            source,
            destination,
            ..
        } => TlsFlags::Sides {
            source: Some(source.clone()),
            destination: Some(destination.clone()),
        },
        Command::Pull { image, .. } => TlsFlags::Sides {
            source: Some(image.clone()),
            destination: None,
        },
        Command::Push { destination, .. } => TlsFlags::Sides {
            source: None,
            destination: Some(destination.clone()),
        },
        Command::Login(_) => TlsFlags::Login,
        Command::Sync(_) => TlsFlags::Sides {
            source: None,
            destination: None,
        },
        _ => TlsFlags::One,
    }
}
