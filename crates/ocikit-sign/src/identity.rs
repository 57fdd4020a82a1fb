//! The `signedIdentity` rules of containers' `policy.json`: which docker reference a
//! signature may claim for an image.
//!
//! References on both sides are compared normalised, as containers/image compares them
//! (`busybox` is `docker.io/library/busybox`), but without adding a default tag: a claim of
//! a bare repository (what `cosign sign` writes) satisfies only the repository rules.

use ocikit_digest::Reference;

use crate::{Error, Result};

/// A rule for the identity a signature claims, as containers-policy.json(5) defines them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignedIdentity {
    /// `matchExact`: the claim is exactly the image's reference (tag or digest included).
    MatchExact,
    /// `matchRepoDigestOrExact` (the default): for an image named by tag, exactly its
    /// reference; for an image named by digest only, any reference in its repository.
    #[default]
    MatchRepoDigestOrExact,
    /// `matchRepository`: any reference in the image's repository (accepts cosign's
    /// repository-only claims; does not protect against tag substitution).
    MatchRepository,
    /// `exactReference`: exactly this reference (tag or digest), whatever the image is
    /// called; for mirrors, and for locations without a docker reference (`oci:`).
    ExactReference {
        /// The reference, normalised, with a tag or digest.
        docker_reference: Reference,
    },
    /// `exactRepository`: any reference in this repository.
    ExactRepository {
        /// The repository, normalised (tag and digest, if written, are ignored).
        docker_repository: Reference,
    },
}

/// A docker reference as containers/image's `ParseNormalizedNamed` reads it: normalised,
/// with no tag added; the flag says whether it names only a repository.
pub(crate) fn parse_claim(text: &str) -> Option<(Reference, bool)> {
    let written = Reference::parse(text).ok()?;
    let name_only = written.tag().is_none() && written.digest().is_none();
    let normalised = Reference::parse_normalized(text).ok()?;
    Some(if name_only {
        (normalised.without_tag(), true)
    } else {
        (normalised, false)
    })
}

/// `reference` as `Reference::parse_normalized` reads its text (unchanged if that fails).
fn normalised(reference: &Reference) -> Reference {
    Reference::parse_normalized(&reference.to_string()).unwrap_or_else(|_| reference.clone())
}

