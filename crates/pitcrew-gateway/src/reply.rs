//! What the agent gets back: OpenAI-shaped errors with statuses its SDK (litellm, openai)
//! handles sensibly, and chat completions as JSON or as a server-sent-events stream.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use pitcrew_core::{ErrorKind, Usage};
use pitcrew_llm::RouteError;
use serde_json::{Value, json};

use crate::tools::ToolCall;

/// The header naming the registry model that answered.
pub(crate) const MODEL_HEADER: &str = "x-pitcrew-model";

/// An error answer: `{"error": {"message", "type", "code", "param"}}`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ErrorReply {
    pub status: StatusCode,
    /// OpenAI's `type`.
    pub kind: &'static str,
    pub code: Option<String>,
    pub message: String,
    pub param: Option<String>,
    /// Sent as `Retry-After` (whole seconds, rounded up).
    pub retry_after: Option<Duration>,
}

impl ErrorReply {
    pub(crate) fn new(
        status: StatusCode,
        kind: &'static str,
        code: impl Into<String>,
        message: impl Into<String>,
    ) -> ErrorReply {
        ErrorReply {
            status,
            kind,
            code: Some(code.into()),
            message: message.into(),
            param: None,
            retry_after: None,
        }
    }

    pub(crate) fn unauthorized() -> ErrorReply {
        ErrorReply::new(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "invalid_api_key",
            "missing, unknown or revoked gateway token: send the task's token as \
             `Authorization: Bearer TOKEN`",
        )
    }

    /// What the agent is told when no model could serve its call. The router has already
    /// rotated over the models and waited as long as the task allows, so a 503 with
    /// `Retry-After` (which SDKs back off on) is right for what time may lift, and a 502 for
    /// pitcrew's own provider setup, which the agent cannot fix.
    pub(crate) fn from_route(error: &RouteError) -> ErrorReply {
        let (status, kind, code) = match error.kind {
            // litellm turns this code into ContextWindowExceededError; OpenHands then
            // condenses its history instead of giving up.
            ErrorKind::ContextTooLong => (
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "context_length_exceeded",
            ),
            ErrorKind::Budget => (
                StatusCode::PAYMENT_REQUIRED,
                "insufficient_quota",
                "insufficient_quota",
            ),
            ErrorKind::RateLimit | ErrorKind::Quota | ErrorKind::NoModelAvailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "service_unavailable",
                error.kind.as_str(),
            ),
            _ => (
                StatusCode::BAD_GATEWAY,
                "upstream_error",
                error.kind.as_str(),
            ),
        };
        ErrorReply {
            retry_after: (status == StatusCode::SERVICE_UNAVAILABLE)
                .then_some(error.retry_after)
                .flatten(),
            ..ErrorReply::new(status, kind, code, error.message.clone())
        }
    }
}

impl IntoResponse for ErrorReply {
    fn into_response(self) -> Response {
        // The router's messages are redacted already; this also covers pitcrew's own texts
        // should one ever quote a secret.
        let message = pitcrew_core::redact(&self.message).into_owned();
        let body = json!({"error": {
            "message": message,
            "type": self.kind,
            "code": self.code,
            "param": self.param,
        }});
        let mut response = (self.status, json_body(&body)).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(wait) = self.retry_after {
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
        }
        response
    }
}

fn json_body(value: &Value) -> String {
    value.to_string()
}

/// One answered call, ready to be sent either way.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Answer {
    pub id: String,
    /// The registry name of the model that answered.
    pub model: String,
    /// The reply; with a call, the words before it (none when empty).
    pub text: String,
    /// The function call read from the reply, when it made one.
    pub call: Option<ToolCall>,
    pub finish_reason: String,
    /// Tokens of the answering call (estimated by the router when the provider sent none).
    pub usage: Usage,
    /// What the whole request cost, failed attempts of other models included.
    pub cost_usd: f64,
}

impl Answer {
    fn usage_json(&self) -> Value {
        json!({
            "prompt_tokens": self.usage.tokens_in,
            "completion_tokens": self.usage.tokens_out,
            "total_tokens": self.usage.tokens_in + self.usage.tokens_out,
            "cost": self.cost_usd,
        })
    }

    /// The content: the text; with a call, `null` when there are no words before it, as
    /// OpenAI sends it.
    fn content(&self) -> Value {
        if self.call.is_some() && self.text.is_empty() {
            Value::Null
        } else {
            Value::String(self.text.clone())
        }
    }

