//! `ocikit mutate` on a layout, an archive and `ocikit serve`, its results read back by
//! `skopeo inspect`; bad input refused with nothing written.

use serde_json::Value;

use crate::registry::Serve;
use crate::{contents, fails, json, oci, ok};

/// `skopeo inspect ARGS...` parsed.
fn inspect(args: &[&str]) -> Value {
    let mut all = vec!["inspect"];
    all.extend_from_slice(args);
    serde_json::from_str(&crate::skopeo().ok(&all)).unwrap()
}

/// The layer digests skopeo reads for an image.
fn layers(args: &[&str]) -> Value {
    inspect(args)["Layers"].clone()
}

#[test]
fn mutate_changes_what_skopeo_reads_on_a_layout_an_archive_and_a_registry() {
    if ocikit_testkit::tool::skopeo().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let layout = d.join("images");
    let v1_digest = crate::image::build(&layout, "v1", &["--env", "PATH=/bin", "--cmd", "sh"]);
    let v1 = oci(&layout, ":v1");
    let v1_layers = layers(&[&v1]);

    // On a layout: every setting.
    let v2 = oci(&layout, ":v2");
    let report = json(&[
        "mutate",
        &v1,
        "--tag",
        &v2,
        "--env",
        "MODE=production",
        "--entrypoint",
        r#"["/bin/app","--serve"]"#,
        "--cmd",
        r#"["--port","8080"]"#,
        "--label",
        "team=infra",
        "--label",
        "tier=web",
        "--annotation",
        "org.example.ticket=42",
        "--user",
        "1000:1000",
        "--workdir",
        "/srv",
        "--expose",
        "8080/tcp",
        "--created",
        "2024-05-01T12:00:00Z",
        "--author",
        "Infra",
    ]);
    assert_eq!(report["sourceDigest"], v1_digest.as_str());
    assert_eq!(report["blobsWritten"], 2, "{report}");
    let summary = inspect(&[&v2]);
    assert_eq!(summary["Digest"], report["digest"]);
    assert_eq!(summary["Layers"], v1_layers);
    assert_eq!(summary["Labels"]["team"], "infra");
    assert_eq!(summary["Created"], "2024-05-01T12:00:00Z");
    let env = summary["Env"].as_array().unwrap();
    assert!(env.contains(&Value::from("MODE=production")), "{summary}");
    let config = inspect(&["--config", &v2]);
    assert_eq!(config["author"], "Infra");
    let exec = &config["config"];
    assert_eq!(
        exec["Entrypoint"],
        serde_json::json!(["/bin/app", "--serve"])
    );
    assert_eq!(exec["Cmd"], serde_json::json!(["--port", "8080"]));
    assert_eq!(exec["User"], "1000:1000");
    assert_eq!(exec["WorkingDir"], "/srv");
    assert_eq!(exec["ExposedPorts"], serde_json::json!({"8080/tcp": {}}));
    let raw = inspect(&["--raw", &v2]);
    assert_eq!(raw["annotations"]["org.example.ticket"], "42");
    // The source is as it was.
    assert_eq!(inspect(&[&v1])["Digest"], v1_digest.as_str());

    // Into an oci-archive, with removals.
    let archive = d.join("v3.tar");
    let archive_at = format!("oci-archive:{}:v3", archive.display());
    ok(&[
        "mutate",
        &v2,
        "--tag",
        &archive_at,
        "--env-rm",
        "MODE",
        "--label-rm",
        "team",
        "--annotation-rm",
        "org.example.ticket",
        "--expose-rm",
        "8080/tcp",
    ]);
    let summary = inspect(&[&archive_at]);
    assert_eq!(summary["Layers"], v1_layers);
    assert_eq!(summary["Labels"], serde_json::json!({"tier": "web"}));
    assert!(
        !summary["Env"]
            .as_array()
            .unwrap()
            .contains(&Value::from("MODE=production"))
    );
    let raw = inspect(&["--raw", &archive_at]);
    assert!(raw.get("annotations").is_none(), "{raw}");

    // Within `ocikit serve`: only the config and manifest are uploaded.
    let server = Serve::start(&d.join("registry"), &[]);
    let app = |tag: &str| format!("docker://{}/team/app:{tag}", server.addr);
    crate::skopeo().ok(&["copy", "--dest-tls-verify=false", &v1, &app("v1")]);
    let report = json(&[
        "mutate",
        "--tls-verify=false",
        &app("v1"),
        "--tag",
        &app("v2"),
        "--label",
        "pushed=yes",
    ]);
    assert_eq!(report["blobsWritten"], 1, "{report}");
    assert_eq!(report["blobsSkipped"], 1, "{report}");
    let summary = inspect(&["--tls-verify=false", &app("v2")]);
    assert_eq!(summary["Digest"], report["digest"]);
    assert_eq!(summary["Layers"], v1_layers);
    assert_eq!(summary["Labels"]["pushed"], "yes");
    // -q prints the new digest.
    let quiet = ok(&[
        "mutate",
        "-q",
        "--tls-verify=false",
        &app("v1"),
        "--tag",
        &format!("docker://{}/other:v1", server.addr),
        "--author",
        "me",
    ]);
    let other = inspect(&[
        "--tls-verify=false",
        &format!("docker://{}/other:v1", server.addr),
    ]);
    assert_eq!(quiet.trim(), other["Digest"].as_str().unwrap());
    assert_eq!(other["Layers"], v1_layers);
    let (exit, _) = server.stop();
    assert!(exit.success(), "serve did not stop cleanly: {exit}");
}

