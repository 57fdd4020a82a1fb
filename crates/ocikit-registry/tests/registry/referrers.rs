//! The referrers API as the conformance suite exercises it (`03_discovery_test.go`): subjects
//! pushed before and after their referrers, `artifactType` filtering, empty answers, never 404.

use ocikit_digest::Digest;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::*;

const BAGEL: &str = "application/vnd.nhl.peanut.butter.bagel";
const EMPTY: &str = "application/vnd.oci.empty.v1+json";

fn artifact(
    config_type: &str,
    artifact_type: Option<&str>,
    subject: (&Digest, usize),
    note: &str,
) -> Vec<u8> {
    let mut m = json!({
        "schemaVersion": 2, "mediaType": MANIFEST,
        "config": {"mediaType": config_type, "digest": ocikit_digest::digest::EMPTY_JSON_SHA256, "size": 2},
        "layers": [{"mediaType": EMPTY, "digest": ocikit_digest::digest::EMPTY_JSON_SHA256, "size": 2}],
        "subject": {"mediaType": MANIFEST, "digest": subject.0.as_str(), "size": subject.1},
        "annotations": {"org.example.note": note},
    });
    if let Some(t) = artifact_type {
        m["artifactType"] = json!(t);
    }
    serde_json::to_vec(&m).unwrap()
}

async fn referrers(s: &Server, path: &str) -> (Vec<Value>, String) {
    let resp = s.send(Method::GET, path).await;
    assert_eq!(resp.status(), StatusCode::OK, "{path}");
    assert_eq!(header(&resp, "content-type"), INDEX);
    let filters = header(&resp, "oci-filters-applied");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["schemaVersion"], 2);
    assert_eq!(body["mediaType"], INDEX);
    (body["manifests"].as_array().unwrap().clone(), filters)
}

#[tokio::test]
async fn referrers_with_filter_as_the_conformance_suite_checks() {
    for backend in backends() {
        let s = server(backend).await;
        s.push_blob("app", b"{}").await;
        let subject = {
            let layer = data(100, 1);
            let l = s.push_blob("app", &layer).await;
            let c = Digest::sha256(b"{}");
            image_manifest((&c, 2), &[(&l, layer.len())])
        };
        let subject_digest = Digest::sha256(&subject);
        let sub = (&subject_digest, subject.len());
        let never_pushed = Digest::sha256(b"manifest 3, never pushed");

        // Referrers pushed before their subject exists: accepted, OCI-Subject returned.
        let mut pushed = Vec::new();
        for (i, bytes) in [
            artifact(BAGEL, None, sub, "a-config"),
            artifact(EMPTY, Some(BAGEL), sub, "a-layer"),
        ]
        .iter()
        .enumerate()
        {
            let resp = s
                .put_manifest("app", &format!("a{i}"), MANIFEST, bytes)
                .await;
            assert_eq!(resp.status(), StatusCode::CREATED);
            assert_eq!(header(&resp, "oci-subject"), subject_digest.as_str());
            pushed.push(Digest::sha256(bytes));
        }
        // An index with a subject and an artifactType.
        let index = serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": INDEX, "artifactType": "application/vnd.food.stand",
            "manifests": [],
            "subject": {"mediaType": MANIFEST, "digest": subject_digest.as_str(), "size": subject.len()},
            "annotations": {"org.example.note": "index"},
        }))
        .unwrap();
        let resp = s.put_manifest("app", "idx", INDEX, &index).await;
        assert_eq!(header(&resp, "oci-subject"), subject_digest.as_str());
        // The subject itself, then two more referrers, and one whose subject never exists.
        let resp = s.put_manifest("app", "tagtest0", MANIFEST, &subject).await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        for (i, bytes) in [
            artifact("application/vnd.other.config", None, sub, "b-config"),
            artifact(EMPTY, Some("application/vnd.other.type"), sub, "b-layer"),
        ]
        .iter()
        .enumerate()
        {
            let resp = s
                .put_manifest("app", &format!("b{i}"), MANIFEST, bytes)
                .await;
            assert_eq!(header(&resp, "oci-subject"), subject_digest.as_str());
        }
        let c_layer = artifact(EMPTY, Some(BAGEL), (&never_pushed, 10), "c-layer");
        let resp = s.put_manifest("app", "c", MANIFEST, &c_layer).await;
        assert_eq!(header(&resp, "oci-subject"), never_pushed.as_str());

        // All five, each once, with exactly the annotations pushed.
        let (all, filters) = referrers(&s, &format!("/v2/app/referrers/{subject_digest}")).await;
        assert_eq!(filters, "");
        assert_eq!(all.len(), 5);
        let mut digests: Vec<_> = all.iter().map(|d| d["digest"].as_str().unwrap()).collect();
        digests.sort();
        digests.dedup();
        assert_eq!(digests.len(), 5);
        for d in &all {
            assert_eq!(d["annotations"].as_object().unwrap().len(), 1, "{d}");
        }
        // artifactType from the field, else from config.mediaType; the index keeps its own.
        let types: Vec<_> = all.iter().map(|d| d["artifactType"].clone()).collect();
        assert_eq!(types.iter().filter(|t| *t == BAGEL).count(), 2);
        let index_entry = all.iter().find(|d| d["mediaType"] == INDEX).unwrap();
        assert_eq!(index_entry["artifactType"], "application/vnd.food.stand");
        assert_eq!(index_entry["size"], index.len());
        let a0 = all
            .iter()
            .find(|d| d["digest"] == pushed[0].as_str())
            .unwrap();
        assert_eq!(a0["mediaType"], MANIFEST);
        assert_eq!(a0["annotations"]["org.example.note"], "a-config");

        // Filtered: only the two bagels, and the header says so.
        let (bagels, filters) = referrers(
            &s,
            &format!("/v2/app/referrers/{subject_digest}?artifactType={BAGEL}"),
        )
        .await;
        assert_eq!(filters, "artifactType");
        assert_eq!(bagels.len(), 2);
        assert!(bagels.iter().all(|d| d["artifactType"] == BAGEL));
        // A malformed or repeated filter is not applied, and not claimed.
        for query in [
            "?artifactType=",
            "?artifactType=not%20a%20type",
            "?artifactType=a/b&artifactType=c/d",
        ] {
            let (list, filters) =
                referrers(&s, &format!("/v2/app/referrers/{subject_digest}{query}")).await;
            assert_eq!(filters, "", "{query}");
            assert_eq!(list.len(), 5);
        }

        // A subject that was never pushed has its one referrer; unknown digests have none.
        let (c, _) = referrers(&s, &format!("/v2/app/referrers/{never_pushed}")).await;
        assert_eq!(c.len(), 1);
        assert_eq!(c[0]["digest"], Digest::sha256(&c_layer).as_str());
        let dummy = Digest::sha256(b"hello world");
        let (none, _) = referrers(&s, &format!("/v2/app/referrers/{dummy}")).await;
        assert!(none.is_empty());
        let (none, _) = referrers(&s, &format!("/v2/other/referrers/{subject_digest}")).await;
        assert!(none.is_empty());
        let resp = s.send(Method::GET, "/v2/app/referrers/sha256:xyz").await;
        assert_error(resp, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;

        // Deleting a referrer removes it from the list.
        let resp = s
            .send(Method::DELETE, &format!("/v2/app/manifests/{}", pushed[0]))
            .await;
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
        let (all, _) = referrers(&s, &format!("/v2/app/referrers/{subject_digest}")).await;
        assert_eq!(all.len(), 4);
        assert!(all.iter().all(|d| d["digest"] != pushed[0].as_str()));
    }
}

