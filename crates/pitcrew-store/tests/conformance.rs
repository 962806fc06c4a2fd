//! One suite for every `Store` backend: each test is a function over a fresh store (or over a
//! [`Fixture`], the empty place a store lives in), and the macro at the bottom instantiates the
//! suite per backend. PostgreSQL runs when `PITCREW_TEST_POSTGRES_URL` is set, each test in a
//! schema of its own.

mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use pitcrew_core::{
    AttemptOutcome, AttemptReport, ErrorKind, LimitDecision, ModelHealth, NewTask, Priority,
    SharedLimit, TaskFilter, TaskKind, TaskStatus, WebhookEvent, WebhookEventType,
    WebhookSubscription,
};
use pitcrew_store::{
    AttemptFilter, DeliveryCount, DeliveryOutcome, DeliveryState, Disposition, MigrationStatus,
    Store, StoreError,
};
use support::{Fixture, PgFixture, SqliteFixture, open, report, task};

const TTL: Duration = Duration::from_secs(60);

async fn submit_one(store: &dyn Store, t: NewTask) -> pitcrew_core::TaskId {
    store.submit(&[t]).await.unwrap()[0].id
}

async fn submit_then_find_by_id_and_prefix(store: Arc<dyn Store>) {
    let mut t = task("src/a.py", Priority::High);
    t.model = Some("deepseek-v3".into());
    let id = submit_one(&*store, t.clone()).await;
    let found = store.find(&id.to_string()).await.unwrap();
    assert_eq!(found.id, id);
    assert_eq!(found.status, TaskStatus::Queued);
    assert_eq!(found.targets, t.targets);
    assert_eq!(found.model.as_deref(), Some("deepseek-v3"));
    assert_eq!(found.metadata, t.metadata);
    assert_eq!(found.attempts, 0);
    let by_prefix = store.find(&id.to_string()[..13]).await.unwrap();
    assert_eq!(by_prefix.id, id);
    assert!(matches!(
        store.find("ffffffff").await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.find("'; DROP TABLE tasks; --").await,
        Err(StoreError::NotFound(_))
    ));
    submit_one(&*store, task("src/b.py", Priority::Low)).await;
    // Two v7 ids made in the same minute share their first hex digit.
    let first = &id.to_string()[..1];
    assert!(matches!(
        store.find(first).await,
        Err(StoreError::Ambiguous { count: 2, .. })
    ));
}

/// Handles: `#N` and `N` name the task numbered N in the store, numbers follow submission
/// and stay with a task through its life.
async fn tasks_are_numbered_and_found_by_their_handle(store: Arc<dyn Store>) {
    let mut keyed = task("src/b.py", Priority::Low);
    keyed.idempotency_key = Some("b".into());
    let submitted = store
        .submit(&[
            task("src/a.py", Priority::Normal),
            keyed.clone(),
            task("src/c.py", Priority::High),
        ])
        .await
        .unwrap();
    let seqs: Vec<u64> = submitted.iter().map(|s| s.seq).collect();
    assert_eq!(seqs, [1, 2, 3]);
    for (given, target) in [("#1", "src/a.py"), ("2", "src/b.py"), (" #3 ", "src/c.py")] {
        let found = store.find(given).await.unwrap();
        assert_eq!(found.targets[0], target, "{given}");
    }
    // A deduplicated submit answers the first task's number.
    let again = store.submit(&[keyed]).await.unwrap();
    assert_eq!((again[0].seq, again[0].deduplicated), (2, true));
    assert!(matches!(
        store.find("#4").await,
        Err(StoreError::NotFound(name)) if name == "#4"
    ));
    assert!(matches!(
        store.find("#x").await,
        Err(StoreError::NotFound(_))
    ));
    // The number stays through claims, cancels and retries, and a new task gets a new one.
    let claimed = store.claim("w", 1, TTL).await.unwrap();
    assert_eq!(claimed[0].0.seq, 3);
    store.cancel(submitted[0].id).await.unwrap();
    assert_eq!(store.requeue(submitted[0].id).await.unwrap().seq, 1);
    let listed: Vec<u64> = store
        .list(&TaskFilter::default())
        .await
        .unwrap()
        .iter()
        .map(|t| t.seq)
        .collect();
    assert_eq!(listed, [1, 2, 3]);
    let fourth = store
        .submit(&[task("src/d.py", Priority::Normal)])
        .await
        .unwrap();
    assert_eq!(fourth[0].seq, 4);
    assert_eq!(store.find("4").await.unwrap().id, fourth[0].id);
}

async fn batch_keeps_order(store: Arc<dyn Store>) {
    let batch: Vec<NewTask> = (0..20)
        .map(|i| task(&format!("src/m{i}.py"), Priority::Normal))
        .collect();
    let submitted = store.submit(&batch).await.unwrap();
    assert_eq!(submitted.len(), 20);
    let listed = store.list(&TaskFilter::default()).await.unwrap();
    let listed_targets: Vec<_> = listed.iter().map(|t| t.targets[0].clone()).collect();
    let expected: Vec<_> = (0..20).map(|i| format!("src/m{i}.py")).collect();
    assert_eq!(listed_targets, expected);
    assert_eq!(
        listed.iter().map(|t| t.id).collect::<Vec<_>>(),
        submitted.iter().map(|s| s.id).collect::<Vec<_>>()
    );
}

async fn claims_by_priority_then_fifo(store: Arc<dyn Store>) {
    let order = [
        ("low-1", Priority::Low),
        ("normal-1", Priority::Normal),
        ("critical-1", Priority::Critical),
        ("high-1", Priority::High),
        ("low-2", Priority::Low),
        ("critical-2", Priority::Critical),
        ("normal-2", Priority::Normal),
        ("high-2", Priority::High),
    ];
    for (name, priority) in order {
        submit_one(&*store, task(name, priority)).await;
    }
    let mut claimed = Vec::new();
    // One at a time, as a single worker would.
    while let Some((t, _)) = store.claim("w1", 1, TTL).await.unwrap().pop() {
        claimed.push(t.targets[0].clone());
    }
    assert_eq!(
        claimed,
        [
            "critical-1",
            "critical-2",
            "high-1",
            "high-2",
            "normal-1",
            "normal-2",
            "low-1",
            "low-2"
        ]
    );
    // A batched claim follows the same order.
    let store2 = store.clone();
    for (name, priority) in order {
        submit_one(&*store2, task(name, priority)).await;
    }
    let batch = store.claim("w2", 3, TTL).await.unwrap();
    let names: Vec<_> = batch.iter().map(|(t, _)| t.targets[0].as_str()).collect();
    assert_eq!(names, ["critical-1", "critical-2", "high-1"]);
}

async fn claim_creates_lease_and_attempt(store: Arc<dyn Store>) {
    let id = submit_one(&*store, task("src/a.py", Priority::Normal)).await;
    let (t, lease) = store
        .claim("worker-a", 1, TTL)
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(t.id, id);
    assert_eq!(t.status, TaskStatus::Running);
    assert_eq!(t.attempts, 1);
    assert_eq!(t.lease_owner.as_deref(), Some("worker-a"));
    assert!(t.lease_expires_at.unwrap() > Utc::now());
    assert_eq!(lease.attempt, 1);
    assert!(store.claim("worker-b", 1, TTL).await.unwrap().is_empty());
    let attempts = store.attempts(id).await.unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].outcome, AttemptOutcome::Running);
    assert_eq!(attempts[0].worker, "worker-a");
}

