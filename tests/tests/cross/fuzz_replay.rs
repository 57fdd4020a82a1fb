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
