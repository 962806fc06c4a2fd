//! The engine's own cost per task: CPU time of the `pitcrew run` process and its git
//! subprocesses, outside the model call (a local zero-latency server answers at once) and
//! outside validation subprocesses (only the in-process rules run).
//!
//! ```sh
//! cargo build --release -p pitcrew -p pitcrew-bench
//! target/release/engine_overhead --tasks 2000 --workers 4
//! # the same tasks, each targeting a module of a repository holding Python's standard library
//! target/release/engine_overhead --tasks 300 --workers 2 --stdlib
//! ```

#![allow(clippy::print_stdout)]

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use nix::sys::wait::{Id, WaitPidFlag, waitid};
use pitcrew_bench::{arg, flag, pitcrew};
use pitcrew_testkit::{Reply, ScriptedServer, TempRepo};

/// The Python files of this machine's `python3` standard library (tests and site-packages
/// left out), as (path in the repository, content).
fn stdlib_files() -> Vec<(String, String)> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_paths()['stdlib'])",
        ])
        .output()
        .expect("python3 runs");
    let root = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let mut files = Vec::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("stdlib readable").flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                if !matches!(name.as_str(), "site-packages" | "__pycache__") {
                    dirs.push(path);
                }
            } else if name.ends_with(".py")
                && let Ok(text) = std::fs::read_to_string(&path)
            {
                let relative = path.strip_prefix(&root).expect("under the root");
                files.push((format!("lib/{}", relative.display()), text));
            }
        }
    }
    files.sort();
    files
}

/// CPU seconds of the process `pid` itself and of the children it waited for, read from
/// `/proc` while it is a zombie (exited, not yet reaped).
fn own_and_children_cpu_secs(pid: u32) -> (f64, f64) {
    waitid(
        Id::Pid(nix::unistd::Pid::from_raw(pid as i32)),
        WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT,
    )
    .expect("waitid");
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat readable");
    // Fields after the command name (which may hold spaces) in parentheses.
    let fields: Vec<f64> = stat
        .rsplit_once(')')
        .expect("stat format")
        .1
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0.0))
        .collect();
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .expect("sysconf")
        .expect("CLK_TCK") as f64;
    // utime, stime, cutime, cstime are fields 14–17 of the whole line, 12–15 after the name.
    (
        (fields[11] + fields[12]) / ticks,
        (fields[13] + fields[14]) / ticks,
    )
}

/// CPU and wall time of one `pitcrew run` that completes every task of a batch.
struct Measured {
    own_cpu: f64,
    subprocess_cpu: f64,
    wall: f64,
}

/// Submits `lines` (a JSONL batch) in `repo` and measures a `pitcrew run` draining it.
fn run_batch(repo: &TempRepo, lines: &str, workers: u64) -> Measured {
    let batch = repo.path().join(".pitcrew-batch.jsonl");
    std::fs::write(&batch, lines).expect("batch written");
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
    let started = Instant::now();
    // Output goes to files: the process is measured before it is reaped, so nothing may
    // wait on a full pipe.
    let stdout = tempfile::tempfile().expect("temporary file");
    let stderr = tempfile::tempfile().expect("temporary file");
    let mut child = Command::new(pitcrew())
        .current_dir(repo.path())
        .args(["run", "--workers", &workers.to_string(), "--json"])
        .stdout(stdout.try_clone().expect("clone"))
        .stderr(stderr.try_clone().expect("clone"))
        .spawn()
        .expect("run starts");
    let (own_cpu, subprocess_cpu) = own_and_children_cpu_secs(child.id());
    let status = child.wait().expect("run ends");
    let wall = started.elapsed().as_secs_f64();
    let read = |mut file: std::fs::File| {
        use std::io::{Read, Seek};
        let mut text = String::new();
        file.seek(std::io::SeekFrom::Start(0)).expect("seek");
        file.read_to_string(&mut text).expect("read");
        text
    };
    assert!(status.success(), "{}", read(stderr));
    let summary: serde_json::Value = serde_json::from_str(&read(stdout)).expect("run prints JSON");
    let tasks = lines.lines().count() as u64;
    assert_eq!(summary["completed"].as_u64(), Some(tasks), "{summary}");
    Measured {
        own_cpu,
        subprocess_cpu,
        wall,
    }
}

fn main() {
    let tasks: u64 = arg("--tasks", 10_000);
    let workers: u64 = arg("--workers", 4);
    let large = flag("--stdlib");
    let server = ScriptedServer::start();
    server.respond_with(|_| Reply::content("```python path=out/generated.py\nVALUE = 1\n```\n"));
    let files = if large {
        stdlib_files()
    } else {
        vec![(
            "src/app.py".to_string(),
            "def f():\n    return 1\n".to_string(),
        )]
    };
    let borrowed: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    let repo = TempRepo::with_files(&borrowed);
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
    // Each task targets a module (round the repository's files), so context gathering — the
    // part that grows with the repository — is in the figure. Modules over 16 KB are left
    // out: the whole target goes into the prompt, and the benchmark's model has a 32k context.
    let targets: Vec<&str> = files
        .iter()
        .filter(|(_, content)| content.len() <= 16 * 1024)
        .map(|(path, _)| path.as_str())
        .collect();
    let batch = |count: usize, offset: usize| -> String {
        (offset..offset + count)
            .map(|i| {
                let target = targets[i * 7919 % targets.len()];
                format!(
                    "{{\"kind\": \"custom\", \"description\": \"write out/generated.py\", \"targets\": [{target:?}]}}\n"
                )
            })
            .collect()
    };
    // One task first: the first task on a new commit also indexes the repository (once per
    // commit, kept for later runs), which the per-task figure should not spread out.
    let first = run_batch(&repo, &batch(1, tasks as usize), 1);
    let measured = run_batch(&repo, &batch(tasks as usize, 0), workers);
    assert_eq!(
        server.requests().len() as u64,
        tasks + 1,
        "one model call per task"
    );
    let (cpu, own_cpu, subprocess_cpu, wall) = (
        measured.own_cpu + measured.subprocess_cpu,
        measured.own_cpu,
        measured.subprocess_cpu,
        measured.wall,
    );
    let per_task = |secs: f64| secs * 1000.0 / tasks as f64;
    println!(
        "engine overhead: {tasks} tasks, {workers} workers against a zero-latency server, \
         repository of {} files",
        files.len() + 1
    );
    println!(
        "  CPU (pitcrew + its git subprocesses): {:.1} ms per task ({cpu:.1} s total)",
        per_task(cpu)
    );
    println!(
        "    pitcrew itself {:.1} ms, its subprocesses (git) {:.1} ms per task",
        per_task(own_cpu),
        per_task(subprocess_cpu)
    );
    println!(
        "  before it, a run of one task on the same commit (indexing the repository): \
         pitcrew {:.0} ms, git {:.0} ms of CPU, {:.2} s wall",
        first.own_cpu * 1000.0,
        first.subprocess_cpu * 1000.0,
        first.wall
    );
    println!(
        "  wall: {:.1} ms per task, {:.1} tasks/s ({wall:.1} s total)",
        wall * 1000.0 / tasks as f64,
        tasks as f64 / wall
    );
}
