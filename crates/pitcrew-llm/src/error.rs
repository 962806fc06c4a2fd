//! Classifying failed calls into [`ErrorKind`]s, and reading how long a provider asked us to
//! wait. The router acts on the kind (rotate, cool down, fail) and on `retry_after` (never
//! call that model again sooner), so both must be right even when providers phrase things
//! differently: OpenRouter reports its daily free-tier limit as a 429 whose message says
//! `free-models-per-day` and whose reset is a millisecond epoch, OpenAI reports an empty
//! balance as a 429 `insufficient_quota`, and so on.

use std::time::Duration;

use chrono::{DateTime, Utc};
use pitcrew_core::{ErrorKind, parse_retry_after};
use reqwest::header::HeaderMap;

/// A failed call, classified.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct LlmError {
    pub kind: ErrorKind,
    pub message: String,
    /// The HTTP status, when the server answered (or the code of an error inside a 200 reply).
    pub status: Option<u16>,
    /// How long the provider asked us to wait before calling this model again: from
    /// `retry-after-ms`, `Retry-After` (seconds or an HTTP date) or, when those are absent,
    /// the rate-limit reset (`X-RateLimit-Reset` and OpenAI's `x-ratelimit-reset-*`).
    pub retry_after: Option<Duration>,
}

impl LlmError {
    /// An error of `kind`; registered secrets in `message` (a provider may echo the key it
    /// rejects) are replaced by `[REDACTED]`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        let mut message = message.into();
        pitcrew_core::redact_string(&mut message);
        LlmError {
            kind,
            message,
            status: None,
            retry_after: None,
        }
    }
}

/// A 429 whose reset lies further away than this is a quota, not a per-minute limit: a
/// per-minute window always resets within a minute, so ten leaves room for clock skew.
const QUOTA_HORIZON: Duration = Duration::from_secs(600);

/// What a provider said about waiting, from headers (or OpenRouter's copy of them inside the
/// error body, `error.metadata.headers`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct WaitHints {
    /// `retry-after-ms` or `Retry-After`.
    pub retry_after: Option<Duration>,
    /// Time until the rate-limit window resets.
    pub reset: Option<Duration>,
    /// Requests left in the window (`x-ratelimit-remaining`, OpenAI's
    /// `x-ratelimit-remaining-requests`).
    pub remaining: Option<u64>,
}

impl WaitHints {
    /// Reads the hints from response headers, relative to `now`.
    pub(crate) fn from_headers(headers: &HeaderMap, now: DateTime<Utc>) -> Self {
        Self::from_lookup(|name| headers.get(name).and_then(|v| v.to_str().ok()), now)
    }

    /// Reads the hints from a JSON object of header names to values (case-insensitive).
    pub(crate) fn from_json(headers: &serde_json::Value, now: DateTime<Utc>) -> Self {
        let Some(map) = headers.as_object() else {
            return WaitHints::default();
        };
        Self::from_lookup(
            |name| {
                map.iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .and_then(|(_, v)| v.as_str())
            },
            now,
        )
    }

    fn from_lookup<'a>(get: impl Fn(&str) -> Option<&'a str>, now: DateTime<Utc>) -> Self {
        let retry_after = get("retry-after-ms")
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(|ms| secs(ms / 1000.0))
            .or_else(|| get("retry-after").and_then(|v| parse_retry_after(v, now)));
        let reset = ["x-ratelimit-reset", "x-ratelimit-reset-requests"]
            .into_iter()
            .find_map(|name| get(name).and_then(|v| parse_reset(v, now)));
        let remaining = ["x-ratelimit-remaining", "x-ratelimit-remaining-requests"]
            .into_iter()
            .find_map(|name| get(name).and_then(|v| v.trim().parse::<u64>().ok()));
        WaitHints {
            retry_after,
            reset,
            remaining,
        }
    }

    /// How long until the window resets, when a successful reply said it used the last
    /// request the window allows: the next call would be refused until then.
    pub(crate) fn spent_window(self) -> Option<Duration> {
        (self.remaining == Some(0)).then_some(self.reset).flatten()
    }

    /// Keeps, field by field, the hint that asks for the longer wait.
    pub(crate) fn or(self, other: WaitHints) -> WaitHints {
        WaitHints {
            retry_after: longer(self.retry_after, other.retry_after),
            reset: longer(self.reset, other.reset),
            remaining: match (self.remaining, other.remaining) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
        }
    }

    /// The wait to honour: what the provider asked for explicitly, else the reset.
    fn wait(self) -> Option<Duration> {
        self.retry_after.or(self.reset)
    }
}

