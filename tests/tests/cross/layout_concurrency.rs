//! Many processes tagging one OCI layout at once lose no tag, and the layout fscks clean (issue: ocidir, umoci #146,
//! skopeo #1028, go-containerregistry #849 and oras-go #286 all lose tags here).

use std::process::{Command, Stdio};

const TORTURE: &str = env!("CARGO_BIN_EXE_store-torture");

#[test]
fn sixteen_processes_times_fifty_tags_all_survive() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("layout");
    let children: Vec<_> = (0..16)
        .map(|id| {
            Command::new(TORTURE)
                .args(["tag", root.to_str().unwrap(), &format!("p{id}"), "50"])
                .stderr(Stdio::piped())
                .spawn()
                .expect("start store-torture")
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "tagger failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut tags: Vec<String> = rt.block_on(async {
        let layout = ocikit_layout::Layout::open(ocikit_store::FsStore::open(&root).await.unwrap())
            .await
            .unwrap();
        let report = layout
            .fsck(&ocikit_layout::FsckOptions::new())
            .await
            .unwrap();
        assert!(
            report.is_clean(),
            "fsck after the taggers: {:?}",
            report.problems
        );
        layout
            .tags()
            .await
            .unwrap()
            .into_iter()
            .map(|(t, _)| t)
            .collect()
    });
    tags.sort();
    let mut expected: Vec<String> = (0..16)
        .flat_map(|p| (0..50).map(move |i| format!("p{p}-{i}")))
        .collect();
    expected.sort();
    assert_eq!(tags.len(), 800);
    assert_eq!(tags, expected);
}
