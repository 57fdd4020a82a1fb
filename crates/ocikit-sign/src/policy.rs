//! The subset of containers' `policy.json` (containers-policy.json(5)) that key-based
//! signatures need, and its evaluation.
//!
//! Read: `default` (required, a non-empty list of requirements) and `transports`, whose
//! `docker` scopes (`host[:port][/namespace…][/repo][:tag|@digest]`, or `*.domain`) and
//! `oci` scopes (an absolute directory; the layout's directory, then its parents: as in
//! containers/image, a `DIR:IMAGE` scope is read but never matches) are looked up most
//! specific first, then the transport's `""` scope, then `default`. Other transports are read (their
//! requirements are checked as strictly) but never looked up. Requirements:
//! `insecureAcceptAnything`, `reject`, and `sigstoreSigned` with exactly one of `keyPath`,
//! `keyPaths`, `keyData`, `keyDatas` and an optional `signedIdentity` (`matchExact`,
//! `matchRepoDigestOrExact`, the default, `matchRepository`, `exactReference`,
//! `exactRepository`).
//!
//! `docker` scopes are checked where skopeo 1.9 checks none: a scope that could never match
//! (`quay.io/team/*`, a host without a dot, port or `localhost`) is refused, since a scope
//! that silently never matches lets a less specific, possibly more permissive one apply.
//!
//! Anything else is an error, never an accept: unknown fields, unknown requirement or
//! identity types, and what containers/image knows but ocikit does not do (`signedBy` GPG
//! keys, `signedBaseLayer`, `remapIdentity`, Fulcio/Rekor/PKI settings).
//!
//! ```
//! use ocikit_digest::{Digest, Reference};
//! use ocikit_sign::policy::{ImageIdentity, Policy};
//! use ocikit_sign::{PrivateKey, sign_image};
//!
//! let key = PrivateKey::generate()?;
//! # use base64::Engine as _;
//! let key_data = base64::engine::general_purpose::STANDARD.encode(key.public_key().to_pem());
//! let policy = Policy::parse(
//!     format!(r#"{{"default":[{{"type":"reject"}}],
//!                 "transports":{{"docker":{{"quay.io/team":[
//!                     {{"type":"sigstoreSigned","keyData":"{key_data}"}}]}}}}}}"#).as_bytes(),
//!     |_| unreachable!("no keyPath"),
//! )?;
//! let image = Reference::parse("quay.io/team/app:v1")?;
//! let digest = Digest::sha256(b"the manifest");
//! let signature = sign_image(&key, &image, digest.clone())?;
//!
//! let docker = ImageIdentity::Docker(image);
//! assert!(policy.evaluate(&docker, &digest, &[signature]).is_accepted());
//! assert!(!policy.evaluate(&docker, &digest, &[]).is_accepted());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read as _;
use std::path::{Component, Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ocikit_digest::{Digest, Reference};
use serde_json::{Map, Value};

use crate::identity::{SignedIdentity, parse_claim};
use crate::key::{KeyError, MAX_KEY_FILE_LEN, PublicKey};
use crate::signature::{Expected, Signature, VerifiedSignature, verify};
use crate::{Error, Result};

/// The largest policy file read, in bytes.
pub const MAX_POLICY_LEN: usize = 1024 * 1024;

/// The transport name of registries in `policy.json`.
pub const DOCKER_TRANSPORT: &str = "docker";
/// The transport name of OCI layouts in `policy.json`.
pub const OCI_TRANSPORT: &str = "oci";

/// Why a policy was refused: what was wrong, and where (a JSON path such as
/// `transports.docker["quay.io"][0].signedIdentity`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{at}: {kind}")]
pub struct PolicyError {
    at: String,
    kind: PolicyErrorKind,
}

impl PolicyError {
    fn new(at: &str, kind: PolicyErrorKind) -> PolicyError {
        PolicyError {
            at: at.to_string(),
            kind,
        }
    }

    /// What exactly was wrong.
    pub fn kind(&self) -> &PolicyErrorKind {
        &self.kind
    }

    /// Where in the file.
    pub fn at(&self) -> &str {
        &self.at
    }
}

/// The precise reason a policy was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyErrorKind {
    /// The file is larger than [`MAX_POLICY_LEN`].
    #[error("policy is larger than {max} bytes")]
    TooLarge {
        /// The limit.
        max: usize,
    },
    /// Not JSON, or JSON with duplicate keys.
    #[error("not valid JSON: {reason}")]
    Json {
        /// The parser's complaint.
        reason: String,
    },
    /// A value has the wrong JSON type.
    #[error("expected {expected}")]
    WrongType {
        /// What it should be.
        expected: &'static str,
    },
    /// A required field is missing.
    #[error("`{field}` is missing")]
    MissingField {
        /// The field.
        field: &'static str,
    },
    /// A field this format does not have.
    #[error("unknown field `{field}`")]
    UnknownField {
        /// The field.
        field: String,
    },
    /// A field containers/image knows that ocikit does not implement (Fulcio, Rekor, PKI);
    /// refused rather than ignored, since ignoring it would accept more than it says.
    #[error("`{field}` is not supported by ocikit")]
    UnsupportedField {
        /// The field.
        field: String,
    },
    /// A list of requirements is empty (containers/image refuses that too: write
    /// `insecureAcceptAnything` to accept).
    #[error("a list of requirements must not be empty")]
    EmptyRequirements,
    /// A requirement type nobody defines.
    #[error("unknown requirement type `{found}`")]
    UnknownRequirement {
        /// The type found.
        found: String,
    },
    /// A requirement type of containers/image that ocikit does not implement (`signedBy`,
    /// `signedBaseLayer`).
    #[error("requirement type `{found}` is not supported by ocikit")]
    UnsupportedRequirement {
        /// The type found.
        found: String,
    },
    /// A `signedIdentity` type nobody defines.
    #[error("unknown signedIdentity type `{found}`")]
    UnknownIdentity {
        /// The type found.
        found: String,
    },
    /// A `signedIdentity` type of containers/image that ocikit does not implement
    /// (`remapIdentity`).
    #[error("signedIdentity type `{found}` is not supported by ocikit")]
    UnsupportedIdentity {
        /// The type found.
        found: String,
    },
    /// Not exactly one of `keyPath`, `keyPaths`, `keyData`, `keyDatas` (or an empty list).
    #[error("exactly one of keyPath, keyPaths, keyData and keyDatas must name at least one key")]
    KeyCount,
    /// A `keyData` value is not base64.
    #[error("keyData is not base64")]
    KeyDataEncoding,
    /// A key named by the policy is not an ECDSA P-256 public key in a `PUBLIC KEY` PEM.
    #[error("invalid public key")]
    Key(#[source] KeyError),
    /// A reference in a `signedIdentity` is not a docker reference (or, for
    /// `exactReference`, names no tag or digest).
    #[error("invalid docker reference `{value}`")]
    InvalidReference {
        /// The value.
        value: String,
    },
    /// A scope that cannot match anything in its transport.
    #[error("invalid scope: {reason}")]
    InvalidScope {
        /// What is wrong.
        reason: String,
    },
}

fn fail(at: &str, kind: PolicyErrorKind) -> Error {
    Error::Policy(PolicyError::new(at, kind))
}

/// Where a trusted key came from.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeySource {
    /// `keyPath`/`keyPaths`: a file.
    Path(PathBuf),
    /// `keyData`/`keyDatas`: inline in the policy.
    Inline,
}

