//! The walk of [`Layout::fsck`]: documents from `index.json` down, breadth first, the
//! blobs they reach, and what checking each found.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use ocikit_digest::oci_spec::image::{Descriptor, MediaType};
use ocikit_digest::{Digest, descriptor, json, media_type};
use serde_json::Value;

use super::pool::{Context, DocumentDone, Pool};
use super::read::{Checked, Mode, WholeRead, worker_failed_error};
use super::{
    FsckOptions, FsckReport, MAX_CONFIG_SIZE, Problem, ProblemKind, error_chain, read_problem,
    store_problem,
};
use crate::document::{self, Document};
use crate::progress::{Event, Operation, Progress};
use crate::{Index, Layout, Result};
use ocikit_digest::graph::{self, Blob, GraphError, Walker};

/// A blob to hash, with every way it was reached.
#[derive(Debug)]
pub(super) struct BlobCheck {
    pub(super) digest: Digest,
    pub(super) media_type: MediaType,
    /// `(declared size, path)` of its first reach, the one reported.
    pub(super) first: (u64, Path),
    /// `(declared size, path)` of each further reach (most blobs have none: no allocation).
    pub(super) more: Vec<(u64, Path)>,
    /// `(diffID, path)` the configs expect.
    pub(super) diff_ids: Vec<(Digest, Path)>,
}

/// How a blob was reached, as `index.json manifests[0] (v1) > layers[1]`: the path of the
/// document that names it (shared by all it names) and one step, made text only when a
/// problem is reported (most never are).
#[derive(Clone, Debug, Default)]
pub(super) struct Path {
    parent: Arc<str>,
    step: Step,
}

#[derive(Clone, Copy, Debug, Default)]
enum Step {
    /// `parent` is the whole path.
    #[default]
    Whole,
    Config,
    Layer(usize),
    Manifest(usize),
    Subject,
}

impl Path {
    /// The path `text`.
    pub(super) fn new(text: String) -> Path {
        Path {
            parent: Arc::from(text),
            step: Step::Whole,
        }
    }

    /// This path as the parent of what its document names: shared, made text once.
    fn base(&self) -> Arc<str> {
        match self.step {
            Step::Whole => self.parent.clone(),
            _ => Arc::from(self.to_string()),
        }
    }

    fn child(base: &Arc<str>, step: Step) -> Path {
        Path {
            parent: base.clone(),
            step,
        }
    }

    /// The path of the `subject` of the document reached by this path.
    pub(super) fn subject(&self) -> Path {
        Path::child(&self.base(), Step::Subject)
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.parent)?;
        match self.step {
            Step::Whole => Ok(()),
            Step::Config => f.write_str(" > config"),
            Step::Layer(i) => write!(f, " > layers[{i}]"),
            Step::Manifest(i) => write!(f, " > manifests[{i}]"),
            Step::Subject => f.write_str(" > subject"),
        }
    }
}

/// A blob reached by the walk, hashed once.
#[derive(Debug)]
pub(super) struct Pending {
    /// Its check, until it is handed to the workers (`None` from then on).
    pub(super) check: Option<BlobCheck>,
    /// `(declared size, path)` of each reach after it was handed to the workers, compared
    /// with the stored size once it was hashed (most blobs have none: no allocation).
    pub(super) later: Vec<(u64, Path)>,
    /// Its digest, kept once it has later reaches (for their problems).
    pub(super) digest: Option<Digest>,
    /// Its digest was read as a document too: checked there, not here.
    pub(super) superseded: bool,
}

#[derive(Default)]
pub(super) struct Walk {
    pub(super) problems: Vec<Problem>,
    pub(super) blobs: u64,
    pub(super) bytes: u64,
    /// Blobs read while walking, with their stored size (`None` when unusable).
    pub(super) read: HashMap<Digest, Option<u64>>,
    /// Blobs left for hashing, in the order first reached.
    pub(super) pending: Vec<Pending>,
    pub(super) by_digest: HashMap<Digest, usize>,
    /// Hand each blob to the workers as soon as it is first reached (through `outbox`),
    /// rather than once the walk is done: set when no diffID is checked (a blob's later
    /// reaches then need nothing of its hash but its stored size).
    pub(super) immediate: bool,
    /// Blobs first reached and not handed to the workers yet, by index in `pending`.
    pub(super) outbox: Vec<(usize, BlobCheck)>,
    /// Where `Skipped` events of later reaches go.
    pub(super) progress: Progress,
}

impl Walk {
    pub(super) fn problem(&mut self, digest: &Digest, path: &Path, kind: ProblemKind) {
        self.problems.push(Problem {
            digest: digest.clone(),
            path: path.to_string(),
            kind,
        });
    }

    pub(super) fn blob(
        &mut self,
        d: &Descriptor,
        digest: Digest,
        path: Path,
        diff_id: Option<Digest>,
    ) {
        self.add(digest, d.media_type().clone(), d.size(), path, diff_id);
    }

