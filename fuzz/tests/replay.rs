//! The fuzz targets on stable Rust, without libFuzzer: every input kept in `fuzz/corpus`
//! (found by coverage-guided runs) and `fuzz/regressions` (every crash ever found), then
//! random mutations of
//! them for `PITCREW_FUZZ_SECONDS` (default 2) per target. Not coverage-guided: it guards
//! against regressions; `fuzz/run` is what searches.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pitcrew_fuzz::TARGETS;

/// The kept inputs of `target`: its corpus and the inputs of every crash ever found.
fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut inputs = Vec::new();
    for dir in [
        root.join("corpus").join(target),
        root.join("regressions").join(target),
    ] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            inputs.push((path, bytes));
        }
    }
    inputs.sort();
    inputs
}

/// Fragments that matter to the parsers, spliced in by the mutator.
const TOKENS: &[&[u8]] = &[
    b"data: ",
    b"[DONE]",
    b"\n\n",
    b"\r\n",
    b"```",
    b"~~~",
    b"path=",
    b"../",
    b".git/",
    b".GIT/",
    b"/",
    b"out/",
    b"in/",
    b"\"choices\":[{\"delta\":{\"content\":\"",
    b"\"finish_reason\":\"stop\"",
    b"<testcase ",
    b"line=\"4294967295\"",
    b"DA:",
    b"SF:",
    b"end_of_record\n",
    b"[[task]]\n",
    b"kind = ",
    b"\xff\xfe",
    b"\xe2\x80\xae",
];

fn mutate(rng: &mut fastrand::Rng, input: &mut Vec<u8>, other: &[u8]) {
    for _ in 0..rng.usize(1..=4) {
        let at = rng.usize(0..=input.len());
        match rng.u8(0..6) {
            0 if !input.is_empty() => {
                let i = rng.usize(0..input.len());
                input[i] ^= 1 << rng.u8(0..8);
            }
            1 => input.insert(at, rng.u8(..)),
            2 if at < input.len() => {
                let end = rng.usize(at..=input.len().min(at + 16));
                input.drain(at..end);
            }
            3 => {
                let token = TOKENS[rng.usize(0..TOKENS.len())];
                input.splice(at..at, token.iter().copied());
            }
            4 if !other.is_empty() => {
                let from = rng.usize(0..other.len());
                let to = rng.usize(from..=other.len());
                input.splice(at..at, other[from..to].iter().copied());
            }
            _ if at < input.len() => {
                let end = rng.usize(at..=input.len());
                let copy = input[at..end].to_vec();
                input.splice(end..end, copy);
            }
            _ => {}
        }
    }
}

/// Runs `check` on `input`; on a failure, keeps the input where the message says.
fn run(target: &str, check: fn(&[u8]), input: &[u8]) {
    if catch_unwind(AssertUnwindSafe(|| check(input))).is_err() {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-failures");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{target}-{:016x}", fastrand::u64(..)));
        std::fs::write(&path, input).unwrap();
        panic!(
            "fuzz target `{target}` failed on the input kept in {} (replay: cargo run -p \
             pitcrew-fuzz --features libfuzzer --bin {target} -- {0})",
            path.display()
        );
    }
}

#[test]
fn every_target_holds_on_its_corpus_and_random_mutations_of_it() {
    let seconds: u64 = std::env::var("PITCREW_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let seed = fastrand::u64(..);
    eprintln!("mutation seed {seed}; {seconds}s per target");
    let mut rng = fastrand::Rng::with_seed(seed);
    for &(target, check) in TARGETS {
        let inputs = corpus(target);
        assert!(!inputs.is_empty(), "no corpus for `{target}`");
        for (_, input) in &inputs {
            run(target, check, input);
        }
        let until = Instant::now() + Duration::from_secs(seconds);
        let mut runs = 0u64;
        while Instant::now() < until {
            let mut input = inputs[rng.usize(0..inputs.len())].1.clone();
            let other = &inputs[rng.usize(0..inputs.len())].1;
            mutate(&mut rng, &mut input, other);
            run(target, check, &input);
            runs += 1;
        }
        eprintln!("{target}: {} corpus inputs, {runs} mutations", inputs.len());
    }
}
