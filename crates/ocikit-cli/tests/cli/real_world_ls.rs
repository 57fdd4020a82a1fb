//! `ls` of layouts whose images are untagged, as real skopeo leaves them (`skopeo copy …
//! oci:DIR` without a tag, or an untagged oci-archive imported): they are listed by digest,
//! TAG `<none>`, no `tag` key in `--json`, their digest under `-q`.

use std::path::Path;

use serde_json::Value;

use crate::image::build;
use crate::{fails, json, oci, ok};

/// skopeo with `args`, expected to succeed (None without skopeo, outside CI).
fn skopeo(args: &[&str]) -> Option<()> {
    ocikit_testkit::tool::skopeo()?.ok(args);
    Some(())
}

/// The `(digest, ref.name)` of every `index.json` entry of a layout, read as JSON here.
fn index_entries(layout: &Path) -> Vec<(String, Option<String>)> {
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["digest"].as_str().unwrap().to_string(),
                m["annotations"]["org.opencontainers.image.ref.name"]
                    .as_str()
                    .map(str::to_string),
            )
        })
        .collect()
}

/// Asserts that `ls` of `layout` lists exactly one untagged image, `digest`, in every form.
fn lists_one_untagged(layout: &Path, digest: &str) {
    let listing = json(&["ls", &oci(layout, "")]);
    let rows = listing["tags"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{listing}");
    let row = rows[0].as_object().unwrap();
    assert!(
        !row.contains_key("tag"),
        "an untagged row has a tag: {listing}"
    );
    assert_eq!(row["digest"], digest);
    assert_eq!(row["platforms"], serde_json::json!(["linux/amd64"]));
    assert!(row["size"].as_u64().unwrap() > 100, "{listing}");
    let text = ok(&["ls", &oci(layout, "")]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    let columns: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(columns[0], "<none>", "{text}");
    assert_eq!(columns[1], &digest["sha256:".len()..][..12], "{text}");
    assert_eq!(ok(&["ls", "-q", &oci(layout, "")]), format!("{digest}\n"));
}

#[test]
fn skopeos_untagged_layouts_and_archives_are_listed_by_digest() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let source = d.join("source");
    let digest = build(&source, "v1", &["--platform", "linux/amd64"]);

    // `skopeo copy oci:A:t oci:B`: B's only entry has no ref.name.
    let copied = d.join("copied");
    if skopeo(&["copy", &oci(&source, ":v1"), &oci(&copied, "")]).is_none() {
        return;
    }
    assert_eq!(index_entries(&copied), [(digest.clone(), None)]);
    lists_one_untagged(&copied, &digest);

    // skopeo's untagged oci-archive, imported: the same.
    let archive = d.join("untagged.tar");
    skopeo(&[
        "copy",
        &oci(&source, ":v1"),
        &format!("oci-archive:{}", archive.display()),
    ]);
    let imported = d.join("imported");
    ok(&[
        "import",
        &format!("oci-archive:{}", archive.display()),
        &oci(&imported, ""),
    ]);
    assert_eq!(index_entries(&imported), [(digest.clone(), None)]);
    lists_one_untagged(&imported, &digest);

    // Tagged, the image is listed under its tag only (the untagged entry stays in
    // index.json, but names the same image).
    ok(&["tag", "-q", &oci(&copied, &format!("@{digest}")), "v2"]);
    assert_eq!(index_entries(&copied).len(), 2);
    let listing = json(&["ls", &oci(&copied, "")]);
    assert_eq!(listing["tags"].as_array().unwrap().len(), 1, "{listing}");
    assert_eq!(listing["tags"][0]["tag"], "v2");
    assert_eq!(listing["tags"][0]["digest"], digest.as_str());
    assert_eq!(ok(&["ls", "-q", &oci(&copied, "")]), "v2\n");

    // Beside a tagged image, an untagged one keeps its row: skopeo adds a second image.
    let other = build(
        &source,
        "v3",
        &["--platform", "linux/arm64", "--env", "X=1"],
    );
    skopeo(&["copy", &oci(&source, ":v3"), &oci(&copied, "")]);
    assert_eq!(
        ok(&["ls", "-q", &oci(&copied, "")]),
        format!("v2\n{other}\n")
    );
    let text = ok(&["ls", &oci(&copied, "")]);
    assert!(
        text.contains("<none>") && text.contains("linux/arm64"),
        "{text}"
    );
}

#[test]
fn an_attached_artifact_is_not_an_untagged_image_and_an_unreadable_entry_fails() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("images");
    let digest = build(&layout, "v1", &[]);
    let sbom = dir.path().join("sbom.json");
    std::fs::write(&sbom, "{}").unwrap();
    ok(&[
        "attach",
        "-q",
        &oci(&layout, ":v1"),
        "--artifact-type",
        "application/vnd.example.sbom+json",
        sbom.to_str().unwrap(),
    ]);
    // The artifact is an untagged entry of index.json, but `referrers` lists it, not `ls`.
    assert_eq!(index_entries(&layout).len(), 2);
    assert_eq!(ok(&["ls", "-q", &oci(&layout, "")]), "v1\n");

    // An untagged entry whose manifest is not there: `ls` says which, and prints nothing.
    let missing = format!("sha256:{}", "ab".repeat(32));
    let path = layout.join("index.json");
    let mut index: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    index["manifests"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": missing,
            "size": 100,
        }));
    std::fs::write(&path, serde_json::to_vec(&index).unwrap()).unwrap();
    let err = fails(&["ls", &oci(&layout, "")]);
    assert!(err.contains(&missing), "{err}");
    // The tagged image is still readable by tag.
    assert_eq!(
        json(&["inspect", &oci(&layout, ":v1")])["digest"],
        digest.as_str()
    );
}