/// A public key a `sigstoreSigned` requirement trusts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustedKey {
    source: KeySource,
    key: PublicKey,
}

impl TrustedKey {
    /// Where it came from.
    pub fn source(&self) -> &KeySource {
        &self.source
    }

    /// The key.
    pub fn key(&self) -> &PublicKey {
        &self.key
    }
}

/// `sigstoreSigned`: at least one signature made by one of the keys, for this manifest,
/// claiming an identity the rule accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SigstoreSigned {
    keys: Vec<TrustedKey>,
    identity: SignedIdentity,
}

impl SigstoreSigned {
    /// A requirement trusting `keys` under `identity`.
    pub fn new(keys: Vec<PublicKey>, identity: SignedIdentity) -> SigstoreSigned {
        SigstoreSigned {
            keys: keys
                .into_iter()
                .map(|key| TrustedKey {
                    source: KeySource::Inline,
                    key,
                })
                .collect(),
            identity,
        }
    }

    /// The trusted keys.
    pub fn keys(&self) -> &[TrustedKey] {
        &self.keys
    }

    /// The identity rule.
    pub fn identity(&self) -> &SignedIdentity {
        &self.identity
    }
}

/// One policy requirement.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Requirement {
    /// `insecureAcceptAnything`.
    InsecureAcceptAnything,
    /// `reject`.
    Reject,
    /// `sigstoreSigned`.
    SigstoreSigned(SigstoreSigned),
}

/// Which image a policy is asked about: where it is, and so which scopes apply and which
/// docker reference (if any) the identity rules compare with.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ImageIdentity {
    /// An image in a registry (`docker://`), by its reference (normalised here:
    /// `alpine` is `docker.io/library/alpine:latest`).
    Docker(Reference),
    /// An image in an OCI layout (`oci:DIR[:IMAGE]`). `dir` must be absolute and free of
    /// symlinks, `..` and `.` (resolve it first: this crate does no I/O to do so); `image`
    /// is the reference name in the layout (the tag), if any, shown in messages but, as in
    /// containers/image, not part of the scope lookup (`DIR` and its parents). It has no
    /// docker reference, so only `exactReference`/`exactRepository` rules can accept its
    /// signatures.
    Oci {
        /// The layout directory, resolved.
        dir: PathBuf,
        /// The image's name in the layout.
        image: Option<String>,
    },
}

impl ImageIdentity {
    fn transport(&self) -> &'static str {
        match self {
            ImageIdentity::Docker(_) => DOCKER_TRANSPORT,
            ImageIdentity::Oci { .. } => OCI_TRANSPORT,
        }
    }

    fn docker_reference(&self) -> Option<Reference> {
        match self {
            ImageIdentity::Docker(reference) => Some(
                Reference::parse_normalized(&reference.to_string())
                    .unwrap_or_else(|_| reference.clone()),
            ),
            ImageIdentity::Oci { .. } => None,
        }
    }

    /// The scopes that may apply, most specific first (transport scopes only).
    fn scopes(&self) -> Vec<String> {
        match self {
            ImageIdentity::Docker(_) => {
                let Some(reference) = self.docker_reference() else {
                    return Vec::new();
                };
                let name = reference.name();
                let mut scopes = Vec::new();
                if let Some(tag) = reference.tag() {
                    scopes.push(format!("{name}:{tag}"));
                }
                if let Some(digest) = reference.digest() {
                    scopes.push(format!("{name}@{digest}"));
                }
                let mut prefix = name.as_str();
                loop {
                    scopes.push(prefix.to_string());
                    match prefix.rfind('/') {
                        Some(slash) => prefix = &prefix[..slash],
                        None => break,
                    }
                }
                // Wildcards for the host's parent domains (the port is not part of them).
                let host = prefix.split(':').next().unwrap_or(prefix);
                let mut rest = host;
                while let Some(dot) = rest.find('.') {
                    rest = &rest[dot + 1..];
                    scopes.push(format!("*.{rest}"));
                }
                scopes
            }
            ImageIdentity::Oci { dir, .. } => {
                // containers/image leaves the image name out: `DIR:NAME` and `DIR` may be the
                // same image, so the directory and its parents are the scopes.
                let dir = dir.to_string_lossy().into_owned();
                let mut scopes = Vec::new();
                let mut prefix = dir.as_str();
                while prefix.len() > 1 {
                    scopes.push(prefix.to_string());
                    match prefix.rfind('/') {
                        Some(0) | None => break,
                        Some(slash) => prefix = &prefix[..slash],
                    }
                }
                scopes
            }
        }
    }
}

