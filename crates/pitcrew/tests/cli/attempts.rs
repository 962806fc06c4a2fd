//! What counts as a task's attempt: only its own failures. Provider outages, pitcrew's own
//! workspace errors and a spent budget delay a task; they never use it up.

use std::time::{Duration, Instant};

use pitcrew_testkit::{Gate, Reply};
use serde_json::json;

use crate::support::*;

#[test]
fn a_provider_outage_longer_than_the_wait_delays_the_task_without_using_its_attempts() {
    let p = Project::new();
    // max_wait_secs is 5: the outage outlasts two whole waits.
    let outage_ends = Instant::now() + Duration::from_secs(12);
    p.server.respond_with(move |_| {
        if Instant::now() < outage_ends {
            Reply::status(
                503,
                json!({"error": {"message": "upstream overloaded", "code": 503}}),
            )
        } else {
            Reply::content(&reply_with_file("tests/test_calc.py", GOOD_TEST))
        }
    });
    let id = p.submit("src/calc.py", &["--max-attempts", "1"]);
    let out = p.cmd().args(["run"]).output().unwrap();
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(p.task(&id)["status"], "completed", "{stderr}");
    assert!(
        stderr.contains("waiting for"),
        "progress says what the task waits for: {stderr}"
    );
    let attempts = p.attempts(&id);
    assert!(attempts.len() >= 2, "{attempts:?}");
    let (last, waits) = attempts.split_last().unwrap();
    assert_eq!(last["outcome"], "completed");
    for wait in waits {
        assert_eq!(wait["error_kind"], "no_model_available", "{wait}");
    }
}

#[test]
fn an_unreachable_provider_is_named_at_once_and_fails_the_task_only_at_its_wait_deadline() {
    let p = Project::new();
    // Nothing listens on the provider's port any more.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let config = std::fs::read_to_string(p.path().join("pitcrew.toml")).unwrap();
    let unreachable = format!("http://127.0.0.1:{port}/v1");
    p.repo.write(
        "pitcrew.toml",
        &config.replace(&p.server.base_url(), &unreachable),
    );
    p.repo.commit("a provider that is down");
    let id = p.submit("src/calc.py", &[]);
    let started = Instant::now();
    let out = p
        .cmd()
        .args(["run"])
        .env("PITCREW_WORKERS_WAIT_DEADLINE_SECS", "8")
        .output()
        .unwrap();
    let stderr = stderr_of(&out);
    assert!(started.elapsed() < Duration::from_secs(60), "{stderr}");
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot be reached") && stderr.contains(&format!("127.0.0.1:{port}")),
        "says which provider cannot be reached: {stderr}"
    );
    let task = p.task(&id);
    assert_eq!(task["status"], "failed");
    assert!(
        task["last_error"].as_str().unwrap().contains("waited"),
        "{task}"
    );
}

