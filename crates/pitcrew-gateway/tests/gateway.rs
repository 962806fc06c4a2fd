//! The gateway end to end: an agent's HTTP requests, the real router, and a real scripted
//! OpenAI-compatible provider on 127.0.0.1.

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pitcrew_core::{ErrorKind, Secret};
use pitcrew_gateway::{BODY_LIMIT, Gateway, Grant, MODEL, Session};
use pitcrew_llm::{
    Budget, ChatClient, ChatRequest, Endpoint, Message, Registry, Requirements, Router,
    RouterSettings,
};
use pitcrew_testkit::{Gate, RecordedRequest, Reply, ScriptedServer, SseEvent};
use serde_json::{Value, json};

/// The provider's key: the agent must never see it.
const PROVIDER_KEY: &str = "sk-provider-key-never-for-agents-0123";

/// A provider whose replies are scripted per model id, then `answer from <id>`.
struct Provider {
    server: ScriptedServer,
    queues: Arc<Mutex<HashMap<String, VecDeque<Reply>>>>,
}

impl Provider {
    fn start() -> Provider {
        let server = ScriptedServer::start();
        let queues: Arc<Mutex<HashMap<String, VecDeque<Reply>>>> = Arc::default();
        let scripted = Arc::clone(&queues);
        server.respond_with(move |request| {
            let model = request.model().unwrap_or_default().to_string();
            let next = scripted
                .lock()
                .unwrap()
                .get_mut(&model)
                .and_then(VecDeque::pop_front);
            next.unwrap_or_else(|| Reply::content(&format!("answer from {model}")))
        });
        Provider { server, queues }
    }

    fn push(&self, model: &str, reply: Reply) {
        let mut queues = self.queues.lock().unwrap();
        queues.entry(model.into()).or_default().push_back(reply);
    }

    fn requests(&self) -> Vec<RecordedRequest> {
        self.server.requests()
    }

    /// A router over `models` (TOML `[[models]]` entries on provider `test`), tried in the
    /// order of `fallback`.
    fn router(&self, fallback: &[&str], models: &str, settings: RouterSettings) -> Router {
        let fallback: Vec<String> = fallback.iter().map(|m| format!("\"{m}\"")).collect();
        let toml = format!("fallback = [{}]\n{models}", fallback.join(", "));
        let registry = Registry::from_toml(&toml, "gateway test registry").unwrap();
        let endpoint = Endpoint {
            base_url: self.server.base_url(),
            api_key: Some(Secret::new(PROVIDER_KEY)),
            api_key_env: "TEST_PROVIDER_KEY".into(),
        };
        let client = ChatClient::new(Duration::from_secs(5))
            .unwrap()
            .with_idle_timeout(Duration::from_secs(3));
        Router::new(registry, [("test".to_string(), endpoint)], client, settings)
    }
}

fn free_model(name: &str, quality: f64) -> String {
    format!(
        "[[models]]\nprovider = \"test\"\nid = \"{name}\"\ncontext = 32000\nfree = true\n\
         specializations = [\"balanced\"]\nquality = {quality}\nlatency_ms = 1000\n"
    )
}

/// Cheap enough that selection never excludes it for the budget before a call.
fn paid_model(name: &str, quality: f64) -> String {
    format!(
        "[[models]]\nprovider = \"test\"\nid = \"{name}\"\ncontext = 32000\n\
         price_in = 0.0000001\nprice_out = 0.0000002\nspecializations = [\"balanced\"]\n\
         quality = {quality}\nlatency_ms = 1000\n"
    )
}

fn settings() -> RouterSettings {
    RouterSettings {
        rate_limit_cooldown: Duration::from_secs(1),
        circuit_cooldown: Duration::from_secs(1),
        backoff_min: Duration::from_millis(100),
        backoff_max: Duration::from_secs(1),
        max_wait: Duration::from_secs(10),
        ..RouterSettings::default()
    }
}

/// Two free models, `m1` the better.
async fn gateway(provider: &Provider) -> Gateway {
    let models = free_model("m1", 0.9) + &free_model("m2", 0.8);
    let router = provider.router(&["m1", "m2"], &models, settings());
    Gateway::start(router).await.unwrap()
}

fn grant() -> Grant {
    Grant {
        task: "task-1".into(),
        requirements: Requirements {
            max_output_tokens: 1000,
            ..Requirements::default()
        },
        temperature: 0.3,
        budget: Budget::new(None),
        max_calls: None,
        deadline: None,
    }
}

/// What the agent got back.
#[derive(Debug)]
struct Got {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Got {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    fn error_code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .into()
    }

