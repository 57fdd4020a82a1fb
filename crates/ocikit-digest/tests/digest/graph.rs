//! The graph walk: real image graphs walked children first, each limit enforced (depth,
//! node count, document size), cycles refused, and the sync core's contract.

use std::collections::HashMap;

use bytes::Bytes;
use oci_spec::image::Descriptor;
use ocikit_digest::document::InvalidDocumentKind;
use ocikit_digest::graph::{self, GraphError, Limits, MAX_DEPTH, MAX_NODES, Walker};
use ocikit_digest::media_type::{IMAGE_CONFIG, IMAGE_INDEX, IMAGE_LAYER_GZIP, IMAGE_MANIFEST};
use ocikit_digest::{Digest, descriptor};
use serde_json::{Value, json};

/// Blobs by digest, as a store would hold them.
#[derive(Default)]
struct Blobs(HashMap<Digest, Bytes>);

impl Blobs {
    fn put(&mut self, media_type: &str, bytes: &[u8]) -> Descriptor {
        let digest = Digest::sha256(bytes);
        self.0.insert(digest.clone(), Bytes::copy_from_slice(bytes));
        descriptor::new(media_type, &digest, bytes.len() as u64).unwrap()
    }

    fn put_json(&mut self, media_type: &str, v: &Value) -> Descriptor {
        self.put(media_type, &serde_json::to_vec(v).unwrap())
    }

    fn image(&mut self, name: &str) -> Descriptor {
        let config = self.put(IMAGE_CONFIG, format!("{{\"c\":\"{name}\"}}").as_bytes());
        let layer = self.put(IMAGE_LAYER_GZIP, format!("layer of {name}").as_bytes());
        let shared = self.put(IMAGE_LAYER_GZIP, b"shared layer");
        self.put_json(
            IMAGE_MANIFEST,
            &json!({"schemaVersion": 2, "mediaType": IMAGE_MANIFEST, "config": config,
                "layers": [shared, layer]}),
        )
    }

    fn index(&mut self, entries: &[Descriptor]) -> Descriptor {
        self.put_json(
            IMAGE_INDEX,
            &json!({"schemaVersion": 2, "mediaType": IMAGE_INDEX, "manifests": entries}),
        )
    }

