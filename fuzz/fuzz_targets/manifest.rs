//! Manifest decoding and validation: `berth_api::fuzzing::manifest`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| berth_api::fuzzing::manifest(data));