impl fmt::Display for ImageIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageIdentity::Docker(reference) => write!(f, "docker://{reference}"),
            ImageIdentity::Oci { dir, image: None } => write!(f, "oci:{}", dir.display()),
            ImageIdentity::Oci {
                dir,
                image: Some(image),
            } => write!(f, "oci:{}:{image}", dir.display()),
        }
    }
}

/// Which part of the policy applied to an image.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Scope {
    /// A scope of a transport (`""` is the transport's default).
    Transport {
        /// `docker` or `oci`.
        transport: String,
        /// The scope.
        scope: String,
    },
    /// The global `default`.
    Default,
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Transport { transport, scope } if scope.is_empty() => {
                write!(f, "the default of transport `{transport}`")
            }
            Scope::Transport { transport, scope } => {
                write!(f, "scope `{scope}` of transport `{transport}`")
            }
            Scope::Default => f.write_str("the global default"),
        }
    }
}

/// Why a policy refused an image.
#[derive(Debug)]
#[non_exhaustive]
pub enum Rejection {
    /// A `reject` requirement applies.
    Rejected,
    /// A `sigstoreSigned` requirement applies, and the image has no signature.
    NoSignatures,
    /// A `sigstoreSigned` requirement applies, and no signature satisfied it; each
    /// candidate's reason, in the order given.
    NoValidSignature {
        /// Why each signature was refused.
        reasons: Vec<Error>,
    },
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::Rejected => f.write_str("the policy rejects these images"),
            Rejection::NoSignatures => f.write_str("a signature is required, but there is none"),
            Rejection::NoValidSignature { reasons } => {
                write!(f, "none of the {} signatures is acceptable", reasons.len())?;
                for (i, reason) in reasons.iter().enumerate() {
                    write!(f, "; {}: {reason}", i + 1)?;
                    let mut source = std::error::Error::source(reason);
                    while let Some(cause) = source {
                        write!(f, ": {cause}")?;
                        source = cause.source();
                    }
                }
                Ok(())
            }
        }
    }
}

/// What a policy decided about an image.
#[derive(Debug)]
#[non_exhaustive]
pub enum Decision {
    /// Every requirement of the scope was satisfied. `signatures` are the signatures that
    /// satisfied `sigstoreSigned` requirements (empty under `insecureAcceptAnything` alone).
    Accepted {
        /// The scope that applied.
        scope: Scope,
        /// The verified signatures.
        signatures: Vec<VerifiedSignature>,
    },
    /// A requirement was not satisfied.
    Rejected {
        /// The scope that applied.
        scope: Scope,
        /// Why.
        reason: Rejection,
    },
}

impl Decision {
    /// Whether the image was accepted.
    pub fn is_accepted(&self) -> bool {
        matches!(self, Decision::Accepted { .. })
    }

    /// The scope that applied.
    pub fn scope(&self) -> &Scope {
        match self {
            Decision::Accepted { scope, .. } | Decision::Rejected { scope, .. } => scope,
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Accepted { scope, signatures } => write!(
                f,
                "accepted by {scope} ({} verified signatures)",
                signatures.len()
            ),
            Decision::Rejected { scope, reason } => write!(f, "rejected by {scope}: {reason}"),
        }
    }
}

/// A parsed `policy.json`, with every key it names read and parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    default: Vec<Requirement>,
    transports: BTreeMap<String, BTreeMap<String, Vec<Requirement>>>,
}

impl Policy {
    /// A policy of one `default` list (`{"default": requirements}`).
    pub fn with_default(requirements: Vec<Requirement>) -> Policy {
        Policy {
            default: requirements,
            transports: BTreeMap::new(),
        }
    }

    /// Reads the policy file at `path` and the key files its `keyPath`s name, with
    /// `std::fs` (blocking: call it from a blocking thread in async code). Relative key paths
    /// are taken as written, relative to the working directory, as containers/image does.
    pub fn load(path: &Path) -> Result<Policy> {
        let bytes = read_limited(path, MAX_POLICY_LEN)?;
        Policy::parse(&bytes, |key| read_limited(key, MAX_KEY_FILE_LEN))
    }

    /// Parses a policy; `read_key` reads the file of each `keyPath` (its errors are
    /// returned as they are, so an [`Error::Io`] names the path).
    pub fn parse(
        bytes: &[u8],
        mut read_key: impl FnMut(&Path) -> Result<Vec<u8>>,
    ) -> Result<Policy> {
        if bytes.len() > MAX_POLICY_LEN {
            return Err(fail(
                "policy",
                PolicyErrorKind::TooLarge {
                    max: MAX_POLICY_LEN,
                },
            ));
        }
        let value =
            ocikit_digest::json::parse_strict_with_limit(bytes, MAX_POLICY_LEN).map_err(|e| {
                fail(
                    "policy",
                    PolicyErrorKind::Json {
                        reason: e.to_string(),
                    },
                )
            })?;
        let top = object(&value, "policy")?;
        only_fields(top, "policy", &["default", "transports"], &[])?;
        let default = requirements(
            top.get("default").ok_or_else(|| {
                fail("policy", PolicyErrorKind::MissingField { field: "default" })
            })?,
            "default",
            &mut read_key,
        )?;
        let mut transports = BTreeMap::new();
        if let Some(value) = top.get("transports") {
            for (transport, scopes_value) in object(value, "transports")? {
                let at = format!("transports.{transport}");
                let mut scopes = BTreeMap::new();
                for (scope, list) in object(scopes_value, &at)? {
                    let at = format!("{at}[{scope:?}]");
                    check_scope(transport, scope, &at)?;
                    scopes.insert(scope.clone(), requirements(list, &at, &mut read_key)?);
                }
                transports.insert(transport.clone(), scopes);
            }
        }
        Ok(Policy {
            default,
            transports,
        })
    }

