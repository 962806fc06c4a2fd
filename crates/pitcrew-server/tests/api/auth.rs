//! The token: every /api/v1 route needs it, a refused request changes nothing, and only a
//! loopback address may go without one.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::{Api, Backend, TOKEN, answer, assert_error, backends};

/// Every documented route that does not say it needs no token (`security: [{}]`, as the
/// health checks do), with a path parameter filled in: /api/v1 and /metrics.
fn api_routes(api: &Api) -> Vec<(Method, String)> {
    let mut routes = Vec::new();
    for (path, item) in api.server_openapi["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            if operation["security"] == json!([{}]) {
                continue;
            }
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            routes.push((method, path.replace("{id}", "1")));
        }
    }
    assert!(routes.len() >= 14, "{routes:?}");
    assert!(
        routes.iter().any(|(_, path)| path == "/metrics"),
        "{routes:?}"
    );
    routes
}

#[tokio::test(flavor = "multi_thread")]
async fn every_api_route_refuses_a_missing_or_wrong_token_and_changes_nothing() {
    let api = Api::start(Backend::Sqlite).await;
    // One task to cancel or retry, should the token check let a request through.
    let (status, _) = api
        .post(
            "/api/v1/tasks",
            &json!({"kind": "unit_test", "target": "src/calc.py"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let before = api.stored().await;
    let body = json!({"kind": "unit_test", "target": "src/calc.py", "idempotency_key": "x"});
    for (method, path) in api_routes(&api) {
        for authorization in [
            None,
            Some("Bearer wrong-token-of-the-same-size".to_string()),
            Some(format!("Basic {TOKEN}")),
            Some(format!("Bearer {TOKEN}x")),
        ] {
            let mut request = api.without_token(method.clone(), &path).json(&body);
            if let Some(value) = &authorization {
                request = request.header("authorization", value);
            }
            let response = request.send().await.unwrap();
            assert_eq!(
                response.headers().get("www-authenticate").unwrap(),
                "Bearer",
                "{method} {path}"
            );
            let refused = answer(response).await;
            assert_error(
                &refused,
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "bearer token",
            );
        }
    }
    assert_eq!(
        api.stored().await,
        before,
        "a refused request changed the store"
    );
    // The health checks need no token.
    for path in ["/healthz", "/readyz"] {
        let response = api.without_token(Method::GET, path).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
    assert_eq!(api.get("/readyz").await.1["status"], "ready");
    api.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_right_token_is_let_through_whatever_the_scheme_is_written() {
    let api = Api::start(Backend::Sqlite).await;
    for authorization in [format!("Bearer {TOKEN}"), format!("bearer   {TOKEN} ")] {
        let response = api
            .without_token(Method::GET, "/api/v1/queue")
            .header("authorization", authorization)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    api.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_token_only_loopback_may_be_bound() {
    let refused = pitcrew_server::bind("0.0.0.0:0".parse().unwrap(), false)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("refusing to listen on 0.0.0.0:0 without a token")
            && refused.contains("PITCREW_SERVER_TOKEN"),
        "{refused}"
    );
    let listener = pitcrew_server::bind("127.0.0.1:0".parse().unwrap(), false)
        .await
        .unwrap();
    assert!(listener.local_addr().unwrap().ip().is_loopback());

    // With no token configured the API on loopback needs none.
    let api = Api::start_with(Backend::Sqlite, &[]).await;
    let response = api
        .without_token(Method::GET, "/api/v1/queue")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    api.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn answers_are_redacted_like_the_clis_output() {
    let api = Api::start(Backend::Sqlite).await;
    pitcrew_core::register_secret("api-test-leaked-secret-7d1e");
    let (status, submitted) = api
        .post(
            "/api/v1/tasks",
            &json!({
                "kind": "docs",
                "target": "src/calc.py",
                "description": "document it; the key is api-test-leaked-secret-7d1e",
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, shown) = api
        .get(&format!(
            "/api/v1/tasks/{}",
            submitted["id"].as_str().unwrap()
        ))
        .await;
    let description = shown["task"]["description"].as_str().unwrap();
    assert!(
        description.ends_with("the key is [REDACTED]"),
        "{description}"
    );
    api.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn readyz_says_when_the_store_does_not_answer() {
    if !backends("readyz_says_when_the_store_does_not_answer").contains(&Backend::Postgres) {
        return;
    }
    let mut api = Api::start(Backend::Postgres).await;
    assert_eq!(api.get("/readyz").await.1["status"], "ready");
    assert!(api.lose_the_store().await);
    let response = api
        .without_token(Method::GET, "/readyz")
        .send()
        .await
        .unwrap();
    assert_error(
        &answer(response).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unreachable",
        "the store does not answer",
    );
    // The process itself is still up.
    assert_eq!(api.get("/healthz").await.1["status"], "ok");
    api.finish().await;
}
