//! The JSON shapes of the OpenAI API: completions, stream chunks, usage, errors and the model
//! list. Every completion carries `system_fingerprint: "pitcrew-sim"`.

use serde_json::{Value, json};

use crate::config::ModelConfig;
use crate::model::Reply;

pub(crate) const FINGERPRINT: &str = "pitcrew-sim";

/// Identifies one completion in every body and chunk of it.
#[derive(Debug, Clone)]
pub(crate) struct Meta {
    pub id: String,
    pub model: String,
    pub created: u64,
}

/// `usage` with `cost` in USD from the model's prices.
pub(crate) fn usage(reply: &Reply, model: &ModelConfig) -> Value {
    let cost = (reply.prompt_tokens as f64 * model.prompt_price
        + reply.completion_tokens as f64 * model.completion_price)
        / 1e6;
    json!({
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": reply.completion_tokens,
        "total_tokens": reply.prompt_tokens + reply.completion_tokens,
        "cost": cost,
    })
}

/// A whole `chat.completion`.
pub(crate) fn completion(meta: &Meta, reply: &Reply, usage: &Value) -> Value {
    json!({
        "id": meta.id,
        "object": "chat.completion",
        "created": meta.created,
        "model": meta.model,
        "system_fingerprint": FINGERPRINT,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": reply.text},
            "finish_reason": reply.finish_reason,
        }],
        "usage": usage,
    })
}

/// A `chat.completion.chunk` with these `choices`.
fn chunk(meta: &Meta, choices: &Value) -> Value {
    json!({
        "id": meta.id,
        "object": "chat.completion.chunk",
        "created": meta.created,
        "model": meta.model,
        "system_fingerprint": FINGERPRINT,
        "choices": choices,
    })
}

/// A chunk carrying `piece` of the reply; the first also says the role.
pub(crate) fn content_chunk(meta: &Meta, piece: &str, first: bool) -> Value {
    let delta = if first {
        json!({"role": "assistant", "content": piece})
    } else {
        json!({"content": piece})
    };
    chunk(
        meta,
        &json!([{"index": 0, "delta": delta, "finish_reason": null}]),
    )
}

/// The chunk with an empty delta and the finish reason.
pub(crate) fn finish_chunk(meta: &Meta, finish_reason: &str) -> Value {
    chunk(
        meta,
        &json!([{"index": 0, "delta": {}, "finish_reason": finish_reason}]),
    )
}

/// The chunk `stream_options.include_usage` asks for: no choices, only usage.
pub(crate) fn usage_chunk(meta: &Meta, usage: Value) -> Value {
    let mut chunk = chunk(meta, &json!([]));
    chunk["usage"] = usage;
    chunk
}

/// An OpenAI-style error body.
pub(crate) fn error(status: u16, message: &str) -> Value {
    let (kind, code) = match status {
        429 => ("rate_limit_exceeded", json!("rate_limit_exceeded")),
        404 => ("invalid_request_error", json!("model_not_found")),
        500..=599 => ("server_error", Value::Null),
        _ => ("invalid_request_error", Value::Null),
    };
    json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
}

/// `GET /v1/models`: OpenAI's list shape with OpenRouter's `context_length` and per-token
/// `pricing` strings, which `pitcrew models sync` reads.
pub(crate) fn model_list<'a>(models: impl Iterator<Item = &'a ModelConfig>) -> Value {
    let data: Vec<Value> = models
        .map(|model| {
            json!({
                "id": model.id,
                "object": "model",
                "created": 0,
                "owned_by": FINGERPRINT,
                "name": format!("{} (simulated)", model.id),
                "description": "A simulated model served by pitcrew sim; its replies are not real.",
                "context_length": model.context_length,
                "pricing": {
                    "prompt": per_token(model.prompt_price),
                    "completion": per_token(model.completion_price),
                },
                "top_provider": {"context_length": model.context_length},
            })
        })
        .collect();
    json!({"object": "list", "data": data})
}

/// A price per million tokens as a price per token, in plain decimal notation.
fn per_token(per_million: f64) -> String {
    let text = format!("{:.12}", per_million / 1e6);
    let text = text.trim_end_matches('0').trim_end_matches('.');
    text.to_string()
}

#[cfg(test)]
mod tests {
    use super::per_token;

    #[test]
    fn prices_are_written_per_token() {
        assert_eq!(per_token(1.0), "0.000001");
        assert_eq!(per_token(0.3), "0.0000003");
        assert_eq!(per_token(0.0), "0");
        assert_eq!(per_token(15_000_000.0), "15");
    }
}
