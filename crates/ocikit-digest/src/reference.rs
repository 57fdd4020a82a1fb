//! Image references, `[registry[:port]/]repository[:tag][@digest]`, and the distribution
//! spec's repository-name and tag grammars.
//!
//! - [`validate_name`], [`validate_tag`] and [`validate_registry`] check one part on its own,
//!   exactly and anchored, and report the byte position of the first offence.
//! - [`Reference::parse`] splits and validates a reference strictly, as written: nothing is
//!   defaulted, and [`Reference`]'s `Display` gives back the input unchanged.
//! - [`Reference::parse_normalized`] reads a reference the way `docker` and `skopeo` do
//!   (`alpine` is `docker.io/library/alpine:latest`); [`Reference::familiar`] gives the short
//!   form back.
//!
//! The registry is split off the first `/`-separated component only when that component
//! contains a `.` or a `:`, is `localhost`, or contains an uppercase letter (docker's rule):
//! `localhost:5000/a/b` has the registry `localhost:5000`, while `library/alpine` has none.
//!
//! ```
//! use ocikit_digest::Reference;
//!
//! let r = Reference::parse("localhost:5000/team/app:v1.2")?;
//! assert_eq!(r.registry(), Some("localhost:5000"));
//! assert_eq!(r.repository(), "team/app");
//! assert_eq!(r.tag(), Some("v1.2"));
//! assert_eq!(r.to_string(), "localhost:5000/team/app:v1.2");
//!
//! let n = Reference::parse_normalized("alpine")?;
//! assert_eq!(n.to_string(), "docker.io/library/alpine:latest");
//! assert_eq!(n.familiar(), "alpine:latest");
//! assert_eq!(n.api_host(), "registry-1.docker.io");
//!
//! assert!(ocikit_digest::reference::validate_name("a__b/c-d").is_ok());
//! assert!(ocikit_digest::reference::validate_name("a___b").is_err());
//! # Ok::<(), ocikit_digest::reference::ParseError>(())
//! ```

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use crate::Digest;

/// Longest repository name accepted, in bytes. When a registry is given, the limit covers
/// `registry "/" repository` together, as docker's reference package does.
pub const MAX_NAME_LEN: usize = 255;

/// Longest tag accepted, in bytes (the distribution spec's limit).
pub const MAX_TAG_LEN: usize = 128;

/// Longest reference string accepted: a name of [`MAX_NAME_LEN`], a tag of
/// [`MAX_TAG_LEN`] and a digest of [`crate::digest::MAX_DIGEST_LEN`], with their separators.
pub const MAX_REFERENCE_LEN: usize =
    MAX_NAME_LEN + 1 + MAX_TAG_LEN + 1 + crate::digest::MAX_DIGEST_LEN;

/// The registry assumed by [`Reference::parse_normalized`] when none is written: Docker Hub.
pub const DEFAULT_REGISTRY: &str = "docker.io";

/// The legacy name of Docker Hub, normalised to [`DEFAULT_REGISTRY`].
pub const LEGACY_DEFAULT_REGISTRY: &str = "index.docker.io";

/// The host that serves the registry API for Docker Hub.
pub const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";

/// The namespace of Docker Hub's official images, prefixed to single-component names.
pub const OFFICIAL_REPOSITORY_PREFIX: &str = "library/";

/// The tag assumed by [`Reference::parse_normalized`] when neither tag nor digest is given.
pub const DEFAULT_TAG: &str = "latest";

/// An image reference: an optional registry, a repository name, and an optional tag and
/// digest (both may be present: `name:tag@digest`).
///
/// Every part has been validated: the repository against the distribution spec's name
/// grammar, the tag against its tag grammar, the registry against docker's domain grammar
/// (DNS labels or a bracketed IPv6 literal, optional port), and the digest with
/// [`Digest::parse`]. `Display` writes `[registry/]repository[:tag][@digest]`, which
/// [`Reference::parse`] reads back to an equal value.
///
/// Equality, hashing and ordering compare registry, repository, tag and digest as written,
/// in that order; no normalisation is applied (`alpine` and `docker.io/library/alpine`
/// differ; normalise both with [`Reference::parse_normalized`] to compare them as docker
/// would).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    registry: Option<Box<str>>,
    repository: Box<str>,
    tag: Option<Box<str>>,
    digest: Option<Digest>,
}