impl SignedIdentity {
    /// The rule's name in `policy.json`.
    pub fn name(&self) -> &'static str {
        match self {
            SignedIdentity::MatchExact => "matchExact",
            SignedIdentity::MatchRepoDigestOrExact => "matchRepoDigestOrExact",
            SignedIdentity::MatchRepository => "matchRepository",
            SignedIdentity::ExactReference { .. } => "exactReference",
            SignedIdentity::ExactRepository { .. } => "exactRepository",
        }
    }

    /// `exactReference` for `reference`, which must carry a tag or digest.
    pub fn exact_reference(reference: &str) -> Option<SignedIdentity> {
        match parse_claim(reference)? {
            (_, true) => None,
            (docker_reference, false) => Some(SignedIdentity::ExactReference { docker_reference }),
        }
    }

    /// `exactRepository` for `repository`.
    pub fn exact_repository(repository: &str) -> Option<SignedIdentity> {
        let (reference, _) = parse_claim(repository)?;
        Some(SignedIdentity::ExactRepository {
            docker_repository: reference.without_tag().without_digest(),
        })
    }

    /// Checks the reference a signature claims (`signed`) against this rule, for the image
    /// known as `image` (`None` for a location without a docker reference, such as an
    /// `oci:` layout: only the `exact…` rules can accept those).
    pub fn check(&self, image: Option<&Reference>, signed: &str) -> Result<()> {
        if self.accepts(image, signed) {
            Ok(())
        } else {
            Err(Error::IdentityMismatch {
                image: image.map_or_else(
                    || "an image without a docker reference".to_string(),
                    |r| {
                        Reference::parse_normalized(&r.to_string())
                            .map_or_else(|_| r.to_string(), |n| n.to_string())
                    },
                ),
                signed: signed.to_string(),
                rule: self.name(),
            })
        }
    }

    fn accepts(&self, image: Option<&Reference>, signed: &str) -> bool {
        let Some((claim, claim_name_only)) = parse_claim(signed) else {
            return false;
        };
        // The image's own reference always has a tag or digest (docker's default tag).
        let image = image.and_then(|r| Reference::parse_normalized(&r.to_string()).ok());
        match self {
            SignedIdentity::MatchExact => {
                image.is_some_and(|image| !claim_name_only && claim == image)
            }
            SignedIdentity::MatchRepoDigestOrExact => image.is_some_and(|image| {
                if claim_name_only {
                    false
                } else if image.tag().is_some() {
                    claim == image
                } else {
                    claim.name() == image.name()
                }
            }),
            SignedIdentity::MatchRepository => {
                image.is_some_and(|image| claim.name() == image.name())
            }
            // Normalised again here, so a rule built by hand from an unnormalised reference
            // compares as one built by `exact_reference`/`exact_repository`.
            SignedIdentity::ExactReference { docker_reference } => {
                !claim_name_only && claim == normalised(docker_reference)
            }
            SignedIdentity::ExactRepository { docker_repository } => {
                claim.name() == normalised(docker_repository).name()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(s: &str) -> Reference {
        Reference::parse(s).unwrap()
    }

    fn ok(rule: &SignedIdentity, image_ref: Option<&str>, signed: &str) -> bool {
        let image = image_ref.map(image);
        rule.check(image.as_ref(), signed).is_ok()
    }

    #[test]
    fn match_exact_needs_the_same_reference() {
        let rule = SignedIdentity::MatchExact;
        assert!(ok(
            &rule,
            Some("busybox"),
            "docker.io/library/busybox:latest"
        ));
        assert!(ok(&rule, Some("quay.io/a/b:v1"), "quay.io/a/b:v1"));
        assert!(!ok(&rule, Some("quay.io/a/b:v1"), "quay.io/a/b:v2"));
        assert!(!ok(&rule, Some("quay.io/a/b:v1"), "quay.io/a/b"));
        assert!(!ok(&rule, None, "quay.io/a/b:v1"));
    }

    #[test]
    fn match_repo_digest_or_exact_follows_the_image_s_tag_or_digest() {
        let rule = SignedIdentity::MatchRepoDigestOrExact;
        let d = ocikit_digest::Digest::sha256(b"m");
        assert!(ok(&rule, Some("quay.io/a/b:v1"), "quay.io/a/b:v1"));
        assert!(!ok(&rule, Some("quay.io/a/b:v1"), "quay.io/a/b:v2"));
        // Named by digest only: any tag of the repository.
        let by_digest = format!("quay.io/a/b@{d}");
        assert!(ok(&rule, Some(&by_digest), "quay.io/a/b:v2"));
        assert!(!ok(&rule, Some(&by_digest), "quay.io/a/c:v2"));
        // A repository-only claim (cosign's) is never enough.
        assert!(!ok(&rule, Some(&by_digest), "quay.io/a/b"));
        assert!(!ok(&rule, None, "quay.io/a/b:v1"));
    }

    #[test]
    fn match_repository_compares_names_only() {
        let rule = SignedIdentity::MatchRepository;
        assert!(ok(&rule, Some("quay.io/a/b:latest"), "quay.io/a/b"));
        assert!(ok(&rule, Some("alpine:3"), "docker.io/library/alpine:3.19"));
        assert!(!ok(&rule, Some("quay.io/a/b:latest"), "quay.io/a/bb"));
        assert!(!ok(
            &rule,
            Some("quay.io/a/b:latest"),
            "other.io/a/b:latest"
        ));
        assert!(!ok(&rule, Some("quay.io/a/b:latest"), "not a reference"));
    }

    #[test]
    fn exact_rules_ignore_the_image_name() {
        let rule = SignedIdentity::exact_reference("busybox:1").unwrap();
        assert!(ok(&rule, None, "docker.io/library/busybox:1"));
        assert!(ok(&rule, Some("mirror.local/x:9"), "busybox:1"));
        assert!(!ok(&rule, None, "busybox:2"));
        assert!(!ok(&rule, None, "busybox"));
        assert_eq!(SignedIdentity::exact_reference("busybox"), None);
        // Built by hand from the short form: the same rule.
        let by_hand = SignedIdentity::ExactReference {
            docker_reference: image("busybox:1"),
        };
        assert!(ok(&by_hand, None, "docker.io/library/busybox:1"));
        assert!(!ok(&by_hand, None, "docker.io/library/busybox:2"));
        let rule = SignedIdentity::exact_repository("quay.io/a/b").unwrap();
        assert!(ok(&rule, None, "quay.io/a/b:anything"));
        assert!(ok(&rule, None, "quay.io/a/b"));
        assert!(!ok(&rule, None, "quay.io/a/c"));
    }

    #[test]
    fn a_mismatch_names_the_rule_and_both_references() {
        let err = SignedIdentity::MatchExact
            .check(Some(&image("quay.io/a/b:v1")), "quay.io/a/b:v2")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "signature claims identity `quay.io/a/b:v2`, which matchExact does not accept for quay.io/a/b:v1"
        );
    }
}
