//! The scripted server over real HTTP: synchronous tests use a raw `TcpStream` (as a CLI test
//! would, with no runtime of its own), async tests use reqwest.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use futures::StreamExt;
use pitcrew_testkit::{Gate, RecordedRequest, Reply, ScriptedServer, SseEvent, sse_text_chunks};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(5);

/// A reply read by [`http_blocking`].
struct RawResponse {
    status: u16,
    /// The header block, names lowercased.
    head: String,
    body: String,
}

/// One HTTP/1.1 request on a fresh connection, read until the server closes it.
fn http_blocking(
    server_url: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> std::io::Result<RawResponse> {
    let host = server_url
        .strip_prefix("http://")
        .and_then(|rest| rest.strip_suffix("/v1"))
        .expect("base url shape");
    let payload = body.map(Value::to_string).unwrap_or_default();
    let mut stream = TcpStream::connect(host)?;
    stream.set_read_timeout(Some(WAIT))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\nx-test: yes\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{payload}",
        payload.len()
    )?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw)?;
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("no complete response: {raw:?}")))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("status line");
    Ok(RawResponse {
        status,
        head: head.to_lowercase(),
        body: body.to_owned(),
    })
}

fn chat(server: &ScriptedServer, prompt: &str) -> RawResponse {
    let request = json!({"model": "test/model", "messages": [{"role": "user", "content": prompt}]});
    http_blocking(
        &server.base_url(),
        "POST",
        "/v1/chat/completions",
        Some(&request),
    )
    .expect("request")
}

fn json_body(response: &RawResponse) -> Value {
    serde_json::from_str(&response.body).expect("JSON body")
}