impl Reference {
    /// Parses a reference strictly, as written: no registry, tag or `library/` prefix is
    /// assumed. Error positions are byte offsets into `s`, except inside
    /// [`ParseErrorKind::InvalidDigest`], whose positions count from the digest's start.
    pub fn parse(s: &str) -> Result<Reference, ParseError> {
        let parts = split(s).map_err(ParseError::new)?;
        parts.check().map_err(ParseError::new)?;
        parts.into_reference().map_err(ParseError::new)
    }

    /// Parses a reference the way docker (`ParseNormalizedNamed`) and skopeo's `docker://`
    /// transport do, so that `alpine` means `docker.io/library/alpine:latest`:
    ///
    /// - without a registry, the registry is [`DEFAULT_REGISTRY`] (`docker.io`), and
    ///   [`LEGACY_DEFAULT_REGISTRY`] (`index.docker.io`) becomes `docker.io`;
    /// - on `docker.io`, a single-component repository gets the `library/` prefix;
    /// - when neither tag nor digest is given, the tag [`DEFAULT_TAG`] (`latest`) is assumed
    ///   (see [`Reference::with_default_tag`]); a digest without a tag stays tagless;
    /// - a bare 64-character lowercase hex string is rejected, since docker reads it as an
    ///   image ID ([`ParseErrorKind::HexIdentifierName`]).
    ///
    /// The name length limit applies to the normalised name. The transport prefix
    /// (`docker://`) is the caller's to strip.
    pub fn parse_normalized(s: &str) -> Result<Reference, ParseError> {
        if s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(ParseError::new(ParseErrorKind::HexIdentifierName));
        }
        let mut parts = split(s).map_err(ParseError::new)?;
        parts.check().map_err(ParseError::new)?;
        let registry = match parts.registry {
            None => DEFAULT_REGISTRY,
            Some(LEGACY_DEFAULT_REGISTRY) => DEFAULT_REGISTRY,
            Some(registry) => registry,
        };
        parts.registry = Some(registry);
        let prefixed;
        if registry == DEFAULT_REGISTRY && !parts.repository.contains('/') {
            prefixed = format!("{OFFICIAL_REPOSITORY_PREFIX}{}", parts.repository);
            parts.repository = &prefixed;
        }
        check_name_length(parts.registry, parts.repository).map_err(ParseError::new)?;
        let reference = parts.into_reference().map_err(ParseError::new)?;
        Ok(reference.with_default_tag())
    }

    /// Builds a reference from a registry (`None` for none) and a repository name, with
    /// neither tag nor digest. Error positions count from the start of the offending
    /// argument.
    ///
    /// Both parts are validated, and the result must read back the same from its string
    /// form: a registry must look like one (contain `.` or `:`, be `localhost`, or contain an
    /// uppercase letter; otherwise [`ParseErrorKind::UnqualifiedRegistry`]), and without a
    /// registry the repository's first component must not look like one
    /// ([`ParseErrorKind::AmbiguousRepository`]).
    pub fn new(registry: Option<&str>, repository: &str) -> Result<Reference, ParseError> {
        if let Some(registry) = registry {
            check_registry(registry, 0).map_err(ParseError::new)?;
            if !looks_like_registry(registry) {
                return Err(ParseError::new(ParseErrorKind::UnqualifiedRegistry));
            }
        }
        check_name(repository, 0).map_err(ParseError::new)?;
        check_name_length(registry, repository).map_err(ParseError::new)?;
        let ambiguous = registry.is_none()
            && repository
                .split_once('/')
                .is_some_and(|(first, _)| looks_like_registry(first));
        if ambiguous {
            return Err(ParseError::new(ParseErrorKind::AmbiguousRepository));
        }
        Ok(Reference {
            registry: registry.map(Into::into),
            repository: repository.into(),
            tag: None,
            digest: None,
        })
    }

    /// Sets (or replaces) the tag, keeping any digest. Error positions count from the start
    /// of `tag`.
    pub fn with_tag(mut self, tag: &str) -> Result<Reference, ParseError> {
        check_tag(tag, 0).map_err(ParseError::new)?;
        self.tag = Some(tag.into());
        Ok(self)
    }

    /// Sets (or replaces) the digest, keeping any tag.
    pub fn with_digest(mut self, digest: Digest) -> Reference {
        self.digest = Some(digest);
        self
    }

    /// Removes the tag, keeping any digest.
    pub fn without_tag(mut self) -> Reference {
        self.tag = None;
        self
    }

    /// Removes the digest, keeping any tag.
    pub fn without_digest(mut self) -> Reference {
        self.digest = None;
        self
    }

    /// Sets the tag to [`DEFAULT_TAG`] (`latest`) when the reference has neither a tag nor
    /// a digest (docker's `TagNameOnly`); otherwise returns it unchanged.
    pub fn with_default_tag(mut self) -> Reference {
        if self.tag.is_none() && self.digest.is_none() {
            self.tag = Some(DEFAULT_TAG.into());
        }
        self
    }

    /// The registry (`host[:port]`), as written; `None` when the reference names none.
    pub fn registry(&self) -> Option<&str> {
        self.registry.as_deref()
    }

    /// The registry as written, or [`DEFAULT_REGISTRY`] (`docker.io`) when there is none.
    pub fn registry_or_default(&self) -> &str {
        self.registry().unwrap_or(DEFAULT_REGISTRY)
    }

    /// The host to send registry API requests to, from [`Reference::registry_or_default`]
    /// through [`api_host`] (Docker Hub's names map to `registry-1.docker.io`). A pure
    /// mapping: nothing is looked up.
    pub fn api_host(&self) -> &str {
        api_host(self.registry_or_default())
    }

    /// The repository name, as written (without registry, tag or digest).
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The repository path to use in registry API URLs (`/v2/<name>/...`): as written, except
    /// that on Docker Hub (no registry, `docker.io` or `index.docker.io`) a single-component
    /// name gets the `library/` prefix.
    pub fn api_repository(&self) -> Cow<'_, str> {
        let on_hub = self.registry().is_none_or(is_docker_hub);
        if on_hub && !self.repository.contains('/') {
            Cow::Owned(format!("{OFFICIAL_REPOSITORY_PREFIX}{}", self.repository))
        } else {
            Cow::Borrowed(&self.repository)
        }
    }

    /// The name, `[registry/]repository`, without tag or digest.
    pub fn name(&self) -> String {
        match self.registry() {
            Some(registry) => format!("{registry}/{}", self.repository),
            None => self.repository.to_string(),
        }
    }

    /// The tag, if any.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if any.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// The short form docker shows: the `docker.io/` registry and, for a single-component
    /// name, the `library/` namespace are left out (`docker.io/library/alpine:3` is
    /// `alpine:3`). Tag and digest are kept. Other registries are written out.
    ///
    /// The result reads back with [`Reference::parse_normalized`] to the same reference when
    /// this one is normalised (with a tag or digest). When leaving out `docker.io/` would let
    /// the first component be read as a registry (`docker.io/foo.com/bar`), it is kept.
    pub fn familiar(&self) -> String {
        let mut out = String::new();
        match self.registry() {
            Some(DEFAULT_REGISTRY) => {
                let repository = match self.repository.strip_prefix(OFFICIAL_REPOSITORY_PREFIX) {
                    Some(rest) if !rest.contains('/') => rest,
                    _ => &self.repository,
                };
                let ambiguous = repository
                    .split_once('/')
                    .is_some_and(|(first, _)| looks_like_registry(first));
                if ambiguous {
                    out.push_str(DEFAULT_REGISTRY);
                    out.push('/');
                    out.push_str(&self.repository);
                } else {
                    out.push_str(repository);
                }
            }
            Some(registry) => {
                out.push_str(registry);
                out.push('/');
                out.push_str(&self.repository);
            }
            None => out.push_str(&self.repository),
        }
        self.push_tag_and_digest(&mut out);
        out
    }

    fn push_tag_and_digest(&self, out: &mut String) {
        if let Some(tag) = self.tag() {
            out.push(':');
            out.push_str(tag);
        }
        if let Some(digest) = self.digest() {
            out.push('@');
            out.push_str(digest.as_str());
        }
    }
}

