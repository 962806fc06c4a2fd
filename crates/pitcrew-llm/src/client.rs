//! The HTTP client for `/chat/completions`: one call, one request, never a retry (retries
//! belong to the router alone; stacked retry layers multiply requests). Every call measures
//! its latency and time to first token, and every failure comes back classified. Registered
//! secrets ([`pitcrew_core::redact`]) are removed from every message sent and from every
//! error message; the key itself goes only into the `Authorization` header.

use std::time::{Duration, Instant};

use chrono::Utc;
use futures::StreamExt;
use pitcrew_core::Secret;
use pitcrew_core::{ErrorKind, Usage};
use serde::Serialize;

use crate::error::{LlmError, WaitHints, classify};
use crate::sse::SseReader;
use crate::wire::{Body, Choice, WireError};

/// Where to send a call: a provider's base URL (ending in `/v1` or similar) and its key.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub base_url: String,
    pub api_key: Option<Secret>,
    /// The variable the key came from, named in authentication errors.
    pub api_key_env: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Message {
    pub role: Role,
    pub content: String,
}

impl Message {
    pub fn system(content: impl Into<String>) -> Self {
        Message {
            role: Role::System,
            content: content.into(),
        }
    }

    pub fn user(content: impl Into<String>) -> Self {
        Message {
            role: Role::User,
            content: content.into(),
        }
    }

    pub fn assistant(content: impl Into<String>) -> Self {
        Message {
            role: Role::Assistant,
            content: content.into(),
        }
    }
}

/// One chat-completions call. `model` is the provider's model id, never a preset name.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<Message>,
    pub temperature: f64,
    pub max_tokens: u32,
}

/// A successful reply.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub text: String,
    /// As sent by the provider; unknown values are kept, not rejected.
    pub finish_reason: Option<String>,
    pub usage: Usage,
    /// From sending the request to the end of the reply.
    pub latency: Duration,
    /// From sending the request to the first streamed token (answer or reasoning). Without
    /// streaming the first token arrives with the whole reply, so this equals `latency`.
    pub time_to_first_token: Duration,
}

/// An HTTP client for chat completions. It holds no retry logic: one call, one request.
#[derive(Debug, Clone)]
pub struct ChatClient {
    http: reqwest::Client,
    idle_timeout: Duration,
}

/// How long a stream may go without data before it counts as stalled, unless
/// [`ChatClient::with_idle_timeout`] says otherwise. Reasoning models stream their thinking,
/// so a minute of silence is a stall rather than thought.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