#[test]
fn replies_are_consumed_in_fifo_order_and_requests_recorded() {
    let server = ScriptedServer::start();
    assert!(server.base_url().starts_with("http://127.0.0.1:"));
    server.push(Reply::content("first answer"));
    server.push(Reply::content("second"));

    let first = chat(&server, "one two three");
    let second = chat(&server, "again");

    assert_eq!(first.status, 200);
    assert!(first.head.contains("content-type: application/json"));
    let first = json_body(&first);
    assert_eq!(first["object"], "chat.completion");
    assert_eq!(first["model"], "test/model");
    assert!(first["id"].as_str().is_some_and(|id| !id.is_empty()));
    assert!(first["created"].as_u64().is_some());
    assert_eq!(
        first["choices"][0]["message"],
        json!({"role": "assistant", "content": "first answer"})
    );
    assert_eq!(first["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        first["usage"],
        json!({"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5})
    );
    assert_eq!(
        json_body(&second)["choices"][0]["message"]["content"],
        "second"
    );

    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    let recorded = &requests[0];
    assert_eq!(recorded.method, "POST");
    assert_eq!(recorded.path, "/v1/chat/completions");
    assert_eq!(recorded.header("X-Test"), Some("yes"));
    assert_eq!(recorded.model(), Some("test/model"));
    assert!(!recorded.stream());
    assert_eq!(recorded.prompt_text(), "one two three");
    assert!(requests[0].received_at <= requests[1].received_at);
}

#[test]
fn an_empty_script_answers_500_visibly() {
    let server = ScriptedServer::start();
    let response = chat(&server, "nobody scripted this");
    assert_eq!(response.status, 500);
    assert_eq!(
        json_body(&response)["error"]["message"],
        "scripted server: no reply left for this request"
    );
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn a_held_reply_is_recorded_at_once_and_released_by_its_gate() {
    let server = ScriptedServer::start();
    let gate = Gate::new();
    server.push(Reply::content("released").hold(&gate));
    let url = server.base_url();
    let request = json!({"model": "m", "messages": [{"role": "user", "content": "wait for me"}]});
    let client =
        thread::spawn(move || http_blocking(&url, "POST", "/v1/chat/completions", Some(&request)));

    assert!(server.wait_for_requests(1, WAIT));
    assert_eq!(server.requests()[0].prompt_text(), "wait for me");
    thread::sleep(Duration::from_millis(50));
    assert!(!client.is_finished(), "the reply must wait for the gate");

    gate.open();
    let response = client.join().expect("client thread").expect("response");
    assert_eq!(
        json_body(&response)["choices"][0]["message"]["content"],
        "released"
    );
    assert!(!server.wait_for_requests(2, Duration::from_millis(10)));
}

#[test]
fn dropping_the_server_abandons_held_replies() {
    let server = ScriptedServer::start();
    server.push(Reply::content("never sent").hold(&Gate::new()));
    let url = server.base_url();
    let client = thread::spawn(move || {
        http_blocking(&url, "POST", "/v1/chat/completions", Some(&json!({})))
    });
    assert!(server.wait_for_requests(1, WAIT));

    let started = Instant::now();
    drop(server);
    let outcome = client.join().expect("client thread");
    assert!(outcome.is_err(), "the connection closes without a reply");
    assert!(
        started.elapsed() < WAIT,
        "closed by the drop, not by the read timeout"
    );
}

#[test]
fn models_are_listed_and_unknown_routes_are_404() {
    let server = ScriptedServer::start();
    let models = http_blocking(&server.base_url(), "GET", "/v1/models", None).expect("models");
    assert_eq!(models.status, 200);
    let models = json_body(&models);
    assert_eq!(models["data"][0]["id"], "scripted/coder");
    assert_eq!(models["data"][1]["pricing"]["prompt"], "0");

    let missing = http_blocking(&server.base_url(), "GET", "/v1/nothing", None).expect("404");
    assert_eq!(missing.status, 404);
    let paths: Vec<String> = server.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/v1/models", "/v1/nothing"]);
}

fn client() -> reqwest::Client {
    // A proxy from the environment must not intercept loopback traffic.
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
}

fn chat_url(server: &ScriptedServer) -> String {
    format!("{}/chat/completions", server.base_url())
}

#[tokio::test]
async fn status_replies_carry_headers_after_their_delay() {
    let server = ScriptedServer::start();
    let delay = Duration::from_millis(150);
    server.push(
        Reply::status(
            429,
            json!({"error": {"message": "rate limited", "code": 429}}),
        )
        .header("Retry-After", "7")
        .delay(delay),
    );
    server.push(
        Reply::raw(200, "text/plain", "not json at all").header("content-type", "text/x-odd"),
    );

    let started = Instant::now();
    let limited = client()
        .post(chat_url(&server))
        .json(&json!({"model": "m", "messages": []}))
        .send()
        .await
        .expect("send");
    assert!(started.elapsed() >= delay);
    assert_eq!(limited.status().as_u16(), 429);
    assert_eq!(limited.headers()["retry-after"], "7");
    let body: Value = limited.json().await.expect("json");
    assert_eq!(body["error"]["message"], "rate limited");

    let raw = client()
        .post(chat_url(&server))
        .body("plain")
        .send()
        .await
        .expect("send");
    assert_eq!(
        raw.headers()["content-type"],
        "text/x-odd",
        "a scripted header replaces the default"
    );
    assert_eq!(raw.text().await.expect("text"), "not json at all");
    assert_eq!(server.requests()[1].body, Value::Null);
}

#[tokio::test]
async fn sse_events_are_framed_and_flushed_one_by_one() {
    let server = ScriptedServer::start();
    let pause = Duration::from_millis(300);
    server.push(Reply::sse(vec![
        SseEvent::Comment("OPENROUTER PROCESSING".into()),
        SseEvent::Data(json!({"n": 1})),
        SseEvent::Delay(pause),
        SseEvent::Data(json!({"n": 2})),
        SseEvent::RawLine("data: {broken".into()),
        SseEvent::Done,
    ]));

    let response = client()
        .post(chat_url(&server))
        .json(&json!({"model": "m", "stream": true}))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");

    let mut chunks = response.bytes_stream();
    let mut received = String::new();
    while !received.contains("\"n\":1") {
        let chunk = chunks.next().await.expect("more chunks").expect("chunk");
        received.push_str(std::str::from_utf8(&chunk).expect("utf-8"));
    }
    assert!(
        !received.contains("\"n\":2"),
        "the delayed event must not arrive with the first"
    );
    let first_seen = Instant::now();
    while let Some(chunk) = chunks.next().await {
        received.push_str(std::str::from_utf8(&chunk.expect("chunk")).expect("utf-8"));
    }
    assert!(first_seen.elapsed() >= pause - Duration::from_millis(50));
    assert_eq!(
        received,
        ": OPENROUTER PROCESSING\n\ndata: {\"n\":1}\n\ndata: {\"n\":2}\n\ndata: {broken\ndata: [DONE]\n\n"
    );
}

#[tokio::test]
async fn a_disconnect_breaks_the_connection_mid_stream() {
    let server = ScriptedServer::start();
    server.push(Reply::sse(vec![
        SseEvent::Data(json!({"n": 1})),
        SseEvent::Disconnect,
        SseEvent::Data(json!({"n": 2})),
        SseEvent::Done,
    ]));
    server.push(Reply::sse(vec![SseEvent::Data(json!({"n": 3}))]));

    let response = client()
        .post(chat_url(&server))
        .json(&json!({"model": "m", "stream": true}))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status().as_u16(), 200);
    let mut chunks = response.bytes_stream();
    let mut received = String::new();
    let mut broken = None;
    while let Some(chunk) = chunks.next().await {
        match chunk {
            Ok(bytes) => received.push_str(std::str::from_utf8(&bytes).expect("utf-8")),
            Err(error) => {
                broken = Some(error);
                break;
            }
        }
    }
    assert_eq!(
        received, "data: {\"n\":1}\n\n",
        "sent up to the break, nothing after"
    );
    assert!(
        broken.is_some(),
        "the body ends in an error, unlike a stream that simply stops"
    );

    // A stream that simply stops ends cleanly; the server serves on after a break.
    let clean = client()
        .post(chat_url(&server))
        .json(&json!({"model": "m", "stream": true}))
        .send()
        .await
        .expect("send")
        .text()
        .await
        .expect("a complete body");
    assert_eq!(clean, "data: {\"n\":3}\n\n");
}

/// The JSON payloads of a complete SSE body, up to `[DONE]`.
fn sse_payloads(body: &str) -> Vec<Value> {
    let mut payloads = Vec::new();
    for line in body.lines() {
        if let Some(data) = line.strip_prefix("data: ") {
            if data == "[DONE]" {
                return payloads;
            }
            payloads.push(serde_json::from_str(data).expect("JSON data"));
        }
    }
    panic!("stream without [DONE]: {body:?}");
}

#[tokio::test]
async fn content_is_streamed_when_the_request_asks() {
    let server = ScriptedServer::start();
    server.push(Reply::content("hello brave new world").with_usage(11, 4, Some(0.0025)));

    let response = client()
        .post(chat_url(&server))
        .json(&json!({"model": "x/y", "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .expect("send");
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let payloads = sse_payloads(&response.text().await.expect("body"));

    let text: String = payloads
        .iter()
        .filter_map(|chunk| chunk["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "hello brave new world");
    assert!(payloads.iter().all(|chunk| chunk["model"] == "x/y"));
    let finish = &payloads[payloads.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        payloads[payloads.len() - 1]["usage"],
        json!({"prompt_tokens": 11, "completion_tokens": 4, "total_tokens": 15, "cost": 0.0025})
    );
}

#[test]
fn sse_text_chunks_split_text_then_stop_usage_and_done() {
    let events = sse_text_chunks("m", "abcdef", 3);
    assert_eq!(events.len(), 3 + 3);
    let data: Vec<&Value> = events
        .iter()
        .filter_map(|event| match event {
            SseEvent::Data(value) => Some(value),
            _ => None,
        })
        .collect();
    let pieces: Vec<&str> = data
        .iter()
        .filter_map(|chunk| chunk["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(pieces, ["ab", "cd", "ef"]);
    assert_eq!(data[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(data[0]["object"], "chat.completion.chunk");
    assert_eq!(data[3]["choices"][0]["finish_reason"], "stop");
    assert_eq!(data[4]["choices"], json!([]));
    assert_eq!(data[4]["usage"]["completion_tokens"], 1);
    assert_eq!(events.last(), Some(&SseEvent::Done));
}

#[tokio::test]
async fn the_responder_answers_after_the_fifo_by_prompt() {
    let server = ScriptedServer::start();
    server.push(Reply::content("from the fifo"));
    server.respond_with(|request: &RecordedRequest| {
        Reply::content(&format!("echo {}", request.prompt_text()))
    });

    let ask = |prompt: String| {
        let url = chat_url(&server);
        async move {
            let body: Value = client()
                .post(url)
                .json(&json!({"model": "m", "messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": prompt}]}))
                .send()
                .await
                .expect("send")
                .json()
                .await
                .expect("json");
            body["choices"][0]["message"]["content"]
                .as_str()
                .expect("content")
                .to_owned()
        }
    };
    assert_eq!(ask("first".into()).await, "from the fifo");
    let answers = futures::future::join_all((0..8).map(|i| ask(format!("task {i}")))).await;
    for (i, answer) in answers.iter().enumerate() {
        assert_eq!(answer, &format!("echo sys\ntask {i}"));
    }
    assert_eq!(server.requests().len(), 9);
}

#[tokio::test]
async fn a_panicking_responder_answers_500() {
    let server = ScriptedServer::start();
    server.respond_with(|_: &RecordedRequest| panic!("no reply for this prompt"));
    let response = client()
        .post(chat_url(&server))
        .json(&json!({}))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status().as_u16(), 500);
    let body: Value = response.json().await.expect("json");
    let message = body["error"]["message"].as_str().expect("message");
    assert!(message.contains("no reply for this prompt"), "{message}");
}
