//! Scripted replies: what the server answers to one chat-completions request.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderName, HeaderValue, StatusCode};
use serde_json::{Value, json};
use tokio::sync::watch;

/// A latch holding every [`Reply::hold`]-ing reply until [`Gate::open`] is called.
///
/// Clones share the same latch. Opening is permanent: replies held on an open gate are
/// answered at once. A held reply is also abandoned (its connection closed) when the
/// server is dropped, so a forgotten gate cannot hang a test at teardown.
#[derive(Clone, Debug)]
pub struct Gate {
    open: Arc<watch::Sender<bool>>,
}

impl Gate {
    /// A closed gate.
    pub fn new() -> Gate {
        Gate {
            open: Arc::new(watch::Sender::new(false)),
        }
    }

    /// Releases every reply held on this gate, now and later. Callable from any thread.
    pub fn open(&self) {
        self.open.send_replace(true);
    }

    pub(crate) async fn wait(&self) {
        let mut opened = self.open.subscribe();
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = opened.wait_for(|open| *open).await;
    }
}

impl Default for Gate {
    fn default() -> Gate {
        Gate::new()
    }
}

/// One event of a hand-written server-sent-events stream (see [`Reply::sse`]).
#[derive(Clone, Debug, PartialEq)]
pub enum SseEvent {
    /// `data: <json>` followed by a blank line.
    Data(Value),
    /// `: <text>` followed by a blank line, e.g. OpenRouter's `OPENROUTER PROCESSING` keep-alives.
    Comment(String),
    /// `data: [DONE]` followed by a blank line.
    Done,
    /// Nothing is written; the stream pauses this long before the next event.
    Delay(Duration),
    /// The text followed by a single `\n`, nothing added: for malformed or unusual framing.
    RawLine(String),
    /// The connection is dropped here, mid-body, as when a provider's connection breaks:
    /// what came before has been sent, the response never completes (no final chunk, so the
    /// client reads an error rather than a clean end), and later events are never sent.
    Disconnect,
    /// `data: <json>` sent again and again, `every` apart, for as long as the client reads:
    /// a provider whose reply never ends. Later events are never reached.
    Forever { data: Value, every: Duration },
}

impl SseEvent {
    /// The bytes this event puts on the wire; `None` for [`SseEvent::Delay`],
    /// [`SseEvent::Disconnect`] and [`SseEvent::Forever`].
    pub(crate) fn frame(&self) -> Option<String> {
        match self {
            SseEvent::Data(value) => Some(format!("data: {value}\n\n")),
            SseEvent::Comment(text) => Some(format!(": {text}\n\n")),
            SseEvent::Done => Some("data: [DONE]\n\n".to_owned()),
            SseEvent::Delay(_) | SseEvent::Disconnect | SseEvent::Forever { .. } => None,
            SseEvent::RawLine(line) => Some(format!("{line}\n")),
        }
    }
}

/// What one scripted request is answered with. Build it with a constructor
/// ([`Reply::content`], [`Reply::status`], [`Reply::raw`], [`Reply::sse`]) and refine it with
/// the chained modifiers.
#[derive(Clone, Debug)]
pub struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) body: ReplyBody,
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    pub(crate) delay: Duration,
    pub(crate) gate: Option<Gate>,
    pub(crate) usage: Option<Usage>,
}

#[derive(Clone, Debug)]
pub(crate) enum ReplyBody {
    /// An assistant message, shaped as JSON or SSE depending on the request's `stream`.
    Content(String),
    Json(Value),
    Raw {
        content_type: HeaderValue,
        body: String,
    },
    Sse(Vec<SseEvent>),
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Usage {
    pub(crate) prompt_tokens: u64,
    pub(crate) completion_tokens: u64,
    pub(crate) cost: Option<f64>,
}

impl Usage {
    pub(crate) fn to_json(self) -> Value {
        let mut usage = json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        });
        if let Some(cost) = self.cost {
            usage["cost"] = json!(cost);
        }
        usage
    }
}

impl Reply {
    fn new(status: StatusCode, body: ReplyBody) -> Reply {
        Reply {
            status,
            body,
            headers: Vec::new(),
            delay: Duration::ZERO,
            gate: None,
            usage: None,
        }
    }

    /// HTTP 200 with a normal `chat.completion` whose assistant message is `text`
    /// (`finish_reason: "stop"`, the request's model echoed, usage counted in words unless
    /// [`Reply::with_usage`] says otherwise). If the request asked for `"stream": true`, the
    /// same content is streamed as SSE instead, shaped like [`sse_text_chunks`].
    pub fn content(text: &str) -> Reply {
        Reply::new(StatusCode::OK, ReplyBody::Content(text.to_owned()))
    }

    /// Any status with a JSON body, e.g.
    /// `Reply::status(429, json!({"error": {"message": "rate limited", "code": 429}}))`.
    ///
    /// Panics on a code that is not a valid HTTP status.
    pub fn status(code: u16, body: Value) -> Reply {
        Reply::new(status_code(code), ReplyBody::Json(body))
    }

    /// Any status with a body sent verbatim under `content_type`.
    ///
    /// Panics on an invalid status code or content type.
    pub fn raw(code: u16, content_type: &str, body: &str) -> Reply {
        let content_type = HeaderValue::from_str(content_type)
            .unwrap_or_else(|err| panic!("invalid content type {content_type:?}: {err}"));
        Reply::new(
            status_code(code),
            ReplyBody::Raw {
                content_type,
                body: body.to_owned(),
            },
        )
    }