async fn finish_is_fenced_by_the_lease_token(store: Arc<dyn Store>) {
    submit_one(&*store, task("src/a.py", Priority::Normal)).await;
    let (_, lease) = store.claim("w", 1, TTL).await.unwrap().pop().unwrap();
    let mut forged = lease.clone();
    forged.token = uuid::Uuid::now_v7();
    assert!(matches!(
        store
            .finish(&forged, Disposition::Complete, &report(None, None))
            .await,
        Err(StoreError::LeaseLost { .. })
    ));
    assert!(matches!(
        store.heartbeat(&forged, TTL).await,
        Err(StoreError::LeaseLost { .. })
    ));
    store.heartbeat(&lease, TTL).await.unwrap();
    let mut done = report(None, None);
    done.commit = Some("abc123".into());
    done.patch = Some("diff --git a/x b/x".into());
    done.usage.tokens_in = 10;
    done.usage.tokens_out = 20;
    done.usage.cost_usd = Some(0.5);
    done.latency_ms = Some(1234);
    done.findings = vec![pitcrew_core::Finding::info("syntax", "ok").in_file("x.py")];
    done.run_id = Some("run-1".into());
    done.quality = Some(0.875);
    done.details = serde_json::json!({"iterations": [{"model": "m", "cache_hit": false}]});
    let status = store
        .finish(&lease, Disposition::Complete, &done)
        .await
        .unwrap();
    assert_eq!(status, TaskStatus::Completed);
    // The same lease cannot write twice.
    assert!(matches!(
        store
            .finish(&lease, Disposition::Fail, &report(None, None))
            .await,
        Err(StoreError::LeaseLost { .. })
    ));
    let t = store.find(&lease.task_id.to_string()).await.unwrap();
    assert_eq!(t.status, TaskStatus::Completed);
    assert_eq!(t.result_commit.as_deref(), Some("abc123"));
    assert!(t.lease_owner.is_none() && t.finished_at.is_some());
    let attempts = store.attempts(lease.task_id).await.unwrap();
    assert_eq!(attempts.len(), 1);
    let a = &attempts[0];
    assert_eq!(a.outcome, AttemptOutcome::Completed);
    assert_eq!(a.patch.as_deref(), Some("diff --git a/x b/x"));
    assert_eq!(a.usage.tokens_out, 20);
    assert_eq!(a.usage.cost_usd, Some(0.5));
    assert_eq!(a.latency_ms, Some(1234));
    assert_eq!(a.findings, done.findings);
    assert_eq!(a.run_id.as_deref(), Some("run-1"));
    assert_eq!(a.quality, Some(0.875));
    assert_eq!(a.details, done.details);
    assert_eq!(
        store.recent_latencies(10).await.unwrap(),
        [("test/model".to_string(), 1234)]
    );
}

