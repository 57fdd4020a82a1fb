//! ID maps: layer owners translated to host owners, as `user_namespaces(7)` maps them and as
//! umoci's `--uid-map`/`--gid-map` and podman's `--uidmap`/`--gidmap` take them.

use std::fmt;
use std::str::FromStr;

use crate::{Error, Result};

/// Which kind of id a map or an owner is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IdKind {
    /// User ids.
    Uid,
    /// Group ids.
    Gid,
}

impl fmt::Display for IdKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IdKind::Uid => "uid",
            IdKind::Gid => "gid",
        })
    }
}

/// A field of the `CONTAINER:HOST[:SIZE]` text form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IdField {
    /// The first id inside the container (the layer's ids).
    Container,
    /// The first id on the host.
    Host,
    /// How many consecutive ids the range holds.
    Size,
}

impl fmt::Display for IdField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IdField::Container => "container id",
            IdField::Host => "host id",
            IdField::Size => "size",
        })
    }
}

/// Why an ID mapping or map was refused ([`Error::InvalidIdMap`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdMapError {
    /// Not two or three `:`-separated fields.
    #[error("expected CONTAINER:HOST[:SIZE], found {found} field(s)")]
    FieldCount {
        /// How many fields there were.
        found: usize,
    },
    /// A field that is not a decimal number (empty, a sign, other characters).
    #[error("{field} is not a decimal number")]
    NotANumber {
        /// Which field.
        field: IdField,
    },
    /// A field too large for a 32-bit id.
    #[error("{field} is larger than 4294967295")]
    TooLarge {
        /// Which field.
        field: IdField,
    },
    /// A range of no ids.
    #[error("size is zero")]
    ZeroSize,
    /// A range that runs past the last valid id (4294967294; 4294967295 is `-1`, no id).
    #[error("{field} range runs past 4294967294")]
    RangeOverflow {
        /// The side that overflows: [`IdField::Container`] or [`IdField::Host`].
        field: IdField,
    },
    /// Two ranges share ids on one side (the kernel refuses such maps too).
    #[error("{field} range overlaps {other}")]
    Overlap {
        /// The side on which they overlap: [`IdField::Container`] or [`IdField::Host`].
        field: IdField,
        /// The range it overlaps.
        other: IdMapping,
    },
    /// A map with no range at all (every id would be refused).
    #[error("no ranges")]
    Empty,
}

/// One range of an ID map: the `size` ids from `container` (ids in the layer) are the `size`
/// ids from `host` (ids on disk). Written `CONTAINER:HOST:SIZE` ([`Display`](fmt::Display),
/// [`parse`](Self::parse)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct IdMapping {
    /// The first id inside the container.
    pub container: u32,
    /// The id on the host that `container` maps to.
    pub host: u32,
    /// How many consecutive ids the range holds (at least 1).
    pub size: u32,
}

/// The largest id a range may reach: `u32::MAX` is `(uid_t)-1`, which means "no change".
const LAST_ID: u64 = u32::MAX as u64 - 1;

impl IdMapping {
    /// A range, checked: `size` at least 1, neither side past id 4294967294.
    ///
    /// # Errors
    /// [`Error::InvalidIdMap`] with [`IdMapError::ZeroSize`] or [`IdMapError::RangeOverflow`].
    pub fn new(container: u32, host: u32, size: u32) -> Result<IdMapping> {
        let mapping = IdMapping {
            container,
            host,
            size,
        };
        mapping.check().map_err(|reason| invalid(mapping, reason))?;
        Ok(mapping)
    }

    /// Parses umoci's and podman's text form `CONTAINER:HOST[:SIZE]` (decimal; the size is 1
    /// when left out, as umoci has it), e.g. `0:100000:65536`.
    ///
    /// # Errors
    /// [`Error::InvalidIdMap`] naming the text and, in its [`IdMapError`], the field at fault.
    pub fn parse(text: &str) -> Result<IdMapping> {
        let fail = |reason| Error::InvalidIdMap {
            mapping: text.to_owned(),
            reason,
        };
        let fields: Vec<&str> = text.split(':').collect();
        if !(2..=3).contains(&fields.len()) {
            return Err(fail(IdMapError::FieldCount {
                found: fields.len(),
            }));
        }
        let number = |value: &str, field: IdField| -> Result<u32> {
            if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                return Err(fail(IdMapError::NotANumber { field }));
            }
            value
                .parse::<u32>()
                .map_err(|_| fail(IdMapError::TooLarge { field }))
        };
        let container = number(fields[0], IdField::Container)?;
        let host = number(fields[1], IdField::Host)?;
        let size = match fields.get(2) {
            Some(size) => number(size, IdField::Size)?,
            None => 1,
        };
        let mapping = IdMapping {
            container,
            host,
            size,
        };
        mapping.check().map_err(fail)?;
        Ok(mapping)
    }

    fn check(&self) -> Result<(), IdMapError> {
        if self.size == 0 {
            return Err(IdMapError::ZeroSize);
        }
        let last = |first: u32| u64::from(first) + u64::from(self.size) - 1;
        if last(self.container) > LAST_ID {
            return Err(IdMapError::RangeOverflow {
                field: IdField::Container,
            });
        }
        if last(self.host) > LAST_ID {
            return Err(IdMapError::RangeOverflow {
                field: IdField::Host,
            });
        }
        Ok(())
    }

    /// The host id of container id `id`, when this range holds it.
    pub fn to_host(&self, id: u32) -> Option<u32> {
        let offset = id.checked_sub(self.container)?;
        (offset < self.size).then(|| self.host + offset)
    }

    fn overlaps(a: u32, b: u32, size_a: u32, size_b: u32) -> bool {
        let (a, b) = (u64::from(a), u64::from(b));
        a < b + u64::from(size_b) && b < a + u64::from(size_a)
    }
}