    pub(super) fn add(
        &mut self,
        digest: Digest,
        media_type: MediaType,
        size: u64,
        path: Path,
        diff_id: Option<Digest>,
    ) {
        match self.by_digest.entry(digest) {
            Entry::Occupied(known) => {
                let Some(pending) = self.pending.get_mut(*known.get()) else {
                    return;
                };
                match &mut pending.check {
                    Some(check) => {
                        if let Some(diff_id) = diff_id {
                            check.diff_ids.push((diff_id, path.clone()));
                        }
                        check.more.push((size, path));
                    }
                    None => {
                        // Being hashed: this reach is compared with the stored size after.
                        self.progress.emit_with(|| Event::Skipped {
                            operation: Operation::Fsck,
                            digest: known.key().clone(),
                            size,
                        });
                        pending.later.push((size, path));
                        if pending.digest.is_none() {
                            pending.digest = Some(known.key().clone());
                        }
                    }
                }
            }
            Entry::Vacant(vacant) => {
                let index = self.pending.len();
                // A digest read as a document already is checked there (and left out).
                let hand =
                    self.immediate && diff_id.is_none() && !self.read.contains_key(vacant.key());
                let diff_ids = match diff_id {
                    Some(diff_id) => vec![(diff_id, path.clone())],
                    None => Vec::new(),
                };
                let check = BlobCheck {
                    digest: vacant.key().clone(),
                    media_type,
                    first: (size, path),
                    more: Vec::new(),
                    diff_ids,
                };
                vacant.insert(index);
                let check = if hand {
                    self.outbox.push((index, check));
                    None
                } else {
                    Some(check)
                };
                self.pending.push(Pending {
                    check,
                    later: Vec::new(),
                    digest: None,
                    superseded: false,
                });
            }
        }
    }
}

/// A layer of a manifest, as the walk needs it.
#[derive(Debug)]
pub(super) struct Layer {
    /// Its position in `layers`.
    pub(super) index: usize,
    pub(super) digest: Digest,
    pub(super) media_type: MediaType,
    pub(super) size: u64,
    pub(super) path: Path,
}

/// What the walk needs of a document that was read and parsed: its references, their
/// digests parsed and their paths built (on the worker that read it, where there is one).
#[derive(Debug)]
pub(super) enum Parsed {
    /// A manifest: its config (with its path) and its layers.
    Manifest {
        subject: Option<Digest>,
        config: Box<Descriptor>,
        /// The config's digest (`None` when invalid).
        config_digest: Option<Digest>,
        config_path: Path,
        layers: Vec<Layer>,
        /// Entries in `layers` (some may be left out of `layers`: invalid digests).
        layer_count: usize,
    },
    /// An index: its manifests, with their digests (`None` when invalid) and paths.
    Index {
        subject: Option<Digest>,
        manifests: Vec<(Descriptor, Option<Digest>, Path)>,
    },
    /// Anything else.
    Opaque,
}

impl Parsed {
    /// Takes apart `doc`, reached by `path`, on the worker that parsed it: what fsck needs
    /// of it, which is also what it names for the walk ([`Parsed::children`]), and the
    /// first descriptor whose digest does not parse, in the document's order (the parser
    /// refuses those: not expected), which refuses the document as the walk would. The
    /// document and its descriptors are freed here.
    pub(super) fn take(doc: Document, path: &Path) -> (Option<GraphError>, Parsed) {
        let base = path.base();
        let subject = doc.subject().and_then(|s| descriptor::digest_of(s).ok());
        let mut bad: Option<descriptor::InvalidDescriptor> = None;
        let parsed = match doc {
            Document::Manifest { manifest, .. } => {
                let config = manifest.config().clone();
                let named = manifest.layers();
                let layer_count = named.len();
                let config_digest = match descriptor::digest_of(&config) {
                    Ok(digest) => Some(digest),
                    Err(e) => {
                        bad = Some(e);
                        None
                    }
                };
                let mut layers = Vec::with_capacity(layer_count);
                for (index, layer) in named.iter().enumerate() {
                    match descriptor::digest_of(layer) {
                        Ok(digest) => layers.push(Layer {
                            index,
                            digest,
                            media_type: layer.media_type().clone(),
                            size: layer.size(),
                            path: Path::child(&base, Step::Layer(index)),
                        }),
                        Err(e) => {
                            bad.get_or_insert(e);
                        }
                    }
                }
                Parsed::Manifest {
                    subject,
                    config: Box::new(config),
                    config_digest,
                    config_path: Path::child(&base, Step::Config),
                    layers,
                    layer_count,
                }
            }
            Document::Index { index, .. } => {
                let named = index.manifests();
                let mut manifests = Vec::with_capacity(named.len());
                for (i, m) in named.iter().enumerate() {
                    let path = Path::child(&base, Step::Manifest(i));
                    let digest = match descriptor::digest_of(m) {
                        Ok(digest) => Some(digest),
                        Err(e) => {
                            bad.get_or_insert(e);
                            None
                        }
                    };
                    manifests.push((m.clone(), digest, path));
                }
                Parsed::Index { subject, manifests }
            }
            _ => Parsed::Opaque,
        };
        (bad.map(|e| GraphError::Descriptor(Box::new(e))), parsed)
    }

