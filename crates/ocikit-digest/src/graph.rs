//! The one graph walk over manifests and indexes, with one set of [`Limits`].
//!
//! Everything that follows an image from its root (a layout's copy, fsck, garbage
//! collection and footprint; the client's push and pull) walks it here, so the limits
//! and the parser ([`Document::parse_with_limit`]) are the same everywhere:
//!
//! - documents nest at most [`MAX_DEPTH`] levels below a root ([`GraphError::TooDeep`]);
//! - a walk reaches at most [`MAX_NODES`] distinct blobs ([`GraphError::TooManyNodes`]);
//! - a document is at most [`MAX_DOCUMENT_SIZE`] bytes;
//! - a document that reaches itself is refused ([`GraphError::Cycle`]; content addressing
//!   rules cycles out, but a walk over unverified bytes must not trust that).
//!
//! The core, [`Walker`], is synchronous and does no I/O: it says which documents it wants
//! ([`Walker::next_wanted`], or a whole batch with [`Walker::take_wanted`] for callers that
//! fetch concurrently) and takes their bytes ([`Walker::visit`]), or, from callers that parse
//! documents on their own threads, only what each names ([`Walker::visit_children`]).
//! [`walk`] drives it with an
//! async fetch function, one document at a time; stores and registries are remote, and how
//! bytes are fetched and verified is the caller's business (a walker checks no digests).
//! [`Graph`] gives the result children first ([`Graph::levels`]), for copies that must land
//! a blob before anything that names it.
//!
//! ```
//! use ocikit_digest::graph::{self, Limits};
//! use ocikit_digest::{Digest, descriptor, media_type};
//!
//! let config = descriptor::empty();
//! let manifest = serde_json::to_vec(&serde_json::json!({
//!     "schemaVersion": 2, "mediaType": media_type::IMAGE_MANIFEST,
//!     "config": config, "layers": []
//! }))?;
//! let root = descriptor::new(media_type::IMAGE_MANIFEST, &Digest::sha256(&manifest),
//!     manifest.len() as u64)?;
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let graph = graph::walk(&[root], &Limits::new(), |_wanted| {
//!     let bytes = manifest.clone();
//!     async move { Ok::<_, graph::GraphError>(bytes.into()) }
//! }).await?;
//! assert_eq!(graph.len(), 2);
//! let order: Vec<_> = graph.children_first().map(|n| n.digest.clone()).collect();
//! assert_eq!(order, [Digest::parse(config.digest().as_ref())?, Digest::sha256(&manifest)]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};

use bytes::Bytes;
use oci_spec::image::Descriptor;

use crate::Digest;
use crate::descriptor::{self, InvalidDescriptor};
pub use crate::document::MAX_DOCUMENT_SIZE;
use crate::document::{Document, InvalidDocument, is_document};

/// Documents nest at most this many levels below a root (a root index is level 0, the
/// manifests it lists level 1, ...).
pub const MAX_DEPTH: usize = 16;
/// A walk reaches at most this many distinct blobs (documents and leaves).
pub const MAX_NODES: usize = 1_000_000;

/// The limits of a walk; [`Limits::new`] gives [`MAX_DEPTH`], [`MAX_NODES`] and
/// [`MAX_DOCUMENT_SIZE`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Deepest level a document may sit at below a root.
    pub max_depth: usize,
    /// Most distinct nodes a walk may reach.
    pub max_nodes: usize,
    /// Largest document read, in bytes.
    pub max_document_size: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits::new()
    }
}

impl Limits {
    /// The default limits.
    pub const fn new() -> Limits {
        Limits {
            max_depth: MAX_DEPTH,
            max_nodes: MAX_NODES,
            max_document_size: MAX_DOCUMENT_SIZE,
        }
    }

    /// These limits with documents at most `depth` levels below a root.
    pub const fn with_max_depth(mut self, depth: usize) -> Limits {
        self.max_depth = depth;
        self
    }

    /// These limits with at most `nodes` nodes.
    pub const fn with_max_nodes(mut self, nodes: usize) -> Limits {
        self.max_nodes = nodes;
        self
    }

    /// These limits with documents of at most `bytes` bytes.
    pub const fn with_max_document_size(mut self, bytes: u64) -> Limits {
        self.max_document_size = bytes;
        self
    }
}

/// Why a walk stopped.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GraphError {
    /// A descriptor (a root, or one inside a document) has an invalid digest.
    #[error("invalid descriptor")]
    Descriptor(#[source] Box<InvalidDescriptor>),
    /// A document broke a rule of [`Document::parse`].
    #[error("invalid document {digest}")]
    Document {
        /// The document.
        digest: Digest,
        /// The rule it broke.
        #[source]
        source: Box<InvalidDocument>,
    },
    /// A document sits deeper below its root than [`Limits::max_depth`].
    #[error("document {digest} under {root} is nested deeper than {max} levels")]
    TooDeep {
        /// The root the walk reached it from.
        root: Digest,
        /// The document one level too deep.
        digest: Digest,
        /// The limit.
        max: usize,
    },
    /// The walk reached more than [`Limits::max_nodes`] distinct blobs.
    #[error("image graph under {root} has more than {max} blobs")]
    TooManyNodes {
        /// The root whose walk went over the limit.
        root: Digest,
        /// The limit.
        max: usize,
    },
    /// A document reaches itself.
    #[error("document {digest} reaches itself")]
    Cycle {
        /// A document on the cycle.
        digest: Digest,
    },
    /// [`Walker::visit`] was given a document the walk did not ask for.
    #[error("document {digest} was not asked for")]
    NotWanted {
        /// The document.
        digest: Digest,
    },
    /// [`Walker::finish`] was called while a document was still wanted.
    #[error("document {digest} was never read")]
    NotVisited {
        /// The document.
        digest: Digest,
    },
}

