//! The router against a real local server whose replies are scripted per model.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pitcrew_core::ErrorKind;
use pitcrew_core::Secret;
use pitcrew_llm::{
    Budget, ChatClient, CircuitState, Endpoint, Exclusion, Expect, Message, Registry, Requirements,
    RouteError, RouteEvent, RouteRequest, Routed, Router, RouterSettings, circuit_state,
};
use pitcrew_testkit::{Gate, RecordedRequest, Reply, ScriptedServer, SseEvent};
use serde_json::json;

const GOOD: &str = "```python path=tests/test_calc.py\nfrom calc import add\n\ndef test_add():\n    assert add(1, 2) == 3\n```\n";

/// A server answering each model from its own queue, then with a good reply.
struct Fleet {
    server: ScriptedServer,
    queues: Arc<Mutex<HashMap<String, VecDeque<Reply>>>>,
}

impl Fleet {
    fn start() -> Fleet {
        let server = ScriptedServer::start();
        let queues: Arc<Mutex<HashMap<String, VecDeque<Reply>>>> = Arc::default();
        let q = Arc::clone(&queues);
        server.respond_with(move |request| {
            let model = request.model().unwrap_or_default().to_string();
            q.lock()
                .unwrap()
                .get_mut(&model)
                .and_then(VecDeque::pop_front)
                .unwrap_or_else(|| Reply::content(GOOD))
        });
        Fleet { server, queues }
    }

    fn push(&self, model: &str, reply: Reply) {
        self.queues
            .lock()
            .unwrap()
            .entry(model.to_string())
            .or_default()
            .push_back(reply);
    }

    fn requests_for(&self, model: &str) -> Vec<RecordedRequest> {
        self.server
            .requests()
            .into_iter()
            .filter(|r| r.model() == Some(model))
            .collect()
    }

    fn endpoint(&self) -> Endpoint {
        Endpoint {
            base_url: self.server.base_url(),
            api_key: Some(Secret::new("sk-test")),
            api_key_env: "TEST_KEY".into(),
        }
    }
}

/// `n` free models `m1`…`mN` on provider `test`, m1 the best by prior quality.
fn registry(n: usize, extra: &str) -> Registry {
    let mut toml = String::from("fallback = [");
    toml += &(1..=n)
        .map(|i| format!("\"m{i}\""))
        .collect::<Vec<_>>()
        .join(", ");
    toml += "]\n[presets]\nfirst = \"m1\"\n";
    for i in 1..=n {
        toml += &format!(
            "[[models]]\nprovider = \"test\"\nid = \"m{i}\"\ncontext = 32000\nfree = true\nspecializations = [\"balanced\"]\nquality = {:.2}\nlatency_ms = 1000\n",
            0.9 - 0.05 * i as f64
        );
    }
    toml += extra;
    Registry::from_toml(&toml, "test registry").unwrap()
}

fn settings() -> RouterSettings {
    RouterSettings {
        failure_threshold: 3,
        circuit_cooldown: Duration::from_secs(1),
        rate_limit_cooldown: Duration::from_secs(1),
        backoff_min: Duration::from_millis(100),
        backoff_max: Duration::from_secs(1),
        max_wait: Duration::from_secs(10),
        ..RouterSettings::default()
    }
}

fn router(fleet: &Fleet, registry: Registry, settings: RouterSettings) -> Router {
    let client = ChatClient::new(Duration::from_secs(5))
        .unwrap()
        .with_idle_timeout(Duration::from_millis(500));
    Router::new(
        registry,
        [("test".to_string(), fleet.endpoint())],
        client,
        settings,
    )
}

fn request() -> RouteRequest {
    RouteRequest {
        messages: vec![Message::system("write tests"), Message::user("for calc.py")],
        temperature: 0.2,
        expect: Expect::Code,
        requirements: Requirements {
            max_output_tokens: 1000,
            ..Requirements::default()
        },
        task_budget: None,
        wait_until: None,
    }
}

async fn call(router: &Router) -> Result<Routed, RouteError> {
    router.complete(&request(), &mut |_| {}).await
}

/// A call that tries `model` first whenever it is available, whatever its score.
async fn call_preferring(router: &Router, model: &str) -> Result<Routed, RouteError> {
    let mut req = request();
    req.requirements.prefer = Some(model.into());
    router.complete(&req, &mut |_| {}).await
}

fn kinds(calls: &[pitcrew_llm::CallRecord]) -> Vec<Option<ErrorKind>> {
    calls.iter().map(|c| c.error_kind).collect()
}