    fn error_message(&self) -> String {
        self.json()["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .into()
    }

    /// Whether `secret` appears anywhere in what came back, headers included.
    fn shows(&self, secret: &str) -> bool {
        self.body.contains(secret)
            || self
                .headers
                .values()
                .any(|v| String::from_utf8_lossy(v.as_bytes()).contains(secret))
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

async fn send(request: reqwest::RequestBuilder) -> Got {
    let response = request.send().await.unwrap();
    Got {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        body: response.text().await.unwrap(),
    }
}

/// `POST {base}/chat/completions` as the agent, with `token` as the bearer.
async fn chat(base_url: &str, token: Option<&str>, body: &Value) -> Got {
    let mut request = http()
        .post(format!("{base_url}/chat/completions"))
        .json(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    send(request).await
}

async fn ask(session: &Session, body: &Value) -> Got {
    chat(&session.base_url(), Some(session.token().expose()), body).await
}

fn hello() -> Value {
    json!({
        "model": "openai/gpt-4o",
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}],
    })
}

fn chat_requests(provider: &Provider) -> usize {
    provider
        .requests()
        .iter()
        .filter(|r| r.path == "/v1/chat/completions")
        .count()
}

#[tokio::test]
async fn a_call_is_routed_and_answered_as_a_chat_completion() {
    let provider = Provider::start();
    provider.push("m1", Reply::content("the answer").with_usage(12, 3, None));
    let gateway = gateway(&provider).await;
    assert_eq!(
        gateway.base_url(),
        format!("http://127.0.0.1:{}/v1", gateway.port())
    );
    let session = gateway.open(grant());
    assert_eq!(session.model(), MODEL);
    assert_eq!(session.base_url(), gateway.base_url());

    let mut body = hello();
    body["max_tokens"] = json!(100_000);
    let got = ask(&session, &body).await;
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(got.headers["x-pitcrew-model"], "m1");
    let reply = got.json();
    assert_eq!(reply["object"], "chat.completion");
    assert_eq!(reply["model"], "m1");
    assert!(reply["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(reply["choices"][0]["message"]["role"], "assistant");
    assert_eq!(reply["choices"][0]["message"]["content"], "the answer");
    assert_eq!(reply["choices"][0]["finish_reason"], "stop");
    assert_eq!(reply["usage"]["prompt_tokens"], 12);
    assert_eq!(reply["usage"]["completion_tokens"], 3);
    assert_eq!(reply["usage"]["total_tokens"], 15);

    // pitcrew chose the model and sent its own key; the agent's wishes were capped.
    let sent = &provider.requests()[0];
    assert_eq!(sent.model(), Some("m1"));
    assert_eq!(
        sent.header("authorization"),
        Some(format!("Bearer {PROVIDER_KEY}").as_str())
    );
    assert_eq!(sent.body["max_tokens"], 1000, "capped at the grant's");
    assert_eq!(
        sent.body["temperature"], 0.3,
        "the grant's when none is asked"
    );
    assert_eq!(sent.prompt_text(), "be brief\nhello");

    // Asked for less than the cap and a temperature of its own, it gets them; the path
    // without `/v1` works too.
    body["max_tokens"] = json!(50);
    body["temperature"] = json!(0.9);
    let base = format!("http://127.0.0.1:{}", gateway.port());
    let got = chat(&base, Some(session.token().expose()), &body).await;
    assert_eq!(got.status, 200, "{}", got.body);
    let sent = &provider.requests()[1];
    assert_eq!(sent.body["max_tokens"], 50);
    assert_eq!(sent.body["temperature"], 0.9);

    let report = session.report();
    assert_eq!(report.requests, 2);
    assert_eq!(report.models, ["m1", "m1"]);
    assert_eq!(report.calls.len(), 2);
    assert!(report.refused.is_empty(), "{:?}", report.refused);
}

#[tokio::test]
async fn a_stream_reads_as_a_well_formed_stream_to_an_openai_client() {
    let provider = Provider::start();
    provider.push(
        "m1",
        Reply::content("streamed answer").with_usage(7, 2, None),
    );
    let gateway = gateway(&provider).await;
    let session = gateway.open(grant());

    // pitcrew's own client, which refuses malformed or cut streams, reads it.
    let endpoint = Endpoint {
        base_url: session.base_url(),
        api_key: Some(session.token().clone()),
        api_key_env: "PITCREW_GATEWAY_TOKEN".into(),
    };
    let request = ChatRequest {
        model: session.model().into(),
        messages: vec![Message::user("hello")],
        temperature: 0.2,
        max_tokens: 100,
    };
    let client = ChatClient::new(Duration::from_secs(10)).unwrap();
    let mut deltas = String::new();
    let completion = client
        .stream(&endpoint, &request, &mut |delta| deltas.push_str(delta))
        .await
        .unwrap();
    assert_eq!(completion.text, "streamed answer");
    assert_eq!(deltas, "streamed answer");
    assert_eq!(completion.finish_reason.as_deref(), Some("stop"));
    assert_eq!(
        (completion.usage.tokens_in, completion.usage.tokens_out),
        (7, 2)
    );
    // The router streamed from the provider; the agent got the buffered whole.
    assert!(provider.requests()[0].stream());

    // On the wire: SSE, ending with [DONE].
    let got = ask(
        &session,
        &json!({"messages": [{"role": "user", "content": "hi"}], "stream": true}),
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.headers["content-type"], "text/event-stream");
    assert_eq!(got.headers["x-pitcrew-model"], "m1");
    assert!(got.body.ends_with("data: [DONE]\n\n"), "{}", got.body);
}

#[tokio::test]
async fn a_stream_never_carries_text_of_an_abandoned_call() {
    let provider = Provider::start();
    // m1 starts streaming, then its connection breaks; the router rotates to m2.
    let chunk = |content: &str| {
        json!({"id": "x", "object": "chat.completion.chunk", "model": "m1",
               "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": null}]})
    };
    provider.push(
        "m1",
        Reply::sse(vec![
            SseEvent::Data(chunk("ABANDONED half ")),
            SseEvent::Data(chunk("of a reply ")),
            SseEvent::Disconnect,
        ]),
    );
    let gateway = gateway(&provider).await;
    let session = gateway.open(grant());
    let got = ask(
        &session,
        &json!({"messages": [{"role": "user", "content": "hi"}], "stream": true}),
    )
    .await;
    assert_eq!(got.status, 200, "{}", got.body);
    assert!(!got.body.contains("ABANDONED"), "{}", got.body);
    assert!(got.body.contains("answer from m2"), "{}", got.body);
    assert_eq!(got.headers["x-pitcrew-model"], "m2");
    let kinds: Vec<_> = session
        .report()
        .calls
        .iter()
        .map(|c| c.error_kind)
        .collect();
    assert_eq!(kinds, [Some(ErrorKind::Truncated), None]);
}

#[tokio::test]
async fn a_429_rotates_to_another_model_and_the_agent_sees_one_200() {
    let provider = Provider::start();
    provider.push(
        "m1",
        Reply::status(
            429,
            json!({"error": {"message": "rate limited", "code": 429}}),
        )
        .header("retry-after", "20"),
    );
    let gateway = gateway(&provider).await;
    let mut grant = grant();
    grant.requirements.prefer = Some("m1".into());
    let session = gateway.open(grant);

    let got = ask(&session, &hello()).await;
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(got.json()["model"], "m2");
    assert_eq!(
        got.json()["choices"][0]["message"]["content"],
        "answer from m2"
    );
    let models: Vec<_> = provider
        .requests()
        .iter()
        .map(|r| r.model().map(String::from))
        .collect();
    assert_eq!(models, [Some("m1".into()), Some("m2".into())]);
    let report = session.report();
    assert_eq!(report.requests, 1);
    assert_eq!(report.models, ["m2"]);
    let kinds: Vec<_> = report.calls.iter().map(|c| c.error_kind).collect();
    assert_eq!(kinds, [Some(ErrorKind::RateLimit), None]);
}

#[tokio::test]
async fn wrong_missing_and_revoked_tokens_get_401_and_reach_no_provider() {
    let provider = Provider::start();
    let gateway = gateway(&provider).await;
    let session = gateway.open(grant());
    let other = gateway.open(grant());
    let base = gateway.base_url();
    assert_ne!(session.token().expose(), other.token().expose());
    let token = session.token().expose().to_string();
    assert!(
        token.starts_with("pcgw-") && token.len() >= 5 + 32,
        "{token}"
    );

    let mut near_miss = token.clone();
    near_miss.pop();
    near_miss.push('x');
    for wrong in [
        None,
        Some("sk-something-else"),
        Some(near_miss.as_str()),
        Some(""),
    ] {
        let got = chat(&base, wrong, &hello()).await;
        assert_eq!(got.status, 401, "{wrong:?}: {}", got.body);
        assert_eq!(got.json()["error"]["type"], "authentication_error");
        assert_eq!(got.error_code(), "invalid_api_key");
    }
    let models = send(http().get(format!("{base}/models"))).await;
    assert_eq!(models.status, 401);
    assert_eq!(chat_requests(&provider), 0);

    // The right token works, as a bearer or as `api-key`.
    let got = send(
        http()
            .post(format!("{base}/chat/completions"))
            .header("api-key", &token)
            .json(&hello()),
    )
    .await;
    assert_eq!(got.status, 200, "{}", got.body);
    let models = send(http().get(format!("{base}/models")).bearer_auth(&token)).await;
    assert_eq!(models.status, 200);
    assert_eq!(models.json()["data"][0]["id"], MODEL);
    assert_eq!(models.json()["object"], "list");

    // Revoked, and dropped: 401, and the provider hears nothing more.
    session.revoke();
    let got = chat(&base, Some(&token), &hello()).await;
    assert_eq!(got.status, 401, "{}", got.body);
    let other_token = other.token().expose().to_string();
    assert_eq!(chat(&base, Some(&other_token), &hello()).await.status, 200);
    drop(other);
    assert_eq!(chat(&base, Some(&other_token), &hello()).await.status, 401);
    assert_eq!(chat_requests(&provider), 2);
    // Unauthenticated requests are no session's: nothing counted.
    assert_eq!(session.report().requests, 1);
}

#[tokio::test]
async fn a_spent_budget_refuses_with_402_and_reaches_no_provider() {
    let provider = Provider::start();
    provider.push(
        "paid",
        Reply::content("costly").with_usage(10, 5, Some(0.25)),
    );
    let router = provider.router(&["paid"], &paid_model("paid", 0.9), settings());
    let gateway = Gateway::start(router).await.unwrap();
    let budget = Budget::new(Some(0.2));
    let session = gateway.open(Grant {
        budget: budget.clone(),
        max_calls: Some(2),
        ..grant()
    });

    // The first call is admitted while money is left, and spends it all.
    assert_eq!(ask(&session, &hello()).await.status, 200);
    assert!(
        (budget.spent_usd() - 0.25).abs() < 1e-9,
        "shared with the caller"
    );
    // Refused before the router: each refusal is a 402 and uses up none of the calls (the
    // second would otherwise meet the call limit).
    for _ in 0..2 {
        let got = ask(&session, &hello()).await;
        assert_eq!(got.status, 402, "{}", got.body);
        assert_eq!(got.json()["error"]["type"], "insufficient_quota");
        assert!(
            got.error_message()
                .contains("task's budget of $0.2000 is spent"),
            "{}",
            got.body
        );
    }
    assert_eq!(chat_requests(&provider), 1);
    let report = session.report();
    assert_eq!(report.requests, 3);
    assert_eq!(report.refused.len(), 2);
    assert!(
        report.refused[0].starts_with("402 "),
        "{:?}",
        report.refused
    );
}

#[tokio::test]
async fn the_routers_own_budget_refusal_is_a_402_too() {
    let provider = Provider::start();
    // The run's budget (the router's) is spent before the task's is touched.
    let settings = RouterSettings {
        run_budget_usd: Some(0.0),
        ..settings()
    };
    let router = provider.router(&["paid"], &paid_model("paid", 0.9), settings);
    let gateway = Gateway::start(router).await.unwrap();
    let session = gateway.open(grant());
    let got = ask(&session, &hello()).await;
    assert_eq!(got.status, 402, "{}", got.body);
    assert_eq!(got.error_code(), "insufficient_quota");
    assert!(got.error_message().contains("run's budget"), "{}", got.body);
    assert_eq!(chat_requests(&provider), 0);
}

#[tokio::test]
async fn the_call_limit_refuses_with_403_not_429() {
    let provider = Provider::start();
    let gateway = gateway(&provider).await;
    let session = gateway.open(Grant {
        max_calls: Some(2),
        ..grant()
    });
    // A request refused before the router does not use up a call.
    let tools =
        json!({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]});
    assert_eq!(ask(&session, &tools).await.status, 400);
    assert_eq!(ask(&session, &hello()).await.status, 200);
    assert_eq!(ask(&session, &hello()).await.status, 200);
    let got = ask(&session, &hello()).await;
    assert_eq!(got.status, 403, "{}", got.body);
    assert_eq!(got.error_code(), "call_limit");
    assert!(
        got.error_message().contains("limit of 2 model calls"),
        "{}",
        got.body
    );
    assert_eq!(chat_requests(&provider), 2);
}

#[tokio::test]
async fn a_passed_deadline_refuses_with_403() {
    let provider = Provider::start();
    let gateway = gateway(&provider).await;
    let session = gateway.open(Grant {
        deadline: Some(Instant::now()),
        ..grant()
    });
    let got = ask(&session, &hello()).await;
    assert_eq!(got.status, 403, "{}", got.body);
    assert_eq!(got.error_code(), "deadline_passed");
    assert_eq!(chat_requests(&provider), 0);
}

/// OpenHands-style tools: a terminal and a finish.
fn agent_tools() -> Value {
    json!([
        {"type": "function", "function": {
            "name": "terminal",
            "description": "Run a bash command in the sandbox.",
            "parameters": {"type": "object", "properties": {
                "command": {"type": "string", "description": "The command to run."},
                "timeout": {"type": "integer", "description": "Seconds to wait."},
            }, "required": ["command"]},
        }},
        {"type": "function", "function": {
            "name": "finish",
            "description": "Say the task is done.",
            "parameters": {"type": "object", "properties": {
                "message": {"type": "string"},
            }, "required": ["message"]},
        }},
    ])
}

fn with_tools(stream: bool) -> Value {
    json!({
        "model": "openai/pitcrew",
        "messages": [{"role": "system", "content": "You are a coding agent."},
                     {"role": "user", "content": "list the files"}],
        "tools": agent_tools(),
        "tool_choice": "auto",
        "parallel_tool_calls": false,
        "stream": stream,
    })
}

const CALLING_REPLY: &str = "I will list them.\n<function=terminal>\n\
    <parameter=command>ls -la\n</parameter>\n<parameter=timeout>30</parameter>\n</function>";

/// The provider got plain text chat: no tool fields, every content a string, and the system
/// message describing the functions and the calling convention.
fn assert_text_only_with_functions_described(sent: &RecordedRequest) {
    for field in ["tools", "tool_choice", "functions", "parallel_tool_calls"] {
        assert!(
            sent.body.get(field).is_none(),
            "{field} sent: {}",
            sent.body
        );
    }
    let messages = sent.body["messages"].as_array().unwrap();
    for message in messages {
        assert!(message["content"].is_string(), "{message}");
        assert!(message.get("tool_calls").is_none(), "{message}");
        assert!(
            ["system", "user", "assistant"].contains(&message["role"].as_str().unwrap()),
            "{message}"
        );
    }
    assert_eq!(messages[0]["role"], "system");
    let system = messages[0]["content"].as_str().unwrap();
    assert!(
        system.starts_with("You are a coding agent.\n\n"),
        "{system}"
    );
    for described in [
        "<function=FUNCTION_NAME>\n<parameter=PARAMETER_NAME>value</parameter>",
        "---- function terminal ----\nDescription: Run a bash command in the sandbox.\n",
        "- command (string, required): The command to run.\n",
        "- timeout (integer, optional): Seconds to wait.\n",
        "---- function finish ----",
    ] {
        assert!(
            system.contains(described),
            "{described:?} not in:\n{system}"
        );
    }
}

#[tokio::test]
async fn a_request_with_tools_gets_tool_calls_back_from_a_text_only_model() {
    let provider = Provider::start();
    provider.push("m1", Reply::content(CALLING_REPLY).with_usage(40, 12, None));
    let gateway = gateway(&provider).await;
    let session = gateway.open(grant());

    let got = ask(&session, &with_tools(false)).await;
    assert_eq!(got.status, 200, "{}", got.body);
    let reply = got.json();
    let choice = &reply["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    let message = &choice["message"];
    assert_eq!(message["role"], "assistant");
    assert_eq!(message["content"], "I will list them.");
    let calls = message["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1);
    assert!(
        calls[0]["id"].as_str().unwrap().starts_with("call_"),
        "{}",
        calls[0]
    );
    assert_eq!(calls[0]["type"], "function");
    assert_eq!(calls[0]["function"]["name"], "terminal");
    let arguments: Value =
        serde_json::from_str(calls[0]["function"]["arguments"].as_str().unwrap()).unwrap();
    // The integer by its schema; one trailing newline of the string trimmed.
    assert_eq!(arguments, json!({"command": "ls -la", "timeout": 30}));
    assert_eq!(reply["usage"]["completion_tokens"], 12);

    assert_eq!(chat_requests(&provider), 1);
    assert_text_only_with_functions_described(&provider.requests()[0]);
    assert_eq!(session.report().models, ["m1"]);
}

/// The `data:` payloads of a server-sent-events body, `[DONE]` left out.
fn sse_chunks(body: &str) -> Vec<Value> {
    assert!(body.ends_with("data: [DONE]\n\n"), "{body}");
    body.split("\n\n")
        .filter_map(|event| event.strip_prefix("data: "))
        .filter(|data| *data != "[DONE]")
        .map(|data| serde_json::from_str(data).unwrap())
        .collect()
}

#[tokio::test]
async fn a_streamed_tool_call_comes_whole_in_one_delta() {
    let provider = Provider::start();
    provider.push("m1", Reply::content(CALLING_REPLY).with_usage(40, 12, None));
    // Only a call, no words before it: the delta has no content.
    provider.push(
        "m1",
        Reply::content("<function=finish>\n<parameter=message>All done.</parameter>\n</function>"),
    );
    let gateway = gateway(&provider).await;
    let session = gateway.open(grant());

    let got = ask(&session, &with_tools(true)).await;
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(got.headers["content-type"], "text/event-stream");
    let chunks = sse_chunks(&got.body);
    assert_eq!(chunks.len(), 2, "{}", got.body);
    let first = &chunks[0]["choices"][0];
    assert_eq!(first["finish_reason"], Value::Null);
    let delta = &first["delta"];
    assert_eq!(delta["role"], "assistant");
    assert_eq!(delta["content"], "I will list them.");
    let call = &delta["tool_calls"][0];
    assert_eq!(call["index"], 0);
    assert!(call["id"].as_str().unwrap().starts_with("call_"), "{call}");
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "terminal");
    let arguments: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(arguments, json!({"command": "ls -la", "timeout": 30}));
    let last = &chunks[1];
    assert_eq!(last["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(last["choices"][0]["delta"], json!({}));
    assert_eq!(last["usage"]["completion_tokens"], 12);
    assert_text_only_with_functions_described(&provider.requests()[0]);

    let got = ask(&session, &with_tools(true)).await;
    let chunks = sse_chunks(&got.body);
    let delta = &chunks[0]["choices"][0]["delta"];
    assert!(delta.get("content").is_none(), "{delta}");
    assert_eq!(delta["tool_calls"][0]["function"]["name"], "finish");
    assert_eq!(
        delta["tool_calls"][0]["function"]["arguments"],
        json!({"message": "All done."}).to_string()
    );
    assert_eq!(chunks[1]["choices"][0]["finish_reason"], "tool_calls");
}

#[tokio::test]
async fn a_follow_up_reaches_the_provider_with_its_calls_and_results_as_text() {
    let provider = Provider::start();
    provider.push("m1", Reply::content("The directory holds a.py."));
    // A function not offered: the text goes back as it is, for the agent to show the model.
    let unknown = "<function=browser>\n<parameter=url>http://x</parameter>\n</function>";
    provider.push("m1", Reply::content(unknown));
    let gateway = gateway(&provider).await;
    let session = gateway.open(grant());

    let mut body = with_tools(false);
    let history = body["messages"].as_array_mut().unwrap();
    history.push(
        json!({"role": "assistant", "content": "I will list them.", "tool_calls": [
        {"id": "call_abc", "type": "function",
         "function": {"name": "terminal", "arguments": "{\"command\": \"ls -la\"}"}}]}),
    );
    history.push(
        json!({"role": "tool", "tool_call_id": "call_abc", "name": "terminal",
                        "content": "a.py\n"}),
    );
    let got = ask(&session, &body).await;
    assert_eq!(got.status, 200, "{}", got.body);
    let choice = &got.json()["choices"][0];
    assert_eq!(choice["message"]["content"], "The directory holds a.py.");
    assert!(choice["message"].get("tool_calls").is_none(), "{choice}");
    assert_eq!(choice["finish_reason"], "stop");

    let sent = &provider.requests()[0];
    assert_text_only_with_functions_described(sent);
    let messages = sent.body["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 4, "{}", sent.body);
    assert_eq!(
        messages[1],
        json!({"role": "user", "content": "list the files"})
    );
    assert_eq!(
        messages[2],
        json!({"role": "assistant", "content": "I will list them.\n\n<function=terminal>\n\
            <parameter=command>ls -la</parameter>\n</function>"})
    );
    assert_eq!(
        messages[3],
        json!({"role": "user", "content": "EXECUTION RESULT of [terminal]:\na.py\n"})
    );

    let got = ask(&session, &body).await;
    assert_eq!(got.status, 200, "{}", got.body);
    let choice = &got.json()["choices"][0];
    assert_eq!(choice["message"]["content"], unknown);
    assert!(choice["message"].get("tool_calls").is_none(), "{choice}");
    assert_eq!(choice["finish_reason"], "stop");
}

#[tokio::test]
async fn a_call_repeating_a_secret_reaches_the_agent_redacted() {
    pitcrew_core::register_secret(PROVIDER_KEY);
    let provider = Provider::start();
    let gateway = gateway(&provider).await;
    let session = gateway.open(grant());
    let token = session.token().expose().to_string();
    provider.push(
        "m1",
        Reply::content(&format!(
            "<function=terminal>\n<parameter=command>echo {PROVIDER_KEY} {token}</parameter>\n</function>"
        )),
    );
    let got = ask(&session, &with_tools(false)).await;
    assert_eq!(got.status, 200, "{}", got.body);
    assert!(
        !got.shows(PROVIDER_KEY) && !got.shows(&token),
        "{}",
        got.body
    );
    let call = &got.json()["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(
        call["function"]["arguments"],
        json!({"command": "echo [REDACTED] [REDACTED]"}).to_string()
    );
}

#[tokio::test]
async fn malformed_tools_are_refused_with_400_and_reach_no_provider() {
    let provider = Provider::start();
    let gateway = gateway(&provider).await;
    let session = gateway.open(grant());
    let user = json!({"role": "user", "content": "fix it"});
    let requests = [
        (
            json!({"messages": [user], "tools": [{"type": "function"}]}),
            "tools[0]",
        ),
        (
            json!({"messages": [user], "tools": [{"type": "web_search"}]}),
            "tools[0]",
        ),
        (
            json!({"messages": [user], "tools": agent_tools(),
                   "tool_choice": {"type": "function", "function": {"name": "browser"}}}),
            "tool_choice",
        ),
        (
            json!({"messages": [user, {"role": "assistant", "content": null,
                "tool_calls": [{"id": "c1", "type": "function", "function": {"arguments": "{}"}}]}]}),
            "messages[1]",
        ),
    ];
    for (body, param) in &requests {
        let got = ask(&session, body).await;
        assert_eq!(got.status, 400, "{}", got.body);
        assert_eq!(got.json()["error"]["type"], "invalid_request_error");
        assert_eq!(got.json()["error"]["param"], *param, "{}", got.body);
    }
    assert_eq!(chat_requests(&provider), 0);
    let report = session.report();
    assert_eq!((report.requests, report.refused.len()), (4, 4));
    assert!(report.calls.is_empty());
}

#[tokio::test]
async fn content_parts_are_joined_and_other_parts_refused_by_type() {
    let provider = Provider::start();
    let gateway = gateway(&provider).await;
    let session = gateway.open(grant());
    let got = ask(
        &session,
        &json!({"messages": [
            {"role": "developer", "content": [{"type": "text", "text": "rules", "cache_control": {"type": "ephemeral"}}]},
            {"role": "user", "content": [{"type": "text", "text": "part one"}, {"type": "text", "text": "part two"}]},
        ], "stop": ["\nObservation:"]}),
    )
    .await;
    assert_eq!(got.status, 200, "{}", got.body);
    let sent = &provider.requests()[0];
    assert_eq!(
        sent.body["messages"],
        json!([{"role": "system", "content": "rules"}, {"role": "user", "content": "part one\npart two"}])
    );
    assert!(sent.body.get("stop").is_none(), "stop is not relayed");

    let image = json!({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "see"}, {"type": "image_url", "image_url": {"url": "data:,"}}]}]});
    let got = ask(&session, &image).await;
    assert_eq!(got.status, 400);
    assert!(got.error_message().contains("`image_url`"), "{}", got.body);
    assert_eq!(got.json()["error"]["param"], "messages[0].content");
    assert_eq!(chat_requests(&provider), 1);
}

#[tokio::test]
async fn malformed_and_oversized_bodies_are_refused() {
    let provider = Provider::start();
    let gateway = gateway(&provider).await;
    let session = gateway.open(grant());
    let url = format!("{}/chat/completions", session.base_url());
    let token = session.token().expose();

    let got = send(http().post(&url).bearer_auth(token).body("{not json")).await;
    assert_eq!(got.status, 400, "{}", got.body);
    assert!(
        got.error_message().contains("not valid JSON"),
        "{}",
        got.body
    );

    let huge = "x".repeat(BODY_LIMIT + 1);
    let body = json!({"messages": [{"role": "user", "content": huge}]});
    let got = send(http().post(&url).bearer_auth(token).json(&body)).await;
    assert_eq!(got.status, 413, "{}", got.body);
    assert_eq!(got.error_code(), "body_too_large");

    // Under the gateway's limit (and over axum's default of 2 MiB), a body is read: this
    // one is a prompt too long for any model.
    let big = "word ".repeat(3 * 1024 * 1024 / 5);
    let body = json!({"messages": [{"role": "user", "content": big}]});
    let got = send(http().post(&url).bearer_auth(token).json(&body)).await;
    assert_eq!(got.status, 400, "{}", got.body);
    assert_eq!(got.error_code(), "context_length_exceeded");

    let got = send(
        http()
            .get(format!("{}/embeddings", session.base_url()))
            .bearer_auth(token),
    )
    .await;
    assert_eq!(got.status, 404);
    assert_eq!(chat_requests(&provider), 0);
    assert_eq!(session.report().refused.len(), 3);
}

#[tokio::test]
async fn a_prompt_no_model_can_hold_is_context_length_exceeded() {
    let provider = Provider::start();
    let small = "[[models]]\nprovider = \"test\"\nid = \"small\"\ncontext = 4000\nfree = true\n";
    let router = provider.router(&["small"], small, settings());
    let gateway = Gateway::start(router).await.unwrap();
    let session = gateway.open(grant());
    let long = "word ".repeat(20_000);
    let got = ask(
        &session,
        &json!({"messages": [{"role": "user", "content": long}]}),
    )
    .await;
    assert_eq!(got.status, 400, "{}", got.body);
    assert_eq!(got.error_code(), "context_length_exceeded");
    assert_eq!(chat_requests(&provider), 0);
}

#[tokio::test]
async fn no_model_free_before_the_deadline_is_503_with_retry_after() {
    let provider = Provider::start();
    provider.push(
        "m1",
        Reply::status(
            429,
            json!({"error": {"message": "rate limited", "code": 429}}),
        )
        .header("retry-after", "30"),
    );
    let router = provider.router(&["m1"], &free_model("m1", 0.9), settings());
    let gateway = Gateway::start(router).await.unwrap();
    let session = gateway.open(Grant {
        deadline: Some(Instant::now() + Duration::from_secs(3)),
        ..grant()
    });
    let got = ask(&session, &hello()).await;
    assert_eq!(got.status, 503, "{}", got.body);
    let retry_after: u64 = got.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((20..=31).contains(&retry_after), "{retry_after}");
    let report = session.report();
    assert_eq!(report.calls.len(), 1);
    assert_eq!(report.refused.len(), 1);
    assert!(
        report.refused[0].starts_with("503 "),
        "{:?}",
        report.refused
    );
}

#[tokio::test]
async fn pitcrews_own_provider_failures_are_502() {
    let provider = Provider::start();
    provider.push(
        "m1",
        Reply::status(
            401,
            json!({"error": {"message": "invalid api key", "code": 401}}),
        ),
    );
    let router = provider.router(&["m1"], &free_model("m1", 0.9), settings());
    let gateway = Gateway::start(router).await.unwrap();
    let session = gateway.open(grant());
    let got = ask(&session, &hello()).await;
    assert_eq!(got.status, 502, "{}", got.body);
    assert_eq!(got.error_code(), "auth");
    assert_eq!(got.json()["error"]["type"], "upstream_error");
}

#[tokio::test]
async fn the_reports_usage_and_cost_are_the_sums_of_its_calls() {
    let provider = Provider::start();
    // p1 refuses once (charged its prompt at the registry price), p2 answers twice.
    provider.push(
        "p1",
        Reply::status(429, json!({"error": {"message": "busy", "code": 429}}))
            .header("retry-after", "20"),
    );
    provider.push("p2", Reply::content("one").with_usage(100, 20, Some(0.003)));
    provider.push("p2", Reply::content("two").with_usage(50, 10, None));
    let models = paid_model("p1", 0.9) + &paid_model("p2", 0.8);
    let router = provider.router(&["p1", "p2"], &models, settings());
    let gateway = Gateway::start(router).await.unwrap();
    let budget = Budget::new(Some(1.0));
    let session = gateway.open(Grant {
        budget: budget.clone(),
        ..grant()
    });

    let first = ask(&session, &hello()).await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(ask(&session, &hello()).await.status, 200);
    let tools =
        json!({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]});
    assert_eq!(ask(&session, &tools).await.status, 400);

