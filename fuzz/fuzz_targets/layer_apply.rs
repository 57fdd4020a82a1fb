#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ocikit_codec::fuzz::layer_apply(data));
