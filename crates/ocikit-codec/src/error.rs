//! The crate's error type.

use std::path::PathBuf;

use ocikit_digest::Digest;

/// Everything that can go wrong in `ocikit-codec`.
///
/// Variants are categories to act on; the hostile-input ones name the tar entry and the rule
/// it broke ([`InvalidEntry`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A filesystem or stream operation failed.
    #[error("{operation} {}", path.as_ref().map_or_else(String::new, |p| p.display().to_string()))]
    Io {
        /// What was being done (`"open"`, `"read"`, `"write"`, `"mkdir"`...).
        operation: &'static str,
        /// The path involved, where there is one (relative to the root for appliers).
        path: Option<PathBuf>,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A configured limit was exceeded (decompression bomb, too many entries, oversized
    /// metadata).
    #[error("{limit} limit of {max} exceeded")]
    LimitExceeded {
        /// Which limit.
        limit: Limit,
        /// The configured maximum.
        max: u64,
    },
    /// A media type this crate cannot decode (stored and copied fine, but not unpacked).
    #[error("unsupported layer media type `{media_type}`")]
    UnsupportedMediaType {
        /// The media type.
        media_type: String,
    },
    /// The content's magic bytes do not match the compression its media type declares.
    #[error("layer declared as {declared} but its bytes look like {detected}")]
    CompressionMismatch {
        /// What the media type says.
        declared: &'static str,
        /// What the magic bytes say.
        detected: &'static str,
    },
    /// Compressed data is corrupt or truncated (bad header, checksum, or early end).
    #[error("corrupt {format} stream")]
    Corrupt {
        /// `"gzip"`, `"zstd"` or `"tar"`.
        format: &'static str,
        /// The decoder's error.
        #[source]
        source: std::io::Error,
    },
    /// A stream given as a tar archive is not one: its first header is not a tar header
    /// (after decompression, when the stream was gzip or zstd).
    #[error("{} is not a tar archive", not_tar_what(compression))]
    NotTar {
        /// What the stream was: `"uncompressed"`, `"gzip"` or `"zstd"`.
        compression: &'static str,
        /// What the tar reader found.
        #[source]
        source: Box<Error>,
    },
    /// A tar entry that the spec or our hardening rules forbid; nothing outside the root was
    /// touched.
    #[error("refused tar entry {path:?}: {reason}")]
    InvalidEntry {
        /// The entry's name as found in the archive (lossily decoded).
        path: String,
        /// The rule it broke.
        reason: InvalidEntry,
    },
    /// A file in a directory being packed cannot be represented in a layer.
    #[error("cannot pack {}: {reason}", path.display())]
    Unpackable {
        /// The file, relative to the directory being packed.
        path: PathBuf,
        /// Why.
        reason: &'static str,
    },
    /// An ID mapping (`CONTAINER:HOST[:SIZE]`) or ID map that cannot be used
    /// ([`IdMapping::parse`](crate::apply::IdMapping::parse), [`IdMap::new`](crate::apply::IdMap::new)).
    #[error("invalid id mapping {mapping:?}: {reason}")]
    InvalidIdMap {
        /// The mapping as given (empty for a map with no ranges).
        mapping: String,
        /// What is wrong with it.
        reason: crate::apply::IdMapError,
    },
    /// The layer's uncompressed content does not hash to the diffID it was declared with.
    #[error("diffID mismatch: expected {expected}, layer content is {actual}")]
    DiffIdMismatch {
        /// The declared diffID.
        expected: Digest,
        /// The digest of the uncompressed content.
        actual: Digest,
    },
}

/// A limit on what decoding and applying a layer may consume.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Limit {
    /// Bytes produced by decompression.
    DecompressedBytes,
    /// Entries in one tar archive.
    Entries,
    /// Bytes of metadata of one entry (PAX records, GNU long names, xattrs).
    EntryMetadata,
    /// The zstd window size a frame may ask for.
    ZstdWindow,
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Limit::DecompressedBytes => "decompressed size",
            Limit::Entries => "entry count",
            Limit::EntryMetadata => "entry metadata size",
            Limit::ZstdWindow => "zstd window size",
        })
    }
}