    let report = session.report();
    assert_eq!(report.requests, 3);
    assert_eq!(report.models, ["p2", "p2"]);
    assert_eq!(report.calls.len(), 3);
    assert_eq!(report.calls[0].error_kind, Some(ErrorKind::RateLimit));
    assert!(
        report.calls[0].cost_usd > 0.0,
        "a failed call is charged too"
    );
    let tokens_in: u64 = report.calls.iter().map(|c| c.usage.tokens_in).sum();
    let tokens_out: u64 = report.calls.iter().map(|c| c.usage.tokens_out).sum();
    let cost: f64 = report.calls.iter().map(|c| c.cost_usd).sum();
    assert_eq!(
        (report.usage.tokens_in, report.usage.tokens_out),
        (tokens_in, tokens_out)
    );
    let reported = report.usage.cost_usd.unwrap();
    assert!((reported - cost).abs() < 1e-12, "{reported} != {cost}");
    assert!(
        (reported - budget.spent_usd()).abs() < 1e-12,
        "the task's budget was charged"
    );
    assert_eq!(report.refused.len(), 1);
    // The agent is told what its request cost, the failed attempt included.
    let charged = first.json()["usage"]["cost"].as_f64().unwrap();
    assert!(
        (charged - (report.calls[0].cost_usd + 0.003)).abs() < 1e-12,
        "{charged}"
    );
    // The report serializes (for the attempt's details).
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["calls"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn next_call_wakes_when_a_request_finishes() {
    let provider = Provider::start();
    let gateway = gateway(&provider).await;
    let session = gateway.open(grant());
    let body = hello();
    // Polled first by `join!`, so it is waiting before the request is sent.
    let waiting = session.next_call();
    let asking = ask(&session, &body);
    let (report, got) = tokio::join!(waiting, asking);
    assert_eq!(got.status, 200);
    assert_eq!(report.models, ["m1"]);
    assert_eq!(report.requests, 1);
}

#[tokio::test]
async fn a_call_the_agent_hung_up_on_is_still_recorded_and_charged() {
    let provider = Provider::start();
    let gate = Gate::new();
    provider.push(
        "m1",
        Reply::content("too late")
            .with_usage(5, 5, Some(0.01))
            .hold(&gate),
    );
    let gateway = gateway(&provider).await;
    let budget = Budget::new(Some(1.0));
    let session = gateway.open(Grant {
        budget: budget.clone(),
        ..grant()
    });
    let impatient = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let url = format!("{}/chat/completions", session.base_url());
    let hung_up = impatient
        .post(&url)
        .bearer_auth(session.token().expose())
        .json(&hello())
        .send()
        .await;
    assert!(hung_up.is_err(), "{hung_up:?}");
    drop(impatient);
    let mut updates = session.subscribe();
    gate.open();
    tokio::time::timeout(Duration::from_secs(5), updates.changed())
        .await
        .expect("the call finished and was recorded")
        .unwrap();
    let report = session.report();
    assert_eq!(report.calls.len(), 1);
    assert_eq!(report.usage.cost_usd, Some(0.01));
    assert!((budget.spent_usd() - 0.01).abs() < 1e-12);
}

/// Log lines written while it is the thread's subscriber.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// Current-thread runtime: the gateway's tasks run on this thread, under its subscriber.
#[tokio::test]
async fn the_token_and_the_provider_key_appear_in_no_response_or_log() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    // tracing-core takes a lone registered dispatcher for the only one, and then caches a
    // callsite first reached on another test's thread (which has no subscriber) as never
    // enabled, so that its lines would be missing here. With a second one registered, it
    // asks every dispatcher instead.
    let _second = tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default());
    let _logging = tracing::subscriber::set_default(subscriber);
    // pitcrew registers provider keys from the environment at startup.
    pitcrew_core::register_secret(PROVIDER_KEY);

