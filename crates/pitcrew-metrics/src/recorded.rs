//! What an attempt's `details` say about the model calls it made. The built-in agent writes
//! them (pitcrew-runtime's `AgentDetails`): its rounds, each with the router's record of every
//! call (pitcrew-llm's `CallRecord`). Read here as plain data, so that this crate needs
//! neither; a field this crate does not use is ignored, one it does is checked.

use pitcrew_core::{Attempt, ErrorClass, ErrorKind, Usage};
use serde::Deserialize;

use crate::MetricsError;

/// The parts of an attempt's details the figures need.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RecordedDetails {
    /// The registry name of the model that gave the attempt's last reply (the attempt itself
    /// records its id).
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub iterations: Vec<RecordedRound>,
}

/// One round of generation and checks.
#[derive(Debug, Deserialize)]
pub(crate) struct RecordedRound {
    /// Every call of the round, failed ones first; when the round got a reply, the call that
    /// brought it is last.
    #[serde(default)]
    pub calls: Vec<RecordedCall>,
    /// Why the agent's checks refused the round's reply, when they did.
    #[serde(default)]
    rejected_as: Option<String>,
}

impl RecordedRound {
    /// Whether the agent's own checks refused the round's reply as unusable content (paths,
    /// syntax, size, no files).
    pub(crate) fn reply_refused_as_content(&self) -> bool {
        self.rejected_as
            .as_deref()
            .and_then(|kind| kind.parse::<ErrorKind>().ok())
            .is_some_and(|kind| kind.class() == ErrorClass::Content)
    }

    /// The call that brought the round's reply; `None` when no call did (every call failed,
    /// or the reply came from the cache).
    pub(crate) fn answering_call(&self) -> Option<&RecordedCall> {
        self.calls.last().filter(|call| call.answered())
    }
}

/// One HTTP call to a model.
#[derive(Debug, Deserialize)]
pub(crate) struct RecordedCall {
    /// The registry name.
    #[serde(default)]
    pub model: String,
    /// The provider's model id, as attempts record it.
    pub model_id: String,
    /// Kept as text: a kind a later pitcrew added is still a failure.
    #[serde(default)]
    error_kind: Option<String>,
    #[serde(default)]
    pub usage: Usage,
    #[serde(default)]
    pub cost_usd: Option<f64>,
    #[serde(default)]
    pub time_to_first_token_ms: Option<u64>,
    #[serde(default)]
    pub latency_ms: Option<u64>,
}

impl RecordedCall {
    /// Whether the call brought a usable reply.
    pub(crate) fn answered(&self) -> bool {
        self.error_kind.is_none()
    }

    fn error_kind(&self) -> Option<ErrorKind> {
        self.error_kind.as_deref()?.parse().ok()
    }

    pub(crate) fn was_rate_limited(&self) -> bool {
        matches!(
            self.error_kind(),
            Some(ErrorKind::RateLimit | ErrorKind::Quota)
        )
    }

    /// Whether the router refused the reply as unusable content.
    pub(crate) fn was_unusable(&self) -> bool {
        self.error_kind()
            .is_some_and(|kind| kind.class() == ErrorClass::Content)
    }

    /// Whether `model` names this call's model, by id or registry name.
    pub(crate) fn is_of(&self, model: &str) -> bool {
        self.model_id == model || self.model == model
    }
}

impl RecordedDetails {
    /// The details of `attempt`; `null` details (nothing to say) read as no rounds.
    pub(crate) fn of(attempt: &Attempt) -> Result<Self, MetricsError> {
        if attempt.details.is_null() {
            return Ok(RecordedDetails::default());
        }
        RecordedDetails::deserialize(&attempt.details).map_err(|e| {
            MetricsError::UnreadableDetails {
                task: attempt.task_id,
                attempt: attempt.number,
                reason: e.to_string(),
            }
        })
    }
}