/// The host serving the registry API for `registry`: Docker Hub's names (`docker.io`,
/// `index.docker.io`) map to [`DOCKER_HUB_API_HOST`] (`registry-1.docker.io`); every other
/// registry is its own API host. A pure mapping: nothing is looked up.
pub fn api_host(registry: &str) -> &str {
    if is_docker_hub(registry) {
        DOCKER_HUB_API_HOST
    } else {
        registry
    }
}

fn is_docker_hub(registry: &str) -> bool {
    registry == DEFAULT_REGISTRY || registry == LEGACY_DEFAULT_REGISTRY
}

/// Checks a repository name against the distribution spec's anchored grammar,
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`, and the
/// length limit [`MAX_NAME_LEN`]. Error positions are byte offsets into `name`.
///
/// ```
/// use ocikit_digest::reference::{validate_name, ParseErrorKind};
///
/// assert!(validate_name("library/alpine").is_ok());
/// assert_eq!(
///     validate_name("foo//bar").unwrap_err().kind(),
///     &ParseErrorKind::EmptyNameComponent { position: 4 }
/// );
/// ```
pub fn validate_name(name: &str) -> Result<(), ParseError> {
    check_name(name, 0).map_err(ParseError::new)
}

/// Checks a tag against the distribution spec's grammar, `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
/// Error positions are byte offsets into `tag`.
///
/// ```
/// use ocikit_digest::reference::{validate_tag, ParseErrorKind};
///
/// assert!(validate_tag("v1.2.3_rc-1").is_ok());
/// assert_eq!(validate_tag(".tag").unwrap_err().kind(), &ParseErrorKind::BadTagStart { position: 0 });
/// ```
pub fn validate_tag(tag: &str) -> Result<(), ParseError> {
    check_tag(tag, 0).map_err(ParseError::new)
}

