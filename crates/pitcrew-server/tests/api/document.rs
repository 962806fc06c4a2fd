//! The OpenAPI document and the router agree: every route served is documented with exactly
//! the methods it takes, and every documented route is served — but the dashboard's files,
//! which are a page for people, not the API.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::support::{Api, Backend, answer, assert_error};

/// The dashboard's page and the files it loads: served, and not in the API's document.
pub const PAGE_ROUTES: [&str; 4] = ["/", "/dashboard.css", "/dashboard.js", "/favicon.svg"];

/// The paths the router holds, read from its `Debug` form: axum lists each route's path in
/// its `path_router`, before the `fallback_router` (which serves what no route matches). A
/// form without them fails the test rather than passing it.
fn served_paths(router_debug: &str) -> BTreeSet<String> {
    let routes = router_debug
        .split_once("path_router")
        .and_then(|(_, rest)| rest.split_once("fallback_router"))
        .map(|(routes, _)| routes)
        .unwrap_or_else(|| panic!("no path_router in the router's Debug form: {router_debug}"));
    let paths: BTreeSet<String> = routes
        .split('"')
        .skip(1)
        .step_by(2)
        .filter(|text| text.starts_with('/'))
        .map(str::to_string)
        .collect();
    assert!(
        paths.contains("/healthz"),
        "no route paths found in the router's Debug form: {router_debug}"
    );
    paths
}

/// The methods a served path takes, as its `405 Method Not Allowed` lists them (PUT is a
/// method no route takes); HEAD, which axum adds to every GET, is left out.
async fn allowed_methods(api: &Api, path: &str) -> BTreeSet<String> {
    let response = api
        .request(Method::PUT, &path.replace("{id}", "1"))
        .send()
        .await
        .unwrap();
    let allow = response
        .headers()
        .get("allow")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let refused = answer(response).await;
    assert_error(
        &refused,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "Allow",
    );
    allow
        .split(',')
        .map(|m| m.trim().to_lowercase())
        .filter(|m| !m.is_empty() && m != "head")
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_served_route_is_documented_and_every_documented_route_served() {
    let api = Api::start(Backend::Sqlite).await;
    let (status, served_document) = api.get("/api/v1/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(served_document, api.server_openapi);
    assert!(
        served_document["openapi"]
            .as_str()
            .unwrap()
            .starts_with("3.")
    );

    let documented = served_document["paths"].as_object().unwrap();
    let documented_paths: BTreeSet<String> = documented.keys().cloned().collect();
    let pages: BTreeSet<String> = PAGE_ROUTES.iter().map(|p| p.to_string()).collect();
    let served = served_paths(&api.router_debug);
    assert!(pages.is_subset(&served), "{served:?}");
    assert!(pages.is_disjoint(&documented_paths), "{documented_paths:?}");
    assert_eq!(
        served.difference(&pages).cloned().collect::<BTreeSet<_>>(),
        documented_paths
    );
    for page in PAGE_ROUTES {
        assert_eq!(
            allowed_methods(&api, page).await,
            BTreeSet::from(["get".to_string()]),
            "{page}"
        );
    }
    for (path, item) in documented {
        let documented_methods: BTreeSet<String> = item
            .as_object()
            .unwrap()
            .keys()
            .filter(|key| !["parameters", "summary", "description"].contains(&key.as_str()))
            .cloned()
            .collect();
        assert_eq!(
            allowed_methods(&api, path).await,
            documented_methods,
            "{path}: the methods served are not the ones documented"
        );
    }
    assert!(documented.contains_key("/api/v1/events"));
    assert!(documented.contains_key("/api/v1/dashboard"));
    assert!(documented.contains_key("/metrics"));
    assert!(documented.contains_key("/healthz"));

    // What is not a route is a JSON 404.
    assert_error(
        &api.get("/api/v1/nothing-here").await,
        StatusCode::NOT_FOUND,
        "not_found",
        "openapi.json",
    );
    api.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_document_describes_auth_bodies_and_errors() {
    let api = Api::start(Backend::Sqlite).await;
    let document = &api.server_openapi;
    assert_eq!(
        document["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert_eq!(document["security"][0]["bearer"], Value::Array(vec![]));
    // The health checks need no token.
    assert_eq!(
        document["paths"]["/healthz"]["get"]["security"],
        serde_json::json!([{}])
    );
    // /metrics needs it, as the API does.
    assert_eq!(
        document["paths"]["/metrics"]["get"]["security"],
        Value::Null
    );
    let schemas = document["components"]["schemas"].as_object().unwrap();
    for name in [
        "TaskSpec",
        "BatchRequest",
        "Submitted",
        "TaskPage",
        "TaskDetail",
        "Task",
        "Attempt",
        "ResultPatch",
        "QueueSummary",
        "ModelRow",
        "Candidate",
        "ApiEvent",
        "DashboardView",
        "ErrorBody",
        "TaskKind",
    ] {
        assert!(schemas.contains_key(name), "schema {name} is missing");
    }
    // Enums list the names the API accepts.
    assert_eq!(schemas["TaskKind"]["enum"][0], "unit_test");
    assert_eq!(
        document["paths"]["/api/v1/tasks"]["post"]["requestBody"]["content"]["application/json"]["schema"]
            ["$ref"],
        "#/components/schemas/TaskSpec"
    );
    api.finish().await;
}
