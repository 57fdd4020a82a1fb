//! Every committed fuzz seed and crash input is replayed through its oracle, so a crash the
//! fuzzer once found stays a failing test until fixed (and a regression test after).

use ocikit_tests::fuzz_inputs;

fn replay(target: &str, oracle: fn(&[u8])) {
    let inputs = fuzz_inputs(target);
    assert!(!inputs.is_empty(), "no seeds for {target}");
    for (path, bytes) in inputs {
        let outcome = std::panic::catch_unwind(|| oracle(&bytes));
        assert!(
            outcome.is_ok(),
            "oracle {target} failed on {}",
            path.display()
        );
    }
}

#[test]
fn digest_parse_seeds() {
    replay("digest_parse", ocikit_digest::fuzz::digest_parse);
}

#[test]
fn reference_parse_seeds() {
    replay("reference_parse", ocikit_digest::fuzz::reference_parse);
}

#[test]
fn descriptor_json_seeds() {
    replay("descriptor_json", ocikit_digest::fuzz::descriptor_json);
}

#[test]
fn document_parse_seeds() {
    replay("document_parse", ocikit_digest::fuzz::document_parse);
}

#[test]
fn decompress_seeds() {
    replay("decompress", ocikit_codec::fuzz::decompress);
}

#[test]
fn layer_apply_seeds() {
    replay("layer_apply", ocikit_codec::fuzz::layer_apply);
}

#[test]
fn platform_parse_seeds() {
    replay("platform_parse", ocikit_digest::fuzz::platform_parse);
}

#[test]
fn index_json_seeds() {
    replay("index_json", ocikit_layout::fuzz::index_json);
}

#[test]
fn archive_import_seeds() {
    replay("archive_import", ocikit_layout::fuzz::archive_import);
}

#[test]
fn route_parse_seeds() {
    replay("route_parse", ocikit_registry::fuzz::route_parse);
}

#[test]
fn range_headers_seeds() {
    replay("range_headers", ocikit_registry::fuzz::range_headers);
}

#[test]
fn htpasswd_seeds() {
    replay("htpasswd", ocikit_registry::fuzz::htpasswd);
}

#[test]
fn token_verify_seeds() {
    replay("token_verify", ocikit_registry::fuzz::token_verify);
}

#[test]
fn www_authenticate_seeds() {
    replay("www_authenticate", ocikit_client::fuzz::www_authenticate);
}

#[test]
fn link_header_seeds() {
    replay("link_header", ocikit_client::fuzz::link_header);
}

#[test]
fn docker_config_seeds() {
    replay("docker_config", ocikit_client::fuzz::docker_config);
}

/// The document seeds are what their names say (the first byte picks the declared media
/// type, as in the oracle): `ok_*` parse as a manifest or index, `bad_*` are refused,
/// `opaque_*` are not documents; so the replay above runs every branch of the oracle.
#[test]
fn document_parse_seeds_are_what_their_names_say() {
    use ocikit_digest::document::Document;
    use ocikit_digest::media_type;
    const DECLARED: [&str; 8] = [
        media_type::IMAGE_MANIFEST,
        media_type::IMAGE_INDEX,
        media_type::DOCKER_MANIFEST,
        media_type::DOCKER_MANIFEST_LIST,
        "application/vnd.oci.image.manifest.v1+json; charset=utf-8",
        "application/vnd.oci.image.index.v1+json ;x=y",
        media_type::IMAGE_CONFIG,
        "application/vnd.oci.image.index.v1+json+extra",
    ];
    let mut seen = [0; 3];
    for (path, bytes) in fuzz_inputs("document_parse") {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let declared = DECLARED[usize::from(bytes[0]) % DECLARED.len()];
        let parsed = Document::parse_as(declared, bytes::Bytes::copy_from_slice(&bytes[1..]));
        if name.starts_with("ok_") {
            assert!(
                matches!(
                    parsed,
                    Ok(Document::Manifest { .. } | Document::Index { .. })
                ),
                "{name}: {parsed:?}"
            );
            seen[0] += 1;
        } else if name.starts_with("bad_") {
            assert!(parsed.is_err(), "{name}: {parsed:?}");
            seen[1] += 1;
        } else if name.starts_with("opaque_") {
            assert!(matches!(parsed, Ok(Document::Opaque)), "{name}: {parsed:?}");
            seen[2] += 1;
        }
    }
    assert!(seen.iter().all(|&n| n > 0), "{seen:?}");
}

#[test]
fn cosign_key_seeds() {
    replay("cosign_key", ocikit_sign::fuzz::key_parse);
}

#[test]
fn sign_payload_seeds() {
    replay("sign_payload", ocikit_sign::fuzz::payload_parse);
}

#[test]
fn sign_policy_seeds() {
    replay("sign_policy", ocikit_sign::fuzz::policy_parse);
}