/// Checks a registry, `host[:port]`, against docker's domain grammar: the host is DNS labels
/// (`[a-zA-Z0-9]` or `[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]`) joined by `.` (which covers
/// IPv4 addresses), or a bracketed IPv6 literal such as `[::1]`; the optional port is a
/// number from 1 to 65535. Error positions are byte offsets into `registry`.
///
/// This checks the grammar only; [`Reference::new`] further requires that a registry be
/// recognisable as one in a reference string.
pub fn validate_registry(registry: &str) -> Result<(), ParseError> {
    check_registry(registry, 0).map_err(ParseError::new)
}

/// Whether the first component of a reference is a registry (docker's `splitDockerDomain`).
fn looks_like_registry(component: &str) -> bool {
    component.contains(['.', ':'])
        || component == "localhost"
        || component.bytes().any(|b| b.is_ascii_uppercase())
}

/// A reference string split into its parts, with each part's byte offset in the input.
struct Parts<'a> {
    registry: Option<&'a str>,
    repository: &'a str,
    repository_offset: usize,
    tag: Option<(&'a str, usize)>,
    digest: Option<&'a str>,
}

fn split(s: &str) -> Result<Parts<'_>, ParseErrorKind> {
    if s.is_empty() {
        return Err(ParseErrorKind::Empty);
    }
    if s.len() > MAX_REFERENCE_LEN {
        return Err(ParseErrorKind::TooLong {
            max: MAX_REFERENCE_LEN,
        });
    }
    let (registry, rest, offset) = match s.split_once('/') {
        Some((first, rest)) if looks_like_registry(first) => (Some(first), rest, first.len() + 1),
        _ => (None, s, 0),
    };
    let (name_and_tag, digest) = match rest.split_once('@') {
        Some((name_and_tag, digest)) => (name_and_tag, Some(digest)),
        None => (rest, None),
    };
    let (repository, tag) = match name_and_tag.split_once(':') {
        Some((repository, tag)) => (repository, Some((tag, offset + repository.len() + 1))),
        None => (name_and_tag, None),
    };
    Ok(Parts {
        registry,
        repository,
        repository_offset: offset,
        tag,
        digest,
    })
}

