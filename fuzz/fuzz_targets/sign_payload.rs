#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ocikit_sign::fuzz::payload_parse(data));