/// One blob of a finished graph ([`Graph`]).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Node {
    /// The descriptor it was first reached by (for a blob a caller handed over as a bare
    /// [`Blob`], one of its media type, digest and size only).
    pub descriptor: Descriptor,
    /// Its digest.
    pub digest: Digest,
    /// Levels below its root (a root is 0), on the first path that reached it.
    pub depth: usize,
    /// 0 for a leaf; 1 + the highest child for a document.
    pub height: usize,
    /// The parsed document, for a manifest or index the walk read; `None` for a leaf, for
    /// a document the caller skipped ([`Walker::skip`]) and for one it parsed itself
    /// ([`Walker::visit_parsed`], [`Walker::visit_children`]).
    pub document: Option<Document>,
    children: Vec<usize>,
}

impl Node {
    /// Whether its media type names a manifest or index.
    pub fn is_document(&self) -> bool {
        is_document(self.descriptor.media_type().as_ref())
    }

    /// The exact bytes of a document the walk read.
    pub fn bytes(&self) -> Option<&Bytes> {
        self.document.as_ref().and_then(Document::bytes)
    }

    /// Its size, as its descriptor declares.
    pub fn size(&self) -> u64 {
        self.descriptor.size()
    }
}

/// What a walk needs of a descriptor: the blob's digest (parsed by the caller), size and
/// media type; for callers that parse documents themselves and hand the walk only what
/// they name ([`Walker::visit_children`], [`Walker::add_root_blob`]).
#[derive(Clone, Copy, Debug)]
pub struct Blob<'a> {
    digest: &'a Digest,
    size: u64,
    media_type: &'a str,
}

impl<'a> Blob<'a> {
    /// The blob `digest` of `size` bytes, named under `media_type`.
    pub fn new(digest: &'a Digest, size: u64, media_type: &'a str) -> Blob<'a> {
        Blob {
            digest,
            size,
            media_type,
        }
    }
}

/// A node of a walk in progress ([`Walker::nodes`]).
#[derive(Clone, Copy, Debug)]
pub struct WalkNode<'a> {
    walker: &'a Walker,
    slot: &'a Slot,
}

impl<'a> WalkNode<'a> {
    /// Its digest.
    pub fn digest(&self) -> &'a Digest {
        &self.slot.digest
    }

    /// Its size, as the descriptor it was reached by declares.
    pub fn size(&self) -> u64 {
        self.slot.size
    }

    /// The media type it was reached by.
    pub fn media_type(&self) -> &'a str {
        self.walker.media_types.name(self.slot.media_type)
    }

    /// Whether its media type names a manifest or index.
    pub fn is_document(&self) -> bool {
        self.walker.media_types.is_document(self.slot.media_type)
    }

    /// Levels below its root (a root is 0), on the first path that reached it.
    pub fn depth(&self) -> usize {
        self.slot.depth
    }

    /// The descriptor it was reached by, when it was handed over whole (not as a [`Blob`]).
    pub fn descriptor(&self) -> Option<&'a Descriptor> {
        self.walker.kept.get(self.slot.kept)
    }

    /// The parsed document, for a manifest or index the walk read ([`Walker::visit`]).
    pub fn document(&self) -> Option<&'a Document> {
        self.walker.documents.get(self.slot.document)
    }
}

/// No index (of a kept descriptor, a kept document).
const NONE: usize = usize::MAX;

/// A node as the walk keeps it: small, and holding one allocation (its digest), so that a
/// walk of many blobs is cheap to build and to free. What a node names is a range of
/// [`Walker::edges`]; its descriptor, when it was handed over whole, and its document are in
/// side tables.
#[derive(Debug)]
struct Slot {
    digest: Digest,
    size: u64,
    /// Index into [`Walker::media_types`].
    media_type: usize,
    depth: usize,
    /// The root the walk first reached it from.
    root: usize,
    /// Its children are `edges[first..first + count]`.
    first: usize,
    count: usize,
    /// Index into [`Walker::kept`], or [`NONE`].
    kept: usize,
    /// Index into [`Walker::documents`], or [`NONE`].
    document: usize,
    /// The node reached before it whose digest hashes the same ([`Walker::by_hash`]), or
    /// [`NONE`].
    next: usize,
    state: State,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Leaf,
    Wanted,
    Visited,
    Skipped,
}

/// The media types a walk has seen, each kept once with whether it names a document.
#[derive(Debug, Default)]
struct MediaTypes {
    names: Vec<(Box<str>, bool)>,
    index: HashMap<Box<str>, usize>,
}

impl MediaTypes {
    /// Looked up among the first few by comparison (a walk sees a handful), else hashed.
    const SCAN: usize = 8;

    fn intern(&mut self, media_type: &str) -> usize {
        if let Some(at) = self
            .names
            .iter()
            .take(Self::SCAN)
            .position(|(name, _)| **name == *media_type)
        {
            return at;
        }
        if let Some(&at) = self.index.get(media_type) {
            return at;
        }
        let at = self.names.len();
        self.names
            .push((media_type.into(), is_document(media_type)));
        self.index.insert(media_type.into(), at);
        at
    }