impl Parts<'_> {
    /// Validates every part except the digest (parsed in `into_reference`).
    fn check(&self) -> Result<(), ParseErrorKind> {
        if let Some(registry) = self.registry {
            check_registry(registry, 0)?;
        }
        check_name(self.repository, self.repository_offset)?;
        check_name_length(self.registry, self.repository)?;
        if let Some((tag, offset)) = self.tag {
            check_tag(tag, offset)?;
        }
        Ok(())
    }

    fn into_reference(self) -> Result<Reference, ParseErrorKind> {
        let digest = match self.digest {
            Some(digest) => Some(Digest::parse(digest).map_err(ParseErrorKind::InvalidDigest)?),
            None => None,
        };
        Ok(Reference {
            registry: self.registry.map(Into::into),
            repository: self.repository.into(),
            tag: self.tag.map(|(tag, _)| tag.into()),
            digest,
        })
    }
}

fn check_name_length(registry: Option<&str>, repository: &str) -> Result<(), ParseErrorKind> {
    let len = registry.map_or(0, |r| r.len() + 1) + repository.len();
    if len > MAX_NAME_LEN {
        return Err(ParseErrorKind::NameTooLong { max: MAX_NAME_LEN });
    }
    Ok(())
}

/// Where the name scanner stands: at the start of a component, after an alphanumeric, or
/// inside a separator run (its first byte, its length and where it started).
#[derive(Clone, Copy)]
enum NameState {
    ComponentStart,
    Alphanumeric,
    Separator { first: u8, len: usize, start: usize },
}

fn check_name(name: &str, offset: usize) -> Result<(), ParseErrorKind> {
    if name.is_empty() {
        return Err(ParseErrorKind::EmptyName);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(ParseErrorKind::NameTooLong { max: MAX_NAME_LEN });
    }
    let mut state = NameState::ComponentStart;
    for (i, byte) in name.bytes().enumerate() {
        let position = offset + i;
        state = match (byte, state) {
            (b'a'..=b'z' | b'0'..=b'9', _) => NameState::Alphanumeric,
            (b'/', NameState::Alphanumeric) => NameState::ComponentStart,
            (b'/', NameState::ComponentStart) => {
                return Err(ParseErrorKind::EmptyNameComponent { position });
            }
            (b'/', NameState::Separator { start, .. }) => {
                return Err(ParseErrorKind::BadNameSeparator {
                    position: offset + start,
                });
            }
            (b'.' | b'_' | b'-', NameState::Alphanumeric) => NameState::Separator {
                first: byte,
                len: 1,
                start: i,
            },
            (
                b'_',
                NameState::Separator {
                    first: b'_',
                    len: 1,
                    start,
                },
            ) => NameState::Separator {
                first: b'_',
                len: 2,
                start,
            },
            (
                b'-',
                NameState::Separator {
                    first: b'-',
                    len,
                    start,
                },
            ) => NameState::Separator {
                first: b'-',
                len: len + 1,
                start,
            },
            (b'.' | b'_' | b'-', _) => return Err(ParseErrorKind::BadNameSeparator { position }),
            (b'A'..=b'Z', _) => return Err(ParseErrorKind::UppercaseName { position }),
            _ => return Err(ParseErrorKind::BadNameChar { position }),
        };
    }
    match state {
        NameState::Alphanumeric => Ok(()),
        NameState::ComponentStart => Err(ParseErrorKind::EmptyNameComponent {
            position: offset + name.len(),
        }),
        NameState::Separator { start, .. } => Err(ParseErrorKind::BadNameSeparator {
            position: offset + start,
        }),
    }
}

