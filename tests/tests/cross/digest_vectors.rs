//! Digest vectors checked against independent implementations: coreutils' `sha256sum` and
//! `sha512sum`, and the committed fuzz seeds (valid ones parse, hostile ones are refused).

use std::io::Write;
use std::process::{Command, Stdio};

use ocikit_digest::{Algorithm, Digest, DigestWriter};
use ocikit_tests::{fuzz_inputs, require_tool};

fn coreutils_digest(tool: &str, data: &[u8]) -> Option<String> {
    let path = require_tool(tool)?;
    let mut child = Command::new(path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start hashing tool");
    let mut stdin = child.stdin.take().expect("stdin");
    let owned = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&owned));
    let out = child.wait_with_output().expect("tool output");
    writer
        .join()
        .expect("writer thread")
        .expect("write to tool");
    assert!(out.status.success());
    Some(
        String::from_utf8(out.stdout)
            .expect("utf-8")
            .split_whitespace()
            .next()?
            .to_string(),
    )
}

#[test]
fn digests_agree_with_coreutils() {
    let mut rng = ocikit_testkit::prng::Prng::new(0x2545_f491_4f6c_dd1d);
    let sizes = [
        0usize, 1, 55, 56, 63, 64, 65, 111, 112, 127, 128, 129, 1000, 65_536, 3_000_001,
    ];
    for size in sizes {
        let data = rng.bytes(size);
        for (alg, tool) in [
            (Algorithm::Sha256, "sha256sum"),
            (Algorithm::Sha512, "sha512sum"),
        ] {
            let Some(hex) = coreutils_digest(tool, &data) else {
                return;
            };
            let expected = Digest::parse(&format!("{alg}:{hex}")).expect("tool output is a digest");
            assert_eq!(
                Digest::compute(&alg, &data).expect("supported"),
                expected,
                "{size} bytes"
            );
            let mut w = DigestWriter::new(Vec::new(), &alg).expect("supported");
            for chunk in data.chunks(4093) {
                w.write_all(chunk).expect("vec write");
            }
            assert_eq!(w.digest(), expected);
        }
    }
}

#[test]
fn digest_seeds_are_classified_by_their_names() {
    let inputs = fuzz_inputs("digest_parse");
    let mut valid = 0;
    let mut hostile = 0;
    for (path, bytes) in inputs {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let text = String::from_utf8_lossy(&bytes);
        if name.starts_with("valid-") {
            valid += 1;
            assert!(Digest::parse(&text).is_ok(), "{name} should parse");
        } else if name.starts_with("hostile-") {
            hostile += 1;
            assert!(Digest::parse(&text).is_err(), "{name} should be refused");
        }
    }
    assert!(
        valid >= 3 && hostile >= 10,
        "seed set shrank: {valid} valid, {hostile} hostile"
    );
}