impl fmt::Display for IdMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.container, self.host, self.size)
    }
}

impl FromStr for IdMapping {
    type Err = Error;

    fn from_str(text: &str) -> Result<IdMapping> {
        IdMapping::parse(text)
    }
}

fn invalid(mapping: IdMapping, reason: IdMapError) -> Error {
    Error::InvalidIdMap {
        mapping: mapping.to_string(),
        reason,
    }
}

/// An ID map: one or more [`IdMapping`] ranges that share no id on either side (what
/// `uid_map`/`gid_map` of a user namespace may hold). A container id outside every range
/// has no host id ([`to_host`](Self::to_host) is `None`); the applier refuses entries owned
/// by one ([`InvalidEntry::UnmappedOwner`](crate::InvalidEntry::UnmappedOwner)), as umoci
/// does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdMap {
    ranges: Vec<IdMapping>,
}

impl IdMap {
    /// A map of these ranges, in this order.
    ///
    /// # Errors
    /// [`Error::InvalidIdMap`]: [`IdMapError::Empty`] for no ranges, [`IdMapError::Overlap`]
    /// naming the later range of two that share ids inside the container or on the host.
    pub fn new(ranges: impl IntoIterator<Item = IdMapping>) -> Result<IdMap> {
        let mut map = IdMap { ranges: Vec::new() };
        for range in ranges {
            map.push(range)?;
        }
        if map.ranges.is_empty() {
            return Err(Error::InvalidIdMap {
                mapping: String::new(),
                reason: IdMapError::Empty,
            });
        }
        Ok(map)
    }

    /// A map of one range.
    pub fn single(mapping: IdMapping) -> IdMap {
        IdMap {
            ranges: vec![mapping],
        }
    }

    /// Parses several ranges in the text form of [`IdMapping::parse`] (one per repeated
    /// `--uid-map` flag, say).
    ///
    /// # Errors
    /// As [`IdMapping::parse`] and [`IdMap::new`].
    pub fn parse<S: AsRef<str>>(texts: impl IntoIterator<Item = S>) -> Result<IdMap> {
        let ranges = texts
            .into_iter()
            .map(|t| IdMapping::parse(t.as_ref()))
            .collect::<Result<Vec<_>>>()?;
        IdMap::new(ranges)
    }

    /// Adds a range.
    ///
    /// # Errors
    /// [`Error::InvalidIdMap`] with [`IdMapError::Overlap`] when it shares ids with a range
    /// already in the map (and the range's own checks, for one built field by field).
    pub fn push(&mut self, range: IdMapping) -> Result<()> {
        range.check().map_err(|reason| invalid(range, reason))?;
        for other in &self.ranges {
            for (field, a, b) in [
                (IdField::Container, range.container, other.container),
                (IdField::Host, range.host, other.host),
            ] {
                if IdMapping::overlaps(a, b, range.size, other.size) {
                    return Err(invalid(
                        range,
                        IdMapError::Overlap {
                            field,
                            other: *other,
                        },
                    ));
                }
            }
        }
        self.ranges.push(range);
        Ok(())
    }

    /// The ranges, in the order given.
    pub fn ranges(&self) -> &[IdMapping] {
        &self.ranges
    }

    /// The host id of container id `id`; `None` when no range holds it.
    pub fn to_host(&self, id: u32) -> Option<u32> {
        self.ranges.iter().find_map(|r| r.to_host(id))
    }
}

impl fmt::Display for IdMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, range) in self.ranges.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{range}")?;
        }
        Ok(())
    }
}

/// The name of the extended attribute in which rootless unpacking records an entry's owner
/// (the rootless-containers convention that umoci and runc's rootless tooling read).
pub const ROOTLESS_OWNER_XATTR: &str = "user.rootlesscontainers";

/// The value of [`ROOTLESS_OWNER_XATTR`] for an entry owned by `uid:gid` inside the
/// container, or `None` for `0:0`, which is never recorded (the default owner). The value
/// is the rootless-containers protobuf message `Resource { uint32 uid = 1; uint32 gid = 2; }`
/// in which an id of 0 is written as 4294967295 ("no change").
pub fn rootless_owner_record(uid: u32, gid: u32) -> Option<Vec<u8>> {
    if uid == 0 && gid == 0 {
        return None;
    }
    let mut out = Vec::with_capacity(12);
    for (tag, id) in [(0x08u8, uid), (0x10, gid)] {
        // Field number << 3 | wire type 0 (varint); proto3 leaves out zero values, and the
        // "no change" stand-in for 0 is never zero.
        out.push(tag);
        let mut value = if id == 0 { u32::MAX } else { id };
        while value >= 0x80 {
            out.push((value as u8 & 0x7f) | 0x80);
            value >>= 7;
        }
        out.push(value as u8);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_the_rootless_containers_protobuf() {
        assert_eq!(rootless_owner_record(0, 0), None);
        // uid 1000 (0xe8 0x07), gid "no change" (0xffffffff as a 5-byte varint).
        assert_eq!(
            rootless_owner_record(1000, 0).unwrap(),
            [0x08, 0xe8, 0x07, 0x10, 0xff, 0xff, 0xff, 0xff, 0x0f]
        );
        assert_eq!(
            rootless_owner_record(1, 2).unwrap(),
            [0x08, 0x01, 0x10, 0x02]
        );
    }
}