fn check_tag(tag: &str, offset: usize) -> Result<(), ParseErrorKind> {
    let bytes = tag.as_bytes();
    let Some(&first) = bytes.first() else {
        return Err(ParseErrorKind::EmptyTag);
    };
    if bytes.len() > MAX_TAG_LEN {
        return Err(ParseErrorKind::TagTooLong { max: MAX_TAG_LEN });
    }
    if !(first.is_ascii_alphanumeric() || first == b'_') {
        return Err(ParseErrorKind::BadTagStart { position: offset });
    }
    for (i, &byte) in bytes.iter().enumerate().skip(1) {
        if !(byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'.' | b'-')) {
            return Err(ParseErrorKind::BadTagChar {
                position: offset + i,
            });
        }
    }
    Ok(())
}

fn check_registry(registry: &str, offset: usize) -> Result<(), ParseErrorKind> {
    let bytes = registry.as_bytes();
    if bytes.is_empty() {
        return Err(ParseErrorKind::EmptyRegistry);
    }
    if bytes.len() > MAX_NAME_LEN {
        return Err(ParseErrorKind::RegistryTooLong { max: MAX_NAME_LEN });
    }
    let host_end = if bytes[0] == b'[' {
        check_ipv6_host(registry, offset)?
    } else {
        check_dns_host(bytes, offset)?
    };
    match bytes.get(host_end) {
        None => Ok(()),
        Some(b':') => check_port(&registry[host_end + 1..], offset + host_end),
        Some(_) => Err(ParseErrorKind::BadRegistryChar {
            position: offset + host_end,
        }),
    }
}

/// Checks a bracketed IPv6 literal at the start of `registry`; returns the index just past
/// the `]`.
fn check_ipv6_host(registry: &str, offset: usize) -> Result<usize, ParseErrorKind> {
    let bytes = registry.as_bytes();
    let mut end = 1;
    while end < bytes.len() && (bytes[end].is_ascii_hexdigit() || bytes[end] == b':') {
        end += 1;
    }
    match bytes.get(end) {
        Some(b']') => {}
        Some(_) => {
            return Err(ParseErrorKind::BadIpv6 {
                position: offset + end,
            });
        }
        None => return Err(ParseErrorKind::BadIpv6 { position: offset }),
    }
    if registry[1..end].parse::<std::net::Ipv6Addr>().is_err() {
        return Err(ParseErrorKind::BadIpv6 { position: offset });
    }
    Ok(end + 1)
}

/// Checks DNS labels joined by `.` at the start of `bytes`, up to the first `:` or the end;
/// returns the index where the host ends.
fn check_dns_host(bytes: &[u8], offset: usize) -> Result<usize, ParseErrorKind> {
    let mut label_start = 0;
    let mut end = bytes.len();
    for (i, &byte) in bytes.iter().enumerate() {
        match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' => {}
            b'-' if i == label_start => {
                return Err(ParseErrorKind::BadRegistryHyphen {
                    position: offset + i,
                });
            }
            b'-' => {}
            b'.' | b':' => {
                check_label_end(bytes, label_start, i, offset)?;
                if byte == b':' {
                    end = i;
                    break;
                }
                label_start = i + 1;
            }
            _ => {
                return Err(ParseErrorKind::BadRegistryChar {
                    position: offset + i,
                });
            }
        }
    }
    if end == bytes.len() {
        check_label_end(bytes, label_start, end, offset)?;
    }
    Ok(end)
}

/// Checks that the label `bytes[start..end]` is non-empty and does not end with `-`.
fn check_label_end(
    bytes: &[u8],
    start: usize,
    end: usize,
    offset: usize,
) -> Result<(), ParseErrorKind> {
    if start == end {
        return Err(ParseErrorKind::EmptyRegistryLabel {
            position: offset + start,
        });
    }
    if bytes[end - 1] == b'-' {
        return Err(ParseErrorKind::BadRegistryHyphen {
            position: offset + end - 1,
        });
    }
    Ok(())
}

