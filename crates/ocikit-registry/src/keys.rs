//! Where the registry keeps its metadata: document keys in the content store and the upload
//! store.
//!
//! Content store (blobs are shared, deduplicated by digest; everything that says what a
//! repository holds is a document under `_registry/`):
//!
//! ```text
//! _registry/repositories/<name>/_blobs/<alg>/<hex>      blob linked into <name>   {"size":N,"linked_ms"}
//! _registry/repositories/<name>/_manifests/<alg>/<hex>  manifest in <name>        {"mediaType","size","subject"?,"pushed_ms"}
//! _registry/repositories/<name>/_tags/<tag>             tag of <name>             {"digest"}
//! _registry/repositories/<name>/_referrers/<alg>/<hex>  referrers of a subject    {"manifests":[descriptor...]}
//! _registry/catalog/<name>/_repository                  <name> exists (for _catalog)
//! _registry/gc/lease                                    the collectors' lease      {"holder","acquired_ms","expires_ms"}
//! _registry/gc/touched/<alg>/<hex>                      a blob mounted lately      {"touched_ms"}
//! ```
//!
//! Upload store (scratch only; nothing in it is ever served):
//!
//! ```text
//! sessions/<uuid>                                       an upload session         {"repository","chunks":[..],..}
//! blobs/<alg>/<hex>                                     one received chunk, prefixed by a 16-byte nonce
//! ```
//!
//! The `_ms` times (milliseconds since the Unix epoch of the last push or mount) are what
//! garbage collection's grace period is measured from ([`crate::gc`]).
//!
//! No key can collide with another kind of key or with a repository: repository name
//! components match `[a-z0-9]+(...)` and so never start with `_`, while every segment the
//! registry adds after a name does (`_blobs`, `_tags`, `_repository`...), so the name `a` and
//! the name `a/b` own disjoint key spaces. Tags and digests appear only after such a marker
//! segment. The `_registry` root never collides with the documents of an OCI layout
//! (`index.json`, `oci-layout`) sharing the same store. The longest key (a 255-byte name and
//! a sha512 subject) is 425 bytes, under [`DocumentKey::MAX_LEN`].

use ocikit_digest::Digest;
use ocikit_store::DocumentKey;

use crate::Result;

/// The root under which all registry metadata lives in the content store.
pub const ROOT: &str = "_registry";

/// The prefix of every repository's catalog marker.
pub const CATALOG_PREFIX: &str = "_registry/catalog";

/// A document that never exists, which `/healthz` and [`crate::Registry::check_stores`]
/// read and list in both stores: two cheap round trips that prove a store answers (a
/// listing, unlike a read of a missing key, fails on a missing bucket).
pub const HEALTH_PROBE: &str = "_registry/health-probe";

/// The prefix of upload session documents in the upload store.
pub const SESSIONS_PREFIX: &str = "sessions";

fn key(s: String) -> Result<DocumentKey> {
    Ok(DocumentKey::new(&s)?)
}

fn repository(name: &str) -> String {
    format!("{ROOT}/repositories/{name}")
}

/// The link that makes a blob visible in repository `name`.
pub fn blob_link(name: &str, digest: &Digest) -> Result<DocumentKey> {
    let (alg, hex) = digest.path_components();
    key(format!("{}/_blobs/{alg}/{hex}", repository(name)))
}

/// The record of a manifest pushed to repository `name`.
pub fn manifest(name: &str, digest: &Digest) -> Result<DocumentKey> {
    let (alg, hex) = digest.path_components();
    key(format!("{}/_manifests/{alg}/{hex}", repository(name)))
}

/// The prefix under which repository `name`'s tags live (one document per tag).
pub fn tags_prefix(name: &str) -> String {
    format!("{}/_tags", repository(name))
}

/// A tag of repository `name` (the tag must already be valid).
pub fn tag(name: &str, tag: &str) -> Result<DocumentKey> {
    key(format!("{}/{tag}", tags_prefix(name)))
}

/// The list of manifests in repository `name` whose subject is `subject`.
///
/// A subject in an algorithm ocikit cannot compute (which a manifest may still name) has an
/// encoded part of any length and alphabet; it is keyed by the SHA-256 of its digest string
/// under `_other/`, which no algorithm name can be (they start with `[a-z0-9]`).
pub fn referrers(name: &str, subject: &Digest) -> Result<DocumentKey> {
    if subject.is_supported() {
        let (alg, hex) = subject.path_components();
        key(format!("{}/_referrers/{alg}/{hex}", repository(name)))
    } else {
        let hashed = Digest::sha256(subject.as_str().as_bytes());
        key(format!(
            "{}/_referrers/_other/{}",
            repository(name),
            hashed.encoded()
        ))
    }
}

/// The marker saying repository `name` exists.
pub fn catalog_marker(name: &str) -> Result<DocumentKey> {
    key(format!("{CATALOG_PREFIX}/{name}/_repository"))
}

/// The repository name a catalog marker key belongs to.
pub fn name_of_catalog_marker(key: &DocumentKey) -> Option<&str> {
    key.as_str()
        .strip_prefix(CATALOG_PREFIX)?
        .strip_prefix('/')?
        .strip_suffix("/_repository")
}

/// An upload session's document in the upload store.
pub fn session(id: &uuid::Uuid) -> Result<DocumentKey> {
    key(format!("{SESSIONS_PREFIX}/{}", id.hyphenated()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn longest_keys_fit() {
        let name = ["a"; 128].join("/");
        assert_eq!(name.len(), 255);
        let sha512 = Digest::sha512(b"x");
        assert!(referrers(&name, &sha512).unwrap().as_str().len() <= DocumentKey::MAX_LEN);
        assert!(tag(&name, &"t".repeat(128)).is_ok());
        assert!(blob_link(&name, &sha512).is_ok());
        let odd = Digest::parse(&format!("foo+bar:{}=", "A".repeat(900))).unwrap();
        assert!(referrers(&name, &odd).unwrap().as_str().len() <= DocumentKey::MAX_LEN);
    }

    #[test]
    fn names_own_disjoint_key_spaces() {
        let d = Digest::sha256(b"x");
        let a = blob_link("a", &d).unwrap();
        let ab = blob_link("a/b", &d).unwrap();
        assert!(!ab.is_under(&tags_prefix("a")));
        assert!(!a.is_under("_registry/repositories/a/b"));
        let marker = catalog_marker("a/b").unwrap();
        assert_eq!(name_of_catalog_marker(&marker), Some("a/b"));
    }
}
