//! The client against a real local HTTP server with scripted replies.

use std::time::Duration;

use pitcrew_core::ErrorKind;
use pitcrew_core::Secret;
use pitcrew_llm::{ChatClient, ChatRequest, Completion, Endpoint, LlmError, Message};
use pitcrew_testkit::{Reply, ScriptedServer, SseEvent};
use serde_json::json;

fn request() -> ChatRequest {
    ChatRequest {
        model: "vendor/model-x:free".into(),
        messages: vec![Message::system("be brief"), Message::user("write a test")],
        temperature: 0.2,
        max_tokens: 256,
    }
}

fn endpoint(server: &ScriptedServer) -> Endpoint {
    Endpoint {
        base_url: server.base_url(),
        api_key: Some(Secret::new("sk-test")),
        api_key_env: "TEST_KEY".into(),
    }
}

async fn call(server: &ScriptedServer, timeout: Duration) -> Result<Completion, LlmError> {
    ChatClient::new(timeout)
        .unwrap()
        .complete(&endpoint(server), &request())
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_normal_reply_with_usage_and_cost() {
    let server = ScriptedServer::start();
    server.push(Reply::content("hello").with_usage(12, 3, Some(0.00042)));
    let done = call(&server, Duration::from_secs(5)).await.unwrap();
    assert_eq!(done.text, "hello");
    assert_eq!(done.finish_reason.as_deref(), Some("stop"));
    assert_eq!((done.usage.tokens_in, done.usage.tokens_out), (12, 3));
    assert_eq!(done.usage.cost_usd, Some(0.00042));
    let sent = &server.requests()[0];
    assert_eq!(sent.header("authorization"), Some("Bearer sk-test"));
    assert_eq!(sent.model(), Some("vendor/model-x:free"));
    assert_eq!(sent.body["stream"], false);
    assert_eq!(sent.body["messages"][1]["role"], "user");
}

#[tokio::test(flavor = "multi_thread")]
async fn lenient_bodies_are_accepted() {
    let server = ScriptedServer::start();
    for body in [
        json!({"choices": [{"message": {"content": "x"}, "finish_reason": ""}], "usage": {}}),
        json!({"choices": [{"message": {"content": "x"}, "finish_reason": "eos_token", "extra": 1}]}),
        json!({"choices": null, "usage": null}),
    ] {
        server.push(Reply::status(200, body));
    }
    let first = call(&server, Duration::from_secs(5)).await.unwrap();
    assert_eq!((first.text.as_str(), first.finish_reason), ("x", None));
    assert_eq!(first.usage.cost_usd, None);
    let second = call(&server, Duration::from_secs(5)).await.unwrap();
    assert_eq!(second.finish_reason.as_deref(), Some("eos_token"));
    let third = call(&server, Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        third.text, "",
        "no choices is an empty reply for the caller to judge"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn http_errors_are_classified_and_never_retried() {
    let server = ScriptedServer::start();
    let cases = [
        (401, ErrorKind::Auth, "TEST_KEY"),
        (403, ErrorKind::Auth, "TEST_KEY"),
        (429, ErrorKind::RateLimit, "rate limited"),
        (404, ErrorKind::BadRequest, "vendor/model-x:free"),
        (400, ErrorKind::BadRequest, "request rejected"),
        (500, ErrorKind::ServerError, "provider error"),
        (503, ErrorKind::ServerError, "provider error"),
    ];
    for (status, kind, mention) in cases {
        server.push(
            Reply::status(
                status,
                json!({"error": {"message": format!("upstream says {status}")}}),
            )
            .header("retry-after", "7"),
        );
        let before = server.requests().len();
        let err = call(&server, Duration::from_secs(5)).await.unwrap_err();
        assert_eq!(err.kind, kind, "HTTP {status}");
        assert_eq!(err.status, Some(status));
        assert!(err.message.contains(mention), "{}", err.message);
        assert!(
            err.message.contains(&format!("upstream says {status}")),
            "{}",
            err.message
        );
        assert_eq!(err.retry_after, Some(Duration::from_secs(7)));
        assert_eq!(
            server.requests().len(),
            before + 1,
            "HTTP {status} was retried"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_inside_a_200_answer_are_errors() {
    let server = ScriptedServer::start();
    server.push(Reply::status(
        200,
        json!({"error": {"message": "no credits", "code": 402}}),
    ));
    server.push(Reply::status(
        200,
        json!({"choices": [{"message": {"content": "partial"}, "finish_reason": "error"}]}),
    ));
    server.push(Reply::status(200, json!({"choices": [{"message": {"content": "cut"}, "finish_reason": "length"}], "usage": {"completion_tokens": 256}})));
    server.push(Reply::raw(200, "text/html", "<html>gateway</html>"));
    let credits = call(&server, Duration::from_secs(5)).await.unwrap_err();
    assert_eq!(credits.status, Some(402));
    assert!(credits.message.contains("no credits"));
    assert_eq!(
        call(&server, Duration::from_secs(5))
            .await
            .unwrap_err()
            .kind,
        ErrorKind::ServerError
    );
    let cut = call(&server, Duration::from_secs(5)).await.unwrap_err();
    assert_eq!(cut.kind, ErrorKind::Truncated);
    assert!(cut.message.contains("256 tokens"), "{}", cut.message);
    let html = call(&server, Duration::from_secs(5)).await.unwrap_err();
    assert_eq!(html.kind, ErrorKind::ServerError);
    assert!(html.message.contains("<html>gateway</html>"));
}

#[tokio::test(flavor = "multi_thread")]
async fn retry_after_ms_wins_over_retry_after() {
    let server = ScriptedServer::start();
    server.push(
        Reply::status(429, json!({}))
            .header("retry-after", "9")
            .header("retry-after-ms", "1500"),
    );
    let err = call(&server, Duration::from_secs(5)).await.unwrap_err();
    assert_eq!(err.retry_after, Some(Duration::from_millis(1500)));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_provider_times_out_and_a_closed_port_is_a_connection_error() {
    let server = ScriptedServer::start();
    server.push(Reply::content("late").delay(Duration::from_secs(5)));
    let err = call(&server, Duration::from_millis(300)).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Timeout);
    assert_eq!(server.requests().len(), 1);

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let nowhere = Endpoint {
        base_url: format!("http://127.0.0.1:{port}/v1"),
        api_key: None,
        api_key_env: String::new(),
    };
    let err = ChatClient::new(Duration::from_secs(2))
        .unwrap()
        .complete(&nowhere, &request())
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Connection);
}

fn chunk(content: &str, finish: Option<&str>) -> SseEvent {
    SseEvent::Data(
        json!({"choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish}]}),
    )
}

async fn stream(
    server: &ScriptedServer,
    idle: Duration,
) -> (Result<Completion, LlmError>, Vec<String>) {
    let client = ChatClient::new(Duration::from_secs(10))
        .unwrap()
        .with_idle_timeout(idle);
    let mut deltas = Vec::new();
    let result = client
        .stream(&endpoint(server), &request(), &mut |d| {
            deltas.push(d.to_string())
        })
        .await;
    (result, deltas)
}

/// What is committed must be what the model sent: a stream that is not well formed ends the
/// call as `malformed_stream` (the provider's fault), never with a piece quietly skipped.
#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_stream_ends_the_call_instead_of_losing_a_piece() {
    for (bad, why) in [
        (
            SseEvent::RawLine("data: {\"choices\": [{\"delta\": {\"cont".into()),
            "is not JSON",
        ),
        (
            SseEvent::RawLine("data: [1, 2]".into()),
            "not a JSON object",
        ),
        (
            SseEvent::Data(json!({"id": "x", "object": "chat.completion.chunk"})),
            "neither choices, usage nor an error",
        ),
        (
            SseEvent::Data(json!({"choices": [{"delta": {"content": 42}}]})),
            "`delta.content` is neither text nor parts",
        ),
        (
            SseEvent::Data(json!({"choices": {"delta": {"content": "x"}}})),
            "`choices` is not a list",
        ),
    ] {
        let server = ScriptedServer::start();
        server.push(Reply::sse(vec![
            chunk("def test_", None),
            bad,
            chunk("x(): pass", Some("stop")),
            SseEvent::Done,
        ]));
        let (result, _) = stream(&server, Duration::from_secs(2)).await;
        let error = result.unwrap_err();
        assert_eq!(error.kind, ErrorKind::MalformedStream, "{why}: {error:?}");
        assert!(error.message.contains(why), "{why}: {}", error.message);
        assert!(
            error.message.contains("after 9 characters"),
            "{}",
            error.message
        );
    }
    // Counts that do not add up: the provider billed a reply that never came.
    let server = ScriptedServer::start();
    server.push(Reply::sse(vec![
        SseEvent::Data(json!({"choices": [{"delta": {"role": "assistant"}}]})),
        SseEvent::Data(json!({"choices": [{"delta": {}, "finish_reason": "stop"}]})),
        SseEvent::Data(
            json!({"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 250}}),
        ),
        SseEvent::Done,
    ]));
    let (result, _) = stream(&server, Duration::from_secs(2)).await;
    let error = result.unwrap_err();
    assert_eq!(error.kind, ErrorKind::MalformedStream);
    assert!(
        error.message.contains("250 completion tokens"),
        "{}",
        error.message
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_is_read_through_comments_and_odd_chunks() {
    let server = ScriptedServer::start();
    server.push(Reply::sse(vec![
        SseEvent::Comment("OPENROUTER PROCESSING".into()),
        SseEvent::Data(json!({"choices": [{"delta": {"role": "assistant", "reasoning": "thinking"}}]})),
        SseEvent::Delay(Duration::from_millis(150)),
        chunk("def test_", None),
        SseEvent::RawLine("event: ignored".into()),
        SseEvent::Data(json!({"choices": null})),
        chunk("x(): pass", Some("")),
        SseEvent::Data(json!({"choices": [{"delta": {}, "finish_reason": "eos"}]})),
        SseEvent::Data(json!({"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 4, "cost": 0.0001}})),
        SseEvent::Done,
    ]));
    let (result, deltas) = stream(&server, Duration::from_secs(2)).await;
    let done = result.unwrap();
    assert_eq!(done.text, "def test_x(): pass");
    assert_eq!(deltas, ["def test_", "x(): pass"]);
    assert_eq!(done.finish_reason.as_deref(), Some("eos"));
    assert_eq!(
        (
            done.usage.tokens_in,
            done.usage.tokens_out,
            done.usage.cost_usd
        ),
        (7, 4, Some(0.0001))
    );
    // The reasoning chunk is the first token; the answer came 150 ms later.
    assert!(
        done.time_to_first_token < Duration::from_millis(140),
        "{:?}",
        done.time_to_first_token
    );
    assert!(done.latency >= Duration::from_millis(150));
    let sent = &server.requests()[0];
    assert_eq!(sent.body["stream"], true);
    assert_eq!(sent.body["stream_options"]["include_usage"], true);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_testkit_content_reply_streams_and_a_json_answer_is_accepted() {
    let server = ScriptedServer::start();
    server.push(Reply::content("hello streaming world").with_usage(3, 3, None));
    // A server that ignores `stream` and answers with plain JSON.
    server.push(Reply::raw(
        200,
        "application/json",
        &json!({"choices": [{"message": {"content": "plain"}, "finish_reason": "stop"}]})
            .to_string(),
    ));
    let (first, deltas) = stream(&server, Duration::from_secs(2)).await;
    assert_eq!(first.unwrap().text, "hello streaming world");
    assert_eq!(deltas.len(), 3);
    let (second, deltas) = stream(&server, Duration::from_secs(2)).await;
    assert_eq!(second.unwrap().text, "plain");
    assert_eq!(deltas, ["plain"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_without_an_end_or_that_stalls_is_truncated() {
    let server = ScriptedServer::start();
    server.push(Reply::sse(vec![chunk("def test_", None)]));
    server.push(Reply::sse(vec![
        chunk("def ", None),
        SseEvent::Comment("keep-alive".into()),
        SseEvent::Delay(Duration::from_millis(250)),
        SseEvent::Comment("keep-alive".into()),
        SseEvent::Delay(Duration::from_millis(250)),
        SseEvent::Comment("keep-alive".into()),
        SseEvent::Delay(Duration::from_secs(3)),
        chunk("late", Some("stop")),
        SseEvent::Done,
    ]));
    // Finished (finish reason) but then silent: complete, the usage chunk is optional.
    server.push(Reply::sse(vec![
        chunk("all", Some("stop")),
        SseEvent::Delay(Duration::from_secs(3)),
        SseEvent::Done,
    ]));
    // [DONE] without a finish reason is a complete stream too.
    server.push(Reply::sse(vec![chunk("done", None), SseEvent::Done]));
    let (cut, _) = stream(&server, Duration::from_millis(400)).await;
    let cut = cut.unwrap_err();
    assert_eq!(cut.kind, ErrorKind::Truncated);
    assert!(cut.message.contains("without [DONE]"), "{}", cut.message);
    assert!(cut.message.contains("9 characters"), "{}", cut.message);
    let started = std::time::Instant::now();
    let (stalled, deltas) = stream(&server, Duration::from_millis(400)).await;
    let stalled = stalled.unwrap_err();
    assert_eq!(stalled.kind, ErrorKind::Truncated);
    assert!(stalled.message.contains("stalled"), "{}", stalled.message);
    assert_eq!(deltas, ["def "]);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "comments do not count as progress"
    );
    let (finished, _) = stream(&server, Duration::from_millis(400)).await;
    assert_eq!(finished.unwrap().text, "all");
    let (done, _) = stream(&server, Duration::from_millis(400)).await;
    assert_eq!(done.unwrap().text, "done");
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_inside_a_stream_are_classified() {
    let server = ScriptedServer::start();
    server.push(Reply::sse(vec![
        chunk("partial", None),
        SseEvent::Data(
            json!({"error": {"message": "Provider returned error", "code": 502,
            "metadata": {"raw": "upstream overloaded"}},
            "choices": [{"delta": {"content": ""}, "finish_reason": "error"}]}),
        ),
    ]));
    server.push(Reply::sse(vec![SseEvent::Data(
        json!({"error": {"message": "Rate limit exceeded: free-models-per-day", "code": 429,
            "metadata": {"headers": {"X-RateLimit-Reset": "3600"}}}}),
    )]));
    server.push(Reply::sse(vec![chunk("x", Some("error"))]));
    server.push(Reply::sse(vec![
        chunk("cut", Some("length")),
        SseEvent::Done,
    ]));
    server.push(Reply::sse(vec![
        chunk("", Some("content_filter")),
        SseEvent::Done,
    ]));
    server.push(
        Reply::status(429, json!({"error": {"message": "slow down"}}))
            .header("x-ratelimit-reset", "5"),
    );
    let next = || stream(&server, Duration::from_secs(2));
    let e = next().await.0.unwrap_err();
    assert_eq!((e.kind, e.status), (ErrorKind::ServerError, Some(502)));
    assert!(
        e.message.contains("upstream overloaded") && e.message.contains("after 7 characters"),
        "{}",
        e.message
    );
    let e = next().await.0.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Quota);
    assert_eq!(e.retry_after, Some(Duration::from_secs(3600)));
    assert_eq!(next().await.0.unwrap_err().kind, ErrorKind::ServerError);
    assert_eq!(next().await.0.unwrap_err().kind, ErrorKind::Truncated);
    assert_eq!(next().await.0.unwrap_err().kind, ErrorKind::ContentFilter);
    let e = next().await.0.unwrap_err();
    assert_eq!(
        (e.kind, e.retry_after),
        (ErrorKind::RateLimit, Some(Duration::from_secs(5)))
    );
    assert_eq!(server.requests().len(), 6, "one request per call");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_that_sends_no_headers_times_out_at_the_idle_limit() {
    let server = ScriptedServer::start();
    server.push(Reply::content("late").delay(Duration::from_secs(5)));
    let started = std::time::Instant::now();
    let (result, _) = stream(&server, Duration::from_millis(300)).await;
    assert_eq!(result.unwrap_err().kind, ErrorKind::Timeout);
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_model_list_is_fetched_for_sync() {
    let server = ScriptedServer::start();
    let client = ChatClient::new(Duration::from_secs(5)).unwrap();
    let models = pitcrew_llm::sync::fetch_models(&client, &endpoint(&server), "openrouter")
        .await
        .unwrap();
    let ids: Vec<&str> = models.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["scripted/coder", "scripted/coder:free"]);
    assert_eq!(models[0].price_in, 0.000001);
    assert!(models[1].free);
    assert_eq!(server.requests()[0].path, "/v1/models");
    let (registry, report) = pitcrew_llm::Registry::builtin().merge_synced(models);
    assert_eq!(report.added, ["scripted/coder", "scripted/coder:free"]);
    assert!(registry.get("scripted/coder").is_some());
    assert!(!registry.fallback().contains(&"scripted/coder".to_string()));
}

/// A key that is registered with the redactor, as the configuration registers every key.
const REGISTERED_KEY: &str = "sk-llm-client-test-key-6d2f0b";

fn registered_endpoint(server: &ScriptedServer) -> Endpoint {
    pitcrew_core::register_secret(REGISTERED_KEY);
    Endpoint {
        base_url: server.base_url(),
        api_key: Some(Secret::new(REGISTERED_KEY)),
        api_key_env: "TEST_KEY".into(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn no_message_sent_carries_a_registered_secret() {
    let server = ScriptedServer::start();
    let endpoint = registered_endpoint(&server);
    pitcrew_core::register_secret("llm-client-test-token-0a9e47");
    let request = ChatRequest {
        messages: vec![
            Message::system("be brief"),
            Message::user(format!(
                "the test printed {REGISTERED_KEY} and llm-client-test-token-0a9e47"
            )),
            Message::assistant("I saw llm-client-test-token-0a9e47 in the file"),
        ],
        ..request()
    };
    let client = ChatClient::new(Duration::from_secs(5)).unwrap();
    for stream in [false, true] {
        server.push(Reply::content("ok"));
        if stream {
            client
                .stream(&endpoint, &request, &mut |_| {})
                .await
                .unwrap();
        } else {
            client.complete(&endpoint, &request).await.unwrap();
        }
        let sent = server.requests().pop().unwrap();
        assert_eq!(
            sent.header("authorization"),
            Some(format!("Bearer {REGISTERED_KEY}").as_str()),
            "the key still goes in the header"
        );
        assert_eq!(
            sent.body["messages"][1]["content"],
            "the test printed [REDACTED] and [REDACTED]"
        );
        assert_eq!(
            sent.body["messages"][2]["content"],
            "I saw [REDACTED] in the file"
        );
        assert_eq!(sent.body["messages"][0]["content"], "be brief");
        assert_eq!(sent.body["messages"][2]["role"], "assistant");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_provider_echoing_the_key_is_quoted_without_it() {
    let server = ScriptedServer::start();
    let endpoint = registered_endpoint(&server);
    let echo = json!({"error": {"message": format!("Incorrect API key provided: {REGISTERED_KEY}"), "code": 401}});
    let client = ChatClient::new(Duration::from_secs(5)).unwrap();
    // As an HTTP error, inside a 200 answer, and inside a stream.
    server.push(Reply::status(401, echo.clone()));
    server.push(Reply::status(200, echo.clone()));
    server.push(Reply::sse(vec![SseEvent::Data(echo.clone())]));
    let errors = [
        client.complete(&endpoint, &request()).await.unwrap_err(),
        client.complete(&endpoint, &request()).await.unwrap_err(),
        client
            .stream(&endpoint, &request(), &mut |_| {})
            .await
            .unwrap_err(),
    ];
    for err in errors {
        assert_eq!(err.kind, ErrorKind::Auth, "{}", err.message);
        assert!(
            err.message
                .contains("Incorrect API key provided: [REDACTED]"),
            "{}",
            err.message
        );
        assert!(!err.message.contains(REGISTERED_KEY), "{}", err.message);
    }
}