fn limited(retry_after: &str) -> Reply {
    Reply::status(
        429,
        json!({"error": {"message": "rate limited", "code": 429}}),
    )
    .header("retry-after", retry_after)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_429_with_retry_after_is_honoured_while_another_model_serves() {
    let fleet = Fleet::start();
    // m1 stays the better model despite its 429, so it is chosen again once its wait is over.
    let overrides: toml::Table =
        toml::from_str("[[models]]\nname = \"m1\"\nquality = 1.0\n").unwrap();
    let registry = registry(2, "").with_overrides(&overrides, "test").unwrap();
    let router = router(&fleet, registry, settings());
    fleet.push("m1", limited("2"));

    let started = Instant::now();
    let done = call(&router).await.unwrap();
    assert_eq!(done.model, "m2");
    assert_eq!(kinds(&done.calls), [Some(ErrorKind::RateLimit), None]);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "rotated, not slept"
    );

    // While m1 cools down every call goes to m2, without a request to m1.
    while started.elapsed() < Duration::from_millis(1500) {
        assert_eq!(call(&router).await.unwrap().model, "m2");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(fleet.requests_for("m1").len(), 1);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        call(&router).await.unwrap().model,
        "m1",
        "back once the wait is over"
    );
    let m1 = fleet.requests_for("m1");
    let gap = m1[1].received_at - m1[0].received_at;
    assert!(
        gap >= Duration::from_secs(2),
        "m1 called again after {gap:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_daily_quota_skips_the_model_until_its_reset() {
    let fleet = Fleet::start();
    let router = router(&fleet, registry(2, ""), settings());
    let reset_ms = chrono::Utc::now().timestamp_millis() + 2000;
    // OpenRouter's shape: the limit's headers copied into the error body.
    fleet.push(
        "m1",
        Reply::status(
            429,
            json!({"error": {"message": "Rate limit exceeded: free-models-per-day", "code": 429,
                "metadata": {"headers": {"X-RateLimit-Limit": "50", "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset": reset_ms.to_string()}}}}),
        ),
    );
    let done = call(&router).await.unwrap();
    assert_eq!(done.model, "m2");
    assert_eq!(kinds(&done.calls), [Some(ErrorKind::Quota), None]);
    let m1 = router
        .health()
        .into_iter()
        .find(|h| h.model == "m1")
        .unwrap();
    let until = m1.cooldown_until.unwrap().timestamp_millis();
    assert!(
        (until - reset_ms).abs() < 100,
        "cooldown until the reset: {until} vs {reset_ms}"
    );
    assert!(m1.cooldown_reason.unwrap().starts_with("quota"));

    let selection = router.select(&Requirements::default());
    let m1 = selection.iter().find(|c| c.model == "m1").unwrap();
    assert!(
        matches!(m1.excluded[..], [Exclusion::CoolingDown { .. }]),
        "{:?}",
        m1.excluded
    );
    assert_eq!(call(&router).await.unwrap().model, "m2");
    assert_eq!(fleet.requests_for("m1").len(), 1);

    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(call(&router).await.unwrap().model, "m1");
}

#[tokio::test(flavor = "multi_thread")]
async fn payment_required_is_not_retried_and_rotates() {
    let fleet = Fleet::start();
    let router = router(&fleet, registry(2, ""), settings());
    fleet.push(
        "m1",
        Reply::status(
            402,
            json!({"error": {"message": "Insufficient credits", "code": 402}}),
        ),
    );
    let done = call(&router).await.unwrap();
    assert_eq!(done.model, "m2");
    assert_eq!(kinds(&done.calls), [Some(ErrorKind::Payment), None]);
    for _ in 0..3 {
        assert_eq!(call(&router).await.unwrap().model, "m2");
    }
    assert_eq!(fleet.requests_for("m1").len(), 1, "402 is not retried");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rejected_key_fails_at_once_naming_the_variable() {
    let fleet = Fleet::start();
    let router = router(&fleet, registry(3, ""), settings());
    fleet.push(
        "m1",
        Reply::status(
            401,
            json!({"error": {"message": "No auth credentials found", "code": 401}}),
        ),
    );
    let error = call(&router).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::Auth);
    assert!(error.message.contains("TEST_KEY"), "{}", error.message);
    assert!(
        error.message.contains("No auth credentials found"),
        "{}",
        error.message
    );
    assert_eq!(fleet.server.requests().len(), 1, "no other model was tried");
    assert_eq!(error.calls.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn truncated_and_stalled_streams_rotate_and_report_each_attempt() {
    let fleet = Fleet::start();
    let router = router(&fleet, registry(3, ""), settings());
    let chunk = |text: &str| {
        SseEvent::Data(
            json!({"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]}),
        )
    };
    // m1: the connection ends mid-reply, with neither a finish reason nor [DONE].
    fleet.push("m1", Reply::sse(vec![chunk("```python\ndef test_")]));
    // m2: keep-alive comments, a first token, then silence past the idle timeout.
    fleet.push(
        "m2",
        Reply::sse(vec![
            SseEvent::Comment("OPENROUTER PROCESSING".into()),
            chunk("```python\n"),
            SseEvent::Comment("OPENROUTER PROCESSING".into()),
            SseEvent::Delay(Duration::from_secs(3)),
            chunk("never seen"),
            SseEvent::Done,
        ]),
    );
    let mut events = Vec::new();
    let done = router
        .complete(&request(), &mut |event| {
            events.push(match event {
                RouteEvent::Started { model } => format!("start {model}"),
                RouteEvent::Delta(text) => format!("delta {}", text.len()),
                RouteEvent::Failed { model, kind, .. } => format!("failed {model} {kind}"),
                RouteEvent::Waiting { reason, .. } => format!("waiting: {reason}"),
            })
        })
        .await
        .unwrap();
    assert_eq!(done.model, "m3");
    assert_eq!(done.completion.text, GOOD);
    assert_eq!(
        kinds(&done.calls),
        [Some(ErrorKind::Truncated), Some(ErrorKind::Truncated), None]
    );
    assert!(done.calls[1].error.as_deref().unwrap().contains("stalled"));
    let starts: Vec<&String> = events.iter().filter(|e| !e.starts_with("delta")).collect();
    assert_eq!(
        starts,
        [
            "start m1",
            "failed m1 truncated",
            "start m2",
            "failed m2 truncated",
            "start m3"
        ]
    );
    assert!(
        events.last().unwrap().starts_with("delta"),
        "m3's reply streamed"
    );
    assert!(done.completion.time_to_first_token <= done.completion.latency);
    assert_eq!(fleet.server.requests().len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn looping_empty_and_prose_replies_are_content_failures_and_rotate() {
    let fleet = Fleet::start();
    let router = router(&fleet, registry(4, ""), settings());
    let looping = format!(
        "```python\ndef test_add():\n{}",
        "    assert add(1, 2) == 3\n".repeat(200)
    );
    fleet.push("m1", Reply::content(&looping));
    fleet.push("m2", Reply::content(""));
    fleet.push(
        "m3",
        Reply::content("Sure! You should test the add function with a few numbers. Good luck."),
    );
    let done = call(&router).await.unwrap();
    assert_eq!(done.model, "m4");
    assert_eq!(
        kinds(&done.calls),
        [
            Some(ErrorKind::Degenerate),
            Some(ErrorKind::EmptyReply),
            Some(ErrorKind::ProseOnly),
            None
        ]
    );
    // Failed calls are counted: tokens the looping reply used are on the record.
    assert!(done.calls[0].usage.tokens_out > 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_model_failing_content_returns_the_content_kind_without_backoff() {
    let fleet = Fleet::start();
    let router = router(&fleet, registry(2, ""), settings());
    fleet.push(
        "m1",
        Reply::content("I cannot help with that request, sorry."),
    );
    fleet.push("m2", Reply::content("  "));
    let started = Instant::now();
    let error = call(&router).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::EmptyReply);
    assert_eq!(error.kind.class(), pitcrew_core::ErrorClass::Content);
    assert!(
        error.message.contains("m1: the reply is prose"),
        "{}",
        error.message
    );
    assert!(started.elapsed() < Duration::from_millis(500));
    assert_eq!(fleet.server.requests().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_circuit_opens_after_n_failures_and_half_opens_for_one_probe() {
    let fleet = Fleet::start();
    let router = router(&fleet, registry(2, ""), settings());
    for _ in 0..3 {
        fleet.push(
            "m1",
            Reply::status(500, json!({"error": {"message": "boom"}})),
        );
    }
    for _ in 0..3 {
        assert_eq!(call_preferring(&router, "m1").await.unwrap().model, "m2");
    }
    let m1_state = || {
        let health = router
            .health()
            .into_iter()
            .find(|h| h.model == "m1")
            .unwrap();
        circuit_state(&health, chrono::Utc::now())
    };
    assert!(matches!(m1_state(), CircuitState::Open { .. }));
    assert_eq!(call_preferring(&router, "m1").await.unwrap().model, "m2");
    assert_eq!(
        fleet.requests_for("m1").len(),
        3,
        "no call while the circuit is open"
    );

    // The cooldown is 1 s, jittered by up to ±20%.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(m1_state(), CircuitState::HalfOpen);
    // The probe is held by the server; a second call meanwhile must not probe too.
    let gate = Gate::new();
    fleet.push("m1", Reply::content(GOOD).hold(&gate));
    let probing = tokio::spawn({
        let router = router.clone();
        async move { call_preferring(&router, "m1").await }
    });
    while fleet.requests_for("m1").len() < 4 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        call_preferring(&router, "m1").await.unwrap().model,
        "m2",
        "only one probe at a time"
    );
    gate.open();
    assert_eq!(probing.await.unwrap().unwrap().model, "m1");
    assert_eq!(m1_state(), CircuitState::Closed);
    assert_eq!(call_preferring(&router, "m1").await.unwrap().model, "m1");
    assert_eq!(fleet.requests_for("m1").len(), 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn one_http_request_per_attempt() {
    let fleet = Fleet::start();
    let router = router(&fleet, registry(4, ""), settings());
    fleet.push(
        "m1",
        Reply::status(500, json!({"error": {"message": "boom"}})),
    );
    fleet.push(
        "m2",
        Reply::status(503, json!({})).header("retry-after", "1"),
    );
    fleet.push("m3", limited("1"));
    let done = call(&router).await.unwrap();
    assert_eq!(done.model, "m4");
    assert_eq!(done.calls.len(), 4);
    let models: Vec<String> = fleet
        .server
        .requests()
        .iter()
        .map(|r| r.model().unwrap().to_string())
        .collect();
    assert_eq!(models, ["m1", "m2", "m3", "m4"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn backoff_happens_only_when_every_model_is_cooling_down() {
    let fleet = Fleet::start();
    let router = router(&fleet, registry(2, ""), settings());
    fleet.push("m1", limited("1"));
    fleet.push("m2", limited("1"));
    let started = Instant::now();
    let done = call(&router).await.unwrap();
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(1),
        "waited for the cooldown: {elapsed:?}"
    );
    assert!(elapsed < Duration::from_secs(4), "{elapsed:?}");
    assert_eq!(
        kinds(&done.calls),
        [Some(ErrorKind::RateLimit), Some(ErrorKind::RateLimit), None]
    );
    let requests = fleet.server.requests();
    assert_eq!(requests.len(), 3);
    let first_for_winner = requests
        .iter()
        .find(|r| r.model() == Some(done.model.as_str()))
        .unwrap();
    let gap = requests[2].received_at - first_for_winner.received_at;
    assert!(
        gap >= Duration::from_secs(1),
        "retried {gap:?} after its 429"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_that_would_wait_too_long_fails_with_when_to_retry() {
    let fleet = Fleet::start();
    let short = RouterSettings {
        max_wait: Duration::from_secs(2),
        ..settings()
    };
    let router = router(&fleet, registry(1, ""), short);
    fleet.push("m1", limited("30"));
    let started = Instant::now();
    let error = call(&router).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::NoModelAvailable);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "gave up at once"
    );
    let retry = error.retry_after.unwrap();
    assert!(
        retry > Duration::from_secs(28) && retry <= Duration::from_secs(30),
        "{retry:?}"
    );
    assert_eq!(fleet.server.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn budgets_count_failed_calls_and_stop_calls_when_spent() {
    let fleet = Fleet::start();
    let paid = "[[models]]\nname = \"paid\"\nprovider = \"test\"\nid = \"paid\"\ncontext = 32000\nprice_in = 0.001\nprice_out = 0.00001\nquality = 0.99\n";
    let mut registry = registry(1, paid);
    let overrides: toml::Table = toml::from_str("fallback = [\"paid\"]").unwrap();
    registry = registry.with_overrides(&overrides, "test").unwrap();
    let router = router(&fleet, registry, settings());
    // A failed call reports nothing: the prompt is charged at the registry price.
    fleet.push(
        "paid",
        Reply::status(500, json!({"error": {"message": "boom"}})),
    );
    fleet.push("paid", Reply::content(GOOD).with_usage(100, 50, Some(0.25)));
    let budget = Budget::new(Some(0.28));
    let mut req = request();
    req.task_budget = Some(budget.clone());
    let done = router.complete(&req, &mut |_| {}).await.unwrap();
    let failed_cost = done.calls[0].cost_usd;
    assert!(failed_cost > 0.0 && failed_cost < 0.05, "{failed_cost}");
    assert_eq!(done.calls[1].cost_usd, 0.25, "the provider's own figure");
    assert!((budget.spent_usd() - (0.25 + failed_cost)).abs() < 1e-9);
    assert_eq!(done.usage().cost_usd, Some(budget.spent_usd()));
    assert!((router.run_budget().spent_usd() - budget.spent_usd()).abs() < 1e-9);

    // What is left cannot cover a call's worst case, so no call is made.
    let error = router.complete(&req, &mut |_| {}).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::Budget, "{}", error.message);
    let mut run_limited = request();
    run_limited.task_budget = Some(Budget::new(Some(0.0)));
    let error = router
        .complete(&run_limited, &mut |_| {})
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Budget);
    assert!(error.message.contains("task's budget"), "{}", error.message);
    assert_eq!(fleet.server.requests().len(), 2, "no call once spent");
}

#[tokio::test(flavor = "multi_thread")]
async fn health_is_shared_through_the_store_and_keeps_the_later_cooldown() {
    let fleet = Fleet::start();
    let worker_a = router(&fleet, registry(2, ""), settings());
    let worker_b = router(&fleet, registry(2, ""), settings());
    fleet.push("m1", limited("30"));
    assert_eq!(call(&worker_a).await.unwrap().model, "m2");
    let stored = worker_a.health();
    worker_b.merge_health(&stored);
    assert_eq!(call(&worker_b).await.unwrap().model, "m2");
    assert_eq!(
        fleet.requests_for("m1").len(),
        1,
        "worker b honoured a's cooldown"
    );
    // Merging an older snapshot back does not shorten anything.
    worker_a.merge_health(&worker_b.health());
    let a = worker_a
        .health()
        .into_iter()
        .find(|h| h.model == "m1")
        .unwrap();
    assert_eq!(
        a.cooldown_until,
        stored
            .iter()
            .find(|h| h.model == "m1")
            .unwrap()
            .cooldown_until
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_prompt_too_long_for_one_model_goes_to_a_bigger_one() {
    let fleet = Fleet::start();
    let big = "[[models]]\nprovider = \"test\"\nid = \"big\"\ncontext = 1000000\nfree = true\nquality = 0.5\n";
    let overrides: toml::Table = toml::from_str("fallback = [\"m1\", \"m2\", \"big\"]").unwrap();
    let registry = registry(2, big).with_overrides(&overrides, "test").unwrap();
    let router = router(&fleet, registry, settings());
    fleet.push(
        "m1",
        Reply::status(
            400,
            json!({"error": {"message": "This model's maximum context length is 32000 tokens"}}),
        ),
    );
    let done = call(&router).await.unwrap();
    assert_eq!(kinds(&done.calls), [Some(ErrorKind::ContextTooLong), None]);
    assert_eq!(done.model, "m2");

    // A prompt only the big model takes skips the others without a request.
    let mut long = request();
    long.messages.push(Message::user("x".repeat(120_000)));
    let before = fleet.server.requests().len();
    let done = router.complete(&long, &mut |_| {}).await.unwrap();
    assert_eq!((done.model.as_str(), done.calls.len()), ("big", 1));
    assert_eq!(fleet.server.requests().len(), before + 1);
    // One that fits nowhere fails as such, naming the windows.
    long.messages.push(Message::user("x".repeat(3_000_000)));
    let error = router.complete(&long, &mut |_| {}).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::ContextTooLong);
    assert!(error.message.contains("has 1000000"), "{}", error.message);
}

#[tokio::test(flavor = "multi_thread")]
async fn rpm_limits_space_requests_and_rotate_instead_of_waiting() {
    let fleet = Fleet::start();
    let overrides: toml::Table = toml::from_str(
        "[[models]]\nname = \"m1\"\nrpm = 60\n[[models]]\nname = \"m2\"\nrpm = 60\n",
    )
    .unwrap();
    let registry = registry(2, "").with_overrides(&overrides, "test").unwrap();
    let router = router(&fleet, registry, settings());
    let started = Instant::now();
    let mut models = Vec::new();
    for _ in 0..4 {
        models.push(call(&router).await.unwrap().model);
    }
    // One request a second per model: two go at once (one per model), the next two wait.
    assert_eq!(models, ["m1", "m2", "m1", "m2"]);
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(1) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
    let m1 = fleet.requests_for("m1");
    assert!(m1[1].received_at - m1[0].received_at >= Duration::from_millis(1000));
}

#[tokio::test(flavor = "multi_thread")]
async fn selection_explains_scores_and_exclusions() {
    let fleet = Fleet::start();
    let extra = "[[models]]\nname = \"paid\"\nprovider = \"test\"\nid = \"paid\"\ncontext = 8000\nprice_in = 0.000001\nprice_out = 0.000002\nspecializations = [\"quality\"]\nquality = 0.95\n\
                 [[models]]\nname = \"keyless\"\nprovider = \"other\"\nid = \"k\"\ncontext = 8000\nfree = true\n";
    let overrides: toml::Table =
        toml::from_str("fallback = [\"m1\", \"m2\", \"m3\", \"paid\", \"keyless\"]").unwrap();
    let registry = registry(3, extra)
        .with_overrides(&overrides, "test")
        .unwrap();
    let client = ChatClient::new(Duration::from_secs(5)).unwrap();
    let providers = [
        ("test".to_string(), fleet.endpoint()),
        (
            "other".to_string(),
            Endpoint {
                base_url: fleet.server.base_url(),
                api_key: None,
                api_key_env: "OTHER_KEY".into(),
            },
        ),
    ];
    let router = Router::new(registry, providers, client, settings());
    let ranked = router.select(&Requirements {
        complexity: pitcrew_llm::Complexity::High,
        min_quality: Some(0.78),
        prompt_tokens: 10_000,
        ..Requirements::default()
    });
    let eligible: Vec<&str> = ranked
        .iter()
        .filter(|c| c.is_eligible())
        .map(|c| c.model.as_str())
        .collect();
    assert_eq!(eligible, ["m1", "m2"]);
    let m1 = &ranked[0];
    assert_eq!(m1.components.quality, 0.85);
    assert_eq!(m1.components.success, 1.0);
    assert!((m1.components.latency - 10.0 / 11.0).abs() < 1e-9);
    assert_eq!(
        m1.components.specialization, 0.5,
        "balanced, while quality is wanted"
    );
    assert!((m1.score - (0.4 * 0.85 + 0.3 + 0.2 * 10.0 / 11.0 + 0.05)).abs() < 1e-9);
    let reasons = |name: &str| {
        ranked
            .iter()
            .find(|c| c.model == name)
            .unwrap()
            .excluded
            .clone()
    };
    assert!(matches!(
        reasons("m3")[..],
        [Exclusion::BelowMinQuality { .. }]
    ));
    assert!(matches!(
        reasons("paid")[..],
        [Exclusion::ContextTooSmall {
            needed: 11024,
            window: 8000
        }]
    ));
    assert!(reasons("keyless").contains(&Exclusion::MissingKey {
        variable: "OTHER_KEY".into()
    }));
    let free = router.select(&Requirements {
        free_only: true,
        prefer: Some("first".into()),
        ..Requirements::default()
    });
    assert_eq!(free[0].model, "m1");
    assert!(
        free.iter()
            .find(|c| c.model == "paid")
            .unwrap()
            .excluded
            .contains(&Exclusion::NotFree)
    );
    let text = reasons("keyless")
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    assert!(text.contains("OTHER_KEY is not set"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_preset_lists_the_known_ones() {
    let fleet = Fleet::start();
    let router = router(&fleet, registry(1, ""), settings());
    let mut req = request();
    req.requirements.prefer = Some("gpt-9".into());
    let error = router.complete(&req, &mut |_| {}).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::Config);
    assert_eq!(
        error.message,
        "unknown model preset `gpt-9`; valid values: first"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn calls_in_flight_are_capped_per_model_and_the_cap_halves_on_a_429() {
    let fleet = Fleet::start();
    let two = RouterSettings {
        initial_concurrency: 2,
        ..settings()
    };
    let router = router(&fleet, registry(2, ""), two);
    let held_calls = |gate: &Gate, n: usize| {
        for _ in 0..n {
            fleet.push("m1", Reply::content(GOOD).hold(gate));
        }
        (0..3)
            .map(|_| {
                let router = router.clone();
                tokio::spawn(async move { call_preferring(&router, "m1").await })
            })
            .collect::<Vec<_>>()
    };
    let count = |model: &str, calls: &[Routed]| calls.iter().filter(|c| c.model == model).count();

    // Two calls at once on m1; the third goes to m2 instead of waiting.
    let gate = Gate::new();
    let spawned = held_calls(&gate, 2);
    while fleet.requests_for("m2").is_empty() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    gate.open();
    let mut done = Vec::new();
    for call in spawned {
        done.push(call.await.unwrap().unwrap());
    }
    assert_eq!((count("m1", &done), count("m2", &done)), (2, 1));

    // A 429 (with no wait asked) halves the cap to one.
    fleet.push("m1", limited("0"));
    assert_eq!(call_preferring(&router, "m1").await.unwrap().model, "m2");
    let gate = Gate::new();
    let spawned = held_calls(&gate, 1);
    while fleet.requests_for("m2").len() < 4 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    gate.open();
    let mut done = Vec::new();
    for call in spawned {
        done.push(call.await.unwrap().unwrap());
    }
    assert_eq!((count("m1", &done), count("m2", &done)), (1, 2));
}

/// A one-model pool whose provider drops one call now and then (a cut, a malformed chunk, a
/// 500): the same model is asked again at once, without a backoff, and every call succeeds.
#[tokio::test(flavor = "multi_thread")]
async fn a_lone_model_that_fails_by_chance_is_asked_again_at_once() {
    let fleet = Fleet::start();
    let defaults = RouterSettings {
        failure_threshold: RouterSettings::default().failure_threshold,
        ..settings()
    };
    let router = router(&fleet, registry(1, ""), defaults);
    let faults = [
        Reply::sse(vec![SseEvent::Data(
            json!({"choices": [{"delta": {"content": "```python"}}]}),
        )]),
        Reply::sse(vec![SseEvent::RawLine("data: {\"choi".into())]),
        Reply::status(500, json!({"error": {"message": "boom"}})),
    ];
    let started = Instant::now();
    for fault in faults {
        fleet.push("m1", fault);
        let done = call(&router).await.unwrap();
        assert_eq!(done.completion.text, GOOD, "byte for byte what was sent");
        assert_eq!(done.calls.len(), 2, "{:?}", kinds(&done.calls));
    }
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "no backoff: {:?}",
        started.elapsed()
    );
    assert_eq!(fleet.requests_for("m1").len(), 6);
}

/// With no other model to take over, an open circuit throttles the calls (they wait for the
/// half-open probe) instead of failing them.
#[tokio::test(flavor = "multi_thread")]
async fn an_open_circuit_on_the_only_model_throttles_instead_of_failing() {
    let fleet = Fleet::start();
    let router = router(&fleet, registry(1, ""), settings());
    // Three failures open the circuit (threshold 3 here); the probe after its cooldown passes.
    for _ in 0..3 {
        fleet.push(
            "m1",
            Reply::status(502, json!({"error": {"message": "bad gateway"}})),
        );
    }
    let mut waits = Vec::new();
    let started = Instant::now();
    let done = router
        .complete(&request(), &mut |event| {
            if let RouteEvent::Waiting { reason, .. } = event {
                waits.push(reason.to_string());
            }
        })
        .await
        .unwrap();
    assert_eq!(done.completion.text, GOOD);
    assert!(
        started.elapsed() >= Duration::from_millis(700),
        "{:?}",
        started.elapsed()
    );
    assert!(
        waits.iter().any(|w| w.contains("circuit open")),
        "said what it waited for: {waits:?}"
    );
}

/// Prose, looping or empty replies are the prompt's and the task's trouble as much as the
/// model's: they never open its circuit.
#[tokio::test(flavor = "multi_thread")]
async fn content_failures_never_open_a_circuit() {
    let fleet = Fleet::start();
    let router = router(&fleet, registry(2, ""), settings());
    for _ in 0..6 {
        fleet.push(
            "m1",
            Reply::content("I would write tests here, but let me explain the approach first."),
        );
        fleet.push(
            "m2",
            Reply::content("I would write tests here, but let me explain the approach first."),
        );
    }
    for _ in 0..6 {
        let error = call(&router).await.unwrap_err();
        assert_eq!(error.kind, ErrorKind::ProseOnly);
    }
    for model in router.health() {
        assert_eq!(
            circuit_state(&model, chrono::Utc::now()),
            CircuitState::Closed,
            "{}",
            model.model
        );
    }
}

/// Calls that wait for capacity are served in the order they came.
#[tokio::test(flavor = "multi_thread")]
async fn waiting_calls_are_served_first_come_first_served() {
    let fleet = Fleet::start();
    let overrides: toml::Table = toml::from_str("[[models]]\nname = \"m1\"\nrpm = 600\n").unwrap();
    let registry = registry(1, "").with_overrides(&overrides, "test").unwrap();
    let router = router(&fleet, registry, settings());
    let mut handles = Vec::new();
    for n in 0..12 {
        let router = router.clone();
        handles.push(tokio::spawn(async move {
            let mut request = request();
            request.messages.push(Message::user(format!("caller {n}")));
            router.complete(&request, &mut |_| {}).await.unwrap();
        }));
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    for handle in handles {
        handle.await.unwrap();
    }
    let order: Vec<usize> = fleet
        .requests_for("m1")
        .iter()
        .map(|r| {
            let text = r.prompt_text();
            let at = text.find("caller ").unwrap() + "caller ".len();
            text[at..]
                .split_whitespace()
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!(order, (0..12).collect::<Vec<_>>());
}

/// A call that cannot get a model before its deadline says what it waited for: pitcrew's own
/// pacing is not a provider's cooldown.
#[tokio::test(flavor = "multi_thread")]
async fn a_wait_that_runs_out_names_what_it_waited_for() {
    let fleet = Fleet::start();
    let overrides: toml::Table = toml::from_str("[[models]]\nname = \"m1\"\nrpm = 1\n").unwrap();
    let paced = registry(1, "").with_overrides(&overrides, "test").unwrap();
    let paced = router(&fleet, paced, settings());
    call(&paced).await.unwrap();
    let mut request = request();
    request.wait_until = Some(Instant::now() + Duration::from_millis(300));
    let error = paced.complete(&request, &mut |_| {}).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::NoModelAvailable);
    assert!(
        error
            .message
            .contains("pitcrew's own request pacing for `m1`"),
        "{}",
        error.message
    );

    let fleet2 = Fleet::start();
    let cooled = router(&fleet2, registry(1, ""), settings());
    fleet2.push("m1", limited("30"));
    let error = call(&cooled).await.unwrap_err();
    assert!(
        error.message.contains("the provider asked") && error.message.contains("UTC"),
        "{}",
        error.message
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shared_quota_holds_every_model_it_covers_together() {
    let fleet = Fleet::start();
    // Each model alone may take 60 a minute, the account only 2 across both: rotating from
    // one to the other must not escape the account's limit.
    let registry = registry(
        2,
        "[[quotas]]\nname = \"account\"\nprovider = \"test\"\nfree_only = true\nrpm = 2\n",
    );
    let overrides: toml::Table = toml::from_str(
        "[[models]]\nname = \"m1\"\nrpm = 60\n[[models]]\nname = \"m2\"\nrpm = 60\n",
    )
    .unwrap();
    let registry = registry.with_overrides(&overrides, "test").unwrap();
    let router = router(&fleet, registry, settings());
    let served = [
        call(&router).await.unwrap().model,
        call(&router).await.unwrap().model,
    ];
    assert_eq!(
        served,
        ["m1", "m2"],
        "m1's own pace sends the second call to m2"
    );
    let mut request = request();
    request.wait_until = Some(Instant::now() + Duration::from_millis(500));
    let mut reasons = Vec::new();
    let mut record = |event: RouteEvent<'_>| {
        if let RouteEvent::Waiting { reason, .. } = event {
            reasons.push(reason.to_string());
        }
    };
    let error = router.complete(&request, &mut record).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::NoModelAvailable);
    assert!(
        error.message.contains("the `account` quota"),
        "{}",
        error.message
    );
    assert!(
        reasons.iter().any(|r| r.contains("the `account` quota")),
        "{reasons:?}"
    );
    assert_eq!(
        fleet.server.requests().len(),
        2,
        "no third request was sent"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_daily_quota_used_up_takes_every_model_it_covers_out_until_the_next_day() {
    let fleet = Fleet::start();
    // m3 is paid, so the free-only quota does not cover it.
    let registry = registry(
        3,
        "[[quotas]]\nname = \"free-day\"\nprovider = \"test\"\nfree_only = true\nrpd = 2\n",
    );
    let overrides: toml::Table = toml::from_str(
        "[[models]]\nname = \"m3\"\nfree = false\nprice_in = 0.1\nprice_out = 0.1\n",
    )
    .unwrap();
    let registry = registry.with_overrides(&overrides, "test").unwrap();
    let router = router(&fleet, registry, settings());
    let mut served = Vec::new();
    for _ in 0..3 {
        served.push(call(&router).await.unwrap().model);
    }
    assert_eq!(served[..2], ["m1", "m1"]);
    assert_eq!(served[2], "m3", "the day's two free requests are used up");
    let selection = router.select(&Requirements::default());
    for free in ["m1", "m2"] {
        let model = selection.iter().find(|c| c.model == free).unwrap();
        let until = model
            .excluded
            .iter()
            .find_map(|e| match e {
                Exclusion::CoolingDown { until, reason } => Some((*until, reason.clone())),
                _ => None,
            })
            .unwrap_or_else(|| panic!("{free} cools down: {:?}", model.excluded));
        assert!(until.1.contains("`free-day` quota"), "{}", until.1);
        assert_eq!(until.0.time(), chrono::NaiveTime::MIN, "until 00:00 UTC");
    }
    assert!(fleet.requests_for("m2").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_quota_refusal_from_one_model_cools_every_model_sharing_the_daily_quota() {
    let fleet = Fleet::start();
    let registry = registry(
        3,
        "[[quotas]]\nname = \"free-day\"\nprovider = \"test\"\nfree_only = true\nrpd = 1000\n",
    );
    let overrides: toml::Table = toml::from_str(
        "[[models]]\nname = \"m3\"\nfree = false\nprice_in = 0.1\nprice_out = 0.1\n",
    )
    .unwrap();
    let registry = registry.with_overrides(&overrides, "test").unwrap();
    let router = router(&fleet, registry, settings());
    fleet.push(
        "m1",
        Reply::status(
            429,
            json!({"error": {"message": "Rate limit exceeded: free-models-per-day", "code": 429}}),
        ),
    );
    let done = call(&router).await.unwrap();
    // m2 shares the used-up quota, so it is not asked: the paid m3 serves.
    assert_eq!(done.model, "m3");
    assert_eq!(kinds(&done.calls), [Some(ErrorKind::Quota), None]);
    assert!(fleet.requests_for("m2").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reply_that_used_the_window_s_last_request_keeps_the_model_away_until_the_reset() {
    let fleet = Fleet::start();
    let router = router(&fleet, registry(2, ""), settings());
    fleet.push(
        "m1",
        Reply::content(GOOD)
            .header("x-ratelimit-limit", "20")
            .header("x-ratelimit-remaining", "0")
            .header("x-ratelimit-reset", "2"),
    );
    assert_eq!(call(&router).await.unwrap().model, "m1");
    // No 429 needed: the next call goes to m2 at once, and m1 is back after the reset.
    let started = Instant::now();
    assert_eq!(call(&router).await.unwrap().model, "m2");
    assert!(started.elapsed() < Duration::from_millis(500));
    assert_eq!(fleet.requests_for("m1").len(), 1);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(call(&router).await.unwrap().model, "m1");
}
