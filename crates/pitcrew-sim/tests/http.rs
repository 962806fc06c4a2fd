//! The simulator over real HTTP on 127.0.0.1, talked to with reqwest.

use std::time::{Duration, Instant};

use futures::StreamExt;
use pitcrew_sim::{SimConfig, Simulator};
use serde_json::{Value, json};

/// Writes `files` and `sim.toml` (= `toml`) into a temporary directory, loads it, and serves
/// it on a free loopback port; returns the base URL (`http://…/v1`) and the directory.
async fn start(toml: &str, files: &[(&str, &str)]) -> (String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    let config_path = dir.path().join("sim.toml");
    std::fs::write(&config_path, toml).unwrap();
    let config = SimConfig::load(&config_path).unwrap();
    (serve(config).await, dir)
}

async fn serve(config: SimConfig) -> String {
    let listener = pitcrew_sim::bind("127.0.0.1:0".parse().unwrap(), false)
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let simulator = Simulator::new(config);
    tokio::spawn(async move { simulator.serve(listener).await });
    format!("http://{addr}/v1")
}

fn body(model: &str, prompt: &str, stream: bool) -> Value {
    json!({
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "stream": stream,
        "stream_options": {"include_usage": true},
    })
}

async fn post(base: &str, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{base}/chat/completions"))
        .json(body)
        .send()
        .await
        .unwrap()
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response
        .headers()
        .get(name)
        .map(|value| value.to_str().unwrap())
}

/// The `data:` payloads of an SSE body, in order.
fn payloads(sse: &str) -> Vec<&str> {
    sse.split("\n\n")
        .filter_map(|event| event.strip_prefix("data: "))
        .collect()
}

/// The text a stream's chunks carry, and its finish reason.
fn streamed_text(sse: &str) -> (String, Option<String>) {
    let mut text = String::new();
    let mut finish = None;
    for payload in payloads(sse) {
        let Ok(chunk) = serde_json::from_str::<Value>(payload) else {
            continue;
        };
        if let Some(piece) = chunk["choices"][0]["delta"]["content"].as_str() {
            text += piece;
        }
        if let Some(reason) = chunk["choices"][0]["finish_reason"].as_str() {
            finish = Some(reason.to_string());
        }
    }
    (text, finish)
}

