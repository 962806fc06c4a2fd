//! One suite for every `Store` backend: each test is a function over a fresh store, and the
//! macro at the bottom instantiates the suite per backend.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use pitcrew_core::{
    AttemptOutcome, AttemptReport, ErrorKind, NewTask, Priority, TaskFilter, TaskKind, TaskStatus,
};
use pitcrew_store::{Disposition, Store, StoreError};

const TTL: Duration = Duration::from_secs(60);

fn task(target: &str, priority: Priority) -> NewTask {
    NewTask {
        kind: TaskKind::UnitTest,
        description: format!("write tests for {target}"),
        targets: vec![target.to_string()],
        repo: "/tmp/repo".into(),
        base_commit: "0123456789abcdef0123456789abcdef01234567".into(),
        priority,
        model: None,
        max_attempts: 3,
        idempotency_key: None,
        metadata: serde_json::json!({"source": "test"}),
    }
}

fn report(error_kind: Option<ErrorKind>, error: Option<&str>) -> AttemptReport {
    AttemptReport {
        model: Some("test/model".into()),
        error_kind,
        error: error.map(String::from),
        ..AttemptReport::default()
    }
}

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
    assert!(t.lease_expires_at.unwrap() > chrono::Utc::now());
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
    assert!(stats.next_lease_expiry.unwrap() > chrono::Utc::now());
}

async fn concurrent_claimers_never_share_a_task(store: Arc<dyn Store>, other: Arc<dyn Store>) {
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

/// Instantiates every test above for one backend. `$open` is an async expression giving a
/// fresh `(Arc<dyn Store>, guard)`; `$reopen` opens a second handle on the same database.
macro_rules! conformance {
    ($backend:ident, $open:expr, $reopen:expr) => {
        mod $backend {
            use super::*;

            macro_rules! case {
                ($name:ident) => {
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        let Some((store, _guard)) = $open.await else {
                            return;
                        };
                        super::$name(store).await;
                    }
                };
            }

            case!(submit_then_find_by_id_and_prefix);
            case!(batch_keeps_order);
            case!(claims_by_priority_then_fifo);
            case!(claim_creates_lease_and_attempt);
            case!(finish_is_fenced_by_the_lease_token);
            case!(retry_waits_for_run_at_and_fails_when_attempts_run_out);
            case!(rescue_requeues_expired_leases_and_fences_the_old_one);
            case!(rescue_fails_a_task_without_attempts_left);
            case!(idempotency_key_deduplicates_unfinished_tasks);
            case!(cancel_and_requeue);
            case!(requeue_refuses_a_taken_idempotency_key);
            case!(list_filters_and_stats);

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_claimers_never_share_a_task() {
                let Some((store, guard)) = $open.await else {
                    return;
                };
                let other = $reopen(&guard).await;
                super::concurrent_claimers_never_share_a_task(store, other).await;
            }
        }
    };
}

mod sqlite_backend {
    use super::*;
    use pitcrew_store::SqliteStore;

    pub async fn open() -> Option<(Arc<dyn Store>, tempfile::TempDir)> {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("queue.db"))
            .await
            .unwrap();
        Some((Arc::new(store), dir))
    }

    pub async fn reopen(dir: &tempfile::TempDir) -> Arc<dyn Store> {
        Arc::new(
            SqliteStore::open(dir.path().join("queue.db"))
                .await
                .unwrap(),
        )
    }
}

conformance!(sqlite, sqlite_backend::open(), sqlite_backend::reopen);
