//! The dashboard: its page and files hold no data and need no token, every answer carries the
//! headers that keep a page to its own script, and `/api/v1/dashboard` lists the latest
//! results with their evidence and the spend. (The page in a browser: the CLI's tests.)

use reqwest::{Method, StatusCode};

use crate::document::PAGE_ROUTES;
use crate::support::{Api, Backend, backends, record_a_run};

/// Asserts the headers every answer carries.
#[track_caller]
fn assert_guarded(response: &reqwest::Response) {
    let headers = response.headers();
    let policy = headers["content-security-policy"].to_str().unwrap();
    for directive in [
        "default-src 'self'",
        "script-src 'self'",
        "object-src 'none'",
        "frame-ancestors 'none'",
    ] {
        assert!(policy.contains(directive), "{directive} not in {policy}");
    }
    assert!(!policy.contains("unsafe-inline") && !policy.contains("unsafe-eval"));
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["referrer-policy"], "no-referrer");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_and_its_files_hold_no_data_and_need_no_token() {
    let api = Api::start(Backend::Sqlite).await;
    record_a_run(&api).await;
    for (path, content_type) in PAGE_ROUTES.iter().zip([
        "text/html; charset=utf-8",
        "text/css; charset=utf-8",
        "text/javascript; charset=utf-8",
        "image/svg+xml",
    ]) {
        let response = api.without_token(Method::GET, path).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(response.headers()["content-type"], content_type, "{path}");
        assert_guarded(&response);
        let body = response.text().await.unwrap();
        for recorded in ["test double", "document double", "pwned", "vendor/b"] {
            assert!(!body.contains(recorded), "{path} holds `{recorded}`");
        }
    }
    let page = api.without_token(Method::GET, "/").send().await;
    let page = page.unwrap().text().await.unwrap();
    assert!(page.contains(r#"<script src="/dashboard.js" defer></script>"#));
    // The page's only script is that file: nothing inline for the policy to refuse.
    assert_eq!(page.matches("<script").count(), 1, "{page}");
    let handlers: Vec<&str> = (page.split_whitespace())
        .filter(|word| word.starts_with("on") && word.contains("=\""))
        .collect();
    assert!(handlers.is_empty(), "inline handlers: {handlers:?}");
    assert!(!page.contains("javascript:"));

    // The script writes what the API sends as text only.
    let script = include_str!("../../assets/dashboard.js");
    for sink in [
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
        "new Function",
    ] {
        assert!(!script.contains(sink), "dashboard.js uses {sink}");
    }

    // The API's answers carry the same headers, refusals and unknown routes included.
    for (path, token, status) in [
        ("/api/v1/queue", true, StatusCode::OK),
        ("/api/v1/dashboard", false, StatusCode::UNAUTHORIZED),
        ("/nothing-here", true, StatusCode::NOT_FOUND),
    ] {
        let request = if token {
            api.request(Method::GET, path)
        } else {
            api.without_token(Method::GET, path)
        };
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), status, "{path}");
        assert_guarded(&response);
    }
    api.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_route_lists_the_latest_results_with_their_evidence_and_the_spend() {
    let what = "the_dashboard_route_lists_the_latest_results_with_their_evidence_and_the_spend";
    for backend in backends(what) {
        latest_results_and_spend_on(backend).await;
    }
}

async fn latest_results_and_spend_on(backend: Backend) {
    let api = Api::start(backend).await;
    let (_, empty) = api.get("/api/v1/dashboard").await;
    assert_eq!(empty, serde_json::json!({"results": [], "spend": []}));

    let (completed, failed) = record_a_run(&api).await;
    let (status, view) = api.get("/api/v1/dashboard").await;
    assert_eq!(status, StatusCode::OK, "{view}");
    let results = view["results"].as_array().unwrap();
    // Newest first: the docs task ended last.
    assert_eq!(results.len(), 2, "{view:#}");
    let (last, first) = (&results[0], &results[1]);
    assert_eq!(last["task"], failed.as_str());
    assert_eq!(last["status"], "failed");
    assert_eq!(last["has_patch"], false);
    assert_eq!(last["error"], "the reply is prose with no code block");
    assert_eq!(
        last["findings"][0]["message"],
        "the reply began: <script>window.pwned = 1</script>"
    );
    assert_eq!(first["task"], completed.as_str());
    assert_eq!(first["seq"], 1);
    assert_eq!(first["status"], "completed");
    assert_eq!(first["description"], "test double");
    assert_eq!(first["targets"], serde_json::json!(["src/calc.py"]));
    assert_eq!(first["model"], "vendor/b");
    assert_eq!(first["quality"], 0.9);
    assert_eq!(first["cost_usd"], 0.004);
    assert_eq!(first["attempts"], 1);
    assert_eq!(first["has_patch"], true);
    assert_eq!(
        first["evidence"],
        serde_json::json!([
            "tests: 1 collected, 1 passed; passed again in reverse order",
            "coverage of src/calc.py: 0 → 2 of 2 lines (+2: lines 1-2)",
            "quality 0.90, sandboxed",
        ])
    );

    // The spend adds up attempt after attempt, in the order they ended.
    let totals: Vec<f64> = (view["spend"].as_array().unwrap().iter())
        .map(|point| point["total_usd"].as_f64().unwrap())
        .collect();
    assert_eq!(totals.len(), 2, "{view:#}");
    assert!((totals[0] - 0.004).abs() < 1e-12 && (totals[1] - 0.006).abs() < 1e-12);
    api.finish().await;
}
