//! The sync file (skopeo's YAML format): see [`SyncFile`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ocikit_client::Credentials;
use ocikit_digest::Digest;
use serde::Deserialize;

use crate::tag_select::{TagSelection, TagSelectionError};

/// Why a sync file was refused: where (the file, the line and column when the YAML parser
/// knows them, the key) and what ([`SyncFileErrorKind`]).
#[derive(Debug, thiserror::Error)]
#[error("sync file {}{}{}", path.display(), line_text(*line, *column), key_text(key))]
pub struct SyncFileError {
    path: PathBuf,
    line: Option<usize>,
    column: Option<usize>,
    key: Option<String>,
    #[source]
    kind: SyncFileErrorKind,
}

fn line_text(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(line), Some(column)) => format!(", line {line} column {column}"),
        (Some(line), None) => format!(", line {line}"),
        _ => String::new(),
    }
}

fn key_text(key: &Option<String>) -> String {
    key.as_ref()
        .map_or_else(String::new, |key| format!(", at {key}"))
}

impl SyncFileError {
    fn new(path: &Path, key: Option<String>, kind: SyncFileErrorKind) -> SyncFileError {
        SyncFileError {
            path: path.to_path_buf(),
            line: None,
            column: None,
            key,
            kind,
        }
    }

    /// What exactly was wrong.
    pub fn kind(&self) -> &SyncFileErrorKind {
        &self.kind
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The line (from 1) the YAML parser stopped at, when it knows it.
    pub fn line(&self) -> Option<usize> {
        self.line
    }

    /// Where in the file's structure: `REGISTRY`, `REGISTRY.KEY` or `REGISTRY.KEY.REPOSITORY`.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }
}

/// What was wrong with a sync file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyncFileErrorKind {
    /// The file could not be read.
    #[error("cannot read it: {reason}")]
    Read {
        /// The system's reason.
        reason: String,
    },
    /// Not YAML, or not the shape of a sync file (a list where a map belongs...).
    #[error("{message}")]
    Syntax {
        /// The YAML parser's message.
        message: String,
    },
    /// A key skopeo's sync file does not have.
    #[error(
        "unknown key `{key}` (a registry takes images, images-by-tag-regex, images-by-semver, \
         credentials, tls-verify, cert-dir)"
    )]
    UnknownKey {
        /// The key.
        key: String,
    },
    /// A registry written with a transport other than `docker://`.
    #[error("unknown transport `{transport}:` (a sync file lists registries: HOST[:PORT])")]
    UnknownTransport {
        /// The transport named.
        transport: String,
    },
    /// A registry that is not `HOST[:PORT]`.
    #[error("`{registry}` is not a registry host (HOST[:PORT])")]
    InvalidRegistry {
        /// The text given.
        registry: String,
    },
    /// An entry of an `images` list that is neither a tag nor a digest.
    #[error("`{reference}` is neither a tag nor a digest")]
    InvalidReference {
        /// The text given.
        reference: String,
    },
    /// A regex that does not compile or a range that does not parse.
    #[error(transparent)]
    TagSelection(#[from] TagSelectionError),
    /// No registry, or no repository in any.
    #[error("it names no repository to sync")]
    Empty,
}

/// A parsed sync file: each registry, how to reach it, and what to take from it.
///
/// The sync file: registries and the repositories to mirror from each, in skopeo's YAML
/// format (`skopeo sync --src yaml`).
///
/// ```yaml
/// registry.example.com:
///     images:
///         busybox: []                # every tag
///         redis: ["1.0", "2.0", "sha256:…"]
///     images-by-tag-regex:
///         nginx: ^1\.13\.[12]-alpine-perl$
///     images-by-semver:
///         alpine: ">= 3.12.0"
///     credentials:
///         username: john
///         password: this is a secret
///     tls-verify: true
///     cert-dir: /home/john/certs
/// ```
///
/// Every key is checked: a key skopeo does not know, a registry written with a transport
/// other than `docker://`, a regex that does not compile or a range that does not parse is a
/// [`SyncFileError`] naming the file, the line when the YAML parser knows it, and the key.
/// Semver ranges are read with cargo's rules (see [`TagSelection::range`]), which agree
/// with skopeo's (Masterminds) on the usual comparisons (`>=`, `<`, `~`, `^`, `,`); `||`
/// alternatives are not supported.
#[derive(Clone, Debug)]
pub struct SyncFile {
    pub(crate) registries: Vec<FileRegistry>,
}

