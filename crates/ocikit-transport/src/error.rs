//! The crate's error type.

use std::path::PathBuf;

use ocikit_digest::Digest;

use crate::location::LocationError;

/// What went wrong finding, reading or copying images between locations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A location string was refused.
    #[error(transparent)]
    Location(#[from] LocationError),
    /// A tag selection (a filter regex, a semver range) was refused.
    #[error(transparent)]
    TagSelection(#[from] crate::tag_select::TagSelectionError),
    /// An operation that works on a layout was given another kind of location.
    #[error("{what} needs an oci:PATH location, not `{location}`")]
    NeedsLayout {
        /// The operation.
        what: String,
        /// The location given.
        location: String,
    },
    /// An operation that sets a tag was given a location without one.
    #[error("{what} needs a tag: a bare TAG or oci:PATH:TAG, not `{location}`")]
    NeedsTag {
        /// The operation.
        what: String,
        /// The location given.
        location: String,
    },
    /// A tag for one layout was given as a location in another.
    #[error(
        "{what} names the layout {}, not {}: tags stay in the image's layout (copy the image \
         to tag it elsewhere)",
        named.display(),
        layout.display()
    )]
    OtherLayout {
        /// The operation.
        what: String,
        /// The layout the location names.
        named: PathBuf,
        /// The image's layout.
        layout: PathBuf,
    },
    /// A bare tag that is not a valid tag.
    #[error("{what} takes a tag or oci:PATH:TAG")]
    InvalidTag {
        /// The operation.
        what: String,
        /// Why the tag was refused.
        #[source]
        source: ocikit_layout::Error,
    },
    /// A directory that holds no OCI image layout.
    #[error(
        "no OCI image layout at {}: {}",
        path.display(),
        if *directory_exists { "it has no oci-layout file" } else { "the directory does not exist" }
    )]
    NoLayout {
        /// The directory.
        path: PathBuf,
        /// Whether the directory exists (without an `oci-layout` file).
        directory_exists: bool,
    },
    /// The store of a layout could not be opened.
    #[error("cannot open the store at {}", path.display())]
    OpenStore {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: ocikit_store::Error,
    },
    /// A layout could not be opened.
    #[error("cannot open the layout at {}", path.display())]
    OpenLayout {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: ocikit_layout::Error,
    },
    /// A destination layout could not be opened or made.
    #[error("cannot open or create the layout at {}", path.display())]
    CreateLayout {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: ocikit_layout::Error,
    },
    /// A new layout could not be put in place.
    #[error("cannot put the new layout in place at {}", path.display())]
    Commit {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: ocikit_layout::Error,
    },
    /// A layout location names no image where one is needed.
    #[error("name an image: add :TAG or @DIGEST to the location")]
    NoSelector,
    /// A tag a layout does not have.
    #[error("no tag {tag:?} in {}", path.display())]
    TagNotFound {
        /// The tag.
        tag: String,
        /// The layout.
        path: PathBuf,
        /// The layout's error.
        #[source]
        source: ocikit_layout::Error,
    },
    /// A document named by digest could not be read.
    #[error("cannot read {digest}")]
    ReadDocument {
        /// Its digest.
        digest: Digest,
        /// Why.
        #[source]
        source: ocikit_store::Error,
    },
    /// No index entry and no stored manifest has this digest.
    #[error("no manifest {digest} in the layout")]
    ManifestNotFound {
        /// The digest.
        digest: Digest,
    },
    /// A blob named as a manifest is not JSON.
    #[error("{digest} is not a valid JSON manifest or index")]
    NotJson {
        /// Its digest.
        digest: Digest,
        /// Why.
        #[source]
        source: ocikit_digest::json::JsonError,
    },
    /// A document outside `index.json` without a `mediaType`.
    #[error("{digest} is not in index.json and has no mediaType to say what it is")]
    NoMediaType {
        /// Its digest.
        digest: Digest,
    },
    /// A document's media type and size make no descriptor.
    #[error("{digest} cannot be described")]
    InvalidDescriptor {
        /// Its digest.
        digest: Digest,
        /// Why.
        #[source]
        source: ocikit_digest::descriptor::InvalidDescriptor,
    },
    /// A blob named as a manifest is not a valid manifest or index.
    #[error("{digest} is not a valid manifest or index")]
    NotADocument {
        /// Its digest.
        digest: Digest,
        /// Why.
        #[source]
        source: ocikit_layout::Error,
    },
    /// A registry client could not be set up.
    #[error("cannot set up a client for {registry}")]
    Client {
        /// The registry.
        registry: String,
        /// Why.
        #[source]
        source: ocikit_client::Error,
    },
    /// Stored credentials could not be read.
    #[error("cannot read the stored credentials for {registry}")]
    StoredCredentials {
        /// The registry.
        registry: String,
        /// Why.
        #[source]
        source: ocikit_client::Error,
    },
    /// Hardlinks were asked for between locations that are not two layouts.
    #[error(
        "hardlinks act only between two layouts (oci: to oci:), not from {source_location} to \
         {destination}"
    )]
    HardlinkNeedsLayouts {
        /// The source.
        source_location: String,
        /// The destination.
        destination: String,
    },
    /// A whole layout copied onto itself.
    #[error("source and destination are the same layout ({}): tag the image there instead", path.display())]
    SameLayout {
        /// The layout.
        path: PathBuf,
    },
    /// No scratch space could be made.
    #[error("cannot create a scratch directory")]
    Scratch {
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A layout or archive source holds no image.
    #[error("{} holds no image", path.display())]
    NoImage {
        /// The layout or archive.
        path: PathBuf,
    },
    /// A docker-archive has no image of this name.
    #[error("{} has no image named {name:?}", path.display())]
    NoImageNamed {
        /// The archive.
        path: PathBuf,
        /// The name asked for.
        name: String,
    },
    /// A source could not be read.
    #[error("cannot read {location}")]
    Read {
        /// The source.
        location: String,
        /// Why.
        #[source]
        source: ocikit_layout::Error,
    },
    /// A registry image could not be pulled.
    #[error("cannot pull {location}")]
    Pull {
        /// The source.
        location: String,
        /// Why.
        #[source]
        source: ocikit_client::Error,
    },
    /// A transfer finished without naming the image it moved.
    #[error("the transfer from {location} reported no image")]
    NoImageReported {
        /// The source.
        location: String,
    },
    /// No image of the platform asked for could be picked.
    #[error("cannot pick a platform from {location}")]
    Platform {
        /// The source.
        location: String,
        /// Why.
        #[source]
        source: ocikit_layout::Error,
    },
    /// Layers could not be recompressed.
    #[error("cannot recompress {digest}")]
    Recompress {
        /// The image.
        digest: String,
        /// Why.
        #[source]
        source: ocikit_layout::Error,
    },
    /// An image could not be converted to the manifest format asked for (a refusal is an
    /// [`ocikit_layout::Error::Unconvertible`] naming what the format cannot say).
    #[error("cannot convert {digest} to {format}")]
    Convert {
        /// The image.
        digest: String,
        /// The format asked for.
        format: ocikit_layout::convert::ManifestFormat,
        /// Why.
        #[source]
        source: ocikit_layout::Error,
    },
    /// A recompression the manifest format asked for cannot describe (zstd in Docker
    /// schema 2), refused before anything is read or written.
    #[error(
        "{format} manifests cannot describe {} layers",
        ocikit_codec::compression::name(*compression)
    )]
    FormatCompression {
        /// The format asked for.
        format: ocikit_layout::convert::ManifestFormat,
        /// The compression asked for.
        compression: ocikit_codec::compression::Compression,
    },
    /// A destination named by digest where it takes a tag.
    #[error("the destination takes a tag ({syntax}), not a digest")]
    DestinationTakesATag {
        /// How to write it.
        syntax: &'static str,
    },
    /// A source named by digest pulled into a layout without a destination tag.
    #[error("name a tag for the destination (oci:PATH:TAG): the source is named by digest")]
    NoDestinationTag,
    /// One destination name for several images.
    #[error("the source holds {count} images: {advice}")]
    SeveralImages {
        /// How many.
        count: usize,
        /// What to do.
        advice: &'static str,
    },
    /// An untagged image bound for a destination that needs a tag.
    #[error("name a tag for the destination: the source image {digest} has no tag")]
    Untagged {
        /// The image.
        digest: String,
    },
    /// A registry destination named by a digest that is not the image's.
    #[error("the destination names {digest}, which is not the source image")]
    NotTheSource {
        /// The digest named.
        digest: Digest,
    },
    /// An untagged image bound for a docker-archive without a name.
    #[error("name the image for the archive: docker-archive:FILE:NAME:TAG")]
    UnnamedForArchive,
    /// A layout tag that makes no docker name.
    #[error(
        "cannot name the image tagged {tag:?} after {name:?}; name it: docker-archive:FILE:NAME:TAG"
    )]
    RepoTag {
        /// The tag.
        tag: String,
        /// The name.
        name: String,
        /// Why.
        #[source]
        source: ocikit_layout::Error,
    },
    /// An image could not be copied into a layout.
    #[error("cannot copy {digest} to {destination}")]
    Copy {
        /// The image.
        digest: String,
        /// The destination.
        destination: String,
        /// Why.
        #[source]
        source: ocikit_layout::Error,
    },
    /// A registry image could not be copied within its registry.
    #[error("cannot copy {source_location} to {destination}")]
    CopyWithin {
        /// The source.
        source_location: String,
        /// The destination.
        destination: String,
        /// Why.
        #[source]
        source: ocikit_client::Error,
    },
    /// An archive could not be written.
    #[error("cannot write {location}")]
    Write {
        /// The destination.
        location: String,
        /// Why.
        #[source]
        source: ocikit_layout::Error,
    },
    /// An image could not be pushed.
    #[error("cannot push {digest} to {location}")]
    Push {
        /// The image.
        digest: String,
        /// The destination.
        location: String,
        /// Why.
        #[source]
        source: ocikit_client::Error,
    },
    /// A registry request failed.
    #[error("cannot {operation} {location}")]
    Registry {
        /// What was asked of the registry.
        operation: Operation,
        /// The location.
        location: String,
        /// Why.
        #[source]
        source: ocikit_client::Error,
    },
    /// A delete of a digest that other tags or indexes still reference (without force).
    #[error(
        "{location} ({digest}) is still referenced by {}: delete those first, or force it",
        references.join(", ")
    )]
    StillReferenced {
        /// The location given.
        location: String,
        /// The manifest it names.
        digest: String,
        /// What references it (`tag v2`, `index sha256:…`).
        references: Vec<String>,
    },
    /// A delete of a location that is neither a layout's image nor a registry's.
    #[error(
        "delete removes an image from a layout (oci:PATH:TAG|@DIGEST) or a registry \
         (docker://HOST/NAME:TAG|@DIGEST), not `{location}`"
    )]
    DeleteUnsupported {
        /// The location given.
        location: String,
    },
    /// An operation on a whole registry given something else than `docker://HOST[:PORT]`.
    #[error("{what} lists a registry: docker://HOST[:PORT], not `{location}`")]
    NeedsRegistryHost {
        /// The operation.
        what: String,
        /// The location given.
        location: String,
    },
    /// An operation that lists a registry repository was given another kind of location.
    #[error("{what} lists a registry repository (docker://HOST/NAME), not `{location}`{advice}")]
    NeedsRegistry {
        /// The operation.
        what: String,
        /// The location given.
        location: String,
        /// What to use instead, if anything (`; for a layout use ls`).
        advice: &'static str,
    },
    /// An operation on a tag of a layout was given a location without one.
    #[error("{what} needs a tag: oci:PATH:TAG, not `{location}`")]
    NeedsLayoutTag {
        /// The operation.
        what: String,
        /// The location given.
        location: String,
    },
    /// An operation on a whole layout was given a location naming an image in it.
    #[error("{what} takes a layout (oci:PATH), not an image")]
    NotALayout {
        /// The operation.
        what: String,
    },
    /// A layout's image (or a registry image fetched into memory) could not be read.
    #[error("cannot read {digest}")]
    ReadImage {
        /// The image's digest.
        digest: String,
        /// Why.
        #[source]
        source: ocikit_layout::Error,
    },
    /// An image's config could not be read.
    #[error("cannot read the config {digest}")]
    ReadConfig {
        /// The config's digest.
        digest: String,
        /// Why.
        #[source]
        source: ocikit_layout::Error,
    },
    /// An image config that is not valid JSON (read strictly: duplicate keys refused).
    #[error("the config {digest} is not valid JSON")]
    ConfigNotJson {
        /// The config's digest.
        digest: String,
        /// Why.
        #[source]
        source: ocikit_digest::json::JsonError,
    },
    /// An image whose config is not an image config (an artifact's) asked for its config.
    #[error("the config of {digest} is {media_type}, not an image config")]
    NotAnImageConfig {
        /// The image's digest.
        digest: String,
        /// The config's media type.
        media_type: String,
    },
    /// An index asked for an image config.
    #[error("{digest} is an index: inspect one of its manifests (by digest) for a config")]
    IndexHasNoConfig {
        /// The index's digest.
        digest: String,
    },
    /// A location that names a blob that is neither a manifest nor an index.
    #[error("{digest} is a {media_type}, not a manifest or index")]
    NotAManifest {
        /// Its digest.
        digest: String,
        /// Its media type.
        media_type: String,
    },
    /// The images of a layout could not be listed.
    #[error("cannot list the images of {}", path.display())]
    ListImages {
        /// The layout.
        path: PathBuf,
        /// Why.
        #[source]
        source: ocikit_layout::Error,
    },
    /// One image of a layout listing could not be read (walked, measured).
    #[error("cannot read the {}", match tag {
        Some(tag) => format!("image tagged {tag:?}"),
        None => format!("untagged image {digest}"),
    })]
    ListImage {
        /// The tag the image is listed under, if any.
        tag: Option<String>,
        /// Its digest.
        digest: String,
        /// Why.
        #[source]
        source: ocikit_layout::Error,
    },
    /// A new layout could not be made.
    #[error("cannot create a layout at {}", path.display())]
    Init {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: ocikit_layout::Error,
    },
    /// A tag could not be set.
    #[error("cannot tag {digest} as {tag:?}")]
    SetTag {
        /// The image.
        digest: String,
        /// The tag.
        tag: String,
        /// Why.
        #[source]
        source: ocikit_layout::Error,
    },
    /// An artifact could not be attached.
    #[error("cannot attach to {digest}")]
    Attach {
        /// The subject's digest.
        digest: String,
        /// Why.
        #[source]
        source: ocikit_layout::Error,
    },
    /// A layout's check could not run (a problem it finds is in its report, not an error).
    #[error("fsck could not run")]
    Fsck {
        /// Why.
        #[source]
        source: ocikit_layout::Error,
    },
    /// Garbage collection of a layout failed.
    #[error("garbage collection failed")]
    Gc {
        /// Why.
        #[source]
        source: ocikit_layout::Error,
    },
    /// A digest under an algorithm ocikit cannot compute: its content cannot be verified.
    #[error("cannot verify {digest}")]
    Unverifiable {
        /// The digest.
        digest: Digest,
        /// Why.
        #[source]
        source: ocikit_digest::Error,
    },
    /// A blob a layout does not hold.
    #[error("no blob {digest} in {}", path.display())]
    NoBlob {
        /// The digest.
        digest: Digest,
        /// The layout.
        path: PathBuf,
        /// The store's error.
        #[source]
        source: ocikit_store::Error,
    },
    /// A blob's bytes did not match its digest, or its size changed while it was read (the
    /// bytes were written out already).
    #[error("blob {digest} is corrupt ({written} bytes written out)")]
    CorruptBlob {
        /// The digest.
        digest: Digest,
        /// The bytes written.
        written: u64,
        /// The mismatch ([`ocikit_digest::Error::DigestMismatch`] names what the bytes hash
        /// to; [`ocikit_digest::Error::SizeMismatch`]).
        #[source]
        source: ocikit_digest::Error,
    },
    /// A blob could not be read from its store.
    #[error("cannot read blob {digest}")]
    ReadBlob {
        /// The digest.
        digest: Digest,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Writing to the output failed.
    #[error("cannot write the blob out")]
    Output {
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A descriptor names a digest ocikit cannot read.
    #[error("{digest} is not a valid digest")]
    InvalidDigest {
        /// The digest as written.
        digest: String,
        /// Why.
        #[source]
        source: ocikit_digest::digest::ParseError,
    },
    /// An image edit (`mutate`) was given a destination that names no tag.
    #[error(
        "the destination must name a tag (oci:PATH:TAG, oci-archive:FILE:TAG, \
         docker-archive:FILE:NAME:TAG or docker://HOST/NAME:TAG), not `{location}`"
    )]
    EditNeedsTag {
        /// The destination given.
        location: String,
    },
    /// An image edit of an index without a platform to pick its image by.
    #[error(
        "{location} is an index ({digest}){}: name the image to change with a platform",
        if platforms.is_empty() { String::new() } else { format!(" of {}", platforms.join(", ")) }
    )]
    EditIndex {
        /// The source.
        location: String,
        /// The index's digest.
        digest: String,
        /// The platforms its entries name.
        platforms: Vec<String>,
    },
    /// Config changes that were refused (checked before anything is read or written).
    #[error("invalid change")]
    InvalidChanges {
        /// Which change, and why ([`ocikit_layout::Error::InvalidChange`]).
        #[source]
        source: ocikit_layout::Error,
    },
    /// An edited config or manifest that cannot be written as an image.
    #[error("cannot write the edited image of {digest}")]
    Edit {
        /// The image edited.
        digest: String,
        /// Why.
        #[source]
        source: ocikit_layout::Error,
    },
    /// Annotations asked of a Docker schema 2 manifest, which has none.
    #[error("{digest} is a {media_type} manifest, which has no annotations")]
    AnnotationsNeedOci {
        /// The image.
        digest: String,
        /// Its manifest's media type.
        media_type: String,
    },
    /// An append with no layer to put on the image.
    #[error("name at least one layer to append (a directory, or a tar, tar.gz or tar.zst file)")]
    NothingToAppend,
    /// A layer source that could not be packed into a layer (missing, not a tar, a tar the
    /// strict reader refuses).
    #[error("cannot make a layer of {}", path.display())]
    LayerSource {
        /// The source as given.
        path: std::path::PathBuf,
        /// Why ([`ocikit_layout::Error::LayerSourceNotFound`], the codec's `NotTar`, ...).
        #[source]
        source: ocikit_layout::Error,
    },
    /// An image's layers that could not be squashed into one.
    #[error("cannot flatten {digest}")]
    Flatten {
        /// The image manifest.
        digest: String,
        /// Why (an entry the squash refuses, a layer that does not verify, I/O).
        #[source]
        source: ocikit_codec::Error,
    },
    /// An image's filesystem that could not be exported as a tar stream.
    #[error("cannot export the filesystem of {digest}")]
    Export {
        /// The image manifest.
        digest: String,
        /// Why (a layer that does not verify, an entry the squash refuses, I/O).
        #[source]
        source: ocikit_codec::Error,
    },
    /// The exported tar stream could not be written.
    #[error("cannot write the exported filesystem{}", path.as_ref().map(|p| format!(" to {}", p.display())).unwrap_or_default())]
    ExportWrite {
        /// The file written, when a path was given.
        path: Option<PathBuf>,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A time that is not RFC 3339.
    #[error("`{text}` is not an RFC 3339 time (like 2024-05-01T12:00:00Z)")]
    InvalidTime {
        /// The text given.
        text: String,
        /// Why.
        #[source]
        source: chrono::ParseError,
    },
    /// A time this system cannot represent.
    #[error("`{text}` is out of range")]
    TimeOutOfRange {
        /// The text given.
        text: String,
    },
    /// A rebase of an image whose bottom layers are not the old base's (compared by diffID).
    #[error(
        "{image} is not built on {base}: {}",
        match image_diff_id {
            Some(found) => format!(
                "its layer {layer} has diffID {found} where the base's has {base_diff_id}"
            ),
            None => format!(
                "it has {} layers, the base has more (its layer {layer} is {base_diff_id})",
                layer - 1
            ),
        }
    )]
    NotBuiltOn {
        /// The image to rebase.
        image: String,
        /// The old base it was said to be built on.
        base: String,
        /// The first layer that differs, counted from 1 at the bottom.
        layer: usize,
        /// The image's diffID of that layer (`None`: the image has fewer layers).
        image_diff_id: Option<String>,
        /// The old base's diffID of that layer.
        base_diff_id: String,
    },
    /// A rebase onto a new base of another platform than the image's.
    #[error("{image} is {image_platform} but the new base {base} is {base_platform}")]
    RebasePlatform {
        /// The image to rebase.
        image: String,
        /// Its platform, `os/arch[/variant]`.
        image_platform: String,
        /// The new base.
        base: String,
        /// Its platform.
        base_platform: String,
    },
    /// An index made of no image.
    #[error("name at least one image for the index")]
    IndexWithoutImages,
    /// An index destination that names no tag.
    #[error(
        "the index needs a tag: oci:PATH:TAG, oci-archive:FILE:TAG or docker://HOST/NAME:TAG, \
         not `{location}`"
    )]
    IndexNeedsTag {
        /// The destination given.
        location: String,
    },
    /// An index edited in place that is not named by tag in a layout or a registry.
    #[error(
        "an index is edited where it is tagged: oci:PATH:TAG or docker://HOST/NAME:TAG, not \
         `{location}`"
    )]
    IndexEditNeedsTag {
        /// The location given.
        location: String,
    },
    /// An index edit of something that is not an index.
    #[error("{location} is a {media_type} ({digest}), not an index")]
    NotAnIndex {
        /// The location given.
        location: String,
        /// What it names.
        digest: String,
        /// Its media type.
        media_type: String,
    },
    /// Two entries of an index with the same platform.
    #[error("{first} and {second} are both {platform}: an index takes one image per platform")]
    SamePlatform {
        /// The platform, `os/arch[/variant]`.
        platform: String,
        /// The entry that has it first.
        first: String,
        /// The entry that has it too.
        second: String,
    },
    /// A platform no entry of an index has.
    #[error(
        "{location} has no entry for {platform}{}",
        if available.is_empty() { String::new() } else { format!(" (it has {})", available.join(", ")) }
    )]
    NoSuchPlatform {
        /// The index.
        location: String,
        /// The platform asked for.
        platform: String,
        /// The platforms its entries name.
        available: Vec<String>,
    },
    /// A manifest of a media type the index cannot list (an OCI manifest in a Docker
    /// manifest list).
    #[error("{digest} is a {media_type}, which a {index_media_type} cannot list")]
    IndexMediaType {
        /// The entry.
        digest: String,
        /// Its media type.
        media_type: String,
        /// The index's media type.
        index_media_type: String,
    },
    /// Referrers asked for ([`CopyOptions::with_referrers`](crate::CopyOptions::with_referrers))
    /// with a location that cannot hold them (a docker-archive).
    #[error(
        "{location} cannot hold referrers: copy them to or from a layout, an oci-archive or a registry"
    )]
    ReferrersNotHeld {
        /// The location.
        location: String,
    },
    /// Referrers asked for with a copy that gives the images new digests, which their
    /// referrers' `subject` does not name.
    #[error("referrers name their image by digest: they cannot follow an image {what} on the way")]
    ReferrersRewritten {
        /// How the images would change (`recompressed`, `converted`).
        what: &'static str,
    },
    /// A copy that would rewrite the manifest of a signed image (recompress its layers,
    /// convert its format) while carrying its signatures
    /// ([`CopyOptions::with_signatures`](crate::CopyOptions::with_signatures)): the image
    /// would get a new digest that none of its signatures vouches for (skopeo refuses it as
    /// "Would invalidate signatures"). Refused before anything is written at the destination.
    #[error(
        "{location}: the image {digest} is signed ({signatures}) and would be {how} on the way, \
         which would invalidate its signatures: copy it as it is, or leave the signatures \
         behind (--remove-signatures)"
    )]
    SignaturesInvalidated {
        /// The source.
        location: String,
        /// The signed image (or index), as the source holds it.
        digest: String,
        /// Where its signatures are: the `sha256-<hex>.sig` tag.
        signatures: String,
        /// How the copy would rewrite it (`recompressed to zstd`, `converted to v2s2`).
        how: String,
    },
    /// A referrer that could not be gathered from the source (listed, fetched, verified).
    #[error("cannot copy the referrer {digest} of {subject}")]
    Referrer {
        /// The referrer.
        digest: String,
        /// The document it refers to.
        subject: String,
        /// Why.
        #[source]
        source: Box<Error>,
    },
    /// Referrers of referrers nested deeper than a copy follows.
    #[error("the referrer {digest} is more than {max} levels of referrers below the image")]
    ReferrersTooDeep {
        /// The referrer found too deep.
        digest: String,
        /// The levels followed.
        max: usize,
    },
    /// More referrers than a copy takes along.
    #[error("{location} lists more than {max} referrers for the images copied")]
    TooManyReferrers {
        /// The source.
        location: String,
        /// The most taken.
        max: usize,
    },
    /// An artifact, or a file of one, was refused or could not be written
    /// (`artifact push`, `artifact pull`, `attach`).
    #[error(transparent)]
    Artifact(#[from] crate::artifact::ArtifactError),
    /// A sync file was refused.
    #[error(transparent)]
    SyncFile(#[from] crate::sync::SyncFileError),
    /// A sync source that does not name a registry repository.
    #[error("`{source_text}` is not a sync source: {reason}")]
    SyncSource {
        /// The source as given.
        source_text: String,
        /// What to write instead.
        reason: &'static str,
    },
    /// A sync destination that is not a registry and a repository prefix.
    #[error("`{destination}` is not a sync destination: {reason}")]
    SyncDestination {
        /// The destination as given.
        destination: String,
        /// What was wrong.
        reason: &'static str,
    },
    /// A tag a sync was asked for that the source repository does not have.
    #[error("{repository} has no tag {tag:?}")]
    SyncTagMissing {
        /// The repository (or layout).
        repository: String,
        /// The tag.
        tag: String,
    },
    /// The trust policy ([`CopyOptions::with_policy`](crate::CopyOptions::with_policy),
    /// [`check_policy`](crate::check_policy)) refused the image: nothing of it was written.
    #[cfg(feature = "sign")]
    #[error("the policy refuses {location} ({digest}), by {scope}: {reason}")]
    PolicyRejected {
        /// The image, as given.
        location: String,
        /// Its manifest (or index) digest.
        digest: String,
        /// The part of the policy that applied.
        scope: ocikit_sign::policy::Scope,
        /// Why: a `reject`, no signature, or each signature's reason (another key, a
        /// payload for another manifest, another docker reference, a layer that is no
        /// signature).
        reason: ocikit_sign::policy::Rejection,
    },
    /// A trust policy is enforced on images in registries and layouts only (archives hold
    /// no signatures).
    #[cfg(feature = "sign")]
    #[error(
        "a trust policy is enforced on images in a registry or a layout (docker:// or oci:), \
         not on {location}"
    )]
    PolicySource {
        /// The location given.
        location: String,
    },
    /// The signatures of an image could not be read for the trust policy (the signature tag
    /// holds no image manifest, the registry failed...).
    #[cfg(feature = "sign")]
    #[error("cannot read the signatures of {location} for the trust policy")]
    PolicySignatures {
        /// The image.
        location: String,
        /// Why.
        #[source]
        source: Box<crate::signing::SigningError>,
    },
    /// A policy file could not be read or parsed (or a key file it names).
    #[cfg(feature = "sign")]
    #[error("cannot use the policy {}", path.display())]
    PolicyFile {
        /// The policy file.
        path: PathBuf,
        /// Why.
        #[source]
        source: ocikit_sign::Error,
    },
    /// A layout operation failed.
    #[error(transparent)]
    Layout(#[from] ocikit_layout::Error),
    /// A store operation failed.
    #[error(transparent)]
    Store(#[from] ocikit_store::Error),
}

/// What a registry was asked when it failed ([`Error::Registry`]), so that a caller can
/// tell the requests apart by matching, not by reading the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Operation {
    /// Fetching an image's manifest or index (by tag or digest).
    ReadManifest,
    /// Fetching an image manifest's config blob.
    ReadConfig,
    /// Listing a repository's tags.
    ListTags,
    /// Listing the referrers of a subject (the API, else the referrers tag schema).
    ListReferrers,
    /// Deleting a manifest or a tag.
    Delete,
    /// Listing the registry's repositories.
    Catalog,
}

impl std::fmt::Display for Operation {
    /// The verb phrase `cannot … LOCATION` is made of (`read`, `list the tags of`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Operation::ReadManifest => "read",
            Operation::ReadConfig => "read the config of",
            Operation::ListTags => "list the tags of",
            Operation::ListReferrers => "list the referrers of",
            Operation::Delete => "delete",
            Operation::Catalog => "list the repositories of",
        })
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
