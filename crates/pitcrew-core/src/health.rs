use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What the router has learned about one model. Kept in the store so that a new run starts
/// from what the last one learned, and so that every worker respects a cooldown one of them
/// ran into.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelHealth {
    /// The model's registry name (unique across providers).
    pub model: String,
    /// Failures in a row; reset by a success.
    pub consecutive_failures: u32,
    /// While in the future the circuit is open (no calls); after it, one probe call decides.
    pub circuit_open_until: Option<DateTime<Utc>>,
    /// No call before this time: the provider asked for it (rate limit, quota reset).
    pub cooldown_until: Option<DateTime<Utc>>,
    pub cooldown_reason: Option<String>,
    /// Moving average of call success, 0–1.
    pub success_rate: f64,
    /// Moving average of a call's latency in milliseconds.
    pub latency_ms: f64,
    /// Moving average of the validated quality of its results, 0–1.
    pub quality: f64,
    /// How many observations the averages rest on.
    pub samples: u64,
    pub updated_at: DateTime<Utc>,
}

impl ModelHealth {
    /// Replaces every registered secret ([`crate::redact`]) in the cooldown reason (a
    /// provider's error message).
    pub fn redact_secrets(&mut self) {
        if let Some(reason) = &mut self.cooldown_reason {
            crate::redact_string(reason);
        }
    }
}
