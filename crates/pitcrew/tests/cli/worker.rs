//! `pitcrew worker`: serves the queue until stopped, then finishes what it holds.

use std::time::Duration;

use nix::sys::signal::Signal;
use pitcrew_testkit::Reply;

use crate::support::*;

#[test]
fn a_worker_picks_up_tasks_submitted_while_it_runs_and_stops_cleanly_on_sigterm() {
    let p = Project::new();
    p.server
        .respond_with(|_| Reply::content(&reply_with_file("tests/test_calc.py", GOOD_TEST)));
    let worker = p.spawn(&["worker", "--name", "w"]);
    let first = p.submit("src/calc.py", &[]);
    let second = p.submit("src/calc.py", &["--priority", "high"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while [&first, &second]
        .iter()
        .any(|id| p.task(id)["status"] != "completed")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the worker did not finish the tasks"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    signal(&worker, Signal::SIGTERM);
    let out = worker.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let stderr = stderr_of(&out);
    assert!(stderr.contains("stopping"), "{stderr}");
    assert!(stderr.contains("worker stopped: 2 completed"), "{stderr}");
}