    fn name(&self, at: usize) -> &str {
        self.names.get(at).map_or("", |(name, _)| name)
    }

    fn is_document(&self, at: usize) -> bool {
        self.names.get(at).is_some_and(|&(_, document)| document)
    }
}

/// A blob named by a root or a document, on its way into the walk.
struct Named<'d> {
    digest: Cow<'d, Digest>,
    size: u64,
    media_type: &'d str,
    /// The whole descriptor, kept with the node (`None` for a [`Blob`]).
    descriptor: Option<&'d Descriptor>,
}

impl<'d> Named<'d> {
    fn whole(descriptor: &'d Descriptor, digest: Digest) -> Named<'d> {
        Named {
            digest: Cow::Owned(digest),
            size: descriptor.size(),
            media_type: descriptor.media_type().as_ref(),
            descriptor: Some(descriptor),
        }
    }

    fn blob(blob: Blob<'d>) -> Named<'d> {
        Named {
            digest: Cow::Borrowed(blob.digest),
            size: blob.size,
            media_type: blob.media_type,
            descriptor: None,
        }
    }
}

/// The synchronous core of a walk: it names the documents it wants and takes their bytes.
#[derive(Debug)]
pub struct Walker {
    limits: Limits,
    nodes: Vec<Slot>,
    /// The nodes by digest, without a second copy of each digest: the keyed hash of a
    /// digest ([`Walker::hasher`]: nobody can aim collisions at it) to the last node reached
    /// whose digest hashes so; nodes that share a hash are chained by [`Slot::next`].
    by_hash: HashMap<u64, usize, BuildHasherDefault<Hashed>>,
    hasher: RandomState,
    /// Every digest hashes to 0, so that tests walk the chains of [`Slot::next`].
    #[cfg(test)]
    same_hash: bool,
    wanted: VecDeque<usize>,
    roots: Vec<usize>,
    /// What each visited document names, node by node (see [`Slot::first`]).
    edges: Vec<usize>,
    /// Descriptors handed over whole, for the nodes they reached.
    kept: Vec<Descriptor>,
    /// Documents the walk parsed ([`Walker::visit`]).
    documents: Vec<Document>,
    media_types: MediaTypes,
}

impl Walker {
    /// An empty walk under `limits`.
    pub fn new(limits: Limits) -> Walker {
        Walker {
            limits,
            nodes: Vec::new(),
            by_hash: HashMap::default(),
            hasher: RandomState::new(),
            #[cfg(test)]
            same_hash: false,
            wanted: VecDeque::new(),
            roots: Vec::new(),
            edges: Vec::new(),
            kept: Vec::new(),
            documents: Vec::new(),
            media_types: MediaTypes::default(),
        }
    }

    /// Adds a root (may be called again after documents were visited, to extend the walk);
    /// one already reached is not walked again.
    pub fn add_root(&mut self, root: &Descriptor) -> Result<(), GraphError> {
        let digest =
            descriptor::digest_of(root).map_err(|e| GraphError::Descriptor(Box::new(e)))?;
        self.add_root_with_digest(root, digest)
    }

    /// [`Walker::add_root`] for a root whose digest the caller has parsed from it already
    /// (with [`descriptor::digest_of`]).
    pub fn add_root_with_digest(
        &mut self,
        root: &Descriptor,
        digest: Digest,
    ) -> Result<(), GraphError> {
        self.add_root_named(Named::whole(root, digest))
    }

    /// [`Walker::add_root`] given only the root's digest, size and media type: the walk
    /// keeps no descriptor for it (see [`Walker::visit_children`]).
    pub fn add_root_blob(&mut self, root: Blob<'_>) -> Result<(), GraphError> {
        self.add_root_named(Named::blob(root))
    }

    fn add_root_named(&mut self, root: Named<'_>) -> Result<(), GraphError> {
        let known = self.contains(&root.digest);
        let at = self.add(root, 0, Root::Itself)?;
        if !known {
            self.roots.push(at);
        }
        Ok(())
    }

    /// Makes room for `additional` more nodes (at most up to [`Limits::max_nodes`]), for a
    /// caller that knows how many blobs the documents it is about to visit name: the walk
    /// then grows its tables once rather than step by step.
    pub fn reserve(&mut self, additional: usize) {
        let room = self.limits.max_nodes.saturating_sub(self.nodes.len());
        let additional = additional.min(room);
        self.nodes.reserve(additional);
        self.by_hash.reserve(additional);
        self.edges.reserve(additional);
    }

    /// The node of a blob reached (or reached again) by `child` at `depth` below the root
    /// `root`: a blob reached for the first time gets a node, under the limits (a fresh
    /// document is wanted); a leaf reached again by a descriptor that claims it is a
    /// document is promoted ([`Walker::promote`]).
    fn add(&mut self, child: Named<'_>, depth: usize, root: Root) -> Result<usize, GraphError> {
        let media_type = self.media_types.intern(child.media_type);
        let hash = self.hash(&child.digest);
        if let Some(known) = self.find(hash, &child.digest) {
            if self.nodes[known].state == State::Leaf && self.media_types.is_document(media_type) {
                let root_digest = self.root_digest(root, &child.digest);
                self.promote(known, &child, media_type, depth, root_digest)?;
            }
            return Ok(known);
        }
        let at = self.nodes.len();
        if at >= self.limits.max_nodes {
            return Err(GraphError::TooManyNodes {
                root: self.root_digest(root, &child.digest),
                max: self.limits.max_nodes,
            });
        }
        let document = self.media_types.is_document(media_type);
        if document && depth > self.limits.max_depth {
            return Err(GraphError::TooDeep {
                root: self.root_digest(root, &child.digest),
                digest: child.digest.into_owned(),
                max: self.limits.max_depth,
            });
        }
        let kept = self.keep(child.descriptor);
        let digest = child.digest.into_owned();
        let next = self.by_hash.insert(hash, at).unwrap_or(NONE);
        self.nodes.push(Slot {
            digest,
            size: child.size,
            media_type,
            depth,
            root: match root {
                Root::At(root) => root,
                Root::Itself => at,
            },
            first: 0,
            count: 0,
            kept,
            document: NONE,
            next,
            state: if document { State::Wanted } else { State::Leaf },
        });
        if document {
            self.wanted.push_back(at);
        }
        Ok(at)
    }

    /// The digest of `root` (or `itself`'s, for a root being added), for errors.
    fn root_digest(&self, root: Root, itself: &Digest) -> Digest {
        match root {
            Root::At(root) => self
                .nodes
                .get(root)
                .map_or_else(|| itself.clone(), |n| n.digest.clone()),
            Root::Itself => itself.clone(),
        }
    }

    /// Keeps a whole descriptor for a node; its index, or [`NONE`].
    fn keep(&mut self, descriptor: Option<&Descriptor>) -> usize {
        match descriptor {
            Some(d) => {
                self.kept.push(d.clone());
                self.kept.len() - 1
            }
            None => NONE,
        }
    }

    /// A blob reached before as a leaf (a config, say) and now by a descriptor that claims
    /// it is a manifest or index: it is wanted and read as that document, so a claim is never
    /// taken on trust because the digest was seen under another media type.
    fn promote(
        &mut self,
        at: usize,
        claim: &Named<'_>,
        media_type: usize,
        depth: usize,
        root_digest: Digest,
    ) -> Result<(), GraphError> {
        if self.nodes[at].state != State::Leaf || !self.media_types.is_document(media_type) {
            return Ok(());
        }
        if depth > self.limits.max_depth {
            return Err(GraphError::TooDeep {
                root: root_digest,
                digest: self.nodes[at].digest.clone(),
                max: self.limits.max_depth,
            });
        }
        let kept = self.keep(claim.descriptor);
        let node = &mut self.nodes[at];
        node.media_type = media_type;
        node.size = claim.size;
        node.kept = kept;
        node.depth = depth;
        node.state = State::Wanted;
        self.wanted.push_back(at);
        Ok(())
    }

    /// The descriptor of the node at `at`: the one it was reached by, or one of its media
    /// type, digest and size.
    fn descriptor_at(&self, at: usize) -> Option<Descriptor> {
        let node = self.nodes.get(at)?;
        match self.kept.get(node.kept) {
            Some(d) => Some(d.clone()),
            None => descriptor::new(
                self.media_types.name(node.media_type),
                &node.digest,
                node.size,
            )
            .ok(),
        }
    }

    /// The next document whose bytes the walk wants (breadth first), or `None` when it has
    /// read everything it reached.
    pub fn next_wanted(&mut self) -> Option<Descriptor> {
        while let Some(at) = self.wanted.pop_front() {
            if let Some(d) = self.descriptor_at(at) {
                return Some(d);
            }
        }
        None
    }

    /// Every document wanted now (one level, roughly), to fetch concurrently; the
    /// documents they name are wanted next.
    pub fn take_wanted(&mut self) -> Vec<Descriptor> {
        let wanted: Vec<usize> = self.wanted.drain(..).collect();
        wanted
            .into_iter()
            .filter_map(|at| self.descriptor_at(at))
            .collect()
    }

    /// [`Walker::take_wanted`], each document with its digest.
    pub fn take_wanted_with_digests(&mut self) -> Vec<(Descriptor, Digest)> {
        let wanted: Vec<usize> = self.wanted.drain(..).collect();
        wanted
            .into_iter()
            .filter_map(|at| {
                let d = self.descriptor_at(at)?;
                Some((d, self.nodes.get(at)?.digest.clone()))
            })
            .collect()
    }

    /// [`Walker::take_wanted`] as the walk's own nodes (digest, size, media type), for
    /// callers that need no descriptor to read a document.
    pub fn take_wanted_nodes(&mut self) -> Vec<WalkNode<'_>> {
        let wanted: Vec<usize> = self.wanted.drain(..).collect();
        let walker: &Walker = self;
        wanted
            .into_iter()
            .filter_map(|at| {
                Some(WalkNode {
                    walker,
                    slot: walker.nodes.get(at)?,
                })
            })
            .collect()
    }

    /// The node of a wanted document `digest`.
    fn wanted_at(&self, digest: &Digest) -> Result<usize, GraphError> {
        match self.find(self.hash(digest), digest) {
            Some(at) if self.nodes[at].state == State::Wanted => Ok(at),
            _ => Err(GraphError::NotWanted {
                digest: digest.clone(),
            }),
        }
    }

    /// Takes the bytes of a wanted document (read and verified by the caller), parses them
    /// with [`Document::parse_with_limit`] and adds the blobs it names.
    pub fn visit(
        &mut self,
        descriptor: &Descriptor,
        bytes: Bytes,
    ) -> Result<&Document, GraphError> {
        let digest =
            descriptor::digest_of(descriptor).map_err(|e| GraphError::Descriptor(Box::new(e)))?;
        let at = self.wanted_at(&digest)?;
        let media_type = self.media_types.name(self.nodes[at].media_type);
        let document = Document::parse_with_limit(media_type, bytes, self.limits.max_document_size)
            .map_err(|source| GraphError::Document {
                digest: digest.clone(),
                source: Box::new(source),
            })?;
        self.visit_document(at, &document)?;
        let kept = self.documents.len();
        self.documents.push(document);
        self.nodes[at].document = kept;
        Ok(&self.documents[kept])
    }

    /// [`Walker::visit`] for a document the caller has parsed itself, from verified bytes,
    /// with [`Document::parse_with_limit`] under the descriptor's media type (on its own
    /// threads, say): adds the blobs it names. The walk keeps no copy of it (the node's
    /// [`Node::document`] stays `None`), for callers that follow documents only once. A
    /// document larger than [`Limits::max_document_size`] is refused as [`Walker::visit`]
    /// refuses it.
    pub fn visit_parsed(
        &mut self,
        descriptor: &Descriptor,
        document: &Document,
    ) -> Result<(), GraphError> {
        let digest =
            descriptor::digest_of(descriptor).map_err(|e| GraphError::Descriptor(Box::new(e)))?;
        let at = self.wanted_at(&digest)?;
        if let Some(bytes) = document.bytes()
            && bytes.len() as u64 > self.limits.max_document_size
        {
            // Parsing again under this walk's limit refuses it with the parser's own kind.
            let media_type = self.media_types.name(self.nodes[at].media_type);
            let refused = Document::parse_with_limit(
                media_type,
                bytes.clone(),
                self.limits.max_document_size,
            )
            .err();
            if let Some(source) = refused {
                return Err(GraphError::Document {
                    digest,
                    source: Box::new(source),
                });
            }
        }
        self.visit_document(at, document)
    }

    /// Adds the blobs `document` (the node at `at`) names.
    fn visit_document(&mut self, at: usize, document: &Document) -> Result<(), GraphError> {
        let named: Vec<&Descriptor> = match document {
            Document::Manifest { manifest, .. } => std::iter::once(manifest.config())
                .chain(manifest.layers())
                .collect(),
            Document::Index { index, .. } => index.manifests().iter().collect(),
            Document::Opaque => Vec::new(),
        };
        // The children borrowed, not cloned (`Document::children` clones): a descriptor is
        // cloned once, into the node of a blob reached for the first time.
        self.add_children(
            at,
            named.len(),
            named.into_iter().map(|child| {
                let digest = descriptor::digest_of(child)
                    .map_err(|e| GraphError::Descriptor(Box::new(e)))?;
                Ok(Named::whole(child, digest))
            }),
        )
    }

    /// [`Walker::visit_parsed`] given only what the document `digest` names, for callers
    /// that parse documents on their own threads and free them there (a layout's fsck):
    /// `children` are its config and layers, or its manifests, in its order, each as a
    /// [`Blob`] (the digest parsed by the caller). The walk keeps no descriptor for the
    /// blobs it reaches this way: a [`Graph`] built from it ([`Walker::finish`]) gives them
    /// descriptors of their media type, digest and size only.
    ///
    /// The caller read the document's bytes under its descriptor (digest and size checked)
    /// and parsed them with [`Document::parse_with_limit`] under this walk's
    /// [`Limits::max_document_size`] ([`Walker::limits`]): the walk has no bytes to check
    /// here. The other limits, errors and states are those of [`Walker::visit`]: a document
    /// not wanted is [`GraphError::NotWanted`], and on a limit the document stays wanted
    /// (the caller may [`Walker::skip`] it).
    pub fn visit_children<'a, I>(&mut self, digest: &Digest, children: I) -> Result<(), GraphError>
    where
        I: IntoIterator<Item = Blob<'a>>,
    {
        let at = self.wanted_at(digest)?;
        let children = children.into_iter();
        self.add_children(
            at,
            children.size_hint().0,
            children.map(|child| Ok(Named::blob(child))),
        )
    }

    /// The limits of this walk.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Adds the (about) `count` blobs a document (the node at `at`) names and marks it
    /// visited. On an error (a limit, an invalid child descriptor) the node stays wanted:
    /// the caller may [`Walker::skip`] it.
    fn add_children<'d>(
        &mut self,
        at: usize,
        count: usize,
        named: impl Iterator<Item = Result<Named<'d>, GraphError>>,
    ) -> Result<(), GraphError> {
        let (depth, root) = (self.nodes[at].depth, self.nodes[at].root);
        let first = self.edges.len();
        self.edges.reserve(count);
        for child in named {
            let child_at = child.and_then(|child| self.add(child, depth + 1, Root::At(root)));
            match child_at {
                Ok(child_at) => self.edges.push(child_at),
                Err(e) => {
                    self.edges.truncate(first);
                    return Err(e);
                }
            }
        }
        let node = &mut self.nodes[at];
        node.first = first;
        node.count = self.edges.len() - first;
        node.state = State::Visited;
        Ok(())
    }