/// One registry of a sync file.
#[derive(Clone, Debug)]
pub(crate) struct FileRegistry {
    pub(crate) host: String,
    pub(crate) tls_verify: Option<bool>,
    pub(crate) cert_dir: Option<PathBuf>,
    pub(crate) credentials: Option<Credentials>,
    pub(crate) repositories: Vec<FileRepository>,
}

/// One repository of a registry, and its tags (and digests) to take.
#[derive(Clone, Debug)]
pub(crate) struct FileRepository {
    pub(crate) name: String,
    pub(crate) tags: TagSelection,
    pub(crate) digests: Vec<Digest>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegistry {
    #[serde(default)]
    images: BTreeMap<String, Option<Vec<String>>>,
    #[serde(default, rename = "images-by-tag-regex")]
    by_regex: BTreeMap<String, String>,
    #[serde(default, rename = "images-by-semver")]
    by_semver: BTreeMap<String, String>,
    #[serde(default)]
    credentials: Option<RawCredentials>,
    #[serde(default, rename = "tls-verify")]
    tls_verify: Option<bool>,
    #[serde(default, rename = "cert-dir")]
    cert_dir: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCredentials {
    username: String,
    password: String,
}

impl SyncFile {
    /// Reads and parses the sync file at `path` (the format: [`SyncFile`]).
    pub fn load(path: &Path) -> Result<SyncFile, SyncFileError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            SyncFileError::new(
                path,
                None,
                SyncFileErrorKind::Read {
                    reason: e.to_string(),
                },
            )
        })?;
        SyncFile::parse(&text, path)
    }

    /// Parses the text of a sync file; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<SyncFile, SyncFileError> {
        let raw: BTreeMap<String, RawRegistry> =
            serde_yaml_ng::from_str(text).map_err(|e| yaml_error(path, &e))?;
        let mut registries = Vec::with_capacity(raw.len());
        for (key, raw) in raw {
            let host = registry_host(&key).map_err(|kind| {
                let mut err = SyncFileError::new(path, Some(key.clone()), kind);
                err.line = find_line(text, &key, 0);
                err
            })?;
            let at = |section: &str, repository: &str| format!("{key}.{section}.{repository}");
            let mut repositories = Vec::new();
            for (name, references) in raw.images {
                let mut tags = Vec::new();
                let mut digests = Vec::new();
                for reference in references.unwrap_or_default() {
                    if reference.contains(':') {
                        let digest = reference.parse::<Digest>().map_err(|_| {
                            SyncFileError::new(
                                path,
                                Some(at("images", &name)),
                                SyncFileErrorKind::InvalidReference {
                                    reference: reference.clone(),
                                },
                            )
                        })?;
                        digests.push(digest);
                    } else if ocikit_layout::validate_tag(&reference).is_ok() {
                        tags.push(reference);
                    } else {
                        return Err(SyncFileError::new(
                            path,
                            Some(at("images", &name)),
                            SyncFileErrorKind::InvalidReference { reference },
                        ));
                    }
                }
                // No list (or an empty one): every tag; digests alone: only those.
                let selection = if tags.is_empty() && digests.is_empty() {
                    TagSelection::all()
                } else {
                    TagSelection::all().tags(tags)
                };
                repositories.push(FileRepository {
                    name,
                    tags: selection,
                    digests,
                });
            }
            for (name, pattern) in raw.by_regex {
                let tags = TagSelection::all().filter(&pattern).map_err(|e| {
                    SyncFileError::new(path, Some(at("images-by-tag-regex", &name)), e.into())
                })?;
                repositories.push(FileRepository {
                    name,
                    tags,
                    digests: Vec::new(),
                });
            }
            for (name, range) in raw.by_semver {
                let tags = TagSelection::all().range(&range).map_err(|e| {
                    SyncFileError::new(path, Some(at("images-by-semver", &name)), e.into())
                })?;
                repositories.push(FileRepository {
                    name,
                    tags,
                    digests: Vec::new(),
                });
            }
            registries.push(FileRegistry {
                host,
                tls_verify: raw.tls_verify,
                cert_dir: raw.cert_dir,
                credentials: raw
                    .credentials
                    .map(|c| Credentials::new(c.username, c.password)),
                repositories,
            });
        }
        if registries.iter().all(|r| r.repositories.is_empty()) {
            return Err(SyncFileError::new(path, None, SyncFileErrorKind::Empty));
        }
        Ok(SyncFile { registries })
    }

    /// `REGISTRY/REPOSITORY` of every repository the file names, in the file's order per
    /// registry (registries, and repositories within each section, sorted).
    pub fn repositories(&self) -> Vec<String> {
        self.registries
            .iter()
            .flat_map(|r| {
                r.repositories
                    .iter()
                    .map(|repo| format!("{}/{}", r.host, repo.name))
            })
            .collect()
    }
}

