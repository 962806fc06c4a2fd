//! How long the command line takes to answer on a big queue: wall time of
//! `pitcrew queue --json` (start the process, find the repository, load the configuration,
//! open and migrate-check the store, count the tasks, print, exit) in a repository whose
//! SQLite store holds 100,000 tasks.
//!
//! The store is the one the CLI opens for the repository by default
//! (`sqlite://.pitcrew/pitcrew.db` under its root, no `--store`), filled through
//! `pitcrew-store`'s API in large batches. A few untimed runs warm the page cache first; the
//! figures are the median and 90th percentile of the timed runs. The same on an empty store
//! shows what start-up costs before the queue's size counts.
//!
//! ```sh
//! cargo build --release -p pitcrew -p pitcrew-bench
//! target/release/cli_startup                      # --tasks 100000 --runs 30
//! ```

#![allow(clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use pitcrew_bench::{arg, median, pitcrew, quantile};
use pitcrew_core::{NewTask, Priority, TaskKind};
use pitcrew_store::{SqliteStore, Store};
use pitcrew_testkit::TempRepo;

/// Untimed runs before the timed ones.
const WARM_UP: usize = 3;
/// Tasks per submit transaction.
const BATCH: usize = 5_000;
/// Target from the issue.
const TARGET_MS: f64 = 50.0;

fn task(i: usize, repo: &Path, base_commit: &str) -> NewTask {
    NewTask {
        kind: TaskKind::UnitTest,
        description: format!("write unit tests for src/m{i}.py"),
        targets: vec![format!("src/m{i}.py")],
        repo: repo.display().to_string(),
        repo_url: None,
        base_commit: base_commit.to_string(),
        priority: Priority::ALL[i % Priority::ALL.len()],
        model: None,
        max_attempts: 3,
        idempotency_key: None,
        metadata: serde_json::json!({}),
    }
}

/// Submits `tasks` tasks to the store at `db`, in batches of `BATCH`.
fn fill(db: &Path, tasks: usize, repo: &Path, base_commit: &str) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        let store = SqliteStore::open(db).await.expect("the store opens");
        let all: Vec<NewTask> = (0..tasks).map(|i| task(i, repo, base_commit)).collect();
        for batch in all.chunks(BATCH) {
            store.submit(batch).await.expect("a batch is submitted");
        }
    });
}

/// One `pitcrew queue --json` in `repo`: its wall time in ms and the total it printed.
fn queue(repo: &Path) -> (f64, u64) {
    let started = Instant::now();
    let out = Command::new(pitcrew())
        .current_dir(repo)
        .env_remove("PITCREW_CONFIG")
        .args(["queue", "--json"])
        .output()
        .expect("pitcrew queue runs");
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    assert!(
        out.status.success(),
        "pitcrew queue failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("pitcrew queue --json prints JSON");
    (ms, printed["total"].as_u64().expect("a total"))
}

/// A repository whose store holds `tasks` tasks.
struct Filled {
    repo: TempRepo,
    db: PathBuf,
    fill_secs: f64,
}

fn filled(tasks: usize) -> Filled {
    let repo = TempRepo::with_files(&[("src/app.py", "def f():\n    return 1\n")]);
    let base_commit = repo.git(&["rev-parse", "HEAD"]);
    let db = repo.path().join(".pitcrew/pitcrew.db");
    let filling = Instant::now();
    fill(&db, tasks, repo.path(), &base_commit);
    Filled {
        fill_secs: filling.elapsed().as_secs_f64(),
        repo,
        db,
    }
}

/// Wall times in ms of `runs` timed runs after the warm-up, in a repository whose
/// store holds `tasks` tasks.
fn time_queue(filled: &Filled, tasks: usize, runs: usize) -> Vec<f64> {
    for _ in 0..WARM_UP {
        let (_, total) = queue(filled.repo.path());
        assert_eq!(
            total, tasks as u64,
            "the CLI reads the store that was filled"
        );
    }
    (0..runs).map(|_| queue(filled.repo.path()).0).collect()
}

/// One table row (sorting `samples`); the median.
fn print_row(label: &str, samples: &mut [f64]) -> f64 {
    let mid = median(samples).expect("at least one run");
    println!(
        "| {label} | {} | {mid:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms |",
        samples.len(),
        quantile(samples, 0.9),
        samples[0],
        samples[samples.len() - 1]
    );
    mid
}

fn main() {
    let tasks: usize = arg("--tasks", 100_000);
    let runs: usize = arg("--runs", 30);
    // An empty store first: what start-up costs before the queue's size counts.
    let empty = filled(0);
    let mut baseline = time_queue(&empty, 0, runs);
    let big = filled(tasks);
    let mut samples = time_queue(&big, tasks, runs);
    let megabytes = std::fs::metadata(&big.db).map_or(0.0, |m| m.len() as f64 / 1e6);

    println!(
        "cli startup: `pitcrew queue --json` in a repository whose SQLite store \
         (.pitcrew/pitcrew.db) holds {tasks} queued tasks ({megabytes:.1} MB, filled in {:.1} s), \
         and with an empty store; {runs} timed runs each after {WARM_UP} warm-up runs, wall time \
         from spawn to exit\n",
        big.fill_secs
    );
    println!("| tasks in the store | runs | median | p90 | min | max |");
    println!("|---|---|---|---|---|---|");
    print_row("0", &mut baseline);
    let mid = print_row(&tasks.to_string(), &mut samples);
    println!(
        "\ntarget: median < {TARGET_MS:.0} ms with {tasks} tasks: {}",
        if mid < TARGET_MS { "holds" } else { "MISSED" }
    );
}
