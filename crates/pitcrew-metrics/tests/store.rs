//! `gather` over real stores: attempts written the way workers write them, read back through
//! each backend. PostgreSQL runs when `PITCREW_TEST_POSTGRES_URL` is set.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use pitcrew_core::{
    AttemptReport, NewTask, Priority, TaskKind, Usage, WebhookEventType, WebhookSubscription,
};
use pitcrew_metrics::{Selection, gather};
use pitcrew_store::{DeliveryOutcome, DeliveryState, Disposition, Store};
use pitcrew_testkit::{PgSchema, postgres_or_skip};
use serde_json::json;

fn task(kind: TaskKind) -> NewTask {
    NewTask {
        kind,
        description: "write tests".into(),
        targets: vec!["src/a.py".into()],
        repo: "/tmp/repo".into(),
        repo_url: None,
        base_commit: "0123456789abcdef0123456789abcdef01234567".into(),
        priority: Priority::Normal,
        model: None,
        max_attempts: 3,
        idempotency_key: None,
        metadata: json!({}),
    }
}

/// One unit test completed after a rate limit on another model, one docs task failed on
/// prose; both in run `r1`.
async fn record_a_run(store: &dyn Store) {
    store
        .submit(&[task(TaskKind::UnitTest), task(TaskKind::Docs)])
        .await
        .unwrap();
    let claimed = store.claim("w", 2, Duration::from_secs(60)).await.unwrap();
    for (task, lease) in claimed {
        let (disposition, report) = if task.kind == TaskKind::UnitTest {
            let calls = json!([
                {"model": "a", "model_id": "vendor/a", "error_kind": "rate_limit",
                 "usage": {"tokens_in": 0, "tokens_out": 0, "cost_usd": null},
                 "cost_usd": 0.0, "time_to_first_token_ms": null, "latency_ms": 40},
                {"model": "b", "model_id": "vendor/b", "error_kind": null,
                 "usage": {"tokens_in": 500, "tokens_out": 120, "cost_usd": 0.004},
                 "cost_usd": 0.004, "time_to_first_token_ms": 150, "latency_ms": 800},
            ]);
            let report = AttemptReport {
                model: Some("vendor/b".into()),
                usage: Usage {
                    tokens_in: 500,
                    tokens_out: 120,
                    cost_usd: Some(0.004),
                },
                latency_ms: Some(800),
                run_id: Some("r1".into()),
                quality: Some(0.9),
                details: json!({"model": "b", "iterations": [
                    {"number": 1, "calls": calls, "outcome": "accepted", "rejected_as": null}
                ]}),
                ..AttemptReport::default()
            };
            (Disposition::Complete, report)
        } else {
            let calls = json!([
                {"model": "b", "model_id": "vendor/b", "error_kind": "prose_only",
                 "usage": {"tokens_in": 300, "tokens_out": 60, "cost_usd": 0.002},
                 "cost_usd": 0.002, "time_to_first_token_ms": null, "latency_ms": 600},
            ]);
            let report = AttemptReport {
                error_kind: Some(pitcrew_core::ErrorKind::ProseOnly),
                error: Some("prose".into()),
                usage: Usage {
                    tokens_in: 300,
                    tokens_out: 60,
                    cost_usd: Some(0.002),
                },
                run_id: Some("r1".into()),
                details: json!({"iterations": [
                    {"number": 1, "calls": calls, "outcome": "unusable_reply", "rejected_as": null}
                ]}),
                ..AttemptReport::default()
            };
            (Disposition::Fail, report)
        };
        store.finish(&lease, disposition, &report).await.unwrap();
    }
}

async fn figures_agree_on(store: Arc<dyn Store>) {
    let empty = gather(&*store, &Selection::default(), Utc::now())
        .await
        .unwrap();
    assert_eq!(empty.totals.figures.attempts, 0);
    assert_eq!(empty.totals.figures.success_rate, None);

    // Every task's end is a delivery to the endpoint, counted by state.
    let hook = "https://hooks.example/pitcrew";
    store.subscribe_webhooks(vec![WebhookSubscription {
        url: hook.into(),
        events: WebhookEventType::ALL.to_vec(),
    }]);
    record_a_run(&*store).await;
    let claimed = store
        .claim_webhook_deliveries("d", &[hook.to_string()], 1, Duration::from_secs(60))
        .await
        .unwrap();
    let given_up = DeliveryOutcome::Failed {
        status_code: Some(500),
        error: "HTTP 500".into(),
    };
    assert!(
        store
            .record_webhook_attempt(&claimed[0], &given_up)
            .await
            .unwrap()
    );
    let metrics = gather(&*store, &Selection::default(), Utc::now())
        .await
        .unwrap();
    let webhooks = &metrics.webhooks;
    assert_eq!(webhooks.deliveries[&DeliveryState::Pending], 1);
    assert_eq!(webhooks.deliveries[&DeliveryState::Failed], 1);
    assert_eq!(webhooks.delivered_ratio, Some(0.0));
    assert_eq!(webhooks.endpoints.len(), 1);
    assert_eq!(webhooks.endpoints[0].url, hook);
    let totals = &metrics.totals.figures;
    assert_eq!((totals.attempts, totals.completed, totals.calls), (2, 1, 3));
    assert_eq!((totals.rate_limited, totals.content_failures), (1, 1));
    assert_eq!((totals.tokens_in, totals.tokens_out), (800, 180));
    assert!((totals.cost_usd.unwrap() - 0.006).abs() < 1e-12);
    let models: Vec<(&str, u64, u64)> = (metrics.models.iter())
        .map(|m| (m.model.as_str(), m.figures.attempts, m.figures.calls))
        .collect();
    assert_eq!(models, [("vendor/a", 0, 1), ("vendor/b", 1, 2)]);
    assert_eq!(metrics.models[1].figures.latency_p50_ms, Some(800));
    assert_eq!(
        metrics.models[1].figures.time_to_first_token_p50_ms,
        Some(150)
    );
    assert_eq!(metrics.runs.len(), 1);
    assert_eq!(metrics.runs[0].figures.attempts, 2);

    let docs = Selection {
        kind: Some(TaskKind::Docs),
        ..Selection::default()
    };
    let metrics = gather(&*store, &docs, Utc::now()).await.unwrap();
    assert_eq!(metrics.totals.figures.attempts, 1);
    assert_eq!(metrics.totals.figures.success_rate, Some(0.0));

    let later = Selection {
        since: Some(Utc::now() + chrono::TimeDelta::minutes(1)),
        ..Selection::default()
    };
    let metrics = gather(&*store, &later, Utc::now()).await.unwrap();
    assert_eq!(metrics.totals.figures.attempts, 0);
    assert_eq!(metrics.webhooks.deliveries[&DeliveryState::Failed], 0);
    assert!(metrics.webhooks.endpoints.is_empty());
}

#[tokio::test]
async fn figures_from_a_sqlite_store() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("q.db").display());
    figures_agree_on(pitcrew_store::open(&url).await.unwrap()).await;
}

#[tokio::test]
async fn figures_from_a_postgres_store() {
    let Some(base) = postgres_or_skip("the PostgreSQL metrics test") else {
        return;
    };
    let schema = PgSchema::create(&base, "metrics");
    figures_agree_on(pitcrew_store::open(&schema.store_url()).await.unwrap()).await;
}