#[tokio::test]
async fn a_reply_says_it_is_simulated_and_counts_usage_and_cost() {
    let toml = r#"
[models."sim/priced"]
pricing = { prompt = 2.0, completion = 10.0 }
filler_tokens = 40
"#;
    let (base, _dir) = start(toml, &[]).await;
    // 42 characters: 11 prompt tokens.
    let prompt = "write unit tests for src/auth.py, please!!";
    let response = post(&base, &body("sim/priced", prompt, false)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-pitcrew-simulated"), Some("true"));
    assert_eq!(header(&response, "x-ratelimit-limit-requests"), None);
    let reply: Value = response.json().await.unwrap();
    assert_eq!(reply["model"], "sim/priced");
    assert_eq!(reply["system_fingerprint"], "pitcrew-sim");
    assert_eq!(reply["object"], "chat.completion");
    assert_eq!(reply["choices"][0]["finish_reason"], "stop");
    let text = reply["choices"][0]["message"]["content"].as_str().unwrap();
    let completion_tokens = text.chars().count().div_ceil(4) as u64;
    assert!((40..50).contains(&completion_tokens), "{text}");
    let usage = &reply["usage"];
    assert_eq!(usage["prompt_tokens"], 11);
    assert_eq!(usage["completion_tokens"], completion_tokens);
    assert_eq!(usage["total_tokens"], 11 + completion_tokens);
    let cost = (11.0 * 2.0 + completion_tokens as f64 * 10.0) / 1e6;
    assert!((usage["cost"].as_f64().unwrap() - cost).abs() < 1e-12);
}

#[tokio::test]
async fn a_stream_is_paced_and_ends_with_finish_usage_and_done() {
    let toml = r#"
[models."sim/slow"]
latency = { fixed_ms = 150 }
tokens_per_second = 100
chunk_tokens = 2
filler_tokens = 20
"#;
    let (base, _dir) = start(toml, &[]).await;
    let started = Instant::now();
    let response = post(&base, &body("sim/slow", "hello", true)).await;
    assert!(
        started.elapsed() < Duration::from_millis(150),
        "headers come at once"
    );
    assert_eq!(header(&response, "content-type"), Some("text/event-stream"));
    assert_eq!(header(&response, "x-pitcrew-simulated"), Some("true"));
    let mut stream = response.bytes_stream();
    let mut sse = String::new();
    let mut first_data = None;
    while let Some(bytes) = stream.next().await {
        sse += std::str::from_utf8(&bytes.unwrap()).unwrap();
        first_data.get_or_insert_with(|| started.elapsed());
    }
    let total = started.elapsed();
    let first_data = first_data.unwrap();
    assert!(first_data >= Duration::from_millis(150), "{first_data:?}");
    let payloads = payloads(&sse);
    assert_eq!(payloads.last(), Some(&"[DONE]"));
    let usage: Value = serde_json::from_str(payloads[payloads.len() - 2]).unwrap();
    assert_eq!(usage["choices"], json!([]));
    let completion_tokens = usage["usage"]["completion_tokens"].as_u64().unwrap();
    assert_eq!(usage["usage"]["prompt_tokens"], 2);
    let (text, finish) = streamed_text(&sse);
    assert_eq!(finish.as_deref(), Some("stop"));
    assert_eq!(text.chars().count().div_ceil(4) as u64, completion_tokens);
    let first: Value = serde_json::from_str(payloads[0]).unwrap();
    assert_eq!(first["object"], "chat.completion.chunk");
    assert_eq!(first["model"], "sim/slow");
    assert_eq!(first["system_fingerprint"], "pitcrew-sim");
    assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
    // About 20 tokens at 100/s after the first token: 0.2 s more, minus one chunk.
    assert!(
        total >= first_data + Duration::from_millis(150),
        "{total:?}"
    );

    // Without include_usage there is no usage chunk.
    let mut plain = body("sim/slow", "hello", true);
    plain.as_object_mut().unwrap().remove("stream_options");
    let sse = post(&base, &plain).await.text().await.unwrap();
    assert!(!sse.contains("\"usage\""), "{sse}");
    assert!(sse.ends_with("data: [DONE]\n\n"));
}

#[tokio::test]
async fn max_tokens_cuts_the_reply_with_finish_reason_length() {
    let (base, _dir) = start("[models.m]\nfiller_tokens = 50\n", &[]).await;
    let mut request = body("m", "hi", false);
    request["max_tokens"] = json!(5);
    let reply: Value = post(&base, &request).await.json().await.unwrap();
    assert_eq!(reply["choices"][0]["finish_reason"], "length");
    assert_eq!(reply["usage"]["completion_tokens"], 5);
    assert_eq!(
        reply["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .chars()
            .count(),
        20
    );
}

#[tokio::test]
async fn the_model_list_has_context_and_prices() {
    let toml = r#"
[models."sim/a"]
context_length = 32000
pricing = { prompt = 0.5, completion = 1.5 }
[models."sim/b"]
"#;
    let (base, _dir) = start(toml, &[]).await;
    let response = reqwest::get(format!("{base}/models")).await.unwrap();
    assert_eq!(header(&response, "x-pitcrew-simulated"), Some("true"));
    let list: Value = response.json().await.unwrap();
    assert_eq!(list["object"], "list");
    let models = list["data"].as_array().unwrap();
    assert_eq!(models.len(), 2);
    assert_eq!(models[0]["id"], "sim/a");
    assert_eq!(models[0]["context_length"], 32000);
    assert_eq!(models[0]["pricing"]["prompt"], "0.0000005");
    assert_eq!(models[0]["pricing"]["completion"], "0.0000015");
    assert_eq!(models[1]["id"], "sim/b");
    assert_eq!(models[1]["pricing"]["prompt"], "0");

    let missing = post(&base, &body("gpt-4o", "hi", false)).await;
    assert_eq!(missing.status(), 404);
    let error: Value = missing.json().await.unwrap();
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains("sim/a, sim/b"), "{message}");
}

#[tokio::test]
async fn the_default_configuration_serves_sim_coder() {
    let base = serve(SimConfig::default()).await;
    let reply: Value = post(&base, &body("sim/coder", "hi", false))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(reply["model"], "sim/coder");
    assert!(
        !reply["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn an_exceeded_quota_answers_429_with_retry_after_and_rate_limit_headers() {
    let toml = "[models.limited]\nrpm = 2\ntpm = 100000\nfiller_tokens = 10\n";
    let (base, _dir) = start(toml, &[]).await;
    let first = post(&base, &body("limited", "hi", false)).await;
    assert_eq!(first.status(), 200);
    assert_eq!(header(&first, "x-ratelimit-limit-requests"), Some("2"));
    assert_eq!(header(&first, "x-ratelimit-remaining-requests"), Some("1"));
    assert_eq!(header(&first, "x-ratelimit-limit-tokens"), Some("100000"));
    assert!(header(&first, "x-ratelimit-reset-requests").is_some());
    let second = post(&base, &body("limited", "hi", false)).await;
    assert_eq!(header(&second, "x-ratelimit-remaining-requests"), Some("0"));
    let tokens_left: u64 = header(&second, "x-ratelimit-remaining-tokens")
        .unwrap()
        .parse()
        .unwrap();
    assert!(tokens_left < 100_000 - 20, "{tokens_left}");

    let refused = post(&base, &body("limited", "hi", false)).await;
    assert_eq!(refused.status(), 429);
    let retry_after: u64 = header(&refused, "retry-after").unwrap().parse().unwrap();
    assert!((59..=60).contains(&retry_after), "{retry_after}");
    assert_eq!(
        header(&refused, "x-ratelimit-remaining-requests"),
        Some("0")
    );
    let reset = header(&refused, "x-ratelimit-reset-requests").unwrap();
    assert!(reset.ends_with('s') && reset.starts_with("59."), "{reset}");
    assert_eq!(header(&refused, "x-pitcrew-simulated"), Some("true"));
    let error: Value = refused.json().await.unwrap();
    assert_eq!(error["error"]["code"], "rate_limit_exceeded");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains("requests per minute"), "{message}");
}

#[tokio::test]
async fn a_token_quota_refuses_a_prompt_that_does_not_fit_the_minute() {
    let (base, _dir) = start("[models.t]\ntpm = 50\nfiller_tokens = 4\n", &[]).await;
    let long = "x".repeat(160); // 40 tokens
    assert_eq!(post(&base, &body("t", &long, false)).await.status(), 200);
    let refused = post(&base, &body("t", &long, false)).await;
    assert_eq!(refused.status(), 429);
    assert!(header(&refused, "retry-after").is_some());
    let error: Value = refused.json().await.unwrap();
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains("tokens per minute"), "{message}");
}

#[tokio::test]
async fn configured_error_rates_answer_with_that_status() {
    let toml = "[models.flaky]\nerrors = { 503 = 1.0 }\n";
    let (base, _dir) = start(toml, &[]).await;
    let response = post(&base, &body("flaky", "hi", false)).await;
    assert_eq!(response.status(), 503);
    assert_eq!(header(&response, "x-pitcrew-simulated"), Some("true"));
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["type"], "server_error");
}

