//! Media types: the OCI and Docker constants, classification, and the RFC 6838 check the
//! image spec requires of `mediaType` and `artifactType`.
//!
//! Classification ([`classify`] and the helpers built on it) compares exactly and
//! case-sensitively, as registries and the OCI tools do, after dropping any parameters: the
//! part from the first `;` on, and whitespace before it, is ignored for lookups only
//! (`application/vnd.oci.image.manifest.v1+json; charset=utf-8` classifies as a manifest).
//! [`validate_media_type`] does not allow parameters, because the image spec's schema regex
//! does not.
//!
//! ```
//! use ocikit_digest::media_type::{self, Compression, MediaKind};
//!
//! assert_eq!(media_type::classify(media_type::IMAGE_MANIFEST), MediaKind::Manifest);
//! assert_eq!(
//!     media_type::layer_compression("application/vnd.docker.image.rootfs.diff.tar.gzip"),
//!     Some(Compression::Gzip)
//! );
//! assert!(media_type::validate_media_type("application/vnd.example+json").is_ok());
//! assert!(media_type::validate_media_type(".foo/bar").is_err());
//! ```

/// Content descriptor (`application/vnd.oci.descriptor.v1+json`).
pub const DESCRIPTOR: &str = "application/vnd.oci.descriptor.v1+json";
/// The `oci-layout` file (`application/vnd.oci.layout.header.v1+json`).
pub const LAYOUT_HEADER: &str = "application/vnd.oci.layout.header.v1+json";
/// Image index (`application/vnd.oci.image.index.v1+json`).
pub const IMAGE_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Image manifest (`application/vnd.oci.image.manifest.v1+json`).
pub const IMAGE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Image config (`application/vnd.oci.image.config.v1+json`).
pub const IMAGE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Uncompressed tar layer (`application/vnd.oci.image.layer.v1.tar`).
pub const IMAGE_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
/// Gzip-compressed tar layer (`application/vnd.oci.image.layer.v1.tar+gzip`).
pub const IMAGE_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// Zstd-compressed tar layer (`application/vnd.oci.image.layer.v1.tar+zstd`).
pub const IMAGE_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// Deprecated non-distributable uncompressed layer; should not be produced, still supported.
pub const IMAGE_LAYER_NONDISTRIBUTABLE: &str =
    "application/vnd.oci.image.layer.nondistributable.v1.tar";
/// Deprecated non-distributable gzip layer; should not be produced, still supported.
pub const IMAGE_LAYER_NONDISTRIBUTABLE_GZIP: &str =
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
/// Deprecated non-distributable zstd layer; should not be produced, still supported.
pub const IMAGE_LAYER_NONDISTRIBUTABLE_ZSTD: &str =
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd";
/// The empty descriptor's type, for the 2-byte blob `{}` (`application/vnd.oci.empty.v1+json`).
pub const EMPTY_JSON: &str = "application/vnd.oci.empty.v1+json";

/// Docker image manifest, schema 2 (similar to [`IMAGE_MANIFEST`]).
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list (similar to [`IMAGE_INDEX`]).
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image manifest, schema 1 (obsolete; not an OCI type in any sense).
pub const DOCKER_MANIFEST_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
/// Signed Docker image manifest, schema 1 (obsolete).
pub const DOCKER_MANIFEST_SCHEMA1_SIGNED: &str =
    "application/vnd.docker.distribution.manifest.v1+prettyjws";
/// Docker container image config (similar to [`IMAGE_CONFIG`]).
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker plugin config.
pub const DOCKER_PLUGIN_CONFIG: &str = "application/vnd.docker.plugin.v1+json";
/// Docker gzip layer, interchangeable with [`IMAGE_LAYER_GZIP`].
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Docker uncompressed layer (used by containerd and some builders).
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
/// Docker zstd layer (used by containerd and some builders).
pub const DOCKER_LAYER_ZSTD: &str = "application/vnd.docker.image.rootfs.diff.tar.zstd";
/// Docker foreign (non-distributable) gzip layer, typically Windows base layers.
pub const DOCKER_FOREIGN_LAYER_GZIP: &str =
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
/// Docker foreign (non-distributable) uncompressed layer.
pub const DOCKER_FOREIGN_LAYER: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar";

/// Longest type or subtype name RFC 6838 §4.2 allows: 127 characters.
pub const MAX_NAME_LEN: usize = 127;

/// How a layer is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Compression {
    /// A plain tar stream.
    None,
    /// gzip (RFC 1952).
    Gzip,
    /// Zstandard (RFC 8478).
    Zstd,
}

