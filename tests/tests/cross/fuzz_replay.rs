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
