#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ocikit_digest::fuzz::document_parse(data));
