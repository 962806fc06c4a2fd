//! Stopping pitcrew while generated code runs: `validate`, `run` and `worker` kill the
//! sandboxed processes and remove their scratch directories on SIGINT and SIGTERM.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use pitcrew_testkit::Reply;

use crate::support::*;

/// A test that passes after sleeping far longer than any test here waits.
const SLOW_TEST: &str = "\
import time
from src.calc import double


def test_double_slowly():
    time.sleep(600)
    assert double(3) == 6
";

/// The live processes of the machine whose working directory is under `dir`.
fn processes_in(dir: &Path) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let alive = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| !s.rsplit_once(") ").is_some_and(|(_, r)| r.starts_with('Z')));
            alive
                && std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|c| c.starts_with(dir))
        })
        .collect()
}

/// Whether pytest runs in a worktree of `p`: the generated test is running.
fn test_running(p: &Project) -> bool {
    processes_in(&worktrees(p)).iter().any(|pid| {
        std::fs::read(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|c| String::from_utf8_lossy(&c).contains("pytest"))
    })
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Where pitcrew keeps this project's worktrees.
fn worktrees(p: &Project) -> PathBuf {
    p.scratch.path().join("cache/pitcrew/worktrees")
}

/// Waits for `child` to exit; returns its exit code.
fn exit_code(child: &mut Child, timeout: Duration) -> Option<i32> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        assert!(start.elapsed() < timeout, "pitcrew did not exit");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// After a stop: no process is left in a worktree, no worktree and no scratch directory.
fn assert_clean(p: &Project, tmp: &Path) {
    wait_for(
        "the sandboxed processes to die",
        Duration::from_secs(5),
        || processes_in(&worktrees(p)).is_empty(),
    );
    let left: Vec<PathBuf> = std::fs::read_dir(tmp)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "scratch left behind: {left:?}");
    assert!(p.worktree_files().is_empty(), "{:?}", p.worktree_files());
}

#[test]
fn validate_stops_cleanly_on_sigterm_and_sigint() {
    for signal_sent in [Signal::SIGTERM, Signal::SIGINT] {
        let p = Project::new();
        p.repo.write("tests/test_calc.py", SLOW_TEST);
        let tmp = tempfile::tempdir().unwrap();
        let tmp_dir = tmp.path().to_string_lossy().into_owned();
        let mut child = p.spawn_with(
            &["validate", "tests/test_calc.py", "--target", "src/calc.py"],
            &[("TMPDIR", &tmp_dir)],
        );
        wait_for("the test to run", Duration::from_secs(30), || {
            test_running(&p)
        });
        signal(&child, signal_sent);
        assert_eq!(exit_code(&mut child, Duration::from_secs(10)), Some(130));
        assert_clean(&p, tmp.path());
    }
}

#[test]
fn run_gives_a_task_back_and_cleans_up_when_signalled_twice() {
    let p = Project::new();
    p.server.push(Reply::content(&reply_with_file(
        "tests/test_calc.py",
        SLOW_TEST,
    )));
    let id = p.submit("src/calc.py", &[]);
    let tmp = tempfile::tempdir().unwrap();
    let tmp_dir = tmp.path().to_string_lossy().into_owned();
    let mut child = p.spawn_with(
        &["run"],
        &[
            ("TMPDIR", &tmp_dir),
            ("PITCREW_WORKERS_SHUTDOWN_GRACE_SECS", "600"),
        ],
    );
    wait_for("the test to run", Duration::from_secs(30), || {
        test_running(&p)
    });
    signal(&child, Signal::SIGTERM);
    std::thread::sleep(Duration::from_millis(300));
    // Still finishing: the grace period is long.
    assert!(child.try_wait().unwrap().is_none());
    signal(&child, Signal::SIGINT);
    exit_code(&mut child, Duration::from_secs(15));
    assert_clean(&p, tmp.path());
    let task = p.task(&id);
    assert_eq!(task["status"], "queued", "{task:#}");
}

#[test]
fn a_worker_cleans_up_after_its_grace_period() {
    let p = Project::new();
    p.server.push(Reply::content(&reply_with_file(
        "tests/test_calc.py",
        SLOW_TEST,
    )));
    let id = p.submit("src/calc.py", &[]);
    let tmp = tempfile::tempdir().unwrap();
    let tmp_dir = tmp.path().to_string_lossy().into_owned();
    let mut child = p.spawn_with(&["worker"], &[("TMPDIR", &tmp_dir)]);
    wait_for("the test to run", Duration::from_secs(30), || {
        test_running(&p)
    });
    signal(&child, Signal::SIGTERM);
    assert_eq!(exit_code(&mut child, Duration::from_secs(15)), Some(0));
    assert_clean(&p, tmp.path());
    assert_eq!(p.task(&id)["status"], "queued");
}
