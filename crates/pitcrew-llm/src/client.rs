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
use crate::sse::{SseError, SseReader};
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
    /// The longest wait between two chunks after the first token (zero without streaming).
    pub longest_gap: Duration,
    /// The provider's headers said this call used the last request of its rate-limit window,
    /// which resets after this long.
    pub window_spent_for: Option<Duration>,
}

/// How long a stream may take before it counts as stalled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StallDeadlines {
    /// From sending the request to the first token (answer or reasoning).
    pub first_token: Duration,
    /// Between two chunks after that (comment lines are not progress).
    pub between_chunks: Duration,
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

/// Completion tokens a provider may count for a reply without any content arriving (a stop
/// token, a refusal marker); more than this with nothing received means content went missing.
const MISSING_REPLY_TOKENS: u64 = 16;

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
        let text = bounded_text(response, &url(endpoint)).await?;
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
        let idle = StallDeadlines {
            first_token: self.idle_timeout,
            between_chunks: self.idle_timeout,
        };
        self.stream_within(endpoint, request, idle, on_delta).await
    }

    /// [`ChatClient::stream`] with its own stall deadlines (each at most the idle timeout), so
    /// a caller that learned how fast a model streams can cut a stall early.
    pub async fn stream_within(
        &self,
        endpoint: &Endpoint,
        request: &ChatRequest,
        deadlines: StallDeadlines,
        on_delta: &mut (dyn FnMut(&str) + Send),
    ) -> Result<Completion, LlmError> {
        let first_token = deadlines.first_token.min(self.idle_timeout);
        let between = deadlines.between_chunks.min(self.idle_timeout);
        let started = Instant::now();
        let response = tokio::time::timeout(first_token, self.send(endpoint, request, true))
            .await
            .map_err(|_| {
                LlmError::new(
                    ErrorKind::Timeout,
                    format!(
                        "{} sent no response within {:.0?} (stall deadline)",
                        url(endpoint),
                        first_token
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
            let text = bounded_text(response, &url(endpoint)).await?;
            if !(200..300).contains(&status) {
                return Err(http_error(status, &text, hints, endpoint, request));
            }
            let body = parse_body(status, &text)?;
            let completion = finish_body(body, hints, endpoint, request, started.elapsed())?;
            on_delta(&completion.text);
            return Ok(completion);
        }

        let mut decoder = StreamDecoder::new(endpoint, request);
        decoder.started = started;
        let mut body = response.bytes_stream();
        // Until the first token, the deadline counts from the request; then from each chunk.
        let mut data_deadline = tokio::time::Instant::from_std(started + first_token);
        let mut last_data: Option<Instant> = None;
        while !decoder.state.done {
            let next = match tokio::time::timeout_at(data_deadline, body.next()).await {
                Ok(next) => next,
                // A stream that stalls after its finish reason has delivered everything but
                // the optional usage chunk and [DONE].
                Err(_) if decoder.state.finish_reason.is_some() => break,
                Err(_) => {
                    let deadline = if decoder.state.first_token.is_some() {
                        between
                    } else {
                        first_token
                    };
                    return Err(decoder
                        .state
                        .cut(&format!("the stream stalled: no data for {deadline:.0?}")));
                }
            };
            let progress = match next {
                Some(Ok(bytes)) => decoder.push(&bytes, on_delta)?,
                Some(Err(e)) if e.is_timeout() => {
                    return Err(LlmError::new(
                        ErrorKind::Timeout,
                        format!(
                            "request to {} timed out after {} characters of reply",
                            url(endpoint),
                            decoder.state.text.len()
                        ),
                    ));
                }
                Some(Err(e)) => {
                    return Err(decoder.state.cut(&format!("the connection broke: {e}")));
                }
                None => break,
            };
            if progress && decoder.state.first_token.is_some() {
                let now = Instant::now();
                if let Some(last) = last_data {
                    decoder.state.longest_gap = decoder.state.longest_gap.max(now - last);
                }
                last_data = Some(now);
                data_deadline = tokio::time::Instant::now() + between;
            }
        }
        decoder.finish_with(hints, on_delta)
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
        let text = bounded_text(response, &url).await?;
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

/// The most reply text pitcrew reads from one call, streamed or not: far above what any
/// `max_tokens` asks for, so only a runaway or hostile provider reaches it.
pub const MAX_REPLY_BYTES: usize = 4 * 1024 * 1024;

/// Reads a chat-completion event stream chunk by chunk, however the body was cut into
/// chunks: what [`ChatClient::stream`] does with a body, without the network or deadlines.
#[derive(Debug)]
pub struct StreamDecoder<'a> {
    reader: SseReader,
    state: StreamState,
    started: Instant,
    endpoint: &'a Endpoint,
    request: &'a ChatRequest,
}

impl<'a> StreamDecoder<'a> {
    /// A decoder for the reply to `request` sent to `endpoint` (named in its errors).
    pub fn new(endpoint: &'a Endpoint, request: &'a ChatRequest) -> Self {
        StreamDecoder {
            reader: SseReader::default(),
            state: StreamState::default(),
            started: Instant::now(),
            endpoint,
            request,
        }
    }

    /// Feeds the next chunk of the body, passing answer text to `on_delta`; returns whether
    /// it held data that counts as progress. Bytes after `[DONE]` are ignored.
    pub fn push(
        &mut self,
        bytes: &[u8],
        on_delta: &mut (dyn FnMut(&str) + Send),
    ) -> Result<bool, LlmError> {
        let mut progress = false;
        for payload in self.reader.push(bytes) {
            if self.state.done {
                break;
            }
            let payload = payload.map_err(|e| self.state.unreadable(e))?;
            progress |= self.state.event(
                &payload,
                self.started,
                self.endpoint,
                self.request,
                on_delta,
            )?;
        }
        Ok(progress)
    }

    /// Whether the stream sent `[DONE]`.
    pub fn is_done(&self) -> bool {
        self.state.done
    }

    /// The completion, once the body has ended (or the stream said `[DONE]`), or why what
    /// arrived is not a whole reply.
    pub fn finish(self, on_delta: &mut (dyn FnMut(&str) + Send)) -> Result<Completion, LlmError> {
        self.finish_with(WaitHints::default(), on_delta)
    }

    fn finish_with(
        mut self,
        hints: WaitHints,
        on_delta: &mut (dyn FnMut(&str) + Send),
    ) -> Result<Completion, LlmError> {
        if !self.state.done
            && let Some(payload) = (self.reader.finish()).map_err(|e| self.state.unreadable(e))?
        {
            let (started, endpoint, request) = (self.started, self.endpoint, self.request);
            self.state
                .event(&payload, started, endpoint, request, on_delta)?;
        }
        let state = self.state;
        let latency = self.started.elapsed();
        if !state.done && state.finish_reason.is_none() {
            return Err(state.cut("the stream ended without [DONE] or a finish reason"));
        }
        // Counts that do not add up: the provider billed a reply that never arrived.
        if state.text.is_empty()
            && !state.reasoned
            && state.usage.tokens_out >= MISSING_REPLY_TOKENS
        {
            return Err(state.malformed(&format!(
                "the provider counted {} completion tokens but sent no content",
                state.usage.tokens_out
            )));
        }
        check_finish(state.finish_reason.as_deref(), state.usage.tokens_out)?;
        Ok(Completion {
            time_to_first_token: state.first_token.unwrap_or(latency),
            longest_gap: state.longest_gap,
            text: state.text,
            finish_reason: state.finish_reason,
            usage: state.usage,
            latency,
            window_spent_for: hints.spent_window(),
        })
    }
}

/// What a stream has delivered so far.
#[derive(Debug, Default)]
struct StreamState {
    text: String,
    finish_reason: Option<String>,
    usage: Usage,
    first_token: Option<Duration>,
    /// Whether any reasoning arrived (a reply can be all reasoning and no content).
    reasoned: bool,
    longest_gap: Duration,
    done: bool,
}

/// Why a parsed chunk is not one of the shapes chat-completion streams send, if it is not:
/// an object with `choices`, `usage` or `error`, whose delta's content is text, parts or null.
fn unknown_shape(chunk: &serde_json::Value) -> Option<String> {
    let Some(object) = chunk.as_object() else {
        return Some("a chunk is not a JSON object".into());
    };
    if !["choices", "usage", "error"]
        .iter()
        .any(|k| object.contains_key(*k))
    {
        return Some("a chunk has neither choices, usage nor an error".into());
    }
    let choices = match object.get("choices") {
        None | Some(serde_json::Value::Null) => return None,
        Some(serde_json::Value::Array(choices)) => choices,
        Some(_) => return Some("a chunk's `choices` is not a list".into()),
    };
    for choice in choices {
        for field in ["delta", "message"] {
            let Some(part) = choice.get(field).filter(|p| !p.is_null()) else {
                continue;
            };
            if !part.is_object() {
                return Some(format!("a chunk's `{field}` is not an object"));
            }
            for key in ["content", "reasoning", "reasoning_content"] {
                match part.get(key) {
                    None | Some(serde_json::Value::Null) | Some(serde_json::Value::String(_)) => {}
                    Some(serde_json::Value::Array(parts))
                        if parts
                            .iter()
                            .all(|p| p.get("text").is_none_or(serde_json::Value::is_string)) => {}
                    Some(_) => {
                        return Some(format!(
                            "a chunk's `{field}.{key}` is neither text nor parts"
                        ));
                    }
                }
            }
        }
    }
    None
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
        if payload.is_empty() {
            return Ok(false);
        }
        // What is committed must be exactly what the model sent: a chunk that cannot be read
        // ends the call, rather than being skipped with a piece of the reply in it.
        let value: serde_json::Value = serde_json::from_str(payload).map_err(|e| {
            self.malformed(&format!(
                "a chunk is not JSON ({e}): `{}`",
                snippet(payload)
            ))
        })?;
        if let Some(why) = unknown_shape(&value) {
            return Err(self.malformed(&format!("{why}: `{}`", snippet(payload))));
        }
        let chunk = serde_json::from_value::<Body>(value).map_err(|e| {
            self.malformed(&format!(
                "a chunk cannot be read ({e}): `{}`",
                snippet(payload)
            ))
        })?;
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
            self.reasoned |= delta.has_reasoning();
            if self.first_token.is_none() && (!content.is_empty() || delta.has_reasoning()) {
                self.first_token = Some(started.elapsed());
            }
            if self.text.len() + content.len() > MAX_REPLY_BYTES {
                return Err(self.too_large(&format!("the reply grew past {MAX_REPLY_BYTES} bytes")));
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

    fn malformed(&self, why: &str) -> LlmError {
        LlmError::new(
            ErrorKind::MalformedStream,
            format!(
                "the stream is not well formed after {} characters of reply: {why}",
                self.text.len()
            ),
        )
    }

    fn unreadable(&self, error: SseError) -> LlmError {
        match error {
            SseError::LineTooLong(limit) => self.too_large(&format!(
                "an event line grew past {limit} bytes without ending"
            )),
            SseError::NotUtf8 => self.malformed("a data line is not UTF-8"),
        }
    }

    fn too_large(&self, why: &str) -> LlmError {
        LlmError::new(
            ErrorKind::ReplyTooLarge,
            format!(
                "{why} (after {} characters of reply); pitcrew stops reading there",
                self.text.len()
            ),
        )
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

/// The body of `response` as text, refused once it passes what a reply may hold (JSON
/// escaping can double a reply's size).
async fn bounded_text(response: reqwest::Response, url: &str) -> Result<String, LlmError> {
    const LIMIT: usize = 2 * MAX_REPLY_BYTES;
    let mut body = response.bytes_stream();
    let mut bytes = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| transport_error(&e, url))?;
        if bytes.len() + chunk.len() > LIMIT {
            return Err(LlmError::new(
                ErrorKind::ReplyTooLarge,
                format!("{url} sent a body larger than {LIMIT} bytes; pitcrew stops reading there"),
            ));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
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
        longest_gap: Duration::ZERO,
        window_spent_for: hints.spent_window(),
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
