//! `skopeo-sigstore`: a skopeo that can sign with sigstore keys and evaluate `sigstoreSigned`
//! policies, for issue 18's proof against a real peer.
//!
//! Debian 12's skopeo 1.9.3 (the `skopeo` the other interop tests use) is built with
//! sigstore disabled ("Debian-local change: sigstore disabled"). Debian 13's skopeo 1.18 is
//! built with it, but needs Debian 13's C library. So this installs Debian 13's skopeo and
//! the few shared libraries it links (glibc, gpgme, assuan, gpg-error, sqlite) into a
//! directory of their own, fetched by `apt-get download` from a private list of Debian 13's
//! archive (apt checks the archive's signature with the system's Debian keyring and every
//! package's hash; the system's own package lists and installed packages are not touched),
//! and writes a `skopeo-sigstore` wrapper that starts it with its own dynamic loader. Nothing
//! of the host's glibc is replaced.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{Result, run};

/// Where the packages are unpacked.
const PREFIX: &str = "/usr/local/lib/ocikit-skopeo-sigstore";
/// The wrapper on `PATH`.
const WRAPPER: &str = "/usr/local/bin/skopeo-sigstore";
/// Debian 13's skopeo and what it links (`ldd`), beside the loader of that glibc.
const PACKAGES: &[&str] = &[
    "skopeo",
    "libc6",
    "libgpgme11t64",
    "libassuan9",
    "libgpg-error0",
    "libsqlite3-0",
];
/// The multiarch directory the packages put their libraries in.
const LIBDIR: &str = "usr/lib/x86_64-linux-gnu";

/// Installs `skopeo-sigstore` unless one already runs and can sign with sigstore keys.
pub(crate) fn ensure() -> Result {
    if runs() {
        return Ok(());
    }
    if std::env::consts::ARCH != "x86_64" {
        return Err(format!(
            "skopeo-sigstore is installed from Debian 13's amd64 packages; this machine is {}",
            std::env::consts::ARCH
        ));
    }
    eprintln!("missing skopeo-sigstore: installing Debian 13's skopeo (built with sigstore)");
    let work = std::env::temp_dir().join(format!("ocikit-skopeo-sigstore-{}", std::process::id()));
    let result = install(&work);
    let _ = std::fs::remove_dir_all(&work);
    result?;
    if runs() {
        Ok(())
    } else {
        Err(format!("installed {WRAPPER}, but it does not run"))
    }
}

/// Whether `skopeo-sigstore --version` succeeds.
fn runs() -> bool {
    Command::new("skopeo-sigstore")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

fn install(work: &Path) -> Result {
    let lists = work.join("lists");
    let cache = work.join("cache");
    let download = work.join("download");
    for dir in [
        lists.join("partial"),
        cache.join("archives/partial"),
        download.clone(),
    ] {
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let source_list = work.join("trixie.list");
    std::fs::write(
        &source_list,
        "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] \
         http://deb.debian.org/debian trixie main\n",
    )
    .map_err(|e| format!("cannot write {}: {e}", source_list.display()))?;
    let options = [
        format!("Dir::Etc::SourceList={}", source_list.display()),
        "Dir::Etc::SourceParts=/dev/null".to_owned(),
        format!("Dir::State::Lists={}", lists.display()),
        format!("Dir::Cache={}", cache.display()),
        "APT::Get::List-Cleanup=0".to_owned(),
        // The download directory belongs to root; apt's sandbox user may not write it.
        "APT::Sandbox::User=root".to_owned(),
    ];
    let apt = |args: &[&str]| {
        let mut cmd = Command::new("apt-get");
        cmd.env("DEBIAN_FRONTEND", "noninteractive")
            .current_dir(&download);
        for option in &options {
            cmd.args(["-o", option]);
        }
        run(cmd.args(args))
    };
    apt(&["update", "-qq"])?;
    let mut args = vec!["download", "-qq"];
    args.extend(PACKAGES);
    apt(&args)?;

    let staging = PathBuf::from(format!("{PREFIX}.new"));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging)
        .map_err(|e| format!("cannot create {}: {e}", staging.display()))?;
    let mut debs: Vec<PathBuf> = std::fs::read_dir(&download)
        .map_err(|e| format!("cannot read {}: {e}", download.display()))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "deb"))
        .collect();
    debs.sort();
    if debs.len() != PACKAGES.len() {
        return Err(format!(
            "apt-get download fetched {} packages, expected {} ({})",
            debs.len(),
            PACKAGES.len(),
            PACKAGES.join(" ")
        ));
    }
    for deb in &debs {
        run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(&staging))?;
    }
    let _ = std::fs::remove_dir_all(PREFIX);
    std::fs::rename(&staging, PREFIX)
        .map_err(|e| format!("cannot move {} to {PREFIX}: {e}", staging.display()))?;

    let wrapper = format!(
        "#!/bin/sh\n\
         # Debian 13's skopeo (built with sigstore) on its own glibc; installed by\n\
         # `cargo xtask install-tools` (xtask/src/skopeo_sigstore.rs).\n\
         d={PREFIX}\n\
         exec \"$d/{LIBDIR}/ld-linux-x86-64.so.2\" --library-path \"$d/{LIBDIR}\" \"$d/usr/bin/skopeo\" \"$@\"\n"
    );
    let temp = format!("{WRAPPER}.tmp");
    std::fs::write(&temp, wrapper).map_err(|e| format!("cannot write {temp}: {e}"))?;
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("cannot make {temp} executable: {e}"))?;
    std::fs::rename(&temp, WRAPPER).map_err(|e| format!("cannot move {temp} to {WRAPPER}: {e}"))
}