/// What a media type names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MediaKind {
    /// [`DESCRIPTOR`].
    Descriptor,
    /// [`LAYOUT_HEADER`].
    LayoutHeader,
    /// [`IMAGE_INDEX`].
    Index,
    /// [`IMAGE_MANIFEST`].
    Manifest,
    /// [`IMAGE_CONFIG`].
    Config,
    /// [`EMPTY_JSON`].
    Empty,
    /// A layer, OCI or Docker.
    Layer {
        /// How the tar stream is compressed.
        compression: Compression,
        /// False for the (deprecated) non-distributable and Docker foreign layers.
        distributable: bool,
        /// Whether it is one of the Docker layer types.
        docker: bool,
    },
    /// [`DOCKER_MANIFEST`].
    DockerManifest,
    /// [`DOCKER_MANIFEST_LIST`].
    DockerManifestList,
    /// [`DOCKER_MANIFEST_SCHEMA1`] or [`DOCKER_MANIFEST_SCHEMA1_SIGNED`].
    DockerManifestSchema1,
    /// [`DOCKER_CONFIG`].
    DockerConfig,
    /// [`DOCKER_PLUGIN_CONFIG`].
    DockerPluginConfig,
    /// Anything else (artifact types, configs of other tools, typos).
    Unknown,
}

impl MediaKind {
    /// Whether this is an image manifest, OCI or Docker schema 2.
    pub fn is_manifest_like(self) -> bool {
        matches!(self, MediaKind::Manifest | MediaKind::DockerManifest)
    }

    /// Whether this is an image index, OCI or a Docker manifest list.
    pub fn is_index_like(self) -> bool {
        matches!(self, MediaKind::Index | MediaKind::DockerManifestList)
    }

    /// Whether this is an image config, OCI or Docker.
    pub fn is_config_like(self) -> bool {
        matches!(self, MediaKind::Config | MediaKind::DockerConfig)
    }

    /// Whether this is a layer of any kind.
    pub fn is_layer(self) -> bool {
        matches!(self, MediaKind::Layer { .. })
    }
}

fn layer(compression: Compression, distributable: bool, docker: bool) -> MediaKind {
    MediaKind::Layer {
        compression,
        distributable,
        docker,
    }
}

/// The media type with any parameters (from the first `;`) and the whitespace before them
/// removed.
pub fn essence(media_type: &str) -> &str {
    match media_type.split_once(';') {
        Some((essence, _)) => essence.trim_end_matches([' ', '\t']),
        None => media_type,
    }
}

/// Classifies a media type (exactly, after dropping parameters; see the module docs).
pub fn classify(media_type: &str) -> MediaKind {
    use Compression::{Gzip, None as Plain, Zstd};
    match essence(media_type) {
        DESCRIPTOR => MediaKind::Descriptor,
        LAYOUT_HEADER => MediaKind::LayoutHeader,
        IMAGE_INDEX => MediaKind::Index,
        IMAGE_MANIFEST => MediaKind::Manifest,
        IMAGE_CONFIG => MediaKind::Config,
        EMPTY_JSON => MediaKind::Empty,
        IMAGE_LAYER => layer(Plain, true, false),
        IMAGE_LAYER_GZIP => layer(Gzip, true, false),
        IMAGE_LAYER_ZSTD => layer(Zstd, true, false),
        IMAGE_LAYER_NONDISTRIBUTABLE => layer(Plain, false, false),
        IMAGE_LAYER_NONDISTRIBUTABLE_GZIP => layer(Gzip, false, false),
        IMAGE_LAYER_NONDISTRIBUTABLE_ZSTD => layer(Zstd, false, false),
        DOCKER_MANIFEST => MediaKind::DockerManifest,
        DOCKER_MANIFEST_LIST => MediaKind::DockerManifestList,
        DOCKER_MANIFEST_SCHEMA1 | DOCKER_MANIFEST_SCHEMA1_SIGNED => {
            MediaKind::DockerManifestSchema1
        }
        DOCKER_CONFIG => MediaKind::DockerConfig,
        DOCKER_PLUGIN_CONFIG => MediaKind::DockerPluginConfig,
        DOCKER_LAYER => layer(Plain, true, true),
        DOCKER_LAYER_GZIP => layer(Gzip, true, true),
        DOCKER_LAYER_ZSTD => layer(Zstd, true, true),
        DOCKER_FOREIGN_LAYER => layer(Plain, false, true),
        DOCKER_FOREIGN_LAYER_GZIP => layer(Gzip, false, true),
        _ => MediaKind::Unknown,
    }
}

/// Whether `media_type` is an image manifest, OCI or Docker schema 2.
pub fn is_manifest_like(media_type: &str) -> bool {
    classify(media_type).is_manifest_like()
}

/// Whether `media_type` is an image index, OCI or a Docker manifest list.
pub fn is_index_like(media_type: &str) -> bool {
    classify(media_type).is_index_like()
}