#[test]
fn mutate_refuses_bad_input_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let layout = d.join("images");
    crate::image::build(&layout, "v1", &[]);
    let v1 = oci(&layout, ":v1");
    let before = contents(&layout);
    let elsewhere = d.join("elsewhere");
    for (flags, says) in [
        (vec!["--env", "MODE"], "--env `MODE` is not KEY=VALUE"),
        (vec!["--env", "=x"], "--env `=x` is not KEY=VALUE"),
        (vec!["--label", "team"], "--label `team` is not KEY=VALUE"),
        (vec!["--platform", "linux"], "`linux` is not a platform"),
        (vec!["--platform", "linux/"], "`linux/` is not a platform"),
        (vec!["--created", "yesterday"], "not an RFC 3339 time"),
        (vec!["--created", "2024-05-01"], "not an RFC 3339 time"),
        (vec!["--expose", "http"], "invalid change"),
        (vec!["--env", "A=1", "--env-rm", "A"], "invalid change"),
        (vec!["--cmd", "[not json"], "--cmd is not a JSON array"),
    ] {
        for destination in [oci(&layout, ":v2"), oci(&elsewhere, ":v2")] {
            let mut args = vec!["mutate", v1.as_str(), "--tag", destination.as_str()];
            args.extend_from_slice(&flags);
            let stderr = fails(&args);
            assert!(stderr.contains(says), "{flags:?}: {stderr}");
            assert_eq!(contents(&layout), before, "{flags:?} changed the layout");
            assert!(!elsewhere.exists(), "{flags:?} made a destination");
        }
    }
    // A source tag that is not there; a destination without a tag.
    let stderr = fails(&[
        "mutate",
        &oci(&layout, ":nope"),
        "--tag",
        &oci(&elsewhere, ":v2"),
        "--env",
        "A=1",
    ]);
    assert!(stderr.contains("no tag \"nope\""), "{stderr}");
    let stderr = fails(&["mutate", &v1, "--tag", &oci(&layout, ""), "--env", "A=1"]);
    assert!(stderr.contains("must name a tag"), "{stderr}");
    assert_eq!(contents(&layout), before);
    assert!(!elsewhere.exists());
}