    let provider = Provider::start();
    let gateway = gateway(&provider).await;
    let session = gateway.open(grant());
    let token = session.token().expose().to_string();
    assert!(!format!("{session:?}").contains(&token));
    // A model that repeats secrets: the agent gets them redacted.
    provider.push(
        "m1",
        Reply::content(&format!("key {PROVIDER_KEY} token {token}")),
    );

    let mut gots = Vec::new();
    gots.push(ask(&session, &hello()).await);
    let mut echoing = hello();
    echoing["model"] = json!(token);
    echoing["messages"][1]["content"] = json!(format!("my token is {token}"));
    gots.push(ask(&session, &echoing).await);
    let mut odd_role = hello();
    odd_role["messages"][0]["role"] = json!(token);
    gots.push(ask(&session, &odd_role).await);
    gots.push(
        ask(
            &session,
            &json!({"messages": [{"role": "user", "content": "x"}], "tools": [1]}),
        )
        .await,
    );
    let mut near_miss = token.clone();
    near_miss.push('0');
    gots.push(chat(&session.base_url(), Some(&near_miss), &hello()).await);

    assert_eq!(
        gots.iter().map(|g| g.status).collect::<Vec<_>>(),
        [200, 200, 400, 400, 401]
    );
    assert!(
        gots[0].body.contains("key [REDACTED] token [REDACTED]"),
        "{}",
        gots[0].body
    );
    for got in &gots {
        assert!(!got.shows(&token), "{got:?}");
        assert!(!got.shows(&token[..24]), "a prefix of the token: {got:?}");
        assert!(!got.shows(PROVIDER_KEY), "{got:?}");
    }
    // The prompt quoting the token reached the provider redacted.
    assert!(!provider.requests()[1].prompt_text().contains(&token));

    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("gateway: answered"),
        "logs were captured: {logs}"
    );
    assert!(logs.contains("without a valid token"), "{logs}");
    assert!(!logs.contains(&token[..24]), "{logs}");
    assert!(!logs.contains(PROVIDER_KEY), "{logs}");
}

#[tokio::test]
async fn shutdown_and_dropping_the_last_handle_stop_the_server() {
    let provider = Provider::start();
    let gateway = gateway(&provider).await;
    let session = gateway.open(grant());
    assert_eq!(ask(&session, &hello()).await.status, 200);
    let copy = gateway.clone();
    copy.shutdown().await;
    copy.shutdown().await;
    let refused = http()
        .post(format!("{}/chat/completions", session.base_url()))
        .json(&hello())
        .send()
        .await;
    assert!(
        refused.is_err(),
        "still serving after shutdown: {refused:?}"
    );

    let other = self::gateway(&provider).await;
    let url = format!("{}/models", other.base_url());
    assert_eq!(send(http().get(&url)).await.status, 401, "serving");
    let clone = other.clone();
    drop(other);
    assert_eq!(send(http().get(&url)).await.status, 401, "one handle left");
    drop(clone);
    let stopped = Instant::now();
    loop {
        // A fresh client each time: no pooled connection kept open.
        if http().get(&url).send().await.is_err() {
            break;
        }
        assert!(stopped.elapsed() < Duration::from_secs(5), "still serving");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