    /// What the document names, for the graph walk ([`Walker::visit_children`]): its config
    /// and layers, or its manifests, in its order (those whose digest parses).
    pub(super) fn children(&self) -> Vec<Blob<'_>> {
        match self {
            Parsed::Manifest {
                config,
                config_digest,
                layers,
                ..
            } => config_digest
                .iter()
                .map(|c| Blob::new(c, config.size(), config.media_type().as_ref()))
                .chain(
                    layers
                        .iter()
                        .map(|l| Blob::new(&l.digest, l.size, l.media_type.as_ref())),
                )
                .collect(),
            Parsed::Index { manifests, .. } => manifests
                .iter()
                .filter_map(|(m, digest, _)| {
                    Some(Blob::new(
                        digest.as_ref()?,
                        m.size(),
                        m.media_type().as_ref(),
                    ))
                })
                .collect(),
            Parsed::Opaque => Vec::new(),
        }
    }

    pub(super) fn subject(&self) -> Option<&Digest> {
        match self {
            Parsed::Manifest { subject, .. } | Parsed::Index { subject, .. } => subject.as_ref(),
            Parsed::Opaque => None,
        }
    }
}

/// The diffIDs of an image config, or why they cannot be had.
pub(super) fn diff_ids_of(bytes: &[u8]) -> std::result::Result<Vec<Digest>, String> {
    let value = json::parse_strict(bytes).map_err(|e| format!("malformed JSON: {e}"))?;
    let rootfs = value.get("rootfs").ok_or("rootfs is missing")?;
    if rootfs.get("type").and_then(Value::as_str) != Some("layers") {
        return Err("rootfs.type is not \"layers\"".into());
    }
    let Some(Value::Array(ids)) = rootfs.get("diff_ids") else {
        return Err("rootfs.diff_ids is not an array".into());
    };
    ids.iter()
        .enumerate()
        .map(|(i, id)| {
            id.as_str()
                .and_then(|s| Digest::parse(s).ok())
                .ok_or_else(|| format!("rootfs.diff_ids[{i}] is not a digest"))
        })
        .collect()
}

pub(super) fn is_image_config(media_type: &str) -> bool {
    matches!(
        media_type::essence(media_type),
        media_type::IMAGE_CONFIG | media_type::DOCKER_CONFIG
    )
}

/// Parses the verified `bytes` of the document `wanted` under the walk's document size
/// limit `max_size` (and the layout's), on the thread that read them, and takes it apart
/// ([`Parsed::take`]).
pub(super) fn parse_document(
    wanted: &Wanted,
    bytes: Bytes,
    max_size: u64,
) -> Result<(Option<GraphError>, Parsed)> {
    let limit = max_size.min(crate::MAX_DOCUMENT_SIZE);
    let doc = Document::parse_with_limit(wanted.media_type.as_ref(), bytes, limit)
        .map_err(|e| document::refused(wanted.digest.clone(), &e))?;
    Ok(Parsed::take(doc, &wanted.path))
}

/// A document the walk wants read: its digest, declared size and media type, and the path
/// it is read by.
#[derive(Clone, Debug)]
pub(super) struct Wanted {
    pub(super) digest: Digest,
    pub(super) size: u64,
    pub(super) media_type: MediaType,
    pub(super) path: Path,
}

/// The documents of one level of the walk, with what reading each found (its stored size
/// when it is stored): the descriptor the walk refuses it for, if any, and what fsck needs
/// of it.
pub(super) type DocumentReads = Vec<(Wanted, Option<u64>, Result<(Option<GraphError>, Parsed)>)>;

/// Image configs read for their diffIDs, by digest and declared size.
pub(super) type ConfigReads = HashMap<(Digest, u64), WholeRead>;

pub(super) fn entry_path(i: usize, d: &Descriptor) -> Path {
    Path::new(
        match d
            .annotations()
            .as_ref()
            .and_then(|a| a.get(crate::REF_NAME))
        {
            Some(tag) => format!("index.json manifests[{i}] ({tag})"),
            None => format!("index.json manifests[{i}]"),
        },
    )
}

/// fsck's side of the one graph walk ([`ocikit_digest::graph::Walker`]): the walker,
/// which decides what is read (each document once, within its limits), and the paths by
/// which documents were reached.
struct GraphWalk {
    walker: Walker,
    limits: graph::Limits,
    /// The path of each document's first reach: the one it is read by.
    first: HashMap<Digest, Path>,
    /// Further reaches of documents: `(digest, declared size, path)`, compared with the
    /// stored size once everything was read.
    again: Vec<(Digest, u64, Path)>,
}