impl ChatClient {
    /// A client whose requests time out after `timeout` (the whole call, streamed or not).
    pub fn new(timeout: Duration) -> Result<Self, LlmError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(10).min(timeout))
            // Retries belong to the router alone; stacked retry layers multiply requests.
            .retry(reqwest::retry::never())
            .user_agent(concat!("pitcrew/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                LlmError::new(ErrorKind::Config, format!("cannot build HTTP client: {e}"))
            })?;
        Ok(ChatClient {
            http,
            idle_timeout: DEFAULT_IDLE_TIMEOUT.min(timeout),
        })
    }

    /// Sets how long a streamed call may wait for its response headers, or go without data
    /// between events, before it is abandoned as stalled (comment lines do not count as
    /// data: a keep-alive is not progress).
    pub fn with_idle_timeout(mut self, idle: Duration) -> Self {
        self.idle_timeout = idle;
        self
    }

    /// Sends `request` and reads the whole reply in one body.
    pub async fn complete(
        &self,
        endpoint: &Endpoint,
        request: &ChatRequest,
    ) -> Result<Completion, LlmError> {
        let started = Instant::now();
        let response = self.send(endpoint, request, false).await?;
        let status = response.status().as_u16();
        let hints = WaitHints::from_headers(response.headers(), Utc::now());
        let text = response
            .text()
            .await
            .map_err(|e| transport_error(&e, &url(endpoint)))?;
        if !(200..300).contains(&status) {
            return Err(http_error(status, &text, hints, endpoint, request));
        }
        let latency = started.elapsed();
        let body = parse_body(status, &text)?;
        finish_body(body, hints, endpoint, request, latency)
    }

    /// Sends `request` with `"stream": true` and reads the server-sent events, passing each
    /// piece of answer text to `on_delta` as it arrives. A stream that ends without `[DONE]`
    /// or a finish reason, or goes silent for longer than the idle timeout, is
    /// [`ErrorKind::Truncated`]; an error sent inside the stream is classified like an HTTP
    /// error. A server that ignores `stream` and answers with plain JSON is read as such.
    pub async fn stream(
        &self,
        endpoint: &Endpoint,
        request: &ChatRequest,
        on_delta: &mut (dyn FnMut(&str) + Send),
    ) -> Result<Completion, LlmError> {
        let started = Instant::now();
        let response = tokio::time::timeout(self.idle_timeout, self.send(endpoint, request, true))
            .await
            .map_err(|_| {
                LlmError::new(
                    ErrorKind::Timeout,
                    format!(
                        "{} sent no response within {:.0?} (idle timeout)",
                        url(endpoint),
                        self.idle_timeout
                    ),
                )
            })??;
        let status = response.status().as_u16();
        let hints = WaitHints::from_headers(response.headers(), Utc::now());
        let is_sse = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if !(200..300).contains(&status) || !is_sse {
            let text = response
                .text()
                .await
                .map_err(|e| transport_error(&e, &url(endpoint)))?;
            if !(200..300).contains(&status) {
                return Err(http_error(status, &text, hints, endpoint, request));
            }
            let body = parse_body(status, &text)?;
            let completion = finish_body(body, hints, endpoint, request, started.elapsed())?;
            on_delta(&completion.text);
            return Ok(completion);
        }

        let mut state = StreamState::default();
        let mut reader = SseReader::default();
        let mut body = response.bytes_stream();
        let mut data_deadline = tokio::time::Instant::now() + self.idle_timeout;
        while !state.done {
            let next = match tokio::time::timeout_at(data_deadline, body.next()).await {
                Ok(next) => next,
                // A stream that stalls after its finish reason has delivered everything but
                // the optional usage chunk and [DONE].
                Err(_) if state.finish_reason.is_some() => break,
                Err(_) => {
                    return Err(state.cut(&format!(
                        "the stream stalled: no data for {:.0?}",
                        self.idle_timeout
                    )));
                }
            };
            let payloads = match next {
                Some(Ok(bytes)) => reader.push(&bytes),
                Some(Err(e)) if e.is_timeout() => {
                    return Err(LlmError::new(
                        ErrorKind::Timeout,
                        format!(
                            "request to {} timed out after {} characters of reply",
                            url(endpoint),
                            state.text.len()
                        ),
                    ));
                }
                Some(Err(e)) => return Err(state.cut(&format!("the connection broke: {e}"))),
                None => {
                    if let Some(payload) = reader.finish() {
                        state.event(&payload, started, endpoint, request, on_delta)?;
                    }
                    break;
                }
            };
            for payload in payloads {
                if state.event(&payload, started, endpoint, request, on_delta)? {
                    data_deadline = tokio::time::Instant::now() + self.idle_timeout;
                }
            }
        }
        let latency = started.elapsed();
        let finish_reason = state.finish_reason.clone();
        if !state.done && finish_reason.is_none() {
            return Err(state.cut("the stream ended without [DONE] or a finish reason"));
        }
        check_finish(finish_reason.as_deref(), state.usage.tokens_out)?;
        Ok(Completion {
            time_to_first_token: state.first_token.unwrap_or(latency),
            text: state.text,
            finish_reason,
            usage: state.usage,
            latency,
        })
    }

    /// Fetches `{base_url}/models` (the provider's model list) as raw JSON text.
    pub async fn models_json(&self, endpoint: &Endpoint) -> Result<String, LlmError> {
        let url = format!("{}/models", endpoint.base_url.trim_end_matches('/'));
        let mut http = self.http.get(&url);
        if let Some(key) = &endpoint.api_key {
            http = http.bearer_auth(key.expose());
        }
        let response = http.send().await.map_err(|e| transport_error(&e, &url))?;
        let status = response.status().as_u16();
        let hints = WaitHints::from_headers(response.headers(), Utc::now());
        let text = response
            .text()
            .await
            .map_err(|e| transport_error(&e, &url))?;
        if !(200..300).contains(&status) {
            return Err(classify(
                status,
                &snippet(&text),
                hints,
                &endpoint.api_key_env,
                "(model list)",
            ));
        }
        Ok(text)
    }

    async fn send(
        &self,
        endpoint: &Endpoint,
        request: &ChatRequest,
        stream: bool,
    ) -> Result<reqwest::Response, LlmError> {
        let url = url(endpoint);
        let mut body = serde_json::to_value(request).expect("request serializes");
        // The one place a prompt leaves: no registered secret goes with it, whatever the
        // messages quote (findings, command output, an earlier reply).
        if let Some(messages) = body["messages"].as_array_mut() {
            for message in messages {
                pitcrew_core::redact_json(&mut message["content"]);
            }
        }
        body["stream"] = serde_json::Value::Bool(stream);
        if stream {
            // Without this OpenAI-style servers send no usage in streams.
            body["stream_options"] = serde_json::json!({"include_usage": true});
        }
        let mut http = self.http.post(&url).json(&body);
        if let Some(key) = &endpoint.api_key {
            http = http.bearer_auth(key.expose());
        }
        http.send().await.map_err(|e| transport_error(&e, &url))
    }
}

