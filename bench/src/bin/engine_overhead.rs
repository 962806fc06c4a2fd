//! The engine's own cost per task: CPU time of the `pitcrew run` process and its git
//! subprocesses, outside the model call (a local zero-latency server answers at once) and
//! outside validation subprocesses (only the in-process rules run).
//!
//! ```sh
//! cargo build --release -p pitcrew -p pitcrew-bench
//! target/release/engine_overhead --tasks 10000 --workers 4
//! ```

#![allow(clippy::print_stdout)]

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use nix::sys::resource::{UsageWho, getrusage};
use pitcrew_testkit::{Reply, ScriptedServer, TempRepo};

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The `pitcrew` binary built next to this one.
fn pitcrew() -> PathBuf {
    let exe = std::env::current_exe().expect("own path");
    let binary = exe.parent().expect("a directory").join("pitcrew");
    assert!(
        binary.is_file(),
        "{} not found: build it with `cargo build --release -p pitcrew -p pitcrew-bench`",
        binary.display()
    );
    binary
}

fn children_cpu_secs() -> f64 {
    let usage = getrusage(UsageWho::RUSAGE_CHILDREN).expect("getrusage");
    let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    secs(usage.user_time()) + secs(usage.system_time())
}

fn main() {
    let tasks = arg("--tasks", 10_000);
    let workers = arg("--workers", 4);
    let server = ScriptedServer::start();
    server.respond_with(|_| Reply::content("```python path=out/generated.py\nVALUE = 1\n```\n"));
    let repo = TempRepo::with_files(&[("src/app.py", "def f():\n    return 1\n")]);
    repo.write(
        "pitcrew.toml",
        &format!(
            "[providers.bench]\nbase_url = \"{}\"\n\n[presets.bench]\nprovider = \"bench\"\nmodel = \"bench/zero-latency\"\n\n\
             [models]\ndefault = \"bench\"\nmax_iterations = 1\n\n[workers]\nretry_backoff_secs = 0.1\n\n\
             # Only in-process rules: no validation subprocess is measured.\n\
             [validation.rules]\ncustom = [\"file_exists\", \"not_empty\", \"syntax\", \"no_placeholders\"]\n",
            server.base_url()
        ),
    );
    repo.commit("configure");
    let batch = repo.path().join(".pitcrew-batch.jsonl");
    let line = "{\"kind\": \"custom\", \"description\": \"write out/generated.py\"}\n";
    std::fs::write(&batch, line.repeat(tasks as usize)).expect("batch written");
    let submit = Command::new(pitcrew())
        .current_dir(repo.path())
        .args([
            "submit",
            "--file",
            batch.to_str().expect("utf-8 path"),
            "--json",
        ])
        .output()
        .expect("submit runs");
    assert!(
        submit.status.success(),
        "{}",
        String::from_utf8_lossy(&submit.stderr)
    );

    let cpu_before = children_cpu_secs();
    let started = Instant::now();
    let run = Command::new(pitcrew())
        .current_dir(repo.path())
        .args(["run", "--workers", &workers.to_string(), "--json"])
        .output()
        .expect("run runs");
    let wall = started.elapsed().as_secs_f64();
    let cpu = children_cpu_secs() - cpu_before;
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&run.stdout).expect("run prints JSON");
    assert_eq!(summary["completed"].as_u64(), Some(tasks), "{summary}");
    assert_eq!(
        server.requests().len() as u64,
        tasks,
        "one model call per task"
    );

    println!("engine overhead: {tasks} tasks, {workers} workers against a zero-latency server");
    println!(
        "  CPU (pitcrew + its git subprocesses): {:.1} ms per task ({cpu:.1} s total)",
        cpu * 1000.0 / tasks as f64
    );
    println!(
        "  wall: {:.1} ms per task, {:.1} tasks/s ({wall:.1} s total)",
        wall * 1000.0 / tasks as f64,
        tasks as f64 / wall
    );
}
