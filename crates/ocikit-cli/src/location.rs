//! Image locations in skopeo's transport syntax: `oci:PATH[:TAG|@DIGEST]`,
//! `oci-archive:FILE[:TAG]`, `docker-archive:FILE[:NAME:TAG]`,
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
    /// A tarred OCI image layout.
    OciArchive { path: PathBuf, tag: Option<String> },
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
            Location::OciArchive { path, tag } => {
                write!(f, "oci-archive:{}", path.display())?;
                tag.iter().try_for_each(|t| write!(f, ":{t}"))
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
                let (path, selector) = match rest.split_once('@') {
                    Some((path, digest)) => {
                        let digest: Digest = digest
                            .parse()
                            .with_context(|| format!("`{digest}` is not a valid digest"))?;
                        (path_and_rest(path)?.0, Some(Selector::Digest(digest)))
                    }
                    None => {
                        let (path, tag) = path_and_rest(rest)?;
                        (path, tag.map(|t| Selector::Tag(t.to_string())))
                    }
                };
                Ok(Location::Oci { path, selector })
            }
            "oci-archive" => {
                let (path, tag) = path_and_rest(rest)?;
                Ok(Location::OciArchive {
                    path,
                    tag: tag.map(str::to_string),
                })
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

    /// The layout directory and selector of an `oci:` location, or an error naming what the
    /// command needs.
    pub(crate) fn oci(&self, what: &str) -> Result<(&PathBuf, Option<&Selector>)> {
        match self {
            Location::Oci { path, selector } => Ok((path, selector.as_ref())),
            other => bail!("{what} needs an oci:PATH location, not `{other}`"),
        }
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
                tag: None
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
    }
}