    /// HTTP 200 `text/event-stream` whose events are written and flushed one by one,
    /// pausing at each [`SseEvent::Delay`] and breaking the connection at an
    /// [`SseEvent::Disconnect`]. Nothing is added: end with [`SseEvent::Done`] if the stream
    /// should have one (a stream that simply stops ends cleanly, as a truncated one does).
    pub fn sse(events: Vec<SseEvent>) -> Reply {
        Reply::new(StatusCode::OK, ReplyBody::Sse(events))
    }

    /// Adds a response header; it replaces a default header of the same name (such as
    /// `content-type`). Panics on an invalid name or value.
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        let name = HeaderName::from_bytes(name.as_bytes())
            .unwrap_or_else(|err| panic!("invalid header name {name:?}: {err}"));
        let value = HeaderValue::from_str(value)
            .unwrap_or_else(|err| panic!("invalid value for header {name}: {err}"));
        self.headers.push((name, value));
        self
    }

    /// Waits this long before sending anything (status line included): a stalled provider.
    /// With [`Reply::hold`], the delay starts once the gate opens.
    pub fn delay(mut self, d: Duration) -> Reply {
        self.delay = d;
        self
    }

    /// Sends nothing until `gate` is opened (or the server is dropped, which closes the
    /// connection instead). The request is recorded as soon as it arrives regardless.
    pub fn hold(mut self, gate: &Gate) -> Reply {
        self.gate = Some(gate.clone());
        self
    }

    /// Reports these token counts in [`Reply::content`]'s `usage` (JSON and streamed),
    /// plus `usage.cost` when given, as OpenRouter does. Other replies' bodies are sent
    /// exactly as scripted, so this does not affect them.
    pub fn with_usage(
        mut self,
        prompt_tokens: u64,
        completion_tokens: u64,
        cost: Option<f64>,
    ) -> Reply {
        self.usage = Some(Usage {
            prompt_tokens,
            completion_tokens,
            cost,
        });
        self
    }
}

fn status_code(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or_else(|err| panic!("invalid HTTP status {code}: {err}"))
}

/// The events of a typical streamed completion of `text` by `model`: `text` split into
/// `pieces` delta chunks (at least one, at most one per character; the first delta also
/// carries `role: "assistant"`), a chunk with an empty delta and `finish_reason: "stop"`, a
/// usage chunk (`choices: []`, completion tokens counted in words, prompt tokens 0), then
/// `[DONE]`.
pub fn sse_text_chunks(model: &str, text: &str, pieces: usize) -> Vec<SseEvent> {
    let usage = Usage {
        prompt_tokens: 0,
        completion_tokens: word_count(text),
        cost: None,
    };
    text_chunks("chatcmpl-scripted", model, text, pieces, usage)
}

pub(crate) fn text_chunks(
    id: &str,
    model: &str,
    text: &str,
    pieces: usize,
    usage: Usage,
) -> Vec<SseEvent> {
    let created = unix_now();
    let chunk = |choices: Value| {
        json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": choices,
        })
    };
    let mut events: Vec<SseEvent> = split_pieces(text, pieces)
        .into_iter()
        .enumerate()
        .map(|(i, piece)| {
            let delta = if i == 0 {
                json!({"role": "assistant", "content": piece})
            } else {
                json!({"content": piece})
            };
            SseEvent::Data(chunk(
                json!([{"index": 0, "delta": delta, "finish_reason": null}]),
            ))
        })
        .collect();
    events.push(SseEvent::Data(chunk(
        json!([{"index": 0, "delta": {}, "finish_reason": "stop"}]),
    )));
    let mut usage_chunk = chunk(json!([]));
    usage_chunk["usage"] = usage.to_json();
    events.push(SseEvent::Data(usage_chunk));
    events.push(SseEvent::Done);
    events
}

/// The non-streaming `chat.completion` body for [`Reply::content`].
pub(crate) fn completion_json(id: &str, model: &str, text: &str, usage: Usage) -> Value {
    json!({
        "id": id,
        "object": "chat.completion",
        "created": unix_now(),
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "finish_reason": "stop",
        }],
        "usage": usage.to_json(),
    })
}

/// Rough token count: tests only need plausible, predictable numbers.
pub(crate) fn word_count(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// Splits `text` into `pieces` nearly equal runs of characters (never inside a character).
fn split_pieces(text: &str, pieces: usize) -> Vec<&str> {
    let starts: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
    let n = pieces.clamp(1, starts.len().max(1));
    let offset = |k: usize| {
        starts
            .get(k * starts.len() / n)
            .copied()
            .unwrap_or(text.len())
    };
    (0..n).map(|k| &text[offset(k)..offset(k + 1)]).collect()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

#[cfg(test)]
mod tests {
    use super::split_pieces;

    #[test]
    fn split_pieces_covers_text_without_breaking_characters() {
        assert_eq!(split_pieces("héllo", 2), ["hé", "llo"]);
        assert_eq!(split_pieces("ab", 5), ["a", "b"]);
        assert_eq!(split_pieces("abc", 0), ["abc"]);
        assert_eq!(split_pieces("", 3), [""]);
    }
}
