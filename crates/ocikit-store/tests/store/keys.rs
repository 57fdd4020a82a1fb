//! Document keys: only safe relative names get through.

use ocikit_store::{DocumentKey, Error};

#[test]
fn valid_keys() {
    for key in [
        "index.json",
        "oci-layout",
        "repos/library/alpine/tags.json",
        "a-b_c.d/e",
    ] {
        assert_eq!(DocumentKey::new(key).unwrap().as_str(), key);
    }
}

#[test]
fn hostile_keys_are_refused_with_a_reason() {
    for (key, reason) in [
        ("", "it is empty"),
        ("../x", "a segment starts with `.`"),
        ("a/../b", "a segment starts with `.`"),
        ("./a", "a segment starts with `.`"),
        (".ocikit/tmp/x", "a segment starts with `.`"),
        ("/etc/passwd", "it has an empty segment"),
        ("a//b", "it has an empty segment"),
        ("a/", "it has an empty segment"),
        (
            "a\0b",
            "a segment has a character outside A-Z a-z 0-9 . _ -",
        ),
        (
            "a\\b",
            "a segment has a character outside A-Z a-z 0-9 . _ -",
        ),
        ("a b", "a segment has a character outside A-Z a-z 0-9 . _ -"),
        ("blobs/sha256/abc", "`blobs/` belongs to blob storage"),
        ("blobs", "`blobs/` belongs to blob storage"),
    ] {
        match DocumentKey::new(key) {
            Err(Error::InvalidKey { reason: r, .. }) => assert_eq!(r, reason, "{key:?}"),
            other => panic!("{key:?}: expected InvalidKey, got {other:?}"),
        }
    }
    assert!(DocumentKey::new(&"a".repeat(513)).is_err());
    assert!(DocumentKey::new(&"a".repeat(512)).is_ok());
}

#[test]
fn prefixes_match_whole_segments() {
    let key = DocumentKey::new("repos/a/tags.json").unwrap();
    assert!(key.is_under(""));
    assert!(key.is_under("repos"));
    assert!(key.is_under("repos/a"));
    assert!(key.is_under("repos/a/"));
    assert!(!key.is_under("repos/"[..4].as_ref()));
    assert!(!key.is_under("rep"));
    assert!(!key.is_under("repos/ab"));
}