    /// Gives up on a wanted document (one that is missing, where the caller allows that): it
    /// stays in the graph as a leaf with no document.
    pub fn skip(&mut self, descriptor: &Descriptor) -> Result<(), GraphError> {
        let digest =
            descriptor::digest_of(descriptor).map_err(|e| GraphError::Descriptor(Box::new(e)))?;
        self.skip_digest(&digest)
    }

    /// [`Walker::skip`] by the document's digest.
    pub fn skip_digest(&mut self, digest: &Digest) -> Result<(), GraphError> {
        let at = self.wanted_at(digest)?;
        self.nodes[at].state = State::Skipped;
        Ok(())
    }

    /// Whether the walk has reached `digest`.
    pub fn contains(&self, digest: &Digest) -> bool {
        self.find(self.hash(digest), digest).is_some()
    }

    /// The keyed hash of `digest`.
    fn hash(&self, digest: &Digest) -> u64 {
        #[cfg(test)]
        if self.same_hash {
            return 0;
        }
        self.hasher.hash_one(digest)
    }

    /// The node of `digest`, whose keyed hash is `hash`.
    fn find(&self, hash: u64, digest: &Digest) -> Option<usize> {
        let mut at = *self.by_hash.get(&hash)?;
        loop {
            let node = self.nodes.get(at)?;
            if node.digest == *digest {
                return Some(at);
            }
            at = node.next;
        }
    }

