use std::time::Duration;

use pitcrew_core::ErrorKind;

/// A failed call, classified.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct LlmError {
    pub kind: ErrorKind,
    pub message: String,
    /// The HTTP status, when the server answered.
    pub status: Option<u16>,
    /// How long the provider asked us to wait (`Retry-After`, `retry-after-ms`).
    pub retry_after: Option<Duration>,
}

impl LlmError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        LlmError {
            kind,
            message: message.into(),
            status: None,
            retry_after: None,
        }
    }

    /// Classifies an HTTP error answer. `detail` is the provider's own message, if any.
    pub(crate) fn from_status(
        status: u16,
        detail: &str,
        retry_after: Option<Duration>,
        api_key_env: &str,
        model: &str,
    ) -> Self {
        let detail = if detail.is_empty() {
            String::new()
        } else {
            format!(": {detail}")
        };
        let (kind, message) = match status {
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
            429 => (
                ErrorKind::RateLimit,
                format!("HTTP 429: rate limited{detail}"),
            ),
            404 => (
                ErrorKind::BadRequest,
                format!(
                    "HTTP 404: the provider does not know model `{model}` or the endpoint{detail}"
                ),
            ),
            408 | 500..=599 => (
                ErrorKind::ServerError,
                format!("HTTP {status}: provider error{detail}"),
            ),
            _ => (
                ErrorKind::BadRequest,
                format!("HTTP {status}: request rejected{detail}"),
            ),
        };
        LlmError {
            kind,
            message,
            status: Some(status),
            retry_after,
        }
    }
}
