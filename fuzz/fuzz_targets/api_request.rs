//! The local API's request router: `berth_agent::api::fuzzing::ApiFuzzer`.
#![no_main]

use std::sync::OnceLock;

use berth_agent::api::fuzzing::ApiFuzzer;

/// The directory of the log the in-memory pods serve, kept for the whole run.
static FUZZER: OnceLock<(tempfile::TempDir, ApiFuzzer)> = OnceLock::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let (_, fuzzer) = FUZZER.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let fuzzer = ApiFuzzer::new(dir.path()).expect("the log file");
        (dir, fuzzer)
    });
    fuzzer.request(data);
});