async fn retry_waits_for_run_at_and_fails_when_attempts_run_out(store: Arc<dyn Store>) {
    let mut t = task("src/a.py", Priority::Normal);
    t.max_attempts = 2;
    let id = submit_one(&*store, t).await;
    let (_, lease) = store.claim("w", 1, TTL).await.unwrap().pop().unwrap();
    let status = store
        .finish(
            &lease,
            Disposition::Retry {
                delay: Duration::from_millis(400),
            },
            &report(Some(ErrorKind::ServerError), Some("HTTP 503")),
        )
        .await
        .unwrap();
    assert_eq!(status, TaskStatus::Queued);
    let queued = store.find(&id.to_string()).await.unwrap();
    assert_eq!(queued.error_kind, Some(ErrorKind::ServerError));
    assert!(
        store.claim("w", 1, TTL).await.unwrap().is_empty(),
        "claimed before run_at"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (again, lease2) = store.claim("w", 1, TTL).await.unwrap().pop().unwrap();
    assert_eq!(again.attempts, 2);
    let status = store
        .finish(
            &lease2,
            Disposition::Retry {
                delay: Duration::ZERO,
            },
            &report(Some(ErrorKind::ServerError), Some("HTTP 503")),
        )
        .await
        .unwrap();
    assert_eq!(status, TaskStatus::Failed);
    let failed = store.find(&id.to_string()).await.unwrap();
    assert!(
        failed
            .last_error
            .unwrap()
            .contains("attempts used up: 2 of 2")
    );
    let outcomes: Vec<_> = store
        .attempts(id)
        .await
        .unwrap()
        .iter()
        .map(|a| a.outcome)
        .collect();
    assert_eq!(outcomes, [AttemptOutcome::Failed, AttemptOutcome::Failed]);
}

async fn a_deferred_attempt_never_uses_up_the_task(store: Arc<dyn Store>) {
    let mut t = task("src/a.py", Priority::Normal);
    t.max_attempts = 1;
    let id = submit_one(&*store, t).await;
    // Far more deferrals than the task has attempts: none of them counts.
    for n in 1..=3 {
        let (claimed, lease) = store.claim("w", 1, TTL).await.unwrap().pop().unwrap();
        assert_eq!(claimed.attempts, n);
        let status = store
            .finish(
                &lease,
                Disposition::Defer {
                    delay: Duration::ZERO,
                },
                &report(
                    Some(ErrorKind::NoModelAvailable),
                    Some("every model is cooling down"),
                ),
            )
            .await
            .unwrap();
        assert_eq!(status, TaskStatus::Queued);
    }
    let waiting = store.find(&id.to_string()).await.unwrap();
    assert_eq!(waiting.error_kind, Some(ErrorKind::NoModelAvailable));
    assert_eq!(waiting.max_attempts, 4);
    let attempts = store.attempts(id).await.unwrap();
    assert_eq!(attempts.len(), 3);
    assert!(attempts.iter().all(|a| a.outcome == AttemptOutcome::Failed
        && a.error_kind == Some(ErrorKind::NoModelAvailable)));
    // The task's own failure still counts: one real attempt left, and it is used.
    let (_, lease) = store.claim("w", 1, TTL).await.unwrap().pop().unwrap();
    let status = store
        .finish(
            &lease,
            Disposition::Retry {
                delay: Duration::ZERO,
            },
            &report(Some(ErrorKind::ValidationFailed), Some("tests fail")),
        )
        .await
        .unwrap();
    assert_eq!(status, TaskStatus::Failed);
}

async fn rescue_requeues_expired_leases_and_fences_the_old_one(store: Arc<dyn Store>) {
    let id = submit_one(&*store, task("src/a.py", Priority::Normal)).await;
    let (_, stale) = store
        .claim("crashed", 1, Duration::from_millis(50))
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert!(
        store.rescue_expired().await.unwrap().is_empty(),
        "rescued a live lease"
    );
    tokio::time::sleep(Duration::from_millis(120)).await;
    let rescued = store.rescue_expired().await.unwrap();
    assert_eq!(rescued.len(), 1);
    assert_eq!(rescued[0].id, id);
    assert_eq!(rescued[0].owner, "crashed");
    assert_eq!(rescued[0].status, TaskStatus::Queued);
    let (t, fresh) = store
        .claim("survivor", 1, TTL)
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(t.attempts, 2);
    // The crashed worker wakes up and tries to write: rejected.
    assert!(matches!(
        store
            .finish(&stale, Disposition::Complete, &report(None, None))
            .await,
        Err(StoreError::LeaseLost { .. })
    ));
    assert!(matches!(
        store.heartbeat(&stale, TTL).await,
        Err(StoreError::LeaseLost { .. })
    ));
    store
        .finish(&fresh, Disposition::Complete, &report(None, None))
        .await
        .unwrap();
    let attempts = store.attempts(id).await.unwrap();
    let outcomes: Vec<_> = attempts.iter().map(|a| a.outcome).collect();
    assert_eq!(
        outcomes,
        [AttemptOutcome::Abandoned, AttemptOutcome::Completed]
    );
    assert_eq!(attempts[0].error_kind, Some(ErrorKind::LeaseExpired));
}

async fn rescue_fails_a_task_without_attempts_left(store: Arc<dyn Store>) {
    let mut t = task("src/a.py", Priority::Normal);
    t.max_attempts = 1;
    let id = submit_one(&*store, t).await;
    store
        .claim("w", 1, Duration::from_millis(10))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let rescued = store.rescue_expired().await.unwrap();
    assert_eq!(rescued[0].status, TaskStatus::Failed);
    let t = store.find(&id.to_string()).await.unwrap();
    assert_eq!(t.status, TaskStatus::Failed);
    assert_eq!(t.error_kind, Some(ErrorKind::LeaseExpired));
}

async fn idempotency_key_deduplicates_unfinished_tasks(store: Arc<dyn Store>) {
    let mut t = task("src/a.py", Priority::Normal);
    t.idempotency_key = Some("nightly-a".into());
    let first = store.submit(&[t.clone()]).await.unwrap()[0].clone();
    assert!(!first.deduplicated);
    let second = store.submit(&[t.clone(), t.clone()]).await.unwrap();
    assert!(second.iter().all(|s| s.deduplicated && s.id == first.id));
    assert_eq!(store.list(&TaskFilter::default()).await.unwrap().len(), 1);
    let (_, lease) = store.claim("w", 1, TTL).await.unwrap().pop().unwrap();
    // Still unfinished while running.
    assert!(store.submit(&[t.clone()]).await.unwrap()[0].deduplicated);
    store
        .finish(&lease, Disposition::Complete, &report(None, None))
        .await
        .unwrap();
    let third = store.submit(&[t]).await.unwrap()[0].clone();
    assert!(!third.deduplicated);
    assert_ne!(third.id, first.id);
}

async fn a_possible_bug_is_its_own_end_state_and_keeps_its_commit(store: Arc<dyn Store>) {
    let id = submit_one(&*store, task("src/a.py", Priority::Normal)).await;
    let (_, lease) = store.claim("w", 1, TTL).await.unwrap().pop().unwrap();
    let mut kept = report(
        Some(ErrorKind::ValidationFailed),
        Some("test_sign fails against the current code"),
    );
    kept.commit = Some("c0ffee".into());
    kept.patch = Some("diff --git a/tests/test_a.py b/tests/test_a.py".into());
    let status = store
        .finish(&lease, Disposition::PossibleBug, &kept)
        .await
        .unwrap();
    assert_eq!(status, TaskStatus::PossibleBug);
    let t = store.find(&id.to_string()).await.unwrap();
    assert_eq!(t.status, TaskStatus::PossibleBug);
    assert_eq!(t.result_commit.as_deref(), Some("c0ffee"));
    assert!(t.finished_at.is_some() && t.lease_owner.is_none());
    let listed = store
        .list(&TaskFilter {
            status: Some(TaskStatus::PossibleBug),
            ..TaskFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    let attempt = &store.attempts(id).await.unwrap()[0];
    assert_eq!(attempt.outcome, AttemptOutcome::PossibleBug);
    assert!(attempt.patch.is_some());
    // It is a human's to judge, not the queue's to retry.
    let refused = store.requeue(id).await.unwrap_err().to_string();
    assert!(refused.contains("only failed or cancelled"), "{refused}");
}

async fn a_released_task_returns_without_using_up_an_attempt(store: Arc<dyn Store>) {
    let mut t = task("src/a.py", Priority::Normal);
    t.max_attempts = 1;
    let id = submit_one(&*store, t).await;
    let (_, lease) = store
        .claim("stopping", 1, TTL)
        .await
        .unwrap()
        .pop()
        .unwrap();
    store.release(&lease, "the worker stopped").await.unwrap();
    let released = store.find(&id.to_string()).await.unwrap();
    assert_eq!(released.status, TaskStatus::Queued);
    assert_eq!(released.error_kind, Some(ErrorKind::Interrupted));
    assert_eq!(
        released.max_attempts, 2,
        "the given-back attempt must not count"
    );
    // The released lease is fenced like any other.
    assert!(matches!(
        store
            .finish(&lease, Disposition::Complete, &report(None, None))
            .await,
        Err(StoreError::LeaseLost { .. })
    ));
    assert!(matches!(
        store.release(&lease, "again").await,
        Err(StoreError::LeaseLost { .. })
    ));
    let (again, lease2) = store.claim("next", 1, TTL).await.unwrap().pop().unwrap();
    assert_eq!(again.attempts, 2);
    store
        .finish(&lease2, Disposition::Complete, &report(None, None))
        .await
        .unwrap();
    let outcomes: Vec<_> = store
        .attempts(id)
        .await
        .unwrap()
        .iter()
        .map(|a| a.outcome)
        .collect();
    assert_eq!(
        outcomes,
        [AttemptOutcome::Abandoned, AttemptOutcome::Completed]
    );
}

async fn cancel_and_requeue(store: Arc<dyn Store>) {
    let queued = submit_one(&*store, task("queued.py", Priority::Normal)).await;
    let cancelled = store.cancel(queued).await.unwrap();
    assert_eq!(cancelled.status, TaskStatus::Cancelled);
    assert!(matches!(
        store.cancel(queued).await,
        Err(StoreError::InvalidState { .. })
    ));

    let running = submit_one(&*store, task("running.py", Priority::Normal)).await;
    let (_, lease) = store.claim("w", 1, TTL).await.unwrap().pop().unwrap();
    assert_eq!(lease.task_id, running);
    store.cancel(running).await.unwrap();
    assert!(matches!(
        store.heartbeat(&lease, TTL).await,
        Err(StoreError::LeaseLost { .. })
    ));
    assert!(matches!(
        store
            .finish(&lease, Disposition::Complete, &report(None, None))
            .await,
        Err(StoreError::LeaseLost { .. })
    ));
    assert_eq!(
        store.attempts(running).await.unwrap()[0].outcome,
        AttemptOutcome::Cancelled
    );

    let requeued = store.requeue(running).await.unwrap();
    assert_eq!(requeued.status, TaskStatus::Queued);
    assert!(requeued.finished_at.is_none() && requeued.last_error.is_none());
    assert!(matches!(
        store.requeue(running).await,
        Err(StoreError::InvalidState { .. })
    ));
    // A task with its attempts used up gets one more.
    let mut t = task("spent.py", Priority::Critical);
    t.max_attempts = 1;
    let spent = submit_one(&*store, t).await;
    let (_, lease) = store.claim("w", 1, TTL).await.unwrap().pop().unwrap();
    assert_eq!(lease.task_id, spent);
    store
        .finish(
            &lease,
            Disposition::Fail,
            &report(Some(ErrorKind::SyntaxError), Some("bad")),
        )
        .await
        .unwrap();
    let again = store.requeue(spent).await.unwrap();
    assert_eq!(again.max_attempts, 2);
    let (t, _) = store.claim("w", 1, TTL).await.unwrap().pop().unwrap();
    assert_eq!((t.id, t.attempts), (spent, 2));
}

async fn requeue_refuses_a_taken_idempotency_key(store: Arc<dyn Store>) {
    let mut t = task("a.py", Priority::Normal);
    t.idempotency_key = Some("k".into());
    let first = submit_one(&*store, t.clone()).await;
    store.cancel(first).await.unwrap();
    let second = submit_one(&*store, t).await;
    assert_ne!(first, second);
    assert!(matches!(
        store.requeue(first).await,
        Err(StoreError::IdempotencyConflict { task, .. }) if task == second
    ));
}

async fn list_filters_and_stats(store: Arc<dyn Store>) {
    submit_one(&*store, task("a.py", Priority::High)).await;
    submit_one(&*store, task("b.py", Priority::High)).await;
    let mut docs = task("c.py", Priority::Low);
    docs.kind = TaskKind::Docs;
    submit_one(&*store, docs).await;
    store.claim("w", 1, TTL).await.unwrap();

    let running = store
        .list(&TaskFilter {
            status: Some(TaskStatus::Running),
            ..TaskFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(running.len(), 1);
    assert_eq!(running[0].targets, ["a.py"]);
    let docs = store
        .list(&TaskFilter {
            kind: Some(TaskKind::Docs),
            ..TaskFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(docs.len(), 1);
    let limited = store
        .list(&TaskFilter {
            limit: Some(2),
            ..TaskFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(limited.len(), 2);

    let stats = store.stats().await.unwrap();
    assert_eq!(stats.count(TaskStatus::Queued), 2);
    assert_eq!(stats.count(TaskStatus::Running), 1);
    assert!(
        stats
            .counts
            .contains(&(TaskStatus::Queued, Priority::High, 1))
    );
    assert!(
        stats
            .counts
            .contains(&(TaskStatus::Queued, Priority::Low, 1))
    );
    assert!(stats.next_run_at.is_some());
    assert!(stats.next_lease_expiry.unwrap() > Utc::now());
}

async fn concurrent_claimers_never_share_a_task(fx: &impl Fixture) {
    let (store, other) = (open(fx).await, open(fx).await);
    let batch: Vec<NewTask> = (0..60)
        .map(|i| task(&format!("t{i}.py"), Priority::ALL[i % 4]))
        .collect();
    store.submit(&batch).await.unwrap();
    let mut handles = Vec::new();
    for w in 0..6 {
        let s = if w % 2 == 0 {
            store.clone()
        } else {
            other.clone()
        };
        handles.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let claimed = s.claim(&format!("w{w}"), 2, TTL).await.unwrap();
                if claimed.is_empty() {
                    break;
                }
                for (t, lease) in claimed {
                    s.finish(&lease, Disposition::Complete, &report(None, None))
                        .await
                        .unwrap();
                    mine.push(t.id);
                }
            }
            mine
        }));
    }
    let mut seen = HashSet::new();
    let mut total = 0;
    for h in handles {
        for id in h.await.unwrap() {
            total += 1;
            assert!(seen.insert(id), "task {id} claimed twice");
        }
    }
    assert_eq!(total, 60);
    let stats = store.stats().await.unwrap();
    assert_eq!(stats.count(TaskStatus::Completed), 60);
}

async fn concurrent_submits_of_one_key_make_one_task(fx: &impl Fixture) {
    let handles = [open(fx).await, open(fx).await];
    let mut t = task("src/a.py", Priority::Normal);
    t.idempotency_key = Some("nightly-a".into());
    let start = Arc::new(tokio::sync::Barrier::new(8));
    let submits: Vec<_> = (0..8)
        .map(|i| {
            let (store, t, start) = (handles[i % 2].clone(), t.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                store.submit(&[t]).await.unwrap().remove(0)
            })
        })
        .collect();
    let mut results = Vec::new();
    for s in submits {
        results.push(s.await.unwrap());
    }
    assert_eq!(results.iter().filter(|s| !s.deduplicated).count(), 1);
    assert!(results.iter().all(|s| s.id == results[0].id));
    assert_eq!(
        handles[0].list(&TaskFilter::default()).await.unwrap().len(),
        1
    );
}

async fn migrate_applies_pending_migrations_once(fx: &impl Fixture) {
    let first = pitcrew_store::migrate(&fx.url()).await.unwrap();
    assert!(!first.applied_now.is_empty());
    assert_eq!(first.current, first.known);
    assert_eq!(first.applied_now.last(), Some(&first.known));
    let again = pitcrew_store::migrate(&fx.url()).await.unwrap();
    assert_eq!(
        again,
        MigrationStatus {
            applied_now: vec![],
            current: first.known,
            known: first.known,
        }
    );
    open(fx).await.stats().await.unwrap();
}

async fn concurrent_opens_of_a_fresh_store_all_succeed(fx: &impl Fixture) {
    let opens: Vec<_> = (0..4)
        .map(|_| {
            let url = fx.url();
            tokio::spawn(async move { pitcrew_store::open(&url).await })
        })
        .collect();
    let mut stores = Vec::new();
    for o in opens {
        stores.push(o.await.unwrap().expect("a concurrent open failed"));
    }
    let status = pitcrew_store::migrate(&fx.url()).await.unwrap();
    assert!(status.applied_now.is_empty() && status.current == status.known);
    let id = submit_one(&*stores[0], task("a.py", Priority::Normal)).await;
    assert_eq!(stores[3].find(&id.to_string()).await.unwrap().id, id);
}

async fn a_schema_from_a_newer_pitcrew_is_refused(fx: &impl Fixture) {
    open(fx).await;
    fx.execute(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99990101000000, 'from a newer pitcrew', TRUE, '', 0)",
    )
    .await;
    for refused in [
        pitcrew_store::open(&fx.url()).await.map(|_| ()),
        pitcrew_store::migrate(&fx.url()).await.map(|_| ()),
    ] {
        let Err(e) = refused else {
            panic!("a newer schema was accepted");
        };
        assert!(
            matches!(e, StoreError::SchemaTooNew { found: 99990101000000, known, .. } if known < 99990101000000),
            "{e:?}"
        );
        assert!(e.to_string().contains("upgrade pitcrew"), "{e}");
    }
}

/// `at` to the millisecond, the precision every backend keeps.
/// A registered secret written in an attempt's error, findings and details, a release
/// reason and a cooldown reason is stored as `[REDACTED]`; the patch keeps it (what is
/// committed is what was verified).
async fn registered_secrets_are_never_stored_except_in_the_patch(store: Arc<dyn Store>) {
    const SECRET: &str = "store-conformance-secret-2e7f4c";
    pitcrew_core::register_secret(SECRET);
    subscribe_two(&*store);
    let mut t = task("src/a.py", Priority::Normal);
    t.max_attempts = 3;
    // A description is the user's input, stored as given; a webhook's body is not.
    t.description = format!("write tests; the key is \"{SECRET}\"");
    let id = submit_one(&*store, t).await;
    let (_, lease) = store.claim("w", 1, TTL).await.unwrap().pop().unwrap();
    store
        .release(&lease, &format!("stopped while printing {SECRET}"))
        .await
        .unwrap();
    let (_, lease) = store.claim("w", 1, TTL).await.unwrap().pop().unwrap();
    let leaky = AttemptReport {
        model: Some("test/model".into()),
        error_kind: Some(ErrorKind::ValidationFailed),
        error: Some(format!("`cat key` failed:\n{SECRET}")),
        findings: vec![pitcrew_core::Finding::error(
            "cmd",
            format!("output: {SECRET}"),
        )],
        details: serde_json::json!({"iterations": [{"findings": [{"message": SECRET}]}]}),
        commit: Some("0123abcd".into()),
        patch: Some(format!("+KEY = \"{SECRET}\"\n")),
        ..AttemptReport::default()
    };
    store
        .finish(&lease, Disposition::PossibleBug, &leaky)
        .await
        .unwrap();
    let task = store.find(&id.to_string()).await.unwrap();
    assert_eq!(
        task.last_error.as_deref(),
        Some("`cat key` failed:\n[REDACTED]")
    );
    let attempts = store.attempts(id).await.unwrap();
    assert_eq!(
        attempts[0].error.as_deref(),
        Some("stopped while printing [REDACTED]")
    );
    let kept = &attempts[1];
    assert_eq!(kept.error.as_deref(), Some("`cat key` failed:\n[REDACTED]"));
    assert_eq!(kept.findings[0].message, "output: [REDACTED]");
    assert_eq!(
        kept.details,
        serde_json::json!({"iterations": [{"findings": [{"message": "[REDACTED]"}]}]})
    );
    assert_eq!(kept.patch, leaky.patch, "the patch is stored as verified");

    let mut cooling = health("leaky-model");
    cooling.cooldown_until = Some(ms(Utc::now() + chrono::Duration::seconds(60)));
    cooling.cooldown_reason = Some(format!("auth: rejected {SECRET}"));
    store.record_model_health(&cooling).await.unwrap();
    let stored = store.model_health().await.unwrap();
    assert_eq!(
        stored[0].cooldown_reason.as_deref(),
        Some("auth: rejected [REDACTED]")
    );

    let delivery = store
        .claim_webhook_deliveries("d", &every_url(), 1, TTL)
        .await
        .unwrap()
        .remove(0);
    assert!(!delivery.body.contains(SECRET), "{}", delivery.body);
    let body: serde_json::Value = serde_json::from_str(&delivery.body).unwrap();
    assert_eq!(
        body["data"]["task"]["description"],
        "write tests; the key is \"[REDACTED]\""
    );
    let refused = DeliveryOutcome::Retry {
        delay: Duration::ZERO,
        status_code: Some(401),
        error: format!("HTTP 401: bad signature for {SECRET}"),
    };
    store
        .record_webhook_attempt(&delivery, &refused)
        .await
        .unwrap();
    let listed = store.webhook_deliveries(1).await.unwrap().remove(0);
    assert_eq!(
        listed.last_error.as_deref(),
        Some("HTTP 401: bad signature for [REDACTED]")
    );
}

fn ms(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(at.timestamp_millis()).unwrap()
}

fn health(model: &str) -> ModelHealth {
    ModelHealth {
        model: model.into(),
        consecutive_failures: 0,
        circuit_open_until: None,
        cooldown_until: None,
        cooldown_reason: None,
        success_rate: 0.9,
        latency_ms: 1500.0,
        quality: 0.75,
        samples: 12,
        updated_at: DateTime::UNIX_EPOCH,
    }
}

async fn model_health_round_trips(store: Arc<dyn Store>) {
    assert!(store.model_health().await.unwrap().is_empty());
    let soon = ms(Utc::now() + chrono::Duration::seconds(60));
    let mut b = health("model-b");
    b.cooldown_until = Some(soon);
    b.cooldown_reason = Some("daily quota".into());
    b.circuit_open_until = Some(soon);
    b.consecutive_failures = 5;
    let a = health("model-a");
    let before = Utc::now() - chrono::Duration::seconds(5);
    store.record_model_health(&b).await.unwrap();
    store.record_model_health(&a).await.unwrap();
    let stored = store.model_health().await.unwrap();
    assert_eq!(stored.len(), 2);
    for (got, want) in stored.iter().zip([&a, &b]) {
        assert!(got.updated_at > before, "updated_at is the store's clock");
        let mut want = want.clone();
        want.updated_at = got.updated_at;
        assert_eq!(got, &want);
    }
    // Everything but a later cooldown is last-writer-wins.
    let mut a2 = a.clone();
    a2.success_rate = 0.5;
    a2.latency_ms = 900.0;
    a2.quality = 0.25;
    a2.samples = 13;
    a2.consecutive_failures = 1;
    store.record_model_health(&a2).await.unwrap();
    let got = store.model_health().await.unwrap().remove(0);
    assert_eq!(
        (got.success_rate, got.latency_ms, got.quality, got.samples),
        (0.5, 900.0, 0.25, 13)
    );
    assert_eq!(got.consecutive_failures, 1);
}

async fn model_health_keeps_the_later_cooldown(store: Arc<dyn Store>) {
    let in_secs = |s: i64| ms(Utc::now() + chrono::Duration::seconds(s));
    let (minute, half) = (in_secs(60), in_secs(30));
    let mut quota = health("m");
    quota.cooldown_until = Some(minute);
    quota.cooldown_reason = Some("daily quota".into());
    quota.circuit_open_until = Some(half);
    quota.consecutive_failures = 3;
    store.record_model_health(&quota).await.unwrap();

    // Another worker, which saw a short rate limit and a success, cannot shorten either.
    let mut short = health("m");
    short.cooldown_until = Some(in_secs(5));
    short.cooldown_reason = Some("rate limit".into());
    short.samples = 20;
    store.record_model_health(&short).await.unwrap();
    let got = store.model_health().await.unwrap().remove(0);
    assert_eq!(got.cooldown_until, Some(minute));
    assert_eq!(got.cooldown_reason.as_deref(), Some("daily quota"));
    assert_eq!(got.circuit_open_until, Some(half));
    assert_eq!((got.consecutive_failures, got.samples), (0, 20));

    // A later end replaces it.
    let mut longer = health("m");
    let two_minutes = in_secs(120);
    longer.cooldown_until = Some(two_minutes);
    longer.cooldown_reason = Some("rate limit".into());
    store.record_model_health(&longer).await.unwrap();
    let got = store.model_health().await.unwrap().remove(0);
    assert_eq!(got.cooldown_until, Some(two_minutes));
    assert_eq!(got.cooldown_reason.as_deref(), Some("rate limit"));
    assert_eq!(got.circuit_open_until, Some(half));

    // An end already past is no cooldown: it can be cleared.
    let mut over = health("n");
    over.cooldown_until = Some(in_secs(-10));
    over.cooldown_reason = Some("rate limit".into());
    store.record_model_health(&over).await.unwrap();
    store.record_model_health(&health("n")).await.unwrap();
    let got = store.model_health().await.unwrap().remove(1);
    assert_eq!((got.cooldown_until, got.cooldown_reason), (None, None));
}

async fn wait_for_work_returns_by_max(store: Arc<dyn Store>) {
    let max = Duration::from_millis(300);
    for _ in 0..3 {
        let started = Instant::now();
        store.wait_for_work(max).await;
        assert!(started.elapsed() < max + Duration::from_millis(500));
    }
}

fn shared(key: &str, rpm: Option<u32>, tpm: Option<u32>, rpd: Option<u32>) -> SharedLimit {
    SharedLimit {
        key: key.into(),
        rpm,
        tpm,
        rpd,
    }
}

async fn shared_limits_count_every_call_or_none(store: Arc<dyn Store>) {
    let model = shared("model:m", Some(3), None, None);
    let quota = shared("quota:q", None, Some(1000), Some(4));
    let both = [model.clone(), quota.clone()];
    for _ in 0..2 {
        assert_eq!(
            store.take_limits(&both, 100).await.unwrap(),
            LimitDecision::Granted
        );
    }
    // Too many tokens for the quota: refused, and the model's count is untouched.
    let refused = store.take_limits(&both, 900).await.unwrap();
    let LimitDecision::NotBefore { key, at } = refused else {
        panic!("{refused:?}")
    };
    assert_eq!(key, "quota:q");
    assert!(at > Utc::now() + chrono::TimeDelta::seconds(55));
    assert_eq!(
        store.take_limits(&both, 100).await.unwrap(),
        LimitDecision::Granted,
        "the refused call counted under neither limit"
    );
    assert!(matches!(
        store.take_limits(&both, 100).await.unwrap(),
        LimitDecision::NotBefore { key, .. } if key == "model:m"
    ));
    // The quota's day: three calls so far, one left.
    assert_eq!(
        store
            .take_limits(std::slice::from_ref(&quota), 1)
            .await
            .unwrap(),
        LimitDecision::Granted
    );
    assert_eq!(
        store.take_limits(&[quota], 1).await.unwrap(),
        LimitDecision::DayUsed {
            key: "quota:q".into()
        }
    );
}

async fn shared_budgets_are_reserved_then_settled(store: Arc<dyn Store>) {
    assert_eq!(store.budget_spent("run:r").await.unwrap(), 0.0);
    assert!(store.reserve_budget("run:r", 1.0, 0.6).await.unwrap());
    assert!(
        !store.reserve_budget("run:r", 1.0, 0.6).await.unwrap(),
        "0.6 reserved and 0.6 more would pass 1.0"
    );
    store.settle_budget("run:r", 0.6, 0.1).await.unwrap();
    assert!((store.budget_spent("run:r").await.unwrap() - 0.1).abs() < 1e-9);
    assert!(store.reserve_budget("run:r", 1.0, 0.9).await.unwrap());
    assert!(!store.reserve_budget("run:r", 1.0, 0.01).await.unwrap());
    assert!(store.reserve_budget("run:other", 1.0, 0.5).await.unwrap());
}

/// Workers on two connections take from one limit and one budget at once: the limit's
/// minute and the budget are never overrun.
async fn concurrent_workers_never_overrun_a_shared_limit_or_budget(fx: &impl Fixture) {
    let stores = [open(fx).await, open(fx).await];
    let mut handles = Vec::new();
    for w in 0..6 {
        let store = stores[w % 2].clone();
        handles.push(tokio::spawn(async move {
            let limit = [shared("quota:shared", Some(10), None, None)];
            let (mut granted, mut reserved) = (0, 0);
            for _ in 0..8 {
                if store.take_limits(&limit, 1).await.unwrap() == LimitDecision::Granted {
                    granted += 1;
                }
                if store.reserve_budget("run:shared", 1.0, 0.07).await.unwrap() {
                    reserved += 1;
                    store.settle_budget("run:shared", 0.07, 0.05).await.unwrap();
                }
            }
            (granted, reserved)
        }));
    }
    let (mut granted, mut reserved) = (0, 0);
    for handle in handles {
        let (g, r) = handle.await.unwrap();
        granted += g;
        reserved += r;
    }
    assert_eq!(granted, 10, "exactly the minute's allowance went through");
    let spent = stores[0].budget_spent("run:shared").await.unwrap();
    assert!(spent <= 1.0 + 1e-9, "spent {spent}");
    // 0.05 per call once settled, 0.07 reserved each: at least 18 fit in 1.0.
    assert!(reserved >= 18, "{reserved} reservations");
}

/// `recorded_attempts` reads attempts as they were recorded, with their task's kind and
/// current status, in the order they started; it selects by start time and by kind.
async fn recorded_attempts_are_selected_by_start_and_kind(store: Arc<dyn Store>) {
    let early = submit_one(&*store, task("src/a.py", Priority::Normal)).await;
    let (_, lease) = store.claim("w1", 1, TTL).await.unwrap().remove(0);
    let done = AttemptReport {
        usage: pitcrew_core::Usage {
            tokens_in: 120,
            tokens_out: 30,
            cost_usd: Some(0.25),
        },
        latency_ms: Some(850),
        run_id: Some("run-1".into()),
        quality: Some(0.75),
        details: serde_json::json!({"iterations": [{"calls": [{"model_id": "test/model"}]}]}),
        ..report(None, None)
    };
    store
        .finish(&lease, Disposition::Complete, &done)
        .await
        .unwrap();
    // Starts after `cut` are later than it on either clock (the store's, or this process's
    // truncated to the millisecond SQLite keeps).
    tokio::time::sleep(Duration::from_millis(50)).await;
    let cut = Utc::now();
    let mut docs = task("README.md", Priority::Normal);
    docs.kind = TaskKind::Docs;
    let late = submit_one(&*store, docs).await;
    store.claim("w2", 1, TTL).await.unwrap();

    let all = store
        .recorded_attempts(&AttemptFilter::default())
        .await
        .unwrap();
    let seen: Vec<_> = all
        .iter()
        .map(|a| (a.attempt.task_id, a.kind, a.task_status, a.attempt.outcome))
        .collect();
    assert_eq!(
        seen,
        [
            (
                early,
                TaskKind::UnitTest,
                TaskStatus::Completed,
                AttemptOutcome::Completed
            ),
            (
                late,
                TaskKind::Docs,
                TaskStatus::Running,
                AttemptOutcome::Running
            ),
        ]
    );
    let recorded = &all[0].attempt;
    assert_eq!(recorded.model, done.model);
    assert_eq!(recorded.usage, done.usage);
    assert_eq!(recorded.latency_ms, done.latency_ms);
    assert_eq!(recorded.run_id, done.run_id);
    assert_eq!(recorded.quality, done.quality);
    assert_eq!(recorded.details, done.details);

    let ids = |filter: AttemptFilter| {
        let store = Arc::clone(&store);
        async move {
            let found = store.recorded_attempts(&filter).await.unwrap();
            found.iter().map(|a| a.attempt.task_id).collect::<Vec<_>>()
        }
    };
    let since = |at| AttemptFilter {
        started_since: Some(at),
        ..AttemptFilter::default()
    };
    let of_kind = |kind| AttemptFilter {
        kind: Some(kind),
        ..AttemptFilter::default()
    };
    assert_eq!(ids(since(cut)).await, [late]);
    assert_eq!(ids(of_kind(TaskKind::UnitTest)).await, [early]);
    assert_eq!(ids(of_kind(TaskKind::Fix)).await, []);
    let both = AttemptFilter {
        started_since: Some(cut),
        kind: Some(TaskKind::UnitTest),
    };
    assert_eq!(ids(both).await, []);
    assert_eq!(
        ids(since(Utc::now() + chrono::TimeDelta::hours(1))).await,
        []
    );
}

const EVERYTHING: &str = "https://all.example/hook";
const FAILURES: &str = "http://127.0.0.1:9/failures";

/// Two endpoints: one wants every event, the other only failed tasks.
fn subscribe_two(store: &dyn Store) {
    store.subscribe_webhooks(vec![
        WebhookSubscription {
            url: EVERYTHING.into(),
            events: WebhookEventType::ALL.to_vec(),
        },
        WebhookSubscription {
            url: FAILURES.into(),
            events: vec![WebhookEventType::TaskFailed],
        },
    ]);
}

/// `(url, event type, task id)` of every delivery, oldest first.
async fn deliveries(store: &dyn Store) -> Vec<(String, String, Option<pitcrew_core::TaskId>)> {
    let mut all = store.webhook_deliveries(100).await.unwrap();
    all.reverse();
    all.into_iter()
        .map(|d| (d.url, d.event_type.to_string(), d.task_id))
        .collect()
}

fn every_url() -> Vec<String> {
    vec![EVERYTHING.to_string(), FAILURES.to_string()]
}

/// Every way a task ends — finished, cancelled, failed by a rescue — enqueues one delivery per
/// endpoint that wants the event, in the same write; a task that goes back to the queue, or a
/// store nobody subscribed, enqueues nothing.
async fn a_task_end_enqueues_a_delivery_per_endpoint_that_wants_it(store: Arc<dyn Store>) {
    let unsubscribed = submit_one(&*store, task("src/u.py", Priority::Critical)).await;
    let (_, lease) = store.claim("w", 1, TTL).await.unwrap().pop().unwrap();
    assert_eq!(lease.task_id, unsubscribed);
    store
        .finish(&lease, Disposition::Complete, &report(None, None))
        .await
        .unwrap();
    assert_eq!(deliveries(&*store).await, []);

    subscribe_two(&*store);
    let completed = submit_one(&*store, task("src/a.py", Priority::High)).await;
    let mut t = task("src/b.py", Priority::Normal);
    t.max_attempts = 1;
    let failed = submit_one(&*store, t).await;
    let retried = submit_one(&*store, task("src/c.py", Priority::Low)).await;
    let claimed = store.claim("w", 3, TTL).await.unwrap();
    let mut done = report(None, None);
    done.commit = Some("c0ffee".into());
    store
        .finish(&claimed[0].1, Disposition::Complete, &done)
        .await
        .unwrap();
    let broken = report(Some(ErrorKind::SyntaxError), Some("does not parse"));
    store
        .finish(&claimed[1].1, Disposition::Fail, &broken)
        .await
        .unwrap();
    let again = Disposition::Retry {
        delay: Duration::ZERO,
    };
    let status = store.finish(&claimed[2].1, again, &broken).await.unwrap();
    assert_eq!(status, TaskStatus::Queued);
    store.cancel(retried).await.unwrap();
    let mut expiring = task("src/d.py", Priority::Normal);
    expiring.max_attempts = 1;
    let rescued = submit_one(&*store, expiring).await;
    store
        .claim("w", 1, Duration::from_millis(10))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(store.rescue_expired().await.unwrap().len(), 1);

    assert_eq!(
        deliveries(&*store).await,
        [
            (EVERYTHING.into(), "task.completed".into(), Some(completed)),
            (EVERYTHING.into(), "task.failed".into(), Some(failed)),
            (FAILURES.into(), "task.failed".into(), Some(failed)),
            (EVERYTHING.into(), "task.cancelled".into(), Some(retried)),
            (EVERYTHING.into(), "task.failed".into(), Some(rescued)),
            (FAILURES.into(), "task.failed".into(), Some(rescued)),
        ]
    );
    // The body is the event as recorded with the task's end; one event per end, the same
    // body and id for each endpoint.
    let claimed = store
        .claim_webhook_deliveries("d", &every_url(), 10, TTL)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 6);
    let bodies: Vec<serde_json::Value> = (claimed.iter())
        .map(|d| serde_json::from_str(&d.body).unwrap())
        .collect();
    assert_eq!(bodies[0]["type"], "task.completed");
    assert_eq!(bodies[0]["id"], claimed[0].event_id.to_string());
    assert_eq!(bodies[0]["data"]["task"]["id"], completed.to_string());
    assert_eq!(bodies[0]["data"]["task"]["status"], "completed");
    assert_eq!(bodies[0]["data"]["task"]["result_commit"], "c0ffee");
    assert_eq!(bodies[1]["data"]["task"]["error"], "does not parse");
    assert_eq!(bodies[1]["data"]["task"]["error_kind"], "syntax_error");
    assert_eq!(claimed[1].event_id, claimed[2].event_id);
    assert_eq!(claimed[1].body, claimed[2].body);
    assert_ne!(claimed[0].event_id, claimed[1].event_id);
    assert_eq!(bodies[3]["data"]["task"]["status"], "cancelled");
    assert_eq!(bodies[4]["data"]["task"]["error_kind"], "lease_expired");
    assert!(claimed.iter().all(|d| d.attempt == 1));
}

/// A delivery is leased to one dispatcher at a time; only the lease's holder records its
/// outcome; a retry waits for its time; an expired lease is taken over with the next attempt.
async fn deliveries_are_leased_fenced_and_retried_when_due(store: Arc<dyn Store>) {
    subscribe_two(&*store);
    let run = pitcrew_core::RunEnded {
        id: "nightly".into(),
        started_at: Utc::now(),
        finished_at: Utc::now(),
        completed: 1,
        failed: 0,
        possible_bugs: 0,
        retried: 0,
        queued: 0,
        cost_usd: 0.25,
        budget_spent: false,
        stopped: false,
    };
    let event = WebhookEvent::run_finished(&run);
    assert_eq!(store.enqueue_webhook_event(&event).await.unwrap(), 1);
    // The same event again adds nothing.
    assert_eq!(store.enqueue_webhook_event(&event).await.unwrap(), 0);
    let urls = every_url();
    assert!(store.next_webhook_due(&urls).await.unwrap().unwrap() <= Utc::now());
    // Not a URL this dispatcher knows: nothing for it.
    let other = vec!["https://elsewhere.example/".to_string()];
    assert!(
        store
            .claim_webhook_deliveries("d", &other, 10, TTL)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.next_webhook_due(&other).await.unwrap(), None);

    let first = store
        .claim_webhook_deliveries("d1", &urls, 10, TTL)
        .await
        .unwrap();
    let [first] = first.as_slice() else {
        panic!("one delivery expected: {first:?}");
    };
    assert_eq!(
        (first.attempt, first.event_id, first.url.as_str()),
        (1, event.id, EVERYTHING)
    );
    assert_eq!(first.body, event.body());
    // Leased: nobody else gets it, and it is due when the lease ends.
    assert!(
        store
            .claim_webhook_deliveries("d2", &urls, 10, TTL)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.next_webhook_due(&urls).await.unwrap().unwrap() > Utc::now());
    let mut forged = first.clone();
    forged.token = uuid::Uuid::now_v7();
    let delivered = DeliveryOutcome::Delivered { status_code: 204 };
    assert!(
        !store
            .record_webhook_attempt(&forged, &delivered)
            .await
            .unwrap()
    );
    let retry = DeliveryOutcome::Retry {
        delay: Duration::from_millis(300),
        status_code: Some(503),
        error: "HTTP 503: busy".into(),
    };
    assert!(store.record_webhook_attempt(first, &retry).await.unwrap());
    // The same lease cannot write twice.
    assert!(
        !store
            .record_webhook_attempt(first, &delivered)
            .await
            .unwrap()
    );
    let listed = &store.webhook_deliveries(10).await.unwrap()[0];
    assert_eq!(listed.state, DeliveryState::Retrying);
    assert_eq!(listed.attempts, 1);
    assert_eq!(listed.last_status_code, Some(503));
    assert_eq!(listed.last_error.as_deref(), Some("HTTP 503: busy"));
    assert_eq!(listed.event_type, WebhookEventType::RunFinished);
    assert_eq!((listed.task_id, listed.finished_at), (None, None));
    // Not before its time.
    assert!(
        store
            .claim_webhook_deliveries("d1", &urls, 10, TTL)
            .await
            .unwrap()
            .is_empty()
    );
    tokio::time::sleep(Duration::from_millis(400)).await;

    // A dispatcher that dies holding the lease: once it expires, another takes over.
    let second = store
        .claim_webhook_deliveries("d1", &urls, 10, Duration::from_millis(10))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(second.attempt, 2);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let third = store
        .claim_webhook_deliveries("d2", &urls, 10, TTL)
        .await
        .unwrap()
        .remove(0);
    assert_eq!((third.attempt, third.event_id), (3, event.id));
    assert!(
        !store
            .record_webhook_attempt(&second, &delivered)
            .await
            .unwrap(),
        "an expired lease recorded an outcome"
    );
    assert!(
        store
            .record_webhook_attempt(&third, &delivered)
            .await
            .unwrap()
    );
    let listed = &store.webhook_deliveries(10).await.unwrap()[0];
    assert_eq!(listed.state, DeliveryState::Delivered);
    assert_eq!((listed.attempts, listed.last_status_code), (3, Some(204)));
    assert_eq!(listed.last_error, None);
    assert!(listed.finished_at.is_some());
    assert_eq!(store.next_webhook_due(&urls).await.unwrap(), None);
    assert!(
        store
            .claim_webhook_deliveries("d1", &urls, 10, TTL)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Deliveries given up stay failed with their last error; counts go by URL and state, and
/// by when their events were recorded.
async fn delivery_counts_by_url_and_state(store: Arc<dyn Store>) {
    subscribe_two(&*store);
    let mut batch = Vec::new();
    for i in 0..3 {
        let mut t = task(&format!("src/{i}.py"), Priority::Normal);
        t.max_attempts = 1;
        batch.push(t);
    }
    store.submit(&batch).await.unwrap();
    for (_, lease) in store.claim("w", 3, TTL).await.unwrap() {
        store
            .finish(&lease, Disposition::Fail, &report(None, Some("no")))
            .await
            .unwrap();
    }
    let claimed = store
        .claim_webhook_deliveries("d", &[FAILURES.to_string()], 2, TTL)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2);
    let given_up = DeliveryOutcome::Failed {
        status_code: None,
        error: "cannot connect: connection refused".into(),
    };
    store
        .record_webhook_attempt(&claimed[0], &given_up)
        .await
        .unwrap();
    let counts: Vec<(String, DeliveryState, u64)> = (store.webhook_delivery_counts(None))
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.url, c.state, c.count))
        .collect();
    // The second claimed delivery is under way: still pending.
    assert_eq!(
        counts,
        [
            (FAILURES.into(), DeliveryState::Pending, 2),
            (FAILURES.into(), DeliveryState::Failed, 1),
            (EVERYTHING.into(), DeliveryState::Pending, 3),
        ]
    );
    let failed = (store.webhook_deliveries(10).await.unwrap())
        .into_iter()
        .find(|d| d.state == DeliveryState::Failed)
        .unwrap();
    assert_eq!(failed.last_status_code, None);
    assert_eq!(
        failed.last_error.as_deref(),
        Some("cannot connect: connection refused")
    );
    let later = Some(Utc::now() + chrono::TimeDelta::minutes(1));
    assert_eq!(store.webhook_delivery_counts(later).await.unwrap(), []);
    assert_eq!(store.webhook_deliveries(2).await.unwrap().len(), 2);
}

/// Dispatchers of several processes sharing the store never hold one delivery at once.
async fn concurrent_dispatchers_never_share_a_delivery(fx: &impl Fixture) {
    let (store, other) = (open(fx).await, open(fx).await);
    subscribe_two(&*store);
    let batch: Vec<NewTask> = (0..30)
        .map(|i| task(&format!("t{i}.py"), Priority::Normal))
        .collect();
    store.submit(&batch).await.unwrap();
    for (_, lease) in store.claim("w", 30, TTL).await.unwrap() {
        store
            .finish(&lease, Disposition::Complete, &report(None, None))
            .await
            .unwrap();
    }
    let mut handles = Vec::new();
    for d in 0..6 {
        let s = if d % 2 == 0 {
            store.clone()
        } else {
            other.clone()
        };
        handles.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let claimed = (s.claim_webhook_deliveries(&format!("d{d}"), &every_url(), 2, TTL))
                    .await
                    .unwrap();
                if claimed.is_empty() {
                    break;
                }
                for delivery in claimed {
                    let delivered = DeliveryOutcome::Delivered { status_code: 200 };
                    assert!(
                        s.record_webhook_attempt(&delivery, &delivered)
                            .await
                            .unwrap()
                    );
                    mine.push(delivery.seq);
                }
            }
            mine
        }));
    }
    let mut seen = HashSet::new();
    for h in handles {
        for seq in h.await.unwrap() {
            assert!(seen.insert(seq), "delivery {seq} claimed twice");
        }
    }
    assert_eq!(seen.len(), 30);
    let counts = store.webhook_delivery_counts(None).await.unwrap();
    assert_eq!(
        counts,
        [DeliveryCount {
            url: EVERYTHING.into(),
            state: DeliveryState::Delivered,
            count: 30
        }]
    );
}