impl GraphWalk {
    fn new(limits: graph::Limits) -> GraphWalk {
        GraphWalk {
            walker: Walker::new(limits),
            limits,
            first: HashMap::new(),
            again: Vec::new(),
        }
    }

    /// A blob the walker took in, reached under `media_type` and declared `size` at `path`:
    /// a document is read by its first reach (the walker wants it); a leaf is hashed.
    fn reach(
        &mut self,
        walk: &mut Walk,
        (media_type, size): (&str, u64),
        digest: Digest,
        path: Path,
        progress: &Progress,
    ) {
        if !document::is_document(media_type) {
            walk.add(digest, MediaType::from(media_type), size, path, None);
            return;
        }
        match self.first.entry(digest) {
            Entry::Occupied(first) => {
                let digest = first.key().clone();
                progress.emit_with(|| Event::Skipped {
                    operation: Operation::Fsck,
                    digest: digest.clone(),
                    size,
                });
                self.again.push((digest, size, path));
            }
            Entry::Vacant(first) => {
                first.insert(path);
            }
        }
    }

    /// A child the walk did not take in because its parent's children were one level too
    /// deep: a document there is reported too deep (a leaf is not limited by depth, and is
    /// left out only because the walk stopped at the document before it).
    fn not_taken(&self, walk: &mut Walk, d: &Descriptor, digest: &Digest, path: &Path) {
        if document::is_document(d.media_type().as_ref()) {
            walk.problem(
                digest,
                path,
                ProblemKind::TooDeep {
                    max: self.limits.max_depth,
                },
            );
        }
    }

    /// The path a wanted document is read by (taken: it is asked for once; the entry stays,
    /// so further reaches are still told apart).
    fn first_path(&mut self, digest: &Digest) -> Path {
        match self.first.get_mut(digest) {
            Some(path) => std::mem::take(path),
            None => Path::new(digest.to_string()),
        }
    }

    /// Reports what the walk refused about the document `digest` (or a root) at `path`.
    fn refused(&self, walk: &mut Walk, error: &GraphError, digest: &Digest, path: &Path) {
        let kind = match error {
            // Reported at each document child that was not taken in (see `fsck`), or at
            // the root itself.
            GraphError::TooDeep {
                digest: deep, max, ..
            } if deep == digest => ProblemKind::TooDeep { max: *max },
            GraphError::TooDeep { .. } => return,
            GraphError::TooManyNodes { max, .. } => ProblemKind::TooManyBlobs { max: *max },
            other => ProblemKind::InvalidDocument {
                reason: error_chain(other),
            },
        };
        walk.problem(digest, path, kind);
    }

    /// The documents the walk wants now, with the paths they are read by.
    fn wanted(&mut self) -> Vec<Wanted> {
        let wanted: Vec<(Digest, u64, MediaType)> = self
            .walker
            .take_wanted_nodes()
            .into_iter()
            .map(|n| {
                (
                    n.digest().clone(),
                    n.size(),
                    MediaType::from(n.media_type()),
                )
            })
            .collect();
        wanted
            .into_iter()
            .map(|(digest, size, media_type)| Wanted {
                path: self.first_path(&digest),
                digest,
                size,
                media_type,
            })
            .collect()
    }

    /// Compares every further reach of a document with the size stored (the walk is then
    /// done with, and freed while the blobs are hashed).
    fn check_sizes(&mut self, walk: &mut Walk) {
        for (digest, declared, path) in std::mem::take(&mut self.again) {
            if let Some(Some(actual)) = walk.read.get(&digest)
                && *actual != declared
            {
                let actual = *actual;
                walk.problem(
                    &digest,
                    &path,
                    ProblemKind::SizeMismatch {
                        expected: declared,
                        actual,
                    },
                );
            }
        }
    }
}

/// Roots handed to the walk between two hand-outs of the documents they name, so that the
/// workers start reading before every root is in.
const ROOTS_AT_ONCE: usize = 128;

/// Adds the root `d`, the `i`th entry of `index.json`, to the walk.
fn add_root(walk: &mut Walk, graph: &mut GraphWalk, i: usize, d: &Descriptor, progress: &Progress) {
    let path = entry_path(i, d);
    let Ok(digest) = descriptor::digest_of(d) else {
        return; // every descriptor here was checked by the parsers
    };
    let (media_type, size) = (d.media_type().as_ref(), d.size());
    match graph
        .walker
        .add_root_blob(Blob::new(&digest, size, media_type))
    {
        Ok(()) => graph.reach(walk, (media_type, size), digest, path, progress),
        Err(e) => graph.refused(walk, &e, &digest, &path),
    }
}

