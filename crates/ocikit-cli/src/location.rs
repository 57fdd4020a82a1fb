//! Image locations in skopeo's transport syntax: `oci:PATH[:TAG|@DIGEST]`,
//! `oci-archive:FILE[:TAG|@DIGEST]`, `docker-archive:FILE[:NAME[:TAG]]`,
//! `docker://[HOST[:PORT]/]NAME[:TAG|@DIGEST]`.

use std::fmt;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use ocikit::digest::{Digest, Reference};

/// What names an image inside a layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Selector {
    /// A tag (`org.opencontainers.image.ref.name`).
    Tag(String),
    /// A manifest or index digest.
    Digest(Digest),
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selector::Tag(tag) => write!(f, ":{tag}"),
            Selector::Digest(digest) => write!(f, "@{digest}"),
        }
    }
}

/// Where an image (or a whole layout) is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Location {
    /// An OCI image layout directory.
    Oci {
        path: PathBuf,
        selector: Option<Selector>,
    },
    /// A tarred OCI image layout, and the image in it by tag or digest (all when `None`).
    OciArchive {
        path: PathBuf,
        selector: Option<Selector>,
    },
    /// A `docker save` archive.
    DockerArchive {
        path: PathBuf,
        reference: Option<String>,
    },
    /// An image in a registry: the API host (`registry-1.docker.io` for Docker Hub), the
    /// repository as the API names it, a tag (`latest` when none was written) or digest,
    /// and the reference as written.
    Docker {
        registry: String,
        repository: String,
        selector: Selector,
        written: String,
    },
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Oci { path, selector } => {
                write!(f, "oci:{}", path.display())?;
                if let Some(selector) = selector {
                    write!(f, "{selector}")?;
                }
                Ok(())
            }
            Location::OciArchive { path, selector } => {
                write!(f, "oci-archive:{}", path.display())?;
                selector.iter().try_for_each(|s| write!(f, "{s}"))
            }
            Location::DockerArchive { path, reference } => {
                write!(f, "docker-archive:{}", path.display())?;
                reference.iter().try_for_each(|r| write!(f, ":{r}"))
            }
            Location::Docker { written, .. } => write!(f, "docker://{written}"),
        }
    }
}

const TRANSPORTS: &str = "oci:, oci-archive:, docker-archive:, docker://";

/// Splits `PATH[:REST]` at the first `:` (skopeo's rule: paths cannot hold a colon).
fn path_and_rest(text: &str) -> Result<(PathBuf, Option<&str>)> {
    let (path, rest) = match text.split_once(':') {
        Some((path, rest)) => (path, Some(rest)),
        None => (text, None),
    };
    if path.is_empty() {
        bail!("the location has an empty path");
    }
    if rest == Some("") {
        bail!("the location ends with `:` but names no tag");
    }
    Ok((PathBuf::from(path), rest))
}

/// `PATH[:TAG|@DIGEST]` of an `oci:` or `oci-archive:` location.
fn path_and_selector(rest: &str) -> Result<(PathBuf, Option<Selector>)> {
    match rest.split_once('@') {
        Some((path, digest)) => {
            let digest: Digest = digest
                .parse()
                .with_context(|| format!("`{digest}` is not a valid digest"))?;
            let (path, tag) = path_and_rest(path)?;
            if tag.is_some() {
                bail!("name an image by tag or by digest, not both");
            }
            Ok((path, Some(Selector::Digest(digest))))
        }
        None => {
            let (path, tag) = path_and_rest(rest)?;
            Ok((path, tag.map(|t| Selector::Tag(t.to_string()))))
        }
    }
}

/// The transports' prefixes, to tell a location from a bare tag.
const PREFIXES: [&str; 4] = ["oci:", "oci-archive:", "docker-archive:", "docker:"];

/// Refuses `docker://HOST[:PORT]` without a repository, which docker's rules would read as
/// the Docker Hub image `library/HOST` (with the port as its tag).
fn refuse_bare_registry(written: &str) -> Result<()> {
    if written.contains('/') {
        return Ok(());
    }
    let host = written.split(['@', ':']).next().unwrap_or(written);
    if host == "localhost" || host.contains('.') || written.starts_with('[') {
        bail!(
            "`docker://{written}` names a registry but no repository: write \
             docker://{written}/NAME[:TAG|@DIGEST]"
        );
    }
    Ok(())
}

