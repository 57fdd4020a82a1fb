//! The crate's error type.

use ocikit_digest::Digest;

/// Everything that can go wrong in `ocikit-layout`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store failed (I/O, backend, a blob missing where one is required...).
    #[error("store error")]
    Store(#[from] ocikit_store::Error),
    /// The store holds no usable OCI image layout (SPEC C-L01).
    #[error("not an OCI image layout: {reason}")]
    NotALayout {
        /// What is wrong.
        reason: String,
    },
    /// `index.json` is malformed (SPEC C-L03, C-J01..C-J12).
    #[error("invalid index.json: {reason}")]
    InvalidIndex {
        /// What is wrong.
        reason: String,
        /// The underlying parse error, where there is one.
        #[source]
        source: Option<Box<ocikit_digest::Error>>,
    },
    /// A manifest, index or config document is malformed.
    #[error("invalid document {digest}: {reason}")]
    InvalidDocument {
        /// The document's digest.
        digest: Digest,
        /// What is wrong.
        reason: String,
        /// The underlying parse error, where there is one.
        #[source]
        source: Option<Box<ocikit_digest::Error>>,
    },
    /// A tag (an `org.opencontainers.image.ref.name`) that breaks the annotation grammar.
    #[error("invalid tag {tag:?}: {reason}")]
    InvalidTag {
        /// The tag as given.
        tag: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// No entry of `index.json` carries this tag.
    #[error("no tag {tag:?}")]
    TagNotFound {
        /// The tag.
        tag: String,
    },
    /// A layer could not be decoded, built or applied.
    #[error("layer codec error")]
    Codec(#[from] ocikit_codec::Error),
    /// A local file or directory operation failed (unpack targets, archives, sources).
    #[error("{operation} {}", path.display())]
    Io {
        /// What was being done.
        operation: &'static str,
        /// The path involved.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A media type this operation cannot handle (it is still stored and copied as bytes).
    #[error("unsupported media type `{media_type}` for {operation}")]
    UnsupportedMediaType {
        /// The media type.
        media_type: String,
        /// The operation that needed to understand it.
        operation: &'static str,
    },
    /// A blob could not be copied: it is missing or corrupt at the source, or the destination
    /// refused it. Nothing was tagged at the destination (blobs copied before stay: they are
    /// verified content).
    #[error("cannot copy blob {digest}")]
    Copy {
        /// The blob.
        digest: Digest,
        /// Why.
        #[source]
        source: Box<Error>,
    },
    /// An archive (oci-archive or docker-archive) is unsafe, malformed or inconsistent at
    /// `entry`; nothing was tagged.
    #[error("archive entry {entry:?}: {kind}")]
    Archive {
        /// The entry's name as found in the archive (or the file the problem is about).
        entry: String,
        /// What is wrong (boxed to keep `Error` small).
        kind: Box<crate::archive::ArchiveErrorKind>,
        /// The underlying error, where there is one.
        #[source]
        source: Option<Box<Error>>,
    },
    /// An image graph (nested indexes) deeper or larger than the walk allows (SPEC C-L13).
    #[error("image graph under {root} is too large: {reason}")]
    GraphTooLarge {
        /// The digest the walk started from.
        root: Digest,
        /// Which limit was hit.
        reason: &'static str,
    },
    /// The layout kept changing under a compare-and-swap edit of `index.json`.
    #[error("index.json kept changing; gave up after {attempts} attempts")]
    Contended {
        /// How many times the edit was retried.
        attempts: usize,
    },
    /// An image being built or read is inconsistent (layers, `rootfs.diff_ids` and history
    /// disagree), or a builder was given something it cannot use.
    #[error("invalid image: {reason}")]
    InvalidImage {
        /// What is wrong.
        reason: String,
    },
    /// No manifest for the wanted platform; `available` lists the platforms there are
    /// (`os[(os.version)]/arch[/variant]`, in index order).
    #[error("no image for platform {wanted} (available: {})", available.join(", "))]
    PlatformNotFound {
        /// The platform asked for.
        wanted: String,
        /// The platforms found.
        available: Vec<String>,
    },
    /// Image indexes nested deeper than the platform resolver allows.
    #[error("index {digest} is nested deeper than {max_depth} levels")]
    IndexTooDeep {
        /// The index that was one level too deep.
        digest: Digest,
        /// The allowed depth.
        max_depth: usize,
    },
    /// A layer of an image could not be read, decoded or applied (the source says why: a
    /// corrupt blob is a store digest or size mismatch, a wrong diffID a codec error).
    #[error("cannot apply layer {digest}")]
    Layer {
        /// The layer blob's digest.
        digest: Digest,
        /// The cause.
        #[source]
        source: Box<Error>,
    },
    /// An artifact that breaks the image spec's artifact rules (SPEC A.5): a bad
    /// `artifactType` or media type, or a subject that is not a manifest or index.
    #[error("invalid artifact: {reason}")]
    InvalidArtifact {
        /// What is wrong.
        reason: String,
        /// The underlying validation error, where there is one.
        #[source]
        source: Option<Box<ocikit_digest::Error>>,
    },
    /// Content named by a digest whose algorithm ocikit cannot compute (a well-formed but
    /// unregistered one, such as `foo:…`): it cannot be verified, so it is never read as if
    /// it were.
    #[error("cannot verify {digest}: ocikit does not compute its algorithm")]
    Unverifiable {
        /// The digest.
        digest: Digest,
    },
    /// An all-or-nothing unpack ([`crate::unpack::unpack_staged`]) was given a target that
    /// exists and is not an empty directory.
    #[error(
        "{} is not empty or not a directory; the target must be new or an empty directory",
        path.display()
    )]
    TargetExists {
        /// The target.
        path: std::path::PathBuf,
    },
    /// The store holds another component's references to its blobs (an ocikit registry's
    /// `_registry/` documents), which a layout's garbage collection does not read: it would
    /// delete content that is in use, so it refuses.
    #[error(
        "the store holds `{prefix}` documents (an ocikit registry); collect its garbage through the registry"
    )]
    ForeignReferences {
        /// The document prefix found.
        prefix: String,
    },
    /// A change of an image's config or annotations
    /// ([`ConfigChanges`](crate::image::ConfigChanges)) that cannot be made; nothing was
    /// changed.
    #[error("invalid {field} change {value:?}: {kind}")]
    InvalidChange {
        /// Which change: `env`, `label`, `annotation`, `expose`, `platform` or `created`.
        field: &'static str,
        /// The value given.
        value: String,
        /// What is wrong with it.
        kind: crate::image::ChangeErrorKind,
    },
    /// A layer source given to [`build`](crate::build::build) does not exist.
    #[error("layer source {} does not exist", path.display())]
    LayerSourceNotFound {
        /// The source as given.
        path: std::path::PathBuf,
    },
    /// A layer source could not be packed into a layer (not a tar file, a tar the strict
    /// reader refuses, a file the directory walk cannot pack, a read error).
    #[error("cannot build a layer from {}", path.display())]
    LayerSource {
        /// The source.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: Box<Error>,
    },
    /// The image to build on could not be used (not found, for no such platform,
    /// inconsistent).
    #[error("cannot use {digest} as the base")]
    Base {
        /// The base's digest, as given.
        digest: String,
        /// Why.
        #[source]
        source: Box<Error>,
    },
    /// The layout to write into could be neither opened nor created.
    #[error("cannot open or create the layout at {}", path.display())]
    OpenDestination {
        /// The layout's directory.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: Box<Error>,
    },
    /// A root filesystem to compare with its image is not a directory.
    #[error("{} is not a directory", path.display())]
    NotADirectory {
        /// The path given.
        path: std::path::PathBuf,
    },
    /// A root filesystem could not be compared with its image (a file the walk cannot
    /// read or pack, a changeset that cannot be written).
    #[error("cannot compare {} with the image", path.display())]
    Compare {
        /// The root filesystem.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: Box<Error>,
    },
    /// An image or index cannot be converted to another manifest format without losing
    /// what it says ([`crate::convert`]); nothing was written.
    #[error("cannot convert {digest} to {format}: {refusal}")]
    Unconvertible {
        /// The manifest or index refused.
        digest: Digest,
        /// The format asked for.
        format: crate::convert::ManifestFormat,
        /// What the format cannot say.
        refusal: Box<crate::convert::Refusal>,
    },
    /// A snapshot store refused a request ([`crate::snapshot`]): a bad or unknown chain ID,
    /// a snapshot others are built on, a form or store file it does not keep.
    #[error("snapshot store: {refusal}")]
    Snapshot {
        /// What was refused.
        refusal: Box<crate::snapshot::Refusal>,
    },
}

/// `Result` with this crate's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