fn longer(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

fn secs(s: f64) -> Duration {
    Duration::try_from_secs_f64(s.max(0.0)).unwrap_or(Duration::MAX)
}

/// A reset is, depending on the provider, an epoch in milliseconds (OpenRouter), an epoch in
/// seconds, seconds from now, or a Go-style duration (`6m0s`, `20ms`; OpenAI).
fn parse_reset(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(n) = value.parse::<f64>() {
        let at_ms = if n >= 1e12 {
            n
        } else if n >= 1e9 {
            n * 1000.0
        } else {
            return Some(secs(n));
        };
        return Some(secs((at_ms - now.timestamp_millis() as f64) / 1000.0));
    }
    parse_go_duration(value)
}

fn parse_go_duration(value: &str) -> Option<Duration> {
    let mut total = 0.0;
    let mut rest = value;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            _ => return None,
        };
        total += number * factor;
        rest = &rest[unit_len..];
    }
    Some(secs(total))
}

/// How a provider phrases a prompt that does not fit the model (OpenAI, Anthropic, vLLM,
/// llama.cpp, Ollama, OpenRouter, Mistral).
const CONTEXT_PHRASES: &[&str] = &[
    "context length",
    "context_length",
    "context window",
    "maximum context",
    "prompt is too long",
    "too many tokens",
    "reduce the length",
    "input is too long",
    "exceeds the model's",
    "exceed_context",
];
const FILTER_PHRASES: &[&str] = &[
    "content filter",
    "content_filter",
    "content policy",
    "content_policy",
    "moderation",
    "flagged",
    "safety system",
];
/// An empty balance, which waiting does not fix (OpenAI says it with a 429).
const CREDIT_PHRASES: &[&str] = &[
    "insufficient_quota",
    "insufficient credits",
    "billing",
    "more credits",
    "out of credits",
];
/// A quota that resets on a long schedule (OpenRouter: `free-models-per-day`).
const QUOTA_PHRASES: &[&str] = &["per-day", "per day", "daily", "per-month", "quota"];

fn mentions(text: &str, phrases: &[&str]) -> bool {
    phrases.iter().any(|p| text.contains(p))
}