    /// The requirements that apply to `image`, and the scope they come from: the most
    /// specific matching scope of its transport, else the transport's `""`, else `default`.
    pub fn requirements_for(&self, image: &ImageIdentity) -> (Scope, &[Requirement]) {
        let transport = image.transport();
        if let Some(scopes) = self.transports.get(transport) {
            for scope in image.scopes().into_iter().chain([String::new()]) {
                if let Some(list) = scopes.get(&scope) {
                    return (
                        Scope::Transport {
                            transport: transport.to_string(),
                            scope,
                        },
                        list,
                    );
                }
            }
        }
        (Scope::Default, &self.default)
    }

    /// Whether deciding about `image` needs its signatures: a `sigstoreSigned` requirement
    /// applies and no `reject` settles it first. When it does not, the caller need not
    /// fetch the signature manifest ([`Policy::evaluate`] with no signatures decides the
    /// same).
    pub fn requires_signatures(&self, image: &ImageIdentity) -> bool {
        let (_, requirements) = self.requirements_for(image);
        for requirement in requirements {
            match requirement {
                Requirement::Reject => return false,
                Requirement::SigstoreSigned(_) => return true,
                Requirement::InsecureAcceptAnything => {}
            }
        }
        false
    }

    /// Decides whether `image`, whose manifest has digest `manifest_digest`, is accepted,
    /// given its candidate `signatures` (the layers of its `.sig` manifest, unverified):
    /// every requirement of the scope must be satisfied; a `sigstoreSigned` requirement is
    /// satisfied by at least one signature that [`verify`] accepts with its keys and identity
    /// rule (other signatures are ignored, as containers/image ignores them).
    pub fn evaluate(
        &self,
        image: &ImageIdentity,
        manifest_digest: &Digest,
        signatures: &[Signature],
    ) -> Decision {
        let (scope, requirements) = self.requirements_for(image);
        let mut verified = Vec::new();
        for requirement in requirements {
            match requirement {
                Requirement::InsecureAcceptAnything => {}
                Requirement::Reject => {
                    return Decision::Rejected {
                        scope,
                        reason: Rejection::Rejected,
                    };
                }
                Requirement::SigstoreSigned(required) => {
                    if signatures.is_empty() {
                        return Decision::Rejected {
                            scope,
                            reason: Rejection::NoSignatures,
                        };
                    }
                    let keys: Vec<PublicKey> =
                        required.keys.iter().map(|k| k.key.clone()).collect();
                    let mut expected = Expected::new(manifest_digest.clone())
                        .with_identity(required.identity.clone());
                    if let Some(reference) = image.docker_reference() {
                        expected = expected.with_image(reference);
                    }
                    let mut reasons = Vec::new();
                    let mut accepted = false;
                    for signature in signatures {
                        match verify(signature, &keys, &expected) {
                            Ok(ok) => {
                                accepted = true;
                                if !verified.contains(&ok) {
                                    verified.push(ok);
                                }
                            }
                            Err(e) => reasons.push(e),
                        }
                    }
                    if !accepted {
                        return Decision::Rejected {
                            scope,
                            reason: Rejection::NoValidSignature { reasons },
                        };
                    }
                }
            }
        }
        Decision::Accepted {
            scope,
            signatures: verified,
        }
    }
}

fn read_limited(path: &Path, max: usize) -> Result<Vec<u8>> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut bytes = Vec::new();
    file.take(max as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() > max {
        return Err(io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {max} bytes"),
        )));
    }
    Ok(bytes)
}

fn object<'v>(value: &'v Value, at: &str) -> Result<&'v Map<String, Value>> {
    value.as_object().ok_or_else(|| {
        fail(
            at,
            PolicyErrorKind::WrongType {
                expected: "an object",
            },
        )
    })
}

fn string<'v>(value: &'v Value, at: &str) -> Result<&'v str> {
    value.as_str().ok_or_else(|| {
        fail(
            at,
            PolicyErrorKind::WrongType {
                expected: "a string",
            },
        )
    })
}

/// Refuses fields outside `known`; those in `unsupported` get their own kind.
fn only_fields(
    object: &Map<String, Value>,
    at: &str,
    known: &[&str],
    unsupported: &[&str],
) -> Result<()> {
    for field in object.keys() {
        if unsupported.contains(&field.as_str()) {
            return Err(fail(
                at,
                PolicyErrorKind::UnsupportedField {
                    field: field.clone(),
                },
            ));
        }
        if !known.contains(&field.as_str()) {
            return Err(fail(
                at,
                PolicyErrorKind::UnknownField {
                    field: field.clone(),
                },
            ));
        }
    }
    Ok(())
}

fn requirements(
    value: &Value,
    at: &str,
    read_key: &mut impl FnMut(&Path) -> Result<Vec<u8>>,
) -> Result<Vec<Requirement>> {
    let list = value.as_array().ok_or_else(|| {
        fail(
            at,
            PolicyErrorKind::WrongType {
                expected: "a list of requirements",
            },
        )
    })?;
    if list.is_empty() {
        return Err(fail(at, PolicyErrorKind::EmptyRequirements));
    }
    list.iter()
        .enumerate()
        .map(|(i, item)| requirement(item, &format!("{at}[{i}]"), read_key))
        .collect()
}

fn type_of<'v>(object: &'v Map<String, Value>, at: &str) -> Result<&'v str> {
    string(
        object
            .get("type")
            .ok_or_else(|| fail(at, PolicyErrorKind::MissingField { field: "type" }))?,
        &format!("{at}.type"),
    )
}