/// Why a tar entry was refused. Each names a rule of the image spec's layer format or of
/// ocikit's hardening (SPEC parts A.9 and C.1-C.4).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidEntry {
    /// An empty name, or one that is only `.`/`/` where an entry needs a name.
    #[error("empty name")]
    EmptyName,
    /// A name with a NUL byte.
    #[error("name contains NUL")]
    NulInName,
    /// `..` components that would climb out of the root (strict mode).
    #[error("name climbs out of the root")]
    EscapesRoot,
    /// A whiteout whose target is empty, `.` or `..` (`.wh.`, `.wh..`, `.wh...`).
    #[error("whiteout of an empty, `.` or `..` name")]
    BadWhiteoutTarget,
    /// A whiteout that is not an empty regular file (strict mode).
    #[error("whiteout is not an empty regular file")]
    WhiteoutNotEmptyFile,
    /// A `.wh.` name used as a directory component (`.wh.etc/x`).
    #[error("whiteout prefix used as a directory")]
    WhiteoutAsDirectory,
    /// A hardlink to a path that does not exist (yet) in the root.
    #[error("hardlink target {target:?} does not exist")]
    HardlinkTargetMissing {
        /// The link target as given.
        target: String,
    },
    /// A hardlink to a directory.
    #[error("hardlink target {target:?} is a directory")]
    HardlinkToDirectory {
        /// The link target as given.
        target: String,
    },
    /// A device number that does not fit (negative or over 2^32-1).
    #[error("device number out of range")]
    BadDeviceNumber,
    /// A uid or gid outside the representable range.
    #[error("owner id out of range")]
    BadOwner,
    /// An owner that the [`ApplyOptions`](crate::apply::ApplyOptions)' uid or gid map has no
    /// host id for.
    #[error("{kind} {id} is outside the {kind} map")]
    UnmappedOwner {
        /// Whether the uid or the gid is unmapped.
        kind: crate::apply::IdKind,
        /// The id, as the layer has it.
        id: u32,
    },
    /// A typeflag this applier does not handle (sparse, multi-volume, unknown).
    #[error("unsupported entry type {typeflag:?}")]
    UnsupportedType {
        /// The raw typeflag byte.
        typeflag: u8,
    },
    /// An entry that would replace the root directory itself with something else.
    #[error("entry would replace the root")]
    ReplacesRoot,
    /// In a squash ([`crate::squash`]): a path that an entry crosses as a directory while a
    /// layer has a symlink or another non-directory there, so applying the layers in turn
    /// would write through it (or fail), which one merged tar stream cannot reproduce.
    #[error("crosses {through:?}, which is not a directory when the entry is applied")]
    CrossesNonDirectory {
        /// The non-directory's path (normalised).
        through: String,
    },
    /// Malformed header or PAX/GNU metadata.
    #[error("malformed header: {detail}")]
    MalformedHeader {
        /// What was malformed.
        detail: String,
    },
}

fn not_tar_what(compression: &str) -> String {
    match compression {
        "uncompressed" => "the input".to_owned(),
        other => format!("the {other}-compressed input"),
    }
}

impl Error {
    pub(crate) fn io(
        operation: &'static str,
        path: impl Into<Option<PathBuf>>,
        source: std::io::Error,
    ) -> Error {
        Error::Io {
            operation,
            path: path.into(),
            source,
        }
    }
}

impl From<Error> for std::io::Error {
    fn from(err: Error) -> std::io::Error {
        let kind = match &err {
            Error::Io { source, .. } => source.kind(),
            _ => std::io::ErrorKind::InvalidData,
        };
        std::io::Error::new(kind, err)
    }
}

/// `Result` with this crate's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