    fn walk(&self, roots: &[Descriptor], limits: &Limits) -> Result<graph::Graph, GraphError> {
        block_on(graph::walk(roots, limits, |d| {
            let bytes = self.0[&Digest::parse(d.digest().as_ref()).unwrap()].clone();
            async move { Ok::<_, GraphError>(bytes) }
        }))
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

fn digest(d: &Descriptor) -> Digest {
    Digest::parse(d.digest().as_ref()).unwrap()
}

#[test]
fn an_index_of_images_is_walked_children_first_each_blob_once() {
    let mut blobs = Blobs::default();
    let (a, b) = (blobs.image("a"), blobs.image("b"));
    let root = blobs.index(&[a.clone(), b.clone()]);
    let graph = blobs
        .walk(std::slice::from_ref(&root), &Limits::new())
        .unwrap();
    // Index, 2 manifests, 2 configs, 2 own layers, 1 shared layer.
    assert_eq!(graph.len(), 8);
    let sizes: u64 = blobs.0.values().map(|b| b.len() as u64).sum();
    assert_eq!(graph.total_size(), sizes);
    let levels = graph.levels();
    assert_eq!(levels.iter().map(Vec::len).collect::<Vec<_>>(), [5, 2, 1]);
    assert_eq!(levels[2][0].digest, digest(&root));
    let mut seen = std::collections::HashSet::new();
    for node in graph.children_first() {
        for child in graph.children(node) {
            assert!(
                seen.contains(&child.digest),
                "{} before its child",
                node.digest
            );
        }
        seen.insert(node.digest.clone());
    }
    let a_node = graph.get(&digest(&a)).unwrap();
    assert_eq!((a_node.depth, a_node.height), (1, 1));
    assert_eq!(a_node.bytes().unwrap(), &blobs.0[&digest(&a)]);
    assert!(graph.get(&digest(&root)).unwrap().document.is_some());
    assert_eq!(graph.roots().count(), 1);
    // Two roots sharing content: one graph, nothing twice.
    let both = blobs
        .walk(&[a.clone(), b.clone(), a], &Limits::new())
        .unwrap();
    assert_eq!(both.len(), 7);
    assert_eq!(both.roots().count(), 2);
}

#[test]
fn documents_nested_deeper_than_the_limit_are_refused() {
    let mut blobs = Blobs::default();
    let mut top = blobs.image("deep");
    // The manifest sits at level MAX_DEPTH below the top index: allowed.
    for _ in 0..MAX_DEPTH {
        top = blobs.index(&[top]);
    }
    let graph = blobs
        .walk(std::slice::from_ref(&top), &Limits::new())
        .unwrap();
    assert_eq!(graph.len(), MAX_DEPTH + 4);
    // One more level: the manifest is one too deep.
    let over = blobs.index(&[top]);
    match blobs.walk(std::slice::from_ref(&over), &Limits::new()) {
        Err(GraphError::TooDeep { root, max, .. }) => {
            assert_eq!((root, max), (digest(&over), MAX_DEPTH));
        }
        other => panic!("{other:?}"),
    }
    // A smaller limit is honoured.
    let x = blobs.image("x");
    let two = blobs.index(&[x]);
    let two = blobs.index(&[two]);
    assert!(
        blobs
            .walk(std::slice::from_ref(&two), &Limits::new().with_max_depth(2))
            .is_ok()
    );
    assert!(matches!(
        blobs.walk(std::slice::from_ref(&two), &Limits::new().with_max_depth(1)),
        Err(GraphError::TooDeep { max: 1, .. })
    ));
}

#[test]
fn walks_reaching_more_nodes_than_the_limit_are_refused() {
    assert_eq!(MAX_NODES, 1_000_000);
    assert_eq!(Limits::new().max_nodes, MAX_NODES);
    let mut blobs = Blobs::default();
    let image = blobs.image("n");
    // An image is 4 nodes (manifest, config, 2 layers).
    assert_eq!(
        blobs
            .walk(
                std::slice::from_ref(&image),
                &Limits::new().with_max_nodes(4)
            )
            .unwrap()
            .len(),
        4
    );
    match blobs.walk(
        std::slice::from_ref(&image),
        &Limits::new().with_max_nodes(3),
    ) {
        Err(GraphError::TooManyNodes { root, max }) => {
            assert_eq!((root, max), (digest(&image), 3))
        }
        other => panic!("{other:?}"),
    }
    // Wide indexes count every entry.
    let entries: Vec<Descriptor> = (0..50)
        .map(|i| blobs.put(IMAGE_CONFIG, format!("{i}").as_bytes()))
        .collect();
    let wide = blobs.index(&entries);
    assert!(matches!(
        blobs.walk(
            std::slice::from_ref(&wide),
            &Limits::new().with_max_nodes(50)
        ),
        Err(GraphError::TooManyNodes { max: 50, .. })
    ));
    assert_eq!(
        blobs
            .walk(&[wide], &Limits::new().with_max_nodes(51))
            .unwrap()
            .len(),
        51
    );
}

#[test]
fn documents_over_the_size_limit_are_refused() {
    let mut blobs = Blobs::default();
    let image = blobs.image("big");
    let size = image.size();
    assert!(
        blobs
            .walk(
                std::slice::from_ref(&image),
                &Limits::new().with_max_document_size(size)
            )
            .is_ok()
    );
    match blobs.walk(
        std::slice::from_ref(&image),
        &Limits::new().with_max_document_size(size - 1),
    ) {
        Err(GraphError::Document { digest: d, source }) => {
            assert_eq!(d, digest(&image));
            assert!(matches!(
                source.kind(),
                InvalidDocumentKind::TooLarge { .. }
            ));
        }
        other => panic!("{other:?}"),
    }
}

/// Unverified bytes can name their own digest: a walk over them must stop.
#[test]
fn cycles_are_refused() {
    let a_digest = Digest::sha256(b"a");
    let b_digest = Digest::sha256(b"b");
    let entry = |d: &Digest| descriptor::new(IMAGE_INDEX, d, 10).unwrap();
    let index_of = |d: &Digest| {
        Bytes::from(
            serde_json::to_vec(
                &json!({"schemaVersion": 2, "mediaType": IMAGE_INDEX, "manifests": [entry(d)]}),
            )
            .unwrap(),
        )
    };
    // a -> a
    let mut walker = Walker::new(Limits::new());
    walker.add_root(&entry(&a_digest)).unwrap();
    let wanted = walker.next_wanted().unwrap();
    walker.visit(&wanted, index_of(&a_digest)).unwrap();
    assert!(walker.next_wanted().is_none());
    assert_eq!(
        walker.finish().unwrap_err(),
        GraphError::Cycle {
            digest: a_digest.clone()
        }
    );
    // a -> b -> a, through the async driver.
    let result = block_on(graph::walk(&[entry(&a_digest)], &Limits::new(), |d| {
        let next = if d.digest().as_ref() == a_digest.as_str() {
            &b_digest
        } else {
            &a_digest
        };
        let bytes = index_of(next);
        async move { Ok::<_, GraphError>(bytes) }
    }));
    assert!(
        matches!(result, Err(GraphError::Cycle { .. })),
        "{result:?}"
    );
}

#[test]
fn invalid_documents_and_descriptors_name_the_document() {
    let mut blobs = Blobs::default();
    let bad = blobs.put_json(
        IMAGE_MANIFEST,
        &json!({"schemaVersion": 1, "mediaType": IMAGE_MANIFEST}),
    );
    let root = blobs.index(std::slice::from_ref(&bad));
    match blobs.walk(&[root], &Limits::new()) {
        Err(GraphError::Document { digest: d, source }) => {
            assert_eq!(d, digest(&bad));
            assert_eq!(source.kind(), &InvalidDocumentKind::SchemaVersion);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_core_takes_only_what_it_asked_for_and_skips_what_is_missing() {
    let mut blobs = Blobs::default();
    let (a, b) = (blobs.image("a"), blobs.image("b"));
    let root = blobs.index(&[a.clone(), b.clone()]);
    let mut walker = Walker::new(Limits::new());
    walker.add_root(&root).unwrap();
    // Bytes of something not asked for.
    assert_eq!(
        walker.visit(&a, blobs.0[&digest(&a)].clone()).unwrap_err(),
        GraphError::NotWanted { digest: digest(&a) }
    );
    let wanted = walker.take_wanted();
    assert_eq!(wanted.len(), 1);
    let children = walker
        .visit(&root, blobs.0[&digest(&root)].clone())
        .unwrap()
        .children();
    assert_eq!(children.len(), 2);
    // Both manifests are wanted at once; a is missing and skipped.
    let wanted = walker.take_wanted();
    assert_eq!(wanted.len(), 2);
    walker.skip(&a).unwrap();
    walker.visit(&b, blobs.0[&digest(&b)].clone()).unwrap();
    let graph = walker.finish().unwrap();
    // index, a (as a leaf), b and its config and two layers.
    assert_eq!(graph.len(), 6);
    let a_node = graph.get(&digest(&a)).unwrap();
    assert!(a_node.document.is_none() && a_node.is_document());
    assert_eq!(a_node.height, 0);
}

#[test]
fn a_walk_cannot_finish_with_documents_unread() {
    let mut blobs = Blobs::default();
    let image = blobs.image("unread");
    let mut walker = Walker::new(Limits::new());
    walker.add_root(&image).unwrap();
    assert_eq!(
        walker.finish().unwrap_err(),
        GraphError::NotVisited {
            digest: digest(&image)
        }
    );
}

#[test]
fn fetch_errors_are_the_callers_own() {
    #[derive(Debug)]
    enum MyError {
        Gone,
        Graph,
    }
    impl From<GraphError> for MyError {
        fn from(_: GraphError) -> MyError {
            MyError::Graph
        }
    }
    let mut blobs = Blobs::default();
    let image = blobs.image("gone");
    let result = block_on(graph::walk(&[image], &Limits::new(), |_| async {
        Err::<Bytes, _>(MyError::Gone)
    }));
    assert!(matches!(result, Err(MyError::Gone)));
    let _ = MyError::Graph;
}

/// A blob reached first as a leaf (an image's config) and then, deeper, by a descriptor that
/// claims it is a manifest must be read as that manifest, not skipped as already reached
/// (found by the `archive_import` fuzz target: an oci-archive whose nested index named a
/// config as a manifest was imported).
#[test]
fn a_blob_reached_as_a_config_then_claimed_as_a_manifest_is_read_as_one() {
    let mut blobs = Blobs::default();
    let image = blobs.image("a");
    let manifest: Value = serde_json::from_slice(&blobs.0[&digest(&image)]).unwrap();
    let config = digest(&serde_json::from_value(manifest["config"].clone()).unwrap());
    let claimed = descriptor::new(IMAGE_MANIFEST, &config, blobs.0[&config].len() as u64).unwrap();
    let nested = blobs.index(&[claimed]);
    let err = blobs
        .walk(&[image, nested], &Limits::new())
        .expect_err("a config read as a manifest");
    assert!(
        matches!(&err, GraphError::Document { digest, .. } if *digest == config),
        "{err:?}"
    );
}

#[test]
fn documents_parsed_by_the_caller_are_followed_under_the_same_limits() {
    use ocikit_digest::document::Document;
    let mut blobs = Blobs::default();
    let (a, b) = (blobs.image("a"), blobs.image("b"));
    let root = blobs.index(&[a.clone(), b.clone()]);
    let parse = |d: &Descriptor| Document::parse(d, blobs.0[&digest(d)].clone()).unwrap();
    let mut walker = Walker::new(Limits::new());
    walker.add_root(&root).unwrap();
    // Only what the walk asked for.
    assert_eq!(
        walker.visit_parsed(&a, &parse(&a)).unwrap_err(),
        GraphError::NotWanted { digest: digest(&a) }
    );
    assert_eq!(walker.take_wanted(), std::slice::from_ref(&root));
    walker.visit_parsed(&root, &parse(&root)).unwrap();
    let wanted = walker.take_wanted();
    assert_eq!(wanted, [a.clone(), b.clone()]);
    for d in &wanted {
        walker.visit_parsed(d, &parse(d)).unwrap();
    }
    let graph = walker.finish().unwrap();
    // The index, two manifests, two configs, two own layers and one shared layer; the
    // walk kept none of the documents.
    assert_eq!(graph.len(), 8);
    assert!(graph.nodes().iter().all(|n| n.document.is_none()));
    assert_eq!(graph.get(&digest(&root)).unwrap().height, 2);

    // The depth limit: the second level is one too deep for a limit of 1; the node stays
    // wanted, and skipping it lets the walk end.
    let inner = blobs.index(std::slice::from_ref(&a));
    let outer = blobs.index(std::slice::from_ref(&inner));
    let parse = |d: &Descriptor| Document::parse(d, blobs.0[&digest(d)].clone()).unwrap();
    let mut walker = Walker::new(Limits::new().with_max_depth(1));
    walker.add_root(&outer).unwrap();
    walker.take_wanted();
    walker.visit_parsed(&outer, &parse(&outer)).unwrap();
    assert_eq!(walker.take_wanted(), std::slice::from_ref(&inner));
    assert!(matches!(
        walker.visit_parsed(&inner, &parse(&inner)),
        Err(GraphError::TooDeep { max: 1, .. })
    ));
    walker.skip(&inner).unwrap();
    assert!(walker.finish().is_ok());

    // The node limit and the document size limit.
    let mut walker = Walker::new(Limits::new().with_max_nodes(3));
    walker.add_root(&a).unwrap();
    walker.take_wanted();
    assert!(matches!(
        walker.visit_parsed(&a, &parse(&a)),
        Err(GraphError::TooManyNodes { max: 3, .. })
    ));
    let mut walker = Walker::new(Limits::new().with_max_document_size(10));
    walker.add_root(&a).unwrap();
    walker.take_wanted();
    match walker.visit_parsed(&a, &parse(&a)) {
        Err(GraphError::Document { digest: d, source }) => {
            assert_eq!(d, digest(&a));
            assert!(matches!(
                source.kind(),
                InvalidDocumentKind::TooLarge { max: 10, .. }
            ));
        }
        other => panic!("{other:?}"),
    }
}