/// Checks the port after the `:` at byte `colon` (already offset).
fn check_port(port: &str, colon: usize) -> Result<(), ParseErrorKind> {
    let start = colon + 1;
    if port.is_empty() {
        return Err(ParseErrorKind::EmptyPort { position: colon });
    }
    if let Some(i) = port.bytes().position(|b| !b.is_ascii_digit()) {
        return Err(ParseErrorKind::BadPort {
            position: start + i,
        });
    }
    match port.parse::<u32>() {
        Ok(1..=65535) if port.len() <= 5 => Ok(()),
        _ => Err(ParseErrorKind::BadPort { position: start }),
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(registry) = self.registry() {
            f.write_str(registry)?;
            f.write_str("/")?;
        }
        f.write_str(&self.repository)?;
        if let Some(tag) = self.tag() {
            f.write_str(":")?;
            f.write_str(tag)?;
        }
        if let Some(digest) = self.digest() {
            f.write_str("@")?;
            f.write_str(digest.as_str())?;
        }
        Ok(())
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reference({self})")
    }
}

impl FromStr for Reference {
    type Err = ParseError;

    /// Parses strictly, as [`Reference::parse`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

impl TryFrom<&str> for Reference {
    type Error = ParseError;

    /// Parses strictly, as [`Reference::parse`].
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Reference::parse(s)
    }
}

impl TryFrom<String> for Reference {
    type Error = ParseError;

    /// Parses strictly, as [`Reference::parse`].
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Reference::parse(&s)
    }
}

impl From<Reference> for String {
    fn from(r: Reference) -> String {
        r.to_string()
    }
}

impl serde::Serialize for Reference {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Reference {
    /// Deserialises from a string, parsed strictly as [`Reference::parse`].
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <Cow<'de, str>>::deserialize(deserializer)?;
        Reference::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Why a reference, repository name, tag or registry was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind}")]
pub struct ParseError {
    kind: ParseErrorKind,
}

impl ParseError {
    pub(crate) fn new(kind: ParseErrorKind) -> ParseError {
        ParseError { kind }
    }

