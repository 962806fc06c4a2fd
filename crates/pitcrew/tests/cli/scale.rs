//! Many worker processes sharing one PostgreSQL queue, some of them killed mid-run.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use pitcrew_core::{Lease, TaskId};
use pitcrew_store::{Disposition, StoreError};
use pitcrew_testkit::Reply;
use serde_json::Value;

use crate::support::*;

fn counts(p: &Project) -> BTreeMap<String, u64> {
    let stats = p.json(&["queue"]);
    let mut counts = BTreeMap::new();
    for row in stats["counts"].as_array().unwrap() {
        *counts
            .entry(row["status"].as_str().unwrap().to_string())
            .or_default() += row["count"].as_u64().unwrap();
    }
    counts
}

#[test]
fn four_workers_on_postgres_drain_200_tasks_while_two_are_killed() {
    let Some(base_url) = postgres_or_skip("the multi-process PostgreSQL test") else {
        return;
    };
    let schema = PgSchema::create(&base_url, "cli");
    // The queue is under test here, not validation: only the in-process checks run.
    let p = Project::with_config(&format!(
        "\n[store]\nurl = \"{}\"\n\n[validation.rules]\nunit_test = [\"file_exists\", \"not_empty\", \"syntax\"]\n",
        schema.store_url()
    ));
    p.cmd().arg("migrate").assert().success();

    let batch = p.scratch.path().join("tasks.jsonl");
    let lines: Vec<String> = (0..200)
        .map(|i| format!("{{\"kind\": \"unit_test\", \"target\": \"src/calc.py\", \"idempotency_key\": \"t{i}\"}}"))
        .collect();
    std::fs::write(&batch, lines.join("\n")).unwrap();
    let submitted = p.json(&["submit", "--file", batch.to_str().unwrap()]);
    assert_eq!(submitted.as_array().unwrap().len(), 200);
    p.server.respond_with(|_| {
        Reply::content(&reply_with_file("tests/test_calc.py", GOOD_TEST))
            .delay(Duration::from_millis(60))
    });

    let mut workers: Vec<_> = (0..4)
        .map(|n| p.spawn(&["worker", "--workers", "2", "--name", &format!("w{n}")]))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(240);
    while counts(&p).get("completed").copied().unwrap_or(0) < 40 {
        assert!(
            Instant::now() < deadline,
            "workers made no progress: {:?}",
            counts(&p)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for victim in &workers[..2] {
        signal(victim, Signal::SIGKILL);
    }
    for victim in &mut workers[..2] {
        victim.wait().unwrap();
    }
    while counts(&p).get("completed").copied().unwrap_or(0) < 200 {
        let now = counts(&p);
        assert!(
            Instant::now() < deadline,
            "the queue was not drained: {now:?}"
        );
        assert!(!now.contains_key("failed"), "a task failed: {now:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
    for survivor in &workers[2..] {
        signal(survivor, Signal::SIGTERM);
    }
    for survivor in workers.drain(2..) {
        let out = survivor.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    }

    // Every task ends once, with exactly one accepted attempt; an attempt only ever started
    // after the previous one had been given up.
    let tasks = p.json(&["list"]);
    let tasks = tasks.as_array().unwrap();
    assert_eq!(tasks.len(), 200);
    let mut abandoned = 0;
    for task in tasks {
        let id = task["id"].as_str().unwrap();
        assert_eq!(task["status"], "completed", "{task}");
        let attempts = p.attempts(id);
        let completed: Vec<&Value> = attempts
            .iter()
            .filter(|a| a["outcome"] == "completed")
            .collect();
        assert_eq!(completed.len(), 1, "task {id}: {attempts:?}");
        for pair in attempts.windows(2) {
            assert_eq!(pair[0]["outcome"], "abandoned", "task {id}: {attempts:?}");
            let worker = pair[0]["worker"].as_str().unwrap();
            assert!(
                worker.starts_with("w0/") || worker.starts_with("w1/"),
                "task {id}: a live worker's attempt was abandoned"
            );
            assert!(
                pair[1]["started_at"].as_str() >= pair[0]["finished_at"].as_str(),
                "task {id} ran twice at once: {attempts:?}"
            );
            abandoned += 1;
        }
        assert_eq!(completed[0]["number"].as_u64(), Some(attempts.len() as u64));
    }
    assert!(
        abandoned > 0,
        "the killed workers held no task, so nothing was tested"
    );
    assert_eq!(p.pitcrew_branches().len(), 200);

    // A killed worker's lease, written with now, is rejected by the fence.
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let pool = sqlx::PgPool::connect(&schema.store_url()).await.unwrap();
        let stale: Vec<(String, i32, String, String)> = sqlx::query_as(
            "SELECT task_id::text, number, worker, lease_token::text FROM attempts WHERE outcome = 'abandoned'",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        assert_eq!(stale.len(), abandoned);
        let store = pitcrew_store::open(&schema.store_url()).await.unwrap();
        for (task, number, worker, token) in stale {
            let lease = Lease {
                task_id: task.parse::<TaskId>().unwrap(),
                token: token.parse().unwrap(),
                owner: worker,
                attempt: number as u32,
            };
            let late = store.finish(&lease, Disposition::Complete, &Default::default()).await;
            assert!(matches!(late, Err(StoreError::LeaseLost { .. })), "{late:?}");
        }
    });
}
