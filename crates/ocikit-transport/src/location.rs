//! Image locations in skopeo's transport syntax: `oci:PATH[:TAG|@DIGEST]`,
//! `oci-archive:FILE[:TAG|@DIGEST]`, `docker-archive:FILE[:NAME[:TAG]]`,
//! `docker://[HOST[:PORT]/]NAME[:TAG|@DIGEST]`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use ocikit_digest::{Digest, Reference};

use crate::error::{Error, Result};

/// What names an image inside a layout, an archive or a repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selector {
    /// A tag (`org.opencontainers.image.ref.name` in a layout).
    Tag(String),
    /// A manifest or index digest.
    Digest(Digest),
}

impl Selector {
    /// The selector as a registry reference names it: the tag, or the digest's text.
    pub fn reference(&self) -> String {
        match self {
            Selector::Tag(tag) => tag.clone(),
            Selector::Digest(digest) => digest.to_string(),
        }
    }
}

impl fmt::Display for Selector {
    /// `:TAG` or `@DIGEST`, as a location spells it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selector::Tag(tag) => write!(f, ":{tag}"),
            Selector::Digest(digest) => write!(f, "@{digest}"),
        }
    }
}

/// Where an image (or a whole layout, or a whole archive) is: one of the transports.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Location {
    /// An OCI image layout directory, and the image in it by tag or digest (every image
    /// when `None`).
    Oci {
        /// The layout directory.
        path: PathBuf,
        /// The image in it, if one is named.
        selector: Option<Selector>,
    },
    /// A tarred OCI image layout, and the image in it by tag or digest (all when `None`).
    OciArchive {
        /// The archive file.
        path: PathBuf,
        /// The image in it, if one is named.
        selector: Option<Selector>,
    },
    /// A `docker save` archive, and the image in it by name (`NAME[:TAG]`, matched as
    /// docker matches it), every image when `None`.
    DockerArchive {
        /// The archive file.
        path: PathBuf,
        /// The image's name, if one is given.
        reference: Option<String>,
    },
    /// An image in a registry.
    Docker {
        /// The API host (`registry-1.docker.io` for Docker Hub).
        registry: String,
        /// The repository as the API names it (`library/alpine`).
        repository: String,
        /// A tag (`latest` when none was written) or a digest.
        selector: Selector,
        /// The reference as written, after `docker://`.
        written: String,
    },
}

/// Why a location string was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(transparent)]
pub struct LocationError {
    kind: LocationErrorKind,
}

impl LocationError {
    fn new(kind: LocationErrorKind) -> LocationError {
        LocationError { kind }
    }

    /// What exactly was wrong.
    pub fn kind(&self) -> &LocationErrorKind {
        &self.kind
    }
}

/// What was wrong with a location string.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LocationErrorKind {
    /// No `TRANSPORT:` prefix.
    #[error("`{text}` names no transport; did you mean `oci:{text}`? (transports: {TRANSPORTS})")]
    NoTransport {
        /// The text given.
        text: String,
    },
    /// A transport this crate does not know.
    #[error("unknown transport `{transport}:` (transports: {TRANSPORTS})")]
    UnknownTransport {
        /// The transport named.
        transport: String,
    },
    /// `oci:` with nothing after it.
    #[error("the location has an empty path")]
    EmptyPath,
    /// `oci:DIR:` with no tag after the colon.
    #[error("the location ends with `:` but names no tag")]
    EmptyTag,
    /// `@DIGEST` that is not a digest.
    #[error("`{text}` is not a valid digest")]
    InvalidDigest {
        /// The text after `@`.
        text: String,
        /// Why.
        #[source]
        source: ocikit_digest::digest::ParseError,
    },
    /// `oci:DIR:TAG@DIGEST`.
    #[error("name an image by tag or by digest, not both")]
    TagAndDigest,
    /// `docker:` without `//`.
    #[error("write registry locations as docker://HOST[:PORT]/NAME[:TAG|@DIGEST]")]
    NotDockerSyntax,
    /// `docker://HOST[:PORT]` with no repository (docker's rules would read it as the
    /// Docker Hub image `library/HOST`).
    #[error(
        "`docker://{written}` names a registry but no repository: write \
         docker://{written}/NAME[:TAG|@DIGEST]"
    )]
    NoRepository {
        /// The text after `docker://`.
        written: String,
    },
    /// An invalid image reference after `docker://`.
    #[error("`{written}` is not a valid image reference")]
    InvalidReference {
        /// The text after `docker://`.
        written: String,
        /// Why.
        #[source]
        source: ocikit_digest::reference::ParseError,
    },
}