#[tokio::test]
async fn referrers_are_paginated_with_link() {
    let s = server_with(
        Backend::Memory,
        ocikit_registry::Config::default().max_page_size(2),
    )
    .await;
    let subject = Digest::sha256(b"some subject");
    let mut pushed = Vec::new();
    for i in 0..5 {
        let kind = if i % 2 == 0 {
            BAGEL
        } else {
            "application/vnd.other"
        };
        let bytes = artifact(EMPTY, Some(kind), (&subject, 10), &format!("n{i}"));
        let resp = s
            .put_manifest("app", &format!("r{i}"), MANIFEST, &bytes)
            .await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        pushed.push(Digest::sha256(&bytes).to_string());
    }
    for (query, expected) in [(String::new(), 5), (format!("?artifactType={BAGEL}"), 3)] {
        let mut next = format!("/v2/app/referrers/{subject}{query}");
        let mut seen = Vec::new();
        loop {
            let resp = s.send(Method::GET, &next).await;
            assert_eq!(resp.status(), StatusCode::OK);
            let link = header(&resp, "link");
            let body: Value = resp.json().await.unwrap();
            let page = body["manifests"].as_array().unwrap();
            assert!(page.len() <= 2);
            seen.extend(
                page.iter()
                    .map(|d| d["digest"].as_str().unwrap().to_owned()),
            );
            if link.is_empty() {
                break;
            }
            assert!(link.ends_with("; rel=\"next\""), "{link}");
            next = link[1..link.find('>').unwrap()].to_owned();
        }
        assert_eq!(seen.len(), expected, "{query}");
        let mut unique = seen.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), expected);
        assert!(seen.iter().all(|d| pushed.contains(d)));
    }
}

/// Subjects in algorithms ocikit cannot compute are still indexed and listed (keys never
/// carry their free-form encoded part), and asking about them never fails.
#[tokio::test]
async fn subjects_in_other_algorithms() {
    let s = server(Backend::Fs).await;
    let blake3 = format!("blake3:{}", "ab".repeat(32));
    let odd = format!("foo+bar:{}=", "Zz_-".repeat(150));
    for subject in [&blake3, &odd] {
        let d = Digest::parse(subject).unwrap();
        let bytes = artifact(EMPTY, Some(BAGEL), (&d, 10), "other");
        let resp = s.put_manifest("app", "x", MANIFEST, &bytes).await;
        assert_eq!(resp.status(), StatusCode::CREATED, "{subject}");
        assert_eq!(header(&resp, "oci-subject"), subject.as_str());
        let (list, _) = referrers(&s, &format!("/v2/app/referrers/{subject}")).await;
        assert_eq!(list.len(), 1);
        assert_eq!(list[0]["digest"], Digest::sha256(&bytes).as_str());
    }
    let (none, _) = referrers(&s, &format!("/v2/app/referrers/blake3:{}", "cd".repeat(32))).await;
    assert!(none.is_empty());
}
