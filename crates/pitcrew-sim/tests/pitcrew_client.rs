//! pitcrew's own client and router against the simulator: a call completes, a malformed
//! stream is `malformed_stream`, a 429 is a rate limit (and a daily quota a quota).

use std::time::Duration;

use pitcrew_core::ErrorKind;
use pitcrew_llm::{
    ChatClient, ChatRequest, Endpoint, Expect, Message, Registry, Requirements, RouteRequest,
    Router, RouterSettings,
};
use pitcrew_sim::{SimConfig, Simulator};

const GOOD: &str = "```python path=tests/test_calc.py\nfrom calc import add\n\n\
    def test_add():\n    assert add(1, 2) == 3\n```\n";

/// Serves `toml` (with `good.md` holding [`GOOD`] beside it); returns pitcrew's endpoint.
async fn start(toml: &str) -> (Endpoint, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("good.md"), GOOD).unwrap();
    let path = dir.path().join("sim.toml");
    std::fs::write(&path, toml).unwrap();
    let simulator = Simulator::new(SimConfig::load(&path).unwrap());
    let listener = pitcrew_sim::bind("127.0.0.1:0".parse().unwrap(), false)
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { simulator.serve(listener).await });
    let endpoint = Endpoint {
        base_url: format!("http://{addr}/v1"),
        api_key: None,
        api_key_env: String::new(),
    };
    (endpoint, dir)
}

fn client() -> ChatClient {
    ChatClient::new(Duration::from_secs(10))
        .unwrap()
        .with_idle_timeout(Duration::from_secs(2))
}

fn chat(model: &str) -> ChatRequest {
    ChatRequest {
        model: model.into(),
        messages: vec![Message::system("write tests"), Message::user("for calc.py")],
        temperature: 0.2,
        max_tokens: 1000,
    }
}

/// Two free models of provider `sim`, `sim/a` preferred.
fn router(endpoint: Endpoint) -> Router {
    let mut toml = String::from("fallback = [\"sim/a\", \"sim/b\"]\n");
    for (id, quality) in [("sim/a", 0.9), ("sim/b", 0.8)] {
        toml += &format!(
            "[[models]]\nprovider = \"sim\"\nid = \"{id}\"\ncontext = 32000\nfree = true\n\
             specializations = [\"balanced\"]\nquality = {quality}\nlatency_ms = 100\n"
        );
    }
    let registry = Registry::from_toml(&toml, "simulator registry").unwrap();
    let settings = RouterSettings {
        backoff_min: Duration::from_millis(50),
        backoff_max: Duration::from_millis(200),
        max_wait: Duration::from_secs(5),
        ..RouterSettings::default()
    };
    Router::new(
        registry,
        [("sim".to_string(), endpoint)],
        client(),
        settings,
    )
}

fn route_request() -> RouteRequest {
    RouteRequest {
        messages: vec![Message::system("write tests"), Message::user("for calc.py")],
        temperature: 0.2,
        expect: Expect::Code,
        requirements: Requirements {
            max_output_tokens: 1000,
            prefer: Some("sim/a".into()),
            ..Requirements::default()
        },
        task_budget: None,
        wait_until: None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_router_completes_a_call_with_the_simulators_usage_and_cost() {
    let toml = "[models.\"sim/a\"]\npricing = { prompt = 3.0, completion = 15.0 }\n\
                script = [{ reply_file = \"good.md\" }]\n\
                [models.\"sim/b\"]\n";
    let (endpoint, _dir) = start(toml).await;
    let done = router(endpoint)
        .complete(&route_request(), &mut |_| {})
        .await
        .unwrap();
    assert_eq!(done.model_id, "sim/a");
    assert_eq!(done.completion.text, GOOD);
    assert_eq!(done.completion.finish_reason.as_deref(), Some("stop"));
    let usage = done.completion.usage;
    assert_eq!(usage.tokens_out, GOOD.chars().count().div_ceil(4) as u64);
    assert!(usage.tokens_in > 0);
    let cost = (usage.tokens_in as f64 * 3.0 + usage.tokens_out as f64 * 15.0) / 1e6;
    assert!((usage.cost_usd.unwrap() - cost).abs() < 1e-12, "{usage:?}");
    assert_eq!(done.calls.len(), 1);
    assert_eq!(done.calls[0].error_kind, None);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_stream_and_a_429_are_classified_and_the_router_rotates() {
    let toml = "[models.\"sim/a\"]\nscript = [\n  { fault = \"malformed\", reply_file = \"good.md\" },\n  \
                { status = 429, retry_after = 1 },\n]\n\
                [models.\"sim/b\"]\nscript = [{ reply_file = \"good.md\" }, { reply_file = \"good.md\" }]\n";
    let (endpoint, _dir) = start(toml).await;
    let router = router(endpoint);
    let kinds = |done: &pitcrew_llm::Routed| {
        done.calls
            .iter()
            .map(|call| call.error_kind)
            .collect::<Vec<_>>()
    };

    let done = router
        .complete(&route_request(), &mut |_| {})
        .await
        .unwrap();
    assert_eq!(done.model_id, "sim/b");
    assert_eq!(kinds(&done), [Some(ErrorKind::MalformedStream), None]);
    assert_eq!(done.completion.text, GOOD);

    let done = router
        .complete(&route_request(), &mut |_| {})
        .await
        .unwrap();
    assert_eq!(done.model_id, "sim/b");
    assert_eq!(kinds(&done), [Some(ErrorKind::RateLimit), None]);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_client_reads_quota_refusals_with_their_wait() {
    let toml = "[models.\"sim/a\"]\nrpm = 1\n[models.\"sim/b\"]\nrpd = 1\n";
    let (endpoint, _dir) = start(toml).await;
    let client = client();
    for model in ["sim/a", "sim/b"] {
        let first = client
            .stream(&endpoint, &chat(model), &mut |_| {})
            .await
            .unwrap();
        assert!(!first.text.is_empty());
        // The headers said that was the window's last request.
        assert!(first.window_spent_for.is_some(), "{model}");
    }
    let minute = client
        .complete(&endpoint, &chat("sim/a"))
        .await
        .unwrap_err();
    assert_eq!(minute.kind, ErrorKind::RateLimit, "{minute}");
    assert_eq!(minute.status, Some(429));
    let wait = minute.retry_after.unwrap();
    assert!(
        wait > Duration::from_secs(55) && wait <= Duration::from_secs(60),
        "{wait:?}"
    );
    let day = client
        .complete(&endpoint, &chat("sim/b"))
        .await
        .unwrap_err();
    assert_eq!(day.kind, ErrorKind::Quota, "{day}");
    assert!(day.retry_after.unwrap() > Duration::from_secs(23 * 3600));
}