/// Instantiates every test above for one backend, whose [`Fixture`] is `$fixture`.
macro_rules! conformance {
    ($backend:ident, $fixture:ty) => {
        mod $backend {
            use super::*;

            /// A test over a store opened in a fresh fixture.
            macro_rules! case {
                ($name:ident) => {
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        let Some(fx) = <$fixture>::new().await else {
                            return;
                        };
                        super::$name(open(&fx).await).await;
                    }
                };
            }

            /// A test over the fixture itself.
            macro_rules! fixture_case {
                ($name:ident) => {
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        let Some(fx) = <$fixture>::new().await else {
                            return;
                        };
                        super::$name(&fx).await;
                    }
                };
            }

            case!(submit_then_find_by_id_and_prefix);
            case!(batch_keeps_order);
            case!(tasks_are_numbered_and_found_by_their_handle);
            case!(claims_by_priority_then_fifo);
            case!(claim_creates_lease_and_attempt);
            case!(finish_is_fenced_by_the_lease_token);
            case!(retry_waits_for_run_at_and_fails_when_attempts_run_out);
            case!(a_deferred_attempt_never_uses_up_the_task);
            case!(rescue_requeues_expired_leases_and_fences_the_old_one);
            case!(rescue_fails_a_task_without_attempts_left);
            case!(idempotency_key_deduplicates_unfinished_tasks);
            case!(cancel_and_requeue);
            case!(a_released_task_returns_without_using_up_an_attempt);
            case!(a_possible_bug_is_its_own_end_state_and_keeps_its_commit);
            case!(requeue_refuses_a_taken_idempotency_key);
            case!(list_filters_and_stats);
            case!(recorded_attempts_are_selected_by_start_and_kind);
            case!(model_health_round_trips);
            case!(model_health_keeps_the_later_cooldown);
            case!(wait_for_work_returns_by_max);
            case!(shared_limits_count_every_call_or_none);
            case!(shared_budgets_are_reserved_then_settled);
            fixture_case!(concurrent_workers_never_overrun_a_shared_limit_or_budget);
            case!(registered_secrets_are_never_stored_except_in_the_patch);
            fixture_case!(concurrent_claimers_never_share_a_task);
            fixture_case!(concurrent_submits_of_one_key_make_one_task);
            fixture_case!(migrate_applies_pending_migrations_once);
            fixture_case!(concurrent_opens_of_a_fresh_store_all_succeed);
            fixture_case!(a_schema_from_a_newer_pitcrew_is_refused);
            case!(a_task_end_enqueues_a_delivery_per_endpoint_that_wants_it);
            case!(deliveries_are_leased_fenced_and_retried_when_due);
            case!(delivery_counts_by_url_and_state);
            fixture_case!(concurrent_dispatchers_never_share_a_delivery);
        }
    };
}

