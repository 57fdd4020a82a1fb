//! Platform resolution over hand-written manifests, configs and indexes (SPEC A.6), on
//! every backend.

use ocikit_digest::oci_spec::image::Descriptor;
use ocikit_digest::platform;
use ocikit_layout::platform::MAX_INDEX_DEPTH;
use ocikit_layout::{Error, Layout, PlatformQuery, resolve};
use serde_json::{Value, json};

use crate::image::layouts;

const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const INDEX: &str = "application/vnd.oci.image.index.v1+json";

fn want(p: &str) -> PlatformQuery {
    PlatformQuery::new(&platform::parse(p).unwrap())
}

/// An image without layers whose config names this platform; the manifest's descriptor
/// (without a platform).
async fn image(layout: &Layout, config_platform: Value) -> Descriptor {
    let mut config = json!({"rootfs": {"type": "layers", "diff_ids": []}});
    for (k, v) in config_platform.as_object().unwrap() {
        config[k] = v.clone();
    }
    raw_image(layout, &serde_json::to_vec(&config).unwrap()).await
}

/// An image whose config is exactly `config` bytes.
async fn raw_image(layout: &Layout, config: &[u8]) -> Descriptor {
    let config = layout
        .put_blob("application/vnd.oci.image.config.v1+json", config)
        .await
        .unwrap();
    let manifest = json!({
        "schemaVersion": 2, "mediaType": MANIFEST, "config": config, "layers": []
    });
    layout
        .put_blob(MANIFEST, &serde_json::to_vec(&manifest).unwrap())
        .await
        .unwrap()
}

/// An index entry: the descriptor with `platform` (or none) as JSON.
fn entry(d: &Descriptor, platform: Option<Value>) -> Value {
    let mut v = serde_json::to_value(d).unwrap();
    if let Some(p) = platform {
        v["platform"] = p;
    }
    v
}

async fn index(layout: &Layout, entries: Vec<Value>) -> Descriptor {
    let index = json!({"schemaVersion": 2, "mediaType": INDEX, "manifests": entries});
    layout
        .put_blob(INDEX, &serde_json::to_vec(&index).unwrap())
        .await
        .unwrap()
}

fn p(os: &str, arch: &str) -> Value {
    json!({"os": os, "architecture": arch})
}

fn pv(os: &str, arch: &str, variant: &str) -> Value {
    json!({"os": os, "architecture": arch, "variant": variant})
}

async fn found(layout: &Layout, top: &Descriptor, query: &PlatformQuery) -> String {
    resolve(layout, top, query)
        .await
        .unwrap()
        .descriptor
        .digest()
        .to_string()
}

#[tokio::test]
async fn an_index_with_several_platforms_gives_the_right_one() {
    for (layout, _guard) in layouts().await {
        let amd64 = image(&layout, p("linux", "amd64")).await;
        let arm64 = image(&layout, pv("linux", "arm64", "v8")).await;
        let arm = image(&layout, pv("linux", "arm", "v7")).await;
        let ppc = image(&layout, p("linux", "ppc64le")).await;
        let top = index(
            &layout,
            vec![
                entry(&amd64, Some(p("linux", "amd64"))),
                entry(&arm64, Some(pv("linux", "arm64", "v8"))),
                entry(&arm, Some(pv("linux", "arm", "v7"))),
                entry(&ppc, Some(p("linux", "ppc64le"))),
            ],
        )
        .await;
        for (query, expected) in [
            ("linux/amd64", &amd64),
            ("linux/x86_64", &amd64),
            ("linux/arm64", &arm64),
            ("linux/aarch64", &arm64),
            ("linux/arm64/v8", &arm64),
            ("linux/arm/v7", &arm),
            ("linux/armhf", &arm),
            ("linux/ppc64le", &ppc),
        ] {
            assert_eq!(
                found(&layout, &top, &want(query)).await,
                expected.digest().to_string(),
                "{query}"
            );
        }
        let resolved = resolve(&layout, &top, &want("linux/arm/v7")).await.unwrap();
        assert_eq!(platform::format(&resolved.platform()), "linux/arm/v7");
        assert_eq!(
            platform::format(resolved.descriptor.platform().as_ref().unwrap()),
            "linux/arm/v7"
        );
        // Any: the first entry.
        assert_eq!(
            found(&layout, &top, &PlatformQuery::any()).await,
            amd64.digest().to_string()
        );
    }
}

