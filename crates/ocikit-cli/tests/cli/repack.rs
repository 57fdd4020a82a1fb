//! `diff` and `repack`: changes to an unpacked root filesystem, as a listing and as a layer.

use crate::{example_arg, fails, json, oci, ok};

#[test]
fn diff_lists_and_repack_layers_the_changes() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("images");
    json(&["build", "--tag", &oci(&layout, ":v1"), example_arg()]);
    let rootfs = dir.path().join("rootfs");
    ok(&[
        "unpack",
        "-q",
        &oci(&layout, ":v1"),
        rootfs.to_str().unwrap(),
    ]);

    let none = json(&["diff", &oci(&layout, ":v1"), rootfs.to_str().unwrap()]);
    assert_eq!(none["changes"], serde_json::json!([]), "{none}");

    std::fs::write(rootfs.join("etc/motd"), b"changed\n").unwrap();
    std::fs::remove_file(rootfs.join("etc/os-release")).unwrap();
    std::fs::create_dir(rootfs.join("srv")).unwrap();
    std::fs::write(rootfs.join("srv/new"), b"new\n").unwrap();
    let listed = json(&["diff", &oci(&layout, ":v1"), rootfs.to_str().unwrap()]);
    let changes: Vec<(String, String)> = listed["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["path"].as_str().unwrap().into(),
                c["change"].as_str().unwrap().into(),
            )
        })
        .collect();
    let expect = |p: &str, c: &str| (p.to_string(), c.to_string());
    assert_eq!(
        changes,
        vec![
            expect("etc/motd", "modified"),
            expect("etc/os-release", "deleted"),
            expect("srv", "added"),
            expect("srv/new", "added"),
        ]
    );
    let text = ok(&["diff", &oci(&layout, ":v1"), rootfs.to_str().unwrap()]);
    assert!(text.contains("D etc/os-release"), "{text}");

    let repacked = json(&[
        "repack",
        &oci(&layout, ":v1"),
        rootfs.to_str().unwrap(),
        "--tag",
        "v2",
    ]);
    assert_eq!(repacked["changes"], 4);
    let summary = json(&["inspect", &oci(&layout, ":v2")]);
    assert_eq!(summary["layers"].as_array().unwrap().len(), 2);
    let again = dir.path().join("again");
    ok(&[
        "unpack",
        "-q",
        &oci(&layout, ":v2"),
        again.to_str().unwrap(),
    ]);
    assert_eq!(std::fs::read(again.join("etc/motd")).unwrap(), b"changed\n");
    assert!(!again.join("etc/os-release").exists());
    assert_eq!(std::fs::read(again.join("srv/new")).unwrap(), b"new\n");
    // A fresh unpack of the new image has no changes against it. (The edited tree itself
    // still differs in its sub-second mtimes, which layers do not record.)
    let after = json(&["diff", &oci(&layout, ":v2"), again.to_str().unwrap()]);
    assert_eq!(after["changes"], serde_json::json!([]), "{after}");
    assert_eq!(
        json(&["fsck", "--diff-ids", &oci(&layout, "")])["clean"],
        true
    );
}

#[test]
fn repack_refuses_what_it_cannot_use() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("images");
    json(&["build", "--tag", &oci(&layout, ":v1"), example_arg()]);
    let missing = dir.path().join("missing");
    let err = fails(&[
        "repack",
        &oci(&layout, ":v1"),
        missing.to_str().unwrap(),
        "--tag",
        "v2",
    ]);
    assert!(err.contains("not a directory"), "{err}");
    let err = fails(&[
        "repack",
        &oci(&layout, ":v1"),
        example_arg(),
        "--tag",
        "../x",
    ]);
    assert!(err.contains("../x"), "{err}");
    let tags = json(&["ls", &oci(&layout, "")])["tags"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(tags, 1, "a refused repack tagged something");
}
