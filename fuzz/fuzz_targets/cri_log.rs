//! CRI log parsing, rendering and tailing: `berth_api::fuzzing::cri_log`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| berth_api::fuzzing::cri_log(data));
