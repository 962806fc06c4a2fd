//! Webhook deliveries as both backends keep them: which endpoints an event goes to, what a
//! delivery row holds, and how one is read back. The SQL differs per backend; what is written
//! is decided here.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use pitcrew_core::{TaskId, WebhookEvent, WebhookEventType, WebhookSubscription, named_enum};
use serde::Serialize;
use uuid::Uuid;

use crate::StoreError;

/// The longest `last_error` kept: the start of a receiver's answer says what went wrong.
pub const MAX_DELIVERY_ERROR_CHARS: usize = 500;

named_enum! {
    /// Where a webhook delivery stands.
    pub enum DeliveryState ("delivery state") {
        /// Not attempted yet, or its first attempt is under way.
        Pending = "pending",
        /// An attempt failed; another is due at `next_attempt_at`.
        Retrying = "retrying",
        /// The endpoint answered 2xx.
        Delivered = "delivered",
        /// Every allowed attempt failed; pitcrew gave up.
        Failed = "failed",
    }
}

impl DeliveryState {
    /// The state of a row with `status` (as stored: pending, delivered or failed) whose last
    /// attempt failed with `last_error` (if it did).
    pub(crate) fn of(status: &str, last_error: Option<&str>) -> Result<Self, StoreError> {
        Ok(match status {
            "pending" if last_error.is_some() => DeliveryState::Retrying,
            "pending" => DeliveryState::Pending,
            "delivered" => DeliveryState::Delivered,
            "failed" => DeliveryState::Failed,
            other => return Err(StoreError::Corrupt(format!("delivery status = `{other}`"))),
        })
    }
}

/// A delivery as stored, for people and programs to read (`pitcrew webhooks`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WebhookDelivery {
    /// The delivery's number in the store (its row).
    pub seq: u64,
    /// The event's id, sent as `X-Pitcrew-Event-Id`: the same on every attempt.
    pub event_id: Uuid,
    pub event_type: WebhookEventType,
    /// The task a `task.*` event is about.
    pub task_id: Option<TaskId>,
    pub url: String,
    pub state: DeliveryState,
    /// Attempts started so far.
    pub attempts: u32,
    /// When the next attempt is due (while pending or retrying).
    pub next_attempt_at: DateTime<Utc>,
    /// The HTTP status of the last answer; `None` when none came (a timeout, a refused
    /// connection) or nothing was attempted yet.
    pub last_status_code: Option<u16>,
    /// Why the last attempt failed (cleared once delivered).
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// When it was delivered or given up.
    pub finished_at: Option<DateTime<Utc>>,
}

/// A delivery a dispatcher holds: what to send, and the lease its outcome is written with.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedDelivery {
    pub seq: u64,
    /// The lease: only the holder of this token can record the attempt.
    pub token: Uuid,
    /// This attempt's number (1 for the first).
    pub attempt: u32,
    pub event_id: Uuid,
    pub event_type: WebhookEventType,
    pub url: String,
    /// The JSON to POST, exactly as recorded.
    pub body: String,
}

/// How one attempt to deliver ended.
#[derive(Debug, Clone, PartialEq)]
pub enum DeliveryOutcome {
    /// The endpoint answered 2xx.
    Delivered { status_code: u16 },
    /// It failed; try again after `delay`.
    Retry {
        delay: Duration,
        status_code: Option<u16>,
        error: String,
    },
    /// It failed and no attempt is left.
    Failed {
        status_code: Option<u16>,
        error: String,
    },
}

/// What [`DeliveryOutcome`] writes.
pub(crate) struct Recorded {
    pub status: &'static str,
    /// From now until the next attempt (zero when there is none).
    pub delay: Duration,
    pub status_code: Option<i64>,
    /// Registered secrets replaced, bounded in length.
    pub error: Option<String>,
    pub finished: bool,
}

impl DeliveryOutcome {
    pub(crate) fn recorded(&self) -> Recorded {
        let kept = |error: &str| {
            let error = pitcrew_core::redact(error);
            Some(match error.char_indices().nth(MAX_DELIVERY_ERROR_CHARS) {
                Some((cut, _)) => format!("{}…", &error[..cut]),
                None => error.into_owned(),
            })
        };
        match self {
            DeliveryOutcome::Delivered { status_code } => Recorded {
                status: "delivered",
                delay: Duration::ZERO,
                status_code: Some(i64::from(*status_code)),
                error: None,
                finished: true,
            },
            DeliveryOutcome::Retry {
                delay,
                status_code,
                error,
            } => Recorded {
                status: "pending",
                delay: *delay,
                status_code: status_code.map(i64::from),
                error: kept(error),
                finished: false,
            },
            DeliveryOutcome::Failed { status_code, error } => Recorded {
                status: "failed",
                delay: Duration::ZERO,
                status_code: status_code.map(i64::from),
                error: kept(error),
                finished: true,
            },
        }
    }
}