/// Makes room for every blob the documents `read` name, at once: the walk's tables and
/// fsck's grow once per batch of documents instead of step by step.
fn reserve<'a>(
    walk: &mut Walk,
    graph: &mut GraphWalk,
    read: impl Iterator<Item = &'a Result<(Option<GraphError>, Parsed)>>,
) {
    let (mut named, mut documents) = (0, 0);
    for outcome in read {
        documents += 1;
        named += match outcome {
            Ok((_, Parsed::Manifest { layer_count, .. })) => 1 + layer_count,
            Ok((_, Parsed::Index { manifests, .. })) => manifests.len(),
            _ => 0,
        };
    }
    graph.walker.reserve(named);
    walk.by_digest.reserve(named);
    walk.pending.reserve(named);
    walk.read.reserve(documents);
}

impl Layout {
    /// Verifies everything reachable from `index.json` (see the [module](crate::fsck)
    /// documentation) and reports every problem found. Fails only when `index.json` itself
    /// cannot be read or parsed.
    pub async fn fsck(&self, options: &FsckOptions) -> Result<FsckReport> {
        let index = self.index().await?;
        let mode = self.mode(options);
        let mut walk = Walk {
            immediate: matches!(mode, Mode::Local { .. }) && !options.diff_ids,
            progress: options.progress.clone(),
            ..Walk::default()
        };
        let mut graph = GraphWalk::new(options.graph);
        // Room for every root, made once.
        let roots = index.manifests().len();
        graph.walker.reserve(roots);
        graph.first.reserve(roots);
        match &mode {
            Mode::Local { workers, files } => {
                let pool = Pool::start(
                    *workers,
                    Context {
                        files: files.clone(),
                        limits: options.limits,
                        progress: options.progress.clone(),
                        max_document_size: options.graph.max_document_size,
                        configs: options.diff_ids,
                    },
                );
                self.walk_local(index, pool, &mut walk, graph, options)
                    .await?;
            }
            Mode::Streamed { concurrency } => {
                for (i, d) in index.manifests().enumerate() {
                    add_root(&mut walk, &mut graph, i, d, &options.progress);
                }
                self.walk_levels(index, &mut walk, &mut graph, options)
                    .await;
                graph.check_sizes(&mut walk);
                self.check_blobs(&mut walk, options, *concurrency, graph)
                    .await;
            }
        }
        let mut problems = walk.problems;
        problems.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(FsckReport {
            problems,
            blobs_checked: walk.blobs,
            bytes_checked: walk.bytes,
        })
    }