impl Location {
    /// Parses a location argument.
    pub(crate) fn parse(text: &str) -> Result<Location> {
        let Some((transport, rest)) = text.split_once(':') else {
            bail!(
                "`{text}` names no transport; did you mean `oci:{text}`? (transports: {TRANSPORTS})"
            );
        };
        match transport {
            "oci" => {
                let (path, selector) = path_and_selector(rest)?;
                Ok(Location::Oci { path, selector })
            }
            "oci-archive" => {
                let (path, selector) = path_and_selector(rest)?;
                Ok(Location::OciArchive { path, selector })
            }
            "docker-archive" => {
                let (path, reference) = path_and_rest(rest)?;
                Ok(Location::DockerArchive {
                    path,
                    reference: reference.map(str::to_string),
                })
            }
            "docker" => {
                let Some(written) = rest.strip_prefix("//") else {
                    bail!("write registry locations as docker://HOST[:PORT]/NAME[:TAG|@DIGEST]");
                };
                refuse_bare_registry(written)?;
                let reference = Reference::parse_normalized(written)
                    .with_context(|| format!("`{written}` is not a valid image reference"))?;
                let selector = match (reference.digest(), reference.tag()) {
                    (Some(digest), _) => Selector::Digest(digest.clone()),
                    (None, Some(tag)) => Selector::Tag(tag.to_string()),
                    (None, None) => Selector::Tag("latest".into()),
                };
                Ok(Location::Docker {
                    registry: reference.api_host().to_string(),
                    repository: reference.api_repository().into_owned(),
                    selector,
                    written: written.to_string(),
                })
            }
            other => bail!("unknown transport `{other}:` (transports: {TRANSPORTS})"),
        }
    }

    /// The tag a command that tags inside the layout at `layout` (`tag`, `repack --tag`)
    /// is given: a bare tag (`v2`), or a location naming a tag in that same layout
    /// (`oci:PATH:v2`). Text that starts with a transport prefix (`oci:`, `oci-archive:`,
    /// `docker-archive:`, `docker:`) is always read as a location.
    pub(crate) fn tag_in(text: &str, layout: &std::path::Path, what: &str) -> Result<String> {
        if !PREFIXES.iter().any(|p| text.starts_with(p)) {
            ocikit::layout::validate_tag(text)
                .with_context(|| format!("{what} takes a tag or oci:PATH:TAG"))?;
            return Ok(text.to_string());
        }
        let location = Location::parse(text)?;
        let (path, selector) = location.oci(what)?;
        let Some(Selector::Tag(tag)) = selector else {
            bail!("{what} needs a tag: a bare TAG or oci:PATH:TAG, not `{location}`");
        };
        if !same_directory(path, layout) {
            bail!(
                "{what} names the layout {}, not {}: tags stay in the image's layout \
                 (copy the image with `ocikit copy` to tag it elsewhere)",
                path.display(),
                layout.display()
            );
        }
        ocikit::layout::validate_tag(tag)?;
        Ok(tag.clone())
    }

    /// The layout directory and selector of an `oci:` location, or an error naming what the
    /// command needs.
    pub(crate) fn oci(&self, what: &str) -> Result<(&PathBuf, Option<&Selector>)> {
        match self {
            Location::Oci { path, selector } => Ok((path, selector.as_ref())),
            other => bail!("{what} needs an oci:PATH location, not `{other}`"),
        }
    }
}

