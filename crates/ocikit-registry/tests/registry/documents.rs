//! Manifests are parsed by the one strict parser (`ocikit_digest::document`): what a layout
//! refuses, the server refuses with MANIFEST_INVALID, and media types are compared by
//! essence on both sides.

use ocikit_digest::Digest;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::*;

async fn pushed_image(s: &Server) -> Value {
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let layer = data(100, 7);
    let c = s.push_blob("app", config).await;
    let l = s.push_blob("app", &layer).await;
    serde_json::from_slice(&image_manifest((&c, config.len()), &[(&l, layer.len())])).unwrap()
}

#[tokio::test]
async fn invalid_descriptors_inside_a_manifest_are_refused() {
    let s = server(Backend::Memory).await;
    let good = pushed_image(&s).await;
    let cases: Vec<(&str, Value)> = vec![
        ("negative layer size", {
            let mut m = good.clone();
            m["layers"][0]["size"] = json!(-1);
            m
        }),
        ("bad layer digest", {
            let mut m = good.clone();
            m["layers"][0]["digest"] = json!("sha256:../../etc/passwd");
            m
        }),
        ("config media type", {
            let mut m = good.clone();
            m["config"]["mediaType"] = json!(".bad/type");
            m
        }),
        ("embedded data of another digest", {
            let mut m = good.clone();
            m["config"]["data"] = json!("e30=");
            m
        }),
        ("subject without a size", {
            let mut m = good.clone();
            m["subject"] = json!({"mediaType": MANIFEST,
                "digest": Digest::sha256(b"x").as_str()});
            m
        }),
        (
            "artifactType",
            with(&good, "artifactType", json!("no-slash")),
        ),
        ("no config", {
            let mut m = good.clone();
            m.as_object_mut().unwrap().remove("config");
            m
        }),
    ];
    for (what, manifest) in cases {
        let bytes = serde_json::to_vec(&manifest).unwrap();
        let resp = s.put_manifest("app", "v1", MANIFEST, &bytes).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{what}");
        assert_error(resp, StatusCode::BAD_REQUEST, "MANIFEST_INVALID").await;
    }
    // The same manifest, sound, is accepted.
    let bytes = serde_json::to_vec(&good).unwrap();
    assert_eq!(
        s.put_manifest("app", "v1", MANIFEST, &bytes).await.status(),
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn media_types_are_compared_by_essence() {
    let s = server(Backend::Memory).await;
    let good = pushed_image(&s).await;
    // The body's mediaType with a parameter names the same type as the Content-Type.
    let labelled = with(
        &good,
        "mediaType",
        json!(format!("{MANIFEST}; charset=utf-8")),
    );
    let bytes = serde_json::to_vec(&labelled).unwrap();
    assert_eq!(
        s.put_manifest("app", "v1", MANIFEST, &bytes).await.status(),
        StatusCode::CREATED
    );
    // Another type is refused (CVE-2021-41190).
    let resp = s
        .put_manifest("app", "v2", INDEX, &serde_json::to_vec(&good).unwrap())
        .await;
    assert_error(resp, StatusCode::BAD_REQUEST, "MANIFEST_INVALID").await;
}

fn with(v: &Value, field: &str, value: Value) -> Value {
    let mut v = v.clone();
    v[field] = value;
    v
}