    /// How many distinct blobs the walk has reached.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the walk has reached nothing yet.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The walk's nodes so far, in the order they were reached.
    pub fn nodes(&self) -> impl ExactSizeIterator<Item = WalkNode<'_>> + '_ {
        self.nodes
            .iter()
            .map(|slot| WalkNode { walker: self, slot })
    }

    /// Ends the walk: every wanted document must have been visited or skipped; refuses
    /// cycles and computes each node's height.
    pub fn finish(self) -> Result<Graph, GraphError> {
        if let Some(node) = self.nodes.iter().find(|n| n.state == State::Wanted) {
            return Err(GraphError::NotVisited {
                digest: node.digest.clone(),
            });
        }
        let heights = heights(&self.nodes, &self.edges)?;
        let mut kept: Vec<Option<Descriptor>> = self.kept.into_iter().map(Some).collect();
        let mut documents: Vec<Option<Document>> = self.documents.into_iter().map(Some).collect();
        let mut nodes = Vec::with_capacity(self.nodes.len());
        for (slot, height) in self.nodes.into_iter().zip(heights) {
            let descriptor = match kept.get_mut(slot.kept).and_then(Option::take) {
                Some(d) => d,
                None => descriptor::new(
                    self.media_types.name(slot.media_type),
                    &slot.digest,
                    slot.size,
                )
                .map_err(|e| GraphError::Descriptor(Box::new(e)))?,
            };
            let children = self
                .edges
                .get(slot.first..slot.first + slot.count)
                .map(<[usize]>::to_vec)
                .unwrap_or_default();
            nodes.push(Node {
                descriptor,
                digest: slot.digest,
                depth: slot.depth,
                height,
                document: documents.get_mut(slot.document).and_then(Option::take),
                children,
            });
        }
        let by_digest = nodes
            .iter()
            .enumerate()
            .map(|(at, n)| (n.digest.clone(), at))
            .collect();
        Ok(Graph {
            nodes,
            by_digest,
            roots: self.roots,
        })
    }
}

