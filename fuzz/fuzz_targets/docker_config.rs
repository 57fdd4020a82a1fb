#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ocikit_client::fuzz::docker_config(data));