#[tokio::test]
async fn arm64_without_a_variant_matches_v8_both_ways() {
    for (layout, _guard) in layouts().await {
        let bare = image(&layout, p("linux", "arm64")).await;
        let v8 = image(&layout, pv("linux", "arm64", "v8")).await;
        let top = index(&layout, vec![entry(&bare, Some(p("linux", "arm64")))]).await;
        assert_eq!(
            found(&layout, &top, &want("linux/arm64/v8")).await,
            bare.digest().to_string()
        );
        assert!(matches!(
            resolve(&layout, &top, &want("linux/arm64/v9")).await,
            Err(Error::PlatformNotFound { .. })
        ));
        let top = index(&layout, vec![entry(&v8, Some(pv("linux", "arm64", "8")))]).await;
        assert_eq!(
            found(&layout, &top, &want("linux/arm64")).await,
            v8.digest().to_string()
        );
        // amd64 without a variant is v1, not v2.
        let amd = image(&layout, p("linux", "amd64")).await;
        let top = index(&layout, vec![entry(&amd, Some(p("linux", "amd64")))]).await;
        assert!(
            resolve(&layout, &top, &want("linux/amd64/v1"))
                .await
                .is_ok()
        );
        assert!(
            resolve(&layout, &top, &want("linux/amd64/v2"))
                .await
                .is_err()
        );
    }
}

#[tokio::test]
async fn the_first_match_wins() {
    for (layout, _guard) in layouts().await {
        let first = image(
            &layout,
            json!({"os": "linux", "architecture": "amd64", "author": "1"}),
        )
        .await;
        let second = image(
            &layout,
            json!({"os": "linux", "architecture": "amd64", "author": "2"}),
        )
        .await;
        let top = index(
            &layout,
            vec![
                entry(&first, Some(p("linux", "amd64"))),
                entry(&second, Some(p("linux", "amd64"))),
            ],
        )
        .await;
        assert_eq!(
            found(&layout, &top, &want("linux/amd64")).await,
            first.digest().to_string()
        );
        let top = index(
            &layout,
            vec![
                entry(&second, Some(p("linux", "amd64"))),
                entry(&first, Some(p("linux", "amd64"))),
            ],
        )
        .await;
        assert_eq!(
            found(&layout, &top, &want("linux/amd64")).await,
            second.digest().to_string()
        );
    }
}