/// How many deliveries to one URL are in one state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeliveryCount {
    pub url: String,
    pub state: DeliveryState,
    pub count: u64,
}

/// The endpoints a store enqueues deliveries for, shared by its clones. Empty until set:
/// a store opened by a process without `[[webhooks]]` enqueues nothing.
#[derive(Debug, Clone, Default)]
pub(crate) struct Subscriptions(Arc<RwLock<Arc<[WebhookSubscription]>>>);

impl Subscriptions {
    pub(crate) fn set(&self, subscriptions: Vec<WebhookSubscription>) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = subscriptions.into();
    }

    /// The URLs of the endpoints that want events of `event_type`.
    pub(crate) fn urls_wanting(&self, event_type: WebhookEventType) -> Vec<String> {
        (self.current().iter())
            .filter(|s| s.wants(event_type))
            .map(|s| s.url.clone())
            .collect()
    }

    fn current(&self) -> Arc<[WebhookSubscription]> {
        Arc::clone(&self.0.read().unwrap_or_else(PoisonError::into_inner))
    }
}

/// The body an event is stored (and sent) with: its JSON, registered secrets replaced (a
/// task's description or metadata may quote one; replacing inside a JSON string keeps it
/// JSON, since the escaped forms are registered too).
pub(crate) fn stored_body(event: &WebhookEvent) -> String {
    let body = event.body();
    pitcrew_core::redact(&body).into_owned()
}

/// Counts as a backend reads them — `(url, stored status, whether an attempt failed, count)`
/// — by URL and state.
pub(crate) fn counts(
    rows: impl IntoIterator<Item = (String, String, bool, i64)>,
) -> Result<Vec<DeliveryCount>, StoreError> {
    let mut counts: std::collections::BTreeMap<(String, DeliveryState), u64> =
        std::collections::BTreeMap::new();
    for (url, status, failed_before, count) in rows {
        let state = DeliveryState::of(&status, failed_before.then_some(""))?;
        *counts.entry((url, state)).or_default() += u64::try_from(count).unwrap_or(0);
    }
    Ok(counts
        .into_iter()
        .map(|((url, state), count)| DeliveryCount { url, state, count })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pending_delivery_that_failed_before_is_retrying() {
        let rows = [
            ("b".to_string(), "pending".to_string(), true, 2),
            ("a".to_string(), "pending".to_string(), false, 1),
            ("a".to_string(), "failed".to_string(), true, 3),
            ("a".to_string(), "delivered".to_string(), false, 4),
        ];
        let counts = counts(rows).unwrap();
        let shown: Vec<(&str, DeliveryState, u64)> = counts
            .iter()
            .map(|c| (c.url.as_str(), c.state, c.count))
            .collect();
        assert_eq!(
            shown,
            [
                ("a", DeliveryState::Pending, 1),
                ("a", DeliveryState::Delivered, 4),
                ("a", DeliveryState::Failed, 3),
                ("b", DeliveryState::Retrying, 2),
            ]
        );
        let corrupt = [("a".to_string(), "lost".to_string(), false, 1)];
        assert!(matches!(
            super::counts(corrupt),
            Err(StoreError::Corrupt(_))
        ));
    }

    #[test]
    fn an_error_is_kept_short_and_without_secrets() {
        pitcrew_core::register_secret("whsec-test-5b1f0c2e9a7d");
        let outcome = DeliveryOutcome::Retry {
            delay: Duration::from_secs(1),
            status_code: Some(500),
            error: format!(
                "HTTP 500: bad secret whsec-test-5b1f0c2e9a7d {}",
                "x".repeat(2000)
            ),
        };
        let error = outcome.recorded().error.unwrap();
        assert!(!error.contains("whsec-test-5b1f0c2e9a7d"), "{error}");
        assert!(error.contains("[REDACTED]"), "{error}");
        assert_eq!(error.chars().count(), MAX_DELIVERY_ERROR_CHARS + 1);
    }
}
