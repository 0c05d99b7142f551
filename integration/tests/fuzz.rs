//! The fuzz targets' short, bounded run, on stable Rust: each target's seed
//! corpus (`fuzz/corpus/<target>/`) and a fixed number of pseudo-random
//! mutations of it (fixed seed, so every run tries the same inputs), through
//! the entry points `cargo fuzz` drives (see the README's "Fuzzing"). A
//! failure names the input, escaped: put its bytes in the corpus and run the
//! target on it.

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;

use berth_agent::api::fuzzing::{self, ApiFuzzer};

#[test]
fn manifest() {
    run("manifest", 5000, berth_api::fuzzing::manifest);
}

#[test]
fn api_request() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let fuzzer = ApiFuzzer::new(dir.path()).expect("the log file");
    run("api_request", 4000, |data| fuzzer.request(data));
}

#[test]
fn cri_log() {
    run("cri_log", 3000, berth_api::fuzzing::cri_log);
}

#[test]
fn registry_config() {
    run(
        "registry_config",
        20_000,
        berth_containerd::fuzzing::registry_config,
    );
}

/// Runs `target` on its seeds, then on `mutations` mutations of them.
fn run(target: &str, mutations: usize, target_fn: impl Fn(&[u8])) {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let seeds = seeds(&fuzz.join("corpus").join(target));
    assert!(!seeds.is_empty(), "no seeds for {target}");
    let dictionary = dictionary(&fuzz.join("dicts").join(format!("{target}.dict")));
    for seed in &seeds {
        attempt(target, seed, &target_fn);
    }
    let mut rng = Rng(0x2545_f491_4f6c_dd1d ^ target.len() as u64);
    for _ in 0..mutations {
        let input = mutate(&seeds, &dictionary, &mut rng);
        attempt(target, &input, &target_fn);
    }
}

thread_local! {
    /// Panics on this thread: the target's own, and its async tasks' (the
    /// API target runs them on the calling thread).
    static PANICS: Cell<usize> = const { Cell::new(0) };
}

/// Panics in the API target's blocking threads, where it reads logs.
static BLOCKING_PANICS: AtomicUsize = AtomicUsize::new(0);

fn panics() -> (usize, usize) {
    (PANICS.get(), BLOCKING_PANICS.load(Ordering::SeqCst))
}

fn attempt(target: &str, input: &[u8], target_fn: &impl Fn(&[u8])) {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.set(PANICS.get() + 1);
            if std::thread::current().name() == Some(fuzzing::BLOCKING_THREAD) {
                BLOCKING_PANICS.fetch_add(1, Ordering::SeqCst);
            }
            previous(info);
        }));
    });
    let before = panics();
    let result = catch_unwind(AssertUnwindSafe(|| target_fn(input)));
    if result.is_err() || panics() != before {
        panic!(
            "fuzz target {target} failed on the input b\"{}\"",
            input.escape_ascii()
        );
    }
}

/// The seed files of a target, in name order.
fn seeds(dir: &Path) -> Vec<Vec<u8>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        // Only what is checked in: cargo fuzz adds hash-named files.
        .filter(|path| path.extension().is_some())
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|path| std::fs::read(path).expect("a seed"))
        .collect()
}

/// The tokens of a libFuzzer dictionary: `"..."` or `name="..."` lines,
/// with `\\`, `\"` and `\xAB` escapes.
fn dictionary(path: &Path) -> Vec<Vec<u8>> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut tokens = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (Some(open), Some(close)) = (line.find('"'), line.rfind('"')) else {
            panic!("{}: not a dictionary line: {line}", path.display());
        };
        let quoted = &line.as_bytes()[open + 1..close];
        let mut token = Vec::new();
        let mut i = 0;
        while i < quoted.len() {
            match (quoted[i], quoted.get(i + 1)) {
                (b'\\', Some(b'x')) => {
                    let hex = std::str::from_utf8(&quoted[i + 2..i + 4]).expect("hex digits");
                    token.push(u8::from_str_radix(hex, 16).expect("an \\x escape"));
                    i += 4;
                }
                (b'\\', Some(&escaped)) => {
                    token.push(escaped);
                    i += 2;
                }
                (byte, _) => {
                    token.push(byte);
                    i += 1;
                }
            }
        }
        tokens.push(token);
    }
    tokens
}

/// xorshift64*: small, and the same sequence on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (`n` > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Bytes that often sit on a boundary.
const INTERESTING: &[u8] = &[
    0, 0x7f, 0x80, 0xff, b'\n', b'\r', b' ', b'"', b':', b'-', b'9',
];

/// One to four of libFuzzer's kinds of edits to a seed.
fn mutate(seeds: &[Vec<u8>], dictionary: &[Vec<u8>], rng: &mut Rng) -> Vec<u8> {
    let mut data = seeds[rng.below(seeds.len())].clone();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(data.len() + 1);
        let byte = at.min(data.len().saturating_sub(1));
        match rng.below(8) {
            0 if !data.is_empty() => data[byte] ^= 1 << rng.below(8),
            1 if !data.is_empty() => data[byte] = INTERESTING[rng.below(INTERESTING.len())],
            2 => {
                let end = (at + 1 + rng.below(16)).min(data.len());
                data.drain(at..end);
            }
            3 if !dictionary.is_empty() => {
                let token = &dictionary[rng.below(dictionary.len())];
                data.splice(at..at, token.iter().copied());
            }
            4 => {
                let end = (at + 1 + rng.below(64)).min(data.len());
                let copy = data[at..end].to_vec();
                let to = rng.below(data.len() + 1);
                data.splice(to..to, copy);
            }
            5 => {
                let other = &seeds[rng.below(seeds.len())];
                let from = rng.below(other.len() + 1);
                data.truncate(at);
                data.extend_from_slice(&other[from..]);
            }
            6 if rng.below(4) == 0 => data.truncate(at),
            _ => data.insert(at, rng.next() as u8),
        }
    }
    data
}
