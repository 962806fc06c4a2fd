//! Lenient serde types for chat-completions replies and stream chunks. Every field is
//! optional, unknown fields are ignored, and numbers and strings are accepted for each
//! other, because OpenAI-compatible servers disagree on the details (`choices: null`,
//! `usage: {}`, `finish_reason: ""`, token counts as floats, content as an array of parts).

use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// A non-streamed reply, or one chunk of a stream (which carries `delta` instead of `message`).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Body {
    #[serde(deserialize_with = "null_as_default")]
    pub choices: Vec<Choice>,
    pub usage: Option<WireUsage>,
    pub error: Option<WireError>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Choice {
    pub message: Option<Message>,
    pub delta: Option<Message>,
    #[serde(deserialize_with = "lenient_string")]
    pub finish_reason: Option<String>,
    /// Some providers attach the error to the choice rather than the body.
    pub error: Option<WireError>,
}

impl Choice {
    /// The finish reason, with the empty string some servers send read as none.
    pub(crate) fn finish(&self) -> Option<&str> {
        self.finish_reason.as_deref().filter(|r| !r.is_empty())
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Message {
    #[serde(deserialize_with = "text_or_parts")]
    pub content: Option<String>,
    /// Reasoning models stream their thinking here (OpenRouter: `reasoning`, DeepSeek and
    /// vLLM: `reasoning_content`). It is progress, not the answer.
    #[serde(deserialize_with = "text_or_parts")]
    pub reasoning: Option<String>,
    #[serde(deserialize_with = "text_or_parts")]
    pub reasoning_content: Option<String>,
}

impl Message {
    pub(crate) fn has_reasoning(&self) -> bool {
        [&self.reasoning, &self.reasoning_content]
            .into_iter()
            .any(|r| r.as_deref().is_some_and(|r| !r.is_empty()))
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct WireUsage {
    #[serde(deserialize_with = "lenient_u64")]
    pub prompt_tokens: Option<u64>,
    #[serde(deserialize_with = "lenient_u64")]
    pub completion_tokens: Option<u64>,
    /// OpenRouter reports the call's price in USD here.
    #[serde(deserialize_with = "lenient_f64")]
    pub cost: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct WireError {
    #[serde(deserialize_with = "lenient_string")]
    pub message: Option<String>,
    pub code: Option<Value>,
    /// OpenRouter: `{"headers": {...}, "raw": "<upstream message>", "provider_name": ...}`.
    pub metadata: Option<Value>,
}

impl WireError {
    /// The error's code when it is an HTTP status (numbers or numeric strings).
    pub(crate) fn status(&self) -> Option<u16> {
        match &self.code {
            Some(Value::Number(n)) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
            Some(Value::String(s)) => s.parse().ok(),
            _ => None,
        }
    }

    /// The message, with the upstream provider's own words appended when OpenRouter relays
    /// them (they hold the reason, e.g. "temporarily rate-limited upstream").
    pub(crate) fn detail(&self) -> String {
        let message = self.message.clone().unwrap_or_default();
        let raw = self
            .metadata
            .as_ref()
            .and_then(|m| m.get("raw"))
            .and_then(Value::as_str)
            .filter(|raw| !raw.is_empty() && !message.contains(*raw));
        match raw {
            Some(raw) => format!("{message} ({})", crate::client::snippet(raw)),
            None => message,
        }
    }

    /// Rate-limit headers OpenRouter copies into the error body.
    pub(crate) fn headers(&self) -> Option<&Value> {
        self.metadata.as_ref().and_then(|m| m.get("headers"))
    }
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

fn lenient_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(lenient_f64(d)?
        .filter(|n| *n >= 0.0)
        .map(|n| n.round() as u64))
}

fn lenient_f64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|n| n.is_finite()))
}

fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) => Some(s),
        Value::Null => None,
        other => Some(other.to_string()),
    })
}

/// Content is usually a string, sometimes an array of `{"type": "text", "text": ...}` parts.
fn text_or_parts<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) => Some(s),
        Value::Array(parts) => Some(
            parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect(),
        ),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_shapes_parse() {
        let body: Body = serde_json::from_str(
            r#"{"choices": null, "usage": {"prompt_tokens": 12.0, "completion_tokens": "3", "cost": "0.5"}}"#,
        )
        .unwrap();
        assert!(body.choices.is_empty());
        let usage = body.usage.unwrap();
        assert_eq!(
            (usage.prompt_tokens, usage.completion_tokens),
            (Some(12), Some(3))
        );
        assert_eq!(usage.cost, Some(0.5));

        let body: Body = serde_json::from_str(
            r#"{"choices": [{"delta": {"content": [{"type": "text", "text": "a"}, {"text": "b"}]}, "finish_reason": ""}], "usage": {}}"#,
        )
        .unwrap();
        assert_eq!(
            body.choices[0].delta.as_ref().unwrap().content.as_deref(),
            Some("ab")
        );
        assert_eq!(body.choices[0].finish(), None);
    }

    #[test]
    fn openrouter_error_metadata_is_read() {
        let body: Body = serde_json::from_str(
            r#"{"error": {"message": "Provider returned error", "code": "429", "metadata": {"raw": "model is temporarily rate-limited upstream", "headers": {"X-RateLimit-Reset": "1"}}}}"#,
        )
        .unwrap();
        let error = body.error.unwrap();
        assert_eq!(error.status(), Some(429));
        assert_eq!(
            error.detail(),
            "Provider returned error (model is temporarily rate-limited upstream)"
        );
        assert!(error.headers().is_some());
    }
}
