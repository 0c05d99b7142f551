//! The registry config file: `berth_containerd::fuzzing::registry_config`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| berth_containerd::fuzzing::registry_config(data));