/// Whether two paths name one directory (compared as written when either is missing).
fn same_directory(a: &std::path::Path, b: &std::path::Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_transports() {
        assert_eq!(
            Location::parse("oci:dir:v1").unwrap(),
            Location::Oci {
                path: "dir".into(),
                selector: Some(Selector::Tag("v1".into()))
            }
        );
        assert_eq!(
            Location::parse("oci:/a/b").unwrap(),
            Location::Oci {
                path: "/a/b".into(),
                selector: None
            }
        );
        let digest = Digest::sha256(b"x");
        assert_eq!(
            Location::parse(&format!("oci:dir@{digest}")).unwrap(),
            Location::Oci {
                path: "dir".into(),
                selector: Some(Selector::Digest(digest.clone()))
            }
        );
        assert_eq!(
            Location::parse("docker-archive:img.tar:library/alpine:3").unwrap(),
            Location::DockerArchive {
                path: "img.tar".into(),
                reference: Some("library/alpine:3".into())
            }
        );
        assert_eq!(
            Location::parse("oci-archive:img.tar").unwrap(),
            Location::OciArchive {
                path: "img.tar".into(),
                selector: None
            }
        );
        assert_eq!(
            Location::parse(&format!("oci-archive:img.tar@{digest}")).unwrap(),
            Location::OciArchive {
                path: "img.tar".into(),
                selector: Some(Selector::Digest(digest.clone()))
            }
        );
        assert_eq!(
            Location::parse("docker://127.0.0.1:5000/team/app:v1").unwrap(),
            Location::Docker {
                registry: "127.0.0.1:5000".into(),
                repository: "team/app".into(),
                selector: Selector::Tag("v1".into()),
                written: "127.0.0.1:5000/team/app:v1".into(),
            }
        );
        let hub = Location::parse(&format!("docker://alpine@{digest}")).unwrap();
        assert!(matches!(
            hub,
            Location::Docker { ref registry, ref repository, selector: Selector::Digest(_), .. }
                if registry == "registry-1.docker.io" && repository == "library/alpine"
        ));
        for text in [
            "docker://localhost:5000/a",
            "oci:dir:v1",
            "oci-archive:a.tar:t",
            &format!("oci-archive:a.tar@{digest}"),
            "docker-archive:d.tar:n:t",
        ] {
            assert_eq!(Location::parse(text).unwrap().to_string(), text);
        }
    }

    #[test]
    fn refuses_what_is_not_a_location() {
        let message = |text: &str| format!("{:#}", Location::parse(text).unwrap_err());
        assert!(message("dir").contains("did you mean `oci:dir`"));
        assert!(message("zip:dir").contains("unknown transport `zip:`"));
        assert!(message("docker:alpine").contains("docker://HOST"));
        assert!(message("docker://UPPER/x:").contains("not a valid image reference"));
        assert!(message("oci:").contains("empty path"));
        assert!(message("oci:dir:").contains("names no tag"));
        assert!(message("oci:dir@sha256:abc").contains("not a valid digest"));
        assert!(message("oci-archive:a.tar@sha256:abc").contains("not a valid digest"));
        let digest = Digest::sha256(b"x");
        assert!(message(&format!("oci:dir:t@{digest}")).contains("not both"));
    }

    #[test]
    fn a_registry_without_a_repository_is_refused() {
        let message = |text: &str| format!("{:#}", Location::parse(text).unwrap_err());
        for text in [
            "docker://127.0.0.1:5001",
            "docker://localhost:5000",
            "docker://localhost",
            "docker://registry.example",
            "docker://registry.example:443",
        ] {
            assert!(message(text).contains("no repository"), "{text}");
        }
        // Docker Hub's short names still read as Docker Hub images.
        for (text, repository) in [
            ("docker://alpine", "library/alpine"),
            ("docker://alpine:3", "library/alpine"),
            ("docker://127.0.0.1:5001/app", "app"),
            ("docker://localhost/app:v1", "app"),
        ] {
            match Location::parse(text).unwrap() {
                Location::Docker { repository: r, .. } => assert_eq!(r, repository, "{text}"),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn tags_are_bare_or_in_the_same_layout() {
        let dir = std::path::Path::new("images");
        assert_eq!(Location::tag_in("v2", dir, "tag").unwrap(), "v2");
        assert_eq!(Location::tag_in("oci:images:v2", dir, "tag").unwrap(), "v2");
        assert_eq!(
            Location::tag_in("oci:images:demo/app:v2", dir, "tag").unwrap(),
            "demo/app:v2"
        );
        let message = |text: &str| format!("{:#}", Location::tag_in(text, dir, "tag").unwrap_err());
        assert!(message("oci:other:v2").contains("names the layout other"));
        assert!(message("oci:images").contains("needs a tag"));
        assert!(message(&format!("oci:images@{}", Digest::sha256(b"x"))).contains("needs a tag"));
        assert!(message("docker://host.example/app:v2").contains("needs an oci:PATH"));
        assert!(message("oci-archive:a.tar:v2").contains("needs an oci:PATH"));
        assert!(message("bad tag").contains("takes a tag"));
        assert!(message("../v2").contains("takes a tag"));
    }
}