#[test]
fn a_worktree_deleted_under_a_running_task_is_pitcrew_s_failure_retried_and_never_sent_to_the_model()
 {
    let p = Project::new();
    let gate = Gate::new();
    p.server
        .push(Reply::content(&reply_with_file("tests/test_calc.py", GOOD_TEST)).hold(&gate));
    p.server.push(Reply::content(&reply_with_file(
        "tests/test_calc.py",
        GOOD_TEST,
    )));
    let id = p.submit("src/calc.py", &["--max-attempts", "1"]);
    let run = p.spawn(&["run"]);
    assert!(p.server.wait_for_requests(1, Duration::from_secs(30)));
    // Someone cleans the cache while the model is writing.
    let worktrees = p.scratch.path().join("cache/pitcrew/worktrees");
    std::fs::remove_dir_all(&worktrees).unwrap();
    gate.open();
    let out = run.wait_with_output().unwrap();
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(p.task(&id)["status"], "completed");
    let requests = p.server.requests();
    assert_eq!(requests.len(), 2, "one call per attempt");
    // The second attempt starts afresh: no feedback blaming the model's reply.
    let messages = requests[1].body["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2, "system and task only");
    let first = &p.attempts(&id)[0];
    assert_eq!(first["error_kind"], "workspace", "{first}");
}

#[test]
fn prose_replies_fail_their_task_without_opening_the_model_s_circuit() {
    let p = Project::new();
    p.repo
        .write("src/other.py", "def triple(x):\n    return 3 * x\n");
    p.repo.commit("another module");
    p.server.respond_with(|request| {
        if request.prompt_text().contains("return 3 * x") {
            Reply::content(
                "I am sorry, but I cannot write tests for this module. It would be better to \
                 describe what the function should do first, and then decide how to test it.",
            )
        } else {
            Reply::content(&reply_with_file("tests/test_calc.py", GOOD_TEST))
        }
    });
    let prose = p.submit(
        "src/other.py",
        &["--priority", "high", "--max-attempts", "2"],
    );
    let calc = p.submit("src/calc.py", &[]);
    let out = p
        .cmd()
        .args(["run", "--workers", "1"])
        // Two infrastructure failures would open the circuit: six prose replies must not.
        .env("PITCREW_MODELS_FAILURE_THRESHOLD", "2")
        .env("PITCREW_MODELS_MAX_ITERATIONS", "3")
        .output()
        .unwrap();
    let stderr = stderr_of(&out);
    assert_eq!(p.task(&prose)["status"], "failed", "{stderr}");
    assert_eq!(p.task(&calc)["status"], "completed", "{stderr}");
    assert!(p.server.requests().len() >= 4, "{stderr}");
    let models = p.json(&["models"]);
    let local = (models.as_array().unwrap().iter())
        .find(|m| m["name"] == "local")
        .unwrap_or_else(|| panic!("{models}"));
    assert_eq!(local["circuit"], "closed", "{local}");
    assert!(local["cooldown_until"].is_null(), "{local}");
}

#[test]
fn a_result_branch_a_crash_kept_from_being_made_is_restored_by_a_run_with_nothing_to_do() {
    let p = Project::new();
    p.server.push(Reply::content(&reply_with_file(
        "tests/test_calc.py",
        GOOD_TEST,
    )));
    let id = p.submit("src/calc.py", &[]);
    p.cmd().arg("run").assert().success();
    let branch = format!("pitcrew/{id}");
    // What a crash between the store's finish and the branch leaves: the commit, no branch.
    p.repo.git(&["branch", "-D", &branch]);
    assert!(!p.pitcrew_branches().contains(&branch));
    let out = p.cmd().arg("run").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    assert!(
        p.pitcrew_branches().contains(&branch),
        "{}",
        stderr_of(&out)
    );
}

#[test]
fn a_task_the_store_shows_finished_already_has_its_branch() {
    let p = Project::new();
    p.server.respond_with(|_| {
        Reply::content(&reply_with_file("tests/test_calc.py", GOOD_TEST))
            .delay(Duration::from_millis(20))
    });
    let ids: Vec<String> = (0..12)
        .map(|i| p.submit("src/calc.py", &["--idempotency-key", &format!("k{i}")]))
        .collect();
    let mut run = p.spawn(&["run", "--workers", "4"]);
    // Watched from outside while it runs: the store is read first, the branches after, so
    // every task seen finished must have a branch by then.
    let mut seen = 0;
    while run.try_wait().unwrap().is_none() {
        let completed = p.json(&["list", "--status", "completed"]);
        let branches = p.pitcrew_branches();
        for task in completed.as_array().unwrap() {
            let branch = format!("pitcrew/{}", task["id"].as_str().unwrap());
            assert!(branches.contains(&branch), "{branch} missing: {branches:?}");
        }
        seen = seen.max(completed.as_array().unwrap().len());
    }
    assert!(run.wait().unwrap().success());
    assert_eq!(p.pitcrew_branches().len(), ids.len());
    assert!(seen > 0, "the run ended before anything was observed");
}

#[test]
fn a_branch_left_for_a_task_that_ended_without_a_result_is_removed() {
    let p = Project::new();
    let cancelled = p.submit("src/calc.py", &["--idempotency-key", "a"]);
    let done = p.submit("src/calc.py", &["--idempotency-key", "b"]);
    p.json(&["cancel", &cancelled]);
    // What a worker killed between making the branch and recording the result leaves, once
    // the task has ended otherwise.
    let stale = format!("pitcrew/{cancelled}");
    p.repo.git(&["branch", &stale, "HEAD"]);
    p.server.push(Reply::content(&reply_with_file(
        "tests/test_calc.py",
        GOOD_TEST,
    )));
    let out = p.cmd().arg("run").output().unwrap();
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(
        p.pitcrew_branches(),
        [format!("pitcrew/{done}")],
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("removed branch {stale}")),
        "{stderr}"
    );
}