    /// What exactly was wrong.
    pub fn kind(&self) -> &ParseErrorKind {
        &self.kind
    }
}

/// The precise reason a reference, repository name, tag or registry was rejected.
///
/// Positions are byte offsets into the string given to the function that failed (the whole
/// reference for [`Reference::parse`], the single part for [`validate_name`] and friends).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseErrorKind {
    /// The reference string is empty.
    #[error("image reference is empty")]
    Empty,
    /// The reference string is longer than [`MAX_REFERENCE_LEN`].
    #[error("image reference is longer than {max} bytes")]
    TooLong {
        /// The limit.
        max: usize,
    },
    /// The repository name is empty.
    #[error("repository name is empty")]
    EmptyName,
    /// The repository name, with the registry and its `/` when present, is longer than
    /// [`MAX_NAME_LEN`].
    #[error("repository name (with registry) is longer than {max} bytes")]
    NameTooLong {
        /// The limit.
        max: usize,
    },
    /// A `/`-separated component of the repository name is empty (a leading, trailing or
    /// doubled `/`).
    #[error("repository name component is empty at byte {position}")]
    EmptyNameComponent {
        /// Byte offset where the empty component starts.
        position: usize,
    },
    /// An uppercase letter in the repository name.
    #[error(
        "uppercase letter in repository name at byte {position} (repository names must be lowercase)"
    )]
    UppercaseName {
        /// Byte offset of the letter.
        position: usize,
    },
    /// A character other than `a-z`, `0-9`, `/` and the separators `._-` in the repository
    /// name.
    #[error(
        "invalid character in repository name at byte {position} (allowed: a-z, 0-9, and . _ __ - between them)"
    )]
    BadNameChar {
        /// Byte offset of the character.
        position: usize,
    },
    /// A separator at the start or end of a name component, or a run of separators other
    /// than `.`, `_`, `__` or one or more `-` (`..`, `a___b`, `a.-b`).
    #[error(
        "repository name separator at byte {position} does not stand alone between two alphanumerics (allowed: ., _, __, or one or more -)"
    )]
    BadNameSeparator {
        /// Byte offset of the offending separator (the first of a run left at a component's
        /// end).
        position: usize,
    },
    /// Without a registry, the repository's first component (containing `.`, or
    /// `localhost`) would be read back as a registry (from [`Reference::new`]).
    #[error(
        "repository name's first component would be read as a registry; give the registry explicitly"
    )]
    AmbiguousRepository,
    /// A bare 64-character hex string, which docker reads as an image ID (from
    /// [`Reference::parse_normalized`]).
    #[error("repository name cannot be 64 hex characters (it would be read as an image id)")]
    HexIdentifierName,
    /// The tag after `:` is empty.
    #[error("tag is empty")]
    EmptyTag,
    /// The tag is longer than [`MAX_TAG_LEN`].
    #[error("tag is longer than {max} bytes")]
    TagTooLong {
        /// The limit.
        max: usize,
    },
    /// The tag starts with something other than `a-z`, `A-Z`, `0-9` or `_` (such as `.` or
    /// `-`).
    #[error(
        "tag must start with a letter, digit or `_`, found another character at byte {position}"
    )]
    BadTagStart {
        /// Byte offset of the tag's first character.
        position: usize,
    },
    /// A character other than `a-z`, `A-Z`, `0-9`, `_`, `.` and `-` in the tag.
    #[error("invalid character in tag at byte {position} (allowed: A-Z, a-z, 0-9, _, ., -)")]
    BadTagChar {
        /// Byte offset of the character.
        position: usize,
    },
    /// The registry is empty.
    #[error("registry is empty")]
    EmptyRegistry,
    /// The registry alone is longer than [`MAX_NAME_LEN`].
    #[error("registry is longer than {max} bytes")]
    RegistryTooLong {
        /// The limit.
        max: usize,
    },
    /// A `.`-separated label of the registry host is empty.
    #[error("registry host label is empty at byte {position}")]
    EmptyRegistryLabel {
        /// Byte offset where the empty label starts.
        position: usize,
    },
    /// A registry host label starts or ends with `-`.
    #[error("registry host label starts or ends with `-` at byte {position}")]
    BadRegistryHyphen {
        /// Byte offset of the hyphen.
        position: usize,
    },
    /// A character other than `a-z`, `A-Z`, `0-9`, `-` and `.` in the registry host.
    #[error(
        "invalid character in registry host at byte {position} (allowed: A-Z, a-z, 0-9, -, . and a bracketed IPv6 literal)"
    )]
    BadRegistryChar {
        /// Byte offset of the character.
        position: usize,
    },
    /// A bracketed IPv6 literal that is unterminated, holds characters other than hex
    /// digits and `:`, or is not an IPv6 address.
    #[error("invalid IPv6 literal in registry at byte {position}")]
    BadIpv6 {
        /// Byte offset of the offending character, or of the `[` when the address as a whole
        /// is invalid.
        position: usize,
    },
    /// Nothing follows the registry's port `:`.
    #[error("registry port after the `:` at byte {position} is empty")]
    EmptyPort {
        /// Byte offset of the `:`.
        position: usize,
    },
    /// The registry port is not a number from 1 to 65535.
    #[error("registry port at byte {position} is not a number from 1 to 65535")]
    BadPort {
        /// Byte offset of the non-digit, or of the port's start when it is out of range.
        position: usize,
    },
    /// The registry would not be recognised as one in a reference string: it has no `.`, no
    /// `:port`, no uppercase letter and is not `localhost` (from [`Reference::new`]).
    #[error(
        "registry would be read as part of the repository name (it needs a `.`, a `:port`, or to be `localhost`)"
    )]
    UnqualifiedRegistry,
    /// The part after `@` is not a valid digest. Positions inside count from the digest's
    /// start.
    #[error("invalid digest in image reference: {0}")]
    InvalidDigest(crate::digest::ParseError),
}