impl fmt::Display for Location {
    /// The location as [`Location::parse`] reads it back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Oci { path, selector } => {
                write!(f, "oci:{}", path.display())?;
                selector.iter().try_for_each(|s| write!(f, "{s}"))
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
fn path_and_rest(text: &str) -> Result<(PathBuf, Option<&str>), LocationError> {
    let (path, rest) = match text.split_once(':') {
        Some((path, rest)) => (path, Some(rest)),
        None => (text, None),
    };
    if path.is_empty() {
        return Err(LocationError::new(LocationErrorKind::EmptyPath));
    }
    if rest == Some("") {
        return Err(LocationError::new(LocationErrorKind::EmptyTag));
    }
    Ok((PathBuf::from(path), rest))
}

/// `PATH[:TAG|@DIGEST]` of an `oci:` or `oci-archive:` location.
fn path_and_selector(rest: &str) -> Result<(PathBuf, Option<Selector>), LocationError> {
    match rest.split_once('@') {
        Some((path, digest)) => {
            let digest: Digest = digest.parse().map_err(|source| {
                LocationError::new(LocationErrorKind::InvalidDigest {
                    text: digest.to_string(),
                    source,
                })
            })?;
            let (path, tag) = path_and_rest(path)?;
            if tag.is_some() {
                return Err(LocationError::new(LocationErrorKind::TagAndDigest));
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
fn refuse_bare_registry(written: &str) -> Result<(), LocationError> {
    if written.contains('/') {
        return Ok(());
    }
    let host = written.split(['@', ':']).next().unwrap_or(written);
    if host == "localhost" || host.contains('.') || written.starts_with('[') {
        return Err(LocationError::new(LocationErrorKind::NoRepository {
            written: written.to_string(),
        }));
    }
    Ok(())
}

impl Location {
    /// Parses a location: `oci:PATH[:TAG|@DIGEST]`, `oci-archive:FILE[:TAG|@DIGEST]`,
    /// `docker-archive:FILE[:NAME[:TAG]]` or `docker://[HOST[:PORT]/]NAME[:TAG|@DIGEST]`
    /// (Docker Hub's short names normalised as docker does).
    pub fn parse(text: &str) -> Result<Location, LocationError> {
        let Some((transport, rest)) = text.split_once(':') else {
            return Err(LocationError::new(LocationErrorKind::NoTransport {
                text: text.to_string(),
            }));
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
                    return Err(LocationError::new(LocationErrorKind::NotDockerSyntax));
                };
                refuse_bare_registry(written)?;
                let reference = Reference::parse_normalized(written).map_err(|source| {
                    LocationError::new(LocationErrorKind::InvalidReference {
                        written: written.to_string(),
                        source,
                    })
                })?;
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
            other => Err(LocationError::new(LocationErrorKind::UnknownTransport {
                transport: other.to_string(),
            })),
        }
    }

    /// The tag an operation `what` that tags inside the layout at `layout` is given: a
    /// bare tag (`v2`), or a location naming a tag in that same layout (`oci:PATH:v2`).
    /// Text that starts with a transport prefix (`oci:`, `oci-archive:`, `docker-archive:`,
    /// `docker:`) is always read as a location.
    pub fn tag_in(text: &str, layout: &Path, what: &str) -> Result<String> {
        if !PREFIXES.iter().any(|p| text.starts_with(p)) {
            ocikit_layout::validate_tag(text).map_err(|source| Error::InvalidTag {
                what: what.to_string(),
                source,
            })?;
            return Ok(text.to_string());
        }
        let location = Location::parse(text)?;
        let (path, selector) = location.oci(what)?;
        let Some(Selector::Tag(tag)) = selector else {
            return Err(Error::NeedsTag {
                what: what.to_string(),
                location: location.to_string(),
            });
        };
        if !same_directory(path, layout) {
            return Err(Error::OtherLayout {
                what: what.to_string(),
                named: path.clone(),
                layout: layout.to_path_buf(),
            });
        }
        ocikit_layout::validate_tag(tag)?;
        Ok(tag.clone())
    }

    /// The layout directory and selector of an `oci:` location, or
    /// [`Error::NeedsLayout`] naming the operation `what`.
    pub fn oci(&self, what: &str) -> Result<(&PathBuf, Option<&Selector>)> {
        match self {
            Location::Oci { path, selector } => Ok((path, selector.as_ref())),
            other => Err(Error::NeedsLayout {
                what: what.to_string(),
                location: other.to_string(),
            }),
        }
    }

    /// The file or directory of a local location (`None` for a registry).
    pub fn path(&self) -> Option<&Path> {
        match self {
            Location::Oci { path, .. }
            | Location::OciArchive { path, .. }
            | Location::DockerArchive { path, .. } => Some(path),
            Location::Docker { .. } => None,
        }
    }

    /// Whether this is a registry location (`docker://`).
    pub fn is_registry(&self) -> bool {
        matches!(self, Location::Docker { .. })
    }
}

impl FromStr for Location {
    type Err = LocationError;

    fn from_str(text: &str) -> Result<Location, LocationError> {
        Location::parse(text)
    }
}

/// Whether two paths name one directory (compared as written when either is missing).
fn same_directory(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
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
            assert_eq!(text.parse::<Location>().unwrap().to_string(), text);
        }
    }

    #[test]
    fn refuses_what_is_not_a_location() {
        let kind = |text: &str| Location::parse(text).unwrap_err().kind().clone();
        let message = |text: &str| Location::parse(text).unwrap_err().to_string();
        assert!(matches!(kind("dir"), LocationErrorKind::NoTransport { .. }));
        assert!(message("dir").contains("did you mean `oci:dir`"));
        assert!(message("zip:dir").contains("unknown transport `zip:`"));
        assert_eq!(kind("docker:alpine"), LocationErrorKind::NotDockerSyntax);
        assert!(matches!(
            kind("docker://UPPER/x:"),
            LocationErrorKind::InvalidReference { .. }
        ));
        assert_eq!(kind("oci:"), LocationErrorKind::EmptyPath);
        assert_eq!(kind("oci:dir:"), LocationErrorKind::EmptyTag);
        assert!(matches!(
            kind("oci:dir@sha256:abc"),
            LocationErrorKind::InvalidDigest { .. }
        ));
        assert!(message("oci-archive:a.tar@sha256:abc").contains("not a valid digest"));
        let digest = Digest::sha256(b"x");
        assert_eq!(
            kind(&format!("oci:dir:t@{digest}")),
            LocationErrorKind::TagAndDigest
        );
        // The cause is chained, not repeated.
        let err = Location::parse("oci:dir@sha256:abc").unwrap_err();
        assert!(std::error::Error::source(&err).is_some());
    }

    #[test]
    fn a_registry_without_a_repository_is_refused() {
        for text in [
            "docker://127.0.0.1:5001",
            "docker://localhost:5000",
            "docker://localhost",
            "docker://registry.example",
            "docker://registry.example:443",
        ] {
            assert!(
                matches!(
                    Location::parse(text).unwrap_err().kind(),
                    LocationErrorKind::NoRepository { .. }
                ),
                "{text}"
            );
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
        let dir = Path::new("images");
        assert_eq!(Location::tag_in("v2", dir, "tag").unwrap(), "v2");
        assert_eq!(Location::tag_in("oci:images:v2", dir, "tag").unwrap(), "v2");
        assert_eq!(
            Location::tag_in("oci:images:demo/app:v2", dir, "tag").unwrap(),
            "demo/app:v2"
        );
        let err = |text: &str| Location::tag_in(text, dir, "tag").unwrap_err();
        assert!(matches!(err("oci:other:v2"), Error::OtherLayout { .. }));
        assert!(
            err("oci:other:v2")
                .to_string()
                .contains("names the layout other")
        );
        assert!(matches!(err("oci:images"), Error::NeedsTag { .. }));
        assert!(matches!(
            err(&format!("oci:images@{}", Digest::sha256(b"x"))),
            Error::NeedsTag { .. }
        ));
        assert!(matches!(
            err("docker://host.example/app:v2"),
            Error::NeedsLayout { .. }
        ));
        assert!(matches!(
            err("oci-archive:a.tar:v2"),
            Error::NeedsLayout { .. }
        ));
        assert!(matches!(err("bad tag"), Error::InvalidTag { .. }));
        assert!(matches!(err("../v2"), Error::InvalidTag { .. }));
    }
}
