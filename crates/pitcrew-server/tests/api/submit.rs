//! Submitting: one task or a batch, checked like `pitcrew submit`; anything wrong is a 4xx
//! JSON error naming the problem, and nothing is stored.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{Api, Backend, assert_error, backends, post_large};

#[tokio::test(flavor = "multi_thread")]
async fn one_task_is_queued_once_per_idempotency_key() {
    for backend in backends("one_task_is_queued_once_per_idempotency_key") {
        let api = Api::start(backend).await;
        let task = json!({
            "kind": "unit_test",
            "targets": ["src/calc.py"],
            "priority": "high",
            "idempotency_key": "calc-tests",
            "metadata": {"ticket": 7},
            "complexity": "low",
        });
        let (status, first) = api.post("/api/v1/tasks", &task).await;
        assert_eq!(status, StatusCode::CREATED, "{first}");
        assert_eq!(first["seq"], 1);
        assert_eq!(first["deduplicated"], false);
        let (status, again) = api.post("/api/v1/tasks", &task).await;
        assert_eq!(status, StatusCode::OK, "{again}");
        assert_eq!(again["deduplicated"], true);
        assert_eq!(again["id"], first["id"]);
        let stored = api.stored().await;
        assert_eq!(stored.len(), 1);
        let stored = &stored[0];
        assert_eq!(stored.targets, ["src/calc.py"]);
        assert_eq!(stored.description, "Write unit tests for src/calc.py.");
        assert_eq!(stored.metadata, json!({"ticket": 7, "complexity": "low"}));
        assert_eq!(stored.repo, api.repo.path().to_string_lossy());
        api.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_body_is_refused_naming_the_problem_and_nothing_is_stored() {
    let api = Api::start(Backend::Sqlite).await;
    let good = json!({"kind": "unit_test", "target": "src/calc.py"});
    let send_raw = |content_type: Option<&'static str>, body: Vec<u8>| {
        let mut request = api.request(Method::POST, "/api/v1/tasks").body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        async move { crate::support::answer(request.send().await.unwrap()).await }
    };

    for chunked in [false, true] {
        let over = pitcrew_server::TASK_BODY_LIMIT + 1;
        assert_error(
            &post_large(&api, "/api/v1/tasks", over, chunked).await,
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "limit of 1048576 bytes",
        );
    }
    let good_bytes = serde_json::to_vec(&good).unwrap();
    assert_error(
        &send_raw(None, good_bytes.clone()).await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        "application/json",
    );
    assert_error(
        &send_raw(Some("text/plain"), good_bytes).await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        "application/json",
    );
    assert_error(
        &send_raw(
            Some("application/json"),
            b"{\"kind\": \"unit_test\",".to_vec(),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "malformed_json",
        "not valid JSON",
    );

    let cases: [(Value, &str, &str); 8] = [
        (
            json!({"kind": "unit_test", "target": "src/calc.py", "colour": "red"}),
            "invalid_body",
            "unknown field `colour`",
        ),
        (
            json!({"kind": "bogus", "target": "src/calc.py"}),
            "invalid_body",
            "unknown task kind `bogus`; valid values: unit_test",
        ),
        (
            json!({"target": "src/calc.py"}),
            "invalid_body",
            "missing field `kind`",
        ),
        (
            json!({"kind": "unit_test"}),
            "invalid_task",
            "a unit_test task needs at least one target file",
        ),
        (
            json!({"kind": "unit_test", "target": "src/missing.py"}),
            "invalid_task",
            "target `src/missing.py` does not exist at HEAD",
        ),
        (
            json!({"kind": "unit_test", "target": "../outside.py"}),
            "invalid_task",
            "target `../outside.py` is outside the repository",
        ),
        (
            json!({"kind": "unit_test", "target": "src/calc.py", "model": "gpt-9"}),
            "invalid_task",
            "unknown model preset `gpt-9`; valid values:",
        ),
        (
            json!({"kind": "unit_test", "target": "src/calc.py", "prompt": "no_such_prompt"}),
            "invalid_task",
            "no_such_prompt",
        ),
    ];
    for (body, code, says) in cases {
        let answer = api.post("/api/v1/tasks", &body).await;
        assert_error(&answer, StatusCode::UNPROCESSABLE_ENTITY, code, says);
    }
    assert_eq!(api.stored().await, [], "a refused task was stored");
    api.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_with_one_bad_entry_stores_nothing_and_names_every_bad_entry() {
    for backend in backends("a_batch_with_one_bad_entry_stores_nothing") {
        let api = Api::start(backend).await;
        let (status, refused) = api
            .post(
                "/api/v1/tasks/batch",
                &json!({"tasks": [
                    {"kind": "unit_test", "target": "src/calc.py"},
                    {"kind": "unit_test", "target": "src/calc.py", "priority": "urgent"},
                    {"kind": "docs", "target": "src/missing.py"},
                    {"kind": "implement", "target": "src/new.py", "description": "add it"},
                ]}),
            )
            .await;
        assert_error(
            &(status, refused.clone()),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_batch",
            "nothing was queued",
        );
        let problems = refused["error"]["problems"].as_array().unwrap();
        let indexes: Vec<u64> = problems
            .iter()
            .map(|p| p["index"].as_u64().unwrap())
            .collect();
        assert_eq!(indexes, [1, 2], "{refused}");
        assert!(
            problems[0]["message"]
                .as_str()
                .unwrap()
                .contains("unknown priority `urgent`"),
            "{refused}"
        );
        assert!(
            problems[1]["message"]
                .as_str()
                .unwrap()
                .contains("src/missing.py"),
            "{refused}"
        );
        let message = refused["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("tasks[1]: ") && message.contains("tasks[2]: "),
            "{message}"
        );
        assert_eq!(api.stored().await, []);

        let (status, submitted) = api
            .post(
                "/api/v1/tasks/batch",
                &json!({"tasks": [
                    {"kind": "unit_test", "target": "src/calc.py"},
                    {"kind": "implement", "target": "src/new.py", "description": "add it"},
                ]}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{submitted}");
        let seqs: Vec<u64> = submitted
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(seqs, [1, 2]);
        let kinds: Vec<String> = api
            .stored()
            .await
            .iter()
            .map(|t| t.kind.to_string())
            .collect();
        assert_eq!(kinds, ["unit_test", "implement"]);
        api.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_must_have_tasks_and_stay_within_its_limit() {
    let api = Api::start(Backend::Sqlite).await;
    assert_error(
        &api.post("/api/v1/tasks/batch", &json!({"tasks": []})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_batch",
        "no tasks in the batch",
    );
    assert_error(
        &api.post(
            "/api/v1/tasks/batch",
            &json!({"tasks": [], "dry_run": true}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_body",
        "unknown field `dry_run`",
    );
    // Past a single task's limit is fine for a batch; past the batch's is not.
    let entry = |size: usize| json!({"kind": "docs", "target": "src/calc.py", "description": "d".repeat(size)});
    let under = json!({"tasks": vec![entry(512 * 1024); 3]});
    let (status, submitted) = api.post("/api/v1/tasks/batch", &under).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(submitted.as_array().unwrap().len(), 3);
    for chunked in [false, true] {
        let over = pitcrew_server::BATCH_BODY_LIMIT + 1;
        assert_error(
            &post_large(&api, "/api/v1/tasks/batch", over, chunked).await,
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "limit of 16777216 bytes",
        );
    }
    assert_eq!(api.stored().await.len(), 3);
    api.finish().await;
}