/// What a stream has delivered so far.
#[derive(Debug, Default)]
struct StreamState {
    text: String,
    finish_reason: Option<String>,
    usage: Usage,
    first_token: Option<Duration>,
    done: bool,
}

impl StreamState {
    /// Handles one `data:` payload; returns whether it was data that counts as progress.
    fn event(
        &mut self,
        payload: &str,
        started: Instant,
        endpoint: &Endpoint,
        request: &ChatRequest,
        on_delta: &mut (dyn FnMut(&str) + Send),
    ) -> Result<bool, LlmError> {
        let payload = payload.trim();
        if payload == "[DONE]" {
            self.done = true;
            return Ok(true);
        }
        let Ok(chunk) = serde_json::from_str::<Body>(payload) else {
            tracing::debug!(payload = %snippet(payload), "skipping a stream line that is not a JSON chunk");
            return Ok(false);
        };
        let choice = chunk.choices.into_iter().next().unwrap_or_default();
        if let Some(error) = chunk.error.as_ref().or(choice.error.as_ref()) {
            return Err(self.stream_error(error, endpoint, request));
        }
        if let Some(usage) = chunk.usage {
            self.usage = usage_of(&usage);
        }
        if let Some(reason) = choice.finish() {
            self.finish_reason = Some(reason.to_string());
        }
        let Choice { delta, message, .. } = choice;
        if let Some(delta) = delta.or(message) {
            let content = delta.content.as_deref().unwrap_or_default();
            if self.first_token.is_none() && (!content.is_empty() || delta.has_reasoning()) {
                self.first_token = Some(started.elapsed());
            }
            if !content.is_empty() {
                self.text.push_str(content);
                on_delta(content);
            }
        }
        Ok(true)
    }

    fn stream_error(
        &self,
        error: &WireError,
        endpoint: &Endpoint,
        request: &ChatRequest,
    ) -> LlmError {
        let hints = error
            .headers()
            .map(|h| WaitHints::from_json(h, Utc::now()))
            .unwrap_or_default();
        let mut e = classify(
            error.status().unwrap_or(502),
            &error.detail(),
            hints,
            &endpoint.api_key_env,
            &request.model,
        );
        e.message = format!(
            "{} (sent inside the stream after {} characters)",
            e.message,
            self.text.len()
        );
        e
    }

    fn cut(&self, why: &str) -> LlmError {
        LlmError::new(
            ErrorKind::Truncated,
            format!(
                "{why} after {} characters of reply; the reply is incomplete",
                self.text.len()
            ),
        )
    }
}

fn url(endpoint: &Endpoint) -> String {
    format!(
        "{}/chat/completions",
        endpoint.base_url.trim_end_matches('/')
    )
}

