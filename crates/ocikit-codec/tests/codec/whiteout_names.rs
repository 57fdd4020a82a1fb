//! `apply::classify_name`: the whiteout rules applied to entry names, public for tools that
//! read layers without applying them (`ocikit diff`).

use ocikit_codec::InvalidEntry;
use ocikit_codec::apply::{NameClass, classify_name};

#[test]
fn names_are_classified_by_the_whiteout_rules() {
    assert_eq!(classify_name(b"etc/motd"), Ok(NameClass::Normal));
    assert_eq!(classify_name(b"etc/wh.motd"), Ok(NameClass::Normal));
    assert_eq!(
        classify_name(b"etc/.wh.motd"),
        Ok(NameClass::Whiteout {
            dir: b"etc",
            target: b"motd"
        })
    );
    assert_eq!(
        classify_name(b".wh.etc"),
        Ok(NameClass::Whiteout {
            dir: b"",
            target: b"etc"
        })
    );
    assert_eq!(
        classify_name(b"a/b/.wh..wh..opq"),
        Ok(NameClass::Opaque { dir: b"a/b" })
    );
    assert_eq!(
        classify_name(b".wh..wh..opq"),
        Ok(NameClass::Opaque { dir: b"" })
    );
    assert_eq!(classify_name(b".wh..wh.plnk/12"), Ok(NameClass::Aufs));
    assert_eq!(classify_name(b"a/.wh.dir/x"), Ok(NameClass::BelowWhiteout));
}

#[test]
fn whiteouts_of_nothing_are_refused() {
    for name in [&b"a/.wh."[..], b".wh..", b"x/.wh..."] {
        assert_eq!(
            classify_name(name),
            Err(InvalidEntry::BadWhiteoutTarget),
            "{}",
            String::from_utf8_lossy(name)
        );
    }
}