/// A hasher for keys that are hashes already ([`Walker::by_hash`]): it passes them through.
#[derive(Clone, Copy, Debug, Default)]
struct Hashed(u64);

impl Hasher for Hashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Not used for `u64` keys; folds anything else in.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// The root of a node being added: the node itself, or the root at this index.
#[derive(Clone, Copy)]
enum Root {
    Itself,
    At(usize),
}

/// Heights by an iterative depth-first search; a child still on the stack is a cycle.
fn heights(nodes: &[Slot], edges: &[usize]) -> Result<Vec<usize>, GraphError> {
    const WHITE: u8 = 0;
    const GREY: u8 = 1;
    const BLACK: u8 = 2;
    let children = |at: usize| -> &[usize] {
        let n = &nodes[at];
        edges.get(n.first..n.first + n.count).unwrap_or_default()
    };
    let mut height = vec![0usize; nodes.len()];
    let mut colour = vec![WHITE; nodes.len()];
    for start in 0..nodes.len() {
        if colour[start] != WHITE {
            continue;
        }
        // (node, index of the next child to look at)
        let mut stack = vec![(start, 0usize)];
        colour[start] = GREY;
        while let Some(&mut (at, ref mut next)) = stack.last_mut() {
            if let Some(&child) = children(at).get(*next) {
                *next += 1;
                match colour[child] {
                    WHITE => {
                        colour[child] = GREY;
                        stack.push((child, 0));
                    }
                    GREY => {
                        return Err(GraphError::Cycle {
                            digest: nodes[child].digest.clone(),
                        });
                    }
                    _ => {}
                }
                continue;
            }
            height[at] = children(at)
                .iter()
                .map(|&c| height[c] + 1)
                .max()
                .unwrap_or(0);
            colour[at] = BLACK;
            stack.pop();
        }
    }
    Ok(height)
}

/// A finished walk: every blob reached from the roots, once.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    nodes: Vec<Node>,
    by_digest: HashMap<Digest, usize>,
    roots: Vec<usize>,
}

impl Graph {
    /// Every node, in the order the walk reached them (breadth first).
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The node of `digest`.
    pub fn get(&self, digest: &Digest) -> Option<&Node> {
        self.by_digest.get(digest).map(|&at| &self.nodes[at])
    }

    /// The roots, in the order they were added (roots reached earlier from another root are
    /// not repeated).
    pub fn roots(&self) -> impl Iterator<Item = &Node> {
        self.roots.iter().map(|&at| &self.nodes[at])
    }

    /// The nodes a document names (config and layers, or manifests), in its order.
    pub fn children<'a>(&'a self, node: &'a Node) -> impl Iterator<Item = &'a Node> {
        node.children.iter().map(|&at| &self.nodes[at])
    }

