//! The filesystem store's versions of documents: hashed on from a kept prefix ([`Hashed`]),
//! they are exactly the SHA-256 of the bytes; and the modification time a write stamps
//! ([`stamp`]) is one that a later change of the file cannot leave in place.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write as _;

use bytes::Bytes;
use ocikit_digest::Digest;

use super::{CHECKPOINT, FileId, Hashed, stamp};

/// xorshift64*, deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n.max(1) as u64).unwrap()
    }
}

fn sha256(bytes: &[u8]) -> String {
    Digest::sha256(bytes).encoded().to_string()
}

#[test]
fn versions_hashed_on_from_a_kept_prefix_are_the_sha256_of_the_bytes() {
    let mut rng = Rng(7);
    let mut bytes: Vec<u8> = (0..5 * CHECKPOINT + 123).map(|i| (i % 251) as u8).collect();
    let mut previous: Option<Hashed> = None;
    for round in 0..200 {
        match rng.below(7) {
            // An entry appended before the closing bytes (a tag added to index.json).
            0 | 1 => {
                let at = bytes.len().saturating_sub(40);
                let entry: Vec<u8> = (0..rng.below(400)).map(|_| rng.next() as u8).collect();
                bytes.splice(at..at, entry);
            }
            // A change somewhere (a tag moved): one byte, or a range removed.
            2 if !bytes.is_empty() => {
                let at = rng.below(bytes.len());
                bytes[at] ^= 1;
            }
            3 => {
                let at = rng.below(bytes.len());
                let end = (at + rng.below(3 * CHECKPOINT)).min(bytes.len());
                bytes.drain(at..end);
            }
            // Grown or cut at a checkpoint's edge, or not changed at all.
            4 => bytes.truncate(bytes.len() / CHECKPOINT * CHECKPOINT),
            5 => bytes.extend(std::iter::repeat_n(round as u8, CHECKPOINT)),
            _ => {}
        }
        let hashed = Hashed::of(Bytes::from(bytes.clone()), previous.as_ref());
        assert_eq!(hashed.version.as_str(), sha256(&bytes), "round {round}");
        assert_eq!(hashed.checkpoints.len(), bytes.len() / CHECKPOINT);
        for (i, point) in hashed.checkpoints.iter().enumerate() {
            let prefix = &bytes[..(i + 1) * CHECKPOINT];
            assert_eq!(point.current().encoded(), sha256(prefix), "round {round}");
        }
        previous = Some(hashed);
    }
    // Bytes sharing nothing with the previous ones, and no previous ones.
    let other = vec![1u8; 3 * CHECKPOINT];
    let hashed = Hashed::of(Bytes::from(other.clone()), previous.as_ref());
    assert_eq!(hashed.version.as_str(), sha256(&other));
    assert_eq!(
        Hashed::of(Bytes::from(other.clone()), None).version,
        hashed.version
    );
}

#[test]
fn a_stamped_modification_time_does_not_survive_a_later_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("doc");
    let mut file = std::fs::File::create(&path).unwrap();
    file.write_all(b"one").unwrap();
    let given = FileId::of(&file.metadata().unwrap());
    let Some(stamped) = stamp(&file) else {
        panic!("no stamp on {path:?}");
    };
    assert_eq!(stamped.1 % 10, 1, "{stamped:?}");
    assert!(
        stamped < given.mtime.min(given.ctime),
        "{stamped:?} {given:?}"
    );
    let now = FileId::of(&std::fs::metadata(&path).unwrap());
    // A filesystem that keeps nanoseconds (the test's temporary directory) keeps it.
    assert_eq!(now.mtime, stamped);
    // Another program writing the file in place at once, same size: its time changes.
    std::fs::write(&path, b"two").unwrap();
    let after = FileId::of(&std::fs::metadata(&path).unwrap());
    assert_eq!(after.size, now.size);
    assert_ne!(after.mtime, stamped);
    assert!(after.mtime > stamped);
}
