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
    #[error("cannot {what} {location}")]
    Registry {
        /// What was asked (`read`, `list the tags of`, ...).
        what: &'static str,
        /// The location.
        location: String,
        /// Why.
        #[source]
        source: ocikit_client::Error,
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
    /// A blob's bytes did not match its digest (they were written out already).
    #[error("blob {digest} is corrupt: its {written} bytes hash to {actual}")]
    CorruptBlob {
        /// The digest.
        digest: Digest,
        /// The bytes written.
        written: u64,
        /// What they hash to.
        actual: Digest,
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
    /// A layout operation failed.
    #[error(transparent)]
    Layout(#[from] ocikit_layout::Error),
    /// A store operation failed.
    #[error(transparent)]
    Store(#[from] ocikit_store::Error),
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
