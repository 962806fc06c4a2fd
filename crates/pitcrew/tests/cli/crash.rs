//! A worker that dies or freezes while holding a lease delays its task; it never loses or
//! duplicates it.

use std::time::Duration;

use nix::sys::signal::Signal;
use pitcrew_testkit::Gate;

use crate::support::*;

const TESTS_FROM_FIRST_WORKER: &str =
    "from src.calc import double\n\n\ndef test_first():\n    assert double(1) == 2\n";

#[test]
fn a_killed_worker_s_task_is_completed_exactly_once_by_the_next_run() {
    let p = Project::new();
    let never = Gate::new();
    // The first worker's call never returns; the second run's call succeeds.
    let (id, mut first) = worker_stuck_in_a_call(&p, &never, "doomed", TESTS_FROM_FIRST_WORKER);
    assert_eq!(p.task(&id)["status"], "running");
    assert_eq!(p.task(&id)["lease_owner"], "doomed/0");
    signal(&first, Signal::SIGKILL);
    first.wait().unwrap();

    // Started at once: it waits for the lease (2 s) to expire, rescues the task and runs it.
    let out = p
        .cmd()
        .args(["run", "--name", "survivor"])
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("from worker `doomed/0` whose lease expired"),
        "{stderr}"
    );

    let task = p.task(&id);
    assert_eq!(task["status"], "completed");
    let attempts = p.attempts(&id);
    let outcomes: Vec<_> = attempts
        .iter()
        .map(|a| a["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["abandoned", "completed"]);
    assert_eq!(attempts[0]["worker"], "doomed/0");
    assert_eq!(attempts[0]["error_kind"], "lease_expired");
    assert_eq!(attempts[1]["worker"], "survivor/0");
    assert_eq!(p.pitcrew_branches(), [format!("pitcrew/{id}")]);
    assert_eq!(p.server.requests().len(), 2);
    // The dead worker's worktree was cleaned up by the next run.
    assert!(p.worktree_files().is_empty());
}

#[test]
fn a_frozen_worker_that_wakes_after_its_lease_was_rescued_cannot_write() {
    let p = Project::new();
    let release = Gate::new();
    let (id, frozen) = worker_stuck_in_a_call(&p, &release, "frozen", TESTS_FROM_FIRST_WORKER);
    signal(&frozen, Signal::SIGSTOP);

    let out = p
        .cmd()
        .args(["run", "--name", "awake"])
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    assert_eq!(p.task(&id)["status"], "completed");

    // The frozen worker now gets its (late) reply and resumes.
    release.open();
    signal(&frozen, Signal::SIGCONT);
    let late = frozen.wait_with_output().unwrap();
    let late_stderr = stderr_of(&late);
    assert!(late_stderr.contains("[lease lost]"), "{late_stderr}");
    assert!(!late_stderr.contains("[completed]"), "{late_stderr}");

    let attempts = p.attempts(&id);
    let outcomes: Vec<_> = attempts
        .iter()
        .map(|a| a["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["abandoned", "completed"]);
    assert_eq!(attempts[1]["worker"], "awake/0");
    // The branch holds the second worker's result, not the late one.
    assert_eq!(p.pitcrew_branches(), [format!("pitcrew/{id}")]);
    let content = p
        .repo
        .git(&["show", &format!("pitcrew/{id}:tests/test_calc.py")]);
    assert_eq!(content, GOOD_TEST.trim_end());
    assert_eq!(
        p.task(&id)["result_commit"].as_str().unwrap(),
        p.repo.git(&["rev-parse", &format!("pitcrew/{id}")])
    );
}
