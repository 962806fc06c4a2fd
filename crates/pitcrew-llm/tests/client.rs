//! The client against a real local HTTP server with scripted replies.

use std::time::Duration;

use pitcrew_core::ErrorKind;
use pitcrew_core::config::Secret;
use pitcrew_llm::{ChatClient, ChatRequest, Completion, Endpoint, LlmError, Message};
use pitcrew_testkit::{Reply, ScriptedServer};
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
