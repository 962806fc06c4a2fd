//! The execution engine end to end: refinement rounds, time limits, budgets, graceful stops,
//! live output, the reply cache and possible bugs.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use pitcrew_testkit::Reply;

use crate::support::*;

const NO_ASSERTIONS: &str = "from src.calc import double\n\n\ndef test_double():\n    double(3)\n";

#[test]
fn a_reply_that_fails_validation_is_refined_with_the_findings_and_accepted_in_round_two() {
    let p = Project::new();
    p.server.push(Reply::content(&reply_with_file(
        "tests/test_calc.py",
        NO_ASSERTIONS,
    )));
    p.server.push(Reply::content(&reply_with_file(
        "tests/test_calc.py",
        GOOD_TEST,
    )));
    let id = p.submit("src/calc.py", &[]);
    let out = p
        .cmd()
        .env("PITCREW_MODELS_MAX_ITERATIONS", "3")
        .arg("run")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));

    let requests = p.server.requests();
    assert_eq!(requests.len(), 2);
    // The second call carries the first reply and what was wrong with it.
    let messages = requests[1].body["messages"].as_array().unwrap();
    assert_eq!(
        messages.len(),
        4,
        "system, task, the first reply, the feedback"
    );
    assert_eq!(messages[2]["role"], "assistant");
    assert!(
        messages[2]["content"]
            .as_str()
            .unwrap()
            .contains("double(3)")
    );
    let feedback = messages[3]["content"].as_str().unwrap();
    assert!(
        feedback.contains("did not pass the checks (attempt 1 of 3)"),
        "{feedback}"
    );
    assert!(
        feedback.contains("[assertions] tests/test_calc.py"),
        "{feedback}"
    );

    let attempt = &p.attempts(&id)[0];
    assert_eq!(attempt["outcome"], "completed");
    let iterations = attempt["details"]["iterations"].as_array().unwrap();
    let outcomes: Vec<_> = iterations
        .iter()
        .map(|i| i["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["rejected", "accepted"]);
    assert_eq!(iterations[0]["findings"][0]["rule"], "assertions");
    assert!(attempt["quality"].as_f64().unwrap() > 0.5);
    assert_eq!(
        p.repo
            .git(&["show", &format!("pitcrew/{id}:tests/test_calc.py")]),
        GOOD_TEST.trim_end()
    );
}

#[test]
fn a_task_that_never_passes_fails_after_max_iterations_with_every_round_recorded() {
    let p = Project::new();
    for _ in 0..3 {
        p.server.push(Reply::content(&reply_with_file(
            "tests/test_calc.py",
            NO_ASSERTIONS,
        )));
    }
    let id = p.submit("src/calc.py", &[]);
    let out = p
        .cmd()
        .env("PITCREW_MODELS_MAX_ITERATIONS", "3")
        .arg("run")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    let task = p.task(&id);
    assert_eq!(task["status"], "failed");
    assert_eq!(task["error_kind"], "validation_failed");
    assert!(
        task["last_error"]
            .as_str()
            .unwrap()
            .contains("[assertions]")
    );
    let attempts = p.attempts(&id);
    assert_eq!(
        attempts.len(),
        1,
        "validation failures are not retried as new attempts"
    );
    let iterations = attempts[0]["details"]["iterations"].as_array().unwrap();
    assert_eq!(iterations.len(), 3);
    for (n, iteration) in iterations.iter().enumerate() {
        assert_eq!(iteration["number"], n + 1);
        assert_eq!(iteration["outcome"], "rejected");
        assert_eq!(iteration["model"], "local");
        assert!(iteration["usage"]["tokens_out"].as_u64().unwrap() > 0);
        assert!(!iteration["findings"].as_array().unwrap().is_empty());
    }
}

#[test]
fn a_stalled_generation_hits_the_task_time_limit() {
    let p = Project::new();
    p.server
        .respond_with(|_| Reply::content("never in time").delay(Duration::from_secs(60)));
    let id = p.submit("src/calc.py", &["--max-attempts", "1"]);
    let started = Instant::now();
    let out = p
        .cmd()
        .env("PITCREW_WORKERS_TASK_TIMEOUT_SECS", "2")
        .arg("run")
        .output()
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    let task = p.task(&id);
    assert_eq!(task["error_kind"], "timeout");
    assert!(
        task["last_error"]
            .as_str()
            .unwrap()
            .contains("task time limit of 2s"),
        "{task}"
    );
}

#[test]
fn a_run_stops_claiming_when_its_budget_is_spent() {
    let p = Project::new();
    p.server.respond_with(|_| {
        Reply::content(&reply_with_file("tests/test_calc.py", GOOD_TEST)).with_usage(
            1000,
            500,
            Some(0.6),
        )
    });
    let ids: Vec<String> = (0..3).map(|_| p.submit("src/calc.py", &[])).collect();
    let out = p
        .cmd()
        .args(["run", "--workers", "1", "--budget", "1.0", "--json"])
        .output()
        .unwrap();
    let stderr = stderr_of(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a run its budget cut short did not do its job: {stderr}"
    );
    assert!(stderr.contains("the run's budget is spent"), "{stderr}");
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["budget_spent"], true);
    assert_eq!(summary["completed"], 2);
    assert!(
        (summary["cost_usd"].as_f64().unwrap() - 1.2).abs() < 1e-9,
        "{summary}"
    );
    let statuses: Vec<_> = ids
        .iter()
        .map(|id| p.task(id)["status"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(statuses, ["completed", "completed", "queued"]);
    assert_eq!(
        p.server.requests().len(),
        2,
        "no call after the budget was spent"
    );
}

#[test]
fn sigint_mid_run_then_run_again_completes_every_task_exactly_once() {
    let p = Project::new();
    p.server.respond_with(|_| {
        Reply::content(&reply_with_file("tests/test_calc.py", GOOD_TEST))
            .delay(Duration::from_millis(300))
    });
    let batch = p.scratch.path().join("tasks.jsonl");
    std::fs::write(
        &batch,
        "{\"kind\": \"unit_test\", \"target\": \"src/calc.py\"}\n".repeat(20),
    )
    .unwrap();
    p.json(&["submit", "--file", batch.to_str().unwrap()]);

    // Long enough for running tasks to finish: the give-back path has its own test.
    let first = p.spawn_with(
        &["run", "--workers", "2"],
        &[("PITCREW_WORKERS_SHUTDOWN_GRACE_SECS", "60")],
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    while p
        .json(&["list", "--status", "completed"])
        .as_array()
        .unwrap()
        .len()
        < 4
    {
        assert!(Instant::now() < deadline, "no progress");
        std::thread::sleep(Duration::from_millis(100));
    }
    signal(&first, Signal::SIGINT);
    let out = first.wait_with_output().unwrap();
    let stderr = stderr_of(&out);
    assert!(
        stderr.contains("stopping: no new tasks are claimed"),
        "{stderr}"
    );
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let done_first = p
        .json(&["list", "--status", "completed"])
        .as_array()
        .unwrap()
        .len();
    assert!(done_first < 20, "the run did not stop early");
    assert!(
        p.json(&["list", "--status", "running"])
            .as_array()
            .unwrap()
            .is_empty(),
        "running tasks were left behind"
    );

    p.cmd().arg("run").assert().code(0);
    let tasks = p.json(&["list"]);
    for task in tasks.as_array().unwrap() {
        assert_eq!(task["status"], "completed");
        let attempts = p.attempts(task["id"].as_str().unwrap());
        assert_eq!(attempts.len(), 1, "{task}");
        assert_eq!(attempts[0]["outcome"], "completed");
    }
    assert_eq!(p.pitcrew_branches().len(), 20);
    assert_eq!(p.server.requests().len(), 20);
}

#[test]
fn follow_prints_a_task_s_generation_as_it_streams() {
    let p = Project::new();
    p.server.push(Reply::content(&reply_with_file(
        "tests/test_calc.py",
        GOOD_TEST,
    )));
    let id = p.submit("src/calc.py", &[]);
    let out = p
        .cmd()
        .args(["run", "--follow", &id[..13]])
        .output()
        .unwrap();
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(p.server.requests()[0].stream(), "the call was not streamed");
    assert!(stderr.contains("  │ def test_sign():"), "{stderr}");
    assert!(stderr.contains("  │     assert sign(-5) == -1"), "{stderr}");
}

#[test]
fn cached_replies_are_reused_at_no_cost_and_reported_as_such() {
    let p = Project::new();
    p.server.push(
        Reply::content(&reply_with_file("tests/test_calc.py", GOOD_TEST)).with_usage(
            100,
            50,
            Some(0.25),
        ),
    );
    let first = p.submit("src/calc.py", &[]);
    p.cmd().args(["run", "--cache"]).assert().code(0);
    // The same task again, e.g. after a crash: no second call, no second bill.
    let second = p.submit("src/calc.py", &[]);
    let out = p.cmd().args(["run", "--cache", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["cost_usd"], 0.0);
    assert_eq!(p.server.requests().len(), 1);
    let attempt = &p.attempts(&second)[0];
    assert_eq!(attempt["details"]["cache_hits"], 1);
    assert_eq!(attempt["details"]["iterations"][0]["cache_hit"], true);
    assert_eq!(p.attempts(&first)[0]["details"]["cache_hits"], 0);

    let report = p
        .cmd()
        .args(["report", "--format", "json"])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&report.stdout).unwrap();
    assert_eq!(report["totals"]["cache_hits"], 1);
    assert_eq!(report["totals"]["completed"], 2);
    let run_id = summary["run_id"].as_str().unwrap();
    let markdown = p.cmd().args(["report", "--run", run_id]).output().unwrap();
    let text = stdout_of(&markdown);
    assert!(
        text.contains(&format!("# pitcrew report: run {run_id}")),
        "{text}"
    );
    assert!(text.contains("1 tasks: 1 completed"), "{text}");
    assert!(text.contains("1 cached reply"), "{text}");
}

#[test]
fn a_test_that_fails_against_the_current_code_is_kept_as_a_possible_bug() {
    let p = Project::new();
    let wrong =
        "from src.calc import double\n\n\ndef test_double_of_two():\n    assert double(2) == 5\n";
    p.server.push(Reply::content(&reply_with_file(
        "tests/test_calc.py",
        wrong,
    )));
    let id = p.submit("src/calc.py", &[]);
    let out = p.cmd().arg("run").output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    assert!(
        stdout_of(&out).contains("0 completed, 0 failed, 1 possible bugs"),
        "{}",
        stdout_of(&out)
    );
    let task = p.task(&id);
    assert_eq!(task["status"], "possible_bug");
    assert!(
        task["last_error"].as_str().unwrap().contains("assert"),
        "{task}"
    );
    let listed = p.json(&["list", "--status", "possible-bug"]);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    // Kept for a human: the branch holds the failing test.
    assert_eq!(
        p.repo
            .git(&["show", &format!("pitcrew/{id}:tests/test_calc.py")]),
        wrong.trim_end()
    );
}

#[test]
fn a_stop_gives_a_task_that_outlasts_the_grace_period_back_to_the_queue() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let p = Project::new();
    let calls = AtomicUsize::new(0);
    p.server.respond_with(move |_| {
        let reply = Reply::content(&reply_with_file("tests/test_calc.py", GOOD_TEST));
        // The first call hangs far past the grace period; later ones answer at once.
        if calls.fetch_add(1, Ordering::SeqCst) == 0 {
            reply.delay(Duration::from_secs(60))
        } else {
            reply
        }
    });
    let id = p.submit("src/calc.py", &["--max-attempts", "1"]);
    let child = p.spawn(&["run"]);
    assert!(p.server.wait_for_requests(1, Duration::from_secs(20)));
    let stopped = Instant::now();
    signal(&child, Signal::SIGINT);
    let out = child.wait_with_output().unwrap();
    let elapsed = stopped.elapsed();
    let stderr = stderr_of(&out);
    // The grace period is 1 s in these tests.
    assert!(
        elapsed < Duration::from_secs(15),
        "the stop took {elapsed:?}: {stderr}"
    );
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("[given back]"), "{stderr}");

    let task = p.task(&id);
    assert_eq!(task["status"], "queued");
    assert_eq!(task["error_kind"], "interrupted");
    assert_eq!(
        task["max_attempts"], 2,
        "the interrupted attempt must not count"
    );
    p.cmd().arg("run").assert().code(0);
    let outcomes: Vec<_> = p
        .attempts(&id)
        .iter()
        .map(|a| a["outcome"].clone())
        .collect();
    assert_eq!(outcomes, ["abandoned", "completed"]);
}