/// A model whose every streamed reply suffers `fault`.
fn fault_model(fault: &str) -> String {
    format!(
        "[models.{fault}]\nfiller_tokens = 40\nchunk_tokens = 4\ntokens_per_second = 1000\n\
         faults = {{ {fault} = 1.0, stall_ms = 400 }}\n"
    )
}

#[tokio::test]
async fn a_disconnect_breaks_the_body_mid_stream() {
    let (base, _dir) = start(&fault_model("disconnect"), &[]).await;
    let response = post(&base, &body("disconnect", "hi", true)).await;
    assert_eq!(response.status(), 200);
    let mut stream = response.bytes_stream();
    let mut received = String::new();
    let mut broke = false;
    while let Some(next) = stream.next().await {
        match next {
            Ok(bytes) => received += std::str::from_utf8(&bytes).unwrap(),
            Err(_) => {
                broke = true;
                break;
            }
        }
    }
    assert!(broke, "the body completed: {received}");
    assert!(received.contains("\"content\""), "content came first");
    assert!(!received.contains("[DONE]"));
}

#[tokio::test]
async fn a_truncated_stream_just_ends_without_finish_or_done() {
    let (base, _dir) = start(&fault_model("truncate"), &[]).await;
    let sse = post(&base, &body("truncate", "hi", true))
        .await
        .text()
        .await
        .unwrap();
    let (text, finish) = streamed_text(&sse);
    assert!(!text.is_empty());
    assert_eq!(finish, None);
    assert!(!sse.contains("[DONE]"), "{sse}");
}

#[tokio::test]
async fn a_stall_holds_one_chunk_back() {
    let (base, _dir) = start(&fault_model("stall"), &[]).await;
    let response = post(&base, &body("stall", "hi", true)).await;
    let mut stream = response.bytes_stream();
    let mut last = Instant::now();
    let mut longest = Duration::ZERO;
    let mut sse = String::new();
    while let Some(bytes) = stream.next().await {
        sse += std::str::from_utf8(&bytes.unwrap()).unwrap();
        longest = longest.max(last.elapsed());
        last = Instant::now();
    }
    assert!(longest >= Duration::from_millis(400), "{longest:?}");
    assert_eq!(streamed_text(&sse).1.as_deref(), Some("stop"));
    assert!(sse.ends_with("data: [DONE]\n\n"));
}