#[tokio::test]
async fn entries_without_a_platform_fall_back_to_their_config() {
    for (layout, _guard) in layouts().await {
        let amd64 = image(&layout, p("linux", "amd64")).await;
        let arm64 = image(&layout, pv("linux", "arm64", "v8")).await;
        let windows = image(
            &layout,
            json!({"os": "windows", "architecture": "amd64", "os.version": "10.0.20348.1"}),
        )
        .await;
        let top = index(
            &layout,
            vec![
                entry(&amd64, None),
                entry(&arm64, None),
                entry(&windows, None),
            ],
        )
        .await;
        assert_eq!(
            found(&layout, &top, &want("linux/arm64")).await,
            arm64.digest().to_string()
        );
        let resolved = resolve(&layout, &top, &want("windows(10.0.20348.1)/amd64"))
            .await
            .unwrap();
        assert_eq!(resolved.descriptor.digest(), windows.digest());
        // The descriptor returned carries the platform found in the config.
        assert_eq!(
            platform::format(resolved.descriptor.platform().as_ref().unwrap()),
            "windows(10.0.20348.1)/amd64"
        );
        match resolve(&layout, &top, &want("windows(10.0.17763.1)/amd64")).await {
            Err(Error::PlatformNotFound { available, .. }) => assert_eq!(
                available,
                [
                    "linux/amd64",
                    "linux/arm64/v8",
                    "windows(10.0.20348.1)/amd64"
                ]
            ),
            other => panic!("expected no match, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn nested_indexes_are_searched_in_order() {
    for (layout, _guard) in layouts().await {
        let amd64 = image(&layout, p("linux", "amd64")).await;
        let arm64 = image(&layout, pv("linux", "arm64", "v8")).await;
        let s390x = image(&layout, p("linux", "s390x")).await;
        let inner = index(
            &layout,
            vec![entry(&arm64, Some(pv("linux", "arm64", "v8")))],
        )
        .await;
        // A nested index whose own platform does not match is skipped unread.
        let skipped = index(&layout, vec![entry(&s390x, Some(p("linux", "s390x")))]).await;
        let top = index(
            &layout,
            vec![
                entry(&skipped, Some(p("linux", "riscv64"))),
                entry(&inner, None),
                entry(&amd64, Some(p("linux", "amd64"))),
            ],
        )
        .await;
        assert_eq!(
            found(&layout, &top, &want("linux/arm64")).await,
            arm64.digest().to_string()
        );
        assert_eq!(
            found(&layout, &top, &want("linux/amd64")).await,
            amd64.digest().to_string()
        );
        assert!(matches!(
            resolve(&layout, &top, &want("linux/s390x")).await,
            Err(Error::PlatformNotFound { .. })
        ));
    }
}

/// `levels` indexes, each holding the next, the last holding an amd64 image.
async fn chain(layout: &Layout, levels: usize) -> Descriptor {
    let mut current = image(layout, p("linux", "amd64")).await;
    let mut platform = Some(p("linux", "amd64"));
    for _ in 0..levels {
        current = index(layout, vec![entry(&current, platform.take())]).await;
    }
    current
}

#[tokio::test]
async fn nesting_deeper_than_the_limit_is_refused() {
    for (layout, _guard) in layouts().await {
        let three = chain(&layout, 3).await;
        assert!(
            resolve(&layout, &three, &want("linux/amd64").with_max_depth(3))
                .await
                .is_ok()
        );
        match resolve(&layout, &three, &want("linux/amd64").with_max_depth(2)).await {
            Err(Error::IndexTooDeep { max_depth, .. }) => assert_eq!(max_depth, 2),
            other => panic!("expected too deep, got {other:?}"),
        }
        assert!(
            resolve(
                &layout,
                &chain(&layout, MAX_INDEX_DEPTH).await,
                &want("linux/amd64")
            )
            .await
            .is_ok()
        );
        let deep = chain(&layout, MAX_INDEX_DEPTH + 1).await;
        match resolve(&layout, &deep, &PlatformQuery::any()).await {
            Err(Error::IndexTooDeep { max_depth, digest }) => {
                assert_eq!(max_depth, MAX_INDEX_DEPTH);
                assert_ne!(digest.to_string(), deep.digest().to_string());
            }
            other => panic!("expected too deep, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn no_match_lists_the_platforms_available() {
    for (layout, _guard) in layouts().await {
        let amd64 = image(&layout, p("linux", "amd64")).await;
        let arm64 = image(&layout, pv("linux", "arm64", "v8")).await;
        let top = index(
            &layout,
            vec![
                entry(&amd64, Some(p("linux", "amd64"))),
                entry(&arm64, Some(pv("linux", "arm64", "v8"))),
            ],
        )
        .await;
        let err = resolve(&layout, &top, &want("linux/s390x"))
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "no image for platform linux/s390x (available: linux/amd64, linux/arm64/v8)"
        );
        match err {
            Error::PlatformNotFound { wanted, available } => {
                assert_eq!(wanted, "linux/s390x");
                assert_eq!(available, ["linux/amd64", "linux/arm64/v8"]);
            }
            other => panic!("{other:?}"),
        }
        let empty = index(&layout, vec![]).await;
        match resolve(&layout, &empty, &PlatformQuery::any()).await {
            Err(Error::PlatformNotFound { wanted, available }) => {
                assert_eq!(wanted, "any");
                assert!(available.is_empty());
            }
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn a_plain_manifest_resolves_to_itself_when_its_config_matches() {
    for (layout, _guard) in layouts().await {
        let arm = image(&layout, pv("linux", "arm", "v6")).await;
        let resolved = resolve(&layout, &arm, &want("linux/arm/v6")).await.unwrap();
        assert_eq!(resolved.descriptor.digest(), arm.digest());
        assert_eq!(
            platform::format(resolved.descriptor.platform().as_ref().unwrap()),
            "linux/arm/v6"
        );
        assert!(resolve(&layout, &arm, &PlatformQuery::any()).await.is_ok());
        match resolve(&layout, &arm, &want("linux/arm/v7")).await {
            Err(Error::PlatformNotFound { available, .. }) => {
                assert_eq!(available, ["linux/arm/v6"])
            }
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn artifacts_and_unknown_entries_are_skipped() {
    for (layout, _guard) in layouts().await {
        let amd64 = image(&layout, p("linux", "amd64")).await;
        let config = layout
            .put_blob("application/vnd.example.config", b"{}")
            .await
            .unwrap();
        let artifact = json!({
            "schemaVersion": 2, "mediaType": MANIFEST, "artifactType": "application/vnd.example",
            "config": config, "layers": []
        });
        let artifact = layout
            .put_blob(MANIFEST, &serde_json::to_vec(&artifact).unwrap())
            .await
            .unwrap();
        let unknown = layout
            .put_blob("application/vnd.example.thing", b"whatever")
            .await
            .unwrap();
        let top = index(
            &layout,
            vec![
                entry(&unknown, None),
                entry(&artifact, None),
                entry(&amd64, None),
            ],
        )
        .await;
        assert_eq!(
            found(&layout, &top, &PlatformQuery::any()).await,
            amd64.digest().to_string()
        );
        assert_eq!(
            found(&layout, &top, &want("linux/amd64")).await,
            amd64.digest().to_string()
        );
        // On its own, an artifact is no image.
        assert!(matches!(
            resolve(&layout, &artifact, &PlatformQuery::any()).await,
            Err(Error::UnsupportedMediaType { .. })
        ));
    }
}

#[tokio::test]
async fn configs_are_read_strictly() {
    for (layout, _guard) in layouts().await {
        for (config, expected) in [
            (
                r#"{"os":"linux","architecture":"amd64","os":"windows","rootfs":{"type":"layers","diff_ids":[]}}"#,
                "malformed JSON",
            ),
            (
                r#"{"os":"linux","architecture":"amd64","rootfs":{"type":"foo","diff_ids":[]}}"#,
                "rootfs.type",
            ),
            (
                r#"{"architecture":"amd64","rootfs":{"type":"layers","diff_ids":[]}}"#,
                "not an image configuration",
            ),
            (
                r#"{"os":"linux","architecture":"amd64"}"#,
                "not an image configuration",
            ),
            (
                r#"{"os":"linux","architecture":"amd64","rootfs":{"type":"layers","diff_ids":["sha256:nothex"]}}"#,
                "rootfs.diff_ids[0] is not a digest",
            ),
            (
                r#"{"os":"linux","architecture":"amd64","rootfs":{"type":"layers","diff_ids":[]},"config":{"Labels":{"a":1}}}"#,
                "not an image configuration",
            ),
            (
                r#"{"os":"","architecture":"amd64","rootfs":{"type":"layers","diff_ids":[]}}"#,
                "os or architecture is empty",
            ),
            (r#"[]"#, "not a JSON object"),
        ] {
            let manifest = raw_image(&layout, config.as_bytes()).await;
            match resolve(&layout, &manifest, &PlatformQuery::any()).await {
                Err(Error::InvalidDocument { reason, .. }) => {
                    assert!(reason.contains(expected), "{config}: {reason}")
                }
                other => panic!("{config}: expected a refusal, got {other:?}"),
            }
        }
        // Optional fields set to null are as if absent; unknown fields are fine.
        let lenient = r#"{"os":"linux","architecture":"amd64","rootfs":{"type":"layers","diff_ids":[]},"config":null,"history":null,"variant":null,"x-vendor":{"a":[1]}}"#;
        let manifest = raw_image(&layout, lenient.as_bytes()).await;
        assert!(
            resolve(&layout, &manifest, &want("linux/amd64"))
                .await
                .is_ok()
        );
    }
}