fn requirement(
    value: &Value,
    at: &str,
    read_key: &mut impl FnMut(&Path) -> Result<Vec<u8>>,
) -> Result<Requirement> {
    let fields = object(value, at)?;
    match type_of(fields, at)? {
        "insecureAcceptAnything" => {
            only_fields(fields, at, &["type"], &[])?;
            Ok(Requirement::InsecureAcceptAnything)
        }
        "reject" => {
            only_fields(fields, at, &["type"], &[])?;
            Ok(Requirement::Reject)
        }
        "sigstoreSigned" => sigstore_signed(fields, at, read_key).map(Requirement::SigstoreSigned),
        found @ ("signedBy" | "signedBaseLayer") => Err(fail(
            at,
            PolicyErrorKind::UnsupportedRequirement {
                found: found.to_string(),
            },
        )),
        found => Err(fail(
            at,
            PolicyErrorKind::UnknownRequirement {
                found: found.to_string(),
            },
        )),
    }
}

fn sigstore_signed(
    fields: &Map<String, Value>,
    at: &str,
    read_key: &mut impl FnMut(&Path) -> Result<Vec<u8>>,
) -> Result<SigstoreSigned> {
    only_fields(
        fields,
        at,
        &[
            "type",
            "keyPath",
            "keyPaths",
            "keyData",
            "keyDatas",
            "signedIdentity",
        ],
        &[
            "fulcio",
            "rekorPublicKeyPath",
            "rekorPublicKeyPaths",
            "rekorPublicKeyData",
            "rekorPublicKeyDatas",
            "pki",
        ],
    )?;
    let present: Vec<&str> = ["keyPath", "keyPaths", "keyData", "keyDatas"]
        .into_iter()
        .filter(|k| fields.contains_key(*k))
        .collect();
    let [which] = present.as_slice() else {
        return Err(fail(at, PolicyErrorKind::KeyCount));
    };
    let value = &fields[*which];
    let at_key = format!("{at}.{which}");
    let items: Vec<&Value> = match *which {
        "keyPath" | "keyData" => vec![value],
        _ => value
            .as_array()
            .ok_or_else(|| {
                fail(
                    &at_key,
                    PolicyErrorKind::WrongType {
                        expected: "a list of strings",
                    },
                )
            })?
            .iter()
            .collect(),
    };
    if items.is_empty() {
        return Err(fail(&at_key, PolicyErrorKind::KeyCount));
    }
    let mut keys = Vec::new();
    for item in items {
        let text = string(item, &at_key)?;
        let (source, pem) = if which.starts_with("keyPath") {
            let path = PathBuf::from(text);
            let bytes = read_key(&path)?;
            (KeySource::Path(path), bytes)
        } else {
            let bytes = STANDARD
                .decode(text)
                .map_err(|_| fail(&at_key, PolicyErrorKind::KeyDataEncoding))?;
            (KeySource::Inline, bytes)
        };
        let key = PublicKey::from_pem(&pem).map_err(|e| match e {
            Error::Key(key) => fail(&at_key, PolicyErrorKind::Key(key)),
            other => other,
        })?;
        keys.push(TrustedKey { source, key });
    }
    let identity = match fields.get("signedIdentity") {
        None => SignedIdentity::default(),
        Some(value) => signed_identity(value, &format!("{at}.signedIdentity"))?,
    };
    Ok(SigstoreSigned { keys, identity })
}

fn signed_identity(value: &Value, at: &str) -> Result<SignedIdentity> {
    let fields = object(value, at)?;
    let reference_field = |name: &'static str| -> Result<&str> {
        string(
            fields
                .get(name)
                .ok_or_else(|| fail(at, PolicyErrorKind::MissingField { field: name }))?,
            &format!("{at}.{name}"),
        )
    };
    let invalid = |value: &str| {
        fail(
            at,
            PolicyErrorKind::InvalidReference {
                value: value.to_string(),
            },
        )
    };
    match type_of(fields, at)? {
        found @ ("matchExact" | "matchRepoDigestOrExact" | "matchRepository") => {
            only_fields(fields, at, &["type"], &[])?;
            Ok(match found {
                "matchExact" => SignedIdentity::MatchExact,
                "matchRepository" => SignedIdentity::MatchRepository,
                _ => SignedIdentity::MatchRepoDigestOrExact,
            })
        }
        "exactReference" => {
            only_fields(fields, at, &["type", "dockerReference"], &[])?;
            let text = reference_field("dockerReference")?;
            SignedIdentity::exact_reference(text).ok_or_else(|| invalid(text))
        }
        "exactRepository" => {
            only_fields(fields, at, &["type", "dockerRepository"], &[])?;
            let text = reference_field("dockerRepository")?;
            match parse_claim(text) {
                Some((_, true)) => {
                    SignedIdentity::exact_repository(text).ok_or_else(|| invalid(text))
                }
                _ => Err(invalid(text)),
            }
        }
        found @ "remapIdentity" => Err(fail(
            at,
            PolicyErrorKind::UnsupportedIdentity {
                found: found.to_string(),
            },
        )),
        found => Err(fail(
            at,
            PolicyErrorKind::UnknownIdentity {
                found: found.to_string(),
            },
        )),
    }
}