    /// How many distinct blobs the walk reached.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the walk reached nothing.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The sum of every node's declared size, each blob counted once.
    pub fn total_size(&self) -> u64 {
        self.nodes.iter().map(Node::size).sum()
    }

    /// The nodes by height: level 0 holds the leaves (and skipped documents), each later
    /// level only documents whose children are all in earlier levels; within a level, in
    /// digest order.
    pub fn levels(&self) -> Vec<Vec<&Node>> {
        let top = self.nodes.iter().map(|n| n.height).max();
        let mut levels: Vec<Vec<&Node>> = match top {
            Some(top) => (0..=top).map(|_| Vec::new()).collect(),
            None => Vec::new(),
        };
        for node in &self.nodes {
            if let Some(level) = levels.get_mut(node.height) {
                level.push(node);
            }
        }
        for level in &mut levels {
            level.sort_by(|a, b| a.digest.as_str().cmp(b.digest.as_str()));
        }
        levels
    }

    /// Every node, children before the documents that name them ([`Graph::levels`] in
    /// order).
    pub fn children_first(&self) -> impl Iterator<Item = &Node> {
        self.levels().into_iter().flatten()
    }
}

/// Walks the graph under `roots`, fetching each wanted document's bytes with `fetch` (which
/// must verify them), one at a time; see [`Walker`] for concurrent fetching.
pub async fn walk<E, F, Fut>(
    roots: &[Descriptor],
    limits: &Limits,
    mut fetch: F,
) -> Result<Graph, E>
where
    F: FnMut(Descriptor) -> Fut,
    Fut: Future<Output = Result<Bytes, E>>,
    E: From<GraphError>,
{
    let mut walker = Walker::new(*limits);
    for root in roots {
        walker.add_root(root)?;
    }
    while let Some(wanted) = walker.next_wanted() {
        let bytes = fetch(wanted.clone()).await?;
        walker.visit(&wanted, bytes)?;
    }
    Ok(walker.finish()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media_type::{IMAGE_LAYER_GZIP, IMAGE_MANIFEST};

    fn leaf(n: u8) -> Descriptor {
        let digest = Digest::sha256(&[n]);
        descriptor::new(IMAGE_LAYER_GZIP, &digest, 1).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A document's bytes and its descriptor.
    fn document(media_type: &str, value: &serde_json::Value) -> (Descriptor, Bytes) {
        let bytes = serde_json::to_vec(value).unwrap_or_else(|e| panic!("{e}"));
        let d = descriptor::new(media_type, &Digest::sha256(&bytes), bytes.len() as u64)
            .unwrap_or_else(|e| panic!("{e}"));
        (d, bytes.into())
    }

    /// What a caller of `visit_children` hands over for `bytes`.
    fn children_of(d: &Descriptor, bytes: &Bytes) -> Vec<(Descriptor, Digest)> {
        let doc = Document::parse(d, bytes.clone()).unwrap_or_else(|e| panic!("{e}"));
        doc.children()
            .into_iter()
            .map(|c| {
                let digest = descriptor::digest_of(&c).unwrap_or_else(|e| panic!("{e}"));
                (c, digest)
            })
            .collect()
    }

    /// The children as the walk takes them from `visit_children`.
    fn blobs(children: &[(Descriptor, Digest)]) -> Vec<Blob<'_>> {
        children
            .iter()
            .map(|(d, digest)| Blob::new(digest, d.size(), d.media_type().as_ref()))
            .collect()
    }

    #[test]
    fn children_alone_walk_as_the_documents_do_under_the_same_limits() {
        use crate::media_type::{IMAGE_CONFIG, IMAGE_INDEX};
        let config = descriptor::new(IMAGE_CONFIG, &Digest::sha256(b"{}"), 2)
            .unwrap_or_else(|e| panic!("{e}"));
        let manifest = |layers: &[Descriptor]| {
            document(
                IMAGE_MANIFEST,
                &serde_json::json!({"schemaVersion": 2, "mediaType": IMAGE_MANIFEST,
                    "config": config, "layers": layers}),
            )
        };
        let (a, a_bytes) = manifest(&[leaf(1), leaf(2)]);
        let (b, b_bytes) = manifest(&[leaf(2), leaf(3)]);
        let (root, root_bytes) = document(
            IMAGE_INDEX,
            &serde_json::json!({"schemaVersion": 2, "manifests": [a, b]}),
        );
        let bytes = |d: &Descriptor| match d {
            d if *d == root => root_bytes.clone(),
            d if *d == a => a_bytes.clone(),
            _ => b_bytes.clone(),
        };

        let mut walker = Walker::new(Limits::new());
        walker.add_root(&root).unwrap_or_else(|e| panic!("{e}"));
        // Only what the walk asked for.
        assert_eq!(
            walker.visit_children(&Digest::sha256(&a_bytes), blobs(&children_of(&a, &a_bytes))),
            Err(GraphError::NotWanted {
                digest: Digest::sha256(&a_bytes)
            })
        );
        let mut read = Vec::new();
        loop {
            let wanted = walker.take_wanted_with_digests();
            if wanted.is_empty() {
                break;
            }
            for (d, digest) in wanted {
                assert_eq!(descriptor::digest_of(&d), Ok(digest.clone()));
                let children = children_of(&d, &bytes(&d));
                walker
                    .visit_children(&digest, blobs(&children))
                    .unwrap_or_else(|e| panic!("{e}"));
                read.push(d);
            }
        }
        assert_eq!(read, [root.clone(), a.clone(), b.clone()]);
        let graph = walker.finish().unwrap_or_else(|e| panic!("{e}"));
        // The same graph as a walk that reads the documents itself.
        let mut full = Walker::new(Limits::new());
        full.add_root(&root).unwrap_or_else(|e| panic!("{e}"));
        while let Some(d) = full.next_wanted() {
            full.visit(&d, bytes(&d)).unwrap_or_else(|e| panic!("{e}"));
        }
        let full = full.finish().unwrap_or_else(|e| panic!("{e}"));
        let shape = |g: &Graph| -> Vec<(Digest, Descriptor, usize, usize, Vec<Digest>)> {
            g.nodes()
                .iter()
                .map(|n| {
                    let children = g.children(n).map(|c| c.digest.clone()).collect();
                    (
                        n.digest.clone(),
                        n.descriptor.clone(),
                        n.depth,
                        n.height,
                        children,
                    )
                })
                .collect()
        };
        assert_eq!(shape(&graph), shape(&full));
        assert_eq!(graph.len(), 7);
        assert!(graph.nodes().iter().all(|n| n.document.is_none()));

        // The limits: nodes (the document stays wanted and may be skipped) and depth.
        let mut walker = Walker::new(Limits::new().with_max_nodes(3));
        walker.add_root(&a).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(walker.take_wanted(), std::slice::from_ref(&a));
        let a_digest = Digest::sha256(&a_bytes);
        assert!(matches!(
            walker.visit_children(&a_digest, blobs(&children_of(&a, &a_bytes))),
            Err(GraphError::TooManyNodes { max: 3, .. })
        ));
        walker.skip(&a).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(walker.len(), 3);
        assert!(walker.finish().is_ok());
        let mut walker = Walker::new(Limits::new().with_max_depth(0));
        let root_digest = Digest::sha256(&root_bytes);
        walker
            .add_root_with_digest(&root, root_digest.clone())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            walker.take_wanted_with_digests(),
            [(root.clone(), root_digest)]
        );
        assert!(matches!(
            walker.visit_children(
                &Digest::sha256(&root_bytes),
                blobs(&children_of(&root, &root_bytes))
            ),
            Err(GraphError::TooDeep { max: 0, .. })
        ));
        assert_eq!(walker.limits().max_depth, 0);
    }

    #[test]
    fn digests_that_hash_alike_are_told_apart() {
        use crate::media_type::IMAGE_CONFIG;
        let config = descriptor::new(IMAGE_CONFIG, &Digest::sha256(b"{}"), 2)
            .unwrap_or_else(|e| panic!("{e}"));
        let (manifest, bytes) = document(
            IMAGE_MANIFEST,
            &serde_json::json!({"schemaVersion": 2, "mediaType": IMAGE_MANIFEST,
                "config": config, "layers": [leaf(1), leaf(2), leaf(1)]}),
        );
        let walk = |same_hash: bool| {
            let mut walker = Walker::new(Limits::new());
            walker.same_hash = same_hash;
            for n in [3, 4, 3] {
                walker.add_root(&leaf(n)).unwrap_or_else(|e| panic!("{e}"));
            }
            walker.add_root(&manifest).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(walker.take_wanted(), std::slice::from_ref(&manifest));
            walker
                .visit(&manifest, bytes.clone())
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(walker.contains(&Digest::sha256(&[1])));
            assert!(walker.contains(&Digest::sha256(&[4])));
            assert!(!walker.contains(&Digest::sha256(&[5])));
            assert_eq!(
                walker.skip_digest(&Digest::sha256(&[1])),
                Err(GraphError::NotWanted {
                    digest: Digest::sha256(&[1])
                })
            );
            let graph = walker.finish().unwrap_or_else(|e| panic!("{e}"));
            let shape: Vec<(Digest, usize, Vec<Digest>)> = graph
                .nodes()
                .iter()
                .map(|n| {
                    let children = graph.children(n).map(|c| c.digest.clone()).collect();
                    (n.digest.clone(), n.height, children)
                })
                .collect();
            shape
        };
        let chained = walk(true);
        // 3, 4, the manifest, its config and two distinct layers: each blob once.
        assert_eq!(chained.len(), 6);
        assert_eq!(chained, walk(false));
        assert_eq!(chained[2].2.len(), 4);
        assert_eq!(chained[2].2[1], chained[2].2[3]);
    }

    #[test]
    fn reserve_makes_room_within_the_node_limit_only() {
        let mut walker = Walker::new(Limits::new().with_max_nodes(3));
        walker.reserve(usize::MAX);
        assert!(walker.nodes.capacity() >= 3);
        for n in 0..3 {
            walker.add_root(&leaf(n)).unwrap_or_else(|e| panic!("{e}"));
        }
        // Room made ahead changes nothing about the limit.
        walker.reserve(10);
        assert!(matches!(
            walker.add_root(&leaf(3)),
            Err(GraphError::TooManyNodes { max: 3, .. })
        ));
        assert_eq!(walker.len(), 3);
        // A root reached again is the same node, and a document claim promotes a leaf.
        walker.add_root(&leaf(0)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(walker.len(), 3);
        let as_manifest = descriptor::new(IMAGE_MANIFEST, &Digest::sha256(&[0]), 1)
            .unwrap_or_else(|e| panic!("{e}"));
        walker
            .add_root(&as_manifest)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(walker.take_wanted(), [as_manifest]);
    }
}