mod sqlite_backend {
    use super::*;

    #[tokio::test]
    async fn wait_for_work_sleeps_max() {
        let fx = SqliteFixture::new().await.unwrap();
        let store = open(&fx).await;
        let max = Duration::from_millis(200);
        let started = Instant::now();
        store.wait_for_work(max).await;
        assert!(started.elapsed() >= max);
    }
}

conformance!(sqlite, SqliteFixture);

mod postgres_backend {
    use super::*;

    /// How long `wait` took.
    async fn timed(wait: impl Future<Output = ()>) -> Duration {
        let started = Instant::now();
        wait.await;
        started.elapsed()
    }

    /// Waits on `store` (up to 5 s) while `write` runs, and says how long the wait took.
    async fn woken_by(store: &dyn Store, write: impl Future<Output = ()>) -> Duration {
        // join! polls the wait first, so it listens before the write starts.
        tokio::join!(timed(store.wait_for_work(Duration::from_secs(5))), write).0
    }

    /// A store whose listener is up: the first wait returns once it listens.
    async fn listening(fx: &PgFixture) -> Arc<dyn Store> {
        let store = open(fx).await;
        assert!(timed(store.wait_for_work(Duration::from_secs(5))).await < Duration::from_secs(4));
        store
    }

    const PROMPT: Duration = Duration::from_secs(1);

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_write_that_makes_work_wakes_a_waiter() {
        let Some(fx) = PgFixture::new().await else {
            return;
        };
        let waiter = listening(&fx).await;
        let writer = open(&fx).await;
        let quiet = timed(waiter.wait_for_work(Duration::from_millis(300))).await;
        assert!(
            quiet >= Duration::from_millis(300),
            "woke with nothing written"
        );

        let submitted = woken_by(&*waiter, async {
            submit_one(&*writer, task("a.py", Priority::Normal)).await;
        })
        .await;
        assert!(
            submitted < PROMPT,
            "submit woke the waiter after {submitted:?}"
        );

        let (_, lease) = writer.claim("w", 1, TTL).await.unwrap().pop().unwrap();
        let retried = woken_by(&*waiter, async {
            let retry = Disposition::Retry {
                delay: Duration::ZERO,
            };
            let status = writer.finish(&lease, retry, &report(None, None)).await;
            assert_eq!(status.unwrap(), TaskStatus::Queued);
        })
        .await;
        assert!(
            retried < PROMPT,
            "a retry woke the waiter after {retried:?}"
        );

        writer.cancel(lease.task_id).await.unwrap();
        let requeued = woken_by(&*waiter, async {
            writer.requeue(lease.task_id).await.unwrap();
        })
        .await;
        assert!(
            requeued < PROMPT,
            "requeue woke the waiter after {requeued:?}"
        );

        writer
            .claim("w", 1, Duration::from_millis(10))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let rescued = woken_by(&*waiter, async {
            assert_eq!(writer.rescue_expired().await.unwrap().len(), 1);
        })
        .await;
        assert!(
            rescued < PROMPT,
            "a rescue woke the waiter after {rescued:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn another_schema_does_not_wake_a_waiter() {
        let (Some(mine), Some(theirs)) = (PgFixture::new().await, PgFixture::new().await) else {
            return;
        };
        let waiter = listening(&mine).await;
        let other = open(&theirs).await;
        let max = Duration::from_millis(500);
        let waited = tokio::join!(timed(waiter.wait_for_work(max)), async {
            submit_one(&*other, task("a.py", Priority::Normal)).await;
        })
        .0;
        assert!(waited >= max, "woken by another schema's submit");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_store_recovers_from_its_connections_being_killed() {
        let Some(fx) = PgFixture::new().await else {
            return;
        };
        let store = listening(&fx).await;
        let admin = open(&fx).await;
        // Every connection of `store` and `admin`, listener included, is killed.
        let kill = format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = '{}' AND pid <> pg_backend_pid()",
            fx.schema
        );
        // The waiter wakes when the listener is back: notifications may have been missed.
        let killed = woken_by(&*store, fx.execute(&kill)).await;
        assert!(killed < Duration::from_secs(4), "woke after {killed:?}");
        // Listening again, a submit wakes it promptly, through fresh connections.
        let submitted = woken_by(&*store, async {
            submit_one(&*store, task("a.py", Priority::Normal)).await;
        })
        .await;
        assert!(
            submitted < PROMPT,
            "submit woke the waiter after {submitted:?}"
        );
        assert_eq!(admin.stats().await.unwrap().count(TaskStatus::Queued), 1);
    }
}

conformance!(postgres, PgFixture);