/// Checks a scope of the `docker` and `oci` transports; other transports' scopes are
/// their own business.
fn check_scope(transport: &str, scope: &str, at: &str) -> Result<()> {
    if scope.is_empty() {
        return Ok(());
    }
    let invalid = |reason: &str| {
        fail(
            at,
            PolicyErrorKind::InvalidScope {
                reason: reason.to_string(),
            },
        )
    };
    match transport {
        DOCKER_TRANSPORT => {
            if let Some(domain) = scope.strip_prefix("*.") {
                if domain.is_empty()
                    || domain.contains(['*', '/', ':', '@'])
                    || domain.split('.').any(str::is_empty)
                {
                    return Err(invalid("a wildcard is `*.` followed by a domain"));
                }
                return Ok(());
            }
            if scope.contains('*') {
                return Err(invalid("`*` is allowed only as a leading `*.`"));
            }
            // A host, a namespace, a repository, or a reference with a tag or digest, in
            // the fully expanded form.
            let first = scope.split('/').next().unwrap_or(scope);
            let host_only = !scope.contains('/');
            let parsed = if host_only {
                Reference::new(Some(first), "x").is_ok()
            } else {
                Reference::parse(scope).is_ok_and(|r| r.registry().is_some())
            };
            if !parsed {
                return Err(invalid(
                    "not a registry host, namespace, repository or fully expanded reference",
                ));
            }
            Ok(())
        }
        OCI_TRANSPORT => {
            let dir = match scope.split_once(':') {
                Some((dir, image)) if !image.is_empty() => dir,
                Some(_) => return Err(invalid("an empty image name after `:`")),
                None => scope,
            };
            let path = Path::new(dir);
            if !path.is_absolute() {
                return Err(invalid("an oci scope is an absolute directory"));
            }
            if dir == "/" {
                return Err(invalid(
                    "`/` is not a scope: use the transport default `\"\"`",
                ));
            }
            let clean = dir.len() > 1
                && !dir.ends_with('/')
                && !dir.contains("//")
                && path
                    .components()
                    .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
            if !clean {
                return Err(invalid(
                    "an oci scope is a clean path (no `.`, `..`, `//`, trailing `/`)",
                ));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::PrivateKey;
    use crate::signature::sign_image;

    fn key_data(key: &PrivateKey) -> String {
        STANDARD.encode(key.public_key().to_pem())
    }

    fn no_files(path: &Path) -> Result<Vec<u8>> {
        panic!("unexpected key file {}", path.display())
    }

    fn parse(text: &str) -> Result<Policy> {
        Policy::parse(text.as_bytes(), no_files)
    }

    fn kind_of(text: &str) -> PolicyErrorKind {
        match parse(text) {
            Err(Error::Policy(e)) => e.kind().clone(),
            other => panic!("expected a policy error, got {other:?}"),
        }
    }

    fn docker(s: &str) -> ImageIdentity {
        ImageIdentity::Docker(Reference::parse(s).unwrap())
    }

    fn scope_of(policy: &Policy, image: &ImageIdentity) -> Scope {
        policy.requirements_for(image).0
    }

    fn transport_scope(transport: &str, scope: &str) -> Scope {
        Scope::Transport {
            transport: transport.into(),
            scope: scope.into(),
        }
    }

    #[test]
    fn the_most_specific_docker_scope_applies() {
        let any = r#"[{"type":"insecureAcceptAnything"}]"#;
        let policy = parse(&format!(
            r#"{{"default":[{{"type":"reject"}}],"transports":{{"docker":{{
                "":{any},
                "quay.io":{any},
                "quay.io/team":{any},
                "quay.io/team/app":{any},
                "quay.io/team/app:v1":{any},
                "*.example.com":{any},
                "docker.io/library/busybox":{any}
            }}}}}}"#
        ))
        .unwrap();
        let cases = [
            ("quay.io/team/app:v1", "quay.io/team/app:v1"),
            ("quay.io/team/app:v2", "quay.io/team/app"),
            ("quay.io/team/apple:v2", "quay.io/team"),
            ("quay.io/other/x:1", "quay.io"),
            ("reg.sub.example.com:5000/a/b:c", "*.example.com"),
            ("busybox", "docker.io/library/busybox"),
            ("alpine", ""),
        ];
        for (image, scope) in cases {
            assert_eq!(
                scope_of(&policy, &docker(image)),
                transport_scope("docker", scope),
                "{image}"
            );
        }
        // No oci transport: the global default.
        let oci = ImageIdentity::Oci {
            dir: "/srv/images".into(),
            image: Some("v1".into()),
        };
        assert_eq!(scope_of(&policy, &oci), Scope::Default);
        assert!(matches!(
            policy.evaluate(&oci, &Digest::sha256(b"m"), &[]),
            Decision::Rejected {
                reason: Rejection::Rejected,
                ..
            }
        ));
    }

    #[test]
    fn oci_scopes_are_directories_and_their_parents() {
        let any = r#"[{"type":"insecureAcceptAnything"}]"#;
        let policy = parse(&format!(
            r#"{{"default":[{{"type":"reject"}}],"transports":{{"oci":{{
                "/srv":{any}, "/srv/images:v1":{any}, "/srv/images/sub":{any}
            }}}}}}"#
        ))
        .unwrap();
        let oci = |dir: &str, image: Option<&str>| ImageIdentity::Oci {
            dir: dir.into(),
            image: image.map(Into::into),
        };
        // The image name is not part of the lookup (containers/image's rule).
        assert_eq!(
            scope_of(&policy, &oci("/srv/images", Some("v1"))),
            transport_scope("oci", "/srv")
        );
        assert_eq!(
            scope_of(&policy, &oci("/srv/images", Some("v2"))),
            transport_scope("oci", "/srv")
        );
        assert_eq!(
            scope_of(&policy, &oci("/srv/images/sub/deeper", None)),
            transport_scope("oci", "/srv/images/sub")
        );
        assert_eq!(scope_of(&policy, &oci("/elsewhere", None)), Scope::Default);
    }

    #[test]
    fn sigstore_signed_accepts_a_good_signature_and_names_each_failure() {
        let key = PrivateKey::generate().unwrap();
        let other = PrivateKey::generate().unwrap();
        let policy = parse(&format!(
            r#"{{"default":[{{"type":"sigstoreSigned","keyDatas":["{}","{}"]}}]}}"#,
            key_data(&other),
            key_data(&key)
        ))
        .unwrap();
        let image = docker("quay.io/team/app:v1");
        let reference = Reference::parse("quay.io/team/app:v1").unwrap();
        let digest = Digest::sha256(b"manifest");
        let good = sign_image(&key, &reference, digest.clone()).unwrap();
        let replay = sign_image(&key, &reference, Digest::sha256(b"older")).unwrap();
        let stranger =
            sign_image(&PrivateKey::generate().unwrap(), &reference, digest.clone()).unwrap();

        let decision = policy.evaluate(&image, &digest, &[replay.clone(), good.clone()]);
        let Decision::Accepted { signatures, scope } = decision else {
            panic!("expected acceptance, got {decision}");
        };
        assert_eq!(scope, Scope::Default);
        assert_eq!(signatures.len(), 1);
        assert_eq!(signatures[0].key(), &key.public_key());

        let decision = policy.evaluate(&image, &digest, &[replay, stranger]);
        let Decision::Rejected {
            reason: Rejection::NoValidSignature { reasons },
            ..
        } = &decision
        else {
            panic!("expected rejection, got {decision}");
        };
        assert!(matches!(reasons[0], Error::DigestMismatch { .. }));
        assert!(matches!(reasons[1], Error::BadSignature));
        assert!(decision.to_string().contains("none of the 2 signatures"));

        assert!(matches!(
            policy.evaluate(&image, &digest, &[]),
            Decision::Rejected {
                reason: Rejection::NoSignatures,
                ..
            }
        ));
        // An oci: image has no docker reference: the default identity rule cannot accept.
        let oci = ImageIdentity::Oci {
            dir: "/srv/x".into(),
            image: Some("v1".into()),
        };
        assert!(
            !policy
                .evaluate(&oci, &digest, std::slice::from_ref(&good))
                .is_accepted()
        );
    }

    #[test]
    fn signatures_are_needed_only_where_sigstore_signed_decides() {
        let key = PrivateKey::generate().unwrap();
        let policy = parse(&format!(
            r#"{{"default":[{{"type":"insecureAcceptAnything"}}],"transports":{{"docker":{{
                "quay.io/signed":[{{"type":"insecureAcceptAnything"}},{{"type":"sigstoreSigned","keyData":"{}"}}],
                "quay.io/closed":[{{"type":"reject"}},{{"type":"sigstoreSigned","keyData":"{}"}}]
            }}}}}}"#,
            key_data(&key),
            key_data(&key)
        ))
        .unwrap();
        assert!(policy.requires_signatures(&docker("quay.io/signed/app:v1")));
        assert!(!policy.requires_signatures(&docker("quay.io/closed/app:v1")));
        assert!(!policy.requires_signatures(&docker("quay.io/open/app:v1")));
        // Where none are needed, deciding without them is the final answer.
        let digest = Digest::sha256(b"m");
        assert!(
            !policy
                .evaluate(&docker("quay.io/closed/app:v1"), &digest, &[])
                .is_accepted()
        );
        assert!(
            policy
                .evaluate(&docker("quay.io/open/app:v1"), &digest, &[])
                .is_accepted()
        );
    }

    #[test]
    fn every_requirement_must_hold() {
        let key = PrivateKey::generate().unwrap();
        let reference = Reference::parse("quay.io/team/app:v1").unwrap();
        let digest = Digest::sha256(b"manifest");
        let good = sign_image(&key, &reference, digest.clone()).unwrap();
        let both = parse(&format!(
            r#"{{"default":[{{"type":"insecureAcceptAnything"}},{{"type":"sigstoreSigned","keyData":"{}","signedIdentity":{{"type":"exactReference","dockerReference":"quay.io/team/app:v1"}}}}]}}"#,
            key_data(&key)
        ))
        .unwrap();
        let oci = ImageIdentity::Oci {
            dir: "/srv/x".into(),
            image: None,
        };
        assert!(
            both.evaluate(&oci, &digest, std::slice::from_ref(&good))
                .is_accepted()
        );
        let rejecting = parse(&format!(
            r#"{{"default":[{{"type":"sigstoreSigned","keyData":"{}"}},{{"type":"reject"}}]}}"#,
            key_data(&key)
        ))
        .unwrap();
        assert!(
            !rejecting
                .evaluate(&docker("quay.io/team/app:v1"), &digest, &[good])
                .is_accepted()
        );
    }

    #[test]
    fn key_paths_are_read_through_the_callback() {
        let key = PrivateKey::generate().unwrap();
        let pem = key.public_key().to_pem();
        let mut asked = Vec::new();
        let policy = Policy::parse(
            br#"{"default":[{"type":"sigstoreSigned","keyPath":"/keys/cosign.pub","signedIdentity":{"type":"matchRepository"}}]}"#,
            |path| {
                asked.push(path.to_path_buf());
                Ok(pem.clone().into_bytes())
            },
        )
        .unwrap();
        assert_eq!(asked, [PathBuf::from("/keys/cosign.pub")]);
        let (_, requirements) = policy.requirements_for(&docker("a.io/b:c"));
        let Requirement::SigstoreSigned(required) = &requirements[0] else {
            panic!("expected sigstoreSigned");
        };
        assert_eq!(required.identity(), &SignedIdentity::MatchRepository);
        assert_eq!(
            required.keys()[0].source(),
            &KeySource::Path("/keys/cosign.pub".into())
        );
        // A missing file is the callback's error, unchanged.
        let missing = Policy::load(Path::new("/nonexistent/policy.json")).unwrap_err();
        assert!(matches!(missing, Error::Io { .. }));
    }

    #[test]
    fn what_is_not_understood_is_refused_never_accepted() {
        let key = PrivateKey::generate().unwrap();
        let kd = key_data(&key);
        let cases: Vec<(String, PolicyErrorKind)> = vec![
            ("{}".into(), PolicyErrorKind::MissingField { field: "default" }),
            (r#"{"default":[]}"#.into(), PolicyErrorKind::EmptyRequirements),
            (
                r#"{"default":[{"type":"insecureAcceptAnything"}],"other":1}"#.into(),
                PolicyErrorKind::UnknownField { field: "other".into() },
            ),
            (
                r#"{"default":[{"type":"acceptIfSunny"}]}"#.into(),
                PolicyErrorKind::UnknownRequirement { found: "acceptIfSunny".into() },
            ),
            (
                r#"{"default":[{"type":"signedBy","keyType":"GPGKeys","keyPath":"/k"}]}"#.into(),
                PolicyErrorKind::UnsupportedRequirement { found: "signedBy".into() },
            ),
            (
                r#"{"default":[{"type":"reject","why":"x"}]}"#.into(),
                PolicyErrorKind::UnknownField { field: "why".into() },
            ),
            (
                r#"{"default":[{"type":"sigstoreSigned"}]}"#.into(),
                PolicyErrorKind::KeyCount,
            ),
            (
                format!(r#"{{"default":[{{"type":"sigstoreSigned","keyData":"{kd}","keyDatas":["{kd}"]}}]}}"#),
                PolicyErrorKind::KeyCount,
            ),
            (
                r#"{"default":[{"type":"sigstoreSigned","keyDatas":[]}]}"#.into(),
                PolicyErrorKind::KeyCount,
            ),
            (
                r#"{"default":[{"type":"sigstoreSigned","keyData":"%%"}]}"#.into(),
                PolicyErrorKind::KeyDataEncoding,
            ),
            (
                format!(r#"{{"default":[{{"type":"sigstoreSigned","keyData":"{kd}","fulcio":{{}}}}]}}"#),
                PolicyErrorKind::UnsupportedField { field: "fulcio".into() },
            ),
            (
                format!(r#"{{"default":[{{"type":"sigstoreSigned","keyData":"{kd}","signedIdentity":{{"type":"remapIdentity","prefix":"a","signedPrefix":"b"}}}}]}}"#),
                PolicyErrorKind::UnsupportedIdentity { found: "remapIdentity".into() },
            ),
            (
                format!(r#"{{"default":[{{"type":"sigstoreSigned","keyData":"{kd}","signedIdentity":{{"type":"matchAnything"}}}}]}}"#),
                PolicyErrorKind::UnknownIdentity { found: "matchAnything".into() },
            ),
            (
                format!(r#"{{"default":[{{"type":"sigstoreSigned","keyData":"{kd}","signedIdentity":{{"type":"exactReference","dockerReference":"quay.io/a/b"}}}}]}}"#),
                PolicyErrorKind::InvalidReference { value: "quay.io/a/b".into() },
            ),
            (
                format!(r#"{{"default":[{{"type":"sigstoreSigned","keyData":"{kd}","signedIdentity":{{"type":"exactRepository","dockerRepository":"quay.io/a/b:v1"}}}}]}}"#),
                PolicyErrorKind::InvalidReference { value: "quay.io/a/b:v1".into() },
            ),
            (
                format!(r#"{{"default":[{{"type":"sigstoreSigned","keyData":"{kd}","signedIdentity":{{"type":"matchExact","dockerReference":"a/b:c"}}}}]}}"#),
                PolicyErrorKind::UnknownField { field: "dockerReference".into() },
            ),
            (
                r#"{"default":[{"type":"reject"}],"transports":{"docker":{"quay.io/*":[{"type":"reject"}]}}}"#.into(),
                PolicyErrorKind::InvalidScope { reason: "`*` is allowed only as a leading `*.`".into() },
            ),
            (
                r#"{"default":[{"type":"reject"}],"transports":{"oci":{"relative/dir":[{"type":"reject"}]}}}"#.into(),
                PolicyErrorKind::InvalidScope { reason: "an oci scope is an absolute directory".into() },
            ),
            (
                r#"{"default":[{"type":"reject"}],"transports":{"oci":{"/":[{"type":"reject"}]}}}"#.into(),
                PolicyErrorKind::InvalidScope { reason: "`/` is not a scope: use the transport default `\"\"`".into() },
            ),
            (
                r#"{"default":[{"type":"reject"}],"transports":{"docker":{"quay.io":[]}}}"#.into(),
                PolicyErrorKind::EmptyRequirements,
            ),
            (
                r#"{"default":{"type":"reject"}}"#.into(),
                PolicyErrorKind::WrongType { expected: "a list of requirements" },
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(kind_of(&text), expected, "{text}");
        }
        // Duplicate keys are refused by the JSON reader.
        assert!(matches!(
            kind_of(
                r#"{"default":[{"type":"reject"}],"default":[{"type":"insecureAcceptAnything"}]}"#
            ),
            PolicyErrorKind::Json { .. }
        ));
        // A malformed key, inline.
        let p384_pem = "-----BEGIN PUBLIC KEY-----\nMHYwEAYHKoZIzj0CAQYFK4EEACIDYgAE\n-----END PUBLIC KEY-----\n";
        let text = format!(
            r#"{{"default":[{{"type":"sigstoreSigned","keyData":"{}"}}]}}"#,
            STANDARD.encode(p384_pem)
        );
        assert!(matches!(kind_of(&text), PolicyErrorKind::Key(_)));
        // Where: the path names the requirement.
        let Err(Error::Policy(e)) = parse(
            r#"{"default":[{"type":"reject"}],"transports":{"docker":{"a.io":[{"type":"insecureAcceptAnything"},{"type":"x"}]}}}"#,
        ) else {
            panic!("expected a policy error");
        };
        assert_eq!(e.at(), r#"transports.docker["a.io"][1]"#);
    }

    #[test]
    fn other_transports_are_read_but_not_looked_up() {
        let policy = parse(
            r#"{"default":[{"type":"reject"}],"transports":{"docker-daemon":{"":[{"type":"insecureAcceptAnything"}]}}}"#,
        )
        .unwrap();
        assert_eq!(scope_of(&policy, &docker("a.io/b:c")), Scope::Default);
        assert!(matches!(
            kind_of(
                r#"{"default":[{"type":"reject"}],"transports":{"dir":{"":[{"type":"what"}]}}}"#
            ),
            PolicyErrorKind::UnknownRequirement { .. }
        ));
    }
}
