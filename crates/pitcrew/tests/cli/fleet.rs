//! Worker processes on one PostgreSQL store sharing a provider account's quota and a run's
//! budget: together they stay within both.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use pitcrew_testkit::Reply;
use serde_json::{Value, json};

use crate::support::*;

/// Writes `n` unit-test tasks on src/calc.py to a batch file and submits it.
fn submit_batch(p: &Project, n: usize) {
    let batch = p.scratch.path().join("tasks.jsonl");
    let lines: Vec<String> = (0..n)
        .map(|i| format!("{{\"kind\": \"unit_test\", \"target\": \"src/calc.py\", \"idempotency_key\": \"t{i}\"}}"))
        .collect();
    std::fs::write(&batch, lines.join("\n")).unwrap();
    let submitted = p.json(&["submit", "--file", batch.to_str().unwrap()]);
    assert_eq!(submitted.as_array().unwrap().len(), n);
}

fn tasks_with(p: &Project, status: &str) -> usize {
    let tasks = p.json(&["list"]);
    (tasks.as_array().unwrap().iter())
        .filter(|t| t["status"] == status)
        .count()
}

const QUOTA_RPM: usize = 6;

#[test]
fn four_workers_share_one_provider_quota_without_a_429() {
    let Some(base_url) = postgres_or_skip("the fleet quota test") else {
        return;
    };
    let schema = PgSchema::create(&base_url, "cli");
    // The account allows QUOTA_RPM requests a minute whatever the model; the registry knows it.
    let p = Project::with_config(&format!(
        "\n[store]\nurl = \"{}\"\n\n[validation.rules]\nunit_test = [\"file_exists\", \"not_empty\", \"syntax\"]\n\n\
         [[registry.quotas]]\nname = \"account\"\nprovider = \"local\"\nrpm = {QUOTA_RPM}\n",
        schema.store_url()
    ));
    p.cmd().arg("migrate").assert().success();
    let tasks = QUOTA_RPM + 3;
    submit_batch(&p, tasks);

    // The provider enforces the quota over a sliding minute, as OpenRouter does.
    let accepted: Arc<Mutex<VecDeque<Instant>>> = Arc::default();
    let refused = Arc::new(Mutex::new(0usize));
    let (seen, limited) = (Arc::clone(&accepted), Arc::clone(&refused));
    p.server.respond_with(move |_| {
        let mut seen = seen.lock().unwrap();
        let now = Instant::now();
        while seen
            .front()
            .is_some_and(|t| now - *t >= Duration::from_secs(60))
        {
            seen.pop_front();
        }
        if seen.len() >= QUOTA_RPM {
            *limited.lock().unwrap() += 1;
            return Reply::status(
                429,
                json!({"error": {"message": "Rate limit exceeded: account", "code": 429}}),
            )
            .header("retry-after", "60");
        }
        seen.push_back(now);
        Reply::content(&reply_with_file("tests/test_calc.py", GOOD_TEST))
    });

    // Each process could take every task at once; only the shared count holds them back.
    let env = [("PITCREW_MODELS_MAX_WAIT_SECS", "120")];
    let workers: Vec<_> = (0..4)
        .map(|n| {
            p.spawn_with(
                &["worker", "--workers", "3", "--name", &format!("w{n}")],
                &env,
            )
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(200);
    while tasks_with(&p, "completed") < tasks {
        assert!(
            Instant::now() < deadline,
            "the queue was not drained: {} of {tasks} completed",
            tasks_with(&p, "completed")
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    for worker in &workers {
        signal(worker, Signal::SIGTERM);
    }
    for worker in workers {
        let out = worker.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    }

    assert_eq!(
        *refused.lock().unwrap(),
        0,
        "the provider refused a request"
    );
    let times: Vec<Instant> = p.server.requests().iter().map(|r| r.received_at).collect();
    assert_eq!(times.len(), tasks, "one request per task");
    for window in times.windows(QUOTA_RPM + 1) {
        assert!(
            window[QUOTA_RPM] - window[0] >= Duration::from_secs(60),
            "more than {QUOTA_RPM} requests within a minute"
        );
    }
    // Waiting for the quota used no attempt.
    for task in p.json(&["list"]).as_array().unwrap() {
        let attempts = p.attempts(task["id"].as_str().unwrap());
        let failed: Vec<&Value> = (attempts.iter())
            .filter(|a| a["outcome"] == "failed")
            .collect();
        assert!(
            failed.iter().all(|a| a["error_kind"] != "rate_limit"),
            "{attempts:?}"
        );
    }
}

#[test]
fn workers_of_one_run_never_spend_more_than_its_budget_together() {
    let Some(base_url) = postgres_or_skip("the fleet budget test") else {
        return;
    };
    let schema = PgSchema::create(&base_url, "cli");
    // A paid model: 1000 prompt and 100 completion tokens at $1 per million cost $0.0011 a
    // call; a call reserves what its full reply allowance could cost first.
    let p = Project::with_config(&format!(
        "\n[store]\nurl = \"{}\"\n\n[validation.rules]\nunit_test = [\"file_exists\", \"not_empty\", \"syntax\"]\n\n\
         [[registry.models]]\nname = \"priced\"\nprovider = \"local\"\nid = \"{MODEL_ID}\"\ncontext = 32000\n\
         price_in = 0.000001\nprice_out = 0.000001\n",
        schema.store_url()
    ));
    p.cmd().arg("migrate").assert().success();
    let tasks = 40;
    submit_batch(&p, tasks);
    p.server.respond_with(|_| {
        Reply::content(&reply_with_file("tests/test_calc.py", GOOD_TEST))
            .with_usage(1000, 100, None)
            .delay(Duration::from_millis(100))
    });

    let budget = 0.03;
    let env = [
        ("PITCREW_MODELS_DEFAULT", "priced"),
        ("PITCREW_MODELS_MAX_TOKENS", "2000"),
    ];
    let runs: Vec<_> = (0..4)
        .map(|n| {
            p.spawn_with(
                &[
                    "run",
                    "--workers",
                    "2",
                    "--name",
                    &format!("w{n}"),
                    "--run",
                    "shared",
                    "--budget",
                    &budget.to_string(),
                ],
                &env,
            )
        })
        .collect();
    for run in runs {
        let out = run.wait_with_output().unwrap();
        let stdout = stdout_of(&out);
        if tasks_with(&p, "queued") > 0 {
            assert!(
                stdout.contains("budget is spent"),
                "a run the budget stopped says so: {stdout}"
            );
        }
    }

    let spent_by = |p: &Project| {
        let report = p.json(&["report", "--run", "shared"]);
        report["totals"]["cost_usd"].as_f64().unwrap()
    };
    let spent = spent_by(&p);
    assert!(
        spent <= budget,
        "the run's workers spent ${spent} of ${budget}"
    );
    let completed = tasks_with(&p, "completed");
    assert!(completed >= 10, "only {completed} tasks completed");
    assert!(tasks_with(&p, "queued") > 0, "the budget stopped nothing");
    assert_eq!(tasks_with(&p, "failed"), 0, "the budget failed a task");
    let calls = p.server.requests().len();
    assert!(calls as f64 * 0.0011 <= budget + 1e-9, "{calls} calls");

    // A worker joining the run later only uses what the run has left, then stops, saying so.
    let out = p
        .cmd()
        .args(["run", "--run", "shared", "--budget", &budget.to_string()])
        .env("PITCREW_MODELS_DEFAULT", "priced")
        .env("PITCREW_MODELS_MAX_TOKENS", "2000")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    assert!(
        stdout_of(&out).contains("budget is spent"),
        "{}",
        stdout_of(&out)
    );
    let spent = spent_by(&p);
    assert!(
        spent <= budget,
        "with the late worker: ${spent} of ${budget}"
    );
    assert!(tasks_with(&p, "queued") > 0);
}