    /// `tool_calls` as in a message; a stream's delta adds the call's `index`.
    fn tool_calls(&self, in_stream: bool) -> Option<Value> {
        let call = self.call.as_ref()?;
        let mut json = json!({
            "id": call.id,
            "type": "function",
            "function": {"name": call.name, "arguments": call.arguments},
        });
        if in_stream {
            json["index"] = json!(0);
        }
        Some(json!([json]))
    }

    /// A `chat.completion` object.
    pub(crate) fn completion(&self) -> Response {
        let mut message = json!({"role": "assistant", "content": self.content()});
        if let Some(calls) = self.tool_calls(false) {
            message["tool_calls"] = calls;
        }
        let body = json!({
            "id": self.id,
            "object": "chat.completion",
            "created": unix_now(),
            "model": self.model,
            "choices": [{
                "index": 0,
                "message": message,
                "finish_reason": self.finish_reason,
            }],
            "usage": self.usage_json(),
        });
        self.respond("application/json", json_body(&body))
    }

    /// The whole reply as one chunk (role, content, and the call whole when there is one),
    /// then a chunk with the finish reason and usage, then `[DONE]`. It is sent only once the router has the whole reply: the
    /// router may abandon a model mid-reply and rotate, and text of an abandoned call must
    /// never reach the agent.
    pub(crate) fn stream(&self) -> Response {
        let created = unix_now();
        let chunk = |choice: Value| {
            json!({
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": self.model,
                "choices": [choice],
            })
        };
        let mut delta = json!({"role": "assistant"});
        match self.tool_calls(true) {
            Some(calls) => {
                // A call's chunk carries content only when there are words before it.
                if !self.text.is_empty() {
                    delta["content"] = json!(self.text);
                }
                delta["tool_calls"] = calls;
            }
            None => delta["content"] = json!(self.text),
        }
        let content = chunk(json!({"index": 0, "delta": delta, "finish_reason": null}));
        let mut last = chunk(json!({
            "index": 0,
            "delta": {},
            "finish_reason": self.finish_reason,
        }));
        last["usage"] = self.usage_json();
        let body = format!("data: {content}\n\ndata: {last}\n\ndata: [DONE]\n\n");
        let mut response = self.respond("text/event-stream", body);
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        response
    }

    fn respond(&self, content_type: &'static str, body: String) -> Response {
        let mut response = (StatusCode::OK, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        // Registry names are plain ASCII; one that is not a valid header value is left out.
        if let Ok(model) = HeaderValue::from_str(&self.model) {
            headers.insert(MODEL_HEADER, model);
        }
        response
    }
}

/// `GET /v1/models`: the one name agents should ask for.
pub(crate) fn models(model: &str) -> Response {
    let body = json!({
        "object": "list",
        "data": [{"id": model, "object": "model", "created": 0, "owned_by": "pitcrew"}],
    });
    let mut response = (StatusCode::OK, json_body(&body)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route_error(kind: ErrorKind, retry_after: Option<Duration>) -> RouteError {
        RouteError {
            kind,
            message: format!("{kind} happened"),
            retry_after,
            calls: Vec::new(),
        }
    }

    #[test]
    fn router_errors_map_to_statuses_agents_handle() {
        let cases = [
            (ErrorKind::ContextTooLong, 400, "context_length_exceeded"),
            (ErrorKind::Budget, 402, "insufficient_quota"),
            (ErrorKind::RateLimit, 503, "rate_limit"),
            (ErrorKind::Quota, 503, "quota"),
            (ErrorKind::NoModelAvailable, 503, "no_model_available"),
            (ErrorKind::Auth, 502, "auth"),
            (ErrorKind::Config, 502, "config"),
            (ErrorKind::BadRequest, 502, "bad_request"),
            (ErrorKind::Payment, 502, "payment"),
            (ErrorKind::Degenerate, 502, "degenerate"),
        ];
        for (kind, status, code) in cases {
            let reply = ErrorReply::from_route(&route_error(kind, None));
            assert_eq!(reply.status.as_u16(), status, "{kind}");
            assert_eq!(reply.code.as_deref(), Some(code), "{kind}");
            assert_eq!(reply.message, format!("{kind} happened"));
        }
    }

    #[test]
    fn retry_after_is_sent_only_with_503_and_rounded_up() {
        let wait = Some(Duration::from_millis(2100));
        let busy = ErrorReply::from_route(&route_error(ErrorKind::RateLimit, wait));
        let response = busy.into_response();
        assert_eq!(response.headers()[header::RETRY_AFTER], "3");
        let config = ErrorReply::from_route(&route_error(ErrorKind::Config, wait));
        assert!(
            config
                .into_response()
                .headers()
                .get(header::RETRY_AFTER)
                .is_none()
        );
    }
}
