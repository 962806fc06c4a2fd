//! Reading and changing tasks, the queue's counts and the models, on both backends.

use std::time::Duration;

use pitcrew_core::{AttemptReport, Usage};
use pitcrew_store::Disposition;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{Api, Backend, assert_error, backends};

/// Submits `count` tasks in one batch, alternating unit_test and docs.
async fn submit_many(api: &Api, count: usize) {
    let tasks: Vec<Value> = (0..count)
        .map(|n| {
            let kind = if n % 2 == 0 { "unit_test" } else { "docs" };
            json!({"kind": kind, "target": "src/calc.py", "description": format!("task {n}")})
        })
        .collect();
    let (status, body) = api
        .post("/api/v1/tasks/batch", &json!({ "tasks": tasks }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

/// The seqs of every page of `query` (`limit` a page), following the cursors; `between`
/// runs after the first page.
async fn walk(api: &Api, query: &str, limit: u32, between: impl AsyncFnOnce()) -> Vec<u64> {
    let mut seqs = Vec::new();
    let mut cursor: Option<String> = None;
    let mut between = Some(between);
    loop {
        let mut path = format!("/api/v1/tasks?limit={limit}{query}");
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={cursor}"));
        }
        let (status, page) = api.get(&path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let tasks = page["tasks"].as_array().unwrap();
        assert!(tasks.len() <= limit as usize);
        seqs.extend(tasks.iter().map(|t| t["seq"].as_u64().unwrap()));
        if let Some(between) = between.take() {
            between().await;
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return seqs,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pagination_returns_every_task_exactly_once_in_order() {
    for backend in backends("pagination_returns_every_task_exactly_once_in_order") {
        let api = Api::start(backend).await;
        submit_many(&api, 23).await;
        // Tasks submitted while a client pages come on later pages, once.
        let seqs = walk(&api, "", 5, async || submit_many(&api, 4).await).await;
        assert_eq!(seqs, (1..=27).collect::<Vec<u64>>());
        // Exactly a page's worth: the last page says there is no next one.
        assert_eq!(walk(&api, "", 27, async || {}).await.len(), 27);

        let docs = walk(&api, "&kind=docs", 4, async || {}).await;
        let expected: Vec<u64> = api
            .stored()
            .await
            .iter()
            .filter(|t| t.kind == pitcrew_core::TaskKind::Docs)
            .map(|t| t.seq)
            .collect();
        assert_eq!(docs, expected);
        assert_eq!(
            walk(&api, "&status=queued&kind=unit_test", 100, async || {})
                .await
                .len(),
            14
        );
        assert!(
            walk(&api, "&status=completed", 3, async || {})
                .await
                .is_empty()
        );
        api.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_listing_query_is_refused_naming_the_parameter() {
    let api = Api::start(Backend::Sqlite).await;
    for (query, says) in [
        ("limit=0", "limit must be between 1 and 1000"),
        ("limit=1001", "limit must be between 1 and 1000"),
        ("cursor=abc", "cursor `abc` is not one this API gave"),
        ("status=sleeping", "unknown task status `sleeping`"),
        ("stauts=queued", "unknown field `stauts`"),
        ("limit=-3", "limit"),
    ] {
        let answer = api.get(&format!("/api/v1/tasks?{query}")).await;
        assert_error(&answer, StatusCode::BAD_REQUEST, "invalid_query", says);
    }
    api.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_is_shown_cancelled_retried_and_counted() {
    for backend in backends("a_task_is_shown_cancelled_retried_and_counted") {
        let api = Api::start(backend).await;
        submit_many(&api, 2).await;
        let (_, first) = api.get("/api/v1/tasks/1").await;
        let id = first["task"]["id"].as_str().unwrap().to_string();
        assert_eq!(first["task"]["seq"], 1);
        assert_eq!(first["task"]["status"], "queued");
        assert_eq!(first["task"]["applied"], Value::Null);
        assert_eq!(first["attempts"], json!([]));
        // The handle, `#` and all, the id and a prefix of it name the same task.
        for name in ["%231", &id, &id[..35]] {
            let (status, shown) = api.get(&format!("/api/v1/tasks/{name}")).await;
            assert_eq!(status, StatusCode::OK, "{name}: {shown}");
            assert_eq!(shown["task"]["id"], id.as_str());
        }
        assert_error(
            &api.get("/api/v1/tasks/99").await,
            StatusCode::NOT_FOUND,
            "task_not_found",
            "no task matches `99`",
        );
        assert_error(
            &api.get("/api/v1/tasks/1?patches=maybe").await,
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "patches",
        );

        let (status, cancelled) = api
            .post(&format!("/api/v1/tasks/{id}/cancel"), &json!({}))
            .await;
        assert_eq!(status, StatusCode::OK, "{cancelled}");
        assert_eq!(cancelled["status"], "cancelled");
        assert_error(
            &api.post("/api/v1/tasks/1/cancel", &json!({})).await,
            StatusCode::CONFLICT,
            "invalid_state",
            "only queued or running tasks can be cancelled",
        );
        assert_error(
            &api.post("/api/v1/tasks/2/retry", &json!({})).await,
            StatusCode::CONFLICT,
            "invalid_state",
            "only failed or cancelled tasks can be retried",
        );
        let (status, retried) = api.post("/api/v1/tasks/1/retry", &json!({})).await;
        assert_eq!(status, StatusCode::OK, "{retried}");
        assert_eq!(retried["status"], "queued");

        let (status, queue) = api.get("/api/v1/queue").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(queue["total"], 2);
        assert_eq!(
            queue["counts"],
            json!([{"status": "queued", "priority": "normal", "count": 2}])
        );
        assert!(queue["next_run_at"].is_string(), "{queue}");
        api.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_diff_is_the_results_patch_once_there_is_one() {
    for backend in backends("the_diff_is_the_results_patch_once_there_is_one") {
        let api = Api::start(backend).await;
        submit_many(&api, 1).await;
        assert_error(
            &api.get("/api/v1/tasks/1/diff").await,
            StatusCode::CONFLICT,
            "no_result",
            "task #1 is queued; only completed tasks have an accepted result",
        );
        // A worker's accepted result, recorded through the store as the engine records it.
        let (task, lease) = api
            .store
            .claim("api-test/0", 1, Duration::from_secs(60))
            .await
            .unwrap()
            .remove(0);
        let patch = "--- a/tests/test_calc.py\n+++ b/tests/test_calc.py\n@@ -0,0 +1 @@\n+def test_x(): pass\n";
        let report = AttemptReport {
            model: Some("scripted/coder-v1".into()),
            usage: Usage::default(),
            commit: Some("0123456789abcdef0123456789abcdef01234567".into()),
            patch: Some(patch.into()),
            quality: Some(0.9),
            ..AttemptReport::default()
        };
        api.store
            .finish(&lease, Disposition::Complete, &report)
            .await
            .unwrap();

        let (status, diff) = api.get("/api/v1/tasks/1/diff").await;
        assert_eq!(status, StatusCode::OK, "{diff}");
        assert_eq!(
            diff,
            json!({"task": task.id.to_string(), "seq": 1, "possible_bug": false, "patch": patch})
        );
        let (_, shown) = api.get("/api/v1/tasks/1").await;
        assert_eq!(shown["task"]["status"], "completed");
        assert_eq!(shown["attempts"][0]["outcome"], "completed");
        assert_eq!(shown["attempts"][0]["patch"], Value::Null);
        let (_, with_patches) = api.get("/api/v1/tasks/1?patches=true").await;
        assert_eq!(with_patches["attempts"][0]["patch"], patch);

        // The metrics count the attempt, as `pitcrew metrics` would.
        let (status, metrics) = api.get("/api/v1/metrics?since=1h&kind=unit_test").await;
        assert_eq!(status, StatusCode::OK, "{metrics}");
        assert_eq!(metrics["totals"]["attempts"], 1, "{metrics}");
        assert_eq!(metrics["totals"]["completed"], 1, "{metrics}");
        let prometheus = api
            .request(reqwest::Method::GET, "/api/v1/metrics?format=prometheus")
            .send()
            .await
            .unwrap();
        assert_eq!(
            prometheus.headers()["content-type"],
            "text/plain; version=0.0.4; charset=utf-8"
        );
        let text = prometheus.text().await.unwrap();
        assert!(text.contains("pitcrew_attempts 1"), "{text}");
        assert_error(
            &api.get("/api/v1/metrics?since=yesterday").await,
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "since: `yesterday`",
        );
        api.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_models_are_shown_with_health_and_ranked() {
    let api = Api::start(Backend::Sqlite).await;
    let (status, models) = api.get("/api/v1/models").await;
    assert_eq!(status, StatusCode::OK);
    let models = models.as_array().unwrap();
    assert!(!models.is_empty());
    let deepseek = models
        .iter()
        .find(|m| {
            m["presets"]
                .as_array()
                .unwrap()
                .contains(&json!("deepseek-v3"))
        })
        .expect("the default preset's model is listed");
    assert_eq!(deepseek["circuit"], "closed");
    assert_eq!(deepseek["calls_seen"], 0);

    let (status, ranked) = api
        .get("/api/v1/models/select?kind=fix&complexity=high&min_quality=0.1")
        .await;
    assert_eq!(status, StatusCode::OK, "{ranked}");
    let ranked = ranked.as_array().unwrap();
    assert_eq!(ranked.len(), models.len());
    assert!(
        ranked[0]["components"]["quality"].is_number(),
        "{}",
        ranked[0]
    );
    // No key is set here: every model is left out, saying why.
    assert!(
        ranked
            .iter()
            .all(|c| !c["excluded"].as_array().unwrap().is_empty()),
        "{ranked:?}"
    );
    assert_error(
        &api.get("/api/v1/models/select?model=gpt-9").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown_model",
        "unknown model preset `gpt-9`",
    );
    assert_error(
        &api.get("/api/v1/models/select?complexity=extreme").await,
        StatusCode::BAD_REQUEST,
        "invalid_query",
        "unknown complexity `extreme`",
    );
    api.finish().await;
}
