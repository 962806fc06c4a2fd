//! What confinement adds to every command that runs generated code: the wall time of `true`
//! run unconfined, unconfined without network (`unshare --net`), confined, and confined without
//! network, 50 runs each after a warm-up, interleaved so that load on the machine affects all
//! four alike. Also one confined `python3 -c pass` against an unconfined one, the shape of a
//! validation command.
//!
//! `cargo run --release -p pitcrew-bench --bin sandbox_overhead [-- --runs N]` (default 50)

#![allow(clippy::print_stdout)]

use std::time::Instant;

use pitcrew_bench::{arg, report};
use pitcrew_sandbox::{CommandSpec, Confinement, confinement_available, run};

const RUNS: usize = 50;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let runs: usize = arg("--runs", RUNS);
    if let Err(e) = confinement_available().await {
        println!("confinement is unavailable here: {e}");
        return;
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let variants: [(&str, bool, bool); 4] = [
        ("true, unconfined", false, false),
        ("true, unconfined + unshare --net", false, true),
        ("true, confined", true, false),
        ("true, confined, no network", true, true),
    ];
    let spec = |program: &str, confined: bool, isolated: bool| {
        let mut spec = CommandSpec::new(program, dir.path()).isolate_network(isolated);
        if confined {
            spec = spec.confine(Confinement::new().write(dir.path()));
        }
        spec
    };
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    for round in 0..=runs {
        for (i, (_, confined, isolated)) in variants.iter().enumerate() {
            let started = Instant::now();
            let out = run(spec("true", *confined, *isolated)).await.expect("runs");
            assert!(out.success(), "{}", out.combined_tail(5));
            if round > 0 {
                samples[i].push(started.elapsed().as_secs_f64() * 1000.0);
            }
        }
    }
    for ((name, _, _), samples) in variants.iter().zip(&mut samples) {
        report(name, "ms", samples);
    }
    // A Python start, confined with its prefix readable, as validation runs it.
    // The real interpreter (not a version manager's shim) and its prefix.
    let found = std::process::Command::new("python3")
        .args([
            "-c",
            "import os, sys; print(os.path.realpath(sys.executable)); print(sys.base_prefix)",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).to_string());
    let Some((python, prefix)) = found
        .as_deref()
        .and_then(|text| text.trim().split_once('\n'))
        .map(|(p, x)| (p.to_string(), x.to_string()))
    else {
        println!("python3 is not available: the Python figures are left out");
        return;
    };
    let mut plain = Vec::new();
    let mut confined = Vec::new();
    for round in 0..=(runs / 5).max(1) {
        for (boxed, samples) in [(false, &mut plain), (true, &mut confined)] {
            let mut spec = CommandSpec::new(&python, dir.path()).args(["-c", "pass"]);
            if boxed {
                spec = spec.confine(Confinement::new().read(&prefix).write(dir.path()));
            }
            let started = Instant::now();
            let out = run(spec).await.expect("runs");
            assert!(out.success(), "{}", out.combined_tail(5));
            if round > 0 {
                samples.push(started.elapsed().as_secs_f64() * 1000.0);
            }
        }
    }
    report("python3 -c pass, unconfined", "ms", &mut plain);
    report("python3 -c pass, confined", "ms", &mut confined);
}