/// Whether `media_type` is a layer of any kind.
pub fn is_layer(media_type: &str) -> bool {
    classify(media_type).is_layer()
}

/// The compression of a layer media type; `None` when it is not a known layer type.
pub fn layer_compression(media_type: &str) -> Option<Compression> {
    match classify(media_type) {
        MediaKind::Layer { compression, .. } => Some(compression),
        _ => None,
    }
}

/// The OCI layer media type for a compression (the distributable one).
pub fn oci_layer_type(compression: Compression) -> &'static str {
    match compression {
        Compression::None => IMAGE_LAYER,
        Compression::Gzip => IMAGE_LAYER_GZIP,
        Compression::Zstd => IMAGE_LAYER_ZSTD,
    }
}

/// Checks a media type against RFC 6838 §4.2 as the image spec's schema states it:
/// `^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$`.
///
/// Exact and anchored: no parameters, no whitespace, no case folding needed (both cases are
/// allowed).
pub fn validate_media_type(media_type: &str) -> Result<(), InvalidMediaType> {
    if media_type.is_empty() {
        return Err(InvalidMediaType::new(MediaTypeErrorKind::Empty));
    }
    let bytes = media_type.as_bytes();
    // Part 0 is the type, part 1 the subtype; `start` is where the current part begins.
    let mut part = 0;
    let mut start = 0;
    for (position, &byte) in bytes.iter().enumerate() {
        if byte == b'/' && part == 0 {
            if position == start {
                return Err(InvalidMediaType::new(MediaTypeErrorKind::EmptyType));
            }
            part = 1;
            start = position + 1;
            continue;
        }
        let allowed = if position == start {
            byte.is_ascii_alphanumeric()
        } else {
            byte.is_ascii_alphanumeric()
                || matches!(
                    byte,
                    b'!' | b'#' | b'$' | b'&' | b'^' | b'_' | b'.' | b'+' | b'-'
                )
        };
        if !allowed {
            return Err(InvalidMediaType::new(if position == start {
                MediaTypeErrorKind::BadFirstChar { position }
            } else {
                MediaTypeErrorKind::BadChar { position }
            }));
        }
        if position - start >= MAX_NAME_LEN {
            return Err(InvalidMediaType::new(MediaTypeErrorKind::TooLong {
                subtype: part == 1,
                max: MAX_NAME_LEN,
            }));
        }
    }
    if part == 0 {
        return Err(InvalidMediaType::new(MediaTypeErrorKind::MissingSubtype));
    }
    if start == bytes.len() {
        return Err(InvalidMediaType::new(MediaTypeErrorKind::EmptySubtype));
    }
    Ok(())
}

/// Why a media type was rejected by [`validate_media_type`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid media type: {kind}")]
pub struct InvalidMediaType {
    kind: MediaTypeErrorKind,
}

impl InvalidMediaType {
    fn new(kind: MediaTypeErrorKind) -> InvalidMediaType {
        InvalidMediaType { kind }
    }

    /// What exactly was wrong.
    pub fn kind(&self) -> &MediaTypeErrorKind {
        &self.kind
    }

    /// The byte offset of the offending character, when there is one.
    pub fn position(&self) -> Option<usize> {
        match self.kind {
            MediaTypeErrorKind::BadFirstChar { position }
            | MediaTypeErrorKind::BadChar { position } => Some(position),
            _ => None,
        }
    }
}

/// The precise reason a media type was rejected. Positions are byte offsets.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MediaTypeErrorKind {
    /// The string is empty.
    #[error("media type is empty")]
    Empty,
    /// There is no `/` (as in `application`).
    #[error("media type has no `/subtype`")]
    MissingSubtype,
    /// Nothing stands before the `/`.
    #[error("media type's type is empty")]
    EmptyType,
    /// Nothing follows the `/`.
    #[error("media type's subtype is empty")]
    EmptySubtype,
    /// The type or subtype starts with something other than a letter or digit (as `.foo`).
    #[error("character at byte {position} must be a letter or digit (start of a name)")]
    BadFirstChar {
        /// Byte offset of the character.
        position: usize,
    },
    /// A character outside `A-Za-z0-9!#$&^_.+-` (including a second `/`, `;`, whitespace).
    #[error("invalid character at byte {position} (allowed: A-Z a-z 0-9 ! # $ & ^ _ . + -)")]
    BadChar {
        /// Byte offset of the character.
        position: usize,
    },
    /// The type or subtype is longer than [`MAX_NAME_LEN`].
    #[error("media type's {} is longer than {max} characters", if *subtype { "subtype" } else { "type" })]
    TooLong {
        /// Whether it is the subtype (rather than the type) that is too long.
        subtype: bool,
        /// The limit.
        max: usize,
    },
}
