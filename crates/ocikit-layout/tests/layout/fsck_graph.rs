//! fsck walks with the one graph walk (`ocikit_digest::graph`) and its limits: a chain of
//! indexes deeper than `MAX_DEPTH` and a layout over the node limit are typed problems, and
//! everything else in the layout is still checked and reported in the same run.

use ocikit_digest::Digest;
use ocikit_digest::graph::{Limits, MAX_DEPTH};
use ocikit_digest::oci_spec::image::Descriptor;
use ocikit_layout::{FsckOptions, Layout, ProblemKind};
use serde_json::json;

use crate::artifact::{INDEX, desc_json, digest, image, stores};

/// An index naming `entries`.
async fn index_of(layout: &Layout, entries: &[&Descriptor]) -> Descriptor {
    let manifests: Vec<_> = entries.iter().map(|d| desc_json(d)).collect();
    let index = json!({"schemaVersion": 2, "mediaType": INDEX, "manifests": manifests});
    layout
        .put_blob(INDEX, &serde_json::to_vec(&index).unwrap())
        .await
        .unwrap()
}

/// Wraps `inner` in `levels` indexes; returns every index made, innermost first.
async fn chain(layout: &Layout, inner: &Descriptor, levels: usize) -> Vec<Descriptor> {
    let mut made: Vec<Descriptor> = Vec::new();
    let mut top = inner.clone();
    for _ in 0..levels {
        top = index_of(layout, &[&top]).await;
        made.push(top.clone());
    }
    made
}

fn problems(report: &ocikit_layout::FsckReport) -> Vec<(Digest, String, ProblemKind)> {
    report
        .problems
        .iter()
        .map(|p| (p.digest.clone(), p.path.clone(), p.kind.clone()))
        .collect()
}

#[tokio::test]
async fn indexes_nested_deeper_than_max_depth_are_a_typed_problem_and_the_rest_is_checked() {
    for (store, _guard) in stores().await {
        let layout = Layout::create(store).await.unwrap();
        // At the limit: the manifest sits MAX_DEPTH levels below the tagged index.
        let fits = image(&layout, "fits").await;
        let fits_chain = chain(&layout, &fits.manifest, MAX_DEPTH).await;
        layout.remove_tag("fits").await.unwrap();
        layout
            .set_tag("fits", fits_chain.last().unwrap())
            .await
            .unwrap();
        // One level more, and far more (a walk that recursed would overflow its stack).
        let deep = image(&layout, "deep").await;
        let deep_chain = chain(&layout, &deep.manifest, MAX_DEPTH + 1).await;
        layout.remove_tag("deep").await.unwrap();
        layout
            .set_tag("deep", deep_chain.last().unwrap())
            .await
            .unwrap();
        let far = image(&layout, "far").await;
        let far_chain = chain(&layout, &far.manifest, 200).await;
        layout.remove_tag("far").await.unwrap();
        layout
            .set_tag("far", far_chain.last().unwrap())
            .await
            .unwrap();
        // And damage elsewhere, reported in the same run.
        let broken = image(&layout, "broken").await;
        layout
            .store()
            .delete(&digest(&broken.layers[1]))
            .await
            .unwrap();

        let report = layout.fsck(&FsckOptions::new()).await.unwrap();
        let found = problems(&report);
        assert_eq!(found.len(), 3, "{found:#?}");
        let too_deep = |d: &Descriptor| {
            found.iter().any(|(digest_, path, kind)| {
                digest_ == &digest(d)
                    && path.matches(" > manifests[0]").count() == MAX_DEPTH + 1
                    && *kind == ProblemKind::TooDeep { max: MAX_DEPTH }
            })
        };
        // For `deep`, the manifest is the document one level too deep; for `far`, the
        // index at that level (the top one is level 0).
        assert!(too_deep(&deep.manifest), "{found:#?}");
        let far_level = |level: usize| &far_chain[far_chain.len() - 1 - level];
        assert!(too_deep(far_level(MAX_DEPTH + 1)), "{found:#?}");
        assert!(found.iter().any(|(d, path, kind)| {
            d == &digest(&broken.layers[1])
                && path.ends_with(" (broken) > layers[1]")
                && *kind == ProblemKind::Missing
        }));
        // Everything of `fits` was read: its chain, manifest, config and layers; of `deep`,
        // its chain only; of `far`, the first MAX_DEPTH + 1 levels.
        let read = fits_chain.len() + 4 + deep_chain.len() + (MAX_DEPTH + 1) + 3;
        assert_eq!(report.blobs_checked, read as u64);
    }
}

#[tokio::test]
async fn tighter_graph_limits_are_honoured() {
    for (store, _guard) in stores().await {
        let layout = Layout::create(store).await.unwrap();
        let a = image(&layout, "a").await;
        let b = image(&layout, "b").await;
        assert!(layout.fsck(&FsckOptions::new()).await.unwrap().is_clean());

        // Depth: index > index > manifest is too deep for a limit of 1 (a manifest not
        // reached at a shallower level by another path).
        let c = image(&layout, "c").await;
        layout.remove_tag("c").await.unwrap();
        let nested = chain(&layout, &c.manifest, 2).await;
        layout.set_tag("nested", &nested[1]).await.unwrap();
        let report = layout
            .fsck(&FsckOptions::new().with_graph_limits(Limits::new().with_max_depth(1)))
            .await
            .unwrap();
        assert_eq!(
            problems(&report),
            [(
                digest(&c.manifest),
                "index.json manifests[2] (nested) > manifests[0] > manifests[0]".to_string(),
                ProblemKind::TooDeep { max: 1 }
            )]
        );
        layout.remove_tag("nested").await.unwrap();

        // Nodes: each image is 4 blobs; with room for 6, the second image's manifest is
        // taken in (5), its config (6), and its layers are over the limit.
        let report = layout
            .fsck(&FsckOptions::new().with_graph_limits(Limits::new().with_max_nodes(6)))
            .await
            .unwrap();
        assert_eq!(
            problems(&report),
            [(
                digest(&b.manifest),
                "index.json manifests[1] (b)".to_string(),
                ProblemKind::TooManyBlobs { max: 6 }
            )]
        );
        // The first image was checked whole: damage to it is still found.
        layout.store().delete(&digest(&a.layers[0])).await.unwrap();
        let report = layout
            .fsck(&FsckOptions::new().with_graph_limits(Limits::new().with_max_nodes(6)))
            .await
            .unwrap();
        let found = problems(&report);
        assert_eq!(found.len(), 2, "{found:#?}");
        assert_eq!(found[0].2, ProblemKind::Missing);
        assert_eq!(found[1].2, ProblemKind::TooManyBlobs { max: 6 });
    }
}