fn usage_of(usage: &crate::wire::WireUsage) -> Usage {
    Usage {
        tokens_in: usage.prompt_tokens.unwrap_or(0),
        tokens_out: usage.completion_tokens.unwrap_or(0),
        cost_usd: usage.cost,
    }
}

fn http_error(
    status: u16,
    text: &str,
    hints: WaitHints,
    endpoint: &Endpoint,
    request: &ChatRequest,
) -> LlmError {
    let error = serde_json::from_str::<Body>(text)
        .ok()
        .and_then(|b| b.error);
    let detail = error
        .as_ref()
        .map(WireError::detail)
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| snippet(text));
    let hints = error
        .as_ref()
        .and_then(WireError::headers)
        .map_or(hints, |h| hints.or(WaitHints::from_json(h, Utc::now())));
    classify(
        status,
        &detail,
        hints,
        &endpoint.api_key_env,
        &request.model,
    )
}

fn parse_body(status: u16, text: &str) -> Result<Body, LlmError> {
    serde_json::from_str(text).map_err(|_| {
        LlmError::new(
            ErrorKind::ServerError,
            format!(
                "HTTP {status} with a body that is not chat-completions JSON: {}",
                snippet(text)
            ),
        )
    })
}

/// Turns a parsed non-streamed body into a completion, or the error it reports.
fn finish_body(
    body: Body,
    hints: WaitHints,
    endpoint: &Endpoint,
    request: &ChatRequest,
    latency: Duration,
) -> Result<Completion, LlmError> {
    let choice = body.choices.into_iter().next().unwrap_or_default();
    // Some providers report failures inside a 200 answer.
    if let Some(error) = body.error.as_ref().or(choice.error.as_ref()) {
        let hints = error
            .headers()
            .map_or(hints, |h| hints.or(WaitHints::from_json(h, Utc::now())));
        return Err(classify(
            error.status().unwrap_or(502),
            &error.detail(),
            hints,
            &endpoint.api_key_env,
            &request.model,
        ));
    }
    let usage = body.usage.as_ref().map(usage_of).unwrap_or_default();
    let finish_reason = choice.finish().map(str::to_string);
    check_finish(finish_reason.as_deref(), usage.tokens_out)?;
    let text = choice.message.and_then(|m| m.content).unwrap_or_default();
    Ok(Completion {
        text,
        finish_reason,
        usage,
        latency,
        time_to_first_token: latency,
    })
}

/// The finish reasons that mean the reply is not usable as it stands.
fn check_finish(reason: Option<&str>, tokens_out: u64) -> Result<(), LlmError> {
    match reason {
        Some("error") => Err(LlmError::new(
            ErrorKind::ServerError,
            "the provider ended the reply with finish_reason \"error\"",
        )),
        Some("length") => Err(LlmError::new(
            ErrorKind::Truncated,
            format!(
                "the reply was cut at the token limit ({tokens_out} tokens produced); raise models.max_tokens or narrow the task"
            ),
        )),
        Some("content_filter") => Err(LlmError::new(
            ErrorKind::ContentFilter,
            "the provider's content filter withheld the reply (finish_reason \"content_filter\")",
        )),
        _ => Ok(()),
    }
}

fn transport_error(error: &reqwest::Error, url: &str) -> LlmError {
    if error.is_timeout() {
        LlmError::new(ErrorKind::Timeout, format!("request to {url} timed out"))
    } else if error.is_connect() {
        LlmError::new(
            ErrorKind::Connection,
            format!("cannot connect to {url}: {error}"),
        )
    } else {
        // A body cut off mid-way, a reset connection: the reply is incomplete.
        LlmError::new(
            ErrorKind::Connection,
            format!("request to {url} failed: {error}"),
        )
    }
}

/// The start of a body, for error messages.
pub(crate) fn snippet(text: &str) -> String {
    let trimmed = text.trim();
    match trimmed.char_indices().nth(300) {
        Some((cut, _)) => format!("{}…", &trimmed[..cut]),
        None => trimmed.to_string(),
    }
}