/// The registry host a top-level key names: `HOST[:PORT]`, or `docker://HOST[:PORT]`.
fn registry_host(key: &str) -> Result<String, SyncFileErrorKind> {
    let host = match key.split_once("://") {
        Some(("docker", rest)) => rest,
        Some((transport, _)) => {
            return Err(SyncFileErrorKind::UnknownTransport {
                transport: transport.to_string(),
            });
        }
        None => key,
    };
    // `oci:/path`, `dir:x`: a transport; `host:5000`: a port.
    if let Some((name, rest)) = host.split_once(':')
        && !name.is_empty()
        && !name.contains('.')
        && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')
        && !rest.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(SyncFileErrorKind::UnknownTransport {
            transport: name.to_string(),
        });
    }
    let valid = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    if !valid {
        return Err(SyncFileErrorKind::InvalidRegistry {
            registry: key.to_string(),
        });
    }
    Ok(host.to_string())
}

/// The line (from 1) where `key` is written as a mapping key at the start of a line, with
/// at least `indent` spaces before it.
fn find_line(text: &str, key: &str, indent: usize) -> Option<usize> {
    text.lines()
        .position(|line| {
            let trimmed = line.trim_start();
            line.len() - trimmed.len() >= indent
                && [key.to_string(), format!("\"{key}\""), format!("'{key}'")]
                    .iter()
                    .any(|k| {
                        trimmed
                            .strip_prefix(k.as_str())
                            .is_some_and(|rest| rest.trim_start().starts_with(':'))
                    })
        })
        .map(|n| n + 1)
}