/// Classifies an HTTP error answer (or an error object inside a 200 reply, with its code as
/// `status`). `detail` is the provider's own message, if any.
pub(crate) fn classify(
    status: u16,
    detail: &str,
    hints: WaitHints,
    api_key_env: &str,
    model: &str,
) -> LlmError {
    let lower = detail.to_lowercase();
    let detail = if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    };
    let mut retry_after = hints.wait();
    let (kind, mut message) = match status {
        400 | 413 | 422 if status == 413 || mentions(&lower, CONTEXT_PHRASES) => (
            ErrorKind::ContextTooLong,
            format!("HTTP {status}: the prompt does not fit model `{model}`{detail}"),
        ),
        400 | 403 if mentions(&lower, FILTER_PHRASES) => (
            ErrorKind::ContentFilter,
            format!("HTTP {status}: the provider's content filter refused the request{detail}"),
        ),
        401 | 403 => (
            ErrorKind::Auth,
            if api_key_env.is_empty() {
                format!(
                    "HTTP {status}: the provider rejected the request as unauthorised (no API key is configured for it){detail}"
                )
            } else {
                format!(
                    "HTTP {status}: the provider rejected the API key from {api_key_env}{detail}"
                )
            },
        ),
        402 => (
            ErrorKind::Payment,
            format!("HTTP 402: no credit left for model `{model}`{detail}"),
        ),
        429 if mentions(&lower, CREDIT_PHRASES) => (
            ErrorKind::Payment,
            format!("HTTP 429: no credit left for model `{model}`{detail}"),
        ),
        429 if mentions(&lower, QUOTA_PHRASES)
            || hints.reset.is_some_and(|r| r >= QUOTA_HORIZON) =>
        {
            // The reset is when the quota comes back; a short Retry-After would only invite
            // another refusal.
            retry_after = longer(hints.reset, hints.retry_after);
            (
                ErrorKind::Quota,
                format!("HTTP 429: quota exhausted for model `{model}`{detail}"),
            )
        }
        429 => (
            ErrorKind::RateLimit,
            format!("HTTP 429: rate limited{detail}"),
        ),
        404 => (
            ErrorKind::BadRequest,
            format!("HTTP 404: the provider does not know model `{model}` or the endpoint{detail}"),
        ),
        408 => (
            ErrorKind::Timeout,
            format!("HTTP 408: the provider timed out{detail}"),
        ),
        500..=599 => (
            ErrorKind::ServerError,
            format!("HTTP {status}: provider error{detail}"),
        ),
        _ => (
            ErrorKind::BadRequest,
            format!("HTTP {status}: request rejected{detail}"),
        ),
    };
    // Providers echo what they reject: `Incorrect API key provided: sk-…`.
    pitcrew_core::redact_string(&mut message);
    LlmError {
        kind,
        message,
        status: Some(status),
        retry_after,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(ms).unwrap()
    }

    #[test]
    fn resets_in_every_format_providers_use() {
        let now = at(1_741_305_000_000);
        let cases = [
            ("1741305600000", 600.0), // OpenRouter: ms epoch
            ("1741305060", 60.0),     // seconds epoch
            ("12", 12.0),             // seconds from now
            ("6m0s", 360.0),          // OpenAI
            ("1m30.5s", 90.5),
            ("20ms", 0.02),
            ("1741304000000", 0.0), // already past
        ];
        for (value, expected) in cases {
            let got = parse_reset(value, now).unwrap().as_secs_f64();
            assert!((got - expected).abs() < 1e-6, "{value}: {got}");
        }
        assert_eq!(parse_reset("soon", now), None);
    }

    #[test]
    fn retry_after_as_seconds_or_http_date() {
        let now = DateTime::parse_from_rfc2822("Wed, 21 Oct 2015 07:28:00 GMT")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(parse_retry_after(" 2 ", now), Some(Duration::from_secs(2)));
    }

    #[test]
    fn a_daily_limit_is_a_quota_and_waits_for_its_reset() {
        let hints = WaitHints {
            retry_after: Some(Duration::from_secs(1)),
            reset: Some(Duration::from_secs(5 * 3600)),
            remaining: None,
        };
        let e = classify(
            429,
            "Rate limit exceeded: free-models-per-day",
            hints,
            "K",
            "m",
        );
        assert_eq!(e.kind, ErrorKind::Quota);
        assert_eq!(e.retry_after, Some(Duration::from_secs(5 * 3600)));
        let far = WaitHints {
            retry_after: None,
            reset: Some(Duration::from_secs(3600)),
            remaining: None,
        };
        assert_eq!(
            classify(429, "slow down", far, "K", "m").kind,
            ErrorKind::Quota
        );
        let near = WaitHints {
            retry_after: None,
            reset: Some(Duration::from_secs(20)),
            remaining: None,
        };
        let e = classify(429, "slow down", near, "K", "m");
        assert_eq!(e.kind, ErrorKind::RateLimit);
        assert_eq!(e.retry_after, Some(Duration::from_secs(20)));
    }

    #[test]
    fn provider_phrasings_map_to_kinds() {
        let none = WaitHints::default();
        let cases = [
            (
                400,
                "This model's maximum context length is 8192 tokens",
                ErrorKind::ContextTooLong,
            ),
            (413, "", ErrorKind::ContextTooLong),
            (
                400,
                "Output blocked by content filtering policy",
                ErrorKind::ContentFilter,
            ),
            (400, "temperature must be at most 2", ErrorKind::BadRequest),
            (
                400,
                "Request flagged by moderation",
                ErrorKind::ContentFilter,
            ),
            (403, "Your input was flagged", ErrorKind::ContentFilter),
            (403, "forbidden", ErrorKind::Auth),
            (
                429,
                "You exceeded your current quota, please check your plan and billing details. insufficient_quota",
                ErrorKind::Payment,
            ),
            (402, "Insufficient credits", ErrorKind::Payment),
            (408, "", ErrorKind::Timeout),
            (529, "overloaded", ErrorKind::ServerError),
        ];
        for (status, detail, kind) in cases {
            assert_eq!(
                classify(status, detail, none, "K", "m").kind,
                kind,
                "{status} {detail}"
            );
        }
    }
}