    /// The walk on a store with local files: documents and blobs are handed to the
    /// workers as soon as they are reached, documents in chunks, and what the workers read
    /// is followed in the order the documents were handed out (the walk's own breadth-first
    /// order, so that what is reported does not depend on which worker was quicker). Then
    /// the blobs left for the end (those whose diffIDs are checked) are hashed, and what
    /// every hash found is added up.
    ///
    /// A worker that went away without answering for all it was handed (which only a bug
    /// could make it do: each job's work is guarded against panics) fails the fsck rather
    /// than leave part of the layout silently unchecked.
    async fn walk_local(
        &self,
        index: Index,
        mut pool: Pool,
        walk: &mut Walk,
        mut graph: GraphWalk,
        options: &FsckOptions,
    ) -> Result<()> {
        let mut handed = 0;
        for (i, d) in index.manifests().enumerate() {
            add_root(walk, &mut graph, i, d, &options.progress);
            if i % ROOTS_AT_ONCE == ROOTS_AT_ONCE - 1 {
                handed = pool.documents(graph.wanted());
                pool.blobs(walk.outbox.drain(..));
            }
        }
        drop(index);
        // Chunks read ahead of the one followed next.
        let mut arrived: HashMap<usize, Vec<DocumentDone>> = HashMap::new();
        let mut next = 0;
        let no_configs = ConfigReads::new();
        loop {
            handed = handed.max(pool.documents(graph.wanted()));
            if !walk.outbox.is_empty() {
                pool.blobs(walk.outbox.drain(..));
            }
            if next == handed {
                break;
            }
            let chunk = loop {
                if let Some(chunk) = arrived.remove(&next) {
                    break Some(chunk);
                }
                match pool.next_documents().await {
                    Some((at, read)) => {
                        arrived.insert(at, read);
                    }
                    None => break None,
                }
            };
            // (None: every worker is gone, which they are not while there are documents.)
            let Some(chunk) = chunk else {
                return Err(worker_failed_error());
            };
            next += 1;
            reserve(
                walk,
                &mut graph,
                chunk.iter().map(|(_, (_, outcome, _))| outcome),
            );
            for (wanted, (size, outcome, config)) in chunk {
                let configs: ConfigReads;
                let configs = match config {
                    Some((key, read)) => {
                        configs = HashMap::from([(key, read)]);
                        &configs
                    }
                    None => &no_configs,
                };
                self.visit(walk, &mut graph, options, wanted, size, outcome, configs)
                    .await;
            }
        }
        graph.check_sizes(walk);
        // A blob whose digest was read as a document is checked there, not again.
        for digest in walk.read.keys() {
            if let Some(&i) = walk.by_digest.get(digest)
                && let Some(pending) = walk.pending.get_mut(i)
            {
                pending.superseded = true;
            }
        }
        // The blobs left for the end, largest first so that the workers finish together.
        let mut last: Vec<(usize, BlobCheck)> = walk
            .pending
            .iter_mut()
            .enumerate()
            .filter_map(|(i, pending)| {
                let check = pending.check.take()?;
                (!pending.superseded).then_some((i, check))
            })
            .collect();
        last.sort_by_key(|(_, c)| std::cmp::Reverse(c.reaches().map(|(size, _)| *size).max()));
        pool.blobs(last);
        // The walk's maps are not needed any more: freed while the blobs are hashed.
        let done_with = (
            std::mem::take(&mut walk.read),
            std::mem::take(&mut walk.by_digest),
            graph,
        );
        let (hashed, ()) = futures::join!(pool.finish(), async move { drop(done_with) });
        let Some(hashed) = hashed else {
            return Err(worker_failed_error());
        };
        for (index, judged, stored) in hashed {
            let Some(pending) = walk.pending.get(index) else {
                continue;
            };
            if pending.superseded {
                continue;
            }
            if judged.hashed {
                walk.blobs += 1;
            }
            walk.bytes += judged.bytes;
            walk.problems.extend(judged.problems);
            if let (Some(actual), Some(digest)) = (stored, &pending.digest) {
                for (declared, path) in &pending.later {
                    if *declared != actual {
                        walk.problems.push(Problem {
                            digest: digest.clone(),
                            path: path.to_string(),
                            kind: ProblemKind::SizeMismatch {
                                expected: *declared,
                                actual,
                            },
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// The walk on other stores: level by level, each level's documents read `concurrency`
    /// at a time; the blobs are hashed once the walk is done ([`Layout::check_blobs`]).
    async fn walk_levels(
        &self,
        index: Index,
        walk: &mut Walk,
        graph: &mut GraphWalk,
        options: &FsckOptions,
    ) {
        // Freed while the first documents are read, rather than before or after.
        let mut index = Some(index);
        loop {
            let documents = graph.wanted();
            if documents.is_empty() {
                break;
            }
            let done_with = index.take();
            let reading = self.read_documents(documents, options.graph.max_document_size);
            let (results, ()) = futures::join!(reading, async move { drop(done_with) });
            reserve(walk, graph, results.iter().map(|(_, _, outcome)| outcome));
            let configs = if options.diff_ids {
                self.read_configs(&results).await
            } else {
                ConfigReads::new()
            };
            for (wanted, size, outcome) in results {
                self.visit(walk, graph, options, wanted, size, outcome, &configs)
                    .await;
            }
        }
    }

    /// Follows one document the walk read (`size`: its stored size; `outcome`: what reading
    /// and parsing it found): reports what is wrong with it, and hands what it names to the
    /// walk (documents) or to the blobs to hash (leaves). `configs` holds the image configs
    /// read for their diffIDs.
    #[allow(clippy::too_many_arguments)] // private, and every argument is a different thing
    async fn visit(
        &self,
        walk: &mut Walk,
        graph: &mut GraphWalk,
        options: &FsckOptions,
        wanted: Wanted,
        size: Option<u64>,
        outcome: Result<(Option<GraphError>, Parsed)>,
        configs: &ConfigReads,
    ) {
        let Wanted {
            digest,
            size: declared,
            path,
            ..
        } = wanted;
        options.progress.emit_with(|| Event::Started {
            operation: Operation::Fsck,
            digest: digest.clone(),
            size: declared,
        });
        let (bad, doc) = match outcome {
            Ok(read) => read,
            Err(e) => {
                match read_problem(&e) {
                    Some(kind) => walk.problem(&digest, &path, kind),
                    None => {
                        // Verified bytes, but not a valid document.
                        walk.blobs += 1;
                        walk.bytes += declared;
                        walk.problem(
                            &digest,
                            &path,
                            ProblemKind::InvalidDocument {
                                reason: error_chain(&e),
                            },
                        );
                    }
                }
                // Not followed: a leaf of the graph.
                let _ = graph.walker.skip_digest(&digest);
                walk.read.insert(digest, size);
                return;
            }
        };
        walk.blobs += 1;
        walk.bytes += declared;
        walk.read.insert(digest.clone(), size);
        options.progress.emit_with(|| Event::Done {
            operation: Operation::Fsck,
            digest: digest.clone(),
            bytes: declared,
        });
        // The one walk's limits: what it refuses is reported, and what it did not
        // take in is not followed.
        let refused = match bad {
            None => graph.walker.visit_children(&digest, doc.children()).err(),
            Some(e) => Some(e),
        };
        if let Some(e) = &refused {
            graph.refused(walk, e, &digest, &path);
            let _ = graph.walker.skip_digest(&digest);
        }
        let too_deep = matches!(refused, Some(GraphError::TooDeep { .. }));
        // After a visit the walk accepted, it has taken in every child.
        let taken = |walker: &Walker, d: &Digest| refused.is_none() || walker.contains(d);
        if let Some(s) = doc.subject() {
            match self.store().stat(s).await {
                Ok(Some(_)) => {}
                Ok(None) => walk.problem(s, &path.subject(), ProblemKind::DanglingSubject),
                Err(e) => walk.problem(s, &path.subject(), store_problem(&e)),
            }
        }
        match doc {
            Parsed::Manifest {
                config,
                config_digest,
                config_path,
                layers,
                layer_count,
                ..
            } => {
                let expected = match &config_digest {
                    Some(c) if !taken(&graph.walker, c) => {
                        if too_deep {
                            graph.not_taken(walk, &config, c, &config_path);
                        }
                        None
                    }
                    Some(c) if document::is_document(config.media_type().as_ref()) => {
                        graph.reach(
                            walk,
                            (config.media_type().as_ref(), config.size()),
                            c.clone(),
                            config_path,
                            &options.progress,
                        );
                        None
                    }
                    Some(_)
                        if options.diff_ids && is_image_config(config.media_type().as_ref()) =>
                    {
                        config_diff_ids(
                            &config,
                            &config_path,
                            layer_count,
                            configs,
                            walk,
                            &options.progress,
                        )
                    }
                    Some(c) => {
                        walk.blob(&config, c.clone(), config_path, None);
                        None
                    }
                    None => None,
                };
                for layer in layers {
                    let layer_document = document::is_document(layer.media_type.as_ref());
                    if !taken(&graph.walker, &layer.digest) {
                        // Refused by the walk (reported above, or here).
                        if too_deep && layer_document {
                            walk.problem(
                                &layer.digest,
                                &layer.path,
                                ProblemKind::TooDeep {
                                    max: graph.limits.max_depth,
                                },
                            );
                        }
                        continue;
                    }
                    if layer_document {
                        graph.reach(
                            walk,
                            (layer.media_type.as_ref(), layer.size),
                            layer.digest,
                            layer.path,
                            &options.progress,
                        );
                        continue;
                    }
                    let mut diff_id = expected
                        .as_ref()
                        .and_then(|ids| ids.get(layer.index).cloned());
                    if diff_id.is_some()
                        && media_type::layer_compression(layer.media_type.as_ref()).is_none()
                    {
                        // The config names a diffID that cannot be computed: said,
                        // not skipped.
                        walk.problem(
                            &layer.digest,
                            &layer.path,
                            ProblemKind::UndecodableMediaType {
                                media_type: layer.media_type.to_string(),
                            },
                        );
                        diff_id = None;
                    }
                    walk.add(
                        layer.digest,
                        layer.media_type,
                        layer.size,
                        layer.path,
                        diff_id,
                    );
                }
            }
            Parsed::Index { manifests, .. } => {
                for (m, digest, path) in manifests {
                    let Some(digest) = digest else {
                        continue;
                    };
                    if !taken(&graph.walker, &digest) {
                        if too_deep {
                            graph.not_taken(walk, &m, &digest, &path);
                        }
                        continue;
                    }
                    graph.reach(
                        walk,
                        (m.media_type().as_ref(), m.size()),
                        digest,
                        path,
                        &options.progress,
                    );
                }
            }
            Parsed::Opaque => {}
        }
    }

    /// Hashes every pending blob (streamed from the store) and records what is wrong with
    /// each. `graph` (the walk, done with) is freed meanwhile.
    async fn check_blobs(
        &self,
        walk: &mut Walk,
        options: &FsckOptions,
        concurrency: usize,
        graph: GraphWalk,
    ) {
        let pending: Vec<BlobCheck> = std::mem::take(&mut walk.pending)
            .into_iter()
            .filter_map(|pending| pending.check)
            .filter(|c| !walk.read.contains_key(&c.digest))
            .collect();
        // The walk's maps are not needed any more: freed while the blobs are hashed.
        let done_with = (
            std::mem::take(&mut walk.read),
            std::mem::take(&mut walk.by_digest),
            graph,
        );
        let hashing = self.hash_pending(pending, options, concurrency);
        let (results, ()) = futures::join!(hashing, async move { drop(done_with) });
        for judged in results {
            if judged.hashed {
                walk.blobs += 1;
            }
            walk.bytes += judged.bytes;
            walk.problems.extend(judged.problems);
        }
    }
}

/// What checking one blob found: whether it was hashed to the end, the bytes hashed, and
/// what is wrong with it.
#[derive(Debug, Default)]
pub(super) struct Judged {
    pub(super) hashed: bool,
    pub(super) bytes: u64,
    pub(super) problems: Vec<Problem>,
}

impl BlobCheck {
    /// `(declared size, path)` of every reach, the first first.
    pub(super) fn reaches(&self) -> impl Iterator<Item = &(u64, Path)> {
        std::iter::once(&self.first).chain(&self.more)
    }

    /// Judges what hashing this blob found (`checked`, with its stored size when stored),
    /// on the thread that hashed it, which frees it.
    pub(super) fn judge(self, (outcome, size): Checked) -> Judged {
        let mut judged = Judged::default();
        let BlobCheck {
            digest,
            first,
            more,
            diff_ids,
            ..
        } = self;
        let first_path = &first.1;
        let mut problem = |path: &Path, kind: ProblemKind| {
            judged.problems.push(Problem {
                digest: digest.clone(),
                path: path.to_string(),
                kind,
            });
        };
        if let Some(actual) = size {
            for (declared, path) in std::iter::once(&first).chain(&more) {
                if *declared != actual {
                    problem(
                        path,
                        ProblemKind::SizeMismatch {
                            expected: *declared,
                            actual,
                        },
                    );
                }
            }
        }
        let hashed = match outcome {
            Ok(hashed) => hashed,
            Err(kind) => {
                problem(first_path, kind);
                return judged;
            }
        };
        if hashed.digest != digest {
            problem(
                first_path,
                ProblemKind::DigestMismatch {
                    actual: hashed.digest,
                },
            );
        }
        match hashed.diff_id {
            Some(Ok(actual)) => {
                for (expected, path) in &diff_ids {
                    if *expected != actual {
                        problem(
                            path,
                            ProblemKind::DiffIdMismatch {
                                expected: expected.clone(),
                                actual: actual.clone(),
                            },
                        );
                    }
                }
            }
            Some(Err(reason)) => problem(first_path, ProblemKind::Undecodable { reason }),
            None => {}
        }
        judged.hashed = true;
        judged.bytes = hashed.bytes;
        judged
    }
}

/// Checks an image config read for its diffIDs (`configs` holds what reading it found);
/// returns its diffIDs when they match the layer count (problems go to `walk`).
pub(super) fn config_diff_ids(
    config: &Descriptor,
    path: &Path,
    layers: usize,
    configs: &ConfigReads,
    walk: &mut Walk,
    progress: &Progress,
) -> Option<Vec<Digest>> {
    let digest = descriptor::digest_of(config).ok()?;
    if let Some(stored) = walk.read.get(&digest) {
        if let Some(actual) = *stored
            && actual != config.size()
        {
            walk.problem(
                &digest,
                path,
                ProblemKind::SizeMismatch {
                    expected: config.size(),
                    actual,
                },
            );
        }
    } else if config.size() > MAX_CONFIG_SIZE {
        // Too large to read into memory: hash it like a layer, skip the diffIDs.
        walk.blob(config, digest, path.clone(), None);
        return None;
    }
    let Some((stored, read)) = configs.get(&(digest.clone(), config.size())) else {
        // Not read (cannot happen: every image config of the level is): hash it instead.
        walk.blob(config, digest, path.clone(), None);
        return None;
    };
    let stored = *stored;
    let first = !walk.read.contains_key(&digest);
    let bytes = match read {
        Ok(bytes) => bytes,
        Err(e) if read_problem(e).is_some() => {
            if first && let Some(kind) = read_problem(e) {
                walk.problem(&digest, path, kind);
                walk.read.insert(digest, stored);
            }
            return None;
        }
        Err(e) => {
            if first {
                walk.problem(
                    &digest,
                    path,
                    ProblemKind::Unreadable {
                        reason: error_chain(e),
                    },
                );
                walk.read.insert(digest, stored);
            }
            return None;
        }
    };
    if first {
        walk.blobs += 1;
        walk.bytes += bytes.len() as u64;
        walk.read.insert(digest.clone(), stored);
        progress.emit_with(|| Event::Started {
            operation: Operation::Fsck,
            digest: digest.clone(),
            size: config.size(),
        });
        progress.emit_with(|| Event::Done {
            operation: Operation::Fsck,
            digest: digest.clone(),
            bytes: bytes.len() as u64,
        });
    } else {
        progress.emit_with(|| Event::Skipped {
            operation: Operation::Fsck,
            digest: digest.clone(),
            size: config.size(),
        });
    }
    match diff_ids_of(bytes) {
        Ok(ids) if ids.len() == layers => Some(ids),
        Ok(ids) => {
            walk.problem(
                &digest,
                path,
                ProblemKind::DiffIdCount {
                    diff_ids: ids.len(),
                    layers,
                },
            );
            None
        }
        Err(reason) => {
            if first {
                walk.problem(&digest, path, ProblemKind::InvalidDocument { reason });
            }
            None
        }
    }
}