#[tokio::test]
async fn a_malformed_stream_has_one_chunk_cut_in_half() {
    let (base, _dir) = start(&fault_model("malformed"), &[]).await;
    let sse = post(&base, &body("malformed", "hi", true))
        .await
        .text()
        .await
        .unwrap();
    let broken: Vec<&str> = payloads(&sse)
        .into_iter()
        .filter(|p| *p != "[DONE]" && serde_json::from_str::<Value>(p).is_err())
        .collect();
    assert_eq!(broken.len(), 1, "{sse}");
    assert!(broken[0].starts_with("{\"choices\""), "{}", broken[0]);
}

#[tokio::test]
async fn the_script_is_followed_in_order_then_replies_cycle() {
    let toml = r#"
replies_dir = "replies"
script = [
    { reply_file = "demo/good.md" },
    { status = 429, retry_after = 2 },
]

[models.a]
script = [
    { reply = "first for a" },
    { fault = "truncate", reply_file = "demo/cut.md" },
]

[models.b]
"#;
    let files = [
        ("replies/02-second.md", "second reply"),
        ("replies/01-first.md", "first reply"),
        ("replies/.hidden", "never served"),
        ("demo/good.md", "good tests"),
        (
            "demo/cut.md",
            "this stream is cut half way through its text",
        ),
    ];
    let (base, _dir) = start(toml, &files).await;
    let text = |reply: Value| {
        reply["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let json = |model: &'static str| {
        let base = base.clone();
        async move { post(&base, &body(model, "go", false)).await }
    };
    // a takes its own script first.
    assert_eq!(text(json("a").await.json().await.unwrap()), "first for a");
    let sse = post(&base, &body("a", "go", true))
        .await
        .text()
        .await
        .unwrap();
    let (cut, finish) = streamed_text(&sse);
    assert_eq!(finish, None);
    assert!("this stream is cut half way through its text".starts_with(&cut));
    assert!(!cut.is_empty() && cut.len() < 44, "{cut}");
    // Then the shared script, whichever model asks.
    assert_eq!(text(json("b").await.json().await.unwrap()), "good tests");
    let limited = json("a").await;
    assert_eq!(limited.status(), 429);
    assert_eq!(header(&limited, "retry-after"), Some("2"));
    // Then the reply files in name order, cycling, per model.
    assert_eq!(text(json("a").await.json().await.unwrap()), "first reply");
    assert_eq!(text(json("a").await.json().await.unwrap()), "second reply");
    assert_eq!(text(json("a").await.json().await.unwrap()), "first reply");
    assert_eq!(text(json("b").await.json().await.unwrap()), "first reply");
}

#[tokio::test]
async fn the_same_seed_gives_the_same_run() {
    let toml = "seed = 7\n[models.m]\nerrors = { 500 = 0.5 }\nfiller_tokens = 20\n";
    let run = || async {
        let (base, dir) = start(toml, &[]).await;
        let mut outcomes = Vec::new();
        for _ in 0..12 {
            let response = post(&base, &body("m", "hi", false)).await;
            outcomes.push(format!(
                "{} {}",
                response.status(),
                response.json::<Value>().await.unwrap()["choices"][0]["message"]["content"]
            ));
        }
        drop(dir);
        outcomes
    };
    let first = run().await;
    assert_eq!(first, run().await);
    assert!(first.iter().any(|o| o.starts_with("500")));
    assert!(first.iter().any(|o| o.starts_with("200")));
}

#[tokio::test]
async fn a_remote_address_is_refused_unless_allowed() {
    let error = pitcrew_sim::bind("0.0.0.0:0".parse().unwrap(), false)
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(message.contains("0.0.0.0:0"), "{message}");
    assert!(message.contains("--allow-remote"), "{message}");
    assert!(
        pitcrew_sim::bind("0.0.0.0:0".parse().unwrap(), true)
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn a_scripted_fault_cuts_a_json_reply_too() {
    let toml = "[models.m]\nscript = [{ fault = \"truncate\" }, { fault = \"disconnect\" }]\n";
    let (base, _dir) = start(toml, &[]).await;
    let cut = post(&base, &body("m", "hi", false)).await;
    assert_eq!(cut.status(), 200);
    let text = cut.text().await.unwrap();
    assert!(text.starts_with('{') && serde_json::from_str::<Value>(&text).is_err());
    let broken = post(&base, &body("m", "hi", false)).await;
    assert!(broken.text().await.is_err(), "the body never completes");
    // The script is used up: whole replies again, with their length.
    let whole = post(&base, &body("m", "hi", false)).await;
    assert!(whole.content_length().is_some());
    assert!(whole.json::<Value>().await.is_ok());
}