/// A YAML parser's error as a [`SyncFileError`]: an unknown key by name, anything else as
/// its message; the line and column where the parser stopped.
fn yaml_error(path: &Path, err: &serde_yaml_ng::Error) -> SyncFileError {
    let message = err.to_string();
    // serde's wording for `deny_unknown_fields`: "PATH: unknown field `KEY`, expected …".
    let unknown = message
        .split_once("unknown field `")
        .and_then(|(before, rest)| {
            let key = rest.split_once('`')?.0.to_string();
            let at = before.trim_end().trim_end_matches(':').trim();
            Some((key, (!at.is_empty() && at != ".").then(|| at.to_string())))
        });
    let (key, kind) = match unknown {
        Some((key, at)) => (
            Some(at.map_or_else(|| key.clone(), |at| format!("{at}.{key}"))),
            SyncFileErrorKind::UnknownKey { key },
        ),
        None => (
            None,
            SyncFileErrorKind::Syntax {
                message: message
                    .split(" at line ")
                    .next()
                    .unwrap_or(&message)
                    .to_string(),
            },
        ),
    };
    let location = err.location();
    SyncFileError {
        path: path.to_path_buf(),
        line: location.as_ref().map(serde_yaml_ng::Location::line),
        column: location.as_ref().map(serde_yaml_ng::Location::column),
        key,
        kind,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tag_select::TagSelectionErrorKind;

    fn parse(text: &str) -> Result<SyncFile, SyncFileError> {
        SyncFile::parse(text, Path::new("sync.yml"))
    }

    #[test]
    fn skopeo_s_example_is_read() {
        let file = parse(
            r#"
registry.example.com:
    images:
        busybox: []
        redis:
            - "1.0"
            - "2.0"
            - "sha256:0000000000000000000000000000000011111111111111111111111111111111"
    images-by-tag-regex:
        nginx: ^1\.13\.[12]-alpine-perl$
    images-by-semver:
        alpine: ">= 3.12.0"
    credentials:
        username: john
        password: this is a secret
    tls-verify: true
    cert-dir: /home/john/certs
quay.io:
    tls-verify: false
    images:
        coreos/etcd:
            - latest
"#,
        )
        .unwrap();
        assert_eq!(
            file.repositories(),
            [
                "quay.io/coreos/etcd",
                "registry.example.com/busybox",
                "registry.example.com/redis",
                "registry.example.com/nginx",
                "registry.example.com/alpine"
            ]
        );
        let example = &file.registries[1];
        assert_eq!(example.tls_verify, Some(true));
        assert_eq!(
            example.cert_dir.as_deref(),
            Some(Path::new("/home/john/certs"))
        );
        assert_eq!(
            example.credentials,
            Some(Credentials::new("john", "this is a secret"))
        );
        let tags: Vec<String> = ["1.0", "2.0", "3.0", "1.13.1-alpine-perl", "3.12.1", "3.11"]
            .map(String::from)
            .to_vec();
        let [busybox, redis, nginx, alpine] = &example.repositories[..] else {
            panic!("four repositories");
        };
        assert!(busybox.tags.is_all() && busybox.digests.is_empty());
        assert_eq!(redis.tags.select(&tags), ["1.0", "2.0"]);
        assert_eq!(redis.digests.len(), 1);
        assert_eq!(nginx.tags.select(&tags), ["1.13.1-alpine-perl"]);
        assert_eq!(alpine.tags.select(&tags), ["3.12.1"]);
        assert_eq!(file.registries[0].tls_verify, Some(false));
    }

    #[test]
    fn an_unknown_key_is_named_with_its_line() {
        let err = parse("quay.io:\n  images:\n    etcd: []\n  imagez:\n    x: []\n").unwrap_err();
        assert!(
            matches!(err.kind(), SyncFileErrorKind::UnknownKey { key } if key == "imagez"),
            "{err:?}"
        );
        assert_eq!(err.line(), Some(4), "{err}");
        assert_eq!(err.key(), Some("quay.io.imagez"));
        let text = format!("{err}: {}", err.kind());
        assert!(text.contains("sync.yml, line 4"), "{text}");
        let err = parse("quay.io:\n  images: {a: []}\n  credentials: {username: a, pasword: b}\n")
            .unwrap_err();
        assert!(matches!(err.kind(), SyncFileErrorKind::UnknownKey { key } if key == "pasword"));
    }

    #[test]
    fn bad_yaml_bad_transports_and_bad_selections_are_refused() {
        let err = parse("quay.io:\n  images: [\n").unwrap_err();
        assert!(
            matches!(err.kind(), SyncFileErrorKind::Syntax { .. }),
            "{err:?}"
        );
        assert!(err.line().is_some());
        let err = parse("quay.io:\n  images:\n    - a\n").unwrap_err();
        assert!(
            matches!(err.kind(), SyncFileErrorKind::Syntax { .. }),
            "{err:?}"
        );
        for key in ["oci:/srv/images", "ftp://quay.io", "dir:x"] {
            let err = parse(&format!("{key}:\n  images:\n    a: []\n")).unwrap_err();
            assert!(
                matches!(err.kind(), SyncFileErrorKind::UnknownTransport { .. }),
                "{key}: {err:?}"
            );
            assert_eq!(err.line(), Some(1), "{key}");
        }
        assert!(parse("docker://localhost:5000:\n  images:\n    a: []\n").is_ok());
        assert!(parse("localhost:5000:\n  images:\n    a: []\n").is_ok());
        let err = parse("quay.io:\n  images-by-tag-regex:\n    etcd: 'v1.('\n").unwrap_err();
        assert_eq!(err.key(), Some("quay.io.images-by-tag-regex.etcd"));
        assert!(matches!(
            err.kind(),
            SyncFileErrorKind::TagSelection(e) if matches!(e.kind(), TagSelectionErrorKind::Regex { .. })
        ));
        let err = parse("quay.io:\n  images-by-semver:\n    etcd: 'newest'\n").unwrap_err();
        assert!(matches!(err.kind(), SyncFileErrorKind::TagSelection(_)));
        let err = parse("quay.io:\n  images:\n    etcd: ['bad tag']\n").unwrap_err();
        assert!(matches!(
            err.kind(),
            SyncFileErrorKind::InvalidReference { .. }
        ));
        let err = parse("quay.io:\n  images:\n    etcd: ['sha256:12']\n").unwrap_err();
        assert!(matches!(
            err.kind(),
            SyncFileErrorKind::InvalidReference { .. }
        ));
        assert!(matches!(
            parse("quay.io:\n  tls-verify: false\n").unwrap_err().kind(),
            SyncFileErrorKind::Empty
        ));
        let err = SyncFile::load(Path::new("/nonexistent/sync.yml")).unwrap_err();
        assert!(matches!(err.kind(), SyncFileErrorKind::Read { .. }));
    }
}
