use std::time::{Duration, Instant};

use pitcrew_core::config::Secret;
use pitcrew_core::{ErrorKind, Usage};
use serde::{Deserialize, Serialize};

use crate::LlmError;

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
    pub latency: Duration,
}

// Lenient reply types: every field optional, unknown fields ignored.
#[derive(Debug, Deserialize)]
struct ReplyBody {
    choices: Option<Vec<ReplyChoice>>,
    usage: Option<ReplyUsage>,
    error: Option<ReplyError>,
}

#[derive(Debug, Deserialize)]
struct ReplyChoice {
    message: Option<ReplyMessage>,
    finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ReplyMessage {
    content: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct ReplyUsage {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    /// OpenRouter reports the call's price in USD here.
    cost: Option<f64>,
}

#[derive(Debug, Deserialize)]
struct ReplyError {
    message: Option<String>,
    code: Option<serde_json::Value>,
}

impl ReplyError {
    fn status(&self) -> Option<u16> {
        match &self.code {
            Some(serde_json::Value::Number(n)) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
            Some(serde_json::Value::String(s)) => s.parse().ok(),
            _ => None,
        }
    }
}

/// An HTTP client for chat completions. It holds no retry logic: one call, one request.
#[derive(Debug, Clone)]
pub struct ChatClient {
    http: reqwest::Client,
}

impl ChatClient {
    /// A client whose requests time out after `timeout`.
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
        Ok(ChatClient { http })
    }

    /// Sends `request` and reads the whole reply.
    pub async fn complete(
        &self,
        endpoint: &Endpoint,
        request: &ChatRequest,
    ) -> Result<Completion, LlmError> {
        let url = format!(
            "{}/chat/completions",
            endpoint.base_url.trim_end_matches('/')
        );
        let mut body = serde_json::to_value(request).expect("request serializes");
        body["stream"] = serde_json::Value::Bool(false);
        let mut http = self.http.post(&url).json(&body);
        if let Some(key) = &endpoint.api_key {
            http = http.bearer_auth(key.expose());
        }
        let started = Instant::now();
        let response = http.send().await.map_err(|e| transport_error(&e, &url))?;
        let status = response.status().as_u16();
        let retry_after = retry_after(response.headers());
        let text = response
            .text()
            .await
            .map_err(|e| transport_error(&e, &url))?;
        let latency = started.elapsed();
        let parsed: Option<ReplyBody> = serde_json::from_str(&text).ok();

        if !(200..300).contains(&status) {
            let detail = parsed
                .as_ref()
                .and_then(|b| b.error.as_ref())
                .and_then(|e| e.message.clone())
                .unwrap_or_else(|| snippet(&text));
            return Err(LlmError::from_status(
                status,
                &detail,
                retry_after,
                &endpoint.api_key_env,
                &request.model,
            ));
        }
        let Some(reply) = parsed else {
            return Err(LlmError::new(
                ErrorKind::ServerError,
                format!(
                    "HTTP {status} with a body that is not chat-completions JSON: {}",
                    snippet(&text)
                ),
            ));
        };
        // Some providers report failures inside a 200 answer.
        if let Some(error) = &reply.error {
            let message = error.message.clone().unwrap_or_default();
            return Err(LlmError::from_status(
                error.status().unwrap_or(502),
                &message,
                retry_after,
                &endpoint.api_key_env,
                &request.model,
            ));
        }
        let usage = reply.usage.unwrap_or_default();
        let usage = Usage {
            tokens_in: usage.prompt_tokens.unwrap_or(0),
            tokens_out: usage.completion_tokens.unwrap_or(0),
            cost_usd: usage.cost,
        };
        let choice = reply.choices.into_iter().flatten().next();
        let finish_reason = choice
            .as_ref()
            .and_then(|c| c.finish_reason.clone())
            .filter(|r| !r.is_empty());
        if finish_reason.as_deref() == Some("error") {
            return Err(LlmError::new(
                ErrorKind::ServerError,
                "the provider ended the reply with finish_reason \"error\"",
            ));
        }
        let text = choice
            .and_then(|c| c.message)
            .and_then(|m| m.content)
            .unwrap_or_default();
        if finish_reason.as_deref() == Some("length") {
            return Err(LlmError::new(
                ErrorKind::Truncated,
                format!(
                    "the reply was cut at the token limit ({} tokens produced); raise models.max_tokens or narrow the task",
                    usage.tokens_out
                ),
            ));
        }
        Ok(Completion {
            text,
            finish_reason,
            usage,
            latency,
        })
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

/// The wait a provider asked for, from `retry-after-ms` or `Retry-After` (seconds).
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(ms) = get("retry-after-ms").and_then(|v| v.trim().parse::<f64>().ok()) {
        return Some(Duration::from_secs_f64(ms.max(0.0) / 1000.0));
    }
    get("retry-after")
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|s| Duration::from_secs_f64(s.max(0.0)))
}

/// The start of a body, for error messages.
fn snippet(text: &str) -> String {
    let trimmed = text.trim();
    match trimmed.char_indices().nth(300) {
        Some((cut, _)) => format!("{}…", &trimmed[..cut]),
        None => trimmed.to_string(),
    }
}
